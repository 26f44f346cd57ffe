//! The writers of a run's decisions that apply no roster: unchanged, untrusted, no consent.
//! Each writes in one transaction that takes the school's row lock and checks the run's
//! fence first, and closes the run record in it.

use std::time::Instant;

use chrono::Utc;
use connector_api::{ConnectorError, ErrorKind, FetchOutcome};
use sea_orm::DbErr;

use super::ask::Ask;
use super::decide::{self, ConsentFacts, ConsentStep, Decided, Deleted};
use super::{ConnectionProblem, Rules, RunError, RunOptions, finish};
use crate::model::SchoolStatus;
use crate::store::schools::{self, Locked, SchoolState};
use crate::store::{Store, WriteKind, WriteTxn, roster, runs, source_state};
use crate::sync::health::Distrust;

/// The broker said the school's institution merged into another one.
#[derive(Debug, Clone)]
pub(super) struct Merger {
    pub from: String,
    pub into: i64,
}

/// What every writer of a run needs: where, which run, under which lease, by which rules.
pub(super) struct RunCtx<'a> {
    pub store: &'a Store,
    pub run: i64,
    pub school: &'a str,
    pub fence: Option<i64>,
    pub rules: &'a Rules,
    pub opts: &'a RunOptions,
    /// Followed within this run; recorded by whichever writer commits it.
    pub merger: Option<Merger>,
}

impl RunCtx<'_> {
    /// A transaction that writes for the school. Its first statement takes the school's row
    /// lock and checks the fence, so on PostgreSQL concurrent runs of one school queue on the
    /// row and a run whose lease was lost writes nothing.
    pub async fn write_txn(&self) -> Result<WriteTxn, RunError> {
        Ok(self.write_txn_at().await?.0)
    }

    /// [`RunCtx::write_txn`], and what the school's row said as the lock was taken.
    pub async fn write_txn_at(&self) -> Result<(WriteTxn, Locked), RunError> {
        let txn = self.store.begin_write(WriteKind::Apply).await?;
        match schools::lock_for_apply(&txn, self.school, self.fence).await? {
            Some(locked) => Ok((txn, locked)),
            None => Err(RunError::LeaseLost),
        }
    }

    /// Record a merger in the run's transaction: the school follows the new institution id,
    /// journaled as a change of the school, and the run's message says so.
    pub async fn record_merger(&self, txn: &WriteTxn, d: &mut Decided) -> Result<(), DbErr> {
        let Some(m) = &self.merger else {
            return Ok(());
        };
        schools::follow_merger(txn, self.school, Some(self.run), &m.from, m.into).await?;
        self.say_merger(d);
        Ok(())
    }

    /// Say what the merger means for the operator (a dry run only says it).
    pub fn say_merger(&self, d: &mut Decided) {
        let Some(Merger { from, into }) = &self.merger else {
            return;
        };
        let follows = if self.opts.dry_run {
            "a run that is not a dry run will follow"
        } else {
            "rostersync follows"
        };
        let note = format!(
            "institution {from} merged into {into} at the broker; {follows} {into} now (where \
             the school is in the configuration file, set its broker_id to {into})"
        );
        d.message = Some(match d.message.take() {
            Some(m) => format!("{m}; {note}"),
            None => format!("school {}: {note}", self.school),
        });
    }

    /// Derive the school's grants from what is stored now, in the run's transaction.
    /// `frozen`: the sources were not trusted, so whole-school grants stay.
    pub async fn refresh_grants(
        &self,
        txn: &WriteTxn,
        frozen: bool,
        d: &mut Decided,
    ) -> Result<(), DbErr> {
        let started = Instant::now();
        let rights = &self.rules.rights;
        d.counts.grants = crate::sync::permissions::refresh(
            txn,
            self.school,
            Some(self.run),
            rights,
            frozen,
            crate::store::now(),
        )
        .await?;
        d.rights_time = started.elapsed();
        Ok(())
    }
}

/// The school as a run that trusted its sources leaves it.
pub(super) fn active(school_year: Option<String>, name: Option<String>) -> SchoolState {
    SchoolState {
        state: SchoolStatus::Active,
        reason: None,
        school_year,
        name,
    }
}

/// A school not synced this time, and why (the run's message).
fn inactive(state: SchoolStatus, d: &Decided) -> SchoolState {
    SchoolState {
        state,
        reason: d.message.clone(),
        school_year: None,
        name: None,
    }
}

