//! Who may see what, refreshed in a run's transaction: the store reads where the school
//! stands, the rights core (pure) derives the grants and reconciles them with the stored ones,
//! and the store writes the decided changes.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use crate::permissions::{self, GrantChanges, Rights};
use crate::store::permissions as stored;
use crate::store::roster::ApplyContext;

/// Derive the school's grants from the stored roster and bring the stored derived grants in
/// line, journaling each change. `frozen`: the sources were not trusted, so whole-school
/// grants are kept whatever the facts say.
pub async fn refresh<C: ConnectionTrait>(
    db: &C,
    school: &str,
    run: Option<i64>,
    rights: &Rights,
    frozen: bool,
    now: DateTime<Utc>,
) -> Result<GrantChanges, DbErr> {
    let standing = stored::standing(db, school).await?;
    let derived = permissions::derive(&standing.facts, &standing.groups, &rights.rules);
    let actions = permissions::reconcile(&standing.stored, &derived, now, rights.grace, frozen);
    if actions.is_empty() {
        return Ok(GrantChanges::default());
    }
    let ctx = ApplyContext {
        school,
        now: now.into(),
        retention: chrono::Duration::zero(),
        run,
        new_year: None,
    };
    stored::write_actions(db, &ctx, &standing, actions).await
}
