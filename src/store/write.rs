//! Write transactions and what they cost: each is named by its kind, and the store keeps the
//! longest wait for and hold of the write lock per kind (the evidence for SQLite's one
//! writer); and which database errors are contention, to be tried again, not a broken store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};
use serde::Serialize;

/// What a write transaction is for; the unit of the write-lock measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// A school's run: the roster, journal, grants and run record in one transaction.
    Apply,
    /// Claiming a job, enqueueing the daily cycle.
    Queue,
    /// Deleting tombstones whose retention ended (one chunk per transaction).
    Purge,
    /// A change by hand: person, group, grant, approval.
    Edit,
    /// Linking, keying or removing a school.
    Link,
}

impl WriteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Apply => "apply",
            WriteKind::Queue => "queue",
            WriteKind::Purge => "purge",
            WriteKind::Edit => "edit",
            WriteKind::Link => "link",
        }
    }
}

/// The longest wait for and hold of the write lock, and the time it was held in all, per
/// kind (on SQLite, where there is one writer, how busy that writer was).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteCost {
    pub transactions: u64,
    #[serde(serialize_with = "millis")]
    pub longest_wait: Duration,
    #[serde(serialize_with = "millis")]
    pub longest_hold: Duration,
    #[serde(serialize_with = "millis")]
    pub total_hold: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 10_000.0).round() / 10.0)
}

#[derive(Debug, Default)]
pub struct WriteStats {
    by_kind: Mutex<BTreeMap<WriteKind, WriteCost>>,
}

impl WriteStats {
    fn record(&self, kind: WriteKind, wait: Duration, hold: Duration) {
        metrics::histogram!("rostersync_store_write_seconds", "kind" => kind.as_str())
            .record(hold.as_secs_f64());
        let Ok(mut by_kind) = self.by_kind.lock() else {
            return; // A panicked recorder only costs a measurement.
        };
        let cost = by_kind.entry(kind).or_default();
        cost.transactions += 1;
        cost.longest_wait = cost.longest_wait.max(wait);
        cost.longest_hold = cost.longest_hold.max(hold);
        cost.total_hold += hold;
    }

    /// What was measured so far, by kind.
    pub fn snapshot(&self) -> BTreeMap<WriteKind, WriteCost> {
        self.by_kind.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// A write transaction that measures itself: the wait from asking to `BEGIN` returning (the
/// queue and the lock), and the hold from there to its commit or rollback.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    kind: WriteKind,
    began: Instant,
    wait: Duration,
    stats: Arc<WriteStats>,
}

impl WriteTxn {
    pub(super) fn new(
        txn: DatabaseTransaction,
        kind: WriteKind,
        asked: Instant,
        stats: Arc<WriteStats>,
    ) -> WriteTxn {
        WriteTxn {
            txn,
            kind,
            began: Instant::now(),
            wait: asked.elapsed(),
            stats,
        }
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        let WriteTxn {
            txn,
            kind,
            began,
            wait,
            stats,
        } = self;
        let result = txn.commit().await;
        stats.record(kind, wait, began.elapsed());
        result
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        let WriteTxn {
            txn,
            kind,
            began,
            wait,
            stats,
        } = self;
        let result = txn.rollback().await;
        stats.record(kind, wait, began.elapsed());
        result
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }
}

/// SQLite's codes for "someone else holds the lock" (`SQLITE_BUSY`, `SQLITE_LOCKED` and their
/// extended forms: recovery, snapshot, timeout, shared cache).
const SQLITE_BUSY: [&str; 6] = ["5", "6", "261", "517", "773", "262"];

/// PostgreSQL's SQLSTATEs of a transaction that met another one and may simply be tried
/// again: serialization failure, deadlock, lock not available (our `lock_timeout`), and the
/// server shutting down or restarting under us.
const POSTGRES_RETRY: [&str; 6] = ["40001", "40P01", "55P03", "57P01", "57P02", "57P03"];

/// How a write that met a busy store waits before it tries again: from 100 ms, doubling up to
/// 5 s, with jitter (writers that met the same lock do not all come back at once), for at most
/// `total` in all.
pub fn busy_backoff(total: Duration) -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(total))
        .without_max_times()
        .with_jitter()
}

/// Whether `e` is contention or a lost connection (try again shortly), rather than a broken
/// store or a bug. Decided by the driver's error type and code, never by the message.
pub fn is_contention(e: &DbErr) -> bool {
    let runtime = match e {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return false,
    };
    let RuntimeErr::SqlxError(sqlx) = runtime else {
        return false;
    };
    use sea_orm::sqlx::Error;
    match sqlx.as_ref() {
        Error::PoolTimedOut | Error::PoolClosed | Error::Io(_) | Error::WorkerCrashed => true,
        Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL class 08: the connection failed or was lost.
            SQLITE_BUSY.contains(&code.as_ref())
                || POSTGRES_RETRY.contains(&code.as_ref())
                || code.starts_with("08")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_are_not_the_drivers_are_not_contention() {
        assert!(!is_contention(&DbErr::Custom("database is locked".into())));
        assert!(!is_contention(&DbErr::RecordNotFound("x".into())));
        assert!(is_contention(&DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout
        )));
    }

    #[test]
    fn the_longest_wait_and_hold_are_kept_per_kind() {
        let stats = WriteStats::default();
        stats.record(
            WriteKind::Apply,
            Duration::from_millis(3),
            Duration::from_millis(40),
        );
        stats.record(
            WriteKind::Apply,
            Duration::from_millis(9),
            Duration::from_millis(20),
        );
        stats.record(
            WriteKind::Purge,
            Duration::from_millis(1),
            Duration::from_millis(70),
        );
        let got = stats.snapshot();
        assert_eq!(got[&WriteKind::Apply].transactions, 2);
        assert_eq!(
            got[&WriteKind::Apply].longest_wait,
            Duration::from_millis(9)
        );
        assert_eq!(
            got[&WriteKind::Apply].longest_hold,
            Duration::from_millis(40)
        );
        assert_eq!(got[&WriteKind::Apply].total_hold, Duration::from_millis(60));
        assert_eq!(
            got[&WriteKind::Purge].longest_hold,
            Duration::from_millis(70)
        );
    }
}
