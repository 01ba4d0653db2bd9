#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Types ready for runbook files: serde round trips with human-readable durations, and properties of
//! the text forms (durations, timestamps, matchers).

use std::time::Duration;

use proptest::prelude::*;
use rb_core::matcher::{MatchOp, Matcher, Matchers};
use rb_core::policy::{BlastRadius, Budget, SafetyPolicy};
use rb_core::symptom::{Aggregation, Comparison, DropBy};
use rb_core::time::{format_duration, hours, millis, mins, parse_duration, secs, Timestamp};
use rb_core::{labels, Risk, Schedule};

fn round_trip<T>(v: &T) -> (String, T)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let text = serde_json::to_string(v).unwrap();
    let back = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    (text, back)
}

#[test]
fn schedules_round_trip_with_text_durations() {
    let s = Schedule::every(mins(5)).jitter(secs(20)).deadline(secs(45));
    let (text, back) = round_trip(&s);
    assert_eq!(text, r#"{"interval":"5m","jitter":"20s","deadline":"45s"}"#);
    assert_eq!(back, s);
    let s = Schedule::every(hours(1) + mins(30));
    assert_eq!(round_trip(&s).1, s);
    // defaults: no jitter, the deadline of Schedule::every
    let short: Schedule = serde_json::from_str(r#"{"interval":"2s"}"#).unwrap();
    assert_eq!(short, Schedule::every(secs(2)));
    for (bad, needle) in [
        (r#"{"interval":"0s"}"#, "more than 0s"),
        (r#"{"interval":"5"}"#, "needs a unit"),
        (r#"{"interval":"5m","every":"1m"}"#, "unknown field"),
        (r#"{"jitter":"1s"}"#, "missing field `interval`"),
    ] {
        let e = serde_json::from_str::<Schedule>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn safety_policies_round_trip_and_default_what_is_left_out() {
    let p = SafetyPolicy {
        dry_run: true,
        cooldown: mins(7),
        max_cooldown: hours(2) + mins(15),
        target_lock_wait: millis(1_500),
        global_budget: Budget::new(5, mins(30)),
        blast_radius: BlastRadius {
            max_targets: 2,
            max_fraction: 0.5,
        },
        ..SafetyPolicy::default()
    };
    let (text, back) = round_trip(&p);
    assert_eq!(back, p);
    for piece in [
        r#""cooldown":"7m""#,
        r#""max_cooldown":"2h15m""#,
        r#""target_lock_wait":"1s500ms""#,
        r#""global_budget":{"max":5,"per":"30m"}"#,
    ] {
        assert!(text.contains(piece), "{piece} not in {text}");
    }
    assert_eq!(
        serde_json::from_str::<SafetyPolicy>("{}").unwrap(),
        SafetyPolicy::default()
    );
    let e = serde_json::from_str::<SafetyPolicy>(r#"{"cooldwn":"5m"}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `cooldwn`"), "{e}");
    let e = serde_json::from_str::<SafetyPolicy>(r#"{"cooldown":"5 minutes"}"#).unwrap_err();
    assert!(e.to_string().contains("at character 2"), "{e}");
}

#[test]
fn leaf_types_round_trip() {
    for r in [Risk::Safe, Risk::Disruptive, Risk::Destructive] {
        assert_eq!(round_trip(&r).1, r);
    }
    assert_eq!(round_trip(&Risk::Disruptive).0, r#""disruptive""#);
    assert_eq!(
        round_trip(&Budget::new(3, hours(1))).0,
        r#"{"max":3,"per":"1h"}"#
    );
    assert_eq!(
        round_trip(&Comparison::Above(5_000.0)).0,
        r#"{"above":5000.0}"#
    );
    for c in [
        Comparison::Above(1.5),
        Comparison::Below(0.0),
        Comparison::AtLeast(-3.0),
        Comparison::AtMost(1e9),
    ] {
        assert_eq!(round_trip(&c).1, c);
    }
    assert_eq!(round_trip(&Aggregation::Sum).0, r#""sum""#);
    assert_eq!(round_trip(&DropBy::Percent(20.0)).1, DropBy::Percent(20.0));
    let m = Matchers::parse(r#"alertname="KafkaConnectFailed",connector=~"orders-.*""#).unwrap();
    assert_eq!(round_trip(&m).1, m);
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=10_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..=100_000).prop_map(Duration::from_secs),
        (0u64..=100_000_000).prop_map(Duration::from_millis),
    ]
}

fn label_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,8}",
        any::<String>(),
        "[\"\\\\\n ,={}!~a-z]{0,12}",
    ]
}

proptest! {
    #[test]
    fn durations_round_trip_through_their_text(d in any_duration()) {
        let text = format_duration(d);
        prop_assert_eq!(parse_duration(&text).unwrap(), d, "{}", text);
        // hours are the largest unit and no unit repeats
        prop_assert!(!text.contains('d'));
    }

    #[test]
    fn duration_parsing_never_panics(s in any::<String>()) {
        let _ = parse_duration(&s);
    }

    #[test]
    fn parsed_durations_sum_their_parts(h in 0u64..1000, m in 0u64..1000, s in 0u64..1000, ms in 0u64..1000) {
        let text = format!("{h}h{m}m {s}s{ms}ms");
        prop_assert_eq!(
            parse_duration(&text).unwrap(),
            hours(h) + mins(m) + secs(s) + millis(ms)
        );
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339(ms in 0u64..=Timestamp::MAX_RFC3339.as_millis()) {
        let t = Timestamp(ms);
        let text = t.rfc3339();
        prop_assert_eq!(text.len(), 24, "{}", text);
        prop_assert!(text.ends_with('Z'));
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        prop_assert_eq!(t.to_string(), text);
    }

    #[test]
    fn rfc3339_text_sorts_like_time(a in 0u64..=Timestamp::MAX_RFC3339.as_millis(), b in 0u64..=Timestamp::MAX_RFC3339.as_millis()) {
        prop_assert_eq!(Timestamp(a).rfc3339().cmp(&Timestamp(b).rfc3339()), a.cmp(&b));
    }

    #[test]
    fn timestamp_parsing_never_panics(s in any::<String>()) {
        let _ = s.parse::<Timestamp>();
    }

    #[test]
    fn matchers_round_trip_through_their_text(
        pairs in proptest::collection::vec((label_text(), 0usize..4, label_text()), 0..4)
    ) {
        let ms: Matchers = pairs
            .iter()
            .map(|(n, op, v)| match op {
                0 => Matcher::equal(n.clone(), v.clone()),
                1 => Matcher::not_equal(n.clone(), v.clone()),
                // a literal regex: escape the value
                2 => Matcher::regex(n.clone(), regex_escape(v)).unwrap(),
                _ => Matcher::not_regex(n.clone(), regex_escape(v)).unwrap(),
            })
            .collect();
        let text = ms.to_string();
        let back = Matchers::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        prop_assert_eq!(&back, &ms);
        // and an anchored literal matches exactly its own value
        for (m, (n, _, v)) in ms.iter().zip(&pairs) {
            let l = labels(&[(n.as_str(), v.as_str())]);
            let hit = matches!(m.op(), MatchOp::Equal | MatchOp::Regex);
            prop_assert_eq!(m.matches(&l), hit, "{}", m);
        }
    }

    #[test]
    fn matcher_parsing_never_panics(s in any::<String>()) {
        if let Err(e) = Matchers::parse(&s) {
            prop_assert!(e.column() >= 1 && e.column() <= s.chars().count() + 1, "{}", e);
        }
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
