//! Permissions in the store: the facts grants are derived from (staff links and roles), the
//! derived and manual grants (table `access_grant`), writing the changes the engine decided
//! in the apply's transaction, and the questions `permissions`, `can` and `export` ask.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::Stamp;
use super::entities::access_grant;
use super::roster::{ApplyContext, Entry, Journal};
use crate::model::Owner;
use crate::permissions::{
    Action, Derived, GrantChanges, GroupRef, Holding, Level, LinkFact, RoleFact, StaffFacts, State,
    Stored,
};

pub const DERIVED: &str = "derived";
pub const MANUAL: &str = "manual";

/// The school's live groups: the three columns derivation needs.
pub async fn groups<C: ConnectionTrait>(db: &C, school: &str) -> Result<Vec<GroupRef>, DbErr> {
    use super::entities::roster_group;
    use sea_orm::QuerySelect;
    let rows: Vec<(i64, String, Option<String>)> = roster_group::Entity::find()
        .select_only()
        .columns([
            roster_group::Column::Id,
            roster_group::Column::Key,
            roster_group::Column::Department,
        ])
        .filter(roster_group::Column::SchoolId.eq(school))
        .filter(roster_group::Column::RemovedAt.is_null())
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, key, department)| GroupRef {
            id,
            key,
            department,
        })
        .collect())
}

/// The links and roles of a school's live staff, in one statement: a link has a group and
/// no scope, a role no group. Read by position (it runs on every run, with the write lock
/// held).
fn facts_sql(backend: sea_orm::DbBackend) -> String {
    // The school is bound once per half of the union.
    let (first, second) = match backend {
        sea_orm::DbBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let staff = |param: &str| {
        format!(
            "JOIN person p ON p.id = x.person_id WHERE p.school_id = {param} \
             AND p.kind = 'staff' AND p.removed_at IS NULL"
        )
    };
    format!(
        "SELECT x.person_id, x.group_id, x.role, NULL AS scope, x.source FROM membership x \
         {} UNION ALL SELECT x.person_id, NULL, x.role, x.scope, x.source \
         FROM person_role x {}",
        staff(first),
        staff(second)
    )
}

/// What the stored roster says about each live staff member: links and roles.
pub async fn facts<C: ConnectionTrait>(db: &C, school: &str) -> Result<Vec<StaffFacts>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            facts_sql(backend),
            [school.into(), school.into()],
        ))
        .await?;
    let mut by_person: BTreeMap<i64, StaffFacts> = BTreeMap::new();
    for r in rows {
        let person: i64 = r.try_get_by_index(0)?;
        let group: Option<i64> = r.try_get_by_index(1)?;
        let role: String = r.try_get_by_index(2)?;
        let scope: Option<String> = r.try_get_by_index(3)?;
        let source: String = r.try_get_by_index(4)?;
        let facts = by_person.entry(person).or_insert_with(|| StaffFacts {
            person,
            ..StaffFacts::default()
        });
        match group {
            Some(group) => facts.links.push(LinkFact {
                group,
                role,
                source,
            }),
            None => facts.roles.push(RoleFact {
                name: role,
                scope: scope.unwrap_or_default(),
                source,
            }),
        }
    }
    // The order the rights core saw before (by table, then by key): links by group and role,
    // roles by name, source and scope, as their primary keys list them.
    for f in by_person.values_mut() {
        f.links
            .sort_by(|a, b| (a.group, &a.role).cmp(&(b.group, &b.role)));
        f.roles
            .sort_by(|a, b| (&a.name, &a.source, &a.scope).cmp(&(&b.name, &b.source, &b.scope)));
    }
    Ok(by_person.into_values().collect())
}

fn state_of(s: &str) -> State {
    if s == "pending" {
        State::Pending
    } else {
        State::Active
    }
}

