//! rb core.
