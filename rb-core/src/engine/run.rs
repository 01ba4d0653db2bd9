//! The run loop: rounds on tokio's clock, jobs in flight, wake-ups.

use super::*;

impl Engine {
    pub(super) async fn next_wakeup(&self) -> Instant {
        let st = self.inner.state.lock().await;
        let cap = Instant::now() + self.inner.tick_interval;
        st.bindings
            .iter()
            .filter_map(|b| b.next_due)
            .min()
            .map(|t| t.min(cap))
            .unwrap_or(cap)
    }

    /// One round of work at the current time: detection, then every open incident moved forward as far
    /// as it can go, waiting for that (a remediation in flight included) before returning.
    ///
    /// [`Engine::run`] and [`Engine::run_for`] do not wait like this: while one incident's remediation
    /// is in flight they keep probing, detecting and working the other incidents.
    pub async fn tick(&self) -> Result<TickReport, Error> {
        self.inner.hold_incidents().await?;
        let (mut report, jobs) = self.round().await?;
        let done = join_all(jobs.into_iter().map(|j| self.inner.work(j))).await;
        self.inner.finish(done, &mut report).await?;
        Ok(report)
    }

    /// Run ticks until `shutdown` completes, or for `d` of tokio time; see [`Engine::run`].
    pub(super) async fn drive(
        &self,
        end: Option<Instant>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let inner = &*self.inner;
        let mut inflight = futures::stream::FuturesUnordered::new();
        let mut result = Ok(());
        'rounds: loop {
            if let Err(e) = inner.hold_incidents().await {
                result = Err(e);
                break;
            }
            match self.round().await {
                Ok((_, jobs)) => inflight.extend(jobs.into_iter().map(|j| inner.work(j))),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            let next = self.next_wakeup().await;
            let next = end.map_or(next, |e| next.min(e));
            loop {
                tokio::select! {
                    biased; // deterministic: shutdown wins a tie with the next round
                    _ = &mut shutdown => break 'rounds,
                    Some(done) = inflight.next(), if !inflight.is_empty() => {
                        // put back; it moves on in the next round
                        if let Err(e) = inner.finish(vec![done], &mut TickReport::default()).await {
                            result = Err(e);
                            break 'rounds;
                        }
                        // it may have asked for a fresh observation now (after a mitigation, or
                        // before acting on an approval): then a round runs at once
                        if self.next_wakeup().await <= Instant::now() {
                            break;
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(next) => {}
                    _ = inner.wake.notified() => {}
                }
                break;
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                break;
            }
        }
        // a step in flight is finished, never dropped half-applied
        while let Some(done) = inflight.next().await {
            let r = inner.finish(vec![done], &mut TickReport::default()).await;
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}
