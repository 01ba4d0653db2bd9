#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The five phases on a virtual clock: for-duration, hysteresis, dedupe, escalation against SLAs.

mod common;

use std::sync::Arc;

use common::*;
use rb_core::escalation::EscalationReason;
use rb_core::journal::Event;
use rb_core::policy::AutoApprove;
use rb_core::prelude::*;
use rb_core::Phase;

async fn engine(rb: Runbook, pager: &Pager) -> Engine {
    Engine::builder(rb)
        .clock(clock())
        .notifier(Arc::new(pager.clone()))
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn for_duration_fires_exactly_after_two_minutes() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![])),
        &Pager::default(),
    )
    .await;
    // observations at 0s, 30s, 60s, 90s: pending
    run(&e, secs(90), secs(30)).await;
    assert!(e.open_incidents().await.is_empty());
    let st = e.status().await;
    assert!(
        matches!(st[0].verdict, Verdict::Pending { .. }),
        "{:?}",
        st[0].verdict
    );
    // 120s: the condition has held for 2 minutes
    tokio::time::sleep(secs(30)).await;
    let r = e.tick().await.unwrap();
    assert_eq!(r.opened.len(), 1, "{r:?}");
    let inc = e.incident(&r.opened[0]).await.unwrap();
    assert_eq!(inc.record.finding.since, Timestamp(1_795_590_000_000));
    assert_eq!(inc.record.opened_at, Timestamp(1_795_590_000_000 + 120_000));
    let v = inc.record.violated.unwrap();
    assert_eq!(
        (v.name.as_str(), v.value, v.threshold, v.comparison.as_str()),
        ("records_lag_max", 12_000.0, 5_000.0, ">")
    );
    assert_eq!(inc.record.service, "orders-pipeline");
}

#[tokio::test(start_paused = true)]
async fn a_dip_restarts_the_for_duration() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![])),
        &Pager::default(),
    )
    .await;
    run(&e, secs(60), secs(30)).await;
    g.set(100.0);
    tokio::time::sleep(secs(30)).await;
    e.tick().await.unwrap();
    g.set(12_000.0);
    run(&e, secs(110), secs(30)).await; // 90s..210s: held since 120s → not yet 2m at 210s
    assert!(e.open_incidents().await.is_empty());
    tokio::time::sleep(secs(30)).await;
    assert_eq!(e.tick().await.unwrap().opened.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn hysteresis_keeps_the_incident_until_below_clear_threshold_for_the_stability_window() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("kafka.noop", Risk::Safe, vec![kafka()]);
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![rem.arc()])),
        &Pager::default(),
    )
    .await;
    run(&e, mins(2), secs(30)).await;
    let id = e.open_incidents().await.pop().expect("incident open");
    // between the clear (1,000) and fire (5,000) thresholds: still firing
    g.set(3_000.0);
    run(&e, mins(20), secs(30)).await;
    assert_eq!(
        e.open_incidents().await,
        vec![id.clone()],
        "3,000 is not below the clear threshold"
    );
    g.set(500.0);
    run(&e, mins(4), secs(30)).await;
    assert_eq!(
        e.open_incidents().await.len(),
        1,
        "needs 5 minutes of stability"
    );
    run(&e, mins(2), secs(30)).await;
    assert!(e.open_incidents().await.is_empty());
    let inc = e.incident(&id).await.unwrap();
    assert_eq!(inc.phases, Phase::ALL.to_vec());
    assert_eq!(inc.resolution, Some(rb_core::Resolution::Recovered));
    assert_eq!(rem.applied(), 1);
}

