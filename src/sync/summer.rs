//! `rollover status`: per school, where it stands in the summer: next year prepared (since
//! when, and what the switch will change, by the engine's own merge and diff), not prepared
//! yet, switched early, or still waiting for its LAS to roll over.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use connector_api::Snapshot;
use sea_orm::DbErr;
use serde::Serialize;

use crate::model::plan::{StoredGroup, StoredPerson};
use crate::model::rollover::Calendar;
use crate::model::{Owner, PersonKind, PersonState};
use crate::permissions::{self, GroupRef, Holding, LinkFact, RoleFact, Rule, StaffFacts, State};
use crate::store::entities::school;
use crate::store::export::{Export, GrantOut, SchoolOut, grant_out};
use crate::store::{Store, prepared, roster, schools};
use crate::sync::identity::{KeyIndex, KnownKeys, Match};
use crate::sync::rollover::{self, Preview};

/// Where a school stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Its LAS has next year prepared.
    Prepared {
        since: DateTime<Utc>,
        received_at: DateTime<Utc>,
        changes: Preview,
    },
    /// Its LAS has not answered for next year yet.
    NotPrepared,
    /// It is in next year already (its LAS rolled over early).
    Switched,
    /// The live year began and its LAS still answers for the old one: frozen until it turns.
    Late,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchoolSummer {
    pub school: String,
    /// The school year stored (live) for it.
    pub school_year: Option<String>,
    pub next_year: String,
    #[serde(flatten)]
    pub standing: Standing,
}

/// Every school (or one) on `today`.
pub async fn status(
    store: &Store,
    calendar: &Calendar,
    today: NaiveDate,
    only: Option<&str>,
) -> Result<Vec<SchoolSummer>, DbErr> {
    let live = calendar.live_year(today);
    let next = live.next().to_string();
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let mut find = school::Entity::find().order_by_asc(school::Column::Id);
    if let Some(id) = only {
        find = find.filter(school::Column::Id.eq(id));
    }
    let mut out = Vec::new();
    for row in find.all(store.db()).await? {
        let stored = row.school_year.as_deref();
        let standing = if stored == Some(next.as_str()) {
            Standing::Switched
        } else if stored.is_some_and(|y| y < live.to_string().as_str()) {
            Standing::Late
        } else {
            prepared_standing(store, &row.id, &next).await?
        };
        out.push(SchoolSummer {
            school: row.id,
            school_year: row.school_year,
            next_year: next.clone(),
            standing,
        });
    }
    Ok(out)
}

async fn prepared_standing(store: &Store, school: &str, next: &str) -> Result<Standing, DbErr> {
    let Some(p) = prepared::load(store.db(), school)
        .await?
        .filter(|p| p.school_year == next)
    else {
        return Ok(Standing::NotPrepared);
    };
    // Counted when the answer came; a row without the count is counted now.
    let changes = match p.changes {
        Some(c) => c,
        None => {
            let (groups, persons) = roster::load(store.db(), school).await?;
            let plan = rollover::plan_for(&p.snapshot, &groups, &persons);
            rollover::preview(&plan, &p.snapshot, &persons)
        }
    };
    Ok(Standing::Prepared {
        since: p.since,
        received_at: p.received_at,
        changes,
    })
}

/// Next year's roster as the LAS prepared it, in `export`'s shape, with the engine's matching:
/// whoever is here now keeps their id; someone new next year is `new:` and their LAS key (an
/// id is given when the switch makes them live). Grants are what the switch would derive:
/// see [`next_year_grants`].
pub fn next_year_roster(
    school: SchoolOut,
    prepared: &Snapshot,
    groups: &[StoredGroup],
    persons: &[StoredPerson],
    rules: &[Rule],
) -> Export {
    let merged = crate::sync::merge::merge(&[prepared]).state;
    let known: Vec<KnownKeys> = persons
        .iter()
        .filter(|p| !p.removed)
        .map(|p| KnownKeys {
            id: p.id,
            keys: p.state.keys.clone(),
            email: None,
        })
        .collect();
    let index = KeyIndex::new(known.iter());
    // Records of next year that have no id yet get a negative stand-in, named below.
    let mut unborn = 0;
    let mut stand_in = || {
        unborn -= 1;
        unborn
    };
    let next_groups: Vec<StoredGroup> = merged
        .groups
        .values()
        .map(|g| StoredGroup {
            id: groups
                .iter()
                .find(|s| s.state.key == g.key)
                .map_or_else(&mut stand_in, |s| s.id),
            state: g.clone(),
            removed: false,
        })
        .collect();
    let next_persons: Vec<StoredPerson> = merged
        .persons
        .iter()
        .map(|p| StoredPerson {
            id: match index.resolve(&p.keys, None, false) {
                Match::Existing { id, .. } | Match::EckidChanged { id, .. } => id,
                Match::New | Match::Conflict { .. } => stand_in(),
            },
            state: p.clone(),
            removed: false,
            local: false,
        })
        .collect();
    let mut out = crate::store::export::shape(school, &next_groups, &next_persons);
    out.grants = next_year_grants(&next_groups, &next_persons, persons, rules);
    let named: HashMap<String, String> = next_persons
        .iter()
        .filter(|p| p.id < 0)
        .map(|p| {
            let keys = &p.state.keys;
            let key = keys.las_key.as_deref().or(keys.eckid.as_deref());
            (p.id.to_string(), format!("new:{}", key.unwrap_or("?")))
        })
        .collect();
    let name = |id: &mut String| {
        if let Some(n) = named.get(id.as_str()) {
            id.clone_from(n);
        }
    };
    out.pupils.iter_mut().for_each(|p| name(&mut p.id));
    out.staff.iter_mut().for_each(|p| name(&mut p.id));
    out.grants.iter_mut().for_each(|g| name(&mut g.staff));
    out
}

