//! rb-probes' Cassandra probes against the real three-node Cassandra 5.0 ring
//! (peers/scripts/cassandra.sh): per node U/D and N/J/L/M from the CQL probe (cdrs-tokio) and from
//! the `nodetool status` probe (the real nodetool, through the tokio::process runner) equal the
//! ground truth of the real `nodetool status`, with every node up and after a node is stopped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rb_core::time::Clock;
use rb_core::{Observation, Probe, ProbeContext, Target};
use rb_peers::cassandra::CassandraRing;
use rb_peers::PeerEnv;
use rb_probes::cassandra::{
    metric, parse_status, CdrsCqlClient, CqlRingConfig, CqlRingProbe, LivenessSource,
    NodetoolStatusConfig, NodetoolStatusProbe, Ring,
};

fn env() -> PeerEnv {
    PeerEnv::load().expect("peer env (run peers/run.sh)")
}

fn ring(env: &PeerEnv) -> CassandraRing {
    CassandraRing::from_env(env).expect("cassandra keys in the peer env")
}

fn target() -> Target {
    Target::new("cassandra", "peers-ring")
}

fn ctx() -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), Duration::from_secs(60))
}

fn fact(obs: &Observation) -> Ring {
    obs.facts
        .get::<Ring>()
        .expect("cassandra.ring fact")
        .unwrap()
}

fn cql_probe(ring: &CassandraRing) -> CqlRingProbe {
    CqlRingProbe::new(
        target(),
        CqlRingConfig::new(ring.nodes().to_vec())
            .node_timeout(Duration::from_secs(3))
            .expected_nodes(["127.0.0.1", "127.0.0.2", "127.0.0.3"]),
        Arc::new(CdrsCqlClient::new()),
    )
}

/// The nodetool probe on node `via`'s JMX port, running the real nodetool.
fn nodetool_probe(env: &PeerEnv, via: usize) -> NodetoolStatusProbe {
    let tool = env.get("CASSANDRA_NODETOOL").unwrap().to_string();
    let jmx: Vec<u16> = env
        .get("CASSANDRA_JMX_PORTS")
        .unwrap()
        .split(',')
        .map(|p| p.trim().parse().unwrap())
        .collect();
    NodetoolStatusProbe::new(
        target(),
        NodetoolStatusConfig::new([tool])
            .host("127.0.0.1")
            .jmx_port(jmx[via - 1])
            .timeout(Duration::from_secs(50))
            .expected_nodes(["127.0.0.1", "127.0.0.2", "127.0.0.3"]),
    )
}

async fn wait_all_un(ring: &CassandraRing) {
    for n in 1..=3 {
        ring.wait_nodetool(1, &ring.ip(n).unwrap(), "UN", Duration::from_secs(120))
            .await
            .unwrap();
    }
}

