//! A person's keys (ECK-iD, LAS key, broker id, portal code) in its own row, one column a
//! kind, each unique within the school (migration 15: a table of their own cost three rows a
//! pupil). Everything that reads, finds or writes a key by its kind goes through here.

use std::borrow::Cow;

use connector_api::PersonKeys;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Select};

use super::entities::person;

/// The column that holds a key of `kind` (as `PersonKeys::KINDS` names the kinds).
pub(super) fn column(kind: &str) -> Option<person::Column> {
    match kind {
        "eckid" => Some(person::Column::Eckid),
        "las" => Some(person::Column::LasKey),
        "broker" => Some(person::Column::BrokerId),
        "portal" => Some(person::Column::PortalCode),
        _ => None,
    }
}

/// `row` holding `keys`: every kind's column, an absent key as NULL.
pub(super) fn set(row: &mut person::ActiveModel, keys: &PersonKeys) {
    row.eckid = Set(keys
        .eckid
        .as_deref()
        .map(|e| migration::compact_eckid(e).into_owned()));
    row.eckid_digest = Set(keys.eckid.as_deref().map(migration::key_digest));
    row.las_key = Set(keys.las_key.clone());
    row.broker_id = Set(keys.broker_id.clone());
    row.portal_code = Set(keys.portal_code.clone());
}

/// The condition "the key of `kind` is `value`", through the ECK-iD's digest (its index holds
/// the digest, not the value); None for a kind there is no column for.
fn is(kind: &str, value: &str) -> Option<Condition> {
    let col = column(kind)?;
    Some(if matches!(col, person::Column::Eckid) {
        Condition::all()
            .add(person::Column::EckidDigest.eq(migration::key_digest(value)))
            .add(col.eq(migration::compact_eckid(value).as_ref()))
    } else {
        Condition::all().add(col.eq(value))
    })
}

/// The person of `school` whose key of `kind` is `value`, tombstones included (a key stays
/// taken until the purge). Nobody, for a kind there is no column for.
pub(super) fn named(school: &str, kind: &str, value: &str) -> Select<person::Entity> {
    let found = person::Entity::find().filter(person::Column::SchoolId.eq(school));
    match is(kind, value) {
        Some(c) => found.filter(c),
        None => found.filter(Expr::val(false)),
    }
}

/// The condition "any of the person's keys is `value`" (a LAS key may name people at several
/// schools).
pub(super) fn anywhere(value: &str) -> Condition {
    PersonKeys::KINDS
        .into_iter()
        .filter_map(|kind| is(kind, value))
        .fold(Condition::any(), Condition::add)
}

/// Give person `id` the key `value` of `kind`. A kind there is no column for changes nothing.
pub(super) async fn write<C: ConnectionTrait>(
    db: &C,
    id: i64,
    kind: &str,
    value: &str,
) -> Result<(), DbErr> {
    update(db, id, kind, Some(value), None).await
}

/// Take the key `value` of `kind` from person `id`; one that has changed since stays.
pub(super) async fn remove<C: ConnectionTrait>(
    db: &C,
    id: i64,
    kind: &str,
    value: &str,
) -> Result<(), DbErr> {
    update(db, id, kind, None, is(kind, value)).await
}

/// Set the key of `kind` of person `id` to `value`, where `only` holds. The person's
/// `updated_at` moves with it: the API shows the keys (`userIds`), and a delta that asks what
/// changed since a moment finds a person by that column.
async fn update<C: ConnectionTrait>(
    db: &C,
    id: i64,
    kind: &str,
    value: Option<&str>,
    only: Option<Condition>,
) -> Result<(), DbErr> {
    let Some(col) = column(kind) else {
        return Ok(());
    };
    let mut update = person::Entity::update_many()
        .filter(person::Column::Id.eq(id))
        .col_expr(person::Column::UpdatedAt, Expr::value(super::Stamp::now()));
    if let Some(only) = only {
        update = update.filter(only);
    }
    if matches!(col, person::Column::Eckid) {
        update = update
            .col_expr(col, value_expr(value.map(migration::compact_eckid)))
            .col_expr(
                person::Column::EckidDigest,
                Expr::value(value.map(migration::key_digest)),
            );
    } else {
        update = update.col_expr(col, value_expr(value.map(Cow::Borrowed)));
    }
    update.exec(db).await?;
    Ok(())
}

fn value_expr(value: Option<Cow<'_, str>>) -> SimpleExpr {
    Expr::value(value.map(Cow::into_owned))
}

/// The ECK-iD a person's row holds, as the sources give it.
pub(super) fn read_eckid(stored: Option<String>) -> Option<String> {
    stored.map(|e| migration::full_eckid(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_column_and_an_unknown_one_none() {
        for kind in PersonKeys::KINDS {
            assert!(column(kind).is_some(), "{kind}");
        }
        assert!(column("group").is_none());
    }

    #[test]
    fn a_row_holds_the_keys_it_was_given_and_the_ecks_digest() {
        let keys = PersonKeys {
            eckid: Some("https://ketenid.nl/201703/ab".into()),
            las_key: Some("L1".into()),
            broker_id: None,
            portal_code: Some("jan".into()),
        };
        let mut row = person::ActiveModel {
            broker_id: Set(Some("stale".into())),
            ..Default::default()
        };
        set(&mut row, &keys);
        assert_eq!(
            row.eckid_digest,
            Set(Some(migration::key_digest("https://ketenid.nl/201703/ab")))
        );
        // Without its prefix, and read back whole.
        assert_eq!(row.eckid, Set(Some("~ab".into())));
        assert_eq!(
            read_eckid(Some("~ab".into())).as_deref(),
            Some("https://ketenid.nl/201703/ab")
        );
        // An absent key clears its column: the row says exactly what `keys` say.
        assert_eq!(row.broker_id, Set(None));
        assert_eq!(row.las_key, Set(Some("L1".into())));
    }
}
