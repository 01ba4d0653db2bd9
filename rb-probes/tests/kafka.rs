//! The Kafka probes through the real adapter (rdkafka) against FakeKafka (librdkafka's mock
//! cluster): exact lag, partitions without a commit, a broker down, request counts, deadlines,
//! unreachable clusters, the Burrow-style symptom over real observations; group state through a
//! scripted client (the mock cluster has no DescribeGroups); the fault matrix.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::symptom::{evaluate, History, Record, Symptom, SymptomState};
use rb_core::time::{Clock, Timestamp};
use rb_core::{ErrorKind, Observation, Probe, ProbeContext, ProbeError, Secret, Target};
use rb_probes::kafka::{
    BurrowStatus, ClientError, ClusterMetadata, ConsumerGroupProbe, ConsumerLag, ConsumerLagProbe,
    GroupDescription, GroupMember, GroupState, KafkaClient, KafkaConfig, PartitionAnswer,
    PartitionOffsets, RdKafkaClient, Sasl, SaslMechanism, TopicDescriptionProbe, TopicDescriptions,
    TopicPartition,
};
use rb_testkit::kafka::{seeded_lags, BrokerError, FakeKafka, KafkaApi};

fn target() -> Target {
    Target::new("kafka", "kafka-main")
}

fn ctx(timeout: Duration) -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), timeout)
}

fn client(fake: &FakeKafka) -> RdKafkaClient {
    RdKafkaClient::new(KafkaConfig::new(fake.bootstrap_servers())).unwrap()
}

fn lag_probe(fake: &FakeKafka, group: &str, topics: &[&str]) -> ConsumerLagProbe<RdKafkaClient> {
    ConsumerLagProbe::new(target(), client(fake), group, topics.iter().copied())
}

fn summary(obs: &Observation) -> ConsumerLag {
    obs.facts.get::<ConsumerLag>().unwrap().unwrap()
}

fn sample(obs: &Observation, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want = rb_core::labels(labels);
    obs.samples_named(name)
        .find(|s| s.labels == want)
        .map(|s| s.value)
}

