//! The [`Remediation`] trait: an action on targets, planned before it is applied.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::RemediationError;
use crate::observation::Evidence;
use crate::target::Target;
use crate::time::{Clock, Timestamp};

/// How much harm an action can do. Disruptive and destructive actions need approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Cannot hurt (a read, a savepoint).
    Safe,
    /// Interrupts service briefly (a restart, a rescale).
    Disruptive,
    /// Loses data or cannot be undone (add partitions, reset a branch).
    Destructive,
}

impl Risk {
    /// Whether the engine asks the [`crate::policy::Approver`] before applying.
    pub fn needs_approval(self) -> bool {
        self >= Risk::Disruptive
    }
}

/// What a remediation will do, described before it does it (the dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The remediation id.
    pub action: String,
    /// The targets it will act on. An empty set is an error: never "all".
    pub targets: Vec<Target>,
    /// What exactly it will do (`PUT /jobs/<id>/resource-requirements parallelism 2 → 4`).
    pub description: String,
    /// What should follow (`lag drains within 10m`).
    pub expected_effect: String,
    /// Whether it can be undone.
    pub reversible: bool,
    /// Parameters `apply` will use (journaled, so a resumed engine applies the same plan).
    #[serde(default)]
    pub params: serde_json::Value,
}

impl Plan {
    /// A plan of `action` on `targets`.
    pub fn new(
        action: impl Into<String>,
        targets: Vec<Target>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            action: action.into(),
            targets,
            description: description.into(),
            expected_effect: String::new(),
            reversible: true,
            params: serde_json::Value::Null,
        }
    }

    /// Say what should follow.
    pub fn expect(mut self, effect: impl Into<String>) -> Self {
        self.expected_effect = effect.into();
        self
    }

    /// Mark irreversible.
    pub fn irreversible(mut self) -> Self {
        self.reversible = false;
        self
    }

    /// Attach parameters.
    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// One line for a human.
    pub summary: String,
    /// Details worth keeping (checkpoint id, savepoint path, new Nessie hash).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Outcome {
    /// An outcome with a summary.
    pub fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            details: serde_json::Value::Null,
        }
    }

    /// Attach details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Whether the action worked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verified", rename_all = "snake_case")]
pub enum Verification {
    /// It worked.
    Succeeded {
        /// How we know.
        evidence: String,
    },
    /// It did not.
    Failed {
        /// How we know.
        evidence: String,
    },
    /// Cannot tell yet / cannot tell.
    Inconclusive {
        /// Why.
        why: String,
    },
}

/// What the engine hands a remediation.
#[derive(Debug, Clone)]
pub struct ActionContext {
    /// The incident id.
    pub incident: String,
    /// The playbook id.
    pub playbook: String,
    /// The step index within the playbook's mitigation.
    pub step: usize,
    /// Evidence gathered so far (detect finding and diagnosis).
    pub evidence: Vec<Evidence>,
    /// Whether the engine is in dry-run mode (plan only; `apply` is never called then).
    pub dry_run: bool,
    /// The engine's clock.
    pub clock: Clock,
    /// How long `apply` may take before the engine gives up waiting (the action may still complete
    /// server-side: the journal then says "outcome unknown", never "failed").
    pub timeout: Duration,
}

impl ActionContext {
    /// The current wall-clock time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// An action on one or more targets. The contract:
///
/// - [`Remediation::plan`] is read-only and says exactly what [`Remediation::apply`] will do, on which
///   targets, and whether it is reversible. In dry-run mode the engine journals the plan and stops there.
/// - The engine, not the remediation, enforces the safety envelope (approval for [`Risk::Disruptive`] and
///   [`Risk::Destructive`], cool-downs, budgets, blast radius, one action per target at a time,
///   at-most-once per incident step) and journals before and after `apply`.
/// - **Who retries.** `apply` is called at most once per incident step unless [`Remediation::idempotent`]
///   is true; then the engine may retry it on transient errors. A non-idempotent action is never retried.
/// - [`Remediation::verify`] says whether it worked (e.g. the job is RUNNING at the new parallelism).
#[async_trait]
pub trait Remediation: Send + Sync + Debug {
    /// A stable id (`flink.rescale`).
    fn id(&self) -> &str;

    /// The risk of applying it.
    fn risk(&self) -> Risk;

    /// Whether applying it twice has the same effect as once.
    fn idempotent(&self) -> bool {
        false
    }

    /// Describe what would be done (read-only).
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError>;

    /// Do it.
    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError>;

    /// Check that it worked. The default trusts a successful `apply`.
    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
        ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let _ = (plan, ctx);
        Ok(Verification::Succeeded {
            evidence: format!("apply succeeded: {}", outcome.summary),
        })
    }
}

#[async_trait]
impl<R: Remediation + ?Sized> Remediation for Arc<R> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn risk(&self) -> Risk {
        (**self).risk()
    }
    fn idempotent(&self) -> bool {
        (**self).idempotent()
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        (**self).plan(ctx).await
    }
    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        (**self).apply(plan, ctx).await
    }
    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
        ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        (**self).verify(plan, outcome, ctx).await
    }
}
