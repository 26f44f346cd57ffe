//! A run's page (`runs show` with its journal, filterable by kind and operation), approving
//! what it held, and undoing it (a preview first, then the undo as a run of its own).

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::page::{Frame, or_dash, tag};
use super::{Shared, Signed, render, store_trouble, trouble, unchanged};
use crate::store::held::{self, HeldChange};
use crate::store::journal::Change;
use crate::store::runs::{self, Run};
use crate::sync::report::Counts;
use crate::sync::undo::{UndoError, UndoReport, UndoRequest};

/// Journal entries per page.
pub const ENTRIES_PER_PAGE: usize = 200;

/// Which journal entries to show.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct JournalFilter {
    /// `person`, `group`, `membership`, `grant`, ... (the journal's entity).
    pub kind: String,
    /// `create`, `update`, `remove`, ...
    pub op: String,
    pub page: usize,
}

impl JournalFilter {
    pub fn keeps(&self, c: &Change) -> bool {
        (self.kind.is_empty() || c.entity == self.kind)
            && (self.op.is_empty() || c.operation == self.op)
    }
}

fn options(all: &[Change], pick: impl Fn(&Change) -> &str) -> Vec<String> {
    let mut v: Vec<String> = all.iter().map(|c| pick(c).to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

fn counts_table(c: &Counts) -> Markup {
    let rows = [
        ("pupils", &c.pupils),
        ("staff", &c.staff),
        ("groups", &c.groups),
    ];
    html! {
        table #counts {
            thead { tr { th { "" } th.num { "Created" } th.num { "Updated" } th.num { "Removed" } th.num { "Held" } } }
            tbody {
                @for (name, k) in rows {
                    tr { td { (name) } td.num { (k.created) } td.num { (k.updated) } td.num { (k.removed) } td.num { (k.held) } }
                }
                tr { td { "memberships" } td.num { (c.memberships.added) } td.num { "-" } td.num { (c.memberships.removed) } td.num { (c.memberships.held) } }
            }
        }
    }
}

fn journal(frame: &Frame, run: i64, all: &[Change], f: &JournalFilter) -> Markup {
    let shown: Vec<&Change> = all.iter().filter(|c| f.keeps(c)).collect();
    let pages = shown.len().div_ceil(ENTRIES_PER_PAGE).max(1);
    let page = f.page.clamp(1, pages);
    html! {
        h2 #journal { "Journal" }
        form.filter method="get" action={ "/run/" (run) } {
            label for="kind" { "Kind" }
            select #kind name="kind" {
                option value="" { "every kind" }
                @for k in options(all, |c| &c.entity) { option value=(k) selected[f.kind == k] { (k) } }
            }
            label for="op" { "Operation" }
            select #op name="op" {
                option value="" { "every operation" }
                @for o in options(all, |c| &c.operation) { option value=(o) selected[f.op == o] { (o) } }
            }
            button.quiet type="submit" { "Show" }
        }
        p.muted { (shown.len()) " of " (all.len()) " entries. Page " (page) " of " (pages) "." }
        table #entries {
            thead { tr { th { "At" } th { "Kind" } th { "Id" } th { "Change" } th { "Field" } th { "Old" } th { "New" } th { "Source" } th { "Rule" } } }
            tbody {
                @for c in shown.iter().skip((page - 1) * ENTRIES_PER_PAGE).take(ENTRIES_PER_PAGE) {
                    tr {
                        td.when { (frame.when(Some(c.at.at()))) }
                        td { (c.entity) }
                        td { @match c.person_id { Some(p) => a href={ "/person/" (p) } { (p) }, None => (or_dash(c.entity_id)) } }
                        td { (c.operation) }
                        td { (or_dash(c.field.as_deref())) }
                        td { (or_dash(c.old_value.as_deref())) }
                        td { (or_dash(c.new_value.as_deref())) }
                        td { (c.source) }
                        td { (c.rule) }
                    }
                }
            }
        }
        div.pager {
            @if page > 1 { a href={ "?kind=" (f.kind) "&op=" (f.op) "&page=" (page - 1) "#journal" } { "← previous" } }
            @if page < pages { a href={ "?kind=" (f.kind) "&op=" (f.op) "&page=" (page + 1) "#journal" } { "next →" } }
        }
    }
}

