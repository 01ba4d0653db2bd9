//! Coordination between engines: the seam that lets several engine replicas share one journal without
//! opening an incident twice or applying a step twice.
//!
//! Three primitives, each atomic in the store:
//!
//! - **open or get an incident by incident key** ([`Coordinator::open_or_get`]): at most one open
//!   incident per key; the first caller registers its candidate id, every other caller gets that id
//!   back until the incident is closed ([`Coordinator::close_incident`]);
//! - **claim a step** ([`Coordinator::claim_step`]) with a **fencing token**: one live claim per step;
//!   the claim is then turned into "started" by [`Coordinator::begin_step`], a fenced, one-time
//!   transition — a holder whose claim expired and was taken over (a higher token) is refused, and a
//!   step once begun can never be claimed again (a crash after it leaves the step to a human, as the
//!   journal's "outcome unknown" rule says);
//! - **lease a target** ([`Coordinator::lease_target`]) with a deadline on the store's clock: renew,
//!   release, expiry; an expired lease can be taken by another holder with a higher token, and the
//!   stale holder's [`Coordinator::check_token`] fails.
//!
//! Fencing tokens come from one counter per store: they only grow, across steps and targets.
//!
//! The trait assumes no shared memory: every call takes and returns owned values, and every decision
//! is made inside the store, on the store's clock — so a PostgreSQL implementation maps each method to
//! one conditional statement (`INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING`, `now()` of the
//! database for deadlines, a sequence for tokens); `docs/state.md` gives the tables and statements.
//! [`InProcessCoordinator`] is the implementation for engines in one process (and for tests): a mutex
//! and tokio's clock, so a test on a paused clock drives lease expiry.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A fencing token: issued with every claim and lease, strictly greater than every token the store
/// issued before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a claim or lease holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "resource", rename_all = "snake_case")]
pub enum Resource {
    /// One step of one incident (by step id).
    Step {
        /// The incident id.
        incident: String,
        /// The step id.
        step: String,
    },
    /// A target (by name): one remediation per target at a time.
    Target {
        /// The target's name.
        target: String,
    },
}

impl Resource {
    /// A step of an incident.
    pub fn step(incident: impl Into<String>, step: impl Into<String>) -> Self {
        Resource::Step {
            incident: incident.into(),
            step: step.into(),
        }
    }

    /// A target.
    pub fn target(target: impl Into<String>) -> Self {
        Resource::Target {
            target: target.into(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Step { incident, step } => write!(f, "step {step} of {incident}"),
            Resource::Target { target } => write!(f, "target {target}"),
        }
    }
}

/// A time-bounded exclusive hold on a [`Resource`] (a step claim or a target lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// What is held.
    pub resource: Resource,
    /// Who holds it (an engine replica's name).
    pub holder: String,
    /// The fencing token issued with it.
    pub token: FencingToken,
    /// When it expires, in milliseconds on the store's clock (not the caller's): only the store
    /// compares it. A holder should treat the lease as lost once `ttl` has passed on its own
    /// monotonic clock since it sent the request.
    pub expires_at_ms: u64,
}

/// The answer to [`Coordinator::open_or_get`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpenOrGet {
    /// The key had no open incident: the candidate id is now registered as its incident.
    Opened(String),
    /// The key already has an open incident: this one.
    Existing(String),
}

impl OpenOrGet {
    /// The incident id, either way.
    pub fn id(&self) -> &str {
        match self {
            OpenOrGet::Opened(id) | OpenOrGet::Existing(id) => id,
        }
    }

    /// Whether this call registered the incident.
    pub fn is_new(&self) -> bool {
        matches!(self, OpenOrGet::Opened(_))
    }
}

/// The class of a coordination failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CoordinationErrorKind {
    /// Another holder's claim or lease is live: try again after it expires or is released.
    Held,
    /// The token is not the latest issued for the resource, or its lease expired: the caller lost it
    /// and must not act.
    Stale,
    /// The step was already begun (by this holder or another): it is never claimed or begun again.
    AlreadyBegun,
    /// The call was invalid (an empty key, a zero duration, an id that is not the key's incident).
    Invalid,
    /// The store failed or could not be reached.
    Storage,
}

