//! The engine's own metrics, readable in Prometheus text form ([`crate::Engine::metrics_text`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

type Key = (&'static str, Vec<(&'static str, String)>);

#[derive(Debug, Default)]
struct Hist {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Counters, gauges and the probe-latency histogram of one engine.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, f64>>,
    gauges: Mutex<BTreeMap<Key, f64>>,
    probe_latency: Mutex<BTreeMap<Vec<(&'static str, String)>, Hist>>,
}

const HELP: [(&str, &str, &str); 7] = [
    (
        "rb_probe_runs_total",
        "counter",
        "Probe observations by probe, target and result (ok, error, timeout).",
    ),
    (
        "rb_probe_duration_seconds",
        "histogram",
        "Time a probe took to observe.",
    ),
    (
        "rb_verdicts_total",
        "counter",
        "Symptom verdicts by playbook and verdict.",
    ),
    (
        "rb_incidents_opened_total",
        "counter",
        "Incidents opened by playbook.",
    ),
    ("rb_open_incidents", "gauge", "Incidents currently open."),
    (
        "rb_remediations_total",
        "counter",
        "Remediation steps by action and outcome (applied, failed, refused, dry_run, skipped).",
    ),
    (
        "rb_escalations_total",
        "counter",
        "Pages sent by role and reason.",
    ),
];

impl Metrics {
    pub(crate) fn inc(&self, name: &'static str, labels: Vec<(&'static str, String)>) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name, labels)).or_default() += 1.0;
        }
    }

    pub(crate) fn set(&self, name: &'static str, labels: Vec<(&'static str, String)>, v: f64) {
        if let Ok(mut g) = self.gauges.lock() {
            g.insert((name, labels), v);
        }
    }

    pub(crate) fn observe_probe(&self, labels: Vec<(&'static str, String)>, d: Duration) {
        let secs = d.as_secs_f64();
        if let Ok(mut h) = self.probe_latency.lock() {
            let hist = h.entry(labels).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    hist.buckets[i] += 1;
                }
            }
            hist.sum += secs;
            hist.count += 1;
        }
    }

    /// The value of a counter (for tests and dashboards): sum over series whose labels include `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.counters
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|((n, l), _)| {
                        *n == name
                            && labels
                                .iter()
                                .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
                    })
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0.0)
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let fmt_labels = |l: &[(&'static str, String)], extra: Option<(&str, String)>| -> String {
            let mut parts: Vec<String> = l
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            if let Some((k, v)) = extra {
                parts.push(format!("{k}=\"{v}\""));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", parts.join(","))
            }
        };
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            match kind {
                "histogram" => {
                    if let Ok(h) = self.probe_latency.lock() {
                        for (labels, hist) in h.iter() {
                            for (i, b) in BUCKETS.iter().enumerate() {
                                let _ = writeln!(
                                    out,
                                    "{name}_bucket{} {}",
                                    fmt_labels(labels, Some(("le", b.to_string()))),
                                    hist.buckets[i]
                                );
                            }
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                fmt_labels(labels, Some(("le", "+Inf".into()))),
                                hist.count
                            );
                            let _ = writeln!(
                                out,
                                "{name}_sum{} {}",
                                fmt_labels(labels, None),
                                hist.sum
                            );
                            let _ = writeln!(
                                out,
                                "{name}_count{} {}",
                                fmt_labels(labels, None),
                                hist.count
                            );
                        }
                    }
                }
                "gauge" => {
                    if let Ok(g) = self.gauges.lock() {
                        for ((n, l), v) in g.iter().filter(|((n, _), _)| *n == name) {
                            let _ = writeln!(out, "{n}{} {v}", fmt_labels(l, None));
                        }
                    }
                }
                _ => {
                    if let Ok(c) = self.counters.lock() {
                        for ((n, l), v) in c.iter().filter(|((n, _), _)| *n == name) {
                            let _ = writeln!(out, "{n}{} {v}", fmt_labels(l, None));
                        }
                    }
                }
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
