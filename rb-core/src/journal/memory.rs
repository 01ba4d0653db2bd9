//! The in-memory journal.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{Entry, Event, Journal};
use crate::error::JournalError;
use crate::time::Timestamp;

/// A journal in memory: lost when the process ends. Cloning is not sharing; wrap it in an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<Vec<Entry>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every entry of every incident, in order.
    pub fn all(&self) -> Vec<Entry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<Entry>>, JournalError> {
        self.entries.lock().map_err(|_| {
            JournalError::new("memory", crate::ErrorKind::Storage, "journal lock poisoned")
        })
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn append(
        &self,
        incident: &str,
        at: Timestamp,
        event: &Event,
    ) -> Result<u64, JournalError> {
        let mut e = self.lock()?;
        let seq = e.len() as u64 + 1;
        e.push(Entry {
            seq,
            incident: incident.to_string(),
            at,
            event: event.clone(),
        });
        Ok(seq)
    }

    async fn entries(&self, incident: &str) -> Result<Vec<Entry>, JournalError> {
        Ok(self
            .lock()?
            .iter()
            .filter(|e| e.incident == incident)
            .cloned()
            .collect())
    }

    async fn open_incidents(&self) -> Result<Vec<String>, JournalError> {
        let e = self.lock()?;
        let mut open: Vec<String> = Vec::new();
        for entry in e.iter() {
            match entry.event {
                Event::Opened { .. } => open.push(entry.incident.clone()),
                Event::Closed { .. } => open.retain(|i| *i != entry.incident),
                _ => {}
            }
        }
        Ok(open)
    }

    async fn incidents(&self) -> Result<Vec<String>, JournalError> {
        Ok(self
            .lock()?
            .iter()
            .filter(|e| matches!(e.event, Event::Opened { .. }))
            .map(|e| e.incident.clone())
            .collect())
    }
}
