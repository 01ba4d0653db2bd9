//! # rb-probes
//!
//! Native probes for the systems of the lakehouse runbook, each family behind its own cargo feature.
//! Every probe implements [`rb_core::Probe`]: read-only, under the engine's deadline, with typed errors
//! that name the target, the endpoint and what was wrong. Unknown is never healthy: a probe that cannot
//! see returns an error, one that sees part of its target returns an incomplete observation.
//!
//! Each family's logic is generic over a small client trait (so it can be tested and reused without a
//! driver), with a feature-gated adapter for the real driver. No driver type appears in a public
//! signature.
//!
//! ## Cargo features
//!
//! | feature | pulls in | gives |
//! | --- | --- | --- |
//! | `kafka` | rdkafka (builds librdkafka) | [`kafka`] |
//! | `kafka-tls` (not default) | `kafka` + rdkafka's `ssl` (librdkafka with OpenSSL) | TLS and SASL SCRAM for [`kafka`] |
//! | `cassandra` | cdrs-tokio (with rustls for TLS), tokio process | [`cassandra`] |
//! | `postgres` | sqlx (postgres, rustls) | [`postgres`] (shared: [`sql`]) |
//! | `mysql` | sqlx (mysql, rustls) | [`mysql`] (shared: [`sql`]) |
//! | `flink` | reqwest | [`flink`]: cluster overview, live job state, restarts, checkpoints, classified exceptions, vertex busy/back-pressure |
//! | `nessie` | reqwest | [`nessie`]: API and management health, reference HEADs, commit log, branch vs backup |
//! | `prometheus` | reqwest | [`prometheus`] (instant and range PromQL queries as rb samples), [`exposition`] (text format parser) |
//! | `http` | reqwest, regex | [`http`] (status, latency and body of one request) |
//! | `kafka-connect` | reqwest | [`kafka_connect`] (connector and task states, failed tasks' traces classified) |
//! | `trino` | reqwest | [`trino`] (queued, running, blocked queries; a SQL probe over the client protocol) |
//! | `minio` | reqwest | [`minio`] (liveness, write and read quorum, free capacity from the metrics text) |
//! | `loki` | reqwest | [`loki`] (log lines of a selector over a window, as evidence) |
//! | `alertmanager` | reqwest | [`alertmanager`] (active alerts for the post-recovery checklist, the engine's reconciliation at start) |
//!
//! All are on by default; `cargo check -p rb-probes --no-default-features --features <family>` builds
//! one family alone.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod common;

#[cfg(feature = "http-transport")]
pub mod transport;

#[cfg(feature = "alertmanager")]
pub mod alertmanager;
#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "flink")]
pub mod flink;
#[cfg(feature = "nessie")]
pub mod nessie;
#[cfg(any(
    feature = "alertmanager",
    feature = "prometheus",
    feature = "http",
    feature = "kafka-connect",
    feature = "trino",
    feature = "minio",
    feature = "loki"
))]
mod rest;

#[cfg(any(feature = "prometheus", feature = "minio"))]
pub mod exposition;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka-connect")]
pub mod kafka_connect;
#[cfg(feature = "loki")]
pub mod loki;
#[cfg(feature = "minio")]
pub mod minio;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "trino")]
pub mod trino;
