//! Seed §4 **Kafka backlog grows**: `kafka_consumer_fetch_manager_metrics_records_lag_max > 5000`.
//!
//! * **Detect** — rb-probes' [`ConsumerLagProbe`] over rdkafka ([`RdKafkaClient`]) for group
//!   [`GROUP`] on topic [`TOPIC`], every probe interval: `records_lag_max` above 5,000 for the
//!   for-duration, **and** the group's Burrow-style status ([`BurrowStatus`], WARN or ERR: the
//!   consumer falls behind or does not move) — a consumer draining a big backlog after a restart
//!   (lag high but going down while it commits) is not paged. One incident **per group and
//!   topic** (`group`, `topic` labels of the offending series; one probe per watched pair, so the
//!   group-wide `records_lag_max` is that topic's).
//!
//!   *Why the lag probe and not Prometheus' `records_lag_max`:* the consumer-side metric is
//!   exported by the consumer itself (Flink's Kafka source) — it disappears exactly when the
//!   consumer dies or hangs, and it is as old as the last scrape. The lag probe asks the brokers
//!   (committed offsets at the coordinator, log-end offsets at the leaders, O(brokers) requests), so
//!   a consumer that stopped shows a growing lag, and its offset table gives the lag **in time**
//!   (`kafka_consumergroup_lag_seconds_max`) and the window [`BurrowStatus`] judges. The
//!   Prometheus series is still read at diagnosis, as the consumer's own view.
//! * **Diagnose** — the same lag probe (its offset table is warm, so the lag in time is there),
//!   the consuming Flink job [`JOB`] ([`FlinkJobProbe`]: per-vertex throughput, busy and
//!   back-pressure ratios, the source's input rate — the seed's "check Flink job throughput"), the
//!   topic description ([`TopicDescriptionProbe`], `kafka-topics --describe`: partitions, ISR,
//!   offline), and Prometheus' `kafka_consumer_fetch_manager_metrics_records_lag_max`.
//! * **Mitigate** — rescale the job **in place** (`PUT /jobs/<id>/resource-requirements` on the
//!   adaptive scheduler; rb-actions' [`Rescale`]) to the parallelism Flink's autoscaler would
//!   compute from the job's throughput, busy time and the source's pending records (the plan
//!   carries every input and intermediate value). Settings are the autoscaler's defaults but for
//!   the largest scale-down, 0: a backlog incident never shrinks a vertex. A job that cannot be
//!   rescaled in place is not stopped and resubmitted automatically (no fallback submitter: that
//!   plan is destructive, a human decides). Adding partitions, the seed's other fix, is left to a
//!   human (it changes key → partition mapping for keyed producers).
//! * **Recover** — `records_lag_max` at most 5,000 again, over the detect probe's own
//!   observations, for the stability window.
//! * **Escalate** — Kafka SME (30 min SLA), then the Data Platform on-call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rb_actions::flink::autoscale::AutoscalerSettings;
use rb_actions::flink::{FlinkEndpoint, Rescale, RescaleTo};
use rb_core::prelude::*;
use rb_probes::flink::{FlinkJobProbe, JobSelector};
use rb_probes::kafka::{
    BurrowStatus, ConsumerLagProbe, KafkaConfig, RdKafkaClient, Sasl, SaslMechanism,
    TopicDescriptionProbe,
};
use rb_probes::prometheus::PromQuery;
use rb_testkit::lakehouse::FakeLakehouse;

use crate::lakehouse::situations::{Expect, Scene, SceneError};
use crate::lakehouse::{BuildError, Systems};

/// The playbook id.
pub const PLAYBOOK: &str = "kafka-backlog";

/// The consumer group watched (the Flink job's Kafka source).
pub const GROUP: &str = "flink-orders";
/// The topic it reads.
pub const TOPIC: &str = "orders";
/// The Flink job consuming [`TOPIC`] (rescaled by the mitigation).
pub const JOB: &str = "orders-enrichment";

/// The seed's signal, as the lag probe names it (largest partition lag of the group).
pub const RECORDS_LAG_MAX: &str = "records_lag_max";
/// The seed's threshold, records.
pub const THRESHOLD: f64 = 5_000.0;

/// The step id of the rescale.
pub const RESCALE_STEP: &str = "rescale-autoscaled";

/// The autoscaler settings of the rescale: Flink's defaults, but never a scale-down.
pub fn autoscaler_settings() -> AutoscalerSettings {
    AutoscalerSettings {
        max_scale_down: 0.0,
        ..AutoscalerSettings::default()
    }
}

