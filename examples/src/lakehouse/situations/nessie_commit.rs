//! Seed §4 **Paimon/Nessie cannot commit**: the Flink sink throws on commit.
//!
//! * **Detect** — two bindings on `nessie-main`, one incident for the server:
//!   rb-probes' [`NessieBranchProbe`] compares `main` with the backup branch
//!   ([`BACKUP_BRANCH`]): commits on each side that the other lacks
//!   (`nessie_branch_commits_ahead > 0` **and** `nessie_branch_commits_behind > 0`) mean the two
//!   histories diverged — a writer changed a table on `main` that the backup changed too, and a
//!   sink committing on what it read gets a `REFERENCE_CONFLICT`; and [`NessieHealthProbe`] reads
//!   `/q/health` on the **management port** (the seed's **[correction]**: Nessie ≥ 0.82 serves
//!   health on 9000, not on the API port 19120), `nessie_health_up < 1`. Either for the
//!   for-duration opens the incident; a probe that times out once is unknown for one round, never
//!   an incident.
//! * **Diagnose** — health, the branch against its backup (HEAD hashes, merge base, the commits on
//!   each side: the HEAD hash of `main` goes into the incident record's `nessie_commit`), MinIO's
//!   usable free capacity ([`MinioCapacity`]: `minio_cluster_capacity_usable_free_bytes`, the
//!   seed's **[correction]** — `minio_cluster_disk_free_bytes` never existed) and the Flink
//!   JobManager's log lines (`{container="flink-jobmanager"}`: the sink's exception).
//! * **Mitigate** — (1) rb-actions' [`MergeFromBackup`] merges the backup branch into `main`,
//!   planned with Nessie's own dry run (`isDryRun`), only when MinIO has free capacity (a full
//!   object store is the other cause, and merging does not fix it); its outcome carries the new
//!   hash. (2) When the merge did not apply (its dry run conflicts): [`AssignBranch`] assigns
//!   `main` back to a known-good hash with the current hash as the expected one, when the
//!   playbook is given one ([`playbook_with_known_good`]); otherwise a human resolves the
//!   conflict ([`RESOLVE_STEP`]). Merge (disruptive) and assign (destructive) ask the approver
//!   first; an automatic approver never grants the assign, a human must.
//! * **Recover** — both detect symptoms ok for the stability window.
//! * **MinIO low on space** — a second playbook, [`MINIO_SPACE`], on `minio-main`: usable free
//!   space under [`MINIO_FREE_FLOOR`] for the for-duration pages a human to free space (expire
//!   snapshots, remove orphan files, add drives); it never merges.
//! * **Escalate** — the Data Platform on-call; MinIO space: Infra.
//!
//! ## The Nessie hash in the incident record
//!
//! rb-core fills [`IncidentRecord::nessie_commit`](rb_core::IncidentRecord) from the first
//! `nessie.commit` fact a detect or diagnosis observation carries: the HEAD of `main` when the
//! incident opened, which is the commit the conflict is about. The hash a merge or an assign
//! **results in** is in that step's outcome details (`hash`, with `previous_hash`) in the
//! journal and the review; rb-core has no path from an action's outcome to the record's field.

use std::sync::Arc;
use std::time::Duration;

use rb_actions::nessie::{AssignBranch, MergeFromBackup, NessieEndpoint};
use rb_core::incident::StepState;
use rb_core::prelude::*;
use rb_core::symptom::metric;
use rb_probes::loki::LokiLogs;
use rb_probes::minio::{MinioCapacity, MinioCapacityFact, MinioHealth};
use rb_probes::nessie::{NessieBranchProbe, NessieHealthProbe};
use rb_probes::transport::{HttpAuth, HttpClient, ReqwestClient};
use rb_testkit::http::RecordedRequest;
use rb_testkit::lakehouse::{FakeLakehouse, HttpSystem, BACKUP_BRANCH};

use crate::lakehouse::situations::{Expect, Scene, SceneError};
use crate::lakehouse::{BuildError, Systems};

