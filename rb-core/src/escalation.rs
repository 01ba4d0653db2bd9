//! Escalation: the on-call table (seed §5: role, channel, response SLA) and the [`Notifier`] trait.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::NotifyError;
use crate::time::{hours, mins, Timestamp};

/// One row of the on-call table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Role (`Kafka SME`).
    pub role: String,
    /// Channel (`slack:#kafka`, `pagerduty`, `email:infra@company.com`).
    pub channel: String,
    /// How long the role has to acknowledge before the engine re-escalates.
    pub sla: Duration,
    /// Who is paged next when the SLA passes without acknowledgement (`None`: page the same role again).
    pub next: Option<String>,
}

/// The on-call routing table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCall {
    contacts: Vec<Contact>,
}

impl OnCall {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a role.
    pub fn contact(
        mut self,
        role: impl Into<String>,
        channel: impl Into<String>,
        sla: Duration,
    ) -> Self {
        self.contacts.push(Contact {
            role: role.into(),
            channel: channel.into(),
            sla,
            next: None,
        });
        self
    }

    /// Set who is paged after `role` when its SLA passes.
    pub fn then(mut self, role: &str, next: impl Into<String>) -> Self {
        if let Some(c) = self.contacts.iter_mut().find(|c| c.role == role) {
            c.next = Some(next.into());
        }
        self
    }

    /// The seed runbook's table (§5): SMEs and Infra re-escalate to the Data Platform On-call.
    pub fn seed() -> Self {
        Self::new()
            .contact("Data Platform On-call", "slack:#data-ops", mins(15))
            .contact("Kafka SME", "slack:#kafka", mins(30))
            .contact("Cassandra SME", "pagerduty", mins(30))
            .contact("Infra", "email:infra@company.com", hours(1))
            .then("Kafka SME", "Data Platform On-call")
            .then("Cassandra SME", "Data Platform On-call")
            .then("Infra", "Data Platform On-call")
    }

    /// The row of `role`.
    pub fn get(&self, role: &str) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.role == role)
    }

    /// Every row.
    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }
}

/// Why the engine escalates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationReason {
    /// A remediation failed.
    ActionFailed,
    /// A remediation was not allowed (policy, approval, unknown data).
    ActionRefused,
    /// Recovery did not come within the playbook's deadline.
    RecoveryTimedOut,
    /// A step was interrupted (engine restart) and needs a human.
    StepInterrupted,
    /// The previous page was not acknowledged within its SLA.
    SlaMissed,
    /// The playbook has no automatic mitigation: a human must act.
    NeedsHuman,
}

/// What a notification asks of the paging system (the PagerDuty Events v2 shape): open a page, say a
/// human has it, or say the incident is over. All three carry the same [`Notification::dedup_key`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyAction {
    /// Page (or page again).
    #[default]
    Trigger,
    /// A human acknowledged the incident.
    Acknowledge,
    /// The incident closed.
    Resolve,
}

/// A page to an on-call role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Trigger, acknowledge or resolve.
    #[serde(default)]
    pub action: NotifyAction,
    /// Groups every notification of one incident in the paging system (the incident id).
    #[serde(default)]
    pub dedup_key: String,
    /// The incident id.
    pub incident: String,
    /// The playbook id.
    pub playbook: String,
    /// The role paged.
    pub role: String,
    /// Its channel.
    pub channel: String,
    /// Why.
    pub reason: EscalationReason,
    /// A human message.
    pub message: String,
    /// 1 for the first page of this incident, then 2, 3…
    pub attempt: u32,
    /// When the role must have acknowledged.
    pub ack_due: Timestamp,
}

/// Delivers pages, acknowledgements and resolutions ([`NotifyAction`]) keyed by
/// [`Notification::dedup_key`]. Implementations: chat webhooks, PagerDuty, e-mail (see rb-actions);
/// rb-testkit has a recording one. The engine bounds every call by
/// [`crate::policy::SafetyPolicy::notify_timeout`] (a hung webhook never wedges an incident), does not
/// retry a failed delivery within a tick, journals the failure, and the SLA timer still runs, so the next
/// page goes out when it passes.
#[async_trait]
pub trait Notifier: Send + Sync + Debug {
    /// Deliver one page.
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}

#[async_trait]
impl<N: Notifier + ?Sized> Notifier for Arc<N> {
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        (**self).notify(notification).await
    }
}

/// Writes pages to `tracing` at WARN: the default until a real notifier is configured.
#[derive(Debug, Clone, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        tracing::warn!(
            incident = %n.incident,
            playbook = %n.playbook,
            role = %n.role,
            channel = %n.channel,
            attempt = n.attempt,
            "escalation: {}",
            n.message
        );
        Ok(())
    }
}
