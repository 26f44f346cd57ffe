//! The schools page (every school, problems first, with what to do) and the connections page
//! (each LAS, the broker, the portals: last contact and problems).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::page::{self, Frame, or_dash, tag};
use super::{Shared, Signed, render, store_trouble};
use crate::model::schedule::Daily;
use crate::settings::Settings;
use crate::sources::{ClientCertificate, THE_BROKER, las_connection};
use crate::store::schools::SchoolLink;
use crate::store::source_state::SourceState;
use crate::store::status::{self, Concern, ConnectionProblem, SchoolStatus};

/// The list's filter: a state (or `attention`: everything not fine) and a search text.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct Filter {
    pub state: String,
    pub q: String,
}

impl Filter {
    fn keeps(&self, s: &SchoolStatus) -> bool {
        let state = match self.state.as_str() {
            "" | "all" => true,
            "attention" => s.concern() != Concern::Fine,
            other => s.state == other,
        };
        let q = self.q.trim().to_lowercase();
        let found = q.is_empty()
            || s.id.to_lowercase().starts_with(&q)
            || s.name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&q));
        state && found
    }
}

/// The schools to show, problems first, then by id.
pub fn select<'a>(all: &'a [SchoolStatus], filter: &Filter) -> Vec<&'a SchoolStatus> {
    let mut out: Vec<&SchoolStatus> = all.iter().filter(|s| filter.keeps(s)).collect();
    out.sort_by(|a, b| (a.concern(), &a.id).cmp(&(b.concern(), &b.id)));
    out
}

/// What the schools page shows.
pub struct SchoolsView<'a> {
    pub schools: Vec<&'a SchoolStatus>,
    pub total: usize,
    pub problems: &'a [ConnectionProblem],
    /// Client certificates that end soon or ended (as `status` says them).
    pub certificates: Vec<String>,
    pub filter: &'a Filter,
    /// The next daily cycle and the schedule, for each school's next sync.
    pub next_cycle: DateTime<Utc>,
    pub daily: Daily,
}

const STATES: [&str; 7] = [
    "all",
    "attention",
    "active",
    "frozen",
    "parked",
    "awaiting_consent",
    "offboarding",
];

fn filter_form(f: &Filter) -> Markup {
    html! {
        form.filter method="get" action="/" {
            label for="state" { "State" }
            select #state name="state" {
                @for s in STATES {
                    option value=(s) selected[f.state == s || (f.state.is_empty() && s == "all")] { (s) }
                }
            }
            label for="q" { "Search" }
            input #q type="search" name="q" value=(f.q) placeholder="BRIN or name";
            button.quiet type="submit" { "Show" }
        }
    }
}

fn school_row(frame: &Frame, s: &SchoolStatus, next: DateTime<Utc>) -> Markup {
    let said = s.attention();
    html! {
        tr.attention[s.concern() != Concern::Fine] data-school=(s.id) {
            td {
                a href={ "/school/" (s.id) } { (s.id) }
                @if let Some(n) = &s.name { br; span.muted { (n) } }
                @for line in &said { p.said { (line) } }
            }
            td { (tag(&s.state)) }
            td {
                @match s.last_run {
                    Some(run) => {
                        a href={ "/run/" (run) } { (frame.when(s.last_run_at)) }
                        " " (tag(s.last_outcome.as_deref().unwrap_or("running")))
                    }
                    None => { "never" }
                }
            }
            td.when { (frame.when(s.last_success_at)) }
            td.num { (s.pupils) }
            td.num { (s.staff) }
            td.num { (s.groups) }
            td.num {
                @match s.held_run.filter(|_| s.held > 0) {
                    Some(run) => a href={ "/run/" (run) } { (s.held) },
                    None => "0",
                }
            }
            td.num { (s.identity_conflicts) }
            td.when { (frame.when(Some(next))) }
        }
    }
}

pub fn schools_page(frame: &Frame, v: &SchoolsView<'_>) -> Markup {
    html! {
        h1 { "Schools" }
        @for p in v.problems {
            (page::problem(
                &format!("Problem with {} since {}:", p.connection, frame.when(p.since)),
                &p.problem,
            ))
        }
        @for p in &v.certificates {
            (page::problem(p, "See the connections page for every certificate's end date."))
        }
        (filter_form(v.filter))
        p.muted { (v.schools.len()) " of " (v.total) " schools; problems first." }
        table #schools {
            thead { tr {
                th { "School" } th { "State" } th { "Last run" } th { "Last success" }
                th.num { "Pupils" } th.num { "Staff" } th.num { "Groups" } th.num { "Held" }
                th.num { "Conflicts" } th { "Next sync" }
            } }
            tbody {
                @for s in &v.schools {
                    (school_row(frame, s, v.next_cycle + v.daily.offset(&s.id)))
                }
            }
        }
        @if v.total == 0 {
            p { "No schools yet: link one with " code { "rostersync school add" } " or list it in the configuration." }
        }
    }
}

