//! The Trino probes through reqwest against the fake coordinator.

#![cfg(feature = "trino")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_http;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rb_core::async_trait;
use rb_probes::transport::{HttpClient, HttpRequest, HttpResponse, TransportError};

use rb_core::{ErrorKind, Observation, Probe, Secret, Target};
use rb_probes::transport::{HttpAuth, ReqwestClient};
use rb_probes::trino::{TrinoQueries, TrinoQueriesFact, TrinoSql, TrinoSqlResult};
use rb_testkit::http::trino::{FakeTrino, QuerySpec, QueryState, StatementResult, TrinoErrorCode};
use serde_json::json;
use support_http::{check_matrix, client, ctx, inject_and_observe, kind_of};

const MB: u64 = 1024 * 1024;

fn target() -> Target {
    Target::new("trino", "trino-main")
}

fn value(o: &Observation, name: &str) -> f64 {
    o.samples_named(name)
        .next()
        .unwrap_or_else(|| panic!("no {name}"))
        .value
}

async fn cluster() -> FakeTrino {
    let t = FakeTrino::start().await.unwrap();
    t.add_query(
        QuerySpec::new("etl", "INSERT INTO lake.orders SELECT * FROM kafka.orders")
            .state(QueryState::Queued),
    );
    t.add_query(QuerySpec::new("bi", "SELECT count(*) FROM lake.orders").state(QueryState::Queued));
    t.add_query(
        QuerySpec::new(
            "analyst",
            "SELECT * FROM lake.orders o JOIN lake.payments p ON o.id = p.order_id",
        )
        .memory_bytes(512 * MB)
        .peak_memory_bytes(768 * MB)
        .cpu(Duration::from_secs(40))
        .age(Duration::from_secs(90)),
    );
    t.add_query(
        QuerySpec::new("etl", "SELECT 1")
            .memory_bytes(12 * MB)
            .fully_blocked(true),
    );
    t.add_query(
        QuerySpec::new("bi", "SELECT 2")
            .state(QueryState::Finished)
            .memory_bytes(900 * MB),
    );
    t
}

#[tokio::test]
async fn queued_running_and_blocked_queries_with_user_elapsed_and_memory() {
    let t = cluster().await;
    let o = TrinoQueries::new(client(&t), target(), "rb-monitor")
        .full_view(true)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(o.complete, "{:?}", o.gaps);
    assert_eq!(value(&o, "trino_queries_queued"), 2.0);
    assert_eq!(value(&o, "trino_queries_running"), 1.0);
    assert_eq!(value(&o, "trino_queries_blocked"), 1.0);
    assert_eq!(value(&o, "trino_queries_active"), 4.0);
    assert_eq!(t.queued_count(), 2);
    let f: TrinoQueriesFact = o.facts.get().unwrap().unwrap();
    assert!(!f.view_may_be_partial);
    assert_eq!(f.active, 4);
    let heavy = &f.queries[0];
    assert_eq!(heavy.user, "analyst");
    assert_eq!(heavy.state, "RUNNING");
    assert_eq!(heavy.memory_bytes, (512 * MB) as f64);
    assert_eq!(heavy.peak_memory_bytes, (768 * MB) as f64);
    assert_eq!(heavy.cpu_seconds, 40.0);
    assert!(
        (heavy.elapsed_seconds - 90.0).abs() < 1.0,
        "{}",
        heavy.elapsed_seconds
    );
    assert_eq!(heavy.resource_group.as_deref(), Some("global"));
    assert_eq!(heavy.source.as_deref(), Some("trino-cli"));
    let blocked = f.queries.iter().find(|q| q.fully_blocked).unwrap();
    assert_eq!(
        blocked.blocked_reasons,
        vec!["WAITING_FOR_MEMORY".to_string()]
    );
    assert_eq!(blocked.memory_bytes, (12 * MB) as f64);
    assert!(f.queries.iter().all(|q| q.state != "FINISHED"));
    // the id is the coordinator's, for the kill remediation
    assert!(t.query(&heavy.query_id).is_some());
    let top = o.samples_named("trino_query_memory_bytes").next().unwrap();
    assert_eq!(top.labels["user"], "analyst");
    assert_eq!(top.value, (512 * MB) as f64);
    let reqs = t.requests().matching("GET", "/v1/query");
    assert_eq!(reqs[0].header("x-trino-user"), Some("rb-monitor"));
}

#[tokio::test]
async fn a_view_that_may_be_partial_is_an_incomplete_observation() {
    let t = cluster().await;
    t.restrict_to_owners(&["admin"]);
    let o = TrinoQueries::new(client(&t), target(), "etl")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(!o.complete);
    assert!(
        o.gaps[0].contains("only the queries user etl may view"),
        "{:?}",
        o.gaps
    );
    // etl sees its own two unfinished queries only
    assert_eq!(value(&o, "trino_queries_active"), 2.0);
    let f: TrinoQueriesFact = o.facts.get().unwrap().unwrap();
    assert!(f.view_may_be_partial);
    assert!(f.queries.iter().all(|q| q.user == "etl"));
    // an admin declared as seeing everything: complete, all four
    let o = TrinoQueries::new(client(&t), target(), "admin")
        .full_view(true)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(o.complete);
    assert_eq!(value(&o, "trino_queries_active"), 4.0);
}

