//! The seed runbook (`incident-runbook.en.md`) as code: the seven situations of its §4 as playbooks
//! built from rb-probes and rb-actions, the impact map of §2, the on-call table of §5 and the
//! post-recovery checklist of §6.
//!
//! Everything here is built from [`Systems`]: where each system of the lakehouse listens
//! ([`Endpoints`]), the credentials to reach it ([`Credentials`], secrets only) and the durations
//! the playbooks use ([`Timings`]: for-durations, probe intervals, stability windows, stages).
//! The same playbooks run on rb-testkit's `FakeLakehouse` ([`Endpoints::from_fake`]) and on real
//! servers (a TOML file names the endpoints; credentials come from environment variables).
//!
//! | playbook | seed §4 | detected by | temporary fix |
//! | --- | --- | --- | --- |
//! | [`kafka_backlog`](situations::kafka_backlog) | Kafka backlog grows | `records_lag_max` > 5,000 for the for-duration (lag probe over rdkafka) while the group falls behind or stalls (Burrow-style status); one incident per group/topic | rescale the consuming Flink job in place to the autoscaler's parallelism |
//! | [`flink_restarting`](situations::flink_restarting) | Flink job restarts repeatedly | `numRestarts` up by more than 2 in 5 min, or the job down for the for-duration; one incident per job | schema error: a human deploys the fixed JAR, then restore from the latest checkpoint; lost TaskManager: a human scales out |
//! | [`cassandra_down`](situations::cassandra_down) | Cassandra node down | a node `DN`, or an expected `UN` node missing | wait a stage; then a human starts a replacement node and lets it bootstrap |
//! | [`nessie_commit`](situations::nessie_commit) | Paimon/Nessie cannot commit | `main` diverged from the backup branch, or Nessie's `/q/health` DOWN; MinIO usable free space low | merge from the backup branch (Nessie's dry run first), or assign back to a known-good hash; low MinIO space pages a human |
//! | [`connect_failed`](situations::connect_failed) | Kafka Connect connector fails | failed tasks > 0, or the connector count drops | restart the connector with its failed tasks, under backoff |
//! | [`trino_backlog`](situations::trino_backlog) | Trino backlog grows | `trino_execution_queuedqueries > 0` for the for-duration | kill the heaviest queries (at most 2 per incident) |
//! | [`db_saturation`](situations::db_saturation) | MySQL/PostgreSQL connection saturation | used connections > 90 % of `max_connections` | shed sessions idle in a transaction (at most 30); a human shrinks the pool |
//!
//! Targets are named as in `FakeLakehouse::targets()`: `kafka-main`, `connect-main`, `flink-main`,
//! `cassandra-main`, `nessie-main`, `minio-main`, `trino-main`, `prometheus-main`, `loki-main`,
//! `postgres-main`, `mysql-main`.

pub mod checklist;
pub mod config;
pub mod day;
pub mod situations;
mod systems;

pub use systems::{BuildError, Credentials, Endpoints, Systems, Timings};

use rb_core::escalation::OnCall;
use rb_core::{ImpactMap, Runbook};

/// The runbook's name (the first part of every incident id).
pub const RUNBOOK: &str = "lakehouse";

/// The post-recovery checklist of seed §6, in its order.
pub const CHECKLIST: &[&str] = &[
    "Alert cleared in Alertmanager",
    "Checkpoint/savepoint updated",
    "Data cross-checked (Spark/Trino) and valid",
    "ITSM ticket moved to Resolved",
    "RCA document stored in the internal wiki",
];

/// The impact map of seed §2 ("which pipelines are affected"): each pipeline of the lakehouse and
/// the targets it runs through.
pub fn impact() -> ImpactMap {
    ImpactMap::new()
        .pipeline(
            "orders CDC → Paimon (realtime orders)",
            &[
                "mysql-main",
                "connect-main",
                "kafka-main",
                "flink-main",
                "nessie-main",
                "minio-main",
            ],
        )
        .pipeline(
            "payments → Doris (finance dashboards)",
            &["postgres-main", "connect-main", "kafka-main"],
        )
        .pipeline(
            "customer profiles (Cassandra serving)",
            &["cassandra-main", "flink-main"],
        )
        .pipeline(
            "ad-hoc analytics (Trino over Paimon)",
            &["trino-main", "nessie-main", "minio-main"],
        )
}

/// The on-call table of seed §5 with its response SLAs (SMEs re-escalate to the Data Platform
/// on-call when their SLA passes).
pub fn on_call() -> OnCall {
    OnCall::seed()
}

/// Whether every probe that detects for `playbook` has an address to reach (a system left out of
/// a configuration file leaves its target without `url` / `bootstrap` / `contact` / `addr`).
pub fn configured(playbook: &rb_core::Playbook) -> bool {
    playbook.detectors().iter().all(|d| match &d.source {
        rb_core::playbook::Source::Probe { probe, .. } => {
            let labels = &probe.target().labels;
            ["url", "bootstrap", "contact", "addr"]
                .iter()
                .filter_map(|k| labels.get(*k))
                .all(|v| !v.is_empty())
        }
        _ => true,
    })
}

/// The whole runbook: every situation's playbook whose systems are [`configured`], the impact
/// map, the on-call table and the checklist; or the client of a configured system that cannot
/// be built.
pub fn runbook(systems: &Systems) -> Result<Runbook, BuildError> {
    let mut rb = Runbook::new(RUNBOOK)
        .impact(impact())
        .on_call(on_call())
        .checklist(CHECKLIST.iter().map(|s| (*s).to_string()).collect())
        .default_role("Data Platform On-call");
    for playbook in situations::all(systems)?.into_iter().filter(configured) {
        rb = rb.playbook(playbook);
    }
    Ok(rb)
}
