//! Builds the connectors the configuration describes: each connector's crate owns its
//! configuration and its `build()` (Vector's habit: a config type builds its runtime object);
//! here the error says which connection it is about. Secrets are read when a connector is
//! made.

use std::sync::Arc;

use connector_api::config::BuildError;
use connector_api::{Connector, ConnectorError};

use connector_basispoort::BasispoortConnector;
use connector_zermelo::ZermeloConnector;

use crate::settings::{BrokerSettings, LasSettings, SecretError};

/// How the broker connection is named in problems, `status` and the console.
pub const THE_BROKER: &str = "the broker connection";

/// How a LAS connection is named in problems, `status` and the console.
pub fn las_connection(name: &str) -> String {
    format!("the LAS connection '{name}'")
}

/// Within this many days of its end a client certificate is a problem to say.
pub const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// A connection's client certificate and until when it is valid (or why that is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub connection: String,
    pub valid_until: Result<chrono::DateTime<chrono::Utc>, String>,
}

impl ClientCertificate {
    /// What an operator should know about it at `now`, if anything.
    pub fn problem(&self, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
        let until = match &self.valid_until {
            Ok(t) => *t,
            Err(why) => return Some(format!("{}'s client certificate: {why}", self.connection)),
        };
        let days = (until - now).num_days();
        if until <= now {
            Some(format!(
                "{}'s client certificate expired on {}: install the renewed one (every request \
                 is refused until then)",
                self.connection,
                until.format("%Y-%m-%d")
            ))
        } else if days < CERTIFICATE_WARNING_DAYS {
            Some(format!(
                "{}'s client certificate expires on {} (in {days} days): renew it before then",
                self.connection,
                until.format("%Y-%m-%d")
            ))
        } else {
            None
        }
    }
}