/// Per-partition lag as the probe read it (needs the partition fact).
fn read_lags(obs: &Observation, topic: &str) -> BTreeMap<i32, Option<i64>> {
    let fact: PartitionOffsets = obs.facts.get().unwrap().unwrap();
    fact.partitions
        .iter()
        .filter(|p| p.topic == topic)
        .map(|p| (p.partition, p.committed.map(|c| p.end.unwrap() - c)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_lag_per_partition_topic_and_group() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 64, 3).unwrap();
    fake.create_topic("payments", 8, 2).unwrap();
    let lags = seeded_lags(7, 64, 0..=900).unwrap();
    fake.set_lag("flink-orders", "orders", &lags).unwrap();
    fake.set_partition_lag("flink-orders", "orders", 17, 12_000)
        .unwrap();
    fake.set_uniform_lag("flink-orders", "payments", 3).unwrap();

    let probe = lag_probe(&fake, "flink-orders", &["orders", "payments"])
        .top_k(5)
        .with_partition_fact(true);
    let obs = probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);

    let truth = fake.lag("flink-orders", "orders").unwrap();
    let read = read_lags(&obs, "orders");
    assert_eq!(read.len(), 64);
    for (p, want) in truth.iter().enumerate() {
        assert_eq!(read[&(p as i32)], *want, "orders[{p}]");
    }
    let orders_sum: i64 = truth.iter().map(|l| l.unwrap()).sum();
    let orders_max: i64 = truth.iter().map(|l| l.unwrap()).max().unwrap();
    assert_eq!(orders_max, 12_000);

    let s = summary(&obs);
    assert_eq!(s.partitions, 72);
    assert_eq!(s.measured, 72);
    assert_eq!(s.lag_sum, orders_sum + 8 * 3);
    assert_eq!(s.lag_max, Some(12_000));
    assert_eq!(s.without_commit_count, 0);
    assert_eq!(s.worst.len(), 5);
    assert_eq!(
        (s.worst[0].topic.as_str(), s.worst[0].partition),
        ("orders", 17)
    );

    let g = [("group", "flink-orders")];
    assert_eq!(sample(&obs, "records_lag_max", &g), Some(12_000.0));
    assert_eq!(
        sample(&obs, "kafka_consumergroup_lag_sum", &g),
        Some((orders_sum + 24) as f64)
    );
    let go = [("group", "flink-orders"), ("topic", "orders")];
    assert_eq!(
        sample(&obs, "kafka_consumergroup_lag_sum", &go),
        Some(orders_sum as f64)
    );
    assert_eq!(
        sample(&obs, "kafka_consumergroup_lag_max", &go),
        Some(12_000.0)
    );
    let gp = [("group", "flink-orders"), ("topic", "payments")];
    assert_eq!(sample(&obs, "kafka_consumergroup_lag_max", &gp), Some(3.0));
    assert_eq!(
        sample(
            &obs,
            "kafka_consumergroup_lag",
            &[
                ("group", "flink-orders"),
                ("topic", "orders"),
                ("partition", "17")
            ]
        ),
        Some(12_000.0)
    );
    // Bounded output: 5 partition series, not 72.
    assert_eq!(obs.samples_named("kafka_consumergroup_lag").count(), 5);
    // One observation: lag in time has not enough data yet.
    assert_eq!(s.lag_seconds_max, None);
    assert_eq!(
        sample(&obs, "kafka_consumergroup_lag_seconds_pending", &g),
        Some(72.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_without_commit_are_named_never_lag_zero() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 12, 3).unwrap();
    fake.produce_all("orders", &[100; 12]).unwrap();
    // The group committed on partitions 0..8 only.
    let commits: Vec<(i32, i64)> = (0..8).map(|p| (p, 60)).collect();
    fake.commit_many("g", "orders", &commits).unwrap();

    let probe = lag_probe(&fake, "g", &["orders"]);
    let obs = probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let s = summary(&obs);
    assert_eq!(s.without_commit_count, 4);
    assert_eq!(
        s.without_commit,
        ["orders[8]", "orders[9]", "orders[10]", "orders[11]"]
    );
    assert_eq!(s.measured, 8);
    assert_eq!(s.lag_sum, 8 * 40);
    assert_eq!(s.lag_max, Some(40));
    assert!(s.worst.iter().all(|p| p.partition < 8));
    let g = [("group", "g")];
    assert_eq!(
        sample(&obs, "kafka_consumergroup_partitions_without_commit", &g),
        Some(4.0)
    );
    assert_eq!(
        sample(&obs, "kafka_consumergroup_partitions_measured", &g),
        Some(8.0)
    );
    assert!(obs.samples.iter().all(|s| s.value.is_finite()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downed_broker_gives_an_incomplete_observation_naming_its_partitions() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 30, 3).unwrap();
    fake.set_uniform_lag("g", "orders", 50).unwrap();
    // Keep the group's coordinator up: broker 2 only leads partitions.
    fake.set_group_coordinator("g", 1).unwrap();
    let probe = lag_probe(&fake, "g", &["orders"]);
    probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();

    fake.broker_down(2).unwrap();
    let led = fake.partitions_led_by("orders", 2).unwrap();
    assert_eq!(led.len(), 10);
    let obs = probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
    assert!(!obs.complete);
    let s = summary(&obs);
    let unobserved: Vec<i32> = s.unobserved.iter().map(|u| u.partition).collect();
    assert_eq!(unobserved, led);
    assert_eq!(s.unobserved_count, 10);
    assert!(
        s.unobserved[0].error.contains("log-end offset"),
        "{:?}",
        s.unobserved[0]
    );
    // The gap names the partitions.
    let gaps = obs.gaps.join("\n");
    for p in &led {
        assert!(gaps.contains(&format!("orders[{p}]")), "{gaps}");
    }
    // The partitions that were seen have their exact lag; the others are not counted as 0.
    assert_eq!(s.measured, 20);
    assert_eq!(s.lag_sum, 20 * 50);
    assert_eq!(
        sample(
            &obs,
            "kafka_consumergroup_partitions_unobserved",
            &[("group", "g")]
        ),
        Some(10.0)
    );
    fake.broker_up(2).unwrap();
}

/// Warms a lag probe up, then checks the exact requests of three observations: `offset_fetches`
/// OffsetFetch requests and `list_offsets_per_broker` ListOffsets at each of the three brokers.
/// `native`: the offsets over rb's own connections (the default) or through librdkafka.
async fn assert_lag_requests(
    native: bool,
    partitions: i32,
    offset_fetches: usize,
    list_offsets_per_broker: usize,
) {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", partitions, 3).unwrap();
    let lags = seeded_lags(3, partitions as usize, 0..=50).unwrap();
    fake.set_lag("g", "orders", &lags).unwrap();
    let config = KafkaConfig::new(fake.bootstrap_servers()).native_offsets(native);
    let client = RdKafkaClient::new(config).unwrap();
    let probe = ConsumerLagProbe::new(target(), client, "g", ["orders"]).with_partition_fact(true);
    // Warm-up: connections, ApiVersions, FindCoordinator.
    for _ in 0..3 {
        probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
    }
    for round in 0..3 {
        fake.clear_requests().unwrap();
        let obs = probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
        assert!(obs.complete);
        assert_eq!(summary(&obs).measured, partitions as usize);
        let got = read_lags(&obs, "orders");
        for (p, lag) in lags.iter().enumerate() {
            assert_eq!(got.get(&(p as i32)), Some(&Some(*lag)), "partition {p}");
        }
        let reqs = fake.requests().unwrap();
        let count = |api| rb_testkit::kafka::count_requests(&reqs, api);
        assert_eq!(
            count(KafkaApi::OffsetFetch),
            offset_fetches,
            "round {round}: {reqs:?}"
        );
        let per_broker = list_offsets_per_broker;
        assert_eq!(
            rb_testkit::kafka::requests_by_broker(&reqs, KafkaApi::ListOffsets),
            BTreeMap::from([(1, per_broker), (2, per_broker), (3, per_broker)]),
            "round {round}"
        );
        // librdkafka opens a connection when it first needs a broker (the group's client may
        // still do so after the warm-up) and then sends ApiVersions, telemetry, one Metadata and
        // a FindCoordinator on it. The group's client also queries its coordinator on its own
        // timer (a Metadata and a FindCoordinator on a connection already open, every second
        // while it waits for the coordinator): a round may catch one such query. Allowed, and
        // nothing else: the probe itself sends exactly one Metadata.
        let new_connections =
            rb_testkit::kafka::requests_by_broker(&reqs, KafkaApi::ApiVersions).len();
        let coordinator_queries = count(KafkaApi::FindCoordinator);
        assert!(
            coordinator_queries <= new_connections + 1,
            "round {round}: {reqs:?}"
        );
        let metadata = count(KafkaApi::Metadata);
        assert!(
            metadata >= 1 && metadata <= 1 + new_connections.max(coordinator_queries),
            "round {round}: {reqs:?}"
        );
        for r in &reqs {
            assert!(
                matches!(
                    r.api_name(),
                    "Metadata"
                        | "OffsetFetch"
                        | "ListOffsets"
                        | "ApiVersions"
                        | "GetTelemetrySubscriptions"
                        | "FindCoordinator"
                ),
                "round {round}: {reqs:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_o_brokers_not_o_partitions() {
    // 96 partitions over 3 brokers: 1 Metadata, 1 OffsetFetch, 1 ListOffsets per broker — on
    // both paths.
    assert_lag_requests(true, 96, 1, 1).await;
    assert_lag_requests(false, 96, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_10000_partitions_are_one_offset_fetch_and_one_list_offsets_per_broker() {
    // rb's own connections: however many partitions, 1 OffsetFetch and 1 ListOffsets per leader.
    assert_lag_requests(true, 2_000, 1, 1).await;
    assert_lag_requests(true, 10_000, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_2000_partitions_through_librdkafka_in_calls_of_500() {
    // Through librdkafka: committed offsets in 4 calls of 500 (one OffsetFetch each); log-end
    // offsets in batches of at most 500 partitions of one leader: each broker leads 666 or 667
    // partitions, so 2 ListOffsets per broker (a batch mixing leaders would cost one per leader).
    assert_lag_requests(false, 2_000, 4, 2).await;
}

// ---- rb's own offset connections: what they recover from ----------------------------------------

fn orders(n: i32) -> Vec<TopicPartition> {
    (0..n).map(|p| TopicPartition::new("orders", p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_moved_since_the_metadata_answer_is_asked_again() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 6, 3).unwrap();
    fake.produce_all("orders", &[10, 20, 30, 40, 50, 60])
        .unwrap();
    let c = client(&fake);
    let t = Duration::from_secs(5);
    c.metadata(&["orders".to_owned()], t).await.unwrap();
    // Partition 0 moves to another broker after the Metadata answer the client keeps.
    let old = fake.partition_leader("orders", 0).unwrap().unwrap();
    let new = fake.broker_ids().into_iter().find(|&b| b != old).unwrap();
    fake.set_partition_leader("orders", 0, Some(new)).unwrap();
    fake.clear_requests().unwrap();
    let ends = c.end_offsets(&orders(6), t).await.unwrap();
    assert_eq!(
        ends,
        vec![Ok(10), Ok(20), Ok(30), Ok(40), Ok(50), Ok(60)],
        "{:?}",
        fake.requests().unwrap()
    );
    let reqs = fake.requests().unwrap();
    let count = |api| rb_testkit::kafka::count_requests(&reqs, api);
    // One ListOffsets per leader, a Metadata request for the new leader, one more ListOffsets.
    assert_eq!(count(KafkaApi::Metadata), 1, "{reqs:?}");
    assert_eq!(count(KafkaApi::ListOffsets), 4, "{reqs:?}");
}

/// The testkit's virtual clock pauses tokio's time, and a paused runtime with nothing to run
/// jumps its clock to the next timer. The mock brokers answer from another thread, so a request
/// awaited on the probe's own runtime would see its deadline pass at once; the adapter's
/// connections run on their own runtime (real time) and are waited for from the blocking pool.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn paused_time_does_not_make_the_offsets_time_out() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 12, 3).unwrap();
    fake.set_uniform_lag("g", "orders", 4).unwrap();
    fake.set_rtt_all(Duration::from_millis(30)).unwrap();
    let probe = lag_probe(&fake, "g", &["orders"]);
    for round in 0..5 {
        let obs = probe.observe(&ctx(Duration::from_secs(5))).await;
        let obs = obs.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(obs.complete, "round {round}: {:?}", obs.gaps);
        assert_eq!(summary(&obs).lag_sum, 48, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_moved_is_found_again() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 4, 3).unwrap();
    fake.set_uniform_lag("g", "orders", 5).unwrap();
    let c = client(&fake);
    let t = Duration::from_secs(5);
    let first = c.committed_offsets("g", &orders(4), t).await.unwrap();
    assert!(first.iter().all(|a| matches!(a, Ok(Some(_)))), "{first:?}");
    fake.request_errors(KafkaApi::OffsetFetch, &[BrokerError::NotCoordinator])
        .unwrap();
    fake.clear_requests().unwrap();
    let again = c.committed_offsets("g", &orders(4), t).await.unwrap();
    assert_eq!(again, first);
    let reqs = fake.requests().unwrap();
    let count = |api| rb_testkit::kafka::count_requests(&reqs, api);
    // Asked again after looking the coordinator up (librdkafka's own client may look up its
    // coordinator too, on its timer: at least one).
    assert!(count(KafkaApi::FindCoordinator) >= 1, "{reqs:?}");
    assert_eq!(count(KafkaApi::OffsetFetch), 2, "{reqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_broker_closed_is_replaced_once() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 3, 3).unwrap();
    fake.produce_all("orders", &[7, 8, 9]).unwrap();
    let c = client(&fake);
    let t = Duration::from_secs(5);
    c.metadata(&["orders".to_owned()], t).await.unwrap();
    assert_eq!(
        c.end_offsets(&orders(3), t).await.unwrap(),
        vec![Ok(7), Ok(8), Ok(9)]
    );
    // The next ListOffsets finds its connection closed by the broker.
    fake.request_errors(KafkaApi::ListOffsets, &[BrokerError::Disconnect])
        .unwrap();
    assert_eq!(
        c.end_offsets(&orders(3), t).await.unwrap(),
        vec![Ok(7), Ok(8), Ok(9)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_not_authorized_is_unauthorized_naming_the_coordinator() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 2, 3).unwrap();
    fake.set_uniform_lag("g", "orders", 5).unwrap();
    fake.set_group_coordinator("g", 2).unwrap();
    fake.request_errors(
        KafkaApi::OffsetFetch,
        &[BrokerError::GroupAuthorizationFailed],
    )
    .unwrap();
    let e = client(&fake)
        .committed_offsets("g", &orders(2), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(e.message.contains("broker 2 at 127.0.0.1:"), "{e}");
    assert!(e.message.contains("GROUP_AUTHORIZATION_FAILED"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_grows_at_evaluation_time_and_lag_in_time_appears() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 6, 3).unwrap();
    fake.produce_all("orders", &[1000; 6]).unwrap();
    fake.commit_all("g", "orders", &[1000; 6]).unwrap();
    let probe = lag_probe(&fake, "g", &["orders"]).with_partition_fact(true);
    let first = probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
    assert_eq!(summary(&first).lag_sum, 0);
    // The consumer stops committing; producers go on.
    let mut last = 0;
    for step in 1..=3 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        fake.produce_all("orders", &[100; 6]).unwrap();
        let obs = probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
        let s = summary(&obs);
        assert_eq!(s.lag_sum, 600 * step, "step {step}");
        assert!(s.lag_sum > last);
        last = s.lag_sum;
        // From the second observation on, lag in time is known and grows.
        let secs = s.lag_seconds_max.unwrap();
        assert!(secs > 0.0 && secs < 5.0, "{secs}");
        assert_eq!(s.lag_seconds_pending, 0);
        assert!(sample(
            &obs,
            "kafka_consumergroup_lag_seconds_max",
            &[("group", "g")]
        )
        .is_some());
    }
    assert_eq!(probe.timeline_len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_symptom_over_real_observations() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 4, 3).unwrap();
    fake.produce_all("orders", &[500; 4]).unwrap();
    fake.commit_all("g", "orders", &[500, 500, 400, 500])
        .unwrap();
    let probe = lag_probe(&fake, "g", &["orders"]).with_partition_fact(true);
    let symptom = BurrowStatus::new("g");
    let mut history = History::new(Duration::from_secs(600), 50);
    let mut state = SymptomState::default();
    let mut verdicts = Vec::new();
    for step in 0..4 {
        if step > 0 {
            // Partition 2 gets records and its consumer never moves; the others are caught up
            // on an idle topic.
            fake.produce("orders", 2, 50).unwrap();
        }
        let obs = probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
        history.push(Record {
            at: obs.at,
            result: Ok(obs),
        });
        let now = history.latest().unwrap().at;
        verdicts.push(evaluate(&symptom, &history, now, &mut state));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(verdicts[0].is_unknown(), "{:?}", verdicts[0]);
    assert!(verdicts[1].is_unknown(), "{:?}", verdicts[1]);
    let rb_core::Verdict::Firing(f) = &verdicts[3] else {
        panic!("{:?}", verdicts[3]);
    };
    assert!(f.summary.contains("ERR"), "{}", f.summary);
    assert_eq!(f.evidence.len(), 1, "{:?}", f.evidence);
    assert!(
        f.evidence[0].starts_with("orders[2] STALL"),
        "{:?}",
        f.evidence
    );
    assert!(symptom.name().contains('g'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_past_the_deadline_is_a_timeout() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 6, 3).unwrap();
    fake.set_uniform_lag("g", "orders", 5).unwrap();
    fake.set_rtt_all(Duration::from_millis(800)).unwrap();
    let probe = lag_probe(&fake, "g", &["orders"]);
    let started = std::time::Instant::now();
    let err = probe
        .observe(&ctx(Duration::from_millis(400)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.endpoint.contains("127.0.0.1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_brokers_down_is_unreachable_naming_bootstrap() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 6, 3).unwrap();
    fake.set_uniform_lag("g", "orders", 5).unwrap();
    let probe = lag_probe(&fake, "g", &["orders"]);
    for b in fake.broker_ids() {
        fake.broker_down(b).unwrap();
    }
    let err = probe
        .observe(&ctx(Duration::from_millis(1500)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.message.contains(fake.bootstrap_servers()), "{err}");
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_is_unreachable() {
    let bootstrap = closed_port();
    let c = RdKafkaClient::new(KafkaConfig::new(&bootstrap)).unwrap();
    let probe = ConsumerLagProbe::new(target(), c, "g", ["orders"]);
    let err = probe
        .observe(&ctx(Duration::from_millis(1500)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.message.contains(&bootstrap), "{err}");
    assert_eq!(err.endpoint, bootstrap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_and_unknown_topic_say_so() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 6, 3).unwrap();
    fake.produce_all("orders", &[10; 6]).unwrap();
    let err = lag_probe(&fake, "nobody", &["orders"])
        .observe(&ctx(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(
        err.message.contains("unknown consumer group nobody"),
        "{err}"
    );

    let err = lag_probe(&fake, "g", &["no-such-topic"])
        .observe(&ctx(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message.contains("unknown topic no-such-topic"), "{err}");
}

/// Warms the client up, observes once more and checks what that observation sent: one Metadata
/// request. librdkafka connects to a broker when it first uses it and then refreshes its metadata
/// once on that connection, so a round that opens a connection also carries that connection's
/// ApiVersions, telemetry and one more Metadata request; nothing else is allowed.
async fn assert_one_metadata_request<P: Probe>(fake: &FakeKafka, probe: &P) -> Observation {
    for _ in 0..3 {
        probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.clear_requests().unwrap();
    let obs = probe.observe(&ctx(Duration::from_secs(10))).await.unwrap();
    let reqs = fake.requests().unwrap();
    let new_connections = rb_testkit::kafka::requests_by_broker(&reqs, KafkaApi::ApiVersions).len();
    assert_eq!(
        rb_testkit::kafka::count_requests(&reqs, KafkaApi::Metadata),
        1 + new_connections,
        "{reqs:?}"
    );
    for r in &reqs {
        assert!(
            matches!(
                r.api_name(),
                "Metadata" | "ApiVersions" | "GetTelemetrySubscriptions"
            ),
            "{reqs:?}"
        );
    }
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_description_from_one_metadata_request() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 12, 3).unwrap();
    fake.create_topic("audit", 3, 1).unwrap();
    let probe = TopicDescriptionProbe::new(target(), client(&fake), ["orders"]);
    let obs = assert_one_metadata_request(&fake, &probe).await;
    let d: TopicDescriptions = obs.facts.get().unwrap().unwrap();
    assert_eq!(d.brokers.len(), 3);
    let t = &d.topics[0];
    assert_eq!(t.partitions.len(), 12);
    assert_eq!(t.replication_factor, 3);
    for p in &t.partitions {
        assert_eq!(
            p.leader,
            fake.partition_leader("orders", p.partition).unwrap()
        );
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.isr.len(), 3);
    }
    assert!(t.under_replicated.is_empty());
    assert!(t.offline.is_empty());
    let l = [("topic", "orders")];
    assert_eq!(sample(&obs, "kafka_topic_partitions", &l), Some(12.0));
    assert_eq!(
        sample(&obs, "kafka_topic_under_replicated_partitions", &l),
        Some(0.0)
    );
    assert_eq!(
        sample(&obs, "kafka_topic_offline_partitions", &l),
        Some(0.0)
    );

    // Two topics: still one Metadata request.
    let both = TopicDescriptionProbe::new(target(), client(&fake), ["orders", "audit"]);
    let obs = assert_one_metadata_request(&fake, &both).await;
    let d: TopicDescriptions = obs.facts.get().unwrap().unwrap();
    assert_eq!(d.topics[1].replication_factor, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_topic_reports_aggregates_and_no_partition_series() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 12, 3).unwrap();
    let obs = TopicDescriptionProbe::new(target(), client(&fake), ["orders"])
        .observe(&ctx(Duration::from_secs(10)))
        .await
        .unwrap();
    let l = [("topic", "orders")];
    assert_eq!(
        sample(&obs, "kafka_topic_in_sync_replicas_min", &l),
        Some(3.0)
    );
    assert!(obs
        .samples
        .iter()
        .all(|s| !s.labels.contains_key("partition")));
    let d: TopicDescriptions = obs.facts.get().unwrap().unwrap();
    assert!(d.worst.is_empty());
    assert_eq!(d.topics[0].partition_count, 12);

    // Every partition's series, when asked: five per partition, healthy ones included.
    let obs = TopicDescriptionProbe::new(target(), client(&fake), ["orders"])
        .with_all_partitions(true)
        .observe(&ctx(Duration::from_secs(10)))
        .await
        .unwrap();
    let per_partition = obs
        .samples
        .iter()
        .filter(|s| s.labels.contains_key("partition"))
        .count();
    assert_eq!(per_partition, 12 * 5);
    for p in 0..12 {
        let p = p.to_string();
        let l = [("topic", "orders"), ("partition", p.as_str())];
        assert_eq!(sample(&obs, "kafka_topic_partition_offline", &l), Some(0.0));
        assert_eq!(
            sample(&obs, "kafka_topic_partition_in_sync_replicas", &l),
            Some(3.0)
        );
        let leader = fake.partition_leader("orders", p.parse().unwrap()).unwrap();
        assert_eq!(
            sample(&obs, "kafka_topic_partition_leader", &l),
            Some(f64::from(leader.unwrap()))
        );
    }
}

// ---- topic description through a scripted client -----------------------------------------------

/// A scripted [`KafkaClient`] answering Metadata only: `partitions` partitions of one topic over
/// brokers 1–3, replicas `[leader, next, next]`; broker 3 is stopped (not among the live brokers,
/// out of every ISR), and the partitions it led have no leader, except those in `stale_leader`,
/// whose metadata still names broker 3 (a leader that is not a live broker).
#[derive(Debug)]
struct ScriptedMetadata {
    partitions: i32,
    stale_leader: Vec<i32>,
}

#[async_trait]
impl KafkaClient for ScriptedMetadata {
    fn bootstrap(&self) -> &str {
        "scripted:9092"
    }
    async fn metadata(
        &self,
        topics: &[String],
        _: Duration,
    ) -> Result<ClusterMetadata, ClientError> {
        let broker = |id: i32| rb_probes::kafka::BrokerInfo {
            id,
            host: format!("127.0.0.{id}"),
            port: 9092,
        };
        let part = |p: i32| {
            let first = p % 3 + 1;
            let replicas: Vec<i32> = (0..3).map(|i| (first - 1 + i) % 3 + 1).collect();
            let isr: Vec<i32> = replicas.iter().copied().filter(|r| *r != 3).collect();
            let leader = if first == 3 {
                self.stale_leader.contains(&p).then_some(3)
            } else {
                Some(first)
            };
            rb_probes::kafka::PartitionMetadata {
                partition: p,
                leader,
                replicas,
                isr,
                error: (first == 3 && leader.is_none()).then(|| "LEADER_NOT_AVAILABLE".into()),
            }
        };
        Ok(ClusterMetadata {
            brokers: vec![broker(1), broker(2)],
            topics: topics
                .iter()
                .map(|t| rb_probes::kafka::TopicMetadata {
                    name: t.clone(),
                    error: None,
                    partitions: (0..self.partitions).map(part).collect(),
                })
                .collect(),
        })
    }
    async fn committed_offsets(
        &self,
        _: &str,
        _: &[TopicPartition],
        _: Duration,
    ) -> Result<Vec<PartitionAnswer<Option<i64>>>, ClientError> {
        Err(ClientError::new(ErrorKind::Invalid, "not scripted"))
    }
    async fn end_offsets(
        &self,
        _: &[TopicPartition],
        _: Duration,
    ) -> Result<Vec<PartitionAnswer<i64>>, ClientError> {
        Err(ClientError::new(ErrorKind::Invalid, "not scripted"))
    }
    async fn describe_group(
        &self,
        _: &str,
        _: Duration,
    ) -> Result<Option<GroupDescription>, ClientError> {
        Err(ClientError::new(ErrorKind::Invalid, "not scripted"))
    }
}

/// The distinct partitions that have at least one per-partition series.
fn partition_series(obs: &Observation) -> std::collections::BTreeSet<(String, i32)> {
    obs.samples
        .iter()
        .filter_map(|s| {
            let p = s.labels.get("partition")?;
            Some((s.labels.get("topic")?.clone(), p.parse().unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn a_stopped_broker_reports_counts_and_only_the_worst_partitions() {
    // 3,000 partitions; broker 3 stopped: every partition is under-replicated (3 out of its ISR),
    // the 1,000 it led are offline (5 of them still name it as leader).
    let c = ScriptedMetadata {
        partitions: 3_000,
        stale_leader: vec![2, 5, 8, 2_999, 1_001],
    };
    let probe = TopicDescriptionProbe::new(target(), c, ["orders"]).top_k(4);
    let obs = probe.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert!(obs.complete);
    let l = [("topic", "orders")];
    assert_eq!(sample(&obs, "kafka_topic_partitions", &l), Some(3_000.0));
    assert_eq!(
        sample(&obs, "kafka_topic_replication_factor", &l),
        Some(3.0)
    );
    assert_eq!(
        sample(&obs, "kafka_topic_under_replicated_partitions", &l),
        Some(3_000.0)
    );
    assert_eq!(
        sample(&obs, "kafka_topic_offline_partitions", &l),
        Some(1_000.0)
    );
    assert_eq!(
        sample(&obs, "kafka_topic_in_sync_replicas_min", &l),
        Some(2.0)
    );
    assert_eq!(sample(&obs, "kafka_brokers", &[]), Some(2.0));

    // Bounded: the 4 worst partitions, offline ones first, ties by partition number.
    let worst: Vec<(String, i32)> = [2, 5, 8, 11]
        .into_iter()
        .map(|p| ("orders".to_string(), p))
        .collect();
    assert_eq!(partition_series(&obs), worst.iter().cloned().collect());
    assert_eq!(obs.samples.len(), 6 + 4 * 5, "{:?}", obs.samples);
    fn p(n: &str) -> [(&str, &str); 2] {
        [("topic", "orders"), ("partition", n)]
    }
    assert_eq!(
        sample(&obs, "kafka_topic_partition_offline", &p("2")),
        Some(1.0)
    );
    assert_eq!(
        sample(&obs, "kafka_topic_partition_under_replicated", &p("2")),
        Some(1.0)
    );
    assert_eq!(
        sample(&obs, "kafka_topic_partition_in_sync_replicas", &p("2")),
        Some(2.0)
    );
    assert_eq!(
        sample(&obs, "kafka_topic_partition_replicas", &p("2")),
        Some(3.0)
    );
    // 2 names the stopped broker, 11 names no leader
    assert_eq!(
        sample(&obs, "kafka_topic_partition_leader", &p("2")),
        Some(3.0)
    );
    assert_eq!(
        sample(&obs, "kafka_topic_partition_leader", &p("11")),
        Some(-1.0)
    );

    let d: TopicDescriptions = obs.facts.get().unwrap().unwrap();
    assert_eq!(
        d.worst
            .iter()
            .map(|h| (h.topic.clone(), h.partition))
            .collect::<Vec<_>>(),
        worst
    );
    assert!(d.worst.iter().all(|h| h.offline && h.out_of_sync == [3]));
    assert_eq!(d.worst[3].error.as_deref(), Some("LEADER_NOT_AVAILABLE"));
    // The fact is bounded too: exact counts, the first LIST_LIMIT entries.
    let t = &d.topics[0];
    assert_eq!(
        (t.partition_count, t.under_replicated_count, t.offline_count),
        (3_000, 3_000, 1_000)
    );
    assert_eq!(t.partitions.len(), rb_probes::kafka::LIST_LIMIT);
    assert_eq!(t.under_replicated.len(), rb_probes::kafka::LIST_LIMIT);
    assert_eq!(t.offline.len(), 1_000);
    assert_eq!(&t.offline[..3], [2, 5, 8]);
    assert_eq!(t.min_isr, Some(2));
}

#[tokio::test]
async fn top_k_zero_all_partitions_and_the_whole_fact_when_asked() {
    let c = || ScriptedMetadata {
        partitions: 1_500,
        stale_leader: vec![],
    };
    // k = 0: aggregates only.
    let obs = TopicDescriptionProbe::new(target(), c(), ["orders"])
        .top_k(0)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(partition_series(&obs).is_empty());
    let d: TopicDescriptions = obs.facts.get().unwrap().unwrap();
    assert!(d.worst.is_empty());
    assert_eq!(d.topics[0].offline_count, 500);

    // Two topics, worst across both: the offline partitions outrank the merely under-replicated.
    let obs = TopicDescriptionProbe::new(target(), c(), ["orders", "audit"])
        .top_k(3)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    let d: TopicDescriptions = obs.facts.get().unwrap().unwrap();
    assert_eq!(d.worst.len(), 3);
    assert!(d.worst.iter().all(|h| h.offline && h.topic == "orders"));

    // Every partition's series and the whole fact, when asked.
    let obs = TopicDescriptionProbe::new(target(), c(), ["orders"])
        .with_all_partitions(true)
        .with_partition_fact(true)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(partition_series(&obs).len(), 1_500);
    assert_eq!(
        obs.samples
            .iter()
            .filter(|s| s.labels.contains_key("partition"))
            .count(),
        1_500 * 5
    );
    let d: TopicDescriptions = obs.facts.get().unwrap().unwrap();
    let t = &d.topics[0];
    assert_eq!(t.partitions.len(), 1_500);
    assert_eq!(t.under_replicated.len(), 1_500);
    assert_eq!(d.worst.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_password_never_shows() {
    let fake = FakeKafka::start(1).unwrap();
    let cfg = KafkaConfig::new(fake.bootstrap_servers()).sasl(Sasl {
        mechanism: SaslMechanism::Plain,
        username: "rb".into(),
        password: Secret::new("pa55-w0rd-xyz"),
    });
    let c = RdKafkaClient::new(cfg).unwrap();
    assert!(!format!("{c:?}").contains("pa55-w0rd-xyz"));
    let probe = ConsumerLagProbe::new(target(), c, "g", ["orders"]);
    let shown = match probe.observe(&ctx(Duration::from_millis(1500))).await {
        Ok(obs) => serde_json::to_string(&obs).unwrap(),
        Err(e) => format!("{e} {e:?}"),
    };
    assert!(!shown.contains("pa55-w0rd-xyz"), "{shown}");
}

// ---- group state through a scripted client ----------------------------------------------------

/// A scripted [`KafkaClient`]: one topic of `ends.len()` partitions led by broker 1.
#[derive(Debug)]
struct Scripted {
    ends: Vec<i64>,
    committed: Vec<Option<i64>>,
    group: Mutex<Result<Option<GroupDescription>, ClientError>>,
}

impl Scripted {
    fn new(ends: Vec<i64>, committed: Vec<Option<i64>>) -> Self {
        Self {
            ends,
            committed,
            group: Mutex::new(Ok(None)),
        }
    }

    fn group(self, g: Result<Option<GroupDescription>, ClientError>) -> Self {
        *self.group.lock().unwrap() = g;
        self
    }
}

fn described(state: GroupState, members: usize) -> GroupDescription {
    GroupDescription {
        group: "g".into(),
        state,
        protocol: "range".into(),
        members: (0..members)
            .map(|i| GroupMember {
                member_id: format!("m{i}"),
                client_id: "flink".into(),
                client_host: "/10.0.0.1".into(),
            })
            .collect(),
    }
}

#[async_trait]
impl KafkaClient for Scripted {
    fn bootstrap(&self) -> &str {
        "scripted:9092"
    }
    async fn metadata(
        &self,
        topics: &[String],
        _: Duration,
    ) -> Result<ClusterMetadata, ClientError> {
        Ok(ClusterMetadata {
            brokers: vec![rb_probes::kafka::BrokerInfo {
                id: 1,
                host: "scripted".into(),
                port: 9092,
            }],
            topics: topics
                .iter()
                .map(|t| rb_probes::kafka::TopicMetadata {
                    name: t.clone(),
                    error: None,
                    partitions: (0..self.ends.len() as i32)
                        .map(|p| rb_probes::kafka::PartitionMetadata {
                            partition: p,
                            leader: Some(1),
                            replicas: vec![1],
                            isr: vec![1],
                            error: None,
                        })
                        .collect(),
                })
                .collect(),
        })
    }
    async fn committed_offsets(
        &self,
        _: &str,
        parts: &[TopicPartition],
        _: Duration,
    ) -> Result<Vec<PartitionAnswer<Option<i64>>>, ClientError> {
        Ok(parts
            .iter()
            .map(|tp| Ok(self.committed[tp.partition as usize]))
            .collect())
    }
    async fn end_offsets(
        &self,
        parts: &[TopicPartition],
        _: Duration,
    ) -> Result<Vec<PartitionAnswer<i64>>, ClientError> {
        Ok(parts
            .iter()
            .map(|tp| Ok(self.ends[tp.partition as usize]))
            .collect())
    }
    async fn describe_group(
        &self,
        _: &str,
        _: Duration,
    ) -> Result<Option<GroupDescription>, ClientError> {
        self.group.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn group_state_and_members() {
    let c = Scripted::new(vec![10], vec![Some(5)])
        .group(Ok(Some(described(GroupState::PreparingRebalance, 3))));
    let obs = ConsumerGroupProbe::new(target(), c, "g")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        sample(&obs, "kafka_consumergroup_members", &[("group", "g")]),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &obs,
            "kafka_consumergroup_state",
            &[("group", "g"), ("state", "PreparingRebalance")]
        ),
        Some(2.0)
    );
    let d: GroupDescription = obs.facts.get().unwrap().unwrap();
    assert_eq!(d.state, GroupState::PreparingRebalance);

    for (answer, needle) in [
        (Ok(None), "no broker lists it"),
        (Ok(Some(described(GroupState::Dead, 0))), "reports it Dead"),
    ] {
        let c = Scripted::new(vec![10], vec![Some(5)]).group(answer);
        let err = ConsumerGroupProbe::new(target(), c, "g")
            .observe(&ctx(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        assert!(err.message.contains("unknown consumer group g"), "{err}");
        assert!(err.message.contains(needle), "{err}");
    }
    for (s, parsed) in [
        ("Empty", GroupState::Empty),
        ("Stable", GroupState::Stable),
        ("CompletingRebalance", GroupState::CompletingRebalance),
        ("AwaitingSync", GroupState::CompletingRebalance),
        ("Dead", GroupState::Dead),
        ("Assigning", GroupState::Other("Assigning".into())),
    ] {
        assert_eq!(GroupState::parse(s), parsed);
    }
}

#[tokio::test]
async fn lag_probe_with_group_state() {
    // An existing, empty group that never committed: partitions without commit, not an unknown group.
    let c = Scripted::new(vec![10, 20], vec![None, None])
        .group(Ok(Some(described(GroupState::Empty, 0))));
    let obs = ConsumerLagProbe::new(target(), c, "g", ["t"])
        .with_group_state(true)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    let s = summary(&obs);
    assert_eq!(s.without_commit_count, 2);
    assert_eq!(s.state, Some(GroupState::Empty));
    assert_eq!(s.members, Some(0));
    assert!(obs.samples_named("records_lag_max").next().is_none());

    // Describing failed: the lag is still read, the observation says what is missing.
    let c = Scripted::new(vec![10, 20], vec![Some(1), Some(2)])
        .group(Err(ClientError::new(ErrorKind::Rejected, "not supported")));
    let obs = ConsumerLagProbe::new(target(), c, "g", ["t"])
        .with_group_state(true)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(!obs.complete);
    assert!(obs.gaps[0].contains("state of group g"), "{:?}", obs.gaps);
    assert_eq!(summary(&obs).lag_sum, 27);

    // A Dead group without commits: unknown group.
    let c = Scripted::new(vec![10], vec![None]).group(Ok(Some(described(GroupState::Dead, 0))));
    let err = ConsumerLagProbe::new(target(), c, "g", ["t"])
        .with_group_state(true)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.message.contains("reports it Dead"), "{err}");
}

#[tokio::test]
async fn stopped_group_is_stop_and_deleted_group_stops_reporting() {
    // Burrow through the symptom with scripted observations: an empty group with a backlog.
    let symptom = BurrowStatus::new("g");
    let mut history = History::new(Duration::from_secs(600), 50);
    let mut state = SymptomState::default();
    let t0 = Timestamp(1_700_000_000_000);
    let mut verdict = rb_core::Verdict::Unevaluated;
    for i in 0..4u64 {
        let at = t0.plus(Duration::from_secs(60 * i));
        let obs =
            Observation::new("kafka.consumer_lag", "kafka-main", at).fact(&PartitionOffsets {
                group: "g".into(),
                state: Some(GroupState::Empty),
                members: Some(0),
                partitions: vec![rb_probes::kafka::PartitionOffsetEntry {
                    topic: "t".into(),
                    partition: 0,
                    committed: Some(100),
                    end: Some(200 + i as i64),
                    error: None,
                }],
            });
        history.push(Record {
            at,
            result: Ok(obs),
        });
        verdict = evaluate(&symptom, &history, at, &mut state);
    }
    let rb_core::Verdict::Firing(f) = &verdict else {
        panic!("{verdict:?}")
    };
    assert!(f.evidence[0].starts_with("t[0] STOP"), "{:?}", f.evidence);
    assert_eq!(f.since, t0);

    let at = t0.plus(Duration::from_secs(300));
    let obs = Observation::new("kafka.consumer_lag", "kafka-main", at).fact(&PartitionOffsets {
        group: "g".into(),
        state: Some(GroupState::Dead),
        members: Some(0),
        partitions: vec![],
    });
    history.push(Record {
        at,
        result: Ok(obs),
    });
    let v = evaluate(&symptom, &history, at, &mut state);
    assert!(v.is_unknown(), "{v:?}");

    // A failed probe: unknown, never ok.
    let at = t0.plus(Duration::from_secs(360));
    history.push(Record {
        at,
        result: Err(rb_core::symptom::Failure {
            kind: ErrorKind::Rejected,
            message: "unknown consumer group g".into(),
        }),
    });
    assert!(evaluate(&symptom, &history, at, &mut state).is_unknown());
    let _: &dyn Symptom = &symptom;
}

// ---- fault matrix -----------------------------------------------------------------------------

const MATRIX: &str = include_str!("fault_matrix/kafka.csv");

/// What a probe run ended in: an error kind, or `ok` / `incomplete`.
fn outcome(r: Result<Observation, ProbeError>) -> String {
    match r {
        Ok(o) if o.complete => "ok".into(),
        Ok(_) => "incomplete".into(),
        Err(e) => format!("{:?}", e.kind()).to_lowercase(),
    }
}

async fn run_fault(probe: &str, fault: &str, native: bool) -> String {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 9, 3).unwrap();
    fake.set_uniform_lag("g", "orders", 7).unwrap();
    fake.set_group_coordinator("g", 1).unwrap();
    let mut bootstrap = fake.bootstrap_servers().to_owned();
    let mut topic = "orders";
    let mut group = "g";
    let mut deadline = Duration::from_secs(5);
    match fault {
        "none" => {}
        "latency" => {
            fake.set_rtt_all(Duration::from_millis(800)).unwrap();
            deadline = Duration::from_millis(400);
        }
        "all_brokers_down" => {
            for b in fake.broker_ids() {
                fake.broker_down(b).unwrap();
            }
            deadline = Duration::from_millis(1200);
        }
        "refused" => {
            bootstrap = closed_port();
            deadline = Duration::from_millis(1200);
        }
        "one_broker_down" => fake.broker_down(2).unwrap(),
        "unknown_topic" => topic = "no-such-topic",
        "unknown_group" => group = "nobody",
        "topic_not_authorized" => fake
            .request_errors(
                KafkaApi::Metadata,
                &[BrokerError::TopicAuthorizationFailed; 8],
            )
            .unwrap(),
        "group_not_authorized" => fake
            .request_errors(
                KafkaApi::OffsetFetch,
                &[BrokerError::GroupAuthorizationFailed; 8],
            )
            .unwrap(),
        other => panic!("unknown fault {other}"),
    }
    let c = RdKafkaClient::new(KafkaConfig::new(&bootstrap).native_offsets(native)).unwrap();
    let cx = ctx(deadline);
    let r = match probe {
        "lag" => {
            ConsumerLagProbe::new(target(), c, group, [topic])
                .observe(&cx)
                .await
        }
        "topic" => {
            TopicDescriptionProbe::new(target(), c, [topic])
                .observe(&cx)
                .await
        }
        "group" => {
            ConsumerGroupProbe::new(target(), c, group)
                .observe(&cx)
                .await
        }
        other => panic!("unknown probe {other}"),
    };
    outcome(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix() {
    let mut rows = Vec::new();
    for (i, line) in MATRIX.lines().enumerate() {
        if i == 0 {
            assert_eq!(line, "probe,fault,kind");
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 3, "line {}: {line}", i + 1);
        rows.push((cols[0].to_owned(), cols[1].to_owned(), cols[2].to_owned()));
    }
    // Every probe × fault appears exactly once.
    let probes = ["lag", "topic", "group"];
    let faults = [
        "none",
        "latency",
        "all_brokers_down",
        "refused",
        "one_broker_down",
        "unknown_topic",
        "unknown_group",
        "group_not_authorized",
    ];
    let mut want: Vec<(String, String)> = probes
        .iter()
        .flat_map(|p| faults.iter().map(move |f| (p.to_string(), f.to_string())))
        .collect();
    want.sort();
    let mut got: Vec<(String, String)> = rows
        .iter()
        .map(|(p, f, _)| (p.clone(), f.clone()))
        .collect();
    got.sort();
    assert_eq!(got, want, "the matrix must list every probe × fault once");

    // Every cell on both paths of the offsets: rb's own connections and librdkafka's.
    let mut wrong = Vec::new();
    for native in [true, false] {
        for (probe, fault, kind) in &rows {
            let actual = run_fault(probe, fault, native).await;
            if &actual != kind {
                wrong.push(format!(
                    "{probe},{fault} (native offsets {native}): expected {kind}, got {actual}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---- TLS and SCRAM ----------------------------------------------------------------------------

fn tls_and_scram_configs() -> Vec<(&'static str, KafkaConfig)> {
    vec![
        (
            "tls",
            KafkaConfig::new("127.0.0.1:9093").tls(rb_probes::kafka::Tls::system()),
        ),
        (
            "scram",
            KafkaConfig::new("127.0.0.1:9092").sasl(Sasl {
                mechanism: SaslMechanism::ScramSha512,
                username: "rb".into(),
                password: Secret::new("scram-pa55-xyz"),
            }),
        ),
    ]
}

#[cfg(not(feature = "kafka-tls"))]
#[test]
fn tls_and_scram_without_the_kafka_tls_feature_are_refused_as_invalid() {
    for (what, cfg) in tls_and_scram_configs() {
        let err = RdKafkaClient::new(cfg)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(err.kind, ErrorKind::Invalid, "{what}: {err}");
        assert!(err.message.contains("librdkafka refused"), "{what}: {err}");
        assert!(!err.message.contains("scram-pa55-xyz"), "{what}: {err}");
    }
}

#[cfg(feature = "kafka-tls")]
#[test]
fn tls_and_scram_with_the_kafka_tls_feature_are_accepted() {
    for (what, cfg) in tls_and_scram_configs() {
        let c = RdKafkaClient::new(cfg).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(!format!("{c:?}").contains("scram-pa55-xyz"));
    }
}

/// Two lag probes for two consumer groups on one target: two names, so one playbook takes both as
/// detectors (the engine refuses two detectors it cannot tell apart) and their metric series and
/// detection state stay apart.
#[tokio::test]
async fn two_lag_probes_of_two_groups_on_one_target_are_told_apart() {
    use rb_core::prelude::*;
    let fake = FakeKafka::start(1).unwrap();
    fake.create_topic("orders", 4, 1).unwrap();
    fake.set_uniform_lag("flink-orders", "orders", 7_000)
        .unwrap();
    fake.set_uniform_lag("audit", "orders", 10).unwrap();
    let a = lag_probe(&fake, "flink-orders", &["orders"]);
    let b = lag_probe(&fake, "audit", &["orders"]);
    assert_eq!(a.name(), "kafka.consumer_lag/flink-orders");
    assert_eq!(b.name(), "kafka.consumer_lag/audit");
    assert_eq!(Probe::id(&a), Probe::id(&b), "one kind");
    let renamed = lag_probe(&fake, "audit", &["orders"]).id("lag");
    assert_eq!(renamed.name(), "lag/audit");

    let playbook = Playbook::new("kafka-backlog", "Kafka backlog grows")
        .detect(
            std::sync::Arc::new(a),
            Schedule::every(Duration::from_secs(30)),
            metric("kafka_consumergroup_lag_max").above(5_000.0),
        )
        .detect(
            std::sync::Arc::new(b),
            Schedule::every(Duration::from_secs(30)),
            metric("kafka_consumergroup_lag_max").above(5_000.0),
        );
    let engine = Engine::builder(Runbook::new("t").playbook(playbook))
        .build()
        .await
        .expect("two lag probes of two groups are two detectors");
    engine.tick().await.unwrap();
    let runs = |group: &str| {
        engine.metrics().counter(
            "rb_probe_runs",
            &[
                ("probe", &format!("kafka.consumer_lag/{group}")),
                ("result", "ok"),
            ],
        )
    };
    assert_eq!(runs("flink-orders"), 1.0);
    assert_eq!(runs("audit"), 1.0);
}
