//! The gateway in front of a 4-node BFT network (processes): the token flow through curl only,
//! idempotency, double spends, authentication and authorization, malformed and oversized
//! requests (none of which reaches the ledger), the event stream's cursors, `kill -9` of the
//! gateway and of its node under load (every 202 committed exactly once, nothing else), and
//! the OpenAPI document under schemathesis; each on SQLite and on PostgreSQL.

mod common;
mod gw;

use gw::{ledger_id, Api, Net, Store, PASSWORD};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `test` on a fresh network whose gateway uses `store` (if it is available).
fn with_net<F, Fut>(store: Store, test: F)
where
    F: FnOnce(Net) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let probe = tempfile::tempdir().expect("tempdir");
    if gw::database(store, probe.path()).is_none() {
        return;
    }
    rt().block_on(async {
        let net = Net::start(|d| gw::database(store, d).expect("database")).await;
        test(net).await;
    });
}

/// `curl -s` with `args`; answers (HTTP status, JSON body or Null).
fn curl(args: &[&str]) -> (u16, Value) {
    let o = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// The error code of a typed error body (panics when the body is not one).
fn code(v: &Value) -> &str {
    let c = v["error"]["code"].as_str();
    assert!(
        c.is_some() && v["error"]["message"].is_string(),
        "not a typed error: {v}"
    );
    c.unwrap_or_default()
}

async fn token_flow_and_refusals(net: Net) {
    let api = |p: &str| net.api(p);
    // Admin login, two accounts, mint, transfer: curl only.
    let login = json!({"name": "root", "password": PASSWORD}).to_string();
    let (s, v) = curl(&[
        "-X",
        "POST",
        &api("/auth/login"),
        "-H",
        "content-type: application/json",
        "-d",
        &login,
    ]);
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().expect("token").to_string();
    let auth = format!("authorization: Bearer {token}");
    let post = |path: &str, body: &Value, key: Option<&str>| {
        let k = key.map(|k| format!("idempotency-key: {k}"));
        let mut a = vec![
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "content-type: application/json",
        ];
        if let Some(k) = &k {
            a.extend(["-H", k.as_str()]);
        }
        let b = body.to_string();
        let u = api(path);
        let mut a: Vec<String> = a.into_iter().map(String::from).collect();
        a.extend(["-d".into(), b, u]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        curl(&a)
    };
    let get = |path: &str| curl(&["-H", &auth, &api(path)]);
    let (s, alice) = post("/accounts", &json!({"name": "alice"}), None);
    assert_eq!(s, 201, "{alice}");
    let (s, bob) = post("/accounts", &json!({"name": "bob"}), None);
    assert_eq!(s, 201, "{bob}");
    assert_eq!(alice["state"], "active");
    let (a, b) = (
        alice["id"].as_i64().expect("id"),
        bob["id"].as_i64().expect("id"),
    );
    let (s, m) = post("/mints", &json!({"to": a, "amount": 100}), Some("mint-1"));
    assert_eq!(s, 202, "{m}");
    assert_eq!(m["state"], "preconfirmed");
    let (s, m2) = get(&format!(
        "/transactions/{}?wait=committed&timeout_ms=30000",
        m["id"].as_str().expect("id")
    ));
    assert_eq!((s, m2["state"].as_str()), (200, Some("committed")), "{m2}");
    let (s, t) = post(
        "/transactions",
        &json!({"from": a, "to": b, "amount": 30}),
        Some("pay-1"),
    );
    assert_eq!(s, 202, "{t}");
    assert_eq!(
        t["state"], "preconfirmed",
        "the 202 comes before the ledger commits"
    );
    let tid = t["id"].as_str().expect("id").to_string();
    let (s, t2) = get(&format!(
        "/transactions/{tid}?wait=committed&timeout_ms=30000"
    ));
    assert_eq!((s, t2["state"].as_str()), (200, Some("committed")), "{t2}");
    assert!(t2["height"].as_i64().is_some_and(|h| h > 0), "{t2}");
    let (_, va) = get(&format!("/accounts/{a}"));
    let (_, vb) = get(&format!("/accounts/{b}"));
    assert_eq!(
        (va["balance"].as_u64(), va["pending"].as_u64()),
        (Some(70), Some(0)),
        "{va}"
    );
    assert_eq!(vb["balance"].as_u64(), Some(30), "{vb}");
    let (_, hist) = get(&format!("/accounts/{a}/transactions"));
    assert_eq!(
        hist["items"].as_array().map(Vec::len),
        Some(2),
        "mint and transfer: {hist}"
    );

    // Idempotency: the same key again is the same transaction; another body with it is refused.
    let (s, again) = post(
        "/transactions",
        &json!({"from": a, "to": b, "amount": 30}),
        Some("pay-1"),
    );
    assert_eq!(
        (s, again["id"].as_str()),
        (202, Some(tid.as_str())),
        "{again}"
    );
    let (s, e) = post(
        "/transactions",
        &json!({"from": a, "to": b, "amount": 31}),
        Some("pay-1"),
    );
    assert_eq!((s, code(&e)), (422, "idempotency_key_reused"));

    // Two concurrent transfers spending the same balance (70): one 202, one 409.
    let spend = |key: &'static str| {
        let auth = auth.clone();
        let url = api("/transactions");
        let body = json!({"from": a, "to": b, "amount": 50}).to_string();
        std::thread::spawn(move || {
            curl(&[
                "-X",
                "POST",
                "-H",
                &auth,
                "-H",
                "content-type: application/json",
                "-H",
                &format!("idempotency-key: {key}"),
                "-d",
                &body,
                &url,
            ])
        })
    };
    let (x, y) = (spend("race-1"), spend("race-2"));
    let mut got = vec![x.join().expect("thread"), y.join().expect("thread")];
    got.sort_by_key(|(s, _)| *s);
    assert_eq!((got[0].0, got[1].0), (202, 409), "{got:?}");
    assert_eq!(code(&got[1].1), "insufficient_funds");
    let won = got[0].1["id"].as_str().expect("id").to_string();
    let (_, w) = get(&format!(
        "/transactions/{won}?wait=committed&timeout_ms=30000"
    ));
    assert_eq!(w["state"], "committed", "{w}");
    // The first transfer again (30, more than the 20 left): still its own answer, not a 409.
    let (s, again) = post(
        "/transactions",
        &json!({"from": a, "to": b, "amount": 30}),
        Some("pay-1"),
    );
    assert_eq!(
        (s, again["id"].as_str()),
        (202, Some(tid.as_str())),
        "{again}"
    );
    assert_eq!(again["state"], "committed");

    // Unauthenticated, a bad token, another user's account, a user minting.
    let (s, e) = curl(&[&api("/accounts")]);
    assert_eq!((s, code(&e)), (401, "unauthorized"));
    let (s, e) = curl(&["-H", "authorization: Bearer bpu_forged", &api("/accounts")]);
    assert_eq!((s, code(&e)), (401, "unauthorized"));
    let (s, _) = post(
        "/users",
        &json!({"name": "carol", "role": "user", "password": "carol-password"}),
        None,
    );
    assert_eq!(s, 201);
    let carol = Api::login(&net, "carol", "carol-password").await;
    let (s, e) = carol.get(&format!("/accounts/{a}")).await;
    assert!(matches!(s, 403 | 404), "{s} {e}");
    code(&e);
    let (s, e) = carol
        .req(
            reqwest::Method::POST,
            "/transactions",
            Some(json!({"from": a, "to": b, "amount": 1})),
            Some("c-1"),
        )
        .await
        .expect("post");
    assert_eq!((s, code(&e)), (404, "not_found"));
    let (s, e) = carol
        .req(
            reqwest::Method::POST,
            "/mints",
            Some(json!({"to": b, "amount": 1})),
            Some("c-2"),
        )
        .await
        .expect("post");
    assert_eq!((s, code(&e)), (403, "forbidden"));
    let (s, e) = carol.get("/network").await;
    assert_eq!(
        (s, code(&e)),
        (403, "forbidden"),
        "node addresses are for admins"
    );
    let (s, e) = carol.get("/users").await;
    assert_eq!(s, 403, "{e}");

    // Malformed JSON, wrong types, unknown fields, oversized bodies, no idempotency key.
    let raw = |body: &str, key: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "content-type: application/json",
            "-H",
            &format!("idempotency-key: {key}"),
            "-d",
            body,
            &api("/transactions"),
        ])
    };
    let (s, e) = raw("{\"from\": 1, \"to\": ", "bad-1");
    assert_eq!((s, code(&e)), (400, "invalid_json"));
    let (s, e) = raw(
        &json!({"from": a, "to": b, "amount": "ten"}).to_string(),
        "bad-2",
    );
    assert_eq!((s, code(&e)), (400, "invalid_body"));
    let (s, e) = raw(
        &json!({"from": a, "to": b, "amount": 1, "memo": "x"}).to_string(),
        "bad-3",
    );
    assert_eq!(
        (s, code(&e)),
        (400, "invalid_body"),
        "unknown fields are refused"
    );
    let (s, e) = raw(
        &json!({"from": a, "to": b, "amount": 0}).to_string(),
        "bad-4",
    );
    assert_eq!((s, code(&e)), (400, "bad_amount"));
    let big = json!({"from": a, "to": b, "amount": 1, "pad": "x".repeat(200_000)}).to_string();
    std::fs::write(net.path().join("big.json"), &big).expect("write");
    let big_arg = format!("@{}", net.path().join("big.json").display());
    let (s, e) = raw(&big_arg, "bad-5");
    assert_eq!((s, code(&e)), (413, "body_too_large"));
    let (s, e) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        &json!({"from": a, "to": b, "amount": 1}).to_string(),
        &api("/transactions"),
    ]);
    assert_eq!((s, code(&e)), (400, "missing_idempotency_key"));
    let (s, e) = curl(&["-X", "DELETE", "-H", &auth, &api(&format!("/accounts/{a}"))]);
    assert_eq!(
        (s, code(&e)),
        (405, "method_not_allowed"),
        "accounts are never deleted"
    );
    let (s, e) = curl(&["-X", "DELETE", "-H", &auth, &api("/users/1")]);
    assert_eq!((s, code(&e)), (405, "method_not_allowed"));
    let (s, e) = curl(&[&api("/nothing-here")]);
    assert_eq!((s, code(&e)), (404, "not_found"));

    // The ledger holds exactly the three accepted token calls, each once.
    let calls = net.ledger_token_calls(1).await;
    let (ma, mb) = (alice["member"].as_u64().expect("m") as u32, ledger_id(&bob));
    let issuer = calls
        .keys()
        .find(|(m, ..)| m == "mint")
        .map(|k| k.1)
        .expect("the mint");
    let want: HashMap<(String, u32, [u8; 32], u64), u32> = [
        (("mint".to_string(), issuer, ledger_id(&alice), 100), 1),
        (("transfer".to_string(), ma, mb, 30), 1),
        (("transfer".to_string(), ma, mb, 50), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(calls, want, "nothing refused reached the ledger");
    let (_, va) = get(&format!("/accounts/{a}"));
    assert_eq!(va["balance"].as_u64(), Some(20), "{va}");

    // Events: every event after a cursor exactly once, in order, over SSE.
    let root = Api::login(&net, "root", PASSWORD).await;
    let (_, all) = root.get("/events/page?after=0&limit=500").await;
    let seqs: Vec<i64> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.len() >= 10, "{all}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    let committed = all["items"].as_array().expect("items").iter().any(|e| {
        e["kind"] == "tx"
            && e["body"]["tx"]["id"] == tid.as_str()
            && e["body"]["tx"]["state"] == "committed"
    });
    assert!(committed, "the transfer's commit is an event");
    let cut = seqs[seqs.len() / 2];
    let first = sse(&root, None, Some(0), 4).await;
    assert_eq!(first, seqs[..4].to_vec(), "a stream from the start");
    let resumed = sse(
        &root,
        Some(cut),
        None,
        seqs.len() - seqs.iter().position(|s| *s == cut).expect("cut") - 1,
    )
    .await;
    assert_eq!(
        resumed,
        seqs.iter()
            .copied()
            .filter(|s| *s > cut)
            .collect::<Vec<_>>(),
        "resume after Last-Event-ID"
    );
    // A user sees only their own events.
    let (_, mine) = carol.get("/events/page?after=0&limit=500").await;
    assert!(
        mine["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["body"]["tx"]["id"] != tid.as_str()),
        "{mine}"
    );

    // Metrics and health.
    let m = reqwest::get(format!("{}/metrics", net.base()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "gateway_preconfirm_seconds_bucket",
        "gateway_commit_seconds_bucket",
        "gateway_node_up",
        "gateway_outbox_open",
        "gateway_http_requests_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    let (s, _) = curl(&[&format!("{}/healthz", net.base())]);
    assert_eq!(s, 200);
    // Logout revokes the token.
    let (s, _) = curl(&["-X", "POST", "-H", &auth, &api("/auth/logout")]);
    assert_eq!(s, 204);
    let (s, _) = get("/me");
    assert_eq!(s, 401, "a revoked token");
}

/// Reads `n` event ids from the SSE stream (resuming after `last_id`, or from `after`).
async fn sse(api: &Api, last_id: Option<i64>, after: Option<i64>, n: usize) -> Vec<i64> {
    let mut url = format!("{}/events", api.base);
    if let Some(a) = after {
        url.push_str(&format!("?after={a}"));
    }
    let mut b = api.http.get(url).bearer_auth(&api.token);
    if let Some(l) = last_id {
        b = b.header("Last-Event-ID", l.to_string());
    }
    let mut r = b.send().await.expect("stream");
    assert_eq!(r.status(), 200);
    let mut buf = String::new();
    let mut ids = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while ids.len() < n {
        let chunk = tokio::time::timeout_at(end.into(), r.chunk())
            .await
            .expect("events in time")
            .expect("read");
        let Some(c) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&c));
        while let Some(i) = buf.find("\n\n") {
            let ev: String = buf.drain(..i + 2).collect();
            if let Some(id) = ev.lines().find_map(|l| l.strip_prefix("id:")) {
                ids.push(id.trim().parse().expect("numeric id"));
            }
        }
    }
    ids
}

