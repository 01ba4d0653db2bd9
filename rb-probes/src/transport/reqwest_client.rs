//! [`ReqwestClient`]: the [`HttpClient`] adapter for real servers.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rb_core::secret::redact_url;
use rb_core::{ErrorKind, ProbeError};

use super::{HttpAuth, HttpClient, HttpRequest, HttpResponse, Method, TransportError};

/// Bodies larger than this are cut off with [`TransportError::Body`] (a probe reads summaries).
const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;

/// An [`HttpClient`] over reqwest with rustls: one base URL, its authentication and TLS settings.
#[derive(Clone)]
pub struct ReqwestClient {
    base: String,
    auth: HttpAuth,
    client: reqwest::Client,
    timeout: Duration,
    max_body: usize,
}

impl fmt::Debug for ReqwestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestClient")
            .field("base", &redact_url(&self.base))
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Configures a [`ReqwestClient`].
#[derive(Debug)]
pub struct ReqwestClientBuilder {
    base: String,
    auth: HttpAuth,
    timeout: Duration,
    connect_timeout: Duration,
    ca_pem: Vec<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
    max_body: usize,
}

impl ReqwestClient {
    /// A client for `base_url` (`http://127.0.0.1:8081`), to be configured.
    pub fn builder(base_url: impl Into<String>) -> ReqwestClientBuilder {
        ReqwestClientBuilder {
            base: base_url.into().trim_end_matches('/').to_string(),
            auth: HttpAuth::None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            ca_pem: Vec::new(),
            identity_pem: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// A client for `base_url` with the defaults (no authentication, system roots, 10 s timeout).
    pub fn new(base_url: impl Into<String>) -> Result<Self, ProbeError> {
        Self::builder(base_url).build()
    }
}

impl ReqwestClientBuilder {
    /// Authenticate every request.
    pub fn auth(mut self, auth: HttpAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The whole-request timeout (the probe's deadline also applies).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trust this CA certificate (PEM) besides the built-in roots.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem.push(pem.into());
        self
    }

    /// Present this client certificate and key (one PEM holding both) for mutual TLS.
    pub fn identity_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.identity_pem = Some(pem.into());
        self
    }

    /// Refuse bodies larger than `bytes`.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Build the client; a bad certificate is an [`ErrorKind::Invalid`] error.
    pub fn build(self) -> Result<ReqwestClient, ProbeError> {
        let invalid = |what: &str, e: reqwest::Error| {
            ProbeError::new(
                "http.client",
                "-",
                &self.base,
                ErrorKind::Invalid,
                format!("{what}: {e}"),
            )
        };
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout);
        for pem in &self.ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| invalid("CA certificate is not valid PEM", e))?;
            b = b.add_root_certificate(cert);
        }
        if let Some(pem) = &self.identity_pem {
            let id = reqwest::Identity::from_pem(pem).map_err(|e| {
                invalid("client identity is not a valid PEM certificate and key", e)
            })?;
            b = b.identity(id);
        }
        let client = b
            .build()
            .map_err(|e| invalid("cannot build the HTTP client", e))?;
        Ok(ReqwestClient {
            base: self.base,
            auth: self.auth,
            client,
            timeout: self.timeout,
            max_body: self.max_body,
        })
    }
}

fn classify(e: &reqwest::Error, timeout: Duration) -> TransportError {
    // reqwest's messages can carry the URL; strip it and keep the cause chain.
    let mut msg = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if msg.is_empty() {
        msg = e.without_url_ref_string();
    }
    if e.is_timeout() {
        TransportError::Timeout(timeout)
    } else if e.is_connect() {
        TransportError::Connect(msg)
    } else if e.is_body() || e.is_decode() || closed_mid_answer(&msg) {
        TransportError::Body(msg)
    } else if e.is_builder() {
        TransportError::Invalid(msg)
    } else if msg.contains("connection closed before message completed")
        || msg.contains("end of file before message length reached")
    {
        // the server went away mid-answer (a reset, a cut body): hyper reports it as a request
        // error, but the answer is what broke
        TransportError::Body(msg)
    } else {
        TransportError::Other(msg)
    }
}

/// hyper's wording when the server closed the connection after taking the request but before a
/// complete answer (headers announced a body it never sent, or no answer at all): a broken answer,
/// not a refused connection.
fn closed_mid_answer(msg: &str) -> bool {
    msg.contains("connection closed before message completed")
}

trait WithoutUrl {
    fn without_url_ref_string(&self) -> String;
}
impl WithoutUrl for reqwest::Error {
    fn without_url_ref_string(&self) -> String {
        let mut s = self.to_string();
        if let Some(u) = self.url() {
            s = s.replace(u.as_str(), &redact_url(u.as_str()));
        }
        s
    }
}

#[async_trait]
impl HttpClient for ReqwestClient {
    fn base_url(&self) -> &str {
        &self.base
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let url = format!("{}{}", self.base, request.path);
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut rb = self.client.request(method, &url);
        for (k, v) in &request.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb = match &self.auth {
            HttpAuth::None => rb,
            HttpAuth::Bearer(token) => rb.bearer_auth(token.expose()),
            HttpAuth::Basic { user, password } => rb.basic_auth(user, Some(password.expose())),
        };
        if let Some(body) = request.body {
            rb = rb.body(body);
        }
        let started = Instant::now();
        let resp = rb.send().await.map_err(|e| classify(&e, self.timeout))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(&e, self.timeout))?;
            if body.len() + chunk.len() > self.max_body {
                return Err(TransportError::Body(format!(
                    "body larger than {} bytes",
                    self.max_body
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }
}
