//! Typed predicates over facts, pushed alerts and manual reports.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::{
    for_suffix, streak, streak_verdict, usable, EvalContext, Finding, Holds, Symptom, Verdict,
};
use crate::observation::facts::{Alert, ManualReport};
use crate::observation::FactType;

type Pred<T> = dyn Fn(&T) -> Option<String> + Send + Sync;

/// A typed predicate over one kind of fact: fires when the predicate returns evidence (`Some(line)`),
/// ok when it returns `None`, unknown when the fact is missing or does not decode.
pub struct FactRule<T> {
    name: String,
    pred: Box<Pred<T>>,
    for_at_least: Duration,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for FactRule<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactRule")
            .field("name", &self.name)
            .field("for_at_least", &self.for_at_least)
            .finish()
    }
}

/// A rule named `name` over facts of type `T`.
///
/// ```
/// use rb_core::{FactType, symptom::fact_rule};
/// #[derive(serde::Serialize, serde::Deserialize)]
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
        for_at_least: Duration::ZERO,
        _t: PhantomData,
    }
}

impl<T> FactRule<T> {
    /// Fire only once the predicate has held for `d`.
    pub fn for_at_least(mut self, d: Duration) -> Self {
        self.for_at_least = d;
        self
    }
}

impl<T: FactType + 'static> Symptom for FactRule<T> {
    fn name(&self) -> String {
        format!("{}{}", self.name, for_suffix(self.for_at_least))
    }

    fn lookback(&self) -> Duration {
        self.for_at_least
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        if ctx.history.is_empty() {
            return Verdict::unknown("no observation yet");
        }
        let mut latest_evidence = None;
        let s = streak(ctx.history, |_, rec| {
            let obs = match usable(rec) {
                Ok(o) => o,
                Err(why) => return Holds::Unknown(why),
            };
            match obs.facts.get::<T>() {
                None => Holds::Unknown(format!("fact {} absent from {}", T::KIND, obs.probe)),
                Some(Err(e)) => Holds::Unknown(format!("fact {} malformed: {e}", T::KIND)),
                Some(Ok(fact)) => match (self.pred)(&fact) {
                    Some(ev) => {
                        if latest_evidence.is_none() {
                            latest_evidence = Some(ev);
                        }
                        Holds::Yes
                    }
                    None => Holds::No,
                },
            }
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

/// Fires while the newest pushed alert named `name` is firing; ok once it is resolved.
#[derive(Debug, Clone)]
pub struct AlertFiring {
    name: String,
}

/// A symptom for an Alertmanager alert (pushed through [`crate::Signal`]).
pub fn alert_firing(name: impl Into<String>) -> AlertFiring {
    AlertFiring { name: name.into() }
}

impl Symptom for AlertFiring {
    fn name(&self) -> String {
        format!("alert {} firing", self.name)
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        let Some(rec) = ctx.history.records().rev().find(|r| match &r.result {
            Ok(o) => o
                .facts
                .get::<Alert>()
                .and_then(Result::ok)
                .map(|a| a.name == self.name)
                .unwrap_or(false),
            Err(_) => false,
        }) else {
            return Verdict::unknown(format!("no alert {} received", self.name));
        };
        let Ok(obs) = &rec.result else {
            return Verdict::unknown("alert record unreadable");
        };
        match obs.facts.get::<Alert>() {
            Some(Ok(a)) if a.status == "firing" => Verdict::Firing(Finding {
                symptom: self.name(),
                summary: a
                    .annotations
                    .get("summary")
                    .or_else(|| a.annotations.get("description"))
                    .cloned()
                    .unwrap_or_else(|| format!("alert {} firing", a.name)),
                since: rec.at,
                violated: None,
                offending: vec![a.labels.clone()],
                evidence: a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            }),
            Some(Ok(_)) => Verdict::Ok,
            _ => Verdict::unknown("alert fact malformed"),
        }
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
