//! An allow-listed command runner, for what only a CLI does (`docker compose up -d --scale
//! flink-taskmanager=2`, `docker compose logs`, `nodetool status`).
//!
//! - **argv, no shell.** A command is an argument vector run directly (`tokio::process`); nothing is
//!   interpreted by a shell. `sh`, `bash` and friends run only if a rule names them explicitly.
//! - **Allow-list.** [`CommandRunner`] runs only what one of its [`AllowRule`]s matches: a program name
//!   (exact) and a pattern per argument ([`Arg`]: literal, one-of, bounded integer, plain word, rest).
//!   Anything else is refused with [`ErrorKind::Refused`], naming the command and the allowed ones.
//! - **Timeout.** Past [`CommandRunner::timeout`] the child is killed (and reaped) and the run is a
//!   [`ErrorKind::Timeout`] error with the output so far.
//! - **Bounded output** kept as evidence: at most [`CommandRunner::max_output`] bytes of stdout and of
//!   stderr (the rest is read and dropped, so the child never blocks on a full pipe).
//! - **Secrets.** Values given with [`CommandRunner::secret`] or [`CommandRunner::env_secret`] are
//!   replaced by `[redacted]` in everything kept (output, argv, errors). Secrets travel to the child in
//!   its environment, never in argv: an argv containing a registered secret is refused as
//!   [`ErrorKind::Invalid`] (argv is journaled with the plan). The child's environment is cleared
//!   except `PATH`, `HOME`, `LANG`, `LC_ALL` and what [`CommandRunner::env`] / `env_secret` add.
//!
//! [`CommandRemediation`] wraps one command template as a [`Remediation`]:
//!
//! | remediation | id | risk | idempotent | reversible (undo) | exact calls |
//! | --- | --- | --- | --- | --- | --- |
//! | [`CommandRemediation`] | chosen (`compose.scale_taskmanagers`) | chosen (default disruptive) | chosen (default no) | chosen: an undo command text, or irreversible | the rendered argv, once; `{label}` placeholders are filled from [`ActionContext::label`] |
//!
//! Its `plan` renders the argv and checks it against the allow-list (refused before anything runs);
//! `apply` runs it: exit 0 is the [`Outcome`] (details: `argv`, `exit_code`, `stdout`, `stderr`,
//! `truncated`, `elapsed_ms`); a non-zero exit is [`ErrorKind::Rejected`] with the same details; a
//! timeout is [`ErrorKind::OutcomeUnknown`] (the command was killed midway: it may have partly taken
//! effect). `verify` runs the optional check command (also allow-listed): exit 0 succeeds, anything
//! else fails with its output as evidence; without one, a successful apply is trusted.

mod allow;

