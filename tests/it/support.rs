//! A test environment: a temporary directory, a configuration file, a store of the backend
//! under test, and the real `rostersync` binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rostersync::settings::Settings;
use sea_orm::{ConnectionTrait, Database};

pub const KEY: &str = "geheime-sleutel-99XX00-4711";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub store_url: String,
    pg: Option<(String, String)>,
}

pub fn postgres_admin_url() -> Option<String> {
    std::env::var("ROSTERSYNC_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
}

impl Env {
    pub async fn new() -> Env {
        Env::on(false).await
    }

    /// `sqlite`: a SQLite store even when the suite runs against PostgreSQL.
    pub async fn on(sqlite: bool) -> Env {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (store_url, pg) = match postgres_admin_url().filter(|_| !sqlite) {
            Some(admin) => {
                let name = format!(
                    "rs_test_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst)
                );
                let db = Database::connect(&admin)
                    .await
                    .expect("test PostgreSQL reachable");
                db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await
                    .expect("drop old test database");
                db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').expect("URL has a database").0;
                (format!("{base}/{name}"), Some((admin, name)))
            }
            None => (
                format!("sqlite://{}/rostersync.db?mode=rwc", dir.path().display()),
                None,
            ),
        };
        let env = Env {
            config: dir.path().join("rostersync.toml"),
            dir,
            store_url,
            pg,
        };
        env.write("klantcode", "KLANTCODE-1\n");
        env.write("master.key", &format!("{}\n", "ab".repeat(32)));
        env.write("k-99XX00", &format!("{KEY}\n"));
        env.write_config("");
        env
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).expect("write test file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod test file");
        }
        path
    }

    /// The base configuration (store, master key, one LAS named `esis`) plus `extra`.
    pub fn write_config(&self, extra: &str) {
        let d = self.dir.path().display();
        let text = format!(
            r#"[store]
url = "{url}"

[security]
master_key = {{ file = "{d}/master.key" }}

[[las]]
name = "esis"
kind = "uwlr"
endpoint = "https://example.rovictonline.nl/uwlr2.2.svc"
klantnaam = "Publisher"
klantcode = {{ file = "{d}/klantcode" }}
{extra}"#,
            url = self.store_url
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    pub fn settings(&self) -> Settings {
        Settings::load(Some(&self.config)).expect("test configuration is valid")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rostersync"));
        cmd.args(args)
            .env("ROSTERSYNC_CONFIG", &self.config)
            .env("RUST_LOG", "debug")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("STATE_DIRECTORY")
            .env_remove("JOURNAL_STREAM")
            .current_dir(self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("rostersync runs");
        Run::from(out)
    }

    pub fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Run::from(cmd.stdin(Stdio::null()).output().expect("rostersync runs"))
    }

    /// Start the binary without waiting for it; its output is piped.
    pub fn spawn(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = self.command(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rostersync starts")
    }

    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rostersync starts");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("rostersync finishes"))
    }

    /// Everything the store holds, as text, to search for what must never be there.
    pub async fn store_dump(&self) -> String {
        match &self.pg {
            None => {
                let mut all = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    let p = self.path(&format!("rostersync.db{suffix}"));
                    if let Ok(bytes) = std::fs::read(&p) {
                        all.extend(bytes);
                    }
                }
                String::from_utf8_lossy(&all).into_owned()
            }
            Some(_) => {
                let db = Database::connect(&self.store_url).await.expect("connect");
                let tables = db
                    .query_all_raw(sea_orm::Statement::from_string(
                        db.get_database_backend(),
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                    ))
                    .await
                    .expect("list tables");
                let mut all = String::new();
                for t in tables {
                    let name: String = t.try_get("", "tablename").expect("name");
                    let rows = db
                        .query_all_raw(sea_orm::Statement::from_string(
                            db.get_database_backend(),
                            format!("SELECT row_to_json(t)::text AS j FROM {name} t"),
                        ))
                        .await
                        .expect("dump table");
                    for r in rows {
                        let j: String = r.try_get("", "j").expect("json");
                        all.push_str(&j);
                    }
                }
                all
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop is synchronous; a short-lived runtime on its own thread drops the database.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(db) = Database::connect(&admin).await {
                    let _ = db
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// A failure with `code`, reported as exactly one `rostersync:` line and never a panic.
    #[track_caller]
    pub fn fails_with(&self, code: i32) -> String {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(!self.stderr.contains("backtrace"), "{}", self.stderr);
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("rostersync:"))
            .collect();
        assert_eq!(lines.len(), 1, "one error line expected:\n{}", self.stderr);
        lines[0].to_owned()
    }

    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn assert_no_secret(text: &str, what: &str) {
    assert!(
        !text.contains(KEY),
        "the school key leaked into {what}:\n{text}"
    );
    assert!(
        !text.contains("KLANTCODE-1"),
        "the klantcode leaked into {what}:\n{text}"
    );
}

/// An Env whose configuration points at an in-process simulated LAS: one `[[las]]` named
/// `sim` and a `[[school]]` with its key file per simulated school.
pub struct SimEnv {
    pub env: Env,
    pub server: connector_sim::SimServer,
    /// Whether the configuration links the schools to the simulated broker too.
    pub broker: std::cell::Cell<bool>,
    /// Whether the secondary schools are linked to the simulated portal too.
    pub portal: std::cell::Cell<bool>,
}

impl SimEnv {
    pub async fn start(world: connector_sim::World, extra: &str) -> SimEnv {
        SimEnv::start_on(world, extra, false).await
    }

    pub async fn start_on(world: connector_sim::World, extra: &str, sqlite: bool) -> SimEnv {
        let env = Env::on(sqlite).await;
        let server = connector_sim::SimServer::start(world, 0)
            .await
            .expect("simulator listens on loopback");
        let sim = SimEnv {
            env,
            server,
            broker: std::cell::Cell::new(false),
            portal: std::cell::Cell::new(false),
        };
        sim.configure(extra);
        sim
    }

    /// Rewrite the configuration (schools as the simulator has them now) plus `extra`.
    pub fn configure(&self, extra: &str) {
        let (klantnaam, klantcode, schools) = self
            .server
            .with_world(|w| (w.klantnaam.clone(), w.klantcode.clone(), w.access()));
        let broker = self.broker.get();
        let broker_block = if broker {
            let identity = self
                .server
                .pki
                .client_identity(connector_sim::ClientCert::Valid);
            let cert = self
                .env
                .write("broker.pem", &identity.expect("client identity"));
            let ca = self.env.write("broker-ca.pem", self.server.pki.ca_pem());
            format!(
                "\n[broker]\nkind = \"basispoort\"\nendpoint = \"{}\"\n\
                 client_certificate = {{ file = \"{}\" }}\nca_certificate = {{ file = \"{}\" }}\n",
                self.server.broker_url(),
                cert.display(),
                ca.display()
            )
        } else {
            String::new()
        };
        let code = self.env.write("sim-klantcode", &format!("{klantcode}\n"));
        let mut text = format!(
            "{extra}\n[[las]]\nname = \"sim\"\nkind = \"uwlr\"\nendpoint = \"{}\"\n\
             klantnaam = \"{klantnaam}\"\nklantcode = {{ file = \"{}\" }}\n",
            self.server.uwlr_url(),
            code.display()
        );
        text.push_str(&broker_block);
        let ca = self.env.write("sim-ca.pem", self.server.pki.ca_pem());
        for school in schools {
            let connector_sim::SchoolAccess {
                id,
                name,
                key,
                broker_id,
                portal_token: token,
                ..
            } = school;
            let path = self.env.write(&format!("key-{id}"), &format!("{key}\n"));
            text.push_str(&format!(
                "\n[[school]]\nid = \"{id}\"\nname = \"{name}\"\nlas = \"sim\"\nkey = {{ file = \"{}\" }}\n",
                path.display()
            ));
            if let (true, Some(b)) = (broker, broker_id) {
                text.push_str(&format!("broker_id = {b}\n"));
            }
            if let (true, Some(t)) = (self.portal.get(), token) {
                let token = self.env.write(&format!("portal-{id}"), &format!("{t}\n"));
                text.push_str(&format!(
                    "zermelo = {{ portal = \"{}\", token = {{ file = \"{}\" }}, ca_certificate = {{ file = \"{}\" }} }}\n",
                    self.server.portal_url(&id),
                    token.display(),
                    ca.display()
                ));
            }
        }
        self.env.write_config(&text);
    }

    /// A simulator whose schools are linked to its broker and (secondary schools) its
    /// portal as asked, and the migrated store.
    pub async fn start_linked(
        world: connector_sim::World,
        broker: bool,
        portal: bool,
    ) -> (SimEnv, rostersync::store::Store) {
        let sim = SimEnv::start(world, "").await;
        sim.broker.set(broker);
        sim.portal.set(portal);
        sim.configure("");
        let store = sim.store().await;
        (sim, store)
    }

    pub async fn store(&self) -> rostersync::store::Store {
        let store = rostersync::store::Store::open(
            &self.env.settings().store,
            rostersync::store::OpenMode::Create,
        )
        .await
        .expect("store opens");
        store.migrate().await.expect("store migrates");
        store
    }

    /// One cycle in this process, as `rostersync sync` runs it.
    pub async fn sync(
        &self,
        store: &rostersync::store::Store,
        allow_removals: bool,
    ) -> rostersync::sync::cycle::CycleReport {
        self.sync_on(store, allow_removals, rostersync::sync::run::today())
            .await
    }

    /// One cycle as if it were `today` (which school year is live, whether next year is
    /// asked for).
    pub async fn sync_on(
        &self,
        store: &rostersync::store::Store,
        allow_removals: bool,
        today: chrono::NaiveDate,
    ) -> rostersync::sync::cycle::CycleReport {
        rostersync::sync::cycle::run(
            store,
            &self.env.settings(),
            &rostersync::sync::cycle::CycleOptions {
                only: None,
                run: rostersync::sync::run::RunOptions {
                    trigger: "test".into(),
                    dry_run: false,
                    allow_removals,
                    today,
                },
            },
            |_, _, _| {},
        )
        .await
        .expect("the cycle runs")
    }
}

/// The first row of `sql`, if any.
async fn first_row(store: &rostersync::store::Store, sql: &str) -> Option<sea_orm::QueryResult> {
    store
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            store.backend(),
            sql.to_owned(),
        ))
        .await
        .expect("query")
}

/// The number the query `sql` counts.
pub async fn count(store: &rostersync::store::Store, sql: &str) -> i64 {
    first_row(store, sql)
        .await
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a count")
}

/// The first column of the first row of `sql`, as text.
pub async fn one(store: &rostersync::store::Store, sql: &str) -> Option<String> {
    // A column that is no text is the test's mistake: said, not read as "no value".
    first_row(store, sql).await.and_then(|r| {
        r.try_get_by_index::<Option<String>>(0)
            .unwrap_or_else(|e| panic!("{sql}: not a text column: {e:?}"))
    })
}

/// Run an update that sets a timestamp (to pretend time passed): `{at}` in `sql` stands for
/// `at`, bound the way each backend wants it.
pub async fn set_time(
    store: &rostersync::store::Store,
    sql: &str,
    at: chrono::DateTime<chrono::Utc>,
) {
    let on_postgres = "CAST($1 AS timestamptz)";
    set_bound(store, sql, on_postgres, at.to_rfc3339().into()).await
}

/// Like `set_time`, for the moments of roster records (persons, groups, memberships, grants,
/// the journal), which the store keeps as microseconds (`rostersync::store::Stamp`).
pub async fn set_moment(
    store: &rostersync::store::Store,
    sql: &str,
    at: chrono::DateTime<chrono::Utc>,
) {
    set_bound(store, sql, "$1", rostersync::store::Stamp::from(at).into()).await
}

/// Run `sql` with every `{at}` bound to `value` (`on_postgres` there, `?1` on SQLite).
async fn set_bound(
    store: &rostersync::store::Store,
    sql: &str,
    on_postgres: &str,
    value: sea_orm::Value,
) {
    let placeholder = match store.backend() {
        sea_orm::DbBackend::Postgres => on_postgres,
        _ => "?1",
    };
    store
        .writer()
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            store.backend(),
            sql.replace("{at}", placeholder),
            [value],
        ))
        .await
        .expect("set a moment");
}

