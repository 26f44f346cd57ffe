//! The roster in the store: loading a school's groups and persons for the diff, and applying
//! a Plan to them. Runs on the caller's connection or transaction, so a sync applies one
//! school in one transaction and nothing is ever half-applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use connector_api::{GroupKind, PersonKeys};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Statement,
};
use serde::Serialize;

use super::Stamp;
use super::entities::{change_entry, membership, person, person_role, roster_group};
use super::owners::Owners;
use super::sql::Sql;
use crate::model::journal;
use crate::model::plan::{Plan, StoredGroup, StoredPerson};
use crate::model::{Field, GroupState, Link, Owned, Owner, PersonKind, PersonState, Role};

/// Rows per multi-row insert: far below SQLite's and PostgreSQL's bind-parameter limits.
pub(super) const CHUNK: usize = 500;

/// What an apply wrote, per kind and operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub groups_created: usize,
    pub groups_updated: usize,
    pub groups_removed: usize,
    pub persons_created: usize,
    pub persons_updated: usize,
    pub persons_removed: usize,
}

fn person_kind(s: &str) -> PersonKind {
    if s == "staff" {
        PersonKind::Staff
    } else {
        PersonKind::Pupil
    }
}

/// Who owns what on a person row, compactly (see `owners`).
fn owners_text(p: &PersonState) -> String {
    let fields = p.fields.iter().map(|(f, o)| (f.as_str(), o.owner));
    Owners::of(fields.chain([("links", p.links_owner)])).to_text()
}

fn field_value(p: &PersonState, f: Field) -> Option<String> {
    p.fields.get(&f).map(|o| o.value.clone())
}

/// The school's groups that are not tombstoned.
pub async fn live_groups<C: ConnectionTrait>(
    db: &C,
    school: &str,
) -> Result<Vec<roster_group::Model>, DbErr> {
    roster_group::Entity::find()
        .filter(roster_group::Column::SchoolId.eq(school))
        .filter(roster_group::Column::RemovedAt.is_null())
        .all(db)
        .await
}

/// Everything stored for `school`, tombstones included (a returning person is restored).
pub async fn load<C: ConnectionTrait>(
    db: &C,
    school: &str,
) -> Result<(Vec<StoredGroup>, Vec<StoredPerson>), DbErr> {
    let group_rows = roster_group::Entity::find()
        .filter(roster_group::Column::SchoolId.eq(school))
        .all(db)
        .await?;
    let key_of_group: HashMap<i64, String> =
        group_rows.iter().map(|g| (g.id, g.key.clone())).collect();
    let groups = group_rows.into_iter().map(stored_group).collect();
    let persons = load_persons(db, school, &key_of_group).await?;
    Ok((groups, persons))
}

/// The sourcedId of each of `school`'s groups by key, tombstones included.
pub async fn group_sids<C: ConnectionTrait>(
    db: &C,
    school: &str,
) -> Result<HashMap<String, String>, DbErr> {
    Ok(roster_group::Entity::find()
        .filter(roster_group::Column::SchoolId.eq(school))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|g| Some((g.key, g.sourced_id?)))
        .collect())
}

fn stored_group(g: roster_group::Model) -> StoredGroup {
    let owner = Owners::parse(&g.owners).get("group");
    StoredGroup {
        id: g.id,
        removed: g.removed_at.is_some(),
        state: GroupState {
            key: g.key,
            name: g.name,
            kind: GroupKind::from_name(&g.kind),
            year_group: g.year_group,
            department: g.department,
            owner,
        },
    }
}

/// The school's persons with their keys, links (by group key) and roles.
async fn load_persons<C: ConnectionTrait>(
    db: &C,
    school: &str,
    key_of_group: &HashMap<i64, String>,
) -> Result<Vec<StoredPerson>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            persons_sql(backend),
            [school.into()],
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut p = stored_person(r)?;
        let json = |column: usize| -> Result<String, DbErr> { r.try_get_by_index(column) };
        for (group, role) in parse_list::<(i64, String)>(&json(LINKS_JSON)?)? {
            if let Some(group) = key_of_group.get(&group) {
                p.state.links.insert(Link {
                    group: group.clone(),
                    role,
                });
            }
        }
        for (name, scope, source) in parse_list::<(String, String, String)>(&json(LINKS_JSON + 1)?)?
        {
            p.state.roles.insert(Role {
                name,
                scope,
                owner: Owner::parse(&source).unwrap_or(Owner::Las),
            });
        }
        out.push(p);
    }
    Ok(out)
}

