//! Seed §4 **Cassandra node down**: `nodetool status` shows `DN`, or a `UN` node is missing.
//!
//! * **Detect** — rb-probes' [`CqlRingProbe`] over the cdrs-tokio adapter ([`CdrsCqlClient`])
//!   reads the ring through the first contact point that answers and decides each node's liveness
//!   itself (a direct connect to its native port, gossip, the driver's node states). Every CQL
//!   connect and the driver session build are bounded by the probe's node timeout (a refused
//!   contact point makes the driver retry on its back-off instead of failing). A node `D`
//!   (`cassandra_node_up` 0) for the for-duration opens **one incident per node** (the
//!   `address` label). A second playbook, [`MISSING`], fires when a node the ring must list (every
//!   contact point) is absent from it altogether (`cassandra_nodes_missing_expected > 0`).
//! * **Diagnose** — the ring (per node: status, state, load on disk, tokens, schema version), the
//!   container's log lines from Loki (`{container="cassandra"}`: the seed's "check container
//!   logs"), and the JVM heap from Prometheus (`jvm_memory_used_bytes{area="heap"}`, when a JMX
//!   exporter runs beside the nodes: the seed's "check disk/heap and adjust `MAX_HEAP_SIZE`").
//! * **Mitigate** — wait a stage ([`Timings::stage`](crate::lakehouse::Timings), 15 minutes in
//!   the seed): a node that comes back by itself needs nothing. Still down then → a **human**
//!   starts a replacement node (`-Dcassandra.replace_address_first_boot=<address>`) and lets it
//!   bootstrap; the engine pages and waits for the task under the on-call SLA.
//! * **Recover** — the node `UN` again for the stability window.
//! * **Escalate** — Cassandra SME (30 min SLA), then the Data Platform on-call.

use std::sync::Arc;
use std::time::Duration;

use rb_core::incident::StepState;
use rb_core::prelude::*;
use rb_core::symptom::metric;
use rb_probes::cassandra::{metric as ring, CdrsCqlClient, CqlClient, CqlRingConfig, CqlRingProbe};
use rb_probes::loki::LokiLogs;
use rb_probes::prometheus::PromQuery;
use rb_testkit::lakehouse::FakeLakehouse;

use crate::lakehouse::situations::{Expect, Scene, SceneError};
use crate::lakehouse::Systems;

/// The node-down playbook (one incident per node).
pub const PLAYBOOK: &str = "cassandra-node-down";
/// The missing-node playbook.
pub const MISSING: &str = "cassandra-node-missing";
/// The id of the staged, human step.
pub const REPLACE_STEP: &str = "start-replacement-node";

/// What the on-call engineer is asked to do once a stage has passed.
pub const REPLACE_TASK: &str = "The Cassandra node in this incident is still down after a stage: start a replacement container with -Dcassandra.replace_address_first_boot=<its address>, let it bootstrap (nodetool status shows UJ, then UN), then mark this task done";

/// Both playbooks of the situation (sharing one CQL client and its driver session).
pub fn playbooks(s: &Systems) -> Vec<Playbook> {
    let client = cql_client(s);
    vec![playbook_with(s, client.clone()), missing_with(s, client)]
}

fn cql_client(s: &Systems) -> Arc<dyn CqlClient> {
    match &s.credentials.cassandra {
        Some((user, password)) => {
            Arc::new(CdrsCqlClient::new().with_password(user.clone(), password.clone()))
        }
        None => Arc::new(CdrsCqlClient::new()),
    }
}

fn ring_probe(s: &Systems, client: Arc<dyn CqlClient>) -> Arc<CqlRingProbe> {
    let points = s.endpoints.cassandra.clone();
    let expected: Vec<String> = points.iter().map(|a| a.ip().to_string()).collect();
    // each connect (and the driver session build) gets at most half the probe's deadline
    let node_timeout = (s.timings.probe_deadline / 2).min(Duration::from_secs(2));
    Arc::new(CqlRingProbe::new(
        s.cassandra.clone(),
        CqlRingConfig::new(points)
            .node_timeout(node_timeout)
            .expected_nodes(expected),
        client,
    ))
}

fn diagnosis(p: Playbook, s: &Systems, client: Arc<dyn CqlClient>) -> Playbook {
    p.diagnose(ring_probe(s, client))
        .diagnose(Arc::new(
            LokiLogs::new(
                s.loki_http.clone(),
                s.loki.clone(),
                r#"{container="cassandra"}"#,
            )
            .window(s.timings.stage.max(Duration::from_secs(900)))
            .limit(50)
            .id("loki.cassandra_logs"),
        ))
        .diagnose(Arc::new(
            PromQuery::instant(
                s.prometheus_http.clone(),
                s.cassandra.clone(),
                r#"jvm_memory_used_bytes{area="heap"}"#,
            )
            .id("prometheus.cassandra_heap"),
        ))
}

