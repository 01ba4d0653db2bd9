//! Observations: what a probe saw — metric samples and typed facts.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
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
/// Facts are kept typed: a symptom or a remediation reading a fact gets the probe's value back
/// without decoding it. They are encoded as JSON only when an observation is journaled or reported
/// (and decoded on demand when read back from a journal). An observation may carry several facts of
/// one kind, each under its own key ([`Facts::insert_keyed`]: one per consumer group, per job).
///
/// ```
/// use rb_core::{FactType, Facts};
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// struct JobState { job: String, state: String }
/// impl FactType for JobState { const KIND: &'static str = "example.job_state"; }
///
/// let mut facts = Facts::default();
/// facts.put(JobState { job: "orders".into(), state: "RESTARTING".into() });
/// facts.put_keyed("billing", JobState { job: "billing".into(), state: "RUNNING".into() });
/// let back: JobState = facts.get().unwrap().unwrap();
/// assert_eq!(back.state, "RESTARTING");
/// assert_eq!(facts.get_keyed::<JobState>("billing").unwrap().unwrap().state, "RUNNING");
/// assert_eq!(facts.all::<JobState>().len(), 2);
/// // journaled as JSON: the keyed fact under `kind[key]`
/// let json = serde_json::to_value(&facts).unwrap();
/// assert_eq!(json["example.job_state[billing]"]["state"], "RUNNING");
/// let again: Facts = serde_json::from_value(json).unwrap();
/// assert_eq!(again, facts);
/// ```
pub trait FactType: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// A stable, namespaced kind name (`cassandra.ring`, `flink.job`). It must not contain `[`.
    const KIND: &'static str;
}

type Encode = fn(&(dyn Any + Send + Sync)) -> Result<serde_json::Value, serde_json::Error>;

fn encode<T: FactType>(
    v: &(dyn Any + Send + Sync),
) -> Result<serde_json::Value, serde_json::Error> {
    match v.downcast_ref::<T>() {
        Some(t) => serde_json::to_value(t),
        None => Err(serde::ser::Error::custom(format!(
            "fact {} holds a value of another type",
            T::KIND
        ))),
    }
}

/// One fact: typed as the probe attached it, or JSON as a journal gave it back.
#[derive(Clone)]
enum Fact {
    Typed(Arc<dyn Any + Send + Sync>, Encode),
    Json(serde_json::Value),
}

impl Fact {
    fn typed<T: FactType>(v: T) -> Self {
        Fact::Typed(Arc::new(v), encode::<T>)
    }

    /// The fact as JSON (a fact that cannot be encoded says why, under `unencodable`).
    fn to_json(&self) -> serde_json::Value {
        match self {
            Fact::Json(v) => v.clone(),
            Fact::Typed(v, enc) => enc(v.as_ref())
                .unwrap_or_else(|e| serde_json::json!({ "unencodable": e.to_string() })),
        }
    }

    fn get<T: FactType>(&self) -> Result<T, serde_json::Error> {
        match self {
            Fact::Typed(v, enc) => match v.downcast_ref::<T>() {
                Some(t) => Ok(t.clone()),
                // another Rust type under the same kind: go through its JSON
                None => T::deserialize(&enc(v.as_ref())?),
            },
            Fact::Json(v) => T::deserialize(v),
        }
    }
}

/// The typed facts of one observation, by [`FactType::KIND`] and key (the empty key for a fact
/// attached with [`Facts::insert`] or [`Facts::put`]).
///
/// As JSON, a map from `kind` (or `kind[key]` for a keyed fact) to the fact's JSON, so that journals
/// written before facts had keys read the same.
#[derive(Clone, Default)]
pub struct Facts(BTreeMap<String, BTreeMap<String, Fact>>);

impl Facts {
    /// Attach a fact, kept typed (replacing one of the same kind with no key).
    pub fn put<T: FactType>(&mut self, fact: T) {
        self.put_keyed("", fact);
    }

    /// Attach a fact of a kind under `key` (one per consumer group, per job), kept typed.
    pub fn put_keyed<T: FactType>(&mut self, key: impl Into<String>, fact: T) {
        self.0
            .entry(T::KIND.to_string())
            .or_default()
            .insert(key.into(), Fact::typed(fact));
    }

