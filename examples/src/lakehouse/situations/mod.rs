//! One module per situation of seed §4; each builds its playbook(s) from [`Systems`] and knows how
//! to bring its situation about on rb-testkit's `FakeLakehouse` ([`Scene`]).
//!
//! Every module has the same shape: `pub const PLAYBOOK: &str` (the playbook id, the middle part of
//! its incident ids), `pub fn playbooks(&Systems) -> Vec<Playbook>` (a `Result` with a
//! [`BuildError`] where building a driver client can fail: Kafka's), and one or more [`Scene`]s
//! the scripted day and the tests play.

use std::time::Duration;

use async_trait::async_trait;
use rb_core::{Engine, Incident, Playbook};
use rb_testkit::lakehouse::FakeLakehouse;

use super::{BuildError, Systems};

pub mod cassandra_down;
pub mod connect_failed;
pub mod db_saturation;
pub mod flink_restarting;
pub mod kafka_backlog;
pub mod nessie_commit;
pub mod trino_backlog;

/// Every situation's playbooks, in the order of seed §4, or the first client that cannot be built.
pub fn all(systems: &Systems) -> Result<Vec<Playbook>, BuildError> {
    let mut out = Vec::new();
    out.extend(kafka_backlog::playbooks(systems)?);
    out.extend(flink_restarting::playbooks(systems));
    out.extend(cassandra_down::playbooks(systems));
    out.extend(nessie_commit::playbooks(systems));
    out.extend(connect_failed::playbooks(systems));
    out.extend(trino_backlog::playbooks(systems));
    out.extend(db_saturation::playbooks(systems));
    Ok(out)
}

/// What a scene expects of the runbook: the incident it must open (`playbook` and the incident
/// key's labels that must match), or nothing for a decoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The playbook that must open an incident.
    pub playbook: &'static str,
    /// Labels the incident's key must carry (`connector=orders-cdc`).
    pub key: Vec<(&'static str, String)>,
    /// Ids of the mitigation steps that must be applied, in order (empty: none must be).
    pub applied: Vec<&'static str>,
}

impl Expect {
    /// Whether `incident` is the one this scene expects.
    pub fn matches(&self, incident: &Incident) -> bool {
        incident.record.playbook == self.playbook
            && self
                .key
                .iter()
                .all(|(k, v)| incident.record.key.get(*k).map(String::as_str) == Some(v.as_str()))
    }
}

/// An error while playing a scene on the fake lakehouse.
#[derive(Debug, thiserror::Error)]
#[error("scene {scene}: {cause}")]
pub struct SceneError {
    /// The scene.
    pub scene: String,
    /// What failed.
    pub cause: String,
}

impl SceneError {
    /// A scene error.
    pub fn new(scene: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        Self {
            scene: scene.into(),
            cause: cause.to_string(),
        }
    }
}

/// A situation (or a decoy) played on the fake lakehouse: how it is brought about, and how the
/// fake world answers while it runs (a fix seen in the fake's request records lets it heal; a
/// scripted human completes a human task).
#[async_trait]
pub trait Scene: Send + Sync + std::fmt::Debug {
    /// Short name for the timeline ("connector orders-cdc fails").
    fn name(&self) -> String;

    /// The incident it must open; `None` for a decoy, which must open none.
    fn expect(&self) -> Option<Expect>;

    /// Bring it about (the moment detection latency is measured from).
    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError>;

    /// Called after every engine step while the scene runs, with the time since [`start`]. The
    /// world's answer: heal when the fix is seen in the fake's records, end a decoy, complete a
    /// human task. Returns `true` once the scene is over (healed, or the decoy ended).
    ///
    /// [`start`]: Scene::start
    async fn react(
        &self,
        lake: &FakeLakehouse,
        engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, SceneError>;
}

/// Play `scene` on `lake` with `engine` running: start it, then advance the engine by `step` and
/// let the scene react, until the scene is over or `max` has passed. Returns how long it ran.
pub async fn play(
    scene: &dyn Scene,
    lake: &FakeLakehouse,
    engine: &Engine,
    step: Duration,
    max: Duration,
) -> Result<Duration, SceneError> {
    let started = tokio::time::Instant::now();
    scene.start(lake).await?;
    loop {
        engine
            .run_for(step)
            .await
            .map_err(|e| SceneError::new(scene.name(), e))?;
        let since = started.elapsed();
        if scene.react(lake, engine, since).await? || since >= max {
            return Ok(since);
        }
    }
}
