//! An Alertmanager webhook receiver: an axum [`Router`] that hands each notification (payload
//! version 4) to [`Engine::ingest_alertmanager_webhook`].
//!
//! Point an Alertmanager `webhook_config` at it:
//!
//! ```yaml
//! receivers:
//!   - name: rb
//!     webhook_configs:
//!       - url: http://127.0.0.1:9797/alertmanager/webhook
//!         http_config:
//!           authorization: { type: Bearer, credentials_file: /etc/alertmanager/rb.token }
//! ```
//!
//! | request | answer |
//! | --- | --- |
//! | no `Authorization: Bearer`, or a wrong token | **401** (with `WWW-Authenticate: Bearer`); the body is not read |
//! | a body over the limit ([`AlertReceiver::max_body`], 1 MiB by default) | **413** |
//! | a body that is not a v4 webhook payload (bad JSON, another version, an alert without `alertname`) | **400** with the reason in plain text |
//! | a payload whose alerts were all handed to the engine | **200** `{"ingested": N}` |
//!
//! Alertmanager retries a notification on 5xx and gives up on other 4xx, so a body that can never
//! be ingested gets a 4xx. The answer is 2xx only once every alert of the body is in the engine's
//! inbox (judged on its next round, through the same path as probes).
//!
//! **Idempotent.** Alertmanager sends a group again every `group_interval` while it changes and
//! every `repeat_interval` while it does not, and resends a notification whose answer it did not
//! get. Each alert is judged on its own newest state (its fingerprint), so the same notification
//! received twice opens no second incident, journals nothing more and resolves nothing twice.
//!
//! The token is compared in constant time and never logged.
//!
//! ```no_run
//! # async fn demo(engine: rb_core::Engine) -> std::io::Result<()> {
//! use rb_core::receiver::AlertReceiver;
//! use rb_core::Secret;
//! let receiver = AlertReceiver::new(engine, Secret::from_env("RB_WEBHOOK_TOKEN").unwrap_or_else(|| Secret::new("")));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9797").await?;
//! receiver.serve(listener, std::future::pending()).await
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::engine::Engine;
use crate::secret::Secret;

/// The path [`AlertReceiver::router`] serves notifications on.
pub const DEFAULT_PATH: &str = "/alertmanager/webhook";

/// The default body-size limit: 1 MiB (a group of a few thousand alerts).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// An Alertmanager webhook receiver for one engine (see the [module docs](self)).
#[derive(Clone)]
pub struct AlertReceiver {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    token: Secret,
    max_body: usize,
    path: String,
}

impl fmt::Debug for AlertReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertReceiver")
            .field("path", &self.inner.path)
            .field("max_body", &self.inner.max_body)
            .field("token", &self.inner.token)
            .finish()
    }
}

impl AlertReceiver {
    /// A receiver feeding `engine`, accepting only requests that carry `Authorization: Bearer
    /// <token>`. An empty token accepts nothing.
    pub fn new(engine: Engine, token: Secret) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                token,
                max_body: DEFAULT_MAX_BODY,
                path: DEFAULT_PATH.to_string(),
            }),
        }
    }

    /// Refuse bodies larger than `bytes` with 413 (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(self, bytes: usize) -> Self {
        self.with(|i| i.max_body = bytes)
    }

    /// Serve on `path` instead of [`DEFAULT_PATH`] (it must start with `/`).
    pub fn path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.with(|i| i.path = path)
    }

    fn with(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                engine: shared.engine.clone(),
                token: shared.token.clone(),
                max_body: shared.max_body,
                path: shared.path.clone(),
            },
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The path notifications are served on.
    pub fn webhook_path(&self) -> &str {
        &self.inner.path
    }

    /// An axum router with one route, `POST <path>`; merge it into an application's router or
    /// serve it alone with [`AlertReceiver::serve`].
    pub fn router(&self) -> Router {
        Router::new()
            .route(&self.inner.path, post(handle))
            .with_state(self.inner.clone())
    }

    /// Serve the router on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Whether `given` equals `expected`, in time that depends only on the length of `expected`.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!*e);
        diff |= g ^ e;
    }
    std::hint::black_box(diff) == 0
}

fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let expected = token.expose().as_bytes();
    if expected.is_empty() {
        return false;
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    // the scheme is case-insensitive (RFC 9110 §11.1)
    let Some(given) = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| value.get(7..))
    else {
        return false;
    };
    constant_time_eq(given, expected)
}

fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !authorized(&parts.headers, &inner.token) {
        tracing::warn!(path = %inner.path, "alertmanager webhook refused: missing or wrong bearer token");
        let mut resp = text(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required\n".into(),
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the notification is larger than this receiver's limit of {} bytes\n",
                inner.max_body
            ),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > inner.max_body as u64) {
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, inner.max_body).await {
        Ok(b) => b,
        Err(e) => {
            // to_bytes fails with a length-limit error past the limit, else the body broke off
            let limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if limit {
                too_large()
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the notification: {e}\n"),
                )
            };
        }
    };
    match inner.engine.ingest_alertmanager_webhook(&bytes) {
        Ok(n) => {
            tracing::debug!(alerts = n, "alertmanager webhook ingested");
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "ingested": n })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "alertmanager webhook refused");
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3cretX", b"s3cret"));
        assert!(!constant_time_eq(b"S3cret", b"s3cret"));
        assert!(!constant_time_eq(b"", b"s3cret"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let token = Secret::new("tok");
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            h
        };
        assert!(authorized(&with("Bearer tok"), &token));
        assert!(authorized(&with("bearer tok"), &token));
        assert!(!authorized(&with("Basic tok"), &token));
        assert!(!authorized(&with("Bearer tok2"), &token));
        assert!(!authorized(&with("Bearer"), &token));
        assert!(!authorized(&HeaderMap::new(), &token));
        assert!(!authorized(&with("Bearer "), &Secret::new("")));
    }
}
