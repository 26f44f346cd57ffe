//! One school's run, the imperative shell around the pure core: fetch, judge, then in ONE
//! transaction load what is stored, merge, diff, brake, write the rows, the journal, the held
//! changes, the source's new baseline and the run record. A failure anywhere before the
//! commit leaves the school exactly as it was; the run record then says what happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use connector_api::{
    Connector, ConnectorError, ErrorKind, FetchOutcome, FetchRequest, SchoolId, SchoolYear,
    Snapshot,
};
use sea_orm::{DatabaseTransaction, DbErr, TransactionTrait};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::store::roster::{self, ApplyContext};
use crate::store::schools::{self, SchoolState};
use crate::store::source_state::{self, Received};
use crate::store::{Store, held, runs};
use crate::sync::brakes::{self, BrakeRules, HeldRemoval, Stored};
use crate::sync::diff::{DiffOptions, Plan, StoredPerson, diff};
use crate::sync::digest;
use crate::sync::health::{self, Baseline, Distrust, HealthRules, Verdict};
use crate::sync::merge::merge;
use crate::sync::report::{Counts, Outcome, ReceivedCounts};

/// The source name of a LAS in `source_state`.
pub const LAS: &str = "las";

/// The rules a run applies, from `[sync]`.
#[derive(Debug, Clone)]
pub struct Rules {
    pub health: HealthRules,
    pub brakes: BrakeRules,
    /// How long tombstones are kept before the purge.
    pub retention: chrono::Duration,
}

impl Rules {
    pub fn from_settings(s: &crate::settings::SyncSettings) -> Rules {
        Rules {
            health: HealthRules {
                collapse_ratio: s.collapse_ratio,
                collapse_min_baseline: s.collapse_min_pupils,
            },
            brakes: BrakeRules {
                max_share: s.brake_max_share,
                max_count: s.brake_max_count,
            },
            retention: chrono::Duration::days(i64::from(s.retention_days)),
        }
    }
}

/// How this run was asked for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `cli`, `schedule`, `manual`, `demo`, `bench`.
    pub trigger: String,
    /// Compute and record what would happen; write nothing to the roster.
    pub dry_run: bool,
    /// Release the brakes and the collapse check for this run (the operator checked).
    pub allow_removals: bool,
}

/// A school and the source to ask.
pub struct Target {
    pub id: SchoolId,
    /// The connector to ask, or why there is none (a LAS connection that is not configured
    /// or cannot be built).
    pub source: Result<Arc<dyn Connector>, String>,
    /// The school's credential, or why it could not be read.
    pub credential: Result<SecretString, String>,
    /// The fence of the lease this run holds (daemon workers); `None` for `rostersync sync`.
    pub fence: Option<i64>,
}

/// The error an apply ends with when its lease was lost to another worker.
const LEASE_LOST: &str = "lease lost";

/// What one school's run did, for the summary table, `--format json` and tests.
#[derive(Debug, Clone, Serialize)]
pub struct SchoolReport {
    pub school: String,
    pub run: Option<i64>,
    pub outcome: Outcome,
    pub dry_run: bool,
    pub counts: Counts,
    pub error_class: Option<String>,
    /// What happened and what to do, when there is something to say.
    pub message: Option<String>,
    /// The failure is transient: the daemon tries the school again later the same day.
    pub retry: bool,
    #[serde(serialize_with = "millis")]
    pub fetch_time: Duration,
    /// Everything but the fetch: judging, loading, diffing and writing.
    #[serde(serialize_with = "millis")]
    pub engine_time: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The decision of a run before anything is written.
struct Decided {
    outcome: Outcome,
    counts: Counts,
    error_class: Option<String>,
    message: Option<String>,
    retry: bool,
}

impl Decided {
    fn new(outcome: Outcome) -> Decided {
        Decided {
            outcome,
            counts: Counts::default(),
            error_class: None,
            message: None,
            retry: false,
        }
    }

