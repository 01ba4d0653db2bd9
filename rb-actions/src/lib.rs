//! # rb-actions
//!
//! Remediations for the lakehouse runbook's situations, each family behind its own cargo feature. Every
//! one implements [`rb_core::Remediation`]: `plan()` says exactly what will happen, on which targets, at
//! which risk, whether it can be undone (and how); `apply()` does it; `verify()` says whether it worked.
//! The engine enforces the safety envelope around them (approval, cool-down, budgets, blast radius,
//! at-most-once per incident step, journaled before and after).
//!
//! ## Cargo features
//!
//! | feature | pulls in | gives |
//! | --- | --- | --- |
//! | `flink` | reqwest (through rb-probes) | `flink` |
//! | `nessie` | reqwest (through rb-probes) | `nessie` |
//! | `kafka-connect` | reqwest (through rb-probes) | [`kafka_connect`] |
//! | `trino` | reqwest (through rb-probes) | [`trino`] |
//! | `postgres` | sqlx (through rb-probes) | `postgres` |
//! | `mysql` | sqlx (through rb-probes) | `mysql` |
//! | `kafka` | rdkafka | [`kafka`] |
//! | `exec` | tokio process | [`exec`] |
//! | `notify` | reqwest (through rb-probes) | [`notify`] |
//!
//! All are on by default; `cargo check -p rb-actions --no-default-features --features <family>` builds
//! one family alone.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(any(feature = "flink", feature = "nessie"))]
mod rest;

#[cfg(feature = "flink")]
pub mod flink;
#[cfg(feature = "nessie")]
pub mod nessie;

#[cfg(any(feature = "kafka-connect", feature = "trino"))]
mod http_call;

#[cfg(feature = "kafka-connect")]
pub mod kafka_connect;

#[cfg(feature = "notify")]
pub mod notify;

#[cfg(feature = "trino")]
pub mod trino;

#[cfg(feature = "exec")]
pub mod exec;

#[cfg(feature = "kafka")]
pub mod kafka;

#[cfg(feature = "postgres")]
pub mod postgres;
