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

use crate::coordination::{Coordinator, InProcessCoordinator};
use crate::error::{Error, ErrorKind, ProbeError};
use crate::escalation::{EscalationReason, LogNotifier, Notification, Notifier, NotifyAction};
use crate::incident::{step_state_of, Incident, IncidentRecord, Phase, Resolution, StepState};
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

mod coord;
mod detect;
mod escalate;
mod ledger;
mod lifecycle;
mod mitigate;
mod recover;
mod resume;
mod run;

use detect::{compact, key_string, record};
use escalate::summarize;

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
    coordinator: Option<Arc<dyn Coordinator>>,
    holder: Option<String>,
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
            coordinator: None,
            holder: None,
        }
    }

    /// The coordination store shared with other engines on the same journal (default: a fresh
    /// [`InProcessCoordinator`], which coordinates nothing but this engine). Engines sharing a journal
    /// must share a coordinator: it keeps them from opening an incident twice and from applying a
    /// step twice (see [`crate::coordination`]).
    pub fn coordinator(mut self, coordinator: Arc<dyn Coordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// This engine's name as a holder of claims and leases, journaled with every step it starts
    /// (default: `rb-` and 16 random hex digits). Engines sharing a coordinator need distinct names.
    pub fn holder(mut self, name: impl Into<String>) -> Self {
        self.holder = Some(name.into());
        self
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
            let idents = detect::detector_idents(p)?;
            for (di, (d, ident)) in p.detectors.iter().zip(idents).enumerate() {
                // the detect history also serves recovery checks judged on the detect stream
                let lookback = p
                    .recovery
                    .iter()
                    .filter(|c| c.probe.is_none())
                    .map(|c| c.symptom.lookback())
                    .fold(d.symptom.lookback(), Duration::max);
                let (next_due, interval) = match &d.source {
                    Source::Probe { schedule, .. } => (
                        Some(now + jitter(&mut rng, schedule.jitter)),
                        schedule.interval,
                    ),
                    _ => (None, secs(60)),
                };
                // only what the symptoms judged on this stream read, and the commit the engine records
                let reads = p
                    .recovery
                    .iter()
                    .filter(|c| c.probe.is_none())
                    .fold(d.symptom.reads(), |r, c| r.union(c.symptom.reads()))
                    .union(crate::symptom::Reads::fact(
                        <NessieCommit as crate::FactType>::KIND,
                    ));
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
                    ident,
                    reads,
                    unread: None,
                    key_by,
                    groups: BTreeMap::new(),
                    max_age,
                    max_len,
                    blind_since: None,
                    journaled_blind: None,
                    next_due,
                    probe_series: match &d.source {
                        Source::Probe { probe, .. } => {
                            Some(metrics.probe_series(probe.name(), &probe.target().name))
                        }
                        _ => None,
                    },
                    verdicts: metrics.verdict_series(&p.id),
                });
            }
        }
        let fleet = self.runbook.fleet();
        let id_rng = match self.id_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let holder = self
            .holder
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| {
                let mut r = match self.id_seed {
                    Some(seed) => StdRng::seed_from_u64(seed ^ 0x686f_6c64_6572),
                    None => StdRng::from_entropy(),
                };
                format!("rb-{:016x}", r.gen::<u64>())
            });
        let coordinator = self
            .coordinator
            .unwrap_or_else(|| Arc::new(InProcessCoordinator::new()));
        let inner = Arc::new(Inner {
            fleet,
            runbook_version: self.runbook.version(),
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
                id_rng,
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
            coordinator,
            holder,
            incident_leases: Mutex::new(Default::default()),
            adopt_later: Mutex::new(Vec::new()),
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
    /// [`Runbook::version`], computed once.
    runbook_version: String,
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
    /// The coordination store shared with the other engines on the journal.
    coordinator: Arc<dyn Coordinator>,
    /// This engine's name as a holder of claims and leases.
    holder: String,
    /// The leases on the work of the open incidents this engine holds, by incident id.
    incident_leases: Mutex<std::collections::HashMap<String, crate::coordination::Lease>>,
    /// Open incidents found in the journal whose work another engine held: adopted when its lease
    /// lapses.
    adopt_later: Mutex<Vec<String>>,
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
    /// The detector's identity, which its journaled detection state (streaks, blind since) and its blind
    /// incident are keyed by: `base` when it is the playbook's only detector on its target, else `base`
    /// and the source's name (`/kafka.consumer_lag/orders`), so two probes of one kind on one target
    /// never share them.
    ident: String,
    /// What the binding's symptoms read: the rest of an observation is not kept in its history.
    reads: crate::symptom::Reads,
    /// The rest of the newest observation (what the symptoms do not read), for the evidence of an
    /// incident opened on it.
    unread: Option<Unread>,
    /// The labels incidents are keyed by (empty: per target).
    key_by: Vec<String>,
    /// One judgement per incident key: a single group (empty labels) when keyed per target.
    groups: BTreeMap<Labels, Box<Group>>,
    max_age: Duration,
    max_len: usize,
    /// Since when the probe has not seen its target (an error or an incomplete observation), and why.
    blind_since: Option<(Timestamp, String)>,
    /// The blind-since time last journaled ([`Event::Blind`]).
    journaled_blind: Option<Timestamp>,
    next_due: Option<Instant>,
    probe_series: Option<Arc<ProbeSeries>>,
    verdicts: Arc<VerdictSeries>,
}

/// What the symptoms of a binding do not read of its newest observation.
#[derive(Debug)]
struct Unread {
    at: Timestamp,
    samples: Vec<Sample>,
    facts: crate::observation::Facts,
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
    /// The start of the for-duration streak last journaled ([`Event::Streak`]).
    journaled_streak: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Diagnose,
    Mitigate,
    Recover,
    Review,
}

#[derive(Debug)]
struct Check {
    /// When its probe runs next (checks with a schedule of their own).
    next_due: Option<Instant>,
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
    /// When the incident opened.
    opened_at: Timestamp,
    /// What the incident's journal decides (phase, page, recovery timers), folded from its events.
    ledger: ledger::Ledger,
    /// The diagnosis ran in this process (it is not journaled as a phase of its own: a resumed
    /// incident still in Diagnose is diagnosed again, on fresh data).
    diagnosed: bool,
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
    /// When the staged step being waited for is due (journaled once).
    staged_until: Option<Timestamp>,
    /// The detect key's history, handed over for recovery checks judged on the detect stream.
    detect_snapshot: Option<History>,
    target: Target,
    halted: bool,
    /// The next mitigation step to run.
    next_step: usize,
    /// The step waiting for its approver, if any.
    approval: Option<PendingApproval>,
    /// Since when every recovery verdict has been ok (the stability window's start).
    recovering_since: Option<Timestamp>,
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
    /// on meanwhile. An acknowledgement made meanwhile is journaled at once; the incident's next
    /// move folds it from the journal, like one given through another engine.
    Busy { id: String },
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

    /// The coordination store this engine shares with other engines.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.inner.coordinator
    }

    /// This engine's name as a holder of claims and leases.
    pub fn holder(&self) -> &str {
        &self.inner.holder
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

    /// A human says the task of step `step_id` of `incident` is done: the incident goes on with the
    /// next step. Errors when the incident is not open or the step is no task waiting for a human.
    pub async fn complete_task(
        &self,
        incident: &str,
        step_id: &str,
        by: &str,
    ) -> Result<(), Error> {
        let entries = self.inner.journal.entries(incident).await?;
        let inc = Incident::from_entries(entries.clone())
            .filter(|i| !i.is_closed())
            .ok_or_else(|| Error::UnknownIncident(incident.to_string()))?;
        let step = self
            .inner
            .runbook
            .playbooks
            .iter()
            .find(|p| p.id == inc.record.playbook)
            .and_then(|p| p.mitigation.iter().position(|s| s.id == step_id))
            .filter(|i| step_state_of(&entries, step_id, *i) == StepState::Started)
            .ok_or_else(|| {
                Error::Config(format!(
                    "incident {incident} has no task {step_id:?} waiting for a human"
                ))
            })?;
        self.inner
            .append(
                incident,
                Event::TaskDone {
                    step,
                    step_id: step_id.to_string(),
                    by: by.to_string(),
                },
            )
            .await?;
        self.inner.wake.notify_one();
        Ok(())
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
}

enum StepResult {
    Continue,
    Halt,
    /// Plan (and ask) this step again.
    Again,
    /// Waiting for an approver; the step resumes in a later tick.
    Waiting,
    /// Another engine has the step (its claim, or a target lease): not applied here; looked at
    /// again in a later tick.
    Elsewhere,
}
