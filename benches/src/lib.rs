//! Criterion benchmarks of rb live in this package's `[[bench]]` targets; see `benches/README.md`.
