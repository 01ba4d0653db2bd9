//! Observations: what a probe saw — metric samples and typed facts.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Metric labels, ordered so that equal label sets compare and print equal.
pub type Labels = BTreeMap<String, String>;

/// Build [`Labels`] from pairs: `labels(&[("topic", "orders")])`.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One metric sample, Prometheus-like: a name, labels, a value and the time it was true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Metric name (`kafka_consumergroup_lag`).
    pub name: String,
    /// Labels identifying the series.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// When the value was observed.
    pub at: Timestamp,
}

/// A kind of typed fact a probe can attach to an observation (a ring, a job, a consumer group).
///
/// Facts are stored as JSON so they can be journaled and reported; [`Facts::get`] gives them back typed.
///
/// ```
/// use rb_core::{FactType, Facts};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct JobState { job: String, state: String }
/// impl FactType for JobState { const KIND: &'static str = "example.job_state"; }
///
/// let mut facts = Facts::default();
/// facts.insert(&JobState { job: "orders".into(), state: "RESTARTING".into() }).unwrap();
/// let back: JobState = facts.get().unwrap().unwrap();
/// assert_eq!(back.state, "RESTARTING");
/// ```
pub trait FactType: Serialize + DeserializeOwned {
    /// A stable, namespaced kind name (`cassandra.ring`, `flink.job`).
    const KIND: &'static str;
}

/// The typed facts of one observation, keyed by [`FactType::KIND`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Facts(BTreeMap<String, serde_json::Value>);

impl Facts {
    /// Attach a fact (replacing one of the same kind).
    pub fn insert<T: FactType>(&mut self, fact: &T) -> Result<(), serde_json::Error> {
        self.0
            .insert(T::KIND.to_string(), serde_json::to_value(fact)?);
        Ok(())
    }

    /// Attach a fact given as raw JSON under `kind`.
    pub fn insert_json(&mut self, kind: impl Into<String>, value: serde_json::Value) {
        self.0.insert(kind.into(), value);
    }

    /// The fact of type `T`: `None` when absent, `Some(Err)` when present but of another shape.
    pub fn get<T: FactType>(&self) -> Option<Result<T, serde_json::Error>> {
        self.0
            .get(T::KIND)
            .map(|v| serde_json::from_value(v.clone()))
    }

    /// The raw JSON of a fact kind.
    pub fn get_json(&self, kind: &str) -> Option<&serde_json::Value> {
        self.0.get(kind)
    }

    /// Every fact kind present.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Whether there is no fact.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a probe saw at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The probe's id (`kafka.consumer_lag`).
    pub probe: String,
    /// The target's name.
    pub target: String,
    /// When the observation completed.
    pub at: Timestamp,
    /// Metric samples.
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// Typed facts.
    #[serde(default, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
    /// Whether the probe saw everything it meant to (e.g. all partitions). A symptom never fires on an
    /// incomplete observation's missing parts, and reports unknown when what it needs is missing.
    #[serde(default = "yes")]
    pub complete: bool,
    /// What the probe could not see, when incomplete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Observation {
    /// An empty observation by `probe` of `target` at `at`.
    pub fn new(probe: impl Into<String>, target: impl Into<String>, at: Timestamp) -> Self {
        Self {
            probe: probe.into(),
            target: target.into(),
            at,
            samples: Vec::new(),
            facts: Facts::default(),
            complete: true,
            gaps: Vec::new(),
        }
    }

    /// Add a sample stamped with the observation's time.
    pub fn sample(mut self, name: impl Into<String>, labels: Labels, value: f64) -> Self {
        self.push_sample(name, labels, value);
        self
    }

    /// Add a sample stamped with the observation's time (by reference).
    pub fn push_sample(&mut self, name: impl Into<String>, labels: Labels, value: f64) {
        self.samples.push(Sample {
            name: name.into(),
            labels,
            value,
            at: self.at,
        });
    }

    /// Attach a typed fact. Serialization failures are recorded as a gap, never lost silently.
    pub fn fact<T: FactType>(mut self, fact: &T) -> Self {
        if let Err(e) = self.facts.insert(fact) {
            self.mark_incomplete(format!("fact {} could not be encoded: {e}", T::KIND));
        }
        self
    }

    /// Mark the observation incomplete, saying what is missing.
    pub fn mark_incomplete(&mut self, gap: impl Into<String>) {
        self.complete = false;
        self.gaps.push(gap.into());
    }

    /// Samples of metric `name`.
    pub fn samples_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }
}

/// Evidence attached to an incident: what a diagnosis probe saw, or why it could not see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Which probe or source produced it.
    pub source: String,
    /// The target it concerns.
    pub target: String,
    /// When it was gathered.
    pub at: Timestamp,
    /// One line for a human.
    pub summary: String,
    /// The observation, when the probe succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
    /// The error, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Facts rb-core itself understands.
pub mod facts {
    use serde::{Deserialize, Serialize};

    use super::FactType;

    /// A Nessie commit related to an incident (the ITSM record asks for it). Any probe may attach it; the
    /// engine copies the first one it sees (detect, then diagnosis) into the incident record.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct NessieCommit {
        /// Reference name (`main`).
        pub reference: String,
        /// Commit hash.
        pub hash: String,
    }

    impl FactType for NessieCommit {
        const KIND: &'static str = "nessie.commit";
    }

    /// A manual report (a ticket) pushed into Detect.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ManualReport {
        /// Ticket id in the ITSM system.
        pub ticket: String,
        /// Who reported.
        pub reporter: String,
        /// What they saw.
        pub summary: String,
    }

    impl FactType for ManualReport {
        const KIND: &'static str = "rb.manual_report";
    }

    /// An alert pushed by Alertmanager.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Alert {
        /// `alertname` label.
        pub name: String,
        /// `firing` or `resolved`.
        pub status: String,
        /// Alertmanager's fingerprint.
        pub fingerprint: String,
        /// All labels.
        pub labels: std::collections::BTreeMap<String, String>,
        /// All annotations.
        pub annotations: std::collections::BTreeMap<String, String>,
        /// `startsAt` as sent.
        pub starts_at: String,
        /// Ids of the Alertmanager silences muting the alert (`status.silencedBy` of the v2 API). A
        /// webhook never carries it (Alertmanager does not notify silenced alerts), so it is empty there.
        /// A silenced alert does not fire [`crate::symptom::alert_matching`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub silenced_by: Vec<String>,
    }

    impl Alert {
        /// Whether the alert is firing (`status` is `firing`).
        pub fn is_firing(&self) -> bool {
            self.status == "firing"
        }

        /// Whether a silence mutes the alert.
        pub fn is_silenced(&self) -> bool {
            !self.silenced_by.is_empty()
        }
    }

    impl FactType for Alert {
        const KIND: &'static str = "alertmanager.alert";
    }
}
