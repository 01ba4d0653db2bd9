//! Nessie probes through the real reqwest adapter against FakeNessie (API and management ports),
//! the real Nessie captures parsed, the fault matrix, and the parsers under proptest.
//! Run: `cargo test -p rb-probes --no-default-features --features nessie --test nessie`.
#![cfg(feature = "nessie")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use proptest::prelude::*;
use rb_core::observation::facts::NessieCommit;
use rb_core::time::Clock;
use rb_core::{ErrorKind, Observation, Probe, ProbeContext, Secret, Target};
use rb_probes::common::ProbeSite;
use rb_probes::nessie::model::{Health, LogPage, NessieConfig, ReferencesPage, SingleReference};
use rb_probes::nessie::{
    NessieBranch, NessieBranchProbe, NessieHealth, NessieHealthProbe, NessieReferences,
};
use rb_probes::transport::{parse_json, HttpAuth, HttpClient, HttpRequest, Method, ReqwestClient};
use rb_testkit::http::nessie::{FakeNessie, RefKind};
use rb_testkit::http::Fault;

const CAPTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../rb-testkit/fixtures/real/nessie"
);

fn capture(name: &str) -> String {
    std::fs::read_to_string(format!("{CAPTURES}/{name}.json"))
        .unwrap_or_else(|e| panic!("capture {name}: {e}"))
}

fn target() -> Target {
    Target::new("nessie", "nessie-test")
}

fn ctx() -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), Duration::from_secs(5))
}

fn api(fake: &FakeNessie) -> ReqwestClient {
    ReqwestClient::new(fake.api().base_url()).unwrap()
}

fn mgmt(fake: &FakeNessie) -> ReqwestClient {
    ReqwestClient::new(fake.management_url()).unwrap()
}

