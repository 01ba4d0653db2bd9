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

    /// The latest instant [`Timestamp::rfc3339`] can write (9999-12-31T23:59:59.999Z); later ones are
    /// written as it.
    pub const MAX_RFC3339: Timestamp = Timestamp(253_402_300_799_999);

    /// RFC 3339 in UTC with milliseconds (`2026-11-25T07:09:01.000Z`).
    pub fn rfc3339(self) -> String {
        let ms = self.0.min(Self::MAX_RFC3339.0);
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        // the format has no fallible part for a UTC date in years 1970..=9999
        t.format(RFC3339_MILLIS).unwrap_or_default()
    }

    /// Parse an RFC 3339 date-time (any offset, any fraction; the fraction is cut to milliseconds).
    /// Instants before 1970 are an error.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, ParseTimestampError> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| ParseTimestampError(format!("{s:?} is not an RFC 3339 date-time: {e}")))?;
        let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
        u64::try_from(ms)
            .map(Timestamp)
            .map_err(|_| ParseTimestampError(format!("{s:?} is before 1970")))
    }
}

const RFC3339_MILLIS: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// Why a text is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseTimestampError(String);

impl fmt::Display for ParseTimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseTimestampError {}

impl std::str::FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse_rfc3339(s)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
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

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDurationError(String);

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseDurationError {}

const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// A duration as runbook files write it, exactly: `1h30m`, `30s`, `1s500ms`, `0s`. Hours are the
/// largest unit written (`48h`, not `2d`); nothing is rounded.
pub fn format_duration(d: Duration) -> String {
    let mut rest = d.as_nanos();
    if rest == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, nanos) in &UNITS[1..] {
        let n = rest / nanos;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            rest -= n * nanos;
        }
    }
    out
}

/// Parse a duration: one or more `<integer><unit>` parts, units `d`, `h`, `m`, `s`, `ms`, `us` (or
/// `µs`), `ns`, optionally separated by spaces (`1h30m`, `1h 30m`, `250ms`, `0s`). A bare number is an
/// error (say which unit). Errors name the character position (1-based).
pub fn parse_duration(s: &str) -> Result<Duration, ParseDurationError> {
    let chars: Vec<char> = s.chars().collect();
    let err = |pos: usize, what: String| {
        ParseDurationError(format!(
            "bad duration {s:?} at character {}: {what}",
            pos + 1
        ))
    };
    let mut i = 0;
    let mut total: u128 = 0;
    let mut parts = 0;
    while i < chars.len() {
        if chars[i] == ' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err(i, format!("expected a number, found {:?}", chars[i])));
        }
        let digits: String = chars[start..i].iter().collect();
        let n: u128 = digits
            .parse()
            .map_err(|_| err(start, "number too large".to_string()))?;
        let ustart = i;
        while i < chars.len() && (chars[i].is_alphabetic()) {
            i += 1;
        }
        let unit: String = chars[ustart..i].iter().collect();
        let unit = if unit == "µs" {
            "us".to_string()
        } else {
            unit
        };
        let Some((_, nanos)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(err(
                ustart,
                if unit.is_empty() {
                    "a number needs a unit (d, h, m, s, ms, us, ns)".to_string()
                } else {
                    format!("unknown unit {unit:?} (d, h, m, s, ms, us, ns)")
                },
            ));
        };
        total = n
            .checked_mul(*nanos)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err(start, "duration too large".to_string()))?;
        parts += 1;
    }
    if parts == 0 {
        return Err(ParseDurationError(format!(
            "bad duration {s:?}: empty (write 0s for none)"
        )));
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| ParseDurationError(format!("bad duration {s:?}: too large")))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Serde for an `Option<Duration>` as its text form, absent or `null` for `None`: `#[serde(default,
/// with = "rb_core::time::opt_duration_text")]`.
pub mod opt_duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Write the text form, or nothing.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Read the text form, or nothing.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<std::borrow::Cow<'de, str>>::deserialize(d)?
            .map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde for a [`Duration`] as its text form (`"5m"`, `"1h30m"`): `#[serde(with =
/// "rb_core::time::duration_text")]`.
///
/// ```
/// use std::time::Duration;
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Step { #[serde(with = "rb_core::time::duration_text")] wait: Duration }
/// let s: Step = serde_json::from_str(r#"{"wait":"1h30m"}"#).unwrap();
/// assert_eq!(s.wait, Duration::from_secs(5400));
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"wait":"1h30m"}"#);
/// ```
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Write the text form.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Read the text form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
        assert_eq!(
            Timestamp(u64::MAX).rfc3339(),
            "9999-12-31T23:59:59.999Z",
            "saturates"
        );
    }

    #[test]
    fn rfc3339_parses_back() {
        let t: Timestamp = "2026-11-25T07:09:01.123Z".parse().unwrap();
        assert_eq!(t, Timestamp(1_795_590_541_123));
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-25T08:09:01.123456789+01:00").unwrap(),
            t,
            "other offsets, fraction cut to ms"
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:00Z").unwrap(),
            Timestamp(0)
        );
        let e = Timestamp::parse_rfc3339("1969-12-31T23:59:59.999Z").unwrap_err();
        assert!(e.to_string().contains("before 1970"), "{e}");
        let e = Timestamp::parse_rfc3339("2026-13-01T00:00:00Z").unwrap_err();
        assert!(e.to_string().contains("not an RFC 3339"), "{e}");
    }

    #[test]
    fn duration_text_forms() {
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(format_duration(hours(1) + mins(30)), "1h30m");
        assert_eq!(format_duration(hours(48)), "48h");
        assert_eq!(format_duration(millis(1_500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_nanos(1_001)), "1us1ns");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for (text, d) in [
            ("30s", secs(30)),
            ("5m", mins(5)),
            ("1h30m", mins(90)),
            ("1h 30m", mins(90)),
            ("2d", hours(48)),
            ("250ms", millis(250)),
            ("1µs", Duration::from_micros(1)),
            ("0s", Duration::ZERO),
            ("90s", secs(90)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), d, "{text}");
        }
        for (bad, needle) in [
            ("", "empty"),
            ("30", "at character 3: a number needs a unit"),
            ("5 m", "at character 2: a number needs a unit"),
            ("1x", "unknown unit \"x\""),
            ("-1s", "at character 1"),
            ("1.5s", "at character 2"),
            ("99999999999999999999999999999999999999999h", "too large"),
        ] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
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
