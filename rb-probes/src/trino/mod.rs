//! Trino: the coordinator's queries (queued, running, blocked; who, how long, how much memory) and a
//! SQL probe over the client protocol for data cross-checks.
//!
//! ## [`TrinoQueries`] — `GET /v1/query` with `X-Trino-User`
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `trino_queries_queued` | — | queries in state `QUEUED` |
//! | `trino_queries_running` | — | `RUNNING` and not fully blocked (as Trino's cluster stats count) |
//! | `trino_queries_blocked` | — | `RUNNING` and fully blocked |
//! | `trino_queries_active` | — | every unfinished query listed |
//! | `trino_query_memory_bytes` | `query_id`, `user`, `state` | current total memory reservation, top-k heaviest |
//! | `trino_query_elapsed_seconds` | `query_id`, `user`, `state` | elapsed time, same queries |
//!
//! **Fact** [`TrinoQueriesFact`] (`trino.queries`): the unfinished queries, heaviest first (bounded
//! to [`TrinoQueries::top_k`], default 20) — id, state, user, source, resource group, elapsed,
//! queued and CPU time, memory and peak memory, blocked flag and reasons, the SQL truncated — what
//! the kill-query remediation chooses from.
//!
//! **The view may be partial.** `/v1/query` lists only the queries the calling user may view
//! (Trino's access control: a user sees their own queries unless a `query` rule lets them view
//! others'). The probe cannot tell, so unless told with [`TrinoQueries::full_view`] that the user may
//! view every query (Trino's default allow-all access control, or a rule granting `view` on all
//! owners), the observation is **marked incomplete** with a gap saying so — a symptom then reports
//! unknown rather than read "0 queued" from a restricted user — and the fact's
//! `view_may_be_partial` is `true`.
//!
//! ## [`TrinoSql`] — `POST /v1/statement`, following `nextUri`
//!
//! Runs one statement, collects the columns and rows (bounded: [`TrinoSql::max_rows`], default
//! 1,000; past it the query is abandoned with `DELETE nextUri` and the observation is incomplete),
//! emits `trino_sql_rows` and, with [`TrinoSql::metric`], one sample per row (a value column, label
//! columns). **Fact** [`TrinoSqlResult`] (`trino.sql`): query id, columns, rows. A Trino error is
//! [`ErrorKind::Rejected`] naming Trino's error name, code, type and message.
//!
//! **Least privilege:** an authenticated user (header, Basic or a JWT bearer over HTTPS) with
//! `view` on the queries to watch (query-owner rules); for the SQL probe, `SELECT` on the tables
//! the statement reads, and nothing else — use read-only statements.

mod wire;

pub use wire::{
    parse_data_size, parse_duration, parse_query_list, parse_query_results, Column, QueryResults,
    WireQuery,
};

use async_trait::async_trait;
use rb_core::time::Timestamp;
use rb_core::{
    labels, ErrorKind, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Target,
};
use serde::{Deserialize, Serialize};

use crate::common::{ProbeSite, TopK};
use crate::rest;
use crate::transport::{HttpClient, HttpRequest, Method};

// ----- queries ----------------------------------------------------------------------------------

/// The unfinished queries the probe saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrinoQueriesFact {
    /// The user the probe asked as.
    pub user: String,
    /// Whether the list may miss queries this user may not view.
    pub view_may_be_partial: bool,
    /// Unfinished queries listed.
    pub active: usize,
    /// Whether the top-k bound left some out of `queries`.
    pub truncated: bool,
    /// The heaviest unfinished queries (by memory), heaviest first.
    pub queries: Vec<TrinoQuery>,
}

impl FactType for TrinoQueriesFact {
    const KIND: &'static str = "trino.queries";
}

/// One query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrinoQuery {
    /// Query id (what `PUT /v1/query/{id}/killed` takes).
    pub query_id: String,
    /// State.
    pub state: String,
    /// Session user.
    pub user: String,
    /// Client source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Resource group path joined with `.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Elapsed time, seconds.
    pub elapsed_seconds: f64,
    /// Time queued, seconds.
    pub queued_seconds: f64,
    /// CPU time, seconds.
    pub cpu_seconds: f64,
    /// Current total memory reservation, bytes.
    pub memory_bytes: f64,
    /// Peak total memory reservation, bytes.
    pub peak_memory_bytes: f64,
    /// Every driver blocked.
    pub fully_blocked: bool,
    /// Why blocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_reasons: Vec<String>,
    /// The SQL, truncated.
    pub query: String,
}

