//! What the mock brokers received: [`KafkaRequest`], one entry of [`FakeKafka::requests`].
//!
//! [`FakeKafka::requests`]: super::FakeKafka::requests

use std::collections::BTreeMap;

use super::fault::KafkaApi;

/// One request a mock broker received (see [`FakeKafka::requests`](super::FakeKafka::requests)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaRequest {
    /// The id of the broker that received the request (`1..=broker_count()`).
    pub broker: i32,
    /// The Kafka protocol API key of the request (e.g. 2 for ListOffsets, 9 for OffsetFetch).
    pub api_key: i16,
    /// When the broker received the request: librdkafka's monotonic clock, in microseconds. Only
    /// differences between requests are meaningful.
    pub at_micros: i64,
}

impl KafkaRequest {
    /// The API as a [`KafkaApi`], or `None` for an API that enum does not name (see
    /// [`api_name`](KafkaRequest::api_name)).
    pub fn api(&self) -> Option<KafkaApi> {
        KafkaApi::from_key(self.api_key)
    }

    /// Whether this is a request of `api`.
    pub fn is(&self, api: KafkaApi) -> bool {
        self.api_key == api.key()
    }

    /// The protocol name of the API (`"ListOffsets"`, `"OffsetFetch"`, …; `"Unknown"` for a key
    /// this table does not list).
    pub fn api_name(&self) -> &'static str {
        api_name(self.api_key)
    }
}

/// How many of `requests` are requests of `api`.
pub fn count_requests(requests: &[KafkaRequest], api: KafkaApi) -> usize {
    requests.iter().filter(|r| r.is(api)).count()
}

/// How many of `requests` are requests of `api`, per receiving broker (brokers that received none
/// are absent).
pub fn requests_by_broker(requests: &[KafkaRequest], api: KafkaApi) -> BTreeMap<i32, usize> {
    let mut out = BTreeMap::new();
    for r in requests.iter().filter(|r| r.is(api)) {
        *out.entry(r.broker).or_insert(0) += 1;
    }
    out
}

/// The Kafka protocol name of an API key.
fn api_name(key: i16) -> &'static str {
    const NAMES: [&str; 52] = [
        "Produce",
        "Fetch",
        "ListOffsets",
        "Metadata",
        "LeaderAndIsr",
        "StopReplica",
        "UpdateMetadata",
        "ControlledShutdown",
        "OffsetCommit",
        "OffsetFetch",
        "FindCoordinator",
        "JoinGroup",
        "Heartbeat",
        "LeaveGroup",
        "SyncGroup",
        "DescribeGroups",
        "ListGroups",
        "SaslHandshake",
        "ApiVersions",
        "CreateTopics",
        "DeleteTopics",
        "DeleteRecords",
        "InitProducerId",
        "OffsetForLeaderEpoch",
        "AddPartitionsToTxn",
        "AddOffsetsToTxn",
        "EndTxn",
        "WriteTxnMarkers",
        "TxnOffsetCommit",
        "DescribeAcls",
        "CreateAcls",
        "DeleteAcls",
        "DescribeConfigs",
        "AlterConfigs",
        "AlterReplicaLogDirs",
        "DescribeLogDirs",
        "SaslAuthenticate",
        "CreatePartitions",
        "CreateDelegationToken",
        "RenewDelegationToken",
        "ExpireDelegationToken",
        "DescribeDelegationToken",
        "DeleteGroups",
        "ElectLeaders",
        "IncrementalAlterConfigs",
        "AlterPartitionReassignments",
        "ListPartitionReassignments",
        "OffsetDelete",
        "DescribeClientQuotas",
        "AlterClientQuotas",
        "DescribeUserScramCredentials",
        "AlterUserScramCredentials",
    ];
    match key {
        60 => "DescribeCluster",
        61 => "DescribeProducers",
        68 => "ConsumerGroupHeartbeat",
        69 => "ConsumerGroupDescribe",
        71 => "GetTelemetrySubscriptions",
        72 => "PushTelemetry",
        _ => usize::try_from(key)
            .ok()
            .and_then(|k| NAMES.get(k).copied())
            .unwrap_or("Unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_counts() {
        let req = |broker, api_key| KafkaRequest {
            broker,
            api_key,
            at_micros: 0,
        };
        let log = [
            req(1, 2),
            req(2, 2),
            req(2, 2),
            req(3, 9),
            req(1, 18),
            req(1, 999),
        ];
        assert_eq!(log[0].api(), Some(KafkaApi::ListOffsets));
        assert_eq!(log[0].api_name(), "ListOffsets");
        assert_eq!(log[3].api_name(), "OffsetFetch");
        assert_eq!(log[4].api(), Some(KafkaApi::ApiVersions));
        assert_eq!(log[5].api(), None);
        assert_eq!(log[5].api_name(), "Unknown");
        assert_eq!(req(1, -1).api_name(), "Unknown");
        assert_eq!(req(1, 14).api_name(), "SyncGroup");
        assert_eq!(count_requests(&log, KafkaApi::ListOffsets), 3);
        assert_eq!(
            requests_by_broker(&log, KafkaApi::ListOffsets),
            BTreeMap::from([(1, 1), (2, 2)])
        );
        assert!(requests_by_broker(&log, KafkaApi::Fetch).is_empty());
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
            assert_eq!(KafkaApi::from_key(api.key()), Some(api));
            assert_eq!(format!("{api:?}"), api_name(api.key()));
        }
    }
}
