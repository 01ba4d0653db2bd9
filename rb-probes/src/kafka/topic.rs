//! [`TopicDescriptionProbe`]: what `kafka-topics --describe` shows — partitions, leaders, replicas,
//! ISR, under-replicated and offline partitions — from one Metadata request.
//!
//! Bounded output: per topic, aggregates (partitions, replication factor, under-replicated and
//! offline partition counts, the smallest ISR) plus the `k` worst partitions as series
//! ([`TopicDescriptionProbe::top_k`], default 10); every partition's series only when asked
//! ([`TopicDescriptionProbe::with_all_partitions`]). The fact keeps the first [`LIST_LIMIT`]
//! partitions of each topic unless asked for all ([`TopicDescriptionProbe::with_partition_fact`]).

use std::fmt;

use async_trait::async_trait;
use rb_core::{labels, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Target};
use serde::{Deserialize, Serialize};

use super::client::{BrokerInfo, KafkaClient, PartitionMetadata};
use super::lag::{client_error, driver_timeout, partitions_of, LIST_LIMIT};
use crate::common::{ProbeSite, TopK};

/// The probe id of [`TopicDescriptionProbe`].
pub const TOPIC_PROBE_ID: &str = "kafka.topic_description";

/// One topic as `kafka-topics --describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    /// The topic.
    pub topic: String,
    /// How many partitions the topic has (exact, whatever `partitions` keeps).
    #[serde(default)]
    pub partition_count: usize,
    /// Its partitions (leader, replicas, ISR), by partition number. The probe keeps the first
    /// [`LIST_LIMIT`] unless built [`with_partition_fact(true)`](TopicDescriptionProbe::with_partition_fact).
    pub partitions: Vec<PartitionMetadata>,
    /// The replication factor (the most replicas of any partition).
    pub replication_factor: usize,
    /// How many partitions have an ISR smaller than their replica set (exact).
    #[serde(default)]
    pub under_replicated_count: usize,
    /// Those partitions, ascending (the probe keeps the first [`LIST_LIMIT`] unless asked for all).
    pub under_replicated: Vec<i32>,
    /// How many partitions have no leader, or a leader that is not a live broker (exact).
    #[serde(default)]
    pub offline_count: usize,
    /// Those partitions, ascending (the probe keeps the first [`LIST_LIMIT`] unless asked for all).
    pub offline: Vec<i32>,
    /// The smallest ISR of any partition (`None`: no partition) — what producers with `acks=all`
    /// compare with `min.insync.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_isr: Option<usize>,
}

impl TopicDescription {
    /// Describe a topic from its partitions' metadata and the live brokers: every partition and
    /// complete lists (the probe bounds them).
    pub fn from_metadata(
        topic: &str,
        partitions: &[PartitionMetadata],
        brokers: &[BrokerInfo],
    ) -> Self {
        let mut partitions = partitions.to_vec();
        partitions.sort_by_key(|p| p.partition);
        let under_replicated: Vec<i32> = partitions
            .iter()
            .filter(|p| is_under_replicated(p))
            .map(|p| p.partition)
            .collect();
        let offline: Vec<i32> = partitions
            .iter()
            .filter(|p| is_offline(p, brokers))
            .map(|p| p.partition)
            .collect();
        Self {
            topic: topic.to_owned(),
            partition_count: partitions.len(),
            replication_factor: partitions
                .iter()
                .map(|p| p.replicas.len())
                .max()
                .unwrap_or(0),
            min_isr: partitions.iter().map(|p| p.isr.len()).min(),
            partitions,
            under_replicated_count: under_replicated.len(),
            under_replicated,
            offline_count: offline.len(),
            offline,
        }
    }

    /// Keep at most `limit` partitions and list entries (the counts stay exact).
    fn bound(&mut self, limit: usize) {
        self.partitions.truncate(limit);
        self.under_replicated.truncate(limit);
        self.offline.truncate(limit);
    }
}

fn is_under_replicated(p: &PartitionMetadata) -> bool {
    p.isr.len() < p.replicas.len()
}

fn is_offline(p: &PartitionMetadata, brokers: &[BrokerInfo]) -> bool {
    !p.leader
        .is_some_and(|id| brokers.iter().any(|b| b.id == id))
}

