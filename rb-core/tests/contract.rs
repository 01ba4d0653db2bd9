//! The second edition of the contract: findings that name what broke, incidents keyed per offending
//! series, remediations that read their context and pass results on, and the approval, outcome and
//! verification rules. Each test fails without the behaviour it names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rb_core::incident::StepState;
use rb_core::journal::Event;
use rb_core::observation::facts::Alert;
use rb_core::policy::{AutoApprove, DenyAll};
use rb_core::prelude::*;
use rb_core::remediation::StepOutput;
use rb_core::{ErrorKind, MemoryJournal, Signal, Verification};

fn connect() -> Target {
    Target::new("kafka-connect", "connect-main")
}

/// Failed task counts per connector, as `kafka_connect_connector_failed_task_count{connector=…}`.
#[derive(Debug, Clone, Default)]
struct Connectors(Arc<Mutex<BTreeMap<String, f64>>>);

impl Connectors {
    fn set(&self, name: &str, failed: f64) {
        self.0.lock().unwrap().insert(name.into(), failed);
    }
}

#[async_trait]
impl Probe for Connectors {
    fn id(&self) -> &str {
        "test.connectors"
    }
    fn target(&self) -> &Target {
        static T: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
        T.get_or_init(connect)
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let mut o = Observation::new(self.id(), "connect-main", ctx.now());
        for (name, v) in self.0.lock().unwrap().iter() {
            o.push_sample(
                "kafka_connect_connector_failed_task_count",
                labels(&[("connector", name)]),
                *v,
            );
        }
        Ok(o)
    }
}

/// Restarts the connector the incident is about (read from the context), and heals it.
#[derive(Debug, Clone)]
struct RestartConnector {
    connectors: Connectors,
    restarted: Arc<Mutex<Vec<(String, Timestamp)>>>,
}

#[async_trait]
impl Remediation for RestartConnector {
    fn id(&self) -> &str {
        "kafka_connect.restart"
    }
    fn risk(&self) -> Risk {
        Risk::Disruptive
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let name = ctx.label("connector").ok_or_else(|| {
            RemediationError::new(
                self.id(),
                "connect-main",
                "-",
                ErrorKind::Invalid,
                "no connector in the finding",
            )
        })?;
        Ok(Plan::new(
            self.id(),
            vec![connect()],
            format!("restart {name} with its failed tasks"),
        )
        .params(serde_json::json!({ "connector": name })))
    }
    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let name = plan.params["connector"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.restarted
            .lock()
            .unwrap()
            .push((name.clone(), ctx.now()));
        self.connectors.set(&name, 0.0);
        Ok(Outcome::new(format!("restarted {name}")))
    }
}

fn connector_runbook(c: &Connectors, r: &RestartConnector) -> Runbook {
    Runbook::new("t").playbook(
        Playbook::new("connect-failed", "Kafka Connect connector failed")
            .detect(
                Arc::new(c.clone()),
                Schedule::every(secs(30)),
                metric("kafka_connect_connector_failed_task_count")
                    .above(0.0)
                    .for_at_least(mins(1)),
            )
            .incident_per(&["connector"])
            .mitigate(Arc::new(r.clone()))
            .stable_for(mins(2))
            .escalate_to("Data Platform On-call"),
    )
}

async fn engine_with(
    runbook: Runbook,
    pager: &Pager,
    approver: Arc<dyn rb_core::policy::Approver>,
) -> Engine {
    Engine::builder(runbook)
        .clock(clock())
        .notifier(Arc::new(pager.clone()))
        .approver(approver)
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn two_failing_connectors_give_two_incidents_each_restarting_its_own_connector() {
    let c = Connectors::default();
    c.set("orders-sink", 2.0);
    c.set("payments-sink", 1.0);
    c.set("audit-sink", 0.0);
    let r = RestartConnector {
        connectors: c.clone(),
        restarted: Default::default(),
    };
    let pager = Pager::default();
    let e = engine_with(connector_runbook(&c, &r), &pager, Arc::new(AutoApprove)).await;
    run(&e, mins(2), secs(30)).await;

    let incidents = e.incidents().await.unwrap();
    assert_eq!(incidents.len(), 2, "one incident per failed connector");
    let mut keys: Vec<String> = incidents
        .iter()
        .map(|i| i.record.key["connector"].clone())
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["orders-sink", "payments-sink"]);
    for i in &incidents {
        let k = &i.record.key["connector"];
        assert_eq!(
            i.record.finding.label("connector"),
            Some(k.as_str()),
            "the finding names what broke"
        );
        assert!(i.record.fingerprint.contains(k.as_str()));
    }
    // both restarted, each its own connector, in the same minute: no cool-down between instances
    let restarted = r.restarted.lock().unwrap().clone();
    let mut names: Vec<&str> = restarted.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["orders-sink", "payments-sink"]);
    let (t0, t1) = (restarted[0].1, restarted[1].1);
    assert!(
        t1.since(t0) < mins(1),
        "restarted in the same minute: {t0} and {t1}"
    );
    for i in &incidents {
        assert!(
            !i.timeline
                .iter()
                .any(|x| matches!(x.event, Event::Refused { .. })),
            "nothing refused"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_healed_connector_closes_its_incident_and_leaves_the_others_open() {
    let c = Connectors::default();
    c.set("orders-sink", 2.0);
    c.set("payments-sink", 1.0);
    // a remediation that does not heal: only time (or a human) does
    let pb = Playbook::new("connect-failed", "Kafka Connect connector failed")
        .detect(
            Arc::new(c.clone()),
            Schedule::every(secs(30)),
            metric("kafka_connect_connector_failed_task_count").above(0.0),
        )
        .incident_per(&["connector"])
        .stable_for(mins(2))
        .escalate_to("Data Platform On-call");
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(pb),
        &pager,
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(1), secs(30)).await;
    assert_eq!(e.open_incidents().await.len(), 2);
    c.set("orders-sink", 0.0);
    run(&e, mins(5), secs(30)).await;
    let open = e.open_incidents().await;
    assert_eq!(
        open.len(),
        1,
        "only the healed connector's incident closed: {open:?}"
    );
    let left = e.incident(&open[0]).await.unwrap();
    assert_eq!(left.record.key["connector"], "payments-sink");
}

fn alert(job: &str, status: &str) -> Signal {
    Signal::Alert(Alert {
        name: "FlinkJobRestarting".into(),
        status: status.into(),
        fingerprint: format!("fp-{job}"),
        labels: [("alertname", "FlinkJobRestarting"), ("job", job)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: Default::default(),
        starts_at: "2026-11-25T07:00:00Z".into(),
        silenced_by: vec![],
    })
}

#[tokio::test(start_paused = true)]
async fn a_resolved_alert_for_one_job_leaves_the_other_jobs_incident_open() {
    let pb = Playbook::new("flink-restarting", "Flink job restarting")
        .detect_alert("FlinkJobRestarting", Target::new("flink", "flink-main"))
        .incident_per(&["job"])
        .stable_for(mins(1))
        .escalate_to("Data Platform On-call");
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(pb),
        &pager,
        Arc::new(AutoApprove),
    )
    .await;
    e.ingest(alert("orders", "firing"));
    e.ingest(alert("payments", "firing"));
    run(&e, secs(30), secs(30)).await;
    assert_eq!(e.open_incidents().await.len(), 2, "one incident per job");
    e.ingest(alert("orders", "resolved"));
    run(&e, mins(3), secs(30)).await;
    let open = e.open_incidents().await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        e.incident(&open[0]).await.unwrap().record.key["job"],
        "payments"
    );
}

