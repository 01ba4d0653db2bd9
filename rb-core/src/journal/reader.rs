//! A journal reader for humans: list the incidents of a journal, show one incident's events as text,
//! render its review — from any [`Journal`], with no engine running.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rb_core::JournalError> {
//! use rb_core::journal::reader;
//! let journal = reader::open_sqlite("/var/lib/rb/journal.db").await?;
//! for i in reader::list(&journal).await? {
//!     println!("{i}");
//! }
//! for line in reader::events(&journal, "INC-20261125-070901-kafka-backlog").await? {
//!     println!("{line}");
//! }
//! let review = reader::review(&journal, "INC-20261125-070901-kafka-backlog", None).await?;
//! println!("{}", review.to_markdown());
//! # Ok(()) }
//! ```

use std::fmt;

use serde::Serialize;

use super::{Entry, Journal};
use crate::error::{ErrorKind, JournalError};
use crate::incident::{Incident, Resolution};
use crate::playbook::Runbook;
use crate::report::{describe, Review};
use crate::time::Timestamp;

/// Whether an incident is open or how it closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Opened and not closed.
    Open,
    /// Closed, with how it ended.
    Closed {
        /// How it ended.
        resolution: Resolution,
    },
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Open => f.write_str("open"),
            Status::Closed { resolution } => match resolution {
                Resolution::Recovered => f.write_str("closed (recovered)"),
                Resolution::ClosedByHuman { by } => write!(f, "closed (by {by})"),
                Resolution::Escalated => f.write_str("closed (escalated)"),
            },
        }
    }
}

/// One incident of a journal, in a line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentSummary {
    /// The incident id.
    pub id: String,
    /// The playbook that opened it.
    pub playbook: String,
    /// The target whose symptom fired (`kind/name`).
    pub target: String,
    /// When it opened.
    pub opened_at: Timestamp,
    /// Open, or closed and how.
    pub status: Status,
    /// How many events the journal holds for it.
    pub events: usize,
}

impl fmt::Display for IncidentSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  {}  {}  {}  {}  ({} events)",
            self.opened_at, self.id, self.playbook, self.target, self.status, self.events
        )
    }
}

fn not_found(id: &str) -> JournalError {
    JournalError::new(
        "reader",
        ErrorKind::Invalid,
        format!("the journal has no incident {id} (no opened event)"),
    )
}

async fn incident(journal: &dyn Journal, id: &str) -> Result<Incident, JournalError> {
    let entries = journal.entries(id).await?;
    Incident::from_entries(entries).ok_or_else(|| not_found(id))
}

/// Every incident of the journal, in opening order.
pub async fn list(journal: &dyn Journal) -> Result<Vec<IncidentSummary>, JournalError> {
    let mut out = Vec::new();
    for id in journal.incidents().await? {
        let inc = incident(journal, &id).await?;
        out.push(IncidentSummary {
            id,
            playbook: inc.record.playbook.clone(),
            target: inc.record.target.to_string(),
            opened_at: inc.record.opened_at,
            status: match &inc.resolution {
                None => Status::Open,
                Some(r) => Status::Closed {
                    resolution: r.clone(),
                },
            },
            events: inc.timeline.len(),
        });
    }
    Ok(out)
}

/// One entry as a line: `time  #seq  description` ([`describe`]).
pub fn line(entry: &Entry) -> String {
    format!("{}  #{}  {}", entry.at, entry.seq, describe(&entry.event))
}

/// The events journaled under `key`, one line each, in order. `key` is an incident id or another
/// journal key such as [`MAINTENANCE`](super::MAINTENANCE) (maintenance windows) or
/// [`DETECTION`](super::DETECTION) (for-duration streaks and blind probes). An unknown key
/// gives no lines.
pub async fn events(journal: &dyn Journal, key: &str) -> Result<Vec<String>, JournalError> {
    Ok(journal.entries(key).await?.iter().map(line).collect())
}

/// A review rendered from the journal, with what it lacks when no runbook was given.
#[derive(Debug, Clone)]
pub struct JournalReview {
    /// The review.
    pub review: Review,
    /// What the review cannot show because it came from the journal alone (empty with a runbook
    /// that has the incident's playbook).
    pub missing: Vec<String>,
}

impl JournalReview {
    /// The review as Markdown (`Review::to_markdown`), with a note on what is missing, if anything.
    pub fn to_markdown(&self) -> String {
        let mut md = self.review.to_markdown();
        if !self.missing.is_empty() {
            md.push_str("\n## Not in this rendering\n\n");
            for m in &self.missing {
                md.push_str("- ");
                md.push_str(&crate::report::md_item(m));
                md.push('\n');
            }
        }
        md
    }

    /// The review as pretty JSON (`Review`'s fields), with a `missing` list when something is missing.
    pub fn to_json(&self) -> String {
        let mut v = match serde_json::to_value(&self.review) {
            Ok(v) => v,
            Err(e) => return format!("{{\"error\":\"{e}\"}}"),
        };
        if let (Some(map), false) = (v.as_object_mut(), self.missing.is_empty()) {
            map.insert("missing".into(), serde_json::json!(self.missing));
        }
        serde_json::to_string_pretty(&v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The review of incident `id`, built as the engine builds it ([`Review::new`]).
///
/// The post-recovery checklist and the playbook's review questions live in the runbook, not in the
/// journal: pass the runbook to get them. Without it (or when the runbook has no playbook of the
/// incident's id) the review has what the journal holds — record, timeline, evidence, actions and
/// outcomes, artifacts — and [`JournalReview::missing`] says what was left out.
pub async fn review(
    journal: &dyn Journal,
    id: &str,
    runbook: Option<&Runbook>,
) -> Result<JournalReview, JournalError> {
    let inc = incident(journal, id).await?;
    let mut missing = Vec::new();
    let review = match runbook {
        Some(rb) => {
            let playbook = rb.playbooks().iter().find(|p| p.id == inc.record.playbook);
            if playbook.is_none() {
                missing.push(format!(
                    "The playbook's review questions: the runbook has no playbook {}.",
                    inc.record.playbook
                ));
            }
            Review::new(inc, playbook, rb)
        }
        None => {
            missing.push(
                "The post-recovery checklist: it is part of the runbook, which was not given."
                    .to_string(),
            );
            missing.push(
                "The playbook's review questions: they are part of the runbook, which was not given."
                    .to_string(),
            );
            let empty = Runbook::new("").checklist(Vec::new());
            Review::new(inc, None, &empty)
        }
    };
    Ok(JournalReview { review, missing })
}

/// Open a SQLite journal file for reading: read-only, never created, never migrated; a journal from
/// a newer release is refused.
#[cfg(feature = "sqlite")]
pub async fn open_sqlite(
    path: impl AsRef<std::path::Path>,
) -> Result<super::SqliteJournal, JournalError> {
    super::SqliteJournal::open_read_only(path).await
}
