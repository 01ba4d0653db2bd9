//! rb's own connections over TLS and SASL, against librdkafka's mock cluster behind a proxy that
//! does what a `SASL_SSL` listener does before the mock sees a request: the TLS handshake (the
//! repository's test CA), SaslHandshake and SaslAuthenticate (PLAIN, SCRAM-SHA-256/512, the
//! client's proof checked the way a broker checks it: `H(proof XOR signature) == StoredKey`), and
//! nothing but ApiVersions before authentication. Requests after that go to the mock broker as
//! they are; ApiVersions answers gain the two SASL APIs and FindCoordinator answers name the
//! proxy, as a real listener's would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rb_core::{ErrorKind, Secret};
use rb_testkit::kafka::{FakeKafka, KafkaApi};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::super::client::{BrokerInfo, TopicPartition};
use super::super::config::{KafkaConfig, Sasl, SaslMechanism, Tls};
use super::super::sasl::Hash;
use super::super::wire::Reader;
use super::{Fail, Wire};

const USER: &str = "rb-probe";
const PASSWORD: &str = "s3cr3t-pw-91";
const SALT: &[u8] = b"rb-test-salt-16b";
const ITERATIONS: u32 = 4096;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// What the listener in front of the mock brokers does.
#[derive(Clone)]
struct Listener {
    tls: bool,
    mechanisms: Vec<&'static str>,
    /// SaslAuthenticate v1's session lifetime.
    lifetime_ms: i64,
    /// Answer SCRAM's final message with a signature made from another password.
    forge_signature: bool,
}

impl Default for Listener {
    fn default() -> Self {
        Self {
            tls: true,
            mechanisms: vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
            lifetime_ms: 0,
            forge_signature: false,
        }
    }
}

struct Proxies {
    /// Proxy address per broker id (index id − 1).
    addrs: Vec<String>,
    accepted: Arc<AtomicUsize>,
}

impl Proxies {
    fn brokers(&self) -> Vec<BrokerInfo> {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (host, port) = a.rsplit_once(':').unwrap();
                BrokerInfo {
                    id: i as i32 + 1,
                    host: host.to_owned(),
                    port: port.parse().unwrap(),
                }
            })
            .collect()
    }
}

fn acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("node.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("node.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn start(fake: &FakeKafka, listener: Listener) -> Proxies {
    let upstream: Vec<String> = fake
        .bootstrap_servers()
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut sockets = Vec::new();
    let mut map = HashMap::new();
    for up in &upstream {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        map.insert(up.clone(), l.local_addr().unwrap().to_string());
        sockets.push(l);
    }
    let map = Arc::new(map);
    let accepted = Arc::new(AtomicUsize::new(0));
    let acceptor = acceptor();
    let mut addrs = Vec::new();
    for (socket, up) in sockets.into_iter().zip(upstream) {
        addrs.push(socket.local_addr().unwrap().to_string());
        let (map, listener, acceptor, accepted) = (
            map.clone(),
            listener.clone(),
            acceptor.clone(),
            accepted.clone(),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = socket.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (map, listener, acceptor, up) =
                    (map.clone(), listener.clone(), acceptor.clone(), up.clone());
                tokio::spawn(async move {
                    if listener.tls {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            let _ = serve(s, &up, &map, &listener).await;
                        }
                    } else {
                        let _ = serve(tcp, &up, &map, &listener).await;
                    }
                });
            }
        });
    }
    Proxies { addrs, accepted }
}

