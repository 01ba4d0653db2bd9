//! Kafka: consumer-group lag in O(brokers) requests, lag in time, a Burrow-style status, group state
//! and topic description (feature `kafka`).
//!
//! The probes are generic over [`KafkaClient`] (four batched calls over plain values);
//! [`RdKafkaClient`] is the adapter for real clusters (rdkafka / librdkafka), configured by
//! [`KafkaConfig`] (bootstrap servers, SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512, TLS with a CA and
//! a client certificate; credentials are [`rb_core::Secret`]s and `Debug` redacts them). TLS and
//! SCRAM need librdkafka built with OpenSSL: cargo feature `kafka-tls`; without it such a
//! configuration is refused when the client is created ([`rb_core::ErrorKind::Invalid`]). SASL PLAIN
//! over plaintext works with `kafka` alone (its offsets then go through librdkafka). With
//! `kafka-tls`, rb's own offset connections (below) speak TLS (rustls; the CA file, or the
//! system's trust store) and SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512 themselves, checking the
//! broker's SCRAM signature. They also say why a secured cluster does not answer (whichever path the
//! offsets take): when librdkafka's Metadata request fails for want of an answer or with a bare TLS
//! error, one connection of rb's own (within the last second of the deadline) tells a refused
//! certificate ([`rb_core::ErrorKind::Invalid`], e.g. "certificate not valid for name") or
//! refused credentials ([`rb_core::ErrorKind::Unauthorized`]) from an unreachable cluster;
//! librdkafka gives a group-less consumer its TLS refusals late or bare.
//!
//! ```no_run
//! use rb_core::Target;
//! use rb_probes::kafka::{BurrowStatus, ConsumerLagProbe, KafkaConfig, RdKafkaClient};
//! # fn demo() -> Result<(), rb_probes::kafka::ClientError> {
//! let client = RdKafkaClient::new(KafkaConfig::new("kafka-1:9092,kafka-2:9092,kafka-3:9092"))?;
//! let lag = ConsumerLagProbe::new(Target::new("kafka", "kafka-main"), client, "flink-orders", ["orders"])
//!     .with_group_state(true)
//!     .with_partition_fact(true); // what BurrowStatus reads
//! // The runbook's symptom, and the Burrow-style one beside it:
//! let backlog = rb_core::symptom::metric("records_lag_max").max().above(5_000.0);
//! let status = BurrowStatus::new("flink-orders");
//! # let _ = (lag, backlog, status); Ok(()) }
//! ```
//!
//! # Probes
//!
//! | probe (id) | requests per observation | samples | facts |
//! | --- | --- | --- | --- |
//! | [`ConsumerLagProbe`] (`kafka.consumer_lag`) | 1 Metadata + 1 OffsetFetch + 1 ListOffsets per leader (through librdkafka — an encrypted client key, or [`native_offsets(false)`](KafkaConfig::native_offsets) —: per 500 partitions) (+ Metadata and DescribeGroups with [`with_group_state`](ConsumerLagProbe::with_group_state)) | see the table below | [`ConsumerLag`] (`kafka.consumer_lag`, always), [`PartitionOffsets`] (`kafka.partition_offsets`, only [`with_partition_fact`](ConsumerLagProbe::with_partition_fact)) |
//! | [`ConsumerGroupProbe`] (`kafka.consumer_group`) | ListGroups/DescribeGroups | `kafka_consumergroup_members{group}`, `kafka_consumergroup_state{group,state}` | [`GroupDescription`] (`kafka.consumer_group`) |
//! | [`TopicDescriptionProbe`] (`kafka.topic_description`) | 1 Metadata | see the table below | [`TopicDescriptions`] (`kafka.topic_description`: per topic the exact counts and the first [`LIST_LIMIT`] partitions, all with [`with_partition_fact`](TopicDescriptionProbe::with_partition_fact); the worst partitions) |
//!
//! **Request cost.** Committed offsets come from **one OffsetFetch** at the group's coordinator
//! and log-end offsets from **one ListOffsets per leader broker**, whatever the number of
//! partitions, all sent at once after the Metadata request (so wall time stays about two round
//! trips). By default ([`KafkaConfig::native_offsets`]) the adapter sends these two requests over
//! its own connections (plaintext, and with `kafka-tls` TLS and SASL listeners too) and matches
//! each answer to the request in one pass; a partition whose leader moved since the Metadata
//! answer is asked once more after a new Metadata request, a coordinator that moved is looked up
//! again. Otherwise (`native_offsets(false)`, TLS or SASL without `kafka-tls`, an encrypted client
//! key) they go through librdkafka, which matches each partition of an answer against the request list
//! one by one (quadratic: measured on the mock cluster, 10,000 partitions in one call cost ~60×
//! 2,000), so there they are split into calls of [`KafkaConfig::partitions_per_request`]
//! (default 500) partitions, log-end offsets by leader first (each call one ListOffsets to one
//! broker). So a 64-partition group on 3 brokers costs 1 Metadata + 1 OffsetFetch + 3
//! ListOffsets; a 2,000-partition one the same over rb's connections, and 1 + 4 + 6 through
//! librdkafka — never one request per partition (`fetch_watermarks` is not used).
//!
//! [`BurrowStatus`] is a [`rb_core::Symptom`] over the lag probe's [`PartitionOffsets`] facts (the
//! rules are on [`evaluate_partition`]); [`evaluate_group`] / [`evaluate_partition`] are the pure evaluator.
//!
//! ## Metrics of [`ConsumerLagProbe`]
//!
//! Bounded output: aggregates per group and per topic, plus the top-k worst partitions
//! ([`ConsumerLagProbe::top_k`], default 10). Lag is in records, lag in time in seconds.
//!
//! | metric | labels | value |
//! | --- | --- | --- |
//! | `kafka_consumergroup_lag_sum` | `group` / `group,topic` | sum of partition lags (`log end − committed`, at least 0) |
//! | `kafka_consumergroup_lag_max` | `group` / `group,topic` | largest partition lag |
//! | `records_lag_max` | `group` | the runbook's signal: largest partition lag of the group (same value as `kafka_consumergroup_lag_max{group}`) |
//! | `kafka_consumergroup_lag` | `group,topic,partition` | lag of each of the top-k worst partitions |
//! | `kafka_consumergroup_lag_seconds_max` | `group` / `group,topic` | largest lag in time (absent until a partition has two points) |
//! | `kafka_consumergroup_lag_seconds` | `group,topic,partition` | lag in time of the top-k worst partitions by time |
//! | `kafka_consumergroup_lag_seconds_pending` | `group` | partitions whose lag in time has not enough data yet |
//! | `kafka_consumergroup_partitions` | `group` | partitions of the topics |
//! | `kafka_consumergroup_partitions_measured` | `group` | partitions with a lag |
//! | `kafka_consumergroup_partitions_without_commit` | `group` / `group,topic` | partitions on which the group has no committed offset (never counted as lag 0) |
//! | `kafka_consumergroup_partitions_unobserved` | `group` | partitions whose offsets could not be read (the observation is then incomplete and names them) |
//! | `kafka_consumergroup_members` | `group` | members (with group state) |
//! | `kafka_consumergroup_state` | `group,state` | [`GroupState::code`] (with group state) |
//!
//! Lag sums and maxima are over the partitions measured; when a partition could not be read the
//! observation is incomplete, so a symptom never clears (or fires) on what was not seen.
//!
//! ## Metrics of [`TopicDescriptionProbe`]
//!
//! Bounded output: aggregates per topic, plus the top-k worst partitions of all the probed topics
//! ([`TopicDescriptionProbe::top_k`], default 10; offline partitions first, then by replicas missing
//! from the ISR; a healthy partition is never among them). Every partition's series only with
//! [`with_all_partitions(true)`](TopicDescriptionProbe::with_all_partitions).
//!
//! | metric | labels | value |
//! | --- | --- | --- |
//! | `kafka_brokers` | — | live brokers in the metadata |
//! | `kafka_topic_partitions` | `topic` | partitions |
//! | `kafka_topic_replication_factor` | `topic` | most replicas of any partition |
//! | `kafka_topic_under_replicated_partitions` | `topic` | partitions whose ISR is smaller than their replicas (`--under-replicated-partitions`) |
//! | `kafka_topic_offline_partitions` | `topic` | partitions without a leader or led by a broker that is not live (`--unavailable-partitions`) |
//! | `kafka_topic_in_sync_replicas_min` | `topic` | the smallest ISR (compare with `min.insync.replicas`) |
//! | `kafka_topic_partition_offline`, `…_under_replicated` | `topic,partition` | 1 or 0, for the top-k worst partitions |
//! | `kafka_topic_partition_in_sync_replicas`, `…_replicas` | `topic,partition` | ISR and replica counts, top-k |
//! | `kafka_topic_partition_leader` | `topic,partition` | the leader's broker id, -1 without one, top-k |
//!
//! ## Semantics
//!
//! * **Lag at evaluation time**: log-end offsets are read from the brokers at each observation, so a
//!   consumer that stopped committing shows a growing lag.
//! * **No committed offset**: such a partition is counted and named (fact
//!   [`ConsumerLag::without_commit`]), never a lag of 0, never dropped. (`kafka-consumer-groups`
//!   shows `-`; Burrow skips it.) A group with no committed offset on any partition that the
//!   coordinator does not describe as live is an **unknown group**: an error
//!   ([`rb_core::ErrorKind::Rejected`]), not a lag.
//! * **Lag in time**: per partition, a ring of 16 (log-end offset, observed at) points kept behind a
//!   lock across observations ([`OffsetTimeline`], 264 bytes a partition); the committed offset is
//!   placed between two points (interpolation) or before them at the table's produce rate
//!   (extrapolation); "not enough data" until two points exist.
//! * **Errors**: no broker reachable (down, refused) → [`rb_core::ErrorKind::Unreachable`] naming the
//!   bootstrap servers; the deadline → `Timeout`; an unknown topic or group → `Rejected`; refused
//!   credentials or ACLs → `Unauthorized`. One broker down → an incomplete observation naming the
//!   partitions it leads (their ListOffsets fail), never a lag of 0.
//!
//! ## Least privilege
//!
//! The probes only read. Grant the probe's principal **Describe** on the consumer group(s) (OffsetFetch,
//! DescribeGroups) and **Describe** on the topics (Metadata, ListOffsets); nothing else — no Read (the
//! probe never joins the group nor fetches records), no Write, no cluster-level permission.
//! ListGroups returns only groups the principal may describe.
//!
//! ## Testing
//!
//! The adapter is tested against `rb_testkit::kafka::FakeKafka` (librdkafka's mock cluster): exact
//! lag, request counts, brokers down, latency, on both paths of the offsets (the adapter's own
//! connections and librdkafka's), and the native path's recoveries (a leader or coordinator that
//! moved, a connection the broker closed); its decoders have property tests (arbitrary and mutated
//! answers never panic; errors name the byte offset and the field). The real-peer tier checks
//! against Kafka itself that the native path is used and reads what librdkafka and
//! `kafka-consumer-groups --describe` read. The mock cluster has no ListGroups/DescribeGroups:
//! group state is tested through a scripted [`KafkaClient`] there and against a real broker in the
//! real-peer tier.

