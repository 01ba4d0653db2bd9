//! Killing MySQL / MariaDB connections and statements against the fake server, through the real
//! sqlx adapter.
#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_actions::mysql::{
    KillMode, KillSessions, SessionFilter, SqlxMySqlSessions, ADMINS_SQL, INNODB_TRX_SQL,
    PROCESSLIST_SQL, VARIABLES_SQL,
};
use rb_core::journal::Event;
use rb_core::prelude::*;
use rb_core::{ErrorKind, Verification};
use rb_probes::sql::{SqlEndpoint, SqlTls};
use rb_testkit::doubles::GaugeProbe;
use rb_testkit::mysql::{FakeMysql, KillFault, MyProcess, MyProtocol};
use rb_testkit::sqlwire::WireFault;

fn target() -> Target {
    Target::new("mysql", "maria-main")
}

fn endpoint(fake: &FakeMysql) -> SqlEndpoint {
    SqlEndpoint::new(
        "127.0.0.1",
        fake.port(),
        fake.user(),
        Secret::new(fake.password()),
    )
    .tls(SqlTls::Disable)
}

fn client(fake: &FakeMysql, timeout: Duration) -> Arc<SqlxMySqlSessions> {
    Arc::new(SqlxMySqlSessions::new(endpoint(fake)).timeout(timeout))
}

fn action(fake: &FakeMysql, timeout: Duration) -> KillSessions {
    KillSessions::new(
        client(fake, timeout),
        target(),
        SessionFilter::idle_in_transaction(secs(60)).protect_users(["etl"]),
    )
}

fn ctx() -> ActionContext {
    ActionContext::detached(Clock::system(), secs(30))
}

/// A sleeping connection of `user` inside a transaction `idle + 100` seconds old.
fn idle_tx(fake: &FakeMysql, user: &str, port: u16, idle: i64) -> u64 {
    let id = fake.add_process(
        MyProcess::client(user, &format!("10.0.0.5:{port}"))
            .db("orders")
            .sleeping(idle),
    );
    fake.add_trx(id, secs(u64::try_from(idle).unwrap() + 100));
    id
}

