//! Local records and edits: people and groups an admin adds by hand, and edits of fields no
//! source owns. A field a source owns is locked: the edit is refused, naming the field and
//! its owner, and nothing changes. A local record a source later supplies is adopted by the
//! sync (see `sync::diff`): it keeps its id and local-only data, and its source fields lock.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, Utc};
use connector_api::{GroupKind, PersonKeys};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, TransactionTrait};

use super::entities::{change_entry, membership, person, person_key, roster_group, school};
use super::{Store, StoreError};
use crate::model::{Field, Owner, PersonKind};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    NotFound(String),
    #[error(
        "{what}: {field} is owned by the {} and cannot be edited here; change it there (a \
         local edit would be overwritten by the next sync)",
        owner_name(*owner)
    )]
    Locked {
        what: String,
        field: String,
        owner: Owner,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn owner_name(o: Owner) -> &'static str {
    match o {
        Owner::Broker => "broker (Basispoort)",
        Owner::Las => "LAS",
        Owner::Portal => "portal (Zermelo)",
        Owner::Local => "local administrator",
    }
}

impl EditError {
    /// Refusals and bad input are the user's to fix (exit 1 for a lock, as the work was
    /// refused; 2 for input that could never work).
    pub fn is_usage(&self) -> bool {
        matches!(self, EditError::Invalid(_))
    }
}

/// The value of one field, checked: `None` clears it.
pub fn check_value(field: Field, value: &str) -> Result<Option<String>, EditError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().any(char::is_control) || v.chars().count() > 200 {
        return Err(EditError::Invalid(format!(
            "{}: a value has at most 200 characters and no control characters",
            field.as_str()
        )));
    }
    match field {
        Field::Email if !v.contains('@') => Err(EditError::Invalid(format!(
            "email: '{v}' is not an e-mail address"
        ))),
        Field::EndDate if NaiveDate::parse_from_str(v, "%Y-%m-%d").is_err() => Err(
            EditError::Invalid(format!("end_date: '{v}' is not a date (YYYY-MM-DD)")),
        ),
        Field::Email => Ok(Some(v.to_lowercase())),
        _ => Ok(Some(v.to_owned())),
    }
}

/// A person to add by hand.
pub struct NewPerson {
    pub school: String,
    pub kind: PersonKind,
    pub fields: BTreeMap<Field, String>,
    pub keys: PersonKeys,
    pub groups: Vec<String>,
}

/// One journal row of a local change.
struct Note<'a> {
    school: &'a str,
    entity: &'a str,
    id: i64,
    person: Option<i64>,
    operation: &'a str,
    field: Option<&'a str>,
    old: Option<String>,
    new: Option<String>,
}

impl Note<'_> {
    fn row(self, who: &str) -> change_entry::ActiveModel {
        change_entry::ActiveModel {
            run_id: Set(None),
            school_id: Set(self.school.to_owned()),
            entity: Set(self.entity.to_owned()),
            entity_id: Set(Some(self.id)),
            person_id: Set(self.person),
            operation: Set(self.operation.to_owned()),
            field: Set(self.field.map(str::to_owned)),
            old_value: Set(self.old),
            new_value: Set(self.new),
            source: Set(Owner::Local.as_str().to_owned()),
            rule: Set(format!("by hand, by {who}")),
            at: Set(Utc::now()),
            ..Default::default()
        }
    }
}

fn owners_of(json: &str) -> HashMap<String, String> {
    serde_json::from_str(json).unwrap_or_default()
}

fn owner_of(owners: &HashMap<String, String>, name: &str) -> Owner {
    owners
        .get(name)
        .and_then(|o| Owner::parse(o))
        .unwrap_or(Owner::Las)
}

async fn live_groups<C: sea_orm::ConnectionTrait>(
    db: &C,
    school: &str,
) -> Result<HashMap<String, roster_group::Model>, DbErr> {
    Ok(roster_group::Entity::find()
        .filter(roster_group::Column::SchoolId.eq(school))
        .filter(roster_group::Column::RemovedAt.is_null())
        .all(db)
        .await?
        .into_iter()
        .map(|g| (g.key.clone(), g))
        .collect())
}

