//! OAuth 2.0 client credentials, as OneRoster binds it: `POST /oauth/token` gives a bearer
//! token to a configured client (HTTP Basic or form fields); every API request carries one.
//! Secrets are compared in constant time, failed sign-ins are limited per client and
//! address, tokens live in memory (a restart signs everyone out) and expire.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use crate::settings::ApiClient;

/// Which schools a client may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schools {
    All,
    Only(BTreeSet<String>),
}

impl Schools {
    pub fn allows(&self, school: &str) -> bool {
        match self {
            Schools::All => true,
            Schools::Only(s) => s.contains(school),
        }
    }

    /// For the store's listings: `None` is every school.
    pub fn list(&self) -> Option<Vec<String>> {
        match self {
            Schools::All => None,
            Schools::Only(s) => Some(s.iter().cloned().collect()),
        }
    }
}

/// A configured client, its secret read.
pub struct Client {
    pub id: String,
    secret: SecretString,
    pub schools: Schools,
    pub scopes: BTreeSet<String>,
}

impl Client {
    /// Read a configured client's secret; fails when it cannot be read.
    pub fn load(c: &ApiClient) -> Result<Client, String> {
        let secret = c
            .secret
            .load_string()
            .map_err(|e| format!("api client '{}': {e}", c.id))?;
        let schools = if c.schools.iter().any(|s| s == "*") {
            Schools::All
        } else {
            Schools::Only(
                c.schools
                    .iter()
                    .filter_map(|s| s.parse::<connector_api::SchoolId>().ok())
                    .map(|s| s.to_string())
                    .collect(),
            )
        };
        Ok(Client {
            id: c.id.clone(),
            secret,
            schools,
            scopes: c.scopes.iter().cloned().collect(),
        })
    }
}

use crate::token::{digest, same_secret};

/// What a valid token stands for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub client: String,
    pub scopes: BTreeSet<String>,
    pub expires: Instant,
}

/// Why a sign-in failed, for the answer and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown client or wrong secret (the answer does not say which).
    BadClient,
    /// Too many failures from this client and address: wait.
    TooMany(Duration),
    /// A scope the client was not given.
    BadScope(String),
    /// The system's random source failed: no token can be made safely.
    NoRandom,
}

/// How many failed sign-ins a client may have from one address in a window.
const FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// Tokens alive at once, at most: beyond it a new one waits for old ones to expire.
const MAX_TOKENS: usize = 10_000;

/// The clients, their live tokens and recent failures.
pub struct Auth {
    clients: Vec<Client>,
    lifetime: Duration,
    tokens: Mutex<HashMap<[u8; 32], Grant>>,
    failures: Mutex<HashMap<(String, IpAddr), (u32, Instant)>>,
}

impl Auth {
    pub fn new(clients: Vec<Client>, lifetime: Duration) -> Auth {
        Auth {
            clients,
            lifetime,
            tokens: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Check a client's credentials and issue a token with `scope` (space-separated; empty:
    /// all the client's scopes).
    pub fn issue(
        &self,
        id: &str,
        secret: &str,
        scope: &str,
        from: IpAddr,
    ) -> Result<(String, BTreeSet<String>), Refusal> {
        if let Some(wait) = self.blocked(id, from) {
            return Err(Refusal::TooMany(wait));
        }
        let client = self.clients.iter().find(|c| c.id == id);
        // The comparison runs for an unknown client too, against nothing it could match.
        let expected = client.map_or(&[][..], |c| c.secret.expose_secret().as_bytes());
        let ok = same_secret(secret.as_bytes(), expected) && client.is_some();
        let Some(client) = client.filter(|_| ok) else {
            self.failed(id, from);
            return Err(Refusal::BadClient);
        };
        let scopes: BTreeSet<String> = if scope.trim().is_empty() {
            client.scopes.clone()
        } else {
            let asked: BTreeSet<String> = scope.split_whitespace().map(str::to_owned).collect();
            if let Some(bad) = asked.iter().find(|s| !client.scopes.contains(*s)) {
                return Err(Refusal::BadScope(bad.clone()));
            }
            asked
        };
        let token = crate::token::random().ok_or(Refusal::NoRandom)?;
        let grant = Grant {
            client: client.id.clone(),
            scopes: scopes.clone(),
            expires: Instant::now() + self.lifetime,
        };
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, g| g.expires > now);
        }
        if tokens.len() >= MAX_TOKENS {
            return Err(Refusal::TooMany(Duration::from_secs(60)));
        }
        tokens.insert(digest(&token), grant);
        Ok((token, scopes))
    }

