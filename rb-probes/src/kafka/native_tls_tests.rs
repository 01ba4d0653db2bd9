//! rb's own connections over TLS and SASL, against librdkafka's mock cluster behind
//! `rb_testkit`'s secured listeners (TLS with the repository's test CA; SaslHandshake and
//! SaslAuthenticate with PLAIN and SCRAM-SHA-256/512 checked as a broker checks them; nothing but
//! ApiVersions before authentication).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rb_core::{ErrorKind, Secret};
use rb_testkit::kafka::{
    FakeKafka, KafkaApi, SaslMechanism as Enabled, SecureListenerConfig, SecureListeners,
};

use super::super::client::{BrokerInfo, TopicPartition};
use super::super::config::{KafkaConfig, Sasl, SaslMechanism, Tls};
use super::{Fail, Wire};

const USER: &str = "rb-probe";
const PASSWORD: &str = "s3cr3t-pw-91";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// `SASL_SSL` with every mechanism, the test certificate (it names `cassandra.test`).
fn listener() -> SecureListenerConfig {
    SecureListenerConfig::sasl_ssl(fixture("node.pem"), fixture("node.key")).user(USER, PASSWORD)
}

async fn start(fake: &FakeKafka, config: SecureListenerConfig) -> SecureListeners {
    fake.secure_listeners(config).await.unwrap()
}

fn brokers(l: &SecureListeners, n: i32) -> Vec<BrokerInfo> {
    (1..=n)
        .map(|id| {
            let (host, port) = l.addr(id).unwrap().rsplit_once(':').unwrap();
            BrokerInfo {
                id,
                host: host.to_owned(),
                port: port.parse().unwrap(),
            }
        })
        .collect()
}

fn sasl(mechanism: SaslMechanism, password: &str) -> Sasl {
    Sasl {
        mechanism,
        username: USER.into(),
        password: Secret::new(password),
    }
}

/// Trusts the test CA; the certificate names `cassandra.test`, not 127.0.0.1.
fn tls() -> Tls {
    Tls {
        verify_hostname: false,
        ..Tls::with_ca_file(fixture("ca.pem"))
    }
}

fn wire(listeners: &SecureListeners, config: KafkaConfig) -> Arc<Wire> {
    let w = Wire::new(&config).unwrap();
    w.set_brokers(&brokers(listeners, 3));
    Arc::new(w)
}

fn config(listeners: &SecureListeners) -> KafkaConfig {
    KafkaConfig::new(listeners.bootstrap_servers())
}

fn client_error(e: Fail) -> super::ClientError {
    match e {
        Fail::Client(e) => e,
        Fail::Unsupported(why) => panic!("unsupported: {why}"),
    }
}

