//! The sync engine's pure core: plain data in, verdicts and plans out, no I/O.
//! health judges each source's answer; merge, diff, brakes and grants follow it.

pub mod brakes;
pub mod diff;
pub mod health;
pub mod identity;
pub mod merge;
