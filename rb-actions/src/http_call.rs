//! Calls of the REST remediations (Kafka Connect, Trino) over [`HttpClient`], with the errors a
//! remediation owes the engine: a mutating request whose answer is lost is *outcome unknown*, never a
//! plain failure.

use rb_core::{ErrorKind, RemediationError};
use rb_probes::common::ProbeSite;
use rb_probes::transport::{parse_json, HttpClient, HttpRequest, HttpResponse, TransportError};
use serde::de::DeserializeOwned;

/// Who is calling: the remediation id and the target name, for errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub(crate) action: &'a str,
    pub(crate) target: &'a str,
}

impl Caller<'_> {
    /// An error of `kind` at `endpoint`.
    pub(crate) fn error(
        &self,
        endpoint: &str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> RemediationError {
        RemediationError::new(self.action, self.target, endpoint, kind, message)
    }

    /// Send `request`; a transport failure becomes a typed error. For a mutating request, a failure
    /// after the request may have reached the server (timeout, broken answer, dropped connection) is
    /// [`ErrorKind::OutcomeUnknown`]; a refused connection is [`ErrorKind::Unreachable`] (nothing was sent).
    pub(crate) async fn send(
        &self,
        client: &dyn HttpClient,
        request: HttpRequest,
    ) -> Result<HttpResponse, RemediationError> {
        let method = request.method;
        let url = client.url(&request.path);
        let line = format!("{method} {}", request.path);
        client.send(request).await.map_err(|e| {
            let kind = match (&e, method.is_mutating()) {
                (TransportError::Connect(_), _) => ErrorKind::Unreachable,
                (TransportError::Invalid(_), _) => ErrorKind::Invalid,
                (_, true) => ErrorKind::OutcomeUnknown,
                // a connection closed before the answer was complete: a broken answer
                (TransportError::Other(_), false) => ErrorKind::BadResponse,
                (other, false) => other.kind(),
            };
            let message = if kind == ErrorKind::OutcomeUnknown {
                format!("{line} was sent but its answer was lost ({e}): it may or may not have taken effect")
            } else {
                format!("{line}: {e}")
            };
            self.error(&url, kind, message)
                .with_details(serde_json::json!({ "request": line }))
        })
    }

    /// A non-2xx answer as an error: 401/403 → Unauthorized, 404 → Invalid (no such object),
    /// 409 → Conflict, anything else → Rejected. The details keep the status and the body's start.
    pub(crate) fn status_error(
        &self,
        client: &dyn HttpClient,
        line: &str,
        response: &HttpResponse,
    ) -> RemediationError {
        let kind = match response.status {
            401 | 403 => ErrorKind::Unauthorized,
            404 | 410 => ErrorKind::Invalid,
            409 => ErrorKind::Conflict,
            _ => ErrorKind::Rejected,
        };
        let path = line.split_once(' ').map(|(_, p)| p).unwrap_or(line);
        self.error(
            &client.url(path),
            kind,
            format!(
                "{line} answered HTTP {}: {}",
                response.status,
                response.snippet(300)
            ),
        )
        .with_details(serde_json::json!({
            "request": line,
            "status": response.status,
            "body": response.snippet(2000),
        }))
    }

    /// Decode a 2xx JSON answer; a body that is not the expected JSON is [`ErrorKind::BadResponse`]
    /// naming the JSON pointer, line and column.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        client: &dyn HttpClient,
        line: &str,
        response: &HttpResponse,
    ) -> Result<T, RemediationError> {
        if !response.is_success() {
            return Err(self.status_error(client, line, response));
        }
        let path = line.split_once(' ').map(|(_, p)| p).unwrap_or(line);
        let url = client.url(path);
        let site = ProbeSite {
            probe: self.action,
            target: self.target,
            endpoint: &url,
        };
        parse_json(&site, &response.body).map_err(|e| {
            self.error(&url, e.kind(), format!("{line}: {}", e.message))
                .with_details(serde_json::json!({ "request": line, "status": response.status }))
        })
    }

    /// GET `path` and decode it.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        client: &dyn HttpClient,
        request: HttpRequest,
    ) -> Result<T, RemediationError> {
        let line = format!("{} {}", request.method, request.path);
        let response = self.send(client, request).await?;
        self.decode(client, &line, &response)
    }
}

/// Cut `s` to at most `max` characters, marking the cut with `…`.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
