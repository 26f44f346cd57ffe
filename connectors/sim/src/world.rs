//! The simulated world: schools with their keys, the simulated date, faults on demand, and
//! the day counter that mutates schools the way real ones change overnight.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use connector_api::{SchoolId, SchoolYear};

use crate::broker::BrokerState;
use crate::portal::PortalState;
use crate::school::{SchoolKind, SimSchool, eckid};

/// A misbehaviour a school's LAS shows on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A SOAP fault with this dotted code (`Client.AutorisatieOngeldig`, `Server.InterneFout`, ...).
    Soap(String),
    /// HTTP 503 with `Retry-After` seconds.
    Unavailable { retry_after: u64 },
    /// The answer comes after this long.
    Slow(Duration),
    /// The body breaks off halfway.
    Truncated,
    /// The body is not well-formed XML.
    Malformed,
    /// `geengegevens`.
    NoData,
    /// `geenwijzigingen`, whatever the request.
    Unchanged,
    /// A hostile LAS: terminal escape sequences in a pupil's key attribute.
    HostileKey,
    /// A hostile gateway: HTTP 502 with terminal escape sequences in the body.
    HostileError,
}

/// What a hostile source puts in a string: clear the screen, set the terminal's title, bell.
pub const TERMINAL_ATTACK: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}";

#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub fault: Fault,
    /// How many more answers show it; `None` for every answer.
    pub remaining: Option<u32>,
}

/// How a school's LAS goes through the summer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Summer {
    /// Rolls over on 1 August.
    #[default]
    OnTime,
    /// Rolled over early: from this day (before 1 August) it answers every request with next
    /// year's data.
    Early(NaiveDate),
    /// Rolls over late: until this day (after 1 August) it answers every request with the old
    /// year's data.
    Late(NaiveDate),
}

/// How the schools of a world go through the summer, as shares of them (taken in school
/// order, so the same seed gives the same schools): some roll over late (and have nothing
/// prepared), some early, and of the rest a share has next year prepared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SummerMix {
    pub late: f64,
    pub late_until: NaiveDate,
    pub early: f64,
    pub early_from: NaiveDate,
    pub prepared: f64,
    pub prepared_from: NaiveDate,
}

/// Which data a LAS answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    ThisYear,
    /// Next year's (prepared, or rolled over early).
    NextYear,
    /// The old year's (rolling over late).
    LastYear,
    /// `geengegevens`: next year asked for and not prepared.
    NoData,
}

impl SimSchoolState {
    /// The school as `which` answers it; `None` for no data.
    pub fn as_answered(&self, which: Answering) -> Option<std::borrow::Cow<'_, SimSchool>> {
        use std::borrow::Cow;
        match which {
            Answering::ThisYear => Some(Cow::Borrowed(&self.school)),
            Answering::NextYear => Some(Cow::Owned(next_year(&self.school))),
            Answering::LastYear => Some(Cow::Borrowed(
                self.last_year.as_ref().unwrap_or(&self.school),
            )),
            Answering::NoData => None,
        }
    }
}

pub struct SimSchoolState {
    pub school: SimSchool,
    /// How its LAS goes through the summer.
    pub summer: Summer,
    /// From this day on the LAS has next year prepared and answers a request for it.
    pub prepared_from: Option<NaiveDate>,
    /// The old year, kept while a late LAS still answers with it.
    pub last_year: Option<SimSchool>,
    /// The school's autorisatiesleutel.
    pub key: String,
    pub fault: Option<FaultPlan>,
    /// When the school's data last changed (for `laatstontvangengegevens`).
    pub changed_at: DateTime<Utc>,
    /// Answers served, for tests and support.
    pub requests: u64,
}

/// How to reach one simulated school.
pub struct SchoolAccess {
    pub id: SchoolId,
    pub name: String,
    pub kind: SchoolKind,
    /// The autorisatiesleutel.
    pub key: String,
    pub broker_id: Option<i64>,
    pub portal_token: Option<String>,
}

