//! A Burrow-style evaluation of consumer-group health: per partition OK, WARN, STOP, STALL,
//! REWIND or "not enough data" over a window of observations, the group as its worst partition.
//!
//! The evaluator ([`evaluate_partition`], [`evaluate_group`]) is a pure function of a window of
//! per-partition points (committed offset, log-end offset, observed at). [`BurrowStatus`] is the
//! same evaluation as an [`rb_core::symptom::Symptom`], reading the
//! [`PartitionOffsets`](super::PartitionOffsets) fact the lag probe attaches when asked to
//! ([`ConsumerLagProbe::with_partition_fact`](super::ConsumerLagProbe::with_partition_fact)).
//!
//! The rules are documented on [`evaluate_partition`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rb_core::symptom::{EvalContext, Finding, Symptom, Verdict};
use rb_core::time::Timestamp;
use rb_core::FactType;
use serde::{Deserialize, Serialize};

use super::client::{GroupState, TopicPartition};
use super::lag::PartitionOffsets;

/// One observation of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPoint {
    /// The group's committed offset (`None`: no commit).
    pub committed: Option<i64>,
    /// The log-end offset.
    pub end: i64,
    /// When it was observed.
    pub at: Timestamp,
}

impl WindowPoint {
    fn lag(&self) -> Option<i64> {
        self.committed.map(|c| (self.end - c).max(0))
    }
}

/// The status of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartitionStatus {
    /// Consuming normally or caught up.
    Ok,
    /// Not enough points to judge.
    NotEnoughData,
    /// Falling behind: committing, but the lag keeps growing.
    Warn,
    /// A member is there but the committed offset does not move while lag remains.
    Stall,
    /// No member consumes while lag remains.
    Stop,
    /// The committed offset went backwards.
    Rewind,
}

impl PartitionStatus {
    /// Whether the status is an error (STOP, STALL, REWIND).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            PartitionStatus::Stop | PartitionStatus::Stall | PartitionStatus::Rewind
        )
    }
}

impl fmt::Display for PartitionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartitionStatus::Ok => "OK",
            PartitionStatus::NotEnoughData => "NOT_ENOUGH_DATA",
            PartitionStatus::Warn => "WARN",
            PartitionStatus::Stall => "STALL",
            PartitionStatus::Stop => "STOP",
            PartitionStatus::Rewind => "REWIND",
        })
    }
}

/// The status of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroupStatus {
    /// Every partition OK.
    Ok,
    /// Some partition is not judged and none is worse than OK.
    NotEnoughData,
    /// Some partition WARN, none in error.
    Warn,
    /// Some partition STOP, STALL or REWIND.
    Err,
    /// The group was deleted: it stops reporting.
    Gone,
}

impl fmt::Display for GroupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupStatus::Ok => "OK",
            GroupStatus::NotEnoughData => "NOT_ENOUGH_DATA",
            GroupStatus::Warn => "WARN",
            GroupStatus::Err => "ERR",
            GroupStatus::Gone => "GONE",
        })
    }
}

/// The evaluator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurrowRules {
    /// How many of the newest points a partition is judged on (default 10).
    pub window: usize,
    /// The fewest points needed to judge (default 3, at least 2).
    pub min_points: usize,
    /// A newest point older than this at evaluation time is not judged (default 10 minutes).
    pub stale_after: Duration,
}

impl Default for BurrowRules {
    fn default() -> Self {
        Self {
            window: 10,
            min_points: 3,
            stale_after: Duration::from_secs(600),
        }
    }
}

/// The judgement of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionEvaluation {
    /// The status.
    pub status: PartitionStatus,
    /// Why, for a human.
    pub reason: String,
    /// The newest lag (`None`: no committed offset).
    pub lag: Option<i64>,
    /// The time of the first point of the window judged.
    pub since: Option<Timestamp>,
}

fn judged(
    status: PartitionStatus,
    reason: impl Into<String>,
    lag: Option<i64>,
    since: Option<Timestamp>,
) -> PartitionEvaluation {
    PartitionEvaluation {
        status,
        reason: reason.into(),
        lag,
        since,
    }
}

