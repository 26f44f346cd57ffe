//! The daemon's work: when the daily cycle is due (schedule), and the running daemon that
//! ticks, claims jobs from the job table (`store::queue`) and syncs (daemon).

pub mod daemon;
pub mod schedule;
