//! Symptoms: judgements over observations and their recent history.
//!
//! A [`Symptom`] turns the history of one detect binding into a [`Verdict`]: ok, pending (the condition
//! holds but not yet for long enough), firing (with a [`Finding`] and its evidence) or unknown (with why).
//! **A symptom never fires, and never says ok, on data it does not have**: a failed probe, an absent
//! metric, or an incomplete observation make the verdict unknown.
//!
//! The library: [`metric`] thresholds with for-duration and hysteresis, increase and rate over a window,
//! sudden gauge drops ([`MetricQuery::drops_by`]),
//! [`all_of`] / [`any_of`] composition, typed predicates over facts ([`fact_rule`]), and pushed alerts and
//! manual reports ([`alert_firing`], [`manual_report`]).
//!
//! ```
//! use rb_core::symptom::metric;
//! use rb_core::time::mins;
//! // seed §4 "Kafka backlog": lag above 5,000 for 2 minutes; clears only below 1,000
//! let backlog = metric("records_lag_max").max().above(5_000.0).for_at_least(mins(2)).clears_below(1_000.0);
//! # let _ = backlog;
//! ```

mod compose;
mod fact;
mod threshold;

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Debug;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::observation::{Facts, Labels, Name, Observation, Sample};
use crate::time::{human, Timestamp};

pub use compose::{all_of, any_of, AllOf, AnyOf};
pub use fact::{
    alert_firing, alert_matching, fact_rule, manual_report, AlertFiring, AlertMatching, FactRule,
    ManualReportFiled, ALERT_MEMORY,
};
pub use threshold::{metric, Aggregation, Comparison, DropBy, GaugeDrop, MetricQuery, Threshold};

/// The metric a finding violated, for the ITSM record: name, labels, value and threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolatedMetric {
    /// Metric name.
    pub name: String,
    /// Labels of the selector.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// How the value was computed (`max`, `increase over 10m`).
    pub aggregation: String,
    /// The observed value.
    pub value: f64,
    /// `>` / `<` / `>=` / `<=`.
    pub comparison: String,
    /// The threshold crossed.
    pub threshold: f64,
}

/// What a firing symptom found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The symptom's name.
    pub symptom: String,
    /// One line for a human.
    pub summary: String,
    /// Since when the condition has held.
    pub since: Timestamp,
    /// The violated metric, for threshold symptoms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violated: Option<ViolatedMetric>,
    /// Further evidence lines (the DN node, the schema error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// The **offending series**: the labels of the samples that violated (connector, job, node, group,
    /// partition), worst first. Remediations read what broke from here (through
    /// [`crate::ActionContext::label`]), never from a name written into the playbook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offending: Vec<Labels>,
}

impl Finding {
    /// A finding of `symptom` with a one-line `summary`, holding since `since`.
    pub fn new(symptom: impl Into<String>, summary: impl Into<String>, since: Timestamp) -> Self {
        Self {
            symptom: symptom.into(),
            summary: summary.into(),
            since,
            violated: None,
            evidence: Vec::new(),
            offending: Vec::new(),
        }
    }

    /// Name an offending series (the labels of what broke).
    pub fn offending(mut self, labels: Labels) -> Self {
        self.offending.push(labels);
        self
    }

    /// The value of label `name` in the first offending series that has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.offending
            .iter()
            .find_map(|l| l.get(name))
            .map(String::as_str)
    }
}

/// The judgement of a symptom at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Healthy, on data that was seen.
    Ok,
    /// The condition holds since `since` but not yet for the required duration.
    Pending {
        /// Since when the condition holds.
        since: Timestamp,
        /// How long it must hold to fire.
        needed: Duration,
    },
    /// The symptom fires.
    Firing(Finding),
    /// Not enough data to judge.
    Unknown {
        /// Why.
        why: String,
    },
    /// Never evaluated.
    #[default]
    Unevaluated,
}

