//! Fault injection shared by every HTTP fake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::record::path_matches;

/// What a matching request suffers instead of (or on top of) its normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer normally, after this delay (counted on tokio's clock, so a paused clock skips it).
    Latency(Duration),
    /// Answer with this status and a short plain-text body instead of the normal answer.
    Status(u16),
    /// Answer with this status and this body (exactly as given, `application/json`).
    StatusBody(u16, String),
    /// Close the connection without answering (the client sees a reset / incomplete message).
    Reset,
    /// Answer 200 with a body that is not valid JSON.
    MalformedBody,
    /// Answer with the normal status and headers but cut the body in half and close the connection.
    TruncatedBody,
    /// Never answer (until the client gives up or the fake is dropped).
    Hang,
}

#[derive(Debug)]
struct Rule {
    method: String,
    pattern: String,
    fault: Fault,
    remaining: Option<usize>,
}

/// The fault rules of one fake. Cloning shares the rules.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Rule>>>,
}

/// A handle on one injected rule, to limit how many requests it hits.
#[derive(Debug)]
pub struct FaultHandle {
    rules: Arc<Mutex<Vec<Rule>>>,
    index: usize,
}

impl FaultHandle {
    /// Apply the fault to the next `n` matching requests only (the default is every one).
    pub fn times(self, n: usize) -> Self {
        if let Some(rule) = lock(&self.rules).get_mut(self.index) {
            rule.remaining = Some(n);
        }
        self
    }
}

fn lock(rules: &Arc<Mutex<Vec<Rule>>>) -> std::sync::MutexGuard<'_, Vec<Rule>> {
    rules.lock().unwrap_or_else(|e| e.into_inner())
}

impl Faults {
    /// Inject `fault` into requests with this method (`"*"` for any) whose path matches `pattern`
    /// (`*` one segment, `**` any). Rules are tried in the order they were added.
    pub fn inject(&self, method: &str, pattern: &str, fault: Fault) -> FaultHandle {
        let mut rules = lock(&self.rules);
        rules.push(Rule {
            method: method.to_ascii_uppercase(),
            pattern: pattern.to_string(),
            fault,
            remaining: None,
        });
        FaultHandle {
            rules: self.rules.clone(),
            index: rules.len() - 1,
        }
    }

    /// Inject `fault` into every request.
    pub fn inject_all(&self, fault: Fault) -> FaultHandle {
        self.inject("*", "/**", fault)
    }

    /// Remove every rule.
    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// The fault for this request, consuming one use of a limited rule.
    pub(crate) fn take(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        for rule in rules.iter_mut() {
            if (rule.method == "*" || rule.method == method) && path_matches(&rule.pattern, path) {
                match rule.remaining {
                    Some(0) => continue,
                    Some(ref mut n) => *n -= 1,
                    None => {}
                }
                return Some(rule.fault.clone());
            }
        }
        None
    }
}
