//! [`RdKafkaClient`]: the [`KafkaClient`] adapter over rdkafka (librdkafka).
//!
//! Each call runs librdkafka's blocking API on tokio's blocking pool:
//!
//! * metadata: `fetch_metadata` — one Metadata request (one topic: that topic; several: all topics,
//!   filtered);
//! * committed offsets: `committed_offsets(TopicPartitionList)` on a consumer whose `group.id` is the
//!   group and that never subscribes — one OffsetFetch at the group's coordinator;
//! * log-end offsets: `offsets_for_times` with every offset set to `END`, one call per batch of
//!   partitions led by one broker (leaders as the last Metadata answer named them) — librdkafka
//!   sends one ListOffsets per leader of a call, answering per partition (a broker down fails its
//!   partitions, not the call). A leader that moved since only costs librdkafka another request.
//!   `fetch_watermarks` is one request per partition and is not used;
//! * group description: one Metadata request (tells an unreachable cluster from a slow one), then
//!   `fetch_group_list(Some(group))` (DescribeGroups).
//!
//! With [`KafkaConfig::native_offsets`] on (the default; on TLS and SASL listeners with the
//! `kafka-tls` feature, see [`KafkaConfig::uses_native_offsets`]), committed and log-end offsets do not go through librdkafka: the adapter sends **one
//! OffsetFetch** for all of a group's partitions to its coordinator and **one ListOffsets per
//! leader** over its own connections (the leaders and brokers from the last Metadata answer; a
//! partition whose leader moved since is asked once more after a new Metadata request). See
//! `native.rs` for why: librdkafka's matching of answers is quadratic in the partitions of a call.
//!
//! Clients are created once and kept (connections stay warm between observations): one without a
//! group for metadata and offsets, one per consumer group for its committed offsets (librdkafka's
//! path only).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rb_core::ErrorKind;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::client::{
    BrokerInfo, ClientError, ClusterMetadata, GroupDescription, GroupMember, GroupState,
    KafkaClient, PartitionAnswer, PartitionMetadata, TopicError, TopicMetadata, TopicPartition,
};
use super::config::{KafkaConfig, PropertyValue};
use super::native::{group_by_leader, Fail, Leaders, Wire};

/// The most per-group consumers kept; past it, an unused one is dropped.
const MAX_GROUP_CLIENTS: usize = 256;

/// On a secured listener, the part of a Metadata call's deadline kept to say why it failed.
const EXPLAIN_BUDGET: Duration = Duration::from_secs(1);

/// How many queued client events one drain serves at most.
const MAX_EVENTS_PER_DRAIN: usize = 256;
/// A drain stops after this many empty polls in a row (a served log event also polls as empty).
const EMPTY_POLLS_TO_STOP: usize = 8;

/// Remembers the last transport failure librdkafka reported (connection refused, reset, name
/// resolution, all brokers down), and the last refusal of the client's credentials (SASL) or of
/// the broker's certificate (TLS), so that a call that ends without an answer can say whether the
/// cluster was unreachable, refused rb, or was merely slow.
#[derive(Default)]
struct Watch {
    transport: Mutex<Option<String>>,
    refusal: Mutex<Option<(ErrorKind, String)>>,
}

