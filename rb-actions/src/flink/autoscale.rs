//! The target parallelism of one vertex, computed the way Flink's autoscaler computes it.
//!
//! ## The formula
//!
//! Inputs, per vertex: the rate it must sustain `R` (records/s arriving at the source: the *target
//! data rate*), the backlog `L` (records pending at the source), what it processes now `r`
//! (records/s over all its subtasks) and how busy it is doing so `b` (`busyTimeMsPerSecond / 1000`,
//! averaged over subtasks, in `(0, 1]`), its current parallelism `p`.
//!
//! ```text
//! true processing rate   T = r / b                       (what p subtasks could do at 100 % busy)
//! target rate            C = L / catch_up                (drain the backlog within catch_up)
//!                          + R · restart / catch_up      (what piles up while the rescale restarts)
//!                          + R / utilization             (keep up with R at the target utilization)
//! scale factor           f = C / T
//! capped factor          f' = clamp(f, 1 − max_scale_down, 1 + max_scale_up)     (0.4 … 100001 by default)
//! raw parallelism        n = ceil(f' · p)
//! bounded                n' = clamp(n, min_parallelism, min(max_parallelism, key groups))
//! aligned                the smallest divisor d ≥ n' of N (N = the source's partitions when known,
//!                        else the key groups) with d ≤ N / 2 and d ≤ the upper bound; n' when none
//! direction guard        a scale-up (f' > 1) never ends below p, a scale-down (f' < 1) never above
//!                        p: when the bounds force a move against the computed direction the
//!                        vertex stays at p
//! ```
//!
//! Defaults are the autoscaler's: utilization 0.7, catch-up 30 min, restart time 5 min, max scale-down
//! 0.6 (so the factor is never below 0.4), max scale-up 100000, parallelism within 1 ..= 200.
//!
//! ## Worked cases (defaults unless said)
//!
//! | R (rec/s) | L (records) | r (rec/s) | b | p | key groups / partitions | T | C | f | result |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | 1000 | 0 | 1000 | 0.5 | 2 | 128 | 2000 | 1000·300/1800 + 1000/0.7 = 1595.2 | 0.80 | ceil(1.6) = 2 → **2** (nothing to do) |
//! | 1000 | 1 800 000 | 1000 | 1.0 | 2 | 128 | 1000 | 1000 + 166.7 + 1428.6 = 2595.2 | 2.60 | ceil(5.19) = 6 → divisor of 128 ≥ 6: **8** |
//! | 1000 | 1 800 000 | 1000 | 1.0 | 2 | 12 partitions | 1000 | 2595.2 | 2.60 | 6 → 6 divides 12: **6** |
//! | 100 | 0 | 100 | 0.1 | 8 | 128 | 1000 | 16.7 + 142.9 = 159.5 | 0.16 → 0.4 | ceil(3.2) = 4 → **4** |
//! | 4000 | 0 | 4000 | 1.0 | 4 | 128, max 5 | 4000 | 666.7 + 5714.3 = 6381 | 1.60 | ceil(6.4) = 7 → max 5 → **5** |
//! | 1000 | 0 | 1000 | 1.0 | 10 | 128, max 8 | 1000 | 1595.2 | 1.60 | 16 → max 8 < p = 10: a scale-up may not shrink → **10** (nothing to do) |

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The autoscaler's settings (`job.autoscaler.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscalerSettings {
    /// Target utilization of the busy time, `(0, 1]` (`utilization.target`, 0.7).
    pub utilization: f64,
    /// How fast the backlog must drain (`catch-up.duration`, 30 min).
    pub catch_up: Duration,
    /// How long a rescale takes to restart (`restart.time`, 5 min).
    pub restart_time: Duration,
    /// Largest relative scale-down, `[0, 1)` (`scale-down.max-factor`, 0.6: never below 0.4 ×).
    pub max_scale_down: f64,
    /// Largest relative scale-up (`scale-up.max-factor`, 100000).
    pub max_scale_up: f64,
    /// Lowest parallelism (`vertex.min-parallelism`, 1).
    pub min_parallelism: u32,
    /// Highest parallelism (`vertex.max-parallelism`, 200).
    pub max_parallelism: u32,
}

impl Default for AutoscalerSettings {
    fn default() -> Self {
        Self {
            utilization: 0.7,
            catch_up: Duration::from_secs(30 * 60),
            restart_time: Duration::from_secs(5 * 60),
            max_scale_down: 0.6,
            max_scale_up: 100_000.0,
            min_parallelism: 1,
            max_parallelism: 200,
        }
    }
}

/// What is known of one vertex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VertexLoad {
    /// Current parallelism.
    pub current: u32,
    /// The vertex's max parallelism (its key groups).
    pub key_groups: u32,
    /// Partitions of the source it reads, when it is a source and they are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// The rate it must sustain, records/s (the source's arrival rate).
    pub input_rate: f64,
    /// The backlog at the source, records.
    pub lag: f64,
    /// What it processes now, records/s over all subtasks.
    pub processing_rate: f64,
    /// Busy ratio, `(0, 1]` (`busyTimeMsPerSecond / 1000`).
    pub busy_ratio: f64,
}

/// Every intermediate value, so a human sees why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingDecision {
    /// `processing_rate / busy_ratio`.
    pub true_processing_rate: f64,
    /// `lag / catch_up`.
    pub catch_up_rate: f64,
    /// `input_rate · restart / catch_up`.
    pub restart_rate: f64,
    /// `input_rate / utilization`.
    pub utilization_rate: f64,
    /// The sum of the three.
    pub target_rate: f64,
    /// `target_rate / true_processing_rate`.
    pub scale_factor: f64,
    /// The factor within `[1 − max_scale_down, 1 + max_scale_up]`.
    pub capped_factor: f64,
    /// `ceil(capped_factor · current)`.
    pub raw: u32,
    /// Within the bounds.
    pub bounded: u32,
    /// The result.
    pub parallelism: u32,
    /// How the result was reached, in words.
    pub reason: String,
}

