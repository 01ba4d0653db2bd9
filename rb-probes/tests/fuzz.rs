//! Every parser rb owns, fuzzed from its real captures: arbitrary bytes and text, byte edits,
//! truncations, JSON scalars flipped to another type, and spliced duplicates of the captures.
//! One test per parser; none may panic, and what each returns must still say where the input went
//! wrong (a `ProbeError` names its target and is a bad response; a text error has a line and column
//! inside the input).
//!
//! The number of cases per parser comes from `RB_FUZZ_CASES` (default 256, what CI runs). The long
//! run, one million cases per parser (its result is recorded in `benches/README.md`):
//!
//! ```text
//! RB_FUZZ_CASES=1000000 cargo test --release -p rb-probes --all-features --test fuzz -- --nocapture --test-threads 1
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// which parsers are compiled depends on the features; the helpers serve whichever are
#![allow(dead_code)]

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per parser: `RB_FUZZ_CASES`, or 256.
fn cases() -> u32 {
    match std::env::var("RB_FUZZ_CASES") {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|e| panic!("RB_FUZZ_CASES={v:?}: {e}")),
        Err(_) => 256,
    }
}

/// One starting input: its bytes, and its JSON tree when it is JSON.
struct Seed {
    bytes: Vec<u8>,
    json: Option<serde_json::Value>,
}

/// Read `names` (relative to the workspace root) as seeds.
fn seeds(names: &[&str]) -> Vec<Seed> {
    names
        .iter()
        .map(|n| {
            let path = format!("{}/../{n}", env!("CARGO_MANIFEST_DIR"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("seed {path}: {e}"));
            Seed {
                json: serde_json::from_slice(&bytes).ok(),
                bytes,
            }
        })
        .collect()
}

/// Inline seeds.
fn inline(docs: &[&str]) -> Vec<Seed> {
    docs.iter()
        .map(|d| Seed {
            bytes: d.as_bytes().to_vec(),
            json: serde_json::from_str(d).ok(),
        })
        .collect()
}

/// How one case is made from a seed.
#[derive(Debug, Clone)]
enum Mutation {
    /// Arbitrary bytes instead of the seed.
    Bytes(Vec<u8>),
    /// Arbitrary printable text (any script) instead of the seed.
    Text(String),
    /// Byte edits of the seed: (position, byte, 0 overwrite / 1 insert / 2 delete).
    Edits(Vec<(usize, u8, u8)>),
    /// The seed cut at this fraction of its length.
    Truncate(f64),
    /// The `n`th JSON scalar of the seed replaced by value number `kind` of [`flip_value`].
    Flip(usize, usize),
    /// A range of the seed (start, length) copied to a position.
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(Mutation::Bytes),
        "\\PC{0,300}".prop_map(Mutation::Text),
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..16)
            .prop_map(Mutation::Edits),
        (0.0f64..1.0).prop_map(Mutation::Truncate),
        (0usize..400, 0usize..FLIPS).prop_map(|(n, k)| Mutation::Flip(n, k)),
        (any::<usize>(), 0usize..200, any::<usize>())
            .prop_map(|(s, l, at)| Mutation::Splice(s, l, at)),
    ]
}

const FLIPS: usize = 10;

/// The JSON values a scalar is flipped to: every other type, and numbers no field can hold.
fn flip_value(kind: usize) -> serde_json::Value {
    use serde_json::json;
    match kind {
        0 => json!(null),
        1 => json!("x"),
        2 => json!(""),
        3 => json!(-1),
        4 => json!(1.0e300),
        5 => json!(true),
        6 => json!([]),
        7 => json!({"a": [1]}),
        8 => serde_json::from_str("18446744073709551616").unwrap(),
        _ => json!(i64::MIN),
    }
}

fn flip(v: &mut serde_json::Value, n: &mut usize, with: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Object(m) => m.values_mut().any(|x| flip(x, n, with)),
        Value::Array(a) => a.iter_mut().any(|x| flip(x, n, with)),
        _ => {
            if *n == 0 {
                *v = with.clone();
                true
            } else {
                *n -= 1;
                false
            }
        }
    }
}

