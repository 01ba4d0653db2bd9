//! The Prometheus API's JSON: the envelope, the four result types, values as strings.

use std::collections::BTreeMap;

use rb_core::{ErrorKind, ProbeError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::common::ProbeSite;
use crate::transport::{check_status, parse_json, HttpResponse};

/// A query's result type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultType {
    /// An instant vector: one value per series.
    Vector,
    /// A range vector: many values per series.
    Matrix,
    /// One number.
    Scalar,
    /// One string.
    String,
}

/// A native histogram's count and sum (its buckets are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Observation count.
    #[serde(with = "prom_value")]
    pub count: f64,
    /// Sum of observations.
    #[serde(with = "prom_value")]
    pub sum: f64,
}

/// One series: its labels and its points `(unix seconds, value)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromSeries {
    /// The labels, `__name__` included when Prometheus kept it.
    pub labels: BTreeMap<String, String>,
    /// Float points (time in Unix seconds, value; `NaN` and `±Inf` kept — written as Prometheus
    /// writes them when serialized).
    #[serde(default, with = "points")]
    pub points: Vec<(f64, f64)>,
    /// Native histogram points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub histograms: Vec<(f64, Histogram)>,
}

impl PromSeries {
    /// The value of the latest float point.
    pub fn latest(&self) -> Option<f64> {
        self.points.last().map(|(_, v)| *v)
    }
}

/// A decoded successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PromData {
    /// The result type.
    pub result_type: ResultType,
    /// Series of a vector or matrix result.
    pub series: Vec<PromSeries>,
    /// A scalar result.
    pub scalar: Option<(f64, f64)>,
    /// A string result.
    pub string: Option<(f64, String)>,
    /// `warnings` of the envelope.
    pub warnings: Vec<String>,
    /// `infos` of the envelope.
    pub infos: Vec<String>,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<RawData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

