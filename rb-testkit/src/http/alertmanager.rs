//! An Alertmanager stand-in that **sends**: it POSTs Alertmanager webhook payloads (version `"4"`)
//! to a receiver URL, the way a real Alertmanager notifies a `webhook_config` receiver.
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
use std::sync::Mutex;

use serde_json::{json, Value};
use time::OffsetDateTime;

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
