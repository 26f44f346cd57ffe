//! Run records: one per school per sync, opened before the work and closed with its outcome.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entities::sync_run;

/// Open a run record; returns its id.
pub async fn start<C: ConnectionTrait>(
    db: &C,
    school: &str,
    trigger: &str,
    dry_run: bool,
) -> Result<i64, DbErr> {
    let row = sync_run::ActiveModel {
        school_id: Set(school.to_owned()),
        trigger: Set(trigger.to_owned()),
        instance: Set(None),
        job_id: Set(None),
        dry_run: Set(dry_run),
        started_at: Set(Utc::now()),
        finished_at: Set(None),
        outcome: Set(None),
        error_class: Set(None),
        message: Set(None),
        counts: Set("{}".into()),
        ..Default::default()
    };
    Ok(sync_run::Entity::insert(row).exec(db).await?.last_insert_id)
}

/// How a run ended.
pub struct Finish<'a> {
    pub outcome: &'a str,
    pub error_class: Option<&'a str>,
    /// What happened and what to do, for `runs show` and `status`.
    pub message: Option<String>,
    pub counts: serde_json::Value,
}

pub async fn finish<C: ConnectionTrait>(db: &C, run: i64, f: Finish<'_>) -> Result<(), DbErr> {
    sync_run::Entity::update(sync_run::ActiveModel {
        id: Set(run),
        finished_at: Set(Some(Utc::now())),
        outcome: Set(Some(f.outcome.to_owned())),
        error_class: Set(f.error_class.map(str::to_owned)),
        message: Set(f.message),
        counts: Set(f.counts.to_string()),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}

pub use sync_run::Model as Run;

/// The newest runs first, of one school or all.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    school: Option<&str>,
    limit: u64,
) -> Result<Vec<Run>, DbErr> {
    let mut q = sync_run::Entity::find();
    if let Some(s) = school {
        q = q.filter(sync_run::Column::SchoolId.eq(s));
    }
    q.order_by_desc(sync_run::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn get<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<Run>, DbErr> {
    sync_run::Entity::find_by_id(id).one(db).await
}

/// The outcome to show: a run without one was cut off (crash, kill, power) before it could
/// record anything, and nothing of it was applied.
pub fn shown_outcome(run: &Run) -> &str {
    match (&run.outcome, run.finished_at) {
        (Some(o), _) => o,
        (None, _) => "interrupted",
    }
}
