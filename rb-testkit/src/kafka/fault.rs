//! Our own names for the Kafka APIs and broker error codes the fault injector uses, so tests do not
//! depend on rdkafka-sys's generated enums.

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// A Kafka protocol API whose requests can be made to fail with [`FakeKafka::request_errors`] and
/// counted in [`FakeKafka::requests`].
///
/// [`FakeKafka::request_errors`]: super::FakeKafka::request_errors
/// [`FakeKafka::requests`]: super::FakeKafka::requests
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KafkaApi {
    /// Produce (key 0).
    Produce,
    /// Fetch (key 1).
    Fetch,
    /// ListOffsets (key 2): what a lag probe uses for log-end offsets.
    ListOffsets,
    /// Metadata (key 3).
    Metadata,
    /// OffsetCommit (key 8).
    OffsetCommit,
    /// OffsetFetch (key 9): what a lag probe uses for committed offsets.
    OffsetFetch,
    /// FindCoordinator (key 10).
    FindCoordinator,
    /// JoinGroup (key 11).
    JoinGroup,
    /// Heartbeat (key 12).
    Heartbeat,
    /// ApiVersions (key 18).
    ApiVersions,
}

impl KafkaApi {
    /// The Kafka protocol API key.
    pub fn key(self) -> i16 {
        match self {
            KafkaApi::Produce => 0,
            KafkaApi::Fetch => 1,
            KafkaApi::ListOffsets => 2,
            KafkaApi::Metadata => 3,
            KafkaApi::OffsetCommit => 8,
            KafkaApi::OffsetFetch => 9,
            KafkaApi::FindCoordinator => 10,
            KafkaApi::JoinGroup => 11,
            KafkaApi::Heartbeat => 12,
            KafkaApi::ApiVersions => 18,
        }
    }

    /// The API with protocol key `key`, or `None` for a key this enum does not name.
    pub fn from_key(key: i16) -> Option<KafkaApi> {
        Some(match key {
            0 => KafkaApi::Produce,
            1 => KafkaApi::Fetch,
            2 => KafkaApi::ListOffsets,
            3 => KafkaApi::Metadata,
            8 => KafkaApi::OffsetCommit,
            9 => KafkaApi::OffsetFetch,
            10 => KafkaApi::FindCoordinator,
            11 => KafkaApi::JoinGroup,
            12 => KafkaApi::Heartbeat,
            18 => KafkaApi::ApiVersions,
            _ => return None,
        })
    }

    pub(crate) fn to_rd(self) -> RDKafkaApiKey {
        match self {
            KafkaApi::Produce => RDKafkaApiKey::Produce,
            KafkaApi::Fetch => RDKafkaApiKey::Fetch,
            KafkaApi::ListOffsets => RDKafkaApiKey::ListOffsets,
            KafkaApi::Metadata => RDKafkaApiKey::Metadata,
            KafkaApi::OffsetCommit => RDKafkaApiKey::OffsetCommit,
            KafkaApi::OffsetFetch => RDKafkaApiKey::OffsetFetch,
            KafkaApi::FindCoordinator => RDKafkaApiKey::FindCoordinator,
            KafkaApi::JoinGroup => RDKafkaApiKey::JoinGroup,
            KafkaApi::Heartbeat => RDKafkaApiKey::Heartbeat,
            KafkaApi::ApiVersions => RDKafkaApiKey::ApiVersion,
        }
    }
}

/// An error a mock broker returns for the next request of an API (see
/// [`FakeKafka::request_errors`](super::FakeKafka::request_errors)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker closes the connection instead of answering.
    Disconnect,
    /// UNKNOWN_SERVER_ERROR (-1).
    Unknown,
    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    UnknownTopicOrPartition,
    /// LEADER_NOT_AVAILABLE (5).
    LeaderNotAvailable,
    /// NOT_LEADER_OR_FOLLOWER (6).
    NotLeaderForPartition,
    /// REQUEST_TIMED_OUT (7).
    RequestTimedOut,
    /// BROKER_NOT_AVAILABLE (8).
    BrokerNotAvailable,
    /// COORDINATOR_LOAD_IN_PROGRESS (14).
    CoordinatorLoadInProgress,
    /// COORDINATOR_NOT_AVAILABLE (15).
    CoordinatorNotAvailable,
    /// NOT_COORDINATOR (16).
    NotCoordinator,
    /// NOT_ENOUGH_REPLICAS (19).
    NotEnoughReplicas,
    /// REBALANCE_IN_PROGRESS (27).
    RebalanceInProgress,
    /// TOPIC_AUTHORIZATION_FAILED (29).
    TopicAuthorizationFailed,
    /// GROUP_AUTHORIZATION_FAILED (30).
    GroupAuthorizationFailed,
    /// KAFKA_STORAGE_ERROR (56).
    KafkaStorageError,
    /// FENCED_LEADER_EPOCH (74).
    FencedLeaderEpoch,
    /// OFFSET_NOT_AVAILABLE (78).
    OffsetNotAvailable,
}

