//! peers.
