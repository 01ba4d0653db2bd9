//! Metric thresholds: instant values, increases and rates, with for-duration and hysteresis.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    for_suffix, streak, streak_verdict, usable, EvalContext, Finding, History, Holds, Symptom,
    Verdict, ViolatedMetric,
};
use crate::observation::{Labels, Observation};
use crate::time::human;

/// How the samples a selector matches become one value (in a file: `"max"`, `"sum"`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// The largest value (the default: "any series over the threshold").
    Max,
    /// The smallest value.
    Min,
    /// The sum.
    Sum,
    /// The mean.
    Avg,
    /// How many series matched.
    Count,
}

impl Aggregation {
    fn apply(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        Some(match self {
            Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregation::Sum => values.iter().sum(),
            Aggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Aggregation::Count => values.len() as f64,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Aggregation::Max => "max",
            Aggregation::Min => "min",
            Aggregation::Sum => "sum",
            Aggregation::Avg => "avg",
            Aggregation::Count => "count",
        }
    }
}

/// A comparison against a threshold (in a file: `{"above": 5000}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// `value > t`
    Above(f64),
    /// `value < t`
    Below(f64),
    /// `value >= t`
    AtLeast(f64),
    /// `value <= t`
    AtMost(f64),
}

impl Comparison {
    /// Whether `v` satisfies the comparison.
    pub fn holds(self, v: f64) -> bool {
        match self {
            Comparison::Above(t) => v > t,
            Comparison::Below(t) => v < t,
            Comparison::AtLeast(t) => v >= t,
            Comparison::AtMost(t) => v <= t,
        }
    }

    /// The opposite comparison (the default clear condition).
    pub fn negate(self) -> Comparison {
        match self {
            Comparison::Above(t) => Comparison::AtMost(t),
            Comparison::Below(t) => Comparison::AtLeast(t),
            Comparison::AtLeast(t) => Comparison::Below(t),
            Comparison::AtMost(t) => Comparison::Above(t),
        }
    }

    /// The operator.
    pub fn op(self) -> &'static str {
        match self {
            Comparison::Above(_) => ">",
            Comparison::Below(_) => "<",
            Comparison::AtLeast(_) => ">=",
            Comparison::AtMost(_) => "<=",
        }
    }

    /// The threshold.
    pub fn threshold(self) -> f64 {
        match self {
            Comparison::Above(t)
            | Comparison::Below(t)
            | Comparison::AtLeast(t)
            | Comparison::AtMost(t) => t,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Instant,
    Increase(Duration),
    Rate(Duration),
}

/// Selects samples of one metric and reduces them to a value. Start with [`metric`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    name: String,
    matchers: Labels,
    agg: Aggregation,
    mode: Mode,
}

/// Select samples of metric `name` (then narrow with labels, pick an aggregation, compare).
pub fn metric(name: impl Into<String>) -> MetricQuery {
    MetricQuery {
        name: name.into(),
        matchers: Labels::new(),
        agg: Aggregation::Max,
        mode: Mode::Instant,
    }
}