/// A node `DN` for the for-duration, one incident per node; after a stage, a human replaces it.
pub fn playbook(s: &Systems) -> Playbook {
    playbook_with(s, cql_client(s))
}

fn playbook_with(s: &Systems, client: Arc<dyn CqlClient>) -> Playbook {
    let t = &s.timings;
    let p = Playbook::new(PLAYBOOK, "Cassandra node down")
        .service("cassandra")
        .detect(
            ring_probe(s, client.clone()),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            metric(ring::NODE_UP)
                .min()
                .below(1.0)
                .for_at_least(t.for_duration),
        )
        .incident_per(&["address"]);
    diagnosis(p, s, client)
        .human_task(REPLACE_STEP, REPLACE_TASK)
        .unless_recovered_within(t.stage)
        // a recovery check is a symptom that must stay ok: the node up for the window
        .recover_on_detect(metric(ring::NODE_UP).min().below(1.0))
        .stable_for(t.stable_for)
        .review_item("Why did the node go down (OOM, disk full, host lost)? Adjust MAX_HEAP_SIZE or disk if so (seed §4)")
        .review_item("Was a replacement needed, and how long did its bootstrap take?")
        .review_item("Did the clients' consistency level keep the customer-profile reads working meanwhile?")
        .escalate_to("Cassandra SME")
}

/// An expected node absent from the ring for the for-duration: page a human.
pub fn missing(s: &Systems) -> Playbook {
    missing_with(s, cql_client(s))
}

fn missing_with(s: &Systems, client: Arc<dyn CqlClient>) -> Playbook {
    let t = &s.timings;
    let p = Playbook::new(MISSING, "Cassandra node missing from the ring")
        .service("cassandra")
        .detect(
            ring_probe(s, client.clone()),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            metric(ring::MISSING_EXPECTED)
                .above(0.0)
                .for_at_least(t.for_duration),
        );
    diagnosis(p, s, client)
        .human_task(
            "find-missing-node",
            "A Cassandra node expected in the ring is not listed at all (removed, or never joined): find out why, and re-add or replace it",
        )
        .recover_on_detect(metric(ring::MISSING_EXPECTED).above(0.0))
        .stable_for(t.stable_for)
        .review_item("Who removed the node from the ring, or why did it never join?")
        .escalate_to("Cassandra SME")
}

/// **Real:** node `node` (0-based, `127.0.0.<node+1>`) crashes. The world heals at `heal_after`
/// from the start (the node restarts, or a replacement has bootstrapped); if the engine hands out
/// the replacement task before that, the scripted on-call engineer takes it and marks it done.
#[derive(Debug, Clone)]
pub struct NodeDown {
    /// The node (0-based).
    pub node: usize,
    /// When, from the start, the node is `UN` again.
    pub heal_after: Duration,
    healed: Arc<std::sync::atomic::AtomicBool>,
}

impl NodeDown {
    /// Node `node` is down for `heal_after`.
    pub fn new(node: usize, heal_after: Duration) -> Self {
        Self {
            node,
            heal_after,
            healed: Arc::default(),
        }
    }

    /// The node's address (its incident key).
    pub fn address(&self) -> String {
        format!("127.0.0.{}", self.node + 1)
    }
}

#[async_trait]
impl Scene for NodeDown {
    fn name(&self) -> String {
        format!(
            "Cassandra node {} down for {}",
            self.address(),
            rb_core::time::human(self.heal_after)
        )
    }

    fn expect(&self) -> Option<Expect> {
        Some(Expect {
            playbook: PLAYBOOK,
            key: vec![("address", self.address())],
            applied: Vec::new(),
        })
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.cassandra_node_down(self.node)
            .map_err(|e| SceneError::new(self.name(), e))
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, SceneError> {
        let err = |e: rb_core::Error| SceneError::new(self.name(), e);
        let mut open = false;
        for inc in engine.incidents().await.map_err(err)? {
            if inc.is_closed() || !self.expect().is_some_and(|x| x.matches(&inc)) {
                continue;
            }
            open = true;
            // the replacement task is waiting: the on-call engineer starts the new node
            if inc.step_state(0) == StepState::Started {
                engine
                    .complete_task(&inc.record.id, REPLACE_STEP, "scripted on-call")
                    .await
                    .map_err(err)?;
            }
        }
        let healed = self.healed.load(std::sync::atomic::Ordering::SeqCst);
        if !healed && since_start >= self.heal_after {
            lake.heal_cassandra()
                .await
                .map_err(|e| SceneError::new(self.name(), e))?;
            self.healed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(self.healed.load(std::sync::atomic::Ordering::SeqCst) && !open)
    }
}
