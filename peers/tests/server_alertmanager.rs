//! rb against a real Alertmanager (Debian's `prometheus-alertmanager`, started by
//! peers/scripts/alertmanager.sh with one webhook receiver pointing at 127.0.0.1:19798, bearer token
//! from a file, group_wait 1s, group_interval 2s): an alert pushed to Alertmanager reaches the engine
//! through rb's axum receiver and opens an incident, its resolution closes it; the API client and the
//! reconciliation read the real `GET /api/v2/alerts`; a resolution sent while the engine was down is
//! recovered by reconciling at start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rb_core::journal::Journal;
use rb_core::prelude::*;
use rb_core::receiver::AlertReceiver;
use rb_core::{MemoryJournal, Resolution};
use rb_peers::PeerEnv;
use rb_probes::alertmanager::{fingerprint, reconcile, AlertmanagerClient};
use rb_probes::transport::ReqwestClient;
use serde_json::json;

struct Am {
    url: String,
    hook_addr: String,
    hook_path: String,
    token: Secret,
}

fn am() -> Am {
    let env = PeerEnv::load().unwrap();
    let hook = env.get("AM_WEBHOOK_URL").unwrap().to_string();
    let rest = hook.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let token_file = env.get("AM_WEBHOOK_TOKEN_FILE").unwrap();
    Am {
        url: env.get("AM_URL").unwrap().to_string(),
        hook_addr: addr.to_string(),
        hook_path: path.to_string(),
        token: Secret::new(std::fs::read_to_string(token_file).unwrap().trim()),
    }
}

/// An alert name no earlier run used.
fn unique(name: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}{n}")
}

fn runbook(alertname: &str) -> Runbook {
    Runbook::new("peers").playbook(
        Playbook::new("connect-failed", "A Kafka Connect connector failed")
            .detect_alerts(
                Matchers::parse(&format!(r#"alertname="{alertname}""#)).unwrap(),
                Target::new("kafka-connect", "connect-main"),
            )
            .stable_for(secs(2)),
    )
}

async fn engine(alertname: &str, journal: Arc<dyn Journal>) -> Engine {
    Engine::builder(runbook(alertname))
        .journal(journal)
        .build()
        .await
        .unwrap()
}

fn labels_of(alertname: &str) -> rb_core::Labels {
    labels(&[
        ("alertname", alertname),
        ("connector", "orders-1"),
        ("severity", "critical"),
    ])
}

/// Push the alert to Alertmanager as Prometheus does; `resolved` sets its end to now.
async fn push(am: &Am, alertname: &str, resolved: bool) {
    let now = Clock::system().now();
    let mut alert = json!({
        "labels": labels_of(alertname),
        "annotations": {"summary": "connector orders-1 failed"},
        "startsAt": Timestamp(now.0 - 1_000).rfc3339(),
        "generatorURL": "http://127.0.0.1:19090/graph",
    });
    if resolved {
        alert["endsAt"] = json!(now.rfc3339());
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([alert]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

/// Tick the engine every 200 ms until `done` holds (at most `limit`).
async fn tick_until<F, Fut>(e: &Engine, limit: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        e.tick().await.unwrap();
        if done().await {
            return;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn client(am: &Am) -> AlertmanagerClient<ReqwestClient> {
    AlertmanagerClient::new(
        ReqwestClient::new(&am.url).unwrap(),
        Target::new("alertmanager", "am-peer"),
    )
}

/// Serve rb's receiver for `e` on the address Alertmanager posts to; the sender stops it.
async fn serve(am: &Am, e: &Engine) -> tokio::sync::oneshot::Sender<()> {
    let rx = AlertReceiver::new(e.clone(), am.token.clone()).path(am.hook_path.clone());
    let listener = tokio::net::TcpListener::bind(&am.hook_addr).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        rx.serve(listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real-peer tier (peers/run.sh alertmanager)"]
async fn a_real_alertmanager_opens_and_closes_an_incident() {
    let am = am();
    let name = unique("RbPeerWebhook");
    let e = engine(&name, Arc::new(MemoryJournal::new())).await;
    let stop = serve(&am, &e).await;

    push(&am, &name, false).await;
    tick_until(&e, Duration::from_secs(30), "incident opened", || async {
        e.open_incidents().await.len() == 1
    })
    .await;
    let id = e.open_incidents().await[0].clone();
    let inc = e.incident(&id).await.unwrap();
    assert_eq!(inc.record.finding.summary, "connector orders-1 failed");

    // the API: the checklist's question and the reconciliation see the same alert
    let fp = fingerprint(&labels_of(&name));
    let m = Matchers::parse(&format!(r#"alertname="{name}""#)).unwrap();
    let left = client(&am).still_active(&m).await.unwrap().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].fingerprint, fp,
        "rb's fingerprint is Alertmanager's"
    );
    assert_eq!(left[0].receivers, ["rb"]);
    let report = reconcile(&client(&am), &e).await.unwrap();
    assert_eq!(report.firing, vec![fp.clone()]);
    assert!(report.resolved.is_empty(), "{report:?}");

    push(&am, &name, true).await;
    tick_until(&e, Duration::from_secs(30), "incident closed", || async {
        e.open_incidents().await.is_empty()
    })
    .await;
    assert_eq!(
        e.incident(&id).await.unwrap().resolution,
        Some(Resolution::Recovered)
    );
    assert_eq!(client(&am).still_active(&m).await.unwrap(), None);
    assert_eq!(e.incidents().await.unwrap().len(), 1, "one incident in all");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real-peer tier (peers/run.sh alertmanager)"]
async fn a_resolution_sent_while_the_engine_was_down_is_recovered_by_reconcile() {
    let am = am();
    let name = unique("RbPeerReconcile");
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let e = engine(&name, journal.clone()).await;
    let stop = serve(&am, &e).await;
    push(&am, &name, false).await;
    tick_until(&e, Duration::from_secs(30), "incident opened", || async {
        e.open_incidents().await.len() == 1
    })
    .await;
    let id = e.open_incidents().await[0].clone();
    // the engine goes down; the alert resolves meanwhile
    let _ = stop.send(());
    drop(e);
    tokio::time::sleep(Duration::from_millis(300)).await;
    push(&am, &name, true).await;
    let m = Matchers::parse(&format!(r#"alertname="{name}""#)).unwrap();
    let start = Instant::now();
    while client(&am).still_active(&m).await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not resolved in Alertmanager"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // a new engine on the same journal, no receiver: only reconcile can tell it
    let e = engine(&name, journal).await;
    assert_eq!(e.open_incidents().await, vec![id.clone()]);
    let report = reconcile(&client(&am), &e).await.unwrap();
    assert_eq!(report.resolved, vec![fingerprint(&labels_of(&name))]);
    tick_until(&e, Duration::from_secs(30), "incident closed", || async {
        e.open_incidents().await.is_empty()
    })
    .await;
    assert_eq!(
        e.incident(&id).await.unwrap().resolution,
        Some(Resolution::Recovered)
    );
}
