//! The admin API: a unix socket in the runtime directory (file permissions are the access
//! control), and optionally TCP with a bearer token. `/healthz`, `/readyz`, `/metrics`
//! (Prometheus), `/schools`, `/runs`, `POST /schools/{id}/resync`, `POST /runs/{id}/undo`.
//! On TCP the same API takes any admin's token, and `/` is the admin console (`console`).

pub mod console;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use connector_api::SchoolId;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::RwLock;

use crate::settings::Settings;
use crate::store::{Store, queue, runs, status};

/// Where the admin socket goes: the configured path, else `$RUNTIME_DIRECTORY/admin.sock`,
/// else beside the store.
pub fn socket_path(settings: &Settings, store_home: &Path) -> PathBuf {
    if let Some(p) = &settings.admin.socket {
        return p.clone();
    }
    match std::env::var_os("RUNTIME_DIRECTORY") {
        // systemd may list several directories separated by ':'; the first is ours.
        Some(dirs) => {
            let dirs = dirs.to_string_lossy().into_owned();
            PathBuf::from(dirs.split(':').next().unwrap_or(".")).join("admin.sock")
        }
        None => store_home.join("admin.sock"),
    }
}

/// What the admin API works with. The daemon builds it; the API never sees the daemon.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub metrics: PrometheusHandle,
    /// Unix time of the scheduler's last tick (`/readyz`).
    pub last_tick: Arc<AtomicI64>,
    /// The configuration in force, reloaded on SIGHUP (an undo applies its rules).
    pub settings: Arc<RwLock<Arc<Settings>>>,
}

impl AdminState {
    fn ticking(&self) -> bool {
        ticked_lately(&self.last_tick)
    }

    async fn settings(&self) -> Arc<Settings> {
        self.settings.read().await.clone()
    }
}

/// The scheduler ticked within the last three minutes (it ticks once a minute).
pub fn ticked_lately(last_tick: &AtomicI64) -> bool {
    chrono::Utc::now().timestamp() - last_tick.load(Ordering::Relaxed) < 180
}

type Shared = AdminState;

fn router(d: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/schools", get(schools))
        .route("/runs", get(list_runs))
        .route("/schools/{id}/resync", post(resync))
        .route("/runs/{id}/undo", post(undo))
        .with_state(d)
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn readyz(State(d): State<Shared>) -> Response {
    if let Err(e) = d.store.db().ping().await {
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store is unreachable: {}", d.store.db_error(e)),
        );
    }
    if !d.ticking() {
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler has not ticked for three minutes".into(),
        );
    }
    "ready\n".into_response()
}

async fn metrics(State(d): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        d.metrics.render(),
    )
        .into_response()
}

async fn schools(State(d): State<Shared>) -> Response {
    match status::list(d.store.db()).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            d.store.db_error(e).to_string(),
        ),
    }
}

async fn list_runs(State(d): State<Shared>) -> Response {
    match runs::list(d.store.db(), None, 100).await {
        Ok(list) => Json(
            list.into_iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "school": r.school_id, "trigger": r.trigger,
                        "started_at": r.started_at, "finished_at": r.finished_at,
                        "outcome": runs::shown_outcome(&r), "error_class": r.error_class,
                        "message": r.message,
                        "counts": serde_json::from_str::<serde_json::Value>(&r.counts).unwrap_or_default(),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            d.store.db_error(e).to_string(),
        ),
    }
}

async fn resync(
    State(d): State<Shared>,
    op: Option<axum::Extension<Operator>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let id = match id.parse::<SchoolId>() {
        Ok(id) => id.to_string(),
        Err(e) => return failure(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match crate::store::schools::row(&d.store, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return failure(StatusCode::NOT_FOUND, format!("school {id} is not linked"));
        }
        Err(e) => return failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
    match queue::enqueue(
        d.store.writer(),
        &id,
        "manual",
        chrono::Utc::now(),
        Some(&asked_by(op.as_deref())),
    )
    .await
    {
        Ok(q) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "school": id, "job": q.job, "joined": q.joined })),
        )
            .into_response(),
        Err(e) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            d.store.db_error(e).to_string(),
        ),
    }
}

/// How an undo is asked for over HTTP: `?dry_run=true`, `?force=true`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct UndoQuery {
    dry_run: bool,
    force: bool,
}

/// `POST /runs/{id}/undo`: the same as `rostersync undo --run ID`; 200 with the report,
/// 404 for an unknown run, 409 when it is refused (later changes, purged records, nothing
/// to undo), with the reason.
async fn undo(
    State(d): State<Shared>,
    op: Option<axum::Extension<Operator>>,
    UrlPath(id): UrlPath<i64>,
    axum::extract::Query(q): axum::extract::Query<UndoQuery>,
) -> Response {
    use crate::sync::undo::{UndoError, UndoRequest};
    let settings = d.settings().await;
    let req = UndoRequest {
        run: id,
        dry_run: q.dry_run,
        force: q.force,
        by: asked_by(op.as_deref()),
    };
    match crate::sync::undo::undo(
        &d.store,
        &crate::sync::run::Rules::from_settings(&settings),
        &req,
    )
    .await
    {
        Ok(report) => Json(report).into_response(),
        Err(e @ UndoError::NoSuchRun(_)) => failure(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ UndoError::Store(_)) => failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => failure(StatusCode::CONFLICT, e.to_string()),
    }
}

/// Who asked, on the TCP listener: the admin whose token it was.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