fn apply(seed: &Seed, m: &Mutation) -> Vec<u8> {
    let s = &seed.bytes;
    match m {
        Mutation::Bytes(b) => b.clone(),
        Mutation::Text(t) => t.as_bytes().to_vec(),
        Mutation::Edits(edits) => {
            let mut b = s.clone();
            for &(pos, byte, op) in edits {
                match op {
                    0 if !b.is_empty() => {
                        let at = pos % b.len();
                        b[at] = byte;
                    }
                    1 => {
                        let at = pos % (b.len() + 1);
                        b.insert(at, byte);
                    }
                    _ if !b.is_empty() => {
                        let at = pos % b.len();
                        b.remove(at);
                    }
                    _ => {}
                }
            }
            b
        }
        Mutation::Truncate(f) => s[..(s.len() as f64 * f) as usize].to_vec(),
        Mutation::Flip(n, kind) => match &seed.json {
            Some(v) => {
                let mut v = v.clone();
                let mut n = *n;
                flip(&mut v, &mut n, &flip_value(*kind));
                v.to_string().into_bytes()
            }
            None => s[..s.len().min(*n * 8)].to_vec(),
        },
        Mutation::Splice(start, len, at) => {
            if s.is_empty() {
                return Vec::new();
            }
            let start = start % s.len();
            let end = (start + len).min(s.len());
            let mut b = s.clone();
            let at = at % (b.len() + 1);
            b.splice(at..at, s[start..end].iter().copied());
            b
        }
    }
}

/// Run `check` on `cases()` inputs made from `seeds`; print the count and the time taken.
/// `check` gets the index of the seed the case was made from, and the case.
fn fuzz(parser: &str, seeds: &[Seed], check: impl Fn(usize, &[u8]) -> Result<(), TestCaseError>) {
    assert!(!seeds.is_empty(), "{parser}: no seeds");
    let n = cases();
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let result = runner.run(&(0..seeds.len(), mutation()), |(i, m)| {
        check(i, &apply(&seeds[i], &m))
    });
    println!(
        "fuzz {parser}: {n} cases from {} seeds in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{parser}: {e}");
    }
}

/// A line and column (1-based, column in characters) that lie inside `text` (or just past its end).
fn inside(text: &str, line: usize, column: usize) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(line >= 1 && column >= 1, "line {line} column {column}");
    prop_assert!(line <= lines.len(), "line {line} of {}", lines.len());
    let width = lines[line - 1].chars().count();
    prop_assert!(
        column <= width + 1,
        "column {column} of a {width}-char line"
    );
    Ok(())
}

#[cfg(feature = "http-transport")]
mod http_parsers {
    use super::*;
    use rb_core::{ErrorKind, ProbeError};
    use rb_probes::common::ProbeSite;
    use rb_probes::transport::HttpResponse;

    pub(super) fn site() -> ProbeSite<'static> {
        ProbeSite {
            probe: "fuzz.parse",
            target: "fuzz-target",
            endpoint: "http://127.0.0.1:1/fuzz",
        }
    }

    pub(super) fn ok(body: &[u8]) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    /// An error from a 200 answer: names the target and the endpoint, says what was wrong, and is a
    /// bad response (or `Rejected` when the body carries the server's own error).
    pub(super) fn sound<T>(
        r: Result<T, ProbeError>,
        rejected_ok: bool,
    ) -> Result<(), TestCaseError> {
        if let Err(e) = r {
            prop_assert_eq!(&e.target, "fuzz-target");
            prop_assert!(e.endpoint.contains("127.0.0.1:1"), "{}", e.endpoint);
            prop_assert!(!e.message.is_empty());
            prop_assert!(
                e.kind == ErrorKind::BadResponse || (rejected_ok && e.kind == ErrorKind::Rejected),
                "{:?}: {}",
                e.kind,
                e.message
            );
            let _ = e.to_string();
        }
        Ok(())
    }
}

#[cfg(feature = "cassandra")]
#[test]
fn nodetool_status_text() {
    use rb_probes::cassandra::parse_status;
    let seeds = seeds(&[
        "rb-probes/tests/fixtures/nodetool/real_5_0_all_up.txt",
        "rb-probes/tests/fixtures/nodetool/real_5_0_one_down.txt",
        "rb-probes/tests/fixtures/nodetool/real_5_0_one_killed.txt",
        "rb-probes/tests/fixtures/nodetool/sample_1.txt",
        "rb-probes/tests/fixtures/nodetool/sample_3.txt",
        "rb-probes/tests/fixtures/nodetool/sample_4.txt",
        "rb-probes/tests/fixtures/nodetool/sample_6.txt",
    ]);
    fuzz("nodetool status", &seeds, |_, b| {
        let text = String::from_utf8_lossy(b);
        match parse_status(&text) {
            Ok(p) => {
                for i in &p.not_understood {
                    inside(&text, i.line, i.column)?;
                }
            }
            Err(e) => inside(&text, e.line(), e.issue.column)?,
        }
        Ok(())
    });
}

