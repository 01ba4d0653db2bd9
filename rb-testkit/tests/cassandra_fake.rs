//! The fake Cassandra ring against the real driver (cdrs-tokio 9) and the real `nodetool status`
//! layout. Every test is bounded by `tokio::time::timeout`.
#![cfg(feature = "cassandra")]
// Test helpers outside #[test] functions unwrap too; the driver's error type is large.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cdrs_tokio::authenticators::NoneAuthenticatorProvider;
use cdrs_tokio::cluster::session::{Session, SessionBuilder, TcpSessionBuilder};
use cdrs_tokio::cluster::topology::NodeState;
use cdrs_tokio::cluster::{startup, KeyspaceHolder, NodeTcpConfigBuilder, TcpConnectionManager};
use cdrs_tokio::compression::Compression;
use cdrs_tokio::error::Error as CdrsError;
use cdrs_tokio::frame::events::{ServerEvent, StatusChangeType, TopologyChangeType};
use cdrs_tokio::frame::message_error::ErrorType;
use cdrs_tokio::frame::message_query::BodyReqQuery;
use cdrs_tokio::frame::message_response::ResponseBody;
use cdrs_tokio::frame::message_result::{ColType, ColTypeOptionValue, RowsMetadataFlags};
use cdrs_tokio::frame::{Envelope, Flags, Version};
use cdrs_tokio::frame_encoding::{FrameEncodingFactory, ProtocolFrameEncodingFactory};
use cdrs_tokio::load_balancing::RoundRobinLoadBalancingStrategy;
use cdrs_tokio::query::{QueryParamsBuilder, QueryValues};
use cdrs_tokio::transport::{CdrsTransport, TransportTcp};
use cdrs_tokio::types::rows::Row;
use cdrs_tokio::types::value::Value;
use cdrs_tokio::types::IntoRustByName;
use rb_testkit::cassandra::{
    CassandraFakeError, FakeRing, Fault, NodeSpec, NodeStatus, Replication, RequestKind,
};
use tokio::time::timeout;
use uuid::Uuid;

type TcpSession = Session<
    TransportTcp,
    TcpConnectionManager,
    RoundRobinLoadBalancingStrategy<TransportTcp, TcpConnectionManager>,
>;

const T: Duration = Duration::from_secs(10);

async fn session(contact: SocketAddr) -> TcpSession {
    let config = NodeTcpConfigBuilder::new()
        .with_contact_point(contact.into())
        .with_authenticator_provider(Arc::new(NoneAuthenticatorProvider))
        .build()
        .await
        .unwrap();
    TcpSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), config)
        .build()
        .await
        .unwrap()
}

/// One cdrs transport to one node, after STARTUP (no driver-level routing).
async fn raw(addr: SocketAddr) -> Result<TransportTcp, CdrsError> {
    raw_with(addr, Compression::None).await
}

async fn raw_with(addr: SocketAddr, compression: Compression) -> Result<TransportTcp, CdrsError> {
    let (tx, _rx) = tokio::sync::watch::channel(None);
    let holder = Arc::new(KeyspaceHolder::new(tx));
    let transport = TransportTcp::new(
        addr,
        holder.clone(),
        None,
        None,
        compression,
        ProtocolFrameEncodingFactory.create_encoder(Version::V4, compression),
        ProtocolFrameEncodingFactory.create_decoder(Version::V4, compression),
        16,
        true,
    )
    .await?;
    startup(
        &transport,
        &NoneAuthenticatorProvider,
        holder.as_ref(),
        compression,
        Version::V4,
    )
    .await?;
    Ok(transport)
}

async fn raw_query(
    t: &TransportTcp,
    query: &str,
    params: QueryParamsBuilder,
) -> Result<Envelope, CdrsError> {
    let envelope = Envelope::new_query(
        BodyReqQuery {
            query: query.to_string(),
            query_params: params.build(),
        },
        Flags::empty(),
        Version::V4,
    );
    t.write_envelope(&envelope, false).await
}

fn rows(envelope: &Envelope) -> Vec<Row> {
    envelope.response_body().unwrap().into_rows().unwrap()
}

fn column_types(envelope: &Envelope) -> HashMap<String, ColType> {
    let body = envelope.response_body().unwrap();
    let meta = body.as_rows_metadata().unwrap();
    meta.col_specs
        .iter()
        .map(|c| (c.name.clone(), c.col_type.id))
        .collect()
}

