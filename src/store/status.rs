//! `status` and the admin API's `/schools`: every school with its state, its last run, its
//! last success, what is stored for it and what waits for approval. A fixed number of
//! queries however many schools there are.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement};
use serde::Serialize;

use super::entities::{school, source_state};
use super::held;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SchoolStatus {
    pub id: String,
    pub name: Option<String>,
    /// `active`, `frozen`, `parked`.
    pub state: String,
    pub reason: Option<String>,
    pub last_run: Option<i64>,
    pub last_outcome: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub pupils: i64,
    pub staff: i64,
    pub groups: i64,
    /// Removals waiting for `approve`, and the run that holds them.
    pub held: usize,
    pub held_run: Option<i64>,
    /// Identity conflicts of the school's last run that compared its roster (unresolved
    /// until `person relink` or the source fixes them).
    pub identity_conflicts: usize,
    /// The run that found them.
    pub identity_conflicts_run: Option<i64>,
}

/// How much a school needs an admin, most first: the console lists schools in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Concern {
    /// Nothing is synced: its credential was refused, or its last run failed.
    Broken,
    /// Its roster is held as it is (frozen, offboarding).
    Stopped,
    /// Synced, but something waits for a person: held removals, identity conflicts.
    Waiting,
    /// Not linked in the broker yet: the school's own step.
    Pending,
    Fine,
}

impl SchoolStatus {
    pub fn concern(&self) -> Concern {
        let state = self.state.as_str();
        if state == crate::model::SchoolStatus::Parked.as_str()
            || self.last_outcome.as_deref() == Some("failed")
        {
            Concern::Broken
        } else if state == crate::model::SchoolStatus::Frozen.as_str()
            || state == crate::model::SchoolStatus::Offboarding.as_str()
        {
            Concern::Stopped
        } else if self.held > 0 || self.identity_conflicts > 0 {
            Concern::Waiting
        } else if state != crate::model::SchoolStatus::Active.as_str() {
            Concern::Pending
        } else {
            Concern::Fine
        }
    }

    /// What needs attention, each a sentence that says what to do, to follow the school's id:
    /// `status` prints them and the console shows them, in the same words.
    pub fn attention(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.state != crate::model::SchoolStatus::Active.as_str()
            && let Some(r) = &self.reason
        {
            out.push(format!("{}: {r}", self.state));
        }
        if let (Some("failed"), Some(run)) = (self.last_outcome.as_deref(), self.last_run) {
            out.push(format!(
                "failed in its last run ({run}): `rostersync runs show {run}` says why and what \
                 to do"
            ));
        }
        if let Some(run) = self.held_run.filter(|_| self.held > 0) {
            out.push(format!(
                "has {} removal(s) held by the brakes in run {run}; if they are real: \
                 `rostersync approve --run {run}`",
                self.held
            ));
        }
        if self.identity_conflicts > 0 {
            out.push(format!(
                "needs attention: {} identity conflict(s) in its last run (`rostersync changes \
                 --run {}`); a changed ECK-iD of the same person is accepted with `rostersync \
                 person relink PERSON --accept-source`",
                self.identity_conflicts,
                self.identity_conflicts_run
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "N".into())
            ));
        }
        out
    }
}

/// `template` for every school, or for one: `{and}` becomes ` AND school_id = ?` and
/// `{where}` ` WHERE school_id = ?` (bound, never spliced) when `only` is given.
fn scoped(backend: sea_orm::DbBackend, template: &str, only: Option<&str>) -> Statement {
    let Some(school) = only else {
        let sql = template.replace("{and}", "").replace("{where}", "");
        return Statement::from_string(backend, sql);
    };
    let mark = match backend {
        sea_orm::DbBackend::Postgres => "$1",
        _ => "?",
    };
    let sql = template
        .replace("{and}", &format!(" AND school_id = {mark}"))
        .replace("{where}", &format!(" WHERE school_id = {mark}"));
    Statement::from_sql_and_values(backend, sql, [school.into()])
}

async fn counts<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    only: Option<&str>,
) -> Result<HashMap<(String, String), i64>, DbErr> {
    let rows = db
        .query_all_raw(scoped(db.get_database_backend(), sql, only))
        .await?;
    let mut out = HashMap::new();
    for r in rows {
        let school: String = r.try_get_by_index(0)?;
        let kind: String = r.try_get_by_index(1)?;
        let n: i64 = r.try_get_by_index(2)?;
        out.insert((school, kind), n);
    }
    Ok(out)
}

