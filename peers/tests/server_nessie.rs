//! Project Nessie, for real: branch, commits of ICEBERG_TABLE contents, a conflicting commit on
//! main, the merge refused with a conflict (and its dry run), a clean merge, refs and history as
//! ground truth, error answers for `name@hash`; the answers recorded as fixtures
//! (`RB_PEERS_RECORD=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{SystemTime, UNIX_EPOCH};

use rb_peers::nessie::{put_iceberg_table, put_namespace, BranchRef, Nessie};
use rb_peers::record::Recorder;
use rb_peers::PeerEnv;
use reqwest::Method;

fn suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}{}", std::process::id(), nanos % 1_000_000_000)
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn merge_conflict_clean_merge_history_and_errors_are_real_and_recorded() {
    let nessie = Nessie::from_env(&PeerEnv::load().unwrap()).unwrap();
    let mut rec = Recorder::new("nessie");
    let s = suffix();
    let ns = format!("rb{s}");
    let branch = format!("rb-dev-{s}");

    let health = nessie.mgmt_get("/q/health").await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "UP");
    rec.add(
        "q_health_200",
        "GET",
        "/q/health",
        health.status,
        &health.body,
    );
    let ready = nessie.mgmt_get("/q/health/ready").await.unwrap();
    assert_eq!(ready.status, 200);
    rec.add(
        "q_health_ready_200",
        "GET",
        "/q/health/ready",
        ready.status,
        &ready.body,
    );

    let config = nessie.get("/config").await.unwrap();
    assert_eq!(config.status, 200);
    assert_eq!(config.body["defaultBranch"], "main");
    assert_eq!(config.body["maxSupportedApiVersion"], 2);
    rec.add(
        "config_200",
        "GET",
        "/api/v2/config",
        config.status,
        &config.body,
    );

    // The conflict: both sides create ns.t.
    let sc = nessie.make_conflict(&ns, &branch).await.unwrap();
    assert_eq!(sc.merge.status, 409, "{}", sc.merge.body);
    assert_eq!(
        sc.merge.body["errorCode"], "REFERENCE_CONFLICT",
        "{}",
        sc.merge.body
    );
    let msg = sc.merge.body["message"].as_str().unwrap();
    assert!(msg.contains(&format!("'{ns}.t'")), "{msg}");
    // A dry run of a conflicting merge is refused the same way.
    assert_eq!(sc.dry_run.status, 409, "{}", sc.dry_run.body);
    assert_eq!(sc.dry_run.body["errorCode"], "REFERENCE_CONFLICT");
    // isReturnConflictAsResult: 200 with wasSuccessful=false and the conflicting key in details.
    assert_eq!(sc.as_result.status, 200, "{}", sc.as_result.body);
    assert_eq!(
        sc.as_result.body["wasSuccessful"], false,
        "{}",
        sc.as_result.body
    );
    assert_eq!(
        sc.as_result.body["wasApplied"], false,
        "{}",
        sc.as_result.body
    );
    let details = sc.as_result.body["details"].as_array().unwrap();
    assert!(
        details.iter().any(|d| d["key"]["elements"] == serde_json::json!(sc.key) && d["conflict"].is_object()),
        "{}",
        sc.as_result.body
    );
    rec.add(
        "merge_conflict_as_result_200",
        "POST",
        "/api/v2/trees/main@{hash}/history/merge (isReturnConflictAsResult=true)",
        200,
        &sc.as_result.body,
    );
    rec.add(
        "merge_conflict_409",
        "POST",
        "/api/v2/trees/main@{hash}/history/merge",
        409,
        &sc.merge.body,
    );
    rec.add(
        "merge_dry_run_conflict_409",
        "POST",
        "/api/v2/trees/main@{hash}/history/merge (isDryRun=true)",
        sc.dry_run.status,
        &sc.dry_run.body,
    );

    // Ground truth: main did not move, its history has our two commits on top.
    let main_now = nessie.branch("main").await.unwrap();
    assert_eq!(main_now, sc.main, "a refused merge must not move main");
    let hist = nessie.history_messages("main").await.unwrap();
    assert_eq!(hist[0], format!("create {ns}.t on main"));
    assert_eq!(hist[1], format!("create namespace {ns}"));
    let bhist = nessie.history_messages(&branch).await.unwrap();
    assert_eq!(bhist[0], format!("create {ns}.t on {branch}"));
    assert_eq!(bhist[1], format!("create namespace {ns}"));
    assert!(nessie.reference_names().await.unwrap().contains(&branch));

    let trees = nessie.get("/trees").await.unwrap();
    assert_eq!(trees.status, 200);
    rec.add(
        "trees_200",
        "GET",
        "/api/v2/trees",
        trees.status,
        &trees.body,
    );
    let tree = nessie.get(&format!("/trees/{branch}")).await.unwrap();
    assert_eq!(tree.status, 200);
    rec.add(
        "tree_branch_200",
        "GET",
        "/api/v2/trees/{branch}",
        tree.status,
        &tree.body,
    );
    let history = nessie
        .get(&format!("/trees/{branch}/history"))
        .await
        .unwrap();
    assert_eq!(history.status, 200);
    rec.add(
        "history_200",
        "GET",
        "/api/v2/trees/{branch}/history",
        history.status,
        &history.body,
    );
    let content = nessie
        .get(&format!("/trees/{}/contents/{ns}.t", sc.main.spec()))
        .await
        .unwrap();
    assert_eq!(content.status, 200, "{}", content.body);
    assert_eq!(content.body["content"]["type"], "ICEBERG_TABLE");
    rec.add(
        "content_table_200",
        "GET",
        "/api/v2/trees/main@{hash}/contents/{ns}.t",
        200,
        &content.body,
    );

    // name@hash errors.
    let bad_hash = nessie.get("/trees/main@not-a-hash").await.unwrap();
    assert_eq!(bad_hash.status, 400, "{}", bad_hash.body);
    rec.add(
        "tree_bad_hash_400",
        "GET",
        "/api/v2/trees/main@not-a-hash",
        400,
        &bad_hash.body,
    );
    let no_ref = nessie.get("/trees/rb-no-such-branch").await.unwrap();
    assert_eq!(no_ref.status, 404, "{}", no_ref.body);
    assert_eq!(no_ref.body["errorCode"], "REFERENCE_NOT_FOUND");
    rec.add(
        "tree_unknown_ref_404",
        "GET",
        "/api/v2/trees/rb-no-such-branch",
        404,
        &no_ref.body,
    );
    let unknown_hash = format!("main@{}", "0".repeat(64));
    let no_hash = nessie
        .get(&format!("/trees/{unknown_hash}/history"))
        .await
        .unwrap();
    assert_eq!(no_hash.status, 404, "{}", no_hash.body);
    rec.add(
        "history_unknown_hash_404",
        "GET",
        "/api/v2/trees/main@000…0/history",
        404,
        &no_hash.body,
    );
    // A commit on main@<hash of another branch's commit>: 404, the commit is not in main.
    let foreign = BranchRef {
        name: "main".into(),
        hash: sc.branch.hash.clone(),
    };
    let key = [ns.as_str(), "t"];
    let foreign_commit = nessie
        .commit_raw(
            &foreign,
            "foreign",
            &[put_iceberg_table(&key, "s3://rb-peers/f.json", 3)],
        )
        .await
        .unwrap();
    assert_eq!(foreign_commit.status, 404, "{}", foreign_commit.body);
    assert_eq!(foreign_commit.body["errorCode"], "REFERENCE_NOT_FOUND");
    rec.add(
        "commit_hash_not_in_branch_404",
        "POST",
        "/api/v2/trees/main@{other-branch-hash}/history/commit",
        404,
        &foreign_commit.body,
    );
    // A commit on a stale main@hash (before main's own ns.t) that creates ns.t again: 409.
    let main_hist = nessie.get("/trees/main/history").await.unwrap();
    let before = main_hist.body["logEntries"][1]["commitMeta"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let stale = BranchRef {
        name: "main".into(),
        hash: before,
    };
    let stale_commit = nessie
        .commit_raw(
            &stale,
            "stale",
            &[put_iceberg_table(&key, "s3://rb-peers/stale.json", 3)],
        )
        .await
        .unwrap();
    assert_eq!(stale_commit.status, 409, "{}", stale_commit.body);
    assert_eq!(stale_commit.body["errorCode"], "REFERENCE_CONFLICT");
    rec.add(
        "commit_stale_409",
        "POST",
        "/api/v2/trees/main@{stale}/history/commit",
        409,
        &stale_commit.body,
    );
    // Creating a branch that exists: 409.
    let dup = nessie.create_branch(&branch, &sc.main).await;
    assert!(dup.is_err());
    let dup_raw = nessie
        .call(
            Method::POST,
            &format!("/trees?name={branch}&type=BRANCH"),
            Some(&serde_json::json!({"type": "BRANCH", "name": "main", "hash": sc.main.hash})),
        )
        .await
        .unwrap();
    assert_eq!(dup_raw.status, 409, "{}", dup_raw.body);
    rec.add(
        "create_existing_branch_409",
        "POST",
        "/api/v2/trees?name={branch}&type=BRANCH",
        409,
        &dup_raw.body,
    );

    // A clean merge: a second branch adds another table, merged (dry run, then for real).
    let clean = format!("rb-clean-{s}");
    let created = nessie
        .call(
            Method::POST,
            &format!("/trees?name={clean}&type=BRANCH"),
            Some(&serde_json::json!({"type": "BRANCH", "name": "main", "hash": sc.main.hash})),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 200, "{}", created.body);
    rec.add(
        "create_branch_200",
        "POST",
        "/api/v2/trees?name={branch}&type=BRANCH",
        200,
        &created.body,
    );
    let forked = nessie.branch(&clean).await.unwrap();
    let key2 = [ns.as_str(), "u"];
    let commit = nessie
        .commit_raw(
            &forked,
            &format!("create {ns}.u"),
            &[put_iceberg_table(&key2, "s3://rb-peers/u.json", 4)],
        )
        .await
        .unwrap();
    assert_eq!(commit.status, 200, "{}", commit.body);
    rec.add(
        "commit_200",
        "POST",
        "/api/v2/trees/{branch}@{hash}/history/commit",
        200,
        &commit.body,
    );
    let head = nessie.branch(&clean).await.unwrap();
    let main = nessie.branch("main").await.unwrap();
    let dry = nessie.merge(&main, &head, true).await.unwrap();
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.body["wasApplied"], false, "{}", dry.body);
    assert_eq!(dry.body["wasSuccessful"], true, "{}", dry.body);
    rec.add(
        "merge_dry_run_200",
        "POST",
        "/api/v2/trees/main@{hash}/history/merge (isDryRun=true)",
        200,
        &dry.body,
    );
    assert_eq!(
        nessie.branch("main").await.unwrap(),
        main,
        "a dry run must not move main"
    );
    let merged = nessie.merge(&main, &head, false).await.unwrap();
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert_eq!(merged.body["wasApplied"], true, "{}", merged.body);
    rec.add(
        "merge_200",
        "POST",
        "/api/v2/trees/main@{hash}/history/merge",
        200,
        &merged.body,
    );
    let main_after = nessie.branch("main").await.unwrap();
    assert_ne!(main_after.hash, main.hash);
    let content = nessie
        .get(&format!("/trees/main/contents/{ns}.u"))
        .await
        .unwrap();
    assert_eq!(content.status, 200, "{}", content.body);

    // PUT of an existing key without its content id: 400 BAD_REQUEST.
    let ns_again = nessie
        .commit_raw(&main_after, "again", &[put_namespace(&[ns.as_str()])])
        .await
        .unwrap();
    assert_eq!(ns_again.status, 400, "{}", ns_again.body);
    assert_eq!(ns_again.body["errorCode"], "BAD_REQUEST");
    rec.add(
        "commit_put_without_content_id_400",
        "POST",
        "/api/v2/trees/main@{hash}/history/commit",
        400,
        &ns_again.body,
    );

    // Cleanup: delete both branches (200), then the deleted one answers 404.
    for b in [
        nessie.branch(&branch).await.unwrap(),
        nessie.branch(&clean).await.unwrap(),
    ] {
        let d = nessie.delete_branch(&b).await.unwrap();
        assert_eq!(d.status, 200, "{}", d.body);
        rec.add(
            "delete_branch_200",
            "DELETE",
            "/api/v2/trees/{branch}@{hash}",
            200,
            &d.body,
        );
    }
    assert!(!nessie.reference_names().await.unwrap().contains(&branch));
    rec.finish().unwrap();
}

