//! The real Flink 2.3 cluster (peers/scripts/flink.sh): the job's REST answers, a TaskManager killed for
//! real and restarted, a savepoint, a rescale through the adaptive scheduler's resource requirements.
//!
//! `RB_PEERS_RECORD=1` also writes the answers into `rb-testkit/fixtures/real/flink/` (+ `_index.tsv`).

// Test helpers outside #[test] functions: a failed precondition should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use rb_peers::flink::{Answer, FlinkCluster};
use rb_peers::PeerEnv;
use serde_json::Value;

fn cluster() -> FlinkCluster {
    let env = PeerEnv::load().expect("peer env (run peers/run.sh)");
    FlinkCluster::from_env(&env).expect("flink keys in the peer env")
}

/// Save an answer as a fixture and keep `_index.tsv` (name, method, path, status) in step.
fn record(name: &str, method: &str, path: &str, answer: &Answer) {
    if std::env::var("RB_PEERS_RECORD").as_deref() != Ok("1") {
        return;
    }
    let dir: PathBuf = PeerEnv::repo_root().join("rb-testkit/fixtures/real/flink");
    std::fs::create_dir_all(&dir).unwrap();
    let file = format!("{name}.json");
    std::fs::write(
        dir.join(&file),
        serde_json::to_string_pretty(&answer.body).unwrap() + "\n",
    )
    .unwrap();
    let index = dir.join("_index.tsv");
    let old = std::fs::read_to_string(&index).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .skip(1)
        .filter(|l| l.split('\t').next() != Some(file.as_str()))
        .map(str::to_string)
        .collect();
    lines.push(format!("{file}\t{method}\t{path}\t{}", answer.status));
    lines.sort();
    std::fs::write(
        &index,
        format!("name\tmethod\tpath\tstatus\n{}\n", lines.join("\n")),
    )
    .unwrap();
}