/// Judge one partition on its points (oldest first), knowing how many members the group has
/// (`None`: unknown), at `now`.
///
/// # Rules, in order (per partition, over the last `window` points)
///
/// 1. Fewer than `min_points` points with a committed offset, or the newest point has none, or the
///    newest point is older than `stale_after` at evaluation time → **not enough data**.
/// 2. The committed offset went down between two points → **REWIND**.
/// 3. The newest committed offset is at or past the log end, or the lag was zero at some point of
///    the window → **OK**. This is where Burrow's users found it wrong: a slow topic that gets no new
///    records leaves a caught-up consumer with nothing to commit, and that is not STOP.
/// 4. The committed offset did not move over the window and the lag stayed above zero: the group
///    has no member → **STOP** (nobody consumes); it has members, or its membership is unknown →
///    **STALL** (a consumer is there, its offset is not moving). OffsetFetch carries no commit
///    time, so membership, not commit age, tells a stopped consumer from a stuck one.
/// 5. The committed offset moved, but the lag never went down between two points and ended higher
///    than it began → **WARN** (the consumer falls behind). A lag that holds steady while the
///    consumer commits is a consumer keeping pace: OK (Burrow warns on it).
/// 6. Otherwise **OK**.
///
/// The group's status is its worst partition: any STOP, STALL or REWIND → **ERR**; else any WARN →
/// **WARN**; else any "not enough data" → **not enough data**; else **OK**. A group the coordinator
/// reports `Dead` (deleted) is **gone**: it stops reporting instead of keeping its last status.
pub fn evaluate_partition(
    points: &[WindowPoint],
    members: Option<usize>,
    rules: &BurrowRules,
    now: Timestamp,
) -> PartitionEvaluation {
    let min_points = rules.min_points.max(2);
    let Some(newest) = points.last() else {
        return judged(PartitionStatus::NotEnoughData, "no observation", None, None);
    };
    if newest.committed.is_none() {
        return judged(
            PartitionStatus::NotEnoughData,
            "no committed offset",
            None,
            None,
        );
    }
    if now.since(newest.at) > rules.stale_after {
        return judged(
            PartitionStatus::NotEnoughData,
            format!("newest observation is from {}", newest.at),
            newest.lag(),
            None,
        );
    }
    // The trailing run of points with a committed offset, at most `window` of them.
    let run_start = points
        .iter()
        .rposition(|p| p.committed.is_none())
        .map_or(0, |i| i + 1);
    let run = &points[run_start..];
    let run = &run[run.len().saturating_sub(rules.window.max(min_points))..];
    let lag = newest.lag();
    if run.len() < min_points {
        return judged(
            PartitionStatus::NotEnoughData,
            format!("{} of {min_points} points", run.len()),
            lag,
            None,
        );
    }
    let since = run.first().map(|p| p.at);
    let committed: Vec<i64> = run.iter().filter_map(|p| p.committed).collect();
    let lags: Vec<i64> = run.iter().filter_map(WindowPoint::lag).collect();
    if let Some(w) = committed.windows(2).find(|w| w[1] < w[0]) {
        return judged(
            PartitionStatus::Rewind,
            format!("committed offset went back from {} to {}", w[0], w[1]),
            lag,
            since,
        );
    }
    if lag == Some(0) {
        return judged(PartitionStatus::Ok, "caught up", lag, since);
    }
    if lags.contains(&0) {
        return judged(
            PartitionStatus::Ok,
            "was caught up within the window",
            lag,
            since,
        );
    }
    let (first_c, last_c) = (committed[0], committed[committed.len() - 1]);
    let (first_lag, last_lag) = (lags[0], lags[lags.len() - 1]);
    if first_c == last_c {
        return match members {
            Some(0) => judged(
                PartitionStatus::Stop,
                format!(
                    "no member consumes: committed offset {last_c} unmoved over {} points, lag {last_lag}",
                    run.len()
                ),
                lag,
                since,
            ),
            _ => judged(
                PartitionStatus::Stall,
                format!(
                    "committed offset {last_c} unmoved over {} points, lag {last_lag}",
                    run.len()
                ),
                lag,
                since,
            ),
        };
    }
    if lags.windows(2).all(|w| w[1] >= w[0]) && last_lag > first_lag {
        return judged(
            PartitionStatus::Warn,
            format!("falling behind: lag grew from {first_lag} to {last_lag} while committing"),
            lag,
            since,
        );
    }
    judged(PartitionStatus::Ok, "consuming", lag, since)
}

