//! The Flink fake against real Flink 2.3.0 captures (fixtures/flink), and its behaviours through
//! reqwest. Run: `cargo test -p rb-testkit --test flink_fake`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rb_testkit::http::flink::{FakeFlink, JobSpec};
use rb_testkit::http::Fault;
use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/flink");

/// A client without background timers (a paused clock would jump to an idle-pool timer).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap()
}

async fn send(c: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = c.request(m, url);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"));
    (status, v)
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    send(c, "GET", url, None).await
}

// ---------------------------------------------------------------- shapes

fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Default)]
struct Shape {
    types: BTreeMap<String, BTreeSet<&'static str>>,
    empty_arrays: BTreeSet<String>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Leaf and inner paths with their JSON types; array elements merged under `[]`, object keys
/// that are Flink ids (32 hex) merged under `<id>`.
fn shape(v: &Value) -> Shape {
    fn walk(v: &Value, path: &str, out: &mut Shape) {
        out.types
            .entry(path.to_string())
            .or_default()
            .insert(type_name(v));
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let k = if is_id(k) { "<id>" } else { k.as_str() };
                    walk(child, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(items) => {
                if items.is_empty() {
                    out.empty_arrays.insert(path.to_string());
                }
                for child in items {
                    walk(child, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut s = Shape::default();
    walk(v, "$", &mut s);
    s
}

/// Differences in field names and JSON types (values may differ). Paths under an array that is
/// empty on one side cannot be compared and are skipped.
fn shape_diff(real: &Value, fake: &Value) -> Vec<String> {
    let (r, f) = (shape(real), shape(fake));
    let under_empty = |p: &str, empties: &BTreeSet<String>| {
        empties.iter().any(|e| p.starts_with(&format!("{e}[]")))
    };
    let mut out = Vec::new();
    for (p, rt) in &r.types {
        match f.types.get(p) {
            None if under_empty(p, &f.empty_arrays) => {}
            None => out.push(format!("missing in fake: {p} {rt:?}")),
            Some(ft) if ft != rt => {
                out.push(format!("type differs at {p}: real {rt:?}, fake {ft:?}"))
            }
            Some(_) => {}
        }
    }
    for (p, ft) in &f.types {
        if !r.types.contains_key(p) && !under_empty(p, &r.empty_arrays) {
            out.push(format!("only in fake: {p} {ft:?}"));
        }
    }
    out
}

#[test]
fn shape_diff_catches_names_and_types() {
    assert!(shape_diff(
        &json!({"a": 1, "b": [{"x": "s"}]}),
        &json!({"a": 2.5, "b": [{"x": "t"}, {"x": "u"}]})
    )
    .is_empty());
    assert_eq!(shape_diff(&json!({"a": "1"}), &json!({"a": 1})).len(), 1);
    assert_eq!(shape_diff(&json!({"a": 1}), &json!({"b": 1})).len(), 2);
    assert_eq!(shape_diff(&json!({"a": null}), &json!({"a": {}})).len(), 1);
    assert!(shape_diff(&json!({"l": []}), &json!({"l": [{"z": 1}]})).is_empty());
    assert!(shape_diff(
        &json!({"m": {"0da08f51eaa85fc298e176a139b3649a": 1}}),
        &json!({"m": {"ffffffffffffffffffffffffffffffff": 2}})
    )
    .is_empty());
}

// ---------------------------------------------------------------- the capture walk

struct Row {
    name: String,
    method: String,
    path: String,
    status: u16,
    body: String,
}

fn index() -> Vec<Row> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/_index.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Row {
                name: cols[0].to_string(),
                method: cols[1].to_string(),
                path: cols[2].to_string(),
                status: cols[3].parse().unwrap(),
                body: cols.get(4).map(|s| s.to_string()).unwrap_or_default(),
            }
        })
        .collect()
}

fn capture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Rows the walk deliberately does not compare, with the reason.
const NOT_COVERED: &[(&str, &str)] = &[];

/// Record captured-id → fake-id pairs found at the same place in two answers.
fn learn_ids(real: &Value, fake: &Value, ids: &mut Vec<(String, String)>) {
    match (real, fake) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    learn_ids(v, w, ids);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (v, w) in a.iter().zip(b.iter()) {
                learn_ids(v, w, ids);
            }
        }
        (Value::String(a), Value::String(b)) if a != b && is_id(a) => {
            ids.push((a.clone(), b.clone()))
        }
        _ => {}
    }
}

fn subst(s: &str, ids: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (a, b) in ids {
        out = out.replace(a.as_str(), b.as_str());
    }
    out
}

async fn upload_jar(c: &reqwest::Client, base: &str) -> (u16, Value) {
    // a jar is a zip: local file header magic is enough for the upload handler
    let part = reqwest::multipart::Part::bytes(b"PK\x03\x04 runbook-counter".to_vec())
        .file_name("runbook-counter.jar")
        .mime_str("application/x-java-archive")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("jarfile", part);
    let resp = c
        .post(format!("{base}/jars/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn every_captured_call_has_the_same_status_and_shape() {
    let fake = FakeFlink::start().await.unwrap();
    let c = client();
    let base = fake.base_url();
    fake.fail_savepoints_under("file:///proc");
    let job = fake.add_job(JobSpec::counter("runbook-counter")).unwrap();
    sleep(Duration::from_secs(25)).await;

    let vs = fake.vertices(&job).unwrap();
    let mut ids: Vec<(String, String)> = vec![
        ("820589c381fd8920f39255783eb12308".into(), job.clone()),
        ("5eadbd25f5e5ea36e1d79110004cc6d7".into(), vs[0].0.clone()),
        ("0da08f51eaa85fc298e176a139b3649a".into(), vs[1].0.clone()),
        (
            "127.0.0.1:45375-dfd754".into(),
            fake.taskmanager_ids()[0].clone(),
        ),
        (
            "/checkpoints/details/12".into(),
            format!(
                "/checkpoints/details/{}",
                fake.latest_checkpoint_id(&job).unwrap().unwrap()
            ),
        ),
    ];
    let skip: HashMap<&str, &str> = NOT_COVERED.iter().copied().collect();
    let mut failures = Vec::new();
    let mut compared = 0;

    for row in index() {
        if skip.contains_key(row.name.as_str()) {
            continue;
        }
        // bring the fake into the state the capture was taken in
        match row.name.as_str() {
            // the rescale is applied ~4 s after the PUT; the capture was taken just after that
            "after_rescale_job_resource_requirements" => sleep(Duration::from_millis(4200)).await,
            // /checkpoints is cached for refresh-interval, like on the real cluster
            "job_checkpoints_with_failed_savepoint" => sleep(Duration::from_secs(3)).await,
            "rescale_details" => {
                let (_, h) = get(&c, &format!("{base}/jobs/{job}/rescales/history")).await;
                ids.push((
                    "7de1535e4a94742128a8cc350817ed1f".into(),
                    h[0]["rescaleUuid"].as_str().unwrap().into(),
                ));
            }
            "savepoint_status_in_progress" => {
                let body =
                    json!({"cancel-job": false, "triggerId": "22222222222222222222222222222222"});
                let (s, _) = send(
                    &c,
                    "POST",
                    &format!("{base}/jobs/{job}/savepoints"),
                    Some(body),
                )
                .await;
                assert_eq!(s, 202);
            }
            "stop_with_savepoint" => {
                // what happened on the real cluster before the stop: a failed checkpoint, a lost
                // TaskManager and recovery, then a while of normal running
                sleep(Duration::from_secs(3)).await;
                fake.fail_checkpoints(&job, true).unwrap();
                sleep(Duration::from_secs(2)).await;
                fake.fail_checkpoints(&job, false).unwrap();
                fake.lose_taskmanager().unwrap();
                sleep(Duration::from_secs(5)).await;
                fake.add_taskmanager();
                sleep(Duration::from_secs(30)).await;
                assert_eq!(fake.job_status(&job).unwrap(), "RUNNING");
            }
            "restored_job_detail" => {
                let (_, up) = upload_jar(&c, &base).await;
                let jar = up["filename"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string();
                let (_, st) = get(
                    &c,
                    &format!("{base}/jobs/{job}/savepoints/44444444444444444444444444444444"),
                )
                .await;
                let location = st["operation"]["location"].as_str().unwrap().to_string();
                let body = json!({"savepointPath": location, "allowNonRestoredState": false, "programArgsList": ["runbook-counter-restored"], "parallelism": 1});
                let (s, run) =
                    send(&c, "POST", &format!("{base}/jars/{jar}/run"), Some(body)).await;
                assert_eq!(s, 200, "{run}");
                ids.push((
                    "2a708230b521f5166d98c61b8f5ea8b3".into(),
                    run["jobid"].as_str().unwrap().into(),
                ));
                sleep(Duration::from_secs(11)).await;
            }
            _ => {}
        }
        if row.method == "GET"
            && row.path.contains("/savepoints/")
            && row.name != "savepoint_status_in_progress"
        {
            sleep(Duration::from_secs(1)).await;
        }

        let url = format!("{base}{}", subst(&row.path, &ids));
        let real = capture(&row.name);
        let (status, got) = if row.method == "POST" && row.path == "/jars/upload" {
            upload_jar(&c, &base).await
        } else {
            let body = if row.body.starts_with('{') {
                Some(serde_json::from_str(&subst(&row.body, &ids)).unwrap())
            } else {
                None
            };
            send(&c, &row.method, &url, body).await
        };
        compared += 1;
        if status != row.status {
            failures.push(format!(
                "{} {} {}: status {} (real {})\n   {}",
                row.name, row.method, url, status, row.status, got
            ));
            continue;
        }
        for d in shape_diff(&real, &got) {
            failures.push(format!("{} {}: {d}", row.name, row.path));
        }
        if row.method != "GET" {
            learn_ids(&real, &got, &mut ids);
            if row.path == "/jars/upload" {
                let base_of = |v: &Value| {
                    v["filename"]
                        .as_str()
                        .unwrap_or("")
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_string()
                };
                ids.push((base_of(&real), base_of(&got)));
            }
        }
    }
    assert!(compared >= 90, "only {compared} rows compared");
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
