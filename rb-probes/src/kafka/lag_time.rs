//! Lag in time: how long ago the oldest unconsumed record of a partition was written, from a small
//! table of (log-end offset, observed at) points kept across observations.
//!
//! Kafka does not say when an offset was written without reading the record, so the probe remembers
//! where the log end was at each observation ([`OffsetTimeline::record`]) and asks where the
//! committed offset falls in that table ([`OffsetTimeline::lag_at`]): between two points it
//! interpolates linearly; older than the oldest point it extrapolates backwards at the table's
//! produce rate; with fewer than two points it says [`LagTime::NotEnoughData`].
//!
//! Memory is fixed per partition: a ring of [`TIMELINE_POINTS`] points of 16 bytes. Runs of equal
//! log-end offsets (an idle topic) keep only their first and last point, so a quiet partition's
//! table spans a long time.

use serde::{Deserialize, Serialize};

use rb_core::time::Timestamp;

/// Points kept per partition.
pub const TIMELINE_POINTS: usize = 16;

/// One point of the table: the log-end offset seen at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffsetPoint {
    /// The log-end offset.
    pub end: i64,
    /// When it was seen (milliseconds since the Unix epoch).
    pub at_ms: u64,
}

/// A fixed ring of [`OffsetPoint`]s for one partition, oldest overwritten first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetTimeline {
    points: [OffsetPoint; TIMELINE_POINTS],
    /// Index of the oldest point.
    head: u8,
    /// How many points are kept.
    len: u8,
}

impl Default for OffsetTimeline {
    fn default() -> Self {
        Self::new()
    }
}

/// How far behind, in time, a committed offset is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "lag_time", rename_all = "snake_case")]
pub enum LagTime {
    /// Fewer than two points in the table: nothing to say yet.
    NotEnoughData,
    /// The committed offset is at (or past) the log end: zero seconds behind.
    CaughtUp,
    /// Behind by `seconds`.
    Behind {
        /// Seconds between when the first unconsumed record was written and the evaluation time.
        seconds: f64,
        /// How the time was found.
        estimate: Estimate,
    },
}

impl LagTime {
    /// The seconds behind (`0` when caught up, `None` without enough data).
    pub fn seconds(&self) -> Option<f64> {
        match self {
            LagTime::NotEnoughData => None,
            LagTime::CaughtUp => Some(0.0),
            LagTime::Behind { seconds, .. } => Some(*seconds),
        }
    }
}

/// How a [`LagTime::Behind`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimate {
    /// The committed offset lies between two points of the table.
    Interpolated,
    /// The committed offset is older than the table: extrapolated at the table's produce rate.
    Extrapolated,
    /// Older than the table, which saw no produce: at least this long (the table's age).
    AtLeast,
}

