//! The allow-listed command runner with real commands of this machine.
#![cfg(feature = "exec")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_actions::exec::{
    int, lit, one_of, rest, word, AllowRule, CommandRemediation, CommandRunner,
};
use rb_core::journal::Event;
use rb_core::policy::AutoApprove;
use rb_core::prelude::*;
use rb_core::{ErrorKind, Verification};
use rb_testkit::doubles::GaugeProbe;

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn runner() -> CommandRunner {
    CommandRunner::new([
        AllowRule::new("echo").args([rest(word())]),
        AllowRule::new("sleep").args([int("", 0, 30)]),
        AllowRule::new("printenv").args([one_of(&["RB_TOKEN", "RB_PLAIN"])]),
        AllowRule::new("seq").args([lit("1"), int("", 1, 10_000_000)]),
        AllowRule::new("ls").args([rest(word())]),
    ])
    .timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn an_allowed_command_runs_without_a_shell() {
    let out = runner()
        .run(&argv("echo scale flink-taskmanager=2 $HOME"))
        .await;
    // `$HOME` is not a word (no `$` allowed): refused before anything runs
    assert_eq!(out.unwrap_err().kind(), ErrorKind::Refused);
    let out = runner()
        .run(&argv("echo scale flink-taskmanager=2"))
        .await
        .unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, "scale flink-taskmanager=2\n");
    assert_eq!(out.argv, argv("echo scale flink-taskmanager=2"));
    assert!(!out.truncated);
}

