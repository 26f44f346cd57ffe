//! `export --format json`: a school's current roster in the shape ARCHITECTURE.md fixes.
//! The query is `roster::load`; the shaping is a pure function of what it loaded.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{ConnectionTrait, DbErr, EntityTrait};
use serde::Serialize;

use super::entities::school;
use super::roster;
use crate::model::plan::{StoredGroup, StoredPerson};
use crate::model::{Field, PersonKind, PersonState};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Export {
    pub school: SchoolOut,
    pub groups: Vec<GroupOut>,
    pub pupils: Vec<PupilOut>,
    pub staff: Vec<StaffOut>,
    /// What each staff member may see: the union of their grants, with the reasons.
    pub grants: Vec<GrantOut>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SchoolOut {
    pub id: String,
    pub brin: String,
    pub dependance: String,
    pub name: Option<String>,
    pub school_year: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupOut {
    pub key: String,
    pub name: String,
    pub kind: String,
    pub year_group: Option<String>,
}

/// A staff member's effective rights.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GrantOut {
    pub staff: String,
    /// The broadest level: `own`, `related` or `school`.
    pub level: String,
    /// The groups they can see (every group for `school`).
    pub groups: Vec<String>,
    /// One line per grant: rule, source and fact; pending ones say so.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PupilOut {
    pub id: String,
    pub las_key: Option<String>,
    pub eckid: Option<String>,
    pub family_name: Option<String>,
    pub prefix: Option<String>,
    pub given_name: Option<String>,
    pub year_group: Option<String>,
    pub group: Option<String>,
    pub subgroups: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StaffOut {
    pub id: String,
    pub las_key: Option<String>,
    pub eckid: Option<String>,
    pub family_name: Option<String>,
    pub prefix: Option<String>,
    pub given_name: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// Fields a source owns: a local edit of them is refused.
    pub locked_fields: Vec<String>,
}

fn field(p: &PersonState, f: Field) -> Option<String> {
    p.fields.get(&f).map(|o| o.value.clone())
}

/// Shape a loaded roster for export: live records only, in a stable order.
pub fn shape(school: SchoolOut, groups: &[StoredGroup], persons: &[StoredPerson]) -> Export {
    let live_groups: BTreeMap<&str, &StoredGroup> = groups
        .iter()
        .filter(|g| !g.removed)
        .map(|g| (g.state.key.as_str(), g))
        .collect();
    let mut pupils = Vec::new();
    let mut staff = Vec::new();
    for p in persons.iter().filter(|p| !p.removed) {
        let group_keys: BTreeSet<&str> = p
            .state
            .links
            .iter()
            .map(|l| l.group.as_str())
            .filter(|k| live_groups.contains_key(k))
            .collect();
        match p.state.kind {
            PersonKind::Pupil => pupils.push(pupil_out(p, &group_keys, &live_groups)),
            PersonKind::Staff => staff.push(staff_out(p, &group_keys)),
        }
    }
    let order = |las: &Option<String>, id: &str| (las.clone().unwrap_or_default(), id.to_owned());
    pupils.sort_by_key(|p| order(&p.las_key, &p.id));
    staff.sort_by_key(|p| order(&p.las_key, &p.id));
    Export {
        school,
        groups: live_groups
            .values()
            .map(|g| GroupOut {
                key: g.state.key.clone(),
                name: g.state.name.clone(),
                kind: g.state.kind.as_str().to_owned(),
                year_group: g.state.year_group.clone(),
            })
            .collect(),
        pupils,
        staff,
        grants: Vec::new(),
    }
}

/// A pupil with their main group (the stamgroep they are linked to) and other groups.
fn pupil_out(
    p: &StoredPerson,
    group_keys: &BTreeSet<&str>,
    live_groups: &BTreeMap<&str, &StoredGroup>,
) -> PupilOut {
    let s = &p.state;
    let is_stamgroep = |key: &str| {
        live_groups
            .get(key)
            .is_some_and(|g| g.state.kind == connector_api::GroupKind::Stamgroep)
    };
    let group = group_keys
        .iter()
        .find(|k| is_stamgroep(k))
        .map(|k| k.to_string());
    PupilOut {
        id: p.id.to_string(),
        las_key: s.keys.las_key.clone(),
        eckid: s.keys.eckid.clone(),
        family_name: field(s, Field::FamilyName),
        prefix: field(s, Field::Prefix),
        given_name: field(s, Field::GivenName),
        year_group: field(s, Field::YearGroup),
        subgroups: group_keys
            .iter()
            .filter(|k| Some(k.to_string()) != group)
            .map(|k| k.to_string())
            .collect(),
        group,
    }
}

/// A staff member with their roles (school-wide, and held in a group: a teacher's LRK in
/// 8A), groups and the fields a source locks.
fn staff_out(p: &StoredPerson, group_keys: &BTreeSet<&str>) -> StaffOut {
    let s = &p.state;
    let roles: BTreeSet<String> = s
        .roles
        .iter()
        .map(|r| r.name.clone())
        .chain(
            s.links
                .iter()
                .flat_map(|l| l.role.split('+'))
                .filter(|r| *r != "staff")
                .map(str::to_owned),
        )
        .collect();
    StaffOut {
        id: p.id.to_string(),
        las_key: s.keys.las_key.clone(),
        eckid: s.keys.eckid.clone(),
        family_name: field(s, Field::FamilyName),
        prefix: field(s, Field::Prefix),
        given_name: field(s, Field::GivenName),
        email: field(s, Field::Email),
        roles: roles.into_iter().collect(),
        groups: group_keys.iter().map(|k| k.to_string()).collect(),
        locked_fields: s
            .fields
            .iter()
            .filter(|(_, o)| o.locked())
            .map(|(f, _)| f.as_str().to_owned())
            .collect(),
    }
}

/// The export of `school`, or `None` when the store has no such school.
pub async fn export<C: ConnectionTrait>(db: &C, school: &str) -> Result<Option<Export>, DbErr> {
    let Some(row) = school::Entity::find_by_id(school.to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let (groups, persons) = roster::load(db, school).await?;
    let mut out = shape(
        SchoolOut {
            id: row.id,
            brin: row.brin,
            dependance: row.dependance,
            name: row.name,
            school_year: row.school_year,
        },
        &groups,
        &persons,
    );
    let live: std::collections::HashSet<&str> = out.staff.iter().map(|s| s.id.as_str()).collect();
    let refs = super::permissions::groups(db, school).await?;
    for (person, holdings) in super::permissions::of_school(db, school).await? {
        let id = person.to_string();
        if live.contains(id.as_str()) {
            out.grants.extend(grant_out(id, &holdings, &refs));
        }
    }
    Ok(Some(out))
}

/// A staff member's grants as `export` shows them (`None` without any): the broadest level,
/// the groups they can see by key, and a reason per grant.
pub fn grant_out(
    staff: String,
    holdings: &[crate::permissions::Holding],
    groups: &[crate::permissions::GroupRef],
) -> Option<GrantOut> {
    let level = crate::permissions::top_level(holdings)?;
    let key_of: BTreeMap<i64, &str> = groups.iter().map(|g| (g.id, g.key.as_str())).collect();
    Some(GrantOut {
        staff,
        level: level.as_str().to_owned(),
        groups: crate::permissions::effective(holdings, groups)
            .iter()
            .filter_map(|v| key_of.get(&v.group).map(|k| (*k).to_owned()))
            .collect(),
        reasons: holdings.iter().map(reason).collect(),
    })
}

/// A grant in words: "teacher: broker: linked to group G8A as Leerkracht".
pub fn reason(h: &crate::permissions::Holding) -> String {
    crate::permissions::reason_words(&h.rule, &h.fact, h.state, h.revoke_after)
}
