//! UWLR's identity rules, enforced here because the XSD's own key/keyref constraints are
//! inert (unprefixed selectors never match qualified elements). Records that break them are
//! moved to rejects with their key: ambiguous data is not applied, and not silently lost.

use std::collections::{HashMap, HashSet};

use connector_api::Reject;

use crate::parse::Parsed;

fn count<'a>(keys: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut seen = HashMap::new();
    for k in keys {
        *seen.entry(k).or_insert(0) += 1;
    }
    seen
}

fn duplicates<'a>(keys: impl Iterator<Item = &'a str>) -> HashSet<String> {
    count(keys)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k.to_owned())
        .collect()
}

fn reject(entity: &str, key: &str, reason: String) -> Reject {
    Reject {
        entity: entity.into(),
        key: key.into(),
        reason,
    }
}

/// Check `parsed` in place. `extra_groups` are group keys known from another answer (the
/// structure answer of a getrapte transfer) that references may point to.
pub fn check(parsed: &mut Parsed, extra_groups: &HashSet<String>) {
    let dup_groups = duplicates(parsed.groups.iter().map(|g| g.key.as_str()));
    for key in &dup_groups {
        parsed.rejects.push(reject(
            "group",
            key,
            "the group key appears more than once; none of them is applied".into(),
        ));
    }
    parsed.groups.retain(|g| !dup_groups.contains(&g.key));
    let groups: HashSet<&str> = parsed
        .groups
        .iter()
        .map(|g| g.key.as_str())
        .chain(extra_groups.iter().map(String::as_str))
        .collect();

    let dup_keys = duplicates(
        parsed
            .pupils
            .iter()
            .filter_map(|p| p.keys.las_key.as_deref()),
    );
    let dup_eckids = duplicates(parsed.pupils.iter().filter_map(|p| p.keys.eckid.as_deref()));
    let mut rejects = Vec::new();
    for key in &dup_keys {
        rejects.push(reject(
            "pupil",
            key,
            "the pupil key appears more than once; none of them is applied".into(),
        ));
    }
    if !dup_eckids.is_empty() {
        rejects.push(reject(
            "pupil",
            "eckid",
            format!(
                "{} ECK-iD(s) appear on more than one pupil; those pupils are not applied",
                dup_eckids.len()
            ),
        ));
    }
    parsed.pupils.retain(|p| {
        if p.keys
            .las_key
            .as_ref()
            .is_some_and(|k| dup_keys.contains(k))
            || p.keys
                .eckid
                .as_ref()
                .is_some_and(|k| dup_eckids.contains(k))
        {
            return false;
        }
        let missing: Vec<&str> = p
            .group
            .iter()
            .chain(p.subgroups.iter())
            .map(String::as_str)
            .filter(|g| !groups.contains(g))
            .collect();
        if missing.is_empty() {
            return true;
        }
        rejects.push(reject(
            "pupil",
            &p.keys.label(),
            format!(
                "refers to group(s) not in the answer: {}",
                missing.join(", ")
            ),
        ));
        false
    });

    let dup_staff = duplicates(
        parsed
            .staff
            .iter()
            .filter_map(|s| s.keys.las_key.as_deref()),
    );
    for key in &dup_staff {
        rejects.push(reject(
            "staff",
            key,
            "the teacher key appears more than once; none of them is applied".into(),
        ));
    }
    parsed.staff.retain(|s| {
        if s.keys
            .las_key
            .as_ref()
            .is_some_and(|k| dup_staff.contains(k))
        {
            return false;
        }
        let missing: Vec<&str> = s
            .groups
            .iter()
            .map(|l| l.group.as_str())
            .filter(|g| !groups.contains(g))
            .collect();
        if missing.is_empty() {
            return true;
        }
        let shown: Vec<&str> = missing
            .iter()
            .map(|g| {
                if g.is_empty() {
                    "(a link without key)"
                } else {
                    g
                }
            })
            .collect();
        rejects.push(reject(
            "staff",
            &s.keys.label(),
            format!("refers to group(s) not in the answer: {}", shown.join(", ")),
        ));
        false
    });
    parsed.rejects.extend(rejects);
}
