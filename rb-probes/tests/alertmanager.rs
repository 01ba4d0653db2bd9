//! The Alertmanager API client through reqwest against the fake Alertmanager: the alerts and their
//! states, the checklist's question, faults; and the engine's reconciliation at start.

#![cfg(feature = "alertmanager")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_core::journal::Journal;
use rb_core::prelude::*;
use rb_core::{ErrorKind, MemoryJournal, Resolution};
use rb_probes::alertmanager::{fingerprint, reconcile, AlertQuery, AlertState, AlertmanagerClient};
use rb_probes::transport::ReqwestClient;
use rb_testkit::http::alertmanager::{AlertSpec, FakeAlertmanager};
use rb_testkit::http::Fault;

fn am_target() -> Target {
    Target::new("alertmanager", "am-main")
}

fn client(am: &FakeAlertmanager) -> AlertmanagerClient<ReqwestClient> {
    AlertmanagerClient::new(ReqwestClient::new(am.base_url()).unwrap(), am_target())
        .deadline(Duration::from_secs(2))
}

fn connect_alert(connector: &str) -> AlertSpec {
    AlertSpec::new("KafkaConnectFailed")
        .label("connector", connector)
        .label("severity", "critical")
        .annotation("summary", &format!("connector {connector} failed"))
}

fn matchers(s: &str) -> Matchers {
    Matchers::parse(s).unwrap()
}

