//! Fake flink (being built).
