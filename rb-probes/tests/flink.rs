//! Flink probes through the real reqwest adapter against FakeFlink (paused tokio clock), through a
//! replay of the real Flink 2.3 captures, the fault matrix, and the parsers under proptest.
//! Run: `cargo test -p rb-probes --no-default-features --features flink --test flink`.
#![cfg(feature = "flink")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use proptest::prelude::*;
use rb_core::time::Clock;
use rb_core::{ErrorKind, Observation, Probe, ProbeContext, Target};
use rb_probes::common::ProbeSite;
use rb_probes::flink::model::{
    AggregatedMetric, Backpressure, Checkpoints, Exceptions, JobDetail, JobStatusBody,
    JobsOverview, MetricValue, Overview,
};
use rb_probes::flink::{
    checkpoint_health, FailureCategory, FlinkCluster, FlinkClusterProbe, FlinkJob, FlinkJobProbe,
    JobSelector,
};
use rb_probes::transport::{
    parse_json, HttpClient, HttpRequest, HttpResponse, ReqwestClient, TransportError,
};
use rb_testkit::http::flink::{FakeFlink, JobSpec};
use rb_testkit::http::Fault;
use tokio::time::sleep;

const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rb-testkit/fixtures/flink");
const JOB: &str = "820589c381fd8920f39255783eb12308";
const SOURCE: &str = "5eadbd25f5e5ea36e1d79110004cc6d7";
const COUNTER: &str = "0da08f51eaa85fc298e176a139b3649a";

fn capture(name: &str) -> String {
    std::fs::read_to_string(format!("{CAPTURES}/{name}.json"))
        .unwrap_or_else(|e| panic!("capture {name}: {e}"))
}

fn target() -> Target {
    Target::new("flink", "flink-test")
}

fn ctx(timeout: Duration) -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), timeout)
}

fn client(fake: &FakeFlink) -> ReqwestClient {
    ReqwestClient::new(fake.base_url()).unwrap()
}

