//! The generic HTTP probe (the dashboard's "HTTP probe"): status, latency and body of one request.
//!
//! [`HttpProbe`] sends one `GET` (or `HEAD`) and checks the answer against its expectations: the
//! status (a set or a range, default any 2xx), the latency (optional bound) and the body (a substring
//! or a regular expression). Samples, as the Prometheus blackbox exporter names them:
//!
//! | metric | meaning |
//! | --- | --- |
//! | `probe_success` | 1 when every expectation held, 0 otherwise |
//! | `probe_http_status_code` | the status code |
//! | `probe_duration_seconds` | time from sending the request to the end of the body |
//! | `probe_http_content_length` | body length in bytes |
//!
//! **A failed expectation is an observation** (`probe_success` 0): the target answered, and what it
//! answered is the finding (a 503, a body without `"status":"UP"`, an answer slower than allowed).
//! **No answer is an error:** refused → unreachable, past the deadline → timeout, an answer cut off →
//! bad response.
//!
//! **Fact** [`HttpCheck`] (`http.check`): status, duration, the expectations that failed, and the
//! start of the body (bounded).
//!
//! **Least privilege:** one read-only request to one path; give it a client with credentials only
//! when the endpoint needs them (`HttpAuth`), and never against an endpoint that changes state.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::{ErrorKind, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Target};
use serde::{Deserialize, Serialize};

use crate::common::ProbeSite;
use crate::rest;
use crate::transport::{HttpClient, HttpRequest, Method};

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// The status code.
    pub status: u16,
    /// Request to end of body, seconds.
    pub duration_seconds: f64,
    /// Whether every expectation held.
    pub success: bool,
    /// The expectations that failed, for a human.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// The start of the body (500 characters at most).
    pub body_start: String,
}

impl FactType for HttpCheck {
    const KIND: &'static str = "http.check";
}

/// How the body must look.
#[derive(Clone)]
pub enum BodyMatch {
    /// Contains this text.
    Contains(String),
    /// Does not contain this text.
    Lacks(String),
    /// Matches this regular expression (anywhere, unless anchored).
    Regex(regex::Regex),
}

impl fmt::Debug for BodyMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyMatch::Contains(s) => write!(f, "contains {s:?}"),
            BodyMatch::Lacks(s) => write!(f, "lacks {s:?}"),
            BodyMatch::Regex(r) => write!(f, "matches /{}/", r.as_str()),
        }
    }
}

/// One HTTP check (see the [module docs](self)).
#[derive(Debug)]
pub struct HttpProbe<C> {
    client: C,
    target: Target,
    id: String,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    status: Vec<RangeInclusive<u16>>,
    body: Vec<BodyMatch>,
    max_latency: Option<Duration>,
}

impl<C: HttpClient> HttpProbe<C> {
    /// `GET path` (relative to the client's base URL), expecting any 2xx.
    pub fn get(client: C, target: Target, path: impl Into<String>) -> Self {
        Self {
            client,
            target,
            id: "http.check".into(),
            method: Method::Get,
            path: path.into(),
            headers: Vec::new(),
            status: vec![200..=299],
            body: Vec::new(),
            max_latency: None,
        }
    }

    /// `HEAD path` instead (no body to match).
    pub fn head(client: C, target: Target, path: impl Into<String>) -> Self {
        let mut p = Self::get(client, target, path);
        p.method = Method::Head;
        p
    }

    /// Expect one of these statuses (replaces the default 2xx).
    pub fn expect_status(mut self, codes: &[u16]) -> Self {
        self.status = codes.iter().map(|c| *c..=*c).collect();
        self
    }

    /// Expect a status in this range (replaces the default 2xx).
    pub fn expect_status_range(mut self, range: RangeInclusive<u16>) -> Self {
        self.status = vec![range];
        self
    }

    /// Expect the body to contain `text`.
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body.push(BodyMatch::Contains(text.into()));
        self
    }

    /// Expect the body not to contain `text`.
    pub fn body_lacks(mut self, text: impl Into<String>) -> Self {
        self.body.push(BodyMatch::Lacks(text.into()));
        self
    }

    /// Expect the body to match the regular expression `re`; an invalid one is an
    /// [`ErrorKind::Invalid`] error naming where it is wrong.
    pub fn body_matches(mut self, re: &str) -> Result<Self, ProbeError> {
        let r = regex::Regex::new(re).map_err(|e| {
            ProbeError::new(
                "http.check",
                &self.target.name,
                self.client.url(&self.path),
                ErrorKind::Invalid,
                format!("invalid body regex: {e}"),
            )
        })?;
        self.body.push(BodyMatch::Regex(r));
        Ok(self)
    }

    /// Expect an answer within `d` (the deadline still bounds the wait).
    pub fn max_latency(mut self, d: Duration) -> Self {
        self.max_latency = Some(d);
        self
    }

    /// Send this header too.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Use another probe id (default `http.check`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

#[async_trait]
impl<C: HttpClient> Probe for HttpProbe<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let endpoint = self.client.url(&self.path);
        let site = ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let mut req = HttpRequest::new(self.method, self.path.clone());
        req.headers = self.headers.clone();
        let resp = rest::send(&site, ctx, &self.client, req).await?;
        let mut failures = Vec::new();
        if !self.status.iter().any(|r| r.contains(&resp.status)) {
            let want: Vec<String> = self
                .status
                .iter()
                .map(|r| {
                    if r.start() == r.end() {
                        r.start().to_string()
                    } else {
                        format!("{}-{}", r.start(), r.end())
                    }
                })
                .collect();
            failures.push(format!("status {} not in {}", resp.status, want.join(", ")));
        }
        if let Some(max) = self.max_latency {
            if resp.elapsed > max {
                failures.push(format!("answered in {:?}, more than {max:?}", resp.elapsed));
            }
        }
        let text = String::from_utf8_lossy(&resp.body);
        for m in &self.body {
            let ok = match m {
                BodyMatch::Contains(s) => text.contains(s.as_str()),
                BodyMatch::Lacks(s) => !text.contains(s.as_str()),
                BodyMatch::Regex(r) => r.is_match(&text),
            };
            if !ok {
                failures.push(format!("body does not satisfy: {m:?}"));
            }
        }
        let success = failures.is_empty();
        let secs = resp.elapsed.as_secs_f64();
        let mut obs = Observation::new(&self.id, &self.target.name, ctx.now());
        obs.push_sample(
            "probe_success",
            Labels::new(),
            if success { 1.0 } else { 0.0 },
        );
        obs.push_sample(
            "probe_http_status_code",
            Labels::new(),
            f64::from(resp.status),
        );
        obs.push_sample("probe_duration_seconds", Labels::new(), secs);
        obs.push_sample(
            "probe_http_content_length",
            Labels::new(),
            resp.body.len() as f64,
        );
        Ok(obs.fact(&HttpCheck {
            status: resp.status,
            duration_seconds: secs,
            success,
            failures,
            body_start: rest::truncate(&text, 500).0,
        }))
    }
}