async fn get_recorded(f: &FlinkCluster, name: &str, path: &str) -> Answer {
    let a = f.call("GET", path, None).await.unwrap();
    record(name, "GET", path, &a);
    a
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn cluster_and_job_answer_like_flink_2_3() {
    let f = cluster();
    let id = f.job_id().to_string();

    let overview = get_recorded(&f, "overview", "/overview").await;
    assert_eq!(overview.status, 200);
    assert_eq!(overview.body["flink-version"], "2.3.0");
    assert!(
        overview.body["taskmanagers"].as_u64().unwrap() >= 1,
        "{}",
        overview.body
    );

    let jobs = get_recorded(&f, "jobs_overview", "/jobs/overview").await;
    let ours = jobs.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["jid"] == id.as_str())
        .cloned();
    assert!(ours.is_some(), "{}", jobs.body);

    f.wait_status("RUNNING", Duration::from_secs(90))
        .await
        .unwrap();
    let detail = get_recorded(&f, "job_detail", &format!("/jobs/{id}")).await;
    assert_eq!(detail.body["jid"], id.as_str());
    assert_eq!(
        detail.body["vertices"].as_array().unwrap().len(),
        2,
        "{}",
        detail.body
    );

    let status = get_recorded(&f, "job_status", &format!("/jobs/{id}/status")).await;
    assert_eq!(status.body["status"], "RUNNING");

    // Metrics answer [] for a while after a start: wait for numRestarts to be reported.
    let n = f
        .wait_num_restarts(|_| true, Duration::from_secs(60))
        .await
        .unwrap();
    let metrics = get_recorded(
        &f,
        "job_metrics_get",
        &format!("/jobs/{id}/metrics?get=numRestarts"),
    )
    .await;
    assert_eq!(metrics.body[0]["id"], "numRestarts");
    assert!(
        metrics.body[0]["value"].is_string(),
        "values are strings: {}",
        metrics.body
    );
    assert!(
        metrics.body[0]["value"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= n
    );
    get_recorded(&f, "job_metrics_list", &format!("/jobs/{id}/metrics")).await;

    let ck = get_recorded(&f, "job_checkpoints", &format!("/jobs/{id}/checkpoints")).await;
    assert!(
        ck.body["counts"]["completed"].as_u64().unwrap() >= 1,
        "{}",
        ck.body
    );
    assert!(
        ck.body["latest"]["completed"]["external_path"].is_string(),
        "{}",
        ck.body
    );
    get_recorded(
        &f,
        "job_checkpoints_config",
        &format!("/jobs/{id}/checkpoints/config"),
    )
    .await;
    get_recorded(&f, "job_exceptions", &format!("/jobs/{id}/exceptions")).await;
    get_recorded(&f, "job_config", &format!("/jobs/{id}/config")).await;
    get_recorded(&f, "config", "/config").await;
    get_recorded(&f, "taskmanagers", "/taskmanagers").await;

    let unknown = get_recorded(
        &f,
        "err_unknown_job",
        "/jobs/00000000000000000000000000000000",
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body["errors"].is_array(), "{}", unknown.body);
    // The status route answers an unknown job with 500 and FlinkJobNotFoundException, not 404.
    let unknown_status = get_recorded(
        &f,
        "err_unknown_job_status",
        "/jobs/00000000000000000000000000000000/status",
    )
    .await;
    assert_eq!(unknown_status.status, 500, "{}", unknown_status.body);
    assert!(
        unknown_status
            .body
            .to_string()
            .contains("FlinkJobNotFoundException"),
        "{}",
        unknown_status.body
    );
    let bad = get_recorded(&f, "err_bad_jobid", "/jobs/not-a-job-id/status").await;
    assert_eq!(bad.status, 400);
    let no_route = get_recorded(&f, "err_no_route", "/nope").await;
    assert_eq!(no_route.status, 404);
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn killed_taskmanager_restarts_the_job_and_counts_a_restart() {
    let f = cluster();
    let id = f.job_id().to_string();
    f.wait_status("RUNNING", Duration::from_secs(90))
        .await
        .unwrap();
    let before = f
        .wait_num_restarts(|_| true, Duration::from_secs(60))
        .await
        .unwrap();

    f.kill_taskmanager().await.unwrap();
    // Without a TaskManager the adaptive scheduler restarts the job and waits for slots in CREATED.
    let seen = f
        .wait_status("CREATED", Duration::from_secs(60))
        .await
        .unwrap();
    let names: Vec<&str> = seen.iter().map(|s| s.status.as_str()).collect();
    eprintln!("after TM kill: {seen:?}");
    assert!(
        names.contains(&"RESTARTING") || names.contains(&"CREATED"),
        "{names:?}"
    );
    let status = get_recorded(
        &f,
        "job_status_created_after_tm_kill",
        &format!("/jobs/{id}/status"),
    )
    .await;
    assert_eq!(status.body["status"], "CREATED");
    let overview = get_recorded(&f, "overview_after_tm_kill", "/overview").await;
    assert_eq!(overview.status, 200);

    f.start_taskmanager().await.unwrap();
    let seen = f
        .wait_status("RUNNING", Duration::from_secs(90))
        .await
        .unwrap();
    eprintln!("after TM start: {seen:?}");

    let after = f
        .wait_num_restarts(|n| n > before, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(after > before, "numRestarts {before} -> {after}");
    get_recorded(
        &f,
        "job_metrics_get_after_tm_kill",
        &format!("/jobs/{id}/metrics?get=numRestarts"),
    )
    .await;

    let ex = get_recorded(
        &f,
        "job_exceptions_after_tm_kill",
        &format!("/jobs/{id}/exceptions"),
    )
    .await;
    let history = ex.body["exceptionHistory"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !history.is_empty(),
        "an exception is recorded after a TaskManager loss: {}",
        ex.body
    );
    let first = &history[0];
    for k in ["exceptionName", "stacktrace", "timestamp"] {
        assert!(!first[k].is_null(), "{k} missing in {first}");
    }
    let text = first["stacktrace"].as_str().unwrap_or("");
    assert!(
        text.contains("TaskManager") || text.contains("TaskExecutor"),
        "{}",
        first["exceptionName"]
    );
    let detail = f.get(&format!("/jobs/{id}")).await.unwrap();
    assert!(
        detail.get("numRestarts").is_none(),
        "job detail has no numRestarts"
    );
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn savepoint_is_triggered_and_completes_on_disk() {
    let f = cluster();
    let id = f.job_id().to_string();
    f.wait_status("RUNNING", Duration::from_secs(90))
        .await
        .unwrap();
    // Right after a restart or rescale the job is RUNNING before every task is: a savepoint then ends
    // COMPLETED with a failure-cause. Try again a few times (and keep such an answer as a fixture).
    let mut attempt = 0;
    let out = loop {
        attempt += 1;
        let (trigger, answer) = f.trigger_savepoint(None).await.unwrap();
        record(
            "savepoint_trigger",
            "POST",
            &format!("/jobs/{id}/savepoints"),
            &answer,
        );
        let out = f
            .wait_savepoint(&trigger, Duration::from_secs(60))
            .await
            .unwrap();
        let name = if out.failure.is_some() {
            "savepoint_status_failed"
        } else {
            "savepoint_status_completed"
        };
        record(
            name,
            "GET",
            &format!("/jobs/{id}/savepoints/{trigger}"),
            &Answer {
                status: 200,
                body: out.raw.clone(),
            },
        );
        if out.failure.is_none() || attempt == 5 {
            break out;
        }
        eprintln!("savepoint attempt {attempt} failed: {}", out.raw);
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    assert!(out.failure.is_none(), "{:?}", out.failure);
    let location = out.location.expect("a savepoint location");
    let dir = location.trim_start_matches("file:");
    assert!(
        std::path::Path::new(dir).join("_metadata").is_file(),
        "no _metadata under {location}"
    );

    let ck = get_recorded(
        &f,
        "job_checkpoints_after_savepoint",
        &format!("/jobs/{id}/checkpoints"),
    )
    .await;
    assert!(
        ck.body["latest"]["savepoint"]["external_path"].is_string(),
        "{}",
        ck.body
    );

    let unknown = f
        .call(
            "GET",
            &format!("/jobs/{id}/savepoints/00000000000000000000000000000000"),
            None,
        )
        .await
        .unwrap();
    record(
        "err_unknown_savepoint_trigger",
        "GET",
        &format!("/jobs/{id}/savepoints/<unknown>"),
        &unknown,
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn rescale_through_resource_requirements() {
    let f = cluster();
    let id = f.job_id().to_string();
    f.wait_status("RUNNING", Duration::from_secs(90))
        .await
        .unwrap();
    let rr = get_recorded(
        &f,
        "job_resource_requirements",
        &format!("/jobs/{id}/resource-requirements"),
    )
    .await;
    assert_eq!(rr.status, 200);
    for (_, v) in rr.body.as_object().unwrap() {
        assert!(
            v["parallelism"]["upperBound"].as_u64().is_some(),
            "{}",
            rr.body
        );
    }

    let put = f.set_parallelism(2).await.unwrap();
    record(
        "job_resource_requirements_put",
        "PUT",
        &format!("/jobs/{id}/resource-requirements"),
        &put,
    );
    assert_eq!(put.status, 200, "{}", put.body);
    f.wait_parallelism(2, Duration::from_secs(60))
        .await
        .unwrap();
    let rr2 = get_recorded(
        &f,
        "job_resource_requirements_after_put",
        &format!("/jobs/{id}/resource-requirements"),
    )
    .await;
    for (_, v) in rr2.body.as_object().unwrap() {
        assert_eq!(v["parallelism"]["upperBound"], 2, "{}", rr2.body);
    }
    get_recorded(&f, "job_detail_after_rescale", &format!("/jobs/{id}")).await;
    get_recorded(
        &f,
        "job_rescales_history",
        &format!("/jobs/{id}/rescales/history"),
    )
    .await;

    // Leave the job as we found it.
    let back = f.set_parallelism(1).await.unwrap();
    assert_eq!(back.status, 200, "{}", back.body);
    f.wait_parallelism(1, Duration::from_secs(60))
        .await
        .unwrap();

    let bad: Value =
        serde_json::json!({"not-a-vertex": {"parallelism": {"lowerBound": 1, "upperBound": 2}}});
    let err = f
        .call(
            "PUT",
            &format!("/jobs/{id}/resource-requirements"),
            Some(&bad),
        )
        .await
        .unwrap();
    record(
        "err_resource_requirements_bad_vertex",
        "PUT",
        &format!("/jobs/{id}/resource-requirements"),
        &err,
    );
    assert!(err.status >= 400, "{} {}", err.status, err.body);
}
