//! The initial data model: schools and their source links, the roster (groups, persons with
//! several keys, memberships, roles), field ownership, grants, runs, the journal and the job table.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Free-form key/value facts about the store itself (e.g. the master-key check value).
#[derive(DeriveIden)]
enum StoreMeta {
    Table,
    Key,
    Value,
}

// Variants are column names; `school.school_year` is the clearest name for that column.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum School {
    Table,
    Id,
    Brin,
    Dependance,
    Name,
    Origin,
    Las,
    BrokerId,
    ZermeloPortal,
    State,
    StateReason,
    StateSince,
    SchoolYear,
    Fence,
    CreatedAt,
    UpdatedAt,
}

/// Per-school credentials (LAS key, portal token), encrypted with the master key.
#[derive(DeriveIden)]
enum SchoolSecret {
    Table,
    SchoolId,
    Kind,
    KeyId,
    Nonce,
    Ciphertext,
    UpdatedAt,
}

/// What rostersync remembers per school and source between runs (conditional-get markers,
/// counts of the last good snapshot for the health check, parking after a rejected key).
#[derive(DeriveIden)]
enum SourceState {
    Table,
    SchoolId,
    Source,
    LastSuccessAt,
    LastReceivedAt,
    Marker,
    PupilCount,
    StaffCount,
    GroupCount,
    SchoolYear,
    ParkedReason,
    ParkedAt,
    ParkedFingerprint,
}

#[derive(DeriveIden)]
enum RosterGroup {
    Table,
    Id,
    SchoolId,
    Key,
    Name,
    Kind,
    YearGroup,
    Department,
    Owners,
    ContentHash,
    Origin,
    CreatedAt,
    UpdatedAt,
    RemovedAt,
    PurgeAfter,
}

#[derive(DeriveIden)]
enum Person {
    Table,
    Id,
    SchoolId,
    Kind,
    FamilyName,
    Prefix,
    GivenName,
    Email,
    YearGroup,
    EndDate,
    Owners,
    ContentHash,
    Origin,
    CreatedAt,
    UpdatedAt,
    RemovedAt,
    PurgeAfter,
}

