//! Kafka's wire protocol for the requests the lag probe sends itself: ApiVersions, FindCoordinator,
//! OffsetFetch and ListOffsets, in their non-flexible versions (request header v1, response
//! header v0). Encoders write into a `Vec`; decoders check every length against what is left of
//! the answer and fail with the byte offset and the field, never panic and never allocate more
//! than the answer could hold.
//!
//! Versions spoken (the field differences are handled per version):
//!
//! | API (key) | versions | differences |
//! | --- | --- | --- |
//! | ApiVersions (18) | 0 | — |
//! | FindCoordinator (10) | 0–2 | v1+: key type in the request; throttle time and error message in the answer |
//! | OffsetFetch (9) | 1–5 | v2+: a top-level error code; v3+: throttle time; v5+: committed leader epoch |
//! | ListOffsets (2) | 1–5 | v2+: isolation level, throttle time; v4+: current leader epoch, leader epoch |
//! | SaslHandshake (17) | 1 | v1: the mechanism's bytes then go in SaslAuthenticate requests |
//! | SaslAuthenticate (36) | 0–1 | v1+: the session's lifetime in the answer |

use std::collections::HashMap;
use std::fmt;

/// ListOffsets.
pub(crate) const API_LIST_OFFSETS: i16 = 2;
/// OffsetFetch.
pub(crate) const API_OFFSET_FETCH: i16 = 9;
/// FindCoordinator.
pub(crate) const API_FIND_COORDINATOR: i16 = 10;
/// SaslHandshake.
pub(crate) const API_SASL_HANDSHAKE: i16 = 17;
/// ApiVersions.
pub(crate) const API_VERSIONS: i16 = 18;
/// SaslAuthenticate.
pub(crate) const API_SASL_AUTHENTICATE: i16 = 36;

/// The versions rb speaks, per API: (lowest, highest).
pub(crate) const SPOKEN: [(i16, i16, i16); 5] = [
    (API_FIND_COORDINATOR, 0, 2),
    (API_OFFSET_FETCH, 1, 5),
    (API_LIST_OFFSETS, 1, 5),
    (API_SASL_HANDSHAKE, 1, 1),
    (API_SASL_AUTHENTICATE, 0, 1),
];

/// ListOffsets' timestamp for "the offset of the next record" (log end).
const LATEST: i64 = -1;

/// An answer that does not decode: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// Byte offset into the answer's body (after the correlation id).
    pub at: usize,
    /// The field being read.
    pub field: &'static str,
    /// What was wrong.
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {} ({}): {}", self.at, self.field, self.what)
    }
}

/// A bounds-checked reader over an answer's body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn err(&self, field: &'static str, what: impl Into<String>) -> DecodeError {
        DecodeError {
            at: self.pos,
            field,
            what: what.into(),
        }
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(self.err(
                field,
                format!(
                    "the answer ends after {} bytes, {N} more needed",
                    self.buf.len()
                ),
            ));
        };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take::<2>(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take::<4>(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take::<8>(field)?))
    }

    /// A nullable string (`None` for length -1).
    pub(crate) fn nullable_str(
        &mut self,
        field: &'static str,
    ) -> Result<Option<&'a str>, DecodeError> {
        let start = self.pos;
        let len = self.i16(field)?;
        if len == -1 {
            return Ok(None);
        }
        let Ok(len) = usize::try_from(len) else {
            self.pos = start;
            return Err(self.err(field, format!("negative string length {len}")));
        };
        let left = self.buf.len() - self.pos;
        if len > left {
            self.pos = start;
            return Err(self.err(
                field,
                format!("a string of {len} bytes where {left} are left"),
            ));
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                self.pos += len;
                Ok(Some(s))
            }
            Err(e) => Err(self.err(field, format!("not UTF-8: {e}"))),
        }
    }

    /// A string that may not be null.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let start = self.pos;
        match self.nullable_str(field)? {
            Some(s) => Ok(s),
            None => {
                self.pos = start;
                Err(self.err(field, "null where a string is required"))
            }
        }
    }

    #[cfg(feature = "kafka-tls")]
    /// A byte string (`BYTES`: an `i32` length; null read as empty).
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let len = self.i32(field)?;
        if len == -1 {
            return Ok(&[]);
        }
        let Ok(len) = usize::try_from(len) else {
            self.pos = start;
            return Err(self.err(field, format!("negative byte string length {len}")));
        };
        let left = self.buf.len() - self.pos;
        if len > left {
            self.pos = start;
            return Err(self.err(
                field,
                format!("{len} bytes announced where {left} are left"),
            ));
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    /// An array's element count (a null array counts as empty), checked against the bytes left
    /// at `min_size` bytes per element, so that a corrupt count cannot make the caller allocate.
    pub(crate) fn array_len(
        &mut self,
        field: &'static str,
        min_size: usize,
    ) -> Result<usize, DecodeError> {
        let start = self.pos;
        let n = self.i32(field)?;
        if n == -1 {
            return Ok(0);
        }
        let Ok(n) = usize::try_from(n) else {
            self.pos = start;
            return Err(self.err(field, format!("negative array length {n}")));
        };
        let left = self.buf.len() - self.pos;
        if n.saturating_mul(min_size.max(1)) > left {
            self.pos = start;
            return Err(self.err(
                field,
                format!("{n} elements announced where {left} bytes are left"),
            ));
        }
        Ok(n)
    }

    /// Fails unless every byte was read (an answer longer than its version's layout means the
    /// version was misread).
    pub(crate) fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err(
                "end",
                format!("{} bytes left over", self.buf.len() - self.pos),
            ))
        }
    }
}

