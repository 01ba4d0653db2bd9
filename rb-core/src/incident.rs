//! Incidents: the ITSM record, phases, and the view rebuilt from the journal.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::journal::{Entry, Event};
use crate::observation::Evidence;
use crate::symptom::{Finding, ViolatedMetric};
use crate::target::Target;
use crate::time::Timestamp;

/// The five phases of the seed's procedure (§3), plus the closing states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// 1. Detect: a symptom fired.
    Detect,
    /// 2. Diagnose: diagnosis probes ran, evidence attached.
    Diagnose,
    /// 3. Mitigate: remediations under the safety envelope.
    Mitigate,
    /// 4. Recover: recovery checks must hold for the stability window.
    Recover,
    /// 5. Review: the post-incident report.
    Review,
}

impl Phase {
    /// All five, in order.
    pub const ALL: [Phase; 5] = [
        Phase::Detect,
        Phase::Diagnose,
        Phase::Mitigate,
        Phase::Recover,
        Phase::Review,
    ];

    /// Name for humans.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Detect => "detect",
            Phase::Diagnose => "diagnose",
            Phase::Mitigate => "mitigate",
            Phase::Recover => "recover",
            Phase::Review => "review",
        }
    }
}

/// How an incident ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "snake_case")]
pub enum Resolution {
    /// Recovery checks held for the stability window.
    Recovered,
    /// Closed by a human.
    ClosedByHuman {
        /// Who.
        by: String,
    },
    /// Recovery never came; handed to humans.
    Escalated,
}

/// The incident record the seed's ITSM rule asks for (§2): timestamp, service, violated metric with its
/// value and threshold, related Nessie commit hash; plus the affected pipelines from the impact map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// Incident id (`INC-20261125-070901-kafka-backlog`).
    pub id: String,
    /// The incident key as a string (`playbook:target`, plus the key labels when the playbook keys
    /// incidents per offending series): one open incident per key.
    pub fingerprint: String,
    /// The incident key's labels (`connector=orders-sink`), empty when keyed per target.
    #[serde(default, skip_serializing_if = "crate::observation::Labels::is_empty")]
    pub key: crate::observation::Labels,
    /// The playbook.
    pub playbook: String,
    /// The playbook's title.
    pub title: String,
    /// The service (`orders-pipeline`).
    pub service: String,
    /// When it opened.
    pub opened_at: Timestamp,
    /// The target whose symptom fired.
    pub target: Target,
    /// What fired.
    pub finding: Finding,
    /// The violated metric, value and threshold, where the symptom is a threshold.
    pub violated: Option<ViolatedMetric>,
    /// The related Nessie commit hash, when a probe reported one.
    pub nessie_commit: Option<String>,
    /// Pipelines / use cases affected (impact map).
    pub affected_pipelines: Vec<String>,
    /// The version of the runbook that opened the incident ([`crate::Runbook::version`]); empty in
    /// journals written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runbook_version: String,
}

/// The state of one mitigation step as the journal tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not attempted.
    NotStarted,
    /// Planned only (dry-run).
    Planned,
    /// Refused by the envelope.
    Refused,
    /// Skipped.
    Skipped,
    /// Started, no finish recorded (interrupted if the engine is not running it).
    Started,
    /// Finished ok.
    Done,
    /// Finished with an error, or applied and its verification failed.
    Failed,
    /// Applied, but whether it happened is not known (timed out or lost after sending).
    OutcomeUnknown,
    /// Found interrupted after a restart; a human must look.
    Interrupted,
}

/// An incident as rebuilt from its journal entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The ITSM record.
    pub record: IncidentRecord,
    /// The phases entered, in order.
    pub phases: Vec<Phase>,
    /// Evidence attached.
    pub evidence: Vec<Evidence>,
    /// The whole timeline.
    pub timeline: Vec<Entry>,
    /// How it ended, if it did.
    pub resolution: Option<Resolution>,
}

impl Incident {
    /// Rebuild from entries (the first must be `Opened`). `None` if there is no `Opened` entry.
    pub fn from_entries(entries: Vec<Entry>) -> Option<Self> {
        let record = entries.iter().find_map(|e| match &e.event {
            Event::Opened { record } => Some((**record).clone()),
            _ => None,
        })?;
        let mut phases = Vec::new();
        let mut evidence = Vec::new();
        let mut resolution = None;
        for e in &entries {
            match &e.event {
                Event::Phase { phase } if !phases.contains(phase) => phases.push(*phase),
                Event::Evidence { evidence: ev } => evidence.push(ev.clone()),
                Event::Closed { resolution: r } => resolution = Some(r.clone()),
                _ => {}
            }
        }
        let mut record = record;
        if record.nessie_commit.is_none() {
            record.nessie_commit = entries.iter().find_map(|e| match &e.event {
                Event::CommitLinked { hash, .. } => Some(hash.clone()),
                _ => None,
            });
        }
        Some(Self {
            record,
            phases,
            evidence,
            timeline: entries,
            resolution,
        })
    }

    /// The state of mitigation step `step`.
    pub fn step_state(&self, step: usize) -> StepState {
        step_state(&self.timeline, step)
    }

    /// Remediation ids applied successfully, in order.
    pub fn applied_actions(&self) -> Vec<String> {
        self.timeline
            .iter()
            .filter_map(|e| match &e.event {
                Event::Finished {
                    action, ok: true, ..
                } => Some(action.clone()),
                _ => None,
            })
            .collect()
    }

    /// Remediation ids planned, in order.
    pub fn planned_actions(&self) -> Vec<String> {
        self.timeline
            .iter()
            .filter_map(|e| match &e.event {
                Event::Planned { plan, .. } => Some(plan.action.clone()),
                _ => None,
            })
            .collect()
    }

