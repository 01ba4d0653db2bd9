//! Kafka 4.x and Kafka Connect, for real: a consumer-group lag of known size checked against
//! `kafka-consumer-groups --describe` and `kafka-topics --describe`; a FileStream source whose task
//! really FAILS, restarted both ways, fixed, with `GET /connectors?expand=status` as ground truth;
//! the worker's answers recorded as fixtures (`RB_PEERS_RECORD=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_peers::kafka::{Kafka, KafkaConnect};
use rb_peers::record::Recorder;
use rb_peers::PeerEnv;
use reqwest::Method;
use serde_json::json;

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn consumer_group_lag_matches_kafka_consumer_groups_describe() {
    let kafka = Kafka::from_env(&PeerEnv::load().unwrap()).unwrap();
    assert!(kafka.version.starts_with("4."), "{}", kafka.version);
    let topic = unique("rb-lag");
    let group = unique("rb-group");
    let sc = kafka
        .build_lag(&topic, &group, 3, 10, &[2, 5, 10])
        .await
        .unwrap();
    assert_eq!(sc.expected_lag(), vec![8, 5, 0]);
    assert_eq!(sc.total_lag(), 13);

    // rdkafka reads the commits back.
    let committed = kafka.committed(&group, &topic, 3).await.unwrap();
    assert_eq!(committed, vec![Some(2), Some(5), Some(10)]);

    // Ground truth: kafka-consumer-groups --describe --group G.
    let rows = kafka.describe_group(&group).await.unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (p, row) in rows.iter().enumerate() {
        assert_eq!(row.group, group);
        assert_eq!(row.topic, topic);
        assert_eq!(row.partition, p as i32);
        assert_eq!(row.current_offset, Some(sc.committed[p]), "{row:?}");
        assert_eq!(row.log_end_offset, Some(10), "{row:?}");
        assert_eq!(row.lag, Some(sc.expected_lag()[p]), "{row:?}");
        assert_eq!(
            row.consumer_id, "-",
            "a group that never joined has no members: {row:?}"
        );
    }

    // Ground truth: kafka-topics --describe --topic T.
    let desc = kafka.describe_topic(&topic).await.unwrap();
    assert_eq!(desc.topic, topic);
    assert_eq!(desc.partition_count, 3);
    assert_eq!(desc.replication_factor, 1);
    assert_eq!(desc.partitions.len(), 3);
    // Replication factor 1 on three brokers: each partition lives on one broker, which leads it.
    assert!(
        desc.partitions
            .iter()
            .all(|p| p.leader.is_some_and(|l| kafka.brokers.contains_key(&l)
                && p.replicas == vec![l]
                && p.isr == vec![l])),
        "{desc:?}"
    );

    // The CLI's own text, for the fast tier's parsers and fakes.
    let mut rec = Recorder::new("kafka");
    let bs = kafka.bootstrap.clone();
    for (name, class, args) in [
        (
            "consumer_groups_describe_no_members",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            vec![
                "--bootstrap-server",
                bs.as_str(),
                "--describe",
                "--group",
                group.as_str(),
            ],
        ),
        (
            "topics_describe",
            "org.apache.kafka.tools.TopicCommand",
            vec![
                "--bootstrap-server",
                bs.as_str(),
                "--describe",
                "--topic",
                topic.as_str(),
            ],
        ),
    ] {
        let stdout = kafka.cli(class, &args).await.unwrap();
        let body = json!({
            "class": class,
            "args": ["--bootstrap-server", "{bootstrap}", args[2], args[3], "{name}"],
            "kafka_version": kafka.version,
            "situation": "topic with 3 partitions, 10 messages each; group committed 2, 5, 10 without joining",
            "stdout": stdout,
        });
        rec.add(
            name,
            "CLI",
            &format!("{class} {} {} {{name}}", args[2], args[3]),
            0,
            &body,
        );
    }
    rec.finish().unwrap();

    // Moving the commit changes the lag the CLI reports.
    kafka
        .commit_offsets(&group, &topic, &[10, 10, 10])
        .await
        .unwrap();
    let rows = kafka.describe_group(&group).await.unwrap();
    assert!(rows.iter().all(|r| r.lag == Some(0)), "{rows:?}");
    kafka.delete_topic(&topic).await.unwrap();
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn connect_task_fails_for_real_and_restarts_and_answers_are_recorded() {
    let env = PeerEnv::load().unwrap();
    let kafka = Kafka::from_env(&env).unwrap();
    let connect = KafkaConnect::from_env(&env).unwrap();
    let mut rec = Recorder::new("kafka-connect");
    // A fresh name each run: the worker keeps a FileStream source's read position per file in its
    // offsets topic, so a re-used file would be skipped and nothing would fail.
    let name = unique("rb-file-source");
    let name = name.as_str();

    let root = connect.get("/").await.unwrap();
    assert_eq!(root.status, 200);
    assert_eq!(root.body["version"], kafka.version.as_str());
    assert!(root.body["kafka_cluster_id"].is_string());
    rec.add("root_200", "GET", "/", root.status, &root.body);
    let health = connect.get("/health").await.unwrap();
    assert_eq!(health.status, 200, "{:?}", health.body);
    assert_eq!(health.body["status"], "healthy");
    rec.add("health_200", "GET", "/health", health.status, &health.body);

    // A task that fails for real.
    let failed = connect.make_failed_task(name, 3).await.unwrap();
    assert_eq!(failed["connector"]["state"], "RUNNING", "{failed}");
    let trace = failed["tasks"][0]["trace"].as_str().unwrap();
    assert!(
        trace.contains("Unrecoverable exception from producer send callback"),
        "{trace}"
    );
    assert!(trace.contains("InvalidTopicException"), "{trace}");
    rec.add(
        "status_task_failed_200",
        "GET",
        "/connectors/{name}/status",
        200,
        &failed,
    );

    // Ground truth: GET /connectors?expand=status.
    let all = connect.list_expand_status().await.unwrap();
    assert_eq!(all[name]["status"]["tasks"][0]["state"], "FAILED", "{all}");
    assert_eq!(all[name]["status"]["type"], "source");
    rec.add(
        "list_expand_status_failed_200",
        "GET",
        "/connectors?expand=status",
        200,
        &all,
    );
    let list = connect.get("/connectors").await.unwrap();
    assert!(
        list.body.as_array().unwrap().iter().any(|n| n == name),
        "{:?}",
        list.body
    );
    rec.add("list_200", "GET", "/connectors", list.status, &list.body);

    // Plain restart: 204, restarts only the Connector object; the task stays FAILED.
    let plain = connect.restart(name, false, false).await.unwrap();
    assert_eq!(plain.status, 204, "{:?}", plain.body);
    assert!(plain.body.is_null());
    rec.add(
        "restart_plain_204",
        "POST",
        "/connectors/{name}/restart",
        plain.status,
        &plain.body,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = connect.status(name).await.unwrap();
    assert_eq!(KafkaConnect::task_state(&s, 0), Some("FAILED"), "{s}");

    // includeTasks&onlyFailed: 202 + status body with the failed task RESTARTING.
    let r = connect.restart(name, true, true).await.unwrap();
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["name"], name);
    assert_eq!(r.body["tasks"][0]["state"], "RESTARTING", "{}", r.body);
    assert_eq!(
        r.body["connector"]["state"], "RUNNING",
        "only failed instances restart: {}",
        r.body
    );
    rec.add(
        "restart_include_tasks_only_failed_202",
        "POST",
        "/connectors/{name}/restart?includeTasks=true&onlyFailed=true",
        r.status,
        &r.body,
    );
    // Same cause, same end: the task fails again.
    let again = connect
        .wait_status(name, Duration::from_secs(60), "task FAILED again", |s| {
            KafkaConnect::task_state(s, 0) == Some("FAILED")
        })
        .await
        .unwrap();
    assert!(again["tasks"][0]["trace"]
        .as_str()
        .unwrap()
        .contains("InvalidTopicException"));

    // Errors: 404 for an unknown connector, 409 for creating one that exists.
    let nf = connect
        .get("/connectors/rb-no-such-connector/status")
        .await
        .unwrap();
    assert_eq!(nf.status, 404);
    assert_eq!(nf.body["error_code"], 404);
    rec.add(
        "status_unknown_404",
        "GET",
        "/connectors/rb-no-such-connector/status",
        nf.status,
        &nf.body,
    );
    let nf2 = connect
        .restart("rb-no-such-connector", true, true)
        .await
        .unwrap();
    assert_eq!(nf2.status, 404);
    rec.add(
        "restart_unknown_404",
        "POST",
        "/connectors/rb-no-such-connector/restart?includeTasks=true&onlyFailed=true",
        nf2.status,
        &nf2.body,
    );
    let nf3 = connect.pause("rb-no-such-connector").await.unwrap();
    assert_eq!(nf3.status, 404);
    rec.add(
        "pause_unknown_404",
        "PUT",
        "/connectors/rb-no-such-connector/pause",
        nf3.status,
        &nf3.body,
    );
    let info = connect.get(&format!("/connectors/{name}")).await.unwrap();
    rec.add(
        "connector_info_200",
        "GET",
        "/connectors/{name}",
        info.status,
        &info.body,
    );
    let dup = connect
        .call(
            Method::POST,
            "/connectors",
            Some(&json!({"name": name, "config": info.body["config"]})),
        )
        .await
        .unwrap();
    assert_eq!(dup.status, 409, "{:?}", dup.body);
    assert_eq!(dup.body["error_code"], 409);
    rec.add(
        "create_existing_409",
        "POST",
        "/connectors",
        dup.status,
        &dup.body,
    );

    // The fix: a topic that exists; the task then runs and the lines arrive.
    let good_topic = unique("rb-connect-out");
    kafka.create_topic(&good_topic, 1).await.unwrap();
    let put = connect.set_topic(name, &good_topic).await.unwrap();
    assert_eq!(put.status, 200, "{:?}", put.body);
    rec.add(
        "put_config_200",
        "PUT",
        "/connectors/{name}/config",
        put.status,
        &put.body,
    );
    let r = connect.restart(name, true, true).await.unwrap();
    assert!(
        r.status == 202 || r.status == 409,
        "{} {:?}",
        r.status,
        r.body
    );
    if r.status == 409 {
        rec.add(
            "restart_during_rebalance_409",
            "POST",
            "/connectors/{name}/restart?includeTasks=true&onlyFailed=true",
            r.status,
            &r.body,
        );
    }
    let running = connect
        .wait_status(name, Duration::from_secs(60), "task RUNNING", |s| {
            KafkaConnect::task_state(s, 0) == Some("RUNNING")
        })
        .await
        .unwrap();
    rec.add(
        "status_running_200",
        "GET",
        "/connectors/{name}/status",
        200,
        &running,
    );

    // Pause / resume: 202 with an empty body; states follow.
    let p = connect.pause(name).await.unwrap();
    assert_eq!(p.status, 202);
    rec.add(
        "pause_202",
        "PUT",
        "/connectors/{name}/pause",
        p.status,
        &p.body,
    );
    let paused = connect
        .wait_status(name, Duration::from_secs(30), "PAUSED", |s| {
            s["connector"]["state"] == "PAUSED" && KafkaConnect::task_state(s, 0) == Some("PAUSED")
        })
        .await
        .unwrap();
    rec.add(
        "status_paused_200",
        "GET",
        "/connectors/{name}/status",
        200,
        &paused,
    );
    let r = connect.resume(name).await.unwrap();
    assert_eq!(r.status, 202);
    rec.add(
        "resume_202",
        "PUT",
        "/connectors/{name}/resume",
        r.status,
        &r.body,
    );
    connect
        .wait_status(name, Duration::from_secs(30), "RUNNING after resume", |s| {
            s["connector"]["state"] == "RUNNING"
                && KafkaConnect::task_state(s, 0) == Some("RUNNING")
        })
        .await
        .unwrap();
    let all = connect.list_expand_status().await.unwrap();
    rec.add(
        "list_expand_status_running_200",
        "GET",
        "/connectors?expand=status",
        200,
        &all,
    );

    // The three lines reached the topic.
    let desc = kafka.describe_topic(&good_topic).await.unwrap();
    assert_eq!(desc.partition_count, 1);
    let mut end = 0;
    for _ in 0..40 {
        let group = unique("rb-probe");
        kafka
            .commit_offsets(&group, &good_topic, &[0])
            .await
            .unwrap();
        end = kafka.describe_group(&group).await.unwrap()[0]
            .log_end_offset
            .unwrap_or(0);
        if end >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(end, 3);

    let d = connect
        .call(Method::DELETE, &format!("/connectors/{name}"), None)
        .await
        .unwrap();
    assert_eq!(d.status, 204);
    rec.add(
        "delete_204",
        "DELETE",
        "/connectors/{name}",
        d.status,
        &d.body,
    );
    kafka.delete_topic(&good_topic).await.unwrap();
    rec.finish().unwrap();
}