pub use allow::{int, lit, one_of, rest, word, AllowRule, Arg};

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rb_core::time::human;
use rb_core::{
    ActionContext, ErrorKind, Outcome, Plan, Remediation, RemediationError, Risk, Secret, Target,
    Verification,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// The argv run (secrets redacted).
    pub argv: Vec<String>,
    /// The exit code (`None` when killed by a signal).
    pub exit_code: Option<i32>,
    /// Standard output, bounded and redacted.
    pub stdout: String,
    /// Standard error, bounded and redacted.
    pub stderr: String,
    /// Whether either stream was cut at the bound.
    pub truncated: bool,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl CommandOutput {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// As JSON details for an [`Outcome`] or an error.
    pub fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Why a command did not run to a clean exit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("command `{command}`: {kind}: {message}")]
pub struct ExecError {
    /// The command line (redacted).
    pub command: String,
    /// Refused (not allowed), Invalid (a secret in argv, no such program), Timeout, Other (I/O).
    pub kind: ErrorKind,
    /// What was wrong.
    pub message: String,
    /// The output so far (on timeout).
    pub output: Option<CommandOutput>,
}

impl ExecError {
    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Runs allow-listed commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    rules: Arc<Vec<AllowRule>>,
    timeout: Duration,
    max_output: usize,
    secrets: Vec<Secret>,
    env: Vec<(String, Secret)>,
    dir: Option<std::path::PathBuf>,
}

const KEPT_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL"];

impl CommandRunner {
    /// A runner allowing exactly `rules`, with a 60 s timeout and 64 KiB of output per stream.
    pub fn new(rules: impl IntoIterator<Item = AllowRule>) -> Self {
        Self {
            rules: Arc::new(rules.into_iter().collect()),
            timeout: Duration::from_secs(60),
            max_output: 64 * 1024,
            secrets: Vec::new(),
            env: Vec::new(),
            dir: None,
        }
    }

    /// Kill commands running longer than this.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keep at most this many bytes of stdout and of stderr.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Redact this value wherever it would be kept.
    pub fn secret(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Give the child `name=value` (not a secret: shown in nothing, but not redacted either).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), Secret::new(value.into())));
        self
    }

    /// Give the child `name=<secret>` and redact the value wherever it would be kept.
    pub fn env_secret(mut self, name: impl Into<String>, secret: Secret) -> Self {
        self.secrets.push(secret.clone());
        self.env.push((name.into(), secret));
        self
    }

    /// Run in this directory (a compose project).
    pub fn current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The rules.
    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    /// Replace every registered secret in `s` by `[redacted]`.
    pub fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        for sec in &self.secrets {
            let v = sec.expose();
            if !v.is_empty() {
                out = out.replace(v, "[redacted]");
            }
        }
        out
    }

    fn line(&self, argv: &[String]) -> String {
        self.redact(&argv.join(" "))
    }

    /// Check `argv` without running it: allowed, and free of secrets.
    pub fn check(&self, argv: &[String]) -> Result<(), ExecError> {
        let command = self.line(argv);
        let err = |kind, message: String| ExecError {
            command: command.clone(),
            kind,
            message,
            output: None,
        };
        if argv.iter().any(|a| self.redact(a) != *a) {
            return Err(err(
                ErrorKind::Invalid,
                "an argument holds a secret: pass secrets through env_secret, never in argv (argv is journaled)".into(),
            ));
        }
        if !self.rules.iter().any(|r| r.matches(argv)) {
            let allowed: Vec<String> = self.rules.iter().map(|r| format!("`{r}`")).collect();
            return Err(err(
                ErrorKind::Refused,
                format!(
                    "not on the allow-list; allowed: {}",
                    if allowed.is_empty() {
                        "nothing".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
        Ok(())
    }

    /// Run `argv` (program first) if allowed: no shell, under the timeout, output bounded and redacted.
    /// A non-zero exit is not an error here ([`CommandOutput::exit_code`] says it).
    pub async fn run(&self, argv: &[String]) -> Result<CommandOutput, ExecError> {
        self.check(argv)?;
        let command = self.line(argv);
        let (program, args) = argv.split_first().ok_or_else(|| ExecError {
            command: command.clone(),
            kind: ErrorKind::Invalid,
            message: "empty argv".into(),
            output: None,
        })?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env_clear();
        for k in KEPT_ENV {
            if let Ok(v) = std::env::var(k) {
                cmd.env(k, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v.expose());
        }
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| ExecError {
            command: command.clone(),
            kind: if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::Invalid
            } else {
                ErrorKind::Other
            },
            message: format!("cannot start {program}: {e}"),
            output: None,
        })?;
        // keep a little more than the bound, so a secret cut at the bound is still redacted whole
        let slack = self
            .secrets
            .iter()
            .map(|s| s.expose().len())
            .max()
            .unwrap_or(0);
        let keep = self.max_output.saturating_add(slack);
        let out = tokio::spawn(read_bounded(child.stdout.take(), keep));
        let err = tokio::spawn(read_bounded(child.stderr.take(), keep));
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                return Err(ExecError {
                    command,
                    kind: ErrorKind::Other,
                    message: format!("waiting for it failed: {e}"),
                    output: None,
                })
            }
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        };
        // The readers end when the pipes close; a grandchild holding them must not hold us.
        let grace = Duration::from_millis(500);
        let (so, so_cut) = match tokio::time::timeout(grace, out).await {
            Ok(Ok(r)) => r,
            _ => (Vec::new(), true),
        };
        let (se, se_cut) = match tokio::time::timeout(grace, err).await {
            Ok(Ok(r)) => r,
            _ => (Vec::new(), true),
        };
        let (stdout, c1) = self.bounded_text(&so);
        let (stderr, c2) = self.bounded_text(&se);
        let output = CommandOutput {
            argv: argv.iter().map(|a| self.redact(a)).collect(),
            exit_code: status.and_then(|s| s.code()),
            stdout,
            stderr,
            truncated: so_cut || se_cut || c1 || c2,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        if status.is_none() {
            return Err(ExecError {
                command,
                kind: ErrorKind::Timeout,
                message: format!("still running after {}: killed", human(self.timeout)),
                output: Some(output),
            });
        }
        Ok(output)
    }

    /// Lossy text, redacted, then cut to the bound.
    fn bounded_text(&self, bytes: &[u8]) -> (String, bool) {
        let text = self.redact(&String::from_utf8_lossy(bytes));
        if text.len() <= self.max_output {
            return (text, false);
        }
        let mut end = self.max_output;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (format!("{}…[truncated]", &text[..end]), true)
    }
}

/// Read all of `r`, keeping the first `keep` bytes; whether more came.
async fn read_bounded<R: AsyncRead + Unpin>(r: Option<R>, keep: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len());
                if room < n {
                    cut = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, cut)
}

/// One command template as a remediation. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct CommandRemediation {
    id: String,
    runner: CommandRunner,
    target: Target,
    argv: Vec<String>,
    check: Option<Vec<String>>,
    risk: Risk,
    idempotent: bool,
    undo: Option<String>,
    effect: String,
    verify_within: Duration,
}

