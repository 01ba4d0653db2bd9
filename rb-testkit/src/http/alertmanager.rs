//! Alertmanager, both ways: [`AlertmanagerSender`] **sends** — it POSTs Alertmanager webhook payloads
//! (version `"4"`) to a receiver URL, the way a real Alertmanager notifies a `webhook_config`
//! receiver — and [`FakeAlertmanager`] **serves** Alertmanager's API v2 (`GET /api/v2/alerts`, what
//! an engine reconciles with and a checklist asks), with the fault injection of every HTTP fake.
//!
//! The payload is built as Alertmanager 0.34 builds it (`notify/webhook`, `template.Data`):
//! `version`, `groupKey` (`{}:{alertname="X"}`: route key, then the group labels), `truncatedAlerts`,
//! `status` (`resolved` only when every alert of the group is resolved), `receiver`, `groupLabels`,
//! `commonLabels`, `commonAnnotations`, `externalURL`, `notification_reason`, `routeLabels` and
//! `alerts[]` with `status`, `labels`, `annotations`, `startsAt`, `endsAt`
//! (`0001-01-01T00:00:00Z` while firing), `generatorURL` and `fingerprint` — the 16-hex-digit FNV-1a
//! hash of the sorted label set that Alertmanager itself computes, so a firing and its resolution
//! carry the same fingerprint. [`PayloadFormat::Legacy`] leaves out `notification_reason` and
//! `routeLabels`, as Alertmanager before 0.32 did. Headers: `Content-Type: application/json`,
//! `User-Agent: Alertmanager/0.34.0`.
//!
//! The sender remembers what it last sent per group to choose `notification_reason`
//! (`first notification`, `new alerts added`, `some alerts resolved`, `all alerts resolved`,
//! `repeat interval elapsed`). It does not retry: a non-2xx answer is returned as
//! [`SendError::Status`] (Alertmanager would retry 5xx; tests decide).
//!
//! ```no_run
//! # async fn demo(receiver_url: &str) -> Result<(), rb_testkit::http::alertmanager::SendError> {
//! use rb_testkit::http::alertmanager::{AlertSpec, AlertmanagerSender};
//! let am = AlertmanagerSender::new(receiver_url).receiver("runbook-sdk");
//! let alert = AlertSpec::new("MinioDiskFull")
//!     .label("instance", "minio-0:9000")
//!     .label("severity", "critical")
//!     .annotation("summary", "MinIO usable free capacity below 10%");
//! am.fire(&[alert.clone()]).await?;     // status "firing", endsAt 0001-01-01T00:00:00Z
//! am.resolve(&[alert]).await?;          // same fingerprint, status "resolved", endsAt = now
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::prometheus::{fmt_rfc3339_ms, parse_form, parse_rfc3339_ns, FakeClock};
use super::server::json_response;
use super::FakeHttp;

/// The `endsAt` Alertmanager sends for an alert with no end (Go's zero time).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Which Alertmanager generation's payload to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// Alertmanager 0.34: with `notification_reason` and `routeLabels`.
    #[default]
    V0_34,
    /// Alertmanager before 0.32: without them (as in MinIO's documented capture).
    Legacy,
}

/// A small description of one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: OffsetDateTime,
    ends_at: Option<OffsetDateTime>,
    generator_url: String,
}

impl AlertSpec {
    /// An alert `alertname`, starting now, no other labels.
    pub fn new(alertname: &str) -> Self {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), alertname.to_string());
        Self {
            labels,
            annotations: BTreeMap::new(),
            starts_at: OffsetDateTime::now_utc(),
            ends_at: None,
            generator_url: String::new(),
        }
    }

    /// Add or replace a label.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.labels.insert(name.to_string(), value.to_string());
        self
    }

    /// Add or replace an annotation.
    pub fn annotation(mut self, name: &str, value: &str) -> Self {
        self.annotations.insert(name.to_string(), value.to_string());
        self
    }

    /// When the alert started (default: creation time).
    pub fn starts_at(mut self, at: OffsetDateTime) -> Self {
        self.starts_at = at;
        self
    }

    /// When the alert ended (set by [`AlertmanagerSender::resolve`] when absent).
    pub fn ends_at(mut self, at: OffsetDateTime) -> Self {
        self.ends_at = Some(at);
        self
    }

    /// The Prometheus expression link (`generatorURL`).
    pub fn generator_url(mut self, url: &str) -> Self {
        self.generator_url = url.to_string();
        self
    }

    /// The labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Alertmanager's fingerprint of the label set (16 lower-case hex digits).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels)
    }
}

