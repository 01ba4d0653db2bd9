//! Helpers shared by the HTTP fake tests (`mod common;`); each test file uses a part of them.

// Not every test file uses every helper; helpers unwrap and panic like the tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rb_testkit::http::{FakeHttp, Fault};
use rb_testkit::shape::ShapeRules;
use serde_json::Value;

/// A client with a 5 s timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Same field names with the same JSON types as the reference (values may differ); the failure
/// lists every difference.
#[track_caller]
pub fn assert_same_shape(reference: &Value, fake: &Value) {
    let diffs = ShapeRules::new()
        .names("reference", "fake")
        .diff(reference, fake);
    assert!(
        diffs.is_empty(),
        "shape differs from the reference:\n{}\nfake: {fake:#}",
        diffs.join("\n")
    );
}

/// One `GET` endpoint of a fake, for [`assert_fault_kinds`].
pub struct FaultCheck<'a> {
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a [(&'a str, &'a str)],
    status: u16,
    body: &'a str,
    check_body: bool,
}

impl<'a> FaultCheck<'a> {
    /// `GET {path}`; the injected `Fault::StatusBody` is `500 {}` and only its status is checked.
    pub fn get(path: &'a str) -> Self {
        Self {
            path,
            query: None,
            headers: &[],
            status: 500,
            body: "{}",
            check_body: false,
        }
    }

    /// Ask `{path}?{query}` (the `?` stays even when `query` is empty).
    pub fn query(mut self, query: &'a str) -> Self {
        self.query = Some(query);
        self
    }

    /// Send these headers with every request.
    pub fn headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }

    /// Inject `Fault::StatusBody(status, body)` and check that both reach the client verbatim.
    pub fn answer(mut self, status: u16, body: &'a str) -> Self {
        self.status = status;
        self.body = body;
        self.check_body = true;
        self
    }
}

/// Every fault kind gives the client the error it would get from a misbehaving server: status,
/// status with body, malformed and truncated body, reset, latency and hang (timeouts), then the
/// normal answer (200) again; refused connections until `restore`.
pub async fn assert_fault_kinds(fake: &FakeHttp, check: FaultCheck<'_>) {
    let path = check.path;
    let url = match check.query {
        Some(q) => format!("{}{path}?{q}", fake.base_url()),
        None => format!("{}{path}", fake.base_url()),
    };
    let get = |timeout_ms: u64| {
        let mut rb = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .build()
            .unwrap()
            .get(&url);
        for (k, v) in check.headers {
            rb = rb.header(*k, *v);
        }
        rb
    };
    let faults = fake.faults();

    faults.inject("GET", path, Fault::Status(503)).times(1);
    assert_eq!(get(2000).send().await.unwrap().status(), 503);

    faults
        .inject(
            "GET",
            path,
            Fault::StatusBody(check.status, check.body.to_string()),
        )
        .times(1);
    let r = get(2000).send().await.unwrap();
    assert_eq!(r.status(), check.status);
    if check.check_body {
        assert_eq!(r.text().await.unwrap(), check.body);
    }

    faults.inject("GET", path, Fault::MalformedBody).times(1);
    let err = get(2000)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap_err();
    assert!(err.is_decode(), "{err:?}");

    for fault in [Fault::TruncatedBody, Fault::Reset] {
        faults.inject("GET", path, fault.clone()).times(1);
        let failed = match get(2000).send().await {
            Err(_) => true,
            Ok(resp) => resp.bytes().await.is_err(),
        };
        assert!(failed, "{fault:?} must fail the exchange");
    }

    faults
        .inject("GET", path, Fault::Latency(Duration::from_millis(400)))
        .times(1);
    let err = get(100).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    faults.inject("GET", path, Fault::Hang).times(1);
    let err = get(150).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    // After the limited faults, the normal answer is back.
    assert_eq!(get(2000).send().await.unwrap().status(), 200);

    fake.refuse_connections();
    let err = get(500).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    fake.restore().await.unwrap();
    assert_eq!(get(2000).send().await.unwrap().status(), 200);
}
