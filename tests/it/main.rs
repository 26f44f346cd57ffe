//! rostersync's integration tests: one binary (one link step on two cores).
//! Every test runs against a real SQLite file, or, with ROSTERSYNC_TEST_POSTGRES set to a
//! server URL, against a fresh database on that PostgreSQL server.

mod api;
mod broker;
mod config;
mod console;
mod contention;
mod daemon;
mod faults;
mod identity;
mod install;
mod listener;
mod local;
mod rights;
mod rollover;
mod roster;
mod school_links;
mod simulate;
mod store;
mod support;
mod sync;
mod tls;
mod undo;
mod zermelo;
