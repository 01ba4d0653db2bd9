//! Flink remediations against FakeFlink through the real reqwest client, on a paused clock.
//! Run: `cargo test -p rb-actions --no-default-features --features flink --test flink`.
#![cfg(feature = "flink")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rb_actions::flink::autoscale::{target_parallelism, AutoscalerSettings, VertexLoad};
use rb_actions::flink::{
    FlinkEndpoint, JarSubmitter, JobSubmitter, Rescale, Restore, Savepoint, ScalingInputs,
    StopWithSavepoint, VertexRates,
};
use rb_core::observation::Evidence;
use rb_core::prelude::*;
use rb_core::remediation::StepOutput;
use rb_core::time::Timestamp;
use rb_probes::transport::{HttpClient, HttpRequest, ReqwestClient};
use rb_testkit::http::flink::{FakeFlink, JobSpec};
use rb_testkit::http::Fault;
use serde_json::{json, Value};
use tokio::time::sleep;

const JAR: &[u8] = b"PK\x03\x04 runbook-counter";

fn clock() -> Clock {
    Clock::starting_at(Timestamp(1_795_590_000_000))
}

fn endpoint(flink: &FakeFlink) -> FlinkEndpoint {
    let client = ReqwestClient::builder(flink.base_url())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    FlinkEndpoint::new(Target::new("flink", "flink-main"), Arc::new(client))
}

fn submitter(flink: &FakeFlink) -> Arc<dyn JobSubmitter> {
    let client = ReqwestClient::builder(flink.base_url())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    Arc::new(JarSubmitter::new(Arc::new(client), "runbook-counter.jar").jar_bytes(JAR.to_vec()))
}

/// A fake with the captured counter job running for a few checkpoints.
async fn started() -> (FakeFlink, FlinkEndpoint, String) {
    let flink = FakeFlink::start().await.unwrap();
    let job = flink.add_job(JobSpec::counter("orders")).unwrap();
    sleep(Duration::from_secs(7)).await;
    let ep = endpoint(&flink);
    (flink, ep, job)
}

fn ctx(job: &str) -> ActionContext {
    ActionContext::detached(clock(), Duration::from_secs(600)).with_key(labels(&[("job_id", job)]))
}

fn with_savepoint(ctx: ActionContext, path: &str) -> ActionContext {
    let mut out = StepOutput::default();
    out.artifacts
        .insert("savepoint_path".into(), json!(path.to_string()));
    ctx.with_output("savepoint", out)
}

/// Verify, as the engine does, until it is no longer inconclusive (at most `within`).
async fn verified<R: Remediation>(
    r: &R,
    plan: &Plan,
    outcome: &Outcome,
    ctx: &ActionContext,
) -> Verification {
    let end = tokio::time::Instant::now() + r.verify_within();
    loop {
        let v = r.verify(plan, outcome, ctx).await.unwrap();
        if !matches!(v, Verification::Inconclusive { .. }) || tokio::time::Instant::now() >= end {
            return v;
        }
        sleep(Duration::from_secs(1)).await;
    }
}

fn succeeded(v: &Verification) -> bool {
    matches!(v, Verification::Succeeded { .. })
}

fn bodies(flink: &FakeFlink, method: &str, pattern: &str) -> Vec<Value> {
    flink
        .requests()
        .matching(method, pattern)
        .iter()
        .map(|r| r.json().unwrap_or(Value::Null))
        .collect()
}

fn no_rescale_endpoint_called(flink: &FakeFlink) {
    assert!(
        flink.requests().matching("*", "/jobs/*/rescale").is_empty()
            && flink
                .requests()
                .matching("*", "/jobs/*/rescaling")
                .is_empty(),
        "the non-existent rescale endpoints were called:\n{}",
        flink.requests().describe()
    );
}

// ----------------------------------------------------------------------------------- savepoint

#[tokio::test(start_paused = true)]
async fn savepoint_triggers_with_our_trigger_id_polls_it_and_hands_the_path_on() {
    let (flink, ep, job) = started().await;
    let sp = Savepoint::new(ep).target_directory("file:///tmp/sp/manual");
    let c = ctx(&job);
    let plan = sp.plan(&c).await.unwrap();
    assert!(
        flink.requests().mutating().is_empty(),
        "planning changes nothing"
    );
    let trigger = plan.params["trigger_id"].as_str().unwrap().to_string();
    assert_eq!(plan.params["job_id"], job.as_str());
    assert!(plan
        .description
        .contains(&format!("POST /jobs/{job}/savepoints")));

    let out = sp.apply(&plan, &c).await.unwrap();
    let path = out.details["savepoint_path"].as_str().unwrap().to_string();
    assert!(path.starts_with("file:/tmp/sp/manual/savepoint-"), "{path}");
    assert_eq!(out.details["job_id"], job.as_str());

    assert_eq!(
        bodies(&flink, "POST", &format!("/jobs/{job}/savepoints")),
        vec![
            json!({"cancel-job": false, "target-directory": "file:///tmp/sp/manual", "triggerId": trigger})
        ]
    );
    assert!(!flink
        .requests()
        .matching("GET", &format!("/jobs/{job}/savepoints/{trigger}"))
        .is_empty());
    assert_eq!(
        flink.requests().mutating().len(),
        1,
        "{}",
        flink.requests().describe()
    );
    assert_eq!(flink.job_status(&job).unwrap(), "RUNNING");
    assert!(succeeded(&verified(&sp, &plan, &out, &c).await));
}

