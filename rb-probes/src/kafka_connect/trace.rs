//! Classify a failed connector's or task's stack trace: is it a configuration or authorization error
//! (restarting will not help — the remediation refuses to restart it), or something else?

use serde::{Deserialize, Serialize};

/// What a failure trace says about the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceClass {
    /// The configuration is wrong (a `ConfigException`, a missing or invalid setting, an invalid topic
    /// name, a connector or driver class that cannot be found): a restart fails the same way.
    Configuration,
    /// Credentials or permissions were refused (Kafka ACLs, SASL/SSL authentication, a database or
    /// object store refusing the user): a restart fails the same way until someone fixes access.
    Authorization,
    /// Anything else (data, serialization, network, timeouts, …): a restart may help.
    Other,
}

impl TraceClass {
    /// Whether a restart cannot fix this failure (configuration or authorization).
    pub fn blocks_restart(self) -> bool {
        !matches!(self, TraceClass::Other)
    }
}

/// Markers of authentication and authorization failures, looked for anywhere in the trace (the
/// root cause is usually in a `Caused by:` line at the end).
const AUTHORIZATION: &[&str] = &[
    "AuthorizationException", // Topic/Group/Cluster/TransactionalId AuthorizationException
    "AuthenticationException", // SaslAuthenticationException, SslAuthenticationException
    "AccessDeniedException",
    "password authentication failed", // PostgreSQL
    "Access denied for user",         // MySQL / MariaDB
    "Login failed for user",          // SQL Server
    "ORA-01017",                      // Oracle: invalid username/password
    "not authorized to",
    "Not authorized to",
    "HTTP 401",
    "HTTP 403",
    "401 Unauthorized",
    "403 Forbidden",
    "status code: 403",
    "Status Code: 403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
];

/// Markers of configuration errors.
const CONFIGURATION: &[&str] = &[
    "ConfigException", // org.apache.kafka.common.config.ConfigException and subclasses
    "Missing required configuration",
    "Invalid value ",
    "InvalidTopicException",
    "InvalidConfigurationException",
    "Unknown configuration",
    "ClassNotFoundException",
    "NoClassDefFoundError",
    "Failed to find any class that implements",
    "No suitable driver found",
    "Connector configuration is invalid",
];

/// Classify a Java stack trace as Kafka Connect reports it in `trace`.
///
/// Authorization is checked before configuration: a trace that shows both (a `ConnectException`
/// wrapping a `TopicAuthorizationException` raised while validating config) is about access.
pub fn classify_trace(trace: &str) -> TraceClass {
    if AUTHORIZATION.iter().any(|m| trace.contains(m)) {
        TraceClass::Authorization
    } else if CONFIGURATION.iter().any(|m| trace.contains(m)) {
        TraceClass::Configuration
    } else {
        TraceClass::Other
    }
}

