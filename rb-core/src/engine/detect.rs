//! Detection: bindings and their keys, probes due, pushed signals, judging, opening incidents.

use super::*;

impl Binding {
    pub(super) fn group(&mut self, key: Labels, at: Timestamp) -> &mut Group {
        let (max_age, max_len, base) = (self.max_age, self.max_len, &self.base);
        // boxed: a map node holds room for 11 entries, and most bindings have one key
        self.groups.entry(key).or_insert_with_key(|k| {
            Box::new(Group {
                fingerprint: key_string(base, k),
                history: History::new(max_age, max_len),
                state: SymptomState::default(),
                verdict: Verdict::Unevaluated,
                last_seen: at,
                journaled_streak: None,
            })
        })
    }

    /// The projection of `labels` on the key labels, if it has them all.
    pub(super) fn project(&self, labels: &Labels) -> Option<Labels> {
        self.key_by
            .iter()
            .map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Record a probe's result. Per-series keys: each key's samples (plus those that carry none of the
    /// key labels) go to that key's history; a failure goes to every key. Each key that changed is
    /// handed to `changed` (no `Vec` per record: most bindings have one key).
    pub(super) fn push(&mut self, mut record: Record, mut changed: impl FnMut(Labels)) {
        if let Ok(obs) = &mut record.result {
            let (samples, facts) = self.reads.split(obs);
            self.unread = (!samples.is_empty() || !facts.is_empty()).then(|| Unread {
                at: obs.at,
                samples,
                facts,
            });
        }
        if self.key_by.is_empty() {
            self.group(Labels::new(), record.at).history.push(record);
            changed(Labels::new());
            return;
        }
        let at = record.at;
        let obs = match record.result {
            Err(f) => {
                for g in self.groups.values_mut() {
                    g.history.push(Record {
                        at,
                        result: Err(f.clone()),
                    });
                }
                self.groups.keys().cloned().for_each(changed);
                return;
            }
            Ok(obs) => obs,
        };
        let mut parts: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let mut shared = Vec::new();
        for s in obs.samples.iter() {
            match self.project(&s.labels) {
                Some(k) => parts.entry(k).or_default().push(s.clone()),
                None => shared.push(s.clone()),
            }
        }
        for (k, g) in self.groups.iter_mut() {
            if parts.contains_key(k) {
                g.last_seen = at;
            } else {
                parts.insert(k.clone(), Vec::new());
            }
        }
        for (k, mut samples) in parts {
            samples.extend(shared.iter().cloned());
            let sub = Observation {
                probe: obs.probe.clone(),
                target: obs.target.clone(),
                at: obs.at,
                samples,
                facts: obs.facts.clone(),
                complete: obs.complete,
                gaps: obs.gaps.clone(),
                trimmed: None,
            };
            self.group(k.clone(), at).history.push(Record {
                at,
                result: Ok(sub),
            });
            changed(k);
        }
    }

    /// Forget per-series keys not seen for the history's age and not firing (a deleted connector).
    pub(super) fn prune(&mut self, now: Timestamp, open: &BTreeMap<String, Slot>) {
        if self.key_by.is_empty() {
            return;
        }
        let max_age = self.max_age;
        self.groups
            .retain(|_, g| now.since(g.last_seen) <= max_age || open.contains_key(&g.fingerprint));
    }

    /// The detect source of this binding.
    pub(super) fn source_kind<'r>(&self, runbook: &'r Runbook) -> &'r Source {
        &runbook.playbooks[self.playbook].detectors[self.detector].source
    }