fn value(obs: &Observation, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    obs.samples_named(name)
        .find(|s| label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
}

fn branch_fact(obs: &Observation) -> NessieBranch {
    obs.facts.get::<NessieBranch>().unwrap().unwrap()
}

/// Merge `from` into `into` over REST, as a remediation would.
async fn merge(fake: &FakeNessie, from: &str, into: &str) {
    let c = api(fake);
    let target = fake.head(into).unwrap();
    let from_hash = fake.head(from).unwrap();
    let body = serde_json::json!({"fromRefName": from, "fromHash": from_hash});
    let r = c
        .send(HttpRequest::json(
            Method::Post,
            format!("/api/v2/trees/{into}@{target}/history/merge"),
            &body,
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.snippet(500));
}

// ---------------------------------------------------------------- health

#[tokio::test]
async fn health_up_then_down_with_checks() {
    let fake = FakeNessie::start().await.unwrap();
    let probe = NessieHealthProbe::new(api(&fake), mgmt(&fake), target());
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    assert_eq!(value(&obs, "nessie_api_up", None), Some(1.0));
    assert_eq!(value(&obs, "nessie_health_up", None), Some(1.0));
    let h: NessieHealth = obs.facts.get().unwrap().unwrap();
    assert_eq!(h.default_branch, "main");
    assert_eq!(h.spec_version.as_deref(), Some("2.2.0"));
    assert_eq!(h.api_version, Some(2));
    assert_eq!(h.health.as_deref(), Some("UP"));
    // the three readiness checks a real Nessie 0.99 reports
    assert_eq!(h.checks.len(), 3);
    assert_eq!(obs.samples_named("nessie_health_check_up").count(), 3);
    assert_eq!(
        fake.api()
            .requests()
            .matching("GET", "/api/v2/config")
            .len(),
        1
    );
    assert_eq!(
        fake.management()
            .requests()
            .matching("GET", "/q/health")
            .len(),
        1
    );

    fake.set_check("Warehouses Object Stores", false);
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "DOWN (503) is an answer: {:?}", obs.gaps);
    assert_eq!(value(&obs, "nessie_health_up", None), Some(0.0));
    assert_eq!(
        value(
            &obs,
            "nessie_health_check_up",
            Some(("check", "Warehouses Object Stores"))
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &obs,
            "nessie_health_check_up",
            Some(("check", "MongoDB connection health check"))
        ),
        Some(1.0)
    );
    assert_eq!(
        obs.facts
            .get::<NessieHealth>()
            .unwrap()
            .unwrap()
            .health
            .as_deref(),
        Some("DOWN")
    );
}

#[tokio::test]
async fn management_port_down_leaves_health_unknown_not_up() {
    let fake = FakeNessie::start().await.unwrap();
    fake.management().refuse_connections();
    let probe = NessieHealthProbe::new(api(&fake), mgmt(&fake), target());
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(!obs.complete);
    assert!(obs.gaps[0].contains("/q/health"), "{:?}", obs.gaps);
    assert_eq!(obs.samples_named("nessie_health_up").count(), 0);
    assert_eq!(
        obs.facts.get::<NessieHealth>().unwrap().unwrap().health,
        None
    );
}

// ---------------------------------------------------------------- references, log, backup

#[tokio::test]
async fn references_and_hashes_equal_the_servers() {
    let fake = FakeNessie::start().await.unwrap();
    fake.commit("main", &["db.orders"]).unwrap();
    fake.create_branch("backup", "main").unwrap();
    fake.create_tag("release-1", "main").unwrap();
    let head = fake.commit("main", &["db.payments"]).unwrap();
    let probe = NessieBranchProbe::new(api(&fake), target(), "main");
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let refs: NessieReferences = obs.facts.get().unwrap().unwrap();
    let mut got: Vec<(String, String, String)> = refs
        .references
        .iter()
        .map(|r| (r.name.clone(), r.kind.clone(), r.hash.clone()))
        .collect();
    got.sort();
    let want: Vec<(String, String, String)> = fake
        .references()
        .into_iter()
        .map(|(n, k, h)| {
            let k = match k {
                RefKind::Branch => "BRANCH",
                _ => "TAG",
            };
            (n, k.to_string(), h)
        })
        .collect();
    assert_eq!(got, want);
    assert!(!refs.truncated);
    assert_eq!(value(&obs, "nessie_references", None), Some(3.0));
    // the incident record's commit: the branch and its HEAD hash
    let c: NessieCommit = obs.facts.get().unwrap().unwrap();
    assert_eq!(
        c,
        NessieCommit {
            reference: "main".into(),
            hash: head.clone()
        }
    );
    let b = branch_fact(&obs);
    assert_eq!(b.hash.as_deref(), Some(head.as_str()));
    assert_eq!(b.kind.as_deref(), Some("BRANCH"));
    assert_eq!(
        value(&obs, "nessie_reference_head", Some(("hash", &head))),
        Some(1.0)
    );
    // recent commits, newest first, as the server's log
    let log = fake.log("main");
    assert_eq!(
        b.recent_commits
            .iter()
            .map(|c| c.hash.clone())
            .collect::<Vec<_>>(),
        log
    );
    assert_eq!(b.recent_commits[0].message, "update db.payments");
    let age = value(&obs, "nessie_branch_last_commit_age_seconds", None).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    // the log was read pinned to the listed hash
    let h = fake
        .api()
        .requests()
        .matching("GET", "/api/v2/trees/**/history");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].path, format!("/api/v2/trees/main@{head}/history"));
    assert!(fake.api().requests().mutating().is_empty());
}

