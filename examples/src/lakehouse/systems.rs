//! Where the lakehouse's systems listen, how to authenticate to them, and the durations the
//! playbooks use; [`Systems`] holds the clients built from them.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rb_core::{Secret, Target};
use rb_probes::sql::SqlEndpoint;
use rb_probes::transport::{HttpAuth, HttpClient, ReqwestClient};

/// Where each system of the lakehouse listens. Addresses only: credentials are in
/// [`Credentials`].
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Kafka `bootstrap.servers`.
    pub kafka_bootstrap: String,
    /// Kafka Connect REST (`http://connect:8083`).
    pub kafka_connect: String,
    /// Flink REST (`http://flink-jobmanager:8081`).
    pub flink: String,
    /// Cassandra contact points (native protocol).
    pub cassandra: Vec<SocketAddr>,
    /// Nessie's server root (`http://nessie:19120`; the v2 API is under `/api/v2`).
    pub nessie: String,
    /// Nessie's management port (`http://nessie:9000`, `/q/health`).
    pub nessie_management: String,
    /// MinIO (`http://minio:9000`).
    pub minio: String,
    /// Trino coordinator (`http://trino:8080`).
    pub trino: String,
    /// Prometheus (`http://prometheus:9090`).
    pub prometheus: String,
    /// Loki (`http://loki:3100`).
    pub loki: String,
    /// Alertmanager's API (`http://alertmanager:9093`), when the checklist may ask it.
    pub alertmanager: Option<String>,
    /// PostgreSQL (host, port, user, database; the password is in the endpoint as a [`Secret`]).
    pub postgres: Option<SqlEndpoint>,
    /// MySQL / MariaDB.
    pub mysql: Option<SqlEndpoint>,
}

/// Credentials per system, every one a [`Secret`] (never printed, journaled or reported). `None`:
/// the system needs none. The SQL passwords live in [`Endpoints::postgres`] / [`Endpoints::mysql`].
#[derive(Clone, Default)]
pub struct Credentials {
    /// Kafka SASL user and password (SCRAM-SHA-512).
    pub kafka_sasl: Option<(String, Secret)>,
    /// Cassandra user and password.
    pub cassandra: Option<(String, Secret)>,
    /// Kafka Connect REST basic auth.
    pub kafka_connect: Option<(String, Secret)>,
    /// Flink REST basic auth (behind a proxy).
    pub flink: Option<(String, Secret)>,
    /// Nessie bearer token.
    pub nessie_token: Option<Secret>,
    /// MinIO's metrics bearer token (`mc admin prometheus generate`).
    pub minio_token: Option<Secret>,
    /// Trino user and password.
    pub trino: Option<(String, Secret)>,
    /// Prometheus basic auth.
    pub prometheus: Option<(String, Secret)>,
    /// Loki basic auth.
    pub loki: Option<(String, Secret)>,
    /// Alertmanager basic auth.
    pub alertmanager: Option<(String, Secret)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secret's Debug is redacted already; user names are not secret.
        let user = |c: &Option<(String, Secret)>| c.as_ref().map(|(u, _)| u.clone());
        f.debug_struct("Credentials")
            .field("kafka_sasl", &user(&self.kafka_sasl))
            .field("cassandra", &user(&self.cassandra))
            .field("kafka_connect", &user(&self.kafka_connect))
            .field("flink", &user(&self.flink))
            .field("nessie_token", &self.nessie_token.as_ref().map(|_| "<set>"))
            .field("minio_token", &self.minio_token.as_ref().map(|_| "<set>"))
            .field("trino", &user(&self.trino))
            .field("prometheus", &user(&self.prometheus))
            .field("loki", &user(&self.loki))
            .field("alertmanager", &user(&self.alertmanager))
            .finish()
    }
}

/// The durations the playbooks use. [`Timings::seed`] holds the runbook's own values; the real-peer
/// tier shortens them ([`Timings::fast`]) so that it stays short.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// How often each detector probes.
    pub probe_every: Duration,
    /// The deadline of each probe.
    pub probe_deadline: Duration,
    /// How long a threshold must hold before an incident opens (Kafka lag, Trino queue, DB
    /// saturation, failed tasks).
    pub for_duration: Duration,
    /// How long the recovery symptom must stay clear before an incident is recovered.
    pub stable_for: Duration,
    /// How long a stage waits before the next, harsher step ("not back after 15 minutes → a
    /// replacement node").
    pub stage: Duration,
    /// How long a remediation's verification may take.
    pub verify_within: Duration,
}

