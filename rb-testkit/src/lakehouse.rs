//! [`FakeLakehouse`]: every fake the seed runbook's seven situations need, started in one call and
//! wired into one consistent lakehouse, with a method to bring about each situation and one to let
//! it heal.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), rb_testkit::lakehouse::LakehouseError> {
//! use rb_testkit::lakehouse::{FakeLakehouse, FlinkFailure};
//!
//! let lake = FakeLakehouse::start().await?;
//! lake.connector_failed("orders-cdc", "org.apache.kafka.connect.errors.ConnectException: binlog gone")?;
//! lake.flink_job_restarting(FlinkFailure::Schema)?;
//! // ... run the playbook against lake.targets() / lake.connect().base_url() / … ...
//! lake.heal_connector("orders-cdc")?;
//! lake.heal_flink()?;
//! # Ok(()) }
//! ```
//!
//! # What is in it
//!
//! | system | fake | wiring | target |
//! | --- | --- | --- | --- |
//! | Kafka | [`FakeKafka`], 3 brokers | topic [`ORDERS_TOPIC`] ([`ORDERS_PARTITIONS`] partitions, replication 3); group [`FLINK_GROUP`] committed [`BASELINE_LAG`] behind on every partition | `kafka/kafka-main` |
//! | Kafka Connect | [`FakeKafkaConnect`] | source [`CDC_CONNECTOR`] (2 tasks, writes `orders`), sink [`SINK_CONNECTOR`] (1 task) | `kafka-connect/connect-main` |
//! | Flink | [`FakeFlink`], 1 TaskManager × 4 slots | job [`FLINK_JOB`]: `Source: orders` → `enrich -> Sink: paimon`, parallelism 2 | `flink/flink-main` |
//! | Cassandra | [`FakeRing`], 3 nodes on `127.0.0.1..3` | keyspace `lake` | `cassandra/cassandra-main` |
//! | Nessie | [`FakeNessie`] | `main` with commits on `lake.orders` and `lake.payments`, branch [`BACKUP_BRANCH`] at `main` | `nessie/nessie-main` |
//! | MinIO | [`FakeMinio`], 4 nodes × 4 drives | 1 TiB usable, half free | `minio/minio-main` |
//! | Trino | [`FakeTrino`] | one finished query, nothing queued | `trino/trino-main` |
//! | Prometheus | [`FakePrometheus`] | live series read from the other fakes (below) | `prometheus/prometheus-main` |
//! | Loki | [`FakeLoki`] | the situations log what the real containers log | `loki/loki-main` |
//!
//! Alertmanager: [`FakeLakehouse::alertmanager`] is an Alertmanager **API** fake
//! ([`FakeAlertmanager`]: `GET`/`POST /api/v2/alerts`, the real response shape, fingerprints,
//! silences), what a post-recovery checklist or a reconcile at start asks; and
//! [`FakeLakehouse::alert_sender`] gives a **sender** that posts webhooks to your receiver, as
//! Alertmanager notifies one.
//!
//! | PostgreSQL | [`FakePostgres`] | `max_connections` 100; database `lake`, [`DB_BASELINE_SESSIONS`] idle sessions of the application | `postgres/postgres-main` |
//! | MySQL | [`FakeMysql`] (MariaDB 10.11) | `max_connections` 151; [`DB_BASELINE_SESSIONS`] sleeping connections of the application | `mysql/mysql-main` |
//!
//! [`FakeLakehouse::db_saturation`] opens real (scripted) sessions on either database: the
//! probes' `pg_stat_activity` / processlist and the exporter series in Prometheus agree.
//!
//! ## Prometheus series
//!
//! Live series follow the fakes' state at every query ([`FakePrometheus::gauge_fn`]), so the metric
//! and the REST API never disagree:
//!
//! | series | from |
//! | --- | --- |
//! | `kafka_consumer_fetch_manager_metrics_records_lag_max{client_id="flink-orders",topic="orders"}` | the largest partition lag of [`FLINK_GROUP`] (the Kafka model) |
//! | `kafka_connect_connector_failed_task_count{connector}` (both connectors) | FAILED tasks of the connector |
//! | `kafka_connect_worker_connector_count` | connectors |
//! | `flink_jobmanager_job_numRestarts{job_name="orders-enrichment"}` | the job's restarts |
//! | `trino_execution_queuedqueries` | QUEUED queries |
//! | `minio_cluster_capacity_usable_free_bytes` | MinIO's usable free bytes |
//! | `pg_stat_database_numbackends{datname="lake"}`, `pg_settings_max_connections` | [`FakePostgres`]'s client sessions on `lake` and its setting |
//! | `mysql_global_status_threads_connected`, `mysql_global_variables_max_connections` | [`FakeMysql`]'s client connections and its variable |
//!
//! # Time
//!
//! Everything the lakehouse and the HTTP fakes do is computed from **tokio's** clock (Flink's
//! state machine, Connect's restart delay, Loki and Prometheus "now", Cassandra gossip heartbeats,
//! [`LagTimeline`] steps), and nothing runs a timer of its own: a test on a paused clock
//! (`start_paused = true`) moves them all with `tokio::time::advance`. What was found about the
//! two native clients:
//!
//! * **librdkafka** (inside [`FakeKafka`] and in any rdkafka client under test) keeps its own
//!   threads and wall-clock timers (mock broker RTT, metadata refresh, socket and request
//!   timeouts). The fake's seeding calls are blocking and complete in milliseconds of real time, so
//!   a paused tokio clock cannot auto-advance while they run. An rdkafka call in the code under
//!   test (e.g. `fetch_metadata` with a timeout, run through `spawn_blocking`) waits in **real**
//!   time: its timeout is not skipped by the paused clock, and nothing on tokio's clock can race
//!   it (tokio does not auto-advance while a blocking task is pending).
//! * **cdrs-tokio** runs on tokio (its timeouts and reconnection back-off are tokio timers, so a
//!   paused clock skips them), and the fake ring's server tasks are tokio tasks; the fake pushes
//!   `STATUS_CHANGE` events at once instead of waiting for a failure detector. Building a session
//!   on a refused contact point (a node taken down by
//!   [`cassandra_node_down`](FakeLakehouse::cassandra_node_down)) does not fail fast: the driver
//!   retries on its reconnection back-off, so on a paused clock the caller's own deadline passes
//!   (virtually, at once) — bound every session build with `tokio::time::timeout`.
//! * **Loki**: the situations log at the fake's "now"; `query_range`'s `end` (default now) is
//!   exclusive, as in Loki, so on a paused clock a line is returned once tokio time has moved on.
//! * **reqwest**: build clients with `pool_idle_timeout(None)`; the idle-pool timer otherwise lets
//!   a paused clock jump ahead.
//!
//! # Decoys
//!
//! The lakehouse issue asks for look-alikes that must **not** open an incident:
//! [`kafka_lag_spike`](FakeLakehouse::kafka_lag_spike) (lag above threshold for a short while),
//! [`quiet_topic`](FakeLakehouse::quiet_topic) (a topic whose consumer does not move because
//! nothing new arrives), [`pause_connector`](FakeLakehouse::pause_connector) (a connector paused on
//! purpose) and [`probe_timeout_once`](FakeLakehouse::probe_timeout_once) (one request of a probe
//! hangs, then the system answers again).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rb_core::Target;
use tokio::task::JoinHandle;