#[derive(Deserialize)]
struct RawData {
    #[serde(rename = "resultType")]
    result_type: ResultType,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawHist {
    count: String,
    sum: String,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    histogram: Option<(f64, RawHist)>,
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    histograms: Vec<(f64, RawHist)>,
}

/// Decode a response of `/api/v1/query` or `/api/v1/query_range`.
///
/// - `status: "error"` → [`ErrorKind::Rejected`] (`errorType: message`), 401/403 → unauthorized;
/// - another non-2xx answer → rejected with the status and the start of the body;
/// - anything that is not the API's JSON → [`ErrorKind::BadResponse`] naming the JSON pointer
///   (`/data/result/3/value/1`), plus line and column for the envelope.
pub fn parse_response(site: &ProbeSite<'_>, resp: &HttpResponse) -> Result<PromData, ProbeError> {
    if !resp.is_success() {
        if let Ok(env) = serde_json::from_slice::<Envelope>(&resp.body) {
            if env.status == "error" {
                let kind = match resp.status {
                    401 | 403 => ErrorKind::Unauthorized,
                    _ => ErrorKind::Rejected,
                };
                return Err(site.error(kind, api_error(resp.status, &env)));
            }
        }
        check_status(site, resp)?;
    }
    parse_body(site, &resp.body)
}

fn api_error(status: u16, env: &Envelope) -> String {
    format!(
        "HTTP {status}: {}: {}",
        env.error_type.as_deref().unwrap_or("error"),
        env.error.as_deref().unwrap_or("(no message)")
    )
}

/// Decode a 2xx body (see [`parse_response`]).
pub fn parse_body(site: &ProbeSite<'_>, body: &[u8]) -> Result<PromData, ProbeError> {
    let env: Envelope = parse_json(site, body)?;
    match env.status.as_str() {
        "success" => {}
        "error" => return Err(site.error(ErrorKind::Rejected, api_error(200, &env))),
        other => {
            return Err(site.error(
                ErrorKind::BadResponse,
                format!("malformed JSON at /status: unknown status {other:?}"),
            ))
        }
    }
    let Some(data) = env.data else {
        return Err(site.error(
            ErrorKind::BadResponse,
            "malformed JSON at /data: a successful answer has no data",
        ));
    };
    let mut out = PromData {
        result_type: data.result_type,
        series: Vec::new(),
        scalar: None,
        string: None,
        warnings: env.warnings,
        infos: env.infos,
    };
    match data.result_type {
        ResultType::Vector => {
            let items: Vec<VectorItem> = inner(site, data.result)?;
            for (i, it) in items.into_iter().enumerate() {
                let ptr = format!("/data/result/{i}");
                let mut s = PromSeries {
                    labels: it.metric,
                    points: Vec::new(),
                    histograms: Vec::new(),
                };
                match (it.value, it.histogram) {
                    (Some((t, v)), None) => {
                        s.points.push((t, value(site, &format!("{ptr}/value/1"), &v)?))
                    }
                    (None, Some((t, h))) => {
                        s.histograms.push((t, hist(site, &format!("{ptr}/histogram/1"), &h)?))
                    }
                    _ => {
                        return Err(site.error(
                            ErrorKind::BadResponse,
                            format!("malformed JSON at {ptr}: a sample needs exactly one of value and histogram"),
                        ))
                    }
                }
                out.series.push(s);
            }
        }
        ResultType::Matrix => {
            let items: Vec<MatrixItem> = inner(site, data.result)?;
            for (i, it) in items.into_iter().enumerate() {
                let ptr = format!("/data/result/{i}");
                let mut s = PromSeries {
                    labels: it.metric,
                    points: Vec::with_capacity(it.values.len()),
                    histograms: Vec::new(),
                };
                for (j, (t, v)) in it.values.into_iter().enumerate() {
                    s.points
                        .push((t, value(site, &format!("{ptr}/values/{j}/1"), &v)?));
                }
                for (j, (t, h)) in it.histograms.into_iter().enumerate() {
                    s.histograms
                        .push((t, hist(site, &format!("{ptr}/histograms/{j}/1"), &h)?));
                }
                out.series.push(s);
            }
        }
        ResultType::Scalar => {
            let (t, v): (f64, String) = inner(site, data.result)?;
            out.scalar = Some((t, value(site, "/data/result/1", &v)?));
        }
        ResultType::String => {
            let (t, v): (f64, String) = inner(site, data.result)?;
            out.string = Some((t, v));
        }
    }
    Ok(out)
}

fn inner<T: DeserializeOwned>(site: &ProbeSite<'_>, v: serde_json::Value) -> Result<T, ProbeError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let ptr = pointer(e.path());
        site.error(
            ErrorKind::BadResponse,
            format!("malformed JSON at /data/result{ptr}: {}", e.into_inner()),
        )
    })
}

fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in path.iter() {
        s.push('/');
        match seg {
            Segment::Seq { index } => s.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                s.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => s.push('?'),
        }
    }
    s
}

fn value(site: &ProbeSite<'_>, ptr: &str, s: &str) -> Result<f64, ProbeError> {
    parse_value(s).ok_or_else(|| {
        site.error(
            ErrorKind::BadResponse,
            format!("malformed JSON at {ptr}: {s:?} is not a sample value"),
        )
    })
}

fn hist(site: &ProbeSite<'_>, ptr: &str, h: &RawHist) -> Result<Histogram, ProbeError> {
    Ok(Histogram {
        count: value(site, &format!("{ptr}/count"), &h.count)?,
        sum: value(site, &format!("{ptr}/sum"), &h.sum)?,
    })
}

/// A sample value as Prometheus writes it: a Go float, `NaN`, `+Inf`, `-Inf`.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

/// A value as Prometheus writes it.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

mod prom_value {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_value(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_value(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a sample value")))
    }
}

/// `Option<(time, value)>` with the value written as Prometheus writes it (`NaN`, `+Inf`).
pub(crate) mod opt_point {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<(f64, f64)>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|(t, x)| (t, super::format_value(x))).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(f64, f64)>, D::Error> {
        let wire: Option<(f64, String)> = Option::deserialize(d)?;
        wire.map(|(t, s)| {
            super::parse_value(&s)
                .map(|v| (t, v))
                .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a sample value")))
        })
        .transpose()
    }
}

