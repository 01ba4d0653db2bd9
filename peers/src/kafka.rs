//! Kafka 4.x — three brokers on 127.0.0.1–3, node 1 also the KRaft controller — and Kafka Connect
//! (started by `peers/scripts/kafka.sh`).
//!
//! [`Kafka`]: create topics, produce a known number of messages per partition, commit chosen
//! offsets for a group without joining it (rdkafka `BaseConsumer::commit` of a partition list),
//! so that the group's lag is known; the ground truth is read with Kafka's own CLI classes
//! (`kafka-consumer-groups --describe`, `kafka-topics --describe`) run from the fetched jars.
//!
//! [`KafkaConnect`]: the worker's REST API; a FileStream source connector whose task really fails
//! (it produces to a topic name the broker rejects), restarts, pause/resume, config fixes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::PeerEnv;

/// The Kafka brokers of the tier and the CLI tools next to them.
#[derive(Debug, Clone)]
pub struct Kafka {
    /// `127.0.0.1:19092,127.0.0.2:19092,127.0.0.3:19092`
    pub bootstrap: String,
    /// Broker id → `host:port` (ids 1, 2, 3).
    pub brokers: BTreeMap<i32, String>,
    /// `peers/scripts/kafka.sh`, which stops and starts one broker (`stop-broker N`,
    /// `start-broker N`).
    pub script: PathBuf,
    /// `java -cp` value that holds Kafka's jars (CLI tools included).
    pub classpath: String,
    /// The `java` binary.
    pub java: PathBuf,
    /// Kafka's version (e.g. `4.1.1`).
    pub version: String,
}

/// One row of `kafka-consumer-groups --describe --group G`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLagRow {
    /// Group id.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (`None` when printed as `-`).
    pub current_offset: Option<i64>,
    /// Log end offset (`None` when printed as `-`).
    pub log_end_offset: Option<i64>,
    /// Lag (`None` when printed as `-`).
    pub lag: Option<i64>,
    /// Consumer id (`-` for a group without members).
    pub consumer_id: String,
}

/// One partition line of `kafka-topics --describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitionInfo {
    /// Partition.
    pub partition: i32,
    /// Leader broker id (`None` when `none`/`-1`).
    pub leader: Option<i32>,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
}

/// `kafka-topics --describe --topic T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic.
    pub topic: String,
    /// `PartitionCount`.
    pub partition_count: i32,
    /// `ReplicationFactor`.
    pub replication_factor: i32,
    /// Partition lines.
    pub partitions: Vec<TopicPartitionInfo>,
}

/// A consumer-group lag brought about by [`Kafka::build_lag`].
#[derive(Debug, Clone)]
pub struct LagScenario {
    /// Topic.
    pub topic: String,
    /// Group id.
    pub group: String,
    /// Messages produced to each partition (= its log end offset).
    pub per_partition: i64,
    /// Committed offset per partition.
    pub committed: Vec<i64>,
}

impl LagScenario {
    /// Expected lag per partition.
    pub fn expected_lag(&self) -> Vec<i64> {
        self.committed
            .iter()
            .map(|c| self.per_partition - c)
            .collect()
    }
    /// Expected total lag.
    pub fn total_lag(&self) -> i64 {
        self.expected_lag().iter().sum()
    }
}

