//! [`FakeKafka`]: a librdkafka mock cluster owned by a dedicated thread, plus the ground-truth model
//! of log-end and committed offsets the fake seeded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaType;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::error::{FakeKafkaError, Result};
use super::fault::{BrokerError, KafkaApi};
use super::requests::{count_requests, requests_by_broker, KafkaRequest};
use super::tracking;

/// The largest broker count [`FakeKafka::start`] accepts.
pub const MAX_BROKERS: i32 = 64;
/// The largest partition count [`FakeKafka::create_topic`] accepts.
pub const MAX_PARTITIONS: i32 = 100_000;
/// The most records one call may produce (a guard against a typo turning a test into a memory hog).
pub const MAX_RECORDS_PER_CALL: u64 = 20_000_000;

/// How long the seeding producer waits for its records to be acknowledged.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// librdkafka's per-message delivery timeout for the seeding producer (below [`FLUSH_TIMEOUT`] so a
/// downed leader fails the call instead of hanging it).
const MESSAGE_TIMEOUT_MS: &str = "10000";
/// How long a commit and its verifying OffsetFetch may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How many times a full local producer queue is drained before giving up.
const QUEUE_FULL_RETRIES: u32 = 20_000;

/// Minimum spacing between two control operations on the mock cluster (see [`Worker::mock`]).
const MOCK_OP_SPACING: Duration = Duration::from_micros(400);

/// A unit of work run on the cluster thread.
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// A fake Kafka cluster: librdkafka's in-process mock cluster with `B` brokers listening on
/// `127.0.0.1`, plus the exact log-end and committed offsets the fake has seeded.
///
/// # Threading
///
/// rdkafka's `MockCluster` holds a raw pointer and is neither `Send` nor `Sync`. The cluster
/// therefore lives on a dedicated std thread (named `fake-kafka`) that owns it (through the client
/// that created it, which never connects to it) together with the seeding producer and one
/// committing consumer per group, and serves commands sent over a channel.
/// The handle is `Send + Sync + Clone` (clones share the cluster, which stops when the last clone is
/// dropped: the thread closes its clients, destroys the mock cluster and is joined).
///
/// Every method is a short blocking call (under a millisecond for control operations, which the
/// fake spaces 0.4 ms apart to dodge a lost-wake-up stall of librdkafka's mock thread; milliseconds
/// for seeding offsets). Calling them from async code is fine on a multi-thread runtime and on a
/// `current_thread` runtime with paused time alike; with paused time they are even deterministic,
/// because the runtime cannot auto-advance the clock while a call blocks it.
///
/// # Model
///
/// The fake tracks what it did: topics it created, log-end offsets (taken from the delivery reports
/// of the records it produced, i.e. the broker's own offsets) and offsets committed per group.
/// [`lag`](FakeKafka::lag) reports `end - committed` from that model: the ground truth a probe's
/// reading is compared with. Records produced by other clients are not seen by the model until the
/// fake produces to the same partition again.
///
/// A partition whose group never committed an offset stays without one: OffsetFetch answers
/// offset `-1` for it (rdkafka: `Offset::Invalid`) and [`lag`](FakeKafka::lag) reports `None`. Deciding
/// what that means (lag from the earliest offset, or unknown) is the probe's job.
#[derive(Clone)]
pub struct FakeKafka {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    bootstrap: String,
    brokers: i32,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; it then drops its clients and the cluster.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the fake Kafka cluster thread panicked while shutting down");
            }
        }
    }
}

impl fmt::Debug for FakeKafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeKafka")
            .field("bootstrap_servers", &self.inner.bootstrap)
            .field("brokers", &self.inner.brokers)
            .finish()
    }
}

/// One partition's offsets as the fake believes them (see [`FakeKafka::offsets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The partition index.
    pub partition: i32,
    /// The partition's leader broker (`None`: leaderless).
    pub leader: Option<i32>,
    /// The log-end offset (offset of the next record to be written).
    pub end_offset: i64,
    /// The group's committed offset (`None`: the group never committed on this partition).
    pub committed: Option<i64>,
}

impl PartitionOffsets {
    /// `end_offset - committed`, or `None` without a committed offset. Negative when the group
    /// committed beyond the log end.
    pub fn lag(&self) -> Option<i64> {
        self.committed.map(|c| self.end_offset - c)
    }
}

