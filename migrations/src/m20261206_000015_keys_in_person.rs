//! A person's keys move into its own row: `person.eckid` (with `eckid_digest`), `las_key`,
//! `broker_id` and `portal_code`, and the table `person_key` goes (issue 17).
//!
//! A person has at most one key of each kind (`PersonKeys`), so a table of its own paid for
//! three rows a pupil what a row of the person already has: the school, the person's id, a
//! rowid, a record header, and an index on the person's id to find them. At 8,000 schools that
//! table and its two indexes were 394 bytes a pupil, 46% of the store; in the person's row,
//! with one index per kind, the same keys cost about 140 bytes a pupil less.
//!
//! The ECK-iD is kept without its fixed 26-character prefix (`crate::compact_eckid`): 20 more
//! bytes a pupil.
//!
//! Each kind is unique within a school through an index of its own, over the rows that have
//! one (`ux_person_<kind>`): on (school, value) for the short ones, and on (school, digest)
//! for the 154-character ECK-iD, whose second copy in an index would cost more than the rest
//! of the index (as in migration 9: `crate::key_digest`). A lookup of an ECK-iD filters on
//! both digest and value.
//!
//! Down rebuilds `person_key` as migration 13 left it, the digests of the other kinds computed
//! here, a page of persons at a time.

use sea_orm_migration::sea_orm::ConnectionTrait;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Person {
    Table,
    Id,
    SchoolId,
    Eckid,
    EckidDigest,
    LasKey,
    BrokerId,
    PortalCode,
}

#[derive(DeriveIden, Clone, Copy)]
enum PersonKey {
    Table,
    SchoolId,
    Kind,
    Value,
    PersonId,
    Digest,
}

/// Each kind as `person_key` named it, its value's column (and that column's name), and the
/// column its index is on.
const KINDS: [(&str, Person, &str, Person); 4] = [
    ("eckid", Person::Eckid, "eckid", Person::EckidDigest),
    ("las", Person::LasKey, "las_key", Person::LasKey),
    ("broker", Person::BrokerId, "broker_id", Person::BrokerId),
    (
        "portal",
        Person::PortalCode,
        "portal_code",
        Person::PortalCode,
    ),
];

/// Persons read per round trip by down: bounded memory, few statements.
const PAGE: u64 = 5_000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// All or nothing on SQLite too: a store cut off between filling the columns and dropping
    /// the table would hold every key twice, and one cut off while dropping would hold none.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Person::Eckid,
            Person::LasKey,
            Person::BrokerId,
            Person::PortalCode,
        ] {
            add_column(m, string_len_null(column, 256)).await?;
        }
        add_column(m, big_integer_null(Person::EckidDigest)).await?;
        let value = |kind: &str, column: &str| {
            format!(
                "(SELECT k.{column} FROM person_key k \
                 WHERE k.person_id = person.id AND k.kind = '{kind}')"
            )
        };
        m.get_connection()
            .execute_unprepared(&format!(
                "UPDATE person SET eckid = {}, eckid_digest = {}, las_key = {}, \
                 broker_id = {}, portal_code = {} \
                 WHERE id IN (SELECT person_id FROM person_key)",
                crate::compact_eckid_sql(&value("eckid", "value")),
                value("eckid", "digest"),
                value("las", "value"),
                value("broker", "value"),
                value("portal", "value"),
            ))
            .await?;
        // Built after the fill: one sort per index instead of an insert per row.
        for (kind, _, _, indexed) in KINDS {
            m.create_index(
                Index::create()
                    .name(index_name(kind))
                    .table(Person::Table)
                    .col(Person::SchoolId)
                    .col(indexed)
                    .unique()
                    .and_where(Expr::col(indexed).is_not_null())
                    .to_owned(),
            )
            .await?;
        }
        m.drop_table(Table::drop().table(PersonKey::Table).to_owned())
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(key_table()).await?;
        copy_back(m).await?;
        m.create_index(
            Index::create()
                .name("ix_person_key_person")
                .table(PersonKey::Table)
                .col(PersonKey::PersonId)
                .to_owned(),
        )
        .await?;
        for (kind, _, _, _) in KINDS {
            m.drop_index(
                Index::drop()
                    .name(index_name(kind))
                    .table(Person::Table)
                    .to_owned(),
            )
            .await?;
        }
        for column in [
            Person::Eckid,
            Person::EckidDigest,
            Person::LasKey,
            Person::BrokerId,
            Person::PortalCode,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Person::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

fn index_name(kind: &str) -> String {
    format!("ux_person_{kind}")
}

async fn add_column(m: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
    m.alter_table(
        Table::alter()
            .table(Person::Table)
            .add_column(column)
            .to_owned(),
    )
    .await
}

/// `person_key` as migrations 9 and 13 left it.
fn key_table() -> TableCreateStatement {
    Table::create()
        .table(PersonKey::Table)
        .col(string_len(PersonKey::SchoolId, 6))
        .col(string(PersonKey::Kind))
        .col(string_len(PersonKey::Value, 256))
        .col(big_integer(PersonKey::PersonId))
        .col(big_integer(PersonKey::Digest))
        .foreign_key(
            ForeignKey::create()
                .name("fk_person_key_person")
                .from(PersonKey::Table, PersonKey::PersonId)
                .to(Person::Table, Person::Id)
                .on_delete(ForeignKeyAction::Cascade),
        )
        .primary_key(
            Index::create()
                .name("person_key_digest_pkey")
                .col(PersonKey::SchoolId)
                .col(PersonKey::Kind)
                .col(PersonKey::Digest),
        )
        .to_owned()
}

/// Every person's keys as rows of `person_key` again, a page of persons at a time in id order.
async fn copy_back(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = m.get_connection();
    let mut after = 0_i64;
    loop {
        let mut q = Query::select();
        q.columns([Person::Id, Person::SchoolId])
            .columns(KINDS.map(|(_, column, _, _)| column))
            .from(Person::Table)
            .and_where(Expr::col(Person::Id).gt(after))
            .order_by(Person::Id, Order::Asc)
            .limit(PAGE);
        let rows = db.query_all(&q).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get("", "id")?;
        let mut ins = Query::insert();
        ins.into_table(PersonKey::Table).columns([
            PersonKey::SchoolId,
            PersonKey::Kind,
            PersonKey::Value,
            PersonKey::PersonId,
            PersonKey::Digest,
        ]);
        let mut any = false;
        for r in &rows {
            let school: String = r.try_get("", "school_id")?;
            let id: i64 = r.try_get("", "id")?;
            for (kind, _, name, _) in KINDS {
                let Some(value) = r.try_get::<Option<String>>("", name)? else {
                    continue;
                };
                let value = match kind {
                    "eckid" => crate::full_eckid(&value),
                    _ => value,
                };
                let digest = crate::key_digest(&value);
                ins.values([
                    Expr::val(school.as_str()),
                    Expr::val(kind),
                    Expr::val(value),
                    Expr::val(id),
                    Expr::val(digest),
                ])
                .map_err(|e| DbErr::Custom(e.to_string()))?;
                any = true;
            }
        }
        if any {
            db.execute(&ins).await?;
        }
    }
}
