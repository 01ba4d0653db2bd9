//! FakeLakehouse: everything starts and answers through the real client libraries (reqwest,
//! rdkafka, cdrs-tokio); every situation method observably changes the fake it targets, and every
//! heal method restores it. Tokio's clock is paused throughout.
#![cfg(all(feature = "http", feature = "kafka", feature = "cassandra"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cdrs_tokio::authenticators::NoneAuthenticatorProvider;
use cdrs_tokio::cluster::session::{Session, SessionBuilder, TcpSessionBuilder};
use cdrs_tokio::cluster::{NodeTcpConfigBuilder, TcpConnectionManager};
use cdrs_tokio::load_balancing::RoundRobinLoadBalancingStrategy;
use cdrs_tokio::transport::TransportTcp;
use cdrs_tokio::types::IntoRustByName;
use rb_testkit::http::kafka_connect::State;
use rb_testkit::lakehouse::{
    Database, FakeLakehouse, FlinkFailure, HttpSystem, BACKUP_BRANCH, BASELINE_LAG, CDC_CONNECTOR,
    DB_BASELINE_SESSIONS, FLINK_GROUP, ORDERS_PARTITIONS, ORDERS_TOPIC, QUIET_GROUP, QUIET_TOPIC,
    SINK_CONNECTOR,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::time::{sleep, timeout};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

type TcpSession = Session<
    TransportTcp,
    TcpConnectionManager,
    RoundRobinLoadBalancingStrategy<TransportTcp, TcpConnectionManager>,
>;

fn http() -> reqwest::Client {
    // no idle-pool timer: on a paused clock it would make time jump
    reqwest::Client::builder()
        .pool_idle_timeout(None)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c
        .get(url)
        .header("X-Trino-User", "rb")
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An instant PromQL query's single value.
async fn prom(lake: &FakeLakehouse, query: &str) -> f64 {
    let url = format!("{}/api/v1/query", lake.prometheus().base_url());
    let r = http()
        .get(url)
        .query(&[("query", query)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{query}: {v}");
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

fn consumer(lake: &FakeLakehouse, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", lake.kafka_bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Lag per partition read the way a lag probe reads it: watermarks minus committed offsets.
fn kafka_lag(c: &BaseConsumer, topic: &str, partitions: i32) -> Vec<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = c.committed_offsets(tpl, KAFKA_TIMEOUT).unwrap();
    (0..partitions)
        .map(|p| {
            let (_, high) = c.fetch_watermarks(topic, p, KAFKA_TIMEOUT).unwrap();
            let e = committed.find_partition(topic, p).unwrap();
            match e.offset() {
                Offset::Offset(o) => high - o,
                other => panic!("partition {p}: no committed offset ({other:?})"),
            }
        })
        .collect()
}

async fn cql_session(contact: SocketAddr) -> Result<TcpSession, String> {
    let config = NodeTcpConfigBuilder::new()
        .with_contact_point(contact.into())
        .with_authenticator_provider(Arc::new(NoneAuthenticatorProvider))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    TcpSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), config)
        .build()
        .await
        .map_err(|e| e.to_string())
}

async fn release_version(session: &TcpSession) -> String {
    let rows = session
        .query("SELECT release_version FROM system.local")
        .await
        .unwrap()
        .response_body()
        .unwrap()
        .into_rows()
        .unwrap();
    let v: String = rows[0].get_r_by_name("release_version").unwrap();
    v
}

async fn flink_status(lake: &FakeLakehouse) -> String {
    let url = format!(
        "{}/jobs/{}/status",
        lake.flink().base_url(),
        lake.flink_job_id()
    );
    let (s, v) = get(&http(), &url).await;
    assert_eq!(s, 200, "{v}");
    v["status"].as_str().unwrap().to_string()
}

async fn connector_status(lake: &FakeLakehouse, name: &str) -> Value {
    let url = format!("{}/connectors/{name}/status", lake.connect().base_url());
    let (s, v) = get(&http(), &url).await;
    assert_eq!(s, 200, "{v}");
    v
}

fn task_states(status: &Value) -> Vec<String> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn everything_starts_and_answers_through_the_real_clients() {
    let lake = FakeLakehouse::start().await.unwrap();

    // consistent names
    let names: Vec<String> = lake.targets().into_iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "kafka-main",
            "connect-main",
            "flink-main",
            "cassandra-main",
            "nessie-main",
            "minio-main",
            "trino-main",
            "prometheus-main",
            "loki-main",
            "postgres-main",
            "mysql-main"
        ]
    );
    assert_eq!(
        lake.target("connect-main").unwrap().labels["url"],
        lake.connect().base_url()
    );
    assert_eq!(
        lake.target("kafka-main").unwrap().labels["bootstrap"],
        lake.kafka_bootstrap()
    );

    // Kafka through rdkafka: the topic and the group's baseline lag
    let c = consumer(&lake, FLINK_GROUP);
    let md = c.fetch_metadata(Some(ORDERS_TOPIC), KAFKA_TIMEOUT).unwrap();
    assert_eq!(md.brokers().len(), 3);
    assert_eq!(
        md.topics()[0].partitions().len(),
        ORDERS_PARTITIONS as usize
    );
    assert_eq!(
        kafka_lag(&c, ORDERS_TOPIC, ORDERS_PARTITIONS),
        vec![BASELINE_LAG; ORDERS_PARTITIONS as usize]
    );

    // Cassandra through cdrs-tokio, every node
    for contact in lake.cassandra_contact_points() {
        let session = timeout(Duration::from_secs(10), cql_session(contact))
            .await
            .unwrap()
            .unwrap();
        assert!(!release_version(&session).await.is_empty());
    }
    assert_eq!(
        lake.cassandra().nodetool_status().matches("UN  ").count(),
        3
    );

    // every HTTP fake through reqwest
    let h = http();
    let (s, v) = get(
        &h,
        &format!("{}/connectors?expand=status", lake.connect().base_url()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        [CDC_CONNECTOR, SINK_CONNECTOR]
    );
    assert_eq!(flink_status(&lake).await, "RUNNING");
    let (s, v) = get(&h, &format!("{}/jobs/overview", lake.flink().base_url())).await;
    assert_eq!(s, 200);
    assert_eq!(v["jobs"][0]["name"], "orders-enrichment");
    let (s, v) = get(&h, &format!("{}/trees", lake.nessie().api_url())).await;
    assert_eq!(s, 200);
    let refs: Vec<&str> = v["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        refs.contains(&"main") && refs.contains(&BACKUP_BRANCH),
        "{v}"
    );
    assert!(lake.nessie().log("main").len() >= 3);
    let (s, _) = get(&h, &format!("{}/q/health", lake.nessie().management_url())).await;
    assert_eq!(s, 200);
    let (s, _) = get(
        &h,
        &format!("{}/minio/health/cluster", lake.minio().base_url()),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = get(&h, &format!("{}/v1/info", lake.trino().http().base_url())).await;
    assert_eq!(s, 200);
    assert_eq!(v["starting"], false);
    let (s, _) = get(&h, &format!("{}/-/ready", lake.prometheus().base_url())).await;
    assert_eq!(s, 200);
    let (s, _) = get(&h, &format!("{}/ready", lake.loki().http().base_url())).await;
    assert_eq!(s, 200);

    // the Prometheus series follow the fakes
    assert_eq!(
        prom(
            &lake,
            "kafka_consumer_fetch_manager_metrics_records_lag_max"
        )
        .await,
        BASELINE_LAG as f64
    );
    assert_eq!(
        prom(&lake, "sum(kafka_connect_connector_failed_task_count)").await,
        0.0
    );
    assert_eq!(
        prom(&lake, "kafka_connect_worker_connector_count").await,
        2.0
    );
    assert_eq!(prom(&lake, "trino_execution_queuedqueries").await, 0.0);
    assert_eq!(
        prom(&lake, "minio_cluster_capacity_usable_free_bytes").await,
        (1u64 << 39) as f64
    );
    assert_eq!(prom(&lake, "flink_jobmanager_job_numRestarts").await, 0.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn kafka_backlog_and_heal() {
    let lake = FakeLakehouse::start().await.unwrap();
    let c = consumer(&lake, FLINK_GROUP);
    lake.kafka_backlog(12_000).unwrap();
    assert_eq!(
        kafka_lag(&c, ORDERS_TOPIC, ORDERS_PARTITIONS),
        vec![12_000; ORDERS_PARTITIONS as usize]
    );
    assert_eq!(
        prom(
            &lake,
            "kafka_consumer_fetch_manager_metrics_records_lag_max"
        )
        .await,
        12_000.0
    );
    // the job's Kafka source reports the backlog (Flink fetches metrics every 10 s)
    let source = lake.flink().vertices(lake.flink_job_id()).unwrap()[0]
        .0
        .clone();
    let pending = format!(
        "{}/jobs/{}/vertices/{source}/subtasks/metrics?get=Source__orders.pendingRecords&agg=sum",
        lake.flink().base_url(),
        lake.flink_job_id()
    );
    sleep(Duration::from_secs(11)).await;
    let (_, m) = get(&http(), &pending).await;
    assert_eq!(m[0]["sum"], 72_000.0, "{m}");
    lake.heal_kafka_backlog().unwrap();
    sleep(Duration::from_secs(11)).await;
    let (_, m) = get(&http(), &pending).await;
    assert_eq!(m[0]["sum"], (BASELINE_LAG * 6) as f64, "{m}");
    assert_eq!(
        kafka_lag(&c, ORDERS_TOPIC, ORDERS_PARTITIONS),
        vec![BASELINE_LAG; ORDERS_PARTITIONS as usize]
    );
    assert_eq!(
        prom(
            &lake,
            "kafka_consumer_fetch_manager_metrics_records_lag_max"
        )
        .await,
        BASELINE_LAG as f64
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn kafka_decoys_a_short_spike_and_a_quiet_topic() {
    let lake = FakeLakehouse::start().await.unwrap();
    let c = consumer(&lake, FLINK_GROUP);
    lake.kafka_lag_spike(8_000, Duration::from_secs(30))
        .unwrap();
    assert_eq!(kafka_lag(&c, ORDERS_TOPIC, ORDERS_PARTITIONS)[0], 8_000);
    sleep(Duration::from_secs(20)).await;
    assert_eq!(kafka_lag(&c, ORDERS_TOPIC, ORDERS_PARTITIONS)[0], 8_000);
    sleep(Duration::from_secs(11)).await;
    assert_eq!(
        kafka_lag(&c, ORDERS_TOPIC, ORDERS_PARTITIONS),
        vec![BASELINE_LAG; ORDERS_PARTITIONS as usize]
    );

    lake.quiet_topic().unwrap();
    lake.quiet_topic().unwrap(); // idempotent
    let q = consumer(&lake, QUIET_GROUP);
    let md = q.fetch_metadata(Some(QUIET_TOPIC), KAFKA_TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 1);
    assert_eq!(kafka_lag(&q, QUIET_TOPIC, 1), vec![0]);
    sleep(Duration::from_secs(300)).await;
    let (_, high) = q.fetch_watermarks(QUIET_TOPIC, 0, KAFKA_TIMEOUT).unwrap();
    assert_eq!(high, 50, "no new messages");
    assert_eq!(kafka_lag(&q, QUIET_TOPIC, 1), vec![0]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn flink_schema_crash_loop_and_heal() {
    let lake = FakeLakehouse::start().await.unwrap();
    lake.flink_job_restarting(FlinkFailure::Schema).unwrap();
    assert_eq!(flink_status(&lake).await, "RESTARTING");
    sleep(Duration::from_secs(10)).await;
    assert!(prom(&lake, "flink_jobmanager_job_numRestarts").await >= 2.0);
    let url = format!(
        "{}/jobs/{}/exceptions",
        lake.flink().base_url(),
        lake.flink_job_id()
    );
    let (_, e) = get(&http(), &url).await;
    assert!(e.to_string().contains("SchemaChangeException"), "{e}");
    // the JobManager's log in Loki
    let url = format!("{}/loki/api/v1/query_range", lake.loki().http().base_url());
    let r: Value = http()
        .get(url)
        .query(&[("query", r#"{container="flink-jobmanager"}"#)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.to_string().contains("SchemaChangeException"), "{r}");

    lake.heal_flink().unwrap();
    sleep(Duration::from_secs(10)).await;
    let restarts = lake.flink().num_restarts(lake.flink_job_id()).unwrap();
    sleep(Duration::from_secs(10)).await;
    assert_eq!(flink_status(&lake).await, "RUNNING");
    assert_eq!(
        lake.flink().num_restarts(lake.flink_job_id()).unwrap(),
        restarts
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn flink_lost_taskmanager_and_heal() {
    let lake = FakeLakehouse::start().await.unwrap();
    lake.flink_job_restarting(FlinkFailure::LostTaskManager)
        .unwrap();
    assert_eq!(flink_status(&lake).await, "RESTARTING");
    sleep(Duration::from_secs(5)).await;
    assert_eq!(flink_status(&lake).await, "CREATED", "no slots left");
    lake.heal_flink().unwrap();
    sleep(Duration::from_secs(5)).await;
    assert_eq!(flink_status(&lake).await, "RUNNING");
    assert_eq!(lake.flink().taskmanager_ids().len(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cassandra_node_down_refuses_and_heals() {
    let lake = FakeLakehouse::start().await.unwrap();
    let contacts = lake.cassandra_contact_points();
    lake.cassandra_node_down(2).unwrap();
    assert!(lake.cassandra().nodetool_status().contains("DN  127.0.0.3"));
    // cdrs-tokio retries a refused contact point on its reconnection back-off (tokio timers): the
    // session never builds; on the paused clock the caller's deadline passes instead.
    match timeout(Duration::from_secs(10), cql_session(contacts[2])).await {
        Err(_deadline) => {}
        Ok(session) => assert!(session.is_err(), "the downed node must refuse"),
    }
    assert!(tokio::net::TcpStream::connect(contacts[2]).await.is_err());
    // the others still answer
    let up = timeout(Duration::from_secs(10), cql_session(contacts[0]))
        .await
        .unwrap()
        .unwrap();
    assert!(!release_version(&up).await.is_empty());

    lake.heal_cassandra().await.unwrap();
    assert_eq!(
        lake.cassandra().nodetool_status().matches("UN  ").count(),
        3
    );
    let back = timeout(Duration::from_secs(10), cql_session(contacts[2]))
        .await
        .unwrap()
        .unwrap();
    assert!(!release_version(&back).await.is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn nessie_conflict_and_heal() {
    let lake = FakeLakehouse::start().await.unwrap();
    let h = http();
    let api = lake.nessie().api_url();
    let (before, backup, main) = lake.nessie_commit_conflict().unwrap();

    // the runbook's merge from backup conflicts on the table
    let merge = |main: String, backup: String| {
        h.post(format!("{api}/trees/main@{main}/history/merge"))
            .header("Nessie-Client-Spec", "2")
            .json(&json!({"fromRefName": BACKUP_BRANCH, "fromHash": backup}))
            .send()
    };
    let r = merge(main.clone(), backup).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "REFERENCE_CONFLICT", "{body}");

    // a sink committing the table on the hash it read before gets 409 too
    let (_, content) = get(
        &h,
        &format!("{api}/trees/main@{before}/contents/lake.orders"),
    )
    .await;
    let mut table = content["content"].clone();
    table["snapshotId"] = json!(999);
    let r = h
        .post(format!("{api}/trees/main@{before}/history/commit"))
        .json(&json!({"commitMeta": {"message": "paimon commit"}, "operations": [{"type": "PUT", "key": {"elements": ["lake", "orders"]}, "content": table}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    lake.heal_nessie().unwrap();
    let backup = lake.nessie().head(BACKUP_BRANCH).unwrap();
    let main_now = lake.nessie().head("main").unwrap();
    assert_eq!(backup, main_now);
    let r = merge(main_now.clone(), backup).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // a writer that re-reads main commits again
    let (_, content) = get(&h, &format!("{api}/trees/main/contents/lake.orders")).await;
    let mut table = content["content"].clone();
    table["snapshotId"] = json!(1000);
    let r = h
        .post(format!("{api}/trees/main@{main_now}/history/commit"))
        .json(&json!({"commitMeta": {"message": "paimon commit"}, "operations": [{"type": "PUT", "key": {"elements": ["lake", "orders"]}, "content": table}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // the MinIO side of the situation
    lake.minio_low_on_space(1 << 30);
    assert_eq!(
        prom(&lake, "minio_cluster_capacity_usable_free_bytes").await,
        (1u64 << 30) as f64
    );
    lake.heal_minio();
    assert_eq!(
        prom(&lake, "minio_cluster_capacity_usable_free_bytes").await,
        (1u64 << 39) as f64
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn connector_failed_and_heal_and_the_paused_decoy() {
    let lake = FakeLakehouse::start().await.unwrap();
    let trace = "org.apache.kafka.connect.errors.ConnectException: Debezium lost its binlog position\n\tat io.debezium";
    lake.connector_failed(CDC_CONNECTOR, trace).unwrap();
    let s = connector_status(&lake, CDC_CONNECTOR).await;
    assert_eq!(task_states(&s), ["FAILED", "FAILED"]);
    assert!(s["tasks"][0]["trace"]
        .as_str()
        .unwrap()
        .contains("binlog position"));
    assert_eq!(
        prom(
            &lake,
            r#"kafka_connect_connector_failed_task_count{connector="orders-cdc"}"#
        )
        .await,
        2.0
    );
    assert!(lake.connector_failed("nope", trace).is_err());
    // the worker's log carries the trace (visible once time moves: `end` is exclusive, as in Loki)
    sleep(Duration::from_secs(1)).await;
    let url = format!("{}/loki/api/v1/query_range", lake.loki().http().base_url());
    let r: Value = http()
        .get(url)
        .query(&[("query", r#"{container="connect"}"#)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logs = r.to_string();
    assert!(
        logs.contains("WorkerSourceTask{id=orders-cdc-1}") && logs.contains("binlog position"),
        "{r}"
    );

    lake.heal_connector(CDC_CONNECTOR).unwrap();
    let s = connector_status(&lake, CDC_CONNECTOR).await;
    assert_eq!(task_states(&s), ["RUNNING", "RUNNING"]);
    assert_eq!(
        prom(&lake, "sum(kafka_connect_connector_failed_task_count)").await,
        0.0
    );
    assert!(
        lake.connect().http().requests().mutating().is_empty(),
        "the heal makes no request the code under test would be blamed for"
    );

    // decoy: paused on purpose — PAUSED, nothing FAILED
    lake.pause_connector(SINK_CONNECTOR).unwrap();
    let s = connector_status(&lake, SINK_CONNECTOR).await;
    assert_eq!(s["connector"]["state"], "PAUSED");
    assert_eq!(task_states(&s), ["PAUSED"]);
    assert_eq!(lake.connect().failed_task_count(), 0);
    lake.resume_connector(SINK_CONNECTOR).unwrap();
    assert_eq!(
        lake.connect().task_state(SINK_CONNECTOR, 0),
        Some(State::Running)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn trino_backlog_and_heal() {
    let lake = FakeLakehouse::start().await.unwrap();
    let heavy = lake.trino_backlog(7);
    let base = lake.trino().http().base_url();
    let (s, v) = get(&http(), &format!("{base}/v1/query?state=QUEUED")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 7);
    let (_, v) = get(&http(), &format!("{base}/v1/query/{heavy}")).await;
    assert_eq!(v["state"], "RUNNING");
    assert_eq!(prom(&lake, "trino_execution_queuedqueries").await, 7.0);

    lake.heal_trino();
    let (_, v) = get(&http(), &format!("{base}/v1/query?state=QUEUED")).await;
    assert_eq!(v.as_array().unwrap().len(), 0);
    let (_, v) = get(&http(), &format!("{base}/v1/query/{heavy}")).await;
    assert_eq!(v["state"], "FINISHED");
    assert_eq!(prom(&lake, "trino_execution_queuedqueries").await, 0.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn db_saturation_and_probe_timeout_decoy() {
    let lake = FakeLakehouse::start().await.unwrap();
    assert_eq!(
        prom(&lake, r#"pg_stat_database_numbackends{datname="lake"}"#).await,
        DB_BASELINE_SESSIONS as f64
    );
    lake.db_saturation(Database::Postgres, 95.0).unwrap();
    assert_eq!(
        prom(&lake, r#"pg_stat_database_numbackends{datname="lake"}"#).await,
        95.0
    );
    assert_eq!(prom(&lake, "pg_settings_max_connections").await, 100.0);
    let idle_tx = lake
        .postgres()
        .sessions()
        .iter()
        .filter(|s| s.state.as_deref() == Some("idle in transaction"))
        .count();
    assert_eq!(
        idle_tx, 29,
        "a third of the 85 added sessions leak a transaction"
    );
    assert!(lake.db_saturation(Database::Postgres, 120.0).is_err());

    lake.db_saturation(Database::Mysql, 95.0).unwrap();
    assert_eq!(
        prom(&lake, "mysql_global_status_threads_connected").await,
        143.0,
        "95 % of 151"
    );
    assert_eq!(lake.db_client_sessions(Database::Mysql), 143);

    lake.heal_db_saturation(Database::Postgres).unwrap();
    lake.heal_db_saturation(Database::Mysql).unwrap();
    assert_eq!(
        prom(&lake, r#"pg_stat_database_numbackends{datname="lake"}"#).await,
        DB_BASELINE_SESSIONS as f64
    );
    assert_eq!(
        prom(&lake, "mysql_global_status_threads_connected").await,
        DB_BASELINE_SESSIONS as f64
    );

    // decoy: one request hangs until the client's deadline, the next is answered
    lake.probe_timeout_once(HttpSystem::Minio);
    let url = format!("{}/minio/health/live", lake.minio().base_url());
    let c = http();
    let first = c.get(&url).timeout(Duration::from_secs(2)).send().await;
    assert!(first.unwrap_err().is_timeout());
    let second = c.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 200);
}