    /// Attach a copy of a fact (replacing one of the same kind with no key). Kept typed: it never fails
    /// today; the `Result` stays for callers written when facts were encoded on insertion.
    pub fn insert<T: FactType>(&mut self, fact: &T) -> Result<(), serde_json::Error> {
        self.put(fact.clone());
        Ok(())
    }

    /// Attach a copy of a fact under `key`.
    pub fn insert_keyed<T: FactType>(&mut self, key: impl Into<String>, fact: &T) {
        self.put_keyed(key, fact.clone());
    }

    /// Attach a fact given as raw JSON under `kind` (no key).
    pub fn insert_json(&mut self, kind: impl Into<String>, value: serde_json::Value) {
        self.insert_json_keyed(kind, "", value);
    }

    /// Attach a fact given as raw JSON under `kind` and `key`.
    pub fn insert_json_keyed(
        &mut self,
        kind: impl Into<String>,
        key: impl Into<String>,
        value: serde_json::Value,
    ) {
        self.0
            .entry(kind.into())
            .or_default()
            .insert(key.into(), Fact::Json(value));
    }

    /// The fact of type `T` (the one with no key, else the first by key): `None` when absent,
    /// `Some(Err)` when it does not decode as `T`. A fact attached typed comes back without decoding.
    pub fn get<T: FactType>(&self) -> Option<Result<T, serde_json::Error>> {
        self.0.get(T::KIND)?.values().next().map(Fact::get)
    }

    /// The fact of type `T` under `key`.
    pub fn get_keyed<T: FactType>(&self, key: &str) -> Option<Result<T, serde_json::Error>> {
        self.0.get(T::KIND)?.get(key).map(Fact::get)
    }

    /// Every fact of type `T` with its key (empty for the unkeyed one), by key.
    pub fn all<T: FactType>(&self) -> Vec<(String, Result<T, serde_json::Error>)> {
        self.0
            .get(T::KIND)
            .map(|m| m.iter().map(|(k, f)| (k.clone(), f.get())).collect())
            .unwrap_or_default()
    }

    /// The JSON of a fact kind (its unkeyed fact, else the first by key), encoded now.
    pub fn get_json(&self, kind: &str) -> Option<serde_json::Value> {
        self.0.get(kind)?.values().next().map(Fact::to_json)
    }

    /// Keep only the facts of the kinds for which `keep` says yes.
    pub fn retain_kinds(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|kind, _| keep(kind));
    }

    /// Move out the facts of the kinds for which `keep` says no.
    pub fn split_off_kinds(&mut self, mut keep: impl FnMut(&str) -> bool) -> Facts {
        let (kept, gone) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(kind, _)| keep(kind));
        self.0 = kept;
        Facts(gone)
    }

    /// Add every fact of `other` (replacing those of the same kind and key).
    pub fn merge(&mut self, other: Facts) {
        for (kind, m) in other.0 {
            self.0.entry(kind).or_default().extend(m);
        }
    }

    /// Every fact kind present.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// How many facts there are (every key of every kind).
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    /// Whether there is no fact.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every fact as JSON, under `kind` or `kind[key]` (what the journal holds).
    pub fn to_json(&self) -> BTreeMap<String, serde_json::Value> {
        self.0
            .iter()
            .flat_map(|(kind, m)| {
                m.iter().map(move |(key, f)| {
                    let name = if key.is_empty() {
                        kind.clone()
                    } else {
                        format!("{kind}[{key}]")
                    };
                    (name, f.to_json())
                })
            })
            .collect()
    }
}

impl fmt::Debug for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.to_json()).finish()
    }
}

/// Equal when they hold the same kinds and keys with equal JSON.
impl PartialEq for Facts {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.to_json() == other.to_json()
    }
}

impl Serialize for Facts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (kind, m) in &self.0 {
            for (key, f) in m {
                let v = f.to_json();
                if key.is_empty() {
                    map.serialize_entry(kind, &v)?;
                } else {
                    map.serialize_entry(&format!("{kind}[{key}]"), &v)?;
                }
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Facts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let mut facts = Facts::default();
        for (name, v) in raw {
            match name.split_once('[') {
                Some((kind, rest)) if rest.ends_with(']') => {
                    facts.insert_json_keyed(kind, &rest[..rest.len() - 1], v)
                }
                _ => facts.insert_json(name, v),
            }
        }
        Ok(facts)
    }
}

