//! The admin console: server-rendered pages on the admin TCP listener for a publisher's
//! support desk. Sign-in with an admin token sets an HttpOnly, SameSite=Strict session
//! cookie (Secure behind TLS); every change is a POST with the session's CSRF token; wrong
//! tokens are limited per address and logged without the token. No script runs: a resync in
//! progress refreshes its page with `<meta http-equiv=refresh>`.
//!
//! Every page reads the same functions as the command line (`status`, `runs show`,
//! `permissions`, `can`, `approve`, `undo`), and shows their texts.

mod page;
mod person;
mod run;
mod school;
mod schools;
mod session;
mod summer;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use secrecy::SecretString;

use self::page::Frame;
use self::session::{Limiter, Session, Sessions};
use super::AdminState;
use crate::server::Peer;

const COOKIE: &str = "rostersync_session";

/// The console's own state beside the admin API's.
pub struct Console {
    admin: AdminState,
    /// Who may sign in, with their tokens.
    users: Vec<(String, SecretString)>,
    sessions: Mutex<Sessions>,
    limiter: Mutex<Limiter>,
    /// The listener does TLS: cookies are marked Secure.
    tls: bool,
}

type Shared = Arc<Console>;

impl Console {
    pub fn new(
        admin: AdminState,
        users: Vec<(String, SecretString)>,
        idle: Duration,
        tls: bool,
    ) -> Console {
        Console {
            admin,
            users,
            sessions: Mutex::new(Sessions::new(idle)),
            limiter: Mutex::default(),
            tls,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration in force and the page frame of `signed`.
    async fn frame(&self, signed: &Signed) -> (Arc<crate::settings::Settings>, Frame) {
        let settings = self.admin.settings().await;
        let frame = signed.frame(settings.schedule.timezone.0);
        (settings, frame)
    }

    /// Leave a message for the session's next page.
    fn notify(&self, signed: &Signed, notice: String) {
        self.sessions().notify(&signed.id, notice);
    }
}

/// The console's routes, on the admin TCP listener beside the bearer-token API.
pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(schools::list))
        .route("/connections", get(schools::connections_page))
        .route("/summer", get(summer::show))
        .route("/console.css", get(stylesheet))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/school/{id}", get(school::show))
        .route("/school/{id}/resync", post(school::resync))
        .route("/school/{id}/freeze", post(school::freeze))
        .route("/school/{id}/unfreeze", post(school::unfreeze))
        .route("/job/{id}", get(school::job))
        .route("/run/{id}", get(run::show))
        .route("/run/{id}/approve", post(run::approve))
        .route("/run/{id}/undo", get(run::undo_preview).post(run::undo))
        .route("/person/{id}", get(person::show))
        .layer(axum::middleware::map_response(private))
        .with_state(console)
}

/// Pupil data of minors: nothing is cached, nothing is framed, no script runs, nothing is
/// fetched or sent elsewhere.
async fn private(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = [
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in set {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        page::CSS,
    )
        .into_response()
}

/// A signed-in admin, with the session's id (from the cookie).
pub struct Signed {
    id: String,
    session: Session,
}

impl Signed {
    fn frame(&self, tz: chrono_tz::Tz) -> Frame {
        Frame {
            user: self.session.user.clone(),
            csrf: self.session.csrf.clone(),
            notice: self.session.notice.clone(),
            tz,
        }
    }

    /// Who did it, for the journal and the job table.
    fn by(&self) -> String {
        format!("{} (console)", self.session.user)
    }
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<Shared> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Shared) -> Result<Self, Response> {
        let session = cookie_value(&parts.headers)
            .and_then(|id| c.sessions().touch(&id, Instant::now()).map(|s| (id, s)));
        match session {
            Some((id, session)) => Ok(Signed { id, session }),
            // A page asked for: sign in first. A form sent: refused, it may be forged.
            None if parts.method == Method::GET => Err(Redirect::to("/sign-in").into_response()),
            None => Err(refusal(
                StatusCode::FORBIDDEN,
                "You are not signed in (or your session ended).",
                "Sign in again, then repeat what you did.",
            )),
        }
    }
}

/// Every form carries the session's CSRF token.
#[derive(Debug, serde::Deserialize)]
pub struct Csrf {
    #[serde(default)]
    csrf: String,
}

impl Signed {
    /// A POST without this session's token was not sent by a console page: the refusal.
    fn forged(&self, csrf: &str) -> Option<Response> {
        if self.session.allows(csrf) {
            None
        } else {
            tracing::warn!(user = %self.session.user, "A console form without a valid CSRF token was refused.");
            Some(refusal(
                StatusCode::FORBIDDEN,
                "This form was not sent from a page of this console (its CSRF token is missing or wrong).",
                "Reload the page and try again; if you did not press a button yourself, another site tried to act in your name.",
            ))
        }
    }
}