/// Writes one request: the size prefix, request header v1 and the body.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A request of `api_key` at `version`, header written.
    pub(crate) fn request(
        api_key: i16,
        version: i16,
        correlation_id: i32,
        client_id: &str,
    ) -> Self {
        let mut w = Writer {
            buf: Vec::with_capacity(64),
        };
        w.i32(0); // size, set by `finish`
        w.i16(api_key);
        w.i16(version);
        w.i32(correlation_id);
        w.str(client_id);
        w
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    pub(crate) fn i8(&mut self, v: i8) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A string; longer than `i16::MAX` bytes is cut at a character boundary (no Kafka name is).
    pub(crate) fn str(&mut self, s: &str) {
        let mut end = s.len().min(i16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.i16(end as i16);
        self.buf.extend_from_slice(&s.as_bytes()[..end]);
    }

    #[cfg(feature = "kafka-tls")]
    /// A byte string (`BYTES`).
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn array_len(&mut self, n: usize) {
        self.i32(i32::try_from(n).unwrap_or(i32::MAX));
    }

    /// The finished frame, size prefix set.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let size = i32::try_from(self.buf.len() - 4).unwrap_or(i32::MAX);
        self.buf[..4].copy_from_slice(&size.to_be_bytes());
        self.buf
    }
}

/// A Kafka error code's name (the common ones; others by number).
pub(crate) fn error_name(code: i16) -> String {
    let name = match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        8 => "BROKER_NOT_AVAILABLE",
        9 => "REPLICA_NOT_AVAILABLE",
        13 => "NETWORK_EXCEPTION",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        24 => "INVALID_GROUP_ID",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        33 => "UNSUPPORTED_SASL_MECHANISM",
        34 => "ILLEGAL_SASL_STATE",
        35 => "UNSUPPORTED_VERSION",
        42 => "INVALID_REQUEST",
        58 => "SASL_AUTHENTICATION_FAILED",
        69 => "GROUP_ID_NOT_FOUND",
        74 => "FENCED_LEADER_EPOCH",
        75 => "UNKNOWN_LEADER_EPOCH",
        _ => return format!("Kafka error {code}"),
    };
    format!("{name} (Kafka error {code})")
}

/// Whether `code` says the group's coordinator moved or is not ready (find it again, ask again).
pub(crate) fn coordinator_moved(code: i16) -> bool {
    matches!(code, 14..=16)
}

/// Whether `code` refuses the principal (ACLs).
pub(crate) fn not_authorized(code: i16) -> bool {
    matches!(code, 29..=31)
}

/// Whether `code` says the partition's leader changed since the metadata the request was built on.
pub(crate) fn leader_moved(code: i16) -> bool {
    matches!(code, 5 | 6 | 74 | 75)
}

// ---- ApiVersions ------------------------------------------------------------------------------