/// A name that copies share instead of copying its text: a probe's id or a target's name in an
/// [`Observation`].
///
/// A binding's history holds a dozen observations of one probe, and an engine may have a hundred
/// thousand probes: the history makes consecutive observations of a probe share one `Name`
/// ([`crate::symptom::History::push`]), so the text is kept once, not once per observation. Cloning
/// counts a reference. A `Name` reads as a `&str` (it derefs to `str`, compares with `&str` and
/// `String`), is built from `&str`, `String`, `&String` or `Arc<str>`, and is written as a plain
/// string (JSON, `Display`, `Debug`).
///
/// ```
/// use rb_core::observation::Name;
/// let n = Name::from("kafka-main");
/// let shared = n.clone(); // the same text, not a copy
/// assert_eq!(shared, "kafka-main");
/// assert!(n.starts_with("kafka"));
/// assert_eq!(serde_json::to_string(&n).unwrap(), "\"kafka-main\"");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

impl Name {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether two names share their text (not only equal: one allocation).
    pub fn shares(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(s.into())
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name(s.as_str().into())
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(s.into())
    }
}

impl From<Arc<str>> for Name {
    fn from(s: Arc<str>) -> Self {
        Name(s)
    }
}

impl From<&Name> for Name {
    fn from(s: &Name) -> Self {
        s.clone()
    }
}

impl From<Name> for String {
    fn from(n: Name) -> Self {
        n.0.to_string()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Name::from)
    }
}

/// What a probe saw at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The probe's id (`kafka.consumer_lag`).
    pub probe: Name,
    /// The target's name.
    pub target: Name,
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
    /// Set when this is a bounded copy ([`Observation::bounded`], what evidence, journal entries and
    /// reports hold): what the whole observation had, of which `samples` keeps only the top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trimmed: Option<Box<SampleSummary>>,
}

fn yes() -> bool {
    true
}

/// Evidence keeps at most this many samples of each metric: the highest values (the worst lag, the
/// most failed tasks).
pub const EVIDENCE_TOP_K: usize = 10;
/// Evidence keeps at most this many samples in all.
pub const EVIDENCE_MAX_SAMPLES: usize = 100;
/// Evidence summarizes at most this many metric names (the most sampled), and names at most this many
/// gaps.
pub const EVIDENCE_MAX_METRICS: usize = 50;

/// What a bounded observation left out: the counts and the range of every metric of the whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSummary {
    /// How many samples the observation had.
    pub samples: usize,
    /// How many the bounded copy kept.
    pub kept: usize,
    /// Per metric name (the [`EVIDENCE_MAX_METRICS`] most sampled): count, min, max and sum of its
    /// finite values.
    pub metrics: BTreeMap<String, MetricSummary>,
    /// How many metric names `metrics` leaves out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other_metrics: usize,
    /// How many gaps the bounded copy leaves out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other_gaps: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Count and range of one metric's samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// Samples of the metric.
    pub count: usize,
    /// The smallest finite value (`None`: no finite value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest finite value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The sum of the finite values.
    pub sum: f64,
}

impl Observation {
    /// An empty observation by `probe` of `target` at `at`.
    pub fn new(probe: impl Into<Name>, target: impl Into<Name>, at: Timestamp) -> Self {
        Self {
            probe: probe.into(),
            target: target.into(),
            at,
            samples: Vec::new(),
            facts: Facts::default(),
            complete: true,
            gaps: Vec::new(),
            trimmed: None,
        }
    }

    /// A copy bounded for evidence: at most [`EVIDENCE_TOP_K`] samples of each metric (its highest
    /// values) and [`EVIDENCE_MAX_SAMPLES`] in all, in their order, at most [`EVIDENCE_MAX_METRICS`]
    /// gaps, and a [`SampleSummary`] of the whole in [`Observation::trimmed`] when anything was left
    /// out. Facts are kept (typed and shared, not copied). A 10,000-partition lag observation becomes
    /// a few kilobytes in every journal entry, action context and report that holds it.
    pub fn bounded(self) -> Self {
        self.bounded_keeping(false)
    }

    /// A copy bounded like [`Observation::bounded`], keeping of each metric both its
    /// [`EVIDENCE_TOP_K`] highest and its [`EVIDENCE_TOP_K`] lowest values (at most twice
    /// [`EVIDENCE_MAX_SAMPLES`] in all): a threshold judged in either direction ("above", "below")
    /// judges the extremes the same way it judged the whole. The engine journals the observation a
    /// for-duration streak began on in this form, so that a restarted engine still judges the streak
    /// from when it began without the journal copying every series.
    pub fn bounded_extremes(self) -> Self {
        self.bounded_keeping(true)
    }

