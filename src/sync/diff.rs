//! Diff: what the sources say (desired) against what is stored, as a Plan of creates,
//! field-level updates (old → new, with owners), key links, link changes and removals.
//! Unchanged records produce nothing. A frozen school never loses anything.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use connector_api::PersonKeys;

use crate::model::{Field, GroupState, Link, Owner, PersonKind, PersonState, Role, RosterState};
use crate::sync::identity::{KeyIndex, KnownKeys, Match};

pub use crate::model::plan::{
    FieldChange, GroupChange, GroupUpdate, IdentityConflict, KeyChange, PersonUpdate, Plan,
    StoredGroup, StoredPerson,
};

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// The health check distrusts the answer: nothing is removed.
    pub frozen: bool,
    /// Persons with these LAS keys were rejected by the source: keep them as stored.
    pub protected_las_keys: BTreeSet<String>,
    /// Match staff by e-mail to a record added by hand when no key matches.
    pub match_staff_email: bool,
    /// ECK-iDs the LAS and the broker both sent for one person in this run. A changed
    /// ECK-iD is taken without a person only when it is here and the person's LAS key and
    /// broker id both point at the stored person: two sources, three keys, one person.
    pub confirmed_eckids: BTreeSet<String>,
}

fn group_changes(old: &GroupState, new: &GroupState) -> Vec<GroupChange> {
    let mut out = Vec::new();
    let mut cmp = |field: &'static str, a: Option<&str>, b: Option<&str>| {
        if a != b {
            out.push(GroupChange {
                field,
                old: a.map(str::to_owned),
                new: b.map(str::to_owned),
            });
        }
    };
    cmp("name", Some(&old.name), Some(&new.name));
    cmp("kind", Some(old.kind.as_str()), Some(new.kind.as_str()));
    cmp(
        "year_group",
        old.year_group.as_deref(),
        new.year_group.as_deref(),
    );
    cmp(
        "department",
        old.department.as_deref(),
        new.department.as_deref(),
    );
    cmp("owner", Some(old.owner.as_str()), Some(new.owner.as_str()));
    out
}

fn diff_groups(desired: &RosterState, stored: &[StoredGroup], frozen: bool, plan: &mut Plan) {
    let by_key: BTreeMap<&str, &StoredGroup> =
        stored.iter().map(|g| (g.state.key.as_str(), g)).collect();
    for (key, want) in &desired.groups {
        match by_key.get(key.as_str()) {
            None => plan.group_creates.push(want.clone()),
            Some(have) => {
                let changes = group_changes(&have.state, want);
                if !changes.is_empty() || have.removed {
                    plan.group_updates.push(GroupUpdate {
                        id: have.id,
                        state: want.clone(),
                        changes,
                        restored: have.removed,
                    });
                }
            }
        }
    }
    if !frozen {
        plan.group_removals.extend(
            stored
                .iter()
                // A group added by hand stays until someone removes it by hand.
                .filter(|g| !g.removed && g.state.owner != Owner::Local)
                .filter(|g| !desired.groups.contains_key(&g.state.key))
                .map(|g| g.id),
        );
    }
}

fn person_update(
    have: &StoredPerson,
    want: &PersonState,
    via: &'static str,
) -> Option<PersonUpdate> {
    let fields: Vec<FieldChange> = have
        .state
        .fields
        .keys()
        .chain(want.fields.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|f| {
            let (old, new) = (have.state.fields.get(f), want.fields.get(f));
            // A local value the sources do not supply stays: only source-owned values go.
            let keep_local = new.is_none() && old.is_some_and(|o| o.owner == Owner::Local);
            (old != new && !keep_local).then(|| FieldChange {
                field: *f,
                old: old.cloned(),
                new: new.cloned(),
            })
        })
        .collect();
    let links_added: Vec<Link> = want.links.difference(&have.state.links).cloned().collect();
    let links_removed: Vec<Link> = have.state.links.difference(&want.links).cloned().collect();
    let roles_added: Vec<Role> = want.roles.difference(&have.state.roles).cloned().collect();
    let roles_removed: Vec<Role> = have.state.roles.difference(&want.roles).cloned().collect();
    let new_keys = want.keys.missing_from(&have.state.keys);
    let adopted = have.local;
    let update = PersonUpdate {
        id: have.id,
        kind: want.kind,
        matched_by: via,
        fields,
        new_keys,
        links_added,
        links_removed,
        roles_added,
        roles_removed,
        eckid_changed: None,
        links_owner: (have.state.links_owner != want.links_owner).then_some(want.links_owner),
        restored: have.removed,
        adopted,
    };
    let changed = !update.fields.is_empty()
        || !update.new_keys.is_empty()
        || !update.links_added.is_empty()
        || !update.links_removed.is_empty()
        || !update.roles_added.is_empty()
        || !update.roles_removed.is_empty()
        || update.links_owner.is_some()
        || update.restored
        || update.adopted;
    changed.then_some(update)
}

