//! The lakehouse runbook against real endpoints, from a TOML file.
//!
//! The file names each system's address and the *names of the environment variables* holding its
//! credentials; a credential itself in the file is refused. Remediations run in dry-run unless the
//! file says `dry_run = false` (and the command line agrees). Every section but `[lakehouse]` is
//! optional: a system without a section keeps an empty endpoint, and the playbooks that need it
//! report it blind rather than healthy.
//!
//! ```toml
//! [lakehouse]
//! dry_run = true                       # the default
//!
//! [timings]                            # optional; the seed's values by default
//! probe_every = "30s"
//! for_duration = "2m"
//!
//! [kafka]
//! bootstrap = "kafka-1:9092,kafka-2:9092"
//! sasl_user = "rb"
//! sasl_password_env = "RB_KAFKA_PASSWORD"
//!
//! [kafka_connect]
//! url = "http://connect:8083"
//!
//! [flink]
//! url = "http://flink-jobmanager:8081"
//!
//! [cassandra]
//! contact_points = ["10.0.0.11:9042", "10.0.0.12:9042"]
//!
//! [nessie]
//! url = "http://nessie:19120"
//! management_url = "http://nessie:9000"
//! token_env = "RB_NESSIE_TOKEN"
//!
//! [postgres]
//! host = "pg"
//! port = 5432
//! user = "rb_probe"
//! password_env = "RB_PG_PASSWORD"
//! database = "lake"
//! ```
//!
//! A bad file gets an error naming the line, the column and what was expected
//! ([`ConfigError::Parse`]); a variable that is named but not set is an error too
//! ([`ConfigError::MissingEnv`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use rb_core::Secret;
use rb_probes::sql::{SqlEndpoint, SqlTls};
use serde::Deserialize;

use super::{Credentials, Endpoints, Timings};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid: where, and what was expected.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was wrong or expected.
        message: String,
    },
    /// A credential's environment variable is named but not set.
    #[error("{section}: the environment variable {var} (named by {key}) is not set")]
    MissingEnv {
        /// The section (`[kafka]`).
        section: String,
        /// The key naming it (`sasl_password_env`).
        key: String,
        /// The variable.
        var: String,
    },
    /// A value is well-formed TOML but unusable.
    #[error("{section}: {message}")]
    Invalid {
        /// The section.
        section: String,
        /// What is wrong.
        message: String,
    },
}

/// The parsed file (addresses and variable names only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakehouseFile {
    /// `[lakehouse]`.
    pub lakehouse: Option<General>,
    /// `[timings]`.
    pub timings: Option<TimingsSection>,
    /// `[kafka]`.
    pub kafka: Option<KafkaSection>,
    /// `[kafka_connect]`.
    pub kafka_connect: Option<HttpSection>,
    /// `[flink]`.
    pub flink: Option<HttpSection>,
    /// `[cassandra]`.
    pub cassandra: Option<CassandraSection>,
    /// `[nessie]`.
    pub nessie: Option<NessieSection>,
    /// `[minio]`.
    pub minio: Option<HttpSection>,
    /// `[trino]`.
    pub trino: Option<HttpSection>,
    /// `[prometheus]`.
    pub prometheus: Option<HttpSection>,
    /// `[loki]`.
    pub loki: Option<HttpSection>,
    /// `[alertmanager]`.
    pub alertmanager: Option<HttpSection>,
    /// `[postgres]`.
    pub postgres: Option<SqlSection>,
    /// `[mysql]`.
    pub mysql: Option<SqlSection>,
}

/// `[lakehouse]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct General {
    /// Plan and journal remediations without applying them (default `true`).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Where the SQLite journal and the reviews go (default `./rb-out`).
    pub out_dir: Option<String>,
}

fn yes() -> bool {
    true
}

/// `[timings]`: durations as `"30s"`, `"2m"`, `"1h"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingsSection {
    /// How often each detector probes.
    pub probe_every: Option<String>,
    /// Probe deadline.
    pub probe_deadline: Option<String>,
    /// For-duration of the thresholds.
    pub for_duration: Option<String>,
    /// Stability window of recovery.
    pub stable_for: Option<String>,
    /// Stage before a harsher step.
    pub stage: Option<String>,
    /// Verification deadline of remediations.
    pub verify_within: Option<String>,
}

/// `[kafka]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// SASL user.
    pub sasl_user: Option<String>,
    /// The variable holding the SASL password.
    pub sasl_password_env: Option<String>,
}

/// An HTTP system.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Base URL.
    pub url: String,
    /// Basic-auth user.
    pub user: Option<String>,
    /// The variable holding the password (basic auth).
    pub password_env: Option<String>,
    /// The variable holding a bearer token.
    pub token_env: Option<String>,
}