/// A school's persons, each with its links and roles aggregated as JSON arrays: one row per
/// person instead of one per link and role (the rows, not the SQL, were the
/// cost: 6.8 ms of a run's 8 ms load for 320 persons on SQLite).
fn persons_sql(backend: sea_orm::DbBackend) -> String {
    let (agg, array, param) = match backend {
        sea_orm::DbBackend::Postgres => ("json_agg", "json_build_array", "$1"),
        _ => ("json_group_array", "json_array", "?"),
    };
    // json_agg of no rows is NULL on PostgreSQL; json_group_array's is `[]`.
    let list = |columns: &str, table: &str| {
        format!(
            "(SELECT COALESCE(CAST({agg}({array}({columns})) AS TEXT), '[]') FROM {table} \
             WHERE x.person_id = p.id)"
        )
    };
    format!(
        "SELECT {PERSON_COLUMNS}, {} AS links_json, {} AS roles_json \
         FROM person p WHERE p.school_id = {param} ORDER BY p.id",
        list("x.group_id, x.role", "membership x"),
        list("x.role, x.scope, x.source", "person_role x"),
    )
}

fn parse_list<T: serde::de::DeserializeOwned>(json: &str) -> Result<Vec<T>, DbErr> {
    serde_json::from_str(json)
        .map_err(|e| DbErr::Custom(format!("a person's aggregated rows: {e}")))
}

/// What the engine compares a stored person by, read by position: the whole row (its
/// moments, its sourcedId) cost a lookup by name per column and three timestamps parsed per
/// person, on every run of every school, with the write lock held.
const PERSON_COLUMNS: &str = "p.id, p.kind, p.owners, p.origin, p.removed_at IS NOT NULL, \
     p.family_name, p.prefix, p.given_name, p.email, p.year_group, p.end_date, \
     p.eckid, p.las_key, p.broker_id, p.portal_code";

/// Where the aggregated links (then roles) follow `PERSON_COLUMNS`.
const LINKS_JSON: usize = 15;

/// A person row (`PERSON_COLUMNS`) with its keys, its fields and who owns each; links and
/// roles come separately.
fn stored_person(r: &sea_orm::QueryResult) -> Result<StoredPerson, DbErr> {
    let text = |i: usize| -> Result<Option<String>, DbErr> { r.try_get_by_index(i) };
    let owners: String = r.try_get_by_index(2)?;
    let owners = Owners::parse(&owners);
    let owner_of = |f: Field| owners.get(f.as_str());
    let end_date: Option<chrono::NaiveDate> = r.try_get_by_index(10)?;
    let mut fields = BTreeMap::new();
    for (f, v) in [
        (Field::FamilyName, text(5)?),
        (Field::Prefix, text(6)?),
        (Field::GivenName, text(7)?),
        (Field::Email, text(8)?),
        (Field::YearGroup, text(9)?),
        (Field::EndDate, end_date.map(|d| d.to_string())),
    ] {
        if let Some(value) = v {
            fields.insert(
                f,
                Owned {
                    value,
                    owner: owner_of(f),
                },
            );
        }
    }
    let kind: String = r.try_get_by_index(1)?;
    let origin: String = r.try_get_by_index(3)?;
    Ok(StoredPerson {
        id: r.try_get_by_index(0)?,
        removed: r.try_get_by_index(4)?,
        local: origin == "local",
        state: PersonState {
            kind: person_kind(&kind),
            keys: PersonKeys {
                eckid: super::keys::read_eckid(text(11)?),
                las_key: text(12)?,
                broker_id: text(13)?,
                portal_code: text(14)?,
            },
            fields,
            links: BTreeSet::new(),
            links_owner: owners.get("links"),
            roles: BTreeSet::new(),
        },
    })
}

/// Where and when an apply happens.
pub struct ApplyContext<'a> {
    pub school: &'a str,
    pub now: Stamp,
    /// How long a removed person or group keeps its tombstone before it is purged.
    pub retention: chrono::Duration,
    /// The run the journal rows belong to.
    pub run: Option<i64>,
    /// The school year this run switches the school to: a group it creates gets the
    /// sourcedId next year's classes were shown with (`rollover::class_sid`).
    pub new_year: Option<connector_api::SchoolYear>,
}

impl<'a> ApplyContext<'a> {
    /// A change made by hand: in `school`, now, outside any run.
    pub fn by_hand(school: &'a str) -> Self {
        ApplyContext {
            school,
            now: Stamp::now(),
            retention: chrono::Duration::zero(),
            run: None,
            new_year: None,
        }
    }
}

/// The journal of one apply (or one edit by hand): a row per change, what it was, and the
/// rule that decided it. Values stay in the store (the journal is what `changes` shows); they
/// never reach a log.
pub(super) struct Journal<'a> {
    ctx: &'a ApplyContext<'a>,
    rows: Vec<change_entry::ActiveModel>,
}

