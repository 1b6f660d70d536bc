//! The web dashboard in a real headless Chromium (driven over W3C WebDriver by ChromeDriver),
//! against a gateway in front of an in-process one-node solo ledger: log in, make a transfer on
//! the transfer page, see it committed in the overview's event log; the accounts and users
//! pages; logging out; pages without a session end on the login page. Plus the served pages and
//! assets themselves (content types, the Content-Security-Policy, no inline script).
//!
//! Needs Debian's chromium and chromium-driver (`bash ci/setup.sh`; paths from BPU_CHROMIUM and
//! BPU_CHROMEDRIVER) and clang and lld for `contracts/build.sh` (the token contract); fails without them.

mod ui;

use bpu_gateway::auth::Role;
use serde_json::json;
use std::time::{Duration, Instant};
use ui::net::Env;
use ui::webdriver::Browser;

const ADMIN: &str = "admin";
const ADMIN_PW: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(30);

/// Logs in through the login page and waits for the overview.
fn log_in(b: &Browser, env: &Env, name: &str, password: &str) {
    b.goto(&env.url("/ui/login"));
    let n = b.wait_for("#name", WAIT);
    b.type_text(&n, name);
    let p = b.wait_for("#password", WAIT);
    b.type_text(&p, password);
    b.click(&b.wait_for("#login-submit", WAIT));
    b.wait_path("/ui/", WAIT);
    b.wait_for("#c-tps", WAIT);
}

/// Clicks the navigation link to `path` and waits for the page.
fn nav(b: &Browser, path: &str) {
    b.click(&b.wait_for(&format!("header nav a[href=\"{path}\"]"), WAIT));
    b.wait_path(path, WAIT);
}

/// Picks `value` in the `<select>` `css` (waiting for the option to be loaded), by clicking.
fn choose(b: &Browser, css: &str, value: &str) {
    let o = b.wait_for(&format!("{css} option[value=\"{value}\"]"), WAIT);
    b.click(&o);
    let got = b
        .exec(
            "return document.querySelector(arguments[0]).value",
            json!([css]),
        )
        .expect("select value");
    assert_eq!(got, value, "{css} did not take {value}");
}

/// Fills an input.
fn fill(b: &Browser, css: &str, text: &str) {
    let e = b.wait_for(css, WAIT);
    b.clear(&e);
    b.type_text(&e, text);
}

/// Waits for the status box `ok` or the error box `err` to show; answers (ok?, text).
fn outcome(b: &Browser, ok: &str, err: &str) -> (bool, String) {
    let v = b.wait_js(
        &format!("{ok} or {err}"),
        WAIT,
        "const ok = document.querySelector(arguments[0]), err = document.querySelector(arguments[1]);
         if (err && !err.hidden && err.textContent) return ['err', err.textContent];
         if (ok && !ok.hidden && ok.textContent) return ['ok', ok.textContent];
         return null;",
        json!([ok, err]),
    );
    (v[0] == "ok", v[1].as_str().unwrap_or_default().to_string())
}

/// Asserts the browser logged no error since the last check but those containing one of
/// `expected` (when ChromeDriver exposes the console log).
fn no_console_errors(b: &Browser, expected: &[&str]) {
    let Some(logs) = b.console() else {
        eprintln!("(this ChromeDriver does not expose the console log; not checked)");
        return;
    };
    let severe: Vec<_> = logs
        .iter()
        .filter(|l| l["level"] == "SEVERE")
        .filter(|l| {
            let m = l["message"].as_str().unwrap_or_default();
            !expected.iter().any(|e| m.contains(e))
        })
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
}

