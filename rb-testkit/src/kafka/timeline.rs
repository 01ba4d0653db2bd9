//! [`LagTimeline`]: lag of one group on one topic as a function of (tokio) time.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cluster::FakeKafka;
use super::error::{FakeKafkaError, Result};

/// The lag a timeline step sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LagTarget {
    /// The same lag on every partition.
    Uniform(i64),
    /// One lag per partition, by partition index (must list every partition).
    PerPartition(Vec<i64>),
}

impl From<i64> for LagTarget {
    fn from(lag: i64) -> Self {
        LagTarget::Uniform(lag)
    }
}

impl From<Vec<i64>> for LagTarget {
    fn from(lags: Vec<i64>) -> Self {
        LagTarget::PerPartition(lags)
    }
}

impl From<&[i64]> for LagTarget {
    fn from(lags: &[i64]) -> Self {
        LagTarget::PerPartition(lags.to_vec())
    }
}

/// One step of a [`LagTimeline`]: at `at` after the start, make the lag `lag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagStep {
    /// Offset from the timeline's start.
    pub at: Duration,
    /// The lag to set.
    pub lag: LagTarget,
}

/// A scripted lag scenario for one consumer group on one topic: a list of `(time offset, lag)`
/// steps, each applied with [`FakeKafka::set_lag`] (growing lag produces, shrinking lag commits
/// forward, exactly as in production).
///
/// Apply it either by hand with [`tick`](LagTimeline::tick) (give it the elapsed time; every due step
/// is applied in order, so the end state does not depend on how often you tick), or let
/// [`drive`](LagTimeline::drive) sleep on the tokio clock between steps, which makes the scenario
/// instant and deterministic under `tokio::time::pause()`. [`spawn`](LagTimeline::spawn) runs
/// `drive` as a task.
///
/// ```no_run
/// # async fn demo(fake: rb_testkit::kafka::FakeKafka) -> Result<(), rb_testkit::kafka::FakeKafkaError> {
/// use std::time::Duration;
/// use rb_testkit::kafka::LagTimeline;
/// // 12,000 behind per partition, then drained to zero over one minute in 6 steps.
/// let timeline = LagTimeline::new("flink-orders", "orders")
///     .step(Duration::ZERO, 12_000)
///     .linear(Duration::from_secs(10), Duration::from_secs(70), 12_000, 0, 6);
/// timeline.drive(&fake).await?;
/// assert_eq!(fake.total_lag("flink-orders", "orders")?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagTimeline {
    group: String,
    topic: String,
    steps: Vec<LagStep>,
    next: usize,
}

impl LagTimeline {
    /// An empty timeline for `group` on `topic`.
    pub fn new(group: impl Into<String>, topic: impl Into<String>) -> Self {
        LagTimeline {
            group: group.into(),
            topic: topic.into(),
            steps: Vec::new(),
            next: 0,
        }
    }

    /// Adds a step. Steps are kept ordered by time; steps at the same time apply in insertion order.
    pub fn step(mut self, at: Duration, lag: impl Into<LagTarget>) -> Self {
        let pos = self.steps.partition_point(|s| s.at <= at);
        self.steps.insert(
            pos,
            LagStep {
                at,
                lag: lag.into(),
            },
        );
        self
    }

