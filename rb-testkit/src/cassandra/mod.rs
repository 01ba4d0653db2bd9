//! Fake Cassandra ring (being built).