#[tokio::test]
async fn branch_ahead_and_behind_its_backup_by_which_commits() {
    let fake = FakeNessie::start().await.unwrap();
    fake.commit("main", &["db.orders"]).unwrap();
    let base = fake.create_branch("backup", "main").unwrap();
    let probe = NessieBranchProbe::new(api(&fake), target(), "main").backup("backup");

    let obs = probe.observe(&ctx()).await.unwrap();
    let b = branch_fact(&obs).backup.unwrap();
    assert_eq!((b.ahead_count, b.behind_count), (Some(0), Some(0)));
    assert_eq!(b.merge_base.as_deref(), Some(base.as_str()));
    assert_eq!(value(&obs, "nessie_branch_in_sync", None), Some(1.0));

    // two bad commits land on main; the backup gets one good commit
    let bad1 = fake
        .commit_with_message("main", &["db.orders"], "bad 1")
        .unwrap();
    let bad2 = fake
        .commit_with_message("main", &["db.items"], "bad 2")
        .unwrap();
    let good = fake
        .commit_with_message("backup", &["db.fix"], "good")
        .unwrap();
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let b = branch_fact(&obs).backup.unwrap();
    assert!(b.resolved);
    assert_eq!(b.backup_hash.as_deref(), Some(good.as_str()));
    assert_eq!((b.ahead_count, b.behind_count), (Some(2), Some(1)));
    assert_eq!(
        b.ahead.iter().map(|c| c.hash.as_str()).collect::<Vec<_>>(),
        vec![bad2.as_str(), bad1.as_str()]
    );
    assert_eq!(b.ahead[0].message, "bad 2");
    assert_eq!(b.behind[0].hash, good);
    assert_eq!(b.merge_base.as_deref(), Some(base.as_str()));
    assert_eq!(value(&obs, "nessie_branch_commits_ahead", None), Some(2.0));
    assert_eq!(value(&obs, "nessie_branch_commits_behind", None), Some(1.0));
    assert_eq!(value(&obs, "nessie_branch_in_sync", None), Some(0.0));

    // the remediation merges backup into main: main is no longer behind
    merge(&fake, "backup", "main").await;
    let obs = probe.observe(&ctx()).await.unwrap();
    let b = branch_fact(&obs).backup.unwrap();
    assert_eq!(b.behind_count, Some(0), "{b:?}");
    assert_eq!(
        b.ahead_count,
        Some(3),
        "the merge commit and the two bad ones"
    );
    assert_eq!(b.ahead[0].parents.len(), 2, "a merge commit");
}

#[tokio::test]
async fn long_divergence_is_walked_page_by_page_and_bounded() {
    let fake = FakeNessie::start().await.unwrap();
    fake.commit("main", &["db.t0"]).unwrap();
    fake.create_branch("backup", "main").unwrap();
    for i in 0..130 {
        fake.commit("main", &[&format!("db.t{}", i % 7)]).unwrap();
    }
    let probe = NessieBranchProbe::new(api(&fake), target(), "main").backup("backup");
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let b = branch_fact(&obs).backup.unwrap();
    assert_eq!(b.ahead_count, Some(130));
    assert_eq!(b.ahead.len(), 50, "the listed commits are bounded");
    assert!(
        fake.api()
            .requests()
            .matching("GET", "/api/v2/trees/**/history")
            .len()
            >= 3
    );

    let probe = NessieBranchProbe::new(api(&fake), target(), "main")
        .backup("backup")
        .max_walk(40);
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(
        !obs.complete,
        "past the walk bound the comparison is unknown"
    );
    let b = branch_fact(&obs).backup.unwrap();
    assert!(!b.resolved);
    assert_eq!((b.ahead_count, b.behind_count), (None, None));
    assert_eq!(obs.samples_named("nessie_branch_commits_ahead").count(), 0);
}

#[tokio::test]
async fn missing_branch_is_seen_and_truncated_listing_is_unknown() {
    let fake = FakeNessie::start().await.unwrap();
    let probe = NessieBranchProbe::new(api(&fake), target(), "main").backup("backup");
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let b = branch_fact(&obs);
    assert!(b.present);
    let bk = b.backup.unwrap();
    assert!(!bk.backup_present);
    assert_eq!(
        value(
            &obs,
            "nessie_reference_present",
            Some(("reference", "backup"))
        ),
        Some(0.0)
    );
    let probe = NessieBranchProbe::new(api(&fake), target(), "gone");
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(!branch_fact(&obs).present);
    assert_eq!(value(&obs, "nessie_reference_present", None), Some(0.0));
    assert!(obs.facts.get::<NessieCommit>().is_none());

    // references past the listing bound: not seen is unknown, not absent
    for n in ["a1", "a2", "a3", "a4"] {
        fake.create_branch(n, "main").unwrap();
    }
    let probe = NessieBranchProbe::new(api(&fake), target(), "main").max_references(2);
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(!obs.complete);
    assert_eq!(obs.samples_named("nessie_reference_present").count(), 0);
    let refs: NessieReferences = obs.facts.get().unwrap().unwrap();
    assert!(refs.truncated);
    assert_eq!(refs.references.len(), 2);
}