/// Step one journals a savepoint path; step two restores from whatever step one left.
#[derive(Debug, Clone, Default)]
struct Restore {
    got: Arc<Mutex<Vec<Option<String>>>>,
}

#[async_trait]
impl Remediation for Restore {
    fn id(&self) -> &str {
        "flink.restore"
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let path: Option<String> = ctx.output_value(Some("savepoint"), "savepoint_path");
        Ok(Plan::new(
            self.id(),
            vec![Target::new("flink", "flink-main")],
            "restore",
        )
        .params(serde_json::json!({ "path": path })))
    }
    async fn apply(&self, plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.got
            .lock()
            .unwrap()
            .push(plan.params["path"].as_str().map(str::to_string));
        Ok(Outcome::new("restored"))
    }
}

#[derive(Debug, Clone, Default)]
struct Savepoint;

#[async_trait]
impl Remediation for Savepoint {
    fn id(&self) -> &str {
        "flink.savepoint"
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        Ok(Plan::new(
            self.id(),
            vec![Target::new("flink", "flink-main")],
            "savepoint",
        ))
    }
    async fn apply(&self, _plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        ctx.progress("savepoint_path", serde_json::json!("s3://sp/savepoint-17"))
            .await
            .unwrap();
        Ok(Outcome::new("savepoint taken"))
    }
}

fn restore_playbook(g: &Gauge, restore: &Restore) -> Playbook {
    Playbook::new("kafka-backlog", "Kafka backlog grows")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate_as("savepoint", Arc::new(Savepoint))
        .mitigate_as("restore", Arc::new(restore.clone()))
        .escalate_to("Data Platform On-call")
}

#[tokio::test(start_paused = true)]
async fn a_savepoint_path_from_step_one_reaches_step_two() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let restore = Restore::default();
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(restore_playbook(&g, &restore)),
        &pager,
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(1), secs(30)).await;
    let inc = &e.incidents().await.unwrap()[0];
    assert_eq!(
        *restore.got.lock().unwrap(),
        vec![Some("s3://sp/savepoint-17".to_string())]
    );
    assert!(inc
        .timeline
        .iter()
        .any(|x| matches!(&x.event, Event::Progress { key, .. } if key == "savepoint_path")));
}

#[tokio::test(start_paused = true)]
async fn a_savepoint_path_journaled_before_a_restart_reaches_the_next_step_after_it() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let journal = Arc::new(MemoryJournal::new());
    // the first engine runs step one, then "crashes": its process ends before step two
    {
        let pb = Playbook::new("kafka-backlog", "Kafka backlog grows")
            .detect(
                g.arc(),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(5_000.0),
            )
            .mitigate_as("savepoint", Arc::new(Savepoint))
            .mitigate_as(
                "restore",
                Arc::new(Recorder::new("flink.restore", Risk::Disruptive, vec![kafka()]).arc()),
            )
            .escalate_to("Data Platform On-call");
        // DenyAll stops before step two's apply; then the incident's steps are rewound to "step two
        // not started" by building a fresh engine on a journal holding only step one
        let e = Engine::builder(Runbook::new("t").playbook(pb))
            .clock(clock())
            .journal(journal.clone())
            .approver(Arc::new(rb_core::policy::CallbackApprover::new(
                mins(60),
                |_req| async { std::future::pending::<rb_core::policy::Decision>().await },
            )))
            .build()
            .await
            .unwrap();
        run(&e, secs(30), secs(30)).await;
        let inc = &e.incidents().await.unwrap()[0];
        assert_eq!(
            rb_core::incident::step_state(&inc.timeline, 0),
            StepState::Done
        );
        assert_eq!(
            rb_core::incident::step_state(&inc.timeline, 1),
            StepState::NotStarted
        );
    }
    // a new engine on the same journal resumes: step two reads what step one journaled
    let restore = Restore::default();
    let e = Engine::builder(Runbook::new("t").playbook(restore_playbook(&g, &restore)))
        .clock(clock())
        .journal(journal.clone())
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap();
    run(&e, mins(1), secs(30)).await;
    assert_eq!(
        *restore.got.lock().unwrap(),
        vec![Some("s3://sp/savepoint-17".to_string())]
    );
}

#[tokio::test(start_paused = true)]
async fn automatic_approval_never_grants_a_destructive_step_unless_the_policy_says_so() {
    for allow in [false, true] {
        let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
        let rem = Recorder::new("kafka.add_partitions", Risk::Destructive, vec![kafka()]);
        let pb = Playbook::new("kafka-backlog", "b")
            .detect(
                g.arc(),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(5_000.0),
            )
            .mitigate(rem.arc())
            .escalate_to("Data Platform On-call");
        let policy = SafetyPolicy {
            auto_approve_destructive: allow,
            ..SafetyPolicy::default()
        };
        let e = Engine::builder(Runbook::new("t").playbook(pb))
            .clock(clock())
            .approver(Arc::new(AutoApprove))
            .policy(policy)
            .build()
            .await
            .unwrap();
        run(&e, secs(30), secs(30)).await;
        assert_eq!(
            rem.applied(),
            usize::from(allow),
            "auto_approve_destructive = {allow}"
        );
        let inc = &e.incidents().await.unwrap()[0];
        let refused = inc
            .timeline
            .iter()
            .any(|x| matches!(&x.event, Event::Refused { reason, .. } if reason.contains("human")));
        assert_eq!(refused, !allow);
    }
}

/// A step that demands a human whatever its risk.
#[derive(Debug, Default)]
struct HumanOnly(AtomicUsize);

