//! The UWLR connector against the simulated LAS over real HTTP on loopback.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use connector_api::http::{HttpPolicy, TlsSettings};
use connector_api::{
    Connector, ConnectorError, FetchOutcome, FetchRequest, RoleScope, SchoolId, SchoolYear,
    Snapshot,
};
use connector_sim::{Fault, FaultPlan, SchoolKind, SimServer, World};
use connector_uwlr::{Transfer, UwlrConnector, UwlrSettings};
use secrecy::SecretString;

fn id(s: &str) -> SchoolId {
    s.parse().expect("school id")
}

/// A day in school year 2024-2025, the last year the 2.2 schema's enumeration knows.
fn sim_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 10, 1).expect("date")
}

async fn sim() -> SimServer {
    let mut world = World::new(42, sim_date());
    world.add_school(id("99XX00"), SchoolKind::Primary, 120);
    world.add_school(id("12AB00"), SchoolKind::Secondary, 200);
    SimServer::start(world, 0).await.expect("simulator starts")
}

fn connector(server: &SimServer, transfer: Transfer, version: &str) -> UwlrConnector {
    UwlrConnector::new(UwlrSettings {
        name: "sim".into(),
        endpoint: server.uwlr_url().parse().expect("url"),
        klantnaam: "Publisher".into(),
        klantcode: SecretString::from("SIM-KLANTCODE"),
        xsd_version: version.into(),
        data_set: None,
        transfer,
        headers: vec![(
            "IddinkHub-Subscription-Key".into(),
            SecretString::from("hub-key"),
        )],
        policy: HttpPolicy {
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_attempts: 3,
            request_timeout: Duration::from_secs(5),
            ..HttpPolicy::default()
        },
        tls: TlsSettings::default(),
    })
    .expect("connector builds")
}

fn request(server: &SimServer, school: &str) -> FetchRequest {
    let key = server.with_world(|w| w.schools[&id(school)].key.clone());
    FetchRequest {
        school: id(school),
        school_year: SchoolYear::containing(sim_date()),
        credential: Some(SecretString::from(key)),
        remote_id: None,
        last_received: None,
        last_marker: None,
    }
}

