//! The roster in the store: loading a school's groups and persons for the diff, and applying
//! a Plan to them. Runs on the caller's connection or transaction, so a sync applies one
//! school in one transaction and nothing is ever half-applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use connector_api::{GroupKind, PersonKeys};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
};
use serde::Serialize;

use super::entities::{change_entry, membership, person, person_key, person_role, roster_group};
use crate::model::{Field, GroupState, Link, Owned, Owner, PersonKind, PersonState, Role};
use crate::sync::diff::{Plan, StoredGroup, StoredPerson};

/// Rows per multi-row insert: far below SQLite's and PostgreSQL's bind-parameter limits.
const CHUNK: usize = 500;

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

/// `{"family_name": "las", ..., "links": "broker"}`: who owns what on a person row.
fn owners_json(p: &PersonState) -> String {
    let mut map: BTreeMap<&str, &str> = p
        .fields
        .iter()
        .map(|(f, o)| (f.as_str(), o.owner.as_str()))
        .collect();
    map.insert("links", p.links_owner.as_str());
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

pub(super) fn parse_owners(json: &str) -> HashMap<String, Owner> {
    serde_json::from_str::<HashMap<String, String>>(json)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Owner::parse(&v).map(|o| (k, o)))
        .collect()
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
    let groups = group_rows
        .into_iter()
        .map(|g| {
            let owner = parse_owners(&g.owners)
                .get("group")
                .copied()
                .unwrap_or(Owner::Las);
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
        })
        .collect();

    let persons_of_school = Query::select()
        .column(person::Column::Id)
        .from(person::Entity)
        .and_where(person::Column::SchoolId.eq(school))
        .to_owned();
    let person_rows = person::Entity::find()
        .filter(person::Column::SchoolId.eq(school))
        .all(db)
        .await?;
    let keys = person_key::Entity::find()
        .filter(person_key::Column::SchoolId.eq(school))
        .all(db)
        .await?;
    let links = membership::Entity::find()
        .filter(membership::Column::PersonId.in_subquery(persons_of_school.clone()))
        .all(db)
        .await?;
    let roles = person_role::Entity::find()
        .filter(person_role::Column::PersonId.in_subquery(persons_of_school))
        .all(db)
        .await?;

    let mut by_id: BTreeMap<i64, StoredPerson> = BTreeMap::new();
    for row in person_rows {
        let owners = parse_owners(&row.owners);
        let owner_of = |f: Field| owners.get(f.as_str()).copied().unwrap_or(Owner::Las);
        let mut fields = BTreeMap::new();
        for (f, v) in [
            (Field::FamilyName, row.family_name),
            (Field::Prefix, row.prefix),
            (Field::GivenName, row.given_name),
            (Field::Email, row.email),
            (Field::YearGroup, row.year_group),
            (Field::EndDate, row.end_date.map(|d| d.to_string())),
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
        by_id.insert(
            row.id,
            StoredPerson {
                id: row.id,
                removed: row.removed_at.is_some(),
                local: row.origin == "local",
                state: PersonState {
                    kind: person_kind(&row.kind),
                    keys: PersonKeys::default(),
                    fields,
                    links: BTreeSet::new(),
                    links_owner: owners.get("links").copied().unwrap_or(Owner::Las),
                    roles: BTreeSet::new(),
                },
            },
        );
    }
    for k in keys {
        let Some(p) = by_id.get_mut(&k.person_id) else {
            continue;
        };
        p.state.keys.set(&k.kind, k.value);
    }
    for m in links {
        if let (Some(p), Some(group)) = (by_id.get_mut(&m.person_id), key_of_group.get(&m.group_id))
        {
            p.state.links.insert(Link {
                group: group.clone(),
                role: m.role,
            });
        }
    }
    for r in roles {
        if let Some(p) = by_id.get_mut(&r.person_id) {
            p.state.roles.insert(Role {
                name: r.role,
                scope: r.scope,
                owner: Owner::parse(&r.source).unwrap_or(Owner::Las),
            });
        }
    }
    Ok((groups, by_id.into_values().collect()))
}

/// Where and when an apply happens.
pub struct ApplyContext<'a> {
    pub school: &'a str,
    pub now: DateTime<Utc>,
    /// How long a removed person or group keeps its tombstone before it is purged.
    pub retention: chrono::Duration,
    /// The run the journal rows belong to.
    pub run: Option<i64>,
}

impl<'a> ApplyContext<'a> {
    /// A change made by hand: in `school`, now, outside any run.
    pub fn by_hand(school: &'a str) -> Self {
        ApplyContext {
            school,
            now: Utc::now(),
            retention: chrono::Duration::zero(),
            run: None,
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
            rule: Set(e.rule),
            at: Set(self.ctx.now),
            ..Default::default()
        });
    }
}