impl CommandRemediation {
    /// Run `argv` (with `{label}` placeholders) through `runner` on `target`. Disruptive, not
    /// idempotent and irreversible until said otherwise.
    pub fn new(
        id: impl Into<String>,
        runner: CommandRunner,
        target: Target,
        argv: &[&str],
    ) -> Self {
        Self {
            id: id.into(),
            runner,
            target,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            check: None,
            risk: Risk::Disruptive,
            idempotent: false,
            undo: None,
            effect: String::new(),
            verify_within: Duration::ZERO,
        }
    }

    /// The risk (default disruptive).
    pub fn risk(mut self, risk: Risk) -> Self {
        self.risk = risk;
        self
    }

    /// Running it twice has the effect of once (`docker compose up -d --scale x=2`).
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// It can be undone, this way (`docker compose up -d --scale flink-taskmanager=1`).
    pub fn undo(mut self, how: impl Into<String>) -> Self {
        self.undo = Some(how.into());
        self
    }

    /// What should follow.
    pub fn expect(mut self, effect: impl Into<String>) -> Self {
        self.effect = effect.into();
        self
    }

    /// Verify with this command (exit 0 = worked), retried until `within` while it fails.
    pub fn check(mut self, argv: &[&str], within: Duration) -> Self {
        self.check = Some(argv.iter().map(|s| s.to_string()).collect());
        self.verify_within = within;
        self
    }

    fn err(&self, kind: ErrorKind, endpoint: &str, message: impl Into<String>) -> RemediationError {
        RemediationError::new(&self.id, &self.target.name, endpoint, kind, message)
    }

    fn render(
        &self,
        template: &[String],
        ctx: &ActionContext,
    ) -> Result<Vec<String>, RemediationError> {
        template
            .iter()
            .map(|a| {
                let mut out = String::new();
                let mut rest = a.as_str();
                while let Some(open) = rest.find('{') {
                    let Some(close) = rest[open..].find('}') else {
                        break;
                    };
                    let name = &rest[open + 1..open + close];
                    let value = ctx.label(name).ok_or_else(|| {
                        self.err(
                            ErrorKind::Invalid,
                            &template.join(" "),
                            format!("no `{name}` label in the incident key or the finding for {{{name}}}"),
                        )
                    })?;
                    out.push_str(&rest[..open]);
                    out.push_str(value);
                    rest = &rest[open + close + 1..];
                }
                out.push_str(rest);
                Ok(out)
            })
            .collect()
    }

