//! rb-probes' Prometheus probe against a real Prometheus (Debian's 2.42, scraping itself every
//! second): every request the probe makes is replayed with a plain HTTP client, and the probe's
//! samples must equal the API's JSON answer — series labels, values (incl. `NaN`, `±Inf`) and
//! times —, its errors must carry the API's `errorType` and message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_core::time::{Clock, Timestamp};
use rb_core::{async_trait, ErrorKind, Observation, Probe, ProbeContext, Target};
use rb_peers::PeerEnv;
use rb_probes::prometheus::{PromQuery, PromResult, ResultType, DEFAULT_METRIC, SERIES_METRIC};
use rb_probes::transport::{HttpClient, HttpRequest, HttpResponse, ReqwestClient, TransportError};
use serde_json::Value;

/// Forwards to reqwest and remembers the paths asked.
#[derive(Debug)]
struct Recording {
    inner: ReqwestClient,
    paths: Mutex<Vec<String>>,
}

#[async_trait]
impl HttpClient for Recording {
    fn base_url(&self) -> &str {
        self.inner.base_url()
    }
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.paths.lock().unwrap().push(request.path.clone());
        self.inner.send(request).await
    }
}

struct Prom {
    url: String,
    version: String,
}

fn prom() -> Prom {
    let env = PeerEnv::load().unwrap();
    Prom {
        url: env.get("PROM_URL").unwrap().to_string(),
        version: env.opt("PROM_VERSION").unwrap_or("").to_string(),
    }
}

/// A context whose "now" is 5 s in the past, so that replaying the same request sees the same data
/// (no scrape can still land before the evaluation time).
fn ctx() -> ProbeContext {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    ProbeContext::with_timeout(
        Clock::starting_at(Timestamp(now - 5_000)),
        Duration::from_secs(20),
    )
}

fn client(p: &Prom) -> std::sync::Arc<Recording> {
    std::sync::Arc::new(Recording {
        inner: ReqwestClient::new(p.url.clone()).unwrap(),
        paths: Mutex::new(Vec::new()),
    })
}

