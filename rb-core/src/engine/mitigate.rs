//! Mitigation under the safety envelope: plan, approval, keyed locks, rate checks, apply (journaled
//! before and after), verification; the context a remediation sees; maintenance windows.

use super::*;
use crate::incident::{entry_step_ids, step_entries, step_outputs_by_id, step_state_of};
use crate::Outcome;

/// The lock keys of a plan's targets and the incident's offending instance, sorted and deduplicated
/// (locks are taken in this order): restarting connector A does not put connector B in cool-down.
/// What [`Inner::gate`] decided for a step.
pub(super) enum Gate {
    Run,
    Wait,
    Next,
}

/// The keys rate budgets count under: the plan's targets, whatever the instance.
pub(super) fn budget_keys(plan: &Plan) -> Vec<String> {
    target_keys(plan, &Labels::new())
}

/// The keys an applied action is recorded under: per instance (cool-down) and per target (budgets).
pub(super) fn record_keys(plan: &Plan, instance: &Labels) -> Vec<String> {
    let mut keys = target_keys(plan, instance);
    keys.extend(budget_keys(plan));
    keys.sort();
    keys.dedup();
    keys
}

pub(super) fn target_keys(plan: &Plan, instance: &Labels) -> Vec<String> {
    let mut keys: Vec<String> = plan
        .targets
        .iter()
        .map(|t| key_string(&t.key(), instance))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The page for a non-idempotent step found started and never finished.
fn interrupted(step: usize, action: &str) -> String {
    format!("step {step} ({action}) was started but never finished (engine restart); it is not idempotent, so it is not re-run: check its target by hand")
}

/// A decision in a few words.
fn decision_text(d: &Decision) -> String {
    match d {
        Decision::Granted { by } => format!("granted by {by}"),
        Decision::Denied { by, reason } => format!("denied by {by}: {reason}"),
        Decision::TimedOut => "timed out".into(),
    }
}

/// The id of step `step` of `p` (empty past its end).
pub(super) fn sid(p: &Playbook, step: usize) -> String {
    p.mitigation
        .get(step)
        .map(|s| s.id.clone())
        .unwrap_or_default()
}

/// The holder and fencing token of the latest `started` entry of step `id` (at `step`).
fn last_started(
    entries: &[crate::journal::Entry],
    id: &str,
    step: usize,
) -> Option<(Option<String>, Option<crate::coordination::FencingToken>)> {
    step_entries(entries, id, step)
        .into_iter()
        .rev()
        .find_map(|e| match &e.event {
            Event::Started { holder, token, .. } => Some((holder.clone(), *token)),
            _ => None,
        })
}

/// Whether the `interrupted` entry of step `id` (at `step`) was followed by its page (journaled,
/// delivered or not).
fn interrupted_paged(entries: &[crate::journal::Entry], id: &str, step: usize) -> bool {
    let Some(seq) = step_entries(entries, id, step)
        .into_iter()
        .rev()
        .find(|e| matches!(e.event, Event::Interrupted { .. }))
        .map(|e| e.seq)
    else {
        return true;
    };
    entries.iter().filter(|e| e.seq > seq).any(|e| {
        matches!(&e.event, Event::Escalated { notification, .. }
            if notification.reason == EscalationReason::StepInterrupted)
    })
}

/// Whether a page was journaled after entry `seq` (delivered or not).
fn paged_after(entries: &[crate::journal::Entry], seq: u64) -> bool {
    entries.iter().filter(|e| e.seq > seq).any(|e| {
        matches!(&e.event, Event::Escalated { notification, .. }
            if notification.action == NotifyAction::Trigger)
    })
}

/// Step `id`'s (at `step`) last entry that `owes` a page, when no page was journaled after it.
fn last_unpaged<'a>(
    entries: &'a [crate::journal::Entry],
    id: &str,
    step: usize,
    owes: impl Fn(&Event) -> bool,
) -> Option<&'a crate::journal::Entry> {
    let last = step_entries(entries, id, step)
        .into_iter()
        .rev()
        .find(|e| owes(&e.event))?;
    (!paged_after(entries, last.seq)).then_some(last)
}

/// The page owed for step `id` (at `step`) when its last refusal or failure was journaled and no page
/// followed it (a restart in between): the reason and the message the live path would have sent.
fn owed_page(
    entries: &[crate::journal::Entry],
    id: &str,
    step: usize,
    action: &str,
) -> Option<(EscalationReason, String)> {
    let last = last_unpaged(entries, id, step, |e| {
        matches!(
            e,
            Event::Refused { .. }
                | Event::Finished {
                    ok: false,
                    outcome_unknown: false,
                    ..
                }
                | Event::Verified {
                    verification: Verification::Failed { .. },
                    ..
                }
        )
    })?;
    match &last.event {
        Event::Refused { reason, .. } => Some((
            EscalationReason::ActionRefused,
            format!("{action} was not applied: {reason}"),
        )),
        Event::Finished { error, .. } => Some((
            EscalationReason::ActionFailed,
            format!(
                "{action} failed: {}",
                error.as_deref().unwrap_or("no error recorded")
            ),
        )),
        Event::Verified {
            verification: Verification::Failed { evidence },
            ..
        } => Some((
            EscalationReason::ActionFailed,
            format!("{action} failed: verification failed: {evidence}"),
        )),
        _ => None,
    }
}