/// What a day of mutations did, for the demo and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DayReport {
    pub joined: usize,
    pub left: usize,
    pub moved: usize,
    pub renamed: usize,
    pub teachers_moved: usize,
    pub eckids_arrived: usize,
    pub rollover: bool,
}

pub struct World {
    pub seed: u64,
    pub day: u32,
    pub start: NaiveDate,
    pub klantnaam: String,
    pub klantcode: String,
    /// `xsdversie` values the LAS accepts.
    pub versions: Vec<String>,
    pub schools: BTreeMap<SchoolId, SimSchoolState>,
    /// The identity broker's view of the same schools.
    pub broker: BrokerState,
    /// The scheduling portal of the secondary schools.
    pub portal: PortalState,
}

impl World {
    pub fn new(seed: u64, start: NaiveDate) -> World {
        World {
            seed,
            day: 0,
            start,
            klantnaam: "Publisher".into(),
            klantcode: "SIM-KLANTCODE".into(),
            versions: vec!["2.2".into(), "2.3".into()],
            schools: BTreeMap::new(),
            broker: BrokerState::default(),
            portal: PortalState::default(),
        }
    }

    pub fn today(&self) -> NaiveDate {
        self.start + chrono::Days::new(u64::from(self.day))
    }

    pub fn school_year(&self) -> SchoolYear {
        SchoolYear::containing(self.today())
    }

    /// Add a generated school; its key is derived from the seed and the school.
    pub fn add_school(&mut self, id: SchoolId, kind: SchoolKind, pupils: usize) -> &SimSchoolState {
        let n = self.schools.len() as u64;
        let seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(n + 1);
        let school = SimSchool::generate(id.clone(), kind, pupils, self.school_year(), seed);
        let key = format!("SIM-{}-{:08x}", id, seed as u32);
        self.broker.register(&id, self.today());
        if kind == SchoolKind::Secondary {
            self.portal.register(&id, seed);
        }
        self.schools.entry(id).or_insert(SimSchoolState {
            school,
            summer: Summer::OnTime,
            prepared_from: None,
            last_year: None,
            key,
            fault: None,
            changed_at: Utc::now(),
            requests: 0,
        })
    }

    /// How a school's LAS goes through the summer: when it has next year prepared (answers a
    /// request for it), and whether it rolls over early or late.
    pub fn set_summer(&mut self, id: &SchoolId, summer: Summer, prepared_from: Option<NaiveDate>) {
        if let Some(s) = self.schools.get_mut(id) {
            s.summer = summer;
            s.prepared_from = prepared_from;
        }
    }

    /// What a school's LAS answers today to a request for school year `asked`.
    pub fn answering(&self, id: &SchoolId, asked: Option<SchoolYear>) -> Answering {
        let Some(state) = self.schools.get(id) else {
            return Answering::NoData;
        };
        let today = self.today();
        match (state.summer, &state.last_year) {
            (Summer::Late(until), Some(_)) if today < until => return Answering::LastYear,
            (Summer::Early(from), _)
                if today >= from && self.school_year() == state.school.year =>
            {
                return Answering::NextYear;
            }
            _ => {}
        }
        if asked == Some(state.school.year.next()) {
            let prepared = state.prepared_from.is_some_and(|p| today >= p);
            return if prepared {
                Answering::NextYear
            } else {
                Answering::NoData
            };
        }
        Answering::ThisYear
    }

    /// Give every school its summer from `mix`.
    pub fn mix_summer(&mut self, mix: SummerMix) {
        let n = self.schools.len() as f64;
        let count = |share: f64| (share.clamp(0.0, 1.0) * n).round() as usize;
        let (late, early) = (count(mix.late), count(mix.early));
        let prepared = count(mix.prepared);
        for (i, state) in self.schools.values_mut().enumerate() {
            (state.summer, state.prepared_from) = if i < late {
                (Summer::Late(mix.late_until), None)
            } else if i < late + early {
                (Summer::Early(mix.early_from), Some(mix.prepared_from))
            } else if i < late + early + prepared {
                (Summer::OnTime, Some(mix.prepared_from))
            } else {
                (Summer::OnTime, None)
            };
        }
    }

