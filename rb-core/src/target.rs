//! Targets: the system instances rb observes and acts on.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One system instance: a kind (`kafka`, `cassandra`, `flink`, …), a unique name (`kafka-main`) and labels.
///
/// ```
/// use rb_core::Target;
/// let t = Target::new("kafka", "kafka-main").label("env", "prod");
/// assert_eq!(t.to_string(), "kafka/kafka-main");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    /// The kind of system (`kafka`, `cassandra-node`, `flink`, `nessie`, `postgres`, …).
    pub kind: String,
    /// A name unique within the runbook.
    pub name: String,
    /// Free-form labels (`env`, `dc`, `role`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// A target of `kind` named `name`.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }

    /// Add a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// `kind/name`: the key used by cool-downs, budgets and keyed concurrency.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}
