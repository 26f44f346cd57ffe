//! Merge: the snapshots of a school's sources into one roster in which every field knows its
//! owner. The highest owner (broker, then LAS, then portal) wins a field; a lower source that
//! disagrees is recorded as a conflict with both values, never silently dropped.

use std::collections::{BTreeSet, HashMap};

use connector_api::{PersonName, RoleScope, Snapshot, StaffRole};

use crate::model::{
    Field, GroupState, Link, Owned, Owner, PersonKind, PersonState, Role, RosterState,
};

pub use crate::model::plan::Conflict;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    pub state: RosterState,
    pub conflicts: Vec<Conflict>,
    /// LAS keys of records a source rejected: the diff keeps what is stored for them.
    pub protected_las_keys: BTreeSet<String>,
    /// ECK-iDs two sources sent for one person (the LAS and the broker agree on them).
    pub confirmed_eckids: BTreeSet<String>,
}

fn name_fields(name: &PersonName, owner: Owner, out: &mut Vec<(Field, Owned)>) {
    for (field, value) in [
        (Field::FamilyName, &name.family_name),
        (Field::Prefix, &name.prefix),
        (Field::GivenName, &name.given_name),
    ] {
        if let Some(v) = value {
            out.push((
                field,
                Owned {
                    value: v.clone(),
                    owner,
                },
            ));
        }
    }
}

fn role_of(r: &StaffRole, owner: Owner) -> Role {
    Role {
        owner,
        name: r.name.clone(),
        scope: match &r.scope {
            RoleScope::School => String::new(),
            RoleScope::Groups(g) => g.join(","),
            RoleScope::Departments(d) => format!("departments:{}", d.join(",")),
        },
    }
}

/// One snapshot's people and groups as roster state, everything owned by its source.
fn persons_of(s: &Snapshot) -> Vec<PersonState> {
    let owner = Owner::from(s.source);
    let mut out = Vec::with_capacity(s.pupils.len() + s.staff.len());
    for p in &s.pupils {
        let mut fields = Vec::new();
        name_fields(&p.name, owner, &mut fields);
        if let Some(y) = &p.year_group {
            fields.push((
                Field::YearGroup,
                Owned {
                    value: y.clone(),
                    owner,
                },
            ));
        }
        let links = p
            .group
            .iter()
            .chain(&p.subgroups)
            .map(|g| Link {
                group: g.clone(),
                role: "member".into(),
            })
            .collect();
        out.push(PersonState {
            kind: PersonKind::Pupil,
            keys: p.keys.clone(),
            fields: fields.into_iter().collect(),
            links,
            links_owner: owner,
            roles: BTreeSet::new(),
        });
    }
    for t in &s.staff {
        let mut fields = Vec::new();
        name_fields(&t.name, owner, &mut fields);
        if let Some(e) = &t.email {
            fields.push((
                Field::Email,
                Owned {
                    value: e.clone(),
                    owner,
                },
            ));
        }
        if let Some(d) = t.end_date {
            fields.push((
                Field::EndDate,
                Owned {
                    value: d.to_string(),
                    owner,
                },
            ));
        }
        let links = t
            .groups
            .iter()
            .map(|l| Link {
                group: l.group.clone(),
                role: if l.roles.is_empty() {
                    "staff".into()
                } else {
                    l.roles.join("+")
                },
            })
            .collect();
        out.push(PersonState {
            kind: PersonKind::Staff,
            keys: t.keys.clone(),
            fields: fields.into_iter().collect(),
            links,
            links_owner: owner,
            roles: t.roles.iter().map(|r| role_of(r, owner)).collect(),
        });
    }
    out
}