/// The cannot-commit playbook.
pub const PLAYBOOK: &str = "nessie-commit";
/// The MinIO-low-on-space playbook.
pub const MINIO_SPACE: &str = "nessie-commit-minio-space";
/// The branch the Paimon sinks commit on.
pub const BRANCH: &str = "main";
/// The id of the merge step.
pub const MERGE_STEP: &str = "merge-from-backup";
/// The id of the assign step ([`playbook_with_known_good`]).
pub const ASSIGN_STEP: &str = "assign-known-good";
/// The id of the human step that resolves a conflict the merge could not.
pub const RESOLVE_STEP: &str = "resolve-conflict";
/// The id of the human step that frees MinIO space.
pub const FREE_SPACE_STEP: &str = "free-minio-space";
/// MinIO's usable free capacity below which commits are at risk (100 GiB).
pub const MINIO_FREE_FLOOR: f64 = 100.0 * (1u64 << 30) as f64;
/// MinIO's usable free bytes (v2 cluster metrics).
pub const MINIO_FREE: &str = "minio_cluster_capacity_usable_free_bytes";

/// Both playbooks; a conflict the merge cannot resolve is handed to a human.
pub fn playbooks(s: &Systems) -> Vec<Playbook> {
    match (playbook(s), minio_space(s)) {
        (Ok(p), m) => vec![p, m],
        // the Nessie root URL could not be derived: only the MinIO side can be watched
        (Err(e), m) => {
            tracing::warn!("nessie-commit playbook not built: {e}");
            vec![m]
        }
    }
}

/// Nessie's server root: the endpoint as configured, without a trailing `/api/v2` (the probes
/// add `/api/v2/…` themselves, the actions want it in their base URL).
fn nessie_root(s: &Systems) -> String {
    let e = s.endpoints.nessie.trim_end_matches('/');
    e.strip_suffix("/api/v2").unwrap_or(e).to_string()
}

fn client(s: &Systems, url: &str, auth: HttpAuth) -> Result<Arc<dyn HttpClient>, BuildError> {
    let timeout = s.timings.probe_deadline.max(Duration::from_secs(30));
    ReqwestClient::builder(url)
        .auth(auth)
        .timeout(timeout)
        .build()
        .map(|c| Arc::new(c) as Arc<dyn HttpClient>)
        .map_err(|e| BuildError {
            system: "nessie",
            endpoint: url.to_string(),
            cause: e.to_string(),
        })
}

fn token(s: &Systems) -> HttpAuth {
    s.credentials
        .nessie_token
        .clone()
        .map(HttpAuth::Bearer)
        .unwrap_or_default()
}

/// The clients Nessie is reached through.
struct Clients {
    /// The server root, for the probes.
    root: Arc<dyn HttpClient>,
    /// The v2 API, for the actions.
    api: Arc<dyn HttpClient>,
}

fn clients(s: &Systems) -> Result<Clients, BuildError> {
    let root = nessie_root(s);
    Ok(Clients {
        root: client(s, &root, token(s))?,
        api: client(s, &format!("{root}/api/v2"), token(s))?,
    })
}

fn branch_probe(s: &Systems, root: Arc<dyn HttpClient>) -> Arc<dyn Probe> {
    Arc::new(NessieBranchProbe::new(root, s.nessie.clone(), BRANCH).backup(BACKUP_BRANCH))
}

fn health_probe(s: &Systems, root: Arc<dyn HttpClient>) -> Arc<dyn Probe> {
    Arc::new(NessieHealthProbe::new(
        root,
        s.nessie_management_http.clone(),
        s.nessie.clone(),
    ))
}

fn minio_capacity(s: &Systems) -> Arc<dyn Probe> {
    Arc::new(MinioCapacity::new(s.minio_http.clone(), s.minio.clone()))
}

/// Whether the diagnosis saw MinIO with usable free capacity above the floor.
fn minio_has_space(ctx: &ActionContext) -> bool {
    ctx.fact::<MinioCapacityFact>()
        .and_then(|f| f.usable_free_bytes)
        .is_some_and(|free| free >= MINIO_FREE_FLOOR)
}

