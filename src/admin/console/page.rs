//! The console's frame and parts every page shares: layout, tables, forms with their CSRF
//! token, times in the schedule's zone. Pure: data in, HTML out (maud escapes every value).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The stylesheet, served at `/console.css` (nothing is fetched from elsewhere).
pub const CSS: &str = include_str!("console.css");

/// What every signed-in page knows: who, the form token, a message from the last action,
/// the time zone times are shown in.
#[derive(Debug, Clone)]
pub struct Frame {
    pub user: String,
    pub csrf: String,
    pub notice: Option<String>,
    pub tz: Tz,
}

impl Frame {
    pub fn when(&self, t: Option<DateTime<Utc>>) -> String {
        t.map(|t| {
            t.with_timezone(&self.tz)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
    }

    /// A button that POSTs to `action` with this session's CSRF token.
    pub fn button(&self, action: &str, label: &str, class: &str) -> Markup {
        html! {
            form.inline method="post" action=(action) {
                input type="hidden" name="csrf" value=(self.csrf);
                button.(class) type="submit" { (label) }
            }
        }
    }

    /// The CSRF field for a form of the page's own.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// How a page is put in the frame.
pub struct Shell<'a> {
    pub title: &'a str,
    /// Reload every N seconds (a resync in progress), without a script.
    pub refresh: Option<u32>,
}

fn head(title: &str, refresh: Option<u32>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(s) = refresh {
                meta http-equiv="refresh" content=(s);
            }
            title { (title) " · rostersync" }
            link rel="stylesheet" href="/console.css";
        }
    }
}

/// A signed-in page.
pub fn page(frame: &Frame, shell: Shell<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(shell.title, shell.refresh))
            body {
                header {
                    a.brand href="/" { "rostersync" }
                    nav {
                        a href="/" { "Schools" }
                        a href="/connections" { "Connections" }
                        a href="/summer" { "Summer" }
                    }
                    form.inline.who method="post" action="/sign-out" {
                        (frame.csrf_field())
                        span { "Signed in as " strong { (frame.user) } }
                        button.quiet type="submit" { "Sign out" }
                    }
                }
                main {
                    @if let Some(n) = &frame.notice {
                        p.notice role="status" { (n) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page for someone not signed in (the sign-in page, a refusal).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body.bare { main { (body) } }
        }
    }
}

/// A state as a coloured tag.
pub fn tag(text: &str) -> Markup {
    let class = match text {
        "ok" | "active" | "done" => "good",
        "failed" | "parked" | "untrusted" => "bad",
        "frozen" | "held" | "offboarding" | "no_consent" | "awaiting_consent" => "warn",
        _ => "plain",
    };
    html! { span.tag.(class) { (text) } }
}

/// What went wrong and what to do, as a page section.
pub fn problem(what: &str, todo: &str) -> Markup {
    html! {
        section.problem {
            p { strong { (what) } }
            p { (todo) }
        }
    }
}

/// A value or a dash.
pub fn or_dash<T: std::fmt::Display>(v: Option<T>) -> Markup {
    match v {
        Some(v) => html! { (v) },
        None => PreEscaped("&ndash;".to_owned()),
    }
}