impl FakeKafka {
    /// Starts a mock cluster of `brokers` brokers (ids `1..=brokers`) on `127.0.0.1` ephemeral ports.
    ///
    /// Takes about a millisecond. Fails with [`FakeKafkaError::InvalidBrokerCount`] outside
    /// `1..=MAX_BROKERS`.
    pub fn start(brokers: i32) -> Result<FakeKafka> {
        if !(1..=MAX_BROKERS).contains(&brokers) {
            return Err(FakeKafkaError::InvalidBrokerCount {
                requested: brokers,
                max: MAX_BROKERS,
            });
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<String>>(1);
        let thread = std::thread::Builder::new()
            .name("fake-kafka".to_owned())
            .spawn(move || {
                let (owner, bootstrap) = match cluster_owner(brokers) {
                    Ok(started) => started,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut worker = Worker::new(owner, brokers, bootstrap.clone());
                if ready_tx.send(Ok(bootstrap)).is_err() {
                    return;
                }
                while let Ok(job) = rx.recv() {
                    job(&mut worker);
                }
                worker.shutdown();
            })
            .map_err(|e| FakeKafkaError::Stopped {
                detail: format!("cannot spawn the cluster thread: {e}"),
            })?;
        let started = ready_rx.recv();
        let bootstrap = match started {
            Ok(Ok(bootstrap)) => bootstrap,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(FakeKafkaError::Stopped {
                    detail: "the cluster thread exited while starting".to_owned(),
                });
            }
        };
        Ok(FakeKafka {
            inner: Arc::new(Inner {
                tx: Some(tx),
                thread: Some(thread),
                bootstrap,
                brokers,
            }),
        })
    }

    /// The `bootstrap.servers` list (`127.0.0.1:<port>,…`, one entry per broker).
    pub fn bootstrap_servers(&self) -> &str {
        &self.inner.bootstrap
    }

    /// The number of brokers.
    pub fn broker_count(&self) -> i32 {
        self.inner.brokers
    }

    /// The broker ids, `1..=broker_count()`.
    pub fn broker_ids(&self) -> std::ops::RangeInclusive<i32> {
        1..=self.inner.brokers
    }

    /// Runs `f` on the cluster thread and waits for its answer.
    fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
    {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |worker| {
            let _ = reply_tx.send(f(worker));
        });
        let tx = self
            .inner
            .tx
            .as_ref()
            .ok_or_else(|| FakeKafkaError::Stopped {
                detail: "the cluster is shutting down".to_owned(),
            })?;
        tx.send(job).map_err(|_| FakeKafkaError::Stopped {
            detail: "the cluster thread has exited".to_owned(),
        })?;
        reply_rx.recv().map_err(|_| FakeKafkaError::Stopped {
            detail: "the cluster thread stopped before answering".to_owned(),
        })?
    }

    fn check_broker(&self, broker: i32) -> Result<()> {
        if self.broker_ids().contains(&broker) {
            Ok(())
        } else {
            Err(FakeKafkaError::UnknownBroker {
                broker,
                brokers: self.inner.brokers,
            })
        }
    }

    // ---- topics -------------------------------------------------------------------------------

