//! The moments of roster records become whole microseconds since 1970 in a `bigint`.
//!
//! On SQLite a moment was 32 characters of text, in the row and again in each index on it:
//! with a person's four, a membership's `since` and a journal entry's `at`, about a sixth of
//! the store (196 of 1,134 bytes a pupil, issue 17). PostgreSQL's `timestamptz` was 8 bytes
//! already; it converts too, so that both backends run the same SQL (the API compares moments
//! of persons, groups, memberships, grants and the journal with each other). The run
//! history, the job queue and the schools keep their `timestamptz`: they are small and never
//! meet these in SQL.
//!
//! PostgreSQL converts each table in place with one `ALTER TABLE`. SQLite cannot change a
//! column's type: each moment gets a new column, filled from the text (exactly, to the
//! microsecond; SQLite's own date functions round to the millisecond, so only the whole
//! seconds go through them), then the old column is dropped and the new one takes its name.
//! The indexes on those columns are dropped first and made again from their own SQL. No table
//! is rebuilt: `person` is referenced by five others, and dropping it would cascade.
//! A moment that does not convert (NULL from a value that was not) stops the migration.
//!
//! On SQLite an operator who mends a record by hand writes a moment as text, as before
//! (`UPDATE person SET purge_after = '2027-01-01T00:00:00Z'`). A trigger per column turns that
//! text into microseconds (to the millisecond), or refuses the update when it is no moment:
//! text left in an integer column would compare above every moment and silently never come
//! due. PostgreSQL refuses text in a `bigint` column by itself.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each table's moments, with whether the column takes NULL.
const MOMENTS: &[(&str, &[(&str, bool)])] = &[
    (
        "person",
        &[
            ("created_at", false),
            ("updated_at", false),
            ("removed_at", true),
            ("purge_after", true),
        ],
    ),
    (
        "roster_group",
        &[
            ("created_at", false),
            ("updated_at", false),
            ("removed_at", true),
            ("purge_after", true),
        ],
    ),
    ("membership", &[("since", false)]),
    ("person_role", &[("since", false)]),
    ("change_entry", &[("at", false)]),
    (
        "access_grant",
        &[
            ("since", false),
            ("pending_since", true),
            ("revoke_after", true),
            ("changed_at", true),
        ],
    ),
    ("prepared_class", &[("updated_at", false)]),
];

/// Which way a migration goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    ToMicros,
    ToTimestamp,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// All or nothing on SQLite too (sea-orm runs only PostgreSQL's migrations in one): a
    /// store cut off halfway would have some moments as text and some as integers.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        convert_all(m, Way::ToMicros).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        convert_all(m, Way::ToTimestamp).await
    }
}

async fn convert_all(m: &SchemaManager<'_>, way: Way) -> Result<(), DbErr> {
    for (table, columns) in MOMENTS {
        match m.get_database_backend() {
            DbBackend::Postgres => alter_postgres(m, table, columns, way).await?,
            _ => convert_sqlite(m, table, columns, way).await?,
        }
    }
    Ok(())
}

async fn alter_postgres(
    m: &SchemaManager<'_>,
    table: &str,
    columns: &[(&str, bool)],
    way: Way,
) -> Result<(), DbErr> {
    let changes: Vec<String> = columns
        .iter()
        .map(|(c, _)| match way {
            Way::ToMicros => format!(
                "ALTER COLUMN \"{c}\" TYPE bigint USING (extract(epoch FROM \"{c}\") * 1000000)::bigint"
            ),
            Way::ToTimestamp => format!(
                "ALTER COLUMN \"{c}\" TYPE timestamptz \
                 USING TIMESTAMPTZ 'epoch' + \"{c}\" * INTERVAL '1 microsecond'"
            ),
        })
        .collect();
    m.get_connection()
        .execute_unprepared(&format!("ALTER TABLE \"{table}\" {}", changes.join(", ")))
        .await
        .map(drop)
}

async fn convert_sqlite(
    m: &SchemaManager<'_>,
    table: &str,
    columns: &[(&str, bool)],
    way: Way,
) -> Result<(), DbErr> {
    let db = m.get_connection();
    if way == Way::ToTimestamp {
        for (c, _) in columns {
            let name = trigger_name(table, c);
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS \"{name}\""))
                .await?;
        }
    }
    let indexes = indexes_on(m, table, columns).await?;
    for (name, _) in &indexes {
        db.execute_unprepared(&format!("DROP INDEX \"{name}\""))
            .await?;
    }
    for (c, nullable) in columns {
        convert_column(m, table, (c, *nullable), way).await?;
    }
    for (_, sql) in &indexes {
        db.execute_unprepared(sql).await?;
    }
    if way == Way::ToMicros {
        for (c, _) in columns {
            db.execute_unprepared(&text_trigger(table, c)).await?;
        }
    }
    Ok(())
}