/// The Kafka client of the lag and topic probes, from the endpoints and the SASL credentials
/// (SCRAM-SHA-512, as the lakehouse's brokers expect).
pub fn kafka_client(s: &Systems) -> Result<RdKafkaClient, BuildError> {
    let mut config =
        KafkaConfig::new(s.endpoints.kafka_bootstrap.clone()).client_id("rb-lakehouse");
    if let Some((user, password)) = &s.credentials.kafka_sasl {
        config = config.sasl(Sasl {
            mechanism: SaslMechanism::ScramSha512,
            username: user.clone(),
            password: password.clone(),
        });
    }
    RdKafkaClient::new(config).map_err(|e| BuildError {
        system: "kafka",
        endpoint: s.endpoints.kafka_bootstrap.clone(),
        cause: e.to_string(),
    })
}

/// The situation's playbook, or why the Kafka client cannot be built (a configuration librdkafka
/// refuses, e.g. SCRAM without the `kafka-tls` feature): a misconfigured system is an error the
/// operator sees when the runbook is built, never a situation quietly left unwatched. Without a
/// bootstrap list Kafka is not configured: no playbook, like every unconfigured system (see
/// [`configured`](crate::lakehouse::configured)).
pub fn playbooks(s: &Systems) -> Result<Vec<Playbook>, BuildError> {
    if s.endpoints.kafka_bootstrap.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![playbook(s, kafka_client(s)?)])
}

/// The backlog playbook on `client` (see the module docs).
pub fn playbook(s: &Systems, client: RdKafkaClient) -> Playbook {
    let t = &s.timings;
    let lag: Arc<dyn Probe> = Arc::new(
        ConsumerLagProbe::new(s.kafka.clone(), client.clone(), GROUP, [TOPIC])
            .with_partition_fact(true),
    );
    let topic: Arc<dyn Probe> =
        Arc::new(TopicDescriptionProbe::new(s.kafka.clone(), client, [TOPIC]));
    let job: Arc<dyn Probe> = Arc::new(FlinkJobProbe::new(
        s.flink_http.clone(),
        s.flink.clone(),
        JobSelector::name(JOB),
    ));
    let consumer_view: Arc<dyn Probe> = Arc::new(
        PromQuery::instant(
            s.prometheus_http.clone(),
            s.prometheus.clone(),
            format!("kafka_consumer_fetch_manager_metrics_records_lag_max{{topic=\"{TOPIC}\"}}"),
        )
        .id("prometheus.consumer_records_lag_max"),
    );
    let rescale = Rescale::new(
        FlinkEndpoint::new(s.flink.clone(), s.flink_http.clone()),
        RescaleTo::Autoscaler(autoscaler_settings()),
    )
    .job(JOB);
    Playbook::new(PLAYBOOK, "Kafka backlog grows")
        .service("kafka")
        .detect(
            lag.clone(),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            all_of(vec![
                Box::new(
                    metric(RECORDS_LAG_MAX)
                        .max()
                        .above(THRESHOLD)
                        .for_at_least(t.for_duration),
                ),
                Box::new(
                    BurrowStatus::new(GROUP)
                        .fire_on_warn(true)
                        .lookback(t.for_duration.max(Duration::from_secs(600))),
                ),
            ]),
        )
        .incident_per(&["group", "topic"])
        .diagnose(lag)
        .diagnose(job)
        .diagnose(topic)
        .diagnose(consumer_view)
        .mitigate_as(RESCALE_STEP, Arc::new(rescale))
        // a recovery check is the bad condition: ok (not firing) for the stability window
        .recover_on_detect(metric(RECORDS_LAG_MAX).max().above(THRESHOLD))
        .stable_for(t.stable_for)
        .review_item("Which vertex was the bottleneck (busy / back-pressure), and why did the input rate outgrow it? (seed §4)")
        .review_item("Is the new parallelism enough at peak, or should the topic get more partitions?")
        .review_item("Did container GC or CPU limits slow the job? (seed §4: check GC, allocate more CPU)")
        .escalate_to("Kafka SME")
}

fn err(scene: &dyn Scene, e: impl std::fmt::Display) -> SceneError {
    SceneError::new(scene.name(), e)
}

/// The `orders` job's vertex ids: (source, the rest).
fn job_vertices(lake: &FakeLakehouse) -> Result<Vec<(String, String, u32)>, String> {
    lake.flink()
        .vertices(lake.flink_job_id())
        .map_err(|e| e.to_string())
}