/// A group's window: its points per partition and what is known of its membership.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupWindow {
    /// Points per partition, oldest first.
    pub partitions: BTreeMap<TopicPartition, Vec<WindowPoint>>,
    /// The group's state at the newest observation, if read.
    pub state: Option<GroupState>,
    /// The group's member count at the newest observation, if read.
    pub members: Option<usize>,
}

impl GroupWindow {
    /// Add one observation of one partition.
    pub fn push(&mut self, tp: TopicPartition, point: WindowPoint) {
        self.partitions.entry(tp).or_default().push(point);
    }
}

/// The judgement of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupEvaluation {
    /// The status.
    pub status: GroupStatus,
    /// Per-partition judgements, worst first (then by topic and partition).
    pub partitions: Vec<(TopicPartition, PartitionEvaluation)>,
    /// How many partitions have each status.
    pub counts: BTreeMap<String, usize>,
}

impl GroupEvaluation {
    /// The judgements of partitions with `status`.
    pub fn with_status(
        &self,
        status: PartitionStatus,
    ) -> impl Iterator<Item = &(TopicPartition, PartitionEvaluation)> + '_ {
        self.partitions
            .iter()
            .filter(move |(_, e)| e.status == status)
    }
}

/// Judge a group: every partition, then the worst of them.
pub fn evaluate_group(
    window: &GroupWindow,
    rules: &BurrowRules,
    now: Timestamp,
) -> GroupEvaluation {
    if window.state == Some(GroupState::Dead) {
        return GroupEvaluation {
            status: GroupStatus::Gone,
            partitions: Vec::new(),
            counts: BTreeMap::new(),
        };
    }
    let mut partitions: Vec<(TopicPartition, PartitionEvaluation)> = window
        .partitions
        .iter()
        .map(|(tp, pts)| {
            let tail = &pts[pts.len().saturating_sub(rules.window.max(rules.min_points))..];
            (
                tp.clone(),
                evaluate_partition(tail, window.members, rules, now),
            )
        })
        .collect();
    partitions.sort_by(|a, b| b.1.status.cmp(&a.1.status).then_with(|| a.0.cmp(&b.0)));
    let mut counts = BTreeMap::new();
    for (_, e) in &partitions {
        *counts.entry(e.status.to_string()).or_insert(0) += 1;
    }
    let any = |f: fn(PartitionStatus) -> bool| partitions.iter().any(|(_, e)| f(e.status));
    let status = if any(PartitionStatus::is_error) {
        GroupStatus::Err
    } else if any(|s| s == PartitionStatus::Warn) {
        GroupStatus::Warn
    } else if partitions.is_empty() || any(|s| s == PartitionStatus::NotEnoughData) {
        GroupStatus::NotEnoughData
    } else {
        GroupStatus::Ok
    };
    GroupEvaluation {
        status,
        partitions,
        counts,
    }
}

/// The Burrow-style evaluation as a symptom: fires when the group's status is ERR (or WARN, with
/// [`BurrowStatus::fire_on_warn`]), unknown on "not enough data" and on a gone group, on failed
/// probes and when the probe attaches no [`PartitionOffsets`] fact for the group.
///
/// Bind it to a [`ConsumerLagProbe`](super::ConsumerLagProbe) built
/// [`with_partition_fact(true)`](super::ConsumerLagProbe::with_partition_fact), beside
/// `metric("records_lag_max").max().above(5000.0)`.
#[derive(Debug, Clone)]
pub struct BurrowStatus {
    group: String,
    rules: BurrowRules,
    fire_on_warn: bool,
    lookback: Duration,
}

