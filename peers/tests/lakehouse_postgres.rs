//! The lakehouse runbook's PostgreSQL saturation playbook through all five phases on the real
//! PostgreSQL of the tier (max_connections 40): the application's pool fills it past 90 %, the
//! incident opens with the sessions listed, the scripted DBA shrinks the pool when asked, the
//! incident recovers; the server's own `pg_stat_activity` agrees at each point.
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
    let playbooks = db_saturation::playbooks(&systems);
    assert_eq!(playbooks.len(), 1, "only PostgreSQL is configured");
    let engine = engine(playbooks).await.unwrap();

    // The application's pool: 92 % of max_connections (the probe's own session makes one more
    // while it looks, and is not counted), a third idle in a transaction.
    let want = (pg.max_connections as usize * 92).div_ceil(100);
    let held = pg
        .open_sessions("orders-api", want - want / 3, want / 3)
        .await
        .unwrap();
    let ours = pg.activity("orders-api").await.unwrap();
    assert_eq!(ours.len(), want, "the server sees the pool");

    let mut held = Some(held);
    run_until(&engine, Duration::from_secs(120), |incidents| {
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
    .await
    .unwrap();

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
    // the server agrees: the pool is gone
    assert!(pg.activity("orders-api").await.unwrap().is_empty());
}
