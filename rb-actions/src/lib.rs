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
//! | `postgres` | sqlx (postgres, rustls) | [`postgres`] |
//! | `mysql` | sqlx (mysql, rustls) | [`mysql`] |
//! | `kafka` | rdkafka | [`kafka`] |
//! | `exec` | tokio process | [`exec`] |
//! | `notify` | reqwest (through rb-probes) | [`notify`] |
//!
//! All are on by default; `cargo check -p rb-actions --no-default-features --features <family>` builds
//! one family alone.
//!
//! ## Remediations
//!
//! | remediation | id | risk | idempotent | reversible (undo) | verification | exact calls |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | [`postgres::TerminateSessions`] | `postgres.terminate_sessions` | disruptive | yes: a terminated pid is gone, a second apply sends no second terminate | **no**: open transactions roll back, clients reconnect | within 30 s the terminated pids are gone from `pg_stat_activity` | `pg_stat_activity` read ([`postgres::ACTIVITY_SQL`]) and `SELECT rolname::text AS rolname FROM pg_roles WHERE rolsuper` (plan, apply); `SELECT pg_terminate_backend($1)` per session, at most N (apply); the activity read again (verify) |
//! | [`mysql::KillSessions`] | `mysql.kill_sessions` | disruptive | yes: a killed id is gone or answers 1094, counted as done | **no**: open transactions roll back, clients reconnect | within 30 s the killed ids are gone from the processlist | `@@max_connections, @@version, CONNECTION_ID()`, `information_schema.PROCESSLIST`, `information_schema.INNODB_TRX`, `information_schema.USER_PRIVILEGES` (SUPER / CONNECTION ADMIN) (plan, apply); `KILL CONNECTION <id>` per session, at most N (apply); the processlist again (verify) |
//! | [`mysql::KillSessions`] with [`mysql::KillMode::Query`] | `mysql.kill_queries` | disruptive | yes: an ended statement is left alone | **no**: the statement is aborted (the connection and its transaction stay) | within 30 s the ids run no statement as old as the killed one | as above with `KILL QUERY <id>` |
//!
//! Both never touch the action's own session, the probe's, system / background / replication
//! sessions or superuser (SUPER / CONNECTION ADMIN) accounts; their plans list each session with
//! its user, state, age and statement text with literals redacted (module docs: [`postgres`],
//! [`mysql`]).
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

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
