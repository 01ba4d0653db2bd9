//! The seam between the Kafka probes and a Kafka client: [`KafkaClient`], four batched calls over
//! plain values. The probes are written against it; [`RdKafkaClient`](super::RdKafkaClient) is the
//! adapter for real clusters, and tests can script it.

use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::ErrorKind;
use serde::{Deserialize, Serialize};

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: Arc<str>,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic[partition]`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// Why a client call failed as a whole (not one partition of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// The class of failure, as the probe will report it.
    pub kind: ErrorKind,
    /// What went wrong, for a human (never a credential).
    pub message: String,
}

impl ClientError {
    /// A client error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ClientError {}

/// One broker as the cluster metadata announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// The broker id.
    pub id: i32,
    /// Its advertised host.
    pub host: String,
    /// Its advertised port.
    pub port: i32,
}

/// One partition as the cluster metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMetadata {
    /// The partition index.
    pub partition: i32,
    /// The leader broker (`None`: no leader, the partition is offline).
    pub leader: Option<i32>,
    /// The replica brokers.
    pub replicas: Vec<i32>,
    /// The in-sync replica brokers.
    pub isr: Vec<i32>,
    /// The partition's own error in the metadata answer (e.g. `LEADER_NOT_AVAILABLE`).
    pub error: Option<String>,
}

/// One topic as the cluster metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// The topic name.
    pub name: String,
    /// The topic's error (`UNKNOWN_TOPIC_OR_PART`, `TOPIC_AUTHORIZATION_FAILED`, …).
    pub error: Option<TopicError>,
    /// Its partitions.
    pub partitions: Vec<PartitionMetadata>,
}

/// A topic-level error of a metadata answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicError {
    /// The topic does not exist.
    UnknownTopic,
    /// The client may not describe the topic.
    NotAuthorized,
    /// Another error, as the broker named it.
    Other(String),
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::UnknownTopic => f.write_str("unknown topic"),
            TopicError::NotAuthorized => f.write_str("not authorized to describe the topic"),
            TopicError::Other(e) => f.write_str(e),
        }
    }
}

/// The cluster metadata for some topics: one Metadata request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// The brokers.
    pub brokers: Vec<BrokerInfo>,
    /// The topics asked for.
    pub topics: Vec<TopicMetadata>,
}

/// The answer for one partition of a batched call: its value, or that partition's own error.
pub type PartitionAnswer<T> = Result<T, String>;

/// A consumer group's state as the group coordinator reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupState {
    /// No member; offsets may still be committed.
    Empty,
    /// Members joined and have their assignment.
    Stable,
    /// A rebalance started: members are rejoining.
    PreparingRebalance,
    /// Members rejoined and wait for their assignment.
    CompletingRebalance,
    /// The group is gone (no member, no offsets) or was never there.
    Dead,
    /// A state this version does not know, as the broker named it.
    Other(String),
}

impl GroupState {
    /// Parses the state name a broker reports (`Stable`, `PreparingRebalance`, …).
    pub fn parse(name: &str) -> GroupState {
        match name {
            "Empty" => GroupState::Empty,
            "Stable" => GroupState::Stable,
            "PreparingRebalance" => GroupState::PreparingRebalance,
            // Older brokers call it AwaitingSync.
            "CompletingRebalance" | "AwaitingSync" => GroupState::CompletingRebalance,
            "Dead" => GroupState::Dead,
            other => GroupState::Other(other.to_owned()),
        }
    }

    /// The broker's name of the state.
    pub fn as_str(&self) -> &str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Stable => "Stable",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Dead => "Dead",
            GroupState::Other(s) => s,
        }
    }

    /// A stable numeric code for the `kafka_consumergroup_state` sample: 0 Stable, 1 Empty,
    /// 2 PreparingRebalance, 3 CompletingRebalance, 4 Dead, 5 another state.
    pub fn code(&self) -> f64 {
        match self {
            GroupState::Stable => 0.0,
            GroupState::Empty => 1.0,
            GroupState::PreparingRebalance => 2.0,
            GroupState::CompletingRebalance => 3.0,
            GroupState::Dead => 4.0,
            GroupState::Other(_) => 5.0,
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The member id the coordinator assigned.
    pub member_id: String,
    /// The client id the member connected with.
    pub client_id: String,
    /// The member's host as the coordinator saw it.
    pub client_host: String,
}

/// A consumer group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// The group id.
    pub group: String,
    /// Its state.
    pub state: GroupState,
    /// The assignment protocol (`range`, `cooperative-sticky`, …), empty without members.
    pub protocol: String,
    /// Its members.
    pub members: Vec<GroupMember>,
}

/// The calls the Kafka probes need, each batched: one Metadata request, one OffsetFetch for the
/// committed offsets of a group, one ListOffsets per partition leader for the log-end offsets, and
/// the group's description.
///
/// Batched answers are aligned with the request: element `i` of the answer is partition `i` of the
/// request, with that partition's own error where it has one (a broker down fails its partitions,
/// not the call).
#[async_trait]
pub trait KafkaClient: Send + Sync + Debug {
    /// The bootstrap servers (what errors name as the endpoint).
    fn bootstrap(&self) -> &str;

    /// Metadata for `topics` (brokers, partitions, leaders, replicas, ISR).
    async fn metadata(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<ClusterMetadata, ClientError>;

    /// The committed offsets of `group` on `partitions` (one OffsetFetch): `Ok(None)` for a
    /// partition on which the group has no committed offset.
    async fn committed_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<Option<i64>>>, ClientError>;

    /// The log-end offsets (offset of the next record) of `partitions`: one ListOffsets per leader.
    async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<i64>>, ClientError>;

    /// The description of `group` (`None`: the coordinator does not know it).
    async fn describe_group(
        &self,
        group: &str,
        timeout: Duration,
    ) -> Result<Option<GroupDescription>, ClientError>;
}

#[async_trait]
impl<C: KafkaClient + ?Sized> KafkaClient for Arc<C> {
    fn bootstrap(&self) -> &str {
        (**self).bootstrap()
    }
    async fn metadata(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<ClusterMetadata, ClientError> {
        (**self).metadata(topics, timeout).await
    }
    async fn committed_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<Option<i64>>>, ClientError> {
        (**self).committed_offsets(group, partitions, timeout).await
    }
    async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<i64>>, ClientError> {
        (**self).end_offsets(partitions, timeout).await
    }
    async fn describe_group(
        &self,
        group: &str,
        timeout: Duration,
    ) -> Result<Option<GroupDescription>, ClientError> {
        (**self).describe_group(group, timeout).await
    }
}