    fn because(mut self, class: &str, message: String) -> Decided {
        self.error_class = Some(class.to_owned());
        self.message = Some(message);
        self
    }
}

fn received_counts(s: &Snapshot) -> ReceivedCounts {
    ReceivedCounts {
        pupils: s.pupils.len(),
        staff: s.staff.len(),
        groups: s.groups.len(),
        rejected: s.rejects.len(),
    }
}

/// Today in the schools' own time zone (the school year turns on 1 August there).
pub fn today() -> chrono::NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Europe::Amsterdam)
        .date_naive()
}

/// The school year a source should answer for today.
pub fn expected_year() -> SchoolYear {
    SchoolYear::containing(today())
}

/// Sync one school. Never fails: every failure ends up in the report and, where the store
/// can still be written, in the run record.
pub async fn sync_school(
    store: &Store,
    target: &Target,
    rules: &Rules,
    opts: &RunOptions,
) -> SchoolReport {
    let started = Instant::now();
    let school = target.id.to_string();
    let mut report = SchoolReport {
        school: school.clone(),
        run: None,
        outcome: Outcome::Failed,
        dry_run: opts.dry_run,
        counts: Counts::default(),
        error_class: None,
        message: None,
        retry: false,
        fetch_time: Duration::ZERO,
        engine_time: Duration::ZERO,
    };
    let decided = match run(store, target, rules, opts, &mut report).await {
        Ok(d) => d,
        Err(DbErr::Custom(m)) if m == LEASE_LOST => Decided::new(Outcome::Failed).because(
            "lease_lost",
            format!(
                "school {school}: another instance took this school over (this one stopped \
                 answering for too long); nothing of this run was applied, the other run counts"
            ),
        ),
        Err(e) => {
            let d = Decided::new(Outcome::Failed).because(
                "store",
                format!(
                    "the store failed during the run ({}); nothing of this run was applied. \
                     Check the store, then run `rostersync sync --school {school}` again",
                    store.db_error(e)
                ),
            );
            // Best effort: the store may be the thing that is broken.
            if let Some(run) = report.run {
                let _ = runs::finish(store.db(), run, finish(&d)).await;
            }
            d
        }
    };
    report.outcome = decided.outcome;
    report.counts = decided.counts;
    report.error_class = decided.error_class;
    report.message = decided.message;
    report.retry = decided.retry;
    report.engine_time = started.elapsed().saturating_sub(report.fetch_time);
    log_summary(&report);
    report
}

fn finish(d: &Decided) -> runs::Finish<'_> {
    runs::Finish {
        outcome: d.outcome.as_str(),
        error_class: d.error_class.as_deref(),
        message: d.message.clone(),
        counts: serde_json::to_value(d.counts).unwrap_or_default(),
    }
}

/// The one INFO line per school run. Numbers and classes only: never a name or a key.
fn log_summary(r: &SchoolReport) {
    let c = &r.counts;
    tracing::info!(
        school = %r.school,
        run = r.run,
        outcome = r.outcome.as_str(),
        dry_run = r.dry_run,
        error_class = r.error_class.as_deref(),
        pupils_created = c.pupils.created,
        pupils_updated = c.pupils.updated,
        pupils_removed = c.pupils.removed,
        staff_created = c.staff.created,
        staff_updated = c.staff.updated,
        staff_removed = c.staff.removed,
        groups_created = c.groups.created,
        groups_updated = c.groups.updated,
        groups_removed = c.groups.removed,
        memberships_added = c.memberships.added,
        memberships_removed = c.memberships.removed,
        held = c.held(),
        rejected = c.received.rejected,
        conflicts = c.conflicts,
        fetch_ms = r.fetch_time.as_millis() as u64,
        engine_ms = r.engine_time.as_millis() as u64,
        "School run finished."
    );
}

