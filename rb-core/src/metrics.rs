//! The engine's own metrics, kept in [`prometheus_client`] types.
//!
//! Read them as text with [`crate::Engine::metrics_text`] (the OpenMetrics text format), or register
//! them in the application's own registry with [`Metrics::register`], so one scrape endpoint serves the
//! application's metrics and the engine's:
//!
//! ```
//! use rb_core::metrics::{prometheus_client::registry::Registry, Metrics};
//! let metrics = Metrics::default(); // in an application: `engine.metrics()`
//! let mut registry = Registry::default();
//! metrics.register(&mut registry);
//! let mut text = String::new();
//! rb_core::metrics::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! assert!(text.contains("# TYPE rb_open_incidents gauge"));
//! ```
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `rb_probe_runs_total` | counter | `probe`, `target`, `result` (ok, error, timeout) |
//! | `rb_probe_duration_seconds` | histogram | `probe`, `target` |
//! | `rb_verdicts_total` | counter | `playbook`, `verdict` |
//! | `rb_incidents_opened_total` | counter | `playbook` |
//! | `rb_open_incidents` | gauge | — |
//! | `rb_remediations_total` | counter | `action`, `outcome` (applied, failed, refused, dry_run, skipped) |
//! | `rb_escalations_total` | counter | `role`, `reason` |

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use prometheus_client;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A label set: pairs in the order they are written.
type L = Vec<(String, String)>;

