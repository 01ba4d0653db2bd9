//! rb-probes' topic probe against the real three-broker Kafka 4.x cluster of the tier (started by
//! `peers/scripts/kafka.sh`: brokers 1–3 on 127.0.0.1–3, node 1 also the controller): with broker
//! [`STOPPED`] stopped for real (`kafka.sh stop-broker`), the partitions that had a replica on it
//! are under-replicated and the one it held alone is offline — per topic and partition, exactly as
//! `kafka-topics --describe --under-replicated-partitions` / `--unavailable-partitions` list them —
//! and once it is started again (`kafka.sh start-broker`) every partition heals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rb_core::time::Clock;
use rb_core::{Observation, Probe, ProbeContext, Target};
use rb_peers::kafka::{Kafka, PartitionFilter};
use rb_peers::PeerEnv;
use rb_probes::kafka::{KafkaConfig, RdKafkaClient, TopicDescriptionProbe, TopicDescriptions};

/// The broker the test stops (node 1 runs the controller and stays up).
const STOPPED: i32 = 2;
/// How long the cluster may take to show the stop, and to heal after the restart.
const SETTLE: Duration = Duration::from_secs(60);

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn ctx() -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), Duration::from_secs(20))
}

/// Per topic: (under-replicated partitions, offline partitions).
type Health = BTreeMap<String, (Vec<i32>, Vec<i32>)>;

fn health(d: &TopicDescriptions) -> Health {
    d.topics
        .iter()
        .map(|t| {
            (
                t.topic.clone(),
                (t.under_replicated.clone(), t.offline.clone()),
            )
        })
        .collect()
}

/// The value of the one sample `name{topic}` of an observation (`topic: None`: no topic label).
fn sample(obs: &Observation, name: &str, topic: Option<&str>) -> f64 {
    let found: Vec<f64> = obs
        .samples
        .iter()
        .filter(|s| s.name == name && s.labels.get("topic").map(String::as_str) == topic)
        .map(|s| s.value)
        .collect();
    assert_eq!(found.len(), 1, "{name} {topic:?} in {:?}", obs.samples);
    found[0]
}

