//! School links: which schools rostersync serves, from which sources, with which sealed key.
//! Links come from `[[school]]` blocks in the configuration or from `school add`.

use chrono::Utc;
use connector_api::SchoolId;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, OnConflict},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::entities::{person, roster_group, school, school_secret};
use super::sealing::{MasterKey, SealError, Sealed};
use super::{Store, StoreError, WriteKind};
use crate::model::SchoolStatus;
use crate::settings::Settings;

/// The kind of sealed secret that holds a school's LAS authorization key.
pub const LAS_KEY: &str = "las_key";

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("school {0} is already linked; use `rostersync school set-key {0}` to replace its key")]
    Exists(String),
    #[error(
        "school {0} is defined in the configuration file; change or remove its [[school]] block there"
    )]
    InConfig(String),
    #[error("school {0} is not linked (see `rostersync school list`)")]
    NotFound(String),
    #[error("school {school}: {reason}")]
    BadKey { school: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl LinkError {
    /// Only a failing database makes this a failed run; everything else is usage or setup.
    pub fn is_setup(&self) -> bool {
        match self {
            LinkError::Store(e) => e.is_setup(),
            _ => true,
        }
    }
}

/// One row of `school list`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SchoolLink {
    pub id: String,
    pub name: Option<String>,
    /// `config` or `store`.
    pub origin: String,
    pub las: Option<String>,
    pub broker_id: Option<i64>,
    pub zermelo_portal: Option<String>,
    /// Where the key is, never what it is: `sealed in store`, `config file`, `missing`, `none`.
    pub key: String,
    pub state: String,
}

#[derive(Debug)]
pub struct NewSchool {
    pub id: SchoolId,
    pub name: Option<String>,
    pub las: Option<String>,
    pub broker_id: Option<i64>,
    pub key: Option<SecretString>,
}

/// What `remove` deleted along with the link.
#[derive(Debug, Default, Serialize)]
pub struct Removed {
    pub persons: u64,
    pub groups: u64,
}

fn context(school: &str, kind: &str) -> String {
    format!("rostersync/{school}/{kind}")
}

/// An authorization key as UWLR defines it: 1 to 64 characters, no control characters.
pub fn check_las_key(school: &SchoolId, key: &SecretString) -> Result<(), LinkError> {
    let k = key.expose_secret();
    let reason = if k.trim().is_empty() {
        Some("the key is empty")
    } else if k.chars().count() > 64 {
        Some("the key is longer than the 64 characters UWLR allows")
    } else if k.chars().any(char::is_control) {
        Some("the key contains control characters (more than one line?)")
    } else {
        None
    };
    match reason {
        Some(r) => Err(LinkError::BadKey {
            school: school.to_string(),
            reason: r.into(),
        }),
        None => Ok(()),
    }
}

pub async fn list(store: &Store, settings: &Settings) -> Result<Vec<SchoolLink>, StoreError> {
    let rows = school::Entity::find()
        .order_by_asc(school::Column::Id)
        .all(store.db())
        .await
        .map_err(|e| store.db_error(e))?;
    let sealed: Vec<(String, String)> = school_secret::Entity::find()
        .filter(school_secret::Column::Kind.eq(LAS_KEY))
        .all(store.db())
        .await
        .map_err(|e| store.db_error(e))?
        .into_iter()
        .map(|s| (s.school_id, s.key_id))
        .collect();
    let state_of = |id: &str| {
        rows.iter()
            .find(|r| r.id == id)
            .map(|r| r.state.clone())
            .unwrap_or_else(|| "not synced yet".to_owned())
    };
    let mut links: Vec<SchoolLink> = settings
        .school
        .iter()
        .map(|s| {
            let id = s.id.to_string();
            SchoolLink {
                name: s.name.clone(),
                origin: "config".into(),
                las: s.las.clone(),
                broker_id: s.broker_id,
                zermelo_portal: s.zermelo.as_ref().map(|z| z.portal.to_string()),
                key: if s.key.is_some() {
                    "config file"
                } else {
                    "none"
                }
                .into(),
                state: state_of(&id),
                id,
            }
        })
        .collect();
    for row in rows.iter().filter(|r| r.origin == "store") {
        if links.iter().any(|l| l.id == row.id) {
            continue;
        }
        let key = match sealed.iter().find(|(id, _)| id == &row.id) {
            Some((_, key_id)) => format!("sealed in store (master key {key_id})"),
            None if row.las.is_some() => "missing".into(),
            None => "none".into(),
        };
        links.push(SchoolLink {
            id: row.id.clone(),
            name: row.name.clone(),
            origin: "store".into(),
            las: row.las.clone(),
            broker_id: row.broker_id,
            zermelo_portal: row.zermelo_portal.clone(),
            key,
            state: row.state.clone(),
        });
    }
    links.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(links)
}

