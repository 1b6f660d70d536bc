//! `bpu bench gateway`: token transfers through the gateway's REST API in front of four BFT
//! validators in this process, side by side with the same load sent straight to a node with
//! the Rust client, and what the gateway costs per transaction.
//!
//! One network (as `bpu bench consensus` builds it: every validator a full node on loopback
//! p2p, the token deployed) serves both paths. The gateway runs in this process on its own
//! tokio runtime (threads `bench-gw`) with an SQLite file in a tempdir and default settings;
//! its accounts are created and funded through the API. HTTP clients run on another runtime
//! (threads `bench-http`): C workers, each with one keep-alive connection and its own account
//! pairs, one transfer in flight per pair (`POST /transactions` → 202, then
//! `GET /transactions/{id}?wait=committed`), so the offered load adapts to what commits. Runs:
//! closed loop (peak), then paced at half of that peak. Every transfer's fate is checked (a
//! refusal, a rejection or a transfer that never commits is a failure of the run), and the
//! blocks of those runs are read back from node 0 with the Rust client: every committed
//! transfer must be valid there at the height the gateway reported, and nothing else.
//!
//! Then the gateway's runtime is shut down and the direct runs of [`crate::load`] send
//! pre-signed transfers between as many accounts (members from the genesis) straight to node
//! 0: peak, half of its peak, and the gateway's paced rate (the same offered load, for the
//! latency difference). CPU time is read per thread from `/proc/self/task`, so the gateway's
//! share (its runtime and SQLite's worker threads) is measured apart from the nodes and the
//! HTTP clients, and cross-checked by the difference of the process's CPU per committed
//! transfer between the gateway run and the direct run.

use crate::consensus::{check_agreement, cpu_seconds, machine_ticks, start_network, stat_times};
use crate::load::{self, err, percentile, LoadFigures, COMMIT_DEADLINE};
use bpu_gateway::accounts::AccountView;
use bpu_gateway::auth::Role;
use bpu_gateway::handlers::{LoginRequest, LoginResponse, NewAccount};
use bpu_gateway::txsvc::{Dest, NewMint, NewTx, TxView};
use bpu_ledger::client::Client;
use bpu_ledger::format::TxStatus;
use bpu_ledger::membership::ChannelParams;
use bpu_ledger::node::Node;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Validators of the network (the "four BFT nodes").
const VALIDATORS: usize = 4;
/// Goals: committed transfers/s at peak, pre-confirm p99, commit p99 at half of peak.
const GOAL_TPS: f64 = 2_000.0;
const GOAL_PRECONFIRM_P99_MS: f64 = 50.0;
const GOAL_COMMIT_P99_MS: f64 = 3_000.0;
/// Requests in flight while creating and funding accounts (the gateway batches up to 256
/// account creations into one membership transaction).
const SETUP_CONCURRENCY: usize = 512;
/// Tokens each gateway account receives (transfers move 1).
const FUNDS: u64 = 1 << 20;
/// Thread names of the gateway's runtime and of the HTTP clients' runtime.
const GATEWAY_THREADS: &str = "bench-gw";
const HTTP_THREADS: &str = "bench-http";
/// SQLite's worker threads (sqlx names them `sqlx-sqlite-worker-N`, truncated to 15 bytes).
const SQLITE_THREADS: &str = "sqlx-sqlite";

/// What to run.
pub struct Options<'a> {
    /// Gateway accounts (created through the API); the direct run has as many.
    pub accounts: usize,
    /// Length of each gateway run (peak, half of peak); the direct peak sends as many transfers
    /// as the gateway's peak committed (at least `accounts`), each direct paced run rate ×
    /// seconds.
    pub seconds: f64,
    /// HTTP connections to the gateway, and Rust client connections to node 0.
    pub connections: usize,
    /// The token contract's ELF.
    pub token_elf: PathBuf,
    /// Block cutter timeout (ms).
    pub block_timeout_ms: u32,
    pub progress: &'a dyn Fn(&str),
}

/// CPU time of one run, split by thread.
#[derive(Debug, Serialize, Clone, Default)]
pub struct CpuFigures {
    pub wall_seconds: f64,
    /// This process's CPU seconds per wall second.
    pub process_cores_busy: Option<f64>,
    /// The whole machine's busy cores (this process and any other).
    pub machine_cores_busy: Option<f64>,
    /// Process CPU time per committed transfer, µs.
    pub process_us_per_tx: Option<f64>,
    /// The gateway's threads (its tokio runtime, SQLite's workers), µs per committed transfer.
    pub gateway_us_per_tx: Option<f64>,
    /// Of those, SQLite's worker threads (queries and commits).
    pub sqlite_us_per_tx: Option<f64>,
    /// The HTTP clients' threads, µs per committed transfer.
    pub http_clients_us_per_tx: Option<f64>,
    /// Everything else: the nodes, the bench's own thread (and a direct run's Rust clients).
    pub nodes_us_per_tx: Option<f64>,
}

/// One run through the gateway.
#[derive(Debug, Serialize, Clone, Default)]
pub struct HttpFigures {
    /// Offered rate (transfers/s); `None`: closed loop.
    pub offered_tps: Option<f64>,
    /// First 202 to the last commit (the gateway's `final_ms`).
    pub seconds: f64,
    /// POST /transactions sent.
    pub requested: u64,
    /// Answered 202.
    pub preconfirmed: u64,
    /// Observed `committed`.
    pub committed: u64,
    /// Answered anything but 202 (409, 5xx, …), or failed on the wire.
    pub refused: u64,
    /// Observed `rejected`.
    pub rejected: u64,
    /// Pre-confirmed and not final within the commit deadline.
    pub unfinished: u64,
    /// Committed transfers per second.
    pub tps: f64,
    /// Blocks holding them, and transfers per block.
    pub blocks: u64,
    pub txs_per_block: f64,
    /// Request → 202.
    pub preconfirm_ms_p50: f64,
    pub preconfirm_ms_p99: f64,
    /// Request → `committed`, observed by waiting (`?wait=committed`).
    pub commit_ms_p50: f64,
    pub commit_ms_p99: f64,
    /// The gateway's own stamps: row created → follower saw the block (`final_ms`).
    pub gateway_commit_ms_p50: f64,
    pub gateway_commit_ms_p99: f64,
    /// Where the commit latency goes, each part p50 / p99 (ms): row created → a node took it
    /// (`submitted_ms`: the outbox, batching, the SubmitBatch round trip) …
    pub queue_ms: [f64; 2],
    /// … → its block committed on node 0 (the ledger: cutting, consensus, validation) …
    pub ledger_ms: [f64; 2],
    /// … → the gateway's follower processed that block (`final_ms`) …
    pub follower_ms: [f64; 2],
    /// … → the client's `?wait=committed` answered.
    pub observe_ms: [f64; 2],
    /// Per transfer, what is not the ledger's: request → seen committed, minus submitted →
    /// committed on node 0.
    pub outside_ledger_ms: [f64; 2],
    /// From the gateway's `/metrics`: database group commits per second, jobs (requests and
    /// follower blocks) per commit, mean commit time (ms) …
    pub db_commits_per_s: f64,
    pub db_jobs_per_commit: f64,
    pub db_commit_ms_mean: f64,
    /// … and `SubmitBatch` requests to the primary, committed transfers per batch.
    pub submit_batches: u64,
    pub txs_per_batch: f64,
    /// The first failures, described.
    pub failures: Vec<String>,
    pub cpu: CpuFigures,
}

