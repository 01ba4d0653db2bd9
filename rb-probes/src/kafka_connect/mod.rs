//! Kafka Connect: connector and task states, with the failed instances' traces, from the worker's
//! REST API.
//!
//! [`ConnectStatus`] reads every connector in one request (`GET /connectors?expand=status&expand=info`)
//! or one connector (`GET /connectors/<name>/status`, [`ConnectStatus::connector`]).
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `kafka_connect_connectors` | — | connectors listed (the runbook's "connector count drops") |
//! | `kafka_connect_failed_tasks` | — | FAILED tasks over all connectors |
//! | `kafka_connect_failed_connectors` | — | connector instances FAILED |
//! | `kafka_connect_connector_failed_task_count` | `connector` | FAILED tasks of the connector (the name Kafka Connect's JMX exporter uses) |
//! | `kafka_connect_connector_task_count` | `connector` | tasks listed |
//! | `kafka_connect_connector_state` | `connector`, `state` | 1 for the connector instance's state (`RUNNING`, `FAILED`, …) |
//!
//! The per-connector samples are bounded to the [`ConnectStatus::top_k`] worst connectors (most
//! failed tasks, then a failed connector instance; default 50); the totals always cover all.
//!
//! **Fact** [`ConnectorsFact`] (`kafka_connect.connectors`): every connector with its type, class,
//! state, worker id, and its tasks with state and worker id; each failed instance's trace, bounded
//! ([`bound_trace`]: first line and every `Caused by:`), and its [`TraceClass`] — computed on the
//! whole trace — so that a remediation refuses to restart a task failing on configuration or
//! authorization.
//!
//! A connector listed without its status (deleted while the worker built the answer) is left out
//! and the observation is marked incomplete.
//!
//! **Errors:** the worker's `{"error_code","message"}` answers → rejected with the message (404 for an
//! unknown connector, 409 during a rebalance, 500 `Request timed out`); 401/403 (a REST extension
//! with authentication) → unauthorized; unreachable, timeouts and malformed answers as usual.
//!
//! **Least privilege:** `GET /connectors` and `GET /connectors/<name>/status` only. Kafka Connect has
//! no authorization of its own; with a Basic-auth REST extension (`HttpAuth::Basic`), a user allowed
//! to read is enough.

mod trace;

pub use trace::{bound_trace, classify_trace, TraceClass};

use std::collections::BTreeMap;

use async_trait::async_trait;
use rb_core::{
    labels, ErrorKind, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Target,
};
use serde::{Deserialize, Serialize};

use crate::common::{ProbeSite, TopK};
use crate::rest;
use crate::transport::{parse_json, HttpClient, HttpRequest, HttpResponse};

/// Every connector the probe saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorsFact {
    /// The connectors, sorted by name.
    pub connectors: Vec<ConnectorFact>,
}

impl FactType for ConnectorsFact {
    const KIND: &'static str = "kafka_connect.connectors";
}

impl ConnectorsFact {
    /// The connector named `name`.
    pub fn connector(&self, name: &str) -> Option<&ConnectorFact> {
        self.connectors.iter().find(|c| c.name == name)
    }
}

/// One connector: its instance and its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorFact {
    /// Connector name.
    pub name: String,
    /// `source`, `sink` or `unknown` (absent on old workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `connector.class` from the config, when the listing included it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The connector instance.
    pub instance: InstanceFact,
    /// The tasks, by id.
    pub tasks: Vec<TaskFact>,
}

impl ConnectorFact {
    /// The FAILED tasks.
    pub fn failed_tasks(&self) -> impl Iterator<Item = &TaskFact> {
        self.tasks.iter().filter(|t| t.instance.state == "FAILED")
    }
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFact {
    /// Task id.
    pub id: u32,
    /// Its instance.
    #[serde(flatten)]
    pub instance: InstanceFact,
}

/// The state of a connector or task instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceFact {
    /// `UNASSIGNED`, `RUNNING`, `PAUSED`, `FAILED`, `RESTARTING` or `STOPPED`.
    pub state: String,
    /// The worker (`host:port`) running it.
    pub worker_id: String,
    /// The failure's trace, bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// What the whole trace says (present with a trace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_class: Option<TraceClass>,
}

// ----- wire -------------------------------------------------------------------------------------

/// `ConnectorStateInfo` as the worker sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct WireStatus {
    /// Connector name.
    pub name: String,
    /// The connector instance.
    pub connector: WireInstance,
    /// Its tasks.
    #[serde(default)]
    pub tasks: Vec<WireTask>,
    /// `source` / `sink` / `unknown`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// A connector instance on the wire.
#[derive(Debug, Clone, Deserialize)]
pub struct WireInstance {
    /// State.
    pub state: String,
    /// Worker id.
    pub worker_id: String,
    /// Trace, when failed.
    #[serde(default)]
    pub trace: Option<String>,
}