#[async_trait]
impl Remediation for HumanOnly {
    fn id(&self) -> &str {
        "kafka.add_partitions"
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    fn requires_human(&self) -> bool {
        true
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        Ok(Plan::new(self.id(), vec![kafka()], "add partitions"))
    }
    async fn apply(&self, _plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::new("added"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_that_demands_a_human_is_refused_by_an_automatic_approver_and_granted_by_a_person() {
    for human in [false, true] {
        let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
        let rem = Arc::new(HumanOnly::default());
        let pb = Playbook::new("kafka-backlog", "b")
            .detect(
                g.arc(),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(5_000.0),
            )
            .mitigate(rem.clone())
            .escalate_to("Data Platform On-call");
        let approver: Arc<dyn rb_core::policy::Approver> = if human {
            Arc::new(rb_core::policy::CallbackApprover::new(
                mins(5),
                |_req| async { rb_core::policy::Decision::Granted { by: "alice".into() } },
            ))
        } else {
            Arc::new(AutoApprove)
        };
        let e = Engine::builder(Runbook::new("t").playbook(pb))
            .clock(clock())
            .approver(approver)
            .build()
            .await
            .unwrap();
        run(&e, mins(1), secs(30)).await;
        assert_eq!(
            rem.0.load(Ordering::SeqCst),
            usize::from(human),
            "human = {human}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_apply_that_hangs_ends_as_outcome_unknown_and_is_not_run_again() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.restore", Risk::Safe, vec![kafka()]);
    rem.behave(Behaviour::Sleep(mins(30)));
    let pager = Pager::default();
    let policy = SafetyPolicy {
        apply_timeout: mins(1),
        ..SafetyPolicy::default()
    };
    let e = Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![rem.arc()])))
        .clock(clock())
        .notifier(Arc::new(pager.clone()))
        .policy(policy)
        .build()
        .await
        .unwrap();
    run(&e, mins(10), secs(30)).await;
    let inc = &e.incidents().await.unwrap()[0];
    assert_eq!(
        rb_core::incident::step_state(&inc.timeline, 0),
        StepState::OutcomeUnknown
    );
    let starts = inc
        .timeline
        .iter()
        .filter(|x| matches!(x.event, Event::Started { .. }))
        .count();
    assert_eq!(starts, 1, "never re-run");
    let unknown = inc.timeline.iter().find_map(|x| match &x.event {
        Event::Finished {
            outcome_unknown: true,
            error_detail: Some(d),
            ..
        } => Some(d.kind),
        _ => None,
    });
    assert_eq!(unknown, Some(ErrorKind::OutcomeUnknown));
    assert!(
        pager
            .all()
            .iter()
            .any(|n| n.message.contains("outcome unknown")),
        "a human is told"
    );
    let md = e.review(&inc.record.id).await.unwrap().to_markdown();
    assert!(md.contains("OUTCOME UNKNOWN"), "the review shows it:\n{md}");
}

/// Applies at once; verification is inconclusive `n` times, then succeeds (or never, when `n` is max).
#[derive(Debug)]
struct SlowToVerify {
    inconclusive: usize,
    calls: AtomicUsize,
    within: Duration,
}

#[async_trait]
impl Remediation for SlowToVerify {
    fn id(&self) -> &str {
        "flink.restore"
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    fn verify_within(&self) -> Duration {
        self.within
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        Ok(Plan::new(self.id(), vec![kafka()], "restore"))
    }
    async fn apply(&self, _plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        Ok(Outcome::new("resubmitted"))
    }
    async fn verify(
        &self,
        _p: &Plan,
        _o: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(if n < self.inconclusive {
            Verification::Inconclusive {
                why: "job still RESTARTING".into(),
            }
        } else {
            Verification::Succeeded {
                evidence: "job RUNNING".into(),
            }
        })
    }
}

async fn verified(inconclusive: usize) -> (Verification, usize) {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Arc::new(SlowToVerify {
        inconclusive,
        calls: AtomicUsize::new(0),
        within: mins(3),
    });
    let e = Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![rem.clone()])))
        .clock(clock())
        .build()
        .await
        .unwrap();
    run(&e, mins(6), secs(30)).await;
    let inc = &e.incidents().await.unwrap()[0];
    let v = inc
        .timeline
        .iter()
        .find_map(|x| match &x.event {
            Event::Verified { verification, .. } => Some(verification.clone()),
            _ => None,
        })
        .expect("verified");
    (v, rem.calls.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn a_verification_that_succeeds_on_its_third_try_passes() {
    let (v, calls) = verified(2).await;
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    assert_eq!(calls, 3);
}

#[tokio::test(start_paused = true)]
async fn a_verification_that_never_succeeds_fails_at_its_deadline() {
    let (v, calls) = verified(usize::MAX).await;
    match v {
        Verification::Failed { evidence } => {
            assert!(evidence.contains("still inconclusive"), "{evidence}")
        }
        other => panic!("inconclusive at the deadline is not success: {other:?}"),
    }
    assert!(calls > 2, "tried again until the deadline: {calls}");
}

/// Plans nothing to do, or a riskier plan than its default.
#[derive(Debug)]
struct Planner {
    plan: Plan,
    applied: AtomicUsize,
}

#[async_trait]
impl Remediation for Planner {
    fn id(&self) -> &str {
        &self.plan.action
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        Ok(self.plan.clone())
    }
    async fn apply(&self, _plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::new("done"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_plan_with_nothing_to_do_is_skipped_without_a_page() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Arc::new(Planner {
        plan: Plan::nothing_to_do("flink.rescale", "already at parallelism 4"),
        applied: AtomicUsize::new(0),
    });
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(backlog(&g, vec![rem.clone()])),
        &pager,
        Arc::new(DenyAll),
    )
    .await;
    run(&e, mins(3), secs(30)).await;
    assert_eq!(rem.applied.load(Ordering::SeqCst), 0);
    let inc = &e.incidents().await.unwrap()[0];
    assert!(inc.timeline.iter().any(|x| matches!(&x.event, Event::Skipped { reason, .. } if reason.contains("already at parallelism 4"))));
    assert!(
        pager.all().is_empty(),
        "nothing to do is not a failure: {:?}",
        pager.all()
    );
}

#[tokio::test(start_paused = true)]
async fn the_risk_of_the_plan_decides_approval_not_the_remediations_default() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Arc::new(Planner {
        plan: Plan::new(
            "flink.rescale",
            vec![Target::new("flink", "flink-main")],
            "stop with savepoint and resubmit at 8",
        )
        .risk(Risk::Disruptive),
        applied: AtomicUsize::new(0),
    });
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(backlog(&g, vec![rem.clone()])),
        &pager,
        Arc::new(DenyAll),
    )
    .await;
    run(&e, mins(3), secs(30)).await;
    assert_eq!(
        rem.applied.load(Ordering::SeqCst),
        0,
        "a disruptive plan of a 'safe' remediation was asked and denied"
    );
    let inc = &e.incidents().await.unwrap()[0];
    assert!(inc.timeline.iter().any(|x| matches!(
        &x.event,
        Event::Approval {
            plan_hash: Some(_),
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn the_recovery_check_right_after_a_mitigation_reads_fresh_data() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    // the mitigation fixes the lag at once; the next scheduled probe would be 30 s later
    #[derive(Debug)]
    struct Fix(Gauge);
    #[async_trait]
    impl Remediation for Fix {
        fn id(&self) -> &str {
            "flink.rescale"
        }
        fn risk(&self) -> Risk {
            Risk::Safe
        }
        async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
            Ok(Plan::new(self.id(), vec![kafka()], "rescale"))
        }
        async fn apply(&self, _p: &Plan, _c: &ActionContext) -> Result<Outcome, RemediationError> {
            self.0.set(10.0);
            Ok(Outcome::new("rescaled"))
        }
    }
    let e =
        Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![Arc::new(Fix(g.clone()))])))
            .clock(clock())
            .build()
            .await
            .unwrap();
    run(&e, mins(3), secs(30)).await;
    let inc = &e.incidents().await.unwrap()[0];
    let first_check = inc.timeline.iter().find_map(|x| match &x.event {
        Event::Recovery { verdict, .. } => Some(verdict.label()),
        _ => None,
    });
    assert_eq!(
        first_check,
        Some("ok"),
        "the first recovery check saw the data read after the fix"
    );
}

#[test]
fn step_outputs_prefer_artifacts_then_outcome_details() {
    let mut o = StepOutput {
        outcome: Some(Outcome::new("x").details(serde_json::json!({"job_id": "a1", "path": "p"}))),
        ..Default::default()
    };
    o.artifacts.insert("path".into(), serde_json::json!("q"));
    assert_eq!(o.get("path"), Some(&serde_json::json!("q")));
    assert_eq!(o.get("job_id"), Some(&serde_json::json!("a1")));
    assert_eq!(o.get("nope"), None);
}

/// A notifier that never answers, recording what it was asked.
#[derive(Debug, Clone, Default)]
struct Hung(Arc<Mutex<Vec<rb_core::escalation::Notification>>>);

#[async_trait]
impl Notifier for Hung {
    async fn notify(
        &self,
        n: &rb_core::escalation::Notification,
    ) -> Result<(), rb_core::NotifyError> {
        self.0.lock().unwrap().push(n.clone());
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_notifier_times_out_and_the_incident_moves_on() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    rem.behave(Behaviour::FailPermanent); // fails: the engine pages
    let hung = Hung::default();
    let e = Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![rem.arc()])))
        .clock(clock())
        .notifier(Arc::new(hung.clone()))
        .build()
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    run(&e, mins(3), secs(30)).await;
    assert!(
        tokio::time::Instant::now() - t0 < mins(4),
        "the run was not wedged"
    );
    let inc = &e.incidents().await.unwrap()[0];
    let page = inc.timeline.iter().find_map(|x| match &x.event {
        Event::Escalated { error, .. } => Some(error.clone()),
        _ => None,
    });
    let err = page.expect("a page was attempted").expect("and failed");
    assert!(err.contains("no answer within 10s"), "{err}");
    assert!(
        inc.phases.contains(&rb_core::Phase::Recover),
        "the incident moved on to recovery"
    );
    assert_eq!(
        hung.0.lock().unwrap()[0].action,
        rb_core::escalation::NotifyAction::Trigger
    );
}