impl CoordinationErrorKind {
    /// Whether retrying later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            CoordinationErrorKind::Held | CoordinationErrorKind::Storage
        )
    }
}

impl fmt::Display for CoordinationErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CoordinationErrorKind::Held => "held by another",
            CoordinationErrorKind::Stale => "stale token",
            CoordinationErrorKind::AlreadyBegun => "already begun",
            CoordinationErrorKind::Invalid => "invalid",
            CoordinationErrorKind::Storage => "storage",
        })
    }
}

/// A coordination call failed.
#[derive(Debug, thiserror::Error)]
#[error("coordination ({store}) on {subject}: {kind}: {message}")]
#[non_exhaustive]
pub struct CoordinationError {
    /// Which store (`in-process`, `postgres://host/db`).
    pub store: String,
    /// What the call was about (a resource, an incident key).
    pub subject: String,
    /// The class of failure.
    pub kind: CoordinationErrorKind,
    /// What was wrong.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<crate::BoxError>,
}

impl CoordinationError {
    /// A new error.
    pub fn new(
        store: impl Into<String>,
        subject: impl Into<String>,
        kind: CoordinationErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            store: store.into(),
            subject: subject.into(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl Into<crate::BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> CoordinationErrorKind {
        self.kind
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// The coordination store shared by engine replicas. Every method is one atomic decision of the
/// store; see the [module docs](self).
#[async_trait]
pub trait Coordinator: Send + Sync + fmt::Debug {
    /// The store's name for errors and logs.
    fn name(&self) -> String;

    /// Open or get the incident of `key`: if the key has no open incident, register `candidate` as
    /// its incident ([`OpenOrGet::Opened`]); otherwise return the open one ([`OpenOrGet::Existing`]).
    async fn open_or_get(&self, key: &str, candidate: &str)
        -> Result<OpenOrGet, CoordinationError>;

    /// The key's incident closed: free the key (a later symptom opens a new incident). `Invalid` when
    /// `id` is not the key's open incident.
    async fn close_incident(&self, key: &str, id: &str) -> Result<(), CoordinationError>;

    /// Claim step `step` of `incident` for `holder`, for `ttl`, with a new fencing token. Refused with
    /// `Held` while another claim on the step is live (even the same holder's: renew instead), with
    /// `AlreadyBegun` once the step was begun.
    async fn claim_step(
        &self,
        incident: &str,
        step: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError>;

    /// Turn a live step claim into "begun", once: refused with `Stale` when the claim's token is no
    /// longer the step's latest or the claim expired, with `AlreadyBegun` when the step was begun. The
    /// caller applies the step only after this returned Ok.
    async fn begin_step(&self, claim: &Lease) -> Result<(), CoordinationError>;

    /// Lease `target` for `holder`, for `ttl`, with a new fencing token. Refused with `Held` while
    /// another lease on it is live.
    async fn lease_target(
        &self,
        target: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError>;

    /// Lease the work on incident `incident` for `holder` until `ttl` from now: one engine advances an
    /// open incident at a time (its phases, pages and close), renewing the lease every round; another
    /// engine adopts the incident once the lease lapses (its holder stopped). `Held` while another
    /// holder's lease is live. The default leases the target named `incident/<id>`, so a store need
    /// not know incidents apart from targets.
    async fn lease_incident(
        &self,
        incident: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError> {
        self.lease_target(&format!("incident/{incident}"), holder, ttl)
            .await
    }

    /// Extend a live lease or claim by `ttl` from now (the store's now); the token does not change.
    /// `Stale` when it expired or was taken over.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, CoordinationError>;

    /// Give a lease or claim back before it expires. `Stale` when it was already taken over (nothing
    /// is released then); releasing an expired lease that nobody took is Ok. Releasing a begun step's
    /// claim is Ok and keeps the step begun.
    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError>;

    /// Ok when `token` is the latest issued for `resource` and its hold is live; `Stale` otherwise.
    async fn check_token(
        &self,
        resource: &Resource,
        token: FencingToken,
    ) -> Result<(), CoordinationError>;
}

#[derive(Debug)]
struct Hold {
    holder: String,
    token: FencingToken,
    expires: Instant,
    /// The holder released it (a step claim keeps its row: the latest token and whether it began).
    released: bool,
}

#[derive(Debug)]
struct State {
    next_token: u64,
    incidents: HashMap<String, String>,
    holds: HashMap<Resource, Hold>,
    begun: HashMap<Resource, FencingToken>,
}

/// The [`Coordinator`] for engines in one process, and for tests: a mutex and tokio's clock (lease
/// deadlines follow a paused test clock).
#[derive(Debug)]
pub struct InProcessCoordinator {
    epoch: Instant,
    state: Mutex<State>,
}

impl Default for InProcessCoordinator {
    fn default() -> Self {
        Self::new()
    }
}

const STORE: &str = "in-process";

impl InProcessCoordinator {
    /// An empty store; its clock starts now (tokio's clock).
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            state: Mutex::new(State {
                next_token: 1,
                incidents: HashMap::new(),
                holds: HashMap::new(),
                begun: HashMap::new(),
            }),
        }
    }

    fn lock(&self, subject: &str) -> Result<std::sync::MutexGuard<'_, State>, CoordinationError> {
        self.state.lock().map_err(|_| {
            CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Storage,
                "the store's lock is poisoned",
            )
        })
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn valid_ttl(subject: &str, ttl: Duration) -> Result<(), CoordinationError> {
        if ttl.is_zero() {
            return Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Invalid,
                "a lease needs a duration above zero",
            ));
        }
        Ok(())
    }

    fn nonempty(subject: &str, what: &str, v: &str) -> Result<(), CoordinationError> {
        if v.trim().is_empty() {
            return Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Invalid,
                format!("the {what} is empty"),
            ));
        }
        Ok(())
    }

