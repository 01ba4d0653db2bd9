#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The safety envelope, one policy at a time, through the engine.

mod common;

use std::sync::Arc;

use common::*;
use rb_core::journal::Event;
use rb_core::policy::{
    AutoApprove, BlastRadius, Budget, CallbackApprover, Decision, DenyAll, SafetyPolicy,
};
use rb_core::prelude::*;
use rb_core::Incident;

struct Rig {
    engine: Engine,
    gauges: Vec<Gauge>,
    pager: Pager,
}

/// `n` playbooks, each watching its own gauge (already over the threshold, no for-duration), each
/// running `rems[i]`.
async fn rig(
    rems: Vec<Vec<Arc<dyn Remediation>>>,
    policy: SafetyPolicy,
    approver: Arc<dyn rb_core::policy::Approver>,
) -> Rig {
    let pager = Pager::default();
    let mut rb = Runbook::new("t");
    let mut gauges = Vec::new();
    for (i, r) in rems.into_iter().enumerate() {
        let g = Gauge::new(Target::new("kafka", format!("kafka-{i}")), "lag", 10_000.0);
        let mut pb = Playbook::new(format!("p{i}"), format!("P{i}"))
            .detect(
                g.arc(),
                Schedule::every(secs(30)),
                metric("lag").above(5_000.0),
            )
            .escalate_to("Kafka SME");
        for x in r {
            pb = pb.mitigate(x);
        }
        rb = rb.playbook(pb);
        gauges.push(g);
    }
    let engine = Engine::builder(rb)
        .clock(clock())
        .policy(policy)
        .approver(approver)
        .notifier(Arc::new(pager.clone()))
        .build()
        .await
        .unwrap();
    Rig {
        engine,
        gauges,
        pager,
    }
}

fn refusals(inc: &Incident) -> Vec<String> {
    inc.timeline
        .iter()
        .filter_map(|e| match &e.event {
            Event::Refused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

async fn only_incident(e: &Engine) -> Incident {
    let all = e.incidents().await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

fn quiet() -> SafetyPolicy {
    SafetyPolicy {
        cooldown: secs(0),
        ..SafetyPolicy::default()
    }
}

#[tokio::test(start_paused = true)]
async fn dry_run_plans_and_applies_nothing() {
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let r = rig(
        vec![vec![rem.arc()]],
        SafetyPolicy::dry_run(),
        Arc::new(AutoApprove),
    )
    .await;
    r.engine.tick().await.unwrap();
    assert_eq!(rem.applied(), 0);
    assert_eq!(rem.plans.load(std::sync::atomic::Ordering::SeqCst), 1);
    let inc = only_incident(&r.engine).await;
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(&e.event, Event::Planned { dry_run: true, .. })));
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(&e.event, Event::Skipped { reason, .. } if reason.contains("dry-run"))));
    assert!(!inc
        .timeline
        .iter()
        .any(|e| matches!(&e.event, Event::Started { .. })));
}

#[tokio::test(start_paused = true)]
async fn kill_switch_refuses_every_action() {
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let r = rig(vec![vec![rem.arc()]], quiet(), Arc::new(AutoApprove)).await;
    r.engine.kill_switch().engage();
    r.engine.tick().await.unwrap();
    assert_eq!(rem.applied(), 0);
    let inc = only_incident(&r.engine).await;
    assert_eq!(refusals(&inc), vec!["the kill switch is engaged"]);
    assert_eq!(r.pager.roles(), vec!["Kafka SME"], "a refusal escalates");
}

