//! Left only for `timers.rs`, which is to be reworked on its own: the
//! helpers that lived here are in the test kit (`herald_testkit`) now, and
//! this re-exports the one it still names. New tests use the kit directly.

pub use herald_testkit::wait::until;