/// A trace bounded to about `max` characters that keeps what matters: the first line (the
/// exception thrown) and every `Caused by:` line (the root cause is the last), the frames between
/// them summarized as `… N more lines`. Traces within `max` are returned as they are.
pub fn bound_trace(trace: &str, max: usize) -> String {
    if trace.chars().count() <= max {
        return trace.to_string();
    }
    let lines: Vec<&str> = trace.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut skipped = 0usize;
    for (i, l) in lines.iter().enumerate() {
        let keep = i == 0 || l.trim_start().starts_with("Caused by:");
        if keep {
            if skipped > 0 {
                out.push(format!("\t… {skipped} more lines"));
                skipped = 0;
            }
            out.push(l.to_string());
        } else {
            skipped += 1;
        }
    }
    if skipped > 0 {
        out.push(format!("\t… {skipped} more lines"));
    }
    let joined = out.join("\n");
    if joined.chars().count() <= max {
        return joined;
    }
    // Still too long (huge messages): keep the head and the tail (the root cause).
    let half = max / 2;
    let chars: Vec<char> = joined.chars().collect();
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len().saturating_sub(max - half)..]
        .iter()
        .collect();
    format!("{head}\n\t…\n{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real worker's trace of a FileStream source whose topic name is invalid (peers tier).
    const INVALID_TOPIC: &str = "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer send callback\n\tat org.apache.kafka.connect.runtime.WorkerSourceTask.maybeThrowProducerSendException(WorkerSourceTask.java:348)\n\tat org.apache.kafka.connect.runtime.WorkerSourceTask.prepareToSendRecord(WorkerSourceTask.java:140)\n\tat org.apache.kafka.connect.runtime.AbstractWorkerSourceTask.sendRecords(AbstractWorkerSourceTask.java:425)\n\tat org.apache.kafka.connect.runtime.AbstractWorkerSourceTask.execute(AbstractWorkerSourceTask.java:376)\n\tat org.apache.kafka.connect.runtime.WorkerTask.doRun(WorkerTask.java:243)\n\tat org.apache.kafka.connect.runtime.WorkerTask.run(WorkerTask.java:298)\n\tat java.base/java.lang.Thread.run(Thread.java:840)\nCaused by: org.apache.kafka.common.errors.InvalidTopicException: Invalid topics: [rb invalid topic!]\n";

    const TOPIC_ACL: &str = "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer send callback\n\tat org.apache.kafka.connect.runtime.WorkerSourceTask.maybeThrowProducerSendException(WorkerSourceTask.java:348)\n\tat org.apache.kafka.connect.runtime.WorkerTask.run(WorkerTask.java:298)\nCaused by: org.apache.kafka.common.errors.TopicAuthorizationException: Not authorized to access topics: [orders]\n";

    const SASL: &str = "org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512\n";

    const PG_PASSWORD: &str = "org.apache.kafka.connect.errors.ConnectException: Error while fetching the database schema\n\tat io.debezium.connector.postgresql.PostgresConnectorTask.start(PostgresConnectorTask.java:94)\nCaused by: org.postgresql.util.PSQLException: FATAL: password authentication failed for user \"debezium\"\n\tat org.postgresql.core.v3.ConnectionFactoryImpl.doAuthentication(ConnectionFactoryImpl.java:693)\n";

    const MISSING_CONFIG: &str = "org.apache.kafka.common.config.ConfigException: Missing required configuration \"database.hostname\" which has no default value.\n\tat org.apache.kafka.common.config.ConfigDef.parseValue(ConfigDef.java:493)\n\tat org.apache.kafka.common.config.ConfigDef.parse(ConfigDef.java:483)\n";

    const BAD_VALUE: &str = "org.apache.kafka.connect.errors.ConnectException: Failed to start task\nCaused by: org.apache.kafka.common.config.ConfigException: Invalid value abc for configuration batch.size: Not a number of type INT\n";

    const NO_CLASS: &str = "org.apache.kafka.connect.errors.ConnectException: Failed to find any class that implements Connector and which name matches io.confluent.connect.jdbc.JdbcSinkConnector, available connectors are: PluginDesc{klass=class org.apache.kafka.connect.file.FileStreamSinkConnector, name='org.apache.kafka.connect.file.FileStreamSinkConnector'}\n";

    const BAD_DATA: &str = "org.apache.kafka.connect.errors.ConnectException: Tolerance exceeded in error handler\n\tat org.apache.kafka.connect.runtime.errors.RetryWithToleranceOperator.execAndHandleError(RetryWithToleranceOperator.java:230)\nCaused by: org.apache.kafka.connect.errors.DataException: Failed to deserialize data for topic orders to Avro: \nCaused by: org.apache.kafka.common.errors.SerializationException: Unknown magic byte!\n";

    const TIMEOUT: &str = "org.apache.kafka.connect.errors.ConnectException: org.apache.kafka.common.errors.TimeoutException: Timeout expired while fetching topic metadata\n\tat org.apache.kafka.connect.runtime.WorkerSinkTask.poll(WorkerSinkTask.java:339)\n";

    const DB_DOWN: &str = "org.apache.kafka.connect.errors.ConnectException: java.sql.SQLException: Connection refused (Connection refused)\nCaused by: java.net.ConnectException: Connection refused\n";

    #[test]
    fn configuration_errors() {
        for t in [INVALID_TOPIC, MISSING_CONFIG, BAD_VALUE, NO_CLASS] {
            assert_eq!(classify_trace(t), TraceClass::Configuration, "{t}");
            assert!(classify_trace(t).blocks_restart());
        }
    }

    #[test]
    fn authorization_errors() {
        for t in [TOPIC_ACL, SASL, PG_PASSWORD] {
            assert_eq!(classify_trace(t), TraceClass::Authorization, "{t}");
            assert!(classify_trace(t).blocks_restart());
        }
    }

    #[test]
    fn other_errors_may_be_restarted() {
        for t in [BAD_DATA, TIMEOUT, DB_DOWN, ""] {
            assert_eq!(classify_trace(t), TraceClass::Other, "{t}");
            assert!(!classify_trace(t).blocks_restart());
        }
    }

    #[test]
    fn bounded_traces_keep_the_first_line_and_the_causes() {
        let b = bound_trace(INVALID_TOPIC, 300);
        assert!(b.chars().count() <= 300, "{b}");
        assert!(
            b.starts_with("org.apache.kafka.connect.errors.ConnectException"),
            "{b}"
        );
        assert!(
            b.contains("Caused by: org.apache.kafka.common.errors.InvalidTopicException"),
            "{b}"
        );
        assert!(b.contains("… 7 more lines"), "{b}");
        assert_eq!(bound_trace(SASL, 10_000), SASL);
        let huge = format!("x{}\nCaused by: root", "y".repeat(5000));
        let b = bound_trace(&huge, 100);
        assert!(
            b.chars().count() <= 110 && b.ends_with("Caused by: root"),
            "{b}"
        );
    }
}