    pub fn set_fault(&mut self, id: &SchoolId, fault: Option<FaultPlan>) {
        if let Some(s) = self.schools.get_mut(id) {
            s.fault = fault;
        }
    }

    /// The school's LAS suddenly lists only part of its pupils (a botched export, a filter
    /// left on): `share` of them, taken from the end, disappear. Returns how many.
    pub fn lose_pupils(&mut self, id: &SchoolId, share: f64) -> usize {
        let Some(state) = self.schools.get_mut(id) else {
            return 0;
        };
        let pupils = &mut state.school.pupils;
        let lost = ((pupils.len() as f64) * share.clamp(0.0, 1.0)).round() as usize;
        pupils.truncate(pupils.len() - lost);
        state.changed_at = Utc::now();
        lost
    }

    /// One night passes: every school changes a little; on 1 August the year rolls over.
    pub fn advance_day(&mut self) -> DayReport {
        self.broker
            .nightly(self.schools.values().map(|s| (&s.school, s.changed_at)));
        let before = self.today();
        self.day += 1;
        let after = self.today();
        let rollover = SimSchool::is_rollover(before, after);
        let year = self.school_year();
        let mut report = DayReport {
            rollover,
            ..DayReport::default()
        };
        let day_seed = self.seed ^ (u64::from(self.day) << 32);
        for (i, state) in self.schools.values_mut().enumerate() {
            let mut rng = fastrand::Rng::with_seed(day_seed.wrapping_add(i as u64));
            if rollover && matches!(state.summer, Summer::Late(_)) {
                state.last_year = Some(state.school.clone());
            }
            if let Summer::Late(until) = state.summer
                && after >= until
            {
                state.last_year = None;
            }
            if rollover {
                state.school = next_year(&state.school);
            } else {
                let s = &mut state.school;
                s.year = year;
                mutate(s, &mut rng, &mut report);
            }
            state.changed_at = Utc::now();
        }
        report
    }

    /// What a configuration needs to reach each school: its LAS key, its broker institution
    /// and its portal token.
    pub fn access(&self) -> Vec<SchoolAccess> {
        self.schools
            .values()
            .map(|s| SchoolAccess {
                id: s.school.id.clone(),
                name: s.school.name.clone(),
                kind: s.school.kind,
                key: s.key.clone(),
                broker_id: self.broker_id(&s.school.id),
                portal_token: self
                    .portal
                    .tokens
                    .get(&s.school.id)
                    .map(|t| t.token.clone()),
            })
            .collect()
    }

    /// The school's current institution id at the broker.
    pub fn broker_id(&self, id: &SchoolId) -> Option<i64> {
        self.broker.institution_of(id).map(|i| i.id)
    }

    /// The school grants (or revokes) the publisher's sync permission at the broker today.
    pub fn set_consent(&mut self, id: &SchoolId, granted: bool) {
        let today = self.today();
        self.broker.set_consent(id, granted, today);
    }

    /// The school merges into a new institution at the broker; returns (old id, new id).
    pub fn merge_at_broker(&mut self, id: &SchoolId) -> Option<(i64, i64)> {
        let today = self.today();
        self.broker.merge(id, today)
    }
}

