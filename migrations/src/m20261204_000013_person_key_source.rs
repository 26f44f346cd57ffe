//! `person_key.source` goes: every run wrote the links' owner into it and nothing ever read
//! it back (a person's owners, links included, are in `person.owners`). At about three keys a
//! pupil its 7 bytes a row were about 21 bytes a pupil on SQLite (issue 17).
//!
//! Down puts the column back empty: the values are gone, and no release read them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PersonKey {
    Table,
    Source,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(PersonKey::Table)
                .drop_column(PersonKey::Source)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(PersonKey::Table)
                .add_column(string(PersonKey::Source).default(""))
                .to_owned(),
        )
        .await
    }
}
