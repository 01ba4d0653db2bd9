//! The server every HTTP fake runs on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::fault::{Fault, Faults};
use super::record::{RecordedRequest, RequestLog};

/// Largest request body a fake keeps (jar uploads included).
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct Shared {
    log: RequestLog,
    faults: Faults,
}

/// A running HTTP fake: an axum [`Router`] served on `127.0.0.1:<ephemeral port>`, wrapped in the
/// request record and the fault injector. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeHttp {
    addr: SocketAddr,
    log: RequestLog,
    faults: Faults,
    router: Router,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Bumped by `refuse_connections`: connections accepted before fail on their next read/write.
    gate: Arc<AtomicU64>,
}

impl FakeHttp {
    /// Serve `router` on a fresh loopback port.
    pub async fn start(router: Router) -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            router,
        )
        .await
    }

    /// Serve `router` on `addr` (a loopback address; port 0 picks one).
    pub async fn start_on(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        let log = RequestLog::new();
        let faults = Faults::default();
        let shared = Shared {
            log: log.clone(),
            faults: faults.clone(),
        };
        let router = router.layer(middleware::from_fn_with_state(shared, record_and_fault));
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let gate = Arc::new(AtomicU64::new(0));
        let task = spawn_serve(listener, router.clone(), gate.clone());
        Ok(Self {
            addr,
            log,
            faults,
            router,
            task: Mutex::new(Some(task)),
            gate,
        })
    }

    /// The address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` — no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The record of requests received.
    pub fn requests(&self) -> &RequestLog {
        &self.log
    }

    /// The fault injector.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Stop listening: new connections are refused until [`FakeHttp::restore`], and connections
    /// already open fail on their next request (as when the process dies). State is kept.
    pub fn refuse_connections(&self) {
        self.gate.fetch_add(1, Ordering::SeqCst);
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    /// Listen again on the same port after [`FakeHttp::refuse_connections`].
    pub async fn restore(&self) -> std::io::Result<()> {
        let mut slot = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = slot.take() {
            // already serving: keep it
            *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
            return Ok(());
        }
        // The aborted task releases its listener asynchronously; retry the bind briefly.
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    let task = spawn_serve(listener, self.router.clone(), self.gate.clone());
                    *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::task::yield_now().await;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("could not rebind")))
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

fn spawn_serve(listener: TcpListener, router: Router, gate: Arc<AtomicU64>) -> JoinHandle<()> {
    let listener = GatedListener {
        inner: listener,
        gate,
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::debug!(error = %e, "fake http server ended");
        }
    })
}

/// A listener whose connections die when the gate moves (see [`FakeHttp::refuse_connections`]).
struct GatedListener {
    inner: TcpListener,
    gate: Arc<AtomicU64>,
}

impl axum::serve::Listener for GatedListener {
    type Io = GatedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let generation = self.gate.load(Ordering::SeqCst);
        (
            GatedStream {
                inner: io,
                gate: self.gate.clone(),
                generation,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A server-side connection that fails once its listener has been told to refuse connections.
struct GatedStream {
    inner: TcpStream,
    gate: Arc<AtomicU64>,
    generation: u64,
}

impl GatedStream {
    fn closed(&self) -> Option<std::io::Error> {
        (self.gate.load(Ordering::SeqCst) != self.generation).then(|| {
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fake server went away")
        })
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.closed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.closed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn record_and_fault(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("fake: cannot read body: {e}"),
            )
                .into_response()
        }
    };
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    shared.log.push(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: bytes.to_vec(),
        at: SystemTime::now(),
    });
    let fault = shared.faults.take(&method, &path);
    let req = Request::from_parts(parts, Body::from(bytes));
    match fault {
        None => next.run(req).await,
        Some(Fault::Latency(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, format!("injected fault: HTTP {code}")).into_response()
        }
        Some(Fault::StatusBody(code, body)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Fault::Reset) => reset_response(),
        Some(Fault::MalformedBody) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"injected\": malformed, <<not json",
        )
            .into_response(),
        Some(Fault::TruncatedBody) => {
            let resp = next.run(req).await;
            let (mut parts, body) = resp.into_parts();
            let full = axum::body::to_bytes(body, MAX_BODY)
                .await
                .unwrap_or_default();
            let half = full.slice(..full.len() / 2);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(full.len().max(2)));
            Response::from_parts(parts, truncated_body(half))
        }
        Some(Fault::Hang) => {
            futures::future::pending::<()>().await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// A body that yields `part` and then fails, so hyper aborts the connection mid-body.
fn truncated_body(part: Bytes) -> Body {
    let stream = futures::stream::iter(vec![
        Ok::<Bytes, std::io::Error>(part),
        Err(std::io::Error::other("injected truncation")),
    ]);
    Body::from_stream(stream)
}

/// A response whose body fails at once: the connection is closed with no complete answer.
fn reset_response() -> Response {
    let stream = futures::stream::iter(vec![Err::<Bytes, std::io::Error>(std::io::Error::other(
        "injected reset",
    ))]);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(64));
    resp
}

/// Shorthand used by the fakes: a JSON response with a status.
pub(crate) fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

#[allow(dead_code)]
pub(crate) type SharedState<T> = Arc<Mutex<T>>;
