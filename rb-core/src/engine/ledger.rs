//! The incident state machine: what an open incident's journal decides, folded event by event.
//!
//! The engine keeps one [`Ledger`] per open incident. Live, every event the engine journals for the
//! incident goes through [`Ledger::apply`] as it is written ([`Inner::record`]); on resume, the
//! journaled events go through the same function ([`Ledger::fold`]). The phase an incident is in,
//! the page waiting for its acknowledgement (and so its SLA), the role paged last, when recovery began
//! and whether its deadline was escalated are therefore the same after a restart as before it: there
//! is no second, resume-only reading of the journal for them.
//!
//! Timers are kept as the journal's wall-clock [`Timestamp`]s, compared with the engine's clock: a
//! timer started before a restart keeps its remaining time, not its whole length.
//!
//! What is not here is not decided by the journal alone: the stability window needs the playbook's
//! recovery checks (see [`recovering_since`]), and a step's state is read from its own entries
//! ([`crate::incident::step_state_of`]).

use super::*;

/// A page sent and not yet acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Page {
    /// The role paged.
    pub(super) role: String,
    /// When it was sent (journaled).
    pub(super) sent: Timestamp,
    /// When its acknowledgement is due (the role's SLA).
    pub(super) due: Timestamp,
    /// Which page of the incident this is (1 for the first).
    pub(super) attempt: u32,
}

/// An open incident's journal, folded: see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ledger {
    /// The phase journaled last (Detect and Diagnose both read as [`Stage::Diagnose`]; `closed` reads
    /// as [`Stage::Review`]).
    pub(super) stage: Stage,
    /// The Mitigate phase was journaled.
    pub(super) mitigation_begun: bool,
    /// The role paged last (acknowledgements and resolutions go to it).
    pub(super) paged_role: Option<String>,
    /// The page waiting for its acknowledgement.
    pub(super) page: Option<Page>,
    /// When the (last) Recover phase began.
    pub(super) recover_started: Option<Timestamp>,
    /// The recovery deadline was escalated already (once per incident).
    pub(super) recovery_escalated: bool,
    /// The incident was closed (by recovery, a human, or another engine working it).
    pub(super) closed: bool,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            stage: Stage::Diagnose,
            mitigation_begun: false,
            paged_role: None,
            page: None,
            recover_started: None,
            recovery_escalated: false,
            closed: false,
        }
    }
}

impl Ledger {
    /// The state after every event of `entries`, in order.
    pub(super) fn fold<'a>(entries: impl IntoIterator<Item = &'a crate::journal::Entry>) -> Self {
        let mut ledger = Self::default();
        for e in entries {
            ledger.apply(e.at, &e.event);
        }
        ledger
    }

    /// One event journaled at `at`.
    pub(super) fn apply(&mut self, at: Timestamp, event: &Event) {
        match event {
            Event::Phase { phase } => {
                self.stage = match phase {
                    Phase::Detect | Phase::Diagnose => Stage::Diagnose,
                    Phase::Mitigate => {
                        self.mitigation_begun = true;
                        Stage::Mitigate
                    }
                    Phase::Recover => {
                        self.recover_started = Some(at);
                        Stage::Recover
                    }
                    Phase::Review => Stage::Review,
                }
            }
            Event::Escalated { notification, .. } => {
                self.paged_role = Some(notification.role.clone());
                if notification.action == NotifyAction::Trigger {
                    self.page = Some(Page {
                        role: notification.role.clone(),
                        sent: at,
                        due: notification.ack_due,
                        attempt: notification.attempt,
                    });
                    if notification.reason == EscalationReason::RecoveryTimedOut {
                        self.recovery_escalated = true;
                    }
                }
            }
            // an acknowledgement stops the page sent before it, not a newer one
            Event::Acknowledged { .. } if self.page.as_ref().is_some_and(|p| p.sent <= at) => {
                self.page = None;
            }
            Event::Closed { .. } => {
                self.closed = true;
                self.stage = Stage::Review;
            }
            _ => {}
        }
    }
}

