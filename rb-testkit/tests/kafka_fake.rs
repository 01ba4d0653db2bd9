//! The fake Kafka against a real client: rdkafka reads exactly the lag the fake seeded, the way a
//! lag probe does (one OffsetFetch for committed offsets, one batched ListOffsets per leader for
//! log-end offsets), under timelines and faults.
#![cfg(feature = "kafka")]
// Helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use rb_testkit::kafka::{
    count_requests, requests_by_broker, seeded_lags, BrokerError, FakeKafka, FakeKafkaError,
    KafkaApi, LagTimeline,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer of `group` that never subscribes: what a lag probe uses.
fn probe_consumer(fake: &FakeKafka, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", fake.bootstrap_servers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

fn partitions_tpl(topic: &str, partitions: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(partitions as usize);
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    tpl
}

/// Forces a metadata refresh and checks the client now knows `brokers` brokers.
fn refresh_metadata(c: &BaseConsumer, topic: &str, brokers: usize) {
    let md = c.fetch_metadata(Some(topic), TIMEOUT).unwrap();
    assert_eq!(md.brokers().len(), brokers);
}

/// Committed offsets per partition through one OffsetFetch (`None`: no committed offset).
fn read_committed(c: &BaseConsumer, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let got = c
        .committed_offsets(partitions_tpl(topic, partitions), TIMEOUT)
        .unwrap();
    let mut out = vec![None; partitions as usize];
    for e in got.elements_for_topic(topic) {
        e.error().unwrap();
        out[e.partition() as usize] = match e.offset() {
            Offset::Offset(o) => Some(o),
            Offset::Invalid => None,
            other => panic!(
                "partition {}: unexpected committed offset {other:?}",
                e.partition()
            ),
        };
    }
    out
}

/// Log-end offsets per partition through batched ListOffsets (`Err`: that partition's error).
fn read_ends(c: &BaseConsumer, topic: &str, partitions: i32) -> Vec<Result<i64, String>> {
    let mut tpl = partitions_tpl(topic, partitions);
    tpl.set_all_offsets(Offset::End).unwrap();
    let got = c.offsets_for_times(tpl, TIMEOUT).unwrap();
    let mut out = vec![Err("missing from the answer".to_owned()); partitions as usize];
    for e in got.elements_for_topic(topic) {
        out[e.partition() as usize] = match (e.error(), e.offset()) {
            (Err(err), _) => Err(err.to_string()),
            (Ok(()), Offset::Offset(o)) => Ok(o),
            (Ok(()), other) => Err(format!("offset {other:?}")),
        };
    }
    out
}

/// `end - committed` per partition as a probe computes it.
fn read_lag(c: &BaseConsumer, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let committed = read_committed(c, topic, partitions);
    let ends = read_ends(c, topic, partitions);
    committed
        .into_iter()
        .zip(ends)
        .enumerate()
        .map(|(p, (c, e))| {
            let end = e.unwrap_or_else(|err| panic!("partition {p}: {err}"));
            c.map(|c| end - c)
        })
        .collect()
}

#[test]
fn handle_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<FakeKafka>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_reads_exact_seeded_lag_3_brokers_64_partitions() {
    let started = Instant::now();
    let fake = FakeKafka::start(3).unwrap();
    eprintln!("3-broker mock cluster started in {:?}", started.elapsed());
    fake.create_topic("orders", 64, 3).unwrap();
    for broker in fake.broker_ids() {
        let led = fake.partitions_led_by("orders", broker).unwrap();
        assert!(
            led.len() == 21 || led.len() == 22,
            "broker {broker}: {led:?}"
        );
        assert!(led.iter().all(|&p| p % 3 == broker - 1));
    }

    // The leaders the fake reports are the ones the cluster's metadata announces.
    let probe = probe_consumer(&fake, "flink-orders");
    let md = probe.fetch_metadata(Some("orders"), TIMEOUT).unwrap();
    assert_eq!(md.brokers().len(), 3);
    for p in md.topics()[0].partitions() {
        assert_eq!(
            Some(p.leader()),
            fake.partition_leader("orders", p.id()).unwrap(),
            "partition {}",
            p.id()
        );
        assert_eq!(p.replicas().len(), 3);
    }

    let lags = seeded_lags(7, 64, 0..=5_000).unwrap();
    fake.set_lag("flink-orders", "orders", &lags).unwrap();
    let truth: Vec<Option<i64>> = lags.iter().map(|&l| Some(l)).collect();
    assert_eq!(fake.lag("flink-orders", "orders").unwrap(), truth);

    let consumer = probe;
    assert_eq!(read_lag(&consumer, "orders", 64), truth);
    // Log-end offsets from the broker are the fake's model, too.
    let ends: Vec<i64> = read_ends(&consumer, "orders", 64)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ends, fake.end_offsets("orders").unwrap());
    // Per-partition watermarks (one request each: fine for a few partitions) agree.
    for p in [0, 31, 63] {
        let (low, high) = consumer.fetch_watermarks("orders", p, TIMEOUT).unwrap();
        assert_eq!(low, 0);
        assert_eq!(high, ends[p as usize]);
    }
    assert_eq!(
        fake.total_lag("flink-orders", "orders").unwrap(),
        lags.iter().sum::<i64>()
    );

    // Another group on the same topic is independent.
    fake.set_uniform_lag("audit", "orders", 3).unwrap();
    let audit = probe_consumer(&fake, "audit");
    assert_eq!(read_lag(&audit, "orders", 64), vec![Some(3); 64]);
    assert_eq!(read_lag(&consumer, "orders", 64), truth);
}