/// Whether a changed ECK-iD may be taken without a person: the LAS and the broker both sent
/// it, and the person's LAS key and broker id both point at the stored person `id`.
fn eckid_change_confirmed(
    index: &KeyIndex,
    want: &PersonState,
    id: i64,
    options: &DiffOptions,
) -> bool {
    let both_keys = want.keys.las_key.is_some()
        && want.keys.broker_id.is_some()
        && index.ids_for(&PersonKeys {
            eckid: None,
            ..want.keys.clone()
        }) == [id];
    both_keys
        && want
            .keys
            .eckid
            .as_ref()
            .is_some_and(|e| options.confirmed_eckids.contains(e))
}

/// Compare what the sources say with what is stored.
pub fn diff(
    desired: &RosterState,
    stored_groups: &[StoredGroup],
    stored_persons: &[StoredPerson],
    options: &DiffOptions,
) -> Plan {
    let mut plan = Plan::default();
    diff_groups(desired, stored_groups, options.frozen, &mut plan);
    let known = known_keys(stored_persons);
    let matcher = Matcher {
        index: KeyIndex::new(known.iter()),
        by_id: stored_persons.iter().map(|p| (p.id, p)).collect(),
        options,
    };
    // Stored persons that must stay: matched, in conflict, or protected.
    let mut keep: HashSet<i64> = HashSet::new();
    for want in &desired.persons {
        matcher.person(want, &mut keep, &mut plan);
    }
    if !options.frozen {
        plan.person_removals = removals(stored_persons, &keep, options);
    }
    plan
}

/// The keys each stored person can be found by.
fn known_keys(stored_persons: &[StoredPerson]) -> Vec<KnownKeys> {
    stored_persons
        .iter()
        .map(|p| KnownKeys {
            id: p.id,
            keys: p.state.keys.clone(),
            // Only a record added by hand is found by its e-mail: sources have keys, and two
            // source records sharing an address must never become one person.
            email: (p.state.kind == PersonKind::Staff && p.local)
                .then(|| p.state.fields.get(&Field::Email).map(|e| e.value.clone()))
                .flatten(),
        })
        .collect()
}

/// Stored persons no source sends any more, except those added by hand, those whose record
/// the source rejected, and those kept (matched or in conflict).
fn removals(
    stored_persons: &[StoredPerson],
    keep: &HashSet<i64>,
    options: &DiffOptions,
) -> Vec<(i64, PersonKind)> {
    stored_persons
        .iter()
        .filter(|p| {
            let protected = p
                .state
                .keys
                .las_key
                .as_ref()
                .is_some_and(|k| options.protected_las_keys.contains(k));
            !p.removed && !p.local && !protected && !keep.contains(&p.id)
        })
        .map(|p| (p.id, p.state.kind))
        .collect()
}

/// Finds the stored person a desired one is, and says what changes.
struct Matcher<'a> {
    index: KeyIndex,
    by_id: BTreeMap<i64, &'a StoredPerson>,
    options: &'a DiffOptions,
}

