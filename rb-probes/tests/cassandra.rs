//! The Cassandra probes: the CQL ring probe through cdrs-tokio against the fake ring (rb-testkit's
//! FakeRing speaks CQL v4), scripted clients for what the fake cannot do, the `nodetool status`
//! reader on every real sample and on the fake's rendering, the nodetool probe through the real
//! `tokio::process` runner, and the fault matrix (tests/fault_matrix/cassandra.csv).
#![cfg(feature = "cassandra")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rb_core::time::Clock;
use rb_core::{ErrorKind, Observation, Probe, ProbeContext, ProbeError, Secret, Target};
use rb_probes::cassandra::{
    metric, parse_status, CdrsCqlClient, CommandError, CommandOutput, CommandRunner, CqlClient,
    CqlConnection, CqlError, CqlErrorKind, CqlRingConfig, CqlRingProbe, CqlRow, CqlTls, CqlValue,
    DriverNode, DriverNodeState, Liveness, LivenessSource, NodetoolStatusConfig,
    NodetoolStatusProbe, Ring, RingState, TokioCommandRunner,
};
use rb_testkit::cassandra::{FakeRing, Fault, NodeSpec, NodeStatus, Replication};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);

fn ctx(deadline: Duration) -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), deadline)
}

fn target() -> Target {
    Target::new("cassandra", "cassandra-main")
}

fn config(contacts: Vec<SocketAddr>) -> CqlRingConfig {
    // generous per-node timeout: a loaded CI machine must not turn a live fake node into `?`
    CqlRingConfig::new(contacts)
        .node_timeout(Duration::from_secs(2))
        .heartbeat_wait(Duration::from_millis(1100))
}

fn cql_probe(contacts: Vec<SocketAddr>) -> CqlRingProbe {
    CqlRingProbe::new(target(), config(contacts), Arc::new(CdrsCqlClient::new()))
}

fn fact(obs: &Observation) -> Ring {
    obs.facts
        .get::<Ring>()
        .expect("cassandra.ring fact")
        .unwrap()
}

fn value(obs: &Observation, name: &str) -> f64 {
    let v: Vec<f64> = obs.samples_named(name).map(|s| s.value).collect();
    assert_eq!(v.len(), 1, "{name}: {:?}", obs.samples);
    v[0]
}

fn node_up(obs: &Observation, ip: &str) -> Option<f64> {
    obs.samples_named(metric::NODE_UP)
        .find(|s| s.labels.get("address").map(String::as_str) == Some(ip))
        .map(|s| s.value)
}

async fn observe(p: &dyn Probe, deadline: Duration) -> Result<Observation, ProbeError> {
    timeout(T, p.observe(&ctx(deadline)))
        .await
        .expect("the probe keeps its own deadline")
}

/// `ip → code` from the fake's own `nodetool status`, read with our parser.
fn fake_nodetool(ring: &FakeRing) -> BTreeMap<String, String> {
    let text = ring.nodetool_status();
    let parsed = parse_status(&text).unwrap();
    assert!(
        parsed.not_understood.is_empty(),
        "{:?}\n{text}",
        parsed.not_understood
    );
    parsed
        .nodes
        .iter()
        .map(|n| (n.ip().to_string(), n.code()))
        .collect()
}

