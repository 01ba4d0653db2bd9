//! Playbooks (one situation each) and the runbook that holds them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::escalation::OnCall;
use crate::probe::{Probe, Schedule};
use crate::remediation::Remediation;
use crate::symptom::Symptom;
use crate::target::Target;
use crate::time::{mins, secs};

/// Where a detect binding's observations come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A probe run on a schedule.
    Probe {
        /// The probe.
        probe: Arc<dyn Probe>,
        /// Its schedule.
        schedule: Schedule,
    },
    /// Alertmanager alerts whose labels match, about `target` (routed like an Alertmanager route:
    /// `alertname` plus label matchers; each alert instance judged on its own).
    Alert {
        /// The route's matchers.
        matchers: crate::matcher::Matchers,
        /// The target the alert concerns.
        target: Target,
    },
    /// Manual reports (tickets) filed against this playbook, about `target`.
    Manual {
        /// The target reported on.
        target: Target,
    },
}

impl Source {
    /// The target observed.
    pub fn target(&self) -> &Target {
        match self {
            Source::Probe { probe, .. } => probe.target(),
            Source::Alert { target, .. } | Source::Manual { target } => target,
        }
    }

    /// A short description.
    pub fn describe(&self) -> String {
        match self {
            Source::Probe { probe, schedule } => {
                format!(
                    "probe {} on {} every {:?}",
                    probe.name(),
                    probe.target(),
                    schedule.interval
                )
            }
            Source::Alert { matchers, target } => format!("alerts {matchers} on {target}"),
            Source::Manual { target } => format!("manual reports on {target}"),
        }
    }
}

/// A detect binding: a source of observations and the symptom judging them.
#[derive(Debug, Clone)]
pub struct Detector {
    /// Where observations come from.
    pub source: Source,
    /// The judgement.
    pub symptom: Arc<dyn Symptom>,
}

/// An extra recovery check: a symptom that must be **ok** for the stability window, judged over its own
/// probe (on every round, or on a schedule of its own) or over the detect stream itself.
#[derive(Debug, Clone)]
pub struct RecoveryCheck {
    /// The probe; `None`: the symptom is judged over the detect probe's observations (of the incident's
    /// key), no second probe needed ("metric back under threshold").
    pub probe: Option<Arc<dyn Probe>>,
    /// How often the probe runs while recovering (`None`: every round). A Trino cross-check query every
    /// 5 minutes, not every few seconds.
    pub every: Option<Duration>,
    /// The symptom that must be ok.
    pub symptom: Arc<dyn Symptom>,
}

/// One mitigation step: a stable step id, what it does (a remediation, or a task for a human), and when
/// it runs (always; only when a condition on the diagnosis holds; only if the incident has not
/// recovered some time after the step before it).
#[derive(Debug, Clone)]
pub struct Step {
    /// The step id (given with [`Playbook::mitigate_as`], or the remediation id, made unique).
    pub id: String,
    /// The remediation (for a human task, a placeholder that is never planned nor applied).
    pub remediation: Arc<dyn Remediation>,
    /// A task for a human: the engine pages it, waits for [`crate::Engine::complete_task`], and the
    /// on-call SLA re-escalates while it waits.
    pub human_task: Option<String>,
    /// Run only when this holds (judged on the incident's context when the step is reached).
    pub when: Option<StepCondition>,
    /// A staged step: wait this long after the step before it, and run only if the detect symptom
    /// still fires then ("not recovered 15 minutes after the restart → start a replacement node").
    pub unless_recovered_within: Option<Duration>,
}

type ConditionFn = dyn Fn(&crate::remediation::ActionContext) -> bool + Send + Sync;

/// A condition on the incident's context (the finding, the diagnosis facts, earlier steps' outputs).
#[derive(Clone)]
pub struct StepCondition {
    /// What it checks, for the journal and the review (`the exceptions show a schema error`).
    pub describe: String,
    f: Arc<ConditionFn>,
}

