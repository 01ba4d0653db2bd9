//! The lakehouse runbook, end to end, on an embedded fake lakehouse.
//!
//! Run: `cargo run -p rb-examples --example lakehouse`
//!
//! Plays the scripted day of [`rb_examples::lakehouse::day::script`] on rb-testkit's
//! `FakeLakehouse` with every playbook of the seed runbook ([`rb_examples::lakehouse::runbook`]):
//! each situation of seed §4 at least once (two at the same time on different targets), and the
//! decoys that must open nothing. The timeline prints as it happens (colour on a terminal, plain
//! when piped or with `NO_COLOR`), then a summary with each incident's detection latency. Each
//! review (Markdown with a Mermaid timeline and the checked post-recovery checklist, and JSON) and
//! the SQLite journal go into an output directory named at the end (`RB_OUT` overrides it).
//! `RB_DRY_RUN=1` plans and journals every remediation without applying it.
//!
//! The clock is virtual (tokio's, paused): the hours of the day pass in seconds.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rb_examples::lakehouse::checklist::{start_fake_itsm, WebhookTicketSink};
use rb_examples::lakehouse::day::{play_day, script, DayOptions};
use rb_probes::transport::ReqwestClient;
use rb_testkit::lakehouse::FakeLakehouse;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tokio::time::pause(); // virtual time: the scripted day passes at once
    let out = match std::env::var_os("RB_OUT") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from("out").join(format!("lakehouse-{}", std::process::id())),
    };
    let dry_run = std::env::var("RB_DRY_RUN").is_ok_and(|v| v == "1");

    let lake = FakeLakehouse::start()
        .await
        .context("starting the fake lakehouse")?;
    let itsm = start_fake_itsm().await.context("starting the fake ITSM")?;
    let tickets = WebhookTicketSink::new(
        Arc::new(ReqwestClient::new(itsm.base_url()).context("ITSM client")?),
        "/tickets",
    );

    println!("rb — the lakehouse runbook on a fake lakehouse (virtual clock; dry-run: {dry_run})");
    println!("   ● opened  ▶ phase  ✔ done/verified  ✋ human task  ☎ escalated  ■ closed  ! situation  ~ decoy\n");
    let mut opts = DayOptions::new(&out);
    opts.dry_run = dry_run;
    let report = play_day(&lake, script(), &opts, Arc::new(tickets)).await?;

    println!(
        "\nreviews (Markdown + JSON) and the SQLite journal: {}",
        out.display()
    );
    if !report.missed.is_empty() || !report.false_incidents.is_empty() {
        anyhow::bail!(
            "the day went wrong: {} missed, {} false incidents",
            report.missed.len(),
            report.false_incidents.len()
        );
    }
    Ok(())
}