// ------------------------------------------------------------------ CQL through cdrs-tokio

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_ring_of_three_up_nodes_equals_nodetool() {
    let ring = FakeRing::builder()
        .node(NodeSpec::new().datacenter("dc1").rack("r1"))
        .node(NodeSpec::new().datacenter("dc1").rack("r2"))
        .node(NodeSpec::new().datacenter("dc2").rack("r1"))
        .start()
        .await
        .unwrap();
    let probe = cql_probe(vec![ring.addr(0).unwrap()]);
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&obs);
    assert_eq!(r.summary(), fake_nodetool(&ring));
    assert_eq!(r.nodes.len(), 3);
    assert_eq!(r.cluster_name.as_deref(), Some("Test Cluster"));
    for info in ring.nodes() {
        let ip = info.native_addr.ip().to_string();
        let n = r.node(&ip).unwrap();
        assert_eq!(n.code(), "UN");
        assert_eq!(
            n.host_id.as_deref(),
            Some(info.host_id.to_string().as_str())
        );
        assert_eq!(n.datacenter.as_deref(), Some(info.datacenter.as_str()));
        assert_eq!(n.rack.as_deref(), Some(info.rack.as_str()));
        assert_eq!(n.tokens, Some(16));
        assert_eq!(n.load_bytes, info.load_bytes);
        assert_eq!(
            n.schema_version.as_deref(),
            Some(info.schema_version.to_string().as_str())
        );
        let want = if info.index == 0 {
            LivenessSource::Coordinator
        } else {
            LivenessSource::DirectConnect
        };
        assert_eq!(n.liveness_source, want, "{n:?}");
        assert_eq!(node_up(&obs, &ip), Some(1.0));
    }
    let owns: f64 = r.nodes.iter().filter_map(|n| n.owns_percent).sum();
    assert!((owns - 100.0).abs() < 0.5, "{owns}");
    assert_eq!(r.owns_basis.as_deref(), Some("token_ranges"));
    assert!(!r.schema_disagreement);
    assert_eq!(value(&obs, metric::NODES), 3.0);
    assert_eq!(value(&obs, metric::NODES_UP), 3.0);
    assert_eq!(value(&obs, metric::NODES_DOWN), 0.0);
    assert_eq!(value(&obs, metric::NODES_JOINING), 0.0);
    assert_eq!(value(&obs, metric::SCHEMA_VERSIONS), 1.0);
    assert_eq!(value(&obs, metric::MISSING_EXPECTED), 0.0);
    // what the probe asked: the coordinator's tables, all from node 0
    let q = ring.queries(0).unwrap();
    for t in [
        "SELECT * FROM system.local",
        "SELECT * FROM system.peers_v2",
        "SELECT * FROM system_views.gossip_info",
    ] {
        assert!(q.iter().any(|x| x == t), "{q:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_dn_by_direct_connect_and_stopped_node_by_its_shutdown() {
    let ring = FakeRing::start(3).await.unwrap();
    let probe = cql_probe(vec![ring.addr(0).unwrap()]);
    ring.kill(2).unwrap();
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&obs);
    assert_eq!(r.summary(), fake_nodetool(&ring));
    let dead = r.node("127.0.0.3").unwrap();
    assert_eq!(dead.code(), "DN");
    assert_eq!(dead.liveness_source, LivenessSource::DirectConnect);
    assert!(
        dead.direct_connect
            .as_deref()
            .unwrap()
            .starts_with("refused"),
        "{dead:?}"
    );
    assert_eq!(value(&obs, metric::NODES_DOWN), 1.0);
    assert_eq!(value(&obs, metric::NODES_UP), 2.0);
    assert_eq!(node_up(&obs, "127.0.0.3"), Some(0.0));
    // the dead node's schema version does not count as a disagreement
    assert_eq!(value(&obs, metric::SCHEMA_VERSIONS), 1.0);

    ring.revive(2).await.unwrap();
    ring.stop(1).unwrap();
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    let r = fact(&obs);
    assert_eq!(r.summary(), fake_nodetool(&ring));
    let stopped = r.node("127.0.0.2").unwrap();
    assert_eq!(stopped.code(), "DN");
    assert_eq!(stopped.gossip_status.as_deref(), Some("shutdown,true"));
    assert_eq!(r.node("127.0.0.3").unwrap().code(), "UN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_leaving_and_moving_nodes() {
    let ring = FakeRing::start(4).await.unwrap();
    ring.set_status(1, NodeStatus::Leaving).unwrap();
    ring.set_status(2, NodeStatus::Moving).unwrap();
    // bootstrapping: in gossip, not yet in the peers tables
    let j = ring
        .add_node(NodeSpec::new().status(NodeStatus::Joining))
        .unwrap();
    let joining_ip = ring.addr(j).unwrap().ip().to_string();
    let probe = cql_probe(vec![ring.addr(0).unwrap()]);
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&obs);
    assert_eq!(r.summary(), fake_nodetool(&ring));
    assert_eq!(r.node(&joining_ip).unwrap().code(), "UJ");
    assert_eq!(r.node(&joining_ip).unwrap().owns_percent, None);
    assert_eq!(r.node("127.0.0.2").unwrap().code(), "UL");
    assert_eq!(r.node("127.0.0.3").unwrap().code(), "UM");
    assert_eq!(value(&obs, metric::NODES), 5.0);
    assert_eq!(value(&obs, metric::NODES_JOINING), 1.0);
    assert_eq!(value(&obs, metric::NODES_LEAVING), 1.0);
    assert_eq!(value(&obs, metric::NODES_MOVING), 1.0);

    // bootstrap finished: it enters the peers tables and shows UN
    ring.set_status(j, NodeStatus::Normal).unwrap();
    let r = fact(&observe(&probe, Duration::from_secs(10)).await.unwrap());
    assert_eq!(r.node(&joining_ip).unwrap().code(), "UN");
    assert_eq!(r.summary(), fake_nodetool(&ring));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_disagreement_and_missing_expected_nodes() {
    let ring = FakeRing::start(3).await.unwrap();
    let other = uuid::Uuid::new_v4();
    ring.set_schema_version(1, other).unwrap();
    let probe = CqlRingProbe::new(
        target(),
        config(vec![ring.addr(0).unwrap()]).expected_nodes([
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.9",
        ]),
        Arc::new(CdrsCqlClient::new()),
    );
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    let r = fact(&obs);
    assert!(r.schema_disagreement);
    assert_eq!(r.schema_versions.len(), 2);
    assert_eq!(r.schema_versions[&other.to_string()], vec!["127.0.0.2"]);
    assert_eq!(value(&obs, metric::SCHEMA_VERSIONS), 2.0);
    assert_eq!(r.missing_expected, vec!["127.0.0.9"]);
    assert_eq!(value(&obs, metric::MISSING_EXPECTED), 1.0);

    // a node removed from the ring ("a UN node is missing"); expected by host ID too
    let gone = ring.node(2).unwrap();
    ring.remove_node(2).unwrap();
    let probe = CqlRingProbe::new(
        target(),
        config(vec![ring.addr(0).unwrap()])
            .expected_nodes(["127.0.0.1".to_string(), gone.host_id.to_string()]),
        Arc::new(CdrsCqlClient::new()),
    );
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    let r = fact(&obs);
    assert_eq!(r.nodes.len(), 2);
    assert_eq!(r.missing_expected, vec![gone.host_id.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3x_node_without_peers_v2_is_read_through_system_peers() {
    let ring = FakeRing::builder()
        .peers_v2_invalid(true)
        .start()
        .await
        .unwrap();
    let obs = observe(
        &cql_probe(vec![ring.addr(0).unwrap()]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let r = fact(&obs);
    assert_eq!(r.summary(), fake_nodetool(&ring));
    assert!(ring
        .queries(0)
        .unwrap()
        .iter()
        .any(|q| q == "SELECT * FROM system.peers"));
    // native addresses come from rpc_address and the contact point's port
    for n in &r.nodes {
        assert!(n
            .native_address
            .as_deref()
            .unwrap()
            .ends_with(&format!(":{}", ring.port())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_contact_point_answers_when_the_first_is_dead() {
    let ring = FakeRing::start(3).await.unwrap();
    ring.kill(0).unwrap();
    let probe = cql_probe(vec![ring.addr(0).unwrap(), ring.addr(1).unwrap()]);
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    let r = fact(&obs);
    assert_eq!(r.observed_via, ring.addr(1).unwrap().to_string());
    assert_eq!(r.summary(), fake_nodetool(&ring));
    assert_eq!(r.node("127.0.0.1").unwrap().code(), "DN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_hangs_makes_a_partial_view_not_a_healthy_one() {
    let ring = FakeRing::start(3).await.unwrap();
    ring.set_fault(2, Some(Fault::Hang)).unwrap();
    let probe = CqlRingProbe::new(
        target(),
        config(vec![ring.addr(0).unwrap()])
            .driver_state(false)
            .heartbeat_wait(Duration::ZERO),
        Arc::new(CdrsCqlClient::new()),
    );
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    assert!(!obs.complete, "{:#?}", fact(&obs));
    assert!(
        obs.gaps
            .iter()
            .any(|g| g.contains("127.0.0.3") && g.contains("timeout")),
        "{:?}",
        obs.gaps
    );
    let r = fact(&obs);
    assert_eq!(r.node("127.0.0.3").unwrap().status, Liveness::Unknown);
    assert_eq!(r.node("127.0.0.3").unwrap().code(), "?N");
    assert_eq!(value(&obs, metric::NODES_UP), 2.0);
    assert_eq!(value(&obs, metric::NODES_LIVENESS_UNKNOWN), 1.0);
    assert_eq!(
        node_up(&obs, "127.0.0.3"),
        None,
        "no 1/0 for an unknown node"
    );

    // with a second gossip read: its heartbeat still rises, so it is alive (as nodetool says)
    let probe = CqlRingProbe::new(
        target(),
        config(vec![ring.addr(0).unwrap()]).driver_state(false),
        Arc::new(CdrsCqlClient::new()),
    );
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&obs);
    let n = r.node("127.0.0.3").unwrap();
    assert_eq!(n.code(), "UN");
    assert_eq!(n.liveness_source, LivenessSource::GossipHeartbeat);
    assert_eq!(r.summary(), fake_nodetool(&ring));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_session_sees_a_node_go_down() {
    let ring = FakeRing::start(3).await.unwrap();
    let probe = cql_probe(vec![ring.addr(0).unwrap()]);
    let r = fact(&observe(&probe, Duration::from_secs(10)).await.unwrap());
    assert!(
        r.nodes
            .iter()
            .all(|n| n.driver_state.as_deref() == Some("up")),
        "{r:?}"
    );
    ring.kill(2).unwrap();
    // the session kept by the client got STATUS_CHANGE DOWN
    let mut last = None;
    for _ in 0..50 {
        let r = fact(&observe(&probe, Duration::from_secs(10)).await.unwrap());
        let n = r.node("127.0.0.3").unwrap().clone();
        if n.driver_state.as_deref() == Some("down") {
            assert_eq!(n.code(), "DN");
            return;
        }
        last = Some(n);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("driver state never went down: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authentication() {
    let ring = FakeRing::builder()
        .password_auth("rb_probe", "s3cret-pw")
        .start()
        .await
        .unwrap();
    let contacts = vec![ring.addr(0).unwrap()];
    let good = CdrsCqlClient::new().with_password("rb_probe", Secret::new("s3cret-pw"));
    assert!(!format!("{good:?}").contains("s3cret-pw"));
    let probe = CqlRingProbe::new(target(), config(contacts.clone()), Arc::new(good));
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    assert_eq!(fact(&obs).summary(), fake_nodetool(&ring));

    let bad = CdrsCqlClient::new().with_password("rb_probe", Secret::new("wrong-pw"));
    let e = observe(
        &CqlRingProbe::new(target(), config(contacts.clone()), Arc::new(bad)),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("incorrect"), "{e}");
    assert!(!format!("{e:?}").contains("wrong-pw"));

    let none = CdrsCqlClient::new();
    let e = observe(
        &CqlRingProbe::new(target(), config(contacts), Arc::new(none)),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
}

/// A TLS front for one fake node (the fake speaks plain CQL): accepts TLS with the test
/// certificate for `cassandra.test` and pipes the bytes to `backend`.
async fn tls_front(backend: SocketAddr) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_dir = format!("{}/tests/fixtures/tls", env!("CARGO_MANIFEST_DIR"));
    let chain = CertificateDer::pem_file_iter(format!("{tls_dir}/node.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{tls_dir}/node.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    front
}

fn tls_file(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_over_tls_with_password_and_what_a_bad_certificate_gives() {
    let ring = FakeRing::builder()
        .nodes(1)
        .password_auth("rb_probe", "pw")
        .start()
        .await
        .unwrap();
    let front = tls_front(ring.addr(0).unwrap()).await;
    let probe = |tls: CqlTls| {
        CqlRingProbe::new(
            target(),
            config(vec![front]).driver_state(false),
            Arc::new(
                CdrsCqlClient::new()
                    .with_password("rb_probe", Secret::new("pw"))
                    .with_tls(tls),
            ),
        )
    };
    let good = CqlTls::new(&tls_file("ca.pem"), "cassandra.test").unwrap();
    let obs = observe(&probe(good), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&obs);
    assert_eq!(r.summary(), fake_nodetool(&ring));
    assert_eq!(r.observed_via, front.to_string());

    for tls in [
        CqlTls::new(&tls_file("other-ca.pem"), "cassandra.test").unwrap(),
        CqlTls::new(&tls_file("ca.pem"), "not-cassandra.test").unwrap(),
    ] {
        let e = observe(&probe(tls), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    }
    // configuration errors are typed, and a client key never shows in them
    let e = CqlTls::new(b"not a pem", "cassandra.test").unwrap_err();
    assert_eq!(e.kind, CqlErrorKind::Tls);
    let e = CqlTls::with_client_cert(
        &tls_file("ca.pem"),
        "cassandra.test",
        &tls_file("node.pem"),
        &Secret::new("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap_err();
    assert!(!e.message.contains("c2VjcmV0"), "{e}");
    let mtls = CqlTls::with_client_cert(
        &tls_file("ca.pem"),
        "cassandra.test",
        &tls_file("node.pem"),
        &Secret::new(String::from_utf8(tls_file("node.key")).unwrap()),
    )
    .unwrap();
    assert!(!format!("{mtls:?}").contains("PRIVATE"));
}

// ------------------------------------------------------------------ scripted CQL client

/// A client answering from fixed rows: for what the fake cannot do (replacements, refused CQL with
/// live gossip, malformed rows, server errors).
#[derive(Debug, Default)]
struct Scripted {
    answers: HashMap<String, Result<Vec<CqlRow>, CqlError>>,
    gossip_again: Option<Vec<CqlRow>>,
    connect: HashMap<SocketAddr, CqlErrorKind>,
    driver: Option<Vec<DriverNode>>,
    gossip_reads: AtomicUsize,
}

struct ScriptedConn(Arc<Scripted>);

#[derive(Debug)]
struct ScriptedClient(Arc<Scripted>);

#[async_trait]
impl CqlConnection for ScriptedConn {
    async fn query(&self, cql: &str) -> Result<Vec<CqlRow>, CqlError> {
        if cql.contains("gossip_info") && self.0.gossip_reads.fetch_add(1, Ordering::SeqCst) > 0 {
            if let Some(rows) = &self.0.gossip_again {
                return Ok(rows.clone());
            }
        }
        self.0
            .answers
            .get(cql)
            .cloned()
            .unwrap_or_else(|| Err(CqlError::new(CqlErrorKind::Invalid, format!("no {cql}"))))
    }
}

#[async_trait]
impl CqlClient for ScriptedClient {
    async fn connect(&self, node: SocketAddr) -> Result<Box<dyn CqlConnection>, CqlError> {
        match self.0.connect.get(&node) {
            Some(kind) => Err(CqlError::new(*kind, format!("scripted {kind:?}"))),
            None => Ok(Box::new(ScriptedConn(self.0.clone()))),
        }
    }
    async fn driver_states(&self, _: &[SocketAddr]) -> Result<Option<Vec<DriverNode>>, CqlError> {
        Ok(self.0.driver.clone())
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.into())
}

const SCHEMA: &str = "5a3b1e4c-0000-4000-8000-000000000001";

fn host(i: u8) -> String {
    format!("6f9a0c1e-0000-4000-8000-00000000000{i}")
}

fn local(i: u8) -> CqlRow {
    CqlRow::new()
        .with(
            "broadcast_address",
            CqlValue::Inet(ip(&format!("10.0.0.{i}"))),
        )
        .with("cluster_name", text("prod"))
        .with(
            "partitioner",
            text("org.apache.cassandra.dht.Murmur3Partitioner"),
        )
        .with("host_id", CqlValue::Uuid(host(i)))
        .with("data_center", text("dc1"))
        .with("rack", text("rack 1"))
        .with(
            "tokens",
            CqlValue::TextSet(vec![format!("{}", -9_000_000_000_000_000_000i64)]),
        )
        .with("schema_version", CqlValue::Uuid(SCHEMA.into()))
        .with("release_version", text("5.0.4"))
}

fn peer(i: u8, token: i64) -> CqlRow {
    CqlRow::new()
        .with("peer", CqlValue::Inet(ip(&format!("10.0.0.{i}"))))
        .with("native_address", CqlValue::Inet(ip(&format!("10.0.0.{i}"))))
        .with("native_port", CqlValue::Int(9042))
        .with("host_id", CqlValue::Uuid(host(i)))
        .with("data_center", text("dc1"))
        .with("rack", text("rack 1"))
        .with("tokens", CqlValue::TextSet(vec![token.to_string()]))
        .with("schema_version", CqlValue::Uuid(SCHEMA.into()))
        .with("release_version", text("5.0.4"))
}

fn gossip(i: u8, status: &str, heartbeat: i64) -> CqlRow {
    CqlRow::new()
        .with("address", CqlValue::Inet(ip(&format!("10.0.0.{i}"))))
        .with("status", text(status))
        .with("load", text("1.5E7"))
        .with("heartbeat", CqlValue::Int(heartbeat))
        .with("generation", CqlValue::Int(1_700_000_000))
        .with("host_id", text(&host(i)))
        .with("dc", text("dc1"))
        .with("rack", text("rack 1"))
        .with("native_address_and_port", text(&format!("10.0.0.{i}:9042")))
}

fn sa(i: u8) -> SocketAddr {
    format!("10.0.0.{i}:9042").parse().unwrap()
}

fn scripted(s: Scripted) -> CqlRingProbe {
    CqlRingProbe::new(
        target(),
        CqlRingConfig::new([sa(1)])
            .heartbeat_wait(Duration::from_millis(50))
            .expected_nodes(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]),
        Arc::new(ScriptedClient(Arc::new(s))),
    )
}

fn three_node_answers(gossip_rows: Vec<CqlRow>) -> HashMap<String, Result<Vec<CqlRow>, CqlError>> {
    HashMap::from([
        ("SELECT * FROM system.local".to_string(), Ok(vec![local(1)])),
        (
            "SELECT * FROM system.peers_v2".to_string(),
            Ok(vec![
                peer(2, -3_000_000_000_000_000_000),
                peer(3, 3_000_000_000_000_000_000),
            ]),
        ),
        (
            "SELECT * FROM system_views.gossip_info".to_string(),
            Ok(gossip_rows),
        ),
    ])
}

#[tokio::test]
async fn a_replacement_in_progress_is_seen_dn_and_flagged() {
    // node 3 is being replaced at the same address: it gossips hibernate and refuses CQL
    let s = Scripted {
        answers: three_node_answers(vec![
            gossip(1, "NORMAL,-9000000000000000000", 100),
            gossip(2, "NORMAL,-3000000000000000000", 100),
            gossip(3, "hibernate,true", 5),
        ]),
        connect: HashMap::from([(sa(3), CqlErrorKind::Refused)]),
        ..Default::default()
    };
    let obs = observe(&scripted(s), Duration::from_secs(5)).await.unwrap();
    let r = fact(&obs);
    let n = r.node("10.0.0.3").unwrap();
    assert_eq!(n.code(), "DN");
    assert!(n.replacing);
    assert_eq!(value(&obs, metric::NODES_REPLACING), 1.0);
    assert_eq!(r.node("10.0.0.1").unwrap().rack.as_deref(), Some("rack 1"));
    assert_eq!(r.missing_expected, vec!["10.0.0.4"]);
    assert_eq!(r.node("10.0.0.2").unwrap().load_bytes, Some(15_000_000));
}

#[tokio::test]
async fn a_bootstrapping_node_refusing_cql_is_up_when_its_heartbeat_rises() {
    let first = vec![
        gossip(1, "NORMAL,-9000000000000000000", 100),
        gossip(2, "NORMAL,-3000000000000000000", 100),
        gossip(3, "NORMAL,3000000000000000000", 100),
        gossip(4, "BOOT_REPLACE,10.0.0.9", 7),
    ];
    let mut again = first.clone();
    again[3] = gossip(4, "BOOT_REPLACE,10.0.0.9", 9);
    // node 3 was killed: refused and its heartbeat stays at 100
    let s = Scripted {
        answers: three_node_answers(first),
        gossip_again: Some(again),
        connect: HashMap::from([
            (sa(4), CqlErrorKind::Refused),
            (sa(3), CqlErrorKind::Refused),
        ]),
        ..Default::default()
    };
    let obs = observe(&scripted(s), Duration::from_secs(5)).await.unwrap();
    let r = fact(&obs);
    let n = r.node("10.0.0.4").unwrap();
    assert_eq!(n.code(), "UJ");
    assert_eq!(n.liveness_source, LivenessSource::GossipHeartbeat);
    assert!(n.replacing);
    assert_eq!(r.node("10.0.0.3").unwrap().code(), "DN");
    assert!(r.missing_expected.is_empty());
}

#[tokio::test]
async fn a_timed_out_direct_connect_defers_to_the_driver_state() {
    let s = Scripted {
        answers: three_node_answers(vec![
            gossip(1, "NORMAL,1", 1),
            gossip(2, "NORMAL,2", 1),
            gossip(3, "NORMAL,3", 1),
        ]),
        connect: HashMap::from([
            (sa(2), CqlErrorKind::Timeout),
            (sa(3), CqlErrorKind::Timeout),
        ]),
        driver: Some(vec![DriverNode {
            native_address: sa(3),
            host_id: Some(host(3)),
            state: DriverNodeState::Down,
        }]),
        gossip_again: None,
        gossip_reads: AtomicUsize::new(0),
    };
    let obs = observe(&scripted(s), Duration::from_secs(5)).await.unwrap();
    let r = fact(&obs);
    assert_eq!(r.node("10.0.0.3").unwrap().code(), "DN");
    assert_eq!(
        r.node("10.0.0.3").unwrap().liveness_source,
        LivenessSource::DriverState
    );
    assert_eq!(r.node("10.0.0.2").unwrap().status, Liveness::Unknown);
    assert!(!obs.complete);
}

#[tokio::test]
async fn without_gossip_info_states_are_unknown_and_the_view_incomplete() {
    let mut answers = three_node_answers(vec![]);
    answers.insert(
        "SELECT * FROM system_views.gossip_info".into(),
        Err(CqlError::new(
            CqlErrorKind::Invalid,
            "keyspace system_views does not exist",
        )),
    );
    let obs = observe(
        &scripted(Scripted {
            answers,
            ..Default::default()
        }),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let r = fact(&obs);
    assert!(r
        .nodes
        .iter()
        .all(|n| n.state == RingState::Unknown && n.status == Liveness::Up));
    assert!(!obs.complete);
    assert!(
        obs.gaps.iter().any(|g| g.contains("gossip_info")),
        "{:?}",
        obs.gaps
    );
    assert_eq!(value(&obs, metric::NODES_STATE_UNKNOWN), 3.0);
}

#[tokio::test]
async fn malformed_rows_name_table_row_and_column() {
    let mut answers = three_node_answers(vec![]);
    let mut bad = peer(3, 1);
    bad.insert("host_id", text("not-a-uuid"));
    answers.insert(
        "SELECT * FROM system.peers_v2".into(),
        Ok(vec![peer(2, 2), bad]),
    );
    let e = observe(
        &scripted(Scripted {
            answers,
            ..Default::default()
        }),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse);
    let m = e.to_string();
    assert!(
        m.contains("system.peers_v2 row 1") && m.contains("host_id"),
        "{m}"
    );
}

// ------------------------------------------------------------------ nodetool status text

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/nodetool/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn codes(text: &str) -> Vec<(String, String, String)> {
    let p = parse_status(text).unwrap();
    assert!(p.not_understood.is_empty(), "{:?}", p.not_understood);
    p.nodes
        .iter()
        .map(|n| {
            (
                n.datacenter.clone().unwrap_or_default(),
                n.address.clone(),
                n.code(),
            )
        })
        .collect()
}

#[test]
fn every_reference_sample_is_read_whole() {
    let s1 = parse_status(&fixture("sample_1.txt")).unwrap();
    assert!(s1.not_understood.is_empty());
    assert_eq!(s1.owns_basis.as_deref(), Some("raw"));
    assert_eq!(s1.nodes.len(), 2);
    assert_eq!(s1.nodes[0].load_text.as_deref(), Some("144.76 MB"));
    assert_eq!(s1.nodes[0].load_bytes, Some(151_791_862));
    assert_eq!(s1.nodes[0].tokens, Some(256));
    assert_eq!(s1.nodes[0].owns_percent, None);
    assert_eq!(
        s1.nodes[1].host_id.as_deref(),
        Some("b4964644-a83f-4cbf-a6b0-903b02b71152")
    );
    assert!(s1.notes[0].starts_with("Note: Non-system keyspaces"));

    let s3 = parse_status(&fixture("sample_3.txt")).unwrap();
    assert_eq!(s3.owns_basis.as_deref(), Some("effective"));
    let c: Vec<String> = s3.nodes.iter().map(|n| n.code()).collect();
    assert_eq!(c, ["UN", "UJ", "UN"]);
    assert_eq!(s3.nodes[0].owns_percent, Some(54.4));
    assert_eq!(s3.nodes[1].owns_percent, None);
    assert_eq!(s3.nodes[1].load_bytes, Some(14_776));

    let s4 = parse_status(&fixture("sample_4.txt")).unwrap();
    assert_eq!(s4.nodes.len(), 3);
    assert!(s4
        .nodes
        .iter()
        .all(|n| n.tokens == Some(1) && n.owns_percent == Some(100.0)));
    assert_eq!(s4.nodes[2].rack.as_deref(), Some("r3"));
    assert_eq!(s4.nodes[1].load_bytes, Some(5_057_323_991));

    assert_eq!(
        codes(&fixture("sample_6.txt")),
        vec![
            ("UNKNOWN_DC".into(), "172.30.7.20".into(), "DN".into()),
            ("srv".into(), "172.30.7.89".into(), "UN".into()),
            ("work".into(), "172.30.1.121".into(), "UN".into()),
            ("work".into(), "172.30.7.55".into(), "UN".into()),
            ("work".into(), "172.30.1.35".into(), "UN".into()),
        ]
    );
    let s6 = parse_status(&fixture("sample_6.txt")).unwrap();
    assert_eq!(s6.nodes[0].host_id, None);
    assert_eq!(s6.nodes[0].load_bytes, None);
    assert_eq!(s6.nodes[0].rack.as_deref(), Some("UNKNOWN_RACK"));
    assert_eq!(s6.datacenters, ["UNKNOWN_DC", "srv", "work"]);

    // real Cassandra 5.0 captures (peers tier recordings)
    for (name, want) in [
        ("real_5_0_all_up.txt", ["UN", "UN", "UN"]),
        ("real_5_0_one_down.txt", ["DN", "UN", "UN"]),
        ("real_5_0_one_killed.txt", ["UN", "DN", "UN"]),
    ] {
        let p = parse_status(&fixture(name)).unwrap();
        assert!(p.not_understood.is_empty(), "{name}");
        let got: Vec<String> = p.nodes.iter().map(|n| n.code()).collect();
        assert_eq!(got, want, "{name}");
        assert!(p
            .nodes
            .iter()
            .all(|n| n.tokens == Some(16) && n.host_id.is_some()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_rings_nodetool_is_read_like_its_state() {
    let ring = FakeRing::builder()
        .nodes(5)
        .keyspace("lakehouse", Replication::Simple(3))
        .start()
        .await
        .unwrap();
    ring.kill(1).unwrap();
    ring.set_status(2, NodeStatus::Joining).unwrap();
    ring.set_status(3, NodeStatus::Leaving).unwrap();
    ring.set_status(4, NodeStatus::Moving).unwrap();
    ring.set_load(4, Some(5_035_763_957)).unwrap();
    ring.set_load(0, None).unwrap();
    let p = parse_status(&ring.nodetool_status()).unwrap();
    assert!(p.not_understood.is_empty());
    assert_eq!(p.owns_basis.as_deref(), Some("effective"));
    for info in ring.nodes() {
        let n = p
            .nodes
            .iter()
            .find(|n| n.address == info.native_addr.ip().to_string())
            .unwrap();
        let want = format!(
            "{}{}",
            if info.up { 'U' } else { 'D' },
            info.status.letter()
        );
        assert_eq!(n.code(), want);
        assert_eq!(
            n.host_id.as_deref(),
            Some(info.host_id.to_string().as_str())
        );
        assert_eq!(n.tokens, Some(16));
        match info.load_bytes {
            None => assert_eq!(n.load_bytes, None),
            // printed with two decimals: within 0.5 % of the real size
            Some(b) => {
                let got = n.load_bytes.unwrap() as f64;
                assert!((got - b as f64).abs() / (b as f64) < 0.005, "{got} vs {b}");
            }
        }
    }
    // several DCs, a single-token ring (a `Token` column), mixed replication (`Owns`, `?`, a Note)
    let multi = FakeRing::builder()
        .nodes(2)
        .node(NodeSpec::new().datacenter("eu-west").rack("1a"))
        .node(NodeSpec::new().datacenter("us-east").rack("1b"))
        .keyspace("a", Replication::Simple(1))
        .keyspace("b", Replication::Simple(2))
        .start()
        .await
        .unwrap();
    let p = parse_status(&multi.nodetool_status()).unwrap();
    assert!(p.not_understood.is_empty());
    assert_eq!(p.datacenters, ["eu-west", "us-east"]);
    assert_eq!(p.owns_basis.as_deref(), Some("raw"));
    assert!(p.nodes.iter().all(|n| n.owns_percent.is_none()));
    assert!(p.notes.iter().any(|n| n.contains("Non-system keyspaces")));
    let single = FakeRing::builder()
        .nodes(1)
        .tokens_per_node(1)
        .start()
        .await
        .unwrap();
    let p = parse_status(&single.nodetool_status()).unwrap();
    assert!(p.not_understood.is_empty());
    assert_eq!(p.nodes[0].tokens, Some(1));
}

#[test]
fn variations_real_outputs_may_have() {
    let text = "\
OpenJDK 64-Bit Server VM warning: Cannot open file ../logs/gc.log due to No such file or directory
Picked up JAVA_TOOL_OPTIONS: -Dfoo=bar
Datacenter: dc with spaces
==========================
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving/Stopped
--  Address                Load       Tokens  Owns (effective)  Host ID                               Rack
UN  127.0.0.1:7000         1.5 TiB    16      33,3%             75502268-49f0-4c9e-ac02-bbaa7a9fd392  rack one
DS  [::1]:7000             120 bytes  16      33.3%             8e2940cb-ff79-474e-ac43-7eaa2927250b  r2
?N  fe80::1                119840     16      33.4              0373aba8-bc5e-45d1-b9d2-0203a0d640b6  r3
DJ  cass-4.example.org     ?          16      ?                 null                                  r3
Datacenter: empty
=================
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address  Load  Tokens  Owns  Host ID  Rack

Note: Ownership information does not include topology; for complete information, specify a keyspace
";
    let p = parse_status(text).unwrap();
    assert!(p.not_understood.is_empty(), "{:?}", p.not_understood);
    assert_eq!(p.datacenters, ["dc with spaces", "empty"]);
    let c: Vec<String> = p.nodes.iter().map(|n| n.code()).collect();
    assert_eq!(c, ["UN", "DS", "?N", "DJ"]);
    assert_eq!(p.nodes[0].rack.as_deref(), Some("rack one"));
    assert_eq!(p.nodes[0].ip(), "127.0.0.1");
    assert_eq!(p.nodes[0].owns_percent, Some(33.3));
    assert_eq!(p.nodes[0].load_bytes, Some(1_649_267_441_664));
    assert_eq!(p.nodes[1].ip(), "::1");
    assert_eq!(p.nodes[1].state, RingState::Stopped);
    assert_eq!(p.nodes[1].load_bytes, Some(120));
    assert_eq!(p.nodes[2].status, Liveness::Unknown);
    assert_eq!(p.nodes[2].load_bytes, Some(119_840));
    assert_eq!(p.nodes[3].address, "cass-4.example.org");
    assert_eq!(p.nodes[3].host_id, None);
    assert_eq!(p.notes.len(), 3);
}

#[test]
fn lines_not_understood_are_listed_with_line_and_column() {
    let mut text = fixture("sample_3.txt");
    text = text.replace("917.91 KB", "917.91 ZB");
    text.push_str("Something new: a line nobody has seen\n");
    let p = parse_status(&text).unwrap();
    assert_eq!(p.nodes.len(), 2, "the good rows are kept");
    assert_eq!(p.not_understood.len(), 2, "{:?}", p.not_understood);
    let bad_row = &p.not_understood[0];
    assert_eq!(bad_row.line, 8);
    // the unknown unit starts at the 23rd character
    assert_eq!(bad_row.column, 23, "{bad_row}");
    assert!(bad_row.reason.contains("917.91"), "{bad_row}");
    assert_eq!(p.not_understood[1].line, 9);
    assert_eq!(p.not_understood[1].column, 1);

    // nothing recognisable at all: an error naming where
    let e = parse_status("\n\n   garbage here\n").unwrap_err();
    assert_eq!((e.line(), e.column()), (3, 4), "{e}");
    assert!(e.to_string().contains("line 3, column 4"), "{e}");
    let e = parse_status("").unwrap_err();
    assert_eq!((e.line(), e.column()), (1, 1));
    // an unknown header column: named, and the rows under it are not guessed
    let p = parse_status(
        "Datacenter: dc1\n--  Address  Load  Tokens  Owns  Uptime  Host ID  Rack\nUN  10.0.0.1  1 KiB  1  ?  3d  null  r1\n",
    )
    .unwrap();
    assert!(p.nodes.is_empty());
    assert_eq!(p.not_understood[0].line, 2);
    assert_eq!(p.not_understood[0].column, 34, "{}", p.not_understood[0]);
    assert_eq!(p.not_understood[1].line, 3);
}

/// Cases per property: `RB_FUZZ_CASES` when set (the long fuzz run, see `tests/fuzz.rs`), else `default`.
fn fuzz_cases(default: u32) -> u32 {
    std::env::var("RB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

mod parser_properties {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<String> {
        [
            "sample_1.txt",
            "sample_3.txt",
            "sample_4.txt",
            "sample_6.txt",
            "real_5_0_one_down.txt",
        ]
        .iter()
        .map(|n| fixture(n))
        .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(super::fuzz_cases(256)))]

        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC*") {
            let _ = parse_status(&s);
        }

        #[test]
        fn never_panics_on_mutated_samples(
            which in 0usize..5,
            edits in proptest::collection::vec((any::<usize>(), any::<char>(), 0u8..3), 1..12),
        ) {
            let mut chars: Vec<char> = samples()[which].chars().collect();
            for (pos, c, op) in edits {
                if chars.is_empty() { break; }
                let at = pos % chars.len();
                match op {
                    0 => chars[at] = c,
                    1 => chars.insert(at, c),
                    _ => { chars.remove(at); }
                }
            }
            let text: String = chars.into_iter().collect();
            if let Ok(p) = parse_status(&text) {
                for i in &p.not_understood {
                    prop_assert!(i.line >= 1 && i.column >= 1);
                    prop_assert!(i.line <= text.lines().count());
                }
            }
        }

        #[test]
        fn never_panics_on_row_shaped_noise(
            fields in proptest::collection::vec("[A-Za-z0-9.:%?\\-\\[\\]]{0,12}", 0..12),
        ) {
            let text = format!(
                "Datacenter: dc1\n--  Address  Load  Tokens  Owns (effective)  Host ID  Rack\nUN  {}\n",
                fields.join("  ")
            );
            let _ = parse_status(&text);
        }
    }
}

// ------------------------------------------------------------------ the nodetool probe

#[derive(Debug)]
struct CannedRunner {
    result: Mutex<Option<Result<CommandOutput, CommandError>>>,
    argv: Mutex<Vec<String>>,
}

impl CannedRunner {
    fn new(result: Result<CommandOutput, CommandError>) -> Arc<Self> {
        Arc::new(Self {
            result: Mutex::new(Some(result)),
            argv: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl CommandRunner for CannedRunner {
    async fn run(&self, argv: &[String], _t: Duration) -> Result<CommandOutput, CommandError> {
        *self.argv.lock().unwrap() = argv.to_vec();
        self.result.lock().unwrap().take().unwrap()
    }
}

fn printed(code: i32, stdout: &str, stderr: &str) -> Result<CommandOutput, CommandError> {
    Ok(CommandOutput {
        code: Some(code),
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

fn nodetool_config() -> NodetoolStatusConfig {
    NodetoolStatusConfig::new(["/opt/cassandra/bin/nodetool"])
        .host("127.0.0.1")
        .jmx_port(7199)
}

#[tokio::test]
async fn nodetool_probe_reads_status_and_reports_missing_nodes() {
    let runner = CannedRunner::new(printed(0, &fixture("sample_6.txt"), ""));
    let probe = NodetoolStatusProbe::with_runner(
        target(),
        nodetool_config()
            .jmx_credentials("jmx_ro", "/etc/cassandra/jmx.pw")
            .expected_nodes([
                "172.30.7.89",
                "32fc5a0f-cdca-41e6-b735-2a34a4d85fc6",
                "172.30.7.99",
            ]),
        runner.clone(),
    );
    let obs = observe(&probe, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        *runner.argv.lock().unwrap(),
        [
            "/opt/cassandra/bin/nodetool",
            "-h",
            "127.0.0.1",
            "-p",
            "7199",
            "-u",
            "jmx_ro",
            "-pwf",
            "/etc/cassandra/jmx.pw",
            "status"
        ]
    );
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&obs);
    assert_eq!(r.liveness_source, LivenessSource::NodetoolFailureDetector);
    assert_eq!(r.missing_expected, vec!["172.30.7.99"]);
    assert_eq!(value(&obs, metric::NODES), 5.0);
    assert_eq!(value(&obs, metric::NODES_DOWN), 1.0);
    assert_eq!(value(&obs, metric::NODES_UP), 4.0);
    assert_eq!(value(&obs, metric::MISSING_EXPECTED), 1.0);
    assert_eq!(node_up(&obs, "172.30.7.20"), Some(0.0));
    assert_eq!(obs.samples_named(metric::SCHEMA_VERSIONS).count(), 0);

    // bounded: at most 2 per-node series, the down node first
    let runner = CannedRunner::new(printed(0, &fixture("sample_6.txt"), ""));
    let probe =
        NodetoolStatusProbe::with_runner(target(), nodetool_config().max_node_series(2), runner);
    let obs = observe(&probe, Duration::from_secs(5)).await.unwrap();
    let per_node: Vec<(String, f64)> = obs
        .samples_named(metric::NODE_UP)
        .map(|s| (s.labels["address"].clone(), s.value))
        .collect();
    assert_eq!(
        per_node,
        [
            ("172.30.7.20".to_string(), 0.0),
            ("172.30.7.89".to_string(), 1.0)
        ]
    );
}

#[tokio::test]
async fn nodetool_probe_partial_text_is_incomplete_with_line_numbers() {
    let text = fixture("real_5_0_all_up.txt");
    // cut in the middle of the last row (a truncated capture)
    let cut = &text[..text.find("UN  127.0.0.1").unwrap() + 20];
    let runner = CannedRunner::new(printed(0, cut, ""));
    let probe = NodetoolStatusProbe::with_runner(target(), nodetool_config(), runner);
    let obs = observe(&probe, Duration::from_secs(5)).await.unwrap();
    assert!(!obs.complete);
    assert!(
        obs.gaps.iter().any(|g| g.contains("line 8, column")),
        "{:?}",
        obs.gaps
    );
    assert_eq!(fact(&obs).nodes.len(), 2);
}

/// A stand-in nodetool: an executable script printing `stdout` (and exiting with `code`), run by
/// the real `tokio::process` runner.
fn script(name: &str, body: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rb-probes-cassandra-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodetool_probe_runs_a_real_process_on_the_fake_rings_text() {
    let ring = FakeRing::start(3).await.unwrap();
    ring.kill(1).unwrap();
    let out = std::env::temp_dir().join(format!("rb-probes-ntout-{}", std::process::id()));
    std::fs::write(&out, ring.nodetool_status()).unwrap();
    // the script checks it got `status` as its last argument, as nodetool would
    let tool = script(
        "nodetool",
        &format!(
            "for a in \"$@\"; do last=$a; done\n[ \"$last\" = status ] || {{ echo \"error: unknown command $last\" >&2; exit 1; }}\ncat '{}'",
            out.display()
        ),
    );
    let probe = NodetoolStatusProbe::new(
        target(),
        NodetoolStatusConfig::new([tool.display().to_string()]),
    );
    let obs = observe(&probe, Duration::from_secs(10)).await.unwrap();
    let r = fact(&obs);
    assert_eq!(r.summary(), fake_nodetool(&ring));
    assert_eq!(r.node("127.0.0.2").unwrap().code(), "DN");

    // a keyspace argument reaches the command (and this one refuses it)
    let probe = NodetoolStatusProbe::new(
        target(),
        NodetoolStatusConfig::new([tool.display().to_string()]).keyspace("lakehouse"),
    );
    let e = observe(&probe, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected);
    assert!(e.to_string().contains("unknown command lakehouse"), "{e}");
}

#[tokio::test]
async fn the_tokio_runner_kills_a_command_at_its_timeout() {
    let tool = script("slow-nodetool", "exec sleep 30");
    let started = std::time::Instant::now();
    let e = TokioCommandRunner::new()
        .run(&[tool.display().to_string()], Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, CommandError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let e = TokioCommandRunner::new()
        .run(&[], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(e, CommandError::Empty);
}

// ------------------------------------------------------------------ the fault matrix

/// Run one fault against one probe: `Ok(true/false)` = an observation (complete or not),
/// `Err(kind)` = the probe's error kind.
async fn run_fault(probe: &str, fault: &str) -> Result<bool, ErrorKind> {
    let short = Duration::from_secs(4);
    let outcome = match probe {
        "cql" => {
            let ring = FakeRing::builder()
                .password_auth("rb", "pw")
                .start()
                .await
                .unwrap();
            let contacts = vec![ring.addr(0).unwrap()];
            let mut client = CdrsCqlClient::new().with_password("rb", Secret::new("pw"));
            match fault {
                "none" => {}
                "refused" => ring.kill(0).unwrap(),
                "hang" => ring.set_fault(0, Some(Fault::Hang)).unwrap(),
                "hang_queries" => ring.set_fault(0, Some(Fault::HangQueries)).unwrap(),
                "latency" => ring.set_latency(0, Duration::from_secs(5)).unwrap(),
                "malformed" => ring.set_fault(0, Some(Fault::MalformedFrame)).unwrap(),
                "truncated" => ring.set_fault(0, Some(Fault::TruncatedFrame)).unwrap(),
                "bad_credentials" => {
                    client = CdrsCqlClient::new().with_password("rb", Secret::new("nope"))
                }
                "no_credentials" => client = CdrsCqlClient::new(),
                "peer_refused" => ring.kill(2).unwrap(),
                "peer_hang" => ring.set_fault(2, Some(Fault::Hang)).unwrap(),
                other => panic!("unknown cql fault {other}"),
            }
            let probe = CqlRingProbe::new(
                target(),
                CqlRingConfig::new(contacts)
                    .node_timeout(Duration::from_millis(1500))
                    .heartbeat_wait(Duration::ZERO)
                    .driver_state(false),
                Arc::new(client),
            );
            observe(&probe, short).await
        }
        "cql_scripted" => {
            let mut answers = three_node_answers(vec![gossip(1, "NORMAL,1", 1)]);
            match fault {
                "server_error" => {
                    answers.insert(
                        "SELECT * FROM system.local".into(),
                        Err(CqlError::new(CqlErrorKind::Server, "Server error: boom")),
                    );
                }
                "malformed_rows" => {
                    answers.insert(
                        "SELECT * FROM system.local".into(),
                        Ok(vec![local(1).with("tokens", text("not a set"))]),
                    );
                }
                "two_local_rows" => {
                    answers.insert(
                        "SELECT * FROM system.local".into(),
                        Ok(vec![local(1), local(2)]),
                    );
                }
                other => panic!("unknown cql_scripted fault {other}"),
            }
            observe(
                &scripted(Scripted {
                    answers,
                    ..Default::default()
                }),
                short,
            )
            .await
        }
        "nodetool" => {
            let result = match fault {
                "refused" => printed(
                    1,
                    "",
                    "nodetool: Failed to connect to '127.0.0.1:7199' - ConnectException: 'Connection refused (Connection refused)'.\n",
                ),
                "bad_credentials" => printed(
                    1,
                    "",
                    "nodetool: Failed to connect to '127.0.0.1:7199' - SecurityException: 'Authentication failed! Invalid username or password'.\n",
                ),
                "exit_error" => printed(2, "", "nodetool: Keyspace [nope] does not exist.\n"),
                "malformed" => printed(0, "<html><body>502 Bad Gateway</body></html>\n", ""),
                "empty" => printed(0, "", ""),
                "truncated" => {
                    let t = fixture("sample_3.txt");
                    let cut = t[..t.find("UJ").unwrap() + 15].to_string();
                    printed(0, &cut, "")
                }
                "not_found" => Err(CommandError::Spawn {
                    program: "nodetool".into(),
                    message: "No such file or directory (os error 2)".into(),
                }),
                "timeout" => Err(CommandError::Timeout {
                    program: "nodetool".into(),
                    after: Duration::from_secs(1),
                }),
                other => panic!("unknown nodetool fault {other}"),
            };
            let probe = NodetoolStatusProbe::with_runner(
                target(),
                nodetool_config(),
                CannedRunner::new(result),
            );
            observe(&probe, short).await
        }
        "nodetool_process" => {
            let body = match fault {
                "hang" => "exec sleep 30",
                "killed" => "kill -9 $$",
                other => panic!("unknown nodetool_process fault {other}"),
            };
            let tool = script("nodetool", body);
            let probe = NodetoolStatusProbe::new(
                target(),
                NodetoolStatusConfig::new([tool.display().to_string()])
                    .timeout(Duration::from_millis(500)),
            );
            observe(&probe, short).await
        }
        other => panic!("unknown probe {other}"),
    };
    match outcome {
        Ok(obs) => Ok(obs.complete),
        Err(e) => {
            eprintln!("{probe},{fault}: {e}");
            assert!(!e.to_string().contains("pw\""), "{e}");
            Err(e.kind)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix() {
    let csv = std::fs::read_to_string(format!(
        "{}/tests/fault_matrix/cassandra.csv",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("probe,fault,kind"));
    let rows: Vec<(String, String, String)> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[0].into(), f[1].into(), f[2].into())
        })
        .collect();
    // every fault run here has a row, and every row is run
    let known: Vec<(&str, &[&str])> = vec![
        (
            "cql",
            &[
                "none",
                "refused",
                "hang",
                "hang_queries",
                "latency",
                "malformed",
                "truncated",
                "bad_credentials",
                "no_credentials",
                "peer_refused",
                "peer_hang",
            ],
        ),
        (
            "cql_scripted",
            &["server_error", "malformed_rows", "two_local_rows"],
        ),
        (
            "nodetool",
            &[
                "refused",
                "bad_credentials",
                "exit_error",
                "malformed",
                "empty",
                "truncated",
                "not_found",
                "timeout",
            ],
        ),
        ("nodetool_process", &["hang", "killed"]),
    ];
    let mut want: Vec<(String, String)> = known
        .iter()
        .flat_map(|(p, fs)| fs.iter().map(move |f| (p.to_string(), f.to_string())))
        .collect();
    let mut have: Vec<(String, String)> = rows
        .iter()
        .map(|(p, f, _)| (p.clone(), f.clone()))
        .collect();
    want.sort();
    have.sort();
    assert_eq!(have, want, "the CSV rows and the faults run differ");
    let mut failures = Vec::new();
    for (probe, fault, kind) in &rows {
        let got = match run_fault(probe, fault).await {
            Ok(true) => "complete".to_string(),
            Ok(false) => "incomplete".to_string(),
            Err(k) => format!("{k:?}"),
        };
        if &got != kind {
            failures.push(format!("{probe},{fault}: expected {kind}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

mod row_reader_properties {
    use super::*;
    use proptest::prelude::*;

    fn any_value() -> impl Strategy<Value = CqlValue> {
        prop_oneof![
            Just(CqlValue::Null),
            "[a-zA-Z0-9,.:\\- ]{0,24}".prop_map(CqlValue::Text),
            any::<[u8; 4]>().prop_map(|b| CqlValue::Inet(IpAddr::from(b))),
            "[0-9a-f\\-]{0,36}".prop_map(CqlValue::Uuid),
            any::<i64>().prop_map(CqlValue::Int),
            any::<f64>().prop_map(CqlValue::Double),
            any::<bool>().prop_map(CqlValue::Bool),
            proptest::collection::vec("-?[0-9]{0,20}|x", 0..4).prop_map(CqlValue::TextSet),
            Just(CqlValue::Other("blob".into())),
        ]
    }

    const COLUMNS: &[&str] = &[
        "broadcast_address",
        "listen_address",
        "peer",
        "address",
        "cluster_name",
        "partitioner",
        "host_id",
        "data_center",
        "dc",
        "rack",
        "tokens",
        "schema_version",
        "schema",
        "release_version",
        "native_address",
        "native_port",
        "rpc_address",
        "status",
        "status_with_port",
        "load",
        "heartbeat",
        "generation",
        "native_address_and_port",
    ];

    /// A well-formed row of the kind `base` gives (or an empty one), with a few columns replaced.
    fn any_row(base: fn(u8) -> CqlRow) -> impl Strategy<Value = CqlRow> {
        (
            any::<bool>(),
            2u8..9,
            proptest::collection::vec((0..COLUMNS.len(), any_value()), 0..6),
        )
            .prop_map(move |(from_base, i, cols)| {
                let mut row = if from_base { base(i) } else { CqlRow::new() };
                for (c, v) in cols {
                    row.insert(COLUMNS[c], v);
                }
                row
            })
    }

    fn peer_of(i: u8) -> CqlRow {
        peer(i, i64::from(i) * 1_000_000_007)
    }

    fn gossip_of(i: u8) -> CqlRow {
        gossip(i, "NORMAL,1", 1)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(super::fuzz_cases(128)))]
        /// Whatever rows a node returns, the probe answers an observation or a typed error.
        #[test]
        fn arbitrary_rows_never_panic(
            local_rows in proptest::collection::vec(any_row(local), 0..3),
            peers in proptest::collection::vec(any_row(peer_of), 0..4),
            gossip_rows in proptest::collection::vec(any_row(gossip_of), 0..5),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let answers = HashMap::from([
                ("SELECT * FROM system.local".to_string(), Ok(local_rows)),
                ("SELECT * FROM system.peers_v2".to_string(), Ok(peers)),
                ("SELECT * FROM system_views.gossip_info".to_string(), Ok(gossip_rows)),
            ]);
            let probe = CqlRingProbe::new(
                target(),
                CqlRingConfig::new([sa(1)]).heartbeat_wait(Duration::ZERO),
                Arc::new(ScriptedClient(Arc::new(Scripted { answers, ..Default::default() }))),
            );
            match rt.block_on(probe.observe(&ctx(Duration::from_secs(5)))) {
                Ok(obs) => prop_assert!(obs.facts.get::<Ring>().is_some()),
                Err(e) => prop_assert_eq!(e.kind, ErrorKind::BadResponse, "{}", e),
            }
        }
    }
}