/// One journal row's content.
pub(super) struct Entry<'a> {
    pub entity: &'a str,
    pub entity_id: Option<i64>,
    pub person_id: Option<i64>,
    pub operation: &'a str,
    pub field: Option<&'a str>,
    pub old: Option<String>,
    pub new: Option<String>,
    pub source: Owner,
    pub rule: String,
}

impl<'a> Entry<'a> {
    /// A change to one person, by the person's id.
    pub fn person(
        kind: PersonKind,
        id: i64,
        operation: &'a str,
        source: Owner,
        rule: String,
    ) -> Self {
        Entry {
            entity: kind.as_str(),
            entity_id: Some(id),
            person_id: Some(id),
            operation,
            field: None,
            old: None,
            new: None,
            source,
            rule,
        }
    }

    pub fn about(
        mut self,
        field: Option<&'a str>,
        old: Option<String>,
        new: Option<String>,
    ) -> Self {
        self.field = field;
        self.old = old;
        self.new = new;
        self
    }
}

impl<'a> Journal<'a> {
    pub fn new(ctx: &'a ApplyContext<'a>) -> Self {
        Journal {
            ctx,
            rows: Vec::new(),
        }
    }

    /// Write the rows, in chunks.
    pub async fn write<C: ConnectionTrait>(self, db: &C) -> Result<(), DbErr> {
        insert_chunked(db, self.rows).await
    }

    pub fn add(&mut self, e: Entry) {
        if journal::kept_in_person(e.entity, e.operation, self.ctx.run) {
            // The person's row holds it: `write_creates` set `created_run`.
            debug_assert_eq!(
                Some(e.rule.as_str()),
                journal::standard_rule(e.entity, "create")
            );
            return;
        }
        self.rows.push(change_entry::ActiveModel {
            run_id: Set(self.ctx.run),
            school_id: Set(self.ctx.school.to_owned()),
            entity: Set(e.entity.to_owned()),
            entity_id: Set(e.entity_id),
            person_id: Set(e.person_id),
            operation: Set(e.operation.to_owned()),
            field: Set(e.field.map(str::to_owned)),
            old_value: Set(e.old),
            new_value: Set(e.new),
            source: Set(e.source.as_str().to_owned()),
            rule: Set(journal::stored_rule(e.entity, e.operation, e.rule)),
            at: Set(self.ctx.now),
            ..Default::default()
        });
    }
}

pub(super) fn person_row(ctx: &ApplyContext, p: &PersonState) -> person::ActiveModel {
    let mut row = person::ActiveModel {
        id: NotSet,
        school_id: Set(ctx.school.to_owned()),
        kind: Set(p.kind.as_str().to_owned()),
        family_name: Set(field_value(p, Field::FamilyName)),
        prefix: Set(field_value(p, Field::Prefix)),
        given_name: Set(field_value(p, Field::GivenName)),
        email: Set(field_value(p, Field::Email)),
        year_group: Set(field_value(p, Field::YearGroup)),
        end_date: Set(field_value(p, Field::EndDate)
            .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())),
        owners: Set(owners_text(p)),
        content_hash: Set(None),
        origin: Set("source".into()),
        created_at: Set(ctx.now),
        updated_at: Set(ctx.now),
        removed_at: Set(None),
        purge_after: Set(None),
        // Given where the row is inserted: an update keeps the id apps know it by.
        sourced_id: NotSet,
        // Likewise: only a run's insert sets them, and an update never changes them.
        created_run: NotSet,
        created_source: NotSet,
        ..Default::default()
    };
    super::keys::set(&mut row, &p.keys);
    row
}