/// Alertmanager's (Prometheus `model.LabelSet`) fingerprint: FNV-1a 64 over the label names and
/// values sorted by name, each followed by the separator byte `0xff`.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in labels {
        add(k.as_bytes());
        add(&[0xff]);
        add(v.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// Go's `time.RFC3339Nano` rendering in UTC (trailing zeros of the fraction trimmed, none when zero).
pub fn rfc3339_nano(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Why a notification could not be built or was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No alerts were given.
    #[error("alertmanager sender: no alerts to send")]
    NoAlerts,
    /// The alerts do not belong to one group (their `group_by` labels differ).
    #[error("alertmanager sender: alerts belong to different groups ({0} and {1})")]
    MixedGroups(String, String),
    /// The receiver could not be reached or the exchange failed.
    #[error("alertmanager sender: POST {url} failed: {source}")]
    Transport {
        /// Receiver URL.
        url: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// The receiver answered a non-2xx status (`unexpected status code N: body`, as Alertmanager logs).
    #[error("alertmanager sender: unexpected status code {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
}

/// A notification the receiver accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// HTTP status (2xx).
    pub status: u16,
    /// The payload sent.
    pub payload: Value,
}

/// Sends Alertmanager v4 webhook notifications to one receiver URL.
#[derive(Debug)]
pub struct AlertmanagerSender {
    client: reqwest::Client,
    url: String,
    receiver: String,
    external_url: String,
    route_key: String,
    group_by: Vec<String>,
    format: PayloadFormat,
    max_alerts: usize,
    version: String,
    /// groupKey → fingerprints firing in the last notification.
    sent: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl AlertmanagerSender {
    /// A sender to `url`, receiver `webhook`, grouping by `alertname`, external URL
    /// `http://alertmanager:9093`, 0.34 payloads.
    pub fn new(url: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            url: url.to_string(),
            receiver: "webhook".to_string(),
            external_url: "http://alertmanager:9093".to_string(),
            route_key: "{}".to_string(),
            group_by: vec!["alertname".to_string()],
            format: PayloadFormat::V0_34,
            max_alerts: 0,
            version: "0.34.0".to_string(),
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// Use this HTTP client (timeouts, proxies…).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Receiver name (`receiver` field).
    pub fn receiver(mut self, name: &str) -> Self {
        self.receiver = name.to_string();
        self
    }

    /// `externalURL` field.
    pub fn external_url(mut self, url: &str) -> Self {
        self.external_url = url.to_string();
        self
    }

    /// Route key that prefixes `groupKey` (default `{}`, the root route).
    pub fn route_key(mut self, key: &str) -> Self {
        self.route_key = key.to_string();
        self
    }

    /// Labels the route groups by (default `["alertname"]`).
    pub fn group_by(mut self, labels: &[&str]) -> Self {
        self.group_by = labels.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Payload generation.
    pub fn format(mut self, format: PayloadFormat) -> Self {
        self.format = format;
        self
    }

    /// `max_alerts` of the webhook config (0: unlimited); the rest is counted in `truncatedAlerts`.
    pub fn max_alerts(mut self, n: usize) -> Self {
        self.max_alerts = n;
        self
    }

    fn group_labels(&self, alerts: &[AlertSpec]) -> Result<BTreeMap<String, String>, SendError> {
        let of = |a: &AlertSpec| -> BTreeMap<String, String> {
            a.labels
                .iter()
                .filter(|(k, _)| self.group_by.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let first = alerts.first().map(of).ok_or(SendError::NoAlerts)?;
        for a in alerts.iter().skip(1) {
            let g = of(a);
            if g != first {
                return Err(SendError::MixedGroups(
                    label_set_string(&first),
                    label_set_string(&g),
                ));
            }
        }
        Ok(first)
    }

    /// The payload for `alerts` (an alert with `ends_at` is resolved), without sending it or
    /// recording it. `notification_reason` is computed against what was last sent.
    pub fn payload(&self, alerts: &[AlertSpec]) -> Result<Value, SendError> {
        let group = self.group_labels(alerts)?;
        let group_key = format!("{}:{}", self.route_key, label_set_string(&group));
        let firing: BTreeSet<String> = alerts
            .iter()
            .filter(|a| a.ends_at.is_none())
            .map(AlertSpec::fingerprint)
            .collect();
        let reason = {
            let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            reason(sent.get(&group_key), &firing, alerts.len())
        };
        let all_resolved = firing.is_empty();
        let common =
            |pick: fn(&AlertSpec) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
                let mut it = alerts.iter();
                let mut acc = it.next().map(|a| pick(a).clone()).unwrap_or_default();
                for a in it {
                    acc.retain(|k, v| pick(a).get(k) == Some(v));
                }
                acc
            };
        let (shown, truncated) = if self.max_alerts > 0 && alerts.len() > self.max_alerts {
            (&alerts[..self.max_alerts], alerts.len() - self.max_alerts)
        } else {
            (alerts, 0)
        };
        let alerts_json: Vec<Value> = shown
            .iter()
            .map(|a| {
                json!({
                    "status": if a.ends_at.is_some() { "resolved" } else { "firing" },
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339_nano(a.starts_at),
                    "endsAt": a.ends_at.map(rfc3339_nano).unwrap_or_else(|| ZERO_TIME.to_string()),
                    "generatorURL": a.generator_url,
                    "fingerprint": a.fingerprint(),
                })
            })
            .collect();
        let mut payload = json!({
            "receiver": self.receiver,
            "status": if all_resolved { "resolved" } else { "firing" },
            "alerts": alerts_json,
            "groupLabels": group,
            "commonLabels": common(|a| &a.labels),
            "commonAnnotations": common(|a| &a.annotations),
            "externalURL": self.external_url,
            "version": "4",
            "groupKey": group_key,
            "truncatedAlerts": truncated,
        });
        if self.format == PayloadFormat::V0_34 {
            if let Some(obj) = payload.as_object_mut() {
                obj.insert("notification_reason".to_string(), json!(reason));
                obj.insert("routeLabels".to_string(), json!({}));
            }
        }
        Ok(payload)
    }

    /// Send `alerts` as they are (firing unless they carry an end time).
    pub async fn send(&self, alerts: &[AlertSpec]) -> Result<Delivery, SendError> {
        let payload = self.payload(alerts)?;
        let group_key = payload
            .get("groupKey")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let resp = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("User-Agent", format!("Alertmanager/{}", self.version))
            .body(payload.to_string())
            .send()
            .await
            .map_err(|source| SendError::Transport {
                url: self.url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|source| SendError::Transport {
            url: self.url.clone(),
            source,
        })?;
        if !(200..300).contains(&status) {
            return Err(SendError::Status { status, body });
        }
        let firing: BTreeSet<String> = alerts
            .iter()
            .filter(|a| a.ends_at.is_none())
            .map(AlertSpec::fingerprint)
            .collect();
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group_key, firing);
        Ok(Delivery { status, payload })
    }

    /// Send `alerts` as firing (any end time is cleared).
    pub async fn fire(&self, alerts: &[AlertSpec]) -> Result<Delivery, SendError> {
        let firing: Vec<AlertSpec> = alerts
            .iter()
            .cloned()
            .map(|mut a| {
                a.ends_at = None;
                a
            })
            .collect();
        self.send(&firing).await
    }

    /// Send `alerts` as resolved: each gets `endsAt` = now unless it already has an end time.
    pub async fn resolve(&self, alerts: &[AlertSpec]) -> Result<Delivery, SendError> {
        let now = OffsetDateTime::now_utc();
        let resolved: Vec<AlertSpec> = alerts
            .iter()
            .cloned()
            .map(|mut a| {
                a.ends_at = Some(a.ends_at.unwrap_or(now));
                a
            })
            .collect();
        self.send(&resolved).await
    }
}

fn reason(
    previous: Option<&BTreeSet<String>>,
    firing: &BTreeSet<String>,
    total: usize,
) -> &'static str {
    match previous {
        None => {
            if firing.is_empty() {
                "all alerts resolved"
            } else {
                "first notification"
            }
        }
        Some(prev) => {
            if firing.is_empty() && total > 0 {
                "all alerts resolved"
            } else if firing.iter().any(|f| !prev.contains(f)) {
                "new alerts added"
            } else if prev.iter().any(|f| !firing.contains(f)) {
                "some alerts resolved"
            } else {
                "repeat interval elapsed"
            }
        }
    }
}

/// Go `model.LabelSet.String()`: `{a="1", b="2"}`.
fn label_set_string(l: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// The API fake
// ---------------------------------------------------------------------------------------------

/// How long an alert posted without `endsAt` stays active (Alertmanager's default
/// `resolve_timeout`).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone)]
struct HeldAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at_ms: i64,
    ends_at_ms: i64,
    updated_at_ms: i64,
    generator_url: String,
    silenced_by: Vec<String>,
    inhibited_by: Vec<String>,
    muted_by: Vec<String>,
    unprocessed: bool,
}

#[derive(Debug)]
struct ApiState {
    clock: FakeClock,
    receivers: Vec<String>,
    /// fingerprint → alert
    alerts: BTreeMap<String, HeldAlert>,
}

type Shared = Arc<Mutex<ApiState>>;

fn lock(s: &Shared) -> MutexGuard<'_, ApiState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake of Alertmanager's **API v2**: the alerts it holds, read back by
/// `GET /api/v2/alerts`, and pushed by `POST /api/v2/alerts` (as Prometheus pushes them). Derefs to
/// its [`FakeHttp`] (address, request record, [`Faults`](super::Faults)).
///
/// | route | answer |
/// |---|---|
/// | `GET /api/v2/alerts` | 200 `[gettableAlert]`: `labels`, `annotations`, `startsAt`, `endsAt`, `updatedAt` (`2024-05-01T10:00:00.000Z`), `fingerprint`, `receivers:[{"name"}]`, `generatorURL`, `status:{state, silencedBy, inhibitedBy, mutedBy}` |
/// | `POST /api/v2/alerts` | 200 empty; a body that is not a list of alerts with labels → 400 with a JSON string |
/// | `GET /-/healthy`, `GET /-/ready` | 200 `OK` |
///
/// `GET /api/v2/alerts` takes Alertmanager's parameters: `active`, `silenced`, `inhibited`,
/// `unprocessed` (booleans, default `true`, read as go-swagger reads them: `true`, `1`, `yes`, `on`…
/// are true, any other word false), `filter` (repeatable; a matcher
/// `name="v"`, `!=`, `=~`, `!~`, regexes anchored; a bad one → 400 `"bad matcher format: …"`) and
/// `receiver` (an anchored regex over receiver names). An alert whose `endsAt` has passed is
/// resolved and no longer listed. `status.state` is `suppressed` while a silence, an inhibiting
/// alert or a mute interval mutes it, `unprocessed` when set so, else `active`. Fingerprints are
/// Alertmanager's ([`fingerprint`]). Times come from the fake's clock: the wall clock at start plus
/// tokio's elapsed time, so a paused test clock moves it.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use rb_testkit::http::alertmanager::{AlertSpec, FakeAlertmanager};
/// let am = FakeAlertmanager::start().await?;
/// let fp = am.fire(&AlertSpec::new("KafkaConnectFailed").label("connector", "orders-1"));
/// am.silence(&fp, "2c6d0b7a");           // now suppressed, silencedBy ["2c6d0b7a"]
/// am.resolve(&fp);                       // gone from GET /api/v2/alerts
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FakeAlertmanager {
    http: FakeHttp,
    state: Shared,
}

impl Deref for FakeAlertmanager {
    type Target = FakeHttp;
    fn deref(&self) -> &FakeHttp {
        &self.http
    }
}

impl FakeAlertmanager {
    /// Start an Alertmanager holding no alert, every alert routed to the receiver `rb`.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(ApiState {
            clock: FakeClock::new(),
            receivers: vec!["rb".to_string()],
            alerts: BTreeMap::new(),
        }));
        let http = FakeHttp::start(api_router(state.clone())).await?;
        Ok(Self { http, state })
    }

    /// The underlying HTTP fake.
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    /// The receivers every alert is routed to (default `["rb"]`).
    pub fn set_receivers(&self, names: &[&str]) {
        lock(&self.state).receivers = names.iter().map(|s| s.to_string()).collect();
    }

    /// The fake's "now", Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        lock(&self.state).clock.now_ms()
    }

    /// Hold `alert` as firing (its `startsAt`, no end; an alert with the same labels is updated, its
    /// silences and inhibitions kept) and return its fingerprint.
    pub fn fire(&self, alert: &AlertSpec) -> String {
        let fp = alert.fingerprint();
        let mut st = lock(&self.state);
        let now = st.clock.now_ms();
        let starts = ms_of(alert.starts_at).min(now);
        let prev = st.alerts.remove(&fp);
        let held = HeldAlert {
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at_ms: prev.as_ref().map(|p| p.starts_at_ms).unwrap_or(starts),
            ends_at_ms: i64::MAX,
            updated_at_ms: now,
            generator_url: alert.generator_url.clone(),
            silenced_by: prev
                .as_ref()
                .map(|p| p.silenced_by.clone())
                .unwrap_or_default(),
            inhibited_by: prev
                .as_ref()
                .map(|p| p.inhibited_by.clone())
                .unwrap_or_default(),
            muted_by: prev
                .as_ref()
                .map(|p| p.muted_by.clone())
                .unwrap_or_default(),
            unprocessed: false,
        };
        st.alerts.insert(fp.clone(), held);
        fp
    }

    /// Resolve the alert `fingerprint` now (it leaves `GET /api/v2/alerts`). False if not held.
    pub fn resolve(&self, fingerprint: &str) -> bool {
        self.update(fingerprint, |a, now| {
            a.ends_at_ms = now;
            a.updated_at_ms = now;
        })
    }

    /// Mute the alert `fingerprint` with the silence `silence_id`.
    pub fn silence(&self, fingerprint: &str, silence_id: &str) -> bool {
        self.update(fingerprint, |a, _| {
            a.silenced_by.push(silence_id.to_string())
        })
    }

    /// Let the alert `fingerprint` be inhibited by the alert `by` (a fingerprint).
    pub fn inhibit(&self, fingerprint: &str, by: &str) -> bool {
        self.update(fingerprint, |a, _| a.inhibited_by.push(by.to_string()))
    }

    /// Mute the alert `fingerprint` by the time interval `interval`.
    pub fn mute(&self, fingerprint: &str, interval: &str) -> bool {
        self.update(fingerprint, |a, _| a.muted_by.push(interval.to_string()))
    }

    /// Lift every silence, inhibition and mute of the alert `fingerprint`.
    pub fn unmute(&self, fingerprint: &str) -> bool {
        self.update(fingerprint, |a, _| {
            a.silenced_by.clear();
            a.inhibited_by.clear();
            a.muted_by.clear();
        })
    }

    /// Mark the alert `fingerprint` as not yet processed by the dispatcher.
    pub fn set_unprocessed(&self, fingerprint: &str, unprocessed: bool) -> bool {
        self.update(fingerprint, |a, _| a.unprocessed = unprocessed)
    }

    /// Fingerprints of the alerts still active (not resolved), muted ones included.
    pub fn active(&self) -> Vec<String> {
        let st = lock(&self.state);
        let now = st.clock.now_ms();
        st.alerts
            .iter()
            .filter(|(_, a)| a.ends_at_ms > now)
            .map(|(fp, _)| fp.clone())
            .collect()
    }

    /// Forget every alert.
    pub fn clear(&self) {
        lock(&self.state).alerts.clear();
    }

    fn update(&self, fingerprint: &str, f: impl FnOnce(&mut HeldAlert, i64)) -> bool {
        let mut st = lock(&self.state);
        let now = st.clock.now_ms();
        match st.alerts.get_mut(fingerprint) {
            Some(a) => {
                f(a, now);
                true
            }
            None => false,
        }
    }
}