impl Kafka {
    /// The handle from the env file written by `kafka.sh`.
    pub fn from_env(env: &PeerEnv) -> Result<Self> {
        Ok(Self {
            bootstrap: env.get("KAFKA_BOOTSTRAP")?.to_string(),
            brokers: parse_brokers(env.get("KAFKA_BROKERS")?)?,
            script: PathBuf::from(env.get("KAFKA_SCRIPT")?),
            classpath: env.get("KAFKA_CLASSPATH")?.to_string(),
            java: PathBuf::from(env.get("KAFKA_JAVA")?),
            version: env.get("KAFKA_VERSION")?.to_string(),
        })
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    /// Create `topic` with `partitions` partitions (replication factor 1) and wait until every
    /// partition has a leader.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .config()
            .create()
            .context("creating the admin client")?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &opts,
            )
            .await
            .context("CreateTopics")?;
        for r in results {
            r.map_err(|(t, e)| anyhow!("creating topic {t}: {e}"))?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let consumer: BaseConsumer = self
                .config()
                .create()
                .context("creating a metadata client")?;
            let topic_owned = topic.to_string();
            let ready = tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(Some(&topic_owned), Duration::from_secs(5))
                    .map(|md| {
                        md.topics().iter().any(|t| {
                            t.error().is_none()
                                && t.partitions().len() == partitions as usize
                                && t.partitions().iter().all(|p| p.leader() >= 0)
                        })
                    })
            })
            .await
            .context("metadata task")??;
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("topic {topic} has no leader for every partition after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Delete a topic.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .config()
            .create()
            .context("creating the admin client")?;
        for r in admin
            .delete_topics(&[topic], &AdminOptions::new())
            .await
            .context("DeleteTopics")?
        {
            r.map_err(|(t, e)| anyhow!("deleting topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// Create `topic` with one partition per entry of `assignment` (partition `p` on the brokers
    /// `assignment[p]`, the first its preferred leader), and wait (at most 30 s) until every
    /// partition has a leader and all its replicas in sync.
    pub async fn create_topic_on(&self, topic: &str, assignment: &[Vec<i32>]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .config()
            .create()
            .context("creating the admin client")?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let replicas: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
        let partitions = i32::try_from(assignment.len()).context("partition count")?;
        let results = admin
            .create_topics(
                &[NewTopic::new(
                    topic,
                    partitions,
                    TopicReplication::Variable(&replicas),
                )],
                &opts,
            )
            .await
            .context("CreateTopics")?;
        for r in results {
            r.map_err(|(t, e)| anyhow!("creating topic {t}: {e}"))?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let consumer: BaseConsumer = self
                .config()
                .create()
                .context("creating a metadata client")?;
            let topic_owned = topic.to_string();
            let want = assignment.to_vec();
            let ready = tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(Some(&topic_owned), Duration::from_secs(5))
                    .map(|md| {
                        md.topics().iter().any(|t| {
                            t.error().is_none()
                                && t.partitions().len() == want.len()
                                && t.partitions().iter().all(|p| {
                                    let mut isr = p.isr().to_vec();
                                    isr.sort_unstable();
                                    let mut all =
                                        want.get(p.id() as usize).cloned().unwrap_or_default();
                                    all.sort_unstable();
                                    p.leader() >= 0 && isr == all
                                })
                        })
                    })
            })
            .await
            .context("metadata task")??;
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("topic {topic}: not every partition has a leader and a full ISR after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn script(&self, args: &[&str]) -> Result<()> {
        let run = tokio::process::Command::new("bash")
            .arg(&self.script)
            .args(args)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .map_err(|_| anyhow!("{} {args:?}: no answer in 120 s", self.script.display()))?
            .with_context(|| format!("running {}", self.script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {args:?} failed ({}): {}",
                self.script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stop broker `id` (2 or 3: node 1 runs the controller) with `kafka.sh stop-broker`: a
    /// controlled shutdown; returns when its process is gone. The guard starts the broker again
    /// when dropped (a failed test leaves the cluster whole for the tests after it); prefer
    /// [`StoppedBroker::start`], which says how the start went.
    pub async fn stop_broker(&self, id: i32) -> Result<StoppedBroker> {
        let guard = StoppedBroker {
            kafka: Some(self.clone()),
            id,
        };
        self.script(&["stop-broker", &id.to_string()]).await?;
        Ok(guard)
    }

    /// Start broker `id` again with `kafka.sh start-broker` (returns when it is STARTED, at most
    /// 60 s).
    pub async fn start_broker(&self, id: i32) -> Result<()> {
        self.script(&["start-broker", &id.to_string()]).await
    }

    /// Produce `per_partition` messages to each of `partitions` partitions (acks=all, awaited).
    pub async fn produce(&self, topic: &str, partitions: i32, per_partition: i64) -> Result<()> {
        let producer: FutureProducer = self
            .config()
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .context("creating the producer")?;
        for p in 0..partitions {
            let mut pending = Vec::new();
            for i in 0..per_partition {
                let key = format!("k{p}-{i}");
                let payload = format!("message {i} of partition {p}");
                let record = FutureRecord::to(topic)
                    .partition(p)
                    .key(&key)
                    .payload(&payload);
                let fut = producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow!("enqueueing to {topic}/{p}: {e}"))?;
                pending.push(fut);
            }
            for fut in pending {
                fut.await
                    .context("delivery future dropped")?
                    .map_err(|(e, _)| anyhow!("delivering to {topic}/{p}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Commit `offsets[p]` for partition `p` of `topic` in `group`, without joining the group.
    pub async fn commit_offsets(&self, group: &str, topic: &str, offsets: &[i64]) -> Result<()> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("creating the committing consumer")?;
        let mut tpl = TopicPartitionList::new();
        for (p, off) in offsets.iter().enumerate() {
            let p = i32::try_from(p).context("partition index")?;
            tpl.add_partition_offset(topic, p, Offset::Offset(*off))
                .with_context(|| format!("offset {off} for {topic}/{p}"))?;
        }
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .context("commit task")?
            .context("OffsetCommit")?;
        Ok(())
    }

    /// Committed offsets of `group` for `partitions` partitions of `topic`, read back with rdkafka
    /// (`None` for a partition without a committed offset).
    pub async fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<Vec<Option<i64>>> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("creating the reading consumer")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(tpl, Duration::from_secs(10))
        })
        .await
        .context("committed task")?
        .context("OffsetFetch")?;
        let mut out = vec![None; partitions as usize];
        for e in got.elements() {
            if let (Ok(i), Offset::Offset(o)) = (usize::try_from(e.partition()), e.offset()) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(o);
                }
            }
        }
        Ok(out)
    }

    /// Bring about a lag of known size: topic with `partitions` partitions, `per_partition`
    /// messages in each, and `committed[p]` committed for `group`.
    pub async fn build_lag(
        &self,
        topic: &str,
        group: &str,
        partitions: i32,
        per_partition: i64,
        committed: &[i64],
    ) -> Result<LagScenario> {
        if committed.len() != partitions as usize {
            bail!(
                "{} committed offsets for {partitions} partitions",
                committed.len()
            );
        }
        if let Some(c) = committed.iter().find(|c| **c < 0 || **c > per_partition) {
            bail!("committed offset {c} is outside 0..={per_partition}");
        }
        self.create_topic(topic, partitions).await?;
        self.produce(topic, partitions, per_partition).await?;
        self.commit_offsets(group, topic, committed).await?;
        Ok(LagScenario {
            topic: topic.to_string(),
            group: group.to_string(),
            per_partition,
            committed: committed.to_vec(),
        })
    }

    /// Run one of Kafka's CLI classes with arguments; stdout on success.
    pub async fn cli(&self, class: &str, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(&self.java)
            .args([
                "-Xms64m",
                "-Xmx256m",
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                "-cp",
            ])
            .arg(&self.classpath)
            .arg(class)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {class}"))?;
        if !out.status.success() {
            bail!(
                "{class} {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).context("CLI output is not UTF-8")
    }

    /// Ground truth: `kafka-consumer-groups --describe --group G`
    /// (`org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`).
    pub async fn describe_group(&self, group: &str) -> Result<Vec<GroupLagRow>> {
        let out = self
            .cli(
                "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                &[
                    "--bootstrap-server",
                    &self.bootstrap,
                    "--describe",
                    "--group",
                    group,
                ],
            )
            .await?;
        parse_group_describe(&out)
    }

    /// Ground truth: `kafka-topics --describe --topic T` (`org.apache.kafka.tools.TopicCommand`).
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        let out = self
            .cli(
                "org.apache.kafka.tools.TopicCommand",
                &[
                    "--bootstrap-server",
                    &self.bootstrap,
                    "--describe",
                    "--topic",
                    topic,
                ],
            )
            .await?;
        parse_topic_describe(&out)
    }
}

/// A broker stopped by [`Kafka::stop_broker`]; started again by [`StoppedBroker::start`], or
/// when dropped.
#[derive(Debug)]
pub struct StoppedBroker {
    kafka: Option<Kafka>,
    id: i32,
}

impl StoppedBroker {
    /// The stopped broker's id.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Start the broker again (`kafka.sh start-broker`; returns when it is STARTED).
    pub async fn start(mut self) -> Result<()> {
        match self.kafka.take() {
            Some(k) => k.start_broker(self.id).await,
            None => Ok(()),
        }
    }
}

impl Drop for StoppedBroker {
    fn drop(&mut self) {
        let Some(k) = self.kafka.take() else {
            return;
        };
        // Blocking on purpose: this runs while a test unwinds, before the next test starts.
        let out = std::process::Command::new("bash")
            .arg(&k.script)
            .args(["start-broker", &self.id.to_string()])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "starting broker {} again failed ({}): {}",
                self.id,
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("starting broker {} again: {e}", self.id),
        }
    }
}

/// The partition filters of `kafka-topics --describe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionFilter {
    /// `--under-replicated-partitions`.
    UnderReplicated,
    /// `--unavailable-partitions`.
    Unavailable,
}

impl Kafka {
    /// Ground truth: `kafka-topics --describe --topic 'a|b|…' <filter>` — the partitions of
    /// `topics` the CLI lists under `filter`, as (topic, partition line), sorted.
    pub async fn describe_partitions(
        &self,
        topics: &[&str],
        filter: PartitionFilter,
    ) -> Result<Vec<(String, TopicPartitionInfo)>> {
        let flag = match filter {
            PartitionFilter::UnderReplicated => "--under-replicated-partitions",
            PartitionFilter::Unavailable => "--unavailable-partitions",
        };
        let pattern = topics.join("|");
        let out = self
            .cli(
                "org.apache.kafka.tools.TopicCommand",
                &[
                    "--bootstrap-server",
                    &self.bootstrap,
                    "--describe",
                    "--topic",
                    &pattern,
                    flag,
                ],
            )
            .await?;
        let mut rows = parse_partition_lines(&out)?;
        rows.retain(|(t, _)| topics.contains(&t.as_str()));
        Ok(rows)
    }
}

/// Parse the `Partition:` lines of `kafka-topics --describe` (with a partition filter such as
/// `--under-replicated-partitions` the CLI prints only those, without the topic line), sorted by
/// topic and partition.
pub fn parse_partition_lines(out: &str) -> Result<Vec<(String, TopicPartitionInfo)>> {
    let mut rows = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f = fields(line);
        let Some(p) = f.get("Partition") else {
            continue;
        };
        let topic = f
            .get("Topic")
            .ok_or_else(|| anyhow!("no Topic in {line:?}"))?
            .clone();
        rows.push((topic, partition_info(&f, p, line)?));
    }
    rows.sort_by(|a, b| (&a.0, a.1.partition).cmp(&(&b.0, b.1.partition)));
    Ok(rows)
}

fn partition_info(f: &BTreeMap<String, String>, p: &str, line: &str) -> Result<TopicPartitionInfo> {
    let leader = match f.get("Leader").map(String::as_str) {
        None | Some("none") | Some("-1") => None,
        Some(l) => Some(l.parse().with_context(|| format!("Leader in {line:?}"))?),
    };
    Ok(TopicPartitionInfo {
        partition: p
            .parse()
            .with_context(|| format!("Partition in {line:?}"))?,
        leader,
        replicas: id_list(f.get("Replicas").map(String::as_str).unwrap_or(""))?,
        isr: id_list(f.get("Isr").map(String::as_str).unwrap_or(""))?,
    })
}

/// Parse `KAFKA_BROKERS` (`id@host:port,…`).
pub fn parse_brokers(s: &str) -> Result<BTreeMap<i32, String>> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            let (id, addr) = x
                .trim()
                .split_once('@')
                .ok_or_else(|| anyhow!("KAFKA_BROKERS entry {x:?} is not id@host:port"))?;
            Ok((
                id.parse()
                    .with_context(|| format!("broker id in KAFKA_BROKERS entry {x:?}"))?,
                addr.to_string(),
            ))
        })
        .collect()
}