async fn run(
    store: &Store,
    target: &Target,
    rules: &Rules,
    opts: &RunOptions,
    report: &mut SchoolReport,
) -> Result<Decided, DbErr> {
    let db = store.db();
    let school = report.school.clone();
    let state = source_state::load(db, &school, LAS).await?;
    let run = runs::start(db, &school, &opts.trigger, opts.dry_run).await?;
    report.run = Some(run);

    let source = match &target.source {
        Ok(s) => s,
        Err(why) => {
            let d =
                Decided::new(Outcome::Failed).because("config", format!("school {school}: {why}"));
            runs::finish(db, run, finish(&d)).await?;
            return Ok(d);
        }
    };
    let credential = match &target.credential {
        Ok(c) => c,
        Err(why) => {
            let d = Decided::new(Outcome::Failed).because(
                "credential_unreadable",
                format!("school {school}: the authorization key cannot be read: {why}"),
            );
            runs::finish(db, run, finish(&d)).await?;
            return Ok(d);
        }
    };
    let fingerprint = source_state::fingerprint(&school, credential.expose_secret());
    if let Some(s) = &state
        && s.parked_fingerprint.as_deref() == Some(fingerprint.as_str())
    {
        let since = s
            .parked_at
            .map(|t| t.format(" since %Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        let d = Decided::new(Outcome::Parked).because(
            "credentials_rejected",
            format!(
                "school {school} is parked{since}: {}. It is not asked again until its key \
                 changes: `rostersync school set-key {school}` (or update the key file)",
                s.parked_reason.as_deref().unwrap_or("its key was rejected")
            ),
        );
        runs::finish(db, run, finish(&d)).await?;
        return Ok(d);
    }

    let request = FetchRequest {
        school: target.id.clone(),
        school_year: expected_year(),
        credential: Some(credential.clone()),
        remote_id: None,
        last_received: state.as_ref().and_then(|s| s.last_received_at),
        last_marker: state.as_ref().and_then(|s| s.marker.clone()),
    };
    let asked_at = Utc::now();
    let fetch_started = Instant::now();
    let fetched = source.fetch(&request).await;
    report.fetch_time = fetch_started.elapsed();

    let baseline = Baseline {
        pupils: state
            .as_ref()
            .and_then(|s| s.pupil_count)
            .map(|n| n.max(0) as u32),
        staff: state
            .as_ref()
            .and_then(|s| s.staff_count)
            .map(|n| n.max(0) as u32),
    };
    let mut verdict = health::judge(&fetched, baseline, request.school_year, &rules.health);
    if opts.allow_removals
        && matches!(
            verdict,
            Verdict::Untrustworthy(Distrust::Collapsed { .. } | Distrust::Empty { .. })
        )
    {
        // The operator looked and says the drop is real.
        verdict = Verdict::Trusted;
    }

    match (verdict, fetched) {
        (Verdict::Unchanged, _) => {
            let d = Decided::new(Outcome::Unchanged);
            if !opts.dry_run {
                let (_turn, txn) = write_txn(store, &school, target.fence).await?;
                source_state::record_unchanged(&txn, &school, LAS, Utc::now()).await?;
                schools::set_state(&txn, &school, active(None, None)).await?;
                runs::finish(&txn, run, finish(&d)).await?;
                txn.commit().await?;
            } else {
                runs::finish(db, run, finish(&d)).await?;
            }
            Ok(d)
        }
        (Verdict::Untrustworthy(why), fetched) => {
            let outcome = if is_credentials(&fetched) {
                Outcome::Parked
            } else {
                Outcome::Frozen
            };
            let d = Decided::new(outcome)
                .because(why.class(), format!("school {school}: {}", why.explain()));
            let d = Decided {
                retry: matches!(
                    why,
                    Distrust::FetchFailed {
                        retryable: true,
                        ..
                    }
                ),
                counts: Counts {
                    received: match &fetched {
                        Ok(FetchOutcome::Snapshot(s)) => received_counts(s),
                        _ => ReceivedCounts::default(),
                    },
                    ..Counts::default()
                },
                ..d
            };
            let (_turn, txn) = write_txn(store, &school, target.fence).await?;
            if !opts.dry_run {
                if let Err(e) = &fetched
                    && e.kind() == ErrorKind::Credentials
                {
                    source_state::park(
                        &txn,
                        &school,
                        LAS,
                        &e.to_string(),
                        &fingerprint,
                        Utc::now(),
                    )
                    .await?;
                }
                let state = if is_credentials(&fetched) {
                    "parked"
                } else {
                    "frozen"
                };
                schools::set_state(
                    &txn,
                    &school,
                    SchoolState {
                        state,
                        reason: d.message.clone(),
                        school_year: None,
                        name: None,
                    },
                )
                .await?;
            }
            runs::finish(&txn, run, finish(&d)).await?;
            txn.commit().await?;
            Ok(d)
        }
        (Verdict::Trusted, Ok(FetchOutcome::Snapshot(snapshot))) => {
            apply_snapshot(
                store,
                run,
                &school,
                target.fence,
                &snapshot,
                asked_at,
                rules,
                opts,
            )
            .await
        }
        (Verdict::Trusted, _) => {
            // judge() only trusts snapshots; anything else here is a bug, and nothing is written.
            let d = Decided::new(Outcome::Failed).because(
                "internal",
                format!("school {school}: the health check trusted an answer without data; please report this"),
            );
            runs::finish(db, run, finish(&d)).await?;
            Ok(d)
        }
    }
}

/// A transaction that writes for `school`. Its first statement takes the school's row lock
/// (and moves the fence on), so on SQLite it holds the write lock from the start and waits
/// politely for other writers instead of failing to upgrade a read; on PostgreSQL concurrent
/// runs of one school queue on the row.
async fn write_txn<'a>(
    store: &'a Store,
    school: &str,
    fence: Option<i64>,
) -> Result<(Option<tokio::sync::MutexGuard<'a, ()>>, DatabaseTransaction), DbErr> {
    let turn = store.write_turn().await;
    let txn = store.db().begin().await?;
    if !schools::lock_for_apply(&txn, school, fence).await? {
        return Err(DbErr::Custom(LEASE_LOST.into()));
    }
    Ok((turn, txn))
}

