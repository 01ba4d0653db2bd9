//! The [`Remediation`] trait: an action on targets, planned before it is applied.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::error::RemediationError;
use crate::journal::{Event, Journal};
use crate::observation::{Evidence, FactType, Labels};
use crate::symptom::Finding;
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
    /// The risk of *this* plan, when it differs from the remediation's default (an in-place rescale is
    /// disruptive; its stop-and-resubmit fallback is more). The engine asks for approval by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// How to undo it, for a human (`assign main back to 1a2b…`), when reversible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// Set when there is nothing to do (the job already runs at the target parallelism): the step is
    /// skipped with this reason — neither an error nor a page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nothing_to_do: Option<String>,
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
            risk: None,
            undo: None,
            nothing_to_do: None,
        }
    }

    /// A plan that does nothing, saying why (`already at parallelism 4`). It needs no target.
    pub fn nothing_to_do(action: impl Into<String>, why: impl Into<String>) -> Self {
        let why = why.into();
        let mut p = Self::new(action, Vec::new(), format!("nothing to do: {why}"));
        p.nothing_to_do = Some(why);
        p
    }

    /// The risk of this plan (overrides [`Remediation::risk`]).
    pub fn risk(mut self, risk: Risk) -> Self {
        self.risk = Some(risk);
        self
    }

    /// How to undo it.
    pub fn undo(mut self, how: impl Into<String>) -> Self {
        self.undo = Some(how.into());
        self
    }

    /// The risk the engine applies this plan under: the plan's own, or else `default`.
    pub fn effective_risk(&self, default: Risk) -> Risk {
        self.risk.unwrap_or(default)
    }

    /// A stable hash of the plan (FNV-1a over its JSON form), journaled with an approval so that what
    /// was approved can be told from what is applied.
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Whether two plans do the same thing (descriptions of expected effect aside).
    pub fn same_action(&self, other: &Plan) -> bool {
        self.action == other.action
            && self.targets == other.targets
            && self.description == other.description
            && self.params == other.params
            && self.risk == other.risk
            && self.nothing_to_do == other.nothing_to_do
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

/// What earlier steps of the incident left for later ones: the outcome of each finished step and the
/// artifacts it journaled with [`ActionContext::progress`] (a savepoint path, a new job id). Rebuilt from
/// the journal when an engine resumes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepOutput {
    /// The outcome, when the step finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Artifacts journaled during `apply`, by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, serde_json::Value>,
}

impl StepOutput {
    /// The value of `key`: an artifact, or else a field of the outcome's details.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.artifacts
            .get(key)
            .or_else(|| self.outcome.as_ref().and_then(|o| o.details.get(key)))
    }
}

/// Where [`ActionContext::progress`] writes: the journal, under the incident and step.
#[derive(Clone)]
pub(crate) struct ProgressSink {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) incident: String,
    pub(crate) step: usize,
    pub(crate) clock: Clock,
    pub(crate) written: Arc<std::sync::Mutex<BTreeMap<String, serde_json::Value>>>,
}

impl Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressSink")
            .field("incident", &self.incident)
            .field("step", &self.step)
            .finish()
    }
}

/// What the engine hands a remediation: the incident and what broke, the diagnosis facts, the outputs
/// of earlier steps, and a way to journal artifacts in the middle of `apply`.
#[derive(Debug, Clone)]
pub struct ActionContext {
    /// The incident id.
    pub incident: String,
    /// The playbook id.
    pub playbook: String,
    /// The step's position within the playbook's mitigation.
    pub step: usize,
    /// The step id (stable: given by the playbook or derived from the remediation id).
    pub step_id: String,
    /// The target whose symptom fired.
    pub target: Option<Target>,
    /// The incident key's labels: what this incident is about (`connector=orders-sink`); empty when the
    /// playbook keys incidents per target.
    pub key: Labels,
    /// The detect finding, with its offending series.
    pub finding: Option<Finding>,
    /// Evidence gathered so far (detect finding and diagnosis).
    pub evidence: Vec<Evidence>,
    /// Outputs of earlier steps, by step id.
    pub outputs: BTreeMap<String, StepOutput>,
    /// Whether the engine is in dry-run mode (plan only; `apply` is never called then).
    pub dry_run: bool,
    /// The engine's clock.
    pub clock: Clock,
    /// How long `apply` may take before the engine gives up waiting (the action may still complete
    /// server-side: the journal then says "outcome unknown", never "failed").
    pub timeout: Duration,
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) fencing_token: Option<crate::coordination::FencingToken>,
}

impl ActionContext {
    /// A context for calling a remediation outside an engine (tests, tools): no incident, no journal.
    pub fn detached(clock: Clock, timeout: Duration) -> Self {
        Self {
            incident: String::new(),
            playbook: String::new(),
            step: 0,
            step_id: String::new(),
            target: None,
            key: Labels::new(),
            finding: None,
            evidence: Vec::new(),
            outputs: BTreeMap::new(),
            dry_run: false,
            clock,
            timeout,
            progress: None,
            fencing_token: None,
        }
    }

    /// The fencing token of this step's claim, set by the engine for `apply` (and `verify`) once the
    /// step is begun under the engine's [`crate::coordination::Coordinator`]; `None` outside an engine
    /// and while planning.
    ///
    /// Tokens only grow: a remediation can hand it to a system that accepts one (a lock service, a
    /// conditional write such as "update only if the stored token is lower") so that a stalled engine
    /// whose claim was taken over cannot overwrite the work of the engine that took it over.
    pub fn fencing_token(&self) -> Option<crate::coordination::FencingToken> {
        self.fencing_token
    }

