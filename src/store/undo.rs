//! Writing an undo: what stands in its way (records purged since, later changes to the same
//! records), and the reverts themselves, each journaled under the operation that does it so
//! an undo reads like any run and can itself be undone.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};
use serde::Serialize;

use super::Stamp;
use super::entities::{change_entry, membership, person, person_role, roster_group};
use super::owners::Owners;
use super::roster::{ApplyContext, Entry, Journal};
use crate::model::revert::Revert;
use crate::model::{Field, Owner, PersonKind};

/// Later changes to records an undo would put back, by the run (or `None`: by hand) that
/// made them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Later {
    pub run: Option<i64>,
    pub changes: i64,
}

impl Later {
    /// In words, as `undo` and the console say it.
    pub fn said(&self) -> String {
        match self.run {
            Some(run) => format!("run {run} changed {} of these records since", self.changes),
            None => format!("{} edit(s) by hand to these records since", self.changes),
        }
    }
}

/// What stands in an undo's way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Obstacles {
    /// Persons and groups the undo would touch that were purged since: they cannot come back.
    pub purged: Vec<String>,
    pub later: Vec<Later>,
}

/// Check `reverts` (of run `run`) against the store as it is now.
pub async fn obstacles<C: ConnectionTrait>(
    db: &C,
    run: i64,
    reverts: &[Revert],
) -> Result<Obstacles, DbErr> {
    let persons: BTreeSet<i64> = reverts.iter().filter_map(Revert::person).collect();
    let groups: BTreeSet<i64> = reverts.iter().filter_map(Revert::group).collect();
    let mut out = Obstacles::default();
    let live_persons: BTreeSet<i64> = person::Entity::find()
        .select_only()
        .column(person::Column::Id)
        .filter(person::Column::Id.is_in(persons.iter().copied()))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    out.purged.extend(
        persons
            .difference(&live_persons)
            .map(|p| format!("person {p}")),
    );
    let live_groups: BTreeSet<i64> = roster_group::Entity::find()
        .select_only()
        .column(roster_group::Column::Id)
        .filter(roster_group::Column::Id.is_in(groups.iter().copied()))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    out.purged.extend(
        groups
            .difference(&live_groups)
            .map(|g| format!("group {g}")),
    );
    out.later = later_changes(db, run, &persons, &groups).await?;
    Ok(out)
}

/// Journal entries after run `run`'s own that touch the same persons or groups. Derived or
/// informational entries (grants, conflicts, rejected records) do not count.
async fn later_changes<C: ConnectionTrait>(
    db: &C,
    run: i64,
    persons: &BTreeSet<i64>,
    groups: &BTreeSet<i64>,
) -> Result<Vec<Later>, DbErr> {
    // A run with no journal row of its own created every person it touched (their rows keep
    // those creates), so any row about them is later than the run: there is no watermark.
    let last: i64 = change_entry::Entity::find()
        .select_only()
        .column_as(change_entry::Column::Id.max(), "last")
        .filter(change_entry::Column::RunId.eq(run))
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten()
        .unwrap_or(0);
    let touches = sea_orm::Condition::any()
        .add(change_entry::Column::PersonId.is_in(persons.iter().copied()))
        .add(
            sea_orm::Condition::all()
                .add(change_entry::Column::Entity.eq("group"))
                .add(change_entry::Column::EntityId.is_in(groups.iter().copied())),
        );
    let rows: Vec<Option<i64>> = change_entry::Entity::find()
        .select_only()
        .column(change_entry::Column::RunId)
        .filter(change_entry::Column::Id.gt(last))
        .filter(
            sea_orm::Condition::any()
                .add(change_entry::Column::RunId.is_null())
                .add(change_entry::Column::RunId.ne(run)),
        )
        .filter(touches)
        .filter(change_entry::Column::Entity.ne("grant"))
        .filter(change_entry::Column::Operation.is_not_in(["conflict", "reject"]))
        .into_tuple()
        .all(db)
        .await?;
    let mut by_run: BTreeMap<Option<i64>, i64> = BTreeMap::new();
    for r in rows {
        *by_run.entry(r).or_default() += 1;
    }
    Ok(by_run
        .into_iter()
        .map(|(run, changes)| Later { run, changes })
        .collect())
}