pub(super) fn group_row(ctx: &ApplyContext, g: &GroupState) -> roster_group::ActiveModel {
    roster_group::ActiveModel {
        id: NotSet,
        school_id: Set(ctx.school.to_owned()),
        key: Set(g.key.clone()),
        name: Set(g.name.clone()),
        kind: Set(g.kind.as_str().to_owned()),
        year_group: Set(g.year_group.clone()),
        department: Set(g.department.clone()),
        owners: Set(format!(r#"{{"group":"{}"}}"#, g.owner.as_str())),
        content_hash: Set(None),
        origin: Set("source".into()),
        created_at: Set(ctx.now),
        updated_at: Set(ctx.now),
        removed_at: Set(None),
        purge_after: Set(None),
        sourced_id: Set(Some(match ctx.new_year {
            Some(year) => crate::model::rollover::class_sid(ctx.school, year, &g.key),
            None => super::new_sourced_id(),
        })),
    }
}

async fn insert_chunked<C, A>(db: &C, rows: Vec<A>) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    A: sea_orm::ActiveModelTrait + Send,
{
    for chunk in in_chunks(rows) {
        super::bulk::insert_all(db, chunk).await?;
    }
    Ok(())
}

/// `rows` taken `CHUNK` at a time, owned (for the multi-row inserts).
fn in_chunks<T>(rows: Vec<T>) -> impl Iterator<Item = Vec<T>> {
    let mut rows = rows.into_iter();
    std::iter::from_fn(move || {
        let chunk: Vec<T> = rows.by_ref().take(CHUNK).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// The rows that describe one person besides the person row (which holds its keys): links
/// and roles.
pub(super) struct Facets {
    links: Vec<membership::ActiveModel>,
    roles: Vec<person_role::ActiveModel>,
}

impl Facets {
    pub fn new() -> Facets {
        Facets {
            links: Vec::new(),
            roles: Vec::new(),
        }
    }

    pub fn link(&mut self, ctx: &ApplyContext, id: i64, group: i64, role: &str, owner: Owner) {
        self.links.push(membership::ActiveModel {
            person_id: Set(id),
            group_id: Set(group),
            role: Set(role.to_owned()),
            source: Set(owner.as_str().to_owned()),
            since: Set(ctx.now),
        });
    }

    fn role(&mut self, ctx: &ApplyContext, id: i64, r: &Role) {
        self.roles.push(person_role::ActiveModel {
            person_id: Set(id),
            role: Set(r.name.clone()),
            source: Set(r.owner.as_str().to_owned()),
            scope: Set(r.scope.clone()),
            since: Set(ctx.now),
        });
    }

    pub async fn write<C: ConnectionTrait>(self, db: &C) -> Result<(), DbErr> {
        insert_chunked(db, self.links).await?;
        insert_chunked(db, self.roles).await
    }
}

/// The journal's field name of a changed-ECK-iD conflict.
pub use crate::model::journal::ECKID_CONFLICT;

/// What the diff compared against: the school's stored persons and groups, tombstones
/// included (as [`load`] reads them).
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub persons: &'a [StoredPerson],
    pub groups: &'a [StoredGroup],
}

/// Write `plan` for `ctx.school`, with its journal `entries` (the engine words them:
/// `sync::journal::entries`).
pub async fn apply<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    plan: &Plan,
    stored: Stored<'_>,
    entries: &[journal::Entry],
) -> Result<Applied, DbErr> {
    let group_id = write_groups(db, ctx, plan, stored.groups).await?;
    let mut facets = Facets::new();
    let created = write_creates(db, ctx, plan, &group_id, &mut facets).await?;
    write_updates(db, ctx, plan, stored.persons, &group_id, &mut facets).await?;
    facets.write(db).await?;
    write_removals(db, ctx, plan).await?;
    let mut journal = Journal::new(ctx);
    for e in entries {
        journal.add(resolved(e, &group_id, &created));
    }
    journal.write(db).await?;
    Ok(Applied {
        groups_created: plan.group_creates.len(),
        groups_updated: plan.group_updates.len(),
        groups_removed: plan.group_removals.len(),
        persons_created: plan.person_creates.len(),
        persons_updated: plan.person_updates.len(),
        persons_removed: plan.person_removals.len(),
    })
}

/// A journal entry as a row: new groups and persons get the ids they were given.
fn resolved<'a>(
    e: &'a journal::Entry,
    group_id: &HashMap<String, i64>,
    created: &[i64],
) -> Entry<'a> {
    let (entity_id, person_id) = match &e.subject {
        journal::Subject::Group(id) => (Some(*id), None),
        journal::Subject::NewGroup(key) => (group_id.get(key).copied(), None),
        journal::Subject::Person { id, .. } => (Some(*id), Some(*id)),
        journal::Subject::NewPerson { index, .. } => {
            let id = created.get(*index).copied();
            (id, id)
        }
        journal::Subject::Conflict(person) => (*person, *person),
    };
    Entry {
        entity: e.subject.entity(),
        entity_id,
        person_id,
        operation: e.operation,
        field: e.field.as_deref(),
        old: e.old.clone(),
        new: e.new.clone(),
        source: e.source,
        rule: e.rule.clone(),
    }
}

/// Groups: new ones in batches, changed ones row by row, removed ones tombstoned in batches.
/// Returns every group's id by key, new ones included, for the links.
async fn write_groups<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    plan: &Plan,
    stored: &[StoredGroup],
) -> Result<HashMap<String, i64>, DbErr> {
    let rows = plan
        .group_creates
        .iter()
        .map(|g| group_row(ctx, g))
        .collect();
    insert_chunked(db, rows).await?;
    for u in &plan.group_updates {
        // A group added by hand that a source now supplies becomes the source's.
        let mut row = group_row(ctx, &u.state);
        row.id = Set(u.id);
        row.created_at = NotSet;
        row.sourced_id = NotSet;
        roster_group::Entity::update(row).exec(db).await?;
    }
    let purge_after = ctx.now + ctx.retention;
    for chunk in plan.group_removals.chunks(CHUNK) {
        roster_group::Entity::update_many()
            .col_expr(roster_group::Column::RemovedAt, Expr::value(ctx.now))
            .col_expr(roster_group::Column::PurgeAfter, Expr::value(purge_after))
            .filter(roster_group::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    if plan.group_creates.is_empty() {
        // No new group: the ids are the stored ones (a key never changes).
        return Ok(stored.iter().map(|g| (g.state.key.clone(), g.id)).collect());
    }
    let ids: Vec<(String, i64)> = roster_group::Entity::find()
        .select_only()
        .columns([roster_group::Column::Key, roster_group::Column::Id])
        .filter(roster_group::Column::SchoolId.eq(ctx.school))
        .into_tuple()
        .all(db)
        .await?;
    Ok(ids.into_iter().collect())
}

/// New persons in batches. Each one's id, which its keys, links and roles need, comes back
/// by the sourcedId it was given: one insert per person cost a round trip to the database's
/// thread each, a third of an initial load's writing. Returns the new ids in the plan's order.
async fn write_creates<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    plan: &Plan,
    group_id: &HashMap<String, i64>,
    facets: &mut Facets,
) -> Result<Vec<i64>, DbErr> {
    let sids: Vec<String> = plan
        .person_creates
        .iter()
        .map(|_| super::new_sourced_id())
        .collect();
    let rows = plan
        .person_creates
        .iter()
        .zip(&sids)
        .map(|(p, sid)| person::ActiveModel {
            sourced_id: Set(Some(sid.clone())),
            created_run: Set(ctx.run),
            created_source: Set(ctx.run.map(|_| p.links_owner.as_str().to_owned())),
            ..person_row(ctx, p)
        })
        .collect();
    let id_of = insert_persons(db, rows).await?;
    let mut ids = Vec::with_capacity(plan.person_creates.len());
    for (p, sid) in plan.person_creates.iter().zip(&sids) {
        let id = *id_of
            .get(sid.as_str())
            .ok_or_else(|| DbErr::RecordNotFound(format!("the person just inserted as {sid}")))?;
        for l in &p.links {
            if let Some(g) = group_id.get(&l.group) {
                facets.link(ctx, id, *g, &l.role, p.links_owner);
            }
        }
        for r in &p.roles {
            facets.role(ctx, id, r);
        }
        ids.push(id);
    }
    Ok(ids)
}

/// New persons' rows; each one's id comes back by the sourcedId it was given, in the same
/// statement (`RETURNING`; a second statement to read them was a round trip with the write
/// lock held).
async fn insert_persons<C: ConnectionTrait>(
    db: &C,
    rows: Vec<person::ActiveModel>,
) -> Result<HashMap<String, i64>, DbErr> {
    use sea_orm::QueryTrait;
    use sea_orm::sea_query::Query;
    let backend = db.get_database_backend();
    let mut found = HashMap::with_capacity(rows.len());
    for chunk in in_chunks(rows) {
        let statement = if backend == sea_orm::DbBackend::Postgres {
            super::bulk::insert(&chunk, " RETURNING id, sourced_id")?
        } else {
            let mut insert = person::Entity::insert_many(chunk).into_query();
            insert.returning(
                Query::returning().columns([person::Column::Id, person::Column::SourcedId]),
            );
            backend.build(&insert)
        };
        for r in db.query_all_raw(statement).await? {
            let id: i64 = r.try_get_by_index(0)?;
            let sid: Option<String> = r.try_get_by_index(1)?;
            found.extend(sid.map(|sid| (sid, id)));
        }
    }
    Ok(found)
}

/// Changed persons: each row as the update leaves it, new keys, links and roles in batches
/// with `facets`; links left and links whose owner changed in one statement per group and
/// role, and per owner.
async fn write_updates<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    plan: &Plan,
    stored: &[StoredPerson],
    group_id: &HashMap<String, i64>,
    facets: &mut Facets,
) -> Result<(), DbErr> {
    let before: HashMap<i64, &StoredPerson> = stored.iter().map(|p| (p.id, p)).collect();
    let mut left: BTreeMap<(i64, &str), Vec<i64>> = BTreeMap::new();
    let mut owned_by: BTreeMap<Owner, Vec<i64>> = BTreeMap::new();
    let mut rows = Vec::with_capacity(plan.person_updates.len());
    let mut roles_removed = Vec::new();
    for u in &plan.person_updates {
        let Some(have) = before.get(&u.id) else {
            return Err(DbErr::Custom(format!(
                "person {} was updated but not loaded",
                u.id
            )));
        };
        let mut state = have.state.clone();
        u.apply_to(&mut state);
        let mut row = person_row(ctx, &state);
        row.created_at = NotSet;
        rows.push((u.id, row));
        for l in &u.links_removed {
            if let Some(g) = group_id.get(&l.group) {
                left.entry((*g, l.role.as_str())).or_default().push(u.id);
            }
        }
        for l in &u.links_added {
            if let Some(g) = group_id.get(&l.group) {
                facets.link(ctx, u.id, *g, &l.role, state.links_owner);
            }
        }
        if u.links_owner.is_some() {
            owned_by.entry(state.links_owner).or_default().push(u.id);
        }
        roles_removed.extend(u.roles_removed.iter().map(|r| (u.id, r)));
        for r in &u.roles_added {
            facets.role(ctx, u.id, r);
        }
    }
    update_persons(db, &rows).await?;
    remove_roles(db, &roles_removed).await?;
    leave_groups(db, &left).await?;
    relabel_links(db, &owned_by).await
}

