//! The five-phase engine: Detect → Diagnose → Mitigate → Recover → Review.
//!
//! A round does detection under the engine's state lock: run the probes that are due (concurrently,
//! bounded, each under its deadline), take in pushed signals, judge every detect binding, open one
//! incident per firing fingerprint. Then every open incident is moved forward as far as it can go —
//! outside the lock, concurrently, each incident by itself.
//!
//! [`Engine::tick`] does one round and waits for the incidents it moves (tests drive it step by step).
//! [`Engine::run`] and [`Engine::run_for`] do not wait: while one incident's remediation is in flight
//! (a savepoint, a restore: minutes), probes keep running on schedule, other incidents open and move on,
//! and humans' acknowledgements are journaled at once. A human approver is waited for in a task of its
//! own (see [`crate::policy`]). Everything sleeps on tokio's clock, so a test on a paused runtime drives
//! hours of incident in milliseconds with the same timeline every time.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use backon::BackoffBuilder;
use futures::future::join_all;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{Error, ErrorKind, ProbeError};
use crate::escalation::{EscalationReason, LogNotifier, Notification, Notifier, NotifyAction};
use crate::incident::{
    step_outputs, step_state, Incident, IncidentRecord, Phase, Resolution, StepState,
};
use crate::journal::{Event, Journal, MemoryJournal};
use crate::metrics::{Metrics, ProbeResult, ProbeSeries, VerdictSeries};
use crate::observation::facts::NessieCommit;
use crate::observation::{Evidence, Labels, Observation, Sample};
use crate::playbook::{IncidentKey, Playbook, Runbook, Source};
use crate::policy::{
    ApprovalRequest, Approver, Decision, DenyAll, KillSwitch, PolicyState, SafetyPolicy,
};
use crate::probe::{Probe, ProbeContext};
use crate::remediation::{ActionContext, Plan, ProgressSink, Remediation, Risk, Verification};
use crate::report::Review;
use crate::signal::Signal;
use crate::symptom::{evaluate, Failure, Finding, History, Record, SymptomState, Verdict};
use crate::target::Target;
use crate::time::{human, secs, Clock, Timestamp};

/// Builds an [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
    runbook: Runbook,
    journal: Option<Arc<dyn Journal>>,
    approver: Arc<dyn Approver>,
    notifier: Arc<dyn Notifier>,
    policy: SafetyPolicy,
    clock: Option<Clock>,
    kill: KillSwitch,
    seed: u64,
    max_concurrent_probes: usize,
    tick_interval: Duration,
    blind_after: Duration,
    id_seed: Option<u64>,
}

impl EngineBuilder {
    /// An engine for `runbook` with: an in-memory journal, approvals denied ([`DenyAll`]: only safe
    /// actions run until an approver is set), pages written to the log, the default [`SafetyPolicy`].
    pub fn new(runbook: Runbook) -> Self {
        Self {
            runbook,
            journal: None,
            approver: Arc::new(DenyAll),
            notifier: Arc::new(LogNotifier),
            policy: SafetyPolicy::default(),
            clock: None,
            kill: KillSwitch::new(),
            seed: 0x5eed,
            max_concurrent_probes: 64,
            tick_interval: secs(5),
            blind_after: crate::time::mins(5),
            id_seed: None,
        }
    }

    /// Seed the random part of incident ids (for reproducible test output; by default it comes from
    /// the operating system, so that engines sharing a journal never collide).
    pub fn incident_id_seed(mut self, seed: u64) -> Self {
        self.id_seed = Some(seed);
        self
    }

    /// A detect probe that cannot see its target (errors, incomplete observations) for this long opens
    /// an incident of its own — "cannot see kafka-main: connection refused since 03:12" — deduplicated,
    /// paged, and closed when the probe sees again (default 5 minutes). A silent outage must not hide
    /// behind a playbook whose symptom can only say "unknown".
    pub fn blind_after(mut self, d: Duration) -> Self {
        self.blind_after = d;
        self
    }

    /// Where incidents are journaled.
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Who approves disruptive and destructive actions.
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = approver;
        self
    }

    /// Who delivers pages.
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// The safety policy.
    pub fn policy(mut self, policy: SafetyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Plan and journal only; never apply.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.policy.dry_run = dry_run;
        self
    }

    /// The clock (default: anchored at the system time when built).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Share a kill switch with the caller.
    pub fn kill_switch(mut self, kill: KillSwitch) -> Self {
        self.kill = kill;
        self
    }

    /// Seed of the jitter generator (deterministic schedules in tests).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// At most this many probes observe at once (default 64).
    pub fn max_concurrent_probes(mut self, n: usize) -> Self {
        self.max_concurrent_probes = n.max(1);
        self
    }

    /// The longest [`Engine::run`] sleeps between ticks (recovery and SLA timers; default 5 s).
    pub fn tick_interval(mut self, d: Duration) -> Self {
        self.tick_interval = d.max(Duration::from_millis(10));
        self
    }

    /// Validate the runbook, and resume the journal's open incidents.
    pub async fn build(self) -> Result<Engine, Error> {
        self.runbook.validate()?;
        let clock = self.clock.unwrap_or_else(Clock::system);
        let journal = self
            .journal
            .unwrap_or_else(|| Arc::new(MemoryJournal::new()));
        let mut rng = StdRng::seed_from_u64(self.seed);
        let metrics = Metrics::default();
        let now = Instant::now();
        let mut bindings = Vec::new();
        for (pi, p) in self.runbook.playbooks.iter().enumerate() {
            for (di, d) in p.detectors.iter().enumerate() {
                let lookback = d.symptom.lookback();
                let (next_due, interval) = match &d.source {
                    Source::Probe { schedule, .. } => (
                        Some(now + jitter(&mut rng, schedule.jitter)),
                        schedule.interval,
                    ),
                    _ => (None, secs(60)),
                };
                let max_age = lookback + interval * 2; // only what the symptom needs
                let max_len =
                    ((max_age.as_millis() / interval.as_millis().max(1)) as usize + 4).min(100_000);
                let key_by = match &p.key {
                    IncidentKey::PerTarget => Vec::new(),
                    IncidentKey::PerSeries(labels) => labels.clone(),
                };
                bindings.push(Binding {
                    playbook: pi,
                    detector: di,
                    base: format!("{}:{}", p.id, d.source.target().name),
                    key_by,
                    groups: BTreeMap::new(),
                    max_age,
                    max_len,
                    blind_since: None,
                    next_due,
                    probe_series: match &d.source {
                        Source::Probe { probe, .. } => {
                            Some(metrics.probe_series(probe.id(), &probe.target().name))
                        }
                        _ => None,
                    },
                    verdicts: metrics.verdict_series(&p.id),
                });
            }
        }
        let fleet = self.runbook.fleet();
        let inner = Arc::new(Inner {
            fleet,
            runbook: self.runbook,
            journal,
            approver: self.approver,
            notifier: self.notifier,
            policy: self.policy,
            kill: self.kill,
            clock,
            metrics,
            state: tokio::sync::Mutex::new(State {
                bindings,
                open: BTreeMap::new(),
                rng,
                id_rng: match self.id_seed {
                    Some(seed) => StdRng::seed_from_u64(seed),
                    None => StdRng::from_entropy(),
                },
            }),
            policy_state: Mutex::new(PolicyState::default()),
            probe_sem: Arc::new(Semaphore::new(self.max_concurrent_probes)),
            inbox: Mutex::new(Vec::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
            tick_interval: self.tick_interval,
            blind_after: self.blind_after,
            commands: Mutex::new(Vec::new()),
            open_ids: Mutex::new(Vec::new()),
            maintenance: Mutex::new(Vec::new()),
            max_concurrent_probes: self.max_concurrent_probes,
        });
        let engine = Engine { inner };
        engine.resume().await?;
        Ok(engine)
    }
}

/// A readable, time-ordered incident id that needs no counting: `INC-20261125-070901-kafka-backlog-`
/// then 20 Crockford base32 characters — 48 bits of milliseconds and 52 random bits — so ids from
/// several engines sharing one journal never collide and sort by opening time.
fn incident_id(at: Timestamp, playbook: &str, rng: &mut StdRng) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bits: u128 =
        (u128::from(at.as_millis() & 0xFFFF_FFFF_FFFF) << 52) | u128::from(rng.gen::<u64>() >> 12);
    let suffix: String = (0..20)
        .rev()
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect();
    format!("INC-{}-{}-{}", compact(at), playbook, suffix)
}

fn jitter(rng: &mut StdRng, max: Duration) -> Duration {
    if max.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_millis(rng.gen_range(0..=max.as_millis() as u64))
    }
}

/// The incident engine. Cheap to clone (shared state); `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runbook: Runbook,
    fleet: Vec<Target>,
    journal: Arc<dyn Journal>,
    approver: Arc<dyn Approver>,
    notifier: Arc<dyn Notifier>,
    policy: SafetyPolicy,
    kill: KillSwitch,
    clock: Clock,
    metrics: Metrics,
    state: tokio::sync::Mutex<State>,
    policy_state: Mutex<PolicyState>,
    probe_sem: Arc<Semaphore>,
    inbox: Mutex<Vec<Signal>>,
    wake: Arc<tokio::sync::Notify>,
    tick_interval: Duration,
    blind_after: Duration,
    commands: Mutex<Vec<Command>>,
    open_ids: Mutex<Vec<String>>,
    maintenance: Mutex<Vec<crate::policy::MaintenanceWindow>>,
    max_concurrent_probes: usize,
}

/// A human's command, applied by the engine between ticks.
#[derive(Debug)]
enum Command {
    Ack { id: String, by: String },
    Close { id: String, by: String },
}

#[derive(Debug)]
struct State {
    bindings: Vec<Binding>,
    /// Open incidents by fingerprint.
    open: BTreeMap<String, Slot>,
    rng: StdRng,
    /// Random bits of incident ids: from the OS unless a seed is set (tests).
    id_rng: StdRng,
}

#[derive(Debug)]
struct Binding {
    playbook: usize,
    detector: usize,
    /// `playbook:target`: the incident key of a per-target playbook, the prefix of a per-series one.
    base: String,
    /// The labels incidents are keyed by (empty: per target).
    key_by: Vec<String>,
    /// One judgement per incident key: a single group (empty labels) when keyed per target.
    groups: BTreeMap<Labels, Group>,
    max_age: Duration,
    max_len: usize,
    /// Since when the probe has not seen its target (an error or an incomplete observation), and why.
    blind_since: Option<(Timestamp, String)>,
    next_due: Option<Instant>,
    probe_series: Option<Arc<ProbeSeries>>,
    verdicts: Arc<VerdictSeries>,
}

