//! What the journal says about a plan: one entry per change, with the source whose word made
//! it and the rule that decided it, in the order `changes --run N` shows them (groups first,
//! then new, changed and removed persons, then identity conflicts). Pure: the store writes
//! the entries with the ids it gives new records.

use std::collections::HashMap;

use crate::model::Owner;
use crate::model::journal::{self, ECKID_CONFLICT, Entry, Subject};
use crate::model::plan::{GroupUpdate, IdentityConflict, PersonUpdate, Plan, StoredPerson};

/// Every journal entry of `plan`, computed against `stored` (what the diff compared with).
pub fn entries(plan: &Plan, stored: &[StoredPerson]) -> Vec<Entry> {
    let mut out = Vec::new();
    for u in &plan.group_updates {
        group_update(u, &mut out);
    }
    for g in &plan.group_creates {
        out.push(
            Entry::of(
                Subject::NewGroup(g.key.clone()),
                "create",
                g.owner,
                journal::NEW_GROUP.into(),
            )
            .about(None, None, Some(g.key.clone())),
        );
    }
    for id in &plan.group_removals {
        out.push(Entry::of(
            Subject::Group(*id),
            "remove",
            Owner::Las,
            journal::GROUP_GONE.into(),
        ));
    }
    for (index, p) in plan.person_creates.iter().enumerate() {
        let subject = Subject::NewPerson {
            index,
            kind: p.kind,
        };
        out.push(
            Entry::of(
                subject,
                "create",
                p.links_owner,
                journal::NEW_IDENTITY.into(),
            )
            .about(None, None, Some(p.keys.label())),
        );
    }
    let before: HashMap<i64, &StoredPerson> = stored.iter().map(|p| (p.id, p)).collect();
    for u in &plan.person_updates {
        person_update(u, before.get(&u.id).copied(), &mut out);
    }
    for (id, kind) in &plan.person_removals {
        let supplier = before.get(id).map_or(Owner::Las, |p| supplier(p));
        out.push(Entry::of(
            Subject::Person {
                id: *id,
                kind: *kind,
            },
            "remove",
            supplier,
            journal::PERSON_GONE.into(),
        ));
    }
    out.extend(plan.conflicts.iter().map(identity_conflict));
    out
}

/// A removal is the doing of the source that supplied the person: its highest owner.
fn supplier(p: &StoredPerson) -> Owner {
    p.state
        .fields
        .values()
        .map(|o| o.owner)
        .chain([p.state.links_owner])
        .max()
        .unwrap_or(Owner::Las)
}

fn group_update(u: &GroupUpdate, out: &mut Vec<Entry>) {
    let owner = u.state.owner;
    for c in &u.changes {
        out.push(
            Entry::of(
                Subject::Group(u.id),
                "update",
                owner,
                format!("{} states it", owner.as_str()),
            )
            .about(Some(c.field), c.old.clone(), c.new.clone()),
        );
    }
    if u.restored {
        out.push(
            Entry::of(
                Subject::Group(u.id),
                "restore",
                owner,
                "back in the source".into(),
            )
            .about(None, None, Some(u.state.key.clone())),
        );
    }
}

/// The entries of one changed person: fields, keys, links, roles, and what happened to the
/// record as a whole. `have` is the person as stored.
fn person_update(u: &PersonUpdate, have: Option<&StoredPerson>, out: &mut Vec<Entry>) {
    let subject = || Subject::Person {
        id: u.id,
        kind: u.kind,
    };
    // The links' owner after this update.
    let links_owner = u
        .links_owner
        .or(have.map(|p| p.state.links_owner))
        .unwrap_or(Owner::Las);
    let matched = format!("matched by {}", u.matched_by);
    for c in &u.fields {
        let source = c
            .new
            .as_ref()
            .or(c.old.as_ref())
            .map_or(Owner::Las, |o| o.owner);
        let rule = format!("{matched}; {} owns {}", source.as_str(), c.field.as_str());
        out.push(Entry::of(subject(), "update", source, rule).about(
            Some(c.field.as_str()),
            c.old.as_ref().map(|o| o.value.clone()),
            c.new.as_ref().map(|o| o.value.clone()),
        ));
    }
    for (kind, v) in u.new_keys.entries() {
        let rule = format!("{matched}; a key that appears later links to the same person");
        out.push(Entry::of(subject(), "link-key", links_owner, rule).about(
            Some(kind),
            None,
            Some(v.to_owned()),
        ));
    }
    links_and_roles(u, links_owner, &matched, out);
    record_events(u, links_owner, &matched, out);
}

