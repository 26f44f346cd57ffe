//! The simulator's HTTP server on loopback: the UWLR endpoint at `/uwlr`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::broker_http::{self, TlsListener};
use crate::pki::Pki;
use crate::portal_http;
use crate::uwlr::{self, Operation};
use crate::world::{Fault, World};

pub type SharedWorld = Arc<Mutex<World>>;

/// A running simulator: the LAS on plain HTTP and the broker on mutual TLS, both on
/// loopback. Dropping it stops both.
pub struct SimServer {
    pub addr: SocketAddr,
    pub broker_addr: SocketAddr,
    pub portal_addr: SocketAddr,
    /// The broker's test CA; it issues client identities for publishers.
    pub pki: Arc<Pki>,
    pub world: SharedWorld,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
}

impl SimServer {
    /// Serve `world` on 127.0.0.1: the LAS on `port` (0: any free port), the broker on any
    /// free port.
    pub async fn start(world: World, port: u16) -> std::io::Result<SimServer> {
        let world = Arc::new(Mutex::new(world));
        let app = Router::new()
            .route("/uwlr", post(uwlr_endpoint))
            .with_state(world.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let pki = Pki::generate().map_err(std::io::Error::other)?;
        let tls = pki.server_config().map_err(std::io::Error::other)?;
        let broker_tcp = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let broker_addr = broker_tcp.local_addr()?;
        let broker = TlsListener::new(broker_tcp, tls)?;
        let portal_tcp = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let portal_addr = portal_tcp.local_addr()?;
        let portal = TlsListener::new(
            portal_tcp,
            pki.server_config_without_client_auth()
                .map_err(std::io::Error::other)?,
        )?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped(rx.clone()))
                .into_future(),
        );
        tokio::spawn(
            axum::serve(broker, broker_http::router(world.clone()))
                .with_graceful_shutdown(stopped(rx.clone()))
                .into_future(),
        );
        tokio::spawn(
            axum::serve(portal, portal_http::router(world.clone()))
                .with_graceful_shutdown(stopped(rx))
                .into_future(),
        );
        Ok(SimServer {
            addr,
            broker_addr,
            portal_addr,
            pki: Arc::new(pki),
            world,
            shutdown: Some(tx),
        })
    }

    pub fn uwlr_url(&self) -> String {
        format!("http://{}/uwlr", self.addr)
    }

    /// A secondary school's portal API base, standing in for
    /// `https://{portal}.zportal.nl/api/v3/`.
    pub fn portal_url(&self, school: &connector_api::SchoolId) -> String {
        format!("https://{}/{school}/api/v3/", self.portal_addr)
    }

    /// The broker's base URL (REST paths start with `rest/v2/`).
    pub fn broker_url(&self) -> String {
        format!("https://{}/", self.broker_addr)
    }

    /// Run `f` with the world locked (set faults, advance days, read keys).
    pub fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// What one request gets, decided under the lock and served after it is released.
enum Reply {
    Xml(StatusCode, String),
    Unavailable(u64),
    Truncated(String),
}