#[tokio::test(start_paused = true)]
async fn one_open_incident_per_fingerprint_and_a_new_one_after_close() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("kafka.noop", Risk::Safe, vec![kafka()]);
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![rem.arc()]).stable_for(mins(1))),
        &Pager::default(),
    )
    .await;
    run(&e, mins(30), secs(30)).await;
    assert_eq!(
        e.incidents().await.unwrap().len(),
        1,
        "firing for 30 minutes opens one incident"
    );
    assert_eq!(rem.applied(), 1, "at most once per incident step");
    g.set(0.0);
    run(&e, mins(3), secs(30)).await;
    assert!(e.open_incidents().await.is_empty());
    g.set(12_000.0);
    run(&e, mins(3), secs(30)).await;
    assert_eq!(e.incidents().await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn refiring_while_open_is_journaled_not_duplicated() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    // mitigation fails → stays open and recovering; lag dips and comes back
    let pb = Playbook::new("p", "P")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .stable_for(mins(10));
    let e = engine(Runbook::new("t").playbook(pb), &Pager::default()).await;
    e.tick().await.unwrap();
    let id = e.open_incidents().await.pop().unwrap();
    g.set(0.0);
    run(&e, mins(1), secs(30)).await;
    g.set(9_000.0);
    run(&e, mins(1), secs(30)).await;
    assert_eq!(e.incidents().await.unwrap().len(), 1);
    let inc = e.incident(&id).await.unwrap();
    assert_eq!(
        inc.timeline
            .iter()
            .filter(|e| matches!(e.event, Event::Refired { .. }))
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_action_pages_the_playbook_role_and_re_escalates_when_the_sla_passes() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    rem.behave(Behaviour::FailPermanent);
    let pager = Pager::default();
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![rem.arc()]).recovery_deadline(mins(120))),
        &pager,
    )
    .await;
    run(&e, mins(2), secs(30)).await;
    assert_eq!(pager.roles(), vec!["Kafka SME"]);
    let first = pager.all()[0].clone();
    assert_eq!(first.reason, EscalationReason::ActionFailed);
    assert_eq!(first.channel, "slack:#kafka");
    assert_eq!(
        first.ack_due,
        Timestamp(1_795_590_000_000 + 120_000 + 30 * 60_000)
    );
    // Kafka SME's SLA is 30 minutes: nothing more before it passes
    run(&e, mins(29), secs(30)).await;
    assert_eq!(pager.roles().len(), 1);
    run(&e, mins(1) + secs(30), secs(30)).await;
    assert_eq!(pager.roles(), vec!["Kafka SME", "Data Platform On-call"]);
    assert_eq!(pager.all()[1].reason, EscalationReason::SlaMissed);
    assert_eq!(pager.all()[1].attempt, 2);
    // the Data Platform On-call acknowledges within its 15 minutes: no more pages
    let id = e.open_incidents().await.pop().unwrap();
    e.acknowledge(&id, "alice").await.unwrap();
    run(&e, mins(60), secs(30)).await;
    assert_eq!(pager.roles().len(), 2, "{:?}", pager.roles());
}

#[tokio::test(start_paused = true)]
async fn recovery_that_never_comes_escalates_once_at_the_deadline() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("kafka.noop", Risk::Safe, vec![kafka()]);
    let pager = Pager::default();
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![rem.arc()]).recovery_deadline(mins(10))),
        &pager,
    )
    .await;
    run(&e, mins(11), secs(30)).await;
    assert!(pager.roles().is_empty());
    run(&e, mins(2), secs(30)).await;
    assert_eq!(pager.all().len(), 1);
    assert_eq!(pager.all()[0].reason, EscalationReason::RecoveryTimedOut);
}

#[tokio::test(start_paused = true)]
async fn a_playbook_without_mitigation_pages_a_human() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let pager = Pager::default();
    let e = engine(Runbook::new("t").playbook(backlog(&g, vec![])), &pager).await;
    run(&e, mins(2), secs(30)).await;
    assert_eq!(pager.all()[0].reason, EscalationReason::NeedsHuman);
}

