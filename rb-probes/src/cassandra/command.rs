//! Running a command (an argv array, never a shell): the seam between the nodetool probe and the
//! machine, with a `tokio::process` adapter.

use std::time::Duration;

use async_trait::async_trait;

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, decoded lossily as UTF-8.
    pub stdout: String,
    /// Standard error, decoded lossily as UTF-8.
    pub stderr: String,
}

impl CommandOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Why a command could not run to completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The program could not be started (not found, not executable).
    #[error("cannot start {program}: {message}")]
    Spawn {
        /// The program (argv\[0\]).
        program: String,
        /// Why.
        message: String,
    },
    /// It ran longer than allowed and was killed.
    #[error("{program} did not finish within {after:?} (killed)")]
    Timeout {
        /// The program (argv\[0\]).
        program: String,
        /// The time it was given.
        after: Duration,
    },
    /// The argv was empty.
    #[error("empty command")]
    Empty,
}

/// Runs one command given as an argv array (no shell, no quoting), within `timeout`.
#[async_trait]
pub trait CommandRunner: Send + Sync + std::fmt::Debug {
    /// Run `argv` and wait for it (at most `timeout`; past it, kill it and return
    /// [`CommandError::Timeout`]).
    async fn run(&self, argv: &[String], timeout: Duration) -> Result<CommandOutput, CommandError>;
}

/// [`CommandRunner`] over `tokio::process`: stdin closed, stdout and stderr captured, the child
/// killed when the timeout passes or the future is dropped.
#[derive(Debug, Clone, Default)]
pub struct TokioCommandRunner {
    env: Vec<(String, String)>,
}

impl TokioCommandRunner {
    /// A runner that passes its own environment on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set an environment variable for every command run (e.g. `JAVA_HOME`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

#[async_trait]
impl CommandRunner for TokioCommandRunner {
    async fn run(&self, argv: &[String], timeout: Duration) -> Result<CommandOutput, CommandError> {
        let (program, args) = argv.split_first().ok_or(CommandError::Empty)?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| CommandError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        })?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(CommandOutput {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
            Ok(Err(e)) => Err(CommandError::Spawn {
                program: program.clone(),
                message: e.to_string(),
            }),
            // dropping the wait future drops the child, which kill_on_drop kills
            Err(_) => Err(CommandError::Timeout {
                program: program.clone(),
                after: timeout,
            }),
        }
    }
}
