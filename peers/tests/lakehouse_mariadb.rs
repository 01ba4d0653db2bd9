//! The lakehouse runbook's MySQL saturation playbook through all five phases on the real MariaDB
//! of the tier (max_connections 40): the application's pool fills it past 90 %, the incident opens
//! with the processlist and the open InnoDB transactions, the connections idle in a transaction
//! are killed (`KILL CONNECTION`), the incident recovers; the server's own processlist shows
//! exactly the idle connections left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::Duration;

use rb_core::{Event, Resolution, Secret};
use rb_examples::lakehouse::situations::db_saturation;
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings};
use rb_peers::lakehouse::{engine, run_until, story};
use rb_peers::mariadb::MariaDb;
use rb_peers::PeerEnv;
use rb_probes::sql::{SqlEndpoint, SqlTls};

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn saturation_is_detected_handled_and_recovers_on_the_real_server() {
    let db = MariaDb::from_env(&PeerEnv::load().unwrap()).unwrap();
    let mut ep = SqlEndpoint::new(
        db.host.clone(),
        db.port,
        db.user.clone(),
        Secret::new(db.password.clone()),
    );
    ep.tls = SqlTls::Disable;
    let endpoints = Endpoints {
        mysql: Some(ep),
        ..Endpoints::default()
    };
    let systems = Systems::new(endpoints, Credentials::default(), Timings::fast()).unwrap();
    let playbooks = db_saturation::playbooks_shedding(&systems, &[db.user.as_str()]);
    assert_eq!(playbooks.len(), 1, "only MySQL is configured");
    let engine = engine(playbooks).await.unwrap();

    let before = db.processlist().await.unwrap().len();
    // 94 % of max_connections (the probe's own connection is not counted), 12 of them idle in a
    // transaction
    let want = (db.max_connections as usize * 94)
        .div_ceil(100)
        .saturating_sub(before);
    let held = db.open_sessions(want - 12, 12).await.unwrap();
    let idle_ids = held.idle_ids.clone();
    let tx_ids = held.in_transaction_ids.clone();
    // idle in a transaction longer than the shedding threshold (a third of a stage: 10 s)
    tokio::time::sleep(Duration::from_secs(11)).await;

    let mut held = Some(held);
    let result = run_until(&engine, Duration::from_secs(180), |incidents| {
        let asked = incidents.iter().any(|i| {
            i.timeline.iter().any(
                |e| matches!(&e.event, Event::TaskAssigned { task, .. } if task.contains("connection pool")),
            )
        });
        let done = incidents
            .iter()
            .any(|i| i.timeline.iter().any(|e| matches!(e.event, Event::TaskDone { .. })));
        let closed = incidents.iter().any(|i| i.resolution.is_some());
        let take = if asked && !done { held.take() } else { None };
        let id = incidents.first().map(|i| i.record.id.clone());
        let engine = &engine;
        async move {
            if let (Some(h), Some(id)) = (take, id) {
                h.close().await?;
                engine.complete_task(&id, "reduce-pool", "dba (scripted)").await?;
            }
            Ok(closed)
        }
    })
    .await;
    let left: Vec<u64> = db
        .processlist()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    if let Some(h) = held.take() {
        let _ = h.close().await; // the killed ones are gone already
    }
    result.unwrap();

    let journal = story(&engine).await;
    let incidents = engine.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1, "{journal}");
    let inc = &incidents[0];
    assert_eq!(inc.record.playbook, db_saturation::MYSQL);
    let v = inc.record.violated.as_ref().unwrap();
    assert!(v.value > 90.0, "{v:?}");
    assert_eq!(inc.resolution, Some(Resolution::Recovered), "{journal}");
    let evidence = serde_json::to_string(&inc.evidence).unwrap();
    assert!(evidence.contains("idle in transaction"), "{evidence}");
    // the connections idle in a transaction were killed; the idle ones survive
    assert_eq!(
        inc.applied_actions(),
        vec!["mysql.kill_sessions".to_string()]
    );
    assert!(tx_ids.iter().all(|id| !left.contains(id)), "{left:?}");
    assert!(idle_ids.iter().all(|id| left.contains(id)), "{left:?}");
}
