//! Approve a run's held removals: what a brake held is applied after all, as a run of its
//! own (trigger `approve`) in one transaction, with grants derived again. `approve --run N`
//! and the admin console both come here.

use crate::model::held::Kind;
use crate::store::{Store, WriteKind, held, runs, schools};
use crate::sync::report::{Counts, Outcome};
use crate::sync::run::Rules;

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("there is no run {0} (see `rostersync runs`)")]
    NoSuchRun(i64),
    #[error("run {0} held nothing")]
    NothingHeld(i64),
    #[error(
        "run {run}'s held removals were superseded by a later run of school {school}; approve \
         that run instead (`rostersync runs --school {school}`)"
    )]
    Superseded { run: i64, school: String },
    #[error("run {0}'s held removals were already approved")]
    AlreadyApproved(i64),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// What an approval did.
#[derive(Debug, Clone)]
pub struct Approved {
    /// The approval's own run.
    pub run: i64,
    pub school: String,
    pub message: String,
    pub counts: Counts,
}

impl Approved {
    /// One sentence for a terminal or a page.
    pub fn said(&self) -> String {
        let c = &self.counts;
        format!(
            "Run {} {}: {} pupil(s), {} staff, {} group(s), {} membership(s) removed.",
            self.run,
            self.message,
            c.pupils.removed,
            c.staff.removed,
            c.groups.removed,
            c.memberships.removed
        )
    }
}

/// Why nothing waits in `run`, from its held rows.
fn nothing_waiting(run: &runs::Run, rows: &[held::HeldChange]) -> ApproveError {
    if rows.is_empty() {
        ApproveError::NothingHeld(run.id)
    } else if rows.iter().any(|h| h.state == held::SUPERSEDED) {
        ApproveError::Superseded {
            run: run.id,
            school: run.school_id.clone(),
        }
    } else {
        ApproveError::AlreadyApproved(run.id)
    }
}

/// Apply the removals held in run `id`, recorded as approved by `by`.
pub async fn approve(
    store: &Store,
    rules: &Rules,
    id: i64,
    by: &str,
) -> Result<Approved, ApproveError> {
    let db_err = |e| ApproveError::Store(store.db_error(e));
    let run = runs::get(store.db(), id)
        .await
        .map_err(db_err)?
        .ok_or(ApproveError::NoSuchRun(id))?;
    let rows = held::of_run(store.db(), id).await.map_err(db_err)?;
    let waiting: Vec<_> = rows
        .iter()
        .filter(|h| h.state == held::HELD)
        .cloned()
        .collect();
    if waiting.is_empty() {
        return Err(nothing_waiting(&run, &rows));
    }
    let now = crate::store::now();
    let txn = store.begin_write(WriteKind::Edit).await.map_err(db_err)?;
    // The school's row lock first, as every writer of a school takes it.
    schools::lock_for_apply(&txn, &run.school_id, None)
        .await
        .map_err(db_err)?;
    let approval = runs::start(&txn, &run.school_id, "approve", false)
        .await
        .map_err(db_err)?;
    let stamp = held::Approval {
        run: approval,
        now,
        purge_after: now + rules.retention,
        by,
    };
    let done = held::approve(&txn, waiting, &stamp).await.map_err(db_err)?;
    // Whoever left stops seeing pupils the usual way: their grants wait out the grace period.
    let grants = crate::sync::permissions::refresh(
        &txn,
        &run.school_id,
        Some(approval),
        &rules.rights,
        false,
        now,
    )
    .await
    .map_err(db_err)?;
    // The roster changed outside a sync: the next run must look at everything again.
    schools::set_digest(&txn, &run.school_id, None)
        .await
        .map_err(db_err)?;
    let (counts, skipped) = tally(&done, grants);
    let message = format!(
        "applied the removals held in run {id}{}",
        if skipped > 0 {
            format!("; {skipped} were no longer applicable (the record came back or was gone)")
        } else {
            String::new()
        }
    );
    runs::finish(
        &txn,
        approval,
        runs::Finish {
            outcome: Outcome::Ok.as_str(),
            error_class: None,
            message: Some(message.clone()),
            counts: serde_json::to_value(counts).unwrap_or_default(),
        },
    )
    .await
    .map_err(db_err)?;
    txn.commit().await.map_err(db_err)?;
    tracing::info!(school = %run.school_id, run = id, approval, applied = done.len() - skipped, skipped, by, "Held removals approved.");
    Ok(Approved {
        run: approval,
        school: run.school_id,
        message,
        counts,
    })
}

/// The approval's counts, and how many removals no longer applied.
fn tally(done: &[held::Approved], grants: crate::permissions::GrantChanges) -> (Counts, usize) {
    let mut counts = Counts {
        grants,
        ..Counts::default()
    };
    let mut skipped = 0;
    for a in done {
        if !a.applied {
            skipped += 1;
            continue;
        }
        match Kind::parse(&a.row.kind) {
            Some(Kind::Pupils) => counts.pupils.removed += 1,
            Some(Kind::Staff) => counts.staff.removed += 1,
            Some(Kind::Groups) => counts.groups.removed += 1,
            Some(Kind::Memberships) | None => counts.memberships.removed += 1,
        }
    }
    (counts, skipped)
}
