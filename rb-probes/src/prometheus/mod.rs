//! Prometheus: instant and range queries through the HTTP API (`/api/v1/query`,
//! `/api/v1/query_range`), their samples turned into rb metrics.
//!
//! One [`PromQuery`] probe runs one PromQL expression. Each returned series becomes samples whose
//! labels are the series' labels (without `__name__`) and whose name is the configured metric name,
//! by default the series' `__name__` (so `kafka_connect_connector_failed_task_count`,
//! `trino_execution_queuedqueries` or `minio_cluster_capacity_usable_free_bytes` keep their names and
//! a generic threshold reads them as if rb had scraped them). Series without a `__name__` (most
//! aggregations and functions drop it) get [`DEFAULT_METRIC`] unless a name is configured.
//!
//! | result type | samples |
//! | --- | --- |
//! | `vector` | one per series, at the series' evaluation time |
//! | `matrix` (range query, or a range selector) | one per point, each at its own time |
//! | `scalar` | one, no labels |
//! | `string` | none (the text is in the fact) |
//! | native histogram | `<name>_count` and `<name>_sum` per series |
//!
//! Values arrive as strings so that `NaN`, `+Inf` and `-Inf` survive; they are kept as such.
//!
//! **Always emitted:** `prometheus_query_series` — how many series the query returned (0 for an
//! empty result), before any top-k bound. **An empty result is a valid observation with no samples of
//! the queried metric**: a threshold on that metric reads it as *absent* and reports unknown (rb
//! never reads missing data as healthy). When the query is written so that an empty answer means
//! healthy — `kafka_connect_connector_failed_task_count > 0` — put the symptom on
//! `prometheus_query_series` instead (`metric("prometheus_query_series").above(0.0)`).
//!
//! **Fact** [`PromResult`] (`prometheus.result`): the query, the result type, the series kept (labels
//! and points), the scalar or string, the `warnings` and `infos` Prometheus attached, how many series
//! there were and whether the top-k bound cut some.
//!
//! **Bounded output:** [`PromQuery::top_k`] keeps the `k` series with the largest latest values
//! (series whose latest value is `NaN` are dropped then); without it every series is kept.
//!
//! **Errors:** `status: "error"` (whatever the HTTP status) → [`ErrorKind::Rejected`] with
//! Prometheus' `errorType` and message; 401/403 → unauthorized; the 503 `Service Unavailable` text
//! of a server still starting → rejected; a body that is not the API's JSON → bad response naming
//! the JSON pointer (and line and column) where it went wrong.
//!
//! **Least privilege:** read-only `GET` on `/api/v1/query` and `/api/v1/query_range`. Prometheus has
//! no authorization of its own; behind an authenticating proxy give the probe a client with
//! [`HttpAuth::Basic`](crate::transport::HttpAuth::Basic) or a bearer token (a JWT)
//! ([`HttpAuth::Bearer`](crate::transport::HttpAuth::Bearer)) allowed only those two paths.

mod parse;

pub use parse::{
    format_value, parse_body, parse_response, parse_value, Histogram, PromData, PromSeries,
    ResultType,
};

use std::time::Duration;

use async_trait::async_trait;
use rb_core::time::Timestamp;
use rb_core::{
    ErrorKind, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Sample, Target,
};
use serde::{Deserialize, Serialize};

use crate::common::{ProbeSite, TopK};
use crate::rest;
use crate::transport::{HttpClient, HttpRequest};

/// The metric name of samples from series that carry no `__name__`, when none is configured.
pub const DEFAULT_METRIC: &str = "prometheus_query_value";

/// The sample counting the series a query returned (always emitted, 0 for an empty result).
pub const SERIES_METRIC: &str = "prometheus_query_series";

/// What the probe saw: one query's result, bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromResult {
    /// The PromQL expression.
    pub query: String,
    /// `vector`, `matrix`, `scalar` or `string`.
    pub result_type: ResultType,
    /// The series kept (all, or the top k by latest value).
    pub series: Vec<PromSeries>,
    /// The scalar result `[time, value]`, when the result type is `scalar` (the value written as
    /// Prometheus writes it when serialized, so `NaN` and `±Inf` survive).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "parse::opt_point"
    )]
    pub scalar: Option<(f64, f64)>,
    /// The string result `[time, text]`, when the result type is `string`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<(f64, String)>,
    /// How many series the answer held.
    pub total_series: usize,
    /// Whether the top-k bound dropped series.
    pub truncated: bool,
    /// Prometheus' warnings (e.g. a partial answer from a remote read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Prometheus' infos.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub infos: Vec<String>,
}

impl FactType for PromResult {
    const KIND: &'static str = "prometheus.result";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Instant,
    /// Over the `window` ending now, every `step`.
    Range {
        window: Duration,
        step: Duration,
    },
}

/// A PromQL query as a probe (see the [module docs](self)).
#[derive(Debug)]
pub struct PromQuery<C> {
    client: C,
    target: Target,
    id: String,
    query: String,
    mode: Mode,
    metric: Option<String>,
    top_k: Option<usize>,
}

