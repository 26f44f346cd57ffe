//! The endpoints: every OneRoster 1.2 rostering path, and `/rostersync/v1`. Collections of
//! users, classes and enrollments are paged in SQL; orgs, sessions and courses (a few per
//! school) are built whole and paged here.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use axum::Router;
use axum::extract::{Extension, Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::model::{self, Base, Resource};
use super::query::{self, Op, Query, QueryError};
use super::{Access, Api, BASE, Need, imsx, not_found};
use crate::store::oneroster::{
    self, ClassRow, Collection, Compare, Compared, EnrollmentRow, Listing, UserRow, Within,
};

type Pairs = UrlQuery<Vec<(String, String)>>;
type Shared = State<Arc<Api>>;

/// Everything a handler reads from a request.
struct Ask<'a> {
    api: &'a Api,
    access: &'a Access,
    base: Base,
    uri: &'a Uri,
    pairs: &'a [(String, String)],
}

pub fn routes() -> Router<Arc<Api>> {
    let b = |p: &str| format!("{BASE}{p}");
    Router::new()
        .route(&b("/orgs"), get(orgs))
        .route(&b("/orgs/{id}"), get(org))
        .route(&b("/schools"), get(orgs))
        .route(&b("/schools/{id}"), get(org))
        .route(&b("/academicSessions"), get(sessions))
        .route(&b("/academicSessions/{id}"), get(session))
        .route(&b("/terms"), get(sessions))
        .route(&b("/terms/{id}"), get(session))
        .route(&b("/gradingPeriods"), get(grading_periods))
        .route(&b("/gradingPeriods/{id}"), get(|| async { not_found() }))
        .route(&b("/terms/{id}/gradingPeriods"), get(term_grading_periods))
        .route(&b("/courses"), get(courses))
        .route(&b("/courses/{id}"), get(course))
        .route(&b("/classes"), get(classes))
        .route(&b("/classes/{id}"), get(class))
        .route(&b("/users"), get(users))
        .route(&b("/users/{id}"), get(user))
        .route(&b("/students"), get(students))
        .route(&b("/students/{id}"), get(student))
        .route(&b("/teachers"), get(teachers))
        .route(&b("/teachers/{id}"), get(teacher))
        .route(&b("/enrollments"), get(enrollments))
        .route(&b("/enrollments/{id}"), get(enrollment))
        .route(&b("/demographics"), get(demographics))
        .route(&b("/demographics/{id}"), get(demographic))
        .route(&b("/schools/{id}/classes"), get(school_classes))
        .route(&b("/schools/{id}/students"), get(school_students))
        .route(&b("/schools/{id}/teachers"), get(school_teachers))
        .route(&b("/schools/{id}/enrollments"), get(school_enrollments))
        .route(&b("/schools/{id}/courses"), get(school_courses))
        .route(&b("/schools/{id}/terms"), get(school_terms))
        .route(
            &b("/schools/{s}/classes/{c}/enrollments"),
            get(school_class_enrollments),
        )
        .route(
            &b("/schools/{s}/classes/{c}/students"),
            get(school_class_students),
        )
        .route(
            &b("/schools/{s}/classes/{c}/teachers"),
            get(school_class_teachers),
        )
        .route(&b("/classes/{id}/students"), get(class_students))
        .route(&b("/classes/{id}/teachers"), get(class_teachers))
        .route(&b("/courses/{id}/classes"), get(course_classes))
        .route(&b("/terms/{id}/classes"), get(term_classes))
        .route(&b("/users/{id}/classes"), get(user_classes))
        .route(&b("/students/{id}/classes"), get(user_classes))
        .route(&b("/teachers/{id}/classes"), get(user_classes))
        .route("/rostersync/v1/users/{id}/visibility", get(visibility))
        .route("/rostersync/v1/can", get(can))
}

macro_rules! ask {
    ($api:expr, $access:expr, $headers:expr, $uri:expr, $pairs:expr) => {
        Ask {
            api: &$api,
            access: &$access,
            base: $api.base(&$headers),
            uri: &$uri,
            pairs: &$pairs.0,
        }
    };
}

fn bad_query(e: QueryError) -> Response {
    imsx(StatusCode::BAD_REQUEST, e.code_minor(), e.description())
}

fn store_failure(api: &Api, e: sea_orm::DbErr) -> Response {
    tracing::warn!(error = %api.store.db_error(e), "The API could not read the store.");
    imsx(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_server_error",
        "the store could not be read; try again",
    )
}