impl MetricQuery {
    /// Only samples with this label value.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.matchers.insert(key.into(), value.into());
        self
    }
    /// Reduce with max (the default).
    pub fn max(mut self) -> Self {
        self.agg = Aggregation::Max;
        self
    }
    /// Reduce with min.
    pub fn min(mut self) -> Self {
        self.agg = Aggregation::Min;
        self
    }
    /// Reduce with sum.
    pub fn sum(mut self) -> Self {
        self.agg = Aggregation::Sum;
        self
    }
    /// Reduce with the mean.
    pub fn avg(mut self) -> Self {
        self.agg = Aggregation::Avg;
        self
    }
    /// Count matching series.
    pub fn count(mut self) -> Self {
        self.agg = Aggregation::Count;
        self
    }
    /// Use the increase of the (counter) value over `window`, counting resets as Prometheus does.
    pub fn increase_over(mut self, window: Duration) -> Self {
        self.mode = Mode::Increase(window);
        self
    }
    /// Use the per-second rate of increase over `window`.
    pub fn rate_over(mut self, window: Duration) -> Self {
        self.mode = Mode::Rate(window);
        self
    }

    /// Fire when the value is above `t`.
    pub fn above(self, t: f64) -> Threshold {
        Threshold::new(self, Comparison::Above(t))
    }
    /// Fire when the value is below `t`.
    pub fn below(self, t: f64) -> Threshold {
        Threshold::new(self, Comparison::Below(t))
    }
    /// Fire when the value is at least `t`.
    pub fn at_least(self, t: f64) -> Threshold {
        Threshold::new(self, Comparison::AtLeast(t))
    }
    /// Fire when the value is at most `t`.
    pub fn at_most(self, t: f64) -> Threshold {
        Threshold::new(self, Comparison::AtMost(t))
    }

    /// A gauge drop: fire when the value falls by at least `n` from its highest point within the window
    /// ([`GaugeDrop::within`], 5 minutes by default). Unlike [`MetricQuery::increase_over`], which reads
    /// a fall as a counter reset, this is for gauges that should not fall suddenly (a connector count,
    /// live nodes).
    ///
    /// ```
    /// use rb_core::symptom::metric;
    /// use rb_core::time::mins;
    /// let lost = metric("kafka_connect_connectors").sum().drops_by(2.0).within(mins(5));
    /// # let _ = lost;
    /// ```
    pub fn drops_by(self, n: f64) -> GaugeDrop {
        GaugeDrop::new(self, DropBy::Absolute(n))
    }

    /// A gauge drop by at least `percent` % of its highest point within the window.
    pub fn drops_by_percent(self, percent: f64) -> GaugeDrop {
        GaugeDrop::new(self, DropBy::Percent(percent))
    }

    fn describe(&self) -> String {
        let sel = if self.matchers.is_empty() {
            self.name.clone()
        } else {
            let m: Vec<String> = self
                .matchers
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            format!("{}{{{}}}", self.name, m.join(","))
        };
        match self.mode {
            Mode::Instant => format!("{}({sel})", self.agg.label()),
            Mode::Increase(w) => format!("{}(increase({sel}[{}]))", self.agg.label(), human(w)),
            Mode::Rate(w) => format!("{}(rate({sel}[{}]))", self.agg.label(), human(w)),
        }
    }

    fn instant(&self, obs: &Observation) -> Result<f64, String> {
        // one pass, no allocation: this runs for every binding on every tick
        let (mut n, mut sum, mut min, mut max) = (0usize, 0.0f64, f64::INFINITY, f64::NEG_INFINITY);
        for s in obs.samples.iter() {
            if s.name != self.name
                || !self
                    .matchers
                    .iter()
                    .all(|(k, v)| s.labels.get(k) == Some(v))
            {
                continue;
            }
            if s.value.is_nan() {
                return Err(format!("{} has a NaN sample", self.name));
            }
            n += 1;
            sum += s.value;
            min = min.min(s.value);
            max = max.max(s.value);
        }
        if n == 0 {
            return Err(format!(
                "metric {} absent from {}",
                self.describe(),
                obs.probe
            ));
        }
        Ok(match self.agg {
            Aggregation::Max => max,
            Aggregation::Min => min,
            Aggregation::Sum => sum,
            Aggregation::Avg => sum / n as f64,
            Aggregation::Count => n as f64,
        })
    }

    /// The value at record `i` of `history`.
    fn value_at(&self, h: &History, i: usize) -> Result<f64, String> {
        let rec = h.get(i).ok_or_else(|| "no such record".to_string())?;
        let obs = usable(rec)?;
        match self.mode {
            Mode::Instant => self.instant(obs),
            Mode::Increase(_) | Mode::Rate(_) => {
                let per_series = self.windowed(h, i)?;
                let values: Vec<f64> = per_series.iter().map(|(_, v)| *v).collect();
                self.agg
                    .apply(&values)
                    .ok_or_else(|| format!("metric {} absent from the window", self.describe()))
            }
        }
    }

    /// Per-series increase (or rate) over the window ending at record `i`.
    fn windowed<'h>(&self, h: &'h History, i: usize) -> Result<Vec<(&'h Labels, f64)>, String> {
        let rec = h.get(i).ok_or_else(|| "no such record".to_string())?;
        let w = self.window();
        let start = rec.at.as_millis().saturating_sub(w.as_millis() as u64);
        let window: Vec<&Observation> = h
            .range(..=i)
            .filter(|r| r.at.as_millis() >= start)
            .filter_map(|r| usable(r).ok())
            .collect();
        if window.len() < 2 {
            return Err(format!(
                "not enough data for {} (need two observations within {})",
                self.describe(),
                human(w)
            ));
        }
        let span = window[window.len() - 1]
            .at
            .since(window[0].at)
            .as_secs_f64();
        if matches!(self.mode, Mode::Rate(_)) && span <= 0.0 {
            return Err("window spans no time".to_string());
        }
        let mut series: std::collections::BTreeMap<&Labels, Vec<f64>> = Default::default();
        for o in &window {
            for s in o.samples.iter().filter(|s| s.name == self.name) {
                if self.selects(&s.labels) {
                    series.entry(&s.labels).or_default().push(s.value);
                }
            }
        }
        Ok(series
            .into_iter()
            .filter(|(_, v)| v.len() >= 2)
            .map(|(l, v)| {
                let inc = v
                    .windows(2)
                    .map(|p| if p[1] >= p[0] { p[1] - p[0] } else { p[1] })
                    .sum::<f64>();
                match self.mode {
                    Mode::Rate(_) => (l, inc / span),
                    _ => (l, inc),
                }
            })
            .collect())
    }

    fn selects(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The offending series at record `i`: the selected series whose own value satisfies `cmp`, worst
    /// first, at most [`MAX_OFFENDING`]; when none does alone (a sum, a count), every selected series.
    fn offending_at(&self, h: &History, i: usize, cmp: Comparison) -> Vec<Labels> {
        let Some(obs) = h.get(i).and_then(|r| usable(r).ok()) else {
            return Vec::new();
        };
        let mut series: Vec<(&Labels, f64)> = match self.mode {
            Mode::Instant => obs
                .samples_named(&self.name)
                .filter(|s| self.selects(&s.labels))
                .map(|s| (&s.labels, s.value))
                .collect(),
            _ => self.windowed(h, i).unwrap_or_default(),
        };
        let violating: Vec<(&Labels, f64)> = series
            .iter()
            .filter(|(_, v)| cmp.holds(*v))
            .copied()
            .collect();
        if !violating.is_empty() {
            series = violating;
        }
        // worst first: largest for "above", smallest for "below"
        series.sort_by(|a, b| match cmp {
            Comparison::Above(_) | Comparison::AtLeast(_) => b.1.total_cmp(&a.1),
            Comparison::Below(_) | Comparison::AtMost(_) => a.1.total_cmp(&b.1),
        });
        series
            .into_iter()
            .filter(|(l, _)| !l.is_empty())
            .take(MAX_OFFENDING)
            .map(|(l, _)| l.clone())
            .collect()
    }

    fn window(&self) -> Duration {
        match self.mode {
            Mode::Instant => Duration::ZERO,
            Mode::Increase(w) | Mode::Rate(w) => w,
        }
    }
}

