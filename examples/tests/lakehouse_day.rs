//! The scripted day of the lakehouse example, asserted: every real situation detected within its
//! for-duration plus one probe interval, no incident from the decoys, each incident with its
//! record, diagnosis, remediations in order, recovery and checked review; a dry run changes
//! nothing on any fake; secrets configured for every system never reach the journal, the logs or
//! a report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use rb_core::journal::{Journal, SqliteJournal};
use rb_core::{Resolution, Secret};
use rb_examples::lakehouse::checklist::{start_fake_itsm, ItemState, WebhookTicketSink};
use rb_examples::lakehouse::day::{applied_steps, play_day, script, DayOptions, DayReport};
use rb_examples::lakehouse::{runbook, Credentials, Endpoints, Systems, CHECKLIST};
use rb_probes::transport::ReqwestClient;
use rb_testkit::http::FakeHttp;
use rb_testkit::lakehouse::{FakeLakehouse, HttpSystem};

async fn day(opts: DayOptions) -> (FakeLakehouse, FakeHttp, DayReport) {
    let lake = FakeLakehouse::start().await.expect("lakehouse");
    let itsm = start_fake_itsm().await.expect("itsm");
    let tickets = WebhookTicketSink::new(
        Arc::new(ReqwestClient::new(itsm.base_url()).expect("client")),
        "/tickets",
    );
    let report = play_day(&lake, script(), &opts, Arc::new(tickets))
        .await
        .expect("the day");
    (lake, itsm, report)
}

fn opts(dir: &tempfile::TempDir) -> DayOptions {
    let mut o = DayOptions::new(dir.path());
    o.print = false;
    o.color = Some(false);
    o
}

