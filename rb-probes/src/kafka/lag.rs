//! [`ConsumerLagProbe`]: consumer-group lag per partition, per topic and per group in O(brokers)
//! requests, with lag in time and, if asked, the group's state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rb_core::time::Timestamp;
use rb_core::{labels, ErrorKind, FactType, Observation, Probe, ProbeContext, ProbeError, Target};
use serde::{Deserialize, Serialize};

use super::client::{
    ClientError, ClusterMetadata, GroupDescription, GroupState, KafkaClient, TopicError,
    TopicPartition,
};
use super::lag_time::{LagTime, OffsetTimeline};
use crate::common::{ProbeSite, TopK};

/// The probe id of [`ConsumerLagProbe`].
pub const LAG_PROBE_ID: &str = "kafka.consumer_lag";

/// How many partitions a list in a fact or a gap names before it says "and N more".
pub const LIST_LIMIT: usize = 1000;

/// How many partitions a gap message names.
const GAP_NAMES: usize = 50;

/// The share of the remaining time given to the driver's own timeouts, so that its answer (e.g.
/// "no broker reachable") arrives before the engine's deadline turns it into a bare timeout.
pub(crate) fn driver_timeout(remaining: Duration) -> Duration {
    let margin = (remaining / 10).clamp(Duration::from_millis(5), Duration::from_millis(500));
    remaining.saturating_sub(margin)
}

/// A [`ClientError`] as the probe's error, saying what was being read.
pub(crate) fn client_error(site: &ProbeSite<'_>, what: &str, e: ClientError) -> ProbeError {
    site.error(e.kind, format!("{what}: {}", e.message))
}

/// The lag of one partition, as facts list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset.
    pub committed: i64,
    /// The log-end offset.
    pub end: i64,
    /// `end - committed`, at least 0.
    pub lag: i64,
    /// Seconds behind (`None`: not enough data yet).
    pub lag_seconds: Option<f64>,
}

/// A partition the probe could not read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnobservedPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// What failed (`log-end offset: Broker: Leader not available`).
    pub error: String,
}

/// A topic's aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicLag {
    /// The topic.
    pub topic: String,
    /// Partitions of the topic.
    pub partitions: usize,
    /// Partitions with a lag (committed and log-end offsets read).
    pub measured: usize,
    /// Sum of the measured lags.
    pub lag_sum: i64,
    /// The largest measured lag (`None`: none measured).
    pub lag_max: Option<i64>,
    /// The largest lag in seconds (`None`: no partition has enough data).
    pub lag_seconds_max: Option<f64>,
    /// Partitions without a committed offset.
    pub without_commit: usize,
}

/// What [`ConsumerLagProbe`] saw, attached to every observation (kind `kafka.consumer_lag`):
/// aggregates, the partitions without a committed offset, the partitions not read, and the top-k
/// worst partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerLag {
    /// The consumer group.
    pub group: String,
    /// Per-topic aggregates.
    pub topics: Vec<TopicLag>,
    /// Partitions of the topics.
    pub partitions: usize,
    /// Partitions with a lag.
    pub measured: usize,
    /// Sum of the measured lags.
    pub lag_sum: i64,
    /// The largest measured lag (`None`: none measured).
    pub lag_max: Option<i64>,
    /// The largest lag in seconds (`None`: no partition has enough data yet).
    pub lag_seconds_max: Option<f64>,
    /// Partitions whose lag in time has not enough data yet.
    pub lag_seconds_pending: usize,
    /// How many partitions have no committed offset (exact).
    pub without_commit_count: usize,
    /// Those partitions (`topic[partition]`), the first [`LIST_LIMIT`].
    pub without_commit: Vec<String>,
    /// Partitions that could not be read (exact count).
    pub unobserved_count: usize,
    /// Those partitions and why, the first [`LIST_LIMIT`].
    pub unobserved: Vec<UnobservedPartition>,
    /// The worst partitions by lag, worst first.
    pub worst: Vec<PartitionLag>,
    /// The group's state, if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<GroupState>,
    /// The group's member count, if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<usize>,
}

impl FactType for ConsumerLag {
    const KIND: &'static str = "kafka.consumer_lag";
}

