//! A person's page: fields with their owner and lock, keys, groups, roles, what they see and
//! why (`permissions`), a "can they see this pupil" box (`can`), and their latest journal.
//! Only ids go in URLs: never a name.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::page::{Frame, or_dash, tag};
use super::{Shared, Signed, render, store_trouble, trouble};
use crate::model::plan::StoredPerson;
use crate::store::Stamp;
use crate::store::entities::person;
use crate::store::journal::Change;
use crate::sync::explain::{Answer, Visibility};

/// The latest journal entries shown for a person.
const RECENT: usize = 50;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct CanQuery {
    /// A pupil's id or key: can this staff member see them?
    can: String,
}

/// What a person's page shows.
pub struct PersonView<'a> {
    pub row: &'a person::Model,
    pub stored: Option<&'a StoredPerson>,
    pub visibility: Option<&'a Visibility>,
    pub can: Option<(&'a str, Result<Answer, String>)>,
    pub changes: &'a [Change],
}

fn fields(p: &StoredPerson) -> Markup {
    html! {
        table #fields {
            thead { tr { th { "Field" } th { "Value" } th { "Owner" } th { "Lock" } } }
            tbody {
                @for (f, o) in &p.state.fields {
                    tr {
                        td { (f.as_str()) }
                        td { (o.value) }
                        td { (o.owner.as_str()) }
                        td { @if o.locked() { "locked: " (o.owner.as_str()) " supplies it" } @else { "editable" } }
                    }
                }
            }
        }
    }
}

fn keys_and_groups(p: &StoredPerson) -> Markup {
    let k = &p.state.keys;
    html! {
        dl.facts #keys {
            dt { "ECK-iD" } dd { (or_dash(k.eckid.as_deref())) }
            dt { "LAS key" } dd { (or_dash(k.las_key.as_deref())) }
            dt { "Broker id" } dd { (or_dash(k.broker_id.as_deref())) }
            dt { "Portal code" } dd { (or_dash(k.portal_code.as_deref())) }
            dt { "Groups" } dd {
                @for (i, l) in p.state.links.iter().enumerate() {
                    @if i > 0 { ", " }
                    (l.group) " (" (l.role) ")"
                }
                @if p.state.links.is_empty() { "none" }
                " · supplied by " (p.state.links_owner.as_str())
            }
            dt { "Roles" } dd {
                @for (i, r) in p.state.roles.iter().enumerate() {
                    @if i > 0 { ", " }
                    (r.name) @if !r.scope.is_empty() { " for " (r.scope) } " (" (r.owner.as_str()) ")"
                }
                @if p.state.roles.is_empty() { "none" }
            }
        }
    }
}

fn visibility(v: &Visibility) -> Markup {
    html! {
        h2 { "What they see" }
        @if v.groups.is_empty() && v.other.is_empty() {
            p #sees { "Person " (v.person) " has no grants: they see no pupil data." }
        } @else {
            p #sees { "Person " (v.person) " sees " (v.groups.len()) " of " (v.of_groups) " groups" @if v.level == Some("school") { ", the whole school" } "." }
            table #permissions {
                thead { tr { th { "Group" } th { "Level" } th { "Grant" } th { "Why" } th { "State" } th { "Since" } } }
                tbody {
                    @for g in &v.groups {
                        @for r in &g.reasons {
                            tr {
                                td { (g.group) } td { (g.level) } td { (r.grant) } td { (r.said()) }
                                td { (tag(r.state.as_str())) @if let Some(at) = r.revoke_after { " until " (at.format("%Y-%m-%d")) } }
                                td { (r.since.format("%Y-%m-%d")) }
                            }
                        }
                    }
                    @for r in &v.other {
                        tr { td { "-" } td { "own" } td { (r.grant) } td { (r.said()) } td { (tag(r.state.as_str())) } td { (r.since.format("%Y-%m-%d")) } }
                    }
                }
            }
        }
    }
}

fn can_box(frame: &Frame, person: i64, can: &Option<(&str, Result<Answer, String>)>) -> Markup {
    let _ = frame;
    html! {
        h2 { "Can they see a pupil?" }
        form.filter method="get" action={ "/person/" (person) } {
            label for="can" { "Pupil (id or key)" }
            input #can type="text" name="can" value=(can.as_ref().map(|c| c.0).unwrap_or(""));
            button.quiet type="submit" { "Ask" }
        }
        @match can {
            Some((_, Ok(a))) => p #answer { (tag(if a.yes { "ok" } else { "failed" })) " " (a.sentence) },
            Some((_, Err(why))) => p #answer { (why) },
            None => {}
        }
    }
}

