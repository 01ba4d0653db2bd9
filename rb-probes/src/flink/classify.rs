//! What kind of failure a Flink exception is, from its class and stack trace.
//!
//! [`classify`] is a pure function: it reads the *headlines* of a Java stack trace — the first line
//! and every `Caused by:` / `Suppressed:` line (frames are ignored, since class names such as
//! `KryoSerializer.deserialize` appear in the frames of unrelated failures) — and returns the most
//! specific category it recognises, in this order:
//!
//! 1. [`FailureCategory::OutOfMemory`] — `java.lang.OutOfMemoryError` (heap, metaspace, direct
//!    memory), a container killed for memory;
//! 2. [`FailureCategory::LostTaskManager`] — a TaskManager unreachable, timed out or disconnected,
//!    a connection to a remote task manager closed;
//! 3. [`FailureCategory::ClassNotFound`] — `ClassNotFoundException`, `NoClassDefFoundError`, a
//!    serializer that cannot find a class;
//! 4. [`FailureCategory::SchemaMismatch`] — a schema change or type mismatch (`ClassCastException`,
//!    Avro type errors, Paimon/Iceberg schema errors, a sink whose column types do not match);
//! 5. [`FailureCategory::Serialization`] — a record that cannot be (de)serialized (Kryo, Java
//!    serialization, Kafka `SerializationException`, JSON parse errors);
//! 6. [`FailureCategory::Other`].
//!
//! A schema mismatch wrapped in a `SerializationException` is a schema mismatch: the more specific
//! cause wins.

use serde::{Deserialize, Serialize};

/// The kind of failure behind a Flink job exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCategory {
    /// A schema change or a type mismatch between data and code or sink.
    SchemaMismatch,
    /// A record that cannot be serialized or deserialized.
    Serialization,
    /// A class missing from the job's classpath.
    ClassNotFound,
    /// The JVM (or its container) ran out of memory.
    OutOfMemory,
    /// A TaskManager was lost (crashed, killed, or its heartbeat timed out).
    LostTaskManager,
    /// Anything else.
    Other,
}

impl FailureCategory {
    /// Every category, in a fixed order.
    pub const ALL: [FailureCategory; 6] = [
        FailureCategory::SchemaMismatch,
        FailureCategory::Serialization,
        FailureCategory::ClassNotFound,
        FailureCategory::OutOfMemory,
        FailureCategory::LostTaskManager,
        FailureCategory::Other,
    ];

    /// The label value used in samples (`schema_mismatch`, `lost_taskmanager`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCategory::SchemaMismatch => "schema_mismatch",
            FailureCategory::Serialization => "serialization",
            FailureCategory::ClassNotFound => "class_not_found",
            FailureCategory::OutOfMemory => "out_of_memory",
            FailureCategory::LostTaskManager => "lost_taskmanager",
            FailureCategory::Other => "other",
        }
    }
}

impl std::fmt::Display for FailureCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const OUT_OF_MEMORY: &[&str] = &[
    "outofmemoryerror",
    "java heap space",
    "gc overhead limit exceeded",
    "direct buffer memory",
    "metaspace. the metaspace out-of-memory",
    "running beyond physical memory limits",
    "oomkilled",
    "cannot allocate memory",
];

const LOST_TASKMANAGER: &[&str] = &[
    "is no longer reachable",
    "heartbeat of taskmanager with id",
    "connection unexpectedly closed by remote task manager",
    "lost connection to task manager",
    "remotetransportexception",
    "taskmanager is shutting down",
    "the taskexecutor is shutting down",
    "disconnect taskmanager",
    "taskmanager with id",
];

const CLASS_NOT_FOUND: &[&str] = &[
    "classnotfoundexception",
    "noclassdeffounderror",
    "unable to find class",
    "cannot load user class",
    "could not find class",
];

const SCHEMA_MISMATCH: &[&str] = &[
    "schemachangeexception",
    "schema mismatch",
    "incompatible schema",
    "schema is not compatible",
    "schemas are not compatible",
    "avrotypeexception",
    "classcastexception",
    "cannot be cast to",
    "column types of query result and sink",
    "type mismatch",
    "types do not match",
    "not found in schema",
    "missing required field",
    "cannot write incompatible",
    "unrecognizedpropertyexception",
    "incompatible types",
];

const SERIALIZATION: &[&str] = &[
    "serializationexception",
    "kryoexception",
    "notserializableexception",
    "invalidclassexception",
    "streamcorruptedexception",
    "failed to deserialize",
    "could not deserialize",
    "failed to serialize",
    "could not serialize",
    "error deserializing",
    "error serializing",
    "jsonparseexception",
    "jsonprocessingexception",
    "mismatchedinputexception",
    "corrupt record",
];

