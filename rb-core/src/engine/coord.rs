//! The engine's side of coordination with other engines on the same journal: one open incident per
//! incident key ([`Coordinator::open_or_get`]), a step applied only after its claim was begun
//! ([`Coordinator::claim_step`], [`Coordinator::begin_step`]: the fencing token goes to the
//! remediation), one remediation per target at a time across engines ([`Coordinator::lease_target`]),
//! one engine advancing an open incident at a time ([`Coordinator::lease_incident`], renewed every
//! round; an incident whose engine stopped renewing is adopted by another).

use super::*;
use crate::coordination::{CoordinationError, CoordinationErrorKind, Lease, OpenOrGet, Resource};

impl Inner {
    /// Whether this engine may open incident `id` for incident key `fingerprint`: false when another
    /// engine's incident holds the key (that engine works it) or the store could not say (tried again
    /// next round: an incident is never opened without the store's word).
    pub(super) async fn may_open(&self, fingerprint: &str, id: &str) -> bool {
        match self.coordinator.open_or_get(fingerprint, id).await {
            Ok(OpenOrGet::Opened(_)) => {
                // a new incident: its work is this engine's (nobody else knows its id yet)
                if !self.take_incident(id).await {
                    tracing::warn!(incident = %id, "could not lease the new incident's work; working it anyway");
                }
                true
            }
            Ok(OpenOrGet::Existing(other)) => {
                tracing::debug!(key = %fingerprint, incident = %other, "incident key held by another engine's incident");
                other == id
            }
            Err(e) => {
                tracing::warn!(error = %e, key = %fingerprint, "could not register the incident; trying again next round");
                false
            }
        }
    }

    /// An engine starting on the journal takes its open incident `id` back: `Ok(false)` when the key
    /// is registered to another incident (the journal and the store disagree: the store wins).
    pub(super) async fn adopt(&self, fingerprint: &str, id: &str) -> Result<bool, Error> {
        match self.coordinator.open_or_get(fingerprint, id).await? {
            OpenOrGet::Opened(_) => Ok(true),
            OpenOrGet::Existing(other) => Ok(other == id),
        }
    }

    /// The incident closed: free its key in the store. A key already freed (another engine working
    /// the same incident closed it first) is not an error.
    pub(super) async fn free_key(&self, fingerprint: &str, id: &str) {
        if let Err(e) = self.coordinator.close_incident(fingerprint, id).await {
            tracing::debug!(error = %e, key = %fingerprint, incident = %id, "incident key not freed");
        }
        let lease = self
            .incident_leases
            .lock()
            .ok()
            .and_then(|mut m| m.remove(id));
        if let Some(l) = lease {
            self.release_all(&[l]).await;
        }
    }

    /// How long the lease on an incident's work lives without renewal: several rounds, so that a slow
    /// round does not lose it, and short enough that another engine adopts the incident soon after
    /// this one stops.
    pub(super) fn incident_ttl(&self) -> Duration {
        (self.tick_interval * 6).max(secs(30))
    }

    /// Take (or take again) the lease on incident `id`'s work. False when another engine's lease is
    /// live, or the store could not say (then it is tried again next round).
    pub(super) async fn take_incident(&self, id: &str) -> bool {
        match self
            .coordinator
            .lease_incident(id, &self.holder, self.incident_ttl())
            .await
        {
            Ok(l) => {
                if let Ok(mut m) = self.incident_leases.lock() {
                    m.insert(id.to_string(), l);
                }
                true
            }
            Err(e) => {
                if e.kind() != CoordinationErrorKind::Held {
                    tracing::warn!(error = %e, incident = %id, "could not lease the incident's work");
                }
                false
            }
        }
    }

