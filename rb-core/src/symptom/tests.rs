use super::*;
use crate::observation::facts::{Alert, ManualReport};
use crate::observation::{labels, FactType, Observation};
use crate::time::{mins, secs, Timestamp};

const T0: u64 = 1_000_000;

fn obs(at: u64, v: Option<f64>) -> Record {
    let o = Observation::new("p", "t", Timestamp(at));
    Record {
        at: Timestamp(at),
        result: Ok(match v {
            Some(v) => o.sample("lag", labels(&[("p", "0")]), v),
            None => o,
        }),
    }
}

fn fail(at: u64) -> Record {
    Record {
        at: Timestamp(at),
        result: Err(Failure {
            kind: ErrorKind::Timeout,
            message: "no answer".into(),
        }),
    }
}

struct Run<S: Symptom> {
    s: S,
    h: History,
    st: SymptomState,
}

impl<S: Symptom> Run<S> {
    fn new(s: S) -> Self {
        Self {
            s,
            h: History::new(mins(60), 1000),
            st: SymptomState::default(),
        }
    }
    fn push(&mut self, r: Record) -> Verdict {
        let at = r.at;
        self.h.push(r);
        evaluate(&self.s, &self.h, at, &mut self.st)
    }
    fn val(&mut self, secs_after: u64, v: f64) -> Verdict {
        self.push(obs(T0 + secs_after * 1000, Some(v)))
    }
}

