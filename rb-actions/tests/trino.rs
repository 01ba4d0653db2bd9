//! Killing Trino queries against the fake coordinator, through reqwest.
#![cfg(feature = "trino")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_actions::trino::{Criteria, KillQueries, RankBy};
use rb_core::journal::Event;
use rb_core::policy::{AutoApprove, DenyAll};
use rb_core::prelude::*;
use rb_core::{ErrorKind, Verification};
use rb_probes::transport::ReqwestClient;
use rb_testkit::doubles::GaugeProbe;
use rb_testkit::http::trino::{FakeTrino, QuerySpec, QueryState};
use rb_testkit::http::Fault;

const GB: u64 = 1024 * 1024 * 1024;

fn target() -> Target {
    Target::new("trino", "trino-main")
}

fn kill(fake: &FakeTrino, timeout: Duration) -> KillQueries {
    let client = ReqwestClient::builder(fake.base_url())
        .timeout(timeout)
        .build()
        .unwrap();
    KillQueries::new(Arc::new(client), target(), "rb-admin").criteria(Criteria {
        min_elapsed: mins(5),
        min_memory: GB,
        users: vec![],
        protected_users: vec!["etl-critical".into()],
        rank_by: RankBy::Memory,
    })
}

fn ctx(incident: &str) -> ActionContext {
    let mut c = ActionContext::detached(Clock::starting_at(Timestamp(1_795_590_000_000)), secs(30));
    c.incident = incident.into();
    c
}

struct Seeded {
    fake: FakeTrino,
    big: String,
    bigger: String,
    young: String,
    small: String,
    protected: String,
    queued_big: String,
}

async fn seeded() -> Seeded {
    let fake = FakeTrino::start().await.unwrap();
    let big = fake.add_query(
        QuerySpec::new(
            "analyst",
            "SELECT * FROM lake.orders o JOIN lake.items i ON o.id = i.order_id",
        )
        .memory_bytes(8 * GB)
        .age(mins(20)),
    );
    let bigger = fake.add_query(
        QuerySpec::new(
            "bi",
            &format!("SELECT {} FROM lake.events", "col, ".repeat(100)),
        )
        .memory_bytes(20 * GB)
        .age(mins(12)),
    );
    let young = fake.add_query(
        QuerySpec::new("analyst", "SELECT 1")
            .memory_bytes(30 * GB)
            .age(mins(1)),
    );
    let small = fake.add_query(
        QuerySpec::new("analyst", "SELECT 2")
            .memory_bytes(GB / 2)
            .age(mins(60)),
    );
    let protected = fake.add_query(
        QuerySpec::new("etl-critical", "INSERT INTO x SELECT * FROM y")
            .memory_bytes(50 * GB)
            .age(mins(60)),
    );
    let queued_big = fake.add_query(
        QuerySpec::new("bi", "SELECT count(*) FROM lake.clicks")
            .state(QueryState::Queued)
            .memory_bytes(2 * GB)
            .age(mins(30)),
    );
    Seeded {
        fake,
        big,
        bigger,
        young,
        small,
        protected,
        queued_big,
    }
}

#[tokio::test]
async fn the_heaviest_matching_queries_are_planned_killed_and_verified() {
    let s = seeded().await;
    let k = kill(&s.fake, secs(10)).max_per_incident(2);
    let c = ctx("inc-1");
    let plan = k.plan(&c).await.unwrap();
    let ids: Vec<&str> = plan.params["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["query_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![s.bigger.as_str(), s.big.as_str()],
        "by memory: {}",
        plan.description
    );
    assert!(!plan.reversible);
    assert!(
        plan.description.contains("user bi") && plan.description.contains("20.00GB"),
        "{}",
        plan.description
    );
    assert!(
        plan.description.contains('…'),
        "SQL cut: {}",
        plan.description
    );
    assert_eq!(
        plan.params["queries"][0]["sql"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        201
    );
    assert!(
        s.fake.http().requests().mutating().is_empty(),
        "planning is read-only"
    );
    let list = &s.fake.http().requests().all()[0];
    assert_eq!(list.line(), "GET /v1/query");
    assert_eq!(list.header("x-trino-user"), Some("rb-admin"));

    let o = k.apply(&plan, &c).await.unwrap();
    let puts = s.fake.http().requests().mutating();
    assert_eq!(puts.len(), 2);
    for (req, id) in puts.iter().zip([&s.bigger, &s.big]) {
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, format!("/v1/query/{id}/killed"));
        assert_eq!(req.header("x-trino-user"), Some("rb-admin"));
        assert!(req.text().contains("killed by rb"));
    }
    let v = k.verify(&plan, &o, &c).await.unwrap();
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    for id in [&s.bigger, &s.big] {
        let q = s.fake.query(id).unwrap();
        assert_eq!(q.state, QueryState::Failed);
        assert_eq!(q.error_code.unwrap().name, "ADMINISTRATIVELY_KILLED");
    }
    for id in [&s.young, &s.small, &s.protected, &s.queued_big] {
        assert_ne!(
            s.fake.query(id).unwrap().state,
            QueryState::Failed,
            "{id} untouched"
        );
    }
}