/// Add a person by hand: every field local and editable. Its keys (ECK-iD, LAS key) are
/// how a source later finds and adopts it; they must not belong to anyone yet.
pub async fn add_person(store: &Store, p: &NewPerson, who: &str) -> Result<i64, EditError> {
    let db_err = |e| EditError::Store(store.db_error(e));
    let _turn = store.write_turn().await;
    let txn = store.db().begin().await.map_err(db_err)?;
    if school::Entity::find_by_id(p.school.clone())
        .one(&txn)
        .await
        .map_err(db_err)?
        .is_none()
    {
        return Err(EditError::NotFound(format!(
            "school {} is not linked (see `rostersync school list`)",
            p.school
        )));
    }
    for (kind, value) in p.keys.entries() {
        if let Some(k) =
            person_key::Entity::find_by_id((p.school.clone(), kind.to_owned(), value.to_owned()))
                .one(&txn)
                .await
                .map_err(db_err)?
        {
            return Err(EditError::Invalid(format!(
                "this {kind} already belongs to person {} of school {}",
                k.person_id, p.school
            )));
        }
    }
    let groups = live_groups(&txn, &p.school).await.map_err(db_err)?;
    let mut linked = Vec::new();
    for g in &p.groups {
        match groups.get(g) {
            Some(row) => linked.push(row.id),
            None => {
                return Err(EditError::Invalid(format!(
                    "school {} has no group '{g}' (see `rostersync export --school {}`)",
                    p.school, p.school
                )));
            }
        }
    }
    let mut owners: BTreeMap<&str, &str> = p
        .fields
        .keys()
        .map(|f| (f.as_str(), Owner::Local.as_str()))
        .collect();
    owners.insert("links", Owner::Local.as_str());
    let value = |f: Field| p.fields.get(&f).cloned();
    let now = Utc::now();
    let id = person::Entity::insert(person::ActiveModel {
        id: NotSet,
        school_id: Set(p.school.clone()),
        kind: Set(p.kind.as_str().to_owned()),
        family_name: Set(value(Field::FamilyName)),
        prefix: Set(value(Field::Prefix)),
        given_name: Set(value(Field::GivenName)),
        email: Set(value(Field::Email)),
        year_group: Set(value(Field::YearGroup)),
        end_date: Set(value(Field::EndDate).and_then(|d| d.parse().ok())),
        owners: Set(serde_json::to_string(&owners).unwrap_or_else(|_| "{}".into())),
        content_hash: Set(None),
        origin: Set("local".into()),
        created_at: Set(now),
        updated_at: Set(now),
        removed_at: Set(None),
        purge_after: Set(None),
    })
    .exec(&txn)
    .await
    .map_err(db_err)?
    .last_insert_id;
    for (kind, value) in p.keys.entries() {
        person_key::Entity::insert(person_key::ActiveModel {
            school_id: Set(p.school.clone()),
            kind: Set(kind.to_owned()),
            value: Set(value.to_owned()),
            person_id: Set(id),
            source: Set(Owner::Local.as_str().to_owned()),
            created_at: Set(now),
        })
        .exec(&txn)
        .await
        .map_err(db_err)?;
    }
    let role = match p.kind {
        PersonKind::Pupil => "member",
        PersonKind::Staff => "staff",
    };
    for group in linked {
        membership::Entity::insert(membership::ActiveModel {
            person_id: Set(id),
            group_id: Set(group),
            role: Set(role.to_owned()),
            source: Set(Owner::Local.as_str().to_owned()),
            since: Set(now),
        })
        .exec(&txn)
        .await
        .map_err(db_err)?;
    }
    change_entry::Entity::insert(
        Note {
            school: &p.school,
            entity: p.kind.as_str(),
            id,
            person: Some(id),
            operation: "create",
            field: None,
            old: None,
            new: Some(p.keys.label()),
        }
        .row(who),
    )
    .exec(&txn)
    .await
    .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    Ok(id)
}

