//! A fake Slack incoming webhook (`https://hooks.slack.com/services/T…/B…/…`).
//!
//! It checks what it receives the way Slack's webhook endpoint answers:
//!
//! | request | answer |
//! |---|---|
//! | `POST` to the webhook path, JSON object with a non-empty `text` string or a non-empty `blocks` array | **200** `text/plain` `ok`; the message is kept |
//! | body that is not a JSON object | **400** `invalid_payload` |
//! | JSON object without `text` and without `blocks` (or both empty) | **400** `no_text` |
//! | `text` that is not a string, `blocks` that is not an array | **400** `invalid_payload` |
//! | any other path | **404** `no_service` |
//! | webhook disabled ([`FakeSlack::revoke`]) | **403** `invalid_token` |
//! | channel archived ([`FakeSlack::archive_channel`]) | **410** `channel_is_archived` |
//!
//! Faults (429, 5xx, hangs, resets) come from the shared injector ([`FakeHttp::faults`]); a 429 with
//! Slack's `Retry-After` header is `Fault::StatusBody` plus [`FakeSlack::rate_limit_next`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use rb_testkit::http::slack::FakeSlack;
//! let slack = FakeSlack::start().await?;
//! let resp = reqwest::Client::new()
//!     .post(slack.webhook_url())
//!     .json(&serde_json::json!({"text": "connector orders-sink FAILED"}))
//!     .send()
//!     .await?;
//! assert_eq!(resp.text().await?, "ok");
//! assert_eq!(slack.messages()[0]["text"], "connector orders-sink FAILED");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::FakeHttp;

/// The webhook path the fake serves (team, bot and secret parts are fixed test values).
pub const WEBHOOK_PATH: &str = "/services/T0RB00001/B0RB00002/rbtestsecret0000000000000";

#[derive(Debug, Default)]
struct SlackState {
    messages: Vec<Value>,
    revoked: bool,
    archived: bool,
    rate_limited: u32,
    retry_after_secs: u64,
}

type Shared = Arc<Mutex<SlackState>>;

fn lock(s: &Shared) -> MutexGuard<'_, SlackState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake Slack webhook on `127.0.0.1:<ephemeral>`.
#[derive(Debug)]
pub struct FakeSlack {
    http: FakeHttp,
    state: Shared,
}

impl FakeSlack {
    /// Start the fake.
    pub async fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::default();
        let router = Router::new()
            .route("/services/{team}/{bot}/{secret}", post(webhook))
            .fallback(|| async { text(StatusCode::NOT_FOUND, "no_service") })
            .with_state(state.clone());
        Ok(Self {
            http: FakeHttp::start(router).await?,
            state,
        })
    }

    /// The underlying server (request record, faults).
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// The full webhook URL (base URL and [`WEBHOOK_PATH`]).
    pub fn webhook_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.http.base_url())
    }

    /// The messages accepted so far (the JSON bodies), oldest first.
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.state).messages.clone()
    }

    /// From now on answer 403 `invalid_token` (the webhook was revoked).
    pub fn revoke(&self) {
        lock(&self.state).revoked = true;
    }

    /// From now on answer 410 `channel_is_archived`.
    pub fn archive_channel(&self) {
        lock(&self.state).archived = true;
    }

    /// Answer the next `n` posts 429 `rate_limited` with `Retry-After: <secs>`.
    pub fn rate_limit_next(&self, n: u32, retry_after_secs: u64) {
        let mut s = lock(&self.state);
        s.rate_limited = n;
        s.retry_after_secs = retry_after_secs;
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// What Slack says about a body: `Ok(())` or the error word.
fn check(body: &[u8]) -> Result<Value, &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "invalid_payload")?;
    let obj = v.as_object().ok_or("invalid_payload")?;
    let text_ok = match obj.get("text") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => return Err("invalid_payload"),
    };
    let blocks_ok = match obj.get("blocks") {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => {
            if a.iter()
                .any(|b| b.get("type").and_then(Value::as_str).is_none())
            {
                return Err("invalid_blocks");
            }
            !a.is_empty()
        }
        Some(_) => return Err("invalid_payload"),
    };
    if !text_ok && !blocks_ok {
        return Err("no_text");
    }
    Ok(v)
}

async fn webhook(
    State(s): State<Shared>,
    Path((_team, _bot, secret)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    if !WEBHOOK_PATH.ends_with(&format!("/{secret}")) {
        return text(StatusCode::NOT_FOUND, "no_service");
    }
    if st.revoked {
        return text(StatusCode::FORBIDDEN, "invalid_token");
    }
    if st.archived {
        return text(StatusCode::GONE, "channel_is_archived");
    }
    if st.rate_limited > 0 {
        st.rate_limited -= 1;
        let secs = st.retry_after_secs.to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONTENT_TYPE, "text/plain".to_string()),
                (header::RETRY_AFTER, secs),
            ],
            "rate_limited",
        )
            .into_response();
    }
    match check(&body) {
        Ok(v) => {
            st.messages.push(v);
            text(StatusCode::OK, "ok")
        }
        Err(word) => text(StatusCode::BAD_REQUEST, word),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn shapes() {
        assert!(check(br#"{"text":"hi"}"#).is_ok());
        assert!(
            check(br#"{"blocks":[{"type":"section","text":{"type":"mrkdwn","text":"x"}}]}"#)
                .is_ok()
        );
        assert_eq!(check(br#"{"username":"rb"}"#).unwrap_err(), "no_text");
        assert_eq!(check(br#"{"text":""}"#).unwrap_err(), "no_text");
        assert_eq!(check(b"text=hi").unwrap_err(), "invalid_payload");
        assert_eq!(check(br#"["text"]"#).unwrap_err(), "invalid_payload");
        assert_eq!(check(br#"{"text":5}"#).unwrap_err(), "invalid_payload");
        assert_eq!(
            check(br#"{"blocks":[{"x":1}]}"#).unwrap_err(),
            "invalid_blocks"
        );
    }
}
