//! The Nessie probes against the real Nessie of the tier (peers/scripts/nessie.sh): references and
//! HEAD hashes equal the server's own `/trees`, the recent log equals its history, a branch is
//! ahead of / behind its backup by exactly the commits made on each, health equals `/q/health`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_core::observation::facts::NessieCommit;
use rb_core::time::Clock;
use rb_core::{Probe, ProbeContext, Target};
use rb_peers::nessie::{put_iceberg_table, put_namespace, Nessie};
use rb_peers::PeerEnv;
use rb_probes::nessie::{
    NessieBranch, NessieBranchProbe, NessieHealth, NessieHealthProbe, NessieReferences,
};
use rb_probes::transport::ReqwestClient;

fn suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}{}", std::process::id(), nanos % 1_000_000_000)
}

fn ctx() -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), Duration::from_secs(20))
}

fn target() -> Target {
    Target::new("nessie", "nessie-peer")
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn health_equals_the_management_port() {
    let env = PeerEnv::load().unwrap();
    let nessie = Nessie::from_env(&env).unwrap();
    let probe = NessieHealthProbe::new(
        ReqwestClient::new(env.get("NESSIE_BASE_URL").unwrap()).unwrap(),
        ReqwestClient::new(env.get("NESSIE_MGMT_URL").unwrap()).unwrap(),
        target(),
    );
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let h: NessieHealth = obs.facts.get().unwrap().unwrap();
    let direct = nessie.mgmt_get("/q/health").await.unwrap();
    assert_eq!(h.health.as_deref(), direct.body["status"].as_str());
    let names: Vec<&str> = direct.body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        h.checks.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        names
    );
    let config = nessie.get("/config").await.unwrap();
    assert_eq!(
        h.default_branch,
        config.body["defaultBranch"].as_str().unwrap()
    );
    assert_eq!(
        h.spec_version.as_deref(),
        config.body["specVersion"].as_str()
    );
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn references_hashes_and_backup_divergence_equal_the_servers() {
    let env = PeerEnv::load().unwrap();
    let nessie = Nessie::from_env(&env).unwrap();
    let s = suffix();
    let ns = format!("rbp{s}");
    let work = format!("rb-probe-{s}");
    let backup = format!("rb-probe-backup-{s}");

    // a work branch with a namespace, a backup taken from it, then two commits on the work branch
    // and one on the backup
    let main = nessie.branch("main").await.unwrap();
    let w = nessie.create_branch(&work, &main).await.unwrap();
    let w = nessie
        .commit(
            &w,
            &format!("create namespace {ns}"),
            &[put_namespace(&[&ns])],
        )
        .await
        .unwrap();
    let b = nessie.create_branch(&backup, &w).await.unwrap();
    let base = w.hash.clone();
    let w1 = nessie
        .commit(
            &w,
            "bad 1",
            &[put_iceberg_table(
                &[&ns, "orders"],
                "s3://lake/orders/m1.json",
                1,
            )],
        )
        .await
        .unwrap();
    let w2 = nessie
        .commit(
            &w1,
            "bad 2",
            &[put_iceberg_table(
                &[&ns, "items"],
                "s3://lake/items/m1.json",
                1,
            )],
        )
        .await
        .unwrap();
    let b1 = nessie
        .commit(
            &b,
            "good",
            &[put_iceberg_table(&[&ns, "fix"], "s3://lake/fix/m1.json", 1)],
        )
        .await
        .unwrap();

    let probe = NessieBranchProbe::new(
        ReqwestClient::new(env.get("NESSIE_BASE_URL").unwrap()).unwrap(),
        target(),
        &work,
    )
    .backup(&backup);
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);

    // every reference and hash as GET /trees says
    let direct = nessie.get("/trees").await.unwrap();
    let mut want: Vec<(String, String, String)> = direct.body["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
                r["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort();
    let refs: NessieReferences = obs.facts.get().unwrap().unwrap();
    let mut got: Vec<(String, String, String)> = refs
        .references
        .iter()
        .map(|r| (r.name.clone(), r.kind.clone(), r.hash.clone()))
        .collect();
    got.sort();
    assert_eq!(got, want);

    // HEAD and the incident record's commit
    assert_eq!(nessie.branch(&work).await.unwrap().hash, w2.hash);
    let c: NessieCommit = obs.facts.get().unwrap().unwrap();
    assert_eq!(c.reference, work);
    assert_eq!(c.hash, w2.hash);
    let br: NessieBranch = obs.facts.get().unwrap().unwrap();
    assert_eq!(br.hash.as_deref(), Some(w2.hash.as_str()));
    // the recent log as the server's history
    let msgs = nessie.history_messages(&work).await.unwrap();
    let got_msgs: Vec<&str> = br
        .recent_commits
        .iter()
        .map(|c| c.message.as_str())
        .collect();
    assert_eq!(
        got_msgs,
        msgs.iter().take(10).map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(br.recent_commits[0].hash, w2.hash);

    // ahead by the two bad commits, behind by the good one, merge base where the backup was taken
    let cmp = br.backup.unwrap();
    assert_eq!(cmp.backup_hash.as_deref(), Some(b1.hash.as_str()));
    assert_eq!((cmp.ahead_count, cmp.behind_count), (Some(2), Some(1)));
    assert_eq!(
        cmp.ahead
            .iter()
            .map(|c| c.hash.as_str())
            .collect::<Vec<_>>(),
        vec![w2.hash.as_str(), w1.hash.as_str()]
    );
    assert_eq!(cmp.behind[0].hash, b1.hash);
    assert_eq!(cmp.merge_base.as_deref(), Some(base.as_str()));

    // merge the backup into the work branch (the remediation): no longer behind
    let m = nessie.merge(&w2, &b1, false).await.unwrap();
    assert_eq!(m.status, 200, "{}", m.body);
    let obs = probe.observe(&ctx()).await.unwrap();
    let cmp = obs
        .facts
        .get::<NessieBranch>()
        .unwrap()
        .unwrap()
        .backup
        .unwrap();
    assert_eq!(cmp.behind_count, Some(0), "{cmp:?}");

    // clean up
    let w = nessie.branch(&work).await.unwrap();
    nessie.delete_branch(&w).await.unwrap();
    let b = nessie.branch(&backup).await.unwrap();
    nessie.delete_branch(&b).await.unwrap();
}
