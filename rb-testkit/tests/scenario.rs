//! The harness, the virtual clock, the doubles and the mocks drive a real engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use rb_core::journal::Event;
use rb_core::policy::DenyAll;
use rb_core::prelude::*;
use rb_core::{ErrorKind, Phase};
use rb_testkit::clock::VirtualClock;
use rb_testkit::doubles::{GaugeProbe, RecordingRemediation, Script};
use rb_testkit::mocks::{MockNotifier, MockProbe, MockRemediation};
use rb_testkit::scenario::{Scenario, SCENARIO_EPOCH};

fn kafka() -> Target {
    Target::new("kafka", "kafka-main")
}

fn backlog(lag: &GaugeProbe, rems: &[&RecordingRemediation]) -> Runbook {
    let mut pb = Playbook::new("kafka-backlog", "Kafka backlog grows")
        .service("orders")
        .detect(
            lag.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max")
                .above(5_000.0)
                .for_at_least(mins(2))
                .clears_below(1_000.0),
        )
        .stable_for(mins(5))
        .escalate_to("Kafka SME");
    for r in rems {
        pb = pb.mitigate(r.arc());
    }
    Runbook::new("lake").playbook(pb)
}

#[tokio::test(start_paused = true)]
async fn a_backlog_is_detected_mitigated_once_and_recovers_on_the_virtual_clock() {
    let lag = GaugeProbe::new(kafka(), "records_lag_max", 12_000.0);
    let rescale = RecordingRemediation::new(
        "flink.rescale",
        Risk::Disruptive,
        vec![Target::new("flink", "flink-main")],
    );
    let run = Scenario::new(backlog(&lag, &[&rescale]))
        .start()
        .await
        .unwrap();
    let took = run
        .run_until("an incident to open", mins(10), |incs| !incs.is_empty())
        .await;
    assert_eq!(
        took,
        mins(2),
        "the for-duration is 2 minutes of virtual time"
    );
    lag.set(300.0);
    run.run_for(mins(6)).await;
    let inc = run.incident("kafka-backlog").await;
    inc.expect_phases_completed()
        .expect_recovered()
        .expect_applied_in_order(&["flink.rescale"])
        .expect_violated("records_lag_max", 12_000.0)
        .expect_evidence_from("testkit.gauge")
        .expect_no_escalation();
    assert_eq!(inc.incident.record.opened_at, SCENARIO_EPOCH.plus(mins(2)));
    assert_eq!(rescale.applied(), 1);
    assert_eq!(
        rescale.calls().iter().map(|c| c.method).collect::<Vec<_>>(),
        vec!["plan", "apply"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_scenario_gives_the_same_timeline_every_time() {
    async fn once() -> String {
        let lag = GaugeProbe::new(kafka(), "records_lag_max", 12_000.0);
        let r = RecordingRemediation::new("flink.rescale", Risk::Safe, vec![kafka()]);
        let run = Scenario::new(backlog(&lag, &[&r])).start().await.unwrap();
        run.run_for(mins(3)).await;
        lag.set(0.0);
        run.run_for(mins(7)).await;
        run.timeline().await
    }
    let a = once().await;
    let b = once().await;
    assert_eq!(a, b);
    assert!(a.contains("00:02:00  kafka-backlog"), "{a}");
}

#[tokio::test(start_paused = true)]
async fn dry_run_plans_and_refusals_are_visible_to_assertions() {
    let lag = GaugeProbe::new(kafka(), "records_lag_max", 12_000.0);
    let r = RecordingRemediation::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let run = Scenario::new(backlog(&lag, &[&r]))
        .dry_run()
        .start()
        .await
        .unwrap();
    run.run_for(mins(3)).await;
    run.incident("kafka-backlog")
        .await
        .expect_planned("flink.rescale")
        .expect_nothing_applied();
    assert!(r.calls().iter().all(|c| c.method == "plan" && c.dry_run));

    let r = RecordingRemediation::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let run = Scenario::new(backlog(&lag, &[&r]))
        .approver(Arc::new(DenyAll))
        .start()
        .await
        .unwrap();
    run.run_for(mins(3)).await;
    run.incident("kafka-backlog")
        .await
        .expect_refused("flink.rescale", "approval denied")
        .expect_escalated_to("Kafka SME");
    assert_eq!(run.pages().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn failure_messages_show_expected_actual_and_the_timeline() {
    let lag = GaugeProbe::new(kafka(), "records_lag_max", 12_000.0);
    let r = RecordingRemediation::new("flink.rescale", Risk::Safe, vec![kafka()]);
    r.script(Script::Fail(ErrorKind::Rejected));
    let run = Scenario::new(backlog(&lag, &[&r])).start().await.unwrap();
    run.run_for(mins(3)).await;
    let inc = run.incident("kafka-backlog").await;
    // the incident holds typed facts (`dyn Any`): it is not UnwindSafe, and nothing is used after
    // the panic but its message
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        inc.expect_applied("flink.rescale");
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("expected flink.rescale to be applied, but applied were []"),
        "{msg}"
    );
    assert!(msg.contains("--- timeline ---"), "{msg}");
    assert!(msg.contains("FAILED: remediation flink.rescale"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_hangs_is_cut_at_its_deadline_and_is_unknown() {
    let lag = GaugeProbe::new(kafka(), "records_lag_max", 12_000.0);
    lag.hang();
    let run = Scenario::new(backlog(&lag, &[])).start().await.unwrap();
    run.run_for(mins(5)).await;
    run.expect_no_incident("kafka-backlog").await;
    let status = run.engine().status().await;
    assert!(
        matches!(&status[0].verdict, Verdict::Unknown { why } if why.contains("no answer within")),
        "{status:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_virtual_clock_reads_wall_clock_time_from_tokio_time() {
    let vc = VirtualClock::pause();
    assert_eq!(vc.now(), SCENARIO_EPOCH);
    vc.advance(hours(3)).await;
    assert_eq!(vc.now(), SCENARIO_EPOCH.plus(hours(3)));
    assert_eq!(vc.now().rfc3339(), "2026-01-01T03:00:00.000Z");
}

#[tokio::test(start_paused = true)]
async fn mocks_plug_into_the_engine() {
    let target = kafka();
    let mut probe = MockProbe::new();
    probe.expect_id().return_const("mock.lag".to_string());
    probe.expect_target().return_const(target.clone());
    probe.expect_observe().returning(|ctx| {
        Ok(
            Observation::new("mock.lag", "kafka-main", ctx.now()).sample(
                "lag",
                Default::default(),
                9e9,
            ),
        )
    });
    let mut rem = MockRemediation::new();
    rem.expect_id().return_const("mock.fix".to_string());
    rem.expect_risk().return_const(Risk::Safe);
    rem.expect_idempotent().return_const(false);
    let t2 = target.clone();
    rem.expect_plan()
        .times(1)
        .returning(move |_| Ok(Plan::new("mock.fix", vec![t2.clone()], "fix it")));
    rem.expect_apply()
        .times(1)
        .returning(|_, _| Ok(Outcome::new("fixed")));
    rem.expect_verify().times(1).returning(|_, _, _| {
        Ok(Verification::Succeeded {
            evidence: "ok".into(),
        })
    });
    let mut notifier = MockNotifier::new();
    notifier.expect_notify().times(0);
    let runbook = Runbook::new("m").playbook(
        Playbook::new("p", "P")
            .detect(
                Arc::new(probe),
                Schedule::every(secs(30)),
                metric("lag").above(1.0),
            )
            .mitigate(Arc::new(rem)),
    );
    let engine = Engine::builder(runbook)
        .clock(VirtualClock::pause().clock())
        .notifier(Arc::new(notifier))
        .build()
        .await
        .unwrap();
    engine.run_for(mins(1)).await.unwrap();
    let inc = engine.incidents().await.unwrap().remove(0);
    assert_eq!(inc.applied_actions(), vec!["mock.fix"]);
    assert!(inc.phases.contains(&Phase::Recover));
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(&e.event, Event::Verified { .. })));
}
