//! What every probe family shares: deadlines, typed errors, bounded output.

mod topk;

pub use topk::TopK;

use std::future::Future;

use rb_core::{ErrorKind, ProbeContext, ProbeError};

/// Who a probe is, for its errors: the probe id, the target name and the endpoint it talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSite<'a> {
    /// The probe id (`kafka.consumer_lag`).
    pub probe: &'a str,
    /// The target name (`kafka-main`).
    pub target: &'a str,
    /// The endpoint (a URL, `host:port`, or a command); redacted by [`ProbeError::new`].
    pub endpoint: &'a str,
}

impl ProbeSite<'_> {
    /// A [`ProbeError`] of `kind` at this site.
    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> ProbeError {
        ProbeError::new(self.probe, self.target, self.endpoint, kind, message)
    }

    /// Run `fut` until the context's deadline; past it, a [`ErrorKind::Timeout`] error naming this site.
    pub async fn within<T, F>(&self, ctx: &ProbeContext, fut: F) -> Result<T, ProbeError>
    where
        F: Future<Output = Result<T, ProbeError>>,
    {
        let budget = ctx.remaining();
        match tokio::time::timeout_at(ctx.deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::timeout(
                self.probe,
                self.target,
                self.endpoint,
                budget,
            )),
        }
    }
}