/// One partition's offsets in [`PartitionOffsets`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionOffsetEntry {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset (`None`: no commit, or not read — see `error`).
    pub committed: Option<i64>,
    /// The log-end offset (`None`: not read).
    pub end: Option<i64>,
    /// Why an offset is missing, if it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every partition's offsets (kind `kafka.partition_offsets`): attached only when the probe is
/// built [`with_partition_fact(true)`](ConsumerLagProbe::with_partition_fact); what
/// [`BurrowStatus`](super::BurrowStatus) reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionOffsets {
    /// The consumer group.
    pub group: String,
    /// The group's state, if read.
    #[serde(default)]
    pub state: Option<GroupState>,
    /// The group's member count, if read.
    #[serde(default)]
    pub members: Option<usize>,
    /// Every partition of the topics.
    pub partitions: Vec<PartitionOffsetEntry>,
}

impl FactType for PartitionOffsets {
    const KIND: &'static str = "kafka.partition_offsets";
}

/// Consumer-group lag of one group on some topics.
///
/// Every observation costs one Metadata request (partitions of the topics), one OffsetFetch (the
/// group's committed offsets, at its coordinator) and one ListOffsets per partition leader (log-end
/// offsets) — the last two concurrently; with the rdkafka adapter on a TLS or SASL listener they
/// go through librdkafka per batch of
/// [`KafkaConfig::partitions_per_request`](super::KafkaConfig::partitions_per_request) partitions
/// (of one leader, for ListOffsets) — plus, with
/// [`with_group_state`](Self::with_group_state), the group's description. Never one request per
/// partition.
///
/// Lag is `log end - committed` at evaluation time (a consumer that stopped committing shows a
/// growing lag). A partition without a committed offset is counted and named, never a lag of 0;
/// a partition whose offsets could not be read makes the observation incomplete, naming it.
/// A group with no committed offset on any partition, that the coordinator does not describe as
/// existing, is an unknown group: an error, not a lag.
pub struct ConsumerLagProbe<C> {
    id: String,
    /// `<id>/<group>`: two lag probes of two groups on one target never collide.
    name: String,
    target: Target,
    client: C,
    group: String,
    topics: Vec<String>,
    top_k: usize,
    partition_fact: bool,
    group_state: bool,
    timelines: Mutex<HashMap<TopicPartition, OffsetTimeline>>,
}

impl<C> fmt::Debug for ConsumerLagProbe<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerLagProbe")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("group", &self.group)
            .field("topics", &self.topics)
            .finish()
    }
}

impl<C: KafkaClient> ConsumerLagProbe<C> {
    /// The lag of `group` on `topics`, read through `client`.
    pub fn new(
        target: Target,
        client: C,
        group: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let group = group.into();
        Self {
            id: LAG_PROBE_ID.to_owned(),
            name: format!("{LAG_PROBE_ID}/{group}"),
            target,
            client,
            group,
            topics: topics.into_iter().map(Into::into).collect(),
            top_k: 10,
            partition_fact: false,
            group_state: false,
            timelines: Mutex::new(HashMap::new()),
        }
    }

    /// Report the `k` worst partitions as samples (default 10; `usize::MAX` reports every
    /// partition, one series each — only when asked).
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Attach every partition's offsets as a [`PartitionOffsets`] fact (default off: large).
    pub fn with_partition_fact(mut self, yes: bool) -> Self {
        self.partition_fact = yes;
        self
    }

    /// Also read the group's state and members (DescribeGroups) (default off).
    pub fn with_group_state(mut self, yes: bool) -> Self {
        self.group_state = yes;
        self
    }

