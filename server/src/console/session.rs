//! Console sessions, kept server-side: a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie names the key that logged in (its secret never
//! leaves the server), a CSRF token, and an absolute expiry. Failed logins are
//! counted per client address and refused for a while past a threshold.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const COOKIE: &str = "coffer_session";

/// A logged-in key.
#[derive(Clone)]
pub struct Session {
    pub key_id: String,
    pub secret: String,
    pub is_root: bool,
    pub csrf: String,
    pub expires_at: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("key_id", &self.key_id)
            .field("is_root", &self.is_root)
            .finish_non_exhaustive()
    }
}

pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Equality that takes the same time wherever the inputs differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub struct SessionStore {
    ttl: Duration,
    sessions: Mutex<HashMap<String, Session>>,
}

impl SessionStore {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session; returns its id (the cookie value).
    pub fn open(&self, key_id: String, secret: String, is_root: bool) -> (String, Session) {
        let now = Instant::now();
        let session = Session {
            key_id,
            secret,
            is_root,
            csrf: random_token(),
            expires_at: now + self.ttl,
        };
        let id = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires_at > now);
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session with this id; an expired one is forgotten.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(id) {
            Some(s) if s.expires_at > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(id);
    }

    /// Ends every session of a key (deleted keys).
    pub fn close_key(&self, key_id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.key_id != key_id);
    }
}

/// Failed logins per client address within a sliding window.
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long this address must wait before trying again, if it must.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let list = failures.get_mut(&ip)?;
        list.retain(|t| now.duration_since(*t) < self.window);
        if list.len() >= self.max_failures {
            let oldest = list.first().copied()?;
            Some(self.window.saturating_sub(now.duration_since(oldest)))
        } else {
            None
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bound the table: addresses whose failures are all old are dropped.
        if failures.len() > 10_000 {
            failures.retain(|_, l| l.iter().any(|t| now.duration_since(*t) < self.window));
        }
        failures.entry(ip).or_default().push(now);
    }

    pub fn succeeded(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&ip);
    }
}

/// The session cookie's value in a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_sessions_are_gone() {
        let store = SessionStore::new(Duration::from_millis(0));
        let (id, _) = store.open("K".into(), "S".into(), false);
        assert!(store.get(&id).is_none());
        let store = SessionStore::new(Duration::from_secs(60));
        let (id, s) = store.open("K".into(), "S".into(), false);
        assert_eq!(store.get(&id).map(|s| s.csrf), Some(s.csrf));
        store.close(&id);
        assert!(store.get(&id).is_none());
    }

    #[test]
    fn limiter_blocks_after_max_failures() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        limiter.failed(ip);
        assert!(limiter.blocked_for(ip).is_none());
        limiter.failed(ip);
        assert!(limiter.blocked_for(ip).is_some());
        assert!(limiter.blocked_for("10.0.0.2".parse().unwrap()).is_none());
    }

    #[test]
    fn cookie_value_finds_the_session_cookie() {
        assert_eq!(cookie_value("a=1; coffer_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("a=1"), None);
    }
}
