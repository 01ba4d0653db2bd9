//! Kafka: add partitions to a topic — destructive and irreversible, so a human always approves.
//!
//! | remediation | id | risk | idempotent | reversible | requires a human | exact calls |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | [`AddPartitions`] | `kafka.add_partitions` | **destructive** | yes (asks for a total, not an increment: a second run finds the total reached) | **no** | **yes**, every plan, whatever the approver and the policy | Metadata request for the topic (plan, verify); `CreatePartitions topic → total` (apply) |
//!
//! **Why destructive.** Partitions cannot be removed again. The default partitioner maps a key to
//! `hash(key) % partitions`: after the change most keys go to a different partition than before, so
//! per-key ordering across the change is lost, and whatever relies on keys living in a given partition
//! breaks (co-partitioned joins, Kafka Streams and Flink keyed state, compacted topics read by key).
//! Consumer groups rebalance. Hence [`Risk::Destructive`], an irreversible plan, and
//! [`Remediation::requires_human`]: an automatic approver's grant is refused by the engine.
//!
//! **Which topic.** [`ActionContext::label`]`("topic")` (the incident key or the finding's offending
//! series). **How many.** [`PartitionGoal`]: a total, a factor of the current count, or an increment,
//! never above [`AddPartitions::max_partitions`]. Already at or above the goal:
//! [`Plan::nothing_to_do`]. No such topic: [`ErrorKind::Invalid`].
//!
//! **Verify** (within 1 minute): the metadata shows the planned total.
//!
//! **Errors.** A `CreatePartitions` that times out is [`ErrorKind::OutcomeUnknown`] (the broker may
//! have done it); one answered `INVALID_PARTITIONS` when the topic already has the planned total
//! (an earlier lost answer) is success. Authorization failures are [`ErrorKind::Unauthorized`].
//!
//! **Seam.** The logic talks to a [`PartitionAdmin`]; [`RdKafkaAdmin`] is the rdkafka adapter
//! (librdkafka's mock cluster has no `CreatePartitions`: the adapter is tested on a real broker,
//! the logic through the trait). **Least privilege:** `ALTER` on the topic (`Describe` to read it).

mod admin;

pub use admin::RdKafkaAdmin;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::{
    ActionContext, ErrorKind, Outcome, Plan, Remediation, RemediationError, Risk, Target,
    Verification,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Why an admin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct AdminError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// What was wrong.
    pub message: String,
}

/// The two admin calls adding partitions needs.
#[async_trait]
pub trait PartitionAdmin: Send + Sync + Debug {
    /// The bootstrap servers, for errors.
    fn endpoint(&self) -> &str;

    /// The topic's partition count, `None` when there is no such topic.
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>, AdminError>;

    /// Grow the topic to `total` partitions.
    async fn create_partitions(&self, topic: &str, total: u32) -> Result<(), AdminError>;
}

/// How many partitions the topic should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionGoal {
    /// Exactly this many in total.
    Total(u32),
    /// The current count times this.
    Factor(u32),
    /// The current count plus this.
    Add(u32),
}

impl PartitionGoal {
    /// The total wanted from `current`, capped at `max`.
    pub fn total(self, current: u32, max: u32) -> u32 {
        let want = match self {
            PartitionGoal::Total(n) => n,
            PartitionGoal::Factor(f) => current.saturating_mul(f),
            PartitionGoal::Add(k) => current.saturating_add(k),
        };
        want.min(max)
    }
}

/// Add partitions to the incident's topic. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct AddPartitions {
    admin: Arc<dyn PartitionAdmin>,
    target: Target,
    goal: PartitionGoal,
    max_partitions: u32,
}

impl AddPartitions {
    /// Add partitions through `admin` on the cluster known as `target`, toward `goal` (at most 1,000
    /// partitions in total unless [`AddPartitions::max_partitions`] says otherwise).
    pub fn new(admin: Arc<dyn PartitionAdmin>, target: Target, goal: PartitionGoal) -> Self {
        Self {
            admin,
            target,
            goal,
            max_partitions: 1000,
        }
    }

