//! The daemon's work: when the daily cycle is due (schedule), the job table with leases
//! (queue), and the running daemon that ticks, claims and syncs (daemon).

pub mod daemon;
pub mod queue;
pub mod schedule;
