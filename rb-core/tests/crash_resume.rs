//! Crash-resume under SIGKILL: a child process (this test binary, re-executed with an environment
//! variable that selects the child's role) runs an engine on a SQLite journal, on the real clock with
//! short durations, over several incidents whose steps write their effect to a side file (appended and
//! fsynced, so the record survives the child). The parent kills the child with SIGKILL at seeded random
//! moments, restarts it on the same files each time, and checks from the side file and the journal:
//! no non-idempotent step applied twice, no incident lost or duplicated, every incident at the end state
//! of an uninterrupted run, or handed to a human with the interrupted step named.
#![cfg(all(unix, feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rb_core::escalation::{EscalationReason, NotifyAction};
use rb_core::journal::{Event, Journal, SqliteJournal};
use rb_core::policy::Budget;
use rb_core::prelude::*;
use rb_core::Resolution;

/// The environment variable that makes this binary the child: the run's directory.
const CHILD_DIR: &str = "RB_CRASH_RESUME_CHILD_DIR";
/// How many targets (one playbook, one incident each) a scenario has.
const TARGETS: usize = 3;
/// The steps of every playbook: (step id, idempotent, fixes the target).
const STEPS: [(&str, bool, bool); 3] = [
    ("drain", false, false),
    ("refresh", true, false),
    ("resubmit", false, true),
];
/// The file the steps append their effects to (one line per application).
const EFFECTS: &str = "effects.log";
/// The file a human appends to when they fix a target by hand.
const FIXED: &str = "fixed.log";
const JOURNAL: &str = "journal.db";

fn target(i: usize) -> Target {
    Target::new("kafka", format!("kafka-{i}"))
}

/// Append one line to `file` and fsync it: once this returns, the line survives a SIGKILL.
fn append_line(file: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    writeln!(f, "{line}").unwrap();
    f.sync_all().unwrap();
}

fn lines(file: &Path) -> Vec<String> {
    match std::fs::read_to_string(file) {
        Ok(s) => s.lines().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether target `t` is fixed: its last step was applied, or a human fixed it by hand.
fn is_fixed(dir: &Path, t: &str) -> bool {
    lines(&dir.join(EFFECTS))
        .iter()
        .any(|l| l.ends_with(&format!(" resubmit {t}")))
        || lines(&dir.join(FIXED)).iter().any(|l| l == t)
}

/// A lag gauge whose value is high until its target is fixed (read from the side files).
#[derive(Debug)]
struct Lag {
    target: Target,
    dir: PathBuf,
}

#[async_trait]
impl Probe for Lag {
    fn id(&self) -> &str {
        "test.lag"
    }
    fn target(&self) -> &Target {
        &self.target
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let v = if is_fixed(&self.dir, &self.target.name) {
            0.0
        } else {
            12_000.0
        };
        Ok(
            Observation::new("test.lag", &self.target.name, ctx.now()).sample(
                "records_lag_max",
                Default::default(),
                v,
            ),
        )
    }
}

/// A step whose effect is a line `<incident> <step> <target>` in the effects file, written between two
/// short sleeps (so that kills land before, inside and after the effect).
#[derive(Debug)]
struct SideEffect {
    id: String,
    idempotent: bool,
    target: Target,
    dir: PathBuf,
}

#[async_trait]
impl Remediation for SideEffect {
    fn id(&self) -> &str {
        &self.id
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    fn idempotent(&self) -> bool {
        self.idempotent
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        Ok(Plan::new(
            &self.id,
            vec![self.target.clone()],
            format!("{} {}", self.id, self.target.name),
        ))
    }
    async fn apply(&self, _plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        tokio::time::sleep(Duration::from_millis(8)).await;
        append_line(
            &self.dir.join(EFFECTS),
            &format!("{} {} {}", ctx.incident, ctx.step_id, self.target.name),
        );
        tokio::time::sleep(Duration::from_millis(8)).await;
        Ok(Outcome::new("applied"))
    }
}

fn runbook(dir: &Path) -> Runbook {
    let mut rb = Runbook::new("crash-resume");
    for i in 0..TARGETS {
        let t = target(i);
        let mut p = Playbook::new(format!("backlog-{i}"), format!("Backlog on kafka-{i}"))
            .detect(
                Arc::new(Lag {
                    target: t.clone(),
                    dir: dir.to_path_buf(),
                }),
                Schedule::every(Duration::from_secs(1)),
                metric("records_lag_max").above(5_000.0),
            )
            .stable_for(Duration::from_millis(300))
            .escalate_to("Kafka SME");
        for (id, idempotent, _) in STEPS {
            p = p.mitigate_as(
                id,
                Arc::new(SideEffect {
                    id: format!("test.{id}"),
                    idempotent,
                    target: t.clone(),
                    dir: dir.to_path_buf(),
                }),
            );
        }
        rb = rb.playbook(p);
    }
    rb
}

/// The child: run the engine until every target's incident is closed, playing the human who, for an
/// incident whose step was interrupted, fixes the target by hand and closes the incident.
fn child(dir: &Path) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let journal = Arc::new(SqliteJournal::open(dir.join(JOURNAL)).await.unwrap());
        let engine = Engine::builder(runbook(dir))
            .journal(journal)
            .approver(Arc::new(AutoApprove))
            .policy(SafetyPolicy {
                cooldown: Duration::ZERO,
                global_budget: Budget::new(10_000, Duration::from_secs(3600)),
                target_budget: Budget::new(10_000, Duration::from_secs(3600)),
                retry_backoff: Duration::from_millis(5),
                ..SafetyPolicy::default()
            })
            .tick_interval(Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        let runner = engine.clone();
        tokio::spawn(async move { runner.run(std::future::pending()).await });
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let incidents = engine.incidents().await.unwrap();
            for inc in incidents.iter().filter(|i| !i.is_closed()) {
                let interrupted = inc
                    .timeline
                    .iter()
                    .any(|e| matches!(e.event, Event::Interrupted { .. }));
                if interrupted {
                    if !is_fixed(dir, &inc.record.target.name) {
                        append_line(&dir.join(FIXED), &inc.record.target.name);
                    }
                    engine.close(&inc.record.id, "a human").await.unwrap();
                }
            }
            let targets: BTreeSet<&str> = incidents
                .iter()
                .map(|i| i.record.target.name.as_str())
                .collect();
            if targets.len() == TARGETS && incidents.iter().all(|i| i.is_closed()) {
                std::process::exit(0);
            }
        }
    })
}

fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_resume_under_sigkill",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[derive(Debug, Default)]
struct Counts {
    kills: usize,
    exits_before_kill: usize,
    steps_started: usize,
    kills_mid_step: usize,
    outcome_unknown: usize,
    idempotent_reruns: usize,
    resumes: usize,
    handed_to_human: usize,
}

/// Check one scenario's journal and side files; `Err` names the first broken invariant.
async fn check(dir: &Path, counts: &mut Counts) -> Result<(), String> {
    let journal = SqliteJournal::open(dir.join(JOURNAL))
        .await
        .map_err(|e| format!("the journal does not open: {e}"))?;
    let ids = journal.incidents().await.map_err(|e| e.to_string())?;
    let mut by_target: BTreeMap<String, Vec<rb_core::Incident>> = BTreeMap::new();
    for id in &ids {
        let entries = journal.entries(id).await.map_err(|e| e.to_string())?;
        let inc = rb_core::Incident::from_entries(entries)
            .ok_or_else(|| format!("incident {id} has no Opened event"))?;
        by_target
            .entry(inc.record.target.name.clone())
            .or_default()
            .push(inc);
    }
    for i in 0..TARGETS {
        let t = target(i).name;
        match by_target.get(&t).map(Vec::len) {
            Some(1) => {}
            None => return Err(format!("the incident on {t} was lost")),
            Some(n) => return Err(format!("{n} incidents on {t}: duplicated")),
        }
    }
    // applications from the side file, per (incident, step)
    let mut applied: BTreeMap<(String, String), usize> = BTreeMap::new();
    for l in lines(&dir.join(EFFECTS)) {
        let mut parts = l.split(' ');
        let (Some(inc), Some(step)) = (parts.next(), parts.next()) else {
            return Err(format!("torn effects line {l:?}"));
        };
        *applied.entry((inc.into(), step.into())).or_default() += 1;
    }
    for incs in by_target.values() {
        let inc = &incs[0];
        let id = &inc.record.id;
        if !inc.is_closed() {
            return Err(format!("{id} is still open"));
        }
        counts.resumes += inc
            .timeline
            .iter()
            .filter(|e| matches!(&e.event, Event::Note { text } if text.contains("engine resumed")))
            .count();
        let mut interrupted = Vec::new();
        for (si, (step, idempotent, _)) in STEPS.iter().enumerate() {
            let started = inc
                .timeline
                .iter()
                .filter(|e| matches!(e.event, Event::Started { step: s, .. } if s == si))
                .count();
            let finished = inc
                .timeline
                .iter()
                .filter(|e| matches!(e.event, Event::Finished { step: s, ok: true, .. } if s == si))
                .count();
            let n = applied
                .get(&(id.clone(), (*step).to_string()))
                .copied()
                .unwrap_or(0);
            counts.steps_started += started;
            if n > started {
                return Err(format!(
                    "{id}: step {step} applied {n} times but journaled as started {started} times (apply before the journal)"
                ));
            }
            if !idempotent && n > 1 {
                return Err(format!(
                    "{id}: non-idempotent step {step} applied {n} times"
                ));
            }
            if !idempotent && started > 1 {
                return Err(format!(
                    "{id}: non-idempotent step {step} started {started} times (re-run after an interruption)"
                ));
            }
            if inc
                .timeline
                .iter()
                .any(|e| matches!(e.event, Event::Interrupted { step: s, .. } if s == si))
            {
                if *idempotent {
                    return Err(format!(
                        "{id}: idempotent step {step} handed to a human instead of re-run"
                    ));
                }
                interrupted.push(*step);
            }
            if *idempotent && started > finished {
                counts.idempotent_reruns += started - finished;
            }
        }
        counts.kills_mid_step += interrupted.len();
        counts.outcome_unknown += interrupted.len();
        match (&inc.resolution, interrupted.as_slice()) {
            // the end state of an uninterrupted run: every step applied once, recovered
            (Some(Resolution::Recovered), []) => {
                for (step, idempotent, _) in STEPS {
                    let n = applied
                        .get(&(id.clone(), step.to_string()))
                        .copied()
                        .unwrap_or(0);
                    if n == 0 || (!idempotent && n != 1) {
                        return Err(format!(
                            "{id}: recovered without interruption but step {step} applied {n} times"
                        ));
                    }
                }
            }
            (_, [step]) => {
                counts.handed_to_human += 1;
                let named = inc.timeline.iter().any(|e| {
                    matches!(&e.event, Event::Escalated { notification, .. }
                        if notification.action == NotifyAction::Trigger
                            && notification.reason == EscalationReason::StepInterrupted
                            && notification.message.contains(&format!("test.{step}")))
                });
                if !named {
                    return Err(format!(
                        "{id}: step {step} was interrupted but no page names it"
                    ));
                }
            }
            (res, steps) => {
                return Err(format!(
                    "{id}: unexpected end state {res:?} with interrupted steps {steps:?}"
                ))
            }
        }
    }
    journal.close().await;
    Ok(())
}