#[tokio::test(start_paused = true)]
async fn a_failing_probe_is_unknown_never_healthy() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    g.fail();
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![])),
        &Pager::default(),
    )
    .await;
    run(&e, mins(10), secs(30)).await;
    let st = e.status().await;
    match &st[0].verdict {
        Verdict::Unknown { why } => assert!(
            why.contains("connection refused") && why.contains("kafka-main"),
            "{why}"
        ),
        other => panic!("expected unknown, got {other:?}"),
    }
    assert!(e.metrics_text().contains(
        "rb_probe_runs_total{probe=\"test.gauge\",target=\"kafka-main\",result=\"error\"} 21"
    ));
}

#[tokio::test(start_paused = true)]
async fn alerts_and_manual_reports_enter_through_the_same_path() {
    let flink = Target::new("flink", "flink-main");
    let pager = Pager::default();
    let pb = Playbook::new("flink-restarting", "Flink job restarts repeatedly")
        .detect_alert("FlinkJobRestarting", flink.clone());
    let manual = Playbook::new("user-report", "A user reports a fault")
        .detect_manual(Target::new("service", "dashboard"));
    let e = engine(Runbook::new("t").playbook(pb).playbook(manual), &pager).await;
    let body = include_bytes!("golden/webhook_firing.json");
    assert_eq!(e.ingest_alertmanager_webhook(body).unwrap(), 1);
    e.ingest(Signal::manual(
        "user-report",
        "ITSM-42",
        "support",
        "dashboard shows stale data",
    ));
    e.ingest(Signal::manual(
        "no-such-playbook",
        "ITSM-43",
        "support",
        "?",
    ));
    let r = e.tick().await.unwrap();
    assert_eq!(r.opened.len(), 2);
    assert_eq!(r.unrouted_signals, 1);
    let inc = e.incident(&r.opened[0]).await.unwrap();
    assert_eq!(inc.record.playbook, "flink-restarting");
    assert!(
        inc.record.finding.summary.contains("restart"),
        "{}",
        inc.record.finding.summary
    );
    // the resolved alert clears the symptom; stability window then closes it
    let resolved = String::from_utf8_lossy(body).replace("\"firing\"", "\"resolved\"");
    e.ingest_alertmanager_webhook(resolved.as_bytes()).unwrap();
    run(&e, mins(6), secs(30)).await;
    let open = e.open_incidents().await;
    assert_eq!(
        open.len(),
        1,
        "the manual report stays open for a human: {open:?}"
    );
    e.close(&open[0], "bob").await.unwrap();
    assert!(e.open_incidents().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn engine_metrics_are_prometheus_text() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("kafka.noop", Risk::Safe, vec![kafka()]);
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![rem.arc()])),
        &Pager::default(),
    )
    .await;
    run(&e, mins(2), secs(30)).await;
    let text = e.metrics_text();
    for needle in [
        "# TYPE rb_probe_duration_seconds histogram",
        "rb_probe_duration_seconds_count{probe=\"test.gauge\",target=\"kafka-main\"} 5",
        "rb_verdicts_total{playbook=\"kafka-backlog\",verdict=\"firing\"} 1",
        "rb_verdicts_total{playbook=\"kafka-backlog\",verdict=\"pending\"} 4",
        "rb_incidents_opened_total{playbook=\"kafka-backlog\"} 1",
        "rb_remediations_total{action=\"kafka.noop\",outcome=\"applied\"} 1",
        "rb_open_incidents 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_run_loop_sleeps_on_tokio_time() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let e = engine(
        Runbook::new("t").playbook(backlog(&g, vec![])),
        &Pager::default(),
    )
    .await;
    e.run_for(mins(60)).await.unwrap();
    // one observation per 30 s over an hour: at 0 s, 30 s, … 59 m 30 s
    assert_eq!(g.calls.load(std::sync::atomic::Ordering::SeqCst), 120);
}

