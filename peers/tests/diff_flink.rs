//! Differential test: the same REST calls against the real Flink 2.3 cluster (a fresh run of our job,
//! submitted for this test) and against `rb_testkit::http::flink::FakeFlink` (a job of the same
//! shape): same status codes, same JSON shapes (`shape_diff`).
//!
//! Every difference found is printed. The test fails when the differences are not exactly
//! [`KNOWN`]: a new difference (the fake drifted) or a fixed one (update the list) both show up.

// Test helpers outside #[test] functions: a failed precondition should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rb_peers::flink::{Answer, FlinkCluster};
use rb_peers::shape::shape_diff;
use rb_peers::PeerEnv;
use rb_testkit::http::flink::{FakeFlink, JobSpec};
use serde_json::{json, Value};

/// Differences between the real cluster and the fake known at the time of writing (path template,
/// then the `shape_diff` line or a status mismatch). Reported to the fake's authors.
const KNOWN: &[&str] = &[];

fn real_cluster() -> FlinkCluster {
    let env = PeerEnv::load().expect("peer env (run peers/run.sh)");
    FlinkCluster::from_env(&env).expect("flink keys in the peer env")
}

async fn fake_call(base: &str, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(m, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer { status, body }
}

/// Objects keyed by vertex ids (`resource-requirements`) or job ids: ids differ between the two sides,
/// so every 32-hex-digit key becomes `<id>` before shapes are compared.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let key = if k.len() == 32 && k.chars().all(|c| c.is_ascii_hexdigit()) {
                        "<id>".to_string()
                    } else {
                        k.clone()
                    };
                    (key, normalize(x))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

struct Report {
    lines: BTreeSet<String>,
}

impl Report {
    fn compare(&mut self, template: &str, real: &Answer, fake: &Answer) {
        if real.status != fake.status {
            self.lines.insert(format!(
                "{template}: status real {} fake {}",
                real.status, fake.status
            ));
        }
        for d in shape_diff(&normalize(&real.body), &normalize(&fake.body)) {
            self.lines.insert(format!("{template}: {d}"));
        }
    }
}

async fn wait_fake_metrics(base: &str, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = fake_call(
            base,
            "GET",
            &format!("/jobs/{job}/metrics?get=numRestarts"),
            None,
        )
        .await;
        if a.body.as_array().is_some_and(|v| !v.is_empty()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fake metrics still empty: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_fake_savepoint(base: &str, job: &str, trigger: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = fake_call(
            base,
            "GET",
            &format!("/jobs/{job}/savepoints/{trigger}"),
            None,
        )
        .await;
        if a.body.pointer("/status/id").and_then(Value::as_str) == Some("COMPLETED") {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "fake savepoint not COMPLETED: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn fake_flink_answers_like_the_real_cluster() {
    let main = real_cluster();
    let real = main.submit_job(&["rb-peers-diff", "100"]).await.unwrap();
    let fake = FakeFlink::start().await.unwrap();
    let fjob = fake
        .add_job(
            JobSpec::new("rb-peers-diff")
                .vertex("Source: numbers", 1)
                .vertex("count-per-bucket -> discard: Writer", 1),
        )
        .unwrap();
    let base = fake.base_url();
    let rid = real.job_id().to_string();

    let result = async {
        // Both sides: running, a checkpoint completed, metrics reported.
        real.wait_status("RUNNING", Duration::from_secs(90))
            .await
            .unwrap();
        real.wait_num_restarts(|_| true, Duration::from_secs(60))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while real.get(&format!("/jobs/{rid}/checkpoints")).await.unwrap()["counts"]["completed"]
            .as_u64()
            < Some(1)
        {
            assert!(
                Instant::now() < deadline,
                "no checkpoint on the real diff job"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        wait_fake_metrics(&base, &fjob).await;

        let mut report = Report {
            lines: BTreeSet::new(),
        };
        let gets = [
            "/overview",
            "/jobs/overview",
            "/config",
            "/taskmanagers",
            "/jobs/{id}",
            "/jobs/{id}/status",
            "/jobs/{id}/metrics",
            "/jobs/{id}/metrics?get=numRestarts",
            "/jobs/{id}/checkpoints",
            "/jobs/{id}/checkpoints/config",
            "/jobs/{id}/exceptions",
            "/jobs/{id}/config",
            "/jobs/{id}/resource-requirements",
            "/jobs/00000000000000000000000000000000",
            "/jobs/00000000000000000000000000000000/status",
            "/jobs/not-a-job-id/status",
            "/nope",
        ];
        for t in gets {
            let r = real
                .call("GET", &t.replace("{id}", &rid), None)
                .await
                .unwrap();
            let f = fake_call(&base, "GET", &t.replace("{id}", &fjob), None).await;
            report.compare(&format!("GET {t}"), &r, &f);
        }

        // Savepoint: trigger and final status.
        let (rtrig, rpost) = real.trigger_savepoint(None).await.unwrap();
        let body = json!({"cancel-job": false, "target-directory": real.savepoint_dir()});
        let fpost = fake_call(
            &base,
            "POST",
            &format!("/jobs/{fjob}/savepoints"),
            Some(&body),
        )
        .await;
        report.compare("POST /jobs/{id}/savepoints", &rpost, &fpost);
        let ftrig = fpost.body["request-id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let rdone = real
            .wait_savepoint(&rtrig, Duration::from_secs(60))
            .await
            .unwrap();
        let fdone = wait_fake_savepoint(&base, &fjob, &ftrig).await;
        report.compare(
            "GET /jobs/{id}/savepoints/{trigger} (completed)",
            &Answer {
                status: 200,
                body: rdone.raw,
            },
            &fdone,
        );

        // Rescale to 2 through resource requirements, then read them back.
        let rput = real.set_parallelism(2).await.unwrap();
        let mut req = serde_json::Map::new();
        for (vid, _, _) in fake.vertices(&fjob).unwrap() {
            req.insert(
                vid,
                json!({"parallelism": {"lowerBound": 1, "upperBound": 2}}),
            );
        }
        let fput = fake_call(
            &base,
            "PUT",
            &format!("/jobs/{fjob}/resource-requirements"),
            Some(&Value::Object(req)),
        )
        .await;
        report.compare("PUT /jobs/{id}/resource-requirements", &rput, &fput);
        real.wait_parallelism(2, Duration::from_secs(60))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        for t in [
            "/jobs/{id}/resource-requirements",
            "/jobs/{id}",
            "/jobs/{id}/rescales/history",
        ] {
            let r = real
                .call("GET", &t.replace("{id}", &rid), None)
                .await
                .unwrap();
            let f = fake_call(&base, "GET", &t.replace("{id}", &fjob), None).await;
            report.compare(&format!("GET {t} (after rescale)"), &r, &f);
        }
        report
    }
    .await;

    real.cancel(Duration::from_secs(60)).await.unwrap();

    eprintln!(
        "real Flink vs FakeFlink: {} difference(s)",
        result.lines.len()
    );
    for l in &result.lines {
        eprintln!("  {l}");
    }
    let known: BTreeSet<String> = KNOWN.iter().map(|s| s.to_string()).collect();
    let new: Vec<_> = result.lines.difference(&known).collect();
    let gone: Vec<_> = known.difference(&result.lines).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "new differences: {new:#?}\nno longer seen: {gone:#?}"
    );
}