    /// Creates a topic with `partitions` partitions and `replication` replicas per partition.
    ///
    /// Leaders are spread round-robin: partition `p` is led by broker `p % B + 1`
    /// (change it with [`set_partition_leader`](FakeKafka::set_partition_leader)). All log-end
    /// offsets start at 0.
    pub fn create_topic(&self, topic: &str, partitions: i32, replication: i32) -> Result<()> {
        validate_topic_name(topic)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(FakeKafkaError::InvalidPartitionCount {
                topic: topic.to_owned(),
                partitions,
            });
        }
        if !(1..=self.inner.brokers).contains(&replication) {
            return Err(FakeKafkaError::InvalidReplication {
                topic: topic.to_owned(),
                replication,
                brokers: self.inner.brokers,
            });
        }
        let topic = topic.to_owned();
        self.call(move |w| w.create_topic(topic, partitions, replication))
    }

    /// The topics created through this fake, sorted.
    pub fn topics(&self) -> Result<Vec<String>> {
        self.call(|w| {
            let mut names: Vec<String> = w.topics.keys().cloned().collect();
            names.sort();
            Ok(names)
        })
    }

    /// The partition count of a topic.
    pub fn partition_count(&self, topic: &str) -> Result<i32> {
        let topic = topic.to_owned();
        self.call(move |w| Ok(w.topic(&topic)?.partitions()))
    }

    /// The leader of a partition (`None`: leaderless).
    pub fn partition_leader(&self, topic: &str, partition: i32) -> Result<Option<i32>> {
        let topic = topic.to_owned();
        self.call(move |w| {
            let state = w.topic(&topic)?;
            let idx = state.index(&topic, partition)?;
            Ok(state.leaders[idx])
        })
    }

    /// Moves a partition's leadership to `leader` (a broker id), or makes it leaderless with `None`.
    ///
    /// Clients learn about the move through NOT_LEADER errors and a metadata refresh, as with a real
    /// cluster.
    pub fn set_partition_leader(
        &self,
        topic: &str,
        partition: i32,
        leader: Option<i32>,
    ) -> Result<()> {
        if let Some(broker) = leader {
            self.check_broker(broker)?;
        }
        let topic = topic.to_owned();
        self.call(move |w| {
            let idx = w.topic(&topic)?.index(&topic, partition)?;
            w.mock()?
                .partition_leader(&topic, partition, leader)
                .map_err(|e| mock_err("partition_leader", e))?;
            if let Some(state) = w.topics.get_mut(&topic) {
                state.leaders[idx] = leader;
            }
            Ok(())
        })
    }

    /// The partitions of `topic` led by `broker`, ascending.
    pub fn partitions_led_by(&self, topic: &str, broker: i32) -> Result<Vec<i32>> {
        self.check_broker(broker)?;
        let topic = topic.to_owned();
        self.call(move |w| {
            let state = w.topic(&topic)?;
            Ok((0..state.partitions())
                .filter(|&p| state.leaders[p as usize] == Some(broker))
                .collect())
        })
    }

    // ---- log-end offsets ----------------------------------------------------------------------

    /// Appends `records` empty records to a partition (one batched produce) and returns the new
    /// log-end offset.
    pub fn produce(&self, topic: &str, partition: i32, records: u64) -> Result<i64> {
        let topic = topic.to_owned();
        self.call(move |w| {
            let idx = w.topic(&topic)?.index(&topic, partition)?;
            w.produce_batch(&topic, &[(partition, records)])?;
            Ok(w.topic(&topic)?.end[idx])
        })
    }

    /// Appends `records[p]` empty records to every partition `p` of `topic` in one batched pass
    /// (thousands of partitions take milliseconds). `records` must list every partition.
    pub fn produce_all(&self, topic: &str, records: &[u64]) -> Result<()> {
        let topic = topic.to_owned();
        let records = records.to_vec();
        self.call(move |w| {
            let state = w.topic(&topic)?;
            state.check_len(&topic, "records per partition", records.len())?;
            let counts: Vec<(i32, u64)> = (0..state.partitions()).zip(records).collect();
            w.produce_batch(&topic, &counts)
        })
    }

    /// Produces until the partition's log-end offset is `offset`. Fails with
    /// [`FakeKafkaError::EndOffsetBackwards`] if the log is already longer.
    pub fn set_end_offset(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let topic = topic.to_owned();
        self.call(move |w| {
            let state = w.topic(&topic)?;
            let idx = state.index(&topic, partition)?;
            let current = state.end[idx];
            if offset < current {
                return Err(FakeKafkaError::EndOffsetBackwards {
                    topic,
                    partition,
                    current,
                    requested: offset,
                });
            }
            let records = u64::try_from(offset - current).unwrap_or(0);
            w.produce_batch(&topic, &[(partition, records)])
        })
    }

    /// The log-end offset of one partition.
    pub fn end_offset(&self, topic: &str, partition: i32) -> Result<i64> {
        let topic = topic.to_owned();
        self.call(move |w| {
            let state = w.topic(&topic)?;
            Ok(state.end[state.index(&topic, partition)?])
        })
    }

    /// The log-end offsets of every partition of `topic`, by partition index.
    pub fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let topic = topic.to_owned();
        self.call(move |w| Ok(w.topic(&topic)?.end.clone()))
    }

    // ---- consumer groups ----------------------------------------------------------------------

    /// Commits `offset` for `group` on one partition (any offset `>= 0`, backwards and beyond the
    /// log end included, as Kafka allows), then reads it back with OffsetFetch to confirm.
    ///
    /// Works for groups without active members (like resetting offsets on a real cluster): a group a
    /// running consumer has joined rejects commits from outside its generation. On an error the
    /// model keeps the previous committed offsets (except for [`FakeKafkaError::CommitMismatch`],
    /// where it takes what the cluster reported).
    pub fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) -> Result<()> {
        self.commit_many(group, topic, &[(partition, offset)])
    }

    /// Commits several `(partition, offset)` pairs of one topic in a single OffsetCommit request.
    pub fn commit_many(&self, group: &str, topic: &str, offsets: &[(i32, i64)]) -> Result<()> {
        validate_group(group)?;
        let (group, topic, offsets) = (group.to_owned(), topic.to_owned(), offsets.to_vec());
        self.call(move |w| {
            let state = w.topic(&topic)?;
            for &(partition, offset) in &offsets {
                state.index(&topic, partition)?;
                if offset < 0 {
                    return Err(FakeKafkaError::NegativeOffset {
                        topic,
                        partition,
                        offset,
                    });
                }
            }
            w.commit_offsets(&group, &topic, &offsets)
        })
    }

    /// Commits `offsets[p]` for every partition `p` of `topic` in one request.
    pub fn commit_all(&self, group: &str, topic: &str, offsets: &[i64]) -> Result<()> {
        let n = self.partition_count(topic)?;
        if offsets.len() != n as usize {
            return Err(FakeKafkaError::PartitionCountMismatch {
                what: "committed offsets",
                topic: topic.to_owned(),
                expected: n as usize,
                got: offsets.len(),
            });
        }
        let pairs: Vec<(i32, i64)> = (0..n).zip(offsets.iter().copied()).collect();
        self.commit_many(group, topic, &pairs)
    }

    /// Makes `end - committed == lags[p]` exactly for every partition `p` of `topic`.
    ///
    /// Lag moves the way it does in production: a lag larger than the current one is reached by
    /// producing the difference (the committed offset stays), a smaller one by committing forward
    /// (the log-end offset stays). A partition without a committed offset gets one at
    /// `end - lag`, producing first if the log is shorter than `lag`. All produces go out in one
    /// batched pass and all commits in one OffsetCommit request.
    pub fn set_lag(&self, group: &str, topic: &str, lags: &[i64]) -> Result<()> {
        validate_group(group)?;
        let (group, topic, lags) = (group.to_owned(), topic.to_owned(), lags.to_vec());
        self.call(move |w| {
            let state = w.topic(&topic)?;
            state.check_len(&topic, "lag per partition", lags.len())?;
            let targets: Vec<(i32, i64)> = (0..state.partitions()).zip(lags).collect();
            w.set_lag(&group, &topic, &targets)
        })
    }

    /// [`set_lag`](FakeKafka::set_lag) with the same lag on every partition.
    pub fn set_uniform_lag(&self, group: &str, topic: &str, lag: i64) -> Result<()> {
        validate_group(group)?;
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.call(move |w| {
            let n = w.topic(&topic)?.partitions();
            let targets: Vec<(i32, i64)> = (0..n).map(|p| (p, lag)).collect();
            w.set_lag(&group, &topic, &targets)
        })
    }

    /// [`set_lag`](FakeKafka::set_lag) for one partition; the others are left alone.
    pub fn set_partition_lag(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        lag: i64,
    ) -> Result<()> {
        validate_group(group)?;
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.call(move |w| w.set_lag(&group, &topic, &[(partition, lag)]))
    }

    /// The group's lag per partition of `topic` (`None`: no committed offset), from the model.
    pub fn lag(&self, group: &str, topic: &str) -> Result<Vec<Option<i64>>> {
        Ok(self
            .offsets(group, topic)?
            .iter()
            .map(PartitionOffsets::lag)
            .collect())
    }

    /// The sum of the known per-partition lags (partitions without a committed offset count 0).
    pub fn total_lag(&self, group: &str, topic: &str) -> Result<i64> {
        Ok(self.lag(group, topic)?.into_iter().flatten().sum())
    }

    /// The group's committed offsets per partition of `topic` (`None`: never committed).
    pub fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<i64>>> {
        Ok(self
            .offsets(group, topic)?
            .iter()
            .map(|p| p.committed)
            .collect())
    }

    /// Leader, log-end offset and committed offset of every partition of `topic` for `group`.
    pub fn offsets(&self, group: &str, topic: &str) -> Result<Vec<PartitionOffsets>> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.call(move |w| {
            let state = w.topic(&topic)?;
            let committed = w.groups.get(&group).and_then(|g| g.get(&topic));
            Ok((0..state.partitions())
                .map(|p| {
                    let idx = p as usize;
                    PartitionOffsets {
                        partition: p,
                        leader: state.leaders[idx],
                        end_offset: state.end[idx],
                        committed: committed.and_then(|c| c.get(idx).copied().flatten()),
                    }
                })
                .collect())
        })
    }

    /// Pins the coordinator of `group` to `broker` (by default the mock hashes the group id), e.g. to
    /// keep OffsetFetch working while another broker is down.
    pub fn set_group_coordinator(&self, group: &str, broker: i32) -> Result<()> {
        validate_group(group)?;
        self.check_broker(broker)?;
        let group = group.to_owned();
        self.call(move |w| {
            w.mock()?
                .coordinator(MockCoordinator::Group(group), broker)
                .map_err(|e| mock_err("coordinator", e))
        })
    }

    // ---- faults -------------------------------------------------------------------------------

    /// Disconnects `broker` and refuses new connections to it until
    /// [`broker_up`](FakeKafka::broker_up). Leadership does not move, and Metadata responses stop
    /// listing the broker.
    ///
    /// What a client sees (librdkafka 2.12): until it refreshes its metadata it still sends the
    /// downed broker's share of a batched ListOffsets there, so `offsets_for_times` times out as a
    /// whole; once its metadata no longer lists the broker, the broker's partitions fail one by one
    /// with LEADER_NOT_AVAILABLE while the other partitions answer. OffsetFetch keeps working
    /// unless the downed broker is the group's coordinator (pin it with
    /// [`set_group_coordinator`](FakeKafka::set_group_coordinator)).
    pub fn broker_down(&self, broker: i32) -> Result<()> {
        self.check_broker(broker)?;
        self.call(move |w| {
            w.mock()?
                .broker_down(broker)
                .map_err(|e| mock_err("broker_down", e))?;
            w.down.insert(broker);
            Ok(())
        })
    }

    /// Lets `broker` accept connections again.
    pub fn broker_up(&self, broker: i32) -> Result<()> {
        self.check_broker(broker)?;
        self.call(move |w| {
            w.mock()?
                .broker_up(broker)
                .map_err(|e| mock_err("broker_up", e))?;
            w.down.remove(&broker);
            Ok(())
        })
    }

    /// The brokers currently down, ascending.
    pub fn down_brokers(&self) -> Result<Vec<i32>> {
        self.call(|w| Ok(w.down.iter().copied().collect()))
    }

    /// Delays every response of `broker` by `rtt` (millisecond resolution; `Duration::ZERO`
    /// removes the delay).
    pub fn set_rtt(&self, broker: i32, rtt: Duration) -> Result<()> {
        self.check_broker(broker)?;
        self.call(move |w| {
            w.mock()?
                .broker_round_trip_time(broker, rtt)
                .map_err(|e| mock_err("broker_round_trip_time", e))
        })
    }

    /// Makes `broker` advertise `host:port` in its Metadata and FindCoordinator answers, so that
    /// clients reach it through a listener in front of it (its own socket keeps listening).
    #[cfg(feature = "kafka-tls")]
    pub(crate) fn advertise(&self, broker: i32, host: String, port: u16) -> Result<()> {
        self.check_broker(broker)?;
        self.call(move |w| {
            // Spaced like every control operation.
            w.mock()?;
            if tracking::advertise(&w.owner, broker, &host, port) {
                Ok(())
            } else {
                Err(mock_missing("advertise"))
            }
        })
    }

    /// [`set_rtt`](FakeKafka::set_rtt) on every broker.
    pub fn set_rtt_all(&self, rtt: Duration) -> Result<()> {
        self.call(move |w| {
            w.mock()?
                .broker_round_trip_time(-1, rtt)
                .map_err(|e| mock_err("broker_round_trip_time", e))
        })
    }

    /// Makes the next `errors.len()` requests of `api` (to any broker, from any client, the fake's
    /// own seeding clients included) fail with `errors[0]`, `errors[1]`, … in order.
    pub fn request_errors(&self, api: KafkaApi, errors: &[BrokerError]) -> Result<()> {
        let errors: Vec<_> = errors.iter().map(|e| e.to_rd()).collect();
        self.call(move |w| {
            w.mock()?.request_errors(api.to_rd(), &errors);
            Ok(())
        })
    }

    /// Drops the errors still queued for `api` by [`request_errors`](FakeKafka::request_errors).
    pub fn clear_request_errors(&self, api: KafkaApi) -> Result<()> {
        self.call(move |w| {
            w.mock()?.clear_request_errors(api.to_rd());
            Ok(())
        })
    }
}