#[tokio::test]
async fn anything_not_on_the_list_is_refused_with_a_clear_error() {
    for bad in [
        "sh -c echo",
        "rm -rf /tmp/rb-nothing",
        "/bin/echo hi",
        "sleep 99",
        "printenv PATH",
        "ls -la",
    ] {
        let e = runner().run(&argv(bad)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{bad}");
        assert!(e.to_string().contains(bad), "names the command: {e}");
        assert!(
            e.message.contains("`sleep <0..30>`"),
            "names what is allowed: {e}"
        );
    }
    assert_eq!(
        runner().run(&[]).await.unwrap_err().kind(),
        ErrorKind::Refused
    );
    // sh runs only when a rule names it
    let with_sh = CommandRunner::new([AllowRule::new("sh").args([lit("-c"), lit("exit 3")])]);
    assert_eq!(
        with_sh
            .run(&["sh".into(), "-c".into(), "exit 3".into()])
            .await
            .unwrap()
            .exit_code,
        Some(3)
    );
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed() {
    let r = runner().timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let e = r.run(&argv("sleep 20")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(e.output.unwrap().exit_code.is_none(), "killed by a signal");
}

#[tokio::test]
async fn output_is_bounded_and_secrets_are_redacted() {
    let out = runner()
        .max_output(1000)
        .run(&argv("seq 1 200000"))
        .await
        .unwrap();
    assert!(out.truncated);
    assert!(out.stdout.len() < 1100, "{}", out.stdout.len());
    assert!(out.stdout.starts_with("1\n2\n3\n"));
    assert!(out.success(), "the child was not blocked by the bound");

    let secret = Secret::new("s3cr3t-t0ken-value");
    let r = runner()
        .env_secret("RB_TOKEN", secret.clone())
        .env("RB_PLAIN", "visible");
    let out = r.run(&argv("printenv RB_TOKEN")).await.unwrap();
    assert_eq!(out.stdout, "[redacted]\n");
    assert!(!format!("{out:?}").contains("s3cr3t"));
    let out = r.run(&argv("printenv RB_PLAIN")).await.unwrap();
    assert_eq!(out.stdout, "visible\n");
    // a secret in argv is refused (argv is journaled)
    let e = r.run(&argv("echo s3cr3t-t0ken-value")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    // a secret cut at the bound is still redacted whole
    let r = CommandRunner::new([AllowRule::new("printenv").args([lit("RB_TOKEN")])])
        .env_secret("RB_TOKEN", secret)
        .max_output(5);
    let out = r.run(&argv("printenv RB_TOKEN")).await.unwrap();
    assert!(!out.stdout.contains("s3cr"), "{}", out.stdout);
}

#[tokio::test]
async fn the_remediation_plans_runs_and_keeps_evidence() {
    let dir = std::env::temp_dir().join(format!("rb-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = CommandRunner::new([
        AllowRule::new("echo").args([rest(word())]),
        AllowRule::new("ls").args([rest(word())]),
    ]);
    let rem = CommandRemediation::new(
        "demo.scale",
        r.clone(),
        Target::new("compose", "lakehouse"),
        &["echo", "scale", "{service}=2"],
    )
    .check(&["ls", dir.to_str().unwrap()], Duration::ZERO)
    .undo("echo scale {service}=1")
    .idempotent();
    let ctx = ActionContext::detached(Clock::system(), secs(30))
        .with_key(labels(&[("service", "flink-taskmanager")]));
    let plan = rem.plan(&ctx).await.unwrap();
    assert!(
        plan.description
            .contains("`echo scale flink-taskmanager=2`"),
        "{}",
        plan.description
    );
    assert_eq!(
        plan.params["argv"],
        serde_json::json!(["echo", "scale", "flink-taskmanager=2"])
    );
    let o = rem.apply(&plan, &ctx).await.unwrap();
    assert_eq!(o.details["stdout"], "scale flink-taskmanager=2\n");
    assert_eq!(o.details["exit_code"], 0);
    assert!(matches!(
        rem.verify(&plan, &o, &ctx).await.unwrap(),
        Verification::Succeeded { .. }
    ));

    // a label that renders to something not allowed is refused at plan time
    let bad =
        ActionContext::detached(Clock::system(), secs(30)).with_key(labels(&[("service", "x;rm")]));
    assert_eq!(rem.plan(&bad).await.unwrap_err().kind(), ErrorKind::Refused);
    let none = ActionContext::detached(Clock::system(), secs(30));
    assert_eq!(
        rem.plan(&none).await.unwrap_err().kind(),
        ErrorKind::Invalid
    );

    // a non-zero exit is a rejected apply with its output kept
    let failing = CommandRemediation::new(
        "demo.ls",
        r,
        Target::new("compose", "lakehouse"),
        &["ls", "/nonexistent-rb-dir"],
    );
    let p = failing.plan(&none).await.unwrap();
    let e = failing.apply(&p, &none).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(
        e.details["stderr"]
            .as_str()
            .unwrap()
            .contains("nonexistent-rb-dir"),
        "{:?}",
        e.details
    );
    assert_ne!(e.details["exit_code"], 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_killed_apply_is_outcome_unknown() {
    let r = CommandRunner::new([AllowRule::new("sleep").args([int("", 0, 30)])])
        .timeout(Duration::from_millis(200));
    let rem = CommandRemediation::new(
        "demo.sleep",
        r,
        Target::new("compose", "lakehouse"),
        &["sleep", "10"],
    );
    let ctx = ActionContext::detached(Clock::system(), secs(30));
    let p = rem.plan(&ctx).await.unwrap();
    assert!(!p.reversible, "no undo given: irreversible");
    let e = rem.apply(&p, &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
}

#[tokio::test]
async fn through_the_engine_dry_run_runs_nothing_and_auto_approval_runs_it_once() {
    for dry in [true, false] {
        let file =
            std::env::temp_dir().join(format!("rb-exec-engine-{}-{dry}", std::process::id()));
        std::fs::remove_file(&file).ok();
        let runner = CommandRunner::new([AllowRule::new("touch").args([word()])]);
        let rem = CommandRemediation::new(
            "demo.touch",
            runner,
            Target::new("compose", "lakehouse"),
            &["touch", file.to_str().unwrap()],
        );
        let g = GaugeProbe::new(Target::new("flink", "flink-main"), "busy", 1.0);
        let pb = Playbook::new("flink-busy", "Flink busy")
            .detect(g.arc(), Schedule::every(secs(1)), metric("busy").above(0.5))
            .mitigate(Arc::new(rem))
            .escalate_to("Data Platform On-call");
        let policy = SafetyPolicy {
            dry_run: dry,
            ..SafetyPolicy::default()
        };
        let e = Engine::builder(Runbook::new("t").playbook(pb))
            .approver(Arc::new(AutoApprove))
            .policy(policy)
            .build()
            .await
            .unwrap();
        for _ in 0..3 {
            e.tick().await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_eq!(file.exists(), !dry, "dry run {dry}");
        let inc = &e.incidents().await.unwrap()[0];
        let started = inc
            .timeline
            .iter()
            .filter(|x| matches!(x.event, Event::Started { .. }))
            .count();
        assert_eq!(started, usize::from(!dry));
        std::fs::remove_file(&file).ok();
    }
}
