//! Local records and edits: people and groups an admin adds by hand, and edits of fields no
//! source owns. A field a source owns is locked: the edit is refused, naming the field and
//! its owner, and nothing changes. A local record a source later supplies is adopted by the
//! sync (see `sync::diff`): it keeps its id and local-only data, and its source fields lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use connector_api::{GroupKind, PersonKeys};
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter};

use super::entities::{person, roster_group, school};
use super::owners::Owners;
use super::roster::{self, ApplyContext, Entry, Facets, Journal};
use super::{Store, StoreError, WriteKind};
use crate::model::{Field, GroupState, Link, Owned, Owner, PersonKind, PersonState};

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

/// The journal entry of one change by hand.
fn entry<'a>(
    entity: &'a str,
    id: i64,
    person: Option<i64>,
    operation: &'a str,
    who: &str,
) -> Entry<'a> {
    Entry {
        entity,
        entity_id: Some(id),
        person_id: person,
        operation,
        field: None,
        old: None,
        new: None,
        source: Owner::Local,
        rule: format!("by hand, by {who}"),
    }
}

async fn school_exists<C: sea_orm::ConnectionTrait>(db: &C, school: &str) -> Result<bool, DbErr> {
    Ok(school::Entity::find_by_id(school.to_owned())
        .one(db)
        .await?
        .is_some())
}

fn not_linked(school: &str) -> EditError {
    EditError::NotFound(format!(
        "school {school} is not linked (see `rostersync school list`)"
    ))
}

/// Add a person by hand: every field local and editable. Its keys (ECK-iD, LAS key) are
/// how a source later finds and adopts it; they must not belong to anyone yet.
pub async fn add_person(store: &Store, p: &NewPerson, who: &str) -> Result<i64, EditError> {
    let db_err = |e| EditError::Store(store.db_error(e));
    let txn = store.begin_write(WriteKind::Edit).await.map_err(db_err)?;
    if !school_exists(&txn, &p.school).await.map_err(db_err)? {
        return Err(not_linked(&p.school));
    }
    for (kind, value) in p.keys.entries() {
        if let Some(other) = super::keys::named(&p.school, kind, value)
            .one(&txn)
            .await
            .map_err(db_err)?
        {
            return Err(EditError::Invalid(format!(
                "this {kind} already belongs to person {} of school {}",
                other.id, p.school
            )));
        }
    }
    let groups: HashMap<String, i64> = roster::live_groups(&txn, &p.school)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|g| (g.key, g.id))
        .collect();
    let linked = p
        .groups
        .iter()
        .map(|g| {
            groups.get(g).copied().ok_or_else(|| {
                EditError::Invalid(format!(
                    "school {} has no group '{g}' (see `rostersync export --school {}`)",
                    p.school, p.school
                ))
            })
        })
        .collect::<Result<Vec<i64>, EditError>>()?;
    let ctx = ApplyContext::by_hand(&p.school);
    let id = insert_local_person(&txn, &ctx, p, &linked)
        .await
        .map_err(db_err)?;
    let mut journal = Journal::new(&ctx);
    journal.add(entry(p.kind.as_str(), id, Some(id), "create", who).about(
        None,
        None,
        Some(p.keys.label()),
    ));
    journal.write(&txn).await.map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    Ok(id)
}

