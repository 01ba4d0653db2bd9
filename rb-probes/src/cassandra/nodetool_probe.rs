//! The `nodetool status` probe: run the real tool through a [`CommandRunner`], read its text.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::{ErrorKind, Observation, Probe, ProbeContext, ProbeError, Target};

use super::command::{CommandError, CommandRunner, TokioCommandRunner};
use super::emit::emit;
use super::model::{LivenessSource, Ring, RingSource};
use super::nodetool::parse_status;

/// How to run `nodetool status`.
#[derive(Debug, Clone)]
pub struct NodetoolStatusConfig {
    program: Vec<String>,
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    keyspace: Option<String>,
    timeout: Duration,
    expected_nodes: Vec<String>,
    max_node_series: usize,
}

impl NodetoolStatusConfig {
    /// Run `program` (e.g. `["/opt/cassandra/bin/nodetool"]`, or
    /// `["docker", "exec", "cassandra-1", "nodetool"]`) followed by the connection options and
    /// `status`.
    pub fn new<S: Into<String>>(program: impl IntoIterator<Item = S>) -> Self {
        Self {
            program: program.into_iter().map(Into::into).collect(),
            host: None,
            port: None,
            username: None,
            password_file: None,
            keyspace: None,
            timeout: Duration::from_secs(30),
            expected_nodes: Vec::new(),
            max_node_series: 64,
        }
    }

    /// `-h <host>`: the node whose JMX port nodetool talks to.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// `-p <port>`: its JMX port (7199 by default in Cassandra).
    pub fn jmx_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// JMX authentication: `-u <user> -pwf <file>`. The password is read by nodetool from the file,
    /// so it never appears in the command line, in errors or in observations.
    pub fn jmx_credentials(
        mut self,
        user: impl Into<String>,
        password_file: impl Into<PathBuf>,
    ) -> Self {
        self.username = Some(user.into());
        self.password_file = Some(password_file.into());
        self
    }

    /// `status <keyspace>`: effective ownership for that keyspace.
    pub fn keyspace(mut self, keyspace: impl Into<String>) -> Self {
        self.keyspace = Some(keyspace.into());
        self
    }

    /// How long nodetool may run (default 30 s; the probe's deadline still applies). nodetool starts
    /// a JVM: allow a few seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Nodes (addresses or host IDs) the ring must list: any one absent is reported missing.
    pub fn expected_nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.expected_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// At most this many `cassandra_node_up` series (down nodes first; default 64).
    pub fn max_node_series(mut self, n: usize) -> Self {
        self.max_node_series = n;
        self
    }

    /// The argv that will run.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = self.program.clone();
        if let Some(h) = &self.host {
            argv.extend(["-h".to_string(), h.clone()]);
        }
        if let Some(p) = self.port {
            argv.extend(["-p".to_string(), p.to_string()]);
        }
        if let Some(u) = &self.username {
            argv.extend(["-u".to_string(), u.clone()]);
        }
        if let Some(f) = &self.password_file {
            argv.extend(["-pwf".to_string(), f.display().to_string()]);
        }
        argv.push("status".into());
        if let Some(k) = &self.keyspace {
            argv.push(k.clone());
        }
        argv
    }
}

/// Ring state from the text of the real `nodetool status` (liveness: the failure detector of the
/// node nodetool talks to, over JMX). Probe id `cassandra.nodetool_status`.
#[derive(Debug, Clone)]
pub struct NodetoolStatusProbe {
    target: Target,
    config: NodetoolStatusConfig,
    runner: Arc<dyn CommandRunner>,
}

impl NodetoolStatusProbe {
    /// The probe id.
    pub const ID: &'static str = "cassandra.nodetool_status";

    /// A probe running nodetool with `tokio::process`.
    pub fn new(target: Target, config: NodetoolStatusConfig) -> Self {
        Self::with_runner(target, config, Arc::new(TokioCommandRunner::new()))
    }

