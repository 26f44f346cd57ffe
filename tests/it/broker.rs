//! The Basispoort connector against the simulated broker over real mutual TLS: consent,
//! conditional fetches, a merger, a closed school, propagation delay, and certificates the
//! broker refuses.

use connector_api::http::HttpPolicy;
use connector_api::{
    Connector, ConnectorError, ErrorKind, FetchOutcome, FetchRequest, RoleScope, SchoolId,
    SchoolYear, Snapshot,
};
use connector_basispoort::{BasispoortConfig, BasispoortConnector};
use connector_sim::{ClientCert, SchoolKind, SimServer, World};
use secrecy::SecretBox;

fn id(s: &str) -> SchoolId {
    s.parse().expect("school id")
}

async fn broker() -> SimServer {
    let mut w = World::new(5, rostersync::sync::run::today());
    w.add_school(id("10XA00"), SchoolKind::Primary, 60);
    w.add_school(id("11XA00"), SchoolKind::Primary, 30);
    SimServer::start(w, 0).await.expect("simulator starts")
}

fn connector(sim: &SimServer, cert: ClientCert) -> BasispoortConnector {
    let identity = sim.pki.client_identity(cert).expect("client identity");
    BasispoortConnector::new(BasispoortConfig {
        endpoint: sim.broker_url().parse().expect("url"),
        client_identity_pem: SecretBox::new(Box::new(identity.into_bytes())),
        ca_pem: Some(sim.pki.ca_pem().as_bytes().to_vec()),
        policy: HttpPolicy {
            max_attempts: 1,
            ..HttpPolicy::default()
        },
    })
    .expect("connector")
}

fn request(sim: &SimServer, school: &str, marker: Option<String>) -> FetchRequest {
    let remote = sim.with_world(|w| w.broker_id(&id(school)));
    FetchRequest {
        school: id(school),
        school_year: SchoolYear::containing(rostersync::sync::run::today()),
        credential: None,
        remote_id: remote.map(|r| r.to_string()),
        last_received: None,
        last_marker: marker,
    }
}

