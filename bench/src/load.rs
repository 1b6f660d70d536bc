//! Token-transfer load shared by `bpu bench ledger` and `bpu bench consensus`: the network
//! (genesis with admin, validators and funded accounts), pre-signed transfers in rounds of
//! disjoint accounts, the tracker that follows one node's commits, and the load runner that
//! spreads client connections over the nodes' addresses.
//!
//! Accounts are split into groups; each round of transfers pairs up the accounts of one group,
//! and a group is used again only after its previous round has committed, so no two transfers
//! in flight touch the same account. Every transaction's fate is checked: the figures count
//! valid commits only, and any invalid or rejected transfer is reported.

use bpu_ledger::client::{Client, Signer};
use bpu_ledger::format::{TxStatus, Wire};
use bpu_ledger::membership::{ChannelParams, Genesis, Member, Membership, Org, Role, ValidatorKey};
use bpu_ledger::node::{Committed, Node};
use bpu_ledger::system;
use bpu_runtime::SigningKey;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The benchmark channel's name.
pub(crate) const CHANNEL: &str = "bench";

/// How long accepted transactions may take to commit before a run fails.
pub(crate) const COMMIT_DEADLINE: Duration = Duration::from_secs(120);

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

pub(crate) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A copy of a signing key (keys are not `Clone`).
pub(crate) fn copy_key(k: &SigningKey) -> Result<SigningKey, String> {
    SigningKey::from_pem(k.to_pem().map_err(err)?.as_bytes()).map_err(err)
}

/// Pre-signed transfers, in rounds of disjoint account pairs.
pub(crate) struct Plan {
    rounds: Vec<Vec<Vec<u8>>>,
    /// Rounds between two uses of the same account.
    groups: usize,
}

/// A network: genesis, keys, signers. Members: the admin (0), the validators (1..=v), then
/// the accounts.
pub(crate) struct Net {
    pub genesis: Genesis,
    /// The validators' node keys, in membership order.
    pub validators: Vec<SigningKey>,
    pub admin: Signer,
    pub accounts: Vec<Signer>,
}

fn account_id(s: &Signer) -> [u8; 32] {
    Sha256::digest(s.key.public_key().to_sec1()).into()
}

pub(crate) fn transfer_args(to: &[u8; 32], amount: u64) -> Vec<u8> {
    let mut v = to.to_vec();
    v.extend(amount.to_le_bytes());
    v
}

/// Keys and genesis for `accounts` token accounts and `validators` validators (each with the
/// BLS key derived from its node key) under the channel parameters `params`.
pub(crate) fn make_net(
    accounts: usize,
    validators: usize,
    params: ChannelParams,
) -> Result<Net, String> {
    let v = validators.max(1);
    let keys: Vec<SigningKey> = (0..accounts + 1 + v)
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
    let members: Vec<Member> = keys
        .par_iter()
        .enumerate()
        .map(|(i, k)| {
            let roles = match i {
                0 => Role::Admin as u8 | Role::Writer as u8 | Role::Reader as u8,
                i if i <= v => Role::Validator as u8,
                _ => Role::Writer as u8 | Role::Reader as u8,
            };
            member(i, k, roles)
        })
        .collect();
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
        params,
    };
    genesis.validate().map_err(err)?;
    let mut keys = keys.into_iter();
    let signer = |key: SigningKey, member: u32| Signer {
        key,
        channel: CHANNEL.into(),
        member,
    };
    let admin = signer(keys.next().ok_or("no key")?, 0);
    let node_keys: Vec<SigningKey> = keys.by_ref().take(v).collect();
    let first = 1 + v as u32;
    let accounts = keys
        .enumerate()
        .map(|(i, k)| signer(k, first + i as u32))
        .collect();
    Ok(Net {
        genesis,
        validators: node_keys,
        admin,
        accounts,
    })
}

