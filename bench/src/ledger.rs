//! `bpu bench ledger`: token transfers validated and committed per second by one node, the
//! verification efficiency against `openssl speed`, contract executions per second, and
//! submit-to-commit latency at half of the peak rate.
//!
//! The node runs in this process on the chosen crypto backend with its TCP server; clients
//! submit pre-signed transactions over TCP (signing is not measured). The workload is built so
//! that no two transfers in flight touch the same account: accounts are split into groups, each
//! round of transfers pairs up the accounts of one group, and a group is used again only after
//! its previous round has committed. Every transaction's fate is checked: the figures count
//! valid commits only, and any invalid or rejected transfer is reported.

use crate::verify::{openssl_figures, OpensslFigures};
use bpu_ledger::client::{Client, Signer};
use bpu_ledger::format::{TxStatus, Wire};
use bpu_ledger::membership::{ChannelParams, Genesis, Member, Membership, Org, Role, ValidatorKey};
use bpu_ledger::node::{Node, NodeConfig};
use bpu_ledger::order::CutterConfig;
use bpu_ledger::system;
use bpu_runtime::contract::{CallContext, ContractConfig, ContractService};
use bpu_runtime::{CryptoService, SigningKey, StateVersion};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
pub struct Options<'a> {
    /// Crypto backend of the node.
    pub device: String,
    /// Smaller network and shorter runs.
    pub quick: bool,
    /// Token accounts (each a member with its own key).
    pub accounts: usize,
    /// Transfers submitted in the peak run.
    pub transfers: usize,
    /// The token contract's ELF.
    pub token_elf: PathBuf,
    /// Block cutter timeout (ms); the channel default is 2,000.
    pub block_timeout_ms: u32,
    /// Concurrent client connections.
    pub connections: usize,
    pub progress: &'a dyn Fn(&str),
}

/// One load run.
#[derive(Debug, Serialize, Clone, Default)]
pub struct LoadFigures {
    /// Offered rate (transactions/s); `None`: as fast as the node takes them.
    pub offered_tps: Option<f64>,
    pub seconds: f64,
    pub submitted: u64,
    pub valid: u64,
    pub invalid: u64,
    pub rejected: u64,
    /// Valid transfers committed per second (first submission to last commit).
    pub tps: f64,
    pub blocks: u64,
    pub txs_per_block: f64,
    pub bytes_per_block: f64,
    /// Mean time between commits.
    pub block_interval_ms: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    /// ECDSA verifications the node did per committed transaction (submission + validation).
    pub verifications_per_tx: f64,
    /// Per block, mean: validation (signatures, policy, MVCC), block store append, state commit.
    pub validate_ms_per_block: f64,
    pub store_ms_per_block: f64,
    pub state_ms_per_block: f64,
}

/// Contract executions outside the node (token transfers on the contract service).
#[derive(Debug, Serialize)]
pub struct ContractFigures {
    pub sequential_calls_per_s: f64,
    pub parallel_calls_per_s: f64,
    pub threads: usize,
    pub gas_per_call: u64,
}

