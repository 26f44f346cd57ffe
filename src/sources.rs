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