impl Timings {
    /// The runbook's values: probe every 30 s (deadline 5 s), for 2 min, stable 5 min, stage
    /// 15 min, verification within 2 min.
    pub fn seed() -> Self {
        Self {
            probe_every: Duration::from_secs(30),
            probe_deadline: Duration::from_secs(5),
            for_duration: Duration::from_secs(120),
            stable_for: Duration::from_secs(300),
            stage: Duration::from_secs(900),
            verify_within: Duration::from_secs(120),
        }
    }

    /// Short values for real servers in a test tier: probe every 2 s, for 6 s, stable 10 s, stage
    /// 30 s, verification within 60 s.
    pub fn fast() -> Self {
        Self {
            probe_every: Duration::from_secs(2),
            probe_deadline: Duration::from_secs(2),
            for_duration: Duration::from_secs(6),
            stable_for: Duration::from_secs(10),
            stage: Duration::from_secs(30),
            verify_within: Duration::from_secs(60),
        }
    }
}

impl Default for Timings {
    fn default() -> Self {
        Self::seed()
    }
}

/// A client could not be built from the endpoints and credentials.
#[derive(Debug, thiserror::Error)]
#[error("lakehouse: cannot build the client of {system} ({endpoint}): {cause}")]
pub struct BuildError {
    /// The system (`flink`, `nessie`, …).
    pub system: &'static str,
    /// Its endpoint.
    pub endpoint: String,
    /// What was wrong.
    pub cause: String,
}

/// The lakehouse's systems, ready for the playbooks: one [`Target`] and one HTTP client per
/// system, the endpoints, the credentials and the timings.
#[derive(Debug, Clone)]
pub struct Systems {
    /// Where they listen.
    pub endpoints: Endpoints,
    /// How to authenticate.
    pub credentials: Credentials,
    /// The durations.
    pub timings: Timings,
    /// `kafka-main`.
    pub kafka: Target,
    /// `connect-main`.
    pub connect: Target,
    /// `flink-main`.
    pub flink: Target,
    /// `cassandra-main`.
    pub cassandra: Target,
    /// `nessie-main`.
    pub nessie: Target,
    /// `minio-main`.
    pub minio: Target,
    /// `trino-main`.
    pub trino: Target,
    /// `prometheus-main`.
    pub prometheus: Target,
    /// `loki-main`.
    pub loki: Target,
    /// `postgres-main`.
    pub postgres: Target,
    /// `mysql-main`.
    pub mysql: Target,
    /// Kafka Connect REST.
    pub connect_http: Arc<dyn HttpClient>,
    /// Flink REST.
    pub flink_http: Arc<dyn HttpClient>,
    /// Nessie API.
    pub nessie_http: Arc<dyn HttpClient>,
    /// Nessie management port.
    pub nessie_management_http: Arc<dyn HttpClient>,
    /// MinIO.
    pub minio_http: Arc<dyn HttpClient>,
    /// Trino.
    pub trino_http: Arc<dyn HttpClient>,
    /// Prometheus.
    pub prometheus_http: Arc<dyn HttpClient>,
    /// Loki.
    pub loki_http: Arc<dyn HttpClient>,
    /// Alertmanager, when configured.
    pub alertmanager_http: Option<Arc<dyn HttpClient>>,
}

fn basic(c: &Option<(String, Secret)>) -> HttpAuth {
    match c {
        Some((user, password)) => HttpAuth::Basic {
            user: user.clone(),
            password: password.clone(),
        },
        None => HttpAuth::None,
    }
}

fn bearer(c: &Option<Secret>) -> HttpAuth {
    c.clone().map(HttpAuth::Bearer).unwrap_or_default()
}

fn http(
    system: &'static str,
    url: &str,
    auth: HttpAuth,
    timeout: Duration,
) -> Result<Arc<dyn HttpClient>, BuildError> {
    let client = ReqwestClient::builder(url)
        .auth(auth)
        .timeout(timeout)
        .build()
        .map_err(|e| BuildError {
            system,
            endpoint: url.to_string(),
            cause: e.to_string(),
        })?;
    Ok(Arc::new(client))
}

