//! What the fake SQL servers ([`crate::postgres`], [`crate::mysql`]) share: a front door that sits
//! between the client and the protocol library and injects faults on the bytes themselves (latency,
//! refused connections, a server that never answers, a result dropped half-way, a malformed message),
//! exactly where a real network or a real server would misbehave.
//!
//! The protocol library (pgwire, opensrv-mysql) listens on a private loopback port; the public port
//! is this front door, which forwards both directions and frames the server's side (PostgreSQL
//! messages, MySQL packets) only to find where to inject a fault.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A misbehaviour injected into a fake SQL server's connections (new and existing ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireFault {
    /// Accept TCP connections, read what the client sends, never answer anything (not even the
    /// startup / greeting). New connections only.
    Hang,
    /// Answer normally until the first result row (PostgreSQL `DataRow`) or the first column
    /// definition of a result set (MySQL), send the first half of that message, then close the
    /// connection.
    DropMidResult,
    /// Corrupt the first result message and keep the connection open: PostgreSQL gets a message
    /// of an unknown type in place of the first `DataRow`; MySQL a first column definition whose
    /// column type is no MySQL type (0x20).
    Malformed,
    /// Send a first result message whose inner length runs past its end: PostgreSQL a `DataRow`
    /// whose first field claims 1,000,000 bytes; MySQL a column definition whose catalog claims 250
    /// bytes of a 3-byte packet. (sqlx 0.8 panics on the MySQL one: a probe must survive it.)
    Overrun,
}

/// Which framing the front door applies to the server's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// PostgreSQL: a one-byte answer to an SSL/GSS request, then `type:u8 len:i32be body`.
    Postgres,
    /// MySQL: `len:u24le seq:u8 payload`.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    Mysql,
}

#[derive(Debug, Default)]
struct Faults {
    fault: Option<WireFault>,
    latency: Duration,
}

