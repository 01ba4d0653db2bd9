//! The fake Kafka Connect worker through a real HTTP client: every endpoint rb uses with its
//! status codes and bodies, the documented restart semantics, pause/resume/stop, rebalance 409s,
//! faults, the request record, and the shape of the answers against `fixtures/kafka-connect/`.

// Helpers shared by the tests below may unwrap and panic like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rb_testkit::http::kafka_connect::{ConnectorType, FakeKafkaConnect, State};
use rb_testkit::http::Fault;
use rb_testkit::shape::ShapeRules;
use reqwest::{Client, Method};
use serde_json::{json, Value};

const TRACE: &str = "org.apache.kafka.connect.errors.ConnectException: boom\n\tat org.example.Task.poll(Task.java:42)";

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/kafka-connect/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Fields whose object value is a map with data keys (compared as `*`).
const MAP_FIELDS: &[&str] = &["config"];

/// Every path of the reference must be in the fake, its JSON types among the fake's; a path only in the
/// fake is allowed when one of its segments is listed in `extra`.
fn shape_diff(reference: &Value, fake: &Value, extra: &[&str]) -> Vec<String> {
    ShapeRules::new()
        .names("reference", "fake")
        .subset()
        .map_fields(MAP_FIELDS)
        .allow_extra(extra)
        .diff(reference, fake)
}

#[track_caller]
fn assert_shape(what: &str, reference: &Value, fake: &Value, extra: &[&str]) {
    let d = shape_diff(reference, fake, extra);
    assert!(
        d.is_empty(),
        "{what}: shape differs from the reference\n{}\nfake: {fake:#}",
        d.join("\n")
    );
}

struct Rest {
    http: Client,
    base: String,
}

impl Rest {
    fn new(connect: &FakeKafkaConnect) -> Self {
        Self {
            http: Client::new(),
            base: connect.base_url(),
        }
    }

    /// Status code, body text (may be empty) and body JSON (`Null` when empty / not JSON).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, String, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, text, json)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, v) = self.call(Method::GET, path, None).await;
        (s, v)
    }
}

#[track_caller]
fn assert_error(resp: &(u16, Value), status: u16, message: &str) {
    assert_eq!(resp.0, status, "{:#}", resp.1);
    assert_eq!(resp.1, json!({"error_code": status, "message": message}));
}

fn states(status: &Value) -> Vec<String> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// read endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn root_and_health() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    let rest = Rest::new(&connect);
    let (s, root) = rest.get("/").await;
    assert_eq!(s, 200);
    assert_eq!(root["version"], "4.1.1");
    assert_shape("GET /", &fixture("root_serverinfo.json"), &root, &[]);
    connect.set_version("4.1.1");
    assert_eq!(rest.get("/").await.1["version"], "4.1.1");
    connect.set_version("3.9.0");
    assert_eq!(rest.get("/").await.1["version"], "3.9.0");
    let (s, health) = rest.get("/health").await;
    assert_eq!(s, 200);
    assert_eq!(health, fixture("health_200.json"));
}

#[tokio::test]
async fn list_and_expand() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("file-source", ConnectorType::Source, 1)
        .unwrap();
    connect
        .add_connector("jdbc-sink", ConnectorType::Sink, 2)
        .unwrap();
    connect.fail_task("file-source", 0, TRACE).unwrap();
    let rest = Rest::new(&connect);

    let (s, names) = rest.get("/connectors").await;
    assert_eq!(s, 200);
    assert_eq!(names, json!(["file-source", "jdbc-sink"]));

    let (s, expanded) = rest.get("/connectors?expand=status").await;
    assert_eq!(s, 200);
    assert_shape(
        "GET /connectors?expand=status",
        &fixture("list_expand_status.json"),
        &expanded,
        // the derived reference predates the 4.1 plugin `version`
        &["jdbc-sink", "version"],
    );
    assert_eq!(expanded["jdbc-sink"]["status"]["type"], "sink");
    assert_eq!(
        expanded["file-source"]["status"]["tasks"][0]["trace"],
        TRACE
    );
    assert!(expanded["file-source"].get("info").is_none());

    let (_, info) = rest.get("/connectors?expand=info").await;
    let i = &info["jdbc-sink"]["info"];
    assert_eq!(i["name"], "jdbc-sink");
    assert_eq!(i["type"], "sink");
    assert_eq!(
        i["tasks"],
        json!([{"connector": "jdbc-sink", "task": 0}, {"connector": "jdbc-sink", "task": 1}])
    );
    assert!(info["jdbc-sink"].get("status").is_none());

    let (_, both) = rest.get("/connectors?expand=status&expand=info").await;
    let keys: Vec<&String> = both["file-source"].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["info", "status"]);

    // unknown expansions are ignored, but the answer is still the map form
    let (_, unknown) = rest.get("/connectors?expand=nothing").await;
    assert_eq!(unknown, json!({"file-source": {}, "jdbc-sink": {}}));
}