impl Verdict {
    /// Whether the verdict is firing.
    pub fn is_firing(&self) -> bool {
        matches!(self, Verdict::Firing(_))
    }

    /// Whether the verdict is a plain ok (not pending, not unknown).
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }

    /// Whether the verdict is unknown (or never evaluated).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Verdict::Unknown { .. } | Verdict::Unevaluated)
    }

    /// Short label: `ok`, `pending`, `firing`, `unknown`, `unevaluated`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Pending { .. } => "pending",
            Verdict::Firing(_) => "firing",
            Verdict::Unknown { .. } => "unknown",
            Verdict::Unevaluated => "unevaluated",
        }
    }

    /// An unknown verdict.
    pub fn unknown(why: impl Into<String>) -> Self {
        Verdict::Unknown { why: why.into() }
    }
}

/// A probe failure as kept in history (the error itself is not `Clone`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The class of failure.
    pub kind: ErrorKind,
    /// The error's message.
    pub message: String,
}

/// One entry of a binding's history: an observation or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the observation was attempted.
    pub at: Timestamp,
    /// What came of it.
    pub result: Result<Observation, Failure>,
}

/// The recent history of one detect binding, newest last, bounded in age and length.
#[derive(Debug, Clone)]
pub struct History {
    records: VecDeque<Record>,
    max_age: Duration,
    max_len: usize,
}

impl History {
    /// An empty history keeping records up to `max_age` old, at most `max_len` of them.
    pub fn new(max_age: Duration, max_len: usize) -> Self {
        Self {
            // room for a full history (and the record pushed before the oldest is dropped) made once,
            // not grown by doubling past it; a long history grows as it fills
            records: VecDeque::with_capacity(max_len.clamp(2, 64) + 1),
            max_age,
            max_len: max_len.max(2),
        }
    }

    /// Append a record and drop what is too old (always keeping the newest two).
    ///
    /// A history holds a record for its whole age, so a record's samples are kept without spare
    /// room (a probe's `Vec` of samples grows by doubling).
    ///
    /// Consecutive observations of one probe share the probe's and the target's [`Name`]s: the new
    /// record takes the newest record's when they are equal, so a history keeps each name once.
    pub fn push(&mut self, mut record: Record) {
        if let Ok(o) = &mut record.result {
            if o.samples.capacity() > o.samples.len() {
                o.samples.shrink_to_fit();
            }
            if let Some(Ok(prev)) = self.records.back().map(|r| &r.result) {
                share(&mut o.probe, &prev.probe);
                share(&mut o.target, &prev.target);
            }
        }
        let now = record.at;
        self.records.push_back(record);
        while self.records.len() > self.max_len {
            self.records.pop_front();
        }
        while self.records.len() > 2
            && self
                .records
                .front()
                .map(|r| now.since(r.at) > self.max_age)
                .unwrap_or(false)
        {
            self.records.pop_front();
        }
    }

    /// Records, oldest first.
    pub fn records(&self) -> impl DoubleEndedIterator<Item = &Record> + ExactSizeIterator {
        self.records.iter()
    }

    /// Record `i` (0 = oldest).
    pub fn get(&self, i: usize) -> Option<&Record> {
        self.records.get(i)
    }

    /// Records in an index range, oldest first.
    pub fn range<R: std::ops::RangeBounds<usize>>(
        &self,
        r: R,
    ) -> impl DoubleEndedIterator<Item = &Record> {
        self.records.range(r)
    }

    /// The newest record.
    pub fn latest(&self) -> Option<&Record> {
        self.records.back()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Grow the kept age to at least `age` (a symptom needing a long window asks for it).
    pub fn ensure_max_age(&mut self, age: Duration) {
        self.max_age = self.max_age.max(age);
    }
}

/// Make `name` share `kept`'s text when they are equal.
fn share(name: &mut Name, kept: &Name) {
    if !name.shares(kept) && name == kept {
        *name = kept.clone();
    }
}

/// The state the engine keeps for one symptom (and, for composites, its children).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymptomState {
    /// The verdict of the previous evaluation (drives hysteresis).
    pub previous: Verdict,
    /// States of child symptoms.
    pub children: Vec<SymptomState>,
}

