//! A stateful fake of the Kafka Connect REST API (distributed worker, port 8083 in production).
//!
//! [`FakeKafkaConnect`] keeps connectors (name, type, config, target state) and their tasks, each
//! with a state (`UNASSIGNED`, `RUNNING`, `PAUSED`, `FAILED`, `RESTARTING`, `STOPPED`), a worker id
//! and a stack trace on failure, and answers the REST calls a remediation makes:
//!
//! - `GET /` (`version`, `commit`, `kafka_cluster_id`), `GET /health`;
//! - `GET /connectors` (names), `?expand=status`, `?expand=info` (both may be given), `POST /connectors`;
//! - `GET /connectors/{n}`, `/status`, `/config`, `/tasks`, `/tasks/{t}/status`; `PUT /config`; `DELETE`;
//! - `POST /connectors/{n}/restart`: **without parameters 204, and only the connector object
//!   restarts — failed tasks stay FAILED**; with `includeTasks=true` and/or `onlyFailed=true`,
//!   **202 Accepted with the status body** in which the selected instances are `RESTARTING`; they
//!   become `RUNNING` after the restart delay (default: immediately after the answer);
//! - `POST /connectors/{n}/tasks/{t}/restart` (204), `PUT /pause`, `/resume` (202), `/stop` (204).
//!
//! Errors are the real `{"error_code": <status>, "message": …}` body: 404 for unknown connectors
//! and tasks, 409 while a rebalance is in progress ([`FakeKafkaConnect::start_rebalance`]).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use rb_testkit::http::kafka_connect::{ConnectorType, FakeKafkaConnect, State};
//!
//! let connect = FakeKafkaConnect::start().await?;
//! connect.add_connector("orders-cdc", ConnectorType::Source, 2)?;
//! connect.fail_task("orders-cdc", 1, "org.apache.kafka.connect.errors.ConnectException: boom")?;
//! assert_eq!(connect.failed_task_count(), 1);
//!
//! let url = format!("{}/connectors/orders-cdc/restart?includeTasks=true&onlyFailed=true", connect.base_url());
//! let resp = reqwest::Client::new().post(url).send().await?;
//! assert_eq!(resp.status(), 202); // body: task 1 "RESTARTING"
//! assert_eq!(connect.task_state("orders-cdc", 1), Some(State::Running));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::server::json_response;
use super::FakeHttp;

/// The 409 message of a request that arrives during a rebalance (as `HerderRequestHandler` words it).
pub const REBALANCE_MESSAGE: &str =
    "Cannot complete request momentarily due to stale configuration (typically caused by a concurrent config change)";

/// Whether a connector reads from (source) or writes to (sink) Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorType {
    /// A source connector.
    Source,
    /// A sink connector.
    Sink,
}

impl ConnectorType {
    fn wire(self) -> &'static str {
        match self {
            ConnectorType::Source => "source",
            ConnectorType::Sink => "sink",
        }
    }
}

/// The state of a connector or task instance, as the status endpoints report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not (yet) assigned to a worker.
    Unassigned,
    /// Running.
    Running,
    /// Paused by a user.
    Paused,
    /// Failed; the status carries a `trace`.
    Failed,
    /// Being restarted by a `restart?includeTasks/onlyFailed` request.
    Restarting,
    /// Stopped (connector only; a stopped connector has no tasks).
    Stopped,
}

impl State {
    /// The wire name (`RUNNING`, …).
    pub fn wire(self) -> &'static str {
        match self {
            State::Unassigned => "UNASSIGNED",
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Failed => "FAILED",
            State::Restarting => "RESTARTING",
            State::Stopped => "STOPPED",
        }
    }
}

/// An error of the fake Connect worker, shaped like the real `ErrorMessage` body; also returned by
/// the scripted helpers when the same request would fail over REST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFakeError {
    /// HTTP status, equal to `error_code`.
    pub status: u16,
    /// The message, worded as the real worker words it.
    pub message: String,
}

impl fmt::Display for ConnectFakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kafka Connect {}: {}", self.status, self.message)
    }
}

impl std::error::Error for ConnectFakeError {}

impl ConnectFakeError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The body: `{"error_code": status, "message": …}`.
    pub fn to_json(&self) -> Value {
        json!({ "error_code": self.status, "message": self.message })
    }
}

impl IntoResponse for ConnectFakeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(status, self.to_json())
    }
}

