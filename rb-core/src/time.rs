//! Time in rb: every timer goes through tokio's clock, so a test on a paused runtime drives the engine
//! deterministically, and every timestamp in a record is wall-clock time derived from that clock.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `n` seconds.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` minutes.
pub const fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// `n` hours.
pub const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// `n` milliseconds.
pub const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A wall-clock instant in milliseconds since the Unix epoch (UTC). Serialized as the number; shown as
/// RFC 3339 (`2026-11-25T07:09:01.000Z`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// This instant plus `d`.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 in UTC with milliseconds.
    pub fn rfc3339(self) -> String {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        let (y, mo, d) = civil_from_days(days as i64);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The engine's clock: tokio's monotonic clock anchored to a wall-clock start. On a paused tokio runtime
/// time only moves when the test advances it, and [`Clock::now`] moves with it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_anchor: Timestamp,
    anchor: tokio::time::Instant,
}

impl Clock {
    /// A clock anchored at the system's current wall-clock time.
    pub fn system() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self::starting_at(Timestamp(now))
    }

    /// A clock that reads `start` now and advances with tokio time: deterministic timestamps in tests.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            wall_at_anchor: start,
            anchor: tokio::time::Instant::now(),
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> Timestamp {
        self.at(tokio::time::Instant::now())
    }

    /// The wall-clock time of a tokio instant.
    pub fn at(&self, instant: tokio::time::Instant) -> Timestamp {
        if instant >= self.anchor {
            self.wall_at_anchor.plus(instant - self.anchor)
        } else {
            Timestamp(
                self.wall_at_anchor
                    .0
                    .saturating_sub((self.anchor - instant).as_millis() as u64),
            )
        }
    }

    /// The current tokio instant.
    pub fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

/// A duration for humans: `90s` → `1m30s`, `3600s` → `1h`.
pub fn human(d: Duration) -> String {
    let total = d.as_secs();
    if total == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_590_541_123).rfc3339(),
            "2026-11-25T07:09:01.123Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000).rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(secs(90)), "1m30s");
        assert_eq!(human(hours(1)), "1h");
        assert_eq!(human(millis(5)), "5ms");
    }

    #[tokio::test(start_paused = true)]
    async fn clock_follows_paused_tokio_time() {
        let c = Clock::starting_at(Timestamp(1_000));
        tokio::time::sleep(mins(10)).await;
        assert_eq!(c.now(), Timestamp(1_000 + 600_000));
    }
}
