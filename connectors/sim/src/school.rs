//! Generated schools: deterministic from a seed, shaped like real Dutch schools.
//! Primary schools have groups 1–8 with a combination group 7/8, composed groups (plusklas,
//! leesgroep), group teachers, a gym teacher, an IB'er without groups and a director;
//! secondary schools have classes per leerjaar with mentors.

use chrono::{Datelike, NaiveDate};
use connector_api::{SchoolId, SchoolYear};

use crate::names::{FAMILY, GIVEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchoolKind {
    Primary,
    Secondary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGroup {
    pub key: String,
    pub name: String,
    /// The UWLR jaargroep (`1`–`8`, `C`, `11`–`16`); `None` for composed groups.
    pub year: Option<String>,
    pub composed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPerson {
    pub key: String,
    pub eckid: Option<String>,
    pub prefix: Option<String>,
    pub family: Option<String>,
    pub given: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPupil {
    pub person: SimPerson,
    pub birth: NaiveDate,
    /// The pupil's own jaargroep (in a combination group it differs per pupil).
    pub year: String,
    pub group: String,
    pub subgroups: Vec<String>,
}

/// (group key, roles for that group) per linked group.
pub type GroupLinks = Vec<(String, Vec<String>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTeacher {
    pub person: SimPerson,
    pub email: String,
    /// School-wide roles (`IB`, `DIR`).
    pub roles: Vec<String>,
    pub groups: GroupLinks,
}

#[derive(Debug, Clone)]
pub struct SimSchool {
    pub id: SchoolId,
    pub name: String,
    pub kind: SchoolKind,
    pub year: SchoolYear,
    pub groups: Vec<SimGroup>,
    pub pupils: Vec<SimPupil>,
    pub teachers: Vec<SimTeacher>,
    /// Sequence for new keys, so keys are never reused after a leaver.
    pub next_key: u32,
}

/// A deterministic ECK-iD of the real lexical form: the prefix and 128 hex digits.
pub fn eckid(rng: &mut fastrand::Rng) -> String {
    let mut s = String::from("https://ketenid.nl/201703/");
    for _ in 0..128 {
        s.push(char::from_digit(rng.u32(0..16), 16).unwrap_or('0'));
    }
    s
}

pub fn person(rng: &mut fastrand::Rng, key: String, eckid_share: f64) -> SimPerson {
    let given = GIVEN[rng.usize(0..GIVEN.len())].to_owned();
    // About one in fifty pupils is known by one name only.
    let (prefix, family) = if rng.f64() < 0.02 {
        (None, None)
    } else {
        let (p, f) = FAMILY[rng.usize(0..FAMILY.len())];
        ((!p.is_empty()).then(|| p.to_owned()), Some(f.to_owned()))
    };
    SimPerson {
        eckid: (rng.f64() < eckid_share).then(|| eckid(rng)),
        key,
        prefix,
        family,
        given,
    }
}

/// A birth date fitting a jaargroep in a school year (group 1 at four, leerjaar 1 at twelve).
pub fn birth_for(rng: &mut fastrand::Rng, year: &str, school_year: SchoolYear) -> NaiveDate {
    let grade: i32 = year.parse().unwrap_or(1);
    let age = if grade >= 11 { grade + 1 } else { grade + 3 };
    let y = school_year.start_year() - age;
    NaiveDate::from_ymd_opt(y, rng.u32(1..=12), rng.u32(1..=28)).unwrap_or(NaiveDate::MIN)
}

/// Parallel groups are a, b, ... z, then a2, b2, ...: big schools run past one alphabet.
fn parallel_suffix(n: usize) -> String {
    let letter = char::from(b'a' + (n % 26) as u8);
    match n / 26 {
        0 => letter.to_string(),
        round => format!("{letter}{}", round + 1),
    }
}

fn email(person: &SimPerson, domain: &str, n: u32) -> String {
    let family: String = person
        .family
        .as_deref()
        .unwrap_or("staf")
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_lowercase();
    let initial = person
        .given
        .chars()
        .next()
        .filter(|c| c.is_ascii_alphabetic())
        .unwrap_or('x')
        .to_ascii_lowercase();
    format!("{initial}.{family}{n}@{domain}")
}

impl SimSchool {
    pub fn generate(
        id: SchoolId,
        kind: SchoolKind,
        pupils: usize,
        year: SchoolYear,
        seed: u64,
    ) -> SimSchool {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut school = SimSchool {
            name: format!(
                "{} {}",
                match kind {
                    SchoolKind::Primary => "Basisschool",
                    SchoolKind::Secondary => "Scholengemeenschap",
                },
                [
                    "De Regenboog",
                    "Het Baken",
                    "De Vlinder",
                    "Sint Jozef",
                    "De Wilgen",
                    "Het Kompas"
                ][rng.usize(0..6)]
            ),
            id,
            kind,
            year,
            groups: Vec::new(),
            pupils: Vec::new(),
            teachers: Vec::new(),
            next_key: 1000,
        };
        match kind {
            SchoolKind::Primary => school.fill_primary(&mut rng, pupils),
            SchoolKind::Secondary => school.fill_secondary(&mut rng, pupils),
        }
        school
    }

    pub fn new_key(&mut self, prefix: &str) -> String {
        self.next_key += 1;
        format!("{prefix}{}", self.next_key)
    }

    /// A new pupil with a fresh key in `group`, in jaargroep `year`.
    pub fn enrol(
        &mut self,
        rng: &mut fastrand::Rng,
        group: &str,
        year: &str,
        eckid_share: f64,
    ) -> &mut SimPupil {
        let key = self.new_key("L");
        self.pupils.push(SimPupil {
            person: person(rng, key, eckid_share),
            birth: birth_for(rng, year, self.year),
            year: year.to_owned(),
            group: group.to_owned(),
            subgroups: Vec::new(),
        });
        let last = self.pupils.len() - 1;
        &mut self.pupils[last]
    }

    /// `n` more teachers, each sharing one main group with its group teacher (duo teaching,
    /// part-timers): large schools have far more staff than groups.
    pub fn add_teachers(&mut self, rng: &mut fastrand::Rng, n: usize) {
        let groups: Vec<String> = self
            .groups
            .iter()
            .filter(|g| !g.composed)
            .map(|g| g.key.clone())
            .collect();
        if groups.is_empty() {
            return;
        }
        let domain = self.domain();
        for i in 0..n {
            let key = self.new_key("M");
            let p = person(rng, key, 0.3);
            self.teachers.push(SimTeacher {
                email: email(&p, &domain, self.next_key),
                person: p,
                roles: Vec::new(),
                groups: vec![(groups[i % groups.len()].clone(), vec!["LRK".to_owned()])],
            });
        }
    }

    fn domain(&self) -> String {
        format!("{}.school.example", self.id.to_string().to_lowercase())
    }

    fn fill_primary(&mut self, rng: &mut fastrand::Rng, pupils: usize) {
        // Parallel groups (a/b) once a year has more than ~30 pupils.
        let per_year = pupils.div_ceil(8).max(1);
        let parallel = per_year.div_ceil(30).max(1);
        let mut stamgroepen = Vec::new();
        for grade in 1..=6u32 {
            for p in 0..parallel {
                let suffix = if parallel > 1 {
                    parallel_suffix(p)
                } else {
                    String::new()
                };
                let key = format!("G{grade}{}", suffix.to_uppercase());
                self.groups.push(SimGroup {
                    name: format!("Groep {grade}{suffix}"),
                    key: key.clone(),
                    year: Some(grade.to_string()),
                    composed: false,
                });
                stamgroepen.push((key, vec![grade.to_string()]));
            }
        }
        // Years 7 and 8 share combination groups: jaargroep C, the year is per pupil.
        for p in 0..(parallel * 2) {
            let suffix = parallel_suffix(p);
            let key = format!("G78{}", suffix.to_uppercase());
            self.groups.push(SimGroup {
                name: format!("Groep 7/8{suffix}"),
                key: key.clone(),
                year: Some("C".into()),
                composed: false,
            });
            stamgroepen.push((key, vec!["7".into(), "8".into()]));
        }
        for (key, name) in [("SG-PLUS", "Plusklas"), ("SG-LEES", "Leesgroep")] {
            self.groups.push(SimGroup {
                key: key.into(),
                name: name.into(),
                year: None,
                composed: true,
            });
        }
        for i in 0..pupils {
            let (group, years) = &stamgroepen[i % stamgroepen.len()];
            let year = years[rng.usize(0..years.len())].clone();
            let pupil = self.enrol(rng, group, &year, 0.8);
            if rng.f64() < 0.06 {
                pupil.subgroups.push("SG-PLUS".to_owned());
            }
            if rng.f64() < 0.08 {
                pupil.subgroups.push("SG-LEES".to_owned());
            }
        }
        let domain = self.domain();
        for (i, (group, _)) in stamgroepen.iter().enumerate() {
            let key = self.new_key("M");
            let p = person(rng, key, 0.3);
            let mut groups = vec![(group.clone(), vec!["LRK".to_owned()])];
            if i == 0 {
                groups.push(("SG-PLUS".into(), Vec::new()));
            }
            self.teachers.push(SimTeacher {
                email: email(&p, &domain, self.next_key),
                person: p,
                roles: Vec::new(),
                groups,
            });
        }
        let specials: [(Vec<String>, GroupLinks); 3] = [
            // The gym teacher teaches every group.
            (
                Vec::new(),
                stamgroepen
                    .iter()
                    .map(|(g, _)| (g.clone(), vec!["VAK".to_owned()]))
                    .collect(),
            ),
            // The IB'er has no groups: "sees all groups" must come from the role.
            (vec!["IB".to_owned()], Vec::new()),
            (vec!["DIR".to_owned()], Vec::new()),
        ];
        for (roles, groups) in specials {
            let key = self.new_key("M");
            let p = person(rng, key, 0.3);
            self.teachers.push(SimTeacher {
                email: email(&p, &domain, self.next_key),
                person: p,
                roles,
                groups,
            });
        }
    }

    fn fill_secondary(&mut self, rng: &mut fastrand::Rng, pupils: usize) {
        let per_year = pupils.div_ceil(6).max(1);
        let classes = per_year.div_ceil(28).max(1);
        let mut keys = Vec::new();
        for leerjaar in 1..=6u32 {
            for c in 0..classes {
                let suffix = parallel_suffix(c);
                let key = format!("{leerjaar}{}", suffix.to_uppercase());
                self.groups.push(SimGroup {
                    name: format!("Klas {leerjaar}{suffix}"),
                    key: key.clone(),
                    year: Some((10 + leerjaar).to_string()),
                    composed: false,
                });
                keys.push((key, (10 + leerjaar).to_string()));
            }
        }
        for i in 0..pupils {
            let (group, year) = &keys[i % keys.len()];
            self.enrol(rng, group, year, 0.9);
        }
        let domain = self.domain();
        for (group, _) in &keys {
            let key = self.new_key("M");
            let p = person(rng, key, 0.5);
            self.teachers.push(SimTeacher {
                email: email(&p, &domain, self.next_key),
                person: p,
                roles: Vec::new(),
                groups: vec![(group.clone(), vec!["LRK".to_owned()])],
            });
        }
    }

    /// The school year a sim date falls in; the rollover happens on 1 August.
    pub fn year_of(date: NaiveDate) -> SchoolYear {
        SchoolYear::containing(date)
    }

    pub fn is_rollover(before: NaiveDate, after: NaiveDate) -> bool {
        Self::year_of(before) != Self::year_of(after) && after.month() >= 8
    }
}