type Result<T> = std::result::Result<T, ConnectFakeError>;

/// A pending transition (restart in progress).
#[derive(Debug, Clone)]
struct Pending {
    at: Instant,
    to: State,
    trace: Option<String>,
}

#[derive(Debug, Clone)]
struct Instance {
    state: State,
    worker: usize,
    trace: Option<String>,
    pending: Option<Pending>,
}

impl Instance {
    fn new(state: State, worker: usize) -> Self {
        Self {
            state,
            worker,
            trace: None,
            pending: None,
        }
    }

    fn settle(&mut self, now: Instant) {
        if self.pending.as_ref().is_some_and(|p| p.at <= now) {
            if let Some(p) = self.pending.take() {
                self.state = p.to;
                self.trace = p.trace;
            }
        }
    }

    /// Restart: show `during` until `at`, then `to` (with `trace` when failing again).
    /// A `RESTARTING` instance keeps its last trace until it settles (as the real worker reports it);
    /// the legacy restarts clear it.
    fn restart(&mut self, during: State, at: Instant, to: State, trace: Option<String>) {
        self.state = during;
        if during != State::Restarting {
            self.trace = None;
        }
        self.pending = Some(Pending { at, to, trace });
    }

    fn fail(&mut self, trace: &str) {
        self.pending = None;
        self.state = State::Failed;
        self.trace = Some(trace.to_string());
    }

    fn json(&self, workers: &[String], version: Option<&str>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("state".into(), json!(self.state.wire()));
        if let Some(v) = version {
            m.insert("version".into(), json!(v));
        }
        m.insert("worker_id".into(), json!(worker_id(workers, self.worker)));
        if let Some(t) = self.trace.as_ref().filter(|t| !t.is_empty()) {
            m.insert("trace".into(), json!(t));
        }
        m
    }
}

fn worker_id(workers: &[String], i: usize) -> String {
    workers
        .get(i % workers.len().max(1))
        .cloned()
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Task {
    id: u32,
    inst: Instance,
    /// Restarts that still end in FAILED again, with this trace.
    fail_again: u32,
    fail_trace: String,
    restarts: u32,
}

#[derive(Debug, Clone)]
struct Connector {
    name: String,
    kind: ConnectorType,
    config: BTreeMap<String, String>,
    /// RUNNING, PAUSED or STOPPED.
    target: State,
    inst: Instance,
    tasks: Vec<Task>,
    index: usize,
    restarts: u32,
}

impl Connector {
    fn tasks_max(config: &BTreeMap<String, String>) -> Result<u32> {
        match config.get("tasks.max") {
            None => Ok(1),
            Some(v) => v.trim().parse::<u32>().map_err(|_| {
                ConnectFakeError::new(
                    400,
                    format!(
                        "Invalid value {v} for configuration tasks.max: Not a number of type INT"
                    ),
                )
            }),
        }
    }

    fn running_state(&self) -> State {
        if self.target == State::Paused {
            State::Paused
        } else {
            State::Running
        }
    }

    /// (Re)create the task list for the current config and target state.
    fn rebuild_tasks(&mut self) -> Result<()> {
        let n = Self::tasks_max(&self.config)?;
        let state = self.running_state();
        self.tasks = if self.target == State::Stopped {
            Vec::new()
        } else {
            (0..n)
                .map(|id| Task {
                    id,
                    inst: Instance::new(state, self.index + id as usize + 1),
                    fail_again: 0,
                    fail_trace: String::new(),
                    restarts: 0,
                })
                .collect()
        };
        Ok(())
    }

    fn settle(&mut self, now: Instant) {
        self.inst.settle(now);
        for t in &mut self.tasks {
            t.inst.settle(now);
        }
    }

    fn status(&self, workers: &[String], version: Option<&str>) -> Value {
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| {
                let mut m = Map::new();
                m.insert("id".into(), json!(t.id));
                m.extend(t.inst.json(workers, version));
                Value::Object(m)
            })
            .collect();
        json!({
            "name": self.name,
            "connector": Value::Object(self.inst.json(workers, version)),
            "tasks": tasks,
            "type": self.kind.wire(),
        })
    }

    fn info(&self) -> Value {
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| json!({ "connector": self.name, "task": t.id }))
            .collect();
        json!({ "name": self.name, "config": self.config, "tasks": tasks, "type": self.kind.wire() })
    }

    fn task_configs(&self) -> Value {
        let class = self
            .config
            .get("connector.class")
            .cloned()
            .unwrap_or_default();
        let task_class = match class.strip_suffix("Connector") {
            Some(stem) => format!("{stem}Task"),
            None => format!("{class}Task"),
        };
        let list: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| {
                let mut cfg = self.config.clone();
                cfg.insert("task.class".into(), task_class.clone());
                json!({ "id": { "connector": self.name, "task": t.id }, "config": cfg })
            })
            .collect();
        Value::Array(list)
    }

    /// Restart task `i`: shows `during` until the restart delay passes, then the running state, or
    /// FAILED again while its fail-again budget lasts.
    fn restart_task(&mut self, i: usize, during: State, at: Instant) {
        let to = self.running_state();
        if let Some(t) = self.tasks.get_mut(i) {
            t.restarts += 1;
            if t.fail_again > 0 {
                t.fail_again -= 1;
                let trace = t.fail_trace.clone();
                t.inst.restart(during, at, State::Failed, Some(trace));
            } else {
                t.inst.restart(during, at, to, None);
            }
        }
    }

    fn restart_connector(&mut self, during: State, at: Instant) {
        self.restarts += 1;
        let to = match self.target {
            State::Stopped => State::Stopped,
            _ => self.running_state(),
        };
        self.inst.restart(during, at, to, None);
    }
}

