//! Next school year as each school's LAS has it prepared: kept per school (the LAS answer as
//! JSON) from the first day a LAS answers for it until the switch makes it live.

use chrono::{DateTime, Utc};
use connector_api::Snapshot;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::entities::{prepared_class, prepared_year};
use crate::model::rollover::{PreparedClass, Preview};

/// A school's prepared next year.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub school: String,
    pub school_year: String,
    pub since: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub snapshot: Snapshot,
    /// What the switch would change, as counted against the roster of the day it came.
    pub changes: Option<Preview>,
}

fn read(row: prepared_year::Model) -> Option<Prepared> {
    // A row this version cannot read is as good as none: the next cycle asks again.
    let snapshot = serde_json::from_str(&row.snapshot).ok()?;
    Some(Prepared {
        school: row.school_id,
        school_year: row.school_year,
        since: row.prepared_since,
        received_at: row.received_at,
        snapshot,
        changes: row.changes.and_then(|c| serde_json::from_str(&c).ok()),
    })
}

/// Keep `snapshot` as `school`'s prepared `year` with what it would change; "since" stays
/// the first day of that year.
pub async fn save<C: ConnectionTrait>(
    db: &C,
    school: &str,
    year: &str,
    snapshot: &Snapshot,
    changes: &Preview,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // A run's switch reads the prepared year: one that computed before this must again.
    super::schools::roster_changed(db, school).await?;
    let known = prepared_year::Entity::find_by_id(school.to_owned())
        .one(db)
        .await?;
    let since = known
        .filter(|k| k.school_year == year)
        .map_or(now, |k| k.prepared_since);
    let json = serde_json::to_string(snapshot).map_err(|e| DbErr::Custom(e.to_string()))?;
    let changes = serde_json::to_string(changes).map_err(|e| DbErr::Custom(e.to_string()))?;
    prepared_year::Entity::insert(prepared_year::ActiveModel {
        school_id: Set(school.to_owned()),
        school_year: Set(year.to_owned()),
        prepared_since: Set(since),
        received_at: Set(now),
        snapshot: Set(json),
        changes: Set(Some(changes)),
    })
    .on_conflict(
        OnConflict::column(prepared_year::Column::SchoolId)
            .update_columns([
                prepared_year::Column::SchoolYear,
                prepared_year::Column::PreparedSince,
                prepared_year::Column::ReceivedAt,
                prepared_year::Column::Snapshot,
                prepared_year::Column::Changes,
            ])
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

/// `school`'s prepared year, if it has one.
pub async fn load<C: ConnectionTrait>(db: &C, school: &str) -> Result<Option<Prepared>, DbErr> {
    Ok(prepared_year::Entity::find_by_id(school.to_owned())
        .one(db)
        .await?
        .and_then(read))
}

/// Every school's prepared year.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Prepared>, DbErr> {
    Ok(prepared_year::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .filter_map(read)
        .collect())
}

/// How many schools have `year` prepared (the daemon's gauge).
pub async fn count<C: ConnectionTrait>(db: &C, year: &str) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    prepared_year::Entity::find()
        .filter(prepared_year::Column::SchoolYear.eq(year))
        .count(db)
        .await
}

/// `school`'s prepared classes as they were last kept.
pub async fn classes<C: ConnectionTrait>(
    db: &C,
    school: &str,
) -> Result<Vec<PreparedClass>, DbErr> {
    Ok(prepared_class::Entity::find()
        .filter(prepared_class::Column::SchoolId.eq(school))
        .all(db)
        .await?
        .into_iter()
        .map(|c| PreparedClass {
            sourced_id: c.sourced_id,
            key: c.key,
            name: c.name,
            kind: c.kind,
            year_group: c.year_group,
            updated_at: c.updated_at.at(),
        })
        .collect())
}

/// Replace `school`'s prepared classes with `now` (call it in the transaction that saves the
/// prepared year, so the two agree).
pub async fn set_classes<C: ConnectionTrait>(
    db: &C,
    school: &str,
    now: &[PreparedClass],
) -> Result<(), DbErr> {
    prepared_class::Entity::delete_many()
        .filter(prepared_class::Column::SchoolId.eq(school))
        .exec(db)
        .await?;
    for chunk in now.chunks(super::roster::CHUNK) {
        prepared_class::Entity::insert_many(chunk.iter().map(|c| prepared_class::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            school_id: Set(school.to_owned()),
            sourced_id: Set(c.sourced_id.clone()),
            key: Set(c.key.clone()),
            name: Set(c.name.clone()),
            kind: Set(c.kind.clone()),
            year_group: Set(c.year_group.clone()),
            updated_at: Set(c.updated_at.into()),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

/// The switch made it live (or the school left): nothing is prepared any more.
pub async fn forget<C: ConnectionTrait>(db: &C, school: &str) -> Result<(), DbErr> {
    prepared_class::Entity::delete_many()
        .filter(prepared_class::Column::SchoolId.eq(school))
        .exec(db)
        .await?;
    prepared_year::Entity::delete_many()
        .filter(prepared_year::Column::SchoolId.eq(school))
        .exec(db)
        .await?;
    Ok(())
}
