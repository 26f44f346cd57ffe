//! The store: one sea-orm code path over SQLite (embedded default) and PostgreSQL.
//! Owns connecting, schema migration and the few facts about the store itself.

mod bulk;
pub mod entities;
pub mod export;
pub mod held;
pub mod journal;
mod keys;
pub mod local;
pub mod oneroster;
pub mod owners;
pub mod permissions;
pub mod prepared;
pub mod queue;
pub mod roster;
pub mod runs;
pub mod schools;
pub mod sealing;
pub mod source_state;
mod sql;
mod stamp;
pub mod status;
pub mod undo;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

pub use stamp::Stamp;
pub use write::{WriteKind, WriteStats, WriteTxn, busy_backoff, is_contention};

use crate::settings::StoreSettings;

/// Prepared statements kept per connection. Multi-row inserts and `IN (...)` lists make
/// statements of many shapes, each large; sqlx's default of 100 per connection let memory grow
/// with every school synced (the bench measured +20 MiB per 500 schools). A small cache keeps
/// the hot, fixed-shape queries and lets the rest go.
const STATEMENT_CACHE: usize = 24;

/// On PostgreSQL every multi-row insert is one statement text per table (`bulk`), so the
/// shapes that made memory grow on SQLite are not there, while a school's run uses more
/// fixed-shape statements than 24: with 24 they pushed each other out, and PostgreSQL parsed
/// and planned two of every three executions again (1,000 schools, three days: 7.5 s of
/// planning; with 200, 4.8 s, the write transactions of a night 20-30% shorter, peak memory
/// the same within 2 MiB).
const POSTGRES_STATEMENT_CACHE: usize = 200;

/// A constant both instances agree on, so two `migrate` runs on one PostgreSQL serialize.
const MIGRATION_LOCK: i64 = 0x726f_7374_6572; // "roster"

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store.url '{0}' is not understood: it must start with sqlite:// or postgres://")]
    BadUrl(String),
    #[error("there is no store at {0}: run `rostersync migrate` to create it")]
    Missing(String),
    #[error("cannot open the store at {shown}: {reason}")]
    Unreachable { shown: String, reason: String },
    #[error(
        "the store at {shown} is {pending} schema migration(s) behind this rostersync: run \
         `rostersync migrate`"
    )]
    Behind { shown: String, pending: usize },
    #[error("store error at {shown}: {source}")]
    Db {
        shown: String,
        #[source]
        source: DbErr,
    },
}

impl StoreError {
    /// Whether the problem is with configuration or setup (exit 2) rather than a failed run.
    pub fn is_setup(&self) -> bool {
        !matches!(self, StoreError::Db { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a SQLite file when it does not exist yet (`migrate`).
    Create,
    /// The store must exist and be fully migrated.
    Existing,
}

/// The store: a pool that reads and one way to write.
///
/// SQLite has one writer at a time, and a writer that waits for the lock in SQLite's busy
/// handler can starve behind back-to-back transactions (8,000 schools: 1–3 failed after the
/// 5 s busy timeout). So on SQLite every write of this process goes through ONE connection,
/// whose pool is a fair queue, and every write transaction starts `BEGIN IMMEDIATE`; the
/// reading pool is opened read-only, so a write that bypasses the writer fails at once in
/// tests instead of contending in production. Only other processes (a `rostersync` command
/// beside the daemon) still meet at SQLite's lock. On PostgreSQL both are the same pool:
/// its row locks let applies of different schools run side by side.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    writer: DatabaseConnection,
    shown: String,
    home: PathBuf,
    writes: Arc<WriteStats>,
}

/// Where the store lives, parsed from `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Sqlite { path: PathBuf, query: String },
    Postgres { url: String },
}

fn parse_location(url: &str) -> Result<Location, StoreError> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(StoreError::BadUrl(url.to_owned()));
        }
        let path = PathBuf::from(path);
        // Under systemd a relative store lives in the unit's StateDirectory.
        let path = match std::env::var_os("STATE_DIRECTORY") {
            Some(state) if path.is_relative() => PathBuf::from(state).join(path),
            _ => path,
        };
        return Ok(Location::Sqlite {
            path,
            query: query.to_owned(),
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Location::Postgres {
            url: url.to_owned(),
        });
    }
    Err(StoreError::BadUrl(redact_url(url)))
}

pub use crate::settings::redact_url;

/// The row `select` finds by its primary (or another unique) key, or none. Not `.one()`: that
/// binds `LIMIT ?`, and SQLite plans with the bound limit's value, so such a statement is
/// prepared again on every execution (a few per school per night on the hot path).
pub async fn by_key<E, C>(db: &C, select: sea_orm::Select<E>) -> Result<Option<E::Model>, DbErr>
where
    E: sea_orm::EntityTrait,
    C: sea_orm::ConnectionTrait,
{
    Ok(select.all(db).await?.into_iter().next())
}

