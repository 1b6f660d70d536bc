//! The gateway's users, sessions and storage against an in-process one-node ledger, on SQLite
//! and on PostgreSQL (`BPU_TEST_POSTGRES`): failed-login throttling, token expiry, logout and
//! disabling, the last admin, session cookies and their CSRF header, the audit log, account
//! keys sealed at rest, and a database that refuses deletes.

#[path = "support/postgres.rs"]
mod postgres;
mod ui;

use bpu_gateway::auth::Role;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use ui::net::Env;

const PW: &str = "correct horse battery";

fn login_body(name: &str, pw: &str) -> Vec<u8> {
    json!({"name": name, "password": pw})
        .to_string()
        .into_bytes()
}

fn users_and_sessions(db: Option<String>) {
    let env = Env::start_with(db, |c| c.session_ttl = Duration::from_secs(2));
    env.add_user("root", Role::Admin, PW);
    env.add_user("eve", Role::User, PW);
    let json_ct = [("Content-Type", "application/json")];

    // Throttling: five wrong passwords answer 401, then even the right one answers 429.
    for i in 0..5 {
        let a = env.raw(
            "POST",
            "/api/v1/auth/login",
            &json_ct,
            Some(&login_body("eve", "wrong password")),
        );
        assert_eq!(a.status, 401, "attempt {i}: {}", a.text());
        assert_eq!(a.json()["error"]["code"], "bad_credentials");
    }
    let a = env.raw(
        "POST",
        "/api/v1/auth/login",
        &json_ct,
        Some(&login_body("eve", PW)),
    );
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "throttled");
    assert!(a
        .header("retry-after")
        .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    // Unknown users are throttled the same way (and answer like a wrong password).
    let a = env.raw(
        "POST",
        "/api/v1/auth/login",
        &json_ct,
        Some(&login_body("nobody", PW)),
    );
    assert_eq!(a.status, 401);

    // Expiry: a token stops working after the session lifetime (2 s here).
    let root = env.login("root", PW);
    let t0 = Instant::now();
    root.expect(200, "GET", "/api/v1/me", None);
    loop {
        let (s, v) = root.call("GET", "/api/v1/me", None, &[]);
        if s == 401 {
            assert_eq!(v["error"]["code"], "unauthorized");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the token did not expire"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "expired too early: {:?}",
        t0.elapsed()
    );

    // Disabling a user revokes its tokens and refuses its logins; the last admin stays.
    let root = env.login("root", PW);
    let v = root.expect(
        201,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "mallory", "role": "user", "password": PW})),
    );
    let mallory_id = v["id"].as_i64().expect("id");
    let mallory = env.login("mallory", PW);
    mallory.expect(200, "GET", "/api/v1/me", None);
    let (s, v) = mallory.call(
        "PATCH",
        &format!("/api/v1/users/{mallory_id}"),
        Some(json!({"role": "admin"})),
        &[],
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "a user cannot promote itself"
    );
    root.expect(
        200,
        "PATCH",
        &format!("/api/v1/users/{mallory_id}"),
        Some(json!({"disabled": true})),
    );
    assert_eq!(mallory.call("GET", "/api/v1/me", None, &[]).0, 401);
    let a = env.raw(
        "POST",
        "/api/v1/auth/login",
        &json_ct,
        Some(&login_body("mallory", PW)),
    );
    assert_eq!(a.status, 401);
    let (s, v) = root.call(
        "PATCH",
        "/api/v1/users/1",
        Some(json!({"role": "user"})),
        &[],
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("last_admin")),
        "{v}"
    );
    let (s, _) = root.call("DELETE", &format!("/api/v1/users/{mallory_id}"), None, &[]);
    assert_eq!(s, 405);
    let v = root.expect(200, "GET", &format!("/api/v1/users/{mallory_id}"), None);
    assert_eq!(v["disabled"], true, "disabled, not deleted");

    // Logout revokes the token.
    root.expect(204, "POST", "/api/v1/auth/logout", None);
    assert_eq!(root.call("GET", "/api/v1/me", None, &[]).0, 401);

    // The dashboard's session cookie: HttpOnly, and writes need the CSRF header.
    let a = env.raw(
        "POST",
        "/api/v1/auth/login",
        &json_ct,
        Some(
            &json!({"name": "root", "password": PW, "session": true})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(a.status, 200);
    assert!(
        a.json()["token"].is_null(),
        "a cookie session does not expose its token"
    );
    let cookie = a.header("set-cookie").expect("cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let c = cookie.split(';').next().expect("name=value").to_string();
    let body = json!({"name": "acct1"}).to_string().into_bytes();
    let a = env.raw(
        "POST",
        "/api/v1/accounts",
        &[("Cookie", &c), ("Content-Type", "application/json")],
        Some(&body),
    );
    assert_eq!(a.status, 403, "no CSRF header: {}", a.text());
    let a = env.raw(
        "POST",
        "/api/v1/accounts",
        &[
            ("Cookie", &c),
            ("Content-Type", "application/json"),
            ("x-bpu-csrf", "1"),
        ],
        Some(&body),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let a = env.raw("GET", "/api/v1/me", &[("Cookie", &c)], None);
    assert_eq!(a.status, 200, "reads need no CSRF header");

    // The audit log has the admin's actions and the offline user additions.
    let root = env.login("root", PW);
    root.mint(1, 5); // rows in transactions and events too
    let v = root.expect(200, "GET", "/api/v1/audit?limit=500", None);
    let actions: Vec<(String, String)> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").into(),
                e["target"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    for want in [
        ("user.create".to_string(), format!("user:{mallory_id}")),
        ("user.update".to_string(), format!("user:{mallory_id}")),
        ("account.create".to_string(), "account:1".to_string()),
    ] {
        assert!(
            actions.contains(&want),
            "{want:?} missing from the audit log: {actions:?}"
        );
    }
    let eve = env.login_after_throttle("eve");
    let (s, _) = eve.call("GET", "/api/v1/audit", None, &[]);
    assert_eq!(s, 403, "the audit log is for admins");

    // Account keys are sealed at rest; the database refuses deletes.
    let db = env.gateway.state.db.clone();
    env.block_on(async {
        let rows = db.all_accounts().await.expect("accounts");
        assert!(!rows.is_empty());
        for r in &rows {
            assert!(
                !r.sealed_key.windows(10).any(|w| w == b"-----BEGIN"),
                "a key in the clear"
            );
            assert!(env
                .gateway
                .state
                .keys
                .open(&r.sealed_key, &r.ledger_id)
                .is_ok());
            assert!(
                env.gateway
                    .state
                    .keys
                    .open(&r.sealed_key, &[0u8; 32])
                    .is_err(),
                "bound to its account"
            );
        }
        for table in ["users", "accounts", "transactions", "audit", "events"] {
            let e = sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&db.pool)
                .await
                .expect_err("the database refuses deletes");
            assert!(e.to_string().contains("never deleted"), "{table}: {e}");
        }
        let n: i64 = sqlx::Row::try_get(
            &sqlx::query("SELECT COUNT(*) FROM users")
                .fetch_one(&db.pool)
                .await
                .expect("count"),
            0,
        )
        .expect("n");
        assert_eq!(n, 3, "every user is still there");
    });
    let _ = Value::Null;
}

impl Env {
    /// Logs in `name` once its failed-login lockout has passed.
    fn login_after_throttle(&self, name: &str) -> ui::net::Api<'_> {
        let t0 = Instant::now();
        loop {
            let a = self.raw(
                "POST",
                "/api/v1/auth/login",
                &[("Content-Type", "application/json")],
                Some(&login_body(name, PW)),
            );
            if a.status == 200 {
                return self.login(name, PW);
            }
            assert_eq!(a.status, 429, "{}", a.text());
            assert!(t0.elapsed() < Duration::from_secs(30), "still locked");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn users_sessions_audit_and_storage_sqlite() {
    users_and_sessions(None);
}

#[test]
fn users_sessions_audit_and_storage_postgres() {
    if let Some(db) = postgres::fresh_database() {
        users_and_sessions(Some(db));
    }
}
