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

/// Record what a run turned out to be (a school-year switch is recorded as `rollover`).
pub async fn set_trigger<C: ConnectionTrait>(db: &C, run: i64, trigger: &str) -> Result<(), DbErr> {
    sync_run::Entity::update_many()
        .col_expr(
            sync_run::Column::Trigger,
            sea_orm::sea_query::Expr::value(trigger),
        )
        .filter(sync_run::Column::Id.eq(run))
        .exec(db)
        .await?;
    Ok(())
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
    // Not `update(model)`: that reads the whole row back (`RETURNING`) for nobody.
    let updated = sync_run::Entity::update_many()
        .set(sync_run::ActiveModel {
            finished_at: Set(Some(Utc::now())),
            outcome: Set(Some(f.outcome.to_owned())),
            error_class: Set(f.error_class.map(str::to_owned)),
            message: Set(f.message),
            counts: Set(f.counts.to_string()),
            ..Default::default()
        })
        .filter(sync_run::Column::Id.eq(run))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DbErr::RecordNotUpdated);
    }
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
    super::by_key(db, sync_run::Entity::find_by_id(id)).await
}

/// The outcome to show: a run without one was cut off (crash, kill, power) before it could
/// record anything, and nothing of it was applied.
pub fn shown_outcome(run: &Run) -> &str {
    match (&run.outcome, run.finished_at) {
        (Some(o), _) => o,
        (None, _) => "interrupted",
    }
}

/// What a history purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistoryPurged {
    /// Run records (with their journal and held changes).
    pub runs: u64,
    /// Journal entries, of those runs and of edits by hand.
    pub journal: u64,
    /// Finished jobs.
    pub jobs: u64,
}

/// Rows a history purge deletes per transaction: short write locks, never one huge delete.
const HISTORY_CHUNK: u64 = 500;

/// Forget history older than `before`: run records with their journal and held changes, the
/// journal of edits by hand, and finished jobs. A school's latest run is always kept, however
/// old (`status` shows it). Chunked per transaction, like the tombstone purge, and counted
/// into `out` chunk by chunk as each commits (a caller that tries again keeps the count).
pub async fn purge_history(
    store: &super::Store,
    before: chrono::DateTime<Utc>,
    out: &mut HistoryPurged,
) -> Result<(), DbErr> {
    // Run ids grow with their start, so everything older is at or below one id.
    let Some(last_old) = sync_run::Entity::find()
        .select_only()
        .column_as(sync_run::Column::Id.max(), "id")
        .filter(sync_run::Column::StartedAt.lt(before))
        .into_tuple::<Option<i64>>()
        .one(store.db())
        .await?
        .flatten()
    else {
        return forget_edits_and_jobs(store, before, out).await;
    };
    let latest: std::collections::HashSet<i64> = sync_run::Entity::find()
        .select_only()
        .column_as(sync_run::Column::Id.max(), "id")
        .group_by(sync_run::Column::SchoolId)
        .into_tuple::<Option<i64>>()
        .all(store.db())
        .await?
        .into_iter()
        .flatten()
        .collect();
    let mut after = 0;
    loop {
        let ids: Vec<i64> = sync_run::Entity::find()
            .select_only()
            .column(sync_run::Column::Id)
            .filter(sync_run::Column::Id.gt(after))
            .filter(sync_run::Column::Id.lte(last_old))
            // Ids grow with time only as far as the clock did: the date decides.
            .filter(sync_run::Column::StartedAt.lt(before))
            .order_by_asc(sync_run::Column::Id)
            .limit(HISTORY_CHUNK)
            .into_tuple()
            .all(store.db())
            .await?;
        let Some(&last) = ids.last() else { break };
        after = last;
        let doomed: Vec<i64> = ids.into_iter().filter(|id| !latest.contains(id)).collect();
        let (runs, journal) = forget_runs(store, &doomed).await?;
        out.runs += runs;
        out.journal += journal;
    }
    forget_edits_and_jobs(store, before, out).await
}

/// Delete `runs` with their journal and held changes, in one short transaction.
async fn forget_runs(store: &super::Store, runs: &[i64]) -> Result<(u64, u64), DbErr> {
    use super::entities::{change_entry, held_change};
    if runs.is_empty() {
        return Ok((0, 0));
    }
    let txn = store.begin_write(super::WriteKind::Purge).await?;
    // Held changes go with their runs, and a run's switch reads those still waiting.
    let schools: Vec<String> = sync_run::Entity::find()
        .select_only()
        .column(sync_run::Column::SchoolId)
        .distinct()
        .filter(sync_run::Column::Id.is_in(runs.iter().copied()))
        .into_tuple()
        .all(&txn)
        .await?;
    super::schools::roster_changed_of(&txn, schools).await?;
    let journal = change_entry::Entity::delete_many()
        .filter(change_entry::Column::RunId.is_in(runs.iter().copied()))
        .exec(&txn)
        .await?
        .rows_affected;
    held_change::Entity::delete_many()
        .filter(held_change::Column::RunId.is_in(runs.iter().copied()))
        .exec(&txn)
        .await?;
    let deleted = sync_run::Entity::delete_many()
        .filter(sync_run::Column::Id.is_in(runs.iter().copied()))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok((deleted, journal))
}

/// The journal of edits by hand (no run) and the finished jobs older than `before`.
async fn forget_edits_and_jobs(
    store: &super::Store,
    before: chrono::DateTime<Utc>,
    out: &mut HistoryPurged,
) -> Result<(), DbErr> {
    use super::entities::{change_entry, sync_job};
    let txn = store.begin_write(super::WriteKind::Purge).await?;
    let journal = change_entry::Entity::delete_many()
        .filter(change_entry::Column::RunId.is_null())
        .filter(change_entry::Column::At.lt(super::Stamp::from(before)))
        .exec(&txn)
        .await?
        .rows_affected;
    let jobs = sync_job::Entity::delete_many()
        .filter(sync_job::Column::State.is_in(["done", "failed"]))
        .filter(sync_job::Column::FinishedAt.lt(before))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    out.journal += journal;
    out.jobs += jobs;
    Ok(())
}
