//! The lakehouse runbook against real endpoints named in a TOML file.
//!
//! Run: `cargo run -p rb-examples --example lakehouse_real -- examples/lakehouse.toml [--for 10m]`
//!
//! The file names each system's address and the environment variables holding credentials (see
//! [`rb_examples::lakehouse::config`]); remediations are planned and journaled but **not applied**
//! unless the file says `dry_run = false`. The engine runs until Ctrl-C (or for `--for`), printing
//! the timeline; the SQLite journal and each incident's review go into the file's `out_dir`.
//! Approvals of disruptive steps are asked on the terminal (`y` grants).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rb_core::policy::{CallbackApprover, Decision};
use rb_examples::lakehouse::config::LakehouseConfig;
use rb_examples::lakehouse::day::{color_by_default, Timeline};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut path = PathBuf::from("examples/lakehouse.toml");
    let mut run_for: Option<Duration> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--for" => {
                let v = args.next().context("--for needs a duration such as 10m")?;
                run_for = Some(
                    rb_core::time::parse_duration(&v)
                        .map_err(|e| anyhow::anyhow!("--for {v}: {e}"))?,
                );
            }
            "-h" | "--help" => {
                println!("usage: lakehouse_real [CONFIG.toml] [--for DURATION]");
                return Ok(());
            }
            other => path = PathBuf::from(other),
        }
    }
    let config = LakehouseConfig::load(&path)?;
    let out = PathBuf::from(&config.out_dir);
    let approver = CallbackApprover::new(Duration::from_secs(15 * 60), |req| async move {
        println!(
            "? approve {} (risk {:?})? [y/N]",
            req.plan.description, req.risk
        );
        let answer = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await;
        match answer {
            Ok(Ok(l)) if l.trim().eq_ignore_ascii_case("y") => Decision::Granted {
                by: "terminal".into(),
            },
            _ => Decision::Denied {
                by: "terminal".into(),
                reason: "not approved on the terminal".into(),
            },
        }
    });
    let engine = config.engine(Arc::new(approver)).await?;
    println!(
        "rb — the lakehouse runbook on {} ({} playbooks; dry-run: {}); journal and reviews in {}",
        path.display(),
        engine.runbook().playbooks().len(),
        config.dry_run,
        out.display()
    );
    let journal = engine.journal().clone();
    let mut timeline = Timeline::new(true, color_by_default());
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            r = engine.run_for(Duration::from_secs(1)) => r?,
            _ = tokio::signal::ctrl_c() => break,
        }
        timeline.catch_up(journal.as_ref()).await?;
        if run_for.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    for inc in engine.incidents().await? {
        let review = engine.review(&inc.record.id).await?;
        rb_examples::lakehouse::checklist::write_review(&review, &[], &out)
            .map_err(|(p, e)| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    println!("journal and reviews: {}", out.display());
    Ok(())
}