/// Put back `reverts` in the caller's transaction, journaled in `ctx.run`; returns for each
/// whether it changed anything (a membership already there changes nothing).
pub async fn write<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    reverts: &[Revert],
    rule: &str,
) -> Result<Vec<bool>, DbErr> {
    super::schools::roster_changed(db, ctx.school).await?;
    let mut journal = Journal::new(ctx);
    let mut done = Vec::with_capacity(reverts.len());
    for r in reverts {
        let changed = match r {
            Revert::RemoveGroup { .. }
            | Revert::RestoreGroup { .. }
            | Revert::SetGroupField { .. } => group(db, ctx, r, rule, &mut journal).await?,
            Revert::Join { .. } | Revert::Leave { .. } => {
                link(db, ctx, r, rule, &mut journal).await?
            }
            _ => person_part(db, ctx, r, rule, &mut journal).await?,
        };
        done.push(changed);
    }
    journal.write(db).await?;
    Ok(done)
}

fn entry<'a>(entity: &'a str, operation: &'a str, source: Owner, rule: &str) -> Entry<'a> {
    Entry {
        entity,
        entity_id: None,
        person_id: None,
        operation,
        field: None,
        old: None,
        new: None,
        source,
        rule: rule.to_owned(),
    }
}

async fn group<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    r: &Revert,
    rule: &str,
    journal: &mut Journal<'_>,
) -> Result<bool, DbErr> {
    let (id, operation, update) = match r {
        Revert::RemoveGroup { group } => (
            *group,
            "remove",
            roster_group::Entity::update_many()
                .col_expr(roster_group::Column::RemovedAt, Expr::value(ctx.now))
                .col_expr(
                    roster_group::Column::PurgeAfter,
                    Expr::value(ctx.now + ctx.retention),
                )
                .filter(roster_group::Column::RemovedAt.is_null()),
        ),
        Revert::RestoreGroup { group } => (
            *group,
            "restore",
            roster_group::Entity::update_many()
                .col_expr(
                    roster_group::Column::RemovedAt,
                    Expr::value(Option::<Stamp>::None),
                )
                .col_expr(
                    roster_group::Column::PurgeAfter,
                    Expr::value(Option::<Stamp>::None),
                ),
        ),
        Revert::SetGroupField {
            group, field, to, ..
        } => {
            let column = match field.as_str() {
                "name" => roster_group::Column::Name,
                "year_group" => roster_group::Column::YearGroup,
                "department" => roster_group::Column::Department,
                "kind" => roster_group::Column::Kind,
                _ => return Ok(false),
            };
            (
                *group,
                "update",
                roster_group::Entity::update_many().col_expr(column, Expr::value(to.clone())),
            )
        }
        _ => return Ok(false),
    };
    let changed = update
        .col_expr(roster_group::Column::UpdatedAt, Expr::value(ctx.now))
        .filter(roster_group::Column::Id.eq(id))
        .exec(db)
        .await?
        .rows_affected
        > 0;
    if changed {
        let mut e = entry("group", operation, Owner::Local, rule);
        e.entity_id = Some(id);
        if let Revert::SetGroupField {
            field, from, to, ..
        } = r
        {
            e = e.about(Some(field.as_str()), from.clone(), to.clone());
        }
        journal.add(e);
    }
    Ok(changed)
}