/// Changed persons' rows, each as its update leaves it, in one statement per `CHUNK` rows
/// (one per person was a round trip each with the write lock held, most of a night's).
async fn update_persons<C: ConnectionTrait>(
    db: &C,
    rows: &[(i64, person::ActiveModel)],
) -> Result<(), DbErr> {
    for chunk in rows.chunks(CHUNK) {
        db.execute_raw(persons_update(db.get_database_backend(), chunk)?)
            .await?;
    }
    Ok(())
}

/// `UPDATE person SET c = v.cN … FROM (VALUES (id, …), …) AS v WHERE person.id = v.column1`
/// for every column the rows set (the rows come from [`person_row`], so they set the same
/// ones). `columnN` is what both SQLite and PostgreSQL name a `VALUES` list's columns.
fn persons_update(
    backend: sea_orm::DbBackend,
    rows: &[(i64, person::ActiveModel)],
) -> Result<Statement, DbErr> {
    use sea_orm::{ActiveModelTrait, IdenStatic, Iterable};
    let columns: Vec<person::Column> = match rows.first() {
        Some((_, first)) => person::Column::iter()
            .filter(|c| !matches!(c, person::Column::Id) && first.get(*c).is_set())
            .collect(),
        None => Vec::new(),
    };
    let mut sql = Sql::new(backend);
    sql.push("UPDATE person SET ");
    for (i, c) in columns.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        sql.push(&format!("{sep}{} = v.column{}", c.as_str(), i + 2));
    }
    sql.push(" FROM (VALUES ");
    for (n, (id, row)) in rows.iter().enumerate() {
        sql.push(if n == 0 { "(" } else { ", (" }).bind(*id);
        for c in &columns {
            let value = row.get(*c).into_value().ok_or_else(|| {
                DbErr::Custom(format!("person {id}: column {} not set", c.as_str()))
            })?;
            sql.push(", ").bind(value);
        }
        sql.push(")");
    }
    sql.push(") AS v WHERE person.id = v.column1");
    Ok(sql.statement())
}