/// Observe until the probe's health is `want` (at most [`SETTLE`]); the last observation.
async fn observe_until<P: Probe>(
    probe: &P,
    want: &Health,
    what: &str,
) -> (Observation, TopicDescriptions) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let obs = probe.observe(&ctx()).await;
        if let Ok(obs) = obs {
            let d: TopicDescriptions = obs.facts.get().unwrap().unwrap();
            if &health(&d) == want {
                return (obs, d);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen in {SETTLE:?}; last description {d:#?}"
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "{what}: not seen in {SETTLE:?}; last error {obs:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The CLI's lists, in the probe's shape: per topic, the partitions it lists under each filter.
async fn cli_health(kafka: &Kafka, topics: &[&str]) -> Health {
    let mut h: Health = topics
        .iter()
        .map(|t| (t.to_string(), (Vec::new(), Vec::new())))
        .collect();
    for (topic, p) in kafka
        .describe_partitions(topics, PartitionFilter::UnderReplicated)
        .await
        .unwrap()
    {
        h.get_mut(&topic).unwrap().0.push(p.partition);
    }
    for (topic, p) in kafka
        .describe_partitions(topics, PartitionFilter::Unavailable)
        .await
        .unwrap()
    {
        h.get_mut(&topic).unwrap().1.push(p.partition);
    }
    h
}

/// The probe's partitions (leader, replicas, ISR) equal `kafka-topics --describe`'s, topic by
/// topic.
async fn same_as_cli(kafka: &Kafka, d: &TopicDescriptions) {
    for t in &d.topics {
        let cli = kafka.describe_topic(&t.topic).await.unwrap();
        assert_eq!(
            t.partitions.len() as i32,
            cli.partition_count,
            "{}",
            t.topic
        );
        for (mine, theirs) in t.partitions.iter().zip(&cli.partitions) {
            assert_eq!(mine.partition, theirs.partition, "{}", t.topic);
            assert_eq!(
                mine.leader, theirs.leader,
                "{} p{}",
                t.topic, mine.partition
            );
            assert_eq!(
                mine.replicas, theirs.replicas,
                "{} p{}",
                t.topic, mine.partition
            );
            assert_eq!(mine.isr, theirs.isr, "{} p{}", t.topic, mine.partition);
        }
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn a_stopped_broker_shows_under_replicated_and_offline_partitions_then_heals() {
    let kafka = Kafka::from_env(&PeerEnv::load().unwrap()).unwrap();
    assert_eq!(
        kafka.brokers.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "the tier runs three brokers"
    );
    // Replication 3: every partition has a replica on every broker; broker 2 leads partition 1.
    let rf3 = unique("rb-brokers-rf3");
    kafka
        .create_topic_on(&rf3, &[vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]])
        .await
        .unwrap();
    // Replication 2: only partition 1 has a replica on broker 2.
    let rf2 = unique("rb-brokers-rf2");
    kafka
        .create_topic_on(&rf2, &[vec![1, 3], vec![3, 2]])
        .await
        .unwrap();
    // Replication 1: partition 0 lives on broker 2 alone, partition 1 on broker 1.
    let rf1 = unique("rb-brokers-rf1");
    kafka
        .create_topic_on(&rf1, &[vec![STOPPED], vec![1]])
        .await
        .unwrap();
    let topics = [rf3.as_str(), rf2.as_str(), rf1.as_str()];
    let client = RdKafkaClient::new(KafkaConfig::new(&kafka.bootstrap)).unwrap();
    let probe = TopicDescriptionProbe::new(Target::new("kafka", "peer"), client, topics);
    let healthy: Health = topics
        .iter()
        .map(|t| (t.to_string(), (Vec::new(), Vec::new())))
        .collect();

    // All three brokers up: nothing under-replicated, nothing offline, as the CLI says.
    let (obs, d) = observe_until(&probe, &healthy, "a healthy cluster").await;
    assert_eq!(
        d.brokers.iter().map(|b| b.id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        sample(&obs, "kafka_topic_replication_factor", Some(&rf3)),
        3.0
    );
    assert_eq!(
        sample(&obs, "kafka_topic_replication_factor", Some(&rf2)),
        2.0
    );
    assert_eq!(
        sample(&obs, "kafka_topic_replication_factor", Some(&rf1)),
        1.0
    );
    assert_eq!(cli_health(&kafka, &topics).await, healthy);
    same_as_cli(&kafka, &d).await;

    // Broker 2 stopped (a controlled shutdown): every rf3 partition and rf2's partition 1 lost a
    // replica; rf1's partition 0 lost its only one and is offline.
    let t = Instant::now();
    // Started again when dropped, should an assertion below fail.
    let stopped = kafka.stop_broker(STOPPED).await.unwrap();
    eprintln!("broker {STOPPED} stopped in {:?}", t.elapsed());
    let broken: Health = [
        (rf3.clone(), (vec![0, 1, 2], vec![])),
        (rf2.clone(), (vec![1], vec![])),
        (rf1.clone(), (vec![0], vec![0])),
    ]
    .into_iter()
    .collect();
    let t = Instant::now();
    let seen = observe_until(&probe, &broken, "the stopped broker").await;
    eprintln!("the probe saw it {:?} after the stop", t.elapsed());
    let (obs, d) = seen;
    eprintln!("{d:#?}");
    // The CLI lists the same partitions (run while the broker is still down).
    assert_eq!(cli_health(&kafka, &topics).await, broken);
    same_as_cli(&kafka, &d).await;
    assert_eq!(d.brokers.iter().map(|b| b.id).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(sample(&obs, "kafka_brokers", None), 2.0);
    for (topic, (under, offline)) in &broken {
        assert_eq!(
            sample(&obs, "kafka_topic_under_replicated_partitions", Some(topic)),
            under.len() as f64,
            "{topic}"
        );
        assert_eq!(
            sample(&obs, "kafka_topic_offline_partitions", Some(topic)),
            offline.len() as f64,
            "{topic}"
        );
    }
    let by_topic = |name: &str| d.topics.iter().find(|t| t.topic == name).unwrap();
    // The survivors lead: rf3's partition 1 moved off broker 2; rf1's partition 0 has no leader.
    assert!(by_topic(&rf3)
        .partitions
        .iter()
        .all(|p| p.leader.is_some_and(|l| l != STOPPED) && !p.isr.contains(&STOPPED)));
    assert_eq!(by_topic(&rf1).partitions[0].leader, None);
    assert_eq!(by_topic(&rf1).partitions[1].leader, Some(1));

    // Broker 2 back: it rejoins every ISR and leads rf1's partition 0 again.
    let t = Instant::now();
    stopped.start().await.unwrap();
    eprintln!("broker {STOPPED} started in {:?}", t.elapsed());
    let t = Instant::now();
    let (obs, d) = observe_until(&probe, &healthy, "the healed cluster").await;
    eprintln!("the probe saw it heal {:?} after the start", t.elapsed());
    assert_eq!(
        d.brokers.iter().map(|b| b.id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(sample(&obs, "kafka_brokers", None), 3.0);
    assert_eq!(by_topic_leader(&d, &rf1, 0), Some(STOPPED));
    assert_eq!(cli_health(&kafka, &topics).await, healthy);
    same_as_cli(&kafka, &d).await;

    for t in topics {
        kafka.delete_topic(t).await.unwrap();
    }
}

fn by_topic_leader(d: &TopicDescriptions, topic: &str, partition: i32) -> Option<i32> {
    d.topics
        .iter()
        .find(|t| t.topic == topic)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
        .and_then(|p| p.leader)
}
