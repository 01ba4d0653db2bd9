//! Kafka Connect remediations against the fake worker, through the real reqwest client.
#![cfg(feature = "kafka-connect")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_actions::kafka_connect::{KafkaConnect, RestartBackoff};
use rb_core::journal::Event;
use rb_core::policy::AutoApprove;
use rb_core::prelude::*;
use rb_core::symptom::Finding;
use rb_core::{ErrorKind, Verification};
use rb_probes::transport::ReqwestClient;
use rb_testkit::doubles::RecordingNotifier;
use rb_testkit::http::kafka_connect::{ConnectorType, FakeKafkaConnect, State};
use rb_testkit::http::Fault;

const T0: Timestamp = Timestamp(1_795_590_000_000);

const TRANSIENT: &str = "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to unrecoverable exception.\n\
    Caused by: org.apache.kafka.common.errors.TimeoutException: Timeout of 60000ms expired before the position for partition orders-0 could be determined\n";
const CONFIG: &str = "org.apache.kafka.connect.errors.ConnectException: Failed to start task orders-sink-1\n\
    Caused by: org.apache.kafka.common.config.ConfigException: Invalid value /nonexistent/out.txt for configuration file: directory does not exist\n";

fn target() -> Target {
    Target::new("kafka-connect", "connect-main")
}

fn handle(fake: &FakeKafkaConnect, timeout: Duration) -> KafkaConnect {
    let client = ReqwestClient::builder(fake.base_url())
        .timeout(timeout)
        .build()
        .unwrap();
    KafkaConnect::new(Arc::new(client), target()).conflict_retry(3, Duration::from_millis(50))
}

fn ctx_at(at: Timestamp, connector: &str) -> ActionContext {
    ActionContext::detached(Clock::starting_at(at), secs(30))
        .with_key(labels(&[("connector", connector)]))
}

fn ctx(connector: &str) -> ActionContext {
    ctx_at(T0, connector)
}

async fn fake_with(name: &str, tasks: u32) -> FakeKafkaConnect {
    let fake = FakeKafkaConnect::start().await.unwrap();
    fake.add_connector(name, ConnectorType::Sink, tasks)
        .unwrap();
    fake
}

#[tokio::test]
async fn restart_sends_exactly_the_restart_of_failed_tasks_and_verifies_running() {
    let fake = fake_with("orders-sink", 3).await;
    fake.fail_task("orders-sink", 1, TRANSIENT).unwrap();
    let kc = handle(&fake, secs(10));
    let r = kc.restart();
    let c = ctx("orders-sink");

    let plan = r.plan(&c).await.unwrap();
    assert!(plan.nothing_to_do.is_none(), "{plan:?}");
    assert_eq!(plan.targets, vec![target()]);
    assert!(plan
        .description
        .contains("POST /connectors/orders-sink/restart?includeTasks=true&onlyFailed=true"));
    assert!(
        plan.description.contains("FAILED task(s) 1"),
        "{}",
        plan.description
    );
    assert_eq!(plan.params["tasks"], serde_json::json!([1]));
    assert!(plan.undo.as_deref().unwrap().contains("nothing to undo"));
    assert!(
        fake.http().requests().mutating().is_empty(),
        "planning is read-only"
    );

    let outcome = r.apply(&plan, &c).await.unwrap();
    let writes = fake.http().requests().mutating();
    assert_eq!(writes.len(), 1, "{}", fake.http().requests().describe());
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].path, "/connectors/orders-sink/restart");
    assert_eq!(
        writes[0].query.as_deref(),
        Some("includeTasks=true&onlyFailed=true")
    );
    assert!(writes[0].body.is_empty());
    assert_eq!(outcome.details["status"], 202);
    assert_eq!(fake.task_restart_count("orders-sink", 1), Some(1));
    assert_eq!(
        fake.task_restart_count("orders-sink", 0),
        Some(0),
        "only the failed task"
    );

    let v = r.verify(&plan, &outcome, &c).await.unwrap();
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    assert_eq!(fake.task_state("orders-sink", 1), Some(State::Running));
    assert_eq!(kc.backoff("orders-sink").unwrap().restarts(), 1);
}