fn cluster() -> (FakeKafka, Vec<TopicPartition>, Arc<super::Leaders>) {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 12, 3).unwrap();
    fake.set_lag("g", "orders", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        .unwrap();
    let parts: Vec<TopicPartition> = (0..12).map(|p| TopicPartition::new("orders", p)).collect();
    let leaders = (0..12)
        .map(|p| fake.partition_leader("orders", p).unwrap())
        .collect();
    (
        fake,
        parts,
        Arc::new(HashMap::from([("orders".to_owned(), leaders)])),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_over_tls_and_each_sasl_mechanism_equal_the_cluster() {
    let (fake, parts, leaders) = cluster();
    let listeners = start(&fake, listener()).await;
    let committed: Vec<Option<i64>> = fake.committed("g", "orders").unwrap();
    let ends = fake.end_offsets("orders").unwrap();
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        fake.clear_requests().unwrap();
        let w = wire(
            &listeners,
            config(&listeners)
                .tls(tls())
                .sasl(sasl(mechanism, PASSWORD)),
        );
        let got = w
            .committed("g", &parts, Duration::from_secs(10))
            .await
            .unwrap();
        let got: Vec<Option<i64>> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, committed, "{mechanism:?}");
        let (got, moved) = w
            .end_offsets(parts.clone(), leaders.clone(), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(moved.is_empty());
        let got: Vec<i64> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, ends, "{mechanism:?}");
        // Still one OffsetFetch, one ListOffsets per leader.
        assert_eq!(fake.request_count(KafkaApi::OffsetFetch).unwrap(), 1);
        assert_eq!(fake.request_count(KafkaApi::ListOffsets).unwrap(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_over_plaintext_and_tls_without_sasl() {
    let (fake, parts, _) = cluster();
    let committed = fake.committed("g", "orders").unwrap();
    let creds = sasl(SaslMechanism::ScramSha512, PASSWORD);
    // SASL_PLAINTEXT.
    let listeners = start(
        &fake,
        SecureListenerConfig::sasl_plaintext().user(USER, PASSWORD),
    )
    .await;
    let w = wire(&listeners, config(&listeners).sasl(creds.clone()));
    let got = w
        .committed("g", &parts, Duration::from_secs(10))
        .await
        .unwrap();
    let got: Vec<Option<i64>> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, committed);
    drop(listeners);
    // SSL without SASL.
    let listeners = start(&fake, listener().mechanisms([])).await;
    let w = wire(&listeners, config(&listeners).tls(tls()));
    let got = w
        .committed("g", &parts, Duration::from_secs(10))
        .await
        .unwrap();
    let got: Vec<Option<i64>> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, committed);
    // TLS only against a SASL_SSL listener: the broker closes the connection at the first
    // request that is not ApiVersions.
    let listeners = start(&fake, listener()).await;
    let w = wire(&listeners, config(&listeners).tls(tls()));
    let e = client_error(
        w.committed("g", &parts, Duration::from_secs(10))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_unauthorized_and_never_shown() {
    let (fake, parts, _) = cluster();
    let listeners = start(&fake, listener()).await;
    for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha512] {
        let w = wire(
            &listeners,
            config(&listeners)
                .tls(tls())
                .sasl(sasl(mechanism, "wr0ng-pw-55")),
        );
        let e = client_error(
            w.committed("g", &parts, Duration::from_secs(10))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
        assert!(
            e.message.contains("SASL_AUTHENTICATION_FAILED")
                && e.message.contains(USER)
                && e.message.contains(listeners.addr(1).unwrap()),
            "{e}"
        );
        assert!(!e.message.contains("wr0ng-pw-55"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_cannot_prove_the_key_is_refused() {
    let (fake, parts, _) = cluster();
    let listeners = start(&fake, listener().forge_server_signature(true)).await;
    let w = wire(
        &listeners,
        config(&listeners)
            .tls(tls())
            .sasl(sasl(SaslMechanism::ScramSha256, PASSWORD)),
    );
    let e = client_error(
        w.committed("g", &parts, Duration::from_secs(10))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(e.message.contains("signature is wrong"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mechanism_the_listener_does_not_enable_is_invalid_and_says_which_it_does() {
    let (fake, parts, _) = cluster();
    let listeners = start(&fake, listener().mechanisms([Enabled::ScramSha512])).await;
    let w = wire(
        &listeners,
        config(&listeners)
            .tls(tls())
            .sasl(sasl(SaslMechanism::ScramSha256, PASSWORD)),
    );
    let e = client_error(
        w.committed("g", &parts, Duration::from_secs(10))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    assert!(
        e.message.contains("UNSUPPORTED_SASL_MECHANISM") && e.message.contains("[SCRAM-SHA-512]"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_checked() {
    let (fake, parts, _) = cluster();
    let listeners = start(&fake, listener()).await;
    let creds = sasl(SaslMechanism::ScramSha512, PASSWORD);
    // An unrelated CA: the chain is refused whatever the hostname setting.
    let other = Tls {
        verify_hostname: false,
        ..Tls::with_ca_file(fixture("other-ca.pem"))
    };
    // The right CA, but the certificate names cassandra.test, not 127.0.0.1.
    let named = Tls::with_ca_file(fixture("ca.pem"));
    for (tls, want) in [(other, "UnknownIssuer"), (named, "not valid for name")] {
        let w = wire(&listeners, config(&listeners).tls(tls).sasl(creds.clone()));
        let e = client_error(
            w.committed("g", &parts, Duration::from_secs(10))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
        assert!(
            e.message.contains("TLS handshake refused") && e.message.contains(want),
            "{e}"
        );
        assert!(e.message.contains(listeners.addr(1).unwrap()), "{e}");
    }
}

#[test]
fn unusable_tls_files_are_named() {
    let missing = KafkaConfig::new("a:1").tls(Tls::with_ca_file("/nonexistent/ca.pem"));
    let e = Wire::new(&missing).err().unwrap();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    let half = KafkaConfig::new("a:1").tls(Tls {
        client_cert_file: Some(fixture("node.pem")),
        ..tls()
    });
    let e = Wire::new(&half).err().unwrap();
    assert!(e.contains("both"), "{e}");
    let not_pem = KafkaConfig::new("a:1").tls(Tls::with_ca_file(fixture("README.md")));
    let e = Wire::new(&not_pem).err().unwrap();
    assert!(e.contains("no certificate"), "{e}");
    // Mutual TLS material that rustls reads.
    let mtls = KafkaConfig::new("a:1").tls(tls().client_cert(
        fixture("node.pem"),
        fixture("node.key"),
        None,
    ));
    assert!(Wire::new(&mtls).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_about_to_end_is_replaced_before_use() {
    let (fake, parts, _) = cluster();
    let creds = sasl(SaslMechanism::ScramSha512, PASSWORD);
    for (lifetime_ms, new_connections) in [(0, false), (2_000, true)] {
        let listeners = start(
            &fake,
            listener().session_lifetime(Duration::from_millis(lifetime_ms)),
        )
        .await;
        let w = wire(
            &listeners,
            config(&listeners).tls(tls()).sasl(creds.clone()),
        );
        w.committed("g", &parts, Duration::from_secs(10))
            .await
            .unwrap();
        let after_first = listeners.connections_accepted();
        w.committed("g", &parts, Duration::from_secs(10))
            .await
            .unwrap();
        let after_second = listeners.connections_accepted();
        assert_eq!(
            after_second > after_first,
            new_connections,
            "lifetime {lifetime_ms} ms: {after_first} then {after_second} connections"
        );
    }
}
