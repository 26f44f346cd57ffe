//! Property-style tests over random schools: random groups, staff with random links and
//! roles from random sources, checked against what the rules promise.

use super::*;

fn rights() -> Rights {
    let settings = crate::settings::Settings::load(None).expect("defaults");
    Rights::from_settings(&settings.rights)
}

fn groups(n: usize) -> Vec<GroupRef> {
    (0..n)
        .map(|i| GroupRef {
            id: 100 + i as i64,
            key: format!("G{i}"),
            department: Some(format!("D{}", i % 3)),
        })
        .collect()
}

const LINK_ROLES: [&str; 6] = ["LRK", "VAK", "staff", "Leerkracht", "Stagiair", "XYZ"];
const ROLES: [&str; 6] = ["IB", "DIR", "IBRTer", "ICTCoordinator", "conciërge", "RT"];
const SOURCES: [&str; 3] = ["broker", "las", "portal"];

fn random_staff(rng: &mut fastrand::Rng, groups: &[GroupRef], n: usize) -> Vec<StaffFacts> {
    (0..n)
        .map(|i| StaffFacts {
            person: i as i64 + 1,
            links: (0..rng.usize(0..4))
                .map(|_| LinkFact {
                    group: groups[rng.usize(0..groups.len())].id,
                    role: LINK_ROLES[rng.usize(0..LINK_ROLES.len())].into(),
                    source: SOURCES[rng.usize(0..2)].into(),
                })
                .collect(),
            roles: (0..rng.usize(0..2))
                .map(|_| RoleFact {
                    name: ROLES[rng.usize(0..ROLES.len())].into(),
                    scope: String::new(),
                    source: SOURCES[rng.usize(0..2)].into(),
                })
                .collect(),
        })
        .collect()
}

/// The store after `actions` (a test model of the store's part).
fn apply(stored: &mut Vec<Stored>, actions: &[Action], next_id: &mut i64) {
    for a in actions {
        match a {
            Action::Create(d) => {
                stored.push(Stored {
                    id: *next_id,
                    person: d.person,
                    level: d.level,
                    group: d.group,
                    rule: d.rule.clone(),
                    source: d.source.clone(),
                    state: State::Active,
                    revoke_after: None,
                });
                *next_id += 1;
            }
            Action::Restore(id) => {
                let s = stored.iter_mut().find(|s| s.id == *id).expect("grant");
                s.state = State::Active;
                s.revoke_after = None;
            }
            Action::Pend { id, revoke_after } => {
                let s = stored.iter_mut().find(|s| s.id == *id).expect("grant");
                s.state = State::Pending;
                s.revoke_after = Some(*revoke_after);
            }
            Action::Revoke(id) => stored.retain(|s| s.id != *id),
        }
    }
}

fn holdings(stored: &[Stored], person: i64) -> Vec<Holding> {
    stored
        .iter()
        .filter(|s| s.person == person)
        .map(|s| Holding {
            id: s.id,
            level: s.level,
            group: s.group,
            rule: s.rule.clone(),
            source: s.source.clone(),
            fact: String::new(),
            state: s.state,
            since: Utc::now(),
            revoke_after: s.revoke_after,
        })
        .collect()
}

#[test]
fn visible_groups_are_the_linked_groups_plus_everything_for_school_wide_roles() {
    let r = rights();
    for seed in 0..200 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let groups = groups(rng.usize(1..12));
        let staff = random_staff(&mut rng, &groups, 8);
        let derived = derive(&staff, &groups, &r.rules);
        let mut stored = Vec::new();
        let mut next = 1;
        apply(
            &mut stored,
            &reconcile(&[], &derived, Utc::now(), r.grace, false),
            &mut next,
        );
        for s in &staff {
            let teaches = ["LRK", "VAK", "staff", "Leerkracht", "Stagiair"];
            let whole = s
                .roles
                .iter()
                .any(|role| ["IB", "RT", "IBRTer", "DIR"].contains(&role.name.as_str()));
            let expected: BTreeSet<i64> = if whole {
                groups.iter().map(|g| g.id).collect()
            } else {
                s.links
                    .iter()
                    .filter(|l| teaches.contains(&l.role.as_str()))
                    .map(|l| l.group)
                    .collect()
            };
            let held = holdings(&stored, s.person);
            let seen: BTreeSet<i64> = effective(&held, &groups).iter().map(|v| v.group).collect();
            assert_eq!(seen, expected, "seed {seed}, person {}", s.person);
            if whole {
                assert!(
                    effective(&held, &groups)
                        .iter()
                        .all(|v| v.level == Level::School)
                );
            }
        }
    }
}

#[test]
fn every_grant_has_a_rule_and_a_fact() {
    let r = rights();
    let names: BTreeSet<&str> = r.rules.iter().map(|r| r.name.as_str()).collect();
    for seed in 0..100 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let groups = groups(6);
        for d in derive(&random_staff(&mut rng, &groups, 10), &groups, &r.rules) {
            assert!(names.contains(d.rule.as_str()), "{d:?}");
            assert!(!d.fact.is_empty() && d.fact.starts_with(&d.source), "{d:?}");
            assert_eq!(d.group.is_some(), d.level == Level::Related, "{d:?}");
        }
    }
}

