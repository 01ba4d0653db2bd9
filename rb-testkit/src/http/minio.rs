//! Fake minio (being built).
