//! The lakehouse runbook's Paimon/Nessie cannot-commit playbook through all five phases on the
//! real Nessie 0.99 of the tier (in-memory version store), not in dry-run: `main` and the backup
//! branch really diverge (a writer committed on each), the playbook detects it from the two commit
//! logs (and reads `/q/health` on the management port), diagnoses, remediates, recovers — and
//! Nessie's own `GET /api/v2/trees/main` says where `main` ended.
//!
//! - a **conflict** (the same table created differently on both sides): the merge's dry run
//!   conflicts, so `main` is assigned back to the known-good hash (with its HEAD as the expected
//!   hash); the HEAD it had is the incident record's Nessie hash;
//! - a **clean divergence** (different tables on each side): the backup branch is merged into
//!   `main`, and `main` ends at the merge commit the outcome names.
//!
//! **MinIO has no real server in the tier.** The merge step runs only when the diagnosis saw MinIO
//! with usable free capacity, so `Endpoints::minio` points at rb-testkit's `FakeMinio` (it serves
//! the real `/minio/v2/metrics/cluster` exposition: 1 TiB usable, half free). Loki and Prometheus
//! are not configured: their diagnosis probes fail, which the journal shows and the playbook
//! tolerates.
//!
//! The branch names are the playbook's own (`main`, `backup`): the tests reset `backup` first and
//! delete it afterwards; everything they commit lives under a namespace of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_core::incident::Phase;
use rb_core::policy::Decision;
use rb_core::{Event, Incident, Resolution};
use rb_examples::lakehouse::situations::nessie_commit::{self, BRANCH, PLAYBOOK};
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings};
use rb_peers::lakehouse::{engine, run_until, story};
use rb_peers::nessie::{put_iceberg_table, put_namespace, BranchRef, Nessie};
use rb_peers::PeerEnv;
use rb_testkit::http::minio::FakeMinio;
use rb_testkit::lakehouse::BACKUP_BRANCH;

/// Every incident must be over within this (for-duration 6 s, stability 10 s, probes every 2 s).
const WITHIN: Duration = Duration::from_secs(60);

fn suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{}", std::process::id(), nanos % 1_000_000_000)
}

fn systems(env: &PeerEnv, minio: &FakeMinio) -> Systems {
    let endpoints = Endpoints {
        nessie: env.get("NESSIE_BASE_URL").unwrap().to_string(),
        nessie_management: env.get("NESSIE_MGMT_URL").unwrap().to_string(),
        minio: minio.base_url(),
        ..Endpoints::default()
    };
    Systems::new(endpoints, Credentials::default(), Timings::fast()).unwrap()
}

/// `backup` at `at`, whatever it was before.
async fn reset_backup(nessie: &Nessie, at: &BranchRef) -> BranchRef {
    delete_backup(nessie).await;
    nessie.create_branch(BACKUP_BRANCH, at).await.unwrap()
}

async fn delete_backup(nessie: &Nessie) {
    let a = nessie
        .get(&format!("/trees/{BACKUP_BRANCH}"))
        .await
        .unwrap();
    if a.status == 200 {
        let b = nessie.branch(BACKUP_BRANCH).await.unwrap();
        let d = nessie.delete_branch(&b).await.unwrap();
        assert!(
            d.status < 300,
            "deleting {}: {} {}",
            b.spec(),
            d.status,
            d.body
        );
    } else {
        assert_eq!(a.status, 404, "GET /trees/{BACKUP_BRANCH}: {}", a.body);
    }
}

/// The setup both tests share: namespace `ns` on `main` (the known-good commit) and `backup` cut
/// there. Returns `(main, backup)`.
async fn fork(nessie: &Nessie, ns: &str) -> (BranchRef, BranchRef) {
    let main = nessie.branch(BRANCH).await.unwrap();
    let main = nessie
        .commit(
            &main,
            &format!("create namespace {ns}"),
            &[put_namespace(&[ns])],
        )
        .await
        .unwrap();
    let backup = reset_backup(nessie, &main).await;
    (main, backup)
}

