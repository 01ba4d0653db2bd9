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
//! | `flink::Savepoint` | `flink.savepoint` | safe | yes (fixed trigger id) | nothing to undo | `latest.savepoint.external_path` is the savepoint | `POST /jobs/<id>/savepoints`, `GET /jobs/<id>/savepoints/<trigger>` (a COMPLETED answer with a `failure-cause` is a failure) |
//! | `flink::StopWithSavepoint` | `flink.stop_with_savepoint` | disruptive | yes (fixed trigger id) | restore from the savepoint | the job FINISHED | `POST /jobs/<id>/stop`, then its trigger polled |
//! | `flink::Restore` | `flink.restore` | disruptive | no (a journaled new job id is never submitted twice) | cancel the new job; the snapshot is untouched (NO_CLAIM) | the new job RUNNING and `latest.restored.external_path` = the path | `GET /jobs/<id>/checkpoints`, `PATCH /jobs/<id>?mode=cancel`, `POST /jars/<jar>/run` with `savepointPath`/`claimMode` (through the job-submitter trait) |
//! | `flink::Rescale` (in place) | `flink.rescale` | disruptive | yes | `PUT` the previous requirements | every vertex at its target parallelism | `GET` then `PUT /jobs/<id>/resource-requirements` (never `POST /jobs/<id>/rescale`, which does not exist) |
//! | `flink::Rescale` (fallback) | `flink.rescale` | **destructive** (a human approves) | journaled savepoint / job reused | restore the savepoint at the old parallelism | the new job RUNNING at the target parallelism | stop with savepoint, then resubmit at the new parallelism |
//! | `nessie::CreateBranch` | `nessie.create_branch` | safe | yes | `DELETE /trees/<branch>@<hash>` | the branch at the hash | `POST /api/v2/trees?name=<b>&type=BRANCH` |
//! | `nessie::MergeFromBackup` | `nessie.merge_from_backup` | disruptive | yes (same `fromHash`) | assign the branch back (hash in the plan) | HEAD is the merge | `POST /api/v2/trees/<b>@<hash>/history/merge` with `isDryRun: true` (plan), then for real, `isReturnConflictAsResult` |
//! | `nessie::AssignBranch` | `nessie.assign` | **destructive** | yes | assign back to the previous hash | the branch at the target | `PUT /api/v2/trees/<b>@<expected hash>` (a concurrent commit is a conflict, never overwritten) |
//! | `kafka_connect::RestartConnector` | `kafka_connect.restart` / `kafka_connect.restart_after_fix` (a human approves) | disruptive | yes | nothing to undo | connector and tasks RUNNING | `POST /connectors/<n>/restart?includeTasks=true&onlyFailed=true` (409 retried after a delay), under restart backoff |
//! | `kafka_connect::RestartTask` / `PauseConnector` / `ResumeConnector` | `kafka_connect.restart_task` / `.pause` / `.resume` | disruptive / disruptive / safe | yes | none / resume / pause | the state asked for | `POST …/tasks/<t>/restart`, `PUT …/pause`, `PUT …/resume` |
//! | `trino::KillQueries` | `trino.kill_queries` | disruptive | yes | **no** | `FAILED` with `ADMINISTRATIVELY_KILLED` | `PUT /v1/query/<id>/killed` with `X-Trino-User`, at most N per incident |
//! | `kafka::AddPartitions` | `kafka.add_partitions` | **destructive**, a human always approves | yes (asks for a total) | **no** (key-to-partition mapping changes) | the topic has the total | `CreatePartitions` |
//! | `exec::CommandRemediation` | chosen | chosen | chosen | chosen | exit status | the allow-listed argv, no shell |
//!
//! Each family's module docs hold its full table (undo, verification deadline, every call, the
//! errors); `notify` holds notifiers (Slack, PagerDuty Events API v2, a JSON webhook), not
//! remediations.
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