#[tokio::test(start_paused = true)]
async fn invalid_runbooks_are_refused_with_a_reason() {
    let g = Gauge::new(kafka(), "records_lag_max", 1.0);
    let dup = Runbook::new("t")
        .playbook(backlog(&g, vec![]))
        .playbook(backlog(&g, vec![]));
    let err = Engine::builder(dup).build().await.unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
    let role = Runbook::new("t").playbook(backlog(&g, vec![]).escalate_to("Nobody"));
    let err = Engine::builder(role).build().await.unwrap_err();
    assert!(err.to_string().contains("Nobody"), "{err}");
    let none = Runbook::new("t").playbook(Playbook::new("x", "X"));
    assert!(Engine::builder(none).build().await.is_err());
}

#[derive(Debug)]
struct Slow {
    target: Target,
    running: Arc<std::sync::atomic::AtomicUsize>,
    max: Arc<std::sync::atomic::AtomicUsize>,
    at: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
    take: std::time::Duration,
}

#[async_trait]
impl Probe for Slow {
    fn id(&self) -> &str {
        "test.slow"
    }
    fn target(&self) -> &Target {
        &self.target
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.at.lock().unwrap().push(tokio::time::Instant::now());
        let n = self.running.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
        tokio::time::sleep(self.take).await;
        self.running.fetch_sub(1, SeqCst);
        Ok(
            Observation::new("test.slow", &self.target.name, ctx.now()).sample(
                "v",
                Default::default(),
                0.0,
            ),
        )
    }
}

fn slow_runbook(
    n: usize,
    take: std::time::Duration,
    schedule: Schedule,
) -> (
    Runbook,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
) {
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let max = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let at = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut pb = Playbook::new("slow", "Slow");
    for i in 0..n {
        let p = Slow {
            target: Target::new("x", format!("x{i}")),
            running: running.clone(),
            max: max.clone(),
            at: at.clone(),
            take,
        };
        pb = pb.detect(Arc::new(p), schedule, metric("v").above(1.0));
    }
    (Runbook::new("t").playbook(pb), max, at)
}