fn dash_or_i64(s: &str) -> Result<Option<i64>> {
    if s == "-" {
        Ok(None)
    } else {
        s.parse()
            .map(Some)
            .with_context(|| format!("not a number: {s:?}"))
    }
}

/// Parse the table printed by `kafka-consumer-groups --describe` (header `GROUP TOPIC PARTITION
/// CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID`; lines before it are notes).
pub fn parse_group_describe(out: &str) -> Result<Vec<GroupLagRow>> {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("GROUP "));
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow!("no GROUP header in kafka-consumer-groups output: {out:?}"))?
        .split_whitespace()
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| anyhow!("kafka-consumer-groups output has no {name} column: {header:?}"))
    };
    let (ig, it, ip) = (col("GROUP")?, col("TOPIC")?, col("PARTITION")?);
    let (ic, ie, il, iid) = (
        col("CURRENT-OFFSET")?,
        col("LOG-END-OFFSET")?,
        col("LAG")?,
        col("CONSUMER-ID")?,
    );
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| anyhow!("short line {line:?}"))
        };
        rows.push(GroupLagRow {
            group: get(ig)?.to_string(),
            topic: get(it)?.to_string(),
            partition: get(ip)?
                .parse()
                .with_context(|| format!("PARTITION in {line:?}"))?,
            current_offset: dash_or_i64(get(ic)?)?,
            log_end_offset: dash_or_i64(get(ie)?)?,
            lag: dash_or_i64(get(il)?)?,
            consumer_id: get(iid)?.to_string(),
        });
    }
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(rows)
}

