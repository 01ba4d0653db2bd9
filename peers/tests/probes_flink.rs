//! The Flink probes against the real Flink 2.3 cluster of the tier (peers/scripts/flink.sh, our
//! counter job running): what the probes report equals what Flink's REST API says when read
//! directly, and a TaskManager killed for real is seen live (from `/status`) with the restart
//! counted and the exception classified.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use rb_core::time::Clock;
use rb_core::{Observation, Probe, ProbeContext, Target};
use rb_peers::flink::FlinkCluster;
use rb_peers::PeerEnv;
use rb_probes::flink::{
    FailureCategory, FlinkCluster as ClusterFact, FlinkClusterProbe, FlinkJob, FlinkJobProbe,
    JobSelector,
};
use rb_probes::transport::ReqwestClient;
use serde_json::Value;

fn cluster() -> FlinkCluster {
    let env = PeerEnv::load().expect("peer env (run peers/run.sh)");
    FlinkCluster::from_env(&env).expect("flink keys in the peer env")
}

fn ctx() -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), Duration::from_secs(20))
}

fn job_probe(f: &FlinkCluster) -> FlinkJobProbe<ReqwestClient> {
    FlinkJobProbe::new(
        ReqwestClient::new(f.url()).unwrap(),
        Target::new("flink", "flink-peer"),
        JobSelector::id(f.job_id()),
    )
}

fn fact(obs: &Observation) -> FlinkJob {
    obs.facts.get::<FlinkJob>().unwrap().unwrap()
}

