//! The configuration: built-in defaults, then the file from `--config` / `ROSTERSYNC_CONFIG`
//! (else /etc/rostersync/rostersync.toml when it exists), then `ROSTERSYNC__SECTION__KEY`
//! variables. Unknown keys are errors; secrets are references.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use connector_api::SchoolId;
use connector_api::http::Url;
use serde::{Deserialize, Deserializer, Serialize};

pub use connector_api::secret::{
    INSTALLED_CREDENTIALS_DIR, SecretError, SecretRef, credentials_directory,
};

pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The configuration of an installed rostersync (the package's conffile, `init`'s default).
pub const INSTALLED_CONFIG: &str = "/etc/rostersync/rostersync.toml";

/// The file to read when none was named: the installed configuration, if this machine has one.
/// So an administrator's `rostersync status` on a server reads what the service reads.
pub fn installed_config() -> Option<PathBuf> {
    let path = Path::new(INSTALLED_CONFIG);
    path.is_file().then(|| path.to_owned())
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub store: StoreSettings,
    pub schedule: ScheduleSettings,
    pub admin: AdminSettings,
    /// The apps' API (OneRoster); off unless `listen` is set.
    #[serde(default)]
    pub api: ApiSettings,
    pub security: SecuritySettings,
    pub log: LogSettings,
    pub sync: SyncSettings,
    pub rights: RightsSettings,
    #[serde(default)]
    pub las: Vec<LasSettings>,
    pub broker: Option<BrokerSettings>,
    #[serde(default)]
    pub school: Vec<SchoolSettings>,
    /// The summer: when next year is asked for and when it goes live.
    #[serde(default)]
    pub rollover: RolloverSettings,
}

/// `[rollover]`: days of the year, local time.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloverSettings {
    /// From this day on, each daily cycle also asks every LAS for next school year.
    #[serde(default = "default_prepare_from")]
    pub prepare_from: Day,
    /// On this day next school year becomes the live one.
    #[serde(default = "default_switch_on")]
    pub switch_on: Day,
}

fn default_prepare_from() -> Day {
    Day(crate::model::rollover::Calendar::default().prepare_from)
}

fn default_switch_on() -> Day {
    Day(crate::model::rollover::Calendar::default().switch_on)
}

impl Default for RolloverSettings {
    fn default() -> Self {
        RolloverSettings {
            prepare_from: default_prepare_from(),
            switch_on: default_switch_on(),
        }
    }
}

impl RolloverSettings {
    pub fn calendar(&self) -> crate::model::rollover::Calendar {
        crate::model::rollover::Calendar {
            prepare_from: self.prepare_from.0,
            switch_on: self.switch_on.0,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.prepare_from.0 >= self.switch_on.0 {
            return Err(format!(
                "rollover.prepare_from ({}) must come before rollover.switch_on ({}) in the \
                 year",
                self.prepare_from.0, self.switch_on.0
            ));
        }
        Ok(())
    }
}

/// A day of the year written `MM-DD`, checked when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day(pub crate::model::rollover::MonthDay);

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map(Day)
            .map_err(|e: String| serde::de::Error::custom(format!("rollover: {e}")))
    }
}

