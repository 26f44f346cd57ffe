//! `school.roster_version`: a counter every writer of a school's roster raises (issue 17).
//!
//! A run reads the stored roster and computes its plan before it takes the write lock, so the
//! long part of a run no longer holds SQLite's only writer. Under the lock it compares the
//! counter with the one it read: when another writer (an edit, an undo, an approval, the
//! purge) changed the school in between, the run computes again under the lock.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum School {
    Table,
    RosterVersion,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(School::Table)
                .add_column(big_integer(School::RosterVersion).default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(School::Table)
                .drop_column(School::RosterVersion)
                .to_owned(),
        )
        .await
    }
}