/// Who asked, for the job table and the journal: the admin on TCP, else the socket's user.
fn asked_by(op: Option<&Operator>) -> String {
    match op {
        Some(Operator(name)) => format!("{name} (admin API)"),
        None => "admin-api".into(),
    }
}

/// The admin whose token `given` is. Every token is compared, in constant time, whoever
/// matches: the answer's timing says nothing about which or how close. An empty token is
/// nobody's.
pub(crate) fn admin_named(users: &[(String, SecretString)], given: &str) -> Option<String> {
    let mut found = None;
    for (name, token) in users {
        if crate::token::same_secret(given.as_bytes(), token.expose_secret().as_bytes())
            && !given.is_empty()
            && found.is_none()
        {
            found = Some(name.clone());
        }
    }
    found
}

/// The TCP listener's guard: every request carries `Authorization: Bearer <token>` of one of
/// the admins.
async fn bearer(
    State(users): State<Arc<Vec<(String, SecretString)>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match admin_named(&users, given) {
        Some(name) => {
            req.extensions_mut().insert(Operator(name));
            next.run(req).await
        }
        None => failure(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (admin.token or an [[admin.user]] token)".into(),
        ),
    }
}

/// The admin socket this instance created.
pub struct AdminSocket {
    pub path: PathBuf,
    inode: u64,
}

impl AdminSocket {
    /// Remove the socket on stop, unless another instance has put its own there since.
    pub fn remove(&self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Start the daemon's admin listeners.
pub async fn serve(d: Shared, settings: &Settings) -> anyhow::Result<AdminSocket> {
    let home = d.store.home().to_owned();
    let console = match settings.admin.listen {
        Some(_) => {
            let users = admin_users(settings)?;
            let idle =
                std::time::Duration::from_secs(u64::from(settings.admin.session_minutes) * 60);
            let tls = settings.admin.certificate.is_some();
            Some(console::router(Arc::new(console::Console::new(
                d.clone(),
                users,
                idle,
                tls,
            ))))
        }
        None => None,
    };
    listen(router(d), console, settings, &home).await
}

/// Every admin's name and token, read.
fn admin_users(settings: &Settings) -> anyhow::Result<Vec<(String, SecretString)>> {
    settings
        .admin
        .users()
        .into_iter()
        .map(|(name, token)| {
            let t = token
                .load_string()
                .with_context(|| format!("the token of admin '{name}' cannot be read"))?;
            Ok((
                name.to_owned(),
                SecretString::from(t.expose_secret().trim().to_owned()),
            ))
        })
        .collect()
}

/// What `rostersync serve` (the API without scheduler or workers) answers on the admin
/// socket: `/healthz`, `/readyz` (the store answers) and `/metrics` (the API's requests).
pub fn replica_router(store: crate::store::Store, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let store = store.clone();
                async move {
                    match store.db().ping().await {
                        Ok(()) => "ready\n".into_response(),
                        Err(e) => failure(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("the store is unreachable: {}", store.db_error(e)),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
}

/// Start the listeners for `app`: the unix socket, and TCP when configured (TLS when
/// configured). Both are served by [`crate::server`], with its timeouts and limits.
pub async fn listen(
    app: Router,
    console: Option<Router>,
    settings: &Settings,
    home: &Path,
) -> anyhow::Result<AdminSocket> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = socket_path(settings, home);
    take_stale_socket(&path)?;
    let listener = crate::server::bind_private_socket(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    let inode = std::fs::metadata(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .ino();
    let limits = crate::server::Limits::default();
    crate::server::spawn(
        "admin-socket",
        crate::server::Bound::Unix(listener),
        app.clone(),
        limits,
    );
    if let Some(addr) = settings.admin.listen {
        let users = admin_users(settings)?;
        let tls = admin_tls(settings)?;
        if tls.is_none() && !crate::server::is_loopback(&addr) {
            tracing::warn!(%addr, "The admin TCP listener serves plain HTTP beyond this machine (admin.insecure_listen): its token crosses the network in clear text.");
        }
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let secure = tls.is_some();
        let api = app.layer(middleware::from_fn_with_state(Arc::new(users), bearer));
        let app = match console {
            Some(console) => console.merge(api),
            None => api,
        };
        crate::server::spawn(
            "admin-tcp",
            crate::server::Bound::Tcp(tcp, tls),
            app,
            limits,
        );
        tracing::info!(%addr, tls = secure, "Admin API and console listening on TCP (admin token required).");
    }
    Ok(AdminSocket { path, inode })
}

/// Make room for our socket: a socket nobody answers on is a leftover of a killed run and
/// goes; a live one belongs to another instance, and anything that is not a socket is not
/// ours to delete.
fn take_stale_socket(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "{} exists and is not a socket; rostersync does not delete it. Remove it yourself \
             or set admin.socket to another path",
            path.display()
        );
    }
    // Never take a live instance's socket: its admins would talk to us instead.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!(
            "another rostersync instance is listening on {}; give each instance on this \
             machine its own admin.socket (or run each as its own systemd unit)",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("cannot remove the old socket {}", path.display()))
}

/// The admin TCP listener's TLS, when `[admin] certificate` and `private_key` are set.
fn admin_tls(settings: &Settings) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let (Some(cert), Some(key)) = (&settings.admin.certificate, &settings.admin.private_key) else {
        return Ok(None);
    };
    let cert = cert
        .load_bytes()
        .context("admin.certificate cannot be read")?;
    let key = key
        .load_bytes()
        .context("admin.private_key cannot be read")?;
    crate::server::tls_acceptor(cert.expose_secret(), key.expose_secret())
        .map(Some)
        .map_err(|e| anyhow::anyhow!("admin TLS: {e}"))
}
