//! The scripted day on the fake lakehouse: every situation of seed §4 at least once (two of them
//! at the same time on different targets), decoys that must open nothing, a terminal timeline as
//! it happens, and a summary with each incident's detection latency.
//!
//! Everything runs on tokio's clock: call [`play_day`] on a runtime whose clock is paused
//! (`tokio::time::pause()`), and the hours of the day pass in seconds.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rb_core::journal::{Event, Journal, SqliteJournal};
use rb_core::policy::{CallbackApprover, Decision, SafetyPolicy};
use rb_core::report::describe;
use rb_core::time::Timestamp;
use rb_core::{Engine, Incident, Resolution};
use rb_testkit::lakehouse::{FakeLakehouse, HttpSystem};

use super::checklist::{self, CheckedItem, TicketSink};
use super::situations::{Expect, Scene};
use super::{Credentials, Endpoints, Systems, Timings};

/// A scene and when in the day it starts.
#[derive(Debug, Clone)]
pub struct Cue {
    /// Time since the start of the day.
    pub at: Duration,
    /// What happens.
    pub scene: Arc<dyn Scene>,
}

/// How to play the day.
#[derive(Debug, Clone)]
pub struct DayOptions {
    /// Plan and journal remediations without applying them.
    pub dry_run: bool,
    /// Where the reviews (Markdown, JSON) and the SQLite journal go.
    pub out_dir: PathBuf,
    /// Print the timeline and the summary to stdout.
    pub print: bool,
    /// Colour (ANSI) in what is printed; `None`: when stdout is a terminal and `NO_COLOR` is unset.
    pub color: Option<bool>,
    /// Credentials to configure (the secret-scan test sets one for every system).
    pub credentials: Credentials,
    /// Durations of the playbooks.
    pub timings: Timings,
    /// How far the engine runs between two looks at the scenes.
    pub step: Duration,
    /// The day ends at the latest this long after it began.
    pub max_length: Duration,
}

impl DayOptions {
    /// Defaults: not dry-run, the seed's timings, printing, colour when stdout is a terminal.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            dry_run: false,
            out_dir: out_dir.into(),
            print: true,
            color: None,
            credentials: Credentials::default(),
            timings: Timings::seed(),
            step: Duration::from_secs(30),
            max_length: Duration::from_secs(12 * 3600),
        }
    }
}

/// What became of one scene of the day.
#[derive(Debug, Clone)]
pub struct SceneOutcome {
    /// The scene's name.
    pub name: String,
    /// What it expected (`None`: a decoy).
    pub expect: Option<Expect>,
    /// When it started.
    pub started_at: Timestamp,
    /// The incident that answered it, if any.
    pub incident: Option<String>,
    /// From the scene's start to the incident's opening.
    pub detection_latency: Option<Duration>,
    /// Whether the scene was over (healed, or the decoy ended) by the end of the day.
    pub over: bool,
}

/// The day, summed up.
#[derive(Debug, Clone)]
pub struct DayReport {
    /// Every scene, in the order they started.
    pub scenes: Vec<SceneOutcome>,
    /// Every incident of the day.
    pub incidents: Vec<Incident>,
    /// Incidents no real scene explains (opened by a decoy, or by nothing).
    pub false_incidents: Vec<String>,
    /// Real scenes no incident answered.
    pub missed: Vec<String>,
    /// The checklist of each closed incident.
    pub checklists: BTreeMap<String, Vec<CheckedItem>>,
    /// Where the reviews and the journal were written.
    pub out_dir: PathBuf,
    /// How long the day lasted (virtual time).
    pub length: Duration,
    /// The timeline as printed (without colour).
    pub timeline: Vec<String>,
}

impl DayReport {
    /// Real situations of the day that an incident answered.
    pub fn detected(&self) -> usize {
        self.scenes
            .iter()
            .filter(|s| s.expect.is_some() && s.incident.is_some())
            .count()
    }

    /// Real situations of the day.
    pub fn real(&self) -> usize {
        self.scenes.iter().filter(|s| s.expect.is_some()).count()
    }
}

