//! Differential test: the same Nessie v2 requests against the real server (0.99) and against
//! `rb_testkit::http::nessie::FakeNessie`, driven through the same `rb_peers::nessie::Nessie`
//! handle in the same situation (a merge conflict, a clean merge, error cases), compared by status
//! code and JSON shape (`rb_peers::shape::shape_diff`). Every difference is printed; the test fails
//! on any difference not in [`KNOWN`] (differences found and reported to the fake's authors, listed
//! so the tier stays green until they are fixed; a fixed one is reported as such).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{SystemTime, UNIX_EPOCH};

use rb_peers::kafka::Answer;
use rb_peers::nessie::{put_iceberg_table, put_namespace, BranchRef, Nessie};
use rb_peers::shape::shape_diff;
use rb_peers::PeerEnv;
use rb_testkit::http::nessie::FakeNessie;
use reqwest::Method;
use serde_json::json;

/// Differences found by this test and not yet fixed in the fake (each with its reason). Empty: the
/// last one (`entries[].content`, null in every entry of `GET /trees/{ref}/entries` on the real
/// server, missing in the fake) was fixed in the fake.
const KNOWN: &[&str] = &[];

#[derive(Default)]
struct Diff {
    lines: Vec<String>,
    compared: usize,
}

impl Diff {
    fn compare(&mut self, what: &str, real: &Answer, fake: &Answer) {
        self.compared += 1;
        if real.status != fake.status {
            self.lines.push(format!(
                "{what}: status real {} fake {} (real body {}, fake body {})",
                real.status, fake.status, real.body, fake.body
            ));
        }
        for d in shape_diff(&real.body, &fake.body) {
            self.lines.push(format!("{what}: {d}"));
        }
    }
}