/// How many partitions a finding lists as evidence.
const EVIDENCE_PARTITIONS: usize = 10;

impl BurrowStatus {
    /// The evaluation of `group` with the default rules, over up to 10 minutes of history.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            rules: BurrowRules::default(),
            fire_on_warn: false,
            lookback: Duration::from_secs(600),
        }
    }

    /// Use these rules.
    pub fn rules(mut self, rules: BurrowRules) -> Self {
        self.rules = rules;
        self
    }

    /// Fire on WARN too (default: ERR only; WARN then counts as ok).
    pub fn fire_on_warn(mut self, yes: bool) -> Self {
        self.fire_on_warn = yes;
        self
    }

    /// How much history to keep and read (default 10 minutes).
    pub fn lookback(mut self, d: Duration) -> Self {
        self.lookback = d;
        self
    }

    /// The window the history holds for this group: `Err` says why there is none.
    pub fn window(&self, ctx: &EvalContext<'_>) -> Result<GroupWindow, String> {
        let Some(latest) = ctx.history.latest() else {
            return Err("no observation yet".to_owned());
        };
        let latest_obs = match &latest.result {
            Ok(o) => o,
            Err(f) => return Err(format!("probe failed ({}): {}", f.kind, f.message)),
        };
        let mut window = GroupWindow::default();
        let mut newest_seen = false;
        for rec in ctx.history.records() {
            let Ok(obs) = &rec.result else { continue };
            let fact = match obs.facts.get::<PartitionOffsets>() {
                Some(Ok(f)) if f.group == self.group => f,
                Some(Err(e)) if std::ptr::eq(obs, latest_obs) => {
                    return Err(format!(
                        "{} fact unreadable: {e}",
                        <PartitionOffsets as FactType>::KIND
                    ))
                }
                _ => continue,
            };
            if std::ptr::eq(obs, latest_obs) {
                newest_seen = true;
                window.state = fact.state.clone();
                window.members = fact.members;
            }
            for p in &fact.partitions {
                if let Some(end) = p.end {
                    window.push(
                        TopicPartition::new(p.topic.as_str(), p.partition),
                        WindowPoint {
                            committed: p.committed,
                            end,
                            at: obs.at,
                        },
                    );
                }
            }
        }
        if !newest_seen {
            return Err(format!(
                "the newest observation has no {} fact for group {}",
                <PartitionOffsets as FactType>::KIND,
                self.group
            ));
        }
        Ok(window)
    }
}

impl Symptom for BurrowStatus {
    fn name(&self) -> String {
        format!("consumer group {} status (Burrow rules)", self.group)
    }

    fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Verdict {
        let window = match self.window(ctx) {
            Ok(w) => w,
            Err(why) => return Verdict::unknown(why),
        };
        let eval = evaluate_group(&window, &self.rules, ctx.now);
        match eval.status {
            GroupStatus::Ok => Verdict::Ok,
            GroupStatus::Warn if !self.fire_on_warn => Verdict::Ok,
            GroupStatus::Gone => Verdict::unknown(format!(
                "consumer group {} is gone (Dead): it no longer reports",
                self.group
            )),
            GroupStatus::NotEnoughData => {
                let waiting = eval
                    .with_status(PartitionStatus::NotEnoughData)
                    .next()
                    .map(|(tp, e)| format!("{tp}: {}", e.reason))
                    .unwrap_or_else(|| "no partition observed".to_owned());
                Verdict::unknown(format!("not enough data ({waiting})"))
            }
            GroupStatus::Warn | GroupStatus::Err => {
                let bad: Vec<&(TopicPartition, PartitionEvaluation)> = eval
                    .partitions
                    .iter()
                    .filter(|(_, e)| e.status.is_error() || e.status == PartitionStatus::Warn)
                    .collect();
                let since = bad
                    .iter()
                    .filter_map(|(_, e)| e.since)
                    .min()
                    .unwrap_or(ctx.now);
                let evidence = bad
                    .iter()
                    .take(EVIDENCE_PARTITIONS)
                    .map(|(tp, e)| format!("{tp} {}: {}", e.status, e.reason))
                    .collect();
                let counts: Vec<String> = eval
                    .counts
                    .iter()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect();
                Verdict::Firing(Finding {
                    symptom: self.name(),
                    summary: format!(
                        "consumer group {} is {} ({})",
                        self.group,
                        eval.status,
                        counts.join(", ")
                    ),
                    since,
                    violated: None,
                    evidence,
                    offending: bad
                        .iter()
                        .take(EVIDENCE_PARTITIONS)
                        .map(|(tp, _)| {
                            rb_core::labels(&[
                                ("group", self.group.as_str()),
                                ("topic", &*tp.topic),
                                ("partition", &tp.partition.to_string()),
                            ])
                        })
                        .collect(),
                })
            }
        }
    }