/// The rows a sync would write for `p`, every value owned locally: the person with its keys,
/// and its links to the `linked` groups.
async fn insert_local_person<C: sea_orm::ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    p: &NewPerson,
    linked: &[i64],
) -> Result<i64, DbErr> {
    super::schools::roster_changed(db, ctx.school).await?;
    let role = match p.kind {
        PersonKind::Pupil => "member",
        PersonKind::Staff => "staff",
    };
    let local = |value: &String| Owned {
        value: value.clone(),
        owner: Owner::Local,
    };
    let state = PersonState {
        kind: p.kind,
        keys: p.keys.clone(),
        fields: p.fields.iter().map(|(f, v)| (*f, local(v))).collect(),
        links: p
            .groups
            .iter()
            .map(|g| Link {
                group: g.clone(),
                role: role.to_owned(),
            })
            .collect(),
        links_owner: Owner::Local,
        roles: BTreeSet::new(),
    };
    let mut row = roster::person_row(ctx, &state);
    row.origin = Set("local".into());
    row.sourced_id = Set(Some(super::new_sourced_id()));
    let id = person::Entity::insert(row).exec(db).await?.last_insert_id;
    let mut facets = Facets::new();
    for group in linked {
        facets.link(ctx, id, *group, role, Owner::Local);
    }
    facets.write(db).await?;
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
    let txn = store.begin_write(WriteKind::Edit).await.map_err(db_err)?;
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
    let mut owners = Owners::parse(&row.owners);
    let current = |f: Field| match f {
        Field::FamilyName => row.family_name.clone(),
        Field::Prefix => row.prefix.clone(),
        Field::GivenName => row.given_name.clone(),
        Field::Email => row.email.clone(),
        Field::YearGroup => row.year_group.clone(),
        Field::EndDate => row.end_date.map(|d| d.to_string()),
    };
    for (field, _) in changes {
        let owner = owners.get(field.as_str());
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
        updated_at: Set(super::Stamp::now()),
        ..Default::default()
    };
    let mut edited = Vec::new();
    for (field, value) in changes {
        let old = current(*field);
        if &old == value {
            continue;
        }
        match value {
            Some(_) => owners.set(field.as_str(), Owner::Local),
            None => owners.clear(field.as_str()),
        }
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
    update.owners = Set(owners.to_text());
    person::Entity::update(update)
        .exec(&txn)
        .await
        .map_err(db_err)?;
    journal_edits(&txn, &person_record(&row), &edited, who)
        .await
        .map_err(db_err)?;
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
    let txn = store.begin_write(WriteKind::Edit).await.map_err(db_err)?;
    if !school_exists(&txn, school).await.map_err(db_err)? {
        return Err(not_linked(school));
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
    let ctx = ApplyContext::by_hand(school);
    let mut row = roster::group_row(
        &ctx,
        &GroupState {
            key: key.to_owned(),
            name,
            kind: GroupKind::Samengesteld,
            year_group,
            department: None,
            owner: Owner::Local,
        },
    );
    row.origin = Set("local".into());
    super::schools::roster_changed(&txn, school)
        .await
        .map_err(db_err)?;
    let id = roster_group::Entity::insert(row)
        .exec(&txn)
        .await
        .map_err(db_err)?
        .last_insert_id;
    let mut journal = Journal::new(&ctx);
    journal.add(entry("group", id, None, "create", who).about(None, None, Some(key.to_owned())));
    journal.write(&txn).await.map_err(db_err)?;
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
    let txn = store.begin_write(WriteKind::Edit).await.map_err(db_err)?;
    let Some(row) = roster::live_groups(&txn, school)
        .await
        .map_err(db_err)?
        .into_iter()
        .find(|g| g.key == key)
    else {
        return Err(EditError::NotFound(format!(
            "school {school} has no group '{key}'"
        )));
    };
    let owner = Owners::parse(&row.owners).get("group");
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
        updated_at: Set(super::Stamp::now()),
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
    let record = EditedRecord {
        school,
        entity: "group",
        id: row.id,
        person: None,
    };
    journal_edits(&txn, &record, &edited, who)
        .await
        .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    Ok(edited)
}

/// The record an edit by hand is about, as the journal names it.
struct EditedRecord<'a> {
    school: &'a str,
    /// `pupil`, `staff` or `group`.
    entity: &'a str,
    id: i64,
    /// The person, when the record is one.
    person: Option<i64>,
}

/// One journal row per field edited by hand.
async fn journal_edits<C: sea_orm::ConnectionTrait>(
    db: &C,
    record: &EditedRecord<'_>,
    edited: &[Edited],
    who: &str,
) -> Result<(), DbErr> {
    // Every edit of a stored record is journaled here: the one place to say it changed.
    super::schools::roster_changed(db, record.school).await?;
    let ctx = ApplyContext::by_hand(record.school);
    let mut journal = Journal::new(&ctx);
    for e in edited {
        let (entity, id, person) = (record.entity, record.id, record.person);
        journal.add(entry(entity, id, person, "edit", who).about(
            Some(e.field),
            e.old.clone(),
            e.new.clone(),
        ));
    }
    journal.write(db).await
}

/// A person row as the journal of an edit names it.
fn person_record(row: &person::Model) -> EditedRecord<'_> {
    EditedRecord {
        school: &row.school_id,
        entity: &row.kind,
        id: row.id,
        person: Some(row.id),
    }
}

