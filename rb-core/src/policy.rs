//! The safety envelope: policies the engine enforces around every remediation, whatever the playbook.
//!
//! In order, for each mitigation step: at-most-once per incident step (the journal) → kill switch → no
//! action on unknown data → plan (journaled) → blast radius (an empty target set is an error) → dry-run
//! stops here → cool-down, restart backoff and rate budgets (checked before a human is bothered) →
//! approval for disruptive/destructive risk → keyed concurrency (one remediation per target at a time)
//! → cool-down, backoff and budgets again, under the target locks → journal "started" → apply (retried
//! only if idempotent, only on transient errors) → journal "finished" → verify.
//!
//! An approver that answers at once (auto, deny, a policy) decides within the engine's tick. A human's
//! answer is awaited in a task of its own: the step is journaled as awaiting approval and the engine
//! goes on detecting, diagnosing and working other incidents; a later tick takes the decision, looks at
//! the kill switch and the data again, and applies. Closing the incident withdraws the question.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ApprovalError;
use crate::remediation::{Plan, Risk};
use crate::target::Target;
use crate::time::{human, mins, secs};

/// A rate budget: at most `max` actions per sliding `per` window. In a runbook file:
/// `{"max": 3, "per": "1h"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Actions allowed in a window.
    pub max: u32,
    /// The window.
    #[serde(with = "crate::time::duration_text")]
    pub per: Duration,
}

impl Budget {
    /// `max` actions per `per`.
    pub fn new(max: u32, per: Duration) -> Self {
        Self { max, per }
    }
}

/// Never act on more than `max_targets` targets, nor on more than `max_fraction` of the fleet of that
/// kind (the percentage rule is waived for a single target, or single-instance systems could never be
/// acted on).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlastRadius {
    /// Absolute cap.
    pub max_targets: usize,
    /// Cap as a fraction of the fleet (0.0–1.0).
    pub max_fraction: f64,
}

impl Default for BlastRadius {
    fn default() -> Self {
        Self {
            max_targets: 3,
            max_fraction: 0.34,
        }
    }
}

