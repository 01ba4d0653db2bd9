//! rb's own broker connections for the two batched offset requests of the lag probe: committed
//! offsets in **one OffsetFetch** at the group's coordinator, log-end offsets in **one ListOffsets
//! per leader**, whatever the number of partitions.
//!
//! Why not librdkafka for these two: its `committed` and `offsets_for_times` copy every answer back
//! into the caller's list by a linear search per partition, quadratic in the list's length (see
//! `benches/README.md`), so it has to be fed batches of a few hundred partitions, one request
//! each. Here an answer is matched to the request in one pass (answers keep the request's order; a
//! hash look-up otherwise), so the cost per partition stays flat and one request carries them all.
//!
//! Connections are TCP, or TLS with the `kafka-tls` feature (`security.rs`), opened on first use,
//! each introduced with ApiVersions (the version of each request is the highest both sides speak;
//! a broker that speaks none of rb's falls back to librdkafka), then authenticated when SASL is
//! configured (SaslHandshake v1 and SaslAuthenticate: PLAIN or SCRAM, `sasl.rs`; a session the
//! broker gives a lifetime is replaced before it ends), and kept: one per broker for the
//! coordinator's requests and one for ListOffsets, so the two requests of an observation that go
//! to one broker do not queue behind each other. A request
//! holds its connection until the answer is read; a connection that failed or timed out is
//! dropped, never reused with an answer in flight. Both requests only read, so a request on a
//! reused connection that turns out to be closed (the broker restarted) is sent once more on a
//! new one, within the same deadline.
//!
//! The connections live on a runtime of their own (one worker thread, `rb-kafka-wire`), and a
//! call waits for it from tokio's blocking pool, as librdkafka's calls do. So the caller's runtime
//! may have its time paused (`start_paused`, the testkit's virtual clock): the deadlines of the
//! requests run on real time, and a paused runtime does not jump its clock ahead while a broker
//! (another thread, or another process) is still answering.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rb_core::ErrorKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::client::{BrokerInfo, ClientError, PartitionAnswer, TopicPartition};
use super::config::KafkaConfig;
use super::security::{HandshakeError, Security, Stream};
use super::wire::{self, ApiVersions, ByTopic, DecodeError};

/// The largest answer accepted (a ListOffsets answer for 100,000 partitions is ~2.6 MB).
const MAX_ANSWER: usize = 64 << 20;
/// How many times the group's coordinator is looked up again after it moved or was not ready.
const COORDINATOR_ATTEMPTS: u32 = 5;
/// The pause before looking the coordinator up again (times the attempt).
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(50);
/// A kept connection whose authenticated session ends within this is replaced before use.
const SESSION_MARGIN: Duration = Duration::from_secs(5);

/// Each topic's partition leaders from the last Metadata answer (index: partition).
pub(super) type Leaders = HashMap<String, Vec<Option<i32>>>;

/// `partitions`' indices grouped by leader (`None`: no leader known), in leader id order. Both
/// offset paths group log-end requests this way: one request per leader.
pub(super) fn group_by_leader(
    partitions: &[TopicPartition],
    leaders: &Leaders,
) -> BTreeMap<Option<i32>, Vec<usize>> {
    let mut groups: BTreeMap<Option<i32>, Vec<usize>> = BTreeMap::new();
    for (i, tp) in partitions.iter().enumerate() {
        let leader = leaders
            .get(&*tp.topic)
            .and_then(|l| usize::try_from(tp.partition).ok().and_then(|p| l.get(p)))
            .copied()
            .flatten();
        groups.entry(leader).or_default().push(i);
    }
    groups
}

/// Why a native call did not answer.
#[derive(Debug)]
pub(super) enum Fail {
    /// A broker speaks none of rb's versions of a request: ask through librdkafka instead.
    Unsupported(String),
    /// The call failed.
    Client(ClientError),
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        Fail::Client(e)
    }
}

/// Which of a broker's two connections a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    /// FindCoordinator and OffsetFetch.
    Group,
    /// ListOffsets.
    Offsets,
}

/// A broker as errors name it.
#[derive(Clone, Copy)]
struct Peer<'a> {
    id: Option<i32>,
    addr: &'a str,
}

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "broker {id} at {}", self.addr),
            None => write!(f, "broker at {}", self.addr),
        }
    }
}

