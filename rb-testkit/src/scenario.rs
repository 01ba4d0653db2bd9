//! The scenario harness: given fakes in some state, when the engine runs for a while (or until something
//! happens), then assert on incidents, phases, remediations, pages and the journal — with failure messages
//! that show what was expected, what happened, and the whole timeline.
//!
//! ```
//! use std::sync::Arc;
//! use rb_core::prelude::*;
//! use rb_core::Phase;
//! use rb_testkit::doubles::GaugeProbe;
//! use rb_testkit::scenario::Scenario;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let lag = GaugeProbe::new(Target::new("kafka", "kafka-main"), "records_lag_max", 12_000.0);
//! let runbook = Runbook::new("t").playbook(Playbook::new("kafka-backlog", "Kafka backlog")
//!     .detect(lag.arc(), Schedule::every(secs(30)), metric("records_lag_max").above(5_000.0).for_at_least(mins(2))));
//! let run = Scenario::new(runbook).start().await.unwrap();
//! run.run_for(mins(3)).await;
//! run.incident("kafka-backlog").await.expect_phase(Phase::Mitigate).expect_violated("records_lag_max", 12_000.0);
//! # }
//! ```

// The harness asserts: like `assert!`, its checks panic with a readable message. That is its purpose,
// so the workspace lint against panics is lifted for this module only.
#![allow(clippy::panic)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rb_core::escalation::Notification;
use rb_core::journal::{Event, Journal, MemoryJournal};
use rb_core::policy::{Approver, AutoApprove, SafetyPolicy};
use rb_core::report::describe;
use rb_core::time::{Clock, Timestamp};
use rb_core::{Engine, Error, Incident, Phase, Resolution, Runbook, Signal, TickReport};

use crate::doubles::RecordingNotifier;

/// 2026-01-01T00:00:00Z: where scenario clocks start unless told otherwise.
pub const SCENARIO_EPOCH: Timestamp = Timestamp(1_767_225_600_000);

/// Builds a [`Scenario`].
#[derive(Debug)]
pub struct ScenarioBuilder {
    runbook: Runbook,
    approver: Arc<dyn Approver>,
    policy: SafetyPolicy,
    journal: Option<Arc<dyn Journal>>,
    start: Timestamp,
    step: Duration,
}

impl ScenarioBuilder {
    /// Who approves disruptive actions (default: [`AutoApprove`]).
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = approver;
        self
    }

    /// The safety policy (default: [`SafetyPolicy::default`]).
    pub fn policy(mut self, policy: SafetyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Plan only.
    pub fn dry_run(mut self) -> Self {
        self.policy.dry_run = true;
        self
    }

    /// Use this journal (default: in memory).
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The wall-clock time the scenario starts at (default [`SCENARIO_EPOCH`]).
    pub fn starting_at(mut self, t: Timestamp) -> Self {
        self.start = t;
        self
    }

    /// How often [`Scenario::run_until`] checks its condition (default 5 s of virtual time).
    pub fn check_every(mut self, d: Duration) -> Self {
        self.step = d.max(Duration::from_millis(1));
        self
    }

    /// Build the engine. Run the test on a paused clock (`#[tokio::test(start_paused = true)]`) so that
    /// minutes pass at once and the timeline is the same on every run.
    pub async fn start(self) -> Result<Scenario, Error> {
        let notifier = RecordingNotifier::default();
        let journal = self
            .journal
            .unwrap_or_else(|| Arc::new(MemoryJournal::new()));
        let engine = Engine::builder(self.runbook)
            .clock(Clock::starting_at(self.start))
            .journal(journal)
            .approver(self.approver)
            .notifier(Arc::new(notifier.clone()))
            .policy(self.policy)
            .build()
            .await?;
        Ok(Scenario {
            engine,
            notifier,
            step: self.step,
        })
    }
}

/// A running scenario: an engine on a virtual clock, a recording notifier, and assertions.
#[derive(Debug, Clone)]
pub struct Scenario {
    engine: Engine,
    notifier: RecordingNotifier,
    step: Duration,
}

