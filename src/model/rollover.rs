//! The school year's calendar as rostersync keeps it: when a LAS is asked for next year
//! (`prepare_from`) and when next year becomes the live one (`switch_on`). Pure functions of
//! the date they are given.

use chrono::{Datelike, NaiveDate};
use connector_api::SchoolYear;
use serde::{Deserialize, Serialize};

/// A day of the year written `MM-DD` (`rollover.prepare_from`, `rollover.switch_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthDay {
    pub month: u32,
    pub day: u32,
}

impl MonthDay {
    pub fn of(date: NaiveDate) -> MonthDay {
        MonthDay {
            month: date.month(),
            day: date.day(),
        }
    }
}

impl std::str::FromStr for MonthDay {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a day of the year like 08-01 (MM-DD)");
        let (m, d) = text.trim().split_once('-').ok_or_else(bad)?;
        let (month, day) = (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
        // A leap year has every day a year can have.
        NaiveDate::from_ymd_opt(2024, month, day).ok_or_else(bad)?;
        Ok(MonthDay { month, day })
    }
}

impl std::fmt::Display for MonthDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

/// What the switch to a prepared year will change, in the words of `rollover status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    /// Pupils who stay, in another year group.
    pub moving_up: usize,
    /// Pupils who leave (the last year group, and anyone else gone next year).
    pub leaving: usize,
    /// Pupils who are new next year (the first year group, and new pupils in others).
    pub arriving: usize,
    /// Staff who teach a group next year they do not teach now.
    pub teachers_with_new_groups: usize,
    pub groups_ending: usize,
    pub groups_beginning: usize,
    /// Pupils next year.
    pub pupils: usize,
}

/// When next year is prepared and when it goes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    pub prepare_from: MonthDay,
    pub switch_on: MonthDay,
}

impl Default for Calendar {
    /// 1 June and 1 August: Dutch schools plan next year's groups in June, the school year
    /// starts on 1 August.
    fn default() -> Self {
        Calendar {
            prepare_from: MonthDay { month: 6, day: 1 },
            switch_on: MonthDay { month: 8, day: 1 },
        }
    }
}

impl Calendar {
    /// The live school year on `date`: the one that began at the last `switch_on`.
    pub fn live_year(&self, date: NaiveDate) -> SchoolYear {
        if MonthDay::of(date) >= self.switch_on {
            SchoolYear::starting(date.year())
        } else {
            SchoolYear::starting(date.year() - 1)
        }
    }

    /// Whether next year is asked for on `date`: from `prepare_from` until `switch_on`.
    pub fn preparing(&self, date: NaiveDate) -> bool {
        let today = MonthDay::of(date);
        self.prepare_from <= today && today < self.switch_on
    }

    /// The year a LAS may answer with instead of the live one on `date`: next year, in the
    /// preparing weeks (a LAS that rolled over early), else none.
    pub fn early_year(&self, date: NaiveDate) -> Option<SchoolYear> {
        self.preparing(date).then(|| self.live_year(date).next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn the_year_turns_on_switch_on_and_next_year_is_asked_for_before() {
        let c = Calendar::default();
        assert_eq!(c.live_year(day(2027, 7, 31)).to_string(), "2026-2027");
        assert_eq!(c.live_year(day(2027, 8, 1)).to_string(), "2027-2028");
        assert_eq!(c.live_year(day(2027, 1, 15)).to_string(), "2026-2027");
        assert!(!c.preparing(day(2027, 5, 31)));
        assert!(c.preparing(day(2027, 6, 1)));
        assert!(c.preparing(day(2027, 7, 31)));
        assert!(!c.preparing(day(2027, 8, 1)));
        assert_eq!(
            c.early_year(day(2027, 6, 20))
                .map(|y| y.to_string())
                .as_deref(),
            Some("2027-2028")
        );
        assert_eq!(c.early_year(day(2027, 9, 1)), None);
        let late = Calendar {
            switch_on: "08-20".parse().expect("day"),
            ..Calendar::default()
        };
        assert_eq!(late.live_year(day(2027, 8, 10)).to_string(), "2026-2027");
        assert!(late.preparing(day(2027, 8, 10)));
    }

    #[test]
    fn days_of_the_year_are_checked() {
        assert_eq!(
            "06-01".parse::<MonthDay>(),
            Ok(MonthDay { month: 6, day: 1 })
        );
        assert_eq!(
            "02-29"
                .parse::<MonthDay>()
                .map(|d| d.to_string())
                .as_deref(),
            Ok("02-29")
        );
        for bad in ["13-01", "02-30", "0801", "aug-1", ""] {
            assert!(bad.parse::<MonthDay>().is_err(), "{bad}");
        }
    }
}
