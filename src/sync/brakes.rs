//! Brakes: a source that suddenly drops many records of one kind is more likely broken than
//! right. Removals of a kind above the threshold are held for approval; everything else (and
//! every create and update) goes through.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::model::PersonKind;
use crate::sync::diff::{Plan, StoredGroup, StoredPerson};

pub use crate::model::held::{HeldRemoval, Kind};

/// Removals are held when they exceed both `max_share` of what is stored and `max_count`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrakeRules {
    pub max_share: f64,
    pub max_count: usize,
}

impl Default for BrakeRules {
    /// More than 10% and more than 5 records.
    fn default() -> Self {
        BrakeRules {
            max_share: 0.10,
            max_count: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Apply,
    Hold {
        removals: usize,
        stored: usize,
        reason: String,
    },
}

impl Decision {
    pub fn is_held(&self) -> bool {
        matches!(self, Decision::Hold { .. })
    }
}

/// Decide for one kind: `removals` out of `stored` records. `allow` (`--allow-removals`,
/// an approval) releases the brake.
pub fn decide(
    kind: Kind,
    removals: usize,
    stored: usize,
    rules: &BrakeRules,
    allow: bool,
) -> Decision {
    if allow || removals == 0 {
        return Decision::Apply;
    }
    let share = removals as f64 / stored.max(1) as f64;
    if removals > rules.max_count && share > rules.max_share {
        return Decision::Hold {
            removals,
            stored,
            reason: format!(
                "{removals} of {stored} {} would be removed ({:.0}%, more than {:.0}% and more \
                 than {}); held until approved with `rostersync approve --run N`",
                kind.as_str(),
                share * 100.0,
                rules.max_share * 100.0,
                rules.max_count
            ),
        };
    }
    Decision::Apply
}

/// How much of each kind the school has stored now (live records only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub pupils: usize,
    pub staff: usize,
    pub groups: usize,
    pub memberships: usize,
}

impl Stored {
    pub fn of(groups: &[StoredGroup], persons: &[StoredPerson]) -> Stored {
        let live = persons.iter().filter(|p| !p.removed);
        let mut s = Stored {
            groups: groups.iter().filter(|g| !g.removed).count(),
            ..Stored::default()
        };
        for p in live {
            match p.state.kind {
                PersonKind::Pupil => s.pupils += 1,
                PersonKind::Staff => s.staff += 1,
            }
            s.memberships += p.state.links.len();
        }
        s
    }

    fn get(&self, kind: Kind) -> usize {
        match kind {
            Kind::Pupils => self.pupils,
            Kind::Staff => self.staff,
            Kind::Groups => self.groups,
            Kind::Memberships => self.memberships,
        }
    }
}

/// Every decision of one run, per kind, for the run record.
pub type Decisions = Vec<(Kind, Decision)>;

/// Removals a run expects: they go through whatever their number and do not count towards
/// a brake. At a school-year switch: the leavers of the last year group, the groups that
/// end, the memberships the new year regroups (see `sync::rollover`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub persons: BTreeSet<i64>,
    pub groups: BTreeSet<i64>,
    /// Persons whose removed memberships are expected.
    pub memberships_of: BTreeSet<i64>,
}

