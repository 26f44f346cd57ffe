//! Asking a school's sources: one request per source (with what it said last time), sent at
//! once; a merged institution is followed, and a source that said "unchanged" is asked again
//! in full when another sent a full answer.

use std::sync::Arc;

use connector_api::{Connector, ConnectorError, FetchOutcome, FetchRequest, SchoolYear};
use secrecy::ExposeSecret;

use super::decide::{self, Decided, Parked};
use super::write::Merger;
use super::{LAS, RunError, Source, Target};
use crate::store::Store;
use crate::store::source_state::{self, SourceState};
use crate::sync::health::Baseline;

/// One source as this run asks it.
pub(super) struct Ask<'a> {
    pub source: &'a Source,
    connector: Arc<dyn Connector>,
    pub state: Option<SourceState>,
    pub request: FetchRequest,
    /// The fingerprint of the school's credential at this source (parking remembers it).
    pub fingerprint: Option<String>,
}

impl Ask<'_> {
    /// "school 99XX00" for the LAS, "school 99XX00, broker" for another source: the LAS is
    /// the default, so its messages stay as short as they were.
    pub fn subject(&self, school: &str) -> String {
        if self.source.name == LAS {
            format!("school {school}")
        } else {
            format!("school {school}, {}", self.source.name)
        }
    }

    pub fn baseline(&self) -> Baseline {
        let count = |n: Option<i32>| n.map(|n| n.max(0) as u32);
        Baseline {
            pupils: count(self.state.as_ref().and_then(|s| s.pupil_count)),
            staff: count(self.state.as_ref().and_then(|s| s.staff_count)),
            school_year: self
                .state
                .as_ref()
                .and_then(|s| s.school_year.as_deref())
                .and_then(|y| y.parse().ok()),
        }
    }

    /// Send the request once.
    pub async fn send(&self) -> Result<FetchOutcome, ConnectorError> {
        self.connector.fetch(&self.request).await
    }

    /// Ask again without any "since": the merge needs this source's whole answer.
    async fn refetch(&mut self) -> Result<FetchOutcome, ConnectorError> {
        self.request.last_marker = None;
        self.request.last_received = None;
        self.connector.fetch(&self.request).await
    }
}

/// The requests of a run, or why it stops before asking anything: frozen by an operator, no
/// source, a connection or credential that cannot be used, a parked credential.
pub(super) async fn prepare<'a>(
    store: &Store,
    target: &'a Target,
    school: &str,
    year: SchoolYear,
) -> Result<Result<Vec<Ask<'a>>, Decided>, RunError> {
    if let Some(who) = &target.frozen_by {
        return Ok(Err(decide::frozen_by_operator(school, who)));
    }
    if target.sources.is_empty() {
        return Ok(Err(decide::no_source(school)));
    }
    let mut asks = Vec::with_capacity(target.sources.len());
    for source in &target.sources {
        let state = source_state::load(store.db(), school, source.name).await?;
        match ask(target, source, state, school, year) {
            Ok(a) => asks.push(a),
            Err(stop) => return Ok(Err(*stop)),
        }
    }
    Ok(Ok(asks))
}

/// The request to one source, from what it said last time (`state`; none: the whole answer).
pub(super) fn ask<'a>(
    target: &Target,
    source: &'a Source,
    state: Option<SourceState>,
    school: &str,
    year: SchoolYear,
) -> Result<Ask<'a>, Box<Decided>> {
    let connector = source
        .connector
        .clone()
        .map_err(|why| Box::new(decide::no_connector(school, &why)))?;
    let credential = match &source.credential {
        None => None,
        Some(Ok(c)) => Some(c.clone()),
        Some(Err(why)) => return Err(Box::new(decide::credential_unreadable(school, why))),
    };
    let fingerprint = credential
        .as_ref()
        .map(|c| source_state::fingerprint(school, c.expose_secret()));
    if let (Some(s), Some(fp)) = (&state, &fingerprint)
        && s.parked_fingerprint.as_deref() == Some(fp.as_str())
    {
        let parked = Parked {
            source: source.name,
            since: s.parked_at,
            reason: s.parked_reason.as_deref(),
        };
        return Err(Box::new(decide::parked(school, &parked)));
    }
    let request = FetchRequest {
        school: target.id.clone(),
        school_year: year,
        credential,
        remote_id: source.remote_id.clone(),
        last_received: state.as_ref().and_then(|s| s.last_received_at),
        last_marker: state.as_ref().and_then(|s| s.marker.clone()),
    };
    Ok(Ask {
        source,
        connector,
        state,
        request,
        fingerprint,
    })
}

/// Send every request at once. A merged institution is followed within the run (same school,
/// new id, no duplicate; the writer records the new id in the run's own transaction, a dry
/// run not at all); when any source sent a full answer, the ones that said "unchanged" are
/// asked again in full.
pub(super) async fn fetch(
    asks: &mut [Ask<'_>],
) -> (Vec<Result<FetchOutcome, ConnectorError>>, Option<Merger>) {
    let mut fetched: Vec<Result<FetchOutcome, ConnectorError>> =
        futures_util::future::join_all(asks.iter().map(|a| a.connector.fetch(&a.request))).await;
    let mut merger = None;
    for (ask, got) in asks.iter_mut().zip(fetched.iter_mut()) {
        if let Err(ConnectorError::SchoolMerged { into }) = got
            && let Ok(new_id) = into.parse::<i64>()
        {
            merger = Some(Merger {
                from: ask.request.remote_id.clone().unwrap_or_default(),
                into: new_id,
            });
            ask.request.remote_id = Some(new_id.to_string());
            *got = ask.refetch().await;
        }
    }
    if decide::needs_full_answers(&fetched) {
        for (ask, got) in asks.iter_mut().zip(fetched.iter_mut()) {
            if matches!(got, Ok(FetchOutcome::Unchanged)) {
                *got = ask.refetch().await;
            }
        }
    }
    (fetched, merger)
}