fn fields(line: &str) -> BTreeMap<String, String> {
    line.split('\t')
        .filter_map(|f| f.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn id_list(s: &str) -> Result<Vec<i32>> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| x.trim().parse().with_context(|| format!("broker id {x:?}")))
        .collect()
}

/// Parse `kafka-topics --describe` for one topic (a `Topic: … PartitionCount: …` line, then one
/// tab-indented `Partition: … Leader: … Replicas: … Isr: …` line per partition).
pub fn parse_topic_describe(out: &str) -> Result<TopicDescription> {
    let mut desc: Option<TopicDescription> = None;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f = fields(line);
        if let Some(p) = f.get("Partition") {
            let d = desc
                .as_mut()
                .ok_or_else(|| anyhow!("partition line before the topic line: {line:?}"))?;
            d.partitions.push(partition_info(&f, p, line)?);
        } else if let Some(count) = f.get("PartitionCount") {
            desc = Some(TopicDescription {
                topic: f.get("Topic").cloned().unwrap_or_default(),
                partition_count: count
                    .parse()
                    .with_context(|| format!("PartitionCount in {line:?}"))?,
                replication_factor: f
                    .get("ReplicationFactor")
                    .ok_or_else(|| anyhow!("no ReplicationFactor in {line:?}"))?
                    .parse()
                    .with_context(|| format!("ReplicationFactor in {line:?}"))?,
                partitions: Vec::new(),
            });
        }
    }
    desc.ok_or_else(|| anyhow!("no topic in kafka-topics output: {out:?}"))
}