fn is_credentials(fetched: &Result<FetchOutcome, ConnectorError>) -> bool {
    matches!(fetched, Err(e) if e.kind() == ErrorKind::Credentials)
}

fn active(school_year: Option<String>, name: Option<String>) -> SchoolState<'static> {
    SchoolState {
        state: "active",
        reason: None,
        school_year,
        name,
    }
}

/// What applying `snapshot` to the stored roster would do: the plan after the brakes, what
/// they held, the decision, and the stored persons the plan was computed against.
struct Computed {
    plan: Plan,
    held: Vec<HeldRemoval>,
    decided: Decided,
    stored: Vec<StoredPerson>,
}

async fn compute(
    txn: &DatabaseTransaction,
    run: i64,
    school: &str,
    snapshot: &Snapshot,
    rules: &Rules,
    opts: &RunOptions,
) -> Result<Computed, DbErr> {
    let (groups, persons) = roster::load(txn, school).await?;
    let merged = merge(&[snapshot]);
    let mut plan = diff(
        &merged.state,
        &groups,
        &persons,
        &DiffOptions {
            frozen: false,
            protected_las_keys: merged.protected_las_keys.clone(),
            match_staff_email: false,
        },
    );
    let (held, decisions) = brakes::hold(
        &mut plan,
        Stored::of(&groups, &persons),
        &rules.brakes,
        opts.allow_removals,
    );
    let counts = Counts::of(
        &plan,
        &held,
        received_counts(snapshot),
        merged.conflicts.len(),
    );
    let reasons: Vec<String> = decisions
        .into_iter()
        .filter_map(|(_, d)| match d {
            brakes::Decision::Hold { reason, .. } => Some(reason),
            brakes::Decision::Apply => None,
        })
        .collect();
    let mut d = Decided::new(if held.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Held
    });
    d.counts = counts;
    if !reasons.is_empty() {
        d = d.because(
            "brakes",
            format!(
                "school {school}: {}",
                reasons
                    .join("; ")
                    .replace("--run N", &format!("--run {run}"))
            ),
        );
    } else if counts.received.rejected > 0 {
        d.message = Some(format!(
            "school {school}: the source sent {} record(s) that could not be used (see \
             `rostersync changes --run {run}`); what is stored for them was kept",
            counts.received.rejected
        ));
    }
    Ok(Computed {
        plan,
        held,
        decided: d,
        stored: persons,
    })
}