/// How many offending series a finding names at most (the worst ones).
pub const MAX_OFFENDING: usize = 10;

/// A threshold on a metric, with an optional for-duration and hysteresis. Build it with [`metric`].
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    query: MetricQuery,
    fire: Comparison,
    clear: Option<Comparison>,
    for_at_least: Duration,
    clear_for: Duration,
    name: Option<String>,
}

impl Threshold {
    fn new(query: MetricQuery, fire: Comparison) -> Self {
        Self {
            query,
            fire,
            clear: None,
            for_at_least: Duration::ZERO,
            clear_for: Duration::ZERO,
            name: None,
        }
    }

    /// Fire only once the condition has held continuously for `d`.
    pub fn for_at_least(mut self, d: Duration) -> Self {
        self.for_at_least = d;
        self
    }

    /// Hysteresis: once firing, clear only when the value is below `t` (instead of merely not above the
    /// fire threshold).
    pub fn clears_below(mut self, t: f64) -> Self {
        self.clear = Some(Comparison::Below(t));
        self
    }

    /// Hysteresis: once firing, clear only when the value is above `t`.
    pub fn clears_above(mut self, t: f64) -> Self {
        self.clear = Some(Comparison::Above(t));
        self
    }

    /// Once firing, clear only after the clear condition has held for `d`.
    pub fn clears_after(mut self, d: Duration) -> Self {
        self.clear_for = d;
        self
    }