fn mutate(s: &mut SimSchool, rng: &mut fastrand::Rng, report: &mut DayReport) {
    let n = s.pupils.len();
    let stamgroepen: Vec<(String, Option<String>)> = s
        .groups
        .iter()
        .filter(|g| !g.composed)
        .map(|g| (g.key.clone(), g.year.clone()))
        .collect();
    if stamgroepen.is_empty() {
        return;
    }
    // A new pupil about every other day per 100 pupils.
    for _ in 0..(n / 200).max(1) {
        let (group, gyear) = &stamgroepen[rng.usize(0..stamgroepen.len())];
        let year = match gyear.as_deref() {
            Some("C") | None => "7".to_owned(),
            Some(y) => y.to_owned(),
        };
        s.enrol(rng, group, &year, 0.8);
        report.joined += 1;
    }
    if s.pupils.len() > 2 {
        // A leaver.
        let i = rng.usize(0..s.pupils.len());
        s.pupils.remove(i);
        report.left += 1;
        // A move to another group of the same kind.
        let i = rng.usize(0..s.pupils.len());
        let (group, _) = &stamgroepen[rng.usize(0..stamgroepen.len())];
        if s.pupils[i].group != *group {
            s.pupils[i].group = group.clone();
            report.moved += 1;
        }
        // A corrected family name.
        let i = rng.usize(0..s.pupils.len());
        let p = &mut s.pupils[i].person;
        p.family = Some(format!(
            "{}-{}",
            p.family.as_deref().unwrap_or("Naam"),
            "Hoek"
        ));
        report.renamed += 1;
        // An ECK-iD arrives for a pupil known by key only.
        if let Some(p) = s.pupils.iter_mut().find(|p| p.person.eckid.is_none()) {
            p.person.eckid = Some(eckid(rng));
            report.eckids_arrived += 1;
        }
    }
    // A group teacher swaps to another group.
    let group_teachers: Vec<usize> = (0..s.teachers.len())
        .filter(|&i| {
            s.teachers[i]
                .groups
                .iter()
                .any(|(_, r)| r.iter().any(|r| r == "LRK"))
        })
        .collect();
    if group_teachers.len() >= 2 {
        let a = group_teachers[rng.usize(0..group_teachers.len())];
        let b = group_teachers[rng.usize(0..group_teachers.len())];
        if a != b {
            let ga = s.teachers[a].groups[0].0.clone();
            let gb = s.teachers[b].groups[0].0.clone();
            s.teachers[a].groups[0].0 = gb;
            s.teachers[b].groups[0].0 = ga;
            report.teachers_moved += 2;
        }
    }
}

/// The summer: everyone moves up a year; the oldest leave; a new first year arrives.
/// The school as it will be next school year: everyone moves up, the last year group leaves,
/// a new first year group arrives, two teachers swap groups. Deterministic for a school and
/// year, so a LAS that has next year prepared in June answers what 1 August brings.
pub fn next_year(school: &SimSchool) -> SimSchool {
    let mut s = school.clone();
    // FNV-1a of the school and the year: stable, unlike std's hasher.
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{}{}", s.id, s.year).bytes() {
        seed ^= u64::from(b);
        seed = seed.wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    s.year = s.year.next();
    roll_over(&mut s, &mut rng);
    s
}