/// **Real:** the input rate outgrows the `enrich -> Sink: paimon` vertex: the source reads
/// `source_rate` records/s (back-pressured), the enrichment runs at `enrich_rate`, and `lag`
/// records pile up on every partition of `orders`. The fake world heals (the group catches up) once
/// the job's new parallelism is asked for (`PUT /jobs/<id>/resource-requirements` in FakeFlink's
/// request record) or seen on the job.
#[derive(Debug)]
pub struct Backlog {
    /// Lag on every partition.
    pub lag: i64,
    /// Records/s the source reads.
    pub source_rate: f64,
    /// Records/s the enrichment vertex processes.
    pub enrich_rate: f64,
    healed: AtomicBool,
}

impl Backlog {
    /// 30,000 records behind on each of the six partitions; the source at 3,000 records/s, 80 %
    /// back-pressured; the enrichment at 180 records/s on two subtasks.
    pub fn orders() -> Self {
        Self {
            lag: 30_000,
            source_rate: 3_000.0,
            enrich_rate: 180.0,
            healed: AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl Scene for Backlog {
    fn name(&self) -> String {
        format!("backlog of {} records a partition on {TOPIC}", self.lag)
    }

    fn expect(&self) -> Option<Expect> {
        Some(Expect {
            playbook: PLAYBOOK,
            key: vec![("group", GROUP.to_string()), ("topic", TOPIC.to_string())],
            applied: vec![RESCALE_STEP],
        })
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        let vertices = job_vertices(lake).map_err(|e| err(self, e))?;
        let job = lake.flink_job_id();
        for (i, (id, _, _)) in vertices.iter().enumerate() {
            let (rate, bp) = if i == 0 {
                (self.source_rate, 0.8)
            } else {
                (self.enrich_rate, 0.0)
            };
            lake.flink()
                .set_records_per_second(job, id, rate)
                .and_then(|()| lake.flink().set_backpressure(job, id, bp))
                .map_err(|e| err(self, e))?;
        }
        lake.kafka_backlog(self.lag).map_err(|e| err(self, e))
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        _engine: &Engine,
        _since_start: Duration,
    ) -> Result<bool, SceneError> {
        if self.healed.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let asked = !lake
            .flink()
            .requests()
            .matching("PUT", "/jobs/*/resource-requirements")
            .is_empty();
        let rescaled = job_vertices(lake)
            .map_err(|e| err(self, e))?
            .iter()
            .any(|(_, _, p)| *p != 2);
        if !(asked || rescaled) {
            return Ok(false);
        }
        // More subtasks drain the backlog; the back-pressure goes with it.
        let job = lake.flink_job_id();
        for (id, _, _) in job_vertices(lake).map_err(|e| err(self, e))? {
            lake.flink()
                .set_backpressure(job, &id, 0.0)
                .map_err(|e| err(self, e))?;
        }
        lake.heal_kafka_backlog().map_err(|e| err(self, e))?;
        self.healed.store(true, Ordering::SeqCst);
        Ok(true)
    }
}

/// **Decoy:** a burst puts `lag` records on every partition; the group catches up after
/// `duration` (shorter than the for-duration). Over after `observe_for`.
#[derive(Debug, Clone)]
pub struct LagSpike {
    /// Lag on every partition during the spike.
    pub lag: i64,
    /// How long it lasts.
    pub duration: Duration,
    /// How long the scene runs (long enough for a careless rule to fire).
    pub observe_for: Duration,
}

impl LagSpike {
    /// 12,000 records a partition for one minute (for-duration: 2 minutes); watched 6 minutes.
    pub fn seed() -> Self {
        Self {
            lag: 12_000,
            duration: Duration::from_secs(60),
            observe_for: Duration::from_secs(360),
        }
    }
}

#[async_trait::async_trait]
impl Scene for LagSpike {
    fn name(&self) -> String {
        format!(
            "decoy: lag spike of {} records for {}s",
            self.lag,
            self.duration.as_secs()
        )
    }

    fn expect(&self) -> Option<Expect> {
        None
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.kafka_lag_spike(self.lag, self.duration)
            .map_err(|e| err(self, e))
    }

    async fn react(
        &self,
        _lake: &FakeLakehouse,
        _engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, SceneError> {
        Ok(since_start >= self.observe_for)
    }
}

/// **Decoy:** a slow topic with no new messages and a caught-up consumer. The fake's quiet topic
/// (`orders-audit`, read by `audit-archiver` up to its end) is brought about, and the watched
/// `orders` topic goes equally quiet: the group commits up to the log end and nothing new is
/// written for `for_how_long` — its committed offset does not move, which a "no progress" rule
/// takes for a stalled consumer. Ends with the pipeline's baseline lag back.
#[derive(Debug, Clone)]
pub struct QuietTopic {
    /// How long the topic stays quiet.
    pub for_how_long: Duration,
}

#[async_trait::async_trait]
impl Scene for QuietTopic {
    fn name(&self) -> String {
        format!(
            "decoy: {TOPIC} quiet for {}s, consumer caught up",
            self.for_how_long.as_secs()
        )
    }

    fn expect(&self) -> Option<Expect> {
        None
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.quiet_topic().map_err(|e| err(self, e))?;
        lake.kafka()
            .set_uniform_lag(GROUP, TOPIC, 0)
            .map_err(|e| err(self, e))
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        _engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, SceneError> {
        if since_start < self.for_how_long {
            return Ok(false);
        }
        lake.heal_kafka_backlog().map_err(|e| err(self, e))?;
        Ok(true)
    }
}

/// **Decoy:** the group consumes at the producers' pace (`rate` records/s a partition, lag at the
/// pipeline's baseline) and stops committing for `pause` from `pause_at` while it rebalances —
/// the lag climbs above 5,000 for that one interval — then commits again and is caught up at once.
/// Built from FakeKafka's produce and commit calls at every step.
#[derive(Debug)]
pub struct Rebalance {
    /// Records/s produced (and consumed) on every partition.
    pub rate: i64,
    /// When the rebalance starts.
    pub pause_at: Duration,
    /// How long no commit is made (one probe interval).
    pub pause: Duration,
    /// How long the scene runs.
    pub observe_for: Duration,
    base: Mutex<Option<Vec<i64>>>,
}

impl Rebalance {
    /// 200 records/s a partition; the rebalance from 32 s to 62 s (one 30 s probe interval), so a
    /// probe every 30 s from the start sees the lag at 5,620 at 60 s; back to 20 after; watched 6
    /// minutes.
    pub fn seed() -> Self {
        Self {
            rate: 200,
            pause_at: Duration::from_secs(32),
            pause: Duration::from_secs(30),
            observe_for: Duration::from_secs(360),
            base: Mutex::new(None),
        }
    }

    fn drive(&self, lake: &FakeLakehouse, since: Duration) -> Result<(), String> {
        let base = self
            .base
            .lock()
            .map_err(|_| "scene state poisoned".to_string())?
            .clone()
            .ok_or("the scene did not start")?;
        let kafka = lake.kafka();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let produced = self.rate * ms(since) / 1000;
        let ends = kafka.end_offsets(TOPIC).map_err(|e| e.to_string())?;
        let more: Vec<u64> = base
            .iter()
            .zip(&ends)
            .map(|(b, e)| u64::try_from(b + produced - e).unwrap_or(0))
            .collect();
        kafka.produce_all(TOPIC, &more).map_err(|e| e.to_string())?;
        let consumed_at = if since >= self.pause_at && since < self.pause_at + self.pause {
            self.pause_at
        } else {
            since
        };
        let consumed = self.rate * ms(consumed_at) / 1000;
        let committed: Vec<i64> = base
            .iter()
            .map(|b| b + consumed - rb_testkit::lakehouse::BASELINE_LAG)
            .collect();
        if kafka.committed(GROUP, TOPIC).map_err(|e| e.to_string())?
            != committed.iter().map(|c| Some(*c)).collect::<Vec<_>>()
        {
            kafka
                .commit_all(GROUP, TOPIC, &committed)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Scene for Rebalance {
    fn name(&self) -> String {
        format!(
            "decoy: {GROUP} stops committing for {}s while it rebalances",
            self.pause.as_secs()
        )
    }

    fn expect(&self) -> Option<Expect> {
        None
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.heal_kafka_backlog().map_err(|e| err(self, e))?;
        let ends = lake.kafka().end_offsets(TOPIC).map_err(|e| err(self, e))?;
        *self
            .base
            .lock()
            .map_err(|_| err(self, "scene state poisoned"))? = Some(ends);
        Ok(())
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        _engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, SceneError> {
        self.drive(lake, since_start.min(self.observe_for))
            .map_err(|e| err(self, e))?;
        Ok(since_start >= self.observe_for)
    }
}