async fn snapshot(c: &BasispoortConnector, r: &FetchRequest) -> Snapshot {
    match c.fetch(r).await {
        Ok(FetchOutcome::Snapshot(s)) => *s,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

fn overviews(sim: &SimServer, school: &str) -> u64 {
    sim.with_world(|w| {
        let i = w.broker_id(&id(school)).expect("institution");
        w.broker.institutions[&i].overviews_served
    })
}

#[tokio::test]
async fn the_broker_serves_the_las_people_with_its_own_ids_and_roles() {
    let sim = broker().await;
    let c = connector(&sim, ClientCert::Valid);
    let r = request(&sim, "10XA00", None);
    let snap = snapshot(&c, &r).await;
    let (pupils, teachers) = sim.with_world(|w| {
        let s = &w.schools[&id("10XA00")].school;
        (s.pupils.len(), s.teachers.len())
    });
    assert_eq!(snap.pupils.len(), pupils);
    assert!(snap.rejects.is_empty(), "{:?}", snap.rejects);
    assert!(
        snap.pupils
            .iter()
            .all(|p| p.keys.broker_id.is_some() && p.keys.las_key.is_some())
    );
    assert!(snap.school_name.is_some());
    // The LAS's staff plus two the broker alone knows: a stagiair and an invaller.
    assert_eq!(snap.staff.len(), teachers + 2);
    let role = |name: &str| {
        snap.staff
            .iter()
            .filter(|s| s.roles.iter().any(|r| r.name == name))
            .collect::<Vec<_>>()
    };
    let stagiair = role("Stagiair");
    assert_eq!(stagiair.len(), 1);
    assert!(stagiair[0].keys.las_key.is_none());
    assert_eq!(
        stagiair[0].groups.len(),
        1,
        "a stagiair is placed in one group"
    );
    assert!(matches!(&stagiair[0].roles[0].scope, RoleScope::Groups(g) if g.len() == 1));
    assert_eq!(role("Inval").len(), 1);
    let ib = role("IBRTer");
    assert_eq!(ib.len(), 1);
    assert_eq!(ib[0].roles[0].scope, RoleScope::School);
    assert!(!role("Leerkracht").is_empty());
    assert_eq!(role("ICTCoordinator").len(), 1);

    // Nothing changed since: the overview is not downloaded again.
    let served = overviews(&sim, "10XA00");
    let again = request(&sim, "10XA00", snap.marker.clone());
    assert!(matches!(c.fetch(&again).await, Ok(FetchOutcome::Unchanged)));
    assert_eq!(overviews(&sim, "10XA00"), served);
    // A night later it is.
    sim.with_world(|w| {
        w.advance_day();
    });
    let changed = snapshot(&c, &again).await;
    assert_ne!(changed.marker, snap.marker);
    assert_eq!(overviews(&sim, "10XA00"), served + 1);
}

#[tokio::test]
async fn consent_is_checked_requested_and_listed_per_day() {
    let sim = broker().await;
    let c = connector(&sim, ClientCert::Valid);
    let today = sim.with_world(|w| w.today());
    let all = c.institutions().await.expect("institutions");
    assert_eq!(all.len(), 2);
    assert_eq!(c.granted_on(today).await.expect("granted"), all);

    sim.with_world(|w| w.set_consent(&id("11XA00"), false));
    let inst = sim.with_world(|w| w.broker_id(&id("11XA00"))).expect("id");
    let err = c
        .fetch(&request(&sim, "11XA00", None))
        .await
        .expect_err("no consent, no data");
    assert!(matches!(err, ConnectorError::NoConsent { .. }), "{err}");
    assert_eq!(err.class(), "awaiting_consent");
    assert_eq!(overviews(&sim, "11XA00"), 0);
    assert_eq!(c.revoked_on(today).await.expect("revoked"), vec![inst]);
    assert!(!c.has_permission(inst, true).await.expect("asked"));
    assert!(sim.with_world(|w| w.broker.permission_requests.contains(&inst)));
    // The school agrees: the next fetch has data.
    sim.with_world(|w| w.set_consent(&id("11XA00"), true));
    snapshot(&c, &request(&sim, "11XA00", None)).await;
}

#[tokio::test]
async fn a_merger_and_a_closed_school_are_told_apart_from_failures() {
    let sim = broker().await;
    let c = connector(&sim, ClientCert::Valid);
    let before = request(&sim, "10XA00", None);
    let first = snapshot(&c, &before).await;
    let (old, new) = sim
        .with_world(|w| w.merge_at_broker(&id("10XA00")))
        .expect("merged");
    assert_eq!(before.remote_id, Some(old.to_string()));
    match c.fetch(&before).await {
        Err(ConnectorError::SchoolMerged { into }) => assert_eq!(into, new.to_string()),
        other => panic!("expected a merger, got {other:?}"),
    }
    // Under the new id the same people with the same ids.
    let after = snapshot(&c, &request(&sim, "10XA00", None)).await;
    let people = |s: &Snapshot| {
        let mut k: Vec<_> = s.pupils.iter().map(|p| p.keys.clone()).collect();
        k.sort_by_key(|k| k.label());
        k
    };
    assert_eq!(people(&after), people(&first));

    sim.with_world(|w| w.broker.close(&id("11XA00")));
    let err = c
        .fetch(&request(&sim, "11XA00", None))
        .await
        .expect_err("closed");
    assert!(matches!(err, ConnectorError::SchoolClosed), "{err}");
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn the_broker_lags_the_las_by_a_night_when_told() {
    let sim = broker().await;
    sim.with_world(|w| w.broker.lag_nights = 1);
    let c = connector(&sim, ClientCert::Valid);
    let keys = |w: &World| {
        let mut k: Vec<String> = w.schools[&id("10XA00")]
            .school
            .pupils
            .iter()
            .map(|p| p.person.key.clone())
            .collect();
        k.sort();
        k
    };
    let day0 = sim.with_world(|w| keys(w));
    sim.with_world(|w| {
        w.advance_day();
        w.lose_pupils(&id("10XA00"), 0.1);
    });
    let day1 = sim.with_world(|w| keys(w));
    assert_ne!(day0, day1, "the LAS changed overnight");
    let seen = |s: &Snapshot| {
        let mut k: Vec<String> = s
            .pupils
            .iter()
            .filter_map(|p| p.keys.las_key.clone())
            .collect();
        k.sort();
        k
    };
    let snap = snapshot(&c, &request(&sim, "10XA00", None)).await;
    assert_eq!(seen(&snap), day0, "the broker still shows yesterday");
    sim.with_world(|w| {
        w.advance_day();
    });
    let snap = snapshot(&c, &request(&sim, "10XA00", None)).await;
    assert_eq!(seen(&snap), day1, "a night later it caught up");
}

#[tokio::test]
async fn a_refused_certificate_is_a_problem_of_the_connection() {
    let sim = broker().await;
    for cert in [ClientCert::Expired, ClientCert::Stranger] {
        let c = connector(&sim, cert);
        let err = c
            .fetch(&request(&sim, "10XA00", None))
            .await
            .expect_err("refused");
        assert_eq!(err.class(), "tls", "{cert:?}: {err}");
        assert_eq!(err.kind(), ErrorKind::Supplier, "{cert:?}: {err}");
        let listing = c.institutions().await.expect_err("refused");
        assert_eq!(listing.class(), "tls", "{cert:?}: {listing}");
    }
    // Without any client certificate the connector cannot even be built.
    let no_identity = BasispoortConnector::new(BasispoortConfig {
        endpoint: sim.broker_url().parse().expect("url"),
        client_identity_pem: SecretBox::new(Box::new(b"not a certificate".to_vec())),
        ca_pem: Some(sim.pki.ca_pem().as_bytes().to_vec()),
        policy: HttpPolicy::default(),
    });
    assert!(matches!(no_identity, Err(ConnectorError::Config { .. })));
}

// ---- The broker in a school's sync, through the store ----

use rostersync::store::Store;
use rostersync::sync::report::Outcome;

use crate::support::{SimEnv, count, set_time};

async fn linked(schools: &[(&str, usize)]) -> (SimEnv, Store) {
    let mut w = World::new(9, rostersync::sync::run::today());
    for (s, pupils) in schools {
        w.add_school(id(s), SchoolKind::Primary, *pupils);
    }
    SimEnv::start_linked(w, true, false).await
}

fn result<'a>(
    report: &'a rostersync::sync::cycle::CycleReport,
    school: &str,
) -> &'a rostersync::sync::run::SchoolReport {
    report
        .schools
        .iter()
        .find(|r| r.school == school)
        .expect("school in the report")
}

#[tokio::test]
async fn the_las_and_the_broker_make_one_roster_with_the_brokers_fields_locked() {
    let (sim, store) = linked(&[("10XA00", 40)]).await;
    let report = sim.sync(&store, false).await;
    let r = result(&report, "10XA00");
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.message);
    assert_eq!(
        r.counts.conflicts, 0,
        "LAS and broker agree on a fresh school"
    );
    let export = rostersync::store::export::export(store.db(), "10XA00")
        .await
        .expect("export")
        .expect("school");
    let (pupils, teachers) = sim.server.with_world(|w| {
        let s = &w.schools[&id("10XA00")].school;
        (s.pupils.len(), s.teachers.len())
    });
    // One person per pupil and teacher (matched across the sources, not doubled), plus the
    // broker's stagiair and invaller.
    assert_eq!(export.pupils.len(), pupils);
    assert_eq!(export.staff.len(), teachers + 2);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM person WHERE broker_id IS NOT NULL"
        )
        .await as usize,
        pupils + teachers + 2
    );
    let ib = export
        .staff
        .iter()
        .find(|s| s.roles.iter().any(|r| r.starts_with("IBRTer")))
        .expect("the IB'er has the broker's role");
    assert!(
        ib.roles.iter().any(|r| r.starts_with("IB")),
        "{:?}",
        ib.roles
    );
    assert!(
        ["family_name", "email"]
            .iter()
            .all(|f| ib.locked_fields.iter().any(|l| l == f)),
        "{:?}",
        ib.locked_fields
    );
    // Every person's fields are the broker's: it is the higher owner of what both send.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM person WHERE CAST(owners AS TEXT) LIKE '%broker%' \
             AND CAST(owners AS TEXT) NOT LIKE '%las%'"
        )
        .await as usize,
        pupils + teachers + 2
    );
    let stagiair = export
        .staff
        .iter()
        .find(|s| s.roles.iter().any(|r| r.starts_with("Stagiair")))
        .expect("the broker's stagiair");
    assert!(stagiair.las_key.is_none());
    assert_eq!(stagiair.groups.len(), 1);

    // Nothing changed at either source: nothing is downloaded or written.
    let served = overviews(&sim.server, "10XA00");
    let again = sim.sync(&store, false).await;
    assert_eq!(result(&again, "10XA00").outcome, Outcome::Unchanged);
    assert_eq!(overviews(&sim.server, "10XA00"), served);
    // The LAS changed overnight but the broker did not: the broker is asked in full again,
    // because the merge needs both.
    sim.server.with_world(|w| {
        w.advance_day();
    });
    let next = sim.sync(&store, false).await;
    assert_eq!(result(&next, "10XA00").outcome, Outcome::Ok);
    assert_eq!(overviews(&sim.server, "10XA00"), served + 1);
    // The night's leaver was the broker's to remove (it owned the record).
    assert!(
        count(
            &store,
            "SELECT COUNT(*) FROM change_entry WHERE operation = 'remove' AND source = 'broker'"
        )
        .await
            > 0
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM change_entry WHERE operation = 'remove' AND source = 'las'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_missing_revoked_and_restored() {
    let (sim, store) = linked(&[("10XA00", 25), ("11XA00", 25)]).await;
    // 11XA00 never granted permission: it waits, and nothing of it is fetched.
    sim.server
        .with_world(|w| w.set_consent(&id("11XA00"), false));
    let report = sim.sync(&store, false).await;
    assert_eq!(result(&report, "10XA00").outcome, Outcome::Ok);
    let waiting = result(&report, "11XA00");
    assert_eq!(waiting.outcome, Outcome::NoConsent);
    assert_eq!(waiting.error_class.as_deref(), Some("awaiting_consent"));
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM person WHERE school_id = '11XA00'"
        )
        .await,
        0
    );
    let status = sim.env.run(&["status"]);
    assert!(
        status.stdout.contains("awaiting_consent"),
        "{}",
        status.stdout
    );
    // check-config --online says so too, after checking the certificate once.
    let check = sim.env.run(&["check-config", "--online"]);
    check.fails_with(1);
    assert!(
        check.stdout.contains("certificate accepted"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("awaiting_consent"),
        "{}",
        check.stdout
    );
    assert_eq!(check.stdout.matches("sync permission granted").count(), 1);

    // 10XA00 revokes: offboarding starts, its data is kept, and status says when it goes.
    sim.server
        .with_world(|w| w.set_consent(&id("10XA00"), false));
    let people = count(
        &store,
        "SELECT COUNT(*) FROM person WHERE school_id = '10XA00'",
    )
    .await;
    let report = sim.sync(&store, false).await;
    let revoked = result(&report, "10XA00");
    assert_eq!(revoked.outcome, Outcome::NoConsent);
    assert_eq!(revoked.error_class.as_deref(), Some("consent_revoked"));
    assert!(
        revoked
            .message
            .as_deref()
            .unwrap_or("")
            .contains("deleted on"),
        "{:?}",
        revoked.message
    );
    let status = sim.env.run(&["status"]);
    assert!(status.stdout.contains("offboarding"), "{}", status.stdout);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM person WHERE school_id = '10XA00'"
        )
        .await,
        people
    );
    // Granted again within the grace period: the sync simply resumes.
    sim.server
        .with_world(|w| w.set_consent(&id("10XA00"), true));
    let report = sim.sync(&store, false).await;
    assert!(matches!(
        result(&report, "10XA00").outcome,
        Outcome::Ok | Outcome::Unchanged
    ));
    let state = count(
        &store,
        "SELECT COUNT(*) FROM school WHERE id = '10XA00' AND state = 'active'",
    )
    .await;
    assert_eq!(state, 1);

    // Revoked for good: once the grace period has passed, the data is deleted.
    sim.server
        .with_world(|w| w.set_consent(&id("10XA00"), false));
    sim.sync(&store, false).await;
    // Pretend a month passed.
    set_time(
        &store,
        "UPDATE school SET state_since = {at} WHERE id = '10XA00'",
        chrono::Utc::now() - chrono::Duration::days(31),
    )
    .await;
    let report = sim.sync(&store, false).await;
    let gone = result(&report, "10XA00");
    assert_eq!(
        gone.error_class.as_deref(),
        Some("offboarded"),
        "{:?}",
        gone.message
    );
    for table in ["person", "roster_group", "change_entry", "source_state"] {
        assert_eq!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM {table} WHERE school_id = '10XA00'")
            )
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM school WHERE id = '10XA00' AND state = 'awaiting_consent'"
        )
        .await,
        1,
        "the link stays, waiting for a new permission"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merger_is_followed_and_a_closed_school_frozen() {
    let (sim, store) = linked(&[("10XA00", 25), ("11XA00", 25)]).await;
    sim.sync(&store, false).await;
    let people = count(
        &store,
        "SELECT COUNT(*) FROM person WHERE school_id = '10XA00'",
    )
    .await;
    let (_, new) = sim
        .server
        .with_world(|w| w.merge_at_broker(&id("10XA00")))
        .expect("merged");
    sim.server.with_world(|w| w.broker.close(&id("11XA00")));
    let old: i64 = count(&store, "SELECT broker_id FROM school WHERE id = '10XA00'").await;
    // A dry run only says what it would follow; nothing is written.
    let dry = sim.env.run(&["sync", "--school", "10XA00", "--dry-run"]);
    assert!(
        dry.stdout.contains(&format!(
            "merged into {new} at the broker; a run that is not a dry run will follow"
        )),
        "{}",
        dry.all_output()
    );
    assert_eq!(
        count(&store, "SELECT broker_id FROM school WHERE id = '10XA00'").await,
        old,
        "a dry run does not follow the merger"
    );
    let report = sim.sync(&store, false).await;
    let merged = result(&report, "10XA00");
    assert!(
        matches!(merged.outcome, Outcome::Ok | Outcome::Unchanged),
        "{:?} {:?}",
        merged.outcome,
        merged.message
    );
    assert!(
        merged
            .message
            .as_deref()
            .unwrap_or("")
            .contains(&format!("merged into {new}")),
        "{:?}",
        merged.message
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM person WHERE school_id = '10XA00' AND removed_at IS NULL"
        )
        .await,
        people,
        "the same people, not a second copy"
    );
    assert_eq!(
        count(
            &store,
            &format!("SELECT COUNT(*) FROM school WHERE id = '10XA00' AND broker_id = {new}")
        )
        .await,
        1
    );
    // Recorded by the run itself, in its transaction: a journaled change of the school.
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT COUNT(*) FROM change_entry WHERE school_id = '10XA00' AND entity = 'school' \
                 AND field = 'broker_id' AND old_value = '{old}' AND new_value = '{new}' \
                 AND run_id = {}",
                merged.run.expect("run")
            )
        )
        .await,
        1
    );
    let closed = result(&report, "11XA00");
    assert_eq!(closed.outcome, Outcome::Frozen);
    assert_eq!(closed.error_class.as_deref(), Some("school_closed"));
}