/// Groups joined and left, roles gained and lost.
fn links_and_roles(u: &PersonUpdate, links_owner: Owner, matched: &str, out: &mut Vec<Entry>) {
    let entry = |op: &'static str, source: Owner| {
        Entry::of(
            Subject::Person {
                id: u.id,
                kind: u.kind,
            },
            op,
            source,
            matched.to_owned(),
        )
    };
    for l in &u.links_added {
        out.push(entry("join", links_owner).about(Some(&l.group), None, Some(l.role.clone())));
    }
    for l in &u.links_removed {
        out.push(entry("leave", links_owner).about(Some(&l.group), Some(l.role.clone()), None));
    }
    for r in &u.roles_added {
        out.push(entry("role-add", r.owner).about(Some(&r.name), None, Some(r.scope.clone())));
    }
    for r in &u.roles_removed {
        out.push(entry("role-remove", r.owner).about(Some(&r.name), Some(r.scope.clone()), None));
    }
}

/// What happened to the record as a whole: back from its tombstone, adopted from a local
/// record, or a new ECK-iD for the same person.
fn record_events(u: &PersonUpdate, links_owner: Owner, matched: &str, out: &mut Vec<Entry>) {
    let subject = || Subject::Person {
        id: u.id,
        kind: u.kind,
    };
    if u.restored {
        out.push(Entry::of(
            subject(),
            "restore",
            links_owner,
            "back in the source".into(),
        ));
    }
    if u.adopted {
        let rule =
            format!("{matched}; the local record keeps its id and its source fields become locked");
        out.push(Entry::of(subject(), "adopt", links_owner, rule));
    }
    if let Some(c) = &u.eckid_changed {
        let rule = format!(
            "{matched}; the LAS and the broker both send this new ECK-iD, and the LAS key and \
             broker id both name this person"
        );
        out.push(Entry::of(subject(), "relink", Owner::Broker, rule).about(
            Some("eckid"),
            Some(c.old.clone()),
            Some(c.new.clone()),
        ));
    }
}