/// The history, symptom state and verdict of one incident key of a binding.
#[derive(Debug)]
struct Group {
    fingerprint: String,
    history: History,
    state: SymptomState,
    verdict: Verdict,
    /// When the group's labels were last seen in an observation (per-series keys only).
    last_seen: Timestamp,
}

/// The incident key string: the binding's base, plus `{k="v",…}` when keyed per series.
fn key_string(base: &str, key: &Labels) -> String {
    if key.is_empty() {
        return base.to_string();
    }
    let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{base}{{{}}}", parts.join(","))
}

impl Binding {
    fn group(&mut self, key: Labels, at: Timestamp) -> &mut Group {
        let (max_age, max_len, base) = (self.max_age, self.max_len, &self.base);
        self.groups.entry(key).or_insert_with_key(|k| Group {
            fingerprint: key_string(base, k),
            history: History::new(max_age, max_len),
            state: SymptomState::default(),
            verdict: Verdict::Unevaluated,
            last_seen: at,
        })
    }

    /// The projection of `labels` on the key labels, if it has them all.
    fn project(&self, labels: &Labels) -> Option<Labels> {
        self.key_by
            .iter()
            .map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Record a probe's result. Per-series keys: each key's samples (plus those that carry none of the
    /// key labels) go to that key's history; a failure goes to every key. Returns the keys that changed.
    fn push(&mut self, record: Record) -> Vec<Labels> {
        if self.key_by.is_empty() {
            self.group(Labels::new(), record.at).history.push(record);
            return vec![Labels::new()];
        }
        let at = record.at;
        let obs = match record.result {
            Err(f) => {
                for g in self.groups.values_mut() {
                    g.history.push(Record {
                        at,
                        result: Err(f.clone()),
                    });
                }
                return self.groups.keys().cloned().collect();
            }
            Ok(obs) => obs,
        };
        let mut parts: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let mut shared = Vec::new();
        for s in obs.samples.iter() {
            match self.project(&s.labels) {
                Some(k) => parts.entry(k).or_default().push(s.clone()),
                None => shared.push(s.clone()),
            }
        }
        for (k, g) in self.groups.iter_mut() {
            if parts.contains_key(k) {
                g.last_seen = at;
            } else {
                parts.insert(k.clone(), Vec::new());
            }
        }
        let mut changed = Vec::with_capacity(parts.len());
        for (k, mut samples) in parts {
            samples.extend(shared.iter().cloned());
            let sub = Observation {
                probe: obs.probe.clone(),
                target: obs.target.clone(),
                at: obs.at,
                samples,
                facts: obs.facts.clone(),
                complete: obs.complete,
                gaps: obs.gaps.clone(),
            };
            self.group(k.clone(), at).history.push(Record {
                at,
                result: Ok(sub),
            });
            changed.push(k);
        }
        changed
    }

    /// Forget per-series keys not seen for the history's age and not firing (a deleted connector).
    fn prune(&mut self, now: Timestamp, open: &BTreeMap<String, Slot>) {
        if self.key_by.is_empty() {
            return;
        }
        let max_age = self.max_age;
        self.groups
            .retain(|_, g| now.since(g.last_seen) <= max_age || open.contains_key(&g.fingerprint));
    }

    /// The detect source of this binding.
    fn source_kind<'r>(&self, runbook: &'r Runbook) -> &'r Source {
        &runbook.playbooks[self.playbook].detectors[self.detector].source
    }

    /// The worst verdict over the keys (firing, pending, unknown, ok), for dashboards.
    fn summary(&self) -> Verdict {
        let rank = |v: &Verdict| match v {
            Verdict::Firing(_) => 4,
            Verdict::Pending { .. } => 3,
            Verdict::Unknown { .. } => 2,
            Verdict::Ok => 1,
            Verdict::Unevaluated => 0,
        };
        self.groups
            .values()
            .map(|g| &g.verdict)
            .max_by_key(|v| rank(v))
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Diagnose,
    Mitigate,
    Recover,
    Review,
}

#[derive(Debug)]
struct Page {
    role: String,
    sent: Instant,
    due: Instant,
    attempt: u32,
}

#[derive(Debug)]
struct Check {
    history: History,
    state: SymptomState,
    verdict: Verdict,
}

#[derive(Debug)]
struct Open {
    id: String,
    playbook: usize,
    binding: usize,
    /// The incident key's labels (empty: per target).
    key: Labels,
    /// The detect finding the incident opened on.
    finding: Option<Finding>,
    /// The last role paged (acknowledgements and resolutions go to it).
    paged_role: Option<String>,
    /// An incident about a probe that cannot see its target: paged, closed when it sees again.
    blind: bool,
    /// Whether the detect source is a scheduled probe (it can be observed again on demand).
    detect_is_probe: bool,
    /// A decision that arrived for a step, waiting for the fresh observation it will be judged on.
    decided: Option<(usize, Decision, Plan)>,
    /// Ask the round to run the detect probe at once.
    fresh_detect: bool,
    /// The end of the maintenance window this incident's steps were last seen waiting for.
    muted_until: Option<Timestamp>,
    target: Target,
    stage: Stage,
    halted: bool,
    /// Whether the Mitigate phase was entered (journaled) already.
    mitigation_begun: bool,
    /// The next mitigation step to run.
    next_step: usize,
    /// The step waiting for its approver, if any.
    approval: Option<PendingApproval>,
    recover_started: Option<Instant>,
    recovering_since: Option<Instant>,
    recovery_escalated: bool,
    page: Option<Page>,
    checks: Vec<Check>,
    evidence: Vec<Evidence>,
    commit_known: bool,
    last_check_labels: Vec<&'static str>,
}

/// An open incident, as the engine holds it between and during rounds.
#[derive(Debug)]
enum Slot {
    /// The engine may advance it in the next round.
    Idle(Box<Open>),
    /// Being advanced (a diagnosis, a remediation in flight) outside the state lock, so detection goes
    /// on meanwhile. An acknowledgement made meanwhile is journaled at once and remembered here.
    Busy {
        id: String,
        acked_at: Option<Instant>,
    },
}

impl Slot {
    fn id(&self) -> &str {
        match self {
            Slot::Idle(o) => &o.id,
            Slot::Busy { id, .. } => id,
        }
    }

    /// Take the incident out to be worked on, leaving the slot busy; `None` if it is busy already.
    fn take_idle(&mut self) -> Option<Box<Open>> {
        let Slot::Idle(open) = self else {
            return None;
        };
        let busy = Slot::Busy {
            id: open.id.clone(),
            acked_at: None,
        };
        match std::mem::replace(self, busy) {
            Slot::Idle(open) => Some(open),
            Slot::Busy { .. } => None,
        }
    }
}

/// An incident taken out of the state to be advanced.
struct Job {
    fingerprint: String,
    open: Box<Open>,
    verdict: Verdict,
    manual: bool,
}

/// An advanced incident, to be put back.
struct Done {
    fingerprint: String,
    open: Box<Open>,
    result: Result<usize, Error>,
    /// The incident just finished mitigating: observe its detect probe again at once, so that recovery
    /// is judged on data read after the fix.
    mitigated: bool,
}

/// A mitigation step waiting for a human's decision, asked in a task of its own so that the engine
/// keeps detecting and working other incidents meanwhile. Dropping it (the incident closed by a human)
/// withdraws the question.
#[derive(Debug)]
struct PendingApproval {
    step: usize,
    plan: Plan,
    ctx: ActionContext,
    decision: tokio::sync::oneshot::Receiver<Decision>,
    _task: AbortOnDrop,
}

/// The approver's task, aborted when its question is dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// When the tick ran.
    pub at: Timestamp,
    /// Probes observed in this tick (detect, diagnosis and recovery).
    pub probes_run: usize,
    /// Incidents opened.
    pub opened: Vec<String>,
    /// Incidents closed.
    pub closed: Vec<String>,
    /// Signals that matched no detect binding.
    pub unrouted_signals: usize,
}

/// The verdict of each detect binding (for dashboards and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct BindingStatus {
    /// The playbook.
    pub playbook: String,
    /// The source.
    pub source: String,
    /// The symptom.
    pub symptom: String,
    /// The latest verdict.
    pub verdict: Verdict,
}

impl Engine {
    /// Start building an engine for `runbook`.
    pub fn builder(runbook: Runbook) -> EngineBuilder {
        EngineBuilder::new(runbook)
    }