/// `[cassandra]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraSection {
    /// `host:port` of the contact points.
    pub contact_points: Vec<String>,
    /// User.
    pub user: Option<String>,
    /// The variable holding the password.
    pub password_env: Option<String>,
}

/// `[nessie]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NessieSection {
    /// API base URL (`http://nessie:19120`).
    pub url: String,
    /// Management base URL (`http://nessie:9000`).
    pub management_url: String,
    /// The variable holding the bearer token.
    pub token_env: Option<String>,
}

/// `[postgres]` / `[mysql]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSection {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// The variable holding the password.
    pub password_env: String,
    /// Database.
    pub database: Option<String>,
    /// `disable`, `prefer` (default) or `require`.
    pub tls: Option<String>,
}

/// A configuration ready to build [`Systems`](super::Systems) from.
#[derive(Debug, Clone)]
pub struct LakehouseConfig {
    /// Addresses.
    pub endpoints: Endpoints,
    /// Credentials, read from the environment.
    pub credentials: Credentials,
    /// Durations.
    pub timings: Timings,
    /// Whether remediations are only planned.
    pub dry_run: bool,
    /// Output directory.
    pub out_dir: String,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

const SECRET_KEYS: &[&str] = &["password", "token", "sasl_password", "secret"];

impl LakehouseConfig {
    /// The engine this file describes: every client built from its endpoints and credentials, the
    /// runbook's playbooks for the systems it names, the SQLite journal `journal.db` in `out_dir`
    /// (created if missing), dry-run as the file says, approvals asked of `approver`. Nothing is
    /// contacted until the engine runs.
    pub async fn engine(
        &self,
        approver: std::sync::Arc<dyn rb_core::policy::Approver>,
    ) -> anyhow::Result<rb_core::Engine> {
        use anyhow::Context as _;
        let out = Path::new(&self.out_dir);
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let systems = super::Systems::new(
            self.endpoints.clone(),
            self.credentials.clone(),
            self.timings.clone(),
        )?;
        let journal = rb_core::journal::SqliteJournal::open(out.join("journal.db")).await?;
        Ok(rb_core::Engine::builder(super::runbook(&systems)?)
            .journal(std::sync::Arc::new(journal))
            .approver(approver)
            .policy(rb_core::policy::SafetyPolicy {
                dry_run: self.dry_run,
                ..rb_core::policy::SafetyPolicy::default()
            })
            .build()
            .await?)
    }