pub async fn add(
    store: &Store,
    settings: &Settings,
    master: Option<&MasterKey>,
    new: NewSchool,
) -> Result<(), LinkError> {
    let id = new.id.to_string();
    if settings.configured_school(&new.id).is_some() {
        return Err(LinkError::InConfig(id));
    }
    let db_err = |e| LinkError::Store(store.db_error(e));
    if school::Entity::find_by_id(id.clone())
        .one(store.db())
        .await
        .map_err(db_err)?
        .is_some()
    {
        return Err(LinkError::Exists(id));
    }
    let now = Utc::now();
    let txn = store.begin_write(WriteKind::Link).await.map_err(db_err)?;
    school::Entity::insert(school::ActiveModel {
        id: Set(id.clone()),
        brin: Set(new.id.brin().to_owned()),
        dependance: Set(new.id.dependance().to_owned()),
        name: Set(new.name),
        origin: Set("store".into()),
        las: Set(new.las),
        broker_id: Set(new.broker_id),
        zermelo_portal: Set(None),
        state: Set(SchoolStatus::Active.as_str().into()),
        state_reason: Set(None),
        state_since: Set(Some(now)),
        school_year: Set(None),
        fence: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        roster_digest: Set(None),
        frozen_by: Set(None),
        frozen_at: Set(None),
        sourced_id: Set(Some(super::new_sourced_id())),
        roster_version: Set(0),
    })
    .exec(&txn)
    .await
    .map_err(db_err)?;
    if let (Some(key), Some(master)) = (&new.key, master) {
        check_las_key(&new.id, key)?;
        master.check_against(&txn).await?;
        write_secret(&txn, &id, LAS_KEY, master.seal(&context(&id, LAS_KEY), key))
            .await
            .map_err(db_err)?;
    }
    txn.commit().await.map_err(db_err)?;
    Ok(())
}

pub async fn set_key(
    store: &Store,
    settings: &Settings,
    master: &MasterKey,
    id: &SchoolId,
    key: &SecretString,
) -> Result<(), LinkError> {
    let sid = id.to_string();
    if settings.configured_school(id).is_some() {
        return Err(LinkError::InConfig(sid));
    }
    check_las_key(id, key)?;
    let db_err = |e| LinkError::Store(store.db_error(e));
    let txn = store.begin_write(WriteKind::Link).await.map_err(db_err)?;
    let Some(row) = school::Entity::find_by_id(sid.clone())
        .one(&txn)
        .await
        .map_err(db_err)?
    else {
        return Err(LinkError::NotFound(sid));
    };
    master.check_against(&txn).await?;
    write_secret(
        &txn,
        &sid,
        LAS_KEY,
        master.seal(&context(&sid, LAS_KEY), key),
    )
    .await
    .map_err(db_err)?;
    // A new key is the operator's answer to a rejected one: un-park the school.
    if row.state == SchoolStatus::Parked.as_str() {
        school::Entity::update(school::ActiveModel {
            id: Set(sid.clone()),
            state: Set(SchoolStatus::Active.as_str().into()),
            state_reason: Set(None),
            state_since: Set(Some(Utc::now())),
            updated_at: Set(Utc::now()),
            ..Default::default()
        })
        .exec(&txn)
        .await
        .map_err(db_err)?;
    }
    txn.commit().await.map_err(db_err)?;
    Ok(())
}

/// The school's stored secret of `kind`, unsealed; `None` when none is stored.
pub async fn load_secret(
    store: &Store,
    master: &MasterKey,
    id: &SchoolId,
    kind: &str,
) -> Result<Option<SecretString>, LinkError> {
    let sid = id.to_string();
    let row = school_secret::Entity::find_by_id((sid.clone(), kind.to_owned()))
        .one(store.db())
        .await
        .map_err(|e| LinkError::Store(store.db_error(e)))?;
    let Some(row) = row else { return Ok(None) };
    let sealed = Sealed {
        key_id: row.key_id.clone(),
        nonce: row.nonce,
        ciphertext: row.ciphertext,
    };
    master
        .open(&context(&sid, kind), &sealed)
        .map(Some)
        .ok_or_else(|| {
            LinkError::Seal(SealError::Corrupt {
                school: sid,
                kind: kind.to_owned(),
                key_id: row.key_id,
            })
        })
}

