//! Runnable examples of rb live in this package's `[[example]]` targets:
//! `cargo run -p rb-examples --example lakehouse`.
//!
//! The library part holds what the examples and their tests share: [`lakehouse`], the seed runbook
//! as code.
//!
//! The repository README is compiled and run here as a doc test, so its examples cannot rot.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub mod lakehouse;