#[tokio::test(start_paused = true)]
async fn probes_run_concurrently_under_the_bound() {
    let (rb, max, _) = slow_runbook(10, secs(4), Schedule::every(secs(60)).deadline(secs(10)));
    let e = Engine::builder(rb)
        .max_concurrent_probes(3)
        .build()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let r = e.tick().await.unwrap();
    assert_eq!(r.probes_run, 10);
    assert_eq!(
        max.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "never more than the bound at once"
    );
    assert_eq!(
        tokio::time::Instant::now() - started,
        secs(16),
        "10 probes of 4 s, 3 at a time: 4 waves"
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_past_its_deadline_is_a_timeout_not_a_result() {
    let (rb, _, _) = slow_runbook(1, secs(30), Schedule::every(secs(60)).deadline(secs(5)));
    let e = Engine::builder(rb).build().await.unwrap();
    let started = tokio::time::Instant::now();
    e.tick().await.unwrap();
    assert_eq!(tokio::time::Instant::now() - started, secs(5));
    assert!(e.metrics_text().contains("result=\"timeout\"} 1"));
    assert!(e.status().await[0].verdict.is_unknown());
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_probes_within_the_bound_and_is_deterministic_per_seed() {
    async fn offsets(seed: u64) -> Vec<u128> {
        let (rb, _, at) = slow_runbook(20, millis(0), Schedule::every(secs(60)).jitter(secs(10)));
        let e = Engine::builder(rb)
            .jitter_seed(seed)
            .tick_interval(millis(100))
            .build()
            .await
            .unwrap();
        let t0 = tokio::time::Instant::now();
        e.run_for(secs(59)).await.unwrap();
        let mut v: Vec<u128> = at
            .lock()
            .unwrap()
            .iter()
            .map(|t| (*t - t0).as_millis())
            .collect();
        v.sort();
        v
    }
    let a = offsets(7).await;
    assert_eq!(a.len(), 20, "each probe ran once in its first interval");
    assert!(
        a.iter().all(|ms| *ms <= 10_100),
        "within the jitter (plus one tick): {a:?}"
    );
    assert!(
        a.windows(2).any(|w| w[0] != w[1]),
        "spread, not all at once: {a:?}"
    );
    assert_eq!(a, offsets(7).await, "same seed, same schedule");
    assert_ne!(a, offsets(8).await, "another seed, another spread");
}

/// A disruptive action on `kafka()` asked of an approver who answers "granted by bob" after `answer`.
fn slow_approver(answer: std::time::Duration) -> rb_core::policy::CallbackApprover {
    rb_core::policy::CallbackApprover::new(mins(10), move |_| async move {
        tokio::time::sleep(answer).await;
        rb_core::policy::Decision::Granted { by: "bob".into() }
    })
}

fn approval_events(inc: &rb_core::Incident) -> Vec<(Timestamp, String)> {
    inc.timeline
        .iter()
        .filter_map(|x| match &x.event {
            Event::AwaitingApproval { .. } => Some((x.at, "asked".to_string())),
            Event::Approval { decision, .. } => Some((x.at, format!("{decision:?}"))),
            Event::Started { .. } => Some((x.at, "started".to_string())),
            Event::Refused { reason, .. } => Some((x.at, format!("refused: {reason}"))),
            _ => None,
        })
        .collect()
}

/// Two playbooks: lag on `lag` mitigated by `rem`, and heap on `heap` (no mitigation).
fn lag_and_heap(lag: &Gauge, rem: &Recorder, heap: &Gauge) -> Runbook {
    let p1 = Playbook::new("lag", "Lag")
        .detect(
            lag.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate(rem.arc());
    let p2 = Playbook::new("heap", "Heap").detect(
        heap.arc(),
        Schedule::every(secs(30)),
        metric("heap_used_ratio").above(0.9),
    );
    Runbook::new("t").playbook(p1).playbook(p2)
}

#[tokio::test(start_paused = true)]
async fn the_engine_keeps_working_while_a_human_decides() {
    let lag = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rescale = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let heap = Gauge::new(Target::new("flink", "flink-main"), "heap_used_ratio", 0.5);
    let e = Engine::builder(lag_and_heap(&lag, &rescale, &heap))
        .clock(clock())
        .approver(Arc::new(slow_approver(mins(9) + secs(10))))
        .build()
        .await
        .unwrap();
    let t0 = e.clock().now();
    let r = e.tick().await.unwrap();
    assert_eq!(r.opened.len(), 1);
    let lag_inc = r.opened[0].clone();
    assert_eq!(rescale.applied(), 0, "asked, not yet granted");

    // three minutes in, a second symptom: it is detected on time although bob has not answered
    e.run_for(mins(3) - secs(1)).await.unwrap();
    heap.set(0.95);
    e.run_for(secs(2)).await.unwrap();
    let open = e.open_incidents().await;
    assert_eq!(open.len(), 2, "{open:?}");
    let heap_inc = open.iter().find(|id| **id != lag_inc).unwrap();
    let opened = e.incident(heap_inc).await.unwrap().record.opened_at;
    assert_eq!(
        opened,
        t0.plus(mins(3)),
        "detected at its first probe over the line"
    );
    // status and acknowledging answer at once
    let t = tokio::time::Instant::now();
    assert_eq!(e.status().await.len(), 2);
    e.acknowledge(&lag_inc, "alice").await.unwrap();
    assert_eq!(tokio::time::Instant::now(), t);

    // bob answers at 9m10s, between two probe rounds: the engine wakes for the decision and applies
    // at once
    e.run_for(mins(7)).await.unwrap();
    assert_eq!(rescale.applied(), 1);
    let inc = e.incident(&lag_inc).await.unwrap();
    assert_eq!(
        approval_events(&inc),
        vec![
            (t0, "asked".to_string()),
            (
                t0.plus(mins(9) + secs(10)),
                "Granted { by: \"bob\" }".to_string()
            ),
            (t0.plus(mins(9) + secs(10)), "started".to_string()),
        ]
    );
    assert!(inc
        .timeline
        .iter()
        .any(|x| matches!(&x.event, Event::Acknowledged { by } if by == "alice")));
    let md = e.review(&lag_inc).await.unwrap().to_markdown();
    assert!(md.contains("waits for approval, at most 10m"), "{md}");
}

/// An engine whose only playbook fires at once on `g` and runs `rem`, asking `approver`.
async fn asking(
    g: &Gauge,
    rem: &Recorder,
    approver: impl rb_core::policy::Approver + 'static,
) -> Engine {
    let pb = Playbook::new("p", "P")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate(rem.arc());
    Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .approver(Arc::new(approver))
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_kill_switch_withdraws_a_pending_approval() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let e = asking(&g, &rem, slow_approver(mins(5))).await;
    let t0 = e.clock().now();
    let id = e.tick().await.unwrap().opened[0].clone();
    tokio::time::sleep(mins(1)).await;
    e.kill_switch().engage();
    e.tick().await.unwrap();
    e.run_for(mins(10)).await.unwrap();
    assert_eq!(rem.applied(), 0);
    let inc = e.incident(&id).await.unwrap();
    assert_eq!(
        approval_events(&inc),
        vec![
            (t0, "asked".to_string()),
            (
                t0.plus(mins(1)),
                "refused: the kill switch is engaged".to_string()
            ),
        ],
        "the late grant is never journaled: the question was withdrawn"
    );
}

#[tokio::test(start_paused = true)]
async fn approved_after_the_data_went_unknown_is_not_applied() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let e = asking(&g, &rem, slow_approver(mins(2))).await;
    let id = e.tick().await.unwrap().opened[0].clone();
    g.fail();
    e.run_for(mins(3)).await.unwrap();
    assert_eq!(rem.applied(), 0);
    let inc = e.incident(&id).await.unwrap();
    let ev = approval_events(&inc);
    assert_eq!(ev[1].1, "Granted { by: \"bob\" }");
    assert!(
        ev[2]
            .1
            .starts_with("refused: approved, but the data is unknown now"),
        "{ev:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn closing_an_incident_withdraws_its_pending_approval() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let approver = {
        let (asked, answered) = (asked.clone(), answered.clone());
        rb_core::policy::CallbackApprover::new(mins(10), move |_| {
            let (asked, answered) = (asked.clone(), answered.clone());
            async move {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(mins(5)).await;
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                rb_core::policy::Decision::Granted { by: "bob".into() }
            }
        })
    };
    let e = asking(&g, &rem, approver).await;
    let id = e.tick().await.unwrap().opened[0].clone();
    g.set(0.0);
    e.close(&id, "alice").await.unwrap();
    e.run_for(mins(10)).await.unwrap();
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the question was withdrawn"
    );
    assert_eq!(rem.applied(), 0);
    assert!(e.incident(&id).await.unwrap().is_closed());
}

fn step_events(inc: &rb_core::Incident) -> Vec<(Timestamp, String)> {
    inc.timeline
        .iter()
        .filter_map(|x| match &x.event {
            Event::Started { action, .. } => Some((x.at, format!("started {action}"))),
            Event::Finished { action, ok, .. } => Some((x.at, format!("finished {action} {ok}"))),
            Event::Acknowledged { by } => Some((x.at, format!("acknowledged by {by}"))),
            Event::Closed { .. } => Some((x.at, "closed".to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn detection_goes_on_while_a_remediation_is_in_flight() {
    let lag = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let restore = Recorder::new("flink.restore", Risk::Safe, vec![kafka()]);
    restore.behave(Behaviour::Sleep(mins(4))); // a savepoint and a resubmit take minutes
    let heap = Gauge::new(Target::new("flink", "flink-main"), "heap_used_ratio", 0.5);
    let e = Engine::builder(lag_and_heap(&lag, &restore, &heap))
        .clock(clock())
        .build()
        .await
        .unwrap();
    let t0 = e.clock().now();
    let run = {
        let e = e.clone();
        tokio::spawn(async move { e.run_for(mins(6)).await })
    };
    tokio::time::sleep(secs(50)).await;
    heap.set(0.95); // over the line from the 60 s round on
    tokio::time::sleep(secs(20)).await;
    let open = e.open_incidents().await;
    assert_eq!(open.len(), 2, "detected while the restore runs: {open:?}");
    assert_eq!(
        heap.calls.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "probed on schedule: 0 s, 30 s, 60 s"
    );
    // a human acknowledges the lag incident meanwhile: journaled at once
    let lag_inc = open.iter().find(|id| id.contains("-lag-")).unwrap().clone();
    assert_eq!(
        step_events(&e.incident(&lag_inc).await.unwrap()),
        vec![(t0, "started flink.restore".to_string())],
        "the restore is still in flight"
    );
    e.acknowledge(&lag_inc, "alice").await.unwrap();
    run.await.unwrap().unwrap();

    let heap_inc = open.iter().find(|id| id.contains("-heap-")).unwrap();
    let opened = e.incident(heap_inc).await.unwrap().record.opened_at;
    assert_eq!(opened, t0.plus(secs(60)));
    assert_eq!(
        step_events(&e.incident(&lag_inc).await.unwrap()),
        vec![
            (t0, "started flink.restore".to_string()),
            (t0.plus(secs(70)), "acknowledged by alice".to_string()),
            (t0.plus(mins(4)), "finished flink.restore true".to_string()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_close_during_a_step_in_flight_waits_for_the_step_and_run_for_never_drops_it() {
    let lag = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let restore = Recorder::new("flink.restore", Risk::Safe, vec![kafka()]);
    restore.behave(Behaviour::Sleep(mins(4)));
    let pb = Playbook::new("lag", "Lag")
        .detect(
            lag.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate(restore.arc());
    let e = Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .build()
        .await
        .unwrap();
    let t0 = e.clock().now();
    // run_for ends at 2 minutes with the restore in flight: it finishes the step before returning
    let run = {
        let e = e.clone();
        tokio::spawn(async move { e.run_for(mins(2)).await })
    };
    tokio::time::sleep(mins(1)).await;
    let id = e.open_incidents().await.pop().unwrap();
    e.close(&id, "alice").await.unwrap();
    assert!(!e.incident(&id).await.unwrap().is_closed(), "not mid-step");
    run.await.unwrap().unwrap();
    assert_eq!(
        e.clock().now(),
        t0.plus(mins(4)),
        "returned once the step finished"
    );
    assert_eq!(restore.applied(), 1);
    let inc = e.incident(&id).await.unwrap();
    assert!(inc.is_closed());
    assert_eq!(
        step_events(&inc),
        vec![
            (t0, "started flink.restore".to_string()),
            (t0.plus(mins(4)), "finished flink.restore true".to_string()),
            (t0.plus(mins(4)), "closed".to_string()),
        ]
    );
}

/// A playbook on `g` (firing at once) running `steps` in order, on through failures, paging Kafka SME
/// (SLA 30 minutes).
fn paging_playbook(g: &Gauge, steps: &[&Recorder]) -> Playbook {
    let mut pb = Playbook::new("lag", "Lag")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .escalate_to("Kafka SME")
        .recovery_deadline(hours(4))
        .continue_after_failure();
    for s in steps {
        pb = pb.mitigate(s.arc());
    }
    pb
}

#[tokio::test(start_paused = true)]
async fn an_acknowledgement_made_while_a_step_is_in_flight_stops_the_earlier_page() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let fails = Recorder::new("connect.restart", Risk::Safe, vec![kafka()]);
    fails.behave(Behaviour::FailPermanent);
    let flink = Target::new("flink", "flink-main"); // another target: no shared cool-down
    let slow = Recorder::new("flink.restore", Risk::Safe, vec![flink]);
    slow.behave(Behaviour::Sleep(mins(4)));
    let pager = Pager::default();
    let e = engine(
        Runbook::new("t").playbook(paging_playbook(&g, &[&fails, &slow])),
        &pager,
    )
    .await;
    let run = {
        let e = e.clone();
        tokio::spawn(async move { e.run_for(mins(45)).await })
    };
    tokio::time::sleep(mins(1)).await;
    assert_eq!(
        pager.roles(),
        vec!["Kafka SME"],
        "paged for the failed step"
    );
    let id = e.open_incidents().await.pop().unwrap();
    e.acknowledge(&id, "alice").await.unwrap(); // while flink.restore is in flight
    run.await.unwrap().unwrap();
    assert_eq!(
        pager.roles(),
        vec!["Kafka SME"],
        "acknowledged: no re-escalation when the SLA passes"
    );
    // and the paging system heard the acknowledgement, to the role it paged
    let acks: Vec<_> = pager
        .all()
        .into_iter()
        .filter(|n| n.action == rb_core::escalation::NotifyAction::Acknowledge)
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        (acks[0].incident.as_str(), acks[0].role.as_str()),
        (id.as_str(), "Kafka SME")
    );
}

#[tokio::test(start_paused = true)]
async fn an_acknowledgement_does_not_silence_a_page_sent_after_it() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let flink = Target::new("flink", "flink-main"); // another target: no shared cool-down
    let slow = Recorder::new("flink.restore", Risk::Safe, vec![flink]);
    slow.behave(Behaviour::Sleep(mins(4)));
    let fails = Recorder::new("connect.restart", Risk::Safe, vec![kafka()]);
    fails.behave(Behaviour::FailPermanent);
    let pager = Pager::default();
    let e = engine(
        Runbook::new("t").playbook(paging_playbook(&g, &[&slow, &fails])),
        &pager,
    )
    .await;
    let run = {
        let e = e.clone();
        tokio::spawn(async move { e.run_for(mins(45)).await })
    };
    tokio::time::sleep(mins(1)).await;
    let id = e.open_incidents().await.pop().unwrap();
    e.acknowledge(&id, "alice").await.unwrap(); // before anyone was paged
    run.await.unwrap().unwrap();
    assert_eq!(
        pager.roles(),
        vec!["Kafka SME", "Data Platform On-call"],
        "the page for the failure at 4 minutes was never acknowledged"
    );
    assert_eq!(pager.all()[1].reason, EscalationReason::SlaMissed);
}

#[tokio::test(start_paused = true)]
async fn a_restart_under_a_still_firing_symptom_is_not_a_refiring() {
    let journal = Arc::new(rb_core::MemoryJournal::new());
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let build = |j: Arc<rb_core::MemoryJournal>| {
        Engine::builder(
            Runbook::new("t").playbook(
                Playbook::new("p", "P")
                    .detect(
                        g.arc(),
                        Schedule::every(secs(30)),
                        metric("records_lag_max").above(5_000.0),
                    )
                    .stable_for(mins(10)),
            ),
        )
        .clock(clock())
        .journal(j)
        .build()
    };
    let e = build(journal.clone()).await.unwrap();
    e.tick().await.unwrap();
    let id = e.open_incidents().await.pop().unwrap();
    drop(e);
    let e = build(journal.clone()).await.unwrap();
    run(&e, mins(1), secs(30)).await;
    drop(e);
    let e = build(journal).await.unwrap();
    run(&e, mins(1), secs(30)).await;
    let inc = e.incident(&id).await.unwrap();
    let refired = inc
        .timeline
        .iter()
        .filter(|e| matches!(e.event, Event::Refired { .. }))
        .count();
    assert_eq!(
        refired, 0,
        "still firing across two restarts: nothing fired again"
    );
}