/// A page that says what went wrong and what to do, for someone maybe not signed in.
fn refusal(status: StatusCode, what: &str, todo: &str) -> Response {
    let body = page::bare(
        "Refused",
        html! {
            h1 { "rostersync" }
            (page::problem(what, todo))
            p { a href="/" { "Back to the console" } }
        },
    );
    (status, body).into_response()
}

/// A signed-in page that says what went wrong and what to do.
fn trouble(frame: &Frame, status: StatusCode, what: &str, todo: &str) -> Response {
    let body = page::page(
        frame,
        page::Shell {
            title: "Problem",
            refresh: None,
        },
        page::problem(what, todo),
    );
    (status, body).into_response()
}

/// An action was refused: why, and that nothing changed.
fn unchanged(frame: &Frame, status: StatusCode, e: &dyn std::fmt::Display) -> Response {
    trouble(frame, status, &e.to_string(), "Nothing was changed.")
}

/// The store failed: say so, and that nothing changed.
fn store_trouble(frame: &Frame, e: impl std::fmt::Display) -> Response {
    trouble(
        frame,
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("The store did not answer: {e}"),
        "Nothing was changed. Try again in a minute; if it persists, check the daemon's log \
         (journalctl -u rostersync).",
    )
}

async fn sign_in_page(c: State<Shared>, headers: HeaderMap) -> Response {
    let signed =
        cookie_value(&headers).is_some_and(|id| c.sessions().touch(&id, Instant::now()).is_some());
    if signed {
        return Redirect::to("/").into_response();
    }
    sign_in_form(StatusCode::OK, None)
}

fn sign_in_form(status: StatusCode, problem: Option<(&str, &str)>) -> Response {
    let body = page::bare(
        "Sign in",
        html! {
            h1 { "rostersync admin console" }
            @if let Some((what, todo)) = problem {
                (page::problem(what, todo))
            }
            form method="post" action="/sign-in" {
                p {
                    label for="token" { "Admin token" }
                    br;
                    input #token type="password" name="token" autocomplete="current-password" required autofocus size="40";
                }
                button type="submit" { "Sign in" }
            }
            p.said { "The token is admin.token or your own [[admin.user]] token from the daemon's configuration." }
        },
    );
    (status, body).into_response()
}

#[derive(serde::Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
}

fn peer_ip(peer: Option<&Peer>) -> IpAddr {
    match peer {
        Some(Peer::Tcp(a)) => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

async fn sign_in(
    State(c): State<Shared>,
    axum::Extension(peer): axum::Extension<Peer>,
    Form(form): Form<SignIn>,
) -> Response {
    let from = peer_ip(Some(&peer));
    let now = Instant::now();
    if let Some(wait) = c.limiter().blocked(from, now) {
        return sign_in_form(
            StatusCode::TOO_MANY_REQUESTS,
            Some((
                "Too many wrong tokens from your address.",
                &format!("Wait {} seconds, then try again.", wait.as_secs().max(1)),
            )),
        );
    }
    let Some(user) = super::admin_named(&c.users, form.token.trim()) else {
        c.limiter().failed(from, now);
        tracing::warn!(peer = %from, "A console sign-in with a wrong token was refused.");
        return sign_in_form(
            StatusCode::UNAUTHORIZED,
            Some((
                "That is not an admin token of this daemon.",
                "Check admin.token or your [[admin.user]] token in the configuration; after five wrong tries your address waits a minute.",
            )),
        );
    };
    c.limiter().succeeded(from);
    let (Some(id), Some(csrf)) = (crate::token::random(), crate::token::random()) else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The system's random source failed: no session can be made safely.",
            "Try again; if it persists, the machine needs attention.",
        );
    };
    c.sessions().open(&id, &user, csrf, now);
    tracing::info!(user = %user, peer = %from, "Console sign-in.");
    let cookie = session_cookie(Some(&id), c.tls);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_owned()),
        ],
    )
        .into_response()
}

async fn sign_out(State(c): State<Shared>, signed: Signed, Form(f): Form<Csrf>) -> Response {
    if let Some(r) = signed.forged(&f.csrf) {
        return r;
    }
    c.sessions().close(&signed.id);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session_cookie(None, c.tls)),
            (header::LOCATION, "/sign-in".to_owned()),
        ],
    )
        .into_response()
}

/// The session cookie (`None`: the one that ends it). Script cannot read it, no other site's
/// request carries it, and behind TLS it never travels in clear text. It lives as long as the
/// browser: the session's end is the daemon's to decide.
fn session_cookie(id: Option<&str>, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    match id {
        Some(id) => format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Render a signed-in page.
fn render(frame: &Frame, title: &str, refresh: Option<u32>, body: Markup) -> Response {
    page::page(frame, page::Shell { title, refresh }, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_behind_tls() {
        let plain = session_cookie(Some("abc"), false);
        assert_eq!(
            plain,
            "rostersync_session=abc; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie(Some("abc"), true).ends_with("; Secure"));
        assert!(session_cookie(None, false).contains("Max-Age=0"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; rostersync_session=xyz"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("xyz"));
        assert_eq!(cookie_value(&HeaderMap::new()), None);
    }
}
