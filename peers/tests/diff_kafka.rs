//! Differential test: the client calls rb's consumer-lag probe makes (rdkafka `BaseConsumer` of the
//! group, `enable.auto.commit=false`, never subscribed: Metadata, one OffsetFetch through
//! `committed_offsets`, batched ListOffsets through `offsets_for_times` with `Offset::End` /
//! `Offset::Beginning`) against the real cluster (Kafka 4.1.1, KRaft, three brokers) and against
//! `rb_testkit::kafka::FakeKafka` (librdkafka's mock cluster, three brokers), in the same
//! situation: a topic with [`PARTITIONS`] partitions, [`PER_PARTITION`] messages in each, a group
//! with [`COMMITTED`] committed on the first partitions and NO committed offset on the last one;
//! plus a group that never committed and a topic that does not exist.
//!
//! Each side's answers are reduced to `what → value` lines (offsets as rdkafka represents them,
//! `Offset::Invalid` included, error kinds and codes, partition count, leaders, lag) and compared.
//! The real side is also checked against the situation it was given, so two equally wrong answers
//! cannot pass. The test fails when the differences are not exactly [`KNOWN`]: a new difference
//! (the fake drifted) or one that disappeared (update the list) both show up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rb_peers::kafka::Kafka;
use rb_peers::PeerEnv;
use rb_testkit::kafka::FakeKafka;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

/// Differences between the real broker and the fake accepted at the time of writing (the `what`
/// of a line, then real and fake values), each with its reason.
const KNOWN: &[&str] = &[
    // OffsetFetch for a topic that does not exist: Kafka 4.1.1 answers offset -1 without an error
    // (rdkafka: `Offset::Invalid`, like a partition the group never committed on), librdkafka's
    // mock cluster answers UNKNOWN_TOPIC_OR_PARTITION for the partition. The mock's OffsetFetch
    // handler is C code inside librdkafka that `FakeKafka` cannot change. Both sides agree on what
    // a probe should rely on to tell a missing topic: Metadata says UnknownTopicOrPartition and
    // ListOffsets fails with UnknownPartition.
    "unknown topic committed: p0 error: real none, fake KafkaError (Offset fetch error: \
     UnknownTopicOrPartition (Broker: Unknown topic or partition)) (Some(UnknownTopicOrPartition))",
];

/// Partitions of the lag topic.
const PARTITIONS: i32 = 4;
/// Messages produced to each partition (= every partition's log-end offset).
const PER_PARTITION: i64 = 10;
/// Offsets the group commits on partitions `0..COMMITTED.len()`; the partitions after them have
/// none (a lagging group, a drained partition, one the group never committed on).
const COMMITTED: [i64; 3] = [3, 7, 10];
/// Timeout of each client call.
const TIMEOUT: Duration = Duration::from_secs(10);

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// The probe's consumer: group set, no auto commit, never subscribed.
fn probe_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

fn tpl(topic: &str, partitions: i32, offset: Option<Offset>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(partitions as usize);
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    if let Some(o) = offset {
        tpl.set_all_offsets(o).unwrap();
    }
    tpl
}

fn offset_repr(o: Offset) -> String {
    match o {
        Offset::Offset(n) => format!("Offset({n})"),
        other => format!("{other:?}"),
    }
}

fn result_repr(r: &KafkaResult<()>) -> String {
    match r {
        Ok(()) => "none".to_string(),
        Err(e) => format!("{e:?} ({:?})", e.rdkafka_error_code()),
    }
}

/// What one side answered, as `what → value` (sorted, so the two sides line up).
#[derive(Debug, Default)]
struct Observed {
    values: BTreeMap<String, String>,
}

impl Observed {
    fn put(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.values.insert(what.into(), value.into());
    }

    fn get(&self, what: &str) -> &str {
        self.values
            .get(what)
            .map(String::as_str)
            .unwrap_or("<missing>")
    }