impl Watch {
    /// Records an error librdkafka reported, by its code.
    fn record(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let unreachable = matches!(
            code,
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Resolve
            )
        );
        let refusal = match code {
            Some(RDKafkaErrorCode::Authentication) => Some(ErrorKind::Unauthorized),
            Some(RDKafkaErrorCode::SSL) => Some(ErrorKind::Invalid),
            _ => None,
        };
        if unreachable {
            if let Ok(mut t) = self.transport.lock() {
                *t = Some(reason.to_owned());
            }
        } else if let Some(kind) = refusal {
            if let Ok(mut r) = self.refusal.lock() {
                *r = Some((kind, reason.to_owned()));
            }
        } else {
            tracing::debug!("librdkafka: {reason}");
        }
    }
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        self.record(error.rdkafka_error_code(), &format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Watch {}

type Consumer_ = BaseConsumer<Watch>;

/// Serve the client's queued events (errors, logs) so they reach [`Watch`] and do not pile up.
/// The consumer's poll hands the errors of its queue back as values (librdkafka's error callback
/// only sees those served elsewhere), so they are recorded here.
fn drain(c: &Consumer_) {
    let mut empty = 0;
    for _ in 0..MAX_EVENTS_PER_DRAIN {
        match c.poll(Duration::ZERO) {
            None => {
                empty += 1;
                if empty >= EMPTY_POLLS_TO_STOP {
                    break;
                }
            }
            Some(Err(e)) => {
                c.context().record(e.rdkafka_error_code(), &e.to_string());
                empty = 0;
            }
            Some(Ok(_)) => empty = 0,
        }
    }
}

/// How long the reachability check may wait for one bootstrap address.
const CONNECT_CHECK: Duration = Duration::from_millis(50);

/// When librdkafka reported no connection failure (it may still be connecting): try a TCP
/// connection to each bootstrap server. `Some(why)` if none accepts one.
fn refused(bootstrap: &str) -> Option<String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let mut failures = Vec::new();
    for server in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let server = server.rsplit("://").next().unwrap_or(server);
        let addrs = match server.to_socket_addrs() {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                failures.push(format!("{server}: {e}"));
                continue;
            }
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_CHECK) {
                Ok(_) => return None,
                Err(e) => last = Some(e.to_string()),
            }
        }
        failures.push(format!(
            "{server}: {}",
            last.unwrap_or_else(|| "no address".to_owned())
        ));
    }
    Some(format!("connect failed: {}", failures.join("; ")))
}

/// After a call that got an answer: serve queued events, then forget transport failures (the
/// cluster answered since).
fn answered(c: &Consumer_) {
    drain(c);
    if let Ok(mut t) = c.context().transport.lock() {
        *t = None;
    }
    if let Ok(mut r) = c.context().refusal.lock() {
        *r = None;
    }
}

/// A call's error, refined: a timeout or transport failure while a transport failure is on record
/// since the last answer means the cluster is unreachable (and says why); a transport failure
/// without any failed connection means the brokers were still being connected to: a timeout.
fn refine(c: &Consumer_, e: &KafkaError, bootstrap: &str) -> ClientError {
    drain(c);
    let mut err = call_error(e, bootstrap);
    if matches!(err.kind, ErrorKind::Timeout | ErrorKind::Unreachable) {
        // The brokers refused rb's credentials or rb refused their certificate: that, not a
        // timeout, is what the caller must hear.
        if let Some((kind, reason)) = c.context().refusal.lock().ok().and_then(|r| r.clone()) {
            let what = if kind == ErrorKind::Unauthorized {
                "authentication failed"
            } else {
                "TLS handshake refused: is the CA file the one that signed the brokers' \
                 certificates, and do they name the host connected to?"
            };
            return ClientError::new(kind, format!("{what} (bootstrap {bootstrap}): {reason}"));
        }
        let seen = c.context().transport.lock().ok().and_then(|t| t.clone());
        let seen = seen.or_else(|| refused(bootstrap));
        match seen {
            Some(reason) => {
                err = ClientError::new(
                    ErrorKind::Unreachable,
                    format!("no broker reachable (bootstrap {bootstrap}): {reason}"),
                );
            }
            None if err.kind == ErrorKind::Unreachable => {
                err = ClientError::new(
                    ErrorKind::Timeout,
                    format!("no answer from the cluster in time (bootstrap {bootstrap}): {e}"),
                );
            }
            None => {}
        }
    }
    err
}