/// The public listener of a fake SQL server and its fault switches.
#[derive(Debug)]
pub(crate) struct Front {
    addr: SocketAddr,
    backend: SocketAddr,
    framing: Framing,
    faults: Arc<Mutex<Faults>>,
    accept: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Front {
    /// Listen on `127.0.0.1:0` and forward every connection to `backend`.
    pub(crate) async fn start(backend: SocketAddr, framing: Framing) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Mutex::new(Faults::default()));
        let task = tokio::spawn(accept_loop(listener, backend, framing, faults.clone()));
        Ok(Self {
            addr,
            backend,
            framing,
            faults,
            accept: tokio::sync::Mutex::new(Some(task)),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn set_fault(&self, fault: Option<WireFault>) {
        lock(&self.faults).fault = fault;
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        lock(&self.faults).latency = latency;
    }

    /// Close the listening socket: connecting is refused from the moment this returns
    /// (connections already open stay open).
    pub(crate) async fn refuse_connections(&self) {
        let mut accept = self.accept.lock().await;
        if let Some(task) = accept.take() {
            task.abort();
            // The aborted task has dropped (closed) the listener once it is joined.
            let _ = task.await;
        }
    }

    /// Listen again on the same port after [`Front::refuse_connections`].
    pub(crate) async fn accept_connections(&self) -> std::io::Result<()> {
        let mut accept = self.accept.lock().await;
        if accept.is_none() {
            let listener = TcpListener::bind(self.addr).await?;
            *accept = Some(tokio::spawn(accept_loop(
                listener,
                self.backend,
                self.framing,
                self.faults.clone(),
            )));
        }
        Ok(())
    }

    /// Stop listening (connections already open stay open until their client leaves).
    pub(crate) fn shutdown(&self) {
        if let Ok(mut accept) = self.accept.try_lock() {
            if let Some(task) = accept.take() {
                task.abort();
            }
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    backend: SocketAddr,
    framing: Framing,
    faults: Arc<Mutex<Faults>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let faults = faults.clone();
        tokio::spawn(async move {
            let _ = serve(client, backend, framing, faults).await;
        });
    }
}

async fn serve(
    mut client: TcpStream,
    backend: SocketAddr,
    framing: Framing,
    faults: Arc<Mutex<Faults>>,
) -> std::io::Result<()> {
    if lock(&faults).fault == Some(WireFault::Hang) {
        let mut sink = [0u8; 1024];
        while client.read(&mut sink).await? > 0 {}
        return Ok(());
    }
    let server = TcpStream::connect(backend).await?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();

    // The client's first bytes tell whether the PostgreSQL server's first answer is the single
    // byte of an SSL/GSS negotiation.
    let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
    let upstream = tokio::spawn(async move {
        let mut head = [0u8; 8];
        if framing == Framing::Postgres {
            if client_r.read_exact(&mut head).await.is_err() {
                let _ = tx.send(false);
                return;
            }
            let code = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            let negotiation =
                head[..4] == 8i32.to_be_bytes() && (code == 80877103 || code == 80877104);
            let _ = tx.send(negotiation);
            if server_w.write_all(&head).await.is_err() {
                return;
            }
        } else {
            let _ = tx.send(false);
        }
        let _ = tokio::io::copy(&mut client_r, &mut server_w).await;
        let _ = server_w.shutdown().await;
    });

    let negotiation = rx.await.unwrap_or(false);
    let result = downstream(&mut server_r, &mut client_w, framing, negotiation, &faults).await;
    upstream.abort();
    let _ = client_w.shutdown().await;
    result
}

/// Forward the server's bytes one message (PostgreSQL) or packet (MySQL) at a time, applying the
/// faults.
async fn downstream(
    server: &mut tokio::net::tcp::OwnedReadHalf,
    client: &mut tokio::net::tcp::OwnedWriteHalf,
    framing: Framing,
    mut negotiation: bool,
    faults: &Mutex<Faults>,
) -> std::io::Result<()> {
    let mut injected = false;
    loop {
        if negotiation {
            // PostgreSQL's one-byte answer to SSLRequest / GSSENCRequest ('N': go on in clear).
            let mut b = [0u8; 1];
            if server.read(&mut b).await? == 0 {
                return Ok(());
            }
            client.write_all(&b).await?;
            negotiation = b[0] == b'N';
            if !negotiation {
                // 'S' would start TLS: the fakes have none; forward bytes blindly from here on.
                tokio::io::copy(server, client).await?;
                return Ok(());
            }
            // After 'N' the client sends its startup (or another negotiation, which the fakes
            // never see from sqlx): framing begins.
            negotiation = false;
            continue;
        }
        let head_len = match framing {
            Framing::Postgres => 5usize,
            Framing::Mysql => 4usize,
        };
        let mut head = vec![0u8; head_len];
        match server.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let body_len = match framing {
            Framing::Postgres => {
                (i32::from_be_bytes([head[1], head[2], head[3], head[4]]).max(4) - 4) as usize
            }
            Framing::Mysql => u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize,
        };
        let mut body = vec![0u8; body_len];
        server.read_exact(&mut body).await?;

        let (fault, latency) = {
            let f = lock(faults);
            (f.fault, f.latency)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let is_result = match framing {
            Framing::Postgres => head[0] == b'D',
            // A column definition packet starts with the catalog, always the length-encoded "def".
            Framing::Mysql => body.starts_with(&[3, b'd', b'e', b'f']),
        };
        if is_result && !injected {
            match fault {
                Some(WireFault::DropMidResult) => {
                    client.write_all(&head).await?;
                    client.write_all(&body[..body.len() / 2]).await?;
                    client.flush().await?;
                    return Ok(());
                }
                Some(WireFault::Malformed) => match framing {
                    // No backend message has type '\u{1}'.
                    Framing::Postgres => {
                        head[0] = 1;
                        injected = true;
                    }
                    // A column definition whose column type is no MySQL type (0x20).
                    Framing::Mysql => {
                        if let Some(at) = mysql_column_type_offset(&body) {
                            body[at] = 0x20;
                            injected = true;
                        }
                    }
                },
                Some(WireFault::Overrun) => {
                    injected = true;
                    match framing {
                        // field count 1, first field length 1,000,000, 4 bytes of it
                        Framing::Postgres => {
                            body = vec![0, 1, 0, 0x0f, 0x42, 0x40, b'a', b'b', b'c', b'd'];
                            let len = (body.len() + 4) as i32;
                            head[1..5].copy_from_slice(&len.to_be_bytes());
                        }
                        Framing::Mysql => {
                            body = vec![250, b'x', b'y'];
                            head[..3].copy_from_slice(&3u32.to_le_bytes()[..3]);
                        }
                    }
                }
                _ => {}
            }
        }
        client.write_all(&head).await?;
        client.write_all(&body).await?;
    }
}

/// Where the column type byte of a MySQL column definition packet is: after six length-encoded
/// strings (catalog, schema, table alias, table, alias, name), the fixed-fields length (0x0c), the
/// collation (2 bytes) and the display length (4 bytes).
fn mysql_column_type_offset(body: &[u8]) -> Option<usize> {
    let mut i = 0usize;
    for _ in 0..6 {
        let first = *body.get(i)?;
        let (prefix, len) = match first {
            0..=250 => (1, usize::from(first)),
            0xfc => (
                3,
                usize::from(u16::from_le_bytes([*body.get(i + 1)?, *body.get(i + 2)?])),
            ),
            _ => return None,
        };
        i += prefix + len;
    }
    let at = i + 1 + 2 + 4;
    (at < body.len()).then_some(at)
}
