//! A fake MinIO node: the health probes and the v2 cluster metrics rb reads.
//!
//! The fake models one erasure set spread over `nodes × drives_per_node` drives with MinIO's default
//! parity (1 drive: 0, 2–3: 1, 4–5: 2, 6–7: 3, 8+: 4). Read quorum = data drives; write quorum = data
//! drives, plus one when data = parity. The node answering is [`FakeMinio::set_local_node`] (default 0).
//!
//! | route (GET and HEAD, empty bodies) | answer |
//! |---|---|
//! | `/minio/health/live` | 200; **503** S3 `ServerBusy` error while [`FakeMinio::set_busy`] (XML body on GET) |
//! | `/minio/health/ready` | as live |
//! | `/minio/health/cluster` | 200 with write quorum, **503** without. Headers `X-Minio-Write-Quorum`, `X-Minio-Storage-Class-Defaults` |
//! | `/minio/health/cluster?maintenance=true` | the drives of the answering node are left out of the count: 200 if the rest still make the write quorum and none of them is healing, **412** otherwise (also when the quorum is already lost); `X-Minio-Healing-Drives` with the healing drives of the other nodes (when > 0) |
//! | `/minio/health/cluster/read` | same against read quorum, header `X-Minio-Read-Quorum` |
//! | `/minio/v2/metrics/cluster` | Prometheus text: `minio_cluster_capacity_{raw,usable}_{free,total}_bytes`, drive and node counts, `minio_cluster_write_quorum`, `minio_cluster_health_status`, `minio_node_drive_{free,total,used}_bytes` |
//!
//! This is `ClusterCheckHandler` and `erasureServerPools.Health` of MinIO (`cmd/healthcheck-handler.go`,
//! `cmd/erasure-server-pool.go`, RELEASE 2025): `maintenance` counts only when its first value is
//! exactly `true`; healing drives are reported (and block maintenance) only on a maintenance check,
//! and only those of the other nodes (the local drives are left out before counting).
//!
//! While [`FakeMinio::set_server_status`] holds a status (`offline`, `bucket-metadata-offline`,
//! `iam-offline`) the node is still initialising: cluster probes answer 503 — maintenance checks
//! too — without quorum headers, and every health probe carries `x-minio-server-status`.
//! [`FakeMinio::override_health_header`] rewrites or removes a header of the cluster checks (what a
//! proxy or a broken build might send), for the probes' malformed-input tests. Metrics are public by default (`MINIO_PROMETHEUS_AUTH_TYPE=public`);
//! [`FakeMinio::require_metrics_token`] makes them need `Authorization: Bearer <token>` (403 JSON
//! `AccessDenied` otherwise). There is no `minio_cluster_disk_free_bytes`: it never existed.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use rb_testkit::http::minio::FakeMinio;
//! let minio = FakeMinio::start(4, 1).await?; // 4 nodes × 1 drive: write quorum 3
//! minio.set_usable_capacity(1_000_000_000_000, 50_000_000_000); // 5 % free
//! minio.set_node_online(1, false);
//! minio.set_node_online(2, false); // 2 of 4 drives left: /minio/health/cluster → 503
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::prometheus::fmt_sample;
use super::FakeHttp;

#[derive(Debug)]
struct MinioState {
    nodes: usize,
    drives_per_node: usize,
    parity: usize,
    /// Offline drives per node (a node offline = all its drives offline).
    offline_drives: Vec<usize>,
    node_online: Vec<bool>,
    local_node: usize,
    busy: bool,
    server_status: Option<String>,
    /// Healing drives per node (counted among its online drives).
    healing: Vec<usize>,
    /// Header overrides of the cluster checks: (lower-case name, value; `None` removes it).
    header_overrides: Vec<(String, Option<String>)>,
    usable_total: u64,
    usable_free: u64,
    metrics_token: Option<String>,
    request_counter: u64,
}

