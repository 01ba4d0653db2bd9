//! Slack incoming webhooks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::escalation::EscalationReason;
use rb_core::{ErrorKind, Notification, Notifier, NotifyError, Secret};
use rb_probes::transport::{HttpClient, ReqwestClient};
use serde_json::{json, Value};

use super::{post_json, split_url, Delivery};

/// Posts pages to a Slack incoming webhook: `POST /services/T…/B…/…` with `{"text", "blocks"}`;
/// Slack answers 200 `ok`, or 400 `invalid_payload` / `no_text`, 403 `invalid_token`, 404
/// `no_service`, 410 `channel_is_archived`, 429 with `Retry-After`. The webhook path is a secret.
#[derive(Debug, Clone)]
pub struct SlackNotifier {
    client: Arc<dyn HttpClient>,
    path: Secret,
    channel: String,
    delivery: Delivery,
}

impl SlackNotifier {
    /// A notifier posting to `path` (`/services/T…/B…/…`) on `client` (base `https://hooks.slack.com`).
    pub fn new(client: Arc<dyn HttpClient>, path: Secret) -> Self {
        Self {
            client,
            path,
            channel: "slack".into(),
            delivery: Delivery::default(),
        }
    }

    /// A notifier for the full webhook URL, with a 10 s timeout per request.
    pub fn from_url(url: &Secret) -> Result<Self, NotifyError> {
        let invalid = |m: &str| NotifyError::new("slack", ErrorKind::Invalid, m);
        let (base, path) = split_url(url.expose())
            .ok_or_else(|| invalid("the webhook URL has no scheme (https://hooks.slack.com/…)"))?;
        let client = ReqwestClient::builder(base)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| invalid(&e.message))?;
        Ok(Self::new(Arc::new(client), Secret::new(path)))
    }

    /// The name used in errors and logs (`slack:#data-ops`).
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channel = name.into();
        self
    }

    /// Retry rules.
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// The message posted for `n`: a `text` (what notifications and old clients show) and one
    /// `section` block with the same content in mrkdwn.
    pub fn message(n: &Notification) -> Value {
        let reason = reason_words(&n.reason);
        let text = format!(
            "[rb] {reason}: {} — {} (incident {}, page {} to {}, acknowledge by {})",
            n.playbook, n.message, n.incident, n.attempt, n.role, n.ack_due
        );
        let md = format!(
            "*{reason}* — `{}`\n{}\n_incident_ `{}` · _page_ {} to *{}* · _acknowledge by_ {}",
            n.playbook, n.message, n.incident, n.attempt, n.role, n.ack_due
        );
        json!({
            "text": text,
            "blocks": [ { "type": "section", "text": { "type": "mrkdwn", "text": md } } ],
        })
    }
}

pub(crate) fn reason_words(r: &EscalationReason) -> &'static str {
    match r {
        EscalationReason::ActionFailed => "a remediation failed",
        EscalationReason::ActionRefused => "a remediation was refused",
        EscalationReason::RecoveryTimedOut => "no recovery in time",
        EscalationReason::StepInterrupted => "a step was interrupted",
        EscalationReason::SlaMissed => "page not acknowledged in time",
        EscalationReason::NeedsHuman => "a human must act",
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        post_json(
            &*self.client,
            self.path.expose(),
            &Self::message(n),
            &self.channel,
            &format!("{}/[redacted]", self.client.base_url()),
            Some(self.path.expose()),
            &self.delivery,
        )
        .await
        .map(|_| ())
    }
}