/// A page of a collection: its records, how many there are in all, and where the next page
/// begins when it can be reached by a cursor (the sourcedId of this page's last record).
struct Page {
    items: Vec<Value>,
    total: u64,
    last: Option<String>,
}

/// A collection answer: `{name: [...]}` with `X-Total-Count` and the `Link`s to the pages.
fn collection(name: &str, page: Page, q: &Query, ask: &Ask) -> Response {
    let links = links(ask, q, &page);
    let mut r = Json(json!({ name: page.items })).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&page.total.to_string()) {
        h.insert("x-total-count", v);
    }
    if let Ok(v) = HeaderValue::from_str(&links) {
        h.insert(header::LINK, v);
    }
    r
}

/// `first`, `last`, and `prev`/`next` where they exist, keeping the request's other
/// parameters (the filter, the sort). In the default order `next` also carries a cursor: a
/// client that follows it gets each page for what it returns, and a record that changes
/// while it pages moves no other record across a page boundary.
fn links(ask: &Ask, q: &Query, page: &Page) -> String {
    let others: Vec<(String, String)> = ask
        .pairs
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset" && k != "cursor")
        .cloned()
        .collect();
    let at = |offset: u64, cursor: Option<String>| {
        let mut pairs = others.clone();
        pairs.push(("limit".into(), q.limit.to_string()));
        pairs.push(("offset".into(), offset.to_string()));
        pairs.extend(cursor.map(|c| ("cursor".to_owned(), c)));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        let root = ask.base.0.trim_end_matches(BASE);
        format!("<{root}{}?{query}>", ask.uri.path())
    };
    let total = page.total;
    let last = if total == 0 {
        0
    } else {
        (total - 1) / q.limit * q.limit
    };
    let mut out = vec![
        format!("{}; rel=\"first\"", at(0, None)),
        format!("{}; rel=\"last\"", at(last, None)),
    ];
    if q.offset + q.limit < total {
        let cursor = page.last.as_ref().map(|after| {
            query::Cursor {
                total,
                after: after.clone(),
            }
            .text()
        });
        out.push(format!("{}; rel=\"next\"", at(q.offset + q.limit, cursor)));
    }
    if q.offset > 0 {
        out.push(format!(
            "{}; rel=\"prev\"",
            at(q.offset.saturating_sub(q.limit), None)
        ));
    }
    out.join(", ")
}

fn single(name: &str, mut v: Value, q: &Query, r: &Resource) -> Response {
    model::select(&mut v, q.fields.as_deref(), r.required);
    Json(json!({ name: v })).into_response()
}

/// The store listing for a parsed query.
fn listing(ask: &Ask, q: &Query, within: Vec<Within>) -> Listing {
    let compare = q
        .filter
        .iter()
        .flat_map(|f| f.predicates.iter())
        .map(|p| Compare {
            field: p.field.clone(),
            op: p.op.sql(),
            value: if p.field == "dateLastModified" {
                Compared::Time(query::parse_time(&p.value).unwrap_or_default().into())
            } else {
                Compared::Text(p.value.clone())
            },
        })
        .collect();
    Listing {
        schools: ask.access.schools.list(),
        within,
        compare,
        any: q.filter.as_ref().is_some_and(|f| f.join == query::Join::Or),
        removed: q.filter.as_ref().is_some_and(query::Filter::is_delta),
        sort: q.sort.clone(),
        descending: q.descending,
        limit: q.limit,
        offset: q.offset,
        after: q.cursor.as_ref().map(|c| (c.after.clone(), c.total)),
        narrow: None,
    }
}

