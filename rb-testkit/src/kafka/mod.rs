//! A fake Kafka cluster for lag scenarios: librdkafka's in-process mock cluster (real Kafka protocol
//! on `127.0.0.1`) with exact, seeded consumer-group lag.
//!
//! [`FakeKafka`] starts `B` mock brokers in about a millisecond, creates topics with leaders spread
//! round-robin over the brokers, moves log-end offsets by producing (batched: thousands of partitions
//! in milliseconds) and commits chosen offsets for a consumer group without joining it. Its model
//! ([`FakeKafka::lag`], [`FakeKafka::offsets`]) is the ground truth a lag probe's reading is compared
//! with. [`LagTimeline`] scripts lag over tokio time ("12,000 behind, then drain"), and the fault
//! side takes brokers down, adds round-trip time and queues protocol errors per API
//! ([`KafkaApi`], [`BrokerError`]).
//!
//! ```no_run
//! use rb_testkit::kafka::FakeKafka;
//! # fn demo() -> Result<(), rb_testkit::kafka::FakeKafkaError> {
//! let kafka = FakeKafka::start(3)?;
//! kafka.create_topic("orders", 64, 3)?;
//! kafka.set_uniform_lag("flink-orders", "orders", 12_000 / 64)?;
//! kafka.set_partition_lag("flink-orders", "orders", 7, 5_000)?;
//! // Point the code under test at `kafka.bootstrap_servers()`, then compare what it reads with:
//! let truth: Vec<Option<i64>> = kafka.lag("flink-orders", "orders")?;
//! assert_eq!(truth[7], Some(5_000));
//! # Ok(()) }
//! ```
//!
//! # Semantics worth knowing
//!
//! * A partition on which the group never committed stays without a committed offset: OffsetFetch
//!   returns `-1` for it and [`FakeKafka::lag`] reports `None`. The probe decides what that means.
//! * Lag grows by producing and shrinks by committing forward ([`FakeKafka::set_lag`]); explicit
//!   [`FakeKafka::commit`] may move an offset anywhere `>= 0`, beyond the log end included (negative
//!   lag).
//! * Seeding commits work for groups without active members; a group a running consumer has joined
//!   rejects them, as a real broker does.
//! * The mock cluster has no CreateTopics (topics come from [`FakeKafka::create_topic`]), no
//!   ListGroups/DescribeGroups, answers an OffsetFetch for "all partitions" with nothing, and makes a
//!   subscribing consumer wait about 3 s to join.
//! * Every request the brokers receive is recorded from the start ([`FakeKafka::requests`]: broker,
//!   API key, receive time; [`FakeKafka::request_count`], [`FakeKafka::requests_by_broker`]), the
//!   fake's own seeding traffic included: seed, call [`FakeKafka::clear_requests`], then run the
//!   code under test and assert what it cost (e.g. one OffsetFetch, at most one ListOffsets per
//!   leader broker). librdkafka offers this only through its C API, so the `tracking` module is the
//!   one place of the crate allowed to use `unsafe`.
//! * With the `kafka-tls` feature, [`FakeKafka::secure_listeners`] puts `SASL_SSL`,
//!   `SASL_PLAINTEXT` or `SSL` listeners in front of the brokers ([`SecureListeners`]: TLS, SASL
//!   PLAIN and SCRAM checked as a broker checks them) for clients configured as in production.

mod cluster;
mod error;
mod fault;
mod requests;
#[cfg(feature = "kafka-tls")]
mod secure;
mod timeline;
mod tracking;

pub use cluster::{FakeKafka, PartitionOffsets, MAX_BROKERS, MAX_PARTITIONS, MAX_RECORDS_PER_CALL};
pub use error::{FakeKafkaError, Result};
pub use fault::{BrokerError, KafkaApi};
pub use requests::{count_requests, requests_by_broker, KafkaRequest};
#[cfg(feature = "kafka-tls")]
pub use secure::{SaslMechanism, SecureListenerConfig, SecureListeners};
pub use timeline::{seeded_lags, LagStep, LagTarget, LagTimeline};
