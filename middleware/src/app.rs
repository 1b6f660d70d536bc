//! The gateway process: configuration, start-up (database, nodes, the token contract, the
//! transaction service, the account creator), and `build_router`, the whole HTTP surface.

use crate::accounts::{self, Creator, CreatorCtx};
use crate::db::{self, Db};
use crate::error::{code_for_status, error_response, AppError};
use crate::nodes::{NodeOptions, Nodes};
use crate::secrets::KeyFile;
use crate::txsvc::{TxOptions, TxService};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use bpu_ledger::client::Signer;
use bpu_ledger::format::{TxStatus, Wire};
use bpu_ledger::system;
use bpu_runtime::SigningKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the gateway is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP address.
    pub listen: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub db: String,
    /// Client addresses of the channel's nodes.
    pub nodes: Vec<String>,
    /// The 32-byte key that seals account keys (created when missing).
    pub key_file: PathBuf,
    /// The gateway's ledger identity (PEM): a member with the admin role, the token's owner.
    pub issuer_key: PathBuf,
    /// Deploy and initialize the token contract from this ELF when the channel lacks it.
    pub token_elf: Option<PathBuf>,
    /// The organization the accounts' members join.
    pub org: String,
    /// Bearer tokens and sessions live this long.
    pub session_ttl: Duration,
    /// Largest request body.
    pub max_body: usize,
    /// Accounts a user may own.
    pub accounts_per_user: i64,
    pub tx: TxOptions,
    pub node: NodeOptions,
}

impl Config {
    pub fn new(db: String, nodes: Vec<String>, key_file: PathBuf, issuer_key: PathBuf) -> Config {
        Config {
            listen: "127.0.0.1:8080".into(),
            db,
            nodes,
            key_file,
            issuer_key,
            token_elf: None,
            org: "gateway".into(),
            session_ttl: Duration::from_secs(12 * 3600),
            max_body: 64 * 1024,
            accounts_per_user: 10_000,
            tx: TxOptions::default(),
            node: NodeOptions::default(),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub nodes: Nodes,
    pub tx: TxService,
    pub keys: Arc<KeyFile>,
    pub creator: Creator,
    pub throttle: Arc<crate::auth::Throttle>,
    pub sessions: Arc<crate::auth::SessionCache>,
    pub cfg: Arc<Config>,
    pub channel: String,
    pub started: Instant,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: AppState,
    server: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Stops serving (background tasks end with the runtime).
    pub fn abort(&self) {
        self.server.abort();
    }

    /// Serves until the server task ends.
    pub async fn wait(self) {
        let _ = self.server.await;
    }
}

fn read_key(path: &std::path::Path) -> Result<SigningKey, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    SigningKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// Starts the gateway: the first node must answer within 30 s.
pub async fn start(cfg: Config) -> Result<Gateway, String> {
    if cfg.nodes.is_empty() {
        return Err("no node address given (--node ADDR, or --net DIR)".into());
    }
    let metrics = crate::metrics::handle()?;
    let db = db::open(&cfg.db)
        .await
        .map_err(|e| format!("opening the database {}: {e}", cfg.db))?;
    let keys = Arc::new(KeyFile::open_or_create(&cfg.key_file).map_err(|e| e.to_string())?);
    let issuer_key = read_key(&cfg.issuer_key)?;
    let nodes = Nodes::start(cfg.nodes.clone(), cfg.node.clone());
    let primary = nodes
        .wait_primary(Duration::from_secs(30))
        .await
        .ok_or_else(|| {
            format!(
                "no node answered at {} within 30 s; start the network first (`bpu up`)",
                cfg.nodes.join(", ")
            )
        })?;
    let info = nodes
        .info(primary)
        .ok_or("the primary node has no info yet")?;
    let mut conn = nodes.conn().await.map_err(|e| e.to_string())?;
    let member = conn
        .client()
        .member(&issuer_key.public_key().to_sec1())
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the issuer key {} is not a member of channel {}",
                cfg.issuer_key.display(),
                info.channel
            )
        })?;
    let issuer = Arc::new(Signer {
        key: issuer_key,
        channel: info.channel.clone(),
        member,
    });
    ensure_token(conn.client(), &issuer, &cfg).await?;
    drop(conn);
    let rows = db.all_accounts().await.map_err(|e| e.to_string())?;
    let mut accts = Vec::new();
    let mut creating = Vec::new();
    for r in &rows {
        match accounts::acct_of(r, &keys, &info.channel)? {
            Some(a) => accts.push(a),
            None => creating.push(r.clone()),
        }
    }
    let tx = TxService::start(
        db.clone(),
        nodes.clone(),
        cfg.tx.clone(),
        issuer.clone(),
        accts,
        info.height,
    )
    .await?;
    let creator = Creator::start(CreatorCtx {
        db: db.clone(),
        nodes: nodes.clone(),
        keys: keys.clone(),
        issuer,
        tx: tx.clone(),
        org: cfg.org.clone(),
    });
    accounts::resume(creator.clone(), creating);
    let state = AppState {
        db,
        nodes,
        tx,
        keys,
        creator,
        throttle: Default::default(),
        sessions: Default::default(),
        channel: info.channel,
        cfg: Arc::new(cfg.clone()),
        started: Instant::now(),
        metrics,
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = build_router(state.clone());
    let server = tokio::spawn(async move {
        let svc = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, svc).await {
            tracing::error!("gateway server: {e}");
        }
    });
    tracing::info!("gateway listening on http://{addr}");
    Ok(Gateway {
        addr,
        state,
        server,
    })
}