pub(super) fn person_row(ctx: &ApplyContext, p: &PersonState) -> person::ActiveModel {
    person::ActiveModel {
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
        owners: Set(owners_json(p)),
        content_hash: Set(None),
        origin: Set("source".into()),
        created_at: Set(ctx.now),
        updated_at: Set(ctx.now),
        removed_at: Set(None),
        purge_after: Set(None),
        sourced_id: Set(Some(super::new_sourced_id())),
    }
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
        sourced_id: Set(Some(super::new_sourced_id())),
    }
}

async fn insert_chunked<C, A>(db: &C, rows: Vec<A>) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    A: sea_orm::ActiveModelTrait + Send,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(CHUNK).collect();
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec(db)
            .await?;
    }
    Ok(())
}

/// The rows that describe one person besides the person row: keys, links, roles.
pub(super) struct Facets {
    keys: Vec<person_key::ActiveModel>,
    links: Vec<membership::ActiveModel>,
    roles: Vec<person_role::ActiveModel>,
}

impl Facets {
    pub fn new() -> Facets {
        Facets {
            keys: Vec::new(),
            links: Vec::new(),
            roles: Vec::new(),
        }
    }

    pub fn key(&mut self, ctx: &ApplyContext, id: i64, kind: &str, value: &str, owner: Owner) {
        self.keys.push(person_key::ActiveModel {
            school_id: Set(ctx.school.to_owned()),
            kind: Set(kind.to_owned()),
            value: Set(value.to_owned()),
            person_id: Set(id),
            source: Set(owner.as_str().to_owned()),
            created_at: Set(ctx.now),
        });
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
        insert_chunked(db, self.keys).await?;
        insert_chunked(db, self.links).await?;
        insert_chunked(db, self.roles).await
    }
}

/// The journal entry of an identity conflict. A changed ECK-iD names its person and both
/// values, so `person relink --accept-source` can take the new one.
fn identity_conflict_entry(c: &crate::sync::diff::IdentityConflict) -> Entry<'_> {
    match &c.eckid {
        Some(change) => Entry {
            entity: "person",
            entity_id: c.person,
            person_id: c.person,
            operation: "conflict",
            field: Some(ECKID_CONFLICT),
            old: Some(change.old.clone()),
            new: Some(change.new.clone()),
            source: Owner::Las,
            rule: format!(
                "{}: {}; nothing merged until a person decides (`rostersync person relink {} \
                 --accept-source` if it is the same person)",
                c.subject,
                c.reason,
                c.person.unwrap_or_default()
            ),
        },
        None => Entry {
            entity: "person",
            entity_id: c.person,
            person_id: c.person,
            operation: "conflict",
            field: None,
            old: Some(c.subject.clone()),
            new: Some(c.reason.clone()),
            source: Owner::Las,
            rule: "keys disagree about who this is; nothing merged".into(),
        },
    }
}

/// The journal's field name of a changed-ECK-iD conflict.
pub const ECKID_CONFLICT: &str = "eckid";

/// Give `person` a new ECK-iD (the same person, a new personal number behind it).
pub async fn replace_eckid<C: ConnectionTrait>(
    db: &C,
    school: &str,
    person: i64,
    eckid: &str,
) -> Result<(), DbErr> {
    person_key::Entity::update_many()
        .col_expr(person_key::Column::Value, Expr::value(eckid))
        .filter(person_key::Column::SchoolId.eq(school))
        .filter(person_key::Column::PersonId.eq(person))
        .filter(person_key::Column::Kind.eq("eckid"))
        .exec(db)
        .await?;
    Ok(())
}