    fn exec_error(&self, e: ExecError, timeout_is_unknown: bool) -> RemediationError {
        let kind = match e.kind {
            ErrorKind::Timeout if timeout_is_unknown => ErrorKind::OutcomeUnknown,
            k => k,
        };
        let details = e
            .output
            .as_ref()
            .map(CommandOutput::details)
            .unwrap_or_else(|| json!({ "command": e.command }));
        let message = if kind == ErrorKind::OutcomeUnknown {
            format!(
                "{}: it was killed midway and may have partly taken effect",
                e.message
            )
        } else {
            e.message.clone()
        };
        self.err(kind, &e.command, message).with_details(details)
    }
}

#[async_trait]
impl Remediation for CommandRemediation {
    fn id(&self) -> &str {
        &self.id
    }

    fn risk(&self) -> Risk {
        self.risk
    }

    fn idempotent(&self) -> bool {
        self.idempotent
    }

    fn verify_within(&self) -> Duration {
        self.verify_within
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let argv = self.render(&self.argv, ctx)?;
        self.runner
            .check(&argv)
            .map_err(|e| self.exec_error(e, false))?;
        let check = match &self.check {
            Some(c) => {
                let c = self.render(c, ctx)?;
                self.runner
                    .check(&c)
                    .map_err(|e| self.exec_error(e, false))?;
                Some(c)
            }
            None => None,
        };
        let mut plan = Plan::new(
            &self.id,
            vec![self.target.clone()],
            format!(
                "run `{}` (argv, no shell; killed after {}){}",
                argv.join(" "),
                human(self.runner.timeout),
                check
                    .as_ref()
                    .map(|c| format!("; verify with `{}`", c.join(" ")))
                    .unwrap_or_default()
            ),
        )
        .expect(self.effect.clone())
        .params(json!({ "argv": argv, "check": check }));
        plan = match &self.undo {
            Some(u) => plan.undo(u.clone()),
            None => plan.irreversible(),
        };
        Ok(plan)
    }

    async fn apply(&self, plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let argv: Vec<String> =
            serde_json::from_value(plan.params["argv"].clone()).map_err(|e| {
                self.err(
                    ErrorKind::Invalid,
                    "-",
                    format!("the plan has no argv: {e}"),
                )
            })?;
        let out = self
            .runner
            .run(&argv)
            .await
            .map_err(|e| self.exec_error(e, true))?;
        let line = argv.join(" ");
        if !out.success() {
            return Err(self
                .err(
                    ErrorKind::Rejected,
                    &line,
                    format!(
                        "exited {}: {}",
                        out.exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "by a signal".into()),
                        out.stderr.lines().last().unwrap_or("")
                    ),
                )
                .with_details(out.details()));
        }
        Ok(Outcome::new(format!("`{line}` exited 0")).details(out.details()))
    }

    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let check: Option<Vec<String>> =
            serde_json::from_value(plan.params["check"].clone()).unwrap_or(None);
        let Some(check) = check else {
            return Ok(Verification::Succeeded {
                evidence: format!("apply succeeded: {}", outcome.summary),
            });
        };
        let out = self
            .runner
            .run(&check)
            .await
            .map_err(|e| self.exec_error(e, false))?;
        let tail = |s: &str| s.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        Ok(if out.success() {
            Verification::Succeeded {
                evidence: format!("`{}` exited 0: {}", check.join(" "), tail(&out.stdout)),
            }
        } else if self.verify_within > Duration::ZERO {
            Verification::Inconclusive {
                why: format!(
                    "`{}` exited {:?}: {}",
                    check.join(" "),
                    out.exit_code,
                    tail(&out.stderr)
                ),
            }
        } else {
            Verification::Failed {
                evidence: format!(
                    "`{}` exited {:?}: {}",
                    check.join(" "),
                    out.exit_code,
                    tail(&out.stderr)
                ),
            }
        })
    }
}
