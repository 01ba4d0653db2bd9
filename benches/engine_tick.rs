#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One engine tick over N instant probes, each with a threshold symptom evaluated on its history.
//!
//! Run: `cargo bench -p rb-benches --bench engine_tick` (`RB_BENCH_SIZES=1000,10000` and
//! `RB_BENCH_SECS=5` choose the probe counts and the measurement time). Results, the per-probe
//! overhead, its CPU time and the memory per probe are recorded in `benches/README.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use rb_core::prelude::*;

#[derive(Debug)]
struct Instant0 {
    target: Target,
}

#[async_trait]
impl Probe for Instant0 {
    fn id(&self) -> &str {
        "bench.instant"
    }
    fn target(&self) -> &Target {
        &self.target
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        Ok(
            Observation::new("bench.instant", &self.target.name, ctx.now()).sample(
                "lag",
                Default::default(),
                10.0,
            ),
        )
    }
}

fn runbook(n: usize) -> Runbook {
    let mut pb = Playbook::new("bench", "bench");
    for i in 0..n {
        let probe = Arc::new(Instant0 {
            target: Target::new("kafka", format!("k{i}")),
        });
        pb = pb.detect(
            probe,
            Schedule::every(secs(1)),
            metric("lag").above(5_000.0).for_at_least(secs(5)),
        );
    }
    Runbook::new("bench").playbook(pb)
}

/// Resident memory of this process, in bytes (Linux `/proc/self/statm`; 0 where there is none).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// CPU time this thread has run, and time it has waited for a CPU while runnable, in nanoseconds
/// (Linux `/proc/thread-self/schedstat`; zeros where there is none). On a machine shared with other
/// work, the CPU time of a tick says what the tick costs where the wall time does not.
fn sched() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut f = s.split_whitespace().map(|n| n.parse::<u64>().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

/// The probe counts measured: `RB_BENCH_SIZES=1000,10000` (default 1,000, 10,000 and 100,000).
fn sizes() -> Vec<usize> {
    std::env::var("RB_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

/// Seconds of measurement per size: `RB_BENCH_SECS` (default 10).
fn measurement() -> Duration {
    Duration::from_secs(
        std::env::var("RB_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    )
}

fn bench_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_tick");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(measurement());
    // every engine stays alive to the end, so that each size's memory is measured on fresh pages
    // (memory freed by a smaller engine and reused would hide part of the next one's)
    let mut keep = Vec::new();
    for n in sizes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let before = rss();
        let engine = rt.block_on(async {
            Engine::builder(runbook(n))
                .max_concurrent_probes(n)
                .build()
                .await
                .expect("engine")
        });
        // warm the histories
        rt.block_on(async {
            for _ in 0..6 {
                tokio::time::advance(secs(1)).await;
                engine.tick().await.expect("tick");
            }
        });
        let grown = rss().saturating_sub(before);
        eprintln!(
            "engine_tick/{n}: resident memory grew by {:.1} MB building the runbook and engine and \
             running 6 ticks: {} bytes per probe",
            grown as f64 / 1e6,
            grown / n as u64
        );
        group.throughput(Throughput::Elements(n as u64));
        // over every measured tick (warm-up included): ticks, CPU time and time waiting for a CPU
        let (mut ticks, mut cpu, mut waited) = (0u64, 0u64, 0u64);
        group.bench_with_input(BenchmarkId::new("instant_probes", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    rt.block_on(async {
                        tokio::time::advance(secs(1)).await;
                        let (cpu0, wait0) = sched();
                        let start = Instant::now();
                        let r = engine.tick().await.expect("tick");
                        total += start.elapsed();
                        let (cpu1, wait1) = sched();
                        ticks += 1;
                        cpu += cpu1.saturating_sub(cpu0);
                        waited += wait1.saturating_sub(wait0);
                        assert_eq!(r.probes_run, n);
                    });
                }
                total
            })
        });
        if ticks > 0 {
            eprintln!(
                "engine_tick/{n}: {ticks} ticks: CPU time {:.2} µs per probe (mean), waited for a \
                 CPU {:.2} µs per probe",
                cpu as f64 / 1e3 / ticks as f64 / n as f64,
                waited as f64 / 1e3 / ticks as f64 / n as f64
            );
        }
        keep.push((rt, engine));
    }
    group.finish();
}

criterion_group!(benches, bench_tick);
criterion_main!(benches);
