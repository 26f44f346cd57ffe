//! The simulated identity broker (Basispoort REST v2): the same schools as the simulated LAS,
//! with the broker's own person ids, broker-only people and roles (a stagiair, an invaller, an
//! ICT coordinator, IB'ers as IBRTer), consent per school that can be granted and revoked, a
//! merger, a closed school, and a propagation delay: the real broker passes LAS changes on
//! after a night, so for a while the two disagree.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use connector_api::SchoolId;
use serde_json::{Value, json};

use crate::names::{FAMILY, GIVEN};
use crate::school::{SimPerson, SimSchool};

/// First institution id handed out; ids are sequential in the order schools are added.
const FIRST_INSTITUTION: i64 = 1_000_001;

/// What the broker publishes of one school: a copy of the LAS data as of some night.
#[derive(Clone)]
struct Published {
    school: SimSchool,
    changed_at: DateTime<Utc>,
}

pub struct Institution {
    pub id: i64,
    pub school: SchoolId,
    pub consent: bool,
    pub active: bool,
    pub merged_into: Option<i64>,
    /// Oldest first; the broker serves the front. Empty: it serves the LAS as it is now.
    history: VecDeque<Published>,
    /// When the broker's own data (roles, consent-independent) last changed.
    own_changed_at: DateTime<Utc>,
    /// Full overviews served, so tests can see a skipped institution was not fetched.
    pub overviews_served: u64,
    /// Person ids are derived from this: the first institution's id, kept through mergers
    /// (an assumption: the broker's person ids outlive the institution id).
    people_base: i64,
}

/// The broker's side of the world.
pub struct BrokerState {
    pub institutions: BTreeMap<i64, Institution>,
    /// Nights before a LAS change reaches the broker (0: at once).
    pub lag_nights: u32,
    /// (date, institution, granted?) for the daily permission lists.
    events: Vec<(NaiveDate, i64, bool)>,
    /// Institutions the publisher asked for permission (`request-permission=true`).
    pub permission_requests: BTreeSet<i64>,
    next_id: i64,
}

impl Default for BrokerState {
    fn default() -> Self {
        BrokerState {
            institutions: BTreeMap::new(),
            lag_nights: 0,
            events: Vec::new(),
            permission_requests: BTreeSet::new(),
            next_id: FIRST_INSTITUTION,
        }
    }
}