#[tokio::test]
async fn lists_alerts_with_their_states() {
    let am = FakeAlertmanager::start().await.unwrap();
    let a = am.fire(&connect_alert("orders-1"));
    let b = am.fire(&connect_alert("orders-2"));
    let c = am.fire(&AlertSpec::new("FlinkJobRestarting").label("job", "orders"));
    let gone = am.fire(&connect_alert("orders-3"));
    am.silence(&b, "5f1e-silence");
    am.inhibit(&c, &a);
    am.resolve(&gone);
    let m = client(&am);

    let all = m.alerts(&AlertQuery::all()).await.unwrap();
    let fps: Vec<&str> = all.iter().map(|x| x.fingerprint.as_str()).collect();
    assert_eq!(all.len(), 3, "{fps:?}");
    assert!(!fps.contains(&gone.as_str()), "a resolved alert is listed");
    let first = all.iter().find(|x| x.fingerprint == a).unwrap();
    assert_eq!(first.fingerprint, fingerprint(&first.labels));
    assert_eq!(first.status.state, AlertState::Active);
    assert_eq!(first.receivers, ["rb"]);
    assert_eq!(first.annotations["summary"], "connector orders-1 failed");
    assert!(first.starts_at.ends_with('Z') && first.updated_at.ends_with('Z'));
    let silenced = all.iter().find(|x| x.fingerprint == b).unwrap();
    assert_eq!(silenced.status.state, AlertState::Suppressed);
    assert_eq!(silenced.status.silenced_by, ["5f1e-silence"]);
    let inhibited = all.iter().find(|x| x.fingerprint == c).unwrap();
    assert_eq!(inhibited.status.inhibited_by, vec![a.clone()]);

    // the reconciliation's query: firing and notified only
    let firing = m.alerts(&AlertQuery::firing()).await.unwrap();
    assert_eq!(
        firing.iter().map(|x| &x.fingerprint).collect::<Vec<_>>(),
        vec![&a]
    );
    let q = am.requests().matching("GET", "/api/v2/alerts");
    let last = q.last().unwrap().query.clone().unwrap();
    assert!(
        last.contains("active=true")
            && last.contains("silenced=false")
            && last.contains("inhibited=false"),
        "{last}"
    );

    // filters: Alertmanager's matchers, regexes anchored
    let f = m
        .alerts(&AlertQuery::all().filter(matchers(
            r#"alertname="KafkaConnectFailed", connector=~"orders-[12]""#,
        )))
        .await
        .unwrap();
    assert_eq!(f.len(), 2);
    let f = m
        .alerts(&AlertQuery::all().filter(matchers(r#"connector=~"orders""#)))
        .await
        .unwrap();
    assert!(f.is_empty(), "regex not anchored: {f:?}");
    let f = m
        .alerts(&AlertQuery::all().receiver("other"))
        .await
        .unwrap();
    assert!(f.is_empty());
}

#[tokio::test]
async fn still_active_answers_the_checklist() {
    let am = FakeAlertmanager::start().await.unwrap();
    let m = client(&am);
    let which = matchers(r#"alertname="KafkaConnectFailed", connector="orders-1""#);
    assert_eq!(m.still_active(&which).await.unwrap(), None);
    let fp = am.fire(&connect_alert("orders-1"));
    am.fire(&connect_alert("orders-2"));
    let left = m.still_active(&which).await.unwrap().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].fingerprint, fp);
    // a silenced alert has not cleared
    am.silence(&fp, "s-1");
    let left = m.still_active(&which).await.unwrap().unwrap();
    assert_eq!(left[0].status.state, AlertState::Suppressed);
    am.resolve(&fp);
    assert_eq!(m.still_active(&which).await.unwrap(), None);
}

#[tokio::test]
async fn faults_are_typed_errors_naming_the_endpoint() {
    let am = FakeAlertmanager::start().await.unwrap();
    am.fire(&connect_alert("orders-1"));
    let m = client(&am).deadline(Duration::from_millis(500));
    let cases: Vec<(Fault, ErrorKind, &str)> = vec![
        (Fault::Status(503), ErrorKind::Rejected, "503"),
        (
            Fault::StatusBody(400, "\"bad matcher format: connector=~\\\"(\"".into()),
            ErrorKind::Rejected,
            "bad matcher format",
        ),
        (Fault::Status(401), ErrorKind::Unauthorized, "401"),
        (Fault::MalformedBody, ErrorKind::BadResponse, "malformed JSON"),
        (
            Fault::StatusBody(200, r#"[{"labels":{"alertname":"A"},"fingerprint":"f","startsAt":"x","endsAt":"x","updatedAt":"x","status":{"state":"firing"}}]"#.into()),
            ErrorKind::BadResponse,
            "/0/status/state",
        ),
        (
            Fault::StatusBody(200, r#"{"alerts":[]}"#.into()),
            ErrorKind::BadResponse,
            "malformed JSON",
        ),
        (Fault::TruncatedBody, ErrorKind::BadResponse, ""),
        (Fault::Reset, ErrorKind::BadResponse, ""),
        (Fault::Hang, ErrorKind::Timeout, ""),
        (Fault::Latency(Duration::from_secs(3)), ErrorKind::Timeout, ""),
    ];
    for (fault, kind, text) in cases {
        am.faults().clear();
        am.faults().inject("GET", "/api/v2/alerts", fault.clone());
        let e = m.alerts(&AlertQuery::firing()).await.unwrap_err();
        let shown = e.to_string();
        // a reset may surface while sending or while reading the body
        let ok_kind = e.kind() == kind
            || (matches!(fault, Fault::Reset | Fault::TruncatedBody)
                && matches!(
                    e.kind(),
                    ErrorKind::Unreachable | ErrorKind::BadResponse | ErrorKind::Other
                ));
        assert!(ok_kind, "{fault:?}: {:?} {shown}", e.kind());
        assert!(shown.contains(text), "{fault:?}: {shown}");
        assert!(
            shown.contains("/api/v2/alerts"),
            "{fault:?}: no endpoint in {shown}"
        );
        assert!(shown.contains("am-main"), "{fault:?}: no target in {shown}");
    }
    am.faults().clear();
    // a short latency within the deadline is fine
    am.faults()
        .inject(
            "GET",
            "/api/v2/alerts",
            Fault::Latency(Duration::from_millis(50)),
        )
        .times(1);
    assert_eq!(m.alerts(&AlertQuery::firing()).await.unwrap().len(), 1);
    // refused (a fresh client: a pooled connection would see its reset instead)
    am.refuse_connections();
    let e = client(&am).alerts(&AlertQuery::firing()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().contains(&am.base_url()), "{e}");
}

#[tokio::test]
async fn the_fake_refuses_bad_parameters_as_alertmanager_does() {
    let am = FakeAlertmanager::start().await.unwrap();
    let http = reqwest::Client::new();
    for q in ["filter=connector%3D~%22(%22", "receiver=("] {
        let r = http
            .get(format!("{}/api/v2/alerts?{q}", am.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body.is_string(), "{q}: {body}");
    }
    // booleans as go-swagger reads them (Alertmanager 0.25 answers `active=yes` with the alerts)
    let fp = am.fire(&connect_alert("orders-1"));
    let got = |q: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v2/alerts?{q}", am.base_url());
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(got("active=yes").await[0]["fingerprint"], fp.as_str());
    assert_eq!(got("active=nope").await, serde_json::json!([]));
    am.clear();
    // pushed alerts, as Prometheus pushes them
    let r = http
        .post(format!("{}/api/v2/alerts", am.base_url()))
        .json(&serde_json::json!([{"labels": {"alertname": "Pushed", "job": "x"}, "annotations": {"summary": "s"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let listed = client(&am).alerts(&AlertQuery::firing()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name(), "Pushed");
    let r = http
        .post(format!("{}/api/v2/alerts", am.base_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

// ---------------------------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------------------------

fn runbook() -> Runbook {
    Runbook::new("t").playbook(
        Playbook::new("connect-failed", "A Kafka Connect connector failed")
            .detect_alerts(
                matchers(r#"alertname="KafkaConnectFailed""#),
                Target::new("kafka-connect", "connect-main"),
            )
            .stable_for(mins(2)),
    )
}

async fn engine(journal: Arc<dyn Journal>) -> Engine {
    Engine::builder(runbook())
        .journal(journal)
        .clock(Clock::starting_at(rb_core::time::Timestamp(
            1_795_590_000_000,
        )))
        .build()
        .await
        .unwrap()
}

/// A webhook body for `alert` with `status`, fingerprinted as Alertmanager does.
fn webhook(alert: &AlertSpec, status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "status": status, "receiver": "rb", "groupKey": "{}:{}",
        "alerts": [{"status": status, "labels": alert.labels(), "annotations": {"summary": "connector failed"},
                    "startsAt": "2026-11-25T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": alert.fingerprint()}],
    }))
    .unwrap()
}

/// Advance virtual time by `d`, one tick each 30 s.
async fn run(e: &Engine, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        e.tick().await.unwrap();
        tokio::time::sleep(secs(30)).await;
    }
    e.tick().await.unwrap();
}

/// An engine that saw an alert fire and opened an incident, then stopped.
async fn engine_that_stopped(journal: Arc<dyn Journal>, alert: &AlertSpec) -> String {
    let e = engine(journal).await;
    e.ingest_alertmanager_webhook(&webhook(alert, "firing"))
        .unwrap();
    let r = e.tick().await.unwrap();
    assert_eq!(r.opened.len(), 1);
    r.opened[0].clone()
}

// The HTTP exchanges run on the real clock; the engine's minutes pass on the paused one afterwards.
#[tokio::test(flavor = "current_thread")]
async fn a_resolution_sent_while_the_engine_was_down_is_not_lost() {
    let am = FakeAlertmanager::start().await.unwrap();
    let alert = connect_alert("orders-1");
    let fp = am.fire(&alert);
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let id = engine_that_stopped(journal.clone(), &alert).await;

    // while the engine is down the alert resolves; the notification finds no one
    am.resolve(&fp);
    am.fire(&AlertSpec::new("Unrelated").label("job", "x"));

    let e = engine(journal.clone()).await;
    assert_eq!(e.open_incidents().await, vec![id.clone()], "resumed open");
    let report = reconcile(&client(&am), &e).await.unwrap();
    assert_eq!(report.resolved, vec![fp.clone()]);
    assert!(report.firing.is_empty(), "{report:?}");
    assert_eq!(report.incidents, vec![id.clone()]);
    // one query per alert detector, with its matchers as filters; one more to tell muted from gone
    let queries: Vec<String> = am
        .requests()
        .matching("GET", "/api/v2/alerts")
        .into_iter()
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert!(
        queries[0].contains("silenced=false")
            && queries[0].contains("inhibited=false")
            && queries[0].contains("filter=alertname%3D%22KafkaConnectFailed%22"),
        "{queries:?}"
    );

    tokio::time::pause();
    run(&e, mins(3)).await;
    assert!(
        e.open_incidents().await.is_empty(),
        "the incident stayed open"
    );
    assert_eq!(
        e.incident(&id).await.unwrap().resolution,
        Some(Resolution::Recovered)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn without_reconcile_the_resolution_is_lost() {
    // the control: the same story with no reconciliation leaves the incident open
    let am = FakeAlertmanager::start().await.unwrap();
    let alert = connect_alert("orders-1");
    let fp = am.fire(&alert);
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let id = engine_that_stopped(journal.clone(), &alert).await;
    am.resolve(&fp);
    let e = engine(journal).await;
    tokio::time::pause();
    run(&e, mins(3)).await;
    assert_eq!(e.open_incidents().await, vec![id]);
}

#[tokio::test(flavor = "current_thread")]
async fn still_firing_stays_open_and_new_alerts_open_incidents() {
    let am = FakeAlertmanager::start().await.unwrap();
    let alert = connect_alert("orders-1");
    let fp = am.fire(&alert);
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let id = engine_that_stopped(journal.clone(), &alert).await;
    let e = engine(journal).await;
    let report = reconcile(&client(&am), &e).await.unwrap();
    assert_eq!(report.firing, vec![fp]);
    assert!(report.resolved.is_empty());
    tokio::time::pause();
    run(&e, mins(3)).await;
    assert_eq!(e.open_incidents().await, vec![id]);

    // an engine that starts with nothing open picks up what fired while it was down
    let e = engine(Arc::new(MemoryJournal::new())).await;
    tokio::time::resume();
    let report = reconcile(&client(&am), &e).await.unwrap();
    assert_eq!(report.firing.len(), 1);
    assert_eq!(e.tick().await.unwrap().opened.len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_silenced_alert_is_fed_with_its_silence_not_as_resolved() {
    let am = FakeAlertmanager::start().await.unwrap();
    let alert = connect_alert("orders-1");
    let fp = am.fire(&alert);
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    engine_that_stopped(journal.clone(), &alert).await;
    am.silence(&fp, "maintenance-7");
    let e = engine(journal).await;
    let report = reconcile(&client(&am), &e).await.unwrap();
    assert_eq!(report.silenced, vec![fp]);
    assert!(report.resolved.is_empty() && report.firing.is_empty());
    e.tick().await.unwrap();
    assert!(
        e.status().await[0].verdict.is_ok(),
        "a silenced alert is not acted upon"
    );
}

#[tokio::test]
async fn reconcile_errors_feed_nothing() {
    let am = FakeAlertmanager::start().await.unwrap();
    am.fire(&connect_alert("orders-1"));
    let e = engine(Arc::new(MemoryJournal::new())).await;
    am.faults().inject_all(Fault::MalformedBody);
    let err = reconcile(&client(&am), &e).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadResponse);
    let r = e.tick().await.unwrap();
    assert!(r.opened.is_empty() && r.unrouted_signals == 0);
}