/// Users, classes or enrollments: a page from the store, mapped.
async fn sql_collection(ask: &Ask<'_>, c: Collection, within: Vec<Within>) -> Response {
    let r = match c {
        Collection::Users => &model::USERS,
        Collection::Classes => &model::CLASSES,
        Collection::Enrollments => &model::ENROLLMENTS,
    };
    let q = match query::parse(ask.pairs, r) {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let l = listing(ask, &q, within);
    let db = ask.api.store.db();
    let (total, rows) = match oneroster::page(db, c, &l).await {
        Ok(x) => x,
        Err(e) => return store_failure(ask.api, e),
    };
    let mut items = match map_rows(ask, c, &rows).await {
        Ok(items) => items,
        Err(e) => return store_failure(ask.api, e),
    };
    let last = items
        .last()
        .filter(|_| q.in_default_order())
        .and_then(|v| v["sourcedId"].as_str())
        .map(str::to_owned);
    for v in &mut items {
        model::select(v, q.fields.as_deref(), r.required);
    }
    let name = match c {
        Collection::Users => "users",
        Collection::Classes => "classes",
        Collection::Enrollments => "enrollments",
    };
    collection(name, Page { items, total, last }, &q, ask)
}

/// The page's rows as OneRoster objects (users need their school roles: one query for the
/// whole page; their keys come with their rows).
async fn map_rows(
    ask: &Ask<'_>,
    c: Collection,
    rows: &[sea_orm::QueryResult],
) -> Result<Vec<Value>, sea_orm::DbErr> {
    let live = ask.api.live_year();
    match c {
        Collection::Users => {
            let users: Vec<UserRow> = rows.iter().map(UserRow::from).collect::<Result<_, _>>()?;
            let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
            let db = ask.api.store.db();
            let roles = oneroster::school_grants(db, &ids).await?;
            Ok(users
                .iter()
                .map(|u| {
                    let r = roles.get(&u.id).map(Vec::as_slice).unwrap_or(&[]);
                    model::user(u, r, &ask.base)
                })
                .collect())
        }
        Collection::Classes => rows
            .iter()
            .map(|r| ClassRow::from(r).map(|c| model::class(&c, &ask.base, live)))
            .collect(),
        Collection::Enrollments => rows
            .iter()
            .map(|r| EnrollmentRow::from(r).map(|e| model::enrollment(&e, &ask.base)))
            .collect(),
    }
}

/// One user, class or enrollment by sourcedId, removed ones included (as `tobedeleted`).
async fn sql_single(ask: &Ask<'_>, c: Collection, sid: &str, within: Vec<Within>) -> Response {
    let (r, name) = match c {
        Collection::Users => (&model::USERS, "user"),
        Collection::Classes => (&model::CLASSES, "class"),
        Collection::Enrollments => (&model::ENROLLMENTS, "enrollment"),
    };
    let q = match query::parse(ask.pairs, r) {
        Ok(q) => Query {
            filter: None,
            limit: 1,
            offset: 0,
            sort: None,
            ..q
        },
        Err(e) => return bad_query(e),
    };
    let mut l = listing(ask, &q, within);
    l.removed = true;
    l.compare = vec![Compare {
        field: "sourcedId".into(),
        op: Op::Eq.sql(),
        value: Compared::Text(sid.to_owned()),
    }];
    let db = ask.api.store.db();
    let rows = match oneroster::page(db, c, &l).await {
        Ok((_, rows)) => rows,
        Err(e) => return store_failure(ask.api, e),
    };
    match map_rows(ask, c, &rows).await {
        Ok(mut items) if !items.is_empty() => single(name, items.remove(0), &q, r),
        Ok(_) => not_found(),
        Err(e) => store_failure(ask.api, e),
    }
}

macro_rules! endpoint {
    // Two path parameters are one extractor: axum refuses a route whose parameters are
    // taken apart by several.
    ($name:ident, $need:expr, |$ask:ident, $p1:ident, $p2:ident| $body:expr) => {
        async fn $name(
            State(api): Shared,
            Extension(access): Extension<Access>,
            headers: HeaderMap,
            uri: Uri,
            pairs: Pairs,
            Path(($p1, $p2)): Path<(String, String)>,
        ) -> Response {
            if let Err(r) = access.may($need) {
                return r.into_response();
            }
            let $ask = ask!(api, access, headers, uri, pairs);
            $body
        }
    };
    ($name:ident, $need:expr, |$ask:ident $(, $p:ident)*| $body:expr) => {
        async fn $name(
            State(api): Shared,
            Extension(access): Extension<Access>,
            headers: HeaderMap,
            uri: Uri,
            pairs: Pairs,
            $( Path($p): Path<String>, )*
        ) -> Response {
            if let Err(r) = access.may($need) {
                return r.into_response();
            }
            let $ask = ask!(api, access, headers, uri, pairs);
            $body
        }
    };
}

// Users, classes, enrollments.
endpoint!(users, Need::Core, |a| sql_collection(
    &a,
    Collection::Users,
    vec![]
)
.await);
endpoint!(students, Need::Core, |a| sql_collection(
    &a,
    Collection::Users,
    vec![Within::Kind("pupil")]
)
.await);
endpoint!(teachers, Need::Core, |a| sql_collection(
    &a,
    Collection::Users,
    vec![Within::Kind("staff")]
)
.await);
endpoint!(user, Need::Core, |a, id| sql_single(
    &a,
    Collection::Users,
    &id,
    vec![]
)
.await);
endpoint!(student, Need::Core, |a, id| sql_single(
    &a,
    Collection::Users,
    &id,
    vec![Within::Kind("pupil")]
)
.await);
endpoint!(teacher, Need::Core, |a, id| sql_single(
    &a,
    Collection::Users,
    &id,
    vec![Within::Kind("staff")]
)
.await);
endpoint!(classes, Need::Core, |a| sql_collection(
    &a,
    Collection::Classes,
    vec![]
)
.await);
endpoint!(class, Need::Core, |a, id| one_class(&a, &id).await);
endpoint!(enrollments, Need::Core, |a| sql_collection(
    &a,
    Collection::Enrollments,
    vec![]
)
.await);
endpoint!(enrollment, Need::Core, |a, id| sql_single(
    &a,
    Collection::Enrollments,
    &id,
    vec![]
)
.await);

// Nested under a school, a class, a course, a term or a user: the parent must be visible.
endpoint!(school_classes, Need::Roster, |a, s| under_school(
    &a,
    &s,
    Collection::Classes,
    vec![]
)
.await);
endpoint!(school_students, Need::Roster, |a, s| under_school(
    &a,
    &s,
    Collection::Users,
    vec![Within::Kind("pupil")]
)
.await);
endpoint!(school_teachers, Need::Roster, |a, s| under_school(
    &a,
    &s,
    Collection::Users,
    vec![Within::Kind("staff")]
)
.await);
endpoint!(school_enrollments, Need::Roster, |a, s| under_school(
    &a,
    &s,
    Collection::Enrollments,
    vec![]
)
.await);
endpoint!(school_class_enrollments, Need::Roster, |a, s, c| {
    under_class(
        &a,
        Some(&s),
        &c,
        Collection::Enrollments,
        Within::EnrollmentsOf(c.clone()),
    )
    .await
});
endpoint!(school_class_students, Need::Roster, |a, s, c| under_class(
    &a,
    Some(&s),
    &c,
    Collection::Users,
    Within::StudentsOf(c.clone())
)
.await);
endpoint!(school_class_teachers, Need::Roster, |a, s, c| under_class(
    &a,
    Some(&s),
    &c,
    Collection::Users,
    Within::TeachersOf(c.clone())
)
.await);
endpoint!(class_students, Need::Roster, |a, c| under_class(
    &a,
    None,
    &c,
    Collection::Users,
    Within::StudentsOf(c.clone())
)
.await);
endpoint!(class_teachers, Need::Roster, |a, c| under_class(
    &a,
    None,
    &c,
    Collection::Users,
    Within::TeachersOf(c.clone())
)
.await);
endpoint!(user_classes, Need::Roster, |a, u| under_user(&a, &u).await);
endpoint!(course_classes, Need::Roster, |a, c| under_course(&a, &c)
    .await);
endpoint!(term_classes, Need::Roster, |a, t| under_term(&a, &t).await);

// Orgs, sessions, courses: listed whole.
endpoint!(orgs, Need::Core, |a| memory(&a, Memory::Orgs, None).await);
endpoint!(org, Need::Core, |a, id| memory_one(&a, Memory::Orgs, &id)
    .await);
endpoint!(sessions, Need::Core, |a| memory(&a, Memory::Sessions, None)
    .await);
endpoint!(session, Need::Core, |a, id| memory_one(
    &a,
    Memory::Sessions,
    &id
)
.await);
endpoint!(courses, Need::Core, |a| memory(&a, Memory::Courses, None)
    .await);
endpoint!(course, Need::Core, |a, id| memory_one(
    &a,
    Memory::Courses,
    &id
)
.await);
endpoint!(school_courses, Need::Roster, |a, s| school_memory(
    &a,
    &s,
    Memory::Courses
)
.await);
endpoint!(school_terms, Need::Roster, |a, s| school_memory(
    &a,
    &s,
    Memory::Sessions
)
.await);
endpoint!(grading_periods, Need::Core, |a| empty(
    &a,
    "academicSessions",
    &model::SESSIONS
));
endpoint!(
    term_grading_periods,
    Need::Roster,
    |a, t| match visible_term(&a, &t).await {
        Ok(true) => empty(&a, "academicSessions", &model::SESSIONS),
        Ok(false) => not_found(),
        Err(r) => r,
    }
);
// rostersync stores no demographics (a publisher may not hold them).
endpoint!(demographics, Need::Demographics, |a| empty(
    &a,
    "demographics",
    &model::DEMOGRAPHICS
));
endpoint!(demographic, Need::Demographics, |_a, _id| not_found());

fn empty(ask: &Ask, name: &str, r: &Resource) -> Response {
    match query::parse(ask.pairs, r) {
        Ok(q) => collection(
            name,
            Page {
                items: Vec::new(),
                total: 0,
                last: None,
            },
            &q,
            ask,
        ),
        Err(e) => bad_query(e),
    }
}

/// The school named by a sourcedId, if the client may see it.
async fn visible_school(
    ask: &Ask<'_>,
    sid: &str,
) -> Result<Option<crate::store::entities::school::Model>, Response> {
    let all = oneroster::schools(ask.api.store.db(), ask.access.schools.list().as_deref())
        .await
        .map_err(|e| store_failure(ask.api, e))?;
    Ok(all
        .into_iter()
        .find(|s| s.sourced_id.as_deref() == Some(sid)))
}

async fn under_school(
    ask: &Ask<'_>,
    sid: &str,
    c: Collection,
    mut within: Vec<Within>,
) -> Response {
    match visible_school(ask, sid).await {
        Ok(Some(_)) => {
            within.push(Within::School(sid.to_owned()));
            sql_collection(ask, c, within).await
        }
        Ok(None) => not_found(),
        Err(r) => r,
    }
}

async fn under_class(
    ask: &Ask<'_>,
    school: Option<&str>,
    class_sid: &str,
    c: Collection,
    within: Within,
) -> Response {
    let group = match oneroster::group_by_sid(ask.api.store.db(), class_sid).await {
        Ok(g) => g,
        Err(e) => return store_failure(ask.api, e),
    };
    let Some(group) = group.filter(|g| ask.access.schools.allows(&g.school_id)) else {
        return not_found();
    };
    if let Some(s) = school {
        match visible_school(ask, s).await {
            Ok(Some(found)) if found.id == group.school_id => {}
            Ok(_) => return not_found(),
            Err(r) => return r,
        }
    }
    sql_collection(ask, c, vec![within]).await
}

async fn under_user(ask: &Ask<'_>, user_sid: &str) -> Response {
    match oneroster::person_by_sid(ask.api.store.db(), user_sid).await {
        Ok(Some(p)) if ask.access.schools.allows(&p.school_id) => {
            sql_collection(
                ask,
                Collection::Classes,
                vec![Within::ClassesOf(user_sid.to_owned())],
            )
            .await
        }
        Ok(_) => not_found(),
        Err(e) => store_failure(ask.api, e),
    }
}

async fn under_course(ask: &Ask<'_>, course_sid: &str) -> Response {
    let Some((school, year)) = model::parse_course_sid(course_sid) else {
        return not_found();
    };
    match visible_school(ask, &school).await {
        Ok(Some(_)) => {
            sql_collection(
                ask,
                Collection::Classes,
                vec![Within::Course { school, year }],
            )
            .await
        }
        Ok(None) => not_found(),
        Err(r) => r,
    }
}

async fn visible_term(ask: &Ask<'_>, term_sid: &str) -> Result<bool, Response> {
    let years = school_years(ask, None)
        .await
        .map_err(|e| store_failure(ask.api, e))?;
    Ok(years.keys().any(|y| model::session_sid(y) == term_sid))
}

/// The school years of the schools the client sees (of one school, by sourcedId, when `only`
/// is given): each one's live year and the next when it has that prepared, with the
/// earliest moment a school of it was linked or prepared.
async fn school_years(
    ask: &Ask<'_>,
    only: Option<&str>,
) -> Result<BTreeMap<String, DateTime<Utc>>, sea_orm::DbErr> {
    let db = ask.api.store.db();
    let live = ask.api.live_year();
    let mut schools = oneroster::schools(db, ask.access.schools.list().as_deref()).await?;
    if let Some(sid) = only {
        schools.retain(|s| s.sourced_id.as_deref() == Some(sid));
    }
    let ids: Vec<String> = schools.iter().map(|s| s.id.clone()).collect();
    let prepared = oneroster::prepared_years(db, Some(&ids)).await?;
    let mut years: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut seen = |year: String, at: DateTime<Utc>| {
        let e = years.entry(year).or_insert(at);
        *e = (*e).min(at);
    };
    for s in &schools {
        seen(model::school_year_of(s, live), s.created_at);
    }
    for (_, year, since) in prepared {
        seen(year, since);
    }
    Ok(years)
}

/// One class: the live one, else a class new next year (listed in next year's session
/// before the switch makes it live, with the sourcedId it will have).
async fn one_class(ask: &Ask<'_>, sid: &str) -> Response {
    let live = sql_single(ask, Collection::Classes, sid, vec![]).await;
    if live.status() != StatusCode::NOT_FOUND {
        return live;
    }
    sql_single(ask, Collection::Classes, sid, vec![Within::AnyYear]).await
}

async fn under_term(ask: &Ask<'_>, term_sid: &str) -> Response {
    match visible_term(ask, term_sid).await {
        Ok(true) => {
            let year = term_sid.trim_start_matches("schoolyear-").to_owned();
            sql_collection(ask, Collection::Classes, vec![Within::Term(year)]).await
        }
        Ok(false) => not_found(),
        Err(r) => r,
    }
}

/// The collections built whole: a few records per school.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    Orgs,
    Sessions,
    Courses,
}

