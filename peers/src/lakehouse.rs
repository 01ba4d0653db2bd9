//! Running the lakehouse runbook's playbooks on the real servers of the tier: an engine on real
//! time with [`Timings::fast`](rb_examples::lakehouse::Timings::fast), a scripted human who approves
//! what is asked, and a loop that runs it until a condition holds or a deadline passes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use rb_core::policy::{CallbackApprover, Decision, SafetyPolicy};
use rb_core::{Engine, Incident, MemoryJournal, Playbook, Runbook};

/// An engine (not dry-run) on `playbooks`, journal in memory, approvals granted by a scripted
/// on-call.
pub async fn engine(playbooks: Vec<Playbook>) -> Result<Engine> {
    let mut rb = Runbook::new("lakehouse");
    for p in playbooks {
        rb = rb.playbook(p);
    }
    let approver = CallbackApprover::new(Duration::from_secs(60), |_req| async {
        Decision::Granted {
            by: "on-call (scripted)".into(),
        }
    });
    Ok(Engine::builder(rb)
        .journal(Arc::new(MemoryJournal::new()))
        .approver(Arc::new(approver))
        .policy(SafetyPolicy {
            dry_run: false,
            ..SafetyPolicy::default()
        })
        .build()
        .await?)
}

/// Every line of every incident's journal, for failure messages.
pub async fn story(engine: &Engine) -> String {
    let mut out = Vec::new();
    for inc in engine.incidents().await.unwrap_or_default() {
        for e in &inc.timeline {
            out.push(format!(
                "{} {} {}",
                e.at.rfc3339(),
                inc.record.id,
                rb_core::report::describe(&e.event)
            ));
        }
    }
    out.join("\n")
}

/// Run `engine` one second at a time, calling `step` after each (the scripted world and human),
/// until `step` returns `true` or `within` has passed (then an error with the journal).
pub async fn run_until<F, Fut>(engine: &Engine, within: Duration, mut step: F) -> Result<()>
where
    F: FnMut(Vec<Incident>) -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = tokio::time::Instant::now();
    loop {
        engine.run_for(Duration::from_secs(1)).await?;
        if step(engine.incidents().await?).await? {
            return Ok(());
        }
        if start.elapsed() >= within {
            bail!(
                "not done within {within:?}; the journal:\n{}",
                story(engine).await
            );
        }
    }
}
