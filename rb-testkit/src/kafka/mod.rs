//! Fake Kafka (being built).
