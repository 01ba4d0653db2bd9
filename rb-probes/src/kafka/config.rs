//! How the adapter connects: bootstrap servers, SASL and TLS. Credentials are [`Secret`]s and
//! never appear in `Debug`, errors or observations.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rb_core::Secret;

/// A SASL mechanism Kafka accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN`: user and password sent as is (use it over TLS).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials.
#[derive(Clone)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// TLS settings: the CA to trust and, for mutual TLS, the client certificate.
#[derive(Clone, Default)]
pub struct Tls {
    /// A PEM file of CA certificates to trust (`None`: the system's trust store).
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate, for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// The PEM private key of the client certificate.
    pub client_key_file: Option<PathBuf>,
    /// The key's passphrase, if it is encrypted.
    pub client_key_password: Option<Secret>,
    /// Whether to check that the broker's certificate names the host connected to (default on).
    pub verify_hostname: bool,
}

impl Tls {
    /// TLS trusting the system's store, hostname verification on.
    pub fn system() -> Self {
        Self {
            verify_hostname: true,
            ..Self::default()
        }
    }

    /// TLS trusting the CAs of a PEM file, hostname verification on.
    pub fn with_ca_file(ca: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: Some(ca.into()),
            verify_hostname: true,
            ..Self::default()
        }
    }

    /// Add a client certificate and key (mutual TLS).
    pub fn client_cert(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        key_password: Option<Secret>,
    ) -> Self {
        self.client_cert_file = Some(cert.into());
        self.client_key_file = Some(key.into());
        self.client_key_password = key_password;
        self
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("client_key_password", &self.client_key_password)
            .field("verify_hostname", &self.verify_hostname)
            .finish()
    }
}

/// A client property value: plain text, or a secret handed to the driver only.
#[derive(Debug, Clone)]
pub enum PropertyValue {
    /// A plain value.
    Plain(String),
    /// A secret value (printed redacted).
    Secret(Secret),
}

/// How to reach a Kafka cluster.
///
/// ```
/// use rb_core::Secret;
/// use rb_probes::kafka::{KafkaConfig, Sasl, SaslMechanism, Tls};
/// let cfg = KafkaConfig::new("kafka-1:9093,kafka-2:9093")
///     .sasl(Sasl { mechanism: SaslMechanism::ScramSha512, username: "rb".into(), password: Secret::new("pw") })
///     .tls(Tls::with_ca_file("/etc/rb/kafka-ca.pem"));
/// assert_eq!(cfg.security_protocol(), "sasl_ssl");
/// assert!(!format!("{cfg:?}").contains("pw\""));
/// ```
#[derive(Clone)]
pub struct KafkaConfig {
    /// `host:port,host:port` of some brokers.
    pub bootstrap: String,
    /// The client id the brokers see (default `rb-probe`).
    pub client_id: String,
    /// SASL authentication, if the cluster requires it.
    pub sasl: Option<Sasl>,
    /// TLS, if the listener speaks it.
    pub tls: Option<Tls>,
    /// How long an idle connection may stay open (librdkafka's `connections.max.idle.ms`).
    pub connections_max_idle: Duration,
    /// Whether the adapter sends OffsetFetch and ListOffsets over its own connections (default
    /// on): one OffsetFetch for all of a group's partitions and one ListOffsets per leader,
    /// whatever their number. It applies to every listener (TLS and SASL PLAIN / SCRAM with the
    /// `kafka-tls` feature) except one whose client key is encrypted
    /// ([`Tls::client_key_password`]); then, or off, or when a broker speaks none of the versions
    /// rb does, the two requests go through librdkafka in calls of
    /// [`partitions_per_request`](Self::partitions_per_request).
    pub native_offsets: bool,
    /// When the offsets go through librdkafka: the most partitions one OffsetFetch or
    /// ListOffsets call carries (default 500). Larger lists are split into calls of this size,
    /// all sent at once (log-end offsets per leader first, so that one call is one ListOffsets):
    /// librdkafka matches each partition of an answer against the request's list one by one,
    /// which is quadratic in the list's length (10,000 partitions in one call cost about 60 times
    /// 2,000; see `benches/README.md`).
    pub partitions_per_request: usize,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap", &self.bootstrap)
            .field("client_id", &self.client_id)
            .field("sasl", &self.sasl)
            .field("tls", &self.tls)
            .field("native_offsets", &self.native_offsets)
            .finish()
    }
}

