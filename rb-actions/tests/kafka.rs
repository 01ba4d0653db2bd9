//! Adding partitions: the logic through a scripted admin, the rdkafka adapter against FakeKafka's
//! librdkafka mock cluster (metadata only: the mock has no CreatePartitions), the envelope through the
//! engine. The adapter's CreatePartitions runs on a real broker in peers/tests/actions_kafka.rs.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rb_actions::kafka::{AddPartitions, AdminError, PartitionAdmin, PartitionGoal, RdKafkaAdmin};
use rb_core::journal::Event;
use rb_core::policy::{AutoApprove, CallbackApprover, Decision};
use rb_core::prelude::*;
use rb_core::{ErrorKind, Verification};
use rb_testkit::doubles::GaugeProbe;
use rb_testkit::kafka::FakeKafka;

/// Topics and their partition counts; scripted failures of the next CreatePartitions.
#[derive(Debug, Default)]
struct Admin {
    topics: Mutex<BTreeMap<String, u32>>,
    fail_next: Mutex<Option<AdminError>>,
    /// When set, a failing CreatePartitions still happened (its answer was lost).
    happened_anyway: Mutex<bool>,
    creates: Mutex<Vec<(String, u32)>>,
}

impl Admin {
    fn with(topic: &str, n: u32) -> Arc<Self> {
        let a = Arc::new(Self::default());
        a.topics.lock().unwrap().insert(topic.into(), n);
        a
    }
    fn fail(&self, kind: ErrorKind, happened: bool) {
        *self.fail_next.lock().unwrap() = Some(AdminError {
            kind,
            message: "scripted".into(),
        });
        *self.happened_anyway.lock().unwrap() = happened;
    }
    fn count(&self, t: &str) -> Option<u32> {
        self.topics.lock().unwrap().get(t).copied()
    }
}

