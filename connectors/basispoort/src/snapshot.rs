//! An institution's overview as a snapshot for the engine, with the checks the broker does
//! not promise: duplicate ids or keys reject every occurrence (which one is right cannot be
//! known), a person without any key or pointing at an unknown group is rejected whole.
//! A rejected key means "unknown, keep what is stored", never a removal.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use connector_api::{
    GroupKind, GroupRecord, PersonKeys, PersonName, PupilRecord, Reject, RoleScope, Snapshot,
    SourceKind, StaffGroupLink, StaffRecord, StaffRole,
};

use crate::wire::{Groep, Leerling, Medewerker, Overview, Persoonsgegevens};

/// Broker roles whose rights follow the person's groups; the others are school-wide.
const GROUP_ROLES: [&str; 3] = ["Leerkracht", "Stagiair", "Inval"];

fn clean(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn name(p: Option<&Persoonsgegevens>) -> PersonName {
    let field = |f: fn(&Persoonsgegevens) -> Option<&str>| clean(p.and_then(f));
    PersonName {
        family_name: field(|p| p.achternaam.as_deref()),
        prefix: field(|p| p.voorvoegsel.as_deref()),
        given_name: field(|p| p.voornaam.as_deref()),
    }
}

fn keys(id: Option<i64>, eckid: Option<&str>, las: Option<&str>) -> PersonKeys {
    PersonKeys {
        eckid: clean(eckid),
        las_key: clean(las),
        broker_id: id.map(|i| i.to_string()),
        portal_code: None,
    }
}

/// `2025-07-31` or a timestamp starting with it.
fn end_date(s: Option<&str>) -> Result<Option<NaiveDate>, ()> {
    match clean(s) {
        None => Ok(None),
        Some(t) => t.get(..10).and_then(|d| d.parse().ok()).map(Some).ok_or(()),
    }
}

/// Values seen more than once, per kind of key.
fn duplicates<'a>(
    values: impl Iterator<Item = (&'static str, &'a str)>,
) -> HashSet<(&'static str, String)> {
    let mut seen: HashMap<(&'static str, &str), usize> = HashMap::new();
    for v in values {
        *seen.entry(v).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((k, v), _)| (k, v.to_owned()))
        .collect()
}

fn person_keys(k: &PersonKeys) -> impl Iterator<Item = (&'static str, &str)> {
    k.entries()
}

pub fn snapshot(
    overview: Overview,
    school_name: Option<String>,
    received_at: DateTime<Utc>,
) -> Snapshot {
    let mut snap = Snapshot::empty(SourceKind::Broker, received_at);
    snap.school_name = school_name;
    snap.marker = overview
        .meta_result
        .as_ref()
        .and_then(|m| m.mutation_timestamp.clone());

    // Groups: keyed by lasKey; a key twice rejects both.
    let all_groups: Vec<(&Groep, GroupKind)> = overview
        .groepen
        .iter()
        .map(|g| (g, GroupKind::Stamgroep))
        .chain(
            overview
                .subgroepen
                .iter()
                .map(|g| (g, GroupKind::Samengesteld)),
        )
        .collect();
    let dup_groups = duplicates(
        all_groups
            .iter()
            .filter_map(|(g, _)| g.las_key.as_deref().map(|k| ("group", k))),
    );
    let mut groups: HashMap<String, GroupKind> = HashMap::new();
    for (n, (g, kind)) in all_groups.iter().enumerate() {
        let Some(key) = clean(g.las_key.as_deref()) else {
            snap.rejects.push(reject(
                "group",
                &format!("#{}", n + 1),
                "the group has no lasKey",
            ));
            continue;
        };
        if dup_groups.contains(&("group", key.clone())) {
            snap.rejects
                .push(reject("group", &key, "the lasKey occurs more than once"));
            continue;
        }
        groups.insert(key.clone(), *kind);
        snap.groups.push(GroupRecord {
            name: clean(g.naam.as_deref()).unwrap_or_else(|| key.clone()),
            key,
            kind: *kind,
            year_group: clean(g.jaargroep.as_deref()),
            department: None,
        });
    }
    let known = |g: &str| groups.contains_key(g);

    // People: every key must be unique across pupils and staff.
    let pupil_keys: Vec<PersonKeys> = overview
        .leerlingen
        .iter()
        .map(|p| keys(p.id, p.eckid.as_deref(), p.las_key.as_deref()))
        .collect();
    let staff_keys: Vec<PersonKeys> = overview
        .medewerkers
        .iter()
        .map(|m| keys(m.id, m.eckid.as_deref(), m.las_key.as_deref()))
        .collect();
    let dup = duplicates(pupil_keys.iter().chain(&staff_keys).flat_map(person_keys));
    let doubtful = |k: &PersonKeys| {
        k.entries()
            .any(|(kind, v)| dup.contains(&(kind, v.to_owned())))
    };

    for (n, (p, k)) in overview.leerlingen.iter().zip(pupil_keys).enumerate() {
        match pupil(p, &k, &known, doubtful(&k)) {
            Ok(rec) => snap.pupils.push(rec),
            Err(reason) => snap.rejects.push(reject("pupil", &label(&k, n), reason)),
        }
    }
    for (n, (m, k)) in overview.medewerkers.iter().zip(staff_keys).enumerate() {
        match staff(m, &k, &known, doubtful(&k)) {
            Ok(rec) => snap.staff.push(rec),
            Err(reason) => snap.rejects.push(reject("staff", &label(&k, n), reason)),
        }
    }
    snap
}

fn label(k: &PersonKeys, n: usize) -> String {
    if k.is_empty() {
        format!("#{}", n + 1)
    } else {
        k.label()
    }
}

fn reject(entity: &str, key: &str, reason: &str) -> Reject {
    Reject {
        entity: entity.to_owned(),
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

fn pupil(
    p: &Leerling,
    k: &PersonKeys,
    known: &impl Fn(&str) -> bool,
    doubtful: bool,
) -> Result<PupilRecord, &'static str> {
    if k.is_empty() {
        return Err("the pupil has no id, lasKey or ECK-iD");
    }
    if doubtful {
        return Err("a key of the pupil occurs more than once");
    }
    let group = clean(p.groep.as_deref());
    if group.as_deref().is_some_and(|g| !known(g)) || p.subgroepen.iter().any(|g| !known(g)) {
        return Err("the pupil points at a group the broker did not send");
    }
    Ok(PupilRecord {
        keys: k.clone(),
        name: name(p.persoonsgegevens.as_ref()),
        year_group: clean(p.jaargroep.as_deref()),
        group,
        subgroups: p.subgroepen.clone(),
    })
}

fn staff(
    m: &Medewerker,
    k: &PersonKeys,
    known: &impl Fn(&str) -> bool,
    doubtful: bool,
) -> Result<StaffRecord, &'static str> {
    if k.is_empty() {
        return Err("the staff member has no id, lasKey or ECK-iD");
    }
    if doubtful {
        return Err("a key of the staff member occurs more than once");
    }
    let linked: Vec<String> = m.groepen.iter().chain(&m.subgroepen).cloned().collect();
    if linked.iter().any(|g| !known(g)) {
        return Err("the staff member points at a group the broker did not send");
    }
    let end_date = end_date(m.einddatum.as_deref()).map_err(|()| "the einddatum is not a date")?;
    let group_roles: Vec<String> = m
        .rollen
        .iter()
        .filter(|r| GROUP_ROLES.contains(&r.as_str()))
        .cloned()
        .collect();
    let roles = m
        .rollen
        .iter()
        .map(|r| StaffRole {
            name: r.clone(),
            scope: if GROUP_ROLES.contains(&r.as_str()) {
                RoleScope::Groups(linked.clone())
            } else {
                RoleScope::School
            },
        })
        .collect();
    Ok(StaffRecord {
        keys: k.clone(),
        name: name(m.persoonsgegevens.as_ref()),
        email: clean(m.emailadres.as_deref()).map(|e| e.to_lowercase()),
        roles,
        groups: linked
            .into_iter()
            .map(|group| StaffGroupLink {
                group,
                roles: group_roles.clone(),
            })
            .collect(),
        end_date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Snapshot {
        let overview: Overview = serde_json::from_str(json).expect("overview");
        snapshot(overview, None, Utc::now())
    }

    #[test]
    fn doubtful_records_are_rejected_whole_and_the_rest_kept() {
        let snap = parse(
            r#"{
              "groepen": [{"lasKey": "G8", "naam": "Groep 8", "jaargroep": "8"},
                          {"lasKey": "G7"}, {"lasKey": "G7"}, {"naam": "no key"}],
              "subgroepen": [{"lasKey": "PLUS", "naam": "Plusklas"}],
              "leerlingen": [
                {"id": 1, "lasKey": "L1", "groep": "G8", "subgroepen": ["PLUS"],
                 "persoonsgegevens": {"achternaam": "Vries", "voorvoegsel": "de", "voornaam": "Sanne"}},
                {"id": 2, "lasKey": "L2", "groep": "G9"},
                {"id": 3, "lasKey": "L3"}, {"id": 3, "lasKey": "L4"},
                {"persoonsgegevens": {"voornaam": "Nobody"}}
              ],
              "medewerkers": [
                {"id": 10, "lasKey": "M1", "emailadres": "P.Jansen@School.example",
                 "rollen": ["Leerkracht", "IBRTer"], "groepen": ["G8"], "einddatum": "2026-07-31T00:00:00Z"},
                {"id": 11, "rollen": ["Stagiair"], "groepen": ["G8"], "einddatum": "soon"}
              ],
              "metaResult": {"mutationTimestamp": "2026-11-01T02:13:00Z"},
              "unknownField": true
            }"#,
        );
        assert_eq!(snap.source, SourceKind::Broker);
        assert_eq!(snap.marker.as_deref(), Some("2026-11-01T02:13:00Z"));
        let groups: Vec<_> = snap.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(groups, ["G8", "PLUS"]);
        let pupils: Vec<_> = snap.pupils.iter().map(|p| p.keys.label()).collect();
        assert_eq!(
            pupils,
            ["las:L1"],
            "a dangling group, a shared id and no key are rejected"
        );
        let sanne = &snap.pupils[0];
        assert_eq!(sanne.name.prefix.as_deref(), Some("de"));
        assert_eq!(sanne.keys.broker_id.as_deref(), Some("1"));
        assert_eq!(
            snap.staff.len(),
            1,
            "an einddatum that is not a date rejects the record"
        );
        let teacher = &snap.staff[0];
        assert_eq!(teacher.email.as_deref(), Some("p.jansen@school.example"));
        assert_eq!(teacher.end_date, "2026-07-31".parse().ok());
        assert_eq!(teacher.groups[0].roles, ["Leerkracht"]);
        assert_eq!(teacher.roles[1].scope, RoleScope::School);
        let rejected: Vec<_> = snap
            .rejects
            .iter()
            .map(|r| format!("{}:{}", r.entity, r.key))
            .collect();
        assert_eq!(
            rejected,
            [
                "group:G7",
                "group:G7",
                "group:#4",
                "pupil:las:L2",
                "pupil:las:L3",
                "pupil:las:L4",
                "pupil:#5",
                "staff:broker:11"
            ]
        );
    }
}
