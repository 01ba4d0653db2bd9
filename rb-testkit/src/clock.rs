//! The virtual clock: tokio's paused time plus an rb [`Clock`] anchored at a fixed wall-clock instant, so
//! a for-duration of ten minutes takes microseconds and every run produces the same timestamps.
//!
//! Inside `#[tokio::test(start_paused = true)]` time is already paused; [`VirtualClock::pause_at`] also
//! works from a plain `current_thread` runtime.

use std::time::Duration;

use rb_core::time::{Clock, Timestamp};

use crate::scenario::SCENARIO_EPOCH;

/// A paused tokio clock seen as wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    clock: Clock,
}

impl VirtualClock {
    /// Pause tokio time (if it is not already paused) and read `start` now. Must run inside a
    /// `current_thread` tokio runtime (tokio's own requirement for pausing time).
    pub fn pause_at(start: Timestamp) -> Self {
        if !is_paused() {
            tokio::time::pause();
        }
        Self {
            clock: Clock::starting_at(start),
        }
    }

    /// Pause at [`SCENARIO_EPOCH`] (2026-01-01T00:00:00Z).
    pub fn pause() -> Self {
        Self::pause_at(SCENARIO_EPOCH)
    }

    /// The rb clock to give an engine ([`rb_core::EngineBuilder::clock`]).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The current virtual wall-clock time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Move time forward by `d`, firing every timer due on the way (in order).
    pub async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// Whether tokio's clock is paused on this runtime.
fn is_paused() -> bool {
    // An instant read twice with real time passing in between moves only when time is not paused.
    let a = tokio::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1));
    tokio::time::Instant::now() == a
}
