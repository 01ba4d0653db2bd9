//! Resuming open incidents from the journal when an engine starts.

use super::ledger::{recovering_since, Ledger};
use super::mitigate::record_keys;
use super::*;

impl Engine {
    /// Rebuild open incidents from the journal (called by [`EngineBuilder::build`]).
    pub(super) async fn resume(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let windows: Vec<_> = inner
            .journal
            .entries(crate::journal::MAINTENANCE)
            .await?
            .into_iter()
            .filter_map(|e| match e.event {
                Event::Maintenance { window } => Some(window),
                _ => None,
            })
            .collect();
        if let Ok(mut w) = inner.maintenance.lock() {
            *w = windows;
        }
        let mut st = inner.state.lock().await;
        restore_detection(
            &mut st.bindings,
            inner.journal.entries(crate::journal::DETECTION).await?,
            inner.clock.now(),
        );
        for id in inner.journal.open_incidents().await? {
            // one engine works an incident at a time: one whose work another live engine holds is
            // adopted later, if that engine stops renewing it
            if inner.take_incident(&id).await {
                inner.resume_one(&mut st, &id).await?;
            } else if let Ok(mut later) = inner.adopt_later.lock() {
                later.push(id);
            }
        }
        // cool-downs, backoff and rate budgets count the actions journaled by earlier runs too: a
        // crash loop of the process cannot get around a budget
        let mut applied: Vec<(Timestamp, Vec<String>, String, String)> = Vec::new();
        for id in inner.journal.incidents().await? {
            let entries = inner.journal.entries(&id).await?;
            let Some(inc) = Incident::from_entries(entries) else {
                continue;
            };
            for e in &inc.timeline {
                if let Event::Started { step, action, .. } = &e.event {
                    let plan = inc.timeline.iter().rev().find_map(|x| match &x.event {
                        Event::Planned { step: s, plan, .. } if s == step && x.seq <= e.seq => {
                            Some(plan)
                        }
                        _ => None,
                    });
                    if let Some(plan) = plan {
                        let keys = record_keys(plan, &inc.record.key);
                        applied.push((e.at, keys, action.clone(), id.clone()));
                    }
                }
            }
        }
        applied.sort_by_key(|(at, ..)| *at);
        {
            let mut ps = inner.policy_state();
            for (at, keys, action, incident) in applied {
                ps.record(&keys, &action, &incident, instant_of(inner.clock, at));
            }
        }
        inner.publish_open(&st);
        Ok(())
    }
}

