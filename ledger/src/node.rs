//! The ledger node: endorse → order → validate → commit → events, over the runtime's crypto,
//! contract and state services (theory of operation: docs/ledger.md).
//!
//! Durability: a block is appended to the block store (fsync) before its writes reach the state
//! service (fsync). On start the node replays any stored block the state has not applied, so a
//! crash at any instant loses no committed block and leaves state = replay of the chain.

use crate::api::{Cursor, EventRecord, NodeInfo, Rejection, TxProof, TxState, PROTOCOL};
use crate::bft::{BftContext, BftOrderer, BftSetup};
use crate::fastsync::{FastSync, FastSyncError};
use crate::format::{
    Block, BlockHeader, EndorsedTx, Endorsement, ExecResult, KeyVersion, Read, Receipt,
    Transaction, TxStatus, Wire, Write, VERSION,
};
use crate::membership::{ChannelParams, Genesis, Membership, Role};
use crate::order::{system_clock, Clock, CutterConfig, Ordered, Ordering, SoloOrderer, Tip};
use crate::sigcache::SigCache;
use crate::snapshot::{Housekeeping, SnapshotDir, SnapshotError, SyncOptions};
use crate::store::{BlockStore, StoreError};
use crate::system::{self, ContractMeta};
use bpu_runtime::contract::{
    CallContext, CallOutcome, ContractConfig, ContractService, Program, StateReader,
};
use bpu_runtime::state::{StateError, StateService, StateWrite};
use bpu_runtime::{merkle, CryptoService, Digest, SigningKey, StateVersion, VerifyRequest};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};

/// Gas every call may use (a channel parameter in a later format version).
pub const GAS_LIMIT: u64 = 50_000_000;

/// Why the node could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error("crypto service: {0}")]
    Crypto(#[from] bpu_runtime::Error),
    #[error("this node's key is not a validator of channel {0}; add it to the genesis with the validator role")]
    NotValidator(String),
    #[error("the data directory holds channel {found:?} from another genesis (hash {hash}); use an empty directory or the matching genesis")]
    OtherGenesis { found: String, hash: String },
    #[error(
        "stored block {height} does not extend the chain ({what}); the data directory is damaged"
    )]
    BrokenChain { height: u64, what: String },
    #[error("the state is at height {state}, beyond the last stored block {blocks}; the data directory is damaged")]
    StateAhead { state: u64, blocks: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("consensus: {0}")]
    Bft(#[from] crate::bft::BftError),
    #[error(transparent)]
    FastSync(#[from] FastSyncError),
    #[error("snapshots: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("block {height} was pruned: this node keeps blocks from {base} on; ask a node that keeps the whole chain")]
    Pruned { height: u64, base: u64 },
    #[error("{0}")]
    Config(String),
}

/// What a node needs to start.
pub struct NodeConfig {
    /// Holds `blocks.redb` and `state/` (the state service's directory).
    pub data_dir: PathBuf,
    pub genesis: Genesis,
    /// The node's key; its public key must be a validator in the genesis membership.
    pub key: SigningKey,
    /// The crypto service (cpu, sim://, vfio://).
    pub crypto: CryptoService,
    /// Block cutter; `None` takes the channel parameters.
    pub cutter: Option<CutterConfig>,
    /// Block and call times; `None` is the system clock.
    pub clock: Option<Clock>,
}

/// What a commit decided, announced to [`Node::subscribe_commits`] listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub height: u64,
    /// Transaction ids in block order.
    pub ids: Vec<[u8; 32]>,
    pub status: Vec<TxStatus>,
    /// Encoded block size.
    pub bytes: usize,
}

/// Counters since start.
#[derive(Default)]
struct Counters {
    committed_txs: AtomicU64,
    valid_txs: AtomicU64,
    blocks: AtomicU64,
    verifications: AtomicU64,
    validate_us: AtomicU64,
    store_us: AtomicU64,
    state_us: AtomicU64,
}

/// Node metrics snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeMetrics {
    pub height: u64,
    pub committed_txs: u64,
    pub valid_txs: u64,
    pub blocks: u64,
    /// Signature verifications done (submission and validation).
    pub verifications: u64,
    pub pending: u64,
    /// Time spent validating blocks (signatures, policy, MVCC), µs.
    pub validate_us: u64,
    /// Time spent appending blocks to the block store (with fsync), µs.
    pub store_us: u64,
    /// Time spent committing state (with fsync), µs.
    pub state_us: u64,
}

struct Inner {
    channel: String,
    genesis_hash: [u8; 32],
    me: u32,
    key: SigningKey,
    /// `key`'s public half.
    me_key: bpu_runtime::PublicKey,
    crypto: CryptoService,
    contracts: ContractService,
    state: StateService,
    store: Arc<BlockStore>,
    membership: Arc<RwLock<Arc<Membership>>>,
    params: ChannelParams,
    /// Contract programs by (name, version): installed code never changes.
    programs: Mutex<HashMap<(String, u32), Arc<Program>>>,
    /// Accepted, not yet committed.
    pending: Mutex<HashSet<[u8; 32]>>,
    orderer: Arc<dyn Ordering>,
    sigs: Arc<SigCache>,
    tip: watch::Sender<Tip>,
    commits: broadcast::Sender<Arc<Committed>>,
    clock: Clock,
    counters: Counters,
    /// The commit loop and housekeeping tasks, for [`Node::halt`].
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Committed heights for the background snapshots and pruning, when on.
    housekeeping: Option<mpsc::Sender<u64>>,
}

