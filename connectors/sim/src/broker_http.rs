//! The simulated broker's HTTP surface: Basispoort's REST v2 paths and JSON names, served
//! over mutual TLS (TLS 1.2, a client certificate from the test CA required).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::broker::View;
use crate::server::SharedWorld;
use crate::world::World;

pub fn router(world: SharedWorld) -> Router {
    let base = "/rest/v2/instellingen";
    Router::new()
        .route(base, get(institutions))
        .route(&format!("{base}/{{id}}"), get(overview))
        .route(&format!("{base}/{{id}}/details"), get(details))
        .route(&format!("{base}/{{id}}/groepen"), get(groups))
        .route(&format!("{base}/{{id}}/leerlingen"), get(pupils))
        .route(&format!("{base}/{{id}}/staf"), get(staff))
        .route(&format!("{base}/{{id}}/ref"), get(reference))
        .route(
            &format!("{base}/{{id}}/uitgever/synchronizationpermission"),
            get(permission),
        )
        .route(
            &format!("{base}/synchronizationpermission/toegekend/{{date}}"),
            get(granted),
        )
        .route(
            &format!("{base}/synchronizationpermission/ingetrokken/{{date}}"),
            get(revoked),
        )
        .with_state(world)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

fn lock(world: &SharedWorld) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `f` on the institution's view; 404 if unknown, 403 without sync permission when
/// `needs_consent`.
fn with_view(
    world: &SharedWorld,
    id: &str,
    needs_consent: bool,
    f: impl FnOnce(&View<'_>) -> Value,
) -> Response {
    let mut w = lock(world);
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "instellingId is not a number",
        );
    };
    let Some(inst) = w.broker.institutions.get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Instelling niet gevonden",
        );
    };
    if needs_consent && !inst.consent {
        return error(
            StatusCode::FORBIDDEN,
            "NO_SYNCHRONIZATION_PERMISSION",
            "De instelling heeft geen synchronisatietoestemming gegeven",
        );
    }
    let Some(live) = w.schools.get(&inst.school) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Instelling niet gevonden",
        );
    };
    let body = f(&View::new(inst, &live.school, live.changed_at));
    if needs_consent && let Some(i) = w.broker.institutions.get_mut(&id) {
        i.overviews_served += 1;
    }
    Json(body).into_response()
}

async fn institutions(State(world): State<SharedWorld>) -> Response {
    let w = lock(&world);
    let ids: Vec<i64> = w.broker.institutions.keys().copied().collect();
    Json(ids).into_response()
}

async fn overview(State(world): State<SharedWorld>, Path(id): Path<String>) -> Response {
    with_view(&world, &id, true, |v| v.overview())
}

async fn details(State(world): State<SharedWorld>, Path(id): Path<String>) -> Response {
    with_view(&world, &id, false, |v| v.details())
}

async fn groups(State(world): State<SharedWorld>, Path(id): Path<String>) -> Response {
    with_view(&world, &id, true, |v| {
        let (groepen, subgroepen) = v.groups();
        json!({ "groepen": groepen, "subgroepen": subgroepen, "metaResult": v.meta() })
    })
}

async fn pupils(State(world): State<SharedWorld>, Path(id): Path<String>) -> Response {
    with_view(
        &world,
        &id,
        true,
        |v| json!({ "leerlingen": v.pupils(), "metaResult": v.meta() }),
    )
}

async fn staff(State(world): State<SharedWorld>, Path(id): Path<String>) -> Response {
    with_view(
        &world,
        &id,
        true,
        |v| json!({ "medewerkers": v.staff(), "metaResult": v.meta() }),
    )
}

async fn reference(State(world): State<SharedWorld>, Path(id): Path<String>) -> Response {
    with_view(&world, &id, false, |v| {
        Value::String(format!("SIM{}", v.institution.id))
    })
}

#[derive(serde::Deserialize)]
struct PermissionQuery {
    #[serde(rename = "request-permission")]
    request_permission: Option<bool>,
}

async fn permission(
    State(world): State<SharedWorld>,
    Path(id): Path<String>,
    Query(q): Query<PermissionQuery>,
) -> Response {
    // Asking files a request with the school; the school decides later, so the answer is
    // the same either way.
    if q.request_permission == Some(true)
        && let Ok(n) = id.parse::<i64>()
    {
        let mut w = lock(&world);
        if w.broker.institutions.get(&n).is_some_and(|i| !i.consent) {
            w.broker.permission_requests.insert(n);
        }
    }
    with_view(
        &world,
        &id,
        false,
        |v| json!({ "hasSynchronizationPermission": v.institution.consent }),
    )
}

/// The day of a permission list, or the broker's answer to a malformed one.
fn by_date(d: &str, list: impl FnOnce(NaiveDate) -> Vec<i64>) -> Response {
    match d.parse() {
        Ok(d) => Json(list(d)).into_response(),
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "datum moet de vorm JJJJ-MM-DD hebben",
        ),
    }
}

async fn granted(State(world): State<SharedWorld>, Path(d): Path<String>) -> Response {
    by_date(&d, |d| lock(&world).broker.granted_on(d))
}

async fn revoked(State(world): State<SharedWorld>, Path(d): Path<String>) -> Response {
    by_date(&d, |d| lock(&world).broker.revoked_on(d))
}

/// TLS connections whose handshake completed, for `axum::serve`. Handshakes run in their
/// own tasks, so a slow or failing client never holds up the others.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = tcp.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let ready_tx = tx.clone();
                tokio::spawn(async move {
                    // A client without an acceptable certificate ends here, refused in the
                    // handshake like at the real broker.
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                    {
                        let _ = ready_tx.send((tls, peer)).await;
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(TlsListener { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
