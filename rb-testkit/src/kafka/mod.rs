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
//! * Request counting: librdkafka can track the requests a mock broker received, but only through
//!   the raw C API (`rd_kafka_mock_start_request_tracking`); this crate forbids `unsafe`, so the fake
//!   does not offer it. Count requests on the client side instead (librdkafka statistics report
//!   per-broker request counts by API).

mod cluster;
mod error;
mod fault;
mod timeline;

pub use cluster::{FakeKafka, PartitionOffsets, MAX_BROKERS, MAX_PARTITIONS, MAX_RECORDS_PER_CALL};
pub use error::{FakeKafkaError, Result};
pub use fault::{BrokerError, KafkaApi};
pub use timeline::{seeded_lags, LagStep, LagTarget, LagTimeline};
