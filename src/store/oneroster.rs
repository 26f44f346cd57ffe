//! The store read as OneRoster collections: users, classes and enrollments, filtered, sorted
//! and paged in SQL (one count and one page query, then one query per page for what the
//! page's records carry), so a page costs the same in a school of 50 pupils and a country
//! of 2.5 million. Every field that can be filtered or sorted on is a SQL expression here.
//! Enrollments are the pupils' memberships and the staff's group grants; removed ones come
//! from tombstones, revoked grants and the journal.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, TransactionTrait,
};

use super::Stamp;
use super::sql::Sql;

/// Which collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    Users,
    Classes,
    Enrollments,
}

/// A comparison, already checked against the collection's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub field: String,
    /// `=`, `<>`, `>`, `>=`, `<`, `<=` or `LIKE` (contains, ignoring case).
    pub op: &'static str,
    pub value: Compared,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compared {
    Text(String),
    Time(Stamp),
}

/// A narrower set than the whole collection (the nested endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Within {
    /// Users of one kind: `pupil` or `staff`.
    Kind(&'static str),
    /// Records of one school (by its sourcedId).
    School(String),
    /// The pupils enrolled in a class.
    StudentsOf(String),
    /// The staff who see a class (a group grant).
    TeachersOf(String),
    /// The classes a user is enrolled in (as a pupil or by a group grant).
    ClassesOf(String),
    /// Enrollments of one class.
    EnrollmentsOf(String),
    /// Classes of one school's year group (a course); `None`: groups without one.
    Course {
        school: String,
        year: Option<String>,
    },
    /// Classes of a school year: the live ones of schools in it, and next year's of schools
    /// that have it prepared.
    Term(String),
    /// Classes of any year: live, and next year's prepared ones.
    AnyYear,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Schools the client may see; `None`: all.
    pub schools: Option<Vec<String>>,
    pub within: Vec<Within>,
    pub compare: Vec<Compare>,
    /// The comparisons are joined with OR (else AND).
    pub any: bool,
    /// Include what was removed (a delta asks for it): `tobedeleted` records.
    pub removed: bool,
    pub sort: Option<String>,
    pub descending: bool,
    pub limit: u64,
    pub offset: u64,
    /// Keyset paging in the default order: the records after this sourcedId (the offset is
    /// then not skipped again), and the count the first page found (not counted again).
    pub after: Option<(String, u64)>,
    /// Enrollments only of some persons; set by the page query itself.
    pub narrow: Option<Narrow>,
}

/// Which persons' enrollments a page query reads (the rest cannot be on the page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Narrow {
    /// The persons whose sourcedId is from the first to the second (`None`: to the last).
    Window(String, Option<String>),
    /// These persons (ids from the store): the next ones a delta changed.
    Persons(Vec<i64>),
}

impl Listing {
    /// A delta's lower bound: `dateLastModified>` (or `>=`) a moment, in an AND filter.
    /// Every record the listing can return was modified at or after it.
    pub fn lower_bound(&self) -> Option<Stamp> {
        if self.any {
            return None;
        }
        self.compare.iter().find_map(|c| match (&c.value, c.op) {
            (Compared::Time(t), ">" | ">=") if c.field == "dateLastModified" => Some(*t),
            _ => None,
        })
    }
}

/// A user's ECK-iD, whole again: the row keeps it without its prefix (`migration::full_eckid`,
/// whose SQL this is; a test holds them equal).
const USER_MASTER_IDENTIFIER: &str = "COALESCE((CASE WHEN substr(p.eckid, 1, 2) = '~~' \
     THEN substr(p.eckid, 2) WHEN substr(p.eckid, 1, 1) = '~' \
     THEN 'https://ketenid.nl/201703/' || substr(p.eckid, 2) ELSE p.eckid END), '')";

/// The SQL of a field, or `None` when the collection has no such scalar field.
pub fn column(c: Collection, field: &str) -> Option<&'static str> {
    const EMPTY: &str = "''";
    Some(match (c, field) {
        (Collection::Users, "sourcedId") => "p.sourced_id",
        (Collection::Users, "status") => {
            "(CASE WHEN p.removed_at IS NULL THEN 'active' ELSE 'tobedeleted' END)"
        }
        (Collection::Users, "dateLastModified") => "p.updated_at",
        (Collection::Users, "enabledUser") => {
            "(CASE WHEN p.removed_at IS NULL THEN 'true' ELSE 'false' END)"
        }
        (Collection::Users, "givenName") => "COALESCE(p.given_name, '')",
        (Collection::Users, "familyName") => {
            "TRIM(COALESCE(p.prefix || ' ', '') || COALESCE(p.family_name, ''))"
        }
        (Collection::Users, "email") => "COALESCE(p.email, '')",
        (Collection::Users, "userMasterIdentifier") => USER_MASTER_IDENTIFIER,
        (Collection::Users, "identifier") => "COALESCE(p.las_key, '')",
        (
            Collection::Users,
            "username"
            | "middleName"
            | "preferredFirstName"
            | "preferredMiddleName"
            | "preferredLastName"
            | "pronouns"
            | "sms"
            | "phone"
            | "password",
        ) => EMPTY,
        (Collection::Classes, "sourcedId") => "g.sourced_id",
        (Collection::Classes, "status") => {
            "(CASE WHEN g.removed_at IS NULL THEN 'active' ELSE 'tobedeleted' END)"
        }
        (Collection::Classes, "dateLastModified") => "g.updated_at",
        (Collection::Classes, "title") => "g.name",
        (Collection::Classes, "classCode") => "g.key",
        (Collection::Classes, "classType") => {
            "(CASE WHEN g.kind = 'stamgroep' THEN 'homeroom' ELSE 'scheduled' END)"
        }
        (Collection::Classes, "location") => EMPTY,
        (Collection::Enrollments, "sourcedId") => "e.sourced_id",
        (Collection::Enrollments, "status") => "e.status",
        (Collection::Enrollments, "dateLastModified") => "e.modified",
        (Collection::Enrollments, "role") => "e.role",
        (Collection::Enrollments, "primary") => "e.is_primary",
        (Collection::Enrollments, "beginDate" | "endDate") => EMPTY,
        _ => return None,
    })
}