impl FakeKafka {
    // ---- request record -----------------------------------------------------------------------

    /// Every request the brokers received since the fake started or since the last
    /// [`clear_requests`](FakeKafka::clear_requests), oldest first: receiving broker, API key and
    /// receive time. Lets a test assert what a probe costs, e.g. one OffsetFetch and at most one
    /// ListOffsets per leader broker, whatever the partition count.
    ///
    /// The record holds the requests of every client, the fake's own included: seeding
    /// ([`create_topic`](FakeKafka::create_topic) needs none, but producing, committing and
    /// [`set_lag`](FakeKafka::set_lag) send Metadata, Produce, FindCoordinator, OffsetCommit and
    /// OffsetFetch requests, plus the ApiVersions of each new connection). Seed first, then call
    /// [`clear_requests`](FakeKafka::clear_requests), then run the code under test. A request
    /// answered with an injected error ([`request_errors`](FakeKafka::request_errors)) is
    /// recorded, once per attempt; a downed broker accepts no connection, so nothing sent its way
    /// is. The record grows until cleared (a few bytes per request).
    pub fn requests(&self) -> Result<Vec<KafkaRequest>> {
        self.call(|w| tracking::snapshot(&w.owner).ok_or_else(|| mock_missing("requests")))
    }

    /// Empties the record of [`requests`](FakeKafka::requests) (typically right after seeding).
    pub fn clear_requests(&self) -> Result<()> {
        self.call(|w| {
            if tracking::clear(&w.owner) {
                Ok(())
            } else {
                Err(mock_missing("clear_requests"))
            }
        })
    }