/// Run the engine until the playbook's incident is closed; the incident.
async fn play(playbooks: Vec<rb_core::Playbook>) -> (Incident, String) {
    let engine = engine(playbooks).await.unwrap();
    let result = run_until(&engine, WITHIN, |incidents| {
        let closed = incidents
            .iter()
            .any(|i| i.record.playbook == PLAYBOOK && i.resolution.is_some());
        async move { Ok(closed) }
    })
    .await;
    let journal = story(&engine).await;
    result.unwrap();
    let mine: Vec<Incident> = engine
        .incidents()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.record.playbook == PLAYBOOK)
        .collect();
    // the MinIO-space playbook (FakeMinio half free) must stay quiet
    let all = engine.incidents().await.unwrap();
    assert_eq!(all.len(), 1, "one incident only: {journal}");
    assert_eq!(mine.len(), 1, "{journal}");
    (mine.into_iter().next().unwrap(), journal)
}

/// The outcome details of the finished, successful step `action`.
fn outcome_of(inc: &Incident, action: &str) -> serde_json::Value {
    inc.timeline
        .iter()
        .find_map(|e| match &e.event {
            Event::Finished {
                action: a,
                ok: true,
                outcome: Some(o),
                ..
            } if a == action => Some(o.details.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no successful {action} in the journal"))
}

fn assert_five_phases(inc: &Incident, journal: &str) {
    assert_eq!(inc.resolution, Some(Resolution::Recovered), "{journal}");
    for p in Phase::ALL {
        assert!(inc.phases.contains(&p), "phase {p:?} missing: {journal}");
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn a_commit_conflict_is_assigned_back_to_the_known_good_hash() {
    let env = PeerEnv::load().unwrap();
    let nessie = Nessie::from_env(&env).unwrap();
    let minio = FakeMinio::start(4, 4).await.unwrap();
    let ns = format!("rb_lake_conflict_{}", suffix());

    // known good: main with the namespace; then lake.t created differently on each side
    let (known_good, backup) = fork(&nessie, &ns).await;
    let key = [ns.as_str(), "t"];
    let backup = nessie
        .commit(
            &backup,
            &format!("create {ns}.t on backup"),
            &[put_iceberg_table(
                &key,
                "s3://rb-peers/lake/t/backup.json",
                1,
            )],
        )
        .await
        .unwrap();
    let bad = nessie
        .commit(
            &known_good,
            &format!("create {ns}.t on main"),
            &[put_iceberg_table(&key, "s3://rb-peers/lake/t/main.json", 2)],
        )
        .await
        .unwrap();

    let s = systems(&env, &minio);
    let playbooks = vec![
        nessie_commit::playbook_with_known_good(&s, known_good.hash.clone()).unwrap(),
        nessie_commit::minio_space(&s),
    ];
    let (inc, journal) = play(playbooks).await;
    let main_now = nessie.branch(BRANCH).await.unwrap();
    let backup_now = nessie.branch(BACKUP_BRANCH).await.unwrap();
    delete_backup(&nessie).await;

    // Nessie itself: main is back at the known-good hash, the backup untouched
    assert_eq!(main_now.hash, known_good.hash, "{journal}");
    assert_eq!(backup_now.hash, backup.hash, "{journal}");
    let log = nessie.history_messages(BRANCH).await.unwrap();
    assert_eq!(log[0], format!("create namespace {ns}"), "{journal}");

    assert_five_phases(&inc, &journal);
    // the record holds main's HEAD when the incident opened: the conflicting commit
    assert_eq!(
        inc.record.nessie_commit.as_deref(),
        Some(bad.hash.as_str()),
        "{journal}"
    );
    // the merge's dry run conflicted on the table's key: nothing merged, then the assign
    assert_eq!(
        inc.applied_actions(),
        vec!["nessie.assign".to_string()],
        "{journal}"
    );
    // (the plan is Nessie's dry run: it refused the merge, naming the key)
    let merge_refused = inc.timeline.iter().any(|e| {
        matches!(&e.event, Event::Refused { action, reason, .. }
            if action == "nessie.merge_from_backup" && reason.contains(&format!("{ns}.t")))
    });
    assert!(merge_refused, "the merge conflicted on {ns}.t: {journal}");
    let out = outcome_of(&inc, "nessie.assign");
    assert_eq!(out["hash"], known_good.hash.as_str(), "{out}");
    assert_eq!(out["previous_hash"], bad.hash.as_str(), "{out}");
    // the assign (destructive) ran only with the (scripted) on-call's grant
    let assign_step = inc
        .timeline
        .iter()
        .find_map(|e| match &e.event {
            Event::Started { step, action, .. } if action == "nessie.assign" => Some(*step),
            _ => None,
        })
        .unwrap();
    assert!(
        inc.timeline.iter().any(|e| matches!(&e.event,
            Event::Approval { step, decision: Decision::Granted { by }, .. }
                if *step == assign_step && by == "on-call (scripted)")),
        "{journal}"
    );
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn a_diverged_branch_is_merged_from_its_backup() {
    let env = PeerEnv::load().unwrap();
    let nessie = Nessie::from_env(&env).unwrap();
    let minio = FakeMinio::start(4, 4).await.unwrap();
    let ns = format!("rb_lake_merge_{}", suffix());

    // different tables on each side: the histories diverge without a conflicting key
    let (base, backup) = fork(&nessie, &ns).await;
    let backup = nessie
        .commit(
            &backup,
            &format!("create {ns}.from_backup"),
            &[put_iceberg_table(
                &[ns.as_str(), "from_backup"],
                "s3://rb-peers/lake/from_backup.json",
                1,
            )],
        )
        .await
        .unwrap();
    let head = nessie
        .commit(
            &base,
            &format!("create {ns}.from_main"),
            &[put_iceberg_table(
                &[ns.as_str(), "from_main"],
                "s3://rb-peers/lake/from_main.json",
                2,
            )],
        )
        .await
        .unwrap();

    let s = systems(&env, &minio);
    let (inc, journal) = play(nessie_commit::playbooks(&s)).await;
    let main_now = nessie.branch(BRANCH).await.unwrap();
    let entries = nessie
        .get(&format!("/trees/{BRANCH}/entries"))
        .await
        .unwrap();
    let log = nessie
        .get(&format!("/trees/{BRANCH}/history?maxRecords=3"))
        .await
        .unwrap();
    let backup_now = nessie.branch(BACKUP_BRANCH).await.unwrap();
    delete_backup(&nessie).await;

    assert_five_phases(&inc, &journal);
    assert_eq!(
        inc.record.nessie_commit.as_deref(),
        Some(head.hash.as_str()),
        "{journal}"
    );
    assert_eq!(
        inc.applied_actions(),
        vec!["nessie.merge_from_backup".to_string()],
        "{journal}"
    );
    // Nessie itself: main is at the merge commit the outcome names, on top of the HEAD it had,
    // with the backup's commit as its merged parent, and both tables are on main
    let out = outcome_of(&inc, "nessie.merge_from_backup");
    assert_eq!(out["hash"], main_now.hash.as_str(), "{out} {journal}");
    assert_eq!(backup_now.hash, backup.hash, "the backup is untouched");
    assert_eq!(log.status, 200, "{}", log.body);
    let top = &log.body["logEntries"][0]["commitMeta"];
    assert_eq!(top["hash"], main_now.hash.as_str(), "{}", log.body);
    let parents: Vec<&str> = top["parentCommitHashes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(
        parents,
        vec![head.hash.as_str(), backup.hash.as_str()],
        "{top}"
    );
    assert_eq!(entries.status, 200, "{}", entries.body);
    let keys: Vec<String> = entries.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["name"]["elements"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    for t in ["from_backup", "from_main"] {
        assert!(keys.contains(&format!("{ns}.{t}")), "{t} on main: {keys:?}");
    }
}
