//! The job table: the scheduler and admins enqueue, workers claim with a lease, heartbeats
//! keep the lease, a reaper hands expired leases to another worker. At most one pending or
//! running job per school (a unique index): a second request joins the first. Each claim moves
//! the school's fence on, and the apply checks it, so a worker that lost its lease cannot write.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, Statement,
};

use crate::store::entities::{daemon_instance, school, store_meta, sync_job};
use crate::store::{Store, WriteKind};

pub use sync_job::Model as Job;

/// Where a job is in its life; its `state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Pending,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }

    /// A job in this state will not run again.
    pub fn is_closed(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
}

const PENDING: &str = "pending";
const RUNNING: &str = "running";
const FAILED: &str = "failed";

/// The store_meta key holding the local date of the last cycle that was enqueued.
const LAST_CYCLE: &str = "last_cycle";
/// Serializes cycle enqueues of several instances on PostgreSQL.
const CYCLE_LOCK: i64 = 0x726f_7374_6363; // "rostcc"

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(60))
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub job: i64,
    /// The school already had a pending or running job; this request joined it.
    pub joined: bool,
}

async fn active<C: ConnectionTrait>(db: &C, school: &str) -> Result<Option<Job>, DbErr> {
    sync_job::Entity::find()
        .filter(sync_job::Column::SchoolId.eq(school))
        .filter(sync_job::Column::State.is_in([PENDING, RUNNING]))
        .one(db)
        .await
}

/// Ask for a run of `school` at `due_at`. A manual request moves a waiting job forward.
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    school: &str,
    trigger: &str,
    due_at: DateTime<Utc>,
    requested_by: Option<&str>,
) -> Result<Enqueued, DbErr> {
    if let Some(existing) = active(db, school).await? {
        if existing.state == PENDING && existing.due_at > due_at {
            sync_job::Entity::update_many()
                .col_expr(sync_job::Column::DueAt, Expr::value(due_at))
                .filter(sync_job::Column::Id.eq(existing.id))
                .exec(db)
                .await?;
        }
        return Ok(Enqueued {
            job: existing.id,
            joined: true,
        });
    }
    let row = sync_job::ActiveModel {
        school_id: Set(school.to_owned()),
        trigger: Set(trigger.to_owned()),
        state: Set(PENDING.into()),
        due_at: Set(due_at),
        attempts: Set(0),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        heartbeat_at: Set(None),
        fence: Set(None),
        run_id: Set(None),
        requested_by: Set(requested_by.map(str::to_owned)),
        last_error: Set(None),
        created_at: Set(Utc::now()),
        started_at: Set(None),
        finished_at: Set(None),
        ..Default::default()
    };
    match sync_job::Entity::insert(row).exec(db).await {
        Ok(r) => Ok(Enqueued {
            job: r.last_insert_id,
            joined: false,
        }),
        // Another request got in between: join it.
        Err(e) => match active(db, school).await? {
            Some(existing) => Ok(Enqueued {
                job: existing.id,
                joined: true,
            }),
            None => Err(e),
        },
    }
}

/// Enqueue the daily cycle of local date `date` once, however many instances try: each
/// school at `due(school)`. Returns how many jobs were added (0: someone already did).
pub async fn enqueue_cycle(
    store: &Store,
    date: NaiveDate,
    schools: &[(String, DateTime<Utc>)],
) -> Result<usize, DbErr> {
    let txn = store.begin_write(WriteKind::Queue).await?;
    if store.backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({CYCLE_LOCK})"))
            .await?;
    }
    let last = store_meta::Entity::find_by_id(LAST_CYCLE.to_owned())
        .one(&txn)
        .await?
        .and_then(|m| m.value.parse::<NaiveDate>().ok());
    if last.is_some_and(|l| l >= date) {
        txn.rollback().await?;
        return Ok(0);
    }
    let mut added = 0;
    for (school, due) in schools {
        if !enqueue(&txn, school, "schedule", *due, None).await?.joined {
            added += 1;
        }
    }
    store_meta::Entity::insert(store_meta::ActiveModel {
        key: Set(LAST_CYCLE.to_owned()),
        value: Set(date.to_string()),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(store_meta::Column::Key)
            .update_column(store_meta::Column::Value)
            .to_owned(),
    )
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(added)
}