fn value(obs: &Observation, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    obs.samples_named(name)
        .find(|s| label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
}

fn job_fact(obs: &Observation) -> FlinkJob {
    obs.facts
        .get::<FlinkJob>()
        .expect("a flink.job fact")
        .unwrap()
}

async fn started() -> (FakeFlink, String) {
    let fake = FakeFlink::start().await.unwrap();
    let job = fake.add_job(JobSpec::counter("runbook-counter")).unwrap();
    (fake, job)
}

// ---------------------------------------------------------------- happy path against the fake

#[tokio::test(start_paused = true)]
async fn cluster_overview_as_the_captured_cluster() {
    let (fake, _job) = started().await;
    let probe = FlinkClusterProbe::new(client(&fake), target());
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    // the captured cluster: 1 TaskManager, 4 slots, the counter job holds one (slot sharing)
    assert_eq!(value(&obs, "flink_taskmanagers", None), Some(1.0));
    assert_eq!(value(&obs, "flink_slots_total", None), Some(4.0));
    assert_eq!(value(&obs, "flink_slots_available", None), Some(3.0));
    assert_eq!(value(&obs, "flink_jobs_running", None), Some(1.0));
    assert_eq!(value(&obs, "flink_jobs_failed", None), Some(0.0));
    let c: FlinkCluster = obs.facts.get().unwrap().unwrap();
    assert_eq!(c.flink_version.as_deref(), Some("2.3.0"));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn running_job_by_name_with_checkpoints_restarts_and_vertex_load() {
    let (fake, job) = started().await;
    let (source, counter) = {
        let v = fake.vertices(&job).unwrap();
        (v[0].0.clone(), v[1].0.clone())
    };
    fake.set_backpressure(&job, &source, 0.4).unwrap();
    // checkpoints every 2 s; the metric store fills after 10 s
    sleep(Duration::from_millis(10_500)).await;
    let probe = FlinkJobProbe::new(
        client(&fake),
        target(),
        JobSelector::name("runbook-counter"),
    );
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let j = job_fact(&obs);
    assert!(j.present);
    assert_eq!(j.job_id.as_deref(), Some(job.as_str()));
    assert_eq!(j.state, "RUNNING");
    assert_eq!(j.restarts, Some(0));
    let cp = j.checkpoints.clone().unwrap();
    assert_eq!(cp.last_completed_id, Some(5));
    assert_eq!(cp.completed, 5);
    assert_eq!(cp.failed, 0);
    assert_eq!(
        cp.last_completed_path.as_deref(),
        Some(format!("file:/tmp/rb-fake-flink/ckpt/{job}/chk-5").as_str())
    );
    assert_eq!(cp.latest_external_path, cp.last_completed_path);
    let age = cp.last_completed_age_ms.unwrap();
    assert!(age <= 2_000, "{age}");
    assert_eq!(fake.latest_checkpoint_id(&job).unwrap(), Some(5));

    let l = ("job_id", job.as_str());
    assert_eq!(value(&obs, "flink_job_up", Some(l)), Some(1.0));
    assert_eq!(value(&obs, "flink_job_restarts_total", Some(l)), Some(0.0));
    assert_eq!(
        value(&obs, "flink_checkpoints_completed_total", Some(l)),
        Some(5.0)
    );
    assert_eq!(
        value(&obs, "flink_checkpoints_failed_total", Some(l)),
        Some(0.0)
    );
    assert_eq!(
        value(&obs, "flink_checkpoint_last_completed_age_seconds", Some(l)),
        Some(age as f64 / 1000.0)
    );
    assert_eq!(
        obs.samples_named("flink_job_exceptions")
            .map(|s| s.value)
            .sum::<f64>(),
        0.0
    );
    assert_eq!(obs.samples_named("flink_job_exceptions").count(), 6);

    // vertices: what a rescale calculation needs
    assert_eq!(j.vertices.len(), 2);
    let s = &j.vertices[0];
    assert_eq!((s.id.as_str(), s.is_source), (source.as_str(), true));
    assert_eq!((s.parallelism, s.max_parallelism), (1, Some(128)));
    // 70 records/s read by the source operator (Source__datagen.numRecordsInPerSecond)
    assert_eq!(s.input_records_per_second, Some(70.0));
    assert_eq!(s.backpressure_ratio, Some(0.4));
    assert_eq!(s.backpressure_level.as_deref(), Some("low"));
    let c = &j.vertices[1];
    assert_eq!((c.id.as_str(), c.is_source), (counter.as_str(), false));
    // about half a millisecond per record: 35 ms/s busy
    assert_eq!(c.busy_ratio, Some(0.035));
    assert_eq!(c.busy_ratio_avg, Some(0.035));
    assert_eq!(c.input_records_per_second, Some(70.0));
    assert_eq!(c.backpressure_ratio, Some(0.0));
    assert_eq!(
        value(
            &obs,
            "flink_vertex_backpressure_ratio",
            Some(("vertex_id", &source))
        ),
        Some(0.4)
    );
    assert_eq!(
        value(
            &obs,
            "flink_vertex_busy_ratio",
            Some(("vertex", "counter -> sink: Writer"))
        ),
        Some(0.035)
    );
    assert_eq!(
        value(&obs, "flink_job_input_records_per_second", Some(l)),
        Some(70.0)
    );
    assert_eq!(
        value(&obs, "flink_job_backpressure_ratio_max", Some(l)),
        Some(0.4)
    );
    // read-only
    assert!(fake.requests().mutating().is_empty());
    assert_eq!(fake.requests().matching("GET", "/jobs/*/status").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn job_by_id_and_top_k_bounds_vertex_series() {
    let fake = FakeFlink::start().await.unwrap();
    let job = fake
        .add_job(
            JobSpec::new("wide")
                .vertex("Source: kafka", 1)
                .vertex("a", 1)
                .vertex("b", 1)
                .vertex("c -> sink: paimon", 1),
        )
        .unwrap();
    let v = fake.vertices(&job).unwrap();
    for ((id, _, _), r) in v.iter().zip([0.0, 0.1, 0.2, 0.3]) {
        fake.set_backpressure(&job, id, r).unwrap();
    }
    sleep(Duration::from_secs(11)).await;
    let probe = FlinkJobProbe::new(client(&fake), target(), JobSelector::id(job.clone())).top_k(2);
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let bp: Vec<(String, f64)> = obs
        .samples_named("flink_vertex_backpressure_ratio")
        .map(|s| (s.labels["vertex"].clone(), s.value))
        .collect();
    assert_eq!(
        bp,
        vec![
            ("c -> sink: paimon".to_string(), 0.3),
            ("b".to_string(), 0.2)
        ]
    );
    assert_eq!(obs.samples_named("flink_vertex_busy_ratio").count(), 2);
    assert_eq!(
        job_fact(&obs).vertices.len(),
        4,
        "the fact keeps every vertex"
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_not_fetched_yet_is_incomplete_never_zero() {
    let (fake, _job) = started().await;
    let probe = FlinkJobProbe::new(
        client(&fake),
        target(),
        JobSelector::name("runbook-counter"),
    );
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert!(!obs.complete);
    assert!(
        obs.gaps.iter().any(|g| g.contains("numRestarts")),
        "{:?}",
        obs.gaps
    );
    assert_eq!(obs.samples_named("flink_job_restarts_total").count(), 0);
    assert_eq!(obs.samples_named("flink_vertex_busy_ratio").count(), 0);
    let j = job_fact(&obs);
    assert_eq!(j.restarts, None);
    assert_eq!(j.vertices[1].busy_ratio, None);
    assert_eq!(j.state, "RUNNING");
}

// ---------------------------------------------------------------- TaskManager loss

#[tokio::test(start_paused = true)]
async fn taskmanager_loss_takes_the_live_state_from_status_not_the_cached_detail() {
    let (fake, job) = started().await;
    sleep(Duration::from_secs(11)).await;
    let probe = FlinkJobProbe::new(
        client(&fake),
        target(),
        JobSelector::name("runbook-counter"),
    );
    // prime the JobManager's execution-graph cache with a RUNNING detail
    let before = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert_eq!(job_fact(&before).state, "RUNNING");

    let tm = fake.lose_taskmanager().unwrap();
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let j = job_fact(&obs);
    assert_eq!(j.state, "RESTARTING", "live, from /status");
    assert_eq!(
        j.detail_state.as_deref(),
        Some("RUNNING"),
        "the cached detail is stale"
    );
    let l = ("job_id", job.as_str());
    assert_eq!(value(&obs, "flink_job_up", Some(l)), Some(0.0));
    assert_eq!(
        value(&obs, "flink_job_state", Some(("state", "RESTARTING"))),
        Some(1.0)
    );
    assert_eq!(value(&obs, "flink_taskmanagers", None), Some(0.0));
    assert_eq!(value(&obs, "flink_slots_available", None), Some(0.0));

    // after the restart delay and the cache refresh: CREATED (waiting for slots), exception seen
    sleep(Duration::from_millis(3100)).await;
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let j = job_fact(&obs);
    assert_eq!(j.state, "CREATED");
    let e = &j.exceptions[0];
    assert_eq!(e.category, FailureCategory::LostTaskManager);
    assert_eq!(
        e.message,
        format!("TaskManager with id {tm} is no longer reachable.")
    );
    assert_eq!(j.latest_failure(), Some(FailureCategory::LostTaskManager));
    assert_eq!(
        value(
            &obs,
            "flink_job_exceptions",
            Some(("category", "lost_taskmanager"))
        ),
        Some(1.0)
    );

    // a TaskManager comes back: RUNNING, and once the metric store refreshes, one restart
    fake.add_taskmanager();
    sleep(Duration::from_secs(11)).await;
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let j = job_fact(&obs);
    assert_eq!(j.state, "RUNNING");
    assert_eq!(j.restarts, Some(1));
    assert_eq!(fake.num_restarts(&job).unwrap(), 1);
    assert_eq!(value(&obs, "flink_job_restarts_total", Some(l)), Some(1.0));
    let cp = j.checkpoints.unwrap();
    assert_eq!(cp.restored, 1);
    assert!(cp.restored_from.unwrap().contains(&format!("{job}/chk-")));
}

// ---------------------------------------------------------------- exceptions, failures, selection

#[tokio::test(start_paused = true)]
async fn crash_loop_exceptions_are_classified() {
    let (fake, job) = started().await;
    fake.crash_loop(
        &job,
        "org.apache.paimon.schema.SchemaChangeException: Cannot convert field amount from type DECIMAL(10, 2) to INT",
    )
    .unwrap();
    sleep(Duration::from_secs(12)).await;
    let probe =
        FlinkJobProbe::new(client(&fake), target(), JobSelector::id(job.clone())).max_exceptions(3);
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let j = job_fact(&obs);
    assert!(!j.exceptions.is_empty() && j.exceptions.len() <= 3);
    assert!(j
        .exceptions
        .iter()
        .all(|e| e.category == FailureCategory::SchemaMismatch));
    assert_eq!(
        j.exceptions[0].class,
        "org.apache.paimon.schema.SchemaChangeException"
    );
    assert!(j.restarts.unwrap() >= 1);
    let q = fake.requests().matching("GET", "/jobs/*/exceptions");
    assert_eq!(q[0].query.as_deref(), Some("maxExceptions=3"));

    fake.heal(&job).unwrap();
    fake.fail_job(&job, "java.lang.OutOfMemoryError: Java heap space")
        .unwrap();
    // the exception view is cached for refresh-interval
    sleep(Duration::from_secs(4)).await;
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let j = job_fact(&obs);
    assert_eq!(j.state, "FAILED");
    assert_eq!(j.latest_failure(), Some(FailureCategory::OutOfMemory));
    assert_eq!(
        obs.samples_named("flink_vertex_busy_ratio").count(),
        0,
        "no vertex load of an ended job"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_checkpoints_are_counted_with_their_message() {
    let (fake, job) = started().await;
    sleep(Duration::from_millis(10_500)).await;
    fake.fail_checkpoints(&job, true).unwrap();
    sleep(Duration::from_secs(4)).await;
    let probe = FlinkJobProbe::new(client(&fake), target(), JobSelector::id(job.clone()));
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let cp = job_fact(&obs).checkpoints.unwrap();
    assert_eq!((cp.completed, cp.failed), (5, 2));
    assert_eq!(cp.last_completed_id, Some(5));
    assert_eq!(
        cp.last_failure_message.as_deref(),
        Some("Trigger checkpoint failure.")
    );
    let age = cp.last_completed_age_ms.unwrap();
    assert!((4_000..=7_000).contains(&age), "{age}");
    assert_eq!(
        value(&obs, "flink_checkpoints_failed_total", None),
        Some(2.0)
    );
}

#[tokio::test(start_paused = true)]
async fn selection_by_name_prefers_the_live_job_and_reports_a_missing_one() {
    let fake = FakeFlink::start().await.unwrap();
    let old = fake.add_job(JobSpec::counter("orders")).unwrap();
    sleep(Duration::from_secs(1)).await;
    fake.fail_job(&old, "java.lang.IllegalStateException: gone")
        .unwrap();
    let new = fake.add_job(JobSpec::counter("orders")).unwrap();
    let probe = FlinkJobProbe::new(client(&fake), target(), JobSelector::name("orders"));
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert_eq!(job_fact(&obs).job_id.as_deref(), Some(new.as_str()));

    let probe = FlinkJobProbe::new(client(&fake), target(), JobSelector::name("payments"));
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let j = job_fact(&obs);
    assert!(!j.present);
    assert_eq!(j.state, "NOT_FOUND");
    assert_eq!(value(&obs, "flink_job_present", None), Some(0.0));
    assert_eq!(value(&obs, "flink_job_up", None), Some(0.0));
    assert!(obs.complete, "a missing job is seen, not unknown");
}

// ---------------------------------------------------------------- the real captures, replayed

/// Serves the real Flink 2.3 captures by path; anything not captured is a 404 like Flink's.
#[derive(Debug)]
struct Replay(BTreeMap<String, String>);

impl Replay {
    fn captured() -> Self {
        let mut m = BTreeMap::new();
        let mut put = |p: String, f: &str| {
            m.insert(p, capture(f));
        };
        put("/overview".into(), "overview");
        put("/jobs/overview".into(), "jobs_overview");
        put(format!("/jobs/{JOB}/status"), "job_status");
        put(format!("/jobs/{JOB}"), "job_detail");
        put(format!("/jobs/{JOB}/checkpoints"), "job_checkpoints");
        put(
            format!("/jobs/{JOB}/exceptions?maxExceptions=10"),
            "job_exceptions",
        );
        // the captured metric answer holds numRestarts among others
        put(
            format!("/jobs/{JOB}/metrics?get=numRestarts"),
            "job_metrics_get",
        );
        put(
            format!("/jobs/{JOB}/vertices/{COUNTER}/backpressure"),
            "vertex_counter_backpressure",
        );
        put(
            format!("/jobs/{JOB}/vertices/{COUNTER}/subtasks/metrics?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond,numRecordsInPerSecond&agg=max,avg,sum"),
            "vertex_counter_subtasks_metrics_agg",
        );
        Self(m)
    }
}

#[async_trait]
impl HttpClient for Replay {
    fn base_url(&self) -> &str {
        "http://flink.capture:8081"
    }
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let (status, body) = match self.0.get(&request.path) {
            Some(b) => (200, b.clone()),
            None => (404, capture("err_no_route")),
        };
        Ok(HttpResponse {
            status,
            headers: vec![],
            body: body.into_bytes(),
            elapsed: Duration::ZERO,
        })
    }
}

#[tokio::test]
async fn the_captured_cluster_gives_the_captured_numbers() {
    let probe = FlinkJobProbe::new(
        Replay::captured(),
        target(),
        JobSelector::name("runbook-counter"),
    );
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let j = job_fact(&obs);
    assert_eq!(j.job_id.as_deref(), Some(JOB));
    assert_eq!(j.state, "RUNNING");
    assert_eq!(j.restarts, Some(0));
    assert_eq!(j.server_time_ms, Some(1_795_588_795_829));
    let cp = j.checkpoints.clone().unwrap();
    assert_eq!(cp.last_completed_id, Some(12));
    assert_eq!(cp.last_completed_at_ms, Some(1_795_588_794_767));
    assert_eq!(cp.last_completed_age_ms, Some(1_062));
    assert_eq!(
        cp.latest_external_path.as_deref(),
        Some("file:/tmp/flinkcheck/ckpt/820589c381fd8920f39255783eb12308/chk-12")
    );
    assert_eq!((cp.completed, cp.failed), (12, 0));
    assert_eq!(
        value(&obs, "flink_checkpoint_last_completed_age_seconds", None),
        Some(1.062)
    );
    assert_eq!(j.cluster.slots_available, 3);
    let c = &j.vertices[1];
    assert_eq!(c.id, COUNTER);
    assert_eq!(c.input_records_per_second, Some(70.216_666_666_666_67));
    assert_eq!(c.busy_ratio, Some(0.0));
    assert_eq!(c.backpressure_level.as_deref(), Some("ok"));
    assert_eq!((c.parallelism, c.max_parallelism), (1, Some(128)));
    assert!(j.vertices[0].is_source && !c.is_source);
    // the source vertex's metrics were not captured: that part is unknown, and said so
    assert!(!obs.complete);
    assert!(
        obs.gaps.iter().all(|g| g.contains(SOURCE)),
        "{:?}",
        obs.gaps
    );
    assert_eq!(j.vertices[0].busy_ratio, None);
}

#[tokio::test]
async fn a_source_that_does_not_count_its_input_is_measured_by_its_output() {
    // The captured source vertex's metric names (as the subtask aggregate lists them: without the
    // subtask prefix), with a generator source's rates: input 0, output 70 records/s.
    let mut replay = Replay::captured();
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&capture("vertex_source_metrics_list")).unwrap();
    let names: Vec<serde_json::Value> = list
        .iter()
        .map(|m| {
            let id = m["id"].as_str().unwrap();
            serde_json::json!({"id": id.split_once('.').map_or(id, |(_, rest)| rest)})
        })
        .collect();
    let base = format!("/jobs/{JOB}/vertices/{SOURCE}/subtasks/metrics");
    replay
        .0
        .insert(base.clone(), serde_json::Value::Array(names).to_string());
    replay.0.insert(
        format!("{base}?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond,numRecordsInPerSecond,numRecordsOutPerSecond,Source__datagen.numRecordsInPerSecond,Source__datagen.numRecordsOutPerSecond&agg=max,avg,sum"),
        r#"[{"id":"busyTimeMsPerSecond","max":1000.0,"avg":1000.0,"sum":1000.0},
            {"id":"numRecordsInPerSecond","max":0.0,"avg":0.0,"sum":0.0},
            {"id":"numRecordsOutPerSecond","max":70.0,"avg":70.0,"sum":70.0},
            {"id":"Source__datagen.numRecordsInPerSecond","max":0.0,"avg":0.0,"sum":0.0},
            {"id":"Source__datagen.numRecordsOutPerSecond","max":70.0,"avg":70.0,"sum":70.0}]"#
            .to_string(),
    );
    let probe = FlinkJobProbe::new(replay, target(), JobSelector::id(JOB));
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    let s = &job_fact(&obs).vertices[0];
    assert!(s.is_source);
    assert_eq!(s.input_records_per_second, Some(70.0));
    assert_eq!(s.busy_ratio, Some(1.0));
    assert_eq!(
        value(&obs, "flink_job_input_records_per_second", None),
        Some(70.0)
    );
}

#[test]
fn captured_shapes_parse_with_their_values() {
    let site = site();
    let o: Overview = parse_json(&site, capture("overview").as_bytes()).unwrap();
    assert_eq!(
        (
            o.taskmanagers,
            o.slots_total,
            o.slots_available,
            o.jobs_running
        ),
        (1, 4, 3, 1)
    );
    let o: Overview = parse_json(&site, capture("stopped_overview").as_bytes()).unwrap();
    assert_eq!((o.jobs_running, o.jobs_finished), (0, 1));
    let s: JobStatusBody = parse_json(&site, capture("stopped_job_status").as_bytes()).unwrap();
    assert_eq!(s.status, "FINISHED");
    let d: JobDetail = parse_json(&site, capture("after_rescale_job_detail").as_bytes()).unwrap();
    assert_eq!(
        d.vertices.iter().map(|v| v.parallelism).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let e: Exceptions = parse_json(&site, capture("stopped_job_exceptions").as_bytes()).unwrap();
    let x = &e.history.entries[0];
    assert_eq!(
        rb_probes::flink::classify(&x.exception_name, &x.stacktrace),
        FailureCategory::LostTaskManager
    );
    let m: Vec<MetricValue> =
        parse_json(&site, capture("after_rescale_job_metrics_get").as_bytes()).unwrap();
    assert_eq!(m[0].id, "numRestarts");
    assert_eq!(m[0].value, Some(serde_json::json!("1")));
    let a: Vec<AggregatedMetric> =
        parse_json(&site, capture("jobs_metrics_agg").as_bytes()).unwrap();
    assert_eq!(a[1].max, Some(22_786.0));
    let b: Backpressure =
        parse_json(&site, capture("vertex_counter_backpressure").as_bytes()).unwrap();
    assert_eq!((b.status.as_str(), b.subtasks[0].ratio), ("ok", Some(0.0)));
    let c: Checkpoints = parse_json(
        &site,
        capture("job_checkpoints_with_failed_savepoint").as_bytes(),
    )
    .unwrap();
    let h = checkpoint_health(&c, 1_795_588_832_130);
    assert_eq!(h.last_completed_id, Some(35));
    assert_eq!(h.last_completed_age_ms, Some(1_000));
    assert_eq!((h.completed, h.failed, h.restored), (34, 1, 1));
    assert_eq!(
        h.last_failure_message.as_deref(),
        Some("An Exception occurred while triggering the checkpoint. IO-problem detected.")
    );
    assert_eq!(
        h.latest_savepoint_path.as_deref(),
        Some("file:/tmp/flinkcheck/savepoints/savepoint-820589-9bfb9233d804")
    );
    assert_eq!(
        h.latest_external_path, h.last_completed_path,
        "the checkpoint is newer than the savepoint"
    );
    assert_eq!(
        h.restored_from.as_deref(),
        Some("file:/tmp/flinkcheck/ckpt/820589c381fd8920f39255783eb12308/chk-18")
    );
    let j: JobsOverview = parse_json(&site, capture("restored_jobs_overview").as_bytes()).unwrap();
    let picked = JobSelector::name("runbook-counter").pick(&j.jobs).unwrap();
    assert_eq!(
        picked.state, "FINISHED",
        "an ended job is still found by its name"
    );
    let picked = JobSelector::name("runbook-counter-restored")
        .pick(&j.jobs)
        .unwrap();
    assert_eq!(picked.jid, "2a708230b521f5166d98c61b8f5ea8b3");
    let picked = JobSelector::id("2A708230B521F5166D98C61B8F5EA8B3")
        .pick(&j.jobs)
        .unwrap();
    assert_eq!(picked.state, "RUNNING");
}

// ---------------------------------------------------------------- parsers: errors and proptest

fn site() -> ProbeSite<'static> {
    ProbeSite {
        probe: "flink.job",
        target: "flink-test",
        endpoint: "http://flink:8081/jobs/x",
    }
}

#[test]
fn a_wrong_type_names_its_json_pointer() {
    let body = capture("job_checkpoints").replace(
        "\"external_path\": \"file:/tmp/flinkcheck/ckpt/820589c381fd8920f39255783eb12308/chk-12\"",
        "\"external_path\": 12",
    );
    let e = parse_json::<Checkpoints>(&site(), body.as_bytes()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    assert!(
        e.message.contains("/latest/completed/external_path"),
        "{}",
        e.message
    );
    assert!(e.message.contains("line "), "{}", e.message);

    let body = capture("job_detail").replacen("\"parallelism\": 1", "\"parallelism\": \"one\"", 1);
    let e = parse_json::<JobDetail>(&site(), body.as_bytes()).unwrap_err();
    assert!(
        e.message.contains("/vertices/0/parallelism"),
        "{}",
        e.message
    );

    let e = parse_json::<Vec<AggregatedMetric>>(
        &site(),
        br#"[{"id":"busyTimeMsPerSecond","max":"lots"}]"#,
    )
    .unwrap_err();
    assert!(e.message.contains("/0/max"), "{}", e.message);
    // NaN as Flink writes it is not an error, just no value
    let a: Vec<AggregatedMetric> = parse_json(
        &site(),
        br#"[{"id":"busyTimeMsPerSecond","max":"NaN","sum":1.5}]"#,
    )
    .unwrap();
    assert_eq!((a[0].max, a[0].sum), (None, Some(1.5)));
}

const PARSED: [&str; 9] = [
    "overview",
    "jobs_overview",
    "job_status",
    "job_detail",
    "job_checkpoints",
    "stopped_job_exceptions",
    "job_metrics_get",
    "vertex_counter_subtasks_metrics_agg",
    "vertex_counter_backpressure",
];

/// Parse `body` as the shape of capture `name`; any outcome but a panic is fine.
fn parse_as(name: &str, body: &[u8]) {
    let s = site();
    match name {
        "overview" => drop(parse_json::<Overview>(&s, body)),
        "jobs_overview" => drop(parse_json::<JobsOverview>(&s, body)),
        "job_status" => drop(parse_json::<JobStatusBody>(&s, body)),
        "job_detail" => drop(parse_json::<JobDetail>(&s, body)),
        "job_checkpoints" => {
            if let Ok(c) = parse_json::<Checkpoints>(&s, body) {
                let _ = checkpoint_health(&c, i64::MAX);
                let _ = checkpoint_health(&c, i64::MIN);
            }
        }
        "stopped_job_exceptions" => {
            if let Ok(e) = parse_json::<Exceptions>(&s, body) {
                for x in &e.history.entries {
                    let _ = rb_probes::flink::classify(&x.exception_name, &x.stacktrace);
                }
            }
        }
        "job_metrics_get" => drop(parse_json::<Vec<MetricValue>>(&s, body)),
        "vertex_counter_subtasks_metrics_agg" => {
            drop(parse_json::<Vec<AggregatedMetric>>(&s, body))
        }
        _ => drop(parse_json::<Backpressure>(&s, body)),
    }
}

/// Replace the `n`th JSON scalar of `v` by `with` (flip its type).
fn flip(v: &mut serde_json::Value, n: &mut usize, with: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Object(m) => m.values_mut().any(|x| flip(x, n, with)),
        Value::Array(a) => a.iter_mut().any(|x| flip(x, n, with)),
        _ => {
            if *n == 0 {
                *v = with.clone();
                true
            } else {
                *n -= 1;
                false
            }
        }
    }
}

/// Cases per property: `RB_FUZZ_CASES` when set (the long fuzz run, see `tests/fuzz.rs`), else `default`.
fn fuzz_cases(default: u32) -> u32 {
    std::env::var("RB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(256)))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(which in 0usize..PARSED.len(), body in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse_as(PARSED[which], &body);
    }

    #[test]
    fn parsers_never_panic_on_truncated_captures(which in 0usize..PARSED.len(), cut in 0.0f64..1.0) {
        let body = capture(PARSED[which]);
        let at = (body.len() as f64 * cut) as usize;
        let at = (0..=at).rev().find(|i| body.is_char_boundary(*i)).unwrap_or(0);
        parse_as(PARSED[which], &body.as_bytes()[..at]);
        if body[..at].trim_end() != body.trim_end() {
            prop_assert!(parse_json::<serde_json::Value>(&site(), &body.as_bytes()[..at]).is_err());
        }
    }

    #[test]
    fn parsers_never_panic_on_type_flipped_captures(which in 0usize..PARSED.len(), nth in 0usize..200, kind in 0usize..5) {
        let with = [serde_json::json!(null), serde_json::json!("x"), serde_json::json!(-1), serde_json::json!(1.0e300), serde_json::json!({"a": [1]})][kind].clone();
        let mut v: serde_json::Value = serde_json::from_str(&capture(PARSED[which])).unwrap();
        let mut n = nth;
        flip(&mut v, &mut n, &with);
        parse_as(PARSED[which], v.to_string().as_bytes());
    }
}

// ---------------------------------------------------------------- the fault matrix

/// Outcome of one probe under one fault: the error kind, or `ok` / `incomplete`.
fn outcome(r: Result<Observation, rb_core::ProbeError>) -> String {
    match r {
        Ok(o) if o.complete => "ok".into(),
        Ok(_) => "incomplete".into(),
        Err(e) => format!("{:?}", e.kind()).to_lowercase(),
    }
}

async fn run_fault(probe: &str, fault: &str) -> String {
    let (fake, job) = started().await;
    sleep(Duration::from_secs(11)).await;
    let f = fake.faults();
    let all = "/**";
    match fault {
        "none" => {}
        "latency" => drop(f.inject("GET", all, Fault::Latency(Duration::from_secs(30)))),
        "status_500" => drop(f.inject(
            "GET",
            all,
            Fault::StatusBody(500, r#"{"errors":["Internal server error."]}"#.into()),
        )),
        "status_503" => drop(f.inject("GET", all, Fault::Status(503))),
        "status_401" => drop(f.inject("GET", all, Fault::Status(401))),
        "refused" => fake.refuse_connections(),
        "reset" => drop(f.inject("GET", all, Fault::Reset)),
        "malformed" => drop(f.inject("GET", all, Fault::MalformedBody)),
        "truncated" => drop(f.inject("GET", all, Fault::TruncatedBody)),
        "hang" => drop(f.inject("GET", all, Fault::Hang)),
        "status_endpoint_500" => drop(f.inject("GET", "/jobs/*/status", Fault::Status(500))),
        "detail_malformed" => drop(f.inject("GET", "/jobs/*", Fault::MalformedBody)),
        "checkpoints_500" => drop(f.inject("GET", "/jobs/*/checkpoints", Fault::Status(500))),
        "exceptions_malformed" => drop(f.inject("GET", "/jobs/*/exceptions", Fault::MalformedBody)),
        "metrics_truncated" => drop(f.inject("GET", "/jobs/*/metrics", Fault::TruncatedBody)),
        "vertex_metrics_503" => drop(f.inject(
            "GET",
            "/jobs/*/vertices/*/subtasks/metrics",
            Fault::Status(503),
        )),
        "backpressure_hang" => {
            drop(f.inject("GET", "/jobs/*/vertices/*/backpressure", Fault::Hang))
        }
        other => panic!("unknown fault {other}"),
    }
    let c = ctx(Duration::from_secs(5));
    let r = match probe {
        "flink.cluster" => {
            FlinkClusterProbe::new(client(&fake), target())
                .observe(&c)
                .await
        }
        "flink.job" => {
            FlinkJobProbe::new(client(&fake), target(), JobSelector::id(job))
                .observe(&c)
                .await
        }
        other => panic!("unknown probe {other}"),
    };
    if let Err(e) = &r {
        // every error names the probe, the target and an endpoint of the fake
        assert_eq!(e.probe, probe);
        assert_eq!(e.target, "flink-test");
        assert!(e.endpoint.starts_with(&fake.base_url()), "{e}");
    }
    outcome(r)
}

#[tokio::test(start_paused = true)]
async fn fault_matrix() {
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fault_matrix/flink.csv"
    ))
    .unwrap();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for (i, line) in csv.lines().enumerate() {
        if i == 0 {
            assert_eq!(line, "probe,fault,kind");
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 3, "row {i}: {line}");
        rows.push((cols[0].into(), cols[1].into(), cols[2].into()));
    }
    // every probe × every global fault is a row, and every row's pair is unique
    let globals = [
        "none",
        "latency",
        "status_500",
        "status_503",
        "status_401",
        "refused",
        "reset",
        "malformed",
        "truncated",
        "hang",
    ];
    for p in ["flink.cluster", "flink.job"] {
        for f in globals {
            assert_eq!(
                rows.iter().filter(|r| r.0 == p && r.1 == f).count(),
                1,
                "row {p},{f} missing or repeated"
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (p, f, _) in &rows {
        assert!(seen.insert((p.clone(), f.clone())), "row {p},{f} repeated");
    }
    let mut failures = Vec::new();
    for (p, f, want) in &rows {
        let got = run_fault(p, f).await;
        if &got != want {
            failures.push(format!("{p},{f}: expected {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
