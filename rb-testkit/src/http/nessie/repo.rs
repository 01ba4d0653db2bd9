//! The state of a fake Nessie repository: commits, named references, content, health.
//!
//! Every operation here is plain data manipulation behind one mutex; the HTTP layer (`api.rs`)
//! and the scripted helpers on [`super::FakeNessie`] both go through it, so a scripted commit and
//! a REST commit are indistinguishable afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The hash of the "beginning of time" commit every new branch of an empty repository points at
/// (`noAncestorHash` in `GET /api/v2/config`; the SHA-256 of nothing, as the real server uses).
pub const NO_ANCESTOR_HASH: &str =
    "2e1cfa82b035c26cbbbdae632cea070514eb8b773f616aaeaf668e2f0be8f10d";

/// A content key: its elements (`["db", "orders"]` for `db.orders`).
pub(crate) type Key = Vec<String>;

/// Kind of a named reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    /// A branch: movable, committable.
    Branch,
    /// A tag: movable by assignment only.
    Tag,
}

impl RefKind {
    /// The wire name (`BRANCH` / `TAG`).
    pub fn wire(self) -> &'static str {
        match self {
            RefKind::Branch => "BRANCH",
            RefKind::Tag => "TAG",
        }
    }

    /// Parse the wire name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "BRANCH" => Some(RefKind::Branch),
            "TAG" => Some(RefKind::Tag),
            _ => None,
        }
    }
}

/// One conflict, as Nessie reports it in `errorDetails.conflicts[]` and merge `details[].conflict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `conflictType` (`VALUE_DIFFERS`, `KEY_EXISTS`, `UNEXPECTED_HASH`, …).
    pub conflict_type: String,
    /// The content key concerned, if any.
    pub key: Option<Vec<String>>,
    /// Human-readable message.
    pub message: String,
}

impl Conflict {
    fn new(conflict_type: &str, key: Option<&Key>, message: String) -> Self {
        Self {
            conflict_type: conflict_type.to_string(),
            key: key.cloned(),
            message,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "conflictType": self.conflict_type,
            "key": self.key.as_ref().map(|k| key_json(k)),
            "message": self.message,
        })
    }
}

/// An error of the fake Nessie, shaped like the real `NessieError` body (and returned by the
/// scripted helpers on [`super::FakeNessie`] when the same request would fail over REST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NessieFakeError {
    /// HTTP status (400, 404, 409, …).
    pub status: u16,
    /// Nessie `errorCode` (`BAD_REQUEST`, `REFERENCE_NOT_FOUND`, `REFERENCE_CONFLICT`, …).
    pub error_code: String,
    /// The message, worded as the real server words it.
    pub message: String,
    /// Conflicts (for `REFERENCE_CONFLICT`), sent as `errorDetails` to spec-2 clients.
    pub conflicts: Vec<Conflict>,
}

impl fmt::Display for NessieFakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Nessie {} {}: {}",
            self.status, self.error_code, self.message
        )
    }
}

impl std::error::Error for NessieFakeError {}

impl NessieFakeError {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_code: code.to_string(),
            message: message.into(),
            conflicts: Vec::new(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BAD_REQUEST", message)
    }

    pub(crate) fn ref_not_found(message: impl Into<String>) -> Self {
        Self::new(404, "REFERENCE_NOT_FOUND", message)
    }

    pub(crate) fn conflict(message: impl Into<String>, conflicts: Vec<Conflict>) -> Self {
        Self {
            conflicts,
            ..Self::new(409, "REFERENCE_CONFLICT", message)
        }
    }

    /// The HTTP reason phrase for [`NessieFakeError::status`].
    pub fn reason(&self) -> &'static str {
        match self.status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            409 => "Conflict",
            415 => "Unsupported Media Type",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }

    /// The body the real server sends: `errorDetails` only when the client announced
    /// `Nessie-Client-Spec: 2` (or higher) and there are conflicts to report.
    pub fn to_json(&self, client_spec_2: bool) -> Value {
        let mut body = json!({
            "status": self.status,
            "reason": self.reason(),
            "message": self.message,
            "errorCode": self.error_code,
            "serverStackTrace": null,
        });
        if client_spec_2 && !self.conflicts.is_empty() {
            body["errorDetails"] = json!({
                "type": "REFERENCE_CONFLICTS",
                "conflicts": self.conflicts.iter().map(Conflict::to_json).collect::<Vec<_>>(),
            });
        }
        body
    }
}

type Result<T> = std::result::Result<T, NessieFakeError>;

pub(crate) fn key_json(key: &[String]) -> Value {
    json!({ "elements": key })
}

pub(crate) fn key_str(key: &[String]) -> String {
    key.join(".")
}

/// `db.orders` → `["db", "orders"]`; elements may carry a `.` encoded as U+001D (the path encoding
/// of the real client).
pub(crate) fn parse_key(s: &str) -> Result<Key> {
    let key: Key = s.split('.').map(|e| e.replace('\u{1D}', ".")).collect();
    if s.is_empty() || key.iter().any(String::is_empty) {
        return Err(NessieFakeError::bad_request(format!(
            "Content key '{s}' must not contain an empty element."
        )));
    }
    Ok(key)
}

pub(crate) fn key_from_json(v: &Value) -> Result<Key> {
    let elements = v.get("elements").and_then(Value::as_array).ok_or_else(|| {
        NessieFakeError::bad_request(format!("content key must have 'elements': {v}"))
    })?;
    let key: Option<Key> = elements
        .iter()
        .map(|e| e.as_str().map(str::to_string))
        .collect();
    match key {
        Some(k) if !k.is_empty() && k.iter().all(|e| !e.is_empty()) => Ok(k),
        _ => Err(NessieFakeError::bad_request(format!(
            "invalid content key: {v}"
        ))),
    }
}

/// ISO-8601 instant from epoch milliseconds, like Java's `DateTimeFormatter.ISO_INSTANT`.
pub(crate) fn iso(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

fn now_ms() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Reference syntax
// ---------------------------------------------------------------------------------------------

/// One relative step after a hash: `~N`, `^N` or `*timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rel {
    Ancestor(usize),
    Parent(usize),
    Timestamp(i64),
}

/// A parsed `{ref}` path element: `name`, `-`, `name@hash`, `@hash`, `name@`, plus relative steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefSpec {
    pub name: Option<String>,
    pub hash: Option<String>,
    pub rel: Vec<Rel>,
}

