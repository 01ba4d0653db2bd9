//! Terminating PostgreSQL sessions against the fake server, through the real sqlx adapter.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_actions::postgres::{
    SessionFilter, SqlxPgSessions, TerminateSessions, ACTIVITY_SQL, SUPERUSERS_SQL, TERMINATE_SQL,
};
use rb_core::journal::Event;
use rb_core::prelude::*;
use rb_core::{ErrorKind, Verification};
use rb_probes::sql::{SqlEndpoint, SqlTls};
use rb_testkit::doubles::GaugeProbe;
use rb_testkit::postgres::{FakePostgres, PgSession, QueryProtocol, TerminateFault};
use rb_testkit::sqlwire::WireFault;

fn target() -> Target {
    Target::new("postgres", "pg-main")
}

fn endpoint(fake: &FakePostgres) -> SqlEndpoint {
    SqlEndpoint::new(
        "127.0.0.1",
        fake.port(),
        fake.user(),
        Secret::new(fake.password()),
    )
    .database("postgres")
    .tls(SqlTls::Disable)
    .application_name("rb-action")
}

fn action(fake: &FakePostgres, timeout: Duration) -> TerminateSessions {
    let client = SqlxPgSessions::new(endpoint(fake)).timeout(timeout);
    TerminateSessions::new(
        Arc::new(client),
        target(),
        SessionFilter::idle_in_transaction(secs(60)).protect_users(["etl"]),
    )
}

fn ctx() -> ActionContext {
    ActionContext::detached(Clock::system(), secs(30))
}

fn idle_tx(user: &str, app: &str, idle: u64) -> PgSession {
    PgSession::client(user, "orders")
        .app(app)
        .state("idle in transaction")
        .state_age(secs(idle))
        .xact_age(secs(idle + 100))
        .query("UPDATE accounts SET balance = 100 WHERE email = 'ann@example.com'")
}

struct Seeded {
    fake: FakePostgres,
    oldest: i32,
    older: i32,
    survivors: Vec<(i32, &'static str)>,
}

async fn seeded() -> Seeded {
    let fake = FakePostgres::start().await.unwrap();
    let older = fake.add_session(idle_tx("app", "api", 300));
    let oldest = fake.add_session(idle_tx("app", "api", 600));
    let survivors = vec![
        (
            fake.add_session(
                PgSession::client("app", "orders")
                    .app("api")
                    .state_age(secs(900)),
            ),
            "idle, no transaction",
        ),
        (fake.add_session(idle_tx("app", "api", 30)), "too young"),
        (
            fake.add_session(idle_tx("postgres", "psql", 900)),
            "superuser",
        ),
        (
            fake.add_session({
                let mut s = PgSession::background("walsender").state("active");
                s.usename = Some("replicator".into());
                s.xact_age = Some(secs(5000));
                s.state_age = Some(secs(5000));
                s
            }),
            "walsender",
        ),
        (
            fake.add_session(PgSession::background("autovacuum worker")),
            "background",
        ),
        (
            fake.add_session(idle_tx("monitor", "rb-probe", 900)),
            "the probe",
        ),
        (fake.add_session(idle_tx("etl", "loader", 900)), "protected"),
    ];
    Seeded {
        fake,
        oldest,
        older,
        survivors,
    }
}

fn terminate_statements(fake: &FakePostgres) -> usize {
    fake.statements()
        .iter()
        .filter(|s| s.sql.contains("pg_terminate_backend"))
        .count()
}

fn assert_survivors(s: &Seeded) {
    let pids: Vec<i32> = s.fake.sessions().iter().map(|x| x.pid).collect();
    for (pid, why) in &s.survivors {
        assert!(pids.contains(pid), "{why} session {pid} was terminated");
    }
}

#[tokio::test]
async fn matching_sessions_are_planned_terminated_verified_and_the_rest_survive() {
    let s = seeded().await;
    let a = action(&s.fake, secs(5));
    let plan = a.plan(&ctx()).await.unwrap();
    assert!(plan.nothing_to_do.is_none(), "{}", plan.description);
    assert!(!plan.reversible);
    assert_eq!(plan.targets, vec![target()]);
    let d = &plan.description;
    let (i_oldest, i_older) = (
        d.find(&format!("pid {} ", s.oldest)).unwrap(),
        d.find(&format!("pid {} ", s.older)).unwrap(),
    );
    assert!(i_oldest < i_older, "oldest first: {d}");
    assert!(
        d.contains("user app") && d.contains("idle in transaction for 10m"),
        "{d}"
    );
    assert!(
        d.contains("UPDATE accounts SET balance = ? WHERE email = ?") && !d.contains("ann@"),
        "literals redacted: {d}"
    );
    assert!(
        d.contains("1 superuser") && d.contains("1 replication (walsender)"),
        "{d}"
    );
    assert!(
        d.contains("1 protected user") && d.contains("the action's own session"),
        "{d}"
    );
    for (pid, _) in &s.survivors {
        assert!(!d.contains(&format!("pid {pid} ")), "{pid} planned: {d}");
    }
    // Planning terminates nothing.
    assert_eq!(terminate_statements(&s.fake), 0);
    assert!(s.fake.terminated().is_empty());

    s.fake.clear_statements();
    let out = a.apply(&plan, &ctx()).await.unwrap();
    let done: Vec<i32> = s.fake.terminated().iter().map(|t| t.pid).collect();
    assert_eq!(done, vec![s.oldest, s.older]);
    // The exact SQL of apply: the two reads, then the prepared terminate (pid bound).
    let sent: Vec<(String, QueryProtocol)> = s
        .fake
        .statements()
        .into_iter()
        .map(|st| (st.sql, st.protocol))
        .collect();
    let mut distinct = sent.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        vec![
            (ACTIVITY_SQL.to_string(), QueryProtocol::Extended),
            (SUPERUSERS_SQL.to_string(), QueryProtocol::Extended),
            (TERMINATE_SQL.to_string(), QueryProtocol::Extended),
        ]
    );
    // Terminated by the action's own connection, which is not one of them.
    let by = s.fake.terminated()[0].by;
    assert!(!done.contains(&by));
    assert_survivors(&s);
    assert!(out.summary.contains("terminated 2"), "{}", out.summary);