async fn uwlr_endpoint(
    State(world): State<SharedWorld>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match uwlr::read_request(&body) {
        Ok(r) => r,
        Err(why) => {
            return xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                uwlr::fault("Client.OngeldigBericht", &why),
            );
        }
    };
    let (reply, delay) = {
        let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
        decide(&mut w, &req)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    match reply {
        Reply::Xml(status, body) => xml(status, body),
        Reply::Unavailable(secs) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, secs.to_string())],
            "Service tijdelijk niet beschikbaar",
        )
            .into_response(),
        Reply::Truncated(full) => {
            // Half the body, then the connection breaks: the client must not see data.
            let half = Bytes::from(full.into_bytes()).slice(..);
            let cut = half.len() / 2;
            // The first half goes out with the headers; a moment later the connection breaks.
            let first = half.slice(..cut);
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok(first), 1)),
                        1 => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            Some((Err(std::io::Error::other("simulated connection reset")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

fn decide(w: &mut World, req: &uwlr::Request) -> (Reply, Option<std::time::Duration>) {
    let id = match uwlr::authorize(w, req) {
        Ok(id) => id,
        Err((code, msg)) => {
            return (
                Reply::Xml(StatusCode::INTERNAL_SERVER_ERROR, uwlr::fault(&code, &msg)),
                None,
            );
        }
    };
    let asked: Option<connector_api::SchoolYear> =
        req.school_year.as_deref().and_then(|y| y.parse().ok());
    let which = w.answering(&id, asked);
    let Some(state) = w.schools.get_mut(&id) else {
        return (
            Reply::Xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                uwlr::fault("Client.AutorisatieOngeldig", "Onbekende school"),
            ),
            None,
        );
    };
    state.requests += 1;
    let op = op_of(req);
    let fault = match &mut state.fault {
        Some(plan) => {
            let f = plan.fault.clone();
            match plan.remaining.as_mut() {
                Some(0) => None,
                Some(n) => {
                    *n -= 1;
                    Some(f)
                }
                None => Some(f),
            }
        }
        None => None,
    };
    let mut delay = None;
    let data = || match state.as_answered(which) {
        Some(school) => uwlr::envelope(&uwlr::answer(&school, op, &version_of(req), &req.groups)),
        None => uwlr::envelope(&uwlr::empty_answer(op, "geengegevens")),
    };
    let reply = match fault {
        Some(Fault::Soap(code)) => Reply::Xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            uwlr::fault(&code, "Gesimuleerde fout"),
        ),
        Some(Fault::Unavailable { retry_after }) => Reply::Unavailable(retry_after),
        Some(Fault::Truncated) => Reply::Truncated(data()),
        Some(Fault::Malformed) => {
            let mut body = data();
            // Half of it, cut between characters (names carry accents: é is two bytes).
            body.truncate(body.floor_char_boundary(body.len() / 2));
            body.push_str("<leerling key=\"kapot\"></groep>");
            Reply::Xml(StatusCode::OK, body)
        }
        Some(Fault::NoData) => Reply::Xml(
            StatusCode::OK,
            uwlr::envelope(&uwlr::empty_answer(op, "geengegevens")),
        ),
        Some(Fault::Unchanged) => Reply::Xml(
            StatusCode::OK,
            uwlr::envelope(&uwlr::empty_answer(op, "geenwijzigingen")),
        ),
        Some(Fault::HostileKey) => {
            // As character references: the XML stays well-formed, the value does not.
            let attack = "&#27;[2J&#27;]0;pwned&#7;";
            let body = data().replacen("<leerling key=\"", &format!("<leerling key=\"{attack}"), 1);
            Reply::Xml(StatusCode::OK, body)
        }
        Some(Fault::HostileError) => Reply::Xml(
            StatusCode::BAD_GATEWAY,
            format!("{}upstream failed", crate::world::TERMINAL_ATTACK),
        ),
        Some(Fault::Slow(d)) => {
            delay = Some(d);
            Reply::Xml(StatusCode::OK, data())
        }
        // Next year not prepared: geengegevens, whatever "since" says.
        None if which == crate::world::Answering::NoData => Reply::Xml(StatusCode::OK, data()),
        None if uwlr::unchanged_since(req, state.changed_at) => Reply::Xml(
            StatusCode::OK,
            uwlr::envelope(&uwlr::empty_answer(op, "geenwijzigingen")),
        ),
        None => Reply::Xml(StatusCode::OK, data()),
    };
    (reply, delay)
}

fn op_of(req: &uwlr::Request) -> Operation {
    req.operation.unwrap_or(Operation::AllInOne)
}

fn version_of(req: &uwlr::Request) -> String {
    req.xsd_version.clone().unwrap_or_else(|| "2.2".into())
}
