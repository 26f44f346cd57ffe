//! Undo a run: its journal, read backwards, is the plan of what to put back. Pure: journal
//! rows in, reverts out; the store writes them (`store::undo`) as a run of its own, whose
//! journal an undo can in turn undo. Grants are not reverted one by one: they are derived
//! again from the restored roster.

use serde::Serialize;

use crate::model::revert::{Revert, UndoPlan};
use crate::model::{Field, Owner, PersonKind};
use crate::store::journal::{self, Change};
use crate::store::roster::ApplyContext;
use crate::store::undo::{self as writer, Obstacles};
use crate::store::{Store, StoreError, WriteKind, runs, schools, source_state};
use crate::sync::report::{Counts, KindCounts, Outcome};
use crate::sync::run::Rules;

/// What to undo, and how.
#[derive(Debug, Clone)]
pub struct UndoRequest {
    pub run: i64,
    /// Say what would be put back; change nothing, record nothing.
    pub dry_run: bool,
    /// Undo even when later runs changed the same records.
    pub force: bool,
    /// Who asks (for the journal).
    pub by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("there is no run {0} (see `rostersync runs`)")]
    NoSuchRun(i64),
    #[error("run {run} changed nothing that can be undone: {why}")]
    NothingToUndo { run: i64, why: String },
    #[error(
        "run {run} cannot be undone: {} were purged since (retention ended); they cannot come \
         back",
        purged.join(", ")
    )]
    Purged { run: i64, purged: Vec<String> },
    #[error(
        "later changes touch the same records: {}. Undoing run {run} would overwrite them; \
         look at them (`rostersync changes --run M`), then undo them first or use --force",
        describe_later(later)
    )]
    LaterChanges { run: i64, later: Vec<writer::Later> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UndoError {
    /// A refusal the operator can act on (exit 1), rather than bad input (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, UndoError::NoSuchRun(_))
    }
}