#[derive(Debug)]
struct Worker {
    connectors: BTreeMap<String, Connector>,
    workers: Vec<String>,
    rebalancing: bool,
    restart_delay: Duration,
    version: String,
    commit: String,
    cluster_id: String,
    next_index: usize,
    port: u16,
}

impl Worker {
    fn settle(&mut self) {
        let now = Instant::now();
        for c in self.connectors.values_mut() {
            c.settle(now);
        }
    }

    /// The plugin `version` shown in status objects: Kafka ≥ 4.1 reports it (for the built-in
    /// connectors it equals the worker version); older workers do not send the field.
    fn plugin_version(&self) -> Option<&str> {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major > 4 || (major == 4 && minor >= 1)).then_some(self.version.as_str())
    }

    fn check_rebalance(&self) -> Result<()> {
        if self.rebalancing {
            Err(ConnectFakeError::new(409, REBALANCE_MESSAGE))
        } else {
            Ok(())
        }
    }

    fn get(&self, name: &str) -> Result<&Connector> {
        self.connectors
            .get(name)
            .ok_or_else(|| ConnectFakeError::new(404, format!("Connector {name} not found")))
    }

    fn get_mut(&mut self, name: &str, message: impl FnOnce() -> String) -> Result<&mut Connector> {
        self.connectors
            .get_mut(name)
            .ok_or_else(|| ConnectFakeError::new(404, message()))
    }

    fn create(
        &mut self,
        name: &str,
        mut config: BTreeMap<String, String>,
        initial: State,
        kind: Option<ConnectorType>,
    ) -> Result<&Connector> {
        if name.trim().is_empty() {
            return Err(ConnectFakeError::new(
                400,
                "Connector name must not be empty",
            ));
        }
        if name.contains('/') {
            return Err(ConnectFakeError::new(
                400,
                format!("Invalid connector name {name}: must not contain '/'"),
            ));
        }
        check_name(name, &config)?;
        config.insert("name".into(), name.to_string());
        let Some(class) = config.get("connector.class").cloned() else {
            return Err(ConnectFakeError::new(
                400,
                format!(
                    "Connector config {} contains no connector type",
                    java_map(&config)
                ),
            ));
        };
        if self.connectors.contains_key(name) {
            return Err(ConnectFakeError::new(
                409,
                format!("Connector {name} already exists"),
            ));
        }
        let kind = kind.unwrap_or_else(|| {
            let simple = class.rsplit('.').next().unwrap_or(&class);
            if simple.contains("Sink") {
                ConnectorType::Sink
            } else {
                ConnectorType::Source
            }
        });
        let index = self.next_index;
        let mut c = Connector {
            name: name.to_string(),
            kind,
            config,
            target: initial,
            inst: Instance::new(initial, index),
            tasks: Vec::new(),
            index,
            restarts: 0,
        };
        c.rebuild_tasks()?;
        self.next_index += 1;
        self.connectors.insert(name.to_string(), c);
        self.get(name)
    }
}