impl Store {
    pub async fn open(settings: &StoreSettings, mode: OpenMode) -> Result<Store, StoreError> {
        let location = parse_location(&settings.url)?;
        let password = store_password(settings)?;
        let (url, shown, home) = match &location {
            Location::Sqlite { path, query } => sqlite_target(path, query, mode)?,
            Location::Postgres { url } => {
                if settings.allow_unverified_tls {
                    tracing::warn!(store = %redact_url(url), "The PostgreSQL store may be reached without a verified TLS connection (store.allow_unverified_tls).");
                }
                probe_postgres(url, password.as_ref())
                    .await
                    .map_err(|reason| StoreError::Unreachable {
                        shown: redact_url(url),
                        reason,
                    })?;
                let home = std::env::var_os("STATE_DIRECTORY")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."));
                (url.clone(), redact_url(url), home)
            }
        };
        let sqlite = matches!(location, Location::Sqlite { .. });
        let unreachable = |e: DbErr| StoreError::Unreachable {
            shown: shown.clone(),
            reason: db_reason(&e),
        };
        // The writer first: it creates the file and switches it to WAL, which a read-only
        // connection cannot do.
        let writer = connect(pool_options(
            &url,
            settings,
            mode,
            Pool::Writer,
            password.clone(),
        ))
        .await
        .map_err(unreachable)?;
        let db = if sqlite {
            connect(pool_options(&url, settings, mode, Pool::Reader, None))
                .await
                .map_err(unreachable)?
        } else {
            writer.clone()
        };
        let store = Store {
            db,
            writer,
            shown,
            home,
            writes: Arc::default(),
        };
        if mode == OpenMode::Existing {
            store.ensure_current().await?;
        }
        Ok(store)
    }

    /// Reads. On SQLite this pool is read-only: every write goes through [`Store::writer`]
    /// or [`Store::begin_write`].
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Single statements that write. On SQLite its one connection is the process's write
    /// queue: whoever holds it holds SQLite's write lock, so keep what runs on it short.
    pub fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// A write transaction: on SQLite `BEGIN IMMEDIATE` on the one writer connection, so it
    /// holds the write lock from its first statement and can never fail to upgrade a read.
    /// How long it held the lock is measured by `kind` (see [`Store::write_stats`]).
    pub async fn begin_write(&self, kind: WriteKind) -> Result<WriteTxn, DbErr> {
        let asked = std::time::Instant::now();
        let txn = match self.backend() {
            DbBackend::Sqlite => {
                self.writer
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..TransactionOptions::default()
                    })
                    .await?
            }
            _ => self.writer.begin().await?,
        };
        Ok(WriteTxn::new(txn, kind, asked, self.writes.clone()))
    }

    /// A read-only transaction that sees one state of the store throughout: on SQLite a
    /// deferred transaction on a reader (its snapshot starts at the first read, and never
    /// holds the write lock), on PostgreSQL `REPEATABLE READ READ ONLY`. End it with
    /// `rollback`; it wrote nothing.
    pub async fn begin_read(&self) -> Result<DatabaseTransaction, DbErr> {
        match self.backend() {
            DbBackend::Sqlite => self.db.begin().await,
            _ => {
                self.db
                    .begin_with_config(
                        Some(sea_orm::IsolationLevel::RepeatableRead),
                        Some(sea_orm::AccessMode::ReadOnly),
                    )
                    .await
            }
        }
    }

    /// The longest wait for and hold of the write lock per kind of transaction, since open.
    pub fn write_stats(&self) -> &WriteStats {
        &self.writes
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Where the store is, for messages (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The directory for files that belong with the store (the default master key).
    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn db_error(&self, source: DbErr) -> StoreError {
        StoreError::Db {
            shown: self.shown.clone(),
            source,
        }
    }

    /// Apply pending migrations; returns their names. On PostgreSQL an advisory lock makes
    /// concurrent runs wait for each other instead of racing.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        self.migrate_with::<Migrator>().await
    }

    /// Apply `M`'s pending migrations in one transaction: all of them or, when one fails,
    /// none (the store stays as it was). On PostgreSQL an advisory lock makes instances that
    /// migrate at once take turns. (`M` is a parameter so tests can add a failing migration.)
    pub async fn migrate_with<M: MigratorTrait>(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.writer.begin().await.map_err(|e| self.db_error(e))?;
        if self.backend() == DbBackend::Postgres {
            // Another instance's migration may take long: wait for it, not `lock_timeout`.
            txn.execute_unprepared("SET LOCAL lock_timeout = 0")
                .await
                .map_err(|e| self.db_error(e))?;
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                .await
                .map_err(|e| self.db_error(e))?;
        }
        let pending: Vec<String> = M::get_pending_migrations(&txn)
            .await
            .map_err(|e| self.db_error(e))?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        if let Err(e) = M::up(&txn, None).await {
            // Roll back now, not when the connection is dropped: a half-applied schema change
            // holds locks (on PostgreSQL an ALTER TABLE locks the table for everyone).
            let _ = txn.rollback().await;
            return Err(self.db_error(e));
        }
        txn.commit().await.map_err(|e| self.db_error(e))?;
        Ok(pending)
    }

    async fn ensure_current(&self) -> Result<(), StoreError> {
        let pending = Migrator::get_pending_migrations_read_only(&self.db)
            .await
            .map_err(|e| self.db_error(e))?;
        if !pending.is_empty() {
            return Err(StoreError::Behind {
                shown: self.shown.clone(),
                pending: pending.len(),
            });
        }
        Ok(())
    }
}

