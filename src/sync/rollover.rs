//! The school-year switch, pure. A run whose answer is for a later school year than the
//! stored one is the switch: last year's leavers (the top year group), the groups that end
//! and the memberships the new year regroups are expected and pass the brakes; anything
//! else (pupils of other year groups vanishing, staff leaving) is still braked.

use connector_api::SchoolYear;

use crate::model::PersonKind;
use crate::model::plan::{Plan, StoredPerson};
use crate::sync::brakes::Expected;

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
        memberships_of: plan.person_updates.iter().map(|u| u.id).collect(),
    }
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
}