    /// How many requests of `api` the record holds (see [`requests`](FakeKafka::requests)).
    pub fn request_count(&self, api: KafkaApi) -> Result<usize> {
        Ok(count_requests(&self.requests()?, api))
    }

    /// How many requests of `api` each broker received according to the record (brokers that
    /// received none are absent).
    pub fn requests_by_broker(&self, api: KafkaApi) -> Result<BTreeMap<i32, usize>> {
        Ok(requests_by_broker(&self.requests()?, api))
    }
}

/// Creates the client that owns the mock cluster (`test.mock.num.brokers`), starts recording the
/// cluster's requests and returns the client with the cluster's bootstrap list.
///
/// The owner must not add its own requests to the record. A librdkafka client keeps at least one
/// connection to its cluster (ApiVersions and Metadata right after it starts, again whenever that
/// broker goes down), so the owner is told to resolve broker addresses as IPv6 only: the mock's
/// `127.0.0.1` bootstrap addresses then resolve to nothing, the owner drops them and never
/// connects (no request, no traffic to any other address). The mock cluster itself is unaffected.
fn cluster_owner(brokers: i32) -> Result<(Client<DefaultClientContext>, String)> {
    let client_err = |detail: String| FakeKafkaError::Client {
        what: "mock cluster",
        detail,
    };
    let mut config = ClientConfig::new();
    config
        .set("test.mock.num.brokers", brokers.to_string())
        .set("client.id", "rb-fake-kafka-owner")
        .set("broker.address.family", "v6")
        .set(
            "client.dns.lookup",
            "resolve_canonical_bootstrap_servers_only",
        )
        .set("topic.metadata.refresh.interval.ms", "-1")
        .set("enable.metrics.push", "false")
        .set_log_level(RDKafkaLogLevel::Emerg);
    let native = config
        .create_native_config()
        .map_err(|e| client_err(e.to_string()))?;
    let owner = Client::new(
        &config,
        native,
        RDKafkaType::RD_KAFKA_PRODUCER,
        DefaultClientContext,
    )
    .map_err(|e| client_err(e.to_string()))?;
    let bootstrap = owner
        .mock_cluster()
        .map(|c| c.bootstrap_servers())
        .ok_or_else(|| client_err("the client created no mock cluster".to_owned()))?;
    if !tracking::start(&owner) {
        return Err(mock_missing("start request tracking"));
    }
    Ok((owner, bootstrap))
}

