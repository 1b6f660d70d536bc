//! The web dashboard: server-rendered pages under `/ui/` sharing one layout, and the static
//! assets (`/ui/assets/*`: the hand-written `app.js`, `style.css`, the icon) compiled into the
//! binary. The pages carry no data and no inline script: `app.js` reads the page's name and the
//! caller's role from `<body data-*>` and talks to the JSON API (`/api/v1`) with the session
//! cookie, sending `x-bpu-csrf: 1` on writes.
//!
//! - `/ui/login`: the login form (POST /api/v1/auth/login with `session: true`).
//! - `/ui/`: live charts (committed tx/s, block height per node, pre-confirm and commit latency
//!   p50/p99, from GET /api/v1/stats each second) and the event log (SSE, newest first).
//! - `/ui/accounts`: accounts with balance, pending and available; create; disable (staff).
//! - `/ui/transfer`: the transfer form (and minting for operators and admins).
//! - `/ui/users`: users (admins): create, change role, disable and enable.
//!
//! Pages need a session: without one they redirect to `/ui/login?next=…` (and `app.js` does the
//! same when the API answers 401 later). Every dashboard answer carries a strict
//! Content-Security-Policy (`script-src 'self'`, nothing external).

use crate::app::AppState;
use crate::auth::Role;
use crate::error::AppError;
use crate::txsvc::Caller;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::sync::OnceLock;

/// The policy of every dashboard answer: only this origin's scripts, styles, images and API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self'; connect-src 'self'; form-action 'self'; \
                       base-uri 'none'; frame-ancestors 'none'";

/// The static files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/favicon.svg"),
    ),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui/login", get(login))
        .route("/ui/", get(overview))
        .route("/ui/accounts", get(accounts))
        .route("/ui/transfer", get(transfer))
        .route("/ui/users", get(users))
        .route("/ui/assets/{file}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

// ---- assets -------------------------------------------------------------------------------

/// Strong ETags of the assets (SHA-256 of the bytes, computed once).
fn etags() -> &'static Vec<String> {
    static E: OnceLock<Vec<String>> = OnceLock::new();
    E.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, b)| {
                let d = <sha2::Sha256 as sha2::Digest>::digest(b);
                format!("\"{}\"", hex::encode(&d[..12]))
            })
            .collect()
    })
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    let i = ASSETS
        .iter()
        .position(|(n, _, _)| *n == file)
        .ok_or_else(|| AppError::NotFound(format!("dashboard asset {file:?}")))?;
    let (_, ctype, bytes) = ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        bytes.into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    // Revalidate each time (cheap: 304 by ETag), so a new binary's assets show at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}

// ---- pages --------------------------------------------------------------------------------

