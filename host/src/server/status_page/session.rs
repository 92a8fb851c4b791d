//! The status page's sessions: a random 256-bit id in an HttpOnly, SameSite=Strict cookie,
//! kept server-side (in memory) until it expires, each with its own CSRF token and a flash
//! message for the next page view.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The session cookie's name.
pub const COOKIE: &str = "dolphin_admin_session";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at most; logging in beyond this ends the oldest.
const MAX_SESSIONS: usize = 1024;

/// Why a form's CSRF token was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CsrfError {
    #[error("the form carries no CSRF token")]
    Missing,
    #[error("the form's CSRF token does not match the session's")]
    Mismatch,
}

impl CsrfError {
    /// The error code shown with it.
    pub fn code(&self) -> &'static str {
        match self {
            CsrfError::Missing => "csrf_missing",
            CsrfError::Mismatch => "csrf_mismatch",
        }
    }
}

/// Checks a form's CSRF token against the session's, in constant time.
pub fn check_csrf(expected: &str, given: Option<&str>) -> Result<(), CsrfError> {
    match given {
        None | Some("") => Err(CsrfError::Missing),
        Some(given) if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(CsrfError::Mismatch),
    }
}

struct Session {
    csrf: String,
    expires: Instant,
    flash: Option<String>,
}

/// What a live session holds, as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub csrf: String,
    pub flash: Option<String>,
}

/// Sessions by the SHA-256 of their id (the id itself is kept nowhere on the server).
pub struct Sessions {
    ttl: Duration,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Default for Sessions {
    /// Sessions that last [`SESSION_TTL`].
    fn default() -> Sessions {
        Sessions::new(SESSION_TTL)
    }
}

impl Sessions {
    /// Sessions that last `ttl`.
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session; returns its id (for the cookie).
    pub fn create(&self) -> String {
        self.create_at(Instant::now())
    }

    fn create_at(&self, now: Instant) -> String {
        let id = random_token();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            key(&id),
            Session {
                csrf: random_token(),
                expires: now + self.ttl,
                flash: None,
            },
        );
        id
    }

    /// The live session `id`, taking its flash message; `None` when unknown or expired.
    pub fn open(&self, id: &str) -> Option<SessionView> {
        self.open_at(id, Instant::now())
    }

    fn open_at(&self, id: &str, now: Instant) -> Option<SessionView> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let key = key(id);
        let session = sessions.get_mut(&key)?;
        if session.expires <= now {
            sessions.remove(&key);
            return None;
        }
        Some(SessionView {
            csrf: session.csrf.clone(),
            flash: session.flash.take(),
        })
    }

    /// Leaves `message` for the session's next page view.
    pub fn flash(&self, id: &str, message: String) {
        if let Some(session) = self.sessions.lock().expect("sessions lock").get_mut(&key(id)) {
            session.flash = Some(message);
        }
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        self.sessions.lock().expect("sessions lock").remove(&key(id));
    }
}

/// The session id in a `Cookie` header value, if any.
pub fn cookie_session(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value that stores session `id` (`Secure` when the bridge is reached over
/// HTTPS).
pub fn set_cookie(id: &str, secure: bool, ttl: Duration) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={}{secure}",
        ttl.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_checked_and_the_failure_named() {
        assert_eq!(check_csrf("abc", Some("abc")), Ok(()));
        assert_eq!(check_csrf("abc", None), Err(CsrfError::Missing));
        assert_eq!(check_csrf("abc", Some("")), Err(CsrfError::Missing));
        assert_eq!(check_csrf("abc", Some("abd")), Err(CsrfError::Mismatch));
        assert_eq!(check_csrf("abc", Some("abcd")), Err(CsrfError::Mismatch));
    }

    #[test]
    fn a_session_lives_until_it_expires_and_each_has_its_own_tokens() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let start = Instant::now();
        let id = sessions.create_at(start);
        let other = sessions.create_at(start);
        assert_eq!(id.len(), 64, "256 bits, hex");
        assert_ne!(id, other);
        let view = sessions.open_at(&id, start + Duration::from_secs(59)).expect("live");
        assert_eq!(view.csrf.len(), 64);
        assert_ne!(Some(view.csrf), sessions.open_at(&other, start).map(|v| v.csrf));
        assert_eq!(sessions.open_at(&id, start + Duration::from_secs(60)), None, "expired");
        assert_eq!(sessions.open_at(&id, start), None, "an expired session is gone");
        assert_eq!(sessions.open_at("not-a-session", start), None);
    }

    #[test]
    fn a_flash_is_shown_once_and_logout_ends_the_session() {
        let sessions = Sessions::new(SESSION_TTL);
        let id = sessions.create();
        sessions.flash(&id, "replayed 1".into());
        assert_eq!(sessions.open(&id).unwrap().flash.as_deref(), Some("replayed 1"));
        assert_eq!(sessions.open(&id).unwrap().flash, None);
        sessions.remove(&id);
        assert!(sessions.open(&id).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others_and_set_with_its_attributes() {
        assert_eq!(cookie_session("a=1; dolphin_admin_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_session("a=1"), None);
        let set = set_cookie("xyz", false, SESSION_TTL);
        for part in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=43200"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set.contains("Secure"));
        assert!(set_cookie("xyz", true, SESSION_TTL).ends_with("; Secure"));
    }
}