/// What Nessie 0.99 answers for a `{ref}` path element it cannot parse (after the
/// `<operation>.params.ref: ` prefix the API layer adds).
pub(crate) const REF_NAME_MESSAGE: &str =
    "Reference name must start with a letter, followed by letters, \
digits, one of the ./_- characters, not end with a slash or dot, not contain '..'";

pub(crate) fn valid_ref_name(name: &str) -> bool {
    if name == "-" {
        return true;
    }
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_' | '-'))
    {
        return false;
    }
    !(name.contains("..") || (name.len() > 1 && (name.ends_with('.') || name.ends_with('/'))))
}

fn valid_hash(h: &str) -> bool {
    (8..=64).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit())
}

impl RefSpec {
    /// Parse the `{ref}` path element (already percent-decoded).
    pub(crate) fn parse(s: &str) -> Result<RefSpec> {
        let bad = || NessieFakeError::bad_request(REF_NAME_MESSAGE);
        let (name_part, after) = match s.find('@') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (&s[..s.find(['~', '^', '*']).unwrap_or(s.len())], None),
        };
        let name = if name_part.is_empty() {
            None
        } else if valid_ref_name(name_part) {
            Some(name_part.to_string())
        } else {
            return Err(bad());
        };
        let (hash, rel_str) = match after {
            Some(a) => {
                let end = a.find(['~', '^', '*']).unwrap_or(a.len());
                let h = &a[..end];
                if !h.is_empty() && !valid_hash(h) {
                    return Err(bad());
                }
                ((!h.is_empty()).then(|| h.to_ascii_lowercase()), &a[end..])
            }
            None => (None, s.get(name_part.len()..).unwrap_or("")),
        };
        if name.is_none() && hash.is_none() {
            return Err(bad());
        }
        let rel = parse_relative(rel_str).ok_or_else(bad)?;
        Ok(RefSpec { name, hash, rel })
    }
}

fn parse_relative(mut s: &str) -> Option<Vec<Rel>> {
    let mut out = Vec::new();
    while let Some(op) = s.chars().next() {
        let rest = &s[1..];
        let end = rest.find(['~', '^', '*']).unwrap_or(rest.len());
        let arg = &rest[..end];
        let step = match op {
            '~' => Rel::Ancestor(arg.parse().ok()?),
            '^' => Rel::Parent(arg.parse().ok()?),
            '*' => {
                if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_digit()) {
                    Rel::Timestamp(arg.parse().ok()?)
                } else {
                    let t = OffsetDateTime::parse(arg, &Rfc3339).ok()?;
                    Rel::Timestamp(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?)
                }
            }
            _ => return None,
        };
        out.push(step);
        s = &rest[end..];
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Commits and the repository
// ---------------------------------------------------------------------------------------------

/// Commit metadata as stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    pub committer: String,
    pub authors: Vec<String>,
    pub signed_off_by: Vec<String>,
    pub message: String,
    pub commit_time: i64,
    pub author_time: i64,
    pub properties: BTreeMap<String, Vec<String>>,
}

impl Meta {
    /// Read the client-supplied part of a `commitMeta` object (V1 or V2 field names).
    pub(crate) fn from_request(v: Option<&Value>) -> Meta {
        let mut m = Meta::default();
        let Some(v) = v else { return m };
        let strings = |field: &str| -> Vec<String> {
            match v.get(field) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        m.message = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        m.authors = strings("authors");
        if m.authors.is_empty() {
            m.authors = strings("author");
        }
        m.signed_off_by = strings("allSignedOffBy");
        if m.signed_off_by.is_empty() {
            m.signed_off_by = strings("signedOffBy");
        }
        if let Some(Value::Object(p)) = v.get("allProperties") {
            for (k, vals) in p {
                if let Value::Array(a) = vals {
                    m.properties.insert(
                        k.clone(),
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect(),
                    );
                }
            }
        } else if let Some(Value::Object(p)) = v.get("properties") {
            for (k, val) in p {
                if let Some(s) = val.as_str() {
                    m.properties.insert(k.clone(), vec![s.to_string()]);
                }
            }
        }
        if let Some(t) = v.get("authorTime").and_then(Value::as_str) {
            if let Ok(t) = OffsetDateTime::parse(t, &Rfc3339) {
                m.author_time = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            }
        }
        m
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Commit {
    pub hash: String,
    /// First the direct parent, then a merge parent if any. Empty only for the root.
    pub parents: Vec<String>,
    pub meta: Meta,
    /// The operations (wire JSON), for `fetch=ALL` logs.
    pub operations: Vec<Value>,
    /// The full content tree after this commit.
    pub contents: BTreeMap<Key, Value>,
}

impl Commit {
    /// The V2 `CommitMeta` JSON.
    pub(crate) fn meta_json(&self) -> Value {
        let mut m = json!({
            "hash": self.hash,
            "committer": self.meta.committer,
            "authors": self.meta.authors,
            "allSignedOffBy": self.meta.signed_off_by,
            "message": self.meta.message,
            "commitTime": iso(self.meta.commit_time),
            "authorTime": iso(self.meta.author_time),
        });
        if !self.meta.properties.is_empty() {
            m["allProperties"] = json!(self.meta.properties);
        }
        if !self.parents.is_empty() {
            m["parentCommitHashes"] = json!(self.parents);
        }
        m
    }
}

/// A health check of the management port.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub name: String,
    pub up: bool,
    pub liveness: bool,
    pub readiness: bool,
}

/// Outcome of a merge that did not fail with an error.
#[derive(Debug, Clone)]
pub(crate) struct MergeOutcome {
    pub was_applied: bool,
    pub was_successful: bool,
    /// `None` when nothing was written (dry run, conflict as result).
    pub resultant_target_hash: Option<String>,
    /// The merge base; `None` for a transplant.
    pub common_ancestor: Option<String>,
    pub target_branch: String,
    pub effective_target_hash: String,
    pub expected_hash: String,
    pub details: Vec<(Key, String, Option<Conflict>)>,
}

impl MergeOutcome {
    pub(crate) fn to_json(&self) -> Value {
        let details: Vec<Value> = self
            .details
            .iter()
            .map(|(k, mode, c)| {
                let mut d = json!({ "key": key_json(k), "mergeBehavior": mode });
                if let Some(c) = c {
                    d["conflict"] = c.to_json();
                }
                d
            })
            .collect();
        json!({
            "wasApplied": self.was_applied,
            "wasSuccessful": self.was_successful,
            "resultantTargetHash": self.resultant_target_hash,
            "commonAncestor": self.common_ancestor,
            "targetBranch": self.target_branch,
            "effectiveTargetHash": self.effective_target_hash,
            "expectedHash": self.expected_hash,
            "details": details,
        })
    }
}

/// A merge request, as read from the body.
#[derive(Debug, Clone, Default)]
pub(crate) struct MergeRequest {
    pub from_ref_name: String,
    pub from_hash: String,
    pub meta: Meta,
    pub default_mode: String,
    pub key_modes: HashMap<Key, String>,
    pub dry_run: bool,
    pub return_conflict_as_result: bool,
}

/// What a reference resolved to.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// `(name, kind)` for a named reference; `None` for a detached hash.
    pub named: Option<(String, RefKind)>,
    pub hash: String,
}

impl Resolved {
    /// The `Reference` JSON (`effectiveReference`).
    pub(crate) fn reference_json(&self) -> Value {
        match &self.named {
            Some((name, kind)) => json!({ "type": kind.wire(), "name": name, "hash": self.hash }),
            None => json!({ "type": "DETACHED", "hash": self.hash }),
        }
    }
}

/// One operation of a commit request.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put { key: Key, content: Value },
    Delete { key: Key },
    Unchanged,
}

