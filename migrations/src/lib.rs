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
mod m20261206_000016_owners_bare;

/// The digest `person_key` is unique on (migration 9): the first 8 bytes of the value's
/// SHA-256 as a signed integer. Stored, so it must never change; rostersync computes it with
/// this function wherever it writes or looks up a key.
pub fn key_digest(value: &str) -> i64 {
    let d = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(first)
}

/// What every ECK-iD begins with (the chain id's namespace and version): 26 of its 154
/// characters.
pub const ECKID_PREFIX: &str = "https://ketenid.nl/201703/";

/// An ECK-iD as `person.eckid` holds it (migration 15): `~` in place of [`ECKID_PREFIX`], 26
/// bytes less a pupil. A value that itself begins with `~` gets a second one in front, so
/// that every stored text reads back as exactly one value ([`full_eckid`]); a prefixed value
/// whose rest begins with `~` is kept whole for the same reason. Stored, so it must never
/// change; the API's SQL reads it back with [`FULL_ECKID_SQL`].
pub fn compact_eckid(value: &str) -> std::borrow::Cow<'_, str> {
    match value.strip_prefix(ECKID_PREFIX) {
        Some(rest) if !rest.starts_with('~') => format!("~{rest}").into(),
        _ if value.starts_with('~') => format!("~{value}").into(),
        _ => value.into(),
    }
}

/// The ECK-iD a stored text ([`compact_eckid`]) holds.
pub fn full_eckid(stored: &str) -> String {
    match stored.strip_prefix('~') {
        Some(rest) if rest.starts_with('~') => rest.to_owned(),
        Some(rest) => format!("{ECKID_PREFIX}{rest}"),
        None => stored.to_owned(),
    }
}

/// [`full_eckid`] in SQL, for a stored text in `{}`: the same on SQLite and PostgreSQL.
pub fn full_eckid_sql(column: &str) -> String {
    format!(
        "(CASE WHEN substr({column}, 1, 2) = '~~' THEN substr({column}, 2) \
         WHEN substr({column}, 1, 1) = '~' THEN '{ECKID_PREFIX}' || substr({column}, 2) \
         ELSE {column} END)"
    )
}

/// [`compact_eckid`] in SQL, for a full value in `{}` (migration 15's up).
pub fn compact_eckid_sql(column: &str) -> String {
    let rest = format!("substr({column}, {})", ECKID_PREFIX.len() + 1);
    format!(
        "(CASE WHEN substr({column}, 1, {len}) = '{ECKID_PREFIX}' \
         AND substr({rest}, 1, 1) <> '~' THEN '~' || {rest} \
         WHEN substr({column}, 1, 1) = '~' THEN '~' || {column} \
         ELSE {column} END)",
        len = ECKID_PREFIX.len()
    )
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
            Box::new(m20261206_000016_owners_bare::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that end the same as others once compacted, and the empty rest.
    const TRICKY: [&str; 7] = [
        "https://ketenid.nl/201703/0a1b2c",
        "https://ketenid.nl/201703/~0a1b",
        "https://ketenid.nl/201703/",
        "~0a1b",
        "~~0a1b",
        "0a1b",
        "",
    ];

    #[test]
    fn every_eckid_reads_back_as_itself_and_the_prefix_goes() {
        for value in TRICKY {
            assert_eq!(full_eckid(&compact_eckid(value)), value, "{value}");
        }
        assert_eq!(compact_eckid("https://ketenid.nl/201703/0a1b2c"), "~0a1b2c");
        assert_eq!(compact_eckid("0a1b"), "0a1b");
        // Two values never share a stored text.
        let mut stored: Vec<String> = TRICKY.iter().map(|v| compact_eckid(v).into()).collect();
        stored.sort();
        stored.dedup();
        assert_eq!(stored.len(), TRICKY.len());
    }
}