pub async fn list<C: ConnectionTrait>(db: &C) -> Result<Vec<SchoolStatus>, DbErr> {
    select(db, None).await
}

/// One school's status, with queries for that school alone (the console's school page).
pub async fn of<C: ConnectionTrait>(db: &C, school: &str) -> Result<Option<SchoolStatus>, DbErr> {
    Ok(select(db, Some(school)).await?.pop())
}

async fn select<C: ConnectionTrait>(
    db: &C,
    only: Option<&str>,
) -> Result<Vec<SchoolStatus>, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let mut find = school::Entity::find();
    let mut states = source_state::Entity::find();
    if let Some(id) = only {
        find = find.filter(school::Column::Id.eq(id));
        states = states.filter(source_state::Column::SchoolId.eq(id));
    }
    let schools = find.all(db).await?;
    let success: HashMap<String, DateTime<Utc>> = states
        .all(db)
        .await?
        .into_iter()
        .filter_map(|s| s.last_success_at.map(|t| (s.school_id, t)))
        .fold(HashMap::new(), |mut m, (id, t)| {
            let e = m.entry(id).or_insert(t);
            if t > *e {
                *e = t;
            }
            m
        });
    let persons = counts(
        db,
        "SELECT school_id, kind, COUNT(*) FROM person WHERE removed_at IS NULL{and} \
         GROUP BY school_id, kind",
        only,
    )
    .await?;
    let groups = counts(
        db,
        "SELECT school_id, 'group', COUNT(*) FROM roster_group WHERE removed_at IS NULL{and} \
         GROUP BY school_id",
        only,
    )
    .await?;
    let last_runs = db
        .query_all_raw(scoped(
            db.get_database_backend(),
            "SELECT school_id, id, outcome, started_at FROM sync_run WHERE id IN \
             (SELECT MAX(id) FROM sync_run{where} GROUP BY school_id)",
            only,
        ))
        .await?;
    let mut last: HashMap<String, (i64, Option<String>, DateTime<Utc>)> = HashMap::new();
    for r in last_runs {
        let school: String = r.try_get_by_index(0)?;
        last.insert(
            school,
            (
                r.try_get_by_index(1)?,
                r.try_get_by_index(2)?,
                r.try_get_by_index(3)?,
            ),
        );
    }
    let conflicts = identity_conflicts(db, only).await?;
    let waiting: HashMap<String, (i64, usize)> = held::waiting(db)
        .await?
        .into_iter()
        .map(|(school, run, n)| (school, (run, n)))
        .collect();
    let mut out: Vec<SchoolStatus> = schools
        .into_iter()
        .map(|s| {
            let n = |kind: &str| persons.get(&(s.id.clone(), kind.to_owned())).copied();
            let run = last.get(&s.id);
            SchoolStatus {
                name: s.name.clone(),
                state: s.state.clone(),
                reason: s.state_reason.clone(),
                last_run: run.map(|r| r.0),
                last_outcome: run.and_then(|r| r.1.clone()),
                last_run_at: run.map(|r| r.2),
                last_success_at: success.get(&s.id).copied(),
                pupils: n("pupil").unwrap_or(0),
                staff: n("staff").unwrap_or(0),
                groups: groups
                    .get(&(s.id.clone(), "group".to_owned()))
                    .copied()
                    .unwrap_or(0),
                held: waiting.get(&s.id).map(|w| w.1).unwrap_or(0),
                held_run: waiting.get(&s.id).map(|w| w.0),
                identity_conflicts: conflicts.get(&s.id).map_or(0, |c| c.1),
                identity_conflicts_run: conflicts.get(&s.id).map(|c| c.0),
                id: s.id,
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Per school, the identity conflicts of its last run that compared the roster (ok or held).
async fn identity_conflicts<C: ConnectionTrait>(
    db: &C,
    only: Option<&str>,
) -> Result<HashMap<String, (i64, usize)>, DbErr> {
    let rows = db
        .query_all_raw(scoped(
            db.get_database_backend(),
            "SELECT school_id, counts, id FROM sync_run WHERE id IN (SELECT MAX(id) FROM sync_run \
             WHERE outcome IN ('ok', 'held') AND dry_run = false{and} GROUP BY school_id)",
            only,
        ))
        .await?;
    let mut out = HashMap::new();
    for r in rows {
        let school: String = r.try_get_by_index(0)?;
        let counts: String = r.try_get_by_index(1)?;
        let n = serde_json::from_str::<serde_json::Value>(&counts)
            .ok()
            .and_then(|c| c["identity_conflicts"].as_u64())
            .unwrap_or(0);
        if n > 0 {
            out.insert(school, (r.try_get_by_index(2)?, n as usize));
        }
    }
    Ok(out)
}

/// The store_meta key of a connection's problem.
fn problem_key(connection: &str) -> String {
    format!("problem:{connection}")
}

/// Record (or clear) a problem of a whole connection, such as the broker refusing our
/// certificate, so `status` can show it beside the schools that wait for it.
pub async fn set_problem<C: ConnectionTrait>(
    db: &C,
    connection: &str,
    problem: Option<&str>,
) -> Result<(), DbErr> {
    use super::entities::store_meta;
    use sea_orm::ActiveValue::Set;
    use sea_orm::sea_query::OnConflict;
    let key = problem_key(connection);
    let known = super::by_key(db, store_meta::Entity::find_by_id(key.clone())).await?;
    let Some(problem) = problem else {
        if known.is_some() {
            store_meta::Entity::delete_by_id(key).exec(db).await?;
        }
        return Ok(());
    };
    // Keep the first time it was seen: "since" is what an operator wants to know.
    if known.is_some_and(|m| m.value.split_once(' ').is_some_and(|(_, p)| p == problem)) {
        return Ok(());
    }
    store_meta::Entity::insert(store_meta::ActiveModel {
        key: Set(key),
        value: Set(format!("{} {problem}", Utc::now().to_rfc3339())),
    })
    .on_conflict(
        OnConflict::column(store_meta::Column::Key)
            .update_column(store_meta::Column::Value)
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

/// A problem of a whole connection, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionProblem {
    pub connection: String,
    pub since: Option<DateTime<Utc>>,
    pub problem: String,
}

/// Every recorded connection problem.
pub async fn problems<C: ConnectionTrait>(db: &C) -> Result<Vec<ConnectionProblem>, DbErr> {
    use super::entities::store_meta;
    use sea_orm::{ColumnTrait, QueryFilter};
    Ok(store_meta::Entity::find()
        .filter(store_meta::Column::Key.starts_with("problem:"))
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            let (since, problem) = m.value.split_once(' ').unwrap_or(("", &m.value));
            ConnectionProblem {
                connection: m.key.trim_start_matches("problem:").to_owned(),
                since: DateTime::parse_from_rfc3339(since)
                    .ok()
                    .map(|d| d.with_timezone(&Utc)),
                problem: problem.to_owned(),
            }
        })
        .collect())
}

/// A school's status with a run that went well, for tests of what is shown.
#[cfg(test)]
pub(crate) fn sample(id: &str, state: &str) -> SchoolStatus {
    SchoolStatus {
        id: id.into(),
        name: None,
        state: state.into(),
        reason: None,
        last_run: Some(7),
        last_outcome: Some("ok".into()),
        last_run_at: None,
        last_success_at: None,
        pupils: 10,
        staff: 2,
        groups: 1,
        held: 0,
        held_run: None,
        identity_conflicts: 0,
        identity_conflicts_run: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn school(state: &str) -> SchoolStatus {
        sample("99XX00", state)
    }

    #[test]
    fn schools_rank_by_what_they_need_and_say_what_to_do() {
        let fine = school("active");
        assert_eq!(fine.concern(), Concern::Fine);
        assert!(fine.attention().is_empty());
        let frozen = SchoolStatus {
            reason: Some("the LAS answered for 2025-2026; settles by itself".into()),
            ..school("frozen")
        };
        assert_eq!(frozen.concern(), Concern::Stopped);
        assert_eq!(
            frozen.attention(),
            ["frozen: the LAS answered for 2025-2026; settles by itself"]
        );
        let failed = SchoolStatus {
            last_outcome: Some("failed".into()),
            ..school("active")
        };
        assert_eq!(failed.concern(), Concern::Broken);
        assert!(failed.attention()[0].contains("`rostersync runs show 7`"));
        let held = SchoolStatus {
            held: 3,
            held_run: Some(7),
            ..school("active")
        };
        assert_eq!(held.concern(), Concern::Waiting);
        assert!(held.attention()[0].contains("`rostersync approve --run 7`"));
        let mut all = [fine, held, frozen, failed, school("awaiting_consent")];
        all.sort_by_key(SchoolStatus::concern);
        let order: Vec<Concern> = all.iter().map(SchoolStatus::concern).collect();
        assert_eq!(
            order,
            [
                Concern::Broken,
                Concern::Stopped,
                Concern::Waiting,
                Concern::Pending,
                Concern::Fine
            ]
        );
    }
}
