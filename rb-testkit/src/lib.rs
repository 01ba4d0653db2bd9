//! # rb-testkit
//!
//! Test rb playbooks — and your own remediation logic — before they touch production: fake clusters that
//! the real client libraries cannot tell from the real servers (for the calls rb makes), a virtual clock,
//! a scenario harness with readable failures, recording doubles and mockall mocks of rb-core's traits.
//!
//! ## Testing a playbook, in five lines
//!
//! ```
//! # use rb_core::prelude::*; use rb_testkit::{doubles::*, scenario::Scenario};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let lag = GaugeProbe::new(Target::new("kafka", "kafka-main"), "records_lag_max", 12_000.0);
//! let rescale = RecordingRemediation::new("flink.rescale", Risk::Disruptive, vec![Target::new("flink", "flink-main")]);
//! let runbook = Runbook::new("lake").playbook(Playbook::new("kafka-backlog", "Kafka backlog")
//!     .detect(lag.arc(), Schedule::every(secs(30)), metric("records_lag_max").above(5_000.0).for_at_least(mins(2)))
//!     .mitigate(rescale.arc()));
//! let run = Scenario::new(runbook).start().await.unwrap();
//! run.run_for(mins(3)).await.incident("kafka-backlog").await.expect_applied("flink.rescale");
//! assert_eq!(rescale.applied(), 1);
//! # }
//! ```
//!
//! ## Cargo features
//!
//! | feature | default | pulls in | gives |
//! | --- | --- | --- | --- |
//! | `http` | yes | axum, reqwest, regex, sha2 | [`http`]: fakes of Flink, Nessie, Kafka Connect, Trino, Prometheus, MinIO, Loki, a Slack webhook and PagerDuty's Events API v2; an Alertmanager webhook sender; fault injection and request records |
//! | `kafka` | yes | rdkafka (builds librdkafka with cc + make) | [`kafka`]: a fake Kafka on librdkafka's mock cluster with exact, seeded consumer-group lag |
//! | `kafka-tls` | no | `kafka` + rustls, tokio-rustls, hmac, sha2, base64 | [`kafka::SecureListeners`] (`FakeKafka::secure_listeners`): SASL_SSL, SASL_PLAINTEXT or SSL listeners in front of the fake's brokers, SASL PLAIN and SCRAM-SHA-256/512 checked as a broker checks them |
//! | `cassandra` | yes | cassandra-protocol | [`cassandra`]: a fake N-node ring speaking CQL native protocol v4, and its `nodetool status` |
//! | `postgres` | yes | pgwire | [`postgres`]: a fake PostgreSQL (simple and extended query protocol) with scripted settings and `pg_stat_activity`, `pg_terminate_backend`, wire-level faults |
//! | `mysql` | yes | opensrv-mysql | [`mysql`]: a fake MySQL / MariaDB with scripted variables, status, processlist and `INNODB_TRX`, `KILL`, wire-level faults |
//! | `http` + `kafka` + `cassandra` | yes | all of the above | [`lakehouse`]: `FakeLakehouse`, every fake of the seed runbook's situations in one call, with a method to bring about each situation and one to heal it |
//! | `mocks` | yes | mockall | [`mocks`]: mocks of `Probe`, `Remediation`, `Approver`, `Notifier`, `Journal` |
//!
//! Always there: [`scenario`] (the harness), [`clock`] (the virtual clock), [`doubles`] (recording
//! probe, remediation and notifier) and [`shape`] (compare JSON answers by field names and types, to
//! validate your own fakes against real captures).
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod clock;
pub mod doubles;
pub mod scenario;
pub mod shape;

#[cfg(feature = "mocks")]
pub mod mocks;

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub mod sqlwire;

#[cfg(all(
    feature = "http",
    feature = "kafka",
    feature = "cassandra",
    feature = "postgres",
    feature = "mysql"
))]
pub mod lakehouse;