#[test]
fn the_same_facts_again_change_no_grant() {
    let r = rights();
    for seed in 0..100 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let groups = groups(8);
        let staff = random_staff(&mut rng, &groups, 12);
        let derived = derive(&staff, &groups, &r.rules);
        let mut stored = Vec::new();
        let mut next = 1;
        let now = Utc::now();
        apply(
            &mut stored,
            &reconcile(&[], &derived, now, r.grace, false),
            &mut next,
        );
        assert!(
            reconcile(
                &stored,
                &derive(&staff, &groups, &r.rules),
                now,
                r.grace,
                false
            )
            .is_empty()
        );
    }
}

#[test]
fn a_lost_link_waits_out_the_grace_period_and_comes_back_as_the_same_grant() {
    let r = rights();
    let groups = groups(3);
    let teacher = |group: i64| StaffFacts {
        person: 7,
        links: vec![LinkFact {
            group,
            role: "LRK".into(),
            source: "las".into(),
        }],
        roles: vec![],
    };
    let t0 = Utc::now();
    let mut stored = Vec::new();
    let mut next = 1;
    let d = derive(&[teacher(100)], &groups, &r.rules);
    let first = reconcile(&stored, &d, t0, r.grace, false);
    apply(&mut stored, &first, &mut next);
    let id = stored[0].id;
    // Moved from group 100 to 101: 101 at once, 100 pending.
    let moved = derive(&[teacher(101)], &groups, &r.rules);
    let actions = reconcile(&stored, &moved, t0, r.grace, false);
    apply(&mut stored, &actions, &mut next);
    let held = holdings(&stored, 7);
    let seen: Vec<i64> = effective(&held, &groups).iter().map(|v| v.group).collect();
    assert_eq!(
        seen,
        [100, 101],
        "the old group stays visible during the grace period"
    );
    assert_eq!(
        stored.iter().find(|s| s.id == id).expect("kept").state,
        State::Pending
    );
    // Back within the grace period: the same grant, active again.
    let back = derive(&[teacher(100), teacher(101)], &groups, &r.rules);
    let actions = reconcile(
        &stored,
        &back,
        t0 + chrono::Duration::days(3),
        r.grace,
        false,
    );
    assert!(actions.contains(&Action::Restore(id)), "{actions:?}");
    apply(&mut stored, &actions, &mut next);
    assert_eq!(
        stored.iter().find(|s| s.id == id).expect("kept").state,
        State::Active
    );
    // Gone again, and the grace period passes: revoked then, not before.
    let actions = reconcile(&stored, &moved, t0, r.grace, false);
    apply(&mut stored, &actions, &mut next);
    let early = reconcile(
        &stored,
        &moved,
        t0 + r.grace - chrono::Duration::hours(1),
        r.grace,
        false,
    );
    assert!(early.is_empty(), "{early:?}");
    let late = reconcile(&stored, &moved, t0 + r.grace, r.grace, false);
    assert_eq!(late, [Action::Revoke(id)]);
}

#[test]
fn a_frozen_school_keeps_its_whole_school_grants() {
    let r = rights();
    let groups = groups(3);
    let ib = StaffFacts {
        person: 1,
        links: vec![],
        roles: vec![RoleFact {
            name: "IB".into(),
            scope: String::new(),
            source: "las".into(),
        }],
    };
    let mut stored = Vec::new();
    let mut next = 1;
    let now = Utc::now();
    apply(
        &mut stored,
        &reconcile(&[], &derive(&[ib], &groups, &r.rules), now, r.grace, false),
        &mut next,
    );
    assert!(reconcile(&stored, &[], now, r.grace, true).is_empty());
    assert_eq!(reconcile(&stored, &[], now, r.grace, false).len(), 1);
}

#[test]
fn school_functions_reach_their_groups_and_departments() {
    let r = rights();
    let groups = groups(6);
    let staff = [StaffFacts {
        person: 1,
        links: vec![],
        roles: vec![
            RoleFact {
                name: "mentor".into(),
                scope: "G0,G4".into(),
                source: "portal".into(),
            },
            RoleFact {
                name: "teamleader".into(),
                scope: "departments:D2".into(),
                source: "portal".into(),
            },
            // The same role from another source than the rule names counts for nothing.
            RoleFact {
                name: "dean".into(),
                scope: "departments:D1".into(),
                source: "las".into(),
            },
        ],
    }];
    let derived = derive(&staff, &groups, &r.rules);
    let reached: BTreeSet<i64> = derived.iter().filter_map(|d| d.group).collect();
    // G0, G4 (mentor) and D2's groups: G2, G5.
    assert_eq!(reached, BTreeSet::from([100, 102, 104, 105]));
}
