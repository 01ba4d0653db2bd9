//! PagerDuty Events API v2.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::escalation::EscalationReason;
use rb_core::{ErrorKind, Notification, Notifier, NotifyError, Secret};
use rb_probes::transport::{HttpClient, ReqwestClient};
use serde_json::{json, Value};

use super::slack::reason_words;
use super::{post_json, Delivery};

/// The PagerDuty dedup key of an incident: `rb/<incident id>` (at most 255 characters, PagerDuty's
/// limit). Every page of one incident updates the same PagerDuty alert; acknowledging or resolving it
/// uses the same key.
pub fn dedup_key(incident: &str) -> String {
    format!("rb/{incident}").chars().take(255).collect()
}

/// Sends pages as PagerDuty Events API v2 events (`POST /v2/enqueue`). [`Notifier::notify`] triggers
/// (severity `critical` for a failed or interrupted remediation, a recovery that did not come or a
/// missed SLA; `error` for a refused step or a playbook that needs a human); [`acknowledge`] and
/// [`resolve`] close the loop with the same dedup key. The routing (integration) key is a secret.
///
/// [`acknowledge`]: PagerDutyNotifier::acknowledge
/// [`resolve`]: PagerDutyNotifier::resolve
#[derive(Debug, Clone)]
pub struct PagerDutyNotifier {
    client: Arc<dyn HttpClient>,
    routing_key: Secret,
    source: String,
    delivery: Delivery,
}

/// The production endpoint's base URL.
pub const EVENTS_BASE_URL: &str = "https://events.pagerduty.com";

impl PagerDutyNotifier {
    /// A notifier sending to `client` (base `https://events.pagerduty.com`) with this routing key.
    pub fn new(client: Arc<dyn HttpClient>, routing_key: Secret) -> Self {
        Self {
            client,
            routing_key,
            source: "rb".into(),
            delivery: Delivery::default(),
        }
    }

    /// A notifier for the production endpoint with a 10 s timeout per request.
    pub fn production(routing_key: Secret) -> Result<Self, NotifyError> {
        let client = ReqwestClient::builder(EVENTS_BASE_URL)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| NotifyError::new("pagerduty", ErrorKind::Invalid, e.message))?;
        Ok(Self::new(Arc::new(client), routing_key))
    }

    /// `payload.source` (default `rb`): the host or service that raises the alert.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Retry rules.
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// The `payload` of the trigger for `n` (the routing key is added when sending).
    pub fn payload(&self, n: &Notification) -> Value {
        let severity = match n.reason {
            EscalationReason::ActionFailed
            | EscalationReason::RecoveryTimedOut
            | EscalationReason::StepInterrupted
            | EscalationReason::SlaMissed => "critical",
            EscalationReason::ActionRefused | EscalationReason::NeedsHuman => "error",
        };
        let summary: String = format!(
            "[{}] {}: {} — {}",
            n.role,
            n.playbook,
            reason_words(&n.reason),
            n.message
        )
        .chars()
        .take(1024)
        .collect();
        json!({
            "summary": summary,
            "source": self.source,
            "severity": severity,
            "component": n.playbook,
            "group": n.role,
            "class": serde_json::to_value(&n.reason).unwrap_or(Value::Null),
            "custom_details": {
                "incident": n.incident,
                "playbook": n.playbook,
                "role": n.role,
                "channel": n.channel,
                "attempt": n.attempt,
                "ack_due": n.ack_due.rfc3339(),
                "message": n.message,
            },
        })
    }

    async fn send(
        &self,
        action: &str,
        dedup: &str,
        payload: Option<Value>,
    ) -> Result<String, NotifyError> {
        let mut event = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": action,
            "dedup_key": dedup,
        });
        if let (Some(p), Some(o)) = (payload, event.as_object_mut()) {
            o.insert("payload".into(), p);
        }
        let endpoint = self.client.url("/v2/enqueue");
        let resp = post_json(
            &*self.client,
            "/v2/enqueue",
            &event,
            "pagerduty",
            &endpoint,
            Some(self.routing_key.expose()),
            &self.delivery,
        )
        .await?;
        // 202 {"status":"success","message":"Event processed","dedup_key":…}
        let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        Ok(answer["dedup_key"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| dedup.to_string()))
    }

    /// Acknowledge the alert of `dedup_key` (see [`dedup_key`]).
    pub async fn acknowledge(&self, dedup_key: &str) -> Result<(), NotifyError> {
        self.send("acknowledge", dedup_key, None).await.map(|_| ())
    }

    /// Resolve the alert of `dedup_key` (see [`dedup_key`]).
    pub async fn resolve(&self, dedup_key: &str) -> Result<(), NotifyError> {
        self.send("resolve", dedup_key, None).await.map(|_| ())
    }
}

#[async_trait]
impl Notifier for PagerDutyNotifier {
    /// Trigger, acknowledge or resolve, as the engine's notification says, keyed by
    /// [`dedup_key`] of the incident: a page the engine resolves is resolved in PagerDuty too.
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let key = dedup_key(&n.incident);
        match n.action {
            rb_core::escalation::NotifyAction::Acknowledge => self.acknowledge(&key).await,
            rb_core::escalation::NotifyAction::Resolve => self.resolve(&key).await,
            _ => self
                .send("trigger", &key, Some(self.payload(n)))
                .await
                .map(|_| ()),
        }
    }
}
