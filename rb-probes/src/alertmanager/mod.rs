//! Alertmanager: its API v2 (`GET /api/v2/alerts`) as a typed client, the question a post-recovery
//! checklist asks ("is any alert matching these matchers still active?"), and the reconciliation an
//! engine runs when it starts ([`reconcile`]).
//!
//! **Client.** [`AlertmanagerClient`] sends one request under its deadline and answers typed
//! [`ActiveAlert`]s. Errors are [`ProbeError`]s naming the client id, the target, the endpoint (the
//! full URL with its query) and the cause: refused → unreachable, no answer within the deadline →
//! timeout, 401/403 → unauthorized, any other non-2xx → rejected with Alertmanager's message (its
//! 400 and 500 bodies are a JSON string), a body that is not the API's JSON → bad response naming the
//! JSON pointer, line and column. Never a panic.
//!
//! **Checklist.** [`AlertmanagerClient::still_active`] returns the alerts matching a set of matchers
//! that Alertmanager still holds active — silenced and inhibited ones included, since a muted alert
//! has not cleared — with their fingerprints and states, or `None` once none is left.
//!
//! **Reconcile.** While an engine is down, Alertmanager's notifications to it are lost: a resolution
//! sent then never arrives, and an alert that started firing then is only re-sent after
//! `repeat_interval`. [`reconcile`] closes that gap when the engine starts: for each alert detector
//! of the runbook it asks `GET /api/v2/alerts?active=true&silenced=false&inhibited=false` with the
//! detector's matchers as `filter`s and feeds the engine every alert listed as firing; then, for
//! every alert instance an open incident was opened on (or refired on) that Alertmanager no longer
//! lists, it feeds the engine the resolution — or, when Alertmanager still holds the alert but a
//! silence mutes it, the alert with its silences (which a symptom does not act upon). An alert that
//! is only inhibited is still firing and is fed as such. The engine then judges these signals on its
//! next round like any notification: an incident whose alerts are all resolved goes on to recover.
//!
//! **Least privilege:** read-only `GET /api/v2/alerts`. Alertmanager has no authorization of its own;
//! behind an authenticating proxy give the client a [`ReqwestClient`](crate::transport::ReqwestClient)
//! with a bearer token or basic credentials allowed only that path.
//!
//! ```no_run
//! # async fn demo(engine: &rb_core::Engine) -> Result<(), rb_core::ProbeError> {
//! use rb_core::{Matchers, Target};
//! use rb_probes::alertmanager::{reconcile, AlertmanagerClient};
//! use rb_probes::transport::ReqwestClient;
//! let am = AlertmanagerClient::new(
//!     ReqwestClient::new("http://127.0.0.1:9093")?,
//!     Target::new("alertmanager", "am-main"),
//! );
//! let report = reconcile(&am, engine).await?;          // at start, before engine.run(…)
//! println!("{} firing, {} resolved", report.firing.len(), report.resolved.len());
//! let left = am.still_active(&Matchers::parse(r#"alertname="KafkaConnectFailed""#).unwrap()).await?;
//! assert!(left.is_none(), "alert not cleared in Alertmanager");
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rb_core::journal::Event;
use rb_core::observation::facts::Alert;
use rb_core::playbook::Source;
use rb_core::symptom::Verdict;
use rb_core::time::Clock;
use rb_core::{Engine, ErrorKind, Labels, Matchers, ProbeContext, ProbeError, Signal, Target};
use serde::{Deserialize, Serialize};

use crate::common::ProbeSite;
use crate::rest;
use crate::transport::{decode_json, HttpClient, HttpRequest, HttpResponse};

/// The API path of the alerts.
pub const ALERTS_PATH: &str = "/api/v2/alerts";

/// The id errors of the client carry.
pub const CLIENT_ID: &str = "alertmanager.alerts";

/// The default deadline of one request.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// An alert's state in Alertmanager (`status.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Not yet processed by the dispatcher.
    Unprocessed,
    /// Firing and notified.
    Active,
    /// Firing but muted: silenced, inhibited, or outside the route's active time.
    Suppressed,
}

