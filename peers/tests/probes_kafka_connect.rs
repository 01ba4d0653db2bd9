//! rb-probes' Kafka Connect probe against the real worker (Kafka 4.1.1) of the tier: connector and
//! task states, worker ids and traces from the probe equal the REST answers read directly, with a
//! really FAILED task (a FileStream source producing to an invalid topic name) classified as a
//! configuration error, and a healthy connector beside it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_core::time::Clock;
use rb_core::{Probe, ProbeContext, Target};
use rb_peers::kafka::KafkaConnect;
use rb_peers::PeerEnv;
use rb_probes::kafka_connect::{ConnectStatus, ConnectorFact, ConnectorsFact, TraceClass};
use rb_probes::transport::ReqwestClient;
use serde_json::Value;

fn ctx() -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), Duration::from_secs(30))
}

/// The probe's view of one connector equals the worker's status body.
fn same(fact: &ConnectorFact, status: &Value) -> Result<(), String> {
    let mut diffs = Vec::new();
    let n = &fact.name;
    if status["name"].as_str() != Some(n) {
        diffs.push(format!("{n}: name {}", status["name"]));
    }
    if status["type"].as_str() != fact.kind.as_deref() {
        diffs.push(format!("{n}: type {} vs {:?}", status["type"], fact.kind));
    }
    if status["connector"]["state"].as_str() != Some(&fact.instance.state) {
        diffs.push(format!(
            "{n}: connector state {} vs {}",
            status["connector"]["state"], fact.instance.state
        ));
    }
    if status["connector"]["worker_id"].as_str() != Some(&fact.instance.worker_id) {
        diffs.push(format!(
            "{n}: connector worker {}",
            status["connector"]["worker_id"]
        ));
    }
    let tasks = status["tasks"].as_array().cloned().unwrap_or_default();
    if tasks.len() != fact.tasks.len() {
        diffs.push(format!(
            "{n}: {} tasks vs {}",
            tasks.len(),
            fact.tasks.len()
        ));
    }
    for t in &tasks {
        let id = t["id"].as_u64().unwrap_or(u64::MAX);
        let Some(f) = fact.tasks.iter().find(|f| u64::from(f.id) == id) else {
            diffs.push(format!("{n}: task {id} missing from the probe"));
            continue;
        };
        if t["state"].as_str() != Some(&f.instance.state) {
            diffs.push(format!(
                "{n}/{id}: state {} vs {}",
                t["state"], f.instance.state
            ));
        }
        if t["worker_id"].as_str() != Some(&f.instance.worker_id) {
            diffs.push(format!(
                "{n}/{id}: worker {} vs {}",
                t["worker_id"], f.instance.worker_id
            ));
        }
        match (t["trace"].as_str(), &f.instance.trace) {
            (None, None) => {}
            (Some(real), Some(ours)) => {
                let first = real.lines().next().unwrap_or("");
                if !ours.starts_with(first) {
                    diffs.push(format!("{n}/{id}: trace starts differently"));
                }
                if let Some(cause) = real.lines().rev().find(|l| l.starts_with("Caused by:")) {
                    if !ours.contains(cause) {
                        diffs.push(format!("{n}/{id}: root cause {cause:?} lost"));
                    }
                }
            }
            (r, o) => diffs.push(format!(
                "{n}/{id}: trace {} vs {}",
                r.is_some(),
                o.is_some()
            )),
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn probe_states_equal_the_workers_answers() {
    let real = KafkaConnect::from_env(&PeerEnv::load().unwrap()).unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tag = format!("{}-{}", std::process::id(), nanos % 1_000_000_000);
    let failed = format!("rb-probe-failed-{tag}");
    let healthy = format!("rb-probe-ok-{tag}");

    real.make_failed_task(&failed, 2).await.unwrap();
    std::fs::create_dir_all(&real.files_dir).unwrap();
    let file = real.files_dir.join(format!("{healthy}.txt"));
    std::fs::write(&file, "a\nb\n").unwrap();
    real.create_file_source(&healthy, &file, &format!("rb-probe-topic-{tag}"))
        .await
        .unwrap();
    real.wait_status(&healthy, Duration::from_secs(60), "task 0 RUNNING", |s| {
        KafkaConnect::task_state(s, 0) == Some("RUNNING")
    })
    .await
    .unwrap();

    let client = ReqwestClient::new(real.url.clone()).unwrap();
    let probe = ConnectStatus::new(client.clone(), Target::new("kafka-connect", "tier"));

    // States are eventually consistent: compare a few times until one probe and the ground truth
    // read right after it agree (they do at once unless something was moving).
    let mut last = String::new();
    let mut agreed = false;
    for _ in 0..5 {
        let o = probe.observe(&ctx()).await.unwrap();
        assert!(o.complete, "{:?}", o.gaps);
        let fact: ConnectorsFact = o.facts.get().unwrap().unwrap();
        let truth = real.list_expand_status().await.unwrap();
        let truth = truth.as_object().unwrap();
        let mut diffs = Vec::new();
        if truth.len() != fact.connectors.len() {
            diffs.push(format!(
                "{} connectors listed, probe saw {}",
                truth.len(),
                fact.connectors.len()
            ));
        }
        for (name, entry) in truth {
            match fact.connector(name) {
                Some(f) => {
                    if let Err(d) = same(f, &entry["status"]) {
                        diffs.push(d);
                    }
                }
                None => diffs.push(format!("{name} missing from the probe")),
            }
        }
        let count = o
            .samples_named("kafka_connect_connectors")
            .next()
            .unwrap()
            .value;
        if count != truth.len() as f64 {
            diffs.push(format!(
                "kafka_connect_connectors {count} vs {}",
                truth.len()
            ));
        }
        let failed_tasks: usize = truth
            .values()
            .map(|e| {
                e["status"]["tasks"]
                    .as_array()
                    .map(|ts| ts.iter().filter(|t| t["state"] == "FAILED").count())
                    .unwrap_or(0)
            })
            .sum();
        let ours = o
            .samples_named("kafka_connect_failed_tasks")
            .next()
            .unwrap()
            .value;
        if ours != failed_tasks as f64 {
            diffs.push(format!(
                "kafka_connect_failed_tasks {ours} vs {failed_tasks}"
            ));
        }
        if diffs.is_empty() {
            // the really failed task: FAILED, its trace classified as a configuration error
            let f = fact.connector(&failed).unwrap();
            assert_eq!(f.tasks[0].instance.state, "FAILED");
            assert_eq!(
                f.tasks[0].instance.trace_class,
                Some(TraceClass::Configuration)
            );
            assert_eq!(
                f.class.as_deref(),
                Some("org.apache.kafka.connect.file.FileStreamSourceConnector")
            );
            let per = o
                .samples_named("kafka_connect_connector_failed_task_count")
                .find(|s| s.labels["connector"] == failed)
                .unwrap();
            assert_eq!(per.value, 1.0);
            let h = fact.connector(&healthy).unwrap();
            assert_eq!(h.tasks[0].instance.state, "RUNNING");
            assert_eq!(h.tasks[0].instance.trace, None);
            agreed = true;
            break;
        }
        last = diffs.join("\n");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(agreed, "probe and worker disagree:\n{last}");

    // One connector: equal to GET /connectors/<name>/status.
    let one = ConnectStatus::new(client.clone(), Target::new("kafka-connect", "tier"))
        .connector(failed.clone());
    let o = one.observe(&ctx()).await.unwrap();
    let fact: ConnectorsFact = o.facts.get().unwrap().unwrap();
    let truth = real.status(&failed).await.unwrap();
    same(&fact.connectors[0], &truth).unwrap();

    // An unknown connector: the worker's 404, rejected with its message.
    let e = ConnectStatus::new(client, Target::new("kafka-connect", "tier"))
        .connector("rb-no-such-connector")
        .observe(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), rb_core::ErrorKind::Rejected);
    assert!(
        e.message
            .contains("No status found for connector rb-no-such-connector"),
        "{e}"
    );

    real.delete(&failed).await.unwrap();
    real.delete(&healthy).await.unwrap();
}