/// The trusted path: everything from loading the stored roster to the run record happens in
/// one transaction, so a crash at any point leaves the school as it was. When the sources say
/// exactly what they said at the last full apply, loading and diffing are skipped.
#[allow(clippy::too_many_arguments)]
async fn apply_snapshot(
    store: &Store,
    run: i64,
    school: &str,
    fence: Option<i64>,
    snapshot: &Snapshot,
    asked_at: chrono::DateTime<Utc>,
    rules: &Rules,
    opts: &RunOptions,
) -> Result<Decided, DbErr> {
    let (_turn, txn) = write_txn(store, school, fence).await?;
    let digest = digest::of(&[snapshot]);
    let last = schools::digest(&txn, school).await?;
    let same = last.as_deref() == Some(digest.as_str());
    let Computed {
        plan,
        held,
        decided: d,
        stored,
    } = if same {
        tracing::debug!(
            school,
            "The sources say what they said at the last full apply; skipping load and diff."
        );
        let mut d = Decided::new(Outcome::Ok);
        d.counts.received = received_counts(snapshot);
        Computed {
            plan: Plan::default(),
            held: Vec::new(),
            decided: d,
            stored: Vec::new(),
        }
    } else {
        compute(&txn, run, school, snapshot, rules, opts).await?
    };
    if opts.dry_run {
        txn.rollback().await?;
        runs::finish(store.db(), run, finish(&d)).await?;
        return Ok(d);
    }
    let now = Utc::now();
    let ctx = ApplyContext {
        school,
        now,
        retention: rules.retention,
        run: Some(run),
    };
    if !same {
        roster::apply(&txn, &ctx, &plan, &stored).await?;
        roster::journal_rejects(&txn, &ctx, &snapshot.rejects).await?;
    }
    // Only a run applied in full may be skipped next time; a held one must decide again.
    schools::set_digest(&txn, school, (d.outcome == Outcome::Ok).then_some(digest)).await?;
    if held.is_empty() {
        held::supersede(&txn, school).await?;
    } else {
        held::hold(&txn, run, school, &held).await?;
    }
    source_state::record_received(
        &txn,
        school,
        LAS,
        &Received {
            asked_at,
            pupils: snapshot.pupils.len(),
            staff: snapshot.staff.len(),
            groups: snapshot.groups.len(),
            school_year: snapshot.school_year.clone(),
        },
        now,
    )
    .await?;
    schools::set_state(
        &txn,
        school,
        active(snapshot.school_year.clone(), snapshot.school_name.clone()),
    )
    .await?;
    runs::finish(&txn, run, finish(&d)).await?;
    #[cfg(debug_assertions)]
    pause_before_commit().await;
    txn.commit().await?;
    Ok(d)
}

/// Debug builds only, for the crash test: with `ROSTERSYNC_TEST_PAUSE_BEFORE_COMMIT=FILE` an
/// apply writes FILE when everything but the commit is done and then waits, so a test can
/// kill or stop the process at exactly the worst moment (`ROSTERSYNC_TEST_PAUSE_SECONDS`: how
/// long, default 120).
#[cfg(debug_assertions)]
async fn pause_before_commit() {
    if let Some(path) = std::env::var_os("ROSTERSYNC_TEST_PAUSE_BEFORE_COMMIT") {
        let _ = std::fs::write(&path, b"applying\n");
        let seconds = std::env::var("ROSTERSYNC_TEST_PAUSE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}
