//! The school-year switch, pure. A run whose answer is for a later school year than the
//! stored one is the switch: last year's leavers (the top year group), the groups that end
//! and the memberships the new year regroups are expected and pass the brakes; anything
//! else (pupils of other year groups vanishing, staff leaving) is still braked.

use connector_api::{SchoolYear, Snapshot};

use crate::model::plan::{Plan, StoredGroup, StoredPerson};
use crate::model::{Field, PersonKind};
use crate::sync::brakes::{Expected, Kind};
use crate::sync::diff::{DiffOptions, diff};
use crate::sync::merge::merge;

/// Whether an answer for `answered` over a school stored for `stored` is the year switch.
pub fn is_switch(stored: Option<&str>, answered: Option<&str>) -> Option<SchoolYear> {
    let stored: SchoolYear = stored?.parse().ok()?;
    let answered: SchoolYear = answered?.parse().ok()?;
    (answered > stored).then_some(answered)
}

/// The year group that leaves at the switch: the highest numbered one among the live pupils
/// (8 in primary schools; the final year in secondary schools).
pub fn leaving_year_group(persons: &[StoredPerson]) -> Option<u32> {
    persons
        .iter()
        .filter(|p| !p.removed && p.state.kind == PersonKind::Pupil)
        .filter_map(|p| year_group(p)?.parse::<u32>().ok())
        .max()
}

fn year_group(p: &StoredPerson) -> Option<&str> {
    p.state
        .fields
        .get(&crate::model::Field::YearGroup)
        .map(|o| o.value.as_str())
}

/// What the switch expects of `plan`: leavers of the last year group, every group that ends,
/// the regrouping of everyone who stays.
pub fn expected_at_switch(persons: &[StoredPerson], plan: &Plan) -> Expected {
    let leaving = leaving_year_group(persons).map(|y| y.to_string());
    let leavers = plan
        .person_removals
        .iter()
        .filter(|(_, kind)| *kind == PersonKind::Pupil)
        .map(|(id, _)| *id)
        .filter(|id| {
            persons
                .iter()
                .find(|p| p.id == *id)
                .and_then(year_group)
                .is_some_and(|y| Some(y) == leaving.as_deref())
        })
        .collect();
    Expected {
        persons: leavers,
        groups: plan.group_removals.iter().copied().collect(),
        memberships_of: regrouped(plan),
    }
}

/// What the prepared year would do to the stored roster: the engine's own merge and diff, so
/// a pupil who moves up is matched by the same keys and keeps their id.
pub fn plan_for(prepared: &Snapshot, groups: &[StoredGroup], persons: &[StoredPerson]) -> Plan {
    let merged = merge(&[prepared]);
    diff(
        &merged.state,
        groups,
        persons,
        &DiffOptions {
            frozen: false,
            protected_las_keys: merged.protected_las_keys,
            match_staff_email: true,
            confirmed_eckids: merged.confirmed_eckids,
        },
    )
}

/// What the switch expects when next year was prepared: exactly the removals the prepared
/// year makes (its leavers, its ended groups) and the regrouping of everyone in `plan`.
pub fn expected_from_prepared(prepared: &Plan, plan: &Plan) -> Expected {
    Expected {
        persons: prepared.person_removals.iter().map(|(id, _)| *id).collect(),
        groups: prepared.group_removals.iter().copied().collect(),
        memberships_of: regrouped(plan),
    }
}

/// `expected` without the removals a brake held before and nobody approved yet: those stay
/// for an approval, switch or not.
pub fn without_held(
    mut expected: Expected,
    waiting: &[crate::store::held::HeldChange],
) -> Expected {
    for h in waiting {
        let Some(id) = h.entity_id else { continue };
        match Kind::parse(&h.kind) {
            Some(Kind::Groups) => {
                expected.groups.remove(&id);
            }
            Some(Kind::Memberships) => {
                expected.memberships_of.remove(&id);
            }
            // Pupils, staff, and a kind this version does not know: the person stays held.
            Some(Kind::Pupils | Kind::Staff) | None => {
                expected.persons.remove(&id);
            }
        }
    }
    expected
}

