//! MinIO: liveness, write and read quorum, whether a node may be taken down (maintenance check),
//! and free capacity.
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
//! | `minio_healing_drives` | `X-Minio-Healing-Drives`, only when sent (MinIO sends it to maintenance checks only: see [`MinioMaintenance`]) |
//!
//! A 503 is an answer, not an error: it is what a lost quorum looks like. Other statuses are
//! rejected. **Fact** [`MinioHealthFact`] (`minio.health`): the three statuses, the quorums, and
//! `x-minio-server-status` (`offline`, `bucket-metadata-offline`, `iam-offline`) when the node is
//! still initialising. When one or two of the three requests fail, the observation carries what
//! was seen and is marked incomplete; when all fail, the first error is returned.
//!
//! ## [`MinioMaintenance`] — may this node be taken down? (unauthenticated)
//!
//! `GET /minio/health/cluster?maintenance=true` (or `/minio/health/cluster/read?maintenance=true`,
//! [`MinioMaintenance::quorum`]): the check an orchestrator runs before draining a node. MinIO
//! leaves the answering node's own drives out of the count and answers **200** when every erasure
//! set keeps its quorum without them and no drive of the other nodes is healing, **412
//! Precondition Failed** otherwise — also when the quorum is already lost (a maintenance check
//! never answers 503 for that) — and **503** with `x-minio-server-status` while the node is still
//! initialising. `X-Minio-Healing-Drives` (healing drives of the other nodes) is sent only to
//! maintenance checks, only when > 0.
//!
//! | metric | meaning |
//! | --- | --- |
//! | `minio_maintenance_safe{quorum}` | 1 on 200; 0 on 412 and on 503-initialising (unknown is not safe) |
//! | `minio_maintenance_healing_drives{quorum}` | `X-Minio-Healing-Drives` (0 when not sent; absent while initialising) |
//! | `minio_write_quorum` or `minio_read_quorum` | drives the quorum needs |
//!
//! **Fact** [`MinioMaintenanceFact`] (`minio.maintenance`) with a [`MaintenanceVerdict`]: safe,
//! quorum at risk, drives healing (a 412 naming healing drives) or node initialising.
//! **Errors:** refused → unreachable; 5xx (a 503 without `x-minio-server-status` is not MinIO's
//! health answer) and 4xx other than 412 → rejected; a 200 or 412 without the quorum header, or
//! with a quorum, healing-drive or `X-Minio-Storage-Class-Defaults` header that does not parse →
//! bad response naming the header (a verdict that is not MinIO's is never taken as safe).
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
//! **Least privilege:** the health and maintenance endpoints need nothing; the metrics endpoint
//! needs the JWT that `mc admin prometheus generate <alias> cluster` prints (scoped to metrics), or
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
    /// `X-Minio-Healing-Drives`, 0 when not sent. MinIO sends it only to maintenance checks, so
    /// on a real server this stays 0: [`MinioMaintenance`] reports healing drives.
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
        let healing_sent = [&write, &read]
            .into_iter()
            .flatten()
            .any(|r| r.header("x-minio-healing-drives").is_some());
        if healing_sent {
            obs.push_sample(
                "minio_healing_drives",
                Labels::new(),
                f64::from(fact.healing_drives),
            );
        }
        Ok(obs.fact(&fact))
    }
}

// ----- maintenance ------------------------------------------------------------------------------

/// Which quorum a [`MinioMaintenance`] check asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceQuorum {
    /// `/minio/health/cluster?maintenance=true`: would writes still have quorum (the default, and
    /// the stricter: the write quorum is never below the read quorum).
    Write,
    /// `/minio/health/cluster/read?maintenance=true`: would reads still have quorum.
    Read,
}

impl MaintenanceQuorum {
    fn path(self) -> &'static str {
        match self {
            Self::Write => "/minio/health/cluster?maintenance=true",
            Self::Read => "/minio/health/cluster/read?maintenance=true",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::Write => "x-minio-write-quorum",
            Self::Read => "x-minio-read-quorum",
        }
    }
}

/// MinIO's answer to "may this node be taken down?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceVerdict {
    /// 200: without this node's drives every erasure set keeps its quorum and no drive of the
    /// other nodes is healing.
    Safe,
    /// 412 with no drive healing: without this node's drives some erasure set would fall below
    /// its quorum — or already has (MinIO answers 412 then too).
    QuorumAtRisk,
    /// 412 while drives of the other nodes heal (`X-Minio-Healing-Drives`): MinIO refuses
    /// maintenance until they finish (the quorum may be short as well; the answer does not say).
    DrivesHealing,
    /// 503 with `x-minio-server-status`: the node is still initialising and cannot judge. Not safe.
    NodeInitialising,
}

