//! Escalation: pages, their delivery under a timeout, acknowledgements and resolutions.

use super::*;

pub(super) fn summarize(obs: &Observation) -> String {
    let mut parts = Vec::new();
    for s in obs.samples.iter().take(4) {
        if s.labels.is_empty() {
            parts.push(format!("{}={}", s.name, s.value));
        } else {
            let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.push(format!("{}{{{}}}={}", s.name, l.join(","), s.value));
        }
    }
    if obs.samples.len() > 4 {
        parts.push(format!("… {} samples", obs.samples.len()));
    }
    let kinds: Vec<&str> = obs.facts.kinds().collect();
    if !kinds.is_empty() {
        parts.push(format!("facts: {}", kinds.join(", ")));
    }
    if !obs.complete {
        parts.push(format!("INCOMPLETE: {}", obs.gaps.join("; ")));
    }
    if parts.is_empty() {
        "observed (no samples)".into()
    } else {
        parts.join("; ")
    }
}

impl Inner {
    pub(super) async fn escalate(
        &self,
        o: &mut Open,
        p: &Playbook,
        reason: EscalationReason,
        message: String,
    ) -> Result<(), Error> {
        let role = p
            .escalate_to
            .clone()
            .unwrap_or_else(|| self.runbook.default_role.clone());
        let attempt = o.ledger.page.as_ref().map(|pg| pg.attempt + 1).unwrap_or(1);
        self.page(o, p, role, reason, message, attempt).await
    }

    pub(super) async fn page(
        &self,
        o: &mut Open,
        p: &Playbook,
        role: String,
        reason: EscalationReason,
        message: String,
        attempt: u32,
    ) -> Result<(), Error> {
        let contact = self.runbook.on_call.get(&role);
        let sla = contact.map(|c| c.sla).unwrap_or(secs(900));
        let n = Notification {
            action: NotifyAction::Trigger,
            dedup_key: o.id.clone(),
            incident: o.id.clone(),
            playbook: p.id.clone(),
            role: role.clone(),
            channel: contact
                .map(|c| c.channel.clone())
                .unwrap_or_else(|| "unrouted".into()),
            reason: reason.clone(),
            message: format!("[{}] {} on {}: {}", o.id, p.title, o.target, message),
            attempt,
            ack_due: self.clock.now().plus(sla),
        };
        let error = self.deliver(&n).await.err();
        self.metrics.inc(
            "rb_escalations_total",
            vec![("role", role.clone()), ("reason", format!("{reason:?}"))],
        );
        // the fold makes it the page waiting for its acknowledgement, due after the role's SLA
        self.record(
            o,
            Event::Escalated {
                notification: n,
                error,
            },
        )
        .await?;
        Ok(())
    }

    /// Send one notification under the notify timeout; the error as text.
    pub(super) async fn deliver(&self, n: &Notification) -> Result<(), String> {
        match tokio::time::timeout(self.policy.notify_timeout, self.notifier.notify(n)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the notifier gave no answer within {}",
                human(self.policy.notify_timeout)
            )),
        }
    }

    /// Tell the paging system that an incident paged earlier was acknowledged or resolved, and journal
    /// what came of it. Nothing is sent for an incident that never paged.
    pub(super) async fn follow_up(
        &self,
        incident: &str,
        playbook: usize,
        role: Option<&str>,
        action: NotifyAction,
        message: String,
    ) -> Result<(), Error> {
        let Some(role) = role else {
            return Ok(());
        };
        let contact = self.runbook.on_call.get(role);
        let n = Notification {
            action,
            dedup_key: incident.to_string(),
            incident: incident.to_string(),
            playbook: self
                .runbook
                .playbooks
                .get(playbook)
                .map(|p| p.id.clone())
                .unwrap_or_default(),
            role: role.to_string(),
            channel: contact
                .map(|c| c.channel.clone())
                .unwrap_or_else(|| "unrouted".into()),
            reason: EscalationReason::NeedsHuman,
            message,
            attempt: 0,
            ack_due: self.clock.now(),
        };
        let text = match self.deliver(&n).await {
            Ok(()) => format!("{action:?} sent to {} ({})", n.role, n.channel),
            Err(e) => format!("{action:?} to {} ({}) failed: {e}", n.role, n.channel),
        };
        self.append(incident, Event::Note { text }).await?;
        Ok(())
    }
}
