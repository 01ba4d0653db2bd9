//! Strimzi-style restart backoff, as a pure value: no clock, no I/O.
//!
//! After the `n`-th automatic restart of a connector, the next one waits `min(n² + n, 60)` minutes
//! (2, 6, 12, 20, 30, 42, 56, 60, 60 … minutes). The counter starts again from zero once the connector
//! has been seen running for longer than the next interval after its last restart. After
//! `max_restarts` restarts without such a reset, automatic restarts stop: a human must look.

use std::time::Duration;

use rb_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What the backoff allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum BackoffDecision {
    /// Restart now (this would be restart number `attempt`, counted from 1).
    Restart {
        /// The number this restart would have.
        attempt: u32,
    },
    /// Wait: the next restart is allowed at `until`.
    Wait {
        /// When the next restart is allowed.
        until: Timestamp,
        /// Restarts so far.
        restarts: u32,
    },
    /// Automatic restarts are used up: a human must look.
    GiveUp {
        /// Restarts so far.
        restarts: u32,
    },
}

/// The restart history of one connector (Strimzi's auto-restart rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartBackoff {
    restarts: u32,
    last_restart: Option<Timestamp>,
    max_restarts: u32,
}

impl RestartBackoff {
    /// No restart yet; at most `max_restarts` automatic restarts before a human.
    pub fn new(max_restarts: u32) -> Self {
        Self {
            restarts: 0,
            last_restart: None,
            max_restarts,
        }
    }

    /// The wait after the `n`-th restart: `min(n² + n, 60)` minutes (zero before the first).
    pub fn interval(n: u32) -> Duration {
        let n = u64::from(n);
        let minutes = n.saturating_mul(n).saturating_add(n).min(60);
        Duration::from_secs(minutes * 60)
    }

    /// Restarts counted since the last reset.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// When the last restart happened.
    pub fn last_restart(&self) -> Option<Timestamp> {
        self.last_restart
    }

    /// The interval the next restart must wait after the last one.
    pub fn next_interval(&self) -> Duration {
        Self::interval(self.restarts)
    }

    /// Whether a restart is allowed at `now`.
    pub fn decide(&self, now: Timestamp) -> BackoffDecision {
        if self.restarts >= self.max_restarts {
            return BackoffDecision::GiveUp {
                restarts: self.restarts,
            };
        }
        match self.last_restart {
            Some(last) => {
                let until = last.plus(self.next_interval());
                if now < until {
                    BackoffDecision::Wait {
                        until,
                        restarts: self.restarts,
                    }
                } else {
                    BackoffDecision::Restart {
                        attempt: self.restarts + 1,
                    }
                }
            }
            None => BackoffDecision::Restart { attempt: 1 },
        }
    }

    /// Count a restart made at `now`.
    pub fn record_restart(&mut self, now: Timestamp) {
        self.restarts = self.restarts.saturating_add(1);
        self.last_restart = Some(now);
    }

    /// The connector was seen running (connector and tasks RUNNING) at `at`: when that is longer
    /// after the last restart than the next interval, the counter starts again from zero. Returns
    /// whether it did.
    pub fn observe_running(&mut self, at: Timestamp) -> bool {
        match self.last_restart {
            Some(last) if at.since(last) > self.next_interval() => {
                self.restarts = 0;
                self.last_restart = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use rb_core::time::mins;

    const T0: Timestamp = Timestamp(1_795_590_000_000);

    #[test]
    fn intervals_follow_strimzi() {
        let got: Vec<u64> = (0..10)
            .map(|n| RestartBackoff::interval(n).as_secs() / 60)
            .collect();
        assert_eq!(got, vec![0, 2, 6, 12, 20, 30, 42, 56, 60, 60]);
        assert_eq!(RestartBackoff::interval(u32::MAX), mins(60));
    }

    #[test]
    fn restarts_wait_longer_and_longer_then_give_up() {
        let mut b = RestartBackoff::new(3);
        assert_eq!(b.decide(T0), BackoffDecision::Restart { attempt: 1 });
        b.record_restart(T0);
        // 2 minutes after the first
        assert_eq!(
            b.decide(T0.plus(mins(1))),
            BackoffDecision::Wait {
                until: T0.plus(mins(2)),
                restarts: 1
            }
        );
        let t1 = T0.plus(mins(2));
        assert_eq!(b.decide(t1), BackoffDecision::Restart { attempt: 2 });
        b.record_restart(t1);
        // 6 minutes after the second
        assert!(matches!(
            b.decide(t1.plus(mins(5))),
            BackoffDecision::Wait { .. }
        ));
        let t2 = t1.plus(mins(6));
        assert_eq!(b.decide(t2), BackoffDecision::Restart { attempt: 3 });
        b.record_restart(t2);
        // the maximum is reached: never again, however long we wait, until a reset
        assert_eq!(
            b.decide(t2.plus(mins(600))),
            BackoffDecision::GiveUp { restarts: 3 }
        );
    }

    #[test]
    fn running_longer_than_the_next_interval_resets_the_counter() {
        let mut b = RestartBackoff::new(5);
        b.record_restart(T0);
        b.record_restart(T0.plus(mins(2)));
        // next interval after 2 restarts: 6 minutes; running 5 minutes later is not enough
        assert!(!b.observe_running(T0.plus(mins(7))));
        assert_eq!(b.restarts(), 2);
        assert!(b.observe_running(T0.plus(mins(9))));
        assert_eq!(b.restarts(), 0);
        assert_eq!(
            b.decide(T0.plus(mins(9))),
            BackoffDecision::Restart { attempt: 1 }
        );
    }

    #[test]
    fn zero_maximum_never_restarts() {
        assert_eq!(
            RestartBackoff::new(0).decide(T0),
            BackoffDecision::GiveUp { restarts: 0 }
        );
    }

    proptest! {
        /// Whatever the history, a restart is never allowed sooner than the interval after the last
        /// one, never beyond the maximum, and intervals never shrink as restarts accumulate.
        #[test]
        fn never_sooner_than_the_interval(gaps in proptest::collection::vec(0u64..200, 0..12), max in 0u32..10) {
            let mut b = RestartBackoff::new(max);
            let mut now = T0;
            for g in gaps {
                now = now.plus(mins(g));
                match b.decide(now) {
                    BackoffDecision::Restart { attempt } => {
                        prop_assert!(attempt <= max);
                        if let Some(last) = b.last_restart() {
                            prop_assert!(now.since(last) >= b.next_interval());
                        }
                        let before = b.next_interval();
                        b.record_restart(now);
                        prop_assert!(b.next_interval() >= before);
                    }
                    BackoffDecision::Wait { until, .. } => prop_assert!(until > now),
                    BackoffDecision::GiveUp { restarts } => prop_assert!(restarts >= max),
                }
            }
        }
    }
}