impl StepCondition {
    /// A condition described as `describe`.
    pub fn new(
        describe: impl Into<String>,
        f: impl Fn(&crate::remediation::ActionContext) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            describe: describe.into(),
            f: Arc::new(f),
        }
    }

    /// Whether it holds.
    pub fn holds(&self, ctx: &crate::remediation::ActionContext) -> bool {
        (self.f)(ctx)
    }
}

impl std::fmt::Debug for StepCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCondition")
            .field("describe", &self.describe)
            .finish()
    }
}

/// The placeholder remediation of a human-task step: it is never planned nor applied.
#[derive(Debug)]
struct HumanTaskStep(String);

#[async_trait::async_trait]
impl Remediation for HumanTaskStep {
    fn id(&self) -> &str {
        &self.0
    }
    fn risk(&self) -> crate::remediation::Risk {
        crate::remediation::Risk::Safe
    }
    async fn plan(
        &self,
        _ctx: &crate::remediation::ActionContext,
    ) -> Result<crate::remediation::Plan, crate::error::RemediationError> {
        Err(crate::error::RemediationError::new(
            &self.0,
            "-",
            "-",
            crate::error::ErrorKind::Invalid,
            "a human task is done by a human",
        ))
    }
    async fn apply(
        &self,
        _plan: &crate::remediation::Plan,
        ctx: &crate::remediation::ActionContext,
    ) -> Result<crate::remediation::Outcome, crate::error::RemediationError> {
        self.plan(ctx)
            .await
            .map(|_| crate::remediation::Outcome::new(""))
    }
}

/// What deduplicates incidents of a playbook: at most one open incident per key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IncidentKey {
    /// One incident per detect binding's target (`playbook:target`): the default.
    #[default]
    PerTarget,
    /// One incident per target and per value of these labels of the offending series (per connector,
    /// per Flink job, per Cassandra node). The detect symptom is judged separately for each label set
    /// (its own streak, for-duration and clear condition), so a resolved alert or a healed connector
    /// never clears another's incident.
    PerSeries(Vec<String>),
}

/// One situation of the runbook: symptom(s) → diagnosis probes → mitigations → recovery checks →
/// review items.
///
/// ```
/// use std::sync::Arc;
/// use rb_core::prelude::*;
/// # fn probe() -> Arc<dyn Probe> { Arc::new(FnProbe::new("kafka.lag", Target::new("kafka", "kafka-main"),
/// #     |ctx| Ok(Observation::new("kafka.lag", "kafka-main", ctx.now())))) }
/// let backlog = Playbook::new("kafka-backlog", "Kafka backlog grows")
///     .service("orders-pipeline")
///     .detect(probe(), Schedule::every(secs(30)),
///             metric("records_lag_max").above(5_000.0).for_at_least(mins(2)).clears_below(1_000.0))
///     .diagnose(probe())
///     .stable_for(mins(5))
///     .review_item("Was the job under-provisioned for the input rate?")
///     .escalate_to("Kafka SME");
/// assert_eq!(backlog.id(), "kafka-backlog");
/// ```
#[derive(Debug, Clone)]
pub struct Playbook {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) service: String,
    pub(crate) detectors: Vec<Detector>,
    pub(crate) diagnosis: Vec<Arc<dyn Probe>>,
    pub(crate) mitigation: Vec<Step>,
    pub(crate) key: IncidentKey,
    pub(crate) recovery: Vec<RecoveryCheck>,
    pub(crate) stability_window: Duration,
    pub(crate) recovery_deadline: Duration,
    pub(crate) review_items: Vec<String>,
    pub(crate) escalate_to: Option<String>,
    pub(crate) continue_after_failure: bool,
    pub(crate) diagnosis_deadline: Duration,
}

