//! [`SecureListeners`]: a [`FakeKafka`] behind `SASL_SSL`, `SASL_PLAINTEXT` or `SSL` listeners, one
//! in front of each mock broker (librdkafka's mock cluster speaks plaintext only).
//!
//! Each listener does what a broker's secured listener does before a request reaches the broker:
//!
//! * the TLS handshake (rustls, with the certificate and key given), when TLS is on;
//! * ApiVersions, answered by the broker with SaslHandshake (v0–1) and SaslAuthenticate (v0–2)
//!   added to its ranges, as a SASL listener's are;
//! * SaslHandshake (a mechanism not enabled: `UNSUPPORTED_SASL_MECHANISM` with the enabled list)
//!   and SaslAuthenticate: PLAIN, or SCRAM-SHA-256/512 with the client's proof checked the way
//!   Kafka checks it (`H(proof XOR HMAC(StoredKey, AuthMessage)) == StoredKey`) and the server's
//!   signature in the final message; a wrong password is `SASL_AUTHENTICATION_FAILED` with Kafka's
//!   message, and the connection is closed after it;
//! * any other request before authentication closes the connection, as a broker does.
//!
//! After that, requests go to the mock broker and answers come back unchanged. The brokers
//! advertise the listeners' addresses (in Metadata and FindCoordinator answers), so a client
//! bootstrapped on [`SecureListeners::bootstrap_servers`] stays on them. The fake's own seeding
//! clients (client ids `rb-fake-kafka-*`) are let through without TLS or SASL, so seeding works
//! as before; any other client must speak the listener's protocol.
//!
//! ```no_run
//! use rb_testkit::kafka::{FakeKafka, SaslMechanism, SecureListenerConfig};
//! # async fn demo() -> Result<(), rb_testkit::kafka::FakeKafkaError> {
//! let kafka = FakeKafka::start(3)?;
//! kafka.create_topic("orders", 12, 3)?;
//! let listeners = kafka
//!     .secure_listeners(
//!         SecureListenerConfig::sasl_ssl("tests/tls/broker.pem", "tests/tls/broker.key")
//!             .user("rb-probe", "s3cr3t")
//!             .mechanisms([SaslMechanism::ScramSha512]),
//!     )
//!     .await?;
//! // Point the client at `listeners.bootstrap_servers()` with SASL_SSL, SCRAM-SHA-512, the CA.
//! # let _ = listeners; Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::cluster::FakeKafka;
use super::error::{FakeKafkaError, Result};

/// The salt of every SCRAM credential of the listeners (a broker keeps one per user).
const SALT: &[u8] = b"rb-testkit-salt!";
/// Kafka's default SCRAM iteration count.
const ITERATIONS: u32 = 4096;
/// The largest request frame accepted.
const MAX_FRAME: usize = 64 << 20;

/// A SASL mechanism a listener enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// What the listeners speak (`Debug` shows the user, not the password).
#[derive(Clone)]
pub struct SecureListenerConfig {
    /// The listeners' certificate chain and key (PEM files); `None`: no TLS (`SASL_PLAINTEXT`).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The enabled mechanisms; empty: no SASL (`SSL`).
    pub mechanisms: Vec<SaslMechanism>,
    /// The one user the listeners know, and its password.
    pub user: (String, String),
    /// The session lifetime SaslAuthenticate v1+ announces (`None`: 0, no limit).
    pub session_lifetime: Option<Duration>,
    /// Answer SCRAM's final message with a signature made from another password (a broker that
    /// does not know the user's key): a client that checks it must refuse.
    pub forge_server_signature: bool,
}

impl std::fmt::Debug for SecureListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureListenerConfig")
            .field("tls", &self.tls)
            .field("mechanisms", &self.mechanisms)
            .field("user", &self.user.0)
            .field("password", &"[redacted]")
            .field("session_lifetime", &self.session_lifetime)
            .field("forge_server_signature", &self.forge_server_signature)
            .finish()
    }
}