/// A direct run (pre-signed transfers to node 0 over the Rust client).
#[derive(Debug, Serialize, Clone)]
pub struct DirectRun {
    pub load: LoadFigures,
    pub cpu: CpuFigures,
}

/// The gateway runs' blocks read back from node 0.
#[derive(Debug, Serialize, Clone, Default)]
pub struct LedgerCheck {
    pub from_height: u64,
    pub to_height: u64,
    pub valid_txs: u64,
    pub invalid_txs: u64,
    /// Transfers the gateway reported committed.
    pub gateway_committed: u64,
    /// Of those, not valid in node 0's block at the height the gateway reported.
    pub mismatched: u64,
    pub first_mismatch: Option<String>,
    /// Every committed transfer found valid where reported, and no other valid transaction.
    pub ok: bool,
}

/// What the gateway costs per transaction (peak runs unless said otherwise).
#[derive(Debug, Serialize, Clone, Default)]
pub struct Cost {
    /// Gateway peak ÷ direct peak, committed transfers/s.
    pub throughput_ratio: f64,
    /// Process CPU per committed transfer, gateway run − direct run, µs (includes the HTTP
    /// clients and any extra work of the nodes).
    pub process_us_per_tx_difference: Option<f64>,
    /// The gateway's own threads per committed transfer, µs.
    pub gateway_us_per_tx: Option<f64>,
    /// The HTTP clients' threads per committed transfer, µs.
    pub http_clients_us_per_tx: Option<f64>,
    /// The nodes' (and the rest's) CPU per committed transfer, gateway run − direct run, µs.
    pub nodes_us_per_tx_difference: Option<f64>,
    /// At half of peak, per transfer, the time the gateway adds: request → seen committed
    /// minus the ledger's part (submitted → committed on node 0), p50 and p99, ms.
    pub extra_ms_p50: f64,
    pub extra_ms_p99: f64,
    /// The gateway's half-of-peak rate, where the direct path was also measured …
    pub same_rate_tps: f64,
    /// … and commit latency p50 / p99 there: gateway (request → seen) − direct (submit →
    /// committed), ms. The direct path paces whole rounds of transfers, the gateway's clients
    /// one transfer at a time, so blocks fill differently.
    pub vs_direct_same_rate_ms_p50: f64,
    pub vs_direct_same_rate_ms_p99: f64,
}

/// A goal of the issue and what was measured.
#[derive(Debug, Serialize, Clone)]
pub struct Goal {
    pub what: String,
    pub goal: String,
    pub measured: f64,
    pub met: bool,
}

/// Everything `bpu bench gateway` reports.
#[derive(Debug, Serialize)]
pub struct GatewayReport {
    pub cpu_model: Option<String>,
    pub cores: usize,
    pub validators: usize,
    pub accounts: usize,
    pub connections: usize,
    pub seconds: f64,
    pub block_max_txs: u32,
    pub block_max_bytes: u32,
    pub block_timeout_ms: u32,
    /// Where the gateway's SQLite file was.
    pub db_dir: String,
    /// Network, token, funding of the direct accounts.
    pub network_setup_seconds: f64,
    /// Creating the gateway's accounts through the API.
    pub accounts_seconds: f64,
    /// Funding them (a mint, then doubling rounds of transfers).
    pub funding_seconds: f64,
    pub gateway_peak: HttpFigures,
    pub gateway_paced: HttpFigures,
    pub ledger_check: LedgerCheck,
    pub direct_peak: DirectRun,
    pub direct_paced: DirectRun,
    /// Direct, at the gateway's paced rate.
    pub direct_same_rate: DirectRun,
    pub cost: Cost,
    pub goals: Vec<Goal>,
    /// Why the run failed (empty: it did not).
    pub failures: Vec<String>,
}

impl GatewayReport {
    /// Whether every transfer committed and the ledger agrees.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

// ---- CPU time per thread ------------------------------------------------------------------

/// CPU seconds by thread (id → name, seconds), and the process's, at one moment.
struct CpuMark {
    at: Instant,
    process: Option<f64>,
    threads: HashMap<u64, (String, f64)>,
    machine: Option<(u64, u64)>,
}

impl CpuMark {
    fn now() -> CpuMark {
        let mut threads = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for e in dir.flatten() {
                let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                if let Some((name, secs)) = stat_times(&s) {
                    threads.insert(tid, (name.to_string(), secs));
                }
            }
        }
        CpuMark {
            at: Instant::now(),
            process: cpu_seconds(),
            threads,
            machine: machine_ticks(),
        }
    }

    /// CPU seconds since `before` of the threads whose names start with one of `prefixes`
    /// (threads started since count from zero); `None` when there are none.
    fn threads_since(&self, before: &CpuMark, prefixes: &[&str]) -> Option<f64> {
        let mut found = false;
        let mut secs = 0.0;
        for (tid, (name, s)) in &self.threads {
            if prefixes.iter().any(|p| name.starts_with(p)) {
                found = true;
                secs += s - before.threads.get(tid).map_or(0.0, |t| t.1);
            }
        }
        found.then_some(secs)
    }

    /// The figures from `before` to this mark, for `txs` committed transfers.
    fn since(&self, before: &CpuMark, txs: u64) -> CpuFigures {
        let wall = self.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let process = before.process.zip(self.process).map(|(a, b)| b - a);
        let gateway = self.threads_since(before, &[GATEWAY_THREADS, SQLITE_THREADS]);
        let sqlite = self.threads_since(before, &[SQLITE_THREADS]);
        let http = self.threads_since(before, &[HTTP_THREADS]);
        let per_tx = |secs: f64| (txs > 0).then(|| secs * 1e6 / txs as f64);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuFigures {
            wall_seconds: wall,
            process_cores_busy: process.map(|p| p / wall),
            machine_cores_busy: before.machine.zip(self.machine).and_then(|(a, b)| {
                let total = b.1.checked_sub(a.1)?;
                (total > 0).then(|| b.0.saturating_sub(a.0) as f64 / total as f64 * cores)
            }),
            process_us_per_tx: process.and_then(per_tx),
            gateway_us_per_tx: gateway.and_then(per_tx),
            sqlite_us_per_tx: sqlite.and_then(per_tx),
            http_clients_us_per_tx: http.and_then(per_tx),
            // Threads that ended during the run are in the process's figure only: the rest.
            nodes_us_per_tx: process
                .and_then(|p| per_tx(p - gateway.unwrap_or(0.0) - http.unwrap_or(0.0))),
        }
    }
}

/// Counters of the gateway's `/metrics` (Prometheus text) the report uses.
#[derive(Default, Clone, Copy)]
struct GatewayCounters {
    db_commits: f64,
    db_commit_seconds: f64,
    db_jobs: f64,
    batches: f64,
}

impl GatewayCounters {
    fn parse(text: &str) -> GatewayCounters {
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        GatewayCounters {
            db_commits: get("gateway_db_commit_seconds_count"),
            db_commit_seconds: get("gateway_db_commit_seconds_sum"),
            db_jobs: get("gateway_db_commit_jobs_sum"),
            batches: get("gateway_submit_batch_seconds_count"),
        }
    }