/// A running node (cheap to clone).
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl Node {
    /// Opens the data directory (creating the chain from the genesis when empty), recovers,
    /// and starts the solo orderer and committing on the current tokio runtime.
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        Node::start_with(cfg, None, SyncOptions::default()).await
    }

    /// Like [`Node::start`] (the solo orderer) with snapshots and pruning; fast sync needs
    /// peers, so `opts.fast_sync` is refused here.
    pub async fn start_solo(cfg: NodeConfig, opts: SyncOptions) -> Result<Node, NodeError> {
        if opts.fast_sync {
            return Err(NodeError::Config(
                "fast sync needs peers: start the node with BFT ordering (Node::start_bft)".into(),
            ));
        }
        Node::start_with(cfg, None, opts).await
    }

    /// Like [`Node::start`], ordering by BFT consensus with the channel's other validators over
    /// `setup.net` (docs/consensus.md); `setup.sync` turns on snapshots, pruning and fast sync.
    pub async fn start_bft(cfg: NodeConfig, setup: BftSetup) -> Result<Node, NodeError> {
        let opts = setup.sync.clone();
        Node::start_with(cfg, Some(setup), opts).await
    }

    async fn start_with(
        cfg: NodeConfig,
        mut bft: Option<BftSetup>,
        opts: SyncOptions,
    ) -> Result<Node, NodeError> {
        let genesis = &cfg.genesis;
        let genesis_hash = genesis.hash().0;
        let me_key = cfg.key.public_key().to_sec1();
        let me = genesis
            .membership
            .members
            .iter()
            .position(|m| m.key == me_key && m.has(Role::Validator))
            .ok_or_else(|| NodeError::NotValidator(genesis.channel.clone()))?
            as u32;
        std::fs::create_dir_all(&cfg.data_dir)?;
        let store = Arc::new(BlockStore::open(&cfg.data_dir.join("blocks.redb"))?);
        let mut synced = None;
        if let Some(setup) = bft.as_mut() {
            if opts.fast_sync && store.is_fresh()? {
                synced = fast_sync(&cfg.data_dir, genesis, &store, setup).await?;
            }
        }
        let state = StateService::open(&cfg.data_dir.join("state"))?;
        let tip = recover(&store, &state, genesis)?;
        let membership = Arc::new(RwLock::new(Arc::new(load_membership(&state)?)));
        let params = genesis.params.clone();
        let cutter = cfg
            .cutter
            .unwrap_or_else(|| CutterConfig::from_params(&params));
        let (block_tx, block_rx) = mpsc::channel(2);
        let clock = cfg.clock.unwrap_or_else(system_clock);
        let sigs = SigCache::start(cfg.crypto.clone());
        let orderer: Arc<dyn Ordering> = match bft {
            None => SoloOrderer::start(
                genesis.channel.clone(),
                me,
                cutter,
                tip,
                cfg.crypto.clone(),
                clock.clone(),
                block_tx,
            ),
            Some(setup) => {
                let reader = store.clone();
                let based = store.clone();
                let ctx = BftContext {
                    channel: genesis.channel.clone(),
                    me_key,
                    bls: crate::membership::derive_bls(&cfg.key),
                    crypto: cfg.crypto.clone(),
                    clock: clock.clone(),
                    cutter,
                    membership: membership.clone(),
                    blocks: Arc::new(move |h| reader.get_bytes(h).ok().flatten()),
                    base: Arc::new(move || based.base().unwrap_or(1)),
                    snapshots: opts.snapshots.map(|_| SnapshotDir::open(&cfg.data_dir)),
                    synced,
                    wal: cfg.data_dir.join("consensus.wal"),
                    sigs: sigs.clone(),
                };
                BftOrderer::start(ctx, setup, tip, block_tx)?
            }
        };
        let (tip_tx, _) = watch::channel(tip);
        let hk = Housekeeping::new(opts, &cfg.data_dir)?;
        let (hk_tx, hk_rx) = if hk.active() {
            let (tx, rx) = mpsc::channel(1024);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let inner = Arc::new(Inner {
            channel: genesis.channel.clone(),
            genesis_hash,
            me,
            me_key: cfg.key.public_key(),
            key: cfg.key,
            crypto: cfg.crypto,
            contracts: ContractService::new(ContractConfig::default()),
            state,
            store,
            membership,
            params,
            programs: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            orderer,
            sigs,
            tip: tip_tx,
            commits: broadcast::channel(1024).0,
            clock,
            counters: Counters::default(),
            tasks: Mutex::new(Vec::new()),
            housekeeping: hk_tx,
        });
        let mut tasks = vec![tokio::spawn(commit_loop(inner.clone(), block_rx)).abort_handle()];
        if let Some(rx) = hk_rx {
            tasks.push(tokio::spawn(housekeeping(inner.clone(), hk, rx)).abort_handle());
        }
        *inner.tasks.lock() = tasks;
        Ok(Node { inner })
    }

    /// Stops ordering and committing at once, as a crash would: a commit in flight may finish
    /// its current write or not (recovery handles both). Once every handle of this node is
    /// dropped its files close and the data directory can be opened again.
    pub fn halt(&self) {
        self.inner.orderer.halt();
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Channel name.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// The last committed block.
    pub fn tip(&self) -> Tip {
        *self.inner.tip.borrow()
    }

    /// Notifies on every commit.
    pub fn watch_tip(&self) -> watch::Receiver<Tip> {
        self.inner.tip.subscribe()
    }

    /// Every commit's transaction ids and statuses, in height order (a listener that falls
    /// more than 1024 blocks behind gets `Lagged` and should read blocks instead).
    pub fn subscribe_commits(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.inner.commits.subscribe()
    }

    /// Current membership.
    pub fn membership(&self) -> Arc<Membership> {
        self.inner.membership.read().clone()
    }

    /// Counters since start.
    pub fn metrics(&self) -> NodeMetrics {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        NodeMetrics {
            height: self.tip().height,
            committed_txs: l(&c.committed_txs),
            valid_txs: l(&c.valid_txs),
            blocks: l(&c.blocks),
            verifications: l(&c.verifications) + self.inner.sigs.verified(),
            pending: self.inner.pending.lock().len() as u64,
            validate_us: l(&c.validate_us),
            store_us: l(&c.store_us),
            state_us: l(&c.state_us),
        }
    }

    /// Node facts for clients.
    pub fn info(&self) -> NodeInfo {
        let t = self.tip();
        NodeInfo {
            protocol: PROTOCOL,
            channel: self.inner.channel.clone(),
            genesis_hash: self.inner.genesis_hash,
            height: t.height,
            block_hash: t.hash,
            state_digest: t.state_digest,
            node: self.inner.me,
            backend: self.inner.crypto.backend_name(),
            pending: self.inner.pending.lock().len() as u64,
            committed_txs: self
                .inner
                .counters
                .committed_txs
                .load(AtomicOrdering::Relaxed),
        }
    }

    /// Endorses a signed transaction and queues it for ordering; returns its id, or why it was
    /// refused (nothing is kept of a refused transaction).
    pub async fn submit(&self, bytes: &[u8]) -> Result<[u8; 32], Rejection> {
        let inner = &self.inner;
        let (tx, membership, tx_check) = self.admit(bytes, false).await?;
        let id = tx.id().0;
        if inner.pending.lock().contains(&id) || located(&inner.store, &id)?.is_some() {
            return Err(Rejection::Replay(hex::encode(id)));
        }
        let result = self.execute(&tx, &membership)?;
        let result_digest = result.digest().0;
        let sig = inner
            .key
            .sign_digest(&result_digest)
            .map_err(|e| Rejection::Internal(e.to_string()))?;
        let endorsement_check = VerifyRequest::new(&inner.me_key, &sig, result_digest);
        let etx = EndorsedTx {
            tx,
            result,
            endorsements: vec![Endorsement {
                endorser: inner.me,
                sig: sig.into(),
            }],
        };
        let bytes = etx.encode();
        let leaf = merkle::leaf_hash(&bytes);
        // Claim the id before ordering, so a concurrent copy is a replay.
        if !inner.pending.lock().insert(id) {
            return Err(Rejection::Replay(hex::encode(id)));
        }
        if let Err(e) = inner.orderer.submit(Ordered {
            tx: etx,
            bytes,
            leaf,
        }) {
            inner.pending.lock().remove(&id);
            return Err(Rejection::Busy(e.to_string()));
        }
        // Validation will find the client signature's verdict, and the endorsement's checked
        // in the background meanwhile.
        inner.sigs.record(tx_check, true);
        inner.sigs.prefetch(vec![endorsement_check]);
        Ok(id)
    }

    /// Runs a signed transaction read-only on current state (reader role); returns the response.
    pub async fn query(&self, bytes: &[u8]) -> Result<Vec<u8>, Rejection> {
        let (tx, membership, _) = self.admit(bytes, true).await?;
        Ok(self.execute(&tx, &membership)?.response)
    }

    /// Decoding, channel, membership, role and signature checks of a submission.
    async fn admit(
        &self,
        bytes: &[u8],
        query: bool,
    ) -> Result<(Transaction, Arc<Membership>, VerifyRequest), Rejection> {
        let inner = &self.inner;
        let tx = Transaction::decode(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
        if tx.body.channel != inner.channel {
            return Err(Rejection::WrongChannel {
                got: tx.body.channel.clone(),
                expected: inner.channel.clone(),
            });
        }
        let membership = self.membership();
        let creator = tx.body.creator;
        let member = membership
            .member(creator)
            .ok_or(Rejection::UnknownMember(creator))?;
        let role = required_role(&tx, query);
        if !member.has(role) {
            return Err(Rejection::WrongRole {
                member: creator,
                role: role.name().to_string(),
            });
        }
        let key = member
            .public_key()
            .map_err(|e| Rejection::Internal(e.to_string()))?;
        let check = tx.verify_request(&key);
        let ok = inner
            .crypto
            .verify(&check)
            .await
            .map_err(|e| Rejection::Internal(e.to_string()))?;
        inner
            .counters
            .verifications
            .fetch_add(1, AtomicOrdering::Relaxed);
        if !ok {
            return Err(Rejection::BadSignature);
        }
        Ok((tx, membership, check))
    }

    /// Executes `tx` on current committed state: the execution result to endorse.
    fn execute(&self, tx: &Transaction, membership: &Membership) -> Result<ExecResult, Rejection> {
        let inner = &self.inner;
        let b = &tx.body;
        let tip = self.tip();
        let reader = NsReader {
            state: &inner.state,
            contract: &b.contract,
        };
        let get = |k: &[u8]| reader.get(k);
        let (version, outcome) = if system::is_system(&b.contract) {
            let r = match b.contract.as_str() {
                system::LIFECYCLE => {
                    let check = |code: &[u8]| {
                        inner
                            .contracts
                            .load(code)
                            .map(|_| ())
                            .map_err(|e| format!("the code does not load: {e}"))
                    };
                    system::lifecycle(&b.method, &b.args, &get, &check)
                }
                system::MEMBERSHIP => system::membership(&b.method, &b.args, &get),
                other => return Err(Rejection::UnknownContract(other.to_string())),
            };
            let o = r.map_err(Rejection::Reverted)?;
            (
                0,
                CallOutcome {
                    result: Ok(o.response),
                    gas_used: 0,
                    reads: o.reads,
                    writes: o.writes,
                    events: Vec::new(),
                },
            )
        } else {
            let (version, program) = self.program(&b.contract, b.contract_version)?;
            let creator = membership
                .member(b.creator)
                .ok_or(Rejection::UnknownMember(b.creator))?;
            let ctx = CallContext {
                channel: &inner.channel,
                contract: &b.contract,
                contract_version: version,
                caller_index: b.creator,
                caller_key: &creator.key,
                tx_id: tx.id().0,
                height: tip.height + 1,
                time_ms: (inner.clock)().max(tip.time_ms),
                method: &b.method,
                args: &b.args,
                gas_limit: GAS_LIMIT,
            };
            (version, inner.contracts.execute(&program, &ctx, &reader))
        };
        let response = outcome.result.map_err(Rejection::Reverted)?;
        let result = ExecResult {
            version: VERSION,
            tx_id: tx.id().0,
            contract_version: version,
            reads: outcome
                .reads
                .into_iter()
                .map(|(key, v)| Read {
                    key,
                    version: v.map(key_version),
                })
                .collect(),
            writes: outcome
                .writes
                .into_iter()
                .map(|(key, value)| Write { key, value })
                .collect(),
            response,
            events: outcome
                .events
                .into_iter()
                .map(|(name, data)| crate::format::Event { name, data })
                .collect(),
        };
        // The same limits a validator will apply to the endorsed transaction.
        let probe = EndorsedTx {
            tx: tx.clone(),
            result,
            endorsements: Vec::new(),
        };
        probe
            .validate()
            .map_err(|e| Rejection::Reverted(format!("result out of limits: {e}")))?;
        Ok(probe.result)
    }

    /// The program of `name` at `version` (or the active one).
    fn program(&self, name: &str, version: Option<u32>) -> Result<(u32, Arc<Program>), Rejection> {
        let inner = &self.inner;
        let lc = NsReader {
            state: &inner.state,
            contract: system::LIFECYCLE,
        };
        let internal = |e: String| Rejection::Internal(e);
        let meta: ContractMeta = match lc.get(&system::meta_key(name)).map_err(internal)? {
            Some((b, _)) => postcard::from_bytes(&b)
                .map_err(|e| Rejection::Internal(format!("deployment record: {e}")))?,
            None => return Err(Rejection::UnknownContract(name.to_string())),
        };
        let v = version.unwrap_or(meta.active);
        if v == 0 || v > meta.latest {
            return Err(Rejection::UnknownContract(format!(
                "{name} version {v} (installed: 1..={})",
                meta.latest
            )));
        }
        if let Some(p) = inner.programs.lock().get(&(name.to_string(), v)) {
            return Ok((v, p.clone()));
        }
        let code = match lc.get(&system::code_key(name, v)).map_err(internal)? {
            Some((b, _)) => b,
            None => return Err(Rejection::UnknownContract(format!("{name} version {v}"))),
        };
        let p = inner
            .contracts
            .load(&code)
            .map_err(|e| Rejection::Internal(format!("stored code of {name} v{v}: {e}")))?;
        inner
            .programs
            .lock()
            .insert((name.to_string(), v), p.clone());
        Ok((v, p))
    }

    /// Where a transaction is.
    pub fn status(&self, id: &[u8; 32]) -> Result<TxState, NodeError> {
        if let Some(p) = self.tx_proof(id)? {
            return Ok(TxState::Committed(p.receipt));
        }
        if self.inner.pending.lock().contains(id) {
            return Ok(TxState::Pending);
        }
        Ok(TxState::Unknown)
    }

    /// The lowest height above 0 whose block this node holds: blocks `1..base` were pruned or
    /// never fetched (the node started from a snapshot); 1 when it holds the whole chain.
    pub fn base(&self) -> Result<u64, NodeError> {
        Ok(self.inner.store.base()?)
    }

    /// The encoded block at `height`, once committed (stored and applied to state); `None` also
    /// for a height below [`Node::base`].
    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, NodeError> {
        if height > self.tip().height {
            return Ok(None);
        }
        Ok(self.inner.store.get_bytes(height)?)
    }

    /// A committed transaction with its receipt and inclusion proof. A block counts as
    /// committed once its writes are in the state too (the block store is written first), so
    /// a client that saw a receipt can rely on the state reflecting it.
    pub fn tx_proof(&self, id: &[u8; 32]) -> Result<Option<TxProof>, NodeError> {
        let Some((h, i)) = self.inner.store.locate(id)? else {
            return Ok(None);
        };
        if h > self.tip().height {
            return Ok(None);
        }
        let Some(block) = self.inner.store.get(h)? else {
            let base = self.inner.store.base()?;
            if h < base {
                return Err(NodeError::Pruned { height: h, base });
            }
            return Err(NodeError::Corrupt(format!(
                "index points at missing block {h}"
            )));
        };
        let leaves: Vec<Digest> = block
            .txs
            .iter()
            .map(|t| merkle::leaf_hash(&t.encode()))
            .collect();
        let path = merkle::proof(&leaves, i as usize)
            .ok_or_else(|| NodeError::Corrupt(format!("index {i} outside block {h}")))?;
        let tx = block
            .txs
            .get(i as usize)
            .cloned()
            .ok_or_else(|| NodeError::Corrupt(format!("index {i} outside block {h}")))?;
        let receipt = receipt(&block, i as usize);
        Ok(Some(TxProof {
            cert: block.cert,
            header: block.header,
            tx,
            receipt,
            block_txs: leaves.len() as u32,
            path: path.into_iter().map(|d| d.0).collect(),
        }))
    }

    /// Event records at or after `from`, up to `max_blocks` blocks of them, and the cursor to
    /// continue from. Only committed blocks are read, so a cursor never skips or repeats.
    pub fn events(
        &self,
        from: Cursor,
        max_blocks: u64,
    ) -> Result<(Vec<EventRecord>, Cursor), NodeError> {
        let tip = self.tip().height;
        let base = self.inner.store.base()?;
        if from.height > 0 && from.height < base {
            return Err(NodeError::Pruned {
                height: from.height,
                base,
            });
        }
        let mut out = Vec::new();
        let mut c = from;
        let end = tip.min(from.height.saturating_add(max_blocks.max(1) - 1));
        while c.height <= end {
            let Some(block) = self.inner.store.get(c.height)? else {
                break;
            };
            for (i, t) in block.txs.iter().enumerate().skip(c.index as usize) {
                if block.status[i] == TxStatus::Valid && !t.result.events.is_empty() {
                    out.push(EventRecord {
                        height: c.height,
                        index: i as u32,
                        tx_id: t.tx.id().0,
                        contract: t.tx.body.contract.clone(),
                        events: t.result.events.clone(),
                    });
                }
            }
            c = Cursor {
                height: c.height + 1,
                index: 0,
            };
        }
        Ok((out, c))
    }

    /// The member index of a public key.
    pub fn member_of(&self, key: &[u8]) -> Option<u32> {
        self.membership()
            .members
            .iter()
            .position(|m| m.key == key)
            .map(|i| i as u32)
    }

    /// The state service (for digests, snapshots and checks).
    pub fn state(&self) -> &StateService {
        &self.inner.state
    }
}

fn required_role(tx: &Transaction, query: bool) -> Role {
    if query {
        Role::Reader
    } else if system::is_system(&tx.body.contract) {
        Role::Admin
    } else {
        Role::Writer
    }
}

fn located(store: &BlockStore, id: &[u8; 32]) -> Result<Option<(u64, u32)>, Rejection> {
    store
        .locate(id)
        .map_err(|e| Rejection::Internal(e.to_string()))
}

fn key_version(v: StateVersion) -> KeyVersion {
    KeyVersion {
        height: v.height,
        index: v.index,
    }
}

/// Reads one namespace of the state service.
struct NsReader<'a> {
    state: &'a StateService,
    contract: &'a str,
}

impl StateReader for NsReader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, StateVersion)>, String> {
        self.state
            .get(self.contract, key)
            .map_err(|e| e.to_string())
    }
}