impl SecureListenerConfig {
    /// `SASL_SSL` with `cert` and `key` (PEM), every mechanism enabled, user `rb-probe`.
    pub fn sasl_ssl(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            tls: Some((cert.into(), key.into())),
            mechanisms: vec![
                SaslMechanism::Plain,
                SaslMechanism::ScramSha256,
                SaslMechanism::ScramSha512,
            ],
            user: ("rb-probe".to_owned(), "rb-probe-password".to_owned()),
            session_lifetime: None,
            forge_server_signature: false,
        }
    }

    /// `SASL_PLAINTEXT`, every mechanism enabled, user `rb-probe`.
    pub fn sasl_plaintext() -> Self {
        Self {
            tls: None,
            ..Self::sasl_ssl("", "")
        }
    }

    /// The user and password the listeners accept.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = (name.into(), password.into());
        self
    }

    /// Enable only these mechanisms (none: `SSL` without SASL).
    pub fn mechanisms(mut self, m: impl IntoIterator<Item = SaslMechanism>) -> Self {
        self.mechanisms = m.into_iter().collect();
        self
    }

    /// Announce a session lifetime.
    pub fn session_lifetime(mut self, d: Duration) -> Self {
        self.session_lifetime = Some(d);
        self
    }

    /// Forge SCRAM's server signature.
    pub fn forge_server_signature(mut self, on: bool) -> Self {
        self.forge_server_signature = on;
        self
    }
}

/// The listeners in front of a [`FakeKafka`]'s brokers (they stop when this is dropped).
#[derive(Debug)]
pub struct SecureListeners {
    addrs: Vec<String>,
    accepted: Arc<AtomicUsize>,
    tasks: Vec<AbortHandle>,
}

impl Drop for SecureListeners {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SecureListeners {
    /// `host:port,…` of the listeners, broker 1 first.
    pub fn bootstrap_servers(&self) -> String {
        self.addrs.join(",")
    }

    /// The listener in front of `broker` (`host:port`).
    pub fn addr(&self, broker: i32) -> Option<&str> {
        usize::try_from(broker - 1)
            .ok()
            .and_then(|i| self.addrs.get(i))
            .map(String::as_str)
    }

    /// Client connections accepted so far (the fake's own seeding clients' not counted).
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl FakeKafka {
    /// Puts a listener speaking `config` in front of every broker and makes the brokers advertise
    /// the listeners (see the module docs). Call it from a tokio runtime (the listeners run on
    /// it); fails if the certificate or key cannot be read.
    pub async fn secure_listeners(&self, config: SecureListenerConfig) -> Result<SecureListeners> {
        let invalid = |detail: String| FakeKafkaError::Client {
            what: "secure listener",
            detail,
        };
        let acceptor = match &config.tls {
            Some((cert, key)) => Some(acceptor(cert, key).map_err(invalid)?),
            None => None,
        };
        let upstream: Vec<String> = self
            .bootstrap_servers()
            .split(',')
            .map(str::to_owned)
            .collect();
        let config = Arc::new(config);
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut out = SecureListeners {
            addrs: Vec::new(),
            accepted: accepted.clone(),
            tasks: Vec::new(),
        };
        for (i, up) in upstream.into_iter().enumerate() {
            let socket = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| invalid(format!("bind: {e}")))?;
            let local = socket
                .local_addr()
                .map_err(|e| invalid(format!("bind: {e}")))?;
            out.addrs.push(local.to_string());
            let (config, acceptor, accepted) = (config.clone(), acceptor.clone(), accepted.clone());
            let task = tokio::spawn(async move {
                while let Ok((tcp, _)) = socket.accept().await {
                    let _ = tcp.set_nodelay(true);
                    let (config, acceptor, up, accepted) = (
                        config.clone(),
                        acceptor.clone(),
                        up.clone(),
                        accepted.clone(),
                    );
                    tokio::spawn(async move {
                        let _ = accept(tcp, &up, &config, acceptor, &accepted).await;
                    });
                }
            });
            out.tasks.push(task.abort_handle());
            let broker = i32::try_from(i + 1).unwrap_or(i32::MAX);
            self.advertise(broker, local.ip().to_string(), local.port())?;
        }
        Ok(out)
    }
}

fn acceptor(
    cert: &PathBuf,
    key: &PathBuf,
) -> std::result::Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A new connection: the fake's own clients (a plaintext first request whose client id is
/// `rb-fake-kafka-*`) go straight through; others speak the listener's protocol.
async fn accept(
    tcp: TcpStream,
    upstream: &str,
    config: &SecureListenerConfig,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    accepted: &AtomicUsize,
) -> std::io::Result<()> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    // A TLS record starts with 0x16 (handshake); a Kafka frame with its size's high byte.
    let tls_hello = n == 1 && first[0] == 0x16;
    match acceptor {
        Some(acceptor) if tls_hello => {
            accepted.fetch_add(1, Ordering::SeqCst);
            let stream = acceptor.accept(tcp).await?;
            serve(stream, upstream, config, None).await
        }
        _ if tls_hello => Ok(()),
        tls => {
            let mut tcp = tcp;
            let frame = read_frame(&mut tcp).await?;
            if client_id(&frame).is_some_and(|c| c.starts_with("rb-fake-kafka")) {
                return pass_through(tcp, upstream, frame).await;
            }
            accepted.fetch_add(1, Ordering::SeqCst);
            if tls.is_some() {
                // A plaintext client on a TLS listener: the broker sees a failed handshake.
                return Ok(());
            }
            serve(tcp, upstream, config, Some(frame)).await
        }
    }
}