    /// Fills `f`'s database and batch figures from `before` to `self`.
    fn figures(&self, before: &GatewayCounters, f: &mut HttpFigures) {
        let commits = self.db_commits - before.db_commits;
        f.db_commits_per_s = commits / f.cpu.wall_seconds.max(1e-9);
        f.db_jobs_per_commit = (self.db_jobs - before.db_jobs) / commits.max(1.0);
        f.db_commit_ms_mean =
            (self.db_commit_seconds - before.db_commit_seconds) * 1e3 / commits.max(1.0);
        f.submit_batches = (self.batches - before.batches).max(0.0) as u64;
        f.txs_per_batch = f.committed as f64 / f.submit_batches.max(1) as f64;
    }
}

// ---- HTTP ---------------------------------------------------------------------------------

/// A client of the gateway's API with a bearer token.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base: String,
    token: String,
}

/// An answer: status and body.
type Answer = (u16, Vec<u8>);

impl Http {
    /// `connections`: idle keep-alive connections kept (a worker sends one request at a time,
    /// so it uses one).
    fn new(base: &str, token: &str, connections: usize) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(90))
            .build()
            .map_err(err)?;
        Ok(Http {
            client,
            base: base.to_string(),
            token: token.to_string(),
        })
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Result<Answer, String> {
        let r = if self.token.is_empty() {
            r
        } else {
            r.bearer_auth(&self.token)
        };
        let resp = r.send().await.map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| format!("HTTP body: {e}"))?;
        Ok((status, body.to_vec()))
    }

    async fn post<B: Serialize>(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        body: &B,
    ) -> Result<Answer, String> {
        let mut r = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(k) = idempotency_key {
            r = r.header("idempotency-key", k);
        }
        self.send(r).await
    }

    async fn get(&self, path: &str) -> Result<Answer, String> {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// Waits (long polls) for transaction `id` at most `timeout_ms`; its state then.
    async fn wait(&self, id: &str, timeout_ms: u64) -> Result<TxView, String> {
        let a = self
            .get(&format!(
                "/api/v1/transactions/{id}?wait=committed&timeout_ms={timeout_ms}"
            ))
            .await?;
        body_of("waiting for a transaction", 200, a)
    }
}

/// `{"error": {"code", "message"}}` as `code: message` (or the body as text).
fn error_text(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        _ => String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}

/// The body of an answer with status `want`, decoded; any other status is an error.
fn body_of<T: serde::de::DeserializeOwned>(what: &str, want: u16, a: Answer) -> Result<T, String> {
    if a.0 != want {
        return Err(format!("{what}: HTTP {} {}", a.0, error_text(&a.1)));
    }
    serde_json::from_slice(&a.1).map_err(|e| format!("{what}: decoding the answer: {e}"))
}

/// Waits until transaction `id` is committed (an error if rejected or not final in time).
async fn committed(http: &Http, id: &str) -> Result<TxView, String> {
    let end = Instant::now() + COMMIT_DEADLINE;
    loop {
        let t = http.wait(id, 10_000).await?;
        match t.state.as_str() {
            "committed" => return Ok(t),
            "rejected" => {
                return Err(format!(
                    "transaction {id} rejected: {}",
                    t.reason.unwrap_or_default()
                ))
            }
            _ if Instant::now() > end => {
                return Err(format!(
                    "transaction {id} not committed within {} s (state {})",
                    COMMIT_DEADLINE.as_secs(),
                    t.state
                ))
            }
            _ => {}
        }
    }
}

// ---- gateway setup ------------------------------------------------------------------------

