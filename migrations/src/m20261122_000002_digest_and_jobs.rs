//! `school.roster_digest`: a digest of what the sources said at the last run that was applied
//! in full. When the sources say exactly the same again, the run can skip loading and diffing
//! the school's roster: nothing can differ.
//!
//! `ux_sync_job_active`: at most one pending or running job per school, so two instances can
//! never sync one school at once and a second resync request joins the first.

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
        .await?;
        // A partial unique index: the same statement on SQLite and PostgreSQL.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_sync_job_active ON sync_job (school_id) \
                 WHERE state IN ('pending', 'running')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX ux_sync_job_active")
            .await?;
        m.alter_table(
            Table::alter()
                .table(School::Table)
                .drop_column(School::RosterDigest)
                .to_owned(),
        )
        .await
    }
}