/// One field's change, as made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Edited {
    pub field: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Edit fields of person `id`. Every field must be free (no value, or a local one): one
/// locked field refuses the whole edit.
pub async fn set_person(
    store: &Store,
    id: i64,
    changes: &[(Field, Option<String>)],
    who: &str,
) -> Result<Vec<Edited>, EditError> {
    let db_err = |e| EditError::Store(store.db_error(e));
    let _turn = store.write_turn().await;
    let txn = store.db().begin().await.map_err(db_err)?;
    let Some(row) = person::Entity::find_by_id(id)
        .one(&txn)
        .await
        .map_err(db_err)?
        .filter(|r| r.removed_at.is_none())
    else {
        return Err(EditError::NotFound(format!(
            "there is no person {id} (see `rostersync export --school SCHOOL`)"
        )));
    };
    let mut owners = owners_of(&row.owners);
    let current = |f: Field| match f {
        Field::FamilyName => row.family_name.clone(),
        Field::Prefix => row.prefix.clone(),
        Field::GivenName => row.given_name.clone(),
        Field::Email => row.email.clone(),
        Field::YearGroup => row.year_group.clone(),
        Field::EndDate => row.end_date.map(|d| d.to_string()),
    };
    for (field, _) in changes {
        let owner = owner_of(&owners, field.as_str());
        if current(*field).is_some() && owner != Owner::Local {
            return Err(EditError::Locked {
                what: format!("person {id}"),
                field: field.as_str().to_owned(),
                owner,
            });
        }
    }
    let mut update = person::ActiveModel {
        id: Set(id),
        updated_at: Set(Utc::now()),
        ..Default::default()
    };
    let mut edited = Vec::new();
    for (field, value) in changes {
        let old = current(*field);
        if &old == value {
            continue;
        }
        match value {
            Some(_) => owners.insert(field.as_str().to_owned(), Owner::Local.as_str().into()),
            None => owners.remove(field.as_str()),
        };
        let v = value.clone();
        match field {
            Field::FamilyName => update.family_name = Set(v),
            Field::Prefix => update.prefix = Set(v),
            Field::GivenName => update.given_name = Set(v),
            Field::Email => update.email = Set(v),
            Field::YearGroup => update.year_group = Set(v),
            Field::EndDate => update.end_date = Set(v.and_then(|d| d.parse().ok())),
        }
        edited.push(Edited {
            field: field.as_str(),
            old,
            new: value.clone(),
        });
    }
    if edited.is_empty() {
        txn.rollback().await.map_err(db_err)?;
        return Ok(edited);
    }
    let owners: BTreeMap<String, String> = owners.into_iter().collect();
    update.owners = Set(serde_json::to_string(&owners).unwrap_or_else(|_| "{}".into()));
    person::Entity::update(update)
        .exec(&txn)
        .await
        .map_err(db_err)?;
    for e in &edited {
        change_entry::Entity::insert(
            Note {
                school: &row.school_id,
                entity: &row.kind,
                id,
                person: Some(id),
                operation: "edit",
                field: Some(e.field),
                old: e.old.clone(),
                new: e.new.clone(),
            }
            .row(who),
        )
        .exec(&txn)
        .await
        .map_err(db_err)?;
    }
    txn.commit().await.map_err(db_err)?;
    Ok(edited)
}

