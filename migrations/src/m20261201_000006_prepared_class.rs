//! `prepared_class`: next year's classes of a prepared school, one row each, so the OneRoster
//! API can page them in next year's session like live classes (the prepared answer itself is
//! one JSON document per school, which a query cannot page).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PreparedClass {
    Table,
    Id,
    SchoolId,
    SourcedId,
    Key,
    Name,
    Kind,
    YearGroup,
    UpdatedAt,
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
                .table(PreparedClass::Table)
                .if_not_exists()
                .col(big_pk_auto(PreparedClass::Id))
                .col(string(PreparedClass::SchoolId))
                // The live group's sourcedId when it goes on, else the one the switch gives it.
                .col(string(PreparedClass::SourcedId))
                .col(string(PreparedClass::Key))
                .col(string(PreparedClass::Name))
                .col(string(PreparedClass::Kind))
                .col(string_null(PreparedClass::YearGroup))
                .col(timestamp_with_time_zone(PreparedClass::UpdatedAt))
                // Removing a school removes what it had prepared.
                .foreign_key(
                    ForeignKey::create()
                        .from(PreparedClass::Table, PreparedClass::SchoolId)
                        .to(School::Table, School::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("prepared_class_sourced_id")
                .table(PreparedClass::Table)
                .col(PreparedClass::SourcedId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("prepared_class_school")
                .table(PreparedClass::Table)
                .col(PreparedClass::SchoolId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(PreparedClass::Table).to_owned())
            .await
    }
}