#[test]
fn log_in_transfer_and_see_it_committed_in_the_event_log() {
    let t0 = Instant::now();
    let env = Env::start();
    env.add_user(ADMIN, Role::Admin, ADMIN_PW);
    let api = env.login(ADMIN, ADMIN_PW);
    let alice = api.account("alice");
    let bob = api.account("bob");
    api.mint(alice, 1000);
    eprintln!("ledger, gateway, accounts, mint: {:?}", t0.elapsed());

    let b = Browser::start();
    eprintln!("chromium up: {:?}", t0.elapsed());
    log_in(&b, &env, ADMIN, ADMIN_PW);
    let who = b.text(&b.wait_for("#who", WAIT));
    assert_eq!(who, ADMIN);

    // The overview's four charts are canvases, drawn from live stats.
    let canvases = b
        .exec(
            "return ['c-tps', 'c-heights', 'c-preconfirm', 'c-commit']
               .filter(id => document.getElementById(id) instanceof HTMLCanvasElement).length",
            json!([]),
        )
        .expect("canvases");
    assert_eq!(canvases, 4, "the overview has four chart canvases");
    b.wait_js(
        "stats on the overview (gateway height) and a drawn height chart",
        WAIT,
        "const h = Number(document.getElementById('t-height').textContent);
         const c = document.getElementById('c-heights');
         const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
         let ink = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) ink++;
         return h >= 1 && ink > 100 ? h : null;",
        json!([]),
    );

    // A transfer on the transfer page.
    nav(&b, "/ui/transfer");
    choose(&b, "#tx-from", &alice.to_string());
    choose(&b, "#tx-to", &bob.to_string());
    fill(&b, "#tx-amount", "250");
    b.click(&b.wait_for("#tx-submit", WAIT));
    let (ok, text) = outcome(&b, "#tx-result", "#tx-error");
    assert!(ok, "the transfer failed: {text}");
    let id = b
        .attr(&b.wait_for("#tx-result", WAIT), "data-tx")
        .expect("the result names the transaction");
    assert_eq!(id.len(), 32, "transaction id {id:?}");
    eprintln!("transfer {id} pre-confirmed: {:?}", t0.elapsed());

    // It shows as committed in the overview's event log.
    nav(&b, "/ui/");
    let sel = format!("#events tr[data-tx=\"{id}\"]");
    b.wait_js(
        &format!("transfer {id} committed in the event log"),
        WAIT,
        "const r = document.querySelector(arguments[0]);
         return r && r.dataset.state === 'committed' ? true : null;",
        json!([sel]),
    );
    let row = b.text(&b.wait_for(&sel, WAIT));
    assert!(row.contains("committed"), "the state shows as text: {row}");
    assert!(row.contains("transfer") && row.contains("250"), "{row}");
    assert!(row.contains(&format!("#{alice} → #{bob}")), "{row}");
    let live = b.text(&b.wait_for("#es-state", WAIT));
    assert_eq!(live, "live", "the event stream is connected");
    // Newest first: the first transaction row of the log is this transfer (the mint is older).
    let first = b
        .exec(
            "return document.querySelector('#events tr[data-tx]').dataset.tx",
            json!([]),
        )
        .expect("first row");
    assert_eq!(first, id.as_str(), "newest first");
    eprintln!("committed in the event log: {:?}", t0.elapsed());
    b.screenshot("overview");

    // The accounts page shows the new balances.
    nav(&b, "/ui/accounts");
    for (acct, want) in [(alice, "750"), (bob, "250")] {
        b.wait_js(
            &format!("account {acct} with balance {want}"),
            WAIT,
            "const c = document.querySelector(`tr[data-account=\"${arguments[0]}\"] [data-field=balance]`);
             return c && c.textContent === arguments[1] ? true : null;",
            json!([acct, want]),
        );
    }
    b.screenshot("accounts");

    no_console_errors(&b, &[]);

    // A failing transfer shows the API's typed error.
    nav(&b, "/ui/transfer");
    choose(&b, "#tx-from", &bob.to_string());
    choose(&b, "#tx-to", &alice.to_string());
    fill(&b, "#tx-amount", "1000000");
    b.click(&b.wait_for("#tx-submit", WAIT));
    let (ok, text) = outcome(&b, "#tx-result", "#tx-error");
    assert!(!ok, "an overdraft was accepted: {text}");
    assert!(
        text.contains("insufficient_funds") && text.contains("available"),
        "{text}"
    );
    b.screenshot("transfer-error");
    // (The browser logs the refused request itself, and nothing else.)
    no_console_errors(&b, &["/api/v1/transactions - Failed to load resource: the server responded with a status of 409"]);

    // Users: create one on the page and disable it.
    nav(&b, "/ui/users");
    b.wait_for("#users tr[data-user]", WAIT);
    fill(&b, "#user-name", "carol");
    choose(&b, "#user-role", "operator");
    fill(&b, "#user-password", "carol's password");
    b.click(&b.wait_for("#user-submit", WAIT));
    let (ok, text) = outcome(&b, "#user-msg", "#user-error");
    assert!(ok && text.contains("carol"), "creating a user: {text}");
    let users = api.expect(200, "GET", "/api/v1/users", None);
    let carol = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|u| u["name"] == "carol")
        .expect("carol exists")["id"]
        .as_i64()
        .expect("id");
    assert_eq!(
        api.expect(200, "GET", &format!("/api/v1/users/{carol}"), None)["role"],
        "operator"
    );
    b.click(&b.wait_for(
        &format!("#users tr[data-user=\"{carol}\"] button[data-action=disable]"),
        WAIT,
    ));
    b.wait_for(
        &format!("#users tr[data-user=\"{carol}\"] button[data-action=enable]"),
        WAIT,
    );
    assert_eq!(
        api.expect(200, "GET", &format!("/api/v1/users/{carol}"), None)["disabled"],
        true
    );
    b.screenshot("users");

    no_console_errors(&b, &[]);

    // Logging out ends the session: the overview sends us back to the login page.
    b.click(&b.wait_for("#logout", WAIT));
    b.wait_path("/ui/login", WAIT);
    b.goto(&env.url("/ui/"));
    b.wait_path("/ui/login", WAIT);
    eprintln!("done: {:?}", t0.elapsed());
}

