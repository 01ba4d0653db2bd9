//! The fake Trino coordinator, exercised through reqwest as rb's probes and actions use it.

// Test helpers outside #[test] functions unwrap and panic too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_fault_kinds, assert_same_shape, client, FaultCheck};
use rb_testkit::http::trino::{FakeTrino, QuerySpec, QueryState, TrinoErrorCode};
use serde_json::Value;

const INFO_REF: &str = include_str!("../fixtures/trino/info_derived.json");
const QUERY_LIST_REF: &str = include_str!("../fixtures/trino/query_list_item_derived.json");

#[tokio::test]
async fn info_is_public_and_shaped_like_trino() {
    let trino = FakeTrino::start().await.unwrap();
    let resp = client()
        .get(format!("{}/v1/info", trino.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_same_shape(&serde_json::from_str(INFO_REF).unwrap(), &body);
    assert_eq!(body["starting"], false);
    assert_eq!(body["coordinator"], true);
    assert_eq!(body["nodeVersion"]["version"], "446");

    trino.set_starting(true);
    let body: Value = client()
        .get(format!("{}/v1/info", trino.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["starting"], true);

    let state: Value = client()
        .get(format!("{}/v1/info/state", trino.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state, "ACTIVE");
    let c = client();
    let put = |body: &'static str| {
        c.put(format!("{}/v1/info/state", trino.base_url()))
            .header("X-Trino-User", "admin")
            .header("Content-Type", "application/json")
            .body(body)
    };
    let r = put("\"ACTIVE\"").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "Invalid state transition to ACTIVE"
    );
    assert_eq!(put("\"SHUTTING_DOWN\"").send().await.unwrap().status(), 200);
    let state: Value = client()
        .get(format!("{}/v1/info/state", trino.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state, "SHUTTING_DOWN");
}

#[tokio::test]
async fn query_list_needs_a_user_and_matches_the_reference_shape() {
    let trino = FakeTrino::start().await.unwrap();
    let running = trino.add_query(
        QuerySpec::new("alice", "SELECT * FROM tpch.sf100.lineitem")
            .cpu(Duration::from_secs(40))
            .memory_bytes(12 * 1024 * 1024)
            .peak_memory_bytes(20 * 1024 * 1024)
            .age(Duration::from_millis(12_310)),
    );
    let queued = trino.add_simple("bob", "SELECT 1", QueryState::Queued, Duration::ZERO, 0);
    assert_eq!(trino.queued_count(), 1);
    assert_eq!(trino.running_count(), 1);

    // No user: Trino's insecure authenticator answers 401 with a Basic challenge and a text body.
    let resp = client()
        .get(format!("{}/v1/query", trino.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"Trino\"");
    assert_eq!(
        resp.text().await.unwrap(),
        "Basic authentication or X-Trino-Original-User or X-Trino-User must be sent"
    );

    let resp = client()
        .get(format!("{}/v1/query", trino.base_url()))
        .header("X-Trino-User", "ops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.unwrap();
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 2);
    // The RUNNING query has the reference item's exact shape (no endTime, null errorType/errorCode).
    let item = items
        .iter()
        .find(|q| q["queryId"] == running.as_str())
        .unwrap();
    let reference: Value = serde_json::from_str(QUERY_LIST_REF).unwrap();
    assert_same_shape(&reference[0], item);
    assert_eq!(item["state"], "RUNNING");
    assert_eq!(item["session"]["user"], "alice");
    assert_eq!(item["query"], "SELECT * FROM tpch.sf100.lineitem");
    assert_eq!(item["queryStats"]["totalCpuTime"], "40.00s");
    assert_eq!(item["queryStats"]["userMemoryReservation"], "12MB");
    assert_eq!(item["queryStats"]["peakUserMemoryReservation"], "20MB");
    assert!(item["queryStats"]["elapsedTime"]
        .as_str()
        .unwrap()
        .ends_with('s'));
    assert!(item["self"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v1/query/{running}")));
    // queryId format: yyyyMMdd_HHmmss_NNNNN_xxxxx
    let parts: Vec<&str> = running.split('_').collect();
    assert_eq!(parts.len(), 4, "{running}");
    assert_eq!(
        (
            parts[0].len(),
            parts[1].len(),
            parts[2].len(),
            parts[3].len()
        ),
        (8, 6, 5, 5)
    );

    // state filter is case-insensitive
    let list: Value = client()
        .get(format!("{}/v1/query?state=queued", trino.base_url()))
        .header("X-Trino-User", "ops")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["queryId"], queued.as_str());
    assert_eq!(list[0]["state"], "QUEUED");
    assert_eq!(list[0]["scheduled"], false);

    // An unknown state is not validated by Trino: a server error, not a clean 400.
    let resp = client()
        .get(format!("{}/v1/query?state=PAUSED", trino.base_url()))
        .header("X-Trino-User", "ops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);

    // queryState lists unfinished queries only
    trino.set_state(&running, QueryState::Finished);
    let states: Value = client()
        .get(format!("{}/v1/queryState", trino.base_url()))
        .header("X-Trino-User", "ops")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(states.as_array().unwrap().len(), 1);
    assert_eq!(states[0]["queryState"], "QUEUED");
    assert_eq!(states[0]["user"], "bob");
}

#[tokio::test]
async fn kill_requires_a_user_and_ends_the_query_administratively_killed() {
    let trino = FakeTrino::start().await.unwrap();
    let id = trino.add_simple(
        "etl",
        "INSERT INTO t SELECT * FROM big",
        QueryState::Queued,
        Duration::ZERO,
        0,
    );
    let url = format!("{}/v1/query/{id}/killed", trino.base_url());

    let resp = client().put(&url).body("backlog").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        trino.query(&id).unwrap().state,
        QueryState::Queued,
        "a refused kill changes nothing"
    );

    let resp = client()
        .put(&url)
        .header("X-Trino-User", "oncall")
        .body("Trino backlog: rb")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(resp.text().await.unwrap().is_empty());
    let q = trino.query(&id).unwrap();
    assert_eq!(q.state, QueryState::Failed);
    assert_eq!(
        q.error_code,
        Some(TrinoErrorCode::administratively_killed())
    );
    assert_eq!(
        q.failure_message.as_deref(),
        Some("Query killed. Message: Trino backlog: rb")
    );
    assert_eq!(trino.queued_count(), 0);

    // The query as the API shows it now.
    let body: Value = client()
        .get(format!("{}/v1/query/{id}", trino.base_url()))
        .header("X-Trino-User", "oncall")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["state"], "FAILED");
    assert_eq!(body["errorType"], "USER_ERROR");
    assert_eq!(body["errorCode"]["name"], "ADMINISTRATIVELY_KILLED");
    assert_eq!(body["errorCode"]["code"], 38);
    assert_eq!(body["errorCode"]["type"], "USER_ERROR");
    assert_eq!(
        body["failureInfo"]["message"],
        "Query killed. Message: Trino backlog: rb"
    );
    assert!(body["queryStats"]["endTime"].is_string());

    // Already finished: 409. Unknown: 410.
    let resp = client()
        .put(&url)
        .header("X-Trino-User", "oncall")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let resp = client()
        .put(format!(
            "{}/v1/query/20240101_000000_00099_zzzzz/killed",
            trino.base_url()
        ))
        .header("X-Trino-User", "oncall")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    let resp = client()
        .get(format!(
            "{}/v1/query/20240101_000000_00099_zzzzz",
            trino.base_url()
        ))
        .header("X-Trino-User", "oncall")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);

    // The record proves the exact call: method, path, header, body.
    let kills = trino.requests().matching("PUT", "/v1/query/*/killed");
    assert_eq!(kills.len(), 4);
    let accepted = &kills[1];
    assert_eq!(accepted.path, format!("/v1/query/{id}/killed"));
    assert_eq!(accepted.header("X-Trino-User"), Some("oncall"));
    assert_eq!(accepted.text(), "Trino backlog: rb");
    assert_eq!(kills[0].header("X-Trino-User"), None);
}

#[tokio::test]
async fn kill_without_message_and_preempt() {
    let trino = FakeTrino::start().await.unwrap();
    let a = trino.add_query(QuerySpec::new("etl", "SELECT 1"));
    let b = trino.add_query(QuerySpec::new("etl", "SELECT 2"));
    let resp = client()
        .put(format!("{}/v1/query/{a}/killed", trino.base_url()))
        .header("X-Trino-User", "etl")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        trino.query(&a).unwrap().failure_message.as_deref(),
        Some("Query killed. No message provided.")
    );
    let resp = client()
        .put(format!("{}/v1/query/{b}/preempted", trino.base_url()))
        .header("X-Trino-User", "etl")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        trino.query(&b).unwrap().error_code,
        Some(TrinoErrorCode::administratively_preempted())
    );
}

#[tokio::test]
async fn cancel_is_idempotent_204_and_user_canceled() {
    let trino = FakeTrino::start().await.unwrap();
    let id = trino.add_query(QuerySpec::new("alice", "SELECT 1"));
    for _ in 0..2 {
        let resp = client()
            .delete(format!("{}/v1/query/{id}", trino.base_url()))
            .header("X-Trino-User", "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    let q = trino.query(&id).unwrap();
    assert_eq!(q.state, QueryState::Failed);
    assert_eq!(q.error_code, Some(TrinoErrorCode::user_canceled()));
    let resp = client()
        .delete(format!("{}/v1/query/unknown", trino.base_url()))
        .header("X-Trino-User", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = client()
        .delete(format!("{}/v1/query/{id}", trino.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn basic_auth_user_without_password_and_owner_access_control() {
    let trino = FakeTrino::start().await.unwrap();
    let id = trino.add_query(QuerySpec::new("alice", "SELECT 1"));
    trino.add_query(QuerySpec::new("bob", "SELECT 2"));

    // Basic auth with a user and no password is accepted over HTTP; with a password it is not.
    let list: Value = client()
        .get(format!("{}/v1/query", trino.base_url()))
        .basic_auth("alice", None::<&str>)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let resp = client()
        .get(format!("{}/v1/query", trino.base_url()))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.text().await.unwrap(),
        "Password not allowed for insecure authentication"
    );

    trino.restrict_to_owners(&["admin"]);
    let list: Value = client()
        .get(format!("{}/v1/query", trino.base_url()))
        .header("X-Trino-User", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "alice sees only her own query"
    );
    let resp = client()
        .put(format!("{}/v1/query/{id}/killed", trino.base_url()))
        .header("X-Trino-User", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().is_empty());
    assert_eq!(trino.query(&id).unwrap().state, QueryState::Running);
    let resp = client()
        .put(format!("{}/v1/query/{id}/killed", trino.base_url()))
        .header("X-Trino-User", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn ui_stats_needs_a_web_ui_session_and_v1_cluster_does_not_exist() {
    let trino = FakeTrino::start().await.unwrap();
    let resp = client()
        .get(format!("{}/ui/api/stats", trino.base_url()))
        .header("X-Trino-User", "ops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Trino-Form-Login");
    let resp = client()
        .get(format!("{}/v1/cluster", trino.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn faults_reach_the_client() {
    let trino = FakeTrino::start().await.unwrap();
    trino.add_query(QuerySpec::new("alice", "SELECT 1"));
    let boom = "{\"error\":\"boom\"}";
    assert_fault_kinds(
        &trino,
        FaultCheck::get("/v1/query")
            .headers(&[("X-Trino-User", "ops")])
            .answer(500, boom),
    )
    .await;
    assert_fault_kinds(&trino, FaultCheck::get("/v1/info").answer(500, boom)).await;
}

#[tokio::test]
async fn statements_answer_scripted_rows_page_by_page_through_next_uri() {
    use rb_testkit::http::trino::StatementResult;
    use serde_json::json;
    let trino = FakeTrino::start().await.unwrap();
    trino.script_statement(
        "SELECT dt, count(*) AS cnt FROM orders GROUP BY dt",
        StatementResult::rows(
            &[("dt", "date"), ("cnt", "bigint")],
            vec![
                vec![json!("2026-12-01"), json!(10)],
                vec![json!("2026-12-02"), json!(20)],
                vec![json!("2026-12-03"), json!(30)],
            ],
        )
        .page_size(2),
    );
    let c = client();
    // without a user: 401 like every authenticated resource
    let r = c
        .post(format!("{}/v1/statement", trino.base_url()))
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let first: Value = c
        .post(format!("{}/v1/statement", trino.base_url()))
        .header("X-Trino-User", "rb")
        .body("SELECT dt, count(*) AS cnt\n  FROM orders GROUP BY dt;")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["stats"]["state"], "QUEUED");
    assert!(first.get("columns").is_none());
    let mut next = first["nextUri"].as_str().unwrap().to_string();
    assert!(next.contains("/v1/statement/queued/"), "{next}");
    let mut rows = Vec::new();
    let mut pages = 0;
    let last;
    loop {
        let page: Value = c.get(&next).send().await.unwrap().json().await.unwrap();
        pages += 1;
        assert_eq!(page["columns"][1]["name"], "cnt");
        assert_eq!(page["columns"][1]["type"], "bigint");
        if let Some(d) = page["data"].as_array() {
            rows.extend(d.iter().cloned());
        }
        // a replayed token is refused
        assert_eq!(c.get(&next).send().await.unwrap().status(), 404);
        match page["nextUri"].as_str() {
            Some(n) => next = n.to_string(),
            None => {
                last = page;
                break;
            }
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(
        rows,
        vec![
            json!(["2026-12-01", 10]),
            json!(["2026-12-02", 20]),
            json!(["2026-12-03", 30])
        ]
    );
    assert_eq!(last["stats"]["state"], "FINISHED");
    let seen = trino.statements();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].user, "rb");
    assert_eq!(seen[0].state, QueryState::Finished);
    assert_eq!(seen[0].pages_served, 2);
}

#[tokio::test]
async fn statements_fail_with_trino_errors_and_can_be_abandoned() {
    use rb_testkit::http::trino::StatementResult;
    use serde_json::json;
    let trino = FakeTrino::start().await.unwrap();
    trino.script_statement(
        "SELECT nope FROM orders",
        StatementResult::error(
            TrinoErrorCode::new(47, "COLUMN_NOT_FOUND", "USER_ERROR"),
            "line 1:8: Column 'nope' cannot be resolved",
        ),
    );
    trino.script_statement(
        "SELECT n FROM big",
        StatementResult::rows(
            &[("n", "integer")],
            (0..10).map(|i| vec![json!(i)]).collect(),
        )
        .page_size(3),
    );
    let c = client();
    let post = |sql: &'static str| {
        let c = c.clone();
        let url = format!("{}/v1/statement", trino.base_url());
        async move {
            let v: Value = c
                .post(url)
                .header("X-Trino-User", "rb")
                .body(sql)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    for (sql, name) in [
        ("SELECT nope FROM orders", "COLUMN_NOT_FOUND"),
        ("SELECT 42", "NOT_SUPPORTED"),
    ] {
        let first = post(sql).await;
        let page: Value = c
            .get(first["nextUri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["stats"]["state"], "FAILED");
        assert_eq!(page["error"]["errorName"], name);
        assert!(page.get("nextUri").is_none());
    }
    // a client that stops reading abandons the query with DELETE nextUri
    let first = post("SELECT n FROM big").await;
    let page: Value = c
        .get(first["nextUri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = page["nextUri"].as_str().unwrap();
    assert_eq!(c.delete(next).send().await.unwrap().status(), 204);
    assert_eq!(c.get(next).send().await.unwrap().status(), 404);
    let big = trino
        .statements()
        .into_iter()
        .find(|s| s.sql == "SELECT n FROM big")
        .unwrap();
    assert_eq!(big.state, QueryState::Failed);
}

#[tokio::test]
async fn fully_blocked_queries_say_so() {
    let trino = FakeTrino::start().await.unwrap();
    trino.add_query(QuerySpec::new("etl", "SELECT 1").fully_blocked(true));
    let list: Value = client()
        .get(format!("{}/v1/query", trino.base_url()))
        .header("X-Trino-User", "etl")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["queryStats"]["fullyBlocked"], true);
    assert_eq!(
        list[0]["queryStats"]["blockedReasons"][0],
        "WAITING_FOR_MEMORY"
    );
}
