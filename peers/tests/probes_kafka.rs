//! rb's Kafka probes against a real Kafka 4.x broker (started by `peers/scripts/kafka.sh`): the
//! lag probe's per-partition lag equals the LAG column of `kafka-consumer-groups --describe` on an
//! idle group, the group probe reads its state, the topic probe matches `kafka-topics --describe`,
//! and an unknown group is said to be unknown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_core::time::Clock;
use rb_core::{ErrorKind, Probe, ProbeContext, Target};
use rb_peers::kafka::Kafka;
use rb_peers::PeerEnv;
use rb_probes::kafka::{
    ConsumerGroupProbe, ConsumerLag, ConsumerLagProbe, GroupDescription, GroupState, KafkaConfig,
    PartitionOffsets, RdKafkaClient, TopicDescriptionProbe, TopicDescriptions,
};

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

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn lag_state_and_topic_match_the_kafka_cli() {
    let kafka = Kafka::from_env(&PeerEnv::load().unwrap()).unwrap();
    let topic = unique("rb-probe-lag");
    let group = unique("rb-probe-group");
    let sc = kafka
        .build_lag(&topic, &group, 4, 50, &[0, 10, 35, 50])
        .await
        .unwrap();
    let client = RdKafkaClient::new(KafkaConfig::new(&kafka.bootstrap)).unwrap();
    let target = Target::new("kafka", "peer");

    // Lag, per partition, against kafka-consumer-groups --describe (LAG column).
    let probe = ConsumerLagProbe::new(target.clone(), client.clone(), &group, [topic.as_str()])
        .with_partition_fact(true)
        .with_group_state(true);
    let obs = probe.observe(&ctx()).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let rows = kafka.describe_group(&group).await.unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let offsets: PartitionOffsets = obs.facts.get().unwrap().unwrap();
    for row in &rows {
        let p = offsets
            .partitions
            .iter()
            .find(|p| p.topic == row.topic && p.partition == row.partition)
            .unwrap();
        assert_eq!(p.committed, row.current_offset, "{row:?}");
        assert_eq!(p.end, row.log_end_offset, "{row:?}");
        assert_eq!(
            p.committed.zip(p.end).map(|(c, e)| e - c),
            row.lag,
            "{row:?}"
        );
    }
    // The offsets went over the adapter's own connections (the broker speaks rb's versions of
    // OffsetFetch and ListOffsets); librdkafka's path reads the same.
    assert!(client.native_offsets_active());
    let via_librdkafka =
        RdKafkaClient::new(KafkaConfig::new(&kafka.bootstrap).native_offsets(false)).unwrap();
    let other = ConsumerLagProbe::new(target.clone(), via_librdkafka, &group, [topic.as_str()])
        .with_partition_fact(true)
        .observe(&ctx())
        .await
        .unwrap();
    assert!(other.complete, "{:?}", other.gaps);
    let theirs: PartitionOffsets = other.facts.get().unwrap().unwrap();
    assert_eq!(theirs.partitions, offsets.partitions);
    let s: ConsumerLag = obs.facts.get().unwrap().unwrap();
    assert_eq!(s.lag_sum, sc.total_lag());
    assert_eq!(s.lag_max, Some(50));
    assert_eq!(s.without_commit_count, 0);
    // A group that never joined: Empty, no member (the CLI prints "-" as consumer id).
    assert_eq!(s.state, Some(GroupState::Empty), "{s:?}");
    assert_eq!(s.members, Some(0));
    assert!(rows.iter().all(|r| r.consumer_id == "-"));

    // Group state through its own probe.
    let obs = ConsumerGroupProbe::new(target.clone(), client.clone(), &group)
        .observe(&ctx())
        .await
        .unwrap();
    let d: GroupDescription = obs.facts.get().unwrap().unwrap();
    assert_eq!(d.state, GroupState::Empty);
    assert!(d.members.is_empty());

    // Topic description against kafka-topics --describe.
    let obs = TopicDescriptionProbe::new(target.clone(), client.clone(), [topic.as_str()])
        .observe(&ctx())
        .await
        .unwrap();
    let got: TopicDescriptions = obs.facts.get().unwrap().unwrap();
    let cli = kafka.describe_topic(&topic).await.unwrap();
    let t = &got.topics[0];
    assert_eq!(t.partitions.len() as i32, cli.partition_count);
    assert_eq!(t.replication_factor as i32, cli.replication_factor);
    for (mine, theirs) in t.partitions.iter().zip(&cli.partitions) {
        assert_eq!(mine.partition, theirs.partition);
        assert_eq!(mine.leader, theirs.leader);
        assert_eq!(mine.replicas, theirs.replicas);
        assert_eq!(mine.isr, theirs.isr);
    }
    assert!(t.under_replicated.is_empty() && t.offline.is_empty());

    // An unknown group is said to be unknown, by both probes.
    let nobody = unique("rb-nobody");
    let err = ConsumerLagProbe::new(target.clone(), client.clone(), &nobody, [topic.as_str()])
        .observe(&ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message.contains("unknown consumer group"), "{err}");
    let err = ConsumerGroupProbe::new(target, client, &nobody)
        .observe(&ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message.contains("unknown consumer group"), "{err}");
}

