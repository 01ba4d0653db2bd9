//! Pushed signals: Alertmanager alerts and manual reports enter Detect through the same path as probes.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::Error;
use crate::observation::facts::{Alert, ManualReport};

/// A signal pushed into the engine ([`crate::Engine::ingest`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Signal {
    /// An Alertmanager alert (firing or resolved).
    Alert(Alert),
    /// A manual report: a support agent or user filed a ticket.
    Manual {
        /// The playbook the reporter chose.
        playbook: String,
        /// The report.
        report: ManualReport,
    },
}

impl Signal {
    /// A manual report for `playbook`.
    pub fn manual(
        playbook: impl Into<String>,
        ticket: impl Into<String>,
        reporter: impl Into<String>,
        summary: impl Into<String>,
    ) -> Self {
        Signal::Manual {
            playbook: playbook.into(),
            report: ManualReport {
                ticket: ticket.into(),
                reporter: reporter.into(),
                summary: summary.into(),
            },
        }
    }

    /// Parse an Alertmanager webhook body (payload version 4) into one signal per alert.
    ///
    /// ```
    /// let body = br#"{"version":"4","groupKey":"{}:{alertname=\"FlinkJobRestarting\"}","truncatedAlerts":0,
    ///   "status":"firing","receiver":"rb","groupLabels":{},"commonLabels":{},"commonAnnotations":{},
    ///   "externalURL":"http://am:9093","alerts":[{"status":"firing",
    ///   "labels":{"alertname":"FlinkJobRestarting","job":"orders"},"annotations":{"summary":"restarting"},
    ///   "startsAt":"2026-11-25T07:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"abc"}]}"#;
    /// let signals = rb_core::Signal::from_alertmanager_webhook(body).unwrap();
    /// assert_eq!(signals.len(), 1);
    /// ```
    pub fn from_alertmanager_webhook(body: &[u8]) -> Result<Vec<Signal>, Error> {
        let bad = |message: String| Error::Signal {
            source_name: "alertmanager webhook".into(),
            message,
        };
        let payload: WebhookPayload = serde_json::from_slice(body)
            .map_err(|e| bad(format!("not a v4 webhook payload: {e}")))?;
        if payload.version != "4" {
            return Err(bad(format!(
                "unsupported webhook version {:?} (expected \"4\")",
                payload.version
            )));
        }
        payload
            .alerts
            .into_iter()
            .map(|a| {
                let name = a.labels.get("alertname").cloned().ok_or_else(|| {
                    bad(format!("alert {} has no alertname label", a.fingerprint))
                })?;
                if a.status != "firing" && a.status != "resolved" {
                    return Err(bad(format!("alert {name} has status {:?}", a.status)));
                }
                Ok(Signal::Alert(Alert {
                    name,
                    status: a.status,
                    fingerprint: a.fingerprint,
                    labels: a.labels,
                    annotations: a.annotations,
                    starts_at: a.starts_at,
                    silenced_by: Vec::new(),
                }))
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
struct WebhookPayload {
    version: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    fingerprint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_webhooks_are_errors() {
        assert!(Signal::from_alertmanager_webhook(b"{not json").is_err());
        assert!(Signal::from_alertmanager_webhook(br#"{"version":"3","alerts":[]}"#).is_err());
        let no_name =
            br#"{"version":"4","alerts":[{"status":"firing","labels":{},"fingerprint":"f"}]}"#;
        let e = Signal::from_alertmanager_webhook(no_name).unwrap_err();
        assert!(e.to_string().contains("alertname"), "{e}");
    }
}