use crate::cassandra::{CassandraFakeError, FakeRing, Replication};
use crate::http::alertmanager::{AlertmanagerSender, FakeAlertmanager};
use crate::http::flink::{FakeFlink, FakeFlinkError, FlinkConfig, JobSpec};
use crate::http::kafka_connect::{ConnectFakeError, ConnectorType, FakeKafkaConnect};
use crate::http::loki::FakeLoki;
use crate::http::minio::FakeMinio;
use crate::http::nessie::{FakeNessie, NessieFakeError};
use crate::http::prometheus::FakePrometheus;
use crate::http::trino::{FakeTrino, QuerySpec, QueryState};
use crate::http::{FakeHttp, Fault};
use crate::kafka::{FakeKafka, FakeKafkaError, LagTimeline};
use crate::mysql::{FakeMysql, MyProcess, MysqlFakeError};
use crate::postgres::{FakePostgres, PgFakeError, PgSession};
use std::sync::Arc;

/// The topic the pipeline reads (CDC of the orders table).
pub const ORDERS_TOPIC: &str = "orders";
/// Partitions of [`ORDERS_TOPIC`].
pub const ORDERS_PARTITIONS: i32 = 6;
/// The consumer group of the Flink job's Kafka source.
pub const FLINK_GROUP: &str = "flink-orders";
/// Lag of [`FLINK_GROUP`] on every partition when healthy (records in flight).
pub const BASELINE_LAG: i64 = 20;
/// The Flink job consuming [`ORDERS_TOPIC`].
pub const FLINK_JOB: &str = "orders-enrichment";
/// The CDC source connector (Debezium-style; writes [`ORDERS_TOPIC`]).
pub const CDC_CONNECTOR: &str = "orders-cdc";
/// The sink connector.
pub const SINK_CONNECTOR: &str = "payments-sink";
/// The Nessie branch the runbook merges back from.
pub const BACKUP_BRANCH: &str = "backup";
/// The Nessie table key the Paimon sink commits.
pub const ORDERS_TABLE: &str = "lake.orders";
/// The application role / user whose sessions fill the databases.
pub const DB_APP_USER: &str = "orders_app";
/// The `application_name` of the application's PostgreSQL sessions.
pub const DB_APP_NAME: &str = "orders-api";
/// Client sessions of the application on each database when healthy.
pub const DB_BASELINE_SESSIONS: usize = 10;
/// The quiet topic of [`FakeLakehouse::quiet_topic`].
pub const QUIET_TOPIC: &str = "orders-audit";
/// The group reading [`QUIET_TOPIC`].
pub const QUIET_GROUP: &str = "audit-archiver";
/// The Loki labels of the Flink JobManager's container (the runbook's `container="flink-jobmanager"`).
pub const FLINK_LOG_LABELS: &[(&str, &str)] = &[("container", "flink-jobmanager")];
/// The Loki labels of the Kafka Connect worker's container.
pub const CONNECT_LOG_LABELS: &[(&str, &str)] = &[("container", "connect")];