mod points {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        let wire: Vec<(f64, String)> = v
            .iter()
            .map(|(t, x)| (*t, super::format_value(*x)))
            .collect();
        wire.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        let wire: Vec<(f64, String)> = Vec::deserialize(d)?;
        wire.into_iter()
            .map(|(t, s)| {
                super::parse_value(&s)
                    .map(|v| (t, v))
                    .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a sample value")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn site() -> ProbeSite<'static> {
        ProbeSite {
            probe: "prometheus.query",
            target: "prom",
            endpoint: "http://127.0.0.1:9090/api/v1/query",
        }
    }

    const VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"__name__":"up","job":"prometheus","instance":"localhost:9090"},"value":[1435781451.781,"1"]},
        {"metric":{"__name__":"up","job":"node","instance":"localhost:9100"},"value":[1435781451.781,"NaN"]}]},
        "warnings":["partial answer"]}"#;

    #[test]
    fn decodes_the_docs_vector() {
        let d = parse_body(&site(), VECTOR.as_bytes()).unwrap();
        assert_eq!(d.result_type, ResultType::Vector);
        assert_eq!(d.series.len(), 2);
        assert_eq!(d.series[0].points, vec![(1435781451.781, 1.0)]);
        assert!(d.series[1].points[0].1.is_nan());
        assert_eq!(d.warnings, vec!["partial answer".to_string()]);
    }

    #[test]
    fn special_values() {
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("1e+00"), Some(1.0));
        assert_eq!(parse_value("infinity"), None);
        assert_eq!(parse_value(""), None);
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn series_with_special_values_round_trip_through_json() {
        let s = PromSeries {
            labels: BTreeMap::new(),
            points: vec![(1.0, f64::INFINITY), (2.0, 3.5)],
            histograms: vec![],
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["points"][0][1], "+Inf");
        let back: PromSeries = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn errors_name_the_json_pointer() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"one"]}]}}"#;
        let e = parse_body(&site(), body.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadResponse);
        assert!(
            e.message.contains("/data/result/1/value/1"),
            "{}",
            e.message
        );

        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"b"},"values":[[1,"1"],[2,7]]}]}}"#;
        let e = parse_body(&site(), body.as_bytes()).unwrap_err();
        assert!(
            e.message.contains("/data/result/0/values/1/1"),
            "{}",
            e.message
        );

        let body =
            "{\"status\":\"success\",\n\"data\":{\"resultType\":\"histogram\",\"result\":[]}}";
        let e = parse_body(&site(), body.as_bytes()).unwrap_err();
        assert!(
            e.message.contains("/data/resultType") && e.message.contains("line 2"),
            "{}",
            e.message
        );
    }

    #[test]
    fn error_envelopes_are_rejected_with_the_message() {
        let r = HttpResponse {
            status: 422,
            headers: vec![],
            body: br#"{"status":"error","errorType":"execution","error":"query timed out in expression evaluation"}"#.to_vec(),
            elapsed: std::time::Duration::ZERO,
        };
        let e = parse_response(&site(), &r).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(
            e.message.contains("execution: query timed out"),
            "{}",
            e.message
        );
        let r = HttpResponse {
            status: 503,
            body: b"Service Unavailable".to_vec(),
            ..r
        };
        let e = parse_response(&site(), &r).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(e.message.contains("503"), "{}", e.message);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_body(&site(), &b);
        }

        #[test]
        fn never_panics_on_mutated_answers(at in 0usize..1000, byte in any::<u8>(), cut in 0usize..1000) {
            for doc in [VECTOR, r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"+Inf"]]}]}}"#,
                        r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#] {
                let mut b = doc.as_bytes().to_vec();
                let i = at % b.len();
                b[i] = byte;
                b.truncate(cut.max(1));
                let _ = parse_body(&site(), &b);
            }
        }
    }
}
