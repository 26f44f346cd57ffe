//! The daemon: it ticks (when the cycle is due is `model::schedule`), and the running daemon
//! claims jobs from the job table (`store::queue`) and syncs.

pub mod daemon;