    /// Take `resource` for `holder` when no live hold is on it: the shared body of claims and leases.
    fn take(
        &self,
        resource: Resource,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError> {
        let subject = resource.to_string();
        Self::valid_ttl(&subject, ttl)?;
        Self::nonempty(&subject, "holder", holder)?;
        let now = Instant::now();
        let mut st = self.lock(&subject)?;
        if st.begun.contains_key(&resource) {
            return Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::AlreadyBegun,
                "the step was already begun; it is never claimed again",
            ));
        }
        if let Some(h) = st.holds.get(&resource) {
            if !h.released && h.expires > now {
                return Err(CoordinationError::new(
                    STORE,
                    subject,
                    CoordinationErrorKind::Held,
                    format!(
                        "held by {} (token {}) for {} ms more",
                        h.holder,
                        h.token,
                        h.expires.saturating_duration_since(now).as_millis()
                    ),
                ));
            }
        }
        let token = FencingToken(st.next_token);
        st.next_token += 1;
        let expires = now + ttl;
        st.holds.insert(
            resource.clone(),
            Hold {
                holder: holder.to_string(),
                token,
                expires,
                released: false,
            },
        );
        Ok(Lease {
            resource,
            holder: holder.to_string(),
            token,
            expires_at_ms: self.ms(expires),
        })
    }

    /// The live hold of `lease`, or why not.
    fn live<'a>(
        st: &'a mut State,
        resource: &Resource,
        token: FencingToken,
        now: Instant,
    ) -> Result<&'a mut Hold, CoordinationError> {
        let subject = resource.to_string();
        match st.holds.get_mut(resource) {
            Some(h) if h.token == token && !h.released && h.expires > now => Ok(h),
            Some(h) if h.token != token => Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Stale,
                format!(
                    "token {token} is stale: token {} was issued since (to {})",
                    h.token, h.holder
                ),
            )),
            Some(h) if h.released => Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Stale,
                format!("token {token} was released"),
            )),
            Some(h) => Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Stale,
                format!(
                    "token {token} expired {} ms ago",
                    now.saturating_duration_since(h.expires).as_millis()
                ),
            )),
            None => Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Stale,
                format!("token {token} was never issued for it"),
            )),
        }
    }
}