#[derive(Debug)]
pub(crate) struct Repo {
    pub commits: HashMap<String, Commit>,
    pub refs: BTreeMap<String, (RefKind, String)>,
    pub default_branch: String,
    pub created_ms: i64,
    last_ms: i64,
    seq: u64,
    pub checks: Vec<Check>,
    pub committer: String,
}

impl Repo {
    pub(crate) fn new(default_branch: &str) -> Repo {
        let created = now_ms();
        let root = Commit {
            hash: NO_ANCESTOR_HASH.to_string(),
            parents: Vec::new(),
            meta: Meta {
                commit_time: created,
                author_time: created,
                ..Meta::default()
            },
            operations: Vec::new(),
            contents: BTreeMap::new(),
        };
        let mut commits = HashMap::new();
        commits.insert(root.hash.clone(), root);
        let mut refs = BTreeMap::new();
        refs.insert(
            default_branch.to_string(),
            (RefKind::Branch, NO_ANCESTOR_HASH.to_string()),
        );
        Repo {
            commits,
            refs,
            default_branch: default_branch.to_string(),
            created_ms: created,
            last_ms: created,
            seq: 0,
            // The checks a real Nessie 0.99 reports (all readiness checks; no liveness check).
            checks: [
                "MongoDB connection health check",
                "Database connections health check",
                "Warehouses Object Stores",
            ]
            .iter()
            .map(|name| Check {
                name: (*name).to_string(),
                up: true,
                liveness: false,
                readiness: true,
            })
            .collect(),
            committer: String::new(),
        }
    }

    fn next_time(&mut self) -> i64 {
        let t = now_ms().max(self.last_ms + 1);
        self.last_ms = t;
        t
    }