#[test]
fn rdkafka_reads_exact_seeded_lag_2000_partitions() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("events", 2_000, 1).unwrap();
    let lags = seeded_lags(2_000, 2_000, 0..=200).unwrap();

    let seeding = Instant::now();
    fake.set_lag("sink", "events", &lags).unwrap();
    let seeding = seeding.elapsed();
    eprintln!(
        "seeded 2,000 partitions ({} records) in {seeding:?}",
        lags.iter().sum::<i64>()
    );
    assert!(seeding < Duration::from_secs(20), "{seeding:?}");

    let consumer = probe_consumer(&fake, "sink");
    let reading = Instant::now();
    let read = read_lag(&consumer, "events", 2_000);
    let reading = reading.elapsed();
    eprintln!("read 2,000 partitions in {reading:?}");
    assert!(reading < Duration::from_secs(5), "{reading:?}");
    let truth: Vec<Option<i64>> = lags.iter().map(|&l| Some(l)).collect();
    assert_eq!(read, truth);

    // Draining everything is one OffsetCommit.
    let drain = Instant::now();
    fake.set_uniform_lag("sink", "events", 0).unwrap();
    eprintln!("drained 2,000 partitions in {:?}", drain.elapsed());
    assert_eq!(read_lag(&consumer, "events", 2_000), vec![Some(0); 2_000]);

    // One record on every partition: the cost is per record, not per partition.
    let touch = Instant::now();
    fake.produce_all("events", &[1; 2_000]).unwrap();
    let touch = touch.elapsed();
    eprintln!("one record to each of 2,000 partitions in {touch:?}");
    assert!(touch < Duration::from_secs(5), "{touch:?}");
    assert_eq!(read_lag(&consumer, "events", 2_000), vec![Some(1); 2_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_lag_moves_down_by_committing_and_up_by_producing() {
    let fake = FakeKafka::start(2).unwrap();
    fake.create_topic("t", 8, 2).unwrap();
    let consumer = probe_consumer(&fake, "g");

    fake.set_uniform_lag("g", "t", 100).unwrap();
    assert_eq!(read_lag(&consumer, "t", 8), vec![Some(100); 8]);
    let ends0 = fake.end_offsets("t").unwrap();
    let committed0 = fake.committed("g", "t").unwrap();

    // Down: the log stays, the group commits forward.
    fake.set_uniform_lag("g", "t", 30).unwrap();
    assert_eq!(fake.end_offsets("t").unwrap(), ends0);
    for (p, (before, after)) in committed0
        .iter()
        .zip(fake.committed("g", "t").unwrap())
        .enumerate()
    {
        assert_eq!(after, before.map(|c| c + 70), "partition {p}");
    }
    assert_eq!(read_lag(&consumer, "t", 8), vec![Some(30); 8]);

    // Up: the committed offsets stay, the producers get ahead.
    let committed1 = fake.committed("g", "t").unwrap();
    fake.set_uniform_lag("g", "t", 500).unwrap();
    assert_eq!(fake.committed("g", "t").unwrap(), committed1);
    let ends2: Vec<i64> = read_ends(&consumer, "t", 8)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ends2, ends0.iter().map(|e| e + 470).collect::<Vec<_>>());
    assert_eq!(read_lag(&consumer, "t", 8), vec![Some(500); 8]);

    // Per partition, mixed directions in one call, then one partition alone.
    let mixed = vec![0, 1, 499, 500, 501, 10_000, 7, 250];
    fake.set_lag("g", "t", &mixed).unwrap();
    fake.set_partition_lag("g", "t", 6, 4_321).unwrap();
    let mut expected: Vec<Option<i64>> = mixed.iter().map(|&l| Some(l)).collect();
    expected[6] = Some(4_321);
    assert_eq!(fake.lag("g", "t").unwrap(), expected);
    assert_eq!(read_lag(&consumer, "t", 8), expected);
}

#[test]
fn log_end_and_explicit_commits_are_read_back() {
    let fake = FakeKafka::start(1).unwrap();
    fake.create_topic("t", 3, 1).unwrap();
    assert_eq!(fake.produce("t", 0, 10).unwrap(), 10);
    fake.set_end_offset("t", 1, 1_234).unwrap();
    fake.produce_all("t", &[1, 2, 3]).unwrap();
    assert_eq!(fake.end_offsets("t").unwrap(), vec![11, 1_236, 3]);
    assert_eq!(
        fake.set_end_offset("t", 1, 5),
        Err(FakeKafkaError::EndOffsetBackwards {
            topic: "t".to_owned(),
            partition: 1,
            current: 1_236,
            requested: 5
        })
    );

    // Commit forward, backward (a reset) and beyond the log end (negative lag).
    fake.commit_all("g", "t", &[11, 2_000, 0]).unwrap();
    fake.commit("g", "t", 0, 4).unwrap();
    assert_eq!(
        fake.lag("g", "t").unwrap(),
        vec![Some(7), Some(1_236 - 2_000), Some(3)]
    );
    let consumer = probe_consumer(&fake, "g");
    assert_eq!(
        read_committed(&consumer, "t", 3),
        vec![Some(4), Some(2_000), Some(0)]
    );
    assert_eq!(read_lag(&consumer, "t", 3), fake.lag("g", "t").unwrap());
    assert!(matches!(
        fake.commit("g", "t", 0, -1),
        Err(FakeKafkaError::NegativeOffset { .. })
    ));
}

#[test]
fn partition_without_committed_offset_stays_without_one() {
    let fake = FakeKafka::start(2).unwrap();
    fake.create_topic("t", 4, 1).unwrap();
    fake.produce_all("t", &[50, 50, 50, 50]).unwrap();
    fake.set_partition_lag("g", "t", 0, 20).unwrap();
    fake.set_partition_lag("g", "t", 2, 80).unwrap(); // needs 30 more records first

    assert_eq!(
        fake.lag("g", "t").unwrap(),
        vec![Some(20), None, Some(80), None]
    );
    assert_eq!(fake.end_offsets("t").unwrap(), vec![50, 50, 80, 50]);
    let consumer = probe_consumer(&fake, "g");
    // OffsetFetch answers -1 (no offset) for partitions 1 and 3.
    assert_eq!(
        read_committed(&consumer, "t", 4),
        vec![Some(30), None, Some(0), None]
    );
    assert_eq!(read_lag(&consumer, "t", 4), fake.lag("g", "t").unwrap());
    // A group that never committed has no offsets at all.
    assert_eq!(fake.lag("other", "t").unwrap(), vec![None; 4]);
    assert_eq!(
        read_committed(&probe_consumer(&fake, "other"), "t", 4),
        vec![None; 4]
    );
}

#[test]
fn timeline_ticks_apply_every_due_step_in_order() {
    let fake = FakeKafka::start(2).unwrap();
    fake.create_topic("t", 4, 1).unwrap();
    let mut timeline = LagTimeline::new("g", "t")
        .step(Duration::ZERO, 0)
        .linear(
            Duration::from_secs(10),
            Duration::from_secs(40),
            1_000,
            4_000,
            3,
        )
        .step(Duration::from_secs(60), vec![0, 10, 20, 30]);
    assert_eq!(timeline.tick(&fake, Duration::ZERO).unwrap(), 1);
    assert_eq!(fake.total_lag("g", "t").unwrap(), 0);
    assert_eq!(timeline.tick(&fake, Duration::from_secs(9)).unwrap(), 0);
    assert_eq!(timeline.tick(&fake, Duration::from_secs(20)).unwrap(), 2);
    assert_eq!(fake.lag("g", "t").unwrap(), vec![Some(2_000); 4]);
    // Jumping past several steps still applies each: the log grew to the 4,000 peak before draining.
    assert_eq!(timeline.tick(&fake, Duration::from_secs(100)).unwrap(), 3);
    assert!(timeline.is_finished());
    assert_eq!(fake.end_offsets("t").unwrap(), vec![4_000; 4]);
    assert_eq!(
        fake.lag("g", "t").unwrap(),
        vec![Some(0), Some(10), Some(20), Some(30)]
    );
    let consumer = probe_consumer(&fake, "g");
    assert_eq!(read_lag(&consumer, "t", 4), fake.lag("g", "t").unwrap());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timeline_drives_on_paused_tokio_time() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 6, 1).unwrap();
    let timeline = LagTimeline::new("flink-orders", "orders")
        .linear(Duration::ZERO, Duration::from_secs(60), 0, 12_000, 4)
        .linear(
            Duration::from_secs(120),
            Duration::from_secs(300),
            12_000,
            0,
            6,
        );
    let last = timeline.steps().last().unwrap().at;

    let wall = Instant::now();
    let start = tokio::time::Instant::now();
    let task = timeline.spawn(fake.clone());

    // Observe mid-scenario on the same (virtual) clock: at 90 s the lag peaked at 12,000.
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(
        fake.lag("flink-orders", "orders").unwrap(),
        vec![Some(12_000); 6]
    );
    // At 160 s the drain steps of 120 s (12,000) and 150 s (10,000) were applied.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert_eq!(
        fake.lag("flink-orders", "orders").unwrap(),
        vec![Some(10_000); 6]
    );

    task.await.unwrap().unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= last && elapsed < last + Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(20),
        "{:?}",
        wall.elapsed()
    );
    assert_eq!(fake.total_lag("flink-orders", "orders").unwrap(), 0);
    assert_eq!(fake.end_offsets("orders").unwrap(), vec![12_000; 6]);
    let consumer = probe_consumer(&fake, "flink-orders");
    assert_eq!(read_lag(&consumer, "orders", 6), vec![Some(0); 6]);
}

