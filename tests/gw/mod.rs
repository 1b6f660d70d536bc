//! Harness of the gateway tests: a 4-node BFT network of `bpu node` processes (made by
//! `bpu up --prepare`), a `bpu gateway` process in front of it on SQLite or PostgreSQL, an
//! HTTP client, and a scan of the ledger that tells which transfers are really committed.
#![allow(dead_code)]

use bpu_ledger::client::Client;
use bpu_ledger::format::TxStatus;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub use crate::common::{bpu, free_run, run};

#[path = "../../runtime/tests/common/contracts.rs"]
mod contracts;
#[path = "../../middleware/tests/support/postgres.rs"]
mod postgres;

pub const NODES: usize = 4;
pub const PASSWORD: &str = "admin-password-1";

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("log file")
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// A fresh database URL for one gateway: an SQLite file in `dir`, or a new database on the
/// server of `BPU_TEST_POSTGRES`. `None`: PostgreSQL asked for but not configured (the caller
/// says so; `BPU_REQUIRE_POSTGRES=1`, set by ci/test.sh, makes that a failure).
pub fn database(store: Store, dir: &Path) -> Option<String> {
    match store {
        Store::Sqlite => Some(format!("sqlite://{}", dir.join("gateway.db").display())),
        Store::Postgres => postgres::fresh_database(),
    }
}

/// The network and its gateway.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Proc>,
    pub addrs: Vec<String>,
    pub gateway: Proc,
    pub http: String,
    pub db: String,
}

/// The token contract, built by `contracts/build.sh` into this test binary's own directory.
pub fn token_elf() -> PathBuf {
    contracts::path("token")
}

impl Net {
    /// Four nodes and a gateway on `db`, with the admin user `root`.
    pub async fn start(db_for: impl FnOnce(&Path) -> String) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        let (client, p2p) = (free_run(NODES as u16), free_run(NODES as u16));
        run(&[
            "up",
            "--prepare",
            "--dir",
            d.to_str().expect("utf8"),
            "--nodes",
            "4",
            "--listen",
            &client,
            "--p2p-listen",
            &p2p,
            "--block-timeout-ms",
            "100",
        ]);
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..NODES {
            let a: std::net::SocketAddr = client.parse().expect("addr");
            addrs.push(format!("127.0.0.1:{}", a.port() as usize + i));
            nodes.push(Net::node_proc(&d, i));
        }
        let db = db_for(&d);
        std::fs::write(d.join("pw"), PASSWORD).expect("pw");
        run(&[
            "gateway",
            "user",
            "add",
            "root",
            "--role",
            "admin",
            "--password-file",
            d.join("pw").to_str().expect("utf8"),
            "--net",
            d.to_str().expect("utf8"),
            "--db",
            &db,
        ]);
        let http = free_run(1);
        let mut net = Net {
            dir,
            nodes,
            addrs,
            gateway: Proc(None),
            http,
            db,
        };
        net.start_gateway().await;
        net
    }

    fn node_proc(d: &Path, i: usize) -> Proc {
        let child = bpu()
            .args(["node", "--config"])
            .arg(d.join(format!("node{i}.toml")))
            .stdout(Stdio::null())
            .stderr(log_file(d, &format!("node{i}.log")))
            .spawn()
            .expect("spawn bpu node");
        Proc(Some(child))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (or restarts) the gateway process and waits until it is ready.
    pub async fn start_gateway(&mut self) {
        let d = self.path().to_path_buf();
        let child = bpu()
            .args(["--log", "info", "gateway", "--net"])
            .arg(&d)
            .args(["--listen", &self.http, "--db", &self.db, "--token-elf"])
            .arg(token_elf())
            .stdout(Stdio::null())
            .stderr(log_file(&d, "gateway.log"))
            .spawn()
            .expect("spawn bpu gateway");
        self.gateway = Proc(Some(child));
        let url = format!("{}/readyz", self.base());
        let t = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(c) = self.gateway.0.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("the gateway exited ({st}): {}", self.log("gateway.log"));
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "the gateway did not become ready: {}",
                self.log("gateway.log")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self, name: &str) -> String {
        let s = std::fs::read_to_string(self.path().join(name)).unwrap_or_default();
        let skip = s.chars().count().saturating_sub(6000);
        s.chars().skip(skip).collect()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.http)
    }

    /// Valid token transfers and mints on the ledger (read from node `node`'s blocks):
    /// (method, creator member, recipient id, amount) with the number of times each occurs.
    pub async fn ledger_token_calls(
        &self,
        node: usize,
    ) -> HashMap<(String, u32, [u8; 32], u64), u32> {
        let mut c = Client::connect(&self.addrs[node]).await.expect("connect");
        let top = c.info().await.expect("info").height;
        let mut out = HashMap::new();
        for h in 1..=top {
            let b = c.block(h).await.expect("block").expect("held");
            for (t, s) in b.txs.iter().zip(&b.status) {
                let body = &t.tx.body;
                if *s != TxStatus::Valid || body.contract != "token" || body.args.len() != 40 {
                    continue;
                }
                let mut to = [0u8; 32];
                to.copy_from_slice(&body.args[..32]);
                let amount = u64::from_le_bytes(body.args[32..40].try_into().expect("8"));
                *out.entry((body.method.clone(), body.creator, to, amount))
                    .or_insert(0) += 1;
            }
        }
        out
    }
}