/// ApiVersions v0 (empty body).
pub(crate) fn api_versions_request(correlation_id: i32, client_id: &str) -> Vec<u8> {
    Writer::request(API_VERSIONS, 0, correlation_id, client_id).finish()
}

/// The version ranges a broker accepts, by API key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ApiVersions {
    ranges: HashMap<i16, (i16, i16)>,
}

impl ApiVersions {
    /// The highest version of `api` both sides speak.
    pub(crate) fn pick(&self, api: i16) -> Option<i16> {
        let (_, lo, hi) = SPOKEN.iter().find(|(k, _, _)| *k == api)?;
        let (min, max) = self.ranges.get(&api)?;
        let v = (*hi).min(*max);
        (v >= *lo && v >= *min).then_some(v)
    }

    /// What a broker accepts for `api`, for an error message.
    pub(crate) fn describe(&self, api: i16) -> String {
        match self.ranges.get(&api) {
            Some((min, max)) => format!("v{min}–v{max}"),
            None => "none".to_owned(),
        }
    }
}

/// Decodes an ApiVersions v0 answer: `Err` with the broker's error code when it has one.
pub(crate) fn decode_api_versions(body: &[u8]) -> Result<Result<ApiVersions, i16>, DecodeError> {
    let mut r = Reader::new(body);
    let error = r.i16("error_code")?;
    let n = r.array_len("api_keys", 6)?;
    let mut ranges = HashMap::with_capacity(n);
    for _ in 0..n {
        let key = r.i16("api_key")?;
        let min = r.i16("min_version")?;
        let max = r.i16("max_version")?;
        ranges.insert(key, (min, max));
    }
    // A broker that does not speak v0 answers v0 with UNSUPPORTED_VERSION and its own ranges;
    // newer brokers may append fields (throttle time) that v0 does not read: tolerated.
    if error != 0 {
        return Ok(Err(error));
    }
    Ok(Ok(ApiVersions { ranges }))
}

// ---- SaslHandshake, SaslAuthenticate (feature `kafka-tls`) -----------------------------------

#[cfg(feature = "kafka-tls")]
/// SaslHandshake v1 for `mechanism`.
pub(crate) fn sasl_handshake_request(
    correlation_id: i32,
    client_id: &str,
    mechanism: &str,
) -> Vec<u8> {
    let mut w = Writer::request(API_SASL_HANDSHAKE, 1, correlation_id, client_id);
    w.str(mechanism);
    w.finish()
}

#[cfg(feature = "kafka-tls")]
/// A SaslHandshake answer: the error code and the mechanisms the listener enables.
pub(crate) fn decode_sasl_handshake(body: &[u8]) -> Result<(i16, Vec<String>), DecodeError> {
    let mut r = Reader::new(body);
    let error = r.i16("error_code")?;
    let n = r.array_len("mechanisms", 2)?;
    let mut mechanisms = Vec::with_capacity(n);
    for _ in 0..n {
        mechanisms.push(r.str("mechanisms[]")?.to_owned());
    }
    r.end()?;
    Ok((error, mechanisms))
}

#[cfg(feature = "kafka-tls")]
/// SaslAuthenticate (v0 or v1) carrying one message of the mechanism.
pub(crate) fn sasl_authenticate_request(
    version: i16,
    correlation_id: i32,
    client_id: &str,
    auth_bytes: &[u8],
) -> Vec<u8> {
    let mut w = Writer::request(API_SASL_AUTHENTICATE, version, correlation_id, client_id);
    w.bytes(auth_bytes);
    w.finish()
}

#[cfg(feature = "kafka-tls")]
/// A SaslAuthenticate answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SaslAnswer {
    /// The broker's error code (0: none).
    pub error: i16,
    /// The broker's message with an error.
    pub message: Option<String>,
    /// The mechanism's next message from the server.
    pub auth_bytes: Vec<u8>,
    /// v1+: how long the authenticated session lasts (0: no limit).
    pub session_lifetime_ms: i64,
}