async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).await?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, body: &[u8]) -> std::io::Result<()> {
    s.write_all(&(body.len() as i32).to_be_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
    out.extend_from_slice(b);
}

/// The server side of one SASL exchange.
enum Server {
    Start,
    ScramFinal {
        hash: Hash,
        first_bare: String,
        server_first: String,
    },
    Done,
}

/// One SaslAuthenticate: the error code (0 or 58) and the bytes to answer.
fn authenticate(state: &mut Server, mechanism: &str, client: &[u8], forge: bool) -> (i16, Vec<u8>) {
    const FAILED: (i16, Vec<u8>) = (58, Vec::new());
    match std::mem::replace(state, Server::Done) {
        Server::Start if mechanism == "PLAIN" => {
            let want = format!("\0{USER}\0{PASSWORD}");
            if client == want.as_bytes() {
                (0, Vec::new())
            } else {
                FAILED
            }
        }
        Server::Start => {
            let hash = if mechanism == "SCRAM-SHA-256" {
                Hash::Sha256
            } else {
                Hash::Sha512
            };
            let text = std::str::from_utf8(client).unwrap();
            let first_bare = text.strip_prefix("n,,").unwrap().to_owned();
            let (user, nonce) = first_bare
                .strip_prefix("n=")
                .and_then(|r| r.split_once(",r="))
                .unwrap();
            if user != USER {
                return FAILED;
            }
            let server_first = format!("r={nonce}srv-n0nce,s={},i={ITERATIONS}", B64.encode(SALT));
            let out = server_first.clone().into_bytes();
            *state = Server::ScramFinal {
                hash,
                first_bare,
                server_first,
            };
            (0, out)
        }
        Server::ScramFinal {
            hash,
            first_bare,
            server_first,
        } => {
            let text = std::str::from_utf8(client).unwrap();
            let (without_proof, proof) = text.rsplit_once(",p=").unwrap();
            let proof = B64.decode(proof).unwrap();
            let salted = hash.salted_password(PASSWORD.as_bytes(), SALT, ITERATIONS);
            let stored_key = hash.digest(&hash.hmac(&salted, &[b"Client Key"]));
            let auth_message = format!("{first_bare},{server_first},{without_proof}");
            let signature = hash.hmac(&stored_key, &[auth_message.as_bytes()]);
            let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
            if hash.digest(&client_key) != stored_key {
                return FAILED;
            }
            let salted = if forge {
                hash.salted_password(b"another password", SALT, ITERATIONS)
            } else {
                salted
            };
            let server_key = hash.hmac(&salted, &[b"Server Key"]);
            let v = hash.hmac(&server_key, &[auth_message.as_bytes()]);
            (0, format!("v={}", B64.encode(v)).into_bytes())
        }
        Server::Done => FAILED,
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    upstream: &str,
    map: &HashMap<String, String>,
    listener: &Listener,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    let mut mechanism = String::new();
    let mut sasl = Server::Start;
    let mut authenticated = false;
    loop {
        let frame = read_frame(&mut client).await?;
        let mut r = Reader::new(&frame);
        let api = r.i16("api").unwrap();
        let version = r.i16("version").unwrap();
        let corr = r.i32("correlation").unwrap();
        r.nullable_str("client").unwrap();
        let mut answer = corr.to_be_bytes().to_vec();
        match api {
            18 => {
                write_frame(&mut up, &frame).await?;
                let body = read_frame(&mut up).await?;
                let n = i32::from_be_bytes(body[6..10].try_into().unwrap());
                answer.extend_from_slice(&body[4..6]);
                answer.extend_from_slice(&(n + 2).to_be_bytes());
                answer.extend_from_slice(&body[10..]);
                for (k, lo, hi) in [(17i16, 0i16, 1i16), (36, 0, 2)] {
                    for v in [k, lo, hi] {
                        answer.extend_from_slice(&v.to_be_bytes());
                    }
                }
                write_frame(&mut client, &answer).await?;
            }
            17 => {
                mechanism = r.str("mechanism").unwrap().to_owned();
                let ok = listener.mechanisms.contains(&mechanism.as_str());
                answer.extend_from_slice(&(if ok { 0i16 } else { 33 }).to_be_bytes());
                answer.extend_from_slice(&(listener.mechanisms.len() as i32).to_be_bytes());
                for m in &listener.mechanisms {
                    put_str(&mut answer, m);
                }
                write_frame(&mut client, &answer).await?;
            }
            36 => {
                let bytes = r.bytes("auth_bytes").unwrap();
                let (error, out) =
                    authenticate(&mut sasl, &mechanism, bytes, listener.forge_signature);
                answer.extend_from_slice(&error.to_be_bytes());
                if error == 0 {
                    answer.extend_from_slice(&(-1i16).to_be_bytes());
                } else {
                    put_str(
                        &mut answer,
                        &format!(
                            "Authentication failed during authentication due to invalid \
                             credentials with SASL mechanism {mechanism}"
                        ),
                    );
                }
                put_bytes(&mut answer, &out);
                if version >= 1 {
                    answer.extend_from_slice(&listener.lifetime_ms.to_be_bytes());
                }
                write_frame(&mut client, &answer).await?;
                if error != 0 {
                    return Ok(());
                }
                authenticated = matches!(sasl, Server::Done);
            }
            // A broker closes a connection that skips authentication.
            _ if !authenticated => return Ok(()),
            10 => {
                write_frame(&mut up, &frame).await?;
                let body = read_frame(&mut up).await?;
                let mut a = Reader::new(&body[4..]);
                if version >= 1 {
                    answer.extend_from_slice(&a.i32("throttle").unwrap().to_be_bytes());
                }
                answer.extend_from_slice(&a.i16("error").unwrap().to_be_bytes());
                if version >= 1 {
                    match a.nullable_str("message").unwrap() {
                        Some(m) => put_str(&mut answer, m),
                        None => answer.extend_from_slice(&(-1i16).to_be_bytes()),
                    }
                }
                answer.extend_from_slice(&a.i32("node").unwrap().to_be_bytes());
                let host = a.str("host").unwrap();
                let port = a.i32("port").unwrap();
                let proxied = map.get(&format!("{host}:{port}")).unwrap();
                let (h, p) = proxied.rsplit_once(':').unwrap();
                put_str(&mut answer, h);
                answer.extend_from_slice(&p.parse::<i32>().unwrap().to_be_bytes());
                write_frame(&mut client, &answer).await?;
            }
            _ => {
                write_frame(&mut up, &frame).await?;
                let body = read_frame(&mut up).await?;
                write_frame(&mut client, &body).await?;
            }
        }
    }
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

fn wire(proxies: &Proxies, config: KafkaConfig) -> Arc<Wire> {
    let w = Wire::new(&config).unwrap();
    w.set_brokers(&proxies.brokers());
    Arc::new(w)
}

fn config(proxies: &Proxies) -> KafkaConfig {
    KafkaConfig::new(proxies.addrs.join(","))
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
    let proxies = start(&fake, Listener::default()).await;
    let committed: Vec<Option<i64>> = fake.committed("g", "orders").unwrap();
    let ends = fake.end_offsets("orders").unwrap();
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        fake.clear_requests().unwrap();
        let w = wire(
            &proxies,
            config(&proxies).tls(tls()).sasl(sasl(mechanism, PASSWORD)),
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
    for (listener, cfg) in [
        (
            Listener {
                tls: false,
                ..Listener::default()
            },
            KafkaConfig::sasl as fn(KafkaConfig, Sasl) -> KafkaConfig,
        ),
        (Listener::default(), |c: KafkaConfig, _: Sasl| c.tls(tls())),
    ] {
        let proxies = start(&fake, listener.clone()).await;
        let w = wire(
            &proxies,
            cfg(config(&proxies), sasl(SaslMechanism::ScramSha512, PASSWORD)),
        );
        let got = w.committed("g", &parts, Duration::from_secs(10)).await;
        if listener.tls {
            // TLS alone: the listener wants SASL first, so the broker closes the connection.
            let e = client_error(got.unwrap_err());
            assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
        } else {
            let got: Vec<Option<i64>> = got.unwrap().into_iter().map(Result::unwrap).collect();
            assert_eq!(got, committed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_unauthorized_and_never_shown() {
    let (fake, parts, _) = cluster();
    let proxies = start(&fake, Listener::default()).await;
    for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha512] {
        let w = wire(
            &proxies,
            config(&proxies)
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
                && e.message.contains(&proxies.addrs[0]),
            "{e}"
        );
        assert!(!e.message.contains("wr0ng-pw-55"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_cannot_prove_the_key_is_refused() {
    let (fake, parts, _) = cluster();
    let proxies = start(
        &fake,
        Listener {
            forge_signature: true,
            ..Listener::default()
        },
    )
    .await;
    let w = wire(
        &proxies,
        config(&proxies)
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
    let proxies = start(
        &fake,
        Listener {
            mechanisms: vec!["SCRAM-SHA-512"],
            ..Listener::default()
        },
    )
    .await;
    let w = wire(
        &proxies,
        config(&proxies)
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
    let proxies = start(&fake, Listener::default()).await;
    let creds = sasl(SaslMechanism::ScramSha512, PASSWORD);
    // An unrelated CA: the chain is refused whatever the hostname setting.
    let other = Tls {
        verify_hostname: false,
        ..Tls::with_ca_file(fixture("other-ca.pem"))
    };
    // The right CA, but the certificate names cassandra.test, not 127.0.0.1.
    let named = Tls::with_ca_file(fixture("ca.pem"));
    for (tls, want) in [(other, "UnknownIssuer"), (named, "not valid for name")] {
        let w = wire(&proxies, config(&proxies).tls(tls).sasl(creds.clone()));
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
        assert!(e.message.contains(&proxies.addrs[0]), "{e}");
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
        let proxies = start(
            &fake,
            Listener {
                lifetime_ms,
                ..Listener::default()
            },
        )
        .await;
        let w = wire(&proxies, config(&proxies).tls(tls()).sasl(creds.clone()));
        w.committed("g", &parts, Duration::from_secs(10))
            .await
            .unwrap();
        let after_first = proxies.accepted.load(Ordering::SeqCst);
        w.committed("g", &parts, Duration::from_secs(10))
            .await
            .unwrap();
        let after_second = proxies.accepted.load(Ordering::SeqCst);
        assert_eq!(
            after_second > after_first,
            new_connections,
            "lifetime {lifetime_ms} ms: {after_first} then {after_second} connections"
        );
    }
}