/// Observe until the metric store has the job's and the vertices' metrics (it is empty for a
/// while after a (re)start).
async fn observe_complete(f: &FlinkCluster) -> Observation {
    let probe = job_probe(f);
    let t0 = Instant::now();
    loop {
        let obs = probe.observe(&ctx()).await.unwrap();
        if obs.complete {
            return obs;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "still incomplete after 90 s: {:?}",
            obs.gaps
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn u(v: &Value, p: &str) -> u64 {
    v.pointer(p)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{p} in {v}"))
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn probes_equal_what_flink_rest_says() {
    let f = cluster();
    f.wait_status("RUNNING", Duration::from_secs(90))
        .await
        .unwrap();
    let id = f.job_id().to_string();

    // cluster overview
    let direct = f.get("/overview").await.unwrap();
    let obs = FlinkClusterProbe::new(
        ReqwestClient::new(f.url()).unwrap(),
        Target::new("flink", "flink-peer"),
    )
    .observe(&ctx())
    .await
    .unwrap();
    let c: ClusterFact = obs.facts.get().unwrap().unwrap();
    assert_eq!(c.taskmanagers, u(&direct, "/taskmanagers"));
    assert_eq!(c.slots_total, u(&direct, "/slots-total"));
    assert_eq!(c.slots_available, u(&direct, "/slots-available"));
    assert_eq!(c.jobs_running, u(&direct, "/jobs-running"));
    assert_eq!(c.flink_version.as_deref(), Some("2.3.0"));

    // the job, bracketed by direct reads (checkpoints advance every 2 s)
    let before = f.get(&format!("/jobs/{id}/checkpoints")).await.unwrap();
    let obs = observe_complete(&f).await;
    let after = f.get(&format!("/jobs/{id}/checkpoints")).await.unwrap();
    let j = fact(&obs);
    assert_eq!(j.state, f.job_status().await.unwrap());
    assert_eq!(j.state, "RUNNING");
    assert_eq!(j.restarts, f.num_restarts().await.unwrap());
    let cp = j.checkpoints.clone().unwrap();
    let id_before = u(&before, "/latest/completed/id");
    let id_after = u(&after, "/latest/completed/id");
    let got = cp.last_completed_id.unwrap();
    assert!(
        (id_before..=id_after).contains(&got),
        "{id_before} <= {got} <= {id_after}"
    );
    assert!(
        (u(&before, "/counts/completed")..=u(&after, "/counts/completed")).contains(&cp.completed)
    );
    assert_eq!(cp.failed, u(&after, "/counts/failed"));
    assert!(cp
        .last_completed_path
        .as_deref()
        .unwrap()
        .contains(&format!("{id}/chk-{got}")));
    // the completion time is the one Flink recorded for that checkpoint, and the age is measured
    // on the server's clock (no skew): between 0 and "now" of a detail read after the probe
    let ack = [&before, &after]
        .iter()
        .filter(|c| u(c, "/latest/completed/id") == got)
        .map(|c| u(c, "/latest/completed/latest_ack_timestamp"))
        .next()
        .unwrap_or_else(|| panic!("checkpoint {got} in neither direct read"));
    assert_eq!(cp.last_completed_at_ms, Some(ack as i64));
    let now_after = u(&f.get(&format!("/jobs/{id}")).await.unwrap(), "/now");
    assert!(
        cp.last_completed_age_ms.unwrap() <= now_after - ack,
        "{cp:?}"
    );

    // vertices: ids, parallelism and max parallelism as the detail says; sources per the plan
    let detail = f.get(&format!("/jobs/{id}")).await.unwrap();
    let dv = detail["vertices"].as_array().unwrap();
    assert_eq!(j.vertices.len(), dv.len());
    for (v, d) in j.vertices.iter().zip(dv) {
        assert_eq!(v.id, d["id"].as_str().unwrap());
        assert_eq!(u64::from(v.parallelism), d["parallelism"].as_u64().unwrap());
        assert_eq!(
            v.max_parallelism.map(u64::from),
            d["maxParallelism"].as_u64()
        );
        let busy = v.busy_ratio.unwrap();
        assert!((0.0..=1.0).contains(&busy), "{v:?}");
        assert!(v.backpressure_ratio.is_some(), "{v:?}");
    }
    let nodes = detail["plan"]["nodes"].as_array().unwrap();
    let sources: Vec<&str> = nodes
        .iter()
        .filter(|n| n.get("inputs").is_none())
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let probed: Vec<&str> = j
        .vertices
        .iter()
        .filter(|v| v.is_source)
        .map(|v| v.id.as_str())
        .collect();
    assert_eq!(probed, sources);
    // the counter job's generator emits records: the source's rate is seen (Flink's per-second
    // meters read 0 for a while after a (re)start, so watch it come up)
    let t0 = Instant::now();
    loop {
        let obs = observe_complete(&f).await;
        let j = fact(&obs);
        let src = j.vertices.iter().find(|v| v.is_source).unwrap().clone();
        if src.input_records_per_second.unwrap() > 0.0 {
            let total = obs
                .samples_named("flink_job_input_records_per_second")
                .next()
                .unwrap()
                .value;
            assert_eq!(total, src.input_records_per_second.unwrap());
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the source's rate stayed 0: {src:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let direct_exc = f
        .get(&format!("/jobs/{id}/exceptions?maxExceptions=10"))
        .await
        .unwrap();
    assert_eq!(
        j.exceptions.len(),
        direct_exc["exceptionHistory"]["entries"]
            .as_array()
            .unwrap()
            .len()
    );
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn killed_taskmanager_is_seen_live_and_counted() {
    let f = cluster();
    f.wait_status("RUNNING", Duration::from_secs(90))
        .await
        .unwrap();
    let restarts_before = f
        .wait_num_restarts(|_| true, Duration::from_secs(60))
        .await
        .unwrap();
    let probe = job_probe(&f);
    // warm the JobManager's execution-graph cache with a RUNNING detail
    let obs = probe.observe(&ctx()).await.unwrap();
    assert_eq!(fact(&obs).state, "RUNNING");

    f.kill_taskmanager().await.unwrap();
    // the JobManager notices by heartbeat: watch the live state leave RUNNING
    let t0 = Instant::now();
    let seen = loop {
        let obs = probe.observe(&ctx()).await.unwrap();
        let j = fact(&obs);
        if j.state != "RUNNING" {
            break obs;
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "still RUNNING");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let j = fact(&seen);
    let live = f.job_status().await.unwrap();
    assert!(
        ["RESTARTING", "CREATED", "RUNNING", "INITIALIZING"].contains(&live.as_str()),
        "{live}"
    );
    assert!(
        ["RESTARTING", "CREATED", "FAILING", "INITIALIZING"].contains(&j.state.as_str()),
        "{}",
        j.state
    );
    let up = seen
        .samples_named("flink_job_up")
        .next()
        .map(|s| s.value)
        .unwrap();
    assert_eq!(up, 0.0);

    f.start_taskmanager().await.unwrap();
    f.wait_status("RUNNING", Duration::from_secs(120))
        .await
        .unwrap();
    let n = f
        .wait_num_restarts(|n| n > restarts_before, Duration::from_secs(60))
        .await
        .unwrap();
    // the detail cache and the metric store catch up: wait for a complete view with the restart
    let t0 = Instant::now();
    let j = loop {
        let obs = probe.observe(&ctx()).await.unwrap();
        let j = fact(&obs);
        // at least the restart we caused: the job may fail again while no slot is back (a
        // NoResourceAvailable restart), which counts too
        if obs.complete && j.restarts.is_some_and(|r| r >= n) && !j.exceptions.is_empty() {
            break j;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "restarts {:?} (want {n}), gaps {:?}",
            j.restarts,
            obs.gaps
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(j.state, "RUNNING");
    assert_eq!(j.restarts, f.num_restarts().await.unwrap());
    // the lost TaskManager is among the latest exceptions, classified as such (a later
    // NoResourceAvailable failure may come first)
    let lost = j
        .exceptions
        .iter()
        .find(|e| e.category == FailureCategory::LostTaskManager);
    let lost =
        lost.unwrap_or_else(|| panic!("no lost-TaskManager exception in {:?}", j.exceptions));
    assert!(
        lost.message.contains("is no longer reachable") || lost.message.contains("TaskManager"),
        "{lost:?}"
    );
}