/// One partition's replication health: what the probe reports for its worst partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionHealth {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The leader broker (`None`: no leader).
    pub leader: Option<i32>,
    /// The replica brokers.
    pub replicas: Vec<i32>,
    /// The in-sync replica brokers.
    pub isr: Vec<i32>,
    /// Replicas that are not in the ISR.
    pub out_of_sync: Vec<i32>,
    /// No leader, or a leader that is not a live broker.
    pub offline: bool,
    /// The ISR is smaller than the replica set.
    pub under_replicated: bool,
    /// The partition's own error in the metadata answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PartitionHealth {
    /// The health of partition `p` of `topic`, given the live brokers.
    pub fn of(topic: &str, p: &PartitionMetadata, brokers: &[BrokerInfo]) -> Self {
        Self {
            topic: topic.to_owned(),
            partition: p.partition,
            leader: p.leader,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            out_of_sync: p
                .replicas
                .iter()
                .copied()
                .filter(|r| !p.isr.contains(r))
                .collect(),
            offline: is_offline(p, brokers),
            under_replicated: is_under_replicated(p),
            error: p.error.clone(),
        }
    }

    /// How bad it is, for ranking: an offline partition outranks every online one; then the more
    /// replicas missing from the ISR, the worse. 0 for a healthy partition.
    pub fn severity(&self) -> f64 {
        let missing = self.replicas.len().saturating_sub(self.isr.len()) as f64;
        if self.offline {
            1e6 + missing
        } else {
            missing
        }
    }

    fn push_samples(&self, obs: &mut Observation) {
        let partition = self.partition.to_string();
        let l = labels(&[("topic", self.topic.as_str()), ("partition", &partition)]);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        obs.push_sample(
            "kafka_topic_partition_offline",
            l.clone(),
            flag(self.offline),
        );
        obs.push_sample(
            "kafka_topic_partition_under_replicated",
            l.clone(),
            flag(self.under_replicated),
        );
        obs.push_sample(
            "kafka_topic_partition_in_sync_replicas",
            l.clone(),
            self.isr.len() as f64,
        );
        obs.push_sample(
            "kafka_topic_partition_replicas",
            l.clone(),
            self.replicas.len() as f64,
        );
        obs.push_sample(
            "kafka_topic_partition_leader",
            l,
            self.leader.map_or(-1.0, f64::from),
        );
    }
}

/// The descriptions of the probed topics (kind `kafka.topic_description`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescriptions {
    /// The live brokers the metadata announced.
    pub brokers: Vec<BrokerInfo>,
    /// One description per topic, in the order probed.
    pub topics: Vec<TopicDescription>,
    /// The worst partitions of all probed topics (offline first, then by replicas missing from
    /// the ISR), at most [`TopicDescriptionProbe::top_k`]; healthy partitions are never listed.
    #[serde(default)]
    pub worst: Vec<PartitionHealth>,
}

impl FactType for TopicDescriptions {
    const KIND: &'static str = "kafka.topic_description";
}

/// Partitions, leaders, replicas, ISR, under-replicated and offline partitions of some topics, from
/// one Metadata request.
///
/// Emits, per topic (label `topic`): `kafka_topic_partitions`, `kafka_topic_replication_factor`,
/// `kafka_topic_under_replicated_partitions`, `kafka_topic_offline_partitions` and
/// `kafka_topic_in_sync_replicas_min`; `kafka_brokers` (live brokers); and for the `k` worst
/// partitions of all topics (labels `topic`, `partition`; healthy ones are not reported):
/// `kafka_topic_partition_offline` and `kafka_topic_partition_under_replicated` (1 or 0),
/// `kafka_topic_partition_in_sync_replicas`, `kafka_topic_partition_replicas` and
/// `kafka_topic_partition_leader` (broker id, -1 without a leader). With
/// [`with_all_partitions(true)`](Self::with_all_partitions) those five series are emitted for every
/// partition, healthy or not. The [`TopicDescriptions`] fact carries the descriptions and the worst
/// partitions. An unknown topic is an error ([`rb_core::ErrorKind::Rejected`]).
pub struct TopicDescriptionProbe<C> {
    id: String,
    target: Target,
    client: C,
    topics: Vec<String>,
    top_k: usize,
    all_partitions: bool,
    partition_fact: bool,
}

