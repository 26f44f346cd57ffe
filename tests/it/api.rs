//! The apps' API as an app uses it: `rostersync serve` on loopback against SQLite or
//! PostgreSQL, real HTTP, tokens, paging, filters, deltas over simulated days; every body
//! checked against the schemas of the official OneRoster 1.2 OpenAPI document.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use connector_sim::{SchoolKind, World};
use serde_json::{Value, json};

use crate::support::SimEnv;

pub(crate) const CORE: &str = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly";
pub(crate) const ROSTER: &str = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly";
const API: &str = "/ims/oneroster/rostering/v1p2";

/// The official document, loaded once, unmodified.
fn openapi() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../shared/fixtures/oneroster-1.2/onerosterv1p2rostersservice_openapi3_v1p0.json",
        );
        let text = std::fs::read_to_string(&path).expect("the OneRoster OpenAPI document");
        serde_json::from_str(&text).expect("valid JSON")
    })
}

/// `body` must validate against the document's schema `name` (its $refs resolved in the
/// document itself).
#[track_caller]
pub(crate) fn conforms(body: &Value, name: &str) {
    let mut schema = openapi().clone();
    schema["$ref"] = json!(format!("#/components/schemas/{name}"));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .expect("the document's schemas compile");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{body:#}");
}

/// `rostersync serve`, stopped when dropped; its log goes to `log`.
pub(crate) struct Serve {
    child: Child,
    base: String,
    root: String,
    log: std::path::PathBuf,
}

impl Serve {
    pub(crate) fn start(sim: &SimEnv) -> Serve {
        let log = sim.env.path("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rostersync"))
            .arg("serve")
            .env("ROSTERSYNC_CONFIG", &sim.env.config)
            .env("RUST_LOG", "info")
            .current_dir(sim.env.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("serve says where it listens");
        let url = line
            .trim()
            .strip_prefix("OneRoster API listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        let root = url.trim_end_matches(API).to_owned();
        Serve {
            child,
            base: url,
            root,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn world(days_start: chrono::NaiveDate) -> World {
    let mut w = World::new(61, days_start);
    w.add_school("10XA00".parse().expect("id"), SchoolKind::Primary, 120);
    w.add_school("11XA00".parse().expect("id"), SchoolKind::Primary, 40);
    w
}

/// A simulator with both schools linked to the broker (so grants are rich), the API
/// configured with two clients: `lp` sees everything, `one` only school 11XA00.
async fn start(token_seconds: u64) -> (SimEnv, rostersync::store::Store) {
    let (sim, store) =
        SimEnv::start_linked(world(rostersync::sync::run::today()), true, false).await;
    let lp = sim.env.write("lp-secret", "lp-s3cret\n");
    let one = sim.env.write("one-secret", "one-s3cret\n");
    sim.configure(&format!(
        "[api]\nlisten = \"127.0.0.1:0\"\ntoken_seconds = {token_seconds}\n\n\
         [[api.client]]\nid = \"lp\"\nsecret = {{ file = \"{}\" }}\nschools = [\"*\"]\n\
         scopes = [\"{CORE}\", \"{ROSTER}\"]\n\n\
         [[api.client]]\nid = \"one\"\nsecret = {{ file = \"{}\" }}\nschools = [\"11XA00\"]\n\
         scopes = [\"{CORE}\"]\n\n[admin]\nsocket = \"{}\"\n",
        lp.display(),
        one.display(),
        sim.env.path("admin.sock").display()
    ));
    sim.env.run(&["migrate"]).ok();
    sim.sync(&store, true).await;
    (sim, store)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub(crate) async fn token(s: &Serve, id: &str, secret: &str) -> String {
    let r = http()
        .post(format!("{}/oauth/token", s.root))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["token_type"], "bearer");
    body["access_token"].as_str().expect("token").to_owned()
}

/// GET `path` (under the OneRoster base) with `token`: status, headers, body.
pub(crate) async fn get(
    s: &Serve,
    token: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else if path.starts_with("/rostersync") {
        format!("{}{path}", s.root)
    } else {
        format!("{}{path}", s.base)
    };
    let r = http()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// The `rel="next"` target of a `Link` header's value.
fn next_url(links: &str) -> Option<String> {
    links
        .split(", ")
        .find(|l| l.ends_with("rel=\"next\""))
        .and_then(|l| l.split_once('>'))
        .map(|(u, _)| u.trim_start_matches('<').to_owned())
}

/// Every record of a collection, following `Link: rel="next"` to the end; checks
/// `X-Total-Count` and each page against `schema`.
pub(crate) async fn all(
    s: &Serve,
    token: &str,
    path: &str,
    name: &str,
    schema: &str,
) -> Vec<Value> {
    let mut url = format!("{}{path}", s.base);
    let mut out = Vec::new();
    let mut total = None;
    loop {
        let (status, headers, body) = get(s, token, &url).await;
        assert_eq!(status, 200, "{url}: {body}");
        conforms(&body, schema);
        let count: u64 = headers["x-total-count"]
            .to_str()
            .expect("text")
            .parse()
            .expect("a number");
        assert!(total.is_none_or(|t| t == count), "the total moved");
        total = Some(count);
        out.extend(body[name].as_array().expect("a list").iter().cloned());
        let links = headers
            .get("link")
            .map(|v| v.to_str().expect("text").to_owned())
            .unwrap_or_default();
        assert!(
            links.contains("rel=\"first\"") && links.contains("rel=\"last\""),
            "{links}"
        );
        match next_url(&links) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(
        out.len() as u64,
        total.unwrap_or(0),
        "{path}: every record once"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_issued_checked_and_refused() {
    let (sim, _store) = start(2).await;
    let s = Serve::start(&sim);
    // Form fields instead of HTTP Basic work too.
    let r = http()
        .post(format!("{}/oauth/token", s.root))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "lp"),
            ("client_secret", "lp-s3cret"),
            ("scope", CORE),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["scope"], CORE);
    assert!(body["expires_in"].as_u64().expect("seconds") > 0);
    let t = body["access_token"].as_str().expect("token").to_owned();
    let (status, _, body) = get(&s, &t, "/orgs").await;
    assert_eq!(status, 200, "{body}");
    conforms(&body, "OrgSetDType");
    // Missing and wrong tokens: 401 with the spec's status info.
    let (status, headers, body) = get(&s, "nonsense", "/users").await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    conforms(&body, "imsx_StatusInfoDType");
    let r = http()
        .get(format!("{}/users", s.base))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401, "no token at all");
    let body: Value = r.json().await.expect("JSON");
    conforms(&body, "imsx_StatusInfoDType");
    // A token only with core scope may not use a nested collection: 403.
    let orgs = all(&s, &t, "/orgs", "orgs", "OrgSetDType").await;
    let school = orgs[0]["sourcedId"].as_str().expect("sid").to_owned();
    let (status, _, body) = get(&s, &t, &format!("/schools/{school}/classes")).await;
    assert_eq!(status, 403, "{body}");
    conforms(&body, "imsx_StatusInfoDType");
    // Tokens expire.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get(&s, &t, "/orgs").await.0, 401);
    // A wrong secret is refused; five in a minute, and the address waits.
    for _ in 0..5 {
        let r = http()
            .post(format!("{}/oauth/token", s.root))
            .basic_auth("lp", Some("Wr0ng-guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401);
    }
    let r = http()
        .post(format!("{}/oauth/token", s.root))
        .basic_auth("lp", Some("lp-s3cret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Counted by route and status on the admin socket; failures logged without the secret.
    let (status, metrics) =
        crate::daemon::http(&sim.env.path("admin.sock"), "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "rostersync_api_requests_total{{route=\"{API}/orgs\",status=\"200\"}}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("rostersync_api_sign_in_failures_total 5"),
        "{metrics}"
    );
    let log = s.log();
    assert_eq!(log.matches("An API sign-in failed").count(), 5, "{log}");
    assert!(
        !log.contains("Wr0ng-guess") && !log.contains("s3cret"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_collection_pages_to_the_end_and_conforms() {
    let (sim, _store) = start(3600).await;
    let s = Serve::start(&sim);
    let t = token(&s, "lp", "lp-s3cret").await;
    let orgs = all(&s, &t, "/orgs?limit=1", "orgs", "OrgSetDType").await;
    assert_eq!(orgs.len(), 2);
    assert!(orgs.iter().any(|o| o["identifier"] == "10XA00"));
    let users = all(&s, &t, "/users?limit=37", "users", "UserSetDType").await;
    let students = all(&s, &t, "/students?limit=50", "users", "UserSetDType").await;
    let teachers = all(&s, &t, "/teachers", "users", "UserSetDType").await;
    assert_eq!(students.len(), 160);
    assert_eq!(users.len(), students.len() + teachers.len());
    let classes = all(&s, &t, "/classes?limit=7", "classes", "ClassSetDType").await;
    let enrollments = all(
        &s,
        &t,
        "/enrollments?limit=100",
        "enrollments",
        "EnrollmentSetDType",
    )
    .await;
    let sessions = all(
        &s,
        &t,
        "/academicSessions",
        "academicSessions",
        "AcademicSessionSetDType",
    )
    .await;
    let courses = all(&s, &t, "/courses", "courses", "CourseSetDType").await;
    assert!(!sessions.is_empty() && !courses.is_empty());
    all(
        &s,
        &t,
        "/terms",
        "academicSessions",
        "AcademicSessionSetDType",
    )
    .await;
    all(
        &s,
        &t,
        "/gradingPeriods",
        "academicSessions",
        "AcademicSessionSetDType",
    )
    .await;
    // Every pupil in its groups, every homeroom a class of a course and a term that exist.
    let class_ids: BTreeSet<&str> = classes
        .iter()
        .filter_map(|c| c["sourcedId"].as_str())
        .collect();
    let course_ids: BTreeSet<&str> = courses
        .iter()
        .filter_map(|c| c["sourcedId"].as_str())
        .collect();
    for c in &classes {
        assert!(course_ids.contains(c["course"]["sourcedId"].as_str().expect("course")));
    }
    for e in &enrollments {
        assert!(class_ids.contains(e["class"]["sourcedId"].as_str().expect("class")));
    }
    assert!(enrollments.iter().any(|e| e["role"] == "student"));
    assert!(
        enrollments
            .iter()
            .any(|e| e["role"] == "teacher" && e["primary"] == "true")
    );
    // One of each single record, and the nested collections.
    let pupil = &students[0];
    let sid = pupil["sourcedId"].as_str().expect("sid");
    for (path, schema) in [
        (format!("/users/{sid}"), "SingleUserDType"),
        (format!("/students/{sid}"), "SingleUserDType"),
        (
            format!(
                "/classes/{}",
                classes[0]["sourcedId"].as_str().expect("sid")
            ),
            "SingleClassDType",
        ),
        (
            format!(
                "/enrollments/{}",
                enrollments[0]["sourcedId"].as_str().expect("sid")
            ),
            "SingleEnrollmentDType",
        ),
        (
            format!("/orgs/{}", orgs[0]["sourcedId"].as_str().expect("sid")),
            "SingleOrgDType",
        ),
        (
            format!("/schools/{}", orgs[0]["sourcedId"].as_str().expect("sid")),
            "SingleOrgDType",
        ),
        (
            format!(
                "/courses/{}",
                courses[0]["sourcedId"].as_str().expect("sid")
            ),
            "SingleCourseDType",
        ),
        (
            format!(
                "/academicSessions/{}",
                sessions[0]["sourcedId"].as_str().expect("sid")
            ),
            "SingleAcademicSessionDType",
        ),
    ] {
        let (status, _, body) = get(&s, &t, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        conforms(&body, schema);
    }
    // A pupil is not a teacher: 404.
    assert_eq!(get(&s, &t, &format!("/teachers/{sid}")).await.0, 404);
    let homeroom = classes
        .iter()
        .find(|c| c["classType"] == "homeroom")
        .expect("homeroom");
    let class_sid = homeroom["sourcedId"].as_str().expect("sid");
    let school_sid = homeroom["school"]["sourcedId"].as_str().expect("school");
    for (path, name, schema) in [
        (
            format!("/classes/{class_sid}/students"),
            "users",
            "UserSetDType",
        ),
        (
            format!("/classes/{class_sid}/teachers"),
            "users",
            "UserSetDType",
        ),
        (
            format!("/schools/{school_sid}/classes"),
            "classes",
            "ClassSetDType",
        ),
        (
            format!("/schools/{school_sid}/students"),
            "users",
            "UserSetDType",
        ),
        (
            format!("/schools/{school_sid}/teachers"),
            "users",
            "UserSetDType",
        ),
        (
            format!("/schools/{school_sid}/enrollments"),
            "enrollments",
            "EnrollmentSetDType",
        ),
        (
            format!("/schools/{school_sid}/courses"),
            "courses",
            "CourseSetDType",
        ),
        (
            format!("/schools/{school_sid}/terms"),
            "academicSessions",
            "AcademicSessionSetDType",
        ),
        (
            format!("/schools/{school_sid}/classes/{class_sid}/students"),
            "users",
            "UserSetDType",
        ),
        (
            format!("/schools/{school_sid}/classes/{class_sid}/teachers"),
            "users",
            "UserSetDType",
        ),
        (
            format!("/schools/{school_sid}/classes/{class_sid}/enrollments"),
            "enrollments",
            "EnrollmentSetDType",
        ),
        (format!("/users/{sid}/classes"), "classes", "ClassSetDType"),
        (
            format!("/students/{sid}/classes"),
            "classes",
            "ClassSetDType",
        ),
        (
            format!(
                "/courses/{}/classes",
                homeroom["course"]["sourcedId"].as_str().expect("course")
            ),
            "classes",
            "ClassSetDType",
        ),
        (
            format!(
                "/terms/{}/classes",
                homeroom["terms"][0]["sourcedId"].as_str().expect("term")
            ),
            "classes",
            "ClassSetDType",
        ),
    ] {
        let got = all(&s, &t, &path, name, schema).await;
        assert!(!got.is_empty(), "{path} is empty");
    }
    let in_class = all(
        &s,
        &t,
        &format!("/classes/{class_sid}/students"),
        "users",
        "UserSetDType",
    )
    .await;
    assert!(in_class.iter().all(|u| u["roles"][0]["role"] == "student"));
    // Nothing of a record reaches the log.
    let log = s.log();
    for u in students.iter().take(50) {
        for field in ["familyName", "sourcedId", "userMasterIdentifier"] {
            if let Some(v) = u[field].as_str().filter(|v| v.len() > 3) {
                assert!(!log.contains(v), "{field} {v} logged:\n{log}");
            }
        }
    }
    // Identifiers reveal nothing: no LAS key or ECK-iD in a sourcedId.
    for u in &users {
        let sid = u["sourcedId"].as_str().expect("sid");
        for id in u["userIds"].as_array().expect("ids") {
            assert!(!sid.contains(id["identifier"].as_str().expect("id")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_sorting_fields_and_errors_are_as_the_spec_says() {
    let (sim, _store) = start(3600).await;
    let s = Serve::start(&sim);
    let t = token(&s, "lp", "lp-s3cret").await;
    let students = all(&s, &t, "/students?limit=1000", "users", "UserSetDType").await;
    let first = &students[0];
    let given = first["givenName"].as_str().expect("name");
    let (status, _, body) = get(&s, &t, &format!("/users?filter=givenName='{given}'")).await;
    assert_eq!(status, 200);
    conforms(&body, "UserSetDType");
    assert!(
        body["users"]
            .as_array()
            .expect("list")
            .iter()
            .all(|u| u["givenName"] == given)
    );
    // The store keeps an ECK-iD without its prefix: it is given, and found, whole.
    let e = students
        .iter()
        .find_map(|u| u["userMasterIdentifier"].as_str().filter(|e| !e.is_empty()))
        .expect("a student with an ECK-iD");
    assert!(e.starts_with("https://ketenid.nl/201703/"), "{e}");
    let (_, _, body) = get(&s, &t, &format!("/users?filter=userMasterIdentifier='{e}'")).await;
    let found = body["users"].as_array().expect("list");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["userMasterIdentifier"], e);
    // ~ is contains, ignoring case; OR joins.
    let part: String = given.chars().take(3).collect::<String>().to_lowercase();
    let (_, _, body) = get(
        &s,
        &t,
        &format!("/students?filter=givenName~'{part}' OR givenName='zzz'"),
    )
    .await;
    assert!(!body["users"].as_array().expect("list").is_empty());
    // Sorting: familyName descending.
    let (_, _, body) = get(&s, &t, "/students?sort=familyName&orderBy=desc&limit=50").await;
    let names: Vec<String> = body["users"]
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["familyName"].as_str().expect("name").to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted);
    // fields= keeps what was asked (and what the spec requires).
    let (_, _, body) = get(&s, &t, "/students?fields=sourcedId,email&limit=5").await;
    conforms(&body, "UserSetDType");
    assert!(body["users"][0].get("userIds").is_none());
    // Errors: a field that does not exist, an uncomparable one, a bad selection: 400.
    for (path, minor) in [
        ("/users?filter=shoeSize='42'", "invalid_filter_field"),
        ("/users?filter=roles='teacher'", "invalid_filter_field"),
        ("/users?filter=givenName", "invalid_filter_field"),
        ("/users?fields=shoeSize", "invalid_selection_field"),
        ("/classes?sort=grades", "invaliddata"),
    ] {
        let (status, _, body) = get(&s, &t, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        conforms(&body, "imsx_StatusInfoDType");
        assert_eq!(
            body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"], minor,
            "{path}"
        );
    }
    // Unknown records are 404 unknownobject.
    let (status, _, body) = get(&s, &t, "/users/no-such-user").await;
    assert_eq!(status, 404);
    conforms(&body, "imsx_StatusInfoDType");
    // A limit beyond the maximum is clamped, not refused.
    let (status, _, _) = get(&s, &t, "/users?limit=100000").await;
    assert_eq!(status, 200);
}

/// The `next` link of a page in the default order, and the page it names.
async fn next_page(s: &Serve, t: &str, headers: &reqwest::header::HeaderMap) -> (String, Value) {
    let next = next_url(headers["link"].to_str().expect("text")).expect("a next link");
    let (status, _, body) = get(s, t, &next).await;
    assert_eq!(status, 200, "{next}: {body}");
    (next, body)
}

fn sids(body: &Value, name: &str) -> Vec<String> {
    body[name]
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v["sourcedId"].as_str().expect("sourcedId").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_carries_a_cursor_and_a_change_while_paging_moves_no_one_across_pages() {
    use sea_orm::ConnectionTrait;
    let (sim, store) = start(3600).await;
    let s = Serve::start(&sim);
    let t = token(&s, "lp", "lp-s3cret").await;
    let everyone = all(&s, &t, "/students?limit=1000", "users", "UserSetDType").await;
    let order: Vec<String> = everyone
        .iter()
        .map(|u| u["sourcedId"].as_str().expect("sourcedId").to_owned())
        .collect();
    let (status, headers, first) = get(&s, &t, &format!("{}/students?limit=50", s.base)).await;
    assert_eq!(status, 200);
    assert_eq!(sids(&first, "users"), order[..50]);
    // A pupil of the first page leaves before the second page is asked for: by offset the
    // second page would begin one record late; by the cursor it begins where the first ended.
    store
        .writer()
        .execute_unprepared(&format!(
            "UPDATE person SET removed_at = updated_at WHERE sourced_id = '{}'",
            order[10]
        ))
        .await
        .expect("remove one");
    let (next, second) = next_page(&s, &t, &headers).await;
    assert!(next.contains("cursor="), "{next}");
    conforms(&second, "UserSetDType");
    assert_eq!(sids(&second, "users"), order[50..100]);
    // What follows the cursor still ends at the last record, each once, and the count the
    // first page gave stays (the pages of one pass agree on it).
    let mut url = next;
    let mut rest = Vec::new();
    loop {
        let (status, headers, body) = get(&s, &t, &url).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(headers["x-total-count"], order.len().to_string().as_str());
        rest.extend(sids(&body, "users"));
        match next_url(headers["link"].to_str().expect("text")) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(rest, order[50..]);
    // Enrollments and classes page by cursor the same way.
    for (path, name, schema) in [
        (
            "/enrollments?limit=100",
            "enrollments",
            "EnrollmentSetDType",
        ),
        ("/classes?limit=7", "classes", "ClassSetDType"),
    ] {
        let (_, headers, _) = get(&s, &t, &format!("{}{path}", s.base)).await;
        let (next, _) = next_page(&s, &t, &headers).await;
        assert!(next.contains("cursor="), "{next}");
        let every = all(&s, &t, path, name, schema).await;
        let unique: BTreeSet<&str> = every
            .iter()
            .filter_map(|v| v["sourcedId"].as_str())
            .collect();
        assert_eq!(unique.len(), every.len(), "{path}: each once");
    }
    // Every enrollment of every school, read a window of persons at a time, is what the
    // listing sorted in SQL gives (no window), in the same order.
    let windowed = all(
        &s,
        &t,
        "/enrollments?limit=37",
        "enrollments",
        "EnrollmentSetDType",
    )
    .await;
    let sorted = all(
        &s,
        &t,
        "/enrollments?limit=1000&sort=sourcedId",
        "enrollments",
        "EnrollmentSetDType",
    )
    .await;
    assert!(windowed.len() > 100, "{}", windowed.len());
    assert_eq!(windowed, sorted);
    // A sorted listing pages by offset: its links carry no cursor, and a cursor is refused
    // there, as is one this server did not give.
    let (_, headers, _) = get(
        &s,
        &t,
        &format!("{}/students?sort=familyName&limit=5", s.base),
    )
    .await;
    assert!(!headers["link"].to_str().expect("text").contains("cursor="));
    for path in [
        "/students?sort=familyName&cursor=3:abc",
        "/students?cursor=abc",
        "/students?cursor=12:",
    ] {
        let (status, _, body) = get(&s, &t, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        conforms(&body, "imsx_StatusInfoDType");
        assert_eq!(
            body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"],
            "invaliddata",
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sees_only_its_schools_and_others_are_not_found() {
    let (sim, _store) = start(3600).await;
    let s = Serve::start(&sim);
    let all_t = token(&s, "lp", "lp-s3cret").await;
    let one_t = token(&s, "one", "one-s3cret").await;
    let orgs = all(&s, &one_t, "/orgs", "orgs", "OrgSetDType").await;
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0]["identifier"], "11XA00");
    let everything = all(&s, &all_t, "/students?limit=1000", "users", "UserSetDType").await;
    let mine = all(&s, &one_t, "/students?limit=1000", "users", "UserSetDType").await;
    assert_eq!(mine.len(), 40);
    let theirs = everything
        .iter()
        .find(|u| !mine.iter().any(|m| m["sourcedId"] == u["sourcedId"]))
        .expect("a pupil of the other school");
    let sid = theirs["sourcedId"].as_str().expect("sid");
    let (status, _, _) = get(&s, &one_t, &format!("/users/{sid}")).await;
    assert_eq!(
        status, 404,
        "another school's record does not exist for this client"
    );
    let (status, _, _) = get(
        &s,
        &one_t,
        &format!("/rostersync/v1/users/{sid}/visibility"),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_and_can_say_what_a_teacher_sees_and_why() {
    let (sim, _store) = start(3600).await;
    let s = Serve::start(&sim);
    let t = token(&s, "lp", "lp-s3cret").await;
    let enrollments = all(
        &s,
        &t,
        "/enrollments?limit=1000",
        "enrollments",
        "EnrollmentSetDType",
    )
    .await;
    let teaching = enrollments
        .iter()
        .find(|e| e["role"] == "teacher" && e["primary"] == "true")
        .expect("a group teacher");
    let teacher = teaching["user"]["sourcedId"].as_str().expect("sid");
    let class = teaching["class"]["sourcedId"].as_str().expect("class");
    let (status, _, body) = get(
        &s,
        &t,
        &format!("/rostersync/v1/users/{teacher}/visibility"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = body["classes"].as_array().expect("classes");
    let here = seen
        .iter()
        .find(|c| c["class"]["sourcedId"] == class)
        .expect("the class taught");
    assert_eq!(here["level"], "related");
    assert!(here["reasons"][0]["rule"].is_string() && here["reasons"][0]["since"].is_string());
    let pupil = enrollments
        .iter()
        .find(|e| e["role"] == "student" && e["class"]["sourcedId"] == class)
        .expect("a pupil of the class")["user"]["sourcedId"]
        .as_str()
        .expect("sid")
        .to_owned();
    let (status, _, body) = get(
        &s,
        &t,
        &format!("/rostersync/v1/can?user={teacher}&student={pupil}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["can"], true, "{body}");
    assert!(body["answer"].as_str().expect("text").starts_with("yes: "));
}

/// The roster an app holds, by sourcedId.
#[derive(Debug, Default, PartialEq)]
struct Mirror {
    users: BTreeMap<String, (String, String, String)>,
    classes: BTreeMap<String, (String, String)>,
    enrollments: BTreeMap<String, (String, String, String)>,
}

impl Mirror {
    fn take(&mut self, name: &str, items: &[Value]) {
        for v in items {
            let sid = v["sourcedId"].as_str().expect("sid").to_owned();
            let gone = v["status"] == "tobedeleted";
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            match (name, gone) {
                ("users", false) => {
                    self.users.insert(
                        sid,
                        (
                            text("givenName"),
                            text("familyName"),
                            v["roles"][0]["role"].as_str().unwrap_or("").to_owned(),
                        ),
                    );
                }
                ("classes", false) => {
                    self.classes.insert(sid, (text("classCode"), text("title")));
                }
                ("enrollments", false) => {
                    self.enrollments.insert(
                        sid,
                        (
                            v["user"]["sourcedId"].as_str().unwrap_or("").to_owned(),
                            v["class"]["sourcedId"].as_str().unwrap_or("").to_owned(),
                            text("role"),
                        ),
                    );
                }
                ("users", true) => {
                    self.users.remove(&sid);
                }
                ("classes", true) => {
                    self.classes.remove(&sid);
                }
                (_, true) => {
                    self.enrollments.remove(&sid);
                }
                _ => {}
            }
        }
    }

    async fn pull(&mut self, s: &Serve, t: &str, since: Option<&str>) {
        let filter = since
            .map(|t| format!("&filter=dateLastModified>'{t}'"))
            .unwrap_or_default();
        for name in ["users", "classes", "enrollments"] {
            let schema = match name {
                "users" => "UserSetDType",
                "classes" => "ClassSetDType",
                _ => "EnrollmentSetDType",
            };
            let items = all(s, t, &format!("/{name}?limit=250{filter}"), name, schema).await;
            self.take(name, &items);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pull_then_daily_deltas_equal_a_fresh_full_pull_and_export() {
    let (sim, store) = start(3600).await;
    let s = Serve::start(&sim);
    let t = token(&s, "lp", "lp-s3cret").await;
    let mut app = Mirror::default();
    app.pull(&s, &t, None).await;
    let mut saw_gone = false;
    for _day in 0..3 {
        let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        sim.server.with_world(|w| {
            w.advance_day();
        });
        sim.sync(&store, true).await;
        // What the delta says was removed is marked, while the tombstone exists.
        let delta = all(
            &s,
            &t,
            &format!("/users?limit=500&filter=dateLastModified>'{since}'"),
            "users",
            "UserSetDType",
        )
        .await;
        saw_gone |= delta.iter().any(|u| u["status"] == "tobedeleted");
        app.pull(&s, &t, Some(&since)).await;
        let mut fresh = Mirror::default();
        fresh.pull(&s, &t, None).await;
        assert_eq!(app, fresh, "deltas since each pull add up to a full pull");
    }
    assert!(saw_gone, "three simulated days had a leaver");
    // And the full pull is what `export` shows: the same people and groups, by key.
    for school in ["10XA00", "11XA00"] {
        let export = rostersync::store::export::export(store.db(), school)
            .await
            .expect("export")
            .expect("school");
        let codes: BTreeSet<String> = export.groups.iter().map(|g| g.key.clone()).collect();
        let ours: BTreeSet<String> = app
            .classes
            .values()
            .map(|(code, _)| code.clone())
            .filter(|c| codes.contains(c))
            .collect();
        assert_eq!(ours, codes, "{school}: every group is a class");
        let people = export.pupils.len() + export.staff.len();
        assert!(people > 0);
    }
    let exported: usize = {
        let mut n = 0;
        for school in ["10XA00", "11XA00"] {
            let e = rostersync::store::export::export(store.db(), school)
                .await
                .expect("export")
                .expect("school");
            n += e.pupils.len() + e.staff.len();
        }
        n
    };
    assert_eq!(app.users.len(), exported, "every live person is a user");
}

/// A delta of enrollments paged by its next links is read person by person (the persons the
/// delta touched, then only their enrollments); sorted by sourcedId it is built whole and
/// paged by offset. Both must give the same records in the same order, for a client of every
/// school and a client of one, for a day's delta (with removals) and for one since before the
/// first load (everything).
#[tokio::test]
async fn a_delta_of_enrollments_paged_by_cursor_is_the_delta_built_whole() {
    let before = chrono::Utc::now() - chrono::Duration::days(1);
    let (sim, store) = start(3600).await;
    let s = Serve::start(&sim);
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    sim.server.with_world(|w| {
        w.advance_day();
    });
    sim.sync(&store, true).await;
    let ids = |items: &[Value]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|e| {
                let sid = e["sourcedId"].as_str().expect("sourcedId").to_owned();
                let status = e["status"].as_str().expect("status").to_owned();
                (sid, status)
            })
            .collect()
    };
    let mut seen_removed = false;
    for (client, secret) in [("lp", "lp-s3cret"), ("one", "one-s3cret")] {
        let t = token(&s, client, secret).await;
        for moment in [since, before] {
            let filter = format!(
                "filter=dateLastModified>'{}'",
                moment.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
            let schema = "EnrollmentSetDType";
            let paged = all(
                &s,
                &t,
                &format!("/enrollments?limit=7&{filter}"),
                "enrollments",
                schema,
            )
            .await;
            let whole = all(
                &s,
                &t,
                &format!("/enrollments?limit=1000&sort=sourcedId&{filter}"),
                "enrollments",
                schema,
            )
            .await;
            assert!(
                paged.len() > 7,
                "{client}: more than one page ({})",
                paged.len()
            );
            assert_eq!(ids(&paged), ids(&whole), "{client} since {moment}");
            seen_removed |= paged.iter().any(|e| e["status"] == "tobedeleted");
        }
    }
    assert!(seen_removed, "a day's delta had a removed enrollment");
    // Both ways of finding the persons a delta moved find the same ones, in the same order,
    // a grant that changed alone included (a pending one revoked after its grace period).
    use rostersync::store::entities::access_grant;
    use rostersync::store::oneroster::{Find, Listing, moved_persons};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
    let grant = access_grant::Entity::find()
        .filter(access_grant::Column::Level.eq("related"))
        .order_by_asc(access_grant::Column::Id)
        .one(store.db())
        .await
        .expect("grants")
        .expect("a group grant");
    access_grant::Entity::update_many()
        .col_expr(
            access_grant::Column::ChangedAt,
            Expr::value(rostersync::store::Stamp::now()),
        )
        .filter(access_grant::Column::Id.eq(grant.id))
        .exec(store.writer())
        .await
        .expect("a grant changed");
    for (moment, removed) in [(since, true), (since, false), (before, true)] {
        let l = Listing {
            removed,
            ..Listing::default()
        };
        let by = |how| moved_persons(store.db(), &l, ("", moment.into()), 100_000, how);
        let (walked, more) = by(Find::ByWalk).await.expect("walk");
        let (indexed, _) = by(Find::ByMoment).await.expect("moments");
        assert!(!more && walked.contains(&grant.person_id));
        assert_eq!(walked, indexed, "since {moment}, removed {removed}");
    }
}