async fn pass_through(
    mut client: TcpStream,
    upstream: &str,
    first: Vec<u8>,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    write_frame(&mut up, &first).await?;
    tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    Ok(())
}

fn client_id(frame: &[u8]) -> Option<&str> {
    let len = i16::from_be_bytes([*frame.get(8)?, *frame.get(9)?]);
    let len = usize::try_from(len).ok()?;
    std::str::from_utf8(frame.get(10..10 + len)?).ok()
}

async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).await?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|&n| (8..=MAX_FRAME).contains(&n))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad frame size"))?;
    let mut body = vec![0u8; size];
    s.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, body: &[u8]) -> std::io::Result<()> {
    let size = i32::try_from(body.len()).unwrap_or(i32::MAX);
    s.write_all(&size.to_be_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&i16::try_from(s.len()).unwrap_or(i16::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A request's header fields and where its body starts.
struct Header {
    api: i16,
    version: i16,
    correlation: [u8; 4],
    body: usize,
}

fn header(frame: &[u8]) -> Option<Header> {
    let api = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    let version = i16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]);
    let correlation = [
        *frame.get(4)?,
        *frame.get(5)?,
        *frame.get(6)?,
        *frame.get(7)?,
    ];
    let len = i16::from_be_bytes([*frame.get(8)?, *frame.get(9)?]);
    // Request header v2 (flexible versions) adds tagged fields; only the SASL requests and
    // ApiVersions are read here, and the body of those is read by their own version below.
    let body = 10 + usize::try_from(len).unwrap_or(0);
    (body <= frame.len()).then_some(Header {
        api,
        version,
        correlation,
        body,
    })
}

/// Reads `n` bytes of a length-prefixed field (an `i16` string or `i32` bytes; compact forms for
/// flexible versions) at `at`.
fn field(frame: &[u8], at: usize, compact: bool, wide: bool) -> Option<&[u8]> {
    let (len, start) = if compact {
        // An unsigned varint of length + 1.
        let (len, i) = read_uvarint(frame, at)?;
        (len.checked_sub(1)?, i)
    } else if wide {
        let n = i32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?);
        (usize::try_from(n).ok()?, at + 4)
    } else {
        let n = i16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?);
        (usize::try_from(n).ok()?, at + 2)
    };
    frame.get(start..start + len)
}

/// The server side of one SASL exchange.
enum Sasl {
    Start,
    ScramFinal {
        sha512: bool,
        first_bare: String,
        server_first: String,
    },
    Done,
}

fn hmac(sha512: bool, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    if sha512 {
        run::<Hmac<Sha512>>(key, data)
    } else {
        run::<Hmac<Sha256>>(key, data)
    }
}

