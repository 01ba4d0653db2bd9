//! Recovery: the checks that must hold for the stability window, and the deadline.

use super::*;

impl Inner {
    pub(super) async fn recover(
        &self,
        o: &mut Open,
        p: &Playbook,
        verdict: &Verdict,
        manual: bool,
    ) -> Result<usize, Error> {
        let mut probes = 0;
        let now_i = Instant::now();
        // each check's probe, when it is due (every round, or on its own schedule)
        let seen: &Open = o;
        let results = join_all(
            p.recovery
                .iter()
                .zip(o.checks.iter())
                .map(|(c, st)| async move {
                    match &c.probe {
                        Some(probe) if st.next_due.is_none_or(|t| t <= now_i) => Some(
                            self.observe(probe.as_ref(), p.diagnosis_deadline, seen)
                                .await,
                        ),
                        _ => None,
                    }
                }),
        )
        .await;
        let mut labels = Vec::with_capacity(results.len() + 1);
        // A manual report has no metric to clear: only its recovery checks (if any) or a human close it.
        let mut all_ok = if manual {
            !p.recovery.is_empty()
        } else {
            verdict.is_ok()
        };
        labels.push(if manual { "manual" } else { verdict.label() });
        let snapshot = o.detect_snapshot.take();
        for ((check, res), c) in p.recovery.iter().zip(results).zip(o.checks.iter_mut()) {
            let at = self.clock.now();
            match (res, &check.probe) {
                (Some(res), _) => {
                    probes += 1;
                    c.history.push(record(at, res));
                    c.next_due = check.every.map(|d| now_i + d);
                    c.verdict = evaluate(check.symptom.as_ref(), &c.history, at, &mut c.state);
                }
                // judged over the detect stream of the incident's key
                (None, None) => {
                    c.verdict = match &snapshot {
                        Some(h) => evaluate(check.symptom.as_ref(), h, at, &mut c.state),
                        None => Verdict::unknown("no detect observations to judge"),
                    };
                }
                // not due: the last verdict stands
                (None, Some(_)) => {}
            }
            all_ok &= c.verdict.is_ok();
            labels.push(c.verdict.label());
        }
        if labels != o.last_check_labels {
            if !manual {
                self.append(
                    &o.id,
                    Event::Recovery {
                        check: p
                            .detectors
                            .first()
                            .map(|d| d.symptom.name())
                            .unwrap_or_default(),
                        verdict: verdict.clone(),
                    },
                )
                .await?;
            }
            for (check, c) in p.recovery.iter().zip(o.checks.iter()) {
                self.append(
                    &o.id,
                    Event::Recovery {
                        check: check.symptom.name(),
                        verdict: c.verdict.clone(),
                    },
                )
                .await?;
            }
            o.last_check_labels = labels;
        }
        let now = self.clock.now();
        if all_ok {
            let since = *o.recovering_since.get_or_insert(now);
            if now.since(since) >= p.stability_window {
                self.record(
                    o,
                    Event::Phase {
                        phase: Phase::Review,
                    },
                )
                .await?;
                return Ok(probes);
            }
        } else {
            o.recovering_since = None;
        }
        let started = o.ledger.recover_started.unwrap_or(now);
        if !o.ledger.recovery_escalated && now.since(started) >= p.recovery_deadline {
            // (journaled with the page: the fold marks the deadline escalated)
            let msg = format!(
                "{}: not recovered {} after mitigation",
                p.title,
                human(p.recovery_deadline)
            );
            self.escalate(o, p, EscalationReason::RecoveryTimedOut, msg)
                .await?;
        }
        Ok(probes)
    }
}