    /// Adds a linear ramp of a uniform lag: `steps + 1` steps from `from_lag` at `start` to `to_lag`
    /// at `end` (integer interpolation; `steps == 0` is treated as 1).
    pub fn linear(
        mut self,
        start: Duration,
        end: Duration,
        from_lag: i64,
        to_lag: i64,
        steps: u32,
    ) -> Self {
        let steps = steps.max(1);
        let span = end.saturating_sub(start);
        for i in 0..=steps {
            let at = start + span * i / steps;
            let lag = from_lag + (to_lag - from_lag) * i64::from(i) / i64::from(steps);
            self = self.step(at, lag);
        }
        self
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// All steps, ordered by time.
    pub fn steps(&self) -> &[LagStep] {
        &self.steps
    }

    /// When the next unapplied step is due (offset from the start), `None` once all are applied.
    pub fn next_at(&self) -> Option<Duration> {
        self.steps.get(self.next).map(|s| s.at)
    }

    /// Whether every step has been applied.
    pub fn is_finished(&self) -> bool {
        self.next >= self.steps.len()
    }

    /// Applies, in order, every not yet applied step due at `elapsed` (time since the start) and
    /// returns how many were applied. A failing step is not marked applied.
    pub fn tick(&mut self, fake: &FakeKafka, elapsed: Duration) -> Result<usize> {
        let mut applied = 0;
        while let Some(step) = self.steps.get(self.next) {
            if step.at > elapsed {
                break;
            }
            apply(fake, &self.group, &self.topic, &step.lag)?;
            self.next += 1;
            applied += 1;
        }
        Ok(applied)
    }

    /// Runs the remaining steps against `fake`, sleeping on the tokio clock (from now) until each is
    /// due.
    pub async fn drive(mut self, fake: &FakeKafka) -> Result<()> {
        let start = tokio::time::Instant::now();
        while let Some(at) = self.next_at() {
            tokio::time::sleep_until(start + at).await;
            self.tick(fake, at)?;
        }
        Ok(())
    }

    /// [`drive`](LagTimeline::drive) as a tokio task (must be called within a runtime).
    pub fn spawn(self, fake: FakeKafka) -> tokio::task::JoinHandle<Result<()>> {
        tokio::spawn(async move { self.drive(&fake).await })
    }
}

fn apply(fake: &FakeKafka, group: &str, topic: &str, lag: &LagTarget) -> Result<()> {
    match lag {
        LagTarget::Uniform(lag) => fake.set_uniform_lag(group, topic, *lag),
        LagTarget::PerPartition(lags) => fake.set_lag(group, topic, lags),
    }
}

/// `partitions` lags drawn uniformly from `range` with a seeded RNG: the same seed always gives the
/// same lags, so a failing scenario is reproducible from its seed.
pub fn seeded_lags(seed: u64, partitions: usize, range: RangeInclusive<i64>) -> Result<Vec<i64>> {
    let (min, max) = (*range.start(), *range.end());
    if min < 0 || min > max {
        return Err(FakeKafkaError::InvalidLagRange { min, max });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    Ok((0..partitions).map(|_| rng.gen_range(min..=max)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_stay_ordered_and_ramps_interpolate() {
        let t = LagTimeline::new("g", "t")
            .step(Duration::from_secs(5), 7)
            .step(Duration::from_secs(1), vec![1, 2])
            .linear(Duration::from_secs(10), Duration::from_secs(20), 100, 0, 4);
        let ats: Vec<u64> = t.steps().iter().map(|s| s.at.as_millis() as u64).collect();
        assert_eq!(
            ats,
            vec![1000, 5000, 10_000, 12_500, 15_000, 17_500, 20_000]
        );
        let lags: Vec<LagTarget> = t.steps()[2..].iter().map(|s| s.lag.clone()).collect();
        assert_eq!(lags, [100, 75, 50, 25, 0].map(LagTarget::Uniform).to_vec());
        assert_eq!(t.next_at(), Some(Duration::from_secs(1)));
        assert!(!t.is_finished());
    }

    #[test]
    fn seeded_lags_are_reproducible_and_in_range() {
        let a = seeded_lags(42, 100, 10..=20).unwrap();
        assert_eq!(a, seeded_lags(42, 100, 10..=20).unwrap());
        assert_ne!(a, seeded_lags(43, 100, 10..=20).unwrap());
        assert!(a.iter().all(|l| (10..=20).contains(l)));
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 5..=4;
        assert_eq!(
            seeded_lags(1, 3, empty),
            Err(FakeKafkaError::InvalidLagRange { min: 5, max: 4 })
        );
        assert!(seeded_lags(1, 3, -1..=4).is_err());
    }
}
