//! The lakehouse runbook's Cassandra node-down playbook through all five phases on the real
//! three-node Cassandra 5.0 ring of the tier, not in dry-run: node 3 (`127.0.0.3`) crashes
//! (SIGKILL of its JVM), the playbook's CQL ring probe (cdrs-tokio) sees it down for the
//! for-duration and opens one incident for that address, diagnoses (the ring per node; Loki and
//! Prometheus are not configured in the tier, so those two diagnosis probes fail and the journal
//! says so), waits a stage in which the node does not come back by itself, then hands the
//! replacement-node step to a human and pages. The scripted on-call engineer brings the node back
//! (`peers/scripts/cassandra.sh node-start 3`: the tier has no spare host for a true
//! `replace_address_first_boot` replacement, so the crashed node is started again on its own
//! data), waits until `nodetool status` shows it `UN`, marks the task done; the incident recovers
//! once the node has stayed up for the stability window. Afterwards the real `nodetool status`
//! shows all three nodes `UN`.
//!
//! Durations are [`Timings::fast`] with the stage cut to 10 s (the runbook's 15 minutes; the node
//! is dead, so any stage shows it not back). Whatever happens, node 3 is started again before the
//! test returns (a guard runs the script if the test fails midway).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rb_core::incident::{Phase, StepState};
use rb_core::{Event, Resolution};
use rb_examples::lakehouse::situations::cassandra_down::{self, PLAYBOOK, REPLACE_STEP};
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings};
use rb_peers::cassandra::CassandraRing;
use rb_peers::lakehouse::{engine, run_until, story};
use rb_peers::PeerEnv;

/// The node that crashes (1-based, as the script numbers them).
const NODE: usize = 3;

/// Starts node [`NODE`] again when dropped armed (a failed test must leave the ring whole).
struct Restart {
    /// The script that started the ring (`CASSANDRA_SCRIPT`).
    script: String,
    armed: bool,
}

impl Drop for Restart {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let st = std::process::Command::new("bash")
            .arg(&self.script)
            .args(["node-start", &NODE.to_string()])
            .status();
        eprintln!("restarting node {NODE} after a failure: {st:?}");
    }
}

async fn all_up(ring: &CassandraRing) -> rb_peers::cassandra::NodetoolStatus {
    let st = ring.nodetool_status(1).await.unwrap();
    let summary = st.summary();
    assert_eq!(summary.len(), 3, "{}", st.raw);
    assert!(summary.values().all(|s| s == "UN"), "{}", st.raw);
    st
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn a_crashed_node_is_replaced_by_a_human_after_a_stage_and_recovers() {
    let env = PeerEnv::load().unwrap();
    let ring = CassandraRing::from_env(&env).unwrap();
    all_up(&ring).await;
    let address = ring.ip(NODE).unwrap();

    let t0 = Instant::now();
    ring.kill_node(NODE).await.unwrap();
    let mut guard = Restart {
        script: env.get("CASSANDRA_SCRIPT").unwrap().to_string(),
        armed: true,
    };

    let endpoints = Endpoints {
        cassandra: ring.nodes().to_vec(),
        ..Endpoints::default()
    };
    let timings = Timings {
        stage: Duration::from_secs(10),
        ..Timings::fast()
    };
    let systems = Systems::new(endpoints, Credentials::default(), timings).unwrap();
    let engine = engine(cassandra_down::playbooks(&systems)).await.unwrap();

    // The scripted on-call engineer: once the replacement task is handed out, bring the node
    // back (in the background, the engine keeps probing), wait for UN, then mark the task done.
    let mut starting: Option<tokio::task::JoinHandle<anyhow::Result<Duration>>> = None;
    let mut started_after = None;
    let back_after = Arc::new(Mutex::new(None::<Duration>));
    let result = run_until(&engine, Duration::from_secs(240), |incidents| {
        let mine = incidents
            .into_iter()
            .find(|i| i.record.key.get("address") == Some(&address));
        let waiting = mine
            .as_ref()
            .is_some_and(|i| !i.is_closed() && i.step_state(0) == StepState::Started);
        if waiting && started_after.is_none() {
            started_after = Some(t0.elapsed());
            let ring = ring.clone();
            let ip = address.clone();
            starting = Some(tokio::spawn(async move {
                let t = Instant::now();
                ring.start_node(NODE).await?;
                ring.wait_nodetool(1, &ip, "UN", Duration::from_secs(120))
                    .await?;
                Ok(t.elapsed())
            }));
        }
        let finished = starting.as_ref().is_some_and(|h| h.is_finished());
        let handle = if finished { starting.take() } else { None };
        let closed = mine.as_ref().is_some_and(|i| i.is_closed());
        let id = mine.map(|i| i.record.id);
        let engine = &engine;
        let back = back_after.clone();
        async move {
            if let (Some(h), Some(id)) = (handle, id) {
                let took = h.await??;
                *back.lock().unwrap() = Some(took);
                engine
                    .complete_task(&id, REPLACE_STEP, "on-call (scripted)")
                    .await?;
            }
            Ok(closed)
        }
    })
    .await;
    let journal = story(&engine).await;
    let total = t0.elapsed();
    let back_after = *back_after.lock().unwrap();
    result.unwrap();
    eprintln!(
        "node {NODE} killed → task handed out after {started_after:?}, node UN {back_after:?} after \
         the human started it, incident closed after {total:?}"
    );

    // the ring itself: all three nodes UN again
    let st = all_up(&ring).await;
    guard.armed = false;
    assert_eq!(st.summary().get(&address).map(String::as_str), Some("UN"));

    let incidents = engine.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1, "one incident, for {address}: {journal}");
    let inc = &incidents[0];
    assert_eq!(inc.record.playbook, PLAYBOOK, "{journal}");
    assert_eq!(
        inc.record.key.get("address").map(String::as_str),
        Some(address.as_str())
    );
    let v = inc.record.violated.as_ref().expect("the violated metric");
    assert_eq!(v.name, rb_probes::cassandra::metric::NODE_UP, "{v:?}");
    assert_eq!(v.value, 0.0, "{v:?}");
    assert_eq!(inc.resolution, Some(Resolution::Recovered), "{journal}");
    for p in Phase::ALL {
        assert!(inc.phases.contains(&p), "phase {p:?} missing: {journal}");
    }
    // diagnosis: the ring as the probe read it, with the crashed node down
    let evidence = serde_json::to_string(&inc.evidence).unwrap();
    assert!(evidence.contains(&address), "{evidence}");
    // the stage passed without the node back: the replacement went to a human, who did it
    assert!(
        inc.timeline.iter().any(|e| matches!(&e.event,
            Event::TaskAssigned { task, .. } if task.contains("replace_address_first_boot"))),
        "{journal}"
    );
    assert!(
        inc.timeline.iter().any(|e| matches!(&e.event,
            Event::TaskDone { by, .. } if by == "on-call (scripted)")),
        "{journal}"
    );
    assert_eq!(inc.step_state(0), StepState::Done, "{journal}");
    assert!(
        back_after.is_some(),
        "the scripted human brought the node back"
    );
    // nothing was applied automatically: the playbook's only step is the human's
    assert!(inc.applied_actions().is_empty(), "{journal}");
}
