//! Differential test: the same Kafka Connect REST requests against the real worker (Kafka 4.1.1)
//! and against `rb_testkit::http::kafka_connect::FakeKafkaConnect`, in the same situation (one
//! FileStream source whose task 0 is FAILED), compared by status code and JSON shape
//! (`rb_peers::shape::shape_diff`). Every difference is printed; the test fails when there is one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_peers::kafka::{Answer, KafkaConnect};
use rb_peers::shape::shape_diff;
use rb_peers::PeerEnv;
use rb_testkit::http::kafka_connect::{ConnectorType, FakeKafkaConnect};
use reqwest::Method;
use serde_json::json;

const TRACE: &str = "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer send callback\n\tat org.apache.kafka.connect.runtime.WorkerSourceTask.maybeThrowProducerSendException(WorkerSourceTask.java:348)\nCaused by: org.apache.kafka.common.errors.InvalidTopicException: Invalid topics: [rb invalid topic!]\n";

struct Diff {
    lines: Vec<String>,
    compared: usize,
}

impl Diff {
    fn compare(&mut self, what: &str, real: &Answer, fake: &Answer) {
        self.compared += 1;
        if real.status != fake.status {
            self.lines.push(format!(
                "{what}: status real {} fake {} (real body {}, fake body {})",
                real.status, fake.status, real.body, fake.body
            ));
        }
        for d in shape_diff(&real.body, &fake.body) {
            self.lines.push(format!("{what}: {d}"));
        }
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn fake_kafka_connect_answers_like_the_real_worker() {
    let real = KafkaConnect::from_env(&PeerEnv::load().unwrap()).unwrap();
    let fake_srv = FakeKafkaConnect::start().await.unwrap();
    let fake = KafkaConnect::new(&fake_srv.base_url(), &real.files_dir).unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("rb-diff-{}-{}", std::process::id(), nanos % 1_000_000_000);
    let n = name.as_str();

    // The same situation on both sides: task 0 FAILED.
    real.make_failed_task(n, 2).await.unwrap();
    fake_srv.add_connector(n, ConnectorType::Source, 1).unwrap();
    fake_srv.fail_task_repeatedly(n, 0, TRACE, 1).unwrap();

    let mut diff = Diff {
        lines: Vec::new(),
        compared: 0,
    };
    let gets = [
        "/".to_string(),
        "/health".to_string(),
        "/connectors".to_string(),
        "/connectors?expand=status".to_string(),
        "/connectors?expand=info".to_string(),
        "/connectors?expand=status&expand=info".to_string(),
        format!("/connectors/{n}"),
        format!("/connectors/{n}/status"),
        format!("/connectors/{n}/config"),
        format!("/connectors/{n}/tasks"),
        format!("/connectors/{n}/tasks/0/status"),
        "/connectors/rb-no-such-connector".to_string(),
        "/connectors/rb-no-such-connector/status".to_string(),
        format!("/connectors/{n}/tasks/7/status"),
    ];
    for path in &gets {
        // Lists include every connector the real worker has: compare only ours.
        let (mut r, mut f) = (real.get(path).await.unwrap(), fake.get(path).await.unwrap());
        if path.starts_with("/connectors?") {
            r.body = json!({ n: r.body[n].clone() });
            f.body = json!({ n: f.body[n].clone() });
        }
        if path == "/connectors" {
            r.body = json!([n]);
        }
        diff.compare(&format!("GET {path}"), &r, &f);
    }

    let posts = [
        format!("/connectors/{n}/restart"),
        format!("/connectors/{n}/restart?includeTasks=true&onlyFailed=true"),
        "/connectors/rb-no-such-connector/restart".to_string(),
        "/connectors/rb-no-such-connector/restart?includeTasks=true&onlyFailed=true".to_string(),
    ];
    for path in &posts {
        let r = real.call(Method::POST, path, None).await.unwrap();
        let f = fake.call(Method::POST, path, None).await.unwrap();
        diff.compare(&format!("POST {path}"), &r, &f);
        // Let the real worker settle (the restarted task fails again) before the next request.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    let info = real.get(&format!("/connectors/{n}")).await.unwrap();
    let create = json!({"name": n, "config": info.body["config"]});
    let (r, f) = (
        real.call(Method::POST, "/connectors", Some(&create))
            .await
            .unwrap(),
        fake.call(Method::POST, "/connectors", Some(&create))
            .await
            .unwrap(),
    );
    diff.compare("POST /connectors (existing)", &r, &f);

    for (method, path) in [
        (Method::PUT, format!("/connectors/{n}/pause")),
        (Method::GET, format!("/connectors/{n}/status")),
        (Method::PUT, format!("/connectors/{n}/resume")),
        (
            Method::PUT,
            "/connectors/rb-no-such-connector/pause".to_string(),
        ),
        (Method::DELETE, format!("/connectors/{n}")),
        (Method::DELETE, format!("/connectors/{n}")),
    ] {
        let r = real.call(method.clone(), &path, None).await.unwrap();
        let f = fake.call(method.clone(), &path, None).await.unwrap();
        diff.compare(&format!("{method} {path}"), &r, &f);
        if method == Method::PUT {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }

    assert_eq!(diff.compared, gets.len() + posts.len() + 1 + 6);
    for line in &diff.lines {
        println!("DIFF {line}");
    }
    assert!(
        diff.lines.is_empty(),
        "the fake differs from the real worker:\n{}",
        diff.lines.join("\n")
    );
}
