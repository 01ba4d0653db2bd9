//! `mysql.kill_sessions` against the real MariaDB: connections of one user idle inside an open
//! transaction on one database are killed, at most N per apply, and every other connection
//! survives and still answers — that user's idle ones, another user's inside a transaction, one
//! in a transaction without a database, the action's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rb_actions::mysql::{KillSessions, SessionFilter};
use rb_core::time::Clock;
use rb_core::{ActionContext, Remediation, Secret, Target, Verification};
use rb_peers::mariadb::MariaDb;
use rb_peers::PeerEnv;
use rb_probes::sql::{SqlEndpoint, SqlTls};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{Connection, Executor};

fn ctx() -> ActionContext {
    ActionContext::detached(Clock::system(), Duration::from_secs(30))
}

async fn answers(c: &mut MySqlConnection) -> bool {
    c.execute("SELECT 1").await.is_ok()
}

async fn id(c: &mut MySqlConnection) -> u64 {
    sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS UNSIGNED)")
        .fetch_one(&mut *c)
        .await
        .unwrap()
}

/// A second account (`rb_other`) made by `root` over the server's socket.
async fn other_user(env: &PeerEnv) {
    let socket = env.get("MYSQL_SOCKET").unwrap();
    let out = tokio::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=socket",
            "-S",
            socket,
            "-u",
            "root",
            "-e",
        ])
        .arg(
            "CREATE USER IF NOT EXISTS 'rb_other'@'%' IDENTIFIED BY 'rb-other-pass'; \
             GRANT ALL PRIVILEGES ON `rb`.* TO 'rb_other'@'%'; FLUSH PRIVILEGES;",
        )
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn in_transaction(mut c: MySqlConnection) -> (MySqlConnection, u64) {
    let i = id(&mut c).await;
    c.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .unwrap();
    (c, i)
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn idle_transactions_of_one_user_are_killed_and_the_rest_survive() {
    let env = PeerEnv::load().unwrap();
    let db = MariaDb::from_env(&env).unwrap();
    other_user(&env).await;
    let mut victims = db.open_sessions(2, 3).await.unwrap();
    let opts = |user: &str, pass: &str| {
        MySqlConnectOptions::new()
            .host(&db.host)
            .port(db.port)
            .username(user)
            .password(pass)
            .ssl_mode(MySqlSslMode::Disabled)
    };
    let (mut other, other_id) = in_transaction(
        MySqlConnection::connect_with(&opts("rb_other", "rb-other-pass").database(&db.db))
            .await
            .unwrap(),
    )
    .await;
    let (mut no_db, no_db_id) = in_transaction(
        MySqlConnection::connect_with(&opts(&db.user, &db.password))
            .await
            .unwrap(),
    )
    .await;
    // TIME is whole seconds: let the transactions idle past the 1 s threshold.
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let action = KillSessions::connect(
        Target::new("mysql", "mariadb-peer"),
        SqlEndpoint::new(&db.host, db.port, &db.user, Secret::new(&db.password))
            .database(&db.db)
            .tls(SqlTls::Disable),
        SessionFilter::idle_in_transaction(Duration::from_secs(1))
            .users([db.user.clone()])
            .databases([db.db.clone()]),
    )
    .max_per_apply(2);

    let plan = action.plan(&ctx()).await.unwrap();
    let d = plan.description.clone();
    assert!(d.contains("2 of 3 matching"), "{d}");
    for i in victims.idle_ids.iter().chain([&other_id, &no_db_id]) {
        assert!(!d.contains(&format!("id {i} ")), "{i} planned: {d}");
    }
    let out = action.apply(&plan, &ctx()).await.unwrap();
    let killed: Vec<u64> = out.details["killed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(killed.len(), 2, "{}", out.summary);
    for k in &killed {
        assert!(
            victims.in_transaction_ids.contains(k),
            "{k} was not a victim"
        );
    }

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

    // Ground truth: SHOW FULL PROCESSLIST through the server's own client.
    let ids: Vec<u64> = db
        .processlist()
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    for k in &killed {
        assert!(!ids.contains(k), "{k} still in the processlist");
    }
    let survivor = *victims
        .in_transaction_ids
        .iter()
        .find(|i| !killed.contains(i))
        .unwrap();
    for i in victims
        .idle_ids
        .iter()
        .chain([&survivor, &other_id, &no_db_id])
    {
        assert!(ids.contains(i), "{i} is gone");
    }
    // Killed connections are dead; every survivor still answers.
    for (c, i) in victims
        .idle_in_transaction
        .iter_mut()
        .zip(victims.in_transaction_ids.clone())
    {
        assert_eq!(answers(c).await, !killed.contains(&i), "connection {i}");
    }
    for c in &mut victims.idle {
        assert!(answers(c).await);
    }
    assert!(answers(&mut other).await);
    assert!(answers(&mut no_db).await);

    // Idempotent: the same plan again kills nothing.
    let again = action.apply(&plan, &ctx()).await.unwrap();
    assert_eq!(again.details["killed"].as_array().unwrap().len(), 0);
    assert_eq!(again.details["already_gone"].as_array().unwrap().len(), 2);

    // The survivor just answered `SELECT 1`: once it idles again, the next plan takes it; then
    // nothing is left.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let next = action.plan(&ctx()).await.unwrap();
    assert!(
        next.description.contains(&format!("id {survivor} ")),
        "{}",
        next.description
    );
    action.apply(&next, &ctx()).await.unwrap();
    let last = action.plan(&ctx()).await.unwrap();
    assert!(last.nothing_to_do.is_some(), "{}", last.description);
    assert!(answers(&mut other).await && answers(&mut no_db).await);
}
