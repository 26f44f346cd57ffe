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
pub mod memory;
pub mod model;
pub mod permissions;
pub mod server;
pub mod settings;
#[cfg(any(test, feature = "simulator"))]
pub mod simulated;
pub mod sources;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod token;

/// The version and the git commit this binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("ROSTERSYNC_COMMIT");
/// What `--version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ROSTERSYNC_COMMIT"),
    ")"
);

/// `rostersync_build_info{version, commit} 1`: which build a metrics scrape came from.
pub fn record_build_info() {
    metrics::gauge!("rostersync_build_info", "version" => VERSION, "commit" => COMMIT).set(1.0);
}
