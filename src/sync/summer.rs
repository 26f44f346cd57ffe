//! `rollover status`: per school, where it stands in the summer: next year prepared (since
//! when, and what the switch will change, by the engine's own merge and diff), not prepared
//! yet, switched early, or still waiting for its LAS to roll over.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::DbErr;
use serde::Serialize;

use connector_api::Snapshot;

use crate::model::plan::{StoredGroup, StoredPerson};
use crate::model::rollover::Calendar;
use crate::store::entities::school;
use crate::store::export::{Export, SchoolOut};
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
/// id is given when the switch makes them live). Grants are derived at the switch.
pub fn next_year_roster(
    school: SchoolOut,
    prepared: &Snapshot,
    groups: &[StoredGroup],
    persons: &[StoredPerson],
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
    let name = |id: &mut String, las: &Option<String>, eckid: &Option<String>| {
        if id.starts_with('-') {
            *id = format!("new:{}", las.as_deref().or(eckid.as_deref()).unwrap_or("?"));
        }
    };
    for p in &mut out.pupils {
        name(&mut p.id, &p.las_key, &p.eckid);
    }
    for p in &mut out.staff {
        name(&mut p.id, &p.las_key, &p.eckid);
    }
    out
}

/// `export --school-year`: the live roster for the live year, the prepared one for next year.
pub async fn export_year(
    store: &Store,
    school: &str,
    year: &str,
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
    Ok(Ok(next_year_roster(out, &p.snapshot, &groups, &persons)))
}
