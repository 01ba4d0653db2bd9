//! The transport of rb's own broker connections: plain TCP, or TLS with rustls (feature
//! `kafka-tls`), and the SASL credentials to present after ApiVersions.
//!
//! TLS trusts the CA file of [`Tls::ca_file`], or the system's trust store (read once, with
//! rustls-native-certs) when none is given. The broker's certificate chain is always verified;
//! [`Tls::verify_hostname`] off only stops requiring the certificate to name the host connected to
//! (librdkafka's `ssl.endpoint.identification.algorithm=none`). A client certificate and its key
//! (PEM: PKCS#8, PKCS#1 or SEC1) give mutual TLS; an encrypted key is read by librdkafka only
//! ([`KafkaConfig::uses_native_offsets`] says so).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::config::KafkaConfig;
#[cfg(feature = "kafka-tls")]
use super::config::Sasl;
#[cfg(feature = "kafka-tls")]
use super::config::Tls;

/// A connection to a broker, as the requests see it.
pub(super) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    #[cfg(feature = "kafka-tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "kafka-tls")]
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "kafka-tls")]
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "kafka-tls")]
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "kafka-tls")]
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How the connections secure and authenticate themselves.
#[derive(Default)]
pub(super) struct Security {
    #[cfg(feature = "kafka-tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    #[cfg(feature = "kafka-tls")]
    sasl: Option<Sasl>,
}

/// Why a TLS handshake failed (only with the `kafka-tls` feature).
#[cfg_attr(not(feature = "kafka-tls"), allow(dead_code))]
pub(super) enum HandshakeError {
    /// The settings do not fit the listener (certificate refused, not a TLS listener).
    Invalid(String),
    /// The connection broke during the handshake.
    Lost(String),
}

impl Security {
    /// The transport for `config`; `Err` names what cannot be used (an unreadable CA file, a key
    /// rustls cannot read, TLS or SASL without the `kafka-tls` feature).
    pub(super) fn from_config(config: &KafkaConfig) -> Result<Self, String> {
        #[cfg(feature = "kafka-tls")]
        {
            let tls = match &config.tls {
                Some(t) => Some(std::sync::Arc::new(client_config(t)?)),
                None => None,
            };
            Ok(Self {
                tls,
                sasl: config.sasl.clone(),
            })
        }
        #[cfg(not(feature = "kafka-tls"))]
        {
            if config.tls.is_some() || config.sasl.is_some() {
                return Err(
                    "TLS and SASL on rb's own connections need the kafka-tls feature".to_owned(),
                );
            }
            Ok(Self::default())
        }
    }

    /// The SASL credentials to present, if any.
    #[cfg(feature = "kafka-tls")]
    pub(super) fn sasl(&self) -> Option<&Sasl> {
        self.sasl.as_ref()
    }

    /// Wraps a new TCP connection to `host` (a name or an IP address) as the settings say.
    pub(super) async fn secure(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> Result<Stream, HandshakeError> {
        #[cfg(feature = "kafka-tls")]
        if let Some(config) = &self.tls {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
                HandshakeError::Invalid(format!("{host:?} is not a name TLS can check: {e}"))
            })?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            return match connector.connect(name, tcp).await {
                Ok(s) => Ok(Stream::Tls(Box::new(s))),
                // rustls reports what it refused (a certificate, a protocol message) as
                // InvalidData; anything else is the connection itself.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(HandshakeError::Invalid(
                    format!("TLS handshake refused: {e}"),
                )),
                Err(e) => Err(HandshakeError::Lost(format!(
                    "connection lost during the TLS handshake: {e}"
                ))),
            };
        }
        let _ = host;
        Ok(Stream::Plain(tcp))
    }
}

/// The rustls client configuration for `tls`.
#[cfg(feature = "kafka-tls")]
fn client_config(tls: &Tls) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("CA file {}: no certificate in it", path.display()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "no CA certificate in the system's trust store{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", why.join("; "))
                    }
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if tls.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let webpki =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
    };
    match (&tls.client_cert_file, &tls.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect)
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "client certificate {}: no certificate in it",
                    cert.display()
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))
        }
        _ => Err("a client certificate needs both its certificate and its key file".to_owned()),
    }
}

/// Verifies the chain to a trusted CA (and the signatures) but not that the certificate names
/// the host: [`Tls::verify_hostname`] off.
#[cfg(feature = "kafka-tls")]
#[derive(Debug)]
struct ChainOnly(std::sync::Arc<rustls::client::WebPkiServerVerifier>);

#[cfg(feature = "kafka-tls")]
impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        // webpki checks the name last, after the chain: a name mismatch means the rest held.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