#[test]
fn token_flow_through_curl_and_every_refusal_sqlite() {
    with_net(Store::Sqlite, token_flow_and_refusals);
}

#[test]
fn token_flow_through_curl_and_every_refusal_postgres() {
    with_net(Store::Postgres, token_flow_and_refusals);
}

/// One transfer a load worker sent, and its answer.
#[derive(Debug, Clone)]
struct Sent {
    amount: u64,
    from_member: u32,
    to: [u8; 32],
    id: Option<String>,
    status: u16,
    at: Instant,
}

/// Outstanding transfers per worker: a worker waits for its oldest to commit before sending
/// more (each account commits one transfer per block, so an unbounded load only grows a queue).
const WINDOW: usize = 4;

/// A worker per pair of accounts sends transfers with unique amounts until `stop`; a request
/// without an answer (the gateway down) is retried with the same key until it gets one.
async fn load(api: Api, pairs: Vec<(i64, u32, i64, [u8; 32])>, stop: Arc<AtomicBool>) -> Vec<Sent> {
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (w, (from, from_member, to, to_lid)) in pairs.into_iter().enumerate() {
        let api = api.clone();
        let stop = stop.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut window = std::collections::VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                if window.len() >= WINDOW {
                    let id: String = window.pop_front().expect("window");
                    let path = format!("/transactions/{id}?wait=committed&timeout_ms=2000");
                    while !stop.load(Ordering::Relaxed) {
                        match api.req(reqwest::Method::GET, &path, None, None).await {
                            Ok((200, v))
                                if v["state"] != "preconfirmed" && v["state"] != "submitted" =>
                            {
                                break
                            }
                            Ok(_) => {}
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                    continue;
                }
                let amount = counter.fetch_add(1, Ordering::Relaxed) + 1;
                let key = format!("load-{w}-{amount}");
                let body = json!({"from": from, "to": to, "amount": amount});
                let (status, v) = loop {
                    match api
                        .req(
                            reqwest::Method::POST,
                            "/transactions",
                            Some(body.clone()),
                            Some(&key),
                        )
                        .await
                    {
                        Ok(r) => break r,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                };
                let id = v["id"].as_str().map(String::from);
                if let (202, Some(id)) = (status, &id) {
                    window.push_back(id.clone());
                }
                sent.push(Sent {
                    amount,
                    from_member,
                    to: to_lid,
                    id,
                    status,
                    at: Instant::now(),
                });
            }
            sent
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all
}

/// `n` funded pairs of accounts.
async fn pairs(api: &Api, n: usize) -> Vec<(i64, u32, i64, [u8; 32])> {
    let mk = |i: usize| {
        let api = api.clone();
        async move {
            (
                api.account(&format!("src{i}")).await,
                api.account(&format!("dst{i}")).await,
            )
        }
    };
    let accts = futures::future::join_all((0..n).map(mk)).await;
    let mints = accts
        .iter()
        .map(|(s, _)| api.mint(s["id"].as_i64().expect("id"), 1 << 40));
    futures::future::join_all(mints).await;
    accts
        .iter()
        .map(|(s, d)| {
            (
                s["id"].as_i64().expect("id"),
                s["member"].as_u64().expect("member") as u32,
                d["id"].as_i64().expect("id"),
                ledger_id(d),
            )
        })
        .collect()
}

/// Every 202 is committed exactly once on the ledger, and no other transfer of the load is.
async fn exactly_once(net: &Net, api: &Api, sent: &[Sent], node: usize) {
    let accepted: Vec<&Sent> = sent.iter().filter(|s| s.status == 202).collect();
    assert!(
        sent.iter().all(|s| s.status == 202 || s.status == 409),
        "unexpected answers: {:?}",
        sent.iter()
            .filter(|s| s.status != 202 && s.status != 409)
            .collect::<Vec<_>>()
    );
    // Every 202'd transaction reaches `committed` (read page by page).
    let want: std::collections::HashSet<&str> = accepted
        .iter()
        .map(|s| s.id.as_deref().expect("id"))
        .collect();
    let t = Instant::now();
    loop {
        let mut done = 0;
        let mut after = 0;
        loop {
            let (_, page) = api
                .get(&format!("/transactions?after={after}&limit=500"))
                .await;
            for tx in page["items"].as_array().expect("items") {
                if want.contains(tx["id"].as_str().unwrap_or_default()) {
                    assert_ne!(tx["state"], "rejected", "{tx}");
                    done += usize::from(tx["state"] == "committed");
                }
            }
            match page["next"].as_i64() {
                Some(n) => after = n,
                None => break,
            }
        }
        if done == want.len() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{done} of {} committed",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = net.ledger_token_calls(node).await;
    let members: std::collections::HashSet<u32> = sent.iter().map(|s| s.from_member).collect();
    let load_calls: HashMap<u64, u32> = calls
        .iter()
        .filter(|((m, from, ..), _)| m == "transfer" && members.contains(from))
        .map(|((_, _, _, amount), n)| (*amount, *n))
        .collect();
    for s in &accepted {
        assert_eq!(
            load_calls.get(&s.amount),
            Some(&1),
            "transfer of {} (202) on the ledger",
            s.amount
        );
        assert!(calls.contains_key(&("transfer".into(), s.from_member, s.to, s.amount)));
    }
    assert_eq!(
        load_calls.len(),
        accepted.len(),
        "only 202'd transfers are on the ledger"
    );
}

async fn gateway_killed_under_load(mut net: Net) {
    let api = Api::login(&net, "root", PASSWORD).await;
    let p = pairs(&api, 12).await;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn(load(api.clone(), p, stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = Instant::now();
    net.gateway.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    net.start_gateway().await;
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = worker.await.expect("load");
    let before = sent
        .iter()
        .filter(|s| s.status == 202 && s.at < killed)
        .count();
    let after = sent
        .iter()
        .filter(|s| s.status == 202 && s.at > restarted)
        .count();
    assert!(
        before > 10 && after > 10,
        "202s before the kill {before}, after the restart {after}"
    );
    exactly_once(&net, &api, &sent, 2).await;
    let log = net.log("gateway.log");
    assert!(
        log.contains("open transactions recovered") || log.contains("sending"),
        "the restart recovered the outbox: {log}"
    );
}

#[test]
fn kill_9_of_the_gateway_under_load_commits_every_202_once_sqlite() {
    with_net(Store::Sqlite, gateway_killed_under_load);
}

#[test]
fn kill_9_of_the_gateway_under_load_commits_every_202_once_postgres() {
    with_net(Store::Postgres, gateway_killed_under_load);
}

/// How the gateway's node fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeFault {
    /// `kill -9`.
    Killed,
    /// `kill -STOP`: the process hangs with its sockets open (requests time out), and is
    /// continued at the end.
    Stalled,
}

async fn node_killed_under_load(net: Net) {
    node_fails_under_load(net, NodeFault::Killed).await;
}

async fn node_stalled_under_load(net: Net) {
    node_fails_under_load(net, NodeFault::Stalled).await;
}

async fn node_fails_under_load(mut net: Net, fault: NodeFault) {
    let api = Api::login(&net, "root", PASSWORD).await;
    let p = pairs(&api, 12).await;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn(load(api.clone(), p, stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, nv) = api.get("/network").await;
    let primary = nv["primary"].as_u64().expect("a primary") as usize;
    let pid = net.nodes[primary]
        .0
        .as_ref()
        .expect("node")
        .id()
        .to_string();
    match fault {
        NodeFault::Killed => net.nodes[primary].kill(),
        NodeFault::Stalled => {
            assert!(Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .expect("kill")
                .success());
        }
    }
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = worker.await.expect("load");
    let (_, during) = api.get("/network").await;
    if fault == NodeFault::Stalled {
        assert!(Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success());
    }
    let after: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.status == 202 && s.at > killed + Duration::from_secs(1))
        .collect();
    assert!(
        after.len() > 10,
        "transfers accepted after the node died: {}",
        after.len()
    );
    let survivor = (primary + 1) % gw::NODES;
    exactly_once(&net, &api, &sent, survivor).await;
    assert_ne!(
        during["primary"].as_u64(),
        Some(primary as u64),
        "moved to another node: {during}"
    );
    assert_eq!(during["nodes"][primary]["healthy"], false, "{during}");
}

#[test]
fn kill_9_of_the_gateways_node_under_load_fails_over_without_loss_sqlite() {
    with_net(Store::Sqlite, node_killed_under_load);
}

#[test]
fn kill_9_of_the_gateways_node_under_load_fails_over_without_loss_postgres() {
    with_net(Store::Postgres, node_killed_under_load);
}

#[test]
fn a_stalled_node_under_load_is_left_without_loss_sqlite() {
    with_net(Store::Sqlite, node_stalled_under_load);
}

#[test]
fn a_stalled_node_under_load_is_left_without_loss_postgres() {
    with_net(Store::Postgres, node_stalled_under_load);
}

async fn openapi_under_schemathesis(net: Net) {
    let doc: Value = reqwest::get(net.api("/openapi.json"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    for p in [
        "/api/v1/transactions",
        "/api/v1/accounts/{id}",
        "/api/v1/events",
        "/api/v1/auth/login",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let api = Api::login(&net, "root", PASSWORD).await;
    let a = api.account("seed-a").await;
    api.mint(a["id"].as_i64().expect("id"), 1000).await;
    let exe = std::env::var("BPU_SCHEMATHESIS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/py/bin/schemathesis").into()
    });
    assert!(
        std::path::Path::new(&exe).exists(),
        "{exe} is missing: run ci/setup.sh (it installs schemathesis from PyPI)"
    );
    let url = net.api("/openapi.json");
    let cwd = net.path().to_path_buf();
    let auth = format!("Authorization: Bearer {}", api.token);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .current_dir(cwd)
            .args([
                "run",
                &url,
                "-H",
                &auth,
                "--checks",
                "all",
                "--max-examples",
                "25",
                "--request-timeout",
                "20",
            ])
            // Logout would revoke the token the run uses; the event stream never ends (each
            // case would last the request timeout; token_flow_… reads it with cursors).
            .args([
                "--exclude-path",
                "/api/v1/auth/logout",
                "--exclude-path",
                "/api/v1/events",
            ])
            // Not positive_data_acceptance: JSON Schema counts 2.0 as an integer (serde does not),
            // and schema-valid requests for accounts that do not exist are rightly refused.
            .args(["--exclude-checks", "positive_data_acceptance"])
            .args(["--generation-deterministic", "--no-color"])
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{text}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.log("gateway.log")
    );
    assert!(
        text.contains("Tested:"),
        "schemathesis ran no operation: {text}"
    );
}

#[test]
fn the_openapi_document_holds_under_schemathesis_sqlite() {
    with_net(Store::Sqlite, openapi_under_schemathesis);
}

#[test]
fn the_openapi_document_holds_under_schemathesis_postgres() {
    with_net(Store::Postgres, openapi_under_schemathesis);
}

/// `bpu up` starts the gateway beside its node with a generated admin password.
#[test]
fn bpu_up_brings_up_the_gateway_and_its_dashboard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, http) = (gw::free_run(1), gw::free_run(1));
    let mut up = gw::Proc(Some(
        gw::bpu()
            .args(["up", "--nodes", "1", "--block-timeout-ms", "100", "--dir"])
            .arg(dir.path())
            .args(["--listen", &node, "--gateway-listen", &http, "--token-elf"])
            .arg(gw::token_elf())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("bpu up"),
    ));
    rt().block_on(async {
        let t = Instant::now();
        let ready = format!("http://{http}/readyz");
        while !reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "no gateway: {}",
                std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pw = std::fs::read_to_string(dir.path().join("gateway-admin.password"))
            .expect("password file");
        let r = reqwest::Client::new()
            .post(format!("http://{http}/api/v1/auth/login"))
            .json(&json!({"name": "admin", "password": pw.trim()}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200);
        let page = reqwest::get(format!("http://{http}/ui/login"))
            .await
            .expect("dashboard");
        assert_eq!(page.status(), 200);
        assert!(
            page.text().await.expect("html").contains("<html"),
            "the dashboard's login page"
        );
    });
    // Even a `kill -9` of `bpu up` (no cleanup runs) stops its gateway: it watches its parent.
    up.kill();
    rt().block_on(async {
        let t = Instant::now();
        while reqwest::get(format!("http://{http}/healthz")).await.is_ok() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the gateway outlived bpu up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