fn ms_of(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn api_router(state: Shared) -> Router {
    Router::new()
        .route("/api/v2/alerts", get(get_alerts).post(post_alerts))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(|| async { "OK" }))
        .with_state(state)
}

/// Alertmanager's error answer: the status and a JSON string.
fn api_error(status: StatusCode, message: String) -> Response {
    json_response(status, Value::String(message))
}

async fn get_alerts(State(state): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let params = parse_form(raw.as_deref().unwrap_or(""));
    let mut flags = [
        ("active", true),
        ("silenced", true),
        ("inhibited", true),
        ("unprocessed", true),
    ];
    let mut filter = rb_core::Matchers::new();
    let mut receiver: Option<regex::Regex> = None;
    for (k, v) in &params {
        if let Some(f) = flags.iter_mut().find(|(name, _)| name == k) {
            // go-swagger's boolean: these words are true, anything else false (never an error)
            f.1 = matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "ok" | "y" | "on" | "selected" | "checked" | "t" | "enabled"
            );
        } else if k == "filter" {
            match rb_core::Matchers::parse(v) {
                Ok(ms) if ms.len() == 1 => {
                    for m in ms.iter() {
                        filter = filter.and(m.clone());
                    }
                }
                Ok(_) => {
                    return api_error(
                        StatusCode::BAD_REQUEST,
                        format!("bad matcher format: {v}: expected one matcher"),
                    )
                }
                Err(e) => {
                    return api_error(
                        StatusCode::BAD_REQUEST,
                        format!("bad matcher format: {v}: {e}"),
                    )
                }
            }
        } else if k == "receiver" {
            match regex::Regex::new(&format!("^(?:{v})$")) {
                Ok(re) => receiver = Some(re),
                Err(e) => {
                    return api_error(
                        StatusCode::BAD_REQUEST,
                        format!("failed to parse receiver param: {e}"),
                    )
                }
            }
        }
    }
    let [active, silenced, inhibited, unprocessed] = flags.map(|(_, v)| v);
    let st = lock(&state);
    let now = st.clock.now_ms();
    if let Some(re) = &receiver {
        if !st.receivers.iter().any(|r| re.is_match(r)) {
            return json_response(StatusCode::OK, json!([]));
        }
    }
    let mut out = Vec::new();
    for (fp, a) in &st.alerts {
        if a.ends_at_ms <= now || !filter.matches(&a.labels) {
            continue;
        }
        let suppressed =
            !a.silenced_by.is_empty() || !a.inhibited_by.is_empty() || !a.muted_by.is_empty();
        let state_name = if suppressed {
            "suppressed"
        } else if a.unprocessed {
            "unprocessed"
        } else {
            "active"
        };
        if (!active && state_name == "active")
            || (!unprocessed && state_name == "unprocessed")
            || (!silenced && !a.silenced_by.is_empty())
            || (!inhibited && !a.inhibited_by.is_empty())
        {
            continue;
        }
        // an alert that has not ended shows the time it would end unless re-sent
        let ends = if a.ends_at_ms == i64::MAX {
            a.updated_at_ms + RESOLVE_TIMEOUT.as_millis() as i64
        } else {
            a.ends_at_ms
        };
        out.push(json!({
            "annotations": a.annotations,
            "endsAt": fmt_rfc3339_ms(ends),
            "fingerprint": fp,
            "receivers": st.receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
            "startsAt": fmt_rfc3339_ms(a.starts_at_ms),
            "status": {
                "inhibitedBy": a.inhibited_by,
                "mutedBy": a.muted_by,
                "silencedBy": a.silenced_by,
                "state": state_name,
            },
            "updatedAt": fmt_rfc3339_ms(a.updated_at_ms),
            "generatorURL": a.generator_url,
            "labels": a.labels,
        }));
    }
    json_response(StatusCode::OK, Value::Array(out))
}

