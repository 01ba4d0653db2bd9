//! A generic JSON webhook.

use std::sync::Arc;

use async_trait::async_trait;
use rb_core::{Notification, Notifier, NotifyError};
use rb_probes::transport::HttpClient;
use serde_json::{json, Value};

use super::{post_json, Delivery};

/// Posts each page as JSON to `path` on `client` (authentication, TLS and timeout are the client's):
/// the [`Notification`] fields (`incident`, `playbook`, `role`, `channel`, `reason`, `message`,
/// `attempt`, `ack_due` in epoch milliseconds) plus `ack_due_rfc3339`. Any 2xx is delivered.
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    client: Arc<dyn HttpClient>,
    path: String,
    channel: String,
    delivery: Delivery,
}

impl WebhookNotifier {
    /// A notifier posting to `path` on `client`.
    pub fn new(client: Arc<dyn HttpClient>, path: impl Into<String>) -> Self {
        Self {
            client,
            path: path.into(),
            channel: "webhook".into(),
            delivery: Delivery::default(),
        }
    }

    /// The name used in errors and logs.
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channel = name.into();
        self
    }

    /// Retry rules.
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// The body posted for `n`.
    pub fn body(n: &Notification) -> Value {
        let mut v = serde_json::to_value(n).unwrap_or_else(|_| json!({}));
        if let Some(o) = v.as_object_mut() {
            o.insert("ack_due_rfc3339".into(), json!(n.ack_due.rfc3339()));
        }
        v
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let endpoint = rb_core::secret::redact_url(&self.client.url(&self.path));
        post_json(
            &*self.client,
            &self.path,
            &Self::body(n),
            &self.channel,
            &endpoint,
            None,
            &self.delivery,
        )
        .await
        .map(|_| ())
    }
}
