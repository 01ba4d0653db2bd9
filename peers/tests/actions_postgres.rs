//! `postgres.terminate_sessions` against the real PostgreSQL: sessions idle in a transaction of one
//! application are terminated, at most N per apply, and every other session survives and still
//! answers — the idle ones of that application, one of another application, a superuser's inside
//! a transaction, the action's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use rb_actions::postgres::{SessionFilter, TerminateSessions};
use rb_core::time::Clock;
use rb_core::{ActionContext, Remediation, Secret, Target, Verification};
use rb_peers::postgres::Postgres;
use rb_peers::PeerEnv;
use rb_probes::sql::{SqlEndpoint, SqlTls};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};

fn ctx() -> ActionContext {
    ActionContext::detached(Clock::system(), Duration::from_secs(30))
}

/// The server's Unix socket directory (`$RUN/postgres/sock`, next to the env file): the
/// `postgres` superuser logs in there (local trust), as the start script does.
fn socket_dir() -> PathBuf {
    let env = std::env::var_os("RB_PEERS_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PeerEnv::repo_root().join(".peers").join("env"));
    env.parent().unwrap().join("postgres").join("sock")
}

async fn answers(c: &mut PgConnection) -> bool {
    c.execute("SELECT 1").await.is_ok()
}

async fn pid(c: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *c)
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn idle_transactions_of_one_application_are_terminated_and_the_rest_survive() {
    let pg = Postgres::from_env(&PeerEnv::load().unwrap()).unwrap();
    let tag = std::process::id();
    let app = format!("rb-victims-{tag}");
    let other_app = format!("rb-bystander-{tag}");
    let mut victims = pg.open_sessions(&app, 2, 3).await.unwrap();
    let mut other = pg.open_sessions(&other_app, 0, 1).await.unwrap();
    // A superuser inside a transaction, with the same application name.
    let mut superuser = PgConnection::connect_with(
        &PgConnectOptions::new()
            .socket(socket_dir())
            .port(pg.port)
            .username("postgres")
            .database(&pg.db)
            .application_name(&app),
    )
    .await
    .unwrap();
    let super_pid = pid(&mut superuser).await;
    superuser.execute("BEGIN").await.unwrap();
    superuser.execute("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let action = TerminateSessions::connect(
        Target::new("postgres", "pg-peer"),
        SqlEndpoint::new(&pg.host, pg.port, &pg.user, Secret::new(&pg.password))
            .database(&pg.db)
            .tls(SqlTls::Disable)
            .application_name("rb-action"),
        SessionFilter::idle_in_transaction(Duration::from_secs(1)).applications([app.clone()]),
    )
    .max_per_apply(2);

    let plan = action.plan(&ctx()).await.unwrap();
    let d = plan.description.clone();
    assert!(d.contains("2 of 3 matching"), "{d}");
    assert!(d.contains("1 superuser"), "{d}");
    for p in victims.pids[..2]
        .iter()
        .chain(&other.pids)
        .chain([&super_pid])
    {
        assert!(!d.contains(&format!("pid {p} ")), "{p} planned: {d}");
    }
    let out = action.apply(&plan, &ctx()).await.unwrap();
    let terminated: Vec<i32> = out.details["terminated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pid"].as_i64().unwrap() as i32)
        .collect();
    assert_eq!(terminated.len(), 2, "{}", out.summary);
    // Oldest transaction first: the first two opened.
    assert_eq!(terminated, victims.pids[2..4].to_vec());

    let mut verified = None;
    for _ in 0..20 {
        match action.verify(&plan, &out, &ctx()).await.unwrap() {
            Verification::Inconclusive { .. } => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            v => {
                verified = Some(v);
                break;
            }
        }
    }
    assert!(
        matches!(verified, Some(Verification::Succeeded { .. })),
        "{verified:?}"
    );

    // Ground truth: pg_stat_activity has the survivors and not the terminated.
    let left: Vec<i32> = pg
        .activity(&app)
        .await
        .unwrap()
        .iter()
        .map(|a| a.pid)
        .collect();
    for p in &terminated {
        assert!(!left.contains(p), "{p} still in pg_stat_activity: {left:?}");
    }
    for p in victims.pids[..2]
        .iter()
        .chain([&victims.pids[4], &super_pid])
    {
        assert!(left.contains(p), "{p} gone: {left:?}");
    }
    // The terminated connections are dead; every survivor still answers.
    for c in &mut victims.idle_in_transaction[..2] {
        assert!(!answers(c).await, "a terminated session still answers");
    }
    for c in victims
        .idle
        .iter_mut()
        .chain(&mut victims.idle_in_transaction[2..])
    {
        assert!(answers(c).await);
    }
    assert!(answers(&mut other.idle_in_transaction[0]).await);
    assert!(answers(&mut superuser).await);

    // Idempotent: the same plan again terminates nothing.
    let again = action.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(again.details["terminated"].as_array().unwrap().len(), 0);
    assert_eq!(again.details["already_gone"].as_array().unwrap().len(), 2);
    assert!(answers(&mut victims.idle_in_transaction[2]).await);

    // The next plan takes the remaining one (it was left for later by the limit); then nothing.
    // The survivor just ran `SELECT 1` inside its transaction: let it idle past the threshold.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let next = action.plan(&ctx()).await.unwrap();
    assert!(
        next.description
            .contains(&format!("pid {} ", victims.pids[4])),
        "{}",
        next.description
    );
    action.apply(&next, &ctx()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let last = action.plan(&ctx()).await.unwrap();
    assert!(last.nothing_to_do.is_some(), "{}", last.description);
    assert!(answers(&mut superuser).await);
    superuser.execute("ROLLBACK").await.unwrap();
    superuser.close().await.unwrap();
}