    /// The engine's clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// The kill switch: engage it to stop every remediation at once.
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.inner.kill
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.inner.journal
    }

    /// The runbook.
    pub fn runbook(&self) -> &Runbook {
        &self.inner.runbook
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The engine's metrics in Prometheus text form.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// Push a signal (an alert, a manual report). It is judged on the next tick, through the same path as
    /// probe observations; [`Engine::run`] wakes for it at once.
    pub fn ingest(&self, signal: Signal) {
        if let Ok(mut inbox) = self.inner.inbox.lock() {
            inbox.push(signal);
        }
        self.inner.wake.notify_one();
    }

    /// Parse an Alertmanager webhook body and ingest its alerts.
    pub fn ingest_alertmanager_webhook(&self, body: &[u8]) -> Result<usize, Error> {
        let signals = Signal::from_alertmanager_webhook(body)?;
        let n = signals.len();
        for s in signals {
            self.ingest(s);
        }
        Ok(n)
    }

    /// Acknowledge the page of an open incident: the SLA timer stops.
    ///
    /// Never waits for the engine: journaled at once when the engine is between rounds (a remediation
    /// in flight included), else as soon as the round's detection ends.
    pub async fn acknowledge(&self, incident: &str, by: &str) -> Result<(), Error> {
        self.command(
            incident,
            Command::Ack {
                id: incident.to_string(),
                by: by.to_string(),
            },
        )
        .await
    }

    /// Open a maintenance window: remediations on its target (or on incidents whose key has its labels)
    /// wait until it ends; incidents still open and page. Journaled, and restored by an engine started
    /// on the same journal.
    pub async fn maintenance(&self, window: crate::policy::MaintenanceWindow) -> Result<(), Error> {
        self.inner
            .append(
                crate::journal::MAINTENANCE,
                Event::Maintenance {
                    window: window.clone(),
                },
            )
            .await?;
        if let Ok(mut w) = self.inner.maintenance.lock() {
            w.push(window);
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// The maintenance windows still in force.
    pub fn maintenance_windows(&self) -> Vec<crate::policy::MaintenanceWindow> {
        let now = self.inner.clock.now();
        self.inner
            .maintenance
            .lock()
            .map(|w| w.iter().filter(|m| now < m.until).cloned().collect())
            .unwrap_or_default()
    }

    /// Close an open incident by hand (it gets its review like any other). Like
    /// [`Engine::acknowledge`], it never waits; but when a step of the incident is in flight, the close
    /// takes effect once that step has finished (a half-applied step is never abandoned). A question
    /// pending with an approver is withdrawn.
    pub async fn close(&self, incident: &str, by: &str) -> Result<(), Error> {
        self.command(
            incident,
            Command::Close {
                id: incident.to_string(),
                by: by.to_string(),
            },
        )
        .await
    }

    async fn command(&self, incident: &str, cmd: Command) -> Result<(), Error> {
        if !self
            .inner
            .journal
            .open_incidents()
            .await?
            .iter()
            .any(|i| i == incident)
        {
            return Err(Error::UnknownIncident(incident.to_string()));
        }
        if let Ok(mut q) = self.inner.commands.lock() {
            q.push(cmd);
        }
        if let Ok(mut st) = self.inner.state.try_lock() {
            self.inner.apply_commands(&mut st).await?;
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Ids of the open incidents (as of the end of the last tick or command).
    pub async fn open_incidents(&self) -> Vec<String> {
        self.inner
            .open_ids
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The latest verdict of every detect binding.
    pub async fn status(&self) -> Vec<BindingStatus> {
        let st = self.inner.state.lock().await;
        st.bindings
            .iter()
            .map(|b| {
                let p = &self.inner.runbook.playbooks[b.playbook];
                let d = &p.detectors[b.detector];
                BindingStatus {
                    playbook: p.id.clone(),
                    source: d.source.describe(),
                    symptom: d.symptom.name(),
                    verdict: b.summary(),
                }
            })
            .collect()
    }

    /// An incident rebuilt from the journal.
    pub async fn incident(&self, id: &str) -> Result<Incident, Error> {
        let entries = self.inner.journal.entries(id).await?;
        Incident::from_entries(entries).ok_or_else(|| Error::UnknownIncident(id.to_string()))
    }

    /// Every incident in the journal, oldest first.
    pub async fn incidents(&self) -> Result<Vec<Incident>, Error> {
        let mut out = Vec::new();
        for id in self.inner.journal.incidents().await? {
            if let Some(i) = Incident::from_entries(self.inner.journal.entries(&id).await?) {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// The post-incident review of an incident (Markdown and JSON renderings on [`Review`]).
    pub async fn review(&self, id: &str) -> Result<Review, Error> {
        let incident = self.incident(id).await?;
        let playbook = self
            .inner
            .runbook
            .playbooks
            .iter()
            .find(|p| p.id == incident.record.playbook);
        Ok(Review::new(incident, playbook, &self.inner.runbook))
    }

    /// Run until `shutdown` completes. Sleeps on tokio's clock until the next probe is due (at most the
    /// tick interval), waking early for ingested signals, human commands and approvers' decisions.
    ///
    /// Each open incident is advanced concurrently with detection: while a remediation of one incident
    /// is in flight (up to the policy's timeouts), probes keep running on schedule and other incidents
    /// open and move on. At shutdown no new step starts; a step in flight is finished, never dropped
    /// half-applied. (Dropping the `run` future instead, say in a `select!` against Ctrl-C, cancels a
    /// step in flight: the journal then shows it started and never finished, and the next engine on
    /// that journal reports it for a human rather than re-running it. Prefer the `shutdown` future.)
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        self.drive(None, shutdown).await
    }

    /// Run for `d` of (tokio) time, as [`Engine::run`] does: rounds at every due time before `now + d`;
    /// a step still in flight at the end is finished before this returns.
    ///
    /// Unlike [`Engine::run`] with a sleep as its shutdown, no timer of its own is pending while the
    /// engine works, so on a paused clock nothing but the engine's own sleeps moves time.
    pub async fn run_for(&self, d: Duration) -> Result<(), Error> {
        self.drive(Some(Instant::now() + d), std::future::pending())
            .await
    }

    async fn next_wakeup(&self) -> Instant {
        let st = self.inner.state.lock().await;
        let cap = Instant::now() + self.inner.tick_interval;
        st.bindings
            .iter()
            .filter_map(|b| b.next_due)
            .min()
            .map(|t| t.min(cap))
            .unwrap_or(cap)
    }

    /// One round of work at the current time: detection, then every open incident moved forward as far
    /// as it can go, waiting for that (a remediation in flight included) before returning.
    ///
    /// [`Engine::run`] and [`Engine::run_for`] do not wait like this: while one incident's remediation
    /// is in flight they keep probing, detecting and working the other incidents.
    pub async fn tick(&self) -> Result<TickReport, Error> {
        let (mut report, jobs) = self.round().await?;
        let done = join_all(jobs.into_iter().map(|j| self.inner.work(j))).await;
        self.inner.finish(done, &mut report).await?;
        Ok(report)
    }

    /// Run ticks until `shutdown` completes, or for `d` of tokio time; see [`Engine::run`].
    async fn drive(
        &self,
        end: Option<Instant>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let inner = &*self.inner;
        let mut inflight = futures::stream::FuturesUnordered::new();
        let mut result = Ok(());
        'rounds: loop {
            match self.round().await {
                Ok((_, jobs)) => inflight.extend(jobs.into_iter().map(|j| inner.work(j))),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            let next = self.next_wakeup().await;
            let next = end.map_or(next, |e| next.min(e));
            loop {
                tokio::select! {
                    biased; // deterministic: shutdown wins a tie with the next round
                    _ = &mut shutdown => break 'rounds,
                    Some(done) = inflight.next(), if !inflight.is_empty() => {
                        // put back; it moves on in the next round
                        if let Err(e) = inner.finish(vec![done], &mut TickReport::default()).await {
                            result = Err(e);
                            break 'rounds;
                        }
                        // it may have asked for a fresh observation now (after a mitigation, or
                        // before acting on an approval): then a round runs at once
                        if self.next_wakeup().await <= Instant::now() {
                            break;
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(next) => {}
                    _ = inner.wake.notified() => {}
                }
                break;
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                break;
            }
        }
        // a step in flight is finished, never dropped half-applied
        while let Some(done) = inflight.next().await {
            let r = inner.finish(vec![done], &mut TickReport::default()).await;
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Detection and judgement under the state lock; returns the idle open incidents, taken out (marked
    /// busy) to be advanced without the lock.
    async fn round(&self) -> Result<(TickReport, Vec<Job>), Error> {
        let inner = &self.inner;
        let mut st = inner.state.lock().await;
        let st = &mut *st;
        inner.apply_commands(st).await?;
        let now = Instant::now();
        let mut report = TickReport {
            at: inner.clock.now(),
            ..TickReport::default()
        };

        // 1. Detect: scheduled probes that are due, concurrently under the semaphore.
        let due: Vec<usize> = st
            .bindings
            .iter()
            .enumerate()
            .filter(|(_, b)| b.next_due.is_some_and(|t| t <= now))
            .map(|(i, _)| i)
            .collect();
        let mut changed: Vec<(usize, Labels)> = Vec::with_capacity(due.len());
        if !due.is_empty() {
            let runs = due.iter().filter_map(|&i| {
                let b = &st.bindings[i];
                match (
                    &inner.runbook.playbooks[b.playbook].detectors[b.detector].source,
                    &b.probe_series,
                ) {
                    (Source::Probe { probe, schedule }, Some(series)) => {
                        Some((i, probe.clone(), schedule.deadline, series.clone()))
                    }
                    _ => None,
                }
            });
            // At most `max_concurrent_probes` futures in flight (the semaphore bounds them too, together
            // with diagnosis and recovery probes); results in binding order, whatever finished first.
            // (the futures are collected first: a closure inside the stream type would make the tick
            // future lose `Send` to a higher-ranked lifetime error)
            let futs: Vec<_> = runs
                .map(|(i, probe, deadline, series)| async move {
                    (
                        i,
                        inner.observe_with(probe.as_ref(), deadline, &series).await,
                    )
                })
                .collect();
            let mut results: Vec<_> = futures::stream::iter(futs)
                .buffer_unordered(inner.max_concurrent_probes)
                .collect()
                .await;
            results.sort_by_key(|(i, _)| *i);
            report.probes_run += results.len();
            for (i, res) in results {
                let at = inner.clock.now();
                let b = &mut st.bindings[i];
                let why = match &res {
                    Err(e) => Some(e.to_string()),
                    Ok(o) if !o.complete => Some(format!("incomplete: {}", o.gaps.join("; "))),
                    Ok(_) => None,
                };
                match why {
                    Some(why) => {
                        let since = b.blind_since.as_ref().map(|(t, _)| *t).unwrap_or(at);
                        b.blind_since = Some((since, why));
                    }
                    None => b.blind_since = None,
                }
                let keys = b.push(record(at, res));
                changed.extend(keys.into_iter().map(|k| (i, k)));
                b.prune(at, &st.open);
                if let Source::Probe { schedule, .. } =
                    &inner.runbook.playbooks[b.playbook].detectors[b.detector].source
                {
                    let j = jitter(&mut st.rng, schedule.jitter);
                    let b = &mut st.bindings[i];
                    b.next_due = Some(now + schedule.interval + j);
                }
            }
        }

        // 1b. Pushed signals. An alert is judged per alert instance: its own key (the playbook's key
        // labels, or else its alert fingerprint), so that one alert's resolution never clears another's.
        let signals: Vec<Signal> = inner
            .inbox
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for signal in signals {
            let at = inner.clock.now();
            let mut routed = false;
            for (i, b) in st.bindings.iter_mut().enumerate() {
                let p = &inner.runbook.playbooks[b.playbook];
                let routed_to = match (&p.detectors[b.detector].source, &signal) {
                    (Source::Alert { name, target }, Signal::Alert(alert))
                        if *name == alert.name =>
                    {
                        let key = if b.key_by.is_empty() {
                            Labels::new()
                        } else {
                            b.project(&alert.labels).unwrap_or_else(|| {
                                crate::observation::labels(&[(
                                    "alert_fingerprint",
                                    &alert.fingerprint,
                                )])
                            })
                        };
                        let obs = Observation::new("alertmanager", &target.name, at).fact(alert);
                        Some((key, obs))
                    }
                    (
                        Source::Manual { target },
                        Signal::Manual {
                            playbook,
                            report: r,
                        },
                    ) if *playbook == p.id => Some((
                        Labels::new(),
                        Observation::new("manual-report", &target.name, at).fact(r),
                    )),
                    _ => None,
                };
                if let Some((key, obs)) = routed_to {
                    b.group(key.clone(), at).history.push(Record {
                        at,
                        result: Ok(obs),
                    });
                    changed.push((i, key));
                    routed = true;
                }
            }
            if !routed {
                report.unrouted_signals += 1;
                tracing::warn!(?signal, "signal matched no detect binding");
            }
        }

        // 2. Judge the keys with new data; open incidents (one per incident key).
        for (i, key) in changed {
            let at = inner.clock.now();
            let b = &mut st.bindings[i];
            let p = &inner.runbook.playbooks[b.playbook];
            let d = &p.detectors[b.detector];
            let Some(g) = b.groups.get_mut(&key) else {
                continue;
            };
            let was_firing = g.verdict.is_firing();
            g.verdict = evaluate(d.symptom.as_ref(), &g.history, at, &mut g.state);
            b.verdicts.record(g.verdict.label());
            let Verdict::Firing(finding) = &g.verdict else {
                continue;
            };
            if let Some(open) = st.open.get(&g.fingerprint) {
                if !was_firing {
                    inner
                        .append(
                            open.id(),
                            Event::Refired {
                                verdict: g.verdict.clone(),
                            },
                        )
                        .await?;
                }
                continue;
            }
            let mut finding = finding.clone();
            if !key.is_empty()
                && !finding
                    .offending
                    .iter()
                    .any(|o| key.iter().all(|(k, v)| o.get(k) == Some(v)))
            {
                // the key's own series comes first: it is what this incident is about
                finding.offending.insert(0, key.clone());
            }
            let target = d.source.target().clone();
            let id = incident_id(at, &p.id, &mut st.id_rng);
            let latest_obs = g.history.latest().and_then(|r| r.result.as_ref().ok());
            let commit = latest_obs
                .and_then(|o| o.facts.get::<NessieCommit>())
                .and_then(Result::ok);
            let rec = IncidentRecord {
                id: id.clone(),
                fingerprint: g.fingerprint.clone(),
                key: key.clone(),
                playbook: p.id.clone(),
                title: p.title.clone(),
                service: p.service.clone(),
                opened_at: at,
                target: target.clone(),
                finding: finding.clone(),
                violated: finding.violated.clone(),
                nessie_commit: commit.as_ref().map(|c| c.hash.clone()),
                affected_pipelines: inner.runbook.impact.affected([target.name.as_str()]),
            };
            let span =
                tracing::info_span!("rb.phase", phase = "detect", incident = %id, playbook = %p.id);
            async {
                tracing::info!(target = %target, finding = %finding.summary, "incident opened");
            }
            .instrument(span)
            .await;
            inner
                .append(
                    &id,
                    Event::Opened {
                        record: Box::new(rec),
                    },
                )
                .await?;
            inner
                .append(
                    &id,
                    Event::Phase {
                        phase: Phase::Detect,
                    },
                )
                .await?;
            let detect_evidence = Evidence {
                source: d.source.describe(),
                target: target.name.clone(),
                at,
                summary: finding.summary.clone(),
                observation: latest_obs.cloned(),
                error: None,
            };
            inner
                .append(
                    &id,
                    Event::Evidence {
                        evidence: detect_evidence.clone(),
                    },
                )
                .await?;
            inner.metrics.inc(
                "rb_incidents_opened_total",
                vec![("playbook", p.id.clone())],
            );
            report.opened.push(id.clone());
            let checks = p
                .recovery
                .iter()
                .map(|_| Check::new(p.stability_window))
                .collect();
            st.open.insert(
                g.fingerprint.clone(),
                Slot::Idle(Box::new(Open {
                    id,
                    playbook: b.playbook,
                    binding: i,
                    key,
                    finding: Some(finding),
                    paged_role: None,
                    blind: false,
                    detect_is_probe: matches!(d.source, Source::Probe { .. }),
                    decided: None,
                    fresh_detect: false,
                    muted_until: None,
                    target,
                    stage: Stage::Diagnose,
                    halted: false,
                    mitigation_begun: false,
                    next_step: 0,
                    approval: None,
                    recover_started: None,
                    recovering_since: None,
                    recovery_escalated: false,
                    page: None,
                    checks,
                    evidence: vec![detect_evidence],
                    commit_known: commit.is_some(),
                    last_check_labels: Vec::new(),
                })),
            );
        }

        // 2b. A probe blind for too long opens an incident of its own.
        for i in 0..st.bindings.len() {
            let b = &st.bindings[i];
            let Some((since, why)) = &b.blind_since else {
                continue;
            };
            let at = inner.clock.now();
            let fingerprint = format!("blind:{}", b.base);
            if at.since(*since) < inner.blind_after || st.open.contains_key(&fingerprint) {
                continue;
            }
            let p = &inner.runbook.playbooks[b.playbook];
            let target = p.detectors[b.detector].source.target().clone();
            let summary = format!("cannot see {}: {} since {}", target.name, why, since);
            let id = incident_id(at, &format!("blind-{}", p.id), &mut st.id_rng);
            let finding = Finding::new("probe blind", summary.clone(), *since);
            let rec = IncidentRecord {
                id: id.clone(),
                fingerprint: fingerprint.clone(),
                key: Labels::new(),
                playbook: p.id.clone(),
                title: format!("Cannot see {} ({})", target.name, p.title),
                service: p.service.clone(),
                opened_at: at,
                target: target.clone(),
                finding: finding.clone(),
                violated: None,
                nessie_commit: None,
                affected_pipelines: inner.runbook.impact.affected([target.name.as_str()]),
            };
            tracing::warn!(incident = %id, %summary, "probe blind: incident opened");
            inner
                .append(
                    &id,
                    Event::Opened {
                        record: Box::new(rec),
                    },
                )
                .await?;
            inner
                .append(
                    &id,
                    Event::Phase {
                        phase: Phase::Detect,
                    },
                )
                .await?;
            report.opened.push(id.clone());
            let bp = b.playbook;
            st.open.insert(
                fingerprint,
                Slot::Idle(Box::new(Open::blind(id, bp, i, target, finding))),
            );
        }

        inner.publish_open(st);

        // 3. Take out every idle open incident, to be moved forward without the lock.
        let mut jobs = Vec::new();
        for (fingerprint, slot) in st.open.iter_mut() {
            let Some(open) = slot.take_idle() else {
                continue;
            };
            let b = &st.bindings[open.binding];
            let manual = matches!(
                inner.runbook.playbooks[b.playbook].detectors[b.detector].source,
                Source::Manual { .. }
            );
            let verdict = if open.blind {
                match &b.blind_since {
                    None => Verdict::Ok,
                    Some((_, why)) => Verdict::unknown(why.clone()),
                }
            } else {
                b.groups
                    .get(&open.key)
                    .map(|g| g.verdict.clone())
                    .unwrap_or_default()
            };
            jobs.push(Job {
                fingerprint: fingerprint.clone(),
                open,
                verdict,
                manual,
            });
        }
        Ok((report, jobs))
    }

    /// Rebuild open incidents from the journal (called by [`EngineBuilder::build`]).
    async fn resume(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let windows: Vec<_> = inner
            .journal
            .entries(crate::journal::MAINTENANCE)
            .await?
            .into_iter()
            .filter_map(|e| match e.event {
                Event::Maintenance { window } => Some(window),
                _ => None,
            })
            .collect();
        if let Ok(mut w) = inner.maintenance.lock() {
            *w = windows;
        }
        let mut st = inner.state.lock().await;
        for id in inner.journal.open_incidents().await? {
            let entries = inner.journal.entries(&id).await?;
            let Some(incident) = Incident::from_entries(entries) else {
                continue;
            };
            let rec = &incident.record;
            let found = inner
                .runbook
                .playbooks
                .iter()
                .position(|p| p.id == rec.playbook)
                .and_then(|pi| {
                    st.bindings
                        .iter()
                        .position(|b| {
                            b.playbook == pi
                                && (key_string(&b.base, &rec.key) == rec.fingerprint
                                    || format!("blind:{}", b.base) == rec.fingerprint)
                        })
                        .map(|bi| (pi, bi))
                });
            let Some((pi, bi)) = found else {
                inner
                    .append(
                        &id,
                        Event::Note {
                            text: format!(
                                "playbook {} is no longer in the runbook; closed for a human",
                                rec.playbook
                            ),
                        },
                    )
                    .await?;
                inner
                    .append(
                        &id,
                        Event::Closed {
                            resolution: Resolution::Escalated,
                        },
                    )
                    .await?;
                continue;
            };
            let p = &inner.runbook.playbooks[pi];
            let stage = match incident.phases.last() {
                None | Some(Phase::Detect) | Some(Phase::Diagnose) => Stage::Diagnose,
                Some(Phase::Mitigate) => Stage::Mitigate,
                Some(Phase::Recover) => Stage::Recover,
                Some(Phase::Review) => Stage::Review,
            };
            let mut page = None;
            for e in &incident.timeline {
                match &e.event {
                    Event::Escalated { notification, .. } => {
                        let sla = inner
                            .runbook
                            .on_call
                            .get(&notification.role)
                            .map(|c| c.sla)
                            .unwrap_or(secs(900));
                        page = Some(Page {
                            sent: Instant::now(),
                            role: notification.role.clone(),
                            due: Instant::now() + sla,
                            attempt: notification.attempt,
                        })
                    }
                    Event::Acknowledged { .. } => page = None,
                    _ => {}
                }
            }
            inner
                .append(
                    &id,
                    Event::Note {
                        text: format!("engine resumed the incident in phase {:?}", stage),
                    },
                )
                .await?;
            tracing::info!(incident = %id, ?stage, "resumed open incident");
            let detect_is_probe = matches!(
                st.bindings[bi].source_kind(&inner.runbook),
                Source::Probe { .. }
            );
            st.open.insert(
                rec.fingerprint.clone(),
                Slot::Idle(Box::new(Open {
                    id: id.clone(),
                    playbook: pi,
                    binding: bi,
                    key: rec.key.clone(),
                    finding: Some(rec.finding.clone()),
                    blind: rec.fingerprint.starts_with("blind:"),
                    detect_is_probe,
                    decided: None,
                    fresh_detect: false,
                    muted_until: None,
                    paged_role: incident.timeline.iter().rev().find_map(|e| match &e.event {
                        Event::Escalated { notification, .. } => Some(notification.role.clone()),
                        _ => None,
                    }),
                    target: rec.target.clone(),
                    stage,
                    halted: false,
                    mitigation_begun: stage == Stage::Mitigate,
                    next_step: 0,
                    approval: None,
                    recover_started: (stage == Stage::Recover).then(Instant::now),
                    recovering_since: None,
                    recovery_escalated: false,
                    page,
                    checks: p
                        .recovery
                        .iter()
                        .map(|_| Check::new(p.stability_window))
                        .collect(),
                    evidence: incident.evidence.clone(),
                    commit_known: rec.nessie_commit.is_some(),
                    last_check_labels: Vec::new(),
                })),
            );
        }
        inner.publish_open(&st);
        Ok(())
    }
}

impl Open {
    /// A "cannot see" incident of binding `binding`.
    fn blind(
        id: String,
        playbook: usize,
        binding: usize,
        target: Target,
        finding: Finding,
    ) -> Self {
        Open {
            id,
            playbook,
            binding,
            key: Labels::new(),
            finding: Some(finding),
            paged_role: None,
            blind: true,
            detect_is_probe: true,
            decided: None,
            fresh_detect: false,
            muted_until: None,
            target,
            stage: Stage::Diagnose,
            halted: false,
            mitigation_begun: false,
            next_step: 0,
            approval: None,
            recover_started: None,
            recovering_since: None,
            recovery_escalated: false,
            page: None,
            checks: Vec::new(),
            evidence: Vec::new(),
            commit_known: false,
            last_check_labels: Vec::new(),
        }
    }
}

impl Check {
    fn new(window: Duration) -> Self {
        Self {
            history: History::new(window * 2, 10_000),
            state: SymptomState::default(),
            verdict: Verdict::Unevaluated,
        }
    }
}

fn record(at: Timestamp, res: Result<Observation, ProbeError>) -> Record {
    Record {
        at,
        result: res.map_err(|e| Failure {
            kind: e.kind(),
            message: e.to_string(),
        }),
    }
}

fn compact(t: Timestamp) -> String {
    let s = t.rfc3339();
    // 2026-11-25T07:09:01.000Z -> 20261125-070901
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    format!(
        "{}-{}",
        &digits.get(..8).unwrap_or(""),
        &digits.get(8..14).unwrap_or("")
    )
}

/// The lock keys of a plan's targets and the incident's offending instance, sorted and deduplicated
/// (locks are taken in this order): restarting connector A does not put connector B in cool-down.
fn target_keys(plan: &Plan, instance: &Labels) -> Vec<String> {
    let mut keys: Vec<String> = plan
        .targets
        .iter()
        .map(|t| key_string(&t.key(), instance))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

enum StepResult {
    Continue,
    Halt,
    /// Plan (and ask) this step again.
    Again,
    /// Waiting for an approver; the step resumes in a later tick.
    Waiting,
}

impl Inner {
    /// The policy state; a poisoned lock (a panic elsewhere) still holds valid counters.
    fn policy_state(&self) -> std::sync::MutexGuard<'_, PolicyState> {
        self.policy_state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move one incident forward, outside the state lock.
    async fn work(&self, job: Job) -> Done {
        let mut open = job.open;
        let before = open.stage;
        let result = self.advance(&mut open, job.verdict, job.manual).await;
        Done {
            fingerprint: job.fingerprint,
            mitigated: before != Stage::Recover
                && open.stage == Stage::Recover
                && !self.runbook.playbooks[open.playbook].mitigation.is_empty(),
            open,
            result,
        }
    }

    /// Put advanced incidents back (closing those that reached Review), apply queued commands. Every
    /// incident is put back before the first error is returned.
    async fn finish(&self, done: Vec<Done>, report: &mut TickReport) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let mut first_err = None;
        for d in done {
            let mut open = d.open;
            match d.result {
                Ok(n) => report.probes_run += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(Slot::Busy {
                acked_at: Some(at), ..
            }) = st.open.get(&d.fingerprint)
            {
                // acknowledged while busy: that stops the page sent before it, not a newer one
                if open.page.as_ref().is_some_and(|p| p.sent <= *at) {
                    open.page = None;
                }
            }
            if d.mitigated || std::mem::take(&mut open.fresh_detect) {
                if let Some(b) = st.bindings.get_mut(open.binding) {
                    if b.next_due.is_some() {
                        b.next_due = Some(Instant::now());
                    }
                }
            }
            if open.stage == Stage::Review {
                st.open.remove(&d.fingerprint);
                report.closed.push(open.id.clone());
            } else {
                st.open.insert(d.fingerprint, Slot::Idle(open));
            }
        }
        self.apply_commands(&mut st).await?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Apply queued human commands, then publish the open-incident list.
    async fn apply_commands(&self, st: &mut State) -> Result<(), Error> {
        let cmds: Vec<Command> = self
            .commands
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        let mut later = Vec::new();
        for cmd in cmds {
            match cmd {
                Command::Ack { id, by } => {
                    match st.open.values_mut().find(|slot| slot.id() == id) {
                        Some(Slot::Idle(o)) => {
                            let msg = format!("acknowledged by {by}");
                            self.append(&id, Event::Acknowledged { by }).await?;
                            let (pb, role) = (o.playbook, o.paged_role.clone());
                            o.page = None;
                            self.follow_up(
                                &id,
                                pb,
                                role.as_deref(),
                                NotifyAction::Acknowledge,
                                msg,
                            )
                            .await?;
                        }
                        Some(Slot::Busy { acked_at, .. }) => {
                            self.append(&id, Event::Acknowledged { by }).await?;
                            *acked_at = Some(Instant::now());
                        }
                        None => {}
                    }
                }
                Command::Close { id, by } => {
                    let found = st
                        .open
                        .iter()
                        .find(|(_, slot)| slot.id() == id)
                        .map(|(k, slot)| (k.clone(), matches!(slot, Slot::Busy { .. })));
                    match found {
                        // a step in flight finishes first; the close follows
                        Some((_, true)) => later.push(Command::Close { id, by }),
                        Some((key, false)) => {
                            self.append(
                                &id,
                                Event::Phase {
                                    phase: Phase::Review,
                                },
                            )
                            .await?;
                            let msg = format!("closed by {by}");
                            let resolution = Resolution::ClosedByHuman { by };
                            self.append(&id, Event::Closed { resolution }).await?;
                            if let Some(Slot::Idle(o)) = st.open.remove(&key) {
                                self.follow_up(
                                    &id,
                                    o.playbook,
                                    o.paged_role.as_deref(),
                                    NotifyAction::Resolve,
                                    msg,
                                )
                                .await?;
                            }
                        }
                        None => {}
                    }
                }
            }
        }
        if !later.is_empty() {
            if let Ok(mut q) = self.commands.lock() {
                later.append(&mut q);
                *q = later;
            }
        }
        self.publish_open(st);
        Ok(())
    }

    fn publish_open(&self, st: &State) {
        let ids: Vec<String> = st.open.values().map(|o| o.id().to_string()).collect();
        self.metrics
            .set("rb_open_incidents", vec![], ids.len() as f64);
        if let Ok(mut v) = self.open_ids.lock() {
            *v = ids;
        }
    }

    async fn append(&self, incident: &str, event: Event) -> Result<u64, Error> {
        Ok(self
            .journal
            .append(incident, self.clock.now(), &event)
            .await?)
    }

    async fn observe(
        &self,
        probe: &dyn Probe,
        deadline: Duration,
    ) -> Result<Observation, ProbeError> {
        let series = self.metrics.probe_series(probe.id(), &probe.target().name);
        self.observe_with(probe, deadline, &series).await
    }

    async fn observe_with(
        &self,
        probe: &dyn Probe,
        deadline: Duration,
        series: &ProbeSeries,
    ) -> Result<Observation, ProbeError> {
        let _permit = self.probe_sem.acquire().await;
        let at = Instant::now() + deadline;
        let ctx = ProbeContext {
            deadline: at,
            clock: self.clock,
        };
        let started = Instant::now();
        let span =
            tracing::debug_span!("rb.probe", probe = %probe.id(), target = %probe.target().name);
        let res = async {
            let fut = probe.observe(&ctx);
            futures::pin_mut!(fut);
            // An answer that is ready at once needs no deadline timer (the common case for cached or
            // in-process probes); anything else runs under the deadline.
            if let std::task::Poll::Ready(r) = futures::poll!(&mut fut) {
                return r;
            }
            match tokio::time::timeout_at(at, fut).await {
                Ok(r) => r,
                Err(_) => Err(ProbeError::timeout(
                    probe.id(),
                    &probe.target().name,
                    "(probe deadline)",
                    deadline,
                )),
            }
        }
        .instrument(span)
        .await;
        let result = match &res {
            Ok(_) => ProbeResult::Ok,
            Err(e) if e.kind() == ErrorKind::Timeout => ProbeResult::Timeout,
            Err(e) => {
                tracing::debug!(error = %e, "probe failed");
                ProbeResult::Error
            }
        };
        series.record(result, started.elapsed());
        res
    }

    /// Move one incident forward; returns the number of probes it ran.
    async fn advance(&self, o: &mut Open, verdict: Verdict, manual: bool) -> Result<usize, Error> {
        let p = &self.runbook.playbooks[o.playbook];
        let mut probes = 0;
        // SLA: re-escalate when a page was not acknowledged in time.
        if let Some(page) = &o.page {
            if Instant::now() >= page.due {
                let (role, attempt) = (page.role.clone(), page.attempt);
                let next = self
                    .runbook
                    .on_call
                    .get(&role)
                    .and_then(|c| c.next.clone())
                    .unwrap_or(role.clone());
                let msg =
                    format!("page to {role} was not acknowledged within its SLA; paging {next}");
                self.page(o, p, next, EscalationReason::SlaMissed, msg, attempt + 1)
                    .await?;
            }
        }
        if o.blind {
            self.advance_blind(o, p, &verdict).await?;
            return Ok(probes);
        }
        if o.stage == Stage::Diagnose {
            let span = tracing::info_span!("rb.phase", phase = "diagnose", incident = %o.id, playbook = %p.id);
            probes += self.diagnose(o, p).instrument(span).await?;
            o.stage = Stage::Mitigate;
        }
        if o.stage == Stage::Mitigate && verdict == Verdict::Unevaluated {
            // resumed after a restart: wait for a fresh observation before acting
            return Ok(probes);
        }
        if o.stage == Stage::Mitigate {
            let span = tracing::info_span!("rb.phase", phase = "mitigate", incident = %o.id, playbook = %p.id);
            if !self.mitigate(o, p, &verdict).instrument(span).await? {
                // a step waits for its approver
                return Ok(probes);
            }
            self.append(
                &o.id,
                Event::Phase {
                    phase: Phase::Recover,
                },
            )
            .await?;
            o.stage = Stage::Recover;
            o.recover_started = Some(Instant::now());
            return Ok(probes);
        }
        if o.stage == Stage::Recover {
            let span = tracing::info_span!("rb.phase", phase = "recover", incident = %o.id, playbook = %p.id);
            probes += self
                .recover(o, p, &verdict, manual)
                .instrument(span)
                .await?;
        }
        if o.stage == Stage::Review {
            let span = tracing::info_span!("rb.phase", phase = "review", incident = %o.id, playbook = %p.id);
            async {
                tracing::info!("incident recovered; review written");
            }
            .instrument(span)
            .await;
            self.append(
                &o.id,
                Event::Phase {
                    phase: Phase::Review,
                },
            )
            .await?;
            self.append(
                &o.id,
                Event::Closed {
                    resolution: Resolution::Recovered,
                },
            )
            .await?;
            let role = o.paged_role.clone();
            self.follow_up(
                &o.id,
                o.playbook,
                role.as_deref(),
                NotifyAction::Resolve,
                "recovered".into(),
            )
            .await?;
        }
        Ok(probes)
    }

    /// A blind probe's incident: page once (then on SLA), close as soon as the probe sees again.
    async fn advance_blind(
        &self,
        o: &mut Open,
        p: &Playbook,
        verdict: &Verdict,
    ) -> Result<(), Error> {
        if o.stage == Stage::Diagnose {
            let msg = o
                .finding
                .as_ref()
                .map(|f| f.summary.clone())
                .unwrap_or_default();
            self.escalate(o, p, EscalationReason::NeedsHuman, msg)
                .await?;
            self.append(
                &o.id,
                Event::Phase {
                    phase: Phase::Recover,
                },
            )
            .await?;
            o.stage = Stage::Recover;
            o.recover_started = Some(Instant::now());
        }
        if o.stage == Stage::Recover && verdict.is_ok() {
            self.append(
                &o.id,
                Event::Note {
                    text: "the probe sees its target again".into(),
                },
            )
            .await?;
            self.append(
                &o.id,
                Event::Phase {
                    phase: Phase::Review,
                },
            )
            .await?;
            self.append(
                &o.id,
                Event::Closed {
                    resolution: Resolution::Recovered,
                },
            )
            .await?;
            let role = o.paged_role.clone();
            self.follow_up(
                &o.id,
                o.playbook,
                role.as_deref(),
                NotifyAction::Resolve,
                "the probe sees again".into(),
            )
            .await?;
            o.stage = Stage::Review;
        }
        Ok(())
    }

    async fn diagnose(&self, o: &mut Open, p: &Playbook) -> Result<usize, Error> {
        self.append(
            &o.id,
            Event::Phase {
                phase: Phase::Diagnose,
            },
        )
        .await?;
        let results = join_all(p.diagnosis.iter().map(|probe| async move {
            (
                probe,
                self.observe(probe.as_ref(), p.diagnosis_deadline).await,
            )
        }))
        .await;
        let n = results.len();
        for (probe, res) in results {
            let at = self.clock.now();
            let ev = match res {
                Ok(obs) => {
                    if !o.commit_known {
                        if let Some(Ok(c)) = obs.facts.get::<NessieCommit>() {
                            self.append(
                                &o.id,
                                Event::CommitLinked {
                                    reference: c.reference,
                                    hash: c.hash,
                                },
                            )
                            .await?;
                            o.commit_known = true;
                        }
                    }
                    Evidence {
                        source: probe.id().to_string(),
                        target: probe.target().name.clone(),
                        at,
                        summary: summarize(&obs),
                        observation: Some(obs),
                        error: None,
                    }
                }
                Err(e) => Evidence {
                    source: probe.id().to_string(),
                    target: probe.target().name.clone(),
                    at,
                    summary: format!("could not observe: {}", e.kind()),
                    observation: None,
                    error: Some(e.to_string()),
                },
            };
            self.append(
                &o.id,
                Event::Evidence {
                    evidence: ev.clone(),
                },
            )
            .await?;
            o.evidence.push(ev);
        }
        Ok(n)
    }

    /// Run the mitigation steps from `o.next_step` on. `Ok(false)` while a step waits for approval.
    async fn mitigate(&self, o: &mut Open, p: &Playbook, verdict: &Verdict) -> Result<bool, Error> {
        if !o.mitigation_begun {
            o.mitigation_begun = true;
            self.append(
                &o.id,
                Event::Phase {
                    phase: Phase::Mitigate,
                },
            )
            .await?;
            if p.mitigation.is_empty() {
                let msg = format!("{}: no automatic mitigation; a human must act", p.title);
                self.escalate(o, p, EscalationReason::NeedsHuman, msg)
                    .await?;
                return Ok(true);
            }
        }
        while let Some(st) = p.mitigation.get(o.next_step) {
            let rem = &st.remediation;
            let step = o.next_step;
            if o.halted {
                self.append(
                    &o.id,
                    Event::Skipped {
                        step,
                        action: rem.id().to_string(),
                        reason: "an earlier step failed or was refused".into(),
                    },
                )
                .await?;
                o.next_step += 1;
                continue;
            }
            if o.approval.is_none() && o.decided.is_none() {
                if let Some(w) = self.muted(o) {
                    if o.muted_until != Some(w.until) {
                        o.muted_until = Some(w.until);
                        self.append(
                            &o.id,
                            Event::Note {
                                text: format!(
                                    "step {step} ({}) waits: maintenance window on {} until {} ({}, set by {})",
                                    rem.id(),
                                    w.target,
                                    w.until,
                                    w.reason,
                                    w.by
                                ),
                            },
                        )
                        .await?;
                    }
                    return Ok(false);
                }
            }
            let span = tracing::info_span!("rb.remediation", action = %rem.id(), incident = %o.id, step = step);
            let waiting = o.approval.as_ref().is_some_and(|a| a.step == step)
                || o.decided.as_ref().is_some_and(|d| d.0 == step);
            let result = if waiting {
                self.resume_step(o, p, step, rem.as_ref(), verdict)
                    .instrument(span)
                    .await?
            } else {
                self.run_step(o, p, step, rem.as_ref(), verdict)
                    .instrument(span)
                    .await?
            };
            match result {
                StepResult::Waiting => return Ok(false),
                // the plan changed while a human decided: plan and ask again
                StepResult::Again => continue,
                StepResult::Halt if !p.continue_after_failure => o.halted = true,
                StepResult::Halt | StepResult::Continue => {}
            }
            o.next_step += 1;
        }
        Ok(true)
    }

    async fn refuse(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        action: &str,
        reason: String,
    ) -> Result<StepResult, Error> {
        tracing::warn!(%reason, "remediation refused");
        self.append(
            &o.id,
            Event::Refused {
                step,
                action: action.to_string(),
                reason: reason.clone(),
            },
        )
        .await?;
        self.metrics.inc(
            "rb_remediations_total",
            vec![
                ("action", action.to_string()),
                ("outcome", "refused".into()),
            ],
        );
        self.escalate(
            o,
            p,
            EscalationReason::ActionRefused,
            format!("{action} was not applied: {reason}"),
        )
        .await?;
        Ok(StepResult::Halt)
    }

    async fn fail(
        &self,
        o: &mut Open,
        p: &Playbook,
        action: &str,
        reason: String,
    ) -> Result<StepResult, Error> {
        self.metrics.inc(
            "rb_remediations_total",
            vec![("action", action.to_string()), ("outcome", "failed".into())],
        );
        self.escalate(
            o,
            p,
            EscalationReason::ActionFailed,
            format!("{action} failed: {reason}"),
        )
        .await?;
        Ok(StepResult::Halt)
    }

    /// One mitigation step under the safety envelope (see [`crate::policy`] for the order).
    async fn run_step(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        verdict: &Verdict,
    ) -> Result<StepResult, Error> {
        let action = rem.id().to_string();
        // at-most-once: the journal is the truth
        let entries = self.journal.entries(&o.id).await?;
        match step_state(&entries, step) {
            StepState::NotStarted => {}
            StepState::Planned if !self.policy.dry_run => {}
            StepState::Started if rem.idempotent() => {
                self.append(&o.id, Event::Note { text: format!("step {step} ({action}) was interrupted; it is idempotent, so it is applied again") })
                    .await?;
            }
            StepState::Started => {
                self.append(
                    &o.id,
                    Event::Interrupted {
                        step,
                        action: action.clone(),
                    },
                )
                .await?;
                let msg = format!("step {step} ({action}) was started but never finished (engine restart); it is not idempotent, so it is not re-run: check its target by hand");
                self.escalate(o, p, EscalationReason::StepInterrupted, msg)
                    .await?;
                return Ok(StepResult::Halt);
            }
            StepState::Failed | StepState::Refused | StepState::Interrupted => {
                return Ok(StepResult::Halt)
            }
            _ => return Ok(StepResult::Continue),
        }
        if self.kill.is_engaged() {
            return self
                .refuse(o, p, step, &action, "the kill switch is engaged".into())
                .await;
        }
        if let Verdict::Unknown { why } = verdict {
            return self
                .refuse(
                    o,
                    p,
                    step,
                    &action,
                    format!("no action on unknown data: {why}"),
                )
                .await;
        }
        let ctx = self.action_context(o, p, step, &entries);
        let plan = match tokio::time::timeout(self.policy.apply_timeout, rem.plan(&ctx)).await {
            Ok(Ok(plan)) => plan,
            Ok(Err(e)) => {
                return self
                    .refuse(o, p, step, &action, format!("could not plan: {e}"))
                    .await
            }
            Err(_) => {
                return self
                    .refuse(
                        o,
                        p,
                        step,
                        &action,
                        format!(
                            "planning took longer than {}",
                            human(self.policy.apply_timeout)
                        ),
                    )
                    .await
            }
        };
        self.append(
            &o.id,
            Event::Planned {
                step,
                plan: plan.clone(),
                dry_run: self.policy.dry_run,
            },
        )
        .await?;
        if let Some(why) = &plan.nothing_to_do {
            self.append(
                &o.id,
                Event::Skipped {
                    step,
                    action: action.clone(),
                    reason: format!("nothing to do: {why}"),
                },
            )
            .await?;
            self.metrics.inc(
                "rb_remediations_total",
                vec![
                    ("action", action.clone()),
                    ("outcome", "nothing_to_do".into()),
                ],
            );
            return Ok(StepResult::Continue);
        }
        if let Err(reason) = self.policy.blast_radius.check(&plan, &self.fleet) {
            return self.refuse(o, p, step, &action, reason).await;
        }
        if self.policy.dry_run {
            self.append(
                &o.id,
                Event::Skipped {
                    step,
                    action: action.clone(),
                    reason: "dry-run: planned only".into(),
                },
            )
            .await?;
            self.metrics.inc(
                "rb_remediations_total",
                vec![("action", action.clone()), ("outcome", "dry_run".into())],
            );
            return Ok(StepResult::Continue);
        }
        let risk = plan.effective_risk(rem.risk());
        if !risk.needs_approval() && !rem.requires_human() {
            return self.apply_step(o, p, step, rem, plan, ctx).await;
        }
        // cool-down, backoff and budgets: a human is not asked for what would be refused anyway
        // (apply_step checks them again, under the target locks)
        if let Err(reason) = self.check_rates(&target_keys(&plan, &o.key), &action, &o.id) {
            return self.refuse(o, p, step, &action, reason).await;
        }
        // approval: an approver that answers at once (auto, deny, a policy) decides within this tick;
        // a human is waited for in a task of its own while the engine goes on (a later tick resumes)
        let req = ApprovalRequest {
            incident: o.id.clone(),
            playbook: p.id.clone(),
            step,
            risk,
            plan: plan.clone(),
        };
        let approver = self.approver.clone();
        let timeout = approver.timeout();
        let mut ask = Box::pin(async move {
            match tokio::time::timeout(timeout, approver.approve(&req)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => Decision::Denied {
                    by: "approver".into(),
                    reason: format!("approver failed: {e}"),
                },
                Err(_) => Decision::TimedOut,
            }
        });
        if let Poll::Ready(decision) = futures::poll!(&mut ask) {
            return self
                .decided(o, p, step, rem, plan, ctx, decision, verdict, false)
                .await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let wake = self.wake.clone();
        let task = tokio::spawn(
            async move {
                let decision = ask.await;
                // the receiver is gone only when the incident was closed meanwhile
                let _ = tx.send(decision);
                wake.notify_one();
            }
            .in_current_span(),
        );
        self.append(
            &o.id,
            Event::AwaitingApproval {
                step,
                action: action.clone(),
                risk,
                timeout_secs: timeout.as_secs(),
            },
        )
        .await?;
        tracing::info!(timeout = %human(timeout), "waiting for approval");
        o.approval = Some(PendingApproval {
            step,
            plan,
            ctx,
            decision: rx,
            _task: AbortOnDrop(task),
        });
        Ok(StepResult::Waiting)
    }

    /// A later tick looks at the step waiting for its approver.
    async fn resume_step(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        verdict: &Verdict,
    ) -> Result<StepResult, Error> {
        use tokio::sync::oneshot::error::TryRecvError;
        if let Some((s, decision, plan)) = o.decided.take() {
            if s == step {
                // the round that brought this call observed the detect probe afresh
                let entries = self.journal.entries(&o.id).await?;
                let ctx = self.action_context(o, p, step, &entries);
                return self
                    .decided(o, p, step, rem, plan, ctx, decision, verdict, true)
                    .await;
            }
        }
        let Some(mut pending) = o.approval.take() else {
            return self.run_step(o, p, step, rem, verdict).await;
        };
        let decision = match pending.decision.try_recv() {
            Ok(d) => d,
            Err(TryRecvError::Empty) if !self.kill.is_engaged() => {
                o.approval = Some(pending);
                return Ok(StepResult::Waiting);
            }
            Err(TryRecvError::Empty) => {
                // the kill switch withdraws the question at once (dropping it aborts the task)
                let action = rem.id().to_string();
                return self
                    .refuse(o, p, step, &action, "the kill switch is engaged".into())
                    .await;
            }
            Err(TryRecvError::Closed) => Decision::Denied {
                by: "approver".into(),
                reason: "the approver's task ended without a decision".into(),
            },
        };
        let PendingApproval { plan, ctx, .. } = pending;
        if o.detect_is_probe && matches!(decision, Decision::Granted { .. }) {
            // observe the detect probe again before acting on a decision that took a while: the
            // next round runs it at once and brings the fresh verdict here
            o.decided = Some((step, decision, plan));
            o.fresh_detect = true;
            return Ok(StepResult::Waiting);
        }
        self.decided(o, p, step, rem, plan, ctx, decision, verdict, true)
            .await
    }

    /// Journal the approver's decision and act on it. After a wait, the world is looked at again: the
    /// kill switch and unknown data still stop the step.
    #[allow(clippy::too_many_arguments)]
    async fn decided(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        plan: Plan,
        ctx: ActionContext,
        decision: Decision,
        verdict: &Verdict,
        waited: bool,
    ) -> Result<StepResult, Error> {
        let action = rem.id().to_string();
        self.append(
            &o.id,
            Event::Approval {
                step,
                decision: decision.clone(),
                plan_hash: Some(plan.hash()),
            },
        )
        .await?;
        match decision {
            Decision::Granted { .. } if self.approver.is_automatic() => {
                // minimum approval per risk: an automatic grant never covers a step that demands a
                // human, nor a destructive one unless the policy says so
                let risk = plan.effective_risk(rem.risk());
                if rem.requires_human() {
                    let reason = format!(
                        "{action} needs a human's approval; an automatic approver cannot grant it"
                    );
                    return self.refuse(o, p, step, &action, reason).await;
                }
                if risk == Risk::Destructive && !self.policy.auto_approve_destructive {
                    let reason = "a destructive step needs a human's approval (the policy does not let automatic approval grant it)".to_string();
                    return self.refuse(o, p, step, &action, reason).await;
                }
            }
            Decision::Granted { .. } => {}
            Decision::Denied { by, reason } => {
                return self
                    .refuse(
                        o,
                        p,
                        step,
                        &action,
                        format!("approval denied by {by}: {reason}"),
                    )
                    .await
            }
            Decision::TimedOut => {
                let reason = format!("no approval within {}", human(self.approver.timeout()));
                return self.refuse(o, p, step, &action, reason).await;
            }
        }
        if waited {
            if self.kill.is_engaged() {
                return self
                    .refuse(o, p, step, &action, "the kill switch is engaged".into())
                    .await;
            }
            if let Verdict::Unknown { why } = verdict {
                let reason = format!("approved, but the data is unknown now: {why}");
                return self.refuse(o, p, step, &action, reason).await;
            }
            if !verdict.is_firing() && !matches!(verdict, Verdict::Unevaluated) {
                self.append(
                    &o.id,
                    Event::Skipped {
                        step,
                        action: action.clone(),
                        reason: format!(
                            "approved, but the symptom no longer fires ({}): nothing applied",
                            verdict.label()
                        ),
                    },
                )
                .await?;
                return Ok(StepResult::Continue);
            }
            // plan again on what is true now: apply only what was approved
            let fresh = match tokio::time::timeout(self.policy.apply_timeout, rem.plan(&ctx)).await
            {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    return self
                        .refuse(o, p, step, &action, format!("could not plan again: {e}"))
                        .await
                }
                Err(_) => {
                    return self
                        .refuse(o, p, step, &action, "planning again timed out".into())
                        .await
                }
            };
            if !fresh.same_action(&plan) {
                self.append(
                    &o.id,
                    Event::Note {
                        text: format!(
                            "step {step} ({action}): the plan changed while waiting for approval (approved {}, now {}: {}); asking again",
                            plan.hash(),
                            fresh.hash(),
                            fresh.description
                        ),
                    },
                )
                .await?;
                return Ok(StepResult::Again);
            }
        }
        self.apply_step(o, p, step, rem, plan, ctx).await
    }

    /// Cool-down, backoff and rate budgets for `action` of `incident` on `keys`, now.
    fn check_rates(&self, keys: &[String], action: &str, incident: &str) -> Result<(), String> {
        let ps = &mut *self.policy_state();
        let now = Instant::now();
        keys.iter()
            .try_for_each(|k| ps.check_cooldown(&self.policy, k, action, incident, now))
            .and_then(|_| ps.check_budgets(&self.policy, keys, now))
    }

    /// Keyed concurrency, the rate checks again, then apply (journaled before and after) and verify.
    async fn apply_step(
        &self,
        o: &mut Open,
        p: &Playbook,
        step: usize,
        rem: &dyn Remediation,
        plan: Plan,
        ctx: ActionContext,
    ) -> Result<StepResult, Error> {
        let action = rem.id().to_string();
        // keyed concurrency: one remediation per target and offending instance at a time (locks taken in
        // key order); cool-down and backoff follow the same keys
        let keys = target_keys(&plan, &o.key);
        // (std mutex guards never live across an await: the engine's futures stay Send)
        let locks: Vec<_> = {
            let mut ps = self.policy_state();
            keys.iter().map(|k| (k.clone(), ps.lock_for(k))).collect()
        };
        let mut guards = Vec::with_capacity(locks.len());
        for (key, lock) in &locks {
            match tokio::time::timeout(self.policy.target_lock_wait, lock.clone().lock_owned())
                .await
            {
                Ok(g) => guards.push(g),
                Err(_) => {
                    let reason = format!(
                        "another remediation held {key} for longer than {}",
                        human(self.policy.target_lock_wait)
                    );
                    return self.refuse(o, p, step, &action, reason).await;
                }
            }
        }
        // cool-down, backoff and budgets, under the locks
        if let Err(reason) = self.check_rates(&keys, &action, &o.id) {
            return self.refuse(o, p, step, &action, reason).await;
        }
        // apply: journaled before and after; retried only when idempotent and transient, with backoff
        let retries = if rem.idempotent() {
            self.policy.idempotent_retries
        } else {
            0
        };
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.policy.retry_backoff.max(Duration::from_millis(100)))
            .with_max_delay(self.policy.retry_backoff.max(Duration::from_millis(100)) * 16)
            .with_jitter()
            .with_max_times(retries as usize)
            .build();
        let mut attempt = 1;
        let outcome = loop {
            self.append(
                &o.id,
                Event::Started {
                    step,
                    action: action.clone(),
                    attempt,
                },
            )
            .await?;
            self.policy_state()
                .record(&keys, &action, &o.id, Instant::now());
            let res = tokio::time::timeout(self.policy.apply_timeout, rem.apply(&plan, &ctx)).await;
            let (record, transient, unknown) = match res {
                Ok(Ok(outcome)) => {
                    self.append(
                        &o.id,
                        Event::Finished {
                            step,
                            action: action.clone(),
                            ok: true,
                            outcome: Some(outcome.clone()),
                            error: None,
                            error_detail: None,
                            outcome_unknown: false,
                        },
                    )
                    .await?;
                    break outcome;
                }
                Ok(Err(e)) => {
                    let unknown = e.kind() == ErrorKind::OutcomeUnknown;
                    (e.record(), e.is_transient() || unknown, unknown)
                }
                Err(_) => (
                    crate::error::ErrorRecord {
                        kind: ErrorKind::OutcomeUnknown,
                        message: format!(
                            "no answer within {}: the outcome is unknown",
                            human(self.policy.apply_timeout)
                        ),
                        details: serde_json::Value::Null,
                    },
                    true,
                    true,
                ),
            };
            let error = record.message.clone();
            self.append(
                &o.id,
                Event::Finished {
                    step,
                    action: action.clone(),
                    ok: false,
                    outcome: None,
                    error: Some(error.clone()),
                    error_detail: Some(record),
                    outcome_unknown: unknown,
                },
            )
            .await?;
            // a non-idempotent action is never retried, least of all when its outcome is unknown
            if transient && rem.idempotent() {
                if let Some(delay) = backoff.next() {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            drop(guards);
            if unknown {
                self.metrics.inc(
                    "rb_remediations_total",
                    vec![("action", action.clone()), ("outcome", "unknown".into())],
                );
                self.escalate(
                    o,
                    p,
                    EscalationReason::ActionFailed,
                    format!("{action}: outcome unknown ({error}); it is not re-run: check its target by hand"),
                )
                .await?;
                return Ok(StepResult::Halt);
            }
            return self.fail(o, p, &action, error).await;
        };
        drop(guards);
        self.metrics.inc(
            "rb_remediations_total",
            vec![("action", action.clone()), ("outcome", "applied".into())],
        );
        // verify: again, with backoff, while inconclusive and within the remediation's deadline;
        // inconclusive at the deadline is not success
        let deadline = Instant::now() + rem.verify_within();
        let mut delay = self.policy.retry_backoff.max(Duration::from_millis(100));
        let mut tries = 0u32;
        let verification = loop {
            tries += 1;
            let budget = self.policy.apply_timeout.min(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(secs(1)),
            );
            let v = match tokio::time::timeout(budget, rem.verify(&plan, &outcome, &ctx)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => Verification::Inconclusive { why: e.to_string() },
                Err(_) => Verification::Inconclusive {
                    why: "verification timed out".into(),
                },
            };
            match v {
                Verification::Inconclusive { why } if Instant::now() + delay <= deadline => {
                    tracing::debug!(%why, tries, "verification inconclusive; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(secs(60));
                }
                Verification::Inconclusive { why } if !rem.verify_within().is_zero() => {
                    break Verification::Failed {
                        evidence: format!(
                            "still inconclusive after {} ({tries} tries): {why}",
                            human(rem.verify_within())
                        ),
                    };
                }
                other => break other,
            }
        };
        self.append(
            &o.id,
            Event::Verified {
                step,
                verification: verification.clone(),
            },
        )
        .await?;
        if let Verification::Failed { evidence } = verification {
            return self
                .fail(o, p, &action, format!("verification failed: {evidence}"))
                .await;
        }
        Ok(StepResult::Continue)
    }

    /// The maintenance window holding this incident's actions back now, if any.
    fn muted(&self, o: &Open) -> Option<crate::policy::MaintenanceWindow> {
        let now = self.clock.now();
        self.maintenance
            .lock()
            .ok()?
            .iter()
            .filter(|w| w.covers(&o.target.name, &o.key, now))
            .max_by_key(|w| w.until)
            .cloned()
    }

    /// The context a remediation sees: the incident, what broke, the evidence, and the outputs of the
    /// steps before it (rebuilt from the journal, so a resumed engine hands on the same).
    fn action_context(
        &self,
        o: &Open,
        p: &Playbook,
        step: usize,
        entries: &[crate::journal::Entry],
    ) -> ActionContext {
        let outputs = step_outputs(entries)
            .into_iter()
            .filter_map(|(i, out)| p.mitigation.get(i).map(|s| (s.id.clone(), out)))
            .collect();
        let step_id = p
            .mitigation
            .get(step)
            .map(|s| s.id.clone())
            .unwrap_or_default();
        let mut ctx = ActionContext::detached(self.clock, self.policy.apply_timeout);
        ctx.incident = o.id.clone();
        ctx.playbook = p.id.clone();
        ctx.step = step;
        ctx.step_id = step_id;
        ctx.target = Some(o.target.clone());
        ctx.key = o.key.clone();
        ctx.finding = o.finding.clone();
        ctx.evidence = o.evidence.clone();
        ctx.outputs = outputs;
        ctx.dry_run = self.policy.dry_run;
        ctx.progress = Some(ProgressSink {
            journal: self.journal.clone(),
            incident: o.id.clone(),
            step,
            clock: self.clock,
            written: Default::default(),
        });
        ctx
    }

    async fn recover(
        &self,
        o: &mut Open,
        p: &Playbook,
        verdict: &Verdict,
        manual: bool,
    ) -> Result<usize, Error> {
        let mut probes = 0;
        let results = join_all(
            p.recovery
                .iter()
                .map(|c| self.observe(c.probe.as_ref(), p.diagnosis_deadline)),
        )
        .await;
        let mut labels = Vec::with_capacity(results.len() + 1);
        // A manual report has no metric to clear: only its recovery checks (if any) or a human close it.
        let mut all_ok = if manual {
            !p.recovery.is_empty()
        } else {
            verdict.is_ok()
        };
        labels.push(if manual { "manual" } else { verdict.label() });
        for ((check, res), c) in p.recovery.iter().zip(results).zip(o.checks.iter_mut()) {
            probes += 1;
            let at = self.clock.now();
            c.history.push(record(at, res));
            c.verdict = evaluate(check.symptom.as_ref(), &c.history, at, &mut c.state);
            all_ok &= c.verdict.is_ok();
            labels.push(c.verdict.label());
        }
        if labels != o.last_check_labels {
            if !manual {
                self.append(
                    &o.id,
                    Event::Recovery {
                        check: p
                            .detectors
                            .first()
                            .map(|d| d.symptom.name())
                            .unwrap_or_default(),
                        verdict: verdict.clone(),
                    },
                )
                .await?;
            }
            for (check, c) in p.recovery.iter().zip(o.checks.iter()) {
                self.append(
                    &o.id,
                    Event::Recovery {
                        check: check.symptom.name(),
                        verdict: c.verdict.clone(),
                    },
                )
                .await?;
            }
            o.last_check_labels = labels;
        }
        let now = Instant::now();
        if all_ok {
            let since = *o.recovering_since.get_or_insert(now);
            if now.duration_since(since) >= p.stability_window {
                o.stage = Stage::Review;
                return Ok(probes);
            }
        } else {
            o.recovering_since = None;
        }
        let started = *o.recover_started.get_or_insert(now);
        if !o.recovery_escalated && now.duration_since(started) >= p.recovery_deadline {
            o.recovery_escalated = true;
            let msg = format!(
                "{}: not recovered {} after mitigation",
                p.title,
                human(p.recovery_deadline)
            );
            self.escalate(o, p, EscalationReason::RecoveryTimedOut, msg)
                .await?;
        }
        Ok(probes)
    }

    async fn escalate(
        &self,
        o: &mut Open,
        p: &Playbook,
        reason: EscalationReason,
        message: String,
    ) -> Result<(), Error> {
        let role = p
            .escalate_to
            .clone()
            .unwrap_or_else(|| self.runbook.default_role.clone());
        let attempt = o.page.as_ref().map(|pg| pg.attempt + 1).unwrap_or(1);
        self.page(o, p, role, reason, message, attempt).await
    }

    async fn page(
        &self,
        o: &mut Open,
        p: &Playbook,
        role: String,
        reason: EscalationReason,
        message: String,
        attempt: u32,
    ) -> Result<(), Error> {
        let contact = self.runbook.on_call.get(&role);
        let sla = contact.map(|c| c.sla).unwrap_or(secs(900));
        let n = Notification {
            action: NotifyAction::Trigger,
            dedup_key: o.id.clone(),
            incident: o.id.clone(),
            playbook: p.id.clone(),
            role: role.clone(),
            channel: contact
                .map(|c| c.channel.clone())
                .unwrap_or_else(|| "unrouted".into()),
            reason: reason.clone(),
            message: format!("[{}] {} on {}: {}", o.id, p.title, o.target, message),
            attempt,
            ack_due: self.clock.now().plus(sla),
        };
        let error = self.deliver(&n).await.err();
        self.metrics.inc(
            "rb_escalations_total",
            vec![("role", role.clone()), ("reason", format!("{reason:?}"))],
        );
        self.append(
            &o.id,
            Event::Escalated {
                notification: n,
                error,
            },
        )
        .await?;
        o.paged_role = Some(role.clone());
        o.page = Some(Page {
            sent: Instant::now(),
            role,
            due: Instant::now() + sla,
            attempt,
        });
        Ok(())
    }
}

impl Inner {
    /// Send one notification under the notify timeout; the error as text.
    async fn deliver(&self, n: &Notification) -> Result<(), String> {
        match tokio::time::timeout(self.policy.notify_timeout, self.notifier.notify(n)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the notifier gave no answer within {}",
                human(self.policy.notify_timeout)
            )),
        }
    }

    /// Tell the paging system that an incident paged earlier was acknowledged or resolved, and journal
    /// what came of it. Nothing is sent for an incident that never paged.
    async fn follow_up(
        &self,
        incident: &str,
        playbook: usize,
        role: Option<&str>,
        action: NotifyAction,
        message: String,
    ) -> Result<(), Error> {
        let Some(role) = role else {
            return Ok(());
        };
        let contact = self.runbook.on_call.get(role);
        let n = Notification {
            action,
            dedup_key: incident.to_string(),
            incident: incident.to_string(),
            playbook: self
                .runbook
                .playbooks
                .get(playbook)
                .map(|p| p.id.clone())
                .unwrap_or_default(),
            role: role.to_string(),
            channel: contact
                .map(|c| c.channel.clone())
                .unwrap_or_else(|| "unrouted".into()),
            reason: EscalationReason::NeedsHuman,
            message,
            attempt: 0,
            ack_due: self.clock.now(),
        };
        let text = match self.deliver(&n).await {
            Ok(()) => format!("{action:?} sent to {} ({})", n.role, n.channel),
            Err(e) => format!("{action:?} to {} ({}) failed: {e}", n.role, n.channel),
        };
        self.append(incident, Event::Note { text }).await?;
        Ok(())
    }
}

fn summarize(obs: &Observation) -> String {
    let mut parts = Vec::new();
    for s in obs.samples.iter().take(4) {
        if s.labels.is_empty() {
            parts.push(format!("{}={}", s.name, s.value));
        } else {
            let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.push(format!("{}{{{}}}={}", s.name, l.join(","), s.value));
        }
    }
    if obs.samples.len() > 4 {
        parts.push(format!("… {} samples", obs.samples.len()));
    }
    let kinds: Vec<&str> = obs.facts.kinds().collect();
    if !kinds.is_empty() {
        parts.push(format!("facts: {}", kinds.join(", ")));
    }
    if !obs.complete {
        parts.push(format!("INCOMPLETE: {}", obs.gaps.join("; ")));
    }
    if parts.is_empty() {
        "observed (no samples)".into()
    } else {
        parts.join("; ")
    }
}
