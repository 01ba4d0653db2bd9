//! The lakehouse runbook's Flink situations through all five phases on the real servers of the
//! tier (not dry-run), asserting on the servers' own state afterwards.
//!
//! * **Kafka backlog** — the real `orders-enrichment` job (a `flink-connector-kafka` source reading
//!   `orders` as group `flink-orders`, committing offsets on checkpoints, each subtask enriching at
//!   most 1,000 records/s) falls behind a producer writing 1,400 records/s: the group's lag grows on
//!   the brokers, the backlog playbook opens the incident, diagnoses, rescales the job in place with
//!   the parallelism the autoscaler computes from Flink's own metrics, the lag drains under the same
//!   load, the incident recovers — then Flink's REST API shows the new parallelism and Kafka's own
//!   `kafka-consumer-groups --describe` a small lag. Needs the kafka and flink servers.
//! * **Flink job restarting** — the broken build of `orders-enrichment` fails on a schema change
//!   after every checkpoint and crash-loops through its restart strategy: the playbook opens the
//!   incident, classifies the exception as a schema mismatch, waits for a human to deploy the fixed
//!   JAR (the scripted human uploads it as `orders-enrichment.jar` and says so), restores the job
//!   from its latest retained checkpoint, the incident recovers — then Flink shows the broken job
//!   CANCELED and the fixed one RUNNING, restored from that checkpoint, without restarts, taking new
//!   checkpoints. Needs the flink server.
//!
//! Each test skips (with a message) when a server it needs was not started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use rb_core::{Event, Incident, Resolution};
use rb_examples::lakehouse::situations::{flink_restarting, kafka_backlog};
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings};
use rb_peers::flink::FlinkCluster;
use rb_peers::kafka::Kafka;
use rb_peers::lakehouse::{engine, run_until, story};
use rb_peers::PeerEnv;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

/// What a subtask of the Kafka job enriches a second.
const PER_SUBTASK: u32 = 1_000;
/// What the producer writes a second (over both partitions): more than one subtask does, less
/// than two do.
const PRODUCE_PER_SECOND: u64 = 1_400;
/// Partitions of `orders`.
const PARTITIONS: i32 = 2;
/// Records on each partition before the job starts (the seed's threshold is 5,000 a partition).
const PRELOAD: i64 = 5_500;
/// Flink's per-second meters (records/s, busy time) average over the last 60 s: the job has run at
/// full load long enough when its source vertex reports this share of what it really does.
const WARM: f64 = 0.8;
/// How often the Kafka job checkpoints (and so commits its offsets), ms.
const CHECKPOINT_MS: &str = "250";
/// A lag this small on every partition is "drained" (a fraction of a second of production).
const SMALL_LAG: i64 = 1_000;

/// The env file, when every key in `needs` is there; else why the test is skipped.
fn env_with(needs: &[&str]) -> Option<PeerEnv> {
    let env = match PeerEnv::load() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("SKIPPED: {e:#}");
            return None;
        }
    };
    let missing: Vec<&str> = needs
        .iter()
        .copied()
        .filter(|k| env.opt(k).is_none())
        .collect();
    if missing.is_empty() {
        Some(env)
    } else {
        eprintln!(
            "SKIPPED: the env file has no {} — start those servers (peers/run.sh kafka flink)",
            missing.join(", ")
        );
        None
    }
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Per partition of `orders`: log-end offset minus the group's committed offset (the whole log
/// when nothing is committed).
async fn lags(kafka: &Kafka) -> Result<Vec<i64>> {
    let committed = kafka
        .committed(kafka_backlog::GROUP, kafka_backlog::TOPIC, PARTITIONS)
        .await?;
    let bootstrap = kafka.bootstrap.clone();
    let ends = tokio::task::spawn_blocking(move || -> Result<Vec<i64>> {
        let consumer: BaseConsumer = client(&bootstrap).create().context("consumer")?;
        (0..PARTITIONS)
            .map(|p| {
                consumer
                    .fetch_watermarks(kafka_backlog::TOPIC, p, Duration::from_secs(5))
                    .map(|(_, high)| high)
                    .with_context(|| format!("watermarks of {}/{p}", kafka_backlog::TOPIC))
            })
            .collect()
    })
    .await??;
    Ok(ends
        .iter()
        .zip(&committed)
        .map(|(end, c)| end - c.unwrap_or(0))
        .collect())
}