    /// At the start of every round: renew the leases on the open incidents' work (an incident whose
    /// lease another engine took meanwhile is left to it), and adopt the incidents found in the
    /// journal at start whose engine stopped renewing them.
    pub(super) async fn hold_incidents(&self) -> Result<(), Error> {
        let held: Vec<(String, Lease)> = self
            .incident_leases
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut lost = Vec::new();
        for (id, lease) in held {
            match self.coordinator.renew(&lease, self.incident_ttl()).await {
                Ok(l) => {
                    if let Ok(mut m) = self.incident_leases.lock() {
                        m.insert(id, l);
                    }
                }
                // lapsed (a long pause): take it again unless another engine did
                Err(_) if self.take_incident(&id).await => {}
                Err(_) => lost.push(id),
            }
        }
        let later: Vec<String> = self
            .adopt_later
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        if lost.is_empty() && later.is_empty() {
            return Ok(());
        }
        let mut st = self.state.lock().await;
        for id in lost {
            let key = st
                .open
                .iter()
                .find(|(_, slot)| matches!(slot, Slot::Idle(o) if o.id == id))
                .map(|(k, _)| k.clone());
            if let Some(key) = key {
                // (a busy one is put back by its job and let go at the next round)
                tracing::warn!(incident = %id, "another engine holds this incident's work now; left to it");
                st.open.remove(&key);
                if let Ok(mut m) = self.incident_leases.lock() {
                    m.remove(&id);
                }
            }
        }
        let mut still = Vec::new();
        for id in later {
            let closed = self
                .journal
                .entries(&id)
                .await?
                .iter()
                .any(|e| matches!(e.event, Event::Closed { .. }));
            if closed {
                continue;
            }
            if self.take_incident(&id).await {
                tracing::info!(incident = %id, "the engine working this incident stopped; adopted here");
                self.resume_one(&mut st, &id).await?;
            } else {
                still.push(id);
            }
        }
        if !still.is_empty() {
            if let Ok(mut v) = self.adopt_later.lock() {
                v.extend(still);
            }
        }
        self.publish_open(&st);
        Ok(())
    }

    /// How long a step's claim and its target leases live: the whole step (attempts, backoff and
    /// verification) with a margin, so that another engine sees it in flight until it is settled.
    pub(super) fn hold_ttl(&self, rem: &dyn Remediation) -> Duration {
        let retries = if rem.idempotent() {
            self.policy.idempotent_retries
        } else {
            0
        };
        let backoff = self.policy.retry_backoff.max(Duration::from_millis(100)) * 16;
        (self.policy.apply_timeout + backoff) * (retries + 1)
            + rem.verify_within()
            + self.policy.apply_timeout
    }

    /// Lease `keys` (in order) for this engine, waiting up to the policy's target-lock wait for a key
    /// another engine holds. `Err` names the key and its holder; nothing is held then.
    pub(super) async fn lease_targets(
        &self,
        keys: &[String],
        ttl: Duration,
    ) -> Result<Vec<Lease>, String> {
        let deadline = Instant::now() + self.policy.target_lock_wait;
        let mut leases = Vec::with_capacity(keys.len());
        for key in keys {
            loop {
                match self.coordinator.lease_target(key, &self.holder, ttl).await {
                    Ok(l) => {
                        leases.push(l);
                        break;
                    }
                    Err(e)
                        if e.kind() == CoordinationErrorKind::Held && Instant::now() < deadline =>
                    {
                        let pause = deadline
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(500));
                        tokio::time::sleep(pause).await;
                    }
                    Err(e) => {
                        self.release_all(&leases).await;
                        return Err(match e.kind() {
                            CoordinationErrorKind::Held => format!(
                                "another engine held {key} for longer than {}: {e}",
                                human(self.policy.target_lock_wait)
                            ),
                            _ => format!("could not lease {key}: {e}"),
                        });
                    }
                }
            }
        }
        Ok(leases)
    }

    /// Claim step `step_id` of `incident` and begin it (the fenced, one-time transition). `Ok`: this
    /// engine applies it, under the claim's token. `Err`: another engine has it, or the store could not
    /// say — either way the step is not applied here.
    pub(super) async fn claim_and_begin(
        &self,
        incident: &str,
        step_id: &str,
        ttl: Duration,
    ) -> Result<Lease, CoordinationError> {
        let claim = self
            .coordinator
            .claim_step(incident, step_id, &self.holder, ttl)
            .await?;
        match self.coordinator.begin_step(&claim).await {
            Ok(()) => Ok(claim),
            Err(e) => {
                let _ = self.coordinator.release(&claim).await;
                Err(e)
            }
        }
    }

    /// Give back claims and leases (a stale one was taken over already: nothing to give back).
    pub(super) async fn release_all(&self, held: &[Lease]) {
        for l in held {
            if let Err(e) = self.coordinator.release(l).await {
                tracing::debug!(error = %e, "hold not released");
            }
        }
    }

    /// Whether step `step_id` of `incident` is in flight in another engine: its latest `started`
    /// entry was journaled by another holder whose claim is still live.
    pub(super) async fn in_flight_elsewhere(
        &self,
        incident: &str,
        step_id: &str,
        started: Option<(&Option<String>, &Option<crate::coordination::FencingToken>)>,
    ) -> bool {
        let Some((Some(holder), Some(token))) = started else {
            return false;
        };
        if *holder == self.holder {
            // started by this engine (under this name) and not in flight here: interrupted
            return false;
        }
        self.coordinator
            .check_token(&Resource::step(incident, step_id), *token)
            .await
            .is_ok()
    }
}
