//! rb probes.
