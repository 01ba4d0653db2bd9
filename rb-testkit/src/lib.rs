//! rb-testkit: fake clusters that speak the real protocols, a virtual clock, a scenario harness and
//! mocks of rb-core's traits.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "kafka")]
pub mod kafka;
