//! Two engines in one process sharing one journal and one coordinator, ticking concurrently under
//! seeded random delays injected into every coordinator and journal call (paused clock): no incident
//! key is opened twice, no step is applied twice, every incident recovers with each step applied once.
//! The same scenario with a coordinator per engine (nothing shared) does open and apply twice: the
//! harness catches what the shared coordinator prevents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rb_core::coordination::{
    CoordinationError, Coordinator, FencingToken, InProcessCoordinator, Lease, OpenOrGet, Resource,
};
use rb_core::journal::{Entry, Event, Journal, MemoryJournal};
use rb_core::prelude::*;
use rb_core::{JournalError, Resolution};

const TARGETS: usize = 3;
const STEPS: [&str; 2] = ["svc.drain", "svc.fix"];

/// Sleep a random time from a seeded generator.
#[derive(Debug)]
struct Jitter {
    rng: Mutex<StdRng>,
    max_ms: u64,
}

impl Jitter {
    fn new(seed: u64, max_ms: u64) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            max_ms,
        }
    }
    async fn pause(&self) {
        let ms = self.rng.lock().unwrap().gen_range(0..=self.max_ms);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// A journal whose every call is delayed before and after.
#[derive(Debug)]
struct SlowJournal {
    inner: Arc<MemoryJournal>,
    jitter: Jitter,
}

#[rb_core::async_trait]
impl Journal for SlowJournal {
    async fn append(
        &self,
        incident: &str,
        at: Timestamp,
        event: &Event,
    ) -> Result<u64, JournalError> {
        self.jitter.pause().await;
        let r = self.inner.append(incident, at, event).await;
        self.jitter.pause().await;
        r
    }
    async fn entries(&self, incident: &str) -> Result<Vec<Entry>, JournalError> {
        self.jitter.pause().await;
        let r = self.inner.entries(incident).await;
        self.jitter.pause().await;
        r
    }
    async fn open_incidents(&self) -> Result<Vec<String>, JournalError> {
        self.jitter.pause().await;
        self.inner.open_incidents().await
    }
    async fn incidents(&self) -> Result<Vec<String>, JournalError> {
        self.jitter.pause().await;
        self.inner.incidents().await
    }
}

/// A coordinator whose every call is delayed before and after.
#[derive(Debug)]
struct SlowCoordinator {
    inner: Arc<InProcessCoordinator>,
    jitter: Jitter,
}

#[rb_core::async_trait]
impl Coordinator for SlowCoordinator {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn open_or_get(
        &self,
        key: &str,
        candidate: &str,
    ) -> Result<OpenOrGet, CoordinationError> {
        self.jitter.pause().await;
        let r = self.inner.open_or_get(key, candidate).await;
        self.jitter.pause().await;
        r
    }
    async fn close_incident(&self, key: &str, id: &str) -> Result<(), CoordinationError> {
        self.jitter.pause().await;
        let r = self.inner.close_incident(key, id).await;
        self.jitter.pause().await;
        r
    }
    async fn claim_step(
        &self,
        incident: &str,
        step: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError> {
        self.jitter.pause().await;
        let r = self.inner.claim_step(incident, step, holder, ttl).await;
        self.jitter.pause().await;
        r
    }
    async fn begin_step(&self, claim: &Lease) -> Result<(), CoordinationError> {
        self.jitter.pause().await;
        let r = self.inner.begin_step(claim).await;
        self.jitter.pause().await;
        r
    }
    async fn lease_target(
        &self,
        target: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError> {
        self.jitter.pause().await;
        let r = self.inner.lease_target(target, holder, ttl).await;
        self.jitter.pause().await;
        r
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, CoordinationError> {
        self.jitter.pause().await;
        let r = self.inner.renew(lease, ttl).await;
        self.jitter.pause().await;
        r
    }
    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError> {
        self.jitter.pause().await;
        let r = self.inner.release(lease).await;
        self.jitter.pause().await;
        r
    }
    async fn check_token(
        &self,
        resource: &Resource,
        token: FencingToken,
    ) -> Result<(), CoordinationError> {
        self.jitter.pause().await;
        let r = self.inner.check_token(resource, token).await;
        self.jitter.pause().await;
        r
    }
}

/// The world both engines look at: one broken flag per service, and every apply recorded.
#[derive(Debug, Default)]
struct World {
    broken: [AtomicBool; TARGETS],
    /// (service, action) → applies.
    applies: Mutex<BTreeMap<(usize, String), usize>>,
    /// Fencing tokens seen by applies (each step is begun once: tokens never repeat).
    tokens: Mutex<Vec<FencingToken>>,
}

fn service(i: usize) -> Target {
    Target::new("svc", format!("svc-{i}"))
}

/// Reports `broken` = 1 while the service is broken.
#[derive(Debug)]
struct BrokenProbe {
    world: Arc<World>,
    i: usize,
    target: Target,
}

#[rb_core::async_trait]
impl Probe for BrokenProbe {
    fn id(&self) -> &str {
        "svc.health"
    }
    fn target(&self) -> &Target {
        &self.target
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let v = if self.world.broken[self.i].load(Ordering::SeqCst) {
            1.0
        } else {
            0.0
        };
        Ok(
            Observation::new("svc.health", &self.target.name, ctx.now()).sample(
                "broken",
                Default::default(),
                v,
            ),
        )
    }
}

/// A non-idempotent action that counts its applies; `fixes` repairs the service.
#[derive(Debug)]
struct Counting {
    world: Arc<World>,
    i: usize,
    action: &'static str,
    fixes: bool,
}

#[rb_core::async_trait]
impl Remediation for Counting {
    fn id(&self) -> &str {
        self.action
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    fn idempotent(&self) -> bool {
        false
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        Ok(Plan::new(
            self.action,
            vec![service(self.i)],
            format!("{} svc-{}", self.action, self.i),
        ))
    }
    async fn apply(&self, _plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let token = ctx
            .fencing_token()
            .expect("an engine applies a step only under its claim's token");
        self.world.tokens.lock().unwrap().push(token);
        *self
            .world
            .applies
            .lock()
            .unwrap()
            .entry((self.i, self.action.to_string()))
            .or_default() += 1;
        tokio::time::sleep(secs(5)).await;
        if self.fixes {
            self.world.broken[self.i].store(false, Ordering::SeqCst);
        }
        Ok(Outcome::new("done"))
    }
}

fn runbook(world: &Arc<World>) -> Runbook {
    let mut rb = Runbook::new("two-engines");
    for i in 0..TARGETS {
        let probe = Arc::new(BrokenProbe {
            world: world.clone(),
            i,
            target: service(i),
        });
        let mut p = Playbook::new(format!("svc-{i}-down"), "service down")
            .service("svc")
            .detect(
                probe,
                Schedule::every(secs(10)),
                metric("broken").above(0.5),
            )
            .stable_for(secs(30));
        for (k, action) in STEPS.iter().enumerate() {
            p = p.mitigate(Arc::new(Counting {
                world: world.clone(),
                i,
                action,
                fixes: k == STEPS.len() - 1,
            }));
        }
        rb = rb.playbook(p);
    }
    rb
}

struct Outcome2 {
    opened: BTreeMap<String, usize>,
    applies: BTreeMap<(usize, String), usize>,
    recovered: usize,
    tokens: Vec<FencingToken>,
    /// Steps started, by engine.
    started_by: BTreeMap<String, usize>,
    /// Steps journaled interrupted or refused.
    halted: usize,
    /// `closed` entries.
    closed: usize,
}

/// Engine `e` of scenario `seed`: the world's runbook on `store` and `coordinator`, each behind seeded
/// random delays.
async fn engine(
    world: &Arc<World>,
    store: &Arc<MemoryJournal>,
    coordinator: Arc<InProcessCoordinator>,
    clock: rb_core::time::Clock,
    seed: u64,
    e: u64,
) -> Result<Engine, rb_core::Error> {
    Engine::builder(runbook(world))
        .journal(Arc::new(SlowJournal {
            inner: store.clone(),
            jitter: Jitter::new(seed * 8 + e, 40),
        }))
        .coordinator(Arc::new(SlowCoordinator {
            inner: coordinator,
            jitter: Jitter::new(seed * 8 + 4 + e, 40),
        }))
        .holder(format!("engine-{e}"))
        .clock(clock)
        .jitter_seed(seed ^ e)
        .incident_id_seed(seed * 3 + e)
        .build()
        .await
}

/// What the journal and the world say after a scenario, and how many incidents an engine adopted
/// after it started (their "engine resumed the incident" notes; at most one per incident).
async fn tally(store: &MemoryJournal, world: &World) -> (Outcome2, usize) {
    let (mut opened, mut started_by) = (BTreeMap::new(), BTreeMap::new());
    let (mut recovered, mut halted, mut closed, mut adopted) = (0, 0, 0, 0);
    for id in store.incidents().await.unwrap() {
        let entries = store.entries(&id).await.unwrap();
        let mut resumed = 0;
        for e in &entries {
            match &e.event {
                Event::Started { holder, .. } => {
                    *started_by
                        .entry(holder.clone().unwrap_or_default())
                        .or_default() += 1;
                }
                // a step in flight in another engine is waited for, never called interrupted
                Event::Interrupted { .. } | Event::Refused { .. } => halted += 1,
                Event::Closed { .. } => closed += 1,
                Event::Note { text } if text.contains("engine resumed the incident") => {
                    resumed += 1
                }
                _ => {}
            }
        }
        assert!(resumed <= 1, "{id} adopted {resumed} times");
        adopted += resumed;
        let inc = rb_core::Incident::from_entries(entries).unwrap();
        *opened.entry(inc.record.fingerprint.clone()).or_default() += 1;
        if inc.resolution == Some(Resolution::Recovered) {
            recovered += 1;
        }
    }
    let out = Outcome2 {
        opened,
        applies: world.applies.lock().unwrap().clone(),
        recovered,
        tokens: world.tokens.lock().unwrap().clone(),
        started_by,
        halted,
        closed,
    };
    (out, adopted)
}

/// One scenario: every service broken, two engines run 2 virtual minutes side by side. With
/// `joiner`, a third engine starts on the same journal and coordinator at a seeded moment in the first
/// 4 s and resumes the open incidents the others are working: then steps are raced for too.
async fn scenario(seed: u64, shared_coordinator: bool, joiner: bool) -> Outcome2 {
    let world = Arc::new(World::default());
    for b in &world.broken {
        b.store(true, Ordering::SeqCst);
    }
    let store = Arc::new(MemoryJournal::new());
    let shared = Arc::new(InProcessCoordinator::new());
    let clock = common::clock();
    let start = tokio::time::Instant::now();
    let build = |e: u64| {
        let coordinator = if shared_coordinator {
            shared.clone()
        } else {
            Arc::new(InProcessCoordinator::new())
        };
        engine(&world, &store, coordinator, clock, seed, e)
    };
    let end = start + mins(2);
    let a = build(0).await.unwrap();
    let b = build(1).await.unwrap();
    let join_at = Duration::from_millis(StdRng::seed_from_u64(seed).gen_range(0..4_000));
    let late = async {
        if !joiner {
            return Ok(());
        }
        tokio::time::sleep(join_at).await;
        let c = build(2).await.unwrap();
        c.run_for(end - tokio::time::Instant::now()).await
    };
    let (ra, rb, rc) = futures::join!(a.run_for(mins(2)), b.run_for(mins(2)), late);
    ra.unwrap();
    rb.unwrap();
    rc.unwrap();
    tally(&store, &world).await.0
}

#[tokio::test(start_paused = true)]
async fn two_engines_sharing_a_journal_and_a_coordinator_never_open_or_apply_twice() {
    let seeds = 1_000u64;
    let seeds: u64 = std::env::var("RB_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seeds);
    let (mut incidents, mut steps, mut repeats, mut closed_twice) = (0, 0, 0, 0);
    let mut by_engine: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..seeds {
        let out = scenario(seed, true, seed % 2 == 1).await;
        assert_eq!(out.opened.len(), TARGETS, "seed {seed}: {:?}", out.opened);
        for (key, n) in &out.opened {
            assert_eq!(*n, 1, "seed {seed}: incident key {key} opened {n} times");
        }
        assert_eq!(
            out.recovered, TARGETS,
            "seed {seed}: every incident recovers"
        );
        assert_eq!(out.halted, 0, "seed {seed}: no step interrupted or refused");
        closed_twice += out.closed - TARGETS;
        for i in 0..TARGETS {
            for action in STEPS {
                let n = out
                    .applies
                    .get(&(i, action.to_string()))
                    .copied()
                    .unwrap_or(0);
                assert_eq!(n, 1, "seed {seed}: {action} on svc-{i} applied {n} times");
                steps += 1;
                repeats += n.saturating_sub(1);
            }
        }
        let mut t = out.tokens.clone();
        t.sort();
        t.dedup();
        assert_eq!(
            t.len(),
            out.tokens.len(),
            "seed {seed}: a token applied twice"
        );
        incidents += out.opened.values().sum::<usize>();
        for (h, n) in out.started_by {
            *by_engine.entry(h).or_default() += n;
        }
    }
    println!(
        "two engines, {seeds} seeds: incidents {incidents}, steps applied {steps}, repeats {repeats}, incidents closed twice {closed_twice}, steps started by engine {by_engine:?}"
    );
    assert_eq!(repeats, 0);
    // one engine works an incident at a time: a joiner does not advance the incidents others hold
    assert_eq!(closed_twice, 0, "an incident closed by two engines");
    // every engine got work: the incidents were raced for, not all taken by one, and the engine
    // that joined late won some steps from the engines already working them
    assert_eq!(by_engine.len(), 3, "{by_engine:?}");
}

#[tokio::test(start_paused = true)]
async fn without_a_shared_coordinator_the_same_scenario_opens_and_applies_twice() {
    // proof that the harness reaches the race the shared coordinator closes
    let out = scenario(7, false, false).await;
    assert!(
        out.opened.values().any(|n| *n > 1),
        "two engines with nothing shared open one key twice: {:?}",
        out.opened
    );
    assert!(
        out.applies.values().any(|n| *n > 1),
        "and apply a step twice: {:?}",
        out.applies
    );
}

/// Engines a and b work every service; b stops at 12 s (its steps in flight finish first); c starts
/// at 6 s, while b still holds its incidents, and adopts them once b's leases lapse.
async fn failover(seed: u64) -> (Outcome2, usize) {
    let world = Arc::new(World::default());
    for b in &world.broken {
        b.store(true, Ordering::SeqCst);
    }
    let store = Arc::new(MemoryJournal::new());
    let shared = Arc::new(InProcessCoordinator::new());
    let clock = common::clock();
    let build = |e: u64| engine(&world, &store, shared.clone(), clock, seed, e);
    let a = build(0).await.unwrap();
    let b = build(1).await.unwrap();
    let late = async {
        tokio::time::sleep(secs(6)).await;
        let c = build(2).await.unwrap();
        c.run_for(mins(2) - secs(6)).await
    };
    let (ra, rb, rc) = futures::join!(a.run_for(mins(2)), b.run_for(secs(12)), late);
    ra.unwrap();
    rb.unwrap();
    rc.unwrap();
    let (out, adopted) = tally(&store, &world).await;
    (out, adopted)
}

#[tokio::test(start_paused = true)]
async fn an_incident_whose_engine_stopped_is_adopted_by_another_once_its_lease_lapses() {
    let mut adopted = 0;
    for seed in 0..50 {
        let (out, n) = failover(seed).await;
        adopted += n;
        for (key, n) in &out.opened {
            assert_eq!(*n, 1, "seed {seed}: incident key {key} opened {n} times");
        }
        assert_eq!(
            out.recovered, TARGETS,
            "seed {seed}: every incident recovers"
        );
        assert_eq!(
            out.closed, TARGETS,
            "seed {seed}: each incident closed once"
        );
        assert_eq!(out.halted, 0, "seed {seed}: no step interrupted or refused");
        for ((i, action), n) in &out.applies {
            assert_eq!(*n, 1, "seed {seed}: {action} on svc-{i} applied {n} times");
        }
        let _ = &out.tokens;
        let _ = &out.started_by;
    }
    println!("failover, 50 seeds: incidents adopted from the stopped engine {adopted}");
    assert!(adopted > 0, "the stopped engine's incidents were adopted");
}

/// Tick both engines every 30 s for `d`.
async fn run_both(a: &Engine, b: &Engine, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        a.tick().await.unwrap();
        b.tick().await.unwrap();
        tokio::time::sleep(secs(30)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_human_acknowledges_and_closes_through_an_engine_that_does_not_work_the_incident() {
    use common::{backlog, Gauge, Pager};
    let store = Arc::new(MemoryJournal::new());
    let shared = Arc::new(InProcessCoordinator::new());
    let clock = common::clock();
    let g = Gauge::new(common::kafka(), "records_lag_max", 12_000.0);
    let pager = Pager::default();
    let build = |name: &str| {
        Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![])))
            .journal(store.clone())
            .coordinator(shared.clone())
            .holder(name)
            .clock(clock)
            .notifier(Arc::new(pager.clone()))
            .build()
    };
    let a = build("engine-a").await.unwrap();
    let b = build("engine-b").await.unwrap();
    run_both(&a, &b, mins(3)).await;
    let (holder, other) = if a.open_incidents().await.is_empty() {
        (&b, &a)
    } else {
        (&a, &b)
    };
    let id = holder.open_incidents().await.pop().expect("one incident");
    assert!(
        other.open_incidents().await.is_empty(),
        "one engine works it"
    );
    assert_eq!(pager.roles().len(), 1, "paged once: {:?}", pager.all());

    // acknowledged through the engine that does not work it: the SLA page 15 minutes later is not sent
    other.acknowledge(&id, "alice").await.unwrap();
    run_both(&a, &b, mins(20)).await;
    assert_eq!(
        pager.roles().len(),
        1,
        "no SLA re-page after the acknowledgement: {:?}",
        pager.all()
    );
    assert!(pager
        .all()
        .iter()
        .any(|n| n.action == rb_core::escalation::NotifyAction::Acknowledge));

    // closed through it: the working engine lets the incident go; it is closed once
    other.close(&id, "bob").await.unwrap();
    run_both(&a, &b, mins(2)).await;
    assert!(holder.open_incidents().await.is_empty());
    let entries = store.entries(&id).await.unwrap();
    let closed: Vec<_> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Closed { resolution } => Some(resolution.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        vec![Resolution::ClosedByHuman { by: "bob".into() }],
        "closed once, by the human"
    );
}