#[test]
fn threshold_for_duration() {
    let mut r = Run::new(metric("lag").above(5_000.0).for_at_least(mins(2)));
    assert!(matches!(r.val(0, 6_000.0), Verdict::Pending { .. }));
    assert!(matches!(r.val(60, 6_000.0), Verdict::Pending { .. }));
    match r.val(120, 7_000.0) {
        Verdict::Firing(f) => {
            assert_eq!(f.since, Timestamp(T0));
            let v = f.violated.unwrap();
            assert_eq!((v.value, v.threshold), (7_000.0, 5_000.0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.val(180, 10.0), Verdict::Ok);
}

#[test]
fn hysteresis_separate_fire_and_clear() {
    let mut r = Run::new(metric("lag").above(5_000.0).clears_below(1_000.0));
    assert!(r.val(0, 6_000.0).is_firing());
    assert!(
        r.val(30, 3_000.0).is_firing(),
        "between thresholds: still firing"
    );
    assert_eq!(r.val(60, 900.0), Verdict::Ok);
    assert_eq!(
        r.val(90, 3_000.0),
        Verdict::Ok,
        "between thresholds: still ok"
    );
    assert!(r.val(120, 5_001.0).is_firing());
}

#[test]
fn clears_after_a_duration() {
    let mut r = Run::new(
        metric("lag")
            .above(5_000.0)
            .clears_below(1_000.0)
            .clears_after(mins(1)),
    );
    assert!(r.val(0, 6_000.0).is_firing());
    assert!(r.val(30, 10.0).is_firing());
    assert!(r.val(60, 10.0).is_firing());
    assert_eq!(r.val(90, 10.0), Verdict::Ok);
}

#[test]
fn unknown_on_failure_absence_incompleteness_and_nan() {
    let mut r = Run::new(metric("lag").above(5_000.0));
    assert!(r.push(fail(T0)).is_unknown());
    assert!(r.push(obs(T0 + 1000, None)).is_unknown(), "absent metric");
    let mut inc =
        Observation::new("p", "t", Timestamp(T0 + 2000)).sample("lag", Default::default(), 9_000.0);
    inc.mark_incomplete("broker 2 did not answer");
    match r.push(Record {
        at: Timestamp(T0 + 2000),
        result: Ok(inc),
    }) {
        Verdict::Unknown { why } => assert!(why.contains("broker 2")),
        other => panic!("incomplete data must not fire: {other:?}"),
    }
    assert!(r.val(3, f64::NAN).is_unknown());
    // while firing, a failed probe does not clear: it is unknown
    let mut r = Run::new(metric("lag").above(5_000.0));
    assert!(r.val(0, 9_000.0).is_firing());
    assert!(r.push(fail(T0 + 30_000)).is_unknown());
}

#[test]
fn a_gap_breaks_the_for_duration() {
    let mut r = Run::new(metric("lag").above(5_000.0).for_at_least(mins(2)));
    r.val(0, 9_000.0);
    r.val(60, 9_000.0);
    r.push(fail(T0 + 90_000));
    assert!(
        matches!(r.val(120, 9_000.0), Verdict::Pending { since, .. } if since == Timestamp(T0 + 120_000))
    );
}

#[test]
fn increase_and_rate_over_a_window_count_resets() {
    let mut r = Run::new(metric("numRestarts").increase_over(mins(10)).above(3.0));
    let mut at = 0;
    let mut push = |r: &mut Run<Threshold>, v: f64| {
        let o = Observation::new("p", "t", Timestamp(T0 + at * 1000)).sample(
            "numRestarts",
            Default::default(),
            v,
        );
        at += 60;
        r.push(Record {
            at: o.at,
            result: Ok(o),
        })
    };
    assert!(
        push(&mut r, 10.0).is_unknown(),
        "one point is not enough for an increase"
    );
    assert_eq!(push(&mut r, 11.0), Verdict::Ok);
    assert_eq!(push(&mut r, 12.0), Verdict::Ok);
    // counter reset (job resubmitted): 12 -> 1 counts as +1
    assert_eq!(push(&mut r, 1.0), Verdict::Ok);
    match push(&mut r, 2.0) {
        Verdict::Firing(f) => assert_eq!(f.violated.unwrap().value, 4.0),
        other => panic!("{other:?}"),
    }
    let mut rate = Run::new(metric("lag").rate_over(mins(1)).above(10.0));
    rate.val(0, 0.0);
    match rate.val(60, 1_200.0) {
        Verdict::Firing(f) => assert_eq!(f.violated.unwrap().value, 20.0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn label_selection_and_aggregations() {
    let o = Observation::new("p", "t", Timestamp(T0))
        .sample("lag", labels(&[("group", "a"), ("p", "0")]), 100.0)
        .sample("lag", labels(&[("group", "a"), ("p", "1")]), 300.0)
        .sample("lag", labels(&[("group", "b"), ("p", "0")]), 10_000.0);
    let rec = || Record {
        at: Timestamp(T0),
        result: Ok(o.clone()),
    };
    let check = |s: Threshold, expect_firing: bool| {
        let mut r = Run::new(s);
        assert_eq!(r.push(rec()).is_firing(), expect_firing);
    };
    check(
        metric("lag").with_label("group", "a").max().above(299.0),
        true,
    );
    check(
        metric("lag").with_label("group", "a").sum().above(399.0),
        true,
    );
    check(
        metric("lag").with_label("group", "a").sum().above(400.0),
        false,
    );
    check(
        metric("lag").with_label("group", "a").avg().at_least(200.0),
        true,
    );
    check(
        metric("lag").with_label("group", "a").min().below(101.0),
        true,
    );
    check(metric("lag").count().at_least(3.0), true);
    let mut r = Run::new(metric("lag").with_label("group", "c").above(0.0));
    assert!(r.push(rec()).is_unknown(), "no series match the selector");
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Ring {
    down: Vec<String>,
}
impl FactType for Ring {
    const KIND: &'static str = "test.ring";
}

fn ring(at: u64, down: &[&str]) -> Record {
    let o = Observation::new("ring", "cass", Timestamp(at)).fact(&Ring {
        down: down.iter().map(|s| s.to_string()).collect(),
    });
    Record {
        at: Timestamp(at),
        result: Ok(o),
    }
}

#[test]
fn fact_rules_are_typed_and_unknown_without_the_fact() {
    let rule = fact_rule::<Ring>("a node is DN", |r| {
        (!r.down.is_empty()).then(|| format!("DN: {}", r.down.join(",")))
    });
    let mut r = Run::new(rule.for_at_least(mins(1)));
    assert_eq!(r.push(ring(T0, &[])), Verdict::Ok);
    assert!(matches!(
        r.push(ring(T0 + 30_000, &["10.0.0.2"])),
        Verdict::Pending { .. }
    ));
    match r.push(ring(T0 + 90_000, &["10.0.0.2"])) {
        Verdict::Firing(f) => assert_eq!(f.evidence, vec!["DN: 10.0.0.2"]),
        other => panic!("{other:?}"),
    }
    assert!(
        r.push(obs(T0 + 120_000, Some(1.0))).is_unknown(),
        "fact absent"
    );
    let bad = Observation::new("ring", "cass", Timestamp(T0)).fact(&ManualReport {
        ticket: "x".into(),
        reporter: "y".into(),
        summary: "z".into(),
    });
    let mut facts = bad.facts.clone();
    facts.insert_json("test.ring", serde_json::json!({"down": 5}));
    let o = Observation { facts, ..bad };
    assert!(
        r.push(Record {
            at: Timestamp(T0 + 150_000),
            result: Ok(o)
        })
        .is_unknown(),
        "malformed fact"
    );
}

#[test]
fn all_and_any_composition() {
    let hi = || -> Box<dyn Symptom> { Box::new(metric("lag").above(5_000.0)) };
    let lo = || -> Box<dyn Symptom> { Box::new(metric("lag").above(50_000.0)) };
    let missing = || -> Box<dyn Symptom> { Box::new(metric("nope").above(0.0)) };
    let v = |s: Box<dyn Symptom>| Run::new(s).val(0, 9_000.0);
    assert!(v(Box::new(all_of(vec![hi(), hi()]))).is_firing());
    assert_eq!(v(Box::new(all_of(vec![hi(), lo()]))), Verdict::Ok);
    assert!(v(Box::new(all_of(vec![hi(), missing()]))).is_unknown());
    assert!(v(Box::new(any_of(vec![lo(), hi()]))).is_firing());
    assert!(
        v(Box::new(any_of(vec![missing(), hi()]))).is_firing(),
        "a firing child with data fires"
    );
    assert!(
        v(Box::new(any_of(vec![missing(), lo()]))).is_unknown(),
        "unknown is not ok"
    );
    assert_eq!(v(Box::new(any_of(vec![lo(), lo()]))), Verdict::Ok);
    assert!(v(Box::new(any_of(vec![]))).is_unknown());
    // hysteresis state is kept per child
    let mut r = Run::new(any_of(vec![Box::new(
        metric("lag").above(5_000.0).clears_below(1_000.0),
    )]));
    assert!(r.val(0, 9_000.0).is_firing());
    assert!(r.val(30, 3_000.0).is_firing());
    assert_eq!(r.val(60, 500.0), Verdict::Ok);
}

#[test]
fn alerts_fire_until_resolved() {
    let alert = |status: &str| Alert {
        name: "FlinkJobRestarting".into(),
        status: status.into(),
        fingerprint: "f".into(),
        labels: Default::default(),
        annotations: [("summary".to_string(), "job restarting".to_string())].into(),
        starts_at: String::new(),
        silenced_by: Vec::new(),
    };
    let mut r = Run::new(alert_firing("FlinkJobRestarting"));
    assert!(r.push(obs(T0, Some(1.0))).is_unknown());
    let rec = |at, s| Record {
        at: Timestamp(at),
        result: Ok(Observation::new("am", "t", Timestamp(at)).fact(&alert(s))),
    };
    match r.push(rec(T0 + 1, "firing")) {
        Verdict::Firing(f) => assert_eq!(f.summary, "job restarting"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.push(rec(T0 + 2, "resolved")), Verdict::Ok);
}

#[test]
fn history_is_bounded() {
    let mut h = History::new(secs(60), 5);
    for i in 0..100 {
        h.push(obs(T0 + i * 10_000, Some(1.0)));
    }
    assert_eq!(h.len(), 5);
    let mut h = History::new(secs(60), 1000);
    for i in 0..100 {
        h.push(obs(T0 + i * 10_000, Some(1.0)));
    }
    assert_eq!(h.len(), 7, "records within 60 s of the newest");
}

fn connect_alert(connector: &str, status: &str) -> Alert {
    Alert {
        name: "KafkaConnectFailed".into(),
        status: status.into(),
        fingerprint: format!("fp-{connector}"),
        labels: labels(&[
            ("alertname", "KafkaConnectFailed"),
            ("connector", connector),
        ]),
        annotations: [(
            "summary".to_string(),
            format!("connector {connector} failed"),
        )]
        .into(),
        starts_at: String::new(),
        silenced_by: Vec::new(),
    }
}

fn alert_rec(at: u64, a: &Alert) -> Record {
    Record {
        at: Timestamp(at),
        result: Ok(Observation::new("alertmanager", "t", Timestamp(at)).fact(a)),
    }
}

#[test]
fn alerts_are_judged_per_instance() {
    let m: crate::matcher::Matchers = r#"alertname="KafkaConnectFailed", connector=~"orders-.*""#
        .parse()
        .unwrap();
    let mut r = Run::new(alert_matching(m));
    // an alert of another connector, and one whose name only contains the pattern: no match
    assert!(r
        .push(alert_rec(T0, &connect_alert("payments-1", "firing")))
        .is_unknown());
    assert!(r
        .push(alert_rec(T0 + 1, &connect_alert("old-orders-1", "firing")))
        .is_unknown());
    let v = r.push(alert_rec(T0 + 10, &connect_alert("orders-1", "firing")));
    let Verdict::Firing(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f.summary, "connector orders-1 failed");
    assert_eq!(f.since, Timestamp(T0 + 10));
    assert!(
        f.evidence[0].contains("connector=orders-1"),
        "{:?}",
        f.evidence
    );
    let v = r.push(alert_rec(T0 + 20, &connect_alert("orders-2", "firing")));
    let Verdict::Firing(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(
        f.since,
        Timestamp(T0 + 10),
        "since the earliest firing instance"
    );
    assert_eq!(f.summary, "connector orders-2 failed (and 1 more firing)");
    assert_eq!(f.evidence.len(), 2);
    // orders-2 resolves: the newest alert of that name is resolved, but orders-1 still fires
    let v = r.push(alert_rec(T0 + 30, &connect_alert("orders-2", "resolved")));
    let Verdict::Firing(f) = v else {
        panic!("a resolved instance must not hide a firing one: {v:?}")
    };
    assert_eq!(f.summary, "connector orders-1 failed");
    // a repeat notification of orders-1 keeps its start
    let v = r.push(alert_rec(T0 + 40, &connect_alert("orders-1", "firing")));
    assert!(
        matches!(&v, Verdict::Firing(f) if f.since == Timestamp(T0 + 10)),
        "{v:?}"
    );
    assert_eq!(
        r.push(alert_rec(T0 + 50, &connect_alert("orders-1", "resolved"))),
        Verdict::Ok
    );
    // it fires again: a new start
    let v = r.push(alert_rec(T0 + 60, &connect_alert("orders-1", "firing")));
    assert!(
        matches!(&v, Verdict::Firing(f) if f.since == Timestamp(T0 + 60)),
        "{v:?}"
    );
}

#[test]
fn alert_firing_is_alertname_equal_and_per_instance() {
    let mut r = Run::new(alert_firing("KafkaConnectFailed"));
    assert!(r
        .push(alert_rec(T0, &connect_alert("orders-1", "firing")))
        .is_firing());
    assert!(r
        .push(alert_rec(T0 + 1, &connect_alert("orders-2", "resolved")))
        .is_firing());
    let mut other = connect_alert("orders-3", "firing");
    other.name = "Other".into();
    other.labels.insert("alertname".into(), "Other".into());
    other.fingerprint = "fp-other".into();
    assert!(r.push(alert_rec(T0 + 2, &other)).is_firing());
    assert_eq!(
        r.push(alert_rec(T0 + 3, &connect_alert("orders-1", "resolved"))),
        Verdict::Ok
    );
    assert_eq!(r.s.name(), "alert KafkaConnectFailed firing");
}

#[test]
fn silenced_alerts_do_not_fire() {
    let mut r = Run::new(alert_firing("KafkaConnectFailed"));
    let mut silenced = connect_alert("orders-1", "firing");
    silenced.silenced_by = vec!["3f1e9a0c-silence".into()];
    assert_eq!(r.push(alert_rec(T0, &silenced)), Verdict::Ok);
    // the silence expires: the next state of the instance fires
    assert!(r
        .push(alert_rec(T0 + 10, &connect_alert("orders-1", "firing")))
        .is_firing());
    // a silenced instance does not hide another, unsilenced one
    let mut s2 = connect_alert("orders-2", "firing");
    s2.silenced_by = vec!["x".into()];
    assert!(r.push(alert_rec(T0 + 20, &s2)).is_firing());
    // the webhook form (no silencedBy) and the v2 form both decode
    let json = serde_json::to_value(connect_alert("a", "firing")).unwrap();
    assert!(json.get("silenced_by").is_none());
    let back: Alert = serde_json::from_value(json).unwrap();
    assert!(!back.is_silenced() && back.is_firing());
}

#[test]
fn alert_instances_are_forgotten_after_their_memory() {
    let mut r = Run::new(alert_firing("KafkaConnectFailed").remember_for(mins(30)));
    assert!(r
        .push(alert_rec(T0, &connect_alert("orders-1", "firing")))
        .is_firing());
    assert_eq!(r.s.lookback(), mins(30));
    // an unrelated record 31 minutes later: orders-1 was not re-sent, so it is no longer known
    let v = r.push(obs(T0 + 31 * 60_000, Some(1.0)));
    assert!(v.is_unknown(), "{v:?}");
}

#[test]
fn a_gauge_drop_fires_where_a_counter_increase_sees_a_reset() {
    let mut r = Run::new(metric("lag").drops_by(2.0).within(mins(5)));
    assert!(
        r.val(0, 10.0).is_unknown(),
        "one observation is not a window"
    );
    assert_eq!(r.val(60, 10.0), Verdict::Ok);
    assert_eq!(r.val(120, 9.0), Verdict::Ok, "down by 1 only");
    let v = r.val(180, 7.0);
    let Verdict::Firing(f) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(f.since, Timestamp(T0 + 180_000));
    assert_eq!(
        f.summary,
        "max(lag) fell by 3 (30%) within 5m: from 10 to 7"
    );
    let vm = f.violated.as_ref().unwrap();
    assert_eq!((vm.value, vm.threshold), (3.0, 2.0));
    assert_eq!(vm.aggregation, "max fall within 5m");
    // still down while the peak is in the window; once it leaves, the new level is the norm
    assert!(r.val(240, 7.0).is_firing());
    assert!(
        r.val(360, 7.0).is_firing(),
        "peak at 60 s is still within 5m"
    );
    assert!(r.val(420, 7.0).is_firing(), "9 at 120 s is still within 5m");
    assert_eq!(r.val(480, 7.0), Verdict::Ok);
    assert_eq!(r.s.lookback(), mins(5));

    // the same readings through a counter increase: the fall is a reset, the increase is positive
    let mut inc = Run::new(metric("lag").increase_over(mins(5)).below(0.0));
    for (t, v) in [(0, 10.0), (60, 10.0), (120, 9.0), (180, 7.0)] {
        assert!(!inc.val(t, v).is_firing());
    }
}

#[test]
fn a_slow_decline_is_not_a_sudden_drop() {
    let mut r = Run::new(metric("lag").drops_by(2.0).within(mins(5)));
    for (i, v) in [10.0, 9.0, 8.0, 7.0, 6.0].into_iter().enumerate() {
        let v = r.val(i as u64 * 180, v);
        assert!(!v.is_firing(), "step {i}: {v:?}");
    }
}

#[test]
fn a_gauge_drop_by_percent() {
    let mut r = Run::new(metric("lag").drops_by_percent(20.0).within(mins(5)));
    r.val(0, 10.0);
    assert_eq!(r.val(60, 9.0), Verdict::Ok, "10 %");
    let v = r.val(120, 8.0);
    let Verdict::Firing(f) = &v else {
        panic!("{v:?}")
    };
    let vm = f.violated.as_ref().unwrap();
    assert_eq!((vm.value, vm.threshold), (20.0, 20.0));
    assert!(
        r.s.name().contains("drops by 20% within 5m"),
        "{}",
        r.s.name()
    );
    // from zero there is nothing to lose
    let mut z = Run::new(metric("lag").drops_by_percent(20.0));
    z.val(0, 0.0);
    assert_eq!(z.val(60, 0.0), Verdict::Ok);
}

#[test]
fn a_gauge_drop_is_unknown_on_missing_or_incomplete_data() {
    let mut r = Run::new(metric("lag").drops_by(2.0).within(mins(5)));
    r.val(0, 10.0);
    assert!(r.push(fail(T0 + 60_000)).is_unknown(), "newest failed");
    assert!(r.push(obs(T0 + 90_000, None)).is_unknown(), "metric absent");
    let mut inc = Observation::new("p", "t", Timestamp(T0 + 100_000)).sample(
        "lag",
        labels(&[("p", "0")]),
        3.0,
    );
    inc.mark_incomplete("worker 2 did not answer");
    match r.push(Record {
        at: Timestamp(T0 + 100_000),
        result: Ok(inc),
    }) {
        Verdict::Unknown { why } => assert!(why.contains("worker 2"), "{why}"),
        other => panic!("an incomplete count must not fire: {other:?}"),
    }
    // a drop seen between readable observations fires despite the unreadable ones between them
    assert!(r.val(120, 7.0).is_firing());

    // no drop visible, but an unreadable observation in the window may hide the peak: unknown
    let mut r = Run::new(metric("lag").drops_by(2.0).within(mins(5)));
    r.val(0, 7.0);
    r.push(fail(T0 + 60_000));
    r.val(120, 7.0);
    match r.val(180, 7.0) {
        Verdict::Unknown { why } => assert!(why.contains("unreadable"), "{why}"),
        other => panic!("{other:?}"),
    }
    // the failure leaves the window: ok again
    assert_eq!(r.val(400, 7.0), Verdict::Ok);
}

#[test]
fn fact_rules_clear_with_hysteresis() {
    let two_down = || {
        fact_rule::<Ring>("two nodes are DN", |r| {
            (r.down.len() >= 2).then(|| format!("DN: {}", r.down.join(",")))
        })
    };
    // without a clear condition: ok as soon as the predicate stops holding
    let mut plain = Run::new(two_down());
    assert!(plain.push(ring(T0, &["a", "b"])).is_firing());
    assert_eq!(plain.push(ring(T0 + 30_000, &["a"])), Verdict::Ok);

    // with one: firing until every node is back
    let mut r = Run::new(two_down().clears_when(|r| r.down.is_empty()));
    assert_eq!(
        r.push(ring(T0, &["a"])),
        Verdict::Ok,
        "one DN does not fire"
    );
    assert!(r.push(ring(T0 + 10_000, &["a", "b"])).is_firing());
    match r.push(ring(T0 + 30_000, &["a"])) {
        Verdict::Firing(f) => assert_eq!(f.since, Timestamp(T0 + 10_000)),
        other => panic!("must stay firing until cleared: {other:?}"),
    }
    assert!(
        r.push(obs(T0 + 40_000, Some(1.0))).is_unknown(),
        "a missing fact is unknown, not cleared"
    );
    // previous verdict unknown: judged afresh by the fire predicate
    assert!(r.push(ring(T0 + 50_000, &["a", "b"])).is_firing());
    assert_eq!(r.push(ring(T0 + 60_000, &[])), Verdict::Ok);

    // and a clear that must hold for a minute
    let mut r = Run::new(
        two_down()
            .clears_when(|r| r.down.is_empty())
            .clears_after(mins(1)),
    );
    assert!(r.push(ring(T0, &["a", "b"])).is_firing());
    assert!(
        r.push(ring(T0 + 30_000, &[])).is_firing(),
        "cleared 0 of 60 s"
    );
    assert!(
        r.push(ring(T0 + 60_000, &[])).is_firing(),
        "cleared 30 of 60 s"
    );
    assert_eq!(r.push(ring(T0 + 90_000, &[])), Verdict::Ok);
    assert_eq!(r.s.lookback(), mins(1));
}