/// The caller of a page request, or the redirect to the login page.
async fn session(st: &AppState, parts: &mut Parts) -> Result<Caller, Response> {
    match Caller::from_request_parts(parts, st).await {
        Ok(c) => Ok(c),
        Err(AppError::Unauthorized | AppError::Forbidden(_)) => {
            let next = parts.uri.path();
            Err(Redirect::to(&format!("/ui/login?next={}", query_escape(next))).into_response())
        }
        Err(e) => Err(e.into_response()),
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn query_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// HTML-escapes text for element content and quoted attributes.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The shared layout: head, the header with navigation and logout (when logged in), `main`.
fn layout(page: &str, title: &str, who: Option<&Caller>, main: &str) -> Response {
    let mut header_html = String::new();
    let mut data = format!(r#" data-page="{}""#, esc(page));
    if let Some(c) = who {
        data.push_str(&format!(
            r#" data-user="{}" data-role="{}""#,
            c.user,
            c.role.as_str()
        ));
        let mut links = vec![
            ("overview", "/ui/", "Overview"),
            ("accounts", "/ui/accounts", "Accounts"),
            ("transfer", "/ui/transfer", "Transfer"),
        ];
        if c.role == Role::Admin {
            links.push(("users", "/ui/users", "Users"));
        }
        let nav: String = links
            .iter()
            .map(|(p, href, label)| {
                let cur = if *p == page {
                    r#" aria-current="page""#
                } else {
                    ""
                };
                format!(r#"<a href="{href}"{cur}>{label}</a>"#)
            })
            .collect();
        header_html = format!(
            r#"<header class="top">
  <a class="brand" href="/ui/">bpu gateway</a>
  <nav>{nav}</nav>
  <div class="who"><span id="who">{name}</span> <span class="role">{role}</span>
    <button type="button" id="logout" class="link">Log out</button></div>
</header>"#,
            name = esc(&c.name),
            role = c.role.as_str(),
        );
    }
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · bpu gateway</title>
<link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/assets/style.css">
<script src="/ui/assets/app.js" defer></script>
</head>
<body{data}>
{header_html}
<main>
<noscript><p class="error">The dashboard needs JavaScript (served by the gateway itself; nothing external).</p></noscript>
{main}
</main>
</body>
</html>
"#,
        title = esc(title),
    );
    Html(html).into_response()
}

const LOGIN: &str = r#"<section class="card narrow">
<h1>Log in</h1>
<form id="login-form" autocomplete="on">
  <label>User name <input id="name" name="name" required autocomplete="username" autofocus></label>
  <label>Password <input id="password" name="password" type="password" required autocomplete="current-password"></label>
  <p id="login-error" class="error" role="alert" hidden></p>
  <button type="submit" id="login-submit">Log in</button>
</form>
</section>"#;

async fn login(State(st): State<AppState>, mut parts: Parts) -> Response {
    // Already logged in: straight to the overview.
    if Caller::from_request_parts(&mut parts, &st).await.is_ok() {
        return Redirect::to("/ui/").into_response();
    }
    layout("login", "Log in", None, LOGIN)
}

const OVERVIEW: &str = r#"<h1>Overview</h1>
<p id="stats-error" class="error" role="alert" hidden></p>
<section class="tiles">
  <div class="tile"><span class="label">Gateway height</span><span class="value" id="t-height">–</span></div>
  <div class="tile"><span class="label">Committed tx/s</span><span class="value" id="t-tps">–</span></div>
  <div class="tile"><span class="label">Open (not final)</span><span class="value" id="t-open">–</span></div>
  <div class="tile"><span class="label">Queued</span><span class="value" id="t-queued">–</span></div>
  <div class="tile"><span class="label">Uptime</span><span class="value" id="t-uptime">–</span></div>
</section>
<section class="charts">
  <figure class="chart"><figcaption>Committed transactions per second (last 60 s)</figcaption>
    <canvas id="c-tps" role="img" aria-label="committed transactions per second"></canvas></figure>
  <figure class="chart"><figcaption>Block height per node</figcaption>
    <canvas id="c-heights" role="img" aria-label="block height per node"></canvas></figure>
  <figure class="chart"><figcaption>Pre-confirm latency, ms (p50, p99)</figcaption>
    <canvas id="c-preconfirm" role="img" aria-label="pre-confirm latency"></canvas></figure>
  <figure class="chart"><figcaption>Commit latency, ms (p50, p99)</figcaption>
    <canvas id="c-commit" role="img" aria-label="commit latency"></canvas></figure>
</section>
<section class="card">
  <h2>Event log <span id="es-state" class="badge">connecting</span></h2>
  <table class="log">
    <thead><tr><th>Time</th><th>Kind</th><th>State</th><th class="num">Amount</th><th>From → to</th><th>Details</th></tr></thead>
    <tbody id="events"></tbody>
  </table>
  <p id="events-empty" class="muted">No events yet.</p>
</section>"#;

async fn overview(State(st): State<AppState>, mut parts: Parts) -> Response {
    match session(&st, &mut parts).await {
        Ok(c) => layout("overview", "Overview", Some(&c), OVERVIEW),
        Err(r) => r,
    }
}

const ACCOUNTS_STAFF: &str = r#"<label>Owner (user id; empty: you) <input id="acct-owner" type="number" min="1" step="1"></label>"#;

async fn accounts(State(st): State<AppState>, mut parts: Parts) -> Response {
    let c = match session(&st, &mut parts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let owner = if c.is_staff() { ACCOUNTS_STAFF } else { "" };
    let main = format!(
        r#"<h1>Accounts</h1>
<section class="card">
<h2>New account</h2>
<form id="acct-form" class="row">
  <label>Name <input id="acct-name" required maxlength="64" pattern="[A-Za-z0-9._@\-]+"></label>
  {owner}
  <button type="submit" id="acct-submit">Create</button>
</form>
<p id="acct-msg" class="ok" role="status" hidden></p>
<p id="acct-error" class="error" role="alert" hidden></p>
</section>
<section class="card">
<h2>All accounts <button type="button" id="acct-refresh" class="link">refresh</button></h2>
<p id="list-error" class="error" role="alert" hidden></p>
<table class="grid">
  <thead><tr><th class="num">Id</th><th>Name</th><th class="num">Owner</th><th>State</th><th class="num">Balance</th><th class="num">Pending</th><th class="num">Available</th><th>Ledger id</th><th></th></tr></thead>
  <tbody id="accounts"></tbody>
</table>
<button type="button" id="acct-more" hidden>More</button>
<p><a href="/ui/transfer">Make a transfer →</a></p>
</section>"#
    );
    layout("accounts", "Accounts", Some(&c), &main)
}

const MINT: &str = r#"<section class="card">
<h2>Mint</h2>
<form id="mint-form" class="row">
  <label>To <select id="mint-to" required></select></label>
  <label>Amount <input id="mint-amount" type="number" min="1" step="1" required></label>
  <button type="submit" id="mint-submit">Mint</button>
</form>
<p id="mint-error" class="error" role="alert" hidden></p>
</section>"#;

async fn transfer(State(st): State<AppState>, mut parts: Parts) -> Response {
    let c = match session(&st, &mut parts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mint = if c.is_staff() { MINT } else { "" };
    let main = format!(
        r#"<h1>Transfer</h1>
<section class="card">
<h2>New transfer</h2>
<form id="tx-form" class="row">
  <label>From <select id="tx-from" required></select></label>
  <label>To <select id="tx-to" required></select></label>
  <label id="tx-ledger-label" hidden>Ledger id <input id="tx-ledger" maxlength="64" pattern="[0-9a-fA-F]{{64}}" placeholder="64 hex digits"></label>
  <label>Amount <input id="tx-amount" type="number" min="1" step="1" required></label>
  <button type="submit" id="tx-submit">Send</button>
</form>
<p id="tx-error" class="error" role="alert" hidden></p>
<p id="tx-result" class="ok" role="status" hidden></p>
</section>
{mint}
<section class="card">
<h2>Sent from this page</h2>
<ul id="recent" class="recent"></ul>
<p class="muted">Every transaction also appears in the <a href="/ui/">event log</a>.</p>
</section>"#
    );
    layout("transfer", "Transfer", Some(&c), &main)
}

const USERS: &str = r#"<h1>Users</h1>
<section class="card">
<h2>New user</h2>
<form id="user-form" class="row">
  <label>Name <input id="user-name" required maxlength="64" pattern="[A-Za-z0-9._@\-]+" autocomplete="off"></label>
  <label>Role <select id="user-role"><option value="user">user</option><option value="operator">operator</option><option value="admin">admin</option></select></label>
  <label>Password <input id="user-password" type="password" required minlength="8" maxlength="256" autocomplete="new-password"></label>
  <button type="submit" id="user-submit">Create</button>
</form>
<p id="user-msg" class="ok" role="status" hidden></p>
<p id="user-error" class="error" role="alert" hidden></p>
</section>
<section class="card">
<h2>All users</h2>
<table class="grid">
  <thead><tr><th class="num">Id</th><th>Name</th><th>Role</th><th>State</th><th>Created</th><th></th></tr></thead>
  <tbody id="users"></tbody>
</table>
<button type="button" id="user-more" hidden>More</button>
</section>"#;

const NOT_ADMIN: &str = r#"<h1>Users</h1>
<p class="error" role="alert">Managing users needs the admin role.</p>"#;

async fn users(State(st): State<AppState>, mut parts: Parts) -> Response {
    match session(&st, &mut parts).await {
        Ok(c) if c.role == Role::Admin => layout("users", "Users", Some(&c), USERS),
        Ok(c) => layout("denied", "Users", Some(&c), NOT_ADMIN),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(query_escape("/ui/a b?c"), "/ui/a%20b%3Fc");
    }

    #[test]
    fn pages_have_no_inline_script() {
        for main in [LOGIN, OVERVIEW, USERS, MINT, ACCOUNTS_STAFF, NOT_ADMIN] {
            assert!(!main.contains("<script"), "{main}");
            let handler = main.match_indices(" on").any(|(i, _)| {
                let rest = &main[i + 3..];
                let n = rest.bytes().take_while(u8::is_ascii_lowercase).count();
                n > 0 && rest[n..].starts_with('=')
            });
            assert!(!handler, "inline handler in {main}");
            assert!(!main.contains("style="), "inline style in {main}");
        }
    }
}