    /// Roles paged, in order.
    pub fn escalations(&self) -> Vec<String> {
        self.timeline
            .iter()
            .filter_map(|e| match &e.event {
                Event::Escalated { notification, .. } => Some(notification.role.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether the incident is closed.
    pub fn is_closed(&self) -> bool {
        self.resolution.is_some()
    }

    /// Targets touched by plans.
    pub fn acted_on(&self) -> BTreeSet<String> {
        self.timeline
            .iter()
            .filter_map(|e| match &e.event {
                Event::Planned { plan, .. } => Some(
                    plan.targets
                        .iter()
                        .map(|t| t.name.clone())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// The id of the step each entry is about, entry by entry: the id the entry carries, or — for an
/// entry journaled before step events carried ids — the id its index had in the `step_ids` entry in
/// force when it was written. `None` for entries about no step and for old entries no `step_ids`
/// entry maps.
pub fn entry_step_ids(entries: &[Entry]) -> Vec<Option<String>> {
    let mut in_force: Option<&Vec<String>> = None;
    entries
        .iter()
        .map(|e| {
            if let Event::StepIds { ids } = &e.event {
                in_force = Some(ids);
                return None;
            }
            let (index, id) = e.event.step_ref()?;
            if !id.is_empty() {
                return Some(id.to_string());
            }
            in_force.and_then(|ids| ids.get(index).cloned())
        })
        .collect()
}

/// The entries about step `id` — matched by id; an old entry whose id cannot be told is matched by
/// `index` (the step's position in the current playbook), as journals before step ids were read.
pub fn step_entries<'a>(entries: &'a [Entry], id: &str, index: usize) -> Vec<&'a Entry> {
    entry_step_ids(entries)
        .into_iter()
        .zip(entries)
        .filter(|(sid, e)| match sid {
            Some(sid) => sid == id,
            None => e.event.step_ref().is_some_and(|(i, _)| i == index),
        })
        .map(|(_, e)| e)
        .collect()
}

/// The state of step `id` (at `index` in the current playbook) from a timeline, matched by id: an
/// incident opened under an older version of the playbook finds its steps where they are now.
pub fn step_state_of(entries: &[Entry], id: &str, index: usize) -> StepState {
    fold_state(step_entries(entries, id, index).into_iter())
}

/// The outputs of every step of a timeline, by step id (`ids`: the current playbook's step ids, for
/// old entries no `step_ids` entry maps).
pub fn step_outputs_by_id(
    entries: &[Entry],
    ids: &[String],
) -> std::collections::BTreeMap<String, crate::remediation::StepOutput> {
    let mut out: std::collections::BTreeMap<String, crate::remediation::StepOutput> =
        Default::default();
    for (sid, e) in entry_step_ids(entries).into_iter().zip(entries) {
        let Some((index, _)) = e.event.step_ref() else {
            continue;
        };
        let Some(sid) = sid.or_else(|| ids.get(index).cloned()) else {
            continue;
        };
        match &e.event {
            Event::Progress { key, value, .. } => {
                out.entry(sid)
                    .or_default()
                    .artifacts
                    .insert(key.clone(), value.clone());
            }
            Event::Finished {
                ok: true,
                outcome: Some(o),
                ..
            } => out.entry(sid).or_default().outcome = Some(o.clone()),
            _ => {}
        }
    }
    out
}

/// The outputs of every step of a timeline, by step index: outcomes of finished steps and the
/// artifacts journaled with [`crate::ActionContext::progress`].
pub fn step_outputs(
    entries: &[Entry],
) -> std::collections::BTreeMap<usize, crate::remediation::StepOutput> {
    let mut out: std::collections::BTreeMap<usize, crate::remediation::StepOutput> =
        Default::default();
    for e in entries {
        match &e.event {
            Event::Progress {
                step, key, value, ..
            } => {
                out.entry(*step)
                    .or_default()
                    .artifacts
                    .insert(key.clone(), value.clone());
            }
            Event::Finished {
                step,
                ok: true,
                outcome: Some(o),
                ..
            } => out.entry(*step).or_default().outcome = Some(o.clone()),
            _ => {}
        }
    }
    out
}

/// The state of step `step` from a timeline, by the index events were journaled with (see
/// [`step_state_of`] to match by step id).
pub fn step_state(entries: &[Entry], step: usize) -> StepState {
    fold_state(
        entries
            .iter()
            .filter(|e| e.event.step_ref().is_some_and(|(i, _)| i == step)),
    )
}

/// The state the entries of one step lead to.
fn fold_state<'a>(entries: impl Iterator<Item = &'a Entry>) -> StepState {
    let mut st = StepState::NotStarted;
    for e in entries {
        st = match &e.event {
            Event::Planned { dry_run, .. } if st == StepState::NotStarted => {
                if *dry_run {
                    StepState::Planned
                } else {
                    st
                }
            }
            Event::Refused { .. } => StepState::Refused,
            Event::Skipped { .. } if st == StepState::NotStarted => StepState::Skipped,
            Event::Started { .. } => StepState::Started,
            Event::Finished {
                ok,
                outcome_unknown,
                ..
            } => {
                if *ok {
                    StepState::Done
                } else if *outcome_unknown {
                    StepState::OutcomeUnknown
                } else {
                    StepState::Failed
                }
            }
            // applied, but its verification failed: the step failed (what follows a failure follows)
            Event::Verified {
                verification: crate::remediation::Verification::Failed { .. },
                ..
            } => StepState::Failed,
            Event::Interrupted { .. } => StepState::Interrupted,
            Event::TaskAssigned { .. } => StepState::Started,
            Event::TaskDone { .. } => StepState::Done,
            _ => st,
        };
    }
    st
}
