//! Snapshots straight from the simulator, through the real UWLR answer and parser but without
//! HTTP: for the engine's tests and benchmarks, where the network is not what is measured.

use chrono::Utc;
use connector_api::Snapshot;
use connector_sim::SimSchool;
use connector_sim::uwlr::{Operation, answer};
use connector_uwlr::parse::{Answer, parse_answer};

/// The school as the LAS connector would hand it over (2.2, all in one).
pub fn snapshot(school: &SimSchool) -> Snapshot {
    let xml = answer(school, Operation::AllInOne, "2.2", &[]);
    let mut parsed = match parse_answer(xml.as_bytes()) {
        Ok(Answer::Data(p)) => *p,
        // The simulator's answers are valid by construction (and tested against the XSD).
        other => unreachable!("a simulated answer did not parse: {other:?}"),
    };
    connector_uwlr::integrity::check(&mut parsed, &Default::default());
    parsed.into_snapshot(Utc::now())
}