/// Every client certificate the configuration names (LAS connections with mutual TLS, the
/// broker), read to learn their end dates.
pub fn client_certificates(settings: &crate::settings::Settings) -> Vec<ClientCertificate> {
    let mut refs = Vec::new();
    for las in &settings.las {
        let LasSettings::Uwlr(c) = las;
        if let Some(r) = &c.client_certificate {
            refs.push((las_connection(&c.name), r));
        }
    }
    if let Some(b) = &settings.broker {
        refs.push((THE_BROKER.to_owned(), &b.basispoort().client_certificate));
    }
    refs.into_iter()
        .map(|(connection, r)| ClientCertificate {
            connection,
            valid_until: match r.load_bytes() {
                Ok(pem) => {
                    connector_api::tls::pem_expiry(secrecy::ExposeSecret::expose_secret(&pem))
                        .ok_or_else(|| "it holds no readable PEM certificate".to_owned())
                }
                Err(e) => Err(e.to_string()),
            },
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{connection}: {source}")]
    Secret {
        connection: String,
        #[source]
        source: SecretError,
    },
    #[error("{connection}: {source}")]
    Connector {
        connection: String,
        #[source]
        source: ConnectorError,
    },
}

impl SourceError {
    /// A connector's build error, said with the connection it is about.
    fn of(connection: String, e: BuildError) -> SourceError {
        match e {
            BuildError::Secret(source) => SourceError::Secret { connection, source },
            BuildError::Connector(source) => SourceError::Connector { connection, source },
        }
    }
}

/// A school's portal connection; the token travels with each request (it is the school's).
pub fn portal_connector(
    school: &str,
    z: &crate::settings::ZermeloSettings,
) -> Result<ZermeloConnector, SourceError> {
    z.build()
        .map_err(|e| SourceError::of(format!("the portal connection of school {school}"), e))
}

/// The broker connection, with its client certificate and optional trust root.
pub fn broker_connector(broker: &BrokerSettings) -> Result<BasispoortConnector, SourceError> {
    broker
        .basispoort()
        .build()
        .map_err(|e| SourceError::of("the broker connection".into(), e))
}

/// A LAS connection's connector, built by its protocol's crate.
pub fn las_connector(las: &LasSettings) -> Result<Arc<dyn Connector>, SourceError> {
    las.build()
        .map_err(|e| SourceError::of(format!("LAS connection '{}'", las.name()), e))
}

/// A connector that lets at most `n` fetches run at once: vendors throttle per client, and
/// one busy connection must not take every worker.
pub struct Limited<C> {
    inner: C,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl<C> Limited<C> {
    pub fn new(inner: C, n: usize) -> Self {
        Limited {
            inner,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(n.max(1))),
        }
    }
}

impl<C: connector_api::Connector> connector_api::Connector for Limited<C> {
    fn kind(&self) -> connector_api::SourceKind {
        self.inner.kind()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn fetch<'a>(
        &'a self,
        request: &'a connector_api::FetchRequest,
    ) -> connector_api::BoxFuture<
        'a,
        Result<connector_api::FetchOutcome, connector_api::ConnectorError>,
    > {
        Box::pin(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = self.permits.acquire().await;
            self.inner.fetch(request).await
        })
    }

    fn check(&self) -> connector_api::BoxFuture<'_, Result<(), connector_api::ConnectorError>> {
        self.inner.check()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use connector_api::{
        BoxFuture, Connector, ConnectorError, FetchOutcome, FetchRequest, SchoolYear, SourceKind,
    };

    use super::Limited;

    /// A source that takes a moment per fetch and remembers how many ran at once.
    #[derive(Default)]
    struct Busy {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Connector for Busy {
        fn kind(&self) -> SourceKind {
            SourceKind::Las
        }

        fn name(&self) -> &str {
            "busy"
        }

        fn fetch<'a>(
            &'a self,
            _: &'a FetchRequest,
        ) -> BoxFuture<'a, Result<FetchOutcome, ConnectorError>> {
            Box::pin(async move {
                let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                Ok(FetchOutcome::Unchanged)
            })
        }
    }

    #[tokio::test]
    async fn a_connection_never_runs_more_fetches_than_its_limit() {
        let limited = Arc::new(Limited::new(Busy::default(), 2));
        let request = FetchRequest {
            school: "99XX00".parse().expect("id"),
            school_year: SchoolYear::starting(2026),
            credential: None,
            remote_id: None,
            last_received: None,
            last_marker: None,
        };
        let all = (0..8).map(|_| limited.fetch(&request));
        let done = futures_util::future::join_all(all).await;
        assert_eq!(done.len(), 8);
        assert!(
            done.iter()
                .all(|r| matches!(r, Ok(FetchOutcome::Unchanged)))
        );
        assert_eq!(limited.inner.most.load(Ordering::SeqCst), 2);
    }
}

#[cfg(test)]
mod certificate_tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    #[test]
    fn a_certificate_is_said_when_it_nears_its_end_or_is_past_it() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
            .single()
            .expect("time");
        let cert = |until| ClientCertificate {
            connection: THE_BROKER.into(),
            valid_until: Ok(until),
        };
        assert_eq!(cert(now + Duration::days(90)).problem(now), None);
        let soon = cert(now + Duration::days(12)).problem(now).expect("soon");
        assert!(
            soon.contains("expires on 2026-12-13 (in 12 days)"),
            "{soon}"
        );
        let past = cert(now - Duration::days(1)).problem(now).expect("past");
        assert!(past.contains("expired on 2026-11-30"), "{past}");
        let unread = ClientCertificate {
            connection: las_connection("esis"),
            valid_until: Err("it holds no readable PEM certificate".into()),
        };
        assert!(
            unread
                .problem(now)
                .expect("unread")
                .starts_with("the LAS connection 'esis'")
        );
    }

    #[test]
    fn the_end_date_is_read_from_the_identitys_own_certificate() {
        let pki = connector_sim::pki::Pki::generate().expect("pki");
        let pem = pki
            .client_identity(connector_sim::ClientCert::Valid)
            .expect("identity");
        let until = connector_api::tls::pem_expiry(pem.as_bytes()).expect("an end date");
        let days = (until - Utc::now()).num_days();
        assert!((363..=365).contains(&days), "{until}");
        assert_eq!(connector_api::tls::pem_expiry(b"not a certificate"), None);
    }
}