impl Playbook {
    /// A playbook with a stable `id` and a human `title`.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            service: String::new(),
            detectors: Vec::new(),
            diagnosis: Vec::new(),
            mitigation: Vec::new(),
            key: IncidentKey::PerTarget,
            recovery: Vec::new(),
            stability_window: mins(5),
            recovery_deadline: mins(30),
            review_items: Vec::new(),
            escalate_to: None,
            continue_after_failure: false,
            diagnosis_deadline: secs(15),
        }
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The service named in incident records.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Detect: run `probe` on `schedule`, judge with `symptom`.
    pub fn detect(
        mut self,
        probe: Arc<dyn Probe>,
        schedule: Schedule,
        symptom: impl Symptom + 'static,
    ) -> Self {
        self.detectors.push(Detector {
            source: Source::Probe { probe, schedule },
            symptom: Arc::new(symptom),
        });
        self
    }

    /// Detect: Alertmanager alerts named `alertname` about `target` (judged by
    /// [`crate::symptom::alert_firing`], each alert instance on its own).
    pub fn detect_alert(self, alertname: impl Into<String>, target: Target) -> Self {
        let m = crate::matcher::Matchers::from(crate::matcher::Matcher::equal(
            "alertname",
            alertname.into(),
        ));
        self.detect_alerts(m, target)
    }

    /// Detect: Alertmanager alerts routed by `matchers` (`alertname="KafkaConnectFailed",
    /// connector=~"orders-.*"`, fully anchored regexes as Alertmanager's) about `target`. Silenced
    /// alerts are not acted upon.
    pub fn detect_alerts(mut self, matchers: crate::matcher::Matchers, target: Target) -> Self {
        self.detectors.push(Detector {
            symptom: Arc::new(crate::symptom::alert_matching(matchers.clone())),
            source: Source::Alert { matchers, target },
        });
        self
    }

    /// Detect: manual reports (tickets) filed against this playbook about `target`.
    pub fn detect_manual(mut self, target: Target) -> Self {
        self.detectors.push(Detector {
            source: Source::Manual { target },
            symptom: Arc::new(crate::symptom::manual_report()),
        });
        self
    }

    /// Diagnose: run `probe` when an incident opens, attach what it sees as evidence.
    pub fn diagnose(mut self, probe: Arc<dyn Probe>) -> Self {
        self.diagnosis.push(probe);
        self
    }

    /// Mitigate: run `remediation` (in order of declaration) under the safety envelope. Its step id is
    /// the remediation id (`#2`, `#3`… appended when the playbook uses it again).
    pub fn mitigate(self, remediation: Arc<dyn Remediation>) -> Self {
        let base = remediation.id().to_string();
        let mut id = base.clone();
        let mut n = 1;
        while self.mitigation.iter().any(|s| s.id == id) {
            n += 1;
            id = format!("{base}#{n}");
        }
        self.mitigate_as(id, remediation)
    }

    /// Mitigate with a step id of your choosing (`savepoint`, `restore`): later steps read this step's
    /// output under it ([`crate::ActionContext::output_value`]).
    pub fn mitigate_as(
        mut self,
        step_id: impl Into<String>,
        remediation: Arc<dyn Remediation>,
    ) -> Self {
        self.mitigation.push(Step {
            id: step_id.into(),
            remediation,
            human_task: None,
            when: None,
            unless_recovered_within: None,
        });
        self
    }

    /// A step for a human (`deploy the fixed JAR and update the Paimon type mapping`): the engine pages
    /// the playbook's role with the task, waits for [`crate::Engine::complete_task`] under the on-call
    /// SLA, then goes on with the next step.
    pub fn human_task(mut self, step_id: impl Into<String>, task: impl Into<String>) -> Self {
        let id = step_id.into();
        self.mitigation.push(Step {
            remediation: Arc::new(HumanTaskStep("human.task".into())),
            id,
            human_task: Some(task.into()),
            when: None,
            unless_recovered_within: None,
        });
        self
    }

    /// Make the last step conditional: it runs only when `condition` holds on the incident's context
    /// (otherwise it is skipped, saying why). `.when("the exceptions show a schema error", |ctx| …)`.
    pub fn when(
        mut self,
        describe: impl Into<String>,
        condition: impl Fn(&crate::remediation::ActionContext) -> bool + Send + Sync + 'static,
    ) -> Self {
        if let Some(step) = self.mitigation.last_mut() {
            step.when = Some(StepCondition::new(describe, condition));
        }
        self
    }

    /// Make the last step staged: it waits `d` after the step before it and runs only if the detect
    /// symptom still fires then; if the incident recovered meanwhile, it is skipped.
    pub fn unless_recovered_within(mut self, d: Duration) -> Self {
        if let Some(step) = self.mitigation.last_mut() {
            step.unless_recovered_within = Some(d);
        }
        self
    }

    /// One incident per value of these labels of the offending series (see [`IncidentKey::PerSeries`]):
    /// `.incident_per(&["connector"])` opens one incident per failed connector.
    pub fn incident_per(mut self, labels: &[&str]) -> Self {
        self.key = IncidentKey::PerSeries(labels.iter().map(|l| l.to_string()).collect());
        self
    }

    /// The incident key.
    pub fn incident_key(&self) -> &IncidentKey {
        &self.key
    }

    /// Recover: besides the detect symptom being ok, `symptom` over `probe` must be ok for the
    /// stability window.
    pub fn recover(mut self, probe: Arc<dyn Probe>, symptom: impl Symptom + 'static) -> Self {
        self.recovery.push(RecoveryCheck {
            probe: Some(probe),
            every: None,
            symptom: Arc::new(symptom),
        });
        self
    }

    /// Recover: `symptom` over `probe`, observed every `every` while recovering (a data cross-check
    /// query every 5 minutes); it must be ok for the stability window.
    pub fn recover_every(
        mut self,
        probe: Arc<dyn Probe>,
        every: Duration,
        symptom: impl Symptom + 'static,
    ) -> Self {
        self.recovery.push(RecoveryCheck {
            probe: Some(probe),
            every: Some(every),
            symptom: Arc::new(symptom),
        });
        self
    }

    /// Recover: `symptom` judged over the detect probe's own observations of the incident's key
    /// ("lag back under 1,000 for 5 minutes"): no second probe.
    pub fn recover_on_detect(mut self, symptom: impl Symptom + 'static) -> Self {
        self.recovery.push(RecoveryCheck {
            probe: None,
            every: None,
            symptom: Arc::new(symptom),
        });
        self
    }

    /// How long every recovery check must hold before the incident resolves (default 5 minutes).
    pub fn stable_for(mut self, window: Duration) -> Self {
        self.stability_window = window;
        self
    }

    /// If recovery has not come this long after mitigation, escalate (default 30 minutes).
    pub fn recovery_deadline(mut self, deadline: Duration) -> Self {
        self.recovery_deadline = deadline;
        self
    }

    /// A question for the post-incident review.
    pub fn review_item(mut self, item: impl Into<String>) -> Self {
        self.review_items.push(item.into());
        self
    }

    /// The on-call role paged when this playbook escalates.
    pub fn escalate_to(mut self, role: impl Into<String>) -> Self {
        self.escalate_to = Some(role.into());
        self
    }

    /// Keep running later mitigation steps after one fails or is refused (default: stop, escalate, and
    /// go to recovery).
    pub fn continue_after_failure(mut self) -> Self {
        self.continue_after_failure = true;
        self
    }

    /// How long each diagnosis probe may take (default 15 s).
    pub fn diagnosis_deadline(mut self, deadline: Duration) -> Self {
        self.diagnosis_deadline = deadline;
        self
    }

    /// The detect bindings.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// The mitigation steps.
    pub fn mitigations(&self) -> &[Step] {
        &self.mitigation
    }

    /// The review items.
    pub fn review_items(&self) -> &[String] {
        &self.review_items
    }
}