/// The newest of several moments, as each backend writes it.
fn greatest(backend: DbBackend, items: &[&str]) -> String {
    match backend {
        DbBackend::Postgres => format!("GREATEST({})", items.join(", ")),
        _ => format!("MAX({})", items.join(", ")),
    }
}

/// The three ways a membership can have moved since a moment, as each backend reads them
/// best: SQLite scans every person for `p.updated_at >= ?` in the join and wants the
/// subqueries (0.5 ms instead of 100 for a poll that finds nothing, 90,000 pupils), where
/// PostgreSQL turns those into a hash join over every membership (640 ms instead of 75 for
/// a delta of 2% of the schools).
fn moments(backend: DbBackend) -> [(&'static str, &'static str); 3] {
    match backend {
        DbBackend::Postgres => [
            ("m.since >= ", ""),
            ("p.updated_at >= ", ""),
            ("g.updated_at >= ", ""),
        ],
        _ => [
            ("m.since >= ", ""),
            (
                "m.person_id IN (SELECT id FROM person WHERE updated_at >= ",
                ")",
            ),
            (
                "m.group_id IN (SELECT id FROM roster_group WHERE updated_at >= ",
                ")",
            ),
        ],
    }
}

/// `AND ...`: only the window's persons (the sourcedId index gives them in order), or the
/// persons named (by their primary key).
fn narrow_to(sql: &mut Sql, only: Option<&Narrow>) {
    match only {
        Some(Narrow::Window(from, to)) => {
            sql.push(" AND p.sourced_id >= ").bind(from.clone());
            if let Some(to) = to {
                sql.push(" AND p.sourced_id <= ").bind(to.clone());
            }
        }
        Some(Narrow::Persons(ids)) => {
            // Ids from the store, written in: a page may name more than a statement can bind.
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            let list = if list.is_empty() {
                "NULL".to_owned()
            } else {
                list.join(", ")
            };
            sql.push(&format!(" AND p.id IN ({list})"));
        }
        None => {}
    }
}

/// The enrollments as one relation `e`: pupils' memberships, removed memberships from the
/// journal (only for a delta), and staff group grants (one per person, group and rule).
/// With `since` (a delta's lower bound) each part reads only rows that moved at or after it,
/// through the indexes on the moments, so a delta costs what changed, not the whole country;
/// the listing's own filter then applies the exact comparison.
fn enrollments_from(sql: &mut Sql, removed: bool, since: Option<Stamp>, only: Option<&Narrow>) {
    let narrow = |sql: &mut Sql| narrow_to(sql, only);
    let modified = greatest(sql.backend, &["m.since", "p.updated_at", "g.updated_at"]);
    let members = format!(
        "SELECT p.sourced_id || '.' || g.sourced_id || '.member' AS sourced_id, \
         p.school_id AS school_id, p.sourced_id AS user_sid, g.sourced_id AS class_sid, \
         'student' AS role, 'false' AS is_primary, \
         CASE WHEN p.removed_at IS NULL AND g.removed_at IS NULL THEN 'active' ELSE 'tobedeleted' END AS status, \
         {modified} AS modified \
         FROM membership m JOIN person p ON p.id = m.person_id \
         JOIN roster_group g ON g.id = m.group_id WHERE p.kind = 'pupil'"
    );
    sql.push("(");
    match since {
        // One part per moment, each through its own index, joined by UNION: an OR of the
        // three made PostgreSQL read every membership (13 ms for a poll that finds nothing,
        // in a store of 90,000 pupils; 0.2 ms this way). Named persons are read whole: the
        // listing's own filter keeps what moved.
        Some(t) if !matches!(only, Some(Narrow::Persons(_))) => {
            for (i, (part, close)) in moments(sql.backend).iter().enumerate() {
                if i > 0 {
                    sql.push(" UNION ");
                }
                sql.push(&format!("{members} AND {part}"))
                    .bind(t)
                    .push(close);
            }
        }
        _ => {
            sql.push(&members);
            narrow(sql);
        }
    }
    if removed {
        sql.push(
            " UNION ALL SELECT p.sourced_id || '.' || g.sourced_id || '.member', p.school_id, \
             p.sourced_id, g.sourced_id, 'student', 'false', 'tobedeleted', MAX(c.at) \
             FROM change_entry c JOIN person p ON p.id = c.person_id \
             JOIN roster_group g ON g.school_id = c.school_id AND g.key = c.field \
             WHERE c.operation = 'leave' AND p.kind = 'pupil' \
             AND NOT EXISTS (SELECT 1 FROM membership x WHERE x.person_id = p.id AND x.group_id = g.id)",
        );
        if let Some(t) = since {
            sql.push(" AND c.at >= ").bind(t);
        }
        narrow(sql);
        sql.push(" GROUP BY p.sourced_id, g.sourced_id, p.school_id");
    }
    sql.push(
        " UNION ALL SELECT p.sourced_id || '.' || g.sourced_id || '.' || a.rule, a.school_id, \
         p.sourced_id, g.sourced_id, \
         CASE WHEN a.rule IN ('team-leader', 'dean') THEN 'administrator' ELSE 'teacher' END, \
         CASE WHEN a.rule = 'teacher' AND EXISTS (SELECT 1 FROM membership x \
           WHERE x.person_id = a.person_id AND x.group_id = a.group_id \
           AND (x.role LIKE '%LRK%' OR x.role = 'Leerkracht')) THEN 'true' ELSE 'false' END, \
         CASE WHEN SUM(CASE WHEN a.state IN ('active', 'pending') THEN 1 ELSE 0 END) > 0 \
           THEN 'active' ELSE 'tobedeleted' END, \
         MAX(a.changed_at) \
         FROM access_grant a JOIN person p ON p.id = a.person_id \
         JOIN roster_group g ON g.id = a.group_id WHERE a.level = 'related'",
    );
    if let Some(t) = since {
        // Every grant of a person who has one that changed: the state of an enrollment
        // is decided over all grants behind it.
        sql.push(" AND a.person_id IN (SELECT person_id FROM access_grant WHERE changed_at >= ")
            .bind(t)
            .push(")");
    }
    narrow(sql);
    sql.push(
        " GROUP BY p.sourced_id, g.sourced_id, a.rule, a.school_id, a.person_id, a.group_id) e",
    );
}