fn check_name(name: &str, config: &BTreeMap<String, String>) -> Result<()> {
    match config.get("name") {
        Some(n) if n != name => Err(ConnectFakeError::new(
            400,
            format!("Connector name configuration ({n}) doesn't match connector name in the URL ({name})"),
        )),
        _ => Ok(()),
    }
}

/// `{k1=v1, k2=v2}` — how the worker prints a config map in messages.
fn java_map(config: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn config_from_json(v: &Value) -> Result<BTreeMap<String, String>> {
    let Value::Object(map) = v else {
        return Err(ConnectFakeError::new(
            400,
            format!("Connector configuration must be a JSON object, got: {v}"),
        ));
    };
    map.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(ConnectFakeError::new(
                        400,
                        format!("Cannot deserialize value of type `java.lang.String` from {other} (config key '{k}')"),
                    ))
                }
            };
            Ok((k.clone(), s))
        })
        .collect()
}

type Shared = Arc<Mutex<Worker>>;

fn lock(s: &Shared) -> MutexGuard<'_, Worker> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fake Kafka Connect worker (cluster) on `127.0.0.1:<ephemeral>`.
#[derive(Debug)]
pub struct FakeKafkaConnect {
    http: FakeHttp,
    state: Shared,
}

impl FakeKafkaConnect {
    /// Start an empty worker (version `4.1.1`, one worker).
    pub async fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(Worker {
            connectors: BTreeMap::new(),
            workers: Vec::new(),
            rebalancing: false,
            restart_delay: Duration::ZERO,
            version: "4.1.1".into(),
            commit: "be816b82d25370ce".into(),
            cluster_id: "bTr5UQcNSLOIDezJ4bkyvw".into(),
            next_index: 0,
            port: 0,
        }));
        let http = FakeHttp::start(router(state.clone())).await?;
        {
            let mut w = lock(&state);
            w.port = http.addr().port();
            w.workers = vec![format!("127.0.0.1:{}", w.port)];
        }
        Ok(Self { http, state })
    }

    /// The underlying server (request record, faults, refuse/restore connections).
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    /// `http://127.0.0.1:<port>` — the Connect REST URL.
    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// Add a running connector with `tasks` running tasks and a FileStream-style config.
    pub fn add_connector(
        &self,
        name: &str,
        kind: ConnectorType,
        tasks: u32,
    ) -> std::result::Result<(), ConnectFakeError> {
        let class = match kind {
            ConnectorType::Source => "org.apache.kafka.connect.file.FileStreamSourceConnector",
            ConnectorType::Sink => "org.apache.kafka.connect.file.FileStreamSinkConnector",
        };
        let mut config = BTreeMap::new();
        config.insert("connector.class".to_string(), class.to_string());
        config.insert("tasks.max".to_string(), tasks.to_string());
        match kind {
            ConnectorType::Source => config.insert("topic".into(), format!("{name}-topic")),
            ConnectorType::Sink => config.insert("topics".into(), format!("{name}-topic")),
        };
        config.insert("file".into(), format!("/tmp/{name}.txt"));
        self.add_connector_with_config(name, kind, config)
    }

    /// Add a running connector with this config (`tasks.max` tasks, default 1).
    pub fn add_connector_with_config(
        &self,
        name: &str,
        kind: ConnectorType,
        config: BTreeMap<String, String>,
    ) -> std::result::Result<(), ConnectFakeError> {
        lock(&self.state)
            .create(name, config, State::Running, Some(kind))
            .map(|_| ())
    }

    /// Make task `task` of `connector` FAILED with this stack trace.
    pub fn fail_task(
        &self,
        connector: &str,
        task: u32,
        trace: &str,
    ) -> std::result::Result<(), ConnectFakeError> {
        let mut w = lock(&self.state);
        let c = w.get_mut(connector, || format!("Connector {connector} not found"))?;
        let t = c.tasks.iter_mut().find(|t| t.id == task).ok_or_else(|| {
            ConnectFakeError::new(404, format!("Unknown task: {connector}-{task}"))
        })?;
        t.inst.fail(trace);
        Ok(())
    }

    /// Make task `task` FAILED now, and FAILED again after each of its next `times` restarts
    /// (to exercise back-off); the restart after that succeeds.
    pub fn fail_task_repeatedly(
        &self,
        connector: &str,
        task: u32,
        trace: &str,
        times: u32,
    ) -> std::result::Result<(), ConnectFakeError> {
        self.fail_task(connector, task, trace)?;
        let mut w = lock(&self.state);
        let c = w.get_mut(connector, || format!("Connector {connector} not found"))?;
        if let Some(t) = c.tasks.iter_mut().find(|t| t.id == task) {
            t.fail_again = times;
            t.fail_trace = trace.to_string();
        }
        Ok(())
    }

    /// Make the connector instance of `connector` FAILED with this stack trace.
    pub fn fail_connector(
        &self,
        connector: &str,
        trace: &str,
    ) -> std::result::Result<(), ConnectFakeError> {
        let mut w = lock(&self.state);
        w.get_mut(connector, || format!("Connector {connector} not found"))?
            .inst
            .fail(trace);
        Ok(())
    }

    /// From now on, every request that needs the leader answers 409 (as during a rebalance);
    /// status reads keep working.
    pub fn start_rebalance(&self) {
        lock(&self.state).rebalancing = true;
    }

    /// End the rebalance started by [`FakeKafkaConnect::start_rebalance`].
    pub fn end_rebalance(&self) {
        lock(&self.state).rebalancing = false;
    }

    /// How long restarted instances stay `RESTARTING` / `UNASSIGNED` before they settle (measured
    /// on tokio's clock, so a paused test clock controls it). Default: zero.
    pub fn set_restart_delay(&self, delay: Duration) {
        lock(&self.state).restart_delay = delay;
    }

    /// Set the number of workers in the cluster (at least 1); instances are spread round-robin.
    /// Worker ids are loopback `host:port` strings (`127.0.0.1:<port>`, `127.0.0.2:<port>`, …).
    pub fn set_worker_count(&self, n: usize) {
        let mut w = lock(&self.state);
        let port = w.port;
        w.workers = (0..n.clamp(1, 250))
            .map(|i| format!("127.0.0.{}:{port}", i + 1))
            .collect();
    }

    /// The version reported by `GET /` (and, from 4.1 on, as the plugin `version` in status objects).
    pub fn set_version(&self, version: &str) {
        lock(&self.state).version = version.to_string();
    }

    /// Number of workers (`kafka_connect_worker_*` metrics are per worker).
    pub fn worker_count(&self) -> usize {
        lock(&self.state).workers.len()
    }

    /// Number of connectors (like `kafka_connect_worker_connector_count`, summed over workers).
    pub fn connector_count(&self) -> usize {
        lock(&self.state).connectors.len()
    }

    /// Number of FAILED tasks over all connectors (like `kafka_connect_connector_failed_task_count`, summed).
    pub fn failed_task_count(&self) -> usize {
        self.count_tasks(None, State::Failed)
    }

    /// Number of FAILED tasks of one connector.
    pub fn connector_failed_task_count(&self, connector: &str) -> usize {
        self.count_tasks(Some(connector), State::Failed)
    }

    /// Number of RUNNING tasks over all connectors.
    pub fn running_task_count(&self) -> usize {
        self.count_tasks(None, State::Running)
    }

    fn count_tasks(&self, connector: Option<&str>, state: State) -> usize {
        let mut w = lock(&self.state);
        w.settle();
        w.connectors
            .values()
            .filter(|c| connector.is_none_or(|n| n == c.name))
            .flat_map(|c| c.tasks.iter())
            .filter(|t| t.inst.state == state)
            .count()
    }

    /// Current state of the connector instance.
    pub fn connector_state(&self, connector: &str) -> Option<State> {
        let mut w = lock(&self.state);
        w.settle();
        w.connectors.get(connector).map(|c| c.inst.state)
    }

    /// Current state of a task.
    pub fn task_state(&self, connector: &str, task: u32) -> Option<State> {
        let mut w = lock(&self.state);
        w.settle();
        w.connectors
            .get(connector)?
            .tasks
            .iter()
            .find(|t| t.id == task)
            .map(|t| t.inst.state)
    }

    /// How many times a task was restarted (by any restart request).
    pub fn task_restart_count(&self, connector: &str, task: u32) -> Option<u32> {
        let w = lock(&self.state);
        w.connectors
            .get(connector)?
            .tasks
            .iter()
            .find(|t| t.id == task)
            .map(|t| t.restarts)
    }

    /// How many times the connector instance was restarted.
    pub fn connector_restart_count(&self, connector: &str) -> Option<u32> {
        lock(&self.state)
            .connectors
            .get(connector)
            .map(|c| c.restarts)
    }

    /// Whether `connector` is a source or a sink (`None`: unknown connector).
    pub fn connector_type(&self, connector: &str) -> Option<ConnectorType> {
        lock(&self.state).connectors.get(connector).map(|c| c.kind)
    }

    /// Connector names, sorted.
    pub fn connector_names(&self) -> Vec<String> {
        lock(&self.state).connectors.keys().cloned().collect()
    }

    /// Pause `connector` as `PUT /connectors/{name}/pause` does (its RUNNING instances become
    /// PAUSED; a FAILED instance stays FAILED), without a request in the record: an operator's
    /// deliberate pause, outside the code under test.
    pub fn pause_connector(&self, connector: &str) -> std::result::Result<(), ConnectFakeError> {
        self.set_target(connector, State::Paused)
    }

    /// Resume `connector` as `PUT /connectors/{name}/resume` does, without a request in the record.
    pub fn resume_connector(&self, connector: &str) -> std::result::Result<(), ConnectFakeError> {
        self.set_target(connector, State::Running)
    }

    fn set_target(&self, connector: &str, to: State) -> std::result::Result<(), ConnectFakeError> {
        let mut w = lock(&self.state);
        w.settle();
        let c = w.get_mut(connector, || format!("Unknown connector {connector}"))?;
        let was_stopped = c.target == State::Stopped;
        c.target = to;
        if was_stopped {
            c.rebuild_tasks()?;
        }
        set_running_instances(c, to);
        Ok(())
    }

    /// Restart the FAILED instances of `connector` as
    /// `POST /connectors/{name}/restart?includeTasks=true&onlyFailed=true` does (restart counters
    /// included; a task scripted to fail again fails again), without a request in the record: the
    /// restart an operator makes after fixing the cause, outside the code under test.
    pub fn restart_failed(&self, connector: &str) -> std::result::Result<(), ConnectFakeError> {
        let mut w = lock(&self.state);
        w.settle();
        let at = Instant::now() + w.restart_delay;
        let c = w.get_mut(connector, || format!("Unknown connector: {connector}"))?;
        if c.inst.state == State::Failed {
            c.restart_connector(State::Restarting, at);
        }
        let failed: Vec<usize> = c
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.inst.state == State::Failed)
            .map(|(i, _)| i)
            .collect();
        for i in failed {
            c.restart_task(i, State::Restarting, at);
        }
        Ok(())
    }

    /// A closure giving the live FAILED task count of `connector` (what the worker exports as
    /// `kafka_connect_connector_failed_task_count{connector=…}`), for
    /// [`FakePrometheus::gauge_fn`](super::prometheus::FakePrometheus::gauge_fn).
    pub fn failed_task_gauge(&self, connector: &str) -> impl Fn() -> f64 + Send + Sync + 'static {
        let state = self.state.clone();
        let connector = connector.to_string();
        move || {
            let mut w = lock(&state);
            w.settle();
            w.connectors.get(&connector).map_or(0, |c| {
                c.tasks
                    .iter()
                    .filter(|t| t.inst.state == State::Failed)
                    .count()
            }) as f64
        }
    }

    /// A closure giving the live connector count (`kafka_connect_worker_connector_count`, summed
    /// over workers), for [`FakePrometheus::gauge_fn`](super::prometheus::FakePrometheus::gauge_fn).
    pub fn connector_count_gauge(&self) -> impl Fn() -> f64 + Send + Sync + 'static {
        let state = self.state.clone();
        move || lock(&state).connectors.len() as f64
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/connectors", get(list).post(create))
        .route("/connectors/{name}", get(info).delete(delete))
        .route("/connectors/{name}/config", get(get_config).put(put_config))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route("/connectors/{name}/restart", post(restart))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(restart_task),
        )
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .fallback(|| async { ConnectFakeError::new(404, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            ConnectFakeError::new(405, "HTTP 405 Method Not Allowed")
        })
        .with_state(state)
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, v)
}

