//! rb-actions' Nessie remediations against the real Nessie of peers/scripts/nessie.sh: a backup
//! branch, a merge planned with the server's own dry run (`isDryRun`), a conflict typed with its key,
//! an assign with the expected hash (a concurrent commit is a conflict), and the assign back.
//!
//! Everything happens on branches of the test's own (main is left alone).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_actions::nessie::{AssignBranch, CreateBranch, MergeFromBackup, NessieEndpoint};
use rb_core::{ActionContext, ErrorKind, Remediation, Target, Verification};
use rb_peers::nessie::{put_iceberg_table, put_namespace, Nessie};
use rb_peers::PeerEnv;
use rb_probes::transport::ReqwestClient;

fn ctx() -> ActionContext {
    ActionContext::detached(rb_core::time::Clock::system(), Duration::from_secs(60))
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn backup_merge_conflict_and_assign_on_a_real_nessie() {
    let nessie = Nessie::from_env(&PeerEnv::load().unwrap()).unwrap();
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000_000;
    let ns = format!("rbact{s}");
    let work = format!("rb-act-{s}");
    let backup = format!("rb-act-backup-{s}");
    let client = ReqwestClient::builder(&nessie.url)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let ep = NessieEndpoint::new(Target::new("nessie", "nessie-peer"), Arc::new(client));

    // the working branch, created by the action from main, with a namespace and a table
    let cw = CreateBranch::new(ep.clone(), &work);
    let p = cw.plan(&ctx()).await.unwrap();
    let o = cw.apply(&p, &ctx()).await.unwrap();
    assert!(matches!(
        cw.verify(&p, &o, &ctx()).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    let w = nessie.branch(&work).await.unwrap();
    let w = nessie
        .commit(
            &w,
            "ns + t1",
            &[
                put_namespace(&[&ns]),
                put_iceberg_table(&[&ns, "t1"], "s3://w/t1/m1.json", 1),
            ],
        )
        .await
        .unwrap();
    let good = w.hash.clone();

    // the backup branch at the working branch's head; again: nothing to do
    let cb = CreateBranch::new(ep.clone(), &backup).from_ref(&work);
    let p = cb.plan(&ctx()).await.unwrap();
    let o = cb.apply(&p, &ctx()).await.unwrap();
    assert_eq!(o.details["hash"], good.as_str());
    assert!(cb.plan(&ctx()).await.unwrap().nothing_to_do.is_some());

    // a clean change on the backup, merged with the dry run first
    let b = nessie.branch(&backup).await.unwrap();
    nessie
        .commit(
            &b,
            "t2 on backup",
            &[put_iceberg_table(&[&ns, "t2"], "s3://b/t2/m1.json", 2)],
        )
        .await
        .unwrap();
    let m = MergeFromBackup::new(ep.clone(), &backup).into_branch(&work);
    let plan = m.plan(&ctx()).await.unwrap();
    assert_eq!(
        nessie.branch(&work).await.unwrap().hash,
        good,
        "the dry run (isDryRun) merged nothing"
    );
    assert_eq!(plan.params["keys"], serde_json::json!([format!("{ns}.t2")]));
    let out = m.apply(&plan, &ctx()).await.unwrap();
    let merged = out.details["hash"].as_str().unwrap().to_string();
    assert_eq!(nessie.branch(&work).await.unwrap().hash, merged);
    assert!(matches!(
        m.verify(&plan, &out, &ctx()).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    // merging again changes nothing
    let again = m.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(
        nessie.branch(&work).await.unwrap().hash,
        merged,
        "{again:?}"
    );

    // a conflict: t3 created on both sides
    let b = nessie.branch(&backup).await.unwrap();
    nessie
        .commit(
            &b,
            "t3 on backup",
            &[put_iceberg_table(&[&ns, "t3"], "s3://b/t3/m1.json", 3)],
        )
        .await
        .unwrap();
    let w = nessie.branch(&work).await.unwrap();
    nessie
        .commit(
            &w,
            "t3 on work",
            &[put_iceberg_table(&[&ns, "t3"], "s3://w/t3/m1.json", 4)],
        )
        .await
        .unwrap();
    let head = nessie.branch(&work).await.unwrap().hash;
    let e = MergeFromBackup::new(ep.clone(), &backup)
        .into_branch(&work)
        .plan(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(
        e.details["keys"],
        serde_json::json!([format!("{ns}.t3")]),
        "{e:?}"
    );
    assert_eq!(nessie.branch(&work).await.unwrap().hash, head);

    // assign back to the known-good hash, with the expected hash; then back again
    let a = AssignBranch::to_hash(ep.clone(), &work, &good);
    let ap = a.plan(&ctx()).await.unwrap();
    let ao = a.apply(&ap, &ctx()).await.unwrap();
    assert_eq!(nessie.branch(&work).await.unwrap().hash, good, "{ao:?}");
    assert!(matches!(
        a.verify(&ap, &ao, &ctx()).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    let back = AssignBranch::to_hash(ep.clone(), &work, &head);
    let bp = back.plan(&ctx()).await.unwrap();
    back.apply(&bp, &ctx()).await.unwrap();
    assert_eq!(nessie.branch(&work).await.unwrap().hash, head, "reversible");

    // a commit between plan and apply: a conflict, never overwritten
    let ap = a.plan(&ctx()).await.unwrap();
    let w = nessie.branch(&work).await.unwrap();
    let concurrent = nessie
        .commit(
            &w,
            "concurrent",
            &[put_iceberg_table(&[&ns, "t4"], "s3://w/t4/m1.json", 5)],
        )
        .await
        .unwrap();
    let e = a.apply(&ap, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(nessie.branch(&work).await.unwrap().hash, concurrent.hash);

    for name in [&work, &backup] {
        let b = nessie.branch(name).await.unwrap();
        nessie.delete_branch(&b).await.unwrap();
    }
}