impl MinioState {
    fn total_drives(&self) -> usize {
        self.nodes * self.drives_per_node
    }
    fn online_drives_of(&self, node: usize) -> usize {
        if !self.node_online.get(node).copied().unwrap_or(false) {
            return 0;
        }
        self.drives_per_node
            .saturating_sub(self.offline_drives.get(node).copied().unwrap_or(0))
    }
    fn online_drives(&self) -> usize {
        (0..self.nodes).map(|n| self.online_drives_of(n)).sum()
    }
    fn data(&self) -> usize {
        self.total_drives() - self.parity
    }
    fn read_quorum(&self) -> usize {
        self.data()
    }
    fn write_quorum(&self) -> usize {
        if self.data() == self.parity {
            self.data() + 1
        } else {
            self.data()
        }
    }
    fn server_name(&self, node: usize) -> String {
        format!("minio-{node}:9000")
    }
}

/// MinIO's default parity for an erasure set of `drives` drives (`ecDrivesNoConfig`).
pub fn default_parity(drives: usize) -> usize {
    match drives {
        0 | 1 => 0,
        2 | 3 => 1,
        4 | 5 => 2,
        6 | 7 => 3,
        _ => 4,
    }
}

type Shared = Arc<Mutex<MinioState>>;

fn lock(s: &Shared) -> MutexGuard<'_, MinioState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake MinIO node. Derefs to its [`FakeHttp`] (address, request record, faults).
#[derive(Debug)]
pub struct FakeMinio {
    http: FakeHttp,
    state: Shared,
}

impl Deref for FakeMinio {
    type Target = FakeHttp;
    fn deref(&self) -> &FakeHttp {
        &self.http
    }
}

impl FakeMinio {
    /// Start a healthy deployment of `nodes` nodes with `drives_per_node` drives each (both at
    /// least 1; smaller values are raised to 1), 1 TiB usable, half free.
    pub async fn start(nodes: usize, drives_per_node: usize) -> std::io::Result<Self> {
        let nodes = nodes.max(1);
        let drives_per_node = drives_per_node.max(1);
        let state = Arc::new(Mutex::new(MinioState {
            nodes,
            drives_per_node,
            parity: default_parity(nodes * drives_per_node),
            offline_drives: vec![0; nodes],
            node_online: vec![true; nodes],
            local_node: 0,
            busy: false,
            server_status: None,
            healing: vec![0; nodes],
            header_overrides: Vec::new(),
            usable_total: 1 << 40,
            usable_free: 1 << 39,
            metrics_token: None,
            request_counter: 0,
        }));
        let http = FakeHttp::start(router(state.clone())).await?;
        Ok(Self { http, state })
    }

    /// The underlying HTTP fake.
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    /// Bring a node (all its drives) down or back. Out-of-range nodes are ignored.
    pub fn set_node_online(&self, node: usize, online: bool) {
        if let Some(n) = lock(&self.state).node_online.get_mut(node) {
            *n = online;
        }
    }

    /// Mark `count` drives of `node` offline (0 brings them back). Out-of-range nodes are ignored.
    pub fn set_drives_offline(&self, node: usize, count: usize) {
        let mut st = lock(&self.state);
        let dpn = st.drives_per_node;
        if let Some(n) = st.offline_drives.get_mut(node) {
            *n = count.min(dpn);
        }
    }

    /// Override the parity (EC:N); clamped so at least one data drive remains.
    pub fn set_parity(&self, parity: usize) {
        let mut st = lock(&self.state);
        let max = st.total_drives().saturating_sub(1);
        st.parity = parity.min(max);
    }

    /// Which node answers (its drives are the ones `?maintenance=true` takes down).
    pub fn set_local_node(&self, node: usize) {
        let mut st = lock(&self.state);
        if node < st.nodes {
            st.local_node = node;
        }
    }

    /// Liveness and readiness answer 503 `ServerBusy` (request queue full).
    pub fn set_busy(&self, busy: bool) {
        lock(&self.state).busy = busy;
    }

    /// Node still initialising: `Some("offline")`, `Some("bucket-metadata-offline")`, `Some("iam-offline")`.
    pub fn set_server_status(&self, status: Option<&str>) {
        lock(&self.state).server_status = status.map(str::to_string);
    }