/// Why no decision can be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScalingError {
    /// An input is not a finite number in its range (named).
    #[error("{0}")]
    Invalid(String),
}

fn check(name: &str, v: f64, ok: bool, range: &str) -> Result<(), ScalingError> {
    if v.is_finite() && ok {
        Ok(())
    } else {
        Err(ScalingError::Invalid(format!(
            "{name} = {v} is not {range}"
        )))
    }
}

/// The target parallelism of one vertex (see the module docs for the formula). Pure: the same
/// inputs always give the same decision.
pub fn target_parallelism(
    v: &VertexLoad,
    s: &AutoscalerSettings,
) -> Result<ScalingDecision, ScalingError> {
    check("input_rate", v.input_rate, v.input_rate >= 0.0, ">= 0")?;
    check("lag", v.lag, v.lag >= 0.0, ">= 0")?;
    check(
        "processing_rate",
        v.processing_rate,
        v.processing_rate > 0.0,
        "> 0 (no throughput observed: cannot tell what a subtask can do)",
    )?;
    check(
        "busy_ratio",
        v.busy_ratio,
        v.busy_ratio > 0.0 && v.busy_ratio <= 1.0,
        "within (0, 1]",
    )?;
    check(
        "utilization",
        s.utilization,
        s.utilization > 0.0 && s.utilization <= 1.0,
        "within (0, 1]",
    )?;
    check(
        "max_scale_down",
        s.max_scale_down,
        (0.0..1.0).contains(&s.max_scale_down),
        "within [0, 1)",
    )?;
    check(
        "max_scale_up",
        s.max_scale_up,
        s.max_scale_up >= 0.0,
        ">= 0",
    )?;
    if v.current == 0 || v.key_groups == 0 {
        return Err(ScalingError::Invalid(format!(
            "current parallelism {} and key groups {} must be >= 1",
            v.current, v.key_groups
        )));
    }
    if s.min_parallelism == 0 || s.min_parallelism > s.max_parallelism {
        return Err(ScalingError::Invalid(format!(
            "min_parallelism {} must be within 1 ..= max_parallelism {}",
            s.min_parallelism, s.max_parallelism
        )));
    }
    if s.catch_up.is_zero() {
        return Err(ScalingError::Invalid("catch_up must be > 0".into()));
    }
    let catch_up = s.catch_up.as_secs_f64();
    let true_rate = v.processing_rate / v.busy_ratio;
    let catch_up_rate = v.lag / catch_up;
    let restart_rate = v.input_rate * s.restart_time.as_secs_f64() / catch_up;
    let utilization_rate = v.input_rate / s.utilization;
    let target_rate = catch_up_rate + restart_rate + utilization_rate;
    let factor = target_rate / true_rate;
    let capped = factor.clamp(1.0 - s.max_scale_down, 1.0 + s.max_scale_up);
    let raw_f = (capped * f64::from(v.current)).ceil();
    let raw = if raw_f >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        raw_f.max(0.0) as u32
    };
    let upper = s.max_parallelism.min(v.key_groups).max(1);
    let lower = s.min_parallelism.min(upper);
    let bounded = raw.clamp(lower, upper);
    let n = v.partitions.filter(|p| *p > 0).unwrap_or(v.key_groups);
    let mut aligned = bounded;
    let mut how = format!("ceil({capped:.3} × {}) = {raw}", v.current);
    if bounded != raw {
        how.push_str(&format!(
            ", bounded to {bounded} (within {lower} ..= {upper})"
        ));
    }
    let mut p = bounded;
    while p <= n / 2 && p <= upper {
        if n % p == 0 {
            aligned = p;
            break;
        }
        p += 1;
    }
    if aligned != bounded {
        let of = if v.partitions.is_some() {
            "partitions"
        } else {
            "key groups"
        };
        how.push_str(&format!(
            ", moved up to {aligned}, a divisor of the {n} {of}"
        ));
    }
    let mut result = aligned;
    if capped > 1.0 && result < v.current {
        how.push_str(&format!(
            "; a scale-up may not shrink the vertex below its current {}: kept",
            v.current
        ));
        result = v.current;
    } else if capped < 1.0 && result > v.current {
        how.push_str(&format!(
            "; a scale-down may not grow the vertex above its current {}: kept",
            v.current
        ));
        result = v.current;
    }
    let reason = format!(
        "true rate {true_rate:.1}/s = {:.1}/s ÷ busy {:.3}; target {target_rate:.1}/s = lag {:.0} / {catch_up:.0} s ({catch_up_rate:.1}) + {:.1}/s × restart {:.0} s / {catch_up:.0} s ({restart_rate:.1}) + {:.1}/s ÷ utilization {} ({utilization_rate:.1}); factor {factor:.3} → {capped:.3}; {how}; parallelism {} → {result}",
        v.processing_rate,
        v.busy_ratio,
        v.lag,
        v.input_rate,
        s.restart_time.as_secs_f64(),
        v.input_rate,
        s.utilization,
        v.current,
    );
    Ok(ScalingDecision {
        true_processing_rate: true_rate,
        catch_up_rate,
        restart_rate,
        utilization_rate,
        target_rate,
        scale_factor: factor,
        capped_factor: capped,
        raw,
        bounded,
        parallelism: result,
        reason,
    })
}
