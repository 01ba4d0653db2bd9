//! Differential test: the real three-node Cassandra 5.0 ring against `rb_testkit::cassandra::FakeRing`
//! (three fake nodes): the same CQL through cdrs-tokio (columns and CQL types of the system tables,
//! what `system.local` / `system.peers_v2` say, row counts), the same `nodetool status` layout, and
//! the same reaction to one node stopping and starting again (STATUS_CHANGE events, driver node
//! state, DN/UN in nodetool).
//!
//! Every difference found is printed. The test fails when the differences are not exactly
//! [`KNOWN`]: a new difference (the fake drifted) or a fixed one (update the list) both show up.

// Test helpers outside #[test] functions: a failed precondition should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use rb_peers::cassandra::{parse_nodetool_status, CassandraRing, CqlSession};
use rb_peers::PeerEnv;
use rb_testkit::cassandra::FakeRing;

/// Differences between the real ring and the fake known at the time of writing.
const KNOWN: &[&str] = &[];

/// The lines of `nodetool status` that are not node rows (headers, legend), with runs of spaces
/// collapsed: the layout a parser depends on.
fn layout(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            let code = l.split_whitespace().next().unwrap_or("");
            !(code.len() == 2
                && parse_nodetool_status(l)
                    .map(|r| r.len() == 1)
                    .unwrap_or(false))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

fn compare<T: std::fmt::Debug + PartialEq>(
    out: &mut BTreeSet<String>,
    what: &str,
    real: T,
    fake: T,
) {
    if real != fake {
        out.insert(format!("{what}: real {real:?}, fake {fake:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn fake_ring_answers_like_the_real_ring() {
    let env = PeerEnv::load().expect("peer env (run peers/run.sh)");
    let ring = CassandraRing::from_env(&env).expect("cassandra keys in the peer env");
    let fake = FakeRing::builder()
        .cluster_name("rb-peers")
        .nodes(3)
        .start()
        .await
        .unwrap();

    let mut real_s = ring.connect(&[1]).await.unwrap();
    let mut fake_s = CqlSession::connect(&[fake.addr(0).unwrap()]).await.unwrap();
    let mut diffs = BTreeSet::new();

    for t in [
        "system.local",
        "system.peers_v2",
        "system.peers",
        "system_views.gossip_info",
    ] {
        let r = real_s.columns(t).await.unwrap();
        let f = fake_s.columns(t).await.unwrap();
        let rs: BTreeSet<String> = r
            .iter()
            .map(|c| format!("{} {}", c.name, c.cql_type))
            .collect();
        let fs: BTreeSet<String> = f
            .iter()
            .map(|c| format!("{} {}", c.name, c.cql_type))
            .collect();
        for only in rs.difference(&fs) {
            diffs.insert(format!("{t}: column only in real: {only}"));
        }
        for only in fs.difference(&rs) {
            diffs.insert(format!("{t}: column only in fake: {only}"));
        }
        if rs == fs {
            let rn: Vec<&str> = r.iter().map(|c| c.name.as_str()).collect();
            let fnames: Vec<&str> = f.iter().map(|c| c.name.as_str()).collect();
            compare(&mut diffs, &format!("{t}: column order"), rn, fnames);
        }
    }
    let (rl, fl) = (real_s.local().await.unwrap(), fake_s.local().await.unwrap());
    compare(
        &mut diffs,
        "system.local cluster_name",
        &rl.cluster_name,
        &fl.cluster_name,
    );
    compare(
        &mut diffs,
        "system.local data_center",
        &rl.data_center,
        &fl.data_center,
    );
    compare(&mut diffs, "system.local rack", &rl.rack, &fl.rack);
    compare(&mut diffs, "system.local tokens", rl.tokens, fl.tokens);
    compare(
        &mut diffs,
        "system.local release_version",
        &rl.release_version,
        &fl.release_version,
    );
    let (rp, fp) = (
        real_s.peers_v2().await.unwrap(),
        fake_s.peers_v2().await.unwrap(),
    );
    compare(&mut diffs, "system.peers_v2 rows", rp.len(), fp.len());
    compare(
        &mut diffs,
        "system_views.gossip_info rows",
        real_s.count_rows("system_views.gossip_info").await.unwrap(),
        fake_s.count_rows("system_views.gossip_info").await.unwrap(),
    );
    compare(
        &mut diffs,
        "driver nodes",
        real_s.node_states().len(),
        fake_s.node_states().len(),
    );

    let real_up = ring.nodetool_status(1).await.unwrap();
    let fake_up = fake.nodetool_status();
    let real_layout = layout(&real_up.raw);
    assert!(
        real_layout.len() >= 4 && real_layout[0] == "Datacenter: datacenter1",
        "{real_layout:?}"
    );
    compare(
        &mut diffs,
        "nodetool status layout (all up)",
        layout(&real_up.raw),
        layout(&fake_up),
    );
    compare(
        &mut diffs,
        "nodetool status codes (all up)",
        real_up.summary(),
        rb_peers::cassandra::NodetoolStatus {
            raw: fake_up.clone(),
            rows: parse_nodetool_status(&fake_up).unwrap(),
        }
        .summary(),
    );

    // Node 3 stops (graceful on the real ring; FakeRing::stop on the fake).
    let (r3, f3) = (ring.nodes()[2], fake.addr(2).unwrap());
    ring.stop_node(3).await.unwrap();
    fake.stop(2).unwrap();
    let re = real_s
        .wait_status_event(r3, false, Duration::from_secs(60))
        .await;
    let fe = fake_s
        .wait_status_event(f3, false, Duration::from_secs(60))
        .await;
    compare(
        &mut diffs,
        "STATUS_CHANGE DOWN received",
        re.is_ok(),
        fe.is_ok(),
    );
    let rs = real_s
        .wait_node_state(r3, "Down", Duration::from_secs(30))
        .await;
    let fs = fake_s
        .wait_node_state(f3, "Down", Duration::from_secs(30))
        .await;
    compare(
        &mut diffs,
        "driver marks the stopped node Down",
        rs.is_ok(),
        fs.is_ok(),
    );
    let real_down = ring
        .wait_nodetool(1, "127.0.0.3", "DN", Duration::from_secs(60))
        .await
        .unwrap();
    let fake_down = fake.nodetool_status();
    compare(
        &mut diffs,
        "nodetool status layout (one down)",
        layout(&real_down.raw),
        layout(&fake_down),
    );
    let fake_rows = parse_nodetool_status(&fake_down).unwrap();
    let fake_sum = rb_peers::cassandra::NodetoolStatus {
        raw: fake_down.clone(),
        rows: fake_rows,
    }
    .summary();
    compare(
        &mut diffs,
        "nodetool status codes (one down)",
        real_down.summary(),
        fake_sum,
    );
    compare(
        &mut diffs,
        "system.peers_v2 rows with a node down",
        real_s.peers_v2().await.unwrap().len(),
        fake_s.peers_v2().await.unwrap().len(),
    );

    // And back.
    ring.start_node(3).await.unwrap();
    fake.revive(2).await.unwrap();
    let re = real_s
        .wait_status_event(r3, true, Duration::from_secs(90))
        .await;
    let fe = fake_s
        .wait_status_event(f3, true, Duration::from_secs(60))
        .await;
    compare(
        &mut diffs,
        "STATUS_CHANGE UP received",
        re.is_ok(),
        fe.is_ok(),
    );
    ring.wait_nodetool(1, "127.0.0.3", "UN", Duration::from_secs(90))
        .await
        .unwrap();

    eprintln!("real Cassandra vs FakeRing: {} difference(s)", diffs.len());
    for d in &diffs {
        eprintln!("  {d}");
    }
    let known: BTreeSet<String> = KNOWN.iter().map(|s| s.to_string()).collect();
    let new: Vec<_> = diffs.difference(&known).collect();
    let gone: Vec<_> = known.difference(&diffs).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "new differences: {new:#?}\nno longer seen: {gone:#?}"
    );
}

/// One cdrs transport to `addr` after STARTUP, no driver routing (protocol v4, no auth).
async fn raw(addr: std::net::SocketAddr) -> cdrs_tokio::transport::TransportTcp {
    use cdrs_tokio::authenticators::NoneAuthenticatorProvider;
    use cdrs_tokio::cluster::{startup, KeyspaceHolder};
    use cdrs_tokio::compression::Compression;
    use cdrs_tokio::frame::Version;
    use cdrs_tokio::frame_encoding::{FrameEncodingFactory, ProtocolFrameEncodingFactory};
    let (tx, _rx) = tokio::sync::watch::channel(None);
    let holder = std::sync::Arc::new(KeyspaceHolder::new(tx));
    let none = Compression::None;
    let t = cdrs_tokio::transport::TransportTcp::new(
        addr,
        holder.clone(),
        None,
        None,
        none,
        ProtocolFrameEncodingFactory.create_encoder(Version::V4, none),
        ProtocolFrameEncodingFactory.create_decoder(Version::V4, none),
        16,
        true,
    )
    .await
    .unwrap();
    startup(
        &t,
        &NoneAuthenticatorProvider,
        holder.as_ref(),
        none,
        Version::V4,
    )
    .await
    .unwrap();
    t
}

/// PREPARE `query` on `t` (after `USE ks` when given): the statement id.
async fn prepared_id(
    t: &cdrs_tokio::transport::TransportTcp,
    use_ks: Option<&str>,
    query: &str,
) -> Vec<u8> {
    use cdrs_tokio::frame::message_query::BodyReqQuery;
    use cdrs_tokio::frame::message_response::ResponseBody;
    use cdrs_tokio::frame::{Envelope, Flags, Version};
    use cdrs_tokio::transport::CdrsTransport;
    if let Some(ks) = use_ks {
        let use_it = Envelope::new_query(
            BodyReqQuery {
                query: format!("USE {ks}"),
                query_params: cdrs_tokio::query::QueryParamsBuilder::new().build(),
            },
            Flags::empty(),
            Version::V4,
        );
        t.write_envelope(&use_it, false).await.unwrap();
    }
    let prep = Envelope::new_req_prepare(query.into(), None, Flags::empty(), Version::V4);
    match t
        .write_envelope(&prep, false)
        .await
        .unwrap()
        .response_body()
    {
        Ok(ResponseBody::Result(r)) => r.into_prepared().unwrap().id.into_bytes().unwrap(),
        other => panic!("PREPARE {query}: {other:?}"),
    }
}

/// How statement ids relate, as a client sees them (ids are opaque; their equalities are not).
async fn id_rules(addr: std::net::SocketAddr) -> Vec<(&'static str, bool)> {
    let qualified = "SELECT host_id FROM system.local WHERE key = ?";
    let bare = "SELECT host_id FROM local WHERE key = ?";
    let (with_use, without) = (raw(addr).await, raw(addr).await);
    let q_use = prepared_id(&with_use, Some("system"), qualified).await;
    let q_plain = prepared_id(&without, None, qualified).await;
    let b_system = prepared_id(&with_use, None, bare).await;
    let other = raw(addr).await;
    let q_schema = prepared_id(&other, Some("system_schema"), qualified).await;
    let again = raw(addr).await;
    let b_again = prepared_id(&again, Some("system"), bare).await;
    vec![
        ("qualified: same id with and without USE", q_use == q_plain),
        ("qualified vs bare statement: same id", q_use == b_system),
        ("qualified: same id under another USE", q_schema == q_use),
        (
            "bare: same id on another connection with the same USE",
            b_again == b_system,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn prepared_statement_ids_follow_the_real_rules() {
    let env = PeerEnv::load().expect("peer env (run peers/run.sh)");
    let ring = CassandraRing::from_env(&env).expect("cassandra keys in the peer env");
    let fake = FakeRing::builder().nodes(3).start().await.unwrap();
    let real = id_rules(ring.nodes()[0]).await;
    println!("real ring: {real:?}");
    assert_eq!(real, id_rules(fake.addr(0).unwrap()).await);
    // and the rule the fake was fixed for: a statement naming its keyspace has one id
    assert_eq!(real[0], ("qualified: same id with and without USE", true));
}