impl<C> fmt::Debug for TopicDescriptionProbe<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicDescriptionProbe")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("topics", &self.topics)
            .field("top_k", &self.top_k)
            .field("all_partitions", &self.all_partitions)
            .field("partition_fact", &self.partition_fact)
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
            top_k: 10,
            all_partitions: false,
            partition_fact: false,
        }
    }

    /// Use another probe id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Report the `k` worst partitions (of all the topics) as series and in the fact (default 10;
    /// 0: aggregates only).
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Emit the per-partition series for every partition, healthy or not (default off: one set
    /// of series per partition is what bounded output avoids).
    pub fn with_all_partitions(mut self, yes: bool) -> Self {
        self.all_partitions = yes;
        self
    }

    /// Keep every partition and complete lists in the fact (default off: the first
    /// [`LIST_LIMIT`] of each, the counts exact).
    pub fn with_partition_fact(mut self, yes: bool) -> Self {
        self.partition_fact = yes;
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
        obs.push_sample("kafka_brokers", Labels::new(), md.brokers.len() as f64);
        let mut topics = Vec::new();
        let mut worst = TopK::new(self.top_k);
        for name in &self.topics {
            let Some(t) = md.topics.iter().find(|t| &t.name == name) else {
                continue;
            };
            let mut d = TopicDescription::from_metadata(name, &t.partitions, &md.brokers);
            let l = labels(&[("topic", name.as_str())]);
            obs.push_sample(
                "kafka_topic_partitions",
                l.clone(),
                d.partition_count as f64,
            );
            obs.push_sample(
                "kafka_topic_replication_factor",
                l.clone(),
                d.replication_factor as f64,
            );
            obs.push_sample(
                "kafka_topic_under_replicated_partitions",
                l.clone(),
                d.under_replicated_count as f64,
            );
            obs.push_sample(
                "kafka_topic_offline_partitions",
                l.clone(),
                d.offline_count as f64,
            );
            if let Some(min) = d.min_isr {
                obs.push_sample("kafka_topic_in_sync_replicas_min", l, min as f64);
            }
            for p in &d.partitions {
                let h = PartitionHealth::of(name, p, &md.brokers);
                if self.all_partitions {
                    h.push_samples(&mut obs);
                }
                let severity = h.severity();
                if severity > 0.0 {
                    worst.push(severity, h);
                }
            }
            if !self.partition_fact {
                d.bound(LIST_LIMIT);
            }
            topics.push(d);
        }
        let worst: Vec<PartitionHealth> = worst.into_sorted().into_iter().map(|(_, h)| h).collect();
        if !self.all_partitions {
            for h in &worst {
                h.push_samples(&mut obs);
            }
        }
        Ok(obs.fact(&TopicDescriptions {
            brokers: md.brokers,
            topics,
            worst,
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
        assert_eq!((d.under_replicated_count, d.offline_count), (3, 2));
        assert_eq!(d.min_isr, Some(0));

        // Severity: offline first (more replicas missing, worse), then under-replicated, then 0.
        let sev: Vec<f64> = d
            .partitions
            .iter()
            .map(|p| PartitionHealth::of("orders", p, &[broker(1), broker(2)]).severity())
            .collect();
        assert_eq!(sev, [1.0, 0.0, 1e6 + 1.0, 1e6 + 2.0]);
        let h = PartitionHealth::of("orders", &d.partitions[0], &[broker(1), broker(2)]);
        assert_eq!(h.out_of_sync, [3]);
        assert!(h.under_replicated && !h.offline);

        let mut bounded = d.clone();
        bounded.bound(1);
        assert_eq!(bounded.partitions.len(), 1);
        assert_eq!(
            (
                bounded.under_replicated.as_slice(),
                bounded.offline.as_slice()
            ),
            (&[0][..], &[2][..])
        );
        assert_eq!(
            (bounded.partition_count, bounded.under_replicated_count),
            (4, 3)
        );
    }
}