/// Run the same request on both sides and compare.
async fn both(
    diff: &mut Diff,
    sides: &[&Nessie; 2],
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) {
    let r = sides[0].call(method.clone(), path, body).await.unwrap();
    let f = sides[1].call(method.clone(), path, body).await.unwrap();
    diff.compare(&format!("{method} {path}"), &r, &f);
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn fake_nessie_answers_like_the_real_server() {
    let real = Nessie::from_env(&PeerEnv::load().unwrap()).unwrap();
    let fake_srv = FakeNessie::start().await.unwrap();
    let fake = Nessie::new(&fake_srv.api_url(), &fake_srv.management_url()).unwrap();
    let sides = [&real, &fake];
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let s = format!("{}{}", std::process::id(), nanos % 1_000_000_000);
    let ns = format!("rbdiff{s}");
    let branch = format!("rb-diff-{s}");
    let mut diff = Diff::default();

    for path in ["/q/health", "/q/health/ready", "/q/health/live"] {
        let (r, f) = (
            real.mgmt_get(path).await.unwrap(),
            fake.mgmt_get(path).await.unwrap(),
        );
        diff.compare(&format!("GET {path}"), &r, &f);
    }
    for path in ["/config", "/trees", "/trees/main"] {
        both(&mut diff, &sides, Method::GET, path, None).await;
    }

    // The conflict, on both sides.
    let rc = real.make_conflict(&ns, &branch).await.unwrap();
    let fc = fake.make_conflict(&ns, &branch).await.unwrap();
    diff.compare("merge (conflict)", &rc.merge, &fc.merge);
    diff.compare("merge isDryRun (conflict)", &rc.dry_run, &fc.dry_run);
    diff.compare(
        "merge isReturnConflictAsResult (conflict)",
        &rc.as_result,
        &fc.as_result,
    );

    // The same conflict seen by a client that sends `Nessie-Client-Spec: 2`.
    let (mut real2, mut fake2) = (real.clone(), fake.clone());
    real2.client_spec_2 = true;
    fake2.client_spec_2 = true;
    let rc2 = real2
        .make_conflict(&format!("{ns}x"), &format!("{branch}-x"))
        .await
        .unwrap();
    let fc2 = fake2
        .make_conflict(&format!("{ns}x"), &format!("{branch}-x"))
        .await
        .unwrap();
    assert!(
        rc2.merge.body["errorDetails"]["conflicts"].is_array(),
        "{}",
        rc2.merge.body
    );
    diff.compare(
        "merge (conflict, Nessie-Client-Spec: 2)",
        &rc2.merge,
        &fc2.merge,
    );
    diff.compare(
        "merge isDryRun (conflict, Nessie-Client-Spec: 2)",
        &rc2.dry_run,
        &fc2.dry_run,
    );
    for (side, sc) in [(&real2, &rc2), (&fake2, &fc2)] {
        side.delete_branch(&side.branch(&sc.branch.name).await.unwrap())
            .await
            .unwrap();
    }

    for path in [
        format!("/trees/{branch}"),
        format!("/trees/{branch}/history"),
        "/trees/main/history".to_string(),
        format!("/trees/main/contents/{ns}.t"),
        format!("/trees/main/contents?key={ns}.t"),
        "/trees/main/entries".to_string(),
        "/trees/main@not-a-hash".to_string(),
        "/trees/rb-no-such-branch".to_string(),
        format!("/trees/main@{}/history", "0".repeat(64)),
        format!("/trees/main/contents/{ns}.nope"),
    ] {
        both(&mut diff, &sides, Method::GET, &path, None).await;
    }

    // Error answers of writes (each side at its own hashes).
    let key = [ns.as_str(), "t"];
    let mut answers: Vec<Vec<Answer>> = Vec::new();
    for (side, sc) in [(&real, &rc), (&fake, &fc)] {
        let mut a = Vec::new();
        let foreign = BranchRef {
            name: "main".into(),
            hash: sc.branch.hash.clone(),
        };
        a.push(
            side.commit_raw(
                &foreign,
                "foreign",
                &[put_iceberg_table(&key, "s3://x/f.json", 3)],
            )
            .await
            .unwrap(),
        );
        let hist = side.get("/trees/main/history").await.unwrap();
        let before = hist.body["logEntries"][1]["commitMeta"]["hash"]
            .as_str()
            .unwrap()
            .to_string();
        let stale = BranchRef {
            name: "main".into(),
            hash: before,
        };
        a.push(
            side.commit_raw(
                &stale,
                "stale",
                &[put_iceberg_table(&key, "s3://x/s.json", 3)],
            )
            .await
            .unwrap(),
        );
        let main = side.branch("main").await.unwrap();
        a.push(
            side.commit_raw(&main, "again", &[put_namespace(&[ns.as_str()])])
                .await
                .unwrap(),
        );
        a.push(
            side.call(
                Method::POST,
                &format!("/trees?name={branch}&type=BRANCH"),
                Some(&json!({"type": "BRANCH", "name": "main", "hash": main.hash})),
            )
            .await
            .unwrap(),
        );
        a.push(
            side.call(
                Method::POST,
                &format!("/trees/{}/history/commit", "main"),
                Some(&json!({"commitMeta": {"message": "m"}, "operations": []})),
            )
            .await
            .unwrap(),
        );
        // A clean merge: dry run, the ignored "dryRun" spelling, a real merge; then deletes.
        let clean = format!("rb-diff-clean-{s}");
        let created = side
            .call(
                Method::POST,
                &format!("/trees?name={clean}&type=BRANCH"),
                Some(&json!({"type": "BRANCH", "name": "main", "hash": main.hash})),
            )
            .await
            .unwrap();
        a.push(created);
        let forked = side.branch(&clean).await.unwrap();
        a.push(
            side.commit_raw(
                &forked,
                "u",
                &[put_iceberg_table(&[ns.as_str(), "u"], "s3://x/u.json", 4)],
            )
            .await
            .unwrap(),
        );
        let head = side.branch(&clean).await.unwrap();
        a.push(side.merge(&main, &head, true).await.unwrap());
        a.push(side.merge(&main, &head, false).await.unwrap());
        let main2 = side.branch("main").await.unwrap();
        a.push(side.merge(&main2, &head, false).await.unwrap());
        for b in [
            side.branch(&branch).await.unwrap(),
            side.branch(&clean).await.unwrap(),
        ] {
            a.push(side.delete_branch(&b).await.unwrap());
        }
        a.push(
            side.delete_branch(&BranchRef {
                name: "main".into(),
                hash: main2.hash.clone(),
            })
            .await
            .unwrap(),
        );
        answers.push(a);
    }
    let labels = [
        "commit on main@<hash not in main>",
        "commit on stale main@hash (conflicting key)",
        "commit PUT existing key without content id",
        "create existing branch",
        "commit without expected hash (main)",
        "create branch",
        "commit table on branch",
        "merge isDryRun (clean)",
        "merge (clean)",
        "merge again (nothing to merge)",
        "delete branch (conflict branch)",
        "delete branch (clean branch)",
        "delete main",
    ];
    assert_eq!(answers[0].len(), labels.len());
    for (i, label) in labels.iter().enumerate() {
        diff.compare(label, &answers[0][i], &answers[1][i]);
    }

    assert_eq!(diff.compared, 3 + 3 + 3 + 2 + 10 + labels.len());
    for line in &diff.lines {
        println!("DIFF {line}");
    }
    for known in KNOWN {
        if !diff.lines.iter().any(|l| l == known) {
            println!("FIXED (no longer differs): {known}");
        }
    }
    let unknown: Vec<&str> = diff
        .lines
        .iter()
        .map(String::as_str)
        .filter(|l| !KNOWN.contains(l))
        .collect();
    assert!(
        unknown.is_empty(),
        "the fake differs from the real server:\n{}",
        unknown.join("\n")
    );
}
