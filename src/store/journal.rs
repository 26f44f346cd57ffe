//! Reading the journal back: what a run changed, and everything that happened to a person.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use super::entities::{change_entry, person, person_key};
use crate::model::journal;

pub use change_entry::Model as Change;

pub async fn of_run<C: ConnectionTrait>(db: &C, run: i64) -> Result<Vec<Change>, DbErr> {
    let rows = change_entry::Entity::find()
        .filter(change_entry::Column::RunId.eq(run))
        .order_by_asc(change_entry::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(in_words).collect())
}

pub async fn of_person<C: ConnectionTrait>(db: &C, id: i64) -> Result<Vec<Change>, DbErr> {
    let rows = change_entry::Entity::find()
        .filter(change_entry::Column::PersonId.eq(id))
        .order_by_asc(change_entry::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(in_words).collect())
}

/// An entry with its rule in words: the journal stores a standard rule as the empty text.
fn in_words(mut c: Change) -> Change {
    c.rule = journal::read_rule(&c.entity, &c.operation, std::mem::take(&mut c.rule));
    c
}

/// Persons `text` names: the id `export` prints, or any of their keys (ECK-iD, LAS key,
/// broker id, portal code). A LAS key may name people at several schools.
pub async fn find_person<C: ConnectionTrait>(
    db: &C,
    text: &str,
) -> Result<Vec<person::Model>, DbErr> {
    let mut ids: Vec<i64> = person_key::Entity::find()
        .filter(person_key::Column::Digest.eq(migration::key_digest(text)))
        .filter(person_key::Column::Value.eq(text))
        .all(db)
        .await?
        .into_iter()
        .map(|k| k.person_id)
        .collect();
    if let Ok(id) = text.parse::<i64>() {
        ids.push(id);
    }
    ids.sort_unstable();
    ids.dedup();
    person::Entity::find()
        .filter(person::Column::Id.is_in(ids))
        .order_by_asc(person::Column::Id)
        .all(db)
        .await
}