    /// Mark `count` of `node`'s drives as healing (0: none). A healing drive is online; only the
    /// online ones count. Out-of-range nodes are ignored. MinIO reports healing drives — and refuses
    /// maintenance while any heals — only on `?maintenance=true`, counting the other nodes' drives.
    pub fn set_drives_healing(&self, node: usize, count: usize) {
        let mut st = lock(&self.state);
        let dpn = st.drives_per_node;
        if let Some(n) = st.healing.get_mut(node) {
            *n = count.min(dpn);
        }
    }

    /// Replace header `name` of the cluster-check answers with `value` (`None`: leave it out);
    /// the last override of a name wins. [`FakeMinio::clear_header_overrides`] undoes them.
    pub fn override_health_header(&self, name: &str, value: Option<&str>) {
        let mut st = lock(&self.state);
        let name = name.to_ascii_lowercase();
        st.header_overrides.retain(|(n, _)| *n != name);
        st.header_overrides.push((name, value.map(str::to_string)));
    }

    /// Drop every header override.
    pub fn clear_header_overrides(&self) {
        lock(&self.state).header_overrides.clear();
    }

    /// Usable (post-erasure-coding) total and free bytes; free is capped at total.
    pub fn set_usable_capacity(&self, total: u64, free: u64) {
        let mut st = lock(&self.state);
        st.usable_total = total;
        st.usable_free = free.min(total);
    }

    /// Usable free bytes only (capped at the usable total).
    pub fn set_usable_free(&self, free: u64) {
        let mut st = lock(&self.state);
        st.usable_free = free.min(st.usable_total);
    }

    /// A closure giving the live usable free bytes (`minio_cluster_capacity_usable_free_bytes`), for
    /// [`FakePrometheus::gauge_fn`](super::prometheus::FakePrometheus::gauge_fn).
    pub fn usable_free_gauge(&self) -> impl Fn() -> f64 + Send + Sync + 'static {
        let state = self.state.clone();
        move || lock(&state).usable_free as f64
    }

    /// Require `Authorization: Bearer <token>` on the metrics endpoint (`None`: public).
    pub fn require_metrics_token(&self, token: Option<&str>) {
        lock(&self.state).metrics_token = token.map(str::to_string);
    }

    /// Write quorum of the deployment.
    pub fn write_quorum(&self) -> usize {
        lock(&self.state).write_quorum()
    }

    /// Read quorum of the deployment.
    pub fn read_quorum(&self) -> usize {
        lock(&self.state).read_quorum()
    }

    /// Drives currently online.
    pub fn online_drives(&self) -> usize {
        lock(&self.state).online_drives()
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/minio/health/live", get(live))
        .route("/minio/health/ready", get(live))
        .route("/minio/health/cluster", get(cluster_write))
        .route("/minio/health/cluster/read", get(cluster_read))
        .route("/minio/v2/metrics/cluster", get(metrics))
        .with_state(state)
}

fn request_id(st: &mut MinioState) -> String {
    st.request_counter += 1;
    format!(
        "{:016X}",
        0x1623_9D63_0000_0000u64.wrapping_add(st.request_counter)
    )
}

/// Headers every MinIO response carries.
fn common_headers(st: &mut MinioState, h: &mut HeaderMap) {
    let rid = request_id(st);
    let pairs: [(&str, String); 7] = [
        ("server", "MinIO".to_string()),
        ("x-amz-bucket-region", "us-east-1".to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("vary", "Origin".to_string()),
        ("x-amz-request-id", rid),
        ("x-content-type-options", "nosniff".to_string()),
        ("x-xss-protection", "1; mode=block".to_string()),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(HeaderName::from_static(k), v);
        }
    }
    if let Some(status) = &st.server_status {
        if let Ok(v) = HeaderValue::from_str(status) {
            h.insert(HeaderName::from_static("x-minio-server-status"), v);
        }
    }
}

fn empty(status: StatusCode, headers: HeaderMap) -> Response {
    let mut r = (status, headers).into_response();
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    r
}