/// One alert as `GET /api/v2/alerts` lists it (Alertmanager's `gettableAlert`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveAlert {
    /// Alertmanager's fingerprint of the label set (16 hex digits).
    pub fingerprint: String,
    /// The labels (`alertname` among them).
    pub labels: Labels,
    /// The annotations (`null` on the wire reads as empty).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub annotations: Labels,
    /// When it started firing (RFC 3339, as sent).
    pub starts_at: String,
    /// When it ends unless re-sent (RFC 3339, as sent).
    pub ends_at: String,
    /// When Alertmanager last updated it (RFC 3339, as sent).
    pub updated_at: String,
    /// The receivers it is routed to.
    #[serde(default, deserialize_with = "receiver_names")]
    pub receivers: Vec<String>,
    /// The link to the expression that fired it.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
    /// Its state.
    pub status: AlertStatus,
}

/// `status` of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// Active, suppressed or unprocessed.
    pub state: AlertState,
    /// Ids of the silences muting it.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub silenced_by: Vec<String>,
    /// Fingerprints of the alerts inhibiting it.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub inhibited_by: Vec<String>,
    /// Names of the time intervals muting it (Alertmanager ≥ 0.28).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub muted_by: Vec<String>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn receiver_names<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Receiver {
        name: String,
    }
    let r: Option<Vec<Receiver>> = Option::deserialize(d)?;
    Ok(r.unwrap_or_default().into_iter().map(|r| r.name).collect())
}

impl ActiveAlert {
    /// The `alertname` label (empty when missing).
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Whether a silence, an inhibition or a mute interval keeps it from being notified.
    pub fn is_suppressed(&self) -> bool {
        self.status.state == AlertState::Suppressed
            || !self.status.silenced_by.is_empty()
            || !self.status.inhibited_by.is_empty()
            || !self.status.muted_by.is_empty()
    }

    /// As a firing [`Signal`] for [`Engine::ingest`], its silences carried along (a symptom does
    /// not act on a silenced alert).
    pub fn to_signal(&self) -> Signal {
        Signal::Alert(Alert {
            name: self.name().to_string(),
            status: "firing".into(),
            fingerprint: self.fingerprint.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at: self.starts_at.clone(),
            silenced_by: self.status.silenced_by.clone(),
        })
    }
}

/// The query parameters of `GET /api/v2/alerts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertQuery {
    /// `active`: include alerts that are firing and notified.
    pub active: bool,
    /// `silenced`: include silenced alerts.
    pub silenced: bool,
    /// `inhibited`: include inhibited alerts.
    pub inhibited: bool,
    /// `unprocessed`: include alerts not yet processed.
    pub unprocessed: bool,
    /// `filter`: matchers every listed alert must match (one `filter` parameter each).
    pub filter: Matchers,
    /// `receiver`: a regex the receiver name must match.
    pub receiver: Option<String>,
}

impl AlertQuery {
    /// What is firing and notified: `active=true&silenced=false&inhibited=false` (unprocessed
    /// alerts included, as Alertmanager's default).
    pub fn firing() -> Self {
        Self {
            active: true,
            silenced: false,
            inhibited: false,
            unprocessed: true,
            filter: Matchers::new(),
            receiver: None,
        }
    }

    /// Everything Alertmanager holds: firing, silenced, inhibited and unprocessed alerts.
    pub fn all() -> Self {
        Self {
            silenced: true,
            inhibited: true,
            ..Self::firing()
        }
    }

    /// Only alerts matching `matchers`.
    pub fn filter(mut self, matchers: Matchers) -> Self {
        self.filter = matchers;
        self
    }

    /// Only alerts routed to a receiver whose name matches the regex `re`.
    pub fn receiver(mut self, re: impl Into<String>) -> Self {
        self.receiver = Some(re.into());
        self
    }

    /// The path and query (`/api/v2/alerts?active=true&…&filter=alertname%3D%22X%22`).
    pub fn path(&self) -> String {
        let b = |v: bool| if v { "true" } else { "false" }.to_string();
        let mut params = vec![
            ("active", b(self.active)),
            ("silenced", b(self.silenced)),
            ("inhibited", b(self.inhibited)),
            ("unprocessed", b(self.unprocessed)),
        ];
        for m in self.filter.iter() {
            params.push(("filter", m.to_string()));
        }
        if let Some(r) = &self.receiver {
            params.push(("receiver", r.clone()));
        }
        rest::with_query(ALERTS_PATH, &params)
    }
}

