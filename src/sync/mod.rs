//! The sync engine. The pure core (plain data in, verdicts and plans out, no I/O): health
//! judges each source's answer; merge, diff, brakes and permissions follow it; journal words
//! the changes; report counts them.
//! The shell: run runs one school against the store, cycle runs many schools.

pub mod approve;
pub mod brakes;
pub mod connection;
pub mod cycle;
pub mod diff;
pub mod digest;
pub mod explain;
pub mod health;
pub mod identity;
pub mod journal;
pub mod merge;
pub mod permissions;
pub mod report;
pub mod rollover;
pub mod run;
pub mod summer;
pub mod undo;