/// The id of an encoded transaction we built ourselves.
fn tx_id(bytes: &[u8]) -> [u8; 32] {
    bpu_ledger::Transaction::decode(bytes).map_or([0; 32], |t| t.id().0)
}

/// Commit times and statuses, filled from one node's blocks as they commit.
struct Tracker {
    index: HashMap<[u8; 32], usize>,
    submit_ns: Vec<AtomicU64>,
    commit_ns: Vec<AtomicU64>,
    /// Height of the block that committed each transaction.
    height: Vec<AtomicU64>,
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
            height: z(),
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

    fn all_committed(&self) -> bool {
        (0..self.commit_ns.len()).all(|i| self.committed(i))
    }

    /// Follows commits (subscribed before the first submission) until `stop`.
    async fn follow(
        &self,
        mut commits: broadcast::Receiver<Arc<Committed>>,
        stop: Arc<AtomicU64>,
    ) -> Result<(), String> {
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
                    self.height[i].store(c.height, Ordering::Relaxed);
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

/// A tracker of `ids` following `node`'s commits from now on, on its own task.
struct Following {
    tracker: Arc<Tracker>,
    stop: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Following {
    fn start(node: &Node, ids: &[[u8; 32]]) -> Following {
        let tracker = Arc::new(Tracker::new(ids));
        let stop = Arc::new(AtomicU64::new(0));
        // Subscribed here, before anything is submitted, so no commit is missed.
        let commits = node.subscribe_commits();
        let task = {
            let (t, s) = (tracker.clone(), stop.clone());
            tokio::spawn(async move { t.follow(commits, s).await })
        };
        Following {
            tracker,
            stop,
            task,
        }
    }

    /// Waits until every transaction committed (or was rejected), then stops following.
    async fn finish(self) -> Result<Arc<Tracker>, String> {
        let deadline = Instant::now() + COMMIT_DEADLINE;
        while !self.tracker.all_committed() {
            if self.task.is_finished() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "transactions did not commit within {} s",
                    COMMIT_DEADLINE.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.stop.store(1, Ordering::Relaxed);
        self.task.await.map_err(err)??;
        if !self.tracker.all_committed() {
            return Err("stopped following commits before every transaction committed".into());
        }
        Ok(self.tracker)
    }
}

/// Client connections, `count` of them spread round-robin over `addrs`.
async fn connect_all(addrs: &[String], count: usize) -> Result<Vec<Client>, String> {
    if addrs.is_empty() {
        return Err("no node addresses".into());
    }
    let mut clients = Vec::new();
    for i in 0..count.max(1) {
        clients.push(
            Client::connect(&addrs[i % addrs.len()])
                .await
                .map_err(err)?,
        );
    }
    Ok(clients)
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

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Waits until every node has committed `height` (a node endorses on its own committed
/// state, so an account's next transfer must wait for its last one on every node).
async fn all_at(nodes: &[Node], height: u64) -> Result<(), String> {
    let deadline = Instant::now() + COMMIT_DEADLINE;
    while nodes.iter().any(|x| x.tip().height < height) {
        if Instant::now() > deadline {
            let hs: Vec<u64> = nodes.iter().map(|x| x.tip().height).collect();
            return Err(format!(
                "nodes did not reach height {height} within {} s: {hs:?}",
                COMMIT_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    Ok(())
}

/// Runs the plan's rounds, closed loop (`rate` None) or paced at `rate` transactions/s.
/// `connections` clients are spread over `addrs` (the nodes' client APIs); commit times,
/// statuses and the per-block figures are taken from `nodes[0]`. A round that reuses accounts
/// starts once their previous round committed on every node of `nodes`.
pub(crate) async fn run_load(
    nodes: &[Node],
    addrs: &[String],
    connections: usize,
    plan: &Plan,
    rate: Option<f64>,
) -> Result<LoadFigures, String> {
    let node = nodes.first().ok_or("no nodes")?;
    let ids: Vec<[u8; 32]> = plan.rounds.iter().flatten().map(|b| tx_id(b)).collect();
    let n = ids.len();
    all_at(nodes, node.tip().height).await?;
    let mut clients = connect_all(addrs, connections).await?;
    let following = Following::start(node, &ids);
    let tracker = following.tracker.clone();
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
            let deadline = Instant::now() + COMMIT_DEADLINE;
            while !prev.clone().all(|i| tracker.committed(i)) {
                if Instant::now() > deadline {
                    return Err(format!(
                        "round {} did not commit within {} s",
                        r - plan.groups,
                        COMMIT_DEADLINE.as_secs()
                    ));
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            let h = prev
                .map(|i| tracker.height[i].load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            all_at(nodes, h).await?;
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
    let tracker = following.finish().await?;
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

/// Groups of accounts for `accounts` accounts: 16, fewer for small networks (at least 2).
pub(crate) fn groups_for(accounts: usize) -> usize {
    16.min(accounts / 64).max(2)
}

/// Transfers in rounds: round r pairs the accounts of group r mod `groups` (first half sends
/// one unit to the second half, alternating direction each time the group comes back).
pub(crate) fn plan(
    net: &Net,
    groups: usize,
    total: usize,
    nonce_base: u64,
) -> Result<Plan, String> {
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

/// Submits `txs` over `clients` and waits until `node` committed all of them, each valid.
async fn commit_all(
    node: &Node,
    clients: &mut [Client],
    txs: &[Vec<u8>],
    what: &str,
) -> Result<(), String> {
    let ids: Vec<[u8; 32]> = txs.iter().map(|b| tx_id(b)).collect();
    let following = Following::start(node, &ids);
    let batch: Vec<(usize, &[u8])> = txs
        .iter()
        .enumerate()
        .map(|(i, b)| (i, b.as_slice()))
        .collect();
    let rejected = submit_all(clients, &batch, &following.tracker).await;
    if rejected > 0 {
        return Err(format!("{what}: {rejected} transactions rejected"));
    }
    let tracker = following.finish().await?;
    let invalid = (0..ids.len())
        .filter(|&i| tracker.valid[i].load(Ordering::Relaxed) == 0)
        .count();
    if invalid > 0 {
        return Err(format!("{what}: {invalid} transactions invalid"));
    }
    Ok(())
}

/// Deploys the token and gives every account a balance (a doubling tree of transfers: round k
/// has 2^k disjoint transfers), through the client API at `addr` of `node`.
pub(crate) async fn setup(
    node: &Node,
    addr: &str,
    net: &Net,
    elf: &[u8],
    connections: usize,
) -> Result<(), String> {
    let mut clients = connect_all(&[addr.to_string()], connections).await?;
    let call = |s: &Signer, contract: &str, method: &str, args: Vec<u8>, nonce| {
        s.sign(contract, None, method, args, nonce)
            .map(|t| t.encode())
            .map_err(err)
    };
    let install = postcard::to_allocvec(&system::InstallArgs {
        name: "token".into(),
        code: elf.to_vec(),
        activate: true,
    })
    .map_err(err)?;
    let n = net.accounts.len();
    let each: u64 = 1 << 32;
    let ids: Vec<[u8; 32]> = net.accounts.iter().map(account_id).collect();
    let mint_to = ids.first().ok_or("no accounts")?;
    let steps = [
        (
            "install",
            call(&net.admin, system::LIFECYCLE, "install", install, 1)?,
        ),
        ("init", call(&net.admin, "token", "init", vec![], 2)?),
        (
            "mint",
            call(
                &net.admin,
                "token",
                "mint",
                transfer_args(mint_to, each * n.next_power_of_two() as u64),
                3,
            )?,
        ),
    ];
    // Each step executes on the state the previous one committed.
    for (what, tx) in steps {
        commit_all(
            node,
            &mut clients[..1],
            &[tx],
            &format!("setup step {what}"),
        )
        .await?;
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
        commit_all(node, &mut clients, &txs, &format!("funding round {k}")).await?;
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