pub async fn list(
    State(c): State<Shared>,
    signed: Signed,
    Query(filter): Query<Filter>,
) -> Response {
    let (settings, frame) = c.frame(&signed).await;
    let db = c.admin.store.db();
    let all = match status::list(db).await {
        Ok(all) => all,
        Err(e) => return store_trouble(&frame, c.admin.store.db_error(e)),
    };
    let problems = status::problems(db).await.unwrap_or_default();
    let daily = settings.schedule.cycle();
    let view = SchoolsView {
        schools: select(&all, &filter),
        total: all.len(),
        problems: &problems,
        certificates: crate::sources::client_certificates(&settings)
            .iter()
            .filter_map(|k| k.problem(Utc::now()))
            .collect(),
        filter: &filter,
        next_cycle: daily.next(Utc::now()),
        daily,
    };
    render(&frame, "Schools", None, schools_page(&frame, &view))
}

/// One connection as the connections page shows it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub kind: &'static str,
    pub name: String,
    pub endpoint: String,
    pub schools: Vec<String>,
    /// The latest good answer from it, over its schools.
    pub last_contact: Option<DateTime<Utc>>,
    /// Its schools whose source is parked (credential refused), with the reason.
    pub parked: Vec<(String, String)>,
    pub problem: Option<ConnectionProblem>,
    /// A token's expiry (portals say it).
    pub expires: Option<DateTime<Utc>>,
    /// Its client certificate (mutual TLS), when it has one.
    pub certificate: Option<ClientCertificate>,
}

impl Connection {
    fn new(kind: &'static str, name: String, endpoint: String, schools: Vec<String>) -> Self {
        Connection {
            kind,
            name,
            endpoint,
            schools,
            last_contact: None,
            parked: Vec::new(),
            problem: None,
            expires: None,
            certificate: None,
        }
    }
}

/// What the store and the configuration know of the connections.
pub struct Known<'a> {
    by_source: BTreeMap<(&'a str, &'a str), &'a SourceState>,
    problems: &'a [ConnectionProblem],
    certificates: &'a [ClientCertificate],
}

impl<'a> Known<'a> {
    pub fn new(
        states: &'a [SourceState],
        problems: &'a [ConnectionProblem],
        certificates: &'a [ClientCertificate],
    ) -> Known<'a> {
        let by_source = states
            .iter()
            .map(|s| ((s.source.as_str(), s.school_id.as_str()), s))
            .collect();
        Known {
            by_source,
            problems,
            certificates,
        }
    }

    /// `c` with its last contact, parked schools, problem and certificate.
    fn fill(&self, mut c: Connection, source: &str, connection: &str) -> Connection {
        for school in &c.schools {
            let Some(s) = self.by_source.get(&(source, school.as_str())) else {
                continue;
            };
            c.last_contact = c.last_contact.max(s.last_success_at);
            if let Some(r) = &s.parked_reason {
                c.parked.push((school.clone(), r.clone()));
            }
        }
        c.problem = self
            .problems
            .iter()
            .find(|p| p.connection == connection)
            .cloned();
        c.certificate = self
            .certificates
            .iter()
            .find(|k| k.connection == connection)
            .cloned();
        c
    }
}

/// Every connection of the configuration with what the store knows of it. Pure.
pub fn connections(
    settings: &Settings,
    links: &[SchoolLink],
    known: &Known<'_>,
) -> Vec<Connection> {
    let mut out = Vec::new();
    for las in &settings.las {
        let crate::settings::LasSettings::Uwlr(cfg) = las;
        let schools = links
            .iter()
            .filter(|s| s.las.as_deref() == Some(cfg.name.as_str()))
            .map(|s| s.id.clone())
            .collect();
        let c = Connection::new(
            "LAS (UWLR)",
            cfg.name.clone(),
            cfg.endpoint.to_string(),
            schools,
        );
        out.push(known.fill(c, "las", &las_connection(&cfg.name)));
    }
    if let Some(b) = &settings.broker {
        let schools = links
            .iter()
            .filter(|s| s.broker_id.is_some())
            .map(|s| s.id.clone())
            .collect();
        let endpoint = b.basispoort().endpoint.to_string();
        let c = Connection::new("broker (Basispoort)", "broker".into(), endpoint, schools);
        out.push(known.fill(c, "broker", THE_BROKER));
    }
    for s in links {
        let Some(portal) = &s.zermelo_portal else {
            continue;
        };
        let mut c = Connection::new(
            "portal (Zermelo)",
            s.id.clone(),
            portal.clone(),
            vec![s.id.clone()],
        );
        c.expires = known
            .by_source
            .get(&("portal", s.id.as_str()))
            .and_then(|st| connector_zermelo::token_expiry(st.marker.as_deref()));
        out.push(known.fill(c, "portal", &format!("the portal of {}", s.id)));
    }
    out
}