/// The headlines of a stack trace: the first line, `Caused by:` and `Suppressed:` lines and the
/// continuation lines of multi-line messages — everything but `at …` frames and `... N more`.
pub fn headlines(stacktrace: &str) -> impl Iterator<Item = &str> {
    stacktrace.lines().map(str::trim).filter(|l| {
        let frame = l.starts_with("at ") || (l.starts_with("... ") && l.ends_with(" more"));
        !l.is_empty() && !frame
    })
}

/// The category of an exception named `exception_name` with this stack trace.
pub fn classify(exception_name: &str, stacktrace: &str) -> FailureCategory {
    let mut text = exception_name.to_ascii_lowercase();
    for line in headlines(stacktrace) {
        text.push('\n');
        text.push_str(&line.to_ascii_lowercase());
    }
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(OUT_OF_MEMORY) {
        FailureCategory::OutOfMemory
    } else if has(LOST_TASKMANAGER) {
        FailureCategory::LostTaskManager
    } else if has(CLASS_NOT_FOUND) {
        FailureCategory::ClassNotFound
    } else if has(SCHEMA_MISMATCH) {
        FailureCategory::SchemaMismatch
    } else if has(SERIALIZATION) {
        FailureCategory::Serialization
    } else {
        FailureCategory::Other
    }
}