    fn lookback(&self) -> Duration {
        self.lookback
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn at(secs: u64) -> Timestamp {
        Timestamp(T0 + secs * 1000)
    }

    /// Points every 60 s from (committed, end) pairs.
    fn pts(pairs: &[(Option<i64>, i64)]) -> Vec<WindowPoint> {
        pairs
            .iter()
            .enumerate()
            .map(|(i, &(committed, end))| WindowPoint {
                committed,
                end,
                at: at(60 * i as u64),
            })
            .collect()
    }

    fn now_after(points: &[WindowPoint]) -> Timestamp {
        points
            .last()
            .map(|p| p.at.plus(Duration::from_secs(1)))
            .unwrap_or(at(0))
    }

    fn status(pairs: &[(Option<i64>, i64)], members: Option<usize>) -> PartitionStatus {
        let p = pts(pairs);
        evaluate_partition(&p, members, &BurrowRules::default(), now_after(&p)).status
    }

    #[test]
    fn not_enough_data_until_min_points() {
        assert_eq!(status(&[], Some(1)), PartitionStatus::NotEnoughData);
        assert_eq!(
            status(&[(Some(0), 10)], Some(1)),
            PartitionStatus::NotEnoughData
        );
        assert_eq!(
            status(&[(Some(0), 10), (Some(0), 20)], Some(1)),
            PartitionStatus::NotEnoughData
        );
        // Three points: judged.
        assert_eq!(
            status(&[(Some(0), 10), (Some(0), 20), (Some(0), 30)], Some(1)),
            PartitionStatus::Stall
        );
    }

    #[test]
    fn no_committed_offset_is_not_enough_data_never_ok() {
        let e = {
            let p = pts(&[(None, 10), (None, 20), (None, 30)]);
            evaluate_partition(&p, Some(1), &BurrowRules::default(), now_after(&p))
        };
        assert_eq!(e.status, PartitionStatus::NotEnoughData);
        assert_eq!(e.lag, None);
        assert!(e.reason.contains("no committed offset"));
        // Commits started two points ago: only the run with commits counts.
        assert_eq!(
            status(
                &[(None, 10), (None, 20), (Some(5), 30), (Some(5), 40)],
                Some(1)
            ),
            PartitionStatus::NotEnoughData
        );
    }

    #[test]
    fn rewind_when_the_committed_offset_goes_back() {
        assert_eq!(
            status(
                &[(Some(100), 200), (Some(150), 200), (Some(120), 200)],
                Some(1)
            ),
            PartitionStatus::Rewind
        );
        // Even if caught up at the end: a rewind is reported first.
        assert_eq!(
            status(
                &[(Some(100), 100), (Some(50), 100), (Some(100), 100)],
                Some(1)
            ),
            PartitionStatus::Rewind
        );
    }

    #[test]
    fn caught_up_is_ok_even_without_commits_on_a_slow_topic() {
        // No new records, offset unchanged, lag 0 all along: Burrow called this STOP; it is OK.
        let e = {
            let p = pts(&[(Some(500), 500); 10]);
            evaluate_partition(&p, Some(0), &BurrowRules::default(), now_after(&p))
        };
        assert_eq!(e.status, PartitionStatus::Ok, "{e:?}");
        assert_eq!(e.lag, Some(0));
        // Committed past the log end counts as caught up.
        assert_eq!(
            status(
                &[(Some(510), 500), (Some(510), 500), (Some(510), 500)],
                Some(1)
            ),
            PartitionStatus::Ok
        );
        // A zero lag within the window: OK (the consumer was caught up a moment ago).
        assert_eq!(
            status(
                &[(Some(500), 500), (Some(500), 510), (Some(500), 520)],
                Some(1)
            ),
            PartitionStatus::Ok
        );
    }

    #[test]
    fn stall_when_a_member_does_not_move_its_offset() {
        let e = {
            let p = pts(&[(Some(100), 200), (Some(100), 300), (Some(100), 400)]);
            evaluate_partition(&p, Some(2), &BurrowRules::default(), now_after(&p))
        };
        assert_eq!(e.status, PartitionStatus::Stall);
        assert_eq!(e.lag, Some(300));
        assert_eq!(e.since, Some(at(0)));
        assert!(e.reason.contains("100"), "{}", e.reason);
        // Unknown membership is treated as present: STALL, not STOP.
        assert_eq!(
            status(
                &[(Some(100), 200), (Some(100), 200), (Some(100), 200)],
                None
            ),
            PartitionStatus::Stall
        );
    }

    #[test]
    fn stop_when_no_member_consumes_a_backlog() {
        // Backlog left, nobody consuming, no new records: STOP.
        assert_eq!(
            status(
                &[(Some(100), 200), (Some(100), 200), (Some(100), 200)],
                Some(0)
            ),
            PartitionStatus::Stop
        );
        // Backlog growing, nobody consuming: STOP.
        assert_eq!(
            status(
                &[(Some(100), 200), (Some(100), 250), (Some(100), 300)],
                Some(0)
            ),
            PartitionStatus::Stop
        );
    }

    #[test]
    fn warn_when_committing_but_falling_behind() {
        assert_eq!(
            status(
                &[
                    (Some(100), 200),
                    (Some(150), 300),
                    (Some(200), 400),
                    (Some(250), 500)
                ],
                Some(1)
            ),
            PartitionStatus::Warn
        );
        // Lag steady while committing: keeping pace, OK (Burrow warns here).
        assert_eq!(
            status(
                &[(Some(100), 200), (Some(200), 300), (Some(300), 400)],
                Some(1)
            ),
            PartitionStatus::Ok
        );
        // Lag went down once: OK.
        assert_eq!(
            status(
                &[(Some(100), 200), (Some(250), 300), (Some(260), 400)],
                Some(1)
            ),
            PartitionStatus::Ok
        );
    }

    #[test]
    fn only_the_window_counts() {
        // An old rewind and an old zero lag fall out of a 3-point window.
        let rules = BurrowRules {
            window: 3,
            min_points: 3,
            ..BurrowRules::default()
        };
        let p = pts(&[
            (Some(500), 500),
            (Some(400), 600),
            (Some(400), 700),
            (Some(400), 800),
            (Some(400), 900),
        ]);
        let e = evaluate_partition(&p, Some(1), &rules, now_after(&p));
        assert_eq!(e.status, PartitionStatus::Stall, "{e:?}");
        assert_eq!(e.since, Some(at(120)));
    }

    #[test]
    fn stale_points_are_not_judged() {
        let p = pts(&[(Some(100), 200), (Some(100), 300), (Some(100), 400)]);
        let late = p[2].at.plus(Duration::from_secs(3600));
        let e = evaluate_partition(&p, Some(1), &BurrowRules::default(), late);
        assert_eq!(e.status, PartitionStatus::NotEnoughData);
    }

    type Pairs<'a> = &'a [(Option<i64>, i64)];

    fn window(parts: &[(&str, i32, Pairs<'_>)], members: Option<usize>) -> GroupWindow {
        let mut w = GroupWindow {
            members,
            state: Some(GroupState::Stable),
            ..GroupWindow::default()
        };
        for (topic, partition, pairs) in parts {
            for p in pts(pairs) {
                w.push(TopicPartition::new(*topic, *partition), p);
            }
        }
        w
    }

    #[test]
    fn group_status_is_the_worst_partition() {
        let ok: &[(Option<i64>, i64)] = &[(Some(10), 10), (Some(20), 20), (Some(30), 30)];
        let warn: &[(Option<i64>, i64)] = &[(Some(10), 20), (Some(15), 40), (Some(20), 60)];
        let stall: &[(Option<i64>, i64)] = &[(Some(10), 20), (Some(10), 40), (Some(10), 60)];
        let nodata: &[(Option<i64>, i64)] = &[(None, 20), (None, 40), (None, 60)];
        let now = at(200);
        let rules = BurrowRules::default();

        let e = evaluate_group(&window(&[("t", 0, ok), ("t", 1, ok)], Some(1)), &rules, now);
        assert_eq!(e.status, GroupStatus::Ok);

        let e = evaluate_group(
            &window(&[("t", 0, ok), ("t", 1, nodata)], Some(1)),
            &rules,
            now,
        );
        assert_eq!(e.status, GroupStatus::NotEnoughData);

        let e = evaluate_group(
            &window(&[("t", 0, ok), ("t", 1, warn), ("t", 2, nodata)], Some(1)),
            &rules,
            now,
        );
        assert_eq!(e.status, GroupStatus::Warn);

        let e = evaluate_group(
            &window(&[("t", 0, ok), ("t", 1, warn), ("t", 2, stall)], Some(1)),
            &rules,
            now,
        );
        assert_eq!(e.status, GroupStatus::Err);
        // Worst first.
        assert_eq!(e.partitions[0].0, TopicPartition::new("t", 2));
        assert_eq!(e.partitions[0].1.status, PartitionStatus::Stall);
        assert_eq!(e.counts.get("STALL"), Some(&1));
        assert_eq!(e.counts.get("OK"), Some(&1));

        let e = evaluate_group(&GroupWindow::default(), &rules, now);
        assert_eq!(e.status, GroupStatus::NotEnoughData);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_the_group_is_its_worst_partition(
            parts in proptest::collection::vec(
                proptest::collection::vec((proptest::option::of(0i64..1000), 0i64..1000, 0u64..120), 0..14),
                0..6,
            ),
            members in proptest::option::of(0usize..3),
        ) {
            let mut w = GroupWindow { members, ..GroupWindow::default() };
            for (i, pts) in parts.iter().enumerate() {
                let mut at = 0;
                for (c, e, dt) in pts {
                    at += dt;
                    w.push(TopicPartition::new("t", i as i32), WindowPoint { committed: *c, end: *e, at: Timestamp(T0 + at * 1000) });
                }
            }
            let e = evaluate_group(&w, &BurrowRules::default(), Timestamp(T0 + 600_000));
            let any_err = e.partitions.iter().any(|(_, p)| p.status.is_error());
            proptest::prop_assert_eq!(any_err, e.status == GroupStatus::Err);
            if e.status == GroupStatus::Ok {
                proptest::prop_assert!(e.partitions.iter().all(|(_, p)| p.status == PartitionStatus::Ok));
            }
        }
    }

    #[test]
    fn a_deleted_group_stops_reporting() {
        let stall: &[(Option<i64>, i64)] = &[(Some(10), 20), (Some(10), 40), (Some(10), 60)];
        let mut w = window(&[("t", 0, stall)], Some(0));
        w.state = Some(GroupState::Dead);
        let e = evaluate_group(&w, &BurrowRules::default(), at(200));
        assert_eq!(e.status, GroupStatus::Gone);
        assert!(e.partitions.is_empty());
    }
}