async fn replay(p: &Prom, c: &Recording) -> (u16, Value) {
    let path = c.paths.lock().unwrap().last().cloned().unwrap();
    let r = reqwest::get(format!("{}{path}", p.url)).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn num(v: &Value) -> f64 {
    match v.as_str().unwrap() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    }
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// Every float point of the JSON answer is one sample of the observation, and nothing else is
/// (besides the series count).
fn assert_samples_equal_answer(o: &Observation, answer: &Value, name_override: Option<&str>) {
    let data = &answer["data"];
    let mut want: Vec<(String, String, f64, u64)> = Vec::new();
    let ms = |t: &Value| (t.as_f64().unwrap() * 1000.0).round() as u64;
    match data["resultType"].as_str().unwrap() {
        "scalar" => {
            let r = &data["result"];
            want.push((
                name_override.unwrap_or(DEFAULT_METRIC).into(),
                "{}".into(),
                num(&r[1]),
                ms(&r[0]),
            ));
        }
        kind => {
            for s in data["result"].as_array().unwrap() {
                let mut labels = s["metric"].as_object().unwrap().clone();
                let own = labels
                    .remove("__name__")
                    .and_then(|v| v.as_str().map(str::to_string));
                let name = name_override
                    .map(str::to_string)
                    .or(own)
                    .unwrap_or_else(|| DEFAULT_METRIC.to_string());
                let l: std::collections::BTreeMap<String, String> = labels
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
                    .collect();
                let points: Vec<Value> = if kind == "vector" {
                    vec![s["value"].clone()]
                } else {
                    s["values"].as_array().unwrap().clone()
                };
                for p in points {
                    want.push((name.clone(), format!("{l:?}"), num(&p[1]), ms(&p[0])));
                }
            }
        }
    }
    let mut got: Vec<(String, String, f64, u64)> = o
        .samples
        .iter()
        .filter(|s| s.name != SERIES_METRIC)
        .map(|s| (s.name.clone(), format!("{:?}", s.labels), s.value, s.at.0))
        .collect();
    want.sort_by(|a, b| (&a.0, &a.1, a.3).cmp(&(&b.0, &b.1, b.3)));
    got.sort_by(|a, b| (&a.0, &a.1, a.3).cmp(&(&b.0, &b.1, b.3)));
    assert_eq!(got.len(), want.len(), "samples {got:?}\nanswer {answer}");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g.0 == w.0 && g.1 == w.1 && g.3 == w.3 && same_value(g.2, w.2),
            "probe {g:?} vs API {w:?}"
        );
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn samples_equal_the_http_api_answers() {
    let p = prom();
    let target = Target::new("prometheus", "tier");

    // instant vectors, with and without __name__, a configured name
    for (query, name) in [
        ("up", None),
        ("prometheus_build_info", None),
        ("sum by (job) (up)", None),
        ("prometheus_tsdb_head_series", Some("head_series")),
    ] {
        let c = client(&p);
        let mut q = PromQuery::instant(c.clone(), target.clone(), query);
        if let Some(n) = name {
            q = q.metric_name(n);
        }
        let o = q.observe(&ctx()).await.unwrap();
        let (status, answer) = replay(&p, &c).await;
        assert_eq!(status, 200);
        assert_eq!(answer["data"]["resultType"], "vector");
        assert!(
            !answer["data"]["result"].as_array().unwrap().is_empty(),
            "{query}: {answer}"
        );
        assert_samples_equal_answer(&o, &answer, name);
        let f: PromResult = o.facts.get().unwrap().unwrap();
        assert_eq!(
            f.total_series,
            answer["data"]["result"].as_array().unwrap().len()
        );
    }

    // the build info carries the server's version
    let c = client(&p);
    let o = PromQuery::instant(c, target.clone(), "prometheus_build_info")
        .observe(&ctx())
        .await
        .unwrap();
    let s = o.samples_named("prometheus_build_info").next().unwrap();
    assert_eq!(s.value, 1.0);
    if !p.version.is_empty() {
        assert_eq!(s.labels["version"], p.version);
    }

    // scalars, with the special values
    for (query, want) in [
        ("1/0", f64::INFINITY),
        ("-1/0", f64::NEG_INFINITY),
        ("0/0", f64::NAN),
        ("scalar(sum(up)) * 2", 2.0),
    ] {
        let c = client(&p);
        let o = PromQuery::instant(c.clone(), target.clone(), query)
            .observe(&ctx())
            .await
            .unwrap();
        let (_, answer) = replay(&p, &c).await;
        assert_eq!(answer["data"]["resultType"], "scalar");
        assert_samples_equal_answer(&o, &answer, None);
        let v = o.samples_named(DEFAULT_METRIC).next().unwrap().value;
        assert!(same_value(v, want), "{query}: {v}");
        assert_eq!(
            o.facts.get::<PromResult>().unwrap().unwrap().result_type,
            ResultType::Scalar
        );
    }

    // a range selector in an instant query, and a range query
    let c = client(&p);
    let o = PromQuery::instant(c.clone(), target.clone(), "up[10s]")
        .observe(&ctx())
        .await
        .unwrap();
    let (_, answer) = replay(&p, &c).await;
    assert_eq!(answer["data"]["resultType"], "matrix");
    assert_samples_equal_answer(&o, &answer, None);
    let c = client(&p);
    let o = PromQuery::range(
        c.clone(),
        target.clone(),
        "rate(prometheus_http_requests_total[10s])",
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .observe(&ctx())
    .await
    .unwrap();
    let (_, answer) = replay(&p, &c).await;
    assert_eq!(answer["data"]["resultType"], "matrix");
    assert_samples_equal_answer(&o, &answer, None);
    assert!(o.samples.len() > 1);

    // an empty result: a valid observation with a zero series count
    let c = client(&p);
    let o = PromQuery::instant(c, target.clone(), "up{job=\"no-such-job\"}")
        .observe(&ctx())
        .await
        .unwrap();
    assert!(o.complete);
    assert_eq!(o.samples.len(), 1);
    assert_eq!(o.samples_named(SERIES_METRIC).next().unwrap().value, 0.0);

    // errors carry the API's errorType and message
    for (query, want_type) in [("sum(up", "bad_data"), ("up[5m] + 1", "bad_data")] {
        let c = client(&p);
        let e = PromQuery::instant(c.clone(), target.clone(), query)
            .observe(&ctx())
            .await
            .unwrap_err();
        let (status, answer) = replay(&p, &c).await;
        assert_eq!(e.kind(), ErrorKind::Rejected, "{query}");
        assert_eq!(answer["errorType"], want_type, "{answer}");
        let msg = answer["error"].as_str().unwrap();
        assert!(
            e.message
                .contains(&format!("HTTP {status}: {want_type}: {msg}")),
            "{e}\n{answer}"
        );
    }
}
