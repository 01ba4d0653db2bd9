//! Typed predicates over facts, pushed alerts and manual reports.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::{
    for_suffix, streak, streak_verdict, usable, EvalContext, Finding, Holds, Symptom, Verdict,
};
use crate::matcher::{Matcher, Matchers};
use crate::observation::facts::{Alert, ManualReport};
use crate::observation::FactType;
use crate::time::{human, Timestamp};

type Pred<T> = dyn Fn(&T) -> Option<String> + Send + Sync;
type ClearPred<T> = dyn Fn(&T) -> bool + Send + Sync;

/// A typed predicate over one kind of fact: fires when the predicate returns evidence (`Some(line)`),
/// ok when it returns `None`, unknown when the fact is missing or does not decode. With
/// [`FactRule::clears_when`], a firing rule clears only when its clear condition holds (hysteresis).
pub struct FactRule<T> {
    name: String,
    pred: Box<Pred<T>>,
    clear: Option<Box<ClearPred<T>>>,
    for_at_least: Duration,
    clear_for: Duration,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for FactRule<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactRule")
            .field("name", &self.name)
            .field("for_at_least", &self.for_at_least)
            .field("clears_when", &self.clear.is_some())
            .field("clear_for", &self.clear_for)
            .finish()
    }
}

/// A rule named `name` over facts of type `T`.
///
/// ```
/// use rb_core::{FactType, symptom::fact_rule};
/// #[derive(serde::Serialize, serde::Deserialize, Clone)]
/// struct Ring { down: Vec<String> }
/// impl FactType for Ring { const KIND: &'static str = "example.ring"; }
/// let node_down = fact_rule::<Ring>("a Cassandra node is DN", |r| {
///     (!r.down.is_empty()).then(|| format!("DN: {}", r.down.join(", ")))
/// });
/// # let _ = node_down;
/// ```
pub fn fact_rule<T: FactType + 'static>(
    name: impl Into<String>,
    pred: impl Fn(&T) -> Option<String> + Send + Sync + 'static,
) -> FactRule<T> {
    FactRule {
        name: name.into(),
        pred: Box::new(pred),
        clear: None,
        for_at_least: Duration::ZERO,
        clear_for: Duration::ZERO,
        _t: PhantomData,
    }
}

impl<T> FactRule<T> {
    /// Fire only once the predicate has held for `d`.
    pub fn for_at_least(mut self, d: Duration) -> Self {
        self.for_at_least = d;
        self
    }

    /// Hysteresis: once firing, the rule clears only when `clear` holds on the fact (instead of as soon
    /// as the fire predicate stops returning evidence). In between it keeps firing; a missing fact is
    /// unknown, as ever.
    ///
    /// ```
    /// use rb_core::{FactType, symptom::fact_rule};
    /// #[derive(serde::Serialize, serde::Deserialize, Clone)]
    /// struct Group { lag: u64 }
    /// impl FactType for Group { const KIND: &'static str = "example.group"; }
    /// // fire above 5,000; clear only once back under 1,000
    /// let backlog = fact_rule::<Group>("consumer backlog", |g| (g.lag > 5_000).then(|| format!("lag {}", g.lag)))
    ///     .clears_when(|g| g.lag < 1_000);
    /// # let _ = backlog;
    /// ```
    pub fn clears_when(mut self, clear: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.clear = Some(Box::new(clear));
        self
    }

    /// Once firing, clear only after the clear condition (the one of [`FactRule::clears_when`], or the
    /// predicate returning no evidence) has held for `d`.
    pub fn clears_after(mut self, d: Duration) -> Self {
        self.clear_for = d;
        self
    }
}

impl<T: FactType + 'static> FactRule<T> {
    /// The fact of a record, or why there is none.
    fn fact(rec: &super::Record) -> Result<T, String> {
        let obs = usable(rec)?;
        match obs.facts.get::<T>() {
            None => Err(format!("fact {} absent from {}", T::KIND, obs.probe)),
            Some(Err(e)) => Err(format!("fact {} malformed: {e}", T::KIND)),
            Some(Ok(fact)) => Ok(fact),
        }
    }
}