fn mutating_everywhere(lake: &FakeLakehouse) -> Vec<String> {
    let mut out = Vec::new();
    for sys in [
        HttpSystem::Connect,
        HttpSystem::Flink,
        HttpSystem::Nessie,
        HttpSystem::NessieManagement,
        HttpSystem::Minio,
        HttpSystem::Trino,
        HttpSystem::Prometheus,
        HttpSystem::Loki,
    ] {
        out.extend(
            lake.http(sys)
                .requests()
                .mutating()
                .into_iter()
                // the Trino statement protocol POSTs a read-only query (the cross-check)
                .filter(|r| !(r.method == "POST" && r.path == "/v1/statement"))
                // Nessie's dry-run merge (how the merge is planned) changes nothing
                .filter(|r| !r.json().is_some_and(|v| v["isDryRun"] == true))
                .map(|r| format!("{sys:?}: {}", r.line())),
        );
    }
    out.extend(
        lake.postgres()
            .terminated()
            .into_iter()
            .map(|t| format!("postgres: terminated {}", t.pid)),
    );
    out.extend(
        lake.mysql()
            .kills()
            .into_iter()
            .map(|k| format!("mysql: kill {k:?}")),
    );
    out
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_day_detects_every_situation_and_no_decoy() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let timings = o.timings.clone();
    let (lake, itsm, report) = day(o).await;
    let summary = rb_examples::lakehouse::day::summary(&report, false);
    println!("{}\n{summary}", report.timeline.join("\n"));

    assert!(report.missed.is_empty(), "{summary}");
    assert!(report.false_incidents.is_empty(), "{summary}");
    assert!(report.real() >= 3, "{summary}");
    let budget = timings.for_duration + timings.probe_every;
    let systems = Systems::new(
        Endpoints::from_fake(&lake),
        Credentials::default(),
        timings.clone(),
    )
    .unwrap();
    let rb = runbook(&systems).unwrap();
    for scene in report.scenes.iter().filter(|s| s.expect.is_some()) {
        let expect = scene.expect.as_ref().unwrap();
        let latency = scene.detection_latency.expect("detected");
        assert!(
            latency <= budget,
            "{}: detected after {latency:?}, budget {budget:?}",
            scene.name
        );
        let inc = report
            .incidents
            .iter()
            .find(|i| Some(&i.record.id) == scene.incident.as_ref())
            .unwrap();
        // the ITSM record of seed §2
        assert!(!inc.record.service.is_empty());
        let v = inc.record.violated.as_ref().expect("violated metric");
        assert!(v.threshold.is_finite() && !v.comparison.is_empty(), "{v:?}");
        assert!(
            !inc.record.affected_pipelines.is_empty(),
            "{:?}",
            inc.record
        );
        // diagnosis evidence attached
        assert!(
            inc.evidence.len() >= 2,
            "{}: {:?}",
            scene.name,
            inc.evidence
        );
        // remediations applied in order
        assert_eq!(applied_steps(&rb, inc), expect.applied, "{}", scene.name);
        // recovery verified
        assert_eq!(
            inc.resolution,
            Some(Resolution::Recovered),
            "{}",
            scene.name
        );
        // the review with its checklist
        let md = std::fs::read_to_string(dir.path().join(format!("{}.md", inc.record.id))).unwrap();
        assert!(md.contains("```mermaid"), "{md}");
        let items = &report.checklists[&inc.record.id];
        assert_eq!(items.len(), CHECKLIST.len());
        for item in items {
            match &item.state {
                ItemState::Ticked { evidence } => {
                    assert!(md.contains(&format!("- [x] {}", item.item)), "{md}");
                    assert!(!evidence.is_empty());
                }
                ItemState::NotApplicable { .. } => {
                    assert!(md.contains(&format!("- [x] {}", item.item)))
                }
                ItemState::Open { reason } => {
                    assert!(md.contains(reason.split(':').next().unwrap()), "{md}")
                }
            }
        }
        assert!(
            matches!(items[2].state, ItemState::Ticked { .. }),
            "cross-check: {items:?}"
        );
        assert!(
            matches!(items[3].state, ItemState::Ticked { .. }),
            "ticket: {items:?}"
        );
    }
    // one ticket per incident, each resolved
    let created = itsm.requests().matching("POST", "/tickets");
    assert_eq!(created.len(), report.incidents.len());
    let resolved = itsm.requests().matching("POST", "/tickets/*/resolve");
    assert_eq!(resolved.len(), report.incidents.len());
    // one Kafka Connect restart per failed connector, nothing else
    let restarts: Vec<String> = lake
        .connect()
        .http()
        .requests()
        .matching("POST", "/connectors/*/restart")
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        restarts,
        [
            "/connectors/orders-cdc/restart",
            "/connectors/payments-sink/restart"
        ]
    );
    // the journal on disk agrees with the report
    let journal = SqliteJournal::open(dir.path().join("journal.db"))
        .await
        .unwrap();
    assert_eq!(
        journal.incidents().await.unwrap().len(),
        report.incidents.len()
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dry_run_day_changes_nothing_on_any_fake() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&dir);
    o.dry_run = true;
    o.max_length = std::time::Duration::from_secs(6 * 3600);
    let (lake, _itsm, report) = day(o).await;
    assert!(report.missed.is_empty(), "{:?}", report.missed);
    let mutating = mutating_everywhere(&lake);
    // the scenes' own doing is the only change: the paused connector decoy, and the scripted
    // human who uploads the fixed JAR when the Flink job crash-loops on a schema change
    let unexpected: Vec<&String> = mutating
        .iter()
        .filter(|m| {
            !m.contains("/pause") && !m.contains("/resume") && !m.contains("POST /jars/upload")
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    for inc in &report.incidents {
        assert!(
            inc.applied_actions().is_empty(),
            "{:?}",
            inc.applied_actions()
        );
    }
}

/// A writer for the tracing subscriber that keeps everything.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn secrets_never_reach_the_journal_the_logs_or_a_report() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secrets: Vec<String> = (0..10)
        .map(|i| format!("s3cr3t-{i}-{}", "x".repeat(12)))
        .collect();
    let pair = |i: usize| Some((format!("user{i}"), Secret::new(secrets[i].clone())));
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&dir);
    o.credentials = Credentials {
        // librdkafka's mock cluster speaks no SASL: a Kafka client with SASL credentials cannot
        // reach it. The SASL password's redaction is tested in rb-probes (KafkaConfig's Debug).
        kafka_sasl: None,
        cassandra: pair(1),
        kafka_connect: pair(2),
        flink: pair(3),
        nessie_token: Some(Secret::new(secrets[4].clone())),
        minio_token: Some(Secret::new(secrets[5].clone())),
        trino: pair(6),
        prometheus: pair(7),
        loki: pair(8),
        alertmanager: pair(9),
    };
    let (lake, _itsm, report) = day(o).await;
    assert!(report.missed.is_empty(), "{:?}", report.missed);
    // the database passwords are secrets too
    let mut all = secrets.clone();
    all.push(lake.postgres().password());
    all.push(lake.mysql().password());

    let mut haystacks: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // SQLite's rollback journal (`journal.db-journal`) exists only during a write: it can
            // vanish between the listing and the read; what it held is in the database file
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        haystacks.push((
            path.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    haystacks.push(("timeline".into(), report.timeline.join("\n")));
    haystacks.push((
        "summary".into(),
        rb_examples::lakehouse::day::summary(&report, false),
    ));
    haystacks.push((
        "logs".into(),
        String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned(),
    ));
    haystacks.push(("incidents".into(), format!("{:?}", report.incidents)));
    assert!(haystacks.iter().any(|(n, _)| n.ends_with("journal.db")));
    let mut hits = Vec::new();
    for (name, text) in &haystacks {
        for s in &all {
            if text.contains(s.as_str()) {
                hits.push(format!("{s} in {name}"));
            }
        }
    }
    let _ = std::io::stdout().flush();
    assert!(hits.is_empty(), "{hits:#?}");
    assert!(
        !logs.0.lock().unwrap().is_empty(),
        "the subscriber captured the day's logs"
    );
}
