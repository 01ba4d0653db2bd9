//! [`TopicDescriptionProbe`]: what `kafka-topics --describe` shows — partitions, leaders, replicas,
//! ISR, under-replicated and offline partitions — from one Metadata request.

use std::fmt;

use async_trait::async_trait;
use rb_core::{labels, FactType, Observation, Probe, ProbeContext, ProbeError, Target};
use serde::{Deserialize, Serialize};

use super::client::{BrokerInfo, KafkaClient, PartitionMetadata};
use super::lag::{client_error, driver_timeout, partitions_of};
use crate::common::ProbeSite;

/// The probe id of [`TopicDescriptionProbe`].
pub const TOPIC_PROBE_ID: &str = "kafka.topic_description";

/// One topic as `kafka-topics --describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    /// The topic.
    pub topic: String,
    /// Its partitions (leader, replicas, ISR).
    pub partitions: Vec<PartitionMetadata>,
    /// The replication factor (the most replicas of any partition).
    pub replication_factor: usize,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated: Vec<i32>,
    /// Partitions without a leader, or whose leader is not a live broker.
    pub offline: Vec<i32>,
}

impl TopicDescription {
    /// Describe a topic from its partitions' metadata and the live brokers.
    pub fn from_metadata(
        topic: &str,
        partitions: &[PartitionMetadata],
        brokers: &[BrokerInfo],
    ) -> Self {
        let mut partitions = partitions.to_vec();
        partitions.sort_by_key(|p| p.partition);
        let live = |id: i32| brokers.iter().any(|b| b.id == id);
        let under_replicated = partitions
            .iter()
            .filter(|p| p.isr.len() < p.replicas.len())
            .map(|p| p.partition)
            .collect();
        let offline = partitions
            .iter()
            .filter(|p| !p.leader.is_some_and(live))
            .map(|p| p.partition)
            .collect();
        Self {
            topic: topic.to_owned(),
            replication_factor: partitions
                .iter()
                .map(|p| p.replicas.len())
                .max()
                .unwrap_or(0),
            partitions,
            under_replicated,
            offline,
        }
    }
}

/// The descriptions of the probed topics (kind `kafka.topic_description`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescriptions {
    /// The live brokers the metadata announced.
    pub brokers: Vec<BrokerInfo>,
    /// One description per topic, in the order probed.
    pub topics: Vec<TopicDescription>,
}

impl FactType for TopicDescriptions {
    const KIND: &'static str = "kafka.topic_description";
}

/// Partitions, leaders, replicas, ISR, under-replicated and offline partitions of some topics, from
/// one Metadata request.
///
/// Emits per topic `kafka_topic_partitions`, `kafka_topic_replication_factor`,
/// `kafka_topic_under_replicated_partitions` and `kafka_topic_offline_partitions` (label `topic`),
/// `kafka_brokers` (live brokers), and the [`TopicDescriptions`] fact. An unknown topic is an error
/// ([`rb_core::ErrorKind::Rejected`]).
pub struct TopicDescriptionProbe<C> {
    id: String,
    target: Target,
    client: C,
    topics: Vec<String>,
}

impl<C> fmt::Debug for TopicDescriptionProbe<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicDescriptionProbe")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("topics", &self.topics)
            .finish()
    }
}

impl<C: KafkaClient> TopicDescriptionProbe<C> {
    /// Describe `topics` through `client`.
    pub fn new(
        target: Target,
        client: C,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            id: TOPIC_PROBE_ID.to_owned(),
            target,
            client,
            topics: topics.into_iter().map(Into::into).collect(),
        }
    }

    /// Use another probe id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    fn site(&self) -> ProbeSite<'_> {
        ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: self.client.bootstrap(),
        }
    }

    async fn read(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let site = self.site();
        if self.topics.is_empty() {
            return Err(site.error(rb_core::ErrorKind::Invalid, "no topic to describe"));
        }
        let md = self
            .client
            .metadata(&self.topics, driver_timeout(ctx.remaining()))
            .await
            .map_err(|e| {
                client_error(
                    &site,
                    &format!("reading metadata of {}", self.topics.join(", ")),
                    e,
                )
            })?;
        // Checks every topic is there and known.
        partitions_of(&site, &self.topics, &md)?;
        let mut obs = Observation::new(&self.id, &self.target.name, ctx.now());
        obs.push_sample("kafka_brokers", Default::default(), md.brokers.len() as f64);
        let mut topics = Vec::new();
        for name in &self.topics {
            let Some(t) = md.topics.iter().find(|t| &t.name == name) else {
                continue;
            };
            let d = TopicDescription::from_metadata(name, &t.partitions, &md.brokers);
            let l = labels(&[("topic", name.as_str())]);
            obs.push_sample(
                "kafka_topic_partitions",
                l.clone(),
                d.partitions.len() as f64,
            );
            obs.push_sample(
                "kafka_topic_replication_factor",
                l.clone(),
                d.replication_factor as f64,
            );
            obs.push_sample(
                "kafka_topic_under_replicated_partitions",
                l.clone(),
                d.under_replicated.len() as f64,
            );
            obs.push_sample("kafka_topic_offline_partitions", l, d.offline.len() as f64);
            topics.push(d);
        }
        Ok(obs.fact(&TopicDescriptions {
            brokers: md.brokers,
            topics,
        }))
    }
}

#[async_trait]
impl<C: KafkaClient> Probe for TopicDescriptionProbe<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        self.site().within(ctx, self.read(ctx)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn part(
        partition: i32,
        leader: Option<i32>,
        replicas: &[i32],
        isr: &[i32],
    ) -> PartitionMetadata {
        PartitionMetadata {
            partition,
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            error: None,
        }
    }

    fn broker(id: i32) -> BrokerInfo {
        BrokerInfo {
            id,
            host: format!("127.0.0.{id}"),
            port: 9092,
        }
    }

    #[test]
    fn under_replicated_and_offline() {
        // Broker 3 stopped: partitions it led lost their leader or moved; ISR shrank.
        let parts = [
            part(2, None, &[3], &[]),
            part(0, Some(1), &[1, 2, 3], &[1, 2]),
            part(1, Some(2), &[2, 3, 1], &[2, 3, 1]),
            part(3, Some(3), &[3, 1, 2], &[3]),
        ];
        let d = TopicDescription::from_metadata("orders", &parts, &[broker(1), broker(2)]);
        assert_eq!(
            d.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(d.replication_factor, 3);
        assert_eq!(d.under_replicated, [0, 2, 3]);
        // No leader, or a leader that is not a live broker.
        assert_eq!(d.offline, [2, 3]);
    }
}