#[tokio::test]
async fn top_k_and_sql_truncation_bound_the_fact() {
    let t = FakeTrino::start().await.unwrap();
    for i in 0..10u64 {
        t.add_query(
            QuerySpec::new("u", &format!("SELECT {} FROM t", "x, ".repeat(100)))
                .memory_bytes(i * MB),
        );
    }
    let o = TrinoQueries::new(client(&t), target(), "rb")
        .full_view(true)
        .top_k(3)
        .sql_limit(20)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    let f: TrinoQueriesFact = o.facts.get().unwrap().unwrap();
    assert!(f.truncated);
    assert_eq!(f.active, 10);
    let mem: Vec<f64> = f.queries.iter().map(|q| q.memory_bytes).collect();
    assert_eq!(mem, vec![(9 * MB) as f64, (8 * MB) as f64, (7 * MB) as f64]);
    assert_eq!(
        f.queries[0].query.chars().count(),
        21,
        "{}",
        f.queries[0].query
    );
    assert_eq!(o.samples_named("trino_query_memory_bytes").count(), 3);
}

#[tokio::test]
async fn sql_probe_follows_next_uri_and_collects_rows() {
    let t = FakeTrino::start().await.unwrap();
    let sql = "SELECT dt, count(*) AS cnt FROM lake.orders GROUP BY dt ORDER BY dt";
    t.script_statement(
        sql,
        StatementResult::rows(
            &[("dt", "date"), ("cnt", "bigint")],
            vec![
                vec![json!("2026-12-01"), json!(1200)],
                vec![json!("2026-12-02"), json!(1350)],
                vec![json!("2026-12-03"), json!(980)],
            ],
        )
        .page_size(2),
    );
    let o = TrinoSql::new(client(&t), target(), "rb-check", sql)
        .catalog("lake")
        .schema("sales")
        .metric("orders_per_day", "cnt", &["dt"])
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(o.complete, "{:?}", o.gaps);
    assert_eq!(value(&o, "trino_sql_rows"), 3.0);
    let per: Vec<(String, f64)> = o
        .samples_named("orders_per_day")
        .map(|s| (s.labels["dt"].clone(), s.value))
        .collect();
    assert_eq!(
        per,
        vec![
            ("2026-12-01".into(), 1200.0),
            ("2026-12-02".into(), 1350.0),
            ("2026-12-03".into(), 980.0)
        ]
    );
    let f: TrinoSqlResult = o.facts.get().unwrap().unwrap();
    assert_eq!(
        f.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["dt", "cnt"]
    );
    assert_eq!(f.columns[1].kind, "bigint");
    assert_eq!(f.rows.len(), 3);
    assert!(!f.truncated);
    let seen = t.statements();
    assert_eq!(seen[0].query_id, f.query_id);
    assert_eq!(seen[0].user, "rb-check");
    assert_eq!(seen[0].pages_served, 2);
    let post = &t.requests().matching("POST", "/v1/statement")[0];
    assert_eq!(post.text(), sql);
    assert_eq!(post.header("x-trino-catalog"), Some("lake"));
    assert_eq!(post.header("x-trino-schema"), Some("sales"));
    // queued page + two data pages
    assert_eq!(t.requests().matching("GET", "/v1/statement/**").len(), 2);
}