impl<C: HttpClient> PromQuery<C> {
    /// An instant query (`/api/v1/query`) evaluated at the probe's "now".
    pub fn instant(client: C, target: Target, query: impl Into<String>) -> Self {
        Self {
            client,
            target,
            id: "prometheus.query".into(),
            query: query.into(),
            mode: Mode::Instant,
            metric: None,
            top_k: None,
        }
    }

    /// A range query (`/api/v1/query_range`) over the `window` ending at the probe's "now", one
    /// point every `step` (a zero step is raised to one second).
    pub fn range(
        client: C,
        target: Target,
        query: impl Into<String>,
        window: Duration,
        step: Duration,
    ) -> Self {
        let step = if step.is_zero() {
            Duration::from_secs(1)
        } else {
            step
        };
        let mut q = Self::instant(client, target, query);
        q.id = "prometheus.query_range".into();
        q.mode = Mode::Range { window, step };
        q
    }

    /// Name every sample `name` (instead of the series' `__name__`).
    pub fn metric_name(mut self, name: impl Into<String>) -> Self {
        self.metric = Some(name.into());
        self
    }

    /// Keep only the `k` series with the largest latest values.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    /// Use another probe id (default `prometheus.query` / `prometheus.query_range`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    fn request(&self, now: Timestamp) -> (String, HttpRequest) {
        let now_s = secs(now);
        let (path, params) = match self.mode {
            Mode::Instant => (
                "/api/v1/query",
                vec![("query", self.query.clone()), ("time", now_s.clone())],
            ),
            Mode::Range { window, step } => {
                let start = secs(Timestamp(now.0.saturating_sub(window.as_millis() as u64)));
                (
                    "/api/v1/query_range",
                    vec![
                        ("query", self.query.clone()),
                        ("start", start),
                        ("end", now_s),
                        ("step", format!("{}", step.as_secs_f64())),
                    ],
                )
            }
        };
        (
            path.to_string(),
            HttpRequest::get(rest::with_query(path, &params)),
        )
    }
}

/// Unix seconds with milliseconds, as Prometheus takes them (`1767436620.5`).
fn secs(t: Timestamp) -> String {
    format!("{}.{:03}", t.0 / 1000, t.0 % 1000)
}

fn at(t: f64) -> Timestamp {
    if t.is_finite() && t > 0.0 {
        Timestamp((t * 1000.0).round() as u64)
    } else {
        Timestamp(0)
    }
}

#[async_trait]
impl<C: HttpClient> Probe for PromQuery<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let (path, req) = self.request(ctx.now());
        let endpoint = self.client.url(&path);
        let site = ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let resp = rest::send(&site, ctx, &self.client, req).await?;
        let data = parse_response(&site, &resp)?;
        if self.mode != Mode::Instant && data.result_type != ResultType::Matrix {
            return Err(site.error(
                ErrorKind::BadResponse,
                format!(
                    "a range query answered resultType {:?}, not matrix",
                    data.result_type
                ),
            ));
        }
        Ok(self.to_observation(ctx.now(), data))
    }
}

impl<C: HttpClient> PromQuery<C> {
    fn to_observation(&self, now: Timestamp, data: PromData) -> Observation {
        let mut obs = Observation::new(&self.id, &self.target.name, now);
        let total = data.series.len();
        obs.push_sample(SERIES_METRIC, Labels::new(), total as f64);
        let series = match self.top_k {
            None => data.series,
            Some(k) => {
                let mut top = TopK::new(k);
                for s in data.series {
                    top.push(s.latest().unwrap_or(f64::NAN), s);
                }
                top.into_sorted().into_iter().map(|(_, s)| s).collect()
            }
        };
        let truncated = series.len() < total;
        for s in &series {
            let mut labels = s.labels.clone();
            let own = labels.remove("__name__");
            let name = self
                .metric
                .clone()
                .or(own)
                .unwrap_or_else(|| DEFAULT_METRIC.to_string());
            for (t, v) in &s.points {
                obs.samples.push(Sample {
                    name: name.clone(),
                    labels: labels.clone(),
                    value: *v,
                    at: at(*t),
                });
            }
            for (t, h) in &s.histograms {
                for (suffix, v) in [("_count", h.count), ("_sum", h.sum)] {
                    obs.samples.push(Sample {
                        name: format!("{name}{suffix}"),
                        labels: labels.clone(),
                        value: v,
                        at: at(*t),
                    });
                }
            }
        }
        if let Some((t, v)) = data.scalar {
            obs.samples.push(Sample {
                name: self
                    .metric
                    .clone()
                    .unwrap_or_else(|| DEFAULT_METRIC.to_string()),
                labels: Labels::new(),
                value: v,
                at: at(t),
            });
        }
        let fact = PromResult {
            query: self.query.clone(),
            result_type: data.result_type,
            series,
            scalar: data.scalar,
            string: data.string,
            total_series: total,
            truncated,
            warnings: data.warnings,
            infos: data.infos,
        };
        obs.fact(&fact)
    }
}