impl Scenario {
    /// A scenario over `runbook` (see [`ScenarioBuilder`] for the defaults).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(runbook: Runbook) -> ScenarioBuilder {
        ScenarioBuilder {
            runbook,
            approver: Arc::new(AutoApprove),
            policy: SafetyPolicy::default(),
            journal: None,
            start: SCENARIO_EPOCH,
            step: Duration::from_secs(5),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Pages sent so far.
    pub fn pages(&self) -> Vec<Notification> {
        self.notifier.notifications()
    }

    /// One engine tick now.
    pub async fn tick(&self) -> TickReport {
        match self.engine.tick().await {
            Ok(r) => r,
            Err(e) => panic!("engine tick failed: {e}"),
        }
    }

    /// Let `d` of virtual time pass, the engine ticking whenever a probe is due.
    pub async fn run_for(&self, d: Duration) -> &Self {
        if let Err(e) = self.engine.run_for(d).await {
            panic!("engine failed: {e}\n{}", self.timeline().await);
        }
        self
    }

    /// Run until `cond` holds (checked every few seconds of virtual time) or `max` passes. Returns the
    /// virtual time it took; panics with the timeline when `max` passes first.
    pub async fn run_until<F>(&self, what: &str, max: Duration, mut cond: F) -> Duration
    where
        F: FnMut(&[Incident]) -> bool,
    {
        let start = tokio::time::Instant::now();
        loop {
            let incidents = self.incidents().await;
            if cond(&incidents) {
                return start.elapsed();
            }
            if start.elapsed() >= max {
                panic!(
                    "scenario: waited {} of virtual time for {what}, it did not happen\n{}",
                    rb_core::time::human(max),
                    self.timeline().await
                );
            }
            self.run_for(self.step).await;
            // `run_for` stops just before its end; tick at the end too so the check sees it
            self.tick().await;
        }
    }

    /// Push a signal (alert, manual report) into the engine.
    pub fn ingest(&self, signal: Signal) {
        self.engine.ingest(signal);
    }

    /// Every incident so far.
    pub async fn incidents(&self) -> Vec<Incident> {
        match self.engine.incidents().await {
            Ok(i) => i,
            Err(e) => panic!("reading the journal failed: {e}"),
        }
    }

    /// The latest incident of `playbook`; panics (with the timeline) when there is none.
    pub async fn incident(&self, playbook: &str) -> IncidentCheck {
        let all = self.incidents().await;
        let timeline = render(&all);
        match all.into_iter().rfind(|i| i.record.playbook == playbook) {
            Some(incident) => IncidentCheck { incident, timeline },
            None => panic!(
                "expected an incident of playbook {playbook}, but none was opened\n{timeline}"
            ),
        }
    }

    /// Incidents of `playbook`.
    pub async fn incidents_of(&self, playbook: &str) -> Vec<Incident> {
        self.incidents()
            .await
            .into_iter()
            .filter(|i| i.record.playbook == playbook)
            .collect()
    }

    /// Assert that no incident of `playbook` was opened.
    pub async fn expect_no_incident(&self, playbook: &str) {
        let all = self.incidents().await;
        if all.iter().any(|i| i.record.playbook == playbook) {
            panic!(
                "expected no incident of playbook {playbook}, but one was opened\n{}",
                render(&all)
            );
        }
    }

    /// The timeline of every incident, for failure messages.
    pub async fn timeline(&self) -> String {
        render(&self.incidents().await)
    }
}

fn render(incidents: &[Incident]) -> String {
    let mut out = String::from("--- timeline ---\n");
    if incidents.is_empty() {
        out.push_str("(no incident was opened)\n");
    }
    for i in incidents {
        for e in &i.timeline {
            let _ = writeln!(
                out,
                "{}  {:<28} {}",
                &e.at.rfc3339()[11..19],
                i.record.playbook,
                describe(&e.event)
            );
        }
    }
    out
}

/// Assertions on one incident. Each panics with what was expected, what happened and the timeline.
#[derive(Debug, Clone)]
pub struct IncidentCheck {
    /// The incident.
    pub incident: Incident,
    timeline: String,
}

impl IncidentCheck {
    fn fail(&self, expected: String, got: String) -> ! {
        panic!(
            "incident {} ({}): expected {expected}, but {got}\n{}",
            self.incident.record.id, self.incident.record.playbook, self.timeline
        )
    }

    /// All five phases were entered, in order.
    pub fn expect_phases_completed(&self) -> &Self {
        if self.incident.phases != Phase::ALL.to_vec() {
            self.fail(
                "all five phases in order".into(),
                format!("phases were {:?}", self.incident.phases),
            );
        }
        self
    }

    /// The incident reached (at least) `phase`.
    pub fn expect_phase(&self, phase: Phase) -> &Self {
        if !self.incident.phases.contains(&phase) {
            self.fail(
                format!("phase {phase:?}"),
                format!("phases were {:?}", self.incident.phases),
            );
        }
        self
    }