/// What deriving a school's grants starts from: its live groups, what the stored roster says
/// about each staff member, and the derived grants stored now (active or pending).
pub struct Standing {
    pub groups: Vec<GroupRef>,
    pub facts: Vec<StaffFacts>,
    pub stored: Vec<Stored>,
}

impl Standing {
    fn group_key(&self, group: Option<i64>) -> Option<&str> {
        let id = group?;
        self.groups
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.key.as_str())
    }

    fn grant(&self, id: i64) -> Option<&Stored> {
        self.stored.iter().find(|g| g.id == id)
    }

    fn person_of(&self, id: i64) -> i64 {
        self.grant(id).map_or(0, |g| g.person)
    }
}

/// A stored derived grant as the rights core compares it.
type GrantRow = (
    i64,
    i64,
    String,
    Option<i64>,
    String,
    String,
    String,
    Option<Stamp>,
);

/// The school's derived grants that are active or pending, the columns the rights core
/// compares.
async fn derived<C: ConnectionTrait>(db: &C, school: &str) -> Result<Vec<Stored>, DbErr> {
    use sea_orm::QuerySelect;
    let rows: Vec<GrantRow> = access_grant::Entity::find()
        .select_only()
        .columns([
            access_grant::Column::Id,
            access_grant::Column::PersonId,
            access_grant::Column::Level,
            access_grant::Column::GroupId,
            access_grant::Column::Rule,
            access_grant::Column::Source,
            access_grant::Column::State,
            access_grant::Column::RevokeAfter,
        ])
        .filter(access_grant::Column::SchoolId.eq(school))
        .filter(access_grant::Column::Origin.eq(DERIVED))
        .filter(access_grant::Column::State.is_in(["active", "pending"]))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(id, person, level, group, rule, source, state, revoke_after)| {
                Some(Stored {
                    id,
                    person,
                    level: Level::parse(&level)?,
                    group,
                    rule,
                    source,
                    state: state_of(&state),
                    revoke_after: revoke_after.map(Stamp::at),
                })
            },
        )
        .collect())
}

/// Read what the engine derives a school's grants from, in the caller's transaction.
pub async fn standing<C: ConnectionTrait>(db: &C, school: &str) -> Result<Standing, DbErr> {
    Ok(Standing {
        groups: groups(db, school).await?,
        facts: facts(db, school).await?,
        stored: derived(db, school).await?,
    })
}

/// Write what the rights core decided for a school (`actions`, against `standing`), journaling
/// each change in the caller's transaction (the apply's, so data and rights never disagree),
/// and mark the persons whose grants changed as changed. The rows are written a kind at a time
/// (a school's first run creates dozens of grants; each statement costs a round trip to the
/// store with the write lock held), the journal in the order decided.
pub async fn write_actions<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    standing: &Standing,
    actions: Vec<Action>,
) -> Result<GrantChanges, DbErr> {
    let created = insert_created(db, ctx, &actions).await?;
    write_states(db, &actions, ctx.now).await?;
    let mut journal = Journal::new(ctx);
    let mut out = GrantChanges::default();
    let mut changed_persons = std::collections::BTreeSet::new();
    for action in &actions {
        changed_persons.insert(match action {
            Action::Create(d) => d.person,
            Action::Restore(id) | Action::Revoke(id) | Action::Pend { id, .. } => {
                standing.person_of(*id)
            }
        });
        if let Some(e) = journal_entry(standing, &created, action, &mut out)? {
            journal.add(e);
        }
    }
    journal.write(db).await?;
    // What a person may see is part of the person as apps know them (their roles): a grant
    // that changed makes the person changed for a delta.
    let changed: Vec<i64> = changed_persons.into_iter().collect();
    touch_persons(db, &changed, ctx.now).await?;
    Ok(out)
}

/// What tells one derived grant from another (the rights core's key, as stored).
type GrantIdent = (i64, String, Option<i64>, String, String);

fn ident_of(d: &Derived) -> GrantIdent {
    (
        d.person,
        d.level.as_str().to_owned(),
        d.group,
        d.rule.clone(),
        d.source.clone(),
    )
}