/// An error playing the day.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DayError {
    /// The engine refused.
    #[error("engine: {0}")]
    Engine(#[from] rb_core::Error),
    /// A client could not be built.
    #[error(transparent)]
    Build(#[from] super::BuildError),
    /// A scene failed on the fake lakehouse.
    #[error(transparent)]
    Scene(#[from] super::situations::SceneError),
    /// Writing the reports failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The journal could not be opened.
    #[error("journal: {0}")]
    Journal(#[from] rb_core::JournalError),
}

/// The day's script: when each situation and decoy happens. Every situation of seed §4 at least
/// once; at 01:00 a connector fails while PostgreSQL saturates (two incidents at once on
/// different targets). The decoys come first, each sized to tempt a careless rule.
pub fn script() -> Vec<Cue> {
    use super::situations::{
        cassandra_down, connect_failed, db_saturation, flink_restarting, kafka_backlog,
        nessie_commit, trino_backlog,
    };
    use rb_testkit::lakehouse::{Database, SINK_CONNECTOR};
    let min = |m: u64| Duration::from_secs(m * 60);
    let cue = |m: u64, scene: Arc<dyn Scene>| Cue { at: min(m), scene };
    let mut cues = vec![
        // decoys
        cue(
            5,
            Arc::new(connect_failed::ConnectorPaused {
                connector: SINK_CONNECTOR.to_string(),
                for_how_long: min(20),
            }),
        ),
        cue(8, Arc::new(kafka_backlog::LagSpike::seed())),
        cue(10, Arc::new(ProbeTimesOutOnce(HttpSystem::Connect))),
        cue(
            15,
            Arc::new(db_saturation::Busy {
                db: Database::Mysql,
                percent: 85.0,
                for_how_long: min(20),
            }),
        ),
        cue(
            20,
            Arc::new(kafka_backlog::QuietTopic {
                for_how_long: min(15),
            }),
        ),
        cue(
            30,
            Arc::new(flink_restarting::RestartOnce {
                observe_for: min(15),
            }),
        ),
        cue(
            40,
            Arc::new(nessie_commit::HealthTimesOutOnce {
                for_how_long: min(5),
            }),
        ),
        cue(50, Arc::new(kafka_backlog::Rebalance::seed())),
        // the situations of seed §4
        cue(60, Arc::new(connect_failed::ConnectorFails::orders_cdc())),
        cue(
            60,
            Arc::new(db_saturation::Saturated {
                db: Database::Postgres,
                percent: 95.0,
            }),
        ),
        cue(75, Arc::new(kafka_backlog::Backlog::orders())),
        cue(
            90,
            Arc::new(db_saturation::Saturated {
                db: Database::Mysql,
                percent: 96.0,
            }),
        ),
        cue(105, Arc::new(flink_restarting::SchemaCrashLoop::new())),
        cue(
            120,
            Arc::new(connect_failed::ConnectorMisconfigured::payments_sink()),
        ),
        cue(135, Arc::new(cassandra_down::NodeDown::new(1, min(20)))),
        cue(150, Arc::new(nessie_commit::CommitConflict::new())),
        cue(165, Arc::new(trino_backlog::Backlog::new(8))),
        cue(180, Arc::new(nessie_commit::MinioLowSpace::new(20 << 30))),
        cue(195, Arc::new(flink_restarting::LostTaskManager::new())),
    ];
    cues.sort_by_key(|c| c.at);
    cues
}

/// **Decoy:** one request to `system` hangs until the probe's deadline; the next is answered.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTimesOutOnce(pub HttpSystem);

#[async_trait::async_trait]
impl Scene for ProbeTimesOutOnce {
    fn name(&self) -> String {
        format!("decoy: a {:?} probe times out once", self.0)
    }
    fn expect(&self) -> Option<Expect> {
        None
    }
    async fn start(&self, lake: &FakeLakehouse) -> Result<(), super::situations::SceneError> {
        lake.probe_timeout_once(self.0);
        Ok(())
    }
    async fn react(
        &self,
        _lake: &FakeLakehouse,
        _engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, super::situations::SceneError> {
        Ok(since_start >= Duration::from_secs(300))
    }
}

struct Running {
    cue: Cue,
    /// The fingerprint of the alert the lakehouse's Prometheus fires while the situation lasts.
    alert: Option<String>,
    started: tokio::time::Instant,
    started_at: Timestamp,
    over: bool,
}

/// Colours of the timeline.
#[derive(Debug, Clone, Copy)]
struct Palette(bool);

impl Palette {
    fn paint(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Prints new journal entries as they are recorded, one line each (`HH:MM:SS`, a mark, the
/// incident, what happened), in colour when asked; keeps the plain lines.
#[derive(Debug)]
pub struct Timeline {
    seen: HashMap<String, u64>,
    done: std::collections::HashSet<String>,
    palette: Palette,
    print: bool,
    lines: Vec<String>,
}

impl Timeline {
    /// A timeline printing to stdout when `print`, in colour when `color`.
    pub fn new(print: bool, color: bool) -> Self {
        Self {
            seen: HashMap::new(),
            done: std::collections::HashSet::new(),
            palette: Palette(color),
            print,
            lines: Vec::new(),
        }
    }

    /// The lines so far, without colour.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    fn line(&mut self, plain: String, painted: String) {
        if self.print {
            println!("{painted}");
        }
        self.lines.push(plain);
    }

    /// The wall-clock time of the (virtual) day, `HH:MM:SS` UTC: the times in the events'
    /// own text (ack due, since) read the same.
    fn clock(&self, at: Timestamp) -> String {
        at.rfc3339().get(11..19).unwrap_or("--:--:--").to_string()
    }

    fn scene(&mut self, at: Timestamp, name: &str, decoy: bool) {
        let mark = if decoy { "~" } else { "!" };
        let plain = format!(
            "{} {mark} {:<44} {name}",
            self.clock(at),
            "(fake lakehouse)"
        );
        let painted = format!(
            "{} {} {:<44} {}",
            self.clock(at),
            self.palette.paint(if decoy { "2" } else { "1;35" }, mark),
            self.palette.paint("2", "(fake lakehouse)"),
            self.palette.paint(if decoy { "2" } else { "35" }, name)
        );
        self.line(plain, painted);
    }

    /// Print every entry of `journal` not printed yet, oldest first.
    pub async fn catch_up(&mut self, journal: &dyn Journal) -> Result<(), rb_core::JournalError> {
        let ids = journal.incidents().await?;
        let mut fresh = Vec::new();
        for id in ids {
            // a closed incident was read once more after its Closed entry: nothing comes after
            if self.done.contains(&id) {
                continue;
            }
            let last = self.seen.get(&id).copied().unwrap_or(0);
            let entries = journal.entries(&id).await?;
            if entries
                .iter()
                .any(|e| matches!(e.event, Event::Closed { .. }))
                && entries.last().is_some_and(|e| e.seq <= last)
            {
                self.done.insert(id.clone());
            }
            for e in entries {
                if e.seq > last {
                    fresh.push(e);
                }
            }
        }
        fresh.sort_by_key(|e| (e.at, e.seq));
        for e in fresh {
            self.seen.insert(e.incident.clone(), e.seq);
            let (mark, code) = match &e.event {
                Event::Opened { .. } => ("●", "1;31"),
                Event::Phase { .. } => ("▶", "1;34"),
                Event::Closed { .. } => ("■", "1;32"),
                Event::Escalated { .. } => ("☎", "1;33"),
                Event::Finished { .. } | Event::Verified { .. } => ("✔", "32"),
                Event::Refused { .. } | Event::Interrupted { .. } => ("✖", "31"),
                Event::TaskAssigned { .. } | Event::TaskDone { .. } => ("✋", "33"),
                _ => (" ", "0"),
            };
            let what = describe(&e.event);
            let what = what.lines().next().unwrap_or_default().to_string();
            let short = short_id(&e.incident);
            let plain = format!("{} {mark} {short:<44} {what}", self.clock(e.at));
            let painted = format!(
                "{} {} {:<44} {}",
                self.clock(e.at),
                self.palette.paint(code, mark),
                self.palette.paint("36", &short),
                what
            );
            self.line(plain, painted);
        }
        Ok(())
    }
}

/// `INC-20261203-101041-connect-failed-06H3…` → `connect-failed-06H3…` (the date is on every line).
fn short_id(id: &str) -> String {
    let mut parts = id.splitn(4, '-');
    let _ = (parts.next(), parts.next(), parts.next());
    parts.next().unwrap_or(id).to_string()
}

/// Play `cues` on `lake` with the lakehouse runbook: the engine runs in steps of
/// [`DayOptions::step`]; each cue's scene starts at its time and reacts after every step; the
/// day ends when every scene is over and no incident is open (or at
/// [`DayOptions::max_length`]). Writes each review and the SQLite journal into
/// [`DayOptions::out_dir`].
pub async fn play_day(
    lake: &FakeLakehouse,
    cues: Vec<Cue>,
    opts: &DayOptions,
    tickets: Arc<dyn TicketSink>,
) -> Result<DayReport, DayError> {
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| DayError::Io {
        path: opts.out_dir.clone(),
        source,
    })?;
    // the data cross-check of the checklist reads a plausible answer from the fake Trino
    lake.trino().script_statement(
        checklist::CROSS_CHECK_SQL,
        rb_testkit::http::trino::StatementResult::rows(
            &[("orders", "bigint"), ("newest", "timestamp(3)")],
            vec![vec![
                serde_json::json!(1_284_311),
                serde_json::json!("2026-12-03 09:59:58.000"),
            ]],
        ),
    );
    let systems = Systems::new(
        Endpoints::from_fake(lake),
        opts.credentials.clone(),
        opts.timings.clone(),
    )?;
    let runbook = super::runbook(&systems)?;
    let journal_path = opts.out_dir.join("journal.db");
    let _ = std::fs::remove_file(&journal_path);
    let journal = Arc::new(SqliteJournal::open(&journal_path).await?);
    let color = opts.color.unwrap_or_else(color_by_default);
    // the day's on-call grants what is asked (the journal records each approval)
    let approver = CallbackApprover::new(Duration::from_secs(15 * 60), |_req| async {
        Decision::Granted {
            by: "on-call (scripted)".into(),
        }
    });
    let engine = Engine::builder(runbook)
        .journal(journal.clone())
        .approver(Arc::new(approver))
        .policy(SafetyPolicy {
            dry_run: opts.dry_run,
            ..SafetyPolicy::default()
        })
        .build()
        .await?;

    let clock = engine.clock();
    let t0 = tokio::time::Instant::now();
    let mut timeline = Timeline::new(opts.print, color);
    let mut pending: Vec<Cue> = cues;
    pending.sort_by_key(|c| std::cmp::Reverse(c.at));
    let mut running: Vec<Running> = Vec::new();
    let mut checklists = BTreeMap::new();
    let mut ticketed: HashMap<String, String> = HashMap::new();

    loop {
        let now = t0.elapsed();
        while pending.last().is_some_and(|c| c.at <= now) {
            let Some(cue) = pending.pop() else { break };
            cue.scene.start(lake).await?;
            // the lakehouse's Prometheus alert rules fire too: the checklist asks Alertmanager
            // whether the alert cleared
            let alert = cue.scene.expect().map(|e| {
                let mut spec = rb_testkit::http::alertmanager::AlertSpec::new(
                    checklist::alertname_of(e.playbook),
                );
                for (k, v) in &e.key {
                    spec = spec.label(k, v);
                }
                lake.alertmanager().fire(&spec)
            });
            let started_at = clock.now();
            timeline.scene(started_at, &cue.scene.name(), cue.scene.expect().is_none());
            running.push(Running {
                cue,
                alert,
                started: tokio::time::Instant::now(),
                started_at,
                over: false,
            });
        }
        engine.run_for(opts.step).await?;
        for r in running.iter_mut().filter(|r| !r.over) {
            r.over = r
                .cue
                .scene
                .react(lake, &engine, r.started.elapsed())
                .await?;
            if r.over {
                if let Some(fp) = &r.alert {
                    lake.alertmanager().resolve(fp);
                }
            }
        }
        timeline.catch_up(journal.as_ref()).await?;

        // tickets for new incidents; checklists for closed ones (only incidents not finished with
        // are read back from the journal)
        let open = journal.open_incidents().await?;
        for id in journal.incidents().await? {
            if checklists.contains_key(&id) {
                continue;
            }
            let is_open = open.contains(&id);
            if ticketed.contains_key(&id) && is_open {
                continue;
            }
            let inc = engine.incident(&id).await?;
            if !ticketed.contains_key(&id) {
                if let Ok(t) = tickets.open(&inc.record).await {
                    ticketed.insert(id.clone(), t);
                }
            }
            if inc.is_closed() {
                let ticket = ticketed.get(&id).cloned();
                let review = engine.review(&id).await?;
                let items = checklist::check(
                    &systems,
                    &review,
                    ticket.as_deref(),
                    tickets.as_ref(),
                    &opts.out_dir,
                )
                .await;
                checklist::write_review(&review, &items, &opts.out_dir)
                    .map_err(|(path, source)| DayError::Io { path, source })?;
                checklists.insert(id, items);
            }
        }

        let all_over = pending.is_empty() && running.iter().all(|r| r.over);
        if (all_over && open.is_empty()) || now >= opts.max_length {
            break;
        }
    }

    let incidents = engine.incidents().await?;
    // reviews of incidents still open at the end of the day, as they stand
    for inc in incidents.iter().filter(|i| !i.is_closed()) {
        let review = engine.review(&inc.record.id).await?;
        checklist::write_review(&review, &[], &opts.out_dir)
            .map_err(|(path, source)| DayError::Io { path, source })?;
    }

    // match scenes and incidents: the first incident of the expected playbook and key opened
    // at or after the scene's start
    let mut claimed: Vec<String> = Vec::new();
    let mut scenes = Vec::new();
    for r in &running {
        let expect = r.cue.scene.expect();
        let incident = expect.as_ref().and_then(|e| {
            incidents
                .iter()
                .filter(|i| {
                    e.matches(i)
                        && i.record.opened_at >= r.started_at
                        && !claimed.contains(&i.record.id)
                })
                .min_by_key(|i| i.record.opened_at)
        });
        if let Some(i) = incident {
            claimed.push(i.record.id.clone());
        }
        scenes.push(SceneOutcome {
            name: r.cue.scene.name(),
            detection_latency: incident.map(|i| i.record.opened_at.since(r.started_at)),
            incident: incident.map(|i| i.record.id.clone()),
            expect,
            started_at: r.started_at,
            over: r.over,
        });
    }
    let false_incidents = incidents
        .iter()
        .map(|i| i.record.id.clone())
        .filter(|id| !claimed.contains(id))
        .collect();
    let missed = scenes
        .iter()
        .filter(|s| s.expect.is_some() && s.incident.is_none())
        .map(|s| s.name.clone())
        .collect();
    let report = DayReport {
        scenes,
        incidents,
        false_incidents,
        missed,
        checklists,
        out_dir: opts.out_dir.clone(),
        length: t0.elapsed(),
        timeline: timeline.lines,
    };
    if opts.print {
        println!("\n{}", summary(&report, color));
    }
    Ok(report)
}

/// The ids of the mitigation steps of `incident` that were applied successfully, in order (its
/// playbook's step ids, found in `runbook`).
pub fn applied_steps(runbook: &rb_core::Runbook, incident: &Incident) -> Vec<String> {
    let steps = runbook
        .playbooks()
        .iter()
        .find(|p| p.id() == incident.record.playbook)
        .map(|p| p.mitigations())
        .unwrap_or_default();
    incident
        .timeline
        .iter()
        .filter_map(|e| match &e.event {
            Event::Finished { step, ok: true, .. } => Some(
                steps
                    .get(*step)
                    .map_or_else(|| format!("#{step}"), |s| s.id.clone()),
            ),
            _ => None,
        })
        .collect()
}

/// Colour when stdout is a terminal and `NO_COLOR` is unset.
pub fn color_by_default() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// The summary table: per scene, the incident, its detection latency, how it ended and what was
/// applied; then the day's counts.
pub fn summary(report: &DayReport, color: bool) -> String {
    let p = Palette(color);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<48} {:<44} {:>9} {:<12} applied",
        "scene", "incident", "detected", "outcome"
    );
    for sc in &report.scenes {
        let inc = sc
            .incident
            .as_ref()
            .and_then(|id| report.incidents.iter().find(|i| &i.record.id == id));
        let outcome = match inc.and_then(|i| i.resolution.as_ref()) {
            Some(Resolution::Recovered) => p.paint("32", "recovered"),
            Some(Resolution::ClosedByHuman { .. }) => p.paint("33", "closed"),
            Some(Resolution::Escalated) => p.paint("31", "escalated"),
            None if inc.is_some() => p.paint("31", "open"),
            None if sc.expect.is_none() => p.paint("2", "no incident"),
            None => p.paint("1;31", "MISSED"),
        };
        let latency = sc
            .detection_latency
            .map(rb_core::time::human)
            .unwrap_or_else(|| "-".into());
        let applied = inc
            .map(|i| i.applied_actions().join(", "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<48} {:<44} {:>9} {:<12} {}",
            sc.name,
            sc.incident
                .as_deref()
                .map(short_id)
                .unwrap_or_else(|| "-".into()),
            latency,
            outcome,
            applied
        );
    }
    let _ = writeln!(
        s,
        "\nreal situations detected: {}/{}   false incidents: {}   day length: {}",
        report.detected(),
        report.real(),
        report.false_incidents.len(),
        rb_core::time::human(report.length)
    );
    for id in &report.false_incidents {
        let _ = writeln!(s, "  false incident: {id}");
    }
    for m in &report.missed {
        let _ = writeln!(s, "  missed: {m}");
    }
    s
}