#[tokio::test(start_paused = true)]
async fn acknowledging_and_closing_tell_the_paging_system_with_the_same_dedup_key() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    rem.behave(Behaviour::FailPermanent);
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(backlog(&g, vec![rem.arc()])),
        &pager,
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(3), secs(30)).await;
    let id = e.open_incidents().await[0].clone();
    e.acknowledge(&id, "alice").await.unwrap();
    e.close(&id, "alice").await.unwrap();
    run(&e, secs(30), secs(30)).await;
    use rb_core::escalation::NotifyAction::*;
    let seen: Vec<_> = pager
        .all()
        .iter()
        .filter(|n| n.incident == id) // the lag goes on: a new incident opens after the close
        .map(|n| (n.action, n.dedup_key.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Trigger, id.clone()),
            (Acknowledge, id.clone()),
            (Resolve, id.clone())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_refused_for_six_minutes_opens_a_cannot_see_incident_closed_when_it_sees_again() {
    let g = Gauge::new(kafka(), "records_lag_max", 10.0);
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(backlog(&g, vec![])),
        &pager,
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(1), secs(30)).await;
    g.fail(); // connection refused from here on
    run(&e, mins(4), secs(30)).await;
    assert!(
        e.open_incidents().await.is_empty(),
        "not yet: blind for 4 minutes"
    );
    run(&e, mins(2), secs(30)).await;
    let open = e.open_incidents().await;
    assert_eq!(open.len(), 1, "{open:?}");
    let inc = e.incident(&open[0]).await.unwrap();
    assert!(
        inc.record
            .finding
            .summary
            .starts_with("cannot see kafka-main: "),
        "{}",
        inc.record.finding.summary
    );
    assert!(inc.record.finding.summary.contains("connection refused"));
    assert_eq!(pager.roles().len(), 1, "paged once");
    run(&e, mins(5), secs(30)).await;
    assert_eq!(
        e.incidents().await.unwrap().len(),
        1,
        "deduplicated while blind"
    );
    g.set(10.0);
    run(&e, mins(1), secs(30)).await;
    assert!(
        e.open_incidents().await.is_empty(),
        "closed when the probe sees again"
    );
    let inc = e.incident(&inc.record.id).await.unwrap();
    assert_eq!(inc.resolution, Some(rb_core::Resolution::Recovered));
}

#[tokio::test(start_paused = true)]
async fn incident_ids_are_unique_across_engines_without_counting() {
    // two engines (two processes), each with its own journal, open an incident at the same instant:
    // a count of incidents would name both "-1"
    let mut ids = Vec::new();
    for _engine in 0..2 {
        let journal = Arc::new(MemoryJournal::new());
        let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
        let e = Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![])))
            .clock(clock()) // both engines at the same instant: counting would collide
            .journal(journal.clone())
            .build()
            .await
            .unwrap();
        e.tick().await.unwrap();
        tokio::time::sleep(mins(2)).await;
        e.tick().await.unwrap();
        ids.extend(e.open_incidents().await);
    }
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "{ids:?}");
    for id in &ids {
        assert!(
            id.starts_with("INC-20261125-0702"),
            "readable prefix kept: {id}"
        );
        assert_eq!(id.rsplit('-').next().unwrap().len(), 20, "{id}");
    }
}

