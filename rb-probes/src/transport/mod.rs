//! The HTTP transport shared by the REST families (Flink, Nessie, Prometheus, Kafka Connect, Trino,
//! MinIO, Loki, the generic HTTP probe — and rb-actions' remediations on the same systems).
//!
//! Probe logic talks to an [`HttpClient`], a one-method trait over plain request and response values,
//! so it can be driven by anything; [`ReqwestClient`] is the adapter for real servers (rustls, bearer or
//! basic authentication, a private CA, a client certificate). [`decode_json`] turns a response into a
//! typed value or a [`ProbeError`] that names the status, or the JSON pointer, line and column where
//! the body went wrong.

mod reqwest_client;

pub use reqwest_client::{ReqwestClient, ReqwestClientBuilder};

use std::fmt::{self, Debug};
use std::time::Duration;

use async_trait::async_trait;
use rb_core::{ErrorKind, ProbeError, Secret};
use serde::de::DeserializeOwned;

use crate::common::ProbeSite;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Whether the method changes server state (everything but `GET` and `HEAD`).
    pub fn is_mutating(self) -> bool {
        !matches!(self, Method::Get | Method::Head)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, relative to the client's base URL.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// Path and query (`/jobs/overview`, `/api/v1/query?query=up`), starting with `/`.
    pub path: String,
    /// Extra headers (`X-Trino-User`). Authentication is the client's, not the request's.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

impl Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

impl HttpRequest {
    /// A request with no body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::Get, path)
    }

    /// A request with a JSON body (sets `Content-Type: application/json`).
    pub fn json(method: Method, path: impl Into<String>, body: &serde_json::Value) -> Self {
        let mut r = Self::new(method, path);
        r.body = Some(body.to_string().into_bytes());
        r.headers
            .push(("content-type".into(), "application/json".into()));
        r
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (bounded by the client's limit).
    pub body: Vec<u8>,
    /// Time from sending the request to the end of the body.
    pub elapsed: Duration,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (lossy), at most `max` characters, for error messages.
    pub fn snippet(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut s: String = text.chars().take(max).collect();
        if text.chars().count() > max {
            s.push('…');
        }
        s
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be made (refused, reset, DNS, TLS handshake).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No complete answer within the client's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer was cut off or larger than allowed.
    #[error("broken answer: {0}")]
    Body(String),
    /// The request could not be built (a bad URL, a bad header).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Anything else on the way.
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// The rb error kind this maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransportError::Connect(_) => ErrorKind::Unreachable,
            TransportError::Timeout(_) => ErrorKind::Timeout,
            TransportError::Body(_) => ErrorKind::BadResponse,
            TransportError::Invalid(_) => ErrorKind::Invalid,
            TransportError::Other(_) => ErrorKind::Other,
        }
    }

    /// As a [`ProbeError`] at `site`.
    pub fn at(&self, site: &ProbeSite<'_>) -> ProbeError {
        site.error(self.kind(), self.to_string())
    }
}

/// Sends requests to one HTTP endpoint. Implemented by [`ReqwestClient`] for real servers; implement it
/// yourself to route through your own stack or to script answers in a test.
#[async_trait]
pub trait HttpClient: Send + Sync + Debug {
    /// The base URL requests are relative to (as configured; errors redact its credentials).
    fn base_url(&self) -> &str;

    /// Send one request.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError>;

    /// The full URL of `path`, for error messages.
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url().trim_end_matches('/'), path)
    }
}

#[async_trait]
impl<C: HttpClient + ?Sized> HttpClient for std::sync::Arc<C> {
    fn base_url(&self) -> &str {
        (**self).base_url()
    }
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        (**self).send(request).await
    }
}

/// How a client authenticates.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum HttpAuth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>` (Nessie, MinIO's metrics endpoint, a JWT for Trino).
    Bearer(Secret),
    /// `Authorization: Basic` (Trino's password authenticator, Prometheus behind a proxy).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
}

/// Check the status and decode a JSON body into `T`.
///
/// - 401 and 403 → [`ErrorKind::Unauthorized`]; any other non-2xx → [`ErrorKind::Rejected`] with the
///   status and the start of the body;
/// - a body that is not the expected JSON → [`ErrorKind::BadResponse`] naming the JSON pointer of the
///   offending value, and the line and column.
pub fn decode_json<T: DeserializeOwned>(
    site: &ProbeSite<'_>,
    response: &HttpResponse,
) -> Result<T, ProbeError> {
    check_status(site, response)?;
    parse_json(site, &response.body)
}

/// A non-2xx status as an error (see [`decode_json`]); `Ok` for 2xx.
pub fn check_status(site: &ProbeSite<'_>, response: &HttpResponse) -> Result<(), ProbeError> {
    if response.is_success() {
        return Ok(());
    }
    let kind = match response.status {
        401 | 403 => ErrorKind::Unauthorized,
        _ => ErrorKind::Rejected,
    };
    Err(site.error(
        kind,
        format!("HTTP {}: {}", response.status, response.snippet(300)),
    ))
}

/// Decode JSON bytes into `T`, naming where they went wrong (see [`decode_json`]).
pub fn parse_json<T: DeserializeOwned>(site: &ProbeSite<'_>, body: &[u8]) -> Result<T, ProbeError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = json_pointer(e.path());
        let inner = e.into_inner();
        site.error(
            ErrorKind::BadResponse,
            format!(
                "malformed JSON at {path} (line {}, column {}): {inner}",
                inner.line(),
                inner.column()
            ),
        )
    })
}

/// A serde path as an RFC 6901 JSON pointer (`/jobs/0/state`; the whole document is ``).
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in path.iter() {
        s.push('/');
        match seg {
            Segment::Seq { index } => s.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                s.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => s.push('?'),
        }
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> ProbeSite<'static> {
        ProbeSite {
            probe: "t.probe",
            target: "t1",
            endpoint: "http://u:pw@h:1/x",
        }
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
            elapsed: Duration::ZERO,
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Jobs {
        jobs: Vec<Job>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Job {
        id: String,
        state: String,
    }

    #[test]
    fn malformed_json_names_pointer_line_and_column() {
        let body = "{\"jobs\":[{\"id\":\"a\",\"state\":\"RUNNING\"},\n{\"id\":\"b\",\"state\":7}]}";
        let e = decode_json::<Jobs>(&site(), &resp(200, body)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadResponse);
        assert!(e.message.contains("/jobs/1/state"), "{}", e.message);
        assert!(e.message.contains("line 2"), "{}", e.message);
        assert!(!e.to_string().contains("pw"), "credentials leaked: {e}");
    }

    #[test]
    fn statuses_map_to_kinds() {
        let e = decode_json::<Jobs>(&site(), &resp(401, "no")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        let e = decode_json::<Jobs>(&site(), &resp(503, "busy")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(e.message.contains("503") && e.message.contains("busy"));
    }

    #[test]
    fn truncated_body_is_bad_response() {
        let e = decode_json::<Jobs>(&site(), &resp(200, "{\"jobs\":[{\"id\":\"a\"")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadResponse);
    }
}