pub(crate) fn load_membership(state: &StateService) -> Result<Membership, NodeError> {
    let orgs = state
        .get(system::MEMBERSHIP, system::ORGS_KEY)?
        .map(|(b, _)| b);
    let rows = state.scan(
        system::MEMBERSHIP,
        system::MEMBER_PREFIX,
        crate::membership::MAX_MEMBERS,
    )?;
    system::membership_from_state(orgs, rows.into_iter().map(|(k, v, _)| (k, v)))
        .map_err(|e| NodeError::Corrupt(format!("membership: {e}")))
}

/// The receipt of transaction `i` of a committed block.
pub fn receipt(block: &Block, i: usize) -> Receipt {
    let t = &block.txs[i];
    Receipt {
        version: VERSION,
        tx_id: t.tx.id().0,
        height: block.header.height,
        index: i as u32,
        status: block.status[i],
        response: t.result.response.clone(),
        events: if block.status[i] == TxStatus::Valid {
            t.result.events.clone()
        } else {
            Vec::new()
        },
    }
}

/// Block 0: no transactions, anchored to the genesis by `prev_hash`.
pub fn genesis_block(g: &Genesis) -> Block {
    Block {
        header: BlockHeader {
            version: VERSION,
            channel: g.channel.clone(),
            height: 0,
            prev_hash: g.hash().0,
            tx_root: Block::tx_root(&[]).0,
            state_digest: [0; 32],
            time_ms: g.created_ms,
            proposer: 0,
        },
        txs: Vec::new(),
        status: Vec::new(),
        cert: Vec::new(),
    }
}

