//! The fake Nessie through a real HTTP client: every endpoint rb uses, the v2 reference syntax,
//! write-conflict semantics, merges, health, faults, the request record, and the shape of every
//! answer against the reference bodies in `fixtures/nessie/`.

// Helpers shared by the tests below may unwrap and panic like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rb_testkit::http::nessie::{FakeNessie, NO_ANCESTOR_HASH};
use rb_testkit::http::Fault;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/nessie/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Fields whose object value is a map with data keys (compared as `*`).
const MAP_FIELDS: &[&str] = &["allProperties"];

/// Every path (`a.b[].c`) with the set of JSON types seen there (array elements merged).
fn shape(v: &Value) -> BTreeMap<String, BTreeSet<&'static str>> {
    fn walk(v: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<&'static str>>) {
        let key = if path.is_empty() {
            "$".to_string()
        } else {
            path.to_string()
        };
        out.entry(key).or_default().insert(json_type(v));
        let is_map = MAP_FIELDS
            .iter()
            .any(|f| path == *f || path.ends_with(&format!(".{f}")));
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let k = if is_map { "*" } else { k.as_str() };
                    let p = if path.is_empty() {
                        k.to_string()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(c, &p, out);
                }
            }
            Value::Array(a) => {
                for c in a {
                    walk(c, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(v, "", &mut out);
    out
}

/// Differences between a reference body and the fake's: every path of the reference must exist in
/// the fake with (at least) the same JSON types; a path only in the fake is allowed only when one
/// of its segments is listed in `extra` (documented additions of the real server).
fn shape_diff(reference: &Value, fake: &Value, extra: &[&str]) -> Vec<String> {
    let (r, f) = (shape(reference), shape(fake));
    let mut diffs = Vec::new();
    for (path, types) in &r {
        match f.get(path) {
            None => diffs.push(format!("only in reference: {path} {types:?}")),
            Some(ft) if !types.is_subset(ft) => diffs.push(format!(
                "types differ at {path}: reference {types:?}, fake {ft:?}"
            )),
            _ => {}
        }
    }
    for (path, types) in &f {
        let allowed = path
            .split('.')
            .any(|seg| extra.contains(&seg.trim_end_matches("[]")));
        if !r.contains_key(path) && !allowed {
            diffs.push(format!("only in fake: {path} {types:?}"));
        }
    }
    diffs
}

#[track_caller]
fn assert_shape(what: &str, reference: &Value, fake: &Value, extra: &[&str]) {
    let d = shape_diff(reference, fake, extra);
    assert!(
        d.is_empty(),
        "{what}: shape differs from the reference\n{}\nfake: {fake:#}",
        d.join("\n")
    );
}

/// The OpenAPI examples use V1 commit-meta names; rewrite them to what a v2 server sends.
fn v2_view(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, c) in m {
                if k == "commitMeta" || k == "commitMetaOfHEAD" {
                    out.insert(k.clone(), v2_commit_meta(c));
                } else if k == "conflict" {
                    let mut c = v2_view(c);
                    if let Some(t) = c.as_object_mut().and_then(|o| o.remove("type")) {
                        c["conflictType"] = t;
                    }
                    out.insert(k.clone(), c);
                } else {
                    out.insert(k.clone(), v2_view(c));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(v2_view).collect()),
        other => other.clone(),
    }
}

fn v2_commit_meta(meta: &Value) -> Value {
    let mut m = meta.as_object().cloned().unwrap_or_default();
    let list = |v: Option<Value>| match v {
        Some(Value::String(s)) => json!([s]),
        _ => json!([]),
    };
    let author = m.remove("author");
    m.insert("authors".into(), list(author));
    let signed = m.remove("signedOffBy");
    m.insert("allSignedOffBy".into(), list(signed));
    if let Some(Value::Object(p)) = m.remove("properties") {
        if !p.is_empty() {
            let all: serde_json::Map<String, Value> =
                p.into_iter().map(|(k, v)| (k, json!([v]))).collect();
            m.insert("allProperties".into(), Value::Object(all));
        }
    }
    Value::Object(m)
}

struct Client2 {
    http: Client,
    base: String,
}

impl Client2 {
    fn new(nessie: &FakeNessie) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("Nessie-Client-Spec", "2".parse().unwrap());
        Self {
            http: Client::builder().default_headers(headers).build().unwrap(),
            base: nessie.api_url(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

#[track_caller]
fn assert_error(resp: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(resp.0.as_u16(), status, "{:#}", resp.1);
    assert_eq!(resp.1["errorCode"], code, "{:#}", resp.1);
    assert_eq!(resp.1["status"], status);
    assert!(resp.1["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(resp.1["reason"].is_string());
}

fn iceberg(snapshot: u64) -> Value {
    json!({
        "type": "ICEBERG_TABLE",
        "metadataLocation": format!("s3://warehouse/db/t/metadata/{snapshot}.metadata.json"),
        "snapshotId": snapshot, "schemaId": 0, "specId": 0, "sortOrderId": 0
    })
}

// ---------------------------------------------------------------------------------------------
// config, references
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn config_answers_like_a_v2_server() {
    let nessie = FakeNessie::start().await.unwrap();
    let c = Client2::new(&nessie);
    let (s, body) = c.get("/config").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["defaultBranch"], "main");
    assert_eq!(body["maxSupportedApiVersion"], 2);
    assert_eq!(body["actualApiVersion"], 2);
    assert_eq!(body["noAncestorHash"], NO_ANCESTOR_HASH);
    assert_shape(
        "config",
        &fixture("config_v2.json"),
        &body,
        &[
            "actualApiVersion",
            "noAncestorHash",
            "repositoryCreationTimestamp",
            "oldestPossibleCommitTimestamp",
        ],
    );
}

#[tokio::test]
async fn empty_repository_main_is_at_no_ancestor() {
    let nessie = FakeNessie::start().await.unwrap();
    let c = Client2::new(&nessie);
    let (s, body) = c.get("/trees/main").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body["reference"],
        json!({"type": "BRANCH", "name": "main", "hash": NO_ANCESTOR_HASH})
    );
    let (_, default) = c.get("/trees/-").await;
    assert_eq!(default, body);
    let (_, log) = c.get("/trees/main/history").await;
    assert_eq!(log["logEntries"], json!([]));
}

#[tokio::test]
async fn references_list_get_and_fetch_all_have_the_real_shapes() {
    let nessie = FakeNessie::start().await.unwrap();
    nessie.commit("main", &["db.a"]).unwrap();
    nessie.create_branch("dev2", "main").unwrap();
    nessie.create_branch("dev", "main").unwrap();
    nessie.commit("dev", &["db.b"]).unwrap();
    nessie.commit("main", &["db.c"]).unwrap();
    nessie.commit("main", &["db.d"]).unwrap();
    nessie.create_tag("testTag1", "main").unwrap();
    nessie.create_tag("exampleTag", "dev").unwrap();
    let c = Client2::new(&nessie);

    let (s, list) = c.get("/trees").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["references"].as_array().unwrap().len(), 5);
    assert_shape("GET /trees", &fixture("trees_list.json"), &list, &[]);

    let (_, all) = c.get("/trees?fetch=ALL").await;
    assert_shape(
        "GET /trees?fetch=ALL",
        &v2_view(&fixture("trees_list_fetch_all.json")),
        &all,
        &["parentCommitHashes"],
    );
    let dev = all["references"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "dev")
        .unwrap();
    assert_eq!(dev["metadata"]["numCommitsAhead"], 1);
    assert_eq!(dev["metadata"]["numCommitsBehind"], 2);
    assert_eq!(dev["metadata"]["numTotalCommits"], 2);
    assert_eq!(
        dev["metadata"]["commitMetaOfHEAD"]["message"],
        "update db.b"
    );

    let (_, one) = c.get("/trees/dev").await;
    assert_shape(
        "GET /trees/{ref}",
        &fixture("tree_get_single.json"),
        &one,
        &[],
    );
    let (_, one_all) = c.get("/trees/main?fetch=ALL").await;
    assert_shape(
        "GET /trees/{ref}?fetch=ALL",
        &v2_view(&fixture("tree_get_single_fetch_all.json")),
        &one_all,
        &[
            "parentCommitHashes",
            "numCommitsAhead",
            "numCommitsBehind",
            "commonAncestorHash",
            "numTotalCommits",
        ],
    );

    // paging
    let (_, page) = c.get("/trees?max-records=2").await;
    assert_eq!(page["hasMore"], true);
    let token = page["token"].as_str().unwrap().to_string();
    let (_, rest) = c
        .get(&format!("/trees?max-records=10&page-token={token}"))
        .await;
    assert_eq!(
        page["references"].as_array().unwrap().len() + rest["references"].as_array().unwrap().len(),
        5
    );
    assert_eq!(rest["hasMore"], false);
}

#[tokio::test]
async fn create_reference_from_a_hash() {
    let nessie = FakeNessie::start().await.unwrap();
    let head = nessie.commit("main", &["db.orders"]).unwrap();
    let c = Client2::new(&nessie);
    let mut body = fixture("create_reference_request_body.json");
    body["name"] = json!("main");
    body["hash"] = json!(head);
    let (s, created) = c.post("/trees?name=backup&type=BRANCH", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{created:#}");
    assert_eq!(
        created["reference"],
        json!({"type": "BRANCH", "name": "backup", "hash": head})
    );
    assert_shape(
        "POST /trees",
        &fixture("tree_get_single.json"),
        &created,
        &[],
    );
    assert_eq!(nessie.head("backup"), Some(head.clone()));

    // lower-case type, tag
    let (s, tag) = c.post("/trees?name=v1&type=tag", body.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tag["reference"]["type"], "TAG");

    // already exists
    let r = c.post("/trees?name=backup&type=BRANCH", body.clone()).await;
    assert_error(&r, 409, "REFERENCE_ALREADY_EXISTS");
    assert_eq!(r.1["message"], "Named reference 'backup' already exists.");
    // no hash
    let r = c
        .post(
            "/trees?name=x&type=BRANCH",
            json!({"type": "BRANCH", "name": "main"}),
        )
        .await;
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(r.1["message"], "Target hash must be provided.");
    // bad name
    let r = c.post("/trees?name=..bad&type=BRANCH", body.clone()).await;
    assert_error(&r, 400, "BAD_REQUEST");
    // unknown source
    body["name"] = json!("nope");
    let r = c.post("/trees?name=y&type=BRANCH", body).await;
    assert_error(&r, 404, "REFERENCE_NOT_FOUND");
    // unknown hash
    let r = c
        .post(
            "/trees?name=z&type=BRANCH",
            json!({"type": "BRANCH", "name": "main", "hash": "deadbeefdeadbeef"}),
        )
        .await;
    assert_error(&r, 404, "REFERENCE_NOT_FOUND");
}

#[tokio::test]
async fn assign_requires_the_current_hash() {
    let nessie = FakeNessie::start().await.unwrap();
    let good = nessie.commit("main", &["db.orders"]).unwrap();
    nessie.create_branch("backup", "main").unwrap();
    let bad = nessie.commit("main", &["db.orders"]).unwrap();
    let c = Client2::new(&nessie);
    let mut target = fixture("assign_reference_request_body.json");
    target["name"] = json!("backup");
    target["hash"] = json!(good);

    // stale expected hash → 409 UNEXPECTED_HASH
    let r = c
        .put(&format!("/trees/main@{good}?type=BRANCH"), target.clone())
        .await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    let conflict = &r.1["errorDetails"]["conflicts"][0];
    assert_eq!(conflict["conflictType"], "UNEXPECTED_HASH");
    assert_eq!(
        r.1["message"],
        format!("named-reference 'main' is not at expected hash '{good}', but at '{bad}'")
    );
    assert_eq!(nessie.head("main"), Some(bad.clone()));

    // no hash → 400
    let r = c.put("/trees/main?type=BRANCH", target.clone()).await;
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(r.1["message"], "Expected hash must be provided.");
    // unknown → 404
    let r = c.put(&format!("/trees/nope@{bad}"), target.clone()).await;
    assert_error(&r, 404, "REFERENCE_NOT_FOUND");
    assert_eq!(r.1["message"], "Named reference 'nope' not found");
    // bad syntax → 400
    let r = c.put("/trees/main@zz-not-hex", target.clone()).await;
    assert_error(&r, 400, "BAD_REQUEST");

    // the right hash: main goes back to the good commit
    let (s, body) = c
        .put(&format!("/trees/main@{bad}?type=BRANCH"), target)
        .await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(
        body["reference"],
        json!({"type": "BRANCH", "name": "main", "hash": good})
    );
    assert_shape(
        "PUT /trees/{ref}",
        &fixture("tree_get_single.json"),
        &body,
        &[],
    );
    assert_eq!(nessie.head("main"), Some(good));
}

#[tokio::test]
async fn error_details_only_for_spec_2_clients() {
    let nessie = FakeNessie::start().await.unwrap();
    let h1 = nessie.commit("main", &["a"]).unwrap();
    nessie.commit("main", &["a"]).unwrap();
    let plain = Client::new();
    let r = plain
        .put(format!("{}/trees/main@{h1}", nessie.api_url()))
        .json(&json!({"type": "BRANCH", "name": "main", "hash": h1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "REFERENCE_CONFLICT");
    assert_eq!(body["reason"], "Conflict");
    assert!(body.get("errorDetails").is_none(), "{body:#}");
    assert!(body["serverStackTrace"].is_null());
}

#[tokio::test]
async fn delete_reference() {
    let nessie = FakeNessie::start().await.unwrap();
    let h = nessie.commit("main", &["a"]).unwrap();
    nessie.create_branch("tmp", "main").unwrap();
    let c = Client2::new(&nessie);
    let r = c.delete(&format!("/trees/main@{h}")).await;
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(r.1["message"], "Default branch 'main' cannot be deleted.");
    let r = c.delete(&format!("/trees/tmp@{NO_ANCESTOR_HASH}")).await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    let r = c.delete("/trees/tmp").await;
    assert_error(&r, 400, "BAD_REQUEST");
    let (s, body) = c.delete(&format!("/trees/tmp@{h}?type=BRANCH")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body["reference"],
        json!({"type": "BRANCH", "name": "tmp", "hash": h})
    );
    assert_error(&c.get("/trees/tmp").await, 404, "REFERENCE_NOT_FOUND");
}

#[tokio::test]
async fn reference_syntax_name_hash_relative_and_detached() {
    let nessie = FakeNessie::start().await.unwrap();
    let h1 = nessie.commit("main", &["db.t"]).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let h2 = nessie.commit("main", &["db.t"]).unwrap();
    let h3 = nessie.commit("main", &["db.u"]).unwrap();
    let c = Client2::new(&nessie);

    // GET /trees/{ref} refuses hashes
    let r = c.get(&format!("/trees/main@{h1}")).await;
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(
        r.1["message"],
        "Hashes are not allowed when fetching a reference by name"
    );
    // bad syntax
    for bad in ["1abc", "ma..in", "main@xyz", "main~x"] {
        let r = c.get(&format!("/trees/{bad}/history")).await;
        assert_error(&r, 400, "BAD_REQUEST");
        assert!(
            r.1["message"]
                .as_str()
                .unwrap()
                .starts_with("getCommitLog.params.ref: Reference name must start with a letter"),
            "{:#}",
            r.1
        );
    }
    // unknown name, unknown hash, hash not on the branch
    assert_error(&c.get("/trees/nope").await, 404, "REFERENCE_NOT_FOUND");
    assert_error(
        &c.get("/trees/main@0123456789abcdef/history").await,
        404,
        "REFERENCE_NOT_FOUND",
    );
    nessie.create_branch("other", "main").unwrap();
    let o = nessie.commit("other", &["db.v"]).unwrap();
    let r = c.get(&format!("/trees/main@{o}/history")).await;
    assert_error(&r, 404, "REFERENCE_NOT_FOUND");

    let hist = |v: &Value| -> Vec<String> {
        v["logEntries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["commitMeta"]["hash"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, log) = c.get("/trees/main/history").await;
    assert_eq!(hist(&log), vec![h3.clone(), h2.clone(), h1.clone()]);
    let (_, log) = c.get(&format!("/trees/main@{h2}/history")).await;
    assert_eq!(hist(&log), vec![h2.clone(), h1.clone()]);
    let (_, log) = c.get("/trees/main~2/history").await;
    assert_eq!(hist(&log), vec![h1.clone()]);
    let (_, log) = c.get(&format!("/trees/@{}/history", &h2[..16])).await;
    assert_eq!(hist(&log), vec![h2.clone(), h1.clone()]);
    let (_, log) = c.get(&format!("/trees/main@{h3}^1/history")).await;
    assert_eq!(hist(&log)[0], h2);

    // *timestamp: the newest commit at or before the time of h1
    let (_, first) = c.get(&format!("/trees/main@{h1}/history")).await;
    let t1 = first["logEntries"][0]["commitMeta"]["commitTime"]
        .as_str()
        .unwrap()
        .to_string();
    let ms = time::OffsetDateTime::parse(&t1, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
        / 1_000_000;
    let (_, log) = c.get(&format!("/trees/main*{ms}/history")).await;
    assert_eq!(hist(&log), vec![h1.clone()]);
    let (_, log) = c.get(&format!("/trees/main*{t1}/history")).await;
    assert_eq!(hist(&log), vec![h1.clone()]);

    // contents through a detached ref carry a DETACHED effectiveReference
    let (s, body) = c.get(&format!("/trees/@{h1}/contents/db.t")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body["effectiveReference"],
        json!({"type": "DETACHED", "hash": h1})
    );

    // names with a slash, terminated by '@'
    nessie.create_branch("team/fix", "main").unwrap();
    let (s, body) = c.get("/trees/team%2Ffix%40/history").await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(hist(&body)[0], h3);
    let (s, _) = c.get(&format!("/trees/team/fix@{h3}/history")).await;
    assert_eq!(s, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// commits, history, contents
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn commit_operations_and_history() {
    let nessie = FakeNessie::start().await.unwrap();
    let c = Client2::new(&nessie);
    let ns = json!({"type": "PUT", "key": {"elements": ["db"]}, "content": {"type": "NAMESPACE", "elements": ["db"]}});
    let put = json!({"type": "PUT", "key": {"elements": ["db", "t"]}, "content": iceberg(1)});
    let body = json!({
        "commitMeta": {
            "message": "create db.t",
            "authors": ["alice <alice@example.com>"],
            "allSignedOffBy": ["bob"],
            "allProperties": {"application-type": ["iceberg"]}
        },
        "operations": [ns, put]
    });
    let (s, resp) = c
        .post(
            &format!("/trees/main@{NO_ANCESTOR_HASH}/history/commit"),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{resp:#}");
    let h1 = resp["targetBranch"]["hash"].as_str().unwrap().to_string();
    assert_eq!(h1.len(), 64);
    assert_eq!(resp["targetBranch"]["name"], "main");
    let added = resp["addedContents"].as_array().unwrap();
    assert_eq!(added.len(), 2);
    let table_id = added
        .iter()
        .find(|a| a["key"]["elements"] == json!(["db", "t"]))
        .unwrap()["contentId"]
        .clone();
    assert_eq!(nessie.head("main"), Some(h1.clone()));

    // the content got its id
    let (s, content) = c.get("/trees/main/contents/db.t").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(content["content"]["id"], table_id);
    assert_eq!(content["content"]["snapshotId"], 1);
    assert_eq!(
        content["effectiveReference"],
        json!({"type": "BRANCH", "name": "main", "hash": h1})
    );

    // an update needs the content id: without it, 400 (as the real server answers)
    let r = c
        .post(
            &format!("/trees/main@{h1}/history/commit"),
            json!({"commitMeta": {"message": "m"}, "operations": [{"type": "PUT", "key": {"elements": ["db", "t"]}, "content": iceberg(2)}]}),
        )
        .await;
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(
        r.1["message"],
        "New value to update existing key 'db.t' has no content ID"
    );
    let mut updated = iceberg(2);
    updated["id"] = table_id.clone();
    let (s, resp) = c
        .post(
            &format!("/trees/main@{h1}/history/commit"),
            json!({"commitMeta": {"message": "snapshot 2"}, "operations": [{"type": "PUT", "key": {"elements": ["db", "t"]}, "content": updated}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{resp:#}");
    let h2 = resp["targetBranch"]["hash"].as_str().unwrap().to_string();
    assert_eq!(resp["addedContents"], json!([]));

    // a stale expected hash touching a key changed since → 409; touching another key → accepted
    let mut stale = iceberg(3);
    stale["id"] = table_id.clone();
    let r = c
        .post(
            &format!("/trees/main@{h1}/history/commit"),
            json!({"commitMeta": {"message": "stale"}, "operations": [{"type": "PUT", "key": {"elements": ["db", "t"]}, "content": stale}]}),
        )
        .await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    assert_eq!(
        r.1["errorDetails"]["conflicts"][0]["conflictType"],
        "VALUE_DIFFERS"
    );
    assert_eq!(nessie.head("main"), Some(h2.clone()));
    let (s, resp) = c
        .post(
            &format!("/trees/main@{h1}/history/commit"),
            json!({"commitMeta": {"message": "other key"}, "operations": [{"type": "PUT", "key": {"elements": ["db", "u"]}, "content": iceberg(1)}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{resp:#}");
    let h3 = resp["targetBranch"]["hash"].as_str().unwrap().to_string();

    // namespace must exist; blank message; missing hash; unknown branch
    let r = c
        .post(
            &format!("/trees/main@{h3}/history/commit"),
            json!({"commitMeta": {"message": "m"}, "operations": [{"type": "PUT", "key": {"elements": ["nons", "t"]}, "content": iceberg(1)}]}),
        )
        .await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    assert_eq!(
        r.1["errorDetails"]["conflicts"][0]["conflictType"],
        "NAMESPACE_ABSENT"
    );
    let r = c
        .post(
            &format!("/trees/main@{h3}/history/commit"),
            json!({"commitMeta": {"message": " "}, "operations": []}),
        )
        .await;
    assert_error(&r, 400, "BAD_REQUEST");
    let r = c
        .post(
            "/trees/main/history/commit",
            json!({"commitMeta": {"message": "m"}, "operations": []}),
        )
        .await;
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(r.1["message"], "Expected hash must be provided.");
    let r = c
        .post(
            &format!("/trees/nope@{h3}/history/commit"),
            json!({"commitMeta": {"message": "m"}, "operations": []}),
        )
        .await;
    assert_error(&r, 404, "REFERENCE_NOT_FOUND");

    // DELETE
    let (s, resp) = c
        .post(
            &format!("/trees/main@{h3}/history/commit"),
            json!({
                "commitMeta": {
                    "message": "drop u",
                    "authors": ["carol"],
                    "allSignedOffBy": ["dave"],
                    "allProperties": {"p": ["v1", "v2"]}
                },
                "operations": [{"type": "DELETE", "key": {"elements": ["db", "u"]}}]
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{resp:#}");
    assert_error(
        &c.get("/trees/main/contents/db.u").await,
        404,
        "CONTENT_NOT_FOUND",
    );

    // history: shapes (simple and fetch=ALL), commit meta V2, paging
    let (_, log) = c.get("/trees/main/history?max-records=2").await;
    assert_eq!(log["hasMore"], true);
    assert_eq!(log["logEntries"].as_array().unwrap().len(), 2);
    assert_shape(
        "history",
        &v2_view(&fixture("history_log.json")),
        &log,
        // the real server always sends parentCommitHash and operations (null without fetch=ALL)
        &["parentCommitHashes", "parentCommitHash", "operations"],
    );
    let token = log["token"].as_str().unwrap();
    let (_, rest) = c
        .get(&format!(
            "/trees/main/history?max-records=10&page-token={token}"
        ))
        .await;
    assert_eq!(rest["logEntries"].as_array().unwrap().len(), 2);
    assert_eq!(rest["hasMore"], false);
    let first = rest["logEntries"][1]["commitMeta"].clone();
    assert_eq!(first["authors"], json!(["alice <alice@example.com>"]));
    assert_eq!(first["parentCommitHashes"], json!([NO_ANCESTOR_HASH]));
    assert_shape(
        "commit meta (V2)",
        &fixture("commit_meta_v2_test.json"),
        &first,
        &[],
    );

    let (_, all) = c.get("/trees/main/history?fetch=ALL&max-records=3").await;
    assert_shape(
        "history?fetch=ALL",
        &v2_view(&fixture("history_log_fetch_all.json")),
        &all,
        &["parentCommitHashes"],
    );
    assert_eq!(all["logEntries"][0]["operations"][0]["type"], "DELETE");
    let (_, limited) = c.get(&format!("/trees/main/history?limit-hash={h2}")).await;
    assert_eq!(limited["logEntries"].as_array().unwrap().len(), 3);
    assert_error(
        &c.get("/trees/main/history?filter=true").await,
        400,
        "BAD_REQUEST",
    );
}

#[tokio::test]
async fn contents_by_key_and_multiple_and_entries() {
    let nessie = FakeNessie::start().await.unwrap();
    nessie.commit("main", &["db.a", "db.b"]).unwrap();
    let c = Client2::new(&nessie);
    let (s, body) = c
        .get("/trees/main/contents?key=db.a&key=db.b&key=db.missing")
        .await;
    assert_eq!(s, StatusCode::OK);
    let list = body["contents"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["key"], json!({"elements": ["db", "a"]}));
    assert_eq!(list[0]["content"]["type"], "ICEBERG_TABLE");
    assert_eq!(body["effectiveReference"]["name"], "main");
    let (s, posted) = c
        .post(
            "/trees/main/contents",
            json!({"requestedKeys": [{"elements": ["db", "b"]}, {"elements": ["db", "zz"]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(posted["contents"].as_array().unwrap().len(), 1);
    assert_eq!(
        posted["contents"][0]["key"],
        json!({"elements": ["db", "b"]})
    );
    let r = c.get("/trees/main/contents/db.missing").await;
    assert_error(&r, 404, "CONTENT_NOT_FOUND");
    assert_error(
        &c.get("/trees/nope/contents/db.a").await,
        404,
        "REFERENCE_NOT_FOUND",
    );
    let (_, entries) = c.get("/trees/main/entries").await;
    let names: Vec<Value> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!({"elements": ["db"]}),
            json!({"elements": ["db", "a"]}),
            json!({"elements": ["db", "b"]})
        ]
    );
    assert_eq!(entries["entries"][0]["type"], "NAMESPACE");
    // Like the real 0.99 server: every entry carries `content`, null unless asked for.
    for e in entries["entries"].as_array().unwrap() {
        let fields = e.as_object().unwrap();
        assert_eq!(fields.get("content"), Some(&Value::Null), "{e}");
        assert!(fields["contentId"].is_string(), "{e}");
    }
    let (s, with_content) = c.get("/trees/main/entries?content=true").await;
    assert_eq!(s, StatusCode::OK);
    let listed = with_content["entries"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for e in listed {
        assert_eq!(e["content"]["type"], e["type"], "{e}");
        assert_eq!(e["content"]["id"], e["contentId"], "{e}");
    }
    assert_eq!(
        listed[1]["content"],
        nessie.content("main", "db.a").unwrap()
    );
    let (_, without) = c.get("/trees/main/entries?content=false").await;
    assert!(without["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["content"].is_null() && e.get("content").is_some()));
    assert_eq!(
        nessie.content("main", "db.a").unwrap()["type"],
        "ICEBERG_TABLE"
    );
}

// ---------------------------------------------------------------------------------------------
// merge
// ---------------------------------------------------------------------------------------------

async fn merge(c: &Client2, target: &str, body: Value) -> (StatusCode, Value) {
    c.post(&format!("/trees/{target}/history/merge"), body)
        .await
}

#[tokio::test]
async fn merge_from_backup_succeeds_with_a_merge_commit() {
    let nessie = FakeNessie::start().await.unwrap();
    nessie.commit("main", &["db.orders"]).unwrap();
    nessie.create_branch("backup", "main").unwrap();
    let fix = nessie.commit("backup", &["db.orders", "db.items"]).unwrap();
    let main = nessie.head("main").unwrap();
    let c = Client2::new(&nessie);
    let mut req = fixture("merge_request.json");
    req["fromRefName"] = json!("backup");
    req["fromHash"] = json!(fix);
    req["keyMergeModes"] = json!([]);
    req["returnConflictAsResult"] = json!(false);
    let (s, body) = merge(&c, &format!("main@{main}"), req).await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(body["wasApplied"], true);
    assert_eq!(body["wasSuccessful"], true);
    assert_eq!(body["targetBranch"], "main");
    assert_eq!(body["effectiveTargetHash"], main);
    assert_eq!(body["expectedHash"], main);
    assert_eq!(body["commonAncestor"], main);
    assert_eq!(body["details"].as_array().unwrap().len(), 2);
    assert_shape(
        "merge success",
        &fixture("merge_response_success.json"),
        &body,
        &[],
    );
    let new_head = body["resultantTargetHash"].as_str().unwrap().to_string();
    assert_eq!(nessie.head("main"), Some(new_head.clone()));
    assert_eq!(
        nessie.content("main", "db.items"),
        nessie.content("backup", "db.items")
    );
    // the merge commit has both parents
    let (_, log) = c.get("/trees/main/history?max-records=1").await;
    assert_eq!(
        log["logEntries"][0]["commitMeta"]["parentCommitHashes"],
        json!([main, fix])
    );
    assert_eq!(nessie.head("main^2"), Some(fix.clone()));
    assert_eq!(
        log["logEntries"][0]["commitMeta"]["message"],
        format!("Merged backup at {fix} into main at {main}")
    );

    // merging again: nothing to do
    let (s, body) = merge(
        &c,
        &format!("main@{new_head}"),
        json!({"fromRefName": "backup", "fromHash": fix}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["wasApplied"], false);
    assert_eq!(body["wasSuccessful"], true);
    assert_eq!(nessie.head("main"), Some(new_head));
}

#[tokio::test]
async fn merge_conflict_is_409_or_a_result() {
    let nessie = FakeNessie::start().await.unwrap();
    nessie.commit("main", &["db.orders"]).unwrap();
    nessie.create_branch("backup", "main").unwrap();
    let (src, main) = nessie
        .conflicting_commit("backup", "main", "db.orders")
        .unwrap();
    let c = Client2::new(&nessie);

    let r = merge(
        &c,
        &format!("main@{main}"),
        json!({"fromRefName": "backup", "fromHash": src}),
    )
    .await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    assert_eq!(
        r.1["message"],
        "The following keys have been changed in conflict: 'db.orders'"
    );
    let conflicts = r.1["errorDetails"]["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0]["conflictType"], "VALUE_DIFFERS");
    assert_eq!(conflicts[0]["key"], json!({"elements": ["db", "orders"]}));
    assert_shape(
        "merge 409",
        &fixture("error_409_reference_conflict_test.json"),
        &r.1,
        &["serverStackTrace"],
    );
    assert_eq!(nessie.head("main"), Some(main.clone()));

    let (s, body) = merge(
        &c,
        &format!("main@{main}"),
        json!({"fromRefName": "backup", "fromHash": src, "isReturnConflictAsResult": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(body["wasSuccessful"], false);
    assert_eq!(body["wasApplied"], false);
    assert!(body["resultantTargetHash"].is_null());
    assert_eq!(
        body["details"][0]["conflict"]["conflictType"],
        "VALUE_DIFFERS"
    );
    // the OpenAPI example shows a resultantTargetHash; the real server sends null here
    let mut reference = v2_view(&fixture("merge_response_conflict_openapi_example.json"));
    reference["resultantTargetHash"] = Value::Null;
    assert_shape("merge conflict as result", &reference, &body, &[]);

    // `returnConflictAsResult` (without `is`) is ignored by the real server: still 409
    let r = merge(
        &c,
        &format!("main@{main}"),
        json!({"fromRefName": "backup", "fromHash": src, "returnConflictAsResult": true}),
    )
    .await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    // a conflicting dry run is refused the same way
    let r = merge(
        &c,
        &format!("main@{main}"),
        json!({"fromRefName": "backup", "fromHash": src, "isDryRun": true}),
    )
    .await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    assert_eq!(nessie.head("main"), Some(main.clone()));

    // FORCE takes the source's value
    let (s, body) = merge(
        &c,
        &format!("main@{main}"),
        json!({"fromRefName": "backup", "fromHash": src, "defaultKeyMergeMode": "FORCE"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(body["wasApplied"], true);
    assert_eq!(
        nessie.content("main", "db.orders"),
        nessie.content("backup", "db.orders")
    );
}

#[tokio::test]
async fn merge_keys_created_on_both_sides_conflict_as_key_exists() {
    let nessie = FakeNessie::start().await.unwrap();
    nessie.create_branch("backup", "main").unwrap();
    let (src, main) = nessie.conflicting_commit("backup", "main", "t").unwrap();
    let c = Client2::new(&nessie);
    let r = merge(
        &c,
        &format!("main@{main}"),
        json!({"fromRefName": "backup", "fromHash": src}),
    )
    .await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    assert_eq!(
        r.1["errorDetails"]["conflicts"][0]["conflictType"],
        "KEY_EXISTS"
    );
}

#[tokio::test]
async fn merge_dry_run_changes_nothing() {
    let nessie = FakeNessie::start().await.unwrap();
    nessie.commit("main", &["db.orders"]).unwrap();
    nessie.create_branch("backup", "main").unwrap();
    let fix = nessie.commit("backup", &["db.orders"]).unwrap();
    let main = nessie.head("main").unwrap();
    let log_before = nessie.log("main");
    let c = Client2::new(&nessie);
    let (s, body) = merge(
        &c,
        &format!("main@{main}"),
        json!({"fromRefName": "backup", "fromHash": fix, "isDryRun": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(body["wasApplied"], false);
    assert_eq!(body["wasSuccessful"], true);
    assert!(body["resultantTargetHash"].is_null());
    assert_eq!(nessie.head("main"), Some(main.clone()));
    assert_eq!(nessie.log("main"), log_before);
    assert_ne!(
        nessie.content("main", "db.orders"),
        nessie.content("backup", "db.orders")
    );

    // Nessie 0.99 ignores a `dryRun` field: the merge is applied for real
    let (s, body) = merge(
        &c,
        &format!("main@{main}"),
        json!({"fromRefName": "backup", "fromHash": fix, "dryRun": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(body["wasApplied"], true);
    assert_ne!(nessie.head("main"), Some(main));
    assert_eq!(
        nessie.content("main", "db.orders"),
        nessie.content("backup", "db.orders")
    );
}

#[tokio::test]
async fn merge_request_errors() {
    let nessie = FakeNessie::start().await.unwrap();
    let h = nessie.commit("main", &["a"]).unwrap();
    nessie.create_branch("backup", "main").unwrap();
    let fix = nessie.commit("backup", &["a"]).unwrap();
    let c = Client2::new(&nessie);
    let r = merge(&c, &format!("main@{h}"), json!({"fromRefName": "backup"})).await;
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(r.1["message"], "Source hash must be provided.");
    let r = merge(
        &c,
        "main",
        json!({"fromRefName": "backup", "fromHash": fix}),
    )
    .await;
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(r.1["message"], "Expected hash must be provided.");
    let r = merge(
        &c,
        &format!("main@{h}"),
        json!({"fromRefName": "nope", "fromHash": fix}),
    )
    .await;
    assert_error(&r, 404, "REFERENCE_NOT_FOUND");
    let r = merge(
        &c,
        &format!("main@{h}~1"),
        json!({"fromRefName": "backup", "fromHash": fix}),
    )
    .await;
    assert_error(&r, 400, "BAD_REQUEST");
    // a tag is not a merge target
    nessie.create_tag("v1", "main").unwrap();
    let r = merge(
        &c,
        &format!("v1@{h}"),
        json!({"fromRefName": "backup", "fromHash": fix}),
    )
    .await;
    assert_error(&r, 400, "BAD_REQUEST");
}

// ---------------------------------------------------------------------------------------------
// health port
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_up_and_down_on_the_management_port() {
    let nessie = FakeNessie::start().await.unwrap();
    assert_ne!(nessie.api().addr(), nessie.management().addr());
    let http = Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{}{path}", nessie.management_url());
        async move {
            let r = http.get(url).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    for path in [
        "/q/health",
        "/q/health/live",
        "/q/health/ready",
        "/q/health/started",
    ] {
        let (s, body) = get(path).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(body["status"], "UP");
        assert!(body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "UP" && c["name"].is_string()));
    }
    // the API port does not serve /q/health (Nessie >= 0.82)
    let r = http
        .get(format!("{}/q/health", nessie.api().base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    nessie.set_health_down();
    // no liveness check on a real Nessie: live stays UP while the store is unreachable
    let (s, live) = get("/q/health/live").await;
    assert_eq!((s, live), (200, json!({"status": "UP", "checks": []})));
    for path in ["/q/health", "/q/health/ready"] {
        let (s, body) = get(path).await;
        assert_eq!(s, 503, "{path}");
        assert_eq!(body["status"], "DOWN");
        assert!(body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "DOWN"));
    }
    nessie.set_health_up();
    assert_eq!(get("/q/health").await.0, 200);
    nessie.set_check("Warehouses Object Stores", false);
    let (s, body) = get("/q/health/ready").await;
    assert_eq!(s, 503);
    assert_eq!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "DOWN")
            .count(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// faults and the request record
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn each_fault_kind_reaches_the_client() {
    let nessie = FakeNessie::start().await.unwrap();
    let url = format!("{}/trees/main", nessie.api_url());
    let http = Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let faults = nessie.api().faults();

    faults
        .inject("GET", "/api/v2/trees/*", Fault::Status(503))
        .times(1);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 503);
    // the rule is used up: normal answer again
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);

    let body = r#"{"status":429,"reason":"Too Many Requests","message":"slow down","errorCode":"TOO_MANY_REQUESTS"}"#;
    faults
        .inject(
            "GET",
            "/api/v2/trees/*",
            Fault::StatusBody(429, body.into()),
        )
        .times(1);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "TOO_MANY_REQUESTS"
    );

    faults
        .inject("GET", "/api/v2/trees/*", Fault::Reset)
        .times(1);
    let failed = match http.get(&url).send().await {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(failed, "reset must fail the request");

    faults
        .inject("GET", "/api/v2/trees/*", Fault::MalformedBody)
        .times(1);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());

    faults
        .inject("GET", "/api/v2/trees/*", Fault::TruncatedBody)
        .times(1);
    // depending on timing the client fails while reading the head or the body
    let failed = match http.get(&url).send().await {
        Err(e) => e.is_request() || e.is_body(),
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(failed, "a truncated body must fail the request");

    faults
        .inject("GET", "/api/v2/trees/*", Fault::Hang)
        .times(1);
    let e = http.get(&url).send().await.unwrap_err();
    assert!(e.is_timeout(), "{e}");

    faults
        .inject(
            "GET",
            "/api/v2/trees/*",
            Fault::Latency(Duration::from_millis(150)),
        )
        .times(1);
    let t = Instant::now();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    nessie.api().refuse_connections();
    // a fresh client: no pooled keep-alive connection to the old listener
    let fresh = Client::new();
    let e = fresh.get(&url).send().await.unwrap_err();
    assert!(e.is_connect(), "{e}");
    nessie.api().restore().await.unwrap();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);

    // faults on the management port are independent
    nessie.management().faults().inject_all(Fault::Status(500));
    let r = http
        .get(format!("{}/q/health", nessie.management_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_request_record_shows_what_the_client_sent() {
    let nessie = FakeNessie::start().await.unwrap();
    nessie.create_branch("backup", "main").unwrap();
    let fix = nessie.commit("backup", &["db.orders"]).unwrap();
    let c = Client2::new(&nessie);
    let body = json!({"fromRefName": "backup", "fromHash": fix, "dryRun": false});
    let (s, _) = merge(&c, &format!("main@{NO_ANCESTOR_HASH}"), body.clone()).await;
    assert_eq!(s, StatusCode::OK);
    c.get("/trees?fetch=ALL").await;

    let merges = nessie
        .api()
        .requests()
        .matching("POST", "/api/v2/trees/*/history/merge");
    assert_eq!(merges.len(), 1);
    let m = &merges[0];
    assert_eq!(m.method, "POST");
    assert_eq!(
        m.path,
        format!("/api/v2/trees/main@{NO_ANCESTOR_HASH}/history/merge")
    );
    assert_eq!(m.json(), Some(body));
    assert_eq!(m.header("Nessie-Client-Spec"), Some("2"));
    assert_eq!(m.header("content-type"), Some("application/json"));
    let lists = nessie.api().requests().matching("GET", "/api/v2/trees");
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].query.as_deref(), Some("fetch=ALL"));
    assert_eq!(nessie.api().requests().mutating().len(), 1);
}

#[tokio::test]
async fn scripted_helpers_report_errors_as_values() {
    let nessie = FakeNessie::start().await.unwrap();
    let e = nessie.create_branch("x", "nope").unwrap_err();
    assert_eq!(
        (e.status, e.error_code.as_str()),
        (404, "REFERENCE_NOT_FOUND")
    );
    nessie.create_branch("x", "main").unwrap();
    let e = nessie.create_branch("x", "main").unwrap_err();
    assert_eq!(e.error_code, "REFERENCE_ALREADY_EXISTS");
    let e = nessie.commit("main", &["a..b"]).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(nessie.head("nope"), None);
    assert!(nessie.log("nope").is_empty());
    assert_eq!(nessie.references().len(), 2);
}

#[tokio::test]
async fn server_side_commit_meta_fields_are_refused() {
    let nessie = FakeNessie::start().await.unwrap();
    let c = Client2::new(&nessie);
    let path = format!("/trees/main@{NO_ANCESTOR_HASH}/history/commit");
    for (field, value, message) in [
        (
            "committer",
            json!("me"),
            "Cannot set the committer on the client side. It is set by the server.",
        ),
        (
            "commitTime",
            json!("2024-01-01T00:00:00Z"),
            "Cannot set the commit time on the client side. It is set by the server.",
        ),
        (
            "hash",
            json!(NO_ANCESTOR_HASH),
            "Cannot set the commit hash on the client side. It is set by the server.",
        ),
    ] {
        let mut meta = json!({"message": "m"});
        meta[field] = value;
        let r = c
            .post(&path, json!({"commitMeta": meta, "operations": []}))
            .await;
        assert_error(&r, 400, "BAD_REQUEST");
        assert_eq!(r.1["message"], message);
    }
    assert_eq!(nessie.head("main").as_deref(), Some(NO_ANCESTOR_HASH));
}

#[tokio::test]
async fn transplant_cherry_picks_commits() {
    let nessie = FakeNessie::start().await.unwrap();
    nessie.commit("main", &["db.orders"]).unwrap();
    nessie.create_branch("backup", "main").unwrap();
    let fix1 = nessie
        .commit_with_message("backup", &["db.orders"], "fix orders")
        .unwrap();
    let fix2 = nessie
        .commit_with_message("backup", &["db.items"], "add items")
        .unwrap();
    nessie.commit("main", &["db.other"]).unwrap();
    let main = nessie.head("main").unwrap();
    let c = Client2::new(&nessie);
    let mut req = fixture("transplant_request.json");
    req["fromRefName"] = json!("backup");
    req["hashesToTransplant"] = json!([fix1, fix2]);
    req["keyMergeModes"] = json!([]);
    req["returnConflictAsResult"] = json!(false);

    let mut dry = req.clone();
    dry["isDryRun"] = json!(true);
    let (s, body) = c
        .post(&format!("/trees/main@{main}/history/transplant"), dry)
        .await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(body["wasApplied"], false);
    assert_eq!(nessie.head("main"), Some(main.clone()));

    let (s, body) = c
        .post(
            &format!("/trees/main@{main}/history/transplant"),
            req.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body:#}");
    assert_eq!(body["wasApplied"], true);
    assert!(body["commonAncestor"].is_null());
    let mut reference = fixture("merge_response_success.json");
    reference["commonAncestor"] = Value::Null;
    assert_shape("transplant", &reference, &body, &[]);
    let (_, log) = c.get("/trees/main/history?max-records=2").await;
    let messages: Vec<&str> = log["logEntries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["commitMeta"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["add items", "fix orders"]);
    assert_eq!(
        nessie.content("main", "db.orders"),
        nessie.content("backup", "db.orders")
    );
    assert!(nessie.content("main", "db.other").is_some());

    // the same commits again: db.orders on main no longer matches what fix1 started from
    let head = nessie.head("main").unwrap();
    nessie.commit("main", &["db.orders"]).unwrap();
    let head2 = nessie.head("main").unwrap();
    assert_ne!(head, head2);
    let r = c
        .post(&format!("/trees/main@{head2}/history/transplant"), req)
        .await;
    assert_error(&r, 409, "REFERENCE_CONFLICT");
    assert_eq!(
        r.1["errorDetails"]["conflicts"][0]["conflictType"],
        "VALUE_DIFFERS"
    );
    let r = c
        .post(
            &format!("/trees/main@{head2}/history/transplant"),
            json!({"fromRefName": "backup", "hashesToTransplant": []}),
        )
        .await;
    assert_error(&r, 400, "BAD_REQUEST");
}

// ---------------------------------------------------------------------------------------------
// the real server's recorded answers (fixtures/real/nessie, Nessie 0.99)
// ---------------------------------------------------------------------------------------------

fn real(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/real/nessie/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Recorded status per fixture (`_index.tsv`: name, method, path, status).
fn real_status(name: &str) -> u16 {
    let path = format!(
        "{}/fixtures/real/nessie/_index.tsv",
        env!("CARGO_MANIFEST_DIR")
    );
    let index = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    index
        .lines()
        .find_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.first() == Some(&name))
                .then(|| cols.get(3).and_then(|s| s.parse().ok()))
                .flatten()
        })
        .unwrap_or_else(|| {
            real(name)["status"]
                .as_u64()
                .map(|s| s as u16)
                .unwrap_or(200)
        })
}

/// Replace every 64-hex commit hash by `<hash>` so recorded and fake messages compare.
fn without_hashes(v: &Value) -> Value {
    let text = v.to_string();
    let mut out = String::new();
    let mut run = String::new();
    for ch in text.chars() {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        out.push_str(if run.len() == 64 { "<hash>" } else { &run });
        run.clear();
        out.push(ch);
    }
    out.push_str(if run.len() == 64 { "<hash>" } else { &run });
    serde_json::from_str(&out).unwrap()
}

/// Plays the recorded session against the fake — same names, same calls, sent like the recorder
/// sent them (no `Nessie-Client-Spec` header) — and compares status codes, shapes (no field
/// missing, none added) and, for errors, the whole body up to commit hashes.
#[tokio::test]
async fn the_fake_answers_like_the_recorded_real_nessie() {
    let nessie = FakeNessie::start().await.unwrap();
    let http = Client::new();
    let api = nessie.api_url();
    let ns = real("commit_200")["addedContents"][0]["key"]["elements"][0]
        .as_str()
        .unwrap()
        .to_string();
    let dev = real("tree_branch_200")["reference"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let clean = real("commit_200")["targetBranch"]["name"]
        .as_str()
        .unwrap()
        .to_string();

    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = http.request(method, format!("{api}{path}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    #[track_caller]
    fn same_shape(fixture: &str, got: &(u16, Value)) {
        assert_eq!(got.0, real_status(fixture), "{fixture}: {:#}", got.1);
        assert_shape(fixture, &real(fixture), &got.1, &[]);
    }
    #[track_caller]
    fn same_error(fixture: &str, got: &(u16, Value)) {
        assert_eq!(got.0, real_status(fixture), "{fixture}: {:#}", got.1);
        assert_eq!(
            without_hashes(&got.1),
            without_hashes(&real(fixture)),
            "{fixture}"
        );
    }
    let head = |name: &str| nessie.head(name).unwrap();
    let commit = |branch: String, hash: String, message: String, ops: Value| {
        call(
            reqwest::Method::POST,
            format!("/trees/{branch}@{hash}/history/commit"),
            Some(json!({"commitMeta": {"message": message}, "operations": ops})),
        )
    };
    let put = |key: Value, content: Value| json!([{"type": "PUT", "key": {"elements": key}, "content": content}]);
    let merge_body = |from: &str, hash: String, flags: &[(&str, bool)]| {
        let mut b = json!({"fromRefName": from, "fromHash": hash, "message": format!("merge {from} into main")});
        for (k, v) in flags {
            b[*k] = json!(v);
        }
        b
    };

    // health and config
    for (fixture, path) in [
        ("q_health_200", "/q/health"),
        ("q_health_ready_200", "/q/health/ready"),
    ] {
        let r = http
            .get(format!("{}{path}", nessie.management_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), real_status(fixture));
        assert_eq!(r.json::<Value>().await.unwrap(), real(fixture), "{fixture}");
    }
    same_shape(
        "config_200",
        &call(reqwest::Method::GET, "/config".into(), None).await,
    );

    // the conflict: both sides create ns.t
    let r = commit(
        "main".into(),
        head("main"),
        format!("create namespace {ns}"),
        put(json!([ns]), json!({"type": "NAMESPACE", "elements": [ns]})),
    )
    .await;
    assert_eq!(r.0, 200, "{:#}", r.1);
    nessie.create_branch(&dev, "main").unwrap();
    let before = head("main");
    let table = |loc: &str, snap: u64| json!({"type": "ICEBERG_TABLE", "metadataLocation": loc, "snapshotId": snap, "schemaId": 0, "specId": 0, "sortOrderId": 0});
    let r = commit(
        "main".into(),
        head("main"),
        format!("create {ns}.t on main"),
        put(json!([ns, "t"]), table("s3://rb-peers/main.json", 2)),
    )
    .await;
    assert_eq!(r.0, 200, "{:#}", r.1);
    let r = commit(
        dev.clone(),
        head(&dev),
        format!("create {ns}.t on {dev}"),
        put(json!([ns, "t"]), table("s3://rb-peers/dev.json", 1)),
    )
    .await;
    assert_eq!(r.0, 200, "{:#}", r.1);
    let merge_path = format!("/trees/main@{}/history/merge", head("main"));
    let r = call(
        reqwest::Method::POST,
        merge_path.clone(),
        Some(merge_body(
            &dev,
            head(&dev),
            &[("isReturnConflictAsResult", true)],
        )),
    )
    .await;
    same_shape("merge_conflict_as_result_200", &r);
    assert_eq!(r.1["details"][0]["conflict"]["conflictType"], "KEY_EXISTS");
    same_error(
        "merge_conflict_409",
        &call(
            reqwest::Method::POST,
            merge_path.clone(),
            Some(merge_body(&dev, head(&dev), &[])),
        )
        .await,
    );
    same_error(
        "merge_dry_run_conflict_409",
        &call(
            reqwest::Method::POST,
            merge_path,
            Some(merge_body(&dev, head(&dev), &[("isDryRun", true)])),
        )
        .await,
    );

    same_shape(
        "trees_200",
        &call(reqwest::Method::GET, "/trees".into(), None).await,
    );
    same_shape(
        "tree_branch_200",
        &call(reqwest::Method::GET, format!("/trees/{dev}"), None).await,
    );
    same_shape(
        "history_200",
        &call(reqwest::Method::GET, format!("/trees/{dev}/history"), None).await,
    );
    same_shape(
        "content_table_200",
        &call(
            reqwest::Method::GET,
            format!("/trees/main@{}/contents/{ns}.t", head("main")),
            None,
        )
        .await,
    );

    // name@hash errors
    same_error(
        "tree_bad_hash_400",
        &call(reqwest::Method::GET, "/trees/main@not-a-hash".into(), None).await,
    );
    same_error(
        "tree_unknown_ref_404",
        &call(
            reqwest::Method::GET,
            "/trees/rb-no-such-branch".into(),
            None,
        )
        .await,
    );
    same_error(
        "history_unknown_hash_404",
        &call(
            reqwest::Method::GET,
            format!("/trees/main@{}/history", "0".repeat(64)),
            None,
        )
        .await,
    );
    let r = commit(
        "main".into(),
        head(&dev),
        "foreign".into(),
        put(json!([ns, "t"]), table("s3://rb-peers/f.json", 3)),
    )
    .await;
    same_error("commit_hash_not_in_branch_404", &r);
    let r = commit(
        "main".into(),
        before,
        "stale".into(),
        put(json!([ns, "t"]), table("s3://rb-peers/stale.json", 3)),
    )
    .await;
    same_error("commit_stale_409", &r);
    let r = call(
        reqwest::Method::POST,
        format!("/trees?name={dev}&type=BRANCH"),
        Some(json!({"type": "BRANCH", "name": "main", "hash": head("main")})),
    )
    .await;
    same_error("create_existing_branch_409", &r);

    // a clean merge: dry run, then for real
    let r = call(
        reqwest::Method::POST,
        format!("/trees?name={clean}&type=BRANCH"),
        Some(json!({"type": "BRANCH", "name": "main", "hash": head("main")})),
    )
    .await;
    same_shape("create_branch_200", &r);
    let r = commit(
        clean.clone(),
        head(&clean),
        format!("create {ns}.u"),
        put(json!([ns, "u"]), table("s3://rb-peers/u.json", 4)),
    )
    .await;
    same_shape("commit_200", &r);
    let merge_path = format!("/trees/main@{}/history/merge", head("main"));
    let main_before = head("main");
    let r = call(
        reqwest::Method::POST,
        merge_path.clone(),
        Some(merge_body(&clean, head(&clean), &[("isDryRun", true)])),
    )
    .await;
    same_shape("merge_dry_run_200", &r);
    assert_eq!(head("main"), main_before);
    let r = call(
        reqwest::Method::POST,
        merge_path,
        Some(merge_body(&clean, head(&clean), &[])),
    )
    .await;
    same_shape("merge_200", &r);
    assert_ne!(head("main"), main_before);

    // re-creating the namespace without its content id
    let r = commit(
        "main".into(),
        head("main"),
        "again".into(),
        put(json!([ns]), json!({"type": "NAMESPACE", "elements": [ns]})),
    )
    .await;
    same_error("commit_put_without_content_id_400", &r);

    // `dryRun` (without `is`) is ignored: applied
    let dry = "rbdry1";
    nessie.create_branch(dry, "main").unwrap();
    let r = commit(
        dry.into(),
        head(dry),
        "dry".into(),
        put(
            json!([dry]),
            json!({"type": "NAMESPACE", "elements": [dry]}),
        ),
    )
    .await;
    assert_eq!(r.0, 200, "{:#}", r.1);
    let r = call(
        reqwest::Method::POST,
        format!("/trees/main@{}/history/merge", head("main")),
        Some(merge_body(dry, head(dry), &[("dryRun", true)])),
    )
    .await;
    assert_eq!(r.0, 200);
    assert_shape(
        "merge_dryRun_field_ignored_200",
        &real("merge_dryRun_field_ignored_200"),
        &r.1,
        &[],
    );
    assert_eq!(
        r.1["wasApplied"],
        real("merge_dryRun_field_ignored_200")["wasApplied"]
    );

    for b in [dev.clone(), clean.clone()] {
        let r = call(
            reqwest::Method::DELETE,
            format!("/trees/{b}@{}", head(&b)),
            None,
        )
        .await;
        same_shape("delete_branch_200", &r);
    }
}