/// A daemon process; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(sim: &SimEnv, name: &str, vars: &[(&str, &str)]) -> Daemon {
        let log = sim.env.path(&format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rostersync"));
        cmd.arg("run")
            .env("ROSTERSYNC_CONFIG", &sim.env.config)
            .env("RUST_LOG", "info")
            // Today's slot is past and the schools are not spread: whatever the time of day
            // the tests run, a cycle that is due runs now.
            .env("ROSTERSYNC__SCHEDULE__DAILY", "00:00")
            .env("ROSTERSYNC__SCHEDULE__WINDOW_MINUTES", "0")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUNTIME_DIRECTORY")
            .current_dir(sim.env.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().expect("daemon starts"),
            log,
        }
    }

    /// Wait until it says it is running (registered, ticker and socket up).
    pub async fn running(&self) {
        let started = Instant::now();
        while !self.log().contains("rostersync is running.") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the daemon did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until its log says `what`.
    pub async fn said(&self, what: &str) {
        let started = Instant::now();
        while !self.log().contains(what) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the daemon never said {what:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGTERM, and the exit code once it has stopped.
    pub async fn stop(mut self) -> i32 {
        self.signal("-TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let code = status.code().unwrap_or(-1);
                if code != 0 {
                    eprintln!(
                        "daemon {} exited with {code}:\n{}",
                        self.log.display(),
                        self.log()
                    );
                }
                return code;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the daemon did not stop:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The databases on the PostgreSQL server `admin` whose names start with `prefix`.
pub async fn postgres_databases(admin: &str, prefix: &str) -> Vec<String> {
    let db = Database::connect(admin)
        .await
        .expect("PostgreSQL reachable");
    db.query_all_raw(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        format!("SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'"),
    ))
    .await
    .expect("databases")
    .iter()
    .map(|r| r.try_get_by_index::<String>(0).expect("name"))
    .collect()
}