#[test]
fn broker_down_fails_only_its_partitions() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("t", 12, 1).unwrap();
    fake.set_group_coordinator("g", 1).unwrap();
    let lags: Vec<i64> = (0..12).map(|p| 10 * p + 1).collect();
    fake.set_lag("g", "t", &lags).unwrap();
    // Move partition 2 off broker 3 first: it must keep answering.
    fake.set_partition_leader("t", 2, Some(1)).unwrap();
    let down: Vec<i32> = fake.partitions_led_by("t", 3).unwrap();
    assert_eq!(down, vec![5, 8, 11]);

    let consumer = probe_consumer(&fake, "g");
    assert_eq!(
        read_lag(&consumer, "t", 12),
        lags.iter().map(|&l| Some(l)).collect::<Vec<_>>()
    );

    fake.broker_down(3).unwrap();
    assert_eq!(fake.down_brokers().unwrap(), vec![3]);
    // Until the client refreshes its metadata it still routes broker 3's partitions there (and the
    // batched request times out as a whole); a probe refreshes metadata after such a timeout.
    refresh_metadata(&consumer, "t", 2);
    let reading = Instant::now();
    let committed = read_committed(&consumer, "t", 12);
    let ends = read_ends(&consumer, "t", 12);
    eprintln!("read with broker 3 down in {:?}", reading.elapsed());
    let model = fake.offsets("g", "t").unwrap();
    for p in 0..12 {
        // Committed offsets come from the coordinator (broker 1): all present.
        assert_eq!(committed[p], model[p].committed, "partition {p}");
        if down.contains(&(p as i32)) {
            assert!(
                ends[p].is_err(),
                "partition {p} led by the downed broker: {:?}",
                ends[p]
            );
        } else {
            assert_eq!(ends[p], Ok(model[p].end_offset), "partition {p}");
        }
    }

    fake.broker_up(3).unwrap();
    assert!(fake.down_brokers().unwrap().is_empty());
    // The client reconnects with backoff: allow a bounded number of attempts.
    let mut recovered = false;
    for _ in 0..20 {
        refresh_metadata(&consumer, "t", 3);
        if read_ends(&consumer, "t", 12).iter().all(Result::is_ok) {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(recovered, "broker 3's partitions did not come back");
    assert_eq!(
        read_lag(&consumer, "t", 12),
        lags.iter().map(|&l| Some(l)).collect::<Vec<_>>()
    );
}

#[test]
fn rtt_injection_is_measurable() {
    let fake = FakeKafka::start(2).unwrap();
    fake.create_topic("t", 4, 1).unwrap();
    fake.set_uniform_lag("g", "t", 5).unwrap();
    let consumer = probe_consumer(&fake, "g");
    read_lag(&consumer, "t", 4); // connections and coordinator are warm

    let timed = |consumer: &BaseConsumer| {
        let t = Instant::now();
        assert_eq!(read_committed(consumer, "t", 4), vec![Some(0); 4]);
        t.elapsed()
    };
    let baseline = timed(&consumer);
    fake.set_rtt_all(Duration::from_millis(200)).unwrap();
    let slow = timed(&consumer);
    fake.set_rtt_all(Duration::ZERO).unwrap();
    let fast = timed(&consumer);
    eprintln!("OffsetFetch: baseline {baseline:?}, 200 ms RTT {slow:?}, restored {fast:?}");
    assert!(slow >= Duration::from_millis(180), "{slow:?}");
    assert!(slow < Duration::from_secs(5), "{slow:?}");
    assert!(fast < Duration::from_millis(180), "{fast:?}");

    // One broker only: the partitions it leads slow down ListOffsets.
    fake.set_rtt(2, Duration::from_millis(200)).unwrap();
    let t = Instant::now();
    assert!(read_ends(&consumer, "t", 4).iter().all(Result::is_ok));
    assert!(
        t.elapsed() >= Duration::from_millis(180),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(
        fake.set_rtt(3, Duration::ZERO),
        Err(FakeKafkaError::UnknownBroker {
            broker: 3,
            brokers: 2
        })
    ));
}

#[test]
fn injected_request_errors_fail_the_next_requests() {
    let fake = FakeKafka::start(1).unwrap();
    fake.create_topic("t", 2, 1).unwrap();
    fake.set_uniform_lag("g", "t", 4).unwrap();

    // The fake's own seeding goes through the same brokers: the next OffsetCommit is refused.
    fake.request_errors(
        KafkaApi::OffsetCommit,
        &[BrokerError::GroupAuthorizationFailed],
    )
    .unwrap();
    let err = fake.set_uniform_lag("g", "t", 1).unwrap_err();
    assert!(matches!(err, FakeKafkaError::Commit { .. }), "{err}");
    assert_eq!(fake.lag("g", "t").unwrap(), vec![Some(4); 2]);
    fake.set_uniform_lag("g", "t", 1).unwrap();
    assert_eq!(fake.lag("g", "t").unwrap(), vec![Some(1); 2]);

    // A client reading committed offsets sees the injected OffsetFetch error.
    let consumer = probe_consumer(&fake, "g");
    read_lag(&consumer, "t", 2);
    fake.request_errors(
        KafkaApi::OffsetFetch,
        &[BrokerError::GroupAuthorizationFailed],
    )
    .unwrap();
    let fetched = consumer.committed_offsets(partitions_tpl("t", 2), TIMEOUT);
    let failed = match &fetched {
        Err(_) => true,
        Ok(tpl) => tpl.elements().iter().any(|e| e.error().is_err()),
    };
    assert!(failed, "OffsetFetch error was not seen: {fetched:?}");
    // Queued errors can be cleared before they are consumed.
    fake.request_errors(
        KafkaApi::OffsetFetch,
        &[BrokerError::GroupAuthorizationFailed],
    )
    .unwrap();
    fake.clear_request_errors(KafkaApi::OffsetFetch).unwrap();
    assert_eq!(
        read_committed(&consumer, "t", 2),
        fake.committed("g", "t").unwrap()
    );
}

#[test]
fn dropping_the_last_handle_stops_the_cluster() {
    let fake = FakeKafka::start(2).unwrap();
    let addrs: Vec<String> = fake
        .bootstrap_servers()
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(addrs.len(), 2);
    for addr in &addrs {
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        std::net::TcpStream::connect(addr).unwrap();
    }
    let clone = fake.clone();
    drop(fake);
    // The clone keeps it alive.
    std::net::TcpStream::connect(&addrs[0]).unwrap();
    clone.create_topic("t", 1, 1).unwrap();
    let t = Instant::now();
    drop(clone);
    eprintln!("stopped in {:?}", t.elapsed());
    for addr in &addrs {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still listening"
        );
    }
}

