//! The school year's calendar as rostersync keeps it: when a LAS is asked for next year
//! (`prepare_from`) and when next year becomes the live one (`switch_on`). Pure functions of
//! the date they are given.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use connector_api::SchoolYear;
use serde::{Deserialize, Serialize};

use super::GroupState;

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

    /// The day `year` begins: its `switch_on` (29 February, in a year without one, is
    /// 1 March).
    pub fn first_day(&self, year: SchoolYear) -> NaiveDate {
        on(year.start_year(), self.switch_on)
    }

    /// The last day of `year`: the day before the next one begins.
    pub fn last_day(&self, year: SchoolYear) -> NaiveDate {
        on(year.start_year() + 1, self.switch_on)
            .pred_opt()
            .unwrap_or(NaiveDate::MIN)
    }
}

fn on(year: i32, day: MonthDay) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, day.month, day.day)
        .or_else(|| NaiveDate::from_ymd_opt(year, 3, 1))
        .unwrap_or(NaiveDate::MIN)
}

/// The sourcedId a group new in `year` gets when the switch creates it: publishers see next
/// year's classes in June by this id, and the class that goes live in August has it. Derived
/// (not drawn) so the prepare step and the switch agree without keeping it anywhere.
pub fn class_sid(school: &str, year: SchoolYear, key: &str) -> String {
    let text = format!("rostersync/next-year-class/{school}/{year}/{key}");
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    // 128 bits, written like a drawn sourcedId.
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A class of a prepared next year, as the OneRoster API lists it in next year's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedClass {
    pub sourced_id: String,
    pub key: String,
    pub name: String,
    pub kind: String,
    pub year_group: Option<String>,
    /// When it last changed: the answer that brought it as it is.
    pub updated_at: DateTime<Utc>,
}

impl PreparedClass {
    /// The same class, whenever it came.
    fn same_as(&self, other: &PreparedClass) -> bool {
        (
            &self.sourced_id,
            &self.key,
            &self.name,
            &self.kind,
            &self.year_group,
        ) == (
            &other.sourced_id,
            &other.key,
            &other.name,
            &other.kind,
            &other.year_group,
        )
    }
}

/// Next year's classes of `school` from its prepared groups. A group that exists (by key,
/// tombstones too: the switch revives those) keeps its sourcedId; a new one gets
/// [`class_sid`]. One unchanged since `before` keeps its time, so a delta shows real changes.
pub fn next_classes(
    school: &str,
    year: SchoolYear,
    groups: &[GroupState],
    existing: &HashMap<String, String>,
    before: &[PreparedClass],
    now: DateTime<Utc>,
) -> Vec<PreparedClass> {
    groups
        .iter()
        .map(|g| {
            let mut c = PreparedClass {
                sourced_id: existing
                    .get(&g.key)
                    .cloned()
                    .unwrap_or_else(|| class_sid(school, year, &g.key)),
                key: g.key.clone(),
                name: g.name.clone(),
                kind: g.kind.as_str().to_owned(),
                year_group: g.year_group.clone(),
                updated_at: now,
            };
            if let Some(b) = before.iter().find(|b| b.same_as(&c)) {
                c.updated_at = b.updated_at;
            }
            c
        })
        .collect()
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
    fn a_school_year_runs_from_switch_on_to_the_day_before_the_next() {
        let year = SchoolYear::starting(2027);
        let c = Calendar::default();
        assert_eq!(
            (c.first_day(year), c.last_day(year)),
            (day(2027, 8, 1), day(2028, 7, 31))
        );
        let leap = Calendar {
            switch_on: "02-29".parse().expect("day"),
            ..Calendar::default()
        };
        assert_eq!(leap.first_day(year), day(2027, 3, 1));
        assert_eq!(leap.last_day(year), day(2028, 2, 28));
    }

    fn group(key: &str, name: &str) -> GroupState {
        GroupState {
            key: key.into(),
            name: name.into(),
            kind: crate::model::GroupKind::Stamgroep,
            year_group: Some("1".into()),
            department: None,
            owner: crate::model::Owner::Las,
        }
    }

    #[test]
    fn next_years_classes_keep_an_existing_id_and_derive_a_new_one() {
        let year = SchoolYear::starting(2027);
        let (then, now) = (
            DateTime::from_timestamp(1_000, 0).expect("time"),
            DateTime::from_timestamp(2_000, 0).expect("time"),
        );
        let existing = HashMap::from([("G5".to_owned(), "live-5".to_owned())]);
        let groups = [group("G5", "Groep 5"), group("G1", "Groep 1")];
        let first = next_classes("s1", year, &groups, &existing, &[], then);
        assert_eq!(first[0].sourced_id, "live-5");
        assert_eq!(first[1].sourced_id, class_sid("s1", year, "G1"));
        assert_eq!(first[1].sourced_id.len(), 32);
        // Derived from school, year and key: another school or year is another class.
        assert_ne!(class_sid("s2", year, "G1"), first[1].sourced_id);
        assert_ne!(class_sid("s1", year.next(), "G1"), first[1].sourced_id);
        // The next answer renames group 1 only: only its time moves.
        let renamed = [group("G5", "Groep 5"), group("G1", "Groep 1/2")];
        let second = next_classes("s1", year, &renamed, &existing, &first, now);
        assert_eq!(second[0].updated_at, then);
        assert_eq!(second[1].updated_at, now);
        assert_eq!(second[1].sourced_id, first[1].sourced_id);
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