async fn snapshot(c: &UwlrConnector, req: &FetchRequest) -> Snapshot {
    match c.fetch(req).await.expect("fetch succeeds") {
        FetchOutcome::Snapshot(s) => *s,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

async fn fetch_err(c: &UwlrConnector, req: &FetchRequest) -> ConnectorError {
    c.fetch(req).await.expect_err("fetch fails")
}

/// A comparable digest of a snapshot: who is in which group.
fn digest(s: &Snapshot) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let groups = s
        .groups
        .iter()
        .map(|g| format!("{}:{}:{:?}", g.key, g.name, g.year_group))
        .collect();
    let pupils = s
        .pupils
        .iter()
        .map(|p| {
            format!(
                "{:?}:{:?}:{:?}:{:?}",
                p.keys.las_key,
                p.keys.eckid.is_some(),
                p.group,
                p.subgroups
            )
        })
        .collect();
    let staff = s
        .staff
        .iter()
        .map(|t| format!("{:?}:{:?}:{:?}", t.keys.las_key, t.groups, t.roles))
        .collect();
    (groups, pupils, staff)
}

#[tokio::test]
async fn a_whole_primary_school_arrives_in_one_answer() {
    let server = sim().await;
    let s = snapshot(
        &connector(&server, Transfer::AllInOne, "2.2"),
        &request(&server, "99XX00"),
    )
    .await;
    let expected = server.with_world(|w| w.schools[&id("99XX00")].school.pupils.len());
    assert_eq!(s.pupils.len(), expected);
    assert_eq!(s.school_year.as_deref(), Some("2024-2025"));
    assert!(s.rejects.is_empty(), "{:?}", s.rejects);
    assert!(
        s.groups
            .iter()
            .any(|g| g.year_group.as_deref() == Some("C")),
        "a combination group"
    );
    assert!(
        s.pupils.iter().any(|p| p.keys.eckid.is_some())
            && s.pupils.iter().any(|p| p.keys.eckid.is_none())
    );
    let ib = s
        .staff
        .iter()
        .find(|t| t.roles.iter().any(|r| r.name == "IB"))
        .expect("an IB'er");
    assert!(ib.groups.is_empty() && ib.roles[0].scope == RoleScope::School);
}

#[tokio::test]
async fn getrapt_and_all_in_one_give_the_same_school_in_both_versions() {
    let server = sim().await;
    for school in ["99XX00", "12AB00"] {
        let req = request(&server, school);
        let whole = snapshot(&connector(&server, Transfer::AllInOne, "2.2"), &req).await;
        for (transfer, version) in [
            (Transfer::Getrapt, "2.2"),
            (Transfer::AllInOne, "2.3"),
            (Transfer::Getrapt, "2.3"),
        ] {
            let other = snapshot(&connector(&server, transfer, version), &req).await;
            assert_eq!(
                digest(&whole),
                digest(&other),
                "{school} {transfer:?} {version}"
            );
        }
    }
}

#[tokio::test]
async fn a_las_without_2_3_gets_2_2_after_one_refusal() {
    let server = sim().await;
    server.with_world(|w| w.versions = vec!["2.2".into()]);
    let c = connector(&server, Transfer::AllInOne, "2.3");
    let req = request(&server, "99XX00");
    snapshot(&c, &req).await;
    let before = server.with_world(|w| w.schools[&id("99XX00")].requests);
    snapshot(&c, &req).await;
    let after = server.with_world(|w| w.schools[&id("99XX00")].requests);
    assert_eq!(
        after - before,
        1,
        "the fallback is remembered: no second refusal"
    );
}

#[tokio::test]
async fn laatstontvangengegevens_makes_a_conditional_get() {
    let server = sim().await;
    let c = connector(&server, Transfer::AllInOne, "2.2");
    let mut req = request(&server, "99XX00");
    req.last_received = Some(Utc::now());
    assert!(matches!(
        c.fetch(&req).await.expect("ok"),
        FetchOutcome::Unchanged
    ));
    server.with_world(|w| w.advance_day());
    assert!(matches!(
        c.fetch(&req).await.expect("ok"),
        FetchOutcome::Snapshot(_)
    ));
}

#[tokio::test]
async fn wrong_keys_and_supplier_codes_are_told_apart() {
    let server = sim().await;
    let c = connector(&server, Transfer::AllInOne, "2.2");
    let mut req = request(&server, "99XX00");
    req.credential = Some(SecretString::from("wrong-key"));
    assert_eq!(fetch_err(&c, &req).await.class(), "credentials_rejected");
    // The key of another school does not open this one.
    req.credential = request(&server, "12AB00").credential;
    assert_eq!(fetch_err(&c, &req).await.class(), "credentials_rejected");
    let mut wrong_supplier = connector(&server, Transfer::AllInOne, "2.2");
    wrong_supplier = UwlrConnector::new(UwlrSettings {
        klantcode: SecretString::from("NOT-OURS"),
        ..settings_of(&server)
    })
    .unwrap_or(wrong_supplier);
    let err = fetch_err(&wrong_supplier, &request(&server, "99XX00")).await;
    assert_eq!(err.class(), "supplier_rejected");
    assert!(!err.to_string().contains("NOT-OURS"));
}

fn settings_of(server: &SimServer) -> UwlrSettings {
    UwlrSettings {
        name: "sim".into(),
        endpoint: server.uwlr_url().parse().expect("url"),
        klantnaam: "Publisher".into(),
        klantcode: SecretString::from("SIM-KLANTCODE"),
        xsd_version: "2.2".into(),
        data_set: Some("Smalle-set-PO".into()),
        transfer: Transfer::AllInOne,
        headers: Vec::new(),
        policy: HttpPolicy {
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_attempts: 2,
            // Generous: on a loaded machine a short limit would turn every fault into a
            // timeout. Only the slow case gets a short one (below).
            request_timeout: Duration::from_secs(20),
            ..HttpPolicy::default()
        },
        tls: TlsSettings::default(),
    }
}

fn set_fault(server: &SimServer, fault: Fault, remaining: Option<u32>) {
    server.with_world(|w| w.set_fault(&id("99XX00"), Some(FaultPlan { fault, remaining })));
}

#[tokio::test]
async fn every_fault_has_its_class_and_returns_nothing_partial() {
    let server = sim().await;
    let c = UwlrConnector::new(settings_of(&server)).expect("connector");
    let req = request(&server, "99XX00");
    let cases = [
        (
            Fault::Soap("Client.AutorisatieOngeldig".into()),
            "credentials_rejected",
        ),
        (
            Fault::Soap("Client.OngeldigeKlantIdentificatie".into()),
            "supplier_rejected",
        ),
        (
            Fault::Soap("Client.XsdVersieOngeldig".into()),
            "unsupported_version",
        ),
        (
            Fault::Soap("Client.OngeldigBericht".into()),
            "invalid_request",
        ),
        (Fault::Soap("Server.InterneFout".into()), "unavailable"),
        (
            Fault::Soap("Server.TijdelijkNietBeschikbaar".into()),
            "unavailable",
        ),
        (Fault::Unavailable { retry_after: 0 }, "unavailable"),
        (Fault::Truncated, "truncated"),
        (Fault::Malformed, "malformed"),
    ];
    for (fault, class) in cases {
        set_fault(&server, fault.clone(), None);
        let err = fetch_err(&c, &req).await;
        assert_eq!(err.class(), class, "{fault:?}: {err}");
    }
    // A LAS slower than the connection's limit: a timeout, whatever else the machine does.
    let mut quick = settings_of(&server);
    quick.policy.request_timeout = Duration::from_millis(700);
    let impatient = UwlrConnector::new(quick).expect("connector");
    set_fault(&server, Fault::Slow(Duration::from_secs(30)), None);
    let err = fetch_err(&impatient, &req).await;
    assert_eq!(err.class(), "timeout", "{err}");
    set_fault(&server, Fault::NoData, None);
    assert!(matches!(
        c.fetch(&req).await.expect("answer"),
        FetchOutcome::NoData { .. }
    ));
    set_fault(&server, Fault::Unchanged, None);
    assert!(matches!(
        c.fetch(&req).await.expect("answer"),
        FetchOutcome::Unchanged
    ));
}

#[tokio::test]
async fn a_503_is_retried_and_then_succeeds() {
    let server = sim().await;
    let c = UwlrConnector::new(settings_of(&server)).expect("connector");
    set_fault(&server, Fault::Unavailable { retry_after: 0 }, Some(1));
    let req = request(&server, "99XX00");
    snapshot(&c, &req).await;
    assert_eq!(server.with_world(|w| w.schools[&id("99XX00")].requests), 2);
}

#[tokio::test]
async fn the_simulators_answers_validate_against_the_official_schema() {
    let xsd = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/uwlr-2.2/Schemas/UWLR_Leerlinggegevens_v2p2.xsd");
    if std::process::Command::new("xmllint")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install xmllint (libxml2-utils)"
        );
        eprintln!("xmllint is not installed; skipping schema validation");
        return;
    }
    let server = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let answers = server.with_world(|w| {
        let mut out = Vec::new();
        for state in w.schools.values() {
            let s = &state.school;
            let groups: Vec<Option<String>> = s
                .groups
                .iter()
                .map(|g| Some(g.key.clone()))
                .chain([None])
                .collect();
            use connector_sim::uwlr::{Operation, answer};
            for (name, op) in [
                ("all", Operation::AllInOne),
                ("structure", Operation::Structure),
                ("pupils", Operation::Pupils),
                ("teachers", Operation::Teachers),
            ] {
                out.push((
                    format!("{}-{name}.xml", s.id),
                    answer(s, op, "2.2", &groups),
                ));
            }
        }
        out
    });
    for (name, xml) in answers {
        let path = dir.path().join(&name);
        std::fs::write(&path, xml).expect("write answer");
        let out = std::process::Command::new("xmllint")
            .args(["--noout", "--schema"])
            .arg(&xsd)
            .arg(&path)
            .output()
            .expect("xmllint runs");
        assert!(
            out.status.success(),
            "{name} does not validate:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