/// An error starting the lakehouse or scripting one of its fakes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LakehouseError {
    /// An HTTP fake could not start.
    #[error("fake lakehouse: cannot start a server: {0}")]
    Io(#[from] std::io::Error),
    /// The Kafka fake refused.
    #[error("fake lakehouse: kafka: {0}")]
    Kafka(#[from] FakeKafkaError),
    /// The Flink fake refused.
    #[error("fake lakehouse: flink: {0}")]
    Flink(#[from] FakeFlinkError),
    /// The Cassandra fake refused.
    #[error("fake lakehouse: cassandra: {0}")]
    Cassandra(#[from] CassandraFakeError),
    /// The Kafka Connect fake refused.
    #[error("fake lakehouse: kafka connect: {0}")]
    Connect(#[from] ConnectFakeError),
    /// The Nessie fake refused.
    #[error("fake lakehouse: nessie: {0}")]
    Nessie(#[from] NessieFakeError),
    /// The PostgreSQL fake refused.
    #[error("fake lakehouse: postgres: {0}")]
    Postgres(#[from] PgFakeError),
    /// The MySQL fake refused.
    #[error("fake lakehouse: mysql: {0}")]
    Mysql(#[from] MysqlFakeError),
    /// A situation method was given something the lakehouse does not have.
    #[error("fake lakehouse: {0}")]
    Invalid(String),
}

/// Result of the lakehouse methods.
pub type Result<T> = std::result::Result<T, LakehouseError>;

/// Why the Flink job restarts in [`FakeLakehouse::flink_job_restarting`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlinkFailure {
    /// A schema change upstream the Paimon type mapping does not allow: a crash loop with
    /// `org.apache.paimon.schema.SchemaChangeException` (the runbook's "logs show schema errors").
    Schema,
    /// The only TaskManager is lost: RESTARTING, then CREATED waiting for slots until one comes
    /// back (the runbook's "scale out TaskManagers").
    LostTaskManager,
    /// A crash loop with this exception (first line `"<class>: <message>"`).
    Exception(String),
}

/// The HTTP systems of the lakehouse, for [`FakeLakehouse::probe_timeout_once`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpSystem {
    /// Kafka Connect REST.
    Connect,
    /// Flink REST.
    Flink,
    /// Nessie API port.
    Nessie,
    /// Nessie management port (`/q/health`).
    NessieManagement,
    /// MinIO.
    Minio,
    /// Trino coordinator.
    Trino,
    /// Prometheus.
    Prometheus,
    /// Loki.
    Loki,
    /// Alertmanager's API.
    Alertmanager,
}

/// The databases of [`FakeLakehouse::db_saturation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Database {
    /// [`FakePostgres`] (`postgres-main`).
    Postgres,
    /// [`FakeMysql`] (`mysql-main`).
    Mysql,
}

/// What the situation methods changed, so the heal methods undo exactly that.
#[derive(Debug, Default)]
struct Script {
    flink_lost_taskmanager: bool,
    flink_crash_loop: bool,
    cassandra_down: Vec<usize>,
    trino_queued: Vec<String>,
    trino_heavy: Option<String>,
    lag_spike: Option<JoinHandle<()>>,
    pg_added: Vec<i32>,
    my_added: Vec<u64>,
}

/// The lakehouse: one of each fake, wired together (see the [module docs](self)). Dropping it stops
/// every fake.
#[derive(Debug)]
pub struct FakeLakehouse {
    kafka: FakeKafka,
    connect: FakeKafkaConnect,
    flink: FakeFlink,
    flink_job: String,
    flink_source: String,
    cassandra: FakeRing,
    nessie: FakeNessie,
    minio: FakeMinio,
    trino: FakeTrino,
    prometheus: FakePrometheus,
    loki: FakeLoki,
    postgres: Arc<FakePostgres>,
    mysql: Arc<FakeMysql>,
    alertmanager: FakeAlertmanager,
    script: Mutex<Script>,
}

impl Drop for FakeLakehouse {
    fn drop(&mut self) {
        if let Some(task) = self.script().lag_spike.take() {
            task.abort();
        }
    }
}

impl FakeLakehouse {
    /// Start every fake and wire them (well under a second). Needs a tokio runtime; the
    /// Cassandra ring binds `127.0.0.1`–`127.0.0.3` on one shared port.
    pub async fn start() -> Result<FakeLakehouse> {
        // Kafka: the orders topic, read by the Flink job's group a little behind.
        let kafka = FakeKafka::start(3)?;
        kafka.create_topic(ORDERS_TOPIC, ORDERS_PARTITIONS, 3)?;
        kafka.produce_all(ORDERS_TOPIC, &vec![200; ORDERS_PARTITIONS as usize])?;
        kafka.set_uniform_lag(FLINK_GROUP, ORDERS_TOPIC, BASELINE_LAG)?;
        kafka.clear_requests()?;

        // Kafka Connect: the CDC source writing `orders`, a sink.
        let connect = FakeKafkaConnect::start().await?;
        let mut cdc = std::collections::BTreeMap::new();
        cdc.insert(
            "connector.class".to_string(),
            "io.debezium.connector.mysql.MySqlConnector".to_string(),
        );
        cdc.insert("tasks.max".to_string(), "2".to_string());
        cdc.insert("topic.prefix".to_string(), "lake".to_string());
        cdc.insert("table.include.list".to_string(), "shop.orders".to_string());
        connect.add_connector_with_config(CDC_CONNECTOR, ConnectorType::Source, cdc)?;
        connect.add_connector(SINK_CONNECTOR, ConnectorType::Sink, 1)?;

        // Flink: one TaskManager, so losing it leaves the job without slots until one is added.
        let flink = FakeFlink::start_with(FlinkConfig {
            taskmanagers: 1,
            ..FlinkConfig::default()
        })
        .await?;
        let flink_job = flink.add_job(
            JobSpec::new(FLINK_JOB)
                .vertex(&format!("Source: {ORDERS_TOPIC}"), 2)
                .vertex("enrich -> Sink: paimon", 2),
        )?;
        let flink_source = flink
            .vertices(&flink_job)?
            .into_iter()
            .next()
            .map(|(id, _, _)| id)
            .ok_or_else(|| LakehouseError::Invalid("the Flink job has no source".into()))?;

        // Cassandra: three nodes, one keyspace.
        let cassandra = FakeRing::builder()
            .nodes(3)
            .keyspace("lake", Replication::Simple(3))
            .start()
            .await?;

        // Nessie: main with a few commits, a backup branch at main.
        let nessie = FakeNessie::start().await?;
        nessie.commit_with_message("main", &[ORDERS_TABLE], "paimon: create lake.orders")?;
        nessie.commit_with_message("main", &["lake.payments"], "paimon: create lake.payments")?;
        nessie.commit_with_message("main", &[ORDERS_TABLE], "paimon: commit lake.orders")?;
        nessie.create_branch(BACKUP_BRANCH, "main")?;

        let minio = FakeMinio::start(4, 4).await?;
        let trino = FakeTrino::start().await?;
        let done = trino.add_query(QuerySpec::new(
            "analyst",
            "SELECT count(*) FROM lake.orders",
        ));
        trino.set_state(&done, QueryState::Finished);
        let loki = FakeLoki::start().await?;
        let alertmanager = FakeAlertmanager::start().await?;

        // Databases: the application's sessions, a few background processes.
        let postgres = Arc::new(
            FakePostgres::builder()
                .setting("max_connections", "100")
                .start()
                .await?,
        );
        for b in [
            "autovacuum launcher",
            "logical replication launcher",
            "checkpointer",
        ] {
            postgres.add_session(PgSession::background(b));
        }
        let mysql = Arc::new(FakeMysql::start().await?);
        mysql.add_process(MyProcess::daemon("Waiting on empty queue"));
        for _ in 0..DB_BASELINE_SESSIONS {
            postgres.add_session(
                PgSession::client(DB_APP_USER, "lake")
                    .app(DB_APP_NAME)
                    .query("SELECT id, status FROM orders WHERE id = $1"),
            );
            mysql.add_process(
                MyProcess::client(DB_APP_USER, "10.0.3.7:41234")
                    .db("shop")
                    .sleeping(3),
            );
        }

        // Prometheus: live series from the fakes.
        let prometheus = FakePrometheus::start().await?;
        {
            let kafka = kafka.clone();
            prometheus.gauge_fn(
                "kafka_consumer_fetch_manager_metrics_records_lag_max",
                &[("client_id", FLINK_GROUP), ("topic", ORDERS_TOPIC)],
                move || {
                    kafka
                        .lag(FLINK_GROUP, ORDERS_TOPIC)
                        .ok()
                        .and_then(|lags| lags.into_iter().flatten().max())
                        .map_or(f64::NAN, |l| l as f64)
                },
            );
        }
        for c in [CDC_CONNECTOR, SINK_CONNECTOR] {
            prometheus.gauge_fn(
                "kafka_connect_connector_failed_task_count",
                &[("connector", c)],
                connect.failed_task_gauge(c),
            );
        }
        prometheus.gauge_fn(
            "kafka_connect_worker_connector_count",
            &[],
            connect.connector_count_gauge(),
        );
        prometheus.gauge_fn(
            "flink_jobmanager_job_numRestarts",
            &[("job_name", FLINK_JOB)],
            flink.num_restarts_gauge(&flink_job),
        );
        prometheus.gauge_fn("trino_execution_queuedqueries", &[], trino.queued_gauge());
        prometheus.gauge_fn(
            "minio_cluster_capacity_usable_free_bytes",
            &[],
            minio.usable_free_gauge(),
        );

        {
            let pg = postgres.clone();
            prometheus.gauge_fn(
                "pg_stat_database_numbackends",
                &[("datname", "lake")],
                move || {
                    pg.sessions()
                        .iter()
                        .filter(|s| {
                            s.backend_type == "client backend"
                                && s.datname.as_deref() == Some("lake")
                        })
                        .count() as f64
                },
            );
            prometheus.set("pg_settings_max_connections", &[], 100.0);
            let my = mysql.clone();
            prometheus.gauge_fn("mysql_global_status_threads_connected", &[], move || {
                my.processes()
                    .iter()
                    .filter(|p| p.command != "Daemon")
                    .count() as f64
            });
            prometheus.set("mysql_global_variables_max_connections", &[], 151.0);
        }

        Ok(FakeLakehouse {
            kafka,
            connect,
            flink,
            flink_job,
            flink_source,
            cassandra,
            nessie,
            minio,
            trino,
            prometheus,
            loki,
            postgres,
            mysql,
            alertmanager,
            script: Mutex::new(Script::default()),
        })
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    // -----------------------------------------------------------------------------------------
    // Accessors
    // -----------------------------------------------------------------------------------------

    /// The Kafka cluster.
    pub fn kafka(&self) -> &FakeKafka {
        &self.kafka
    }

    /// Kafka's `bootstrap.servers`.
    pub fn kafka_bootstrap(&self) -> &str {
        self.kafka.bootstrap_servers()
    }

    /// The Kafka Connect worker.
    pub fn connect(&self) -> &FakeKafkaConnect {
        &self.connect
    }

    /// The Flink JobManager.
    pub fn flink(&self) -> &FakeFlink {
        &self.flink
    }

    /// The id of the [`FLINK_JOB`] job (32 hex digits).
    pub fn flink_job_id(&self) -> &str {
        &self.flink_job
    }

    /// The Cassandra ring.
    pub fn cassandra(&self) -> &FakeRing {
        &self.cassandra
    }

    /// Cassandra contact points (`127.0.0.1..3:<port>`).
    pub fn cassandra_contact_points(&self) -> Vec<std::net::SocketAddr> {
        self.cassandra.contact_points()
    }

    /// Nessie (API and management ports).
    pub fn nessie(&self) -> &FakeNessie {
        &self.nessie
    }

    /// MinIO.
    pub fn minio(&self) -> &FakeMinio {
        &self.minio
    }

    /// The Trino coordinator.
    pub fn trino(&self) -> &FakeTrino {
        &self.trino
    }

    /// Prometheus.
    pub fn prometheus(&self) -> &FakePrometheus {
        &self.prometheus
    }

    /// Loki.
    pub fn loki(&self) -> &FakeLoki {
        &self.loki
    }

    /// PostgreSQL (`max_connections` 100).
    pub fn postgres(&self) -> &FakePostgres {
        &self.postgres
    }

    /// MySQL / MariaDB (`max_connections` 151).
    pub fn mysql(&self) -> &FakeMysql {
        &self.mysql
    }

    /// Alertmanager's API (no alert at start).
    pub fn alertmanager(&self) -> &FakeAlertmanager {
        &self.alertmanager
    }

    /// An Alertmanager stand-in that posts webhook payloads to `receiver_url` (receiver `rb`,
    /// grouped by `alertname`, external URL of a lakehouse Alertmanager).
    pub fn alert_sender(&self, receiver_url: &str) -> AlertmanagerSender {
        AlertmanagerSender::new(receiver_url)
            .receiver("rb")
            .group_by(&["alertname"])
    }

    /// The HTTP server behind `system` (request record, fault injection, refuse/restore).
    pub fn http(&self, system: HttpSystem) -> &FakeHttp {
        match system {
            HttpSystem::Connect => self.connect.http(),
            HttpSystem::Flink => self.flink.http(),
            HttpSystem::Nessie => self.nessie.api(),
            HttpSystem::NessieManagement => self.nessie.management(),
            HttpSystem::Minio => self.minio.http(),
            HttpSystem::Trino => self.trino.http(),
            HttpSystem::Prometheus => self.prometheus.http(),
            HttpSystem::Loki => self.loki.http(),
            HttpSystem::Alertmanager => self.alertmanager.http(),
        }
    }

    /// One [`Target`] per system, named `<system>-main`, labelled with where it listens (`url`,
    /// `bootstrap` for Kafka, `contact` for Cassandra, `management_url` for Nessie):
    /// `kafka-main`, `connect-main`, `flink-main`, `cassandra-main`, `nessie-main`, `minio-main`,
    /// `trino-main`, `prometheus-main`, `loki-main`, `postgres-main`, `mysql-main` (`addr`).
    pub fn targets(&self) -> Vec<Target> {
        let contact = self
            .cassandra
            .contact_points()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        vec![
            Target::new("kafka", "kafka-main").label("bootstrap", self.kafka.bootstrap_servers()),
            Target::new("kafka-connect", "connect-main").label("url", self.connect.base_url()),
            Target::new("flink", "flink-main").label("url", self.flink.base_url()),
            Target::new("cassandra", "cassandra-main").label("contact", contact),
            Target::new("nessie", "nessie-main")
                .label("url", self.nessie.api_url())
                .label("management_url", self.nessie.management_url()),
            Target::new("minio", "minio-main").label("url", self.minio.base_url()),
            Target::new("trino", "trino-main").label("url", self.trino.http().base_url()),
            Target::new("prometheus", "prometheus-main").label("url", self.prometheus.base_url()),
            Target::new("loki", "loki-main").label("url", self.loki.http().base_url()),
            Target::new("postgres", "postgres-main")
                .label("addr", self.postgres.addr().to_string()),
            Target::new("mysql", "mysql-main").label("addr", self.mysql.addr().to_string()),
        ]
    }

    /// The target named `name` (e.g. `"flink-main"`), if any.
    pub fn target(&self, name: &str) -> Option<Target> {
        self.targets().into_iter().find(|t| t.name == name)
    }

    // -----------------------------------------------------------------------------------------
    // §4 Kafka backlog grows
    // -----------------------------------------------------------------------------------------

    /// **Kafka backlog grows.** The Flink job falls behind: `lag` records on every partition of
    /// [`ORDERS_TOPIC`] for [`FLINK_GROUP`] (producers keep writing, the group's committed offsets
    /// stay), so `records_lag_max` is `lag`; the job's Kafka source reports the whole backlog as
    /// `pendingRecords`.
    pub fn kafka_backlog(&self, lag: i64) -> Result<()> {
        self.kafka.set_uniform_lag(FLINK_GROUP, ORDERS_TOPIC, lag)?;
        self.sync_pending()
    }

    /// Heal the backlog: the group catches up (commits forward) to [`BASELINE_LAG`].
    pub fn heal_kafka_backlog(&self) -> Result<()> {
        if let Some(task) = self.script().lag_spike.take() {
            task.abort();
        }
        self.kafka
            .set_uniform_lag(FLINK_GROUP, ORDERS_TOPIC, BASELINE_LAG)?;
        self.sync_pending()
    }

    fn sync_pending(&self) -> Result<()> {
        let total = self.kafka.total_lag(FLINK_GROUP, ORDERS_TOPIC)?;
        self.flink.set_pending_records(
            &self.flink_job,
            &self.flink_source,
            u64::try_from(total).unwrap_or(0),
        )?;
        Ok(())
    }

    /// **Decoy: a short lag spike.** A burst of writes puts `lag` on every partition now; the group
    /// catches up to [`BASELINE_LAG`] after `duration` of tokio time (a task on the lakehouse's
    /// runtime, driving a [`LagTimeline`]). A symptom with a `for` longer than `duration` must not
    /// fire.
    pub fn kafka_lag_spike(&self, lag: i64, duration: Duration) -> Result<()> {
        self.kafka.set_uniform_lag(FLINK_GROUP, ORDERS_TOPIC, lag)?;
        let timeline = LagTimeline::new(FLINK_GROUP, ORDERS_TOPIC)
            .step(Duration::ZERO, lag)
            .step(duration, BASELINE_LAG);
        let kafka = self.kafka.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = timeline.drive(&kafka).await {
                tracing::warn!("fake lakehouse: lag spike timeline failed: {e}");
            }
        });
        if let Some(old) = self.script().lag_spike.replace(task) {
            old.abort();
        }
        Ok(())
    }

    /// **Decoy: a slow topic with no new messages.** Creates [`QUIET_TOPIC`] (1 partition, 50
    /// records) read by [`QUIET_GROUP`] up to its end: lag 0, and the group's committed offset never
    /// moves because nothing new arrives. A "consumer stuck" check must read this as idle, not
    /// stalled. Idempotent.
    pub fn quiet_topic(&self) -> Result<()> {
        if !self.kafka.topics()?.iter().any(|t| t == QUIET_TOPIC) {
            self.kafka.create_topic(QUIET_TOPIC, 1, 3)?;
            self.kafka.produce(QUIET_TOPIC, 0, 50)?;
        }
        self.kafka.set_uniform_lag(QUIET_GROUP, QUIET_TOPIC, 0)?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // §4 Flink job restarts repeatedly
    // -----------------------------------------------------------------------------------------

    /// **Flink job restarts repeatedly.** [`FlinkFailure::Schema`] and
    /// [`FlinkFailure::Exception`]: the job fails at once and again shortly after each restart
    /// (`/jobs/<id>/status` RESTARTING during the restart delay, `numRestarts` grows, one exception
    /// per failure), and the JobManager logs the exception to Loki under
    /// `container="flink-jobmanager"`. [`FlinkFailure::LostTaskManager`]: the only TaskManager is
    /// lost; the job restarts and waits in CREATED for slots.
    pub fn flink_job_restarting(&self, failure: FlinkFailure) -> Result<()> {
        let exception = match failure {
            FlinkFailure::LostTaskManager => {
                let tm = self.flink.lose_taskmanager()?;
                self.script().flink_lost_taskmanager = true;
                self.loki.log(
                    FLINK_LOG_LABELS,
                    &format!(
                        "WARN  org.apache.flink.runtime.jobmaster.JobMaster - TaskManager with id {tm} is no longer reachable."
                    ),
                );
                return Ok(());
            }
            FlinkFailure::Schema => "org.apache.paimon.schema.SchemaChangeException: Cannot apply schema change: column 'amount' type changed from INT to STRING (allow_non_string_to_string is false)".to_string(),
            FlinkFailure::Exception(text) => text,
        };
        self.flink.crash_loop(&self.flink_job, &exception)?;
        self.script().flink_crash_loop = true;
        self.loki.log(
            FLINK_LOG_LABELS,
            &format!(
                "INFO  org.apache.flink.runtime.executiongraph.ExecutionGraph - Job {FLINK_JOB} ({}) switched from state RUNNING to RESTARTING.\n{exception}",
                self.flink_job
            ),
        );
        Ok(())
    }

    /// Heal Flink: a crash loop ends (the next restart succeeds: the fixed JAR is deployed), a lost
    /// TaskManager is replaced (a new one registers and the job runs again after resource
    /// stabilisation).
    pub fn heal_flink(&self) -> Result<()> {
        let (lost, crash) = {
            let mut s = self.script();
            (
                std::mem::take(&mut s.flink_lost_taskmanager),
                std::mem::take(&mut s.flink_crash_loop),
            )
        };
        if crash {
            self.flink.heal(&self.flink_job)?;
        }
        if lost {
            self.flink.add_taskmanager();
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // §4 Cassandra node down
    // -----------------------------------------------------------------------------------------

    /// **Cassandra node down.** Node `n` (0-based, `127.0.0.<n+1>`) crashes: it refuses
    /// connections, `nodetool status` shows it `DN`, the live nodes push `STATUS_CHANGE DOWN`.
    pub fn cassandra_node_down(&self, n: usize) -> Result<()> {
        self.cassandra.kill(n)?;
        let mut s = self.script();
        if !s.cassandra_down.contains(&n) {
            s.cassandra_down.push(n);
        }
        Ok(())
    }

    /// Heal Cassandra: every node taken down by [`cassandra_node_down`](Self::cassandra_node_down)
    /// restarts (same address, new gossip generation, `STATUS_CHANGE UP`, `UN` again).
    pub async fn heal_cassandra(&self) -> Result<()> {
        let down = std::mem::take(&mut self.script().cassandra_down);
        for n in down {
            self.cassandra.revive(n).await?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // §4 Paimon/Nessie cannot commit
    // -----------------------------------------------------------------------------------------

    /// **Paimon/Nessie cannot commit.** Another writer changes [`ORDERS_TABLE`] on both `main` and
    /// [`BACKUP_BRANCH`] (the fake's `conflicting_commit`): a Paimon sink committing on
    /// `main@<the hash it read before>` with that table gets 409 `REFERENCE_CONFLICT`
    /// (`VALUE_DIFFERS`), and the runbook's merge of `backup` into `main` conflicts on the key.
    /// Returns `(main's hash before the conflict, backup HEAD, main HEAD)`.
    pub fn nessie_commit_conflict(&self) -> Result<(String, String, String)> {
        let before = self
            .nessie
            .head("main")
            .ok_or_else(|| LakehouseError::Invalid("nessie has no main branch".into()))?;
        let (backup, main) = self
            .nessie
            .conflicting_commit(BACKUP_BRANCH, "main", ORDERS_TABLE)?;
        Ok((before, backup, main))
    }

    /// Heal Nessie: the conflict is resolved the way an operator does it, by re-cutting
    /// [`BACKUP_BRANCH`] at `main`'s HEAD (a reference assign); a merge of `backup` into `main`
    /// then has nothing to conflict on, and writers re-reading `main` commit again. Also brings the
    /// health checks back UP.
    pub fn heal_nessie(&self) -> Result<()> {
        self.nessie.assign_branch(BACKUP_BRANCH, "main")?;
        self.nessie.set_health_up();
        Ok(())
    }

    /// **Paimon/Nessie cannot commit — MinIO side.** The runbook's other check for this situation:
    /// MinIO's usable free space drops to `free_bytes` (`minio_cluster_capacity_usable_free_bytes`
    /// in MinIO's v2 metrics and in Prometheus follows).
    pub fn minio_low_on_space(&self, free_bytes: u64) {
        self.minio.set_usable_free(free_bytes);
    }

    /// Heal MinIO's space: half of the usable capacity free again (as at start).
    pub fn heal_minio(&self) {
        self.minio.set_usable_free(1 << 39);
    }

    // -----------------------------------------------------------------------------------------
    // §4 Kafka Connect connector fails
    // -----------------------------------------------------------------------------------------

    /// **Kafka Connect connector fails.** Every task of `name` goes FAILED with `trace` (REST
    /// status and `kafka_connect_connector_failed_task_count` follow), and the worker logs the
    /// trace to Loki under `container="connect"`.
    pub fn connector_failed(&self, name: &str, trace: &str) -> Result<()> {
        let tasks = self.connect_task_ids(name)?;
        let worker_task = match self.connect.connector_type(name) {
            Some(ConnectorType::Sink) => "WorkerSinkTask",
            _ => "WorkerSourceTask",
        };
        for t in tasks {
            self.connect.fail_task(name, t, trace)?;
            self.loki.log(
                CONNECT_LOG_LABELS,
                &format!("ERROR {worker_task}{{id={name}-{t}}} Task threw an uncaught and unrecoverable exception. Task is being killed and will not recover until manually restarted (org.apache.kafka.connect.runtime.WorkerTask)\n{trace}"),
            );
        }
        Ok(())
    }

    fn connect_task_ids(&self, name: &str) -> Result<Vec<u32>> {
        if !self.connect.connector_names().iter().any(|n| n == name) {
            return Err(LakehouseError::Invalid(format!(
                "kafka connect has no connector {name}"
            )));
        }
        Ok((0..)
            .take_while(|t| self.connect.task_state(name, *t).is_some())
            .collect())
    }

    /// Heal a failed connector: after the cause is fixed, its FAILED connector and tasks restart
    /// (as `POST /connectors/{name}/restart?includeTasks=true&onlyFailed=true`, but without a
    /// request in the fake's record, so the code under test's own requests stay countable).
    pub fn heal_connector(&self, name: &str) -> Result<()> {
        self.connect.restart_failed(name)?;
        Ok(())
    }

    /// **Decoy: a connector paused on purpose** (`PUT /connectors/{name}/pause` by an operator):
    /// connector and tasks PAUSED, no task FAILED, `failed_task_count` 0.
    pub fn pause_connector(&self, name: &str) -> Result<()> {
        self.connect.pause_connector(name)?;
        Ok(())
    }

    /// Resume a connector paused by [`pause_connector`](Self::pause_connector).
    pub fn resume_connector(&self, name: &str) -> Result<()> {
        self.connect.resume_connector(name)?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // §4 Trino backlog grows
    // -----------------------------------------------------------------------------------------

    /// **Trino backlog grows.** One heavy query RUNNING for 20 minutes (CPU and memory far above
    /// the rest; the one to kill with `PUT /v1/query/{id}/killed`) and `n_queued` queries QUEUED
    /// behind it (`trino_execution_queuedqueries` = `n_queued`). Returns the heavy query's id.
    pub fn trino_backlog(&self, n_queued: usize) -> String {
        let heavy = self.trino.add_query(
            QuerySpec::new(
                "etl",
                "SELECT o.*, p.* FROM lake.orders o CROSS JOIN lake.payments p",
            )
            .state(QueryState::Running)
            .age(Duration::from_secs(20 * 60))
            .cpu(Duration::from_secs(4 * 3600))
            .memory_bytes(48 << 30)
            .peak_memory_bytes(52 << 30),
        );
        let queued: Vec<String> = (0..n_queued)
            .map(|i| {
                self.trino.add_query(
                    QuerySpec::new(
                        "dashboard",
                        &format!(
                            "SELECT status, count(*) FROM lake.orders GROUP BY status -- panel {i}"
                        ),
                    )
                    .state(QueryState::Queued)
                    .age(Duration::from_secs(60)),
                )
            })
            .collect();
        let mut s = self.script();
        s.trino_queued.extend(queued);
        s.trino_heavy = Some(heavy.clone());
        heavy
    }

    /// Heal Trino: the heavy query ends (FINISHED unless it was killed meanwhile) and the queued
    /// queries run and finish.
    pub fn heal_trino(&self) {
        let (queued, heavy) = {
            let mut s = self.script();
            (std::mem::take(&mut s.trino_queued), s.trino_heavy.take())
        };
        for id in heavy.into_iter().chain(queued) {
            let done = self.trino.query(&id).is_some_and(|q| q.state.is_done());
            if !done {
                self.trino.set_state(&id, QueryState::Finished);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // §4 MySQL/PostgreSQL connection saturation
    // -----------------------------------------------------------------------------------------

    /// **MySQL/PostgreSQL connection saturation.** Client sessions of the application on `db`
    /// grow to `pct` % of `max_connections` (100 on PostgreSQL, 151 on MySQL): a third of the
    /// added ones **idle in transaction** for 15 minutes (the pool leak to shed), the rest idle or
    /// running. The probes' catalog queries and the exporter series in Prometheus see them.
    /// Sessions already above `pct` are not removed (use
    /// [`heal_db_saturation`](Self::heal_db_saturation)).
    pub fn db_saturation(&self, db: Database, pct: f64) -> Result<()> {
        if !(0.0..=100.0).contains(&pct) {
            return Err(LakehouseError::Invalid(format!(
                "db_saturation: {pct} is not a percentage within 0..=100"
            )));
        }
        let max = match db {
            Database::Postgres => 100.0,
            Database::Mysql => 151.0,
        };
        let want = (pct / 100.0 * max).round() as usize;
        let have = self.db_client_sessions(db);
        let idle_tx_age = Duration::from_secs(15 * 60);
        for i in 0..want.saturating_sub(have) {
            let leaked = i % 3 == 0;
            match db {
                Database::Postgres => {
                    let s = PgSession::client(DB_APP_USER, "lake").app(DB_APP_NAME);
                    let s = if leaked {
                        s.state("idle in transaction")
                            .xact_age(idle_tx_age)
                            .state_age(idle_tx_age - Duration::from_secs(5))
                            .query("UPDATE orders SET status = 'PAID' WHERE id = 4711")
                    } else if i % 3 == 1 {
                        s.state("active")
                            .query_age(Duration::from_secs(2))
                            .query("SELECT * FROM orders WHERE customer_id = 42")
                    } else {
                        s.query("SELECT 1")
                    };
                    let pid = self.postgres.add_session(s);
                    self.script().pg_added.push(pid);
                }
                Database::Mysql => {
                    let p = MyProcess::client(DB_APP_USER, "10.0.3.7:41234").db("shop");
                    let p = if i % 3 == 1 {
                        p.running("SELECT * FROM orders WHERE customer_id = 42", 2)
                    } else {
                        p.sleeping(if leaked { 900 } else { 4 })
                    };
                    let id = self.mysql.add_process(p);
                    if leaked {
                        self.mysql.add_trx(id, idle_tx_age);
                    }
                    self.script().my_added.push(id);
                }
            }
        }
        Ok(())
    }

    /// Client sessions of the application (and any other client) on `db` now.
    pub fn db_client_sessions(&self, db: Database) -> usize {
        match db {
            Database::Postgres => self
                .postgres
                .sessions()
                .iter()
                .filter(|s| s.backend_type == "client backend")
                .count(),
            Database::Mysql => self
                .mysql
                .processes()
                .iter()
                .filter(|p| p.command != "Daemon")
                .count(),
        }
    }

    /// Heal the saturation: the application's pool shrinks back, every session added by
    /// [`db_saturation`](Self::db_saturation) that is still there goes away.
    pub fn heal_db_saturation(&self, db: Database) -> Result<()> {
        match db {
            Database::Postgres => {
                for pid in std::mem::take(&mut self.script().pg_added) {
                    self.postgres.remove_session(pid);
                }
            }
            Database::Mysql => {
                let ids = std::mem::take(&mut self.script().my_added);
                for id in ids {
                    self.mysql.remove_process(id);
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Decoy: a probe timing out once
    // -----------------------------------------------------------------------------------------

    /// **Decoy: a probe timing out once.** The next request to `system` hangs (the fake's
    /// [`Fault::Hang`], once): the probe's deadline turns it into a timeout, and the request after
    /// it is answered normally. A playbook must retry or wait, not open an incident.
    pub fn probe_timeout_once(&self, system: HttpSystem) {
        let _rule = self.http(system).faults().inject_all(Fault::Hang).times(1);
    }
}
