//! nessie: filled by the real-peer tier work.