/// The run's page, as `runs show` says it, with its journal.
pub fn run_page(
    frame: &Frame,
    r: &Run,
    held_rows: &[HeldChange],
    all: &[Change],
    f: &JournalFilter,
) -> Markup {
    let c = Counts::parse(&r.counts);
    let waiting = held_rows.iter().filter(|h| h.state == held::HELD).count();
    html! {
        h1 { "Run " (r.id) " of " a href={ "/school/" (r.school_id) } { (r.school_id) } }
        dl.facts {
            dt { "Trigger" } dd { (r.trigger) @if r.dry_run { " (dry run)" } }
            dt { "Started" } dd { (frame.when(Some(r.started_at))) ", finished " (frame.when(r.finished_at)) }
            dt { "Outcome" } dd #outcome { (tag(runs::shown_outcome(r))) @if let Some(e) = &r.error_class { " (" (e) ")" } }
            @if r.outcome.is_none() {
                dt { "" } dd { "The run never recorded an outcome: the process stopped mid-run (or is still running). Nothing of an unfinished run is applied." }
            }
            @if let Some(m) = &r.message { dt { "Why" } dd { (m) } }
            dt { "Received" } dd { (c.received.pupils) " pupils, " (c.received.staff) " staff, " (c.received.groups) " groups, " (c.received.rejected) " rejected" }
        }
        (counts_table(&c))
        @if c.conflicts > 0 { p { (c.conflicts) " identity conflict(s): see the journal." } }
        div.actions {
            @if waiting > 0 {
                p { (waiting) " removal(s) held by the brakes. If they are real, approve them." }
                (frame.button(&format!("/run/{}/approve", r.id), "Approve these removals", "danger"))
            } @else if !held_rows.is_empty() {
                p { (held_rows.len()) " removal(s) were held; they are " (held_rows[0].state) " now." }
            }
            @if !r.dry_run && r.outcome.is_some() {
                a href={ "/run/" (r.id) "/undo" } { "Undo this run…" }
            }
        }
        @if waiting > 0 {
            ul #held { @for h in held_rows.iter().filter(|h| h.state == held::HELD) { li { (super::school::held_said(h)) } } }
        }
        (journal(frame, r.id, all, f))
    }
}

pub async fn show(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<i64>,
    Query(f): Query<JournalFilter>,
) -> Response {
    let (_, frame) = c.frame(&signed).await;
    let db = c.admin.store.db();
    let loaded = async {
        let Some(r) = runs::get(db, id).await? else {
            return Ok(None);
        };
        let held_rows = held::of_run(db, id).await?;
        let entries = crate::store::journal::of_run(db, id).await?;
        Ok::<_, sea_orm::DbErr>(Some((r, held_rows, entries)))
    };
    match loaded.await {
        Ok(Some((r, held_rows, entries))) => render(
            &frame,
            &format!("Run {id}"),
            None,
            run_page(&frame, &r, &held_rows, &entries, &f),
        ),
        Ok(None) => trouble(
            &frame,
            StatusCode::NOT_FOUND,
            &format!("There is no run {id}."),
            "A school's page lists its runs; history older than sync.journal_days is forgotten.",
        ),
        Err(e) => store_trouble(&frame, c.admin.store.db_error(e)),
    }
}

pub async fn approve(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<i64>,
    Form(f): Form<super::Csrf>,
) -> Response {
    use crate::sync::approve::{ApproveError, approve};
    if let Some(r) = signed.forged(&f.csrf) {
        return r;
    }
    let (settings, frame) = c.frame(&signed).await;
    let rules = crate::sync::run::Rules::from_settings(&settings);
    match approve(&c.admin.store, &rules, id, &signed.by()).await {
        Ok(done) => {
            c.notify(&signed, done.said());
            Redirect::to(&format!("/run/{}", done.run)).into_response()
        }
        Err(ApproveError::Store(e)) => store_trouble(&frame, e),
        Err(e @ ApproveError::NoSuchRun(_)) => unchanged(&frame, StatusCode::NOT_FOUND, &e),
        Err(e) => unchanged(&frame, StatusCode::CONFLICT, &e),
    }
}

