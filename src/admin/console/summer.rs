//! The summer page: `rollover status` for every school, in the same words.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::page::{Frame, tag};
use super::{Shared, Signed, render, store_trouble};
use crate::model::rollover::Calendar;
use crate::sync::summer::{SchoolSummer, Standing};

fn row(frame: &Frame, s: &SchoolSummer) -> Markup {
    html! {
        tr data-school=(s.school) {
            td { a href={ "/school/" (s.school) } { (s.school) } }
            td { (s.school_year.as_deref().unwrap_or("-")) }
            td { (s.next_year) }
            @match &s.standing {
                Standing::Prepared { since, changes: c, .. } => {
                    td { (tag("ok")) " prepared since " (frame.when(Some(*since))) }
                    td.num { (c.moving_up) } td.num { (c.leaving) } td.num { (c.arriving) }
                    td.num { (c.teachers_with_new_groups) } td.num { (c.groups_ending) } td.num { (c.groups_beginning) }
                }
                other => {
                    td {
                        @match other {
                            Standing::NotPrepared => "not prepared yet",
                            Standing::Switched => "switched early",
                            _ => "LAS not rolled over: frozen until its answer turns",
                        }
                    }
                    td colspan="6" {}
                }
            }
        }
    }
}

pub fn summer_page(frame: &Frame, calendar: &Calendar, list: &[SchoolSummer]) -> Markup {
    let prepared = list
        .iter()
        .filter(|s| matches!(s.standing, Standing::Prepared { .. }))
        .count();
    html! {
        h1 { "The summer" }
        p {
            (prepared) " of " (list.len()) " school(s) have next year prepared. From "
            (calendar.prepare_from) " each daily cycle asks every LAS for next year; on "
            (calendar.switch_on) " it goes live. The same as " code { "rostersync rollover status" } "."
        }
        table #summer {
            thead { tr {
                th { "School" } th { "Now" } th { "Next" } th { "State" }
                th.num { "Moving up" } th.num { "Leaving" } th.num { "Arriving" }
                th.num { "New groups" } th.num { "Groups end" } th.num { "Groups begin" }
            } }
            tbody { @for s in list { (row(frame, s)) } }
        }
    }
}

pub async fn show(State(c): State<Shared>, signed: Signed) -> Response {
    let (settings, frame) = c.frame(&signed).await;
    let calendar = settings.rollover.calendar();
    let today = crate::sync::run::today();
    match crate::sync::summer::status(&c.admin.store, &calendar, today, None).await {
        Ok(list) => render(
            &frame,
            "The summer",
            None,
            summer_page(&frame, &calendar, &list),
        ),
        Err(e) => store_trouble(&frame, c.admin.store.db_error(e)),
    }
}