/// What a symptom evaluates.
#[derive(Debug)]
pub struct EvalContext<'a> {
    /// The binding's history, newest last.
    pub history: &'a History,
    /// Now.
    pub now: Timestamp,
    /// This symptom's state; [`evaluate`] stores the new verdict in it.
    pub state: &'a mut SymptomState,
}

/// A judgement over the history of observations. Implementations are pure functions of their
/// [`EvalContext`]: the engine keeps the state, so one symptom value can serve many bindings.
pub trait Symptom: Send + Sync + Debug {
    /// A name for reports (`records_lag_max > 5000 for 2m`).
    fn name(&self) -> String;

    /// Judge the history. Do not store the verdict yourself: [`evaluate`] does.
    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict;

    /// How much history this symptom needs (for-durations, windows); the engine keeps at least that.
    fn lookback(&self) -> Duration {
        Duration::ZERO
    }

    /// What this symptom reads of an observation (metric names, fact kinds): the engine keeps only
    /// that in a binding's history. Defaults to everything; the library's symptoms say what they read.
    fn reads(&self) -> Reads {
        Reads::everything()
    }
}

/// What a symptom reads of an observation: the metric names and the fact kinds, or everything. A
/// binding's history keeps only what its symptoms read ([`Reads::project`]), not whole observations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    /// The metric names read (`None`: every sample).
    pub metrics: Option<BTreeSet<String>>,
    /// The fact kinds read (`None`: every fact).
    pub facts: Option<BTreeSet<String>>,
}

impl Default for Reads {
    fn default() -> Self {
        Self::everything()
    }
}

impl Reads {
    /// Every sample and every fact (what a symptom that does not say reads).
    pub fn everything() -> Self {
        Self {
            metrics: None,
            facts: None,
        }
    }

    /// No sample and no fact (only whether the observation came, complete or not).
    pub fn nothing() -> Self {
        Self {
            metrics: Some(BTreeSet::new()),
            facts: Some(BTreeSet::new()),
        }
    }

    /// The samples of metric `name`, and no fact.
    pub fn metric(name: impl Into<String>) -> Self {
        let mut r = Self::nothing();
        r.metrics = Some(BTreeSet::from([name.into()]));
        r
    }

    /// The facts of kind `kind`, and no sample.
    pub fn fact(kind: impl Into<String>) -> Self {
        let mut r = Self::nothing();
        r.facts = Some(BTreeSet::from([kind.into()]));
        r
    }

    /// What either reads.
    pub fn union(self, other: Reads) -> Self {
        fn both(
            a: Option<BTreeSet<String>>,
            b: Option<BTreeSet<String>>,
        ) -> Option<BTreeSet<String>> {
            let (mut a, b) = (a?, b?);
            a.extend(b);
            Some(a)
        }
        Self {
            metrics: both(self.metrics, other.metrics),
            facts: both(self.facts, other.facts),
        }
    }

    /// Whether a sample of metric `name` is read.
    pub fn reads_metric(&self, name: &str) -> bool {
        self.metrics.as_ref().is_none_or(|m| m.contains(name))
    }

    /// Whether a fact of kind `kind` is read.
    pub fn reads_fact(&self, kind: &str) -> bool {
        self.facts.as_ref().is_none_or(|f| f.contains(kind))
    }

    /// Drop from `obs` what is not read (its time, completeness and gaps stay).
    pub fn project(&self, obs: &mut Observation) {
        if self.metrics.is_some() {
            obs.samples.retain(|s| self.reads_metric(&s.name));
        }
        if self.facts.is_some() {
            obs.facts.retain_kinds(|k| self.reads_fact(k));
        }
    }