fn query(raw: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn flag(q: &[(String, String)], name: &str) -> bool {
    q.iter()
        .any(|(k, v)| k == name && v.eq_ignore_ascii_case("true"))
}

/// JAX-RS answers a non-integer `{task}` path parameter with a plain 404.
fn task_id(raw: &str) -> Result<u32> {
    raw.parse()
        .map_err(|_| ConnectFakeError::new(404, "HTTP 404 Not Found"))
}

fn parse_json(body: &Bytes) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ConnectFakeError::new(400, format!("Unrecognized or malformed JSON: {e}")))
}

async fn root(AxState(s): AxState<Shared>) -> Response {
    let w = lock(&s);
    ok(json!({ "version": w.version, "commit": w.commit, "kafka_cluster_id": w.cluster_id }))
}

async fn health() -> Response {
    ok(
        json!({ "status": "healthy", "message": "Worker has completed startup and is ready to handle requests." }),
    )
}

async fn list(AxState(s): AxState<Shared>, RawQuery(raw): RawQuery) -> Result<Response> {
    let q = query(&raw);
    let mut w = lock(&s);
    w.check_rebalance()?;
    w.settle();
    let expand: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "expand")
        .map(|(_, v)| v.as_str())
        .collect();
    let (st, inf) = (expand.contains(&"status"), expand.contains(&"info"));
    // Any `expand` (even an unknown one, which is ignored) switches to the map form.
    if expand.is_empty() {
        let names: Vec<&String> = w.connectors.keys().collect();
        return Ok(ok(json!(names)));
    }
    let mut out = Map::new();
    for (name, c) in &w.connectors {
        let mut m = Map::new();
        if inf {
            m.insert("info".into(), c.info());
        }
        if st {
            m.insert("status".into(), c.status(&w.workers, w.plugin_version()));
        }
        out.insert(name.clone(), Value::Object(m));
    }
    Ok(ok(Value::Object(out)))
}

