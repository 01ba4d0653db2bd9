//! Fake loki (being built).
