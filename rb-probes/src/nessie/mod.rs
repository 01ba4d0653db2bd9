//! Nessie probes (in progress).