/// Plans a rescale to whatever the shared target parallelism is when asked.
#[derive(Debug, Clone)]
struct RescaleTo(Arc<Mutex<u32>>, Arc<Mutex<Vec<u32>>>);

#[async_trait]
impl Remediation for RescaleTo {
    fn id(&self) -> &str {
        "flink.rescale"
    }
    fn risk(&self) -> Risk {
        Risk::Disruptive
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let p = *self.0.lock().unwrap();
        Ok(
            Plan::new(self.id(), vec![kafka()], format!("rescale to {p}"))
                .params(serde_json::json!({ "parallelism": p })),
        )
    }
    async fn apply(&self, plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.1
            .lock()
            .unwrap()
            .push(plan.params["parallelism"].as_u64().unwrap_or(0) as u32);
        Ok(Outcome::new("rescaled"))
    }
}

/// A human who takes five minutes to answer, every time.
fn slow_human(asked: Arc<AtomicUsize>) -> Arc<dyn rb_core::policy::Approver> {
    Arc::new(rb_core::policy::CallbackApprover::new(
        mins(30),
        move |_req| {
            asked.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(mins(5)).await;
                rb_core::policy::Decision::Granted { by: "bob".into() }
            }
        },
    ))
}

#[tokio::test(start_paused = true)]
async fn a_plan_that_changed_while_a_human_decided_is_asked_again() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let target = Arc::new(Mutex::new(4));
    let applied = Arc::new(Mutex::new(Vec::new()));
    let rem = RescaleTo(target.clone(), applied.clone());
    let asked = Arc::new(AtomicUsize::new(0));
    let pb = Playbook::new("kafka-backlog", "b")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate(Arc::new(rem))
        .escalate_to("Data Platform On-call");
    let e = Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .approver(slow_human(asked.clone()))
        .build()
        .await
        .unwrap();
    e.run_for(mins(1)).await.unwrap();
    *target.lock().unwrap() = 8; // the lag grew: the plan would now be different
    e.run_for(mins(15)).await.unwrap();
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "asked again for the changed plan"
    );
    assert_eq!(
        *applied.lock().unwrap(),
        vec![8],
        "only the plan a human approved last is applied"
    );
    let inc = &e.incidents().await.unwrap()[0];
    let hashes: Vec<String> = inc
        .timeline
        .iter()
        .filter_map(|x| match &x.event {
            Event::Approval {
                plan_hash: Some(h), ..
            } => Some(h.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_ne!(
        hashes[0], hashes[1],
        "each approval journaled with the hash of its plan"
    );
}

#[tokio::test(start_paused = true)]
async fn a_symptom_that_cleared_while_a_human_decided_skips_the_step() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let applied = Arc::new(Mutex::new(Vec::new()));
    let rem = RescaleTo(Arc::new(Mutex::new(4)), applied.clone());
    let asked = Arc::new(AtomicUsize::new(0));
    let pb = Playbook::new("kafka-backlog", "b")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate(Arc::new(rem))
        .escalate_to("Data Platform On-call");
    let e = Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .approver(slow_human(asked.clone()))
        .build()
        .await
        .unwrap();
    e.run_for(mins(1)).await.unwrap();
    g.set(100.0); // the lag drained by itself
    e.run_for(mins(10)).await.unwrap();
    assert!(
        applied.lock().unwrap().is_empty(),
        "nothing applied on a cleared symptom"
    );
    let inc = &e.incidents().await.unwrap()[0];
    assert!(inc.timeline.iter().any(
        |x| matches!(&x.event, Event::Skipped { reason, .. } if reason.contains("no longer fires"))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_step_inside_a_maintenance_window_waits_and_runs_after_it() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(backlog(&g, vec![rem.arc()])),
        &pager,
        Arc::new(AutoApprove),
    )
    .await;
    let until = e.clock().now().plus(mins(20));
    e.maintenance(rb_core::policy::MaintenanceWindow::new(
        "kafka-main",
        until,
        "carol",
        "broker upgrade CHG-42",
    ))
    .await
    .unwrap();
    e.run_for(mins(10)).await.unwrap();
    assert_eq!(
        e.open_incidents().await.len(),
        1,
        "the incident opens during maintenance"
    );
    assert_eq!(rem.applied(), 0, "its remediation waits");
    assert_eq!(e.maintenance_windows().len(), 1);
    e.run_for(mins(12)).await.unwrap();
    assert_eq!(rem.applied(), 1, "and runs once the window has ended");
    let inc = &e.incidents().await.unwrap()[0];
    let waited = inc.timeline.iter().find_map(|x| match &x.event {
        Event::Note { text } if text.contains("maintenance window") => Some((x.at, text.clone())),
        _ => None,
    });
    let (at, text) = waited.expect("the wait is in the incident's timeline");
    assert!(text.contains("CHG-42") && text.contains("carol"), "{text}");
    let started = inc
        .timeline
        .iter()
        .find(|x| matches!(x.event, Event::Started { .. }))
        .unwrap()
        .at;
    assert!(
        started >= until && at < until,
        "waited from {at} and started at {started} (window until {until})"
    );
    let md = e.review(&inc.record.id).await.unwrap().to_markdown();
    assert!(md.contains("maintenance window"), "shown in the review");
}

#[tokio::test(start_paused = true)]
async fn a_maintenance_window_survives_a_restart() {
    let journal = Arc::new(MemoryJournal::new());
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let until = clock().now().plus(mins(20));
    {
        let e = Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![])))
            .clock(clock())
            .journal(journal.clone())
            .build()
            .await
            .unwrap();
        e.maintenance(rb_core::policy::MaintenanceWindow::new(
            "kafka-main",
            until,
            "carol",
            "upgrade",
        ))
        .await
        .unwrap();
    }
    let e = Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![])))
        .clock(clock())
        .journal(journal)
        .build()
        .await
        .unwrap();
    let w = e.maintenance_windows();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].until, until);
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Exceptions {
    class: String,
}
impl rb_core::FactType for Exceptions {
    const KIND: &'static str = "test.exceptions";
}

