//! The [`Probe`] trait: how rb reads the state of a target.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::ProbeError;
use crate::observation::Observation;
use crate::target::Target;
use crate::time::{secs, Clock, Timestamp};

/// What the engine hands a probe for one observation.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    /// When the probe must have answered. The engine enforces it by dropping the `observe` future at the
    /// deadline and recording [`crate::ErrorKind::Timeout`]; a probe may also use it to size its own
    /// client timeouts.
    pub deadline: tokio::time::Instant,
    /// The engine's clock: stamp observations with `clock.now()`.
    pub clock: Clock,
    /// The incident a diagnosis or recovery probe runs for (`None` for detect probes): its time window
    /// and what broke, so that a probe can look at the failing job's logs over the incident's window.
    pub incident: Option<IncidentScope>,
}

/// What a diagnosis or recovery probe knows of the incident it runs for.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentScope {
    /// The incident id.
    pub id: String,
    /// Since when the detect condition held (the start of the incident's window).
    pub since: Timestamp,
    /// When the incident opened.
    pub opened_at: Timestamp,
    /// The incident key's labels (`job=orders`), empty when keyed per target.
    pub key: crate::observation::Labels,
    /// The finding's offending series.
    pub offending: Vec<crate::observation::Labels>,
}

impl IncidentScope {
    /// The value of label `name` in the key, or else in the first offending series that has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.key
            .get(name)
            .or_else(|| self.offending.iter().find_map(|l| l.get(name)))
            .map(String::as_str)
    }
}

impl ProbeContext {
    /// A context whose deadline is `timeout` from now.
    pub fn with_timeout(clock: Clock, timeout: Duration) -> Self {
        Self {
            deadline: tokio::time::Instant::now() + timeout,
            clock,
            incident: None,
        }
    }

    /// The same context, for a probe that runs for `incident`.
    pub fn for_incident(mut self, incident: IncidentScope) -> Self {
        self.incident = Some(incident);
        self
    }

    /// Time left before the deadline (zero if passed).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// The current wall-clock time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Reads the state of one target. The contract every implementation keeps:
///
/// - **Read-only.** A probe never changes its target. Actions are [`crate::Remediation`]s.
/// - **Deadline.** The engine drops the future returned by [`Probe::observe`] when
///   [`ProbeContext::deadline`] passes, so `observe` must be cancel-safe (it is: it only reads).
/// - **Unknown is not healthy.** If the probe cannot see its target — unreachable, timed out,
///   unauthorized, a malformed or truncated answer — it returns a [`ProbeError`] of the matching
///   [`crate::ErrorKind`], naming the endpoint. If it sees only part (one broker of three answered), it
///   returns an observation marked incomplete ([`Observation::mark_incomplete`]). Symptoms never fire on,
///   and never clear on, what was not seen.
/// - **Who retries.** A probe does not retry: the engine observes again at the next interval. A
///   transient error ([`ProbeError::is_transient`]) simply leaves the verdict unknown until then.
/// - **Concurrency.** `observe` takes `&self` and may be called again before an earlier call returns
///   only if the engine's schedule is shorter than the deadline; keep shared state behind locks.
/// - **Secrets** never appear in errors, observations or logs (use [`crate::Secret`]).
///
/// ```
/// use rb_core::{async_trait, Observation, Probe, ProbeContext, ProbeError, Target, labels};
///
/// #[derive(Debug)]
/// struct QueueDepth { target: Target }
///
/// #[async_trait]
/// impl Probe for QueueDepth {
///     fn id(&self) -> &str { "example.queue_depth" }
///     fn target(&self) -> &Target { &self.target }
///     async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
///         let depth = 42.0; // read it from your system here
///         Ok(Observation::new(self.id(), &self.target.name, ctx.now())
///             .sample("queue_depth", labels(&[("queue", "orders")]), depth))
///     }
/// }
/// ```
#[async_trait]
pub trait Probe: Send + Sync + Debug {
    /// A stable id for the kind of probe (`kafka.consumer_lag`), used in spans, errors and evidence.
    fn id(&self) -> &str;