    /// Move out of `obs` what is not read, and return it (the samples and facts left out; moved, not
    /// copied): `obs` keeps what a history needs, the rest can still serve as evidence.
    pub fn split(&self, obs: &mut Observation) -> (Vec<Sample>, Facts) {
        let mut rest = Vec::new();
        if self.metrics.is_some() && obs.samples.iter().any(|s| !self.reads_metric(&s.name)) {
            let (read, unread) = std::mem::take(&mut obs.samples)
                .into_iter()
                .partition(|s| self.reads_metric(&s.name));
            obs.samples = read;
            rest = unread;
        }
        let facts = if self.facts.is_some() && !obs.facts.is_empty() {
            obs.facts.split_off_kinds(|k| self.reads_fact(k))
        } else {
            Facts::default()
        };
        (rest, facts)
    }
}

impl<S: Symptom + ?Sized> Symptom for Box<S> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        (**self).evaluate(ctx)
    }
    fn lookback(&self) -> Duration {
        (**self).lookback()
    }
    fn reads(&self) -> Reads {
        (**self).reads()
    }
}

impl<S: Symptom + ?Sized> Symptom for std::sync::Arc<S> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        (**self).evaluate(ctx)
    }
    fn lookback(&self) -> Duration {
        (**self).lookback()
    }
    fn reads(&self) -> Reads {
        (**self).reads()
    }
}

/// Evaluate `symptom` and remember the verdict in `state` (what the engine calls).
pub fn evaluate(
    symptom: &dyn Symptom,
    history: &History,
    now: Timestamp,
    state: &mut SymptomState,
) -> Verdict {
    let verdict = {
        let mut ctx = EvalContext {
            history,
            now,
            state: &mut *state,
        };
        symptom.evaluate(&mut ctx)
    };
    state.previous = verdict.clone();
    verdict
}

/// Whether a condition holds on one record: the answer a [`streak`] condition gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Holds {
    /// The condition holds on this record.
    Yes,
    /// It does not.
    No,
    /// The record cannot be judged (a failed probe, a missing metric or fact): why.
    Unknown(String),
}

/// The outcome of walking back a [`streak`].
#[derive(Debug, Clone, PartialEq)]
pub enum Streak {
    /// The newest record cannot be judged: why.
    Unknown(String),
    /// The condition does not hold on the newest record.
    Broken,
    /// The condition holds since this record's time (the oldest of the unbroken run).
    Since(Timestamp),
}

