//! One incident's way through the phases: taking it out, advancing it, putting it back; human
//! commands; diagnosis; blind-probe incidents.

use super::*;

impl Open {
    /// A "cannot see" incident of binding `binding`.
    pub(super) fn blind(
        id: String,
        playbook: usize,
        binding: usize,
        target: Target,
        finding: Finding,
    ) -> Self {
        Open {
            id,
            playbook,
            binding,
            key: Labels::new(),
            opened_at: finding.since,
            finding: Some(finding),
            ledger: Default::default(),
            diagnosed: false,
            blind: true,
            detect_is_probe: true,
            decided: None,
            fresh_detect: false,
            muted_until: None,
            staged_until: None,
            detect_snapshot: None,
            target,
            halted: false,
            next_step: 0,
            approval: None,
            recovering_since: None,
            checks: Vec::new(),
            evidence: Vec::new(),
            commit_known: false,
            last_check_labels: Vec::new(),
        }
    }

    /// Where the incident is: the phase its journal says, except that an incident diagnosed in this
    /// process goes on to mitigate (the Mitigate phase is journaled when its first step is reached).
    pub(super) fn stage(&self) -> Stage {
        match self.ledger.stage {
            Stage::Diagnose if self.diagnosed => Stage::Mitigate,
            s => s,
        }
    }
}

impl Check {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            next_due: None,
            history: History::new(window * 2, 10_000),
            state: SymptomState::default(),
            verdict: Verdict::Unevaluated,
        }
    }
}

impl Inner {
    /// The policy state; a poisoned lock (a panic elsewhere) still holds valid counters.
    pub(super) fn policy_state(&self) -> std::sync::MutexGuard<'_, PolicyState> {
        self.policy_state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Close incident `id` (incident key `key`) for a human: journaled, its key freed, the paging
    /// system told (through the role paged last).
    async fn close_by_hand(
        &self,
        id: &str,
        key: &str,
        playbook: usize,
        role: Option<String>,
        by: String,
    ) -> Result<(), Error> {
        self.append(
            id,
            Event::Phase {
                phase: Phase::Review,
            },
        )
        .await?;
        let msg = format!("closed by {by}");
        let resolution = Resolution::ClosedByHuman { by };
        self.append(id, Event::Closed { resolution }).await?;
        self.free_key(key, id).await;
        self.follow_up(id, playbook, role.as_deref(), NotifyAction::Resolve, msg)
            .await
    }

    /// The playbook (by index) and the role last paged of incident `id`, from its journal.
    pub(super) async fn journaled_page_role(
        &self,
        id: &str,
    ) -> Result<(usize, Option<String>), Error> {
        let entries = self.journal.entries(id).await?;
        let playbook = Incident::from_entries(entries.clone())
            .and_then(|i| {
                self.runbook
                    .playbooks
                    .iter()
                    .position(|p| p.id == i.record.playbook)
            })
            .unwrap_or(usize::MAX);
        Ok((playbook, ledger::Ledger::fold(&entries).paged_role))
    }

    /// Move one incident forward, outside the state lock.
    pub(super) async fn work(&self, job: Job) -> Done {
        let mut open = job.open;
        // the journal is the truth: what another engine journaled for this incident (a human's
        // acknowledgement or close given there) is folded in before it moves on
        match self.journal.entries(&open.id).await {
            Ok(entries) => open.ledger = ledger::Ledger::fold(&entries),
            Err(e) => {
                return Done {
                    fingerprint: job.fingerprint,
                    mitigated: false,
                    open,
                    result: Err(e.into()),
                }
            }
        }
        let before = open.stage();
        let result = self.advance(&mut open, job.verdict, job.manual).await;
        Done {
            fingerprint: job.fingerprint,
            mitigated: before != Stage::Recover
                && open.stage() == Stage::Recover
                && !self.runbook.playbooks[open.playbook].mitigation.is_empty(),
            open,
            result,
        }
    }