/// Take the removals of every kind whose brake trips out of `plan`; the rest of the plan
/// (creates, updates, removals of other kinds) is left to apply.
pub fn hold(
    plan: &mut Plan,
    stored: Stored,
    rules: &BrakeRules,
    allow: bool,
    expected: &Expected,
) -> (Vec<HeldRemoval>, Decisions) {
    let person_removals = |kind: PersonKind| {
        plan.person_removals
            .iter()
            .filter(|(id, k)| *k == kind && !expected.persons.contains(id))
            .count()
    };
    let links_removed: usize = plan
        .person_updates
        .iter()
        .filter(|u| !expected.memberships_of.contains(&u.id))
        .map(|u| u.links_removed.len())
        .sum();
    let group_removals = plan
        .group_removals
        .iter()
        .filter(|id| !expected.groups.contains(id))
        .count();
    let removals = [
        (Kind::Pupils, person_removals(PersonKind::Pupil)),
        (Kind::Staff, person_removals(PersonKind::Staff)),
        (Kind::Groups, group_removals),
        (Kind::Memberships, links_removed),
    ];
    let decisions: Decisions = removals
        .iter()
        .map(|(kind, n)| (*kind, decide(*kind, *n, stored.get(*kind), rules, allow)))
        .collect();
    let held = |kind: Kind| decisions.iter().any(|(k, d)| *k == kind && d.is_held());
    let mut out = Vec::new();
    let person_kind_held = |k: PersonKind| match k {
        PersonKind::Pupil => held(Kind::Pupils),
        PersonKind::Staff => held(Kind::Staff),
    };
    plan.person_removals.retain(|(id, k)| {
        if person_kind_held(*k) && !expected.persons.contains(id) {
            out.push(HeldRemoval {
                kind: if *k == PersonKind::Pupil {
                    Kind::Pupils
                } else {
                    Kind::Staff
                },
                entity_id: *id,
                link: None,
            });
            false
        } else {
            true
        }
    });
    if held(Kind::Groups) {
        let (kept, taken): (Vec<i64>, Vec<i64>) = plan
            .group_removals
            .drain(..)
            .partition(|id| expected.groups.contains(id));
        plan.group_removals = kept;
        out.extend(taken.into_iter().map(|id| HeldRemoval {
            kind: Kind::Groups,
            entity_id: id,
            link: None,
        }));
    }
    if held(Kind::Memberships) {
        for u in &mut plan.person_updates {
            if expected.memberships_of.contains(&u.id) {
                continue;
            }
            out.extend(u.links_removed.drain(..).map(|l| HeldRemoval {
                kind: Kind::Memberships,
                entity_id: u.id,
                link: Some(l),
            }));
        }
    }
    (out, decisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_thresholds_must_be_passed_to_hold() {
        let r = BrakeRules::default();
        assert_eq!(decide(Kind::Pupils, 0, 100, &r, false), Decision::Apply);
        assert_eq!(
            decide(Kind::Pupils, 10, 100, &r, false),
            Decision::Apply,
            "10% is not more than 10%"
        );
        assert!(
            decide(Kind::Pupils, 30, 100, &r, false).is_held(),
            "a 30% drop is held"
        );
        assert_eq!(
            decide(Kind::Staff, 5, 6, &r, false),
            Decision::Apply,
            "5 is not more than 5"
        );
        assert!(decide(Kind::Groups, 6, 10, &r, false).is_held());
        assert_eq!(
            decide(Kind::Pupils, 30, 100, &r, true),
            Decision::Apply,
            "approval releases"
        );
    }

    #[test]
    fn the_reason_says_what_and_how_to_release() {
        let Decision::Hold { reason, .. } =
            decide(Kind::Memberships, 40, 100, &BrakeRules::default(), false)
        else {
            unreachable!("40% is held");
        };
        assert!(reason.contains("40 of 100 memberships"), "{reason}");
        assert!(reason.contains("rostersync approve --run N"), "{reason}");
    }

    #[test]
    fn expected_removals_pass_and_do_not_count_towards_a_brake() {
        let stored = Stored {
            pupils: 100,
            staff: 10,
            groups: 8,
            memberships: 110,
        };
        let plan = || Plan {
            person_removals: (1..=12).map(|id| (id, PersonKind::Pupil)).collect(),
            group_removals: vec![501],
            ..Plan::default()
        };
        // Twelve pupils of a hundred: held without expectations.
        let mut p = plan();
        let (held, _) = hold(
            &mut p,
            stored,
            &BrakeRules::default(),
            false,
            &Expected::default(),
        );
        assert_eq!(held.len(), 12);
        // Ten of them expected (last year's leavers): the other two are under the brake.
        let expected = Expected {
            persons: (1..=10).collect(),
            ..Expected::default()
        };
        let mut p = plan();
        let (held, _) = hold(&mut p, stored, &BrakeRules::default(), false, &expected);
        assert!(held.is_empty());
        assert_eq!(p.person_removals.len(), 12);
        // Thirty vanish where ten were expected: the twenty beyond are held, the ten go.
        let mut p = Plan {
            person_removals: (1..=30).map(|id| (id, PersonKind::Pupil)).collect(),
            ..Plan::default()
        };
        let (held, _) = hold(&mut p, stored, &BrakeRules::default(), false, &expected);
        assert_eq!(held.len(), 20);
        assert_eq!(p.person_removals.len(), 10);
        assert!(
            p.person_removals
                .iter()
                .all(|(id, _)| expected.persons.contains(id))
        );
    }

    #[test]
    fn an_empty_store_cannot_divide_by_zero() {
        assert!(decide(Kind::Pupils, 6, 0, &BrakeRules::default(), false).is_held());
    }
}
