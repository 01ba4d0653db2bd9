//! The rdkafka adapter over secured listeners: `rb_testkit`'s `SecureListeners` (TLS with the
//! repository's test CA; SASL PLAIN and SCRAM-SHA-256/512 checked as a broker checks them) in front
//! of FakeKafka. librdkafka's own SASL and TLS (its Metadata requests and, with
//! `native_offsets(false)`, the offsets) and rb's connections (OffsetFetch, ListOffsets) both
//! authenticate; the lag read is exact and costs one OffsetFetch and one ListOffsets per leader; a
//! wrong password or a certificate that does not name the host is told as such, not as a timeout.
#![cfg(feature = "kafka-tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rb_core::time::Clock;
use rb_core::{ErrorKind, Probe, ProbeContext, Secret, Target};
use rb_probes::kafka::{
    ConsumerLagProbe, KafkaConfig, PartitionOffsets, RdKafkaClient, Sasl, SaslMechanism, Tls,
};
use rb_testkit::kafka::{seeded_lags, FakeKafka, KafkaApi, SecureListenerConfig};

const USER: &str = "rb-probe";
const PASSWORD: &str = "tls-scram-pw-4411";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

fn ctx(timeout: Duration) -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), timeout)
}

fn secured(bootstrap: &str, mechanism: SaslMechanism, password: &str) -> KafkaConfig {
    KafkaConfig::new(bootstrap)
        .sasl(Sasl {
            mechanism,
            username: USER.into(),
            password: Secret::new(password),
        })
        // The test certificate names cassandra.test; the chain is still checked.
        .tls(Tls {
            verify_hostname: false,
            ..Tls::with_ca_file(fixture("ca.pem"))
        })
}

fn lags(obs: &rb_core::Observation) -> Vec<Option<i64>> {
    let fact: PartitionOffsets = obs.facts.get().unwrap().unwrap();
    let mut by: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    for p in fact.partitions {
        by.insert(p.partition, p.committed.map(|c| p.end.unwrap() - c));
    }
    by.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_over_sasl_ssl_is_exact_on_both_paths_and_costs_one_request_per_broker() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 96, 3).unwrap();
    fake.set_lag(
        "flink-orders",
        "orders",
        &seeded_lags(11, 96, 0..=5_000).unwrap(),
    )
    .unwrap();
    let truth = fake.lag("flink-orders", "orders").unwrap();
    let listeners = fake
        .secure_listeners(
            SecureListenerConfig::sasl_ssl(fixture("node.pem"), fixture("node.key"))
                .user(USER, PASSWORD),
        )
        .await
        .unwrap();
    for mechanism in [
        SaslMechanism::ScramSha512,
        SaslMechanism::ScramSha256,
        SaslMechanism::Plain,
    ] {
        for native in [true, false] {
            let what = format!("{mechanism:?}, native {native}");
            let client = RdKafkaClient::new(
                secured(&listeners.bootstrap_servers(), mechanism, PASSWORD).native_offsets(native),
            )
            .unwrap();
            let probe = ConsumerLagProbe::new(
                Target::new("kafka", "secured"),
                client.clone(),
                "flink-orders",
                ["orders"],
            )
            .with_partition_fact(true);
            // Warm up: connections, authentication, metadata.
            let obs = probe.observe(&ctx(Duration::from_secs(15))).await.unwrap();
            assert!(obs.complete, "{what}: {:?}", obs.gaps);
            assert_eq!(lags(&obs), truth, "{what}");
            assert_eq!(client.native_offsets_active(), native, "{what}");
            if native {
                fake.clear_requests().unwrap();
                let obs = probe.observe(&ctx(Duration::from_secs(15))).await.unwrap();
                assert_eq!(lags(&obs), truth, "{what}");
                assert_eq!(
                    fake.request_count(KafkaApi::OffsetFetch).unwrap(),
                    1,
                    "{what}"
                );
                let per_broker = fake.requests_by_broker(KafkaApi::ListOffsets).unwrap();
                assert_eq!(per_broker.len(), 3, "{what}: {per_broker:?}");
                assert!(
                    per_broker.values().all(|&n| n == 1),
                    "{what}: {per_broker:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_unauthorized_on_both_paths_and_never_shown() {
    let fake = FakeKafka::start(1).unwrap();
    fake.create_topic("orders", 4, 1).unwrap();
    fake.set_uniform_lag("g", "orders", 5).unwrap();
    let listeners = fake
        .secure_listeners(
            SecureListenerConfig::sasl_ssl(fixture("node.pem"), fixture("node.key"))
                .user(USER, PASSWORD),
        )
        .await
        .unwrap();
    let wrong = "wr0ng-pw-8080";
    for mechanism in [SaslMechanism::ScramSha512, SaslMechanism::Plain] {
        for native in [true, false] {
            let client = RdKafkaClient::new(
                secured(&listeners.bootstrap_servers(), mechanism, wrong).native_offsets(native),
            )
            .unwrap();
            let err =
                ConsumerLagProbe::new(Target::new("kafka", "secured"), client, "g", ["orders"])
                    .observe(&ctx(Duration::from_secs(3)))
                    .await
                    .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unauthorized, "{mechanism:?}: {err}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(wrong), "{shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_name_the_host_is_invalid_not_a_timeout() {
    let fake = FakeKafka::start(1).unwrap();
    fake.create_topic("orders", 4, 1).unwrap();
    fake.set_uniform_lag("g", "orders", 5).unwrap();
    let listeners = fake
        .secure_listeners(
            SecureListenerConfig::sasl_ssl(fixture("node.pem"), fixture("node.key"))
                .user(USER, PASSWORD),
        )
        .await
        .unwrap();
    // Hostname verification on: the certificate names cassandra.test, not 127.0.0.1. On both
    // paths (through librdkafka, rb's connections only explain).
    for native in [true, false] {
        let cfg = KafkaConfig::new(listeners.bootstrap_servers())
            .sasl(Sasl {
                mechanism: SaslMechanism::ScramSha512,
                username: USER.into(),
                password: Secret::new(PASSWORD),
            })
            .tls(Tls::with_ca_file(fixture("ca.pem")))
            .native_offsets(native);
        let client = RdKafkaClient::new(cfg).unwrap();
        let err = ConsumerLagProbe::new(Target::new("kafka", "secured"), client, "g", ["orders"])
            .observe(&ctx(Duration::from_secs(3)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "native {native}: {err}");
        // rb's own connection says why (librdkafka keeps its TLS refusals to itself).
        assert!(
            err.message.contains("not valid for name") && err.message.contains("127.0.0.1"),
            "{err}"
        );
    }
}