/// An HTTP answer: status and body (JSON, `null` when empty, a string when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

/// Send a request and read the answer whatever its status.
pub(crate) async fn exchange(req: reqwest::RequestBuilder) -> Result<Answer> {
    let resp = req.send().await.context("HTTP request")?;
    let status = resp.status().as_u16();
    let text = resp.text().await.context("reading the HTTP body")?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok(Answer { status, body })
}

/// The Kafka Connect worker of the tier.
#[derive(Debug, Clone)]
pub struct KafkaConnect {
    /// `http://127.0.0.1:18083`
    pub url: String,
    /// A directory whose files the worker may read (FileStream sources).
    pub files_dir: PathBuf,
    http: reqwest::Client,
}

/// The topic name a FileStream source is pointed at to make its task fail: the broker rejects it
/// (`InvalidTopicException`, not retriable), so the task dies with
/// `Unrecoverable exception from producer send callback`.
pub const INVALID_TOPIC: &str = "rb invalid topic!";

impl KafkaConnect {
    /// The handle from the env file written by `kafka.sh`.
    pub fn from_env(env: &PeerEnv) -> Result<Self> {
        Self::new(
            env.get("CONNECT_URL")?,
            Path::new(env.get("KAFKA_CONNECT_FILES")?),
        )
    }