fn mock_missing(op: &'static str) -> FakeKafkaError {
    FakeKafkaError::Mock {
        op,
        detail: "the cluster's owning client has no mock cluster".to_owned(),
    }
}

fn mock_err(op: &'static str, e: KafkaError) -> FakeKafkaError {
    FakeKafkaError::Mock {
        op,
        detail: e.to_string(),
    }
}

fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.contains('\0') {
        return Err(FakeKafkaError::InvalidGroup {
            group: group.to_owned(),
        });
    }
    Ok(())
}

/// Kafka's own topic-name rule: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn validate_topic_name(topic: &str) -> Result<()> {
    let reason = if topic.is_empty() {
        Some("it is empty")
    } else if topic.len() > 249 {
        Some("it is longer than 249 characters")
    } else if topic == "." || topic == ".." {
        Some("'.' and '..' are reserved")
    } else if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(FakeKafkaError::InvalidTopicName {
            name: topic.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

// ---- the cluster thread -----------------------------------------------------------------------

/// What the fake knows about one topic.
struct TopicState {
    end: Vec<i64>,
    leaders: Vec<Option<i32>>,
}

impl TopicState {
    fn partitions(&self) -> i32 {
        // At most MAX_PARTITIONS entries, so the conversion cannot saturate.
        i32::try_from(self.end.len()).unwrap_or(i32::MAX)
    }

    fn index(&self, topic: &str, partition: i32) -> Result<usize> {
        if (0..self.partitions()).contains(&partition) {
            Ok(partition as usize)
        } else {
            Err(FakeKafkaError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: self.partitions(),
            })
        }
    }

    fn check_len(&self, topic: &str, what: &'static str, got: usize) -> Result<()> {
        if got == self.end.len() {
            Ok(())
        } else {
            Err(FakeKafkaError::PartitionCountMismatch {
                what,
                topic: topic.to_owned(),
                expected: self.end.len(),
                got,
            })
        }
    }
}

/// Producer context recording the broker-assigned offset of every delivered record.
#[derive(Default)]
struct DeliveryTracker {
    state: Mutex<Deliveries>,
}

#[derive(Default)]
struct Deliveries {
    /// Highest delivered offset per partition.
    last_offset: HashMap<i32, i64>,
    /// Delivered records per partition.
    delivered: HashMap<i32, u64>,
    /// The first failure: partition and librdkafka's message.
    first_error: Option<(i32, String)>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(msg) => {
                let last = state.last_offset.entry(msg.partition()).or_insert(-1);
                *last = (*last).max(msg.offset());
                *state.delivered.entry(msg.partition()).or_insert(0) += 1;
            }
            Err((err, msg)) => {
                if state.first_error.is_none() {
                    state.first_error = Some((msg.partition(), err.to_string()));
                }
            }
        }
    }
}

/// The state owned by the cluster thread. Field order is drop order: clients before the cluster's
/// owner (dropping the owner destroys the mock cluster).
struct Worker {
    committers: HashMap<String, BaseConsumer>,
    producer: Option<BaseProducer<DeliveryTracker>>,
    /// The client created with `test.mock.num.brokers`: it owns the mock cluster.
    owner: Client<DefaultClientContext>,
    bootstrap: String,
    topics: HashMap<String, TopicState>,
    /// group → topic → committed offset per partition.
    groups: HashMap<String, HashMap<String, Vec<Option<i64>>>>,
    down: BTreeSet<i32>,
    brokers: i32,
    last_mock_op: Instant,
}

impl Worker {
    fn new(owner: Client<DefaultClientContext>, brokers: i32, bootstrap: String) -> Worker {
        Worker {
            committers: HashMap::new(),
            producer: None,
            owner,
            bootstrap,
            topics: HashMap::new(),
            groups: HashMap::new(),
            down: BTreeSet::new(),
            brokers,
            last_mock_op: Instant::now(),
        }
    }

    fn shutdown(self) {
        let Worker {
            committers,
            producer,
            owner,
            ..
        } = self;
        drop(committers);
        drop(producer);
        drop(owner);
    }

