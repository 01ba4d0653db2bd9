//! Nessie remediations against FakeNessie through the real reqwest client.
//! Run: `cargo test -p rb-actions --no-default-features --features nessie --test nessie`.
#![cfg(feature = "nessie")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_actions::nessie::{AssignBranch, CreateBranch, HashFrom, MergeFromBackup, NessieEndpoint};
use rb_core::prelude::*;
use rb_core::remediation::StepOutput;
use rb_core::time::Timestamp;
use rb_probes::transport::{HttpAuth, HttpClient, HttpRequest, Method, ReqwestClient};
use rb_testkit::http::nessie::FakeNessie;
use rb_testkit::http::Fault;
use serde_json::{json, Value};

fn clock() -> Clock {
    Clock::starting_at(Timestamp(1_795_590_000_000))
}

fn client(nessie: &FakeNessie) -> ReqwestClient {
    ReqwestClient::builder(nessie.api_url())
        .timeout(Duration::from_secs(5))
        .auth(HttpAuth::Bearer(Secret::new("rb-token-123")))
        .build()
        .unwrap()
}

fn endpoint(nessie: &FakeNessie) -> NessieEndpoint {
    NessieEndpoint::new(
        Target::new("nessie", "nessie-main"),
        Arc::new(client(nessie)),
    )
}

fn ctx() -> ActionContext {
    ActionContext::detached(clock(), Duration::from_secs(60))
}

/// main with two tables, a backup taken, then a bad commit on main and a fix on the backup.
async fn lake() -> (FakeNessie, NessieEndpoint, String) {
    let nessie = FakeNessie::start().await.unwrap();
    nessie
        .commit("main", &["db.orders", "db.customers"])
        .unwrap();
    let good = nessie.head("main").unwrap();
    nessie.create_branch("backup", "main").unwrap();
    nessie.commit("backup", &["db.orders"]).unwrap();
    let ep = endpoint(&nessie);
    (nessie, ep, good)
}

fn bodies(nessie: &FakeNessie, method: &str, pattern: &str) -> Vec<Value> {
    nessie
        .api()
        .requests()
        .matching(method, pattern)
        .iter()
        .map(|r| r.json().unwrap_or(Value::Null))
        .collect()
}

// ------------------------------------------------------------------------------------- merge

#[tokio::test]
async fn merge_is_planned_with_nessies_dry_run_and_applied_with_from_ref_and_hash() {
    let (nessie, ep, good) = lake().await;
    let backup = nessie.head("backup").unwrap();
    let refs_before = nessie.references();
    let m = MergeFromBackup::new(ep, "backup");
    let plan = m.plan(&ctx()).await.unwrap();
    assert_eq!(
        nessie.references(),
        refs_before,
        "the dry run changed nothing"
    );
    let dry = bodies(&nessie, "POST", "/api/v2/trees/*/history/merge");
    assert_eq!(
        dry,
        vec![
            json!({"fromRefName": "backup", "fromHash": backup, "isDryRun": true, "isReturnConflictAsResult": true})
        ]
    );
    assert!(dry[0].get("dryRun").is_none(), "never the ignored spelling");
    let merge_path = format!("/api/v2/trees/main@{good}/history/merge");
    assert_eq!(
        nessie.api().requests().matching("POST", &merge_path).len(),
        1
    );
    assert_eq!(plan.params["keys"], json!(["db.orders"]));
    assert!(plan.description.contains("isDryRun"));
    assert!(plan.undo.as_deref().unwrap().contains(&good));

    let out = m.apply(&plan, &ctx()).await.unwrap();
    let hash = out.details["hash"].as_str().unwrap().to_string();
    assert_eq!(nessie.head("main").as_deref(), Some(hash.as_str()));
    assert_eq!(out.details["previous_hash"], good.as_str());
    assert_eq!(
        nessie.content("main", "db.orders"),
        nessie.content("backup", "db.orders")
    );
    let real = bodies(&nessie, "POST", "/api/v2/trees/*/history/merge");
    assert_eq!(real.len(), 2);
    assert_eq!(real[1]["fromRefName"], "backup");
    assert_eq!(real[1]["fromHash"], backup.as_str());
    assert!(real[1].get("isDryRun").is_none() && real[1].get("dryRun").is_none());
    for r in nessie.api().requests().all() {
        assert_eq!(r.header("nessie-client-spec"), Some("2"), "{}", r.line());
    }
    assert!(matches!(
        m.verify(&plan, &out, &ctx()).await.unwrap(),
        Verification::Succeeded { .. }
    ));
}

