//! In the weeks before the switch (`rollover.prepare_from` until `switch_on`), after a
//! school's run its LAS is also asked for next school year. What a LAS has prepared is kept
//! (`store::prepared`); `geengegevens` or an answer for the live year means "not prepared
//! yet", never an error, and no answer changes the live roster.

use connector_api::{FetchOutcome, SchoolYear};

use super::{LAS, Rules, RunOptions, Target};
use crate::model::rollover::next_classes;
use crate::store::{Store, prepared};

/// What asking for next year gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preparing {
    /// The LAS has next year prepared: kept, with this many pupils.
    Prepared { year: SchoolYear, pupils: usize },
    /// Not yet (no data, or an answer for the live year).
    NotYet,
    /// The LAS could not be asked or the answer not kept (the error's class); the live run
    /// is not affected and tomorrow asks again.
    Failed(String),
}

/// Ask `target`'s LAS for next year, when the calendar says so.
pub(super) async fn next_year(
    store: &Store,
    target: &Target,
    rules: &Rules,
    opts: &RunOptions,
) -> Option<Preparing> {
    if opts.dry_run || !rules.calendar.preparing(opts.today) {
        return None;
    }
    let las = target.sources.iter().find(|s| s.name == LAS)?;
    let next = rules.calendar.live_year(opts.today).next();
    let school = target.id.to_string();
    // The request as a run makes it, without "since": nothing of next year is a baseline. A
    // connection or credential that cannot be used was said by the day's run already.
    let ask = super::ask::ask(target, las, None, &school, next).ok()?;
    let said = match ask.send().await {
        Ok(FetchOutcome::Snapshot(s)) if s.school_year.as_deref() == Some(&next.to_string()) => {
            match keep(store, &school, next, &s).await {
                Ok(()) => Preparing::Prepared {
                    year: next,
                    pupils: s.pupils.len(),
                },
                Err(e) => Preparing::Failed(format!("store: {}", store.db_error(e))),
            }
        }
        Ok(_) => Preparing::NotYet,
        Err(e) => Preparing::Failed(e.class().to_owned()),
    };
    match &said {
        Preparing::Prepared { year, pupils } => {
            tracing::info!(school, year = %year, pupils, "Next school year is prepared in the LAS.");
        }
        Preparing::NotYet => {
            tracing::debug!(school, year = %next, "Next school year is not prepared in the LAS yet.");
        }
        Preparing::Failed(class) => {
            tracing::warn!(school, year = %next, error_class = %class, "Asking the LAS for next school year failed; the live roster is not affected, tomorrow asks again.");
        }
    }
    Some(said)
}

/// Keep next year's answer with what the switch would change to today's roster, counted now
/// (just after the day's run) so `rollover status` reads it instead of diffing every school,
/// and its classes with the sourcedIds they keep after the switch.
async fn keep(
    store: &Store,
    school: &str,
    year: SchoolYear,
    snapshot: &connector_api::Snapshot,
) -> Result<(), sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    let (groups, persons) = crate::store::roster::load(store.db(), school).await?;
    let plan = crate::sync::rollover::plan_for(snapshot, &groups, &persons);
    let changes = crate::sync::rollover::preview(&plan, snapshot, &persons);
    let existing = crate::store::roster::group_sids(store.db(), school).await?;
    let before = prepared::classes(store.db(), school).await?;
    let next: Vec<_> = crate::sync::merge::merge(&[snapshot])
        .state
        .groups
        .into_values()
        .collect();
    let now = chrono::Utc::now();
    let classes = next_classes(school, year, &next, &existing, &before, now);
    let txn = store.writer().begin().await?;
    prepared::save(&txn, school, &year.to_string(), snapshot, &changes, now).await?;
    prepared::set_classes(&txn, school, &classes).await?;
    txn.commit().await
}