    /// A handle on any Connect REST endpoint (e.g. a fake, for differential tests).
    pub fn new(url: &str, files_dir: &Path) -> Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            files_dir: files_dir.to_path_buf(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(100))
                .build()
                .context("building the HTTP client")?,
        })
    }

    /// Any request: `method` and `path` (with query) relative to the worker's URL.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(b) = body {
            req = req.json(b);
        }
        exchange(req).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Create a FileStream source connector reading `file` into `topic`.
    pub async fn create_file_source(&self, name: &str, file: &Path, topic: &str) -> Result<Answer> {
        let file = file
            .to_str()
            .ok_or_else(|| anyhow!("file path is not UTF-8"))?;
        let body = json!({
            "name": name,
            "config": {
                "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "tasks.max": "1",
                "file": file,
                "topic": topic,
            }
        });
        let a = self
            .call(reqwest::Method::POST, "/connectors", Some(&body))
            .await?;
        if a.status != 201 {
            bail!("creating connector {name}: {} {}", a.status, a.body);
        }
        Ok(a)
    }

    /// `GET /connectors/<name>/status` (200 body).
    pub async fn status(&self, name: &str) -> Result<Value> {
        let a = self.get(&format!("/connectors/{name}/status")).await?;
        if a.status != 200 {
            bail!("status of {name}: {} {}", a.status, a.body);
        }
        Ok(a.body)
    }

    /// Poll the status until `pred` holds (at most `timeout`); the last status.
    pub async fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(s) = self.status(name).await {
                if pred(&s) {
                    return Ok(s);
                }
                last = s;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("connector {name}: {what} not reached in {timeout:?}; last status {last}")
    }

    /// The state of task `id` in a status body.
    pub fn task_state(status: &Value, id: u64) -> Option<&str> {
        status["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["id"].as_u64() == Some(id))?["state"]
            .as_str()
    }

    /// Bring about a connector whose task 0 is FAILED for real: a FileStream source over a file
    /// with `lines` lines, producing to [`INVALID_TOPIC`]. Returns the FAILED status.
    pub async fn make_failed_task(&self, name: &str, lines: usize) -> Result<Value> {
        std::fs::create_dir_all(&self.files_dir)
            .with_context(|| format!("creating {}", self.files_dir.display()))?;
        let file = self.files_dir.join(format!("{name}.txt"));
        let text: String = (0..lines).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        self.create_file_source(name, &file, INVALID_TOPIC).await?;
        self.wait_status(name, Duration::from_secs(60), "task 0 FAILED", |s| {
            Self::task_state(s, 0) == Some("FAILED")
        })
        .await
    }

    /// `POST /connectors/<name>/restart[?includeTasks=…&onlyFailed=…]`.
    pub async fn restart(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<Answer> {
        let path = if include_tasks || only_failed {
            format!(
                "/connectors/{name}/restart?includeTasks={include_tasks}&onlyFailed={only_failed}"
            )
        } else {
            format!("/connectors/{name}/restart")
        };
        self.call(reqwest::Method::POST, &path, None).await
    }

    /// Replace the `topic` of a connector's config (`PUT /connectors/<name>/config`).
    pub async fn set_topic(&self, name: &str, topic: &str) -> Result<Answer> {
        let info = self.get(&format!("/connectors/{name}")).await?;
        if info.status != 200 {
            bail!("reading connector {name}: {} {}", info.status, info.body);
        }
        let mut config = info.body["config"].clone();
        config["topic"] = Value::String(topic.to_string());
        self.call(
            reqwest::Method::PUT,
            &format!("/connectors/{name}/config"),
            Some(&config),
        )
        .await
    }

    /// `PUT /connectors/<name>/pause`.
    pub async fn pause(&self, name: &str) -> Result<Answer> {
        self.call(
            reqwest::Method::PUT,
            &format!("/connectors/{name}/pause"),
            None,
        )
        .await
    }

    /// `PUT /connectors/<name>/resume`.
    pub async fn resume(&self, name: &str) -> Result<Answer> {
        self.call(
            reqwest::Method::PUT,
            &format!("/connectors/{name}/resume"),
            None,
        )
        .await
    }

    /// `DELETE /connectors/<name>` (404 is fine: already gone).
    pub async fn delete(&self, name: &str) -> Result<()> {
        let a = self
            .call(
                reqwest::Method::DELETE,
                &format!("/connectors/{name}"),
                None,
            )
            .await?;
        if a.status != 204 && a.status != 404 {
            bail!("deleting {name}: {} {}", a.status, a.body);
        }
        Ok(())
    }

    /// Ground truth: `GET /connectors?expand=status`.
    pub async fn list_expand_status(&self) -> Result<Value> {
        let a = self.get("/connectors?expand=status").await?;
        if a.status != 200 {
            bail!("GET /connectors?expand=status: {} {}", a.status, a.body);
        }
        Ok(a.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_group_describe_without_members() {
        let out = "\nConsumer group 'g' has no active members.\n\n\
GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID\n\
g               t               1          -               10              -               -               -               -\n\
g               t               0          4               10              6               -               -               -\n";
        let rows = parse_group_describe(out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].partition, 0);
        assert_eq!(rows[0].lag, Some(6));
        assert_eq!(rows[1].current_offset, None);
        assert!(parse_group_describe("Error: nothing").is_err());
    }

    #[test]
    fn parses_topic_describe() {
        let out = "Topic: t\tTopicId: abc\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: \n\
\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr: \n\
\tTopic: t\tPartition: 1\tLeader: none\tReplicas: 1\tIsr: \tElr: \tLastKnownElr: \n";
        let d = parse_topic_describe(out).unwrap();
        assert_eq!(d.partition_count, 2);
        assert_eq!(d.partitions[0].leader, Some(1));
        assert_eq!(d.partitions[1].leader, None);
        assert!(d.partitions[1].isr.is_empty());
    }

    #[test]
    fn parses_filtered_partition_lines_and_brokers() {
        let out = "\tTopic: b\tTopicId: x\tPartition: 1\tLeader: 3\tReplicas: 2,3,1\tIsr: 3,1\tElr: \tLastKnownElr: \n\
\tTopic: a\tTopicId: y\tPartition: 0\tLeader: none\tReplicas: 2\tIsr: 2\tElr: \tLastKnownElr: \n";
        let rows = parse_partition_lines(out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "a");
        assert_eq!(rows[0].1.leader, None);
        assert_eq!(rows[1].1.replicas, [2, 3, 1]);
        assert_eq!(rows[1].1.isr, [3, 1]);
        assert!(parse_partition_lines("\tPartition: 0\tLeader: 1\n").is_err());
        let b = parse_brokers("1@127.0.0.1:19092,2@127.0.0.2:19092").unwrap();
        assert_eq!(b.get(&2).map(String::as_str), Some("127.0.0.2:19092"));
        assert!(parse_brokers("127.0.0.1:19092").is_err());
    }
}
