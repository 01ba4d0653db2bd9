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
    /// key labels) go to that key's history; a failure goes to every key. Returns the keys that changed.
    pub(super) fn push(&mut self, mut record: Record) -> Vec<Labels> {
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
            return vec![Labels::new()];
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
                return self.groups.keys().cloned().collect();
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
        let mut changed = Vec::with_capacity(parts.len());
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
            changed.push(k);
        }
        changed
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
        let due: Vec<usize> = st
            .bindings
            .iter()
            .enumerate()
            .filter(|(_, b)| b.next_due.is_some_and(|t| t <= now))
            .map(|(i, _)| i)
            .collect();
        let mut changed: Vec<(usize, Labels)> = Vec::with_capacity(due.len());
        if !due.is_empty() {
            let runs = due.iter().filter_map(|&i| {
                let b = &st.bindings[i];
                match (
                    &inner.runbook.playbooks[b.playbook].detectors[b.detector].source,
                    &b.probe_series,
                ) {
                    (Source::Probe { probe, schedule }, Some(series)) => {
                        Some((i, probe.clone(), schedule.deadline, series.clone()))
                    }
                    _ => None,
                }
            });
            // At most `max_concurrent_probes` futures in flight (the semaphore bounds them too, together
            // with diagnosis and recovery probes); results in binding order, whatever finished first.
            // (the futures are collected first: a closure inside the stream type would make the tick
            // future lose `Send` to a higher-ranked lifetime error)
            let futs: Vec<_> = runs
                .map(|(i, probe, deadline, series)| async move {
                    (
                        i,
                        inner
                            .observe_with(probe.as_ref(), deadline, &series, None)
                            .await,
                    )
                })
                .collect();
            // `buffered` hands the results back in binding order (no sort of 10,000 results)
            let results: Vec<_> = futures::stream::iter(futs)
                .buffered(inner.max_concurrent_probes)
                .collect()
                .await;
            report.probes_run += results.len();
            for (i, res) in results {
                let at = inner.clock.now();
                let b = &mut st.bindings[i];
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
                    inner.append(crate::journal::DETECTION, ev).await?;
                }
                let keys = b.push(record(at, res));
                changed.extend(keys.into_iter().map(|k| (i, k)));
                b.prune(at, &st.open);
                if let Source::Probe { schedule, .. } =
                    &inner.runbook.playbooks[b.playbook].detectors[b.detector].source
                {
                    let j = jitter(&mut st.rng, schedule.jitter);
                    let b = &mut st.bindings[i];
                    b.next_due = Some(now + schedule.interval + j);
                }
            }
        }

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
                        began: began.cloned().map(Box::new),
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