impl<T: FactType + 'static> Symptom for FactRule<T> {
    fn name(&self) -> String {
        format!("{}{}", self.name, for_suffix(self.for_at_least))
    }

    fn lookback(&self) -> Duration {
        self.for_at_least.max(self.clear_for)
    }

    fn reads(&self) -> super::Reads {
        super::Reads::fact(T::KIND)
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        if ctx.history.is_empty() {
            return Verdict::unknown("no observation yet");
        }
        if let Verdict::Firing(prev) = &ctx.state.previous {
            if self.clear.is_some() || !self.clear_for.is_zero() {
                let mut newest_evidence = None;
                let s = streak(ctx.history, |_, rec| match Self::fact(rec) {
                    Err(why) => Holds::Unknown(why),
                    Ok(fact) => {
                        let ev = (self.pred)(&fact);
                        let cleared = match &self.clear {
                            Some(clear) => clear(&fact),
                            None => ev.is_none(),
                        };
                        if newest_evidence.is_none() {
                            newest_evidence = Some(ev);
                        }
                        if cleared {
                            Holds::Yes
                        } else {
                            Holds::No
                        }
                    }
                });
                return match streak_verdict(s, ctx.now, self.clear_for, |_| prev.clone()) {
                    // cleared, long enough
                    Verdict::Firing(_) => Verdict::Ok,
                    // not cleared yet: still firing, with the newest evidence when there is some
                    Verdict::Ok | Verdict::Pending { .. } => {
                        let mut f = prev.clone();
                        if let Some(Some(ev)) = newest_evidence {
                            f.summary = ev.clone();
                            f.evidence = vec![ev];
                        }
                        Verdict::Firing(f)
                    }
                    other => other,
                };
            }
        }
        let mut latest_evidence = None;
        let s = streak(ctx.history, |_, rec| match Self::fact(rec) {
            Err(why) => Holds::Unknown(why),
            Ok(fact) => match (self.pred)(&fact) {
                Some(ev) => {
                    if latest_evidence.is_none() {
                        latest_evidence = Some(ev);
                    }
                    Holds::Yes
                }
                None => Holds::No,
            },
        });
        streak_verdict(s, ctx.now, self.for_at_least, |since| Finding {
            symptom: self.name(),
            summary: latest_evidence.clone().unwrap_or_else(|| self.name.clone()),
            since,
            violated: None,
            evidence: latest_evidence.into_iter().collect(),
            offending: Vec::new(),
        })
    }
}

/// Fires while any pushed alert instance named `name` is firing; ok once every one is resolved.
/// The same as [`alert_matching`] with `alertname="name"`.
#[derive(Debug, Clone)]
pub struct AlertFiring {
    name: String,
    inner: AlertMatching,
}

/// A symptom for an Alertmanager alert (pushed through [`crate::Signal`]): judged per alert instance
/// (fingerprint), as [`alert_matching`] with the matcher `alertname="name"`.
pub fn alert_firing(name: impl Into<String>) -> AlertFiring {
    let name = name.into();
    AlertFiring {
        inner: alert_matching(Matchers::from(Matcher::equal("alertname", name.clone()))),
        name,
    }
}

impl AlertFiring {
    /// Forget an instance not heard of for `d` (see [`AlertMatching::remember_for`]).
    pub fn remember_for(mut self, d: Duration) -> Self {
        self.inner = self.inner.remember_for(d);
        self
    }
}

impl Symptom for AlertFiring {
    fn name(&self) -> String {
        format!("alert {} firing", self.name)
    }

    fn lookback(&self) -> Duration {
        self.inner.lookback()
    }

    fn reads(&self) -> super::Reads {
        super::Reads::fact(Alert::KIND)
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        match self.inner.judge(ctx) {
            Verdict::Firing(mut f) => {
                f.symptom = self.name();
                Verdict::Firing(f)
            }
            other => other,
        }
    }
}

/// Fires while at least one pushed alert instance whose labels match the [`Matchers`] is firing and
/// not silenced. Build it with [`alert_matching`].
#[derive(Debug, Clone)]
pub struct AlertMatching {
    matchers: Matchers,
    remember: Duration,
}

/// How long an alert instance is remembered by default: Alertmanager re-sends a firing alert every
/// `repeat_interval` (4 h by default), so an instance still firing is heard of again within that.
pub const ALERT_MEMORY: Duration = Duration::from_secs(4 * 3600 + 15 * 60);

/// A symptom over pushed Alertmanager alerts selected by label matchers, the way an Alertmanager route
/// selects them. Each alert **instance** (its fingerprint: one connector, one job) is judged on its own
/// newest state:
///
/// - firing when at least one matching instance is firing and not silenced (the finding lists the
///   firing instances and dates from the earliest of them);
/// - ok when every matching instance heard of is resolved or silenced;
/// - unknown when no matching alert was received (within [`AlertMatching::remember_for`]).
///
/// A resolved `orders-2` does not hide a still firing `orders-1`, and the other way round.
///
/// ```
/// use rb_core::symptom::alert_matching;
/// let connect = alert_matching(r#"alertname="KafkaConnectFailed", connector=~"orders-.*""#.parse().unwrap());
/// # let _ = connect;
/// ```
pub fn alert_matching(matchers: Matchers) -> AlertMatching {
    AlertMatching {
        matchers,
        remember: ALERT_MEMORY,
    }
}

impl AlertMatching {
    /// Forget an instance not heard of for `d` (default [`ALERT_MEMORY`]; set it above the route's
    /// `repeat_interval`).
    pub fn remember_for(mut self, d: Duration) -> Self {
        self.remember = d;
        self
    }

