//! Every official example message, served over loopback HTTP as a LAS would send it (200 for
//! answers, 500 for faults) and fetched with the connector.

use std::path::PathBuf;
use std::time::Duration;

use connector_api::http::{HttpPolicy, TlsSettings};
use connector_api::{Connector, FetchOutcome, FetchRequest, SchoolYear};
use connector_uwlr::{Transfer, UwlrConnector, UwlrSettings};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/uwlr-examples")
}

/// Serve `body` with `status` to every connection; returns the endpoint URL.
async fn serve(status: u16, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                // Read the request (headers and the SOAP body) before answering.
                let mut buf = vec![0u8; 64 * 1024];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/uwlr")
}

async fn fetch(file: &str) -> Result<FetchOutcome, connector_api::ConnectorError> {
    let body = std::fs::read(examples().join(file)).expect("example file");
    let status = if file.starts_with("soap-fault") {
        500
    } else {
        200
    };
    fetch_from(serve(status, body).await).await
}

async fn fetch_from(url: String) -> Result<FetchOutcome, connector_api::ConnectorError> {
    let connector = UwlrConnector::new(UwlrSettings {
        name: "examples".into(),
        endpoint: url.parse().expect("url"),
        klantnaam: "PublisherName".into(),
        klantcode: SecretString::from("PUBLISHER-CODE"),
        xsd_version: "2.2".into(),
        data_set: None,
        transfer: Transfer::AllInOne,
        headers: Vec::new(),
        policy: HttpPolicy {
            max_attempts: 1,
            request_timeout: Duration::from_secs(5),
            ..HttpPolicy::default()
        },
        tls: TlsSettings::default(),
    })
    .expect("connector");
    let request = FetchRequest {
        school: "99XX00".parse().expect("id"),
        school_year: SchoolYear::starting(2024),
        credential: Some(SecretString::from("SCHOOL-KEY-FROM-LAS")),
        remote_id: None,
        last_received: None,
        last_marker: None,
    };
    connector.fetch(&request).await
}

#[tokio::test]
async fn every_example_file_is_fetched_and_understood() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).expect("examples directory") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let result = fetch(&name).await;
        match name.as_str() {
            "leerlinggegevens_antwoord.full-2.2.xml" => {
                let Ok(FetchOutcome::Snapshot(s)) = result else {
                    unreachable!("{name}: {result:?}");
                };
                assert_eq!(
                    (s.groups.len(), s.pupils.len(), s.staff.len()),
                    (3, 2, 2),
                    "{name}"
                );
                assert!(s.rejects.is_empty(), "{:?}", s.rejects);
            }
            "leerlinggegevens_antwoord.geenwijzigingen.xml" => {
                assert!(
                    matches!(result, Ok(FetchOutcome::Unchanged)),
                    "{name}: {result:?}"
                );
            }
            "structuur_antwoord.xml" => {
                let Ok(FetchOutcome::Snapshot(s)) = result else {
                    unreachable!("{name}: {result:?}");
                };
                assert_eq!((s.groups.len(), s.pupils.len()), (2, 0), "{name}");
            }
            "soap-fault.AutorisatieOngeldig.xml" => {
                let err = result.expect_err(&name);
                assert_eq!(err.class(), "credentials_rejected", "{name}");
            }
            // Requests are not answers: a LAS sending one back is a malformed answer.
            _ => {
                let err = result.expect_err(&name);
                assert_eq!(err.class(), "malformed", "{name}: {err}");
            }
        }
        seen += 1;
    }
    assert!(seen >= 7, "only {seen} example files found");
}

/// A LAS may quote what it was sent: a fault naming the key it refuses, an error page showing
/// the request. Neither the school's key nor the publisher's code may reach the error (it is
/// stored with the run and logged).
#[tokio::test]
async fn a_key_the_las_repeats_is_not_in_the_error() {
    let fault = "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\
        <soap:Body><soap:Fault><faultcode>soap:Client.AutorisatieOngeldig</faultcode>\
        <faultstring>Sleutel SCHOOL-KEY-FROM-LAS van klant PUBLISHER-CODE is ongeldig</faultstring>\
        </soap:Fault></soap:Body></soap:Envelope>";
    let page = "<html><body>Bad request: <aut:autorisatiesleutel>SCHOOL-KEY-FROM-LAS\
        </aut:autorisatiesleutel><aut:klantcode>PUBLISHER-CODE</aut:klantcode></body></html>";
    for (status, body, class) in [
        (500, fault, "credentials_rejected"),
        (400, page, "invalid_request"),
    ] {
        let err = fetch_from(serve(status, body.as_bytes().to_vec()).await)
            .await
            .expect_err("refused");
        let shown = err.to_string();
        assert_eq!(err.class(), class, "{shown}");
        assert!(!shown.contains("SCHOOL-KEY"), "{shown}");
        assert!(!shown.contains("PUBLISHER-CODE"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