impl MaintenanceVerdict {
    /// Whether the node may be taken down (only [`MaintenanceVerdict::Safe`]).
    pub fn is_safe(self) -> bool {
        self == Self::Safe
    }
}

/// What a maintenance check answered (kind `minio.maintenance`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinioMaintenanceFact {
    /// The quorum asked about.
    pub quorum_kind: MaintenanceQuorum,
    /// The HTTP status (200, 412 or 503).
    pub status: u16,
    /// The verdict.
    pub verdict: MaintenanceVerdict,
    /// Drives the quorum needs (`X-Minio-Write-Quorum` / `X-Minio-Read-Quorum`; absent on 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Drives healing on the other nodes (`X-Minio-Healing-Drives`; MinIO sends it only when > 0).
    pub healing_drives: u32,
    /// `X-Minio-Storage-Class-Defaults`: the node uses the default parity (its storage-class
    /// configuration was not loaded), when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_defaults: Option<bool>,
    /// `x-minio-server-status` of an initialising node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_status: Option<String>,
}

impl FactType for MinioMaintenanceFact {
    const KIND: &'static str = "minio.maintenance";
}

/// Whether the node behind the client may be taken down without losing quorum (see the
/// [module docs](self)): the check orchestrators run before draining a MinIO node.
#[derive(Debug)]
pub struct MinioMaintenance<C> {
    client: C,
    target: Target,
    id: String,
    quorum: MaintenanceQuorum,
}

impl<C: HttpClient> MinioMaintenance<C> {
    /// Ask the node behind `client` about the write quorum.
    pub fn new(client: C, target: Target) -> Self {
        Self {
            client,
            target,
            id: "minio.maintenance".into(),
            quorum: MaintenanceQuorum::Write,
        }
    }

    /// Ask about another quorum (default [`MaintenanceQuorum::Write`]).
    pub fn quorum(mut self, quorum: MaintenanceQuorum) -> Self {
        self.quorum = quorum;
        self
    }

    /// Use another probe id (default `minio.maintenance`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

/// A header that must be a non-negative integer when present; anything else is a bad response
/// naming the header and its value.
fn strict_u32(
    site: &ProbeSite<'_>,
    r: &HttpResponse,
    name: &str,
) -> Result<Option<u32>, ProbeError> {
    match r.header(name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            site.error(
                ErrorKind::BadResponse,
                format!(
                    "HTTP {}: header {name} is not a drive count: {:?}",
                    r.status,
                    v.chars().take(40).collect::<String>()
                ),
            )
        }),
    }
}

/// Judge a maintenance-check answer (no transport involved).
pub fn judge_maintenance(
    site: &ProbeSite<'_>,
    quorum_kind: MaintenanceQuorum,
    r: &HttpResponse,
) -> Result<MinioMaintenanceFact, ProbeError> {
    let server_status = r.header("x-minio-server-status").map(str::to_string);
    let verdict = match r.status {
        200 => MaintenanceVerdict::Safe,
        412 => MaintenanceVerdict::QuorumAtRisk,
        503 if server_status.is_some() => MaintenanceVerdict::NodeInitialising,
        // a 503 without the initialising header is not MinIO's health answer (a proxy, an
        // overloaded front): an error, as every other failure status
        s if s >= 400 => {
            return Err(match check_status(site, r) {
                Err(e) => e,
                Ok(()) => site.error(ErrorKind::Rejected, format!("HTTP {s}")),
            })
        }
        s => {
            return Err(site.error(
                ErrorKind::BadResponse,
                format!("unexpected status {s} for a maintenance check"),
            ))
        }
    };
    let quorum = strict_u32(site, r, quorum_kind.header())?;
    let healing_drives = strict_u32(site, r, "x-minio-healing-drives")?.unwrap_or(0);
    let storage_class_defaults = match r.header("x-minio-storage-class-defaults") {
        None => None,
        Some(v) => Some(match v.trim() {
            "true" => true,
            "false" => false,
            other => {
                return Err(site.error(
                    ErrorKind::BadResponse,
                    format!(
                        "HTTP {}: header x-minio-storage-class-defaults is not true or false: {:?}",
                        r.status,
                        other.chars().take(40).collect::<String>()
                    ),
                ))
            }
        }),
    };
    // MinIO sets the quorum header on every answer it computed (200 and 412): without it the
    // verdict is not MinIO's, and an unknown is never safe.
    if verdict != MaintenanceVerdict::NodeInitialising && quorum.is_none() {
        return Err(site.error(
            ErrorKind::BadResponse,
            format!(
                "HTTP {} without header {}: not a MinIO health answer",
                r.status,
                quorum_kind.header()
            ),
        ));
    }
    let verdict = if verdict == MaintenanceVerdict::QuorumAtRisk && healing_drives > 0 {
        MaintenanceVerdict::DrivesHealing
    } else {
        verdict
    };
    Ok(MinioMaintenanceFact {
        quorum_kind,
        status: r.status,
        verdict,
        quorum,
        healing_drives,
        storage_class_defaults,
        server_status,
    })
}