/// Add a group by hand (a remedial group, a project group), editable until a source
/// supplies a group with the same key.
pub async fn add_group(
    store: &Store,
    school: &str,
    key: &str,
    name: &str,
    year_group: Option<String>,
    who: &str,
) -> Result<i64, EditError> {
    let db_err = |e| EditError::Store(store.db_error(e));
    let key = key.trim();
    if key.is_empty() || key.chars().any(char::is_control) || key.chars().count() > 64 {
        return Err(EditError::Invalid(
            "a group key has 1 to 64 characters and no control characters".into(),
        ));
    }
    let name = check_value(Field::FamilyName, name)?
        .ok_or_else(|| EditError::Invalid("a group needs a name".into()))?;
    let _turn = store.write_turn().await;
    let txn = store.db().begin().await.map_err(db_err)?;
    if school::Entity::find_by_id(school.to_owned())
        .one(&txn)
        .await
        .map_err(db_err)?
        .is_none()
    {
        return Err(EditError::NotFound(format!(
            "school {school} is not linked (see `rostersync school list`)"
        )));
    }
    if roster_group::Entity::find()
        .filter(roster_group::Column::SchoolId.eq(school))
        .filter(roster_group::Column::Key.eq(key))
        .one(&txn)
        .await
        .map_err(db_err)?
        .is_some()
    {
        return Err(EditError::Invalid(format!(
            "school {school} already has a group '{key}'"
        )));
    }
    let now = Utc::now();
    let id = roster_group::Entity::insert(roster_group::ActiveModel {
        id: NotSet,
        school_id: Set(school.to_owned()),
        key: Set(key.to_owned()),
        name: Set(name.clone()),
        kind: Set(GroupKind::Samengesteld.as_str().to_owned()),
        year_group: Set(year_group),
        department: Set(None),
        owners: Set(format!(r#"{{"group":"{}"}}"#, Owner::Local.as_str())),
        content_hash: Set(None),
        origin: Set("local".into()),
        created_at: Set(now),
        updated_at: Set(now),
        removed_at: Set(None),
        purge_after: Set(None),
    })
    .exec(&txn)
    .await
    .map_err(db_err)?
    .last_insert_id;
    change_entry::Entity::insert(
        Note {
            school,
            entity: "group",
            id,
            person: None,
            operation: "create",
            field: None,
            old: None,
            new: Some(key.to_owned()),
        }
        .row(who),
    )
    .exec(&txn)
    .await
    .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    Ok(id)
}

/// Edit a group's name or year group; only a group no source supplies.
pub async fn set_group(
    store: &Store,
    school: &str,
    key: &str,
    name: Option<String>,
    year_group: Option<Option<String>>,
    who: &str,
) -> Result<Vec<Edited>, EditError> {
    let db_err = |e| EditError::Store(store.db_error(e));
    let _turn = store.write_turn().await;
    let txn = store.db().begin().await.map_err(db_err)?;
    let Some(row) = live_groups(&txn, school).await.map_err(db_err)?.remove(key) else {
        return Err(EditError::NotFound(format!(
            "school {school} has no group '{key}'"
        )));
    };
    let owner = owner_of(&owners_of(&row.owners), "group");
    if owner != Owner::Local {
        let field = if name.is_some() { "name" } else { "year_group" };
        return Err(EditError::Locked {
            what: format!("group {key} of school {school}"),
            field: field.into(),
            owner,
        });
    }
    let mut update = roster_group::ActiveModel {
        id: Set(row.id),
        updated_at: Set(Utc::now()),
        ..Default::default()
    };
    let mut edited = Vec::new();
    if let Some(n) = name
        && n != row.name
    {
        edited.push(Edited {
            field: "name",
            old: Some(row.name.clone()),
            new: Some(n.clone()),
        });
        update.name = Set(n);
    }
    if let Some(y) = year_group
        && y != row.year_group
    {
        edited.push(Edited {
            field: "year_group",
            old: row.year_group.clone(),
            new: y.clone(),
        });
        update.year_group = Set(y);
    }
    if edited.is_empty() {
        txn.rollback().await.map_err(db_err)?;
        return Ok(edited);
    }
    roster_group::Entity::update(update)
        .exec(&txn)
        .await
        .map_err(db_err)?;
    for e in &edited {
        change_entry::Entity::insert(
            Note {
                school,
                entity: "group",
                id: row.id,
                person: None,
                operation: "edit",
                field: Some(e.field),
                old: e.old.clone(),
                new: e.new.clone(),
            }
            .row(who),
        )
        .exec(&txn)
        .await
        .map_err(db_err)?;
    }
    txn.commit().await.map_err(db_err)?;
    Ok(edited)
}
