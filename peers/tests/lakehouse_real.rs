//! The second example command's path — `lakehouse_real` with a TOML file naming each system — on the
//! real servers of the tier: the file is written from the tier's addresses (credentials named by
//! environment variable, never written in it), parsed by `LakehouseConfig`, and the engine it builds
//! runs in dry-run against every real system the tier started. Every detect probe of every playbook
//! loaded must read its real system (successful runs, no failed or timed-out run), no verdict may be
//! unknown because a probe could not reach, authenticate to or understand the server, nothing is
//! applied, and the database passwords must not reach the journal file.
//!
//! MinIO, Trino and Loki have no real server in the tier: their sections are left out, so their
//! playbooks and sources are not loaded (as for a user who does not run them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rb_core::policy::{CallbackApprover, Decision};
use rb_core::Verdict;
use rb_examples::lakehouse::config::LakehouseConfig;
use rb_peers::PeerEnv;

/// The TOML a user would write for the tier, and the environment variables it names.
fn config_text(env: &PeerEnv, out_dir: &str) -> (String, Vec<(String, String)>) {
    let mut t = String::new();
    let mut vars = Vec::new();
    writeln!(
        t,
        "[lakehouse]\ndry_run = true\nout_dir = {out_dir:?}\n\n[timings]\nprobe_every = \"1s\"\nprobe_deadline = \"4s\"\nfor_duration = \"10m\"\nstable_for = \"5s\"\nstage = \"10m\"\nverify_within = \"30s\"\n"
    )
    .unwrap();
    if let Some(b) = env.opt("KAFKA_BOOTSTRAP") {
        writeln!(t, "[kafka]\nbootstrap = {b:?}\n").unwrap();
    }
    if let Some(u) = env.opt("CONNECT_URL") {
        writeln!(t, "[kafka_connect]\nurl = {u:?}\n").unwrap();
    }
    if let Some(u) = env.opt("FLINK_URL") {
        writeln!(t, "[flink]\nurl = {u:?}\n").unwrap();
    }
    if let Some(nodes) = env.opt("CASSANDRA_NODES") {
        let list: Vec<String> = nodes.split(',').map(|n| format!("{n:?}")).collect();
        writeln!(t, "[cassandra]\ncontact_points = [{}]\n", list.join(", ")).unwrap();
    }
    if let (Some(u), Some(m)) = (env.opt("NESSIE_BASE_URL"), env.opt("NESSIE_MGMT_URL")) {
        writeln!(t, "[nessie]\nurl = {u:?}\nmanagement_url = {m:?}\n").unwrap();
    }
    if let Some(u) = env.opt("PROM_URL") {
        writeln!(t, "[prometheus]\nurl = {u:?}\n").unwrap();
    }
    if let Some(u) = env.opt("AM_URL") {
        writeln!(t, "[alertmanager]\nurl = {u:?}\n").unwrap();
    }
    for (section, prefix, var) in [
        ("postgres", "PG", "RB_TEST_PG_PASSWORD"),
        ("mysql", "MYSQL", "RB_TEST_MYSQL_PASSWORD"),
    ] {
        let key = |k: &str| env.opt(&format!("{prefix}_{k}"));
        if let (Some(host), Some(port), Some(user), Some(pass)) =
            (key("HOST"), key("PORT"), key("USER"), key("PASSWORD"))
        {
            let db = key("DB").unwrap_or("rb");
            writeln!(
                t,
                "[{section}]\nhost = {host:?}\nport = {port}\nuser = {user:?}\npassword_env = {var:?}\ndatabase = {db:?}\ntls = \"disable\"\n"
            )
            .unwrap();
            vars.push((var.to_string(), pass.to_string()));
        }
    }
    (t, vars)
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn the_toml_configured_runbook_sees_every_real_system_in_dry_run() {
    let env = PeerEnv::load().unwrap();
    let dir = std::env::temp_dir().join(format!("rb-lakehouse-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out_dir = dir.join("out").display().to_string();
    let (text, vars) = config_text(&env, &out_dir);
    let sections = text.matches("\n[").count();
    if sections < 3 {
        eprintln!("skipped: fewer than two systems of the tier are running\n{text}");
        return;
    }
    // the Kafka-backlog playbook reads the lag of its consumer group on its topic: the topic must
    // exist (a lag probe on a missing topic fails, as it should); the group gets committed offsets
    // unless it has some already (a job of another test may own it)
    if env.opt("KAFKA_BOOTSTRAP").is_some() {
        use rb_examples::lakehouse::situations::kafka_backlog::{GROUP, TOPIC};
        let kafka = rb_peers::kafka::Kafka::from_env(&env).unwrap();
        if let Err(e) = kafka.create_topic(TOPIC, 3).await {
            assert!(
                format!("{e:#}").to_ascii_lowercase().contains("exist"),
                "creating {TOPIC}: {e:#}"
            );
        }
        let committed = kafka.committed(GROUP, TOPIC, 1).await.unwrap();
        if committed.iter().all(Option::is_none) {
            kafka.produce(TOPIC, 3, 10).await.unwrap();
            if let Err(e) = kafka.commit_offsets(GROUP, TOPIC, &[5, 5, 5]).await {
                eprintln!("committing offsets of {GROUP} (owned by a running member?): {e:#}");
            }
        }
    }
    let path = dir.join("lakehouse.toml");
    std::fs::write(&path, &text).unwrap();
    let config = LakehouseConfig::parse(&path.display().to_string(), &text, |k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(config.dry_run);

    let denied = CallbackApprover::new(Duration::from_secs(5), |_req| async {
        Decision::Denied {
            by: "test".into(),
            reason: "dry-run smoke test".into(),
        }
    });
    let engine = config.engine(Arc::new(denied)).await.unwrap();
    assert!(
        engine.runbook().playbooks().len() >= 4,
        "too few playbooks loaded from\n{text}"
    );
    // a few rounds: every probe is due at least twice
    engine.run_for(Duration::from_secs(8)).await.unwrap();

    // every probe of the loaded playbooks read its real system: runs that succeeded, none that
    // failed or timed out (a keyed binding with nothing to judge — no connector, no such group —
    // stays unevaluated, so the verdicts alone cannot say the probe saw)
    let status = engine.status().await;
    let metrics = engine.metrics();
    let mut table = String::new();
    let mut bad = Vec::new();
    for s in &status {
        let probe = s
            .source
            .strip_prefix("probe ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected source description {:?}", s.source));
        let runs = |result: &str| {
            metrics.counter("rb_probe_runs", &[("probe", probe), ("result", result)])
        };
        let (ok, error, timeout) = (runs("ok"), runs("error"), runs("timeout"));
        let line = format!(
            "{:<22} {:<26} ok {ok:>3} error {error:>3} timeout {timeout:>3}  {:?}",
            s.playbook, probe, s.verdict
        );
        writeln!(table, "{line}").unwrap();
        let transport_unknown = matches!(&s.verdict, Verdict::Unknown { why }
            if ["refused", "timed out", "unreachable", "authentication", "malformed"]
                .iter()
                .any(|k| why.to_ascii_lowercase().contains(k)));
        if ok < 1.0 || error > 0.0 || timeout > 0.0 || transport_unknown {
            bad.push(line);
        }
    }
    println!("{} detect bindings:\n{table}", status.len());
    assert!(!status.is_empty(), "no detect binding:\n{text}");
    assert!(
        bad.is_empty(),
        "probes that could not read their real system:\n{}\n\nall:\n{table}\nconfig:\n{text}",
        bad.join("\n")
    );

    // dry-run on healthy servers with a 10-minute for-duration: nothing may have been applied
    for inc in engine.incidents().await.unwrap() {
        assert!(
            !inc.timeline
                .iter()
                .any(|e| matches!(e.event, rb_core::Event::Started { .. })),
            "a step started in dry-run: {}",
            inc.record.id
        );
    }
    // the passwords named by environment variable never reach the journal file
    let journal = std::fs::read(dir.join("out").join("journal.db")).unwrap();
    for (_, secret) in &vars {
        assert!(
            !journal
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "a database password is in the journal file"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