fn base(s: &Systems, root: &Arc<dyn HttpClient>) -> Playbook {
    let t = &s.timings;
    let every = Schedule::every(t.probe_every).deadline(t.probe_deadline);
    Playbook::new(PLAYBOOK, "Paimon/Nessie cannot commit")
        .service("paimon-nessie")
        .detect(
            branch_probe(s, root.clone()),
            every,
            all_of(vec![
                Box::new(
                    metric("nessie_branch_commits_behind")
                        .max()
                        .above(0.0)
                        .for_at_least(t.for_duration),
                ),
                Box::new(
                    metric("nessie_branch_commits_ahead")
                        .max()
                        .above(0.0)
                        .for_at_least(t.for_duration),
                ),
            ]),
        )
        .detect(
            health_probe(s, root.clone()),
            every,
            metric("nessie_health_up")
                .min()
                .below(1.0)
                .for_at_least(t.for_duration),
        )
        .diagnose(health_probe(s, root.clone()))
        .diagnose(branch_probe(s, root.clone()))
        .diagnose(minio_capacity(s))
        .diagnose(Arc::new(
            LokiLogs::new(
                s.loki_http.clone(),
                s.loki.clone(),
                r#"{container="flink-jobmanager"}"#,
            )
            .window(s.timings.stage.max(Duration::from_secs(900)))
            .limit(50)
            .id("loki.flink_jobmanager_logs"),
        ))
}

fn merge_step(p: Playbook, endpoint: &NessieEndpoint) -> Playbook {
    p.mitigate_as(
        MERGE_STEP,
        Arc::new(MergeFromBackup::new(endpoint.clone(), BACKUP_BRANCH).into_branch(BRANCH)),
    )
    .when(
        "MinIO is reachable and has usable free capacity above the floor",
        minio_has_space,
    )
}

fn merge_did_not_apply(ctx: &ActionContext) -> bool {
    ctx.output(MERGE_STEP).is_none()
}

fn finish(p: Playbook, s: &Systems) -> Playbook {
    p.continue_after_failure()
        .stable_for(s.timings.stable_for)
        .review_item("Which writer committed the conflicting change, and why did it bypass the sink? (seed §4)")
        .review_item("Is the backup branch re-cut often enough to be a useful merge source?")
        .review_item("Lessons learned: add the conflicting keys and their fix to the runbook (seed §2)")
        .escalate_to("Data Platform On-call")
}

/// The cannot-commit playbook: merge from the backup; a conflict the merge cannot resolve goes
/// to a human.
pub fn playbook(s: &Systems) -> Result<Playbook, BuildError> {
    let Clients { root, api } = clients(s)?;
    let endpoint = NessieEndpoint::new(s.nessie.clone(), api);
    let p = merge_step(base(s, &root), &endpoint)
        .human_task(
            RESOLVE_STEP,
            "The merge from the backup branch did not apply (conflict, or MinIO without space): inspect the conflicting keys in the evidence, then merge by hand or assign main back to a known-good hash (with its current hash as the expected one)",
        )
        .when("the merge from the backup did not apply", merge_did_not_apply);
    Ok(finish(p, s))
}

/// The cannot-commit playbook with a known-good hash of `main` to assign back to when the merge
/// from the backup does not apply (its dry run conflicts).
pub fn playbook_with_known_good(
    s: &Systems,
    known_good: impl Into<String>,
) -> Result<Playbook, BuildError> {
    let Clients { root, api } = clients(s)?;
    let endpoint = NessieEndpoint::new(s.nessie.clone(), api);
    let p = merge_step(base(s, &root), &endpoint)
        .mitigate_as(
            ASSIGN_STEP,
            Arc::new(AssignBranch::to_hash(endpoint, BRANCH, known_good)),
        )
        .when(
            "the merge from the backup did not apply",
            merge_did_not_apply,
        );
    Ok(finish(p, s))
}