/// State writes of the genesis (height 0).
pub fn genesis_state(g: &Genesis) -> Vec<StateWrite> {
    system::genesis_writes(g)
        .into_iter()
        .map(|(contract, key, value)| StateWrite {
            contract,
            key,
            value: Some(value),
            version: StateVersion {
                height: 0,
                index: 0,
            },
        })
        .collect()
}

/// The state writes a validated block applies: the writes of its valid transactions, versioned
/// by (height, index).
pub fn block_writes(block: &Block) -> Vec<StateWrite> {
    let h = block.header.height;
    let mut out = Vec::new();
    for (i, t) in block.txs.iter().enumerate() {
        if block.status[i] != TxStatus::Valid {
            continue;
        }
        for w in &t.result.writes {
            out.push(StateWrite {
                contract: t.tx.body.contract.clone(),
                key: w.key.clone(),
                value: w.value.clone(),
                version: StateVersion {
                    height: h,
                    index: i as u32,
                },
            });
        }
    }
    out
}

/// Stores block 0 in an empty store; refuses a store of another genesis.
fn ensure_genesis_block(store: &BlockStore, g: &Genesis) -> Result<(), NodeError> {
    let g0 = genesis_block(g);
    if store.height()?.is_none() {
        store.append(0, &g0.encode(), &[])?;
    }
    let b0 = store
        .get(0)?
        .ok_or_else(|| NodeError::Corrupt("no block 0".into()))?;
    if b0.header.prev_hash != g0.header.prev_hash {
        return Err(NodeError::OtherGenesis {
            found: b0.header.channel,
            hash: hex::encode(b0.header.prev_hash),
        });
    }
    Ok(())
}

