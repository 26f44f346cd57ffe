//! Reading the journal back: what a run changed, and everything that happened to a person.

use connector_api::PersonKeys;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::Stamp;
use super::entities::{change_entry, person, sync_run};
use crate::model::journal;

/// One entry of the journal, as `changes` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The journal row's id; none for a run's create, which the person's row keeps
    /// ([`journal::kept_in_person`]).
    pub id: Option<i64>,
    pub run_id: Option<i64>,
    pub school_id: String,
    pub entity: String,
    pub entity_id: Option<i64>,
    pub person_id: Option<i64>,
    pub operation: String,
    pub field: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub source: String,
    /// In words: the journal stores a standard rule as the empty text.
    pub rule: String,
    pub at: Stamp,
}

impl From<change_entry::Model> for Change {
    fn from(c: change_entry::Model) -> Change {
        Change {
            id: Some(c.id),
            rule: journal::read_rule(&c.entity, &c.operation, c.rule),
            run_id: c.run_id,
            school_id: c.school_id,
            entity: c.entity,
            entity_id: c.entity_id,
            person_id: c.person_id,
            operation: c.operation,
            field: c.field,
            old_value: c.old_value,
            new_value: c.new_value,
            source: c.source,
            at: c.at,
        }
    }
}

/// What a person's row keeps of the run that created it.
#[derive(Debug, sea_orm::FromQueryResult)]
struct Created {
    id: i64,
    school_id: String,
    kind: String,
    created_run: i64,
    created_source: Option<String>,
    created_at: Stamp,
    /// What the create's label is read from.
    eckid: Option<String>,
    las_key: Option<String>,
    broker_id: Option<String>,
    portal_code: Option<String>,
}

/// Everything run `run` changed, in the order it was written: its groups first, then the
/// persons it created, then the rest (as `sync::journal::entries` orders them).
pub async fn of_run<C: ConnectionTrait>(db: &C, run: i64) -> Result<Vec<Change>, DbErr> {
    let mut out: Vec<Change> = change_entry::Entity::find()
        .filter(change_entry::Column::RunId.eq(run))
        .order_by_asc(change_entry::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Change::from)
        .collect();
    // Through the run's school: `created_run` has no index of its own, and a school's
    // persons are a few hundred rows of `ix_person_school_kind`.
    let Some(school) = run_school(db, run).await? else {
        return Ok(out);
    };
    let made = created()
        .filter(person::Column::SchoolId.eq(school))
        .filter(person::Column::CreatedRun.eq(run))
        .order_by_asc(person::Column::Id)
        .into_model::<Created>()
        .all(db)
        .await?;
    let made = creates(made);
    let at = out
        .iter()
        .position(|c| c.entity != "group")
        .unwrap_or(out.len());
    out.splice(at..at, made);
    Ok(out)
}

/// Everything that happened to person `id`, oldest first.
pub async fn of_person<C: ConnectionTrait>(db: &C, id: i64) -> Result<Vec<Change>, DbErr> {
    let rows = change_entry::Entity::find()
        .filter(change_entry::Column::PersonId.eq(id))
        .order_by_asc(change_entry::Column::Id)
        .all(db)
        .await?;
    let made = created()
        .filter(person::Column::Id.eq(id))
        .into_model::<Created>()
        .one(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len() + 1);
    if let Some(made) = made {
        // Unless the run's history is gone (`sync.journal_days`), as its rows would be.
        let school = run_school(db, made.created_run).await?;
        if school.as_deref() == Some(made.school_id.as_str()) {
            out.extend(creates(vec![made]));
        }
    }
    out.extend(rows.into_iter().map(Change::from));
    Ok(out)
}

/// Persons a run created, with what their rows keep of it.
fn created() -> sea_orm::Select<person::Entity> {
    person::Entity::find()
        .select_only()
        .columns([
            person::Column::Id,
            person::Column::SchoolId,
            person::Column::Kind,
            person::Column::CreatedRun,
            person::Column::CreatedSource,
            person::Column::CreatedAt,
            person::Column::Eckid,
            person::Column::LasKey,
            person::Column::BrokerId,
            person::Column::PortalCode,
        ])
        .filter(person::Column::CreatedRun.is_not_null())
}

async fn run_school<C: ConnectionTrait>(db: &C, run: i64) -> Result<Option<String>, DbErr> {
    sync_run::Entity::find_by_id(run)
        .select_only()
        .column(sync_run::Column::SchoolId)
        .into_tuple()
        .one(db)
        .await
}

/// The creates `made` as journal entries, each labelled by its person's keys as a create row
/// was (`las:1234`, the first key by match priority).
fn creates(made: Vec<Created>) -> Vec<Change> {
    made.into_iter()
        .map(|p| {
            let label = PersonKeys {
                eckid: p.eckid,
                las_key: p.las_key,
                broker_id: p.broker_id,
                portal_code: p.portal_code,
            }
            .label();
            // Read as a row that stored the standard rule as the empty text would be.
            let rule = journal::read_rule(&p.kind, "create", String::new());
            Change {
                id: None,
                run_id: Some(p.created_run),
                school_id: p.school_id,
                entity_id: Some(p.id),
                person_id: Some(p.id),
                operation: "create".to_owned(),
                field: None,
                old_value: None,
                new_value: Some(label),
                // Set with `created_run`; only a store edited by hand lacks it.
                source: p.created_source.unwrap_or_else(|| "las".to_owned()),
                rule,
                at: p.created_at,
                entity: p.kind,
            }
        })
        .collect()
}

/// Persons `text` names: the id `export` prints, or any of their keys (ECK-iD, LAS key,
/// broker id, portal code). A LAS key may name people at several schools.
pub async fn find_person<C: ConnectionTrait>(
    db: &C,
    text: &str,
) -> Result<Vec<person::Model>, DbErr> {
    // Every key column in turn: a full read of `person`, fine for one person's history.
    let mut named = sea_orm::Condition::any().add(super::keys::anywhere(text));
    if let Ok(id) = text.parse::<i64>() {
        named = named.add(person::Column::Id.eq(id));
    }
    person::Entity::find()
        .filter(named)
        .order_by_asc(person::Column::Id)
        .all(db)
        .await
}