    fn bounded_keeping(mut self, lowest_too: bool) -> Self {
        let max_samples = if lowest_too {
            2 * EVIDENCE_MAX_SAMPLES
        } else {
            EVIDENCE_MAX_SAMPLES
        };
        let top_k = if lowest_too {
            2 * EVIDENCE_TOP_K
        } else {
            EVIDENCE_TOP_K
        };
        let mut per_metric: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (i, s) in self.samples.iter().enumerate() {
            let v = per_metric.entry(s.name.as_str()).or_insert_with(|| {
                order.push(s.name.as_str());
                Vec::new()
            });
            v.push(i);
        }
        let over = self.samples.len() > max_samples
            || per_metric.values().any(|v| v.len() > top_k)
            || self.gaps.len() > EVIDENCE_MAX_METRICS;
        if !over {
            return self;
        }
        // the summary of the whole, the most sampled metrics first
        let mut names: Vec<&str> = order.clone();
        names.sort_by_key(|n| std::cmp::Reverse(per_metric[n].len()));
        let metrics: BTreeMap<String, MetricSummary> = names
            .iter()
            .take(EVIDENCE_MAX_METRICS)
            .map(|n| {
                let mut m = MetricSummary {
                    count: per_metric[n].len(),
                    min: None,
                    max: None,
                    sum: 0.0,
                };
                for &i in &per_metric[n] {
                    let v = self.samples[i].value;
                    if v.is_finite() {
                        m.min = Some(m.min.map_or(v, |x| x.min(v)));
                        m.max = Some(m.max.map_or(v, |x| x.max(v)));
                        m.sum += v;
                    }
                }
                (n.to_string(), m)
            })
            .collect();
        // the top of each metric, metrics in the order they first appear, up to the overall bound
        let mut keep = vec![false; self.samples.len()];
        let mut kept = 0;
        for n in &order {
            let mut idx = per_metric[n].clone();
            let value = |i: &usize| {
                let v = self.samples[*i].value;
                if v.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    v
                }
            };
            idx.sort_by(|a, b| value(b).total_cmp(&value(a)).then(a.cmp(b)));
            let lowest = if lowest_too {
                idx.len().saturating_sub(EVIDENCE_TOP_K)
            } else {
                idx.len()
            };
            let chosen = idx
                .iter()
                .take(EVIDENCE_TOP_K)
                .chain(idx.iter().skip(lowest.max(EVIDENCE_TOP_K)));
            for &i in chosen {
                if kept == max_samples {
                    break;
                }
                keep[i] = true;
                kept += 1;
            }
        }
        let summary = SampleSummary {
            samples: self.samples.len(),
            kept,
            other_metrics: order.len().saturating_sub(metrics.len()),
            metrics,
            other_gaps: self.gaps.len().saturating_sub(EVIDENCE_MAX_METRICS),
        };
        let mut i = 0;
        self.samples.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.gaps.truncate(EVIDENCE_MAX_METRICS);
        self.trimmed = Some(Box::new(summary));
        self
    }

    /// Add a sample stamped with the observation's time.
    pub fn sample(mut self, name: impl Into<String>, labels: Labels, value: f64) -> Self {
        self.push_sample(name, labels, value);
        self
    }

    /// Add a sample stamped with the observation's time (by reference).
    ///
    /// The first sample gets room for itself alone, not the four a `Vec` reserves at first: many
    /// probes report one value, and a history keeps their observations by the dozen per probe.
    pub fn push_sample(&mut self, name: impl Into<String>, labels: Labels, value: f64) {
        if self.samples.capacity() == 0 {
            self.samples.reserve_exact(1);
        }
        self.samples.push(Sample {
            name: name.into(),
            labels,
            value,
            at: self.at,
        });
    }

    /// Attach a typed fact (a copy, kept typed; see [`Facts`]).
    pub fn fact<T: FactType>(mut self, fact: &T) -> Self {
        self.facts.put(fact.clone());
        self
    }

    /// Attach a typed fact under `key`: several facts of one kind (one per consumer group).
    pub fn fact_keyed<T: FactType>(mut self, key: impl Into<String>, fact: T) -> Self {
        self.facts.put_keyed(key, fact);
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