fn undo_said(frame: &Frame, r: &UndoReport) -> Markup {
    html! {
        table #reverts {
            thead { tr { th { "Put back" } } }
            tbody { @for revert in &r.plan.reverts { tr { td { (revert.describe()) } } } }
        }
        @for left in &r.plan.left { p.said { "Left as it is: " (left) } }
        @for later in &r.obstacles.later { p.said { "Later: " (later.said()) } }
        @if !r.obstacles.purged.is_empty() { p.said { "Purged since (cannot come back): " (r.obstacles.purged.join(", ")) } }
        @let force = !r.obstacles.later.is_empty();
        form method="post" action={ "/run/" (r.undone) "/undo" } {
            (frame.csrf_field())
            @if force {
                p { label { input type="checkbox" name="force" value="true"; " Undo anyway: later changes to these records are overwritten" } }
            }
            button.danger type="submit" { "Undo run " (r.undone) }
        }
    }
}

async fn do_undo(c: &Shared, signed: &Signed, req: UndoRequest) -> Result<UndoReport, Response> {
    let (settings, frame) = c.frame(signed).await;
    let rules = crate::sync::run::Rules::from_settings(&settings);
    crate::sync::undo::undo(&c.admin.store, &rules, &req)
        .await
        .map_err(|e| match e {
            UndoError::Store(s) => store_trouble(&frame, s),
            e @ UndoError::NoSuchRun(_) => unchanged(&frame, StatusCode::NOT_FOUND, &e),
            e => unchanged(&frame, StatusCode::CONFLICT, &e),
        })
}

pub async fn undo_preview(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<i64>,
) -> Response {
    let req = UndoRequest {
        run: id,
        dry_run: true,
        force: true,
        by: signed.by(),
    };
    let report = match do_undo(&c, &signed, req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (_, frame) = c.frame(&signed).await;
    let body = html! {
        h1 { "Undo run " a href={ "/run/" (id) } { (id) } " of " a href={ "/school/" (report.school) } { (report.school) } }
        p { "This puts back what run " (id) " changed, as a run of its own; nothing is changed until you press the button." }
        (undo_said(&frame, &report))
    };
    render(&frame, &format!("Undo run {id}"), None, body)
}

#[derive(Debug, serde::Deserialize)]
pub struct UndoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    force: bool,
}

pub async fn undo(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<i64>,
    Form(f): Form<UndoForm>,
) -> Response {
    if let Some(r) = signed.forged(&f.csrf) {
        return r;
    }
    let req = UndoRequest {
        run: id,
        dry_run: false,
        force: f.force,
        by: signed.by(),
    };
    match do_undo(&c, &signed, req).await {
        Ok(report) => {
            let next = report.run.unwrap_or(id);
            c.notify(&signed, format!("Run {next} {}.", report.message));
            Redirect::to(&format!("/run/{next}")).into_response()
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_filter_keeps_the_kind_and_operation_asked_for() {
        let change = |entity: &str, op: &str| Change {
            id: Some(1),
            run_id: Some(1),
            school_id: "99XX00".into(),
            at: crate::store::Stamp::now(),
            entity: entity.into(),
            entity_id: Some(3),
            person_id: None,
            operation: op.into(),
            field: None,
            old_value: None,
            new_value: None,
            source: "las".into(),
            rule: "diff".into(),
        };
        let all = [
            change("person", "create"),
            change("group", "create"),
            change("person", "remove"),
        ];
        let f = JournalFilter {
            kind: "person".into(),
            ..Default::default()
        };
        assert_eq!(all.iter().filter(|c| f.keeps(c)).count(), 2);
        let f = JournalFilter {
            kind: "person".into(),
            op: "remove".into(),
            page: 0,
        };
        assert_eq!(all.iter().filter(|c| f.keeps(c)).count(), 1);
        assert_eq!(options(&all, |c| &c.entity), ["group", "person"]);
    }
}
