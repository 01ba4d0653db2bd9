//! Test doubles for rb-core's own tests (rb-testkit has the published ones).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rb_core::escalation::Notification;
use rb_core::prelude::*;
use rb_core::{ErrorKind, NotifyError};

/// A probe reporting `value` as metric `name`; `None` makes it fail as unreachable.
#[derive(Debug, Clone)]
pub struct Gauge {
    pub target: Target,
    pub name: String,
    pub value: Arc<Mutex<Option<f64>>>,
    pub calls: Arc<AtomicUsize>,
}

impl Gauge {
    pub fn new(target: Target, name: &str, v: f64) -> Self {
        Self {
            target,
            name: name.into(),
            value: Arc::new(Mutex::new(Some(v))),
            calls: Default::default(),
        }
    }
    pub fn set(&self, v: f64) {
        *self.value.lock().unwrap() = Some(v);
    }
    pub fn fail(&self) {
        *self.value.lock().unwrap() = None;
    }
    pub fn arc(&self) -> Arc<dyn Probe> {
        Arc::new(self.clone())
    }
}

#[async_trait]
impl Probe for Gauge {
    fn id(&self) -> &str {
        "test.gauge"
    }
    fn target(&self) -> &Target {
        &self.target
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match *self.value.lock().unwrap() {
            Some(v) => Ok(
                Observation::new("test.gauge", &self.target.name, ctx.now()).sample(
                    &self.name,
                    Default::default(),
                    v,
                ),
            ),
            None => Err(ProbeError::new(
                "test.gauge",
                &self.target.name,
                "http://127.0.0.1:1/metrics",
                ErrorKind::Unreachable,
                "connection refused",
            )),
        }
    }
}

/// How a recording remediation's apply behaves.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Ok,
    FailTransient,
    FailPermanent,
    Sleep(Duration),
}

/// A remediation that records every call.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub id: String,
    pub risk: Risk,
    pub idempotent: bool,
    pub targets: Vec<Target>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub plans: Arc<AtomicUsize>,
    pub applies: Arc<AtomicUsize>,
    pub running: Arc<AtomicUsize>,
    pub max_running: Arc<AtomicUsize>,
}

impl Recorder {
    pub fn new(id: &str, risk: Risk, targets: Vec<Target>) -> Self {
        Self {
            id: id.into(),
            risk,
            idempotent: false,
            targets,
            behaviour: Arc::new(Mutex::new(Behaviour::Ok)),
            plans: Default::default(),
            applies: Default::default(),
            running: Default::default(),
            max_running: Default::default(),
        }
    }
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
    pub fn behave(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }
    pub fn applied(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }
    pub fn arc(&self) -> Arc<dyn Remediation> {
        Arc::new(self.clone())
    }
}

#[async_trait]
impl Remediation for Recorder {
    fn id(&self) -> &str {
        &self.id
    }
    fn risk(&self) -> Risk {
        self.risk
    }
    fn idempotent(&self) -> bool {
        self.idempotent
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        self.plans.fetch_add(1, Ordering::SeqCst);
        Ok(
            Plan::new(&self.id, self.targets.clone(), format!("do {}", self.id))
                .expect("it gets better"),
        )
    }
    async fn apply(&self, _plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let b = self.behaviour.lock().unwrap().clone();
        let res = match b {
            Behaviour::Ok => {
                Ok(Outcome::new("done").details(serde_json::json!({"checkpoint": "chk-17"})))
            }
            Behaviour::FailTransient => Err(RemediationError::new(
                &self.id,
                "t",
                "http://127.0.0.1:1",
                ErrorKind::Unreachable,
                "connection refused",
            )),
            Behaviour::FailPermanent => Err(RemediationError::new(
                &self.id,
                "t",
                "http://127.0.0.1:1",
                ErrorKind::Rejected,
                "HTTP 409",
            )),
            Behaviour::Sleep(d) => {
                tokio::time::sleep(d).await;
                Ok(Outcome::new("slept"))
            }
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        res
    }
}

/// A notifier that records pages.
#[derive(Debug, Clone, Default)]
pub struct Pager {
    pub pages: Arc<Mutex<Vec<Notification>>>,
}

impl Pager {
    /// The roles paged (triggers only: acknowledgements and resolutions are not pages).
    pub fn roles(&self) -> Vec<String> {
        self.pages
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.action == rb_core::escalation::NotifyAction::Trigger)
            .map(|n| n.role.clone())
            .collect()
    }
    pub fn all(&self) -> Vec<Notification> {
        self.pages.lock().unwrap().clone()
    }
}

#[async_trait]
impl Notifier for Pager {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        self.pages.lock().unwrap().push(n.clone());
        Ok(())
    }
}

pub fn kafka() -> Target {
    Target::new("kafka", "kafka-main")
}

/// The seed's Kafka backlog playbook over a gauge, with `rem` as its mitigation.
pub fn backlog(g: &Gauge, rems: Vec<Arc<dyn Remediation>>) -> Playbook {
    let mut p = Playbook::new("kafka-backlog", "Kafka backlog grows")
        .service("orders-pipeline")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max")
                .above(5_000.0)
                .for_at_least(mins(2))
                .clears_below(1_000.0),
        )
        .stable_for(mins(5))
        .escalate_to("Kafka SME");
    for r in rems {
        p = p.mitigate(r);
    }
    p
}

pub fn clock() -> Clock {
    // 2026-11-25T07:00:00Z
    Clock::starting_at(Timestamp(1_795_590_000_000))
}

/// Advance virtual time by `d`, one tick per `step`.
pub async fn run(engine: &Engine, d: Duration, step: Duration) {
    let end = tokio::time::Instant::now() + d;
    loop {
        engine.tick().await.unwrap();
        if tokio::time::Instant::now() >= end {
            break;
        }
        tokio::time::sleep(step).await;
    }
}