#[tokio::test]
async fn connector_info_config_tasks_and_status() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("file-source", ConnectorType::Source, 2)
        .unwrap();
    connect.fail_task("file-source", 1, TRACE).unwrap();
    let rest = Rest::new(&connect);

    let (s, info) = rest.get("/connectors/file-source").await;
    assert_eq!(s, 200);
    assert_eq!(info["name"], "file-source");
    assert_eq!(info["type"], "source");
    assert_eq!(info["config"]["name"], "file-source");
    assert_eq!(
        info["config"]["connector.class"],
        "org.apache.kafka.connect.file.FileStreamSourceConnector"
    );
    assert_eq!(info["config"]["tasks.max"], "2");
    assert_eq!(
        info["tasks"],
        json!([{"connector": "file-source", "task": 0}, {"connector": "file-source", "task": 1}])
    );

    let (s, config) = rest.get("/connectors/file-source/config").await;
    assert_eq!(s, 200);
    assert_eq!(config, info["config"]);

    let (s, tasks) = rest.get("/connectors/file-source/tasks").await;
    assert_eq!(s, 200);
    assert_eq!(
        tasks[1]["id"],
        json!({"connector": "file-source", "task": 1})
    );
    assert_eq!(
        tasks[1]["config"]["task.class"],
        "org.apache.kafka.connect.file.FileStreamSourceTask"
    );

    let (s, status) = rest.get("/connectors/file-source/status").await;
    assert_eq!(s, 200);
    assert_shape(
        "GET /connectors/{n}/status",
        &fixture("status_docs_example.json"),
        &status,
        &["type", "trace", "version"],
    );
    assert_eq!(status["connector"]["state"], "RUNNING");
    assert_eq!(
        status["connector"]["worker_id"],
        connect.http().addr().to_string()
    );
    assert!(
        status["connector"].get("trace").is_none(),
        "trace is omitted when empty"
    );
    assert_eq!(states(&status), ["RUNNING", "FAILED"]);
    assert_eq!(status["tasks"][1]["trace"], TRACE);
    assert_eq!(status["type"], "source");

    let (s, task) = rest.get("/connectors/file-source/tasks/1/status").await;
    assert_eq!(s, 200);
    assert_eq!(task["id"], 1);
    assert_eq!(task["state"], "FAILED");
    assert_eq!(task["trace"], TRACE);
    assert!(task["worker_id"].is_string());

    // unknown connector / task
    let r = rest.get("/connectors/nope").await;
    assert_error(&r, 404, "Connector nope not found");
    assert_shape("404", &fixture("error_404.json"), &r.1, &[]);
    assert_error(
        &rest.get("/connectors/nope/config").await,
        404,
        "Connector nope not found",
    );
    assert_error(
        &rest.get("/connectors/nope/tasks").await,
        404,
        "Connector nope not found",
    );
    assert_error(
        &rest.get("/connectors/nope/status").await,
        404,
        "No status found for connector nope",
    );
    assert_error(
        &rest.get("/connectors/file-source/tasks/7/status").await,
        404,
        "No status found for task file-source-7",
    );
    assert_error(
        &rest.get("/connectors/file-source/tasks/x/status").await,
        404,
        "HTTP 404 Not Found",
    );
    assert_error(&rest.get("/no/such/path").await, 404, "HTTP 404 Not Found");
    let (s, _, body) = rest
        .call(Method::DELETE, "/connectors/file-source/status", None)
        .await;
    assert_error(&(s, body), 405, "HTTP 405 Method Not Allowed");
}