#[tokio::test(start_paused = true)]
async fn approval_granted_denied_and_timed_out() {
    // granted
    let rem = Recorder::new("cassandra.restart", Risk::Disruptive, vec![kafka()]);
    let r = rig(vec![vec![rem.arc()]], quiet(), Arc::new(AutoApprove)).await;
    r.engine.tick().await.unwrap();
    assert_eq!(rem.applied(), 1);
    let inc = only_incident(&r.engine).await;
    assert!(inc.timeline.iter().any(|e| matches!(
        &e.event,
        Event::Approval {
            decision: Decision::Granted { .. },
            ..
        }
    )));

    // denied (the default approver denies)
    let rem = Recorder::new("cassandra.restart", Risk::Disruptive, vec![kafka()]);
    let r = rig(vec![vec![rem.arc()]], quiet(), Arc::new(DenyAll)).await;
    r.engine.tick().await.unwrap();
    assert_eq!(rem.applied(), 0);
    assert!(refusals(&only_incident(&r.engine).await)[0].starts_with("approval denied by policy"));

    // a safe action needs no approval even with DenyAll
    let safe = Recorder::new("flink.savepoint", Risk::Safe, vec![kafka()]);
    let r = rig(vec![vec![safe.arc()]], quiet(), Arc::new(DenyAll)).await;
    r.engine.tick().await.unwrap();
    assert_eq!(safe.applied(), 1);

    // timed out: the human never answers within 10 minutes
    let rem = Recorder::new("kafka.add_partitions", Risk::Destructive, vec![kafka()]);
    let slow = CallbackApprover::new(mins(10), |_req| async {
        tokio::time::sleep(hours(24)).await;
        Decision::Granted {
            by: "too late".into(),
        }
    });
    let r = rig(vec![vec![rem.arc()]], quiet(), Arc::new(slow)).await;
    let started = tokio::time::Instant::now();
    r.engine.tick().await.unwrap();
    assert_eq!(
        tokio::time::Instant::now(),
        started,
        "the tick does not wait for a human"
    );
    let inc = only_incident(&r.engine).await;
    assert!(inc.timeline.iter().any(|e| matches!(
        &e.event,
        Event::AwaitingApproval {
            step: 0,
            timeout_secs: 600,
            ..
        }
    )));
    assert!(refusals(&inc).is_empty(), "still waiting");
    tokio::time::sleep(mins(10) + secs(1)).await;
    r.engine.tick().await.unwrap();
    assert_eq!(rem.applied(), 0);
    let inc = only_incident(&r.engine).await;
    assert!(inc.timeline.iter().any(|e| matches!(
        &e.event,
        Event::Approval {
            decision: Decision::TimedOut,
            ..
        }
    )));
    assert_eq!(refusals(&inc), vec!["no approval within 10m"]);
}

#[tokio::test(start_paused = true)]
async fn cool_down_with_backoff_per_target() {
    let target = Target::new("flink", "flink-main");
    let rem = Recorder::new("flink.restart", Risk::Safe, vec![target.clone()]);
    let policy = SafetyPolicy {
        cooldown: mins(5),
        backoff_factor: 2,
        max_cooldown: mins(60),
        ..SafetyPolicy::default()
    };
    let r = rig(
        vec![vec![rem.arc()], vec![rem.arc()]],
        policy,
        Arc::new(AutoApprove),
    )
    .await;
    // two playbooks fire at once, both acting on flink-main: the second is cooling down
    r.engine.tick().await.unwrap();
    assert_eq!(rem.applied(), 1);
    let all = r.engine.incidents().await.unwrap();
    let refused: Vec<String> = all.iter().flat_map(refusals).collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].contains("flink/flink-main is cooling down"),
        "{}",
        refused[0]
    );
    assert!(refused[0].contains("cool-down 5m"), "{}", refused[0]);
}

async fn cycle(e: &Engine, g: &Gauge) {
    e.tick().await.unwrap(); // opens and applies
    g.set(0.0);
    run(e, mins(6), secs(30)).await; // recovers (5 min window)
    g.set(10_000.0);
}

