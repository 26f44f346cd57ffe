//! Console sessions and sign-in limits: plain data and the clock they are given, so expiry and
//! limits are tested without waiting. Session ids live only in the browser's cookie; the
//! daemon keeps their digests (a memory dump hands out no live session), and a restart signs
//! everyone out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::token;

/// A session ends this long after sign-in, however busy.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins one address may make in [`WINDOW`] before it must wait.
pub const FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sessions alive at once, at most: the oldest go first beyond it.
const MAX_SESSIONS: usize = 1_000;

/// Who is signed in, and the token their forms must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    /// One message for the next page (what an action did), shown once.
    pub notice: Option<String>,
    started: Instant,
    seen: Instant,
}

impl Session {
    /// The form's token is this session's (compared in constant time).
    pub fn allows(&self, csrf: &str) -> bool {
        token::same_secret(self.csrf.as_bytes(), csrf.as_bytes())
    }
}

/// The live sessions, by digest of their id.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    live: HashMap<[u8; 32], Session>,
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            live: HashMap::new(),
        }
    }

    /// A session for `user` under the id `id` (the cookie's value) with form token `csrf`.
    pub fn open(&mut self, id: &str, user: &str, csrf: String, now: Instant) {
        self.forget_expired(now);
        if self.live.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .live
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(k, _)| *k)
        {
            self.live.remove(&oldest);
        }
        self.live.insert(
            token::digest(id),
            Session {
                user: user.to_owned(),
                csrf,
                notice: None,
                started: now,
                seen: now,
            },
        );
    }

    /// The session behind `id`, while it lasts; a request keeps it alive.
    pub fn touch(&mut self, id: &str, now: Instant) -> Option<Session> {
        let key = token::digest(id);
        let idle = self.idle;
        let s = self.live.get_mut(&key)?;
        if expired(s, idle, now) {
            self.live.remove(&key);
            return None;
        }
        s.seen = now;
        let out = s.clone();
        s.notice = None;
        Some(out)
    }

    /// Leave a message for the session's next page.
    pub fn notify(&mut self, id: &str, notice: String) {
        if let Some(s) = self.live.get_mut(&token::digest(id)) {
            s.notice = Some(notice);
        }
    }

    pub fn close(&mut self, id: &str) {
        self.live.remove(&token::digest(id));
    }

    fn forget_expired(&mut self, now: Instant) {
        let idle = self.idle;
        self.live.retain(|_, s| !expired(s, idle, now));
    }
}

/// Idle too long, or too old however busy.
fn expired(s: &Session, idle: Duration, now: Instant) -> bool {
    now.saturating_duration_since(s.seen) >= idle
        || now.saturating_duration_since(s.started) >= MAX_AGE
}

/// Failed sign-ins per address: after [`FAILURES`] in a window, the address waits out the
/// rest of it whatever it sends (a right token too), so tokens cannot be guessed quickly.
#[derive(Debug, Default)]
pub struct Limiter {
    failures: HashMap<IpAddr, (u32, Instant)>,
}

impl Limiter {
    /// How long `from` must still wait, if it is blocked.
    pub fn blocked(&self, from: IpAddr, now: Instant) -> Option<Duration> {
        let (n, since) = self.failures.get(&from)?;
        let left = WINDOW.checked_sub(now.saturating_duration_since(*since))?;
        (*n >= FAILURES && !left.is_zero()).then_some(left)
    }

    pub fn failed(&mut self, from: IpAddr, now: Instant) {
        self.failures
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < WINDOW);
        // Bounded: one entry per address within a minute.
        if self.failures.len() > 100_000 {
            self.failures.clear();
        }
        self.failures.entry(from).or_insert((0, now)).0 += 1;
    }

    /// A right token from an address ends its count.
    pub fn succeeded(&mut self, from: IpAddr) {
        self.failures.remove(&from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_while_used_and_ends_when_idle_or_old() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(600);
        let mut s = Sessions::new(idle);
        s.open("abc", "anna", "csrf1".into(), t0);
        let got = s
            .touch("abc", t0 + Duration::from_secs(599))
            .expect("alive");
        assert_eq!(got.user, "anna");
        assert!(got.allows("csrf1") && !got.allows("csrf2") && !got.allows(""));
        assert!(s.touch("abd", t0).is_none(), "another id is no session");
        // Kept alive by use, until the absolute limit.
        let mut t = t0;
        while t < t0 + MAX_AGE - idle {
            t += Duration::from_secs(500);
            assert!(s.touch("abc", t).is_some());
        }
        assert!(s.touch("abc", t0 + MAX_AGE).is_none(), "too old");
        s.open("xyz", "piet", "c".into(), t0);
        assert!(s.touch("xyz", t0 + idle).is_none(), "idle too long");
        s.open("q", "piet", "c".into(), t0);
        s.close("q");
        assert!(s.touch("q", t0).is_none(), "signed out");
    }

    #[test]
    fn a_notice_is_shown_once() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(60));
        s.open("id", "anna", "c".into(), t0);
        s.notify("id", "Resync asked".into());
        assert_eq!(
            s.touch("id", t0).and_then(|x| x.notice).as_deref(),
            Some("Resync asked")
        );
        assert_eq!(s.touch("id", t0).and_then(|x| x.notice), None);
    }

    #[test]
    fn failed_sign_ins_block_an_address_for_the_rest_of_the_window() {
        let t0 = Instant::now();
        let here: IpAddr = "192.0.2.1".parse().expect("ip");
        let there: IpAddr = "192.0.2.2".parse().expect("ip");
        let mut l = Limiter::default();
        for i in 0..FAILURES {
            assert!(l.blocked(here, t0).is_none(), "attempt {i} allowed");
            l.failed(here, t0);
        }
        assert_eq!(
            l.blocked(here, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert!(l.blocked(there, t0).is_none(), "others are not blocked");
        assert!(l.blocked(here, t0 + WINDOW).is_none(), "the window ends");
        l.failed(there, t0);
        l.succeeded(there);
        assert!(l.failures.is_empty() || !l.failures.contains_key(&there));
    }
}