    /// A probe running nodetool through `runner`.
    pub fn with_runner(
        target: Target,
        config: NodetoolStatusConfig,
        runner: Arc<dyn CommandRunner>,
    ) -> Self {
        Self {
            target,
            config,
            runner,
        }
    }

    /// Read `nodetool status` text into an observation (what the probe does after running the
    /// command; public for callers that already have the text).
    pub fn observation_from_text(
        &self,
        ctx: &ProbeContext,
        text: &str,
    ) -> Result<Observation, ProbeError> {
        let endpoint = self.config.argv().join(" ");
        let parsed = parse_status(text).map_err(|e| {
            ProbeError::new(
                Self::ID,
                &self.target.name,
                &endpoint,
                ErrorKind::BadResponse,
                e.to_string(),
            )
            .with_source(e)
        })?;
        let mut ring = Ring {
            source: RingSource::Nodetool,
            liveness_source: LivenessSource::NodetoolFailureDetector,
            observed_via: endpoint,
            cluster_name: None,
            nodes: parsed.nodes,
            owns_basis: parsed.owns_basis,
            schema_versions: Default::default(),
            schema_disagreement: false,
            missing_expected: Vec::new(),
            notes: parsed.notes,
        };
        ring.missing_expected = ring.find_missing(&self.config.expected_nodes);
        let mut obs = Observation::new(Self::ID, &self.target.name, ctx.now());
        if !parsed.not_understood.is_empty() {
            let lines: Vec<String> = parsed
                .not_understood
                .iter()
                .map(ToString::to_string)
                .collect();
            obs.mark_incomplete(format!(
                "nodetool status: {} line(s) not understood: {}",
                lines.len(),
                lines.join("; ")
            ));
            if !ring.missing_expected.is_empty() {
                obs.mark_incomplete(format!(
                    "expected node(s) {} may be in the lines not understood",
                    ring.missing_expected.join(", ")
                ));
            }
        }
        emit(&mut obs, &ring, self.config.max_node_series, false);
        Ok(obs)
    }
}

/// Classify a failed nodetool run by what it printed.
fn failure_kind(text: &str) -> ErrorKind {
    let t = text.to_ascii_lowercase();
    if t.contains("authentication failed")
        || t.contains("invalid username or password")
        || t.contains("securityexception")
        || t.contains("credentials required")
        || t.contains("bad credentials")
    {
        ErrorKind::Unauthorized
    } else if t.contains("connection refused")
        || t.contains("failed to connect")
        || t.contains("connectexception")
        || t.contains("no route to host")
        || t.contains("unknownhostexception")
    {
        ErrorKind::Unreachable
    } else if t.contains("timed out") || t.contains("sockettimeoutexception") {
        ErrorKind::Timeout
    } else {
        ErrorKind::Rejected
    }
}

fn excerpt(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[async_trait]
impl Probe for NodetoolStatusProbe {
    fn id(&self) -> &str {
        Self::ID
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let argv = self.config.argv();
        let endpoint = argv.join(" ");
        let site = crate::common::ProbeSite {
            probe: Self::ID,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let budget = self.config.timeout.min(ctx.remaining());
        let out = site
            .within(ctx, async {
                self.runner.run(&argv, budget).await.map_err(|e| {
                    let kind = match e {
                        CommandError::Timeout { .. } => ErrorKind::Timeout,
                        CommandError::Spawn { .. } | CommandError::Empty => ErrorKind::Invalid,
                    };
                    site.error(kind, e.to_string()).with_source(e)
                })
            })
            .await?;
        if !out.success() {
            let printed = format!("{}\n{}", out.stderr, out.stdout);
            let code = out.code.map_or_else(
                || "killed by a signal".to_string(),
                |c| format!("exit code {c}"),
            );
            return Err(site.error(
                failure_kind(&printed),
                format!("nodetool failed ({code}): {}", excerpt(&printed, 600)),
            ));
        }
        self.observation_from_text(ctx, &out.stdout)
    }
}
