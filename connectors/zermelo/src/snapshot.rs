//! A school's portal data as a snapshot for the engine. Classes and clusters become groups
//! (keyed by their name, which is how the LAS names them too), placements give pupils their
//! groups, and school functions become roles: mentor of classes, team leader or dean of
//! departments, school leader and application manager of the whole school. The user code
//! is a person's portal key; `somUUID`/`magisterUUID` is their LAS key.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use connector_api::{
    GroupKind, GroupRecord, PersonKeys, PersonName, PupilRecord, Reject, RoleScope, Snapshot,
    SourceKind, StaffRecord, StaffRole,
};

use crate::wire;

/// Everything the portal said about one school.
#[derive(Debug, Default)]
pub struct Portal {
    pub name: Option<String>,
    pub departments: Vec<wire::Department>,
    pub groups: Vec<wire::Group>,
    pub students: Vec<wire::StudentInDepartment>,
    pub employees: Vec<wire::Employee>,
    pub users: Vec<wire::User>,
}

fn clean(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn reject(entity: &str, key: String, reason: &str) -> Reject {
    Reject {
        entity: entity.into(),
        key,
        reason: reason.into(),
    }
}

fn name(first: &Option<String>, prefix: &Option<String>, last: &Option<String>) -> PersonName {
    PersonName {
        family_name: clean(last.as_deref()),
        prefix: clean(prefix.as_deref()),
        given_name: clean(first.as_deref()),
    }
}

fn twice<'a>(codes: impl Iterator<Item = &'a str>) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    let mut dup = HashSet::new();
    for c in codes {
        if !seen.insert(c) {
            dup.insert(c);
        }
    }
    dup
}

pub fn snapshot(p: Portal, received_at: DateTime<Utc>) -> Snapshot {
    let mut snap = Snapshot::empty(SourceKind::Portal, received_at);
    snap.school_name = p.name.clone();
    let dept_code: HashMap<i64, String> = p
        .departments
        .iter()
        .filter_map(|d| Some((d.id, clean(d.code.as_deref())?)))
        .collect();

    // Groups by name; a name twice is rejected everywhere.
    let dup_groups = twice(p.groups.iter().filter_map(|g| g.name.as_deref()));
    let mut group_key: HashMap<i64, String> = HashMap::new();
    for g in &p.groups {
        let Some(key) = clean(g.name.as_deref()) else {
            snap.rejects.push(reject(
                "group",
                format!("#{}", g.id),
                "the group has no name",
            ));
            continue;
        };
        if dup_groups.contains(key.as_str()) {
            snap.rejects
                .push(reject("group", key, "the name occurs more than once"));
            continue;
        }
        group_key.insert(g.id, key.clone());
        snap.groups.push(GroupRecord {
            name: clean(g.extended_name.as_deref()).unwrap_or_else(|| key.clone()),
            key,
            kind: if g.is_main_group {
                GroupKind::Stamgroep
            } else {
                GroupKind::Samengesteld
            },
            // Secondary leerjaren as UWLR numbers them (11–16), so both sources agree.
            year_group: g.year_of_education.map(|y| (y + 10).to_string()),
            department: g
                .department_of_branch
                .and_then(|d| dept_code.get(&d).cloned()),
        });
    }

    let users: HashMap<&str, &wire::User> = p
        .users
        .iter()
        .filter_map(|u| Some((u.code.as_deref()?, u)))
        .collect();
    let keys = |code: &str| PersonKeys {
        portal_code: Some(code.to_owned()),
        las_key: users
            .get(code)
            .and_then(|u| clean(u.som_uuid.as_deref()).or(clean(u.magister_uuid.as_deref()))),
        ..PersonKeys::default()
    };

    let dup_students = twice(p.students.iter().filter_map(|s| s.student.as_deref()));
    for (n, s) in p.students.iter().enumerate() {
        let Some(code) = clean(s.student.as_deref()) else {
            snap.rejects.push(reject(
                "pupil",
                format!("#{}", n + 1),
                "the placement names no student",
            ));
            continue;
        };
        let label = format!("portal:{code}");
        if dup_students.contains(code.as_str()) {
            snap.rejects.push(reject(
                "pupil",
                label,
                "the student has more than one placement",
            ));
            continue;
        }
        let main = s.main_group.map(|g| group_key.get(&g).cloned());
        let others: Vec<Option<String>> = s
            .group_in_departments
            .iter()
            .filter(|g| Some(**g) != s.main_group)
            .map(|g| group_key.get(g).cloned())
            .collect();
        if main.as_ref().is_some_and(Option::is_none) || others.iter().any(Option::is_none) {
            snap.rejects.push(reject(
                "pupil",
                label,
                "the placement points at a group the portal did not send",
            ));
            continue;
        }
        snap.pupils.push(PupilRecord {
            keys: keys(&code),
            name: name(&s.first_name, &s.prefix, &s.last_name),
            year_group: None,
            group: main.flatten(),
            subgroups: others.into_iter().flatten().collect(),
        });
    }

    // School functions: mentor of classes, team leader or dean of departments.
    let mut mentor_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for g in &p.groups {
        if let Some(key) = group_key.get(&g.id) {
            for m in &g.mentor_user_codes {
                mentor_of.entry(m.as_str()).or_default().push(key.clone());
            }
        }
    }
    let mut leads: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for d in &p.departments {
        let Some(code) = dept_code.get(&d.id) else {
            continue;
        };
        for (role, holders) in [
            ("teamleader", &d.team_leader_user_codes),
            ("dean", &d.dean_user_codes),
        ] {
            for h in holders {
                leads
                    .entry((h.as_str(), role))
                    .or_default()
                    .push(code.clone());
            }
        }
    }
    let dup_staff = twice(p.employees.iter().filter_map(|e| e.user_code.as_deref()));
    for (n, e) in p.employees.iter().enumerate() {
        let Some(code) = clean(e.user_code.as_deref()) else {
            snap.rejects.push(reject(
                "staff",
                format!("#{}", n + 1),
                "the employee has no user code",
            ));
            continue;
        };
        if dup_staff.contains(code.as_str()) {
            snap.rejects.push(reject(
                "staff",
                format!("portal:{code}"),
                "the user code occurs more than once",
            ));
            continue;
        }
        let mut roles = Vec::new();
        if let Some(groups) = mentor_of.get(code.as_str()) {
            roles.push(StaffRole {
                name: "mentor".into(),
                scope: RoleScope::Groups(groups.clone()),
            });
        }
        for role in ["teamleader", "dean"] {
            if let Some(depts) = leads.get(&(code.as_str(), role)) {
                roles.push(StaffRole {
                    name: role.into(),
                    scope: RoleScope::Departments(depts.clone()),
                });
            }
        }
        if let Some(u) = users.get(code.as_str()) {
            for (flag, role) in [
                (u.is_school_leader, "schoolleader"),
                (u.is_application_manager, "applicationmanager"),
            ] {
                if flag {
                    roles.push(StaffRole {
                        name: role.into(),
                        scope: RoleScope::School,
                    });
                }
            }
        }
        snap.staff.push(StaffRecord {
            keys: keys(&code),
            name: name(&e.first_name, &e.prefix, &e.last_name),
            email: clean(e.email.as_deref()).map(|m| m.to_lowercase()),
            roles,
            // The portal knows who teaches a group only through the timetable: links stay
            // with the LAS.
            groups: Vec::new(),
            end_date: None,
        });
    }
    snap
}
