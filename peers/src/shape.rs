//! JSON shapes, for the differential tests: two answers have the same shape when they have the same
//! field names with the same JSON types, recursively (values may differ). The comparison lives in
//! [`rb_testkit::shape`]; this module re-exports it so `rb_peers::shape::…` keeps working.

pub use rb_testkit::shape::*;
