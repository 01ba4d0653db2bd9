//! The real-peer tier of rb: handles on real servers started by `peers/scripts/*.sh`, helpers that
//! bring about the runbook's situations for real, and readers of the ground truth through each
//! system's own tools.
//!
//! The scripts write what they started into `.peers/env` (`KEY=VALUE` lines; override the file with
//! `RB_PEERS_ENV`). Tests in `peers/tests/` are `#[ignore]`d in the fast tier and run by
//! `peers/run.sh`, which starts the servers, runs `cargo test -p rb-peers -- --ignored`, and stops them.

pub mod env;
pub mod record;
pub mod shape;

pub mod cassandra;
pub mod flink;
pub mod kafka;
pub mod lakehouse;
pub mod mariadb;
pub mod nessie;
pub mod postgres;
mod sql;

pub use env::PeerEnv;
