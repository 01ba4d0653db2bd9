//! The journal: every event of every incident, appended before and after each step.
//!
//! Stores: [`MemoryJournal`] (tests, ephemeral tools) and, with the `sqlite` feature, [`SqliteJournal`]
//! (the embedded default: a file that survives restarts). An engine restarted on the same journal resumes
//! its open incidents without repeating any step recorded as started or done.

mod memory;
pub mod reader;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::JournalError;
use crate::escalation::Notification;
use crate::incident::{IncidentRecord, Phase, Resolution};
use crate::observation::{Evidence, Labels};
use crate::policy::Decision;
use crate::remediation::{Outcome, Plan, Verification};
use crate::symptom::Verdict;
use crate::time::Timestamp;

pub use memory::MemoryJournal;
#[cfg(feature = "sqlite")]
pub use sqlite::{sqlite_schema_version, SqliteJournal};

/// One journaled event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// An incident opened, with its ITSM record.
    Opened {
        /// The record.
        record: Box<IncidentRecord>,
    },
    /// The detect symptom fired again while the incident was open (deduplicated).
    Refired {
        /// The verdict.
        verdict: Verdict,
    },
    /// The incident entered a phase.
    Phase {
        /// Which.
        phase: Phase,
    },
    /// Evidence was attached.
    Evidence {
        /// The evidence.
        evidence: Evidence,
    },
    /// The ids of the playbook's mitigation steps, in order, when the incident entered Mitigate (and
    /// again when an engine resumed it under a playbook whose steps changed): the step indexes of
    /// later events refer to this list. Step events carry their id too; this list maps the indexes
    /// of journals written before they did. A resumed engine matches steps by id.
    StepIds {
        /// The step ids.
        ids: Vec<String>,
    },
    /// A mitigation step was planned.
    Planned {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The plan.
        plan: Plan,
        /// Whether in dry-run (nothing will be applied).
        dry_run: bool,
    },
    /// The approver was asked and did not answer at once: the step waits (the engine keeps
    /// detecting and working other incidents meanwhile).
    AwaitingApproval {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The remediation id.
        action: String,
        /// The action's risk.
        risk: crate::remediation::Risk,
        /// How long the engine waits for the decision, in seconds.
        timeout_secs: u64,
    },
    /// An approver decided.
    Approval {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The decision (who, or why not).
        decision: Decision,
        /// The hash of the plan that was approved ([`Plan::hash`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan_hash: Option<String>,
    },
    /// A remediation journaled an artifact in the middle of `apply` (the savepoint path before the
    /// resubmit), for later steps and for a resumed engine.
    Progress {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The artifact's name.
        key: String,
        /// Its value.
        value: serde_json::Value,
    },
    /// A step was refused by the safety envelope.
    Refused {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The remediation id.
        action: String,
        /// Why.
        reason: String,
    },
    /// A step was skipped (already done, dry-run, or not applicable).
    Skipped {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The remediation id.
        action: String,
        /// Why.
        reason: String,
    },
    /// Journaled before `apply`.
    Started {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The remediation id.
        action: String,
        /// Attempt (1 unless an idempotent action was retried).
        attempt: u32,
        /// The engine that applies it (its holder name for the coordinator); absent in journals
        /// written before engines coordinated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<String>,
        /// The fencing token of the step's claim: while it is live, the step is in flight in the
        /// holder's engine (another engine waits rather than call it interrupted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<crate::coordination::FencingToken>,
    },
    /// Journaled after `apply`.
    Finished {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The remediation id.
        action: String,
        /// Whether apply returned Ok.
        ok: bool,
        /// The outcome, when ok.
        outcome: Option<Outcome>,
        /// The error, when not.
        error: Option<String>,
        /// The error's kind and structured details, when not ok.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_detail: Option<crate::error::ErrorRecord>,
        /// Whether the action may or may not have happened (timed out or lost after sending): never
        /// retried unless idempotent, handed to a human.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        outcome_unknown: bool,
    },
    /// The verification of a step.
    Verified {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The verification.
        verification: Verification,
    },
    /// A step was found started but never finished (engine restart): a human must look.
    Interrupted {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The remediation id.
        action: String,
    },
    /// A recovery check result.
    Recovery {
        /// The check's name.
        check: String,
        /// Its verdict.
        verdict: Verdict,
    },
    /// A page went out.
    Escalated {
        /// The page.
        notification: Notification,
        /// Delivery error, if any.
        error: Option<String>,
    },
    /// A human acknowledged.
    Acknowledged {
        /// Who.
        by: String,
    },
    /// A Nessie commit was linked to the incident record (found by a diagnosis probe).
    CommitLinked {
        /// The reference.
        reference: String,
        /// The hash.
        hash: String,
    },
    /// A human task was handed out (paged) and waits for its completion.
    TaskAssigned {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// The task.
        task: String,
    },
    /// A human said a task is done.
    TaskDone {
        /// Step index in the playbook when journaled (for display: steps are matched by id).
        step: usize,
        /// The step's id (stable across playbook versions); empty in journals written before
        /// step events carried it (then the `step_ids` entry maps the index).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_id: String,
        /// Who.
        by: String,
    },
    /// A maintenance window: automation muted on a target (or a label set of it) until a time.
    /// Journaled under [`MAINTENANCE`], not under an incident.
    Maintenance {
        /// The window.
        window: crate::policy::MaintenanceWindow,
    },
    /// A for-duration streak of a detect key began (with the observation it began on) or ended
    /// (`began: None`). Journaled under [`DETECTION`] when it changes, so that an engine restarted in
    /// the middle of a streak still fires on time.
    Streak {
        /// The detect binding (`playbook:target`).
        binding: String,
        /// The incident key's labels (empty: per target).
        #[serde(default, skip_serializing_if = "Labels::is_empty")]
        key: Labels,
        /// The observation the streak began on; `None`: the streak ended.
        began: Option<Box<crate::symptom::Record>>,
    },
    /// A detect probe stopped seeing its target (`since` set) or sees it again (`since: None`).
    /// Journaled under [`DETECTION`] when it changes, so that a restarted engine still pages a probe
    /// that has been blind for the whole blind-after time.
    Blind {
        /// The detect binding (`playbook:target`).
        binding: String,
        /// Since when the probe has not seen its target; `None`: it sees again.
        since: Option<Timestamp>,
        /// Why it cannot see (empty when it sees again).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        why: String,
    },
    /// A free note.
    Note {
        /// The text.
        text: String,
    },
    /// The incident closed.
    Closed {
        /// How it ended.
        resolution: Resolution,
    },
}