/// The local date of the last cycle enqueued.
pub async fn last_cycle<C: ConnectionTrait>(db: &C) -> Result<Option<NaiveDate>, DbErr> {
    Ok(store_meta::Entity::find_by_id(LAST_CYCLE.to_owned())
        .one(db)
        .await?
        .and_then(|m| m.value.parse().ok()))
}

/// Claim the next due job for `owner` with a lease of `lease`; moves the school's fence on.
pub async fn claim(store: &Store, owner: &str, lease: Duration) -> Result<Option<Job>, DbErr> {
    let now = Utc::now();
    let expires = now + chrono_dur(lease);
    let txn = store.begin_write(WriteKind::Queue).await?;
    let id: Option<i64> = match store.backend() {
        DbBackend::Postgres => {
            // SKIP LOCKED: instances never wait for each other's candidate.
            let row = txn
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT id FROM sync_job WHERE state = 'pending' AND due_at <= $1 \
                     ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    [now.into()],
                ))
                .await?;
            row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?
        }
        _ => sync_job::Entity::find()
            .filter(sync_job::Column::State.eq(PENDING))
            .filter(sync_job::Column::DueAt.lte(now))
            .order_by_asc(sync_job::Column::DueAt)
            .order_by_asc(sync_job::Column::Id)
            .one(&txn)
            .await?
            .map(|j| j.id),
    };
    let Some(id) = id else {
        txn.rollback().await?;
        return Ok(None);
    };
    let Some(job) = super::by_key(&txn, sync_job::Entity::find_by_id(id)).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    school::Entity::update_many()
        .col_expr(
            school::Column::Fence,
            sea_orm::sea_query::ExprTrait::add(Expr::col(school::Column::Fence), 1),
        )
        .filter(school::Column::Id.eq(job.school_id.as_str()))
        .exec(&txn)
        .await?;
    let fence = super::by_key(&txn, school::Entity::find_by_id(job.school_id.clone()))
        .await?
        .map(|s| s.fence);
    sync_job::Entity::update_many()
        .col_expr(sync_job::Column::State, Expr::value(RUNNING))
        .col_expr(sync_job::Column::LeaseOwner, Expr::value(owner))
        .col_expr(sync_job::Column::LeaseExpiresAt, Expr::value(expires))
        .col_expr(sync_job::Column::HeartbeatAt, Expr::value(now))
        .col_expr(sync_job::Column::StartedAt, Expr::value(now))
        .col_expr(sync_job::Column::Attempts, Expr::value(job.attempts + 1))
        .col_expr(sync_job::Column::Fence, Expr::value(fence))
        .filter(sync_job::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    let claimed = super::by_key(&txn, sync_job::Entity::find_by_id(id)).await?;
    txn.commit().await?;
    Ok(claimed)
}

