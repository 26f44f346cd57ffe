//! The trusted path's writer. The stored roster is loaded and the plan computed on a reader,
//! before the write lock is taken (on SQLite the one writer is the whole run's bottleneck);
//! then everything from the roster to the run record is written in one transaction, so a
//! crash at any point leaves the school as it was. Under the lock the school's roster version
//! is read again: when another writer changed the school in between, the plan is computed
//! again there. When the sources say exactly what they said at the last full apply, loading
//! and diffing are skipped.

use chrono::{DateTime, Utc};
use connector_api::Snapshot;
use sea_orm::ConnectionTrait;

use super::decide::{Decided, received_counts};
use super::write::{RunCtx, active};
use super::{RunError, finish};
use crate::store::roster::{self, ApplyContext};
use crate::store::schools::{RosterBasis, SchoolState};
use crate::store::source_state::{self, Received};
use crate::store::{WriteTxn, held, runs, schools};
use crate::sync::brakes::{self, Expected, HeldRemoval, Stored};
use crate::sync::diff::{DiffOptions, Plan, StoredGroup, StoredPerson, diff};
use crate::sync::digest;
use crate::sync::merge::{Conflict, merge};
use crate::sync::report::{Counts, Outcome};
use crate::sync::rollover;

/// The trigger a school-year switch is recorded with.
pub const ROLLOVER: &str = "rollover";

/// What applying the snapshots to the stored roster would do: the plan after the brakes, what
/// they held, the decision, and the stored persons the plan was computed against.
struct Computed {
    plan: Plan,
    held: Vec<HeldRemoval>,
    decided: Decided,
    stored: Vec<StoredPerson>,
    /// The stored groups the plan was computed against (their ids by key, for the links).
    groups: Vec<StoredGroup>,
    /// Where the sources disagreed; the owner's value is in the plan.
    conflicts: Vec<Conflict>,
    /// The school year this run switches the school to, when it does.
    switch: Option<connector_api::SchoolYear>,
}

impl Computed {
    /// Nothing to write: the sources say what they said at the last full apply.
    fn unchanged(snapshots: &[&Snapshot]) -> Computed {
        let mut d = Decided::new(Outcome::Ok);
        d.counts.received = received_counts(snapshots);
        Computed {
            plan: Plan::default(),
            held: Vec::new(),
            decided: d,
            stored: Vec::new(),
            groups: Vec::new(),
            conflicts: Vec::new(),
            switch: None,
        }
    }
}

/// What a run computed before it took the write lock, and against which stored roster.
struct Early {
    basis: RosterBasis,
    /// `None`: the sources said what they said at the last full apply (nothing to compute).
    computed: Option<Computed>,
}

/// What the run writes, decided once it holds the write lock.
#[derive(Debug, PartialEq, Eq)]
enum Ready<C> {
    /// What it computed on the reader still holds: nobody wrote the school in between.
    Computed(C),
    /// The sources say what they said at the last full apply: nothing to load or diff.
    Unchanged,
    /// The school changed in between: compute again, under the lock.
    Again,
}

/// Whether what was computed before the lock still holds: only when the school's roster
/// version and digest are what they were when it was computed. (`C` is the computed plan;
/// generic so the decision is tested with plain values.)
fn ready<C>(basis: &RosterBasis, computed: Option<C>, now: &RosterBasis, digest: &str) -> Ready<C> {
    if now.digest.as_deref() == Some(digest) {
        return Ready::Unchanged;
    }
    match computed {
        Some(c) if basis == now => Ready::Computed(c),
        _ => Ready::Again,
    }
}

/// Load and compute on a reader, in one read transaction so the roster and its version agree.
async fn compute_early(
    rc: &RunCtx<'_>,
    snapshots: &[&Snapshot],
    digest: &str,
) -> Result<Early, RunError> {
    let read = rc.store.begin_read().await?;
    let basis = schools::basis(&read, rc.school).await?;
    let computed = if basis.digest.as_deref() == Some(digest) {
        None
    } else {
        Some(compute(&read, rc, snapshots).await?)
    };
    read.rollback().await?;
    Ok(Early { basis, computed })
}