/// Which pipelines (use cases) depend on which targets — the seed's use-case status table (§2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpactMap {
    deps: BTreeMap<String, BTreeSet<String>>,
}

impl ImpactMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// `pipeline` depends on the targets named in `targets`.
    pub fn pipeline(mut self, pipeline: impl Into<String>, targets: &[&str]) -> Self {
        self.deps
            .entry(pipeline.into())
            .or_default()
            .extend(targets.iter().map(|t| t.to_string()));
        self
    }

    /// Pipelines depending on any of `targets`.
    pub fn affected<'a>(&self, targets: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let t: BTreeSet<&str> = targets.into_iter().collect();
        self.deps
            .iter()
            .filter(|(_, deps)| deps.iter().any(|d| t.contains(d.as_str())))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Every pipeline and its targets.
    pub fn pipelines(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.deps
    }
}

/// A set of playbooks plus what they share: the fleet of targets, the impact map, the on-call table, the
/// post-recovery checklist.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub(crate) name: String,
    pub(crate) playbooks: Vec<Playbook>,
    pub(crate) targets: Vec<Target>,
    pub(crate) impact: ImpactMap,
    pub(crate) on_call: OnCall,
    pub(crate) checklist: Vec<String>,
    pub(crate) default_role: String,
}

/// The seed's post-recovery checklist (§6).
pub const SEED_CHECKLIST: [&str; 5] = [
    "Alert cleared in Alertmanager.",
    "Checkpoint/savepoint updated.",
    "Data cross-checked (Spark/Trino) and valid.",
    "ITSM ticket moved to Resolved.",
    "RCA document stored in the internal wiki.",
];