#[test]
fn without_a_session_pages_end_on_the_login_page() {
    let env = Env::start();
    env.add_user("op", Role::Operator, "operator password");
    let b = Browser::start();
    // Server side: no cookie, straight to the login page (remembering where we were going).
    for page in ["/ui/", "/ui/accounts", "/ui/users"] {
        b.goto(&env.url(page));
        let url = b.wait_path("/ui/login", WAIT);
        let next = url.split("next=").nth(1).unwrap_or_default().to_string();
        assert_eq!(next.replace("%2F", "/"), page, "{url}");
        b.wait_for("#login-form", WAIT);
    }
    // A wrong password shows the API's message and stays on the login page.
    fill(&b, "#name", "op");
    fill(&b, "#password", "not the password");
    b.click(&b.wait_for("#login-submit", WAIT));
    let (_, text) = outcome(&b, "#nothing", "#login-error");
    b.screenshot("login-error");
    assert!(text.contains("wrong user name or password"), "{text}");
    // Logging in goes where the visit wanted to (the users page, which operators may not use).
    fill(&b, "#password", "operator password");
    b.click(&b.wait_for("#login-submit", WAIT));
    b.wait_path("/ui/users", WAIT);
    let text = b.page_text();
    assert!(text.contains("needs the admin role"), "{text}");
    assert!(
        b.find("header nav a[href=\"/ui/users\"]").is_none(),
        "no users link for operators"
    );
    // Client side: when the session ends under an open page, its next API call (a 401) sends
    // it to the login page. End it from outside with the cookie's token.
    nav(&b, "/ui/");
    let cookie = b
        .cmd("GET", "/cookie/bpu_session", None)
        .expect("session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    let token = cookie["value"].as_str().expect("cookie value");
    let a = env.raw(
        "POST",
        "/api/v1/auth/logout",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(a.status, 204, "{}", a.text());
    let url = b.wait_path("/ui/login", WAIT);
    assert!(url.contains("next=%2Fui%2F"), "{url}");
}

#[test]
fn pages_and_assets_have_types_csp_and_no_inline_script() {
    let env = Env::start();
    env.add_user(ADMIN, Role::Admin, ADMIN_PW);
    env.add_user("user1", Role::User, "user one password");
    let get = |path: &str, cookie: Option<&str>| {
        let c = cookie.map(|c| format!("bpu_session={c}"));
        let h: Vec<(&str, &str)> = c.iter().map(|c| ("Cookie", c.as_str())).collect();
        env.raw("GET", path, &h, None)
    };
    let session = |name: &str, pw: &str| {
        let a = env.raw(
            "POST",
            "/api/v1/auth/login",
            &[("Content-Type", "application/json")],
            Some(
                json!({"name": name, "password": pw, "session": true})
                    .to_string()
                    .as_bytes(),
            ),
        );
        assert_eq!(a.status, 200, "{}", a.text());
        let c = a.header("set-cookie").expect("set-cookie").to_string();
        assert!(c.contains("HttpOnly"), "{c}");
        let v = c.strip_prefix("bpu_session=").expect("cookie name");
        v.split(';').next().expect("value").to_string()
    };
    let admin = session(ADMIN, ADMIN_PW);
    let user = session("user1", "user one password");

    let a = get("/", None);
    assert!(a.status == 307 || a.status == 308, "{}", a.status);
    assert_eq!(a.header("location"), Some("/ui/"));
    let a = get("/ui/", None);
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/ui/login?next=/ui/"));
    // Logged in, the login page sends to the overview.
    let a = get("/ui/login", Some(&admin));
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/ui/"));

    let pages = [
        ("/ui/login", None, "login"),
        ("/ui/", Some(&admin), "overview"),
        ("/ui/accounts", Some(&admin), "accounts"),
        ("/ui/transfer", Some(&admin), "transfer"),
        ("/ui/users", Some(&admin), "users"),
        ("/ui/users", Some(&user), "denied"),
        ("/ui/transfer", Some(&user), "transfer"),
    ];
    for (path, cookie, page) in pages {
        let a = get(path, cookie.map(String::as_str));
        let html = a.text();
        assert_eq!(a.status, 200, "{path}: {html}");
        assert_eq!(
            a.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let csp = a.header("content-security-policy").expect("CSP");
        assert_eq!(csp, bpu_gateway::dashboard::CSP);
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert!(html.contains(&format!("data-page=\"{page}\"")), "{path}");
        // Scripts only from files; no inline handlers, styles or external resources.
        let scripts: Vec<&str> = html.split("<script").skip(1).collect();
        assert_eq!(scripts.len(), 1, "{path}: one script");
        assert!(
            scripts[0].starts_with(" src=\"/ui/assets/app.js\" defer></script>"),
            "{path}: {}",
            scripts[0]
        );
        for bad in [
            " onclick=",
            " onsubmit=",
            " onload=",
            "style=",
            "http://",
            "https://",
        ] {
            assert!(!html.contains(bad), "{path} contains {bad:?}");
        }
    }
    // Only admins get the users link; staff the mint form.
    let a = get("/ui/", Some(&user)).text();
    assert!(!a.contains("href=\"/ui/users\"") && a.contains("data-role=\"user\""));
    assert!(get("/ui/", Some(&admin))
        .text()
        .contains("href=\"/ui/users\""));
    assert!(get("/ui/transfer", Some(&admin))
        .text()
        .contains("id=\"mint-form\""));
    assert!(!get("/ui/transfer", Some(&user))
        .text()
        .contains("id=\"mint-form\""));

    // The assets are the files in middleware/assets, embedded, with their types.
    let assets: [(&str, &str, &[u8]); 3] = [
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
    for (name, ctype, bytes) in assets {
        let path = format!("/ui/assets/{name}");
        let a = get(&path, None);
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("content-type"), Some(ctype), "{path}");
        assert_eq!(a.body, bytes, "{path}");
        assert!(a.header("content-security-policy").is_some());
        let etag = a.header("etag").expect("etag").to_string();
        let again = env.raw("GET", &path, &[("If-None-Match", &etag)], None);
        assert_eq!(again.status, 304, "{path} revalidates by ETag");
        assert!(again.body.is_empty());
    }
    let js = String::from_utf8_lossy(include_bytes!("../assets/app.js"));
    assert!(js.contains("credentials: 'same-origin'") && js.contains("'x-bpu-csrf'"));
    assert!(
        !js.contains("http://") && !js.contains("https://"),
        "nothing external"
    );
    let a = get("/ui/assets/nope.js", None);
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["code"], "not_found", "{}", a.text());
}