#[tokio::test(start_paused = true)]
async fn restart_backoff_doubles_the_cool_down() {
    let target = Target::new("flink", "flink-main");
    let rem = Recorder::new("flink.restart", Risk::Safe, vec![target.clone()]);
    let policy = SafetyPolicy {
        cooldown: mins(5),
        backoff_factor: 2,
        ..SafetyPolicy::default()
    };
    let r = rig(vec![vec![rem.arc()]], policy, Arc::new(AutoApprove)).await;
    let g = &r.gauges[0];
    cycle(&r.engine, g).await; // action #1 at t=0, closed after the 5 min window
    tokio::time::sleep(secs(30)).await;
    cycle(&r.engine, g).await; // action #2 at ~6m30: past the 5m cool-down
    assert_eq!(rem.applied(), 2);
    tokio::time::sleep(secs(30)).await;
    r.engine.tick().await.unwrap(); // ~13m: cool-down is now 10m after 2 recent actions; last at ~6m30
    assert_eq!(rem.applied(), 2);
    let all = r.engine.incidents().await.unwrap();
    let refused: Vec<String> = all.iter().flat_map(refusals).collect();
    assert!(
        refused.last().unwrap().contains("cool-down 10m"),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn global_and_per_target_rate_budgets() {
    let a = Recorder::new("a", Risk::Safe, vec![Target::new("kafka", "kafka-0")]);
    let b = Recorder::new("b", Risk::Safe, vec![Target::new("kafka", "kafka-1")]);
    let policy = SafetyPolicy {
        cooldown: secs(0),
        global_budget: Budget::new(1, hours(1)),
        ..SafetyPolicy::default()
    };
    let r = rig(
        vec![vec![a.arc()], vec![b.arc()]],
        policy,
        Arc::new(AutoApprove),
    )
    .await;
    r.engine.tick().await.unwrap();
    assert_eq!(a.applied() + b.applied(), 1);
    let refused: Vec<String> = r
        .engine
        .incidents()
        .await
        .unwrap()
        .iter()
        .flat_map(refusals)
        .collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].starts_with("global rate budget spent: 1 actions in the last 1h"),
        "{}",
        refused[0]
    );

    let t = Target::new("kafka", "kafka-0");
    let x = Recorder::new("x", Risk::Safe, vec![t.clone()]);
    let y = Recorder::new("y", Risk::Safe, vec![t.clone()]);
    let policy = SafetyPolicy {
        cooldown: secs(0),
        target_budget: Budget::new(1, hours(1)),
        ..SafetyPolicy::default()
    };
    let r = rig(vec![vec![x.arc(), y.arc()]], policy, Arc::new(AutoApprove)).await;
    r.engine.tick().await.unwrap();
    assert_eq!((x.applied(), y.applied()), (1, 0));
    let refused = refusals(&only_incident(&r.engine).await);
    assert!(
        refused[0].starts_with("rate budget of kafka/kafka-0 spent"),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_concurrency_one_remediation_per_target_at_a_time() {
    let t = Target::new("flink", "flink-main");
    let slow = Recorder::new("flink.rescale", Risk::Safe, vec![t.clone()]);
    slow.behave(Behaviour::Sleep(mins(2)));
    let policy = SafetyPolicy {
        cooldown: secs(0),
        target_lock_wait: mins(10),
        ..SafetyPolicy::default()
    };
    let r = rig(
        vec![vec![slow.arc()], vec![slow.arc()]],
        policy,
        Arc::new(AutoApprove),
    )
    .await;
    let started = tokio::time::Instant::now();
    r.engine.tick().await.unwrap();
    assert_eq!(slow.applied(), 2);
    assert_eq!(
        slow.max_running.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "never two at once on one target"
    );
    assert_eq!(
        tokio::time::Instant::now() - started,
        mins(4),
        "the second waited for the first"
    );

    // different targets run concurrently
    let a = Recorder::new("a", Risk::Safe, vec![Target::new("flink", "f1")]);
    let b = Recorder::new("a", Risk::Safe, vec![Target::new("flink", "f2")]);
    a.behave(Behaviour::Sleep(mins(2)));
    b.behave(Behaviour::Sleep(mins(2)));
    let r = rig(
        vec![vec![a.arc()], vec![b.arc()]],
        quiet(),
        Arc::new(AutoApprove),
    )
    .await;
    let started = tokio::time::Instant::now();
    r.engine.tick().await.unwrap();
    assert_eq!(tokio::time::Instant::now() - started, mins(2));

    // a holder longer than the wait: refused with the reason
    let slow = Recorder::new("flink.rescale", Risk::Safe, vec![t.clone()]);
    slow.behave(Behaviour::Sleep(mins(20)));
    let policy = SafetyPolicy {
        cooldown: secs(0),
        target_lock_wait: mins(1),
        apply_timeout: mins(30),
        ..SafetyPolicy::default()
    };
    let r = rig(
        vec![vec![slow.arc()], vec![slow.arc()]],
        policy,
        Arc::new(AutoApprove),
    )
    .await;
    r.engine.tick().await.unwrap();
    assert_eq!(slow.applied(), 1);
    let refused: Vec<String> = r
        .engine
        .incidents()
        .await
        .unwrap()
        .iter()
        .flat_map(refusals)
        .collect();
    assert_eq!(
        refused,
        vec!["another remediation held flink/flink-main for longer than 1m"]
    );
}

#[derive(Debug)]
struct Fleet {
    targets: Vec<Target>,
}

#[async_trait]
impl Remediation for Fleet {
    fn id(&self) -> &str {
        "cassandra.restart"
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        Ok(Plan::new(
            "cassandra.restart",
            self.targets.clone(),
            "restart nodes",
        ))
    }
    async fn apply(&self, _plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        Ok(Outcome::new("restarted"))
    }
}

#[tokio::test(start_paused = true)]
async fn blast_radius_caps_and_the_empty_set_is_an_error() {
    let nodes: Vec<Target> = (1..=4)
        .map(|i| Target::new("cassandra-node", format!("cass-{i}")))
        .collect();
    for (acting, expect) in [
        (
            vec![],
            Some("names no target: an empty target set is an error"),
        ),
        (nodes[..1].to_vec(), None),
        (
            nodes[..2].to_vec(),
            Some("acts on 2 of 4 cassandra-node targets (50%)"),
        ),
        (
            nodes.clone(),
            Some("acts on 4 targets; the blast radius allows at most 3"),
        ),
    ] {
        let pager = Pager::default();
        let g = Gauge::new(Target::new("cassandra", "ring"), "dn", 1.0);
        let mut rb = Runbook::new("t").playbook(
            Playbook::new("cass", "Cassandra node down")
                .detect(g.arc(), Schedule::every(secs(30)), metric("dn").above(0.0))
                .mitigate(Arc::new(Fleet {
                    targets: acting.clone(),
                }))
                .escalate_to("Cassandra SME"),
        );
        for n in &nodes {
            rb = rb.target(n.clone());
        }
        let e = Engine::builder(rb)
            .clock(clock())
            .policy(SafetyPolicy {
                blast_radius: BlastRadius {
                    max_targets: 3,
                    max_fraction: 0.34,
                },
                ..quiet()
            })
            .notifier(Arc::new(pager.clone()))
            .build()
            .await
            .unwrap();
        e.tick().await.unwrap();
        let inc = only_incident(&e).await;
        match expect {
            None => assert_eq!(inc.applied_actions(), vec!["cassandra.restart"]),
            Some(msg) => {
                let r = refusals(&inc);
                assert!(
                    r.len() == 1 && r[0].contains(msg),
                    "{r:?} should contain {msg}"
                );
                assert!(inc.applied_actions().is_empty());
                assert_eq!(pager.roles(), vec!["Cassandra SME"]);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn at_most_once_per_incident_step_and_never_retry_a_non_idempotent_action() {
    let rem = Recorder::new("connect.restart", Risk::Safe, vec![kafka()]);
    rem.behave(Behaviour::FailTransient);
    let r = rig(vec![vec![rem.arc()]], quiet(), Arc::new(AutoApprove)).await;
    run(&r.engine, mins(30), secs(30)).await;
    assert_eq!(
        rem.applied(),
        1,
        "a non-idempotent action is never retried, not even on a transient error"
    );
    let inc = only_incident(&r.engine).await;
    assert!(inc.timeline.iter().any(|e| matches!(&e.event, Event::Finished { ok: false, error: Some(err), .. } if err.contains("connection refused"))));

    let idem = Recorder::new("connect.resume", Risk::Safe, vec![kafka()]).idempotent();
    idem.behave(Behaviour::FailTransient);
    let r = rig(vec![vec![idem.arc()]], quiet(), Arc::new(AutoApprove)).await;
    run(&r.engine, mins(30), secs(30)).await;
    assert_eq!(
        idem.applied(),
        3,
        "an idempotent action is retried twice on transient errors, then given up"
    );

    let perm = Recorder::new("connect.resume", Risk::Safe, vec![kafka()]).idempotent();
    perm.behave(Behaviour::FailPermanent);
    let r = rig(vec![vec![perm.arc()]], quiet(), Arc::new(AutoApprove)).await;
    r.engine.tick().await.unwrap();
    assert_eq!(perm.applied(), 1, "a permanent error is not retried");
}

#[tokio::test(start_paused = true)]
async fn a_failed_step_stops_the_later_ones_unless_told_otherwise() {
    let a = Recorder::new("a", Risk::Safe, vec![kafka()]);
    let b = Recorder::new("b", Risk::Safe, vec![kafka()]);
    a.behave(Behaviour::FailPermanent);
    let r = rig(vec![vec![a.arc(), b.arc()]], quiet(), Arc::new(AutoApprove)).await;
    r.engine.tick().await.unwrap();
    assert_eq!((a.applied(), b.applied()), (1, 0));
    let inc = only_incident(&r.engine).await;
    assert!(inc.timeline.iter().any(|e| matches!(&e.event, Event::Skipped { step: 1, reason, .. } if reason.contains("earlier step"))));
}

#[tokio::test(start_paused = true)]
async fn nobody_is_asked_to_approve_what_the_cool_down_would_refuse() {
    let target = Target::new("flink", "flink-main");
    let rem = Recorder::new("flink.restart", Risk::Disruptive, vec![target]);
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let approver = {
        let asked = asked.clone();
        CallbackApprover::new(mins(10), move |_| {
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Decision::Granted { by: "bob".into() } }
        })
    };
    let policy = SafetyPolicy {
        cooldown: mins(5),
        ..SafetyPolicy::default()
    };
    let r = rig(
        vec![vec![rem.arc()], vec![rem.arc()]],
        policy,
        Arc::new(approver),
    )
    .await;
    r.gauges[1].set(0.0);
    r.engine.tick().await.unwrap(); // playbook 0 restarts flink-main, approved by bob
    assert_eq!(rem.applied(), 1);
    r.gauges[1].set(10_000.0);
    tokio::time::sleep(mins(1)).await;
    r.engine.tick().await.unwrap(); // playbook 1 wants flink-main again, one minute later
    assert_eq!(rem.applied(), 1);
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "bob was not asked the second time"
    );
    let all = r.engine.incidents().await.unwrap();
    assert!(
        refusals(&all[1])[0].contains("cooling down"),
        "{:?}",
        refusals(&all[1])
    );
}