/// A typed client of Alertmanager's API v2 (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct AlertmanagerClient<C> {
    client: C,
    target: Target,
    deadline: Duration,
}

impl<C: HttpClient> AlertmanagerClient<C> {
    /// A client of the Alertmanager `target` over `client`, [`DEFAULT_DEADLINE`] per request.
    pub fn new(client: C, target: Target) -> Self {
        Self {
            client,
            target,
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// Give up on a request after `deadline` (an [`ErrorKind::Timeout`] error).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The Alertmanager this client talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    async fn get(&self, path: &str) -> Result<(String, HttpResponse), ProbeError> {
        let endpoint = self.client.url(path);
        let site = ProbeSite {
            probe: CLIENT_ID,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let ctx = ProbeContext::with_timeout(Clock::system(), self.deadline);
        let resp = rest::send(&site, &ctx, &self.client, HttpRequest::get(path)).await?;
        Ok((endpoint, resp))
    }

    /// `GET /api/v2/alerts` with `query`.
    pub async fn alerts(&self, query: &AlertQuery) -> Result<Vec<ActiveAlert>, ProbeError> {
        let (endpoint, resp) = self.get(&query.path()).await?;
        let site = ProbeSite {
            probe: CLIENT_ID,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        if !resp.is_success() {
            // Alertmanager's 400 and 500 bodies are a JSON string: show it unquoted
            if let Ok(message) = serde_json::from_slice::<String>(&resp.body) {
                let kind = match resp.status {
                    401 | 403 => ErrorKind::Unauthorized,
                    _ => ErrorKind::Rejected,
                };
                return Err(site.error(kind, format!("HTTP {}: {message}", resp.status)));
            }
        }
        let alerts: Vec<ActiveAlert> = decode_json(&site, &resp)?;
        if let Some((i, a)) = alerts
            .iter()
            .enumerate()
            .find(|(_, a)| a.fingerprint.is_empty())
        {
            return Err(site.error(
                ErrorKind::BadResponse,
                format!("/{i}/fingerprint: alert {:?} has no fingerprint", a.name()),
            ));
        }
        Ok(alerts)
    }

    /// The alerts matching `matchers` that Alertmanager still holds active (silenced, inhibited and
    /// unprocessed ones included: a muted alert has not cleared), or `None` when there is none —
    /// the checklist's "alert cleared in Alertmanager".
    pub async fn still_active(
        &self,
        matchers: &Matchers,
    ) -> Result<Option<Vec<ActiveAlert>>, ProbeError> {
        let alerts = self
            .alerts(&AlertQuery::all().filter(matchers.clone()))
            .await?;
        // Alertmanager applies the filters; apply them again so a proxy that drops the query
        // cannot make an unrelated alert count
        let alerts: Vec<ActiveAlert> = alerts
            .into_iter()
            .filter(|a| matchers.matches(&a.labels))
            .collect();
        Ok((!alerts.is_empty()).then_some(alerts))
    }
}

/// What [`reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Fingerprints of the alerts Alertmanager lists as firing, fed to the engine as firing.
    pub firing: Vec<String>,
    /// Fingerprints of the alert instances open incidents were about that Alertmanager no longer
    /// holds, fed to the engine as resolved.
    pub resolved: Vec<String>,
    /// Fingerprints of alert instances open incidents were about that a silence now mutes, fed to
    /// the engine with their silences.
    pub silenced: Vec<String>,
    /// Fingerprints of alert instances open incidents were about that are only inhibited: still
    /// firing, fed as such.
    pub inhibited: Vec<String>,
    /// The open incidents whose alerts were looked at.
    pub incidents: Vec<String>,
}

/// Alertmanager's fingerprint of a label set (Prometheus `model.LabelSet.Fingerprint`): FNV-1a 64
/// over the label names and values sorted by name, each followed by the byte `0xff`, as 16
/// lower-case hex digits.
pub fn fingerprint(labels: &Labels) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    for (k, v) in labels {
        for b in k
            .as_bytes()
            .iter()
            .chain(&[0xff])
            .chain(v.as_bytes())
            .chain(&[0xff])
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    }
    format!("{h:016x}")
}

/// One alert instance an open incident is about: its labels and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Instance {
    fingerprint: String,
    labels: Labels,
}