async fn create(AxState(s): AxState<Shared>, body: Bytes) -> Result<Response> {
    let v = parse_json(&body)?;
    let mut w = lock(&s);
    w.check_rebalance()?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let config = config_from_json(v.get("config").unwrap_or(&Value::Null))?;
    let initial = match v
        .get("initial_state")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("RUNNING") => State::Running,
        Some("PAUSED") => State::Paused,
        Some("STOPPED") => State::Stopped,
        Some(other) => {
            return Err(ConnectFakeError::new(
                400,
                format!("Invalid initial state {other}; must be one of RUNNING, PAUSED, STOPPED"),
            ))
        }
    };
    let info = w.create(&name, config, initial, None)?.info();
    let mut resp = json_response(StatusCode::CREATED, info);
    if let Ok(loc) =
        HeaderValue::from_str(&format!("http://127.0.0.1:{}/connectors/{name}", w.port))
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn info(AxState(s): AxState<Shared>, Path(name): Path<String>) -> Result<Response> {
    let w = lock(&s);
    w.check_rebalance()?;
    Ok(ok(w.get(&name)?.info()))
}

async fn delete(AxState(s): AxState<Shared>, Path(name): Path<String>) -> Result<Response> {
    let mut w = lock(&s);
    w.check_rebalance()?;
    w.get(&name)?;
    w.connectors.remove(&name);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_config(AxState(s): AxState<Shared>, Path(name): Path<String>) -> Result<Response> {
    let w = lock(&s);
    w.check_rebalance()?;
    Ok(ok(json!(w.get(&name)?.config)))
}

async fn put_config(
    AxState(s): AxState<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let v = parse_json(&body)?;
    let mut config = config_from_json(&v)?;
    let mut w = lock(&s);
    w.check_rebalance()?;
    if !w.connectors.contains_key(&name) {
        let info = w.create(&name, config, State::Running, None)?.info();
        return Ok(json_response(StatusCode::CREATED, info));
    }
    check_name(&name, &config)?;
    config.insert("name".into(), name.clone());
    if !config.contains_key("connector.class") {
        return Err(ConnectFakeError::new(
            400,
            format!(
                "Connector config {} contains no connector type",
                java_map(&config)
            ),
        ));
    }
    Connector::tasks_max(&config)?;
    let c = w.get_mut(&name, || format!("Connector {name} not found"))?;
    c.config = config;
    c.inst = Instance::new(
        if c.target == State::Stopped {
            State::Stopped
        } else {
            c.running_state()
        },
        c.index,
    );
    c.rebuild_tasks()?;
    Ok(ok(c.info()))
}

async fn status(AxState(s): AxState<Shared>, Path(name): Path<String>) -> Result<Response> {
    let mut w = lock(&s);
    w.settle();
    let c = w.connectors.get(&name).ok_or_else(|| {
        ConnectFakeError::new(404, format!("No status found for connector {name}"))
    })?;
    Ok(ok(c.status(&w.workers, w.plugin_version())))
}

async fn tasks(AxState(s): AxState<Shared>, Path(name): Path<String>) -> Result<Response> {
    let w = lock(&s);
    w.check_rebalance()?;
    Ok(ok(w.get(&name)?.task_configs()))
}

async fn task_status(
    AxState(s): AxState<Shared>,
    Path((name, task)): Path<(String, String)>,
) -> Result<Response> {
    let id = task_id(&task)?;
    let mut w = lock(&s);
    w.settle();
    let t = w
        .connectors
        .get(&name)
        .and_then(|c| c.tasks.iter().find(|t| t.id == id))
        .ok_or_else(|| {
            ConnectFakeError::new(404, format!("No status found for task {name}-{id}"))
        })?;
    let mut m = Map::new();
    m.insert("id".into(), json!(t.id));
    m.extend(t.inst.json(&w.workers, w.plugin_version()));
    Ok(ok(Value::Object(m)))
}

async fn restart(
    AxState(s): AxState<Shared>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = query(&raw);
    let (include_tasks, only_failed) = (flag(&q, "includeTasks"), flag(&q, "onlyFailed"));
    let mut w = lock(&s);
    w.check_rebalance()?;
    w.settle();
    let at = Instant::now() + w.restart_delay;
    let workers = w.workers.clone();
    let version = w.plugin_version().map(str::to_string);
    let c = w.get_mut(&name, || format!("Unknown connector: {name}"))?;
    if !include_tasks && !only_failed {
        // Legacy restart: the Connector object only; tasks are left as they are.
        c.restart_connector(State::Unassigned, at);
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if !only_failed || c.inst.state == State::Failed {
        c.restart_connector(State::Restarting, at);
    }
    if include_tasks {
        let selected: Vec<usize> = c
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| !only_failed || t.inst.state == State::Failed)
            .map(|(i, _)| i)
            .collect();
        for i in selected {
            c.restart_task(i, State::Restarting, at);
        }
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        c.status(&workers, version.as_deref()),
    ))
}