#[tokio::test]
async fn never_more_than_n_per_incident() {
    let s = seeded().await;
    let k = kill(&s.fake, secs(10)).max_per_incident(1);
    let c = ctx("inc-7");
    let plan = k.plan(&c).await.unwrap();
    assert_eq!(plan.params["queries"].as_array().unwrap().len(), 1);
    k.apply(&plan, &c).await.unwrap();
    let e = k.plan(&c).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    // another incident has its own budget
    assert!(k.plan(&ctx("inc-8")).await.is_ok());
}

#[tokio::test]
async fn ranking_by_elapsed_and_the_incidents_user_narrow_the_choice() {
    let s = seeded().await;
    let k = kill(&s.fake, secs(10))
        .criteria(Criteria {
            min_elapsed: mins(5),
            min_memory: GB,
            rank_by: RankBy::Elapsed,
            ..Criteria::default()
        })
        .max_per_incident(1);
    let plan = k.plan(&ctx("a")).await.unwrap();
    assert_eq!(
        plan.params["queries"][0]["query_id"],
        s.protected.as_str(),
        "no protection configured here"
    );
    let c = ctx("b").with_key(labels(&[("user", "bi")]));
    let plan = k.plan(&c).await.unwrap();
    assert_eq!(
        plan.params["queries"][0]["query_id"],
        s.queued_big.as_str(),
        "queued counts too"
    );
    let c = ctx("c").with_key(labels(&[("user", "nobody")]));
    assert!(k.plan(&c).await.unwrap().nothing_to_do.is_some());
}