/// A task on the wire.
#[derive(Debug, Clone, Deserialize)]
pub struct WireTask {
    /// Task id.
    pub id: u32,
    /// State.
    pub state: String,
    /// Worker id.
    pub worker_id: String,
    /// Trace, when failed.
    #[serde(default)]
    pub trace: Option<String>,
}

/// One entry of `?expand=status&expand=info`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireExpanded {
    /// The status (absent when not asked for).
    #[serde(default)]
    pub status: Option<WireStatus>,
    /// The info (absent when not asked for).
    #[serde(default)]
    pub info: Option<WireInfo>,
}

/// `ConnectorInfo`, the part the probe reads.
#[derive(Debug, Clone, Deserialize)]
pub struct WireInfo {
    /// The config.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct WireError {
    error_code: u16,
    message: String,
}

/// Decode the answer of `GET /connectors?expand=status&expand=info` (errors name the JSON pointer).
pub fn parse_listing(
    site: &ProbeSite<'_>,
    resp: &HttpResponse,
) -> Result<BTreeMap<String, WireExpanded>, ProbeError> {
    check(site, resp)?;
    parse_json(site, &resp.body)
}

/// Decode the answer of `GET /connectors/<name>/status`.
pub fn parse_status(site: &ProbeSite<'_>, resp: &HttpResponse) -> Result<WireStatus, ProbeError> {
    check(site, resp)?;
    parse_json(site, &resp.body)
}

/// A non-2xx answer: the worker's `{"error_code","message"}` as the error message when it sent one.
fn check(site: &ProbeSite<'_>, resp: &HttpResponse) -> Result<(), ProbeError> {
    if resp.is_success() {
        return Ok(());
    }
    let kind = match resp.status {
        401 | 403 => ErrorKind::Unauthorized,
        _ => ErrorKind::Rejected,
    };
    let message = match serde_json::from_slice::<WireError>(&resp.body) {
        Ok(e) => format!(
            "HTTP {} (error_code {}): {}",
            resp.status, e.error_code, e.message
        ),
        Err(_) => format!("HTTP {}: {}", resp.status, resp.snippet(300)),
    };
    Err(site.error(kind, message))
}

// ----- probe ------------------------------------------------------------------------------------

/// Connector and task states (see the [module docs](self)).
#[derive(Debug)]
pub struct ConnectStatus<C> {
    client: C,
    target: Target,
    id: String,
    connector: Option<String>,
    trace_limit: usize,
    top_k: usize,
}

impl<C: HttpClient> ConnectStatus<C> {
    /// Every connector of the Connect cluster behind `client`.
    pub fn new(client: C, target: Target) -> Self {
        Self {
            client,
            target,
            id: "kafka_connect.status".into(),
            connector: None,
            trace_limit: 2_000,
            top_k: 50,
        }
    }

    /// Only this connector (`GET /connectors/<name>/status`; an unknown one is a rejected 404).
    pub fn connector(mut self, name: impl Into<String>) -> Self {
        self.connector = Some(name.into());
        self
    }

    /// Bound each trace to about `chars` characters (default 2,000).
    pub fn trace_limit(mut self, chars: usize) -> Self {
        self.trace_limit = chars.max(80);
        self
    }

