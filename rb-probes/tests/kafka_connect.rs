//! The Kafka Connect probe through reqwest against the fake worker.

#![cfg(feature = "kafka-connect")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_http;

use std::time::Duration;

use rb_core::{ErrorKind, Probe, Target};
use rb_probes::kafka_connect::{ConnectStatus, ConnectorsFact, TraceClass};
use rb_probes::transport::ReqwestClient;
use rb_testkit::http::kafka_connect::{ConnectorType, FakeKafkaConnect};
use support_http::{check_matrix, ctx, inject_and_observe, kind_of};

const ACL: &str = "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer send callback\n\tat org.apache.kafka.connect.runtime.WorkerSourceTask.maybeThrowProducerSendException(WorkerSourceTask.java:348)\nCaused by: org.apache.kafka.common.errors.TopicAuthorizationException: Not authorized to access topics: [orders]\n";
const DATA: &str = "org.apache.kafka.connect.errors.ConnectException: Tolerance exceeded in error handler\nCaused by: org.apache.kafka.common.errors.SerializationException: Unknown magic byte!\n";

fn target() -> Target {
    Target::new("kafka-connect", "connect-main")
}

fn client(c: &FakeKafkaConnect) -> ReqwestClient {
    ReqwestClient::new(c.base_url()).unwrap()
}

fn value(o: &rb_core::Observation, name: &str, connector: Option<&str>) -> Option<f64> {
    o.samples_named(name)
        .find(|s| {
            connector.is_none_or(|c| s.labels.get("connector").map(String::as_str) == Some(c))
        })
        .map(|s| s.value)
}

async fn lake() -> FakeKafkaConnect {
    let c = FakeKafkaConnect::start().await.unwrap();
    c.set_worker_count(2);
    c.add_connector("orders-cdc", ConnectorType::Source, 3)
        .unwrap();
    c.add_connector("payments-sink", ConnectorType::Sink, 2)
        .unwrap();
    c.add_connector("audit-sink", ConnectorType::Sink, 1)
        .unwrap();
    c.fail_task("orders-cdc", 1, ACL).unwrap();
    c.fail_task("orders-cdc", 2, DATA).unwrap();
    c.fail_connector("audit-sink", "org.apache.kafka.common.config.ConfigException: Missing required configuration \"file\" which has no default value.").unwrap();
    c
}

#[tokio::test]
async fn every_connector_with_tasks_states_workers_and_classified_traces() {
    let c = lake().await;
    let o = ConnectStatus::new(client(&c), target())
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(o.complete);
    assert_eq!(value(&o, "kafka_connect_connectors", None), Some(3.0));
    assert_eq!(value(&o, "kafka_connect_failed_tasks", None), Some(2.0));
    assert_eq!(
        value(&o, "kafka_connect_failed_connectors", None),
        Some(1.0)
    );
    assert_eq!(
        value(
            &o,
            "kafka_connect_connector_failed_task_count",
            Some("orders-cdc")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &o,
            "kafka_connect_connector_failed_task_count",
            Some("payments-sink")
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&o, "kafka_connect_connector_task_count", Some("orders-cdc")),
        Some(3.0)
    );
    let states: Vec<(String, String)> = o
        .samples_named("kafka_connect_connector_state")
        .map(|s| (s.labels["connector"].clone(), s.labels["state"].clone()))
        .collect();
    assert!(
        states.contains(&("audit-sink".into(), "FAILED".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("orders-cdc".into(), "RUNNING".into())),
        "{states:?}"
    );
    // the fake's own counts agree
    assert_eq!(c.failed_task_count(), 2);
    assert_eq!(c.connector_count(), 3);

    let f: ConnectorsFact = o.facts.get().unwrap().unwrap();
    let names: Vec<&str> = f.connectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["audit-sink", "orders-cdc", "payments-sink"]);
    let orders = f.connector("orders-cdc").unwrap();
    assert_eq!(orders.kind.as_deref(), Some("source"));
    assert_eq!(
        orders.class.as_deref(),
        Some("org.apache.kafka.connect.file.FileStreamSourceConnector")
    );
    assert_eq!(orders.tasks.len(), 3);
    let t1 = &orders.tasks[1];
    assert_eq!(t1.instance.state, "FAILED");
    assert_eq!(t1.instance.trace_class, Some(TraceClass::Authorization));
    assert!(t1
        .instance
        .trace
        .as_ref()
        .unwrap()
        .contains("TopicAuthorizationException"));
    assert_eq!(
        orders.tasks[2].instance.trace_class,
        Some(TraceClass::Other)
    );
    assert_eq!(orders.tasks[0].instance.trace, None);
    assert_eq!(orders.tasks[0].instance.trace_class, None);
    // two workers: instances spread over 127.0.0.1 and 127.0.0.2
    let workers: std::collections::BTreeSet<&str> = f
        .connectors
        .iter()
        .flat_map(|c| c.tasks.iter().map(|t| t.instance.worker_id.as_str()))
        .map(|w| w.split(':').next().unwrap())
        .collect();
    assert_eq!(
        workers.into_iter().collect::<Vec<_>>(),
        vec!["127.0.0.1", "127.0.0.2"]
    );
    let audit = f.connector("audit-sink").unwrap();
    assert_eq!(audit.instance.trace_class, Some(TraceClass::Configuration));
    assert_eq!(c.http().requests().matching("GET", "/connectors").len(), 1);
    assert_eq!(
        c.http().requests().all()[0].query.as_deref(),
        Some("expand=status&expand=info")
    );
}