fn owned(labels: Vec<(&'static str, String)>) -> L {
    labels
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}
type Histograms = Family<L, Histogram, fn() -> Histogram>;
type Gauges = Family<L, Gauge<f64, AtomicU64>>;

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Counters and the latency histogram of one probe on one target (resolved once, updated on every
/// observation without a map look-up).
#[derive(Debug)]
pub(crate) struct ProbeSeries {
    ok: Counter,
    error: Counter,
    timeout: Counter,
    duration: Histogram,
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
        .inc();
        self.duration.observe(d.as_secs_f64());
    }
}

const VERDICTS: [&str; 5] = ["ok", "pending", "firing", "unknown", "unevaluated"];

/// Verdict counters of one playbook.
#[derive(Debug)]
pub(crate) struct VerdictSeries {
    counts: [Counter; VERDICTS.len()],
}

impl VerdictSeries {
    pub(crate) fn record(&self, label: &str) {
        if let Some(i) = VERDICTS.iter().position(|v| *v == label) {
            self.counts[i].inc();
        }
    }
}

/// Name, help and type of the engine's metrics, in the order they are written.
const KNOWN: [(&str, &str, Kind); 7] = [
    (
        "rb_probe_runs",
        "Probe observations by probe, target and result (ok, error, timeout).",
        Kind::Counter,
    ),
    (
        "rb_probe_duration_seconds",
        "Time a probe took to observe.",
        Kind::Histogram,
    ),
    (
        "rb_verdicts",
        "Symptom verdicts by playbook and verdict.",
        Kind::Counter,
    ),
    (
        "rb_incidents_opened",
        "Incidents opened by playbook.",
        Kind::Counter,
    ),
    (
        "rb_open_incidents",
        "Incidents currently open.",
        Kind::Gauge,
    ),
    (
        "rb_remediations",
        "Remediation steps by action and outcome (applied, failed, refused, dry_run, skipped).",
        Kind::Counter,
    ),
    (
        "rb_escalations",
        "Pages sent by role and reason.",
        Kind::Counter,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A counter's family name: without the `_total` suffix, which the encoder writes.
fn family_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

#[derive(Debug)]
struct Inner {
    counters: RwLock<BTreeMap<String, Family<L, Counter>>>,
    gauges: RwLock<BTreeMap<String, Gauges>>,
    durations: Histograms,
    /// The label sets created in each counter family (the families cannot be iterated), for
    /// [`Metrics::counter`].
    seen: Mutex<BTreeMap<String, BTreeSet<L>>>,
    /// The verdict series of each playbook, made once: every binding of a playbook shares it (one
    /// allocation, and one cache line touched per verdict, however many bindings there are).
    verdict_series: Mutex<BTreeMap<String, Arc<VerdictSeries>>>,
}

/// The counters, gauges and probe-latency histogram of one engine. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            counters: RwLock::default(),
            gauges: RwLock::default(),
            durations: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            seen: Mutex::default(),
            verdict_series: Mutex::default(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let inner = Inner::default();
        for (name, _, kind) in KNOWN {
            match kind {
                Kind::Counter => {
                    write(&inner.counters).insert(name.to_string(), Family::default());
                }
                Kind::Gauge => {
                    write(&inner.gauges).insert(name.to_string(), Family::default());
                }
                Kind::Histogram => {}
            }
        }
        // the open-incident gauge reads 0 before the first tick
        if let Some(g) = read(&inner.gauges).get("rb_open_incidents") {
            g.get_or_create(&Vec::new()).set(0.0);
        }
        Self {
            inner: Arc::new(inner),
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// The counter of `name` (with or without `_total`) for `labels`, created on first use.
    fn counter_handle(&self, name: &str, labels: L) -> Counter {
        let family = family_name(name);
        if let Ok(mut seen) = self.inner.seen.lock() {
            seen.entry(family.to_string())
                .or_default()
                .insert(labels.clone());
        }
        if let Some(f) = read(&self.inner.counters).get(family) {
            return f.get_or_create_owned(&labels);
        }
        write(&self.inner.counters)
            .entry(family.to_string())
            .or_default()
            .get_or_create_owned(&labels)
    }

    pub(crate) fn inc(&self, name: &'static str, labels: Vec<(&'static str, String)>) {
        self.counter_handle(name, owned(labels)).inc();
    }

    pub(crate) fn set(&self, name: &'static str, labels: Vec<(&'static str, String)>, v: f64) {
        let labels = owned(labels);
        if let Some(g) = read(&self.inner.gauges).get(name) {
            g.get_or_create(&labels).set(v);
            return;
        }
        write(&self.inner.gauges)
            .entry(name.to_string())
            .or_default()
            .get_or_create(&labels)
            .set(v);
    }

    /// The series of `probe` on `target` (created on first use).
    pub(crate) fn probe_series(&self, probe: &str, target: &str) -> Arc<ProbeSeries> {
        let runs = |result: &str| {
            self.counter_handle(
                "rb_probe_runs",
                owned(vec![
                    ("probe", probe.to_string()),
                    ("target", target.to_string()),
                    ("result", result.to_string()),
                ]),
            )
        };
        Arc::new(ProbeSeries {
            ok: runs("ok"),
            error: runs("error"),
            timeout: runs("timeout"),
            duration: self.inner.durations.get_or_create_owned(&owned(vec![
                ("probe", probe.to_string()),
                ("target", target.to_string()),
            ])),
        })
    }

    /// The verdict series of `playbook` (created on first use, then shared).
    pub(crate) fn verdict_series(&self, playbook: &str) -> Arc<VerdictSeries> {
        let mut made = self
            .inner
            .verdict_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(s) = made.get(playbook) {
            return s.clone();
        }
        let s = Arc::new(VerdictSeries {
            counts: VERDICTS.map(|v| {
                self.counter_handle(
                    "rb_verdicts",
                    owned(vec![
                        ("playbook", playbook.to_string()),
                        ("verdict", v.to_string()),
                    ]),
                )
            }),
        });
        made.insert(playbook.to_string(), s.clone());
        s
    }

    /// The value of a counter (for tests and dashboards): the sum over its series whose labels include
    /// `labels`. `name` may be written with or without `_total`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let family = family_name(name);
        let sets: Vec<L> = self
            .inner
            .seen
            .lock()
            .map(|s| s.get(family).map(|s| s.iter().cloned().collect()))
            .unwrap_or_default()
            .unwrap_or_default();
        let counters = read(&self.inner.counters);
        let Some(f) = counters.get(family) else {
            return 0.0;
        };
        sets.iter()
            .filter(|have| {
                labels
                    .iter()
                    .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|ls| f.get(ls).map(|c| c.get()).unwrap_or(0) as f64)
            .sum()
    }

    /// The value of a gauge for exactly these labels, in order (`None` when the series was never set).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let l: L = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        read(&self.inner.gauges)
            .get(name)
            .and_then(|g| g.get(&l).map(|g| g.get()))
    }

    /// Register the engine's metrics in an application's registry: they are read at each scrape, and
    /// series the engine creates later (a new playbook, a new outcome) appear too.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(EngineCollector(self.inner.clone())));
    }

    /// Everything in the OpenMetrics text format (what a Prometheus scrape of
    /// [`Metrics::register`]'s registry returns). Serve it as
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Writes the engine's metrics at each scrape.
#[derive(Debug)]
struct EngineCollector(Arc<Inner>);

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let counters = read(&self.0.counters);
        let gauges = read(&self.0.gauges);
        let help = |name: &str| -> String {
            KNOWN
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, h, _)| h.to_string())
                .unwrap_or_else(|| format!("rb engine metric {name}."))
        };
        let mut written = BTreeSet::new();
        let mut write_one =
            |encoder: &mut DescriptorEncoder<'_>, name: &str| -> Result<(), std::fmt::Error> {
                if !written.insert(name.to_string()) {
                    return Ok(());
                }
                if name == "rb_probe_duration_seconds" {
                    let f = &self.0.durations;
                    let m = encoder.encode_descriptor(name, &help(name), None, f.metric_type())?;
                    return f.encode(m);
                }
                if let Some(f) = counters.get(name) {
                    let m = encoder.encode_descriptor(name, &help(name), None, f.metric_type())?;
                    return f.encode(m);
                }
                if let Some(f) = gauges.get(name) {
                    let m = encoder.encode_descriptor(name, &help(name), None, f.metric_type())?;
                    return f.encode(m);
                }
                Ok(())
            };
        for (name, _, _) in KNOWN {
            write_one(&mut encoder, name)?;
        }
        let extra: Vec<String> = counters.keys().chain(gauges.keys()).cloned().collect();
        for name in extra {
            write_one(&mut encoder, &name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn text_comes_from_prometheus_client() {
        let m = Metrics::default();
        let s = m.probe_series("kafka.lag", "kafka-main");
        s.record(ProbeResult::Ok, Duration::from_millis(20));
        s.record(ProbeResult::Timeout, Duration::from_secs(11));
        m.verdict_series("backlog").record("firing");
        m.inc(
            "rb_remediations_total",
            vec![("action", "a".into()), ("outcome", "applied".into())],
        );
        m.set("rb_open_incidents", vec![], 2.0);
        let text = m.render();
        for needle in [
            "# TYPE rb_probe_runs counter",
            "rb_probe_runs_total{probe=\"kafka.lag\",target=\"kafka-main\",result=\"ok\"} 1",
            "rb_probe_runs_total{probe=\"kafka.lag\",target=\"kafka-main\",result=\"timeout\"} 1",
            "# TYPE rb_probe_duration_seconds histogram",
            "rb_probe_duration_seconds_bucket{le=\"0.025\",probe=\"kafka.lag\",target=\"kafka-main\"} 1",
            "rb_probe_duration_seconds_count{probe=\"kafka.lag\",target=\"kafka-main\"} 2",
            "rb_verdicts_total{playbook=\"backlog\",verdict=\"firing\"} 1",
            "rb_remediations_total{action=\"a\",outcome=\"applied\"} 1",
            "rb_open_incidents 2.0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert_eq!(m.counter("rb_probe_runs_total", &[("result", "ok")]), 1.0);
        assert_eq!(m.counter("rb_probe_runs", &[("probe", "kafka.lag")]), 2.0);
        assert_eq!(
            m.counter("rb_remediations_total", &[("outcome", "failed")]),
            0.0
        );
        assert_eq!(m.gauge("rb_open_incidents", &[]), Some(2.0));
    }

    #[test]
    fn an_application_registry_sees_the_engine_metrics_at_each_scrape() {
        let m = Metrics::default();
        let mut registry = Registry::default();
        let app = Counter::<u64>::default();
        registry.register(
            "app_requests",
            "The application's own counter.",
            app.clone(),
        );
        m.register(&mut registry);
        app.inc();
        // created after registration: still scraped
        m.inc(
            "rb_escalations_total",
            vec![("role", "kafka-oncall".into()), ("reason", "Failed".into())],
        );
        m.inc("rb_something_new_total", vec![("k", "v".into())]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for needle in [
            "app_requests_total 1",
            "rb_escalations_total{role=\"kafka-oncall\",reason=\"Failed\"} 1",
            "rb_something_new_total{k=\"v\"} 1",
            "# HELP rb_escalations Pages sent by role and reason.",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // label values are escaped by the encoder
        m.inc(
            "rb_remediations_total",
            vec![("action", "a\"b\nc".into()), ("outcome", "x".into())],
        );
        assert!(m
            .render()
            .contains("rb_remediations_total{action=\"a\\\"b\\nc\",outcome=\"x\"} 1"));
    }
}