/// The new ECK-iD `person relink` gives.
#[derive(Debug, Clone)]
pub enum NewEckid {
    /// One the operator gives.
    Given(String),
    /// The one the source sends now, as the person's last identity conflict recorded it.
    FromSource,
}

/// What `relink_eckid` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Relinked {
    pub person: i64,
    pub old: Option<String>,
    pub new: String,
}

/// Accept a changed ECK-iD for the same person: the person keeps its id, links and history;
/// the ECK-iD key takes the new value (journaled with who did it); the next run compares
/// the school in full again, and its identity conflict is gone.
pub async fn relink_eckid(
    store: &Store,
    id: i64,
    to: NewEckid,
    who: &str,
) -> Result<Relinked, EditError> {
    let db_err = |e| EditError::Store(store.db_error(e));
    let txn = store.begin_write(WriteKind::Edit).await.map_err(db_err)?;
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
    let new = match to {
        NewEckid::Given(e) => check_eckid(&e)?,
        NewEckid::FromSource => source_eckid(&txn, id)
            .await
            .map_err(db_err)?
            .ok_or_else(|| {
                EditError::NotFound(format!(
                    "person {id} has no ECK-iD conflict in the journal to take the new ECK-iD \
                 from; give it with --eckid"
                ))
            })?,
    };
    let old = super::keys::read_eckid(row.eckid.clone());
    if old.as_deref() == Some(new.as_str()) {
        // Done before (a repeated command): nothing to change.
        txn.rollback().await.map_err(db_err)?;
        return Ok(Relinked {
            person: id,
            old,
            new,
        });
    }
    if let Some(other) = super::keys::named(&row.school_id, "eckid", &new)
        .one(&txn)
        .await
        .map_err(db_err)?
    {
        return Err(EditError::Invalid(format!(
            "this ECK-iD belongs to person {} of school {}: two people cannot share one (if \
             they are the same person, one record is a duplicate to remove)",
            other.id, row.school_id
        )));
    }
    relink_rows(&txn, &row, &new).await.map_err(db_err)?;
    let edited = [Edited {
        field: "eckid",
        old: old.clone(),
        new: Some(new.clone()),
    }];
    journal_edits(&txn, &person_record(&row), &edited, who)
        .await
        .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    Ok(Relinked {
        person: id,
        old,
        new,
    })
}

/// The new ECK-iD, and what makes the next run compare the school in full: its digest and
/// the sources' "since" markers are forgotten (a source might otherwise answer "unchanged").
async fn relink_rows<C: sea_orm::ConnectionTrait>(
    db: &C,
    row: &person::Model,
    new: &str,
) -> Result<(), DbErr> {
    super::keys::write(db, row.id, "eckid", new).await?;
    super::schools::set_digest(db, &row.school_id, None).await?;
    super::source_state::forget_markers(db, &row.school_id).await
}

/// The ECK-iD the source sent at the person's last ECK-iD conflict.
async fn source_eckid<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: i64,
) -> Result<Option<String>, DbErr> {
    use super::entities::change_entry;
    use sea_orm::QueryOrder;
    Ok(change_entry::Entity::find()
        .filter(change_entry::Column::PersonId.eq(id))
        .filter(change_entry::Column::Operation.eq("conflict"))
        .filter(change_entry::Column::Field.eq(roster::ECKID_CONFLICT))
        .order_by_desc(change_entry::Column::Id)
        .one(db)
        .await?
        .and_then(|e| e.new_value))
}

/// An ECK-iD as given on the command line: one token, no control characters, at most 256
/// characters (the UWLR attribute's limit).
fn check_eckid(text: &str) -> Result<String, EditError> {
    let e = text.trim();
    if e.is_empty() || e.chars().count() > 256 || e.chars().any(|c| c.is_control() || c == ' ') {
        return Err(EditError::Invalid(
            "an ECK-iD is one word of at most 256 characters, e.g. https://ketenid.nl/201703/..."
                .into(),
        ));
    }
    Ok(e.to_owned())
}