/// The live classes and next year's prepared ones, in one shape, each with its school year.
/// A prepared class is never removed: a class the LAS drops from next year is simply gone.
const LIVE_AND_PREPARED_CLASSES: &str = "(SELECT lg.id, lg.sourced_id, lg.school_id, lg.key, \
     lg.name, lg.kind, lg.year_group, lg.updated_at, lg.removed_at, ls.school_year \
     FROM roster_group lg JOIN school ls ON ls.id = lg.school_id \
     UNION ALL SELECT pc.id, pc.sourced_id, pc.school_id, pc.key, pc.name, pc.kind, \
     pc.year_group, pc.updated_at, CASE WHEN 1 = 0 THEN pc.updated_at END, py.school_year \
     FROM prepared_class pc JOIN prepared_year py ON py.school_id = pc.school_id) g \
     JOIN school s ON s.id = g.school_id";

/// Whether a listing of classes reads next year's prepared classes too: only when it asks
/// for a school year's classes (a term) or any year's; every other listing is of the live
/// year.
fn with_prepared(l: &Listing) -> bool {
    l.within
        .iter()
        .any(|w| matches!(w, Within::Term(_) | Within::AnyYear))
}

/// Pushes `FROM ...` (without the word); the column of the record's school.
fn from(sql: &mut Sql, c: Collection, l: &Listing) -> &'static str {
    match c {
        Collection::Users => {
            sql.push("person p JOIN school s ON s.id = p.school_id");
            "p.school_id"
        }
        Collection::Classes if with_prepared(l) => {
            sql.push(LIVE_AND_PREPARED_CLASSES);
            "g.school_id"
        }
        Collection::Classes => {
            sql.push("roster_group g JOIN school s ON s.id = g.school_id");
            "g.school_id"
        }
        Collection::Enrollments => {
            enrollments_from(sql, l.removed, l.lower_bound(), l.narrow.as_ref());
            "e.school_id"
        }
    }
}

/// `AND col IN (...)`: the schools the client may see, when it may not see all.
fn only_schools(sql: &mut Sql, school_col: &str, schools: Option<&[String]>) {
    let Some(schools) = schools else {
        return;
    };
    sql.push(&format!(" AND {school_col} IN ("));
    if schools.is_empty() {
        sql.push("NULL");
    }
    for (i, s) in schools.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(s.clone());
    }
    sql.push(")");
}

/// The WHERE of a listing (without the word).
fn condition(sql: &mut Sql, c: Collection, l: &Listing, school_col: &str) {
    sql.push("1 = 1");
    only_schools(sql, school_col, l.schools.as_deref());
    if !l.removed {
        sql.push(match c {
            Collection::Users => " AND p.removed_at IS NULL",
            Collection::Classes => " AND g.removed_at IS NULL",
            Collection::Enrollments => " AND e.status = 'active'",
        });
    }
    for w in &l.within {
        within(sql, c, w);
    }
    if !l.compare.is_empty() {
        sql.push(" AND (");
        for (i, cmp) in l.compare.iter().enumerate() {
            if i > 0 {
                sql.push(if l.any { " OR " } else { " AND " });
            }
            // The caller checked the field; an unknown one would compare nothing.
            let expr = column(c, &cmp.field).unwrap_or("NULL");
            match (&cmp.value, cmp.op) {
                (Compared::Text(t), "LIKE") => {
                    let escaped = t
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    sql.push(&format!("LOWER({expr}) LIKE "))
                        .bind(format!("%{}%", escaped.to_lowercase()))
                        .push(" ESCAPE '\\'");
                }
                (Compared::Text(t), op) => {
                    sql.push(&format!("{expr} {op} ")).bind(t.clone());
                }
                (Compared::Time(t), op) => {
                    sql.push(&format!("{expr} {op} ")).bind(*t);
                }
            }
        }
        sql.push(")");
    }
}

