//! Basic auth against the bcrypt hashes of `basic_auth_users`.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so: checks
//! run on the blocking pool, never on the async threads; one at a time, as
//! the exporter-toolkit does, so a flood of guesses cannot take every core;
//! at most [`MAX_WAITING`] wait, more are turned away at once; and a
//! successful check is remembered (by a SHA-256 of user, hash and password,
//! never the password itself) so Prometheus's scrapes do not pay bcrypt each
//! time. An unknown user is checked against a decoy hash of the same cost,
//! so the time taken does not tell which users exist.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use tokio::sync::Semaphore;

use super::web_config::WebConfigError;

/// Checks waiting for bcrypt past which new ones are refused.
pub const MAX_WAITING: usize = 32;
/// Successful checks remembered; the memory is cleared when full.
const CACHE_SIZE: usize = 100;

/// The users of one web config, with the memory of checks that passed.
pub struct Users {
    hashes: HashMap<String, String>,
    cost: u32,
    decoy: OnceLock<String>,
    passed: Mutex<HashSet<[u8; 32]>>,
    bcrypt: Semaphore,
    waiting: AtomicUsize,
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or wrong ones: 401.
    Unauthorized,
    /// Too many checks already waiting for bcrypt: 429.
    Busy,
}

impl Users {
    /// Validates every hash (a bcrypt hash, `$2a$`, `$2b$` or `$2y$`).
    pub fn new(users: BTreeMap<String, String>) -> Result<Users, WebConfigError> {
        let mut cost = 4;
        for (user, hash) in &users {
            let parts: bcrypt::HashParts = hash.parse().map_err(|e| WebConfigError {
                key: format!("basic_auth_users.{user}"),
                message: format!("not a bcrypt hash ({e})"),
            })?;
            cost = cost.max(parts.get_cost());
        }
        Ok(Users {
            hashes: users.into_iter().collect(),
            cost,
            decoy: OnceLock::new(),
            passed: Mutex::new(HashSet::new()),
            bcrypt: Semaphore::new(1),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Whether the `Authorization` header value lets the request in.
    pub async fn check(self: &Arc<Self>, authorization: Option<&[u8]>) -> Result<(), Denied> {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return Err(Denied::Unauthorized);
        };
        let hash = self.hashes.get(&user).cloned();
        let key = fingerprint(&user, hash.as_deref().unwrap_or(""), &password);
        if hash.is_some() && self.remembers(&key) {
            return Ok(());
        }
        let _waiting = Waiting::enter(&self.waiting).ok_or(Denied::Busy)?;
        let _turn = self.bcrypt.acquire().await.map_err(|_| Denied::Busy)?;
        let users = Arc::clone(self);
        let known = hash.is_some();
        let matched = tokio::task::spawn_blocking(move || {
            let hash = match &hash {
                Some(h) => h.as_str(),
                None => users.decoy(),
            };
            bcrypt::verify(password.as_bytes(), hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !(known && matched) {
            return Err(Denied::Unauthorized);
        }
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        if passed.len() >= CACHE_SIZE {
            passed.clear();
        }
        passed.insert(key);
        Ok(())
    }

    fn remembers(&self, key: &[u8; 32]) -> bool {
        self.passed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    /// A hash of the users' highest cost that no password matches (made on
    /// first need: it costs one bcrypt).
    fn decoy(&self) -> &str {
        self.decoy.get_or_init(|| {
            // Cannot fail: the cost was read from a valid hash. Were it to,
            // the empty hash matches nothing.
            bcrypt::hash(b"portwarden decoy: no such user", self.cost).unwrap_or_default()
        })
    }
}

/// Counts a check waiting for bcrypt while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Waiting<'a>> {
        if count.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn fingerprint(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// User and password from `Basic <base64 of user:password>`, read as Go's
/// `Request.BasicAuth` does (scheme case-insensitive, split at the first
/// colon).
pub fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    const PREFIX: &[u8] = b"basic ";
    if value.len() < PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&value[PREFIX.len()..])
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        )
        .into_bytes()
    }

    #[test]
    fn credentials_are_read_as_go_reads_them() {
        assert_eq!(
            basic_credentials(&header("alice:se:cret")),
            Some(("alice".into(), "se:cret".into()))
        );
        assert_eq!(
            basic_credentials(b"bAsIc YTpi"),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(basic_credentials(b"Bearer YTpi"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(&header("nocolon")), None);
        assert_eq!(basic_credentials(b"Basic"), None);
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_remembered() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let users =
            Arc::new(Users::new(BTreeMap::from([("alice".to_string(), hash)])).expect("valid"));
        assert_eq!(users.check(None).await, Err(Denied::Unauthorized));
        assert_eq!(
            users.check(Some(&header("alice:nope"))).await,
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            users.check(Some(&header("bob:s3cret"))).await,
            Err(Denied::Unauthorized)
        );
        assert!(users.passed.lock().expect("lock").is_empty());
        assert_eq!(users.check(Some(&header("alice:s3cret"))).await, Ok(()));
        assert_eq!(users.passed.lock().expect("lock").len(), 1);
        assert_eq!(users.check(Some(&header("alice:s3cret"))).await, Ok(()));
        assert_eq!(
            users.check(Some(&header("alice:s3cret "))).await,
            Err(Denied::Unauthorized)
        );
    }

    #[test]
    fn fingerprints_do_not_collide_on_boundaries() {
        assert_ne!(fingerprint("ab", "c", ""), fingerprint("a", "bc", ""));
    }
}