#[cfg(feature = "flink")]
#[test]
fn flink_rest_json() {
    use http_parsers::{site, sound};
    use rb_probes::flink::model::{
        AggregatedMetric, Backpressure, Checkpoints, Exceptions, JobDetail, JobStatusBody,
        JobsOverview, MetricValue, Overview,
    };
    use rb_probes::flink::{checkpoint_health, classify};
    use rb_probes::transport::parse_json;
    // (capture, shape); the shape index picks the type in the match below
    const SHAPES: [(&str, usize); 13] = [
        ("real/flink/overview.json", 0),
        ("real/flink/overview_after_tm_kill.json", 0),
        ("real/flink/jobs_overview.json", 1),
        ("real/flink/job_status.json", 2),
        ("real/flink/job_status_created_after_tm_kill.json", 2),
        ("real/flink/job_detail.json", 3),
        ("real/flink/job_checkpoints.json", 4),
        ("real/flink/job_checkpoints_after_savepoint.json", 4),
        ("real/flink/job_exceptions.json", 5),
        ("real/flink/job_exceptions_after_tm_kill.json", 5),
        ("real/flink/job_metrics_get.json", 6),
        ("flink/vertex_counter_subtasks_metrics_agg.json", 7),
        ("flink/vertex_counter_backpressure.json", 8),
    ];
    let names: Vec<String> = SHAPES
        .iter()
        .map(|(n, _)| format!("rb-testkit/fixtures/{n}"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let seeds = seeds(&names);
    assert!(seeds.iter().all(|s| s.json.is_some()));
    // each case is read as the shape of the capture it came from, and as one other shape
    fuzz("flink REST", &seeds, |i, b| {
        let s = site();
        for shape in [SHAPES[i].1, b.len() % 9] {
            match shape {
                0 => sound(parse_json::<Overview>(&s, b), false)?,
                1 => sound(parse_json::<JobsOverview>(&s, b), false)?,
                2 => sound(parse_json::<JobStatusBody>(&s, b), false)?,
                3 => sound(parse_json::<JobDetail>(&s, b), false)?,
                4 => match parse_json::<Checkpoints>(&s, b) {
                    Ok(c) => {
                        let _ = checkpoint_health(&c, i64::MAX);
                        let _ = checkpoint_health(&c, i64::MIN);
                        let _ = checkpoint_health(&c, 0);
                    }
                    Err(e) => sound::<()>(Err(e), false)?,
                },
                5 => match parse_json::<Exceptions>(&s, b) {
                    Ok(e) => {
                        for x in &e.history.entries {
                            let _ = classify(&x.exception_name, &x.stacktrace);
                            let _ = rb_probes::flink::classify::message(
                                &x.exception_name,
                                &x.stacktrace,
                                80,
                            );
                        }
                    }
                    Err(e) => sound::<()>(Err(e), false)?,
                },
                6 => sound(parse_json::<Vec<MetricValue>>(&s, b), false)?,
                7 => sound(parse_json::<Vec<AggregatedMetric>>(&s, b), false)?,
                _ => sound(parse_json::<Backpressure>(&s, b), false)?,
            }
        }
        // the exception classifier reads free text
        let text = String::from_utf8_lossy(b);
        let _ = classify("java.lang.RuntimeException", &text);
        let _ = rb_probes::flink::classify::headlines(&text).count();
        let _ = rb_probes::flink::classify::message(&text, &text, 3);
        Ok(())
    });
}

#[cfg(feature = "nessie")]
#[test]
fn nessie_rest_json() {
    use http_parsers::{site, sound};
    use rb_probes::nessie::model::{
        Health, LogPage, NessieConfig, ReferencesPage, SingleReference,
    };
    use rb_probes::transport::parse_json;
    let seeds = seeds(&[
        "rb-testkit/fixtures/real/nessie/config_200.json",
        "rb-testkit/fixtures/real/nessie/trees_200.json",
        "rb-testkit/fixtures/real/nessie/tree_branch_200.json",
        "rb-testkit/fixtures/real/nessie/history_200.json",
        "rb-testkit/fixtures/real/nessie/q_health_200.json",
        "rb-testkit/fixtures/real/nessie/q_health_ready_200.json",
    ]);
    fuzz("nessie REST", &seeds, |_, b| {
        let s = site();
        sound(parse_json::<NessieConfig>(&s, b), false)?;
        sound(parse_json::<ReferencesPage>(&s, b), false)?;
        sound(parse_json::<SingleReference>(&s, b), false)?;
        sound(parse_json::<Health>(&s, b), false)?;
        match parse_json::<LogPage>(&s, b) {
            Ok(l) => {
                let log: Vec<_> = l.log_entries.into_iter().map(|e| e.commit_meta).collect();
                let d = rb_probes::nessie::diverge(&log, &log[log.len() / 2..]);
                let _ = format!("{d:?}");
                let _ = rb_probes::nessie::diverge(&log[log.len() / 2..], &log);
            }
            Err(e) => sound::<()>(Err(e), false)?,
        }
        Ok(())
    });
}

#[cfg(feature = "kafka-connect")]
#[test]
fn kafka_connect_rest_json() {
    use http_parsers::{ok, site, sound};
    use rb_probes::kafka_connect::{bound_trace, classify_trace, parse_listing, parse_status};
    let seeds = seeds(&[
        "rb-testkit/fixtures/real/kafka-connect/list_expand_status_failed_200.json",
        "rb-testkit/fixtures/real/kafka-connect/list_expand_status_running_200.json",
        "rb-testkit/fixtures/real/kafka-connect/status_task_failed_200.json",
        "rb-testkit/fixtures/real/kafka-connect/status_running_200.json",
        "rb-testkit/fixtures/real/kafka-connect/status_paused_200.json",
    ]);
    fuzz("kafka connect REST", &seeds, |_, b| {
        let s = site();
        let r = ok(b);
        match parse_listing(&s, &r) {
            Ok(m) => {
                for e in m.values() {
                    let _ = format!("{e:?}");
                }
            }
            Err(e) => sound::<()>(Err(e), false)?,
        }
        sound(parse_status(&s, &r), false)?;
        let text = String::from_utf8_lossy(b);
        let _ = classify_trace(&text);
        for max in [0, 1, 7, 100] {
            let t = bound_trace(&text, max);
            prop_assert!(t.chars().count() <= text.chars().count().max(max) + 64);
        }
        Ok(())
    });
}

#[cfg(feature = "trino")]
#[test]
fn trino_rest_json() {
    use http_parsers::{ok, site, sound};
    use rb_probes::trino::{
        parse_data_size, parse_duration, parse_query_list, parse_query_results,
    };
    let mut seeds = seeds(&["rb-testkit/fixtures/trino/query_list_item_derived.json"]);
    seeds.extend(inline(&[
        r#"{"id":"20240418_085012_00004_abcde","infoUri":"http://127.0.0.1:8080/ui/query.html?q","nextUri":"http://127.0.0.1:8080/v1/statement/executing/q/y/1","columns":[{"name":"n","type":"bigint","typeSignature":{"rawType":"bigint","arguments":[]}}],"data":[[1],[2]],"stats":{"state":"RUNNING","queued":false,"scheduled":true,"elapsedTimeMillis":12}}"#,
        r#"{"id":"q1","stats":{"state":"FAILED"},"error":{"message":"line 1:8: Column 'x' cannot be resolved","errorCode":47,"errorName":"COLUMN_NOT_FOUND","errorType":"USER_ERROR"}}"#,
    ]));
    fuzz("trino REST", &seeds, |_, b| {
        let s = site();
        let r = ok(b);
        sound(parse_query_list(&s, &r), false)?;
        sound(parse_query_results(&s, &r), true)?;
        let text = String::from_utf8_lossy(b);
        // the airlift units, on every token of the answer (`"12.31s"`, `"1.21GB"`, mutated)
        let tokens = text.split(|c: char| !(c.is_ascii_alphanumeric() || ".+-".contains(c)));
        for unit in std::iter::once(&text[..]).chain(tokens) {
            if let Some(d) = parse_duration(unit) {
                prop_assert!(d.is_finite() && d >= 0.0, "{unit:?} → {d}");
            }
            if let Some(d) = parse_data_size(unit) {
                prop_assert!(d.is_finite() && d >= 0.0, "{unit:?} → {d}");
            }
        }
        Ok(())
    });
}

#[cfg(feature = "prometheus")]
#[test]
fn prometheus_http_api_json() {
    use http_parsers::{site, sound};
    use rb_probes::prometheus::parse_body;
    let seeds = seeds(&[
        "rb-testkit/fixtures/prometheus/docs_api_query_instant_up.json",
        "rb-testkit/fixtures/prometheus/docs_api_query_range_up.json",
        "rb-testkit/fixtures/prometheus/openapi_query_200_histogramResult.json",
        "rb-testkit/fixtures/prometheus/openapi_query_200_matrixResult.json",
        "rb-testkit/fixtures/prometheus/openapi_query_200_scalarResult.json",
        "rb-testkit/fixtures/prometheus/openapi_query_200_vectorResult.json",
        "rb-testkit/fixtures/prometheus/openapi_query_range_200_histogramResult.json",
        "rb-testkit/fixtures/prometheus/openapi_query_default_tsdbNotReady.json",
    ]);
    fuzz("prometheus HTTP API", &seeds, |_, b| {
        sound(parse_body(&site(), b), true)
    });
}

#[cfg(feature = "loki")]
#[test]
fn loki_query_range_json() {
    use http_parsers::{ok, site, sound};
    use rb_probes::loki::parse_streams;
    let seeds = inline(&[
        r#"{"status":"success","data":{"resultType":"streams","result":[{"stream":{"container":"flink-jobmanager","level":"error"},"values":[["1767436000000000000","org.apache.avro.AvroTypeException: Found int, expecting string"],["1767435990000000000","restarting job",{"trace_id":"abc"}]]},{"stream":{"app":"connect"},"values":[]}],"stats":{"summary":{"execTime":0.001}}}}"#,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"app":"x"},"values":[[1767436000,"3"]]}]}}"#,
        r#"{"status":"error","errorType":"bad_data","error":"parse error at line 1, col 4: syntax error: unexpected IDENTIFIER"}"#,
    ]);
    fuzz("loki query_range", &seeds, |_, b| {
        sound(parse_streams(&site(), &ok(b)), true)
    });
}

#[cfg(any(feature = "prometheus", feature = "minio"))]
#[test]
fn prometheus_text_exposition() {
    use rb_probes::exposition::parse;
    let seeds = seeds(&["rb-testkit/fixtures/minio/metrics_v2_cluster_capacity_derived.prom"]);
    let mut seeds = seeds;
    seeds.extend(inline(&[
        "# HELP rb_orders_written_total Orders the pipeline wrote.\n# TYPE rb_orders_written_total counter\nrb_orders_written_total{sink=\"paimon\",table=\"lake.orders\"} 81234 1767436000000\nrb_orders_written_total{sink=\"doris\",table=\"pay\\\\ments\"}    17 1767436000000\nrb_last_error_info{message=\"line one\\nquote \\\" here\"} 1\nrb_queue_depth 12.5\nrb_lag_seconds{partition=\"3\"} +Inf -1200\n# TYPE rb_commit_seconds summary\nrb_commit_seconds{quantile=\"0.99\"} 0.42\nrb_commit_seconds_sum 1.2e+03\nrb_commit_seconds_count 2990\nrb_ratio NaN\n",
    ]));
    fuzz("prometheus text exposition", &seeds, |_, b| {
        let text = String::from_utf8_lossy(b);
        match parse(&text) {
            Ok(x) => {
                let _ = x.first("minio_cluster_capacity_usable_free_bytes");
            }
            Err(e) => inside(&text, e.line, e.column)?,
        }
        minio_metrics(b)
    });
}

/// MinIO's metrics answer: the exposition parser behind an HTTP answer.
#[cfg(feature = "minio")]
fn minio_metrics(b: &[u8]) -> Result<(), TestCaseError> {
    use http_parsers::{ok, site, sound};
    sound(rb_probes::minio::parse_metrics(&site(), &ok(b)), false)
}

#[cfg(not(feature = "minio"))]
fn minio_metrics(_: &[u8]) -> Result<(), TestCaseError> {
    Ok(())
}

#[cfg(feature = "sql")]
#[test]
fn sql_literal_redaction() {
    use rb_probes::sql::{redact_literals, Dialect};
    let seeds = inline(&[
        "SELECT E'a\\'b', $t$x$t$, \"id\", `c`, 1.5e-3 /* c */ -- x\n FROM t WHERE pw = 'hunter2' AND n = 42",
        "UPDATE users SET token = 'abc''def', note = \"q\\\"x\" # trailing 7\nWHERE id IN (1, 2, 0xff)",
        "select pg_terminate_backend(pid) from pg_stat_activity where state = 'idle in transaction' and usename <> 'rb'",
    ]);
    fuzz("sql literal redaction", &seeds, |_, b| {
        let text = String::from_utf8_lossy(b);
        for d in [Dialect::Postgres, Dialect::Mysql] {
            // literals become `?` and comments spaces: never longer than the statement
            let out = redact_literals(&text, d);
            prop_assert!(
                out.chars().count() <= text.chars().count(),
                "{d:?}: {text:?} → {out:?}"
            );
        }
        Ok(())
    });
}
