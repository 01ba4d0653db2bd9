//! MinIO: liveness, write and read quorum, and free capacity.
//!
//! ## [`MinioHealth`] — the health endpoints (unauthenticated)
//!
//! `GET /minio/health/live`, `/minio/health/cluster` (write quorum) and `/minio/health/cluster/read`
//! (read quorum), concurrently.
//!
//! | metric | meaning |
//! | --- | --- |
//! | `minio_live` | 1 on 200; 0 on 503 (`ServerBusy`: the node's request queue is full) |
//! | `minio_cluster_write_quorum_ok` | 1 on 200, 0 on 503 (the cluster lost write quorum, or the node is still initialising) |
//! | `minio_cluster_read_quorum_ok` | the same for read quorum |
//! | `minio_write_quorum`, `minio_read_quorum` | drives needed, from `X-Minio-Write-Quorum` / `X-Minio-Read-Quorum` (when sent) |
//! | `minio_healing_drives` | `X-Minio-Healing-Drives` (0 when absent) |
//!
//! A 503 is an answer, not an error: it is what a lost quorum looks like. Other statuses are
//! rejected. **Fact** [`MinioHealthFact`] (`minio.health`): the three statuses, the quorums, and
//! `x-minio-server-status` (`offline`, `bucket-metadata-offline`, `iam-offline`) when the node is
//! still initialising. When one or two of the three requests fail, the observation carries what
//! was seen and is marked incomplete; when all fail, the first error is returned.
//!
//! ## [`MinioCapacity`] — the metrics endpoint (bearer token)
//!
//! `GET /minio/v2/metrics/cluster` (Prometheus text, parsed with [`crate::exposition`]). Every node
//! reports the **cluster-wide** figure, so the probe takes one report — never the sum — and records
//! in the fact how many reported it and whether they disagreed.
//!
//! | metric | meaning |
//! | --- | --- |
//! | `minio_cluster_capacity_usable_free_bytes` | usable (after erasure coding) free bytes: the one to alert on |
//! | `minio_cluster_capacity_usable_total_bytes` | usable total |
//! | `minio_cluster_capacity_usable_free_ratio` | free / total |
//! | `minio_cluster_capacity_raw_free_bytes`, `…_raw_total_bytes` | raw, across drives |
//! | `minio_cluster_drive_offline_total`, `minio_cluster_nodes_offline_total` | when reported |
//!
//! The v3 names (`minio_cluster_health_capacity_usable_free_bytes`, from
//! `/minio/metrics/v3/cluster/health`, [`MinioCapacity::path`]) are read too and reported under the
//! v2 names. An answer without the usable free capacity is an incomplete observation. **Fact**
//! [`MinioCapacityFact`] (`minio.capacity`).
//!
//! **Errors:** 403 (no or a wrong bearer token: `mc admin prometheus generate`) → unauthorized; text
//! that is not the exposition format → bad response naming the line and column.
//!
//! **Least privilege:** the health endpoints need nothing; the metrics endpoint needs the JWT that
//! `mc admin prometheus generate <alias> cluster` prints (scoped to metrics), or
//! `MINIO_PROMETHEUS_AUTH_TYPE=public`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rb_core::{ErrorKind, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Target};
use serde::{Deserialize, Serialize};

use crate::common::ProbeSite;
use crate::exposition;
use crate::rest;
use crate::transport::{check_status, HttpClient, HttpRequest, HttpResponse};

// ----- health -----------------------------------------------------------------------------------

/// What the health endpoints answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinioHealthFact {
    /// Status of `/minio/health/live`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_status: Option<u16>,
    /// The S3 error code of a 503 liveness answer (`ServerBusy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_error: Option<String>,
    /// Status of `/minio/health/cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_status: Option<u16>,
    /// Status of `/minio/health/cluster/read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_status: Option<u16>,
    /// `X-Minio-Write-Quorum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quorum: Option<u32>,
    /// `X-Minio-Read-Quorum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_quorum: Option<u32>,
    /// `X-Minio-Healing-Drives`.
    pub healing_drives: u32,
    /// `x-minio-server-status` while the node initialises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_status: Option<String>,
}

impl FactType for MinioHealthFact {
    const KIND: &'static str = "minio.health";
}

/// Liveness and quorum (see the [module docs](self)).
#[derive(Debug)]
pub struct MinioHealth<C> {
    client: C,
    target: Target,
    id: String,
}

impl<C: HttpClient> MinioHealth<C> {
    /// The node behind `client`.
    pub fn new(client: C, target: Target) -> Self {
        Self {
            client,
            target,
            id: "minio.health".into(),
        }
    }

    /// Use another probe id (default `minio.health`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    async fn get(&self, ctx: &ProbeContext, path: &str) -> Result<HttpResponse, ProbeError> {
        let endpoint = self.client.url(path);
        let site = self.site(&endpoint);
        let resp = rest::send(&site, ctx, &self.client, HttpRequest::get(path)).await?;
        if resp.status == 200 || resp.status == 503 {
            Ok(resp)
        } else {
            check_status(&site, &resp)?;
            Err(site.error(
                ErrorKind::BadResponse,
                format!("unexpected status {} for a health check", resp.status),
            ))
        }
    }

    fn site<'a>(&'a self, endpoint: &'a str) -> ProbeSite<'a> {
        ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint,
        }
    }
}