// ---------------------------------------------------------------------------------------------
// create, update, delete
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_update_delete() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    let rest = Rest::new(&connect);
    let body = json!({
        "name": "orders-sink",
        "config": {"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector", "tasks.max": 3, "topics": "orders"}
    });
    let r = rest
        .http
        .post(format!("{}/connectors", rest.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(location.ends_with("/connectors/orders-sink"), "{location}");
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["type"], "sink");
    assert_eq!(info["config"]["tasks.max"], "3");
    assert_eq!(info["config"]["name"], "orders-sink");
    assert_eq!(info["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(connect.connector_count(), 1);
    assert_eq!(connect.running_task_count(), 3);

    // duplicate, missing class, name mismatch, bad tasks.max, bad JSON
    let (s, _, e) = rest
        .call(Method::POST, "/connectors", Some(body.clone()))
        .await;
    assert_error(&(s, e), 409, "Connector orders-sink already exists");
    let (s, _, e) = rest
        .call(
            Method::POST,
            "/connectors",
            Some(json!({"name": "x", "config": {"tasks.max": "1"}})),
        )
        .await;
    assert_error(
        &(s, e),
        400,
        "Connector config {name=x, tasks.max=1} contains no connector type",
    );
    let (s, _, e) = rest
        .call(
            Method::PUT,
            "/connectors/orders-sink/config",
            Some(json!({"connector.class": "A", "name": "other"})),
        )
        .await;
    assert_error(&(s, e), 400, "Connector name configuration (other) doesn't match connector name in the URL (orders-sink)");
    let (s, _, e) = rest
        .call(
            Method::PUT,
            "/connectors/orders-sink/config",
            Some(json!({"connector.class": "A", "tasks.max": "many"})),
        )
        .await;
    assert_error(
        &(s, e),
        400,
        "Invalid value many for configuration tasks.max: Not a number of type INT",
    );
    let r = rest
        .http
        .post(format!("{}/connectors", rest.base))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // update: 200, new task count, failed task replaced
    connect.fail_task("orders-sink", 0, TRACE).unwrap();
    let (s, _, info) = rest
        .call(
            Method::PUT,
            "/connectors/orders-sink/config",
            Some(json!({"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector", "tasks.max": "1", "topics": "orders"})),
        )
        .await;
    assert_eq!(s, 200, "{info:#}");
    assert_eq!(info["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(connect.failed_task_count(), 0);

    // PUT config of a new name creates it: 201
    let (s, _, info) = rest
        .call(
            Method::PUT,
            "/connectors/cdc/config",
            Some(json!({"connector.class": "io.debezium.connector.mysql.MySqlConnector"})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(info["type"], "source");

    // initial_state
    let (s, _, _) = rest
        .call(
            Method::POST,
            "/connectors",
            Some(json!({"name": "paused", "config": {"connector.class": "A"}, "initial_state": "PAUSED"})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(connect.connector_state("paused"), Some(State::Paused));
    assert_eq!(connect.task_state("paused", 0), Some(State::Paused));

    // delete
    let (s, text, _) = rest.call(Method::DELETE, "/connectors/cdc", None).await;
    assert_eq!((s, text.as_str()), (204, ""));
    assert_error(
        &rest.get("/connectors/cdc").await,
        404,
        "Connector cdc not found",
    );
    let (s, _, e) = rest.call(Method::DELETE, "/connectors/cdc", None).await;
    assert_error(&(s, e), 404, "Connector cdc not found");
    assert_eq!(connect.connector_names(), ["orders-sink", "paused"]);
}

// ---------------------------------------------------------------------------------------------
// restart semantics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn restart_without_parameters_is_204_and_leaves_failed_tasks_failed() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("file-source", ConnectorType::Source, 2)
        .unwrap();
    connect.fail_task("file-source", 1, TRACE).unwrap();
    let rest = Rest::new(&connect);
    let (s, text, _) = rest
        .call(Method::POST, "/connectors/file-source/restart", None)
        .await;
    assert_eq!((s, text.as_str()), (204, ""));
    let (_, status) = rest.get("/connectors/file-source/status").await;
    assert_eq!(status["connector"]["state"], "RUNNING");
    assert_eq!(states(&status), ["RUNNING", "FAILED"]);
    assert_eq!(status["tasks"][1]["trace"], TRACE);
    assert_eq!(connect.connector_restart_count("file-source"), Some(1));
    assert_eq!(connect.task_restart_count("file-source", 1), Some(0));
    assert_eq!(connect.failed_task_count(), 1);

    // both parameters false: the same legacy behaviour
    let (s, _, _) = rest
        .call(
            Method::POST,
            "/connectors/file-source/restart?includeTasks=false&onlyFailed=false",
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(connect.failed_task_count(), 1);

    // a FAILED connector object is restarted by the legacy call
    connect.fail_connector("file-source", TRACE).unwrap();
    assert_eq!(
        rest.get("/connectors/file-source/status").await.1["connector"]["trace"],
        TRACE
    );
    rest.call(Method::POST, "/connectors/file-source/restart", None)
        .await;
    assert_eq!(connect.connector_state("file-source"), Some(State::Running));
    assert_eq!(connect.task_state("file-source", 1), Some(State::Failed));

    let (s, _, e) = rest
        .call(Method::POST, "/connectors/nope/restart", None)
        .await;
    assert_error(&(s, e), 404, "Unknown connector: nope");
}

#[tokio::test]
async fn restart_include_tasks_only_failed_is_202_and_restarts_only_failed_tasks() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("file-source", ConnectorType::Source, 3)
        .unwrap();
    connect.fail_task("file-source", 1, TRACE).unwrap();
    let rest = Rest::new(&connect);
    let (s, _, body) = rest
        .call(
            Method::POST,
            "/connectors/file-source/restart?includeTasks=true&onlyFailed=true",
            None,
        )
        .await;
    assert_eq!(s, 202);
    assert_shape(
        "restart 202",
        &fixture("restart_includeTasks_onlyFailed_202.json"),
        &body,
        &["trace", "version"],
    );
    assert_eq!(
        body["connector"]["state"], "RUNNING",
        "the connector was not failed: not restarted"
    );
    assert_eq!(states(&body), ["RUNNING", "RESTARTING", "RUNNING"]);
    assert_eq!(
        body["tasks"][1]["trace"], TRACE,
        "RESTARTING keeps the last trace"
    );

    let (_, status) = rest.get("/connectors/file-source/status").await;
    assert_eq!(states(&status), ["RUNNING", "RUNNING", "RUNNING"]);
    assert!(status["tasks"][1].get("trace").is_none());
    assert_eq!(connect.task_restart_count("file-source", 1), Some(1));
    assert_eq!(connect.task_restart_count("file-source", 0), Some(0));
    assert_eq!(connect.connector_restart_count("file-source"), Some(0));
    assert_eq!(connect.failed_task_count(), 0);
}

#[tokio::test]
async fn restart_include_tasks_restarts_everything_and_only_failed_alone_the_failed_connector() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("a", ConnectorType::Source, 2)
        .unwrap();
    let rest = Rest::new(&connect);
    let (s, _, body) = rest
        .call(
            Method::POST,
            "/connectors/a/restart?includeTasks=true",
            None,
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(body["connector"]["state"], "RESTARTING");
    assert_eq!(states(&body), ["RESTARTING", "RESTARTING"]);
    assert_eq!(connect.connector_state("a"), Some(State::Running));

    connect.fail_connector("a", TRACE).unwrap();
    connect.fail_task("a", 0, TRACE).unwrap();
    let (s, _, body) = rest
        .call(Method::POST, "/connectors/a/restart?onlyFailed=true", None)
        .await;
    assert_eq!(s, 202);
    assert_eq!(body["connector"]["state"], "RESTARTING");
    assert_eq!(states(&body), ["FAILED", "RUNNING"], "tasks not included");
    assert_eq!(connect.connector_state("a"), Some(State::Running));
    assert_eq!(connect.task_state("a", 0), Some(State::Failed));
}

#[tokio::test]
async fn restarting_lasts_for_the_restart_delay() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("a", ConnectorType::Source, 1)
        .unwrap();
    connect.fail_task("a", 0, TRACE).unwrap();
    connect.set_restart_delay(Duration::from_millis(300));
    let rest = Rest::new(&connect);
    let (s, _, _) = rest
        .call(
            Method::POST,
            "/connectors/a/restart?includeTasks=true&onlyFailed=true",
            None,
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(
        states(&rest.get("/connectors/a/status").await.1),
        ["RESTARTING"]
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        states(&rest.get("/connectors/a/status").await.1),
        ["RUNNING"]
    );

    // the legacy task restart shows UNASSIGNED meanwhile
    connect.fail_task("a", 0, TRACE).unwrap();
    let (s, _, _) = rest
        .call(Method::POST, "/connectors/a/tasks/0/restart", None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        rest.get("/connectors/a/tasks/0/status").await.1["state"],
        "UNASSIGNED"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        rest.get("/connectors/a/tasks/0/status").await.1["state"],
        "RUNNING"
    );
}

#[tokio::test]
async fn a_task_that_keeps_failing_after_restarts() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect.add_connector("a", ConnectorType::Sink, 2).unwrap();
    connect.fail_task_repeatedly("a", 1, TRACE, 2).unwrap();
    let rest = Rest::new(&connect);
    for attempt in 1..=2 {
        let (s, text, _) = rest
            .call(Method::POST, "/connectors/a/tasks/1/restart", None)
            .await;
        assert_eq!((s, text.as_str()), (204, ""));
        let (_, task) = rest.get("/connectors/a/tasks/1/status").await;
        assert_eq!(task["state"], "FAILED", "attempt {attempt}");
        assert_eq!(task["trace"], TRACE);
    }
    rest.call(
        Method::POST,
        "/connectors/a/restart?includeTasks=true&onlyFailed=true",
        None,
    )
    .await;
    assert_eq!(connect.task_state("a", 1), Some(State::Running));
    assert_eq!(connect.task_restart_count("a", 1), Some(3));
    assert_eq!(connect.task_restart_count("a", 0), Some(0));

    let (s, _, e) = rest
        .call(Method::POST, "/connectors/a/tasks/9/restart", None)
        .await;
    assert_error(&(s, e), 404, "Unknown task: a-9");
    let (s, _, e) = rest
        .call(Method::POST, "/connectors/nope/tasks/0/restart", None)
        .await;
    assert_error(&(s, e), 404, "Unknown connector: nope");
}

// ---------------------------------------------------------------------------------------------
// pause, resume, stop
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pause_resume_stop() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("a", ConnectorType::Source, 2)
        .unwrap();
    connect.fail_task("a", 1, TRACE).unwrap();
    let rest = Rest::new(&connect);

    let (s, text, _) = rest.call(Method::PUT, "/connectors/a/pause", None).await;
    assert_eq!((s, text.as_str()), (202, ""));
    let (_, status) = rest.get("/connectors/a/status").await;
    assert_eq!(status["connector"]["state"], "PAUSED");
    assert_eq!(
        states(&status),
        ["PAUSED", "FAILED"],
        "a failed task stays failed"
    );
    // idempotent
    assert_eq!(
        rest.call(Method::PUT, "/connectors/a/pause", None).await.0,
        202
    );

    let (s, _, _) = rest.call(Method::PUT, "/connectors/a/resume", None).await;
    assert_eq!(s, 202);
    let (_, status) = rest.get("/connectors/a/status").await;
    assert_eq!(status["connector"]["state"], "RUNNING");
    assert_eq!(states(&status), ["RUNNING", "FAILED"]);

    let (s, text, _) = rest.call(Method::PUT, "/connectors/a/stop", None).await;
    assert_eq!((s, text.as_str()), (204, ""));
    let (_, status) = rest.get("/connectors/a/status").await;
    assert_eq!(status["connector"]["state"], "STOPPED");
    assert_eq!(status["tasks"], json!([]));
    assert_eq!(rest.get("/connectors/a").await.1["tasks"], json!([]));

    rest.call(Method::PUT, "/connectors/a/resume", None).await;
    let (_, status) = rest.get("/connectors/a/status").await;
    assert_eq!(status["connector"]["state"], "RUNNING");
    assert_eq!(states(&status), ["RUNNING", "RUNNING"]);

    for op in ["pause", "resume"] {
        let (s, _, e) = rest
            .call(Method::PUT, &format!("/connectors/nope/{op}"), None)
            .await;
        assert_error(&(s, e), 404, "Unknown connector nope");
    }
    let (s, _, _) = rest.call(Method::PUT, "/connectors/nope/stop", None).await;
    assert_eq!(s, 404);
}

// ---------------------------------------------------------------------------------------------
// rebalance, workers, faults, request record
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_during_a_rebalance_get_409() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("a", ConnectorType::Source, 1)
        .unwrap();
    connect.fail_task("a", 0, TRACE).unwrap();
    let rest = Rest::new(&connect);
    connect.start_rebalance();
    let (s, _, e) = rest
        .call(
            Method::POST,
            "/connectors/a/restart?includeTasks=true&onlyFailed=true",
            None,
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(e, fixture("error_409_rebalance.json"));
    // the same answer a real worker gave while it rebalanced after a config change (recorded when
    // the peer tier's restart raced the rebalance; the fixture is kept)
    assert_eq!(e, real("restart_during_rebalance_409"));
    assert_eq!(rest.get("/connectors").await.0, 409);
    assert_eq!(rest.get("/connectors/a").await.0, 409);
    assert_eq!(
        rest.call(Method::PUT, "/connectors/a/pause", None).await.0,
        409
    );
    // status reads come from the status topic and keep working
    assert_eq!(rest.get("/connectors/a/status").await.0, 200);
    assert_eq!(rest.get("/connectors/a/tasks/0/status").await.0, 200);
    assert_eq!(rest.get("/").await.0, 200);
    assert_eq!(connect.task_state("a", 0), Some(State::Failed));

    connect.end_rebalance();
    let (s, _, _) = rest
        .call(
            Method::POST,
            "/connectors/a/restart?includeTasks=true&onlyFailed=true",
            None,
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(connect.task_state("a", 0), Some(State::Running));
}

#[tokio::test]
async fn workers_and_metric_like_getters() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    assert_eq!(connect.worker_count(), 1);
    connect.set_worker_count(3);
    assert_eq!(connect.worker_count(), 3);
    connect
        .add_connector("a", ConnectorType::Source, 3)
        .unwrap();
    connect.add_connector("b", ConnectorType::Sink, 1).unwrap();
    connect.fail_task("a", 2, TRACE).unwrap();
    assert_eq!(connect.connector_count(), 2);
    assert_eq!(connect.failed_task_count(), 1);
    assert_eq!(connect.connector_failed_task_count("a"), 1);
    assert_eq!(connect.connector_failed_task_count("b"), 0);
    assert_eq!(connect.running_task_count(), 3);
    let rest = Rest::new(&connect);
    let (_, status) = rest.get("/connectors/a/status").await;
    let workers: BTreeSet<&str> = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["worker_id"].as_str().unwrap())
        .collect();
    assert_eq!(workers.len(), 3, "{status:#}");
    assert!(workers.iter().all(|w| w.starts_with("127.0.0.")));
    assert!(connect
        .add_connector("a", ConnectorType::Source, 1)
        .is_err());
    assert!(connect.fail_task("a", 9, TRACE).is_err());
    assert!(connect.fail_connector("zzz", TRACE).is_err());
}

#[tokio::test]
async fn each_fault_kind_reaches_the_client() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("a", ConnectorType::Source, 1)
        .unwrap();
    let url = format!("{}/connectors/a/status", connect.base_url());
    let http = Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let faults = connect.http().faults();
    let pattern = "/connectors/*/status";

    faults.inject("GET", pattern, Fault::Status(500)).times(1);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 500);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);

    let timed_out = r#"{"error_code":500,"message":"Request timed out"}"#;
    faults
        .inject("GET", pattern, Fault::StatusBody(500, timed_out.into()))
        .times(1);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Request timed out"
    );

    for fault in [Fault::Reset, Fault::TruncatedBody] {
        faults.inject("GET", pattern, fault.clone()).times(1);
        let failed = match http.get(&url).send().await {
            Err(_) => true,
            Ok(r) => r.bytes().await.is_err(),
        };
        assert!(failed, "{fault:?} must fail the request");
    }

    faults.inject("GET", pattern, Fault::MalformedBody).times(1);
    let r = http.get(&url).send().await.unwrap();
    assert!(r.json::<Value>().await.is_err());

    faults.inject("GET", pattern, Fault::Hang).times(1);
    assert!(http.get(&url).send().await.unwrap_err().is_timeout());

    faults
        .inject("GET", pattern, Fault::Latency(Duration::from_millis(150)))
        .times(1);
    let t = Instant::now();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    // a fault on one path leaves the others alone
    faults.inject("POST", "/connectors/*/restart", Fault::Status(503));
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(
        http.post(format!("{}/connectors/a/restart", connect.base_url()))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        connect.connector_restart_count("a"),
        Some(0),
        "an injected failure does not reach the state"
    );

    connect.http().refuse_connections();
    let fresh = Client::new();
    assert!(fresh.get(&url).send().await.unwrap_err().is_connect());
    connect.http().restore().await.unwrap();
    assert_eq!(fresh.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_request_record_shows_what_the_client_sent() {
    let connect = FakeKafkaConnect::start().await.unwrap();
    connect
        .add_connector("a", ConnectorType::Source, 1)
        .unwrap();
    let rest = Rest::new(&connect);
    rest.call(
        Method::POST,
        "/connectors/a/restart?includeTasks=true&onlyFailed=true",
        None,
    )
    .await;
    let config = json!({"connector.class": "X", "tasks.max": "1"});
    rest.call(Method::PUT, "/connectors/a/config", Some(config.clone()))
        .await;
    rest.get("/connectors/a/status").await;

    let restarts = connect
        .http()
        .requests()
        .matching("POST", "/connectors/*/restart");
    assert_eq!(restarts.len(), 1);
    assert_eq!(restarts[0].path, "/connectors/a/restart");
    assert_eq!(
        restarts[0].query.as_deref(),
        Some("includeTasks=true&onlyFailed=true")
    );
    assert!(restarts[0].body.is_empty());
    let puts = connect
        .http()
        .requests()
        .matching("PUT", "/connectors/*/config");
    assert_eq!(puts[0].json(), Some(config));
    assert_eq!(puts[0].header("Content-Type"), Some("application/json"));
    assert_eq!(connect.http().requests().mutating().len(), 2);
    assert_eq!(connect.http().requests().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// the real worker's recorded answers (fixtures/real/kafka-connect, Kafka 4.1.1)
// ---------------------------------------------------------------------------------------------

fn real(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/real/kafka-connect/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Recorded status code per fixture name (`_index.tsv`: name, method, path, status).
fn real_index() -> BTreeMap<String, u16> {
    let path = format!(
        "{}/fixtures/real/kafka-connect/_index.tsv",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Some((cols.first()?.to_string(), cols.get(3)?.parse().ok()?))
        })
        .collect()
}

/// Replays the recorded session against the fake: same calls, same status codes, same error
/// bodies, same shapes (no field missing, none added).
#[tokio::test]
async fn the_fake_answers_like_the_recorded_real_worker() {
    let index = real_index();
    let connect = FakeKafkaConnect::start().await.unwrap();
    let rest = Rest::new(&connect);
    // the recorder names its connector uniquely per run (a worker remembers file positions);
    // any other connector the recorded worker held is mirrored too
    let failed_status = real("status_task_failed_200");
    let name = failed_status["name"]
        .as_str()
        .expect("the recorded failing connector");
    for other in real("list_200").as_array().expect("list_200 is an array") {
        let other = other.as_str().expect("connector names are strings");
        if other != name {
            connect
                .add_connector(other, ConnectorType::Source, 1)
                .unwrap();
        }
    }
    let trace = "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer send callback\n\tat x\nCaused by: org.apache.kafka.common.errors.InvalidTopicException: Invalid topics: [rb invalid topic!]\n";

    #[track_caller]
    fn check(index: &BTreeMap<String, u16>, fixture: &str, status: u16, text: &str, body: &Value) {
        assert_eq!(Some(&status), index.get(fixture), "{fixture}: status");
        let reference = real(fixture);
        if reference.is_null() {
            assert_eq!(text, "", "{fixture}: empty body");
        } else {
            assert_shape(fixture, &reference, body, &[]);
        }
    }

    let (s, t, b) = rest.call(Method::GET, "/", None).await;
    check(&index, "root_200", s, &t, &b);
    assert_eq!(b["version"], real("root_200")["version"]);
    let (s, t, b) = rest.call(Method::GET, "/health", None).await;
    check(&index, "health_200", s, &t, &b);
    assert_eq!(b, real("health_200"));

    connect
        .add_connector(name, ConnectorType::Source, 1)
        .unwrap();
    connect.fail_task(name, 0, trace).unwrap();
    let (s, t, b) = rest
        .call(Method::GET, &format!("/connectors/{name}/status"), None)
        .await;
    check(&index, "status_task_failed_200", s, &t, &b);
    let (s, t, b) = rest
        .call(Method::GET, "/connectors?expand=status", None)
        .await;
    check(&index, "list_expand_status_failed_200", s, &t, &b);
    let (s, t, b) = rest.call(Method::GET, "/connectors", None).await;
    check(&index, "list_200", s, &t, &b);
    assert_eq!(b, real("list_200"));

    let (s, t, b) = rest
        .call(Method::POST, &format!("/connectors/{name}/restart"), None)
        .await;
    check(&index, "restart_plain_204", s, &t, &b);
    assert_eq!(connect.task_state(name, 0), Some(State::Failed));
    let (s, t, b) = rest
        .call(
            Method::POST,
            &format!("/connectors/{name}/restart?includeTasks=true&onlyFailed=true"),
            None,
        )
        .await;
    check(&index, "restart_include_tasks_only_failed_202", s, &t, &b);
    assert_eq!(states(&b), ["RESTARTING"]);

    for (fixture, method, path) in [
        (
            "status_unknown_404",
            Method::GET,
            "/connectors/rb-no-such-connector/status",
        ),
        (
            "restart_unknown_404",
            Method::POST,
            "/connectors/rb-no-such-connector/restart?includeTasks=true&onlyFailed=true",
        ),
        (
            "pause_unknown_404",
            Method::PUT,
            "/connectors/rb-no-such-connector/pause",
        ),
    ] {
        let (s, t, b) = rest.call(method, path, None).await;
        check(&index, fixture, s, &t, &b);
        assert_eq!(b, real(fixture), "{fixture}");
    }

    let (s, t, b) = rest
        .call(Method::GET, &format!("/connectors/{name}"), None)
        .await;
    check(&index, "connector_info_200", s, &t, &b);
    let recorded_config = real("connector_info_200")["config"].clone();
    let (s, t, b) = rest
        .call(
            Method::POST,
            "/connectors",
            Some(json!({"name": name, "config": recorded_config.clone()})),
        )
        .await;
    check(&index, "create_existing_409", s, &t, &b);
    assert_eq!(b, real("create_existing_409"));
    let (s, t, b) = rest
        .call(
            Method::PUT,
            &format!("/connectors/{name}/config"),
            Some(recorded_config),
        )
        .await;
    check(&index, "put_config_200", s, &t, &b);

    let (s, t, b) = rest
        .call(Method::GET, &format!("/connectors/{name}/status"), None)
        .await;
    check(&index, "status_running_200", s, &t, &b);
    let (s, t, b) = rest
        .call(Method::PUT, &format!("/connectors/{name}/pause"), None)
        .await;
    check(&index, "pause_202", s, &t, &b);
    let (s, t, b) = rest
        .call(Method::GET, &format!("/connectors/{name}/status"), None)
        .await;
    check(&index, "status_paused_200", s, &t, &b);
    assert_eq!(states(&b), ["PAUSED"]);
    let (s, t, b) = rest
        .call(Method::PUT, &format!("/connectors/{name}/resume"), None)
        .await;
    check(&index, "resume_202", s, &t, &b);
    let (s, t, b) = rest
        .call(Method::GET, "/connectors?expand=status", None)
        .await;
    check(&index, "list_expand_status_running_200", s, &t, &b);
    let (s, t, b) = rest
        .call(Method::DELETE, &format!("/connectors/{name}"), None)
        .await;
    check(&index, "delete_204", s, &t, &b);
}