/// Insert the grants `actions` create, a chunk per statement; their ids come back by what
/// identifies them, in the same statement (`RETURNING`). No two active derived grants of a
/// school share an identity: the rights core creates one only where none is.
async fn insert_created<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    actions: &[Action],
) -> Result<HashMap<GrantIdent, i64>, DbErr> {
    let new: Vec<&Derived> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Create(d) => Some(d),
            _ => None,
        })
        .collect();
    let mut ids = HashMap::with_capacity(new.len());
    for chunk in new.chunks(super::roster::CHUNK) {
        let rows: Vec<access_grant::ActiveModel> = chunk
            .iter()
            .map(|d| grant_row(ctx.school, d, DERIVED, ctx.now, None))
            .collect();
        let made = super::bulk::insert_returning(db, rows).await?;
        ids.extend(
            made.into_iter()
                .map(|g| ((g.person_id, g.level, g.group_id, g.rule, g.source), g.id)),
        );
    }
    Ok(ids)
}

/// Restored, pending and revoked grants: one statement per state (pending ones per date).
async fn write_states<C: ConnectionTrait>(
    db: &C,
    actions: &[Action],
    now: Stamp,
) -> Result<(), DbErr> {
    let mut restored = Vec::new();
    let mut pending: BTreeMap<DateTime<Utc>, Vec<i64>> = BTreeMap::new();
    let mut revoked = Vec::new();
    for a in actions {
        match a {
            Action::Create(_) => {}
            Action::Restore(id) => restored.push(*id),
            Action::Pend { id, revoke_after } => {
                pending.entry(*revoke_after).or_default().push(*id)
            }
            Action::Revoke(id) => revoked.push(*id),
        }
    }
    set_state(db, &restored, GrantState::Active, now).await?;
    for (at, ids) in pending {
        set_state(db, &ids, GrantState::Pending(at.into()), now).await?;
    }
    revoke(db, &revoked, now).await
}

/// One decided change's count and journal entry (its row is written).
fn journal_entry<'a>(
    standing: &'a Standing,
    created: &HashMap<GrantIdent, i64>,
    action: &'a Action,
    out: &mut GrantChanges,
) -> Result<Option<Entry<'a>>, DbErr> {
    // A stored grant's journal entry, with why its state changed.
    let about = |id: i64, operation: &'static str, why: String| {
        standing.grant(id).map(|g| {
            let granted = Granted {
                grant: id,
                person: g.person,
                level: g.level.as_str(),
                group: standing.group_key(g.group),
            };
            entry(granted, operation, &g.source, format!("{}: {why}", g.rule))
        })
    };
    Ok(match action {
        Action::Create(d) => {
            let id = created.get(&ident_of(d)).copied().ok_or_else(|| {
                DbErr::Custom(format!(
                    "a grant just created for person {} is not in the store",
                    d.person
                ))
            })?;
            out.granted += 1;
            let granted = Granted {
                grant: id,
                person: d.person,
                level: d.level.as_str(),
                group: standing.group_key(d.group),
            };
            Some(entry(
                granted,
                "grant",
                &d.source,
                format!("{}: {}", d.rule, d.fact),
            ))
        }
        Action::Restore(id) => {
            out.restored += 1;
            about(
                *id,
                "restore",
                "the fact is back within the grace period".into(),
            )
        }
        Action::Pend { id, revoke_after } => {
            out.pending += 1;
            about(
                *id,
                "pending",
                format!(
                    "the fact is gone; revoked on {} unless it comes back",
                    revoke_after.format("%Y-%m-%d")
                ),
            )
        }
        Action::Revoke(id) => {
            out.revoked += 1;
            about(*id, "revoke", "the grace period ended".into())
        }
    })
}

/// The state a stored grant moves to: active again, or pending until it is revoked.
enum GrantState {
    Active,
    Pending(Stamp),
}