mod burrow;
mod client;
mod config;
mod group;
mod lag;
mod lag_time;
mod native;
mod rdkafka_client;
#[cfg(feature = "kafka-tls")]
mod sasl;
mod security;
mod topic;
mod wire;

pub use burrow::{
    evaluate_group, evaluate_partition, BurrowRules, BurrowStatus, GroupEvaluation, GroupStatus,
    GroupWindow, PartitionEvaluation, PartitionStatus, WindowPoint,
};
pub use client::{
    BrokerInfo, ClientError, ClusterMetadata, GroupDescription, GroupMember, GroupState,
    KafkaClient, PartitionAnswer, PartitionMetadata, TopicError, TopicMetadata, TopicPartition,
};
pub use config::{KafkaConfig, PropertyValue, Sasl, SaslMechanism, Tls};
pub use group::{ConsumerGroupProbe, GROUP_PROBE_ID};
pub use lag::{
    ConsumerLag, ConsumerLagProbe, PartitionLag, PartitionOffsetEntry, PartitionOffsets, TopicLag,
    UnobservedPartition, LAG_PROBE_ID, LIST_LIMIT,
};
pub use lag_time::{Estimate, LagTime, OffsetPoint, OffsetTimeline, TIMELINE_POINTS};
pub use rdkafka_client::RdKafkaClient;
pub use topic::{
    PartitionHealth, TopicDescription, TopicDescriptionProbe, TopicDescriptions, TOPIC_PROBE_ID,
};