async fn restart_task(
    AxState(s): AxState<Shared>,
    Path((name, task)): Path<(String, String)>,
) -> Result<Response> {
    let id = task_id(&task)?;
    let mut w = lock(&s);
    w.check_rebalance()?;
    w.settle();
    let at = Instant::now() + w.restart_delay;
    let c = w.get_mut(&name, || format!("Unknown connector: {name}"))?;
    let i = c
        .tasks
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(|| ConnectFakeError::new(404, format!("Unknown task: {name}-{id}")))?;
    c.restart_task(i, State::Unassigned, at);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn pause(AxState(s): AxState<Shared>, Path(name): Path<String>) -> Result<Response> {
    let mut w = lock(&s);
    w.check_rebalance()?;
    w.settle();
    let c = w.get_mut(&name, || format!("Unknown connector {name}"))?;
    let was_stopped = c.target == State::Stopped;
    c.target = State::Paused;
    if was_stopped {
        c.rebuild_tasks()?;
    }
    set_running_instances(c, State::Paused);
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn resume(AxState(s): AxState<Shared>, Path(name): Path<String>) -> Result<Response> {
    let mut w = lock(&s);
    w.check_rebalance()?;
    w.settle();
    let c = w.get_mut(&name, || format!("Unknown connector {name}"))?;
    let was_stopped = c.target == State::Stopped;
    c.target = State::Running;
    if was_stopped {
        c.rebuild_tasks()?;
    }
    set_running_instances(c, State::Running);
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Pause/resume move the non-failed instances; a FAILED instance stays FAILED until restarted.
fn set_running_instances(c: &mut Connector, to: State) {
    if c.inst.state != State::Failed {
        c.inst.state = to;
        c.inst.pending = None;
    }
    for t in &mut c.tasks {
        if t.inst.state != State::Failed {
            t.inst.state = to;
            t.inst.pending = None;
        }
    }
}

async fn stop(AxState(s): AxState<Shared>, Path(name): Path<String>) -> Result<Response> {
    let mut w = lock(&s);
    w.check_rebalance()?;
    let c = w.get_mut(&name, || format!("Unknown connector {name}"))?;
    c.target = State::Stopped;
    c.inst = Instance::new(State::Stopped, c.index);
    c.tasks.clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}