    /// Metadata of `topic`: topic error, partition count, per partition leader, replicas, ISR, error.
    fn metadata(&mut self, label: &str, c: &BaseConsumer, topic: &str) {
        match c.fetch_metadata(Some(topic), TIMEOUT) {
            Err(e) => self.put(format!("{label} metadata: call"), format!("{e:?}")),
            Ok(md) => {
                self.put(format!("{label} metadata: call"), "ok");
                let topics: Vec<_> = md.topics().iter().filter(|t| t.name() == topic).collect();
                self.put(
                    format!("{label} metadata: topics named"),
                    topics.len().to_string(),
                );
                for t in topics {
                    self.put(
                        format!("{label} metadata: topic error"),
                        match t.error() {
                            None => "none".to_string(),
                            Some(e) => format!("{:?}", RDKafkaErrorCode::from(e)),
                        },
                    );
                    self.put(
                        format!("{label} metadata: partition count"),
                        t.partitions().len().to_string(),
                    );
                    for p in t.partitions() {
                        let id = p.id();
                        // Whether there is a leader, not which broker: the real cluster and the
                        // fake (both three brokers) place partitions each their own way.
                        self.put(
                            format!("{label} metadata: p{id} leader"),
                            if p.leader() >= 0 {
                                "present".to_string()
                            } else {
                                format!("none ({})", p.leader())
                            },
                        );
                        self.put(
                            format!("{label} metadata: p{id} replicas/isr"),
                            format!("{}/{}", p.replicas().len(), p.isr().len()),
                        );
                        self.put(
                            format!("{label} metadata: p{id} error"),
                            match p.error() {
                                None => "none".to_string(),
                                Some(e) => {
                                    format!("{:?}", RDKafkaErrorCode::from(e))
                                }
                            },
                        );
                    }
                }
                self.put(
                    format!("{label} metadata: brokers"),
                    md.brokers().len().to_string(),
                );
            }
        }
    }

    /// One OffsetFetch for `partitions` partitions: the call's result, then per partition the
    /// offset as rdkafka represents it, its error and its metadata string.
    fn committed(
        &mut self,
        label: &str,
        c: &BaseConsumer,
        topic: &str,
        partitions: i32,
    ) -> Vec<Option<Offset>> {
        let mut out = vec![None; partitions as usize];
        match c.committed_offsets(tpl(topic, partitions, None), TIMEOUT) {
            Err(e) => self.put(format!("{label} committed: call"), format!("{e:?}")),
            Ok(got) => {
                self.put(format!("{label} committed: call"), "ok");
                self.put(
                    format!("{label} committed: partitions answered"),
                    got.count().to_string(),
                );
                for e in got.elements_for_topic(topic) {
                    let p = e.partition();
                    self.put(
                        format!("{label} committed: p{p} offset"),
                        offset_repr(e.offset()),
                    );
                    self.put(
                        format!("{label} committed: p{p} error"),
                        result_repr(&e.error()),
                    );
                    self.put(
                        format!("{label} committed: p{p} metadata"),
                        format!("{:?}", e.metadata()),
                    );
                    if let Some(slot) = usize::try_from(p).ok().and_then(|i| out.get_mut(i)) {
                        *slot = Some(e.offset());
                    }
                }
            }
        }
        out
    }

    /// Batched ListOffsets for `partitions` partitions at `at` (`End` or `Beginning`).
    fn list_offsets(
        &mut self,
        label: &str,
        c: &BaseConsumer,
        topic: &str,
        partitions: i32,
        at: Offset,
    ) -> Vec<Option<Offset>> {
        let name = format!("{label} {at:?}");
        let mut out = vec![None; partitions as usize];
        match c.offsets_for_times(tpl(topic, partitions, Some(at)), TIMEOUT) {
            Err(e) => self.put(format!("{name}: call"), format!("{e:?}")),
            Ok(got) => {
                self.put(format!("{name}: call"), "ok");
                self.put(
                    format!("{name}: partitions answered"),
                    got.count().to_string(),
                );
                for e in got.elements_for_topic(topic) {
                    let p = e.partition();
                    self.put(format!("{name}: p{p} offset"), offset_repr(e.offset()));
                    self.put(format!("{name}: p{p} error"), result_repr(&e.error()));
                    if let Some(slot) = usize::try_from(p).ok().and_then(|i| out.get_mut(i)) {
                        *slot = Some(e.offset());
                    }
                }
            }
        }
        out
    }
}

/// Everything the probe would read, on one side (blocking rdkafka calls).
fn observe(bootstrap: &str, topic: &str, group: &str, no_group: &str, missing: &str) -> Observed {
    let mut o = Observed::default();
    let c = probe_consumer(bootstrap, group);

    o.metadata("topic", &c, topic);
    let committed = o.committed("group", &c, topic, PARTITIONS);
    let ends = o.list_offsets("topic", &c, topic, PARTITIONS, Offset::End);
    o.list_offsets("topic", &c, topic, PARTITIONS, Offset::Beginning);
    // The lag as the probe computes it: end - committed; a partition without a committed offset
    // (Offset::Invalid) has no lag of its own.
    for p in 0..PARTITIONS as usize {
        let lag = match (committed[p], ends[p]) {
            (Some(Offset::Offset(c)), Some(Offset::Offset(e))) => (e - c).to_string(),
            (Some(Offset::Invalid), Some(Offset::Offset(_))) => "no committed offset".to_string(),
            (c, e) => format!("not computable (committed {c:?}, end {e:?})"),
        };
        o.put(format!("group lag: p{p}"), lag);
    }

    // A group that never committed anything, on the same topic.
    let c2 = probe_consumer(bootstrap, no_group);
    o.committed("unknown group", &c2, topic, PARTITIONS);

    // A topic that does not exist (auto creation is off on the real broker; a consumer never asks
    // for it).
    o.metadata("unknown topic", &c, missing);
    o.committed("unknown topic", &c, missing, 1);
    o.list_offsets("unknown topic", &c, missing, 1, Offset::End);
    o
}

