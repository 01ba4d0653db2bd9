//! The error type of the fake Kafka cluster.

/// Everything that can go wrong while building or driving a [`FakeKafka`](super::FakeKafka).
///
/// Bad input (unknown broker, topic or partition, a negative lag, a per-partition list of the wrong
/// length) is reported before anything is sent to the cluster; failures of the underlying librdkafka
/// clients carry librdkafka's message as text so the public API does not depend on rdkafka's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FakeKafkaError {
    /// `FakeKafka::start` was asked for an unsupported number of brokers.
    #[error("invalid broker count {requested}: a fake Kafka cluster has 1..={max} brokers")]
    InvalidBrokerCount {
        /// The requested count.
        requested: i32,
        /// The largest supported count.
        max: i32,
    },
    /// A broker id outside `1..=brokers`.
    #[error("broker {broker} does not exist: the fake cluster's brokers are 1..={brokers}")]
    UnknownBroker {
        /// The id that was asked for.
        broker: i32,
        /// How many brokers the cluster has.
        brokers: i32,
    },
    /// A topic name Kafka would refuse (empty, too long, or with characters outside `[a-zA-Z0-9._-]`).
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A consumer group id that is empty or contains a NUL byte.
    #[error("invalid consumer group id {group:?}: it must be non-empty and free of NUL bytes")]
    InvalidGroup {
        /// The rejected group id.
        group: String,
    },
    /// The topic was not created through this fake (topics auto-created by other clients are not tracked).
    #[error("topic {topic:?} was not created through this fake Kafka")]
    UnknownTopic {
        /// The topic name.
        topic: String,
    },
    /// `create_topic` for a topic that already exists.
    #[error("topic {topic:?} already exists")]
    TopicExists {
        /// The topic name.
        topic: String,
    },
    /// A partition count outside `1..=100_000`.
    #[error("invalid partition count {partitions} for topic {topic:?}: expected 1..=100000")]
    InvalidPartitionCount {
        /// The topic name.
        topic: String,
        /// The rejected count.
        partitions: i32,
    },
    /// A replication factor outside `1..=brokers`.
    #[error(
        "invalid replication factor {replication} for topic {topic:?}: expected 1..={brokers}"
    )]
    InvalidReplication {
        /// The topic name.
        topic: String,
        /// The rejected factor.
        replication: i32,
        /// How many brokers the cluster has.
        brokers: i32,
    },
    /// A partition index outside `0..partitions`.
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        /// The topic name.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        partitions: i32,
    },
    /// A per-partition list whose length is not the topic's partition count.
    #[error("{what} for topic {topic:?} lists {got} partitions, the topic has {expected}")]
    PartitionCountMismatch {
        /// What the list was (`"lag per partition"`, …).
        what: &'static str,
        /// The topic name.
        topic: String,
        /// The topic's partition count.
        expected: usize,
        /// The list's length.
        got: usize,
    },
    /// A negative lag was requested.
    #[error("negative lag {lag} requested for {topic}[{partition}]")]
    NegativeLag {
        /// The topic name.
        topic: String,
        /// The partition.
        partition: i32,
        /// The rejected lag.
        lag: i64,
    },
    /// A negative offset was given to commit.
    #[error("negative offset {offset} for {topic}[{partition}]: committed offsets are >= 0")]
    NegativeOffset {
        /// The topic name.
        topic: String,
        /// The partition.
        partition: i32,
        /// The rejected offset.
        offset: i64,
    },
    /// `set_end_offset` below the current log-end offset (a Kafka log never shrinks).
    #[error(
        "cannot move the end offset of {topic}[{partition}] back from {current} to {requested}"
    )]
    EndOffsetBackwards {
        /// The topic name.
        topic: String,
        /// The partition.
        partition: i32,
        /// The current log-end offset.
        current: i64,
        /// The requested log-end offset.
        requested: i64,
    },
    /// A lag range for [`seeded_lags`](super::seeded_lags) that is empty or goes below 0.
    #[error("invalid lag range {min}..={max}: expected 0 <= min <= max")]
    InvalidLagRange {
        /// The range's start.
        min: i64,
        /// The range's end.
        max: i64,
    },
    /// A produce request count too large for one call.
    #[error("refusing to produce {records} records in one call (limit {limit})")]
    TooManyRecords {
        /// Records asked for.
        records: u64,
        /// The per-call limit.
        limit: u64,
    },
    /// librdkafka refused or failed to deliver records.
    #[error("producing to {topic}[{partition}] failed: {detail}")]
    Produce {
        /// The topic name.
        topic: String,
        /// The partition (the first one that failed).
        partition: i32,
        /// librdkafka's message.
        detail: String,
    },
    /// Committing offsets for a group failed.
    #[error("committing offsets of group {group:?} on topic {topic:?} failed: {detail}")]
    Commit {
        /// The consumer group.
        group: String,
        /// The topic name.
        topic: String,
        /// librdkafka's message.
        detail: String,
    },
    /// After a commit, the cluster reports a different committed offset than the one written.
    #[error(
        "group {group:?} {topic}[{partition}]: committed {expected} but the cluster reports {actual:?}"
    )]
    CommitMismatch {
        /// The consumer group.
        group: String,
        /// The topic name.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset that was committed.
        expected: i64,
        /// What OffsetFetch returned (`None`: no committed offset).
        actual: Option<i64>,
    },
    /// A mock-cluster control operation failed.
    #[error("mock cluster operation {op} failed: {detail}")]
    Mock {
        /// The operation (`"broker_down"`, …).
        op: &'static str,
        /// librdkafka's message.
        detail: String,
    },
    /// Creating a librdkafka client (the cluster itself, the seeding producer or a committer) failed.
    #[error("creating the {what} failed: {detail}")]
    Client {
        /// Which client.
        what: &'static str,
        /// librdkafka's message.
        detail: String,
    },
    /// The thread that owns the mock cluster could not be started or is gone.
    #[error("the fake Kafka cluster thread is not running: {detail}")]
    Stopped {
        /// What happened.
        detail: String,
    },
}

/// Result alias of the fake Kafka module.
pub type Result<T, E = FakeKafkaError> = std::result::Result<T, E>;