/// Next year's grants as the switch would derive them, all active: the links and roles of the
/// prepared year, joined by what the broker and the portal say now (they have no next-year
/// view, so their word joins the new year as it is: the broker's links of a staff member win
/// over the LAS's as they do in every merge, and their roles carry over). A grant of this year
/// that next year does not call for is not shown: at the switch it goes pending for the grace.
pub fn next_year_grants(
    groups: &[StoredGroup],
    next: &[StoredPerson],
    live: &[StoredPerson],
    rules: &[Rule],
) -> Vec<GrantOut> {
    let refs: Vec<GroupRef> = groups
        .iter()
        .map(|g| GroupRef {
            id: g.id,
            key: g.state.key.clone(),
            department: g.state.department.clone(),
        })
        .collect();
    let id_of: HashMap<&str, i64> = refs.iter().map(|g| (g.key.as_str(), g.id)).collect();
    let now: HashMap<i64, &PersonState> = live
        .iter()
        .filter(|p| !p.removed)
        .map(|p| (p.id, &p.state))
        .collect();
    let facts: Vec<StaffFacts> = next
        .iter()
        .filter(|p| p.state.kind == PersonKind::Staff)
        .map(|p| staff_facts(p.id, &p.state, now.get(&p.id).copied(), &id_of))
        .collect();
    let mut held: BTreeMap<i64, Vec<Holding>> = BTreeMap::new();
    for d in permissions::derive(&facts, &refs, rules) {
        held.entry(d.person).or_default().push(Holding {
            id: 0,
            level: d.level,
            group: d.group,
            rule: d.rule,
            source: d.source,
            fact: d.fact,
            state: State::Active,
            since: Utc::now(),
            revoke_after: None,
        });
    }
    held.into_iter()
        .filter_map(|(person, h)| grant_out(person.to_string(), &h, &refs))
        .collect()
}

/// One staff member's facts next year: `next` as the LAS prepared them, `now` as stored.
fn staff_facts(
    id: i64,
    next: &PersonState,
    now: Option<&PersonState>,
    group_id: &HashMap<&str, i64>,
) -> StaffFacts {
    let links = match now {
        Some(n) if n.links_owner > Owner::Las && !n.links.is_empty() => n,
        _ => next,
    };
    let carried = now
        .into_iter()
        .flat_map(|n| n.roles.iter())
        .filter(|r| r.owner != Owner::Las);
    StaffFacts {
        person: id,
        links: links
            .links
            .iter()
            .filter_map(|l| {
                Some(LinkFact {
                    group: *group_id.get(l.group.as_str())?,
                    role: l.role.clone(),
                    source: links.links_owner.as_str().to_owned(),
                })
            })
            .collect(),
        roles: next
            .roles
            .iter()
            .chain(carried)
            .map(|r| RoleFact {
                name: r.name.clone(),
                scope: r.scope.clone(),
                source: r.owner.as_str().to_owned(),
            })
            .collect(),
    }
}