/// Everything `bpu bench ledger` reports.
#[derive(Debug, Serialize)]
pub struct LedgerReport {
    pub device_uri: String,
    pub backend: String,
    pub cpu_model: Option<String>,
    pub cores: usize,
    pub openssl: Option<OpensslFigures>,
    pub openssl_unavailable: Option<String>,
    pub accounts: usize,
    pub block_max_txs: u32,
    pub block_max_bytes: u32,
    pub block_timeout_ms: u32,
    pub setup_seconds: f64,
    pub peak: LoadFigures,
    pub half: LoadFigures,
    /// peak TPS × verifications per transaction ÷ OpenSSL verifications/s on all cores.
    pub verification_efficiency: Option<f64>,
    pub contract: ContractFigures,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Pre-signed transfers, in rounds of disjoint account pairs.
struct Plan {
    rounds: Vec<Vec<Vec<u8>>>,
    /// Rounds between two uses of the same account.
    groups: usize,
}

/// A network: genesis, keys, signers.
struct Net {
    genesis: Genesis,
    node_key: SigningKey,
    admin: Signer,
    accounts: Vec<Signer>,
}

const CHANNEL: &str = "bench";

fn account_id(s: &Signer) -> [u8; 32] {
    Sha256::digest(s.key.public_key().to_sec1()).into()
}

fn transfer_args(to: &[u8; 32], amount: u64) -> Vec<u8> {
    let mut v = to.to_vec();
    v.extend(amount.to_le_bytes());
    v
}

fn make_net(accounts: usize, timeout_ms: u32) -> Result<Net, String> {
    let keys: Vec<SigningKey> = (0..accounts + 2)
        .into_par_iter()
        .map(|_| SigningKey::generate().map_err(err))
        .collect::<Result<_, _>>()?;
    let member = |i: usize, k: &SigningKey, roles: u8| Member {
        org: 0,
        name: format!("m{i}"),
        key: k.public_key().to_sec1().to_vec(),
        roles,
        bls: (roles & Role::Validator as u8 != 0).then(|| ValidatorKey::derived(k)),
    };
    let mut members = vec![
        member(
            0,
            &keys[0],
            Role::Admin as u8 | Role::Writer as u8 | Role::Reader as u8,
        ),
        member(1, &keys[1], Role::Validator as u8),
    ];
    for (i, k) in keys.iter().enumerate().skip(2) {
        members.push(member(i, k, Role::Writer as u8 | Role::Reader as u8));
    }
    let genesis = Genesis {
        version: bpu_ledger::format::VERSION,
        channel: CHANNEL.into(),
        created_ms: bpu_ledger::order::now_ms(),
        membership: Membership {
            orgs: vec![Org {
                name: "bench".into(),
            }],
            members,
        },
        params: ChannelParams {
            block_timeout_ms: timeout_ms,
            ..ChannelParams::default()
        },
    };
    genesis.validate().map_err(err)?;
    let mut keys = keys.into_iter();
    let signer = |key: SigningKey, member: u32| Signer {
        key,
        channel: CHANNEL.into(),
        member,
    };
    let admin = signer(keys.next().ok_or("no key")?, 0);
    let node_key = keys.next().ok_or("no key")?;
    let accounts = keys
        .enumerate()
        .map(|(i, k)| signer(k, i as u32 + 2))
        .collect();
    Ok(Net {
        genesis,
        node_key,
        admin,
        accounts,
    })
}

/// The id of an encoded transaction we built ourselves.
fn tx_id(bytes: &[u8]) -> [u8; 32] {
    bpu_ledger::Transaction::decode(bytes).map_or([0; 32], |t| t.id().0)
}

/// Commit times and statuses, filled from the node's blocks as they commit.
struct Tracker {
    index: HashMap<[u8; 32], usize>,
    submit_ns: Vec<AtomicU64>,
    commit_ns: Vec<AtomicU64>,
    valid: Vec<AtomicU64>,
    t0: Instant,
    blocks: AtomicU64,
    block_bytes: AtomicU64,
    block_txs: AtomicU64,
    first_commit_ns: AtomicU64,
    last_commit_ns: AtomicU64,
}

impl Tracker {
    fn new(ids: &[[u8; 32]]) -> Tracker {
        let n = ids.len();
        let z = || (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Tracker {
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            submit_ns: z(),
            commit_ns: z(),
            valid: z(),
            t0: Instant::now(),
            blocks: AtomicU64::new(0),
            block_bytes: AtomicU64::new(0),
            block_txs: AtomicU64::new(0),
            first_commit_ns: AtomicU64::new(0),
            last_commit_ns: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64 + 1
    }

    fn committed(&self, i: usize) -> bool {
        self.commit_ns[i].load(Ordering::Acquire) != 0
    }

    /// Follows the node's commits until `stop`.
    async fn follow(&self, node: &Node, stop: Arc<AtomicU64>) -> Result<(), String> {
        let mut commits = node.subscribe_commits();
        loop {
            let c = match tokio::time::timeout(Duration::from_millis(20), commits.recv()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(format!("following commits: {e}")),
                Err(_) => {
                    if stop.load(Ordering::Relaxed) != 0 {
                        return Ok(());
                    }
                    continue;
                }
            };
            let now = self.now();
            let mut mine = 0;
            for (id, s) in c.ids.iter().zip(&c.status) {
                if let Some(&i) = self.index.get(id) {
                    self.valid[i].store(u64::from(*s == TxStatus::Valid), Ordering::Relaxed);
                    self.commit_ns[i].store(now, Ordering::Release);
                    mine += 1;
                }
            }
            if mine > 0 {
                self.blocks.fetch_add(1, Ordering::Relaxed);
                self.block_bytes
                    .fetch_add(c.bytes as u64, Ordering::Relaxed);
                self.block_txs
                    .fetch_add(c.ids.len() as u64, Ordering::Relaxed);
                let _ = self.first_commit_ns.compare_exchange(
                    0,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                self.last_commit_ns.store(now, Ordering::Relaxed);
            }
        }
    }
}

/// Submits `txs` over the connections, recording submit times; returns rejections.
async fn submit_all(clients: &mut [Client], txs: &[(usize, &[u8])], tracker: &Tracker) -> u64 {
    let k = clients.len().max(1);
    let chunk = txs.len().div_ceil(k).max(1);
    let futs = clients
        .iter_mut()
        .zip(txs.chunks(chunk))
        .map(|(c, part)| async move {
            let mut rejected = 0;
            for (i, bytes) in part {
                tracker.submit_ns[*i].store(tracker.now(), Ordering::Relaxed);
                if c.submit_bytes(bytes).await.is_err() {
                    rejected += 1;
                    tracker.commit_ns[*i].store(u64::MAX, Ordering::Release);
                }
            }
            rejected
        });
    futures::future::join_all(futs).await.into_iter().sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the plan's rounds, closed loop (`rate` None) or paced at `rate` transactions/s.
async fn run_load(
    node: &Node,
    addr: &str,
    connections: usize,
    plan: &Plan,
    rate: Option<f64>,
) -> Result<LoadFigures, String> {
    let ids: Vec<[u8; 32]> = plan.rounds.iter().flatten().map(|b| tx_id(b)).collect();
    let n = ids.len();
    let tracker = Arc::new(Tracker::new(&ids));
    let stop = Arc::new(AtomicU64::new(0));
    let follower = {
        let (t, n, s) = (tracker.clone(), node.clone(), stop.clone());
        tokio::spawn(async move { t.follow(&n, s).await })
    };
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        clients.push(Client::connect(addr).await.map_err(err)?);
    }
    let m0 = node.metrics();
    let start = tracker.now();
    let mut rejected = 0;
    let mut first = 0usize;
    let mut round_start = Vec::new();
    for (r, txs) in plan.rounds.iter().enumerate() {
        round_start.push(first);
        // An account is used again only once its previous round has committed entirely
        // (connections submit in parallel, so a round's last index is not its last commit).
        if r >= plan.groups {
            let from = round_start[r - plan.groups];
            let prev = from..from + plan.rounds[r - plan.groups].len();
            while !prev.clone().all(|i| tracker.committed(i)) {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        if let Some(rate) = rate {
            // Pace: this round may start when the previous transactions' slots are due.
            let due = start + (first as f64 / rate * 1e9) as u64;
            let now = tracker.now();
            if due > now {
                tokio::time::sleep(Duration::from_nanos(due - now)).await;
            }
        }
        let batch: Vec<(usize, &[u8])> = txs
            .iter()
            .enumerate()
            .map(|(j, b)| (first + j, b.as_slice()))
            .collect();
        rejected += submit_all(&mut clients, &batch, &tracker).await;
        first += txs.len();
    }
    // Wait for everything accepted to commit.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(0..n).all(|i| tracker.committed(i)) {
        if Instant::now() > deadline {
            return Err("transactions did not commit within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(1, Ordering::Relaxed);
    follower.await.map_err(err)??;
    let m1 = node.metrics();

    let mut lat = Vec::with_capacity(n);
    let mut valid = 0u64;
    for i in 0..n {
        let c = tracker.commit_ns[i].load(Ordering::Relaxed);
        if c == u64::MAX {
            continue;
        }
        valid += tracker.valid[i].load(Ordering::Relaxed);
        let s = tracker.submit_ns[i].load(Ordering::Relaxed);
        lat.push(c.saturating_sub(s) as f64 / 1e6);
    }
    lat.sort_by(f64::total_cmp);
    let end = tracker.last_commit_ns.load(Ordering::Relaxed);
    let seconds = end.saturating_sub(start) as f64 / 1e9;
    let blocks = tracker.blocks.load(Ordering::Relaxed);
    let committed = (m1.committed_txs - m0.committed_txs).max(1);
    let first_commit = tracker.first_commit_ns.load(Ordering::Relaxed);
    let node_blocks = (m1.blocks - m0.blocks).max(1) as f64;
    Ok(LoadFigures {
        offered_tps: rate,
        seconds,
        submitted: n as u64,
        valid,
        invalid: (n as u64 - rejected) - valid,
        rejected,
        tps: valid as f64 / seconds.max(1e-9),
        blocks,
        txs_per_block: tracker.block_txs.load(Ordering::Relaxed) as f64 / blocks.max(1) as f64,
        bytes_per_block: tracker.block_bytes.load(Ordering::Relaxed) as f64 / blocks.max(1) as f64,
        block_interval_ms: if blocks > 1 {
            end.saturating_sub(first_commit) as f64 / 1e6 / (blocks - 1) as f64
        } else {
            0.0
        },
        latency_ms_p50: percentile(&lat, 0.50),
        latency_ms_p99: percentile(&lat, 0.99),
        verifications_per_tx: (m1.verifications - m0.verifications) as f64 / committed as f64,
        validate_ms_per_block: (m1.validate_us - m0.validate_us) as f64 / 1e3 / node_blocks,
        store_ms_per_block: (m1.store_us - m0.store_us) as f64 / 1e3 / node_blocks,
        state_ms_per_block: (m1.state_us - m0.state_us) as f64 / 1e3 / node_blocks,
    })
}

/// Transfers in rounds: round r pairs the accounts of group r mod `groups` (first half sends
/// one unit to the second half, alternating direction each time the group comes back).
fn plan(net: &Net, groups: usize, total: usize, nonce_base: u64) -> Result<Plan, String> {
    let per_group = net.accounts.len() / groups;
    let half = per_group / 2;
    let rounds_n = total.div_ceil(half.max(1));
    let ids: Vec<[u8; 32]> = net.accounts.iter().map(account_id).collect();
    let rounds = (0..rounds_n)
        .into_par_iter()
        .map(|r| {
            let g = r % groups;
            let flip = (r / groups) % 2 == 1;
            (0..half)
                .map(|j| {
                    let (a, b) = (g * per_group + j, g * per_group + half + j);
                    let (from, to) = if flip { (b, a) } else { (a, b) };
                    net.accounts[from]
                        .sign(
                            "token",
                            None,
                            "transfer",
                            transfer_args(&ids[to], 1),
                            nonce_base + r as u64,
                        )
                        .map(|t| t.encode())
                        .map_err(err)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan { rounds, groups })
}

/// Deploys the token and gives every account a balance (a doubling tree of transfers: round k
/// has 2^k disjoint transfers).
async fn setup(
    node: &Node,
    addr: &str,
    net: &Net,
    elf: &[u8],
    connections: usize,
) -> Result<(), String> {
    let mut c = Client::connect(addr).await.map_err(err)?;
    let call = |s: &Signer, contract: &str, method: &str, args: Vec<u8>, nonce| {
        s.sign(contract, None, method, args, nonce).map_err(err)
    };
    let install = postcard::to_allocvec(&system::InstallArgs {
        name: "token".into(),
        code: elf.to_vec(),
        activate: true,
    })
    .map_err(err)?;
    let steps = [
        call(&net.admin, system::LIFECYCLE, "install", install, 1)?,
        call(&net.admin, "token", "init", vec![], 2)?,
    ];
    for tx in &steps {
        let id = c.submit(tx).await.map_err(err)?;
        let r = c.wait(&id, Duration::from_secs(60)).await.map_err(err)?;
        if r.status != TxStatus::Valid {
            return Err(format!(
                "setup step {} failed: {:?}",
                tx.body.method, r.status
            ));
        }
    }
    let n = net.accounts.len();
    let each: u64 = 1 << 32;
    let ids: Vec<[u8; 32]> = net.accounts.iter().map(account_id).collect();
    let mint = call(
        &net.admin,
        "token",
        "mint",
        transfer_args(&ids[0], each * n.next_power_of_two() as u64),
        3,
    )?;
    let id = c.submit(&mint).await.map_err(err)?;
    c.wait(&id, Duration::from_secs(60)).await.map_err(err)?;
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        clients.push(Client::connect(addr).await.map_err(err)?);
    }
    // Account i holds each·2^(levels−k) after round k; it sends half to i + 2^k.
    let levels = n.next_power_of_two().trailing_zeros();
    let mut funded = 1usize;
    for k in 0..levels {
        let amount = each << (levels - k - 1);
        let txs: Vec<Vec<u8>> = (0..funded)
            .filter(|i| i + funded < n)
            .map(|i| {
                net.accounts[i]
                    .sign(
                        "token",
                        None,
                        "transfer",
                        transfer_args(&ids[i + funded], amount),
                        10 + u64::from(k),
                    )
                    .map(|t| t.encode())
                    .map_err(err)
            })
            .collect::<Result<_, _>>()?;
        let txids: Vec<[u8; 32]> = txs.iter().map(|b| tx_id(b)).collect();
        let tracker = Tracker::new(&txids);
        let batch: Vec<(usize, &[u8])> = txs
            .iter()
            .enumerate()
            .map(|(i, b)| (i, b.as_slice()))
            .collect();
        let rejected = submit_all(&mut clients, &batch, &tracker).await;
        if rejected > 0 {
            return Err(format!("funding round {k}: {rejected} transfers rejected"));
        }
        let last = txids.last().copied().unwrap_or([0; 32]);
        let r = c.wait(&last, Duration::from_secs(120)).await.map_err(err)?;
        if r.status != TxStatus::Valid {
            return Err(format!("funding round {k}: {:?}", r.status));
        }
        funded *= 2;
    }
    let m = node.metrics();
    if m.committed_txs != m.valid_txs {
        return Err(format!(
            "funding left {} invalid transactions",
            m.committed_txs - m.valid_txs
        ));
    }
    Ok(())
}

/// Token transfers on the contract service alone: sequential, then on all cores.
fn contract_figures(elf: &[u8], quick: bool) -> Result<ContractFigures, String> {
    let svc = ContractService::new(ContractConfig::default());
    let program = svc.load(elf).map_err(err)?;
    let key = [4u8; 65];
    let from: [u8; 32] = Sha256::digest(key).into();
    let mut state: BTreeMap<Vec<u8>, (Vec<u8>, StateVersion)> = BTreeMap::new();
    let mut bk = vec![b'b'];
    bk.extend(from);
    state.insert(
        bk,
        (u64::MAX.to_le_bytes().to_vec(), StateVersion::default()),
    );
    let args = transfer_args(&[9; 32], 1);
    let ctx = CallContext {
        channel: CHANNEL,
        contract: "token",
        contract_version: 1,
        caller_index: 2,
        caller_key: &key,
        tx_id: [0; 32],
        height: 1,
        time_ms: 0,
        method: "transfer",
        args: &args,
        gas_limit: 1_000_000,
    };
    let n: usize = if quick { 20_000 } else { 200_000 };
    let first = svc.execute(&program, &ctx, &state);
    first
        .result
        .map_err(|e| format!("token transfer reverted: {e}"))?;
    let t = Instant::now();
    for _ in 0..n {
        if svc.execute(&program, &ctx, &state).result.is_err() {
            return Err("token transfer reverted".into());
        }
    }
    let seq = n as f64 / t.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let ok = (0..n)
        .into_par_iter()
        .all(|_| svc.execute(&program, &ctx, &state).result.is_ok());
    if !ok {
        return Err("token transfer reverted".into());
    }
    let par = n as f64 / t.elapsed().as_secs_f64();
    Ok(ContractFigures {
        sequential_calls_per_s: seq,
        parallel_calls_per_s: par,
        threads,
        gas_per_call: first.gas_used,
    })
}

/// Runs the ledger benchmark.
pub fn run(opts: &Options<'_>) -> Result<LedgerReport, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let elf = std::fs::read(&opts.token_elf).map_err(|e| {
        format!(
            "reading {}: {e}; build the contracts with `contracts/build.sh` or pass --token",
            opts.token_elf.display()
        )
    })?;
    (opts.progress)("contract service: token transfers, sequential and parallel");
    let contract = contract_figures(&elf, opts.quick)?;
    let seconds: u32 = if opts.quick { 1 } else { 3 };
    (opts.progress)(&format!(
        "openssl speed -seconds {seconds} ecdsap256 (1 core, -multi {cores})"
    ));
    let (openssl, openssl_unavailable) = match openssl_figures(seconds, cores) {
        Ok(f) => (Some(f), None),
        Err(why) => (None, Some(why)),
    };

    let t_setup = Instant::now();
    (opts.progress)(&format!("{} accounts: keys and genesis", opts.accounts));
    let net = make_net(opts.accounts, opts.block_timeout_ms)?;
    let dir = tempfile::tempdir().map_err(err)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let params = net.genesis.params.clone();
    let report = rt.block_on(async {
        let crypto = CryptoService::open(&opts.device).map_err(err)?;
        let node = Node::start(NodeConfig {
            data_dir: dir.path().to_path_buf(),
            genesis: net.genesis.clone(),
            key: SigningKey::from_pem(net.node_key.to_pem().map_err(err)?.as_bytes())
                .map_err(err)?,
            crypto,
            cutter: Some(CutterConfig::from_params(&params)),
            clock: None,
        })
        .await
        .map_err(err)?;
        let addr = bpu_ledger::server::spawn(node.clone(), "127.0.0.1:0")
            .await
            .map_err(err)?
            .to_string();
        (opts.progress)("deploying the token and funding every account");
        setup(&node, &addr, &net, &elf, opts.connections).await?;
        let setup_seconds = t_setup.elapsed().as_secs_f64();
        let groups = 16.min(opts.accounts / 64).max(2);
        (opts.progress)(&format!("signing {} transfers", opts.transfers));
        let peak_plan = plan(&net, groups, opts.transfers, 1_000_000)?;
        (opts.progress)(&format!(
            "peak: {} transfers over {} connections, as fast as the node commits",
            opts.transfers, opts.connections
        ));
        let peak = run_load(&node, &addr, opts.connections, &peak_plan, None).await?;
        let half_rate = (peak.tps / 2.0).max(1.0);
        let half_n = ((half_rate * if opts.quick { 3.0 } else { 10.0 }) as usize).max(1000);
        let half_plan = plan(&net, groups, half_n, 2_000_000)?;
        (opts.progress)(&format!(
            "half load: {half_n} transfers at {half_rate:.0}/s"
        ));
        let half = run_load(&node, &addr, opts.connections, &half_plan, Some(half_rate)).await?;
        let efficiency = openssl
            .as_ref()
            .and_then(|o| o.verify_per_s_multi.or(Some(o.verify_per_s_1core)))
            .map(|v| peak.tps * peak.verifications_per_tx / v);
        Ok::<_, String>(LedgerReport {
            device_uri: opts.device.clone(),
            backend: node.info().backend,
            cpu_model: crate::verify::cpu_model(),
            cores,
            openssl,
            openssl_unavailable,
            accounts: opts.accounts,
            block_max_txs: params.block_max_txs,
            block_max_bytes: params.block_max_bytes,
            block_timeout_ms: params.block_timeout_ms,
            setup_seconds,
            peak,
            half,
            verification_efficiency: efficiency,
            contract,
        })
    })?;
    Ok(report)
}

impl LedgerReport {
    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::from("## Ledger: token transfers on one node\n\n");
        o.push_str(&format!(
            "CPU: {} ({} cores). Node crypto backend: {}. {} accounts; blocks of at most {} \
             transactions / {} bytes / {} ms. Setup (genesis, deploy, funding) took {:.1} s.\n\n",
            self.cpu_model.as_deref().unwrap_or("unknown"),
            self.cores,
            self.backend,
            self.accounts,
            self.block_max_txs,
            self.block_max_bytes,
            self.block_timeout_ms,
            self.setup_seconds
        ));
        o.push_str("| run | offered tx/s | valid tx/s | valid / invalid / rejected | blocks | tx per block | bytes per block | block interval | latency p50 | latency p99 | verifications per tx |\n");
        o.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for (name, f) in [("peak", &self.peak), ("half of peak", &self.half)] {
            o.push_str(&format!(
                "| {name} | {} | **{:.0}** | {} / {} / {} | {} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} |\n",
                f.offered_tps.map_or("max".to_string(), |r| format!("{r:.0}")),
                f.tps,
                f.valid,
                f.invalid,
                f.rejected,
                f.blocks,
                f.txs_per_block,
                f.bytes_per_block,
                f.block_interval_ms,
                f.latency_ms_p50,
                f.latency_ms_p99,
                f.verifications_per_tx
            ));
        }
        match (&self.openssl, self.verification_efficiency) {
            (Some(s), Some(e)) => o.push_str(&format!(
                "\nVerification efficiency = {:.0} tx/s × {:.2} verifications/tx ÷ {:.0} \
                 (`openssl speed -multi {}` ecdsap256 verify/s, same run) = **{e:.2}** (goal ≥ 0.8).\n",
                self.peak.tps,
                self.peak.verifications_per_tx,
                s.verify_per_s_multi.unwrap_or(s.verify_per_s_1core),
                s.multi
            )),
            _ => o.push_str(&format!(
                "\nOpenSSL not measured: {}\n",
                self.openssl_unavailable.as_deref().unwrap_or("unknown")
            )),
        }
        for (name, f) in [("peak", &self.peak), ("half of peak", &self.half)] {
            o.push_str(&format!(
                "\nPer block at {name}: validation {:.0} ms, block store {:.0} ms, state commit {:.0} ms.",
                f.validate_ms_per_block, f.store_ms_per_block, f.state_ms_per_block
            ));
        }
        o.push('\n');
        o.push_str(&format!(
            "\nContract service, token transfer ({} gas): {:.0} calls/s sequential, {:.0} calls/s on {} threads.\n",
            self.contract.gas_per_call,
            self.contract.sequential_calls_per_s,
            self.contract.parallel_calls_per_s,
            self.contract.threads
        ));
        o
    }
}