impl Event {
    /// The step an event is about: its index as journaled and its id (empty in journals written
    /// before step events carried ids). `None` for events about no step.
    pub fn step_ref(&self) -> Option<(usize, &str)> {
        match self {
            Event::Planned { step, step_id, .. }
            | Event::AwaitingApproval { step, step_id, .. }
            | Event::Approval { step, step_id, .. }
            | Event::Progress { step, step_id, .. }
            | Event::Refused { step, step_id, .. }
            | Event::Skipped { step, step_id, .. }
            | Event::Started { step, step_id, .. }
            | Event::Finished { step, step_id, .. }
            | Event::Verified { step, step_id, .. }
            | Event::Interrupted { step, step_id, .. }
            | Event::TaskAssigned { step, step_id, .. }
            | Event::TaskDone { step, step_id, .. } => Some((*step, step_id.as_str())),
            _ => None,
        }
    }
}

/// The journal key maintenance windows are recorded under (not an incident: it never opens).
pub const MAINTENANCE: &str = "rb:maintenance";

/// The journal key detection state is recorded under ([`Event::Streak`], [`Event::Blind`]): not an
/// incident, it never opens.
pub const DETECTION: &str = "rb:detection";

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Sequence number assigned by the store (monotonic per store).
    pub seq: u64,
    /// The incident.
    pub incident: String,
    /// When.
    pub at: Timestamp,
    /// What.
    pub event: Event,
}

/// An append-only store of incident events.
///
/// Contract: `append` is durable when it returns Ok (the engine journals *before* applying an action and
/// refuses to act when the journal fails); entries come back in append order.
#[async_trait]
pub trait Journal: Send + Sync + Debug {
    /// Append one event; returns its sequence number.
    async fn append(
        &self,
        incident: &str,
        at: Timestamp,
        event: &Event,
    ) -> Result<u64, JournalError>;

    /// Every entry of one incident, in order.
    async fn entries(&self, incident: &str) -> Result<Vec<Entry>, JournalError>;

    /// The ids of incidents opened and not closed, in opening order.
    async fn open_incidents(&self) -> Result<Vec<String>, JournalError>;

    /// The ids of every incident, in opening order.
    async fn incidents(&self) -> Result<Vec<String>, JournalError>;
}

#[async_trait]
impl<J: Journal + ?Sized> Journal for Arc<J> {
    async fn append(
        &self,
        incident: &str,
        at: Timestamp,
        event: &Event,
    ) -> Result<u64, JournalError> {
        (**self).append(incident, at, event).await
    }
    async fn entries(&self, incident: &str) -> Result<Vec<Entry>, JournalError> {
        (**self).entries(incident).await
    }
    async fn open_incidents(&self) -> Result<Vec<String>, JournalError> {
        (**self).open_incidents().await
    }
    async fn incidents(&self) -> Result<Vec<String>, JournalError> {
        (**self).incidents().await
    }
}
