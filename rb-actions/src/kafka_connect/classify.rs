//! Which failures a restart cannot fix: a pure classifier of Kafka Connect stack traces.
//!
//! A task that failed on its configuration (a `ConfigException`, a missing class, a bad converter) or
//! on its credentials (SASL authentication, an ACL denial, a database refusing the password) fails
//! again the moment it is restarted. The seed runbook's order is "restart *after* fixing the
//! configuration": such a failure needs a human first.

use serde::{Deserialize, Serialize};

/// Why a trace says a restart will not help, or that it may.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum TraceClass {
    /// The configuration is wrong: a human must fix it before any restart.
    Configuration {
        /// The marker found in the trace (`org.apache.kafka.common.config.ConfigException`).
        marker: String,
    },
    /// Credentials or permissions are refused: a human must fix them before any restart.
    Authorization {
        /// The marker found in the trace.
        marker: String,
    },
    /// Nothing says a restart is futile (a timeout, a lost connection, a bug): restart may help.
    Restartable,
}

impl TraceClass {
    /// Whether a human must fix something before a restart can help.
    pub fn needs_human(&self) -> bool {
        !matches!(self, TraceClass::Restartable)
    }
}

/// Markers of configuration errors (matched case-sensitively: they are Java class names).
const CONFIG_MARKERS: &[&str] = &[
    "org.apache.kafka.common.config.ConfigException",
    "ConfigException",
    "org.apache.kafka.connect.errors.DataException: Converting byte[] to Kafka Connect data failed due to serialization error",
    "ClassNotFoundException",
    "NoClassDefFoundError",
    "Failed to find any class that implements Connector",
    "Missing required configuration",
    "InvalidConfigurationException",
    "InvalidTopicException",
    "UnknownTopicOrPartitionException: This server does not host this topic-partition",
];

/// Markers of authentication and authorization errors.
const AUTH_MARKERS: &[&str] = &[
    "SaslAuthenticationException",
    "AuthenticationException",
    "AuthorizationException",
    "TopicAuthorizationException",
    "GroupAuthorizationException",
    "ClusterAuthorizationException",
    "TransactionalIdAuthorizationException",
    "SslAuthenticationException",
    "InvalidCredentials",
];

/// Lower-case phrases of authentication and authorization errors from the systems connectors talk to
/// (databases, object stores, HTTP sinks).
const AUTH_PHRASES: &[&str] = &[
    "access denied",
    "not authorized",
    "unauthorized",
    "permission denied",
    "password authentication failed",
    "authentication failed",
    "invalid credentials",
    "forbidden",
];