fn within(sql: &mut Sql, c: Collection, w: &Within) {
    match (c, w) {
        (Collection::Users, Within::Kind(k)) => {
            sql.push(" AND p.kind = ").bind(*k);
        }
        (Collection::Enrollments, Within::School(sid)) => {
            sql.push(" AND e.school_id IN (SELECT id FROM school WHERE sourced_id = ")
                .bind(sid.clone())
                .push(")");
        }
        (_, Within::School(sid)) => {
            sql.push(" AND s.sourced_id = ").bind(sid.clone());
        }
        (Collection::Users, Within::StudentsOf(class)) => {
            sql.push(
                " AND p.kind = 'pupil' AND p.id IN (SELECT m.person_id FROM membership m \
                 JOIN roster_group cg ON cg.id = m.group_id WHERE cg.sourced_id = ",
            )
            .bind(class.clone())
            .push(")");
        }
        (Collection::Users, Within::TeachersOf(class)) => {
            sql.push(
                " AND p.kind = 'staff' AND p.id IN (SELECT a.person_id FROM access_grant a \
                 JOIN roster_group cg ON cg.id = a.group_id WHERE a.level = 'related' \
                 AND a.state IN ('active', 'pending') AND cg.sourced_id = ",
            )
            .bind(class.clone())
            .push(")");
        }
        (Collection::Classes, Within::ClassesOf(user)) => {
            sql.push(
                " AND g.id IN (SELECT m.group_id FROM membership m JOIN person u \
                 ON u.id = m.person_id WHERE u.kind = 'pupil' AND u.sourced_id = ",
            )
            .bind(user.clone())
            .push(
                " UNION SELECT a.group_id FROM access_grant a JOIN person u ON u.id = a.person_id \
                 WHERE a.level = 'related' AND a.state IN ('active', 'pending') AND u.sourced_id = ",
            )
            .bind(user.clone())
            .push(")");
        }
        (Collection::Classes, Within::Course { school, year }) => {
            sql.push(" AND s.sourced_id = ").bind(school.clone());
            match year {
                Some(y) => sql.push(" AND g.year_group = ").bind(y.clone()),
                None => sql.push(" AND g.year_group IS NULL"),
            };
        }
        (Collection::Classes, Within::Term(year)) => {
            // `g.school_year`: the year of the row (see `LIVE_AND_PREPARED_CLASSES`).
            sql.push(" AND g.school_year = ").bind(year.clone());
        }
        (Collection::Classes, Within::AnyYear) => {}
        (Collection::Enrollments, Within::EnrollmentsOf(class)) => {
            sql.push(" AND e.class_sid = ").bind(class.clone());
        }
        // A narrowing that does not apply to this collection leaves nothing.
        _ => {
            sql.push(" AND 1 = 0");
        }
    }
}

/// The page of a listing and how many records there are in all.
///
/// On PostgreSQL in one transaction that plans each statement for its values: a cached
/// generic plan cannot see them, so a delta's `updated_at > $1` looks like a third of the
/// table and its page walks the sourcedId index through all of it (55 ms instead of 0.05
/// for "nothing new" on 96,000 persons). Only here: for the sync's inserts the generic plan
/// is right, and planning 500-row inserts anew on every run took a third of a first load.
pub async fn page(
    db: &DatabaseConnection,
    c: Collection,
    l: &Listing,
) -> Result<(u64, Vec<QueryResult>), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return page_in(db, c, l).await;
    }
    let txn = db.begin().await?;
    txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
        .await?;
    let page = page_in(&txn, c, l).await?;
    txn.commit().await?;
    Ok(page)
}

async fn page_in<C: ConnectionTrait>(
    db: &C,
    c: Collection,
    l: &Listing,
) -> Result<(u64, Vec<QueryResult>), DbErr> {
    let total = match &l.after {
        Some((_, total)) => *total,
        None => count(db, c, l).await?,
    };
    let rows = match (window_start(c, l), delta_start(c, l)) {
        (Some(from), _) => windowed(db, c, l, total, from).await?,
        (None, Some((from, since))) => delta_page(db, l, total, &from, since).await?,
        (None, None) => select_page(db, c, l, total).await?,
    };
    Ok((total, rows))
}

/// Where a delta of enrollments is read person by person: in the default order, from the
/// first record or a cursor, with nothing narrower asked. Such a page used to build and sort
/// every enrollment that moved since the moment for each page (1.1 s a page for a delta of 2%
/// of 8,000 schools, so quadratic in the delta over all its pages). Returns the first
/// person's sourcedId to read from and the delta's lower bound.
fn delta_start(c: Collection, l: &Listing) -> Option<(String, Stamp)> {
    let since = l.lower_bound()?;
    if c != Collection::Enrollments || l.sort.is_some() || l.descending || !l.within.is_empty() {
        return None;
    }
    Some((first_person(l)?, since))
}

/// The sourcedId of the person a page of enrollments in the default order begins with: the
/// cursor's user, or the very first (an empty text) on the first page; `None` for a page
/// asked by offset.
fn first_person(l: &Listing) -> Option<String> {
    match &l.after {
        // An enrollment's sourcedId begins with its user's, which has no dot.
        Some((after, _)) => after.split('.').next().map(str::to_owned),
        None if l.offset == 0 => Some(String::new()),
        None => None,
    }
}

