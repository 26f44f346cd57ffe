//! A person a run created keeps that in its own row (`person.created_run`,
//! `person.created_source`) instead of a journal row of its own. An initial load writes one
//! create per pupil; each was a `change_entry` row of about 95 bytes plus two index entries,
//! 2.7 million of them at 8,000 schools: the largest part of the journal (issue 17). The
//! journal's readers give such a create back as an entry like any other.
//!
//! Up moves the standard creates of runs already in the journal; down writes them back as
//! journal rows (after the rows there, so `changes --run N` lists them last) and drops the
//! columns. A create's label (`las:1234`) is not kept: it is read from the person's keys.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Person {
    Table,
    CreatedRun,
    CreatedSource,
}

/// Which journal rows are the standard creates of a run: a person's, with the rule every run
/// gives a create (stored as the empty text since c3b6b0a, in words before).
const STANDARD_CREATE: &str = "ce.operation = 'create' AND ce.entity IN ('pupil', 'staff') \
     AND ce.run_id IS NOT NULL AND ce.person_id IS NOT NULL \
     AND ce.rule IN ('', 'new identity in the source')";

/// The label of a create, from the person's keys: the first by match priority, as
/// `PersonKeys::label` words it.
fn label() -> String {
    let key = |kind: &str| {
        format!(
            "(SELECT k.value FROM person_key k \
             WHERE k.person_id = p.id AND k.kind = '{kind}' LIMIT 1)"
        )
    };
    format!(
        "COALESCE('las:' || {}, 'broker:' || {}, 'portal:' || {}, \
         CASE WHEN {} IS NOT NULL THEN 'eckid' END, 'no key')",
        key("las"),
        key("broker"),
        key("portal"),
        key("eckid")
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// All or nothing on SQLite too: a store cut off between moving and deleting would hold
    /// a create twice.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ColumnDef::new(Person::CreatedRun)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Person::CreatedSource)
                .string()
                .null()
                .to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Person::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        let db = m.get_connection();
        db.execute_unprepared(&format!(
            "UPDATE person SET created_run = ce.run_id, created_source = ce.source \
             FROM change_entry ce WHERE ce.person_id = person.id AND {STANDARD_CREATE}"
        ))
        .await?;
        db.execute_unprepared(&format!(
            "DELETE FROM change_entry WHERE id IN (SELECT ce.id FROM change_entry ce \
             JOIN person p ON p.id = ce.person_id AND p.created_run = ce.run_id \
             WHERE {STANDARD_CREATE})"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO change_entry (run_id, school_id, entity, entity_id, person_id, \
                 operation, new_value, source, rule, at) \
                 SELECT p.created_run, p.school_id, p.kind, p.id, p.id, 'create', {}, \
                 COALESCE(p.created_source, 'las'), '', p.created_at \
                 FROM person p WHERE p.created_run IS NOT NULL ORDER BY p.id",
                label()
            ))
            .await?;
        for column in [Person::CreatedRun, Person::CreatedSource] {
            m.alter_table(
                Table::alter()
                    .table(Person::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