/// Queued, running and blocked queries (see the [module docs](self)).
#[derive(Debug)]
pub struct TrinoQueries<C> {
    client: C,
    target: Target,
    id: String,
    user: String,
    full_view: bool,
    top_k: usize,
    sql_limit: usize,
}

impl<C: HttpClient> TrinoQueries<C> {
    /// List the queries as `user` (sent as `X-Trino-User`).
    pub fn new(client: C, target: Target, user: impl Into<String>) -> Self {
        Self {
            client,
            target,
            id: "trino.queries".into(),
            user: user.into(),
            full_view: false,
            top_k: 20,
            sql_limit: 500,
        }
    }

    /// Declare that the user may view every query, so the list is the whole cluster's.
    pub fn full_view(mut self, yes: bool) -> Self {
        self.full_view = yes;
        self
    }

    /// Keep the `k` heaviest queries in the fact and the per-query samples (default 20).
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Truncate the SQL text in the fact to `chars` characters (default 500).
    pub fn sql_limit(mut self, chars: usize) -> Self {
        self.sql_limit = chars;
        self
    }

    /// Use another probe id (default `trino.queries`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

fn is_done(state: &str) -> bool {
    matches!(state, "FINISHED" | "FAILED")
}

#[async_trait]
impl<C: HttpClient> Probe for TrinoQueries<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let path = "/v1/query";
        let endpoint = self.client.url(path);
        let site = ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let req = HttpRequest::get(path).header("X-Trino-User", self.user.as_str());
        let resp = rest::send(&site, ctx, &self.client, req).await?;
        let list = parse_query_list(&site, &resp)?;
        let mut queries = Vec::new();
        for (i, q) in list.into_iter().enumerate() {
            if is_done(&q.state) {
                continue;
            }
            let st = &q.query_stats;
            let dur = |field: &str, v: Option<&str>| -> Result<f64, ProbeError> {
                match v {
                    None => Ok(0.0),
                    Some(s) => {
                        parse_duration(s).ok_or_else(|| bad(&site, i, field, s, "a duration"))
                    }
                }
            };
            let size = |field: &str, v: Option<&str>| -> Result<f64, ProbeError> {
                match v {
                    None => Ok(0.0),
                    Some(s) => {
                        parse_data_size(s).ok_or_else(|| bad(&site, i, field, s, "a data size"))
                    }
                }
            };
            let memory = size("totalMemoryReservation", Some(&st.total_memory_reservation))?;
            queries.push(TrinoQuery {
                elapsed_seconds: dur("elapsedTime", Some(&st.elapsed_time))?,
                queued_seconds: dur("queuedTime", st.queued_time.as_deref())?,
                cpu_seconds: dur("totalCpuTime", st.total_cpu_time.as_deref())?,
                memory_bytes: memory,
                peak_memory_bytes: size(
                    "peakTotalMemoryReservation",
                    st.peak_total_memory_reservation.as_deref(),
                )?
                .max(memory),
                fully_blocked: st.fully_blocked,
                blocked_reasons: st.blocked_reasons.clone(),
                query: rest::truncate(&q.query, self.sql_limit).0,
                query_id: q.query_id,
                state: q.state,
                user: q.session.user,
                source: q.session.source,
                resource_group: q.resource_group_id.map(|g| g.join(".")),
            });
        }
        Ok(self.to_observation(ctx.now(), queries))
    }
}

fn bad(site: &ProbeSite<'_>, i: usize, field: &str, v: &str, what: &str) -> ProbeError {
    site.error(
        ErrorKind::BadResponse,
        format!("malformed JSON at /{i}/queryStats/{field}: {v:?} is not {what}"),
    )
}