/// The alert instances of a finding: its offending label sets, each with the fingerprint its
/// evidence line names (`<fingerprint>: k=v, …`, as the alert symptoms write it), else the one
/// Alertmanager computes from the labels.
fn instances_of(finding: &rb_core::symptom::Finding, matchers: &Matchers) -> Vec<Instance> {
    finding
        .offending
        .iter()
        .filter(|labels| labels.contains_key("alertname") && matchers.matches(labels))
        .map(|labels| {
            let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let suffix = format!(": {}", shown.join(", "));
            let fp = finding
                .evidence
                .iter()
                .find_map(|e| e.strip_suffix(&suffix))
                .filter(|fp| !fp.is_empty() && !fp.contains(' '))
                .map(str::to_string)
                .unwrap_or_else(|| fingerprint(labels));
            Instance {
                fingerprint: fp,
                labels: labels.clone(),
            }
        })
        .collect()
}

/// Bring `engine` level with what Alertmanager holds (see the [module docs](self)): feed it every
/// alert its alert detectors would route that Alertmanager lists as firing, and resolve the alert
/// instances its open incidents are about that Alertmanager no longer holds. Call it when the engine
/// starts (after [`Engine::builder`]`…build()` restored the open incidents, before running it).
///
/// Errors (nothing is fed to the engine then) name the endpoint and the cause; an engine whose
/// runbook has no alert detector is left alone without a request.
pub async fn reconcile<C: HttpClient>(
    am: &AlertmanagerClient<C>,
    engine: &Engine,
) -> Result<ReconcileReport, ProbeError> {
    let runbook = engine.runbook();
    // the alert detectors, per playbook
    let mut detectors: BTreeMap<String, Vec<Matchers>> = BTreeMap::new();
    for p in runbook.playbooks() {
        for d in p.detectors() {
            if let Source::Alert { matchers, .. } = &d.source {
                detectors
                    .entry(p.id().to_string())
                    .or_default()
                    .push(matchers.clone());
            }
        }
    }
    let mut report = ReconcileReport::default();
    if detectors.is_empty() {
        return Ok(report);
    }
    let mut distinct: Vec<&Matchers> = Vec::new();
    for m in detectors.values().flatten() {
        if !distinct.contains(&m) {
            distinct.push(m);
        }
    }

    // 1. what Alertmanager lists as firing, per detector
    let mut firing: BTreeMap<String, ActiveAlert> = BTreeMap::new();
    for m in distinct {
        for a in am.alerts(&AlertQuery::firing().filter(m.clone())).await? {
            if m.matches(&a.labels) && !a.is_suppressed() {
                firing.insert(a.fingerprint.clone(), a);
            }
        }
    }

    // 2. what the open incidents are about
    let mut believed: BTreeSet<Instance> = BTreeSet::new();
    let incidents = engine.incidents().await.map_err(|e| {
        ProbeError::new(
            CLIENT_ID,
            &am.target.name,
            "engine journal",
            ErrorKind::Other,
            format!("cannot read the open incidents: {e}"),
        )
    })?;
    for inc in incidents.iter().filter(|i| i.resolution.is_none()) {
        let Some(matchers) = detectors.get(&inc.record.playbook) else {
            continue;
        };
        report.incidents.push(inc.record.id.clone());
        let mut findings = vec![&inc.record.finding];
        for e in &inc.timeline {
            if let Event::Refired {
                verdict: Verdict::Firing(f),
            } = &e.event
            {
                findings.push(f);
            }
        }
        for f in findings {
            for m in matchers {
                believed.extend(instances_of(f, m));
            }
        }
    }
    let missing: Vec<Instance> = believed
        .into_iter()
        .filter(|i| !firing.contains_key(&i.fingerprint))
        .collect();

    // 3. of those, which Alertmanager still holds muted
    let mut held: BTreeMap<String, ActiveAlert> = BTreeMap::new();
    if !missing.is_empty() {
        for a in am.alerts(&AlertQuery::all()).await? {
            held.insert(a.fingerprint.clone(), a);
        }
    }

    for a in firing.values() {
        engine.ingest(a.to_signal());
        report.firing.push(a.fingerprint.clone());
    }
    for i in missing {
        // an incident's alert found again under Alertmanager's own fingerprint is the same alert
        let by_labels = held
            .values()
            .find(|a| a.labels == i.labels)
            .map(|a| a.fingerprint.clone());
        let current = held
            .get(&i.fingerprint)
            .or_else(|| by_labels.and_then(|fp| held.get(&fp)));
        match current {
            Some(a) if !a.status.silenced_by.is_empty() => {
                let mut signal = a.to_signal();
                if let Signal::Alert(alert) = &mut signal {
                    alert.fingerprint = i.fingerprint.clone();
                }
                engine.ingest(signal);
                report.silenced.push(i.fingerprint);
            }
            Some(a) => {
                let mut signal = a.to_signal();
                if let Signal::Alert(alert) = &mut signal {
                    alert.fingerprint = i.fingerprint.clone();
                }
                engine.ingest(signal);
                report.inhibited.push(i.fingerprint);
            }
            None => {
                let name = i.labels.get("alertname").cloned().unwrap_or_default();
                engine.ingest(Signal::Alert(Alert {
                    name,
                    status: "resolved".into(),
                    fingerprint: i.fingerprint.clone(),
                    labels: i.labels,
                    annotations: BTreeMap::new(),
                    starts_at: String::new(),
                    silenced_by: Vec::new(),
                }));
                report.resolved.push(i.fingerprint);
            }
        }
    }
    tracing::info!(
        target_name = %am.target.name,
        firing = report.firing.len(),
        resolved = report.resolved.len(),
        silenced = report.silenced.len(),
        inhibited = report.inhibited.len(),
        "reconciled with alertmanager"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn fingerprint_is_alertmanagers() {
        // the labels and fingerprint of a real notification captured in MinIO's documentation
        let labels: Labels = [
            ("alertname", "MinIOClusterTolerance"),
            ("instance", "localhost:9000"),
            ("job", "minio-job-node"),
            ("pool", "0"),
            ("server", "127.0.0.1:9000"),
            ("set", "0"),
            ("severity", "critical"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(fingerprint(&labels), "2255608b0da28ca3");
    }

    #[test]
    fn query_path_encodes_filters() {
        let q = AlertQuery::firing()
            .filter(Matchers::parse(r#"alertname="A b", job=~"x.*""#).unwrap())
            .receiver("rb");
        assert_eq!(
            q.path(),
            "/api/v2/alerts?active=true&silenced=false&inhibited=false&unprocessed=true\
             &filter=alertname%3D%22A%20b%22&filter=job%3D~%22x.%2A%22&receiver=rb"
        );
    }

    #[test]
    fn parses_the_gettable_alert_shape() {
        let body = br#"[{"annotations":null,"endsAt":"2024-05-01T10:09:00.000Z","fingerprint":"a1b2c3d4e5f60718",
          "receivers":[{"name":"runbook-sdk"}],"startsAt":"2024-05-01T10:00:00.000Z",
          "status":{"inhibitedBy":[],"mutedBy":null,"silencedBy":["s1"],"state":"suppressed"},
          "updatedAt":"2024-05-01T10:05:00.000Z","generatorURL":"http://prometheus:9090/graph",
          "labels":{"alertname":"MinioDiskFull","instance":"minio-0:9000"}}]"#;
        let a: Vec<ActiveAlert> = serde_json::from_slice(body).unwrap();
        assert_eq!(a[0].receivers, ["runbook-sdk"]);
        assert_eq!(a[0].status.state, AlertState::Suppressed);
        assert!(a[0].is_suppressed() && a[0].annotations.is_empty());
        let Signal::Alert(s) = a[0].to_signal() else {
            panic!("not an alert")
        };
        assert!(s.is_firing() && s.is_silenced());
    }
}