    /// The worst verdict over the keys (firing, pending, unknown, ok), for dashboards.
    pub(super) fn summary(&self) -> Verdict {
        let rank = |v: &Verdict| match v {
            Verdict::Firing(_) => 4,
            Verdict::Pending { .. } => 3,
            Verdict::Unknown { .. } => 2,
            Verdict::Ok => 1,
            Verdict::Unevaluated => 0,
        };
        match self
            .groups
            .values()
            .map(|g| &g.verdict)
            .max_by_key(|v| rank(v))
        {
            Some(v) => v.clone(),
            // a binding keyed per series whose probe has failed before it saw any series has no
            // group to hold the failure: it is not "unevaluated", it cannot see
            None => match &self.blind_since {
                Some((since, why)) => {
                    Verdict::unknown(format!("blind since {}: {why}", since.rfc3339()))
                }
                None => Verdict::Unevaluated,
            },
        }
    }
}

/// The identity of each detector of `p` (see `Binding::ident`): `playbook:target` for the playbook's only
/// detector on a target (what journals written before detectors had names hold), else
/// `playbook:target/` and the source's name — the probe's [`Probe::name`], `alerts{…}` with the
/// matchers, `manual`. Two detectors with one identity would share their journaled detection state: a
/// configuration error naming both.
pub(super) fn detector_idents(p: &Playbook) -> Result<Vec<String>, Error> {
    let base = |d: &crate::playbook::Detector| format!("{}:{}", p.id, d.source.target().name);
    let name = |d: &crate::playbook::Detector| match &d.source {
        Source::Probe { probe, .. } => probe.name().to_string(),
        Source::Alert { matchers, .. } => format!("alerts{matchers}"),
        Source::Manual { .. } => "manual".to_string(),
    };
    // counted first: a playbook of 100,000 detectors must not compare every pair
    let mut per_base: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for d in &p.detectors {
        *per_base.entry(base(d)).or_default() += 1;
    }
    let idents: Vec<String> = p
        .detectors
        .iter()
        .map(|d| {
            let b = base(d);
            if per_base.get(&b) == Some(&1) {
                b
            } else {
                format!("{b}/{}", name(d))
            }
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (i, a) in idents.iter().enumerate() {
        if !seen.insert(a.as_str()) {
            return Err(Error::Config(format!(
                "playbook {}: two detectors are both {a:?} ({}); give each probe its own name \
                 (Probe::name, e.g. the consumer group it reads) so their histories stay apart",
                p.id,
                p.detectors[i].source.describe()
            )));
        }
    }
    Ok(idents)
}

/// The incident key string: the binding's base, plus `{k="v",…}` when keyed per series.
pub(super) fn key_string(base: &str, key: &Labels) -> String {
    if key.is_empty() {
        return base.to_string();
    }
    let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{base}{{{}}}", parts.join(","))
}

pub(super) fn record(at: Timestamp, res: Result<Observation, ProbeError>) -> Record {
    Record {
        at,
        result: res.map_err(|e| Failure {
            kind: e.kind(),
            message: e.to_string(),
        }),
    }
}

pub(super) fn compact(t: Timestamp) -> String {
    let s = t.rfc3339();
    // 2026-11-25T07:09:01.000Z -> 20261125-070901
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    format!(
        "{}-{}",
        &digits.get(..8).unwrap_or(""),
        &digits.get(8..14).unwrap_or("")
    )
}

/// The future observing one detect probe, boxed where it is built so that it can be polled once in
/// place and, when it has to wait, moved into the set of running probes.
type Running<'a> = std::pin::Pin<Box<dyn Future<Output = Observed> + Send + 'a>>;

/// What a detect probe gave, and how long it took (recorded in its metric series when taken in).
pub(super) struct Observed {
    pub(super) res: Result<Observation, ProbeError>,
    pub(super) took: Duration,
}

impl Observed {
    /// How the observation ended, for the probe's metrics.
    pub(super) fn result(&self) -> ProbeResult {
        match &self.res {
            Ok(_) => ProbeResult::Ok,
            Err(e) if e.kind() == ErrorKind::Timeout => ProbeResult::Timeout,
            Err(e) => {
                tracing::debug!(error = %e, "probe failed");
                ProbeResult::Error
            }
        }
    }
}

/// A due probe in the window of [`Inner::run_due`], in binding order: its result, or that it is still
/// running (its result comes out of the set of running probes, which yields in the order they entered).
enum Due {
    Answered(usize, Observed),
    Running(usize),
}

impl Inner {
    /// Run every scheduled probe that is due at `now` and take in its result (history, blind state,
    /// next due time), in binding order; the keys that got new data go to `changed`. Returns how many
    /// probes ran.
    ///
    /// The cost of a round must grow linearly with the probes, whatever their number, and most probes
    /// answer at once (in-process, cached). So:
    ///
    /// - the due bindings are walked lazily, and a probe's future is built only when the window has
    ///   room: at most `max_concurrent_probes` probes are started and not yet taken in (the same bound
    ///   as a `buffered(max_concurrent_probes)` stream of them), never a `Vec` of every due probe;
    /// - a probe's future is polled once where it is built; an answer ready at once is taken in there
    ///   and then (when no earlier probe is still running), so it never enters a set of futures;
    /// - only a probe that has to wait goes to a [`FuturesOrdered`](futures::stream::FuturesOrdered)
    ///   of running probes, which gives the results back in the order the probes started;
    /// - the permit of the probe semaphore (shared with diagnosis and recovery probes) is taken with
    ///   `try_acquire` when one is free, else waited for: tokio's cooperative budget makes every
    ///   awaited `acquire` count, and after 128 of them in one poll it yields, which re-polled the
    ///   whole set of probes about N/128 times per round.
    ///
    /// What a probe sees is what [`Inner::observe_timed`] gives it: the deadline counted from when it
    /// got its permit, the timer only when it does not answer at once, the same span and metrics.
    pub(super) async fn run_due(
        &self,
        st: &mut State,
        now: Instant,
        changed: &mut Vec<(usize, Labels)>,
    ) -> Result<usize, Error> {
        let max = self.max_concurrent_probes.max(1);
        let mut window: std::collections::VecDeque<Due> = std::collections::VecDeque::new();
        let mut running = futures::stream::FuturesOrdered::<Running<'_>>::new();
        let mut ran = 0;
        for i in 0..st.bindings.len() {
            let b = &st.bindings[i];
            if b.next_due.is_none_or(|t| t > now) {
                continue;
            }
            let Source::Probe { probe, schedule } =
                &self.runbook.playbooks[b.playbook].detectors[b.detector].source
            else {
                continue;
            };
            if b.probe_series.is_none() {
                continue;
            }
            // room in the window: take in the oldest (waiting for it if it still runs)
            while window.len() >= max {
                self.take_oldest(st, &mut window, &mut running, now, changed)
                    .await?;
            }
            let mut fut: Running<'_> =
                Box::pin(self.observe_due(probe.as_ref(), schedule.deadline));
            ran += 1;
            match futures::poll!(fut.as_mut()) {
                Poll::Ready(res) if window.is_empty() => {
                    drop(fut);
                    self.take_in(st, i, res, now, changed).await?;
                }
                Poll::Ready(res) => window.push_back(Due::Answered(i, res)),
                Poll::Pending => {
                    running.push_back(fut);
                    window.push_back(Due::Running(i));
                }
            }
            // take in what is ready at the front without waiting (answers behind a probe that has
            // since finished)
            while !running.is_empty() || matches!(window.front(), Some(Due::Answered(..))) {
                match window.front() {
                    Some(Due::Answered(..)) => {}
                    Some(Due::Running(_)) => {
                        // poll the running probes once: the oldest one's result, if it has finished
                        match futures::poll!(running.next()) {
                            Poll::Ready(Some(res)) => {
                                if let Some(Due::Running(j)) = window.pop_front() {
                                    window.push_front(Due::Answered(j, res));
                                }
                            }
                            _ => break,
                        }
                    }
                    None => break,
                }
                if let Some(Due::Answered(j, res)) = window.pop_front() {
                    self.take_in(st, j, res, now, changed).await?;
                }
            }
        }
        while !window.is_empty() {
            self.take_oldest(st, &mut window, &mut running, now, changed)
                .await?;
        }
        Ok(ran)
    }

    /// Take in the oldest probe of the window, waiting for it if it still runs.
    async fn take_oldest(
        &self,
        st: &mut State,
        window: &mut std::collections::VecDeque<Due>,
        running: &mut futures::stream::FuturesOrdered<Running<'_>>,
        now: Instant,
        changed: &mut Vec<(usize, Labels)>,
    ) -> Result<(), Error> {
        let (i, res) = match window.pop_front() {
            Some(Due::Answered(i, res)) => (i, res),
            Some(Due::Running(i)) => match running.next().await {
                Some(res) => (i, res),
                None => return Ok(()), // cannot happen: every running entry has its future
            },
            None => return Ok(()),
        };
        self.take_in(st, i, res, now, changed).await
    }

    /// Observe a detect probe. Its metrics are recorded when it is taken in ([`Inner::take_in`]): the
    /// future holds no handle of the binding's series (an atomic count on a line of memory of its
    /// own, per probe and round).
    async fn observe_due(&self, probe: &dyn Probe, deadline: Duration) -> Observed {
        self.observe_timed(probe, deadline, None).await
    }

    /// Observe `probe` under the probe concurrency bound (a free permit is taken without awaiting)
    /// and its deadline; `incident`: the incident a diagnosis or recovery probe sees.
    pub(super) async fn observe_timed(
        &self,
        probe: &dyn Probe,
        deadline: Duration,
        incident: Option<crate::probe::IncidentScope>,
    ) -> Observed {
        let _permit = match self.probe_sem.try_acquire() {
            Ok(p) => Ok(p),
            Err(_) => self.probe_sem.acquire().await,
        };
        let at = Instant::now() + deadline;
        let ctx = ProbeContext {
            deadline: at,
            clock: self.clock,
            incident,
        };
        let started = Instant::now();
        let span =
            tracing::debug_span!("rb.probe", probe = %probe.id(), target = %probe.target().name);
        let res = async {
            let fut = probe.observe(&ctx);
            futures::pin_mut!(fut);
            // An answer that is ready at once needs no deadline timer (the common case for cached or
            // in-process probes); anything else runs under the deadline.
            if let Poll::Ready(r) = futures::poll!(&mut fut) {
                return r;
            }
            match tokio::time::timeout_at(at, fut).await {
                Ok(r) => r,
                Err(_) => Err(ProbeError::timeout(
                    probe.id(),
                    &probe.target().name,
                    "(probe deadline)",
                    deadline,
                )),
            }
        }
        .instrument(span)
        .await;
        Observed {
            res,
            took: started.elapsed(),
        }
    }

    /// Take in the result of binding `i`'s probe: its metrics, its blind state (journaled when it
    /// changes), its history (the keys that got new data go to `changed`), its next due time.
    async fn take_in(
        &self,
        st: &mut State,
        i: usize,
        observed: Observed,
        now: Instant,
        changed: &mut Vec<(usize, Labels)>,
    ) -> Result<(), Error> {
        let result = observed.result();
        let Observed { res, took } = observed;
        let b = &mut st.bindings[i];
        if let Some(series) = &b.probe_series {
            series.record(result, took);
        }
        let at = self.clock.now();
        let why = match &res {
            Err(e) => Some(e.to_string()),
            Ok(o) if !o.complete => Some(format!("incomplete: {}", o.gaps.join("; "))),
            Ok(_) => None,
        };
        match why {
            Some(why) => {
                let since = b.blind_since.as_ref().map(|(t, _)| *t).unwrap_or(at);
                b.blind_since = Some((since, why));
            }
            None => b.blind_since = None,
        }
        let blind = b.blind_since.as_ref().map(|(t, _)| *t);
        if blind != b.journaled_blind {
            b.journaled_blind = blind;
            let why = b
                .blind_since
                .as_ref()
                .map(|(_, w)| w.clone())
                .unwrap_or_default();
            let ev = Event::Blind {
                binding: b.ident.clone(),
                since: blind,
                why,
            };
            self.append(crate::journal::DETECTION, ev).await?;
        }
        b.push(record(at, res), |k| changed.push((i, k)));
        b.prune(at, &st.open);
        if let Source::Probe { schedule, .. } =
            &self.runbook.playbooks[b.playbook].detectors[b.detector].source
        {
            let j = jitter(&mut st.rng, schedule.jitter);
            let b = &mut st.bindings[i];
            b.next_due = Some(now + schedule.interval + j);
        }
        Ok(())
    }
}

impl Engine {
    /// Detection and judgement under the state lock; returns the idle open incidents, taken out (marked
    /// busy) to be advanced without the lock.
    pub(super) async fn round(&self) -> Result<(TickReport, Vec<Job>), Error> {
        let inner = &self.inner;
        let mut st = inner.state.lock().await;
        let st = &mut *st;
        inner.apply_commands(st).await?;
        let now = Instant::now();
        let mut report = TickReport {
            at: inner.clock.now(),
            ..TickReport::default()
        };

        // 1. Detect: scheduled probes that are due, concurrently under the semaphore.
        let mut changed: Vec<(usize, Labels)> = Vec::new();
        report.probes_run += inner.run_due(st, now, &mut changed).await?;

        // 1b. Pushed signals. An alert is judged per alert instance: its own key (the playbook's key
        // labels, or else its alert fingerprint), so that one alert's resolution never clears another's.
        let signals: Vec<Signal> = inner
            .inbox
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for signal in signals {
            let at = inner.clock.now();
            let mut routed = false;
            for (i, b) in st.bindings.iter_mut().enumerate() {
                let p = &inner.runbook.playbooks[b.playbook];
                let routed_to = match (&p.detectors[b.detector].source, &signal) {
                    (Source::Alert { matchers, target }, Signal::Alert(alert))
                        if matchers.matches(&alert.labels) =>
                    {
                        let key = if b.key_by.is_empty() {
                            Labels::new()
                        } else {
                            b.project(&alert.labels).unwrap_or_else(|| {
                                crate::observation::labels(&[(
                                    "alert_fingerprint",
                                    &alert.fingerprint,
                                )])
                            })
                        };
                        let obs = Observation::new("alertmanager", &target.name, at).fact(alert);
                        Some((key, obs))
                    }
                    (
                        Source::Manual { target },
                        Signal::Manual {
                            playbook,
                            report: r,
                        },
                    ) if *playbook == p.id => Some((
                        Labels::new(),
                        Observation::new("manual-report", &target.name, at).fact(r),
                    )),
                    _ => None,
                };
                if let Some((key, obs)) = routed_to {
                    b.group(key.clone(), at).history.push(Record {
                        at,
                        result: Ok(obs),
                    });
                    changed.push((i, key));
                    routed = true;
                }
            }
            if !routed {
                report.unrouted_signals += 1;
                tracing::warn!(?signal, "signal matched no detect binding");
            }
        }

        // 2. Judge the keys with new data; open incidents (one per incident key).
        for (i, key) in changed {
            let at = inner.clock.now();
            let b = &mut st.bindings[i];
            let p = &inner.runbook.playbooks[b.playbook];
            let d = &p.detectors[b.detector];
            let Some(g) = b.groups.get_mut(&key) else {
                continue;
            };
            let was_firing = g.verdict.is_firing();
            // the key's first judgement in this process (a restart, or a key pruned and seen again):
            // firing for an incident already open is not a new firing
            let first_judgement = matches!(g.verdict, Verdict::Unevaluated);
            g.verdict = evaluate(d.symptom.as_ref(), &g.history, at, &mut g.state);
            b.verdicts.record(g.verdict.label());
            // a for-duration streak that began or ended is journaled: a restarted engine keeps it
            let streak = match &g.verdict {
                Verdict::Pending { since, .. } => Some(*since),
                _ => None,
            };
            if streak != g.journaled_streak {
                let began = streak.and_then(|since| g.history.records().find(|r| r.at == since));
                if streak.is_none() || began.is_some() {
                    g.journaled_streak = streak;
                    let ev = Event::Streak {
                        binding: b.ident.clone(),
                        key: key.clone(),
                        // bounded: the extremes of each metric, not every series it read
                        began: began.map(|r| {
                            Box::new(crate::symptom::Record {
                                at: r.at,
                                result: r.result.clone().map(Observation::bounded_extremes),
                            })
                        }),
                    };
                    inner.append(crate::journal::DETECTION, ev).await?;
                }
            }
            let Verdict::Firing(finding) = &g.verdict else {
                continue;
            };
            if let Some(open) = st.open.get(&g.fingerprint) {
                if !was_firing && !first_judgement {
                    inner
                        .append(
                            open.id(),
                            Event::Refired {
                                verdict: g.verdict.clone(),
                            },
                        )
                        .await?;
                }
                continue;
            }
            let mut finding = finding.clone();
            if !key.is_empty()
                && !finding
                    .offending
                    .iter()
                    .any(|o| key.iter().all(|(k, v)| o.get(k) == Some(v)))
            {
                // the key's own series comes first: it is what this incident is about
                finding.offending.insert(0, key.clone());
            }
            let target = d.source.target().clone();
            let id = incident_id(at, &p.id, &mut st.id_rng);
            if !inner.may_open(&g.fingerprint, &id).await {
                continue; // another engine's incident has the key
            }
            let latest_obs = g.history.latest().and_then(|r| r.result.as_ref().ok());
            // the evidence: what the symptom judged, and what else the probe saw that time
            let seen = latest_obs.map(|o| {
                let mut o = o.clone();
                if let Some(u) = b.unread.as_ref().filter(|u| u.at == o.at) {
                    o.samples.extend(u.samples.iter().cloned());
                    o.facts.merge(u.facts.clone());
                }
                o.bounded()
            });
            let commit = latest_obs
                .and_then(|o| o.facts.get::<NessieCommit>())
                .and_then(Result::ok);
            let rec = IncidentRecord {
                id: id.clone(),
                fingerprint: g.fingerprint.clone(),
                key: key.clone(),
                playbook: p.id.clone(),
                title: p.title.clone(),
                service: p.service.clone(),
                opened_at: at,
                target: target.clone(),
                finding: finding.clone(),
                violated: finding.violated.clone(),
                nessie_commit: commit.as_ref().map(|c| c.hash.clone()),
                affected_pipelines: inner.runbook.impact.affected([target.name.as_str()]),
                runbook_version: inner.runbook_version.clone(),
            };
            let span =
                tracing::info_span!("rb.phase", phase = "detect", incident = %id, playbook = %p.id);
            async {
                tracing::info!(target = %target, finding = %finding.summary, "incident opened");
            }
            .instrument(span)
            .await;
            inner
                .append(
                    &id,
                    Event::Opened {
                        record: Box::new(rec),
                    },
                )
                .await?;
            inner
                .append(
                    &id,
                    Event::Phase {
                        phase: Phase::Detect,
                    },
                )
                .await?;
            let detect_evidence = Evidence {
                source: d.source.describe(),
                target: target.name.clone(),
                at,
                summary: finding.summary.clone(),
                observation: seen,
                error: None,
            };
            inner
                .append(
                    &id,
                    Event::Evidence {
                        evidence: detect_evidence.clone(),
                    },
                )
                .await?;
            inner.metrics.inc(
                "rb_incidents_opened_total",
                vec![("playbook", p.id.clone())],
            );
            report.opened.push(id.clone());
            let checks = p
                .recovery
                .iter()
                .map(|_| Check::new(p.stability_window))
                .collect();
            st.open.insert(
                g.fingerprint.clone(),
                Slot::Idle(Box::new(Open {
                    id,
                    playbook: b.playbook,
                    binding: i,
                    key,
                    finding: Some(finding),
                    opened_at: at,
                    ledger: Default::default(),
                    diagnosed: false,
                    blind: false,
                    detect_is_probe: matches!(d.source, Source::Probe { .. }),
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
                    checks,
                    evidence: vec![detect_evidence],
                    commit_known: commit.is_some(),
                    last_check_labels: Vec::new(),
                })),
            );
        }

        // 2b. A probe blind for too long opens an incident of its own.
        for i in 0..st.bindings.len() {
            let b = &st.bindings[i];
            let Some((since, why)) = &b.blind_since else {
                continue;
            };
            let at = inner.clock.now();
            let fingerprint = format!("blind:{}", b.ident);
            if at.since(*since) < inner.blind_after || st.open.contains_key(&fingerprint) {
                continue;
            }
            let p = &inner.runbook.playbooks[b.playbook];
            let target = p.detectors[b.detector].source.target().clone();
            let summary = format!("cannot see {}: {} since {}", target.name, why, since);
            let id = incident_id(at, &format!("blind-{}", p.id), &mut st.id_rng);
            if !inner.may_open(&fingerprint, &id).await {
                continue; // another engine's incident has the key
            }
            let finding = Finding::new("probe blind", summary.clone(), *since);
            let rec = IncidentRecord {
                id: id.clone(),
                fingerprint: fingerprint.clone(),
                key: Labels::new(),
                playbook: p.id.clone(),
                title: format!("Cannot see {} ({})", target.name, p.title),
                service: p.service.clone(),
                opened_at: at,
                target: target.clone(),
                finding: finding.clone(),
                violated: None,
                nessie_commit: None,
                affected_pipelines: inner.runbook.impact.affected([target.name.as_str()]),
                runbook_version: inner.runbook_version.clone(),
            };
            tracing::warn!(incident = %id, %summary, "probe blind: incident opened");
            inner
                .append(
                    &id,
                    Event::Opened {
                        record: Box::new(rec),
                    },
                )
                .await?;
            inner
                .append(
                    &id,
                    Event::Phase {
                        phase: Phase::Detect,
                    },
                )
                .await?;
            report.opened.push(id.clone());
            let bp = b.playbook;
            st.open.insert(
                fingerprint,
                Slot::Idle(Box::new(Open::blind(id, bp, i, target, finding))),
            );
        }

        inner.publish_open(st);

        // 3. Take out every idle open incident, to be moved forward without the lock.
        let mut jobs = Vec::new();
        for (fingerprint, slot) in st.open.iter_mut() {
            let Some(open) = slot.take_idle() else {
                continue;
            };
            let b = &st.bindings[open.binding];
            let manual = matches!(
                inner.runbook.playbooks[b.playbook].detectors[b.detector].source,
                Source::Manual { .. }
            );
            let verdict = if open.blind {
                match &b.blind_since {
                    None => Verdict::Ok,
                    Some((_, why)) => Verdict::unknown(why.clone()),
                }
            } else {
                b.groups
                    .get(&open.key)
                    .map(|g| g.verdict.clone())
                    .unwrap_or_default()
            };
            let mut open = open;
            let p = &inner.runbook.playbooks[b.playbook];
            if open.stage() == Stage::Recover && p.recovery.iter().any(|c| c.probe.is_none()) {
                open.detect_snapshot = b.groups.get(&open.key).map(|g| g.history.clone());
            }
            jobs.push(Job {
                fingerprint: fingerprint.clone(),
                open,
                verdict,
                manual,
            });
        }
        Ok((report, jobs))
    }
}