    /// Set the fencing token (builder, for tests and tools).
    pub fn with_fencing_token(mut self, token: crate::coordination::FencingToken) -> Self {
        self.fencing_token = Some(token);
        self
    }

    /// Set the finding (builder, for tests and tools).
    pub fn with_finding(mut self, finding: Finding) -> Self {
        self.finding = Some(finding);
        self
    }

    /// Set the incident key's labels (builder, for tests and tools).
    pub fn with_key(mut self, key: Labels) -> Self {
        self.key = key;
        self
    }

    /// Add evidence (builder, for tests and tools).
    pub fn with_evidence(mut self, evidence: Evidence) -> Self {
        self.evidence.push(evidence);
        self
    }

    /// Set an earlier step's output (builder, for tests and tools).
    pub fn with_output(mut self, step_id: impl Into<String>, output: StepOutput) -> Self {
        self.outputs.insert(step_id.into(), output);
        self
    }

    /// The current wall-clock time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// What broke: the value of label `name` in the incident key, or else in the finding's offending
    /// series (the connector to restart, the job to rescale, the node to replace).
    pub fn label(&self, name: &str) -> Option<&str> {
        self.key
            .get(name)
            .map(String::as_str)
            .or_else(|| self.finding.as_ref().and_then(|f| f.label(name)))
    }

    /// The offending series of the finding (empty without one).
    pub fn offending(&self) -> &[Labels] {
        self.finding
            .as_ref()
            .map(|f| f.offending.as_slice())
            .unwrap_or(&[])
    }

    /// The newest fact of type `T` among the evidence (diagnosis first, then detect), decoded.
    pub fn fact<T: FactType>(&self) -> Option<T> {
        self.evidence
            .iter()
            .rev()
            .filter_map(|e| e.observation.as_ref())
            .find_map(|o| o.facts.get::<T>().and_then(Result::ok))
    }

    /// Every fact of type `T` among the evidence, oldest first.
    pub fn facts<T: FactType>(&self) -> Vec<T> {
        self.evidence
            .iter()
            .filter_map(|e| e.observation.as_ref())
            .filter_map(|o| o.facts.get::<T>().and_then(Result::ok))
            .collect()
    }

    /// The output of the earlier step `step_id`.
    pub fn output(&self, step_id: &str) -> Option<&StepOutput> {
        self.outputs.get(step_id)
    }

    /// Value `key` left by an earlier step (an artifact or a field of its outcome's details), decoded;
    /// the newest step that has it wins when `step_id` is `None`.
    pub fn output_value<T: DeserializeOwned>(&self, step_id: Option<&str>, key: &str) -> Option<T> {
        let v = match step_id {
            Some(s) => self.outputs.get(s)?.get(key)?,
            None => self.outputs.values().rev().find_map(|o| o.get(key))?,
        };
        serde_json::from_value(v.clone()).ok()
    }

    /// Journal an artifact in the middle of `apply` (the savepoint path before the resubmit), so that a
    /// crash between the two resumes with it: later steps — and this step, if it is run again — find it
    /// in [`ActionContext::outputs`]. Outside an engine it is kept in memory only.
    pub async fn progress(
        &self,
        key: impl Into<String>,
        value: serde_json::Value,
    ) -> Result<(), crate::error::JournalError> {
        let key = key.into();
        let Some(sink) = &self.progress else {
            return Ok(());
        };
        sink.journal
            .append(
                &sink.incident,
                sink.clock.now(),
                &Event::Progress {
                    step: sink.step,
                    step_id: self.step_id.clone(),
                    key: key.clone(),
                    value: value.clone(),
                },
            )
            .await?;
        if let Ok(mut w) = sink.written.lock() {
            w.insert(key, value);
        }
        Ok(())
    }

    /// Artifacts this step journaled so far (including those of an interrupted earlier attempt).
    pub fn own_artifacts(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = self
            .outputs
            .get(&self.step_id)
            .map(|o| o.artifacts.clone())
            .unwrap_or_default();
        if let Some(sink) = &self.progress {
            if let Ok(w) = sink.written.lock() {
                out.extend(w.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
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
/// - [`Remediation::verify`] says whether it worked (e.g. the job is RUNNING at the new parallelism),
///   retried until [`Remediation::verify_within`] while inconclusive.
/// - **Outcome unknown.** An `apply` that times out, or returns an error of kind
///   [`crate::ErrorKind::OutcomeUnknown`] (the request was sent, the answer lost), is journaled as
///   *outcome unknown*: never retried unless idempotent, escalated to a human.
/// - **Context in, results out.** `apply` reads what broke from [`ActionContext::label`], the diagnosis
///   from [`ActionContext::fact`], earlier steps' results from [`ActionContext::output_value`], and
///   journals its own intermediate results with [`ActionContext::progress`].
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

    /// Whether a human must approve every plan of it, whatever the approver and the risk (adding Kafka
    /// partitions: irreversible). An automatic approver's grant is refused.
    fn requires_human(&self) -> bool {
        false
    }

    /// How long verification may keep trying: [`Remediation::verify`] is called again, with backoff,
    /// while it answers [`Verification::Inconclusive`], until this much time has passed since apply
    /// (a restore takes minutes). Inconclusive at the deadline is a failure, not a success.
    /// Zero (the default): one try.
    fn verify_within(&self) -> Duration {
        Duration::ZERO
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
    fn requires_human(&self) -> bool {
        (**self).requires_human()
    }
    fn verify_within(&self) -> Duration {
        (**self).verify_within()
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