    /// Read and check `path`; credentials come from the environment (`env` lets tests supply
    /// their own).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text, |k| {
            std::env::var(k).ok()
        })
    }

    /// Parse `text` (named `path` in errors), reading credentials through `env`.
    pub fn parse(
        path: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file: LakehouseFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_col(text, span.start));
            let mut message = e.message().to_string();
            if let Some(key) = SECRET_KEYS.iter().find(|k| message.contains(&format!("`{k}`"))) {
                message = format!(
                    "`{key}` must not be written in the file: put it in an environment variable and name the variable with `{key}_env`"
                );
            }
            ConfigError::Parse {
                path: path.to_string(),
                line,
                column,
                message,
            }
        })?;
        Self::from_file(file, env)
    }

    fn from_file(
        f: LakehouseFile,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let secret =
            |section: &str,
             key: &str,
             var: &Option<String>|
             -> Result<Option<Secret>, ConfigError> {
                match var {
                    None => Ok(None),
                    Some(v) => env(v).map(|s| Some(Secret::new(s))).ok_or_else(|| {
                        ConfigError::MissingEnv {
                            section: format!("[{section}]"),
                            key: key.to_string(),
                            var: v.clone(),
                        }
                    }),
                }
            };
        let basic = |section: &str,
                     h: &Option<HttpSection>|
         -> Result<Option<(String, Secret)>, ConfigError> {
            let Some(h) = h else { return Ok(None) };
            match (&h.user, secret(section, "password_env", &h.password_env)?) {
                (Some(u), Some(p)) => Ok(Some((u.clone(), p))),
                (None, None) => Ok(None),
                (Some(_), None) => Err(ConfigError::Invalid {
                    section: format!("[{section}]"),
                    message: "`user` needs `password_env`".into(),
                }),
                (None, Some(_)) => Err(ConfigError::Invalid {
                    section: format!("[{section}]"),
                    message: "`password_env` needs `user`".into(),
                }),
            }
        };
        let url = |h: &Option<HttpSection>| h.as_ref().map(|h| h.url.clone()).unwrap_or_default();

        let mut timings = Timings::seed();
        if let Some(t) = &f.timings {
            let d =
                |key: &str, v: &Option<String>, into: &mut Duration| -> Result<(), ConfigError> {
                    if let Some(s) = v {
                        *into =
                            rb_core::time::parse_duration(s).map_err(|e| ConfigError::Invalid {
                                section: "[timings]".into(),
                                message: format!("{key} = {s:?}: {e}"),
                            })?;
                    }
                    Ok(())
                };
            d("probe_every", &t.probe_every, &mut timings.probe_every)?;
            d(
                "probe_deadline",
                &t.probe_deadline,
                &mut timings.probe_deadline,
            )?;
            d("for_duration", &t.for_duration, &mut timings.for_duration)?;
            d("stable_for", &t.stable_for, &mut timings.stable_for)?;
            d("stage", &t.stage, &mut timings.stage)?;
            d(
                "verify_within",
                &t.verify_within,
                &mut timings.verify_within,
            )?;
        }

        let mut cassandra = Vec::new();
        if let Some(c) = &f.cassandra {
            for cp in &c.contact_points {
                let addr: Option<SocketAddr> = cp.to_socket_addrs().ok().and_then(|mut a| a.next());
                cassandra.push(addr.ok_or_else(|| ConfigError::Invalid {
                    section: "[cassandra]".into(),
                    message: format!("contact point {cp:?} is not a resolvable host:port"),
                })?);
            }
        }
        let sql =
            |section: &str, s: &Option<SqlSection>| -> Result<Option<SqlEndpoint>, ConfigError> {
                let Some(s) = s else { return Ok(None) };
                let password = secret(section, "password_env", &Some(s.password_env.clone()))?
                    .unwrap_or_else(|| Secret::new(String::new()));
                let mut ep = SqlEndpoint::new(s.host.clone(), s.port, s.user.clone(), password);
                ep.database = s.database.clone();
                ep.tls = match s.tls.as_deref() {
                    None | Some("prefer") => SqlTls::Prefer,
                    Some("disable") => SqlTls::Disable,
                    Some("require") => SqlTls::Require,
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            section: format!("[{section}]"),
                            message: format!(
                                "tls = {other:?}: expected \"disable\", \"prefer\" or \"require\""
                            ),
                        })
                    }
                };
                Ok(Some(ep))
            };

        let credentials = Credentials {
            kafka_sasl: match &f.kafka {
                Some(k) => match (
                    &k.sasl_user,
                    secret("kafka", "sasl_password_env", &k.sasl_password_env)?,
                ) {
                    (Some(u), Some(p)) => Some((u.clone(), p)),
                    _ => None,
                },
                None => None,
            },
            cassandra: match &f.cassandra {
                Some(c) => match (
                    &c.user,
                    secret("cassandra", "password_env", &c.password_env)?,
                ) {
                    (Some(u), Some(p)) => Some((u.clone(), p)),
                    _ => None,
                },
                None => None,
            },
            kafka_connect: basic("kafka_connect", &f.kafka_connect)?,
            flink: basic("flink", &f.flink)?,
            nessie_token: match &f.nessie {
                Some(n) => secret("nessie", "token_env", &n.token_env)?,
                None => None,
            },
            minio_token: match &f.minio {
                Some(m) => secret("minio", "token_env", &m.token_env)?,
                None => None,
            },
            trino: basic("trino", &f.trino)?,
            prometheus: basic("prometheus", &f.prometheus)?,
            loki: basic("loki", &f.loki)?,
            alertmanager: basic("alertmanager", &f.alertmanager)?,
        };
        let endpoints = Endpoints {
            kafka_bootstrap: f
                .kafka
                .as_ref()
                .map(|k| k.bootstrap.clone())
                .unwrap_or_default(),
            kafka_connect: url(&f.kafka_connect),
            flink: url(&f.flink),
            cassandra,
            nessie: f.nessie.as_ref().map(|n| n.url.clone()).unwrap_or_default(),
            nessie_management: f
                .nessie
                .as_ref()
                .map(|n| n.management_url.clone())
                .unwrap_or_default(),
            minio: url(&f.minio),
            trino: url(&f.trino),
            prometheus: url(&f.prometheus),
            loki: url(&f.loki),
            alertmanager: f.alertmanager.as_ref().map(|a| a.url.clone()),
            postgres: sql("postgres", &f.postgres)?,
            mysql: sql("mysql", &f.mysql)?,
        };
        let general = f.lakehouse.unwrap_or(General {
            dry_run: true,
            out_dir: None,
        });
        Ok(Self {
            endpoints,
            credentials,
            timings,
            dry_run: general.dry_run,
            out_dir: general.out_dir.unwrap_or_else(|| "rb-out".into()),
        })
    }
}