#[tokio::test]
async fn while_the_broker_lags_a_move_is_a_recorded_conflict_and_the_broker_wins() {
    let (sim, store) = linked(&[("10XA00", 60)]).await;
    sim.server.with_world(|w| w.broker.lag_nights = 1);
    sim.sync(&store, false).await;
    // Move one pupil to another group in the LAS; the broker passes it on a night later.
    let (pupil, from, to) = sim.server.with_world(|w| {
        w.advance_day();
        let s = &mut w.schools.get_mut(&id("10XA00")).expect("school").school;
        let to = s
            .groups
            .iter()
            .find(|g| !g.composed && g.key != s.pupils[0].group)
            .expect("another group")
            .key
            .clone();
        let p = &mut s.pupils[0];
        let from = std::mem::replace(&mut p.group, to.clone());
        p.subgroups.clear();
        (p.person.key.clone(), from, to)
    });
    let report = sim.sync(&store, false).await;
    let r = result(&report, "10XA00");
    assert!(r.counts.conflicts >= 1, "{:?}", r.counts);
    let conflict = count(
        &store,
        &format!(
            "SELECT COUNT(*) FROM change_entry c JOIN person k ON k.id = c.person_id \
             WHERE c.operation = 'conflict' AND c.field = 'groups' \
             AND k.las_key = '{pupil}' AND c.new_value LIKE '%{from}%' AND c.old_value LIKE '%{to}%'"
        ),
    )
    .await;
    assert_eq!(
        conflict, 1,
        "the conflict names both values, the broker's kept"
    );
    let changes = sim.env.run(&["changes", "--person", &pupil]);
    assert!(changes.stdout.contains("conflict"), "{}", changes.stdout);
    let export = rostersync::store::export::export(store.db(), "10XA00")
        .await
        .expect("export")
        .expect("school");
    let stored = export
        .pupils
        .iter()
        .find(|p| p.las_key.as_deref() == Some(pupil.as_str()))
        .expect("pupil");
    assert_eq!(
        stored.group.as_deref(),
        Some(from.as_str()),
        "the owner's value is stored"
    );
    // A night later the broker agrees and the move goes through.
    sim.server.with_world(|w| {
        w.advance_day();
    });
    sim.sync(&store, false).await;
    let export = rostersync::store::export::export(store.db(), "10XA00")
        .await
        .expect("export")
        .expect("school");
    let stored = export
        .pupils
        .iter()
        .find(|p| p.las_key.as_deref() == Some(pupil.as_str()))
        .expect("pupil");
    assert_eq!(stored.group.as_deref(), Some(to.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_is_said_once_and_its_schools_wait() {
    let (sim, store) = linked(&[("10XA00", 20), ("11XA00", 20), ("12XA00", 20)]).await;
    sim.sync(&store, false).await;
    let expired = sim
        .server
        .pki
        .client_identity(ClientCert::Expired)
        .expect("identity");
    sim.env.write("broker.pem", &expired);
    // check-config reads the certificate's end date: expired yesterday.
    let check = sim.env.run(&["check-config"]);
    let said = check.ok().stderr.clone();
    assert!(
        said.contains("WARNING: the broker connection's client certificate expired on"),
        "{said}"
    );
    let out = sim.env.run(&["sync"]);
    let line = out.fails_with(1);
    assert!(
        line.contains("the broker connection refused rostersync's own identity"),
        "{line}"
    );
    assert!(line.contains("3 school(s) wait for it"), "{line}");
    assert_eq!(out.stdout.matches("PROBLEM:").count(), 1, "{}", out.stdout);
    assert_eq!(
        out.stdout
            .matches("waiting for the broker connection")
            .count(),
        3,
        "{}",
        out.stdout
    );
    // Nothing was run, so nothing was frozen school by school.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM sync_run WHERE outcome <> 'ok'"
        )
        .await,
        0
    );
    crate::support::assert_no_secret(&out.all_output(), "sync output");
    // status says it too, until the certificate is fixed.
    let status = sim.env.run(&["status"]);
    assert!(
        status
            .stdout
            .contains("PROBLEM with the broker connection since"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("PROBLEM: the broker connection's client certificate expired on"),
        "{}",
        status.stdout
    );
    let valid = sim
        .server
        .pki
        .client_identity(ClientCert::Valid)
        .expect("identity");
    sim.env.write("broker.pem", &valid);
    let check = sim.env.run(&["check-config"]);
    let until = (chrono::Utc::now() + chrono::Duration::days(365)).format("%Y-%m-%d");
    assert!(
        check.ok().stderr.contains(&format!(
            "the broker connection's client certificate is valid until {until}"
        )),
        "{}",
        check.stderr
    );
    sim.env.run(&["sync"]).ok();
    let status = sim.env.run(&["status"]);
    assert!(!status.stdout.contains("PROBLEM"), "{}", status.stdout);
}
