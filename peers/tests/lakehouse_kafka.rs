//! The lakehouse runbook's Kafka Connect playbook through all five phases on the real worker of
//! the tier: a connector's task really FAILED on its configuration (an invalid topic name), the
//! incident opens for that connector, no blind restart is tried (the trace says configuration), the
//! scripted human fixes the configuration when asked, the restart after the fix (or the worker's
//! own restart on reconfiguration) brings the task back, the incident recovers — and the worker
//! itself says RUNNING.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_core::{Event, Resolution};
use rb_examples::lakehouse::situations::connect_failed;
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings};
use rb_peers::kafka::KafkaConnect;
use rb_peers::lakehouse::{engine, run_until, story};
use rb_peers::PeerEnv;

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn a_misconfigured_connector_is_fixed_by_a_human_then_restarted() {
    let real = KafkaConnect::from_env(&PeerEnv::load().unwrap()).unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "rb-lakehouse-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    );
    real.make_failed_task(&name, 3).await.unwrap();

    let endpoints = Endpoints {
        kafka_connect: real.url.clone(),
        ..Endpoints::default()
    };
    let systems = Systems::new(endpoints, Credentials::default(), Timings::fast()).unwrap();
    let engine = engine(connect_failed::playbooks(&systems)).await.unwrap();

    let mut fixed = false;
    let result = run_until(&engine, Duration::from_secs(150), |incidents| {
        let mine = incidents
            .into_iter()
            .find(|i| i.record.key.get("connector") == Some(&name));
        let asked = mine.as_ref().is_some_and(|i| {
            i.timeline.iter().any(
                |e| matches!(&e.event, Event::TaskAssigned { task, .. } if task.contains("configuration")),
            )
        });
        let fix_now = asked && !fixed;
        if fix_now {
            fixed = true;
        }
        let closed = mine.as_ref().is_some_and(|i| i.resolution.is_some());
        let id = mine.map(|i| i.record.id);
        let (real, name, engine) = (&real, &name, &engine);
        async move {
            if let (true, Some(id)) = (fix_now, id) {
                // the scripted human fixes the topic name, then says so
                let a = real.set_topic(name, &format!("{name}-out")).await?;
                anyhow::ensure!(a.status < 300, "fixing the config: {} {}", a.status, a.body);
                engine
                    .complete_task(&id, "fix-config", "connect admin (scripted)")
                    .await?;
            }
            Ok(closed)
        }
    })
    .await;
    let journal = story(&engine).await;
    let status = real.status(&name).await;
    let _ = real.delete(&name).await;
    result.unwrap();
    // the worker itself says the task runs again
    let status = status.unwrap();
    assert_eq!(
        KafkaConnect::task_state(&status, 0),
        Some("RUNNING"),
        "{status}"
    );

    let incidents: Vec<_> = engine
        .incidents()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.record.key.get("connector") == Some(&name))
        .collect();
    assert_eq!(incidents.len(), 1, "{journal}");
    let inc = &incidents[0];
    assert_eq!(inc.resolution, Some(Resolution::Recovered), "{journal}");
    // no automatic restart was tried on a configuration error
    assert!(
        !inc.applied_actions()
            .contains(&"kafka_connect.restart".to_string()),
        "{journal}"
    );
    assert!(
        inc.timeline
            .iter()
            .any(|e| matches!(e.event, Event::TaskDone { .. })),
        "{journal}"
    );
}