fn describe_later(later: &[writer::Later]) -> String {
    later
        .iter()
        .map(|l| match l.run {
            Some(r) => format!("run {r} ({} change(s))", l.changes),
            None => format!("edits by hand ({} change(s))", l.changes),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an undo did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct UndoReport {
    pub school: String,
    /// The run undone.
    pub undone: i64,
    /// The undo's own run; none for a dry run.
    pub run: Option<i64>,
    pub dry_run: bool,
    pub plan: UndoPlan,
    /// What would have stopped it (a forced or dry run says it anyway).
    pub obstacles: Obstacles,
    pub counts: Counts,
    pub message: String,
}

/// Undo run `req.run`: put back what its journal says it changed, as a run of its own
/// (trigger `undo`) in one transaction that holds the school's row lock; grants are derived
/// again from the restored roster; the next sync compares the school in full.
pub async fn undo(
    store: &Store,
    rules: &Rules,
    req: &UndoRequest,
) -> Result<UndoReport, UndoError> {
    let db_err = |e| UndoError::Store(store.db_error(e));
    let target = runs::get(store.db(), req.run)
        .await
        .map_err(db_err)?
        .ok_or(UndoError::NoSuchRun(req.run))?;
    let nothing = |why: &str| UndoError::NothingToUndo {
        run: req.run,
        why: why.to_owned(),
    };
    if target.dry_run {
        return Err(nothing("it was a dry run"));
    }
    if target.finished_at.is_none() {
        return Err(nothing("it never finished, so nothing of it was applied"));
    }
    let changes = journal::of_run(store.db(), req.run).await.map_err(db_err)?;
    let plan = plan(&changes);
    if plan.reverts.is_empty() {
        return Err(nothing("its journal holds no change of the roster"));
    }
    let school = target.school_id.clone();
    let mut report = UndoReport {
        school: school.clone(),
        undone: req.run,
        run: None,
        dry_run: req.dry_run,
        counts: Counts::default(),
        message: String::new(),
        obstacles: Obstacles::default(),
        plan,
    };
    if req.dry_run {
        report.obstacles = writer::obstacles(store.db(), req.run, &report.plan.reverts)
            .await
            .map_err(db_err)?;
        report.message = format!(
            "dry run: undoing run {} of school {school} would put back {} change(s)",
            req.run,
            report.plan.reverts.len()
        );
        return Ok(report);
    }
    write_undo(store, rules, req, &mut report).await?;
    Ok(report)
}

/// The undo's transaction: check, revert, derive grants, record the run.
async fn write_undo(
    store: &Store,
    rules: &Rules,
    req: &UndoRequest,
    report: &mut UndoReport,
) -> Result<(), UndoError> {
    let db_err = |e| UndoError::Store(store.db_error(e));
    let school = report.school.clone();
    let txn = store.begin_write(WriteKind::Apply).await.map_err(db_err)?;
    schools::lock_for_apply(&txn, &school, None)
        .await
        .map_err(db_err)?;
    report.obstacles = writer::obstacles(&txn, req.run, &report.plan.reverts)
        .await
        .map_err(db_err)?;
    if !report.obstacles.purged.is_empty() {
        return Err(UndoError::Purged {
            run: req.run,
            purged: report.obstacles.purged.clone(),
        });
    }
    if !report.obstacles.later.is_empty() && !req.force {
        return Err(UndoError::LaterChanges {
            run: req.run,
            later: report.obstacles.later.clone(),
        });
    }
    let run = runs::start(&txn, &school, "undo", false)
        .await
        .map_err(db_err)?;
    let now = crate::store::now();
    let ctx = ApplyContext {
        school: &school,
        now: now.into(),
        retention: rules.retention,
        run: Some(run),
        new_year: None,
    };
    let rule = format!("undo of run {}, by {}", req.run, req.by);
    let done = writer::write(&txn, &ctx, &report.plan.reverts, &rule)
        .await
        .map_err(db_err)?;
    report.counts = counts(&report.plan.reverts, &done);
    report.counts.grants =
        crate::sync::permissions::refresh(&txn, &school, Some(run), &rules.rights, false, now)
            .await
            .map_err(db_err)?;
    // The roster is no longer what the sources said: the next run compares it in full.
    schools::set_digest(&txn, &school, None)
        .await
        .map_err(db_err)?;
    source_state::forget_markers(&txn, &school)
        .await
        .map_err(db_err)?;
    let frozen = schools::row_in(&txn, &school)
        .await
        .map_err(db_err)?
        .is_some_and(|s| s.frozen_by.is_some());
    report.message = message(
        req.run,
        &school,
        done.iter().filter(|d| **d).count(),
        frozen,
    );
    runs::finish(
        &txn,
        run,
        runs::Finish {
            outcome: Outcome::Ok.as_str(),
            error_class: None,
            message: Some(report.message.clone()),
            counts: serde_json::to_value(report.counts).unwrap_or_default(),
        },
    )
    .await
    .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    report.run = Some(run);
    tracing::info!(school = %school, undone = req.run, run, reverted = done.len(), "Run undone.");
    Ok(())
}

fn message(undone: i64, school: &str, changed: usize, frozen: bool) -> String {
    let next = if frozen {
        format!(
            "the school is frozen, so syncs keep this roster until `rostersync school unfreeze \
             {school}`"
        )
    } else {
        format!(
            "the next ordinary sync may apply the source's data again: freeze the school \
             (`rostersync school freeze {school}`) while the school fixes its LAS"
        )
    };
    format!("undid run {undone} of school {school}: {changed} change(s) put back; {next}")
}

/// The undo's counts, in the words of any run: persons and groups removed, and those
/// otherwise put back (restored, fields, keys, roles) as updated, each once.
fn counts(reverts: &[Revert], done: &[bool]) -> Counts {
    let mut c = Counts::default();
    let mut updated = std::collections::BTreeSet::new();
    fn tally<'a>(c: &'a mut Counts, kind: &PersonKind) -> &'a mut KindCounts {
        match kind {
            PersonKind::Pupil => &mut c.pupils,
            PersonKind::Staff => &mut c.staff,
        }
    }
    for (r, _) in reverts.iter().zip(done).filter(|(_, d)| **d) {
        match r {
            Revert::RemoveGroup { .. } => c.groups.removed += 1,
            Revert::RestoreGroup { group } | Revert::SetGroupField { group, .. } => {
                if updated.insert((false, *group)) {
                    c.groups.updated += 1;
                }
            }
            Revert::RemovePerson { kind, .. } => tally(&mut c, kind).removed += 1,
            Revert::Join { .. } => c.memberships.added += 1,
            Revert::Leave { .. } => c.memberships.removed += 1,
            Revert::RestorePerson { person, kind }
            | Revert::SetField { person, kind, .. }
            | Revert::AddKey { person, kind, .. }
            | Revert::RemoveKey { person, kind, .. }
            | Revert::SetEckid { person, kind, .. }
            | Revert::AddRole { person, kind, .. }
            | Revert::RemoveRole { person, kind, .. } => {
                if updated.insert((true, *person)) {
                    tally(&mut c, kind).updated += 1;
                }
            }
        }
    }
    c
}

fn kind_of(entity: &str) -> Option<PersonKind> {
    match entity {
        "pupil" => Some(PersonKind::Pupil),
        "staff" => Some(PersonKind::Staff),
        _ => None,
    }
}

/// The reverts of `changes` (one run's journal, in the order it was written), newest first.
pub fn plan(changes: &[Change]) -> UndoPlan {
    let mut out = UndoPlan::default();
    for c in changes.iter().rev() {
        match revert_of(c) {
            Ok(r) => out.reverts.push(r),
            Err(Some(why)) => out.left.push(match c.id {
                Some(id) => format!("journal entry {id}: {why}"),
                None => format!(
                    "the {} of {} {}: {why}",
                    c.operation,
                    c.entity,
                    c.entity_id.unwrap_or_default()
                ),
            }),
            Err(None) => {}
        }
    }
    out
}

/// `Err(None)`: nothing to put back (a conflict, a rejected record, a grant, which is derived
/// again); `Err(Some(why))`: something an undo does not touch, said in the plan.
fn revert_of(c: &Change) -> Result<Revert, Option<String>> {
    if c.entity == "group" {
        return group_revert(c);
    }
    if c.entity == "school" {
        return Err(Some(format!(
            "a change of the school itself ({}) is not undone",
            c.field.as_deref().unwrap_or("-")
        )));
    }
    let Some(person) = c.person_id else {
        return Err(None);
    };
    match c.operation.as_str() {
        "link-key" | "unlink-key" | "join" | "leave" | "role-add" | "role-remove" => {
            facet_revert(c, person)
        }
        _ => person_revert(c, person),
    }
}

fn group_revert(c: &Change) -> Result<Revert, Option<String>> {
    let group = c.entity_id.ok_or(None)?;
    match c.operation.as_str() {
        "create" | "restore" => Ok(Revert::RemoveGroup { group }),
        "remove" => Ok(Revert::RestoreGroup { group }),
        "update" => Ok(Revert::SetGroupField {
            group,
            field: c.field.clone().ok_or(None)?,
            from: c.new_value.clone(),
            to: c.old_value.clone(),
        }),
        _ => Err(None),
    }
}

/// A person's record as a whole, its fields and its ECK-iD.
fn person_revert(c: &Change, person: i64) -> Result<Revert, Option<String>> {
    let owner = Owner::parse(&c.source).unwrap_or(Owner::Las);
    let kind = || kind_of(&c.entity).ok_or(None);
    let eckid = |kind| -> Result<Revert, Option<String>> {
        Ok(Revert::SetEckid {
            person,
            kind,
            from: c.new_value.clone().ok_or(None)?,
            to: c.old_value.clone().ok_or(None)?,
            owner,
        })
    };
    match c.operation.as_str() {
        "create" | "restore" => Ok(Revert::RemovePerson {
            person,
            kind: kind()?,
        }),
        "remove" => Ok(Revert::RestorePerson {
            person,
            kind: kind()?,
        }),
        "update" | "edit" if c.field.as_deref() == Some("eckid") => eckid(kind()?),
        "relink" => eckid(kind()?),
        "update" | "edit" => Ok(Revert::SetField {
            person,
            kind: kind()?,
            field: Field::from_name(c.field.as_deref().ok_or(None)?).ok_or(None)?,
            from: c.new_value.clone(),
            to: c.old_value.clone(),
            owner,
        }),
        "adopt" => Err(Some(format!(
            "person {person} stays adopted by its source (its fields stay locked)"
        ))),
        _ => Err(None),
    }
}

/// A person's keys, group links and roles.
fn facet_revert(c: &Change, person: i64) -> Result<Revert, Option<String>> {
    let owner = Owner::parse(&c.source).unwrap_or(Owner::Las);
    let kind = || kind_of(&c.entity).ok_or(None);
    let field = || c.field.clone().ok_or(None);
    let (old, new) = (|| c.old_value.clone(), || c.new_value.clone());
    Ok(match c.operation.as_str() {
        "link-key" => Revert::RemoveKey {
            person,
            kind: kind()?,
            key: field()?,
            value: new().ok_or(None)?,
            owner,
        },
        "unlink-key" => Revert::AddKey {
            person,
            kind: kind()?,
            key: field()?,
            value: old().ok_or(None)?,
            owner,
        },
        "join" => Revert::Leave {
            person,
            group: field()?,
            role: new().ok_or(None)?,
            owner,
        },
        "leave" => Revert::Join {
            person,
            group: field()?,
            role: old().ok_or(None)?,
            owner,
        },
        "role-add" => Revert::RemoveRole {
            person,
            kind: kind()?,
            role: field()?,
            scope: new().unwrap_or_default(),
            owner,
        },
        "role-remove" => Revert::AddRole {
            person,
            kind: kind()?,
            role: field()?,
            scope: old().unwrap_or_default(),
            owner,
        },
        _ => return Err(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: i64, entity: &str, operation: &str) -> Change {
        Change {
            id: Some(id),
            run_id: Some(7),
            school_id: "99XX00".into(),
            entity: entity.into(),
            entity_id: Some(40 + id),
            person_id: (entity != "group").then_some(40 + id),
            operation: operation.into(),
            field: None,
            old_value: None,
            new_value: None,
            source: "las".into(),
            rule: String::new(),
            at: crate::store::Stamp::now(),
        }
    }

    fn with(mut c: Change, field: &str, old: Option<&str>, new: Option<&str>) -> Change {
        c.field = Some(field.into());
        c.old_value = old.map(str::to_owned);
        c.new_value = new.map(str::to_owned);
        c
    }

    #[test]
    fn every_kind_of_change_is_put_back_newest_first() {
        let journal = [
            change(1, "group", "create"),
            change(2, "pupil", "create"),
            with(
                change(3, "pupil", "update"),
                "family_name",
                Some("Vries"),
                Some("Vriest"),
            ),
            with(change(4, "person", "join"), "G8A", None, Some("member")),
            with(change(5, "pupil", "leave"), "G7A", Some("member"), None),
            change(6, "staff", "remove"),
            with(change(7, "staff", "role-add"), "IB", None, Some("")),
            with(change(8, "pupil", "link-key"), "eckid", None, Some("E1")),
            with(
                change(9, "pupil", "relink"),
                "eckid",
                Some("E-old"),
                Some("E-new"),
            ),
        ];
        let p = plan(&journal);
        assert!(p.left.is_empty(), "{:?}", p.left);
        let got: Vec<&str> = p
            .reverts
            .iter()
            .map(|r| match r {
                Revert::RemoveGroup { .. } => "remove-group",
                Revert::RemovePerson { .. } => "remove-person",
                Revert::SetField { to, .. } => {
                    assert_eq!(to.as_deref(), Some("Vries"));
                    "set-field"
                }
                Revert::Leave { group, .. } => {
                    assert_eq!(group, "G8A");
                    "leave"
                }
                Revert::Join { group, role, .. } => {
                    assert_eq!((group.as_str(), role.as_str()), ("G7A", "member"));
                    "join"
                }
                Revert::RestorePerson { .. } => "restore-person",
                Revert::RemoveRole { .. } => "remove-role",
                Revert::RemoveKey { value, .. } => {
                    assert_eq!(value, "E1");
                    "remove-key"
                }
                Revert::SetEckid { to, .. } => {
                    assert_eq!(to, "E-old");
                    "set-eckid"
                }
                other => unreachable!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                "set-eckid",
                "remove-key",
                "remove-role",
                "restore-person",
                "join",
                "leave",
                "set-field",
                "remove-person",
                "remove-group"
            ]
        );
    }

    #[test]
    fn derived_and_informational_entries_are_not_reverted_and_the_school_is_said() {
        let journal = [
            change(1, "grant", "grant"),
            change(2, "person", "conflict"),
            change(3, "pupil", "reject"),
            with(
                change(4, "school", "update"),
                "broker_id",
                Some("1"),
                Some("2"),
            ),
        ];
        let p = plan(&journal);
        assert!(p.reverts.is_empty(), "{:?}", p.reverts);
        assert_eq!(p.left.len(), 1, "{:?}", p.left);
        assert!(p.left[0].contains("broker_id"));
    }

    #[test]
    fn undoing_the_undo_gives_the_original_changes_back() {
        // An undo journals each revert under the operation that does it; reading that
        // journal backwards again must give the run's own changes.
        let run = [
            with(change(1, "person", "join"), "G8A", None, Some("member")),
            change(2, "pupil", "remove"),
        ];
        let undo = plan(&run);
        let journal_of_undo: Vec<Change> = undo
            .reverts
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Revert::RestorePerson { person, .. } => {
                    let mut c = change(10 + i as i64, "pupil", "restore");
                    c.person_id = Some(*person);
                    c
                }
                Revert::Leave {
                    person,
                    group,
                    role,
                    ..
                } => {
                    let mut c = with(
                        change(10 + i as i64, "person", "leave"),
                        group,
                        Some(role),
                        None,
                    );
                    c.person_id = Some(*person);
                    c
                }
                other => unreachable!("unexpected {other:?}"),
            })
            .collect();
        let again = plan(&journal_of_undo);
        assert!(matches!(again.reverts[0], Revert::Join { ref group, .. } if group == "G8A"));
        assert!(matches!(
            again.reverts[1],
            Revert::RemovePerson { person: 42, .. }
        ));
    }
}