/// Delete a link added with `school add`, and all roster data stored for the school.
pub async fn remove(
    store: &Store,
    settings: &Settings,
    id: &SchoolId,
) -> Result<Removed, LinkError> {
    let sid = id.to_string();
    if settings.configured_school(id).is_some() {
        return Err(LinkError::InConfig(sid));
    }
    let db_err = |e| LinkError::Store(store.db_error(e));
    let txn = store.begin_write(WriteKind::Link).await.map_err(db_err)?;
    if school::Entity::find_by_id(sid.clone())
        .one(&txn)
        .await
        .map_err(db_err)?
        .is_none()
    {
        return Err(LinkError::NotFound(sid));
    }
    let removed = Removed {
        persons: person::Entity::find()
            .filter(person::Column::SchoolId.eq(sid.clone()))
            .count(&txn)
            .await
            .map_err(db_err)?,
        groups: roster_group::Entity::find()
            .filter(roster_group::Column::SchoolId.eq(sid.clone()))
            .count(&txn)
            .await
            .map_err(db_err)?,
    };
    // Foreign keys cascade from the school to everything stored for it.
    school::Entity::delete_by_id(sid)
        .exec(&txn)
        .await
        .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    Ok(removed)
}

/// How many schools the store holds data for (for summaries).
pub async fn count(store: &Store) -> Result<u64, StoreError> {
    school::Entity::find()
        .count(store.db())
        .await
        .map_err(|e| store.db_error(e))
}