/// A step applied (finished ok) whose verification was not journaled: the engine stopped in between.
struct Unverified {
    finished_at: crate::time::Timestamp,
    plan: Plan,
    outcome: Outcome,
}

/// The last successful apply of step `id` (at `step`) when no `verified` entry followed it, with the
/// plan it applied and its outcome.
fn unverified(entries: &[crate::journal::Entry], id: &str, step: usize) -> Option<Unverified> {
    let own = step_entries(entries, id, step);
    let (at, finished) = own
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, e)| match &e.event {
            Event::Finished {
                ok: true, outcome, ..
            } => Some((i, (e.at, outcome.clone()))),
            _ => None,
        })?;
    if own[at..]
        .iter()
        .any(|e| matches!(e.event, Event::Verified { .. }))
    {
        return None;
    }
    let plan = own[..at].iter().rev().find_map(|e| match &e.event {
        Event::Planned { plan, .. } => Some(plan.clone()),
        _ => None,
    })?;
    Some(Unverified {
        finished_at: finished.0,
        plan,
        outcome: finished
            .1
            .unwrap_or_else(|| Outcome::new("applied (no outcome journaled)")),
    })
}

/// The page owed for step `id` (at `step`) when its outcome-unknown finish was journaled and no page
/// followed it: the message the live path would have sent.
fn owed_unknown_page(
    entries: &[crate::journal::Entry],
    id: &str,
    step: usize,
    action: &str,
) -> Option<String> {
    let last = last_unpaged(entries, id, step, |e| {
        matches!(
            e,
            Event::Finished {
                outcome_unknown: true,
                ..
            }
        )
    })?;
    let error = match &last.event {
        Event::Finished { error, .. } => error.clone().unwrap_or_default(),
        _ => String::new(),
    };
    Some(format!(
        "{action}: outcome unknown ({error}); it is not re-run: check its target by hand"
    ))
}