impl Matcher<'_> {
    fn person(&self, want: &PersonState, keep: &mut HashSet<i64>, plan: &mut Plan) {
        let email = want.fields.get(&Field::Email).map(|e| e.value.as_str());
        let staff_email = self.options.match_staff_email && want.kind == PersonKind::Staff;
        match self.index.resolve(&want.keys, email, staff_email) {
            Match::New => plan.person_creates.push(want.clone()),
            Match::Conflict { reason } => {
                // Everyone the disagreeing keys point at stays as stored.
                keep.extend(self.index.ids_for(&want.keys));
                plan.conflicts.push(IdentityConflict {
                    subject: want.keys.label(),
                    reason,
                    person: None,
                    eckid: None,
                });
            }
            Match::EckidChanged { id, via, stored } => {
                keep.insert(id);
                self.eckid_changed(want, id, via, stored, plan);
            }
            Match::Existing { id, via } => self.existing(want, id, via, keep, plan),
        }
    }

    /// The desired person's keys name a stored person with another ECK-iD: the same person
    /// with a new ECK-iD when two sources confirm it, else a conflict for a person to decide.
    fn eckid_changed(
        &self,
        want: &PersonState,
        id: i64,
        via: &'static str,
        stored: String,
        plan: &mut Plan,
    ) {
        let Some(have) = self.by_id.get(&id) else {
            return;
        };
        let change = KeyChange {
            old: stored,
            new: want.keys.eckid.clone().unwrap_or_default(),
        };
        if eckid_change_confirmed(&self.index, want, id, self.options) {
            let mut update = person_update(have, want, via)
                .unwrap_or_else(|| PersonUpdate::nothing(have.id, want.kind, via));
            update.eckid_changed = Some(change);
            plan.person_updates.push(update);
        } else {
            plan.conflicts.push(IdentityConflict {
                subject: want.keys.label(),
                reason: format!(
                    "its {via} belongs to person {id}, who has another ECK-iD: the ECK-iD                      changed, or the key was handed to someone else"
                ),
                person: Some(id),
                eckid: Some(change),
            });
        }
    }

    /// The desired person is stored person `id`: what changed, unless the kinds differ or
    /// two desired persons match the same stored one.
    fn existing(
        &self,
        want: &PersonState,
        id: i64,
        via: &'static str,
        keep: &mut HashSet<i64>,
        plan: &mut Plan,
    ) {
        let Some(have) = self.by_id.get(&id) else {
            return;
        };
        let conflict = |reason: String| IdentityConflict {
            subject: want.keys.label(),
            reason,
            person: Some(id),
            eckid: None,
        };
        if have.state.kind != want.kind {
            plan.conflicts.push(conflict(format!(
                "its {via} belongs to person {id}, who is {} here, not {}",
                have.state.kind.as_str(),
                want.kind.as_str()
            )));
            keep.insert(id);
        } else if !keep.insert(id) {
            plan.conflicts.push(conflict(format!(
                "two records of the source match person {id}"
            )));
        } else if let Some(update) = person_update(have, want, via) {
            plan.person_updates.push(update);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Owned;
    use crate::sync::merge::merge;
    use chrono::NaiveDate;
    use connector_api::{Snapshot, SourceKind};
    use connector_sim::{SchoolKind, World};

    fn snapshot(world: &World) -> Snapshot {
        crate::simulated::snapshot(&world.schools.values().next().expect("a school").school)
    }

    fn world(seed: u64, kind: SchoolKind) -> World {
        let mut w = World::new(seed, NaiveDate::from_ymd_opt(2025, 10, 1).expect("date"));
        w.add_school(
            "99XX00".parse().expect("id"),
            kind,
            60 + (seed as usize % 5) * 40,
        );
        w
    }

    /// What the store would hold after applying `plan` to `groups` and `persons` (test model
    /// of the apply step, so the diff can be checked end to end without a database).
    fn apply(plan: &Plan, groups: &mut Vec<StoredGroup>, persons: &mut Vec<StoredPerson>) {
        let mut next = persons
            .iter()
            .map(|p| p.id)
            .chain(groups.iter().map(|g| g.id))
            .max()
            .unwrap_or(0)
            + 1;
        for g in &plan.group_creates {
            groups.push(StoredGroup {
                id: next,
                state: g.clone(),
                removed: false,
            });
            next += 1;
        }
        for u in &plan.group_updates {
            let g = groups
                .iter_mut()
                .find(|g| g.id == u.id)
                .expect("updated group exists");
            g.state = u.state.clone();
            g.removed = false;
        }
        for id in &plan.group_removals {
            groups
                .iter_mut()
                .filter(|g| g.id == *id)
                .for_each(|g| g.removed = true);
        }
        for p in &plan.person_creates {
            persons.push(StoredPerson {
                id: next,
                state: p.clone(),
                removed: false,
                local: false,
            });
            next += 1;
        }
        for u in &plan.person_updates {
            let p = persons
                .iter_mut()
                .find(|p| p.id == u.id)
                .expect("updated person exists");
            u.apply_to(&mut p.state);
            p.removed = false;
            p.local = false;
        }
        for (id, _) in &plan.person_removals {
            persons
                .iter_mut()
                .filter(|p| p.id == *id)
                .for_each(|p| p.removed = true);
        }
    }

    /// The store after a first sync of `s`.
    fn first_sync(s: &Snapshot) -> (Vec<StoredGroup>, Vec<StoredPerson>) {
        let (mut groups, mut persons) = (Vec::new(), Vec::new());
        let plan = diff(&merge(&[s]).state, &[], &[], &DiffOptions::default());
        apply(&plan, &mut groups, &mut persons);
        (groups, persons)
    }

    /// The live part of a store, comparable with a desired state.
    fn live(
        groups: &[StoredGroup],
        persons: &[StoredPerson],
    ) -> (Vec<GroupState>, Vec<(PersonKeys, String)>) {
        let mut g: Vec<GroupState> = groups
            .iter()
            .filter(|g| !g.removed)
            .map(|g| g.state.clone())
            .collect();
        g.sort_by(|a, b| a.key.cmp(&b.key));
        let mut p: Vec<(PersonKeys, String)> = persons
            .iter()
            .filter(|p| !p.removed)
            .map(|p| {
                (
                    p.state.keys.clone(),
                    format!(
                        "{:?}{:?}{:?}{:?}",
                        p.state.fields, p.state.links, p.state.links_owner, p.state.roles
                    ),
                )
            })
            .collect();
        p.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        (g, p)
    }

    fn desired_live(state: &RosterState) -> (Vec<GroupState>, Vec<(PersonKeys, String)>) {
        let g: Vec<GroupState> = state.groups.values().cloned().collect();
        let mut p: Vec<(PersonKeys, String)> = state
            .persons
            .iter()
            .map(|p| {
                (
                    p.keys.clone(),
                    format!(
                        "{:?}{:?}{:?}{:?}",
                        p.fields, p.links, p.links_owner, p.roles
                    ),
                )
            })
            .collect();
        p.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        (g, p)
    }

    #[test]
    fn diffs_apply_to_the_desired_state_and_then_are_empty() {
        for seed in 1..=6u64 {
            for kind in [SchoolKind::Primary, SchoolKind::Secondary] {
                let mut w = world(seed, kind);
                let (mut groups, mut persons) = (Vec::new(), Vec::new());
                for day in 0..4 {
                    let desired = merge(&[&snapshot(&w)]).state;
                    let plan = diff(&desired, &groups, &persons, &DiffOptions::default());
                    assert!(
                        plan.conflicts.is_empty(),
                        "seed {seed} day {day}: {:?}",
                        plan.conflicts
                    );
                    if day == 0 {
                        assert_eq!(plan.person_creates.len(), desired.persons.len());
                    } else {
                        assert!(
                            plan.person_creates.len() < desired.persons.len() / 4,
                            "an update is not a re-create"
                        );
                    }
                    apply(&plan, &mut groups, &mut persons);
                    assert_eq!(
                        live(&groups, &persons),
                        desired_live(&desired),
                        "seed {seed} day {day}"
                    );
                    let again = diff(&desired, &groups, &persons, &DiffOptions::default());
                    assert!(
                        again.is_empty(),
                        "seed {seed} day {day}: a second diff is not empty: {again:?}"
                    );
                    w.advance_day();
                }
            }
        }
    }

    #[test]
    fn a_frozen_school_loses_nothing() {
        let mut w = world(3, SchoolKind::Primary);
        let (groups, persons) = first_sync(&snapshot(&w));
        for _ in 0..3 {
            w.advance_day();
        }
        // Half the school vanishes from the answer.
        let mut s = snapshot(&w);
        s.pupils.truncate(s.pupils.len() / 2);
        s.groups.truncate(2);
        let frozen = DiffOptions {
            frozen: true,
            ..DiffOptions::default()
        };
        let plan = diff(&merge(&[&s]).state, &groups, &persons, &frozen);
        assert!(plan.person_removals.is_empty() && plan.group_removals.is_empty());
        let open = diff(
            &merge(&[&s]).state,
            &groups,
            &persons,
            &DiffOptions::default(),
        );
        assert!(
            !open.person_removals.is_empty(),
            "unfrozen, the same answer would remove"
        );
    }

    #[test]
    fn moves_arrivals_and_leavers_are_single_changes() {
        let w = world(5, SchoolKind::Primary);
        let first = snapshot(&w);
        let (groups, persons) = first_sync(&first);

        let mut next = first.clone();
        // One pupil moves to another stamgroep.
        let target = next
            .groups
            .iter()
            .find(|g| {
                Some(&g.key) != next.pupils[0].group.as_ref()
                    && g.kind == connector_api::GroupKind::Stamgroep
            })
            .expect("another group")
            .key
            .clone();
        let old_group = next.pupils[0]
            .group
            .replace(target.clone())
            .expect("had a group");
        // An ECK-iD arrives for a pupil known by LAS key only.
        let arriving = next
            .pupils
            .iter()
            .position(|p| p.keys.eckid.is_none())
            .expect("a pupil without ECK-iD");
        next.pupils[arriving].keys.eckid = Some("https://ketenid.nl/201703/new".into());
        // A pupil leaves.
        let leaver = next.pupils.pop().expect("a pupil");

        let plan = diff(
            &merge(&[&next]).state,
            &groups,
            &persons,
            &DiffOptions::default(),
        );
        assert!(
            plan.person_creates.is_empty(),
            "nobody is created: {:?}",
            plan.person_creates.len()
        );
        assert_eq!(plan.person_updates.len(), 2, "{:?}", plan.person_updates);
        let moved = plan
            .person_updates
            .iter()
            .find(|u| !u.links_added.is_empty())
            .expect("the move");
        assert_eq!(
            moved.links_added,
            vec![Link {
                group: target,
                role: "member".into()
            }]
        );
        assert_eq!(
            moved.links_removed,
            vec![Link {
                group: old_group,
                role: "member".into()
            }]
        );
        assert!(moved.fields.is_empty());
        let linked = plan
            .person_updates
            .iter()
            .find(|u| u.new_keys.eckid.is_some())
            .expect("the ECK-iD link");
        assert_eq!(linked.matched_by, "las_key");
        assert_eq!(plan.person_removals.len(), 1);
        let removed = persons
            .iter()
            .find(|p| p.id == plan.person_removals[0].0)
            .expect("removed person");
        assert_eq!(removed.state.keys.las_key, leaver.keys.las_key);

        // The same leaver, rejected by the source instead of absent, is kept.
        let mut protect = DiffOptions::default();
        protect
            .protected_las_keys
            .insert(leaver.keys.las_key.clone().expect("key"));
        assert!(
            diff(&merge(&[&next]).state, &groups, &persons, &protect)
                .person_removals
                .is_empty()
        );
    }

    #[test]
    fn a_las_key_reused_under_another_eckid_is_a_conflict_and_nobody_is_removed() {
        let w = world(7, SchoolKind::Primary);
        let first = snapshot(&w);
        let (groups, persons) = first_sync(&first);
        let mut next = first.clone();
        let i = next
            .pupils
            .iter()
            .position(|p| p.keys.eckid.is_some())
            .expect("a pupil with ECK-iD");
        next.pupils[i].keys.eckid = Some("https://ketenid.nl/201703/someone-else".into());
        let plan = diff(
            &merge(&[&next]).state,
            &groups,
            &persons,
            &DiffOptions::default(),
        );
        assert_eq!(plan.conflicts.len(), 1, "{:?}", plan.conflicts);
        assert!(plan.person_creates.is_empty() && plan.person_removals.is_empty());
    }

    #[test]
    fn the_broker_wins_fields_and_the_disagreement_is_recorded() {
        let w = world(9, SchoolKind::Primary);
        let las = snapshot(&w);
        let mut broker = las.clone();
        broker.source = SourceKind::Broker;
        broker.pupils.truncate(1);
        broker.staff.clear();
        broker.pupils[0].name.family_name = Some("Broker-Naam".into());
        broker.pupils[0].keys.broker_id = Some("123".into());
        let merged = merge(&[&las, &broker]);
        assert_eq!(
            merged.state.persons.len(),
            las.pupils.len() + las.staff.len(),
            "one person, not two"
        );
        let p = merged
            .state
            .persons
            .iter()
            .find(|p| p.keys.broker_id.is_some())
            .expect("linked");
        assert_eq!(
            p.fields[&Field::FamilyName],
            Owned {
                value: "Broker-Naam".into(),
                owner: Owner::Broker
            }
        );
        assert_eq!(p.fields[&Field::YearGroup].owner, Owner::Broker);
        assert!(merged.conflicts.iter().any(|c| c.field == "family_name"
            && c.kept_owner == Owner::Broker
            && c.other_owner == Owner::Las));

        // Stored from the LAS alone, then synced with the broker: one update moves ownership.
        let (groups, persons) = first_sync(&las);
        let plan = diff(&merged.state, &groups, &persons, &DiffOptions::default());
        assert!(plan.person_creates.is_empty() && plan.person_removals.is_empty());
        assert_eq!(plan.person_updates.len(), 1, "{:?}", plan.person_updates);
        let u = &plan.person_updates[0];
        assert_eq!(u.links_owner, Some(Owner::Broker));
        assert_eq!(u.new_keys.broker_id.as_deref(), Some("123"));
        assert!(u.fields.iter().any(|c| c.field == Field::FamilyName
            && c.new.as_ref().is_some_and(|v| v.owner == Owner::Broker)));
    }
}
