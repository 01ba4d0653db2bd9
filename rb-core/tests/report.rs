#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Review reports against golden files (regenerate with `UPDATE_GOLDEN=1 cargo test -p rb-core --test report`).

mod common;

use std::sync::Arc;

use common::*;
use rb_core::journal::Event;
use rb_core::observation::facts::NessieCommit;
use rb_core::policy::AutoApprove;
use rb_core::prelude::*;
use rb_core::ImpactMap;

fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(expected == actual, "{name} differs from the golden file; run with UPDATE_GOLDEN=1 to accept.\n--- actual ---\n{actual}");
}

#[derive(Debug)]
struct NessieHead(Target);

#[async_trait]
impl Probe for NessieHead {
    fn id(&self) -> &str {
        "nessie.head"
    }
    fn target(&self) -> &Target {
        &self.0
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        Ok(
            Observation::new("nessie.head", &self.0.name, ctx.now()).fact(&NessieCommit {
                reference: "main".into(),
                hash: "2e1cfa82b035c26cbbbdae632cea070514eb8b773f616aaeaf668e2f0be8f10d".into(),
            }),
        )
    }
}

#[tokio::test(start_paused = true)]
async fn review_markdown_and_json_match_the_golden_files() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rescale = Recorder::new(
        "flink.rescale",
        Risk::Disruptive,
        vec![Target::new("flink", "flink-main")],
    );
    let pb = backlog(&g, vec![rescale.arc()])
        .diagnose(Arc::new(NessieHead(Target::new("nessie", "nessie-main"))))
        .review_item("Was the job under-provisioned for the input rate?");
    let rb = Runbook::new("lakehouse").playbook(pb).impact(
        ImpactMap::new()
            .pipeline("orders-cdc", &["kafka-main", "flink-main"])
            .pipeline("reports", &["trino-main"]),
    );
    let pager = Pager::default();
    let e = Engine::builder(rb)
        .clock(clock())
        .incident_id_seed(7)
        .approver(Arc::new(AutoApprove))
        .notifier(Arc::new(pager.clone()))
        .build()
        .await
        .unwrap();
    run(&e, mins(2), secs(30)).await;
    g.set(200.0);
    run(&e, mins(6), secs(30)).await;
    let inc = e.incidents().await.unwrap().remove(0);
    assert!(inc.is_closed());
    assert_eq!(inc.record.affected_pipelines, vec!["orders-cdc"]);
    assert_eq!(
        inc.record.nessie_commit.as_deref(),
        Some("2e1cfa82b035c26cbbbdae632cea070514eb8b773f616aaeaf668e2f0be8f10d")
    );
    let review = e.review(&inc.record.id).await.unwrap();
    let md = review.to_markdown();
    for must in [
        "## Timeline",
        "```mermaid",
        "## Evidence",
        "## Actions and outcomes",
        "## Post-recovery checklist",
        "- [ ] Alert cleared in Alertmanager.",
        "## Root cause analysis",
        "## Lessons learned",
        "records_lag_max",
        "2e1cfa82b035",
    ] {
        assert!(md.contains(must), "missing {must}");
    }
    golden("review.md", &md);
    golden("review.json", &review.to_json());
}

#[tokio::test(start_paused = true)]
async fn secrets_never_reach_the_journal_or_the_report() {
    #[derive(Debug)]
    struct WithSecret(Secret);
    #[async_trait]
    impl Remediation for WithSecret {
        fn id(&self) -> &str {
            "x.login"
        }
        fn risk(&self) -> Risk {
            Risk::Safe
        }
        async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
            Ok(Plan::new("x.login", vec![kafka()], "log in")
                .params(serde_json::json!({ "password": self.0 })))
        }
        async fn apply(
            &self,
            _p: &Plan,
            _ctx: &ActionContext,
        ) -> Result<Outcome, RemediationError> {
            Err(RemediationError::new(
                "x.login",
                "kafka-main",
                "postgres://rb:hunter2@127.0.0.1/db",
                ErrorKind::Unauthorized,
                "denied",
            ))
        }
    }
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Arc::new(WithSecret(Secret::new("hunter2")));
    assert!(!format!("{rem:?}").contains("hunter2"));
    let e = Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![rem])))
        .clock(clock())
        .notifier(Arc::new(Pager::default()))
        .build()
        .await
        .unwrap();
    run(&e, mins(3), secs(30)).await;
    let inc = e.incidents().await.unwrap().remove(0);
    let all = serde_json::to_string(&inc.timeline).unwrap()
        + &e.review(&inc.record.id).await.unwrap().to_markdown();
    assert!(!all.contains("hunter2"), "secret leaked");
    assert!(all.contains("[redacted]"));
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(&e.event, Event::Finished { ok: false, .. })));
}
