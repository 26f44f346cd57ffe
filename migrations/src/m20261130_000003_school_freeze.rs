//! `school.frozen_by` / `frozen_at`: an operator holds a school's roster as it is
//! (`school freeze`), for instance after an undo while the school fixes its LAS.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum School {
    Table,
    FrozenBy,
    FrozenAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(School::Table)
                .add_column(string_null(School::FrozenBy))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(School::Table)
                .add_column(timestamp_with_time_zone_null(School::FrozenAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [School::FrozenAt, School::FrozenBy] {
            m.alter_table(
                Table::alter()
                    .table(School::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
