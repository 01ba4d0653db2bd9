//! rb-actions against the real Kafka 4.x broker and Kafka Connect worker: a FileStream source whose
//! task really FAILED on its configuration (an invalid topic) is refused by the plain restart (a human
//! must fix it), its configuration is fixed, and the restart-after-fix brings it RUNNING; partitions
//! are added to a real topic through the rdkafka adapter and `kafka-topics --describe` agrees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_actions::kafka::{AddPartitions, PartitionAdmin, PartitionGoal, RdKafkaAdmin};
use rb_actions::kafka_connect::KafkaConnect as Connect;
use rb_core::{labels, ActionContext, ErrorKind, Remediation, Target, Verification};
use rb_peers::kafka::{Kafka, KafkaConnect};
use rb_peers::PeerEnv;
use rb_probes::transport::ReqwestClient;

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn ctx(label: &str, value: &str) -> ActionContext {
    ActionContext::detached(rb_core::time::Clock::system(), Duration::from_secs(60))
        .with_key(labels(&[(label, value)]))
}

/// Verify until it succeeds or `within` passes (what the engine does with `verify_within`).
async fn verify_until(
    r: &dyn Remediation,
    plan: &rb_core::Plan,
    o: &rb_core::Outcome,
    c: &ActionContext,
    within: Duration,
) -> Verification {
    let deadline = std::time::Instant::now() + within;
    loop {
        let v = r.verify(plan, o, c).await.unwrap();
        if matches!(v, Verification::Succeeded { .. }) || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn a_really_failed_task_is_refused_then_restarted_after_its_configuration_is_fixed() {
    let env = PeerEnv::load().unwrap();
    let kafka = Kafka::from_env(&env).unwrap();
    let connect = KafkaConnect::from_env(&env).unwrap();
    let url = env.get("CONNECT_URL").unwrap();
    let name = unique("rb-act-source");
    let n = name.as_str();
    connect.make_failed_task(n, 3).await.unwrap();

    let client = ReqwestClient::builder(url)
        .timeout(Duration::from_secs(100))
        .build()
        .unwrap();
    let kc = Connect::new(
        Arc::new(client),
        Target::new("kafka-connect", "connect-peer"),
    )
    .conflict_retry(10, Duration::from_secs(2))
    .verify_within(Duration::from_secs(60));
    let c = ctx("connector", n);

    // The plain restart reads the status, sees the InvalidTopicException and refuses: a human first.
    let e = kc.restart().plan(&c).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    let trace = e.details["needs_human"][0]["trace"].as_str().unwrap();
    assert!(trace.contains("InvalidTopicException"), "{trace}");
    println!("refused, as it should: {e}");

    // The human fixes the configuration: a topic that exists.
    let good = unique("rb-act-out");
    kafka.create_topic(&good, 1).await.unwrap();
    let put = connect.set_topic(n, &good).await.unwrap();
    assert_eq!(put.status, 200, "{:?}", put.body);

    // ... and approves the restart after the fix (here: called directly).
    let r = kc.restart_after_fix();
    let plan = r.plan(&c).await.unwrap();
    println!("plan: {:?}", plan);
    if let Some(why) = &plan.nothing_to_do {
        // the config update restarted the task by itself
        println!("nothing to do: {why}");
    } else {
        let o = r.apply(&plan, &c).await.unwrap();
        println!("outcome: {} {}", o.summary, o.details);
        let v = verify_until(&r, &plan, &o, &c, Duration::from_secs(60)).await;
        assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    }
    let status = connect
        .wait_status(n, Duration::from_secs(60), "task RUNNING", |s| {
            KafkaConnect::task_state(s, 0) == Some("RUNNING")
        })
        .await
        .unwrap();
    assert_eq!(status["connector"]["state"], "RUNNING", "{status}");

    // Pause then resume: back to RUNNING (reversibility on the real worker).
    let (p, res) = (kc.pause(), kc.resume());
    let pp = p.plan(&c).await.unwrap();
    let po = p.apply(&pp, &c).await.unwrap();
    let v = verify_until(&p, &pp, &po, &c, Duration::from_secs(30)).await;
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    let rp = res.plan(&c).await.unwrap();
    let ro = res.apply(&rp, &c).await.unwrap();
    let v = verify_until(&res, &rp, &ro, &c, Duration::from_secs(30)).await;
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    // And a running connector: the plain restart has nothing to do.
    assert!(kc.restart().plan(&c).await.unwrap().nothing_to_do.is_some());
    connect.delete(n).await.unwrap();
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn partitions_are_added_on_the_real_broker_and_the_cli_agrees() {
    let env = PeerEnv::load().unwrap();
    let kafka = Kafka::from_env(&env).unwrap();
    let topic = unique("rb-act-parts");
    kafka.create_topic(&topic, 2).await.unwrap();
    let admin =
        Arc::new(RdKafkaAdmin::new(&kafka.bootstrap, &[], Duration::from_secs(30)).unwrap());
    assert_eq!(admin.partition_count(&topic).await.unwrap(), Some(2));
    assert_eq!(
        admin.partition_count("rb-no-such-topic").await.unwrap(),
        None
    );

    let r = AddPartitions::new(
        admin.clone(),
        Target::new("kafka", "kafka-peer"),
        PartitionGoal::Factor(3),
    );
    assert!(r.requires_human());
    let c = ctx("topic", &topic);
    let plan = r.plan(&c).await.unwrap();
    assert_eq!(plan.params["to"], 6);
    let o = r.apply(&plan, &c).await.unwrap();
    let v = verify_until(&r, &plan, &o, &c, Duration::from_secs(30)).await;
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    let d = kafka.describe_topic(&topic).await.unwrap();
    assert_eq!(d.partition_count, 6, "kafka-topics --describe: {d:?}");

    // Asking again for the same total: the broker answers INVALID_PARTITIONS, which is the plan done.
    let again = r.apply(&plan, &c).await.unwrap();
    assert!(again.summary.contains("already has 6"), "{}", again.summary);
    // Shrinking is impossible: a typed error from the broker.
    let e = admin.create_partitions(&topic, 3).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    kafka.delete_topic(&topic).await.unwrap();
}
