//! The contract between the engine and a source: fetch one school, get a snapshot or a reason.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::{ConnectorError, SchoolId, SchoolYear, Snapshot, SourceKind};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything a connector needs to fetch one school.
#[derive(Debug)]
pub struct FetchRequest {
    pub school: SchoolId,
    pub school_year: SchoolYear,
    /// The school's own credential for this source (autorisatiesleutel, portal token).
    pub credential: Option<SecretString>,
    /// The school's id at the source when it is not the BRIN (broker institution id).
    pub remote_id: Option<String>,
    /// When rostersync last received a complete answer; enables conditional fetches.
    pub last_received: Option<DateTime<Utc>>,
    /// The source's own change marker from the last good run.
    pub last_marker: Option<String>,
}

/// What a fetch can answer besides an error.
#[derive(Debug)]
pub enum FetchOutcome {
    Snapshot(Box<Snapshot>),
    /// The source says nothing changed since `last_received` / `last_marker`.
    Unchanged,
    /// The source has no data for this school. Never to be read as "the school is empty".
    NoData {
        detail: String,
    },
}

/// A source of roster data: a LAS connection, the broker, a portal.
/// Implementations turn bytes into snapshots and nothing else.
pub trait Connector: Send + Sync {
    fn kind(&self) -> SourceKind;

    /// A short name for logs and status (`esis`, `basispoort`).
    fn name(&self) -> &str;

    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
    ) -> BoxFuture<'a, Result<FetchOutcome, ConnectorError>>;

    /// Check what every school of this connection shares (rostersync's own identity, such as
    /// a client certificate) once, before its schools are asked. A connection without such a
    /// shared identity has nothing to check.
    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A shared connector is a connector: wrappers (a concurrency limit) take either.
impl<T: Connector + ?Sized> Connector for std::sync::Arc<T> {
    fn kind(&self) -> SourceKind {
        (**self).kind()
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
    ) -> BoxFuture<'a, Result<FetchOutcome, ConnectorError>> {
        (**self).fetch(request)
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        (**self).check()
    }
}