/// The [`KafkaClient`] for real clusters, over rdkafka.
///
/// ```no_run
/// use rb_probes::kafka::{ConsumerLagProbe, KafkaConfig, RdKafkaClient};
/// # fn demo() -> Result<(), rb_probes::kafka::ClientError> {
/// let client = RdKafkaClient::new(KafkaConfig::new("kafka-1:9092,kafka-2:9092"))?;
/// let probe = ConsumerLagProbe::new(rb_core::Target::new("kafka", "kafka-main"), client, "flink-orders", ["orders"]);
/// # let _ = probe; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RdKafkaClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    base: Arc<Consumer_>,
    groups: Mutex<HashMap<String, Arc<Consumer_>>>,
    /// Each topic's partition leaders from the last Metadata answer (index: partition), so that
    /// log-end offsets are asked in batches that each go to one leader.
    /// A snapshot replaced (copy on write) when an answer changes it, so that a call takes it
    /// without copying.
    leaders: Mutex<Arc<Leaders>>,
    /// rb's own connections for OffsetFetch and ListOffsets.
    wire: Option<Arc<Wire>>,
    /// Set when a broker speaks none of rb's versions of those requests: librdkafka's path from
    /// then on.
    wire_refused: std::sync::atomic::AtomicBool,
    /// On a secured cluster whose offsets go through librdkafka: connections made only to say
    /// why a Metadata request failed (created at the first failure).
    explainer: std::sync::OnceLock<Option<Arc<Wire>>>,
}

