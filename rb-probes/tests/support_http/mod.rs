//! Helpers shared by the REST family tests (`mod support_http;`): contexts, the fault matrix runner.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use rb_core::time::{Clock, Timestamp};
use rb_core::{Observation, ProbeContext, ProbeError};
use rb_probes::transport::ReqwestClient;
use rb_testkit::http::{FakeHttp, Fault};

/// Every fault the HTTP fakes inject, by the name used in the CSVs.
pub const FAULTS: &[&str] = &[
    "latency",
    "status_5xx",
    "refused",
    "malformed",
    "truncated",
    "hang",
    "reset",
];

/// A context on the system clock with `timeout` to go.
pub fn ctx(timeout: Duration) -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), timeout)
}

/// A context whose clock starts at `unix_ms`.
pub fn ctx_at(unix_ms: u64, timeout: Duration) -> ProbeContext {
    ProbeContext::with_timeout(Clock::starting_at(Timestamp(unix_ms)), timeout)
}

/// A reqwest client for the fake.
pub fn client(fake: &FakeHttp) -> ReqwestClient {
    ReqwestClient::new(fake.base_url()).unwrap()
}

/// The kind of the result as written in the CSVs: `ok`, or the `ErrorKind` variant name.
pub fn kind_of(r: &Result<Observation, ProbeError>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Inject `fault` into `method pattern` requests of `fake` (or make it refuse connections), then
/// observe with a deadline that a latency or hang overruns; the result's kind.
pub async fn inject_and_observe<F, Fut>(
    fake: &FakeHttp,
    method: &str,
    pattern: &str,
    fault: &str,
    observe: F,
) -> String
where
    F: FnOnce(ProbeContext) -> Fut,
    Fut: Future<Output = Result<Observation, ProbeError>>,
{
    let deadline = match fault {
        "latency" => {
            fake.faults()
                .inject(method, pattern, Fault::Latency(Duration::from_secs(3)));
            Duration::from_millis(400)
        }
        "hang" => {
            fake.faults().inject(method, pattern, Fault::Hang);
            Duration::from_millis(400)
        }
        "status_5xx" => {
            fake.faults().inject(method, pattern, Fault::Status(500));
            Duration::from_secs(5)
        }
        "malformed" => {
            fake.faults().inject(method, pattern, Fault::MalformedBody);
            Duration::from_secs(5)
        }
        "truncated" => {
            fake.faults().inject(method, pattern, Fault::TruncatedBody);
            Duration::from_secs(5)
        }
        "reset" => {
            fake.faults().inject(method, pattern, Fault::Reset);
            Duration::from_secs(5)
        }
        "refused" => {
            fake.refuse_connections();
            Duration::from_secs(5)
        }
        other => panic!("unknown fault {other}"),
    };
    let r = observe(ctx(deadline)).await;
    if let Err(e) = &r {
        // every error names the probe's endpoint
        assert!(
            e.endpoint.contains("127.0.0.1"),
            "error does not name the endpoint: {e}"
        );
    }
    kind_of(&r)
}

/// Read `tests/fault_matrix/<family>.csv` (`probe,fault,kind`).
pub fn read_matrix(family: &str) -> BTreeMap<(String, String), String> {
    let path = format!(
        "{}/tests/fault_matrix/{family}.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    assert_eq!(lines.next(), Some("probe,fault,kind"), "{path}: header");
    let mut rows = BTreeMap::new();
    for l in lines {
        let cols: Vec<&str> = l.split(',').map(str::trim).collect();
        assert_eq!(cols.len(), 3, "{path}: bad row {l:?}");
        let prev = rows.insert(
            (cols[0].to_string(), cols[1].to_string()),
            cols[2].to_string(),
        );
        assert!(prev.is_none(), "{path}: duplicate row {l:?}");
    }
    rows
}

/// Check the family's CSV: exactly one row per probe × fault (`probes` × [`FAULTS`] plus `extra`
/// faults), each run through `run(probe, fault)` and its kind compared.
pub async fn check_matrix<F, Fut>(family: &str, probes: &[&str], extra: &[(&str, &str)], run: F)
where
    F: Fn(String, String) -> Fut,
    Fut: Future<Output = String>,
{
    let rows = read_matrix(family);
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for p in probes {
        for f in FAULTS {
            want.insert((p.to_string(), f.to_string()));
        }
    }
    for (p, f) in extra {
        want.insert((p.to_string(), f.to_string()));
    }
    let have: BTreeSet<(String, String)> = rows.keys().cloned().collect();
    let missing: Vec<_> = want.difference(&have).collect();
    let extra_rows: Vec<_> = have.difference(&want).collect();
    assert!(
        missing.is_empty() && extra_rows.is_empty(),
        "{family}.csv: missing rows {missing:?}, unknown rows {extra_rows:?}"
    );
    let mut failures = Vec::new();
    for ((probe, fault), kind) in &rows {
        let got = run(probe.clone(), fault.clone()).await;
        if &got != kind {
            failures.push(format!("{probe} × {fault}: expected {kind}, got {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{family}.csv:\n{}",
        failures.join("\n")
    );
}