/// Since when every recovery verdict of the current recovery phase has been ok, from the journal's
/// `recovery` entries (written whenever a verdict changes): a restart inside the stability window
/// finishes the window where it would have ended, not a whole window after the restart. `None` when
/// the incident is not recovering, or when any of its latest verdicts is not ok.
pub(super) fn recovering_since(
    timeline: &[crate::journal::Entry],
    p: &Playbook,
) -> Option<Timestamp> {
    // only the entries of the last recovery phase count
    let start = timeline
        .iter()
        .rposition(|e| {
            matches!(
                e.event,
                Event::Phase {
                    phase: Phase::Recover
                }
            )
        })
        .map_or(0, |i| i + 1);
    // every round whose verdicts changed journals all of them, in one order: the detect symptom's
    // verdict, then each recovery check's; entries are matched to that order by position (a name
    // can appear twice: a check judged over the detect stream has the detect symptom's name). A
    // journal that does not follow the playbook's order (the playbook changed) rebuilds nothing,
    // and the window starts again, as before.
    let mut names: Vec<String> = p
        .detectors
        .first()
        .map(|d| d.symptom.name())
        .into_iter()
        .collect();
    names.extend(p.recovery.iter().map(|c| c.symptom.name()));
    if names.is_empty() {
        return None;
    }
    let mut since: Option<Timestamp> = None;
    let mut round_ok = true;
    let mut round_at = None;
    let mut pos = 0;
    for e in &timeline[start..] {
        let Event::Recovery { check, verdict } = &e.event else {
            continue;
        };
        if *check != names[pos] {
            return None;
        }
        if pos == 0 {
            round_ok = true;
            round_at = Some(e.at);
        }
        round_ok &= verdict.is_ok();
        pos += 1;
        if pos == names.len() {
            pos = 0;
            if !round_ok {
                since = None;
            } else if since.is_none() {
                since = round_at;
            }
        }
    }
    since
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::journal::Entry;

    fn at(min: u64) -> Timestamp {
        Timestamp(1_795_590_000_000 + min * 60_000)
    }

    fn page(role: &str, sent: u64, reason: EscalationReason, attempt: u32) -> Event {
        Event::Escalated {
            notification: Notification {
                action: NotifyAction::Trigger,
                dedup_key: "INC-1".into(),
                incident: "INC-1".into(),
                playbook: "p".into(),
                role: role.into(),
                channel: "pager".into(),
                reason,
                message: "m".into(),
                attempt,
                ack_due: at(sent + 10),
            },
            error: None,
        }
    }

    fn phase(phase: Phase) -> Event {
        Event::Phase { phase }
    }

    /// A timeline as the engine journals it: opened, diagnosed, mitigated, paged, acknowledged,
    /// recovering, the recovery deadline escalated.
    fn timeline() -> Vec<Entry> {
        let events = [
            (0, phase(Phase::Detect)),
            (0, phase(Phase::Diagnose)),
            (1, phase(Phase::Mitigate)),
            (2, page("Kafka SME", 2, EscalationReason::ActionRefused, 1)),
            (3, Event::Acknowledged { by: "alice".into() }),
            (4, phase(Phase::Recover)),
            (
                34,
                page("Kafka SME", 34, EscalationReason::RecoveryTimedOut, 2),
            ),
        ];
        events
            .into_iter()
            .enumerate()
            .map(|(i, (m, event))| Entry {
                seq: i as u64 + 1,
                incident: "INC-1".into(),
                at: at(m),
                event,
            })
            .collect()
    }

    #[test]
    fn the_fold_reads_phase_page_and_deadlines_from_the_journal() {
        let l = Ledger::fold(&timeline());
        assert_eq!(l.stage, Stage::Recover);
        assert!(l.mitigation_begun);
        assert_eq!(l.recover_started, Some(at(4)));
        assert!(l.recovery_escalated);
        assert_eq!(l.paged_role.as_deref(), Some("Kafka SME"));
        let p = l
            .page
            .expect("the second page waits for its acknowledgement");
        assert_eq!((p.sent, p.due, p.attempt), (at(34), at(44), 2));
        assert!(!l.closed);
    }

    #[test]
    fn live_and_resume_agree_at_every_point_of_the_timeline() {
        // live: each event applied as it is journaled; resume: the prefix folded at once
        let t = timeline();
        let mut live = Ledger::default();
        for (i, e) in t.iter().enumerate() {
            live.apply(e.at, &e.event);
            assert_eq!(live, Ledger::fold(&t[..=i]), "after entry {i}");
        }
    }

    #[test]
    fn an_acknowledgement_stops_the_page_before_it_not_a_newer_one() {
        let mut l = Ledger::default();
        l.apply(at(5), &page("r", 5, EscalationReason::NeedsHuman, 1));
        // acknowledged at minute 4 (while the incident was busy), journaled later
        l.apply(at(4), &Event::Acknowledged { by: "bob".into() });
        assert!(l.page.is_some(), "the newer page still waits");
        l.apply(at(6), &Event::Acknowledged { by: "bob".into() });
        assert!(l.page.is_none());
    }

    #[test]
    fn closed_reads_as_review() {
        let mut l = Ledger::fold(&timeline());
        l.apply(
            at(40),
            &Event::Closed {
                resolution: Resolution::Recovered,
            },
        );
        assert_eq!(l.stage, Stage::Review);
        assert!(l.closed);
    }
}