    /// A custom name for reports.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    fn finding(&self, since: crate::time::Timestamp, value: f64, h: &History) -> Finding {
        let offending = h
            .len()
            .checked_sub(1)
            .map(|last| self.query.offending_at(h, last, self.fire))
            .unwrap_or_default();
        Finding {
            offending,
            symptom: self.name(),
            summary: format!(
                "{} = {} {} {}{}",
                self.query.describe(),
                fmt_num(value),
                self.fire.op(),
                fmt_num(self.fire.threshold()),
                for_suffix(self.for_at_least)
            ),
            since,
            violated: Some(ViolatedMetric {
                name: self.query.name.clone(),
                labels: self.query.matchers.clone(),
                aggregation: match self.query.mode {
                    Mode::Instant => self.query.agg.label().to_string(),
                    Mode::Increase(w) => {
                        format!("{} of increase over {}", self.query.agg.label(), human(w))
                    }
                    Mode::Rate(w) => {
                        format!("{} of rate over {}", self.query.agg.label(), human(w))
                    }
                },
                value,
                comparison: self.fire.op().to_string(),
                threshold: self.fire.threshold(),
            }),
            evidence: Vec::new(),
        }
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

impl Symptom for Threshold {
    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!(
                "{} {} {}{}",
                self.query.describe(),
                self.fire.op(),
                fmt_num(self.fire.threshold()),
                for_suffix(self.for_at_least)
            )
        })
    }

    fn lookback(&self) -> Duration {
        self.for_at_least.max(self.clear_for) + self.query.window()
    }

    fn reads(&self) -> super::Reads {
        super::Reads::metric(&self.query.name)
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        let h = ctx.history;
        let Some(last) = h.len().checked_sub(1) else {
            return Verdict::unknown("no observation yet");
        };
        let latest = match self.query.value_at(h, last) {
            Ok(v) => v,
            Err(why) => return Verdict::Unknown { why },
        };
        if let Verdict::Firing(prev) = &ctx.state.previous {
            let clear = self.clear.unwrap_or_else(|| self.fire.negate());
            let s = streak(h, |i, _| match self.query.value_at(h, i) {
                Ok(v) if clear.holds(v) => Holds::Yes,
                Ok(_) => Holds::No,
                Err(why) => Holds::Unknown(why),
            });
            return match streak_verdict(s, ctx.now, self.clear_for, |_| prev.clone()) {
                // the clear condition held long enough: ok
                Verdict::Firing(_) => Verdict::Ok,
                // not cleared (or not long enough): still firing, with the current value
                Verdict::Ok | Verdict::Pending { .. } => {
                    let mut f = self.finding(prev.since, latest, h);
                    f.evidence = prev.evidence.clone();
                    Verdict::Firing(f)
                }
                other => other,
            };
        }
        let s = streak(h, |i, _| match self.query.value_at(h, i) {
            Ok(v) if self.fire.holds(v) => Holds::Yes,
            Ok(_) => Holds::No,
            Err(why) => Holds::Unknown(why),
        });
        streak_verdict(s, ctx.now, self.for_at_least, |since| {
            self.finding(since, latest, h)
        })
    }
}

/// How much a gauge must fall (in a file: `{"absolute": 2}` or `{"percent": 20}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropBy {
    /// By at least this much.
    Absolute(f64),
    /// By at least this percentage of the highest value in the window.
    Percent(f64),
}

/// A sudden fall of a gauge: the newest value is at least N (or P %) below the highest value seen
/// within the window. Build it with [`MetricQuery::drops_by`] or [`MetricQuery::drops_by_percent`].
///
/// Unknown when the newest observation cannot be read, when fewer than two observations within the
/// window can, or when no drop is visible but some observation within the window could not be read
/// (the peak may be hidden in it). A drop seen between readable observations fires even so. The
/// symptom clears once the peak leaves the window.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeDrop {
    query: MetricQuery,
    by: DropBy,
    window: Duration,
    name: Option<String>,
}

