//! rb testkit.