struct Seeded {
    fake: FakeMysql,
    oldest: u64,
    older: u64,
    survivors: Vec<(u64, &'static str)>,
}

async fn seeded() -> Seeded {
    let fake = FakeMysql::builder()
        .admin("dba", "%")
        .start()
        .await
        .unwrap();
    let older = idle_tx(&fake, "app", 5001, 300);
    let oldest = idle_tx(&fake, "app", 5000, 600);
    let mut survivors = vec![
        (
            fake.add_process(
                MyProcess::client("app", "10.0.0.5:5002")
                    .db("orders")
                    .sleeping(900),
            ),
            "idle, no transaction",
        ),
        (idle_tx(&fake, "app", 5003, 30), "too young"),
        (idle_tx(&fake, "root", 5004, 900), "root"),
        (idle_tx(&fake, "dba", 5005, 900), "SUPER"),
        (idle_tx(&fake, "etl", 5006, 900), "protected"),
        (
            fake.add_process(MyProcess::daemon("InnoDB purge worker")),
            "daemon",
        ),
    ];
    let mut sched = MyProcess::client("event_scheduler", "localhost").sleeping(5000);
    sched.command = "Daemon".into();
    survivors.push((fake.add_process(sched), "event scheduler"));
    let mut dump = MyProcess::client("repl", "10.0.0.9:4000").sleeping(5000);
    dump.command = "Binlog Dump GTID".into();
    let dump = fake.add_process(dump);
    fake.add_trx(dump, secs(5000));
    survivors.push((dump, "replication"));
    Seeded {
        fake,
        oldest,
        older,
        survivors,
    }
}

fn kill_statements(fake: &FakeMysql) -> Vec<String> {
    fake.statements()
        .into_iter()
        .filter(|s| s.sql.to_ascii_uppercase().starts_with("KILL"))
        .map(|s| s.sql)
        .collect()
}

fn assert_survivors(s: &Seeded) {
    let ids: Vec<u64> = s.fake.processes().iter().map(|p| p.id).collect();
    for (id, why) in &s.survivors {
        assert!(ids.contains(id), "{why} connection {id} was killed");
    }
}

#[tokio::test]
async fn matching_connections_are_planned_killed_verified_and_the_rest_survive() {
    let s = seeded().await;
    let a = action(&s.fake, secs(5));
    let plan = a.plan(&ctx()).await.unwrap();
    assert!(plan.nothing_to_do.is_none(), "{}", plan.description);
    assert!(!plan.reversible);
    let d = &plan.description;
    let (i_oldest, i_older) = (
        d.find(&format!("id {} ", s.oldest)).unwrap(),
        d.find(&format!("id {} ", s.older)).unwrap(),
    );
    assert!(i_oldest < i_older, "oldest first: {d}");
    assert!(
        d.contains("user app") && d.contains("idle in transaction for 10m"),
        "{d}"
    );
    assert!(
        d.contains("2 SUPER / CONNECTION ADMIN account"),
        "root and dba: {d}"
    );
    assert!(d.contains("1 replication (Binlog Dump)"), "{d}");
    assert!(d.contains("2 background or system thread"), "{d}");
    assert!(d.contains("the action's own connection"), "{d}");
    for (id, _) in &s.survivors {
        assert!(!d.contains(&format!("id {id} ")), "{id} planned: {d}");
    }
    assert!(
        kill_statements(&s.fake).is_empty(),
        "planning kills nothing"
    );

    s.fake.clear_statements();
    let out = a.apply(&plan, &ctx()).await.unwrap();
    let kills = s.fake.kills();
    assert_eq!(
        kills
            .iter()
            .map(|k| (k.id, k.query_only))
            .collect::<Vec<_>>(),
        vec![(s.oldest, false), (s.older, false)]
    );
    // The exact SQL of apply (the driver's own SET at connect aside), all over the text protocol.
    let sent: Vec<(String, MyProtocol)> = s
        .fake
        .statements()
        .into_iter()
        .filter(|st| !st.sql.to_ascii_uppercase().starts_with("SET "))
        .map(|st| (st.sql, st.protocol))
        .collect();
    let expected: Vec<(String, MyProtocol)> = [
        VARIABLES_SQL.to_string(),
        PROCESSLIST_SQL.to_string(),
        INNODB_TRX_SQL.to_string(),
        ADMINS_SQL.to_string(),
        format!("KILL CONNECTION {}", s.oldest),
        format!("KILL CONNECTION {}", s.older),
    ]
    .into_iter()
    .map(|q| (q, MyProtocol::Text))
    .collect();
    assert_eq!(sent, expected);
    assert!(
        !kills.iter().any(|k| k.id == k.by),
        "never its own connection"
    );
    assert_survivors(&s);
    assert!(out.summary.contains("killed 2"), "{}", out.summary);
    let v = a.verify(&plan, &out, &ctx()).await.unwrap();
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");

    // Idempotent: applying the same plan again sends no KILL.
    s.fake.clear_statements();
    let again = a.apply(&plan, &ctx()).await.unwrap();
    assert!(kill_statements(&s.fake).is_empty());
    assert_eq!(s.fake.kills().len(), 2);
    assert_eq!(again.details["already_gone"].as_array().unwrap().len(), 2);
    assert!(a.plan(&ctx()).await.unwrap().nothing_to_do.is_some());
}

#[tokio::test]
async fn kill_query_ends_only_the_long_statement() {
    let fake = FakeMysql::start().await.unwrap();
    let heavy = fake.add_process(
        MyProcess::client("bi", "10.0.0.7:3000")
            .db("reports")
            .running("SELECT * FROM big WHERE email = 'x@y.z' AND id > 42", 1200),
    );
    let short = fake.add_process(
        MyProcess::client("bi", "10.0.0.7:3001")
            .db("reports")
            .running("SELECT 1", 5),
    );
    let idle_tx = idle_tx(&fake, "bi", 3002, 900);
    let a = KillSessions::new(
        client(&fake, secs(5)),
        target(),
        SessionFilter::running(secs(600)).users(["bi"]),
    )
    .mode(KillMode::Query);
    assert_eq!(a.id(), "mysql.kill_queries");
    let plan = a.plan(&ctx()).await.unwrap();
    let d = &plan.description;
    assert!(d.starts_with("KILL QUERY <id>"), "{d}");
    assert!(d.contains(&format!("id {heavy} ")), "{d}");
    assert!(d.contains("SELECT * FROM big WHERE email = ? AND id > ?") && !d.contains("x@y.z"));
    assert!(!d.contains(&format!("id {short} ")) && !d.contains(&format!("id {idle_tx} ")));
    let out = a.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(kill_statements(&fake), vec![format!("KILL QUERY {heavy}")]);
    // The connection stays; its statement is gone.
    let p = fake
        .processes()
        .into_iter()
        .find(|p| p.id == heavy)
        .unwrap();
    assert_eq!(p.command, "Sleep");
    let v = a.verify(&plan, &out, &ctx()).await.unwrap();
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    // A plan for connections is not applied by the statement killer.
    let conns = KillSessions::new(
        client(&fake, secs(5)),
        target(),
        SessionFilter::idle_in_transaction(secs(60)),
    );
    let conn_plan = conns.plan(&ctx()).await.unwrap();
    assert_eq!(
        a.apply(&conn_plan, &ctx()).await.unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

#[tokio::test]
async fn never_more_than_n_per_apply_and_an_open_filter_is_refused() {
    let fake = FakeMysql::start().await.unwrap();
    let ids: Vec<u64> = (0..5)
        .map(|i| idle_tx(&fake, "app", 6000 + i as u16, 100 + i * 10))
        .collect();
    let a = action(&fake, secs(5)).max_per_apply(2);
    let plan = a.plan(&ctx()).await.unwrap();
    assert!(plan.description.contains("2 of 5") && plan.description.contains("3 more"));
    a.apply(&plan, &ctx()).await.unwrap();
    let killed: Vec<u64> = fake.kills().iter().map(|k| k.id).collect();
    assert_eq!(killed, vec![ids[4], ids[3]]);
    let wide = action(&fake, secs(5))
        .max_per_apply(3)
        .plan(&ctx())
        .await
        .unwrap();
    assert_eq!(
        a.apply(&wide, &ctx()).await.unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(fake.kills().len(), 2);

    let open = KillSessions::new(client(&fake, secs(5)), target(), SessionFilter::default());
    assert_eq!(
        open.plan(&ctx()).await.unwrap_err().kind(),
        ErrorKind::Invalid
    );

    // The incident's user narrows the choice.
    let other = idle_tx(&fake, "batch", 7000, 50_000);
    let c = ctx().with_key(labels(&[("user", "app")]));
    let plan = action(&fake, secs(5)).plan(&c).await.unwrap();
    assert!(!plan.description.contains(&format!("id {other} ")));
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
        assert!(e.to_string().contains("maria-main"), "{e}");
        let e = a.apply(&plan, &ctx()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "apply under {fault:?}: {e}");
    }
    s.fake.set_fault(None);
    assert!(s.fake.kills().is_empty(), "no fault killed anything");

    s.fake.set_kill_fault(Some(KillFault::Denied));
    let e = a.apply(&plan, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("1095"), "{e}");
    assert!(s.fake.kills().is_empty());

    s.fake.set_kill_fault(Some(KillFault::LoseAnswer));
    let e = a.apply(&plan, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    assert_eq!(e.details["failed"], s.oldest);
    assert_eq!(s.fake.kills()[0].id, s.oldest, "it did happen");

    s.fake.set_kill_fault(None);
    s.fake.refuse_connections().await;
    assert_eq!(
        a.plan(&ctx()).await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
}

/// The engine around the action: approval (denied, granted), dry run, and what the journal says
/// after a refused and a lost kill.
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
            Some(KillFault::Denied),
            Expect::Failed,
        ),
        (
            Arc::new(AutoApprove),
            false,
            Some(KillFault::LoseAnswer),
            Expect::Unknown,
        ),
    ] {
        let s = seeded().await;
        s.fake.set_kill_fault(fault);
        let gauge = GaugeProbe::new(target(), "db_sessions_idle_in_transaction", 2.0);
        let runbook = Runbook::new("t").playbook(
            Playbook::new("mysql-idle-tx", "Idle transactions hold locks")
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
            if let Some(inc) = engine.incidents().await.unwrap().first() {
                finished = inc.timeline.iter().find_map(|x| match &x.event {
                    Event::Finished {
                        ok,
                        outcome_unknown,
                        error_detail,
                        ..
                    } => Some((*ok, *outcome_unknown, error_detail.clone())),
                    _ => None,
                });
                let has = |f: fn(&Event) -> bool| inc.timeline.iter().any(|x| f(&x.event));
                let settled = match expect {
                    Expect::Applied | Expect::Unknown => {
                        has(|e| matches!(e, Event::Verified { .. }))
                    }
                    Expect::Failed => finished.is_some(),
                    Expect::Denied => has(|e| matches!(e, Event::Approval { .. })),
                    Expect::DryRun => has(|e| matches!(e, Event::Planned { .. })),
                };
                if settled {
                    break;
                }
            }
            tokio::time::sleep(millis(1000)).await;
        }
        let inc = &engine.incidents().await.unwrap()[0];
        let planned = inc.timeline.iter().any(|x| {
            matches!(&x.event, Event::Planned { plan, .. } if plan.description.contains(&format!("id {} ", s.oldest)))
        });
        assert!(planned, "{expect:?}: the plan names the connection");
        let done = s.fake.kills().len();
        assert_survivors(&s);
        let verified_ok = inc.timeline.iter().any(|x| {
            matches!(
                &x.event,
                Event::Verified {
                    verification: Verification::Succeeded { .. },
                    ..
                }
            )
        });
        match expect {
            Expect::Denied | Expect::DryRun => {
                assert_eq!(done, 0, "{expect:?}");
                assert!(kill_statements(&s.fake).is_empty(), "{expect:?}");
                assert!(finished.is_none(), "{expect:?}");
            }
            Expect::Applied => {
                assert_eq!(done, 2);
                assert_eq!(finished.map(|f| f.0), Some(true));
                assert!(verified_ok);
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
                // Idempotent: the engine tried again; each connection was killed exactly once.
                let ids: Vec<u64> = s.fake.kills().iter().map(|k| k.id).collect();
                assert_eq!(ids, vec![s.oldest, s.older]);
                assert!(verified_ok);
            }
        }
    }
}
