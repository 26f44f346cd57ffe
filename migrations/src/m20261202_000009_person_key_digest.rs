//! `person_key` is unique on a digest of its value instead of on the value.
//!
//! The primary key (school, kind, value) made SQLite keep a second copy of every value in its
//! index, and a 154-character ECK-iD twice was most of `person_key`'s ~180 bytes per pupil
//! (issue 17). The table now has a `digest` column (`crate::key_digest`: the value's SHA-256,
//! first 8 bytes) and its primary key is (school, kind, digest), an index about a third the
//! size. The school leads so that a school's keys go in side by side: with the random digest
//! first, every insert landed on a page of its own and the 1,000-school initial load took 55 s
//! instead of 34. A lookup by value filters on both digest and value. Two different values of
//! one kind at one school with the same 64-bit digest would be refused by the index (the
//! school's run fails and stores nothing); at a few thousand keys per school that chance is
//! below 10^-12.
//!
//! Neither SQLite nor sea-query can drop a primary key in place: the table is rebuilt, its rows
//! copied in pages of 5,000 with their digests computed here.

use sea_orm_migration::sea_orm::{ConnectionTrait, QueryResult};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum PersonKey {
    Table,
    SchoolId,
    Kind,
    Value,
    PersonId,
    Source,
    Digest,
}

#[derive(DeriveIden)]
enum PersonKeyRebuilt {
    Table,
}

#[derive(DeriveIden)]
enum Person {
    Table,
    Id,
}

/// Rows copied per round trip: bounded memory, few statements.
const PAGE: u64 = 5_000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        rebuild(m, Shape::Digest).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        rebuild(m, Shape::PrimaryKey).await
    }
}

/// What the rebuilt table is unique on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// (digest, school, kind), the value's digest in a column of its own.
    Digest,
    /// (school, kind, value) as its primary key, as before this migration.
    PrimaryKey,
}

async fn rebuild(m: &SchemaManager<'_>, shape: Shape) -> Result<(), DbErr> {
    m.create_table(table(shape)).await?;
    copy(m, shape).await?;
    m.drop_table(Table::drop().table(PersonKey::Table).to_owned())
        .await?;
    m.rename_table(
        Table::rename()
            .table(PersonKeyRebuilt::Table, PersonKey::Table)
            .to_owned(),
    )
    .await?;
    // Dropping the old table dropped its indexes, so their names are free again.
    m.create_index(
        Index::create()
            .name("ix_person_key_person")
            .table(PersonKey::Table)
            .col(PersonKey::PersonId)
            .to_owned(),
    )
    .await?;
    Ok(())
}

fn table(shape: Shape) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(PersonKeyRebuilt::Table)
        .col(string_len(PersonKey::SchoolId, 6))
        .col(string(PersonKey::Kind))
        .col(string_len(PersonKey::Value, 256))
        .col(big_integer(PersonKey::PersonId))
        .col(string(PersonKey::Source))
        .foreign_key(
            ForeignKey::create()
                .name("fk_person_key_person")
                .from(PersonKeyRebuilt::Table, PersonKey::PersonId)
                .to(Person::Table, Person::Id)
                .on_delete(ForeignKeyAction::Cascade),
        );
    match shape {
        Shape::Digest => {
            t.col(big_integer(PersonKey::Digest)).primary_key(
                Index::create()
                    .name("person_key_digest_pkey")
                    .col(PersonKey::SchoolId)
                    .col(PersonKey::Kind)
                    .col(PersonKey::Digest),
            );
        }
        Shape::PrimaryKey => {
            // PostgreSQL's name for it before: the rebuilt table's would clash with the other.
            t.primary_key(
                Index::create()
                    .name("person_key_pkey")
                    .col(PersonKey::SchoolId)
                    .col(PersonKey::Kind)
                    .col(PersonKey::Value),
            );
        }
    }
    t.to_owned()
}

/// Copy every key into the rebuilt table, a page at a time in (school, kind, value) order.
async fn copy(m: &SchemaManager<'_>, shape: Shape) -> Result<(), DbErr> {
    let db = m.get_connection();
    let mut after: Option<(String, String, String)> = None;
    loop {
        let mut q = Query::select();
        q.columns([
            PersonKey::SchoolId,
            PersonKey::Kind,
            PersonKey::Value,
            PersonKey::PersonId,
            PersonKey::Source,
        ])
        .from(PersonKey::Table)
        .order_by(PersonKey::SchoolId, Order::Asc)
        .order_by(PersonKey::Kind, Order::Asc)
        .order_by(PersonKey::Value, Order::Asc)
        .limit(PAGE);
        if let Some((s, k, v)) = &after {
            let cols = [PersonKey::SchoolId, PersonKey::Kind, PersonKey::Value];
            q.and_where(
                Expr::tuple(cols.map(Expr::col))
                    .gt(Expr::tuple([s, k, v].map(|x| Expr::val(x.as_str())))),
            );
        }
        let rows = db.query_all(&q).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some((
            last.try_get("", "school_id")?,
            last.try_get("", "kind")?,
            last.try_get("", "value")?,
        ));
        db.execute(&insert(&rows, shape)?).await?;
    }
}

fn insert(rows: &[QueryResult], shape: Shape) -> Result<InsertStatement, DbErr> {
    let mut columns = vec![
        PersonKey::SchoolId,
        PersonKey::Kind,
        PersonKey::Value,
        PersonKey::PersonId,
        PersonKey::Source,
    ];
    if shape == Shape::Digest {
        columns.push(PersonKey::Digest);
    }
    let mut ins = Query::insert();
    // `columns` sets the list (a second call replaces it), so it is given once.
    ins.into_table(PersonKeyRebuilt::Table).columns(columns);
    for r in rows {
        let value: String = r.try_get("", "value")?;
        let mut row: Vec<Expr> = vec![
            Expr::val(r.try_get::<String>("", "school_id")?),
            Expr::val(r.try_get::<String>("", "kind")?),
            Expr::val(value.clone()),
            Expr::val(r.try_get::<i64>("", "person_id")?),
            Expr::val(r.try_get::<String>("", "source")?),
        ];
        if shape == Shape::Digest {
            row.push(Expr::val(crate::key_digest(&value)));
        }
        ins.values(row).map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    Ok(ins.to_owned())
}