#[tokio::test]
async fn a_query_that_ended_meanwhile_counts_as_done_and_killing_twice_changes_nothing() {
    let s = seeded().await;
    let k = kill(&s.fake, secs(10));
    let c = ctx("inc-2");
    let plan = k.plan(&c).await.unwrap();
    s.fake.set_state(&s.bigger, QueryState::Finished);
    let o = k.apply(&plan, &c).await.unwrap();
    assert_eq!(o.details["already_done"][0], s.bigger.as_str());
    assert_eq!(s.fake.query(&s.bigger).unwrap().state, QueryState::Finished);
    // a second apply of a kill plan: 409, done, state unchanged
    let s2 = seeded().await;
    let k2 = kill(&s2.fake, secs(10)).max_per_incident(5);
    let p = k2.plan(&ctx("x")).await.unwrap();
    k2.apply(&p, &ctx("x")).await.unwrap();
    let before: Vec<_> = s2
        .fake
        .queries()
        .iter()
        .map(|q| (q.query_id.clone(), q.state))
        .collect();
    let again = k2.apply(&p, &ctx("x")).await.unwrap();
    assert_eq!(again.details["killed"].as_array().unwrap().len(), 0);
    let after: Vec<_> = s2
        .fake
        .queries()
        .iter()
        .map(|q| (q.query_id.clone(), q.state))
        .collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn every_injected_fault_is_a_typed_error() {
    let s = seeded().await;
    let k = kill(&s.fake, Duration::from_millis(300));
    let plan = k.plan(&ctx("p")).await.unwrap();
    let kill_path = format!("/v1/query/{}/killed", s.bigger);
    let cases: Vec<(&str, String, Fault, bool, ErrorKind)> = vec![
        ("GET", "/v1/query".into(), Fault::Status(500), false, ErrorKind::Rejected),
        ("GET", "/v1/query".into(), Fault::Status(401), false, ErrorKind::Unauthorized),
        ("GET", "/v1/query".into(), Fault::MalformedBody, false, ErrorKind::BadResponse),
        ("GET", "/v1/query".into(), Fault::TruncatedBody, false, ErrorKind::BadResponse),
        ("GET", "/v1/query".into(), Fault::Hang, false, ErrorKind::Timeout),
        (
            "GET",
            "/v1/query".into(),
            Fault::StatusBody(200, r#"[{"queryId":"q","state":"RUNNING","session":{"user":"u"},"queryStats":{"elapsedTime":"12 parsecs"}}]"#.into()),
            false,
            ErrorKind::BadResponse,
        ),
        ("PUT", kill_path.clone(), Fault::Status(500), true, ErrorKind::Rejected),
        ("PUT", kill_path.clone(), Fault::Status(403), true, ErrorKind::Unauthorized),
        ("PUT", kill_path.clone(), Fault::Hang, true, ErrorKind::OutcomeUnknown),
        ("PUT", kill_path.clone(), Fault::Reset, true, ErrorKind::OutcomeUnknown),
    ];
    for (i, (method, path, fault, at_apply, kind)) in cases.into_iter().enumerate() {
        s.fake.http().faults().clear();
        s.fake.http().faults().inject(method, &path, fault.clone());
        let c = ctx(&format!("f{i}"));
        let e = if at_apply {
            k.apply(&plan, &c).await.unwrap_err()
        } else {
            k.plan(&c).await.unwrap_err()
        };
        assert_eq!(e.kind(), kind, "{method} {path} {fault:?}: {e}");
        assert!(e.to_string().contains("trino-main"), "{e}");
    }
    s.fake.http().faults().clear();
    let bad = kill(&s.fake, secs(1));
    s.fake.http().refuse_connections();
    assert_eq!(
        bad.plan(&ctx("z")).await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
}

#[tokio::test]
async fn a_parse_error_names_where_the_list_went_wrong() {
    let s = seeded().await;
    s.fake.http().faults().inject(
        "GET",
        "/v1/query",
        Fault::StatusBody(200, "[{\"queryId\":\"q\",\n\"state\":7}]".into()),
    );
    let e = kill(&s.fake, secs(5)).plan(&ctx("p")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    assert!(
        e.message.contains("/0/state") && e.message.contains("line 2"),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_the_kill_needs_approval_and_is_dry_run_safe() {
    for (approver, dry, expected) in [
        (
            Arc::new(DenyAll) as Arc<dyn rb_core::policy::Approver>,
            false,
            0,
        ),
        (Arc::new(AutoApprove), true, 0),
        (Arc::new(AutoApprove), false, 1),
    ] {
        let s = seeded().await;
        let queued = GaugeProbe::new(target(), "trino_queued_queries", 40.0);
        let runbook = Runbook::new("t").playbook(
            Playbook::new("trino-overloaded", "Trino queue grows")
                .detect(
                    queued.arc(),
                    Schedule::every(secs(30)),
                    metric("trino_queued_queries").above(20.0),
                )
                .mitigate(Arc::new(kill(&s.fake, secs(30))))
                .escalate_to("Data Platform On-call"),
        );
        let policy = SafetyPolicy {
            dry_run: dry,
            ..SafetyPolicy::default()
        };
        let engine = Engine::builder(runbook)
            .clock(Clock::starting_at(Timestamp(1_795_590_000_000)))
            .approver(approver)
            .policy(policy)
            .build()
            .await
            .unwrap();
        for _ in 0..3 {
            engine.tick().await.unwrap();
            tokio::time::sleep(secs(30)).await;
        }
        let kills = s.fake.http().requests().mutating().len();
        let inc = &engine.incidents().await.unwrap()[0];
        let planned = inc.timeline.iter().any(|x| matches!(&x.event, Event::Planned { plan, .. } if plan.description.contains(&s.bigger)));
        assert!(planned, "the plan names the query");
        assert_eq!(kills, expected, "dry run {dry}");
        match (dry, kills) {
            (true, 0) => {}
            (false, 1) => {
                assert!(inc.timeline.iter().any(|x| matches!(
                    &x.event,
                    Event::Verified {
                        verification: Verification::Succeeded { .. },
                        ..
                    }
                )));
                assert_eq!(s.fake.query(&s.bigger).unwrap().state, QueryState::Failed);
            }
            (false, 0) => {
                // denied: nothing killed
                assert!(inc
                    .timeline
                    .iter()
                    .any(|x| matches!(&x.event, Event::Approval { .. })));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
