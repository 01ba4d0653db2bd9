//! Fake nessie (being built).
