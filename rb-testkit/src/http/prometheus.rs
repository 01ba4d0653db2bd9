//! Fake prometheus (being built).