/// Extend `owner`'s lease on `job`; false when the lease was lost (reaped and re-claimed).
pub async fn heartbeat<C: ConnectionTrait>(
    db: &C,
    job: i64,
    owner: &str,
    lease: Duration,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let r = sync_job::Entity::update_many()
        .col_expr(sync_job::Column::HeartbeatAt, Expr::value(now))
        .col_expr(
            sync_job::Column::LeaseExpiresAt,
            Expr::value(now + chrono_dur(lease)),
        )
        .filter(sync_job::Column::Id.eq(job))
        .filter(sync_job::Column::State.eq(RUNNING))
        .filter(sync_job::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

/// Close `owner`'s job: `done` or `failed`, with the run it produced. False when the job is
/// no longer `owner`'s (its lease expired and another worker has it).
pub async fn finish<C: ConnectionTrait>(
    db: &C,
    job: i64,
    owner: &str,
    state: JobState,
    run: Option<i64>,
    error: Option<String>,
) -> Result<bool, DbErr> {
    let r = sync_job::Entity::update_many()
        .col_expr(sync_job::Column::State, Expr::value(state.as_str()))
        .col_expr(sync_job::Column::RunId, Expr::value(run))
        .col_expr(sync_job::Column::LastError, Expr::value(error))
        .col_expr(sync_job::Column::FinishedAt, Expr::value(Utc::now()))
        .col_expr(
            sync_job::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .filter(sync_job::Column::Id.eq(job))
        .filter(sync_job::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

/// Hand jobs whose lease expired (their instance died or hangs) back to the queue; a job
/// that has been tried `max_attempts` times fails instead.
pub async fn reap<C: ConnectionTrait>(db: &C, max_attempts: i32) -> Result<u64, DbErr> {
    let now = Utc::now();
    let failed = sync_job::Entity::update_many()
        .col_expr(sync_job::Column::State, Expr::value(FAILED))
        .col_expr(sync_job::Column::FinishedAt, Expr::value(now))
        .col_expr(
            sync_job::Column::LastError,
            Expr::value("its worker stopped answering too often; see the runs of the school"),
        )
        .filter(sync_job::Column::State.eq(RUNNING))
        .filter(sync_job::Column::LeaseExpiresAt.lt(now))
        .filter(sync_job::Column::Attempts.gte(max_attempts))
        .exec(db)
        .await?
        .rows_affected;
    let requeued = sync_job::Entity::update_many()
        .col_expr(sync_job::Column::State, Expr::value(PENDING))
        .col_expr(sync_job::Column::DueAt, Expr::value(now))
        .col_expr(
            sync_job::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .filter(sync_job::Column::State.eq(RUNNING))
        .filter(sync_job::Column::LeaseExpiresAt.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(failed + requeued)
}

/// A retry carries the attempts of the job it follows, so the retries of one cycle are
/// bounded.
pub async fn carry_attempts<C: ConnectionTrait>(
    db: &C,
    job: i64,
    attempts: i32,
) -> Result<(), DbErr> {
    sync_job::Entity::update_many()
        .col_expr(sync_job::Column::Attempts, Expr::value(attempts))
        .filter(sync_job::Column::Id.eq(job))
        .exec(db)
        .await?;
    Ok(())
}

/// Say that instance `id` (on `host`, process `pid`) is alive now: `status` and `resync` ask
/// whether a daemon answers on this store.
pub async fn instance_alive<C: ConnectionTrait>(
    db: &C,
    id: &str,
    host: &str,
    pid: u32,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    let now = Utc::now();
    daemon_instance::Entity::insert(daemon_instance::ActiveModel {
        id: Set(id.to_owned()),
        hostname: Set(host.to_owned()),
        pid: Set(i32::try_from(pid).unwrap_or(i32::MAX)),
        started_at: Set(now),
        heartbeat_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(daemon_instance::Column::Id)
            .update_column(daemon_instance::Column::HeartbeatAt)
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

/// Instance `id` stopped: `resync` must not wait for it.
pub async fn instance_gone<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), DbErr> {
    daemon_instance::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// The instance that said it was alive most recently, within `within` of now.
pub async fn live_instance<C: ConnectionTrait>(
    db: &C,
    within: Duration,
) -> Result<Option<daemon_instance::Model>, DbErr> {
    let since = Utc::now() - chrono_dur(within);
    daemon_instance::Entity::find()
        .filter(daemon_instance::Column::HeartbeatAt.gte(since))
        .order_by_desc(daemon_instance::Column::HeartbeatAt)
        .one(db)
        .await
}

pub async fn get<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<Job>, DbErr> {
    super::by_key(db, sync_job::Entity::find_by_id(id)).await
}

/// Jobs waiting or running, soonest first.
pub async fn open<C: ConnectionTrait>(db: &C) -> Result<Vec<Job>, DbErr> {
    sync_job::Entity::find()
        .filter(sync_job::Column::State.is_in([PENDING, RUNNING]))
        .order_by_asc(sync_job::Column::DueAt)
        .all(db)
        .await
}
