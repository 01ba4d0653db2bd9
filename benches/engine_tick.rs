#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One engine tick over N instant probes, each with a threshold symptom evaluated on its history.
//!
//! Run: `cargo bench -p rb-benches --bench engine_tick`. Results and the per-probe overhead are recorded
//! in `benches/README.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

fn bench_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_tick");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    for n in [1_000usize, 10_000] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
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
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("instant_probes", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    rt.block_on(async {
                        tokio::time::advance(secs(1)).await;
                        let start = Instant::now();
                        let r = engine.tick().await.expect("tick");
                        total += start.elapsed();
                        assert_eq!(r.probes_run, n);
                    });
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_tick);
criterion_main!(benches);
