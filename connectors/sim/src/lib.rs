//! The simulator: a generated world of schools served as a real LAS over HTTP on loopback.
//! It backs `rostersync simulate`, the demo, the integration tests and load tests, so it
//! follows the wire protocol as faithfully as the connectors do.

pub mod broker;
mod broker_http;
mod names;
pub mod pki;
pub mod portal;
mod portal_http;
pub mod refuse;
pub mod school;
pub mod server;
pub mod uwlr;
pub mod world;

pub use pki::ClientCert;
pub use school::{SchoolKind, SimSchool};
pub use server::SimServer;
pub use world::{
    Answering, DayReport, Fault, FaultPlan, SchoolAccess, Summer, SummerMix, TERMINAL_ATTACK, World,
};