struct PostableAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    generator_url: String,
}

/// Alertmanager's `postableAlerts`: a list of `{labels, annotations?, startsAt?, endsAt?,
/// generatorURL?}`; the error names the index and field.
fn postable_alerts(body: &[u8]) -> Result<Vec<PostableAlert>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("parsing alerts body: {e}"))?;
    let list = v
        .as_array()
        .ok_or_else(|| "parsing alerts body: expected a list of alerts".to_string())?;
    let strings = |i: usize, a: &Value, field: &str| -> Result<BTreeMap<String, String>, String> {
        match a.get(field) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(format!("{i}.{field}.{k} in body must be of type string")),
                })
                .collect(),
            Some(_) => Err(format!("{i}.{field} in body must be of type object")),
        }
    };
    let text = |i: usize, a: &Value, field: &str| -> Result<Option<String>, String> {
        match a.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{i}.{field} in body must be of type string")),
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            Ok(PostableAlert {
                labels: strings(i, a, "labels")?,
                annotations: strings(i, a, "annotations")?,
                starts_at: text(i, a, "startsAt")?,
                ends_at: text(i, a, "endsAt")?,
                generator_url: text(i, a, "generatorURL")?.unwrap_or_default(),
            })
        })
        .collect()
}

async fn post_alerts(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    let alerts = match postable_alerts(&body) {
        Ok(a) => a,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
    };
    let parse = |s: &Option<String>| -> Result<Option<i64>, String> {
        match s.as_deref() {
            None | Some("") => Ok(None),
            Some(t) => parse_rfc3339_ns(t)
                .map(|ns| Some(i64::try_from(ns / 1_000_000).unwrap_or(0)))
                .ok_or_else(|| format!("invalid date-time: {t:?}")),
        }
    };
    let mut st = lock(&state);
    let now = st.clock.now_ms();
    for a in alerts {
        if a.labels.is_empty() {
            return api_error(
                StatusCode::BAD_REQUEST,
                "at least one label pair required".into(),
            );
        }
        let (starts, ends) = match (parse(&a.starts_at), parse(&a.ends_at)) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(m), _) | (_, Err(m)) => return api_error(StatusCode::BAD_REQUEST, m),
        };
        let fp = fingerprint(&a.labels);
        let prev = st.alerts.remove(&fp);
        let still_firing = prev.as_ref().is_some_and(|p| p.ends_at_ms > now);
        let starts_at_ms = match &prev {
            Some(p) if still_firing => p.starts_at_ms,
            _ => starts.unwrap_or(now),
        };
        st.alerts.insert(
            fp,
            HeldAlert {
                labels: a.labels,
                annotations: a.annotations,
                starts_at_ms,
                ends_at_ms: ends.unwrap_or(now + RESOLVE_TIMEOUT.as_millis() as i64),
                updated_at_ms: now,
                generator_url: a.generator_url,
                silenced_by: prev
                    .as_ref()
                    .map(|p| p.silenced_by.clone())
                    .unwrap_or_default(),
                inhibited_by: prev
                    .as_ref()
                    .map(|p| p.inhibited_by.clone())
                    .unwrap_or_default(),
                muted_by: prev
                    .as_ref()
                    .map(|p| p.muted_by.clone())
                    .unwrap_or_default(),
                unprocessed: false,
            },
        );
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_alertmanager_capture() {
        // Labels and fingerprint of the real payload captured in MinIO's docs.
        let a = AlertSpec::new("MinIOClusterTolerance")
            .label("instance", "localhost:9000")
            .label("job", "minio-job-node")
            .label("pool", "0")
            .label("server", "127.0.0.1:9000")
            .label("set", "0")
            .label("severity", "critical");
        assert_eq!(a.fingerprint(), "2255608b0da28ca3");
    }

    #[test]
    fn go_time_format() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_305_209_456_000_000).unwrap();
        assert_eq!(rfc3339_nano(t), "2023-11-18T11:00:09.456Z");
        let t = OffsetDateTime::from_unix_timestamp(1_714_557_600).unwrap();
        assert_eq!(rfc3339_nano(t), "2024-05-01T10:00:00Z");
    }

    #[test]
    fn group_key_like_alertmanager() {
        let s = AlertmanagerSender::new("http://127.0.0.1:1/");
        let p = s
            .payload(&[AlertSpec::new("MinIOClusterTolerance")])
            .unwrap();
        assert_eq!(p["groupKey"], "{}:{alertname=\"MinIOClusterTolerance\"}");
        let mixed = s.payload(&[AlertSpec::new("A"), AlertSpec::new("B")]);
        assert!(matches!(mixed, Err(SendError::MixedGroups(_, _))));
    }
}