/// Makes sure the token contract exists and the issuer owns it (deploying and initializing
/// it from `token_elf` when the channel has none).
async fn ensure_token(
    c: &mut bpu_ledger::client::Client,
    issuer: &Signer,
    cfg: &Config,
) -> Result<(), String> {
    let token = &cfg.tx.token;
    let q = issuer
        .sign(token, None, "owner", Vec::new(), rand::random())
        .map_err(|e| e.to_string())?;
    let owner = c.query(&q).await;
    let me: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        issuer.key.public_key().to_sec1(),
    ))
    .into();
    let missing = match &owner {
        Ok(o) if o.as_slice() == me => return Ok(()),
        Ok(o) => {
            return Err(format!(
                "the token contract {token:?} is owned by {}, not by the gateway's issuer; \
                 give the owner's key with --issuer-key",
                hex::encode(o)
            ))
        }
        Err(bpu_ledger::client::ClientError::Rejected(
            bpu_ledger::api::Rejection::UnknownContract(_),
        )) => true,
        Err(bpu_ledger::client::ClientError::Rejected(bpu_ledger::api::Rejection::Reverted(_))) => {
            false
        }
        Err(e) => return Err(format!("asking the token contract for its owner: {e}")),
    };
    let run = |contract: &str, method: &str, args: Vec<u8>| {
        issuer
            .sign(contract, None, method, args, rand::random())
            .map_err(|e| e.to_string())
    };
    if missing {
        let elf = cfg.token_elf.as_ref().ok_or_else(|| {
            format!(
                "channel {} has no {token:?} contract; deploy it (`bpu contract deploy {token} \
                 contracts/build/token.elf`) or give --token-elf",
                issuer.channel
            )
        })?;
        let code = std::fs::read(elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
        let args = postcard::to_allocvec(&system::InstallArgs {
            name: token.clone(),
            code,
            activate: true,
        })
        .map_err(|e| e.to_string())?;
        let tx = run(system::LIFECYCLE, "install", args)?;
        commit(c, &tx).await?;
        tracing::info!("gateway: deployed the token contract {token:?}");
    }
    let tx = run(token, "init", Vec::new())?;
    commit(c, &tx).await?;
    tracing::info!("gateway: initialized the token contract {token:?}");
    Ok(())
}

/// Submits `tx` and waits (≤ 60 s) for its receipt, valid or not.
pub(crate) async fn submit_and_wait(
    c: &mut bpu_ledger::client::Client,
    tx: &bpu_ledger::Transaction,
) -> Result<bpu_ledger::Receipt, String> {
    let id = c
        .submit_bytes(&tx.encode())
        .await
        .map_err(|e| e.to_string())?;
    c.wait(&id, Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())
}

/// Submits `tx` and waits for it to commit valid.
async fn commit(
    c: &mut bpu_ledger::client::Client,
    tx: &bpu_ledger::Transaction,
) -> Result<(), String> {
    let r = submit_and_wait(c, tx).await?;
    if r.status != TxStatus::Valid {
        return Err(format!(
            "{}.{} failed on the ledger: {:?} {}",
            tx.body.contract,
            tx.body.method,
            r.status,
            String::from_utf8_lossy(&r.response)
        ));
    }
    Ok(())
}

/// The whole HTTP surface on `state`.
pub fn build_router(state: AppState) -> Router {
    let (api, doc) = crate::handlers::api_router().split_for_parts();
    let doc = Arc::new(doc);
    let max_body = state.cfg.max_body;
    Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(crate::handlers::ops_router())
        .merge(crate::dashboard::router())
        .fallback(|| async {
            AppError::NotFound(
                "no such route; the API is under /api/v1 (see /api/v1/openapi.json)".into(),
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(typed_errors))
        .layer(middleware::from_fn(record))
        .with_state(state)
}

/// Every 4xx/5xx answer that is not already typed JSON (a layer's 404/405/413/415) becomes one.
async fn typed_errors(req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    let s = r.status();
    if !(s.is_client_error() || s.is_server_error()) {
        return r;
    }
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return r;
    }
    let allow = r.headers().get(header::ALLOW).cloned();
    let body = axum::body::to_bytes(r.into_body(), 4096)
        .await
        .unwrap_or_default();
    let mut msg = String::from_utf8_lossy(&body).trim().to_string();
    if msg.is_empty() {
        msg = match s {
            StatusCode::METHOD_NOT_ALLOWED => {
                "method not allowed here (users, accounts and transactions are never deleted)"
                    .into()
            }
            _ => s.canonical_reason().unwrap_or("error").to_string(),
        };
    }
    let mut out = error_response(s, code_for_status(s), msg);
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// Request counts and latencies by route.
async fn record(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let t0 = Instant::now();
    let mut r = next.run(req).await;
    let status = r.status().as_u16().to_string();
    metrics::counter!("gateway_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("gateway_http_request_seconds", "route" => route).record(t0.elapsed());
    r.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}