fn header_u32(r: &HttpResponse, name: &str) -> Option<u32> {
    r.header(name).and_then(|v| v.trim().parse().ok())
}

/// The `<Code>` of an S3 XML error body.
fn s3_code(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_string())
}

#[async_trait]
impl<C: HttpClient> Probe for MinioHealth<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let (live, write, read) = tokio::join!(
            self.get(ctx, "/minio/health/live"),
            self.get(ctx, "/minio/health/cluster"),
            self.get(ctx, "/minio/health/cluster/read"),
        );
        // nothing answered: the first error is the probe's
        let live = match live {
            Err(e) if write.is_err() && read.is_err() => return Err(e),
            other => other,
        };
        let mut obs = Observation::new(&self.id, &self.target.name, ctx.now());
        let mut fact = MinioHealthFact {
            live_status: None,
            live_error: None,
            write_status: None,
            read_status: None,
            write_quorum: None,
            read_quorum: None,
            healing_drives: 0,
            server_status: None,
        };
        let ok = |r: &HttpResponse| if r.status == 200 { 1.0 } else { 0.0 };
        let note = |fact: &mut MinioHealthFact, r: &HttpResponse| {
            if let Some(s) = r.header("x-minio-server-status") {
                fact.server_status = Some(s.to_string());
            }
        };
        match &live {
            Ok(r) => {
                obs.push_sample("minio_live", Labels::new(), ok(r));
                fact.live_status = Some(r.status);
                if r.status != 200 {
                    fact.live_error = s3_code(&r.body);
                }
                note(&mut fact, r);
            }
            Err(e) => obs.mark_incomplete(format!("liveness: {e}")),
        }
        for (res, read_side) in [(&write, false), (&read, true)] {
            match res {
                Ok(r) => {
                    let (ok_name, q_name, header) = if read_side {
                        (
                            "minio_cluster_read_quorum_ok",
                            "minio_read_quorum",
                            "x-minio-read-quorum",
                        )
                    } else {
                        (
                            "minio_cluster_write_quorum_ok",
                            "minio_write_quorum",
                            "x-minio-write-quorum",
                        )
                    };
                    obs.push_sample(ok_name, Labels::new(), ok(r));
                    let q = header_u32(r, header);
                    if let Some(q) = q {
                        obs.push_sample(q_name, Labels::new(), f64::from(q));
                    }
                    fact.healing_drives = fact
                        .healing_drives
                        .max(header_u32(r, "x-minio-healing-drives").unwrap_or(0));
                    if read_side {
                        fact.read_status = Some(r.status);
                        fact.read_quorum = q;
                    } else {
                        fact.write_status = Some(r.status);
                        fact.write_quorum = q;
                    }
                    note(&mut fact, r);
                }
                Err(e) => obs.mark_incomplete(format!(
                    "{} quorum: {e}",
                    if read_side { "read" } else { "write" }
                )),
            }
        }
        if write.is_ok() || read.is_ok() {
            obs.push_sample(
                "minio_healing_drives",
                Labels::new(),
                f64::from(fact.healing_drives),
            );
        }
        Ok(obs.fact(&fact))
    }
}

// ----- capacity ---------------------------------------------------------------------------------

/// The cluster's capacity as the metrics endpoint reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinioCapacityFact {
    /// Usable free bytes (one node's report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usable_free_bytes: Option<f64>,
    /// Usable total bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usable_total_bytes: Option<f64>,
    /// Raw free bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_free_bytes: Option<f64>,
    /// Raw total bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_total_bytes: Option<f64>,
    /// The `server` labels that reported the usable free capacity.
    pub reported_by: Vec<String>,
    /// Whether those reports disagreed (the first is used).
    pub reports_disagree: bool,
}

impl FactType for MinioCapacityFact {
    const KIND: &'static str = "minio.capacity";
}

/// Free capacity from the metrics endpoint (see the [module docs](self)).
#[derive(Debug)]
pub struct MinioCapacity<C> {
    client: C,
    target: Target,
    id: String,
    path: String,
}

impl<C: HttpClient> MinioCapacity<C> {
    /// Read `/minio/v2/metrics/cluster` through `client` (give it `HttpAuth::Bearer` with the
    /// metrics token unless metrics are public).
    pub fn new(client: C, target: Target) -> Self {
        Self {
            client,
            target,
            id: "minio.capacity".into(),
            path: "/minio/v2/metrics/cluster".into(),
        }
    }