#[tokio::test]
async fn paged_reference_listing_reads_every_page() {
    let fake = FakeNessie::start().await.unwrap();
    for i in 0..7 {
        fake.create_branch(&format!("b{i}"), "main").unwrap();
    }
    let probe = NessieBranchProbe::new(api(&fake), target(), "main");
    let obs = probe.observe(&ctx()).await.unwrap();
    let refs: NessieReferences = obs.facts.get().unwrap().unwrap();
    assert_eq!(refs.references.len(), 8);
    assert!(!refs.truncated);
}

#[tokio::test]
async fn bearer_token_is_sent_and_never_shown() {
    let fake = FakeNessie::start().await.unwrap();
    let client = ReqwestClient::builder(fake.api().base_url())
        .auth(HttpAuth::Bearer(Secret::new("s3cr3t-t0ken")))
        .build()
        .unwrap();
    let probe = NessieBranchProbe::new(client, target(), "main");
    let obs = probe.observe(&ctx()).await.unwrap();
    for r in fake.api().requests().all() {
        assert_eq!(r.header("authorization"), Some("Bearer s3cr3t-t0ken"));
    }
    assert!(!format!("{probe:?}").contains("s3cr3t"));
    assert!(!serde_json::to_string(&obs).unwrap().contains("s3cr3t"));
    fake.api().faults().inject_all(Fault::Status(401));
    let e = probe.observe(&ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(!e.to_string().contains("s3cr3t"));
}

// ---------------------------------------------------------------- real captures

fn site() -> ProbeSite<'static> {
    ProbeSite {
        probe: "nessie.branch",
        target: "nessie-test",
        endpoint: "http://nessie:19120/api/v2/trees",
    }
}

#[test]
fn real_captures_parse_with_their_values() {
    let s = site();
    let c: NessieConfig = parse_json(&s, capture("config_200").as_bytes()).unwrap();
    assert_eq!(c.default_branch, "main");
    assert_eq!(c.spec_version.as_deref(), Some("2.2.0"));
    assert_eq!(
        c.no_ancestor_hash.as_deref(),
        Some("2e1cfa82b035c26cbbbdae632cea070514eb8b773f616aaeaf668e2f0be8f10d")
    );
    let t: ReferencesPage = parse_json(&s, capture("trees_200").as_bytes()).unwrap();
    assert_eq!(t.references.len(), 2);
    assert_eq!(t.references[0].name.as_deref(), Some("main"));
    assert_eq!(
        t.references[0].hash.as_deref(),
        Some("7ec27fdd7529d44dbae843f191eff5eb50e8aac881599040630c131d071c45c0")
    );
    let r: SingleReference = parse_json(&s, capture("tree_branch_200").as_bytes()).unwrap();
    assert_eq!(r.reference.kind, "BRANCH");
    let l: LogPage = parse_json(&s, capture("history_200").as_bytes()).unwrap();
    assert_eq!(l.log_entries.len(), 4);
    assert_eq!(l.log_entries[2].commit_meta.parent_commit_hashes.len(), 2);
    assert_eq!(
        l.log_entries[2].commit_meta.message,
        "merge rb-dry-21778843066535 into main"
    );
    let d = rb_probes::nessie::diverge(
        &l.log_entries
            .iter()
            .map(|e| e.commit_meta.clone())
            .collect::<Vec<_>>(),
        &l.log_entries[2..]
            .iter()
            .map(|e| e.commit_meta.clone())
            .collect::<Vec<_>>(),
    );
    assert_eq!((d.ahead, d.behind), (Some(2), Some(0)));
    let h: Health = parse_json(&s, capture("q_health_200").as_bytes()).unwrap();
    assert_eq!((h.status.as_str(), h.checks.len()), ("UP", 3));
}