#[tokio::test]
async fn one_connector_and_an_unknown_one() {
    let c = lake().await;
    let o = ConnectStatus::new(client(&c), target())
        .connector("orders-cdc")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&o, "kafka_connect_connectors", None), Some(1.0));
    assert_eq!(
        value(
            &o,
            "kafka_connect_connector_failed_task_count",
            Some("orders-cdc")
        ),
        Some(2.0)
    );
    let e = ConnectStatus::new(client(&c), target())
        .connector("no such/connector")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.message.contains("404"), "{e}");
    // the name was encoded as one path segment
    assert_eq!(
        c.http()
            .requests()
            .matching("GET", "/connectors/*/status")
            .len(),
        2
    );
}

#[tokio::test]
async fn traces_are_bounded_and_top_k_bounds_per_connector_samples() {
    let c = FakeKafkaConnect::start().await.unwrap();
    let long = format!(
        "org.apache.kafka.connect.errors.ConnectException: boom\n{}Caused by: org.apache.kafka.common.errors.TopicAuthorizationException: Not authorized to access topics: [t]\n",
        "\tat org.example.Frame.call(Frame.java:1)\n".repeat(500)
    );
    for i in 0..6 {
        c.add_connector(&format!("c{i}"), ConnectorType::Source, 2)
            .unwrap();
    }
    c.fail_task("c3", 0, &long).unwrap();
    c.fail_task("c3", 1, &long).unwrap();
    c.fail_task("c5", 0, &long).unwrap();
    let o = ConnectStatus::new(client(&c), target())
        .trace_limit(400)
        .top_k(2)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    let per: Vec<(String, f64)> = o
        .samples_named("kafka_connect_connector_failed_task_count")
        .map(|s| (s.labels["connector"].clone(), s.value))
        .collect();
    assert_eq!(per, vec![("c3".to_string(), 2.0), ("c5".to_string(), 1.0)]);
    assert_eq!(value(&o, "kafka_connect_connectors", None), Some(6.0));
    assert_eq!(value(&o, "kafka_connect_failed_tasks", None), Some(3.0));
    let f: ConnectorsFact = o.facts.get().unwrap().unwrap();
    assert_eq!(f.connectors.len(), 6, "the fact lists every connector");
    let t = f.connector("c3").unwrap().tasks[0].instance.clone();
    let trace = t.trace.unwrap();
    assert!(trace.chars().count() <= 400, "{}", trace.len());
    assert!(trace.contains("TopicAuthorizationException"), "{trace}");
    assert_eq!(t.trace_class, Some(TraceClass::Authorization));
}

#[tokio::test]
async fn fault_matrix() {
    check_matrix(
        "kafka_connect",
        &["all", "one"],
        &[("all", "rebalance_409"), ("one", "unknown_404")],
        |probe, fault| async move {
            let c = lake().await;
            let (pattern, p) = match probe.as_str() {
                "all" => ("/connectors", ConnectStatus::new(client(&c), target())),
                _ => (
                    "/connectors/*/status",
                    ConnectStatus::new(client(&c), target()).connector("orders-cdc"),
                ),
            };
            match fault.as_str() {
                "rebalance_409" => {
                    c.start_rebalance();
                    let r = p.observe(&ctx(Duration::from_secs(5))).await;
                    if let Err(e) = &r {
                        assert!(e.message.contains("stale configuration"), "{e}");
                    }
                    kind_of(&r)
                }
                "unknown_404" => {
                    let p = ConnectStatus::new(client(&c), target()).connector("nope");
                    kind_of(&p.observe(&ctx(Duration::from_secs(5))).await)
                }
                f => {
                    inject_and_observe(c.http(), "GET", pattern, f, |cx| async move {
                        p.observe(&cx).await
                    })
                    .await
                }
            }
        },
    )
    .await;
}
