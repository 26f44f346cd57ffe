//! Any bytes into the UWLR answer parser, whole and through the integrity rules: it must
//! return an answer or an error, never panic, and never accept a truncated document.
#![no_main]

use std::collections::HashSet;

use connector_uwlr::parse::{Answer, parse_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Answer::Data(mut parsed)) = parse_answer(data) {
        connector_uwlr::integrity::check(&mut parsed, &HashSet::new());
        // A document that parsed whole must not parse once its last closing tag is cut off.
        if let Some(end) = data.iter().rposition(|b| *b == b'>') {
            assert!(parse_answer(&data[..end]).is_err(), "a truncated answer was accepted");
        }
    }
});