    /// Never plan more than `n` partitions in total.
    pub fn max_partitions(mut self, n: u32) -> Self {
        self.max_partitions = n;
        self
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> RemediationError {
        RemediationError::new(
            "kafka.add_partitions",
            &self.target.name,
            self.admin.endpoint(),
            kind,
            message,
        )
    }

    async fn count(&self, topic: &str) -> Result<u32, RemediationError> {
        match self.admin.partition_count(topic).await {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(self.err(ErrorKind::Invalid, format!("no topic {topic}"))),
            Err(e) => Err(self.err(e.kind, format!("reading {topic}: {}", e.message))),
        }
    }
}

fn topic_of(plan: &Plan) -> Option<(String, u32)> {
    Some((
        plan.params["topic"].as_str()?.to_string(),
        u32::try_from(plan.params["to"].as_u64()?).ok()?,
    ))
}

#[async_trait]
impl Remediation for AddPartitions {
    fn id(&self) -> &str {
        "kafka.add_partitions"
    }

    fn risk(&self) -> Risk {
        Risk::Destructive
    }

    /// It asks for a total: a second run finds it reached.
    fn idempotent(&self) -> bool {
        true
    }

    fn requires_human(&self) -> bool {
        true
    }

    fn verify_within(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let topic = ctx.label("topic").ok_or_else(|| {
            self.err(
                ErrorKind::Invalid,
                "no `topic` label in the incident key or the finding: which topic is unknown",
            )
        })?;
        let current = self.count(topic).await?;
        let to = self.goal.total(current, self.max_partitions);
        if to <= current {
            return Ok(Plan::nothing_to_do(
                self.id(),
                format!(
                    "{topic} has {current} partitions; the goal {:?} (at most {}) asks for no more",
                    self.goal, self.max_partitions
                ),
            ));
        }
        Ok(Plan::new(
            self.id(),
            vec![self.target.clone()],
            format!(
                "CreatePartitions {topic}: {current} → {to}. IRREVERSIBLE: partitions cannot be removed. \
                 Keys are re-mapped (hash(key) % {to} instead of % {current}): records of one key may land \
                 in another partition than before, so per-key order across the change is lost and \
                 co-partitioned joins or keyed state (Kafka Streams, Flink) break; consumer groups rebalance."
            ),
        )
        .expect(format!(
            "{topic} has {to} partitions; consumers can spread over {to} instead of {current}"
        ))
        .params(json!({ "topic": topic, "from": current, "to": to }))
        .risk(Risk::Destructive)
        .irreversible())
    }

    async fn apply(&self, plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let (topic, to) = topic_of(plan)
            .ok_or_else(|| self.err(ErrorKind::Invalid, "the plan has no topic / to"))?;
        match self.admin.create_partitions(&topic, to).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::Timeout => {
                return Err(self
                    .err(
                        ErrorKind::OutcomeUnknown,
                        format!(
                            "CreatePartitions {topic} → {to} was sent but not answered in time ({}): it may have happened",
                            e.message
                        ),
                    )
                    .with_details(json!({ "topic": topic, "to": to })))
            }
            Err(e) => {
                // an earlier try whose answer was lost may already have done it
                if let Ok(Some(n)) = self.admin.partition_count(&topic).await {
                    if n == to {
                        return Ok(Outcome::new(format!("{topic} already has {to} partitions"))
                            .details(json!({ "topic": topic, "partitions": to })));
                    }
                }
                return Err(self
                    .err(e.kind, format!("CreatePartitions {topic} → {to}: {}", e.message))
                    .with_details(json!({ "topic": topic, "to": to })));
            }
        }
        Ok(Outcome::new(format!("{topic} grown to {to} partitions"))
            .details(json!({ "topic": topic, "partitions": to })))
    }

    async fn verify(
        &self,
        plan: &Plan,
        _outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let (topic, to) = topic_of(plan)
            .ok_or_else(|| self.err(ErrorKind::Invalid, "the plan has no topic / to"))?;
        let n = self.count(&topic).await?;
        Ok(if n == to {
            Verification::Succeeded {
                evidence: format!("{topic} has {n} partitions"),
            }
        } else {
            Verification::Inconclusive {
                why: format!("{topic} shows {n} partitions, {to} planned"),
            }
        })
    }
}