// ---- request record ---------------------------------------------------------------------------

#[test]
fn a_fresh_cluster_has_an_empty_request_record() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 8, 1).unwrap();
    // Topic creation is a control operation: no request. The cluster's owning client sends none,
    // not even after librdkafka's 1 s "keep one connection" timer.
    std::thread::sleep(Duration::from_millis(1_300));
    assert_eq!(fake.requests().unwrap(), vec![]);
}

#[test]
fn request_record_holds_seeding_traffic_with_broker_ids_and_api_names() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 64, 3).unwrap();
    fake.set_uniform_lag("flink-orders", "orders", 10).unwrap();

    let record = fake.requests().unwrap();
    assert!(!record.is_empty());
    for r in &record {
        assert!((1..=3).contains(&r.broker), "{r:?}");
        assert_ne!(r.api_name(), "Unknown", "{r:?}");
    }
    // One mock thread serves every broker: the record is in receive order.
    assert!(record.windows(2).all(|w| w[0].at_micros <= w[1].at_micros));
    // set_uniform_lag: produce to the 64 partitions (spread over the three leaders), one commit
    // and the OffsetFetch that reads it back.
    let produce = requests_by_broker(&record, KafkaApi::Produce);
    assert_eq!(produce.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(count_requests(&record, KafkaApi::OffsetCommit), 1);
    assert_eq!(count_requests(&record, KafkaApi::OffsetFetch), 1);
    assert!(count_requests(&record, KafkaApi::ApiVersions) >= 1);
    assert_eq!(
        record
            .iter()
            .filter(|r| r.api() == Some(KafkaApi::Produce))
            .count(),
        produce.values().sum::<usize>()
    );

    fake.clear_requests().unwrap();
    let after = fake.requests().unwrap();
    assert_eq!(count_requests(&after, KafkaApi::Produce), 0, "{after:?}");
    assert_eq!(
        count_requests(&after, KafkaApi::OffsetCommit),
        0,
        "{after:?}"
    );

    // Clones share the record.
    let clone = fake.clone();
    fake.commit("flink-orders", "orders", 5, 0).unwrap();
    assert_eq!(clone.request_count(KafkaApi::OffsetCommit).unwrap(), 1);
    assert_eq!(fake.request_count(KafkaApi::OffsetCommit).unwrap(), 1);
}