/// Observe with the CQL probe until its summary equals `truth` (the failure detector and the
/// CQL view of a node going down do not flip at the same instant), at most `tries` times.
async fn cql_until(
    probe: &CqlRingProbe,
    truth: &BTreeMap<String, String>,
    tries: usize,
) -> Observation {
    let mut last = None;
    for _ in 0..tries {
        let obs = probe.observe(&ctx()).await.unwrap();
        if &fact(&obs).summary() == truth {
            return obs;
        }
        last = Some(fact(&obs));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the CQL probe never matched {truth:?}: last {last:#?}");
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh cassandra"]
async fn both_probes_equal_the_real_nodetool_status_with_every_node_up() {
    let env = env();
    let ring = ring(&env);
    wait_all_un(&ring).await;
    let truth = ring.nodetool_status(1).await.unwrap();
    let want = truth.summary();
    assert_eq!(want.len(), 3, "{}", truth.raw);

    // our reader on the real text
    let parsed = parse_status(&truth.raw).unwrap();
    assert!(
        parsed.not_understood.is_empty(),
        "{:?}",
        parsed.not_understood
    );
    let read: BTreeMap<String, String> = parsed
        .nodes
        .iter()
        .map(|n| (n.ip().to_string(), n.code()))
        .collect();
    assert_eq!(read, want, "{}", truth.raw);
    for n in &parsed.nodes {
        let row = truth.node(n.ip()).unwrap();
        assert_eq!(n.host_id, row.host_id, "{}", truth.raw);
        assert_eq!(n.tokens, row.tokens);
        assert_eq!(n.rack.as_deref(), Some(row.rack.as_str()));
    }

    // the nodetool probe, through every node's JMX port
    for via in 1..=3 {
        let obs = nodetool_probe(&env, via).observe(&ctx()).await.unwrap();
        assert!(obs.complete, "{:?}", obs.gaps);
        let r = fact(&obs);
        assert_eq!(r.summary(), want, "via node {via}");
        assert!(r.missing_expected.is_empty());
        assert_eq!(r.liveness_source, LivenessSource::NodetoolFailureDetector);
    }

    // the CQL probe
    let obs = cql_until(&cql_probe(&ring), &want, 10).await;
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&obs);
    assert_eq!(r.cluster_name.as_deref(), Some("rb-peers"));
    assert!(!r.schema_disagreement, "{:?}", r.schema_versions);
    for n in &r.nodes {
        let row = truth.node(n.ip()).unwrap();
        assert_eq!(n.host_id, row.host_id, "{n:?}");
        assert_eq!(n.tokens, row.tokens, "{n:?}");
        assert_eq!(n.datacenter.as_deref(), Some(row.datacenter.as_str()));
        assert!(n.load_bytes.is_some(), "{n:?}");
        assert_eq!(n.driver_state.as_deref(), Some("up"), "{n:?}");
    }
    let owns: f64 = r.nodes.iter().filter_map(|n| n.owns_percent).sum();
    assert!((owns - 100.0).abs() < 0.5, "{owns}");
    let up: f64 = obs.samples_named(metric::NODES_UP).map(|s| s.value).sum();
    assert_eq!(up, 3.0);
    eprintln!(
        "real ring: {want:?}; CQL fact: {}",
        serde_json::to_string(&r).unwrap()
    );
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh cassandra"]
async fn both_probes_see_a_stopped_node_down_then_back() {
    let env = env();
    let ring = ring(&env);
    wait_all_un(&ring).await;
    let cql = cql_probe(&ring);
    // a first observation opens the driver session the client keeps
    cql_until(&cql, &ring.nodetool_status(1).await.unwrap().summary(), 10).await;

    ring.stop_node(3).await.unwrap();
    let down = ring
        .wait_nodetool(1, "127.0.0.3", "DN", Duration::from_secs(90))
        .await
        .unwrap();
    let want = down.summary();
    assert_eq!(want["127.0.0.3"], "DN");

    let obs = nodetool_probe(&env, 1).observe(&ctx()).await.unwrap();
    let r = fact(&obs);
    assert_eq!(r.summary(), want, "{}", down.raw);
    assert_eq!(
        obs.samples_named(metric::NODES_DOWN)
            .map(|s| s.value)
            .sum::<f64>(),
        1.0
    );

    let obs = cql_until(&cql, &want, 30).await;
    let r = fact(&obs);
    let n3 = r.node("127.0.0.3").unwrap();
    eprintln!("stopped node 3 as the CQL probe sees it: {n3:?}");
    assert_eq!(n3.code(), "DN");
    assert!(
        matches!(
            n3.liveness_source,
            LivenessSource::DirectConnect | LivenessSource::GossipStatus
        ),
        "{n3:?}"
    );
    assert!(r.missing_expected.is_empty(), "a DN node is not missing");
    assert!(obs.complete, "{:?}", obs.gaps);

    ring.start_node(3).await.unwrap();
    wait_all_un(&ring).await;
    let truth = ring.nodetool_status(1).await.unwrap().summary();
    let obs = cql_until(&cql, &truth, 60).await;
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&nodetool_probe(&env, 1).observe(&ctx()).await.unwrap());
    assert_eq!(r.summary(), truth);
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh cassandra"]
async fn both_probes_see_a_killed_node_down_then_back() {
    let env = env();
    let ring = ring(&env);
    wait_all_un(&ring).await;
    let cql = cql_probe(&ring);
    ring.kill_node(2).await.unwrap();
    // no shutdown announcement: gossip still says NORMAL, the CQL probe's direct connect is
    // refused and the node's gossip heartbeat stops rising
    let down = ring
        .wait_nodetool(1, "127.0.0.2", "DN", Duration::from_secs(90))
        .await
        .unwrap();
    let want = down.summary();
    let obs = cql_until(&cql, &want, 30).await;
    let r = fact(&obs);
    let n2 = r.node("127.0.0.2").unwrap();
    eprintln!("killed node 2 as the CQL probe sees it: {n2:?}");
    assert_eq!(n2.code(), "DN");
    assert_eq!(n2.liveness_source, LivenessSource::DirectConnect, "{n2:?}");
    assert!(obs.complete, "{:?}", obs.gaps);
    let r = fact(&nodetool_probe(&env, 3).observe(&ctx()).await.unwrap());
    assert_eq!(r.summary(), want);

    ring.start_node(2).await.unwrap();
    wait_all_un(&ring).await;
    let truth = ring.nodetool_status(1).await.unwrap().summary();
    cql_until(&cql, &truth, 60).await;
}
