//! # rb-core
//!
//! The heart of rb: the traits a probe or remediation author implements ([`Probe`], [`Symptom`],
//! [`Remediation`], [`Approver`](policy::Approver), [`Notifier`], [`Journal`]), the five-phase
//! [`Engine`], the safety envelope it enforces ([`policy`]), and the incident [`journal`].
//!
//! A third-party probe author depends on this crate alone. It never installs a `tracing` subscriber.
//!
//! ## Cargo features
//!
//! | feature | default | pulls in | gives |
//! | --- | --- | --- | --- |
//! | `sqlite` | yes | `sqlx` (sqlite, bundled libsqlite3) | [`journal::SqliteJournal`], the embedded journal that survives restarts |
//! | `receiver` | no | `axum`, tokio `net` | [`receiver::AlertReceiver`], an Alertmanager webhook receiver (bearer token, body-size limit) |
//!
//! ## Example: a playbook, an engine, a virtual clock
//!
//! ```
//! use std::sync::Arc;
//! use rb_core::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), rb_core::Error> {
//! let kafka = Target::new("kafka", "kafka-main");
//! let lag = Arc::new(FnProbe::new("example.lag", kafka.clone(), |ctx| {
//!     Ok(Observation::new("example.lag", "kafka-main", ctx.now())
//!         .sample("records_lag_max", labels(&[("group", "orders")]), 12_000.0))
//! }));
//! let runbook = Runbook::new("demo").playbook(
//!     Playbook::new("kafka-backlog", "Kafka backlog grows")
//!         .service("orders-pipeline")
//!         .detect(lag, Schedule::every(secs(30)), metric("records_lag_max").above(5_000.0).for_at_least(mins(2))),
//! );
//! let engine = Engine::builder(runbook).build().await?;
//! engine.run_for(mins(3)).await?;               // virtual time: returns at once
//! assert_eq!(engine.open_incidents().await.len(), 1);
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod coordination;
pub mod engine;
pub mod error;
pub mod escalation;
pub mod incident;
pub mod journal;
pub mod matcher;
pub mod metrics;
pub mod observation;
pub mod playbook;
pub mod policy;
pub mod probe;
#[cfg(feature = "receiver")]
pub mod receiver;
pub mod remediation;
pub mod report;
pub mod secret;
pub mod signal;
pub mod symptom;
pub mod target;
pub mod time;

pub use async_trait::async_trait;

pub use coordination::{
    CoordinationError, CoordinationErrorKind, Coordinator, FencingToken, InProcessCoordinator,
    Lease, OpenOrGet, Resource,
};
pub use engine::{BindingStatus, Engine, EngineBuilder, TickReport};
pub use error::{
    ApprovalError, BoxError, Error, ErrorKind, JournalError, NotifyError, ProbeError,
    RemediationError,
};
pub use escalation::{Notification, Notifier, OnCall};
pub use incident::{Incident, IncidentRecord, Phase, Resolution};
pub use journal::{Event, Journal, MemoryJournal};
pub use matcher::{MatchOp, Matcher, MatcherError, Matchers};
pub use observation::{
    labels, Evidence, FactType, Facts, Labels, MetricSummary, Name, Observation, Sample,
    SampleSummary, EVIDENCE_MAX_METRICS, EVIDENCE_MAX_SAMPLES, EVIDENCE_TOP_K,
};
pub use playbook::{ImpactMap, Playbook, Runbook};
pub use probe::{FnProbe, Probe, ProbeContext, Schedule};
pub use remediation::{ActionContext, Outcome, Plan, Remediation, Risk, Verification};
pub use secret::Secret;
pub use signal::Signal;
pub use symptom::{Symptom, Verdict};
pub use target::Target;

/// Everything a runbook author needs, in one import.
pub mod prelude {
    pub use crate::engine::{Engine, EngineBuilder};
    pub use crate::error::{ErrorKind, ProbeError, RemediationError};
    pub use crate::escalation::{Notifier, OnCall};
    pub use crate::matcher::{Matcher, Matchers};
    pub use crate::observation::{labels, FactType, Observation};
    pub use crate::playbook::{ImpactMap, Playbook, Runbook};
    pub use crate::policy::{AutoApprove, DenyAll, SafetyPolicy};
    pub use crate::probe::{FnProbe, Probe, ProbeContext, Schedule};
    pub use crate::remediation::{ActionContext, Outcome, Plan, Remediation, Risk, Verification};
    pub use crate::secret::Secret;
    pub use crate::signal::Signal;
    pub use crate::symptom::{all_of, any_of, fact_rule, metric, Symptom, Verdict};
    pub use crate::target::Target;
    pub use crate::time::{hours, millis, mins, secs, Clock, Timestamp};
    pub use async_trait::async_trait;
}