/// The real side must show the situation it was given (else both sides could agree on nonsense).
fn check_real_situation(real: &Observed) {
    let expect = |what: &str, value: &str| {
        assert_eq!(real.get(what), value, "real broker, {what}: {real:#?}");
    };
    expect("topic metadata: topic error", "none");
    expect("topic metadata: partition count", &PARTITIONS.to_string());
    expect("group committed: call", "ok");
    for p in 0..PARTITIONS as usize {
        let leader = real.get(&format!("topic metadata: p{p} leader"));
        assert!(leader.starts_with("present"), "p{p}: {leader}");
        let committed = COMMITTED
            .get(p)
            .map_or("Invalid".to_string(), |c| format!("Offset({c})"));
        expect(&format!("group committed: p{p} offset"), &committed);
        expect(&format!("group committed: p{p} error"), "none");
        expect(
            &format!("topic End: p{p} offset"),
            &format!("Offset({PER_PARTITION})"),
        );
        expect(&format!("topic End: p{p} error"), "none");
        expect(&format!("topic Beginning: p{p} offset"), "Offset(0)");
        let lag = COMMITTED
            .get(p)
            .map_or("no committed offset".to_string(), |c| {
                (PER_PARTITION - c).to_string()
            });
        expect(&format!("group lag: p{p}"), &lag);
        expect(&format!("unknown group committed: p{p} offset"), "Invalid");
        expect(&format!("unknown group committed: p{p} error"), "none");
    }
    let missing = real.get("unknown topic metadata: topic error");
    assert!(
        missing.contains("UnknownTopic"),
        "real broker, unknown topic metadata: {missing}"
    );
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn fake_kafka_answers_the_lag_probe_like_the_real_broker() {
    let kafka = Kafka::from_env(&PeerEnv::load().unwrap()).unwrap();
    let topic = unique("rb-diff-lag");
    let group = unique("rb-diff-group");
    let no_group = unique("rb-diff-no-group");
    let missing = unique("rb-diff-missing");

    // The same situation on both sides.
    let t = Instant::now();
    kafka.create_topic(&topic, PARTITIONS).await.unwrap();
    kafka
        .produce(&topic, PARTITIONS, PER_PARTITION)
        .await
        .unwrap();
    kafka
        .commit_offsets(&group, &topic, &COMMITTED)
        .await
        .unwrap();
    eprintln!("real situation built in {:?}", t.elapsed());
    let t = Instant::now();
    // Three brokers, like the real cluster (127.0.0.1–3).
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic(&topic, PARTITIONS, 1).unwrap();
    fake.produce_all(&topic, &[PER_PARTITION as u64; PARTITIONS as usize])
        .unwrap();
    let pairs: Vec<(i32, i64)> = (0..).zip(COMMITTED).collect();
    fake.commit_many(&group, &topic, &pairs).unwrap();
    eprintln!("fake situation built in {:?}", t.elapsed());

    let observe_on = |bootstrap: String| {
        let (topic, group, no_group, missing) = (
            topic.clone(),
            group.clone(),
            no_group.clone(),
            missing.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let o = observe(&bootstrap, &topic, &group, &no_group, &missing);
            (o, t.elapsed())
        })
    };
    let (real, real_took) = observe_on(kafka.bootstrap.clone()).await.unwrap();
    let (fake_seen, fake_took) = observe_on(fake.bootstrap_servers().to_string())
        .await
        .unwrap();
    eprintln!("probe calls: real {real_took:?}, fake {fake_took:?}");
    kafka.delete_topic(&topic).await.unwrap();

    for (what, value) in &real.values {
        eprintln!("  {what}: {value}");
    }
    check_real_situation(&real);

    let whats: BTreeSet<&String> = real.values.keys().chain(fake_seen.values.keys()).collect();
    let mut lines = BTreeSet::new();
    for what in whats {
        let (r, f) = (real.get(what), fake_seen.get(what));
        if r != f {
            lines.insert(format!("{what}: real {r}, fake {f}"));
        }
    }
    eprintln!(
        "real Kafka {} vs FakeKafka: {} value(s) compared, {} difference(s)",
        kafka.version,
        real.values.len(),
        lines.len()
    );
    for l in &lines {
        eprintln!("  DIFF {l}");
    }
    let known: BTreeSet<String> = KNOWN.iter().map(|s| s.to_string()).collect();
    let new: Vec<_> = lines.difference(&known).collect();
    let gone: Vec<_> = known.difference(&lines).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "new differences: {new:#?}\nno longer seen (remove from KNOWN): {gone:#?}"
    );
}