impl fmt::Debug for RdKafkaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdKafkaClient")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl RdKafkaClient {
    /// A client for the cluster of `config`. Connects lazily; fails only on a configuration
    /// librdkafka refuses ([`ErrorKind::Invalid`], e.g. TLS with a librdkafka built without it).
    pub fn new(config: KafkaConfig) -> Result<Self, ClientError> {
        if config.bootstrap.trim().is_empty() {
            return Err(ClientError::new(
                ErrorKind::Invalid,
                "empty bootstrap server list",
            ));
        }
        let base = Arc::new(create_consumer(&config, None)?);
        let wire = if config.uses_native_offsets() {
            match Wire::new(&config) {
                Ok(w) => Some(Arc::new(w)),
                Err(why) => {
                    tracing::warn!(bootstrap = %config.bootstrap, "offsets through librdkafka: {why}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                base,
                groups: Mutex::new(HashMap::new()),
                leaders: Mutex::new(Arc::new(HashMap::new())),
                wire,
                wire_refused: std::sync::atomic::AtomicBool::new(false),
                explainer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    fn group_consumer(&self, group: &str) -> Result<Arc<Consumer_>, ClientError> {
        let mut groups = match self.inner.groups.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = groups.get(group) {
            return Ok(c.clone());
        }
        if groups.len() >= MAX_GROUP_CLIENTS {
            let evict = groups
                .iter()
                .find(|(_, c)| Arc::strong_count(c) == 1)
                .map(|(k, _)| k.clone());
            if let Some(k) = evict {
                groups.remove(&k);
            }
        }
        let c = Arc::new(create_consumer(&self.inner.config, Some(group))?);
        groups.insert(group.to_owned(), c.clone());
        Ok(c)
    }

    /// `partitions`' indices in batches of at most `n`, each batch of one known leader.
    fn batches_by_leader(&self, partitions: &[TopicPartition], n: usize) -> Vec<Vec<usize>> {
        let leaders = self.leaders();
        group_by_leader(partitions, &leaders)
            .values()
            .flat_map(|idx| idx.chunks(n).map(<[usize]>::to_vec))
            .collect()
    }

    /// Whether OffsetFetch and ListOffsets go over the adapter's own connections now: `false`
    /// when the configuration says otherwise ([`KafkaConfig::uses_native_offsets`]: off, TLS or
    /// SASL without the `kafka-tls` feature, an encrypted client key) or once a broker answered that it speaks none of the versions rb does
    /// (then librdkafka asks, and a warning was logged).
    pub fn native_offsets_active(&self) -> bool {
        self.wire().is_some()
    }

    /// The native connections, unless off or refused.
    fn wire(&self) -> Option<&Arc<Wire>> {
        let refused = self
            .inner
            .wire_refused
            .load(std::sync::atomic::Ordering::Relaxed);
        self.inner.wire.as_ref().filter(|_| !refused)
    }

    fn refuse_wire(&self, why: &str) {
        tracing::warn!(
            bootstrap = %self.inner.config.bootstrap,
            "offsets through librdkafka from now on: {why}"
        );
        self.inner
            .wire_refused
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// rb's connections to explain a secured cluster's silence: the offsets' own, or ones made
    /// for it when the offsets go through librdkafka (`None`: not secured, without `kafka-tls`,
    /// or settings rustls cannot use, such as an encrypted client key).
    fn explainer(&self) -> Option<Arc<Wire>> {
        let config = &self.inner.config;
        if config.tls.is_none() && config.sasl.is_none() {
            return None;
        }
        if let Some(w) = self.wire() {
            return Some(w.clone());
        }
        if !cfg!(feature = "kafka-tls") {
            return None;
        }
        self.inner
            .explainer
            .get_or_init(|| Wire::new(config).ok().map(Arc::new))
            .clone()
    }

    /// One Metadata request through librdkafka.
    async fn metadata_within(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<ClusterMetadata, ClientError> {
        let base = self.inner.base.clone();
        let topics = topics.to_vec();
        let bootstrap = self.bootstrap_str();
        let inner = self.inner.clone();
        blocking(
            move || {
                let leaders = &inner.leaders;
                let one = (topics.len() == 1).then(|| topics[0].as_str());
                let md = base
                    .fetch_metadata(one, timeout)
                    .map_err(|e| refine(&base, &e, &bootstrap))?;
                answered(&base);
                let brokers: Vec<BrokerInfo> = md
                    .brokers()
                    .iter()
                    .map(|b| BrokerInfo {
                        id: b.id(),
                        host: b.host().to_owned(),
                        port: b.port(),
                    })
                    .collect();
                let mut out = Vec::with_capacity(topics.len());
                for name in &topics {
                    let Some(t) = md.topics().iter().find(|t| t.name() == name) else {
                        out.push(TopicMetadata {
                            name: name.clone(),
                            error: Some(TopicError::UnknownTopic),
                            partitions: Vec::new(),
                        });
                        continue;
                    };
                    let error = t.error().map(|e| match RDKafkaErrorCode::from(e) {
                        RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::UnknownTopic => TopicError::UnknownTopic,
                        RDKafkaErrorCode::TopicAuthorizationFailed => TopicError::NotAuthorized,
                        other => TopicError::Other(other.to_string()),
                    });
                    let partitions = t
                        .partitions()
                        .iter()
                        .map(|p| PartitionMetadata {
                            partition: p.id(),
                            leader: (p.leader() >= 0).then(|| p.leader()),
                            replicas: p.replicas().to_vec(),
                            isr: p.isr().to_vec(),
                            error: p.error().map(resp_text),
                        })
                        .collect();
                    out.push(TopicMetadata {
                        name: name.clone(),
                        error,
                        partitions,
                    });
                }
                remember_leaders(leaders, &out);
                if let Some(wire) = &inner.wire {
                    wire.set_brokers(&brokers);
                }
                Ok(ClusterMetadata {
                    brokers,
                    topics: out,
                })
            },
            self.bootstrap_str(),
        )
        .await
    }

    /// The leaders of the last Metadata answers (a snapshot).
    fn leaders(&self) -> Arc<Leaders> {
        match self.inner.leaders.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Log-end offsets over the native connections: one ListOffsets per leader; a topic with no
    /// Metadata answer yet is described first, and partitions whose leader moved since are asked
    /// once more after a new Metadata request.
    async fn native_end_offsets(
        &self,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<i64>>, Fail> {
        let Some(wire) = self.inner.wire.as_ref() else {
            return Err(Fail::Unsupported("no native connections".to_owned()));
        };
        let started = tokio::time::Instant::now();
        let unknown: Vec<String> = {
            let leaders = self.leaders();
            let mut t: Vec<String> = partitions
                .iter()
                .filter(|tp| !leaders.contains_key(&*tp.topic))
                .map(|tp| tp.topic.to_string())
                .collect();
            t.sort();
            t.dedup();
            t
        };
        if !unknown.is_empty() {
            self.metadata(&unknown, timeout).await?;
        }
        let ask = |parts: Vec<TopicPartition>, left: Duration| async move {
            wire.end_offsets(parts, self.leaders(), left).await
        };
        let (mut answers, moved) = ask(partitions.to_vec(), timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        if moved.is_empty() || left.is_zero() {
            return Ok(answers);
        }
        // Leadership moved since the Metadata answer: learn the new leaders, ask them once.
        let mut topics: Vec<String> = moved
            .iter()
            .map(|&i| partitions[i].topic.to_string())
            .collect();
        topics.sort();
        topics.dedup();
        if self.metadata(&topics, left).await.is_err() {
            return Ok(answers);
        }
        let left = timeout.saturating_sub(started.elapsed());
        let again: Vec<TopicPartition> = moved.iter().map(|&i| partitions[i].clone()).collect();
        if let Ok((retried, _)) = ask(again, left).await {
            for (&i, a) in moved.iter().zip(retried) {
                answers[i] = a;
            }
        }
        Ok(answers)
    }

    fn bootstrap_str(&self) -> String {
        self.inner.config.bootstrap.clone()
    }

    async fn committed_chunk(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<Option<i64>>>, ClientError> {
        let consumer = self.group_consumer(group)?;
        let parts = partitions.to_vec();
        let bootstrap = self.bootstrap_str();
        blocking(
            move || {
                let got = consumer
                    .committed_offsets(tpl_of(&parts), timeout)
                    .map_err(|e| refine(&consumer, &e, &bootstrap))?;
                answered(&consumer);
                aligned(&parts, &got, |o| match o {
                    Offset::Offset(o) => Ok(Some(o)),
                    Offset::Invalid => Ok(None),
                    other => Err(format!("unexpected committed offset {other:?}")),
                })
            },
            self.bootstrap_str(),
        )
        .await
    }

    async fn ends_chunk(
        &self,
        parts: Vec<TopicPartition>,
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<i64>>, ClientError> {
        let base = self.inner.base.clone();
        let bootstrap = self.bootstrap_str();
        blocking(
            move || {
                let started = std::time::Instant::now();
                let ask = |left: Duration| -> Result<
                    TopicPartitionList,
                    (Option<RDKafkaErrorCode>, ClientError),
                > {
                    let mut tpl = tpl_of(&parts);
                    tpl.set_all_offsets(Offset::End)
                        .map_err(|e| (None, call_error(&e, &bootstrap)))?;
                    base.offsets_for_times(tpl, left)
                        .map_err(|e| (e.rdkafka_error_code(), refine(&base, &e, &bootstrap)))
                };
                let got = match ask(timeout) {
                    Ok(got) => got,
                    // A broker connection torn down while the request was in flight (a broker that
                    // just went down): librdkafka fails the whole call once; the next call answers
                    // per partition. Ask once more within the same time budget.
                    Err((Some(RDKafkaErrorCode::DestroyBroker), _)) => {
                        match ask(timeout.saturating_sub(started.elapsed())) {
                            Ok(got) => got,
                            Err((_, e)) => return Err(e),
                        }
                    }
                    Err((_, e)) => return Err(e),
                };
                answered(&base);
                aligned(&parts, &got, |o| match o {
                    Offset::Offset(o) => Ok(o),
                    other => Err(format!("no log-end offset (answer {other:?})")),
                })
            },
            self.bootstrap_str(),
        )
        .await
    }

    /// Log-end offsets the naive way: `fetch_watermarks` per partition, one ListOffsets each.
    /// Only for comparison (the benchmark); never used by the probes.
    #[doc(hidden)]
    pub async fn end_offsets_one_by_one(
        &self,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<i64>>, ClientError> {
        let base = self.inner.base.clone();
        let parts = partitions.to_vec();
        let bootstrap = self.bootstrap_str();
        blocking(
            move || {
                Ok(parts
                    .iter()
                    .map(|tp| {
                        base.fetch_watermarks(&tp.topic, tp.partition, timeout)
                            .map(|(_, high)| high)
                            .map_err(|e| e.to_string())
                    })
                    .collect())
            },
            bootstrap,
        )
        .await
    }
}

fn create_consumer(config: &KafkaConfig, group: Option<&str>) -> Result<Consumer_, ClientError> {
    let mut cc = ClientConfig::new();
    for (key, value) in config.properties() {
        match value {
            PropertyValue::Plain(v) => cc.set(key, v),
            PropertyValue::Secret(s) => cc.set(key, s.expose()),
        };
    }
    cc.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false");
    if let Some(g) = group {
        cc.set("group.id", g);
    }
    // Never format `cc` (its Debug shows the password): errors carry librdkafka's text only.
    cc.create_with_context::<_, Consumer_>(Watch::default())
        .map_err(|e| {
            ClientError::new(
                ErrorKind::Invalid,
                format!("librdkafka refused the client configuration: {e}"),
            )
        })
}

/// Run `f` on the blocking pool.
async fn blocking<T, F>(f: F, bootstrap: String) -> Result<T, ClientError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ClientError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ClientError::new(
            ErrorKind::Other,
            format!("the Kafka call to {bootstrap} did not complete: {e}"),
        )),
    }
}

/// The kind of a librdkafka error code.
fn kind_of(code: RDKafkaErrorCode) -> ErrorKind {
    use RDKafkaErrorCode as C;
    match code {
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::Resolve
        | C::DestroyBroker
        | C::BrokerDestroy
        | C::BrokerNotAvailable
        | C::NetworkException
        | C::SSL => ErrorKind::Unreachable,
        C::OperationTimedOut | C::RequestTimedOut | C::TimedOutQueue | C::MessageTimedOut => {
            ErrorKind::Timeout
        }
        C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed => ErrorKind::Unauthorized,
        C::BadMessage
        | C::InvalidMessage
        | C::BadCompression
        | C::InvalidMessageSize
        | C::Inconsistent => ErrorKind::BadResponse,
        C::InvalidArgument | C::InvalidGroupId | C::InvalidTopic => ErrorKind::Invalid,
        _ => ErrorKind::Rejected,
    }
}

/// A whole-call rdkafka error as a [`ClientError`] naming the bootstrap servers.
fn call_error(e: &KafkaError, bootstrap: &str) -> ClientError {
    let code = e.rdkafka_error_code();
    let kind = code.map_or(ErrorKind::Other, kind_of);
    let message = match kind {
        ErrorKind::Unreachable => format!("no broker reachable (bootstrap {bootstrap}): {e}"),
        ErrorKind::Timeout => format!("no answer from the cluster (bootstrap {bootstrap}): {e}"),
        ErrorKind::Unauthorized => format!("not authorized (bootstrap {bootstrap}): {e}"),
        _ => format!("{e} (bootstrap {bootstrap})"),
    };
    ClientError::new(kind, message)
}

fn tpl_of(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for tp in partitions {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    tpl
}

/// The answer list aligned with the request (librdkafka fills the list it was given, in order).
fn aligned<T>(
    partitions: &[TopicPartition],
    answer: &TopicPartitionList,
    mut value: impl FnMut(Offset) -> PartitionAnswer<T>,
) -> Result<Vec<PartitionAnswer<T>>, ClientError> {
    let elements = answer.elements();
    if elements.len() != partitions.len() {
        return Err(ClientError::new(
            ErrorKind::BadResponse,
            format!(
                "asked {} partitions, the answer lists {}",
                partitions.len(),
                elements.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(partitions.len());
    for (tp, e) in partitions.iter().zip(elements.iter()) {
        if e.topic() != &*tp.topic || e.partition() != tp.partition {
            return Err(ClientError::new(
                ErrorKind::BadResponse,
                format!(
                    "the answer lists {}[{}] where {tp} was asked",
                    e.topic(),
                    e.partition()
                ),
            ));
        }
        out.push(match e.error() {
            Err(err) => Err(err.to_string()),
            Ok(()) => value(e.offset()),
        });
    }
    Ok(out)
}

/// Keeps each answered topic's partition leaders (a topic the answer does not know is forgotten).
fn remember_leaders(leaders: &Mutex<Arc<Leaders>>, topics: &[TopicMetadata]) {
    let mut snapshot = match leaders.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    };
    // Copied only when a call still holds the previous snapshot.
    let leaders = Arc::make_mut(&mut *snapshot);
    for t in topics {
        if t.partitions.is_empty() {
            leaders.remove(&t.name);
            continue;
        }
        let len = t
            .partitions
            .iter()
            .filter_map(|p| usize::try_from(p.partition).ok())
            .max()
            .map_or(0, |m| m + 1);
        let mut by_partition = vec![None; len];
        for p in &t.partitions {
            if let Ok(i) = usize::try_from(p.partition) {
                by_partition[i] = p.leader;
            }
        }
        leaders.insert(t.name.clone(), by_partition);
    }
}

fn resp_text(e: rdkafka::types::RDKafkaRespErr) -> String {
    RDKafkaErrorCode::from(e).to_string()
}

#[async_trait]
impl KafkaClient for RdKafkaClient {
    fn bootstrap(&self) -> &str {
        &self.inner.config.bootstrap
    }

    async fn metadata(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<ClusterMetadata, ClientError> {
        // On a secured listener a failed Metadata request is explained by one connection of rb's
        // own (librdkafka does not hand its TLS and SASL refusals to a consumer without a group):
        // the last part of the deadline is kept for it.
        let explainer = self.explainer();
        let budget = match explainer {
            Some(_) => timeout.saturating_sub(EXPLAIN_BUDGET.min(timeout / 2)),
            None => timeout,
        };
        let answer = self.metadata_within(topics, budget).await;
        match (answer, explainer) {
            // A TLS refusal librdkafka did report carries no detail: rb's connection adds it.
            (Err(e), Some(wire))
                if matches!(
                    e.kind,
                    ErrorKind::Timeout | ErrorKind::Unreachable | ErrorKind::Invalid
                ) =>
            {
                Err(wire.explain(e, timeout.saturating_sub(budget)).await)
            }
            (answer, _) => answer,
        }
    }

    async fn committed_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<Option<i64>>>, ClientError> {
        if let Some(wire) = self.wire() {
            match wire.committed(group, partitions, timeout).await {
                Ok(answer) => return Ok(answer),
                Err(Fail::Client(e)) => return Err(e),
                Err(Fail::Unsupported(why)) => self.refuse_wire(&why),
            }
        }
        let n = self.inner.config.partitions_per_request.max(1);
        let calls = partitions
            .chunks(n)
            .map(|chunk| self.committed_chunk(group, chunk, timeout));
        Ok(futures::future::try_join_all(calls).await?.concat())
    }

    async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<i64>>, ClientError> {
        if self.wire().is_some() {
            match self.native_end_offsets(partitions, timeout).await {
                Ok(answer) => return Ok(answer),
                Err(Fail::Client(e)) => return Err(e),
                Err(Fail::Unsupported(why)) => self.refuse_wire(&why),
            }
        }
        let n = self.inner.config.partitions_per_request.max(1);
        // Batches of one leader each: librdkafka sends one ListOffsets per leader of a call, so a
        // batch spanning three leaders costs three requests. Leaders not known yet (no Metadata
        // answer names them) share batches; librdkafka finds their leaders itself.
        let batches = self.batches_by_leader(partitions, n);
        let calls = batches.iter().map(|idx| {
            let chunk = idx.iter().map(|&i| partitions[i].clone()).collect();
            self.ends_chunk(chunk, timeout)
        });
        let answers = futures::future::join_all(calls).await;
        // A batch is one leader's: when that broker is down, librdkafka may fail the whole call
        // (no partition of it has a reachable leader). That is those partitions' failure, not the
        // observation's: the call fails only when every batch failed.
        if answers.iter().all(Result::is_err) {
            if let Some(Err(e)) = answers.into_iter().next() {
                return Err(e);
            }
            return Ok(Vec::new());
        }
        let mut out: Vec<Option<PartitionAnswer<i64>>> = vec![None; partitions.len()];
        for (idx, answer) in batches.iter().zip(answers) {
            match answer {
                Ok(answer) => {
                    for (&i, a) in idx.iter().zip(answer) {
                        out[i] = Some(a);
                    }
                }
                Err(e) => {
                    for &i in idx {
                        out[i] = Some(Err(e.message.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|a| {
                a.ok_or_else(|| {
                    ClientError::new(ErrorKind::BadResponse, "a partition was left unanswered")
                })
            })
            .collect()
    }

    async fn describe_group(
        &self,
        group: &str,
        timeout: Duration,
    ) -> Result<Option<GroupDescription>, ClientError> {
        let base = self.inner.base.clone();
        let group = group.to_owned();
        let bootstrap = self.bootstrap_str();
        blocking(
            move || {
                // librdkafka's group listing answers "timed out" when no broker is reachable; a
                // one-topic Metadata request first tells an unreachable cluster apart (its
                // topic-level answer, even "not authorized", does not matter).
                let started = std::time::Instant::now();
                base.fetch_metadata(Some("__consumer_offsets"), timeout)
                    .map_err(|e| refine(&base, &e, &bootstrap))?;
                answered(&base);
                let list = base
                    .fetch_group_list(Some(&group), timeout.saturating_sub(started.elapsed()))
                    .map_err(|e| refine(&base, &e, &bootstrap))?;
                answered(&base);
                Ok(list
                    .groups()
                    .iter()
                    .find(|g| g.name() == group)
                    .map(|g| GroupDescription {
                        group: g.name().to_owned(),
                        state: GroupState::parse(g.state()),
                        protocol: g.protocol().to_owned(),
                        members: g
                            .members()
                            .iter()
                            .map(|m| GroupMember {
                                member_id: m.id().to_owned(),
                                client_id: m.client_id().to_owned(),
                                client_host: m.client_host().to_owned(),
                            })
                            .collect(),
                    }))
            },
            self.bootstrap_str(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds() {
        assert_eq!(
            kind_of(RDKafkaErrorCode::BrokerTransportFailure),
            ErrorKind::Unreachable
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::AllBrokersDown),
            ErrorKind::Unreachable
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::OperationTimedOut),
            ErrorKind::Timeout
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::SaslAuthenticationFailed),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::GroupAuthorizationFailed),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::BadMessage),
            ErrorKind::BadResponse
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::UnsupportedFeature),
            ErrorKind::Rejected
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::CoordinatorNotAvailable),
            ErrorKind::Rejected
        );
    }

    #[test]
    fn empty_bootstrap_is_invalid() {
        let e = RdKafkaClient::new(KafkaConfig::new(" "))
            .err()
            .map(|e| e.kind);
        assert_eq!(e, Some(ErrorKind::Invalid));
    }
}