/// A logged-in HTTP client.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn login(net: &Net, name: &str, password: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let r = http
            .post(net.api("/auth/login"))
            .json(&json!({"name": name, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(
            r.status(),
            200,
            "login: {}",
            r.text().await.unwrap_or_default()
        );
        let v: Value = r.json().await.expect("json");
        Api {
            http,
            base: net.api(""),
            token: v["token"].as_str().expect("token").to_string(),
        }
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> reqwest::Result<(u16, Value)> {
        let mut b = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(k) = key {
            b = b.header("Idempotency-Key", k);
        }
        if let Some(j) = body {
            b = b.json(&j);
        }
        let r = b.send().await?;
        let s = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        Ok((s, v))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.req(reqwest::Method::GET, path, None, None)
            .await
            .expect("GET")
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.req(reqwest::Method::POST, path, Some(body), None)
            .await
            .expect("POST")
    }

    /// Creates an account; answers its view.
    pub async fn account(&self, name: &str) -> Value {
        let (s, v) = self.post("/accounts", json!({ "name": name })).await;
        assert_eq!(s, 201, "create account {name}: {v}");
        v
    }

    /// Mints `amount` to `to` and waits for the commit.
    pub async fn mint(&self, to: i64, amount: u64) {
        let key = format!("mint-{}", hex::encode(rand::random::<[u8; 8]>()));
        let (s, v) = self
            .req(
                reqwest::Method::POST,
                "/mints",
                Some(json!({"to": to, "amount": amount})),
                Some(&key),
            )
            .await
            .expect("mint");
        assert_eq!(s, 202, "mint: {v}");
        let id = v["id"].as_str().expect("id");
        self.committed(id).await;
    }

    /// Waits until transaction `id` is committed; panics if it is rejected.
    pub async fn committed(&self, id: &str) -> Value {
        let t = Instant::now();
        loop {
            let (s, v) = self
                .get(&format!(
                    "/transactions/{id}?wait=committed&timeout_ms=10000"
                ))
                .await;
            assert_eq!(s, 200, "{v}");
            match v["state"].as_str() {
                Some("committed") => return v,
                Some("rejected") => panic!("transaction {id} rejected: {v}"),
                _ => {}
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "transaction {id} not committed: {v}"
            );
        }
    }
}

/// The ledger id (bytes) of an account view.
pub fn ledger_id(account: &Value) -> [u8; 32] {
    let v = hex::decode(account["ledger_id"].as_str().expect("ledger_id")).expect("hex");
    v.try_into().expect("32 bytes")
}
