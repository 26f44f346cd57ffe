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
    let mut w = World::new(5, rostersync::sync::apply::today());
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
        school_year: SchoolYear::containing(rostersync::sync::apply::today()),
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
    // Under the new id the same people, with the broker ids of the new institution.
    let after = snapshot(&c, &request(&sim, "10XA00", None)).await;
    assert_eq!(after.pupils.len(), first.pupils.len());
    let las_keys = |s: &Snapshot| {
        let mut k: Vec<_> = s.pupils.iter().map(|p| p.keys.las_key.clone()).collect();
        k.sort();
        k
    };
    assert_eq!(las_keys(&after), las_keys(&first));

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
