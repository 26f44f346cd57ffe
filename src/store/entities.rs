//! sea-orm entities for the tables the Rust code reads and writes row by row.
//! The schema itself is defined in `migrations/` with the sea-query DSL.

pub mod store_meta {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "store_meta")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod school {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "school")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub brin: String,
        pub dependance: String,
        pub name: Option<String>,
        /// `config` (a `[[school]]` block) or `store` (added with `school add`).
        pub origin: String,
        pub las: Option<String>,
        pub broker_id: Option<i64>,
        pub zermelo_portal: Option<String>,
        pub state: String,
        pub state_reason: Option<String>,
        pub state_since: Option<DateTimeUtc>,
        pub school_year: Option<String>,
        pub fence: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// What the sources said at the last run applied in full (see `sync::digest`).
        pub roster_digest: Option<String>,
        /// Who froze the school's roster (`school freeze`); runs keep it as it is.
        pub frozen_by: Option<String>,
        pub frozen_at: Option<DateTimeUtc>,
        /// The school's identifier for apps (OneRoster `sourcedId`): random, stable.
        pub sourced_id: Option<String>,
        /// Raised by every writer of the school's roster: a run that computed its plan before
        /// taking the write lock checks it did not move (see `sync::run::apply`).
        pub roster_version: i64,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod school_secret {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "school_secret")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub school_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        pub key_id: String,
        pub nonce: Vec<u8>,
        pub ciphertext: Vec<u8>,
        pub updated_at: DateTimeUtc,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod person {
    use sea_orm::entity::prelude::*;

    use crate::store::Stamp;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "person")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: String,
        pub kind: String,
        pub family_name: Option<String>,
        pub prefix: Option<String>,
        pub given_name: Option<String>,
        pub email: Option<String>,
        pub year_group: Option<String>,
        pub end_date: Option<Date>,
        pub owners: String,
        pub content_hash: Option<String>,
        pub origin: String,
        pub created_at: Stamp,
        pub updated_at: Stamp,
        pub removed_at: Option<Stamp>,
        pub purge_after: Option<Stamp>,
        /// The identifier for apps (OneRoster `sourcedId`): random, kept for the record's life.
        pub sourced_id: Option<String>,
        /// The run that created the person, and the source whose word did: the journal's
        /// create of a run, kept here instead of a row of its own (migration 14). None for a
        /// person created by hand, whose create is a journal row with its own rule.
        pub created_run: Option<i64>,
        pub created_source: Option<String>,
        /// The person's keys, one column a kind (`store::keys`), each unique within the
        /// school (migration 15). `eckid_digest` is `migration::key_digest(eckid)`: the
        /// ECK-iD's index holds the digest, not the 154 characters.
        pub eckid: Option<String>,
        pub eckid_digest: Option<i64>,
        pub las_key: Option<String>,
        pub broker_id: Option<String>,
        pub portal_code: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod roster_group {
    use sea_orm::entity::prelude::*;

    use crate::store::Stamp;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "roster_group")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: String,
        pub key: String,
        pub name: String,
        pub kind: String,
        pub year_group: Option<String>,
        pub department: Option<String>,
        pub owners: String,
        pub content_hash: Option<String>,
        pub origin: String,
        pub created_at: Stamp,
        pub updated_at: Stamp,
        pub removed_at: Option<Stamp>,
        pub purge_after: Option<Stamp>,
        /// The identifier for apps (OneRoster `sourcedId`): random, kept for the record's life.
        pub sourced_id: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod membership {
    use sea_orm::entity::prelude::*;

    use crate::store::Stamp;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "membership")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub person_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub role: String,
        pub source: String,
        pub since: Stamp,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod person_role {
    use sea_orm::entity::prelude::*;

    use crate::store::Stamp;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "person_role")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub person_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub role: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub source: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        pub since: Stamp,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sync_run {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sync_run")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: String,
        /// `schedule`, `manual`, `cli`, `demo`.
        pub trigger: String,
        pub instance: Option<String>,
        pub job_id: Option<i64>,
        pub dry_run: bool,
        pub started_at: DateTimeUtc,
        pub finished_at: Option<DateTimeUtc>,
        pub outcome: Option<String>,
        pub error_class: Option<String>,
        pub message: Option<String>,
        /// Counts per kind and operation, as JSON.
        pub counts: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod change_entry {
    use sea_orm::entity::prelude::*;

    use crate::store::Stamp;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "change_entry")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub run_id: Option<i64>,
        pub school_id: String,
        /// `pupil`, `staff`, `group`.
        pub entity: String,
        pub entity_id: Option<i64>,
        pub person_id: Option<i64>,
        pub operation: String,
        pub field: Option<String>,
        pub old_value: Option<String>,
        pub new_value: Option<String>,
        pub source: String,
        pub rule: String,
        pub at: Stamp,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod source_state {
    use sea_orm::entity::prelude::*;

    /// What the last good run of one school and source left for the next: markers for
    /// conditional fetches, counts for the health check, and parking.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "source_state")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub school_id: String,
        /// `las`, `broker`, `portal`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub source: String,
        pub last_success_at: Option<DateTimeUtc>,
        /// When the last complete answer was asked for (UWLR `laatstontvangengegevens`).
        pub last_received_at: Option<DateTimeUtc>,
        pub marker: Option<String>,
        pub pupil_count: Option<i32>,
        pub staff_count: Option<i32>,
        pub group_count: Option<i32>,
        pub school_year: Option<String>,
        pub parked_reason: Option<String>,
        pub parked_at: Option<DateTimeUtc>,
        /// A digest of the credential that was rejected: a new credential un-parks.
        pub parked_fingerprint: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod access_grant {
    use sea_orm::entity::prelude::*;

    use crate::store::Stamp;

    /// A right of a staff member: derived from a fact of a source by a rule, or made by hand.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "access_grant")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: String,
        pub person_id: i64,
        /// `own`, `related` (to `group_id`) or `school`.
        pub level: String,
        pub group_id: Option<i64>,
        /// `derived` or `manual`.
        pub origin: String,
        /// The rule that derived it (`teacher`, `intern-begeleider`, ...), or `manual`.
        pub rule: String,
        /// The source of the fact (`broker`, `las`, `portal`, `local`).
        pub source: String,
        /// The fact, in words: "Leerkracht of group G8A".
        pub fact: String,
        /// `active`, `pending` (the fact is gone; revoked after the grace period), `revoked`.
        pub state: String,
        pub since: Stamp,
        pub pending_since: Option<Stamp>,
        pub revoke_after: Option<Stamp>,
        pub created_by: Option<String>,
        pub note: Option<String>,
        /// When the grant last changed state (created, pending, restored, revoked).
        pub changed_at: Option<Stamp>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod held_change {
    use sea_orm::entity::prelude::*;

    /// A removal the brakes held, waiting for `approve`.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "held_change")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub run_id: i64,
        pub school_id: String,
        /// `pupils`, `staff`, `groups`, `memberships`.
        pub kind: String,
        pub operation: String,
        pub entity_id: Option<i64>,
        /// What exactly would change, as JSON (a membership's group key and role).
        pub detail: String,
        /// `held`, `approved`, `superseded`.
        pub state: String,
        pub decided_at: Option<DateTimeUtc>,
        pub decided_by: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sync_job {
    use sea_orm::entity::prelude::*;

    /// Work for the daemon: the scheduler and admins enqueue, workers claim with a lease.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sync_job")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: String,
        /// `schedule`, `manual`, `retry`.
        pub trigger: String,
        /// `pending`, `running`, `done`, `failed`.
        pub state: String,
        pub due_at: DateTimeUtc,
        pub attempts: i32,
        pub lease_owner: Option<String>,
        pub lease_expires_at: Option<DateTimeUtc>,
        pub heartbeat_at: Option<DateTimeUtc>,
        /// The school's fence when the lease was granted: an apply checks it is still current.
        pub fence: Option<i64>,
        pub run_id: Option<i64>,
        pub requested_by: Option<String>,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub started_at: Option<DateTimeUtc>,
        pub finished_at: Option<DateTimeUtc>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod daemon_instance {
    use sea_orm::entity::prelude::*;

    /// A running `rostersync run`, alive while its heartbeat is fresh.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "daemon_instance")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub hostname: String,
        pub pid: i32,
        pub started_at: DateTimeUtc,
        pub heartbeat_at: DateTimeUtc,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod prepared_year {
    use sea_orm::entity::prelude::*;

    /// Next school year as a school's LAS has it prepared (the LAS answer as JSON).
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "prepared_year")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub school_id: String,
        pub school_year: String,
        /// When the LAS first answered with this year.
        pub prepared_since: DateTimeUtc,
        /// Its latest answer.
        pub received_at: DateTimeUtc,
        #[sea_orm(column_type = "Text")]
        pub snapshot: String,
        /// What the switch would change, counted when the answer came (JSON).
        #[sea_orm(column_type = "Text", nullable)]
        pub changes: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod prepared_class {
    use sea_orm::entity::prelude::*;

    use crate::store::Stamp;

    /// A class of a school's prepared next year, as the OneRoster API lists it.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "prepared_class")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: String,
        pub sourced_id: String,
        pub key: String,
        pub name: String,
        pub kind: String,
        pub year_group: Option<String>,
        pub updated_at: Stamp,
    }

    impl ActiveModelBehavior for ActiveModel {}
}