/// Merge, diff and brake against what is stored, in `db`'s transaction.
async fn compute<C: ConnectionTrait>(
    txn: &C,
    rc: &RunCtx<'_>,
    snapshots: &[&Snapshot],
) -> Result<Computed, RunError> {
    let (groups, persons) = roster::load(txn, rc.school).await?;
    let stored_year = schools::row_in(txn, rc.school)
        .await?
        .and_then(|r| r.school_year);
    let answered = snapshots.iter().find_map(|s| s.school_year.as_deref());
    let switch = rollover::is_switch(stored_year.as_deref(), answered);
    let merged = merge(snapshots);
    let mut plan = diff(
        &merged.state,
        &groups,
        &persons,
        &DiffOptions {
            frozen: false,
            protected_las_keys: merged.protected_las_keys.clone(),
            match_staff_email: true,
            confirmed_eckids: merged.confirmed_eckids.clone(),
        },
    );
    let expected = match switch {
        Some(year) => switch_expects(txn, rc.school, year, (&groups, &persons), &plan).await?,
        None => Expected::default(),
    };
    let switched = switch.map(|year| rollover::said(year, &plan, &expected));
    let (held, decisions) = brakes::hold(
        &mut plan,
        Stored::of(&groups, &persons),
        &rc.rules.brakes,
        rc.opts.allow_removals,
        &expected,
    );
    let counts = Counts::of(
        &plan,
        &held,
        received_counts(snapshots),
        merged.conflicts.len(),
    );
    let reasons: Vec<String> = decisions
        .into_iter()
        .filter_map(|(_, d)| match d {
            brakes::Decision::Hold { reason, .. } => Some(reason),
            brakes::Decision::Apply => None,
        })
        .collect();
    let mut decided = applied(rc.school, rc.run, counts, !held.is_empty(), &reasons);
    if let Some(said) = switched {
        let school = rc.school;
        decided.message = Some(match decided.message.take() {
            Some(m) => format!("{m}; {said}"),
            None => format!("school {school}: {said}"),
        });
    }
    Ok(Computed {
        plan,
        held,
        decided,
        stored: persons,
        groups,
        conflicts: merged.conflicts,
        switch,
    })
}

/// What the switch to `year` expects: what the prepared year removes when the LAS prepared
/// it, else last year's leavers and the groups that end.
async fn switch_expects<C: ConnectionTrait>(
    txn: &C,
    school: &str,
    year: connector_api::SchoolYear,
    (groups, persons): (&[StoredGroup], &[StoredPerson]),
    plan: &Plan,
) -> Result<Expected, RunError> {
    let prepared = crate::store::prepared::load(txn, school)
        .await?
        .filter(|p| p.school_year == year.to_string());
    let expected = match prepared {
        Some(p) => rollover::expected_from_prepared(
            &rollover::plan_for(&p.snapshot, groups, persons),
            plan,
        ),
        None => rollover::expected_at_switch(persons, plan),
    };
    // What a brake held before stays held: the switch is no way around an approval.
    let waiting = held::waiting_of(txn, school).await?;
    Ok(rollover::without_held(expected, &waiting))
}

/// The record of an applied run: ok, or held by the brakes (their reasons), and what needs a
/// person's eye (identity conflicts, rejected records).
fn applied(school: &str, run: i64, counts: Counts, held: bool, held_because: &[String]) -> Decided {
    let mut d = Decided::new(if held { Outcome::Held } else { Outcome::Ok });
    d.counts = counts;
    if !held_because.is_empty() {
        let reasons = held_because
            .join("; ")
            .replace("--run N", &format!("--run {run}"));
        return d.because("brakes", format!("school {school}: {reasons}"));
    }
    if counts.identity_conflicts > 0 {
        d.message = Some(format!(
            "school {school}: {} person(s) the sources name differently than what is stored \
             (a changed ECK-iD, or keys of two people); nothing was merged for them. See \
             `rostersync changes --run {run}`; if an ECK-iD changed for the same person, \
             `rostersync person relink PERSON --accept-source`",
            counts.identity_conflicts
        ));
    } else if counts.received.rejected > 0 {
        d.message = Some(format!(
            "school {school}: the source sent {} record(s) that could not be used (see \
             `rostersync changes --run {run}`); what is stored for them was kept",
            counts.received.rejected
        ));
    }
    d
}