fn connection_row(frame: &Frame, c: &Connection, now: DateTime<Utc>) -> Markup {
    let cert_problem = c.certificate.as_ref().and_then(|k| k.problem(now));
    let fine = c.problem.is_none() && c.parked.is_empty() && cert_problem.is_none();
    html! {
        tr.attention[!fine] data-connection=(c.name) {
            td { (c.kind) }
            td { (c.name) }
            td { code { (c.endpoint) } }
            td.num { (c.schools.len()) }
            td.when { (frame.when(c.last_contact)) }
            td {
                @if let Some(p) = &c.problem {
                    p.said { "Since " (frame.when(p.since)) ": " (p.problem) }
                }
                @for (school, why) in &c.parked {
                    p.said { a href={ "/school/" (school) } { (school) } " parked: " (why) }
                }
                @if let Some(at) = c.expires {
                    p.said {
                        "Token expires on " (at.format("%Y-%m-%d"))
                        " (in " ((at - now).num_days()) " days)"
                    }
                }
                @match (&cert_problem, c.certificate.as_ref().map(|k| &k.valid_until)) {
                    (Some(p), _) => p.said.problem { (p) },
                    (None, Some(Ok(until))) => p.said { "Client certificate valid until " (until.format("%Y-%m-%d")) },
                    _ => {}
                }
                @if fine && c.expires.is_none() && c.certificate.is_none() {
                    (or_dash(None::<&str>))
                }
            }
        }
    }
}

pub async fn connections_page(State(c): State<Shared>, signed: Signed) -> Response {
    let (settings, frame) = c.frame(&signed).await;
    let db = c.admin.store.db();
    let states = match crate::store::source_state::all(db).await {
        Ok(s) => s,
        Err(e) => return store_trouble(&frame, c.admin.store.db_error(e)),
    };
    let links = match crate::store::schools::list(&c.admin.store, &settings).await {
        Ok(l) => l,
        Err(e) => return store_trouble(&frame, e),
    };
    let problems = status::problems(db).await.unwrap_or_default();
    let certificates = crate::sources::client_certificates(&settings);
    let list = connections(
        &settings,
        &links,
        &Known::new(&states, &problems, &certificates),
    );
    let now = Utc::now();
    let body = html! {
        h1 { "Connections" }
        table #connections {
            thead { tr {
                th { "Kind" } th { "Name" } th { "Endpoint" } th.num { "Schools" }
                th { "Last good answer" } th { "Problems" }
            } }
            tbody { @for conn in &list { (connection_row(&frame, conn, now)) } }
        }
        @if list.is_empty() {
            p { "No connections are configured." }
        }
    };
    render(&frame, "Connections", None, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn school(id: &str, state: &str, name: &str) -> SchoolStatus {
        SchoolStatus {
            name: Some(name.into()),
            reason: (state != "active").then(|| format!("{state} because <b>reasons</b>")),
            ..status::sample(id, state)
        }
    }

    #[test]
    fn the_list_puts_problems_first_and_filters_by_state_and_search() {
        let all = [
            school("10AA00", "active", "De Regenboog"),
            school("11AA00", "frozen", "Sint Jozef"),
            school("12AA00", "parked", "Het Kompas"),
        ];
        let ids = |f: &Filter| {
            select(&all, f)
                .iter()
                .map(|s| s.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&Filter::default()), ["12AA00", "11AA00", "10AA00"]);
        let frozen = Filter {
            state: "frozen".into(),
            q: String::new(),
        };
        assert_eq!(ids(&frozen), ["11AA00"]);
        let attention = Filter {
            state: "attention".into(),
            q: String::new(),
        };
        assert_eq!(ids(&attention), ["12AA00", "11AA00"]);
        let by_brin = Filter {
            state: String::new(),
            q: "10aa".into(),
        };
        assert_eq!(ids(&by_brin), ["10AA00"]);
        let by_name = Filter {
            state: "all".into(),
            q: "kompas".into(),
        };
        assert_eq!(ids(&by_name), ["12AA00"]);
    }

    #[test]
    fn the_page_says_what_to_do_and_escapes_what_sources_send() {
        let all = [school("11AA00", "frozen", "<script>alert(1)</script>")];
        let frame = Frame {
            user: "anna".into(),
            csrf: "t".into(),
            notice: None,
            tz: chrono_tz::Europe::Amsterdam,
        };
        let daily = crate::model::schedule::Daily {
            at: chrono::NaiveTime::from_hms_opt(3, 30, 0).expect("time"),
            tz: chrono_tz::Europe::Amsterdam,
            window: std::time::Duration::ZERO,
        };
        let view = SchoolsView {
            schools: select(&all, &Filter::default()),
            total: 1,
            problems: &[],
            certificates: Vec::new(),
            filter: &Filter::default(),
            next_cycle: Utc::now(),
            daily,
        };
        let html = schools_page(&frame, &view).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(
            html.contains("frozen: frozen because &lt;b&gt;reasons&lt;/b&gt;"),
            "{html}"
        );
    }
}