/// Every source said nothing changed: note that they answered, and let grace periods run.
pub(super) async fn unchanged(ctx: &RunCtx<'_>, asks: &[Ask<'_>]) -> Result<Decided, RunError> {
    let mut d = Decided::new(crate::sync::report::Outcome::Unchanged);
    if ctx.opts.dry_run {
        ctx.say_merger(&mut d);
        runs::finish(ctx.store.writer(), ctx.run, finish(&d)).await?;
        return Ok(d);
    }
    let txn = ctx.write_txn().await?;
    let names: Vec<&str> = asks.iter().map(|ask| ask.source.name).collect();
    source_state::record_unchanged(&txn, ctx.school, &names, Utc::now()).await?;
    // Nothing changed, but a grant's grace period may have ended.
    ctx.refresh_grants(&txn, false, &mut d).await?;
    schools::set_state(&txn, ctx.school, active(None, None)).await?;
    ctx.record_merger(&txn, &mut d).await?;
    runs::finish(&txn, ctx.run, finish(&d)).await?;
    txn.commit().await?;
    Ok(d)
}

/// A source's answer cannot be trusted: keep the school as it is, say why, and park the
/// school when its own credential was rejected.
pub(super) async fn untrusted(
    ctx: &RunCtx<'_>,
    ask: &Ask<'_>,
    fetched: &Result<FetchOutcome, ConnectorError>,
    why: &Distrust,
) -> Result<Decided, RunError> {
    let school = ctx.school;
    let rejected = matches!(fetched, Err(e) if e.kind() == ErrorKind::Credentials);
    let parks = rejected && ask.fingerprint.is_some();
    let mut d = decide::untrusted(&ask.subject(school), why, fetched, parks);
    if let Err(e) = fetched {
        let source = ask.source;
        d.connection_problem =
            super::super::connection::problem(&source.connection, source.certificate.as_deref(), e)
                .map(|problem| ConnectionProblem {
                    connection: source.connection.clone(),
                    problem,
                });
    }
    let txn = ctx.write_txn().await?;
    if ctx.opts.dry_run {
        ctx.say_merger(&mut d);
    } else {
        // The sources are not trusted, so the facts stand as stored; only grace periods
        // run out, and never for a whole-school grant.
        ctx.refresh_grants(&txn, true, &mut d).await?;
        if let (Err(e), Some(fp), true) = (fetched, &ask.fingerprint, rejected) {
            let now = Utc::now();
            source_state::park(&txn, school, ask.source.name, &e.to_string(), fp, now).await?;
        }
        let status = if parks {
            SchoolStatus::Parked
        } else {
            SchoolStatus::Frozen
        };
        schools::set_state(&txn, school, inactive(status, &d)).await?;
        ctx.record_merger(&txn, &mut d).await?;
    }
    runs::finish(&txn, ctx.run, finish(&d)).await?;
    txn.commit().await?;
    Ok(d)
}

/// The broker has no sync permission from the school. Never granted: the school waits for
/// it. Granted before: the school is offboarded deliberately: its data is kept for the grace
/// period (granting again resumes the sync), then deleted.
pub(super) async fn no_consent(ctx: &RunCtx<'_>, ask: &Ask<'_>) -> Result<Decided, RunError> {
    let (school, rules, opts) = (ctx.school, ctx.rules, ctx.opts);
    let txn = ctx.write_txn().await?;
    let row = schools::row_in(&txn, school).await?;
    let facts = ConsentFacts {
        status: row.as_ref().and_then(|r| SchoolStatus::parse(&r.state)),
        since: row.as_ref().and_then(|r| r.state_since),
        was_synced: ask
            .state
            .as_ref()
            .is_some_and(|s| s.last_success_at.is_some()),
        grace: rules.offboarding,
    };
    let step = decide::consent_step(facts, Utc::now());
    let deleted = match step {
        ConsentStep::Offboard { .. } if !opts.dry_run => {
            let purged = roster::offboard(&txn, school).await?;
            Deleted {
                persons: purged.persons,
                groups: purged.groups,
            }
        }
        _ => Deleted::default(),
    };
    let mut d = decide::no_consent(school, step, rules.offboarding, deleted);
    if opts.dry_run {
        ctx.say_merger(&mut d);
    } else {
        schools::set_state(&txn, school, inactive(step.status(), &d)).await?;
        ctx.record_merger(&txn, &mut d).await?;
    }
    runs::finish(&txn, ctx.run, finish(&d)).await?;
    txn.commit().await?;
    Ok(d)
}