#[tokio::test]
async fn sql_errors_are_rejected_with_trinos_name_and_message() {
    let t = FakeTrino::start().await.unwrap();
    t.script_statement(
        "SELECT nope FROM lake.orders",
        StatementResult::error(
            TrinoErrorCode::new(47, "COLUMN_NOT_FOUND", "USER_ERROR"),
            "line 1:8: Column 'nope' cannot be resolved",
        ),
    );
    let e = TrinoSql::new(client(&t), target(), "rb", "SELECT nope FROM lake.orders")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(
        e.message.contains(
            "COLUMN_NOT_FOUND (47, USER_ERROR): line 1:8: Column 'nope' cannot be resolved"
        ),
        "{e}"
    );
    // a metric on a column the result does not have is a configuration error
    t.script_statement(
        "SELECT 1 AS one",
        StatementResult::rows(&[("one", "integer")], vec![vec![json!(1)]]),
    );
    let e = TrinoSql::new(client(&t), target(), "rb", "SELECT 1 AS one")
        .metric("m", "two", &[])
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn sql_results_past_the_row_bound_are_abandoned_and_incomplete() {
    let t = FakeTrino::start().await.unwrap();
    t.script_statement(
        "SELECT n FROM big",
        StatementResult::rows(
            &[("n", "integer")],
            (0..50).map(|i| vec![json!(i)]).collect(),
        )
        .page_size(10),
    );
    let o = TrinoSql::new(client(&t), target(), "rb", "SELECT n FROM big")
        .max_rows(15)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(!o.complete);
    assert_eq!(value(&o, "trino_sql_rows"), 15.0);
    let f: TrinoSqlResult = o.facts.get().unwrap().unwrap();
    assert!(f.truncated);
    assert_eq!(f.rows.len(), 15);
    assert_eq!(t.requests().matching("DELETE", "/v1/statement/**").len(), 1);
    assert_eq!(t.statements()[0].state, QueryState::Failed);
}

#[tokio::test]
async fn a_jwt_is_sent_as_bearer_and_never_shown() {
    let t = FakeTrino::start().await.unwrap();
    let c = ReqwestClient::builder(t.base_url())
        .auth(HttpAuth::Bearer(Secret::new("eyJ.jwt.sig")))
        .build()
        .unwrap();
    let p = TrinoQueries::new(c, target(), "rb").full_view(true);
    p.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert!(!format!("{p:?}").contains("eyJ.jwt.sig"));
    assert_eq!(
        t.requests().matching("GET", "/v1/query")[0].header("authorization"),
        Some("Bearer eyJ.jwt.sig")
    );
}

#[tokio::test]
async fn fault_matrix() {
    check_matrix(
        "trino",
        &["queries", "sql", "sql_page"],
        &[
            ("queries", "unauthorized_401"),
            ("sql", "query_error"),
            ("sql", "not_scripted"),
        ],
        |probe, fault| async move {
            let t = cluster().await;
            t.script_statement(
                "SELECT 1",
                StatementResult::rows(&[("_col0", "integer")], vec![vec![json!(1)]]),
            );
            t.script_statement(
                "SELECT x",
                StatementResult::syntax_error("line 1:8: Column 'x' cannot be resolved"),
            );
            let cx = || ctx(Duration::from_secs(5));
            match (probe.as_str(), fault.as_str()) {
                ("queries", "unauthorized_401") => {
                    // over HTTPS with a password or JWT authenticator, bad credentials are a 401
                    t.faults()
                        .inject("GET", "/v1/query", rb_testkit::http::Fault::Status(401));
                    kind_of(
                        &TrinoQueries::new(client(&t), target(), "rb")
                            .observe(&cx())
                            .await,
                    )
                }
                ("sql", "query_error") => kind_of(
                    &TrinoSql::new(client(&t), target(), "rb", "SELECT x")
                        .observe(&cx())
                        .await,
                ),
                ("sql", "not_scripted") => kind_of(
                    &TrinoSql::new(client(&t), target(), "rb", "SELECT 2")
                        .observe(&cx())
                        .await,
                ),
                ("queries", f) => {
                    let p = TrinoQueries::new(client(&t), target(), "rb").full_view(true);
                    inject_and_observe(
                        &t,
                        "GET",
                        "/v1/query",
                        f,
                        |c| async move { p.observe(&c).await },
                    )
                    .await
                }
                ("sql", f) => {
                    let p = TrinoSql::new(client(&t), target(), "rb", "SELECT 1");
                    inject_and_observe(&t, "POST", "/v1/statement", f, |c| async move {
                        p.observe(&c).await
                    })
                    .await
                }
                ("sql_page", f) => {
                    let p = TrinoSql::new(client(&t), target(), "rb", "SELECT 1");
                    if f == "refused" {
                        // the coordinator goes away between the submission and the first page: the
                        // kept-alive connection dies under the next request (hyper: "connection closed
                        // before message completed"), which the client cannot tell from an answer cut
                        // short — a broken answer, not a refused connection
                        let c = RefuseAfterFirst {
                            inner: client(&t),
                            fake: &t,
                            sent: AtomicUsize::new(0),
                        };
                        return kind_of(
                            &TrinoSql::new(c, target(), "rb", "SELECT 1")
                                .observe(&cx())
                                .await,
                        );
                    }
                    inject_and_observe(&t, "GET", "/v1/statement/**", f, |c| async move {
                        p.observe(&c).await
                    })
                    .await
                }
                other => panic!("no such row {other:?}"),
            }
        },
    )
    .await;
}

/// Forwards to reqwest; after the first answer, the fake refuses connections.
#[derive(Debug)]
struct RefuseAfterFirst<'a> {
    inner: ReqwestClient,
    fake: &'a FakeTrino,
    sent: AtomicUsize,
}

#[async_trait]
impl HttpClient for RefuseAfterFirst<'_> {
    fn base_url(&self) -> &str {
        self.inner.base_url()
    }
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let r = self.inner.send(request).await;
        if self.sent.fetch_add(1, Ordering::SeqCst) == 0 {
            self.fake.refuse_connections();
        }
        r
    }
}