    /// Per-connector samples for the `k` worst connectors only (default 50).
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Use another probe id (default `kafka_connect.status`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    fn instance(&self, state: String, worker_id: String, trace: Option<String>) -> InstanceFact {
        let trace = trace.filter(|t| !t.is_empty());
        InstanceFact {
            state,
            worker_id,
            trace_class: trace.as_deref().map(classify_trace),
            trace: trace.map(|t| bound_trace(&t, self.trace_limit)),
        }
    }

    fn fact(&self, s: WireStatus, info: Option<WireInfo>) -> ConnectorFact {
        let mut tasks: Vec<TaskFact> = s
            .tasks
            .into_iter()
            .map(|t| TaskFact {
                id: t.id,
                instance: self.instance(t.state, t.worker_id, t.trace),
            })
            .collect();
        tasks.sort_by_key(|t| t.id);
        ConnectorFact {
            name: s.name,
            kind: s.kind,
            class: info.and_then(|i| i.config.get("connector.class").cloned()),
            instance: self.instance(s.connector.state, s.connector.worker_id, s.connector.trace),
            tasks,
        }
    }

    fn to_observation(
        &self,
        now: rb_core::time::Timestamp,
        fact: ConnectorsFact,
        gaps: Vec<String>,
    ) -> Observation {
        let mut obs = Observation::new(&self.id, &self.target.name, now);
        let failed_tasks: usize = fact
            .connectors
            .iter()
            .map(|c| c.failed_tasks().count())
            .sum();
        let failed_connectors = fact
            .connectors
            .iter()
            .filter(|c| c.instance.state == "FAILED")
            .count();
        obs.push_sample(
            "kafka_connect_connectors",
            Labels::new(),
            fact.connectors.len() as f64,
        );
        obs.push_sample(
            "kafka_connect_failed_tasks",
            Labels::new(),
            failed_tasks as f64,
        );
        obs.push_sample(
            "kafka_connect_failed_connectors",
            Labels::new(),
            failed_connectors as f64,
        );
        let mut top = TopK::new(self.top_k);
        for c in &fact.connectors {
            let score = c.failed_tasks().count() as f64 * 2.0
                + if c.instance.state == "FAILED" {
                    1.0
                } else {
                    0.0
                };
            top.push(score, c);
        }
        for (_, c) in top.into_sorted() {
            let l = labels(&[("connector", &c.name)]);
            obs.push_sample(
                "kafka_connect_connector_failed_task_count",
                l.clone(),
                c.failed_tasks().count() as f64,
            );
            obs.push_sample(
                "kafka_connect_connector_task_count",
                l,
                c.tasks.len() as f64,
            );
            obs.push_sample(
                "kafka_connect_connector_state",
                labels(&[("connector", &c.name), ("state", &c.instance.state)]),
                1.0,
            );
        }
        for g in gaps {
            obs.mark_incomplete(g);
        }
        obs.fact(&fact)
    }
}

#[async_trait]
impl<C: HttpClient> Probe for ConnectStatus<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let mut gaps = Vec::new();
        let mut connectors = Vec::new();
        match &self.connector {
            Some(name) => {
                let path = format!("/connectors/{}/status", rest::encode(name));
                let endpoint = self.client.url(&path);
                let site = ProbeSite {
                    probe: &self.id,
                    target: &self.target.name,
                    endpoint: &endpoint,
                };
                let resp = rest::send(&site, ctx, &self.client, HttpRequest::get(&path)).await?;
                connectors.push(self.fact(parse_status(&site, &resp)?, None));
            }
            None => {
                let path = "/connectors?expand=status&expand=info";
                let endpoint = self.client.url("/connectors");
                let site = ProbeSite {
                    probe: &self.id,
                    target: &self.target.name,
                    endpoint: &endpoint,
                };
                let resp = rest::send(&site, ctx, &self.client, HttpRequest::get(path)).await?;
                for (name, e) in parse_listing(&site, &resp)? {
                    match e.status {
                        Some(s) => connectors.push(self.fact(s, e.info)),
                        None => gaps.push(format!("connector {name} listed without its status")),
                    }
                }
            }
        }
        connectors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(self.to_observation(ctx.now(), ConnectorsFact { connectors }, gaps))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn site() -> ProbeSite<'static> {
        ProbeSite {
            probe: "kafka_connect.status",
            target: "connect",
            endpoint: "http://127.0.0.1:8083/connectors",
        }
    }

    fn ok(body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    const REAL: &str = include_str!(
        "../../../rb-testkit/fixtures/real/kafka-connect/list_expand_status_failed_200.json"
    );

    #[test]
    fn reads_the_real_listing() {
        let m = parse_listing(&site(), &ok(REAL)).unwrap();
        let (name, e) = m.iter().next().unwrap();
        let s = e.status.as_ref().unwrap();
        assert_eq!(&s.name, name);
        assert_eq!(s.tasks[0].state, "FAILED");
        assert!(s.tasks[0]
            .trace
            .as_ref()
            .unwrap()
            .contains("InvalidTopicException"));
    }

    #[test]
    fn errors_name_the_json_pointer() {
        let body = "{\"a\":{\"status\":{\"name\":\"a\",\"connector\":{\"state\":\"RUNNING\",\"worker_id\":\"w\"},\n\"tasks\":[{\"id\":\"zero\",\"state\":\"RUNNING\",\"worker_id\":\"w\"}]}}}";
        let e = parse_listing(&site(), &ok(body)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadResponse);
        assert!(
            e.message.contains("/a/status/tasks/0/id") && e.message.contains("line 2"),
            "{}",
            e.message
        );
    }

    #[test]
    fn worker_errors_carry_their_message() {
        let r = HttpResponse {
            status: 404,
            body: br#"{"error_code":404,"message":"No status found for connector x"}"#.to_vec(),
            ..ok("")
        };
        let e = parse_status(&site(), &r).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(
            e.message.contains("No status found for connector x"),
            "{}",
            e.message
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_listing(&site(), &ok(&String::from_utf8_lossy(&b)));
            let _ = parse_status(&site(), &ok(&String::from_utf8_lossy(&b)));
        }

        #[test]
        fn never_panics_on_mutated_listings(at in 0usize..4000, byte in any::<u8>(), cut in 0usize..4000) {
            let mut b = REAL.as_bytes().to_vec();
            let i = at % b.len();
            b[i] = byte;
            b.truncate(cut.max(1));
            let r = HttpResponse { body: b, ..ok("") };
            let _ = parse_listing(&site(), &r);
        }
    }
}
