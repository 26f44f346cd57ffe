//! What every rostersync connector shares: the `Connector` trait, the per-school `Snapshot`
//! types, the classified `ConnectorError`, and one HTTP client that owns timeouts, body caps,
//! retries and redaction so protocol crates only know their protocol.

pub mod config;
mod connector;
mod error;
pub mod http;
pub mod json;
mod school;
pub mod secret;
mod snapshot;
pub mod tls;

pub use connector::{BoxFuture, Connector, FetchOutcome, FetchRequest};
pub use error::{ConnectorError, ErrorKind, clean};
pub use school::{SchoolId, SchoolIdError, SchoolYear};
pub use secret::{SecretError, SecretRef};
pub use snapshot::{
    GroupKind, GroupRecord, PersonKeys, PersonName, PupilRecord, Reject, RoleScope, Snapshot,
    SourceKind, StaffGroupLink, StaffRecord, StaffRole,
};
