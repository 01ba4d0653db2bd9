//! Fake alertmanager (being built).