    /// This probe's identity among the probes of its kind on one target: `kafka.consumer_lag/orders` for
    /// the lag of consumer group `orders`. The engine keys the probe's metric series, its detection
    /// history and its journaled detection state (for-duration streaks, "blind since") by it and the
    /// target, so two probes of one kind on one target never collide. Defaults to [`Probe::id`]:
    /// override it when a target may carry several probes of the kind.
    fn name(&self) -> &str {
        self.id()
    }

    /// The target this probe observes.
    fn target(&self) -> &Target;

    /// Observe the target once.
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError>;
}

#[async_trait]
impl<P: Probe + ?Sized> Probe for Arc<P> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn target(&self) -> &Target {
        (**self).target()
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        (**self).observe(ctx).await
    }
}

#[async_trait]
impl<P: Probe + ?Sized> Probe for Box<P> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn target(&self) -> &Target {
        (**self).target()
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        (**self).observe(ctx).await
    }
}

/// When a scheduled probe runs: every `interval`, delayed by up to `jitter` (so a fleet of probes does not
/// hit one system at once), and abandoned after `deadline`.
///
/// In a runbook file: `{"interval": "30s", "jitter": "5s", "deadline": "10s"}`; `jitter` defaults to
/// none and `deadline` to what [`Schedule::every`] gives.
///
/// ```
/// use rb_core::{Schedule, time::secs};
/// let s: Schedule = serde_json::from_str(r#"{"interval": "5s"}"#).unwrap();
/// assert_eq!(s, Schedule::every(secs(5)));
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"interval":"5s","jitter":"0s","deadline":"5s"}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "ScheduleText")]
pub struct Schedule {
    /// Time between observations.
    #[serde(with = "crate::time::duration_text")]
    pub interval: Duration,
    /// Up to this much random delay added to each run (seeded, so tests stay deterministic).
    #[serde(with = "crate::time::duration_text")]
    pub jitter: Duration,
    /// How long one observation may take.
    #[serde(with = "crate::time::duration_text")]
    pub deadline: Duration,
}

/// A schedule as a file writes it (optional jitter and deadline).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleText {
    #[serde(with = "crate::time::duration_text")]
    interval: Duration,
    #[serde(default, with = "crate::time::opt_duration_text")]
    jitter: Option<Duration>,
    #[serde(default, with = "crate::time::opt_duration_text")]
    deadline: Option<Duration>,
}

impl TryFrom<ScheduleText> for Schedule {
    type Error = String;

    fn try_from(t: ScheduleText) -> Result<Self, String> {
        if t.interval.is_zero() {
            return Err("a schedule's interval must be more than 0s".to_string());
        }
        let mut s = Schedule::every(t.interval).jitter(t.jitter.unwrap_or_default());
        if let Some(d) = t.deadline {
            s = s.deadline(d);
        }
        Ok(s)
    }
}

impl Schedule {
    /// Every `interval`, no jitter, a deadline of `min(interval, 10 s)`.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval,
            jitter: Duration::ZERO,
            deadline: interval.min(secs(10)),
        }
    }

    /// Add up to `jitter` of random delay to each run.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Abandon an observation after `deadline`.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Self::every(secs(30))
    }
}

/// A probe that returns whatever a closure gives: for tests, examples and quick custom probes.
pub struct FnProbe<F> {
    id: String,
    name: Option<String>,
    target: Target,
    f: F,
}

impl<F> Debug for FnProbe<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnProbe")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("target", &self.target)
            .finish()
    }
}

impl<F> FnProbe<F>
where
    F: Fn(&ProbeContext) -> Result<Observation, ProbeError> + Send + Sync,
{
    /// A probe with `id` on `target` that calls `f` to observe.
    pub fn new(id: impl Into<String>, target: Target, f: F) -> Self {
        Self {
            id: id.into(),
            name: None,
            target,
            f,
        }
    }

    /// Name this probe among the probes of its kind on its target ([`Probe::name`]; default: the id).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

#[async_trait]
impl<F> Probe for FnProbe<F>
where
    F: Fn(&ProbeContext) -> Result<Observation, ProbeError> + Send + Sync,
{
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
    fn target(&self) -> &Target {
        &self.target
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        (self.f)(ctx)
    }
}
