//! The rdkafka adapter of [`PartitionAdmin`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::ErrorKind;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{AdminError, PartitionAdmin};

/// [`PartitionAdmin`] over rdkafka's `AdminClient` (librdkafka): metadata for the partition count,
/// `CreatePartitions` to add.
#[derive(Clone)]
pub struct RdKafkaAdmin {
    admin: Arc<AdminClient<DefaultClientContext>>,
    bootstrap: String,
    timeout: Duration,
}

impl fmt::Debug for RdKafkaAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdKafkaAdmin")
            .field("bootstrap", &self.bootstrap)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RdKafkaAdmin {
    /// An admin client for `bootstrap` (`host:port,…`), with extra librdkafka settings (`security.protocol`,
    /// `sasl.*` — give passwords from a [`rb_core::Secret`] at this point only) and a per-call timeout.
    pub fn new(
        bootstrap: &str,
        settings: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Self, AdminError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", bootstrap);
        for (k, v) in settings {
            cfg.set(*k, *v);
        }
        let admin: AdminClient<DefaultClientContext> = cfg.create().map_err(|e| AdminError {
            kind: ErrorKind::Invalid,
            message: format!("cannot create the Kafka admin client: {}", redact(&e)),
        })?;
        Ok(Self {
            admin: Arc::new(admin),
            bootstrap: bootstrap.to_string(),
            timeout,
        })
    }
}

/// librdkafka messages do not carry passwords; the config error might name a key, not a value.
fn redact(e: &KafkaError) -> String {
    e.to_string()
}

fn code_kind(code: RDKafkaErrorCode) -> ErrorKind {
    use RDKafkaErrorCode as C;
    match code {
        C::UnknownTopicOrPartition | C::UnknownTopic => ErrorKind::Invalid,
        C::InvalidPartitions | C::InvalidReplicaAssignment | C::InvalidRequest => {
            ErrorKind::Invalid
        }
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication => ErrorKind::Unauthorized,
        C::RequestTimedOut | C::OperationTimedOut | C::MessageTimedOut => ErrorKind::Timeout,
        C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve => ErrorKind::Unreachable,
        C::UnsupportedVersion | C::InvalidConfig => ErrorKind::Rejected,
        _ => ErrorKind::Rejected,
    }
}

fn kafka_error(what: &str, e: &KafkaError) -> AdminError {
    let kind = match e {
        KafkaError::AdminOp(code) => code_kind(*code),
        other => other
            .rdkafka_error_code()
            .map(code_kind)
            .unwrap_or(ErrorKind::Other),
    };
    AdminError {
        kind,
        message: format!("{what}: {e}"),
    }
}

#[async_trait]
impl PartitionAdmin for RdKafkaAdmin {
    fn endpoint(&self) -> &str {
        &self.bootstrap
    }

    async fn partition_count(&self, topic: &str) -> Result<Option<u32>, AdminError> {
        let admin = self.admin.clone();
        let timeout = self.timeout;
        // Metadata of all topics, not of this one: a request naming a missing topic can create it
        // on a broker (or mock) with auto-creation on — reading must never create.
        let md = tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout))
            .await
            .map_err(|e| AdminError {
                kind: ErrorKind::Other,
                message: format!("metadata task failed: {e}"),
            })?
            .map_err(|e| kafka_error(&format!("metadata of {topic}"), &e))?;
        let Some(tm) = md.topics().iter().find(|x| x.name() == topic) else {
            return Ok(None);
        };
        if let Some(err) = tm.error() {
            let code = RDKafkaErrorCode::from(err);
            if matches!(
                code,
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
            ) {
                return Ok(None);
            }
            return Err(AdminError {
                kind: code_kind(code),
                message: format!("metadata of {topic}: {code}"),
            });
        }
        Ok(Some(tm.partitions().len() as u32))
    }

    async fn create_partitions(&self, topic: &str, total: u32) -> Result<(), AdminError> {
        let opts = AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout));
        let np = NewPartitions::new(topic, total as usize);
        let results = self
            .admin
            .create_partitions([&np], &opts)
            .await
            .map_err(|e| kafka_error(&format!("CreatePartitions {topic} → {total}"), &e))?;
        for r in results {
            if let Err((t, code)) = r {
                return Err(AdminError {
                    kind: code_kind(code),
                    message: format!("CreatePartitions {t} → {total}: {code}"),
                });
            }
        }
        Ok(())
    }
}