#[tokio::test]
async fn a_running_connector_gives_nothing_to_do_and_two_restarts_change_nothing() {
    let fake = fake_with("orders-sink", 2).await;
    let kc = handle(&fake, secs(10));
    let r = kc.restart();
    let plan = r.plan(&ctx("orders-sink")).await.unwrap();
    assert!(
        plan.nothing_to_do
            .as_deref()
            .unwrap()
            .contains("nothing FAILED"),
        "{plan:?}"
    );
    // applying a restart plan of a running connector twice (onlyFailed) leaves the worker as it was
    let forced = Plan::new("kafka_connect.restart", vec![target()], "restart")
        .params(serde_json::json!({"connector": "orders-sink", "tasks": []}));
    r.apply(&forced, &ctx("orders-sink")).await.unwrap();
    r.apply(&forced, &ctx("orders-sink")).await.unwrap();
    assert_eq!(fake.connector_state("orders-sink"), Some(State::Running));
    for t in 0..2 {
        assert_eq!(fake.task_restart_count("orders-sink", t), Some(0));
        assert_eq!(fake.task_state("orders-sink", t), Some(State::Running));
    }
    assert_eq!(fake.connector_restart_count("orders-sink"), Some(0));
}

#[tokio::test]
async fn a_configuration_error_is_refused_for_a_human_with_its_trace() {
    let fake = fake_with("orders-sink", 2).await;
    fake.fail_task("orders-sink", 1, CONFIG).unwrap();
    let kc = handle(&fake, secs(10));
    for rem in [
        Box::new(kc.restart()) as Box<dyn Remediation>,
        Box::new(kc.restart_task()),
    ] {
        let e = rem.plan(&ctx("orders-sink")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        assert!(
            e.message.contains("restart after fixing the configuration"),
            "{e}"
        );
        let blocking = &e.details["needs_human"][0];
        assert_eq!(blocking["task"], 1);
        assert_eq!(blocking["class"]["class"], "configuration");
        assert!(blocking["trace"]
            .as_str()
            .unwrap()
            .contains("ConfigException"));
    }
    assert!(fake.http().requests().mutating().is_empty());
    assert_eq!(fake.task_state("orders-sink", 1), Some(State::Failed));
}

#[tokio::test]
async fn restart_task_picks_the_failed_task_or_the_labelled_one() {
    let fake = fake_with("orders-sink", 3).await;
    fake.fail_task("orders-sink", 2, TRANSIENT).unwrap();
    let kc = handle(&fake, secs(10));
    let r = kc.restart_task();
    let c = ctx("orders-sink");
    let plan = r.plan(&c).await.unwrap();
    assert_eq!(plan.params["task"], 2);
    let o = r.apply(&plan, &c).await.unwrap();
    let writes = fake.http().requests().mutating();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        (writes[0].method.as_str(), writes[0].path.as_str()),
        ("POST", "/connectors/orders-sink/tasks/2/restart")
    );
    assert_eq!(o.details["status"], 204);
    assert!(matches!(
        r.verify(&plan, &o, &c).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    // a labelled task that is running: nothing to do
    let c = ActionContext::detached(Clock::starting_at(T0), secs(30))
        .with_key(labels(&[("connector", "orders-sink"), ("task", "0")]));
    assert!(r.plan(&c).await.unwrap().nothing_to_do.is_some());
    let c = ActionContext::detached(Clock::starting_at(T0), secs(30))
        .with_key(labels(&[("connector", "orders-sink"), ("task", "9")]));
    assert_eq!(r.plan(&c).await.unwrap_err().kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn pause_then_resume_returns_the_connector_to_running() {
    let fake = fake_with("orders-sink", 2).await;
    let kc = handle(&fake, secs(10));
    let c = ctx("orders-sink");
    let (pause, resume) = (kc.pause(), kc.resume());
    assert!(resume.plan(&c).await.unwrap().nothing_to_do.is_some());

    let p = pause.plan(&c).await.unwrap();
    assert_eq!(
        p.undo.as_deref(),
        Some("PUT /connectors/orders-sink/resume")
    );
    let o = pause.apply(&p, &c).await.unwrap();
    assert!(matches!(
        pause.verify(&p, &o, &c).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    assert_eq!(fake.connector_state("orders-sink"), Some(State::Paused));
    assert_eq!(fake.task_state("orders-sink", 1), Some(State::Paused));
    // pausing again: nothing to do (idempotent)
    assert!(pause.plan(&c).await.unwrap().nothing_to_do.is_some());
    pause.apply(&p, &c).await.unwrap();
    assert_eq!(fake.connector_state("orders-sink"), Some(State::Paused));

    let p = resume.plan(&c).await.unwrap();
    assert!(p.nothing_to_do.is_none());
    let o = resume.apply(&p, &c).await.unwrap();
    assert!(matches!(
        resume.verify(&p, &o, &c).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    assert_eq!(fake.connector_state("orders-sink"), Some(State::Running));
    assert_eq!(fake.task_state("orders-sink", 0), Some(State::Running));
    assert_eq!(fake.task_state("orders-sink", 1), Some(State::Running));
    let lines: Vec<String> = fake
        .http()
        .requests()
        .mutating()
        .iter()
        .map(|r| r.line())
        .collect();
    assert_eq!(
        lines,
        vec![
            "PUT /connectors/orders-sink/pause",
            "PUT /connectors/orders-sink/pause",
            "PUT /connectors/orders-sink/resume"
        ]
    );
}

#[tokio::test]
async fn a_409_during_a_rebalance_is_retried_not_reported() {
    let fake = Arc::new(fake_with("orders-sink", 2).await);
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    let kc = handle(&fake, secs(10));
    let r = kc.restart();
    let c = ctx("orders-sink");
    let plan = r.plan(&c).await.unwrap();
    fake.start_rebalance();
    let f = fake.clone();
    let ender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(70)).await;
        f.end_rebalance();
    });
    let o = r.apply(&plan, &c).await.unwrap();
    ender.await.unwrap();
    let posts = fake
        .http()
        .requests()
        .matching("POST", "/connectors/orders-sink/restart");
    assert!(posts.len() >= 2, "retried after the 409: {}", posts.len());
    assert_eq!(o.details["status"], 202);
    assert_eq!(fake.task_state("orders-sink", 0), Some(State::Running));

    // a rebalance that does not end: bounded retries, then a Conflict error
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    fake.start_rebalance();
    fake.http().requests().clear();
    let e = r.apply(&plan, &c).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(e.details["status"], 409);
    assert_eq!(
        fake.http()
            .requests()
            .matching("POST", "/connectors/orders-sink/restart")
            .len(),
        4,
        "one try and three retries"
    );
}

#[tokio::test]
async fn repeated_failures_back_off_then_need_a_human() {
    let fake = fake_with("orders-sink", 1).await;
    fake.fail_task_repeatedly("orders-sink", 0, TRANSIENT, 10)
        .unwrap();
    let kc = handle(&fake, secs(10)).max_restarts(2);
    let r = kc.restart();

    let c0 = ctx_at(T0, "orders-sink");
    let p = r.plan(&c0).await.unwrap();
    let o = r.apply(&p, &c0).await.unwrap();
    // it fails again: verification does not pass
    assert!(!matches!(
        r.verify(&p, &o, &c0).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    // one minute later: backing off (the next restart is allowed 2 minutes after the first)
    let c1 = ctx_at(T0.plus(mins(1)), "orders-sink");
    let wait = r.plan(&c1).await.unwrap();
    let why = wait.nothing_to_do.expect("backing off");
    assert!(
        why.contains("backing off") && why.contains("07:02:00"),
        "{why}"
    );
    // three minutes later: allowed
    let c2 = ctx_at(T0.plus(mins(3)), "orders-sink");
    let p = r.plan(&c2).await.unwrap();
    assert_eq!(p.params["attempt"], 2);
    r.apply(&p, &c2).await.unwrap();
    // the maximum (2) is reached: a human
    let c3 = ctx_at(T0.plus(mins(120)), "orders-sink");
    let e = r.plan(&c3).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert!(e.message.contains("a human must look"), "{e}");
    assert_eq!(e.details["restarts"], 2);
    assert_eq!(fake.task_restart_count("orders-sink", 0), Some(2));
}

#[tokio::test]
async fn running_longer_than_the_interval_after_a_restart_resets_the_backoff() {
    let fake = fake_with("orders-sink", 1).await;
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    let kc = handle(&fake, secs(10)).max_restarts(1);
    let r = kc.restart();
    let c0 = ctx_at(T0, "orders-sink");
    let p = r.plan(&c0).await.unwrap();
    let o = r.apply(&p, &c0).await.unwrap();
    assert!(matches!(
        r.verify(&p, &o, &c0).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    // it ran for an hour, then failed again: the finding says since when
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    let since = T0.plus(mins(60));
    let c1 = ctx_at(since.plus(mins(2)), "orders-sink").with_finding(Finding::new(
        "failed-tasks",
        "orders-sink has a failed task",
        since,
    ));
    let p = r.plan(&c1).await.unwrap();
    assert_eq!(p.params["attempt"], 1, "the count started again: {p:?}");
    assert_eq!(RestartBackoff::interval(1), mins(2));
}

#[tokio::test]
async fn every_injected_fault_is_a_typed_error() {
    let fake = fake_with("orders-sink", 1).await;
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    let kc = handle(&fake, Duration::from_millis(300));
    let r = kc.restart();
    let c = ctx("orders-sink");
    let plan = r.plan(&c).await.unwrap();
    let status = "/connectors/orders-sink/status";
    let restart = "/connectors/orders-sink/restart";
    let cases: Vec<(&str, &str, Fault, bool, ErrorKind)> = vec![
        (
            "GET",
            status,
            Fault::Status(500),
            false,
            ErrorKind::Rejected,
        ),
        (
            "GET",
            status,
            Fault::Status(401),
            false,
            ErrorKind::Unauthorized,
        ),
        (
            "GET",
            status,
            Fault::MalformedBody,
            false,
            ErrorKind::BadResponse,
        ),
        (
            "GET",
            status,
            Fault::TruncatedBody,
            false,
            ErrorKind::BadResponse,
        ),
        ("GET", status, Fault::Hang, false, ErrorKind::Timeout),
        (
            "GET",
            status,
            Fault::Latency(Duration::from_secs(2)),
            false,
            ErrorKind::Timeout,
        ),
        (
            "POST",
            restart,
            Fault::Status(500),
            true,
            ErrorKind::Rejected,
        ),
        (
            "POST",
            restart,
            Fault::Status(403),
            true,
            ErrorKind::Unauthorized,
        ),
        (
            "POST",
            restart,
            Fault::Hang,
            true,
            ErrorKind::OutcomeUnknown,
        ),
        (
            "POST",
            restart,
            Fault::Reset,
            true,
            ErrorKind::OutcomeUnknown,
        ),
        (
            "POST",
            restart,
            Fault::TruncatedBody,
            true,
            ErrorKind::OutcomeUnknown,
        ),
        (
            "POST",
            restart,
            Fault::MalformedBody,
            true,
            ErrorKind::OutcomeUnknown,
        ),
    ];
    for (method, path, fault, at_apply, kind) in cases {
        fake.http().faults().clear();
        fake.http().faults().inject(method, path, fault.clone());
        let e = if at_apply {
            r.apply(&plan, &c).await.unwrap_err()
        } else {
            r.plan(&c).await.unwrap_err()
        };
        assert_eq!(e.kind(), kind, "{method} {path} {fault:?}: {e}");
        assert!(e.to_string().contains("connect-main"), "{e}");
    }
    fake.http().faults().clear();
    // an unknown connector
    let e = r.plan(&ctx("nope")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    // no connector label at all
    let bare = ActionContext::detached(Clock::starting_at(T0), secs(30));
    assert_eq!(r.plan(&bare).await.unwrap_err().kind(), ErrorKind::Invalid);
    // the worker is down (a fresh client: no pooled connection that died under it)
    fake.http().refuse_connections();
    let r = handle(&fake, Duration::from_millis(300)).restart();
    assert_eq!(r.plan(&c).await.unwrap_err().kind(), ErrorKind::Unreachable);
    assert_eq!(
        r.apply(&plan, &c).await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
}

// ---------------------------------------------------------------------------------------------
// Through the engine
// ---------------------------------------------------------------------------------------------

/// `kafka_connect_connector_failed_task_count{connector}` read from the fake's state.
#[derive(Debug)]
struct FailedTasks(Arc<FakeKafkaConnect>);

#[async_trait]
impl Probe for FailedTasks {
    fn id(&self) -> &str {
        "test.connect_failed_tasks"
    }
    fn target(&self) -> &Target {
        static T: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
        T.get_or_init(target)
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let mut o = Observation::new(self.id(), "connect-main", ctx.now());
        for name in self.0.connector_names() {
            let n = self.0.connector_failed_task_count(&name) as f64;
            o.push_sample(
                "kafka_connect_connector_failed_task_count",
                labels(&[("connector", &name)]),
                n,
            );
        }
        Ok(o)
    }
}

fn runbook(fake: &Arc<FakeKafkaConnect>, kc: &KafkaConnect) -> Runbook {
    Runbook::new("t").playbook(
        Playbook::new("connect-failed", "Kafka Connect task failed")
            .detect(
                Arc::new(FailedTasks(fake.clone())),
                Schedule::every(secs(30)),
                metric("kafka_connect_connector_failed_task_count").above(0.0),
            )
            .incident_per(&["connector"])
            .mitigate(Arc::new(kc.restart()))
            .stable_for(mins(2))
            .escalate_to("Data Platform On-call"),
    )
}

async fn run(engine: &Engine, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    loop {
        engine.tick().await.unwrap();
        if tokio::time::Instant::now() >= end {
            break;
        }
        tokio::time::sleep(secs(30)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_each_failed_connector_is_restarted_and_a_config_error_goes_to_a_human()
{
    let fake = Arc::new(FakeKafkaConnect::start().await.unwrap());
    for n in ["orders-sink", "payments-sink", "audit-sink"] {
        fake.add_connector(n, ConnectorType::Sink, 2).unwrap();
    }
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    fake.fail_task("payments-sink", 1, TRANSIENT).unwrap();
    fake.fail_task("audit-sink", 1, CONFIG).unwrap();
    let kc = handle(&fake, secs(30));
    let pager = RecordingNotifier::default();
    let engine = Engine::builder(runbook(&fake, &kc))
        .clock(Clock::starting_at(T0))
        .notifier(Arc::new(pager.clone()))
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap();
    run(&engine, mins(4)).await;

    // both transient failures restarted, each its own connector, no cool-down between them
    let restarts: Vec<String> = fake
        .http()
        .requests()
        .mutating()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        restarts,
        vec![
            "/connectors/orders-sink/restart".to_string(),
            "/connectors/payments-sink/restart".to_string()
        ],
        "{}",
        fake.http().requests().describe()
    );
    assert_eq!(fake.connector_failed_task_count("orders-sink"), 0);
    assert_eq!(fake.connector_failed_task_count("payments-sink"), 0);
    // the configuration error: never restarted, a human paged with the reason
    assert_eq!(fake.task_state("audit-sink", 1), Some(State::Failed));
    assert_eq!(fake.task_restart_count("audit-sink", 1), Some(0));
    let incidents = engine.incidents().await.unwrap();
    let audit = incidents
        .iter()
        .find(|i| i.record.key["connector"] == "audit-sink")
        .unwrap();
    assert!(audit.timeline.iter().any(|x| matches!(
        &x.event,
        Event::Refused { reason, .. } if reason.contains("restart after fixing the configuration")
    )));
    assert!(
        pager
            .notifications()
            .iter()
            .any(|n| n.incident == audit.record.id),
        "{:?}",
        pager.notifications()
    );
    for i in incidents
        .iter()
        .filter(|i| i.record.key["connector"] != "audit-sink")
    {
        assert!(i.timeline.iter().any(|x| matches!(
            &x.event,
            Event::Verified {
                verification: Verification::Succeeded { .. },
                ..
            }
        )));
    }
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_in_dry_run_nothing_is_restarted() {
    let fake = Arc::new(fake_with("orders-sink", 2).await);
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    let kc = handle(&fake, secs(30));
    let engine = Engine::builder(runbook(&fake, &kc))
        .clock(Clock::starting_at(T0))
        .approver(Arc::new(AutoApprove))
        .policy(SafetyPolicy::dry_run())
        .build()
        .await
        .unwrap();
    run(&engine, mins(3)).await;
    assert!(fake.http().requests().mutating().is_empty());
    let inc = &engine.incidents().await.unwrap()[0];
    assert!(inc.timeline.iter().any(|x| matches!(
        &x.event,
        Event::Planned { dry_run: true, plan, .. } if plan.description.contains("onlyFailed=true")
    )));
}

#[tokio::test]
async fn after_a_human_fixed_the_configuration_the_restart_after_fix_runs() {
    let fake = fake_with("orders-sink", 2).await;
    fake.fail_task("orders-sink", 1, CONFIG).unwrap();
    let kc = handle(&fake, secs(10));
    assert_eq!(
        kc.restart()
            .plan(&ctx("orders-sink"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Refused
    );
    let r = kc.restart_after_fix();
    assert!(r.requires_human());
    assert_eq!(r.id(), "kafka_connect.restart_after_fix");
    let c = ctx("orders-sink");
    let p = r.plan(&c).await.unwrap();
    assert_eq!(p.params["tasks"], serde_json::json!([1]));
    let o = r.apply(&p, &c).await.unwrap();
    assert!(matches!(
        r.verify(&p, &o, &c).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    assert_eq!(fake.task_state("orders-sink", 1), Some(State::Running));
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_the_restart_after_fix_waits_for_a_person() {
    for human in [false, true] {
        let fake = Arc::new(fake_with("orders-sink", 2).await);
        fake.fail_task("orders-sink", 1, CONFIG).unwrap();
        let kc = handle(&fake, secs(30));
        let pb = Playbook::new(
            "connect-config",
            "Kafka Connect task failed on its configuration",
        )
        .detect(
            Arc::new(FailedTasks(fake.clone())),
            Schedule::every(secs(30)),
            metric("kafka_connect_connector_failed_task_count").above(0.0),
        )
        .incident_per(&["connector"])
        .mitigate(Arc::new(kc.restart_after_fix()))
        .escalate_to("Data Platform On-call");
        let approver: Arc<dyn rb_core::policy::Approver> = if human {
            Arc::new(rb_core::policy::CallbackApprover::new(
                mins(30),
                |_req| async {
                    rb_core::policy::Decision::Granted {
                        by: "alice (fixed file=)".into(),
                    }
                },
            ))
        } else {
            Arc::new(AutoApprove)
        };
        let engine = Engine::builder(Runbook::new("t").playbook(pb))
            .clock(Clock::starting_at(T0))
            .approver(approver)
            .build()
            .await
            .unwrap();
        run(&engine, mins(3)).await;
        let restarted = fake.task_restart_count("orders-sink", 1).unwrap();
        assert_eq!(restarted, u32::from(human), "human = {human}");
        assert_eq!(
            fake.task_state("orders-sink", 1),
            Some(if human { State::Running } else { State::Failed })
        );
    }
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_a_connector_failing_again_is_cooled_down_while_another_is_restarted() {
    let fake = Arc::new(FakeKafkaConnect::start().await.unwrap());
    for n in ["orders-sink", "payments-sink"] {
        fake.add_connector(n, ConnectorType::Sink, 1).unwrap();
    }
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    let kc = handle(&fake, secs(30));
    let engine = Engine::builder(runbook(&fake, &kc))
        .clock(Clock::starting_at(T0))
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap();
    run(&engine, mins(4)).await;
    assert_eq!(fake.task_restart_count("orders-sink", 0), Some(1));
    assert!(
        engine.open_incidents().await.is_empty(),
        "recovered and closed"
    );

    // orders-sink fails again within its cool-down; payments-sink fails for the first time
    fake.fail_task("orders-sink", 0, TRANSIENT).unwrap();
    fake.fail_task("payments-sink", 0, TRANSIENT).unwrap();
    run(&engine, mins(1)).await;
    assert_eq!(
        fake.task_restart_count("payments-sink", 0),
        Some(1),
        "another connector is not held back by orders-sink's cool-down"
    );
    assert_eq!(
        fake.task_restart_count("orders-sink", 0),
        Some(1),
        "orders-sink is not restarted again yet"
    );
    let incidents = engine.incidents().await.unwrap();
    let second = incidents
        .iter()
        .filter(|i| i.record.key["connector"] == "orders-sink")
        .max_by_key(|i| i.record.opened_at)
        .unwrap();
    assert!(
        second.timeline.iter().any(|x| matches!(
            &x.event,
            Event::Refused { reason, .. } if reason.contains("cool")
        ) || matches!(
            &x.event,
            Event::Skipped { reason, .. } if reason.contains("backing off")
        )),
        "{:?}",
        second.timeline.iter().map(|x| &x.event).collect::<Vec<_>>()
    );
}