/// A page of a delta of enrollments: the persons the delta touched, in sourcedId order from
/// `from`, as many as the page has records (four times as many while that leaves it short),
/// then the page from their enrollments alone. Finding those persons costs their ids, not
/// their enrollments built, joined and sorted.
async fn delta_page<C: ConnectionTrait>(
    db: &C,
    l: &Listing,
    total: u64,
    from: &str,
    since: Stamp,
) -> Result<Vec<QueryResult>, DbErr> {
    let mut span = l.limit.max(1);
    let how = find_by(total, l.limit, person_rows(db).await?);
    loop {
        let (persons, more) = moved_persons(db, l, (from, since), span, how).await?;
        let mut narrowed = l.clone();
        narrowed.narrow = Some(Narrow::Persons(persons));
        let rows = select_page(db, Collection::Enrollments, &narrowed, total).await?;
        if rows.len() as u64 >= l.limit || !more {
            return Ok(rows);
        }
        span = span.saturating_mul(4);
    }
}

/// How to find the persons a delta of `total` enrollments moved, for pages of `limit`, among
/// `rows` persons. As for users (`through_moment`), the moments' indexes cost the delta's size
/// and a walk costs the page over the delta's share of the persons; but a person walked costs
/// about twice an id from an index (four lookups against one, fewer ids than records), hence
/// the factor. Measured on SQLite, a page's persons of a 2% delta: at 1,000 schools (18,000
/// records) 26 ms by moment against 136 walking; at 8,000 (225,000 records) walking wins.
fn find_by(total: u64, limit: u64, rows: u64) -> Find {
    if through_moment(total, limit.saturating_mul(2), rows) {
        Find::ByMoment
    } else {
        Find::ByWalk
    }
}

/// How `moved_persons` finds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Find {
    /// Every person that moved, through the moments' indexes, then the first ones in order:
    /// costs the delta's size on every page.
    ByMoment,
    /// The persons in order from `from`, each tested: costs the page over the delta's share
    /// of the persons.
    ByWalk,
}

/// Up to `n` persons (ids, in sourcedId order from `from`) that have an enrollment that may
/// have moved since `since`, and whether there are more: every record of a person outside
/// this set is older (see `enrollments_from`).
pub async fn moved_persons<C: ConnectionTrait>(
    db: &C,
    l: &Listing,
    (from, since): (&str, Stamp),
    n: u64,
    how: Find,
) -> Result<(Vec<i64>, bool), DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT p.id FROM person p WHERE p.sourced_id >= ")
        .bind(from.to_owned());
    only_schools(&mut sql, "p.school_id", l.schools.as_deref());
    match how {
        Find::ByMoment => moved_by_moment(&mut sql, since, l.removed),
        Find::ByWalk => moved_by_walk(&mut sql, since, l.removed),
    }
    sql.push(&format!(
        " ORDER BY p.sourced_id LIMIT {}",
        n.saturating_add(1)
    ));
    let rows = db.query_all_raw(sql.statement()).await?;
    let more = rows.len() as u64 > n;
    let ids = rows
        .iter()
        .take(usize::try_from(n).unwrap_or(usize::MAX))
        .map(|r| r.try_get_by_index::<i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ids, more))
}

/// `AND p.id IN (...)`: the persons behind every moment at or after `since`, from each
/// moment's index.
fn moved_by_moment(sql: &mut Sql, since: Stamp, removed: bool) {
    sql.push(" AND p.id IN (SELECT person_id FROM membership WHERE since >= ")
        .bind(since)
        .push(" UNION SELECT id FROM person WHERE updated_at >= ")
        .bind(since)
        .push(
            " UNION SELECT person_id FROM membership WHERE group_id IN \
             (SELECT id FROM roster_group WHERE updated_at >= ",
        )
        .bind(since)
        .push(") UNION SELECT person_id FROM access_grant WHERE changed_at >= ")
        .bind(since);
    if removed {
        sql.push(" UNION SELECT person_id FROM change_entry WHERE operation = 'leave' AND at >= ")
            .bind(since);
    }
    sql.push(")");
}

/// `AND (...)`: whether this person has a moment at or after `since`, through the person's
/// own rows (each table has an index that starts with the person).
fn moved_by_walk(sql: &mut Sql, since: Stamp, removed: bool) {
    sql.push(" AND (p.updated_at >= ")
        .bind(since)
        .push(" OR EXISTS (SELECT 1 FROM membership m WHERE m.person_id = p.id AND m.since >= ")
        .bind(since)
        .push(
            ") OR EXISTS (SELECT 1 FROM membership m JOIN roster_group g ON g.id = m.group_id \
             WHERE m.person_id = p.id AND g.updated_at >= ",
        )
        .bind(since)
        .push(") OR EXISTS (SELECT 1 FROM access_grant a WHERE a.person_id = p.id AND a.changed_at >= ")
        .bind(since)
        .push(")");
    if removed {
        sql.push(
            " OR EXISTS (SELECT 1 FROM change_entry c WHERE c.person_id = p.id \
             AND c.operation = 'leave' AND c.at >= ",
        )
        .bind(since)
        .push(")");
    }
    sql.push(")");
}

/// Where the window of a full listing of enrollments begins, when the page is read through
/// one: in the default order, over every school (a client of a few schools reads little
/// anyway), from the first record or a cursor. Each page would otherwise build and sort
/// every enrollment of the country (0.8 s a page at 1,000 schools, for 340 pages).
fn window_start(c: Collection, l: &Listing) -> Option<String> {
    let whole = c == Collection::Enrollments
        && l.lower_bound().is_none()
        && l.sort.is_none()
        && !l.descending
        && l.schools.is_none()
        && l.within.is_empty();
    if !whole {
        return None;
    }
    first_person(l)
}