    let v = a.verify(&plan, &out, &ctx()).await.unwrap();
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");

    // Idempotent: the same plan again changes nothing and sends no second terminate.
    s.fake.clear_statements();
    let again = a.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(terminate_statements(&s.fake), 0);
    assert_eq!(s.fake.terminated().len(), 2);
    let gone: Vec<i64> = again.details["already_gone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(gone, vec![i64::from(s.oldest), i64::from(s.older)]);
    let v = a.verify(&plan, &again, &ctx()).await.unwrap();
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    assert!(a.plan(&ctx()).await.unwrap().nothing_to_do.is_some());
}

#[tokio::test]
async fn never_more_than_n_per_apply() {
    let fake = FakePostgres::start().await.unwrap();
    let pids: Vec<i32> = (0..5)
        .map(|i| fake.add_session(idle_tx("app", "api", 100 + i * 10)))
        .collect();
    let a = action(&fake, secs(5)).max_per_apply(2);
    let plan = a.plan(&ctx()).await.unwrap();
    assert!(plan.description.contains("2 of 5") && plan.description.contains("3 more"));
    a.apply(&plan, &ctx()).await.unwrap();
    let done: Vec<i32> = fake.terminated().iter().map(|t| t.pid).collect();
    assert_eq!(done, vec![pids[4], pids[3]]);

    // A plan listing more than N (edited, or made with another limit) is refused whole.
    let wide = action(&fake, secs(5))
        .max_per_apply(3)
        .plan(&ctx())
        .await
        .unwrap();
    let e = a.apply(&wide, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(fake.terminated().len(), 2);
}

#[tokio::test]
async fn the_incident_and_the_filter_narrow_the_choice_and_an_open_filter_is_refused() {
    let fake = FakePostgres::start().await.unwrap();
    let api = fake.add_session(idle_tx("app", "api", 600));
    let batch = fake.add_session(idle_tx("batch", "nightly", 900));
    let reporting = fake.add_session(
        PgSession::client("app", "reports")
            .app("bi")
            .state("active")
            .query_age(secs(1200))
            .query("SELECT sum(x) FROM big WHERE y > 5"),
    );
    let client = Arc::new(SqlxPgSessions::new(endpoint(&fake)));
    let by_user = TerminateSessions::new(
        client.clone(),
        target(),
        SessionFilter::idle_in_transaction(secs(60)),
    );
    let c = ctx().with_key(labels(&[("user", "batch")]));
    let plan = by_user.plan(&c).await.unwrap();
    assert!(plan.description.contains(&format!("pid {batch} ")));
    assert!(!plan.description.contains(&format!("pid {api} ")));

    let by_app_db = TerminateSessions::new(
        client.clone(),
        target(),
        SessionFilter {
            active_for: Some(secs(600)),
            databases: vec!["reports".into()],
            ..SessionFilter::default()
        },
    );
    let plan = by_app_db.plan(&ctx()).await.unwrap();
    assert!(
        plan.description.contains(&format!("pid {reporting} ")),
        "{}",
        plan.description
    );
    assert!(plan
        .description
        .contains("SELECT sum(x) FROM big WHERE y > ?"));
    assert!(!plan.description.contains(&format!("pid {api} ")));

    let open = TerminateSessions::new(client, target(), SessionFilter::default());
    assert_eq!(
        open.plan(&ctx()).await.unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

#[tokio::test]
async fn a_session_that_changed_since_the_plan_is_left_alone() {
    let fake = FakePostgres::start().await.unwrap();
    let pid = fake.add_session(idle_tx("app", "api", 600));
    let a = action(&fake, secs(5));
    let plan = a.plan(&ctx()).await.unwrap();
    // It committed meanwhile: idle, no transaction.
    fake.add_session(PgSession::client("app", "orders").app("api").pid(pid));
    let out = a.apply(&plan, &ctx()).await.unwrap();
    assert!(fake.terminated().is_empty());
    assert_eq!(out.details["skipped"][0]["pid"], pid);
    // The pid now belongs to another role's session: left alone as well.
    fake.add_session(idle_tx("other", "api", 900).pid(pid));
    a.apply(&plan, &ctx()).await.unwrap();
    assert!(fake.terminated().is_empty());
}

#[tokio::test]
async fn every_fault_is_a_typed_error_naming_the_target() {
    let s = seeded().await;
    let a = action(&s.fake, Duration::from_millis(500));
    let plan = a.plan(&ctx()).await.unwrap();
    for (fault, kind) in [
        (WireFault::Hang, ErrorKind::Timeout),
        (WireFault::DropMidResult, ErrorKind::BadResponse),
        (WireFault::Malformed, ErrorKind::BadResponse),
        (WireFault::Overrun, ErrorKind::BadResponse),
    ] {
        s.fake.set_fault(Some(fault));
        let e = a.plan(&ctx()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{fault:?}: {e}");
        assert!(e.to_string().contains("pg-main"), "{e}");
        let e = a.apply(&plan, &ctx()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "apply under {fault:?}: {e}");
    }
    s.fake.set_fault(None);
    assert!(
        s.fake.terminated().is_empty(),
        "no fault terminated anything"
    );

    s.fake.set_terminate_fault(Some(TerminateFault::Denied));
    let e = a.apply(&plan, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("42501"), "{e}");
    assert_eq!(e.details["terminated"], serde_json::json!([]));
    assert!(s.fake.terminated().is_empty());

    s.fake.set_terminate_fault(Some(TerminateFault::LoseAnswer));
    let e = a.apply(&plan, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    assert_eq!(e.details["failed"], s.oldest);
    // It did happen: that is why the outcome is "unknown", never "failed".
    assert_eq!(s.fake.terminated()[0].pid, s.oldest);

    s.fake.set_terminate_fault(None);
    s.fake.refuse_connections().await;
    assert_eq!(
        a.plan(&ctx()).await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
}

/// The engine around the action: approval (denied, granted), dry run, and what the journal says
/// after a refused and a lost termination.
#[tokio::test]
async fn through_the_engine_approval_dry_run_and_a_truthful_journal() {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Expect {
        Denied,
        DryRun,
        Applied,
        Failed,
        Unknown,
    }
    for (approver, dry, fault, expect) in [
        (
            Arc::new(DenyAll) as Arc<dyn rb_core::policy::Approver>,
            false,
            None,
            Expect::Denied,
        ),
        (Arc::new(AutoApprove), true, None, Expect::DryRun),
        (Arc::new(AutoApprove), false, None, Expect::Applied),
        (
            Arc::new(AutoApprove),
            false,
            Some(TerminateFault::Denied),
            Expect::Failed,
        ),
        (
            Arc::new(AutoApprove),
            false,
            Some(TerminateFault::LoseAnswer),
            Expect::Unknown,
        ),
    ] {
        let s = seeded().await;
        s.fake.set_terminate_fault(fault);
        let gauge = GaugeProbe::new(target(), "db_sessions_idle_in_transaction", 2.0);
        let runbook = Runbook::new("t").playbook(
            Playbook::new("pg-idle-tx", "Idle transactions hold locks")
                .detect(
                    gauge.arc(),
                    Schedule::every(secs(1)),
                    metric("db_sessions_idle_in_transaction").above(0.0),
                )
                .mitigate(Arc::new(action(&s.fake, millis(500))))
                .escalate_to("Data Platform On-call"),
        );
        let engine = Engine::builder(runbook)
            .clock(Clock::system())
            .approver(approver)
            .policy(SafetyPolicy {
                dry_run: dry,
                apply_timeout: secs(5),
                ..SafetyPolicy::default()
            })
            .build()
            .await
            .unwrap();
        let mut finished = None;
        for _ in 0..20 {
            engine.tick().await.unwrap();
            let incs = engine.incidents().await.unwrap();
            if let Some(inc) = incs.first() {
                finished = inc.timeline.iter().find_map(|x| match &x.event {
                    Event::Finished {
                        ok,
                        outcome_unknown,
                        error_detail,
                        ..
                    } => Some((*ok, *outcome_unknown, error_detail.clone())),
                    _ => None,
                });
                let settled = match expect {
                    Expect::Applied => inc
                        .timeline
                        .iter()
                        .any(|x| matches!(&x.event, Event::Verified { .. })),
                    Expect::Failed | Expect::Unknown => finished.is_some(),
                    Expect::Denied => inc
                        .timeline
                        .iter()
                        .any(|x| matches!(&x.event, Event::Approval { .. })),
                    Expect::DryRun => inc
                        .timeline
                        .iter()
                        .any(|x| matches!(&x.event, Event::Planned { .. })),
                };
                if settled {
                    break;
                }
            }
            tokio::time::sleep(millis(1000)).await;
        }
        let inc = &engine.incidents().await.unwrap()[0];
        let planned = inc.timeline.iter().any(|x| {
            matches!(&x.event, Event::Planned { plan, .. } if plan.description.contains(&format!("pid {} ", s.oldest)))
        });
        assert!(planned, "{expect:?}: the plan names the session");
        let done = s.fake.terminated().len();
        assert_survivors(&s);
        match expect {
            Expect::Denied | Expect::DryRun => {
                assert_eq!(done, 0, "{expect:?}");
                assert_eq!(terminate_statements(&s.fake), 0, "{expect:?}");
                assert!(finished.is_none(), "{expect:?}");
            }
            Expect::Applied => {
                assert_eq!(done, 2);
                assert_eq!(finished.map(|f| f.0), Some(true));
                assert!(inc.timeline.iter().any(|x| matches!(
                    &x.event,
                    Event::Verified {
                        verification: Verification::Succeeded { .. },
                        ..
                    }
                )));
            }
            Expect::Failed => {
                assert_eq!(done, 0);
                let (ok, unknown, detail) = finished.unwrap();
                assert!(!ok && !unknown);
                assert_eq!(detail.unwrap().kind, ErrorKind::Unauthorized);
            }
            Expect::Unknown => {
                let (ok, unknown, _) = finished.unwrap();
                assert!(
                    !ok && unknown,
                    "journaled as outcome unknown, not as failed"
                );
                // Idempotent, so the engine tried again: the sessions whose answers were lost
                // are found gone, nothing is terminated twice, and the verification holds.
                assert_eq!(done, 2);
                let pids: Vec<i32> = s.fake.terminated().iter().map(|t| t.pid).collect();
                assert_eq!(pids, vec![s.oldest, s.older]);
                assert!(inc.timeline.iter().any(|x| matches!(
                    &x.event,
                    Event::Verified {
                        verification: Verification::Succeeded { .. },
                        ..
                    }
                )));
            }
        }
    }
}