impl BrokerError {
    /// The Kafka protocol error code (`None` for [`BrokerError::Disconnect`], which is not a code).
    pub fn code(self) -> Option<i16> {
        Some(match self {
            BrokerError::Disconnect => return None,
            BrokerError::Unknown => -1,
            BrokerError::UnknownTopicOrPartition => 3,
            BrokerError::LeaderNotAvailable => 5,
            BrokerError::NotLeaderForPartition => 6,
            BrokerError::RequestTimedOut => 7,
            BrokerError::BrokerNotAvailable => 8,
            BrokerError::CoordinatorLoadInProgress => 14,
            BrokerError::CoordinatorNotAvailable => 15,
            BrokerError::NotCoordinator => 16,
            BrokerError::NotEnoughReplicas => 19,
            BrokerError::RebalanceInProgress => 27,
            BrokerError::TopicAuthorizationFailed => 29,
            BrokerError::GroupAuthorizationFailed => 30,
            BrokerError::KafkaStorageError => 56,
            BrokerError::FencedLeaderEpoch => 74,
            BrokerError::OffsetNotAvailable => 78,
        })
    }

    pub(crate) fn to_rd(self) -> RDKafkaRespErr {
        use RDKafkaRespErr as E;
        match self {
            BrokerError::Disconnect => E::RD_KAFKA_RESP_ERR__TRANSPORT,
            BrokerError::Unknown => E::RD_KAFKA_RESP_ERR_UNKNOWN,
            BrokerError::UnknownTopicOrPartition => E::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            BrokerError::LeaderNotAvailable => E::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            BrokerError::NotLeaderForPartition => E::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            BrokerError::RequestTimedOut => E::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            BrokerError::BrokerNotAvailable => E::RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE,
            BrokerError::CoordinatorLoadInProgress => {
                E::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS
            }
            BrokerError::CoordinatorNotAvailable => E::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            BrokerError::NotCoordinator => E::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            BrokerError::NotEnoughReplicas => E::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            BrokerError::RebalanceInProgress => E::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
            BrokerError::TopicAuthorizationFailed => {
                E::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
            }
            BrokerError::GroupAuthorizationFailed => {
                E::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED
            }
            BrokerError::KafkaStorageError => E::RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
            BrokerError::FencedLeaderEpoch => E::RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH,
            BrokerError::OffsetNotAvailable => E::RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_match_rdkafka() {
        for api in [
            KafkaApi::Produce,
            KafkaApi::Fetch,
            KafkaApi::ListOffsets,
            KafkaApi::Metadata,
            KafkaApi::OffsetCommit,
            KafkaApi::OffsetFetch,
            KafkaApi::FindCoordinator,
            KafkaApi::JoinGroup,
            KafkaApi::Heartbeat,
            KafkaApi::ApiVersions,
        ] {
            assert_eq!(api.key(), api.to_rd() as i16, "{api:?}");
        }
    }

    #[test]
    fn error_codes_match_rdkafka() {
        for err in [
            BrokerError::Unknown,
            BrokerError::UnknownTopicOrPartition,
            BrokerError::LeaderNotAvailable,
            BrokerError::NotLeaderForPartition,
            BrokerError::RequestTimedOut,
            BrokerError::BrokerNotAvailable,
            BrokerError::CoordinatorLoadInProgress,
            BrokerError::CoordinatorNotAvailable,
            BrokerError::NotCoordinator,
            BrokerError::NotEnoughReplicas,
            BrokerError::RebalanceInProgress,
            BrokerError::TopicAuthorizationFailed,
            BrokerError::GroupAuthorizationFailed,
            BrokerError::KafkaStorageError,
            BrokerError::FencedLeaderEpoch,
            BrokerError::OffsetNotAvailable,
        ] {
            assert_eq!(err.code(), Some(err.to_rd() as i16), "{err:?}");
        }
        assert_eq!(BrokerError::Disconnect.code(), None);
    }
}