/// A page of enrollments read from the persons from `from` on, a window of them at a time:
/// as many persons as the page has records, four times as many while that leaves the page
/// short (persons with no enrollment), up to the last person.
async fn windowed<C: ConnectionTrait>(
    db: &C,
    c: Collection,
    l: &Listing,
    total: u64,
    from: String,
) -> Result<Vec<QueryResult>, DbErr> {
    let mut span = l.limit;
    loop {
        let to = nth_person(db, &from, span).await?;
        let mut narrowed = l.clone();
        narrowed.narrow = Some(Narrow::Window(from.clone(), to.clone()));
        let rows = select_page(db, c, &narrowed, total).await?;
        if rows.len() as u64 >= l.limit || to.is_none() {
            return Ok(rows);
        }
        span = span.saturating_mul(4);
    }
}

/// The sourcedId of the person `n` places after the first at or after `from`, in order;
/// `None` past the last one.
async fn nth_person<C: ConnectionTrait>(
    db: &C,
    from: &str,
    n: u64,
) -> Result<Option<String>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT sourced_id FROM person WHERE sourced_id >= ")
        .bind(from.to_owned())
        .push(" ORDER BY sourced_id LIMIT 1 OFFSET ")
        .bind(i64::try_from(n).unwrap_or(i64::MAX));
    db.query_one_raw(sql.statement())
        .await?
        .map(|r| r.try_get_by_index::<String>(0))
        .transpose()
}

/// The records of one page of a listing that has `total` in all.
async fn select_page<C: ConnectionTrait>(
    db: &C,
    c: Collection,
    l: &Listing,
    total: u64,
) -> Result<Vec<QueryResult>, DbErr> {
    let backend = db.get_database_backend();
    let select = match c {
        Collection::Users => {
            "p.id, p.sourced_id, p.school_id, p.kind, p.family_name, p.prefix, p.given_name, \
             p.email, p.year_group, p.updated_at, p.removed_at, s.sourced_id AS school_sid, \
             p.eckid, p.las_key"
        }
        Collection::Classes if with_prepared(l) => {
            "g.id, g.sourced_id, g.school_id, g.key, g.name, g.kind, g.year_group, g.updated_at, \
             g.removed_at, s.sourced_id AS school_sid, g.school_year"
        }
        Collection::Classes => {
            "g.id, g.sourced_id, g.school_id, g.key, g.name, g.kind, g.year_group, g.updated_at, \
             g.removed_at, s.sourced_id AS school_sid, s.school_year"
        }
        Collection::Enrollments => {
            "e.sourced_id, e.school_id, e.user_sid, e.class_sid, e.role, e.is_primary, e.status, \
             e.modified, (SELECT s.sourced_id FROM school s WHERE s.id = e.school_id) AS school_sid"
        }
    };
    let mut key = column(c, "sourcedId").unwrap_or("1").to_owned();
    if backend == DbBackend::Sqlite
        && c == Collection::Users
        && l.sort.is_none()
        && l.lower_bound().is_some()
        && through_moment(total, l.limit, person_rows(db).await?)
    {
        // `+` keeps SQLite off the sourcedId index, so it reads the delta by its moment.
        key = format!("+{key}");
    }
    let key = key.as_str();
    let order = l.sort.as_deref().and_then(|f| column(c, f)).unwrap_or(key);
    let dir = if l.descending { "DESC" } else { "ASC" };
    let mut sql = Sql::new(backend);
    sql.push(&format!("SELECT {select} FROM "));
    let school_col = from(&mut sql, c, l);
    sql.push(" WHERE ");
    condition(&mut sql, c, l, school_col);
    let skip = match &l.after {
        Some((after, _)) => {
            sql.push(&format!(" AND {key} > ")).bind(after.clone());
            0
        }
        None if l.narrow.is_some() => 0,
        None => l.offset,
    };
    // The limit written in, not bound: SQLite plans with a bound limit's value and so prepares
    // such a statement again on every execution. It is a number, never text from a client.
    sql.push(&format!(
        " ORDER BY {order} {dir}, {key} {dir} LIMIT {} OFFSET ",
        l.limit
    ))
    .bind(skip as i64);
    db.query_all_raw(sql.statement()).await
}

/// Whether SQLite should read a delta of users through the index of their moments and sort
/// it for each page, instead of walking the sourcedId index (from the cursor) and testing
/// each person's moment. SQLite has no statistics to weigh a moment by, so it always walks;
/// that costs the page's size over the delta's share of the table (`limit * rows / delta`
/// persons tested), the other way costs the delta's size: the smaller wins.
fn through_moment(delta: u64, limit: u64, rows: u64) -> bool {
    delta.saturating_mul(delta) < limit.saturating_mul(rows)
}

/// How many persons the store has at most (the highest id: one look at the index's end).
async fn person_rows<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    let stmt = Statement::from_string(db.get_database_backend(), "SELECT MAX(id) FROM person");
    let max = db
        .query_one_raw(stmt)
        .await?
        .map(|r| r.try_get_by_index::<Option<i64>>(0))
        .transpose()?
        .flatten()
        .unwrap_or(0);
    Ok(u64::try_from(max).unwrap_or(0))
}

/// How many records a listing has in all, whatever page is asked for.
async fn count<C: ConnectionTrait>(db: &C, c: Collection, l: &Listing) -> Result<u64, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT COUNT(*) FROM ");
    let school_col = from(&mut sql, c, l);
    sql.push(" WHERE ");
    condition(&mut sql, c, l, school_col);
    let total = db
        .query_one_raw(sql.statement())
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(total).unwrap_or(0))
}