#[async_trait]
impl Coordinator for InProcessCoordinator {
    fn name(&self) -> String {
        STORE.to_string()
    }

    async fn open_or_get(
        &self,
        key: &str,
        candidate: &str,
    ) -> Result<OpenOrGet, CoordinationError> {
        let subject = format!("incident key {key}");
        Self::nonempty(&subject, "incident key", key)?;
        Self::nonempty(&subject, "incident id", candidate)?;
        let mut st = self.lock(&subject)?;
        if let Some(id) = st.incidents.get(key) {
            return Ok(OpenOrGet::Existing(id.clone()));
        }
        st.incidents.insert(key.to_string(), candidate.to_string());
        Ok(OpenOrGet::Opened(candidate.to_string()))
    }

    async fn close_incident(&self, key: &str, id: &str) -> Result<(), CoordinationError> {
        let subject = format!("incident key {key}");
        let mut st = self.lock(&subject)?;
        match st.incidents.get(key) {
            Some(open) if open == id => {
                st.incidents.remove(key);
                Ok(())
            }
            Some(open) => Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Invalid,
                format!("{id} is not the key's open incident ({open} is)"),
            )),
            None => Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Invalid,
                format!("the key has no open incident (asked to close {id})"),
            )),
        }
    }

    async fn claim_step(
        &self,
        incident: &str,
        step: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError> {
        let resource = Resource::step(incident, step);
        Self::nonempty(&resource.to_string(), "incident id", incident)?;
        Self::nonempty(&resource.to_string(), "step id", step)?;
        self.take(resource, holder, ttl)
    }

    async fn begin_step(&self, claim: &Lease) -> Result<(), CoordinationError> {
        let subject = claim.resource.to_string();
        if !matches!(claim.resource, Resource::Step { .. }) {
            return Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Invalid,
                "only a step claim can begin",
            ));
        }
        let now = Instant::now();
        let mut st = self.lock(&subject)?;
        if let Some(t) = st.begun.get(&claim.resource) {
            return Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::AlreadyBegun,
                format!("already begun under token {t}"),
            ));
        }
        Self::live(&mut st, &claim.resource, claim.token, now)?;
        st.begun.insert(claim.resource.clone(), claim.token);
        Ok(())
    }

    async fn lease_target(
        &self,
        target: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError> {
        let resource = Resource::target(target);
        Self::nonempty(&resource.to_string(), "target", target)?;
        self.take(resource, holder, ttl)
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, CoordinationError> {
        let subject = lease.resource.to_string();
        Self::valid_ttl(&subject, ttl)?;
        let now = Instant::now();
        let mut st = self.lock(&subject)?;
        let h = Self::live(&mut st, &lease.resource, lease.token, now)?;
        h.expires = now + ttl;
        let expires = h.expires;
        Ok(Lease {
            expires_at_ms: self.ms(expires),
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError> {
        let subject = lease.resource.to_string();
        let mut st = self.lock(&subject)?;
        match st.holds.get_mut(&lease.resource) {
            Some(h) if h.token == lease.token => {
                h.released = true;
                Ok(())
            }
            Some(h) => Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Stale,
                format!(
                    "token {} is stale: token {} was issued since (to {}); nothing released",
                    lease.token, h.token, h.holder
                ),
            )),
            None => Err(CoordinationError::new(
                STORE,
                subject,
                CoordinationErrorKind::Stale,
                format!("token {} was never issued for it", lease.token),
            )),
        }
    }

    async fn check_token(
        &self,
        resource: &Resource,
        token: FencingToken,
    ) -> Result<(), CoordinationError> {
        let now = Instant::now();
        let mut st = self.lock(&resource.to_string())?;
        Self::live(&mut st, resource, token, now).map(|_| ())
    }
}