impl BlastRadius {
    /// Check a plan's targets against a fleet. Errors say why, for the journal.
    pub fn check(&self, plan: &Plan, fleet: &[Target]) -> Result<(), String> {
        if plan.targets.is_empty() {
            return Err(format!(
                "plan of {} names no target: an empty target set is an error, never \"all\"",
                plan.action
            ));
        }
        let n = plan.targets.len();
        if n > self.max_targets {
            return Err(format!(
                "plan of {} acts on {n} targets; the blast radius allows at most {}",
                plan.action, self.max_targets
            ));
        }
        if n > 1 {
            let kinds: std::collections::BTreeSet<&str> =
                plan.targets.iter().map(|t| t.kind.as_str()).collect();
            for kind in kinds {
                let acting = plan.targets.iter().filter(|t| t.kind == kind).count();
                let mut fleet_names: std::collections::BTreeSet<&str> = fleet
                    .iter()
                    .filter(|t| t.kind == kind)
                    .map(|t| t.name.as_str())
                    .collect();
                fleet_names.extend(
                    plan.targets
                        .iter()
                        .filter(|t| t.kind == kind)
                        .map(|t| t.name.as_str()),
                );
                let fraction = acting as f64 / fleet_names.len() as f64;
                if acting > 1 && fraction > self.max_fraction {
                    return Err(format!(
                        "plan of {} acts on {acting} of {} {kind} targets ({:.0}%); the blast radius allows at most {:.0}%",
                        plan.action,
                        fleet_names.len(),
                        fraction * 100.0,
                        self.max_fraction * 100.0
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The engine's safety settings.
///
/// In a runbook file, durations are text and every field may be left out (it keeps its default):
///
/// ```
/// use rb_core::policy::SafetyPolicy;
/// use rb_core::time::mins;
/// let p: SafetyPolicy = serde_json::from_str(
///     r#"{"cooldown": "10m", "target_budget": {"max": 2, "per": "1h30m"}}"#,
/// ).unwrap();
/// assert_eq!(p.cooldown, mins(10));
/// assert_eq!(p.target_budget.per, mins(90));
/// assert_eq!(p.apply_timeout, SafetyPolicy::default().apply_timeout);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyPolicy {
    /// Plan and journal only; never apply.
    pub dry_run: bool,
    /// After an action on a target, no further action on it for this long…
    #[serde(with = "crate::time::duration_text")]
    pub cooldown: Duration,
    /// …doubled for each further action on the same target and action within `backoff_reset`…
    pub backoff_factor: u32,
    /// …up to this much.
    #[serde(with = "crate::time::duration_text")]
    pub max_cooldown: Duration,
    /// A target quiet this long starts again from `cooldown`.
    #[serde(with = "crate::time::duration_text")]
    pub backoff_reset: Duration,
    /// Budget over all targets.
    pub global_budget: Budget,
    /// Budget per target.
    pub target_budget: Budget,
    /// Blast radius.
    pub blast_radius: BlastRadius,
    /// How long `apply` may take.
    #[serde(with = "crate::time::duration_text")]
    pub apply_timeout: Duration,
    /// How many times an idempotent action is retried on transient errors.
    pub idempotent_retries: u32,
    /// How long a mitigation step waits for another remediation on the same target to finish.
    #[serde(with = "crate::time::duration_text")]
    pub target_lock_wait: Duration,
    /// The first delay before retrying an idempotent action (doubled each retry, with jitter; never zero).
    pub retry_backoff: Duration,
    /// Whether an automatic approver ([`Approver::is_automatic`]) may grant a destructive step. Off by
    /// default: destructive steps wait for a human unless the runbook says otherwise.
    pub auto_approve_destructive: bool,
    /// How long one notification (page, acknowledgement, resolution) may take before it is given up
    /// and journaled as failed.
    pub notify_timeout: Duration,
}

impl Default for SafetyPolicy {
    fn default() -> Self {
        Self {
            dry_run: false,
            cooldown: mins(5),
            backoff_factor: 2,
            max_cooldown: mins(60),
            backoff_reset: mins(120),
            global_budget: Budget::new(20, mins(60)),
            target_budget: Budget::new(3, mins(60)),
            blast_radius: BlastRadius::default(),
            apply_timeout: mins(5),
            idempotent_retries: 2,
            target_lock_wait: secs(60),
            retry_backoff: secs(2),
            auto_approve_destructive: false,
            notify_timeout: secs(10),
        }
    }
}

impl SafetyPolicy {
    /// The default policy in dry-run mode.
    pub fn dry_run() -> Self {
        Self {
            dry_run: true,
            ..Self::default()
        }
    }
}

/// A kill switch: while engaged, the engine applies nothing (plans are still journaled, refused).
/// Cloning shares the switch.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    /// A released switch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Stop all remediation.
    pub fn engage(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Allow remediation again.
    pub fn release(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    /// Whether engaged.
    pub fn is_engaged(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What an approver is asked.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRequest {
    /// The incident id.
    pub incident: String,
    /// The playbook id.
    pub playbook: String,
    /// The mitigation step.
    pub step: usize,
    /// The action's risk.
    pub risk: Risk,
    /// The plan.
    pub plan: Plan,
}

/// An approver's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead.
    Granted {
        /// Who approved.
        by: String,
    },
    /// Do not.
    Denied {
        /// Who denied.
        by: String,
        /// Why.
        reason: String,
    },
    /// Nobody answered in time: treated as denied.
    TimedOut,
}

/// Decides whether a disruptive or destructive action may run.
#[async_trait]
pub trait Approver: Send + Sync + fmt::Debug {
    /// Decide. The engine bounds the wait by [`Approver::timeout`] and records [`Decision::TimedOut`].
    async fn approve(&self, request: &ApprovalRequest) -> Result<Decision, ApprovalError>;

    /// How long the engine waits for a decision.
    fn timeout(&self) -> Duration {
        mins(15)
    }

    /// Whether decisions are made by a program rather than a person. An automatic grant never covers a
    /// step that [requires a human](crate::Remediation::requires_human), nor a destructive one unless
    /// [`SafetyPolicy::auto_approve_destructive`] is set.
    fn is_automatic(&self) -> bool {
        false
    }
}

/// Grants everything (for safe environments and tests).
#[derive(Debug, Clone, Default)]
pub struct AutoApprove;

#[async_trait]
impl Approver for AutoApprove {
    async fn approve(&self, _request: &ApprovalRequest) -> Result<Decision, ApprovalError> {
        Ok(Decision::Granted { by: "auto".into() })
    }
    fn is_automatic(&self) -> bool {
        true
    }
}

/// Denies everything: only safe actions run.
#[derive(Debug, Clone, Default)]
pub struct DenyAll;

#[async_trait]
impl Approver for DenyAll {
    async fn approve(&self, _request: &ApprovalRequest) -> Result<Decision, ApprovalError> {
        Ok(Decision::Denied {
            by: "policy".into(),
            reason: "every disruptive action is denied".into(),
        })
    }
    fn is_automatic(&self) -> bool {
        true
    }
}

type ApproveFn =
    dyn Fn(ApprovalRequest) -> Pin<Box<dyn Future<Output = Decision> + Send>> + Send + Sync;

/// Asks a human through a callback (a chat button, a portal), waiting at most `timeout`.
///
/// ```
/// use rb_core::policy::{CallbackApprover, Decision};
/// use rb_core::time::mins;
/// let approver = CallbackApprover::new(mins(10), |req| async move {
///     // post `req.plan.description` to a chat and await the button…
///     Decision::Granted { by: "alice".into() }
/// });
/// # let _ = approver;
/// ```
pub struct CallbackApprover {
    timeout: Duration,
    f: Arc<ApproveFn>,
}

impl fmt::Debug for CallbackApprover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackApprover")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl CallbackApprover {
    /// Call `f` for each request; give up after `timeout`.
    pub fn new<F, Fut>(timeout: Duration, f: F) -> Self
    where
        F: Fn(ApprovalRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Decision> + Send + 'static,
    {
        Self {
            timeout,
            f: Arc::new(move |r| Box::pin(f(r))),
        }
    }
}

#[async_trait]
impl Approver for CallbackApprover {
    async fn approve(&self, request: &ApprovalRequest) -> Result<Decision, ApprovalError> {
        Ok((self.f)(request.clone()).await)
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The engine's memory of past actions: cool-downs, backoff and budgets. Time is tokio time.
#[derive(Debug, Default)]
pub(crate) struct PolicyState {
    /// Per target key: (action id, incident id, tokio instant) of each applied action, oldest first.
    applied: HashMap<String, VecDeque<(String, String, tokio::time::Instant)>>,
    global: VecDeque<tokio::time::Instant>,
    /// Keyed concurrency: one lock per target key.
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

impl PolicyState {
    pub(crate) fn lock_for(&mut self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.entry(key.to_string()).or_default().clone()
    }

    /// Cool-down with backoff for `action` on `key`: `Err(reason)` while it lasts. The steps of one
    /// incident follow each other (a savepoint, then the restore on the same job): only actions of
    /// other incidents put a target in cool-down.
    pub(crate) fn check_cooldown(
        &self,
        policy: &SafetyPolicy,
        key: &str,
        action: &str,
        incident: &str,
        now: tokio::time::Instant,
    ) -> Result<(), String> {
        let Some(hist) = self.applied.get(key) else {
            return Ok(());
        };
        let others = || {
            hist.iter()
                .filter(|(_, i, _)| i != incident)
                .map(|(a, _, t)| (a, t))
        };
        let Some((_, last)) = others().next_back() else {
            return Ok(());
        };
        // consecutive applications of this action, each within backoff_reset of the next
        let mut n = 0u32;
        let mut prev = now;
        for (a, t) in others().rev() {
            if prev.saturating_duration_since(*t) > policy.backoff_reset {
                break;
            }
            if a == action {
                n += 1;
            }
            prev = *t;
        }
        let factor = policy
            .backoff_factor
            .max(1)
            .saturating_pow(n.saturating_sub(1));
        let cooldown = policy
            .cooldown
            .saturating_mul(factor)
            .min(policy.max_cooldown);
        let since = now.saturating_duration_since(*last);
        if since < cooldown {
            return Err(format!(
                "{key} is cooling down: last action {} ago, cool-down {} (backoff after {n} recent {action})",
                human(since),
                human(cooldown)
            ));
        }
        Ok(())
    }

    pub(crate) fn check_budgets(
        &mut self,
        policy: &SafetyPolicy,
        keys: &[String],
        now: tokio::time::Instant,
    ) -> Result<(), String> {
        prune(&mut self.global, policy.global_budget.per, now);
        if self.global.len() as u32 >= policy.global_budget.max {
            return Err(format!(
                "global rate budget spent: {} actions in the last {}",
                self.global.len(),
                human(policy.global_budget.per)
            ));
        }
        for key in keys {
            let used = self
                .applied
                .get(key)
                .map(|h| {
                    h.iter()
                        .filter(|(_, _, t)| {
                            now.saturating_duration_since(*t) < policy.target_budget.per
                        })
                        .count()
                })
                .unwrap_or(0);
            if used as u32 >= policy.target_budget.max {
                return Err(format!(
                    "rate budget of {key} spent: {used} actions in the last {}",
                    human(policy.target_budget.per)
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn record(
        &mut self,
        keys: &[String],
        action: &str,
        incident: &str,
        now: tokio::time::Instant,
    ) {
        self.global.push_back(now);
        for key in keys {
            let h = self.applied.entry(key.clone()).or_default();
            h.push_back((action.to_string(), incident.to_string(), now));
            while h.len() > 256 {
                h.pop_front();
            }
        }
    }
}

fn prune(q: &mut VecDeque<tokio::time::Instant>, per: Duration, now: tokio::time::Instant) {
    while q
        .front()
        .map(|t| now.saturating_duration_since(*t) >= per)
        .unwrap_or(false)
    {
        q.pop_front();
    }
}

/// A maintenance window: remediations on `target` (narrowed to incidents whose key has `labels`) wait
/// until `until`. Incidents still open, are diagnosed and page; only their actions wait. Set through
/// [`crate::Engine::maintenance`], journaled, shown in the reviews of the incidents it held back, and
/// restored when an engine starts on the same journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    /// The target's name (`flink-main`).
    pub target: String,
    /// Only incidents whose key has these labels (`job=orders`); empty: every incident on the target.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::observation::Labels,
    /// When automation resumes.
    pub until: crate::time::Timestamp,
    /// Who set it.
    pub by: String,
    /// Why (`Flink upgrade, CHG-1234`).
    pub reason: String,
}

impl MaintenanceWindow {
    /// A window on `target` until `until`.
    pub fn new(
        target: impl Into<String>,
        until: crate::time::Timestamp,
        by: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            target: target.into(),
            labels: Default::default(),
            until,
            by: by.into(),
            reason: reason.into(),
        }
    }

    /// Narrow to incidents whose key has these labels.
    pub fn labels(mut self, labels: crate::observation::Labels) -> Self {
        self.labels = labels;
        self
    }

    /// Whether it holds back an incident on `target` with key `key` at `now`.
    pub fn covers(
        &self,
        target: &str,
        key: &crate::observation::Labels,
        now: crate::time::Timestamp,
    ) -> bool {
        now < self.until
            && self.target == target
            && self.labels.iter().all(|(k, v)| key.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;
    use crate::time::millis;

    proptest! {
        /// Whatever the timing of the attempts, the actions let through never exceed a budget in any
        /// window of its length, globally or per target; and an attempt is refused only when a budget
        /// really is spent.
        #[test]
        fn rate_budgets_never_exceed_their_window(
            global_max in 1u32..6,
            global_per in 1u64..5_000,
            target_max in 1u32..4,
            target_per in 1u64..5_000,
            attempts in proptest::collection::vec((0u64..1_500, 0usize..3), 1..80),
        ) {
            let policy = SafetyPolicy {
                global_budget: Budget::new(global_max, millis(global_per)),
                target_budget: Budget::new(target_max, millis(target_per)),
                ..SafetyPolicy::default()
            };
            let mut state = PolicyState::default();
            let start = tokio::time::Instant::now();
            let mut now = start;
            let mut done: Vec<(tokio::time::Instant, usize)> = Vec::new();
            for (gap, key) in attempts {
                now += millis(gap);
                let keys = vec![format!("kafka/k{key}")];
                let in_window = |per: u64, only: Option<usize>| {
                    done.iter()
                        .filter(|(t, k)| {
                            now.duration_since(*t) < millis(per) && only.is_none_or(|o| o == *k)
                        })
                        .count() as u32
                };
                let spent = in_window(global_per, None) >= global_max
                    || in_window(target_per, Some(key)) >= target_max;
                match state.check_budgets(&policy, &keys, now) {
                    Ok(()) => {
                        prop_assert!(!spent, "let through although a budget was spent");
                        state.record(&keys, "a", "INC-1", now);
                        done.push((now, key));
                    }
                    Err(why) => {
                        prop_assert!(spent, "refused although no budget was spent: {why}");
                        prop_assert!(why.contains("rate budget"), "{why}");
                    }
                }
            }
            // every window starting at an action holds at most `max` actions
            for (t, key) in &done {
                let global = done
                    .iter()
                    .filter(|(u, _)| *u >= *t && u.duration_since(*t) < millis(global_per))
                    .count() as u32;
                prop_assert!(global <= global_max, "{global} actions within {global_per} ms");
                let target = done
                    .iter()
                    .filter(|(u, k)| k == key && *u >= *t && u.duration_since(*t) < millis(target_per))
                    .count() as u32;
                prop_assert!(target <= target_max, "{target} actions on k{key} within {target_per} ms");
            }
        }
    }
}