impl Memory {
    fn resource(self) -> (&'static str, &'static str, &'static Resource) {
        match self {
            Memory::Orgs => ("orgs", "org", &model::ORGS),
            Memory::Sessions => ("academicSessions", "academicSession", &model::SESSIONS),
            Memory::Courses => ("courses", "course", &model::COURSES),
        }
    }
}

/// Every record of `m` the client may see (of one school when `only` is given).
async fn build(ask: &Ask<'_>, m: Memory, only: Option<&str>) -> Result<Vec<Value>, Response> {
    let db = ask.api.store.db();
    let live = ask.api.live_year();
    let mut schools = oneroster::schools(db, ask.access.schools.list().as_deref())
        .await
        .map_err(|e| store_failure(ask.api, e))?;
    if let Some(sid) = only {
        schools.retain(|s| s.sourced_id.as_deref() == Some(sid));
    }
    Ok(match m {
        Memory::Orgs => schools.iter().map(model::org).collect(),
        Memory::Sessions => school_years(ask, only)
            .await
            .map_err(|e| store_failure(ask.api, e))?
            .iter()
            .map(|(y, t)| model::session(y, *t, &ask.api.calendar))
            .collect(),
        Memory::Courses => {
            let ids: Vec<String> = schools.iter().map(|s| s.id.clone()).collect();
            let years = oneroster::year_groups(db, Some(&ids))
                .await
                .map_err(|e| store_failure(ask.api, e))?;
            years
                .iter()
                .filter_map(|(school, year)| {
                    let s = schools.iter().find(|s| &s.id == school)?;
                    Some(model::course(s, year.as_deref(), &ask.base, live))
                })
                .collect()
        }
    })
}

