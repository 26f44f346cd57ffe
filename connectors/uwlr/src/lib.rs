//! The UWLR connector: SOAP 1.1 `HaalLeerlinggegevens` (alles-in-één) and the getrapte
//! transfer (`HaalStructuur`, `HaalLeerlingen`, `HaalLeerkrachten`), UWLR 2.2 and 2.3, for
//! ParnasSys, ESIS, Somtoday and Magister. Dutch protocol words stay inside this crate.

pub mod integrity;
pub mod parse;
mod xml;

pub use parse::{Answer, ParseError, Parsed, parse_answer};
pub mod client;
pub mod config;
pub mod fault;
pub mod request;

pub use client::{Transfer, UwlrConnector, UwlrSettings};
pub use config::UwlrConfig;
