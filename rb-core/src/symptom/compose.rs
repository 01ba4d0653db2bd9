//! all/any composition of symptoms.

use std::time::Duration;

use super::{evaluate, EvalContext, Finding, Reads, Symptom, Verdict};
use crate::observation::Labels;

fn eval_children(children: &[Box<dyn Symptom>], ctx: &mut EvalContext<'_>) -> Vec<Verdict> {
    ctx.state
        .children
        .resize_with(children.len(), Default::default);
    children
        .iter()
        .zip(ctx.state.children.iter_mut())
        .map(|(c, st)| evaluate(c.as_ref(), ctx.history, ctx.now, st))
        .collect()
}

fn merge(name: String, findings: Vec<Finding>) -> Finding {
    let since = findings.iter().map(|f| f.since).max().unwrap_or_default();
    let violated = findings.iter().find_map(|f| f.violated.clone());
    let mut evidence: Vec<String> = findings.iter().map(|f| f.summary.clone()).collect();
    evidence.extend(findings.iter().flat_map(|f| f.evidence.iter().cloned()));
    let mut offending: Vec<Labels> = Vec::new();
    for l in findings.iter().flat_map(|f| f.offending.iter()) {
        if !offending.contains(l) {
            offending.push(l.clone());
        }
    }
    Finding {
        summary: evidence.first().cloned().unwrap_or_default(),
        symptom: name,
        since,
        violated,
        evidence,
        offending,
    }
}

/// Fires when every child fires. Ok as soon as one child is ok; otherwise unknown if any child is.
#[derive(Debug)]
pub struct AllOf(Vec<Box<dyn Symptom>>);

/// Fires when any child fires. Otherwise unknown if any child is unknown, else ok.
#[derive(Debug)]
pub struct AnyOf(Vec<Box<dyn Symptom>>);

/// All of `children` must fire.
pub fn all_of(children: Vec<Box<dyn Symptom>>) -> AllOf {
    AllOf(children)
}

/// Any of `children` fires.
pub fn any_of(children: Vec<Box<dyn Symptom>>) -> AnyOf {
    AnyOf(children)
}

impl Symptom for AllOf {
    fn name(&self) -> String {
        let n: Vec<String> = self.0.iter().map(|c| c.name()).collect();
        format!("all of ({})", n.join("; "))
    }
    fn lookback(&self) -> Duration {
        self.0
            .iter()
            .map(|c| c.lookback())
            .max()
            .unwrap_or_default()
    }
    fn reads(&self) -> Reads {
        self.0
            .iter()
            .fold(Reads::nothing(), |r, c| r.union(c.reads()))
    }
    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        if self.0.is_empty() {
            return Verdict::unknown("all_of with no symptoms");
        }
        let vs = eval_children(&self.0, ctx);
        if vs.iter().any(Verdict::is_ok) {
            return Verdict::Ok;
        }
        if let Some(Verdict::Unknown { why }) = vs.iter().find(|v| v.is_unknown()) {
            return Verdict::Unknown { why: why.clone() };
        }
        if vs.iter().all(Verdict::is_firing) {
            let findings = vs.into_iter().filter_map(|v| {
                if let Verdict::Firing(f) = v {
                    Some(f)
                } else {
                    None
                }
            });
            return Verdict::Firing(merge(self.name(), findings.collect()));
        }
        // some pending, none ok or unknown: pending since the latest start
        let since = vs
            .iter()
            .filter_map(|v| match v {
                Verdict::Pending { since, .. } => Some(*since),
                _ => None,
            })
            .max()
            .unwrap_or(ctx.now);
        let needed = vs
            .iter()
            .filter_map(|v| match v {
                Verdict::Pending { needed, .. } => Some(*needed),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        Verdict::Pending { since, needed }
    }
}

impl Symptom for AnyOf {
    fn name(&self) -> String {
        let n: Vec<String> = self.0.iter().map(|c| c.name()).collect();
        format!("any of ({})", n.join("; "))
    }
    fn lookback(&self) -> Duration {
        self.0
            .iter()
            .map(|c| c.lookback())
            .max()
            .unwrap_or_default()
    }
    fn reads(&self) -> Reads {
        self.0
            .iter()
            .fold(Reads::nothing(), |r, c| r.union(c.reads()))
    }
    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        if self.0.is_empty() {
            return Verdict::unknown("any_of with no symptoms");
        }
        let vs = eval_children(&self.0, ctx);
        let firing: Vec<Finding> = vs
            .iter()
            .filter_map(|v| {
                if let Verdict::Firing(f) = v {
                    Some(f.clone())
                } else {
                    None
                }
            })
            .collect();
        if !firing.is_empty() {
            return Verdict::Firing(merge(self.name(), firing));
        }
        if let Some(Verdict::Unknown { why }) = vs.iter().find(|v| v.is_unknown()) {
            return Verdict::Unknown { why: why.clone() };
        }
        if let Some(p) = vs.iter().find(|v| matches!(v, Verdict::Pending { .. })) {
            return p.clone();
        }
        Verdict::Ok
    }
}