async fn memory(ask: &Ask<'_>, m: Memory, only: Option<&str>) -> Response {
    let (name, _, r) = m.resource();
    let q = match query::parse(ask.pairs, r) {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let mut items = match build(ask, m, only).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    if let Some(f) = &q.filter {
        items.retain(|v| model::matches(v, f));
    }
    let key = q.sort.clone().unwrap_or_else(|| "sourcedId".into());
    let text = |v: &Value| v[key.as_str()].as_str().unwrap_or_default().to_owned();
    items.sort_by(|a, b| {
        let o = text(a).cmp(&text(b)).then_with(|| {
            a["sourcedId"]
                .as_str()
                .unwrap_or_default()
                .cmp(b["sourcedId"].as_str().unwrap_or_default())
        });
        if q.descending { o.reverse() } else { o }
    });
    let total = items.len() as u64;
    let mut page: Vec<Value> = items
        .into_iter()
        .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(q.limit).unwrap_or(usize::MAX))
        .collect();
    for v in &mut page {
        model::select(v, q.fields.as_deref(), r.required);
    }
    // Small lists kept in memory page by offset only: no cursor.
    let page = Page {
        items: page,
        total,
        last: None,
    };
    collection(name, page, &q, ask)
}

async fn memory_one(ask: &Ask<'_>, m: Memory, sid: &str) -> Response {
    let (_, name, r) = m.resource();
    let q = match query::parse(ask.pairs, r) {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    match build(ask, m, None).await {
        Ok(items) => match items.into_iter().find(|v| v["sourcedId"] == sid) {
            Some(v) => single(name, v, &q, r),
            None => not_found(),
        },
        Err(r) => r,
    }
}

async fn school_memory(ask: &Ask<'_>, sid: &str, m: Memory) -> Response {
    match visible_school(ask, sid).await {
        Ok(Some(_)) => memory(ask, m, Some(sid)).await,
        Ok(None) => not_found(),
        Err(r) => r,
    }
}

/// `GET /rostersync/v1/users/{id}/visibility`: each class the person can see, at which
/// level, and why (rule, source fact, since when, pending until).
async fn visibility(
    State(api): Shared,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = access.may(Need::Core) {
        return r.into_response();
    }
    let db = api.store.db();
    let person = match oneroster::person_by_sid(db, &id).await {
        Ok(Some(p)) if access.schools.allows(&p.school_id) => p,
        Ok(_) => return not_found(),
        Err(e) => return store_failure(&api, e),
    };
    let seen = match crate::sync::explain::visibility(db, &person).await {
        Ok(v) => v,
        Err(e) => return store_failure(&api, e),
    };
    let base = api.base(&headers);
    let sids = match class_sids(&api, seen.groups.iter().map(|g| g.group_id)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let classes: Vec<Value> = seen
        .groups
        .iter()
        .map(|g| {
            let sid = sids.get(&g.group_id).cloned().unwrap_or_default();
            json!({
                "class": { "href": format!("{}/classes/{sid}", base.0), "sourcedId": sid, "type": "class" },
                "classCode": g.group,
                "level": g.level,
                "reasons": g.reasons.iter().map(reason_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "user": id,
        "level": seen.level,
        "classes": classes,
        "other": seen.other.iter().map(reason_json).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn reason_json(r: &crate::sync::explain::Reason) -> Value {
    json!({
        "rule": r.rule,
        "source": r.source,
        "fact": r.fact,
        "state": r.state,
        "since": r.since,
        "pendingUntil": r.revoke_after,
        "said": r.said(),
    })
}

/// The sourcedIds of groups, by their ids.
async fn class_sids(
    api: &Api,
    ids: impl Iterator<Item = i64>,
) -> Result<std::collections::HashMap<i64, String>, Response> {
    use crate::store::entities::roster_group;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let ids: Vec<i64> = ids.collect();
    let rows = roster_group::Entity::find()
        .filter(roster_group::Column::Id.is_in(ids))
        .all(api.store.db())
        .await
        .map_err(|e| store_failure(api, e))?;
    Ok(rows
        .into_iter()
        .map(|g| (g.id, g.sourced_id.unwrap_or_default()))
        .collect())
}

/// `GET /rostersync/v1/can?user=…&student=…`: the `can` command's answer.
async fn can(State(api): Shared, Extension(access): Extension<Access>, pairs: Pairs) -> Response {
    if let Err(r) = access.may(Need::Core) {
        return r.into_response();
    }
    let get = |k: &str| pairs.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(user), Some(student)) = (get("user"), get("student")) else {
        return imsx(
            StatusCode::BAD_REQUEST,
            "invaliddata",
            "give user and student, both by sourcedId",
        );
    };
    let db = api.store.db();
    let find = |sid: String| async move { oneroster::person_by_sid(db, &sid).await };
    let (staff, pupil) = match (find(user.clone()).await, find(student.clone()).await) {
        (Ok(Some(s)), Ok(Some(p)))
            if access.schools.allows(&s.school_id) && access.schools.allows(&p.school_id) =>
        {
            (s, p)
        }
        (Err(e), _) | (_, Err(e)) => return store_failure(&api, e),
        _ => return not_found(),
    };
    if pupil.kind != "pupil" {
        return imsx(
            StatusCode::BAD_REQUEST,
            "invaliddata",
            "student must be a pupil's sourcedId",
        );
    }
    match crate::sync::explain::can(db, &staff, &pupil).await {
        Ok(a) => Json(json!({
            "user": user,
            "student": student,
            "can": a.yes,
            "answer": a.sentence,
            "classCode": a.group,
            "reasons": a.reasons.iter().map(reason_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_failure(&api, e),
    }
}
