//! Review (phase 5): the post-incident report, in Markdown and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::incident::{Incident, Resolution};
use crate::journal::Event;
use crate::playbook::{Playbook, Runbook};
use crate::policy::Decision;
use crate::remediation::Verification;
use crate::time::human;

/// One action taken (or not) during mitigation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionLine {
    /// Step index.
    pub step: usize,
    /// Remediation id.
    pub action: String,
    /// What the plan said.
    pub plan: String,
    /// Targets.
    pub targets: Vec<String>,
    /// `applied`, `failed`, `refused`, `dry-run`, `skipped`, `interrupted`.
    pub status: String,
    /// Outcome, error or reason.
    pub detail: String,
    /// Verification, if any.
    pub verification: Option<String>,
}

/// A post-incident review: everything the journal knows, shaped for a human and for machines.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// The incident as journaled.
    pub incident: Incident,
    /// Actions, one line per mitigation step.
    pub actions: Vec<ActionLine>,
    /// The post-recovery checklist (seed §6).
    pub checklist: Vec<String>,
    /// The playbook's review questions.
    pub review_items: Vec<String>,
    /// Checkpoint / savepoint ids and Nessie hashes found in outcomes and evidence.
    pub artifacts: Vec<String>,
}

impl Review {
    /// Build the review of `incident`.
    pub fn new(incident: Incident, playbook: Option<&Playbook>, runbook: &Runbook) -> Self {
        let mut actions: Vec<ActionLine> = Vec::new();
        let mut artifacts = Vec::new();
        if let Some(h) = &incident.record.nessie_commit {
            artifacts.push(format!("Nessie commit {h}"));
        }
        for e in &incident.timeline {
            match &e.event {
                Event::Planned {
                    step,
                    plan,
                    dry_run,
                    ..
                } => actions.push(ActionLine {
                    step: *step,
                    action: plan.action.clone(),
                    plan: plan.description.clone(),
                    targets: plan.targets.iter().map(|t| t.name.clone()).collect(),
                    status: if *dry_run {
                        "dry-run".into()
                    } else {
                        "planned".into()
                    },
                    detail: plan.expected_effect.clone(),
                    verification: None,
                }),
                Event::Refused {
                    step,
                    action,
                    reason,
                    ..
                } => {
                    set(&mut actions, *step, action, "refused", reason.clone());
                }
                Event::Skipped {
                    step,
                    action,
                    reason,
                    ..
                } if !actions
                    .iter()
                    .any(|a| a.step == *step && a.status == "dry-run") =>
                {
                    set(&mut actions, *step, action, "skipped", reason.clone());
                }
                Event::Interrupted { step, action, .. } => {
                    set(
                        &mut actions,
                        *step,
                        action,
                        "interrupted",
                        "started but never finished".into(),
                    );
                }
                Event::AwaitingApproval {
                    step,
                    action,
                    timeout_secs,
                    ..
                } => {
                    let wait = human(std::time::Duration::from_secs(*timeout_secs));
                    set(
                        &mut actions,
                        *step,
                        action,
                        "awaiting approval",
                        format!("asked; waiting up to {wait}"),
                    );
                }
                Event::Approval { step, decision, .. } => {
                    if let Some(a) = actions.iter_mut().rev().find(|a| a.step == *step) {
                        if matches!(decision, Decision::Granted { .. }) {
                            a.status = "approved".into();
                        }
                        let d = match decision {
                            Decision::Granted { by } => format!("approved by {by}"),
                            Decision::Denied { by, reason } => format!("denied by {by}: {reason}"),
                            Decision::TimedOut => "approval timed out".into(),
                        };
                        a.detail = d;
                    }
                }
                Event::Finished {
                    step,
                    action,
                    ok,
                    outcome,
                    error,
                    outcome_unknown,
                    ..
                } => {
                    let (status, detail) = if *ok {
                        let o = outcome.as_ref();
                        if let Some(o) = o {
                            collect_artifacts(&o.details, &mut artifacts);
                        }
                        ("applied", o.map(|o| o.summary.clone()).unwrap_or_default())
                    } else if *outcome_unknown {
                        ("OUTCOME UNKNOWN", error.clone().unwrap_or_default())
                    } else {
                        ("failed", error.clone().unwrap_or_default())
                    };
                    set(&mut actions, *step, action, status, detail);
                }
                Event::Progress { key, value, .. } => {
                    collect_artifacts(&serde_json::json!({ key.as_str(): value }), &mut artifacts);
                }
                Event::Verified {
                    step, verification, ..
                } => {
                    if let Some(a) = actions.iter_mut().rev().find(|a| a.step == *step) {
                        a.verification = Some(match verification {
                            Verification::Succeeded { evidence } => format!("verified: {evidence}"),
                            Verification::Failed { evidence } => {
                                format!("verification FAILED: {evidence}")
                            }
                            Verification::Inconclusive { why } => format!("inconclusive: {why}"),
                        });
                    }
                }
                Event::Evidence { evidence } => {
                    if let Some(o) = &evidence.observation {
                        for k in ["flink.checkpoint", "flink.savepoint"] {
                            if let Some(v) = o.facts.get_json(k) {
                                collect_artifacts(&v, &mut artifacts);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        artifacts.sort();
        artifacts.dedup();
        Self {
            actions,
            checklist: runbook.checklist.clone(),
            review_items: playbook.map(|p| p.review_items.clone()).unwrap_or_default(),
            artifacts,
            incident,
        }
    }

    /// The review as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The review as Markdown, ready for an RCA wiki: record, timeline (with a Mermaid diagram), evidence,
    /// actions and outcomes, artifacts, the post-recovery checklist, RCA and lessons-learned sections.
    pub fn to_markdown(&self) -> String {
        let r = &self.incident.record;
        let mut md = String::new();
        let _ = writeln!(md, "# {} — {}\n", md_text(&r.id), md_text(&r.title));
        let _ = writeln!(md, "| Field | Value |\n| --- | --- |");
        let _ = writeln!(md, "| Opened | {} |", r.opened_at);
        let _ = writeln!(md, "| Service | {} |", md_text(or_dash(&r.service)));
        let _ = writeln!(md, "| Playbook | {} |", md_code(&r.playbook, true));
        if !r.runbook_version.is_empty() {
            let _ = writeln!(
                md,
                "| Runbook version | {} |",
                md_code(&r.runbook_version, true)
            );
        }
        let _ = writeln!(md, "| Target | {} |", md_code(&r.target.to_string(), true));
        match &r.violated {
            Some(v) => {
                let _ = writeln!(
                    md,
                    "| Violated metric | {} ({}) = {} {} {} |",
                    md_code(&v.name, true),
                    md_text(&v.aggregation),
                    v.value,
                    md_text(&v.comparison),
                    v.threshold
                );
            }
            None => {
                let _ = writeln!(md, "| Finding | {} |", md_text(&r.finding.summary));
            }
        }
        let _ = writeln!(
            md,
            "| Nessie commit | {} |",
            r.nessie_commit
                .as_deref()
                .map(|h| md_code(h, true))
                .unwrap_or_else(|| "—".into())
        );
        let _ = writeln!(
            md,
            "| Affected pipelines | {} |",
            if r.affected_pipelines.is_empty() {
                "—".into()
            } else {
                md_text(&r.affected_pipelines.join(", "))
            }
        );
        let status = match &self.incident.resolution {
            Some(Resolution::Recovered) => "Recovered".to_string(),
            Some(Resolution::ClosedByHuman { by }) => format!("Closed by {}", md_text(by)),
            Some(Resolution::Escalated) => "Escalated".to_string(),
            None => "Open".to_string(),
        };
        let _ = writeln!(md, "| Status | {status} |");
        if let (Some(first), Some(last)) = (
            self.incident.timeline.first(),
            self.incident.timeline.last(),
        ) {
            let _ = writeln!(md, "| Duration | {} |", human(last.at.since(first.at)));
        }

        let _ = writeln!(md, "\n## Timeline\n");
        let _ = writeln!(
            md,
            "```mermaid\ntimeline\n    title {}",
            mermaid_text(&r.id)
        );
        for e in &self.incident.timeline {
            if let Some(line) = mermaid_line(&e.event) {
                let _ = writeln!(md, "    {} : {}", &e.at.rfc3339()[11..19], line);
            }
        }
        let _ = writeln!(md, "```\n");
        let _ = writeln!(md, "| Time (UTC) | Event |\n| --- | --- |");
        for e in &self.incident.timeline {
            let _ = writeln!(md, "| {} | {} |", e.at, md_text(&describe(&e.event)));
        }

        let _ = writeln!(md, "\n## Evidence\n");
        if self.incident.evidence.is_empty() {
            let _ = writeln!(md, "None gathered.");
        }
        for ev in &self.incident.evidence {
            let _ = writeln!(
                md,
                "- **{}** on {} at {}: {}",
                md_text(&ev.source),
                md_code(&ev.target, false),
                ev.at,
                md_text(&ev.summary)
            );
            if let Some(err) = &ev.error {
                let _ = writeln!(md, "  - error: {}", md_text(err));
            }
            if let Some(t) = ev.observation.as_ref().and_then(|o| o.trimmed.as_ref()) {
                let metrics: Vec<String> = t
                    .metrics
                    .iter()
                    .map(|(name, m)| match (m.min, m.max) {
                        (Some(lo), Some(hi)) => format!("{name}: {} series, {lo} to {hi}", m.count),
                        _ => format!("{name}: {} series", m.count),
                    })
                    .collect();
                let _ = writeln!(
                    md,
                    "  - {} samples, the top {} kept; {}{}",
                    t.samples,
                    t.kept,
                    md_text(&metrics.join("; ")),
                    if t.other_metrics > 0 {
                        format!(" and {} more metrics", t.other_metrics)
                    } else {
                        String::new()
                    }
                );
            }
        }

        let _ = writeln!(md, "\n## Actions and outcomes\n");
        if self.actions.is_empty() {
            let _ = writeln!(md, "No remediation was planned.");
        } else {
            let _ = writeln!(md, "| Step | Action | Targets | Plan | Status | Detail | Verification |\n| --- | --- | --- | --- | --- | --- | --- |");
            for a in &self.actions {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    a.step,
                    md_code(&a.action, true),
                    md_text(&a.targets.join(", ")),
                    md_text(&a.plan),
                    md_text(&a.status),
                    md_text(&a.detail),
                    a.verification
                        .as_deref()
                        .map(md_text)
                        .unwrap_or_else(|| "—".into())
                );
            }
        }
        let pages = self.incident.escalations();
        if !pages.is_empty() {
            let _ = writeln!(md, "\nPaged: {}.", md_text(&pages.join(" → ")));
        }

        let _ = writeln!(md, "\n## Checkpoints, savepoints and Nessie hashes\n");
        if self.artifacts.is_empty() {
            let _ = writeln!(md, "None recorded.");
        }
        for a in &self.artifacts {
            let _ = writeln!(md, "- {}", md_item(a));
        }

        let _ = writeln!(md, "\n## Post-recovery checklist\n");
        for c in &self.checklist {
            let _ = writeln!(md, "- [ ] {}", md_item(c));
        }

        let _ = writeln!(md, "\n## Root cause analysis\n\n_Root cause:_ \n\n_Why it was not prevented:_ \n\n_Prevention (alerts, automation, runbook updates):_ \n");
        if !self.review_items.is_empty() {
            let _ = writeln!(md, "Questions from the playbook:\n");
            for q in &self.review_items {
                let _ = writeln!(md, "- {}", md_item(q));
            }
        }
        let _ = writeln!(md, "\n## Lessons learned\n\n- \n");
        md
    }
}

fn set(actions: &mut Vec<ActionLine>, step: usize, action: &str, status: &str, detail: String) {
    if let Some(a) = actions
        .iter_mut()
        .rev()
        .find(|a| a.step == step && a.action == action)
    {
        a.status = status.to_string();
        a.detail = detail;
    } else {
        actions.push(ActionLine {
            step,
            action: action.to_string(),
            plan: String::new(),
            targets: Vec::new(),
            status: status.to_string(),
            detail,
            verification: None,
        });
    }
}

fn collect_artifacts(v: &serde_json::Value, out: &mut Vec<String>) {
    if let Some(map) = v.as_object() {
        for (k, val) in map {
            let kl = k.to_ascii_lowercase();
            if [
                "checkpoint",
                "savepoint",
                "hash",
                "location",
                "external_path",
            ]
            .iter()
            .any(|w| kl.contains(w))
            {
                let s = match val {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push(format!("{k}: {s}"));
            } else if val.is_object() {
                collect_artifacts(val, out);
            }
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "—"
    } else {
        s
    }
}

/// Text for Markdown inline content (a table cell, a list item, a heading): it stays on its line and
/// inside its cell, and cannot open HTML or a code span. Newlines become spaces; `\`, `|` and backticks
/// are backslash-escaped; `<` becomes `&lt;` (no tag can open without it). `>` stays: mid-line it is
/// inert, and findings use it for comparisons (`lag = 12000 > 5000`). Ordinary text is unchanged.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '`' => out.push_str("\\`"),
            '<' => out.push_str("&lt;"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(' ');
            }
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// [`md_text`] for text that starts a list item: a leading block marker (`#`, `>`, `-`, `+`, `*`, `=`,
/// or digits and `.`/`)`) is escaped and leading blanks dropped, so the item cannot become a heading, a
/// quote, a nested list or a code block.
pub fn md_item(s: &str) -> String {
    let t = md_text(s);
    // leading blanks could turn the item into a code block: drop them
    let lead = t.trim_start();
    let digits = lead.chars().take_while(char::is_ascii_digit).count();
    if lead.starts_with(['#', '>', '-', '+', '*', '=']) {
        format!("\\{lead}")
    } else if digits > 0 && lead[digits..].starts_with(['.', ')']) {
        format!("{}\\{}", &lead[..digits], &lead[digits..])
    } else {
        lead.to_string()
    }
}

/// An inline code span holding `s` verbatim: the fence is longer than any run of backticks in it,
/// newlines become spaces, and in a table cell (`in_table`) `|` is escaped (GitHub's table parser
/// removes that escape inside code spans too).
pub fn md_code(s: &str, in_table: bool) -> String {
    let mut body = s.replace("\r\n", " ").replace(['\n', '\r'], " ");
    if in_table {
        body = body.replace('|', "\\|");
    }
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(longest + 1);
    if longest > 0 {
        format!("{fence} {body} {fence}")
    } else {
        format!("{fence}{body}{fence}")
    }
}

/// Text for a Mermaid timeline event or title: it stays one event on one line. `:` (which starts a new
/// event) becomes a space, `;` a comma, `#` (a comment) a full-width `＃`, `%%` (a comment) `% %`,
/// `<` (Mermaid draws labels as HTML) a full-width `＜`, and newlines spaces.
pub fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ':' | '\n' | '\r' => out.push(' '),
            ';' => out.push(','),
            '#' => out.push('＃'),
            '<' => out.push('＜'),
            '%' if out.ends_with('%') => out.push_str(" %"),
            c => out.push(c),
        }
    }
    out
}

fn mermaid_line(e: &Event) -> Option<String> {
    // the event's own words, then the inserted text made safe; "opened" keeps the two spaces its
    // colon used to become
    Some(match e {
        Event::Opened { record } => {
            format!("opened  {}", mermaid_text(&record.finding.symptom))
        }
        Event::Phase { phase } => format!("phase {}", mermaid_text(phase.name())),
        Event::Finished { action, ok, .. } => {
            format!(
                "{} {}",
                mermaid_text(action),
                if *ok { "applied" } else { "failed" }
            )
        }
        Event::Refused { action, .. } => format!("{} refused", mermaid_text(action)),
        Event::Escalated { notification, .. } => {
            format!("paged {}", mermaid_text(&notification.role))
        }
        Event::Closed { .. } => "closed".into(),
        _ => return None,
    })
}

/// One line describing an event, for timelines.
pub fn describe(e: &Event) -> String {
    match e {
        Event::Opened { record } => format!("Incident opened: {}", record.finding.summary),
        Event::Refired { .. } => "Symptom fired again (deduplicated)".into(),
        Event::Phase { phase } => format!("Phase: {}", phase.name()),
        Event::Evidence { evidence } => {
            format!("Evidence from {}: {}", evidence.source, evidence.summary)
        }
        Event::Planned {
            step,
            plan,
            dry_run,
            ..
        } => format!(
            "Step {step} planned{}: {} on {} ({}reversible)",
            if *dry_run { " (dry-run)" } else { "" },
            plan.description,
            plan.targets
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if plan.reversible { "" } else { "NOT " }
        ),
        Event::AwaitingApproval {
            step,
            action,
            risk,
            timeout_secs,
            ..
        } => format!(
            "Step {step} ({action}, risk {risk:?}) waits for approval, at most {}",
            human(std::time::Duration::from_secs(*timeout_secs))
        ),
        Event::Approval {
            step,
            decision,
            plan_hash,
            ..
        } => match decision {
            Decision::Granted { by } => match plan_hash {
                Some(h) => format!("Step {step} approved by {by} (plan {h})"),
                None => format!("Step {step} approved by {by}"),
            },
            Decision::Denied { by, reason } => format!("Step {step} denied by {by}: {reason}"),
            Decision::TimedOut => format!("Step {step} approval timed out"),
        },
        Event::Refused {
            step,
            action,
            reason,
            ..
        } => format!("Step {step} {action} refused: {reason}"),
        Event::Skipped {
            step,
            action,
            reason,
            ..
        } => format!("Step {step} {action} skipped: {reason}"),
        Event::Started {
            step,
            action,
            attempt,
            ..
        } => format!("Step {step} {action} started (attempt {attempt})"),
        Event::Finished {
            step,
            action,
            ok,
            outcome,
            error,
            outcome_unknown,
            ..
        } => {
            if *ok {
                format!(
                    "Step {step} {action} done: {}",
                    outcome.as_ref().map(|o| o.summary.as_str()).unwrap_or("")
                )
            } else if *outcome_unknown {
                format!(
                    "Step {step} {action} OUTCOME UNKNOWN (not retried; check by hand): {}",
                    error.as_deref().unwrap_or("")
                )
            } else {
                format!(
                    "Step {step} {action} FAILED: {}",
                    error.as_deref().unwrap_or("")
                )
            }
        }
        Event::Verified {
            step, verification, ..
        } => match verification {
            Verification::Succeeded { evidence } => format!("Step {step} verified: {evidence}"),
            Verification::Failed { evidence } => {
                format!("Step {step} verification FAILED: {evidence}")
            }
            Verification::Inconclusive { why } => {
                format!("Step {step} verification inconclusive: {why}")
            }
        },
        Event::Interrupted { step, action, .. } => {
            format!("Step {step} {action} was interrupted (never finished)")
        }
        Event::Recovery { check, verdict } => {
            format!("Recovery check {check}: {}", verdict.label())
        }
        Event::Escalated {
            notification,
            error,
        } => format!(
            "Paged {} via {} (attempt {}, ack due {}): {}{}",
            notification.role,
            notification.channel,
            notification.attempt,
            notification.ack_due,
            notification.message,
            error
                .as_deref()
                .map(|e| format!(" — delivery failed: {e}"))
                .unwrap_or_default()
        ),
        Event::Acknowledged { by } => format!("Acknowledged by {by}"),
        Event::CommitLinked { reference, hash } => {
            format!("Nessie commit linked: {reference}@{hash}")
        }
        Event::Note { text } => text.clone(),
        Event::StepIds { ids } => format!("Mitigation steps: {}", ids.join(", ")),
        Event::Streak {
            binding,
            began: Some(r),
            ..
        } => format!("Detection {binding}: the condition holds since {}", r.at),
        Event::Streak { binding, .. } => format!("Detection {binding}: the condition ended"),
        Event::Blind {
            binding,
            since: Some(since),
            why,
        } => format!("Detection {binding}: cannot see the target since {since}: {why}"),
        Event::Blind { binding, .. } => format!("Detection {binding}: sees the target again"),
        Event::TaskAssigned { step, task, .. } => format!("Step {step}: task for a human: {task}"),
        Event::TaskDone { step, by, .. } => format!("Step {step}: task done by {by}"),
        Event::Maintenance { window } => format!(
            "Maintenance window on {} until {} by {}: {}",
            window.target, window.until, window.by, window.reason
        ),
        Event::Progress {
            step, key, value, ..
        } => {
            let v = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("Step {step} recorded {key} = {v}")
        }
        Event::Closed { resolution } => match resolution {
            Resolution::Recovered => "Closed: recovered".to_string(),
            Resolution::ClosedByHuman { by } => format!("Closed by {by}"),
            Resolution::Escalated => "Closed: handed to humans".to_string(),
        },
    }
}