    /// Use another probe id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self.name = format!("{}/{}", self.id, self.group);
        self
    }

    /// The client.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// How many partitions the lag-in-time table holds.
    pub fn timeline_len(&self) -> usize {
        self.timelines.lock().map(|t| t.len()).unwrap_or(0)
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
            return Err(site.error(ErrorKind::Invalid, "no topic to measure the lag on"));
        }
        if self.group.is_empty() {
            return Err(site.error(ErrorKind::Invalid, "empty consumer group id"));
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
        let parts = partitions_of(&site, &self.topics, &md)?;

        let timeout = driver_timeout(ctx.remaining());
        let committed = self.client.committed_offsets(&self.group, &parts, timeout);
        let ends = self.client.end_offsets(&parts, timeout);
        let describe = async {
            if self.group_state {
                Some(self.client.describe_group(&self.group, timeout).await)
            } else {
                None
            }
        };
        let (committed, ends, described) = tokio::join!(committed, ends, describe);
        let committed = committed.map_err(|e| {
            client_error(
                &site,
                &format!("reading committed offsets of group {}", self.group),
                e,
            )
        })?;
        let ends = ends.map_err(|e| client_error(&site, "reading log-end offsets", e))?;
        if committed.len() != parts.len() || ends.len() != parts.len() {
            return Err(site.error(
                ErrorKind::BadResponse,
                format!(
                    "asked offsets of {} partitions, got {} committed and {} log-end offsets",
                    parts.len(),
                    committed.len(),
                    ends.len()
                ),
            ));
        }
        let mut gaps: Vec<String> = Vec::new();
        let description: Option<GroupDescription> = match described {
            None => None,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                gaps.push(format!(
                    "state of group {} not read: {}",
                    self.group, e.message
                ));
                None
            }
        };
        let group_known = description
            .as_ref()
            .is_some_and(|d| d.state != GroupState::Dead);
        let any_commit = committed.iter().any(|c| matches!(c, Ok(Some(_))));
        let any_answer = committed.iter().any(|c| c.is_ok());
        if !any_commit && any_answer && !group_known {
            return Err(site.error(
                ErrorKind::Rejected,
                format!(
                    "unknown consumer group {}: no committed offset on any of the {} partitions of {}{}",
                    self.group,
                    parts.len(),
                    self.topics.join(", "),
                    match &description {
                        Some(d) => format!(" and the coordinator reports it {}", d.state),
                        None => String::new(),
                    }
                ),
            ));
        }

        let now = ctx.now();
        let mut obs = Observation::new(&self.id, &self.target.name, now);
        let summary = self.aggregate(
            &parts,
            &committed,
            &ends,
            description.as_ref(),
            now,
            &mut obs,
            &mut gaps,
        );
        for gap in gaps {
            obs.mark_incomplete(gap);
        }
        if self.partition_fact {
            let entries = parts
                .iter()
                .zip(committed.iter().zip(ends.iter()))
                .map(|(tp, (c, e))| {
                    let mut errors = Vec::new();
                    if let Err(err) = c {
                        errors.push(format!("committed offset: {err}"));
                    }
                    if let Err(err) = e {
                        errors.push(format!("log-end offset: {err}"));
                    }
                    PartitionOffsetEntry {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        committed: c.as_ref().ok().copied().flatten(),
                        end: e.as_ref().ok().copied(),
                        error: (!errors.is_empty()).then(|| errors.join("; ")),
                    }
                })
                .collect();
            obs = obs.fact(&PartitionOffsets {
                group: self.group.clone(),
                state: summary.state.clone(),
                members: summary.members,
                partitions: entries,
            });
        }
        Ok(obs.fact(&summary))
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregate(
        &self,
        parts: &[TopicPartition],
        committed: &[Result<Option<i64>, String>],
        ends: &[Result<i64, String>],
        description: Option<&GroupDescription>,
        now: Timestamp,
        obs: &mut Observation,
        gaps: &mut Vec<String>,
    ) -> ConsumerLag {
        let group = self.group.as_str();
        let mut topics: BTreeMap<Arc<str>, TopicLag> = BTreeMap::new();
        let mut worst = TopK::new(self.top_k);
        let mut worst_seconds = TopK::new(self.top_k);
        let mut without_commit = Vec::new();
        let mut without_commit_count = 0;
        let mut unobserved = Vec::new();
        let mut unobserved_count = 0;
        // Partitions not read, grouped by error, for the gap messages.
        let mut failures: BTreeMap<String, Vec<&TopicPartition>> = BTreeMap::new();
        let mut pending_seconds = 0;

        let mut timelines = match self.timelines.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Forget partitions no longer measured (a deleted topic), so the table stays bounded.
        if timelines.len() > parts.len() {
            let current: HashSet<&TopicPartition> = parts.iter().collect();
            timelines.retain(|tp, _| current.contains(tp));
        }
        for (tp, (c, e)) in parts.iter().zip(committed.iter().zip(ends.iter())) {
            if !topics.contains_key(&tp.topic) {
                topics.insert(
                    tp.topic.clone(),
                    TopicLag {
                        topic: tp.topic.to_string(),
                        partitions: 0,
                        measured: 0,
                        lag_sum: 0,
                        lag_max: None,
                        lag_seconds_max: None,
                        without_commit: 0,
                    },
                );
            }
            let Some(t) = topics.get_mut(&tp.topic) else {
                continue;
            };
            t.partitions += 1;
            let mut timeline = None;
            if let Ok(end) = e {
                let tl = timelines.entry(tp.clone()).or_default();
                tl.record(*end, now);
                timeline = Some(tl);
            }
            let failure = match (c, e) {
                (Err(ce), _) => Some(format!("committed offset: {ce}")),
                (_, Err(ee)) => Some(format!("log-end offset: {ee}")),
                _ => None,
            };
            if let Some(why) = failure {
                unobserved_count += 1;
                if unobserved.len() < LIST_LIMIT {
                    unobserved.push(UnobservedPartition {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        error: why.clone(),
                    });
                }
                failures.entry(why).or_default().push(tp);
                continue;
            }
            let (Ok(c), Ok(end)) = (c, e) else { continue };
            let Some(committed) = *c else {
                t.without_commit += 1;
                without_commit_count += 1;
                if without_commit.len() < LIST_LIMIT {
                    without_commit.push(tp.to_string());
                }
                continue;
            };
            let lag = (end - committed).max(0);
            let lag_time = timeline.map_or(LagTime::NotEnoughData, |tl| tl.lag_at(committed, now));
            let lag_seconds = lag_time.seconds();
            t.measured += 1;
            t.lag_sum = t.lag_sum.saturating_add(lag);
            t.lag_max = Some(t.lag_max.map_or(lag, |m| m.max(lag)));
            match lag_seconds {
                Some(s) => {
                    t.lag_seconds_max = Some(t.lag_seconds_max.map_or(s, |m| m.max(s)));
                    worst_seconds.push(s, tp);
                }
                None => pending_seconds += 1,
            }
            worst.push_with(lag as f64, || PartitionLag {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                committed,
                end: *end,
                lag,
                lag_seconds,
            });
        }
        drop(timelines);

        for (why, tps) in &failures {
            let named: Vec<String> = tps
                .iter()
                .take(GAP_NAMES)
                .map(|tp| tp.to_string())
                .collect();
            let more = tps.len().saturating_sub(GAP_NAMES);
            gaps.push(format!(
                "{} partition(s) not read ({}{}): {why}",
                tps.len(),
                named.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }

        let g = labels(&[("group", group)]);
        let topics: Vec<TopicLag> = topics.into_values().collect();
        let measured: usize = topics.iter().map(|t| t.measured).sum();
        let lag_sum: i64 = topics
            .iter()
            .map(|t| t.lag_sum)
            .fold(0, i64::saturating_add);
        let lag_max = topics.iter().filter_map(|t| t.lag_max).max();
        let lag_seconds_max = topics
            .iter()
            .filter_map(|t| t.lag_seconds_max)
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));

        obs.push_sample(
            "kafka_consumergroup_partitions",
            g.clone(),
            parts.len() as f64,
        );
        obs.push_sample(
            "kafka_consumergroup_partitions_measured",
            g.clone(),
            measured as f64,
        );
        obs.push_sample(
            "kafka_consumergroup_partitions_without_commit",
            g.clone(),
            without_commit_count as f64,
        );
        obs.push_sample(
            "kafka_consumergroup_partitions_unobserved",
            g.clone(),
            unobserved_count as f64,
        );
        if measured > 0 {
            obs.push_sample("kafka_consumergroup_lag_sum", g.clone(), lag_sum as f64);
            if let Some(max) = lag_max {
                obs.push_sample("kafka_consumergroup_lag_max", g.clone(), max as f64);
                obs.push_sample("records_lag_max", g.clone(), max as f64);
            }
        }
        if let Some(s) = lag_seconds_max {
            obs.push_sample("kafka_consumergroup_lag_seconds_max", g.clone(), s);
        }
        obs.push_sample(
            "kafka_consumergroup_lag_seconds_pending",
            g.clone(),
            pending_seconds as f64,
        );
        for t in &topics {
            let l = labels(&[("group", group), ("topic", &t.topic)]);
            if t.measured > 0 {
                obs.push_sample("kafka_consumergroup_lag_sum", l.clone(), t.lag_sum as f64);
                if let Some(max) = t.lag_max {
                    obs.push_sample("kafka_consumergroup_lag_max", l.clone(), max as f64);
                }
            }
            if let Some(s) = t.lag_seconds_max {
                obs.push_sample("kafka_consumergroup_lag_seconds_max", l.clone(), s);
            }
            obs.push_sample(
                "kafka_consumergroup_partitions_without_commit",
                l,
                t.without_commit as f64,
            );
        }
        let worst: Vec<PartitionLag> = worst.into_sorted().into_iter().map(|(_, p)| p).collect();
        for p in &worst {
            let partition = p.partition.to_string();
            obs.push_sample(
                "kafka_consumergroup_lag",
                labels(&[
                    ("group", group),
                    ("topic", &p.topic),
                    ("partition", &partition),
                ]),
                p.lag as f64,
            );
        }
        for (s, tp) in worst_seconds.into_sorted() {
            let partition = tp.partition.to_string();
            obs.push_sample(
                "kafka_consumergroup_lag_seconds",
                labels(&[
                    ("group", group),
                    ("topic", &tp.topic),
                    ("partition", &partition),
                ]),
                s,
            );
        }
        let (state, members) = match description {
            Some(d) => {
                obs.push_sample(
                    "kafka_consumergroup_members",
                    g.clone(),
                    d.members.len() as f64,
                );
                obs.push_sample(
                    "kafka_consumergroup_state",
                    labels(&[("group", group), ("state", d.state.as_str())]),
                    d.state.code(),
                );
                (Some(d.state.clone()), Some(d.members.len()))
            }
            None => (None, None),
        };

        ConsumerLag {
            group: group.to_owned(),
            partitions: parts.len(),
            measured,
            lag_sum,
            lag_max,
            lag_seconds_max,
            lag_seconds_pending: pending_seconds,
            without_commit_count,
            without_commit,
            unobserved_count,
            unobserved,
            worst,
            topics,
            state,
            members,
        }
    }
}