impl OffsetTimeline {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            points: [OffsetPoint { end: 0, at_ms: 0 }; TIMELINE_POINTS],
            head: 0,
            len: 0,
        }
    }

    /// How many points are kept.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no point is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept points, oldest first.
    pub fn points(&self) -> impl Iterator<Item = OffsetPoint> + '_ {
        (0..self.len()).map(move |i| self.points[(usize::from(self.head) + i) % TIMELINE_POINTS])
    }

    fn get(&self, i: usize) -> OffsetPoint {
        self.points[(usize::from(self.head) + i) % TIMELINE_POINTS]
    }

    fn set_last(&mut self, p: OffsetPoint) {
        let idx = (usize::from(self.head) + self.len() - 1) % TIMELINE_POINTS;
        self.points[idx] = p;
    }

    /// Record the log-end offset `end` seen at `at`.
    ///
    /// A point not newer than the last one is ignored; a log end below the last one (the topic was
    /// recreated) starts the table over; a third equal log end in a row moves the last point's time
    /// instead of taking a slot.
    pub fn record(&mut self, end: i64, at: Timestamp) {
        let p = OffsetPoint {
            end,
            at_ms: at.as_millis(),
        };
        let n = self.len();
        if n > 0 {
            let last = self.get(n - 1);
            if p.at_ms <= last.at_ms {
                return;
            }
            if p.end < last.end {
                self.head = 0;
                self.len = 0;
            } else if n >= 2 && p.end == last.end && self.get(n - 2).end == last.end {
                self.set_last(p);
                return;
            }
        }
        let n = self.len();
        if n < TIMELINE_POINTS {
            let idx = (usize::from(self.head) + n) % TIMELINE_POINTS;
            self.points[idx] = p;
            self.len += 1;
        } else {
            self.points[usize::from(self.head)] = p;
            self.head = ((usize::from(self.head) + 1) % TIMELINE_POINTS) as u8;
        }
    }

    /// How far behind, in time, a consumer whose committed offset is `committed` is at `now`.
    pub fn lag_at(&self, committed: i64, now: Timestamp) -> LagTime {
        let n = self.len();
        if n < 2 {
            return LagTime::NotEnoughData;
        }
        let now_ms = now.as_millis() as f64;
        let first = self.get(0);
        let last = self.get(n - 1);
        if committed >= last.end {
            return LagTime::CaughtUp;
        }
        let behind = |t_ms: f64, estimate| LagTime::Behind {
            seconds: ((now_ms - t_ms) / 1000.0).max(0.0),
            estimate,
        };
        // The last point whose log end had not passed the committed offset yet: the record at
        // `committed` was written after it, before the next point.
        let mut found = None;
        for i in (0..n).rev() {
            if self.get(i).end <= committed {
                found = Some(i);
                break;
            }
        }
        match found {
            Some(i) => {
                let a = self.get(i);
                let b = self.get(i + 1); // exists: committed < last.end
                let span_offsets = (b.end - a.end) as f64;
                let frac = (committed - a.end) as f64 / span_offsets;
                let t = a.at_ms as f64 + frac * (b.at_ms - a.at_ms) as f64;
                behind(t, Estimate::Interpolated)
            }
            None => {
                let span_ms = (last.at_ms - first.at_ms) as f64;
                let produced = (last.end - first.end) as f64;
                if produced > 0.0 && span_ms > 0.0 {
                    let rate = produced / span_ms; // records per millisecond
                    let t = first.at_ms as f64 - (first.end - committed) as f64 / rate;
                    behind(t, Estimate::Extrapolated)
                } else {
                    behind(first.at_ms as f64, Estimate::AtLeast)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn ts(secs: u64) -> Timestamp {
        Timestamp(1_700_000_000_000 + secs * 1000)
    }

    fn behind(l: LagTime) -> (f64, Estimate) {
        match l {
            LagTime::Behind { seconds, estimate } => (seconds, estimate),
            other => panic!("expected behind, got {other:?}"),
        }
    }

    /// A scripted timeline: a producer writes 100 records/s for a minute; a consumer commits
    /// offsets with known write times. Every answer is known in advance.
    #[test]
    fn scripted_produce_consume_timeline() {
        let mut t = OffsetTimeline::new();
        // Nothing yet, then one point: not enough data.
        assert_eq!(t.lag_at(0, ts(0)), LagTime::NotEnoughData);
        t.record(0, ts(0));
        assert_eq!(t.lag_at(0, ts(0)), LagTime::NotEnoughData);
        // Observations every 10 s at 100 records/s: end = 1000 per 10 s.
        for k in 1..=6 {
            t.record(1000 * k, ts(10 * k as u64));
        }
        let now = ts(60);
        // Caught up at the end.
        assert_eq!(t.lag_at(6000, now), LagTime::CaughtUp);
        assert_eq!(t.lag_at(7000, now), LagTime::CaughtUp);
        // Offset 2500 was written at 25 s: 35 s behind at 60 s.
        let (s, e) = behind(t.lag_at(2500, now));
        assert_eq!(e, Estimate::Interpolated);
        assert!((s - 35.0).abs() < 1e-9, "{s}");
        // Exactly on a point.
        let (s, _) = behind(t.lag_at(4000, now));
        assert!((s - 20.0).abs() < 1e-9, "{s}");
        // Offset 0 is the first point: 60 s.
        let (s, _) = behind(t.lag_at(0, now));
        assert!((s - 60.0).abs() < 1e-9, "{s}");
        // Evaluated later without a new point (a consumer that stopped): the lag grows with now.
        let (s, _) = behind(t.lag_at(2500, ts(90)));
        assert!((s - 65.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn extrapolates_before_the_table_at_the_produce_rate() {
        let mut t = OffsetTimeline::new();
        // The probe starts at 100 s with end 10,000; 50 records/s.
        t.record(10_000, ts(100));
        t.record(10_500, ts(110));
        t.record(11_000, ts(120));
        // Offset 9,000 is 1,000 records before the first point: 20 s before 100 s = 80 s; at 120 s
        // that is 40 s behind.
        let (s, e) = behind(t.lag_at(9_000, ts(120)));
        assert_eq!(e, Estimate::Extrapolated);
        assert!((s - 40.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn idle_topic_gives_a_lower_bound_and_keeps_a_long_span() {
        let mut t = OffsetTimeline::new();
        for k in 0..100u64 {
            t.record(500, ts(k * 10));
        }
        // A flat run keeps its first and last point only.
        assert_eq!(t.len(), 2);
        let pts: Vec<_> = t.points().collect();
        assert_eq!(pts[0].at_ms, ts(0).as_millis());
        assert_eq!(pts[1].at_ms, ts(990).as_millis());
        // Caught up on an idle topic: 0 s, whatever the commit age (the slow-topic case).
        assert_eq!(t.lag_at(500, ts(1000)), LagTime::CaughtUp);
        // Behind on an idle topic: at least the table's age.
        let (s, e) = behind(t.lag_at(400, ts(1000)));
        assert_eq!(e, Estimate::AtLeast);
        assert!((s - 1000.0).abs() < 1e-9, "{s}");
        // A burst after the idle run: the record at 500 was written between 990 s and 1000 s.
        t.record(600, ts(1000));
        let (s, e) = behind(t.lag_at(550, ts(1000)));
        assert_eq!(e, Estimate::Interpolated);
        assert!((s - 5.0).abs() < 1e-9, "{s}");
        // Offset 500 itself: end was 500 until 990 s, so it was written right after: 10 s.
        let (s, _) = behind(t.lag_at(500, ts(1000)));
        assert!((s - 10.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn ring_is_bounded_and_keeps_the_newest() {
        let mut t = OffsetTimeline::new();
        for k in 0..100i64 {
            t.record(k * 10, ts(k as u64));
        }
        assert_eq!(t.len(), TIMELINE_POINTS);
        let pts: Vec<_> = t.points().collect();
        assert_eq!(
            pts.first().unwrap().end,
            (100 - TIMELINE_POINTS as i64) * 10
        );
        assert_eq!(pts.last().unwrap().end, 990);
        assert!(pts.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }

    #[test]
    fn stale_or_shrinking_points() {
        let mut t = OffsetTimeline::new();
        t.record(100, ts(10));
        t.record(50, ts(5)); // older: ignored
        t.record(200, ts(10)); // same time: ignored
        assert_eq!(t.len(), 1);
        t.record(200, ts(20));
        assert_eq!(t.len(), 2);
        t.record(10, ts(30)); // log end went back: the topic was recreated
        assert_eq!(t.len(), 1);
        assert_eq!(t.lag_at(0, ts(30)), LagTime::NotEnoughData);
    }

    #[test]
    fn memory_per_partition_is_fixed() {
        assert_eq!(std::mem::size_of::<OffsetPoint>(), 16);
        assert_eq!(
            std::mem::size_of::<OffsetTimeline>(),
            16 * TIMELINE_POINTS + 8
        );
    }

    proptest! {
        #[test]
        fn never_negative_nor_nan(
            steps in proptest::collection::vec((0i64..1000, 1u64..100_000), 0..60),
            committed in -10i64..100_000,
            later in 0u64..1_000_000,
        ) {
            let mut t = OffsetTimeline::new();
            let mut end = 0;
            let mut at = 1_700_000_000_000u64;
            for (d_end, d_at) in steps {
                end += d_end;
                at += d_at;
                t.record(end, Timestamp(at));
            }
            prop_assert!(t.len() <= TIMELINE_POINTS);
            let l = t.lag_at(committed, Timestamp(at + later));
            if let Some(s) = l.seconds() {
                prop_assert!(s.is_finite() && s >= 0.0, "{l:?}");
            }
        }
    }
}