/// The SQLite file's URL, how to show it, and its directory; checks what can be checked
/// before connecting (the file exists unless creating, its directory exists).
fn sqlite_target(
    path: &Path,
    query: &str,
    mode: OpenMode,
) -> Result<(String, String, PathBuf), StoreError> {
    let shown = path.display().to_string();
    if mode == OpenMode::Existing && !path.exists() {
        return Err(StoreError::Missing(shown));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(StoreError::Unreachable {
            shown,
            reason: format!("directory {} does not exist", dir.display()),
        });
    }
    if mode == OpenMode::Create && !path.exists() {
        create_private_file(path).map_err(|e| StoreError::Unreachable {
            shown: shown.clone(),
            reason: e.to_string(),
        })?;
    }
    let url = if query.is_empty() {
        format!("sqlite://{}", path.display())
    } else {
        format!("sqlite://{}?{query}", path.display())
    };
    let home = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((url, shown, home))
}

/// The two pools of a SQLite store (PostgreSQL has one, a `Writer`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    Writer,
    Reader,
}

/// How long a write waits for this process's writer connection. The queue is fair, so a
/// wait this long means a writer is stuck, not that the store is busy.
const WRITER_QUEUE_TIMEOUT: Duration = Duration::from_secs(120);

/// `store.password`, read once, when the configuration gives one.
fn store_password(settings: &StoreSettings) -> Result<Option<String>, StoreError> {
    settings
        .password
        .as_ref()
        .map(|p| {
            p.load_string()
                .map(|s| secrecy::ExposeSecret::expose_secret(&s).to_owned())
                .map_err(|e| StoreError::Unreachable {
                    shown: redact_url(&settings.url),
                    reason: format!("store.password cannot be read: {e}"),
                })
        })
        .transpose()
}

/// The options of one pool. `password`: PostgreSQL's, from `store.password`.
fn pool_options(
    url: &str,
    settings: &StoreSettings,
    mode: OpenMode,
    pool: Pool,
    password: Option<String>,
) -> ConnectOptions {
    let sqlite = url.starts_with("sqlite:");
    let mut opts = ConnectOptions::new(url.to_owned());
    let writer_only = sqlite && pool == Pool::Writer;
    opts.max_connections(if writer_only {
        1
    } else {
        settings.max_connections
    })
    .min_connections(0)
    .connect_timeout(Duration::from_secs(5))
    .acquire_timeout(if writer_only {
        WRITER_QUEUE_TIMEOUT
    } else {
        Duration::from_secs(30)
    })
    .sqlx_logging(false);
    let busy = Duration::from_millis(settings.busy_timeout_ms);
    if sqlite {
        let create = mode == OpenMode::Create && pool == Pool::Writer;
        opts.map_sqlx_sqlite_opts(move |o| {
            let o = o
                .busy_timeout(busy)
                .foreign_keys(true)
                .statement_cache_capacity(STATEMENT_CACHE);
            match pool {
                Pool::Writer => o
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .create_if_missing(create),
                Pool::Reader => o.read_only(true).create_if_missing(false),
            }
        });
    } else {
        opts.set_application_name("rostersync");
        // A lock wait is bounded as on SQLite: a run that meets a lock held longer fails as
        // contention and is tried again, instead of hanging behind it.
        let lock_timeout = format!("{}", settings.busy_timeout_ms);
        opts.map_sqlx_postgres_opts(move |o| {
            let o = o
                .statement_cache_capacity(POSTGRES_STATEMENT_CACHE)
                // Prepared statements are cached, and after five runs PostgreSQL keeps a
                // generic plan: right for the sync's statements (planning a 500-row insert
                // anew on every run took a third of a first load of 1,000 schools). The
                // API's pages, which need plans for their values, ask for them themselves
                // (`oneroster::page`).
                //
                // JIT compilation is for long analytic queries; ours read one school. A
                // school's roster read was compiled on every run (its estimated cost is over
                // `jit_above_cost` while the tables grow): LLVM took up to 18 ms of a run.
                .options([("lock_timeout", lock_timeout.as_str()), ("jit", "off")]);
            match &password {
                Some(p) => o.password(p),
                None => o,
            }
        });
    }
    opts
}