/// Apply trusted full answers: the roster, the journal, the grants, the held removals, each
/// source's new baseline, the school's state and the run record, committed together.
pub(super) async fn apply_snapshots(
    rc: &RunCtx<'_>,
    sources: &[(&'static str, Snapshot)],
    asked_at: DateTime<Utc>,
    notes: &[String],
) -> Result<Decided, RunError> {
    let snapshots: Vec<&Snapshot> = sources.iter().map(|(_, s)| s).collect();
    let digest = digest::of(&snapshots);
    let early = compute_early(rc, &snapshots, &digest).await?;
    #[cfg(debug_assertions)]
    super::pause_before_write().await;
    let (txn, locked) = rc.write_txn_at().await?;
    let ready = ready(&early.basis, early.computed, &locked.basis, &digest);
    let same = matches!(ready, Ready::Unchanged);
    let computed = match ready {
        Ready::Computed(c) => c,
        Ready::Unchanged => {
            tracing::debug!(
                school = rc.school,
                "The sources say what they said at the last full apply; skipping load and diff."
            );
            Computed::unchanged(&snapshots)
        }
        Ready::Again => {
            tracing::debug!(
                school = rc.school,
                "The school's roster changed while the run computed; computing again."
            );
            compute(&txn, rc, &snapshots).await?
        }
    };
    let mut d = computed.decided.clone();
    if rc.opts.dry_run {
        txn.rollback().await?;
        rc.say_merger(&mut d);
        runs::finish(rc.store.writer(), rc.run, finish(&d)).await?;
        return Ok(d);
    }
    let now = crate::store::now();
    let ctx = ApplyContext {
        school: rc.school,
        now: now.into(),
        retention: rc.rules.retention,
        run: Some(rc.run),
        new_year: computed.switch,
    };
    if !same {
        write_roster(&txn, &ctx, &computed, &snapshots).await?;
    }
    if computed.switch.is_some() {
        // The switch is a run of its own kind in the history: `runs` shows it as such. What
        // was prepared is live now.
        runs::set_trigger(&txn, rc.run, ROLLOVER).await?;
        crate::store::prepared::forget(&txn, rc.school).await?;
    }
    rc.refresh_grants(&txn, false, &mut d).await?;
    // Only a run applied in full may be skipped next time; a held one must decide again, and
    // so must one with identity conflicts (they are said on every run until resolved).
    let complete = d.outcome == Outcome::Ok && d.counts.identity_conflicts == 0;
    if computed.held.is_empty() {
        // Nothing held this time: what waited is superseded (and when nothing waits, that is
        // a statement saved with the lock held).
        if locked.held_waiting {
            held::supersede(&txn, rc.school).await?;
        }
    } else {
        held::hold(&txn, rc.run, rc.school, &computed.held).await?;
    }
    let state = record_sources(&txn, &ctx, sources, asked_at, &d).await?;
    schools::set_applied(&txn, rc.school, state, complete.then_some(digest)).await?;
    say_notes(rc.school, notes, &mut d);
    rc.record_merger(&txn, &mut d).await?;
    runs::finish(&txn, rc.run, finish(&d)).await?;
    #[cfg(debug_assertions)]
    super::pause_before_commit().await;
    txn.commit().await?;
    Ok(d)
}

/// The plan's rows and journal, the records the sources rejected, and where they disagreed.
async fn write_roster(
    txn: &WriteTxn,
    ctx: &ApplyContext<'_>,
    computed: &Computed,
    snapshots: &[&Snapshot],
) -> Result<(), sea_orm::DbErr> {
    let entries = crate::sync::journal::entries(&computed.plan, &computed.stored);
    let stored = roster::Stored {
        persons: &computed.stored,
        groups: &computed.groups,
    };
    roster::apply(txn, ctx, &computed.plan, stored, &entries).await?;
    for s in snapshots {
        roster::journal_rejects(txn, ctx, s.source.into(), &s.rejects).await?;
    }
    roster::journal_conflicts(txn, ctx, &computed.conflicts).await
}

/// Each source's new baseline (what it sent, its marker); returns the school as the sources
/// describe it (its year, its name), for the run's last statement to write.
async fn record_sources(
    txn: &WriteTxn,
    ctx: &ApplyContext<'_>,
    sources: &[(&'static str, Snapshot)],
    asked_at: DateTime<Utc>,
    d: &Decided,
) -> Result<SchoolState, sea_orm::DbErr> {
    let received: Vec<(&str, Received)> = sources
        .iter()
        .map(|(name, snapshot)| {
            let r = Received {
                asked_at,
                pupils: snapshot.pupils.len(),
                staff: snapshot.staff.len(),
                groups: snapshot.groups.len(),
                school_year: snapshot.school_year.clone(),
                marker: snapshot.marker.clone(),
            };
            (*name, r)
        })
        .collect();
    source_state::record_received(txn, ctx.school, &received, ctx.now.at()).await?;
    if d.counts.identity_conflicts > 0 {
        // Ask in full next time, so the conflict is decided (and said) again, not hidden
        // behind "nothing changed".
        source_state::forget_markers(txn, ctx.school).await?;
    }
    let year = sources.iter().find_map(|(_, s)| s.school_year.clone());
    let name = sources.first().and_then(|(_, s)| s.school_name.clone());
    Ok(active(year, name))
}

/// Notes of the run (a credential expiring soon) come first in its message.
fn say_notes(school: &str, notes: &[String], d: &mut Decided) {
    if notes.is_empty() {
        return;
    }
    let said = d
        .message
        .take()
        .map(|m| format!("; {m}"))
        .unwrap_or_default();
    d.message = Some(format!("school {school}: {}{said}", notes.join("; ")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basis(digest: Option<&str>, version: i64) -> RosterBasis {
        RosterBasis {
            digest: digest.map(str::to_owned),
            version,
        }
    }

    #[test]
    fn a_plan_computed_before_the_lock_is_used_only_when_nobody_wrote_the_school() {
        let read = basis(Some("old"), 7);
        assert_eq!(
            ready(&read, Some("plan"), &read, "new"),
            Ready::Computed("plan")
        );
        // Another writer came in between: the plan may rest on rows that changed.
        let moved = basis(Some("old"), 8);
        assert_eq!(ready(&read, Some("plan"), &moved, "new"), Ready::Again);
        // A digest that changed moves the version too, but the digest alone says it as well.
        let forgotten = basis(None, 7);
        assert_eq!(ready(&read, Some("plan"), &forgotten, "new"), Ready::Again);
    }

    #[test]
    fn sources_that_say_what_was_applied_last_need_no_plan_whatever_was_computed() {
        let read = basis(Some("same"), 3);
        assert_eq!(ready::<&str>(&read, None, &read, "same"), Ready::Unchanged);
        // Unchanged by the time the lock is held, though it was not when the run read.
        let applied = basis(Some("same"), 4);
        assert_eq!(
            ready(&basis(Some("old"), 3), Some("plan"), &applied, "same"),
            Ready::Unchanged
        );
        // Read as unchanged, but another writer forgot the digest since: compute under the lock.
        assert_eq!(
            ready::<&str>(&read, None, &basis(None, 4), "same"),
            Ready::Again
        );
    }
}
