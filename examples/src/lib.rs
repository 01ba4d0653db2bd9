//! Runnable examples of rb live in this package's `[[example]]` targets (`cargo run -p rb-examples --example lakehouse`).