#[async_trait]
impl PartitionAdmin for Admin {
    fn endpoint(&self) -> &str {
        "127.0.0.1:9092"
    }
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>, AdminError> {
        Ok(self.count(topic))
    }
    async fn create_partitions(&self, topic: &str, total: u32) -> Result<(), AdminError> {
        self.creates.lock().unwrap().push((topic.into(), total));
        let fail = self.fail_next.lock().unwrap().take();
        if fail.is_none() || *self.happened_anyway.lock().unwrap() {
            self.topics.lock().unwrap().insert(topic.into(), total);
        }
        match fail {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn target() -> Target {
    Target::new("kafka", "kafka-main")
}

fn ctx(topic: &str) -> ActionContext {
    ActionContext::detached(Clock::system(), secs(30)).with_key(labels(&[("topic", topic)]))
}

#[tokio::test]
async fn the_plan_is_destructive_irreversible_for_a_human_and_says_why() {
    let admin = Admin::with("orders", 6);
    let r = AddPartitions::new(admin.clone(), target(), PartitionGoal::Factor(2));
    assert_eq!(r.risk(), Risk::Destructive);
    assert!(r.requires_human());
    let p = r.plan(&ctx("orders")).await.unwrap();
    assert!(!p.reversible);
    assert_eq!(p.effective_risk(Risk::Safe), Risk::Destructive);
    assert!(
        p.description.contains("orders: 6 → 12"),
        "{}",
        p.description
    );
    assert!(p.description.contains("IRREVERSIBLE") && p.description.contains("Keys are re-mapped"));
    assert!(
        admin.creates.lock().unwrap().is_empty(),
        "planning changes nothing"
    );

    let o = r.apply(&p, &ctx("orders")).await.unwrap();
    assert_eq!(
        *admin.creates.lock().unwrap(),
        vec![("orders".to_string(), 12)]
    );
    assert!(matches!(
        r.verify(&p, &o, &ctx("orders")).await.unwrap(),
        Verification::Succeeded { .. }
    ));
    // a second plan finds the goal reached... for a total goal
    let total = AddPartitions::new(admin.clone(), target(), PartitionGoal::Total(12));
    assert!(total
        .plan(&ctx("orders"))
        .await
        .unwrap()
        .nothing_to_do
        .is_some());
    // applying the same plan twice asks for the same total: no change
    total.apply(&p, &ctx("orders")).await.unwrap();
    assert_eq!(admin.count("orders"), Some(12));
}

#[tokio::test]
async fn goals_are_capped_and_bad_input_is_typed() {
    let admin = Admin::with("orders", 6);
    let r = AddPartitions::new(admin.clone(), target(), PartitionGoal::Add(100)).max_partitions(24);
    assert_eq!(r.plan(&ctx("orders")).await.unwrap().params["to"], 24);
    assert_eq!(PartitionGoal::Total(3).total(6, 100), 3);
    let none = AddPartitions::new(admin.clone(), target(), PartitionGoal::Total(3));
    assert!(none
        .plan(&ctx("orders"))
        .await
        .unwrap()
        .nothing_to_do
        .is_some());
    assert_eq!(
        r.plan(&ctx("nope")).await.unwrap_err().kind(),
        ErrorKind::Invalid
    );
    let bare = ActionContext::detached(Clock::system(), secs(30));
    assert_eq!(r.plan(&bare).await.unwrap_err().kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn a_lost_answer_is_outcome_unknown_and_a_done_retry_is_success() {
    let admin = Admin::with("orders", 6);
    let r = AddPartitions::new(admin.clone(), target(), PartitionGoal::Total(8));
    let p = r.plan(&ctx("orders")).await.unwrap();
    admin.fail(ErrorKind::Timeout, true);
    assert_eq!(
        r.apply(&p, &ctx("orders")).await.unwrap_err().kind(),
        ErrorKind::OutcomeUnknown
    );
    // the retry is answered INVALID_PARTITIONS (already 8): that is the plan done
    admin.fail(ErrorKind::Invalid, false);
    let o = r.apply(&p, &ctx("orders")).await.unwrap();
    assert!(o.summary.contains("already has 8"));
    // refused for real
    let admin = Admin::with("orders", 6);
    let r = AddPartitions::new(admin.clone(), target(), PartitionGoal::Total(8));
    admin.fail(ErrorKind::Unauthorized, false);
    assert_eq!(
        r.apply(&p, &ctx("orders")).await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    assert_eq!(admin.count("orders"), Some(6));
}

#[tokio::test]
async fn the_rdkafka_adapter_reads_counts_from_the_mock_cluster_and_types_its_errors() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 6, 1).unwrap();
    let admin = RdKafkaAdmin::new(fake.bootstrap_servers(), &[], Duration::from_secs(2)).unwrap();
    assert_eq!(admin.partition_count("orders").await.unwrap(), Some(6));
    assert_eq!(admin.partition_count("no-such-topic").await.unwrap(), None);
    // the mock cluster has no CreatePartitions: it never answers — a timeout (which the remediation
    // reports as outcome unknown), never a panic, never "done"
    let e = admin.create_partitions("orders", 12).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert_eq!(fake.partition_count("orders").unwrap(), 6);
    // the remediation plans through the adapter
    let r = AddPartitions::new(Arc::new(admin), target(), PartitionGoal::Factor(2));
    assert_eq!(r.plan(&ctx("orders")).await.unwrap().params["to"], 12);
}

fn playbook(admin: Arc<Admin>) -> Runbook {
    let lag = GaugeProbe::new(target(), "records_lag_max", 50_000.0)
        .with_labels(labels(&[("topic", "orders")]));
    Runbook::new("t").playbook(
        Playbook::new("kafka-backlog", "Kafka backlog grows")
            .detect(
                lag.arc(),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(5_000.0),
            )
            .incident_per(&["topic"])
            .mitigate(Arc::new(AddPartitions::new(
                admin,
                target(),
                PartitionGoal::Factor(2),
            )))
            .escalate_to("Kafka SME"),
    )
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_automatic_approval_never_adds_partitions_a_person_does() {
    for (human, allow_destructive) in [(false, false), (false, true), (true, false)] {
        let admin = Admin::with("orders", 6);
        let approver: Arc<dyn rb_core::policy::Approver> = if human {
            Arc::new(CallbackApprover::new(mins(10), |_req| async {
                Decision::Granted {
                    by: "kafka-sme".into(),
                }
            }))
        } else {
            Arc::new(AutoApprove)
        };
        let policy = SafetyPolicy {
            auto_approve_destructive: allow_destructive,
            ..SafetyPolicy::default()
        };
        let e = Engine::builder(playbook(admin.clone()))
            .clock(Clock::starting_at(Timestamp(1_795_590_000_000)))
            .approver(approver)
            .policy(policy)
            .build()
            .await
            .unwrap();
        for _ in 0..4 {
            e.tick().await.unwrap();
            tokio::time::sleep(secs(30)).await;
        }
        let creates = admin.creates.lock().unwrap().clone();
        assert_eq!(
            creates.len(),
            usize::from(human),
            "human {human}, allow {allow_destructive}"
        );
        let inc = &e.incidents().await.unwrap()[0];
        if human {
            assert_eq!(admin.count("orders"), Some(12));
        } else {
            assert!(inc.timeline.iter().any(|x| matches!(&x.event, Event::Refused { reason, .. } if reason.contains("human"))),
                "{:?}", inc.timeline.iter().map(|x| &x.event).collect::<Vec<_>>());
        }
    }
}
