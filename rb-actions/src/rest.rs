//! The REST plumbing the HTTP families share: sending through an [`HttpClient`], turning transport
//! failures, statuses and bodies into typed [`RemediationError`]s.
//!
//! | what went wrong | read (`GET`) | write (`POST`, `PUT`, `PATCH`, `DELETE`) |
//! | --- | --- | --- |
//! | connection refused (no connection could be made) | `Unreachable` | `Unreachable` (nothing was sent) |
//! | no answer in time, hang | `Timeout` | `OutcomeUnknown` (sent; it may have happened) |
//! | answer cut off, connection reset or dropped under the request | `BadResponse` | `OutcomeUnknown` |
//! | 401 / 403 | `Unauthorized` | `Unauthorized` |
//! | 409 | `Conflict` | `Conflict` |
//! | other non-2xx | `Rejected` | `Rejected` |
//! | 2xx with a body that is not the expected JSON | `BadResponse` | `OutcomeUnknown` (it was accepted, its result is unreadable) |

// `RemediationError` is rb-core's error type, returned by value by the `Remediation` trait.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use rb_core::{ErrorKind, RemediationError};
use rb_probes::common::ProbeSite;
use rb_probes::transport::{parse_json, HttpClient, HttpRequest, HttpResponse, TransportError};
use serde::de::DeserializeOwned;

/// Who is calling, for errors: the remediation, its target, the client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site<'a> {
    pub action: &'a str,
    pub target: &'a str,
    pub client: &'a dyn HttpClient,
}

impl<'a> Site<'a> {
    pub(crate) fn new(action: &'a str, target: &'a str, client: &'a dyn HttpClient) -> Self {
        Self {
            action,
            target,
            client,
        }
    }

    /// An error of `kind` at `path`.
    pub(crate) fn err(
        &self,
        path: &str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> RemediationError {
        RemediationError::new(
            self.action,
            self.target,
            self.client.url(path),
            kind,
            message,
        )
    }

    /// Send `req`; a transport failure becomes a typed error (see the module table).
    pub(crate) async fn send(&self, req: HttpRequest) -> Result<HttpResponse, RemediationError> {
        let method = req.method;
        let path = req.path.clone();
        self.client
            .send(req)
            .await
            .map_err(|e| self.transport(method.as_str(), method.is_mutating(), &path, &e))
    }

    fn transport(
        &self,
        method: &str,
        mutating: bool,
        path: &str,
        e: &TransportError,
    ) -> RemediationError {
        let kind = match (mutating, e) {
            (_, TransportError::Connect(_)) => ErrorKind::Unreachable,
            (_, TransportError::Invalid(_)) => ErrorKind::Invalid,
            (true, _) => ErrorKind::OutcomeUnknown,
            // an answer cut off or a connection reset under a read: a broken answer
            (false, TransportError::Other(_)) => ErrorKind::BadResponse,
            (false, e) => e.kind(),
        };
        let message = if kind == ErrorKind::OutcomeUnknown {
            format!("{method} {path} was sent but its answer was lost ({e}): it may or may not have taken effect")
        } else {
            format!("{method} {path}: {e}")
        };
        self.err(path, kind, message)
            .with_details(serde_json::json!({ "request": format!("{method} {path}") }))
    }

    /// A non-2xx answer as an error: 401/403 unauthorized, 409 conflict, anything else rejected.
    /// `message` is what the server said (extracted by the family).
    pub(crate) fn status_error(
        &self,
        method: &str,
        path: &str,
        status: u16,
        message: &str,
    ) -> RemediationError {
        let kind = match status {
            401 | 403 => ErrorKind::Unauthorized,
            409 => ErrorKind::Conflict,
            _ => ErrorKind::Rejected,
        };
        self.err(
            path,
            kind,
            format!("{method} {path}: HTTP {status}: {message}"),
        )
        .with_details(
            serde_json::json!({ "status": status, "request": format!("{method} {path}") }),
        )
    }

    /// Decode a 2xx body into `T`: an unreadable answer to a read is a bad response, to a write an
    /// unknown outcome (it was accepted, its result cannot be read).
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        method: &str,
        mutating: bool,
        path: &str,
        body: &[u8],
    ) -> Result<T, RemediationError> {
        let url = self.client.url(path);
        let site = ProbeSite {
            probe: self.action,
            target: self.target,
            endpoint: &url,
        };
        parse_json::<T>(&site, body).map_err(|e| {
            if mutating {
                self.err(
                    path,
                    ErrorKind::OutcomeUnknown,
                    format!("{method} {path} was accepted but its answer cannot be read ({}): it may or may not have taken effect", e.message),
                )
            } else {
                self.err(path, e.kind, format!("{method} {path}: {}", e.message))
            }
        })
    }
}

/// 32 lower-case hex digits derived from `parts` (stable: the same parts give the same id).
#[cfg_attr(not(feature = "flink"), allow(dead_code))]
pub(crate) fn stable_hex32(parts: &[&str]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for p in parts {
        for byte in p.bytes().chain(std::iter::once(0xff)) {
            a ^= u64::from(byte);
            a = a.wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ u64::from(byte))
                .rotate_left(7)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    format!("{a:016x}{b:016x}")
}

/// 32 hex digits that differ from call to call (time, process and a counter), for ids outside an
/// incident.
#[cfg_attr(not(feature = "flink"), allow(dead_code))]
pub(crate) fn fresh_hex32(seed: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed).to_string();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
        .to_string();
    stable_hex32(&[seed, &n, &nanos, &std::process::id().to_string()])
}

/// Whether `s` is 32 hex digits (a Flink job id).
#[cfg_attr(not(feature = "flink"), allow(dead_code))]
pub(crate) fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