impl KafkaConfig {
    /// A plaintext connection to `bootstrap`.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            client_id: "rb-probe".to_owned(),
            sasl: None,
            tls: None,
            connections_max_idle: Duration::from_secs(9 * 60),
            native_offsets: true,
            partitions_per_request: 500,
        }
    }

    /// Authenticate with SASL.
    pub fn sasl(mut self, sasl: Sasl) -> Self {
        self.sasl = Some(sasl);
        self
    }

    /// Speak TLS.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Send OffsetFetch and ListOffsets over rb's own connections (`true`, the default) or always
    /// through librdkafka (`false`).
    pub fn native_offsets(mut self, on: bool) -> Self {
        self.native_offsets = on;
        self
    }

    /// Whether OffsetFetch and ListOffsets go over rb's own connections with these settings:
    /// [`native_offsets`](Self::native_offsets) on, and TLS or SASL only with the `kafka-tls`
    /// feature and without an encrypted client key (rustls reads unencrypted keys only).
    pub fn uses_native_offsets(&self) -> bool {
        let secured = self.sasl.is_some() || self.tls.is_some();
        let encrypted_key = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_key_password.is_some());
        self.native_offsets && (!secured || cfg!(feature = "kafka-tls")) && !encrypted_key
    }

    /// When the offsets go through librdkafka: split them into calls of at most `n` partitions
    /// (at least 1).
    pub fn partitions_per_request(mut self, n: usize) -> Self {
        self.partitions_per_request = n.max(1);
        self
    }

    /// Set the client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Kafka's `security.protocol` for these settings: `plaintext`, `ssl`, `sasl_plaintext` or
    /// `sasl_ssl`.
    pub fn security_protocol(&self) -> &'static str {
        match (&self.sasl, &self.tls) {
            (None, None) => "plaintext",
            (None, Some(_)) => "ssl",
            (Some(_), None) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        }
    }

    /// The client properties these settings stand for (librdkafka names), secrets kept as
    /// [`PropertyValue::Secret`]. What the adapter hands the driver, and what tests check.
    pub fn properties(&self) -> Vec<(&'static str, PropertyValue)> {
        let plain = |v: &str| PropertyValue::Plain(v.to_owned());
        let mut out = vec![
            ("bootstrap.servers", plain(&self.bootstrap)),
            ("client.id", plain(&self.client_id)),
            ("security.protocol", plain(self.security_protocol())),
            (
                "connections.max.idle.ms",
                PropertyValue::Plain(self.connections_max_idle.as_millis().to_string()),
            ),
        ];
        if let Some(sasl) = &self.sasl {
            out.push(("sasl.mechanism", plain(sasl.mechanism.as_str())));
            out.push(("sasl.username", plain(&sasl.username)));
            out.push((
                "sasl.password",
                PropertyValue::Secret(sasl.password.clone()),
            ));
        }
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_file {
                out.push(("ssl.ca.location", plain(&ca.display().to_string())));
            }
            if let Some(cert) = &tls.client_cert_file {
                out.push((
                    "ssl.certificate.location",
                    plain(&cert.display().to_string()),
                ));
            }
            if let Some(key) = &tls.client_key_file {
                out.push(("ssl.key.location", plain(&key.display().to_string())));
            }
            if let Some(pw) = &tls.client_key_password {
                out.push(("ssl.key.password", PropertyValue::Secret(pw.clone())));
            }
            out.push((
                "ssl.endpoint.identification.algorithm",
                plain(if tls.verify_hostname { "https" } else { "none" }),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn get<'a>(props: &'a [(&'static str, PropertyValue)], key: &str) -> Option<&'a PropertyValue> {
        props.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn plain(props: &[(&'static str, PropertyValue)], key: &str) -> String {
        match get(props, key) {
            Some(PropertyValue::Plain(v)) => v.clone(),
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn plaintext_has_no_security_properties() {
        let props = KafkaConfig::new("a:9092").properties();
        assert_eq!(plain(&props, "security.protocol"), "plaintext");
        assert_eq!(plain(&props, "bootstrap.servers"), "a:9092");
        assert!(get(&props, "sasl.password").is_none());
        assert!(get(&props, "ssl.ca.location").is_none());
    }

    #[test]
    fn each_mechanism_and_protocol() {
        for (mech, name) in [
            (SaslMechanism::Plain, "PLAIN"),
            (SaslMechanism::ScramSha256, "SCRAM-SHA-256"),
            (SaslMechanism::ScramSha512, "SCRAM-SHA-512"),
        ] {
            let sasl = Sasl {
                mechanism: mech,
                username: "rb".into(),
                password: Secret::new("s3cr3t-pw"),
            };
            let cfg = KafkaConfig::new("a:9092").sasl(sasl.clone());
            let props = cfg.properties();
            assert_eq!(plain(&props, "security.protocol"), "sasl_plaintext");
            assert_eq!(plain(&props, "sasl.mechanism"), name);
            assert_eq!(plain(&props, "sasl.username"), "rb");
            match get(&props, "sasl.password") {
                Some(PropertyValue::Secret(s)) => assert_eq!(s.expose(), "s3cr3t-pw"),
                other => panic!("{other:?}"),
            }
            let tls = KafkaConfig::new("a:9093").sasl(sasl).tls(Tls::system());
            assert_eq!(tls.security_protocol(), "sasl_ssl");
        }
    }

    #[test]
    fn tls_with_client_certificate() {
        let cfg = KafkaConfig::new("a:9093").tls(Tls::with_ca_file("/ca.pem").client_cert(
            "/c.pem",
            "/k.pem",
            Some(Secret::new("key-pass-123")),
        ));
        let props = cfg.properties();
        assert_eq!(plain(&props, "security.protocol"), "ssl");
        assert_eq!(plain(&props, "ssl.ca.location"), "/ca.pem");
        assert_eq!(plain(&props, "ssl.certificate.location"), "/c.pem");
        assert_eq!(plain(&props, "ssl.key.location"), "/k.pem");
        assert_eq!(
            plain(&props, "ssl.endpoint.identification.algorithm"),
            "https"
        );
        assert!(matches!(
            get(&props, "ssl.key.password"),
            Some(PropertyValue::Secret(_))
        ));
    }

    #[test]
    fn debug_redacts_every_secret() {
        let cfg = KafkaConfig::new("a:9093")
            .sasl(Sasl {
                mechanism: SaslMechanism::ScramSha256,
                username: "rb".into(),
                password: Secret::new("s3cr3t-pw"),
            })
            .tls(Tls::with_ca_file("/ca.pem").client_cert(
                "/c.pem",
                "/k.pem",
                Some(Secret::new("key-pass-123")),
            ));
        let shown = format!("{cfg:?} {:?}", cfg.properties());
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(!shown.contains("key-pass-123"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(shown.contains("rb"), "{shown}");
    }
}
