//! Fake trino (being built).
