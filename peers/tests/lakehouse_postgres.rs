//! The lakehouse runbook's PostgreSQL saturation playbook through all five phases on the real
//! PostgreSQL of the tier (max_connections 40, 3 reserved for superusers): the application's pool
//! fills it past 90 % of the usable connections, the incident opens with the sessions listed, the
//! sessions idle in a transaction are terminated (`pg_terminate_backend`), the staged human task
//! is skipped because the database recovered, the incident closes; the server's own
//! `pg_stat_activity` shows exactly the idle sessions left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::Duration;

use rb_core::{Event, Resolution, Secret};
use rb_examples::lakehouse::situations::db_saturation;
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings};
use rb_peers::lakehouse::{engine, run_until};
use rb_peers::postgres::Postgres;
use rb_peers::PeerEnv;
use rb_probes::sql::{SqlEndpoint, SqlTls};

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn saturation_is_detected_handled_and_recovers_on_the_real_server() {
    let pg = Postgres::from_env(&PeerEnv::load().unwrap()).unwrap();
    let mut ep = SqlEndpoint::new(
        pg.host.clone(),
        pg.port,
        pg.user.clone(),
        Secret::new(pg.password.clone()),
    );
    ep.tls = SqlTls::Disable;
    ep.database = Some(pg.db.clone());
    let endpoints = Endpoints {
        postgres: Some(ep),
        ..Endpoints::default()
    };
    let systems = Systems::new(endpoints, Credentials::default(), Timings::fast()).unwrap();
    let playbooks = db_saturation::playbooks_shedding(&systems, &[pg.user.as_str()]);
    assert_eq!(playbooks.len(), 1, "only PostgreSQL is configured");
    let engine = engine(playbooks).await.unwrap();

    // The application's pool: 35 of the 37 usable connections (the probe's own session takes
    // one more while it looks, and is not counted), 12 of them idle in a transaction.
    let (idle, in_tx) = (23, 12);
    let held = pg.open_sessions("orders-api", idle, in_tx).await.unwrap();
    let ours = pg.activity("orders-api").await.unwrap();
    assert_eq!(ours.len(), idle + in_tx, "the server sees the pool");
    let tx_pids: Vec<i32> = held.pids[idle..].to_vec();
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
                // the scripted DBA shrinks the pool, then says so
                h.close().await?;
                engine.complete_task(&id, "reduce-pool", "dba (scripted)").await?;
            }
            Ok(closed)
        }
    })
    .await;
    let left = pg.activity("orders-api").await.unwrap();
    if let Some(h) = held.take() {
        let _ = h.close().await; // the terminated ones are gone already
    }
    result.unwrap();

    let incidents = engine.incidents().await.unwrap();
    assert_eq!(
        incidents.len(),
        1,
        "{}",
        rb_peers::lakehouse::story(&engine).await
    );
    let inc = &incidents[0];
    assert_eq!(inc.record.playbook, db_saturation::POSTGRES);
    let v = inc.record.violated.as_ref().unwrap();
    assert_eq!(v.name, db_saturation::USED_PERCENT);
    assert!(v.value > 90.0, "{v:?}");
    assert_eq!(inc.resolution, Some(Resolution::Recovered));
    let evidence = serde_json::to_string(&inc.evidence).unwrap();
    assert!(
        evidence.contains("idle in transaction"),
        "the sessions are listed"
    );
    // the sessions idle in a transaction were terminated; the idle ones survive
    assert_eq!(
        inc.applied_actions(),
        vec!["postgres.terminate_sessions".to_string()]
    );
    assert_eq!(left.len(), idle, "{left:?}");
    assert!(left.iter().all(|a| a.state == "idle"), "{left:?}");
    assert!(left.iter().all(|a| !tx_pids.contains(&a.pid)), "{left:?}");
}