    /// Read another metrics path (`/minio/metrics/v3/cluster/health`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Use another probe id (default `minio.capacity`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

/// Parse a metrics answer: exposition errors are [`ErrorKind::BadResponse`] naming line and column.
pub fn parse_metrics(
    site: &ProbeSite<'_>,
    resp: &HttpResponse,
) -> Result<exposition::Exposition, ProbeError> {
    check_status(site, resp)?;
    let text = std::str::from_utf8(&resp.body).map_err(|e| {
        site.error(
            ErrorKind::BadResponse,
            format!("metrics are not UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    exposition::parse(text)
        .map_err(|e| site.error(ErrorKind::BadResponse, format!("malformed metrics at {e}")))
}

/// (v2 name, v3 name) of the figures the probe reads.
const FIGURES: &[(&str, &str)] = &[
    (
        "minio_cluster_capacity_usable_free_bytes",
        "minio_cluster_health_capacity_usable_free_bytes",
    ),
    (
        "minio_cluster_capacity_usable_total_bytes",
        "minio_cluster_health_capacity_usable_total_bytes",
    ),
    (
        "minio_cluster_capacity_raw_free_bytes",
        "minio_cluster_health_capacity_raw_free_bytes",
    ),
    (
        "minio_cluster_capacity_raw_total_bytes",
        "minio_cluster_health_capacity_raw_total_bytes",
    ),
    (
        "minio_cluster_drive_offline_total",
        "minio_cluster_health_drives_offline_count",
    ),
    (
        "minio_cluster_drive_online_total",
        "minio_cluster_health_drives_online_count",
    ),
    (
        "minio_cluster_nodes_offline_total",
        "minio_cluster_health_nodes_offline_count",
    ),
];

#[async_trait]
impl<C: HttpClient> Probe for MinioCapacity<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let endpoint = self.client.url(&self.path);
        let site = ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let resp = rest::send(
            &site,
            ctx,
            &self.client,
            HttpRequest::get(self.path.as_str()),
        )
        .await?;
        let exp = parse_metrics(&site, &resp)?;
        let mut obs = Observation::new(&self.id, &self.target.name, ctx.now());
        let mut got: BTreeMap<&str, f64> = BTreeMap::new();
        let mut reported_by = Vec::new();
        let mut disagree = false;
        for (v2, v3) in FIGURES {
            let reports: Vec<&exposition::TextSample> =
                exp.named(v2).chain(exp.named(v3)).collect();
            let Some(first) = reports.first() else {
                continue;
            };
            // every node reports the cluster-wide figure: one report, never the sum
            got.insert(v2, first.value);
            if *v2 == "minio_cluster_capacity_usable_free_bytes" {
                reported_by = reports
                    .iter()
                    .map(|s| s.labels.get("server").cloned().unwrap_or_default())
                    .collect();
                disagree = reports.iter().any(|s| s.value != first.value);
            }
            obs.push_sample(*v2, Labels::new(), first.value);
        }
        let free = got.get("minio_cluster_capacity_usable_free_bytes").copied();
        let total = got
            .get("minio_cluster_capacity_usable_total_bytes")
            .copied();
        match (free, total) {
            (Some(f), Some(t)) if t > 0.0 => obs.push_sample(
                "minio_cluster_capacity_usable_free_ratio",
                Labels::new(),
                f / t,
            ),
            (None, _) => obs.mark_incomplete(format!(
                "{} has no minio_cluster_capacity_usable_free_bytes",
                self.path
            )),
            _ => {}
        }
        Ok(obs.fact(&MinioCapacityFact {
            usable_free_bytes: free,
            usable_total_bytes: total,
            raw_free_bytes: got.get("minio_cluster_capacity_raw_free_bytes").copied(),
            raw_total_bytes: got.get("minio_cluster_capacity_raw_total_bytes").copied(),
            reported_by,
            reports_disagree: disagree,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn site() -> ProbeSite<'static> {
        ProbeSite {
            probe: "minio.capacity",
            target: "minio",
            endpoint: "http://127.0.0.1:9000/minio/v2/metrics/cluster",
        }
    }

    fn ok(body: &[u8]) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    const PROM: &str =
        include_str!("../../../rb-testkit/fixtures/minio/metrics_v2_cluster_capacity_derived.prom");

    #[test]
    fn reads_the_reference_capture() {
        let e = parse_metrics(&site(), &ok(PROM.as_bytes())).unwrap();
        assert_eq!(
            e.first("minio_cluster_capacity_usable_free_bytes")
                .unwrap()
                .value,
            123_456_789_120.0
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let body = PROM.replace("} 9.87654321e+11", "} lots");
        let e = parse_metrics(&site(), &ok(body.as_bytes())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadResponse);
        assert!(e.message.contains("line 6, column"), "{}", e.message);
    }

    #[test]
    fn s3_error_codes() {
        assert_eq!(
            s3_code(b"<?xml version=\"1.0\"?><Error><Code>ServerBusy</Code></Error>").as_deref(),
            Some("ServerBusy")
        );
        assert_eq!(s3_code(b"<Code>open"), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_metrics(&site(), &ok(&b));
            let _ = s3_code(&b);
        }

        #[test]
        fn never_panics_on_mutated_captures(at in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
            let mut b = PROM.as_bytes().to_vec();
            let i = at % b.len();
            b[i] = byte;
            b.truncate(cut.max(1));
            let _ = parse_metrics(&site(), &ok(&b));
        }
    }
}