fn roll_over(s: &mut SimSchool, rng: &mut fastrand::Rng) {
    let (last, first, first_group): (&str, &str, Option<String>) = match s.kind {
        SchoolKind::Primary => (
            "8",
            "1",
            s.groups
                .iter()
                .find(|g| g.year.as_deref() == Some("1"))
                .map(|g| g.key.clone()),
        ),
        SchoolKind::Secondary => (
            "16",
            "11",
            s.groups
                .iter()
                .find(|g| g.year.as_deref() == Some("11"))
                .map(|g| g.key.clone()),
        ),
    };
    let leaving = s.pupils.iter().filter(|p| p.year == last).count();
    s.pupils.retain(|p| p.year != last);
    for p in &mut s.pupils {
        let next = p
            .year
            .parse::<u32>()
            .map(|y| y + 1)
            .unwrap_or(1)
            .to_string();
        // The pupil's new stamgroep: the group whose jaargroep is the next year (or the
        // combination group that holds it).
        if let Some(g) = s
            .groups
            .iter()
            .find(|g| g.year.as_deref() == Some(next.as_str()))
        {
            p.group = g.key.clone();
        } else if let Some(g) = s.groups.iter().find(|g| g.year.as_deref() == Some("C"))
            && !p.group.starts_with("G78")
        {
            p.group = g.key.clone();
        }
        p.year = next;
    }
    // The intake group is a new group each year (as a LAS that keeps groups per school year
    // has it): a new key, its teachers with it; every other group goes on under its key.
    let first_group = first_group.map(|old| {
        let base = old.split('-').next().unwrap_or(&old).to_owned();
        let new = format!("{base}-{}", s.year.start_year());
        for g in s.groups.iter_mut().filter(|g| g.key == old) {
            g.key = new.clone();
        }
        for t in &mut s.teachers {
            for (key, _) in t.groups.iter_mut().filter(|(k, _)| *k == old) {
                *key = new.clone();
            }
        }
        new
    });
    if let Some(group) = first_group {
        for _ in 0..leaving.max(1) {
            s.enrol(rng, &group, first, 0.8);
        }
    }
    // Two group teachers swap groups: the other teachers keep theirs.
    let with_group: Vec<usize> = (0..s.teachers.len())
        .filter(|i| s.teachers[*i].groups.len() == 1)
        .collect();
    if let [a, b, ..] = with_group[..] {
        let ga = std::mem::take(&mut s.teachers[a].groups);
        let gb = std::mem::replace(&mut s.teachers[b].groups, ga);
        s.teachers[a].groups = gb;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(date: NaiveDate) -> World {
        let mut w = World::new(7, date);
        w.add_school("99XX00".parse().expect("id"), SchoolKind::Primary, 200);
        w
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn the_same_seed_gives_the_same_school() {
        let a = world(day(2025, 10, 1));
        let b = world(day(2025, 10, 1));
        let (sa, sb) = (
            &a.schools.values().next().expect("school").school,
            &b.schools.values().next().expect("school").school,
        );
        assert_eq!(sa.pupils, sb.pupils);
        assert_eq!(sa.teachers, sb.teachers);
        assert_eq!(sa.pupils.len(), 200);
        assert!(
            sa.pupils.iter().any(|p| p.person.prefix.is_some()),
            "voorvoegsels"
        );
    }

    #[test]
    fn big_schools_get_printable_group_names_and_unique_keys() {
        for kind in [SchoolKind::Primary, SchoolKind::Secondary] {
            let mut w = World::new(3, day(2025, 10, 1));
            w.add_school("99XX00".parse().expect("id"), kind, 6000);
            let s = &w.schools.values().next().expect("school").school;
            let keys: std::collections::HashSet<&str> =
                s.groups.iter().map(|g| g.key.as_str()).collect();
            assert_eq!(keys.len(), s.groups.len(), "group keys are unique");
            for g in &s.groups {
                assert!(!g.name.chars().any(char::is_control), "{:?}", g.name);
                assert!(
                    g.key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "{:?}",
                    g.key
                );
            }
        }
    }

    #[test]
    fn a_day_brings_joiners_leavers_moves_and_an_eckid() {
        let mut w = world(day(2025, 10, 1));
        let before = w.schools.values().next().expect("school").school.clone();
        let report = w.advance_day();
        let after = &w.schools.values().next().expect("school").school;
        assert!(
            report.joined >= 1 && report.left == 1 && report.renamed == 1,
            "{report:?}"
        );
        assert_eq!(report.eckids_arrived, 1);
        assert!(!report.rollover);
        assert_ne!(before.pupils, after.pupils);
        let keys: std::collections::HashSet<&str> =
            after.pupils.iter().map(|p| p.person.key.as_str()).collect();
        assert_eq!(keys.len(), after.pupils.len(), "keys stay unique");
    }

    #[test]
    fn the_first_of_august_rolls_the_year_over() {
        let mut w = world(day(2026, 7, 31));
        let eights = w
            .schools
            .values()
            .next()
            .expect("school")
            .school
            .pupils
            .iter()
            .filter(|p| p.year == "8")
            .count();
        assert!(eights > 0);
        let report = w.advance_day();
        assert!(report.rollover);
        let s = &w.schools.values().next().expect("school").school;
        assert_eq!(s.year.to_string(), "2026-2027");
        assert!(
            s.pupils.iter().all(|p| p.year != "9"),
            "no group 9 in a primary school"
        );
        assert!(
            s.pupils.iter().any(|p| p.year == "1"),
            "a new group 1 arrived"
        );
    }
}