fn api_name(api: i16) -> &'static str {
    match api {
        wire::API_LIST_OFFSETS => "ListOffsets",
        wire::API_OFFSET_FETCH => "OffsetFetch",
        wire::API_FIND_COORDINATOR => "FindCoordinator",
        wire::API_VERSIONS => "ApiVersions",
        wire::API_SASL_HANDSHAKE => "SaslHandshake",
        wire::API_SASL_AUTHENTICATE => "SaslAuthenticate",
        _ => "a request",
    }
}

struct Conn {
    stream: Stream,
    versions: ApiVersions,
    /// When the broker ends the authenticated session (SaslAuthenticate v1's lifetime).
    expires: Option<Instant>,
}

impl Conn {
    /// Whether the session ends too soon to send a request on it.
    fn expiring(&self) -> bool {
        self.expires
            .is_some_and(|at| at <= Instant::now() + SESSION_MARGIN)
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// The runtime the connections live on; shut down without waiting when the adapter goes (a
/// runtime may not be dropped from async code otherwise).
struct Driver(Option<tokio::runtime::Runtime>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The native half of the adapter (see the module docs).
pub(super) struct Wire {
    driver: Driver,
    security: Security,
    client_id: String,
    bootstrap: Vec<String>,
    /// Broker id → `host:port`, from the last Metadata answer.
    brokers: Mutex<HashMap<i32, String>>,
    /// Group → its coordinator (id, `host:port`), until it moves.
    coordinators: Mutex<HashMap<String, (i32, String)>>,
    conns: Mutex<HashMap<(String, Lane), Slot>>,
    correlation: AtomicI32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// `host:port` (IPv6 hosts in brackets).
fn address(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The kind of a Kafka error code that fails a whole call.
fn kind_of(code: i16) -> ErrorKind {
    if wire::not_authorized(code) {
        ErrorKind::Unauthorized
    } else if wire::coordinator_moved(code) {
        ErrorKind::Unreachable
    } else {
        ErrorKind::Rejected
    }
}

enum Exchange {
    Io(std::io::Error),
    Bad(String),
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Sends one request and reads its answer's body (after the correlation id).
async fn exchange(stream: &mut Stream, frame: &[u8], id: i32) -> Result<Vec<u8>, Exchange> {
    stream.write_all(frame).await.map_err(Exchange::Io)?;
    stream.flush().await.map_err(Exchange::Io)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.map_err(Exchange::Io)?;
    let size = i32::from_be_bytes(size);
    let size = match usize::try_from(size) {
        Ok(s) if (4..=MAX_ANSWER).contains(&s) => s,
        _ => {
            return Err(Exchange::Bad(format!(
                "an answer of {size} bytes announced (at most {MAX_ANSWER} accepted, at least 4)"
            )))
        }
    };
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await.map_err(Exchange::Io)?;
    let got = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if got != id {
        return Err(Exchange::Bad(format!(
            "the answer carries correlation id {got}, {id} was sent"
        )));
    }
    body.drain(..4);
    Ok(body)
}

impl Wire {
    /// Connections for `config`'s bootstrap servers (`host:port,…`, an optional `scheme://` per
    /// entry), secured as it says; `Err` if its TLS settings cannot be used or the runtime cannot
    /// start.
    pub(super) fn new(config: &KafkaConfig) -> Result<Self, String> {
        let security = Security::from_config(config)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rb-kafka-wire")
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime for the broker connections: {e}"))?;
        let bootstrap = config
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.rsplit("://").next().unwrap_or(s).to_owned())
            .collect();
        Ok(Self {
            driver: Driver(Some(rt)),
            security,
            client_id: config.client_id.clone(),
            bootstrap,
            brokers: Mutex::new(HashMap::new()),
            coordinators: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            correlation: AtomicI32::new(1),
        })
    }

    /// Runs `work` on the connections' runtime, waiting from the blocking pool.
    async fn run<T, F>(&self, work: F) -> Result<T, Fail>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Fail>> + Send + 'static,
    {
        let Some(handle) = self.driver.0.as_ref().map(|rt| rt.handle().clone()) else {
            return Err(Fail::Client(ClientError::new(
                ErrorKind::Other,
                "the broker connections' runtime is gone",
            )));
        };
        match tokio::task::spawn_blocking(move || handle.block_on(work)).await {
            Ok(r) => r,
            Err(e) => Err(Fail::Client(ClientError::new(
                ErrorKind::Other,
                format!("the offsets call did not complete: {e}"),
            ))),
        }
    }

    /// The committed offsets of `group` on `partitions`: one OffsetFetch at its coordinator.
    pub(super) async fn committed(
        self: &Arc<Self>,
        group: &str,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<Option<i64>>>, Fail> {
        let (me, group, parts) = (self.clone(), group.to_owned(), partitions.to_vec());
        self.run(async move { me.committed_here(&group, &parts, timeout).await })
            .await
    }

    /// The log-end offsets of `partitions`, one ListOffsets per leader (`leaders`: each topic's
    /// partition leaders from the last Metadata answer). Also returns the indices whose leader
    /// moved since that answer (`NOT_LEADER_OR_FOLLOWER` and the like), for the caller to ask
    /// again after new metadata.
    pub(super) async fn end_offsets(
        self: &Arc<Self>,
        partitions: Vec<TopicPartition>,
        leaders: Arc<Leaders>,
        timeout: Duration,
    ) -> Result<(Vec<PartitionAnswer<i64>>, Vec<usize>), Fail> {
        let me = self.clone();
        self.run(async move {
            let groups = group_by_leader(&partitions, &leaders);
            me.end_offsets_here(&partitions, groups, timeout).await
        })
        .await
    }

    /// Why a secured cluster did not answer librdkafka (`failed`, a timeout or an unreachable
    /// cluster): one connection to a bootstrap server with rb's own TLS and SASL, within
    /// `budget`. A refused certificate ([`ErrorKind::Invalid`]) or refused credentials
    /// ([`ErrorKind::Unauthorized`]) is what the caller hears, naming the broker and the cause;
    /// anything else leaves `failed` as it was.
    pub(super) async fn explain(
        self: &Arc<Self>,
        failed: ClientError,
        budget: Duration,
    ) -> ClientError {
        let Some(addr) = self.bootstrap.first().cloned() else {
            return failed;
        };
        let me = self.clone();
        let found = self
            .run(async move {
                let peer = Peer {
                    id: None,
                    addr: &addr,
                };
                me.connect(peer, Instant::now() + budget).await.map(drop)
            })
            .await;
        match found {
            Err(Fail::Client(e))
                if matches!(e.kind, ErrorKind::Invalid | ErrorKind::Unauthorized) =>
            {
                ClientError::new(
                    e.kind,
                    format!("{} (librdkafka: {})", e.message, failed.message),
                )
            }
            _ => failed,
        }
    }

    /// Remembers the brokers of a Metadata answer (a broker no longer listed is forgotten, with
    /// its connections).
    pub(super) fn set_brokers(&self, brokers: &[BrokerInfo]) {
        let next: HashMap<i32, String> = brokers
            .iter()
            .map(|b| (b.id, address(&b.host, b.port)))
            .collect();
        let mut known = lock(&self.brokers);
        if *known != next {
            let keep: Vec<&String> = next.values().chain(self.bootstrap.iter()).collect();
            lock(&self.conns).retain(|(addr, _), _| keep.contains(&addr));
            *known = next;
        }
    }

    fn slot(&self, addr: &str, lane: Lane) -> Slot {
        lock(&self.conns)
            .entry((addr.to_owned(), lane))
            .or_default()
            .clone()
    }

    fn next_id(&self) -> i32 {
        let id = self.correlation.fetch_add(1, Ordering::Relaxed);
        if id == i32::MAX {
            self.correlation.store(1, Ordering::Relaxed);
        }
        id
    }

    fn timed_out(peer: Peer<'_>, api: i16, started: Instant) -> Fail {
        Fail::Client(ClientError::new(
            ErrorKind::Timeout,
            format!(
                "{peer}: no {} answer within {} ms",
                api_name(api),
                started.elapsed().as_millis()
            ),
        ))
    }

    async fn connect(&self, peer: Peer<'_>, deadline: Instant) -> Result<Conn, Fail> {
        let started = Instant::now();
        let tcp = match timeout_at(deadline, TcpStream::connect(peer.addr)).await {
            Err(_) => return Err(Self::timed_out(peer, wire::API_VERSIONS, started)),
            Ok(Err(e)) => {
                return Err(Fail::Client(ClientError::new(
                    ErrorKind::Unreachable,
                    format!("{peer}: connect failed: {e}"),
                )))
            }
            Ok(Ok(s)) => s,
        };
        // Requests are written whole; Nagle would only delay the next one.
        let _ = tcp.set_nodelay(true);
        let stream = match timeout_at(deadline, self.security.secure(tcp, host_of(peer.addr))).await
        {
            Err(_) => {
                return Err(Fail::Client(ClientError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{peer}: no TLS handshake within {} ms",
                        started.elapsed().as_millis()
                    ),
                )))
            }
            Ok(Ok(s)) => s,
            Ok(Err(HandshakeError::Invalid(why))) => {
                return Err(Fail::Client(ClientError::new(
                    ErrorKind::Invalid,
                    format!("{peer}: {why}"),
                )))
            }
            Ok(Err(HandshakeError::Lost(why))) => {
                return Err(Fail::Client(ClientError::new(
                    ErrorKind::Unreachable,
                    format!("{peer}: {why}"),
                )))
            }
        };
        let mut conn = Conn {
            stream,
            versions: ApiVersions::default(),
            expires: None,
        };
        let id = self.next_id();
        let frame = wire::api_versions_request(id, &self.client_id);
        let body = self
            .request_on(&mut conn, peer, wire::API_VERSIONS, &frame, id, deadline)
            .await?;
        match wire::decode_api_versions(&body) {
            Ok(Ok(v)) => conn.versions = v,
            Ok(Err(code)) => {
                return Err(Fail::Client(ClientError::new(
                    ErrorKind::Rejected,
                    format!("{peer}: ApiVersions: {}", wire::error_name(code)),
                )))
            }
            Err(e) => return Err(Self::decode_error(peer, wire::API_VERSIONS, &e)),
        }
        #[cfg(feature = "kafka-tls")]
        if let Some(sasl) = self.security.sasl() {
            conn.expires = self.authenticate(&mut conn, sasl, peer, deadline).await?;
        }
        Ok(conn)
    }

    /// One request on a connection being set up (no retry: it is new).
    async fn request_on(
        &self,
        conn: &mut Conn,
        peer: Peer<'_>,
        api: i16,
        frame: &[u8],
        id: i32,
        deadline: Instant,
    ) -> Result<Vec<u8>, Fail> {
        let started = Instant::now();
        match timeout_at(deadline, exchange(&mut conn.stream, frame, id)).await {
            Err(_) => Err(Self::timed_out(peer, api, started)),
            Ok(r) => r.map_err(|e| Self::exchange_error(peer, api, e)),
        }
    }

    /// SASL on a new connection: SaslHandshake v1, then the mechanism's messages in
    /// SaslAuthenticate requests. Returns when the session ends, if the broker set a lifetime.
    #[cfg(feature = "kafka-tls")]
    async fn authenticate(
        &self,
        conn: &mut Conn,
        sasl: &super::config::Sasl,
        peer: Peer<'_>,
        deadline: Instant,
    ) -> Result<Option<Instant>, Fail> {
        /// PLAIN takes one message, SCRAM two; a server asking for more is not speaking them.
        const MAX_ROUNDS: usize = 3;
        let mechanism = sasl.mechanism.as_str();
        let (Some(_), Some(auth_version)) = (
            conn.versions.pick(wire::API_SASL_HANDSHAKE),
            conn.versions.pick(wire::API_SASL_AUTHENTICATE),
        ) else {
            return Err(Fail::Unsupported(format!(
                "{peer} accepts SaslHandshake {} and SaslAuthenticate {}, not the versions rb \
                 speaks",
                conn.versions.describe(wire::API_SASL_HANDSHAKE),
                conn.versions.describe(wire::API_SASL_AUTHENTICATE)
            )));
        };
        let id = self.next_id();
        let frame = wire::sasl_handshake_request(id, &self.client_id, mechanism);
        let body = self
            .request_on(conn, peer, wire::API_SASL_HANDSHAKE, &frame, id, deadline)
            .await?;
        let (error, enabled) = wire::decode_sasl_handshake(&body)
            .map_err(|e| Self::decode_error(peer, wire::API_SASL_HANDSHAKE, &e))?;
        if error != 0 {
            return Err(Fail::Client(ClientError::new(
                ErrorKind::Invalid,
                format!(
                    "{peer}: SASL mechanism {mechanism} refused ({}); the listener enables [{}]",
                    wire::error_name(error),
                    enabled.join(", ")
                ),
            )));
        }
        let refused = |why: String| {
            Fail::Client(ClientError::new(
                ErrorKind::Unauthorized,
                format!(
                    "{peer}: SASL {mechanism} authentication of user {:?} failed: {why}",
                    sasl.username
                ),
            ))
        };
        let mut auth = super::sasl::Authenticator::new(sasl);
        let mut message = auth.first_message().to_vec();
        for _ in 0..MAX_ROUNDS {
            let id = self.next_id();
            let frame =
                wire::sasl_authenticate_request(auth_version, id, &self.client_id, &message);
            let body = self
                .request_on(
                    conn,
                    peer,
                    wire::API_SASL_AUTHENTICATE,
                    &frame,
                    id,
                    deadline,
                )
                .await?;
            let answer = wire::decode_sasl_authenticate(auth_version, &body)
                .map_err(|e| Self::decode_error(peer, wire::API_SASL_AUTHENTICATE, &e))?;
            if answer.error != 0 {
                return Err(refused(format!(
                    "{}{}",
                    wire::error_name(answer.error),
                    answer.message.map(|m| format!(": {m}")).unwrap_or_default()
                )));
            }
            match auth.answer(&answer.auth_bytes) {
                Ok(Some(next)) => message = next,
                Ok(None) => {
                    let lifetime = u64::try_from(answer.session_lifetime_ms).unwrap_or(0);
                    return Ok(
                        (lifetime > 0).then(|| Instant::now() + Duration::from_millis(lifetime))
                    );
                }
                Err(why) => return Err(refused(why)),
            }
        }
        Err(refused(format!(
            "the broker asked for more than {MAX_ROUNDS} messages"
        )))
    }

    fn exchange_error(peer: Peer<'_>, api: i16, e: Exchange) -> Fail {
        Fail::Client(match e {
            Exchange::Io(e) => ClientError::new(
                ErrorKind::Unreachable,
                format!("{peer}: connection lost during {}: {e}", api_name(api)),
            ),
            Exchange::Bad(why) => ClientError::new(
                ErrorKind::BadResponse,
                format!("{peer}: {}: {why}", api_name(api)),
            ),
        })
    }

    fn decode_error(peer: Peer<'_>, api: i16, e: &DecodeError) -> Fail {
        Fail::Client(ClientError::new(
            ErrorKind::BadResponse,
            format!("{peer}: malformed {} answer {e}", api_name(api)),
        ))
    }

    /// One request on `peer`'s connection of `lane`: returns the version used and the answer's
    /// body. `build(version, correlation id)` writes the frame.
    async fn call(
        &self,
        peer: Peer<'_>,
        lane: Lane,
        api: i16,
        build: impl Fn(i16, i32) -> Vec<u8>,
        deadline: Instant,
    ) -> Result<(i16, Vec<u8>), Fail> {
        let started = Instant::now();
        let slot = self.slot(peer.addr, lane);
        let Ok(mut guard) = timeout_at(deadline, slot.lock()).await else {
            return Err(Self::timed_out(peer, api, started));
        };
        let mut fresh_tried = false;
        loop {
            let (mut conn, reused) = match guard.take() {
                Some(c) if !c.expiring() => (c, true),
                // None, or a session about to end (dropped: the broker would close it).
                _ => {
                    fresh_tried = true;
                    (self.connect(peer, deadline).await?, false)
                }
            };
            let Some(version) = conn.versions.pick(api) else {
                let accepted = conn.versions.describe(api);
                *guard = Some(conn);
                return Err(Fail::Unsupported(format!(
                    "{peer} accepts {} {accepted}, none of the versions rb speaks",
                    api_name(api)
                )));
            };
            let id = self.next_id();
            let frame = build(version, id);
            match timeout_at(deadline, exchange(&mut conn.stream, &frame, id)).await {
                Err(_) => return Err(Self::timed_out(peer, api, started)),
                Ok(Ok(body)) => {
                    *guard = Some(conn);
                    return Ok((version, body));
                }
                // A kept connection the broker closed meanwhile: once more on a new one.
                Ok(Err(Exchange::Io(_))) if reused && !fresh_tried => continue,
                Ok(Err(e)) => return Err(Self::exchange_error(peer, api, e)),
            }
        }
    }

    fn forget_coordinator(&self, group: &str) {
        lock(&self.coordinators).remove(group);
    }

    /// The brokers to ask FindCoordinator: those of the last Metadata answer, then the bootstrap
    /// servers.
    fn candidates(&self) -> Vec<(Option<i32>, String)> {
        let brokers = lock(&self.brokers);
        let mut out: Vec<(Option<i32>, String)> = brokers
            .iter()
            .map(|(id, a)| (Some(*id), a.clone()))
            .collect();
        drop(brokers);
        out.sort();
        for b in &self.bootstrap {
            if !out.iter().any(|(_, a)| a == b) {
                out.push((None, b.clone()));
            }
        }
        out
    }

    /// The group's coordinator (cached until it moves).
    async fn coordinator(&self, group: &str, deadline: Instant) -> Result<(i32, String), Fail> {
        if let Some(c) = lock(&self.coordinators).get(group) {
            return Ok(c.clone());
        }
        let mut last: Option<ClientError> = None;
        for attempt in 1..=COORDINATOR_ATTEMPTS {
            let mut not_ready = false;
            for (id, addr) in self.candidates() {
                let peer = Peer { id, addr: &addr };
                let build = |v, c| wire::find_coordinator_request(v, c, &self.client_id, group);
                let (version, body) = match self
                    .call(
                        peer,
                        Lane::Group,
                        wire::API_FIND_COORDINATOR,
                        build,
                        deadline,
                    )
                    .await
                {
                    Ok(answer) => answer,
                    // That broker is down: ask the next one.
                    Err(Fail::Client(e)) if e.kind == ErrorKind::Unreachable => {
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let c = wire::decode_find_coordinator(version, &body)
                    .map_err(|e| Self::decode_error(peer, wire::API_FIND_COORDINATOR, &e))?;
                if c.error == 0 {
                    let found = (c.node_id, address(&c.host, c.port));
                    lock(&self.coordinators).insert(group.to_owned(), found.clone());
                    return Ok(found);
                }
                let why = format!(
                    "{peer}: FindCoordinator for group {group}: {}{}",
                    wire::error_name(c.error),
                    c.message.map(|m| format!(": {m}")).unwrap_or_default()
                );
                let e = ClientError::new(kind_of(c.error), why);
                if !wire::coordinator_moved(c.error) {
                    return Err(Fail::Client(e));
                }
                last = Some(e);
                not_ready = true;
                break;
            }
            if !not_ready || attempt == COORDINATOR_ATTEMPTS || !self.pause(attempt, deadline).await
            {
                break;
            }
        }
        Err(Fail::Client(last.unwrap_or_else(|| {
            ClientError::new(
                ErrorKind::Unreachable,
                "no broker to ask for the coordinator",
            )
        })))
    }

    async fn committed_here(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Result<Vec<PartitionAnswer<Option<i64>>>, Fail> {
        let deadline = Instant::now() + timeout;
        let by = ByTopic::new(
            partitions
                .iter()
                .enumerate()
                .map(|(i, tp)| (i, &*tp.topic, tp.partition)),
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (id, addr) = self.coordinator(group, deadline).await?;
            let peer = Peer {
                id: Some(id),
                addr: &addr,
            };
            let build = |v, c| wire::offset_fetch_request(v, c, &self.client_id, group, &by);
            let (version, body) = match self
                .call(peer, Lane::Group, wire::API_OFFSET_FETCH, build, deadline)
                .await
            {
                Ok(answer) => answer,
                // The coordinator went down: another broker takes the group over.
                Err(Fail::Client(e))
                    if e.kind == ErrorKind::Unreachable && attempt < COORDINATOR_ATTEMPTS =>
                {
                    self.forget_coordinator(group);
                    if !self.pause(attempt, deadline).await {
                        return Err(Fail::Client(e));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let replies = wire::decode_offset_fetch(version, &body, &by, partitions.len())
                .map_err(|e| Self::decode_error(peer, wire::API_OFFSET_FETCH, &e))?;
            // Before v2 a group-level error is repeated on every partition.
            let mut top = replies.error;
            if top == 0 {
                let mut codes = replies.partitions.iter().map(|r| r.map_or(0, |r| r.error));
                if let Some(first) = codes.next() {
                    if (wire::coordinator_moved(first) || wire::not_authorized(first))
                        && codes.all(|c| c == first)
                    {
                        top = first;
                    }
                }
            }
            if top != 0 {
                let e = ClientError::new(
                    kind_of(top),
                    format!(
                        "{peer}: OffsetFetch for group {group}: {}",
                        wire::error_name(top)
                    ),
                );
                if wire::coordinator_moved(top) && attempt < COORDINATOR_ATTEMPTS {
                    self.forget_coordinator(group);
                    if self.pause(attempt, deadline).await {
                        continue;
                    }
                }
                return Err(Fail::Client(e));
            }
            return Ok(partitions
                .iter()
                .zip(&replies.partitions)
                .map(|(tp, r)| match r {
                    None => Err(format!("{peer}: the OffsetFetch answer does not list {tp}")),
                    Some(r) if r.error != 0 => {
                        Err(format!("{peer}: {}", wire::error_name(r.error)))
                    }
                    Some(r) if r.offset < 0 => Ok(None),
                    Some(r) => Ok(Some(r.offset)),
                })
                .collect());
        }
    }

    /// Waits before another attempt; `false` if the deadline comes first.
    async fn pause(&self, attempt: u32, deadline: Instant) -> bool {
        let until = Instant::now() + COORDINATOR_BACKOFF * attempt;
        if until >= deadline {
            return false;
        }
        tokio::time::sleep_until(until).await;
        true
    }

    async fn end_offsets_here(
        &self,
        partitions: &[TopicPartition],
        groups: BTreeMap<Option<i32>, Vec<usize>>,
        timeout: Duration,
    ) -> Result<(Vec<PartitionAnswer<i64>>, Vec<usize>), Fail> {
        let deadline = Instant::now() + timeout;
        let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        let mut out: Vec<PartitionAnswer<i64>> = vec![Ok(0); partitions.len()];
        for (leader, idx) in groups {
            match leader {
                Some(l) => {
                    by_leader.insert(l, idx);
                }
                None => {
                    for i in idx {
                        out[i] = Err("no leader known (an offline partition, or one the last \
                                      Metadata answer did not list)"
                            .to_owned());
                    }
                }
            }
        }
        let brokers = lock(&self.brokers).clone();
        let asks = by_leader.iter().map(|(&leader, idx)| {
            let addr = brokers.get(&leader).cloned();
            async move {
                let Some(addr) = addr else {
                    return Err(Fail::Client(ClientError::new(
                        ErrorKind::Unreachable,
                        format!("broker {leader} leads the partition but the Metadata answer does not list it"),
                    )));
                };
                let peer = Peer {
                    id: Some(leader),
                    addr: &addr,
                };
                let by = ByTopic::new(
                    idx.iter()
                        .map(|&i| (i, &*partitions[i].topic, partitions[i].partition)),
                );
                let build = |v, c| wire::list_offsets_request(v, c, &self.client_id, &by);
                let (version, body) = self
                    .call(peer, Lane::Offsets, wire::API_LIST_OFFSETS, build, deadline)
                    .await?;
                let replies = wire::decode_list_offsets(version, &body, &by, partitions.len())
                    .map_err(|e| Self::decode_error(peer, wire::API_LIST_OFFSETS, &e))?;
                Ok((addr.clone(), replies))
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut moved = Vec::new();
        let mut first_failure: Option<ClientError> = None;
        let mut any_answer = false;
        for ((&leader, idx), answer) in by_leader.iter().zip(answers) {
            match answer {
                Ok((addr, replies)) => {
                    any_answer = true;
                    for &i in idx {
                        out[i] = match replies.partitions[i] {
                            None => Err(format!(
                                "broker {leader} at {addr}: the ListOffsets answer does not list {}",
                                partitions[i]
                            )),
                            Some(r) if r.error != 0 => {
                                if wire::leader_moved(r.error) {
                                    moved.push(i);
                                }
                                Err(format!(
                                    "broker {leader} at {addr}: {}",
                                    wire::error_name(r.error)
                                ))
                            }
                            Some(r) if r.offset < 0 => Err(format!(
                                "broker {leader} at {addr}: no log-end offset (answer {})",
                                r.offset
                            )),
                            Some(r) => Ok(r.offset),
                        };
                    }
                }
                Err(Fail::Unsupported(why)) => return Err(Fail::Unsupported(why)),
                Err(Fail::Client(e)) => {
                    for &i in idx {
                        out[i] = Err(e.message.clone());
                    }
                    first_failure.get_or_insert(e);
                }
            }
        }
        // One leader's failure is its partitions' (an incomplete observation); the call fails only
        // when no leader answered.
        if !any_answer {
            if let Some(e) = first_failure {
                return Err(Fail::Client(e));
            }
        }
        Ok((out, moved))
    }
}

#[cfg(all(test, feature = "kafka-tls"))]
#[path = "native_tls_tests.rs"]
mod tls_tests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn addresses_and_bootstrap() {
        assert_eq!(address("::1", 9092), "[::1]:9092");
        assert_eq!(address("kafka-1", 9092), "kafka-1:9092");
        let w = Wire::new(&KafkaConfig::new(" PLAINTEXT://a:1, b:2,,")).unwrap();
        assert_eq!(w.bootstrap, vec!["a:1".to_owned(), "b:2".to_owned()]);
        w.set_brokers(&[BrokerInfo {
            id: 3,
            host: "c".into(),
            port: 3,
        }]);
        assert_eq!(
            w.candidates(),
            vec![
                (Some(3), "c:3".to_owned()),
                (None, "a:1".to_owned()),
                (None, "b:2".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_broker() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let w = Arc::new(Wire::new(&KafkaConfig::new(&addr)).unwrap());
        let e = w
            .committed("g", &[TopicPartition::new("t", 0)], Duration::from_secs(1))
            .await
            .unwrap_err();
        let Fail::Client(e) = e else { panic!("{e:?}") };
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert!(e.message.contains(&addr), "{e}");
    }

    #[tokio::test]
    async fn garbage_from_a_broker_is_a_bad_response_naming_it() {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            // An answer announcing 2 GB.
            let _ = s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0]).await;
        });
        let w = Arc::new(Wire::new(&KafkaConfig::new(&addr)).unwrap());
        let e = w
            .committed("g", &[TopicPartition::new("t", 0)], Duration::from_secs(2))
            .await
            .unwrap_err();
        let Fail::Client(e) = e else { panic!("{e:?}") };
        assert_eq!(e.kind, ErrorKind::BadResponse, "{e}");
        assert!(
            e.message.contains(&addr) && e.message.contains("ApiVersions"),
            "{e}"
        );
    }

    /// A broker that answers ApiVersions with `ranges` (api key, min, max), then nothing.
    async fn broker_with_versions(ranges: &'static [(i16, i16, i16)]) -> String {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut size = [0u8; 4];
            s.read_exact(&mut size).await.unwrap();
            let mut req = vec![0u8; i32::from_be_bytes(size) as usize];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(i16::from_be_bytes([req[0], req[1]]), wire::API_VERSIONS);
            let mut body = Vec::new();
            body.extend_from_slice(&req[4..8]); // correlation id
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&(ranges.len() as i32).to_be_bytes());
            for (k, lo, hi) in ranges {
                for v in [k, lo, hi] {
                    body.extend_from_slice(&v.to_be_bytes());
                }
            }
            s.write_all(&(body.len() as i32).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&body).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_broker_without_rbs_versions_sends_the_caller_to_librdkafka() {
        // Only the flexible versions of FindCoordinator (3+): none rb speaks.
        let addr = broker_with_versions(&[(10, 3, 6), (9, 1, 9), (2, 1, 9)]).await;
        let w = Arc::new(Wire::new(&KafkaConfig::new(&addr)).unwrap());
        let e = w
            .committed("g", &[TopicPartition::new("t", 0)], Duration::from_secs(2))
            .await
            .unwrap_err();
        let Fail::Unsupported(why) = e else {
            panic!("{e:?}")
        };
        assert!(
            why.contains("FindCoordinator v3–v6") && why.contains(&addr),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_silent_broker_times_out_in_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let w = Arc::new(Wire::new(&KafkaConfig::new(&addr)).unwrap());
        let started = std::time::Instant::now();
        let e = w
            .committed(
                "g",
                &[TopicPartition::new("t", 0)],
                Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        let Fail::Client(e) = e else { panic!("{e:?}") };
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        hold.abort();
    }
}
