//! Helpers for the binary's tests: a driven `peerkv` process, and the library tests' waits.

#![allow(dead_code)]

pub mod process;

// The library's test helpers (waits with deadlines, percentiles), shared rather than copied.
#[path = "../../../peerkv/tests/common/mod.rs"]
mod shared;
#[allow(unused_imports)]
pub use shared::*;