fn flink_playbook(g: &Gauge, exceptions: &str, restore: &Recorder) -> Playbook {
    let class = exceptions.to_string();
    let diag = Arc::new(FnProbe::new(
        "test.flink_exceptions",
        Target::new("flink", "flink-main"),
        move |ctx| {
            Ok(
                Observation::new("test.flink_exceptions", "flink-main", ctx.now()).fact(
                    &Exceptions {
                        class: class.clone(),
                    },
                ),
            )
        },
    ));
    Playbook::new("flink-restarting", "Flink job restarting")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .diagnose(diag)
        .human_task(
            "fix-schema",
            "deploy the fixed JAR and update the Paimon type mapping",
        )
        .when("the exceptions show a schema error", |ctx| {
            ctx.fact::<Exceptions>()
                .is_some_and(|e| e.class == "schema")
        })
        .mitigate_as("restore", restore.arc())
        .escalate_to("Data Platform On-call")
}

#[tokio::test(start_paused = true)]
async fn a_schema_error_waits_for_a_human_task_then_restores() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let restore = Recorder::new(
        "flink.restore",
        Risk::Safe,
        vec![Target::new("flink", "flink-main")],
    );
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(flink_playbook(&g, "schema", &restore)),
        &pager,
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(5), secs(30)).await;
    assert_eq!(restore.applied(), 0, "the restore waits for the human task");
    let task_page = pager
        .all()
        .into_iter()
        .find(|n| n.message.contains("deploy the fixed JAR"));
    assert!(task_page.is_some(), "the task was paged: {:?}", pager.all());
    let id = e.open_incidents().await[0].clone();
    assert!(
        e.complete_task(&id, "restore", "bob").await.is_err(),
        "only a waiting task can be done"
    );
    e.complete_task(&id, "fix-schema", "bob").await.unwrap();
    run(&e, mins(1), secs(30)).await;
    assert_eq!(restore.applied(), 1, "restored after the human's task");
}

#[tokio::test(start_paused = true)]
async fn without_a_schema_error_the_human_task_is_skipped_and_the_restore_runs() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let restore = Recorder::new(
        "flink.restore",
        Risk::Safe,
        vec![Target::new("flink", "flink-main")],
    );
    let pager = Pager::default();
    let e = engine_with(
        Runbook::new("t").playbook(flink_playbook(&g, "lost-taskmanager", &restore)),
        &pager,
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(1), secs(30)).await;
    assert_eq!(restore.applied(), 1);
    let inc = &e.incidents().await.unwrap()[0];
    assert!(inc.timeline.iter().any(
        |x| matches!(&x.event, Event::Skipped { reason, .. } if reason.contains("schema error"))
    ));
}

fn staged(g: &Gauge, restart: &Recorder, replace: &Recorder) -> Playbook {
    Playbook::new("cassandra-node-down", "Cassandra node down")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate_as("restart", restart.arc())
        .mitigate_as("replace", replace.arc())
        .unless_recovered_within(mins(15))
        .escalate_to("Data Platform On-call")
}

#[tokio::test(start_paused = true)]
async fn not_recovered_fifteen_minutes_after_the_restart_starts_a_replacement() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let restart = Recorder::new("cassandra.restart", Risk::Safe, vec![kafka()]);
    let replace = Recorder::new("cassandra.replace", Risk::Safe, vec![kafka()]);
    let e = engine_with(
        Runbook::new("t").playbook(staged(&g, &restart, &replace)),
        &Pager::default(),
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(10), secs(30)).await;
    assert_eq!(
        (restart.applied(), replace.applied()),
        (1, 0),
        "the replacement waits for its stage"
    );
    run(&e, mins(7), secs(30)).await;
    assert_eq!(
        replace.applied(),
        1,
        "not recovered 15 minutes after the restart: replaced"
    );
    let inc = &e.incidents().await.unwrap()[0];
    let t_restart = inc
        .timeline
        .iter()
        .find(
            |x| matches!(&x.event, Event::Started { action, .. } if action == "cassandra.restart"),
        )
        .unwrap()
        .at;
    let t_replace = inc
        .timeline
        .iter()
        .find(
            |x| matches!(&x.event, Event::Started { action, .. } if action == "cassandra.replace"),
        )
        .unwrap()
        .at;
    assert!(
        t_replace.since(t_restart) >= mins(15),
        "{t_restart} → {t_replace}"
    );
}

#[tokio::test(start_paused = true)]
async fn recovered_within_the_stage_skips_the_replacement() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let restart = Recorder::new("cassandra.restart", Risk::Safe, vec![kafka()]);
    let replace = Recorder::new("cassandra.replace", Risk::Safe, vec![kafka()]);
    let e = engine_with(
        Runbook::new("t").playbook(staged(&g, &restart, &replace)),
        &Pager::default(),
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(5), secs(30)).await;
    g.set(100.0); // the node came back
    run(&e, mins(15), secs(30)).await;
    assert_eq!((restart.applied(), replace.applied()), (1, 0));
    let inc = &e.incidents().await.unwrap()[0];
    assert!(inc.timeline.iter().any(|x| matches!(&x.event, Event::Skipped { reason, .. } if reason.starts_with("recovered within 15m"))));
}

#[tokio::test(start_paused = true)]
async fn recovery_checks_keep_their_own_schedule_and_can_judge_the_detect_stream() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let cross_check = Gauge::new(Target::new("trino", "trino-main"), "rows_missing", 0.0);
    let pb = Playbook::new("kafka-backlog", "b")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate(rem.arc())
        // recovery checks name the bad condition and must be ok: no rows missing, lag not over 1,000
        .recover_every(
            cross_check.arc(),
            mins(5),
            metric("rows_missing").above(0.0),
        )
        .recover_on_detect(metric("records_lag_max").above(1_000.0))
        .stable_for(mins(10))
        .escalate_to("Data Platform On-call");
    let e = engine_with(
        Runbook::new("t").playbook(pb),
        &Pager::default(),
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(1), secs(30)).await;
    g.set(100.0);
    run(&e, mins(20), secs(30)).await;
    let calls = cross_check.calls.load(Ordering::SeqCst);
    let inc = &e.incidents().await.unwrap()[0];
    assert!(
        inc.is_closed(),
        "recovered on the detect stream and the cross-check"
    );
    // recovering from 07:00 until the 10-minute stability window has passed: 07:00, 07:05, 07:10
    assert!(
        (2..=3).contains(&calls),
        "the cross-check ran every 5 minutes, not every round: {calls}"
    );
    let judged_on_detect = inc.timeline.iter().any(|x| {
        matches!(&x.event, Event::Recovery { check, verdict } if check.contains("> 1000") && verdict.is_ok())
    });
    assert!(judged_on_detect);
}