/// Fast sync of a node whose block store holds only the genesis (docs/consensus.md, "Fast sync
/// and pruning"): restores a peer's snapshot into `data_dir/state` and starts the block store
/// after it. Returns the block to commit first, or `None` when no peer offered a snapshot (the
/// node then catches up by blocks).
async fn fast_sync(
    data_dir: &std::path::Path,
    genesis: &Genesis,
    store: &Arc<BlockStore>,
    setup: &mut BftSetup,
) -> Result<Option<Block>, NodeError> {
    ensure_genesis_block(store, genesis)?;
    // A state with no block behind it: the genesis state, or one restored by a fast sync that
    // stopped before the block store recorded it. Either is rebuilt.
    let state_dir = data_dir.join("state");
    let db = state_dir.join(bpu_runtime::state::DB_FILE);
    if db.exists() {
        let height = StateService::open(&state_dir)?.height();
        if height.unwrap_or(0) > 0 {
            tracing::warn!(
                "{}: discarding a state at height {height:?} that no stored block backs (an interrupted fast sync)",
                genesis.channel
            );
        }
        std::fs::remove_file(&db)?;
    }
    let validators = genesis
        .membership
        .validator_set()
        .map_err(|e| crate::bft::BftError::Membership(e.to_string()))?;
    // The driver keeps admission current once it runs; until then, the genesis validators.
    *setup.admit.write() = crate::bft::validator_peers(&genesis.membership, &validators);
    let fs = FastSync {
        channel: &genesis.channel,
        genesis: &validators,
        checkpoint: setup.sync.checkpoint,
        data_dir,
        store: store.clone(),
        net: &setup.net,
    };
    Ok(fs.run(&mut setup.inbound).await?.map(|r| r.anchor))
}