#[test]
fn a_wrong_type_names_its_json_pointer() {
    let body = capture("history_200").replacen(
        "\"hash\": \"0a85a811304658d534abb6c8b71487d88571270f36f816c17e8b03cab352817f\"",
        "\"hash\": 7",
        1,
    );
    let e = parse_json::<LogPage>(&site(), body.as_bytes()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    assert!(
        e.message.contains("/logEntries/1/commitMeta/hash"),
        "{}",
        e.message
    );
    assert!(e.message.contains("line "), "{}", e.message);
    let e = parse_json::<ReferencesPage>(&site(), br#"{"references":[{"type":3}]}"#).unwrap_err();
    assert!(e.message.contains("/references/0/type"), "{}", e.message);
    let e = parse_json::<Health>(&site(), br#"{"status":"UP","checks":{}}"#).unwrap_err();
    assert!(e.message.contains("/checks"), "{}", e.message);
}

const PARSED: [&str; 5] = [
    "config_200",
    "trees_200",
    "tree_branch_200",
    "history_200",
    "q_health_200",
];

fn parse_as(name: &str, body: &[u8]) {
    let s = site();
    match name {
        "config_200" => drop(parse_json::<NessieConfig>(&s, body)),
        "trees_200" => drop(parse_json::<ReferencesPage>(&s, body)),
        "tree_branch_200" => drop(parse_json::<SingleReference>(&s, body)),
        "history_200" => {
            if let Ok(l) = parse_json::<LogPage>(&s, body) {
                let log: Vec<_> = l.log_entries.into_iter().map(|e| e.commit_meta).collect();
                let _ = rb_probes::nessie::diverge(&log, &log[log.len() / 2..]);
            }
        }
        _ => drop(parse_json::<Health>(&s, body)),
    }
}

fn flip(v: &mut serde_json::Value, n: &mut usize, with: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Object(m) => m.values_mut().any(|x| flip(x, n, with)),
        Value::Array(a) => a.iter_mut().any(|x| flip(x, n, with)),
        _ => {
            if *n == 0 {
                *v = with.clone();
                true
            } else {
                *n -= 1;
                false
            }
        }
    }
}

/// Cases per property: `RB_FUZZ_CASES` when set (the long fuzz run, see `tests/fuzz.rs`), else `default`.
fn fuzz_cases(default: u32) -> u32 {
    std::env::var("RB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(256)))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(which in 0usize..PARSED.len(), body in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse_as(PARSED[which], &body);
    }

    #[test]
    fn parsers_never_panic_on_truncated_captures(which in 0usize..PARSED.len(), cut in 0.0f64..1.0) {
        let body = capture(PARSED[which]);
        let at = (body.len() as f64 * cut) as usize;
        let at = (0..=at).rev().find(|i| body.is_char_boundary(*i)).unwrap_or(0);
        parse_as(PARSED[which], &body.as_bytes()[..at]);
        if body[..at].trim_end() != body.trim_end() {
            prop_assert!(parse_json::<serde_json::Value>(&site(), &body.as_bytes()[..at]).is_err());
        }
    }

    #[test]
    fn parsers_never_panic_on_type_flipped_captures(which in 0usize..PARSED.len(), nth in 0usize..60, kind in 0usize..5) {
        let with = [serde_json::json!(null), serde_json::json!("x"), serde_json::json!(-1), serde_json::json!(1.5), serde_json::json!({"a": [1]})][kind].clone();
        let mut v: serde_json::Value = serde_json::from_str(&capture(PARSED[which])).unwrap();
        let mut n = nth;
        flip(&mut v, &mut n, &with);
        parse_as(PARSED[which], v.to_string().as_bytes());
    }
}

// ---------------------------------------------------------------- the fault matrix

fn outcome(r: Result<Observation, rb_core::ProbeError>) -> String {
    match r {
        Ok(o) if o.complete => "ok".into(),
        Ok(_) => "incomplete".into(),
        Err(e) => format!("{:?}", e.kind()).to_lowercase(),
    }
}

async fn run_fault(probe: &str, fault: &str) -> String {
    let fake = FakeNessie::start().await.unwrap();
    fake.commit("main", &["db.orders"]).unwrap();
    fake.create_branch("backup", "main").unwrap();
    fake.commit("main", &["db.orders"]).unwrap();
    let a = fake.api().faults();
    let m = fake.management().faults();
    let all = "/**";
    match fault {
        "none" => {}
        "latency" => drop(a.inject("GET", all, Fault::Latency(Duration::from_secs(3)))),
        "status_500" => drop(a.inject(
            "GET",
            all,
            Fault::StatusBody(
                500,
                r#"{"status":500,"reason":"Internal Server Error","message":"boom","errorCode":"UNKNOWN","serverStackTrace":null}"#.into(),
            ),
        )),
        "status_503" => drop(a.inject("GET", all, Fault::Status(503))),
        "status_401" => drop(a.inject("GET", all, Fault::Status(401))),
        "refused" => {
            fake.api().refuse_connections();
            fake.management().refuse_connections();
        }
        "reset" => drop(a.inject("GET", all, Fault::Reset)),
        "malformed" => drop(a.inject("GET", all, Fault::MalformedBody)),
        "truncated" => drop(a.inject("GET", all, Fault::TruncatedBody)),
        "hang" => drop(a.inject("GET", all, Fault::Hang)),
        "mgmt_refused" => fake.management().refuse_connections(),
        "mgmt_500" => drop(m.inject("GET", all, Fault::Status(500))),
        "mgmt_malformed" => drop(m.inject("GET", all, Fault::MalformedBody)),
        "mgmt_truncated" => drop(m.inject("GET", all, Fault::TruncatedBody)),
        "mgmt_hang" => drop(m.inject("GET", all, Fault::Hang)),
        "history_404" => drop(a.inject(
            "GET",
            "/api/v2/trees/**/history",
            Fault::StatusBody(404, capture("history_unknown_hash_404")),
        )),
        "history_malformed" => drop(a.inject("GET", "/api/v2/trees/**/history", Fault::MalformedBody)),
        "backup_history_500" => {
            let path = format!("/api/v2/trees/backup@{}/history", fake.head("backup").unwrap());
            drop(a.inject("GET", &path, Fault::Status(500)))
        }
        other => panic!("unknown fault {other}"),
    }
    let c = ProbeContext::with_timeout(Clock::system(), Duration::from_millis(800));
    let r = match probe {
        "nessie.health" => {
            NessieHealthProbe::new(api(&fake), mgmt(&fake), target())
                .observe(&c)
                .await
        }
        "nessie.branch" => {
            NessieBranchProbe::new(api(&fake), target(), "main")
                .backup("backup")
                .observe(&c)
                .await
        }
        other => panic!("unknown probe {other}"),
    };
    if let Err(e) = &r {
        assert_eq!(e.probe, probe);
        assert_eq!(e.target, "nessie-test");
        assert!(
            e.endpoint.starts_with(&fake.api().base_url())
                || e.endpoint.starts_with(&fake.management_url()),
            "{e}"
        );
    }
    outcome(r)
}

#[tokio::test]
async fn fault_matrix() {
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fault_matrix/nessie.csv"
    ))
    .unwrap();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for (i, line) in csv.lines().enumerate() {
        if i == 0 {
            assert_eq!(line, "probe,fault,kind");
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 3, "row {i}: {line}");
        rows.push((cols[0].into(), cols[1].into(), cols[2].into()));
    }
    let globals = [
        "none",
        "latency",
        "status_500",
        "status_503",
        "status_401",
        "refused",
        "reset",
        "malformed",
        "truncated",
        "hang",
    ];
    for p in ["nessie.health", "nessie.branch"] {
        for f in globals {
            assert_eq!(
                rows.iter().filter(|r| r.0 == p && r.1 == f).count(),
                1,
                "row {p},{f} missing or repeated"
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (p, f, _) in &rows {
        assert!(seen.insert((p.clone(), f.clone())), "row {p},{f} repeated");
    }
    let mut failures = Vec::new();
    for (p, f, want) in &rows {
        let got = run_fault(p, f).await;
        if &got != want {
            failures.push(format!("{p},{f}: expected {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