#[tokio::test(start_paused = true)]
async fn alerts_route_by_matchers_and_only_matching_instances_open_incidents() {
    let m = rb_core::matcher::Matchers::parse(
        r#"alertname="FlinkJobRestarting", job=~"orders|payments""#,
    )
    .unwrap();
    let pb = Playbook::new("flink-restarting", "Flink job restarting")
        .detect_alerts(m, Target::new("flink", "flink-main"))
        .incident_per(&["job"])
        .escalate_to("Data Platform On-call");
    let e = engine_with(
        Runbook::new("t").playbook(pb),
        &Pager::default(),
        Arc::new(AutoApprove),
    )
    .await;
    e.ingest(alert("orders", "firing"));
    e.ingest(alert("orders-backfill", "firing")); // the regex is anchored: not "orders.*"
    e.ingest(alert("audit", "firing"));
    let r = e.tick().await.unwrap();
    assert_eq!(r.opened.len(), 1, "only job=orders matches");
    assert_eq!(r.unrouted_signals, 2);
}

#[tokio::test(start_paused = true)]
async fn diagnosis_probes_see_the_incident_window_and_what_broke() {
    let c = Connectors::default();
    c.set("orders-sink", 2.0);
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let logs = Arc::new(FnProbe::new("test.logs", connect(), move |ctx| {
        let scope = ctx
            .incident
            .clone()
            .expect("a diagnosis probe runs for an incident");
        *seen2.lock().unwrap() = Some((
            scope.label("connector").map(str::to_string),
            scope.since,
            scope.opened_at,
        ));
        Ok(Observation::new("test.logs", "connect-main", ctx.now()))
    }));
    let pb = Playbook::new("connect-failed", "Kafka Connect connector failed")
        .detect(
            Arc::new(c.clone()),
            Schedule::every(secs(30)),
            metric("kafka_connect_connector_failed_task_count")
                .above(0.0)
                .for_at_least(mins(1)),
        )
        .incident_per(&["connector"])
        .diagnose(logs)
        .escalate_to("Data Platform On-call");
    let e = engine_with(
        Runbook::new("t").playbook(pb),
        &Pager::default(),
        Arc::new(AutoApprove),
    )
    .await;
    run(&e, mins(2), secs(30)).await;
    let (connector, since, opened) = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the diagnosis probe ran");
    assert_eq!(connector.as_deref(), Some("orders-sink"));
    assert_eq!(
        opened.since(since),
        mins(1),
        "the window starts when the condition began to hold"
    );
}

