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
//! | `cassandra` | cdrs-tokio | [`cassandra`] |
//! | `postgres` | sqlx (postgres, rustls) | `postgres` |
//! | `mysql` | sqlx (mysql, rustls) | `mysql` |
//! | `flink` | reqwest | `flink` |
//! | `nessie` | reqwest | `nessie` |
//! | `prometheus` | reqwest | `prometheus` |
//! | `http` | reqwest | `http` |
//! | `kafka-connect` | reqwest | `kafka_connect` |
//! | `trino` | reqwest | `trino` |
//! | `minio` | reqwest | `minio` |
//! | `loki` | reqwest | `loki` |
//!
//! All are on by default; `cargo check -p rb-probes --no-default-features --features <family>` builds
//! one family alone.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod common;

#[cfg(feature = "http-transport")]
pub mod transport;

#[cfg(feature = "kafka")]
pub mod kafka;