/// The first line of a stack trace without the class (`"TaskManager with id … is no longer
/// reachable."`), at most `max` characters.
pub fn message(exception_name: &str, stacktrace: &str, max: usize) -> String {
    let first = stacktrace.lines().next().unwrap_or("").trim();
    let msg = first
        .strip_prefix(exception_name)
        .map(|r| r.trim_start_matches(':').trim())
        .unwrap_or(first);
    let mut out: String = msg.chars().take(max).collect();
    if msg.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn frames() -> &'static str {
        "\n\tat org.apache.flink.streaming.runtime.tasks.StreamTask.invoke(StreamTask.java:754)\n\tat org.apache.flink.api.java.typeutils.runtime.kryo.KryoSerializer.deserialize(KryoSerializer.java:394)\n\tat org.apache.flink.runtime.taskmanager.Task.run(Task.java:566)\n\tat java.base/java.lang.Thread.run(Thread.java:840)"
    }

    fn case(name: &str, trace: &str) -> FailureCategory {
        classify(name, &format!("{trace}{}", frames()))
    }

    #[test]
    fn lost_taskmanager_as_captured() {
        let t = "org.apache.flink.runtime.jobmaster.JobMasterException: TaskManager with id 127.0.0.1:45375-dfd754 is no longer reachable.\n\tat org.apache.flink.runtime.jobmaster.JobMaster$TaskManagerHeartbeatListener.notifyTargetUnreachable(JobMaster.java:1680)";
        assert_eq!(
            classify("org.apache.flink.runtime.jobmaster.JobMasterException", t),
            FailureCategory::LostTaskManager
        );
        assert_eq!(
            message(
                "org.apache.flink.runtime.jobmaster.JobMasterException",
                t,
                200
            ),
            "TaskManager with id 127.0.0.1:45375-dfd754 is no longer reachable."
        );
        assert_eq!(
            case("java.util.concurrent.TimeoutException", "java.util.concurrent.TimeoutException: Heartbeat of TaskManager with id 10.0.3.7:6122-4f1a2b timed out."),
            FailureCategory::LostTaskManager
        );
        assert_eq!(
            case("org.apache.flink.runtime.io.network.netty.exception.RemoteTransportException",
                 "org.apache.flink.runtime.io.network.netty.exception.RemoteTransportException: Connection unexpectedly closed by remote task manager '10.0.3.8/10.0.3.8:39211 [ tm-2 ] '. This might indicate that the remote task manager was lost."),
            FailureCategory::LostTaskManager
        );
    }

    #[test]
    fn out_of_memory() {
        assert_eq!(
            case(
                "java.lang.OutOfMemoryError",
                "java.lang.OutOfMemoryError: Java heap space"
            ),
            FailureCategory::OutOfMemory
        );
        assert_eq!(
            case("org.apache.flink.runtime.io.network.netty.exception.LocalTransportException",
                 "org.apache.flink.runtime.io.network.netty.exception.LocalTransportException: failed to allocate buffer\nCaused by: java.lang.OutOfMemoryError: Direct buffer memory. The direct out-of-memory error has occurred."),
            FailureCategory::OutOfMemory
        );
        assert_eq!(
            case(
                "java.lang.OutOfMemoryError",
                "java.lang.OutOfMemoryError: Metaspace. The metaspace out-of-memory error has occurred."
            ),
            FailureCategory::OutOfMemory
        );
    }

    #[test]
    fn class_not_found_beats_the_serializer_that_reported_it() {
        assert_eq!(
            case("com.esotericsoftware.kryo.KryoException",
                 "com.esotericsoftware.kryo.KryoException: Unable to find class: com.acme.orders.OrderEvent\nSerialization trace:\nevent (com.acme.orders.Envelope)\nCaused by: java.lang.ClassNotFoundException: com.acme.orders.OrderEvent"),
            FailureCategory::ClassNotFound
        );
        assert_eq!(
            case("org.apache.flink.streaming.runtime.tasks.StreamTaskException",
                 "org.apache.flink.streaming.runtime.tasks.StreamTaskException: Cannot load user class: com.acme.enrich.EnrichFunction\nClassLoader info: URL ClassLoader:\n    file: '/tmp/blobStore-1/job_0/blob_p-1' (valid JAR)\nClass not resolvable through given classloader."),
            FailureCategory::ClassNotFound
        );
        assert_eq!(
            case(
                "java.lang.NoClassDefFoundError",
                "java.lang.NoClassDefFoundError: org/apache/kafka/clients/consumer/OffsetResetStrategy"
            ),
            FailureCategory::ClassNotFound
        );
    }

    #[test]
    fn schema_and_type_mismatch() {
        assert_eq!(
            case("org.apache.paimon.schema.SchemaChangeException",
                 "org.apache.paimon.schema.SchemaChangeException: Cannot convert field amount from type DECIMAL(10, 2) to INT of Paimon table lake.orders."),
            FailureCategory::SchemaMismatch
        );
        assert_eq!(
            case("java.lang.ClassCastException",
                 "java.lang.ClassCastException: class java.lang.String cannot be cast to class java.lang.Long (java.lang.String and java.lang.Long are in module java.base of loader 'bootstrap')"),
            FailureCategory::SchemaMismatch
        );
        // wrapped in a serialization error: the type mismatch is the cause
        assert_eq!(
            case("org.apache.kafka.common.errors.SerializationException",
                 "org.apache.kafka.common.errors.SerializationException: Error deserializing Avro message for id 42\nCaused by: org.apache.avro.AvroTypeException: Found string, expecting long"),
            FailureCategory::SchemaMismatch
        );
        assert_eq!(
            case("org.apache.flink.table.api.ValidationException",
                 "org.apache.flink.table.api.ValidationException: Column types of query result and sink for 'default_catalog.default_database.orders' do not match.\nCause: Incompatible types for sink column 'amount' at position 2."),
            FailureCategory::SchemaMismatch
        );
    }

    #[test]
    fn serialization() {
        assert_eq!(
            case("java.io.IOException",
                 "java.io.IOException: Failed to deserialize consumer record due to\nCaused by: com.fasterxml.jackson.core.JsonParseException: Unexpected character ('}' (code 125)): was expecting double-quote to start field name"),
            FailureCategory::Serialization
        );
        assert_eq!(
            case("java.io.InvalidClassException",
                 "java.io.InvalidClassException: com.acme.orders.OrderState; local class incompatible: stream classdesc serialVersionUID = 1, local class serialVersionUID = 2"),
            FailureCategory::Serialization
        );
        assert_eq!(
            case("org.apache.flink.api.common.InvalidProgramException",
                 "org.apache.flink.api.common.InvalidProgramException: The implementation of the MapFunction is not serializable.\nCaused by: java.io.NotSerializableException: com.acme.Client"),
            FailureCategory::Serialization
        );
    }

    #[test]
    fn other_and_frames_do_not_count() {
        assert_eq!(
            case(
                "java.lang.IllegalStateException",
                "java.lang.IllegalStateException: runbook fault injection"
            ),
            FailureCategory::Other,
            "a KryoSerializer frame is not a serialization failure"
        );
        assert_eq!(
            case(
                "java.lang.RuntimeException",
                "java.lang.RuntimeException: boom\n\t... 12 more"
            ),
            FailureCategory::Other
        );
        assert_eq!(classify("", ""), FailureCategory::Other);
    }

    #[test]
    fn message_strips_the_class_and_bounds_the_length() {
        assert_eq!(message("a.B", "a.B: hello\n\tat x", 3), "hel…");
        assert_eq!(message("a.B", "c.D: other", 100), "c.D: other");
        assert_eq!(message("a.B", "", 10), "");
    }

    proptest! {
        #[test]
        fn never_panics(name in ".{0,40}", trace in "(?s).{0,400}") {
            let c = classify(&name, &trace);
            prop_assert!(FailureCategory::ALL.contains(&c));
            let _ = message(&name, &trace, 50);
        }
    }
}