fn digest(sha512: bool, data: &[u8]) -> Vec<u8> {
    if sha512 {
        Sha512::digest(data).to_vec()
    } else {
        Sha256::digest(data).to_vec()
    }
}

/// PBKDF2-HMAC, one block (SCRAM's `Hi`).
fn salted(sha512: bool, password: &[u8]) -> Vec<u8> {
    let mut block = SALT.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(sha512, password, &block);
    let mut out = u.clone();
    for _ in 1..ITERATIONS {
        u = hmac(sha512, password, &u);
        for (o, x) in out.iter_mut().zip(&u) {
            *o ^= x;
        }
    }
    out
}

/// One SaslAuthenticate: `Ok(bytes)` to answer, `Err(())` for `SASL_AUTHENTICATION_FAILED`.
fn authenticate(
    state: &mut Sasl,
    mechanism: SaslMechanism,
    client: &[u8],
    config: &SecureListenerConfig,
) -> std::result::Result<Vec<u8>, ()> {
    let (user, password) = (&config.user.0, &config.user.1);
    match std::mem::replace(state, Sasl::Done) {
        Sasl::Start if mechanism == SaslMechanism::Plain => {
            // [authzid] NUL user NUL password
            let mut parts = client.split(|&b| b == 0);
            let (_, u, p) = (parts.next(), parts.next(), parts.next());
            if u == Some(user.as_bytes()) && p == Some(password.as_bytes()) {
                Ok(Vec::new())
            } else {
                Err(())
            }
        }
        Sasl::Start => {
            let text = std::str::from_utf8(client).map_err(|_| ())?;
            let first_bare = text.strip_prefix("n,,").ok_or(())?.to_owned();
            let (name, nonce) = first_bare
                .strip_prefix("n=")
                .and_then(|r| r.split_once(",r="))
                .ok_or(())?;
            let name = name.replace("=2C", ",").replace("=3D", "=");
            if &name != user || nonce.is_empty() {
                return Err(());
            }
            let server_first = format!(
                "r={nonce}{},s={},i={ITERATIONS}",
                B64.encode(rand::random::<[u8; 12]>()),
                B64.encode(SALT)
            );
            let out = server_first.clone().into_bytes();
            *state = Sasl::ScramFinal {
                sha512: mechanism == SaslMechanism::ScramSha512,
                first_bare,
                server_first,
            };
            Ok(out)
        }
        Sasl::ScramFinal {
            sha512,
            first_bare,
            server_first,
        } => {
            let text = std::str::from_utf8(client).map_err(|_| ())?;
            let (without_proof, proof) = text.rsplit_once(",p=").ok_or(())?;
            let nonce = server_first.split(',').next().unwrap_or_default();
            if !without_proof.starts_with("c=biws,") || !without_proof.ends_with(nonce) {
                return Err(());
            }
            let proof = B64.decode(proof).map_err(|_| ())?;
            let salted_password = salted(sha512, password.as_bytes());
            let stored_key = digest(sha512, &hmac(sha512, &salted_password, b"Client Key"));
            let auth_message = format!("{first_bare},{server_first},{without_proof}");
            let signature = hmac(sha512, &stored_key, auth_message.as_bytes());
            if proof.len() != signature.len() {
                return Err(());
            }
            let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
            if digest(sha512, &client_key) != stored_key {
                return Err(());
            }
            let key_source = if config.forge_server_signature {
                salted(sha512, b"not the user's password")
            } else {
                salted_password
            };
            let server_key = hmac(sha512, &key_source, b"Server Key");
            let v = hmac(sha512, &server_key, auth_message.as_bytes());
            Ok(format!("v={}", B64.encode(v)).into_bytes())
        }
        Sasl::Done => Err(()),
    }
}