/// The background snapshots and pruning, one job at a time, newest committed height first.
async fn housekeeping(inner: Arc<Inner>, mut hk: Housekeeping, mut rx: mpsc::Receiver<u64>) {
    while let Some(mut h) = rx.recv().await {
        while let Ok(x) = rx.try_recv() {
            h = h.max(x);
        }
        let i = inner.clone();
        let r = tokio::task::spawn_blocking(move || {
            hk.after_commit(&i.channel, h, &i.state, &i.store);
            hk
        })
        .await;
        match r {
            Ok(x) => hk = x,
            Err(e) => {
                tracing::error!(
                    "{}: the snapshot and pruning task failed ({e}); no more snapshots or pruning until restarted",
                    inner.channel
                );
                return;
            }
        }
    }
}

/// Brings state up to the block store and returns the tip.
fn recover(store: &BlockStore, state: &StateService, g: &Genesis) -> Result<Tip, NodeError> {
    ensure_genesis_block(store, g)?;
    let stored_tip = store.height()?.unwrap_or(0);
    if state.height().is_none() {
        let base = store.base()?;
        if base > 1 {
            return Err(NodeError::Corrupt(format!(
                "the block store starts at block {base} but the state is empty (a fast sync that stopped midway?): empty the data directory and start again"
            )));
        }
        state.commit(0, &genesis_state(g))?;
    }
    let applied = state.height().unwrap_or(0);
    if applied > stored_tip {
        return Err(NodeError::StateAhead {
            state: applied,
            blocks: stored_tip,
        });
    }
    let mut prev = store
        .header(applied)?
        .ok_or_else(|| NodeError::Corrupt(format!("no block {applied}")))?;
    for h in applied + 1..=stored_tip {
        let b = store
            .get(h)?
            .ok_or_else(|| NodeError::Corrupt(format!("no block {h}")))?;
        check_link(&prev, &b, state.digest())?;
        state.commit(h, &block_writes(&b))?;
        tracing::info!("recovery: applied block {h} to state");
        prev = b.header;
    }
    Ok(Tip {
        height: prev.height,
        hash: prev.hash().0,
        state_digest: state.digest(),
        time_ms: prev.time_ms,
    })
}

