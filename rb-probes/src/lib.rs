//! # rb-probes
//!
//! Native probes for the systems of the lakehouse runbook, each family behind its own cargo feature.
//! Every probe implements [`rb_core::Probe`]: read-only, under the engine's deadline, with typed errors
//! that name the target, the endpoint and what was wrong. Unknown is never healthy: a probe that cannot
//! see returns an error, one that sees part of its target returns an incomplete observation.
//!
//! Each family's logic is generic over a small client trait (so it can be tested and reused without a
//! driver), with a feature-gated adapter for the real driver. No driver type appears in a public
//! signature. Output is bounded: aggregates plus the top-k worst series, never one series per
//! partition, node or query unless asked.
//!
//! ## Cargo features
//!
//! | feature | pulls in | gives |
//! | --- | --- | --- |
//! | `kafka` | rdkafka (builds librdkafka) | [`kafka`] |
//! | `kafka-tls` (not default) | `kafka` + rdkafka's `ssl` (librdkafka with OpenSSL), rustls + tokio-rustls + rustls-native-certs, sha2 + hmac + base64 + rand | TLS and SASL SCRAM for [`kafka`], on librdkafka's connections and on rb's own offset connections (TLS, SASL PLAIN and SCRAM) |
//! | `cassandra` | cdrs-tokio (with rustls for TLS), tokio process | [`cassandra`] |
//! | `postgres` | sqlx (postgres, rustls) | [`postgres`] (shared: [`sql`]) |
//! | `mysql` | sqlx (mysql, rustls) | [`mysql`] (shared: [`sql`]) |
//! | `flink` | reqwest | [`flink`]: cluster overview, live job state, restarts, checkpoints, classified exceptions, vertex busy/back-pressure |
//! | `nessie` | reqwest | [`nessie`]: API and management health, reference HEADs, commit log, branch vs backup |
//! | `prometheus` | reqwest | [`prometheus`] (instant and range PromQL queries as rb samples), [`exposition`] (text format parser) |
//! | `http` | reqwest, regex | [`http`] (status, latency and body of one request) |
//! | `kafka-connect` | reqwest | [`kafka_connect`] (connector and task states, failed tasks' traces classified) |
//! | `trino` | reqwest | [`trino`] (queued, running, blocked queries; a SQL probe over the client protocol) |
//! | `minio` | reqwest | [`minio`] (liveness, write and read quorum, the maintenance check, free capacity from the metrics text) |
//! | `loki` | reqwest | [`loki`] (log lines of a selector over a window, as evidence) |
//! | `alertmanager` | reqwest | [`alertmanager`] (active alerts for the post-recovery checklist, the engine's reconciliation at start) |
//!
//! All are on by default; `cargo check -p rb-probes --no-default-features --features <family>` builds
//! one family alone.
//!
//! ## Every probe
//!
//! What each probe reads, what it emits (metric names with their labels, and the fact kinds a
//! symptom or a remediation reads), and the least privilege it needs. The module of each family has
//! the full metric table, the error kinds and the details.
//!
//! | feature | probe (id) | reads | emits | least privilege |
//! | --- | --- | --- | --- | --- |
//! | `kafka` | `ConsumerLagProbe` (`kafka.consumer_lag`) | Metadata, one OffsetFetch, one ListOffsets per partition leader, on every listener (through librdkafka — `native_offsets(false)`, TLS / SASL without `kafka-tls`, an encrypted client key —: per 500 partitions) | `records_lag_max{group}`, `kafka_consumergroup_lag_sum`/`_max{group[,topic]}`, top-k `kafka_consumergroup_lag{group,topic,partition}`, lag in time `kafka_consumergroup_lag_seconds*`, `kafka_consumergroup_partitions_without_commit`, `…_unobserved`, group `…_members`/`…_state`; facts `kafka.consumer_lag`, `kafka.partition_offsets` | Describe on the group and the topics |
//! | `kafka` | `ConsumerGroupProbe` (`kafka.consumer_group`) | ListGroups, DescribeGroups | `kafka_consumergroup_members{group}`, `kafka_consumergroup_state{group,state}`; fact `kafka.consumer_group` | Describe on the group |
//! | `kafka` | `TopicDescriptionProbe` (`kafka.topic_description`) | Metadata | `kafka_brokers`, `kafka_topic_partitions{topic}`, `…_replication_factor`, `…_under_replicated_partitions`, `…_offline_partitions`, `kafka_topic_in_sync_replicas_min{topic}`, top-k worst `kafka_topic_partition_{offline,under_replicated,in_sync_replicas,replicas,leader}{topic,partition}` (every partition only when asked); fact `kafka.topic_description` (counts exact, lists bounded, the worst partitions) | Describe on the topics |
//! | `kafka` | `BurrowStatus` (a symptom, not a probe) | the lag probe's `kafka.partition_offsets` facts over a window | per partition OK, WARN, STOP, STALL, REWIND or not enough data; the group's worst | — |
//! | `cassandra` | `CqlRingProbe` (`cassandra.ring`) | `system.local`, `system.peers_v2` (or `system.peers`), `system_views.gossip_info`, a direct connect per node | `cassandra_nodes`, `cassandra_nodes_up`/`_down`/`_liveness_unknown`, per state `_joining`/`_leaving`/`_moving`/`_stopped`, `cassandra_nodes_replacing`, `cassandra_nodes_missing_expected`, `cassandra_schema_versions`, `cassandra_node_up{address,datacenter,rack}`; fact `cassandra.ring` | `SELECT` on those `system` and `system_views` tables |
//! | `cassandra` | `NodetoolStatusProbe` (`cassandra.nodetool_status`) | the text of `nodetool status`, run as an argv (no shell) | the same ring metrics but the schema versions; fact `cassandra.ring`; lines not understood as gaps (line, column) | a read-only JMX user, its password in a file (`-pwf`) |
//! | `postgres` | `PgConnectionsProbe` (`postgres.connections`) | `pg_settings`, `pg_stat_activity` | `db_connections_used`, `…_max`, `…_usable`, `…_used_percent`, `…_used_percent_of_usable`, `db_connections_by_{state,user,database,application}`, `db_sessions_long_running`, `db_sessions_longest_query_seconds`, `db_sessions_idle_in_transaction`, `…_max_seconds`; facts `sql.connections`, `sql.sessions` | `pg_read_all_stats` (or `pg_monitor`) |
//! | `mysql` | `MySqlConnectionsProbe` (`mysql.connections`) | global status and variables, the processlist, `information_schema.INNODB_TRX` | the same `db_*` metrics, `mysql_global_status_threads_connected`, `…_threads_running`, `…_aborted_connects`, `…_aborted_clients`, `…_max_used_connections`, `mysql_global_variables_max_connections`; facts `sql.connections`, `sql.sessions` | `PROCESS` |
//! | `flink` | `FlinkClusterProbe` (`flink.cluster`) | `GET /overview` | `flink_taskmanagers`, `flink_slots_total`, `flink_slots_available`, `flink_jobs_running`, `flink_jobs_{finished,cancelled,failed}`; fact `flink.cluster` | `GET` on the REST API (Flink has no authorization: a proxy allowing `GET`) |
//! | `flink` | `FlinkJobProbe` (`flink.job`) | `/jobs/overview`, `/jobs/<id>/status` (live state), `/jobs/<id>`, checkpoints, exceptions, `numRestarts`, per-vertex back-pressure and subtask metrics | `flink_job_present{job}`, `flink_job_up{job,job_id}`, `flink_job_state{…,state}`, `flink_job_restarts_total`, `flink_checkpoints_{completed,failed}_total`, `flink_checkpoint_last_completed_age_seconds`, `flink_job_exceptions{…,category}`, `flink_job_busy_ratio_max`, `flink_job_backpressure_ratio_max`, `flink_job_input_records_per_second`, top-k `flink_vertex_*{…,vertex,vertex_id}`; facts `flink.cluster`, `flink.job` | as above |
//! | `nessie` | `NessieHealthProbe` (`nessie.health`) | `GET /api/v2/config`, management port `GET /q/health` | `nessie_api_up`, `nessie_health_up`, `nessie_health_check_up{check}`; fact `nessie.health` | none on the management port; a principal that may read the config |
//! | `nessie` | `NessieBranchProbe` (`nessie.branch`) | `GET /api/v2/trees`, the branch's and the backup's history pinned to their HEADs | `nessie_references`, `nessie_reference_present{reference}`, `nessie_reference_head{reference,hash}`, `nessie_branch_last_commit_age_seconds`, `nessie_branch_commits_ahead`/`_behind{reference,backup}`, `nessie_branch_in_sync`; facts `nessie.references`, `nessie.branch`, `nessie.commit` | `VIEW_REFERENCE` and `READ_COMMIT_LOG` on the watched branches |
//! | `prometheus` | `PromQuery` (`prometheus.query`, `prometheus.query_range`) | `GET /api/v1/query`, `/api/v1/query_range` | each series under its own name and labels (or a configured name), `_count`/`_sum` for native histograms, `prometheus_query_series`; fact `prometheus.result` | `GET` on those two paths (basic auth or a bearer JWT behind a proxy) |
//! | `http` | `HttpProbe` (`http.check`) | one `GET` or `HEAD` | `probe_success`, `probe_http_status_code`, `probe_duration_seconds`, `probe_http_content_length`; fact `http.check` | the one read-only path |
//! | `kafka-connect` | `ConnectStatus` (`kafka_connect.status`) | `GET /connectors?expand=status&expand=info` (or one connector's `/status`) | `kafka_connect_connectors`, `kafka_connect_failed_tasks`, `kafka_connect_failed_connectors`, top-k `kafka_connect_connector_failed_task_count{connector}`, `…_task_count{connector}`, `kafka_connect_connector_state{connector,state}`; fact `kafka_connect.connectors` (traces bounded and classified) | `GET` on `/connectors` (a reader of a Basic-auth REST extension) |
//! | `trino` | `TrinoQueries` (`trino.queries`) | `GET /v1/query` with `X-Trino-User` | `trino_queries_{queued,running,blocked,active}`, top-k `trino_query_memory_bytes{query_id,user,state}`, `trino_query_elapsed_seconds{…}`; fact `trino.queries`; incomplete unless the user may view every query | `view` on the watched queries' owners |
//! | `trino` | `TrinoSql` (`trino.sql`) | `POST /v1/statement`, then `nextUri` | `trino_sql_rows`, optionally a sample per row; fact `trino.sql` | `SELECT` on what the statement reads |
//! | `minio` | `MinioHealth` (`minio.health`) | `/minio/health/live`, `/cluster`, `/cluster/read` | `minio_live`, `minio_cluster_write_quorum_ok`, `minio_cluster_read_quorum_ok`, `minio_write_quorum`, `minio_read_quorum`, `minio_healing_drives` (only when MinIO sends it); fact `minio.health` | none (unauthenticated endpoints) |
//! | `minio` | `MinioMaintenance` (`minio.maintenance`) | `GET /minio/health/cluster?maintenance=true` (or `/cluster/read?maintenance=true`) | `minio_maintenance_safe{quorum}` (200 → 1; 412, or 503 while initialising → 0), `minio_maintenance_healing_drives{quorum}`, `minio_write_quorum`/`minio_read_quorum`; fact `minio.maintenance` (safe, quorum at risk, drives healing, node initialising) | none (unauthenticated endpoint) |
//! | `minio` | `MinioCapacity` (`minio.capacity`) | `GET /minio/v2/metrics/cluster` (or v3) | `minio_cluster_capacity_usable_free_bytes`, `…_usable_total_bytes`, `…_usable_free_ratio`, `…_raw_free_bytes`, `…_raw_total_bytes`, offline drives and nodes; fact `minio.capacity` | the metrics JWT of `mc admin prometheus generate` |
//! | `loki` | `LokiLogs` (`loki.logs`) | `GET /loki/api/v1/query_range` over the window before "now" | `loki_lines`, `loki_streams`, `loki_limit_reached`; fact `loki.lines` | read on the tenant's logs |
//!
//! ## One example per family
//!
//! Each needs a server, so they are compiled, not run. Credentials come from the environment as
//! [`rb_core::Secret`]s, never from a file or the command line.
//!
//! **kafka** — the runbook's `records_lag_max > 5000`, and the Burrow-style status beside it:
//!
//! ```no_run
//! # #[cfg(feature = "kafka")]
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rb_core::prelude::*;
//! use rb_probes::kafka::{BurrowStatus, ConsumerLagProbe, KafkaConfig, RdKafkaClient, TopicDescriptionProbe};
//!
//! let client = Arc::new(RdKafkaClient::new(KafkaConfig::new("kafka-1:9092,kafka-2:9092"))?);
//! let lag = ConsumerLagProbe::new(Target::new("kafka", "kafka-main"), client.clone(), "flink-orders", ["orders"])
//!     .with_partition_fact(true);
//! let topics = TopicDescriptionProbe::new(Target::new("kafka", "kafka-main"), client, ["orders"]);
//! let backlog = metric("records_lag_max").max().above(5_000.0).for_at_least(mins(5));
//! let status = BurrowStatus::new("flink-orders");
//! # let _ = (lag, topics, backlog, status); Ok(()) }
//! ```
//!
//! **cassandra** — "a node is DN, or a UN node is missing", over CQL or from `nodetool status`:
//!
//! ```no_run
//! # #[cfg(feature = "cassandra")]
//! # fn demo() {
//! use std::sync::Arc;
//! use rb_core::prelude::*;
//! use rb_probes::cassandra::{CdrsCqlClient, CqlRingConfig, CqlRingProbe, NodetoolStatusConfig, NodetoolStatusProbe};
//!
//! let nodes = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
//! let contact = nodes.map(|n| format!("{n}:9042").parse().unwrap());
//! let client = CdrsCqlClient::new()
//!     .with_password("rb_probe", Secret::from_env("CASSANDRA_PASSWORD").unwrap_or_else(|| Secret::new("")));
//! let ring = CqlRingProbe::new(
//!     Target::new("cassandra", "cassandra-main"),
//!     CqlRingConfig::new(contact).expected_nodes(nodes),
//!     Arc::new(client),
//! );
//! let nodetool = NodetoolStatusProbe::new(
//!     Target::new("cassandra", "cassandra-main"),
//!     NodetoolStatusConfig::new(["nodetool"]).host("10.0.0.1").expected_nodes(nodes),
//! );
//! let node_down = metric("cassandra_nodes_down").above(0.0);
//! let node_missing = metric("cassandra_nodes_missing_expected").above(0.0);
//! # let _ = (ring, nodetool, node_down, node_missing); }
//! ```
//!
//! **postgres** and **mysql** — connection saturation above 90 % of what applications can open:
//!
//! ```no_run
//! # #[cfg(all(feature = "postgres", feature = "mysql"))]
//! # fn demo() {
//! use rb_core::prelude::*;
//! use rb_probes::mysql::MySqlConnectionsProbe;
//! use rb_probes::postgres::PgConnectionsProbe;
//! use rb_probes::sql::{SaturationConfig, SqlEndpoint};
//!
//! let password = |var: &str| Secret::from_env(var).unwrap_or_else(|| Secret::new(""));
//! let pg = PgConnectionsProbe::connect(
//!     Target::new("postgres", "postgres-main"),
//!     SqlEndpoint::new("pg.internal", 5432, "rb_probe", password("PG_PASSWORD")).database("postgres"),
//!     SaturationConfig::default(),
//! );
//! let my = MySqlConnectionsProbe::connect(
//!     Target::new("mysql", "mysql-main"),
//!     SqlEndpoint::new("mysql.internal", 3306, "rb_probe", password("MYSQL_PASSWORD")),
//!     SaturationConfig::default(),
//! );
//! let saturated = metric("db_connections_used_percent_of_usable").above(90.0).for_at_least(mins(2));
//! # let _ = (pg, my, saturated); }
//! ```
//!
//! **flink** — a job restarting, read from the live state:
//!
//! ```no_run
//! # #[cfg(feature = "flink")]
//! # async fn demo() -> Result<(), rb_core::ProbeError> {
//! use rb_core::prelude::*;
//! use rb_probes::flink::{FlinkJob, FlinkJobProbe, JobSelector};
//! use rb_probes::transport::ReqwestClient;
//!
//! let client = ReqwestClient::new("http://flink-jobmanager:8081")?;
//! let probe = FlinkJobProbe::new(client, Target::new("flink", "flink-main"), JobSelector::name("orders-enrichment"));
//! let obs = probe.observe(&ProbeContext::with_timeout(Clock::system(), secs(10))).await?;
//! if let Some(Ok(job)) = obs.facts.get::<FlinkJob>() {
//!     println!("{} is {} after {:?} restarts", job.name, job.state, job.restarts);
//! }
//! # Ok(()) }
//! ```
//!
//! **nessie** — health on the management port, and the branch against its backup:
//!
//! ```no_run
//! # #[cfg(feature = "nessie")]
//! # fn demo() -> Result<(), rb_core::ProbeError> {
//! use rb_core::prelude::*;
//! use rb_probes::nessie::{NessieBranchProbe, NessieHealthProbe};
//! use rb_probes::transport::{HttpAuth, ReqwestClient};
//!
//! let token = Secret::from_env("NESSIE_TOKEN").unwrap_or_else(|| Secret::new(""));
//! let api = || ReqwestClient::builder("http://nessie:19120").auth(HttpAuth::Bearer(token.clone())).build();
//! let health = NessieHealthProbe::new(api()?, ReqwestClient::new("http://nessie:9000")?, Target::new("nessie", "nessie-main"));
//! let branch = NessieBranchProbe::new(api()?, Target::new("nessie", "nessie-main"), "main").backup("backup");
//! let diverged = metric("nessie_branch_in_sync").below(1.0);
//! # let _ = (health, branch, diverged); Ok(()) }
//! ```
//!
//! **prometheus**, **http**, **kafka-connect**, **trino**, **minio**, **loki** — the runbook's other
//! signals, all over the shared [`transport`] client:
//!
//! ```no_run
//! # #[cfg(all(feature = "prometheus", feature = "http", feature = "kafka-connect", feature = "trino", feature = "minio", feature = "loki"))]
//! # fn demo() -> Result<(), rb_core::ProbeError> {
//! use rb_core::prelude::*;
//! use rb_probes::transport::{HttpAuth, ReqwestClient};
//! use rb_probes::{http::HttpProbe, kafka_connect::ConnectStatus, loki::LokiLogs, minio::MinioCapacity};
//! use rb_probes::{prometheus::PromQuery, trino::{TrinoQueries, TrinoSql}};
//!
//! let t = |kind, name| Target::new(kind, name);
//! let failed_tasks = PromQuery::instant(
//!     ReqwestClient::new("http://prometheus:9090")?, t("prometheus", "prometheus-main"),
//!     "kafka_connect_connector_failed_task_count > 0",
//! );
//! let dashboard = HttpProbe::get(ReqwestClient::new("http://grafana:3000")?, t("http", "dashboard"), "/api/health")
//!     .body_contains("\"database\": \"ok\"");
//! let connect = ConnectStatus::new(ReqwestClient::new("http://connect:8083")?, t("kafka-connect", "connect-main"));
//! let queued = TrinoQueries::new(ReqwestClient::new("http://trino:8080")?, t("trino", "trino-main"), "rb");
//! let cross_check = TrinoSql::new(ReqwestClient::new("http://trino:8080")?, t("trino", "trino-main"), "rb",
//!     "SELECT count(*) AS n FROM paimon.lake.orders WHERE dt = current_date")
//!     .metric("orders_today", "n", &[]);
//! let minio_token = Secret::from_env("MINIO_METRICS_TOKEN").unwrap_or_else(|| Secret::new(""));
//! let capacity = MinioCapacity::new(
//!     ReqwestClient::builder("http://minio:9000").auth(HttpAuth::Bearer(minio_token)).build()?,
//!     t("minio", "minio-main"),
//! );
//! let logs = LokiLogs::new(ReqwestClient::new("http://loki:3100")?, t("loki", "loki-main"),
//!     r#"{container="flink-jobmanager"} |= "Exception""#).window(mins(15));
//! let connector_failed = metric("kafka_connect_connector_failed_task_count").above(0.0);
//! let trino_backlog = metric("trino_queries_queued").above(0.0).for_at_least(mins(5));
//! # let _ = (failed_tasks, dashboard, connect, queued, cross_check, capacity, logs, connector_failed, trino_backlog);
//! # Ok(()) }
//! ```
//!
//! ## Parsers and the long fuzz run
//!
//! Every parser rb owns — `nodetool status` text, the Flink, Nessie, Kafka Connect, Trino,
//! Prometheus and Loki JSON answers, the Prometheus text exposition (MinIO's metrics) and the SQL
//! literal redaction — is fuzzed by `tests/fuzz.rs` from its real captures (arbitrary bytes and
//! text, byte edits, truncations, JSON scalars flipped to another type, splices): it must never
//! panic, and its errors must still name the target and endpoint, or a line and column inside the
//! input. CI runs 256 cases per parser; the long run (not in CI; its result is recorded in
//! `benches/README.md`) runs a million per parser, in release mode:
//!
//! ```text
//! RB_FUZZ_CASES=1000000 cargo test --release -p rb-probes --all-features --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! `RB_FUZZ_CASES` also sets the case count of the parser properties in `tests/cassandra.rs`,
//! `tests/flink.rs` and `tests/nessie.rs`, and of the Kafka wire decoders (the answers to
//! ApiVersions, FindCoordinator, OffsetFetch, ListOffsets, SaslHandshake, SaslAuthenticate) and
//! the SCRAM client's reading of server messages, which are unit properties of the library:
//!
//! ```text
//! RB_FUZZ_CASES=1000000 cargo test --release -p rb-probes --all-features --lib -- kafka::wire::tests::decoders_never_panic kafka::wire::tests::mutated_answers_never_panic kafka::sasl::tests::server_messages_never_panic_nor_show_the_password --test-threads 1
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
// The tables above link every family's module; with a family left out its link has no target.
#![cfg_attr(
    not(all(
        feature = "kafka",
        feature = "cassandra",
        feature = "postgres",
        feature = "mysql",
        feature = "flink",
        feature = "nessie",
        feature = "prometheus",
        feature = "http",
        feature = "kafka-connect",
        feature = "trino",
        feature = "minio",
        feature = "loki"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod common;

#[cfg(feature = "http-transport")]
pub mod transport;

#[cfg(feature = "alertmanager")]
pub mod alertmanager;
#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "flink")]
pub mod flink;
#[cfg(feature = "nessie")]
pub mod nessie;
#[cfg(any(
    feature = "alertmanager",
    feature = "prometheus",
    feature = "http",
    feature = "kafka-connect",
    feature = "trino",
    feature = "minio",
    feature = "loki"
))]
mod rest;

#[cfg(any(feature = "prometheus", feature = "minio"))]
pub mod exposition;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka-connect")]
pub mod kafka_connect;
#[cfg(feature = "loki")]
pub mod loki;
#[cfg(feature = "minio")]
pub mod minio;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "trino")]
pub mod trino;