pub fn person_page(frame: &Frame, v: &PersonView<'_>) -> Markup {
    let p = v.row;
    html! {
        h1 { @if p.kind == "pupil" { "Pupil " } @else { "Staff member " } (p.id) " of " a href={ "/school/" (p.school_id) } { (p.school_id) } }
        @if let Some(at) = p.removed_at { p.said { "Removed on " (frame.when(Some(at.at()))) "; kept until " (frame.when(p.purge_after.map(Stamp::at))) "." } }
        @match v.stored {
            Some(s) => { (fields(s)) (keys_and_groups(s)) }
            None => p { "This person is not in the school's stored roster." },
        }
        @if let Some(vis) = v.visibility { (visibility(vis)) }
        @if p.kind == "staff" { (can_box(frame, p.id, &v.can)) }
        h2 { "Latest changes" }
        table #changes {
            thead { tr { th { "At" } th { "Run" } th { "Change" } th { "Field" } th { "Old" } th { "New" } th { "Source" } th { "Rule" } } }
            tbody {
                @for c in v.changes.iter().rev().take(RECENT) {
                    tr {
                        td.when { (frame.when(Some(c.at.at()))) }
                        td { @match c.run_id { Some(r) => a href={ "/run/" (r) } { (r) }, None => "by hand" } }
                        td { (c.operation) } td { (or_dash(c.field.as_deref())) }
                        td { (or_dash(c.old_value.as_deref())) } td { (or_dash(c.new_value.as_deref())) }
                        td { (c.source) } td { (c.rule) }
                    }
                }
            }
        }
    }
}

/// "Can `staff` see the pupil named by `text`?", in `can`'s words.
async fn ask<C: sea_orm::ConnectionTrait>(
    db: &C,
    staff: &person::Model,
    text: &str,
) -> Result<Result<Answer, String>, sea_orm::DbErr> {
    let found = crate::store::journal::find_person(db, text.trim()).await?;
    Ok(match found.as_slice() {
        [] => Err(format!("No person has the id or key '{}'.", text.trim())),
        [p] if p.kind != "pupil" => Err(format!("Person {} is not a pupil.", p.id)),
        [p] => Ok(crate::sync::explain::can(db, staff, p).await?),
        many => Err(format!(
            "'{}' names {} persons; give the id.",
            text.trim(),
            many.len()
        )),
    })
}

pub async fn show(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<i64>,
    Query(q): Query<CanQuery>,
) -> Response {
    let (_, frame) = c.frame(&signed).await;
    let db = c.admin.store.db();
    let loaded = async {
        let Some(row) = person::Entity::find_by_id(id).one(db).await? else {
            return Ok(None);
        };
        let (_, persons) = crate::store::roster::load(db, &row.school_id).await?;
        let stored = persons.into_iter().find(|p| p.id == id);
        let vis = match row.kind.as_str() {
            "staff" => Some(crate::sync::explain::visibility(db, &row).await?),
            _ => None,
        };
        let can = match (row.kind.as_str(), q.can.trim()) {
            ("staff", t) if !t.is_empty() => Some(ask(db, &row, t).await?),
            _ => None,
        };
        let changes = crate::store::journal::of_person(db, id).await?;
        Ok::<_, sea_orm::DbErr>(Some((row, stored, vis, can, changes)))
    };
    use sea_orm::EntityTrait;
    match loaded.await {
        Ok(Some((row, stored, vis, can, changes))) => {
            let view = PersonView {
                row: &row,
                stored: stored.as_ref(),
                visibility: vis.as_ref(),
                can: can.map(|a| (q.can.as_str(), a)),
                changes: &changes,
            };
            render(
                &frame,
                &format!("Person {id}"),
                None,
                person_page(&frame, &view),
            )
        }
        Ok(None) => trouble(
            &frame,
            StatusCode::NOT_FOUND,
            &format!("There is no person {id}."),
            "A leaver is purged when the retention period ends; the school's page lists who is there.",
        ),
        Err(e) => store_trouble(&frame, c.admin.store.db_error(e)),
    }
}
