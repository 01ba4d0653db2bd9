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
//! | [`connect_failed`](situations::connect_failed) | Kafka Connect connector fails | failed tasks > 0, or the connector count drops | restart the connector with its failed tasks, under backoff |
//!
//! Targets are named as in `FakeLakehouse::targets()`: `kafka-main`, `connect-main`, `flink-main`,
//! `cassandra-main`, `nessie-main`, `minio-main`, `trino-main`, `prometheus-main`, `loki-main`,
//! `postgres-main`, `mysql-main`.

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

/// The whole runbook: every situation's playbook, the impact map, the on-call table and the
/// checklist.
pub fn runbook(systems: &Systems) -> Runbook {
    let mut rb = Runbook::new(RUNBOOK)
        .impact(impact())
        .on_call(on_call())
        .checklist(CHECKLIST.iter().map(|s| (*s).to_string()).collect())
        .default_role("Data Platform On-call");
    for playbook in situations::all(systems) {
        rb = rb.playbook(playbook);
    }
    rb
}