fn check_link(prev: &BlockHeader, b: &Block, digest: [u8; 32]) -> Result<(), NodeError> {
    let h = b.header.height;
    let broken = |what: &str| NodeError::BrokenChain {
        height: h,
        what: what.to_string(),
    };
    if h != prev.height + 1 {
        return Err(broken("height"));
    }
    if b.header.prev_hash != prev.hash().0 {
        return Err(broken("previous hash"));
    }
    if b.header.state_digest != digest {
        return Err(broken("state digest"));
    }
    Ok(())
}

/// Validates and commits blocks from the orderer, in order.
async fn commit_loop(inner: Arc<Inner>, mut blocks: mpsc::Receiver<Block>) {
    while let Some(mut block) = blocks.recv().await {
        let h = block.header.height;
        if let Err(e) = commit(&inner, &mut block).await {
            // A node that cannot commit must stop rather than diverge; restart recovers.
            tracing::error!("committing block {h} failed: {e}; the node stops committing");
            return;
        }
    }
}

async fn commit(inner: &Arc<Inner>, block: &mut Block) -> Result<(), NodeError> {
    let tip = *inner.tip.borrow();
    let prev_hash = tip.hash;
    let h = block.header.height;
    if h != tip.height + 1 || block.header.prev_hash != prev_hash {
        return Err(NodeError::BrokenChain {
            height: h,
            what: "the orderer's block does not extend the tip".into(),
        });
    }
    if block.header.state_digest != tip.state_digest {
        return Err(NodeError::BrokenChain {
            height: h,
            what: "state digest".into(),
        });
    }
    let membership = inner.membership.read().clone();
    let t0 = std::time::Instant::now();
    let ids: Vec<[u8; 32]> = block.txs.iter().map(|t| t.tx.id().0).collect();
    block.status = validate(inner, block, &ids, &membership).await?;
    let us = |t: std::time::Instant| t.elapsed().as_micros() as u64;
    inner
        .counters
        .validate_us
        .fetch_add(us(t0), AtomicOrdering::Relaxed);
    let bytes = block.encode();
    let writes = block_writes(block);
    let touches_membership = writes.iter().any(|w| w.contract == system::MEMBERSHIP);
    let inner2 = inner.clone();
    let ids2 = ids.clone();
    let size = bytes.len();
    let digest = tokio::task::spawn_blocking(move || -> Result<[u8; 32], NodeError> {
        let c = &inner2.counters;
        let t = std::time::Instant::now();
        inner2.store.append(h, &bytes, &ids2)?;
        c.store_us.fetch_add(us(t), AtomicOrdering::Relaxed);
        let t = std::time::Instant::now();
        let d = inner2.state.commit(h, &writes)?;
        c.state_us.fetch_add(us(t), AtomicOrdering::Relaxed);
        Ok(d)
    })
    .await
    .map_err(|e| NodeError::Corrupt(format!("commit task: {e}")))??;
    if touches_membership {
        let m = load_membership(&inner.state)?;
        *inner.membership.write() = Arc::new(m);
    }
    let valid = block
        .status
        .iter()
        .filter(|s| **s == TxStatus::Valid)
        .count();
    {
        let mut p = inner.pending.lock();
        for id in &ids {
            p.remove(id);
        }
    }
    let c = &inner.counters;
    c.committed_txs
        .fetch_add(block.txs.len() as u64, AtomicOrdering::Relaxed);
    c.valid_txs.fetch_add(valid as u64, AtomicOrdering::Relaxed);
    c.blocks.fetch_add(1, AtomicOrdering::Relaxed);
    let new_tip = Tip {
        height: h,
        hash: block.header.hash().0,
        state_digest: digest,
        time_ms: block.header.time_ms,
    };
    inner.tip.send_replace(new_tip);
    inner.orderer.committed(new_tip);
    if let Some(hk) = &inner.housekeeping {
        // Full means the worker is behind; it catches up from any later height.
        let _ = hk.try_send(h);
    }
    // Nobody listening is fine.
    let _ = inner.commits.send(Arc::new(Committed {
        height: h,
        ids,
        status: block.status.clone(),
        bytes: size,
    }));
    tracing::debug!("block {h}: {} transactions, {valid} valid", block.txs.len());
    Ok(())
}

/// A transaction's signature checks under `membership`: the client's, and each endorsement by
/// a validator with its endorser; `None` when the creator is unknown or its key unusable.
pub(crate) fn signature_checks(
    t: &EndorsedTx,
    membership: &Membership,
) -> Option<(VerifyRequest, Vec<(u32, VerifyRequest)>)> {
    let key = membership.member(t.tx.body.creator)?.public_key().ok()?;
    let own = t.tx.verify_request(&key);
    let digest = t.result.digest().0;
    let ends = t
        .endorsements
        .iter()
        .filter_map(|e| {
            let em = membership.member(e.endorser)?;
            if !em.has(Role::Validator) {
                return None;
            }
            let ek = em.public_key().ok()?;
            Some((e.endorser, VerifyRequest::new(&ek, &e.sig.into(), digest)))
        })
        .collect();
    Some((own, ends))
}

