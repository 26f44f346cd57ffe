//! The admin console in a real browser: Chromium through its WebDriver (chromium-driver),
//! against a real daemon on loopback with the simulated LAS. Sign in, a frozen school at the
//! top with its reason, resync it and watch the run finish, approve held removals (and see
//! them stay removed in `export`), a teacher's groups with reasons; then over plain HTTP: a
//! wrong token refused and limited, a form without its CSRF token refused, the cookie's flags.
//!
//! Without `chromedriver` on PATH the browser part is skipped with a note, unless
//! `ROSTERSYNC_REQUIRE_BROWSER=1` (CI sets it) makes that a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connector_sim::{SchoolKind, World};
use fantoccini::{Client, ClientBuilder, Locator};
use rostersync::store::Store;

use crate::support::{Daemon, SimEnv, count};

const ADMIN_TOKEN: &str = "console-admin-token-0123456789";
const ANNA_TOKEN: &str = "console-anna-token-9876543210";
const HELD: &str = "10XA00";
const FROZEN: &str = "11XA00";
const CALM: &str = "12XA00";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Where the screenshots go: `target/console-screenshots/`.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Chromium's WebDriver on a port of its own; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

async fn driver() -> Option<Driver> {
    let Some(bin) = which("chromedriver") else {
        assert!(
            std::env::var_os("ROSTERSYNC_REQUIRE_BROWSER").is_none(),
            "ROSTERSYNC_REQUIRE_BROWSER is set but chromedriver is not on PATH \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("chromedriver is not on PATH: the console's browser test is skipped");
        return None;
    };
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromedriver did not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(Driver { child, url })
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    // Root (CI) must run Chromium without its sandbox; the flag is harmless otherwise.
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ];
    let mut opts = serde_json::json!({ "args": args });
    if let Some(bin) = which("chromium") {
        opts["binary"] = serde_json::json!(bin);
    }
    caps.insert("goog:chromeOptions".into(), opts);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

fn world() -> World {
    let mut w = World::new(33, rostersync::sync::run::today());
    for id in [HELD, FROZEN, CALM] {
        w.add_school(id.parse().expect("id"), SchoolKind::Primary, 60);
    }
    w
}

async fn until(store: &Store, sql: &str, n: i64, daemon: &Daemon) {
    let started = Instant::now();
    while count(store, sql).await < n {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "waited for {sql} >= {n}:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A daemon with the console on a loopback port, its first cycle done, then one school
/// holding removals and one frozen.
async fn console_daemon() -> (SimEnv, Store, Daemon, String) {
    let sim = SimEnv::start(world(), "").await;
    let port = free_port();
    let admin_token = sim.env.write("admin-token", &format!("{ADMIN_TOKEN}\n"));
    let anna_token = sim.env.write("anna-token", &format!("{ANNA_TOKEN}\n"));
    let admin = format!(
        "[admin]\nsocket = \"{}\"\nlisten = \"127.0.0.1:{port}\"\ntoken = {{ file = \"{}\" }}\n\
         [[admin.user]]\nname = \"anna\"\ntoken = {{ file = \"{}\" }}\n",
        sim.env.path("admin.sock").display(),
        admin_token.display(),
        anna_token.display()
    );
    sim.configure(&admin);
    let store = sim.store().await;
    let daemon = Daemon::start(&sim, "console", &[]);
    daemon.running().await;
    until(
        &store,
        "SELECT COUNT(*) FROM sync_run WHERE outcome IS NOT NULL",
        3,
        &daemon,
    )
    .await;
    sim.server.with_world(|w| {
        w.lose_pupils(&HELD.parse().expect("id"), 0.15);
        w.lose_pupils(&FROZEN.parse().expect("id"), 0.7);
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for school in [HELD, FROZEN] {
        // The admin API on TCP takes a named admin's token, and says who asked.
        let r = http
            .post(format!("{base}/schools/{school}/resync"))
            .bearer_auth(ANNA_TOKEN)
            .send()
            .await
            .expect("resync asked");
        assert_eq!(r.status(), 202, "{}", daemon.log());
    }
    until(
        &store,
        "SELECT COUNT(*) FROM sync_run WHERE outcome IS NOT NULL",
        5,
        &daemon,
    )
    .await;
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM sync_job WHERE requested_by = 'anna (admin API)'"
        )
        .await,
        2
    );
    (sim, store, daemon, base)
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(name), png).expect("screenshot written");
}

/// Click `e` and wait until the page it loads has replaced this one (the old page's root
/// goes stale), so what is read next is the new page.
async fn click_through(c: &Client, e: fantoccini::elements::Element) {
    let old = c.find(Locator::Css("html")).await.expect("a page");
    e.click().await.expect("clicked");
    let started = Instant::now();
    while old.tag_name().await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the click loaded no page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/")).await.expect("console");
    assert!(
        c.current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/sign-in")
    );
    c.find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("typed");
    let button = c
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("button");
    click_through(c, button).await;
}

/// Press the button of the form that POSTs to `action`.
async fn press(c: &Client, action: &str) {
    let button = c
        .find(Locator::Css(&format!("form[action='{action}'] button")))
        .await
        .unwrap_or_else(|e| panic!("no button for {action}: {e}"));
    click_through(c, button).await;
}

/// Follow the resync's page (it reloads itself) until the job is closed.
async fn job_closes(c: &Client) -> String {
    let started = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css("#job")).await
            && let Ok(Some(state)) = e.attr("data-state").await
            && (state == "done" || state == "failed")
        {
            return state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the resync did not finish"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn in_the_browser(c: &Client, base: &str, sim: &SimEnv, daemon: &Daemon) {
    // A wrong token is refused, saying what to do.
    sign_in(c, base, "not-the-token").await;
    assert!(
        text(c, "main").await.contains("not an admin token"),
        "{}",
        daemon.log()
    );
    // The right one: the schools, problems first, the frozen school on top with its reason.
    sign_in(c, base, ANNA_TOKEN).await;
    let Ok(first) = c.find(Locator::Css("#schools tbody tr")).await else {
        panic!("no school row on {}", c.source().await.expect("page"));
    };
    assert_eq!(
        first.attr("data-school").await.expect("attr").as_deref(),
        Some(FROZEN)
    );
    let row = first.text().await.expect("text");
    assert!(row.contains("frozen:"), "{row}");
    assert!(text(c, "header").await.contains("anna"));
    shot(c, "schools.png").await;
    let cookie = c
        .get_named_cookie("rostersync_session")
        .await
        .expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_ne!(
        cookie.secure(),
        Some(true),
        "plain HTTP on loopback: not Secure"
    );

    // Open it and resync now: the page follows the run until it ends.
    let link = first.find(Locator::Css("a")).await.expect("link");
    click_through(c, link).await;
    assert!(text(c, "h1").await.contains(FROZEN));
    press(c, &format!("/school/{FROZEN}/resync")).await;
    job_closes(c).await;
    let outcome = text(c, "#outcome").await;
    assert!(
        outcome.contains("untrusted") || outcome.contains("frozen"),
        "{outcome}"
    );

    // The school with held removals: approve them.
    c.goto(&format!("{base}/school/{HELD}"))
        .await
        .expect("school page");
    let held = text(c, "#held").await;
    assert!(held.contains("pupil "), "{held}");
    shot(c, "school.png").await;
    let run = count_held_run(c).await;
    press(c, &format!("/run/{run}/approve")).await;
    let notice = text(c, ".notice").await;
    assert!(notice.contains("9 pupil(s)"), "{notice}");
    let export = sim.env.run(&["export", "--school", HELD]);
    let export: serde_json::Value = serde_json::from_str(&export.ok().stdout).expect("JSON");
    assert_eq!(export["pupils"].as_array().expect("pupils").len(), 51);

    // A teacher: the groups they see, with the reason.
    let teacher = export["staff"]
        .as_array()
        .expect("staff")
        .iter()
        .find(|s| !s["groups"].as_array().expect("groups").is_empty())
        .expect("a teacher with a group")
        .clone();
    c.goto(&format!(
        "{base}/person/{}",
        teacher["id"].as_str().expect("id")
    ))
    .await
    .expect("person page");
    let sees = text(c, "#sees").await;
    assert!(sees.contains("sees"), "{sees}");
    let table = text(c, "#permissions").await;
    let group = teacher["groups"][0].as_str().expect("group");
    assert!(table.contains(group), "{table}");
    assert!(table.contains("teacher"), "{table}");
    // Can they see a pupil of that group? Yes, and why.
    let pupil = export["pupils"]
        .as_array()
        .expect("pupils")
        .iter()
        .find(|p| p["group"].as_str() == Some(group))
        .expect("a pupil in the group");
    c.find(Locator::Css("#can"))
        .await
        .expect("the can box")
        .send_keys(pupil["id"].as_str().expect("id"))
        .await
        .expect("typed");
    let ask = c
        .find(Locator::Css("form[action^='/person/'] button"))
        .await
        .expect("ask");
    click_through(c, ask).await;
    let answer = text(c, "#answer").await;
    assert!(answer.contains("yes"), "{answer}");
    shot(c, "person.png").await;
    // The connections, and the list filtered by state.
    c.goto(&format!("{base}/connections"))
        .await
        .expect("connections");
    let conns = text(c, "#connections").await;
    assert!(
        conns.contains("LAS (UWLR)") && conns.contains("sim"),
        "{conns}"
    );
    c.goto(&format!("{base}/?state=frozen"))
        .await
        .expect("filtered");
    let rows = c
        .find_all(Locator::Css("#schools tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
}

/// The run whose held removals the school page offers to approve.
async fn count_held_run(c: &Client) -> i64 {
    let form = c
        .find(Locator::Css("form[action$='/approve']"))
        .await
        .expect("an approve form");
    let action = form.attr("action").await.expect("attr").expect("action");
    action
        .trim_start_matches("/run/")
        .trim_end_matches("/approve")
        .parse()
        .expect("run id")
}

/// Sign in over plain HTTP; the session cookie and the page's CSRF token.
async fn http_session(http: &reqwest::Client, base: &str, token: &str) -> (String, String) {
    let r = http
        .post(format!("{base}/sign-in"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("sign-in");
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let cookie = set.split(';').next().expect("cookie").to_owned();
    let page = http
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    let headers = page.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    let body = page.text().await.expect("body");
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF field")
        .to_owned();
    (cookie, csrf)
}

async fn over_http(base: &str, store: &Store, daemon: &Daemon) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (cookie, csrf) = http_session(&http, base, ADMIN_TOKEN).await;
    let jobs = "SELECT COUNT(*) FROM sync_job WHERE school_id = '12XA00'";
    let before = count(store, jobs).await;
    // A form without the session's CSRF token, or with another's, changes nothing.
    let (_, other_csrf) = http_session(&http, base, ANNA_TOKEN).await;
    for form in [
        vec![],
        vec![("csrf", "forged")],
        vec![("csrf", other_csrf.as_str())],
    ] {
        let r = http
            .post(format!("{base}/school/{CALM}/resync"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 403, "{form:?}");
    }
    // Without a session at all, too.
    let r = http
        .post(format!("{base}/school/{CALM}/resync"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(count(store, jobs).await, before);
    // With it, the resync is asked in the admin's name.
    let r = http
        .post(format!("{base}/school/{CALM}/resync"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM sync_job WHERE requested_by = 'admin (console)'"
        )
        .await,
        1
    );
    // Five wrong tokens, and the address waits, even with the right one.
    for _ in 0..5 {
        let r = http
            .post(format!("{base}/sign-in"))
            .form(&[("token", "guess-0000")])
            .send()
            .await
            .expect("sign-in");
        assert_eq!(r.status(), 401);
    }
    let r = http
        .post(format!("{base}/sign-in"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .expect("sign-in");
    assert_eq!(r.status(), 429);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("Too many wrong tokens")
    );
    let log = daemon.log();
    assert!(
        log.contains("A console sign-in with a wrong token was refused."),
        "{log}"
    );
    for secret in ["guess-0000", "not-the-token", ADMIN_TOKEN, ANNA_TOKEN] {
        assert!(!log.contains(secret), "a token reached the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_browser_and_its_defences() {
    connector_api::http::ensure_crypto_provider();
    let (sim, store, daemon, base) = console_daemon().await;
    if let Some(d) = driver().await {
        let c = browser(&d).await;
        in_the_browser(&c, &base, &sim, &daemon).await;
        c.close().await.expect("browser closes");
    }
    over_http(&base, &store, &daemon).await;
    // A resync asked for in the browser may still be running: stop the daemon first, so the
    // list and the per-school query below read the same store.
    assert_eq!(daemon.stop().await, 0);
    // The school page's own query says what the list says, for each school.
    let all = rostersync::store::status::list(store.db())
        .await
        .expect("list");
    for s in &all {
        let one = rostersync::store::status::of(store.db(), &s.id)
            .await
            .expect("of");
        assert_eq!(one.as_ref(), Some(s));
    }
    assert!(all.iter().any(|s| s.state == "frozen") && all.iter().all(|s| s.last_run.is_some()));
}