async fn set_state<C: ConnectionTrait>(
    db: &C,
    ids: &[i64],
    state: GrantState,
    now: Stamp,
) -> Result<(), DbErr> {
    let (name, pending_since, revoke_after) = match state {
        GrantState::Active => ("active", None, None),
        GrantState::Pending(at) => ("pending", Some(now), Some(at)),
    };
    for chunk in ids.chunks(super::roster::CHUNK) {
        access_grant::Entity::update_many()
            .col_expr(access_grant::Column::State, Expr::value(name))
            .col_expr(
                access_grant::Column::PendingSince,
                Expr::value(pending_since),
            )
            .col_expr(access_grant::Column::RevokeAfter, Expr::value(revoke_after))
            .col_expr(access_grant::Column::ChangedAt, Expr::value(now))
            .filter(access_grant::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Mark persons as changed at `now` (their `dateLastModified` for apps).
pub(super) async fn touch_persons<C: ConnectionTrait>(
    db: &C,
    persons: &[i64],
    now: Stamp,
) -> Result<(), DbErr> {
    use super::entities::person;
    for chunk in persons.chunks(500) {
        person::Entity::update_many()
            .col_expr(person::Column::UpdatedAt, Expr::value(now))
            .filter(person::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// A grant's journal entry: the level as the field, the group it reaches (or the level) as
/// the value.
fn entry<'a>(g: Granted<'a>, operation: &'a str, source: &str, rule: String) -> Entry<'a> {
    Entry {
        entity: "grant",
        entity_id: Some(g.grant),
        person_id: Some(g.person),
        operation,
        field: Some(g.level),
        old: None,
        new: Some(
            g.group
                .map(|k| format!("group {k}"))
                .unwrap_or_else(|| g.level.to_owned()),
        ),
        source: Owner::parse(source).unwrap_or(Owner::Local),
        rule,
    }
}

/// A grant as its journal entry names it: which, whose, how far, and which group.
struct Granted<'a> {
    grant: i64,
    person: i64,
    level: &'a str,
    group: Option<&'a str>,
}

/// A new grant's row.
fn grant_row(
    school: &str,
    d: &Derived,
    origin: &str,
    now: Stamp,
    by: Option<(&str, Option<String>)>,
) -> access_grant::ActiveModel {
    access_grant::ActiveModel {
        id: NotSet,
        school_id: Set(school.to_owned()),
        person_id: Set(d.person),
        level: Set(d.level.as_str().to_owned()),
        group_id: Set(d.group),
        origin: Set(origin.into()),
        rule: Set(d.rule.clone()),
        source: Set(d.source.clone()),
        fact: Set(d.fact.clone()),
        state: Set("active".into()),
        since: Set(now),
        pending_since: Set(None),
        revoke_after: Set(None),
        created_by: Set(by.as_ref().map(|(who, _)| (*who).to_owned())),
        note: Set(by.and_then(|(_, note)| note)),
        changed_at: Set(Some(now)),
    }
}

async fn revoke<C: ConnectionTrait>(db: &C, ids: &[i64], now: Stamp) -> Result<(), DbErr> {
    for chunk in ids.chunks(super::roster::CHUNK) {
        access_grant::Entity::update_many()
            .col_expr(access_grant::Column::State, Expr::value("revoked"))
            .col_expr(access_grant::Column::ChangedAt, Expr::value(now))
            .filter(access_grant::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// A stored grant as it counts for what a person sees.
fn holding(g: access_grant::Model) -> Option<Holding> {
    Some(Holding {
        id: g.id,
        level: Level::parse(&g.level)?,
        group: g.group_id,
        rule: g.rule,
        source: g.source,
        fact: g.fact,
        state: state_of(&g.state),
        since: g.since.at(),
        revoke_after: g.revoke_after.map(Stamp::at),
    })
}

/// A person's grants that count (active and pending), manual ones included.
pub async fn holdings<C: ConnectionTrait>(db: &C, person: i64) -> Result<Vec<Holding>, DbErr> {
    Ok(access_grant::Entity::find()
        .filter(access_grant::Column::PersonId.eq(person))
        .filter(access_grant::Column::State.is_in(["active", "pending"]))
        .all(db)
        .await?
        .into_iter()
        .filter_map(holding)
        .collect())
}

/// Every grant of a school that counts, by person.
pub async fn of_school<C: ConnectionTrait>(
    db: &C,
    school: &str,
) -> Result<BTreeMap<i64, Vec<Holding>>, DbErr> {
    let mut out: BTreeMap<i64, Vec<Holding>> = BTreeMap::new();
    for g in access_grant::Entity::find()
        .filter(access_grant::Column::SchoolId.eq(school))
        .filter(access_grant::Column::State.is_in(["active", "pending"]))
        .all(db)
        .await?
    {
        let person = g.person_id;
        if let Some(h) = holding(g) {
            out.entry(person).or_default().push(h);
        }
    }
    Ok(out)
}

/// A grant an operator gives by hand.
pub struct ManualGrant<'a> {
    pub school: &'a str,
    pub person: i64,
    pub level: Level,
    /// The group it reaches (id and key), or none for the whole school.
    pub group: Option<(i64, &'a str)>,
    pub note: Option<String>,
}

/// Add a grant by hand. Derivation never touches it; only `remove_manual` does.
pub async fn add_manual<C: ConnectionTrait>(
    db: &C,
    m: ManualGrant<'_>,
    who: &str,
) -> Result<i64, DbErr> {
    let ctx = ApplyContext::by_hand(m.school);
    let grant = Derived {
        person: m.person,
        level: m.level,
        group: m.group.map(|(id, _)| id),
        rule: MANUAL.into(),
        source: "local".into(),
        fact: format!("granted by hand by {who}"),
    };
    let row = grant_row(m.school, &grant, MANUAL, ctx.now, Some((who, m.note)));
    let id = access_grant::Entity::insert(row)
        .exec(db)
        .await?
        .last_insert_id;
    touch_persons(db, &[m.person], ctx.now).await?;
    let mut journal = Journal::new(&ctx);
    let granted = Granted {
        grant: id,
        person: m.person,
        level: m.level.as_str(),
        group: m.group.map(|(_, k)| k),
    };
    let rule = format!("manual: by hand, by {who}");
    journal.add(entry(granted, "grant", "local", rule));
    journal.write(db).await?;
    Ok(id)
}

/// Why a grant cannot be removed by hand.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("there is no grant {0} (see `rostersync permissions PERSON`)")]
    NotFound(i64),
    #[error(
        "grant {id} is derived by rule {rule} from a fact of the {from} ({fact}); it goes when \
         the fact goes. Change the fact at the source"
    )]
    Derived {
        id: i64,
        rule: String,
        from: String,
        fact: String,
    },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Remove a manual grant.
pub async fn remove_manual<C: ConnectionTrait>(
    db: &C,
    id: i64,
    who: &str,
) -> Result<access_grant::Model, RemoveError> {
    let Some(g) = access_grant::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|g| g.state != "revoked")
    else {
        return Err(RemoveError::NotFound(id));
    };
    if g.origin != MANUAL {
        return Err(RemoveError::Derived {
            id,
            rule: g.rule,
            from: g.source,
            fact: g.fact,
        });
    }
    let now = Stamp::now();
    revoke(db, &[id], now).await?;
    touch_persons(db, &[g.person_id], now).await?;
    let ctx = ApplyContext::by_hand(&g.school_id);
    let mut journal = Journal::new(&ctx);
    let granted = Granted {
        grant: id,
        person: g.person_id,
        level: &g.level,
        group: None,
    };
    let rule = format!("manual: removed by hand, by {who}");
    journal.add(Entry {
        new: None,
        ..entry(granted, "revoke", "local", rule)
    });
    journal.write(db).await?;
    Ok(g)
}
