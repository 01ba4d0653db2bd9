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

    /// Parse the body of Alertmanager's `GET /api/v2/alerts` (an array of alerts) into one signal per
    /// alert. Every alert the API lists is firing (`status.state` is `active`, `suppressed` or
    /// `unprocessed`); a silenced one carries its silence ids in [`Alert::silenced_by`], so a symptom
    /// does not fire on it. Errors name the JSON path that is wrong.
    ///
    /// ```
    /// let body = br#"[{"labels":{"alertname":"MinioDiskFull","instance":"minio-0:9000"},
    ///   "annotations":{"summary":"free capacity below 10%"},"startsAt":"2024-05-01T10:00:00.000Z",
    ///   "endsAt":"2024-05-01T10:09:00.000Z","updatedAt":"2024-05-01T10:05:00.000Z","fingerprint":"a1b2c3d4e5f60718",
    ///   "receivers":[{"name":"rb"}],"status":{"state":"suppressed","silencedBy":["5f1e"],"inhibitedBy":[],"mutedBy":[]}}]"#;
    /// let signals = rb_core::Signal::from_alertmanager_v2_alerts(body).unwrap();
    /// let rb_core::Signal::Alert(a) = &signals[0] else { unreachable!() };
    /// assert!(a.is_firing() && a.is_silenced());
    /// ```
    pub fn from_alertmanager_v2_alerts(body: &[u8]) -> Result<Vec<Signal>, Error> {
        let bad = |message: String| Error::Signal {
            source_name: "alertmanager /api/v2/alerts".into(),
            message,
        };
        let alerts: Vec<V2Alert> = serde_json::from_slice(body)
            .map_err(|e| bad(format!("not a list of v2 alerts: {e}")))?;
        alerts
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let name = a.labels.get("alertname").cloned().ok_or_else(|| {
                    bad(format!(
                        "/{i}/labels: alert {} has no alertname",
                        a.fingerprint
                    ))
                })?;
                match a.status.state.as_str() {
                    "active" | "suppressed" | "unprocessed" => {}
                    other => {
                        return Err(bad(format!(
                            "/{i}/status/state: alert {name} has state {other:?}"
                        )))
                    }
                }
                Ok(Signal::Alert(Alert {
                    name,
                    status: "firing".into(),
                    fingerprint: a.fingerprint,
                    labels: a.labels,
                    annotations: a.annotations.unwrap_or_default(),
                    starts_at: a.starts_at,
                    silenced_by: a.status.silenced_by,
                }))
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2Alert {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    fingerprint: String,
    status: V2Status,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2Status {
    state: String,
    #[serde(default)]
    silenced_by: Vec<String>,
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
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn v2_alerts_carry_their_silences() {
        // shaped like Alertmanager 0.34's gettableAlert
        let body = br#"[
          {"annotations":{"summary":"MinIO usable free capacity below 10%"},
           "endsAt":"2024-05-01T10:09:00.000Z","fingerprint":"a1b2c3d4e5f60718",
           "receivers":[{"name":"runbook-sdk"}],"startsAt":"2024-05-01T10:00:00.000Z",
           "status":{"inhibitedBy":[],"mutedBy":[],"silencedBy":[],"state":"active"},
           "updatedAt":"2024-05-01T10:05:00.000Z","generatorURL":"http://prometheus:9090/graph",
           "labels":{"alertname":"MinioDiskFull","instance":"minio-0:9000","severity":"critical"}},
          {"annotations":null,"fingerprint":"0f0e0d0c0b0a0908","startsAt":"2024-05-01T10:01:00.000Z",
           "status":{"inhibitedBy":[],"silencedBy":["2c6d0b7a-silence"],"state":"suppressed"},
           "labels":{"alertname":"MinioDiskFull","instance":"minio-1:9000"}}
        ]"#;
        let s = Signal::from_alertmanager_v2_alerts(body).unwrap();
        let alerts: Vec<&Alert> = s
            .iter()
            .map(|s| match s {
                Signal::Alert(a) => a,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(alerts.len(), 2);
        assert!(alerts[0].is_firing() && !alerts[0].is_silenced());
        assert_eq!(
            alerts[0].annotations["summary"],
            "MinIO usable free capacity below 10%"
        );
        assert!(alerts[1].is_firing() && alerts[1].is_silenced());
        assert_eq!(alerts[1].silenced_by, ["2c6d0b7a-silence"]);
        let e = Signal::from_alertmanager_v2_alerts(
            br#"[{"labels":{"alertname":"A"},"status":{"state":"weird"}}]"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/0/status/state"), "{e}");
        let e = Signal::from_alertmanager_v2_alerts(br#"{"alerts":[]}"#).unwrap_err();
        assert!(e.to_string().contains("not a list"), "{e}");
    }

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
