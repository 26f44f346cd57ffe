//! rostersync: a roster synchronization daemon for Dutch schools.
//! The binary is a thin shell over this library; tests use both.

#![deny(
    clippy::unwrap_used,
    clippy::panic,
    clippy::todo,
    clippy::unimplemented,
    clippy::await_holding_lock
)]

pub mod admin;
pub mod api;
pub mod cli;
pub mod jobs;
pub mod model;
pub mod rights;
pub mod server;
pub mod settings;
#[cfg(any(test, feature = "simulator"))]
pub mod simulated;
pub mod sources;
pub mod store;
pub mod sync;
pub mod telemetry;
