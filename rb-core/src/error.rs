//! Errors: one type per group of operations, each `#[non_exhaustive]`, with [`ErrorKind`] and
//! `is_transient()`. Messages name the target, the endpoint and what was wrong; secrets never appear
//! (endpoints pass through [`crate::secret::redact_url`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::redact_url;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The broad class of an error, shared by every error type of rb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The endpoint could not be reached (refused, reset, DNS).
    Unreachable,
    /// The deadline passed.
    Timeout,
    /// Credentials were refused.
    Unauthorized,
    /// The answer could not be understood (malformed JSON, truncated frame, unexpected text).
    BadResponse,
    /// The server answered with an error status or error frame.
    Rejected,
    /// The configuration or the call was invalid.
    Invalid,
    /// A safety policy refused the action.
    Refused,
    /// Storage failed.
    Storage,
    /// The server refused because its state changed under us (a Nessie merge conflict, an expected hash
    /// that moved): the error's details name what conflicted.
    Conflict,
    /// The request was sent but its answer was lost (timed out, connection dropped after sending): the
    /// action may or may not have happened.
    OutcomeUnknown,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether retrying later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unreachable | ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::BadResponse => "bad response",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Refused => "refused by policy",
            ErrorKind::Storage => "storage",
            ErrorKind::Conflict => "conflict",
            ErrorKind::OutcomeUnknown => "outcome unknown",
            ErrorKind::Other => "other",
        };
        f.write_str(s)
    }
}

/// Why a probe could not observe its target. A probe that fails says so: rb never reads it as healthy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("probe {probe} on {target}: {kind} at {endpoint}: {message}")]
pub struct ProbeError {
    /// The probe id.
    pub probe: String,
    /// The target name.
    pub target: String,
    /// The endpoint (redacted URL, `host:port`, or a command).
    pub endpoint: String,
    /// The class of failure.
    pub kind: ErrorKind,
    /// What was wrong, for a human.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<BoxError>,
}

impl ProbeError {
    /// A new probe error; `endpoint` is redacted.
    pub fn new(
        probe: impl Into<String>,
        target: impl Into<String>,
        endpoint: impl AsRef<str>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            probe: probe.into(),
            target: target.into(),
            endpoint: redact_url(endpoint.as_ref()),
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The deadline passed.
    pub fn timeout(probe: &str, target: &str, endpoint: &str, after: Duration) -> Self {
        Self::new(
            probe,
            target,
            endpoint,
            ErrorKind::Timeout,
            format!("no answer within {after:?}"),
        )
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// Why a remediation could not plan, apply or verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("remediation {action} on {target}: {kind} at {endpoint}: {message}")]
pub struct RemediationError {
    /// The remediation id (`flink.rescale`).
    pub action: String,
    /// The target name (or a list).
    pub target: String,
    /// The endpoint (redacted).
    pub endpoint: String,
    /// The class of failure.
    pub kind: ErrorKind,
    /// What was wrong.
    pub message: String,
    /// Structured details kept in the journal (the conflicting keys of a merge, the HTTP status);
    /// `null` when none. Boxed: errors stay small on the happy path.
    pub details: Box<serde_json::Value>,
    /// The underlying error.
    #[source]
    pub source: Option<BoxError>,
}

impl RemediationError {
    /// Attach structured details (journaled with the error, never flattened into its message).
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Box::new(details);
        self
    }

    /// The error as the journal keeps it: kind, message and details.
    pub fn record(&self) -> ErrorRecord {
        ErrorRecord {
            kind: self.kind,
            message: self.to_string(),
            details: (*self.details).clone(),
        }
    }

    /// A new remediation error; `endpoint` is redacted.
    pub fn new(
        action: impl Into<String>,
        target: impl Into<String>,
        endpoint: impl AsRef<str>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            action: action.into(),
            target: target.into(),
            endpoint: redact_url(endpoint.as_ref()),
            kind,
            message: message.into(),
            details: Box::new(serde_json::Value::Null),
            source: None,
        }
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying later may succeed. The engine retries only idempotent remediations, and only
    /// on transient errors.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// An error as the journal keeps it: its kind, its message and its structured details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The class of failure.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
    /// Structured details (`null` when none).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// A journal store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("journal {store}: {kind}: {message}")]
pub struct JournalError {
    /// Which store (`memory`, `sqlite:/path`).
    pub store: String,
    /// The class of failure.
    pub kind: ErrorKind,
    /// What was wrong.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<BoxError>,
}

impl JournalError {
    /// A new journal error.
    pub fn new(store: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// A notifier could not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("notify {channel}: {kind}: {message}")]
pub struct NotifyError {
    /// The channel (`slack:#data-ops`).
    pub channel: String,
    /// The class of failure.
    pub kind: ErrorKind,
    /// What was wrong.
    pub message: String,
}

impl NotifyError {
    /// A new notify error.
    pub fn new(channel: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            kind,
            message: message.into(),
        }
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// An approver could not decide (its channel failed). A timeout is not an error: it is
/// [`crate::policy::Decision::TimedOut`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("approval for {action}: {message}")]
pub struct ApprovalError {
    /// The remediation id.
    pub action: String,
    /// What was wrong.
    pub message: String,
}

impl ApprovalError {
    /// A new approval error.
    pub fn new(action: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            message: message.into(),
        }
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// An error of the engine or of building a runbook.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runbook is not valid (duplicate ids, unknown on-call role, empty target set…).
    #[error("invalid runbook: {0}")]
    Config(String),
    /// The journal failed; the engine stops acting rather than act without a record.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A signal could not be parsed.
    #[error("signal from {source_name}: {message}")]
    Signal {
        /// Where it came from (`alertmanager`).
        source_name: String,
        /// What was wrong.
        message: String,
    },
    /// No such incident.
    #[error("no incident {0}")]
    UnknownIncident(String),
    /// The coordination store refused or failed (see [`crate::coordination`]).
    #[error(transparent)]
    Coordination(#[from] crate::coordination::CoordinationError),
}

impl Error {
    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Invalid,
            Error::Journal(e) => e.kind(),
            Error::Signal { .. } => ErrorKind::BadResponse,
            Error::UnknownIncident(_) => ErrorKind::Invalid,
            Error::Coordination(e) => match e.kind() {
                crate::coordination::CoordinationErrorKind::Storage => ErrorKind::Storage,
                crate::coordination::CoordinationErrorKind::Invalid => ErrorKind::Invalid,
                _ => ErrorKind::Conflict,
            },
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_error_names_target_endpoint_cause_and_redacts() {
        let e = ProbeError::new(
            "pg.connections",
            "pg-main",
            "postgres://rb:pw@127.0.0.1/db",
            ErrorKind::Unauthorized,
            "password authentication failed",
        );
        let s = e.to_string();
        assert!(
            s.contains("pg-main")
                && s.contains("127.0.0.1")
                && s.contains("password authentication")
        );
        assert!(!s.contains(":pw@"));
        assert!(!e.is_transient());
        assert!(ProbeError::timeout("p", "t", "e", Duration::from_secs(1)).is_transient());
    }
}
