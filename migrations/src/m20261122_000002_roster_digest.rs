//! `school.roster_digest`: a digest of what the sources said at the last run that was applied
//! in full. When the sources say exactly the same again, the run can skip loading and diffing
//! the school's roster: nothing can differ.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum School {
    Table,
    RosterDigest,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(School::Table)
                .add_column(string_null(School::RosterDigest))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(School::Table)
                .drop_column(School::RosterDigest)
                .to_owned(),
        )
        .await
    }
}