/// Classify a Kafka Connect `trace` (the `trace` field of a FAILED connector or task status). Every
/// `Caused by:` of the chain counts: a `ConnectException` wrapping a `ConfigException` is a
/// configuration error. Authorization wins over configuration when both appear (a denied topic
/// surfaces as a config-looking wrapper in some connectors).
pub fn classify_trace(trace: &str) -> TraceClass {
    if let Some(m) = AUTH_MARKERS.iter().find(|m| trace.contains(**m)) {
        return TraceClass::Authorization {
            marker: (*m).to_string(),
        };
    }
    let lower = trace.to_ascii_lowercase();
    if let Some(m) = AUTH_PHRASES.iter().find(|m| lower.contains(**m)) {
        return TraceClass::Authorization {
            marker: (*m).to_string(),
        };
    }
    if let Some(m) = CONFIG_MARKERS.iter().find(|m| trace.contains(**m)) {
        return TraceClass::Configuration {
            marker: (*m).to_string(),
        };
    }
    TraceClass::Restartable
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    const CONFIG: &str = "org.apache.kafka.connect.errors.ConnectException: Failed to start task orders-sink-0\n\
        \tat org.apache.kafka.connect.runtime.WorkerTask.doRun(WorkerTask.java:230)\n\
        Caused by: org.apache.kafka.common.config.ConfigException: Invalid value /nonexistent/dir/out.txt for configuration file: directory does not exist\n\
        \tat org.apache.kafka.connect.file.FileStreamSinkTask.start(FileStreamSinkTask.java:77)\n";

    const SASL: &str = "org.apache.kafka.connect.errors.ConnectException: org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512\n\
        \tat org.apache.kafka.connect.runtime.WorkerSinkTask.poll(WorkerSinkTask.java:349)\n";

    const TOPIC_ACL: &str = "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to unrecoverable exception.\n\
        Caused by: org.apache.kafka.common.errors.TopicAuthorizationException: Not authorized to access topics: [orders]\n";

    const JDBC_PASSWORD: &str = "org.apache.kafka.connect.errors.ConnectException: java.sql.SQLException: Exception chain:\n\
        org.postgresql.util.PSQLException: FATAL: password authentication failed for user \"connect\"\n\
        \tat io.confluent.connect.jdbc.sink.JdbcSinkTask.put(JdbcSinkTask.java:122)\n";

    const MYSQL_DENIED: &str = "org.apache.kafka.connect.errors.ConnectException: java.sql.SQLException: Access denied for user 'connect'@'10.0.0.7' (using password: YES)\n";

    const S3_FORBIDDEN: &str = "org.apache.kafka.connect.errors.ConnectException: software.amazon.awssdk.services.s3.model.S3Exception: Access Denied (Service: S3, Status Code: 403)\n";

    const MISSING_PLUGIN: &str = "org.apache.kafka.connect.errors.ConnectException: Failed to find any class that implements Connector and which name matches io.debezium.connector.mysql.MySqlConnector\n";

    const BAD_TOPIC: &str = "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer send callback\n\tat org.apache.kafka.connect.runtime.WorkerSourceTask.maybeThrowProducerSendException(WorkerSourceTask.java:348)\nCaused by: org.apache.kafka.common.errors.InvalidTopicException: Invalid topics: [rb invalid topic!]\n";

    const TIMEOUT: &str = "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSourceTask due to unrecoverable exception.\n\
        Caused by: org.apache.kafka.common.errors.TimeoutException: Expiring 12 record(s) for orders-0:120001 ms has passed since batch creation\n";

    const DISCONNECT: &str = "org.apache.kafka.connect.errors.ConnectException: java.net.SocketException: Connection reset\n\
        \tat io.confluent.connect.jdbc.util.CachedConnectionProvider.getConnection(CachedConnectionProvider.java:59)\n";

    const NPE: &str = "java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"value\" is null\n\
        \tat com.example.OrdersTransform.apply(OrdersTransform.java:42)\n";

    #[test]
    fn configuration_errors_need_a_human() {
        for t in [CONFIG, MISSING_PLUGIN, BAD_TOPIC] {
            let c = classify_trace(t);
            assert!(matches!(c, TraceClass::Configuration { .. }), "{c:?}: {t}");
            assert!(c.needs_human());
        }
        assert_eq!(
            classify_trace(CONFIG),
            TraceClass::Configuration {
                marker: "org.apache.kafka.common.config.ConfigException".into()
            }
        );
    }

    #[test]
    fn credential_and_permission_errors_need_a_human() {
        for t in [SASL, TOPIC_ACL, JDBC_PASSWORD, MYSQL_DENIED, S3_FORBIDDEN] {
            let c = classify_trace(t);
            assert!(matches!(c, TraceClass::Authorization { .. }), "{c:?}: {t}");
        }
        assert_eq!(
            classify_trace(SASL),
            TraceClass::Authorization {
                marker: "SaslAuthenticationException".into()
            }
        );
    }

    #[test]
    fn transient_failures_and_bugs_may_be_restarted() {
        for t in [TIMEOUT, DISCONNECT, NPE, ""] {
            assert_eq!(classify_trace(t), TraceClass::Restartable, "{t}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_a_config_cause_anywhere_is_found(prefix in ".{0,200}", suffix in ".{0,200}") {
            let _ = classify_trace(&prefix);
            let t = format!("{prefix}\nCaused by: org.apache.kafka.common.config.ConfigException: bad\n{suffix}");
            prop_assert!(classify_trace(&t).needs_human());
        }
    }
}