#[cfg(feature = "kafka-tls")]
/// Decodes a SaslAuthenticate answer of `version`.
pub(crate) fn decode_sasl_authenticate(
    version: i16,
    body: &[u8],
) -> Result<SaslAnswer, DecodeError> {
    let mut r = Reader::new(body);
    let error = r.i16("error_code")?;
    let message = r.nullable_str("error_message")?.map(str::to_owned);
    let auth_bytes = r.bytes("auth_bytes")?.to_vec();
    let session_lifetime_ms = if version >= 1 {
        r.i64("session_lifetime_ms")?
    } else {
        0
    };
    r.end()?;
    Ok(SaslAnswer {
        error,
        message,
        auth_bytes,
        session_lifetime_ms,
    })
}

// ---- FindCoordinator --------------------------------------------------------------------------

/// FindCoordinator for a consumer group.
pub(crate) fn find_coordinator_request(
    version: i16,
    correlation_id: i32,
    client_id: &str,
    group: &str,
) -> Vec<u8> {
    let mut w = Writer::request(API_FIND_COORDINATOR, version, correlation_id, client_id);
    w.str(group);
    if version >= 1 {
        w.i8(0); // key type: group
    }
    w.finish()
}

/// A FindCoordinator answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coordinator {
    /// The broker's error code (0: none).
    pub error: i16,
    /// The broker's error message (v1+).
    pub message: Option<String>,
    /// The coordinator's broker id.
    pub node_id: i32,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: i32,
}

/// Decodes a FindCoordinator answer of `version`.
pub(crate) fn decode_find_coordinator(
    version: i16,
    body: &[u8],
) -> Result<Coordinator, DecodeError> {
    let mut r = Reader::new(body);
    if version >= 1 {
        r.i32("throttle_time_ms")?;
    }
    let error = r.i16("error_code")?;
    let message = if version >= 1 {
        r.nullable_str("error_message")?.map(str::to_owned)
    } else {
        None
    };
    let node_id = r.i32("node_id")?;
    let host = r.str("host")?.to_owned();
    let port = r.i32("port")?;
    r.end()?;
    Ok(Coordinator {
        error,
        message,
        node_id,
        host,
        port,
    })
}

// ---- OffsetFetch and ListOffsets: partitions grouped by topic ---------------------------------

/// The request's partitions grouped by topic, topics in order of first appearance; each entry is
/// (index in the caller's list, partition).
pub(crate) struct ByTopic<'a> {
    topics: Vec<(&'a str, Vec<(usize, i32)>)>,
}