    /// It closed because recovery checks held.
    pub fn expect_recovered(&self) -> &Self {
        if self.incident.resolution != Some(Resolution::Recovered) {
            self.fail(
                "to have recovered".into(),
                format!("its resolution is {:?}", self.incident.resolution),
            );
        }
        self
    }

    /// It is still open.
    pub fn expect_open(&self) -> &Self {
        if self.incident.is_closed() {
            self.fail(
                "to be open".into(),
                format!("it closed: {:?}", self.incident.resolution),
            );
        }
        self
    }

    /// `action` was applied successfully (once or more).
    pub fn expect_applied(&self, action: &str) -> &Self {
        let applied = self.incident.applied_actions();
        if !applied.iter().any(|a| a == action) {
            self.fail(
                format!("{action} to be applied"),
                format!("applied were {applied:?}"),
            );
        }
        self
    }

    /// Exactly these actions were applied, in this order.
    pub fn expect_applied_in_order(&self, actions: &[&str]) -> &Self {
        let applied = self.incident.applied_actions();
        if applied != actions {
            self.fail(
                format!("applied {actions:?} in order"),
                format!("applied were {applied:?}"),
            );
        }
        self
    }

    /// `action` was planned (dry-run or not).
    pub fn expect_planned(&self, action: &str) -> &Self {
        let planned = self.incident.planned_actions();
        if !planned.iter().any(|a| a == action) {
            self.fail(
                format!("{action} to be planned"),
                format!("planned were {planned:?}"),
            );
        }
        self
    }

    /// Nothing was applied.
    pub fn expect_nothing_applied(&self) -> &Self {
        let applied = self.incident.applied_actions();
        if !applied.is_empty() {
            self.fail(
                "nothing applied".into(),
                format!("applied were {applied:?}"),
            );
        }
        self
    }

    /// `action` was refused by the safety envelope, with a reason containing `reason`.
    pub fn expect_refused(&self, action: &str, reason: &str) -> &Self {
        let refusals: Vec<String> = self
            .incident
            .timeline
            .iter()
            .filter_map(|e| match &e.event {
                Event::Refused {
                    action: a,
                    reason: r,
                    ..
                } if a == action => Some(r.clone()),
                _ => None,
            })
            .collect();
        if !refusals.iter().any(|r| r.contains(reason)) {
            self.fail(
                format!("{action} refused because \"{reason}\""),
                format!("its refusals were {refusals:?}"),
            );
        }
        self
    }

    /// `role` was paged.
    pub fn expect_escalated_to(&self, role: &str) -> &Self {
        let roles = self.incident.escalations();
        if !roles.iter().any(|r| r == role) {
            self.fail(
                format!("a page to {role}"),
                format!("pages went to {roles:?}"),
            );
        }
        self
    }

    /// Nobody was paged.
    pub fn expect_no_escalation(&self) -> &Self {
        let roles = self.incident.escalations();
        if !roles.is_empty() {
            self.fail("no page".into(), format!("pages went to {roles:?}"));
        }
        self
    }

    /// The record names `metric` as violated with `value`.
    pub fn expect_violated(&self, metric: &str, value: f64) -> &Self {
        match &self.incident.record.violated {
            Some(v) if v.name == metric && (v.value - value).abs() < 1e-9 => {}
            other => self.fail(
                format!("violated metric {metric} = {value}"),
                format!("the record says {other:?}"),
            ),
        }
        self
    }

    /// Evidence was attached from `source` (a probe id, or a substring of the source).
    pub fn expect_evidence_from(&self, source: &str) -> &Self {
        let sources: Vec<&str> = self
            .incident
            .evidence
            .iter()
            .map(|e| e.source.as_str())
            .collect();
        if !sources.iter().any(|s| s.contains(source)) {
            self.fail(
                format!("evidence from {source}"),
                format!("evidence came from {sources:?}"),
            );
        }
        self
    }

    /// The record carries this Nessie commit hash.
    pub fn expect_nessie_commit(&self, hash: &str) -> &Self {
        if self.incident.record.nessie_commit.as_deref() != Some(hash) {
            self.fail(
                format!("Nessie commit {hash}"),
                format!("the record has {:?}", self.incident.record.nessie_commit),
            );
        }
        self
    }

    /// The journal has an event matching `pred`, described as `what`.
    pub fn expect_event(&self, what: &str, pred: impl Fn(&Event) -> bool) -> &Self {
        if !self.incident.timeline.iter().any(|e| pred(&e.event)) {
            self.fail(what.to_string(), "no journal entry matched".into());
        }
        self
    }
}