/// Serves one client connection speaking the listener's protocol.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    upstream: &str,
    config: &SecureListenerConfig,
    mut pending: Option<Vec<u8>>,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    let sasl_on = !config.mechanisms.is_empty();
    let mut mechanism: Option<SaslMechanism> = None;
    let mut state = Sasl::Start;
    let mut authenticated = !sasl_on;
    loop {
        let frame = match pending.take() {
            Some(f) => f,
            None => read_frame(&mut client).await?,
        };
        let Some(h) = header(&frame) else {
            return Ok(());
        };
        let mut answer = h.correlation.to_vec();
        match h.api {
            // ApiVersions: the broker's answer, with the SASL APIs added (v0–2 layout: error,
            // then the array; v3+ is flexible and compact).
            18 if sasl_on => {
                write_frame(&mut up, &frame).await?;
                let body = read_frame(&mut up).await?;
                let flexible = h.version >= 3;
                let rest = body.get(4..).unwrap_or_default();
                let Some(patched) = add_sasl_versions(rest, flexible) else {
                    return Ok(());
                };
                answer.extend_from_slice(&patched);
                write_frame(&mut client, &answer).await?;
            }
            17 if sasl_on => {
                let name = field(&frame, h.body, false, false).unwrap_or_default();
                let found = config
                    .mechanisms
                    .iter()
                    .copied()
                    .find(|m| m.as_str().as_bytes() == name);
                mechanism = found;
                let code: i16 = if found.is_some() { 0 } else { 33 };
                answer.extend_from_slice(&code.to_be_bytes());
                answer.extend_from_slice(&(config.mechanisms.len() as i32).to_be_bytes());
                for m in &config.mechanisms {
                    put_str(&mut answer, m.as_str());
                }
                write_frame(&mut client, &answer).await?;
                if found.is_none() {
                    return Ok(());
                }
            }
            36 if sasl_on => {
                let flexible = h.version >= 2;
                // Flexible request headers carry tagged fields after the client id.
                let at = if flexible { h.body + 1 } else { h.body };
                let Some(mech) = mechanism else {
                    return Ok(());
                };
                let bytes = field(&frame, at, flexible, true).unwrap_or_default();
                let result = authenticate(&mut state, mech, bytes, config);
                if flexible {
                    answer.push(0); // response header v1: no tagged fields
                }
                let (code, message, out): (i16, Option<String>, Vec<u8>) = match result {
                    Ok(out) => (0, None, out),
                    Err(()) => (
                        58,
                        Some(format!(
                            "Authentication failed during authentication due to invalid \
                             credentials with SASL mechanism {}",
                            mech.as_str()
                        )),
                        Vec::new(),
                    ),
                };
                answer.extend_from_slice(&code.to_be_bytes());
                match (&message, flexible) {
                    (None, false) => answer.extend_from_slice(&(-1i16).to_be_bytes()),
                    (None, true) => answer.push(0),
                    (Some(m), false) => put_str(&mut answer, m),
                    (Some(m), true) => {
                        put_uvarint(&mut answer, m.len() + 1);
                        answer.extend_from_slice(m.as_bytes());
                    }
                }
                if flexible {
                    put_uvarint(&mut answer, out.len() + 1);
                } else {
                    answer.extend_from_slice(&(out.len() as i32).to_be_bytes());
                }
                answer.extend_from_slice(&out);
                if h.version >= 1 {
                    let ms = config
                        .session_lifetime
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    answer.extend_from_slice(&ms.to_be_bytes());
                }
                if flexible {
                    answer.push(0);
                }
                write_frame(&mut client, &answer).await?;
                if code != 0 {
                    return Ok(());
                }
                authenticated = matches!(state, Sasl::Done);
            }
            // A broker closes a connection that sends anything else before authenticating.
            _ if !authenticated => return Ok(()),
            _ => {
                write_frame(&mut up, &frame).await?;
                let body = read_frame(&mut up).await?;
                write_frame(&mut client, &body).await?;
            }
        }
    }
}