impl BrokerState {
    /// Register a school at the broker, with sync permission granted on `today`.
    pub fn register(&mut self, school: &SchoolId, today: NaiveDate) -> i64 {
        if let Some(i) = self.institution_of(school) {
            return i.id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.institutions.insert(
            id,
            Institution {
                id,
                school: school.clone(),
                consent: true,
                active: true,
                merged_into: None,
                history: VecDeque::new(),
                own_changed_at: Utc::now(),
                overviews_served: 0,
                people_base: id,
            },
        );
        self.events.push((today, id, true));
        id
    }

    /// The current (not merged-away) institution of a school.
    pub fn institution_of(&self, school: &SchoolId) -> Option<&Institution> {
        self.institutions
            .values()
            .find(|i| &i.school == school && i.merged_into.is_none())
    }

    fn current_mut(&mut self, school: &SchoolId) -> Option<&mut Institution> {
        self.institutions
            .values_mut()
            .find(|i| &i.school == school && i.merged_into.is_none())
    }

    pub fn set_consent(&mut self, school: &SchoolId, granted: bool, today: NaiveDate) {
        if let Some(i) = self.current_mut(school)
            && i.consent != granted
        {
            i.consent = granted;
            let id = i.id;
            self.events.push((today, id, granted));
        }
    }

    /// The school closes: the broker still answers, with `actief = false`.
    pub fn close(&mut self, school: &SchoolId) {
        if let Some(i) = self.current_mut(school) {
            i.active = false;
            i.own_changed_at = Utc::now();
        }
    }

    /// The school merges into a new institution: the old id answers `gefuseerdNaar` and
    /// the same people continue under the new id. Returns (old, new).
    pub fn merge(&mut self, school: &SchoolId, today: NaiveDate) -> Option<(i64, i64)> {
        let new = self.next_id;
        let old = self.current_mut(school)?;
        old.merged_into = Some(new);
        old.active = false;
        old.own_changed_at = Utc::now();
        let old_id = old.id;
        let consent = old.consent;
        let history = old.history.clone();
        let people_base = old.people_base;
        self.next_id += 1;
        self.institutions.insert(
            new,
            Institution {
                id: new,
                school: school.clone(),
                consent,
                active: true,
                merged_into: None,
                history,
                own_changed_at: Utc::now(),
                overviews_served: 0,
                people_base,
            },
        );
        if consent {
            self.events.push((today, new, true));
        }
        Some((old_id, new))
    }

    /// Before a night's LAS changes: each institution keeps a copy of the LAS as it was, and
    /// serves the copy from `lag_nights` nights ago.
    pub fn nightly<'a>(&mut self, schools: impl Iterator<Item = (&'a SimSchool, DateTime<Utc>)>) {
        let by_id: BTreeMap<&SchoolId, (&SimSchool, DateTime<Utc>)> =
            schools.map(|(s, at)| (&s.id, (s, at))).collect();
        let keep = self.lag_nights as usize;
        for inst in self.institutions.values_mut() {
            if keep == 0 {
                inst.history.clear();
                continue;
            }
            if let Some((s, at)) = by_id.get(&inst.school) {
                inst.history.push_back(Published {
                    school: (*s).clone(),
                    changed_at: *at,
                });
            }
            while inst.history.len() > keep {
                inst.history.pop_front();
            }
        }
    }

    pub fn granted_on(&self, date: NaiveDate) -> Vec<i64> {
        self.events_on(date, true)
    }

    pub fn revoked_on(&self, date: NaiveDate) -> Vec<i64> {
        self.events_on(date, false)
    }

    fn events_on(&self, date: NaiveDate, granted: bool) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .events
            .iter()
            .filter(|(d, _, g)| *d == date && *g == granted)
            .map(|(_, id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The broker's person id: stable per institution and LAS key, like the real one.
pub fn person_id(institution: i64, key: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in institution.to_le_bytes().iter().chain(key.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Positive, and small enough for JSON numbers read as doubles.
    (h % 9_000_000_000) as i64 + 1_000_000_000
}

fn timestamp(t: DateTime<Utc>) -> String {
    // Milliseconds: simulated nights can be a few milliseconds apart.
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn personal(p: &SimPerson) -> Value {
    json!({
        "achternaam": p.family,
        "voornaam": p.given,
        "voorvoegsel": p.prefix,
        "voorletters": p.given.chars().next().map(|c| format!("{c}.")),
    })
}

/// What one institution answers, built from the school the broker currently publishes.
pub struct View<'a> {
    pub institution: &'a Institution,
    school: &'a SimSchool,
    changed_at: DateTime<Utc>,
}

impl<'a> View<'a> {
    /// `live` is the LAS school now, served when there is no delay.
    pub fn new(institution: &'a Institution, live: &'a SimSchool, live_at: DateTime<Utc>) -> Self {
        let (school, at) = match institution.history.front() {
            Some(p) => (&p.school, p.changed_at),
            None => (live, live_at),
        };
        View {
            institution,
            school,
            changed_at: at.max(institution.own_changed_at),
        }
    }

    pub fn meta(&self) -> Value {
        json!({
            "mutationTimestamp": timestamp(self.changed_at),
            "generationTimestamp": timestamp(Utc::now()),
        })
    }

    pub fn details(&self) -> Value {
        let id = self.school.id.to_string();
        let (brin, dep) = id.split_at(4.min(id.len()));
        json!({
            "naam": self.school.name,
            "straat": "Schoolstraat",
            "huisnummer": 1,
            "huisnummertoevoeging": null,
            "postcode": "1234 AB",
            "woonplaats": "Simdorp",
            "brincode": brin,
            "dependancecode": dep,
            "schoolkey": null,
            "instellingRef": format!("SIM{}", self.institution.id),
            "bestuurscode": "99999",
            "actief": self.institution.active,
            "gefuseerdNaar": self.institution.merged_into,
            "metaResult": self.meta(),
        })
    }

    pub fn groups(&self) -> (Vec<Value>, Vec<Value>) {
        let group = |g: &crate::school::SimGroup| json!({ "lasKey": g.key, "naam": g.name, "jaargroep": g.year, "omschrijving": null });
        let main = self.school.groups.iter().filter(|g| !g.composed).map(group);
        let composed = self.school.groups.iter().filter(|g| g.composed).map(group);
        (main.collect(), composed.collect())
    }

    fn is_composed(&self, key: &str) -> bool {
        self.school
            .groups
            .iter()
            .any(|g| g.key == key && g.composed)
    }

    pub fn pupils(&self) -> Vec<Value> {
        let inst = self.institution.people_base;
        self.school
            .pupils
            .iter()
            .map(|p| {
                json!({
                    "id": person_id(inst, &p.person.key),
                    "eckid": p.person.eckid,
                    "lasKey": p.person.key,
                    "persoonsgegevens": personal(&p.person),
                    "jaargroep": p.year,
                    "groep": p.group,
                    "subgroepen": p.subgroups,
                })
            })
            .collect()
    }

    pub fn staff(&self) -> Vec<Value> {
        let inst = self.institution.people_base;
        let mut out: Vec<Value> = Vec::new();
        let mut first_group: Option<String> = None;
        for t in &self.school.teachers {
            let (groups, subgroups): (Vec<&String>, Vec<&String>) = t
                .groups
                .iter()
                .map(|(g, _)| g)
                .partition(|g| !self.is_composed(g));
            if first_group.is_none() {
                first_group = groups.first().map(|g| (*g).clone());
            }
            let mut roles: Vec<&str> = Vec::new();
            if !t.groups.is_empty() {
                roles.push("Leerkracht");
            }
            if t.roles.iter().any(|r| r == "IB" || r == "RT") {
                roles.push("IBRTer");
            }
            // The director keeps the school's Basispoort link: a broker-only role.
            if t.roles.iter().any(|r| r == "DIR") {
                roles.push("ICTCoordinator");
            }
            out.push(json!({
                "id": person_id(inst, &t.person.key),
                "eckid": t.person.eckid,
                "lasKey": t.person.key,
                "persoonsgegevens": personal(&t.person),
                "emailadres": t.email,
                "einddatum": null,
                "rollen": roles,
                "groepen": groups,
                "subgroepen": subgroups,
            }));
        }
        // Broker-only people, added by the school's ICT coordinator: no LAS key, no ECK-iD.
        if let Some(group) = first_group {
            let second = self
                .school
                .groups
                .iter()
                .filter(|g| !g.composed && g.key != group)
                .map(|g| g.key.clone())
                .next()
                .unwrap_or_else(|| group.clone());
            for (n, (role, group)) in [("Stagiair", group), ("Inval", second)]
                .into_iter()
                .enumerate()
            {
                let seed = (inst as usize).wrapping_mul(31).wrapping_add(n);
                let (prefix, family) = FAMILY[seed % FAMILY.len()];
                out.push(json!({
                    "id": person_id(inst, &format!("broker-only-{role}")),
                    "eckid": null,
                    "lasKey": null,
                    "persoonsgegevens": {
                        "achternaam": family,
                        "voornaam": GIVEN[seed % GIVEN.len()],
                        "voorvoegsel": (!prefix.is_empty()).then_some(prefix),
                        "voorletters": null,
                    },
                    "emailadres": format!("{}.{}@{}.sim.invalid", role.to_lowercase(), inst, self.school.id).to_lowercase(),
                    "einddatum": null,
                    "rollen": [role],
                    "groepen": [group],
                    "subgroepen": [],
                }));
            }
        }
        out
    }

    pub fn overview(&self) -> Value {
        let (groepen, subgroepen) = self.groups();
        json!({
            "groepen": groepen,
            "subgroepen": subgroepen,
            "leerlingen": self.pupils(),
            "medewerkers": self.staff(),
            "actief": self.institution.active,
            "gefuseerdNaar": self.institution.merged_into,
            "metaResult": self.meta(),
        })
    }
}