/// `export --school-year`: the live roster for the live year, the prepared one for next year.
pub async fn export_year(
    store: &Store,
    school: &str,
    year: &str,
    rules: &[Rule],
) -> Result<Result<Export, String>, DbErr> {
    let Some(row) = schools::row_in(store.db(), school).await? else {
        return Ok(Err(format!(
            "school {school} is not linked (see `rostersync school list`)"
        )));
    };
    if row.school_year.as_deref() == Some(year) {
        return Ok(crate::store::export::export(store.db(), school)
            .await?
            .ok_or_else(|| format!("school {school} has no data in the store yet")));
    }
    let Some(p) = prepared::load(store.db(), school)
        .await?
        .filter(|p| p.school_year == year)
    else {
        return Ok(Err(format!(
            "school {school} has no roster for {year}: its live year is {}, and its LAS has \
             not prepared {year} (see `rostersync rollover status`)",
            row.school_year.as_deref().unwrap_or("not known yet")
        )));
    };
    let (groups, persons) = roster::load(store.db(), school).await?;
    let out = SchoolOut {
        id: row.id,
        brin: row.brin,
        dependance: row.dependance,
        name: row.name,
        school_year: Some(p.school_year.clone()),
    };
    Ok(Ok(next_year_roster(
        out,
        &p.snapshot,
        &groups,
        &persons,
        rules,
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use connector_api::{GroupKind, PersonKeys};

    use super::*;
    use crate::model::{GroupState, Link, Role};

    fn group(id: i64, key: &str) -> StoredGroup {
        StoredGroup {
            id,
            state: GroupState {
                key: key.into(),
                name: key.into(),
                kind: GroupKind::Stamgroep,
                year_group: None,
                department: None,
                owner: Owner::Las,
            },
            removed: false,
        }
    }

    fn staff(id: i64, key: &str, links: (&[&str], Owner), roles: &[(&str, Owner)]) -> StoredPerson {
        StoredPerson {
            id,
            state: PersonState {
                kind: PersonKind::Staff,
                keys: PersonKeys {
                    las_key: Some(key.into()),
                    ..PersonKeys::default()
                },
                fields: BTreeMap::new(),
                links: links
                    .0
                    .iter()
                    .map(|g| Link {
                        group: (*g).into(),
                        role: "LRK".into(),
                    })
                    .collect(),
                links_owner: links.1,
                roles: roles
                    .iter()
                    .map(|(name, owner)| Role {
                        name: (*name).into(),
                        scope: String::new(),
                        owner: *owner,
                    })
                    .collect::<BTreeSet<_>>(),
            },
            removed: false,
            local: false,
        }
    }

    fn rules() -> Vec<Rule> {
        let settings = crate::settings::Settings::load(None).expect("defaults");
        permissions::Rights::from_settings(&settings.rights).rules
    }

    fn seen(grants: &[GrantOut], staff: &str) -> (String, Vec<String>) {
        let g = grants.iter().find(|g| g.staff == staff).expect(staff);
        (g.level.clone(), g.groups.clone())
    }

    #[test]
    fn next_years_grants_take_next_years_links_and_what_the_broker_says_now() {
        // Next year: groups 5 and 6 stay, 8 ends, 1 begins (not stored yet: a stand-in id).
        let groups = [group(5, "G5"), group(6, "G6"), group(-1, "G1")];
        let las = Owner::Las;
        let broker = Owner::Broker;
        let live = [
            staff(10, "T10", (&["G5"], las), &[]),
            staff(11, "T11", (&["G8"], las), &[("IB", broker)]),
            staff(12, "T12", (&["G6"], broker), &[("IB", las)]),
        ];
        let next = [
            // Moves from group 5 to group 1.
            staff(10, "T10", (&["G1"], las), &[]),
            // Group 8 ends; the broker's intern begeleider role carries over.
            staff(11, "T11", (&[], las), &[]),
            // The LAS moves them to group 5, the broker still says 6 and wins; the LAS's own
            // IB role of this year is next year's answer's to give (it gives none).
            staff(12, "T12", (&["G5"], las), &[]),
            // New next year.
            staff(-2, "T13", (&["G6"], las), &[]),
        ];
        let grants = next_year_grants(&groups, &next, &live, &rules());
        assert_eq!(seen(&grants, "10"), ("related".into(), vec!["G1".into()]));
        let all: Vec<String> = ["G1", "G5", "G6"].map(String::from).to_vec();
        assert_eq!(seen(&grants, "11"), ("school".into(), all));
        assert_eq!(seen(&grants, "12"), ("related".into(), vec!["G6".into()]));
        assert_eq!(seen(&grants, "-2"), ("related".into(), vec!["G6".into()]));
        assert!(
            grants
                .iter()
                .all(|g| !g.reasons.iter().any(|r| r.contains("pending")))
        );
    }
}
