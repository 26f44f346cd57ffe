//! The sync engine. The pure core (plain data in, verdicts and plans out, no I/O): health
//! judges each source's answer; merge, diff, brakes and grants follow it; report counts it.
//! The shell: apply runs one school against the store, cycle runs many schools.

pub mod apply;
pub mod brakes;
pub mod connection;
pub mod cycle;
pub mod diff;
pub mod digest;
pub mod explain;
pub mod health;
pub mod identity;
pub mod merge;
pub mod report;
pub mod undo;
