//! `prepared_year`: next school year as a school's LAS has it prepared in the summer (one row
//! per school, the LAS answer as JSON), so `rollover status` can say what the switch will
//! change and the switch can tell expected removals from unexpected ones.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PreparedYear {
    Table,
    SchoolId,
    SchoolYear,
    PreparedSince,
    ReceivedAt,
    Snapshot,
    Changes,
}

#[derive(DeriveIden)]
enum School {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(PreparedYear::Table)
                .if_not_exists()
                .col(string(PreparedYear::SchoolId).primary_key())
                .col(string(PreparedYear::SchoolYear))
                .col(timestamp_with_time_zone(PreparedYear::PreparedSince))
                .col(timestamp_with_time_zone(PreparedYear::ReceivedAt))
                .col(text(PreparedYear::Snapshot))
                // What the switch would change, counted when the answer came (JSON).
                .col(text_null(PreparedYear::Changes))
                // Removing a school removes what it had prepared.
                .foreign_key(
                    ForeignKey::create()
                        .from(PreparedYear::Table, PreparedYear::SchoolId)
                        .to(School::Table, School::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(PreparedYear::Table).to_owned())
            .await
    }
}