    /// Put advanced incidents back (closing those that reached Review), apply queued commands. Every
    /// incident is put back before the first error is returned.
    pub(super) async fn finish(
        &self,
        done: Vec<Done>,
        report: &mut TickReport,
    ) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let mut first_err = None;
        for d in done {
            let mut open = d.open;
            match d.result {
                Ok(n) => report.probes_run += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            if d.mitigated || std::mem::take(&mut open.fresh_detect) {
                if let Some(b) = st.bindings.get_mut(open.binding) {
                    if b.next_due.is_some() {
                        b.next_due = Some(Instant::now());
                    }
                }
            }
            if open.stage() == Stage::Review {
                st.open.remove(&d.fingerprint);
                self.free_key(&d.fingerprint, &open.id).await;
                report.closed.push(open.id.clone());
            } else {
                st.open.insert(d.fingerprint, Slot::Idle(open));
            }
        }
        self.apply_commands(&mut st).await?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Apply queued human commands, then publish the open-incident list.
    pub(super) async fn apply_commands(&self, st: &mut State) -> Result<(), Error> {
        let cmds: Vec<Command> = self
            .commands
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        let mut later = Vec::new();
        for cmd in cmds {
            match cmd {
                Command::Ack { id, by } => {
                    let msg = format!("acknowledged by {by}");
                    let event = Event::Acknowledged { by };
                    let (pb, role) = match st.open.values_mut().find(|slot| slot.id() == id) {
                        Some(Slot::Idle(o)) => {
                            self.record(o, event).await?;
                            (o.playbook, o.ledger.paged_role.clone())
                        }
                        // a step in flight here, or another engine works it: journaled now, and
                        // the engine that works it folds the incident's journal before its next
                        // move (so the SLA re-page stops there); the paging system hears it now
                        Some(Slot::Busy { .. }) | None => {
                            let (pb, role) = self.journaled_page_role(&id).await?;
                            self.append(&id, event).await?;
                            (pb, role)
                        }
                    };
                    self.follow_up(&id, pb, role.as_deref(), NotifyAction::Acknowledge, msg)
                        .await?;
                }
                Command::Close { id, by } => {
                    let found = st
                        .open
                        .iter()
                        .find(|(_, slot)| slot.id() == id)
                        .map(|(k, slot)| (k.clone(), matches!(slot, Slot::Busy { .. })));
                    match found {
                        // a step in flight finishes first; the close follows
                        Some((_, true)) => later.push(Command::Close { id, by }),
                        Some((key, false)) => {
                            let Some(Slot::Idle(o)) = st.open.get(&key) else {
                                continue;
                            };
                            let (pb, role) = (o.playbook, o.ledger.paged_role.clone());
                            self.close_by_hand(&id, &key, pb, role, by).await?;
                            st.open.remove(&key);
                        }
                        // another engine works it: closed in the journal, which that engine folds at
                        // its next round (a step it has in flight finishes; no later step starts)
                        None => {
                            let entries = self.journal.entries(&id).await?;
                            let Some(inc) = Incident::from_entries(entries) else {
                                continue;
                            };
                            if inc.is_closed() {
                                continue;
                            }
                            let (pb, role) = self.journaled_page_role(&id).await?;
                            self.close_by_hand(&id, &inc.record.fingerprint, pb, role, by)
                                .await?;
                        }
                    }
                }
            }
        }
        if !later.is_empty() {
            if let Ok(mut q) = self.commands.lock() {
                later.append(&mut q);
                *q = later;
            }
        }
        self.publish_open(st);
        Ok(())
    }

    pub(super) fn publish_open(&self, st: &State) {
        let ids: Vec<String> = st.open.values().map(|o| o.id().to_string()).collect();
        self.metrics
            .set("rb_open_incidents", vec![], ids.len() as f64);
        if let Ok(mut v) = self.open_ids.lock() {
            *v = ids;
        }
    }

    pub(super) async fn append(&self, incident: &str, event: Event) -> Result<u64, Error> {
        Ok(self
            .journal
            .append(incident, self.clock.now(), &event)
            .await?)
    }

    /// Journal `event` for open incident `o` and fold it into the incident's [`ledger::Ledger`]: the
    /// live half of the state machine whose other half is [`ledger::Ledger::fold`] on resume. The
    /// event is folded only once it is journaled.
    pub(super) async fn record(&self, o: &mut Open, event: Event) -> Result<u64, Error> {
        let at = self.clock.now();
        let seq = self.journal.append(&o.id, at, &event).await?;
        o.ledger.apply(at, &event);
        Ok(seq)
    }

    /// Observe a diagnosis or recovery probe for incident `o` (it sees the incident's window and key).
    pub(super) async fn observe(
        &self,
        probe: &dyn Probe,
        deadline: Duration,
        o: &Open,
    ) -> Result<Observation, ProbeError> {
        let series = self
            .metrics
            .probe_series(probe.name(), &probe.target().name);
        let scope = crate::probe::IncidentScope {
            id: o.id.clone(),
            since: o.finding.as_ref().map(|f| f.since).unwrap_or(o.opened_at),
            opened_at: o.opened_at,
            key: o.key.clone(),
            offending: o
                .finding
                .as_ref()
                .map(|f| f.offending.clone())
                .unwrap_or_default(),
        };
        let observed = self.observe_timed(probe, deadline, Some(scope)).await;
        series.record(observed.result(), observed.took);
        observed.res
    }

    /// Move one incident forward; returns the number of probes it ran.
    pub(super) async fn advance(
        &self,
        o: &mut Open,
        verdict: Verdict,
        manual: bool,
    ) -> Result<usize, Error> {
        let p = &self.runbook.playbooks[o.playbook];
        let mut probes = 0;
        // SLA: re-escalate when a page was not acknowledged in time.
        if let Some(page) = &o.ledger.page {
            if self.clock.now() >= page.due {
                let (role, attempt) = (page.role.clone(), page.attempt);
                let next = self
                    .runbook
                    .on_call
                    .get(&role)
                    .and_then(|c| c.next.clone())
                    .unwrap_or(role.clone());
                let msg =
                    format!("page to {role} was not acknowledged within its SLA; paging {next}");
                self.page(o, p, next, EscalationReason::SlaMissed, msg, attempt + 1)
                    .await?;
            }
        }
        if o.blind {
            self.advance_blind(o, p, &verdict).await?;
            return Ok(probes);
        }
        if o.stage() == Stage::Diagnose {
            let span = tracing::info_span!("rb.phase", phase = "diagnose", incident = %o.id, playbook = %p.id);
            probes += self.diagnose(o, p).instrument(span).await?;
            o.diagnosed = true;
        }
        if o.stage() == Stage::Mitigate && verdict == Verdict::Unevaluated {
            // resumed after a restart: wait for a fresh observation before acting
            return Ok(probes);
        }
        if o.stage() == Stage::Mitigate {
            let span = tracing::info_span!("rb.phase", phase = "mitigate", incident = %o.id, playbook = %p.id);
            if !self.mitigate(o, p, &verdict).instrument(span).await? {
                // a step waits for its approver
                return Ok(probes);
            }
            self.record(
                o,
                Event::Phase {
                    phase: Phase::Recover,
                },
            )
            .await?;
            return Ok(probes);
        }
        if o.stage() == Stage::Recover {
            let span = tracing::info_span!("rb.phase", phase = "recover", incident = %o.id, playbook = %p.id);
            probes += self
                .recover(o, p, &verdict, manual)
                .instrument(span)
                .await?;
        }
        if o.stage() == Stage::Review && o.ledger.closed {
            return Ok(probes);
        }
        if o.stage() == Stage::Review
            && self
                .journal
                .entries(&o.id)
                .await?
                .iter()
                .any(|e| matches!(e.event, Event::Closed { .. }))
        {
            // another engine working the same incident closed it first
            return Ok(probes);
        }
        if o.stage() == Stage::Review {
            let span = tracing::info_span!("rb.phase", phase = "review", incident = %o.id, playbook = %p.id);
            async {
                tracing::info!("incident recovered; review written");
            }
            .instrument(span)
            .await;
            // (the Review phase was journaled when recovery held for its window)
            self.record(
                o,
                Event::Closed {
                    resolution: Resolution::Recovered,
                },
            )
            .await?;
            let role = o.ledger.paged_role.clone();
            self.follow_up(
                &o.id,
                o.playbook,
                role.as_deref(),
                NotifyAction::Resolve,
                "recovered".into(),
            )
            .await?;
        }
        Ok(probes)
    }

    /// A blind probe's incident: page once (then on SLA), close as soon as the probe sees again.
    pub(super) async fn advance_blind(
        &self,
        o: &mut Open,
        p: &Playbook,
        verdict: &Verdict,
    ) -> Result<(), Error> {
        if o.stage() == Stage::Diagnose {
            let msg = o
                .finding
                .as_ref()
                .map(|f| f.summary.clone())
                .unwrap_or_default();
            self.escalate(o, p, EscalationReason::NeedsHuman, msg)
                .await?;
            self.record(
                o,
                Event::Phase {
                    phase: Phase::Recover,
                },
            )
            .await?;
        }
        if o.stage() == Stage::Recover && verdict.is_ok() {
            self.append(
                &o.id,
                Event::Note {
                    text: "the probe sees its target again".into(),
                },
            )
            .await?;
            self.record(
                o,
                Event::Phase {
                    phase: Phase::Review,
                },
            )
            .await?;
            self.record(
                o,
                Event::Closed {
                    resolution: Resolution::Recovered,
                },
            )
            .await?;
            let role = o.ledger.paged_role.clone();
            self.follow_up(
                &o.id,
                o.playbook,
                role.as_deref(),
                NotifyAction::Resolve,
                "the probe sees again".into(),
            )
            .await?;
        }
        Ok(())
    }

    pub(super) async fn diagnose(&self, o: &mut Open, p: &Playbook) -> Result<usize, Error> {
        self.record(
            o,
            Event::Phase {
                phase: Phase::Diagnose,
            },
        )
        .await?;
        let seen: &Open = o;
        let results = join_all(p.diagnosis.iter().map(|probe| async move {
            (
                probe,
                self.observe(probe.as_ref(), p.diagnosis_deadline, seen)
                    .await,
            )
        }))
        .await;
        let n = results.len();
        for (probe, res) in results {
            let at = self.clock.now();
            let ev = match res {
                Ok(obs) => {
                    if !o.commit_known {
                        if let Some(Ok(c)) = obs.facts.get::<NessieCommit>() {
                            self.append(
                                &o.id,
                                Event::CommitLinked {
                                    reference: c.reference,
                                    hash: c.hash,
                                },
                            )
                            .await?;
                            o.commit_known = true;
                        }
                    }
                    Evidence {
                        source: probe.id().to_string(),
                        target: probe.target().name.clone(),
                        at,
                        summary: summarize(&obs),
                        observation: Some(obs.bounded()),
                        error: None,
                    }
                }
                Err(e) => Evidence {
                    source: probe.id().to_string(),
                    target: probe.target().name.clone(),
                    at,
                    summary: format!("could not observe: {}", e.kind()),
                    observation: None,
                    error: Some(e.to_string()),
                },
            };
            self.append(
                &o.id,
                Event::Evidence {
                    evidence: ev.clone(),
                },
            )
            .await?;
            o.evidence.push(ev);
        }
        Ok(n)
    }
}