impl Runbook {
    /// An empty runbook with the seed's on-call table and checklist.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            playbooks: Vec::new(),
            targets: Vec::new(),
            impact: ImpactMap::new(),
            on_call: OnCall::seed(),
            checklist: SEED_CHECKLIST.iter().map(|s| s.to_string()).collect(),
            default_role: "Data Platform On-call".into(),
        }
    }

    /// Add a playbook.
    pub fn playbook(mut self, playbook: Playbook) -> Self {
        self.playbooks.push(playbook);
        self
    }

    /// Register a target of the fleet (blast radius is computed over the fleet of each kind).
    pub fn target(mut self, target: Target) -> Self {
        if !self.targets.contains(&target) {
            self.targets.push(target);
        }
        self
    }

    /// Set the impact map.
    pub fn impact(mut self, impact: ImpactMap) -> Self {
        self.impact = impact;
        self
    }

    /// Set the on-call table.
    pub fn on_call(mut self, on_call: OnCall) -> Self {
        self.on_call = on_call;
        self
    }

    /// Replace the post-recovery checklist.
    pub fn checklist(mut self, items: Vec<String>) -> Self {
        self.checklist = items;
        self
    }

    /// The role paged when a playbook names none.
    pub fn default_role(mut self, role: impl Into<String>) -> Self {
        self.default_role = role.into();
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The playbooks.
    pub fn playbooks(&self) -> &[Playbook] {
        &self.playbooks
    }

    /// The impact map.
    pub fn impact_map(&self) -> &ImpactMap {
        &self.impact
    }

    /// The fleet: registered targets plus every target a playbook's detect binding observes.
    pub fn fleet(&self) -> Vec<Target> {
        // a set of the names seen: a runbook of 100,000 targets must not compare every pair
        let mut all = self.targets.clone();
        let mut seen: std::collections::HashSet<&Target> = self.targets.iter().collect();
        for p in &self.playbooks {
            for d in &p.detectors {
                let t = d.source.target();
                if seen.insert(t) {
                    all.push(t.clone());
                }
            }
        }
        all
    }

    /// The runbook's version: a stable hash (FNV-1a, 16 hex digits) of its structure — its name,
    /// playbook ids, titles and keys, each detector's source, probe name and symptom, the diagnosis
    /// probes, the mitigation steps (ids, actions, risks, whether conditional or staged), the recovery
    /// checks, the windows and deadlines, the escalation roles and the checklist. Journaled in every
    /// incident's record when it opens and shown in its review, so a review says which runbook
    /// handled the incident. It changes when any of those change, and only then (a step's condition
    /// is a closure: hashed as "conditional", not by its code).
    pub fn version(&self) -> String {
        use serde_json::json;
        let ms = |d: Duration| d.as_millis() as u64;
        let probe = |p: &Arc<dyn Probe>| json!({"id": p.id(), "name": p.name(), "target": p.target().to_string()});
        let playbooks: Vec<serde_json::Value> = self
            .playbooks
            .iter()
            .map(|p| {
                let detect: Vec<_> = p
                    .detectors
                    .iter()
                    .map(|d| {
                        json!({
                            "source": d.source.describe(),
                            "probe": match &d.source {
                                Source::Probe { probe: pr, .. } => probe(pr),
                                _ => serde_json::Value::Null,
                            },
                            "symptom": d.symptom.name(),
                        })
                    })
                    .collect();
                let mitigate: Vec<_> = p
                    .mitigation
                    .iter()
                    .map(|st| {
                        json!({
                            "id": st.id,
                            "action": st.remediation.id(),
                            "risk": format!("{:?}", st.remediation.risk()),
                            "idempotent": st.remediation.idempotent(),
                            "human_task": st.human_task,
                            "conditional": st.when.is_some(),
                            "unless_recovered_within_ms": st.unless_recovered_within.map(ms),
                        })
                    })
                    .collect();
                let recover: Vec<_> = p
                    .recovery
                    .iter()
                    .map(|c| {
                        json!({
                            "probe": c.probe.as_ref().map(probe),
                            "every_ms": c.every.map(ms),
                            "symptom": c.symptom.name(),
                        })
                    })
                    .collect();
                json!({
                    "id": p.id,
                    "title": p.title,
                    "service": p.service,
                    "key": match &p.key {
                        IncidentKey::PerTarget => json!("per target"),
                        IncidentKey::PerSeries(l) => json!(l),
                    },
                    "detect": detect,
                    "diagnose": p.diagnosis.iter().map(probe).collect::<Vec<_>>(),
                    "mitigate": mitigate,
                    "recover": recover,
                    "stable_for_ms": ms(p.stability_window),
                    "recovery_deadline_ms": ms(p.recovery_deadline),
                    "diagnosis_deadline_ms": ms(p.diagnosis_deadline),
                    "escalate_to": p.escalate_to,
                    "continue_after_failure": p.continue_after_failure,
                    "review_items": p.review_items,
                })
            })
            .collect();
        let text = json!({
            "name": self.name,
            "playbooks": playbooks,
            "default_role": self.default_role,
            "checklist": self.checklist,
        })
        .to_string();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Check the runbook: unique playbook ids, at least one detector each, known on-call roles.
    pub fn validate(&self) -> Result<(), Error> {
        let mut ids = BTreeSet::new();
        for p in &self.playbooks {
            if p.id.is_empty() {
                return Err(Error::Config("a playbook has an empty id".into()));
            }
            if !ids.insert(p.id.as_str()) {
                return Err(Error::Config(format!("playbook id {} is used twice", p.id)));
            }
            if p.detectors.is_empty() {
                return Err(Error::Config(format!(
                    "playbook {} has no detect binding",
                    p.id
                )));
            }
            let role = p.escalate_to.as_deref().unwrap_or(&self.default_role);
            if self.on_call.get(role).is_none() {
                return Err(Error::Config(format!(
                    "playbook {} escalates to {role:?}, which is not in the on-call table",
                    p.id
                )));
            }
            let mut step_ids = BTreeSet::new();
            for st in &p.mitigation {
                if st.id.is_empty() || !step_ids.insert(st.id.as_str()) {
                    return Err(Error::Config(format!(
                        "playbook {}: step id {:?} is empty or used twice",
                        p.id, st.id
                    )));
                }
            }
            for d in &p.detectors {
                if let Source::Probe { schedule, .. } = &d.source {
                    if schedule.interval < secs(1) || schedule.deadline.is_zero() {
                        return Err(Error::Config(format!(
                            "playbook {}: {} needs an interval of at least 1s and a non-zero deadline",
                            p.id,
                            d.source.describe()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}