/// The partitions of `topics` in `md`, topic by topic in the order asked, partitions ascending.
pub(crate) fn partitions_of(
    site: &ProbeSite<'_>,
    topics: &[String],
    md: &ClusterMetadata,
) -> Result<Vec<TopicPartition>, ProbeError> {
    let mut out = Vec::new();
    for name in topics {
        let Some(t) = md.topics.iter().find(|t| &t.name == name) else {
            return Err(site.error(
                ErrorKind::BadResponse,
                format!("the metadata answer does not mention topic {name}"),
            ));
        };
        match &t.error {
            None => {}
            Some(TopicError::UnknownTopic) => {
                return Err(site.error(ErrorKind::Rejected, format!("unknown topic {name}")))
            }
            Some(TopicError::NotAuthorized) => {
                return Err(site.error(
                    ErrorKind::Unauthorized,
                    format!("not authorized to describe topic {name} (needs Describe on it)"),
                ))
            }
            Some(TopicError::Other(e)) => {
                return Err(site.error(
                    ErrorKind::Rejected,
                    format!("metadata of topic {name}: {e}"),
                ))
            }
        }
        if t.partitions.is_empty() {
            return Err(site.error(
                ErrorKind::BadResponse,
                format!("topic {name} has no partition in the metadata answer"),
            ));
        }
        let topic: Arc<str> = Arc::from(name.as_str());
        let mut ps: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
        ps.sort_unstable();
        ps.dedup();
        out.extend(ps.into_iter().map(|p| TopicPartition {
            topic: topic.clone(),
            partition: p,
        }));
    }
    Ok(out)
}

#[async_trait]
impl<C: KafkaClient> Probe for ConsumerLagProbe<C> {
    fn id(&self) -> &str {
        &self.id
    }

    /// `kafka.consumer_lag/<group>`: the engine keys metric series and detection state by it.
    fn name(&self) -> &str {
        &self.name
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        self.site().within(ctx, self.read(ctx)).await
    }
}