/// Keep a failing scenario's files where they survive the test and say where.
fn keep_artifact(dir: &Path, scenario: usize) -> PathBuf {
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("crash_resume-{}-{scenario}", std::process::id()));
    std::fs::create_dir_all(&keep).unwrap();
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        std::fs::copy(f.path(), keep.join(f.file_name())).unwrap();
    }
    keep
}

/// Wait for a child to exit by itself, at most `limit`; `None` when it had to be killed.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

#[test]
fn crash_resume_under_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
    }
    let seed: u64 = std::env::var("RB_CRASH_RESUME_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de);
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut counts = Counts::default();
    let mut scenario = 0;
    while counts.kills < 120 {
        scenario += 1;
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the crash-resume test is over its time bound after {} kills",
            counts.kills
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for _ in 0..rng.gen_range(10..=20) {
            let mut c = spawn_child(dir);
            // most kills in the first 300 ms (start, detection, the steps), some later (recovery)
            let at = Duration::from_millis(if rng.gen_bool(0.75) {
                rng.gen_range(0..=300)
            } else {
                rng.gen_range(300..=1_500)
            });
            // SIGKILL unless the child finished the scenario first
            if let Some(status) = wait_for_or_kill(&mut c, at) {
                assert!(status.success(), "child failed: {}", stderr_of(c));
                counts.exits_before_kill += 1;
                break;
            }
            counts.kills += 1;
        }
        // the last run is not killed: it must bring every incident to its end state
        let mut c = spawn_child(dir);
        match wait_for(&mut c, Duration::from_secs(20)) {
            Some(status) if status.success() => {}
            other => {
                let keep = keep_artifact(dir, scenario);
                panic!(
                    "scenario {scenario} (seed {seed}) did not finish ({other:?}): {}; journal kept in {}",
                    stderr_of(c),
                    keep.display()
                );
            }
        }
        if let Err(why) = rt.block_on(check(dir, &mut counts)) {
            let keep = keep_artifact(dir, scenario);
            panic!(
                "scenario {scenario} (seed {seed}): {why}; journal and side files kept in {}",
                keep.display()
            );
        }
    }
    println!(
        "crash-resume: {} scenarios, {} kills ({} runs finished before their kill), {} steps started, \
         {} kills mid-step ({} outcome unknown, handed to a human; {} idempotent re-runs), \
         repeats of non-idempotent steps 0, {} incidents handed to a human, {} resumes, {:?}",
        scenario,
        counts.kills,
        counts.exits_before_kill,
        counts.steps_started,
        counts.kills_mid_step + counts.idempotent_reruns,
        counts.outcome_unknown,
        counts.idempotent_reruns,
        counts.handed_to_human,
        counts.resumes,
        started.elapsed()
    );
    assert!(counts.kills >= 100);
    assert!(
        counts.kills_mid_step + counts.idempotent_reruns > 0,
        "no kill landed inside a step: the test did not exercise outcome unknown"
    );
}

/// Let the child run for `at`, then SIGKILL it; `Some` when it exited by itself first.
fn wait_for_or_kill(child: &mut Child, at: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + at;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= end {
            child.kill().unwrap(); // SIGKILL on unix
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn stderr_of(c: Child) -> String {
    let out = c.wait_with_output().map(|o| o.stderr).unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}
