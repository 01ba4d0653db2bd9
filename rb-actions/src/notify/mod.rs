//! Notifiers: where the engine's pages go.
//!
//! | notifier | endpoint | body | success |
//! | --- | --- | --- | --- |
//! | [`SlackNotifier`] | `POST <incoming webhook URL>` | `{"text": …, "blocks": [section]}` | 200 `ok` |
//! | [`PagerDutyNotifier`] | `POST https://events.pagerduty.com/v2/enqueue` | Events API v2: `routing_key`, `event_action` (`trigger` from `notify`; [`PagerDutyNotifier::acknowledge`] / [`PagerDutyNotifier::resolve`]), `dedup_key` ([`dedup_key`] of the incident id), `payload.{summary, source, severity, component, group, class, custom_details}` | 202 `{status, message, dedup_key}` |
//! | [`WebhookNotifier`] | `POST <your URL>` | the [`Notification`](rb_core::Notification) as JSON plus `ack_due_rfc3339` | any 2xx |
//!
//! **Delivery** ([`Delivery`]): every request is bounded by the HTTP client's timeout (build the
//! [`ReqwestClient`](rb_probes::transport::ReqwestClient) with the one you want; the `from_url`
//! constructors use 10 s). A 429 or a 5xx answer, a refused connection or a timeout is tried again
//! with exponential backoff (1 s, 2 s, 4 s … capped at 30 s; a `Retry-After` header wins, capped the
//! same), up to [`Delivery::attempts`] tries — so a timed-out page may arrive twice (PagerDuty folds
//! duplicates by `dedup_key`; Slack shows both). Any other 4xx is not retried: 401/403 are
//! [`ErrorKind::Unauthorized`](rb_core::ErrorKind::Unauthorized), the rest
//! [`ErrorKind::Invalid`](rb_core::ErrorKind::Invalid), with the service's own words (`invalid_payload`,
//! PagerDuty's `errors`) in the message. After the last try: the last error's kind
//! ([`ErrorKind::Rejected`](rb_core::ErrorKind::Rejected) for statuses, `Unreachable`, `Timeout`).
//!
//! **Secrets.** A Slack webhook URL and a PagerDuty routing key are [`Secret`](rb_core::Secret)s: never
//! in `Debug`, in error messages (the webhook path is replaced by `[redacted]`), or logs.

mod pagerduty;
mod slack;
mod webhook;

pub use pagerduty::{dedup_key, PagerDutyNotifier};
pub use slack::SlackNotifier;
pub use webhook::WebhookNotifier;

use std::time::Duration;

use rb_core::{ErrorKind, NotifyError};
use rb_probes::transport::{HttpClient, HttpRequest, HttpResponse, Method, TransportError};

/// How hard a notifier tries to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second try; doubled for each further one.
    pub first_delay: Duration,
    /// The longest wait between tries (a `Retry-After` header is capped to it too).
    pub max_delay: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Delivery {
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .first_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)));
        retry_after.unwrap_or(backoff).min(self.max_delay)
    }
}

/// One failed try: the error, and whether another may succeed.
struct Failure {
    error: NotifyError,
    retry: bool,
    retry_after: Option<Duration>,
}

/// POST `body` to `path` with the retry rules of [`Delivery`]; `secret` (a webhook path) is scrubbed
/// from every message.
pub(crate) async fn post_json(
    client: &dyn HttpClient,
    path: &str,
    body: &serde_json::Value,
    channel: &str,
    endpoint: &str,
    secret: Option<&str>,
    delivery: &Delivery,
) -> Result<HttpResponse, NotifyError> {
    let attempts = delivery.attempts.max(1);
    let mut last: Option<NotifyError> = None;
    for i in 0..attempts {
        let request = HttpRequest::json(Method::Post, path, body);
        let failure = match client.send(request).await {
            Ok(resp) if resp.is_success() => return Ok(resp),
            Ok(resp) => status_failure(&resp, channel, endpoint, secret),
            Err(e) => transport_failure(&e, channel, endpoint, secret),
        };
        if !failure.retry || i + 1 == attempts {
            let mut error = failure.error;
            if failure.retry {
                error.message = format!("after {attempts} tries: {}", error.message);
            }
            return Err(error);
        }
        let wait = delivery.delay(i, failure.retry_after);
        tracing::info!(channel, error = %failure.error, "delivery failed; trying again in {wait:?}");
        last = Some(failure.error);
        tokio::time::sleep(wait).await;
    }
    Err(last.unwrap_or_else(|| NotifyError::new(channel, ErrorKind::Other, "no try was made")))
}

fn scrub(s: String, secret: Option<&str>) -> String {
    match secret {
        Some(x) if !x.is_empty() => s.replace(x, "[redacted]"),
        _ => s,
    }
}

fn status_failure(
    resp: &HttpResponse,
    channel: &str,
    endpoint: &str,
    secret: Option<&str>,
) -> Failure {
    let (kind, retry) = match resp.status {
        429 => (ErrorKind::Rejected, true),
        s if s >= 500 => (ErrorKind::Rejected, true),
        401 | 403 => (ErrorKind::Unauthorized, false),
        _ => (ErrorKind::Invalid, false),
    };
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let message = scrub(
        format!(
            "POST {endpoint} answered HTTP {}: {}",
            resp.status,
            resp.snippet(500)
        ),
        secret,
    );
    Failure {
        error: NotifyError::new(channel, kind, message),
        retry,
        retry_after,
    }
}

fn transport_failure(
    e: &TransportError,
    channel: &str,
    endpoint: &str,
    secret: Option<&str>,
) -> Failure {
    let retry = !matches!(e, TransportError::Invalid(_));
    let kind = match e {
        TransportError::Other(_) | TransportError::Body(_) => ErrorKind::Unreachable,
        other => other.kind(),
    };
    Failure {
        error: NotifyError::new(
            channel,
            kind,
            scrub(format!("POST {endpoint}: {e}"), secret),
        ),
        retry,
        retry_after: None,
    }
}

/// Split `scheme://host[:port]/path?query` into the base URL and the path (with query).
pub(crate) fn split_url(url: &str) -> Option<(String, String)> {
    let scheme_end = url.find("://")? + 3;
    let path_start = url[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(url.len());
    let path = &url[path_start..];
    Some((
        url[..path_start].to_string(),
        if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(
            split_url("https://hooks.slack.com/services/T/B/x").unwrap(),
            ("https://hooks.slack.com".into(), "/services/T/B/x".into())
        );
        assert_eq!(
            split_url("http://127.0.0.1:9/").unwrap(),
            ("http://127.0.0.1:9".into(), "/".into())
        );
        assert_eq!(
            split_url("http://h").unwrap(),
            ("http://h".into(), "/".into())
        );
        assert!(split_url("hooks.slack.com/x").is_none());
    }

    #[test]
    fn delays_double_and_are_capped_and_retry_after_wins() {
        let d = Delivery {
            attempts: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        };
        let got: Vec<u64> = (0..5).map(|i| d.delay(i, None).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 5, 5]);
        assert_eq!(d.delay(0, Some(Duration::from_secs(3))).as_secs(), 3);
        assert_eq!(d.delay(0, Some(Duration::from_secs(300))).as_secs(), 5);
    }
}
