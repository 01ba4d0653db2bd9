//! Resuming open incidents from the journal when an engine starts.

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
        for id in inner.journal.open_incidents().await? {
            let entries = inner.journal.entries(&id).await?;
            let Some(incident) = Incident::from_entries(entries) else {
                continue;
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
                                    || format!("blind:{}", b.base) == rec.fingerprint)
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
                continue;
            };
            let p = &inner.runbook.playbooks[pi];
            let stage = match incident.phases.last() {
                None | Some(Phase::Detect) | Some(Phase::Diagnose) => Stage::Diagnose,
                Some(Phase::Mitigate) => Stage::Mitigate,
                Some(Phase::Recover) => Stage::Recover,
                Some(Phase::Review) => Stage::Review,
            };
            let mut page = None;
            for e in &incident.timeline {
                match &e.event {
                    Event::Escalated { notification, .. } => {
                        let sla = inner
                            .runbook
                            .on_call
                            .get(&notification.role)
                            .map(|c| c.sla)
                            .unwrap_or(secs(900));
                        page = Some(Page {
                            sent: Instant::now(),
                            role: notification.role.clone(),
                            due: Instant::now() + sla,
                            attempt: notification.attempt,
                        })
                    }
                    Event::Acknowledged { .. } => page = None,
                    _ => {}
                }
            }
            inner
                .append(
                    &id,
                    Event::Note {
                        text: format!("engine resumed the incident in phase {:?}", stage),
                    },
                )
                .await?;
            tracing::info!(incident = %id, ?stage, "resumed open incident");
            let detect_is_probe = matches!(
                st.bindings[bi].source_kind(&inner.runbook),
                Source::Probe { .. }
            );
            st.open.insert(
                rec.fingerprint.clone(),
                Slot::Idle(Box::new(Open {
                    id: id.clone(),
                    playbook: pi,
                    binding: bi,
                    key: rec.key.clone(),
                    finding: Some(rec.finding.clone()),
                    opened_at: rec.opened_at,
                    blind: rec.fingerprint.starts_with("blind:"),
                    detect_is_probe,
                    decided: None,
                    fresh_detect: false,
                    muted_until: None,
                    staged_until: None,
                    detect_snapshot: None,
                    paged_role: incident.timeline.iter().rev().find_map(|e| match &e.event {
                        Event::Escalated { notification, .. } => Some(notification.role.clone()),
                        _ => None,
                    }),
                    target: rec.target.clone(),
                    stage,
                    halted: false,
                    mitigation_begun: stage == Stage::Mitigate,
                    next_step: 0,
                    approval: None,
                    recover_started: (stage == Stage::Recover).then(Instant::now),
                    recovering_since: None,
                    recovery_escalated: false,
                    page,
                    checks: p
                        .recovery
                        .iter()
                        .map(|_| Check::new(p.stability_window))
                        .collect(),
                    evidence: incident.evidence.clone(),
                    commit_known: rec.nessie_commit.is_some(),
                    last_check_labels: Vec::new(),
                })),
            );
        }
        inner.publish_open(&st);
        Ok(())
    }
}