/// MinIO's usable free space under [`MINIO_FREE_FLOOR`] for the for-duration: a human frees
/// space. Never merges.
pub fn minio_space(s: &Systems) -> Playbook {
    let t = &s.timings;
    Playbook::new(MINIO_SPACE, "Paimon/Nessie cannot commit: MinIO low on space")
        .service("paimon-nessie")
        .detect(
            minio_capacity(s),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            metric(MINIO_FREE)
                .min()
                .below(MINIO_FREE_FLOOR)
                .for_at_least(t.for_duration),
        )
        .diagnose(minio_capacity(s))
        .diagnose(Arc::new(MinioHealth::new(
            s.minio_http.clone(),
            s.minio.clone(),
        )))
        .human_task(
            FREE_SPACE_STEP,
            "MinIO's usable free space is under the floor: expire old Paimon snapshots, remove orphan files or add drives, then mark this task done",
        )
        // a recovery check is a symptom that must stay ok: enough space for the window
        .recover_on_detect(metric(MINIO_FREE).min().below(MINIO_FREE_FLOOR))
        .stable_for(t.stable_for)
        .review_item("What filled the object store, and is snapshot expiry scheduled? (seed §4)")
        .review_item("Is there an alert on MinIO's free space well before commits fail?")
        .escalate_to("Infra")
}

/// Whether `r` is a Nessie write a remediation sends: a merge that is not Nessie's dry run, or
/// an assign of `main`.
pub fn is_nessie_fix(r: &RecordedRequest) -> bool {
    let merge = r.method == "POST"
        && r.path.ends_with("/history/merge")
        && r.json()
            .is_none_or(|b| b["isDryRun"].as_bool() != Some(true));
    let assign = r.method == "PUT" && r.path.starts_with(&format!("/api/v2/trees/{BRANCH}@"));
    merge || assign
}

/// Complete the human step `step_id` (index `step`) of every open incident of `playbook` that
/// waits for it; whether any incident of `playbook` is open.
async fn complete_waiting_task(
    engine: &Engine,
    playbook: &str,
    step: usize,
    step_id: &str,
) -> Result<bool, rb_core::Error> {
    let mut open = false;
    for inc in engine.incidents().await? {
        if inc.is_closed() || inc.record.playbook != playbook {
            continue;
        }
        open = true;
        if inc.step_state(step) == StepState::Started {
            engine
                .complete_task(&inc.record.id, step_id, "scripted on-call")
                .await?;
        }
    }
    Ok(open)
}

/// **Real:** another writer changes `lake.orders` on `main` and on the backup branch: the two
/// histories diverge and a merge of the backup conflicts. The world heals (the backup is re-cut
/// at `main`, writers re-read `main`) once a merge or an assign of `main` shows in the fake, or
/// once the on-call engineer has resolved it by hand (the human step).
#[derive(Debug, Clone, Default)]
pub struct CommitConflict {
    assigns: bool,
    hashes: Arc<std::sync::Mutex<Option<(String, String, String)>>>,
    healed: Arc<std::sync::atomic::AtomicBool>,
}

impl CommitConflict {
    /// The scene, for [`playbook`]: the merge conflicts and a human resolves it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The scene, for [`playbook_with_known_good`]: the merge conflicts and `main` is assigned
    /// back to the known-good hash.
    pub fn assigning() -> Self {
        Self {
            assigns: true,
            ..Self::default()
        }
    }

    /// `(main before the conflict, backup HEAD, main HEAD)`, once started.
    pub fn hashes(&self) -> Option<(String, String, String)> {
        self.hashes.lock().ok().and_then(|h| h.clone())
    }
}

#[async_trait]
impl Scene for CommitConflict {
    fn name(&self) -> String {
        format!("Nessie: {BRANCH} and {BACKUP_BRANCH} conflict on lake.orders")
    }

