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
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
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
type Gauges = Family<L, Gauge<f64, AtomicU64>>;

/// The run counters and the latency histogram of one probe on one target, in one allocation.
///
/// A tick records every probe it runs: with many probes, what that touches is what it costs (at
/// 10,000 probes, every line of a probe's series is a cache miss). So the three counters
/// (`rb_probe_runs_total` by result) and the histogram (`rb_probe_duration_seconds`) of a probe live
/// together behind one lock, not as four shared `prometheus_client` handles (four allocations, two
/// of them behind their own locks, and each label set kept twice). The engine's collector writes
/// them at a scrape as those two families ([`Metrics::render`]).
#[derive(Debug, Default)]
pub(crate) struct ProbeSeries {
    counts: Mutex<ProbeCounts>,
}

/// What [`ProbeSeries`] counts.
#[derive(Debug, Default, Clone, Copy)]
struct ProbeCounts {
    /// Sum of the durations observed, in seconds.
    sum: f64,
    /// Durations observed.
    count: u64,
    /// Observations by result: ok, error, timeout ([`ProbeResult`] as an index).
    runs: [u64; 3],
    /// Durations per bucket of [`BUCKETS`] (not cumulative), the last one past the largest bound.
    buckets: [u64; BUCKETS.len() + 1],
}

/// Outcome of one observation, for [`ProbeSeries::record`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProbeResult {
    Ok = 0,
    Error = 1,
    Timeout = 2,
}

impl ProbeSeries {
    /// Count one observation: its result and how long it took.
    pub(crate) fn record(&self, result: ProbeResult, d: Duration) {
        let v = d.as_secs_f64();
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.runs[result as usize] += 1;
        c.sum += v;
        c.count += 1;
        // the first bucket whose bound is at least `v` (a histogram's `le`), else the last
        let i = BUCKETS
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(BUCKETS.len());
        c.buckets[i] += 1;
    }