impl Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`. Shown with its password masked.
    #[serde(serialize_with = "redacted")]
    pub url: String,
    pub busy_timeout_ms: u64,
    pub max_connections: u32,
    /// The PostgreSQL password as a secret reference (instead of in the URL).
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Connect to a PostgreSQL server on another machine without a verified TLS connection
    /// (sslmode=verify-full or verify-ca). Off: such a store URL is refused. Logged when on.
    #[serde(default)]
    pub allow_unverified_tls: bool,
    /// Let a package upgrade migrate the store (`migrate --on-upgrade`); off, the upgrade
    /// says what to run and leaves the running daemon alone.
    #[serde(default)]
    pub migrate_on_upgrade: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Local time of the daily cycle, `HH:MM`.
    pub daily: ClockTime,
    /// The IANA time zone `daily` is in (and times are shown in).
    pub timezone: Zone,
    /// Schools start spread over this many minutes after `daily`.
    pub window_minutes: u32,
    /// A school that failed transiently is tried again after this many minutes, doubling.
    pub retry_minutes: u32,
    /// How many such retries a school gets per cycle.
    pub retries: u32,
}

impl ScheduleSettings {
    /// The daily cycle these settings describe.
    pub fn cycle(&self) -> crate::model::schedule::Daily {
        crate::model::schedule::Daily {
            at: self.daily.0,
            tz: self.timezone.0,
            window: std::time::Duration::from_secs(u64::from(self.window_minutes) * 60),
        }
    }
}

/// The safety rules of a sync: how a source's answer is judged and how much it may remove.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Schools fetched at the same time (applies to the store are one at a time on SQLite).
    pub concurrency: usize,
    /// Days a removed pupil, teacher or group keeps its tombstone before it is purged.
    pub retention_days: u32,
    /// Days run records and the journal of living records are kept (`undo` and `changes`
    /// reach this far back); a school's latest run is always kept.
    pub journal_days: u32,
    /// Brakes: removals of one kind are held above this share of what is stored ...
    pub brake_max_share: f64,
    /// ... and above this many records.
    pub brake_max_count: usize,
    /// An answer with fewer pupils than this share of the last good run is distrusted.
    pub collapse_ratio: f64,
    /// Schools whose last good run had fewer pupils are not judged on collapse.
    pub collapse_min_pupils: u32,
    /// A daemon worker's claim on a school lasts this long without a heartbeat; then another
    /// instance may take the school over.
    pub lease_seconds: u64,
}

/// How staff rights are derived from the sources' facts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RightsSettings {
    /// Days a derived grant whose fact disappeared is kept (pending) before it is revoked; it
    /// comes back by itself if the fact reappears in that time.
    pub grace_days: u32,
    /// The derivation rules; a person's rights are the union of what every rule grants.
    pub rules: Vec<RightsRule>,
}

/// One derivation rule: a fact (a group link with one of `link_roles`, or a role named in
/// `roles`) from one of `sources` (any when empty) grants `level`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RightsRule {
    pub name: String,
    /// `own` (no pupil data), `related` (the linked groups, or the role's groups or
    /// departments) or `school` (every group).
    pub level: crate::model::Level,
    #[serde(default)]
    pub link_roles: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub socket: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub token: Option<SecretRef>,
    /// TLS for the TCP listener: a PEM certificate chain and its private key.
    #[serde(default)]
    pub certificate: Option<SecretRef>,
    #[serde(default)]
    pub private_key: Option<SecretRef>,
    /// Listen on an address other machines reach without TLS (the bearer token then travels
    /// in clear text: only behind a TLS-terminating proxy on a trusted network).
    #[serde(default)]
    pub insecure_listen: bool,
    /// Named admins, each with a token of their own, so the journal and the job table say who
    /// approved, undid or resynced (`token` above signs in as `admin`).
    #[serde(default)]
    pub user: Vec<AdminUser>,
    /// A console session ends after this many minutes without a request (and after twelve
    /// hours in any case).
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u32,
}

fn default_session_minutes() -> u32 {
    60
}

/// One named admin of the console and the TCP admin API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    /// Shown in the journal: letters, digits, `.`, `_`, `-` (no e-mail addresses: a log line
    /// names them).
    pub name: String,
    pub token: SecretRef,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// The key that seals school keys at rest. Default: credential `master-key` when running
    /// under systemd, else `master.key` beside the store (created on first use).
    pub master_key: Option<SecretRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// journald under systemd, text on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
    Journald,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    pub filter: String,
    pub format: LogFormat,
}

/// One `[[las]]` connection; `kind` says which protocol, and that connector's crate owns the
/// rest of the block (a new protocol is one crate and one variant here).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LasSettings {
    Uwlr(connector_uwlr::UwlrConfig),
}

impl LasSettings {
    pub fn name(&self) -> &str {
        match self {
            LasSettings::Uwlr(c) => &c.name,
        }
    }

    /// Schools fetched from this connection at the same time.
    pub fn max_concurrent(&self) -> usize {
        match self {
            LasSettings::Uwlr(c) => c.max_concurrent,
        }
    }

    /// Where rostersync's client certificate for this connection is, when it has one.
    pub fn client_certificate(&self) -> Option<&SecretRef> {
        match self {
            LasSettings::Uwlr(c) => c.client_certificate.as_ref(),
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            LasSettings::Uwlr(c) => c.check(),
        }
    }

    fn secrets(&self) -> Vec<(String, &SecretRef)> {
        match self {
            LasSettings::Uwlr(c) => c.secrets(),
        }
    }

    /// The connector, with its secrets read now.
    pub fn build(
        &self,
    ) -> Result<std::sync::Arc<dyn connector_api::Connector>, connector_api::config::BuildError>
    {
        match self {
            LasSettings::Uwlr(c) => Ok(std::sync::Arc::new(c.build()?)),
        }
    }
}

/// The `[broker]` section; `kind` says which broker, and its connector's crate owns the rest.
/// There is one today: the broker's consent lifecycle (permission, revocation, merged
/// institutions) is Basispoort's, so the engine asks it for Basispoort's settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BrokerSettings {
    Basispoort(connector_basispoort::BasispoortSettings),
}

impl BrokerSettings {
    pub fn basispoort(&self) -> &connector_basispoort::BasispoortSettings {
        match self {
            BrokerSettings::Basispoort(b) => b,
        }
    }
}

/// A school's Zermelo portal (`zermelo = { ... }` in its `[[school]]` block).
pub use connector_zermelo::ZermeloSettings;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchoolSettings {
    #[serde(deserialize_with = "school_id", serialize_with = "display")]
    pub id: SchoolId,
    pub name: Option<String>,
    pub las: Option<String>,
    pub key: Option<SecretRef>,
    pub broker_id: Option<i64>,
    pub zermelo: Option<ZermeloSettings>,
}

fn school_id<'de, D: Deserializer<'de>>(d: D) -> Result<SchoolId, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(&v.to_string()))
}

fn redacted<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(v))
}

use connector_api::config::https_url;
pub use connector_api::config::redact_url;

/// The apps' API: OneRoster 1.2 rostering and `/rostersync/v1`, with OAuth 2.0 client
/// credentials.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: Option<SocketAddr>,
    /// TLS: a PEM certificate chain and its private key (else plain HTTP: loopback, or behind
    /// a TLS-terminating reverse proxy).
    pub certificate: Option<SecretRef>,
    pub private_key: Option<SecretRef>,
    /// How long an access token lasts, in seconds.
    #[serde(default = "default_token_seconds")]
    pub token_seconds: u64,
    /// The address apps reach the API at, for the links in answers (`href`); default: the
    /// request's own Host.
    #[serde(
        default,
        deserialize_with = "optional_https_or_local_url",
        serialize_with = "optional_display"
    )]
    pub public_url: Option<Url>,
    /// The apps allowed in.
    #[serde(default)]
    pub client: Vec<ApiClient>,
}

fn default_token_seconds() -> u64 {
    3600
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: None,
            certificate: None,
            private_key: None,
            token_seconds: default_token_seconds(),
            public_url: None,
            client: Vec::new(),
        }
    }
}

/// One app: its id and secret, the schools it may see (`["*"]`: all) and its scopes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClient {
    pub id: String,
    pub secret: SecretRef,
    pub schools: Vec<String>,
    pub scopes: Vec<String>,
}

/// The OneRoster 1.2 scopes a client may be given.
pub const API_SCOPES: [&str; 3] = [
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly",
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly",
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-demographics.readonly",
];

impl ApiSettings {
    fn check(&self) -> Result<(), String> {
        if !(1..=86_400).contains(&self.token_seconds) {
            return Err("api.token_seconds must be between 1 and 86400".into());
        }
        if self.certificate.is_some() != self.private_key.is_some() {
            return Err(
                "api.certificate and api.private_key go together: give both for TLS".into(),
            );
        }
        let mut ids = BTreeSet::new();
        for (i, c) in self.client.iter().enumerate() {
            if c.id.trim().is_empty() || c.id.contains(':') || c.id.chars().any(char::is_control) {
                return Err(format!(
                    "api.client[{i}].id must be a non-empty name without ':' (HTTP Basic uses it)"
                ));
            }
            if !ids.insert(c.id.as_str()) {
                return Err(format!("api.client[{i}].id: '{}' is used twice", c.id));
            }
            if c.schools.is_empty() {
                return Err(format!(
                    "api.client[{i}] ({}): schools is empty; list school ids or [\"*\"]",
                    c.id
                ));
            }
            for school in c.schools.iter().filter(|s| s.as_str() != "*") {
                school
                    .parse::<SchoolId>()
                    .map_err(|e| format!("api.client[{i}] ({}): schools: {e}", c.id))?;
            }
            if let Some(bad) = c.scopes.iter().find(|s| !API_SCOPES.contains(&s.as_str())) {
                return Err(format!(
                    "api.client[{i}] ({}): unknown scope '{bad}' (known: {})",
                    c.id,
                    API_SCOPES.join(", ")
                ));
            }
        }
        Ok(())
    }
}

fn optional_https_or_local_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    https_url(d).map(Some)
}

fn optional_display<S: serde::Serializer>(v: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_str(&redact_url(u.as_ref())),
        None => s.serialize_none(),
    }
}

impl AdminSettings {
    /// The TCP listener needs a token, and TLS unless only this machine can reach it (or
    /// the operator says a proxy in front of it does TLS).
    fn check(&self) -> Result<(), String> {
        self.check_users()?;
        let Some(addr) = self.listen else {
            return Ok(());
        };
        if self.token.is_none() && self.user.is_empty() {
            return Err(
                "admin.listen needs admin.token or [[admin.user]]: the TCP listener \
                 requires a token"
                    .into(),
            );
        }
        let tls = match (&self.certificate, &self.private_key) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            _ => {
                return Err(
                    "admin.certificate and admin.private_key go together: give both for TLS".into(),
                );
            }
        };
        if !tls && !addr.ip().is_loopback() && !self.insecure_listen {
            return Err(format!(
                "admin.listen = \"{addr}\" is reachable from other machines, and without TLS \
                 the admin token would cross the network in clear text: set \
                 admin.certificate and admin.private_key, listen on 127.0.0.1 behind a TLS \
                 proxy, or (a proxy on a trusted network) set admin.insecure_listen = true"
            ));
        }
        Ok(())
    }

    fn check_users(&self) -> Result<(), String> {
        if !(5..=1440).contains(&self.session_minutes) {
            return Err(format!(
                "admin.session_minutes = {} is out of range: use 5 to 1440",
                self.session_minutes
            ));
        }
        let mut seen = BTreeSet::new();
        for u in &self.user {
            let fine = !u.name.is_empty()
                && u.name.len() <= 64
                && u.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !fine {
                return Err(format!(
                    "admin.user name '{}' is not allowed: use 1 to 64 letters, digits, '.', '_' \
                     or '-'",
                    u.name
                ));
            }
            if u.name == "admin" && self.token.is_some() {
                return Err(
                    "admin.user 'admin' clashes with admin.token, which signs in as \
                     'admin': rename the user or drop admin.token"
                        .into(),
                );
            }
            if !seen.insert(u.name.as_str()) {
                return Err(format!("admin.user '{}' is listed twice", u.name));
            }
        }
        Ok(())
    }

    /// Every admin who may sign in: `admin` for `token`, then the named users.
    pub fn users(&self) -> Vec<(&str, &SecretRef)> {
        let mut out: Vec<(&str, &SecretRef)> = Vec::new();
        if let Some(t) = &self.token {
            out.push(("admin", t));
        }
        out.extend(self.user.iter().map(|u| (u.name.as_str(), &u.token)));
        out
    }
}

/// A PostgreSQL store on another machine must be reached over TLS that verifies the server
/// (pupil data crosses that link), unless the operator explicitly allows otherwise.
fn check_store_tls(store: &StoreSettings) -> Result<(), String> {
    let Ok(url) = Url::parse(&store.url) else {
        return Ok(()); // Not a URL the TLS rule applies to (SQLite paths, checked later).
    };
    if !matches!(url.scheme(), "postgres" | "postgresql") || store.allow_unverified_tls {
        return Ok(());
    }
    let host = url.host_str().unwrap_or("");
    let local = host.is_empty()
        || host == "localhost"
        || host.starts_with('/')
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let mode = url
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned());
    if local || matches!(mode.as_deref(), Some("verify-full" | "verify-ca")) {
        return Ok(());
    }
    Err(format!(
        "store.url: the PostgreSQL server {host} is on another machine, and without a verified \
         TLS connection pupil data would cross the network unprotected (sslmode={}). Add \
         ?sslmode=verify-full to the URL (with &sslrootcert=/path/ca.pem when its CA is not a \
         system CA), or set store.allow_unverified_tls = true to accept the risk",
        mode.as_deref().unwrap_or("prefer, the default")
    ))
}

/// A configuration problem, naming where it is and what was expected. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {origin}: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub message: String,
}

impl Settings {
    /// Load defaults, then `file`, then the environment; validate the result.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let origin = match file {
            Some(p) => p.display().to_string(),
            None => "the built-in defaults and environment".to_owned(),
        };
        let err = |message: String| ConfigError {
            origin: origin.clone(),
            message,
        };
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(err(
                    "the file does not exist or is not a regular file".into()
                ));
            }
            builder = builder.add_source(
                config::File::from(path.to_owned())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("ROSTERSYNC")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let built = builder.build().map_err(|e| err(clean_config_error(&e)))?;
        let settings: Settings = built
            .try_deserialize()
            .map_err(|e| err(clean_config_error(&e)))?;
        settings.validate().map_err(err)?;
        settings.check_secret_files().map_err(err)?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        if self.rights.grace_days > 365 {
            return Err("rights.grace_days must be at most 365".into());
        }
        for (i, r) in self.rights.rules.iter().enumerate() {
            if r.link_roles.is_empty() && r.roles.is_empty() {
                return Err(format!(
                    "rights.rules[{i}] ({}): give link_roles or roles, or the rule grants nothing",
                    r.name
                ));
            }
            if let Some(bad) = r
                .sources
                .iter()
                .find(|s| !["broker", "las", "portal", "local"].contains(&s.as_str()))
            {
                return Err(format!(
                    "rights.rules[{i}] ({}): unknown source '{bad}' (broker, las, portal, local)",
                    r.name
                ));
            }
        }
        if let Some(b) = &self.broker {
            b.basispoort().check().map_err(|e| format!("broker.{e}"))?;
        }
        if self.schedule.window_minutes > 12 * 60 {
            return Err("schedule.window_minutes must be at most 720 (12 hours)".into());
        }
        if self.schedule.retry_minutes == 0 {
            return Err("schedule.retry_minutes must be at least 1".into());
        }
        self.admin.check()?;
        self.rollover.check()?;
        self.api.check()?;
        check_store_tls(&self.store)?;
        let sync = &self.sync;
        if !(1..=256).contains(&sync.concurrency) {
            return Err("sync.concurrency must be between 1 and 256".into());
        }
        if !(31..=3650).contains(&sync.journal_days) {
            return Err(
                "sync.journal_days must be between 31 and 3650 (400 is a school year and a summer)"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&sync.brake_max_share) {
            return Err("sync.brake_max_share must be between 0.0 and 1.0 (0.1 is 10%)".into());
        }
        if !(0.0..=1.0).contains(&sync.collapse_ratio) {
            return Err("sync.collapse_ratio must be between 0.0 and 1.0 (0.5 is half)".into());
        }
        if self.store.max_connections == 0 {
            return Err("store.max_connections must be at least 1".into());
        }
        let mut las_names = BTreeSet::new();
        for (i, las) in self.las.iter().enumerate() {
            las.check().map_err(|e| format!("las[{i}].{e}"))?;
            if !las_names.insert(las.name()) {
                return Err(format!("las[{i}].name: '{}' is used twice", las.name()));
            }
        }
        let mut ids = BTreeSet::new();
        for (i, school) in self.school.iter().enumerate() {
            if !ids.insert(school.id.clone()) {
                return Err(format!("school[{i}].id: {} is listed twice", school.id));
            }
            match (&school.las, &school.key) {
                (Some(name), _) if !las_names.contains(name.as_str()) => {
                    return Err(format!(
                        "school[{i}].las: there is no [[las]] named '{name}' (known: {})",
                        known(&las_names)
                    ));
                }
                (Some(_), None) => {
                    return Err(format!(
                        "school[{i}] ({}) has a las but no key = {{ file = ... }}",
                        school.id
                    ));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "school[{i}] ({}) has a key but no las to use it with",
                        school.id
                    ));
                }
                _ => {}
            }
            if school.broker_id.is_some() && self.broker.is_none() {
                return Err(format!(
                    "school[{i}].broker_id is set but there is no [broker] section"
                ));
            }
            if school.las.is_none() && school.broker_id.is_none() && school.zermelo.is_none() {
                return Err(format!(
                    "school[{i}] ({}) has no source: give las, broker_id or zermelo",
                    school.id
                ));
            }
        }
        Ok(())
    }

    /// Every `{ file = ... }` secret must exist now, so a typo in a path fails at start-up and
    /// not at 03:30. Credentials are checked only where they can be read (systemd's, or root's on an installed
    /// machine).
    fn check_secret_files(&self) -> Result<(), String> {
        for (key, reference) in self.secret_refs() {
            let path = match reference {
                SecretRef::File(p) => p.clone(),
                SecretRef::Credential(_) if credentials_directory().is_some() => {
                    reference.path().map_err(|e| format!("{key}: {e}"))?
                }
                SecretRef::Credential(_) => continue,
            };
            if !path.is_file() {
                return Err(format!(
                    "{key}: secret {reference} does not exist or is not a file"
                ));
            }
        }
        Ok(())
    }

    pub fn las(&self, name: &str) -> Option<&LasSettings> {
        self.las.iter().find(|l| l.name() == name)
    }

    pub fn configured_school(&self, id: &SchoolId) -> Option<&SchoolSettings> {
        self.school.iter().find(|s| &s.id == id)
    }

    pub fn las_names(&self) -> String {
        known(&self.las.iter().map(|l| l.name()).collect())
    }

    /// Every secret reference in the configuration, with the key that holds it.
    pub fn secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let mut refs = Vec::new();
        if let Some(t) = &self.admin.token {
            refs.push(("admin.token".to_owned(), t));
        }
        for (i, u) in self.admin.user.iter().enumerate() {
            refs.push((format!("admin.user[{i}].token"), &u.token));
        }
        if let Some(c) = &self.admin.certificate {
            refs.push(("admin.certificate".to_owned(), c));
        }
        if let Some(k) = &self.admin.private_key {
            refs.push(("admin.private_key".to_owned(), k));
        }
        if let Some(p) = &self.store.password {
            refs.push(("store.password".to_owned(), p));
        }
        if let Some(c) = &self.api.certificate {
            refs.push(("api.certificate".to_owned(), c));
        }
        if let Some(k) = &self.api.private_key {
            refs.push(("api.private_key".to_owned(), k));
        }
        for (i, c) in self.api.client.iter().enumerate() {
            refs.push((format!("api.client[{i}].secret"), &c.secret));
        }
        if let Some(k) = &self.security.master_key {
            refs.push(("security.master_key".to_owned(), k));
        }
        for (i, las) in self.las.iter().enumerate() {
            for (key, r) in las.secrets() {
                refs.push((format!("las[{i}].{key}"), r));
            }
        }
        if let Some(b) = &self.broker {
            for (key, r) in b.basispoort().secrets() {
                refs.push((format!("broker.{key}"), r));
            }
        }
        for (i, s) in self.school.iter().enumerate() {
            if let Some(k) = &s.key {
                refs.push((format!("school[{i}].key"), k));
            }
            if let Some(z) = &s.zermelo {
                for (key, r) in z.secrets() {
                    refs.push((format!("school[{i}].zermelo.{key}"), r));
                }
            }
        }
        refs
    }
}

fn known(names: &BTreeSet<&str>) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.iter().copied().collect::<Vec<_>>().join(", ")
    }
}

/// `HH:MM` on a 24-hour clock.
pub fn parse_daily(text: &str) -> Result<chrono::NaiveTime, String> {
    chrono::NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("schedule.daily: '{text}' is not a time like 03:30"))
}

/// A local clock time written `HH:MM` (`schedule.daily`), checked when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockTime(pub chrono::NaiveTime);

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_daily(&text)
            .map(ClockTime)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.format("%H:%M").to_string())
    }
}

/// An IANA time zone (`schedule.timezone`), checked when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<chrono_tz::Tz>().map(Zone).map_err(|_| {
            serde::de::Error::custom(format!(
                "schedule.timezone: '{name}' is not an IANA time zone such as Europe/Amsterdam"
            ))
        })
    }
}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

/// A zone is its IANA name.
impl PartialEq<&str> for Zone {
    fn eq(&self, other: &&str) -> bool {
        self.0.name() == *other
    }
}

/// The config crate's messages, with the noise that points into its own internals removed.
fn clean_config_error(e: &config::ConfigError) -> String {
    // config prints array paths as `school[0]key`; operators read `school[0].key`.
    let text = e.to_string();
    let mut out = String::with_capacity(text.len() + 4);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            out.push('.');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_defaults_are_valid() {
        let s = Settings::load(None).expect("defaults load");
        assert_eq!(s.schedule.timezone, "Europe/Amsterdam");
        assert!(s.store.url.starts_with("sqlite://"));
        assert!(s.school.is_empty());
    }

    /// config/example.toml documents every key; it must stay loadable as the schema changes.
    #[test]
    fn the_example_configuration_matches_the_schema() {
        let example = include_str!("../../config/example.toml");
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(example, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("example.toml deserializes");
        settings.validate().expect("example.toml is valid");
        // The commented-out keys are real keys too: uncomment them all and load again.
        let uncommented: String = example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if is_toml_line(rest) => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let full: Settings = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(
                &uncommented,
                config::FileFormat::Toml,
            ))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("every documented key deserializes");
        full.validate().expect("every documented key validates");
        assert!(full.broker.is_some() && full.admin.listen.is_some());
        assert!(full.api.listen.is_some() && full.api.client.len() == 1);
        assert_eq!(
            full.rights.rules.len(),
            1,
            "rules given in a file replace the built-in ones"
        );
        assert!(settings.rights.rules.len() > 5, "the built-in rules");
        assert!(full.school[0].zermelo.is_some() && full.las[0].client_certificate().is_some());
    }

    /// `key = value` or `[section]`, as opposed to prose in a comment.
    fn is_toml_line(line: &str) -> bool {
        let key_value = line.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        let section = line.starts_with('[') && line.ends_with(']') && !line.contains(' ');
        key_value || section
    }

    #[test]
    fn config_paths_read_like_toml_keys() {
        let text = r#"[[school]]
id = "99XX00"
las = "x"
key = { path = "/k" }"#;
        let err = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<Settings>())
            .expect_err("unknown field");
        assert!(clean_config_error(&err).contains("school[0].key"), "{err}");
    }

    #[test]
    fn daily_must_be_a_clock_time() {
        assert!(parse_daily("03:30").is_ok());
        assert!(parse_daily("3.30").is_err());
        assert!(parse_daily("25:00").is_err());
    }
}
