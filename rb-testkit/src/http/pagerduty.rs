//! A fake PagerDuty Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`).
//!
//! It validates events against the documented shape and keeps the alert each `dedup_key` names:
//!
//! | field | rule |
//! |---|---|
//! | `routing_key` | required, a 32-character string (the integration key); when the fake knows its key ([`FakePagerDuty::expect_routing_key`]) it must match |
//! | `event_action` | required: `trigger`, `acknowledge` or `resolve` |
//! | `dedup_key` | optional for `trigger` (the fake makes one), **required** for `acknowledge` and `resolve`; at most 255 characters |
//! | `payload` | required for `trigger`: `summary` (non-blank, at most 1024 characters), `source` (non-blank), `severity` (`critical`, `error`, `warning`, `info`); optional `timestamp`, `component`, `group`, `class`, `custom_details` |
//!
//! Answers: **202** `{"status":"success","message":"Event processed","dedup_key":…}`; **400**
//! `{"status":"invalid event","message":"Event object is invalid","errors":[…]}` naming each broken
//! field; a body that is not JSON: **400** with `errors: ["Malformed JSON"]`. Any other path: 404.
//! Rate limits and outages come from the shared fault injector ([`FakeHttp::faults`]): PagerDuty
//! answers 429 when throttling and 5xx when it cannot take events.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use rb_testkit::http::pagerduty::{AlertStatus, FakePagerDuty};
//! let pd = FakePagerDuty::start().await?;
//! let event = serde_json::json!({
//!     "routing_key": "R0UT1NGKEY0000000000000000000000",
//!     "event_action": "trigger",
//!     "dedup_key": "rb-incident-1",
//!     "payload": {"summary": "orders-sink failed", "source": "rb", "severity": "critical"}
//! });
//! let resp = reqwest::Client::new().post(pd.enqueue_url()).json(&event).send().await?;
//! assert_eq!(resp.status(), 202);
//! assert_eq!(pd.alert("rb-incident-1").unwrap().status, AlertStatus::Triggered);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::server::json_response;
use super::FakeHttp;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    /// Triggered, nobody acknowledged yet.
    Triggered,
    /// Acknowledged.
    Acknowledged,
    /// Resolved.
    Resolved,
}

/// One alert, by dedup key.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The dedup key.
    pub dedup_key: String,
    /// Its status.
    pub status: AlertStatus,
    /// The payload of the last trigger.
    pub payload: Value,
    /// Events received for it (triggers, acknowledgements, resolutions).
    pub events: u32,
}

#[derive(Debug, Default)]
struct PdState {
    expected_key: Option<String>,
    alerts: BTreeMap<String, Alert>,
    events: Vec<Value>,
    counter: u64,
}

type Shared = Arc<Mutex<PdState>>;

fn lock(s: &Shared) -> MutexGuard<'_, PdState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake of the PagerDuty Events API v2.
#[derive(Debug)]
pub struct FakePagerDuty {
    http: FakeHttp,
    state: Shared,
}

impl FakePagerDuty {
    /// Start the fake.
    pub async fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::default();
        let router = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .fallback(|| async {
                json_response(
                    StatusCode::NOT_FOUND,
                    json!({"status": "not found", "message": "Not Found"}),
                )
            })
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

    /// `http://127.0.0.1:<port>/v2/enqueue`.
    pub fn enqueue_url(&self) -> String {
        format!("{}/v2/enqueue", self.http.base_url())
    }

    /// Accept only events carrying this routing key (others: 400).
    pub fn expect_routing_key(&self, key: &str) {
        lock(&self.state).expected_key = Some(key.to_string());
    }

    /// The alert of `dedup_key`.
    pub fn alert(&self, dedup_key: &str) -> Option<Alert> {
        lock(&self.state).alerts.get(dedup_key).cloned()
    }

    /// Every alert, by dedup key.
    pub fn alerts(&self) -> Vec<Alert> {
        lock(&self.state).alerts.values().cloned().collect()
    }

    /// Every accepted event, oldest first.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.state).events.clone()
    }
}

fn invalid(errors: Vec<String>) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

fn blank(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty())
}

