//! The simulated scheduling portal (Zermelo REST v3) of the secondary schools: the same
//! classes, pupils and teachers as the simulated LAS, seen the portal's way: user codes,
//! departments (leerjaren), classes with their mentors, school functions, a token per school
//! with an expiry, and field-level permissions that can hide a field.
//!
//! Assumption (no public source shows it): a department carries the user codes of its team
//! leaders and deans the way a group carries `mentorUserCodes`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use connector_api::SchoolId;
use serde_json::{Value, json};

use crate::school::{SimSchool, SimTeacher};

/// A school's API token at the portal.
#[derive(Debug, Clone)]
pub struct PortalToken {
    pub token: String,
    pub expires: DateTime<Utc>,
}

/// The portal's side of the world.
#[derive(Default)]
pub struct PortalState {
    pub tokens: BTreeMap<SchoolId, PortalToken>,
    /// (endpoint, field) pairs the schools' partner settings do not grant.
    pub hidden: BTreeSet<(String, String)>,
    /// Requests answered, per school, for tests.
    pub requests: BTreeMap<SchoolId, u64>,
}

impl PortalState {
    pub fn register(&mut self, school: &SchoolId, seed: u64) {
        self.tokens.entry(school.clone()).or_insert(PortalToken {
            token: format!("zm{:016x}", seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            expires: Utc::now() + chrono::Duration::days(365),
        });
    }

    /// The school's token expires (as it does after the date the school chose).
    pub fn expire(&mut self, school: &SchoolId) {
        if let Some(t) = self.tokens.get_mut(school) {
            t.expires = Utc::now() - chrono::Duration::days(1);
        }
    }

    /// The partner settings stop granting `field` of `endpoint`.
    pub fn hide(&mut self, endpoint: &str, field: &str) {
        self.hidden.insert((endpoint.to_owned(), field.to_owned()));
    }
}

/// A teacher's user code: short, lower case, like Zermelo's.
pub fn employee_code(t: &SimTeacher) -> String {
    format!("t{}", t.person.key.trim_start_matches('M'))
}

/// A pupil's user code: the leerlingnummer.
pub fn student_code(key: &str) -> String {
    key.trim_start_matches('L').to_owned()
}

fn leerjaar(year: &Option<String>) -> u32 {
    year.as_deref()
        .and_then(|y| y.parse::<u32>().ok())
        .map(|y| y.saturating_sub(10).max(1))
        .unwrap_or(1)
}

/// Ids of one school's portal objects: stable, distinct per kind.
struct Ids {
    school_year: i64,
}

impl Ids {
    fn department(&self, leerjaar: u32) -> i64 {
        self.school_year * 100 + i64::from(leerjaar)
    }
    fn group(&self, index: usize) -> i64 {
        self.school_year * 10_000 + index as i64
    }
}

/// What the portal answers for one school.
pub struct PortalView<'a> {
    school: &'a SimSchool,
    ids: Ids,
}

impl<'a> PortalView<'a> {
    pub fn new(school: &'a SimSchool, index: usize) -> Self {
        PortalView {
            school,
            ids: Ids {
                school_year: 500 + index as i64,
            },
        }
    }

    pub fn school_in_school_year(&self) -> i64 {
        self.ids.school_year
    }

    fn leerjaren(&self) -> BTreeSet<u32> {
        self.school
            .groups
            .iter()
            .filter(|g| !g.composed)
            .map(|g| leerjaar(&g.year))
            .collect()
    }

    /// The teacher who leads leerjaar `l` as team leader, and its dean: the mentor of its
    /// first class and of its last class.
    fn leaders(&self, l: u32) -> (Vec<String>, Vec<String>) {
        let mentors: Vec<String> = self
            .school
            .groups
            .iter()
            .filter(|g| !g.composed && leerjaar(&g.year) == l)
            .filter_map(|g| self.mentors_of(&g.key).into_iter().next())
            .collect();
        let team = mentors.first().cloned().into_iter().collect();
        let dean = mentors.last().cloned().into_iter().collect();
        (team, dean)
    }

    fn mentors_of(&self, group: &str) -> Vec<String> {
        self.school
            .teachers
            .iter()
            .filter(|t| t.groups.iter().any(|(g, _)| g == group))
            .map(employee_code)
            .collect()
    }

