//! Users, roles and sessions: Argon2id passwords, random bearer tokens stored hashed, the
//! HttpOnly session cookie of the dashboard (with a CSRF header on writes), expiry, failed-login
//! throttling, and the `Caller` extractor every protected handler takes.

use crate::app::AppState;
use crate::error::AppError;
use crate::txsvc::Caller;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// A user's role.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users, the audit log and the network view.
    Admin,
    /// Accounts of any user, minting, every transaction and event.
    Operator,
    /// Own accounts and transfers from them.
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// Name of the dashboard's session cookie.
pub const COOKIE: &str = "bpu_session";
/// Header a cookie-authenticated write must carry (a cross-site form cannot set it).
pub const CSRF_HEADER: &str = "x-bpu-csrf";

/// Failed logins per user name and per client address.
#[derive(Default)]
pub struct Throttle {
    fails: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Who a token belongs to, remembered for a few seconds so that a request does not read the
/// token and the user from the database each time. Logout, disabling a user, a role or
/// password change forget the entries at once; an entry never outlives its token's expiry, and
/// any other change (by another process on the same database) is seen within `TTL`.
#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<Vec<u8>, (Caller, i64, Instant)>>,
}

impl SessionCache {
    const TTL: Duration = Duration::from_secs(5);

    fn get(&self, hash: &[u8]) -> Option<Caller> {
        let e = self.entries.lock();
        let (c, expires_ms, at) = e.get(hash)?;
        (at.elapsed() < Self::TTL && *expires_ms > crate::db::now_ms()).then(|| c.clone())
    }

    fn put(&self, hash: Vec<u8>, c: Caller, expires_ms: i64) {
        let mut e = self.entries.lock();
        if e.len() > 100_000 {
            e.retain(|_, (_, _, at)| at.elapsed() < Self::TTL);
        }
        e.insert(hash, (c, expires_ms, Instant::now()));
    }

    /// Forgets one token (logout).
    pub fn forget_token(&self, hash: &[u8]) {
        self.entries.lock().remove(hash);
    }

    /// Forgets every token of a user (disabled, role or password changed).
    pub fn forget_user(&self, user: i64) {
        self.entries.lock().retain(|_, (c, _, _)| c.user != user);
    }
}

/// Failures allowed before lockouts start: per user name, and per client address (higher:
/// many users may share one address behind a proxy).
const FREE_FAILS_USER: u32 = 5;
const FREE_FAILS_ADDR: u32 = 20;

fn free_fails(key: &str) -> u32 {
    if key.starts_with("ip:") {
        FREE_FAILS_ADDR
    } else {
        FREE_FAILS_USER
    }
}

impl Throttle {
    /// Seconds left of a lockout of `key`, if locked.
    pub fn locked(&self, key: &str) -> Option<u64> {
        let f = self.fails.lock();
        let (n, last) = f.get(key)?;
        let free = free_fails(key);
        if *n < free {
            return None;
        }
        let wait = lockout(*n - free);
        let passed = last.elapsed();
        (passed < wait).then(|| (wait - passed).as_secs().max(1))
    }

    pub fn fail(&self, key: &str) {
        let mut f = self.fails.lock();
        if f.len() > 100_000 {
            f.retain(|_, (_, t)| t.elapsed() < Duration::from_secs(3600));
        }
        let e = f.entry(key.to_string()).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
    }

    pub fn clear(&self, key: &str) {
        self.fails.lock().remove(key);
    }
}

/// 1 s after the last free failure, doubling with each further one, at most 15 minutes.
fn lockout(beyond: u32) -> Duration {
    Duration::from_secs((1u64 << beyond.min(10)).min(900))
}

fn bearer(parts: &Parts) -> Option<(String, bool)> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
        let s = v.to_str().ok()?;
        let t = s
            .strip_prefix("Bearer ")
            .or_else(|| s.strip_prefix("bearer "))?;
        return Some((t.trim().to_string(), false));
    }
    for v in parts.headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for c in s.split(';') {
            if let Some(t) = c.trim().strip_prefix(&format!("{COOKIE}=")) {
                return Some((t.to_string(), true));
            }
        }
    }
    None
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Caller, AppError> {
        let (token, cookie) = bearer(parts).ok_or(AppError::Unauthorized)?;
        if cookie
            && !matches!(parts.method, Method::GET | Method::HEAD)
            && !parts.headers.contains_key(CSRF_HEADER)
        {
            return Err(AppError::forbidden(format!(
                "a write with the session cookie needs the {CSRF_HEADER} header"
            )));
        }
        let hash = crate::secrets::token_hash(&token);
        if let Some(c) = st.sessions.get(&hash) {
            return Ok(c);
        }
        let (user, expires_ms) = st
            .db
            .token_user(&hash)
            .await?
            .ok_or(AppError::Unauthorized)?;
        let u = st.db.user(user).await?.ok_or(AppError::Unauthorized)?;
        if u.disabled {
            return Err(AppError::Unauthorized);
        }
        let role = Role::parse(&u.role).ok_or_else(|| AppError::internal("unknown role"))?;
        let c = Caller {
            user: u.id,
            name: u.name,
            role,
        };
        st.sessions.put(hash, c.clone(), expires_ms);
        Ok(c)
    }
}

/// The caller must be an admin.
pub fn need_admin(c: &Caller) -> Result<(), AppError> {
    if c.role == Role::Admin {
        Ok(())
    } else {
        Err(AppError::forbidden("this needs the admin role"))
    }
}

/// The caller must be an admin or an operator.
pub fn need_staff(c: &Caller) -> Result<(), AppError> {
    if c.is_staff() {
        Ok(())
    } else {
        Err(AppError::forbidden("this needs the operator or admin role"))
    }
}

/// The session token of a request (for logout).
pub fn request_token(parts: &Parts) -> Option<String> {
    bearer(parts).map(|(t, _)| t)
}

/// Checks a password's shape: 8–256 characters.
pub fn check_new_password(pw: &str) -> Result<(), AppError> {
    let n = pw.chars().count();
    if !(8..=256).contains(&n) {
        return Err(AppError::bad(
            "weak_password",
            "passwords have 8 to 256 characters",
        ));
    }
    Ok(())
}

/// Checks a user or account name: 1–64 characters of letters, digits, `-`, `_`, `.`, `@`.
pub fn check_name(what: &str, name: &str) -> Result<(), AppError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad(
            "bad_name",
            format!("{what} names have 1–64 characters: letters, digits, - _ . @"),
        ))
    }
}
