//! rb actions.