/// Links left: every group and role of the run in one statement (a night's moves and
/// teacher swaps leave a handful; each statement is a round trip with the write lock held),
/// a new statement only past `CHUNK` persons.
async fn leave_groups<C: ConnectionTrait>(
    db: &C,
    left: &BTreeMap<(i64, &str), Vec<i64>>,
) -> Result<(), DbErr> {
    use sea_orm::Condition;
    let mut batch = Condition::any();
    let mut persons = 0;
    for ((group, role), who) in left {
        for chunk in who.chunks(CHUNK) {
            batch = batch.add(
                Condition::all()
                    .add(membership::Column::GroupId.eq(*group))
                    .add(membership::Column::Role.eq(*role))
                    .add(membership::Column::PersonId.is_in(chunk.iter().copied())),
            );
            persons += chunk.len();
            if persons >= CHUNK {
                delete_links(db, std::mem::replace(&mut batch, Condition::any())).await?;
                persons = 0;
            }
        }
    }
    if persons > 0 {
        delete_links(db, batch).await?;
    }
    Ok(())
}

async fn delete_links<C: ConnectionTrait>(db: &C, which: sea_orm::Condition) -> Result<(), DbErr> {
    membership::Entity::delete_many()
        .filter(which)
        .exec(db)
        .await?;
    Ok(())
}