/// An unsigned varint at `at`: its value and the offset after it (`None` if cut or over 35 bits).
fn read_uvarint(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    let mut shift = 0;
    let mut i = at;
    loop {
        let b = *buf.get(i)?;
        value |= usize::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            return Some((value, i));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// An ApiVersions answer body (after the correlation id) with SaslHandshake v0–1 and
/// SaslAuthenticate v0–2 appended to its ranges.
fn add_sasl_versions(body: &[u8], flexible: bool) -> Option<Vec<u8>> {
    let mut out = body.get(..2)?.to_vec(); // error code
    let added: [(i16, i16, i16); 2] = [(17, 0, 1), (36, 0, 2)];
    if flexible {
        // Compact array: varint(n + 1), entries of key, min, max and a tagged-field byte.
        let (n, i) = read_uvarint(body, 2)?;
        let n = n.checked_sub(1)?;
        put_uvarint(&mut out, n + added.len() + 1);
        let entries = body.get(i..i + n * 7)?;
        out.extend_from_slice(entries);
        for (k, lo, hi) in added {
            for v in [k, lo, hi] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.push(0);
        }
        out.extend_from_slice(body.get(i + n * 7..)?);
    } else {
        let n = usize::try_from(i32::from_be_bytes(body.get(2..6)?.try_into().ok()?)).ok()?;
        out.extend_from_slice(&i32::try_from(n + added.len()).ok()?.to_be_bytes());
        out.extend_from_slice(body.get(6..6 + n * 6)?);
        for (k, lo, hi) in added {
            for v in [k, lo, hi] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out.extend_from_slice(body.get(6 + n * 6..)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn api_versions_gain_the_sasl_apis_in_both_layouts() {
        // v0: error, [key min max]
        let mut v0 = 0i16.to_be_bytes().to_vec();
        v0.extend_from_slice(&1i32.to_be_bytes());
        for v in [18i16, 0, 3] {
            v0.extend_from_slice(&v.to_be_bytes());
        }
        let out = add_sasl_versions(&v0, false).unwrap();
        assert_eq!(i32::from_be_bytes(out[2..6].try_into().unwrap()), 3);
        assert_eq!(out.len(), 2 + 4 + 3 * 6);
        // v3: error, compact [key min max tags], throttle, tags
        let mut v3 = 0i16.to_be_bytes().to_vec();
        v3.push(2);
        for v in [18i16, 0, 3] {
            v3.extend_from_slice(&v.to_be_bytes());
        }
        v3.push(0);
        v3.extend_from_slice(&0i32.to_be_bytes());
        v3.push(0);
        let out = add_sasl_versions(&v3, true).unwrap();
        assert_eq!(out[2], 4);
        assert_eq!(out.len(), v3.len() + 2 * 7);
        assert_eq!(&out[out.len() - 5..], &v3[v3.len() - 5..]);
        assert!(add_sasl_versions(&v3[..5], true).is_none());
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!(
            "{:?}",
            SecureListenerConfig::sasl_plaintext().user("u", "hunter2-x")
        );
        assert!(
            shown.contains("\"u\"") && !shown.contains("hunter2-x"),
            "{shown}"
        );
    }

    #[test]
    fn plain_and_scram_as_a_broker_checks_them() {
        let config = SecureListenerConfig::sasl_plaintext().user("u", "pencil");
        let mut s = Sasl::Start;
        assert!(authenticate(&mut s, SaslMechanism::Plain, b"\0u\0pencil", &config).is_ok());
        let mut s = Sasl::Start;
        assert!(authenticate(&mut s, SaslMechanism::Plain, b"\0u\0pen", &config).is_err());
        // An unknown user is refused at the first SCRAM message.
        let mut s = Sasl::Start;
        assert!(
            authenticate(&mut s, SaslMechanism::ScramSha256, b"n,,n=v,r=abc", &config).is_err()
        );
        // A proof made with another password is refused.
        let mut s = Sasl::Start;
        let first =
            authenticate(&mut s, SaslMechanism::ScramSha256, b"n,,n=u,r=abc", &config).unwrap();
        let first = String::from_utf8(first).unwrap();
        let nonce = first.split(',').next().unwrap();
        let forged = format!("c=biws,{nonce},p={}", B64.encode([0u8; 32]));
        assert!(authenticate(
            &mut s,
            SaslMechanism::ScramSha256,
            forged.as_bytes(),
            &config
        )
        .is_err());
    }
}