/// One column of `table` into its other form: a new column filled from it takes its place.
async fn convert_column(
    m: &SchemaManager<'_>,
    table: &str,
    (c, nullable): (&str, bool),
    way: Way,
) -> Result<(), DbErr> {
    let db = m.get_connection();
    let (kind, fill) = match way {
        Way::ToMicros => ("bigint", micros_of(c)),
        Way::ToTimestamp => ("timestamp_with_timezone_text", text_of(c)),
    };
    // SQLite adds a NOT NULL column only with a default; every row is filled below.
    let constraint = match (nullable, way) {
        (true, _) => "NULL",
        (false, Way::ToMicros) => "NOT NULL DEFAULT 0",
        (false, Way::ToTimestamp) => "NOT NULL DEFAULT ''",
    };
    db.execute_unprepared(&format!(
        "ALTER TABLE \"{table}\" ADD COLUMN \"{c}__new\" {kind} {constraint}"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "UPDATE \"{table}\" SET \"{c}__new\" = {fill} WHERE \"{c}\" IS NOT NULL"
    ))
    .await?;
    refuse_unconverted(m, table, c).await?;
    db.execute_unprepared(&format!("ALTER TABLE \"{table}\" DROP COLUMN \"{c}\""))
        .await?;
    db.execute_unprepared(&format!(
        "ALTER TABLE \"{table}\" RENAME COLUMN \"{c}__new\" TO \"{c}\""
    ))
    .await
    .map(drop)
}

/// The name of the trigger that turns text written into `table`.`c` into microseconds.
fn trigger_name(table: &str, c: &str) -> String {
    format!("tr_{table}_{c}_text")
}

/// A trigger that rewrites a moment written as text into `table`.`c` as microseconds, and
/// refuses the update when the text is no moment. Its SQL is compiled into every `UPDATE` of
/// the column, so it is kept short: the exact conversion of `micros_of` cost 100 us per
/// statement (timed on a store of 300,000 pupils; the statements with `IN` lists of every
/// length are prepared again and again), this one 26. It reads the moment to the
/// millisecond, which is what a person writes.
fn text_trigger(table: &str, c: &str) -> String {
    let name = trigger_name(table, c);
    let new = format!("NEW.\"{c}\"");
    let micros = format!(
        "CAST(strftime('%s', {new}) AS INTEGER) * 1000000 \
         + CAST(substr(strftime('%f', {new}), 4) AS INTEGER) * 1000"
    );
    let refused =
        format!("RAISE(ABORT, '{table}.{c}: not a moment; write it as 2027-01-01T00:00:00Z')");
    format!(
        "CREATE TRIGGER \"{name}\" AFTER UPDATE OF \"{c}\" ON \"{table}\" \
         WHEN typeof({new}) = 'text' BEGIN \
         UPDATE \"{table}\" SET \"{c}\" = COALESCE({micros}, {refused}) WHERE rowid = NEW.rowid; END"
    )
}

/// The indexes of `table` on any of `columns` (in their keys or their `WHERE`), with the SQL
/// that made them.
async fn indexes_on(
    m: &SchemaManager<'_>,
    table: &str,
    columns: &[(&str, bool)],
) -> Result<Vec<(String, String)>, DbErr> {
    let rows = m
        .get_connection()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? \
             AND sql IS NOT NULL",
            [table.into()],
        ))
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.try_get("", "name")?;
        let sql: String = r.try_get("", "sql")?;
        if columns
            .iter()
            .any(|(c, _)| sql.contains(&format!("\"{c}\"")))
        {
            out.push((name, sql));
        }
    }
    Ok(out)
}

/// Stops the migration when a value did not convert: its text was not a moment.
async fn refuse_unconverted(m: &SchemaManager<'_>, table: &str, c: &str) -> Result<(), DbErr> {
    let row = m
        .get_connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            format!(
                "SELECT COUNT(*) AS n FROM \"{table}\" WHERE \"{c}\" IS NOT NULL \
                 AND (\"{c}__new\" IS NULL OR \"{c}\" = '')"
            ),
        ))
        .await?;
    let n: i64 = row.map_or(Ok(0), |r| r.try_get("", "n"))?;
    if n > 0 {
        return Err(DbErr::Migration(format!(
            "{n} value(s) of {table}.{c} are not moments rostersync wrote; nothing was changed. \
             Look at them with: SELECT {c} FROM {table} LIMIT 10"
        )));
    }
    Ok(())
}

/// SQL for the microseconds of the text moment in `c` as sqlx writes it
/// (`2026-12-02T03:47:33.786338+00:00`; also `Z`, no fraction, or no zone). The seconds go
/// through `strftime` without the fraction, which it would round to milliseconds; the
/// fraction's first six digits are added as they are.
fn micros_of(c: &str) -> String {
    let zone_len = format!(
        "(CASE WHEN substr(\"{c}\", length(\"{c}\"), 1) = 'Z' THEN 1 \
         WHEN length(\"{c}\") >= 25 AND substr(\"{c}\", length(\"{c}\") - 5, 1) IN ('+', '-') \
         THEN 6 ELSE 0 END)"
    );
    let zone = format!("substr(\"{c}\", length(\"{c}\") - {zone_len} + 1, {zone_len})");
    let seconds = format!("CAST(strftime('%s', substr(\"{c}\", 1, 19) || {zone}) AS INTEGER)");
    let fraction = format!(
        "(CASE WHEN substr(\"{c}\", 20, 1) = '.' THEN CAST(substr(substr(\"{c}\", 21, \
         length(\"{c}\") - 20 - {zone_len}) || '000000', 1, 6) AS INTEGER) ELSE 0 END)"
    );
    format!("{seconds} * 1000000 + {fraction}")
}

/// SQL for the text moment, as sqlx writes it, of the microseconds in `c`.
fn text_of(c: &str) -> String {
    format!(
        "strftime('%Y-%m-%dT%H:%M:%S', \"{c}\" / 1000000, 'unixepoch') || '.' || \
         printf('%06d', \"{c}\" % 1000000) || '+00:00'"
    )
}
