//! The real three-node Cassandra 5.0 ring (peers/scripts/cassandra.sh): ground truth from the real
//! `nodetool status` and from CQL, a node stopped and killed for real, and back.
//!
//! `RB_PEERS_RECORD=1` also writes the answers into `rb-testkit/fixtures/real/cassandra/`.

// Test helpers outside #[test] functions: a failed precondition should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rb_peers::cassandra::{CassandraRing, Column};
use rb_peers::PeerEnv;

fn ring() -> CassandraRing {
    let env = PeerEnv::load().expect("peer env (run peers/run.sh)");
    CassandraRing::from_env(&env).expect("cassandra keys in the peer env")
}

fn recording() -> Option<PathBuf> {
    (std::env::var("RB_PEERS_RECORD").as_deref() == Ok("1")).then(|| {
        let dir = PeerEnv::repo_root().join("rb-testkit/fixtures/real/cassandra");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fn addr(ring: &CassandraRing, n: usize) -> SocketAddr {
    ring.nodes()[n - 1]
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn ring_is_three_nodes_up_in_nodetool_and_cql() {
    let ring = ring();
    assert_eq!(ring.nodes().len(), 3);

    let st = ring.nodetool_status(1).await.unwrap();
    assert!(st.raw.contains("Datacenter: datacenter1"), "{}", st.raw);
    let summary = st.summary();
    assert_eq!(
        summary,
        BTreeMap::from([
            ("127.0.0.1".to_string(), "UN".to_string()),
            ("127.0.0.2".to_string(), "UN".to_string()),
            ("127.0.0.3".to_string(), "UN".to_string()),
        ]),
        "{}",
        st.raw
    );
    for row in &st.rows {
        assert_eq!(row.tokens, Some(16), "{row:?}");
        assert_eq!(row.rack, "rack1");
        assert!(row.host_id.is_some());
    }
    // Every node agrees (nodetool through node 3's JMX port).
    let via3 = ring.nodetool_status(3).await.unwrap();
    assert_eq!(via3.summary(), summary, "{}", via3.raw);

    let session = ring.connect(&[1]).await.unwrap();
    let local = session.local().await.unwrap();
    assert_eq!(local.cluster_name, "rb-peers");
    assert_eq!(local.data_center, "datacenter1");
    assert_eq!(local.rack, "rack1");
    assert!(local.release_version.starts_with("5.0."), "{local:?}");
    assert_eq!(local.tokens, 16);
    let peers = session.peers_v2().await.unwrap();
    assert_eq!(peers.len(), 2, "{peers:?}");
    for p in &peers {
        assert_eq!(p.native_port, 9042);
        assert_eq!(p.data_center, "datacenter1");
        assert_eq!(
            p.schema_version, local.schema_version,
            "schema agreement expected: {p:?}"
        );
        // The host ids CQL reports are the ones nodetool prints.
        let row = st
            .node(&p.peer)
            .unwrap_or_else(|| panic!("{} not in nodetool status", p.peer));
        assert_eq!(row.host_id.as_deref(), Some(p.host_id.as_str()));
    }
    // The driver discovered all three nodes from system.local + system.peers_v2.
    let states = session.node_states();
    assert_eq!(states.len(), 3, "{states:?}");
    for n in 1..=3 {
        assert!(states.contains_key(&addr(&ring, n)), "{states:?}");
        assert_ne!(states[&addr(&ring, n)], "Down", "{states:?}");
    }

    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for t in [
        "system.local",
        "system.peers_v2",
        "system.peers",
        "system_views.gossip_info",
    ] {
        let cols = session.columns(t).await.unwrap();
        assert!(!cols.is_empty(), "{t}");
        tables.insert(t.to_string(), cols);
    }
    let local_cols: Vec<&str> = tables["system.local"]
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for c in [
        "host_id",
        "data_center",
        "rack",
        "tokens",
        "schema_version",
        "release_version",
        "rpc_address",
    ] {
        assert!(
            local_cols.contains(&c),
            "system.local lacks {c}: {local_cols:?}"
        );
    }
    let tokens = tables["system.local"]
        .iter()
        .find(|c| c.name == "tokens")
        .unwrap();
    assert_eq!(tokens.cql_type, "set<text>");
    let gossip: Vec<&str> = tables["system_views.gossip_info"]
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for c in ["address", "generation", "heartbeat", "status", "host_id"] {
        assert!(gossip.contains(&c), "gossip_info lacks {c}: {gossip:?}");
    }
    assert_eq!(
        session
            .count_rows("system_views.gossip_info")
            .await
            .unwrap(),
        3
    );

    if let Some(dir) = recording() {
        std::fs::write(dir.join("nodetool_status_all_up.txt"), &st.raw).unwrap();
        let json = serde_json::json!({
            "_source": format!("real Apache Cassandra {} 3-node ring, cdrs-tokio result metadata of SELECT * FROM <table> LIMIT 1", local.release_version),
            "tables": tables,
        });
        std::fs::write(
            dir.join("system_tables_columns.json"),
            serde_json::to_string_pretty(&json).unwrap() + "\n",
        )
        .unwrap();
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn stopped_node_goes_down_everywhere_then_comes_back() {
    let ring = ring();
    let node3 = addr(&ring, 3);
    let ip3 = ring.ip(3).unwrap();
    let mut session = ring.connect(&[1]).await.unwrap();
    session
        .wait_node_state(node3, "Up", Duration::from_secs(30))
        .await
        .unwrap();

    let t0 = Instant::now();
    ring.stop_node(3).await.unwrap();
    let stopped = t0.elapsed();
    // The ring pushes STATUS_CHANGE DOWN to our session's control connection, the driver marks it Down,
    // and the failure detector of node 1 says DN.
    session
        .wait_status_event(node3, false, Duration::from_secs(60))
        .await
        .unwrap();
    session
        .wait_node_state(node3, "Down", Duration::from_secs(30))
        .await
        .unwrap();
    let down = ring
        .wait_nodetool(1, &ip3, "DN", Duration::from_secs(60))
        .await
        .unwrap();
    eprintln!("node3 stopped in {stopped:?}, DN after {:?}", t0.elapsed());
    assert_eq!(
        down.summary().get("127.0.0.1").map(String::as_str),
        Some("UN")
    );
    assert_eq!(
        down.summary().get("127.0.0.2").map(String::as_str),
        Some("UN")
    );
    // CQL still answers through the surviving nodes, and system.peers_v2 still lists the down node:
    // liveness is not in the tables.
    let peers = session.peers_v2().await.unwrap();
    assert!(peers.iter().any(|p| p.peer == ip3), "{peers:?}");
    if let Some(dir) = recording() {
        std::fs::write(dir.join("nodetool_status_one_down.txt"), &down.raw).unwrap();
    }

    let t1 = Instant::now();
    ring.start_node(3).await.unwrap();
    session
        .wait_status_event(node3, true, Duration::from_secs(90))
        .await
        .unwrap();
    ring.wait_nodetool(1, &ip3, "UN", Duration::from_secs(90))
        .await
        .unwrap();
    session
        .wait_node_state(node3, "Up", Duration::from_secs(60))
        .await
        .unwrap();
    eprintln!("node3 back UN after {:?}", t1.elapsed());
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn killed_node_is_convicted_by_the_failure_detector() {
    let ring = ring();
    let ip2 = ring.ip(2).unwrap();
    let t0 = Instant::now();
    ring.kill_node(2).await.unwrap();
    // No shutdown announcement this time: node 1's phi-accrual detector has to convict it.
    let down = ring
        .wait_nodetool(1, &ip2, "DN", Duration::from_secs(90))
        .await
        .unwrap();
    let convicted = t0.elapsed();
    eprintln!("node2 killed; DN in nodetool after {convicted:?}");
    assert_eq!(down.rows.len(), 3, "{}", down.raw);
    if let Some(dir) = recording() {
        std::fs::write(dir.join("nodetool_status_one_killed.txt"), &down.raw).unwrap();
    }
    ring.start_node(2).await.unwrap();
    ring.wait_nodetool(1, &ip2, "UN", Duration::from_secs(90))
        .await
        .unwrap();
    let all = ring.nodetool_status(1).await.unwrap();
    assert!(all.rows.iter().all(|r| r.is_up()), "{}", all.raw);
}