pub use crate::model::rollover::Preview;

/// Staff in `plan` who get a group they are not linked to now (a link that only changes its
/// role or its source is no new group).
fn with_new_groups(plan: &Plan, persons: &[StoredPerson]) -> usize {
    plan.person_updates
        .iter()
        .filter(|u| u.kind == PersonKind::Staff)
        .filter(|u| {
            let now: std::collections::BTreeSet<&str> = persons
                .iter()
                .find(|p| p.id == u.id)
                .map(|p| p.state.links.iter().map(|l| l.group.as_str()).collect())
                .unwrap_or_default();
            u.links_added
                .iter()
                .any(|l| !now.contains(l.group.as_str()))
        })
        .count()
}

/// Count what the prepared year's `plan` changes to the stored `persons`.
pub fn preview(plan: &Plan, prepared: &Snapshot, persons: &[StoredPerson]) -> Preview {
    let pupils = |kind: PersonKind| kind == PersonKind::Pupil;
    Preview {
        moving_up: plan
            .person_updates
            .iter()
            .filter(|u| pupils(u.kind) && u.fields.iter().any(|f| f.field == Field::YearGroup))
            .count(),
        leaving: plan
            .person_removals
            .iter()
            .filter(|(_, k)| pupils(*k))
            .count(),
        arriving: plan
            .person_creates
            .iter()
            .filter(|p| pupils(p.kind))
            .count(),
        teachers_with_new_groups: with_new_groups(plan, persons),
        groups_ending: plan.group_removals.len(),
        groups_beginning: plan.group_creates.len(),
        pupils: prepared.pupils.len(),
    }
}

/// Everyone in `plan` who leaves a group.
fn regrouped(plan: &Plan) -> std::collections::BTreeSet<i64> {
    plan.person_updates
        .iter()
        .filter(|u| !u.links_removed.is_empty())
        .map(|u| u.id)
        .collect()
}

/// The switch in one sentence for the run record.
pub fn said(year: SchoolYear, plan: &Plan, expected: &Expected) -> String {
    let leavers = plan
        .person_removals
        .iter()
        .filter(|(id, _)| expected.persons.contains(id))
        .count();
    format!(
        "school year {year} began: {leavers} leaver(s) of the last year group, {} group(s) \
         ended and {} began, {} person(s) regrouped; expected at the switch, not braked",
        plan.group_removals.len(),
        plan.group_creates.len(),
        expected.memberships_of.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_year_is_the_switch_and_nothing_else_is() {
        fn y(s: &str) -> Option<&str> {
            Some(s)
        }
        assert_eq!(
            is_switch(y("2026-2027"), y("2027-2028"))
                .map(|s| s.to_string())
                .as_deref(),
            Some("2027-2028")
        );
        assert_eq!(is_switch(y("2026-2027"), y("2026-2027")), None);
        assert_eq!(
            is_switch(y("2027-2028"), y("2026-2027")),
            None,
            "never backwards"
        );
        assert_eq!(
            is_switch(None, y("2026-2027")),
            None,
            "a first run is no switch"
        );
        assert_eq!(is_switch(y("2026-2027"), y("volgend jaar")), None);
    }

    #[test]
    fn removals_a_brake_held_stay_held_at_the_switch() {
        let expected = Expected {
            persons: [1, 2, 3].into(),
            groups: [7].into(),
            memberships_of: [1, 4].into(),
        };
        let held = |kind: &str, id: i64| crate::store::held::HeldChange {
            id: 0,
            run_id: 9,
            school_id: "99XX00".into(),
            kind: kind.into(),
            operation: "remove".into(),
            entity_id: Some(id),
            detail: "{}".into(),
            state: crate::store::held::HELD.into(),
            decided_at: None,
            decided_by: None,
        };
        let left = without_held(
            expected,
            &[held("pupils", 2), held("groups", 7), held("memberships", 4)],
        );
        assert_eq!(left.persons, [1, 3].into());
        assert!(left.groups.is_empty());
        assert_eq!(left.memberships_of, [1].into());
    }
}