impl<C: HttpClient> TrinoQueries<C> {
    fn to_observation(&self, now: Timestamp, queries: Vec<TrinoQuery>) -> Observation {
        let mut obs = Observation::new(&self.id, &self.target.name, now);
        let count =
            |f: &dyn Fn(&TrinoQuery) -> bool| queries.iter().filter(|q| f(q)).count() as f64;
        obs.push_sample(
            "trino_queries_queued",
            Labels::new(),
            count(&|q| q.state == "QUEUED"),
        );
        obs.push_sample(
            "trino_queries_running",
            Labels::new(),
            count(&|q| q.state == "RUNNING" && !q.fully_blocked),
        );
        obs.push_sample(
            "trino_queries_blocked",
            Labels::new(),
            count(&|q| q.state == "RUNNING" && q.fully_blocked),
        );
        obs.push_sample("trino_queries_active", Labels::new(), queries.len() as f64);
        let active = queries.len();
        let mut top = TopK::new(self.top_k);
        for q in queries {
            top.push(q.memory_bytes, q);
        }
        let kept: Vec<TrinoQuery> = top.into_sorted().into_iter().map(|(_, q)| q).collect();
        for q in &kept {
            let l = labels(&[
                ("query_id", &q.query_id),
                ("user", &q.user),
                ("state", &q.state),
            ]);
            obs.push_sample("trino_query_memory_bytes", l.clone(), q.memory_bytes);
            obs.push_sample("trino_query_elapsed_seconds", l, q.elapsed_seconds);
        }
        if !self.full_view {
            obs.mark_incomplete(format!(
                "GET /v1/query lists only the queries user {} may view; counts may miss other users' queries (declare full_view when the user may view all)",
                self.user
            ));
        }
        let fact = TrinoQueriesFact {
            user: self.user.clone(),
            view_may_be_partial: !self.full_view,
            active,
            truncated: kept.len() < active,
            queries: kept,
        };
        obs.fact(&fact)
    }
}

// ----- SQL --------------------------------------------------------------------------------------

/// The result of a statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrinoSqlResult {
    /// Trino's query id.
    pub query_id: String,
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows (at most the probe's `max_rows`).
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Whether the probe stopped reading before the end.
    pub truncated: bool,
}

impl FactType for TrinoSqlResult {
    const KIND: &'static str = "trino.sql";
}

#[derive(Debug, Clone)]
struct MetricSpec {
    name: String,
    value: String,
    labels: Vec<String>,
}

/// One SQL statement as a probe (see the [module docs](self)).
#[derive(Debug)]
pub struct TrinoSql<C> {
    client: C,
    target: Target,
    id: String,
    user: String,
    sql: String,
    catalog: Option<String>,
    schema: Option<String>,
    max_rows: usize,
    metric: Option<MetricSpec>,
}

impl<C: HttpClient> TrinoSql<C> {
    /// Run `sql` as `user` (`X-Trino-User`).
    pub fn new(client: C, target: Target, user: impl Into<String>, sql: impl Into<String>) -> Self {
        Self {
            client,
            target,
            id: "trino.sql".into(),
            user: user.into(),
            sql: sql.into(),
            catalog: None,
            schema: None,
            max_rows: 1_000,
            metric: None,
        }
    }

    /// Default catalog (`X-Trino-Catalog`).
    pub fn catalog(mut self, catalog: impl Into<String>) -> Self {
        self.catalog = Some(catalog.into());
        self
    }

