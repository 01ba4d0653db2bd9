//! The engine's own metrics, readable in Prometheus text form ([`crate::Engine::metrics_text`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

type Key = (&'static str, Vec<(&'static str, String)>);

/// Lock-free counters of one probe on one target (resolved once, updated on every observation).
#[derive(Debug)]
pub(crate) struct ProbeSeries {
    probe: String,
    target: String,
    ok: AtomicU64,
    error: AtomicU64,
    timeout: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// Outcome of one observation, for [`ProbeSeries::record`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProbeResult {
    Ok,
    Error,
    Timeout,
}

impl ProbeSeries {
    pub(crate) fn record(&self, result: ProbeResult, d: Duration) {
        match result {
            ProbeResult::Ok => &self.ok,
            ProbeResult::Error => &self.error,
            ProbeResult::Timeout => &self.timeout,
        }
        .fetch_add(1, Ordering::Relaxed);
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

const VERDICTS: [&str; 5] = ["ok", "pending", "firing", "unknown", "unevaluated"];

/// Lock-free verdict counters of one playbook.
#[derive(Debug)]
pub(crate) struct VerdictSeries {
    playbook: String,
    counts: [AtomicU64; VERDICTS.len()],
}

impl VerdictSeries {
    pub(crate) fn record(&self, label: &str) {
        if let Some(i) = VERDICTS.iter().position(|v| *v == label) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counters, gauges and the probe-latency histogram of one engine.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, f64>>,
    gauges: Mutex<BTreeMap<Key, f64>>,
    probes: Mutex<BTreeMap<(String, String), Arc<ProbeSeries>>>,
    verdicts: Mutex<BTreeMap<String, Arc<VerdictSeries>>>,
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

    /// The series of `probe` on `target` (created on first use).
    pub(crate) fn probe_series(&self, probe: &str, target: &str) -> Arc<ProbeSeries> {
        let mut m = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((probe.to_string(), target.to_string()))
            .or_insert_with(|| {
                Arc::new(ProbeSeries {
                    probe: probe.to_string(),
                    target: target.to_string(),
                    ok: AtomicU64::new(0),
                    error: AtomicU64::new(0),
                    timeout: AtomicU64::new(0),
                    buckets: Default::default(),
                    sum_nanos: AtomicU64::new(0),
                    count: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// The verdict series of `playbook` (created on first use).
    pub(crate) fn verdict_series(&self, playbook: &str) -> Arc<VerdictSeries> {
        let mut m = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(playbook.to_string())
            .or_insert_with(|| {
                Arc::new(VerdictSeries {
                    playbook: playbook.to_string(),
                    counts: Default::default(),
                })
            })
            .clone()
    }

    /// The value of a counter (for tests and dashboards): sum over series whose labels include `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want = |have: &[(&str, &str)]| {
            labels
                .iter()
                .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
        };
        if name == "rb_probe_runs_total" {
            let m = self.probes.lock().unwrap_or_else(|e| e.into_inner());
            return m
                .values()
                .flat_map(|s| {
                    [("ok", &s.ok), ("error", &s.error), ("timeout", &s.timeout)].map(|(r, c)| {
                        let have = [
                            ("probe", s.probe.as_str()),
                            ("target", s.target.as_str()),
                            ("result", r),
                        ];
                        if want(&have) {
                            c.load(Ordering::Relaxed) as f64
                        } else {
                            0.0
                        }
                    })
                })
                .sum();
        }
        if name == "rb_verdicts_total" {
            let m = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
            return m
                .values()
                .flat_map(|s| {
                    VERDICTS.iter().zip(s.counts.iter()).map(|(v, c)| {
                        let have = [("playbook", s.playbook.as_str()), ("verdict", *v)];
                        if want(&have) {
                            c.load(Ordering::Relaxed) as f64
                        } else {
                            0.0
                        }
                    })
                })
                .sum();
        }
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
                    let m = self.probes.lock().unwrap_or_else(|e| e.into_inner());
                    for ser in m.values() {
                        let labels =
                            vec![("probe", ser.probe.clone()), ("target", ser.target.clone())];
                        for (i, b) in BUCKETS.iter().enumerate() {
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                fmt_labels(&labels, Some(("le", b.to_string()))),
                                ser.buckets[i].load(Ordering::Relaxed)
                            );
                        }
                        let count = ser.count.load(Ordering::Relaxed);
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            fmt_labels(&labels, Some(("le", "+Inf".into())))
                        );
                        let sum = ser.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                        let _ = writeln!(out, "{name}_sum{} {sum}", fmt_labels(&labels, None));
                        let _ = writeln!(out, "{name}_count{} {count}", fmt_labels(&labels, None));
                    }
                }
                _ if name == "rb_probe_runs_total" => {
                    let m = self.probes.lock().unwrap_or_else(|e| e.into_inner());
                    for ser in m.values() {
                        for (r, c) in [
                            ("ok", &ser.ok),
                            ("error", &ser.error),
                            ("timeout", &ser.timeout),
                        ] {
                            let v = c.load(Ordering::Relaxed);
                            if v > 0 {
                                let labels = vec![
                                    ("probe", ser.probe.clone()),
                                    ("target", ser.target.clone()),
                                    ("result", r.to_string()),
                                ];
                                let _ = writeln!(out, "{name}{} {v}", fmt_labels(&labels, None));
                            }
                        }
                    }
                }
                _ if name == "rb_verdicts_total" => {
                    let m = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
                    for ser in m.values() {
                        for (v, c) in VERDICTS.iter().zip(ser.counts.iter()) {
                            let n = c.load(Ordering::Relaxed);
                            if n > 0 {
                                let labels = vec![
                                    ("playbook", ser.playbook.clone()),
                                    ("verdict", v.to_string()),
                                ];
                                let _ = writeln!(out, "{name}{} {n}", fmt_labels(&labels, None));
                            }
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
