//! HTTP fakes of the systems a lakehouse runbook talks to, built on axum (and of the paging
//! endpoints it notifies: a Slack incoming webhook, PagerDuty's Events API v2).
//!
//! Every fake is a [`FakeHttp`] server on `127.0.0.1:<ephemeral>` that starts in milliseconds and stops
//! when its handle is dropped. It shares one request record ([`RequestLog`]) and one fault injector
//! ([`Faults`]) with every other fake, so a test asserts on what a remediation did the same way
//! whatever system it touched:
//!
//! ```no_run
//! # async fn demo(fake: &rb_testkit::http::FakeHttp) {
//! use rb_testkit::http::Fault;
//! fake.faults().inject("GET", "/jobs/*/status", Fault::Status(503)).times(2);
//! // ... run the code under test ...
//! assert_eq!(fake.requests().matching("PUT", "/jobs/*/resource-requirements").len(), 1);
//! # }
//! ```

mod fault;
mod record;
mod server;

pub mod alertmanager;
pub mod flink;
pub mod kafka_connect;
pub mod loki;
pub mod minio;
pub mod nessie;
pub mod pagerduty;
pub mod prometheus;
pub mod slack;
pub mod trino;

pub use fault::{Fault, FaultHandle, Faults};
pub use record::{path_matches, RecordedRequest, RequestLog};
pub use server::FakeHttp;
