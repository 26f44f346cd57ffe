//! Removals the brakes held: stored with the run that held them, shown by `runs show`, and
//! applied by `approve --run N`. A later trusted run of the same school supersedes them (its
//! own plan is the current truth), so an approval never applies a stale decision.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};

use super::Stamp;
use super::entities::{change_entry, held_change, membership, person, roster_group};
use crate::model::Link;
use crate::model::held::{HeldRemoval, Kind};

pub use held_change::Model as HeldChange;

pub const HELD: &str = "held";
pub const APPROVED: &str = "approved";
pub const SUPERSEDED: &str = "superseded";

/// The detail column: what a membership removal would remove.
#[derive(Debug, Serialize, Deserialize)]
struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// Store what run `run` held; earlier held changes of the school are superseded by it.
pub async fn hold<C: ConnectionTrait>(
    db: &C,
    run: i64,
    school: &str,
    held: &[HeldRemoval],
) -> Result<(), DbErr> {
    supersede(db, school).await?;
    let rows: Vec<held_change::ActiveModel> = held
        .iter()
        .map(|h| {
            let detail = Detail {
                group: h.link.as_ref().map(|l| l.group.clone()),
                role: h.link.as_ref().map(|l| l.role.clone()),
            };
            held_change::ActiveModel {
                run_id: Set(run),
                school_id: Set(school.to_owned()),
                kind: Set(h.kind.as_str().to_owned()),
                operation: Set("remove".into()),
                entity_id: Set(Some(h.entity_id)),
                detail: Set(serde_json::to_string(&detail).unwrap_or_else(|_| "{}".into())),
                state: Set(HELD.into()),
                decided_at: Set(None),
                decided_by: Set(None),
                ..Default::default()
            }
        })
        .collect();
    for chunk in rows.chunks(500) {
        held_change::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await?;
    }
    Ok(())
}

/// A trusted run decided afresh: what earlier runs held no longer stands.
pub async fn supersede<C: ConnectionTrait>(db: &C, school: &str) -> Result<(), DbErr> {
    held_change::Entity::update_many()
        .col_expr(held_change::Column::State, Expr::value(SUPERSEDED))
        .col_expr(held_change::Column::DecidedAt, Expr::value(Utc::now()))
        .filter(held_change::Column::SchoolId.eq(school))
        .filter(held_change::Column::State.eq(HELD))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn of_run<C: ConnectionTrait>(db: &C, run: i64) -> Result<Vec<HeldChange>, DbErr> {
    held_change::Entity::find()
        .filter(held_change::Column::RunId.eq(run))
        .order_by_asc(held_change::Column::Id)
        .all(db)
        .await
}

/// The removals of `school` still waiting for approval.
pub async fn waiting_of<C: ConnectionTrait>(
    db: &C,
    school: &str,
) -> Result<Vec<HeldChange>, DbErr> {
    held_change::Entity::find()
        .filter(held_change::Column::SchoolId.eq(school))
        .filter(held_change::Column::State.eq(HELD))
        .all(db)
        .await
}

/// How many changes are waiting for approval, per school.
pub async fn waiting<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, i64, usize)>, DbErr> {
    let rows = held_change::Entity::find()
        .filter(held_change::Column::State.eq(HELD))
        .order_by_asc(held_change::Column::SchoolId)
        .all(db)
        .await?;
    let mut out: Vec<(String, i64, usize)> = Vec::new();
    for r in rows {
        match out.last_mut() {
            Some((s, run, n)) if *s == r.school_id && *run == r.run_id => *n += 1,
            _ => out.push((r.school_id, r.run_id, 1)),
        }
    }
    Ok(out)
}

/// One held removal as it will be applied.
pub struct Approved {
    pub row: HeldChange,
    /// The membership's group and role, for memberships.
    pub link: Option<Link>,
    /// The removal still made sense (the record was still there) and was applied.
    pub applied: bool,
}

/// When a removal is approved, and by whom: the approval's own run, its time, who approved
/// it, and until when the tombstones it makes are kept.
pub struct Approval<'a> {
    pub run: i64,
    pub now: DateTime<Utc>,
    pub purge_after: DateTime<Utc>,
    pub by: &'a str,
}