/// The documented rules; the list of what is wrong (empty when valid).
fn validate(v: &Value, expected_key: Option<&str>) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(obj) = v.as_object() else {
        return vec!["Event object must be a JSON object".into()];
    };
    match obj.get("routing_key").and_then(Value::as_str) {
        None => errors.push("'routing_key' is missing or blank".into()),
        Some(k) if k.len() != 32 => errors.push("'routing_key' must be 32 characters".into()),
        Some(k) if expected_key.is_some_and(|e| e != k) => {
            errors.push("'routing_key' does not match an integration".into())
        }
        Some(_) => {}
    }
    let action = obj.get("event_action").and_then(Value::as_str);
    if !matches!(action, Some("trigger" | "acknowledge" | "resolve")) {
        errors.push("'event_action' must be one of trigger, acknowledge, resolve".into());
    }
    match obj.get("dedup_key") {
        None | Some(Value::Null) => {
            if matches!(action, Some("acknowledge" | "resolve")) {
                errors.push("'dedup_key' is required for acknowledge and resolve".into());
            }
        }
        Some(Value::String(s)) if s.len() > 255 => {
            errors.push("'dedup_key' must be at most 255 characters".into())
        }
        Some(Value::String(s)) if s.is_empty() => errors.push("'dedup_key' is blank".into()),
        Some(Value::String(_)) => {}
        Some(_) => errors.push("'dedup_key' must be a string".into()),
    }
    if action == Some("trigger") {
        match obj.get("payload").and_then(Value::as_object) {
            None => errors.push("'payload' is missing".into()),
            Some(p) => {
                if blank(p.get("summary")) {
                    errors.push("'payload.summary' is missing or blank".into());
                } else if p
                    .get("summary")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.chars().count() > 1024)
                {
                    errors.push("'payload.summary' must be at most 1024 characters".into());
                }
                if blank(p.get("source")) {
                    errors.push("'payload.source' is missing or blank".into());
                }
                if !matches!(
                    p.get("severity").and_then(Value::as_str),
                    Some("critical" | "error" | "warning" | "info")
                ) {
                    errors.push(
                        "'payload.severity' must be one of critical, error, warning, info".into(),
                    );
                }
                if let Some(cd) = p.get("custom_details") {
                    if !(cd.is_object() || cd.is_string() || cd.is_null()) {
                        errors.push("'payload.custom_details' must be an object".into());
                    }
                }
            }
        }
    }
    errors
}

async fn enqueue(State(s): State<Shared>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return invalid(vec!["Malformed JSON".into()]);
    };
    let mut st = lock(&s);
    let errors = validate(&v, st.expected_key.as_deref());
    if !errors.is_empty() {
        return invalid(errors);
    }
    let action = v["event_action"].as_str().unwrap_or_default().to_string();
    let key = match v.get("dedup_key").and_then(Value::as_str) {
        Some(k) => k.to_string(),
        None => {
            st.counter += 1;
            format!("{:032x}", 0x5eed_0000_u64 + st.counter)
        }
    };
    match action.as_str() {
        "trigger" => {
            let payload = v["payload"].clone();
            let a = st.alerts.entry(key.clone()).or_insert_with(|| Alert {
                dedup_key: key.clone(),
                status: AlertStatus::Triggered,
                payload: payload.clone(),
                events: 0,
            });
            // a trigger on an open alert is deduplicated; on a resolved one it opens it again
            if a.status == AlertStatus::Resolved {
                a.status = AlertStatus::Triggered;
            }
            a.payload = payload;
            a.events += 1;
        }
        "acknowledge" | "resolve" => {
            if let Some(a) = st.alerts.get_mut(&key) {
                a.events += 1;
                if action == "resolve" {
                    a.status = AlertStatus::Resolved;
                } else if a.status == AlertStatus::Triggered {
                    a.status = AlertStatus::Acknowledged;
                }
            }
        }
        _ => {}
    }
    st.events.push(v);
    json_response(
        StatusCode::ACCEPTED,
        json!({"status": "success", "message": "Event processed", "dedup_key": key}),
    )
}

#[cfg(test)]
mod tests {
    use super::validate;
    use serde_json::json;

    const KEY: &str = "R0UT1NGKEY0000000000000000000000";

    #[test]
    fn trigger_needs_summary_source_severity() {
        let ok = json!({"routing_key": KEY, "event_action": "trigger",
            "payload": {"summary": "s", "source": "rb", "severity": "error"}});
        assert!(validate(&ok, None).is_empty());
        let bad =
            json!({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": " "}});
        let e = validate(&bad, None);
        assert_eq!(e.len(), 3, "{e:?}");
        let bad = json!({"routing_key": "short", "event_action": "resolve"});
        let e = validate(&bad, None);
        assert!(e.iter().any(|x| x.contains("routing_key")));
        assert!(e.iter().any(|x| x.contains("dedup_key")));
        assert!(!validate(&ok, Some("X".repeat(32).as_str())).is_empty());
    }
}
