#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Consumer-group lag of 2,000 and 10,000 partitions on 3 mock brokers (librdkafka's mock cluster,
//! through rdkafka), with 0 and 5 ms of injected round-trip time: the batched probe
//! (`ConsumerLagProbe`: Metadata, then OffsetFetch and one ListOffsets per leader concurrently)
//! beside a naive loop (`fetch_watermarks` per partition). The batched probe is measured on rb's
//! own connections (`batched_probe`), through librdkafka (`batched_probe_librdkafka`) and on rb's
//! connections over TLS and SASL SCRAM-SHA-512 (`batched_probe_sasl_ssl`: `rb_testkit`'s
//! SASL_SSL listeners in front of the mock brokers, whose decrypting and forwarding is in the
//! figure too).
//!
//! Run: `cargo bench -p rb-benches --bench kafka_lag`. Results are recorded in `benches/README.md`.
//! `RB_BENCH_PARTITIONS_PER_REQUEST=<n>` measures another `KafkaConfig::partitions_per_request`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rb_core::time::Clock;
use rb_core::Secret;
use rb_core::{Probe, ProbeContext, Target};
use rb_probes::kafka::{
    ConsumerLag, ConsumerLagProbe, KafkaClient, KafkaConfig, RdKafkaClient, Sasl, SaslMechanism,
    Tls, TopicPartition,
};
use rb_testkit::kafka::{seeded_lags, FakeKafka, SecureListenerConfig};

const GROUP: &str = "flink-orders";
const TOPIC: &str = "orders";

fn cluster(partitions: i32) -> FakeKafka {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic(TOPIC, partitions, 3).unwrap();
    let lags = seeded_lags(11, partitions as usize, 0..=200).unwrap();
    fake.set_lag(GROUP, TOPIC, &lags).unwrap();
    fake
}

/// The repository's test TLS material (`rb-probes/tests/fixtures/tls`).
fn fixture(name: &str) -> String {
    format!(
        "{}/../rb-probes/tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Measures one observation of `probe` at 0 and 5 ms of round-trip time, after checking it reads
/// `truth`.
fn measure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    fake: &FakeKafka,
    name: &str,
    probe: &ConsumerLagProbe<RdKafkaClient>,
    partitions: i32,
    truth: i64,
) {
    for rtt_ms in [0u64, 5] {
        fake.set_rtt_all(Duration::from_millis(rtt_ms)).unwrap();
        // Warm: connections, coordinator; and check the reading is exact.
        let obs = rt.block_on(probe.observe(&ctx())).unwrap();
        let s: ConsumerLag = obs.facts.get().unwrap().unwrap();
        assert_eq!(s.lag_sum, truth);
        assert!(obs.complete);
        group.throughput(Throughput::Elements(partitions as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("{name}/rtt_{rtt_ms}ms"), partitions),
            &partitions,
            |b, _| {
                b.to_async(rt).iter(|| async {
                    let obs = probe.observe(&ctx()).await.unwrap();
                    assert!(obs.complete);
                    obs
                })
            },
        );
    }
    fake.set_rtt_all(Duration::ZERO).unwrap();
}

fn ctx() -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), Duration::from_secs(60))
}

fn bench_lag(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `RB_BENCH_PARTITIONS_PER_REQUEST=n` overrides `KafkaConfig::partitions_per_request` (to
    // compare batch sizes); unset, the default is measured.
    let per_request: Option<usize> = std::env::var("RB_BENCH_PARTITIONS_PER_REQUEST")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut group = c.benchmark_group("kafka_lag");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    for partitions in [2_000i32, 10_000] {
        let fake = cluster(partitions);
        let truth = fake.total_lag(GROUP, TOPIC).unwrap();
        let mut client = None;
        for (name, native) in [("batched_probe", true), ("batched_probe_librdkafka", false)] {
            let mut config = KafkaConfig::new(fake.bootstrap_servers()).native_offsets(native);
            if let Some(n) = per_request {
                config = config.partitions_per_request(n);
            }
            let c = RdKafkaClient::new(config).unwrap();
            let probe =
                ConsumerLagProbe::new(Target::new("kafka", "bench"), c.clone(), GROUP, [TOPIC]);
            client.get_or_insert(c);
            measure(&mut group, &rt, &fake, name, &probe, partitions, truth);
        }
        let client = client.unwrap();

        // The naive loop: one ListOffsets per partition (plus the one OffsetFetch). At 5 ms it
        // costs partitions × 5 ms, so it runs on the first 200 partitions only (linear: ×10 for
        // 2,000); at 0 ms on all 2,000. Not at 10,000.
        if partitions == 2_000 {
            for (rtt_ms, n) in [(0u64, 2_000i32), (5, 200)] {
                fake.set_rtt_all(Duration::from_millis(rtt_ms)).unwrap();
                let parts: Vec<TopicPartition> =
                    (0..n).map(|p| TopicPartition::new(TOPIC, p)).collect();
                group.throughput(Throughput::Elements(n as u64));
                group.bench_with_input(
                    BenchmarkId::new(format!("naive_per_partition/rtt_{rtt_ms}ms"), n),
                    &n,
                    |b, _| {
                        b.to_async(&rt).iter(|| async {
                            let committed = client
                                .committed_offsets(GROUP, &parts, Duration::from_secs(60))
                                .await
                                .unwrap();
                            let ends = client
                                .end_offsets_one_by_one(&parts, Duration::from_secs(60))
                                .await
                                .unwrap();
                            let lag: i64 = committed
                                .iter()
                                .zip(&ends)
                                .map(|(c, e)| e.as_ref().unwrap() - c.as_ref().unwrap().unwrap())
                                .sum();
                            lag
                        })
                    },
                );
            }
            fake.set_rtt_all(Duration::ZERO).unwrap();
        }

        // Last (from here the brokers advertise the secured listeners): rb's connections over
        // TLS and SCRAM-SHA-512.
        let listeners = rt
            .block_on(
                fake.secure_listeners(
                    SecureListenerConfig::sasl_ssl(fixture("node.pem"), fixture("node.key"))
                        .user("rb-bench", "rb-bench-pw"),
                ),
            )
            .unwrap();
        let config = KafkaConfig::new(listeners.bootstrap_servers())
            .sasl(Sasl {
                mechanism: SaslMechanism::ScramSha512,
                username: "rb-bench".into(),
                password: Secret::new("rb-bench-pw"),
            })
            // The test certificate names cassandra.test; the chain is checked.
            .tls(Tls {
                verify_hostname: false,
                ..Tls::with_ca_file(fixture("ca.pem"))
            });
        let c = RdKafkaClient::new(config).unwrap();
        let probe = ConsumerLagProbe::new(Target::new("kafka", "bench"), c, GROUP, [TOPIC]);
        measure(
            &mut group,
            &rt,
            &fake,
            "batched_probe_sasl_ssl",
            &probe,
            partitions,
            truth,
        );
        drop(listeners);
    }
    group.finish();
}

criterion_group!(benches, bench_lag);
criterion_main!(benches);