#[tokio::test]
async fn the_fake_like_the_real_server_merges_for_real_when_the_flag_is_spelled_dry_run() {
    let (nessie, _ep, good) = lake().await;
    let backup = nessie.head("backup").unwrap();
    let c = client(&nessie);
    let resp = c
        .send(HttpRequest::json(
            Method::Post,
            format!("/trees/main@{good}/history/merge"),
            &json!({"fromRefName": "backup", "fromHash": backup, "dryRun": true}),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_ne!(
        nessie.head("main"),
        Some(good),
        "merged for real: `dryRun` is ignored"
    );
}

#[tokio::test]
async fn merging_twice_makes_one_merge_commit_and_then_there_is_nothing_to_do() {
    let (nessie, ep, _good) = lake().await;
    let m = MergeFromBackup::new(ep, "backup");
    let plan = m.plan(&ctx()).await.unwrap();
    let a = m.apply(&plan, &ctx()).await.unwrap();
    let log = nessie.log("main");
    let b = m.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(nessie.log("main"), log, "no second change");
    assert_eq!(a.details["hash"], b.details["hash"]);
    assert_eq!(b.details["applied"], false);
    let p2 = m.plan(&ctx()).await.unwrap();
    assert!(p2.nothing_to_do.is_some(), "{p2:?}");
}

#[tokio::test]
async fn a_merge_is_reversed_by_assigning_main_back_to_the_hash_in_the_plan() {
    let (nessie, ep, good) = lake().await;
    let before = nessie.references();
    let m = MergeFromBackup::new(ep.clone(), "backup");
    let plan = m.plan(&ctx()).await.unwrap();
    let out = m.apply(&plan, &ctx()).await.unwrap();
    assert_ne!(nessie.references(), before);
    let merged = StepOutput {
        outcome: Some(out),
        ..Default::default()
    };
    let undo = AssignBranch::new(
        ep,
        "main",
        HashFrom::Output {
            step: Some("merge".into()),
            key: "previous_hash".into(),
        },
    );
    let c = ctx().with_output("merge", merged);
    let up = undo.plan(&c).await.unwrap();
    undo.apply(&up, &c).await.unwrap();
    assert_eq!(nessie.references(), before);
    assert_eq!(nessie.head("main"), Some(good));
}

#[tokio::test]
async fn conflicts_come_back_typed_with_the_conflicting_keys() {
    let (nessie, ep, _) = lake().await;
    nessie
        .conflicting_commit("backup", "main", "db.customers")
        .unwrap();
    let before = nessie.references();
    let e = MergeFromBackup::new(ep.clone(), "backup")
        .plan(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(e.details["keys"], json!(["db.customers"]));
    assert_eq!(e.details["conflicts"][0]["conflict_type"], "VALUE_DIFFERS");
    assert_eq!(nessie.references(), before);
}

#[tokio::test]
async fn a_conflict_that_appears_after_the_plan_fails_the_apply_as_a_conflict() {
    let (nessie, ep, _) = lake().await;
    let m = MergeFromBackup::new(ep, "backup");
    let plan = m.plan(&ctx()).await.unwrap();
    // someone changes db.orders on main in between
    nessie.commit("main", &["db.orders"]).unwrap();
    let head = nessie.head("main");
    let e = m.apply(&plan, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(e.details["keys"], json!(["db.orders"]));
    assert_eq!(nessie.head("main"), head, "nothing overwritten");
}

#[tokio::test]
async fn a_plain_409_names_its_keys_in_the_message_only_and_they_are_read_from_there() {
    let (nessie, ep, _) = lake().await;
    let m = MergeFromBackup::new(ep, "backup");
    let plan = m.plan(&ctx()).await.unwrap();
    nessie.api().faults().inject(
        "POST",
        "/api/v2/trees/*/history/merge",
        Fault::StatusBody(
            409,
            json!({"status": 409, "reason": "Conflict", "message": "The following keys have been changed in conflict: 'db.orders', 'db.x'", "errorCode": "REFERENCE_CONFLICT", "serverStackTrace": null}).to_string(),
        ),
    );
    let e = m.apply(&plan, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(e.details["keys"], json!(["db.orders", "db.x"]));
    assert_eq!(e.details["error_code"], "REFERENCE_CONFLICT");
}

// ----------------------------------------------------------------------------- create branch

#[tokio::test]
async fn a_backup_branch_is_created_at_mains_head_once() {
    let nessie = FakeNessie::start().await.unwrap();
    let head = nessie.commit("main", &["db.orders"]).unwrap();
    let ep = endpoint(&nessie);
    let cb = CreateBranch::new(ep.clone(), "backup-inc-1");
    let plan = cb.plan(&ctx()).await.unwrap();
    assert!(nessie.api().requests().mutating().is_empty());
    let out = cb.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(out.details["hash"], head.as_str());
    assert_eq!(nessie.head("backup-inc-1"), Some(head.clone()));
    assert_eq!(
        bodies(&nessie, "POST", "/api/v2/trees"),
        vec![json!({"type": "BRANCH", "name": "main", "hash": head})]
    );
    let q = nessie.api().requests().matching("POST", "/api/v2/trees")[0]
        .query
        .clone();
    assert_eq!(q.as_deref(), Some("name=backup-inc-1&type=BRANCH"));
    // idempotent: again changes nothing, and a new plan has nothing to do
    let refs = nessie.references();
    cb.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(nessie.references(), refs);
    assert!(cb.plan(&ctx()).await.unwrap().nothing_to_do.is_some());
    assert!(matches!(
        cb.verify(&plan, &out, &ctx()).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    // a branch of that name elsewhere is a conflict, never moved
    nessie.commit("main", &["db.orders"]).unwrap();
    let e = cb.plan(&ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(nessie.head("backup-inc-1"), Some(head));
}

// ------------------------------------------------------------------------------------ assign

#[tokio::test]
async fn assign_moves_the_branch_with_the_expected_hash_and_assigning_back_restores_it() {
    let (nessie, ep, good) = lake().await;
    nessie.commit("main", &["db.customers"]).unwrap();
    let bad = nessie.head("main").unwrap();
    let before = nessie.references();
    let a = AssignBranch::to_hash(ep.clone(), "main", good.clone());
    assert_eq!(a.risk(), Risk::Destructive);
    let plan = a.plan(&ctx()).await.unwrap();
    assert!(nessie.api().requests().mutating().is_empty());
    let out = a.apply(&plan, &ctx()).await.unwrap();
    let puts = nessie.api().requests().matching("PUT", "/api/v2/trees/*");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, format!("/api/v2/trees/main@{bad}"));
    assert_eq!(puts[0].query.as_deref(), Some("type=BRANCH"));
    assert_eq!(
        puts[0].json().unwrap(),
        json!({"type": "DETACHED", "hash": good})
    );
    assert_eq!(out.details["hash"], good.as_str());
    assert_eq!(out.details["previous_hash"], bad.as_str());
    assert_eq!(nessie.head("main"), Some(good.clone()));
    assert!(matches!(
        a.verify(&plan, &out, &ctx()).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    // idempotent: applying the same plan again changes nothing
    a.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(nessie.head("main"), Some(good.clone()));
    // reversible: assign back
    let back = AssignBranch::to_hash(ep, "main", bad);
    let bp = back.plan(&ctx()).await.unwrap();
    back.apply(&bp, &ctx()).await.unwrap();
    assert_eq!(nessie.references(), before);
}

#[tokio::test]
async fn a_commit_between_plan_and_apply_makes_the_assign_a_conflict_and_is_kept() {
    let (nessie, ep, good) = lake().await;
    nessie.commit("main", &["db.customers"]).unwrap();
    let a = AssignBranch::to_hash(ep, "main", good);
    let plan = a.plan(&ctx()).await.unwrap();
    let concurrent = nessie.commit("main", &["db.orders"]).unwrap();
    let e = a.apply(&plan, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(
        e.details["conflicts"][0]["conflict_type"],
        "UNEXPECTED_HASH"
    );
    assert_eq!(nessie.head("main"), Some(concurrent), "never overwritten");
}

#[tokio::test]
async fn assign_to_where_the_branch_already_is_has_nothing_to_do() {
    let (nessie, ep, _) = lake().await;
    let head = nessie.head("main").unwrap();
    let plan = AssignBranch::to_hash(ep, "main", head)
        .plan(&ctx())
        .await
        .unwrap();
    assert!(plan.nothing_to_do.is_some());
}

// ------------------------------------------------------------------------------ auth, faults

#[tokio::test]
async fn every_request_carries_the_bearer_token_and_the_token_never_shows() {
    let (nessie, ep, _) = lake().await;
    let plan = MergeFromBackup::new(ep.clone(), "backup")
        .plan(&ctx())
        .await
        .unwrap();
    for r in nessie.api().requests().all() {
        assert_eq!(r.header("authorization"), Some("Bearer rb-token-123"));
    }
    assert!(!format!("{ep:?}").contains("rb-token-123"));
    assert!(!format!("{plan:?}").contains("rb-token-123"));
    nessie.api().faults().inject("*", "/**", Fault::Status(401));
    let e = MergeFromBackup::new(ep, "backup")
        .plan(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(!e.to_string().contains("rb-token-123"));
}

#[derive(Debug, Clone, Copy)]
enum Call {
    PlanGet,
    Merge,
    Assign,
    CreateBranch,
}

async fn fault_kind(call: Call, fault: Option<Fault>) -> ErrorKind {
    let (nessie, ep, good) = lake().await;
    let inject = |method: &str, pattern: &str| -> NessieEndpoint {
        match &fault {
            Some(f) => {
                nessie.api().faults().inject(method, pattern, f.clone());
                ep.clone()
            }
            None => {
                nessie.api().refuse_connections();
                endpoint(&nessie)
            }
        }
    };
    let kind = |r: Result<Outcome, RemediationError>| match r {
        Ok(o) => panic!("{call:?}: no error but {o:?}"),
        Err(e) => e.kind(),
    };
    match call {
        Call::PlanGet => {
            let ep = inject("GET", "/api/v2/trees/*");
            MergeFromBackup::new(ep, "backup")
                .plan(&ctx())
                .await
                .unwrap_err()
                .kind()
        }
        Call::Merge => {
            let plan = MergeFromBackup::new(ep.clone(), "backup")
                .plan(&ctx())
                .await
                .unwrap();
            let ep = inject("POST", "/api/v2/trees/*/history/merge");
            kind(
                MergeFromBackup::new(ep, "backup")
                    .apply(&plan, &ctx())
                    .await,
            )
        }
        Call::CreateBranch => {
            let plan = CreateBranch::new(ep.clone(), "backup-2")
                .plan(&ctx())
                .await
                .unwrap();
            let ep = inject("POST", "/api/v2/trees");
            kind(CreateBranch::new(ep, "backup-2").apply(&plan, &ctx()).await)
        }
        Call::Assign => {
            nessie.commit("main", &["db.customers"]).unwrap();
            let plan = AssignBranch::to_hash(ep.clone(), "main", good.clone())
                .plan(&ctx())
                .await
                .unwrap();
            let ep = inject("PUT", "/api/v2/trees/*");
            kind(
                AssignBranch::to_hash(ep, "main", good)
                    .apply(&plan, &ctx())
                    .await,
            )
        }
    }
}

/// The committed table of call × fault → error kind (`tests/fault_matrix/nessie.csv`): every row is
/// run; a row missing or extra fails.
#[tokio::test(start_paused = true)]
async fn every_injected_fault_gives_the_kind_the_fault_matrix_says() {
    let calls = [
        ("plan_get", Call::PlanGet),
        ("merge", Call::Merge),
        ("assign", Call::Assign),
        ("create_branch", Call::CreateBranch),
    ];
    let faults: Vec<(&str, Option<Fault>)> = vec![
        ("latency", Some(Fault::Latency(Duration::from_secs(30)))),
        ("5xx", Some(Fault::Status(503))),
        ("403", Some(Fault::Status(403))),
        ("refused", None),
        ("malformed", Some(Fault::MalformedBody)),
        ("truncated", Some(Fault::TruncatedBody)),
        ("hang", Some(Fault::Hang)),
        ("reset", Some(Fault::Reset)),
    ];
    let csv = include_str!("fault_matrix/nessie.csv");
    let rows: Vec<(String, String, String)> = csv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            assert_eq!(f.len(), 3, "bad row {l:?}");
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect();
    let mut want: Vec<(String, String)> = calls
        .iter()
        .flat_map(|(c, _)| {
            faults
                .iter()
                .map(move |(f, _)| (c.to_string(), f.to_string()))
        })
        .collect();
    let mut have: Vec<(String, String)> = rows
        .iter()
        .map(|(c, f, _)| (c.clone(), f.clone()))
        .collect();
    want.sort();
    have.sort();
    assert_eq!(
        have, want,
        "the matrix must have exactly one row per call × fault"
    );
    let mut wrong = Vec::new();
    for (call, fault, kind) in &rows {
        let c = calls.iter().find(|(n, _)| n == call).unwrap().1;
        let f = faults.iter().find(|(n, _)| n == fault).unwrap().1.clone();
        let got = format!("{:?}", fault_kind(c, f).await);
        if &got != kind {
            wrong.push(format!("{call} × {fault}: {got}, the matrix says {kind}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ------------------------------------------------------------------------------ through the engine

#[tokio::test(start_paused = true)]
async fn through_the_engine_the_merge_hash_reaches_the_incident_record_and_its_review() {
    let (nessie, ep, _) = lake().await;
    let probe: Arc<dyn Probe> = Arc::new(FnProbe::new(
        "test.commit_failures",
        Target::new("flink", "flink-main"),
        |ctx| {
            Ok(
                Observation::new("test.commit_failures", "flink-main", ctx.now()).sample(
                    "paimon_commit_failures",
                    Default::default(),
                    3.0,
                ),
            )
        },
    ));
    let pb = Playbook::new("nessie-commit", "Paimon/Nessie cannot commit")
        .detect(
            probe,
            Schedule::every(secs(30)),
            metric("paimon_commit_failures").above(0.0),
        )
        .mitigate_as("merge", Arc::new(MergeFromBackup::new(ep, "backup")))
        .escalate_to("Data Platform On-call");
    let e = Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap();
    for _ in 0..6 {
        e.tick().await.unwrap();
        tokio::time::sleep(secs(10)).await;
    }
    let head = nessie.head("main").unwrap();
    let inc = &e.incidents().await.unwrap()[0];
    let hash = inc.timeline.iter().find_map(|x| match &x.event {
        rb_core::journal::Event::Finished {
            outcome: Some(o), ..
        } => o.details["hash"].as_str().map(str::to_string),
        _ => None,
    });
    assert_eq!(hash.as_deref(), Some(head.as_str()));
    let md = e.review(&inc.record.id).await.unwrap().to_markdown();
    assert!(md.contains(&head), "the review shows the hash:\n{md}");
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_a_denied_assign_makes_no_call() {
    let (nessie, ep, good) = lake().await;
    nessie.commit("main", &["db.customers"]).unwrap();
    let head = nessie.head("main");
    let probe: Arc<dyn Probe> = Arc::new(FnProbe::new(
        "test.commit_failures",
        Target::new("flink", "flink-main"),
        |ctx| {
            Ok(
                Observation::new("test.commit_failures", "flink-main", ctx.now()).sample(
                    "paimon_commit_failures",
                    Default::default(),
                    3.0,
                ),
            )
        },
    ));
    let pb = Playbook::new("nessie-commit", "Paimon/Nessie cannot commit")
        .detect(
            probe,
            Schedule::every(secs(30)),
            metric("paimon_commit_failures").above(0.0),
        )
        .mitigate(Arc::new(AssignBranch::to_hash(ep, "main", good)))
        .escalate_to("Data Platform On-call");
    // even an automatic approver may not grant a destructive step
    let e = Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap();
    for _ in 0..6 {
        e.tick().await.unwrap();
        tokio::time::sleep(secs(10)).await;
    }
    assert!(nessie.api().requests().mutating().is_empty());
    assert_eq!(nessie.head("main"), head);
}