/// The page that hands step `id`'s task to a human.
fn task_page(id: &str, task: &str) -> String {
    format!("task for a human (step {id}): {task} — mark it done when finished")
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Inner {
    /// Run the mitigation steps from `o.next_step` on. `Ok(false)` while a step waits for approval.
    pub(super) async fn mitigate(
        &self,
        o: &mut Open,
        p: &Playbook,
        verdict: &Verdict,
    ) -> Result<bool, Error> {
        if !o.ledger.mitigation_begun {
            self.record(
                o,
                Event::Phase {
                    phase: Phase::Mitigate,
                },
            )
            .await?;
            self.append(
                &o.id,
                Event::StepIds {
                    ids: p.mitigation.iter().map(|s| s.id.clone()).collect(),
                },
            )
            .await?;
            if p.mitigation.is_empty() {
                let msg = format!("{}: no automatic mitigation; a human must act", p.title);
                self.escalate(o, p, EscalationReason::NeedsHuman, msg)
                    .await?;
                return Ok(true);
            }
        }
        while let Some(st) = p.mitigation.get(o.next_step) {
            let rem = &st.remediation;
            let step = o.next_step;
            if o.halted {
                self.append(
                    &o.id,
                    Event::Skipped {
                        step,
                        step_id: sid(p, step),
                        action: rem.id().to_string(),
                        reason: "an earlier step failed or was refused".into(),
                    },
                )
                .await?;
                o.next_step += 1;
                continue;
            }
            let fresh_step = o.approval.is_none() && o.decided.is_none();
            if fresh_step
                && (st.when.is_some()
                    || st.unless_recovered_within.is_some()
                    || st.human_task.is_some())
            {
                match self.gate(o, p, step, st, verdict).await? {
                    Gate::Run => {}
                    Gate::Wait => return Ok(false),
                    Gate::Next => {
                        o.next_step += 1;
                        continue;
                    }
                }
            }
            if fresh_step {
                if let Some(w) = self.muted(o) {
                    if o.muted_until != Some(w.until) {
                        o.muted_until = Some(w.until);
                        self.append(
                            &o.id,
                            Event::Note {
                                text: format!(
                                    "step {step} ({}) waits: maintenance window on {} until {} ({}, set by {})",
                                    rem.id(),
                                    w.target,
                                    w.until,
                                    w.reason,
                                    w.by
                                ),
                            },
                        )
                        .await?;
                    }
                    return Ok(false);
                }
            }
            let span = tracing::info_span!("rb.remediation", action = %rem.id(), incident = %o.id, step = step);
            let waiting = o.approval.as_ref().is_some_and(|a| a.step == step)
                || o.decided.as_ref().is_some_and(|d| d.0 == step);
            let result = if waiting {
                self.resume_step(o, p, step, rem.as_ref(), verdict)
                    .instrument(span)
                    .await?
            } else {
                self.run_step(o, p, step, rem.as_ref(), verdict)
                    .instrument(span)
                    .await?
            };
            match result {
                StepResult::Waiting | StepResult::Elsewhere => return Ok(false),
                // the plan changed while a human decided: plan and ask again
                StepResult::Again => continue,
                StepResult::Halt if !p.continue_after_failure => o.halted = true,
                StepResult::Halt | StepResult::Continue => {}
            }
            o.next_step += 1;
        }
        Ok(true)
    }

    pub(super) async fn refuse(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        action: &str,
        reason: String,
    ) -> Result<StepResult, Error> {
        tracing::warn!(%reason, "remediation refused");
        self.append(
            &o.id,
            Event::Refused {
                step,
                step_id: sid(p, step),
                action: action.to_string(),
                reason: reason.clone(),
            },
        )
        .await?;
        self.metrics.inc(
            "rb_remediations_total",
            vec![
                ("action", action.to_string()),
                ("outcome", "refused".into()),
            ],
        );
        self.escalate(
            o,
            p,
            EscalationReason::ActionRefused,
            format!("{action} was not applied: {reason}"),
        )
        .await?;
        Ok(StepResult::Halt)
    }

    pub(super) async fn fail(
        &self,
        o: &mut Open,
        p: &Playbook,
        action: &str,
        reason: String,
    ) -> Result<StepResult, Error> {
        self.metrics.inc(
            "rb_remediations_total",
            vec![("action", action.to_string()), ("outcome", "failed".into())],
        );
        self.escalate(
            o,
            p,
            EscalationReason::ActionFailed,
            format!("{action} failed: {reason}"),
        )
        .await?;
        Ok(StepResult::Halt)
    }

    /// One mitigation step under the safety envelope (see [`crate::policy`] for the order).
    pub(super) async fn run_step(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        verdict: &Verdict,
    ) -> Result<StepResult, Error> {
        let action = rem.id().to_string();
        // at-most-once: the journal is the truth
        let mut entries = self.journal.entries(&o.id).await?;
        if entries
            .iter()
            .any(|e| matches!(e.event, Event::Closed { .. }))
        {
            // closed meanwhile by a human through another engine: no later step starts
            return Ok(StepResult::Elsewhere);
        }
        let id = sid(p, step);
        let mut state = step_state_of(&entries, &id, step);
        if matches!(state, StepState::Started | StepState::Done) {
            // started by another engine: in flight there while its claim is live (it is released
            // once the step is verified), else it ended meanwhile or its engine is gone
            let started = last_started(&entries, &id, step);
            if started
                .as_ref()
                .is_some_and(|(h, _)| h.as_ref().is_some_and(|h| *h != self.holder))
            {
                let sid = &p.mitigation[step].id;
                let started = started.as_ref().map(|(h, t)| (h, t));
                if self.in_flight_elsewhere(&o.id, sid, started).await {
                    return Ok(StepResult::Elsewhere);
                }
                entries = self.journal.entries(&o.id).await?;
                state = step_state_of(&entries, &id, step);
            }
        }
        match state {
            StepState::NotStarted => {}
            StepState::Planned if !self.policy.dry_run => {}
            StepState::Started if rem.idempotent() => {
                self.append(&o.id, Event::Note { text: format!("step {step} ({action}) was interrupted; it is idempotent, so it is applied again") })
                    .await?;
            }
            StepState::Started => {
                self.append(
                    &o.id,
                    Event::Interrupted {
                        step,
                        step_id: sid(p, step),
                        action: action.clone(),
                    },
                )
                .await?;
                self.escalate(
                    o,
                    p,
                    EscalationReason::StepInterrupted,
                    interrupted(step, &action),
                )
                .await?;
                return Ok(StepResult::Halt);
            }
            // a restart between journaling `interrupted` and the page: the page is still owed
            StepState::Interrupted if !interrupted_paged(&entries, &id, step) => {
                self.escalate(
                    o,
                    p,
                    EscalationReason::StepInterrupted,
                    interrupted(step, &action),
                )
                .await?;
                return Ok(StepResult::Halt);
            }
            // a restart between journaling a refusal or a failure and its page: the page is still
            // owed (the live path journals the entry, then pages)
            StepState::Failed | StepState::Refused => {
                if let Some((reason, msg)) = owed_page(&entries, &id, step, &action) {
                    self.escalate(o, p, reason, msg).await?;
                }
                return Ok(StepResult::Halt);
            }
            StepState::Interrupted => return Ok(StepResult::Halt),
            // a restart between journaling "outcome unknown" and its page: the page is still owed,
            // and no later step runs on top of an action that may or may not have happened
            StepState::OutcomeUnknown => {
                if let Some(msg) = owed_unknown_page(&entries, &id, step, &action) {
                    self.escalate(o, p, EscalationReason::ActionFailed, msg)
                        .await?;
                }
                return Ok(StepResult::Halt);
            }
            // applied, but the engine stopped before its verification ended: verify now, until the
            // deadline counted from when the apply finished (a restart does not extend it)
            StepState::Done => {
                let Some(pending) = unverified(&entries, &id, step) else {
                    return Ok(StepResult::Continue);
                };
                let until = pending.finished_at.plus(rem.verify_within());
                let text = format!(
                    "step {step} ({action}) was applied at {} and its verification was interrupted; verifying again until {until}",
                    pending.finished_at
                );
                self.append(&o.id, Event::Note { text }).await?;
                let ctx = self.action_context(o, p, step, &entries);
                let deadline = super::resume::instant_of(self.clock, until);
                return self
                    .verify_applied(
                        o,
                        p,
                        step,
                        rem,
                        &pending.plan,
                        &pending.outcome,
                        &ctx,
                        deadline,
                    )
                    .await;
            }
            _ => return Ok(StepResult::Continue),
        }
        if self.kill.is_engaged() {
            return self
                .refuse(o, p, step, &action, "the kill switch is engaged".into())
                .await;
        }
        if let Verdict::Unknown { why } = verdict {
            return self
                .refuse(
                    o,
                    p,
                    step,
                    &action,
                    format!("no action on unknown data: {why}"),
                )
                .await;
        }
        let ctx = self.action_context(o, p, step, &entries);
        let plan = match tokio::time::timeout(self.policy.apply_timeout, rem.plan(&ctx)).await {
            Ok(Ok(plan)) => plan,
            Ok(Err(e)) => {
                return self
                    .refuse(o, p, step, &action, format!("could not plan: {e}"))
                    .await
            }
            Err(_) => {
                return self
                    .refuse(
                        o,
                        p,
                        step,
                        &action,
                        format!(
                            "planning took longer than {}",
                            human(self.policy.apply_timeout)
                        ),
                    )
                    .await
            }
        };
        self.append(
            &o.id,
            Event::Planned {
                step,
                step_id: sid(p, step),
                plan: plan.clone(),
                dry_run: self.policy.dry_run,
            },
        )
        .await?;
        if let Some(why) = &plan.nothing_to_do {
            self.append(
                &o.id,
                Event::Skipped {
                    step,
                    step_id: sid(p, step),
                    action: action.clone(),
                    reason: format!("nothing to do: {why}"),
                },
            )
            .await?;
            self.metrics.inc(
                "rb_remediations_total",
                vec![
                    ("action", action.clone()),
                    ("outcome", "nothing_to_do".into()),
                ],
            );
            return Ok(StepResult::Continue);
        }
        if let Err(reason) = self.policy.blast_radius.check(&plan, &self.fleet) {
            return self.refuse(o, p, step, &action, reason).await;
        }
        if self.policy.dry_run {
            self.append(
                &o.id,
                Event::Skipped {
                    step,
                    step_id: sid(p, step),
                    action: action.clone(),
                    reason: "dry-run: planned only".into(),
                },
            )
            .await?;
            self.metrics.inc(
                "rb_remediations_total",
                vec![("action", action.clone()), ("outcome", "dry_run".into())],
            );
            return Ok(StepResult::Continue);
        }
        let risk = plan.effective_risk(rem.risk());
        if !risk.needs_approval() && !rem.requires_human() {
            return self.apply_step(o, p, step, rem, plan, ctx).await;
        }
        // cool-down, backoff and budgets: a human is not asked for what would be refused anyway
        // (apply_step checks them again, under the target locks)
        if let Err(reason) = self.check_rates(&plan, o, &action) {
            return self.refuse(o, p, step, &action, reason).await;
        }
        // approvals are rebuilt from the journal: a decision journaled for this very plan (the engine
        // stopped between the decision and the step) is honoured, never asked again; a question
        // still pending when the engine stopped keeps its deadline
        let hash = plan.hash();
        let mut pending_until = None;
        for e in step_entries(&entries, &sid(p, step), step)
            .into_iter()
            .rev()
        {
            match &e.event {
                Event::Approval {
                    decision,
                    plan_hash: Some(h),
                    ..
                } if *h == hash => {
                    let text = format!(
                        "step {step} ({action}): the decision journaled at {} for plan {hash} ({}) is honoured; the approver is not asked again",
                        e.at,
                        decision_text(decision)
                    );
                    self.append(&o.id, Event::Note { text }).await?;
                    return self
                        .act_on_decision(
                            o,
                            p,
                            step,
                            rem,
                            plan,
                            ctx,
                            decision.clone(),
                            verdict,
                            false,
                        )
                        .await;
                }
                Event::Approval { .. } => break,
                Event::AwaitingApproval { timeout_secs, .. } if pending_until.is_none() => {
                    pending_until = Some(e.at.plus(Duration::from_secs(*timeout_secs)));
                }
                _ => {}
            }
        }
        let mut timeout = self.approver.timeout();
        if let Some(until) = pending_until {
            let now = self.clock.now();
            if now >= until {
                return self
                    .decided(
                        o,
                        p,
                        step,
                        rem,
                        plan,
                        ctx,
                        Decision::TimedOut,
                        verdict,
                        false,
                    )
                    .await;
            }
            timeout = timeout.min(until.since(now));
            let text = format!(
                "step {step} ({action}): the question pending when the engine stopped is asked again; it times out at {until}, as first asked"
            );
            self.append(&o.id, Event::Note { text }).await?;
        }
        // approval: an approver that answers at once (auto, deny, a policy) decides within this tick;
        // a human is waited for in a task of its own while the engine goes on (a later tick resumes)
        let req = ApprovalRequest {
            incident: o.id.clone(),
            playbook: p.id.clone(),
            step,
            risk,
            plan: plan.clone(),
        };
        let approver = self.approver.clone();
        let mut ask = Box::pin(async move {
            match tokio::time::timeout(timeout, approver.approve(&req)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => Decision::Denied {
                    by: "approver".into(),
                    reason: format!("approver failed: {e}"),
                },
                Err(_) => Decision::TimedOut,
            }
        });
        if let Poll::Ready(decision) = futures::poll!(&mut ask) {
            return self
                .decided(o, p, step, rem, plan, ctx, decision, verdict, false)
                .await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let wake = self.wake.clone();
        let task = tokio::spawn(
            async move {
                let decision = ask.await;
                // the receiver is gone only when the incident was closed meanwhile
                let _ = tx.send(decision);
                wake.notify_one();
            }
            .in_current_span(),
        );
        self.append(
            &o.id,
            Event::AwaitingApproval {
                step,
                step_id: sid(p, step),
                action: action.clone(),
                risk,
                timeout_secs: timeout.as_secs(),
            },
        )
        .await?;
        tracing::info!(timeout = %human(timeout), "waiting for approval");
        o.approval = Some(PendingApproval {
            step,
            plan,
            ctx,
            decision: rx,
            _task: AbortOnDrop(task),
        });
        Ok(StepResult::Waiting)
    }

    /// A later tick looks at the step waiting for its approver.
    pub(super) async fn resume_step(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        verdict: &Verdict,
    ) -> Result<StepResult, Error> {
        use tokio::sync::oneshot::error::TryRecvError;
        if let Some((s, decision, plan)) = o.decided.take() {
            if s == step {
                // the round that brought this call observed the detect probe afresh
                let entries = self.journal.entries(&o.id).await?;
                let ctx = self.action_context(o, p, step, &entries);
                return self
                    .decided(o, p, step, rem, plan, ctx, decision, verdict, true)
                    .await;
            }
        }
        let Some(mut pending) = o.approval.take() else {
            return self.run_step(o, p, step, rem, verdict).await;
        };
        let decision = match pending.decision.try_recv() {
            Ok(d) => d,
            Err(TryRecvError::Empty) if !self.kill.is_engaged() => {
                o.approval = Some(pending);
                return Ok(StepResult::Waiting);
            }
            Err(TryRecvError::Empty) => {
                // the kill switch withdraws the question at once (dropping it aborts the task)
                let action = rem.id().to_string();
                return self
                    .refuse(o, p, step, &action, "the kill switch is engaged".into())
                    .await;
            }
            Err(TryRecvError::Closed) => Decision::Denied {
                by: "approver".into(),
                reason: "the approver's task ended without a decision".into(),
            },
        };
        let PendingApproval { plan, ctx, .. } = pending;
        if o.detect_is_probe && matches!(decision, Decision::Granted { .. }) {
            // observe the detect probe again before acting on a decision that took a while: the
            // next round runs it at once and brings the fresh verdict here
            o.decided = Some((step, decision, plan));
            o.fresh_detect = true;
            return Ok(StepResult::Waiting);
        }
        self.decided(o, p, step, rem, plan, ctx, decision, verdict, true)
            .await
    }

    /// Journal the approver's decision and act on it. After a wait, the world is looked at again: the
    /// kill switch and unknown data still stop the step.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn decided(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        plan: Plan,
        ctx: ActionContext,
        decision: Decision,
        verdict: &Verdict,
        waited: bool,
    ) -> Result<StepResult, Error> {
        self.append(
            &o.id,
            Event::Approval {
                step,
                step_id: sid(p, step),
                decision: decision.clone(),
                plan_hash: Some(plan.hash()),
            },
        )
        .await?;
        self.act_on_decision(o, p, step, rem, plan, ctx, decision, verdict, waited)
            .await
    }

    /// Act on an approver's decision (journaled already).
    #[allow(clippy::too_many_arguments)]
    async fn act_on_decision(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        plan: Plan,
        ctx: ActionContext,
        decision: Decision,
        verdict: &Verdict,
        waited: bool,
    ) -> Result<StepResult, Error> {
        let action = rem.id().to_string();
        match decision {
            Decision::Granted { .. } if self.approver.is_automatic() => {
                // minimum approval per risk: an automatic grant never covers a step that demands a
                // human, nor a destructive one unless the policy says so
                let risk = plan.effective_risk(rem.risk());
                if rem.requires_human() {
                    let reason = format!(
                        "{action} needs a human's approval; an automatic approver cannot grant it"
                    );
                    return self.refuse(o, p, step, &action, reason).await;
                }
                if risk == Risk::Destructive && !self.policy.auto_approve_destructive {
                    let reason = "a destructive step needs a human's approval (the policy does not let automatic approval grant it)".to_string();
                    return self.refuse(o, p, step, &action, reason).await;
                }
            }
            Decision::Granted { .. } => {}
            Decision::Denied { by, reason } => {
                return self
                    .refuse(
                        o,
                        p,
                        step,
                        &action,
                        format!("approval denied by {by}: {reason}"),
                    )
                    .await
            }
            Decision::TimedOut => {
                let reason = format!("no approval within {}", human(self.approver.timeout()));
                return self.refuse(o, p, step, &action, reason).await;
            }
        }
        if waited {
            if self.kill.is_engaged() {
                return self
                    .refuse(o, p, step, &action, "the kill switch is engaged".into())
                    .await;
            }
            if let Verdict::Unknown { why } = verdict {
                let reason = format!("approved, but the data is unknown now: {why}");
                return self.refuse(o, p, step, &action, reason).await;
            }
            if !verdict.is_firing() && !matches!(verdict, Verdict::Unevaluated) {
                self.append(
                    &o.id,
                    Event::Skipped {
                        step,
                        step_id: sid(p, step),
                        action: action.clone(),
                        reason: format!(
                            "approved, but the symptom no longer fires ({}): nothing applied",
                            verdict.label()
                        ),
                    },
                )
                .await?;
                return Ok(StepResult::Continue);
            }
            // plan again on what is true now: apply only what was approved
            let fresh = match tokio::time::timeout(self.policy.apply_timeout, rem.plan(&ctx)).await
            {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    return self
                        .refuse(o, p, step, &action, format!("could not plan again: {e}"))
                        .await
                }
                Err(_) => {
                    return self
                        .refuse(o, p, step, &action, "planning again timed out".into())
                        .await
                }
            };
            if !fresh.same_action(&plan) {
                self.append(
                    &o.id,
                    Event::Note {
                        text: format!(
                            "step {step} ({action}): the plan changed while waiting for approval (approved {}, now {}: {}); asking again",
                            plan.hash(),
                            fresh.hash(),
                            fresh.description
                        ),
                    },
                )
                .await?;
                return Ok(StepResult::Again);
            }
        }
        self.apply_step(o, p, step, rem, plan, ctx).await
    }

    /// Cool-down, backoff and rate budgets for `action` of `incident` on `keys`, now.
    /// Cool-down and backoff follow the plan's targets *and* the incident's offending instance
    /// (restarting connector A does not put connector B in cool-down); rate budgets count per target
    /// across every incident (ten incidents each restarting one node of a ring is ten restarts).
    pub(super) fn check_rates(&self, plan: &Plan, o: &Open, action: &str) -> Result<(), String> {
        let ps = &mut *self.policy_state();
        let now = Instant::now();
        target_keys(plan, &o.key)
            .iter()
            .try_for_each(|k| ps.check_cooldown(&self.policy, k, action, &o.id, now))
            .and_then(|_| ps.check_budgets(&self.policy, &budget_keys(plan), now))
    }

    /// Keyed concurrency, the rate checks again, then apply (journaled before and after) and verify.
    pub(super) async fn apply_step(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        plan: Plan,
        ctx: ActionContext,
    ) -> Result<StepResult, Error> {
        let action = rem.id().to_string();
        // keyed concurrency: one remediation per target and offending instance at a time (locks taken in
        // key order); cool-down and backoff follow the same keys
        let keys = target_keys(&plan, &o.key);
        // (std mutex guards never live across an await: the engine's futures stay Send)
        let locks: Vec<_> = {
            let mut ps = self.policy_state();
            keys.iter().map(|k| (k.clone(), ps.lock_for(k))).collect()
        };
        let mut guards = Vec::with_capacity(locks.len());
        for (key, lock) in &locks {
            match tokio::time::timeout(self.policy.target_lock_wait, lock.clone().lock_owned())
                .await
            {
                Ok(g) => guards.push(g),
                Err(_) => {
                    let reason = format!(
                        "another remediation held {key} for longer than {}",
                        human(self.policy.target_lock_wait)
                    );
                    return self.refuse(o, p, step, &action, reason).await;
                }
            }
        }
        // cool-down, backoff and budgets, under the locks
        if let Err(reason) = self.check_rates(&plan, o, &action) {
            return self.refuse(o, p, step, &action, reason).await;
        }
        // across engines: the targets' leases (one remediation per target at a time), then the
        // step's claim, begun once; only then `started` and apply
        let ttl = self.hold_ttl(rem);
        let leases = match self.lease_targets(&keys, ttl).await {
            Ok(l) => l,
            Err(reason) => return self.refuse(o, p, step, &action, reason).await,
        };
        let claim = match self.claim_and_begin(&o.id, &ctx.step_id, ttl).await {
            Ok(c) => c,
            Err(e) => {
                self.release_all(&leases).await;
                drop(guards);
                if e.kind() == crate::coordination::CoordinationErrorKind::Invalid {
                    let reason = format!("the step could not be claimed: {e}");
                    return self.refuse(o, p, step, &action, reason).await;
                }
                tracing::info!(error = %e, "another engine has the step; not applied here");
                return Ok(StepResult::Elsewhere);
            }
        };
        let mut ctx = ctx;
        ctx.fencing_token = Some(claim.token);
        let token = claim.token;
        let mut held = leases;
        held.push(claim);
        let result = self
            .apply_claimed(o, p, step, rem, plan, ctx, guards, token)
            .await;
        self.release_all(&held).await;
        result
    }

    /// Apply a claimed step (journaled before and after) and verify it.
    #[allow(clippy::too_many_arguments)]
    async fn apply_claimed(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        plan: Plan,
        ctx: ActionContext,
        guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
        token: crate::coordination::FencingToken,
    ) -> Result<StepResult, Error> {
        let action = rem.id().to_string();
        // apply: before and after; retried only when idempotent and transient, with backoff
        let retries = if rem.idempotent() {
            self.policy.idempotent_retries
        } else {
            0
        };
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.policy.retry_backoff.max(Duration::from_millis(100)))
            .with_max_delay(self.policy.retry_backoff.max(Duration::from_millis(100)) * 16)
            .with_jitter()
            .with_max_times(retries as usize)
            .build();
        let mut attempt = 1;
        let outcome = loop {
            self.append(
                &o.id,
                Event::Started {
                    step,
                    step_id: sid(p, step),
                    action: action.clone(),
                    attempt,
                    holder: Some(self.holder.clone()),
                    token: Some(token),
                },
            )
            .await?;
            self.policy_state()
                .record(&record_keys(&plan, &o.key), &action, &o.id, Instant::now());
            let res = tokio::time::timeout(self.policy.apply_timeout, rem.apply(&plan, &ctx)).await;
            let (record, transient, unknown) = match res {
                Ok(Ok(outcome)) => {
                    self.append(
                        &o.id,
                        Event::Finished {
                            step,
                            step_id: sid(p, step),
                            action: action.clone(),
                            ok: true,
                            outcome: Some(outcome.clone()),
                            error: None,
                            error_detail: None,
                            outcome_unknown: false,
                        },
                    )
                    .await?;
                    break outcome;
                }
                Ok(Err(e)) => {
                    let unknown = e.kind() == ErrorKind::OutcomeUnknown;
                    (e.record(), e.is_transient() || unknown, unknown)
                }
                Err(_) => (
                    crate::error::ErrorRecord {
                        kind: ErrorKind::OutcomeUnknown,
                        message: format!(
                            "no answer within {}: the outcome is unknown",
                            human(self.policy.apply_timeout)
                        ),
                        details: serde_json::Value::Null,
                    },
                    true,
                    true,
                ),
            };
            let error = record.message.clone();
            self.append(
                &o.id,
                Event::Finished {
                    step,
                    step_id: sid(p, step),
                    action: action.clone(),
                    ok: false,
                    outcome: None,
                    error: Some(error.clone()),
                    error_detail: Some(record),
                    outcome_unknown: unknown,
                },
            )
            .await?;
            // a non-idempotent action is never retried, least of all when its outcome is unknown
            if transient && rem.idempotent() {
                if let Some(delay) = backoff.next() {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            drop(guards);
            if unknown {
                self.metrics.inc(
                    "rb_remediations_total",
                    vec![("action", action.clone()), ("outcome", "unknown".into())],
                );
                self.escalate(
                    o,
                    p,
                    EscalationReason::ActionFailed,
                    format!("{action}: outcome unknown ({error}); it is not re-run: check its target by hand"),
                )
                .await?;
                return Ok(StepResult::Halt);
            }
            return self.fail(o, p, &action, error).await;
        };
        drop(guards);
        self.metrics.inc(
            "rb_remediations_total",
            vec![("action", action.clone()), ("outcome", "applied".into())],
        );
        let deadline = Instant::now() + rem.verify_within();
        self.verify_applied(o, p, step, rem, &plan, &outcome, &ctx, deadline)
            .await
    }

    /// Verify an applied step: again, with backoff, while inconclusive and until `deadline`;
    /// inconclusive at the deadline is not success. Journals `verified`; a failed verification
    /// fails the step.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn verify_applied(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        plan: &Plan,
        outcome: &Outcome,
        ctx: &ActionContext,
        deadline: Instant,
    ) -> Result<StepResult, Error> {
        let action = rem.id().to_string();
        let mut delay = self.policy.retry_backoff.max(Duration::from_millis(100));
        let mut tries = 0u32;
        let verification = loop {
            tries += 1;
            let budget = self.policy.apply_timeout.min(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(secs(1)),
            );
            let v = match tokio::time::timeout(budget, rem.verify(plan, outcome, ctx)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => Verification::Inconclusive { why: e.to_string() },
                Err(_) => Verification::Inconclusive {
                    why: "verification timed out".into(),
                },
            };
            match v {
                Verification::Inconclusive { why } if Instant::now() + delay <= deadline => {
                    tracing::debug!(%why, tries, "verification inconclusive; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(secs(60));
                }
                Verification::Inconclusive { why } if !rem.verify_within().is_zero() => {
                    break Verification::Failed {
                        evidence: format!(
                            "still inconclusive after {} ({tries} tries): {why}",
                            human(rem.verify_within())
                        ),
                    };
                }
                other => break other,
            }
        };
        self.append(
            &o.id,
            Event::Verified {
                step,
                step_id: sid(p, step),
                verification: verification.clone(),
            },
        )
        .await?;
        if let Verification::Failed { evidence } = verification {
            return self
                .fail(o, p, &action, format!("verification failed: {evidence}"))
                .await;
        }
        Ok(StepResult::Continue)
    }

    /// Conditions, stages and human tasks: whether step `step` runs now, waits, or is passed.
    async fn gate(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        st: &crate::playbook::Step,
        verdict: &Verdict,
    ) -> Result<Gate, Error> {
        let entries = self.journal.entries(&o.id).await?;
        let state = step_state_of(&entries, &st.id, step);
        if state != StepState::NotStarted {
            if let (Some(task), StepState::Started) = (&st.human_task, &state) {
                // a restart between assigning the task and paging for it: the page is still owed
                let assigned = step_entries(&entries, &st.id, step)
                    .into_iter()
                    .rev()
                    .find(|e| matches!(e.event, Event::TaskAssigned { .. }))
                    .map(|e| e.seq);
                let paged = assigned.is_none_or(|seq| paged_after(&entries, seq));
                if !paged {
                    self.escalate(o, p, EscalationReason::NeedsHuman, task_page(&st.id, task))
                        .await?;
                }
            }
            return Ok(match (&st.human_task, state) {
                (Some(_), StepState::Started) => Gate::Wait,
                (Some(_), _) => Gate::Next,
                // decided already (a resumed engine): the step's own journal says what follows
                (None, _) => Gate::Run,
            });
        }
        if let Some(d) = st.unless_recovered_within {
            // the last entry of a step before this one (by id: where it is in the playbook now)
            let ids = entry_step_ids(&entries);
            let since = entries
                .iter()
                .zip(&ids)
                .rev()
                .find(|(e, id)| match &e.event {
                    Event::Finished { step: s, .. }
                    | Event::Verified { step: s, .. }
                    | Event::Skipped { step: s, .. }
                    | Event::Refused { step: s, .. }
                    | Event::TaskDone { step: s, .. } => {
                        let now_at = id
                            .as_ref()
                            .and_then(|id| p.mitigation.iter().position(|m| m.id == *id));
                        now_at.unwrap_or(*s) < step
                    }
                    Event::Phase { phase } => *phase == Phase::Mitigate,
                    _ => false,
                })
                .map(|(e, _)| e)
                .map(|e| e.at)
                .unwrap_or_else(|| self.clock.now());
            let due = since.plus(d);
            if self.clock.now() < due {
                if o.staged_until != Some(due) {
                    o.staged_until = Some(due);
                    self.append(
                        &o.id,
                        Event::Note {
                            text: format!(
                                "step {step} ({}) waits until {due}: it runs only if the incident has not recovered by then",
                                st.id
                            ),
                        },
                    )
                    .await?;
                }
                return Ok(Gate::Wait);
            }
            if !verdict.is_firing() {
                self.append(
                    &o.id,
                    Event::Skipped {
                        step,
                        step_id: sid(p, step),
                        action: st.remediation.id().to_string(),
                        reason: format!(
                            "recovered within {} of the step before it ({})",
                            human(d),
                            verdict.label()
                        ),
                    },
                )
                .await?;
                return Ok(Gate::Next);
            }
        }
        if let Some(cond) = &st.when {
            let ctx = self.action_context(o, p, step, &entries);
            if !cond.holds(&ctx) {
                self.append(
                    &o.id,
                    Event::Skipped {
                        step,
                        step_id: sid(p, step),
                        action: st.remediation.id().to_string(),
                        reason: format!("condition not met: {}", cond.describe),
                    },
                )
                .await?;
                return Ok(Gate::Next);
            }
        }
        if let Some(task) = &st.human_task {
            self.append(
                &o.id,
                Event::TaskAssigned {
                    step,
                    step_id: sid(p, step),
                    task: task.clone(),
                },
            )
            .await?;
            self.escalate(o, p, EscalationReason::NeedsHuman, task_page(&st.id, task))
                .await?;
            return Ok(Gate::Wait);
        }
        Ok(Gate::Run)
    }

    /// The maintenance window holding this incident's actions back now, if any.
    pub(super) fn muted(&self, o: &Open) -> Option<crate::policy::MaintenanceWindow> {
        let now = self.clock.now();
        self.maintenance
            .lock()
            .ok()?
            .iter()
            .filter(|w| w.covers(&o.target.name, &o.key, now))
            .max_by_key(|w| w.until)
            .cloned()
    }

    /// The context a remediation sees: the incident, what broke, the evidence, and the outputs of the
    /// steps before it (rebuilt from the journal, so a resumed engine hands on the same).
    pub(super) fn action_context(
        &self,
        o: &Open,
        p: &Playbook,
        step: usize,
        entries: &[crate::journal::Entry],
    ) -> ActionContext {
        let ids: Vec<String> = p.mitigation.iter().map(|s| s.id.clone()).collect();
        let outputs = step_outputs_by_id(entries, &ids)
            .into_iter()
            .filter(|(id, _)| ids.contains(id))
            .collect();
        let step_id = p
            .mitigation
            .get(step)
            .map(|s| s.id.clone())
            .unwrap_or_default();
        let mut ctx = ActionContext::detached(self.clock, self.policy.apply_timeout);
        ctx.incident = o.id.clone();
        ctx.playbook = p.id.clone();
        ctx.step = step;
        ctx.step_id = step_id;
        ctx.target = Some(o.target.clone());
        ctx.key = o.key.clone();
        ctx.finding = o.finding.clone();
        ctx.evidence = o.evidence.clone();
        ctx.outputs = outputs;
        ctx.dry_run = self.policy.dry_run;
        ctx.progress = Some(ProgressSink {
            journal: self.journal.clone(),
            incident: o.id.clone(),
            step,
            clock: self.clock,
            written: Default::default(),
        });
        ctx
    }
}
