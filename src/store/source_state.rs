//! Per school and source: what the last good run left for the next one (the conditional-fetch
//! marker, the counts the health check compares against) and whether the source is parked
//! because it rejected the school's credential.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};

use super::entities::source_state;

pub use source_state::Model as SourceState;

pub async fn load<C: ConnectionTrait>(
    db: &C,
    school: &str,
    source: &str,
) -> Result<Option<SourceState>, DbErr> {
    let row = source_state::Entity::find_by_id((school.to_owned(), source.to_owned()));
    super::by_key(db, row).await
}

/// Insert the rows, or on a school and source already known update `columns`, in one
/// statement.
async fn upsert<C: ConnectionTrait>(
    db: &C,
    rows: Vec<SourceState>,
    columns: &[source_state::Column],
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let active = rows.into_iter().map(source_state::ActiveModel::from);
    source_state::Entity::insert_many(active)
        .on_conflict(
            OnConflict::columns([source_state::Column::SchoolId, source_state::Column::Source])
                .update_columns(columns.iter().copied())
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

fn empty(school: &str, source: &str) -> SourceState {
    SourceState {
        school_id: school.to_owned(),
        source: source.to_owned(),
        last_success_at: None,
        last_received_at: None,
        marker: None,
        pupil_count: None,
        staff_count: None,
        group_count: None,
        school_year: None,
        parked_reason: None,
        parked_at: None,
        parked_fingerprint: None,
    }
}

/// What a trusted answer showed: the baseline for the next health check.
pub struct Received {
    /// When the fetch was asked (the next conditional fetch asks for changes since then).
    pub asked_at: DateTime<Utc>,
    pub pupils: usize,
    pub staff: usize,
    pub groups: usize,
    pub school_year: Option<String>,
    /// The source's own change marker (the broker's mutation time), for the next fetch.
    pub marker: Option<String>,
}

fn count(n: usize) -> Option<i32> {
    Some(i32::try_from(n).unwrap_or(i32::MAX))
}

/// Trusted answers were applied (each source's, by name): new baselines, no longer parked.
pub async fn record_received<C: ConnectionTrait>(
    db: &C,
    school: &str,
    received: &[(&str, Received)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use source_state::Column as C;
    let rows = received
        .iter()
        .map(|(source, r)| SourceState {
            last_success_at: Some(now),
            last_received_at: Some(r.asked_at),
            pupil_count: count(r.pupils),
            staff_count: count(r.staff),
            group_count: count(r.groups),
            school_year: r.school_year.clone(),
            marker: r.marker.clone(),
            ..empty(school, source)
        })
        .collect();
    upsert(
        db,
        rows,
        &[
            C::LastSuccessAt,
            C::LastReceivedAt,
            C::PupilCount,
            C::StaffCount,
            C::GroupCount,
            C::SchoolYear,
            C::Marker,
            C::ParkedReason,
            C::ParkedAt,
            C::ParkedFingerprint,
        ],
    )
    .await
}

/// The sources answered "nothing changed": they are healthy, the baselines stay.
pub async fn record_unchanged<C: ConnectionTrait>(
    db: &C,
    school: &str,
    sources: &[&str],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use source_state::Column as C;
    let rows = sources
        .iter()
        .map(|source| SourceState {
            last_success_at: Some(now),
            ..empty(school, source)
        })
        .collect();
    upsert(
        db,
        rows,
        &[
            C::LastSuccessAt,
            C::ParkedReason,
            C::ParkedAt,
            C::ParkedFingerprint,
        ],
    )
    .await
}

/// The source rejected the credential with this fingerprint: stop asking until it changes.
pub async fn park<C: ConnectionTrait>(
    db: &C,
    school: &str,
    source: &str,
    reason: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use source_state::Column as C;
    let row = SourceState {
        parked_reason: Some(reason.to_owned()),
        parked_at: Some(now),
        parked_fingerprint: Some(fingerprint.to_owned()),
        ..empty(school, source)
    };
    upsert(
        db,
        vec![row],
        &[C::ParkedReason, C::ParkedAt, C::ParkedFingerprint],
    )
    .await
}

/// A digest that tells whether a credential changed, without storing anything that helps
/// to recover it: SHA-256 over a fixed label, the school and the credential, cut to 16 hex.
pub fn fingerprint(school: &str, credential: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in ["rostersync credential fingerprint", school, credential] {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Forget what makes the next fetch conditional (the time of the last answer, the source's
/// marker): the next run asks every source for its whole answer and compares in full.
pub async fn forget_markers<C: ConnectionTrait>(db: &C, school: &str) -> Result<(), DbErr> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter};
    source_state::Entity::update_many()
        .col_expr(
            source_state::Column::LastReceivedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            source_state::Column::Marker,
            Expr::value(Option::<String>::None),
        )
        .filter(source_state::Column::SchoolId.eq(school))
        .exec(db)
        .await?;
    Ok(())
}

/// Every school's state per source (the console's connections page).
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<source_state::Model>, DbErr> {
    source_state::Entity::find().all(db).await
}