/// Where a transaction's signature checks sit in the block's verification batch: its own, and
/// (endorser, index) for each endorsement by a validator.
type SigChecks = (usize, Vec<(u32, usize)>);

/// Decides every transaction's status: membership and role, replay, signatures and the
/// endorsement policy (one batched verification for the whole block), then MVCC in block order.
async fn validate(
    inner: &Arc<Inner>,
    block: &Block,
    ids: &[[u8; 32]],
    membership: &Membership,
) -> Result<Vec<TxStatus>, NodeError> {
    let n = block.txs.len();
    let committed_before = inner.store.locate_many(ids)?;
    let mut status = vec![TxStatus::Pending; n];
    let mut reqs: Vec<VerifyRequest> = Vec::with_capacity(n * 2);
    let mut checks: Vec<Option<SigChecks>> = Vec::with_capacity(n);
    let mut seen = HashSet::with_capacity(n);
    for (i, t) in block.txs.iter().enumerate() {
        let b = &t.tx.body;
        let st = if b.channel != inner.channel {
            Some(TxStatus::WrongChannel)
        } else if !seen.insert(ids[i]) || committed_before[i].is_some() {
            Some(TxStatus::Replay)
        } else {
            match membership.member(b.creator) {
                None => Some(TxStatus::UnknownMember),
                Some(m) if !m.has(required_role(&t.tx, false)) => Some(TxStatus::WrongRole),
                Some(_) => match signature_checks(t, membership) {
                    None => Some(TxStatus::BadSignature),
                    Some((own, ends)) => {
                        let own_at = reqs.len();
                        reqs.push(own);
                        let mut at = Vec::with_capacity(ends.len());
                        for (endorser, r) in ends {
                            at.push((endorser, reqs.len()));
                            reqs.push(r);
                        }
                        checks.push(Some((own_at, at)));
                        None
                    }
                },
            }
        };
        if let Some(s) = st {
            status[i] = s;
            checks.push(None);
        }
    }
    let verdicts = inner.sigs.verdicts(&reqs).await?;
    let needed = inner.params.endorsements as usize;
    for (i, c) in checks.iter().enumerate() {
        let Some((own, ends)) = c else { continue };
        if !verdicts[*own] {
            status[i] = TxStatus::BadSignature;
            continue;
        }
        let endorsers: HashSet<u32> = ends
            .iter()
            .filter(|(_, k)| verdicts[*k])
            .map(|(e, _)| *e)
            .collect();
        if endorsers.len() < needed {
            status[i] = TxStatus::EndorsementPolicy;
        }
    }
    // MVCC: committed versions of every read (independent lookups, in parallel), then block
    // order decides conflicts with writes of earlier valid transactions.
    let lookups: Vec<(usize, String, Vec<u8>)> = block
        .txs
        .iter()
        .enumerate()
        .filter(|(i, _)| status[*i] == TxStatus::Pending)
        .flat_map(|(i, t)| {
            t.result
                .reads
                .iter()
                .map(move |r| (i, t.tx.body.contract.clone(), r.key.clone()))
        })
        .collect();
    let inner2 = inner.clone();
    let current = tokio::task::spawn_blocking(move || {
        use rayon::prelude::*;
        lookups
            .par_iter()
            .map(|(_, c, k)| {
                inner2
                    .state
                    .get(c, k)
                    .map(|v| v.map(|(_, ver)| key_version(ver)))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| NodeError::Corrupt(format!("validation task: {e}")))??;
    let mut cur = current.into_iter();
    let mut written: HashSet<(&str, &[u8])> = HashSet::new();
    for (i, t) in block.txs.iter().enumerate() {
        if status[i] != TxStatus::Pending {
            continue;
        }
        let contract = t.tx.body.contract.as_str();
        let mut ok = true;
        for r in &t.result.reads {
            let committed = cur.next().flatten();
            if committed != r.version || written.contains(&(contract, r.key.as_slice())) {
                ok = false;
            }
        }
        if ok {
            for w in &t.result.writes {
                written.insert((contract, w.key.as_slice()));
            }
            status[i] = TxStatus::Valid;
        } else {
            status[i] = TxStatus::MvccConflict;
        }
    }
    Ok(status)
}

/// Replays a chain from its genesis into a fresh state service and returns the final digest
/// (the check that a node's state is exactly its blocks).
pub fn replay_digest(
    genesis: &Genesis,
    blocks: &BlockStore,
    scratch: &std::path::Path,
) -> Result<[u8; 32], NodeError> {
    let state = StateService::open(scratch)?;
    let mut digest = state.commit(0, &genesis_state(genesis))?;
    let tip = blocks.height()?.unwrap_or(0);
    for h in 1..=tip {
        let b = blocks
            .get(h)?
            .ok_or_else(|| NodeError::Corrupt(format!("no block {h}")))?;
        if b.header.state_digest != digest {
            return Err(NodeError::BrokenChain {
                height: h,
                what: "state digest differs from the replay".into(),
            });
        }
        digest = state.commit(h, &block_writes(&b))?;
    }
    Ok(digest)
}