async fn link<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    r: &Revert,
    rule: &str,
    journal: &mut Journal<'_>,
) -> Result<bool, DbErr> {
    let (Revert::Join {
        person,
        group,
        role,
        owner,
    }
    | Revert::Leave {
        person,
        group,
        role,
        owner,
    }) = r
    else {
        return Ok(false);
    };
    // A tombstoned group still has its row: a link to it comes back with it.
    let Some(group_id) = roster_group::Entity::find()
        .filter(roster_group::Column::SchoolId.eq(ctx.school))
        .filter(roster_group::Column::Key.eq(group.as_str()))
        .one(db)
        .await?
        .map(|g| g.id)
    else {
        return Ok(false);
    };
    let existing = membership::Entity::find_by_id((*person, group_id, role.clone()))
        .one(db)
        .await?;
    let join = matches!(r, Revert::Join { .. });
    let changed = match (join, existing) {
        (true, None) => {
            membership::Entity::insert(membership::ActiveModel {
                person_id: Set(*person),
                group_id: Set(group_id),
                role: Set(role.clone()),
                source: Set(owner.as_str().to_owned()),
                since: Set(ctx.now),
            })
            .exec(db)
            .await?;
            true
        }
        (false, Some(_)) => {
            membership::Entity::delete_by_id((*person, group_id, role.clone()))
                .exec(db)
                .await?;
            true
        }
        _ => false,
    };
    if changed {
        let mut e = entry("person", if join { "join" } else { "leave" }, *owner, rule);
        e.entity_id = Some(*person);
        e.person_id = Some(*person);
        let role = Some(role.clone());
        let (old, new) = if join { (None, role) } else { (role, None) };
        journal.add(e.about(Some(group.as_str()), old, new));
    }
    Ok(changed)
}

async fn person_part<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    r: &Revert,
    rule: &str,
    journal: &mut Journal<'_>,
) -> Result<bool, DbErr> {
    match r {
        Revert::RemovePerson { person, kind } | Revert::RestorePerson { person, kind } => {
            let remove = matches!(r, Revert::RemovePerson { .. });
            let (removed_at, purge_after) = if remove {
                (Some(ctx.now), Some(ctx.now + ctx.retention))
            } else {
                (None, None)
            };
            let mut q = person::Entity::update_many()
                .col_expr(person::Column::RemovedAt, Expr::value(removed_at))
                .col_expr(person::Column::PurgeAfter, Expr::value(purge_after))
                .col_expr(person::Column::UpdatedAt, Expr::value(ctx.now))
                .filter(person::Column::Id.eq(*person));
            q = if remove {
                q.filter(person::Column::RemovedAt.is_null())
            } else {
                q.filter(person::Column::RemovedAt.is_not_null())
            };
            let changed = q.exec(db).await?.rows_affected > 0;
            if changed {
                let op = if remove { "remove" } else { "restore" };
                journal.add(
                    Entry::person(*kind, *person, op, Owner::Local, rule.to_owned())
                        .about(None, None, None),
                );
            }
            Ok(changed)
        }
        Revert::SetField {
            person,
            kind,
            field,
            from,
            to,
            owner,
        } => {
            set_field(db, *person, *field, to.clone(), *owner).await?;
            journal.add(
                Entry::person(*kind, *person, "update", *owner, rule.to_owned()).about(
                    Some(field.as_str()),
                    from.clone(),
                    to.clone(),
                ),
            );
            Ok(true)
        }
        _ => keys_and_roles(db, ctx, r, rule, journal).await,
    }
}

/// One field of a person back to `value`, owned by `owner` (or no owner when cleared).
async fn set_field<C: ConnectionTrait>(
    db: &C,
    id: i64,
    field: Field,
    value: Option<String>,
    owner: Owner,
) -> Result<(), DbErr> {
    let Some(row) = person::Entity::find_by_id(id).one(db).await? else {
        return Ok(());
    };
    let mut owners = Owners::parse(&row.owners);
    match &value {
        Some(_) => owners.set(field.as_str(), owner),
        None => owners.clear(field.as_str()),
    }
    let mut update = person::ActiveModel {
        id: Set(id),
        owners: Set(owners.to_text()),
        updated_at: Set(Stamp::now()),
        ..Default::default()
    };
    match field {
        Field::FamilyName => update.family_name = Set(value),
        Field::Prefix => update.prefix = Set(value),
        Field::GivenName => update.given_name = Set(value),
        Field::Email => update.email = Set(value),
        Field::YearGroup => update.year_group = Set(value),
        Field::EndDate => update.end_date = Set(value.and_then(|d| d.parse().ok())),
    }
    person::Entity::update(update).exec(db).await?;
    Ok(())
}