/// Write `plan` for `ctx.school`. `stored` is what the diff compared against.
pub async fn apply<C: ConnectionTrait>(
    db: &C,
    ctx: &ApplyContext<'_>,
    plan: &Plan,
    stored: &[StoredPerson],
) -> Result<Applied, DbErr> {
    let purge_after = ctx.now + ctx.retention;
    let mut journal = Journal::new(ctx);
    insert_chunked(
        db,
        plan.group_creates
            .iter()
            .map(|g| group_row(ctx, g))
            .collect(),
    )
    .await?;
    for u in &plan.group_updates {
        // A group added by hand that a source now supplies becomes the source's.
        let mut row = group_row(ctx, &u.state);
        row.id = Set(u.id);
        row.created_at = NotSet;
        row.sourced_id = NotSet;
        roster_group::Entity::update(row).exec(db).await?;
        for c in &u.changes {
            journal.add(Entry {
                entity: "group",
                entity_id: Some(u.id),
                person_id: None,
                operation: "update",
                field: Some(c.field),
                old: c.old.clone(),
                new: c.new.clone(),
                source: u.state.owner,
                rule: format!("{} states it", u.state.owner.as_str()),
            });
        }
        if u.restored {
            journal.add(Entry {
                entity: "group",
                entity_id: Some(u.id),
                person_id: None,
                operation: "restore",
                field: None,
                old: None,
                new: Some(u.state.key.clone()),
                source: u.state.owner,
                rule: "back in the source".into(),
            });
        }
    }
    for chunk in plan.group_removals.chunks(CHUNK) {
        roster_group::Entity::update_many()
            .col_expr(roster_group::Column::RemovedAt, Expr::value(ctx.now))
            .col_expr(roster_group::Column::PurgeAfter, Expr::value(purge_after))
            .filter(roster_group::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    // Group ids by key, new ones included, for the links below.
    let group_id: HashMap<String, i64> = roster_group::Entity::find()
        .filter(roster_group::Column::SchoolId.eq(ctx.school))
        .all(db)
        .await?
        .into_iter()
        .map(|g| (g.key, g.id))
        .collect();
    for g in &plan.group_creates {
        journal.add(Entry {
            entity: "group",
            entity_id: group_id.get(&g.key).copied(),
            person_id: None,
            operation: "create",
            field: None,
            old: None,
            new: Some(g.key.clone()),
            source: g.owner,
            rule: "new in the source".into(),
        });
    }
    for id in &plan.group_removals {
        journal.add(Entry {
            entity: "group",
            entity_id: Some(*id),
            person_id: None,
            operation: "remove",
            field: None,
            old: None,
            new: None,
            source: Owner::Las,
            rule: "absent from the source; tombstoned until purge".into(),
        });
    }

    let mut facets = Facets::new();
    for p in &plan.person_creates {
        // One row at a time: the new id is needed for the keys, links and roles.
        let id = person::Entity::insert(person_row(ctx, p))
            .exec(db)
            .await?
            .last_insert_id;
        journal.add(
            Entry::person(
                p.kind,
                id,
                "create",
                p.links_owner,
                "new identity in the source".into(),
            )
            .about(None, None, Some(p.keys.label())),
        );
        for (kind, v) in p.keys.entries() {
            facets.key(ctx, id, kind, v, p.links_owner);
        }
        for l in &p.links {
            if let Some(g) = group_id.get(&l.group) {
                facets.link(ctx, id, *g, &l.role, p.links_owner);
            }
        }
        for r in &p.roles {
            facets.role(ctx, id, r);
        }
    }

    let before: HashMap<i64, &StoredPerson> = stored.iter().map(|p| (p.id, p)).collect();
    for u in &plan.person_updates {
        let Some(have) = before.get(&u.id) else {
            return Err(DbErr::Custom(format!(
                "person {} was updated but not loaded",
                u.id
            )));
        };
        let mut state = have.state.clone();
        u.apply_to(&mut state);
        let matched = format!("matched by {}", u.matched_by);
        for c in &u.fields {
            let source = c
                .new
                .as_ref()
                .or(c.old.as_ref())
                .map(|o| o.owner)
                .unwrap_or(Owner::Las);
            journal.add(
                Entry::person(
                    u.kind,
                    u.id,
                    "update",
                    source,
                    format!("{matched}; {} owns {}", source.as_str(), c.field.as_str()),
                )
                .about(
                    Some(c.field.as_str()),
                    c.old.as_ref().map(|o| o.value.clone()),
                    c.new.as_ref().map(|o| o.value.clone()),
                ),
            );
        }
        for (kind, v) in u.new_keys.entries() {
            journal.add(
                Entry::person(
                    u.kind,
                    u.id,
                    "link-key",
                    state.links_owner,
                    format!("{matched}; a key that appears later links to the same person"),
                )
                .about(Some(kind), None, Some(v.to_owned())),
            );
        }
        for l in &u.links_added {
            journal.add(
                Entry::person(u.kind, u.id, "join", state.links_owner, matched.clone()).about(
                    Some(l.group.as_str()),
                    None,
                    Some(l.role.clone()),
                ),
            );
        }
        for l in &u.links_removed {
            journal.add(
                Entry::person(u.kind, u.id, "leave", state.links_owner, matched.clone()).about(
                    Some(l.group.as_str()),
                    Some(l.role.clone()),
                    None,
                ),
            );
        }
        for r in &u.roles_added {
            journal.add(
                Entry::person(u.kind, u.id, "role-add", r.owner, matched.clone()).about(
                    Some(r.name.as_str()),
                    None,
                    Some(r.scope.clone()),
                ),
            );
        }
        for r in &u.roles_removed {
            journal.add(
                Entry::person(u.kind, u.id, "role-remove", r.owner, matched.clone()).about(
                    Some(r.name.as_str()),
                    Some(r.scope.clone()),
                    None,
                ),
            );
        }
        if u.restored {
            journal.add(
                Entry::person(
                    u.kind,
                    u.id,
                    "restore",
                    state.links_owner,
                    "back in the source".into(),
                )
                .about(None, None, None),
            );
        }
        if u.adopted {
            journal.add(Entry::person(u.kind, u.id, "adopt", state.links_owner, format!(
                    "{matched}; the local record keeps its id and its source fields become locked"
                )).about(None, None, None));
        }
        if let Some(c) = &u.eckid_changed {
            replace_eckid(db, ctx.school, u.id, &c.new).await?;
            journal.add(
                Entry::person(
                    u.kind,
                    u.id,
                    "relink",
                    Owner::Broker,
                    format!(
                        "{matched}; the LAS and the broker both send this new ECK-iD, and the \
                         LAS key and broker id both name this person"
                    ),
                )
                .about(Some("eckid"), Some(c.old.clone()), Some(c.new.clone())),
            );
        }
        let mut row = person_row(ctx, &state);
        row.id = Set(u.id);
        row.created_at = NotSet;
        row.sourced_id = NotSet;
        person::Entity::update(row).exec(db).await?;
        for (kind, v) in u.new_keys.entries() {
            facets.key(ctx, u.id, kind, v, state.links_owner);
        }
        for l in &u.links_removed {
            if let Some(g) = group_id.get(&l.group) {
                membership::Entity::delete_many()
                    .filter(membership::Column::PersonId.eq(u.id))
                    .filter(membership::Column::GroupId.eq(*g))
                    .filter(membership::Column::Role.eq(l.role.as_str()))
                    .exec(db)
                    .await?;
            }
        }
        for l in &u.links_added {
            if let Some(g) = group_id.get(&l.group) {
                facets.link(ctx, u.id, *g, &l.role, state.links_owner);
            }
        }
        if u.links_owner.is_some() {
            membership::Entity::update_many()
                .col_expr(
                    membership::Column::Source,
                    Expr::value(state.links_owner.as_str()),
                )
                .filter(membership::Column::PersonId.eq(u.id))
                .exec(db)
                .await?;
        }
        for r in &u.roles_removed {
            person_role::Entity::delete_many()
                .filter(person_role::Column::PersonId.eq(u.id))
                .filter(person_role::Column::Role.eq(r.name.as_str()))
                .filter(person_role::Column::Source.eq(r.owner.as_str()))
                .filter(person_role::Column::Scope.eq(r.scope.as_str()))
                .exec(db)
                .await?;
        }
        for r in &u.roles_added {
            facets.role(ctx, u.id, r);
        }
    }
    facets.write(db).await?;

    // A removal is the doing of the source that supplied the person: its highest owner.
    let supplier: HashMap<i64, Owner> = stored
        .iter()
        .map(|p| {
            let owner = p
                .state
                .fields
                .values()
                .map(|o| o.owner)
                .chain([p.state.links_owner])
                .max()
                .unwrap_or(Owner::Las);
            (p.id, owner)
        })
        .collect();
    for (id, kind) in &plan.person_removals {
        journal.add(
            Entry::person(
                *kind,
                *id,
                "remove",
                supplier.get(id).copied().unwrap_or(Owner::Las),
                "absent from the sources; tombstoned until purge".into(),
            )
            .about(None, None, None),
        );
    }
    for c in &plan.conflicts {
        journal.add(identity_conflict_entry(c));
    }
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
    conflicts: &[crate::sync::merge::Conflict],
) -> Result<(), DbErr> {
    let mut journal = Journal::new(ctx);
    for c in conflicts {
        let (kind, value) = c.subject.split_once(':').unwrap_or(("", ""));
        let (entity, person_id) = if kind == "group" {
            ("group", None)
        } else {
            let found = person_key::Entity::find_by_id((
                ctx.school.to_owned(),
                kind.to_owned(),
                value.to_owned(),
            ))
            .one(db)
            .await?;
            ("person", found.map(|k| k.person_id))
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
/// halfway leaves whole persons, and the next one finishes it.
pub async fn purge(store: &super::Store, now: DateTime<Utc>) -> Result<Purged, DbErr> {
    use super::WriteKind;
    use super::entities::held_change;
    use sea_orm::QuerySelect;
    let mut purged = Purged::default();
    loop {
        let txn = store.begin_write(WriteKind::Purge).await?;
        let ids: Vec<i64> = person::Entity::find()
            .select_only()
            .column(person::Column::Id)
            .filter(person::Column::RemovedAt.is_not_null())
            .filter(person::Column::PurgeAfter.lte(now))
            .limit(CHUNK as u64)
            .into_tuple()
            .all(&txn)
            .await?;
        if ids.is_empty() {
            purged.groups = roster_group::Entity::delete_many()
                .filter(roster_group::Column::RemovedAt.is_not_null())
                .filter(roster_group::Column::PurgeAfter.lte(now))
                .exec(&txn)
                .await?
                .rows_affected;
            txn.commit().await?;
            return Ok(purged);
        }
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
