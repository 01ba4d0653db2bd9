//! Fake kafka_connect (being built).
