//! Builds the connectors the configuration describes (Vector's habit: a config type builds
//! its runtime object). Secrets are read here, at the moment a connector is made.

use std::time::Duration;

use connector_api::ConnectorError;
use connector_api::http::{HttpPolicy, TlsSettings};
use connector_uwlr::{Transfer, UwlrConnector, UwlrSettings};

use connector_basispoort::{BasispoortConfig, BasispoortConnector};
use connector_zermelo::{ZermeloConfig, ZermeloConnector};

use crate::settings::{
    BrokerKind, BrokerSettings, LasSettings, SecretError, SecretRef, TransferStyle,
};

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

/// An extra trust root (a CA certificate is no secret, so it leaves its wrapper).
fn trust_root(reference: Option<&SecretRef>) -> Result<Option<Vec<u8>>, SecretError> {
    reference.map(SecretRef::load_public_bytes).transpose()
}

/// A school's portal connection; the token travels with each request (it is the school's).
pub fn portal_connector(
    school: &str,
    z: &crate::settings::ZermeloSettings,
) -> Result<ZermeloConnector, SourceError> {
    let connection = format!("the portal connection of school {school}");
    ZermeloConnector::new(ZermeloConfig {
        portal: z.portal.clone(),
        ca_pem: trust_root(z.ca_certificate.as_ref()).map_err(|e| SourceError::Secret {
            connection: connection.clone(),
            source: e,
        })?,
        policy: HttpPolicy {
            max_body_bytes: z.max_response_mb * 1024 * 1024,
            ..HttpPolicy::default()
        },
    })
    .map_err(|e| SourceError::Connector {
        connection,
        source: e,
    })
}

/// The broker connection, with its client certificate and optional trust root.
pub fn broker_connector(broker: &BrokerSettings) -> Result<BasispoortConnector, SourceError> {
    const CONNECTION: &str = "the broker connection";
    let secret = |e| SourceError::Secret {
        connection: CONNECTION.into(),
        source: e,
    };
    let BrokerKind::Basispoort = broker.kind;
    BasispoortConnector::new(BasispoortConfig {
        endpoint: broker.endpoint.clone(),
        client_identity_pem: broker.client_certificate.load_bytes().map_err(secret)?,
        ca_pem: trust_root(broker.ca_certificate.as_ref()).map_err(secret)?,
        policy: HttpPolicy {
            request_timeout: Duration::from_secs(broker.timeout_seconds),
            max_body_bytes: broker.max_response_mb * 1024 * 1024,
            ..HttpPolicy::default()
        },
    })
    .map_err(|e| SourceError::Connector {
        connection: CONNECTION.into(),
        source: e,
    })
}

pub fn las_connector(las: &LasSettings) -> Result<UwlrConnector, SourceError> {
    let connection = format!("LAS connection '{}'", las.name);
    let secret = |e| SourceError::Secret {
        connection: connection.clone(),
        source: e,
    };
    let klantcode = las.klantcode.load_string().map_err(secret)?;
    let client_identity_pem = las
        .client_certificate
        .as_ref()
        .map(|c| c.load_bytes())
        .transpose()
        .map_err(secret)?;
    let extra_roots_pem = trust_root(las.ca_certificate.as_ref()).map_err(secret)?;
    let mut headers = Vec::new();
    for (name, value) in &las.headers {
        headers.push((name.clone(), value.load_string().map_err(secret)?));
    }
    UwlrConnector::new(UwlrSettings {
        name: las.name.clone(),
        endpoint: las.endpoint.clone(),
        klantnaam: las.klantnaam.clone(),
        klantcode,
        xsd_version: las.xsd_version.clone(),
        data_set: las.gegevenssetid.clone(),
        transfer: match las.transfer {
            TransferStyle::AllesInEen => Transfer::AllInOne,
            TransferStyle::Getrapt => Transfer::Getrapt,
        },
        headers,
        policy: HttpPolicy {
            request_timeout: Duration::from_secs(las.timeout_seconds),
            max_body_bytes: las.max_response_mb * 1024 * 1024,
            ..HttpPolicy::default()
        },
        tls: TlsSettings {
            client_identity_pem,
            extra_roots_pem,
        },
    })
    .map_err(|e| SourceError::Connector {
        connection: connection.clone(),
        source: e,
    })
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
