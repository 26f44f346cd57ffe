//! `rollover status`: per school, where it stands in the summer: next year prepared (since
//! when, and what the switch will change, by the engine's own merge and diff), not prepared
//! yet, switched early, or still waiting for its LAS to roll over.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::DbErr;
use serde::Serialize;

use crate::model::rollover::Calendar;
use crate::store::{Store, prepared, roster, schools};
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
    let rows = schools::rows(store)
        .await
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    let mut out = Vec::new();
    for row in rows.into_iter().filter(|r| only.is_none_or(|o| o == r.id)) {
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
    let (groups, persons) = roster::load(store.db(), school).await?;
    let plan = rollover::plan_for(&p.snapshot, &groups, &persons);
    Ok(Standing::Prepared {
        since: p.since,
        received_at: p.received_at,
        changes: rollover::preview(&plan, &p.snapshot, &persons),
    })
}