impl GaugeDrop {
    fn new(query: MetricQuery, by: DropBy) -> Self {
        Self {
            query,
            by,
            window: Duration::from_secs(300),
            name: None,
        }
    }

    /// The window the fall must happen within (default 5 minutes).
    pub fn within(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// A custom name for reports.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    fn holds(&self, peak: f64, v: f64) -> bool {
        let fall = peak - v;
        match self.by {
            DropBy::Absolute(n) => fall >= n && fall > 0.0,
            DropBy::Percent(p) => peak > 0.0 && fall > 0.0 && fall / peak * 100.0 >= p,
        }
    }

    fn amount(&self) -> String {
        match self.by {
            DropBy::Absolute(n) => fmt_num(n),
            DropBy::Percent(p) => format!("{}%", fmt_num(p)),
        }
    }
}

impl Symptom for GaugeDrop {
    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!(
                "{} drops by {} within {}",
                self.query.describe(),
                self.amount(),
                human(self.window)
            )
        })
    }

    fn lookback(&self) -> Duration {
        self.window + self.query.window()
    }

    fn reads(&self) -> super::Reads {
        super::Reads::metric(&self.query.name)
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        let h = ctx.history;
        let Some(last) = h.len().checked_sub(1) else {
            return Verdict::unknown("no observation yet");
        };
        let Some(newest_at) = h.latest().map(|r| r.at) else {
            return Verdict::unknown("no observation yet");
        };
        let current = match self.query.value_at(h, last) {
            Ok(v) => v,
            Err(why) => return Verdict::Unknown { why },
        };
        let start = newest_at
            .as_millis()
            .saturating_sub(self.window.as_millis() as u64);
        let mut seen: Vec<(crate::time::Timestamp, f64)> = Vec::new();
        let mut unreadable: Option<String> = None;
        for (i, rec) in h.records().enumerate() {
            if rec.at.as_millis() < start {
                continue;
            }
            match self.query.value_at(h, i) {
                Ok(v) => seen.push((rec.at, v)),
                Err(why) => {
                    unreadable.get_or_insert(why);
                }
            }
        }
        if seen.len() < 2 {
            return Verdict::unknown(format!(
                "not enough data for {} (need two observations within {})",
                self.query.describe(),
                human(self.window)
            ));
        }
        // the highest point (its latest occurrence), then the first reading after it that is down
        // far enough: when the drop happened
        let mut peak_i = 0;
        for (i, (_, v)) in seen.iter().enumerate() {
            if *v >= seen[peak_i].1 {
                peak_i = i;
            }
        }
        let peak = seen[peak_i].1;
        if !self.holds(peak, current) {
            return match unreadable {
                Some(why) => Verdict::unknown(format!(
                    "no drop of {} visible but the window has an unreadable observation: {why}",
                    self.query.describe()
                )),
                None => Verdict::Ok,
            };
        }
        let since = seen[peak_i..]
            .iter()
            .find(|(_, v)| self.holds(peak, *v))
            .map(|(at, _)| *at)
            .unwrap_or(newest_at);
        let fall = peak - current;
        let percent = if peak > 0.0 { fall / peak * 100.0 } else { 0.0 };
        let (value, threshold, how) = match self.by {
            DropBy::Absolute(n) => (fall, n, "fall"),
            DropBy::Percent(p) => (percent, p, "fall in %"),
        };
        Verdict::Firing(Finding {
            offending: self
                .query
                .offending_at(h, last, Comparison::AtLeast(f64::NEG_INFINITY)),
            symptom: self.name(),
            summary: format!(
                "{} fell by {} ({percent:.0}%) within {}: from {} to {}",
                self.query.describe(),
                fmt_num(fall),
                human(self.window),
                fmt_num(peak),
                fmt_num(current)
            ),
            since,
            violated: Some(ViolatedMetric {
                name: self.query.name.clone(),
                labels: self.query.matchers.clone(),
                aggregation: format!(
                    "{} {how} within {}",
                    self.query.agg.label(),
                    human(self.window)
                ),
                value,
                comparison: ">=".to_string(),
                threshold,
            }),
            evidence: Vec::new(),
        })
    }
}