    /// Default schema (`X-Trino-Schema`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Read at most `rows` rows (default 1,000).
    pub fn max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows;
        self
    }

    /// Emit one sample `name` per row: the value of column `value` (a number, or a numeric string),
    /// labelled with the `labels` columns.
    pub fn metric(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        labels: &[&str],
    ) -> Self {
        self.metric = Some(MetricSpec {
            name: name.into(),
            value: value.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    /// Use another probe id (default `trino.sql`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

/// The path of a `nextUri` relative to the client's base: from `/v1/statement/` on (the coordinator
/// writes absolute URIs with its own idea of its address; the client keeps talking to its base).
fn next_path(uri: &str) -> Option<&str> {
    uri.find("/v1/statement/").map(|i| &uri[i..])
}

fn cell_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[async_trait]
impl<C: HttpClient> Probe for TrinoSql<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let endpoint = self.client.url("/v1/statement");
        let site = ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let mut req = HttpRequest::new(Method::Post, "/v1/statement")
            .header("X-Trino-User", self.user.as_str())
            .header("X-Trino-Source", "rb")
            .header("content-type", "text/plain; charset=utf-8");
        if let Some(c) = &self.catalog {
            req = req.header("X-Trino-Catalog", c.as_str());
        }
        if let Some(s) = &self.schema {
            req = req.header("X-Trino-Schema", s.as_str());
        }
        req.body = Some(self.sql.clone().into_bytes());
        let mut resp = rest::send(&site, ctx, &self.client, req).await?;
        let mut columns: Option<Vec<Column>> = None;
        let mut rows: Vec<Vec<serde_json::Value>> = Vec::new();
        let mut truncated = false;
        let query_id;
        loop {
            let page = parse_query_results(&site, &resp)?;
            if columns.is_none() {
                columns = page.columns;
            }
            if let Some(data) = page.data {
                rows.extend(data);
            }
            let Some(next) = page.next_uri else {
                query_id = page.id;
                if page.stats.and_then(|s| s.state).as_deref() == Some("FAILED") {
                    return Err(site.error(
                        ErrorKind::Rejected,
                        format!("query {query_id} FAILED without an error"),
                    ));
                }
                break;
            };
            let Some(path) = next_path(&next) else {
                return Err(site.error(
                    ErrorKind::BadResponse,
                    format!("malformed JSON at /nextUri: {next:?} is not a statement URI"),
                ));
            };
            if rows.len() >= self.max_rows {
                truncated = true;
                query_id = page.id;
                // Abandon the query (best effort: the coordinator also drops it when nobody polls).
                let _ = rest::send(
                    &site,
                    ctx,
                    &self.client,
                    HttpRequest::new(Method::Delete, path),
                )
                .await;
                break;
            }
            resp = rest::send(&site, ctx, &self.client, HttpRequest::get(path)).await?;
        }
        if rows.len() > self.max_rows {
            rows.truncate(self.max_rows);
            truncated = true;
        }
        let columns = columns.unwrap_or_default();
        let mut obs = Observation::new(&self.id, &self.target.name, ctx.now());
        obs.push_sample("trino_sql_rows", Labels::new(), rows.len() as f64);
        if truncated {
            obs.mark_incomplete(format!("result cut at {} rows", self.max_rows));
        }
        if let Some(m) = &self.metric {
            let index = |name: &str| columns.iter().position(|c| c.name == name);
            let Some(vi) = index(&m.value) else {
                return Err(site.error(
                    ErrorKind::Invalid,
                    format!(
                        "the result has no column {:?} for metric {}",
                        m.value, m.name
                    ),
                ));
            };
            let mut li = Vec::new();
            for l in &m.labels {
                match index(l) {
                    Some(i) => li.push((l.as_str(), i)),
                    None => {
                        return Err(site.error(
                            ErrorKind::Invalid,
                            format!("the result has no column {l:?} for metric {}", m.name),
                        ))
                    }
                }
            }
            for (r, row) in rows.iter().enumerate() {
                let cell = row.get(vi).unwrap_or(&serde_json::Value::Null);
                let value = match cell {
                    serde_json::Value::Number(n) => n.as_f64(),
                    serde_json::Value::String(s) => match s.as_str() {
                        "NaN" => Some(f64::NAN),
                        "Infinity" => Some(f64::INFINITY),
                        "-Infinity" => Some(f64::NEG_INFINITY),
                        s => s.parse().ok(),
                    },
                    _ => None,
                };
                let Some(value) = value else {
                    obs.mark_incomplete(format!(
                        "row {r}: column {} is {cell}, not a number",
                        m.value
                    ));
                    continue;
                };
                let l: Labels = li
                    .iter()
                    .map(|(name, i)| {
                        (
                            name.to_string(),
                            cell_text(row.get(*i).unwrap_or(&serde_json::Value::Null)),
                        )
                    })
                    .collect();
                obs.push_sample(m.name.clone(), l, value);
            }
        }
        Ok(obs.fact(&TrinoSqlResult {
            query_id,
            columns,
            rows,
            truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_uri_paths() {
        assert_eq!(
            next_path("http://coordinator:8080/v1/statement/queued/q1/y1/1"),
            Some("/v1/statement/queued/q1/y1/1")
        );
        assert_eq!(
            next_path("/v1/statement/executing/q/y/2"),
            Some("/v1/statement/executing/q/y/2")
        );
        assert_eq!(next_path("http://evil/elsewhere"), None);
    }
}