async fn connect(opts: ConnectOptions) -> Result<DatabaseConnection, DbErr> {
    let db = Database::connect(opts).await?;
    // Connecting is lazy for some drivers; make unreachable fail here, not later.
    db.ping().await?;
    Ok(db)
}

/// The moment a write stamps on its rows, to the microsecond: PostgreSQL keeps no more, so
/// both stores hold the same instants, and SQLite's text of it is 32 characters where a
/// nanosecond one took 35 (about nine stamps per pupil: issue 17's store size).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// A new record's identifier for apps (OneRoster `sourcedId`): 128 random bits as 32 hex
/// digits, the shape the migration gave existing rows. Random, so it tells nothing about the
/// person or how many came before.
pub fn new_sourced_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    sourced_id_at(now)
}

/// A sourcedId made at `millis` (since 1970): those 48 bits first, then 80 random ones, as
/// 32 hex digits. The time first puts ids made together next to each other in the unique
/// index: a school's first run writes a few index pages instead of one random page per
/// person (on a store of the whole country a random page is nearly always outside SQLite's
/// cache, and each is written again to the WAL at commit). 80 random bits keep ids
/// unguessable; what they tell is when the record was first stored.
fn sourced_id_at(millis: u64) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    // The system's random source does not fail on Linux once booted; were it to, the time
    // alone would collide on the unique index and the insert would fail loudly.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes[6..]);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut sid = String::with_capacity(32);
    for b in bytes {
        sid.push(char::from(HEX[usize::from(b >> 4)]));
        sid.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    sid
}

/// The store holds data about minors: only the service user may read it. SQLite gives its
/// -wal and -shm files the same permissions as the database file.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// One direct connection before the pool: the pool hides why it could not connect
/// ("pool timed out"), a direct attempt says "connection refused" or "password failed".
async fn probe_postgres(url: &str, password: Option<&String>) -> Result<(), String> {
    use sea_orm::sqlx::{Connection, postgres::PgConnectOptions, postgres::PgConnection};
    let mut options: PgConnectOptions = url.parse().map_err(|e| sqlx_reason(&e))?;
    if let Some(p) = password {
        options = options.password(p);
    }
    let attempt =
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options)).await;
    match attempt {
        Err(_) => Err("no answer within 5 s (is the server running and reachable?)".into()),
        Ok(Err(e)) => Err(sqlx_reason(&e)),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
    }
}

fn sqlx_reason(e: &sea_orm::sqlx::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    text.replace("error returned from database: ", "")
}

/// A database error as one readable clause, without the URL.
fn db_reason(e: &DbErr) -> String {
    let text = e.to_string();
    let text = text
        .trim_start_matches("Connection Error: ")
        .trim_start_matches("Failed to acquire connection from pool: ");
    text.replace("error returned from database: ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sourced_ids_made_later_sort_later_and_ids_of_one_moment_still_differ() {
        let at = 1_764_600_000_000; // 2025-12-01
        let (a, b) = (sourced_id_at(at), sourced_id_at(at));
        assert_ne!(a, b);
        assert_eq!(a[..12], b[..12]);
        assert_eq!(&a[..12], "019ada5b2e00");
        assert!(sourced_id_at(at + 1) > a.clone().max(b));
        // The first run of a school stores its persons within moments: their ids share a
        // prefix, so they land next to each other in the index.
        assert_eq!(sourced_id_at(at + 99)[..10], a[..10]);
    }

    #[test]
    fn a_sourced_id_is_32_lowercase_hex_digits_and_new_each_time() {
        let (a, b) = (new_sourced_id(), new_sourced_id());
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn store_urls_are_understood() {
        let loc = parse_location("sqlite:///var/lib/rs/x.db?mode=rwc").expect("sqlite");
        assert_eq!(
            loc,
            Location::Sqlite {
                path: "/var/lib/rs/x.db".into(),
                query: "mode=rwc".into()
            }
        );
        assert!(matches!(
            parse_location("postgresql://u@127.0.0.1/db"),
            Ok(Location::Postgres { .. })
        ));
        let bad = parse_location("mysql://u:secret@h/db").expect_err("refused");
        assert!(!bad.to_string().contains("secret"), "{bad}");
    }

    #[test]
    fn passwords_are_hidden() {
        let shown = redact_url("postgres://rs:hunter2@db.example:5432/rostersync");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.example"));
    }
}