/// The journal entry of an identity conflict. A changed ECK-iD names its person and both
/// values, so `person relink --accept-source` can take the new one.
fn identity_conflict(c: &IdentityConflict) -> Entry {
    let subject = Subject::Conflict(c.person);
    match &c.eckid {
        Some(change) => {
            let rule = format!(
                "{}: {}; nothing merged until a person decides (`rostersync person relink {} \
                 --accept-source` if it is the same person)",
                c.subject,
                c.reason,
                c.person.unwrap_or_default()
            );
            Entry::of(subject, "conflict", Owner::Las, rule).about(
                Some(ECKID_CONFLICT),
                Some(change.old.clone()),
                Some(change.new.clone()),
            )
        }
        None => Entry::of(
            subject,
            "conflict",
            Owner::Las,
            "keys disagree about who this is; nothing merged".into(),
        )
        .about(None, Some(c.subject.clone()), Some(c.reason.clone())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use connector_api::{GroupKind, PersonKeys};

    use super::*;
    use crate::model::plan::{FieldChange, GroupChange, KeyChange};
    use crate::model::{Field, GroupState, Link, Owned, PersonKind, PersonState, Role};

    fn group(key: &str) -> GroupState {
        GroupState {
            key: key.into(),
            name: format!("Groep {key}"),
            kind: GroupKind::Stamgroep,
            year_group: Some("8".into()),
            department: None,
            owner: Owner::Las,
        }
    }

    fn person(kind: PersonKind, las_key: &str, owner: Owner) -> PersonState {
        let mut fields = BTreeMap::new();
        fields.insert(
            Field::FamilyName,
            Owned {
                value: "Jansen".into(),
                owner,
            },
        );
        PersonState {
            kind,
            keys: PersonKeys {
                las_key: Some(las_key.into()),
                ..PersonKeys::default()
            },
            fields,
            links: BTreeSet::new(),
            links_owner: owner,
            roles: BTreeSet::new(),
        }
    }

    fn stored(id: i64, state: PersonState) -> StoredPerson {
        StoredPerson {
            id,
            state,
            removed: false,
            local: false,
        }
    }

    fn ops(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.operation).collect()
    }

    #[test]
    fn groups_are_created_updated_restored_and_removed() {
        let plan = Plan {
            group_creates: vec![group("G1A")],
            group_updates: vec![GroupUpdate {
                id: 7,
                state: group("G8A"),
                changes: vec![GroupChange {
                    field: "name",
                    old: Some("8a".into()),
                    new: Some("Groep G8A".into()),
                }],
                restored: true,
            }],
            group_removals: vec![9],
            ..Plan::default()
        };
        let e = entries(&plan, &[]);
        // Updates of stored groups first, then new groups, then removals.
        assert_eq!(ops(&e), ["update", "restore", "create", "remove"]);
        assert_eq!(e[0].subject, Subject::Group(7));
        assert_eq!(e[0].field.as_deref(), Some("name"));
        assert_eq!(e[0].rule, "las states it");
        assert_eq!(e[1].new.as_deref(), Some("G8A"));
        assert_eq!(e[2].subject, Subject::NewGroup("G1A".into()));
        assert_eq!(e[2].new.as_deref(), Some("G1A"));
        assert_eq!(e[3].subject, Subject::Group(9));
        assert!(e.iter().all(|e| e.subject.entity() == "group"));
    }

    #[test]
    fn a_new_person_is_named_by_a_key_label_not_a_name() {
        let plan = Plan {
            person_creates: vec![person(PersonKind::Pupil, "L1", Owner::Las)],
            ..Plan::default()
        };
        let e = entries(&plan, &[]);
        assert_eq!(ops(&e), ["create"]);
        assert_eq!(
            e[0].subject,
            Subject::NewPerson {
                index: 0,
                kind: PersonKind::Pupil
            }
        );
        assert_eq!(e[0].new.as_deref(), Some("las:L1"));
        assert!(!format!("{e:?}").contains("Jansen"));
    }

    #[test]
    fn a_changed_person_says_each_change_with_its_owner() {
        let have = stored(3, person(PersonKind::Staff, "T1", Owner::Las));
        let mut u = PersonUpdate::nothing(3, PersonKind::Staff, "las_key");
        u.fields.push(FieldChange {
            field: Field::FamilyName,
            old: Some(Owned {
                value: "Jansen".into(),
                owner: Owner::Las,
            }),
            new: Some(Owned {
                value: "Jansen-de Vries".into(),
                owner: Owner::Broker,
            }),
        });
        u.new_keys.eckid = Some("https://id.school/e1".into());
        u.links_added.push(Link {
            group: "G5A".into(),
            role: "LRK".into(),
        });
        u.links_removed.push(Link {
            group: "G4A".into(),
            role: "LRK".into(),
        });
        u.roles_added.push(Role {
            name: "IB".into(),
            scope: String::new(),
            owner: Owner::Broker,
        });
        u.roles_removed.push(Role {
            name: "mentor".into(),
            scope: "G4A".into(),
            owner: Owner::Portal,
        });
        u.links_owner = Some(Owner::Broker);
        u.restored = true;
        u.adopted = true;
        u.eckid_changed = Some(KeyChange {
            old: "e0".into(),
            new: "e1".into(),
        });
        let plan = Plan {
            person_updates: vec![u],
            ..Plan::default()
        };
        let e = entries(&plan, &[have]);
        assert_eq!(
            ops(&e),
            [
                "update",
                "link-key",
                "join",
                "leave",
                "role-add",
                "role-remove",
                "restore",
                "adopt",
                "relink"
            ]
        );
        assert_eq!(e[0].source, Owner::Broker, "the new value's owner made it");
        assert_eq!(e[0].rule, "matched by las_key; broker owns family_name");
        assert_eq!(e[1].field.as_deref(), Some("eckid"));
        // Links are the new links owner's word; roles their own source's.
        assert_eq!(e[2].source, Owner::Broker);
        assert_eq!(
            (e[3].field.as_deref(), e[3].old.as_deref()),
            (Some("G4A"), Some("LRK"))
        );
        assert_eq!(e[5].source, Owner::Portal);
        assert_eq!(e[8].source, Owner::Broker);
        assert_eq!(
            (e[8].old.as_deref(), e[8].new.as_deref()),
            (Some("e0"), Some("e1"))
        );
        assert!(e.iter().all(|e| e.subject
            == Subject::Person {
                id: 3,
                kind: PersonKind::Staff
            }));
    }

    #[test]
    fn a_removal_is_blamed_on_the_source_that_supplied_the_person() {
        let by_broker = stored(4, person(PersonKind::Pupil, "L4", Owner::Broker));
        let plan = Plan {
            person_removals: vec![(4, PersonKind::Pupil), (5, PersonKind::Pupil)],
            ..Plan::default()
        };
        let e = entries(&plan, &[by_broker]);
        assert_eq!(ops(&e), ["remove", "remove"]);
        assert_eq!(e[0].source, Owner::Broker);
        assert_eq!(e[1].source, Owner::Las, "unknown: the LAS");
    }

    #[test]
    fn identity_conflicts_come_last_and_a_changed_eckid_names_both_values() {
        let plan = Plan {
            person_removals: vec![(4, PersonKind::Pupil)],
            conflicts: vec![
                IdentityConflict {
                    subject: "las:L1".into(),
                    reason: "another ECK-iD".into(),
                    person: Some(1),
                    eckid: Some(KeyChange {
                        old: "e0".into(),
                        new: "e9".into(),
                    }),
                },
                IdentityConflict {
                    subject: "las:L2".into(),
                    reason: "two people".into(),
                    person: None,
                    eckid: None,
                },
            ],
            ..Plan::default()
        };
        let e = entries(&plan, &[]);
        assert_eq!(ops(&e), ["remove", "conflict", "conflict"]);
        assert_eq!(e[1].subject, Subject::Conflict(Some(1)));
        assert_eq!(e[1].field.as_deref(), Some(ECKID_CONFLICT));
        assert!(e[1].rule.contains("person relink 1 --accept-source"));
        assert_eq!(e[2].subject.entity(), "person");
        assert_eq!(e[2].old.as_deref(), Some("las:L2"));
    }
}