/// Apply the held removals of `run` as of `now`; mark them approved by `by`.
/// Records that came back in the meantime are left alone (and reported as such).
pub async fn approve<C: ConnectionTrait>(
    db: &C,
    rows: Vec<HeldChange>,
    approval: &Approval<'_>,
) -> Result<Vec<Approved>, DbErr> {
    let schools: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.school_id.as_str()).collect();
    super::schools::roster_changed_of(db, schools).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (applied, link) = apply_held(db, &row, approval).await?;
        if applied {
            journal_approved(db, &row, link.as_ref(), approval).await?;
        }
        held_change::Entity::update_many()
            .col_expr(held_change::Column::State, Expr::value(APPROVED))
            .col_expr(held_change::Column::DecidedAt, Expr::value(approval.now))
            .col_expr(held_change::Column::DecidedBy, Expr::value(approval.by))
            .filter(held_change::Column::Id.eq(row.id))
            .exec(db)
            .await?;
        out.push(Approved { row, link, applied });
    }
    Ok(out)
}

/// Apply one held removal: whether it still applied (the record was still there), and for a
/// membership its group and role.
async fn apply_held<C: ConnectionTrait>(
    db: &C,
    row: &HeldChange,
    approval: &Approval<'_>,
) -> Result<(bool, Option<Link>), DbErr> {
    let id = row.entity_id.unwrap_or_default();
    let (now, purge_after) = (Stamp::from(approval.now), Stamp::from(approval.purge_after));
    match Kind::parse(&row.kind) {
        Some(Kind::Pupils | Kind::Staff) => {
            let r = person::Entity::update_many()
                .col_expr(person::Column::RemovedAt, Expr::value(now))
                .col_expr(person::Column::PurgeAfter, Expr::value(purge_after))
                .col_expr(person::Column::UpdatedAt, Expr::value(now))
                .filter(person::Column::Id.eq(id))
                .filter(person::Column::RemovedAt.is_null())
                .exec(db)
                .await?;
            Ok((r.rows_affected > 0, None))
        }
        Some(Kind::Groups) => {
            let r = roster_group::Entity::update_many()
                .col_expr(roster_group::Column::RemovedAt, Expr::value(now))
                .col_expr(roster_group::Column::PurgeAfter, Expr::value(purge_after))
                .col_expr(roster_group::Column::UpdatedAt, Expr::value(now))
                .filter(roster_group::Column::Id.eq(id))
                .filter(roster_group::Column::RemovedAt.is_null())
                .exec(db)
                .await?;
            Ok((r.rows_affected > 0, None))
        }
        Some(Kind::Memberships) | None => leave_held_group(db, row, id).await,
    }
}

/// A held membership removal: the person leaves the group in the role the detail names.
async fn leave_held_group<C: ConnectionTrait>(
    db: &C,
    row: &HeldChange,
    person: i64,
) -> Result<(bool, Option<Link>), DbErr> {
    let detail: Detail = serde_json::from_str(&row.detail).unwrap_or(Detail {
        group: None,
        role: None,
    });
    let (Some(group), Some(role)) = (detail.group, detail.role) else {
        return Ok((false, None));
    };
    let group_id = roster_group::Entity::find()
        .filter(roster_group::Column::SchoolId.eq(row.school_id.as_str()))
        .filter(roster_group::Column::Key.eq(group.as_str()))
        .one(db)
        .await?
        .map(|g| g.id);
    let applied = match group_id {
        Some(g) => {
            membership::Entity::delete_many()
                .filter(membership::Column::PersonId.eq(person))
                .filter(membership::Column::GroupId.eq(g))
                .filter(membership::Column::Role.eq(role.as_str()))
                .exec(db)
                .await?
                .rows_affected
                > 0
        }
        None => false,
    };
    Ok((applied, Some(Link { group, role })))
}

/// The journal row of an approved removal, in the approval's run.
async fn journal_approved<C: ConnectionTrait>(
    db: &C,
    row: &HeldChange,
    link: Option<&Link>,
    approval: &Approval<'_>,
) -> Result<(), DbErr> {
    let id = row.entity_id.unwrap_or_default();
    let kind = Kind::parse(&row.kind);
    let (entity, person_id) = match kind {
        Some(Kind::Pupils) => ("pupil", Some(id)),
        Some(Kind::Staff) => ("staff", Some(id)),
        Some(Kind::Groups) => ("group", None),
        Some(Kind::Memberships) | None => ("person", Some(id)),
    };
    let leaves = kind == Some(Kind::Memberships);
    change_entry::Entity::insert(change_entry::ActiveModel {
        run_id: Set(Some(approval.run)),
        school_id: Set(row.school_id.clone()),
        entity: Set(entity.to_owned()),
        entity_id: Set(Some(id)),
        person_id: Set(person_id),
        operation: Set(if leaves { "leave" } else { "remove" }.to_owned()),
        field: Set(link.map(|l| l.group.clone())),
        old_value: Set(link.map(|l| l.role.clone())),
        new_value: Set(None),
        source: Set("local".to_owned()),
        rule: Set(format!(
            "held by the brakes in run {}; approved by {}",
            row.run_id, approval.by
        )),
        at: Set(approval.now.into()),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}