async fn write_secret<C: sea_orm::ConnectionTrait>(
    db: &C,
    school: &str,
    kind: &str,
    sealed: Sealed,
) -> Result<(), sea_orm::DbErr> {
    school_secret::Entity::insert(school_secret::ActiveModel {
        school_id: Set(school.to_owned()),
        kind: Set(kind.to_owned()),
        key_id: Set(sealed.key_id),
        nonce: Set(sealed.nonce),
        ciphertext: Set(sealed.ciphertext),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([school_secret::Column::SchoolId, school_secret::Column::Kind])
            .update_columns([
                school_secret::Column::KeyId,
                school_secret::Column::Nonce,
                school_secret::Column::Ciphertext,
                school_secret::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

/// Make sure every `[[school]]` of the configuration has its row (runs, rosters and state
/// hang off it). The configuration stays the truth for its sources; the row follows it.
pub async fn ensure_config_rows(store: &Store, settings: &Settings) -> Result<(), StoreError> {
    let db_err = |e| store.db_error(e);
    // A few hundred schools per transaction: one commit, not one per school, and no long
    // hold of SQLite's write lock for a country-sized configuration.
    for chunk in settings.school.chunks(500) {
        let txn = store.begin_write(WriteKind::Link).await.map_err(db_err)?;
        for s in chunk {
            ensure_config_row(&txn, s).await.map_err(db_err)?;
        }
        txn.commit().await.map_err(db_err)?;
    }
    Ok(())
}

async fn ensure_config_row<C: sea_orm::ConnectionTrait>(
    db: &C,
    s: &crate::settings::SchoolSettings,
) -> Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    let row = school::ActiveModel {
        id: Set(s.id.to_string()),
        brin: Set(s.id.brin().to_owned()),
        dependance: Set(s.id.dependance().to_owned()),
        name: Set(s.name.clone()),
        origin: Set("config".into()),
        las: Set(s.las.clone()),
        broker_id: Set(s.broker_id),
        zermelo_portal: Set(s.zermelo.as_ref().map(|z| z.portal.to_string())),
        state: Set(SchoolStatus::Active.as_str().into()),
        state_reason: Set(None),
        state_since: Set(Some(now)),
        school_year: Set(None),
        fence: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        roster_digest: Set(None),
        frozen_by: Set(None),
        frozen_at: Set(None),
        sourced_id: Set(Some(super::new_sourced_id())),
        roster_version: Set(0),
    };
    school::Entity::insert(row)
        .on_conflict(
            OnConflict::column(school::Column::Id)
                .update_columns([
                    school::Column::Origin,
                    school::Column::Las,
                    school::Column::BrokerId,
                    school::Column::ZermeloPortal,
                ])
                .to_owned(),
        )
        .exec(db)
        .await?;
    if let Some(name) = &s.name {
        school::Entity::update_many()
            .col_expr(school::Column::Name, Expr::value(name.clone()))
            .filter(school::Column::Id.eq(s.id.to_string()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Hold a school's roster as it is (`by`: who froze it), or let it be synced again (`None`).
/// Returns false when it already was so. Works for schools of the configuration file too:
/// freezing is about the roster, not the link.
pub async fn set_frozen(store: &Store, id: &SchoolId, by: Option<&str>) -> Result<bool, LinkError> {
    let sid = id.to_string();
    let db_err = |e| LinkError::Store(store.db_error(e));
    let txn = store.begin_write(WriteKind::Link).await.map_err(db_err)?;
    let Some(row) = school::Entity::find_by_id(sid.clone())
        .one(&txn)
        .await
        .map_err(db_err)?
    else {
        return Err(LinkError::NotFound(sid));
    };
    if row.frozen_by.is_some() == by.is_some() {
        return Ok(false);
    }
    let now = Utc::now();
    let (state, reason) = match by {
        Some(who) => (
            SchoolStatus::Frozen,
            Some(format!(
                "frozen by {who} on {}: its roster is kept as it is; `rostersync school \
                 unfreeze {sid}` lets it be synced again",
                now.format("%Y-%m-%d")
            )),
        ),
        None => (SchoolStatus::Active, None),
    };
    school::Entity::update(school::ActiveModel {
        id: Set(sid),
        frozen_by: Set(by.map(str::to_owned)),
        frozen_at: Set(by.map(|_| now)),
        state: Set(state.as_str().into()),
        state_reason: Set(reason),
        state_since: Set(Some(now)),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(&txn)
    .await
    .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    Ok(true)
}

/// One school's row.
pub async fn row(store: &Store, id: &str) -> Result<Option<school::Model>, StoreError> {
    school::Entity::find_by_id(id.to_owned())
        .one(store.db())
        .await
        .map_err(|e| store.db_error(e))
}

/// Every school row, by id.
pub async fn rows(store: &Store) -> Result<Vec<school::Model>, StoreError> {
    school::Entity::find()
        .order_by_asc(school::Column::Id)
        .all(store.db())
        .await
        .map_err(|e| store.db_error(e))
}

/// One school's row, read in the caller's transaction.
pub async fn row_in<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<school::Model>, sea_orm::DbErr> {
    super::by_key(db, school::Entity::find_by_id(id.to_owned())).await
}

/// The broker moved the school to another institution id (a merger): follow it, in the
/// caller's (the run's) transaction, and journal it as a change of the school.
pub async fn follow_merger<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
    run: Option<i64>,
    from: &str,
    into: i64,
) -> Result<(), sea_orm::DbErr> {
    use super::entities::change_entry;
    let now = Utc::now();
    school::Entity::update_many()
        .col_expr(school::Column::BrokerId, Expr::value(into))
        .col_expr(school::Column::UpdatedAt, Expr::value(now))
        .filter(school::Column::Id.eq(id))
        .exec(db)
        .await?;
    change_entry::Entity::insert(change_entry::ActiveModel {
        run_id: Set(run),
        school_id: Set(id.to_owned()),
        entity: Set("school".into()),
        entity_id: Set(None),
        person_id: Set(None),
        operation: Set("update".into()),
        field: Set(Some("broker_id".into())),
        old_value: Set(Some(from.to_owned())),
        new_value: Set(Some(into.to_string())),
        source: Set(crate::model::Owner::Broker.as_str().to_owned()),
        rule: Set(format!(
            "the broker says institution {from} merged into {into}: the school follows it"
        )),
        at: Set(now.into()),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}

/// What a run learned about the school as a whole.
pub struct SchoolState {
    pub state: SchoolStatus,
    pub reason: Option<String>,
    /// The school year and name the source gave, when it gave them.
    pub school_year: Option<String>,
    pub name: Option<String>,
}

/// Set the school's state in one statement (every run ends with it, with the write lock
/// held): `state_since` moves only when the state does, the year only when a source gave one,
/// and a source's name fills in only where none is configured.
pub async fn set_state<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
    new: SchoolState,
) -> Result<(), sea_orm::DbErr> {
    state_update(id, new).exec(db).await?;
    Ok(())
}

/// [`set_state`] for a run that applied its sources, with [`set_digest`]'s two columns in the
/// same statement (one round trip fewer with the write lock held).
pub async fn set_applied<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
    new: SchoolState,
    digest: Option<String>,
) -> Result<(), sea_orm::DbErr> {
    state_update(id, new)
        .col_expr(school::Column::RosterDigest, Expr::value(digest))
        .col_expr(school::Column::RosterVersion, raised_version())
        .exec(db)
        .await?;
    Ok(())
}

fn state_update(id: &str, new: SchoolState) -> sea_orm::UpdateMany<school::Entity> {
    use sea_orm::sea_query::{Func, SimpleExpr};
    let now = Utc::now();
    let state = new.state.as_str();
    let since: SimpleExpr = Expr::case(Expr::col(school::Column::State).ne(state), now)
        .finally(Expr::col(school::Column::StateSince))
        .into();
    let mut update = school::Entity::update_many()
        .col_expr(school::Column::State, Expr::value(state))
        .col_expr(school::Column::StateReason, Expr::value(new.reason))
        .col_expr(school::Column::StateSince, since)
        .col_expr(school::Column::UpdatedAt, Expr::value(now))
        .filter(school::Column::Id.eq(id));
    if new.school_year.is_some() {
        update = update.col_expr(school::Column::SchoolYear, Expr::value(new.school_year));
    }
    if new.name.is_some() {
        let name = Func::coalesce([Expr::col(school::Column::Name), Expr::value(new.name)]);
        update = update.col_expr(school::Column::Name, name.into());
    }
    update
}

/// The apply's first statement: take the school's row lock, and when the run holds a lease
/// (`fence`), check the school's fence is still the one the lease was granted with. `None`:
/// another worker claimed the school since (or it is gone), and this run must not write.
/// Else what the run needs to know under the lock, read by the same statement (`RETURNING`):
/// where the school's roster stands, and whether removals wait for approval.
pub async fn lock_for_apply<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
    fence: Option<i64>,
) -> Result<Option<Locked>, sea_orm::DbErr> {
    let mut sql = super::sql::Sql::new(db.get_database_backend());
    sql.push("UPDATE school SET updated_at = ")
        .bind(Utc::now())
        .push(" WHERE id = ")
        .bind(id.to_owned());
    if let Some(f) = fence {
        sql.push(" AND fence = ").bind(f);
    }
    sql.push(
        " RETURNING roster_digest, roster_version, EXISTS (SELECT 1 FROM held_change h \
         WHERE h.school_id = school.id AND h.state = ",
    )
    .bind(super::held::HELD)
    .push(")");
    let Some(row) = db.query_one_raw(sql.statement()).await? else {
        return Ok(None);
    };
    Ok(Some(Locked {
        basis: RosterBasis {
            digest: row.try_get_by_index(0)?,
            version: row.try_get_by_index(1)?,
        },
        held_waiting: row.try_get_by_index(2)?,
    }))
}

/// What a writer of a school learns as it takes the school's row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub basis: RosterBasis,
    /// Removals held by the brakes wait for approval (a run that holds none supersedes them).
    pub held_waiting: bool,
}

/// Remember (or forget, with `None`) what the sources said at the last full apply. Every
/// apply (and the offboarding) calls it in the transaction that wrote the roster, so it also
/// raises the roster's version (see [`roster_changed`]) in the same statement.
pub async fn set_digest<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
    digest: Option<String>,
) -> Result<(), sea_orm::DbErr> {
    school::Entity::update_many()
        .col_expr(school::Column::RosterDigest, Expr::value(digest))
        .col_expr(school::Column::RosterVersion, raised_version())
        .filter(school::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// `roster_version + 1`: what every writer of a school's roster sets it to.
fn raised_version() -> sea_orm::sea_query::SimpleExpr {
    Expr::col(school::Column::RosterVersion).add(1)
}

/// Where a school's stored roster stands, for a run that computes its plan before it writes:
/// the digest of the last full apply and the version every writer of the roster raises.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RosterBasis {
    pub digest: Option<String>,
    pub version: i64,
}

/// The school's [`RosterBasis`] (the default when the school has no row).
pub async fn basis<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<RosterBasis, sea_orm::DbErr> {
    use sea_orm::QuerySelect;
    let row: Option<(Option<String>, i64)> = school::Entity::find_by_id(id.to_owned())
        .select_only()
        .column(school::Column::RosterDigest)
        .column(school::Column::RosterVersion)
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .next();
    Ok(row
        .map(|(digest, version)| RosterBasis { digest, version })
        .unwrap_or_default())
}

/// Say that the school's stored roster changed: every writer of its persons, groups,
/// memberships, held changes or prepared year calls this in its transaction, so a run that
/// computed against an older roster computes again (see [`basis`]).
pub async fn roster_changed<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<(), sea_orm::DbErr> {
    roster_changed_of(db, [id]).await
}

/// [`roster_changed`] for several schools in one statement (the purge).
pub async fn roster_changed_of<C, I, S>(db: &C, ids: I) -> Result<(), sea_orm::DbErr>
where
    C: sea_orm::ConnectionTrait,
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let ids: Vec<String> = ids.into_iter().map(Into::into).collect();
    if ids.is_empty() {
        return Ok(());
    }
    school::Entity::update_many()
        .col_expr(school::Column::RosterVersion, raised_version())
        .filter(school::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    Ok(())
}