#[async_trait]
impl<C: HttpClient> Probe for MinioMaintenance<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let path = self.quorum.path();
        let endpoint = self.client.url(path);
        let site = ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let resp = rest::send(&site, ctx, &self.client, HttpRequest::get(path)).await?;
        let fact = judge_maintenance(&site, self.quorum, &resp)?;
        let mut obs = Observation::new(&self.id, &self.target.name, ctx.now());
        let l = rb_core::labels(&[(
            "quorum",
            match self.quorum {
                MaintenanceQuorum::Write => "write",
                MaintenanceQuorum::Read => "read",
            },
        )]);
        obs.push_sample(
            "minio_maintenance_safe",
            l.clone(),
            if fact.verdict.is_safe() { 1.0 } else { 0.0 },
        );
        if fact.verdict != MaintenanceVerdict::NodeInitialising {
            obs.push_sample(
                "minio_maintenance_healing_drives",
                l.clone(),
                f64::from(fact.healing_drives),
            );
        }
        if let Some(q) = fact.quorum {
            let name = match self.quorum {
                MaintenanceQuorum::Write => "minio_write_quorum",
                MaintenanceQuorum::Read => "minio_read_quorum",
            };
            obs.push_sample(name, Labels::new(), f64::from(q));
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

    fn answer(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: vec![],
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn maintenance_verdicts() {
        let w = MaintenanceQuorum::Write;
        let f =
            judge_maintenance(&site(), w, &answer(200, &[("x-minio-write-quorum", "3")])).unwrap();
        assert_eq!(
            (f.verdict, f.quorum, f.healing_drives),
            (MaintenanceVerdict::Safe, Some(3), 0)
        );
        let f =
            judge_maintenance(&site(), w, &answer(412, &[("x-minio-write-quorum", "3")])).unwrap();
        assert_eq!(f.verdict, MaintenanceVerdict::QuorumAtRisk);
        let f = judge_maintenance(
            &site(),
            w,
            &answer(
                412,
                &[
                    ("x-minio-write-quorum", "3"),
                    ("x-minio-healing-drives", "4"),
                ],
            ),
        )
        .unwrap();
        assert_eq!(
            (f.verdict, f.healing_drives),
            (MaintenanceVerdict::DrivesHealing, 4)
        );
        let f = judge_maintenance(
            &site(),
            w,
            &answer(503, &[("x-minio-server-status", "offline")]),
        )
        .unwrap();
        assert_eq!(f.verdict, MaintenanceVerdict::NodeInitialising);
        // the read check reads the read-quorum header, not the write one
        let e = judge_maintenance(
            &site(),
            MaintenanceQuorum::Read,
            &answer(200, &[("x-minio-write-quorum", "3")]),
        )
        .unwrap_err();
        assert!(e.message.contains("x-minio-read-quorum"), "{e}");
        for status in [204, 302] {
            let e = judge_maintenance(
                &site(),
                w,
                &answer(status, &[("x-minio-write-quorum", "3")]),
            )
            .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadResponse);
        }
        let e = judge_maintenance(&site(), w, &answer(404, &[])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
    }

    proptest! {
        #[test]
        fn maintenance_is_safe_only_on_a_200_with_a_quorum(
            status in 100u16..600,
            quorum in proptest::option::of("[ -~]{0,8}"),
            healing in proptest::option::of("[ -~]{0,8}"),
            defaults in proptest::option::of("[ -~]{0,6}"),
            initialising in any::<bool>(),
        ) {
            let mut h: Vec<(&str, &str)> = Vec::new();
            if let Some(q) = &quorum { h.push(("x-minio-write-quorum", q)); }
            if let Some(v) = &healing { h.push(("x-minio-healing-drives", v)); }
            if let Some(v) = &defaults { h.push(("x-minio-storage-class-defaults", v)); }
            if initialising { h.push(("x-minio-server-status", "offline")); }
            match judge_maintenance(&site(), MaintenanceQuorum::Write, &answer(status, &h)) {
                Ok(f) => {
                    prop_assert!(matches!(status, 200 | 412 | 503));
                    if f.verdict.is_safe() {
                        prop_assert_eq!(status, 200);
                        prop_assert!(f.quorum.is_some());
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e.target.as_str(), "minio");
                    prop_assert!(!e.message.is_empty());
                }
            }
        }

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
