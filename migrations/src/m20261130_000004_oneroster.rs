//! What the apps' API (OneRoster) needs of the store:
//!
//! - `sourced_id` on schools, groups and persons: an identifier apps may keep, stable for the
//!   life of the record (a restored leaver keeps it), random, so it reveals nothing (not the
//!   ECK-iD, not the LAS key, not how many records came before). Existing rows get one here.
//! - `access_grant.changed_at`: when a grant last changed state, so a delta of enrollments
//!   (`dateLastModified>...`) finds grants that changed.
//! - Indexes for deltas: what changed after a moment, in persons, groups, grants and the
//!   journal (removed enrollments are read from it), and memberships by when they began.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Membership {
    Table,
    Since,
}

#[derive(DeriveIden)]
enum School {
    Table,
    SourcedId,
}

#[derive(DeriveIden)]
enum RosterGroup {
    Table,
    SourcedId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Person {
    Table,
    SourcedId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AccessGrant {
    Table,
    ChangedAt,
}

#[derive(DeriveIden)]
enum ChangeEntry {
    Table,
    At,
}

/// 32 random hex digits per row, the same shape rostersync gives new rows.
fn random_hex(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "md5(random()::text || clock_timestamp()::text || random()::text)",
        _ => "lower(hex(randomblob(16)))",
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = db.get_database_backend();
        for (table, column, index) in [
            (
                School::Table.into_iden(),
                School::SourcedId.into_iden(),
                "ux_school_sourced_id",
            ),
            (
                RosterGroup::Table.into_iden(),
                RosterGroup::SourcedId.into_iden(),
                "ux_roster_group_sourced_id",
            ),
            (
                Person::Table.into_iden(),
                Person::SourcedId.into_iden(),
                "ux_person_sourced_id",
            ),
        ] {
            m.alter_table(
                Table::alter()
                    .table(table.clone())
                    .add_column(string_null(column.clone()))
                    .to_owned(),
            )
            .await?;
            db.execute_unprepared(&format!(
                "UPDATE {} SET {} = {}",
                table,
                column,
                random_hex(backend)
            ))
            .await?;
            m.create_index(
                Index::create()
                    .name(index)
                    .table(table)
                    .col(column)
                    .unique()
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(AccessGrant::Table)
                .add_column(timestamp_with_time_zone_null(AccessGrant::ChangedAt))
                .to_owned(),
        )
        .await?;
        db.execute_unprepared("UPDATE access_grant SET changed_at = since")
            .await?;
        for (name, table, column) in [
            (
                "ix_person_updated_at",
                Person::Table.into_iden(),
                Person::UpdatedAt.into_iden(),
            ),
            (
                "ix_roster_group_updated_at",
                RosterGroup::Table.into_iden(),
                RosterGroup::UpdatedAt.into_iden(),
            ),
            (
                "ix_access_grant_changed_at",
                AccessGrant::Table.into_iden(),
                AccessGrant::ChangedAt.into_iden(),
            ),
            (
                "ix_change_entry_at",
                ChangeEntry::Table.into_iden(),
                ChangeEntry::At.into_iden(),
            ),
            (
                "ix_membership_since",
                Membership::Table.into_iden(),
                Membership::Since.into_iden(),
            ),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(table)
                    .col(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("ix_membership_since", Membership::Table.into_iden()),
            ("ix_change_entry_at", ChangeEntry::Table.into_iden()),
            ("ix_access_grant_changed_at", AccessGrant::Table.into_iden()),
            ("ix_roster_group_updated_at", RosterGroup::Table.into_iden()),
            ("ix_person_updated_at", Person::Table.into_iden()),
            ("ux_person_sourced_id", Person::Table.into_iden()),
            ("ux_roster_group_sourced_id", RosterGroup::Table.into_iden()),
            ("ux_school_sourced_id", School::Table.into_iden()),
        ] {
            m.drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        m.alter_table(
            Table::alter()
                .table(AccessGrant::Table)
                .drop_column(AccessGrant::ChangedAt)
                .to_owned(),
        )
        .await?;
        for (table, column) in [
            (School::Table.into_iden(), School::SourcedId.into_iden()),
            (
                RosterGroup::Table.into_iden(),
                RosterGroup::SourcedId.into_iden(),
            ),
            (Person::Table.into_iden(), Person::SourcedId.into_iden()),
        ] {
            m.alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