    fn new_hash(&mut self, parents: &[String], meta: &Meta, ops: &[Value]) -> String {
        self.seq += 1;
        let mut h = Sha256::new();
        for p in parents {
            h.update(p.as_bytes());
        }
        h.update(self.seq.to_be_bytes());
        h.update(meta.message.as_bytes());
        h.update(meta.commit_time.to_be_bytes());
        for op in ops {
            h.update(op.to_string().as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn commit(&self, hash: &str) -> Result<&Commit> {
        self.commits
            .get(hash)
            .ok_or_else(|| NessieFakeError::ref_not_found(format!("Commit '{hash}' not found")))
    }

    /// Full hash for a (possibly abbreviated) hash.
    fn full_hash(&self, h: &str) -> Result<String> {
        if self.commits.contains_key(h) {
            return Ok(h.to_string());
        }
        let mut found = self.commits.keys().filter(|k| k.starts_with(h));
        match (found.next(), found.next()) {
            (Some(one), None) => Ok(one.clone()),
            _ => Err(NessieFakeError::ref_not_found(format!(
                "Commit '{h}' not found"
            ))),
        }
    }

    pub(crate) fn named(&self, name: &str) -> Result<(String, RefKind, String)> {
        let name = if name == "-" {
            self.default_branch.as_str()
        } else {
            name
        };
        self.refs
            .get(name)
            .map(|(k, h)| (name.to_string(), *k, h.clone()))
            .ok_or_else(|| {
                NessieFakeError::ref_not_found(format!("Named reference '{name}' not found"))
            })
    }

    /// The first-parent chain from `hash` back to (excluding) the root.
    pub(crate) fn log(&self, hash: &str) -> Vec<&Commit> {
        let mut out = Vec::new();
        let mut cur = self.commits.get(hash);
        while let Some(c) = cur {
            if c.parents.is_empty() {
                break;
            }
            out.push(c);
            cur = c.parents.first().and_then(|p| self.commits.get(p));
        }
        out
    }

    /// Every commit reachable from `hash` (all parents), including itself and the root.
    fn ancestors(&self, hash: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([hash.to_string()]);
        while let Some(h) = queue.pop_front() {
            if seen.insert(h.clone()) {
                if let Some(c) = self.commits.get(&h) {
                    queue.extend(c.parents.iter().cloned());
                }
            }
        }
        seen
    }

    fn merge_base(&self, a: &str, b: &str) -> String {
        let of_a = self.ancestors(a);
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([b.to_string()]);
        while let Some(h) = queue.pop_front() {
            if of_a.contains(&h) {
                return h;
            }
            if seen.insert(h.clone()) {
                if let Some(c) = self.commits.get(&h) {
                    queue.extend(c.parents.iter().cloned());
                }
            }
        }
        NO_ANCESTOR_HASH.to_string()
    }

    /// Resolve a parsed reference for reading.
    pub(crate) fn resolve(&self, spec: &RefSpec) -> Result<Resolved> {
        let (named, mut hash) = match &spec.name {
            Some(name) => {
                let (name, kind, head) = self.named(name)?;
                let hash = match &spec.hash {
                    Some(h) => {
                        let full = self.full_hash(h)?;
                        if !self.ancestors(&head).contains(&full) {
                            return Err(NessieFakeError::ref_not_found(format!(
                                "Could not find commit '{h}' in reference '{name}'."
                            )));
                        }
                        full
                    }
                    None => head,
                };
                (Some((name, kind)), hash)
            }
            None => {
                let h = spec.hash.as_deref().unwrap_or_default();
                (None, self.full_hash(h)?)
            }
        };
        for step in &spec.rel {
            hash = match step {
                Rel::Ancestor(n) => {
                    let mut cur = hash.clone();
                    for _ in 0..*n {
                        cur = self.commit(&cur)?.parents.first().cloned().ok_or_else(|| {
                            NessieFakeError::ref_not_found(format!("Commit '{hash}~{n}' not found"))
                        })?;
                    }
                    cur
                }
                Rel::Parent(n) => {
                    let c = self.commit(&hash)?;
                    n.checked_sub(1)
                        .and_then(|i| c.parents.get(i))
                        .cloned()
                        .ok_or_else(|| {
                            NessieFakeError::ref_not_found(format!("Commit '{hash}^{n}' not found"))
                        })?
                }
                Rel::Timestamp(ts) => self
                    .log(&hash)
                    .into_iter()
                    .find(|c| c.meta.commit_time <= *ts)
                    .map(|c| c.hash.clone())
                    .ok_or_else(|| {
                        NessieFakeError::ref_not_found(format!(
                            "Commit at or before {} not found",
                            iso(*ts)
                        ))
                    })?,
            };
        }
        Ok(Resolved { named, hash })
    }

    /// Resolve a reference for a write: named, with an explicit hash and no relative part.
    /// Returns `(name, kind, expected full hash, current head)`.
    pub(crate) fn resolve_for_write(
        &self,
        spec: &RefSpec,
    ) -> Result<(String, RefKind, String, String)> {
        let Some(name) = &spec.name else {
            return Err(NessieFakeError::bad_request(
                "A reference name must be provided.",
            ));
        };
        let Some(hash) = &spec.hash else {
            return Err(NessieFakeError::bad_request(
                "Expected hash must be provided.",
            ));
        };
        if !spec.rel.is_empty() {
            return Err(NessieFakeError::bad_request(format!(
                "Relative hash not allowed in commit, merge or transplant operations: {hash}"
            )));
        }
        let (name, kind, head) = self.named(name)?;
        let expected = self.full_hash(hash).unwrap_or_else(|_| hash.clone());
        Ok((name, kind, expected, head))
    }

    fn ensure_on_branch(&self, name: &str, head: &str, expected: &str) -> Result<()> {
        if self.ancestors(head).contains(expected) {
            Ok(())
        } else {
            Err(NessieFakeError::ref_not_found(format!(
                "Could not find commit '{expected}' in reference '{name}'."
            )))
        }
    }

    /// Check that `hash` (possibly abbreviated) is on the named reference `name`.
    pub(crate) fn hash_on_ref(&self, name: &str, hash: &str) -> Result<()> {
        let (name, _, head) = self.named(name)?;
        let full = self.full_hash(hash)?;
        self.ensure_on_branch(&name, &head, &full)
    }

    pub(crate) fn create_ref(
        &mut self,
        name: &str,
        kind: RefKind,
        source: Option<&str>,
        hash: Option<&str>,
    ) -> Result<String> {
        if !valid_ref_name(name) || name == "-" {
            return Err(NessieFakeError::bad_request(format!(
                "Reference name must start with a letter, followed by letters, digits, one of the ./_- characters, \
                 not end with a slash or dot, not contain '..' - but was: {name}"
            )));
        }
        if valid_hash(name) || matches!(name.to_ascii_uppercase().as_str(), "HEAD" | "DETACHED") {
            return Err(NessieFakeError::bad_request(format!(
                "Reference name mut not be HEAD, DETACHED or a potential commit ID representation. - but was {name}"
            )));
        }
        let Some(hash) = hash else {
            return Err(NessieFakeError::bad_request(
                "Target hash must be provided.",
            ));
        };
        let target = self.full_hash(hash)?;
        if let Some(src) = source {
            let (src, _, head) = self.named(src)?;
            self.ensure_on_branch(&src, &head, &target)?;
        }
        if self.refs.contains_key(name) {
            return Err(NessieFakeError::new(
                409,
                "REFERENCE_ALREADY_EXISTS",
                format!("Named reference '{name}' already exists."),
            ));
        }
        self.refs.insert(name.to_string(), (kind, target.clone()));
        Ok(target)
    }

    fn unexpected_hash(name: &str, expected: &str, head: &str) -> NessieFakeError {
        let msg = format!(
            "named-reference '{name}' is not at expected hash '{expected}', but at '{head}'"
        );
        NessieFakeError::conflict(
            msg.clone(),
            vec![Conflict::new("UNEXPECTED_HASH", None, msg)],
        )
    }

    fn check_type(name: &str, kind: RefKind, wanted: Option<RefKind>) -> Result<()> {
        match wanted {
            Some(w) if w != kind => Err(NessieFakeError::ref_not_found(format!(
                "Named reference '{name}' is not a {}",
                w.wire().to_ascii_lowercase()
            ))),
            _ => Ok(()),
        }
    }

    /// Assign `spec` (name@expected) to `target`. Returns the new state.
    pub(crate) fn assign(
        &mut self,
        spec: &RefSpec,
        wanted: Option<RefKind>,
        target: &str,
    ) -> Result<Resolved> {
        let (name, kind, expected, head) = self.resolve_for_write(spec)?;
        Self::check_type(&name, kind, wanted)?;
        let target = self.full_hash(target)?;
        if expected != head {
            return Err(Self::unexpected_hash(&name, &expected, &head));
        }
        self.refs.insert(name.clone(), (kind, target.clone()));
        Ok(Resolved {
            named: Some((name, kind)),
            hash: target,
        })
    }

    /// Delete `spec` (name@expected). Returns the deleted reference.
    pub(crate) fn delete(&mut self, spec: &RefSpec, wanted: Option<RefKind>) -> Result<Resolved> {
        let (name, kind, expected, head) = self.resolve_for_write(spec)?;
        Self::check_type(&name, kind, wanted)?;
        if name == self.default_branch {
            return Err(NessieFakeError::bad_request(format!(
                "Default branch '{name}' cannot be deleted."
            )));
        }
        if expected != head {
            return Err(Self::unexpected_hash(&name, &expected, &head));
        }
        self.refs.remove(&name);
        Ok(Resolved {
            named: Some((name, kind)),
            hash: head,
        })
    }

    fn branch_for_write(&self, spec: &RefSpec) -> Result<(String, String, String)> {
        let (name, kind, expected, head) = self.resolve_for_write(spec)?;
        if kind != RefKind::Branch {
            return Err(NessieFakeError::bad_request(format!(
                "Reference '{name}' is a tag; only branches can be committed to."
            )));
        }
        self.ensure_on_branch(&name, &head, &expected)?;
        Ok((name, expected, head))
    }

    /// Keys whose value differs between two commits.
    fn changed_keys(&self, from: &str, to: &str) -> Result<BTreeMap<Key, Option<Value>>> {
        let a = &self.commit(from)?.contents;
        let b = &self.commit(to)?.contents;
        let mut out = BTreeMap::new();
        for (k, v) in b {
            if a.get(k) != Some(v) {
                out.insert(k.clone(), Some(v.clone()));
            }
        }
        for k in a.keys() {
            if !b.contains_key(k) {
                out.insert(k.clone(), None);
            }
        }
        Ok(out)
    }

    /// Commit `ops` on `spec` (branch@expected). Returns the new HEAD and the added content ids.
    pub(crate) fn commit_ops(
        &mut self,
        spec: &RefSpec,
        mut meta: Meta,
        ops: Vec<Op>,
    ) -> Result<(Resolved, Vec<(Key, String)>)> {
        let (name, expected, head) = self.branch_for_write(spec)?;
        if meta.message.trim().is_empty() {
            return Err(NessieFakeError::bad_request(
                "commitMeta.message: must not be blank",
            ));
        }
        // Operations are validated against the state at the expected hash (a PUT that updates a
        // key without its content ID is a 400), and checked for conflicts against HEAD: a key
        // touched since the expected hash conflicts (409).
        let at_expected = self.commit(&expected)?.contents.clone();
        let mut contents = self.commit(&head)?.contents.clone();
        let mut conflicts = Vec::new();
        let mut added = Vec::new();
        let mut wire_ops = Vec::new();
        for op in ops {
            let (key, put) = match op {
                Op::Put { key, content } => (key, Some(content)),
                Op::Delete { key } => (key, None),
                Op::Unchanged => continue,
            };
            let k = key_str(&key);
            let before = at_expected.get(&key);
            let now = contents.get(&key);
            let conflict = |t: &str, m: String| Conflict::new(t, Some(&key), m);
            match put {
                Some(mut content) => {
                    let given_id = content
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    match (before, &given_id) {
                        (Some(_), None) => {
                            return Err(NessieFakeError::bad_request(format!(
                                "New value to update existing key '{k}' has no content ID"
                            )));
                        }
                        (None, None) if now.is_some() => {
                            conflicts
                                .push(conflict("KEY_EXISTS", format!("key '{k}' already exists")));
                            continue;
                        }
                        (None, None) => {
                            let id = uuid::Uuid::new_v4().to_string();
                            content["id"] = json!(id);
                            added.push((key.clone(), id));
                        }
                        (None, Some(_)) => {
                            conflicts.push(conflict(
                                "KEY_DOES_NOT_EXIST",
                                format!("key '{k}' does not exist"),
                            ));
                            continue;
                        }
                        (Some(old), Some(id)) => {
                            if old.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                                conflicts.push(conflict(
                                    "CONTENT_ID_DIFFERS",
                                    format!("content IDs of existing and expected content for key '{k}' are different"),
                                ));
                                continue;
                            }
                            if now != Some(old) {
                                conflicts.push(conflict(
                                    "VALUE_DIFFERS",
                                    format!("values of existing and expected content for key '{k}' are different"),
                                ));
                                continue;
                            }
                            if old.get("type") != content.get("type") {
                                conflicts.push(conflict(
                                    "PAYLOAD_DIFFERS",
                                    format!("payload of existing and expected content for key '{k}' are different"),
                                ));
                                continue;
                            }
                        }
                    }
                    wire_ops
                        .push(json!({ "type": "PUT", "key": key_json(&key), "content": content }));
                    contents.insert(key, content);
                }
                None => {
                    if now.is_none() {
                        conflicts.push(conflict(
                            "KEY_DOES_NOT_EXIST",
                            format!("key '{k}' does not exist"),
                        ));
                        continue;
                    }
                    if now != before {
                        conflicts.push(conflict(
                            "VALUE_DIFFERS",
                            format!("values of existing and expected content for key '{k}' are different"),
                        ));
                        continue;
                    }
                    contents.remove(&key);
                    wire_ops.push(json!({ "type": "DELETE", "key": key_json(&key) }));
                }
            }
        }
        conflicts.extend(namespace_conflicts(&contents, &wire_ops));
        if !conflicts.is_empty() {
            return Err(NessieFakeError::conflict(
                commit_conflict_message(&conflicts),
                conflicts,
            ));
        }
        if meta.authors.is_empty() {
            // The real server records the committer as the author when the client names none.
            meta.authors = vec![self.committer.clone()];
        }
        let t = self.next_time();
        meta.commit_time = t;
        if meta.author_time == 0 {
            meta.author_time = t;
        }
        meta.committer = self.committer.clone();
        let parents = vec![head];
        let hash = self.new_hash(&parents, &meta, &wire_ops);
        self.commits.insert(
            hash.clone(),
            Commit {
                hash: hash.clone(),
                parents,
                meta,
                operations: wire_ops,
                contents,
            },
        );
        self.refs
            .insert(name.clone(), (RefKind::Branch, hash.clone()));
        Ok((
            Resolved {
                named: Some((name, RefKind::Branch)),
                hash,
            },
            added,
        ))
    }

    /// Merge `req.from_ref_name@req.from_hash` into `spec` (branch@expected).
    pub(crate) fn merge(&mut self, spec: &RefSpec, req: MergeRequest) -> Result<MergeOutcome> {
        let (target, expected, head) = self.branch_for_write(spec)?;
        if req.from_ref_name.is_empty() {
            return Err(NessieFakeError::bad_request("fromRefName must not be null"));
        }
        if req.from_hash.is_empty() {
            return Err(NessieFakeError::bad_request(
                "Source hash must be provided.",
            ));
        }
        let (from_name, _, from_head) = self.named(&req.from_ref_name)?;
        let from = self.full_hash(&req.from_hash)?;
        self.ensure_on_branch(&from_name, &from_head, &from)?;
        let base = self.merge_base(&head, &from);
        let mut outcome = MergeOutcome {
            was_applied: false,
            was_successful: true,
            resultant_target_hash: Some(head.clone()),
            common_ancestor: Some(base.clone()),
            target_branch: target.clone(),
            effective_target_hash: head.clone(),
            expected_hash: expected.clone(),
            details: Vec::new(),
        };
        if base == from {
            // Nothing on the source that the target does not already have.
            return Ok(outcome);
        }
        let source_changes = self.changed_keys(&base, &from)?;
        let target_changes = self.changed_keys(&base, &head)?;
        let base_contents = self.commit(&base)?.contents.clone();
        let mut contents = self.commit(&head)?.contents.clone();
        let mut conflicts = Vec::new();
        let mut wire_ops = Vec::new();
        for (key, value) in source_changes {
            let mode = req
                .key_modes
                .get(&key)
                .cloned()
                .unwrap_or_else(|| req.default_mode.clone());
            let mut conflict = None;
            match mode.as_str() {
                "DROP" => {}
                m => {
                    let clash = target_changes.get(&key).is_some_and(|t| *t != value);
                    if clash && m != "FORCE" {
                        let c = if base_contents.contains_key(&key) {
                            Conflict::new(
                                "VALUE_DIFFERS",
                                Some(&key),
                                format!("values of existing and expected content for key '{}' are different", key_str(&key)),
                            )
                        } else {
                            Conflict::new(
                                "KEY_EXISTS",
                                Some(&key),
                                format!("key '{}' already exists", key_str(&key)),
                            )
                        };
                        conflicts.push(c.clone());
                        conflict = Some(c);
                    } else {
                        match &value {
                            Some(v) => {
                                wire_ops.push(
                                    json!({ "type": "PUT", "key": key_json(&key), "content": v }),
                                );
                                contents.insert(key.clone(), v.clone());
                            }
                            None => {
                                wire_ops.push(json!({ "type": "DELETE", "key": key_json(&key) }));
                                contents.remove(&key);
                            }
                        }
                    }
                }
            }
            outcome.details.push((key, mode, conflict));
        }
        if !conflicts.is_empty() {
            if req.return_conflict_as_result {
                outcome.was_successful = false;
                outcome.resultant_target_hash = None;
                return Ok(outcome);
            }
            let msg = format!(
                "The following keys have been changed in conflict: {}",
                conflicts
                    .iter()
                    .filter_map(|c| c.key.as_ref().map(|k| format!("'{}'", key_str(k))))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Err(NessieFakeError::conflict(msg, conflicts));
        }
        if req.dry_run {
            outcome.resultant_target_hash = None;
            return Ok(outcome);
        }
        let mut meta = req.meta;
        if meta.authors.is_empty() {
            meta.authors = vec![self.committer.clone()];
        }
        if meta.message.trim().is_empty() {
            meta.message = format!("Merged {from_name} at {from} into {target} at {expected}");
        }
        let t = self.next_time();
        meta.commit_time = t;
        if meta.author_time == 0 {
            meta.author_time = t;
        }
        meta.committer = self.committer.clone();
        let parents = vec![head, from];
        let hash = self.new_hash(&parents, &meta, &wire_ops);
        self.commits.insert(
            hash.clone(),
            Commit {
                hash: hash.clone(),
                parents,
                meta,
                operations: wire_ops,
                contents,
            },
        );
        self.refs.insert(target, (RefKind::Branch, hash.clone()));
        outcome.was_applied = true;
        outcome.resultant_target_hash = Some(hash);
        Ok(outcome)
    }

    /// Transplant (cherry-pick) `hashes` of `req.from_ref_name`, in order, onto `spec`
    /// (branch@expected): one new commit per transplanted commit, with its commit message, authors
    /// and properties. A key conflicts when the target's value differs from the value the
    /// transplanted commit started from.
    pub(crate) fn transplant(
        &mut self,
        spec: &RefSpec,
        req: MergeRequest,
        hashes: &[String],
    ) -> Result<MergeOutcome> {
        let (target, expected, head) = self.branch_for_write(spec)?;
        if req.from_ref_name.is_empty() {
            return Err(NessieFakeError::bad_request("fromRefName must not be null"));
        }
        if hashes.is_empty() {
            return Err(NessieFakeError::bad_request(
                "hashesToTransplant: size must be between 1 and 2147483647",
            ));
        }
        let (from_name, _, from_head) = self.named(&req.from_ref_name)?;
        let mut full = Vec::new();
        for h in hashes {
            let f = self.full_hash(h)?;
            self.ensure_on_branch(&from_name, &from_head, &f)?;
            full.push(f);
        }
        let mut contents = self.commit(&head)?.contents.clone();
        let mut details: BTreeMap<Key, (String, Option<Conflict>)> = BTreeMap::new();
        let mut conflicts = Vec::new();
        let mut planned = Vec::new();
        for h in &full {
            let c = self.commit(h)?;
            let parent = c
                .parents
                .first()
                .cloned()
                .unwrap_or_else(|| NO_ANCESTOR_HASH.to_string());
            let parent_contents = self.commit(&parent)?.contents.clone();
            let meta = c.meta.clone();
            let mut ops = Vec::new();
            for (key, value) in self.changed_keys(&parent, h)? {
                let mode = req
                    .key_modes
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| req.default_mode.clone());
                if mode == "DROP" {
                    details.insert(key, (mode, None));
                    continue;
                }
                let before = parent_contents.get(&key);
                let current = contents.get(&key);
                if mode != "FORCE" && current != before && current != value.as_ref() {
                    let k = key_str(&key);
                    let conflict = match (before, current) {
                        (None, _) => {
                            Conflict::new("KEY_EXISTS", Some(&key), format!("key '{k}' already exists"))
                        }
                        (Some(_), None) => Conflict::new(
                            "KEY_DOES_NOT_EXIST",
                            Some(&key),
                            format!("key '{k}' does not exist"),
                        ),
                        _ => Conflict::new(
                            "VALUE_DIFFERS",
                            Some(&key),
                            format!("values of existing and expected content for key '{k}' are different"),
                        ),
                    };
                    conflicts.push(conflict.clone());
                    details.insert(key, (mode, Some(conflict)));
                    continue;
                }
                match &value {
                    Some(v) => {
                        ops.push(json!({ "type": "PUT", "key": key_json(&key), "content": v }));
                        contents.insert(key.clone(), v.clone());
                    }
                    None => {
                        ops.push(json!({ "type": "DELETE", "key": key_json(&key) }));
                        contents.remove(&key);
                    }
                }
                details.entry(key).or_insert((mode, None));
            }
            planned.push((meta, ops, contents.clone()));
        }
        let mut outcome = MergeOutcome {
            was_applied: false,
            was_successful: true,
            resultant_target_hash: Some(head.clone()),
            common_ancestor: None,
            target_branch: target.clone(),
            effective_target_hash: head.clone(),
            expected_hash: expected,
            details: details.into_iter().map(|(k, (m, c))| (k, m, c)).collect(),
        };
        if !conflicts.is_empty() {
            if req.return_conflict_as_result {
                outcome.was_successful = false;
                outcome.resultant_target_hash = None;
                return Ok(outcome);
            }
            let keys: Vec<String> = conflicts
                .iter()
                .filter_map(|c| c.key.as_ref().map(|k| format!("'{}'", key_str(k))))
                .collect();
            return Err(NessieFakeError::conflict(
                format!(
                    "The following keys have been changed in conflict: {}",
                    keys.join(", ")
                ),
                conflicts,
            ));
        }
        if req.dry_run {
            outcome.resultant_target_hash = None;
            return Ok(outcome);
        }
        let mut cur = head;
        for (mut meta, ops, contents) in planned {
            let t = self.next_time();
            meta.commit_time = t;
            meta.committer = self.committer.clone();
            let parents = vec![cur];
            let hash = self.new_hash(&parents, &meta, &ops);
            self.commits.insert(
                hash.clone(),
                Commit {
                    hash: hash.clone(),
                    parents,
                    meta,
                    operations: ops,
                    contents,
                },
            );
            cur = hash;
        }
        self.refs.insert(target, (RefKind::Branch, cur.clone()));
        outcome.was_applied = true;
        outcome.resultant_target_hash = Some(cur);
        Ok(outcome)
    }

    /// The `Reference` JSON of a named reference, with `metadata` when `fetch_all`.
    pub(crate) fn reference_json(
        &self,
        name: &str,
        kind: RefKind,
        hash: &str,
        fetch_all: bool,
    ) -> Value {
        let mut r = json!({ "type": kind.wire(), "name": name, "hash": hash });
        if fetch_all {
            let head_meta = self
                .commits
                .get(hash)
                .filter(|c| !c.parents.is_empty())
                .map(Commit::meta_json);
            let total = self.log(hash).len();
            let mut md = json!({
                "numCommitsAhead": null,
                "numCommitsBehind": null,
                "commitMetaOfHEAD": head_meta,
                "commonAncestorHash": null,
                "numTotalCommits": total,
            });
            if kind == RefKind::Branch {
                if let Some((_, default_head)) = self.refs.get(&self.default_branch) {
                    let base = self.merge_base(default_head, hash);
                    let ahead = self.log(hash).iter().take_while(|c| c.hash != base).count();
                    let behind = self
                        .log(default_head)
                        .iter()
                        .take_while(|c| c.hash != base)
                        .count();
                    md["numCommitsAhead"] = json!(ahead);
                    md["numCommitsBehind"] = json!(behind);
                    md["commonAncestorHash"] = json!(base);
                }
            }
            r["metadata"] = md;
        }
        r
    }

    /// Overall status and the check list for one health group (`None` = all checks).
    pub(crate) fn health(&self, group: Option<&str>) -> (bool, Value) {
        let checks: Vec<&Check> = self
            .checks
            .iter()
            .filter(|c| match group {
                Some("live") | Some("started") => c.liveness,
                Some("ready") => c.readiness,
                _ => true,
            })
            .collect();
        let up = checks.iter().all(|c| c.up);
        let list: Vec<Value> = checks
            .iter()
            .map(|c| json!({ "name": c.name, "status": if c.up { "UP" } else { "DOWN" } }))
            .collect();
        (
            up,
            json!({ "status": if up { "UP" } else { "DOWN" }, "checks": list }),
        )
    }

    /// Build a commit for the scripted helpers: PUT an Iceberg table at each key (updating the
    /// snapshot of an existing one), creating missing parent namespaces.
    pub(crate) fn scripted_ops(
        &self,
        branch: &str,
        keys: &[Key],
        salt: u64,
    ) -> Result<(RefSpec, Vec<Op>)> {
        let (name, _, head) = self.named(branch)?;
        let contents = &self.commit(&head)?.contents;
        let mut ops = Vec::new();
        let mut namespaces = BTreeSet::new();
        for key in keys {
            for i in 1..key.len() {
                let ns: Key = key[..i].to_vec();
                if !contents.contains_key(&ns) && namespaces.insert(ns.clone()) {
                    ops.push(Op::Put {
                        key: ns.clone(),
                        content: json!({ "type": "NAMESPACE", "elements": ns, "properties": {} }),
                    });
                }
            }
            let snapshot = self.seq + salt + 1;
            let mut content = json!({
                "type": "ICEBERG_TABLE",
                "metadataLocation": format!("s3://warehouse/{}/metadata/{:05}-{}.metadata.json", key.join("/"), snapshot, uuid::Uuid::new_v4()),
                "snapshotId": snapshot,
                "schemaId": 0,
                "specId": 0,
                "sortOrderId": 0,
            });
            if let Some(id) = contents.get(key).and_then(|c| c.get("id")).cloned() {
                content["id"] = id;
            }
            ops.push(Op::Put {
                key: key.clone(),
                content,
            });
        }
        Ok((
            RefSpec {
                name: Some(name),
                hash: Some(head),
                rel: Vec::new(),
            },
            ops,
        ))
    }
}

/// The message of a 409 for a commit: the single conflict's message as a sentence
/// (`Key 'a.b' already exists.`), or all of them.
fn commit_conflict_message(conflicts: &[Conflict]) -> String {
    let sentence = |m: &str| {
        let mut c = m.chars();
        match c.next() {
            Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
            None => String::new(),
        }
    };
    match conflicts {
        [one] => sentence(&one.message),
        many => format!(
            "There are multiple conflicts that prevent committing the provided operations: {}",
            many.iter()
                .map(|c| sentence(&c.message))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// Parent namespaces of PUT keys must exist as `NAMESPACE` content; deleted namespaces must be empty.
fn namespace_conflicts(contents: &BTreeMap<Key, Value>, ops: &[Value]) -> Vec<Conflict> {
    let mut out = Vec::new();
    for op in ops {
        let Ok(key) = op
            .get("key")
            .map(key_from_json)
            .unwrap_or_else(|| Ok(Vec::new()))
        else {
            continue;
        };
        match op.get("type").and_then(Value::as_str) {
            Some("PUT") => {
                for i in 1..key.len() {
                    let ns: Key = key[..i].to_vec();
                    match contents.get(&ns) {
                        None => {
                            out.push(Conflict::new(
                                "NAMESPACE_ABSENT",
                                Some(&ns),
                                format!("namespace '{}' must exist", key_str(&ns)),
                            ));
                            break;
                        }
                        Some(c) if c.get("type").and_then(Value::as_str) != Some("NAMESPACE") => {
                            out.push(Conflict::new(
                                "NOT_A_NAMESPACE",
                                Some(&ns),
                                format!("expecting the key '{}' to be a namespace, but is not a namespace", key_str(&ns)),
                            ));
                            break;
                        }
                        Some(_) => {}
                    }
                }
            }
            Some("DELETE")
                if contents
                    .keys()
                    .any(|k| k.len() > key.len() && k.starts_with(&key)) =>
            {
                out.push(Conflict::new(
                    "NAMESPACE_NOT_EMPTY",
                    Some(&key),
                    format!("namespace '{}' is not empty", key_str(&key)),
                ));
            }
            _ => {}
        }
    }
    out
}

/// The server sets these commit-meta fields; a client that sends them gets a 400.
pub(crate) fn validate_client_meta(meta: Option<&Value>) -> Result<()> {
    let Some(meta) = meta else { return Ok(()) };
    let set = |f: &str| meta.get(f).is_some_and(|v| !v.is_null());
    let msg = if set("committer") {
        "Cannot set the committer on the client side. It is set by the server."
    } else if set("commitTime") {
        "Cannot set the commit time on the client side. It is set by the server."
    } else if set("hash") {
        "Cannot set the commit hash on the client side. It is set by the server."
    } else if meta
        .get("parentCommitHashes")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        "Cannot set the parent commit hashes on the client side. It is set by the server."
    } else {
        return Ok(());
    };
    Err(NessieFakeError::bad_request(msg))
}

/// Parse the `operations` of a commit request body.
pub(crate) fn parse_ops(body: &Value) -> Result<Vec<Op>> {
    let ops = body
        .get("operations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ops.iter()
        .map(|op| {
            let key = key_from_json(op.get("key").unwrap_or(&Value::Null))?;
            match op
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                Some("PUT") => {
                    let content = op.get("content").cloned().unwrap_or(Value::Null);
                    if !content.is_object() || content.get("type").and_then(Value::as_str).is_none()
                    {
                        return Err(NessieFakeError::bad_request(format!(
                            "PUT operation for key '{}' needs a content object with a 'type'",
                            key_str(&key)
                        )));
                    }
                    Ok(Op::Put { key, content })
                }
                Some("DELETE") => Ok(Op::Delete { key }),
                Some("UNCHANGED") => Ok(Op::Unchanged),
                other => Err(NessieFakeError::bad_request(format!(
                    "unknown operation type {other:?} in {op}"
                ))),
            }
        })
        .collect()
}

/// Parse a merge request body.
pub(crate) fn parse_merge(body: &Value) -> MergeRequest {
    let s = |f: &str| {
        body.get(f)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let b = |f: &str| body.get(f).and_then(Value::as_bool).unwrap_or(false);
    let mut meta = Meta::from_request(body.get("commitMeta"));
    if meta.message.is_empty() {
        meta.message = s("message");
    }
    let mut key_modes = HashMap::new();
    if let Some(modes) = body.get("keyMergeModes").and_then(Value::as_array) {
        for m in modes {
            if let (Some(Ok(k)), Some(mode)) = (
                m.get("key").map(key_from_json),
                m.get("mergeBehavior").and_then(Value::as_str),
            ) {
                key_modes.insert(k, mode.to_ascii_uppercase());
            }
        }
    }
    let default_mode = match s("defaultKeyMergeMode").to_ascii_uppercase() {
        m if m.is_empty() => "NORMAL".to_string(),
        m => m,
    };
    MergeRequest {
        from_ref_name: s("fromRefName"),
        from_hash: s("fromHash"),
        meta,
        default_mode,
        key_modes,
        // Nessie 0.99 reads these flags as `isDryRun` / `isReturnConflictAsResult` and silently
        // ignores `dryRun` / `returnConflictAsResult` (recorded against the real server).
        dry_run: b("isDryRun"),
        return_conflict_as_result: b("isReturnConflictAsResult"),
    }
}

/// Map helper used by the API layer.
pub(crate) fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_syntax() {
        let r = RefSpec::parse("main").unwrap();
        assert_eq!(
            (r.name.as_deref(), r.hash.as_deref(), r.rel.len()),
            (Some("main"), None, 0)
        );
        let r = RefSpec::parse("main@11223344").unwrap();
        assert_eq!(r.hash.as_deref(), Some("11223344"));
        let r = RefSpec::parse("@11223344~2^1").unwrap();
        assert_eq!(
            (r.name, r.rel),
            (None, vec![Rel::Ancestor(2), Rel::Parent(1)])
        );
        let r = RefSpec::parse("main*1685185847230").unwrap();
        assert_eq!(r.rel, vec![Rel::Timestamp(1_685_185_847_230)]);
        let r = RefSpec::parse("main*2021-04-07T14:42:25.534Z").unwrap();
        assert_eq!(r.rel, vec![Rel::Timestamp(1_617_806_545_534)]);
        let r = RefSpec::parse("my/branch@").unwrap();
        assert_eq!((r.name.as_deref(), r.hash), (Some("my/branch"), None));
        assert!(RefSpec::parse("-").is_ok());
        for bad in [
            "",
            "@",
            "1main",
            "main@xyz",
            "main@123",
            "a..b",
            "main~x",
            "main@11223344!",
        ] {
            assert!(RefSpec::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn keys() {
        assert_eq!(
            parse_key("a.b\u{1D}c").unwrap(),
            vec!["a".to_string(), "b.c".to_string()]
        );
        assert!(parse_key("a..b").is_err());
    }
}
