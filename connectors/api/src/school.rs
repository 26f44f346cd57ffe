//! School identity (BRIN + dependance code) and the Dutch school year.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

/// A school location: its BRIN (`99XX`) and dependance code (`00`). Printed as `99XX00`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchoolId {
    brin: String,
    dependance: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "'{input}' is not a school ID: expected a BRIN of two digits and two letters with an optional \
     two-digit dependance code, as 99XX00, 99XX or 99XX.00"
)]
pub struct SchoolIdError {
    input: String,
}

impl SchoolId {
    pub fn new(brin: &str, dependance: &str) -> Result<Self, SchoolIdError> {
        let joined = format!("{brin}{dependance}");
        joined.parse()
    }

    pub fn brin(&self) -> &str {
        &self.brin
    }

    /// The dependance code; `00` when the school has none ("00 means the same as empty").
    pub fn dependance(&self) -> &str {
        &self.dependance
    }
}

impl FromStr for SchoolId {
    type Err = SchoolIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || SchoolIdError {
            input: input.chars().take(32).collect(),
        };
        let cleaned: String = input
            .trim()
            .chars()
            .filter(|c| *c != '.' && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        if !(cleaned.len() == 4 || cleaned.len() == 6) || !cleaned.is_ascii() {
            return Err(err());
        }
        let (brin, dependance) = cleaned.split_at(4);
        let b = brin.as_bytes();
        let brin_ok = b[0].is_ascii_digit()
            && b[1].is_ascii_digit()
            && b[2].is_ascii_uppercase()
            && b[3].is_ascii_uppercase();
        let dep_ok = dependance.bytes().all(|c| c.is_ascii_digit());
        if !brin_ok || !dep_ok {
            return Err(err());
        }
        Ok(SchoolId {
            brin: brin.to_owned(),
            dependance: if dependance.is_empty() {
                "00".to_owned()
            } else {
                dependance.to_owned()
            },
        })
    }
}

impl fmt::Display for SchoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.brin, self.dependance)
    }
}

/// A Dutch school year such as `2025-2026`. A new year starts on 1 August.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchoolYear {
    start: i32,
}

impl SchoolYear {
    pub fn starting(start: i32) -> Self {
        SchoolYear { start }
    }

    /// The school year a date falls in: before August it is the year that started last summer.
    pub fn containing(date: NaiveDate) -> Self {
        let start = if date.month() >= 8 {
            date.year()
        } else {
            date.year() - 1
        };
        SchoolYear { start }
    }

    pub fn start_year(self) -> i32 {
        self.start
    }

    pub fn next(self) -> Self {
        SchoolYear {
            start: self.start + 1,
        }
    }
}

impl fmt::Display for SchoolYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.start + 1)
    }
}

impl FromStr for SchoolYear {
    type Err = String;

    /// Accepts `2025-2026` and ParnasSys' `2025 / 2026`; the second year must follow the first.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let (a, b) = compact
            .split_once(['-', '/'])
            .ok_or_else(|| format!("'{s}' is not a school year like 2025-2026"))?;
        let (a, b): (i32, i32) = match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(format!("'{s}' is not a school year like 2025-2026")),
        };
        if b != a + 1 || !(1900..=2999).contains(&a) {
            return Err(format!(
                "'{s}' is not a school year: the second year must follow the first"
            ));
        }
        Ok(SchoolYear { start: a })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn school_id_accepts_the_three_spellings() {
        for input in ["99XX00", "99xx", "99XX.00", " 99XX-00 "] {
            let id: SchoolId = input.parse().expect("valid");
            assert_eq!(id.to_string(), "99XX00");
            assert_eq!(id.brin(), "99XX");
            assert_eq!(id.dependance(), "00");
        }
        assert_eq!(
            "12AB01".parse::<SchoolId>().map(|s| s.to_string()),
            Ok("12AB01".into())
        );
    }

    #[test]
    fn school_id_rejects_garbage() {
        for input in [
            "", "9XX00", "99X100", "XX9900", "99XX0", "99XX000", "99ÄX00", "99XXAB",
        ] {
            assert!(
                input.parse::<SchoolId>().is_err(),
                "{input} should be rejected"
            );
        }
    }

    #[test]
    fn school_year_turns_on_the_first_of_august() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).expect("valid date");
        assert_eq!(
            SchoolYear::containing(d(2026, 7, 31)).to_string(),
            "2025-2026"
        );
        assert_eq!(
            SchoolYear::containing(d(2026, 8, 1)).to_string(),
            "2026-2027"
        );
        assert_eq!(
            "2024 / 2025".parse::<SchoolYear>(),
            Ok(SchoolYear::starting(2024))
        );
        assert!("2024-2026".parse::<SchoolYear>().is_err());
    }
}