/// Nessie 0.99's v2 merge reads the dry-run flag as `isDryRun`; a body with `"dryRun": true` is
/// merged for real. A runbook that "checks with a dry run" must send `isDryRun`.
#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn merge_body_field_dry_run_is_ignored_and_merges_for_real() {
    let nessie = Nessie::from_env(&PeerEnv::load().unwrap()).unwrap();
    let s = suffix();
    // main gets a commit first: on a fresh server main sits at the "no ancestor" hash, and a merge
    // into it answers 404 "No common ancestor".
    let main = nessie.branch("main").await.unwrap();
    let seed = format!("rbseed{s}");
    let main = nessie
        .commit(&main, "seed", &[put_namespace(&[seed.as_str()])])
        .await
        .unwrap();
    let b = nessie
        .create_branch(&format!("rb-dry-{s}"), &main)
        .await
        .unwrap();
    let ns = format!("rbdry{s}");
    let head = nessie
        .commit(&b, "ns", &[put_namespace(&[ns.as_str()])])
        .await
        .unwrap();

    let honoured = nessie.merge(&main, &head, true).await.unwrap();
    assert_eq!(honoured.status, 200, "{}", honoured.body);
    assert_eq!(honoured.body["wasApplied"], false, "{}", honoured.body);
    assert_eq!(
        nessie.branch("main").await.unwrap(),
        main,
        "isDryRun must not move main"
    );

    let ignored = nessie
        .merge_with(&main, &head, &[("dryRun", true)])
        .await
        .unwrap();
    assert_eq!(ignored.status, 200, "{}", ignored.body);
    assert_eq!(ignored.body["wasApplied"], true, "{}", ignored.body);
    let after = nessie.branch("main").await.unwrap();
    assert_ne!(
        after, main,
        "with \"dryRun\": true Nessie 0.99 merges for real"
    );
    assert_eq!(
        nessie.history_messages("main").await.unwrap()[0],
        format!("merge {} into main", head.name)
    );
    let mut rec = Recorder::new("nessie");
    rec.add(
        "merge_dryRun_field_ignored_200",
        "POST",
        "/api/v2/trees/main@{hash}/history/merge (dryRun=true: ignored, merged)",
        200,
        &ignored.body,
    );
    let d = nessie.delete_branch(&head).await.unwrap();
    assert_eq!(d.status, 200);
    rec.finish().unwrap();
}
