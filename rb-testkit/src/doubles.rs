//! In-memory test doubles of rb-core's traits that record what they were asked: a probe whose value you
//! set, a remediation whose outcome you script, a notifier that keeps every page. (For expectations
//! on exact calls use the mockall mocks in [`crate::mocks`].)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rb_core::escalation::Notification;
use rb_core::{
    ActionContext, ErrorKind, Labels, Notifier, NotifyError, Observation, Outcome, Plan, Probe,
    ProbeContext, ProbeError, Remediation, RemediationError, Risk, Target,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a [`GaugeProbe`] reports next.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// One sample of this value.
    Value(f64),
    /// Fail with this kind of error.
    Fail(ErrorKind),
    /// Never answer (the engine's deadline fires).
    Hang,
}

/// A probe reporting one metric whose value the test sets. Cloning shares the value.
#[derive(Debug, Clone)]
pub struct GaugeProbe {
    target: Target,
    metric: String,
    labels: Labels,
    reading: Arc<Mutex<Reading>>,
    calls: Arc<AtomicUsize>,
}

impl GaugeProbe {
    /// A probe on `target` reporting `metric` = `value`.
    pub fn new(target: Target, metric: &str, value: f64) -> Self {
        Self {
            target,
            metric: metric.to_string(),
            labels: Labels::new(),
            reading: Arc::new(Mutex::new(Reading::Value(value))),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Labels on the sample.
    pub fn with_labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    /// Report `value` from now on.
    pub fn set(&self, value: f64) {
        *lock(&self.reading) = Reading::Value(value);
    }

    /// Fail with `kind` from now on.
    pub fn fail(&self, kind: ErrorKind) {
        *lock(&self.reading) = Reading::Fail(kind);
    }

    /// Never answer from now on.
    pub fn hang(&self) {
        *lock(&self.reading) = Reading::Hang;
    }

    /// How many times the engine observed.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// As a shared trait object for a playbook.
    pub fn arc(&self) -> Arc<dyn Probe> {
        Arc::new(self.clone())
    }
}

#[async_trait]
impl Probe for GaugeProbe {
    fn id(&self) -> &str {
        "testkit.gauge"
    }
    fn target(&self) -> &Target {
        &self.target
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let reading = lock(&self.reading).clone();
        match reading {
            Reading::Value(v) => Ok(Observation::new(self.id(), &self.target.name, ctx.now())
                .sample(&self.metric, self.labels.clone(), v)),
            Reading::Fail(kind) => Err(ProbeError::new(
                self.id(),
                &self.target.name,
                "testkit://gauge",
                kind,
                "scripted failure",
            )),
            Reading::Hang => {
                futures::future::pending::<()>().await;
                Err(ProbeError::new(
                    self.id(),
                    &self.target.name,
                    "testkit://gauge",
                    ErrorKind::Timeout,
                    "hung",
                ))
            }
        }
    }
}

/// What a [`RecordingRemediation`]'s `apply` does.
#[derive(Debug, Clone, PartialEq)]
pub enum Script {
    /// Succeed.
    Succeed,
    /// Fail with this kind (transient kinds are retried only if the remediation is idempotent).
    Fail(ErrorKind),
    /// Take this long (virtual time), then succeed.
    Take(Duration),
}

/// One call a [`RecordingRemediation`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `plan` or `apply`.
    pub method: &'static str,
    /// The incident.
    pub incident: String,
    /// The step.
    pub step: usize,
    /// Whether the engine was in dry-run mode.
    pub dry_run: bool,
}

/// A remediation that records its calls and does what the test scripts. Cloning shares the record.
#[derive(Debug, Clone)]
pub struct RecordingRemediation {
    id: String,
    risk: Risk,
    idempotent: bool,
    targets: Vec<Target>,
    script: Arc<Mutex<Script>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl RecordingRemediation {
    /// A remediation `id` of `risk` acting on `targets`.
    pub fn new(id: &str, risk: Risk, targets: Vec<Target>) -> Self {
        Self {
            id: id.to_string(),
            risk,
            idempotent: false,
            targets,
            script: Arc::new(Mutex::new(Script::Succeed)),
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Declare it idempotent.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Script what `apply` does from now on.
    pub fn script(&self, script: Script) {
        *lock(&self.script) = script;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// How many times `apply` ran.
    pub fn applied(&self) -> usize {
        lock(&self.calls)
            .iter()
            .filter(|c| c.method == "apply")
            .count()
    }

    /// As a shared trait object for a playbook.
    pub fn arc(&self) -> Arc<dyn Remediation> {
        Arc::new(self.clone())
    }

    fn record(&self, method: &'static str, ctx: &ActionContext) {
        lock(&self.calls).push(Call {
            method,
            incident: ctx.incident.clone(),
            step: ctx.step,
            dry_run: ctx.dry_run,
        });
    }
}

#[async_trait]
impl Remediation for RecordingRemediation {
    fn id(&self) -> &str {
        &self.id
    }
    fn risk(&self) -> Risk {
        self.risk
    }
    fn idempotent(&self) -> bool {
        self.idempotent
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        self.record("plan", ctx);
        Ok(Plan::new(
            &self.id,
            self.targets.clone(),
            format!("{} (recorded)", self.id),
        ))
    }
    async fn apply(&self, _plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.record("apply", ctx);
        let script = lock(&self.script).clone();
        match script {
            Script::Succeed => Ok(Outcome::new("done")),
            Script::Fail(kind) => Err(RemediationError::new(
                &self.id,
                "recorded",
                "testkit://remediation",
                kind,
                "scripted failure",
            )),
            Script::Take(d) => {
                tokio::time::sleep(d).await;
                Ok(Outcome::new(format!("done after {d:?}")))
            }
        }
    }
}

/// A notifier that keeps every page. Cloning shares the record.
#[derive(Debug, Clone, Default)]
pub struct RecordingNotifier {
    pages: Arc<Mutex<Vec<Notification>>>,
    fail: Arc<Mutex<bool>>,
}

impl RecordingNotifier {
    /// Every page so far.
    pub fn notifications(&self) -> Vec<Notification> {
        lock(&self.pages).clone()
    }

    /// Roles paged, in order.
    pub fn roles(&self) -> Vec<String> {
        lock(&self.pages).iter().map(|n| n.role.clone()).collect()
    }

    /// Make deliveries fail (they are still recorded).
    pub fn fail_deliveries(&self, fail: bool) {
        *lock(&self.fail) = fail;
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        lock(&self.pages).push(n.clone());
        if *lock(&self.fail) {
            return Err(NotifyError::new(
                &n.channel,
                ErrorKind::Unreachable,
                "scripted delivery failure",
            ));
        }
        Ok(())
    }
}