    pub fn schools_in_school_years(&self, year: i32) -> Vec<Value> {
        vec![json!({
            "id": self.ids.school_year,
            "school": self.ids.school_year - 400,
            "year": year,
            "name": format!("{} {}", self.school.name, year),
            "schoolName": self.school.name,
            "projectName": format!("{}-{}", year, year + 1),
            "archived": false,
        })]
    }

    pub fn departments(&self) -> Vec<Value> {
        self.leerjaren()
            .into_iter()
            .map(|l| {
                let (team, dean) = self.leaders(l);
                json!({
                    "id": self.ids.department(l),
                    "code": format!("L{l}"),
                    "yearOfEducation": l,
                    "branchOfSchool": self.ids.school_year * 10,
                    "schoolInSchoolYearId": self.ids.school_year,
                    "teamLeaderUserCodes": team,
                    "deanUserCodes": dean,
                })
            })
            .collect()
    }

    pub fn groups(&self) -> Vec<Value> {
        self.school
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                json!({
                    "id": self.ids.group(i),
                    "departmentOfBranch": self.ids.department(leerjaar(&g.year)),
                    "name": g.key,
                    "extendedName": g.name,
                    "yearOfEducation": leerjaar(&g.year),
                    "isMainGroup": !g.composed,
                    "isMentorGroup": !g.composed,
                    "mentorUserCodes": if g.composed { Vec::new() } else { self.mentors_of(&g.key) },
                })
            })
            .collect()
    }

    fn group_id(&self, key: &str) -> Option<i64> {
        self.school
            .groups
            .iter()
            .position(|g| g.key == key)
            .map(|i| self.ids.group(i))
    }

    pub fn students(&self, department: Option<i64>) -> Vec<Value> {
        self.school
            .pupils
            .iter()
            .filter_map(|p| {
                let main = self.group_id(&p.group)?;
                let l = self
                    .school
                    .groups
                    .iter()
                    .find(|g| g.key == p.group)
                    .map(|g| leerjaar(&g.year))
                    .unwrap_or(1);
                let dept = self.ids.department(l);
                if department.is_some_and(|d| d != dept) {
                    return None;
                }
                let mut groups = vec![main];
                groups.extend(p.subgroups.iter().filter_map(|g| self.group_id(g)));
                Some(json!({
                    "student": student_code(&p.person.key),
                    "firstName": p.person.given,
                    "prefix": p.person.prefix,
                    "lastName": p.person.family,
                    "departmentOfBranch": dept,
                    "departmentOfBranchCode": format!("L{l}"),
                    "mainGroup": main,
                    "mainGroupName": p.group,
                    "mentorGroup": main,
                    "groupInDepartments": groups,
                    "schoolInSchoolYear": self.ids.school_year,
                }))
            })
            .collect()
    }

    pub fn employees(&self) -> Vec<Value> {
        self.school
            .teachers
            .iter()
            .map(|t| {
                json!({
                    "userCode": employee_code(t),
                    "firstName": t.person.given,
                    "prefix": t.person.prefix,
                    "lastName": t.person.family,
                    "email": t.email,
                })
            })
            .collect()
    }

    /// Users: pupils and staff with the LAS link (`somUUID`) and the school-function flags.
    /// The director is school leader, the first teacher application manager.
    pub fn users(&self) -> Vec<Value> {
        let leaders: BTreeSet<u32> = self.leerjaren();
        let (mut team, mut dean) = (BTreeSet::new(), BTreeSet::new());
        for l in leaders {
            let (t, d) = self.leaders(l);
            team.extend(t);
            dean.extend(d);
        }
        let mut out: Vec<Value> = self
            .school
            .pupils
            .iter()
            .map(|p| {
                json!({
                    "code": student_code(&p.person.key),
                    "isStudent": true,
                    "isEmployee": false,
                    "somUUID": p.person.key,
                    "archived": false,
                })
            })
            .collect();
        for (i, t) in self.school.teachers.iter().enumerate() {
            let code = employee_code(t);
            out.push(json!({
                "code": code,
                "isStudent": false,
                "isEmployee": true,
                "somUUID": t.person.key,
                "archived": false,
                "isMentor": self.school.groups.iter().any(|g| !g.composed && self.mentors_of(&g.key).contains(&code)),
                "isTeamLeader": team.contains(&code),
                "isDean": dean.contains(&code),
                "isSectionLeader": false,
                "isSchoolLeader": t.roles.iter().any(|r| r == "DIR"),
                "isApplicationManager": i == 0,
            }));
        }
        out
    }
}