#[tokio::test(start_paused = true)]
async fn an_sla_page_is_due_on_time_even_with_a_restart_just_before() {
    let journal = Arc::new(MemoryJournal::new());
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    rem.behave(Behaviour::FailPermanent);
    let pager = Pager::default();
    let clk = clock();
    let build = |j: Arc<MemoryJournal>| {
        Engine::builder(
            Runbook::new("t").playbook(backlog(&g, vec![rem.arc()]).recovery_deadline(mins(120))),
        )
        .clock(clk)
        .journal(j)
        .notifier(Arc::new(pager.clone()))
        .build()
    };
    let e = build(journal.clone()).await.unwrap();
    run(&e, mins(2), secs(30)).await; // the step fails at 07:02: Kafka SME paged, 30 minutes to answer
    assert_eq!(pager.roles(), vec!["Kafka SME"]);
    let first_due = pager.all()[0].ack_due;
    run(&e, mins(27), secs(30)).await;
    drop(e); // the process restarts at 07:29, three minutes before the SLA ends at 07:32
    let e = build(journal).await.unwrap();
    run(&e, mins(3) + secs(30), secs(30)).await; // to 07:32:30
    let pages = pager.roles();
    assert_eq!(
        pages,
        vec!["Kafka SME", "Data Platform On-call"],
        "re-escalated on time, not 30 minutes after the restart"
    );
    let second = pager
        .all()
        .into_iter()
        .filter(|n| n.action == rb_core::escalation::NotifyAction::Trigger)
        .nth(1)
        .unwrap();
    let sent_at = second.ack_due.since(first_due); // the next role's SLA (15 m) from when it was sent
    assert!(
        sent_at <= mins(15) + secs(30),
        "sent at the first page's due time: {sent_at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn cool_downs_and_budgets_hold_across_a_restart() {
    let journal = Arc::new(MemoryJournal::new());
    let clk = clock();
    let c = Connectors::default();
    let r = RestartConnector {
        connectors: c.clone(),
        restarted: Default::default(),
    };
    let policy = SafetyPolicy {
        target_budget: rb_core::policy::Budget::new(1, mins(60)),
        ..SafetyPolicy::default()
    };
    let build = |j: Arc<MemoryJournal>| {
        Engine::builder(connector_runbook(&c, &r))
            .clock(clk)
            .journal(j)
            .approver(Arc::new(AutoApprove))
            .policy(policy.clone())
            .build()
    };
    c.set("orders-sink", 1.0);
    let e = build(journal.clone()).await.unwrap();
    run(&e, mins(5), secs(30)).await;
    assert_eq!(r.restarted.lock().unwrap().len(), 1);
    drop(e); // a crash loop of the process must not reset the budget
    let e = build(journal).await.unwrap();
    c.set("payments-sink", 1.0);
    run(&e, mins(5), secs(30)).await;
    assert_eq!(
        r.restarted.lock().unwrap().len(),
        1,
        "the per-target budget of 1 an hour still holds"
    );
    let refused = e.incidents().await.unwrap().iter().flat_map(|i| i.timeline.clone()).any(|x| {
        matches!(&x.event, Event::Refused { reason, .. } if reason.contains("rate budget of kafka-connect/connect-main"))
    });
    assert!(refused, "refused by the budget counted before the restart");
}

#[tokio::test(start_paused = true)]
async fn a_stability_window_ends_on_time_across_a_restart() {
    let journal = Arc::new(MemoryJournal::new());
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let clk = clock();
    let build = |j: Arc<MemoryJournal>| {
        Engine::builder(
            Runbook::new("t").playbook(backlog(&g, vec![rem.arc()]).stable_for(mins(10))),
        )
        .clock(clk)
        .journal(j)
        .build()
    };
    let e = build(journal.clone()).await.unwrap();
    run(&e, mins(3), secs(30)).await; // opened at 07:02, rescaled
    assert_eq!(rem.applied(), 1);
    g.set(0.0); // the backlog drains: recovering from about 07:03
    run(&e, mins(8), secs(30)).await;
    let open = e.open_incidents().await;
    assert_eq!(open.len(), 1, "still inside the 10-minute stability window");
    let id = open[0].clone();
    drop(e); // the process restarts at about 07:11, two minutes before the window ends
    let e = build(journal.clone()).await.unwrap();
    run(&e, mins(3), secs(30)).await; // to about 07:14
    let inc = e.incident(&id).await.unwrap();
    assert!(
        inc.is_closed(),
        "the window ends where it would have without the restart (not 10 minutes after it):\n{}",
        inc.timeline
            .iter()
            .map(|e| format!("{} {}", e.at.rfc3339(), rb_core::report::describe(&e.event)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(rem.applied(), 1, "nothing applied again");
}

#[tokio::test(start_paused = true)]
async fn a_stability_window_broken_before_a_restart_starts_again_after_it() {
    let journal = Arc::new(MemoryJournal::new());
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let clk = clock();
    let build = |j: Arc<MemoryJournal>| {
        Engine::builder(
            Runbook::new("t").playbook(
                backlog(&g, vec![rem.arc()])
                    .stable_for(mins(10))
                    .recovery_deadline(mins(120)),
            ),
        )
        .clock(clk)
        .journal(j)
        .build()
    };
    let e = build(journal.clone()).await.unwrap();
    run(&e, mins(3), secs(30)).await;
    g.set(0.0);
    run(&e, mins(6), secs(30)).await; // ok from about 07:03
    g.set(6_000.0); // above the threshold again at about 07:09: the run of ok verdicts is broken
    run(&e, mins(1), secs(30)).await;
    g.set(0.0); // ok again from about 07:10
    run(&e, mins(1), secs(30)).await;
    let id = e.open_incidents().await[0].clone();
    drop(e); // restart at about 07:11
    let e = build(journal.clone()).await.unwrap();
    run(&e, mins(5), secs(30)).await; // to 07:16: the window counted from 07:09 (or 07:03) would be over
    let inc = e.incident(&id).await.unwrap();
    assert!(
        !inc.is_closed(),
        "the window restarted when recovery broke at 07:09: not closed before 07:20\n{}",
        inc.timeline
            .iter()
            .map(|e| format!("{} {}", e.at.rfc3339(), rb_core::report::describe(&e.event)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    run(&e, mins(5), secs(30)).await; // to 07:21
    assert!(e.incident(&id).await.unwrap().is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_per_series_binding_whose_probe_fails_from_the_start_is_unknown_not_unevaluated() {
    // one incident per connector, but the worker refuses before a single connector was seen: the
    // binding has no per-connector group to hold the failure, and must still not look unevaluated
    let g = Gauge::new(connect(), "kafka_connect_connector_failed_task_count", 0.0);
    g.fail();
    let runbook = Runbook::new("t").playbook(
        Playbook::new("connect-failed", "Kafka Connect connector failed")
            .detect(
                g.arc(),
                Schedule::every(secs(30)),
                metric("kafka_connect_connector_failed_task_count").above(0.0),
            )
            .incident_per(&["connector"]),
    );
    let e = Engine::builder(runbook)
        .clock(clock())
        .build()
        .await
        .unwrap();
    run(&e, secs(30), secs(30)).await;
    let status = e.status().await;
    assert_eq!(status.len(), 1);
    match &status[0].verdict {
        Verdict::Unknown { why } => assert!(why.contains("blind since"), "{why}"),
        other => panic!("expected unknown, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusal_journaled_just_before_a_crash_is_still_paged_after_the_restart() {
    use rb_core::journal::Journal as _;
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let build = |journal: Arc<MemoryJournal>, pager: &Pager| {
        Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![rem.arc()])))
            .clock(clock())
            .journal(journal)
            .notifier(Arc::new(pager.clone()))
            .approver(Arc::new(DenyAll))
            .build()
    };
    let pager = Pager::default();
    let first = Arc::new(MemoryJournal::new());
    let e = build(first.clone(), &pager).await.unwrap();
    run(&e, mins(3), secs(30)).await;
    assert_eq!(pager.roles(), vec!["Kafka SME"], "the refusal paged");
    let id = e.open_incidents().await[0].clone();
    drop(e);

    // the same journal as if the process had died between the refusal and its page
    let journal = Arc::new(MemoryJournal::new());
    let mut refused = false;
    for entry in first.entries(&id).await.unwrap() {
        refused |= matches!(entry.event, Event::Refused { .. });
        if refused && matches!(entry.event, Event::Escalated { .. }) {
            break;
        }
        journal.append(&id, entry.at, &entry.event).await.unwrap();
    }
    assert!(refused);
    let pager = Pager::default();
    let e = build(journal.clone(), &pager).await.unwrap();
    run(&e, secs(30), secs(30)).await;
    assert_eq!(pager.roles(), vec!["Kafka SME"], "the owed page went out");
    assert!(
        pager.all()[0].message.contains("was not applied"),
        "{:?}",
        pager.all()
    );
    assert_eq!(
        rem.applied(),
        0,
        "a refused step is not applied after a restart"
    );
    run(&e, mins(2), secs(30)).await;
    assert_eq!(pager.roles().len(), 1, "paged once, not every round");
}

#[tokio::test(start_paused = true)]
async fn a_task_assigned_just_before_a_crash_is_still_paged_after_it_once() {
    use rb_core::journal::Journal;
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let restore = Recorder::new(
        "flink.restore",
        Risk::Safe,
        vec![Target::new("flink", "flink-main")],
    );
    let c = clock();
    let first_journal = Arc::new(MemoryJournal::default());
    let first = Engine::builder(Runbook::new("t").playbook(flink_playbook(&g, "schema", &restore)))
        .clock(c)
        .journal(first_journal.clone())
        .notifier(Arc::new(Pager::default()))
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap();
    run(&first, mins(5), secs(30)).await;
    let id = first.open_incidents().await[0].clone();
    drop(first);
    // the journal as a crash right after `task_assigned` leaves it: no page yet
    let journal = Arc::new(MemoryJournal::default());
    for e in first_journal.entries(&id).await.unwrap() {
        let assigned = matches!(e.event, Event::TaskAssigned { .. });
        journal.append(&id, e.at, &e.event).await.unwrap();
        if assigned {
            break;
        }
    }
    let pager = Pager::default();
    let e = Engine::builder(Runbook::new("t").playbook(flink_playbook(&g, "schema", &restore)))
        .clock(c)
        .journal(journal)
        .notifier(Arc::new(pager.clone()))
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap();
    run(&e, mins(3), secs(30)).await;
    let task_pages = pager
        .all()
        .into_iter()
        .filter(|n| n.message.contains("deploy the fixed JAR"))
        .count();
    assert_eq!(task_pages, 1, "the owed page, once: {:?}", pager.all());
    assert_eq!(restore.applied(), 0, "still waiting for the human");
    e.complete_task(&id, "fix-schema", "bob").await.unwrap();
    run(&e, mins(1), secs(30)).await;
    assert_eq!(restore.applied(), 1);
}