/// A user as the page query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub sourced_id: String,
    pub school_id: String,
    pub school_sid: String,
    /// `pupil` or `staff`.
    pub kind: String,
    pub family_name: Option<String>,
    pub prefix: Option<String>,
    pub given_name: Option<String>,
    pub email: Option<String>,
    pub year_group: Option<String>,
    pub modified: DateTime<Utc>,
    pub removed: bool,
    /// The ECK-iD (whole) and the LAS key.
    pub eckid: Option<String>,
    pub las_key: Option<String>,
}

impl UserRow {
    pub fn from(r: &QueryResult) -> Result<UserRow, DbErr> {
        Ok(UserRow {
            id: r.try_get("", "id")?,
            sourced_id: r
                .try_get::<Option<String>>("", "sourced_id")?
                .unwrap_or_default(),
            school_id: r.try_get("", "school_id")?,
            school_sid: r
                .try_get::<Option<String>>("", "school_sid")?
                .unwrap_or_default(),
            kind: r.try_get("", "kind")?,
            family_name: r.try_get("", "family_name")?,
            prefix: r.try_get("", "prefix")?,
            given_name: r.try_get("", "given_name")?,
            email: r.try_get("", "email")?,
            year_group: r.try_get("", "year_group")?,
            modified: r.try_get::<Stamp>("", "updated_at")?.at(),
            removed: r.try_get::<Option<Stamp>>("", "removed_at")?.is_some(),
            eckid: super::keys::read_eckid(r.try_get("", "eckid")?),
            las_key: r.try_get("", "las_key")?,
        })
    }
}

/// A class as the page query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRow {
    pub sourced_id: String,
    pub school_id: String,
    pub school_sid: String,
    pub school_year: Option<String>,
    pub key: String,
    pub name: String,
    /// `stamgroep` or `samengesteld`.
    pub kind: String,
    pub year_group: Option<String>,
    pub modified: DateTime<Utc>,
    pub removed: bool,
}

impl ClassRow {
    pub fn from(r: &QueryResult) -> Result<ClassRow, DbErr> {
        Ok(ClassRow {
            sourced_id: r
                .try_get::<Option<String>>("", "sourced_id")?
                .unwrap_or_default(),
            school_id: r.try_get("", "school_id")?,
            school_sid: r
                .try_get::<Option<String>>("", "school_sid")?
                .unwrap_or_default(),
            school_year: r.try_get("", "school_year")?,
            key: r.try_get("", "key")?,
            name: r.try_get("", "name")?,
            kind: r.try_get("", "kind")?,
            year_group: r.try_get("", "year_group")?,
            modified: r.try_get::<Stamp>("", "updated_at")?.at(),
            removed: r.try_get::<Option<Stamp>>("", "removed_at")?.is_some(),
        })
    }
}

/// An enrollment as the page query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRow {
    pub sourced_id: String,
    pub school_sid: String,
    pub user_sid: String,
    pub class_sid: String,
    pub role: String,
    pub primary: bool,
    pub active: bool,
    pub modified: DateTime<Utc>,
}

impl EnrollmentRow {
    pub fn from(r: &QueryResult) -> Result<EnrollmentRow, DbErr> {
        Ok(EnrollmentRow {
            sourced_id: r.try_get("", "sourced_id")?,
            school_sid: r
                .try_get::<Option<String>>("", "school_sid")?
                .unwrap_or_default(),
            user_sid: r.try_get("", "user_sid")?,
            class_sid: r.try_get("", "class_sid")?,
            role: r.try_get("", "role")?,
            primary: r.try_get::<String>("", "is_primary")? == "true",
            active: r.try_get::<String>("", "status")? == "active",
            modified: r
                .try_get::<Option<Stamp>>("", "modified")?
                .unwrap_or_default()
                .at(),
        })
    }
}

/// The whole-school grants (their rules) of each person of a page: roles on the school.
pub async fn school_grants<C: ConnectionTrait>(
    db: &C,
    persons: &[i64],
) -> Result<BTreeMap<i64, Vec<String>>, DbErr> {
    use super::entities::access_grant;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for chunk in persons.chunks(1000) {
        let rows = access_grant::Entity::find()
            .filter(access_grant::Column::PersonId.is_in(chunk.iter().copied()))
            .filter(access_grant::Column::Level.eq("school"))
            .filter(access_grant::Column::State.is_in(["active", "pending"]))
            .all(db)
            .await?;
        for g in rows {
            let rules = out.entry(g.person_id).or_default();
            if !rules.contains(&g.rule) {
                rules.push(g.rule);
            }
        }
    }
    Ok(out)
}

/// Schools as orgs: every school the client may see (few enough to list whole).
pub async fn schools<C: ConnectionTrait>(
    db: &C,
    only: Option<&[String]>,
) -> Result<Vec<super::entities::school::Model>, DbErr> {
    use super::entities::school;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let mut q = school::Entity::find().order_by_asc(school::Column::SourcedId);
    if let Some(ids) = only {
        q = q.filter(school::Column::Id.is_in(ids.iter().cloned()));
    }
    q.all(db).await
}

/// The years schools have prepared: (school id, school year, prepared since), of the
/// schools in `only` or all. The answers themselves are not read.
pub async fn prepared_years<C: ConnectionTrait>(
    db: &C,
    only: Option<&[String]>,
) -> Result<Vec<(String, String, DateTime<Utc>)>, DbErr> {
    use super::entities::prepared_year;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    let mut q = prepared_year::Entity::find().select_only().columns([
        prepared_year::Column::SchoolId,
        prepared_year::Column::SchoolYear,
        prepared_year::Column::PreparedSince,
    ]);
    if let Some(ids) = only {
        q = q.filter(prepared_year::Column::SchoolId.is_in(ids.iter().cloned()));
    }
    q.into_tuple().all(db).await
}