impl Inner {
    /// Rebuild open incident `id` from the journal and put it in `st` (this engine holds its work).
    pub(super) async fn resume_one(&self, st: &mut State, id: &str) -> Result<(), Error> {
        let inner = self;
        let id = id.to_string();
        let entries = inner.journal.entries(&id).await?;
        let Some(incident) = Incident::from_entries(entries) else {
            return Ok(());
        };
        let rec = &incident.record;
        let found = inner
            .runbook
            .playbooks
            .iter()
            .position(|p| p.id == rec.playbook)
            .and_then(|pi| {
                st.bindings
                    .iter()
                    .position(|b| {
                        b.playbook == pi
                            && (key_string(&b.base, &rec.key) == rec.fingerprint
                                || format!("blind:{}", b.ident) == rec.fingerprint)
                    })
                    .map(|bi| (pi, bi))
            });
        let Some((pi, bi)) = found else {
            inner
                .append(
                    &id,
                    Event::Note {
                        text: format!(
                            "playbook {} is no longer in the runbook; closed for a human",
                            rec.playbook
                        ),
                    },
                )
                .await?;
            inner
                .append(
                    &id,
                    Event::Closed {
                        resolution: Resolution::Escalated,
                    },
                )
                .await?;
            return Ok(());
        };
        if !inner.adopt(&rec.fingerprint, &id).await? {
            tracing::warn!(incident = %id, key = %rec.fingerprint, "the coordinator has another incident for the key; not resumed here");
            return Ok(());
        }
        let p = &inner.runbook.playbooks[pi];
        // the same fold the live path applies event by event: the phase, the page waiting for
        // its acknowledgement (due when it was due, whenever the engine restarted), the recovery
        // timers
        let ledger = Ledger::fold(&incident.timeline);
        let stage = ledger.stage;
        inner
            .append(
                &id,
                Event::Note {
                    text: format!("engine resumed the incident in phase {:?}", stage),
                },
            )
            .await?;
        // steps are matched by id: an incident opened under an older version of the playbook
        // resumes where its steps still exist, and each step that moved, is gone or is new is
        // said, step by step
        let journaled_ids = incident.timeline.iter().rev().find_map(|e| match &e.event {
            Event::StepIds { ids } => Some(ids.clone()),
            _ => None,
        });
        let current: Vec<String> = p.mitigation.iter().map(|s| s.id.clone()).collect();
        let mut gone_unsettled = Vec::new();
        if let Some(old) = journaled_ids.filter(|old| *old != current) {
            for (i, sid) in old.iter().enumerate() {
                let state = crate::incident::step_state_of(&incident.timeline, sid, i);
                let line = match current.iter().position(|c| c == sid) {
                    None => {
                        let what = match state {
                            StepState::NotStarted | StepState::Planned => {
                                "it had not run and is not run"
                            }
                            StepState::Done | StepState::Skipped => "it had run; nothing more to do",
                            StepState::Failed | StepState::Refused
                                if p.continue_after_failure =>
                            {
                                "it had failed; the playbook goes on after a failure"
                            }
                            StepState::Failed | StepState::Refused => {
                                gone_unsettled.push(format!("{sid} ({state:?})"));
                                "it had failed, so no later step runs"
                            }
                            _ => {
                                gone_unsettled.push(format!("{sid} ({state:?})"));
                                "its outcome is unknown: a human must check it"
                            }
                        };
                        format!(
                            "step {sid} (step {i} when the incident opened, {state:?}) is no longer in the playbook: {what}"
                        )
                    }
                    Some(j) if j != i => format!(
                        "step {sid} (step {i} when the incident opened, {state:?}) is now step {j}: resumed there"
                    ),
                    Some(_) => continue,
                };
                inner.append(&id, Event::Note { text: line }).await?;
            }
            for (j, sid) in current.iter().enumerate().filter(|(_, c)| !old.contains(c)) {
                let line = format!(
                    "step {sid} is new in the playbook (step {j}): it runs for this incident when reached"
                );
                inner.append(&id, Event::Note { text: line }).await?;
            }
            // later entries map their indexes through the playbook as it is now
            inner
                .append(
                    &id,
                    Event::StepIds {
                        ids: current.clone(),
                    },
                )
                .await?;
        }
        tracing::info!(incident = %id, ?stage, "resumed open incident");
        let detect_is_probe = matches!(
            st.bindings[bi].source_kind(&inner.runbook),
            Source::Probe { .. }
        );
        let mut open = Box::new(Open {
            id: id.clone(),
            playbook: pi,
            binding: bi,
            key: rec.key.clone(),
            finding: Some(rec.finding.clone()),
            opened_at: rec.opened_at,
            diagnosed: false,
            blind: rec.fingerprint.starts_with("blind:"),
            detect_is_probe,
            decided: None,
            fresh_detect: false,
            muted_until: None,
            staged_until: None,
            detect_snapshot: None,
            target: rec.target.clone(),
            halted: false,
            next_step: 0,
            approval: None,
            recovering_since: recovering_since(&incident.timeline, p)
                .filter(|_| stage == Stage::Recover),
            ledger,
            checks: p
                .recovery
                .iter()
                .map(|_| Check::new(p.stability_window))
                .collect(),
            evidence: incident.evidence.clone(),
            commit_known: rec.nessie_commit.is_some(),
            last_check_labels: Vec::new(),
        });
        if !gone_unsettled.is_empty() && stage == Stage::Mitigate {
            // a step that may have half-happened is gone from the playbook: no later step runs
            // on top of it; the rest of the mitigation is a human's
            open.halted = true;
            let msg = format!(
                "the playbook's steps changed while the incident was open, and steps that failed or whose outcome is unknown are gone from it: {}; no further step is run",
                gone_unsettled.join(", ")
            );
            inner
                .escalate(&mut open, p, EscalationReason::NeedsHuman, msg)
                .await?;
        }
        st.open.insert(rec.fingerprint.clone(), Slot::Idle(open));
        Ok(())
    }
}

/// Detection state from the journal's [`crate::journal::DETECTION`] entries: the for-duration streaks
/// still running (their first observation goes back into the key's history, so the streak is judged
/// from when it began, not from the restart) and the probes still blind (with the time they went blind).
/// A streak that began longer ago than the binding's history keeps is not restored: after so long a
/// gap, nothing says it held meanwhile.
fn restore_detection(
    bindings: &mut [Binding],
    entries: Vec<crate::journal::Entry>,
    now: Timestamp,
) {
    let mut streaks: BTreeMap<(String, Labels), Option<Box<Record>>> = BTreeMap::new();
    let mut blind: BTreeMap<String, Option<(Timestamp, String)>> = BTreeMap::new();
    for e in entries {
        match e.event {
            Event::Streak {
                binding,
                key,
                began,
            } => {
                streaks.insert((binding, key), began);
            }
            Event::Blind {
                binding,
                since,
                why,
            } => {
                blind.insert(binding, since.map(|t| (t, why)));
            }
            _ => {}
        }
    }
    for b in bindings.iter_mut() {
        if let Some(Some((since, why))) = blind.remove(&b.ident) {
            b.journaled_blind = Some(since);
            b.blind_since = Some((since, why));
        }
    }
    for ((base, key), began) in streaks {
        let Some(record) = began else { continue };
        let Some(b) = bindings.iter_mut().find(|b| b.ident == base) else {
            continue;
        };
        if now.since(record.at) > b.max_age || (b.key_by.is_empty() && !key.is_empty()) {
            continue;
        }
        let g = b.group(key, record.at);
        g.journaled_streak = Some(record.at);
        g.history.push(*record);
    }
}

/// The tokio instant of wall-clock time `at` (in the past for journaled events: a timer started before a
/// restart keeps its remaining time, not its whole length).
pub(super) fn instant_of(clock: Clock, at: Timestamp) -> Instant {
    let now_wall = clock.now();
    let now = Instant::now();
    if at >= now_wall {
        now + at.since(now_wall)
    } else {
        now.checked_sub(now_wall.since(at)).unwrap_or(now)
    }
}