/// Every identity a person is known by: ECK-iD, LAS key, broker id, portal user code.
#[derive(DeriveIden)]
enum PersonKey {
    Table,
    SchoolId,
    Kind,
    Value,
    PersonId,
    Source,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Membership {
    Table,
    PersonId,
    GroupId,
    Role,
    Source,
    Since,
}

/// School-wide or department-scoped roles (IB, IBRTer, mentor, team leader, ...).
#[derive(DeriveIden)]
enum PersonRole {
    Table,
    PersonId,
    Role,
    Source,
    Scope,
    Since,
}

#[derive(DeriveIden)]
enum AccessGrant {
    Table,
    Id,
    SchoolId,
    PersonId,
    Level,
    GroupId,
    Origin,
    Rule,
    Source,
    Fact,
    State,
    Since,
    PendingSince,
    RevokeAfter,
    CreatedBy,
    Note,
}

#[derive(DeriveIden)]
enum SyncRun {
    Table,
    Id,
    SchoolId,
    Trigger,
    Instance,
    JobId,
    DryRun,
    StartedAt,
    FinishedAt,
    Outcome,
    ErrorClass,
    Message,
    Counts,
}

/// The journal: one row per changed field, link, conflict or hold.
#[derive(DeriveIden)]
enum ChangeEntry {
    Table,
    Id,
    RunId,
    SchoolId,
    Entity,
    EntityId,
    PersonId,
    Operation,
    Field,
    OldValue,
    NewValue,
    Source,
    Rule,
    At,
}

#[derive(DeriveIden)]
enum HeldChange {
    Table,
    Id,
    RunId,
    SchoolId,
    Kind,
    Operation,
    EntityId,
    Detail,
    State,
    DecidedAt,
    DecidedBy,
}

#[derive(DeriveIden)]
enum SyncJob {
    Table,
    Id,
    SchoolId,
    Trigger,
    State,
    DueAt,
    Attempts,
    LeaseOwner,
    LeaseExpiresAt,
    HeartbeatAt,
    Fence,
    RunId,
    RequestedBy,
    LastError,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum DaemonInstance {
    Table,
    Id,
    Hostname,
    Pid,
    StartedAt,
    HeartbeatAt,
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(StoreMeta::Table)
                .col(string(StoreMeta::Key).primary_key())
                .col(text(StoreMeta::Value))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(School::Table)
                .col(string_len(School::Id, 6).primary_key())
                .col(string_len(School::Brin, 4))
                .col(string_len(School::Dependance, 2))
                .col(string_null(School::Name))
                .col(string(School::Origin))
                .col(string_null(School::Las))
                .col(big_integer_null(School::BrokerId))
                .col(string_null(School::ZermeloPortal))
                .col(string(School::State).default("active"))
                .col(text_null(School::StateReason))
                .col(timestamp_with_time_zone_null(School::StateSince))
                .col(string_null(School::SchoolYear))
                .col(big_integer(School::Fence).default(0))
                .col(timestamp_with_time_zone(School::CreatedAt))
                .col(timestamp_with_time_zone(School::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SchoolSecret::Table)
                .col(string_len(SchoolSecret::SchoolId, 6))
                .col(string(SchoolSecret::Kind))
                .col(string(SchoolSecret::KeyId))
                .col(blob(SchoolSecret::Nonce))
                .col(blob(SchoolSecret::Ciphertext))
                .col(timestamp_with_time_zone(SchoolSecret::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(SchoolSecret::SchoolId)
                        .col(SchoolSecret::Kind),
                )
                .foreign_key(&mut fk(
                    "fk_school_secret_school",
                    (SchoolSecret::Table, SchoolSecret::SchoolId),
                    (School::Table, School::Id),
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SourceState::Table)
                .col(string_len(SourceState::SchoolId, 6))
                .col(string(SourceState::Source))
                .col(timestamp_with_time_zone_null(SourceState::LastSuccessAt))
                .col(timestamp_with_time_zone_null(SourceState::LastReceivedAt))
                .col(text_null(SourceState::Marker))
                .col(integer_null(SourceState::PupilCount))
                .col(integer_null(SourceState::StaffCount))
                .col(integer_null(SourceState::GroupCount))
                .col(string_null(SourceState::SchoolYear))
                .col(text_null(SourceState::ParkedReason))
                .col(timestamp_with_time_zone_null(SourceState::ParkedAt))
                .col(string_null(SourceState::ParkedFingerprint))
                .primary_key(
                    Index::create()
                        .col(SourceState::SchoolId)
                        .col(SourceState::Source),
                )
                .foreign_key(&mut fk(
                    "fk_source_state_school",
                    (SourceState::Table, SourceState::SchoolId),
                    (School::Table, School::Id),
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RosterGroup::Table)
                .col(big_pk_auto(RosterGroup::Id))
                .col(string_len(RosterGroup::SchoolId, 6))
                .col(string(RosterGroup::Key))
                .col(string(RosterGroup::Name))
                .col(string(RosterGroup::Kind))
                .col(string_null(RosterGroup::YearGroup))
                .col(string_null(RosterGroup::Department))
                .col(text(RosterGroup::Owners).default("{}"))
                .col(string_null(RosterGroup::ContentHash))
                .col(string(RosterGroup::Origin))
                .col(timestamp_with_time_zone(RosterGroup::CreatedAt))
                .col(timestamp_with_time_zone(RosterGroup::UpdatedAt))
                .col(timestamp_with_time_zone_null(RosterGroup::RemovedAt))
                .col(timestamp_with_time_zone_null(RosterGroup::PurgeAfter))
                .foreign_key(&mut fk(
                    "fk_roster_group_school",
                    (RosterGroup::Table, RosterGroup::SchoolId),
                    (School::Table, School::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_roster_group_school_key")
                .table(RosterGroup::Table)
                .col(RosterGroup::SchoolId)
                .col(RosterGroup::Key)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Person::Table)
                .col(big_pk_auto(Person::Id))
                .col(string_len(Person::SchoolId, 6))
                .col(string(Person::Kind))
                .col(string_null(Person::FamilyName))
                .col(string_null(Person::Prefix))
                .col(string_null(Person::GivenName))
                .col(string_null(Person::Email))
                .col(string_null(Person::YearGroup))
                .col(date_null(Person::EndDate))
                .col(text(Person::Owners).default("{}"))
                .col(string_null(Person::ContentHash))
                .col(string(Person::Origin))
                .col(timestamp_with_time_zone(Person::CreatedAt))
                .col(timestamp_with_time_zone(Person::UpdatedAt))
                .col(timestamp_with_time_zone_null(Person::RemovedAt))
                .col(timestamp_with_time_zone_null(Person::PurgeAfter))
                .foreign_key(&mut fk(
                    "fk_person_school",
                    (Person::Table, Person::SchoolId),
                    (School::Table, School::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_person_school_kind")
                .table(Person::Table)
                .col(Person::SchoolId)
                .col(Person::Kind)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_person_purge_after")
                .table(Person::Table)
                .col(Person::PurgeAfter)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(PersonKey::Table)
                .col(string_len(PersonKey::SchoolId, 6))
                .col(string(PersonKey::Kind))
                .col(string_len(PersonKey::Value, 256))
                .col(big_integer(PersonKey::PersonId))
                .col(string(PersonKey::Source))
                .col(timestamp_with_time_zone(PersonKey::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(PersonKey::SchoolId)
                        .col(PersonKey::Kind)
                        .col(PersonKey::Value),
                )
                .foreign_key(&mut fk(
                    "fk_person_key_person",
                    (PersonKey::Table, PersonKey::PersonId),
                    (Person::Table, Person::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_person_key_person")
                .table(PersonKey::Table)
                .col(PersonKey::PersonId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Membership::Table)
                .col(big_integer(Membership::PersonId))
                .col(big_integer(Membership::GroupId))
                .col(string(Membership::Role))
                .col(string(Membership::Source))
                .col(timestamp_with_time_zone(Membership::Since))
                .primary_key(
                    Index::create()
                        .col(Membership::PersonId)
                        .col(Membership::GroupId)
                        .col(Membership::Role),
                )
                .foreign_key(&mut fk(
                    "fk_membership_person",
                    (Membership::Table, Membership::PersonId),
                    (Person::Table, Person::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_membership_group",
                    (Membership::Table, Membership::GroupId),
                    (RosterGroup::Table, RosterGroup::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_membership_group")
                .table(Membership::Table)
                .col(Membership::GroupId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(PersonRole::Table)
                .col(big_integer(PersonRole::PersonId))
                .col(string(PersonRole::Role))
                .col(string(PersonRole::Source))
                .col(string(PersonRole::Scope).default(""))
                .col(timestamp_with_time_zone(PersonRole::Since))
                .primary_key(
                    Index::create()
                        .col(PersonRole::PersonId)
                        .col(PersonRole::Role)
                        .col(PersonRole::Source)
                        .col(PersonRole::Scope),
                )
                .foreign_key(&mut fk(
                    "fk_person_role_person",
                    (PersonRole::Table, PersonRole::PersonId),
                    (Person::Table, Person::Id),
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AccessGrant::Table)
                .col(big_pk_auto(AccessGrant::Id))
                .col(string_len(AccessGrant::SchoolId, 6))
                .col(big_integer(AccessGrant::PersonId))
                .col(string(AccessGrant::Level))
                .col(big_integer_null(AccessGrant::GroupId))
                .col(string(AccessGrant::Origin))
                .col(string(AccessGrant::Rule))
                .col(string(AccessGrant::Source))
                .col(text(AccessGrant::Fact))
                .col(string(AccessGrant::State))
                .col(timestamp_with_time_zone(AccessGrant::Since))
                .col(timestamp_with_time_zone_null(AccessGrant::PendingSince))
                .col(timestamp_with_time_zone_null(AccessGrant::RevokeAfter))
                .col(string_null(AccessGrant::CreatedBy))
                .col(text_null(AccessGrant::Note))
                .foreign_key(&mut fk(
                    "fk_access_grant_school",
                    (AccessGrant::Table, AccessGrant::SchoolId),
                    (School::Table, School::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_access_grant_person",
                    (AccessGrant::Table, AccessGrant::PersonId),
                    (Person::Table, Person::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_access_grant_group",
                    (AccessGrant::Table, AccessGrant::GroupId),
                    (RosterGroup::Table, RosterGroup::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_access_grant_person")
                .table(AccessGrant::Table)
                .col(AccessGrant::PersonId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_access_grant_school_state")
                .table(AccessGrant::Table)
                .col(AccessGrant::SchoolId)
                .col(AccessGrant::State)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SyncRun::Table)
                .col(big_pk_auto(SyncRun::Id))
                .col(string_len(SyncRun::SchoolId, 6))
                .col(string(SyncRun::Trigger))
                .col(string_null(SyncRun::Instance))
                .col(big_integer_null(SyncRun::JobId))
                .col(boolean(SyncRun::DryRun).default(false))
                .col(timestamp_with_time_zone(SyncRun::StartedAt))
                .col(timestamp_with_time_zone_null(SyncRun::FinishedAt))
                .col(string_null(SyncRun::Outcome))
                .col(string_null(SyncRun::ErrorClass))
                .col(text_null(SyncRun::Message))
                .col(text(SyncRun::Counts).default("{}"))
                .foreign_key(&mut fk(
                    "fk_sync_run_school",
                    (SyncRun::Table, SyncRun::SchoolId),
                    (School::Table, School::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_sync_run_school_started")
                .table(SyncRun::Table)
                .col(SyncRun::SchoolId)
                .col(SyncRun::StartedAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ChangeEntry::Table)
                .col(big_pk_auto(ChangeEntry::Id))
                .col(big_integer_null(ChangeEntry::RunId))
                .col(string_len(ChangeEntry::SchoolId, 6))
                .col(string(ChangeEntry::Entity))
                .col(big_integer_null(ChangeEntry::EntityId))
                .col(big_integer_null(ChangeEntry::PersonId))
                .col(string(ChangeEntry::Operation))
                .col(string_null(ChangeEntry::Field))
                .col(text_null(ChangeEntry::OldValue))
                .col(text_null(ChangeEntry::NewValue))
                .col(string(ChangeEntry::Source))
                .col(string(ChangeEntry::Rule))
                .col(timestamp_with_time_zone(ChangeEntry::At))
                .foreign_key(&mut fk(
                    "fk_change_entry_school",
                    (ChangeEntry::Table, ChangeEntry::SchoolId),
                    (School::Table, School::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_change_entry_run",
                    (ChangeEntry::Table, ChangeEntry::RunId),
                    (SyncRun::Table, SyncRun::Id),
                ))
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("ix_change_entry_run", ChangeEntry::RunId),
            ("ix_change_entry_person", ChangeEntry::PersonId),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(ChangeEntry::Table)
                    .col(col)
                    .to_owned(),
            )
            .await?;
        }

        m.create_table(
            Table::create()
                .table(HeldChange::Table)
                .col(big_pk_auto(HeldChange::Id))
                .col(big_integer(HeldChange::RunId))
                .col(string_len(HeldChange::SchoolId, 6))
                .col(string(HeldChange::Kind))
                .col(string(HeldChange::Operation))
                .col(big_integer_null(HeldChange::EntityId))
                .col(text(HeldChange::Detail))
                .col(string(HeldChange::State))
                .col(timestamp_with_time_zone_null(HeldChange::DecidedAt))
                .col(string_null(HeldChange::DecidedBy))
                .foreign_key(&mut fk(
                    "fk_held_change_run",
                    (HeldChange::Table, HeldChange::RunId),
                    (SyncRun::Table, SyncRun::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_held_change_school",
                    (HeldChange::Table, HeldChange::SchoolId),
                    (School::Table, School::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_held_change_school_state")
                .table(HeldChange::Table)
                .col(HeldChange::SchoolId)
                .col(HeldChange::State)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SyncJob::Table)
                .col(big_pk_auto(SyncJob::Id))
                .col(string_len(SyncJob::SchoolId, 6))
                .col(string(SyncJob::Trigger))
                .col(string(SyncJob::State))
                .col(timestamp_with_time_zone(SyncJob::DueAt))
                .col(integer(SyncJob::Attempts).default(0))
                .col(string_null(SyncJob::LeaseOwner))
                .col(timestamp_with_time_zone_null(SyncJob::LeaseExpiresAt))
                .col(timestamp_with_time_zone_null(SyncJob::HeartbeatAt))
                .col(big_integer_null(SyncJob::Fence))
                .col(big_integer_null(SyncJob::RunId))
                .col(string_null(SyncJob::RequestedBy))
                .col(text_null(SyncJob::LastError))
                .col(timestamp_with_time_zone(SyncJob::CreatedAt))
                .col(timestamp_with_time_zone_null(SyncJob::StartedAt))
                .col(timestamp_with_time_zone_null(SyncJob::FinishedAt))
                .foreign_key(&mut fk(
                    "fk_sync_job_school",
                    (SyncJob::Table, SyncJob::SchoolId),
                    (School::Table, School::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_sync_job_state_due")
                .table(SyncJob::Table)
                .col(SyncJob::State)
                .col(SyncJob::DueAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_sync_job_school_state")
                .table(SyncJob::Table)
                .col(SyncJob::SchoolId)
                .col(SyncJob::State)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(DaemonInstance::Table)
                .col(string(DaemonInstance::Id).primary_key())
                .col(string(DaemonInstance::Hostname))
                .col(integer(DaemonInstance::Pid))
                .col(timestamp_with_time_zone(DaemonInstance::StartedAt))
                .col(timestamp_with_time_zone(DaemonInstance::HeartbeatAt))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Reverse dependency order so foreign keys never dangle mid-way.
        let tables: [DynIden; 15] = [
            DaemonInstance::Table.into_iden(),
            SyncJob::Table.into_iden(),
            HeldChange::Table.into_iden(),
            ChangeEntry::Table.into_iden(),
            SyncRun::Table.into_iden(),
            AccessGrant::Table.into_iden(),
            PersonRole::Table.into_iden(),
            Membership::Table.into_iden(),
            PersonKey::Table.into_iden(),
            Person::Table.into_iden(),
            RosterGroup::Table.into_iden(),
            SourceState::Table.into_iden(),
            SchoolSecret::Table.into_iden(),
            School::Table.into_iden(),
            StoreMeta::Table.into_iden(),
        ];
        for table in tables {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
