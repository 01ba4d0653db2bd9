//! [`ConsumerGroupProbe`]: a consumer group's state and members (DescribeGroups).

use std::fmt;

use async_trait::async_trait;
use rb_core::{labels, ErrorKind, FactType, Observation, Probe, ProbeContext, ProbeError, Target};

use super::client::{GroupDescription, GroupState, KafkaClient};
use super::lag::{client_error, driver_timeout};
use crate::common::ProbeSite;

/// The probe id of [`ConsumerGroupProbe`].
pub const GROUP_PROBE_ID: &str = "kafka.consumer_group";

impl FactType for GroupDescription {
    const KIND: &'static str = "kafka.consumer_group";
}

/// A consumer group's state (`Empty`, `Stable`, `PreparingRebalance`, …) and member count.
///
/// Emits `kafka_consumergroup_members{group}` and `kafka_consumergroup_state{group,state}` (the
/// value is [`GroupState::code`]), and the [`GroupDescription`] as a fact. A group the coordinator
/// does not know, or reports `Dead`, is an error ([`ErrorKind::Rejected`], "unknown consumer
/// group"), never an empty healthy group.
pub struct ConsumerGroupProbe<C> {
    id: String,
    /// `<id>/<group>`: two group probes of two groups on one target never collide.
    name: String,
    target: Target,
    client: C,
    group: String,
}

impl<C> fmt::Debug for ConsumerGroupProbe<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerGroupProbe")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("group", &self.group)
            .finish()
    }
}

impl<C: KafkaClient> ConsumerGroupProbe<C> {
    /// The state of `group`, read through `client`.
    pub fn new(target: Target, client: C, group: impl Into<String>) -> Self {
        let group = group.into();
        Self {
            id: GROUP_PROBE_ID.to_owned(),
            name: format!("{GROUP_PROBE_ID}/{group}"),
            target,
            client,
            group,
        }
    }

    /// Use another probe id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self.name = format!("{}/{}", self.id, self.group);
        self
    }

    fn site(&self) -> ProbeSite<'_> {
        ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: self.client.bootstrap(),
        }
    }

    async fn read(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let site = self.site();
        if self.group.is_empty() {
            return Err(site.error(ErrorKind::Invalid, "empty consumer group id"));
        }
        let described = self
            .client
            .describe_group(&self.group, driver_timeout(ctx.remaining()))
            .await
            .map_err(|e| client_error(&site, &format!("describing group {}", self.group), e))?;
        let d = match described {
            Some(d) if d.state != GroupState::Dead => d,
            Some(_) => {
                return Err(site.error(
                    ErrorKind::Rejected,
                    format!(
                        "unknown consumer group {}: the coordinator reports it Dead",
                        self.group
                    ),
                ))
            }
            None => {
                return Err(site.error(
                    ErrorKind::Rejected,
                    format!("unknown consumer group {}: no broker lists it", self.group),
                ))
            }
        };
        let g = labels(&[("group", self.group.as_str())]);
        let obs = Observation::new(&self.id, &self.target.name, ctx.now())
            .sample("kafka_consumergroup_members", g, d.members.len() as f64)
            .sample(
                "kafka_consumergroup_state",
                labels(&[("group", self.group.as_str()), ("state", d.state.as_str())]),
                d.state.code(),
            );
        Ok(obs.fact(&d))
    }
}

#[async_trait]
impl<C: KafkaClient> Probe for ConsumerGroupProbe<C> {
    fn id(&self) -> &str {
        &self.id
    }

    /// `kafka.consumer_group/<group>`: the engine keys metric series and detection state by it.
    fn name(&self) -> &str {
        &self.name
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        self.site().within(ctx, self.read(ctx)).await
    }
}