    /// The mock cluster, for one control operation.
    ///
    /// librdkafka's mock thread can miss the wake-up of a control operation submitted right after
    /// the previous one was served (it drains its wake-up pipe after serving its queue); the missed
    /// operation then waits for the thread's 1 s poll timeout. Spacing operations by
    /// [`MOCK_OP_SPACING`] closes that window (measured: 1,000 back-to-back operations stalled about
    /// one in six times; spaced by 200 µs, never).
    fn mock(&mut self) -> Result<MockCluster<'_, DefaultClientContext>> {
        let since = self.last_mock_op.elapsed();
        if since < MOCK_OP_SPACING {
            std::thread::sleep(MOCK_OP_SPACING - since);
        }
        self.last_mock_op = Instant::now();
        self.owner
            .mock_cluster()
            .ok_or_else(|| mock_missing("mock cluster"))
    }

    fn topic(&self, topic: &str) -> Result<&TopicState> {
        self.topics
            .get(topic)
            .ok_or_else(|| FakeKafkaError::UnknownTopic {
                topic: topic.to_owned(),
            })
    }

    fn create_topic(&mut self, topic: String, partitions: i32, replication: i32) -> Result<()> {
        if self.topics.contains_key(&topic) {
            return Err(FakeKafkaError::TopicExists { topic });
        }
        self.mock()?
            .create_topic(&topic, partitions, replication)
            .map_err(|e| mock_err("create_topic", e))?;
        let mut leaders = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let leader = p % self.brokers + 1;
            // With one replica the mock places partition p on broker p % B + 1 already; with more it
            // picks a random replica as leader, so pin it.
            if replication > 1 {
                self.mock()?
                    .partition_leader(&topic, p, Some(leader))
                    .map_err(|e| mock_err("partition_leader", e))?;
            }
            leaders.push(Some(leader));
        }
        self.topics.insert(
            topic,
            TopicState {
                end: vec![0; partitions as usize],
                leaders,
            },
        );
        Ok(())
    }

    fn producer(&mut self) -> Result<&BaseProducer<DeliveryTracker>> {
        if self.producer.is_none() {
            let producer: BaseProducer<DeliveryTracker> = ClientConfig::new()
                .set("bootstrap.servers", &self.bootstrap)
                .set("client.id", "rb-fake-kafka-seeder")
                .set("linger.ms", "5")
                .set("batch.num.messages", "100000")
                .set("queue.buffering.max.messages", "2000000")
                .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
                .set("enable.idempotence", "false")
                .set("acks", "all")
                .create_with_context(DeliveryTracker::default())
                .map_err(|e| FakeKafkaError::Client {
                    what: "seeding producer",
                    detail: e.to_string(),
                })?;
            self.producer = Some(producer);
        }
        self.producer
            .as_ref()
            .ok_or_else(|| FakeKafkaError::Client {
                what: "seeding producer",
                detail: "not available".to_owned(),
            })
    }

    /// Produces `n` empty records to each listed partition, waits for every acknowledgement and moves
    /// the model's log-end offsets to the broker-assigned offsets.
    fn produce_batch(&mut self, topic: &str, counts: &[(i32, u64)]) -> Result<()> {
        let total = counts
            .iter()
            .fold(0u64, |acc, &(_, n)| acc.saturating_add(n));
        if total > MAX_RECORDS_PER_CALL {
            return Err(FakeKafkaError::TooManyRecords {
                records: total,
                limit: MAX_RECORDS_PER_CALL,
            });
        }
        if total == 0 {
            return Ok(());
        }
        for &(partition, _) in counts {
            self.topic(topic)?.index(topic, partition)?;
        }
        let producer = self.producer()?;
        *producer
            .context()
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Deliveries::default();

        let produce_err = |partition: i32, detail: String| FakeKafkaError::Produce {
            topic: topic.to_owned(),
            partition,
            detail,
        };
        for &(partition, n) in counts {
            for _ in 0..n {
                let mut retries = 0;
                loop {
                    match producer.send(BaseRecord::<(), ()>::to(topic).partition(partition)) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                            if retries < QUEUE_FULL_RETRIES =>
                        {
                            retries += 1;
                            producer.poll(Duration::from_millis(5));
                        }
                        Err((e, _)) => return Err(produce_err(partition, e.to_string())),
                    }
                }
            }
        }
        let flushed = producer.flush(FLUSH_TIMEOUT);
        let deliveries = std::mem::take(
            &mut *producer
                .context()
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );

        // Record what the broker acknowledged, whatever else happened.
        if let Some(state) = self.topics.get_mut(topic) {
            for (&partition, &last) in &deliveries.last_offset {
                if let Some(end) = state.end.get_mut(partition as usize) {
                    *end = (*end).max(last + 1);
                }
            }
        }
        if let Some((partition, detail)) = deliveries.first_error {
            return Err(produce_err(partition, detail));
        }
        if let Err(e) = flushed {
            let partition = counts.first().map_or(0, |&(p, _)| p);
            return Err(produce_err(
                partition,
                format!("not acknowledged within {FLUSH_TIMEOUT:?}: {e}"),
            ));
        }
        for &(partition, n) in counts {
            let got = deliveries.delivered.get(&partition).copied().unwrap_or(0);
            if n > 0 && got != n {
                return Err(produce_err(
                    partition,
                    format!("{got} of {n} records acknowledged"),
                ));
            }
        }
        Ok(())
    }

    fn committer(&mut self, group: &str) -> Result<&BaseConsumer> {
        if !self.committers.contains_key(group) {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &self.bootstrap)
                .set("client.id", "rb-fake-kafka-committer")
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .create()
                .map_err(|e| FakeKafkaError::Client {
                    what: "committing consumer",
                    detail: e.to_string(),
                })?;
            self.committers.insert(group.to_owned(), consumer);
        }
        self.committers
            .get(group)
            .ok_or_else(|| FakeKafkaError::Client {
                what: "committing consumer",
                detail: "not available".to_owned(),
            })
    }

    /// One OffsetCommit for all `offsets`, then one OffsetFetch that must read them back.
    fn commit_offsets(&mut self, group: &str, topic: &str, offsets: &[(i32, i64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let partitions = self.topic(topic)?.end.len();
        let commit_err = |detail: String| FakeKafkaError::Commit {
            group: group.to_owned(),
            topic: topic.to_owned(),
            detail,
        };
        let consumer = self.committer(group)?;
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        let mut query = TopicPartitionList::with_capacity(offsets.len());
        for &(partition, offset) in offsets {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(|e| commit_err(e.to_string()))?;
            query.add_partition(topic, partition);
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| commit_err(e.to_string()))?;
        let read = consumer
            .committed_offsets(query, COMMIT_TIMEOUT)
            .map_err(|e| commit_err(format!("reading back: {e}")))?;
        let mut stored: HashMap<i32, Option<i64>> = HashMap::with_capacity(offsets.len());
        for elem in read.elements_for_topic(topic) {
            elem.error().map_err(|e| {
                commit_err(format!("reading back partition {}: {e}", elem.partition()))
            })?;
            let offset = match elem.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            stored.insert(elem.partition(), offset);
        }

        let committed = self
            .groups
            .entry(group.to_owned())
            .or_default()
            .entry(topic.to_owned())
            .or_insert_with(|| vec![None; partitions]);
        let mut mismatch = None;
        for &(partition, offset) in offsets {
            let actual = stored.get(&partition).copied().flatten();
            if let Some(slot) = committed.get_mut(partition as usize) {
                *slot = actual;
            }
            if actual != Some(offset) && mismatch.is_none() {
                mismatch = Some((partition, offset, actual));
            }
        }
        match mismatch {
            Some((partition, expected, actual)) => Err(FakeKafkaError::CommitMismatch {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition,
                expected,
                actual,
            }),
            None => Ok(()),
        }
    }

    /// See [`FakeKafka::set_lag`].
    fn set_lag(&mut self, group: &str, topic: &str, targets: &[(i32, i64)]) -> Result<()> {
        let state = self.topic(topic)?;
        let committed = self.groups.get(group).and_then(|g| g.get(topic));
        let mut to_produce = Vec::new();
        for &(partition, lag) in targets {
            let idx = state.index(topic, partition)?;
            if lag < 0 {
                return Err(FakeKafkaError::NegativeLag {
                    topic: topic.to_owned(),
                    partition,
                    lag,
                });
            }
            let end = state.end[idx];
            let base = committed.and_then(|c| c[idx]).unwrap_or(0);
            // Lag can only grow by producing: the committed offset (or 0) stays put.
            let missing = lag - (end - base);
            if missing > 0 {
                to_produce.push((partition, u64::try_from(missing).unwrap_or(0)));
            }
        }
        self.produce_batch(topic, &to_produce)?;

        let state = self.topic(topic)?;
        let committed = self.groups.get(group).and_then(|g| g.get(topic));
        let mut to_commit = Vec::new();
        for &(partition, lag) in targets {
            let idx = partition as usize;
            let target = state.end[idx] - lag;
            if committed.and_then(|c| c[idx]) != Some(target) {
                to_commit.push((partition, target));
            }
        }
        self.commit_offsets(group, topic, &to_commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert!(
                matches!(
                    validate_topic_name(bad),
                    Err(FakeKafkaError::InvalidTopicName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert_eq!(
            FakeKafka::start(0).err(),
            Some(FakeKafkaError::InvalidBrokerCount {
                requested: 0,
                max: MAX_BROKERS
            })
        );
        let fake = FakeKafka::start(2).unwrap();
        assert!(matches!(
            fake.broker_down(3),
            Err(FakeKafkaError::UnknownBroker {
                broker: 3,
                brokers: 2
            })
        ));
        assert!(matches!(
            fake.create_topic("t", 4, 3),
            Err(FakeKafkaError::InvalidReplication { .. })
        ));
        fake.create_topic("t", 4, 2).unwrap();
        assert!(matches!(
            fake.create_topic("t", 4, 2),
            Err(FakeKafkaError::TopicExists { .. })
        ));
        assert!(matches!(
            fake.set_lag("g", "t", &[1, 2, 3]),
            Err(FakeKafkaError::PartitionCountMismatch {
                expected: 4,
                got: 3,
                ..
            })
        ));
        assert!(matches!(
            fake.set_partition_lag("g", "t", 4, 1),
            Err(FakeKafkaError::UnknownPartition { partition: 4, .. })
        ));
        assert!(matches!(
            fake.set_partition_lag("g", "t", 0, -1),
            Err(FakeKafkaError::NegativeLag { lag: -1, .. })
        ));
        assert!(matches!(
            fake.commit("", "t", 0, 1),
            Err(FakeKafkaError::InvalidGroup { .. })
        ));
        assert!(matches!(
            fake.lag("g", "nope"),
            Err(FakeKafkaError::UnknownTopic { .. })
        ));
        // Leaders are round-robin over brokers 1..=2.
        assert_eq!(fake.partitions_led_by("t", 1).unwrap(), vec![0, 2]);
        assert_eq!(fake.partitions_led_by("t", 2).unwrap(), vec![1, 3]);
    }
}
