//! `change_entry.at` is searched in two places only: the OneRoster enrollments delta looks for
//! `leave` entries since a moment, and the retention forgets edits by hand (no run) before one.
//! An index of every entry's timestamp was about 60 bytes per pupil (issue 17). A partial index
//! over the `leave` entries (a fraction of a percent of the journal) serves the delta; edits by
//! hand are found through `ix_change_entry_run` (`run_id IS NULL`), and the journal of runs is
//! forgotten by run.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChangeEntry {
    Table,
    At,
    Operation,
}

const LEAVES: &str = "ix_change_entry_leave_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(LEAVES)
                .table(ChangeEntry::Table)
                .col(ChangeEntry::At)
                .and_where(Expr::col(ChangeEntry::Operation).eq("leave"))
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("ix_change_entry_at")
                .table(ChangeEntry::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("ix_change_entry_at")
                .table(ChangeEntry::Table)
                .col(ChangeEntry::At)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(LEAVES)
                .table(ChangeEntry::Table)
                .to_owned(),
        )
        .await
    }
}
