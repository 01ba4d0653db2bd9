//! rb-actions' Flink remediations against the real Flink 2.3 cluster (adaptive scheduler) of
//! peers/scripts/flink.sh: a savepoint, a rescale in place, stop with savepoint, a restore from
//! that savepoint through the jar submitter (the jar uploaded again), a failed savepoint.
//!
//! The test runs on a job of its own (submitted here, cancelled at the end): the tier's long-running
//! job is left alone for the other tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_actions::flink::{
    FlinkEndpoint, JarSubmitter, JobSubmitter, Rescale, Restore, Savepoint, StopWithSavepoint,
};
use rb_core::remediation::StepOutput;
use rb_core::{labels, ActionContext, ErrorKind, Outcome, Plan, Remediation, Target, Verification};
use rb_peers::flink::FlinkCluster;
use rb_peers::PeerEnv;
use rb_probes::transport::ReqwestClient;
use serde_json::json;

fn cluster() -> (FlinkCluster, PeerEnv) {
    let env = PeerEnv::load().expect("peer env (run peers/run.sh)");
    (
        FlinkCluster::from_env(&env).expect("flink keys in the peer env"),
        env,
    )
}

fn endpoint(url: &str) -> FlinkEndpoint {
    let client = ReqwestClient::builder(url)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    FlinkEndpoint::new(Target::new("flink", "flink-peer"), Arc::new(client))
}

fn ctx(job: &str) -> ActionContext {
    ActionContext::detached(rb_core::time::Clock::system(), Duration::from_secs(600))
        .with_key(labels(&[("job_id", job)]))
}

async fn verified<R: Remediation>(
    r: &R,
    plan: &Plan,
    out: &Outcome,
    c: &ActionContext,
) -> Verification {
    let end = tokio::time::Instant::now() + r.verify_within();
    loop {
        let v = r.verify(plan, out, c).await.unwrap();
        if !matches!(v, Verification::Inconclusive { .. }) || tokio::time::Instant::now() >= end {
            return v;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Wait until the job has a completed checkpoint (a savepoint needs every task running).
async fn wait_checkpoint(c: &FlinkCluster, job: &str) {
    for _ in 0..60 {
        let cp = c.get(&format!("/jobs/{job}/checkpoints")).await.unwrap();
        if cp["latest"]["completed"]["id"].as_u64().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("job {job} has no completed checkpoint after 60 s");
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn savepoint_rescale_in_place_stop_and_restore_on_a_real_flink() {
    let (base, env) = cluster();
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000;
    let name = format!("rb-actions-{s}");
    let job = base.submit_job(&[&name, "100"]).await.unwrap();
    job.wait_status("RUNNING", Duration::from_secs(60))
        .await
        .unwrap();
    let id = job.job_id().to_string();
    wait_checkpoint(&base, &id).await;
    let ep = endpoint(base.url());

    // savepoint
    let sp = Savepoint::new(ep.clone());
    let c = ctx(&id);
    let plan = sp.plan(&c).await.unwrap();
    let out = sp.apply(&plan, &c).await.unwrap();
    let path = out.details["savepoint_path"].as_str().unwrap().to_string();
    assert!(path.contains("savepoint-"), "{path}");
    let v = verified(&sp, &plan, &out, &c).await;
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    assert_eq!(job.job_status().await.unwrap(), "RUNNING");

    // a failed savepoint (an unwritable directory) is reported COMPLETED with a failure-cause
    let bad = Savepoint::new(ep.clone()).target_directory("file:///proc/rb-actions-nope");
    let bp = bad.plan(&c).await.unwrap();
    let e = bad.apply(&bp, &c).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert!(e.details["failure"].is_string(), "{e:?}");

    // rescale in place on the adaptive scheduler
    let r = Rescale::to_parallelism(ep.clone(), 2);
    let rp = r.plan(&c).await.unwrap();
    assert_eq!(rp.params["mode"], "in_place", "{}", rp.description);
    let ro = r.apply(&rp, &c).await.unwrap();
    let v = verified(&r, &rp, &ro, &c).await;
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    let detail = base.get(&format!("/jobs/{id}")).await.unwrap();
    for v in detail["vertices"].as_array().unwrap() {
        assert_eq!(v["parallelism"], 2, "{v}");
    }
    let again = r.plan(&c).await.unwrap();
    assert!(again.nothing_to_do.is_some(), "{again:?}");

    // stop with savepoint, then restore from it through the jar submitter (the jar was deleted
    // after the submit above: it is uploaded again)
    let stop = StopWithSavepoint::new(ep.clone());
    let sp2 = stop.plan(&c).await.unwrap();
    let so = stop.apply(&sp2, &c).await.unwrap();
    let v = verified(&stop, &sp2, &so, &c).await;
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    let stopped_at = so.details["savepoint_path"].as_str().unwrap().to_string();

    let jar = tokio::fs::read(env.get("FLINK_JAR").unwrap())
        .await
        .unwrap();
    let client = ReqwestClient::builder(base.url())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let sub: Arc<dyn JobSubmitter> = Arc::new(
        JarSubmitter::new(Arc::new(client), "rb-peers-counter.jar")
            .jar_bytes(jar)
            .program_args([format!("{name}-restored"), "100".to_string()]),
    );
    let restore = Restore::new(ep, sub);
    let mut sp_out = StepOutput::default();
    sp_out
        .artifacts
        .insert("savepoint_path".into(), json!(stopped_at));
    let c2 = ctx(&id).with_output("stop", sp_out);
    let rp = restore.plan(&c2).await.unwrap();
    assert_eq!(rp.params["restore_path"], stopped_at.as_str());
    let ro = restore.apply(&rp, &c2).await.unwrap();
    let new = ro.details["job_id"].as_str().unwrap().to_string();
    let v = verified(&restore, &rp, &ro, &c2).await;
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    let cps = base.get(&format!("/jobs/{new}/checkpoints")).await.unwrap();
    assert_eq!(
        cps["latest"]["restored"]["external_path"],
        stopped_at.as_str()
    );
    assert_eq!(cps["latest"]["restored"]["is_savepoint"], true);

    base.with_job(&new)
        .cancel(Duration::from_secs(60))
        .await
        .unwrap();
}