#[tokio::test(start_paused = true)]
async fn a_savepoint_applied_twice_takes_one_savepoint() {
    let (flink, ep, job) = started().await;
    let sp = Savepoint::new(ep);
    let c = ctx(&job);
    let plan = sp.plan(&c).await.unwrap();
    let a = sp.apply(&plan, &c).await.unwrap();
    let b = sp.apply(&plan, &c).await.unwrap();
    assert_eq!(
        a.details["savepoint_path"], b.details["savepoint_path"],
        "the same trigger id is the same operation: one savepoint on the server"
    );
    sleep(Duration::from_secs(4)).await;
    let raw = ReqwestClient::new(flink.base_url())
        .unwrap()
        .send(HttpRequest::get(format!("/jobs/{job}/checkpoints")))
        .await
        .unwrap();
    let cps: Value = serde_json::from_slice(&raw.body).unwrap();
    let savepoints = cps["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["is_savepoint"] == true)
        .count();
    assert_eq!(savepoints, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_savepoint_reported_completed_with_a_failure_cause_is_an_error() {
    let (flink, ep, job) = started().await;
    flink.fail_savepoints_under("file:///proc");
    let sp = Savepoint::new(ep).target_directory("file:///proc/nope");
    let c = ctx(&job);
    let plan = sp.plan(&c).await.unwrap();
    let e = sp.apply(&plan, &c).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert!(e.message.contains("IO-problem detected"), "{e}");
    assert_eq!(e.details["trigger_id"], plan.params["trigger_id"]);
    assert!(e.details["failure"]
        .as_str()
        .unwrap()
        .contains("CheckpointException"));
}

#[tokio::test(start_paused = true)]
async fn a_savepoint_still_in_progress_at_the_end_of_the_wait_is_an_unknown_outcome() {
    let mut cfg = rb_testkit::http::flink::FlinkConfig::default();
    cfg.savepoint_duration = Duration::from_secs(120);
    let flink = FakeFlink::start_with(cfg).await.unwrap();
    let job = flink.add_job(JobSpec::counter("orders")).unwrap();
    sleep(Duration::from_secs(5)).await;
    let sp = Savepoint::new(endpoint(&flink)).wait_at_most(Duration::from_secs(10));
    let c = ctx(&job);
    let plan = sp.plan(&c).await.unwrap();
    let e = sp.apply(&plan, &c).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    assert!(e.message.contains("IN_PROGRESS"), "{e}");
    // the same plan later picks up the same operation: no second savepoint is triggered
    sleep(Duration::from_secs(120)).await;
    let out = sp.apply(&plan, &c).await.unwrap();
    assert!(out.details["savepoint_path"].as_str().is_some());
    let triggers = bodies(&flink, "POST", "/jobs/*/savepoints");
    assert_eq!(triggers.len(), 2);
    assert_eq!(triggers[0]["triggerId"], triggers[1]["triggerId"]);
}

#[tokio::test(start_paused = true)]
async fn a_savepoint_of_a_job_that_is_not_running_is_refused_at_plan_time() {
    let (flink, ep, job) = started().await;
    flink
        .fail_job(&job, "java.lang.RuntimeException: boom")
        .unwrap();
    let e = Savepoint::new(ep).plan(&ctx(&job)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("FAILED"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn the_job_is_found_by_name_when_the_incident_names_it() {
    let (flink, ep, job) = started().await;
    let c = ActionContext::detached(clock(), Duration::from_secs(60))
        .with_key(labels(&[("job", "orders")]));
    let plan = Savepoint::new(ep.clone()).plan(&c).await.unwrap();
    assert_eq!(plan.params["job_id"], job.as_str());
    assert!(!flink
        .requests()
        .matching("GET", "/jobs/overview")
        .is_empty());
    let e = Savepoint::new(ep)
        .plan(&ActionContext::detached(clock(), Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "no job named anywhere: {e}");
}

// ------------------------------------------------------------------------- stop with savepoint

#[tokio::test(start_paused = true)]
async fn stop_with_savepoint_ends_the_job_finished_and_hands_the_path_on() {
    let (flink, ep, job) = started().await;
    let stop = StopWithSavepoint::new(ep).target_directory("file:///tmp/sp/stop");
    let c = ctx(&job);
    let plan = stop.plan(&c).await.unwrap();
    assert_eq!(stop.risk(), Risk::Disruptive);
    let trigger = plan.params["trigger_id"].as_str().unwrap().to_string();
    let out = stop.apply(&plan, &c).await.unwrap();
    assert_eq!(
        bodies(&flink, "POST", &format!("/jobs/{job}/stop")),
        vec![
            json!({"drain": false, "targetDirectory": "file:///tmp/sp/stop", "triggerId": trigger})
        ]
    );
    assert!(out.details["savepoint_path"]
        .as_str()
        .unwrap()
        .starts_with("file:/tmp/sp/stop/savepoint-"));
    assert!(succeeded(&verified(&stop, &plan, &out, &c).await));
    assert_eq!(flink.job_status(&job).unwrap(), "FINISHED");
    // a second plan sees the job finished with a savepoint already taken: nothing to do
    let again = with_savepoint(ctx(&job), out.details["savepoint_path"].as_str().unwrap());
    let p2 = stop.plan(&again).await.unwrap();
    assert!(p2.nothing_to_do.is_some(), "{p2:?}");
}

// ----------------------------------------------------------------------------------- restore

#[tokio::test(start_paused = true)]
async fn restore_from_the_savepoint_of_an_earlier_step_uploads_the_jar_runs_it_and_verifies_the_restore(
) {
    let (flink, ep, job) = started().await;
    let c = ctx(&job);
    let stop = StopWithSavepoint::new(ep.clone());
    let sp_plan = stop.plan(&c).await.unwrap();
    let sp = stop.apply(&sp_plan, &c).await.unwrap();
    let path = sp.details["savepoint_path"].as_str().unwrap().to_string();
    flink.requests().clear();

    let restore = Restore::new(ep, submitter(&flink));
    let c = with_savepoint(ctx(&job), &path);
    let plan = restore.plan(&c).await.unwrap();
    assert!(
        flink.requests().mutating().is_empty(),
        "planning changes nothing"
    );
    assert_eq!(plan.params["restore_path"], path.as_str());
    assert_eq!(plan.params["cancel_first"], false, "the job is FINISHED");
    let out = restore.apply(&plan, &c).await.unwrap();
    let new = out.details["job_id"].as_str().unwrap().to_string();
    assert_ne!(new, job);
    assert_eq!(out.details["previous_job_id"], job.as_str());

    let lines: Vec<String> = flink
        .requests()
        .mutating()
        .iter()
        .map(|r| r.line())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "POST /jars/upload", "the jar was gone: uploaded");
    assert!(lines[1].starts_with("POST /jars/") && lines[1].ends_with("_runbook-counter.jar/run"));
    let run = &bodies(&flink, "POST", "/jars/*/run")[0];
    assert_eq!(
        run,
        &json!({"savepointPath": path, "claimMode": "NO_CLAIM", "allowNonRestoredState": false})
    );
    let upload = &flink.requests().matching("POST", "/jars/upload")[0];
    assert!(upload
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    assert!(upload
        .text()
        .contains("name=\"jarfile\"; filename=\"runbook-counter.jar\""));

    let v = verified(&restore, &plan, &out, &c).await;
    assert!(succeeded(&v), "{v:?}");
    assert_eq!(flink.job_status(&new).unwrap(), "RUNNING");

    // a jar that is still there is not uploaded again
    flink.requests().clear();
    let stop2 = StopWithSavepoint::new(endpoint(&flink));
    let c2 = ctx(&new);
    let p2 = stop2.plan(&c2).await.unwrap();
    let sp2 = stop2.apply(&p2, &c2).await.unwrap();
    let c2 = with_savepoint(ctx(&new), sp2.details["savepoint_path"].as_str().unwrap());
    let p3 = restore.plan(&c2).await.unwrap();
    restore.apply(&p3, &c2).await.unwrap();
    assert!(flink.requests().matching("POST", "/jars/upload").is_empty());
    assert_eq!(flink.requests().matching("POST", "/jars/*/run").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn restore_of_a_failed_job_uses_its_latest_retained_checkpoint() {
    let (flink, ep, job) = started().await;
    let latest = flink.latest_checkpoint_id(&job).unwrap().unwrap();
    flink
        .fail_job(
            &job,
            "org.apache.paimon.schema.SchemaChangeException: column added",
        )
        .unwrap();
    sleep(Duration::from_secs(4)).await;
    let restore = Restore::new(ep, submitter(&flink));
    let c = ctx(&job);
    let plan = restore.plan(&c).await.unwrap();
    let path = plan.params["restore_path"].as_str().unwrap().to_string();
    assert!(path.ends_with(&format!("/{job}/chk-{latest}")), "{path}");
    assert!(plan.description.contains("latest retained checkpoint"));
    let out = restore.apply(&plan, &c).await.unwrap();
    assert!(succeeded(&verified(&restore, &plan, &out, &c).await));
    let run = &bodies(&flink, "POST", "/jars/*/run")[0];
    assert_eq!(run["savepointPath"], path.as_str());
}

#[tokio::test(start_paused = true)]
async fn restore_of_a_job_still_running_cancels_it_first_so_two_copies_never_run() {
    let (flink, ep, job) = started().await;
    let restore = Restore::new(ep, submitter(&flink));
    let c = ctx(&job);
    let plan = restore.plan(&c).await.unwrap();
    assert_eq!(plan.params["cancel_first"], true);
    assert!(plan.description.contains("mode=cancel"));
    let out = restore.apply(&plan, &c).await.unwrap();
    let all = flink.requests().mutating();
    let cancel = all
        .iter()
        .position(|r| r.method == "PATCH" && r.query.as_deref() == Some("mode=cancel"))
        .expect("cancelled");
    let run = all.iter().position(|r| r.path.ends_with("/run")).unwrap();
    assert!(cancel < run, "cancel before the resubmit");
    assert_eq!(flink.job_status(&job).unwrap(), "CANCELED");
    assert!(succeeded(&verified(&restore, &plan, &out, &c).await));
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_restore_that_journaled_the_new_job_never_submits_again() {
    let (flink, ep, job) = started().await;
    flink
        .fail_job(&job, "java.lang.RuntimeException: boom")
        .unwrap();
    let restore = Restore::new(ep, submitter(&flink));
    let mut c = ctx(&job);
    c.step_id = "restore".into();
    let plan = restore.plan(&c).await.unwrap();
    let first = restore.apply(&plan, &c).await.unwrap();
    let new = first.details["job_id"].as_str().unwrap().to_string();
    // the engine rebuilds this step's artifacts from the journal after a crash
    let mut own = StepOutput::default();
    own.artifacts.insert("job_id".into(), json!(new));
    let c = c.with_output("restore", own);
    flink.requests().clear();
    let again = restore.apply(&plan, &c).await.unwrap();
    assert_eq!(again.details["job_id"], new.as_str());
    assert!(
        flink.requests().mutating().is_empty(),
        "{}",
        flink.requests().describe()
    );
    assert_eq!(flink.job_ids().len(), 2, "one old job, one restored");
}

// ----------------------------------------------------------------------------------- rescale

#[tokio::test(start_paused = true)]
async fn rescale_in_place_puts_the_resource_requirements_and_verifies_the_new_parallelism() {
    let (flink, ep, job) = started().await;
    let r = Rescale::to_parallelism(ep, 3);
    let c = ctx(&job);
    let plan = r.plan(&c).await.unwrap();
    assert!(flink.requests().mutating().is_empty());
    assert_eq!(plan.effective_risk(r.risk()), Risk::Disruptive);
    assert_eq!(plan.params["mode"], "in_place");
    let out = r.apply(&plan, &c).await.unwrap();
    let puts = bodies(&flink, "PUT", &format!("/jobs/{job}/resource-requirements"));
    let want: serde_json::Map<String, Value> = flink
        .vertices(&job)
        .unwrap()
        .iter()
        .map(|(id, _, _)| {
            (
                id.clone(),
                json!({"parallelism": {"lowerBound": 1, "upperBound": 3}}),
            )
        })
        .collect();
    assert_eq!(puts, vec![Value::Object(want)]);
    assert_eq!(flink.requests().mutating().len(), 1);
    no_rescale_endpoint_called(&flink);
    let v = verified(&r, &plan, &out, &c).await;
    assert!(succeeded(&v), "{v:?}");
    assert!(flink
        .vertices(&job)
        .unwrap()
        .iter()
        .all(|(_, _, p)| *p == 3));
    assert_eq!(
        flink.num_restarts(&job).unwrap(),
        1,
        "one restart for the rescale"
    );
    // idempotent: the same plan again changes nothing on the server
    r.apply(&plan, &c).await.unwrap();
    sleep(Duration::from_secs(10)).await;
    assert_eq!(flink.num_restarts(&job).unwrap(), 1);
    // and now there is nothing to do
    let p2 = r.plan(&c).await.unwrap();
    assert!(
        p2.nothing_to_do
            .as_deref()
            .unwrap()
            .contains("already runs at"),
        "{p2:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rescale_down_keeps_the_lower_bound_at_most_the_target_and_is_reversible() {
    let flink = FakeFlink::start().await.unwrap();
    let job = flink
        .add_job(JobSpec::counter("orders").parallelism(2))
        .unwrap();
    sleep(Duration::from_secs(5)).await;
    let ep = endpoint(&flink);
    let c = ctx(&job);
    // lower bounds 2 first
    let up = Rescale::to_parallelism(ep.clone(), 2);
    let p = up.plan(&c).await.unwrap();
    assert!(
        p.nothing_to_do.is_some(),
        "already at 2 with upper bound 2: {p:?}"
    );
    let down = Rescale::to_parallelism(ep.clone(), 1);
    let plan = down.plan(&c).await.unwrap();
    for (_, v) in plan.params["requirements"].as_object().unwrap() {
        assert_eq!(v["parallelism"]["upperBound"], 1);
        assert!(v["parallelism"]["lowerBound"].as_i64().unwrap() <= 1);
    }
    assert!(plan
        .undo
        .as_deref()
        .unwrap()
        .contains("resource-requirements back to"));
    let out = down.apply(&plan, &c).await.unwrap();
    assert!(succeeded(&verified(&down, &plan, &out, &c).await));
    // reversible: the undo (the previous requirements) brings the server back
    let back = Rescale::to_parallelism(ep, 2);
    let bp = back.plan(&c).await.unwrap();
    let bo = back.apply(&bp, &c).await.unwrap();
    assert!(succeeded(&verified(&back, &bp, &bo, &c).await));
    assert!(flink
        .vertices(&job)
        .unwrap()
        .iter()
        .all(|(_, _, p)| *p == 2));
}

#[tokio::test(start_paused = true)]
async fn the_autoscaler_target_comes_from_the_diagnosis_facts_and_is_explained_in_the_plan() {
    let (flink, ep, job) = started().await;
    let vertices = flink.vertices(&job).unwrap();
    let rates: BTreeMap<String, VertexRates> = vertices
        .iter()
        .map(|(id, _, _)| {
            (
                id.clone(),
                VertexRates {
                    processing_rate: 1000.0,
                    busy_ratio: 1.0,
                },
            )
        })
        .collect();
    let inputs = ScalingInputs {
        input_rate: 1000.0,
        lag: 1_800_000.0,
        source_partitions: None,
        vertices: rates,
    };
    let obs = Observation::new("flink.diagnosis", "flink-main", clock().now()).fact(&inputs);
    let c = ctx(&job).with_evidence(Evidence {
        source: "flink.diagnosis".into(),
        target: "flink-main".into(),
        at: clock().now(),
        summary: "scaling inputs".into(),
        observation: Some(obs),
        error: None,
    });
    let r = Rescale::autoscaled(ep);
    let plan = r.plan(&c).await.unwrap();
    // factor 2.595 × 1 → 3 → the next divisor of 128 key groups: 4
    assert_eq!(
        plan.params["targets"],
        json!(vertices
            .iter()
            .map(|(id, _, _)| (id.clone(), 4))
            .collect::<BTreeMap<_, _>>())
    );
    let d = &plan.params["decisions"][&vertices[0].0];
    assert!(
        (d["scale_factor"].as_f64().unwrap() - 2.595).abs() < 0.001,
        "{d}"
    );
    assert!(
        plan.description.contains("lag 1800000"),
        "{}",
        plan.description
    );
    assert!(plan.description.contains("utilization 0.7"));
    assert_eq!(
        plan.params["inputs"]["inputs_from"],
        "the diagnosis fact flink.scaling_inputs"
    );
    let out = r.apply(&plan, &c).await.unwrap();
    assert!(succeeded(&verified(&r, &plan, &out, &c).await));
    assert!(flink
        .vertices(&job)
        .unwrap()
        .iter()
        .all(|(_, _, p)| *p == 4));
}

#[tokio::test(start_paused = true)]
async fn an_idle_vertex_keeps_its_parallelism_and_the_plan_says_why() {
    let (flink, ep, job) = started().await;
    let vertices = flink.vertices(&job).unwrap();
    let mut rates = BTreeMap::new();
    rates.insert(
        vertices[0].0.clone(),
        VertexRates {
            processing_rate: 1000.0,
            busy_ratio: 1.0,
        },
    );
    rates.insert(
        vertices[1].0.clone(),
        VertexRates {
            processing_rate: 0.0,
            busy_ratio: 0.0,
        },
    );
    let inputs = ScalingInputs {
        input_rate: 1000.0,
        lag: 1_800_000.0,
        source_partitions: Some(6),
        vertices: rates,
    };
    let obs = Observation::new("flink.diagnosis", "flink-main", clock().now()).fact(&inputs);
    let c = ctx(&job).with_evidence(Evidence {
        source: "flink.diagnosis".into(),
        target: "flink-main".into(),
        at: clock().now(),
        summary: "scaling inputs".into(),
        observation: Some(obs),
        error: None,
    });
    let plan = Rescale::autoscaled(ep).plan(&c).await.unwrap();
    // the source: ceil(2.595) = 3, a divisor of its 6 partitions
    assert_eq!(plan.params["targets"][&vertices[0].0], 3);
    assert_eq!(plan.params["targets"][&vertices[1].0], 1);
    assert!(
        plan.description.contains("kept at 1"),
        "{}",
        plan.description
    );
}

#[tokio::test(start_paused = true)]
async fn without_facts_the_autoscaler_reads_the_jobs_metrics_and_scales_a_light_job_down() {
    let flink = FakeFlink::start().await.unwrap();
    let job = flink
        .add_job(JobSpec::counter("orders").parallelism(4))
        .unwrap();
    sleep(Duration::from_secs(25)).await;
    let r = Rescale::autoscaled(endpoint(&flink));
    let plan = r.plan(&ctx(&job)).await.unwrap();
    assert!(!flink
        .requests()
        .matching("GET", "/jobs/*/vertices/*/subtasks/metrics")
        .is_empty());
    // the fake's light job is about 3.5 % busy: the autoscaler shrinks it by the largest step (0.4)
    let targets: BTreeMap<String, u32> =
        serde_json::from_value(plan.params["targets"].clone()).unwrap();
    assert!(
        targets.values().all(|t| *t == 2),
        "{targets:?}: {}",
        plan.description
    );
    assert!(flink.requests().mutating().is_empty());
}

#[tokio::test(start_paused = true)]
async fn where_the_in_place_api_refuses_the_plan_is_a_riskier_stop_and_resubmit() {
    let (flink, ep, job) = started().await;
    flink.faults().inject(
        "GET",
        "/jobs/*/resource-requirements",
        Fault::StatusBody(500, json!({"errors": ["Internal server error.", "<Exception on server side:\njava.lang.UnsupportedOperationException: The default scheduler does not support changing the resource requirements\n\tat x\n\nEnd of exception on server side>"]}).to_string()),
    );
    // without a submitter, an error: never a silent stop
    let e = Rescale::to_parallelism(ep.clone(), 2)
        .plan(&ctx(&job))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    let r = Rescale::to_parallelism(ep, 2).fallback_submitter(submitter(&flink));
    let c = ctx(&job);
    let plan = r.plan(&c).await.unwrap();
    assert_eq!(plan.params["mode"], "stop_and_resubmit");
    assert!(
        plan.effective_risk(r.risk()) > Risk::Disruptive,
        "riskier than in place"
    );
    assert!(
        plan.description.contains("RISKIER FALLBACK"),
        "{}",
        plan.description
    );
    assert!(plan.description.contains("UnsupportedOperationException"));
    assert!(flink.requests().mutating().is_empty());
    let out = r.apply(&plan, &c).await.unwrap();
    let lines: Vec<String> = flink
        .requests()
        .mutating()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(lines[0], format!("POST /jobs/{job}/stop"));
    assert!(lines.last().unwrap().ends_with("/run"));
    assert_eq!(bodies(&flink, "POST", "/jars/*/run")[0]["parallelism"], 2);
    assert!(flink
        .requests()
        .matching("PUT", "/jobs/*/resource-requirements")
        .is_empty());
    no_rescale_endpoint_called(&flink);
    let v = verified(&r, &plan, &out, &c).await;
    assert!(succeeded(&v), "{v:?}");
    let new = out.details["job_id"].as_str().unwrap();
    assert!(flink.vertices(new).unwrap().iter().all(|(_, _, p)| *p == 2));
    assert_eq!(flink.job_status(&job).unwrap(), "FINISHED");
}

#[tokio::test(start_paused = true)]
async fn a_put_refused_at_apply_time_fails_the_step_without_stopping_the_job() {
    let (flink, ep, job) = started().await;
    let r = Rescale::to_parallelism(ep, 200).fallback_submitter(submitter(&flink));
    let c = ctx(&job);
    let plan = r.plan(&c).await.unwrap();
    // capped by the vertices' max parallelism (128) in the plan
    assert!(plan.params["targets"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v == 128));
    flink
        .faults()
        .inject("PUT", "/jobs/*/resource-requirements", Fault::Status(503));
    let e = r.apply(&plan, &c).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.details["fallback"]
        .as_str()
        .unwrap()
        .contains("plan again"));
    assert!(flink.requests().matching("POST", "/jobs/*/stop").is_empty());
    assert_eq!(flink.job_status(&job).unwrap(), "RUNNING");
}

// -------------------------------------------------------------------------------- fault matrix

#[derive(Debug, Clone, Copy)]
enum Call {
    /// `GET /jobs/<id>/status` while planning a savepoint.
    PlanStatus,
    /// `POST /jobs/<id>/savepoints` while applying.
    TriggerSavepoint,
    /// `PUT /jobs/<id>/resource-requirements` while applying a rescale.
    PutRequirements,
    /// `POST /jars/<jar>/run` while applying a restore.
    RunJar,
}

async fn fault_kind(call: Call, fault: Option<Fault>) -> ErrorKind {
    let (flink, ep, job) = started().await;
    let c = ctx(&job);
    // a fault on the call, or the server gone: then apply starts on a fresh client (a pooled
    // connection dying under a write is an unknown outcome, tested by the other rows)
    let inject = |method: &str, pattern: &str| -> FlinkEndpoint {
        match &fault {
            Some(f) => {
                flink.faults().inject(method, pattern, f.clone());
                ep.clone()
            }
            None => {
                flink.refuse_connections();
                endpoint(&flink)
            }
        }
    };
    let kind = |r: Result<Outcome, RemediationError>| match r {
        Ok(o) => panic!("{call:?}: no error but {o:?}"),
        Err(e) => e.kind(),
    };
    match call {
        Call::PlanStatus => {
            let ep = inject("GET", "/jobs/*/status");
            Savepoint::new(ep).plan(&c).await.unwrap_err().kind()
        }
        Call::TriggerSavepoint => {
            let plan = Savepoint::new(ep.clone()).plan(&c).await.unwrap();
            let ep = inject("POST", "/jobs/*/savepoints");
            kind(Savepoint::new(ep).apply(&plan, &c).await)
        }
        Call::PutRequirements => {
            let plan = Rescale::to_parallelism(ep.clone(), 2)
                .plan(&c)
                .await
                .unwrap();
            let ep = inject("PUT", "/jobs/*/resource-requirements");
            kind(Rescale::to_parallelism(ep, 2).apply(&plan, &c).await)
        }
        Call::RunJar => {
            let sub = submitter(&flink);
            let plan = Restore::new(ep.clone(), sub.clone())
                .plan(&c)
                .await
                .unwrap();
            let ep = inject("POST", "/jars/*/run");
            kind(Restore::new(ep, sub).apply(&plan, &c).await)
        }
    }
}

/// The committed table of call × fault → error kind (`tests/fault_matrix/flink.csv`): every row is
/// run; a row missing or extra fails.
#[tokio::test(start_paused = true)]
async fn every_injected_fault_gives_the_kind_the_fault_matrix_says() {
    let calls = [
        ("plan_status", Call::PlanStatus),
        ("trigger_savepoint", Call::TriggerSavepoint),
        ("put_requirements", Call::PutRequirements),
        ("run_jar", Call::RunJar),
    ];
    let faults: Vec<(&str, Option<Fault>)> = vec![
        ("latency", Some(Fault::Latency(Duration::from_secs(30)))),
        ("5xx", Some(Fault::Status(503))),
        ("401", Some(Fault::Status(401))),
        ("refused", None),
        ("malformed", Some(Fault::MalformedBody)),
        ("truncated", Some(Fault::TruncatedBody)),
        ("hang", Some(Fault::Hang)),
        ("reset", Some(Fault::Reset)),
    ];
    let csv = include_str!("fault_matrix/flink.csv");
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

/// Lag per job, as a probe would report it.
fn lag_probe(job: &str) -> Arc<dyn Probe> {
    let job = job.to_string();
    Arc::new(FnProbe::new(
        "test.lag",
        Target::new("kafka", "kafka-main"),
        move |ctx| {
            Ok(
                Observation::new("test.lag", "kafka-main", ctx.now()).sample(
                    "records_lag_max",
                    labels(&[("job_id", &job)]),
                    12_000.0,
                ),
            )
        },
    ))
}

async fn engine_rescale(
    approver: Arc<dyn rb_core::policy::Approver>,
) -> (FakeFlink, String, Engine) {
    let (flink, ep, job) = started().await;
    let pb = Playbook::new("kafka-backlog", "Kafka backlog grows")
        .detect(
            lag_probe(&job),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .incident_per(&["job_id"])
        .mitigate(Arc::new(Rescale::to_parallelism(ep, 3)))
        .escalate_to("Data Platform On-call");
    let e = Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .approver(approver)
        .build()
        .await
        .unwrap();
    (flink, job, e)
}

async fn run(e: &Engine, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    loop {
        e.tick().await.unwrap();
        if tokio::time::Instant::now() >= end {
            break;
        }
        sleep(secs(5)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_a_denied_rescale_makes_no_call_and_an_approved_one_rescales_once() {
    let (flink, job, e) = engine_rescale(Arc::new(DenyAll)).await;
    run(&e, mins(2)).await;
    assert!(
        flink.requests().mutating().is_empty(),
        "{}",
        flink.requests().describe()
    );
    assert_eq!(e.incidents().await.unwrap().len(), 1);

    let (flink, job2, e) = engine_rescale(Arc::new(AutoApprove)).await;
    let _ = job;
    run(&e, mins(6)).await;
    assert_eq!(
        flink
            .requests()
            .matching("PUT", "/jobs/*/resource-requirements")
            .len(),
        1,
        "{}",
        flink.requests().describe()
    );
    no_rescale_endpoint_called(&flink);
    assert!(flink
        .vertices(&job2)
        .unwrap()
        .iter()
        .all(|(_, _, p)| *p == 3));
    let inc = &e.incidents().await.unwrap()[0];
    let verified = inc.timeline.iter().find_map(|x| match &x.event {
        rb_core::journal::Event::Verified { verification, .. } => Some(verification.clone()),
        _ => None,
    });
    assert!(
        matches!(verified, Some(Verification::Succeeded { .. })),
        "{verified:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_a_savepoint_path_reaches_the_restore_and_the_new_job_id_is_journaled() {
    let (flink, ep, job) = started().await;
    let pb = Playbook::new("flink-restarting", "Flink job restarting")
        .detect(
            lag_probe(&job),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .incident_per(&["job_id"])
        .mitigate_as("savepoint", Arc::new(StopWithSavepoint::new(ep.clone())))
        .mitigate_as("restore", Arc::new(Restore::new(ep, submitter(&flink))))
        .escalate_to("Data Platform On-call");
    let e = Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap();
    run(&e, mins(8)).await;
    let inc = &e.incidents().await.unwrap()[0];
    let progress: Vec<(String, Value)> = inc
        .timeline
        .iter()
        .filter_map(|x| match &x.event {
            rb_core::journal::Event::Progress { key, value, .. } => {
                Some((key.clone(), value.clone()))
            }
            _ => None,
        })
        .collect();
    let sp = progress
        .iter()
        .find(|(k, _)| k == "savepoint_path")
        .expect("savepoint journaled");
    let new = progress
        .iter()
        .find(|(k, _)| k == "job_id")
        .expect("new job journaled");
    let run = &bodies(&flink, "POST", "/jars/*/run")[0];
    assert_eq!(run["savepointPath"], sp.1);
    assert_eq!(
        flink.job_status(new.1.as_str().unwrap()).unwrap(),
        "RUNNING"
    );
    assert_eq!(flink.job_status(&job).unwrap(), "FINISHED");
    assert_eq!(flink.requests().matching("POST", "/jars/*/run").len(), 1);
}

// ---------------------------------------------------------------------------------- autoscaler

fn load(current: u32, input: f64, lag: f64, rate: f64, busy: f64) -> VertexLoad {
    VertexLoad {
        current,
        key_groups: 128,
        partitions: None,
        input_rate: input,
        lag,
        processing_rate: rate,
        busy_ratio: busy,
    }
}

#[test]
fn the_worked_cases_of_the_module_docs() {
    let d = AutoscalerSettings::default();
    let small = AutoscalerSettings {
        max_parallelism: 5,
        ..AutoscalerSettings::default()
    };
    let eight = AutoscalerSettings {
        max_parallelism: 8,
        ..AutoscalerSettings::default()
    };
    let cases: Vec<(VertexLoad, &AutoscalerSettings, u32)> = vec![
        (load(2, 1000.0, 0.0, 1000.0, 0.5), &d, 2),
        (load(2, 1000.0, 1_800_000.0, 1000.0, 1.0), &d, 8),
        (
            VertexLoad {
                partitions: Some(12),
                ..load(2, 1000.0, 1_800_000.0, 1000.0, 1.0)
            },
            &d,
            6,
        ),
        (load(8, 100.0, 0.0, 100.0, 0.1), &d, 4),
        (load(4, 4000.0, 0.0, 4000.0, 1.0), &small, 5),
        (load(10, 1000.0, 0.0, 1000.0, 1.0), &eight, 10),
    ];
    for (v, s, want) in cases {
        let got = target_parallelism(&v, s).unwrap();
        assert_eq!(got.parallelism, want, "{v:?}: {}", got.reason);
    }
    let d2 = target_parallelism(&load(2, 1000.0, 1_800_000.0, 1000.0, 1.0), &d).unwrap();
    assert!((d2.target_rate - 2595.238).abs() < 0.01, "{d2:?}");
    assert!((d2.catch_up_rate - 1000.0).abs() < 1e-9);
    assert!((d2.restart_rate - 166.666).abs() < 0.01);
    assert!((d2.utilization_rate - 1428.571).abs() < 0.01);
}

#[test]
fn inputs_that_cannot_be_judged_are_errors_naming_the_input() {
    let d = AutoscalerSettings::default();
    for (v, name) in [
        (load(2, 1.0, 0.0, 0.0, 0.5), "processing_rate"),
        (load(2, 1.0, 0.0, 10.0, 0.0), "busy_ratio"),
        (load(2, 1.0, 0.0, 10.0, 1.5), "busy_ratio"),
        (load(2, f64::NAN, 0.0, 10.0, 0.5), "input_rate"),
        (load(2, 1.0, -1.0, 10.0, 0.5), "lag"),
    ] {
        let e = target_parallelism(&v, &d).unwrap_err();
        assert!(e.to_string().contains(name), "{e}");
    }
}

proptest! {
    #[test]
    fn never_flips_direction_and_stays_within_bounds(
        current in 1u32..300,
        key_groups in 1u32..1024,
        partitions in proptest::option::of(1u32..512),
        input in 0.0f64..1e7,
        lag in 0.0f64..1e9,
        rate in 0.001f64..1e7,
        busy in 0.001f64..=1.0,
        util in 0.05f64..=1.0,
        min_p in 1u32..20,
        span in 0u32..300,
        max_down in 0.0f64..0.99,
        max_up in 0.0f64..1000.0,
    ) {
        let s = AutoscalerSettings {
            utilization: util,
            min_parallelism: min_p,
            max_parallelism: min_p + span,
            max_scale_down: max_down,
            max_scale_up: max_up,
            ..AutoscalerSettings::default()
        };
        let v = VertexLoad { current, key_groups, partitions, input_rate: input, lag, processing_rate: rate, busy_ratio: busy };
        let d = target_parallelism(&v, &s).unwrap();
        let p = d.parallelism;
        // never flips direction
        if d.capped_factor > 1.0 { prop_assert!(p >= current, "{d:?}"); }
        if d.capped_factor < 1.0 { prop_assert!(p <= current, "{d:?}"); }
        // within bounds and the key groups, unless it stays where it is
        let upper = s.max_parallelism.min(key_groups);
        let lower = s.min_parallelism.min(upper);
        prop_assert!(p == current || (p >= lower && p <= upper), "{d:?}");
        // the factor is clamped
        prop_assert!(d.capped_factor >= 1.0 - max_down - 1e-12 && d.capped_factor <= 1.0 + max_up + 1e-12);
        // deterministic
        prop_assert_eq!(target_parallelism(&v, &s).unwrap(), d);
    }

    #[test]
    fn a_divisor_is_only_ever_chosen_upward_and_never_past_the_bounds(
        current in 1u32..64, input in 1.0f64..1e5, lag in 0.0f64..1e8, rate in 1.0f64..1e5, busy in 0.01f64..=1.0,
    ) {
        let s = AutoscalerSettings::default();
        let v = load(current, input, lag, rate, busy);
        let d = target_parallelism(&v, &s).unwrap();
        if d.parallelism != current {
            prop_assert!(d.parallelism >= d.bounded);
            prop_assert!(d.parallelism <= 128);
        }
    }
}