fn server_error(result: Result<Envelope, CdrsError>) -> (ErrorType, String) {
    match result {
        Err(CdrsError::Server { body, .. }) => (body.ty, body.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let ok = timeout(T, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}");
}

async fn next_event<F: Fn(&ServerEvent) -> bool>(
    rx: &mut tokio::sync::broadcast::Receiver<ServerEvent>,
    f: F,
) -> ServerEvent {
    timeout(T, async {
        loop {
            let e = rx.recv().await.unwrap();
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdrs_discovers_the_ring_with_dc_rack_tokens_and_host_ids() {
    timeout(T, async {
        let started = std::time::Instant::now();
        let ring = FakeRing::builder()
            .node(NodeSpec::new().datacenter("dc1").rack("r1"))
            .node(NodeSpec::new().datacenter("dc1").rack("r2"))
            .node(NodeSpec::new().datacenter("dc2").rack("r1"))
            .start()
            .await
            .unwrap();
        let start_time = started.elapsed();
        eprintln!("3-node fake ring started in {start_time:?}");
        assert!(
            start_time < Duration::from_millis(500),
            "start took {start_time:?}"
        );

        let s = session(ring.addr(0).unwrap()).await;
        let meta = s.cluster_metadata();
        assert_eq!(meta.nodes().len(), 3);
        for n in ring.nodes() {
            let node = meta
                .find_node_by_host_id(&n.host_id)
                .expect("node discovered");
            assert_eq!(node.broadcast_rpc_address(), n.native_addr);
            assert_eq!(node.datacenter(), n.datacenter);
            assert_eq!(node.rack(), n.rack);
            let tokens: Vec<i64> = node.tokens().iter().map(|t| t.value).collect();
            let mut tokens = tokens;
            tokens.sort_unstable();
            assert_eq!(tokens, n.tokens);
            assert_eq!(n.tokens.len(), 16);
        }
        assert!(
            meta.keyspace("system_traces").is_some(),
            "keyspaces via toJson(replication)"
        );

        // node i really lives on 127.0.0.<i+1>, all on one port
        assert_eq!(
            ring.addr(1).unwrap().ip(),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(ring.addr(2).unwrap().port(), ring.port());

        // system.local: the column types Cassandra uses
        let local = s.query("SELECT * FROM system.local").await.unwrap();
        let types = column_types(&local);
        assert_eq!(types["key"], ColType::Varchar);
        assert_eq!(types["host_id"], ColType::Uuid);
        assert_eq!(types["rpc_address"], ColType::Inet);
        assert_eq!(types["rpc_port"], ColType::Int);
        assert_eq!(types["tokens"], ColType::Set);
        assert_eq!(types["schema_version"], ColType::Uuid);
        let body = local.response_body().unwrap();
        let tokens_spec = body
            .as_rows_metadata()
            .unwrap()
            .col_specs
            .iter()
            .find(|c| c.name == "tokens")
            .unwrap()
            .col_type
            .clone();
        assert!(matches!(
            tokens_spec.value,
            Some(ColTypeOptionValue::CSet(ref inner)) if inner.id == ColType::Varchar
        ));
        let row = &rows(&local)[0];
        let cluster: String = row.get_r_by_name("cluster_name").unwrap();
        assert_eq!(cluster, "Test Cluster");
        let release: String = row.get_r_by_name("release_version").unwrap();
        assert_eq!(release, "5.0.9");

        // system.peers_v2 from node 0: the two others, with native address/port
        let t0 = raw(ring.addr(0).unwrap()).await.unwrap();
        let peers = raw_query(
            &t0,
            "SELECT * FROM system.peers_v2",
            QueryParamsBuilder::new(),
        )
        .await
        .unwrap();
        let types = column_types(&peers);
        assert_eq!(types["peer"], ColType::Inet);
        assert_eq!(types["native_port"], ColType::Int);
        assert_eq!(types["host_id"], ColType::Uuid);
        let peer_rows = rows(&peers);
        assert_eq!(peer_rows.len(), 2);
        for r in &peer_rows {
            let port: i32 = r.get_r_by_name("native_port").unwrap();
            assert_eq!(port as u16, ring.port());
            let ip: IpAddr = r.get_r_by_name("native_address").unwrap();
            assert_ne!(ip, ring.addr(0).unwrap().ip());
        }

        // what the driver sent at connect
        let sent = ring.queries(0).unwrap();
        assert!(
            sent.iter().any(|q| q == "SELECT * FROM system.local"),
            "{sent:?}"
        );
        assert!(
            sent.iter().any(|q| q == "SELECT * FROM system.peers_v2"),
            "{sent:?}"
        );
        assert!(
            sent.iter().any(|q| q.contains("toJson(replication)")),
            "{sent:?}"
        );
        let kinds: Vec<RequestKind> = ring.requests(0).unwrap().iter().map(|r| r.kind).collect();
        assert!(kinds.contains(&RequestKind::Startup));
        assert!(kinds.contains(&RequestKind::Register));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_peers_v2_invalid_the_driver_falls_back_to_system_peers() {
    timeout(T, async {
        let ring = FakeRing::builder()
            .nodes(3)
            .peers_v2_invalid(true)
            .start()
            .await
            .unwrap();
        let s = session(ring.addr(0).unwrap()).await;
        let meta = s.cluster_metadata();
        assert_eq!(meta.nodes().len(), 3);
        for n in ring.nodes() {
            let node = meta.find_node_by_host_id(&n.host_id).unwrap();
            // system.peers has no port: the driver reuses the contact point's, which is shared
            assert_eq!(node.broadcast_rpc_address(), n.native_addr);
        }
        let sent = ring.queries(0).unwrap();
        assert!(
            sent.iter().any(|q| q == "SELECT * FROM system.peers"),
            "{sent:?}"
        );

        let (ty, msg) = server_error(s.query("SELECT * FROM system.peers_v2").await);
        assert_eq!(ty, ErrorType::Invalid);
        assert_eq!(msg, "unconfigured table peers_v2");

        let peers = s.query("SELECT * FROM system.peers").await.unwrap();
        let types = column_types(&peers);
        assert_eq!(types["rpc_address"], ColType::Inet);
        assert!(!types.contains_key("native_port"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_goes_down_in_the_driver_and_comes_back_up() {
    timeout(Duration::from_secs(30), async {
        let ring = FakeRing::start(3).await.unwrap();
        let s = session(ring.addr(0).unwrap()).await;
        let mut events = s.create_event_receiver();
        let victim = ring.node(2).unwrap();
        let state_of = |s: &TcpSession| {
            s.cluster_metadata()
                .find_node_by_host_id(&victim.host_id)
                .map(|n| n.state())
        };
        assert_eq!(state_of(&s), Some(NodeState::Up));

        ring.kill(2).unwrap();
        // refused from the moment kill returns (not when the aborted listener task is dropped)
        assert!(tokio::net::TcpStream::connect(victim.native_addr)
            .await
            .is_err());
        let e = next_event(&mut events, |e| matches!(e, ServerEvent::StatusChange(_))).await;
        match e {
            ServerEvent::StatusChange(sc) => {
                assert_eq!(sc.change_type, StatusChangeType::Down);
                assert_eq!(sc.addr, victim.native_addr);
            }
            other => panic!("{other:?}"),
        }
        wait_for("node state Down", || state_of(&s) == Some(NodeState::Down)).await;
        // really down: connections refused
        assert!(tokio::net::TcpStream::connect(victim.native_addr)
            .await
            .is_err());
        assert!(!ring.node(2).unwrap().up);

        ring.revive(2).await.unwrap();
        let e = next_event(&mut events, |e| matches!(e, ServerEvent::StatusChange(_))).await;
        match e {
            ServerEvent::StatusChange(sc) => {
                assert_eq!(sc.change_type, StatusChangeType::Up);
                assert_eq!(sc.addr, victim.native_addr);
            }
            other => panic!("{other:?}"),
        }
        wait_for("node state Up", || state_of(&s) == Some(NodeState::Up)).await;
        let t = raw(victim.native_addr).await.unwrap();
        let local = raw_query(
            &t,
            "SELECT host_id FROM system.local",
            QueryParamsBuilder::new(),
        )
        .await
        .unwrap();
        let id: Uuid = rows(&local)[0].get_r_by_name("host_id").unwrap();
        assert_eq!(id, victim.host_id);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_changes_reach_the_driver() {
    timeout(T, async {
        let ring = FakeRing::start(3).await.unwrap();
        let s = session(ring.addr(0).unwrap()).await;
        let mut events = s.create_event_receiver();

        // a bootstrapping node: visible in gossip and nodetool, not yet in peers
        let i = ring
            .add_node(NodeSpec::new().status(NodeStatus::Joining))
            .unwrap();
        assert_eq!(i, 3);
        let t0 = raw(ring.addr(0).unwrap()).await.unwrap();
        let peers = raw_query(
            &t0,
            "SELECT peer FROM system.peers_v2",
            QueryParamsBuilder::new(),
        )
        .await
        .unwrap();
        assert_eq!(rows(&peers).len(), 2);
        assert!(ring.nodetool_status().contains("UJ  127.0.0.4"));

        ring.set_status(3, NodeStatus::Normal).unwrap();
        let e = next_event(&mut events, |e| matches!(e, ServerEvent::TopologyChange(_))).await;
        let ServerEvent::TopologyChange(tc) = e else {
            unreachable!()
        };
        assert_eq!(tc.change_type, TopologyChangeType::NewNode);
        assert_eq!(tc.addr, ring.addr(3).unwrap());
        let new_id = ring.node(3).unwrap().host_id;
        wait_for("the new node in the driver's metadata", || {
            s.cluster_metadata().find_node_by_host_id(&new_id).is_some()
        })
        .await;

        ring.remove_node(1).unwrap();
        let e = next_event(&mut events, |e| matches!(e, ServerEvent::TopologyChange(_))).await;
        let ServerEvent::TopologyChange(tc) = e else {
            unreachable!()
        };
        assert_eq!(tc.change_type, TopologyChangeType::RemovedNode);
        assert_eq!(tc.addr, ring.addr(1).unwrap());
        let removed = ring.node(1).unwrap().host_id;
        wait_for("the removed node gone from the driver's metadata", || {
            s.cluster_metadata()
                .find_node_by_host_id(&removed)
                .is_none()
        })
        .await;
        assert!(!ring.nodetool_status().contains("127.0.0.2 "));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_info_heartbeats_rise_for_live_nodes_and_freeze_for_dead_ones() {
    timeout(T, async {
        let ring = FakeRing::start(3).await.unwrap();
        let t = raw(ring.addr(0).unwrap()).await.unwrap();
        let read = || async {
            let e = raw_query(
                &t,
                "SELECT * FROM system_views.gossip_info",
                QueryParamsBuilder::new(),
            )
            .await
            .unwrap();
            let types = column_types(&e);
            assert_eq!(types["address"], ColType::Inet);
            assert_eq!(types["heartbeat"], ColType::Int);
            assert_eq!(types["status_with_port"], ColType::Varchar);
            assert_eq!(types["schema_version"], ColType::Int);
            assert!(!types.contains_key("tokens"));
            assert!(types.contains_key("tokens_version"));
            rows(&e)
                .into_iter()
                .map(|r| {
                    let addr: IpAddr = r.get_r_by_name("address").unwrap();
                    let hb: i32 = r.get_r_by_name("heartbeat").unwrap();
                    let status: String = r.get_r_by_name("status_with_port").unwrap();
                    let native: String = r.get_r_by_name("native_address_and_port").unwrap();
                    let dc: String = r.get_r_by_name("dc").unwrap();
                    (addr, (hb, status, native, dc))
                })
                .collect::<HashMap<_, _>>()
        };
        let before = read().await;
        assert_eq!(before.len(), 3);
        let ip2 = ring.addr(2).unwrap().ip();
        let (_, status, native, dc) = &before[&ip2];
        assert!(status.starts_with("NORMAL,"), "{status}");
        assert_eq!(native, &ring.addr(2).unwrap().to_string());
        assert_eq!(dc, "datacenter1");

        ring.kill(2).unwrap();
        let frozen = read().await[&ip2].0;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let after = read().await;
        assert_eq!(after[&ip2].0, frozen, "a dead node's heartbeat is frozen");
        let ip1 = ring.addr(1).unwrap().ip();
        assert!(
            after[&ip1].0 > before[&ip1].0,
            "a live node's heartbeat rises"
        );

        ring.set_status(1, NodeStatus::Leaving).unwrap();
        assert!(read().await[&ip1].1.starts_with("LEAVING,"));

        // a graceful stop is announced through gossip; a restart starts a new generation
        let generation = |rows: &[Row], ip: IpAddr| -> i32 {
            rows.iter()
                .find(|r| {
                    let a: IpAddr = r.get_r_by_name("address").unwrap();
                    a == ip
                })
                .map(|r| r.get_r_by_name("generation").unwrap())
                .unwrap()
        };
        let gossip_rows = |e: Envelope| rows(&e);
        let g0 = generation(
            &gossip_rows(
                raw_query(
                    &t,
                    "SELECT * FROM system_views.gossip_info",
                    QueryParamsBuilder::new(),
                )
                .await
                .unwrap(),
            ),
            ip1,
        );
        ring.stop(1).unwrap();
        assert_eq!(read().await[&ip1].1, "shutdown,true");
        ring.revive(1).await.unwrap();
        let after = gossip_rows(
            raw_query(
                &t,
                "SELECT * FROM system_views.gossip_info",
                QueryParamsBuilder::new(),
            )
            .await
            .unwrap(),
        );
        assert!(generation(&after, ip1) > g0);
        assert!(read().await[&ip1].1.starts_with("LEAVING,"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_disagreement_is_visible_in_local_peers_and_gossip() {
    timeout(T, async {
        let ring = FakeRing::start(3).await.unwrap();
        let other = Uuid::new_v4();
        ring.set_schema_version(2, other).unwrap();
        let t0 = raw(ring.addr(0).unwrap()).await.unwrap();
        let peers = raw_query(
            &t0,
            "SELECT peer, schema_version FROM system.peers_v2",
            QueryParamsBuilder::new(),
        )
        .await
        .unwrap();
        let versions: HashMap<IpAddr, Uuid> = rows(&peers)
            .iter()
            .map(|r| {
                (
                    r.get_r_by_name("peer").unwrap(),
                    r.get_r_by_name("schema_version").unwrap(),
                )
            })
            .collect();
        assert_eq!(versions[&ring.addr(2).unwrap().ip()], other);
        assert_eq!(
            versions[&ring.addr(1).unwrap().ip()],
            ring.initial_schema_version()
        );

        let t2 = raw(ring.addr(2).unwrap()).await.unwrap();
        let local = raw_query(
            &t2,
            "SELECT schema_version FROM system.local WHERE key = 'local'",
            QueryParamsBuilder::new(),
        )
        .await
        .unwrap();
        let mine: Uuid = rows(&local)[0].get_r_by_name("schema_version").unwrap();
        assert_eq!(mine, other);

        let gossip = raw_query(
            &t0,
            "SELECT address, schema FROM system_views.gossip_info",
            QueryParamsBuilder::new(),
        )
        .await
        .unwrap();
        let distinct: std::collections::HashSet<String> = rows(&gossip)
            .iter()
            .map(|r| -> String { r.get_r_by_name("schema").unwrap() })
            .collect();
        assert_eq!(distinct.len(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_errors_use_prepare_and_paging() {
    timeout(T, async {
        let ring = FakeRing::builder()
            .nodes(4)
            .keyspace("lakehouse", Replication::NetworkTopology(vec![("datacenter1".into(), 3)]))
            .start()
            .await
            .unwrap();
        let s = session(ring.addr(0).unwrap()).await;

        let (ty, _) = server_error(s.query("SELECT * FROM system.nope").await);
        assert_eq!(ty, ErrorType::Invalid);
        let (ty, _) = server_error(s.query("SELEKT * FROM system.local").await);
        assert_eq!(ty, ErrorType::Syntax);
        let (ty, msg) = server_error(s.query("SELECT nope FROM system.local").await);
        assert_eq!(ty, ErrorType::Invalid);
        assert!(msg.contains("Undefined column name nope"), "{msg}");
        let (ty, msg) = server_error(
            s.query("SELECT * FROM system.peers_v2 WHERE data_center = 'x'").await,
        );
        assert_eq!(ty, ErrorType::Invalid);
        assert!(msg.contains("ALLOW FILTERING"), "{msg}");

        let used = s.query("USE system").await.unwrap();
        assert!(matches!(
            used.response_body().unwrap(),
            ResponseBody::Result(r) if r.clone().into_set_keyspace().is_some()
        ));
        let (ty, _) = server_error(s.query("USE nowhere").await);
        assert_eq!(ty, ErrorType::Invalid);

        // replication as the driver reads it
        let ks = s
            .query_with_values(
                "SELECT keyspace_name, toJson(replication) AS replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
                QueryValues::SimpleValues(vec![Value::new("lakehouse")]),
            )
            .await
            .unwrap();
        let r = &rows(&ks)[0];
        let json: String = r.get_r_by_name("replication").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["class"], "org.apache.cassandra.locator.NetworkTopologyStrategy");
        assert_eq!(parsed["datacenter1"], "3");

        // PREPARE / EXECUTE through the driver (routed to any node)
        let prepared = s
            .prepare("SELECT host_id FROM system.local WHERE key = ?")
            .await
            .unwrap();
        let out = s
            .exec_with_values(
                &prepared,
                QueryValues::SimpleValues(vec![Value::new("local")]),
            )
            .await
            .unwrap();
        let id: Uuid = rows(&out)[0].get_r_by_name("host_id").unwrap();
        assert!(ring.nodes().iter().any(|n| n.host_id == id));

        // PREPARE / EXECUTE on one node with a bound inet; unknown ids are Unprepared
        let t0 = raw(ring.addr(0).unwrap()).await.unwrap();
        let prep = t0
            .write_envelope(
                &Envelope::new_req_prepare(
                    "SELECT host_id FROM system.peers_v2 WHERE peer = ?".into(),
                    None,
                    Flags::empty(),
                    Version::V4,
                ),
                false,
            )
            .await
            .unwrap();
        let prepared = match prep.response_body().unwrap() {
            ResponseBody::Result(r) => r.into_prepared().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(prepared.metadata.col_specs[0].name, "peer");
        assert_eq!(prepared.metadata.col_specs[0].col_type.id, ColType::Inet);
        assert_eq!(prepared.metadata.pk_indexes, vec![0]);
        let target = ring.node(3).unwrap();
        let params = QueryParamsBuilder::new()
            .with_values(QueryValues::SimpleValues(vec![Value::new(
                target.native_addr.ip(),
            )]))
            .build();
        let exec = |id| {
            Envelope::new_req_execute(id, None, &params, Flags::empty(), Version::V4)
        };
        let out = t0.write_envelope(&exec(&prepared.id), false).await.unwrap();
        let found = rows(&out);
        assert_eq!(found.len(), 1);
        let id: Uuid = found[0].get_r_by_name("host_id").unwrap();
        assert_eq!(id, target.host_id);
        assert!(ring
            .requests(0)
            .unwrap()
            .iter()
            .any(|r| r.kind == RequestKind::Execute
                && r.query.as_deref() == Some("SELECT host_id FROM system.peers_v2 WHERE peer = ?")));
        let unknown = cdrs_tokio::types::CBytesShort::new(vec![1, 2, 3]);
        let (ty, _) = server_error(t0.write_envelope(&exec(&unknown), false).await);
        assert!(matches!(ty, ErrorType::Unprepared(_)), "{ty:?}");

        // paging over peers (3 rows from node 0, 1 per page)
        let mut state = None;
        let mut seen = 0;
        for _ in 0..5 {
            let mut p = QueryParamsBuilder::new().with_page_size(1);
            if let Some(st) = state.take() {
                p = p.with_paging_state(st);
            }
            let e = raw_query(&t0, "SELECT * FROM system.peers_v2", p).await.unwrap();
            let body = e.response_body().unwrap();
            let meta = body.as_rows_metadata().unwrap().clone();
            seen += body.into_rows().unwrap().len();
            if meta.flags.contains(RowsMetadataFlags::HAS_MORE_PAGES) {
                state = meta.paging_state;
            } else {
                break;
            }
        }
        assert_eq!(seen, 3);
        assert!(state.is_none());

        // count(*) and an empty result keep their metadata
        let c = raw_query(&t0, "SELECT count(*) FROM system.peers_v2", QueryParamsBuilder::new())
            .await
            .unwrap();
        let n: i64 = rows(&c)[0].get_r_by_name("count").unwrap();
        assert_eq!(n, 3);
        let none = raw_query(
            &t0,
            "SELECT * FROM system.local WHERE key = 'elsewhere'",
            QueryParamsBuilder::new(),
        )
        .await
        .unwrap();
        assert!(rows(&none).is_empty());
        assert!(column_types(&none).contains_key("host_id"));
        assert!(!rows(&c)[0].contains_column("host_id"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_hang_time_out_and_malformed_frames_fail_fast() {
    timeout(T, async {
        let ring = FakeRing::start(3).await.unwrap();

        // a node that accepts TCP and never answers: the client's own timeout fires
        ring.set_fault(1, Some(Fault::Hang)).unwrap();
        let hung = timeout(Duration::from_millis(300), raw(ring.addr(1).unwrap())).await;
        assert!(hung.is_err(), "STARTUP on a hung node must not complete");
        assert!(ring
            .requests(1)
            .unwrap()
            .iter()
            .any(|r| r.kind == RequestKind::Startup));

        // handshake fine, queries never answered
        ring.set_fault(1, Some(Fault::HangQueries)).unwrap();
        let t1 = raw(ring.addr(1).unwrap()).await.unwrap();
        let q = timeout(
            Duration::from_millis(300),
            raw_query(&t1, "SELECT * FROM system.local", QueryParamsBuilder::new()),
        )
        .await;
        assert!(q.is_err(), "a hung query must time out client-side");

        // malformed and truncated frames: an error, quickly, not a hang
        for fault in [Fault::MalformedFrame, Fault::TruncatedFrame] {
            ring.set_fault(2, Some(fault.clone())).unwrap();
            let t2 = raw(ring.addr(2).unwrap()).await.unwrap();
            let res = timeout(
                Duration::from_secs(2),
                raw_query(&t2, "SELECT * FROM system.local", QueryParamsBuilder::new()),
            )
            .await
            .unwrap_or_else(|_| panic!("{fault:?} must not hang"));
            assert!(
                res.is_err(),
                "{fault:?} must be a client error, got {res:?}"
            );
        }
        ring.set_fault(2, None).unwrap();
        let t2 = raw(ring.addr(2).unwrap()).await.unwrap();
        assert!(
            raw_query(&t2, "SELECT * FROM system.local", QueryParamsBuilder::new())
                .await
                .is_ok()
        );

        // latency
        ring.set_fault(1, None).unwrap();
        ring.set_latency(1, Duration::from_millis(200)).unwrap();
        let t1 = raw(ring.addr(1).unwrap()).await.unwrap();
        let started = std::time::Instant::now();
        raw_query(&t1, "SELECT * FROM system.local", QueryParamsBuilder::new())
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
    })
    .await
    .unwrap();
}

// ---------------------------------------------------------------- nodetool status

/// One node row of `nodetool status`, split on whitespace (never on column positions).
#[derive(Debug)]
struct StatusRow {
    code: String,
    address: IpAddr,
    load: Option<String>,
    tokens: Option<usize>,
    owns: Option<f64>,
    host_id: Option<Uuid>,
    rack: String,
}

#[derive(Debug)]
struct StatusBlock {
    dc: String,
    header: Vec<String>,
    rows: Vec<StatusRow>,
}

const UNITS: &[&str] = &["bytes", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"];

/// Parse `nodetool status` and check its structure: every DC block has the header, the `=`
/// underline, the two legend lines, a column header starting with `--`, and rows whose columns
/// start where the header's do.
fn parse_status(text: &str) -> (Vec<StatusBlock>, Option<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut note = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(dc) = line.strip_prefix("Datacenter: ") {
            let underline = lines[i + 1];
            assert!(
                !underline.is_empty() && underline.chars().all(|c| c == '='),
                "{underline:?}"
            );
            assert_eq!(lines[i + 2], "Status=Up/Down");
            assert_eq!(lines[i + 3], "|/ State=Normal/Leaving/Joining/Moving");
            let header_line = lines[i + 4];
            assert!(header_line.starts_with("--  Address"), "{header_line:?}");
            let cells = header_cells(header_line);
            let header: Vec<String> = cells.iter().map(|(_, n)| n.replace(' ', "")).collect();
            let starts: Vec<usize> = cells.iter().map(|(p, _)| *p).collect();
            i += 5;
            let mut rows = Vec::new();
            while i < lines.len()
                && !lines[i].trim().is_empty()
                && !lines[i].starts_with("Datacenter: ")
                && !lines[i].starts_with("Note:")
            {
                let row_line = lines[i];
                let row_starts = column_starts(&merge_load(row_line));
                assert_eq!(
                    row_starts, starts,
                    "row columns aligned with the header: {row_line:?}"
                );
                rows.push(parse_row(row_line, &header));
                i += 1;
            }
            blocks.push(StatusBlock {
                dc: dc.to_string(),
                header,
                rows,
            });
            continue;
        }
        if let Some(n) = line.strip_prefix("Note: ") {
            note = Some(n.to_string());
        }
        i += 1;
    }
    (blocks, note)
}

/// "4.69 GiB" is one cell: glue value and unit for position checks.
fn merge_load(line: &str) -> String {
    let mut out = line.to_string();
    for u in UNITS {
        out = out.replace(&format!(" {u} "), &format!("_{u} "));
    }
    out
}

/// Header cells and where they start ("Owns (effective)" and "Host ID" are one cell each).
fn header_cells(line: &str) -> Vec<(usize, String)> {
    const NAMES: &[&str] = &[
        "--",
        "Address",
        "Load",
        "Tokens",
        "Token",
        "Owns (effective)",
        "Owns",
        "Host ID",
        "Rack",
    ];
    let mut out = Vec::new();
    let mut p = 0;
    while p < line.len() {
        if line.as_bytes()[p] == b' ' {
            p += 1;
            continue;
        }
        let rest = &line[p..];
        let name = NAMES
            .iter()
            .find(|n| {
                rest.starts_with(**n) && rest[n.len()..].chars().next().is_none_or(|c| c == ' ')
            })
            .unwrap_or_else(|| panic!("unknown header cell at {p} in {line:?}"));
        out.push((p, name.to_string()));
        p += name.len();
    }
    out
}

fn column_starts(line: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c != ' ' && prev_space {
            starts.push(i);
        }
        prev_space = c == ' ';
    }
    starts
}

fn parse_row(line: &str, header: &[String]) -> StatusRow {
    let mut f: Vec<String> = line.split_whitespace().map(String::from).collect();
    // glue "<value> <unit>" loads
    if f.len() > 3 && UNITS.contains(&f[3].as_str()) {
        let unit = f.remove(3);
        f[2] = format!("{} {unit}", f[2]);
    }
    assert_eq!(f.len(), header.len(), "{line:?}");
    let col = |name: &str| header.iter().position(|h| h == name);
    let owns_col = col("Owns(effective)").or_else(|| col("Owns")).unwrap();
    let code = f[0].clone();
    assert!(
        ["UN", "UJ", "UL", "UM", "DN", "DJ", "DL", "DM"].contains(&code.as_str()),
        "{code}"
    );
    let load = (f[2] != "?").then(|| f[2].clone());
    if let Some(l) = &load {
        let (v, u) = l.split_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok() && UNITS.contains(&u), "{l}");
    }
    StatusRow {
        code,
        address: f[1].parse().unwrap(),
        load,
        tokens: col("Tokens").map(|i| f[i].parse().unwrap()),
        owns: (f[owns_col] != "?").then(|| f[owns_col].trim_end_matches('%').parse().unwrap()),
        host_id: (f[col("HostID").unwrap()] != "null")
            .then(|| f[col("HostID").unwrap()].parse().unwrap()),
        rack: f[f.len() - 1].clone(),
    }
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/fixtures/cassandra/nodetool/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_status_parser_accepts_every_real_sample() {
    for name in [
        "sample_1.txt",
        "sample_3.txt",
        "sample_4.txt",
        "sample_6.txt",
    ] {
        let (blocks, _) = parse_status(&fixture(name));
        assert!(!blocks.is_empty(), "{name}");
        assert!(blocks.iter().all(|b| !b.rows.is_empty() || b.dc.is_empty()));
    }
    let (b, note) = parse_status(&fixture("sample_1.txt"));
    assert_eq!(b[0].header[4], "Owns");
    assert!(note.unwrap().starts_with("Non-system keyspaces"));
    let (b, _) = parse_status(&fixture("sample_3.txt"));
    assert_eq!(b[0].rows[1].code, "UJ");
    assert_eq!(b[0].rows[1].owns, None);
    let (b, _) = parse_status(&fixture("sample_6.txt"));
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].rows[0].code, "DN");
    assert_eq!(b[0].rows[0].host_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodetool_status_renders_every_state_like_the_real_tool() {
    timeout(T, async {
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
        let text = ring.nodetool_status();
        let (blocks, note) = parse_status(&text);
        assert_eq!(note, None);
        assert_eq!(blocks.len(), 1);
        let b = &blocks[0];
        assert_eq!(b.dc, "datacenter1");
        // same header as the 4.0+ samples (sample_3 / sample_4)
        let (sample, _) = parse_status(&fixture("sample_4.txt"));
        assert_eq!(b.header, sample[0].header);
        let codes: Vec<&str> = b.rows.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["UN", "DN", "UJ", "UL", "UM"]);
        for (r, n) in b.rows.iter().zip(ring.nodes()) {
            assert_eq!(r.address, n.native_addr.ip());
            assert_eq!(r.host_id, Some(n.host_id));
            assert_eq!(r.tokens, Some(16));
            assert_eq!(r.rack, "rack1");
        }
        assert_eq!(b.rows[4].load.as_deref(), Some("4.69 GiB"));
        // the joining node owns nothing yet (like sample_3's UJ row); RF 3 over 4 owners
        assert_eq!(b.rows[2].owns, None);
        let total: f64 = b.rows.iter().filter_map(|r| r.owns).sum();
        assert!((total - 300.0).abs() < 0.5, "{total}\n{text}");

        // two user keyspaces with different replication: `Owns`, `?` and the tool's note
        ring.set_keyspace("other", Replication::Simple(1));
        let text = ring.nodetool_status();
        let (blocks, note) = parse_status(&text);
        assert_eq!(blocks[0].header[4], "Owns");
        assert!(blocks[0].rows.iter().all(|r| r.owns.is_none()));
        assert_eq!(
            note.as_deref(),
            Some("Non-system keyspaces don't have the same replication settings, effective ownership information is meaningless")
        );
        // and per keyspace
        let one = ring.nodetool_status_keyspace("other").unwrap();
        let (blocks, _) = parse_status(&one);
        let total: f64 = blocks[0].rows.iter().filter_map(|r| r.owns).sum();
        assert!((total - 100.0).abs() < 0.5, "{one}");
        assert!(ring.nodetool_status_keyspace("missing").is_err());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodetool_status_multi_dc_layout_is_exact() {
    timeout(T, async {
        let id = |n: u128| Uuid::from_u128(0x35ea8c9f_b7a2_40a7_b9c5_0ee8b91fdd00 + n);
        let ring = FakeRing::builder()
            .node(NodeSpec::new().datacenter("dc1").rack("r1").host_id(id(1)).tokens(vec![-6_000_000_000_000_000_000]).load_bytes(Some(5_035_763_957)))
            .node(NodeSpec::new().datacenter("dc1").rack("r2").host_id(id(2)).tokens(vec![0]).load_bytes(Some(5_057_238_794)))
            .node(NodeSpec::new().datacenter("dc2").rack("r1").host_id(id(3)).tokens(vec![6_000_000_000_000_000_000]).load_bytes(None))
            .start()
            .await
            .unwrap();
        ring.kill(2).unwrap();
        // No user keyspace: ownership of system_traces (SimpleStrategy, RF 2). The ranges are
        // (6e18, -6e18] = 2^64 - 12e18, (-6e18, 0] = 6e18 and (0, 6e18] = 6e18, so nodes 1 and 2
        // own (2^64 - 6e18) / 2^64 = 67.5% and node 3 owns 12e18 / 2^64 = 65.1%.
        let expected = format!(
            "Datacenter: dc1\n\
             ===============\n\
             Status=Up/Down\n\
             |/ State=Normal/Leaving/Joining/Moving\n\
             --  Address    Load      Tokens  Owns (effective)  Host ID                               Rack\n\
             UN  127.0.0.1  4.69 GiB  1       67.5%             {}  r1  \n\
             UN  127.0.0.2  4.71 GiB  1       67.5%             {}  r2  \n\
             \n\
             Datacenter: dc2\n\
             ===============\n\
             Status=Up/Down\n\
             |/ State=Normal/Leaving/Joining/Moving\n\
             --  Address    Load      Tokens  Owns (effective)  Host ID                               Rack\n\
             DN  127.0.0.3  ?         1       65.1%             {}  r1  \n\
             \n",
            id(1),
            id(2),
            id(3)
        );
        assert_eq!(ring.nodetool_status(), expected);
    })
    .await
    .unwrap();
}

// ------------------------------------------------- against the real Cassandra 5.0 captures

fn real_fixture(name: &str) -> String {
    let path = format!(
        "{}/fixtures/real/cassandra/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn cql_type(t: &cdrs_tokio::frame::message_result::ColTypeOption) -> String {
    match (&t.id, &t.value) {
        (ColType::Varchar, _) => "text".into(),
        (ColType::Int, _) => "int".into(),
        (ColType::Bigint, _) => "bigint".into(),
        (ColType::Boolean, _) => "boolean".into(),
        (ColType::Uuid, _) => "uuid".into(),
        (ColType::Inet, _) => "inet".into(),
        (ColType::Blob, _) => "blob".into(),
        (ColType::Set, Some(ColTypeOptionValue::CSet(inner))) => {
            format!("set<{}>", cql_type(inner))
        }
        (ColType::Map, Some(ColTypeOptionValue::CMap(k, v))) => {
            format!("map<{}, {}>", cql_type(k), cql_type(v))
        }
        other => panic!("unexpected type {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_tables_have_the_columns_of_a_real_cassandra_5_ring() {
    timeout(T, async {
        let real: serde_json::Value =
            serde_json::from_str(&real_fixture("system_tables_columns.json")).unwrap();
        let ring = FakeRing::start(3).await.unwrap();
        let t = raw(ring.addr(0).unwrap()).await.unwrap();
        let tables = real["tables"].as_object().unwrap();
        assert!(tables.len() >= 4);
        for (table, columns) in tables {
            let expected: Vec<(String, String)> = columns
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["cql_type"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let e = raw_query(
                &t,
                &format!("SELECT * FROM {table} LIMIT 1"),
                QueryParamsBuilder::new(),
            )
            .await
            .unwrap();
            let body = e.response_body().unwrap();
            let got: Vec<(String, String)> = body
                .as_rows_metadata()
                .unwrap()
                .col_specs
                .iter()
                .map(|c| (c.name.clone(), cql_type(&c.col_type)))
                .collect();
            assert_eq!(got, expected, "{table}");
            assert_eq!(body.into_rows().unwrap().len(), 1, "{table} LIMIT 1");
        }
    })
    .await
    .unwrap();
}

/// Rebuild the ring a real `nodetool status` capture shows (addresses, host IDs, loads, token
/// order, up/down) and compare the rendering with the capture. Only the ownership figures differ
/// (they come from the real random token allocation), so they are masked on both sides.
async fn compare_with_real_capture(name: &str) {
    let real = real_fixture(name);
    let (blocks, _) = parse_status(&real);
    assert_eq!(blocks.len(), 1);
    let rows = &blocks[0].rows;
    let n = rows.len();
    let per_node = rows[0].tokens.unwrap();
    let slots = n * per_node;
    let span = u64::MAX / slots as u64;
    // row k of the capture (ordered by first token) gets slots k, k + n, k + 2n, …
    let mut specs: Vec<(usize, NodeSpec)> = Vec::new();
    for (k, row) in rows.iter().enumerate() {
        let IpAddr::V4(ip) = row.address else {
            panic!()
        };
        let index = usize::from(ip.octets()[3]) - 1;
        let tokens: Vec<i64> = (0..per_node)
            .map(|j| (i64::MIN as i128 + (span as i128) * ((j * n + k) as i128)) as i64)
            .collect();
        let (value, unit) = row.load.as_deref().unwrap().split_once(' ').unwrap();
        let scale = match unit {
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            other => panic!("{other}"),
        };
        let bytes = (value.parse::<f64>().unwrap() * scale).round() as u64;
        specs.push((
            index,
            NodeSpec::new()
                .host_id(row.host_id.unwrap())
                .rack(row.rack.clone())
                .tokens(tokens)
                .load_bytes(Some(bytes)),
        ));
    }
    specs.sort_by_key(|(i, _)| *i);
    let mut builder = FakeRing::builder().nodes(n);
    for (_, spec) in specs {
        builder = builder.node(spec);
    }
    let ring = builder.start().await.unwrap();
    for row in rows {
        if row.code.starts_with('D') {
            let IpAddr::V4(ip) = row.address else {
                panic!()
            };
            ring.kill(usize::from(ip.octets()[3]) - 1).unwrap();
        }
    }
    let mask = |text: &str| -> String {
        text.lines()
            .map(|l| {
                l.split(' ')
                    .map(|w| if w.ends_with('%') { "XX.X%" } else { w })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(mask(&ring.nodetool_status()), mask(&real), "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodetool_status_matches_real_cassandra_5_captures() {
    timeout(T, async {
        for name in [
            "nodetool_status_all_up.txt",
            "nodetool_status_one_down.txt",
            "nodetool_status_one_killed.txt",
        ] {
            compare_with_real_capture(name).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_connections_work() {
    timeout(T, async {
        let ring = FakeRing::start(2).await.unwrap();
        for c in [Compression::Lz4, Compression::Snappy] {
            let t = raw_with(ring.addr(1).unwrap(), c).await.unwrap();
            let e = raw_query(
                &t,
                "SELECT * FROM system.peers_v2",
                QueryParamsBuilder::new(),
            )
            .await
            .unwrap();
            assert_eq!(rows(&e).len(), 1, "{c:?}");
        }
    })
    .await
    .unwrap();
}

/// What cdrs-tokio 9.0.2 really does when its control node dies: it reconnects the control
/// connection to a live node and re-reads `system.local` / `system.peers_v2` there, but its
/// metadata refresh compares each node's `broadcast_address` (`ip:7000`) with its
/// `broadcast_rpc_address` (`ip:<native port>`), finds them "changed" and marks every node
/// `Unknown`, which its load balancers skip ("No nodes available in query plan!"). Real
/// Cassandra 4+/5 has the same columns, so a real ring does the same. A probe must therefore not
/// read a session error as "cluster down": it should open a fresh session on a live contact
/// point, which works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_control_node_dies_the_driver_refreshes_from_a_live_node() {
    timeout(Duration::from_secs(30), async {
        let ring = FakeRing::start(3).await.unwrap();
        let s = session(ring.addr(0).unwrap()).await;
        assert!(s.query("SELECT host_id FROM system.local").await.is_ok());
        ring.clear_requests();
        ring.kill(0).unwrap();
        wait_for("a control-connection refresh from a live node", || {
            let on = |i| ring.queries(i).unwrap();
            on(1)
                .iter()
                .chain(on(2).iter())
                .any(|q| q == "SELECT * FROM system.peers_v2")
        })
        .await;
        wait_for("the driver's nodes leaving the Up state", || {
            s.cluster_metadata()
                .nodes()
                .values()
                .all(|n| n.state() != NodeState::Up)
        })
        .await;
        assert_eq!(s.cluster_metadata().nodes().len(), 3);
        assert!(matches!(
            s.query("SELECT host_id FROM system.local").await,
            Err(CdrsError::General(m)) if m.contains("No nodes available")
        ));

        // a fresh session on a live node sees the ring, the dead node included (its peers row
        // stays), and queries work
        let fresh = session(ring.addr(1).unwrap()).await;
        assert_eq!(fresh.cluster_metadata().nodes().len(), 3);
        let local = fresh
            .query("SELECT host_id FROM system.local")
            .await
            .unwrap();
        let id: Uuid = rows(&local)[0].get_r_by_name("host_id").unwrap();
        assert!(ring.nodes()[1..].iter().any(|n| n.host_id == id));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodetool_status_token_column_and_network_topology_ownership() {
    timeout(T, async {
        // One token in one DC: the tool prints a `Token` column instead of `Tokens`.
        let single = FakeRing::builder()
            .nodes(1)
            .tokens_per_node(1)
            .start()
            .await
            .unwrap();
        let (blocks, _) = parse_status(&single.nodetool_status());
        assert_eq!(
            blocks[0].header,
            [
                "--",
                "Address",
                "Load",
                "Owns(effective)",
                "HostID",
                "Token",
                "Rack"
            ]
        );
        let token = single.node(0).unwrap().tokens[0].to_string();
        assert!(single.nodetool_status().contains(&token));
        assert_eq!(blocks[0].rows[0].owns, Some(100.0));

        // NetworkTopologyStrategy: every DC holds its own replicas, rack-aware.
        let mut b = FakeRing::builder().keyspace(
            "lakehouse",
            Replication::NetworkTopology(vec![("dc1".into(), 3), ("dc2".into(), 2)]),
        );
        for i in 0..6 {
            let dc = if i < 3 { "dc1" } else { "dc2" };
            b = b.node(NodeSpec::new().datacenter(dc).rack(format!("r{}", i % 2)));
        }
        let ring = b.start().await.unwrap();
        let (blocks, note) = parse_status(&ring.nodetool_status());
        assert_eq!(note, None);
        assert_eq!(blocks.len(), 2);
        let sum = |b: &StatusBlock| -> f64 { b.rows.iter().filter_map(|r| r.owns).sum() };
        assert!((sum(&blocks[0]) - 300.0).abs() < 0.5);
        assert!(blocks[0].rows.iter().all(|r| r.owns == Some(100.0)));
        assert!((sum(&blocks[1]) - 200.0).abs() < 0.5);
        // dc2 has racks r1, r0, r1: with RF 2 every range gets one replica per rack, so the only
        // r0 node (127.0.0.5) holds all of dc2's data.
        let lonely = blocks[1]
            .rows
            .iter()
            .find(|r| r.address == ring.addr(4).unwrap().ip())
            .unwrap();
        assert_eq!(lonely.rack, "r0");
        assert_eq!(lonely.owns, Some(100.0), "{}", ring.nodetool_status());
    })
    .await
    .unwrap();
}

#[test]
fn kill_then_revive_at_once_and_typed_errors() {
    // Outside a tokio runtime: a typed error, not a panic.
    assert!(matches!(
        futures::executor::block_on(FakeRing::start(1)),
        Err(CassandraFakeError::NoRuntime)
    ));
    // A current-thread runtime only drops an aborted listener task when it runs again: revive
    // must still get the port back right after a kill.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        timeout(T, async {
            let ring = FakeRing::start(2).await.unwrap();
            for _ in 0..3 {
                ring.kill(1).unwrap();
                ring.revive(1).await.unwrap();
            }
            let t = raw(ring.addr(1).unwrap()).await.unwrap();
            assert!(
                raw_query(&t, "SELECT * FROM system.local", QueryParamsBuilder::new())
                    .await
                    .is_ok()
            );
            assert!(matches!(
                ring.node(7),
                Err(CassandraFakeError::UnknownNode(7))
            ));
            assert!(matches!(
                ring.revive(7).await,
                Err(CassandraFakeError::UnknownNode(7))
            ));
            ring.remove_node(0).unwrap();
            assert!(matches!(
                ring.kill(0),
                Err(CassandraFakeError::NodeRemoved(0))
            ));
            assert!(FakeRing::builder()
                .base_address("10.0.0.1".parse().unwrap())
                .start()
                .await
                .is_err());
        })
        .await
        .unwrap();
    });
}

/// PREPARE `query` on `t` and return the statement id.
async fn prepare_id(t: &TransportTcp, query: &str) -> Vec<u8> {
    let prep = t
        .write_envelope(
            &Envelope::new_req_prepare(query.into(), None, Flags::empty(), Version::V4),
            false,
        )
        .await
        .unwrap();
    match prep.response_body().unwrap() {
        ResponseBody::Result(r) => r.into_prepared().unwrap().id.into_bytes().unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn prepared_ids_follow_cassandra_rules_for_the_connection_keyspace() {
    timeout(T, async {
        let ring = FakeRing::builder().nodes(2).start().await.unwrap();
        let qualified = "SELECT host_id FROM system.local WHERE key = ?";
        // a connection that ran USE and one that did not, on different nodes
        let with_use = raw(ring.addr(0).unwrap()).await.unwrap();
        raw_query(&with_use, "USE system", QueryParamsBuilder::new())
            .await
            .unwrap();
        let without = raw(ring.addr(1).unwrap()).await.unwrap();
        // a statement naming its keyspace has one id everywhere (so a driver can re-prepare it
        // on any node and get the id it holds)
        let a = prepare_id(&with_use, qualified).await;
        let b = prepare_id(&without, qualified).await;
        assert_eq!(a, b);
        // one relying on USE gets an id that includes the keyspace
        let c = prepare_id(&with_use, "SELECT host_id FROM local WHERE key = ?").await;
        assert_ne!(c, a);
        // the id runs on the other node, where it was prepared too
        let params = QueryParamsBuilder::new()
            .with_values(QueryValues::SimpleValues(vec![Value::new("local")]))
            .build();
        let exec = Envelope::new_req_execute(
            &cdrs_tokio::types::CBytesShort::new(a),
            None,
            &params,
            Flags::empty(),
            Version::V4,
        );
        assert_eq!(
            rows(&without.write_envelope(&exec, false).await.unwrap()).len(),
            1
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authenticator_accepts_the_configured_credentials_only() {
    use cdrs_tokio::authenticators::StaticPasswordAuthenticatorProvider;
    timeout(T, async {
        let ring = FakeRing::builder()
            .password_auth("rb_probe", "pw-1")
            .start()
            .await
            .unwrap();
        // (a session with wrong credentials is left out: cdrs-tokio keeps retrying its control
        // connection instead of failing)
        let connect = |user: &'static str, pw: &'static str| {
            let addr = ring.addr(0).unwrap();
            async move {
                let config = NodeTcpConfigBuilder::new()
                    .with_contact_point(addr.into())
                    .with_authenticator_provider(Arc::new(
                        StaticPasswordAuthenticatorProvider::new(user, pw),
                    ))
                    .build()
                    .await
                    .unwrap();
                TcpSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), config)
                    .build()
                    .await
            }
        };
        let s = connect("rb_probe", "pw-1").await.unwrap();
        let local = s.query("SELECT host_id FROM system.local").await.unwrap();
        assert_eq!(rows(&local).len(), 1);
        assert_eq!(s.cluster_metadata().nodes().len(), 3);
        // on one raw connection: STARTUP → AUTHENTICATE, a wrong AUTH_RESPONSE → Authentication error
        let (tx, _rx) = tokio::sync::watch::channel(None);
        let holder = Arc::new(KeyspaceHolder::new(tx));
        let t = TransportTcp::new(
            ring.addr(1).unwrap(),
            holder.clone(),
            None,
            None,
            Compression::None,
            ProtocolFrameEncodingFactory.create_encoder(Version::V4, Compression::None),
            ProtocolFrameEncodingFactory.create_decoder(Version::V4, Compression::None),
            16,
            true,
        )
        .await
        .unwrap();
        let wrong = StaticPasswordAuthenticatorProvider::new("rb_probe", "nope");
        let (ty, msg) = server_error(
            startup(&t, &wrong, holder.as_ref(), Compression::None, Version::V4)
                .await
                .map(|_| panic!("authenticated with a wrong password")),
        );
        assert_eq!(ty, ErrorType::Authentication);
        assert!(msg.contains("rb_probe"), "{msg}");
        // without credentials the driver refuses at once (the server asked for an authenticator)
        assert!(raw(ring.addr(2).unwrap()).await.is_err());
    })
    .await
    .unwrap();
}