    fn expect(&self) -> Option<Expect> {
        Some(Expect {
            playbook: PLAYBOOK,
            key: Vec::new(),
            applied: if self.assigns {
                vec![ASSIGN_STEP]
            } else {
                Vec::new()
            },
        })
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        let h = lake
            .nessie_commit_conflict()
            .map_err(|e| SceneError::new(self.name(), e))?;
        if let Ok(mut slot) = self.hashes.lock() {
            *slot = Some(h);
        }
        Ok(())
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        engine: &Engine,
        _since_start: Duration,
    ) -> Result<bool, SceneError> {
        let err = |e: rb_core::Error| SceneError::new(self.name(), e);
        // the human step (the playbook without a known-good hash) is the last one
        let open = complete_waiting_task(engine, PLAYBOOK, 1, RESOLVE_STEP)
            .await
            .map_err(err)?;
        let fixed = lake
            .http(HttpSystem::Nessie)
            .requests()
            .all()
            .iter()
            .any(is_nessie_fix);
        let human_done = engine.incidents().await.map_err(err)?.iter().any(|i| {
            i.record.playbook == PLAYBOOK
                && i.timeline
                    .iter()
                    .any(|e| matches!(e.event, rb_core::journal::Event::TaskDone { .. }))
        });
        let healed = self.healed.load(std::sync::atomic::Ordering::SeqCst);
        if !healed && (fixed || human_done) {
            lake.heal_nessie()
                .map_err(|e| SceneError::new(self.name(), e))?;
            self.healed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(self.healed.load(std::sync::atomic::Ordering::SeqCst) && !open)
    }
}

/// **Real:** MinIO's usable free space drops to `free_bytes`; once the on-call engineer has
/// freed space (the human step), it is half free again.
#[derive(Debug, Clone)]
pub struct MinioLowSpace {
    /// Usable free bytes left.
    pub free_bytes: u64,
    healed: Arc<std::sync::atomic::AtomicBool>,
}

impl MinioLowSpace {
    /// MinIO down to `free_bytes` usable free.
    pub fn new(free_bytes: u64) -> Self {
        Self {
            free_bytes,
            healed: Arc::default(),
        }
    }
}

#[async_trait]
impl Scene for MinioLowSpace {
    fn name(&self) -> String {
        format!(
            "MinIO low on space: {} GiB usable free",
            self.free_bytes >> 30
        )
    }

    fn expect(&self) -> Option<Expect> {
        Some(Expect {
            playbook: MINIO_SPACE,
            key: Vec::new(),
            applied: Vec::new(),
        })
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.minio_low_on_space(self.free_bytes);
        Ok(())
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        engine: &Engine,
        _since_start: Duration,
    ) -> Result<bool, SceneError> {
        let err = |e: rb_core::Error| SceneError::new(self.name(), e);
        let mut open = false;
        for inc in engine.incidents().await.map_err(err)? {
            if inc.is_closed() || inc.record.playbook != MINIO_SPACE {
                continue;
            }
            open = true;
            if inc.step_state(0) == StepState::Started {
                engine
                    .complete_task(&inc.record.id, FREE_SPACE_STEP, "scripted on-call")
                    .await
                    .map_err(err)?;
                lake.heal_minio();
                self.healed.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Ok(self.healed.load(std::sync::atomic::Ordering::SeqCst) && !open)
    }
}

/// **Decoy:** the next request to Nessie's management port hangs (the health probe times out
/// once), then it answers again. No incident; over after `for_how_long`.
#[derive(Debug, Clone)]
pub struct HealthTimesOutOnce {
    /// How long the scene watches.
    pub for_how_long: Duration,
}

#[async_trait]
impl Scene for HealthTimesOutOnce {
    fn name(&self) -> String {
        "decoy: Nessie's /q/health times out once".to_string()
    }

    fn expect(&self) -> Option<Expect> {
        None
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.probe_timeout_once(HttpSystem::NessieManagement);
        Ok(())
    }

    async fn react(
        &self,
        _lake: &FakeLakehouse,
        _engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, SceneError> {
        Ok(since_start >= self.for_how_long)
    }
}