impl<'a> ByTopic<'a> {
    /// Groups `partitions` (topic, partition) by topic.
    pub(crate) fn new(partitions: impl IntoIterator<Item = (usize, &'a str, i32)>) -> Self {
        let mut topics: Vec<(&'a str, Vec<(usize, i32)>)> = Vec::new();
        let mut slot: HashMap<&'a str, usize> = HashMap::new();
        for (i, topic, partition) in partitions {
            let at = *slot.entry(topic).or_insert_with(|| {
                topics.push((topic, Vec::new()));
                topics.len() - 1
            });
            topics[at].1.push((i, partition));
        }
        Self { topics }
    }

    fn len(&self) -> usize {
        self.topics.iter().map(|(_, p)| p.len()).sum()
    }

    /// Finds the caller's index of `topic[partition]`: the next expected one first (answers keep
    /// the request's order), else by search.
    fn matcher(&self) -> Matcher<'_, 'a> {
        Matcher {
            by: self,
            next: (0, 0),
            index: None,
        }
    }
}

struct Matcher<'b, 'a> {
    by: &'b ByTopic<'a>,
    next: (usize, usize),
    index: Option<HashMap<(&'a str, i32), usize>>,
}

impl Matcher<'_, '_> {
    fn find(&mut self, topic: &str, partition: i32) -> Option<usize> {
        let (t, p) = self.next;
        if let Some((name, parts)) = self.by.topics.get(t) {
            if *name == topic {
                if let Some(&(i, id)) = parts.get(p) {
                    if id == partition {
                        self.next = if p + 1 < parts.len() {
                            (t, p + 1)
                        } else {
                            (t + 1, 0)
                        };
                        return Some(i);
                    }
                }
            }
        }
        let by = self.by;
        let index = self.index.get_or_insert_with(|| {
            by.topics
                .iter()
                .flat_map(|(name, parts)| parts.iter().map(move |&(i, p)| ((*name, p), i)))
                .collect()
        });
        index.get(&(topic, partition)).copied()
    }
}

/// One partition's answer: its error code and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionReply {
    /// The partition's error code (0: none).
    pub error: i16,
    /// The offset (-1: none).
    pub offset: i64,
}

/// A batched answer: one reply per asked partition (by the caller's index), the top-level error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replies {
    /// The top-level error code (OffsetFetch v2+; 0 otherwise).
    pub error: i16,
    /// Per caller index: `None` if the answer did not list the partition.
    pub partitions: Vec<Option<PartitionReply>>,
    /// Partitions listed in the answer that were not asked (a broker bug; counted, not used).
    pub unasked: usize,
}

impl Replies {
    /// No reply yet for any of the caller's `n` partitions.
    fn empty(n: usize) -> Self {
        Self {
            error: 0,
            partitions: vec![None; n],
            unasked: 0,
        }
    }
}

/// Writes the grouped partitions as a request's topics array; `partition` writes each
/// partition's fields.
fn write_topics(w: &mut Writer, by: &ByTopic<'_>, mut partition: impl FnMut(&mut Writer, i32)) {
    w.array_len(by.topics.len());
    for (topic, parts) in &by.topics {
        w.str(topic);
        w.array_len(parts.len());
        for &(_, p) in parts {
            partition(w, p);
        }
    }
}

/// Reads an answer's topics array into `out`, matching each partition to the request;
/// `partition` reads one partition's fields (at least `min_partition` bytes) and returns its
/// index and reply.
fn read_topics<'a>(
    r: &mut Reader<'a>,
    by: &ByTopic<'_>,
    out: &mut Replies,
    min_partition: usize,
    mut partition: impl FnMut(&mut Reader<'a>) -> Result<(i32, PartitionReply), DecodeError>,
) -> Result<(), DecodeError> {
    let mut m = by.matcher();
    let topics = r.array_len("topics", 6)?;
    for _ in 0..topics {
        let topic = r.str("topics[].name")?;
        let parts = r.array_len("topics[].partitions", min_partition)?;
        for _ in 0..parts {
            let (index, reply) = partition(r)?;
            match m.find(topic, index).and_then(|i| out.partitions.get_mut(i)) {
                Some(slot) => *slot = Some(reply),
                None => out.unasked += 1,
            }
        }
    }
    Ok(())
}

/// OffsetFetch for `group` on the grouped partitions.
pub(crate) fn offset_fetch_request(
    version: i16,
    correlation_id: i32,
    client_id: &str,
    group: &str,
    by: &ByTopic<'_>,
) -> Vec<u8> {
    let mut w = Writer::request(API_OFFSET_FETCH, version, correlation_id, client_id);
    w.reserve(by.len() * 4 + by.topics.len() * 32);
    w.str(group);
    write_topics(&mut w, by, |w, p| w.i32(p));
    w.finish()
}

/// Decodes an OffsetFetch answer of `version` against the request's partitions (`n` in the
/// caller's list).
pub(crate) fn decode_offset_fetch(
    version: i16,
    body: &[u8],
    by: &ByTopic<'_>,
    n: usize,
) -> Result<Replies, DecodeError> {
    let mut r = Reader::new(body);
    if version >= 3 {
        r.i32("throttle_time_ms")?;
    }
    let mut out = Replies::empty(n);
    // A partition is at least: index 4 + offset 8 + metadata 2 + error 2.
    let min_partition = if version >= 5 { 20 } else { 16 };
    read_topics(&mut r, by, &mut out, min_partition, |r| {
        let partition = r.i32("partitions[].partition_index")?;
        let offset = r.i64("partitions[].committed_offset")?;
        if version >= 5 {
            r.i32("partitions[].committed_leader_epoch")?;
        }
        r.nullable_str("partitions[].metadata")?;
        let error = r.i16("partitions[].error_code")?;
        Ok((partition, PartitionReply { error, offset }))
    })?;
    if version >= 2 {
        out.error = r.i16("error_code")?;
    }
    r.end()?;
    Ok(out)
}

/// ListOffsets for the log-end offsets of the grouped partitions (`read_committed`: the last
/// stable offset, as a `read_committed` consumer sees the log end; librdkafka's default).
pub(crate) fn list_offsets_request(
    version: i16,
    correlation_id: i32,
    client_id: &str,
    by: &ByTopic<'_>,
) -> Vec<u8> {
    let mut w = Writer::request(API_LIST_OFFSETS, version, correlation_id, client_id);
    w.reserve(by.len() * 16 + by.topics.len() * 32);
    w.i32(-1); // replica id: a client
    if version >= 2 {
        w.i8(1); // isolation level: read_committed
    }
    write_topics(&mut w, by, |w, p| {
        w.i32(p);
        if version >= 4 {
            w.i32(-1); // current leader epoch: not known
        }
        w.i64(LATEST);
    });
    w.finish()
}

/// Decodes a ListOffsets answer of `version` against the request's partitions.
pub(crate) fn decode_list_offsets(
    version: i16,
    body: &[u8],
    by: &ByTopic<'_>,
    n: usize,
) -> Result<Replies, DecodeError> {
    let mut r = Reader::new(body);
    if version >= 2 {
        r.i32("throttle_time_ms")?;
    }
    let mut out = Replies::empty(n);
    let min_partition = if version >= 4 { 26 } else { 22 };
    read_topics(&mut r, by, &mut out, min_partition, |r| {
        let partition = r.i32("partitions[].partition_index")?;
        let error = r.i16("partitions[].error_code")?;
        r.i64("partitions[].timestamp")?;
        let offset = r.i64("partitions[].offset")?;
        if version >= 4 {
            r.i32("partitions[].leader_epoch")?;
        }
        Ok((partition, PartitionReply { error, offset }))
    })?;
    r.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn body(frame: &[u8]) -> &[u8] {
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        &frame[4..]
    }

    #[cfg(feature = "kafka-tls")]
    #[test]
    fn sasl_requests_and_answers() {
        let frame = sasl_authenticate_request(1, 9, "rb", b"n,,n=u,r=x");
        let mut r = Reader::new(body(&frame));
        assert_eq!(r.i16("api").unwrap(), API_SASL_AUTHENTICATE);
        assert_eq!(r.i16("version").unwrap(), 1);
        assert_eq!(r.i32("correlation").unwrap(), 9);
        assert_eq!(r.str("client").unwrap(), "rb");
        assert_eq!(r.bytes("auth").unwrap(), b"n,,n=u,r=x");
        r.end().unwrap();

        let mut w = Writer { buf: Vec::new() };
        w.i16(58);
        w.str("Authentication failed");
        w.bytes(b"");
        w.i64(3_600_000);
        let answer = decode_sasl_authenticate(1, &w.buf).unwrap();
        assert_eq!(answer.error, 58);
        assert_eq!(answer.message.as_deref(), Some("Authentication failed"));
        assert_eq!(answer.session_lifetime_ms, 3_600_000);
        // v0 has no lifetime: 8 bytes left over.
        let e = decode_sasl_authenticate(0, &w.buf).unwrap_err();
        assert_eq!(e.field, "end");
        // A byte string longer than the answer names its field.
        let mut w = Writer { buf: Vec::new() };
        w.i16(0);
        w.i16(-1);
        w.i32(1_000);
        let e = decode_sasl_authenticate(0, &w.buf).unwrap_err();
        assert_eq!((e.at, e.field), (4, "auth_bytes"));

        let mut w = Writer { buf: Vec::new() };
        w.i16(33);
        w.array_len(2);
        w.str("PLAIN");
        w.str("SCRAM-SHA-512");
        assert_eq!(
            decode_sasl_handshake(&w.buf).unwrap(),
            (33, vec!["PLAIN".to_owned(), "SCRAM-SHA-512".to_owned()])
        );
    }

    #[test]
    fn request_header_and_body() {
        let by = ByTopic::new([(0, "orders", 0), (1, "orders", 1), (2, "pay", 7)]);
        let frame = offset_fetch_request(5, 42, "rb", "g", &by);
        let b = body(&frame);
        let mut r = Reader::new(b);
        assert_eq!(r.i16("api").unwrap(), API_OFFSET_FETCH);
        assert_eq!(r.i16("version").unwrap(), 5);
        assert_eq!(r.i32("correlation").unwrap(), 42);
        assert_eq!(r.str("client").unwrap(), "rb");
        assert_eq!(r.str("group").unwrap(), "g");
        assert_eq!(r.array_len("topics", 1).unwrap(), 2);
        assert_eq!(r.str("topic").unwrap(), "orders");
        assert_eq!(r.array_len("parts", 4).unwrap(), 2);
        assert_eq!(r.i32("p").unwrap(), 0);
        assert_eq!(r.i32("p").unwrap(), 1);
        assert_eq!(r.str("topic").unwrap(), "pay");
        assert_eq!(r.array_len("parts", 4).unwrap(), 1);
        assert_eq!(r.i32("p").unwrap(), 7);
        r.end().unwrap();
    }

    #[test]
    fn list_offsets_request_per_version() {
        let by = ByTopic::new([(0, "t", 3)]);
        // v1: replica 4, topics 4, "t" 3, partitions 4, partition 4, timestamp 8; v4 adds the
        // isolation level (1) and the current leader epoch (4).
        for (v, len) in [(1, 27), (4, 32)] {
            let frame = list_offsets_request(v, 1, "", &by);
            // header: api 2 + version 2 + correlation 4 + client id 2
            assert_eq!(body(&frame).len(), 10 + len, "v{v}");
        }
    }

    /// An OffsetFetch v5 answer as a broker writes it.
    fn offset_fetch_answer(parts: &[(&str, i32, i64, i16)], top: i16) -> Vec<u8> {
        let mut w = Writer { buf: Vec::new() };
        w.i32(0);
        let by = ByTopic::new(
            parts
                .iter()
                .enumerate()
                .map(|(i, (t, p, _, _))| (i, *t, *p)),
        );
        w.array_len(by.topics.len());
        for (topic, ps) in &by.topics {
            w.str(topic);
            w.array_len(ps.len());
            for &(i, p) in ps {
                w.i32(p);
                w.i64(parts[i].2);
                w.i32(-1);
                w.i16(-1); // null metadata
                w.i16(parts[i].3);
            }
        }
        w.i16(top);
        w.buf
    }

    #[test]
    fn offset_fetch_answer_aligned_with_the_request_whatever_its_order() {
        let by = ByTopic::new([(0, "a", 0), (1, "b", 0), (2, "a", 1)]);
        // The answer lists a[1] before a[0]: matched by search.
        let ans = offset_fetch_answer(&[("a", 1, 9, 0), ("a", 0, -1, 0), ("b", 0, 5, 3)], 0);
        let got = decode_offset_fetch(5, &ans, &by, 3).unwrap();
        assert_eq!(got.error, 0);
        assert_eq!(got.unasked, 0);
        assert_eq!(
            got.partitions,
            vec![
                Some(PartitionReply {
                    error: 0,
                    offset: -1
                }),
                Some(PartitionReply {
                    error: 3,
                    offset: 5
                }),
                Some(PartitionReply {
                    error: 0,
                    offset: 9
                }),
            ]
        );
    }

    #[test]
    fn missing_and_unasked_partitions_are_told() {
        let by = ByTopic::new([(0, "a", 0), (1, "a", 1)]);
        let ans = offset_fetch_answer(&[("a", 0, 1, 0), ("z", 4, 1, 0)], 30);
        let got = decode_offset_fetch(5, &ans, &by, 2).unwrap();
        assert_eq!(got.error, 30);
        assert_eq!(got.partitions[1], None);
        assert_eq!(got.unasked, 1);
    }

    #[test]
    fn truncated_answers_name_the_byte_and_field() {
        let by = ByTopic::new([(0, "a", 0)]);
        let ans = offset_fetch_answer(&[("a", 0, 1, 0)], 0);
        for cut in 0..ans.len() {
            let e = decode_offset_fetch(5, &ans[..cut], &by, 1).unwrap_err();
            assert!(e.at <= cut, "{cut}: {e}");
            assert!(!e.field.is_empty());
        }
        let mut long = ans.clone();
        long.push(0);
        let e = decode_offset_fetch(5, &long, &by, 1).unwrap_err();
        assert_eq!((e.at, e.field), (ans.len(), "end"));
    }

    #[test]
    fn a_huge_array_count_is_refused_before_allocating() {
        let mut w = Writer { buf: Vec::new() };
        w.i32(0);
        w.i32(i32::MAX);
        let by = ByTopic::new([(0, "a", 0)]);
        let e = decode_list_offsets(4, &w.buf, &by, 1).unwrap_err();
        assert_eq!(e.field, "topics");
        assert!(e.what.contains("2147483647 elements"), "{e}");
    }

    #[test]
    fn list_offsets_answer() {
        let mut w = Writer { buf: Vec::new() };
        w.i32(0); // throttle
        w.array_len(1);
        w.str("t");
        w.array_len(2);
        for (p, err, off) in [(0, 0i16, 120i64), (1, 6, -1)] {
            w.i32(p);
            w.i16(err);
            w.i64(-1);
            w.i64(off);
            w.i32(3);
        }
        let by = ByTopic::new([(5, "t", 1), (9, "t", 0)]);
        let got = decode_list_offsets(4, &w.buf, &by, 10).unwrap();
        assert_eq!(
            got.partitions[9],
            Some(PartitionReply {
                error: 0,
                offset: 120
            })
        );
        assert_eq!(
            got.partitions[5],
            Some(PartitionReply {
                error: 6,
                offset: -1
            })
        );
        assert!(leader_moved(6));
    }

    #[test]
    fn api_versions_pick_the_highest_common_version() {
        let mut w = Writer { buf: Vec::new() };
        w.i16(0);
        w.array_len(3);
        for (k, lo, hi) in [
            (API_OFFSET_FETCH, 1, 9),
            (API_LIST_OFFSETS, 1, 3),
            (API_FIND_COORDINATOR, 3, 6),
        ] {
            w.i16(k);
            w.i16(lo);
            w.i16(hi);
        }
        let v = decode_api_versions(&w.buf).unwrap().unwrap();
        assert_eq!(v.pick(API_OFFSET_FETCH), Some(5));
        assert_eq!(v.pick(API_LIST_OFFSETS), Some(3));
        // The broker accepts only flexible FindCoordinator versions: none in common.
        assert_eq!(v.pick(API_FIND_COORDINATOR), None);
        assert_eq!(v.describe(API_FIND_COORDINATOR), "v3–v6");
    }

    #[test]
    fn find_coordinator_answer() {
        let mut w = Writer { buf: Vec::new() };
        w.i32(0);
        w.i16(0);
        w.i16(-1);
        w.i32(2);
        w.str("127.0.0.2");
        w.i32(9092);
        let c = decode_find_coordinator(2, &w.buf).unwrap();
        assert_eq!((c.node_id, c.host.as_str(), c.port), (2, "127.0.0.2", 9092));
        assert!(decode_find_coordinator(0, &w.buf).is_err());
    }

    #[test]
    fn error_names() {
        assert_eq!(error_name(16), "NOT_COORDINATOR (Kafka error 16)");
        assert_eq!(error_name(999), "Kafka error 999");
        assert!(coordinator_moved(15) && not_authorized(30) && !leader_moved(3));
    }

    /// Cases per property: `RB_FUZZ_CASES` when set (the long fuzz run, see `tests/fuzz.rs`),
    /// else 2,000.
    fn cases() -> u32 {
        std::env::var("RB_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), v in 0i16..6) {
            let by = ByTopic::new([(0, "a", 0), (1, "a", 1)]);
            let _ = decode_offset_fetch(v, &bytes, &by, 2);
            let _ = decode_list_offsets(v, &bytes, &by, 2);
            let _ = decode_find_coordinator(v, &bytes);
            let _ = decode_api_versions(&bytes);
            #[cfg(feature = "kafka-tls")]
            {
                let _ = decode_sasl_handshake(&bytes);
                let _ = decode_sasl_authenticate(v % 2, &bytes);
            }
        }

        #[test]
        fn mutated_answers_never_panic(at in 0usize..64, byte in any::<u8>(), cut in 0usize..80) {
            let by = ByTopic::new([(0, "a", 0), (1, "a", 1)]);
            let mut ans = offset_fetch_answer(&[("a", 0, 1, 0), ("a", 1, 7, 0)], 0);
            let i = at % ans.len();
            ans[i] = byte;
            ans.truncate(cut.min(ans.len()));
            let _ = decode_offset_fetch(5, &ans, &by, 2);
        }
    }
}