async fn live(State(s): State<Shared>, uri: Uri) -> Response {
    let mut st = lock(&s);
    let mut h = HeaderMap::new();
    common_headers(&mut st, &mut h);
    if st.busy {
        let rid = h
            .get("x-amz-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServerBusy</Code><Message>The service is unavailable. Please retry.</Message><Resource>{}</Resource><RequestId>{rid}</RequestId><HostId>dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8</HostId></Error>",
            uri.path()
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        return (StatusCode::SERVICE_UNAVAILABLE, h, body).into_response();
    }
    empty(StatusCode::OK, h)
}

fn cluster_check(s: &Shared, params: &[(String, String)], read: bool) -> Response {
    let mut st = lock(s);
    let mut h = HeaderMap::new();
    common_headers(&mut st, &mut h);
    // checkHealth: an initialising node answers 503 before any quorum is computed
    if st.server_status.is_some() {
        return empty(StatusCode::SERVICE_UNAVAILABLE, h);
    }
    // r.Form.Get("maintenance") == "true": the first value only
    let maintenance = params
        .iter()
        .find(|(k, _)| k == "maintenance")
        .is_some_and(|(_, v)| v == "true");
    let quorum = if read {
        st.read_quorum()
    } else {
        st.write_quorum()
    };
    // Health(): with maintenance, the local drives are left out before counting
    let counted = (0..st.nodes).filter(|n| !maintenance || *n != st.local_node);
    let mut online = 0;
    let mut healing = 0;
    for n in counted {
        let up = st.online_drives_of(n);
        online += up;
        healing += st.healing.get(n).copied().unwrap_or(0).min(up);
    }
    let mut healthy = online >= quorum;
    if maintenance {
        healthy = healthy && healing == 0;
    }
    let qname = if read {
        "x-minio-read-quorum"
    } else {
        "x-minio-write-quorum"
    };
    h.insert(HeaderName::from_static(qname), HeaderValue::from(quorum));
    h.insert(
        HeaderName::from_static("x-minio-storage-class-defaults"),
        HeaderValue::from_static("true"),
    );
    // HealingDrives is only filled in on a maintenance check
    if maintenance && healing > 0 {
        h.insert(
            HeaderName::from_static("x-minio-healing-drives"),
            HeaderValue::from(healing),
        );
    }
    for (name, value) in &st.header_overrides {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        match value.as_deref().map(HeaderValue::from_str) {
            Some(Ok(v)) => {
                h.insert(name, v);
            }
            Some(Err(_)) => {}
            None => {
                h.remove(name);
            }
        }
    }
    let status = match (healthy, maintenance) {
        (true, _) => StatusCode::OK,
        (false, true) => StatusCode::PRECONDITION_FAILED,
        (false, false) => StatusCode::SERVICE_UNAVAILABLE,
    };
    empty(status, h)
}

async fn cluster_write(
    State(s): State<Shared>,
    Query(p): Query<Vec<(String, String)>>,
) -> Response {
    cluster_check(&s, &p, false)
}

async fn cluster_read(State(s): State<Shared>, Query(p): Query<Vec<(String, String)>>) -> Response {
    cluster_check(&s, &p, true)
}

fn gauge(out: &mut String, name: &str, help: &str, lines: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, v) in lines {
        let _ = writeln!(out, "{name}{{{labels}}} {}", fmt_float(*v));
    }
}

/// Go's `%g`-like float as the Prometheus client writes it (`1.2345678912e+11`, `3`).
fn fmt_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        if v.abs() >= 1e6 {
            // client_golang writes large integers with an exponent, e.g. 1.2345678912e+11
            let s = format!("{v:e}");
            return match s.split_once('e') {
                Some((m, e)) => {
                    let exp: i32 = e.parse().unwrap_or(0);
                    format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
                }
                None => s,
            };
        }
        return format!("{}", v as i64);
    }
    fmt_sample(v)
}

