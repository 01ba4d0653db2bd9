//! Seed §4 **Trino backlog grows**: `trino_execution_queuedqueries` high, the dashboard shows
//! queued > 0 continuously.
//!
//! * **Detect** — rb-probes' [`PromQuery`] reads `trino_execution_queuedqueries` (Trino's JMX
//!   exporter gauge) from Prometheus; above 0 for the for-duration opens **one incident for the
//!   coordinator** (`trino-main`). A queue that empties within the for-duration is ordinary load.
//! * **Diagnose** — the coordinator's unfinished queries from rb-probes' [`TrinoQueries`]
//!   (`GET /v1/query` with `X-Trino-User`: the heaviest first, with CPU, memory, elapsed time and
//!   SQL — what the kill chooses from) and MinIO's usable free capacity ([`MinioCapacity`],
//!   `minio_cluster_capacity_usable_free_bytes`: the seed's "check cluster resources").
//! * **Mitigate** — rb-actions' [`KillQueries`]: the heaviest unfinished queries that have run for
//!   at least 5 minutes and hold at least 1 GiB are killed with `PUT /v1/query/{id}/killed` and
//!   `X-Trino-User` (the seed's **[correction]**; the UI and API are on port 8080), at most
//!   [`MAX_KILLS`] per incident, and verified `FAILED` with `ADMINISTRATIVELY_KILLED`. Killing is
//!   disruptive: the approver is asked first.
//! * **Recover** — nothing queued for the stability window.
//! * **Review** — "scale Spark/Trino workers if the load persists".
//! * **Escalate** — Infra, then the Data Platform on-call.
//!
//! The Trino user is the one of [`Credentials::trino`](crate::lakehouse::Credentials) (`rb` when
//! none is configured); it needs `view` and `kill` on other users' queries, and [`TrinoQueries`]
//! is told it sees every query ([`TrinoQueries::full_view`]).

use std::sync::Arc;
use std::time::Duration;

use rb_actions::trino::{Criteria, KillQueries, RankBy};
use rb_core::prelude::*;
use rb_core::symptom::metric;
use rb_probes::minio::MinioCapacity;
use rb_probes::prometheus::PromQuery;
use rb_probes::trino::TrinoQueries;
use rb_testkit::lakehouse::FakeLakehouse;

use crate::lakehouse::situations::{Expect, Scene, SceneError};
use crate::lakehouse::Systems;

/// The playbook id.
pub const PLAYBOOK: &str = "trino-backlog";

/// Trino's queued-queries gauge, as Prometheus scrapes it from the JMX exporter.
pub const QUEUED: &str = "trino_execution_queuedqueries";

/// At most this many queries are killed per incident; past it a human decides.
pub const MAX_KILLS: usize = 2;

/// The id of the kill step.
pub const KILL_STEP: &str = "kill-heaviest-queries";

/// The Trino user rb acts as: the configured one, else `rb`.
pub fn trino_user(s: &Systems) -> String {
    s.credentials
        .trino
        .as_ref()
        .map_or_else(|| "rb".to_string(), |(user, _)| user.clone())
}

/// The playbooks of the situation (one).
pub fn playbooks(s: &Systems) -> Vec<Playbook> {
    vec![playbook(s)]
}

fn queued_probe(s: &Systems) -> Arc<dyn Probe> {
    Arc::new(
        PromQuery::instant(s.prometheus_http.clone(), s.trino.clone(), QUEUED)
            .id("prometheus.trino_queued"),
    )
}

/// `trino_execution_queuedqueries > 0` for the for-duration; kill the heaviest queries.
pub fn playbook(s: &Systems) -> Playbook {
    let t = &s.timings;
    let user = trino_user(s);
    let kill = KillQueries::new(s.trino_http.clone(), s.trino.clone(), user.clone())
        .criteria(Criteria {
            min_elapsed: Duration::from_secs(300),
            min_memory: 1 << 30,
            users: Vec::new(),
            protected_users: Vec::new(),
            rank_by: RankBy::Memory,
        })
        .max_per_incident(MAX_KILLS)
        .message("killed by rb: the Trino queue is backing up (lakehouse runbook, Trino backlog)");
    Playbook::new(PLAYBOOK, "Trino backlog grows")
        .service("trino")
        .detect(
            queued_probe(s),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            metric(QUEUED).max().above(0.0).for_at_least(t.for_duration),
        )
        .diagnose(Arc::new(
            TrinoQueries::new(s.trino_http.clone(), s.trino.clone(), user)
                .full_view(true)
                .top_k(10),
        ))
        .diagnose(Arc::new(MinioCapacity::new(
            s.minio_http.clone(),
            s.minio.clone(),
        )))
        .mitigate_as(KILL_STEP, Arc::new(kill))
        // a recovery check is a symptom that must stay ok: nothing queued for the window
        .recover_on_detect(metric(QUEUED).max().above(0.0))
        .stable_for(t.stable_for)
        .review_item("Scale Spark/Trino workers if the load persists (seed §4)")
        .review_item("Which workload sent the heavy query, and should a resource group cap it?")
        .review_item("Was MinIO or the workers' CPU the bottleneck (cAdvisor)?")
        .escalate_to("Infra")
}

/// **Real:** one heavy query runs for 20 minutes and `queued` dashboard queries wait behind it;
/// once the heavy query is killed (seen in the fake), the queued ones run and finish.
#[derive(Debug, Clone)]
pub struct Backlog {
    /// Queries queued behind the heavy one.
    pub queued: usize,
    heavy: Arc<std::sync::Mutex<Option<String>>>,
}

impl Backlog {
    /// `queued` queries wait behind a heavy cross join.
    pub fn new(queued: usize) -> Self {
        Self {
            queued,
            heavy: Arc::default(),
        }
    }

    /// The heavy query's id, once started.
    pub fn heavy_query(&self) -> Option<String> {
        self.heavy.lock().ok().and_then(|h| h.clone())
    }
}

#[async_trait::async_trait]
impl Scene for Backlog {
    fn name(&self) -> String {
        format!(
            "Trino backlog: {} queries queued behind a heavy one",
            self.queued
        )
    }

    fn expect(&self) -> Option<Expect> {
        Some(Expect {
            playbook: PLAYBOOK,
            key: Vec::new(),
            applied: vec![KILL_STEP],
        })
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        let heavy = lake.trino_backlog(self.queued);
        if let Ok(mut h) = self.heavy.lock() {
            *h = Some(heavy);
        }
        Ok(())
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        _engine: &Engine,
        _since_start: Duration,
    ) -> Result<bool, SceneError> {
        let Some(heavy) = self.heavy_query() else {
            return Err(SceneError::new(self.name(), "the scene was not started"));
        };
        // the world answers the kill: the slot frees up and the queue drains
        let killed = lake
            .trino()
            .query(&heavy)
            .is_some_and(|q| q.state.is_done());
        if killed {
            lake.heal_trino();
        }
        Ok(killed && lake.trino().queued_count() == 0)
    }
}
