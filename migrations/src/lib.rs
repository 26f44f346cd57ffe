//! rostersync's store schema as sea-orm migrations.
//! Written with the sea-query DSL (never entities) so SQLite and PostgreSQL get the same schema.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_digest_and_jobs;
mod m20261130_000003_school_freeze;
mod m20261130_000004_oneroster;
mod m20261201_000005_prepared_year;
mod m20261201_000006_prepared_class;
mod m20261202_000007_person_key_slim;
mod m20261202_000008_journal_at_partial;
mod m20261202_000009_person_key_digest;
mod m20261202_000010_purge_after_partial;
mod m20261203_000011_roster_version;
mod m20261204_000012_integer_moments;
mod m20261204_000013_person_key_source;
mod m20261205_000014_compact_creates;
mod m20261206_000015_keys_in_person;

/// The digest `person_key` is unique on (migration 9): the first 8 bytes of the value's
/// SHA-256 as a signed integer. Stored, so it must never change; rostersync computes it with
/// this function wherever it writes or looks up a key.
pub fn key_digest(value: &str) -> i64 {
    let d = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(first)
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_digest_and_jobs::Migration),
            Box::new(m20261130_000003_school_freeze::Migration),
            Box::new(m20261130_000004_oneroster::Migration),
            Box::new(m20261201_000005_prepared_year::Migration),
            Box::new(m20261201_000006_prepared_class::Migration),
            Box::new(m20261202_000007_person_key_slim::Migration),
            Box::new(m20261202_000008_journal_at_partial::Migration),
            Box::new(m20261202_000009_person_key_digest::Migration),
            Box::new(m20261202_000010_purge_after_partial::Migration),
            Box::new(m20261203_000011_roster_version::Migration),
            Box::new(m20261204_000012_integer_moments::Migration),
            Box::new(m20261204_000013_person_key_source::Migration),
            Box::new(m20261205_000014_compact_creates::Migration),
            Box::new(m20261206_000015_keys_in_person::Migration),
        ]
    }
}