async fn metrics(State(s): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let mut st = lock(&s);
    let mut h = HeaderMap::new();
    common_headers(&mut st, &mut h);
    if let Some(token) = &st.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            let rid = h
                .get("x-amz-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = json!({
                "Code": "AccessDenied",
                "Message": "Access Denied.",
                "Resource": uri.path(),
                "RequestId": rid,
                "HostId": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
            });
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return (StatusCode::FORBIDDEN, h, body.to_string()).into_response();
        }
    }
    let local = st.server_name(st.local_node);
    let server = format!("server=\"{local}\"");
    let total = st.total_drives();
    let data = st.data().max(1);
    let online = st.online_drives();
    let raw_factor = total as f64 / data as f64;
    let online_nodes = st.node_online.iter().filter(|o| **o).count();
    let healthy = online >= st.write_quorum();
    let one = |v: f64| vec![(server.clone(), v)];
    let mut out = String::new();
    gauge(
        &mut out,
        "minio_cluster_capacity_raw_free_bytes",
        "Total free capacity online in the cluster",
        &one(st.usable_free as f64 * raw_factor),
    );
    gauge(
        &mut out,
        "minio_cluster_capacity_raw_total_bytes",
        "Total capacity online in the cluster",
        &one(st.usable_total as f64 * raw_factor),
    );
    gauge(
        &mut out,
        "minio_cluster_capacity_usable_free_bytes",
        "Total free usable capacity online in the cluster",
        &one(st.usable_free as f64),
    );
    gauge(
        &mut out,
        "minio_cluster_capacity_usable_total_bytes",
        "Total usable capacity online in the cluster",
        &one(st.usable_total as f64),
    );
    gauge(
        &mut out,
        "minio_cluster_drive_offline_total",
        "Total drives offline in this cluster",
        &one((total - online) as f64),
    );
    gauge(
        &mut out,
        "minio_cluster_drive_online_total",
        "Total drives online in this cluster",
        &one(online as f64),
    );
    gauge(
        &mut out,
        "minio_cluster_drive_total",
        "Total drives in this cluster",
        &one(total as f64),
    );
    gauge(
        &mut out,
        "minio_cluster_health_status",
        "Get current cluster health status",
        &one(if healthy { 1.0 } else { 0.0 }),
    );
    gauge(
        &mut out,
        "minio_cluster_nodes_offline_total",
        "Total number of MinIO nodes offline",
        &one((st.nodes - online_nodes) as f64),
    );
    gauge(
        &mut out,
        "minio_cluster_nodes_online_total",
        "Total number of MinIO nodes online",
        &one(online_nodes as f64),
    );
    gauge(
        &mut out,
        "minio_cluster_write_quorum",
        "Maximum write quorum across all pools and sets",
        &one(st.write_quorum() as f64),
    );
    // Per-drive metrics: each online drive holds an equal share of the raw capacity.
    let per_drive_total = st.usable_total as f64 * raw_factor / total as f64;
    let per_drive_free = st.usable_free as f64 * raw_factor / total as f64;
    let mut free_lines = Vec::new();
    let mut total_lines = Vec::new();
    let mut used_lines = Vec::new();
    for node in 0..st.nodes {
        for d in 0..st.online_drives_of(node) {
            let labels = format!(
                "drive=\"/data{}\",server=\"{}\"",
                d + 1,
                st.server_name(node)
            );
            free_lines.push((labels.clone(), per_drive_free.round()));
            total_lines.push((labels.clone(), per_drive_total.round()));
            used_lines.push((labels, (per_drive_total - per_drive_free).round()));
        }
    }
    gauge(
        &mut out,
        "minio_node_drive_free_bytes",
        "Total storage available on a drive",
        &free_lines,
    );
    gauge(
        &mut out,
        "minio_node_drive_total_bytes",
        "Total storage on a drive",
        &total_lines,
    );
    gauge(
        &mut out,
        "minio_node_drive_used_bytes",
        "Total storage used on a drive",
        &used_lines,
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    (StatusCode::OK, h, out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_format_like_client_golang() {
        assert_eq!(fmt_float(123_456_789_120.0), "1.2345678912e+11");
        assert_eq!(fmt_float(3.0), "3");
        assert_eq!(fmt_float(0.5), "0.5");
    }

    #[test]
    fn parity_defaults() {
        assert_eq!(default_parity(4), 2);
        assert_eq!(default_parity(16), 4);
        assert_eq!(default_parity(1), 0);
    }
}
