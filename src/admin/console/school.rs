//! A school's page (state, sources, runs, held removals, roster) and what can be done to it:
//! resync now (followed live on the job's page), freeze and unfreeze.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use connector_api::SchoolId;
use maud::{Markup, html};

use super::page::{Frame, or_dash, tag};
use super::{Csrf, Shared, Signed, render, store_trouble, trouble, unchanged};
use crate::store::export::Export;
use crate::store::held::HeldChange;
use crate::store::queue::{self, Job, JobState};
use crate::store::runs::{self, Run};
use crate::store::schools::SchoolLink;
use crate::store::source_state::SourceState;
use crate::store::status::{self, SchoolStatus};

/// Groups per roster page.
pub const GROUPS_PER_PAGE: usize = 10;

/// Everything a school's page shows.
pub struct SchoolView<'a> {
    pub status: &'a SchoolStatus,
    pub link: Option<&'a SchoolLink>,
    pub sources: &'a [SourceState],
    pub runs: &'a [Run],
    pub held: &'a [HeldChange],
    pub roster: Option<&'a Export>,
    pub page: usize,
}

fn sources(frame: &Frame, v: &SchoolView<'_>) -> Markup {
    let configured = |source: &str| -> Option<String> {
        let link = v.link?;
        match source {
            "las" => link.las.clone().map(|l| format!("LAS connection '{l}'")),
            "broker" => link
                .broker_id
                .map(|b| format!("Basispoort institution {b}")),
            _ => link.zermelo_portal.clone(),
        }
    };
    html! {
        table #sources {
            thead { tr { th { "Source" } th { "Configured" } th { "Last good answer" } th { "Counts then" } th { "School year" } th { "Health" } } }
            tbody {
                @for source in ["las", "broker", "portal"] {
                    @let state = v.sources.iter().find(|s| s.source == source);
                    @let conf = configured(source);
                    @if state.is_some() || conf.is_some() {
                        tr {
                            td { (source) }
                            td { (or_dash(conf)) }
                            td.when { (frame.when(state.and_then(|s| s.last_success_at))) }
                            td {
                                @if let Some(s) = state {
                                    (or_dash(s.pupil_count)) " pupils, " (or_dash(s.staff_count)) " staff, " (or_dash(s.group_count)) " groups"
                                }
                            }
                            td { (or_dash(state.and_then(|s| s.school_year.clone()))) }
                            td {
                                @match state.and_then(|s| s.parked_reason.as_deref()) {
                                    Some(why) => { (tag("parked")) p.said { (why) } }
                                    None => (tag("ok")),
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn runs_table(frame: &Frame, runs: &[Run]) -> Markup {
    html! {
        table #runs {
            thead { tr { th { "Run" } th { "Trigger" } th { "Started" } th { "Outcome" } th { "Why" } th { "" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { a href={ "/run/" (r.id) } { (r.id) } }
                        td { (r.trigger) @if r.dry_run { " (dry run)" } }
                        td.when { (frame.when(Some(r.started_at))) }
                        td { (tag(runs::shown_outcome(r))) }
                        td { (or_dash(r.message.as_deref())) }
                        td {
                            @if !r.dry_run && r.outcome.is_some() {
                                a href={ "/run/" (r.id) "/undo" } { "Undo…" }
                            }
                        }
                    }
                }
            }
        }
        @if runs.is_empty() { p { "No runs yet." } }
    }
}

/// A held removal in words.
pub fn held_said(h: &HeldChange) -> Markup {
    let detail: serde_json::Value = serde_json::from_str(&h.detail).unwrap_or_default();
    use crate::model::held::Kind;
    let kind = Kind::parse(&h.kind);
    let person = matches!(kind, Some(Kind::Pupils | Kind::Staff | Kind::Memberships));
    let kind = match kind {
        Some(Kind::Pupils) => "pupil",
        Some(Kind::Staff) => "staff member",
        Some(Kind::Groups) => "group",
        Some(Kind::Memberships) => "membership of person",
        None => h.kind.as_str(),
    };
    html! {
        (kind) " "
        @match (h.entity_id, person) {
            (Some(id), true) => a href={ "/person/" (id) } { (id) },
            (Some(id), false) => (id),
            (None, _) => "-",
        }
        @if let Some(g) = detail["group"].as_str() { " from group " (g) }
        @if let Some(r) = detail["role"].as_str() { " (" (r) ")" }
    }
}

fn held(frame: &Frame, s: &SchoolStatus, held: &[HeldChange]) -> Markup {
    let waiting: Vec<&HeldChange> = held
        .iter()
        .filter(|h| h.state == crate::store::held::HELD)
        .collect();
    html! {
        @if let (Some(run), false) = (s.held_run, waiting.is_empty()) {
            h2 { "Held removals" }
            p { (waiting.len()) " removal(s) held by the brakes in run " a href={ "/run/" (run) } { (run) } ". If they are real, approve them; if not, fix the source and resync." }
            ul #held { @for h in &waiting { li { (held_said(h)) } } }
            div.actions { (frame.button(&format!("/run/{run}/approve"), "Approve these removals", "danger")) }
        }
    }
}

fn roster(e: &Export, page: usize) -> Markup {
    let pages = e.groups.len().div_ceil(GROUPS_PER_PAGE).max(1);
    let page = page.clamp(1, pages);
    let shown = e
        .groups
        .iter()
        .skip((page - 1) * GROUPS_PER_PAGE)
        .take(GROUPS_PER_PAGE);
    let name = |f: &Option<String>, p: &Option<String>, g: &Option<String>| {
        [g.as_deref(), p.as_deref(), f.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        h2 #roster { "Roster" }
        p.muted { (e.groups.len()) " groups, " (e.pupils.len()) " pupils, " (e.staff.len()) " staff. Page " (page) " of " (pages) "." }
        @for g in shown {
            h3 { (g.name) " " span.muted { "(" (g.key) ", " (g.kind) ")" } }
            p {
                "Teachers: "
                @for (i, t) in e.staff.iter().filter(|t| t.groups.contains(&g.key)).enumerate() {
                    @if i > 0 { ", " }
                    a href={ "/person/" (t.id) } { (name(&t.family_name, &t.prefix, &t.given_name)) }
                }
            }
            ul.pupils {
                @for p in e.pupils.iter().filter(|p| p.group.as_ref() == Some(&g.key) || p.subgroups.contains(&g.key)) {
                    li { a href={ "/person/" (p.id) } { (name(&p.family_name, &p.prefix, &p.given_name)) } }
                }
            }
        }
        div.pager {
            @if page > 1 { a href={ "?page=" (page - 1) "#roster" } { "← previous groups" } }
            @if page < pages { a href={ "?page=" (page + 1) "#roster" } { "next groups →" } }
        }
    }
}

pub fn school_page(frame: &Frame, v: &SchoolView<'_>) -> Markup {
    let s = v.status;
    let frozen = s.state == crate::model::SchoolStatus::Frozen.as_str();
    html! {
        h1 { "School " (s.id) @if let Some(n) = &s.name { " · " (n) } }
        dl.facts {
            dt { "State" } dd { (tag(&s.state)) @if let Some(r) = &s.reason { " " (r) } }
            dt { "Last run" } dd { @match s.last_run { Some(r) => { a href={ "/run/" (r) } { (r) } " " (tag(s.last_outcome.as_deref().unwrap_or("running"))) " at " (frame.when(s.last_run_at)) } None => "never" } }
            dt { "Last success" } dd { (frame.when(s.last_success_at)) }
            dt { "Stored" } dd { (s.pupils) " pupils, " (s.staff) " staff, " (s.groups) " groups" }
            dt { "Identity conflicts" } dd { (s.identity_conflicts) }
        }
        @for line in s.attention() { p.said { (s.id) " " (line) } }
        div.actions {
            (frame.button(&format!("/school/{}/resync", s.id), "Resync now", ""))
            @if frozen {
                (frame.button(&format!("/school/{}/unfreeze", s.id), "Unfreeze", "quiet"))
            } @else {
                (frame.button(&format!("/school/{}/freeze", s.id), "Freeze", "quiet"))
            }
        }
        (held(frame, s, v.held))
        h2 { "Sources" }
        (sources(frame, v))
        h2 { "Last runs" }
        (runs_table(frame, v.runs))
        @match v.roster {
            Some(e) => (roster(e, v.page)),
            None => p { "No roster is stored for this school yet." },
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct PageQuery {
    page: usize,
}

/// The school id in a URL, normalized; a page that says so when it is not one.
fn school_id(frame: &Frame, text: &str) -> Result<String, Box<Response>> {
    text.parse::<SchoolId>()
        .map(|id| id.to_string())
        .map_err(|e| {
            Box::new(trouble(
                frame,
                StatusCode::NOT_FOUND,
                &format!("'{text}' is not a school id: {e}"),
                "Pick the school from the list of schools.",
            ))
        })
}

pub async fn show(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let (settings, frame) = c.frame(&signed).await;
    let id = match school_id(&frame, &id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let store = &c.admin.store;
    let db = store.db();
    let found = match status::of(db, &id).await {
        Ok(found) => found,
        Err(e) => return store_trouble(&frame, store.db_error(e)),
    };
    let Some(s) = found.as_ref() else {
        return trouble(
            &frame,
            StatusCode::NOT_FOUND,
            &format!("School {id} is not linked."),
            "Link it with `rostersync school add` or list it in the configuration.",
        );
    };
    let loaded = async {
        let links = crate::store::schools::list(store, &settings)
            .await
            .ok()
            .unwrap_or_default();
        let mut sources = Vec::new();
        for source in ["las", "broker", "portal"] {
            if let Some(st) = crate::store::source_state::load(db, &id, source).await? {
                sources.push(st);
            }
        }
        let runs = runs::list(db, Some(&id), 15).await?;
        let held = match s.held_run {
            Some(r) => crate::store::held::of_run(db, r).await?,
            None => Vec::new(),
        };
        let roster = crate::store::export::export(db, &id).await?;
        Ok::<_, sea_orm::DbErr>((links, sources, runs, held, roster))
    };
    let (links, sources, runs, held, roster) = match loaded.await {
        Ok(x) => x,
        Err(e) => return store_trouble(&frame, store.db_error(e)),
    };
    let view = SchoolView {
        status: s,
        link: links.iter().find(|l| l.id == id),
        sources: &sources,
        runs: &runs,
        held: &held,
        roster: roster.as_ref(),
        page: q.page.max(1),
    };
    render(
        &frame,
        &format!("School {id}"),
        None,
        school_page(&frame, &view),
    )
}

pub async fn resync(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<String>,
    Form(f): Form<Csrf>,
) -> Response {
    if let Some(r) = signed.forged(&f.csrf) {
        return r;
    }
    let (_, frame) = c.frame(&signed).await;
    let id = match school_id(&frame, &id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let store = &c.admin.store;
    match crate::store::schools::row(store, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return trouble(
                &frame,
                StatusCode::NOT_FOUND,
                &format!("School {id} is not linked."),
                "Pick the school from the list of schools.",
            );
        }
        Err(e) => return store_trouble(&frame, e),
    }
    match queue::enqueue(
        store.writer(),
        &id,
        "manual",
        Utc::now(),
        Some(&signed.by()),
    )
    .await
    {
        Ok(q) => {
            tracing::info!(school = %id, job = q.job, user = %signed.session.user, "Resync asked in the console.");
            Redirect::to(&format!("/job/{}", q.job)).into_response()
        }
        Err(e) => store_trouble(&frame, store.db_error(e)),
    }
}

async fn set_frozen(c: &Shared, signed: &Signed, id: &str, freeze: bool) -> Response {
    let (_, frame) = c.frame(signed).await;
    let parsed = match id.parse::<SchoolId>() {
        Ok(p) => p,
        Err(e) => {
            return trouble(
                &frame,
                StatusCode::NOT_FOUND,
                &format!("'{id}' is not a school id: {e}"),
                "Pick the school from the list of schools.",
            );
        }
    };
    let by = signed.by();
    match crate::store::schools::set_frozen(&c.admin.store, &parsed, freeze.then_some(by.as_str()))
        .await
    {
        Ok(changed) => {
            let said = match (freeze, changed) {
                (true, true) => format!(
                    "School {parsed} is frozen: its roster stays as it is until you unfreeze it."
                ),
                (true, false) => format!("School {parsed} was already frozen."),
                (false, true) => format!(
                    "School {parsed} is unfrozen: the next run syncs it again (Resync now to do it at once)."
                ),
                (false, false) => format!("School {parsed} was not frozen."),
            };
            tracing::info!(school = %parsed, freeze, user = %signed.session.user, "School freeze changed in the console.");
            c.notify(signed, said);
            Redirect::to(&format!("/school/{parsed}")).into_response()
        }
        Err(e) => unchanged(&frame, StatusCode::CONFLICT, &e),
    }
}

pub async fn freeze(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<String>,
    Form(f): Form<Csrf>,
) -> Response {
    if let Some(r) = signed.forged(&f.csrf) {
        return r;
    }
    set_frozen(&c, &signed, &id, true).await
}

pub async fn unfreeze(
    State(c): State<Shared>,
    signed: Signed,
    Path(id): Path<String>,
    Form(f): Form<Csrf>,
) -> Response {
    if let Some(r) = signed.forged(&f.csrf) {
        return r;
    }
    set_frozen(&c, &signed, &id, false).await
}

/// A resync's page: waiting, running, then its run's outcome.
pub fn job_page(frame: &Frame, job: &Job, run: Option<&Run>, now: DateTime<Utc>) -> Markup {
    let state = JobState::parse(&job.state);
    html! {
        h1 { "Resync of " a href={ "/school/" (job.school_id) } { (job.school_id) } }
        dl.facts #job data-state=(job.state) {
            dt { "Asked" } dd { (frame.when(Some(job.created_at))) " by " (or_dash(job.requested_by.as_deref())) }
            dt { "State" } dd { (tag(&job.state)) }
            @match state {
                Some(JobState::Pending) => { dt { "Waiting" } dd { "for a worker of the daemon (" ((now - job.created_at).num_seconds().max(0)) " s so far). This page refreshes itself." } }
                Some(JobState::Running) => { dt { "Running" } dd { "since " (frame.when(job.heartbeat_at)) ". This page refreshes itself." } }
                _ => {}
            }
            @if let Some(e) = &job.last_error { dt { "Error" } dd { (e) } }
        }
        @if let Some(r) = run {
            h2 { "Run " a href={ "/run/" (r.id) } { (r.id) } }
            p #outcome { (tag(runs::shown_outcome(r))) " " (or_dash(r.message.as_deref())) }
        }
    }
}

pub async fn job(State(c): State<Shared>, signed: Signed, Path(id): Path<i64>) -> Response {
    let (_, frame) = c.frame(&signed).await;
    let db = c.admin.store.db();
    let job = match queue::get(db, id).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            return trouble(
                &frame,
                StatusCode::NOT_FOUND,
                &format!("There is no job {id}."),
                "Finished jobs are forgotten after a while; the school's page lists its runs.",
            );
        }
        Err(e) => return store_trouble(&frame, c.admin.store.db_error(e)),
    };
    let run = match job.run_id {
        Some(r) => runs::get(db, r).await.ok().flatten(),
        None => None,
    };
    let open = JobState::parse(&job.state).is_some_and(|s| !s.is_closed());
    let body = job_page(&frame, &job, run.as_ref(), Utc::now());
    render(
        &frame,
        &format!("Resync of {}", job.school_id),
        open.then_some(2),
        body,
    )
}