/// The links of persons whose links changed owner now name their new owner.
async fn relabel_links<C: ConnectionTrait>(
    db: &C,
    owned_by: &BTreeMap<Owner, Vec<i64>>,
) -> Result<(), DbErr> {
    for (owner, persons) in owned_by {
        for chunk in persons.chunks(CHUNK) {
            membership::Entity::update_many()
                .col_expr(membership::Column::Source, Expr::value(owner.as_str()))
                .filter(membership::Column::PersonId.is_in(chunk.iter().copied()))
                .exec(db)
                .await?;
        }
    }
    Ok(())
}

/// Roles the sources no longer give, every person's in one statement per `CHUNK`.
async fn remove_roles<C: ConnectionTrait>(db: &C, roles: &[(i64, &Role)]) -> Result<(), DbErr> {
    use sea_orm::Condition;
    for chunk in roles.chunks(CHUNK) {
        let which = chunk.iter().fold(Condition::any(), |any, (person, r)| {
            any.add(
                Condition::all()
                    .add(person_role::Column::PersonId.eq(*person))
                    .add(person_role::Column::Role.eq(r.name.as_str()))
                    .add(person_role::Column::Source.eq(r.owner.as_str()))
                    .add(person_role::Column::Scope.eq(r.scope.as_str())),
            )
        });
        person_role::Entity::delete_many()
            .filter(which)
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Removed persons: tombstoned in batches until the purge.
async fn write_removals<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    plan: &Plan,
) -> Result<(), DbErr> {
    let purge_after = ctx.now + ctx.retention;
    let removals: Vec<i64> = plan.person_removals.iter().map(|(id, _)| *id).collect();
    for chunk in removals.chunks(CHUNK) {
        person::Entity::update_many()
            .col_expr(person::Column::RemovedAt, Expr::value(ctx.now))
            .col_expr(person::Column::PurgeAfter, Expr::value(purge_after))
            .col_expr(person::Column::UpdatedAt, Expr::value(ctx.now))
            .filter(person::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Journal what the source sent but could not be used (a pupil without a key, a duplicate
/// key, a reference to a group that does not exist), so `changes --run N` can explain why
/// someone was kept as stored instead of updated.
pub async fn journal_rejects<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    source: Owner,
    rejects: &[connector_api::Reject],
) -> Result<(), DbErr> {
    let mut journal = Journal::new(ctx);
    for r in rejects {
        journal.add(Entry {
            entity: r.entity.as_str(),
            entity_id: None,
            person_id: None,
            operation: "reject",
            field: None,
            old: Some(r.key.clone()),
            new: None,
            source,
            rule: r.reason.clone(),
        });
    }
    journal.write(db).await
}

/// Journal where two sources disagreed: both values, and which owner's value was stored.
/// A person is found by the key in the conflict's subject (`las:L1001`), so `changes
/// --person` shows the disagreements about that person.
pub async fn journal_conflicts<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    conflicts: &[crate::model::plan::Conflict],
) -> Result<(), DbErr> {
    let mut journal = Journal::new(ctx);
    for c in conflicts {
        let (kind, value) = c.subject.split_once(':').unwrap_or(("", ""));
        let (entity, person_id) = if kind == "group" {
            ("group", None)
        } else {
            let found = super::keys::named(ctx.school, kind, value).one(db).await?;
            ("person", found.map(|p| p.id))
        };
        journal.add(Entry {
            entity,
            entity_id: person_id,
            person_id,
            operation: "conflict",
            field: Some(c.field.as_str()),
            old: Some(c.other.clone()),
            new: Some(c.kept.clone()),
            source: c.kept_owner,
            rule: format!(
                "{} owns {}; {} said otherwise",
                c.kept_owner.as_str(),
                c.field,
                c.other_owner.as_str()
            ),
        });
    }
    journal.write(db).await
}

/// A school revoked its permission and the grace period ended: delete everything stored
/// about its people and groups, with the journal and held changes that name them, and what
/// the sources said last (the next permission starts from nothing). The school's link and
/// its run records stay.
pub async fn offboard<C: ConnectionTrait>(db: &C, school: &str) -> Result<Purged, DbErr> {
    use super::entities::{held_change, source_state};
    change_entry::Entity::delete_many()
        .filter(change_entry::Column::SchoolId.eq(school))
        .exec(db)
        .await?;
    held_change::Entity::delete_many()
        .filter(held_change::Column::SchoolId.eq(school))
        .exec(db)
        .await?;
    // Keys, memberships, roles and grants go with their person by cascade.
    let persons = person::Entity::delete_many()
        .filter(person::Column::SchoolId.eq(school))
        .exec(db)
        .await?
        .rows_affected;
    let groups = roster_group::Entity::delete_many()
        .filter(roster_group::Column::SchoolId.eq(school))
        .exec(db)
        .await?
        .rows_affected;
    source_state::Entity::delete_many()
        .filter(source_state::Column::SchoolId.eq(school))
        .exec(db)
        .await?;
    super::prepared::forget(db, school).await?;
    super::schools::set_digest(db, school, None).await?;
    Ok(Purged { persons, groups })
}

/// What a purge deleted for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub persons: u64,
    pub groups: u64,
}

/// Delete tombstones whose retention ended, with everything that still names them: keys,
/// memberships, roles and grants (by cascade), and their journal and held rows, which may
/// hold names. Privacy: after this, nothing of a leaver remains. One short transaction per
/// chunk of persons, so the purge never holds SQLite's write lock for long; a purge cut off
/// halfway leaves whole persons, and the next one finishes it. Each chunk is counted into
/// `purged` once it is committed, so a caller that tries again after an error (a busy store)
/// still counts what the try before had purged.
pub async fn purge(
    store: &super::Store,
    now: DateTime<Utc>,
    purged: &mut Purged,
) -> Result<(), DbErr> {
    use super::WriteKind;
    use super::entities::held_change;
    use sea_orm::QueryOrder;
    let now = Stamp::from(now);
    loop {
        let txn = store.begin_write(WriteKind::Purge).await?;
        let ids: Vec<i64> = person::Entity::find()
            .select_only()
            .column(person::Column::Id)
            .filter(person::Column::RemovedAt.is_not_null())
            .filter(person::Column::PurgeAfter.lte(now))
            // By id: the same chunks each time, oldest persons first.
            .order_by_asc(person::Column::Id)
            .limit(CHUNK as u64)
            .into_tuple()
            .all(&txn)
            .await?;
        if ids.is_empty() {
            let due = sea_orm::Condition::all()
                .add(roster_group::Column::RemovedAt.is_not_null())
                .add(roster_group::Column::PurgeAfter.lte(now));
            let schools: Vec<String> = roster_group::Entity::find()
                .select_only()
                .column(roster_group::Column::SchoolId)
                .distinct()
                .filter(due.clone())
                .into_tuple()
                .all(&txn)
                .await?;
            super::schools::roster_changed_of(&txn, schools).await?;
            let groups = roster_group::Entity::delete_many()
                .filter(due)
                .exec(&txn)
                .await?
                .rows_affected;
            txn.commit().await?;
            purged.groups += groups;
            return Ok(());
        }
        let schools: Vec<String> = person::Entity::find()
            .select_only()
            .column(person::Column::SchoolId)
            .distinct()
            .filter(person::Column::Id.is_in(ids.iter().copied()))
            .into_tuple()
            .all(&txn)
            .await?;
        // A run that loaded these tombstones before this must load again.
        super::schools::roster_changed_of(&txn, schools).await?;
        change_entry::Entity::delete_many()
            .filter(change_entry::Column::PersonId.is_in(ids.iter().copied()))
            .exec(&txn)
            .await?;
        held_change::Entity::delete_many()
            .filter(held_change::Column::Kind.is_in(["pupils", "staff", "memberships"]))
            .filter(held_change::Column::EntityId.is_in(ids.iter().copied()))
            .exec(&txn)
            .await?;
        person::Entity::delete_many()
            .filter(person::Column::Id.is_in(ids.iter().copied()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        purged.persons += ids.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_in_chunks_of_at_most_chunk_and_none_is_lost() {
        let sizes: Vec<usize> = in_chunks((0..2 * CHUNK + 3).collect::<Vec<_>>())
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [CHUNK, CHUNK, 3]);
        assert_eq!(in_chunks(Vec::<u8>::new()).count(), 0);
        let all: Vec<usize> = in_chunks((0..CHUNK + 1).collect()).flatten().collect();
        assert_eq!(all, (0..CHUNK + 1).collect::<Vec<_>>());
    }

    #[test]
    fn the_aggregates_follow_the_person_columns() {
        // `stored_person` reads the columns by position: one more or less in the list and every
        // field after it would be read from its neighbour.
        assert_eq!(PERSON_COLUMNS.split(", ").count(), LINKS_JSON);
        let sql = persons_sql(sea_orm::DbBackend::Sqlite);
        let select = &sql[..sql.find(" FROM person").unwrap_or(sql.len())];
        assert!(select.starts_with(&format!("SELECT {PERSON_COLUMNS}, (SELECT")));
    }
}