    fn snapshot(&self) -> ProbeCounts {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The results of [`ProbeResult`], as the `result` label says them, in its order.
const RESULTS: [&str; 3] = ["ok", "error", "timeout"];

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

#[derive(Debug, Default)]
struct Inner {
    counters: RwLock<BTreeMap<String, Family<L, Counter>>>,
    gauges: RwLock<BTreeMap<String, Gauges>>,
    /// The series of each probe, by probe name and target name (the only copy of those labels).
    probes: Mutex<BTreeMap<(String, String), Arc<ProbeSeries>>>,
    /// The label sets created in each counter family (the families cannot be iterated), for
    /// [`Metrics::counter`]. Few: the probes' series are not in the families.
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

    /// The series of `probe` on `target` (created on first use, then shared).
    pub(crate) fn probe_series(&self, probe: &str, target: &str) -> Arc<ProbeSeries> {
        self.inner
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((probe.to_string(), target.to_string()))
            .or_default()
            .clone()
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
        let matches = |have: &[(&str, &str)]| {
            labels
                .iter()
                .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
        };
        let mut probe_runs = 0.0;
        if family == "rb_probe_runs" {
            let probes = self.inner.probes.lock().unwrap_or_else(|e| e.into_inner());
            for ((probe, target), series) in probes.iter() {
                let runs = series.snapshot().runs;
                for (result, n) in RESULTS.iter().zip(runs) {
                    if matches(&[("probe", probe), ("target", target), ("result", result)]) {
                        probe_runs += n as f64;
                    }
                }
            }
        }
        let sets: Vec<L> = self
            .inner
            .seen
            .lock()
            .map(|s| s.get(family).map(|s| s.iter().cloned().collect()))
            .unwrap_or_default()
            .unwrap_or_default();
        let counters = read(&self.inner.counters);
        let Some(f) = counters.get(family) else {
            return probe_runs;
        };
        probe_runs
            + sets
                .iter()
                .filter(|have| {
                    let have: Vec<(&str, &str)> =
                        have.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    matches(&have)
                })
                .map(|ls| f.get(ls).map(|c| c.get()).unwrap_or(0) as f64)
                .sum::<f64>()
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
        // every probe's series as one consistent snapshot (a tick may be recording meanwhile)
        let held = self.0.probes.lock().unwrap_or_else(|e| e.into_inner());
        let probes: Vec<(&(String, String), ProbeCounts)> =
            held.iter().map(|(k, s)| (k, s.snapshot())).collect();
        let help = |name: &str| -> String {
            KNOWN
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, h, _)| h.to_string())
                .unwrap_or_else(|| format!("rb engine metric {name}."))
        };
        let mut written = BTreeSet::new();
        let mut write_one = |encoder: &mut DescriptorEncoder<'_>,
                             name: &str|
         -> Result<(), std::fmt::Error> {
            if !written.insert(name.to_string()) {
                return Ok(());
            }
            if name == "rb_probe_duration_seconds" {
                let mut m =
                    encoder.encode_descriptor(name, &help(name), None, MetricType::Histogram)?;
                return probe_durations(&probes, &mut m);
            }
            if let Some(f) = counters.get(name) {
                let mut m = encoder.encode_descriptor(name, &help(name), None, f.metric_type())?;
                if name == "rb_probe_runs" {
                    probe_runs(&probes, &mut m)?;
                }
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

/// The `rb_probe_runs_total` series of every probe: one per result, as a counter family writes them.
fn probe_runs(
    probes: &[(&(String, String), ProbeCounts)],
    m: &mut MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    for ((probe, target), c) in probes {
        for (result, n) in RESULTS.iter().zip(c.runs) {
            let labels = [
                ("probe", probe.as_str()),
                ("target", target.as_str()),
                ("result", result),
            ];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
    }
    Ok(())
}

/// The `rb_probe_duration_seconds` histogram of every probe, as a histogram family writes it.
fn probe_durations(
    probes: &[(&(String, String), ProbeCounts)],
    m: &mut MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    for ((probe, target), c) in probes {
        let mut buckets = [(f64::INFINITY, 0u64); BUCKETS.len() + 1];
        for (i, b) in buckets.iter_mut().enumerate() {
            *b = (
                BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                c.buckets[i],
            );
        }
        let labels = [("probe", probe.as_str()), ("target", target.as_str())];
        m.encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(c.sum, c.count, &buckets, None)?;
    }
    Ok(())
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

    /// The probes' series are kept in one allocation each, not in `prometheus_client` families: a
    /// scrape must read as the families did (the same lines; their order within a family was a
    /// hash map's).
    #[test]
    fn probe_series_read_as_prometheus_client_families() {
        use prometheus_client::metrics::histogram::Histogram;
        let m = Metrics::default();
        let mut registry = Registry::default();
        let runs = Family::<L, Counter>::default();
        let durations = Family::<L, Histogram, fn() -> Histogram>::new_with_constructor(|| {
            Histogram::new(BUCKETS)
        });
        registry.register("rb_probe_runs", "runs", runs.clone());
        registry.register("rb_probe_duration_seconds", "durations", durations.clone());
        let observations = [
            ("kafka.lag", "kafka-main", ProbeResult::Ok, 0.0),
            ("kafka.lag", "kafka-main", ProbeResult::Ok, 0.02),
            ("kafka.lag", "kafka-main", ProbeResult::Timeout, 11.0),
            ("kafka.lag", "kafka-dr", ProbeResult::Error, 0.005),
            ("flink.jobs", "flink", ProbeResult::Ok, 1.0),
            ("flink.jobs", "flink", ProbeResult::Ok, 2.6),
            ("never.ran", "nowhere", ProbeResult::Ok, -1.0),
        ];
        for (probe, target, result, secs) in observations {
            let series = m.probe_series(probe, target);
            let labels = |more: &[(&str, &str)]| -> L {
                [("probe", probe), ("target", target)]
                    .iter()
                    .chain(more)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            for r in RESULTS {
                let _ = runs.get_or_create(&labels(&[("result", r)]));
            }
            let _ = durations.get_or_create(&labels(&[]));
            if secs < 0.0 {
                continue; // a series made and never recorded
            }
            series.record(result, Duration::from_secs_f64(secs));
            runs.get_or_create(&labels(&[("result", RESULTS[result as usize])]))
                .inc();
            durations.get_or_create(&labels(&[])).observe(secs);
        }
        let mut theirs = String::new();
        prometheus_client::encoding::text::encode(&mut theirs, &registry).unwrap();
        let ours = m.render();
        let lines = |text: &str| {
            let mut l: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("rb_probe_"))
                .map(str::to_string)
                .collect();
            l.sort();
            l
        };
        assert_eq!(lines(&ours), lines(&theirs));
        // four series: three run counters and a histogram (sum, count, buckets) each
        assert_eq!(lines(&ours).len(), 4 * (3 + 2 + BUCKETS.len() + 1));
        assert_eq!(m.counter("rb_probe_runs", &[("target", "flink")]), 2.0);
        assert_eq!(m.counter("rb_probe_runs", &[("result", "error")]), 1.0);
        assert_eq!(m.counter("rb_probe_runs", &[("job", "x")]), 0.0);
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