/// The SASL_SSL listeners (TLS with the tier's CA, hostname checked against the certificate's IP
/// names; SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN): the offsets read over them, by rb's own
/// connections and by librdkafka, equal the plaintext listener's; a wrong password is refused as
/// unauthorized on both paths and never shown.
#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn lag_over_sasl_ssl_reads_what_plaintext_reads() {
    use rb_core::Secret;
    use rb_probes::kafka::{Sasl, SaslMechanism, Tls};

    let env = PeerEnv::load().unwrap();
    let kafka = Kafka::from_env(&env).unwrap();
    let secure = env.get("KAFKA_SECURE_BOOTSTRAP").unwrap().to_owned();
    let ca = env.get("KAFKA_CA_FILE").unwrap().to_owned();
    let user = env.get("KAFKA_SASL_USER").unwrap().to_owned();
    let password = env.get("KAFKA_SASL_PASSWORD").unwrap().to_owned();
    let topic = unique("rb-probe-sasl");
    let group = unique("rb-probe-sasl-group");
    kafka
        .build_lag(&topic, &group, 6, 40, &[0, 5, 10, 20, 30, 40])
        .await
        .unwrap();
    let target = Target::new("kafka", "peer");
    let read = |client: RdKafkaClient| {
        let probe = ConsumerLagProbe::new(target.clone(), client, &group, [topic.as_str()])
            .with_partition_fact(true);
        async move { probe.observe(&ctx()).await }
    };
    let plain = read(RdKafkaClient::new(KafkaConfig::new(&kafka.bootstrap)).unwrap())
        .await
        .unwrap();
    assert!(plain.complete, "{:?}", plain.gaps);
    let want: PartitionOffsets = plain.facts.get().unwrap().unwrap();
    assert_eq!(want.partitions.len(), 6);
    let secured = |mechanism, password: &str| {
        KafkaConfig::new(&secure)
            .sasl(Sasl {
                mechanism,
                username: user.clone(),
                password: Secret::new(password),
            })
            .tls(Tls::with_ca_file(&ca))
    };
    for mechanism in [
        SaslMechanism::ScramSha512,
        SaslMechanism::ScramSha256,
        SaslMechanism::Plain,
    ] {
        for native in [true, false] {
            let client =
                RdKafkaClient::new(secured(mechanism, &password).native_offsets(native)).unwrap();
            let obs = read(client.clone())
                .await
                .unwrap_or_else(|e| panic!("{mechanism:?}, native {native}: {e}"));
            assert!(
                obs.complete,
                "{mechanism:?}, native {native}: {:?}",
                obs.gaps
            );
            assert_eq!(client.native_offsets_active(), native, "{mechanism:?}");
            let got: PartitionOffsets = obs.facts.get().unwrap().unwrap();
            assert_eq!(
                got.partitions, want.partitions,
                "{mechanism:?}, native {native}"
            );
        }
    }
    for mechanism in [SaslMechanism::ScramSha512, SaslMechanism::Plain] {
        let wrong = "not-the-password-3c9";
        let client = RdKafkaClient::new(secured(mechanism, wrong)).unwrap();
        let err = read(client).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthorized, "{mechanism:?}: {err}");
        assert!(!format!("{err} {err:?}").contains(wrong), "{err}");
    }
}