/// The year groups in use per school (for courses): (school id, year group or none).
pub async fn year_groups<C: ConnectionTrait>(
    db: &C,
    only: Option<&[String]>,
) -> Result<Vec<(String, Option<String>)>, DbErr> {
    let backend = db.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push(
        "SELECT DISTINCT g.school_id, g.year_group FROM roster_group g WHERE g.removed_at IS NULL",
    );
    only_schools(&mut sql, "g.school_id", only);
    sql.push(" ORDER BY g.school_id, g.year_group");
    db.query_all_raw(sql.statement())
        .await?
        .iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect()
}

/// A person by sourcedId: (id, school id, kind), live or tombstoned.
pub async fn person_by_sid<C: ConnectionTrait>(
    db: &C,
    sid: &str,
) -> Result<Option<super::entities::person::Model>, DbErr> {
    use super::entities::person;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    person::Entity::find()
        .filter(person::Column::SourcedId.eq(sid))
        .one(db)
        .await
}

/// A group by sourcedId.
pub async fn group_by_sid<C: ConnectionTrait>(
    db: &C,
    sid: &str,
) -> Result<Option<super::entities::roster_group::Model>, DbErr> {
    use super::entities::roster_group;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    roster_group::Entity::find()
        .filter(roster_group::Column::SourcedId.eq(sid))
        .one(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_master_identifier_is_the_eckid_read_back_whole() {
        // Whitespace aside, the same text as the migration crate's: one decoding, in two places.
        let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            squeeze(USER_MASTER_IDENTIFIER),
            squeeze(&format!(
                "COALESCE({}, '')",
                migration::full_eckid_sql("p.eckid")
            ))
        );
    }

    fn at(s: &str) -> Stamp {
        s.parse::<DateTime<Utc>>().expect("a moment").into()
    }

    fn compare(field: &str, op: &'static str, value: Compared) -> Compare {
        Compare {
            field: field.into(),
            op,
            value,
        }
    }

    #[test]
    fn a_small_delta_is_read_by_its_moment_and_a_large_one_by_sourced_id() {
        // 1,000 schools: 323,000 persons, a night's delta of 13,000, pages of 1,000.
        assert!(through_moment(13_000, 1_000, 323_000));
        assert!(through_moment(0, 1_000, 323_000));
        // Everything changed since the moment asked for: walking is cheaper than sorting.
        assert!(!through_moment(323_000, 1_000, 323_000));
        assert!(!through_moment(20_000, 1_000, 323_000));
        assert!(!through_moment(u64::MAX, 1_000, u64::MAX));
    }

    #[test]
    fn a_delta_of_enrollments_is_found_by_moment_when_sparse_and_by_walking_when_dense() {
        // The two measured stores: 1,000 and 8,000 schools, a delta of 2% of day 1 and more.
        assert_eq!(find_by(18_000, 1_000, 321_000), Find::ByMoment);
        assert_eq!(find_by(224_806, 1_000, 2_568_000), Find::ByWalk);
        assert_eq!(find_by(0, 1_000, 2_568_000), Find::ByMoment);
        assert_eq!(find_by(u64::MAX, 1_000, u64::MAX), Find::ByWalk);
    }

    #[test]
    fn a_delta_bound_comes_only_from_a_later_than_in_an_and_filter() {
        let t = at("2026-11-30T20:00:00Z");
        let mut l = Listing {
            compare: vec![
                compare("givenName", "=", Compared::Text("Sanne".into())),
                compare("dateLastModified", ">", Compared::Time(t)),
            ],
            ..Listing::default()
        };
        assert_eq!(l.lower_bound(), Some(t));
        l.compare[1].op = ">=";
        assert_eq!(l.lower_bound(), Some(t));
        // OR: a record may match the other side whenever it changed.
        l.any = true;
        assert_eq!(l.lower_bound(), None);
        l.any = false;
        l.compare[1].op = "<";
        assert_eq!(l.lower_bound(), None);
    }

    #[test]
    fn a_delta_reads_each_part_from_its_moment_index() {
        let t = at("2026-11-30T20:00:00Z");
        let mut sql = Sql::new(DbBackend::Sqlite);
        enrollments_from(&mut sql, true, Some(t), None);
        for part in [
            "AND m.since >= ? UNION SELECT",
            "AND m.person_id IN (SELECT id FROM person WHERE updated_at >= ?) UNION SELECT",
            "AND m.group_id IN (SELECT id FROM roster_group WHERE updated_at >= ?) UNION ALL",
            "c.at >= ?",
            "SELECT person_id FROM access_grant WHERE changed_at >= ?",
        ] {
            assert!(sql.text.contains(part), "{part} in {}", sql.text);
        }
        // No OR between the moments: PostgreSQL cannot read an OR of them through indexes.
        assert!(!sql.text.contains(" OR m."), "{}", sql.text);
        assert_eq!(sql.values.len(), 5);
        let mut pg = Sql::new(DbBackend::Postgres);
        enrollments_from(&mut pg, false, Some(t), None);
        for part in [
            "AND m.since >= $1 UNION",
            "AND p.updated_at >= $2 UNION",
            "AND g.updated_at >= $3 UNION ALL",
        ] {
            assert!(pg.text.contains(part), "{part} in {}", pg.text);
        }
        let mut full = Sql::new(DbBackend::Postgres);
        enrollments_from(&mut full, false, None, None);
        assert!(full.values.is_empty() && !full.text.contains("change_entry"));
    }
}