async fn keys_and_roles<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    r: &Revert,
    rule: &str,
    journal: &mut Journal<'_>,
) -> Result<bool, DbErr> {
    let Some(said) = key_or_role_said(r) else {
        return Ok(false);
    };
    write_key_or_role(db, ctx, r).await?;
    journal.add(
        Entry::person(
            said.kind,
            said.person,
            said.operation,
            said.owner,
            rule.to_owned(),
        )
        .about(Some(said.field), said.old, said.new),
    );
    Ok(true)
}

/// How a key or role put back reads in the journal.
struct Said<'a> {
    person: i64,
    kind: PersonKind,
    operation: &'static str,
    field: &'a str,
    old: Option<String>,
    new: Option<String>,
    owner: Owner,
}

/// The journal's words for a key or role revert; `None` for any other revert.
fn key_or_role_said(r: &Revert) -> Option<Said<'_>> {
    let (person, kind, owner) = match r {
        Revert::AddKey {
            person,
            kind,
            owner,
            ..
        }
        | Revert::RemoveKey {
            person,
            kind,
            owner,
            ..
        }
        | Revert::SetEckid {
            person,
            kind,
            owner,
            ..
        }
        | Revert::AddRole {
            person,
            kind,
            owner,
            ..
        }
        | Revert::RemoveRole {
            person,
            kind,
            owner,
            ..
        } => (*person, *kind, *owner),
        _ => return None,
    };
    let (operation, field, old, new) = match r {
        Revert::AddKey { key, value, .. } => ("link-key", key.as_str(), None, Some(value)),
        Revert::RemoveKey { key, value, .. } => ("unlink-key", key.as_str(), Some(value), None),
        Revert::SetEckid { from, to, .. } => ("relink", "eckid", Some(from), Some(to)),
        Revert::AddRole { role, scope, .. } => ("role-add", role.as_str(), None, Some(scope)),
        Revert::RemoveRole { role, scope, .. } => ("role-remove", role.as_str(), Some(scope), None),
        _ => return None,
    };
    Some(Said {
        person,
        kind,
        operation,
        field,
        old: old.cloned(),
        new: new.cloned(),
        owner,
    })
}

/// The one statement that puts a key or role back (or takes it away again).
async fn write_key_or_role<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    r: &Revert,
) -> Result<(), DbErr> {
    match r {
        Revert::AddKey {
            person, key, value, ..
        } => {
            super::keys::write(db, *person, key, value).await?;
        }
        Revert::RemoveKey {
            person, key, value, ..
        } => {
            super::keys::remove(db, *person, key, value).await?;
        }
        Revert::SetEckid { person, to, .. } => {
            super::keys::write(db, *person, "eckid", to).await?;
        }
        Revert::AddRole {
            person,
            role,
            scope,
            owner,
            ..
        } => {
            person_role::Entity::insert(person_role::ActiveModel {
                person_id: Set(*person),
                role: Set(role.clone()),
                source: Set(owner.as_str().to_owned()),
                scope: Set(scope.clone()),
                since: Set(ctx.now),
            })
            .exec(db)
            .await?;
        }
        Revert::RemoveRole {
            person,
            role,
            scope,
            owner,
            ..
        } => {
            person_role::Entity::delete_many()
                .filter(person_role::Column::PersonId.eq(*person))
                .filter(person_role::Column::Role.eq(role.as_str()))
                .filter(person_role::Column::Source.eq(owner.as_str()))
                .filter(person_role::Column::Scope.eq(scope.as_str()))
                .exec(db)
                .await?;
        }
        _ => {}
    }
    Ok(())
}