impl Systems {
    /// Build every client. Nothing is contacted here.
    pub fn new(
        endpoints: Endpoints,
        credentials: Credentials,
        timings: Timings,
    ) -> Result<Self, BuildError> {
        // A request never outlives the probe deadline by much; actions pass their own timeouts.
        let t = timings.probe_deadline.max(Duration::from_secs(30));
        let c = &credentials;
        let e = &endpoints;
        let alertmanager_http = match &e.alertmanager {
            Some(url) => Some(http("alertmanager", url, basic(&c.alertmanager), t)?),
            None => None,
        };
        // The address label is set even when empty: a playbook whose system has no address is
        // left out of the runbook (`configured`).
        let target = |kind: &str, name: &str, url: &str| Target::new(kind, name).label("url", url);
        let sql_label = |s: &Option<SqlEndpoint>| {
            s.as_ref()
                .map(|s| format!("{}:{}", s.host, s.port))
                .unwrap_or_default()
        };
        Ok(Self {
            kafka: Target::new("kafka", "kafka-main").label("bootstrap", &e.kafka_bootstrap),
            connect: target("kafka-connect", "connect-main", &e.kafka_connect),
            flink: target("flink", "flink-main", &e.flink),
            cassandra: Target::new("cassandra", "cassandra-main").label(
                "contact",
                e.cassandra
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            nessie: target("nessie", "nessie-main", &e.nessie)
                .label("management_url", &e.nessie_management),
            minio: target("minio", "minio-main", &e.minio),
            trino: target("trino", "trino-main", &e.trino),
            prometheus: target("prometheus", "prometheus-main", &e.prometheus),
            loki: target("loki", "loki-main", &e.loki),
            postgres: Target::new("postgres", "postgres-main")
                .label("addr", sql_label(&e.postgres)),
            mysql: Target::new("mysql", "mysql-main").label("addr", sql_label(&e.mysql)),
            connect_http: http(
                "kafka-connect",
                &e.kafka_connect,
                basic(&c.kafka_connect),
                t,
            )?,
            flink_http: http("flink", &e.flink, basic(&c.flink), t)?,
            nessie_http: http("nessie", &e.nessie, bearer(&c.nessie_token), t)?,
            nessie_management_http: http(
                "nessie-management",
                &e.nessie_management,
                HttpAuth::None,
                t,
            )?,
            minio_http: http("minio", &e.minio, bearer(&c.minio_token), t)?,
            trino_http: http("trino", &e.trino, basic(&c.trino), t)?,
            prometheus_http: http("prometheus", &e.prometheus, basic(&c.prometheus), t)?,
            loki_http: http("loki", &e.loki, basic(&c.loki), t)?,
            alertmanager_http,
            endpoints,
            credentials,
            timings,
        })
    }
}

impl Endpoints {
    /// The endpoints of an embedded [`FakeLakehouse`](rb_testkit::lakehouse::FakeLakehouse).
    pub fn from_fake(lake: &rb_testkit::lakehouse::FakeLakehouse) -> Self {
        Self {
            kafka_bootstrap: lake.kafka_bootstrap().to_string(),
            kafka_connect: lake.connect().base_url(),
            flink: lake.flink().base_url(),
            cassandra: lake.cassandra_contact_points(),
            nessie: lake.nessie().api().base_url(),
            nessie_management: lake.nessie().management_url(),
            minio: lake.minio().base_url(),
            trino: lake.trino().http().base_url(),
            prometheus: lake.prometheus().base_url(),
            loki: lake.loki().http().base_url(),
            alertmanager: Some(lake.alertmanager().http().base_url()),
            postgres: Some(fake_sql(
                lake.postgres().addr(),
                &lake.postgres().user(),
                &lake.postgres().password(),
                Some("lake"),
            )),
            mysql: Some(fake_sql(
                lake.mysql().addr(),
                &lake.mysql().user(),
                &lake.mysql().password(),
                None,
            )),
        }
    }
}

fn fake_sql(addr: SocketAddr, user: &str, password: &str, db: Option<&str>) -> SqlEndpoint {
    let mut ep = SqlEndpoint::new(
        addr.ip().to_string(),
        addr.port(),
        user,
        Secret::new(password.to_string()),
    );
    ep.tls = rb_probes::sql::SqlTls::Disable;
    ep.database = db.map(str::to_string);
    ep
}
