//! `person_key` loses `created_at`. A store holds about three keys per person (the LAS's, the
//! broker's, the ECK-iD), and a 35-character timestamp on each was about 105 bytes per pupil
//! (issue 17: a store of the whole country in 700 bytes per pupil). When a key first came is
//! what the journal says: the person's `create` entry or the key's `link-key` entry.
//!
//! SQLite rewrites the table to drop a column; the pages it frees are reused, the file does
//! not shrink until a `VACUUM`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PersonKey {
    Table,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(PersonKey::Table)
                .drop_column(PersonKey::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // What was dropped cannot come back: every key gets the moment of this downgrade
        // (SQLite adds a NOT NULL column only with a constant default, hence the two steps).
        m.alter_table(
            Table::alter()
                .table(PersonKey::Table)
                .add_column(timestamp_with_time_zone_null(PersonKey::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::update()
                .table(PersonKey::Table)
                .value(PersonKey::CreatedAt, Expr::current_timestamp())
                .to_owned(),
        )
        .await
    }
}