/// Creates `n` accounts through the API, many at once; their ids in creation order.
async fn create_accounts(
    http: &Http,
    n: usize,
    progress: &dyn Fn(&str),
) -> Result<Vec<i64>, String> {
    let done = AtomicU64::new(0);
    let mut ids: Vec<(usize, i64)> = futures::stream::iter(0..n)
        .map(|i| {
            let done = &done;
            async move {
                let body = NewAccount {
                    name: format!("bench-{i}"),
                    owner: None,
                };
                let a = http.post("/api/v1/accounts", None, &body).await?;
                let v: AccountView = body_of("creating an account", 201, a)?;
                if v.state != "active" {
                    return Err(format!("account {} is {} after creation", v.id, v.state));
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % 2048 == 0 {
                    progress(&format!("gateway: {d}/{n} accounts created"));
                }
                Ok((i, v.id))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    ids.sort_unstable();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

/// Gives every account `FUNDS`: one mint to the first, then doubling rounds of transfers
/// (round k: accounts 0..2^k each send half of what they hold to the account 2^k further),
/// each round committed before the next.
async fn fund(http: &Http, ids: &[i64], progress: &dyn Fn(&str)) -> Result<(), String> {
    let n = ids.len();
    let levels = n.next_power_of_two().trailing_zeros();
    let first = *ids.first().ok_or("no accounts")?;
    let mint = NewMint {
        to: Dest::Account(first),
        amount: FUNDS << levels,
    };
    let a = http
        .post("/api/v1/mints", Some("bench-fund-mint"), &mint)
        .await?;
    let t: TxView = body_of("minting", 202, a)?;
    committed(http, &t.id).await?;
    let mut funded = 1usize;
    for k in 0..levels {
        let amount = FUNDS << (levels - k - 1);
        let pairs: Vec<(usize, usize)> = (0..funded)
            .filter(|i| i + funded < n)
            .map(|i| (i, i + funded))
            .collect();
        progress(&format!(
            "gateway: funding round {}/{levels}: {} transfers",
            k + 1,
            pairs.len()
        ));
        futures::stream::iter(pairs)
            .map(|(a, b)| async move {
                let body = NewTx {
                    from: ids[a],
                    to: Dest::Account(ids[b]),
                    amount,
                };
                let key = format!("bench-fund-{k}-{a}");
                let r = http.post("/api/v1/transactions", Some(&key), &body).await?;
                let t: TxView = body_of("a funding transfer", 202, r)?;
                committed(http, &t.id).await.map(|_| ())
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        funded *= 2;
    }
    Ok(())
}

// ---- the HTTP load ------------------------------------------------------------------------

/// What every worker of one run shares.
struct RunCtx {
    http_base: String,
    token: String,
    /// Idempotency keys of this run start with it.
    tag: String,
    start: Instant,
    stop_at: Instant,
    /// Paced: transfers/s over all workers.
    rate: Option<f64>,
    workers: usize,
    /// Committed so far (progress).
    committed: AtomicU64,
}

impl RunCtx {
    /// When worker `w`'s `seq`-th transfer is due (paced runs).
    fn due(&self, w: usize, seq: u64) -> Option<Instant> {
        let r = self.rate?;
        let slot = seq as f64 * self.workers as f64 + w as f64;
        Some(self.start + Duration::from_secs_f64(slot / r))
    }
}

/// One committed transfer.
struct Done {
    commit_ms: f64,
    /// Unix ms: the 202 and the commit as the client saw them, the gateway's stamps.
    answered_unix_ms: f64,
    observed_unix_ms: f64,
    created_ms: i64,
    submitted_ms: Option<i64>,
    final_ms: i64,
    height: u64,
    ledger_tx_id: [u8; 32],
}

#[derive(Default)]
struct WorkerOut {
    done: Vec<Done>,
    requested: u64,
    preconfirmed: u64,
    refused: u64,
    rejected: u64,
    unfinished: u64,
    /// Pre-confirm latencies of every 202 (also of transfers that failed later).
    preconfirm_ms: Vec<f64>,
    failures: Vec<String>,
}

impl WorkerOut {
    fn fail(&mut self, what: String) {
        if self.failures.len() < 10 {
            self.failures.push(what);
        }
    }
}

/// A transfer waiting for its commit.
struct InFlight {
    pair: usize,
    id: String,
    sent: Instant,
    answered_unix_ms: f64,
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Worker `w`: its pairs send 1 token back and forth, one transfer in flight per pair, over
/// one keep-alive connection (one request at a time).
async fn worker(ctx: Arc<RunCtx>, w: usize, pairs: Vec<(i64, i64)>) -> WorkerOut {
    let mut out = WorkerOut::default();
    let http = match Http::new(&ctx.http_base, &ctx.token, 1) {
        Ok(h) => h,
        Err(e) => {
            out.fail(e);
            return out;
        }
    };
    let mut flip = vec![false; pairs.len()];
    let mut free: VecDeque<usize> = (0..pairs.len()).collect();
    let mut waiting: VecDeque<InFlight> = VecDeque::new();
    let mut seq = 0u64;
    loop {
        // Send on every free pair whose turn has come.
        while let Some(&p) = free.front() {
            let now = Instant::now();
            if now >= ctx.stop_at || ctx.due(w, seq).is_some_and(|d| d > now) {
                break;
            }
            free.pop_front();
            let (from, to) = if flip[p] {
                (pairs[p].1, pairs[p].0)
            } else {
                pairs[p]
            };
            let key = format!("{}-{w}-{seq}", ctx.tag);
            seq += 1;
            out.requested += 1;
            let body = NewTx {
                from,
                to: Dest::Account(to),
                amount: 1,
            };
            let sent = Instant::now();
            let r = http.post("/api/v1/transactions", Some(&key), &body).await;
            let preconfirm_ms = sent.elapsed().as_secs_f64() * 1e3;
            match r.and_then(|a| body_of::<TxView>("a transfer", 202, a)) {
                Ok(t) => {
                    out.preconfirmed += 1;
                    out.preconfirm_ms.push(preconfirm_ms);
                    flip[p] = !flip[p];
                    waiting.push_back(InFlight {
                        pair: p,
                        id: t.id,
                        sent,
                        answered_unix_ms: unix_ms(),
                    });
                }
                // The pair leaves the rotation: its accounts' state is not known any more.
                Err(e) => {
                    out.refused += 1;
                    out.fail(format!("transfer {from} → {to}: {e}"));
                }
            }
        }
        let Some(oldest) = waiting.front() else {
            let now = Instant::now();
            if now >= ctx.stop_at || free.is_empty() {
                return out;
            }
            if let Some(d) = ctx.due(w, seq) {
                tokio::time::sleep_until(d.into()).await;
            }
            continue;
        };
        // Wait for the oldest transfer, but not past the next send that is due.
        let now = Instant::now();
        let timeout_ms = match ctx.due(w, seq) {
            Some(d) if !free.is_empty() && now < ctx.stop_at => {
                d.saturating_duration_since(now)
                    .as_millis()
                    .clamp(1, 10_000) as u64
            }
            _ => 10_000,
        };
        let r = http.wait(&oldest.id, timeout_ms).await;
        let commit_ms = oldest.sent.elapsed().as_secs_f64() * 1e3;
        let t = match r {
            Ok(t) => t,
            Err(e) => {
                out.unfinished += 1;
                out.fail(format!("transfer {}: {e}", oldest.id));
                waiting.pop_front();
                continue;
            }
        };
        match t.state.as_str() {
            "committed" => {
                let Some(f) = waiting.pop_front() else {
                    continue;
                };
                let lid = hex_id(&t.ledger_tx_id);
                let (Some(h), Some(fin), Some(lid)) = (t.height, t.final_ms, lid) else {
                    out.unfinished += 1;
                    out.fail(format!("transfer {} committed without height or id", t.id));
                    continue;
                };
                ctx.committed.fetch_add(1, Ordering::Relaxed);
                out.done.push(Done {
                    commit_ms,
                    answered_unix_ms: f.answered_unix_ms,
                    observed_unix_ms: unix_ms(),
                    created_ms: t.created_ms,
                    submitted_ms: t.submitted_ms,
                    final_ms: fin,
                    height: h.max(0) as u64,
                    ledger_tx_id: lid,
                });
                free.push_back(f.pair);
            }
            "rejected" => {
                out.rejected += 1;
                out.fail(format!(
                    "transfer {} rejected: {}",
                    t.id,
                    t.reason.unwrap_or_default()
                ));
                waiting.pop_front();
            }
            _ if oldest.sent.elapsed() > COMMIT_DEADLINE => {
                out.unfinished += 1;
                out.fail(format!(
                    "transfer {} still {} after {} s",
                    t.id,
                    t.state,
                    COMMIT_DEADLINE.as_secs()
                ));
                waiting.pop_front();
            }
            _ => {}
        }
    }
}

fn hex_id(h: &str) -> Option<[u8; 32]> {
    let mut id = [0u8; 32];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    (h.len() == 64).then_some(id)
}

/// The pairs of worker `w` of `workers`: pair p is accounts 2p and 2p + 1.
fn pairs_of(ids: &[i64], w: usize, workers: usize) -> Vec<(i64, i64)> {
    ids.chunks_exact(2)
        .enumerate()
        .filter(|(p, _)| p % workers == w)
        .map(|(_, c)| (c[0], c[1]))
        .collect()
}

/// One run through the gateway: `seconds` of sending (closed loop, or paced at `rate`), then
/// every transfer in flight followed to its end. Runs on `http_rt`; returns the figures
/// (without the latency breakdown) and the committed transfers.
#[allow(clippy::too_many_arguments)]
fn http_run(
    http_rt: &tokio::runtime::Runtime,
    base: &str,
    token: &str,
    tag: &str,
    ids: &[i64],
    connections: usize,
    seconds: f64,
    rate: Option<f64>,
    progress: &dyn Fn(&str),
) -> (HttpFigures, Vec<Done>) {
    let workers = connections.clamp(1, (ids.len() / 2).max(1));
    let start = Instant::now();
    let ctx = Arc::new(RunCtx {
        http_base: base.to_string(),
        token: token.to_string(),
        tag: tag.to_string(),
        start,
        stop_at: start + Duration::from_secs_f64(seconds),
        rate,
        workers,
        committed: AtomicU64::new(0),
    });
    let counters = |http_rt: &tokio::runtime::Runtime| {
        http_rt.block_on(async {
            let h = Http::new(base, "", 1).ok()?;
            let (status, body) = h.get("/metrics").await.ok()?;
            (status == 200).then(|| GatewayCounters::parse(&String::from_utf8_lossy(&body)))
        })
    };
    let m0 = counters(http_rt);
    let c0 = CpuMark::now();
    let outs: Vec<WorkerOut> = http_rt.block_on(async {
        let tasks: Vec<_> = (0..workers)
            .map(|w| tokio::spawn(worker(ctx.clone(), w, pairs_of(ids, w, workers))))
            .collect();
        let all = futures::future::join_all(tasks);
        tokio::pin!(all);
        let results = loop {
            tokio::select! {
                r = &mut all => break r,
                _ = tokio::time::sleep(Duration::from_secs(5)) => progress(&format!(
                    "gateway {tag}: {:.0} s, {} committed",
                    start.elapsed().as_secs_f64(),
                    ctx.committed.load(Ordering::Relaxed)
                )),
            }
        };
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|e| {
                    let mut o = WorkerOut::default();
                    o.fail(format!("a worker panicked: {e}"));
                    o
                })
            })
            .collect()
    });
    let c1 = CpuMark::now();
    let m1 = counters(http_rt);
    let mut f = HttpFigures {
        offered_tps: rate,
        ..HttpFigures::default()
    };
    let mut pre = Vec::new();
    let mut done = Vec::new();
    for o in outs {
        f.requested += o.requested;
        f.preconfirmed += o.preconfirmed;
        f.refused += o.refused;
        f.rejected += o.rejected;
        f.unfinished += o.unfinished;
        pre.extend(o.preconfirm_ms);
        for x in o.failures {
            if f.failures.len() < 10 {
                f.failures.push(x);
            }
        }
        done.extend(o.done);
    }
    f.committed = done.len() as u64;
    let first_202 = done
        .iter()
        .map(|d| d.answered_unix_ms)
        .fold(f64::INFINITY, f64::min);
    let last_commit = done.iter().map(|d| d.final_ms).max().unwrap_or(0) as f64;
    f.seconds = ((last_commit - first_202) / 1e3).max(0.0);
    f.tps = f.committed as f64 / f.seconds.max(1e-9);
    let heights: HashSet<u64> = done.iter().map(|d| d.height).collect();
    f.blocks = heights.len() as u64;
    f.txs_per_block = f.committed as f64 / f.blocks.max(1) as f64;
    [f.preconfirm_ms_p50, f.preconfirm_ms_p99] = p50_p99(pre);
    [f.commit_ms_p50, f.commit_ms_p99] = p50_p99(done.iter().map(|d| d.commit_ms).collect());
    [f.gateway_commit_ms_p50, f.gateway_commit_ms_p99] = p50_p99(
        done.iter()
            .map(|d| (d.final_ms - d.created_ms) as f64)
            .collect(),
    );
    f.cpu = c1.since(&c0, f.committed);
    if let (Some(a), Some(b)) = (m0, m1) {
        b.figures(&a, &mut f);
    }
    (f, done)
}

/// Sorts `v` and gives its p50 and p99.
fn p50_p99(mut v: Vec<f64>) -> [f64; 2] {
    v.sort_by(f64::total_cmp);
    [percentile(&v, 0.50), percentile(&v, 0.99)]
}

/// Splits the commit latency of `done` at the gateway's stamps and at node 0's commit times
/// (unix ms by height).
fn breakdown(f: &mut HttpFigures, done: &[Done], node_commit_ms: &HashMap<u64, f64>) {
    let part = |g: &dyn Fn(&Done) -> Option<f64>| p50_p99(done.iter().filter_map(g).collect());
    let node = |d: &Done| node_commit_ms.get(&d.height).copied();
    f.queue_ms = part(&|d| d.submitted_ms.map(|s| (s - d.created_ms) as f64));
    f.ledger_ms = part(&|d| Some(node(d)? - d.submitted_ms? as f64));
    f.follower_ms = part(&|d| Some(d.final_ms as f64 - node(d)?));
    f.observe_ms = part(&|d| Some(d.observed_unix_ms - d.final_ms as f64));
    f.outside_ledger_ms = part(&|d| Some(d.commit_ms - (node(d)? - d.submitted_ms? as f64)));
}

/// Reads node `addr`'s blocks `from..=to` with the Rust client: each of `committed` must be
/// valid at its height, and no other transaction valid there.
async fn ledger_check(
    addr: &str,
    from: u64,
    to: u64,
    committed: &[([u8; 32], u64)],
) -> Result<LedgerCheck, String> {
    let mut c = Client::connect(addr).await.map_err(err)?;
    c.set_timeout(Duration::from_secs(60));
    let mut seen: HashMap<[u8; 32], (u64, TxStatus)> = HashMap::new();
    let mut check = LedgerCheck {
        from_height: from,
        to_height: to,
        gateway_committed: committed.len() as u64,
        ..LedgerCheck::default()
    };
    for h in from..=to {
        let b = c
            .block(h)
            .await
            .map_err(err)?
            .ok_or_else(|| format!("node 0 has no block {h}"))?;
        for (i, etx) in b.txs.iter().enumerate() {
            let s = b.status.get(i).copied().unwrap_or(TxStatus::Pending);
            if s == TxStatus::Valid {
                check.valid_txs += 1;
            } else {
                check.invalid_txs += 1;
            }
            // The first occurrence decides (a later copy of the same id is a `Replay`).
            seen.entry(etx.tx.id().0).or_insert((h, s));
        }
    }
    for (id, h) in committed {
        match seen.get(id) {
            Some((bh, TxStatus::Valid)) if bh == h => {}
            other => {
                check.mismatched += 1;
                check.first_mismatch.get_or_insert_with(|| {
                    format!(
                        "ledger transaction {} reported committed at {h}, on node 0: {other:?}",
                        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    )
                });
            }
        }
    }
    check.ok = check.mismatched == 0 && check.valid_txs == check.gateway_committed;
    Ok(check)
}

/// Waits until `node` has committed `height`.
async fn reach(node: &Node, height: u64) -> Result<(), String> {
    let end = Instant::now() + COMMIT_DEADLINE;
    while node.tip().height < height {
        if Instant::now() > end {
            return Err(format!("node 0 did not reach height {height}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A tokio runtime whose threads are named `name` and never retire during a run (so their CPU
/// time stays readable).
fn runtime(name: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .map_err(err)
}

/// What the gateway part measured.
struct GatewayPart {
    accounts_seconds: f64,
    funding_seconds: f64,
    peak: HttpFigures,
    paced: HttpFigures,
    check: LedgerCheck,
}

/// Starts the gateway on its own runtime in front of `api`, creates and funds its accounts
/// over HTTP, runs peak and paced load, reads the blocks back; stops the gateway.
fn gateway_part(
    opts: &Options<'_>,
    nodes_rt: &tokio::runtime::Runtime,
    node0: &Node,
    api: &[String],
    net: &load::Net,
) -> Result<GatewayPart, String> {
    let progress = opts.progress;
    let dir = tempfile::tempdir().map_err(err)?;
    let issuer = dir.path().join("issuer.pem");
    std::fs::write(&issuer, net.admin.key.to_pem().map_err(err)?).map_err(err)?;
    let mut cfg = bpu_gateway::Config::new(
        format!("sqlite://{}", dir.path().join("gateway.db").display()),
        api.to_vec(),
        dir.path().join("gateway.key"),
        issuer,
    );
    cfg.listen = "127.0.0.1:0".into();
    cfg.token_elf = Some(opts.token_elf.clone());
    cfg.accounts_per_user = cfg.accounts_per_user.max(opts.accounts as i64);
    let password = format!("bench-{:032x}", rand::random::<u128>());
    let gw_rt = runtime(GATEWAY_THREADS)?;
    let http_rt = runtime(HTTP_THREADS)?;
    progress(&format!(
        "gateway: starting on SQLite in {}",
        dir.path().display()
    ));
    let g = gw_rt.block_on(async {
        let g = bpu_gateway::start(cfg).await?;
        bpu_gateway::handlers::add_user(&g.state.db, "bench", Role::Admin, &password)
            .await
            .map_err(|e| format!("adding the gateway user: {e}"))?;
        Ok::<_, String>(g)
    })?;
    let base = format!("http://{}", g.addr);
    let part = http_rt.block_on(async {
        let anon = Http::new(&base, "", 1)?;
        let login = LoginRequest {
            name: "bench".into(),
            password: password.clone(),
            session: false,
        };
        let a = anon.post("/api/v1/auth/login", None, &login).await?;
        let l: LoginResponse = body_of("logging in", 200, a)?;
        let token = l.token.ok_or("the login answered no token")?;
        let http = Http::new(&base, &token, SETUP_CONCURRENCY)?;
        progress(&format!(
            "gateway: creating {} accounts through the API",
            opts.accounts
        ));
        let t = Instant::now();
        let ids = create_accounts(&http, opts.accounts, progress).await?;
        let accounts_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        fund(&http, &ids, progress).await?;
        Ok::<_, String>((token, ids, accounts_seconds, t.elapsed().as_secs_f64()))
    });
    let result = part.and_then(|(token, ids, accounts_seconds, funding_seconds)| {
        // Node 0's commit time of every height from here on (unix ms).
        let commit_times = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let mut commits = node0.subscribe_commits();
        let recorder = nodes_rt.spawn({
            let times = commit_times.clone();
            async move {
                loop {
                    match commits.recv().await {
                        Ok(c) => {
                            if let Ok(mut t) = times.lock() {
                                t.insert(c.height, unix_ms());
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            }
        });
        let h0 = node0.tip().height;
        progress(&format!(
            "gateway peak: {} s over {} connections, {} account pairs, one transfer in flight each",
            opts.seconds,
            opts.connections,
            ids.len() / 2
        ));
        let (mut peak, peak_done) = http_run(
            &http_rt,
            &base,
            &token,
            "peak",
            &ids,
            opts.connections,
            opts.seconds,
            None,
            progress,
        );
        let rate = (peak.tps / 2.0).max(1.0);
        progress(&format!(
            "gateway peak: {:.0} tx/s, pre-confirm p99 {:.1} ms; paced at {rate:.0}/s for {} s",
            peak.tps, peak.preconfirm_ms_p99, opts.seconds
        ));
        let (mut paced, paced_done) = http_run(
            &http_rt,
            &base,
            &token,
            "paced",
            &ids,
            opts.connections,
            opts.seconds,
            Some(rate),
            progress,
        );
        progress(&format!(
            "gateway paced: commit p50 {:.0} ms, p99 {:.0} ms; reading blocks {}.. back from node 0",
            paced.commit_ms_p50,
            paced.commit_ms_p99,
            h0 + 1
        ));
        let committed: Vec<([u8; 32], u64)> = peak_done
            .iter()
            .chain(&paced_done)
            .map(|d| (d.ledger_tx_id, d.height))
            .collect();
        let top = committed.iter().map(|c| c.1).max().unwrap_or(h0);
        let check = nodes_rt.block_on(async {
            reach(node0, top).await?;
            ledger_check(&api[0], h0 + 1, node0.tip().height, &committed).await
        })?;
        recorder.abort();
        let times = commit_times.lock().map(|t| t.clone()).unwrap_or_default();
        breakdown(&mut peak, &peak_done, &times);
        breakdown(&mut paced, &paced_done, &times);
        Ok(GatewayPart {
            accounts_seconds,
            funding_seconds,
            peak,
            paced,
            check,
        })
    });
    // Stop the gateway (its tasks end with its runtime) before the direct runs.
    {
        let _in_rt = gw_rt.enter();
        g.abort();
        drop(g);
    }
    http_rt.shutdown_timeout(Duration::from_secs(5));
    gw_rt.shutdown_timeout(Duration::from_secs(10));
    drop(dir);
    result
}

/// A direct run: `plan` to node 0 over `connections` Rust clients.
fn direct_run(
    rt: &tokio::runtime::Runtime,
    nodes: &[Node],
    api: &[String],
    connections: usize,
    plan: &load::Plan,
    rate: Option<f64>,
) -> Result<DirectRun, String> {
    let c0 = CpuMark::now();
    let load = rt.block_on(load::run_load(
        &nodes[..1],
        &api[..1],
        connections,
        plan,
        rate,
    ))?;
    let cpu = CpuMark::now().since(&c0, load.valid);
    Ok(DirectRun { load, cpu })
}

/// Runs the gateway benchmark.
pub fn run(opts: &Options<'_>) -> Result<GatewayReport, String> {
    let progress = opts.progress;
    let elf = std::fs::read(&opts.token_elf).map_err(|e| {
        format!(
            "reading {}: {e}; build the contracts with `contracts/build.sh` or pass --token",
            opts.token_elf.display()
        )
    })?;
    if opts.accounts < 2 {
        return Err("at least 2 accounts are needed".into());
    }
    // The genesis holds the direct run's accounts, the gateway adds as many members.
    if 2 * opts.accounts + VALIDATORS + 1 > bpu_ledger::membership::MAX_MEMBERS {
        return Err(format!(
            "--accounts {}: the channel holds at most {} members, twice the accounts plus \
             the admin and the validators",
            opts.accounts,
            bpu_ledger::membership::MAX_MEMBERS
        ));
    }
    let params = ChannelParams {
        block_timeout_ms: opts.block_timeout_ms,
        ..ChannelParams::default()
    };
    let t_setup = Instant::now();
    progress(&format!(
        "{VALIDATORS} validators, {} direct accounts: keys and genesis",
        opts.accounts
    ));
    let net = load::make_net(opts.accounts, VALIDATORS, params.clone())?;
    let dirs: Vec<tempfile::TempDir> = (0..VALIDATORS)
        .map(|_| tempfile::tempdir().map_err(err))
        .collect::<Result<_, _>>()?;
    let rt = runtime("bench-nodes")?;
    let result = (|| {
        progress("starting nodes on loopback");
        let (nodes, nets, api) = rt.block_on(start_network(&net, &dirs, &params))?;
        let node0 = &nodes[0];
        progress("deploying the token and funding the direct accounts");
        rt.block_on(load::setup(node0, &api[0], &net, &elf, opts.connections))?;
        let network_setup_seconds = t_setup.elapsed().as_secs_f64();

        let gw = gateway_part(opts, &rt, node0, &api, &net)?;

        let groups = load::groups_for(opts.accounts);
        let n = (gw.peak.committed as usize).max(opts.accounts);
        progress(&format!(
            "direct peak: {n} pre-signed transfers to node 0 over {} connections, closed loop",
            opts.connections
        ));
        let plan = load::plan(&net, groups, n, 1_000_000)?;
        let direct_peak = direct_run(&rt, &nodes, &api, opts.connections, &plan, None)?;
        let mut paced = Vec::new();
        for (i, rate) in [direct_peak.load.tps / 2.0, gw.peak.tps / 2.0]
            .into_iter()
            .enumerate()
        {
            let rate = rate.max(1.0);
            let n = ((rate * opts.seconds) as usize).max(1000);
            progress(&format!("direct: {n} transfers paced at {rate:.0}/s"));
            let plan = load::plan(&net, groups, n, 2_000_000 + i as u64 * 1_000_000)?;
            paced.push(direct_run(
                &rt,
                &nodes,
                &api,
                opts.connections,
                &plan,
                Some(rate),
            )?);
        }
        let direct_same_rate = paced.pop().ok_or("no paced run")?;
        let direct_paced = paced.pop().ok_or("no paced run")?;
        progress("checking that every node holds the same certified chain");
        rt.block_on(check_agreement(&net, &nodes))?;
        for nw in &nets {
            nw.shutdown();
        }
        Ok::<_, String>(report(
            opts,
            &params,
            network_setup_seconds,
            gw,
            direct_peak,
            direct_paced,
            direct_same_rate,
        ))
    })();
    // Stop every node's tasks before their data directories go.
    rt.shutdown_timeout(Duration::from_secs(10));
    drop(dirs);
    result
}

fn report(
    opts: &Options<'_>,
    params: &ChannelParams,
    network_setup_seconds: f64,
    gw: GatewayPart,
    direct_peak: DirectRun,
    direct_paced: DirectRun,
    direct_same_rate: DirectRun,
) -> GatewayReport {
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    let cost = Cost {
        throughput_ratio: gw.peak.tps / direct_peak.load.tps.max(1e-9),
        process_us_per_tx_difference: diff(
            gw.peak.cpu.process_us_per_tx,
            direct_peak.cpu.process_us_per_tx,
        ),
        gateway_us_per_tx: gw.peak.cpu.gateway_us_per_tx,
        http_clients_us_per_tx: gw.peak.cpu.http_clients_us_per_tx,
        nodes_us_per_tx_difference: diff(
            gw.peak.cpu.nodes_us_per_tx,
            direct_peak.cpu.nodes_us_per_tx,
        ),
        extra_ms_p50: gw.paced.outside_ledger_ms[0],
        extra_ms_p99: gw.paced.outside_ledger_ms[1],
        same_rate_tps: direct_same_rate.load.offered_tps.unwrap_or(0.0),
        vs_direct_same_rate_ms_p50: gw.paced.commit_ms_p50 - direct_same_rate.load.latency_ms_p50,
        vs_direct_same_rate_ms_p99: gw.paced.commit_ms_p99 - direct_same_rate.load.latency_ms_p99,
    };
    let goal = |what: &str, goal: String, measured: f64, met: bool| Goal {
        what: what.into(),
        goal,
        measured,
        met,
    };
    let goals = vec![
        goal(
            "committed transfers/s through the gateway (peak)",
            format!("≥ {GOAL_TPS:.0}"),
            gw.peak.tps,
            gw.peak.tps >= GOAL_TPS,
        ),
        goal(
            "pre-confirm p99 at half of peak (ms)",
            format!("< {GOAL_PRECONFIRM_P99_MS:.0}"),
            gw.paced.preconfirm_ms_p99,
            gw.paced.preconfirm_ms_p99 < GOAL_PRECONFIRM_P99_MS,
        ),
        goal(
            "pre-confirm p99 at peak (ms)",
            format!("< {GOAL_PRECONFIRM_P99_MS:.0}"),
            gw.peak.preconfirm_ms_p99,
            gw.peak.preconfirm_ms_p99 < GOAL_PRECONFIRM_P99_MS,
        ),
        goal(
            "commit p99 at half of peak (ms)",
            format!("< {GOAL_COMMIT_P99_MS:.0}"),
            gw.paced.commit_ms_p99,
            gw.paced.commit_ms_p99 < GOAL_COMMIT_P99_MS,
        ),
    ];
    let mut failures = Vec::new();
    for (name, f) in [("peak", &gw.peak), ("half of peak", &gw.paced)] {
        let bad = f.refused + f.rejected + f.unfinished;
        if bad > 0 || f.committed != f.preconfirmed {
            failures.push(format!(
                "gateway {name}: {} refused, {} rejected, {} not committed of {} sent; first: {}",
                f.refused,
                f.rejected,
                f.unfinished,
                f.requested,
                f.failures.join("; ")
            ));
        }
    }
    if !gw.check.ok {
        failures.push(format!(
            "ledger check: {} of {} committed transfers not found valid where reported, {} \
             valid transactions in blocks {}..={}{}",
            gw.check.mismatched,
            gw.check.gateway_committed,
            gw.check.valid_txs,
            gw.check.from_height,
            gw.check.to_height,
            gw.check
                .first_mismatch
                .as_ref()
                .map_or(String::new(), |m| format!(" ({m})"))
        ));
    }
    for (name, d) in [
        ("peak", &direct_peak),
        ("half of peak", &direct_paced),
        ("same rate", &direct_same_rate),
    ] {
        let l = &d.load;
        if l.invalid + l.rejected > 0 || l.valid != l.submitted {
            failures.push(format!(
                "direct {name}: {} invalid, {} rejected of {} submitted",
                l.invalid, l.rejected, l.submitted
            ));
        }
    }
    GatewayReport {
        cpu_model: crate::verify::cpu_model(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        validators: VALIDATORS,
        accounts: opts.accounts,
        connections: opts.connections,
        seconds: opts.seconds,
        block_max_txs: params.block_max_txs,
        block_max_bytes: params.block_max_bytes,
        block_timeout_ms: params.block_timeout_ms,
        db_dir: std::env::temp_dir().display().to_string(),
        network_setup_seconds,
        accounts_seconds: gw.accounts_seconds,
        funding_seconds: gw.funding_seconds,
        gateway_peak: gw.peak,
        gateway_paced: gw.paced,
        ledger_check: gw.check,
        direct_peak,
        direct_paced,
        direct_same_rate,
        cost,
        goals,
        failures,
    }
}

/// `x` with `digits` decimals, `—` when not measured.
fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("—".into(), |v| format!("{v:.digits$}"))
}

impl GatewayReport {
    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::from("## Gateway: the REST API in front of 4 BFT validators\n\n");
        o.push_str(&format!(
            "CPU: {} ({} cores). {} validators in this process (as `bpu bench consensus`; \
             blocks of at most {} transactions / {} bytes / {} ms) and the gateway beside them \
             on its own runtime (SQLite with WAL and synchronous=FULL under {}, default \
             settings). {} gateway accounts created through the API ({:.1} s) and funded by a \
             fan-out of transfers ({:.1} s); {} HTTP/1.1 keep-alive connections, each worker \
             owning disjoint account pairs with one transfer in flight per pair (POST \
             /transactions → 202, then GET ?wait=committed), {} s per run. Direct: as many \
             accounts (from the genesis), pre-signed transfers of `bench consensus` straight to \
             node 0 over {} Rust client connections.\n\n",
            self.cpu_model.as_deref().unwrap_or("unknown"),
            self.cores,
            self.validators,
            self.block_max_txs,
            self.block_max_bytes,
            self.block_timeout_ms,
            self.db_dir,
            self.accounts,
            self.accounts_seconds,
            self.funding_seconds,
            self.connections,
            self.seconds,
            self.connections,
        ));
        o.push_str("| path | run | offered tx/s | committed tx/s | committed / refused / rejected / unfinished | blocks | tx per block | pre-confirm p50 / p99 | commit p50 / p99 | CPU µs per tx: process (gateway [of it SQLite] / HTTP clients / nodes) | cores busy |\n");
        o.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        let cpu = |c: &CpuFigures| {
            format!(
                "{} ({} [{}] / {} / {})",
                opt(c.process_us_per_tx, 0),
                opt(c.gateway_us_per_tx, 0),
                opt(c.sqlite_us_per_tx, 0),
                opt(c.http_clients_us_per_tx, 0),
                opt(c.nodes_us_per_tx, 0)
            )
        };
        for (name, f) in [
            ("peak", &self.gateway_peak),
            ("half of peak", &self.gateway_paced),
        ] {
            o.push_str(&format!(
                "| gateway | {name} | {} | **{:.0}** | {} / {} / {} / {} | {} | {:.0} | {:.1} / {:.1} ms | {:.0} / {:.0} ms | {} | {} |\n",
                f.offered_tps.map_or("max".to_string(), |x| format!("{x:.0}")),
                f.tps,
                f.committed,
                f.refused,
                f.rejected,
                f.unfinished,
                f.blocks,
                f.txs_per_block,
                f.preconfirm_ms_p50,
                f.preconfirm_ms_p99,
                f.commit_ms_p50,
                f.commit_ms_p99,
                cpu(&f.cpu),
                opt(f.cpu.process_cores_busy, 2),
            ));
        }
        for (name, d) in [
            ("peak", &self.direct_peak),
            ("half of peak", &self.direct_paced),
            ("the gateway's paced rate", &self.direct_same_rate),
        ] {
            let l = &d.load;
            o.push_str(&format!(
                "| direct | {name} | {} | **{:.0}** | {} / {} / {} / 0 | {} | {:.0} | — | {:.0} / {:.0} ms | {} | {} |\n",
                l.offered_tps.map_or("max".to_string(), |x| format!("{x:.0}")),
                l.tps,
                l.valid,
                l.rejected,
                l.invalid,
                l.blocks,
                l.txs_per_block,
                l.latency_ms_p50,
                l.latency_ms_p99,
                cpu(&d.cpu),
                opt(d.cpu.process_cores_busy, 2),
            ));
        }
        o.push_str(
            "\nGateway commit latency is request → `committed` seen by the client's \
             `?wait=committed`; direct latency is submit → committed on node 0. Where a \
             gateway transfer's time goes, p50 / p99 ms (each part on its own):\n\n\
             | run | request → 202 | row → a node took it (outbox, batch) | → block committed \
             on node 0 | → gateway's follower processed it | → client's wait answered | row → \
             processed (gateway's stamps) | request → seen, minus the ledger's part |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for (name, f) in [
            ("peak", &self.gateway_peak),
            ("half of peak", &self.gateway_paced),
        ] {
            let pp = |x: [f64; 2]| format!("{:.0} / {:.0}", x[0], x[1]);
            o.push_str(&format!(
                "| {name} | {:.1} / {:.1} | {} | {} | {} | {} | {:.0} / {:.0} | {} |\n",
                f.preconfirm_ms_p50,
                f.preconfirm_ms_p99,
                pp(f.queue_ms),
                pp(f.ledger_ms),
                pp(f.follower_ms),
                pp(f.observe_ms),
                f.gateway_commit_ms_p50,
                f.gateway_commit_ms_p99,
                pp(f.outside_ledger_ms),
            ));
        }
        o.push_str("\nThe gateway's own figures (`/metrics`): ");
        let parts: Vec<String> = [
            ("peak", &self.gateway_peak),
            ("half of peak", &self.gateway_paced),
        ]
        .iter()
        .map(|(name, f)| {
            format!(
                "{name}: {:.0} database group commits/s of {:.1} jobs each, {:.1} ms each \
                 (the single writer busy {:.0} % of the time), {} submission batches of {:.0} \
                 transfers",
                f.db_commits_per_s,
                f.db_jobs_per_commit,
                f.db_commit_ms_mean,
                f.db_commits_per_s * f.db_commit_ms_mean / 10.0,
                f.submit_batches,
                f.txs_per_batch
            )
        })
        .collect();
        o.push_str(&parts.join("; "));
        o.push_str(".\n");
        let c = &self.ledger_check;
        o.push_str(&format!(
            "\nLedger check (blocks {}..={} read from node 0 with the Rust client): {} valid \
             and {} invalid transactions; {} of {} committed transfers valid at the height the \
             gateway reported: **{}**.\n",
            c.from_height,
            c.to_height,
            c.valid_txs,
            c.invalid_txs,
            c.gateway_committed - c.mismatched,
            c.gateway_committed,
            if c.ok { "agrees" } else { "DISAGREES" }
        ));
        o.push_str("\n| goal | target | measured | met |\n| --- | --- | --- | --- |\n");
        for g in &self.goals {
            o.push_str(&format!(
                "| {} | {} | {:.1} | {} |\n",
                g.what,
                g.goal,
                g.measured,
                if g.met { "yes" } else { "**no**" }
            ));
        }
        let k = &self.cost;
        o.push_str(&format!(
            "\nWhat the gateway costs per transaction (peak runs): throughput ×{:.2} of the \
             direct path; process CPU per committed transfer {} µs more than direct (gateway \
             run {} µs, direct {} µs), of which the gateway's own threads {} µs (SQLite's \
             workers {} µs), the HTTP clients {} µs and the nodes {} µs more. Latency at half \
             of peak: the gateway adds {:.0} ms at p50 and {:.0} ms at p99 to the ledger's part \
             of each transfer; against the direct path paced at the same rate ({:.0} tx/s, \
             whole rounds at a time) its commit latency differs by {:+.0} ms at p50 and {:+.0} \
             ms at p99.\n",
            k.throughput_ratio,
            opt(k.process_us_per_tx_difference, 0),
            opt(self.gateway_peak.cpu.process_us_per_tx, 0),
            opt(self.direct_peak.cpu.process_us_per_tx, 0),
            opt(k.gateway_us_per_tx, 0),
            opt(self.gateway_peak.cpu.sqlite_us_per_tx, 0),
            opt(k.http_clients_us_per_tx, 0),
            k.nodes_us_per_tx_difference
                .map_or("?".into(), |x| format!("{x:+.0}")),
            k.extra_ms_p50,
            k.extra_ms_p99,
            k.same_rate_tps,
            k.vs_direct_same_rate_ms_p50,
            k.vs_direct_same_rate_ms_p99,
        ));
        if self.failures.is_empty() {
            o.push_str("\nEvery transfer committed exactly once; none refused or rejected.\n");
        } else {
            o.push_str("\n**The run failed:**\n\n");
            for f in &self.failures {
                o.push_str(&format!("- {f}\n"));
            }
        }
        o
    }
}
