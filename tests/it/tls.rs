//! TLS refused on either side, against real TLS peers on loopback: a server that answers
//! rostersync's client certificate with each alert a broker or an ESIS endpoint sends, and a
//! server whose certificate rostersync does not trust. Each is one problem of the connection,
//! said once with the certificate named; its schools wait; nothing is retried in a loop.

use connector_sim::pki::Pki;
use connector_sim::refuse::{Refusal, RefusingServer};
use connector_sim::{ClientCert, World};

use crate::support::{Env, SimEnv, count};

const SCHOOLS: [&str; 3] = ["10XA00", "11XA00", "12XA00"];

/// A configuration with `connection` (a `[[las]]` or `[broker]` block) and three schools on
/// it (`school_line` links each).
fn configure(env: &Env, connection: &str, school_line: impl Fn(usize) -> String) {
    let mut text = connection.to_owned();
    for (n, id) in SCHOOLS.iter().enumerate() {
        text.push_str(&format!(
            "\n[[school]]\nid = \"{id}\"\n{}\n",
            school_line(n)
        ));
    }
    env.write_config(&text);
}

/// `sync` fails once with the problem, every school waits, and nothing ran.
async fn said_once(env: &Env, connection: &str, wanted: &[&str]) -> String {
    env.run(&["migrate"]).ok();
    let out = env.run(&["sync"]);
    let line = out.fails_with(1);
    assert!(
        line.contains("3 school(s) wait for it"),
        "{line}\n{}",
        out.stderr
    );
    let problems: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("PROBLEM: "))
        .collect();
    assert_eq!(problems.len(), 1, "{}", out.stdout);
    for w in wanted {
        assert!(problems[0].contains(w), "{w} in {}", problems[0]);
    }
    assert_eq!(
        out.stdout
            .matches(&format!("skipped: waiting for {connection}"))
            .count(),
        3,
        "{}",
        out.stdout
    );
    let store = rostersync::store::Store::open(
        &env.settings().store,
        rostersync::store::OpenMode::Existing,
    )
    .await
    .expect("store");
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM sync_run").await,
        0,
        "no school ran, so none failed on its own"
    );
    let status = env.run(&["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("PROBLEM with {connection} since")),
        "{}",
        status.stdout
    );
    crate::support::assert_no_secret(&out.all_output(), "sync output");
    problems[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_refuses_our_certificate_is_one_problem_for_each_alert() {
    let pki = Pki::generate().expect("test PKI");
    // Basispoort speaks TLS 1.2: the refusal is an alert inside the handshake. (Without a
    // certificate there is no broker connection at all, so certificate_required is the LAS's.)
    for refusal in Refusal::ALL
        .into_iter()
        .filter(|r| *r != Refusal::CertificateRequired)
    {
        let server = RefusingServer::start(&pki, refusal, false)
            .await
            .expect("server");
        let env = Env::new().await;
        let cert = env.write(
            "broker.pem",
            &pki.client_identity(ClientCert::Valid).expect("identity"),
        );
        let ca = env.write("ca.pem", pki.ca_pem());
        configure(
            &env,
            &format!(
                "[broker]\nkind = \"basispoort\"\nendpoint = \"{}\"\n\
                 client_certificate = {{ file = \"{}\" }}\nca_certificate = {{ file = \"{}\" }}\n",
                server.url(),
                cert.display(),
                ca.display()
            ),
            |n| format!("broker_id = {}", 1000 + n),
        );
        let cert_shown = format!("(its client certificate: file {})", cert.display());
        said_once(
            &env,
            "the broker connection",
            &[
                "the broker connection refused rostersync's own identity",
                &format!("alert {}", refusal.alert()),
                &cert_shown,
            ],
        )
        .await;
        assert_eq!(
            server.connections(),
            1,
            "{refusal:?}: checked once, not retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_las_that_refuses_our_certificate_is_one_problem_for_each_alert() {
    let pki = Pki::generate().expect("test PKI");
    // TLS 1.3: the client learns of the refusal only when it reads its first answer.
    for refusal in Refusal::ALL {
        let server = RefusingServer::start(&pki, refusal, true)
            .await
            .expect("server");
        let env = Env::new().await;
        let cert = env.write(
            "esis.pem",
            &pki.client_identity(ClientCert::Valid).expect("identity"),
        );
        let ca = env.write("ca.pem", pki.ca_pem());
        let client_certificate = if refusal == Refusal::CertificateRequired {
            String::new()
        } else {
            format!("client_certificate = {{ file = \"{}\" }}\n", cert.display())
        };
        let d = env.dir.path().display();
        configure(
            &env,
            &format!(
                "[[las]]\nname = \"esis-mtls\"\nkind = \"uwlr\"\nendpoint = \"{}uwlr\"\n\
                 klantnaam = \"Publisher\"\nklantcode = {{ file = \"{d}/klantcode\" }}\n\
                 {client_certificate}ca_certificate = {{ file = \"{}\" }}\n",
                server.url(),
                ca.display()
            ),
            |_| format!("las = \"esis-mtls\"\nkey = {{ file = \"{d}/k-99XX00\" }}"),
        );
        let cert_shown = if refusal == Refusal::CertificateRequired {
            "(it has no client_certificate configured)".to_owned()
        } else {
            format!("(its client certificate: file {})", cert.display())
        };
        said_once(
            &env,
            "the LAS connection 'esis-mtls'",
            &[
                "the LAS connection 'esis-mtls' refused rostersync's own identity",
                &format!("alert {}", refusal.alert()),
                &cert_shown,
            ],
        )
        .await;
        // One check; a second connection only when the HTTP client could not say why the
        // first one ended (TLS 1.3: the alert comes after the handshake). Never retries.
        assert!(
            server.connections() <= 2,
            "{refusal:?}: checked once, not retried: {} connections",
            server.connections()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_we_do_not_trust_names_the_ca_to_add() {
    // The broker's CA is not the one configured: rostersync refuses the broker.
    let (sim, _store) =
        SimEnv::start_linked(World::new(5, rostersync::sync::run::today()), true, false).await;
    sim.server.with_world(|w| {
        for id in SCHOOLS {
            w.add_school(
                id.parse().expect("id"),
                connector_sim::SchoolKind::Primary,
                10,
            );
        }
    });
    sim.configure("");
    let stranger = Pki::generate().expect("another PKI");
    sim.env.write("broker-ca.pem", stranger.ca_pem());
    // The LAS side is plain HTTP to the simulator; only the broker is refused.
    let out = sim.env.run(&["sync"]);
    let line = out.fails_with(1);
    assert!(
        line.contains("rostersync does not trust the certificate of the broker connection"),
        "{line}"
    );
    assert!(
        line.contains("it is issued by CN=rostersync simulated broker CA"),
        "{line}"
    );
    assert!(line.contains("ca_certificate"), "{line}");
    assert!(line.contains("3 school(s) wait for it"), "{line}");
}