/// Walk back from the newest record while `cond` holds (it is given the record's index, 0 = oldest,
/// and the record). An unknown record in the middle ends the run (the condition cannot be said to
/// have held through it); an unknown newest record makes the streak [`Streak::Unknown`].
///
/// The building blocks [`streak`], [`streak_verdict`], [`usable`] and [`for_suffix`] are what the
/// library's own symptoms are made of; a symptom written in another crate uses them the same way.
/// Here, "a node is down for 2 minutes" over a typed fact:
///
/// ```
/// use std::time::Duration;
/// use rb_core::symptom::{
///     for_suffix, streak, streak_verdict, usable, EvalContext, Finding, Holds, Symptom, Verdict,
/// };
/// use rb_core::time::mins;
/// use rb_core::FactType;
///
/// #[derive(serde::Serialize, serde::Deserialize, Clone)]
/// struct Ring { down: Vec<String> }
/// impl FactType for Ring { const KIND: &'static str = "example.ring"; }
///
/// #[derive(Debug)]
/// struct NodeDown { for_at_least: Duration }
///
/// impl Symptom for NodeDown {
///     fn name(&self) -> String {
///         format!("a node is down{}", for_suffix(self.for_at_least))
///     }
///     fn lookback(&self) -> Duration {
///         self.for_at_least
///     }
///     fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
///         let mut newest_down = None;
///         let s = streak(ctx.history, |_, rec| {
///             // a failed probe or an incomplete observation cannot be judged
///             let obs = match usable(rec) {
///                 Ok(o) => o,
///                 Err(why) => return Holds::Unknown(why),
///             };
///             match obs.facts.get::<Ring>() {
///                 Some(Ok(r)) if !r.down.is_empty() => {
///                     newest_down.get_or_insert(r.down.join(", "));
///                     Holds::Yes
///                 }
///                 Some(Ok(_)) => Holds::No,
///                 _ => Holds::Unknown("no ring".into()),
///             }
///         });
///         streak_verdict(s, ctx.now, self.for_at_least, |since| {
///             Finding::new(self.name(), format!("down: {}", newest_down.clone().unwrap_or_default()), since)
///         })
///     }
/// }
///
/// // judged over a history the way the engine does it
/// use rb_core::symptom::{evaluate, History, Record, SymptomState};
/// use rb_core::{time::Timestamp, Observation};
/// let mut h = History::new(mins(10), 100);
/// let mut st = SymptomState::default();
/// let rule = NodeDown { for_at_least: mins(2) };
/// for (i, down) in [vec![], vec!["dc1-n3".to_string()], vec!["dc1-n3".to_string()]].into_iter().enumerate() {
///     let at = Timestamp(i as u64 * 60_000);
///     let obs = Observation::new("ring", "cassandra", at).fact(&Ring { down });
///     h.push(Record { at, result: Ok(obs) });
/// }
/// // down since the second minute: pending for 1 of 2 minutes
/// assert!(matches!(evaluate(&rule, &h, Timestamp(120_000), &mut st), Verdict::Pending { .. }));
/// assert!(evaluate(&rule, &h, Timestamp(180_000), &mut st).is_firing());
/// ```
pub fn streak(history: &History, mut cond: impl FnMut(usize, &Record) -> Holds) -> Streak {
    let n = history.len();
    let mut since = None;
    for (i, rec) in history.records().enumerate().rev() {
        match cond(i, rec) {
            Holds::Yes => since = Some(rec.at),
            Holds::No => break,
            Holds::Unknown(why) => {
                if i + 1 == n {
                    return Streak::Unknown(why);
                }
                break;
            }
        }
    }
    match since {
        Some(t) => Streak::Since(t),
        None => Streak::Broken,
    }
}

/// Turn a [`Streak`] into a verdict with a for-duration: unknown stays unknown, broken is ok, a run
/// shorter than `for_at_least` is pending, a long enough one fires with `finding(since)`.
pub fn streak_verdict(
    s: Streak,
    now: Timestamp,
    for_at_least: Duration,
    finding: impl FnOnce(Timestamp) -> Finding,
) -> Verdict {
    match s {
        Streak::Unknown(why) => Verdict::Unknown { why },
        Streak::Broken => Verdict::Ok,
        Streak::Since(since) => {
            if now.since(since) >= for_at_least {
                Verdict::Firing(finding(since))
            } else {
                Verdict::Pending {
                    since,
                    needed: for_at_least,
                }
            }
        }
    }
}

/// The observation of a record, or why it cannot be used: a failed probe or an incomplete observation
/// is never judged (a symptom answers [`Holds::Unknown`] with this text).
pub fn usable(rec: &Record) -> Result<&Observation, String> {
    match &rec.result {
        Err(f) => Err(format!("probe failed ({}): {}", f.kind, f.message)),
        Ok(o) if !o.complete => Err(format!("incomplete observation: {}", o.gaps.join("; "))),
        Ok(o) => Ok(o),
    }
}

/// The suffix of a symptom's name for its for-duration: ` for 2m`, or nothing for zero.
pub fn for_suffix(d: Duration) -> String {
    if d.is_zero() {
        String::new()
    } else {
        format!(" for {}", human(d))
    }
}

#[cfg(test)]
mod tests;