/// A fresh `orders` topic and no offsets left for `flink-orders` by an earlier run.
async fn fresh_topic(kafka: &Kafka) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        client(&kafka.bootstrap).create().context("admin client")?;
    // both may not exist: their answers are not errors of the test
    let _ = kafka.delete_topic(kafka_backlog::TOPIC).await;
    let _ = admin
        .delete_groups(&[kafka_backlog::GROUP], &AdminOptions::new())
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match kafka.create_topic(kafka_backlog::TOPIC, PARTITIONS).await {
            Ok(()) => break,
            // a deletion still under way
            Err(e) if Instant::now() < deadline => {
                eprintln!("creating {}: {e:#}; retrying", kafka_backlog::TOPIC);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let left = lags(kafka).await?;
    anyhow::ensure!(
        left.iter().all(|l| *l == 0),
        "fresh {} still shows a lag for {}: {left:?}",
        kafka_backlog::TOPIC,
        kafka_backlog::GROUP
    );
    Ok(())
}

/// Writes records to `orders` at a rate that can be changed while it runs, alternating
/// partitions, until stopped.
struct Producer {
    stop: Arc<AtomicBool>,
    rate: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Producer {
    fn start(bootstrap: &str, per_second: u64) -> Result<Self> {
        let producer: FutureProducer = client(bootstrap)
            .set("acks", "1")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "10000")
            .create()
            .context("creating the producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let rate = Arc::new(AtomicU64::new(per_second));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, rate2, sent2) = (stop.clone(), rate.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let mut last = Instant::now();
            let mut due = 0.0_f64;
            let mut n: u64 = 0;
            while !stop2.load(Ordering::SeqCst) {
                let now = Instant::now();
                due += now.duration_since(last).as_secs_f64() * rate2.load(Ordering::SeqCst) as f64;
                last = now;
                let mut pending = Vec::new();
                while (n as f64) < due {
                    let p = i32::try_from(n % PARTITIONS as u64).unwrap_or(0);
                    let payload = format!(
                        "{{\"order\":{n},\"customer\":{},\"amount\":\"{}.{:02}\"}}",
                        n % 97,
                        n % 500,
                        n % 100
                    );
                    let key = format!("o{n}");
                    let record = FutureRecord::to(kafka_backlog::TOPIC)
                        .partition(p)
                        .key(&key)
                        .payload(&payload);
                    pending.push(
                        producer
                            .send_result(record)
                            .map_err(|(e, _)| anyhow!("enqueueing order {n}: {e}"))?,
                    );
                    n += 1;
                }
                for f in pending {
                    f.await
                        .context("delivery future dropped")?
                        .map_err(|(e, _)| anyhow!("delivering to orders: {e}"))?;
                }
                sent2.store(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        });
        Ok(Self {
            stop,
            rate,
            sent,
            task,
        })
    }

    /// Write `per_second` records a second from now on.
    fn set_rate(&self, per_second: u64) {
        self.rate.store(per_second, Ordering::SeqCst);
    }

    /// Stop it; how many records it wrote.
    async fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.context("producer task")??;
        Ok(self.sent.load(Ordering::SeqCst))
    }
}

fn mine(incidents: Vec<Incident>, playbook: &str) -> Option<Incident> {
    incidents
        .into_iter()
        .filter(|i| i.record.playbook == playbook)
        .min_by_key(|i| i.timeline.first().map(|e| e.at))
}

/// The first vertex (source + enrichment) and every other vertex's parallelism, and the
/// resource requirements the adaptive scheduler holds for the first.
async fn parallelism(job: &FlinkCluster) -> Result<(Vec<u64>, Value)> {
    let vertices: Vec<u64> = job.vertices().await?.into_iter().map(|(_, p)| p).collect();
    let reqs = job
        .get(&format!("/jobs/{}/resource-requirements", job.job_id()))
        .await?;
    Ok((vertices, reqs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn a_backlog_on_the_topic_a_real_flink_job_reads_is_drained_by_rescaling_it() {
    let Some(env) = env_with(&["KAFKA_BOOTSTRAP", "FLINK_URL"]) else {
        return;
    };
    let kafka = Kafka::from_env(&env).unwrap();
    let flink = FlinkCluster::from_env(&env).unwrap();
    let t0 = Instant::now();

    flink
        .cancel_named(kafka_backlog::JOB, Duration::from_secs(60))
        .await
        .unwrap();
    fresh_topic(&kafka).await.unwrap();
    kafka
        .produce(kafka_backlog::TOPIC, PARTITIONS, PRELOAD)
        .await
        .unwrap();
    let rate = PER_SUBTASK.to_string();
    let job = flink
        .submit_jar(
            flink.kafka_jar().unwrap(),
            "orders-kafka.jar",
            &[
                kafka_backlog::JOB,
                &kafka.bootstrap,
                kafka_backlog::TOPIC,
                kafka_backlog::GROUP,
                &rate,
                CHECKPOINT_MS,
            ],
        )
        .await
        .unwrap();
    // while the job warms up the producer writes what one subtask enriches: the backlog holds
    let producer = Producer::start(&kafka.bootstrap, u64::from(PER_SUBTASK)).unwrap();
    let outcome = backlog_phases(&kafka, &job, &producer).await;
    let sent = producer.stop().await;
    // the ground truth once the producer stopped: Kafka's own tool
    let rows = kafka.describe_group(kafka_backlog::GROUP).await;
    let (vertices, reqs) = parallelism(&job).await.unwrap_or_default();
    let status = job.job_status().await;
    let _ = flink
        .cancel_named(kafka_backlog::JOB, Duration::from_secs(60))
        .await;
    let _ = kafka.delete_topic(kafka_backlog::TOPIC).await;
    let (engine, drained_after) = outcome.unwrap();
    let journal = story(&engine).await;
    eprintln!(
        "backlog: {} records produced, lag small again {drained_after:?} after the incident closed; {:.1}s in all",
        sent.unwrap(),
        t0.elapsed().as_secs_f64()
    );

    let inc = mine(engine.incidents().await.unwrap(), kafka_backlog::PLAYBOOK)
        .ok_or_else(|| anyhow!("no incident; the journal:\n{journal}"))
        .unwrap();
    assert_eq!(inc.resolution, Some(Resolution::Recovered), "{journal}");
    assert_eq!(
        inc.record.key.get("group").map(String::as_str),
        Some(kafka_backlog::GROUP)
    );
    assert_eq!(
        inc.record.key.get("topic").map(String::as_str),
        Some(kafka_backlog::TOPIC)
    );
    assert_eq!(
        inc.applied_actions(),
        vec!["flink.rescale".to_string()],
        "{journal}"
    );
    // Flink says: the job runs, its source + enrichment vertex on more subtasks than the one it
    // fell behind with, as the scheduler was asked
    assert_eq!(status.unwrap(), "RUNNING", "{journal}");
    assert!(
        vertices.len() == 2 && vertices[0] >= 2,
        "{vertices:?}; {journal}"
    );
    let first = job.vertices().await.map(|v| v[0].0.clone()).ok();
    let upper = first.and_then(|id| {
        reqs.pointer(&format!("/{id}/parallelism/upperBound"))
            .and_then(Value::as_u64)
    });
    assert_eq!(upper, Some(vertices[0]), "{reqs}");
    // Kafka says: every partition of the group is (nearly) caught up
    let rows = rows.unwrap();
    let ours: Vec<_> = rows
        .iter()
        .filter(|r| r.topic == kafka_backlog::TOPIC)
        .collect();
    assert_eq!(ours.len(), PARTITIONS as usize, "{rows:?}");
    for r in ours {
        let lag = r.lag.unwrap_or(i64::MAX);
        assert!(
            lag < SMALL_LAG,
            "partition {} lag {lag}: {rows:?}",
            r.partition
        );
    }
}

/// Run the backlog playbook until its incident closes, then until the lag is small again while the
/// producer still writes; the engine and how long the drain took after the close.
async fn backlog_phases(
    kafka: &Kafka,
    job: &FlinkCluster,
    producer: &Producer,
) -> Result<(rb_core::Engine, Duration)> {
    job.wait_checkpoints(1, Duration::from_secs(60)).await?;
    // a job in production has run for a while before a backlog: Flink's meters of its throughput
    // and busy time (the autoscaler's inputs) cover a full load
    let warm = Instant::now();
    wait_load_metrics(job, Duration::from_secs(90)).await?;
    eprintln!(
        "the job's meters show its full load after {:.1}s",
        warm.elapsed().as_secs_f64()
    );
    // then the input outgrows what one subtask does
    producer.set_rate(PRODUCE_PER_SECOND);
    let endpoints = Endpoints {
        kafka_bootstrap: kafka.bootstrap.clone(),
        flink: job.url().to_string(),
        ..Endpoints::default()
    };
    let systems = Systems::new(endpoints, Credentials::default(), Timings::fast())?;
    let playbooks = kafka_backlog::playbooks(&systems)?;
    let engine = engine(playbooks).await?;
    let t0 = Instant::now();
    let mut ticks = 0u32;
    run_until(&engine, Duration::from_secs(150), |incidents| {
        let closed =
            mine(incidents, kafka_backlog::PLAYBOOK).is_some_and(|i| i.resolution.is_some());
        ticks += 1;
        let show = ticks % 5 == 0;
        async move {
            if show {
                // the lag per partition as the brokers see it, for the test's log
                let (lag, p) = (lags(kafka).await?, job.vertices().await?);
                eprintln!(
                    "{:>5.1}s lag {lag:?} parallelism {:?}",
                    t0.elapsed().as_secs_f64(),
                    p.iter().map(|v| v.1).collect::<Vec<_>>()
                );
            }
            Ok(closed)
        }
    })
    .await?;
    let closed_at = Instant::now();
    let deadline = closed_at + Duration::from_secs(60);
    loop {
        let now = lags(kafka).await?;
        if now.iter().all(|l| *l < SMALL_LAG) {
            return Ok((engine, closed_at.elapsed()));
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the lag did not drain below {SMALL_LAG} a partition within 60 s of the close: {now:?}; the journal:\n{}",
                story(&engine).await
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Wait until every vertex of `job` reports its records/s and busy time, the source's at least
/// [`WARM`] of what a subtask enriches.
async fn wait_load_metrics(job: &FlinkCluster, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let mut ready = true;
        let mut last = Value::Null;
        for (i, (vid, _)) in job.vertices().await?.iter().enumerate() {
            let rate = if i == 0 {
                "numRecordsOutPerSecond"
            } else {
                "numRecordsInPerSecond"
            };
            let v = job
                .get(&format!(
                    "/jobs/{}/vertices/{vid}/subtasks/metrics?get={rate},busyTimeMsPerSecond&agg=sum,avg",
                    job.job_id()
                ))
                .await?;
            let get = |id: &str, agg: &str| {
                v.as_array()
                    .and_then(|a| a.iter().find(|m| m["id"] == id))
                    .and_then(|m| m[agg].as_f64())
            };
            let rate_now = get(rate, "sum");
            ready &= rate_now.is_some_and(|r| i > 0 || r >= WARM * f64::from(PER_SUBTASK))
                && get("busyTimeMsPerSecond", "avg").is_some();
            last = v;
        }
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "job {} has no load metrics after {within:?}: {last}",
                job.job_id()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn a_crash_looping_job_waits_for_the_fixed_jar_then_is_restored_from_its_checkpoint() {
    let Some(env) = env_with(&["FLINK_URL"]) else {
        return;
    };
    let flink = FlinkCluster::from_env(&env).unwrap();
    let t0 = Instant::now();
    flink
        .cancel_named(flink_restarting::JOB, Duration::from_secs(60))
        .await
        .unwrap();
    flink
        .delete_jars_named(flink_restarting::JAR_NAME)
        .await
        .unwrap();
    let broken = flink
        .submit_jar(
            flink.orders_jar().unwrap(),
            "orders-enrichment-broken.jar",
            &[flink_restarting::JOB, "50", "crash"],
        )
        .await
        .unwrap();
    let outcome = crash_phases(&flink).await;
    let jobs = flink.jobs_named(flink_restarting::JOB).await;
    // the fixed job's own view, read before it is cancelled
    // the jobs of that name from the broken one on (an earlier test may have run one of that name)
    let jobs = jobs.map(|all| {
        let from = all
            .iter()
            .position(|(id, _)| id == broken.job_id())
            .unwrap_or(all.len());
        all[from..].to_vec()
    });
    let fixed = match &jobs {
        Ok(since) => since.get(1).map(|(id, _)| flink.with_job(id)),
        Err(_) => None,
    };
    let fixed_view = match &fixed {
        Some(f) => Some((
            f.job_status().await,
            f.checkpoints().await,
            f.wait_checkpoints(1, Duration::from_secs(30)).await,
            f.num_restarts().await,
        )),
        None => None,
    };
    let broken_view = broken.checkpoints().await;
    let _ = flink
        .cancel_named(flink_restarting::JOB, Duration::from_secs(60))
        .await;
    let _ = flink.delete_jars_named(flink_restarting::JAR_NAME).await;
    let engine = outcome.unwrap();
    let journal = story(&engine).await;
    eprintln!("crash loop: {:.1}s in all", t0.elapsed().as_secs_f64());

    let inc = mine(
        engine.incidents().await.unwrap(),
        flink_restarting::PLAYBOOK,
    )
    .ok_or_else(|| anyhow!("no incident; the journal:\n{journal}"))
    .unwrap();
    assert_eq!(inc.resolution, Some(Resolution::Recovered), "{journal}");
    assert_eq!(
        inc.record.key.get("job").map(String::as_str),
        Some(flink_restarting::JOB)
    );
    // the human deployed the fixed JAR, then rb restored: nothing else was applied
    assert!(
        inc.timeline
            .iter()
            .any(|e| matches!(e.event, Event::TaskDone { .. })),
        "{journal}"
    );
    assert_eq!(
        inc.applied_actions(),
        vec!["flink.restore".to_string()],
        "{journal}"
    );

    // Flink says: from the broken job on, two jobs of that name, the broken one CANCELED (by the
    // restore), the fixed one running from the broken one's latest retained checkpoint, without restarts, checkpointing
    let jobs = jobs.unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(
        jobs[0],
        (broken.job_id().to_string(), "CANCELED".to_string()),
        "{jobs:?}"
    );
    let (status, cps, newer, restarts) = fixed_view.expect("a second job");
    assert_eq!(status.unwrap(), "RUNNING", "{journal}");
    let cps = cps.unwrap();
    let restored = cps
        .pointer("/latest/restored/external_path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let broken_latest = broken_view
        .unwrap()
        .pointer("/latest/completed/external_path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // a completed checkpoint of the broken job, the latest when the restore was planned (the
    // broken job may complete one more before it is cancelled)
    let chk = |p: &str| {
        p.rsplit("/chk-")
            .next()
            .and_then(|n| n.trim_end_matches('/').parse::<u64>().ok())
    };
    assert!(
        restored.contains(&format!("/{}/chk-", broken.job_id()))
            && chk(&restored).is_some()
            && chk(&restored) <= chk(&broken_latest)
            && chk(&restored) >= chk(&broken_latest).map(|n| n.saturating_sub(3)),
        "restored from {restored:?}, the broken job's latest checkpoint is {broken_latest:?}"
    );
    assert!(newer.unwrap() >= 1, "the fixed job takes checkpoints");
    assert_eq!(
        restarts.unwrap().unwrap_or(0),
        0,
        "the fixed job does not restart"
    );
}

/// Run the restarting playbook with a scripted human who deploys the fixed JAR when asked, until
/// the incident closes.
async fn crash_phases(flink: &FlinkCluster) -> Result<rb_core::Engine> {
    let endpoints = Endpoints {
        flink: flink.url().to_string(),
        ..Endpoints::default()
    };
    let systems = Systems::new(endpoints, Credentials::default(), Timings::fast())?;
    let engine = engine(flink_restarting::playbooks(&systems)).await?;
    let jar = flink.orders_jar()?.to_path_buf();
    let mut deployed = false;
    run_until(&engine, Duration::from_secs(150), |incidents| {
        let inc = mine(incidents, flink_restarting::PLAYBOOK);
        let asked = inc.as_ref().is_some_and(|i| {
            i.timeline.iter().any(|e| {
                matches!(&e.event, Event::TaskAssigned { task, .. } if task.contains(flink_restarting::JAR_NAME))
            })
        });
        let deploy_now = asked && !deployed;
        if deploy_now {
            deployed = true;
        }
        let closed = inc.as_ref().is_some_and(|i| i.resolution.is_some());
        let id = inc.map(|i| i.record.id);
        let (engine, jar) = (&engine, &jar);
        async move {
            if let (true, Some(id)) = (deploy_now, id) {
                // the scripted human deploys the fixed build, then says so
                flink.upload_jar(jar, flink_restarting::JAR_NAME).await?;
                engine
                    .complete_task(&id, flink_restarting::DEPLOY_STEP, "flink admin (scripted)")
                    .await?;
            }
            Ok(closed)
        }
    })
    .await?;
    Ok(engine)
}