    /// The matchers.
    pub fn matchers(&self) -> &Matchers {
        &self.matchers
    }

    fn judge(&self, ctx: &EvalContext<'_>) -> Verdict {
        // newest state of each matching instance, and since when it has been firing without a break
        struct Instance {
            alert: Alert,
            firing_since: Timestamp,
        }
        let mut instances: BTreeMap<String, Instance> = BTreeMap::new();
        let horizon = ctx
            .now
            .as_millis()
            .saturating_sub(self.remember.as_millis() as u64);
        for rec in ctx.history.records() {
            if rec.at.as_millis() < horizon {
                continue;
            }
            let Ok(obs) = &rec.result else { continue };
            let Some(Ok(mut alert)) = obs.facts.get::<Alert>() else {
                continue;
            };
            alert
                .labels
                .entry("alertname".to_string())
                .or_insert_with(|| alert.name.clone());
            if !self.matchers.matches(&alert.labels) {
                continue;
            }
            let key = if alert.fingerprint.is_empty() {
                Matchers::from_iter(
                    alert
                        .labels
                        .iter()
                        .map(|(k, v)| Matcher::equal(k.clone(), v.clone())),
                )
                .to_string()
            } else {
                alert.fingerprint.clone()
            };
            let firing_since = match instances.get(&key) {
                Some(prev) if prev.alert.is_firing() && alert.is_firing() => prev.firing_since,
                _ => rec.at,
            };
            instances.insert(
                key,
                Instance {
                    alert,
                    firing_since,
                },
            );
        }
        if instances.is_empty() {
            return Verdict::unknown(format!(
                "no alert matching {} received in the last {}",
                self.matchers,
                human(self.remember)
            ));
        }
        let firing: Vec<(&String, &Instance)> = instances
            .iter()
            .filter(|(_, i)| i.alert.is_firing() && !i.alert.is_silenced())
            .collect();
        let Some(since) = firing.iter().map(|(_, i)| i.firing_since).min() else {
            return Verdict::Ok;
        };
        let newest = firing
            .iter()
            .max_by_key(|(_, i)| i.firing_since)
            .map(|(_, i)| &i.alert);
        let summary = newest
            .and_then(|a| {
                a.annotations
                    .get("summary")
                    .or_else(|| a.annotations.get("description"))
                    .cloned()
            })
            .unwrap_or_else(|| format!("alert matching {} firing", self.matchers));
        let summary = if firing.len() > 1 {
            format!("{summary} (and {} more firing)", firing.len() - 1)
        } else {
            summary
        };
        const SHOWN: usize = 10;
        let mut evidence: Vec<String> = firing
            .iter()
            .take(SHOWN)
            .map(|(fp, i)| {
                let labels: Vec<String> = i
                    .alert
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("{fp}: {}", labels.join(", "))
            })
            .collect();
        if firing.len() > SHOWN {
            evidence.push(format!("… and {} more firing", firing.len() - SHOWN));
        }
        Verdict::Firing(Finding {
            symptom: self.name(),
            summary,
            since,
            violated: None,
            evidence,
            offending: firing
                .iter()
                .take(SHOWN)
                .map(|(_, i)| i.alert.labels.clone())
                .collect(),
        })
    }
}

impl Symptom for AlertMatching {
    fn name(&self) -> String {
        format!("alert {} firing", self.matchers)
    }

    fn lookback(&self) -> Duration {
        self.remember
    }

    fn reads(&self) -> super::Reads {
        super::Reads::fact(Alert::KIND)
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        self.judge(ctx)
    }
}

/// Fires on a manual report (a ticket): a human saw something; the engine opens an incident.
#[derive(Debug, Clone, Default)]
pub struct ManualReportFiled;

/// A symptom for manual reports pushed through [`crate::Signal::manual`].
pub fn manual_report() -> ManualReportFiled {
    ManualReportFiled
}

impl Symptom for ManualReportFiled {
    fn name(&self) -> String {
        "manual report".to_string()
    }

    fn reads(&self) -> super::Reads {
        super::Reads::fact(ManualReport::KIND)
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        let Some(rec) = ctx.history.latest() else {
            return Verdict::unknown("no report");
        };
        match &rec.result {
            Ok(o) => match o.facts.get::<ManualReport>() {
                Some(Ok(r)) => Verdict::Firing(Finding {
                    symptom: self.name(),
                    summary: format!("ticket {} by {}: {}", r.ticket, r.reporter, r.summary),
                    since: rec.at,
                    violated: None,
                    offending: Vec::new(),
                    evidence: vec![r.summary],
                }),
                _ => Verdict::unknown("no manual report in the newest record"),
            },
            Err(f) => Verdict::unknown(f.message.clone()),
        }
    }
}