fn links_text(links: &BTreeSet<Link>) -> String {
    links
        .iter()
        .map(|l| format!("{}:{}", l.group, l.role))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fold a lower-or-equal source's view of a person into the merged one.
fn fold(
    into: &mut PersonState,
    from: PersonState,
    conflicts: &mut Vec<Conflict>,
    confirmed_eckids: &mut BTreeSet<String>,
) {
    if let (Some(a), Some(b)) = (&into.keys.eckid, &from.keys.eckid)
        && a == b
    {
        confirmed_eckids.insert(a.clone());
    }
    let subject = into.keys.label();
    into.keys.fill_from(&from.keys);
    for (field, incoming) in from.fields {
        match into.fields.get(&field) {
            None => {
                into.fields.insert(field, incoming);
            }
            Some(kept) if kept.value != incoming.value => conflicts.push(Conflict {
                subject: subject.clone(),
                field: field.as_str().into(),
                kept: kept.value.clone(),
                kept_owner: kept.owner,
                other: incoming.value,
                other_owner: incoming.owner,
            }),
            Some(_) => {}
        }
    }
    // Sources name link roles in their own words (LRK in the LAS, Leerkracht at the
    // broker), so they disagree only when they link different groups.
    let groups = |links: &BTreeSet<Link>| {
        links
            .iter()
            .map(|l| l.group.clone())
            .collect::<BTreeSet<_>>()
    };
    // A source that links nobody (the portal: who teaches a group is in its timetable, not
    // its data) says nothing about links, which is no disagreement.
    if !from.links.is_empty() && groups(&into.links) != groups(&from.links) {
        conflicts.push(Conflict {
            subject,
            field: "groups".into(),
            kept: links_text(&into.links),
            kept_owner: into.links_owner,
            other: links_text(&from.links),
            other_owner: from.links_owner,
        });
    }
    // Roles from different sources are different facts (IB in the LAS, IBRTer at the broker).
    into.roles.extend(from.roles);
}

/// Merge the snapshots of one school. Order does not matter: sources are taken by owner.
pub fn merge(snapshots: &[&Snapshot]) -> Merged {
    let mut ordered: Vec<&Snapshot> = snapshots.to_vec();
    ordered.sort_by_key(|s| std::cmp::Reverse(Owner::from(s.source)));
    let mut merged = Merged::default();
    let mut index: HashMap<(PersonKind, &'static str, String), usize> = HashMap::new();
    for snapshot in ordered {
        let owner = Owner::from(snapshot.source);
        for g in &snapshot.groups {
            match merged.state.groups.get_mut(&g.key) {
                Some(kept) => {
                    if kept.name != g.name {
                        merged.conflicts.push(Conflict {
                            subject: format!("group:{}", g.key),
                            field: "name".into(),
                            kept: kept.name.clone(),
                            kept_owner: kept.owner,
                            other: g.name.clone(),
                            other_owner: owner,
                        });
                    }
                    // What the owner does not say, a lower source may (the portal knows a
                    // class's department, the LAS does not).
                    if kept.department.is_none() {
                        kept.department.clone_from(&g.department);
                    }
                    if kept.year_group.is_none() {
                        kept.year_group.clone_from(&g.year_group);
                    }
                }
                None => {
                    merged.state.groups.insert(
                        g.key.clone(),
                        GroupState {
                            key: g.key.clone(),
                            name: g.name.clone(),
                            kind: g.kind,
                            year_group: g.year_group.clone(),
                            department: g.department.clone(),
                            owner,
                        },
                    );
                }
            }
        }
        for r in &snapshot.rejects {
            if r.entity == "pupil" || r.entity == "staff" {
                let key = r.key.strip_prefix("las:").unwrap_or(&r.key);
                if !key.starts_with('#') && !key.contains(':') && key != "eckid" {
                    merged.protected_las_keys.insert(key.to_owned());
                }
            }
        }
        for person in persons_of(snapshot) {
            let found = person
                .keys
                .entries()
                .find_map(|(kind, v)| index.get(&(person.kind, kind, v.to_owned())).copied());
            let at = match found {
                Some(i) => {
                    fold(
                        &mut merged.state.persons[i],
                        person,
                        &mut merged.conflicts,
                        &mut merged.confirmed_eckids,
                    );
                    i
                }
                None => {
                    merged.state.persons.push(person);
                    merged.state.persons.len() - 1
                }
            };
            let p = &merged.state.persons[at];
            for (kind, v) in p.keys.entries() {
                index.entry((p.kind, kind, v.to_owned())).or_insert(at);
            }
        }
    }
    merged
}
