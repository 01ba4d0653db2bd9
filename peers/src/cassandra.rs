//! cassandra: filled by the real-peer tier work.