#[test]
fn lag_probe_costs_o_brokers_requests_not_o_partitions() {
    let fake = FakeKafka::start(3).unwrap();
    fake.create_topic("orders", 64, 3).unwrap();
    let lags = seeded_lags(11, 64, 0..=2_000).unwrap();
    fake.set_lag("flink-orders", "orders", &lags).unwrap();
    fake.clear_requests().unwrap();

    let probe = probe_consumer(&fake, "flink-orders");
    // Committed offsets of all 64 partitions: exactly one OffsetFetch.
    let committed = read_committed(&probe, "orders", 64);
    let offset_fetch = fake.request_count(KafkaApi::OffsetFetch).unwrap();
    eprintln!("committed_offsets, 64 partitions: {offset_fetch} OffsetFetch");
    assert_eq!(offset_fetch, 1);

    // Log-end offsets of all 64 partitions: at most one ListOffsets per leader broker.
    fake.clear_requests().unwrap();
    let ends = read_ends(&probe, "orders", 64);
    let list_offsets = fake.requests_by_broker(KafkaApi::ListOffsets).unwrap();
    eprintln!("offsets_for_times(End), 64 partitions: ListOffsets per broker {list_offsets:?}");
    assert!(!list_offsets.is_empty());
    assert!(list_offsets.keys().all(|b| (1..=3).contains(b)));
    assert!(list_offsets.values().all(|&n| n == 1), "{list_offsets:?}");
    assert!(list_offsets.values().sum::<usize>() <= 3);

    // The reading is right, too.
    let read: Vec<Option<i64>> = committed
        .iter()
        .zip(&ends)
        .map(|(c, e)| c.map(|c| e.as_ref().unwrap() - c))
        .collect();
    assert_eq!(read, lags.iter().map(|&l| Some(l)).collect::<Vec<_>>());

    // The naive way, one fetch_watermarks per partition, costs a request (or two) per partition.
    fake.clear_requests().unwrap();
    for p in 0..8 {
        probe.fetch_watermarks("orders", p, TIMEOUT).unwrap();
    }
    let naive = fake.request_count(KafkaApi::ListOffsets).unwrap();
    eprintln!("fetch_watermarks over 8 partitions: {naive} ListOffsets");
    assert!(naive >= 8, "{naive}");
}