    /// The grant behind a bearer token, while it lasts.
    pub fn check(&self, token: &str) -> Option<Grant> {
        let key = digest(token);
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(&key) {
            Some(g) if g.expires > Instant::now() => Some(g.clone()),
            Some(_) => {
                tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Failures are counted per configured client and address; names that are no client
    /// share one count per address, so guessing names is limited as much as guessing
    /// secrets, and made-up names cannot grow the table.
    fn failure_key(&self, id: &str, from: IpAddr) -> (String, IpAddr) {
        let known = self.client(id).map(|c| c.id.clone()).unwrap_or_default();
        (known, from)
    }

    fn blocked(&self, id: &str, from: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (n, since) = failures.get(&self.failure_key(id, from))?;
        let left = WINDOW.checked_sub(since.elapsed())?;
        (*n >= FAILURES).then_some(left)
    }

    fn failed(&self, id: &str, from: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|_, (_, since)| since.elapsed() < WINDOW);
        // Bounded: one entry per client (or unknown name) and address within a minute.
        if failures.len() > 100_000 {
            failures.clear();
        }
        let e = failures
            .entry(self.failure_key(id, from))
            .or_insert((0, Instant::now()));
        e.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            vec![Client {
                id: "lp".into(),
                secret: SecretString::from("s3cret".to_owned()),
                schools: Schools::All,
                scopes: [API_CORE.to_owned()].into(),
            }],
            Duration::from_secs(60),
        )
    }

    const API_CORE: &str = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly";

    #[test]
    fn a_token_is_issued_checked_and_failures_are_limited_per_client_and_address() {
        let a = auth();
        let here: IpAddr = "127.0.0.1".parse().expect("ip");
        let (token, scopes) = a.issue("lp", "s3cret", "", here).expect("issued");
        assert_eq!(scopes.len(), 1);
        assert_eq!(a.check(&token).expect("valid").client, "lp");
        assert!(a.check("not-a-token").is_none());
        assert_eq!(
            a.issue("lp", "s3cret", "https://example/other", here),
            Err(Refusal::BadScope("https://example/other".into()))
        );
        for _ in 0..FAILURES {
            assert_eq!(a.issue("lp", "wrong", "", here), Err(Refusal::BadClient));
        }
        assert!(matches!(
            a.issue("lp", "s3cret", "", here),
            Err(Refusal::TooMany(_))
        ));
        let elsewhere: IpAddr = "127.0.0.2".parse().expect("ip");
        assert!(a.issue("lp", "s3cret", "", elsewhere).is_ok());
    }

    #[test]
    fn made_up_client_names_share_one_count_per_address() {
        let a = auth();
        let there: IpAddr = "192.0.2.7".parse().expect("ip");
        for i in 0..FAILURES {
            assert_eq!(
                a.issue(&format!("guess-{i}"), "x", "", there),
                Err(Refusal::BadClient)
            );
        }
        assert!(matches!(
            a.issue("guess-99", "x", "", there),
            Err(Refusal::TooMany(_))
        ));
        // The real client from that address is counted apart, and one entry holds them all.
        assert!(a.issue("lp", "s3cret", "", there).is_ok());
        assert_eq!(a.failures.lock().expect("lock").len(), 1);
    }
}
