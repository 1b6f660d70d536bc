//! A one-node solo ledger and a gateway in front of it, both in-process on a runtime of their
//! own (so the tests drive the browser from a plain blocking thread), plus a JSON API client.

use super::{contracts, http};
use bpu_gateway::auth::Role;
use bpu_gateway::{Config, Gateway};
use bpu_ledger::membership::{
    ChannelParams, Genesis, Member, Membership, Org, Role as LedgerRole, ValidatorKey,
};
use bpu_ledger::node::{Node, NodeConfig};
use bpu_ledger::order::CutterConfig;
use bpu_runtime::{CryptoService, SigningKey};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The ledger and the gateway; everything stops when this drops.
pub struct Env {
    /// `127.0.0.1:PORT` of the gateway.
    pub addr: String,
    pub gateway: Gateway,
    _node: Node,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

/// The token contract, built by `contracts/build.sh` into this test binary's own directory.
fn token_elf() -> PathBuf {
    contracts::path("token")
}

fn genesis(admin: &SigningKey, node: &SigningKey) -> Genesis {
    let member = |name: &str, key: &SigningKey, roles: &[LedgerRole]| Member {
        org: 0,
        name: name.into(),
        key: key.public_key().to_sec1().to_vec(),
        roles: roles.iter().fold(0, |r, x| r | *x as u8),
        bls: roles
            .contains(&LedgerRole::Validator)
            .then(|| ValidatorKey::derived(key)),
    };
    use LedgerRole::*;
    Genesis {
        version: bpu_ledger::format::VERSION,
        channel: "dashboard".into(),
        created_ms: 1_700_000_000_000,
        membership: Membership {
            orgs: vec![Org { name: "org".into() }],
            members: vec![
                member("admin", admin, &[Admin, Writer, Reader]),
                member("node0", node, &[Validator, Reader]),
            ],
        },
        params: ChannelParams::default(),
    }
}

impl Env {
    /// Starts the ledger node (solo orderer, 20 ms blocks) and the gateway on 127.0.0.1:0;
    /// the gateway deploys the token contract with the admin member's key.
    pub fn start() -> Env {
        Env::start_with(None, |_| {})
    }

    /// As `start`, on the database `db` (default: SQLite in the temporary directory), with the
    /// gateway configuration changed by `tweak`.
    pub fn start_with(db: Option<String>, tweak: impl FnOnce(&mut Config)) -> Env {
        let elf = token_elf();
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let admin = SigningKey::generate().expect("admin key");
        let node_key = SigningKey::generate().expect("node key");
        let issuer_pem = dir.path().join("issuer.pem");
        std::fs::write(&issuer_pem, admin.to_pem().expect("pem")).expect("write issuer key");
        let (node, node_addr) = rt.block_on(async {
            let node = Node::start(NodeConfig {
                data_dir: dir.path().join("node"),
                genesis: genesis(&admin, &node_key),
                key: node_key,
                crypto: CryptoService::cpu(),
                cutter: Some(CutterConfig {
                    max_txs: 1000,
                    max_bytes: 2 << 20,
                    timeout: Duration::from_millis(20),
                    queue: 100_000,
                }),
                clock: None,
            })
            .await
            .expect("ledger node starts");
            let addr = bpu_ledger::server::spawn(node.clone(), "127.0.0.1:0")
                .await
                .expect("ledger listens");
            (node, addr.to_string())
        });
        let mut cfg = Config::new(
            db.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("gateway.db").display())),
            vec![node_addr],
            dir.path().join("gateway.key"),
            issuer_pem,
        );
        cfg.listen = "127.0.0.1:0".into();
        cfg.token_elf = Some(elf);
        tweak(&mut cfg);
        let gateway = rt
            .block_on(bpu_gateway::start(cfg))
            .unwrap_or_else(|e| panic!("the gateway starts: {e}"));
        Env {
            addr: gateway.addr.to_string(),
            gateway,
            _node: node,
            rt: Some(rt),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Runs `f` on the environment's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("runtime").block_on(f)
    }

    /// Creates a user directly in the database (as `bpu gateway user add` does).
    pub fn add_user(&self, name: &str, role: Role, password: &str) {
        let db = self.gateway.state.db.clone();
        self.rt
            .as_ref()
            .expect("runtime")
            .block_on(bpu_gateway::handlers::add_user(&db, name, role, password))
            .unwrap_or_else(|e| panic!("adding user {name}: {e}"));
    }

    /// A raw request to the gateway.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> http::Answer {
        http::request(
            &self.addr,
            method,
            path,
            headers,
            body,
            Duration::from_secs(70),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Logs in with a bearer token.
    pub fn login(&self, name: &str, password: &str) -> Api<'_> {
        let a = self.raw(
            "POST",
            "/api/v1/auth/login",
            &[("Content-Type", "application/json")],
            Some(
                json!({"name": name, "password": password})
                    .to_string()
                    .as_bytes(),
            ),
        );
        assert_eq!(a.status, 200, "login: {}", a.text());
        let token = a.json()["token"].as_str().expect("token").to_string();
        Api { env: self, token }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.gateway.abort();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// The JSON API with a bearer token.
pub struct Api<'a> {
    env: &'a Env,
    pub token: String,
}

impl Api<'_> {
    /// Sends a request; answers (status, JSON body or null).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        let bytes = body.map(|b| b.to_string().into_bytes());
        let a = self.env.raw(method, path, &headers, bytes.as_deref());
        let v = if a.body.is_empty() {
            Value::Null
        } else {
            a.json()
        };
        (a.status, v)
    }

    /// Sends a request that must answer `want`.
    pub fn expect(&self, want: u16, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body, &[]);
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    /// Creates an account owned by the caller; answers its id.
    pub fn account(&self, name: &str) -> i64 {
        let v = self.expect(
            201,
            "POST",
            "/api/v1/accounts",
            Some(json!({ "name": name })),
        );
        v["id"].as_i64().expect("account id")
    }

    /// Mints `amount` to account `to` and waits for the commit.
    pub fn mint(&self, to: i64, amount: u64) {
        let key = format!("mint-{to}-{amount}-{}", rand::random::<u64>());
        let (s, v) = self.call(
            "POST",
            "/api/v1/mints",
            Some(json!({"to": to, "amount": amount})),
            &[("Idempotency-Key", &key)],
        );
        assert_eq!(s, 202, "mint: {v}");
        let id = v["id"].as_str().expect("tx id");
        let v = self.expect(
            200,
            "GET",
            &format!("/api/v1/transactions/{id}?wait=committed&timeout_ms=30000"),
            None,
        );
        assert_eq!(v["state"], "committed", "mint: {v}");
    }
}
