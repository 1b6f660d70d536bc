//! BFT ordering: the Tendermint core of `bpu-consensus` driven over the node network, behind the
//! same [`Ordering`] interface as the solo orderer (theory of operation: docs/consensus.md,
//! "The driver").
//!
//! One task per channel owns everything: the mempool, the core of the height being decided, the
//! signed messages of that height, timers, the write-ahead log and block sync. It decides height
//! `tip + 1` only after `tip` is committed, so every proposal carries its parent's state digest
//! and every validator can judge it; a decided block leaves with its quorum certificate and the
//! next height starts when the commit is reported back.
//!
//! Inputs of the core are logged before the validator signs anything that depends on them
//! (`fsync`), so a restarted validator replays to the same state and re-sends the same votes
//! (BLS signatures are deterministic) instead of conflicting ones.

use crate::format::{Block, BlockHeader, TxStatus, Wire, VERSION};
use crate::membership::{Membership, Validators};
use crate::node::signature_checks;
use crate::order::{Clock, CutterConfig, OrderError, Ordered, Ordering, Tip};
use crate::p2p::{Admit, Inbound, Network, PeerId};
use crate::sigcache::SigCache;
use crate::snapshot::{SnapshotDir, SnapshotOffer, SyncOptions, CHUNK_BYTES};
use crate::wal::Wal;
use bpu_consensus::bls::VoteKind;
use bpu_consensus::bls::{proposal_message, BlsPublicKey, BlsSecretKey, BlsSignature, QuorumCert};
use bpu_consensus::core::{
    proposer, Action, BlockId, Config, Core, Proposal, Step, Timeouts, Vote,
};
use bpu_consensus::light::verify_commit;
use bpu_runtime::{merkle, CryptoService, Digest};
use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

/// How far in the future a proposal's block time may be, milliseconds.
pub const MAX_CLOCK_DRIFT_MS: u64 = 10_000;
/// Most blocks asked for in one sync request.
const SYNC_BATCH: u64 = 16;
/// Most bytes of blocks in one sync answer.
const SYNC_BYTES: usize = 16 << 20;
/// Most messages of later heights kept while this one is decided.
const FUTURE_MESSAGES: usize = 8192;
/// Most blocks received by sync kept ahead of the tip.
const SYNC_AHEAD: usize = 64;
/// Status and re-gossip period.
const TICK: Duration = Duration::from_millis(500);
/// How long a node deciding height h waits for its own decision before asking a peer that
/// already committed h for the block.
const SYNC_GRACE: Duration = Duration::from_secs(1);
/// A sync request unanswered this long is sent again (to another peer if there is one).
const SYNC_RETRY: Duration = Duration::from_secs(2);
/// Most inbound frames handled as one batch (their votes checked in parallel).
const FRAME_BATCH: usize = 512;
/// Most forwarded transactions in one frame.
const FORWARD_BATCH: usize = 1024;
/// Snapshot requests (offers, chunks) served at once; more are dropped (the asker retries).
const SNAPSHOT_SERVERS: usize = 4;
/// How often to repeat the error that every peer ahead pruned the blocks this node needs.
const PRUNED_WARN_EVERY: Duration = Duration::from_secs(10);

/// A proposal on the wire: the block travels with it, signed by the proposer's BLS key.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SignedProposal {
    pub height: u64,
    pub round: u32,
    pub valid_round: Option<u32>,
    /// Validator index of the proposer.
    pub proposer: u32,
    /// The encoded block (no certificate, statuses pending).
    pub block: Vec<u8>,
    pub sig: BlsSignature,
}

/// A vote on the wire.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub struct SignedVote {
    pub vote: Vote,
    pub sig: BlsSignature,
}

/// Messages between the consensus drivers of one channel (postcard; spec docs/consensus.md).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Message {
    /// Endorsed transactions a node took from its clients (encoded `EndorsedTx`), for every
    /// validator's mempool: whoever leads next has them.
    Txs(Vec<Vec<u8>>),
    Proposal(SignedProposal),
    Vote(SignedVote),
    /// The sender's committed tip, and the lowest height above 0 whose block it holds
    /// (blocks `1..base` are pruned or were never fetched).
    Status {
        height: u64,
        hash: [u8; 32],
        base: u64,
    },
    /// Asks for committed blocks `from..from + count`.
    GetBlocks {
        from: u64,
        count: u64,
    },
    /// Committed blocks with their certificates, ascending.
    Blocks(Vec<Vec<u8>>),
    /// Asks for the newest complete state snapshot, or the one of exactly `height` (fast sync
    /// with a trusted checkpoint).
    GetSnapshot {
        height: Option<u64>,
    },
    /// The answer to `GetSnapshot`: the offer, or `None` when the sender has none.
    Snapshot(Option<SnapshotOffer>),
    /// Asks for bytes `offset..offset + len` (`len` ≤ `snapshot::CHUNK_BYTES`) of the stream
    /// of snapshot `height`, inside one of its two parts.
    GetChunk {
        height: u64,
        offset: u64,
        len: u32,
    },
    /// The answer to `GetChunk`.
    Chunk {
        height: u64,
        offset: u64,
        data: Vec<u8>,
    },
}

/// A record of the write-ahead log.
#[derive(Serialize, Deserialize, Clone, Debug)]
enum WalEntry {
    /// The log is about this height from here on.
    Height(u64),
    Proposal(SignedProposal, bool),
    Vote(SignedVote),
    Timeout(u64, u32, Step),
}

/// Reads a committed block's encoding (with its certificate) by height.
pub type BlockReader = Arc<dyn Fn(u64) -> Option<Vec<u8>> + Send + Sync>;

/// What the BFT orderer needs besides the node's own parts.
pub struct BftSetup {
    pub net: Network,
    /// Frames of this channel from the network.
    pub inbound: mpsc::Receiver<Inbound>,
    /// The peers the network admits on this channel: kept equal to the validators' node keys.
    pub admit: Admit,
    /// Round-0 timeouts; `None` derives them from the channel's block timeout.
    pub timeouts: Option<Timeouts>,
    /// Snapshots, pruning and fast sync (all off by default).
    pub sync: SyncOptions,
}

/// The parts of the node the orderer works with.
pub struct BftContext {
    pub channel: String,
    /// This node's P-256 key (SEC1), naming it in the membership.
    pub me_key: [u8; 65],
    /// This node's BLS key (derived from its P-256 key, `membership::derive_bls`).
    pub bls: BlsSecretKey,
    pub crypto: CryptoService,
    pub clock: Clock,
    pub cutter: CutterConfig,
    pub membership: Arc<RwLock<Arc<Membership>>>,
    pub blocks: BlockReader,
    /// The lowest height above 0 whose block the node holds (reported in `Status`).
    pub base: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The node's snapshots, served to fast-syncing peers (`None`: answers "no snapshot").
    pub snapshots: Option<SnapshotDir>,
    /// A certified block to commit first (the anchor of a snapshot the node started from).
    pub synced: Option<Block>,
    /// The write-ahead log file.
    pub wal: PathBuf,
    /// The node's signature cache: a block's transactions are checked in the background
    /// from its proposal on, so validation at commit finds the verdicts.
    pub sigs: Arc<SigCache>,
}

/// Why the BFT orderer could not start.
#[derive(Debug, thiserror::Error)]
pub enum BftError {
    #[error("membership: {0}")]
    Membership(String),
    #[error("write-ahead log {path}: {source}")]
    Wal {
        path: String,
        source: std::io::Error,
    },
}

/// The BFT orderer's handle (the driver task runs on its own).
pub struct BftOrderer {
    task: tokio::task::AbortHandle,
    submit: mpsc::Sender<Ordered>,
    tip: watch::Sender<Tip>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl Ordering for BftOrderer {
    fn submit(&self, tx: Ordered) -> Result<(), OrderError> {
        if self.queued.load(AtomicOrdering::Relaxed) >= self.capacity {
            return Err(OrderError::Busy(self.capacity));
        }
        self.submit.try_send(tx).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OrderError::Busy(self.capacity),
            mpsc::error::TrySendError::Closed(_) => OrderError::Stopped,
        })
    }

    fn committed(&self, tip: Tip) {
        self.tip.send_replace(tip);
    }

    fn queued(&self) -> usize {
        self.queued.load(AtomicOrdering::Relaxed)
    }

    fn halt(&self) {
        self.task.abort();
    }
}

/// Round-0 timeouts for a channel whose block cutter waits `block_timeout`: the proposer may
/// wait that long for its block to fill, so the others wait a second more for its proposal.
pub fn default_timeouts(block_timeout: Duration) -> Timeouts {
    Timeouts {
        propose_ms: block_timeout.as_millis() as u64 + 1_000,
        prevote_ms: 500,
        precommit_ms: 500,
    }
}

impl BftOrderer {
    /// Starts the driver task on the current tokio runtime; decided and synced blocks go to
    /// `out` in height order, after `tip`.
    pub fn start(
        ctx: BftContext,
        setup: BftSetup,
        tip: Tip,
        out: mpsc::Sender<Block>,
    ) -> Result<Arc<BftOrderer>, BftError> {
        let membership = ctx.membership.read().clone();
        let validators = membership
            .validator_set()
            .map_err(|e| BftError::Membership(e.to_string()))?;
        let wal_err = |source| BftError::Wal {
            path: ctx.wal.display().to_string(),
            source,
        };
        let (wal, records) = Wal::<WalEntry>::open(&ctx.wal).map_err(wal_err)?;
        let capacity = ctx.cutter.queue.max(1);
        let (submit_tx, submit_rx) = mpsc::channel(capacity);
        let (tip_tx, tip_rx) = watch::channel(tip);
        let queued = Arc::new(AtomicUsize::new(0));
        let timeouts = setup
            .timeouts
            .unwrap_or_else(|| default_timeouts(ctx.cutter.timeout));
        let mut d = Driver {
            channel: ctx.channel,
            me_key: ctx.me_key,
            bls: ctx.bls,
            net: setup.net,
            admit: setup.admit,
            crypto: ctx.crypto,
            clock: ctx.clock,
            cutter: ctx.cutter,
            timeouts,
            membership_src: ctx.membership,
            membership,
            validators,
            blocks: ctx.blocks,
            sigs: ctx.sigs,
            base: ctx.base,
            snapshots: ctx.snapshots,
            serving: Arc::new(Semaphore::new(SNAPSHOT_SERVERS)),
            out,
            tip,
            awaiting: None,
            h: None,
            future: Vec::new(),
            timers: Vec::new(),
            mempool: Mempool::new(queued.clone()),
            forward: Vec::new(),
            wal,
            wal_path: ctx.wal,
            sync: SyncState::default(),
            vote_verdicts: HashMap::new(),
            quiet_ticks: 0,
            progress: (0, 0, Step::Propose),
        };
        d.refresh_admit();
        if let Some(b) = ctx.synced {
            d.sync.ahead.insert(b.header.height, b);
        }
        let task = tokio::spawn(async move {
            d.replay(records);
            d.apply_synced().await;
            d.run(submit_rx, tip_rx, setup.inbound).await;
        })
        .abort_handle();
        Ok(Arc::new(BftOrderer {
            task,
            submit: submit_tx,
            tip: tip_tx,
            queued,
            capacity,
        }))
    }
}

/// Transactions waiting for a block, oldest first.
struct Mempool {
    txs: VecDeque<(Ordered, [u8; 32], Instant)>,
    ids: HashSet<[u8; 32]>,
    bytes: usize,
    count: Arc<AtomicUsize>,
}

impl Mempool {
    fn new(count: Arc<AtomicUsize>) -> Mempool {
        Mempool {
            txs: VecDeque::new(),
            ids: HashSet::new(),
            bytes: 0,
            count,
        }
    }

    fn len(&self) -> usize {
        self.txs.len()
    }

    /// Adds a transaction unless it is held already.
    fn push(&mut self, o: Ordered) -> bool {
        let id = o.tx.tx.id().0;
        if !self.ids.insert(id) {
            return false;
        }
        self.bytes += o.bytes.len();
        self.txs.push_back((o, id, Instant::now()));
        self.count.store(self.txs.len(), AtomicOrdering::Relaxed);
        true
    }

    /// Drops the transactions a committed block holds.
    fn remove(&mut self, ids: &HashSet<[u8; 32]>) {
        if ids.is_empty() {
            return;
        }
        let mut gone = 0;
        self.txs.retain(|(o, id, _)| {
            let keep = !ids.contains(id);
            if !keep {
                gone += o.bytes.len();
            }
            keep
        });
        self.bytes -= gone;
        self.ids.retain(|id| !ids.contains(id));
        self.count.store(self.txs.len(), AtomicOrdering::Relaxed);
    }

    /// When the oldest transaction arrived.
    fn oldest(&self) -> Option<Instant> {
        self.txs.front().map(|t| t.2)
    }

    /// Whether a block of `cutter`'s limits is full already.
    fn full(&self, cutter: &CutterConfig) -> bool {
        self.txs.len() >= cutter.max_txs || self.bytes >= cutter.max_bytes
    }

    /// The next block's transactions (kept until committed).
    fn take(&self, cutter: &CutterConfig) -> Vec<&Ordered> {
        let mut bytes = 0;
        let mut out = Vec::new();
        for (o, _, _) in &self.txs {
            if out.len() >= cutter.max_txs || bytes + o.bytes.len() > cutter.max_bytes {
                break;
            }
            bytes += o.bytes.len();
            out.push(o);
        }
        out
    }
}

/// Block sync state.
#[derive(Default)]
struct SyncState {
    /// Outstanding request: when, to whom, from which height.
    asked: Option<(Instant, PeerId, u64)>,
    /// Tips peers reported, with their base (lowest block above 0 they hold).
    peers: HashMap<PeerId, (u64, u64)>,
    /// When the "every peer pruned what this node needs" error was last logged.
    pruned_warned: Option<Instant>,
    /// Certified blocks received ahead of the tip, by height.
    ahead: BTreeMap<u64, Block>,
    /// Since when peers have been one block ahead of the height this node decides.
    behind_since: Option<(u64, Instant)>,
}

/// The height being decided.
struct HeightState {
    height: u64,
    core: Core,
    /// Proposals held, by block id: the signed message and the decoded block.
    proposals: HashMap<BlockId, (SignedProposal, Block)>,
    /// Signed votes held, by (round, kind, voter): one, or two from an equivocator.
    votes: HashMap<(u32, VoteKind, u32), Vec<SignedVote>>,
    /// A proposal to build when the mempool fills or the deadline passes: (round, deadline).
    to_build: Option<(u32, Instant)>,
    /// Rounds this validator proposed in (from the log after a restart).
    proposed: HashSet<u32>,
}

struct Driver {
    channel: String,
    me_key: [u8; 65],
    bls: BlsSecretKey,
    net: Network,
    admit: Admit,
    crypto: CryptoService,
    clock: Clock,
    cutter: CutterConfig,
    timeouts: Timeouts,
    membership_src: Arc<RwLock<Arc<Membership>>>,
    membership: Arc<Membership>,
    validators: Validators,
    blocks: BlockReader,
    sigs: Arc<SigCache>,
    base: Arc<dyn Fn() -> u64 + Send + Sync>,
    snapshots: Option<SnapshotDir>,
    /// Bounds the snapshot requests served at once.
    serving: Arc<Semaphore>,
    out: mpsc::Sender<Block>,
    tip: Tip,
    /// Height of the block sent to the committer and not yet reported committed.
    awaiting: Option<u64>,
    h: Option<HeightState>,
    /// Messages of later heights, replayed when their height starts.
    future: Vec<(PeerId, Message)>,
    timers: Vec<(Instant, u64, u32, Step)>,
    mempool: Mempool,
    /// Local transactions to forward to the other validators.
    forward: Vec<Vec<u8>>,
    wal: Wal<WalEntry>,
    wal_path: PathBuf,
    sync: SyncState,
    /// Vote signature verdicts of the frame batch being handled (see `on_frames`).
    vote_verdicts: HashMap<(Vote, [u8; 96]), bool>,
    quiet_ticks: u32,
    progress: (u64, u32, Step),
}

impl Driver {
    /// This validator's index in the set, if it is one.
    fn me(&self) -> Option<u32> {
        let me = self
            .membership
            .members
            .iter()
            .position(|m| m.key.as_slice() == self.me_key)? as u32;
        self.validators.index_of(me)
    }

    fn n(&self) -> u32 {
        self.validators.set.len() as u32
    }

    fn next_height(&self) -> u64 {
        self.awaiting.unwrap_or(self.tip.height) + 1
    }

    async fn run(
        mut self,
        mut submit: mpsc::Receiver<Ordered>,
        mut tips: watch::Receiver<Tip>,
        mut inbound: mpsc::Receiver<Inbound>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.next_wake();
            tokio::select! {
                t = submit.recv() => match t {
                    Some(t) => {
                        self.forward.push(t.bytes.clone());
                        self.mempool.push(t);
                        // Take what else is queued in one go.
                        while let Ok(t) = submit.try_recv() {
                            self.forward.push(t.bytes.clone());
                            self.mempool.push(t);
                        }
                    }
                    None => return,
                },
                r = tips.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let t = *tips.borrow_and_update();
                    self.on_committed(t).await;
                }
                m = inbound.recv() => match m {
                    Some(m) => {
                        // Take what else has arrived, so its votes are checked together.
                        let mut frames = vec![m];
                        while frames.len() < FRAME_BATCH {
                            match inbound.try_recv() {
                                Ok(m) => frames.push(m),
                                Err(_) => break,
                            }
                        }
                        self.on_frames(frames).await;
                    }
                    None => return,
                },
                _ = sleep_until(wake) => self.on_wake().await,
                _ = tick.tick() => self.on_tick(),
            }
            self.flush_forward();
            self.maybe_start().await;
            self.maybe_build().await;
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let t = self.timers.iter().map(|t| t.0).min();
        let b = self.h.as_ref().and_then(|h| h.to_build.map(|(_, d)| d));
        match (t, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Heights.

    /// Starts deciding `tip + 1` when there is something to decide: transactions, or messages
    /// of that height from other validators.
    async fn maybe_start(&mut self) {
        if self.h.is_some() || self.awaiting.is_some() {
            return;
        }
        let height = self.tip.height + 1;
        let others = self
            .future
            .iter()
            .any(|(_, m)| msg_height(m) == Some(height));
        if self.mempool.len() == 0 && !others {
            return;
        }
        if let Err(e) = self.wal.reset(&WalEntry::Height(height)) {
            self.wal_failed(e);
            return;
        }
        self.start_core(height, HashSet::new());
        let msgs: Vec<(PeerId, Message)> = std::mem::take(&mut self.future);
        for (peer, m) in msgs {
            match msg_height(&m) {
                Some(h) if h == height => self.on_message(peer, m).await,
                Some(h) if h > height => self.future.push((peer, m)),
                _ => {}
            }
        }
    }

    fn start_core(&mut self, height: u64, proposed: HashSet<u32>) {
        let cfg = Config {
            n: self.n(),
            me: self.me(),
            timeouts: self.timeouts,
        };
        let (core, actions) = Core::new(cfg, height);
        self.timers.clear();
        self.h = Some(HeightState {
            height,
            core,
            proposals: HashMap::new(),
            votes: HashMap::new(),
            to_build: None,
            proposed,
        });
        tracing::debug!("{}: deciding height {height}", self.channel);
        self.apply(actions, true);
    }

    /// Replays the write-ahead log of the height after the tip, if it is that height's.
    fn replay(&mut self, records: Vec<WalEntry>) {
        let mut it = records.into_iter();
        let Some(WalEntry::Height(h)) = it.next() else {
            return;
        };
        if h != self.tip.height + 1 {
            return;
        }
        let rest: Vec<WalEntry> = it.collect();
        let me = self.me();
        let proposed: HashSet<u32> = rest
            .iter()
            .filter_map(|e| match e {
                WalEntry::Proposal(p, _) if Some(p.proposer) == me => Some(p.round),
                _ => None,
            })
            .collect();
        tracing::info!(
            "{}: replaying {} logged consensus inputs of height {h}",
            self.channel,
            rest.len()
        );
        self.start_core(h, proposed);
        for e in rest {
            if self.h.is_none() {
                break;
            }
            match e {
                WalEntry::Height(_) => {}
                WalEntry::Proposal(p, valid) => {
                    if let Ok(block) = Block::decode(&p.block) {
                        self.accept_proposal(p, block, valid, false);
                    }
                }
                WalEntry::Vote(v) => self.accept_vote(v, false),
                WalEntry::Timeout(h, r, s) => {
                    if let Some(hs) = self.h.as_mut() {
                        let a = hs.core.on_timeout(h, r, s);
                        self.apply(a, false);
                    }
                }
            }
        }
    }

    async fn on_committed(&mut self, t: Tip) {
        if t.height <= self.tip.height && self.awaiting.is_none() {
            return;
        }
        self.tip = t;
        if self.awaiting.is_some_and(|a| a <= t.height) {
            self.awaiting = None;
        }
        if self.h.as_ref().is_some_and(|h| h.height <= t.height) {
            self.h = None;
            self.timers.clear();
        }
        // Membership may have changed with this block; the set only if a validator did.
        let m = self.membership_src.read().clone();
        if !Arc::ptr_eq(&m, &self.membership) {
            let same = validator_keys(&m) == validator_keys(&self.membership);
            self.membership = m;
            if !same {
                match self.membership.validator_set() {
                    Ok(v) => {
                        self.validators = v;
                        tracing::info!(
                            "{}: validator set from height {}: {} validators",
                            self.channel,
                            t.height + 1,
                            self.n()
                        );
                    }
                    Err(e) => tracing::error!(
                        "{}: the membership after height {} has no usable validator set: {e}",
                        self.channel,
                        t.height
                    ),
                }
            }
            self.refresh_admit();
        }
        self.sync.ahead.retain(|&h, _| h > t.height);
        self.broadcast(&self.status());
        self.apply_synced().await;
    }

    /// Emits the next certified block to the committer.
    fn emit(&mut self, block: Block) {
        let h = block.header.height;
        let ids: HashSet<[u8; 32]> = block.txs.iter().map(|t| t.tx.id().0).collect();
        self.mempool.remove(&ids);
        self.awaiting = Some(h);
        if self.h.as_ref().is_some_and(|s| s.height <= h) {
            self.h = None;
            self.timers.clear();
        }
        if let Err(e) = self.out.try_send(block) {
            tracing::error!(
                "{}: the committer did not take block {h}: {e}",
                self.channel
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Core actions.

    /// Carries out the core's actions; `live` signs and logs, a replay only re-sends.
    fn apply(&mut self, actions: Vec<Action>, live: bool) {
        let mut q: VecDeque<Action> = actions.into();
        while let Some(a) = q.pop_front() {
            let Some(hs) = self.h.as_mut() else { return };
            match a {
                Action::Propose {
                    height,
                    round,
                    block,
                    valid_round,
                } => {
                    if hs.proposed.contains(&round) {
                        continue;
                    }
                    match block {
                        None => {
                            let wait = self
                                .mempool
                                .oldest()
                                .map(|t| t + self.cutter.timeout)
                                .unwrap_or_else(|| Instant::now() + self.cutter.timeout);
                            hs.to_build = Some((round, wait.max(Instant::now())));
                        }
                        Some(id) => {
                            let Some((_, b)) = hs.proposals.get(&id) else {
                                tracing::error!(
                                    "{}: cannot re-propose block {} at {height}/{round}: not held",
                                    self.channel,
                                    short(&id)
                                );
                                continue;
                            };
                            let b = b.clone();
                            if let Some(more) = self.propose(height, round, valid_round, b, live) {
                                q.extend(more);
                            }
                        }
                    }
                }
                Action::Vote(v) => {
                    let sig = self
                        .bls
                        .sign_vote(&self.channel, v.height, v.round, v.kind, v.block);
                    let sv = SignedVote { vote: v, sig };
                    if live {
                        if let Err(e) = self
                            .wal
                            .append(&WalEntry::Vote(sv))
                            .and_then(|_| self.wal.sync())
                        {
                            self.wal_failed(e);
                            return;
                        }
                    }
                    self.broadcast(&Message::Vote(sv));
                    let Some(hs) = self.h.as_mut() else { return };
                    let e = hs.votes.entry((v.round, v.kind, v.voter)).or_default();
                    if !e.iter().any(|x| x.vote == v) {
                        e.push(sv);
                    }
                    q.extend(hs.core.on_vote(v));
                }
                Action::Timeout {
                    height,
                    round,
                    step,
                    after_ms,
                } => {
                    let at = Instant::now() + Duration::from_millis(after_ms);
                    self.timers.push((at, height, round, step));
                }
                Action::Decide {
                    height,
                    round,
                    block,
                    precommits,
                } => {
                    self.decide(height, round, block, &precommits);
                    return;
                }
                Action::Equivocation { first, second } => {
                    let who = self.validators.member(first.voter);
                    tracing::warn!(
                        "{}: validator {} (member {who:?}) equivocated at height {} round {}: {:?} {} and {}",
                        self.channel,
                        first.voter,
                        first.height,
                        first.round,
                        first.kind,
                        opt_short(&first.block),
                        opt_short(&second.block)
                    );
                }
            }
        }
    }

    /// Signs, logs and sends a proposal, and hands it to the own core.
    fn propose(
        &mut self,
        height: u64,
        round: u32,
        valid_round: Option<u32>,
        block: Block,
        live: bool,
    ) -> Option<Vec<Action>> {
        let me = self.me()?;
        let id = block.header.hash().0;
        let sig = self.bls.sign(&proposal_message(
            &self.channel,
            height,
            round,
            valid_round,
            &id,
        ));
        let sp = SignedProposal {
            height,
            round,
            valid_round,
            proposer: me,
            block: block.encode(),
            sig,
        };
        if live {
            if let Err(e) = self
                .wal
                .append(&WalEntry::Proposal(sp.clone(), true))
                .and_then(|_| self.wal.sync())
            {
                self.wal_failed(e);
                return None;
            }
        }
        tracing::debug!(
            "{}: proposing block {} at {height}/{round} with {} transactions",
            self.channel,
            short(&id),
            block.txs.len()
        );
        self.broadcast(&Message::Proposal(sp.clone()));
        let hs = self.h.as_mut()?;
        hs.proposed.insert(round);
        hs.proposals.insert(id, (sp, block));
        Some(hs.core.on_proposal(
            Proposal {
                height,
                round,
                block: id,
                valid_round,
                proposer: me,
            },
            true,
        ))
    }

    /// Builds this validator's block once the mempool fills or the cutter's wait is over.
    async fn maybe_build(&mut self) {
        let Some(hs) = self.h.as_ref() else { return };
        let Some((round, deadline)) = hs.to_build else {
            return;
        };
        if Instant::now() < deadline && !self.mempool.full(&self.cutter) {
            return;
        }
        let height = hs.height;
        if hs.core.round() != round {
            if let Some(hs) = self.h.as_mut() {
                hs.to_build = None;
            }
            return;
        }
        let picked: Vec<Ordered> = self
            .mempool
            .take(&self.cutter)
            .into_iter()
            .cloned()
            .collect();
        let leaves: Vec<Digest> = picked.iter().map(|o| o.leaf).collect();
        let root = match self.crypto.merkle_root(&leaves).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{}: computing a transaction root failed: {e}", self.channel);
                return;
            }
        };
        let Some(me) = self.me().and_then(|i| self.validators.member(i)) else {
            return;
        };
        self.prefetch(picked.iter().map(|o| &o.tx));
        let n = picked.len();
        let block = Block {
            header: BlockHeader {
                version: VERSION,
                channel: self.channel.clone(),
                height,
                prev_hash: self.tip.hash,
                tx_root: root.0,
                state_digest: self.tip.state_digest,
                time_ms: (self.clock)().max(self.tip.time_ms),
                proposer: me,
            },
            txs: picked.into_iter().map(|o| o.tx).collect(),
            status: vec![TxStatus::Pending; n],
            cert: Vec::new(),
        };
        let Some(hs) = self.h.as_mut() else { return };
        if hs.height != height || hs.to_build.map(|t| t.0) != Some(round) {
            return;
        }
        hs.to_build = None;
        if let Some(a) = self.propose(height, round, None, block, true) {
            self.apply(a, true);
        }
    }

    /// Turns a decision into a certified block for the committer.
    fn decide(&mut self, height: u64, round: u32, id: BlockId, precommits: &[u32]) {
        let Some(hs) = self.h.as_ref() else { return };
        let Some((_, block)) = hs.proposals.get(&id) else {
            // The core decides only on a held, valid proposal; keep the height frozen (never
            // vote on it again) and let sync bring the certified block.
            tracing::error!(
                "{}: decided block {} at {height} is not held; waiting for it from peers",
                self.channel,
                short(&id)
            );
            return;
        };
        let mut signers = vec![0u8; self.validators.set.bitmap_len()];
        let mut sigs = Vec::with_capacity(precommits.len());
        for &v in precommits {
            let Some(sv) = hs
                .votes
                .get(&(round, VoteKind::Precommit, v))
                .and_then(|vs| vs.iter().find(|sv| sv.vote.block == Some(id)))
            else {
                continue;
            };
            signers[v as usize / 8] |= 1 << (v % 8);
            sigs.push(sv.sig);
        }
        let Some(signature) = BlsSignature::aggregate(&sigs) else {
            tracing::error!("{}: no precommits to certify height {height}", self.channel);
            return;
        };
        let qc = QuorumCert {
            set_id: self.validators.set.id(),
            height,
            round,
            kind: VoteKind::Precommit,
            block: Some(id),
            signers,
            signature,
        };
        if let Err(e) = qc.verify(&self.channel, &self.validators.set) {
            tracing::error!(
                "{}: the certificate of height {height} does not verify ({e}); not committing it",
                self.channel
            );
            return;
        }
        let mut block = block.clone();
        block.cert = qc.to_bytes();
        tracing::debug!(
            "{}: decided height {height} in round {round}: block {} with {} transactions",
            self.channel,
            short(&id),
            block.txs.len()
        );
        self.emit(block);
    }

    // -----------------------------------------------------------------------------------------
    // Messages.

    /// Handles frames in arrival order; the vote signatures of the height being decided are
    /// checked first, in parallel on the blocking pool (one pairing check each).
    async fn on_frames(&mut self, frames: Vec<Inbound>) {
        let mut msgs = Vec::with_capacity(frames.len());
        for f in frames {
            match postcard::from_bytes::<Message>(&f.bytes) {
                Ok(m) => msgs.push((f.peer, m)),
                Err(e) => tracing::warn!(
                    "{}: undecodable frame of {} bytes from {:?}: {e}",
                    self.channel,
                    f.bytes.len(),
                    f.peer
                ),
            }
        }
        if let Some(height) = self.h.as_ref().map(|h| h.height) {
            let jobs: Vec<(Vote, BlsSignature, BlsPublicKey)> = msgs
                .iter()
                .filter_map(|(_, m)| match m {
                    Message::Vote(sv) if sv.vote.height == height => self
                        .validators
                        .set
                        .key(sv.vote.voter)
                        .map(|k| (sv.vote, sv.sig, *k)),
                    _ => None,
                })
                .collect();
            if jobs.len() >= 2 {
                let channel = self.channel.clone();
                let checked = tokio::task::spawn_blocking(move || {
                    use rayon::prelude::*;
                    jobs.into_par_iter()
                        .map(|(v, sig, key)| {
                            let msg = bpu_consensus::bls::vote_message(
                                &channel, v.height, v.round, v.kind, v.block,
                            );
                            ((v, sig.to_bytes()), key.verify(&msg, &sig))
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                if let Ok(c) = checked {
                    self.vote_verdicts.extend(c);
                }
            }
        }
        for (peer, m) in msgs {
            self.on_message(peer, m).await;
        }
        self.vote_verdicts.clear();
    }

    async fn on_message(&mut self, peer: PeerId, m: Message) {
        match m {
            Message::Txs(txs) => self.on_txs(peer, txs),
            Message::Status { height, hash, base } => self.on_status(peer, height, hash, base),
            Message::GetBlocks { from, count } => self.on_get_blocks(peer, from, count),
            Message::Blocks(blocks) => self.on_blocks(peer, blocks).await,
            Message::GetSnapshot { height } => self.on_get_snapshot(peer, height),
            Message::GetChunk {
                height,
                offset,
                len,
            } => self.on_get_chunk(peer, height, offset, len),
            // Answers for a fast sync, which runs before the driver starts: late ones.
            Message::Snapshot(_) | Message::Chunk { .. } => {}
            Message::Proposal(_) | Message::Vote(_) => {
                let Some(height) = msg_height(&m) else { return };
                let current = self.h.as_ref().map(|h| h.height);
                if current == Some(height) {
                    match m {
                        Message::Proposal(p) => self.on_proposal(peer, p),
                        Message::Vote(v) => self.on_vote(peer, v),
                        _ => {}
                    }
                } else if height >= self.next_height() && self.future.len() < FUTURE_MESSAGES {
                    self.future.push((peer, m));
                }
            }
        }
    }

    fn on_txs(&mut self, peer: PeerId, txs: Vec<Vec<u8>>) {
        for bytes in txs {
            match crate::format::EndorsedTx::decode(&bytes) {
                Ok(tx) if tx.tx.body.channel == self.channel => {
                    if self.mempool.len() >= self.cutter.queue {
                        tracing::warn!(
                            "{}: mempool full ({} transactions); dropping forwarded ones",
                            self.channel,
                            self.mempool.len()
                        );
                        break;
                    }
                    let leaf = merkle::leaf_hash(&bytes);
                    self.mempool.push(Ordered { tx, bytes, leaf });
                }
                Ok(_) => tracing::warn!(
                    "{}: {peer:?} forwarded a transaction of another channel",
                    self.channel
                ),
                Err(e) => {
                    tracing::warn!(
                        "{}: {peer:?} forwarded a malformed transaction: {e}",
                        self.channel
                    )
                }
            }
        }
    }

    /// Starts checking the signatures of a block's transactions in the node's signature cache
    /// (what is cached already is skipped), so validation at commit finds the verdicts. Only
    /// the block being decided: checking every forwarded transaction ahead would make each
    /// commit wait for transactions of later blocks.
    fn prefetch<'a>(&self, txs: impl Iterator<Item = &'a crate::format::EndorsedTx>) {
        let mut checks = Vec::new();
        for t in txs {
            if let Some((own, ends)) = signature_checks(t, &self.membership) {
                checks.push(own);
                checks.extend(ends.into_iter().map(|(_, r)| r));
            }
        }
        if !checks.is_empty() {
            self.sigs.prefetch(checks);
        }
    }

    fn on_proposal(&mut self, peer: PeerId, p: SignedProposal) {
        let n = self.n();
        let want = proposer(n, p.height, p.round);
        if p.proposer != want {
            tracing::warn!(
                "{}: rejected a proposal for {}/{} from validator {} (via {peer:?}): the proposer of that round is validator {want}",
                self.channel,
                p.height,
                p.round,
                p.proposer
            );
            return;
        }
        let block = match Block::decode(&p.block) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    "{}: rejected a proposal for {}/{} from validator {}: its block does not decode: {e}",
                    self.channel,
                    p.height,
                    p.round,
                    p.proposer
                );
                return;
            }
        };
        let id = block.header.hash().0;
        if self.h.as_ref().is_some_and(|h| {
            h.proposals
                .get(&id)
                .is_some_and(|(q, _)| same_proposal(q, &p))
        }) {
            return;
        }
        let ok = self.validators.set.key(p.proposer).is_some_and(|k| {
            k.verify(
                &proposal_message(&self.channel, p.height, p.round, p.valid_round, &id),
                &p.sig,
            )
        });
        if !ok {
            tracing::warn!(
                "{}: rejected a proposal for {}/{} claiming validator {} (via {peer:?}): forged signature",
                self.channel,
                p.height,
                p.round,
                p.proposer
            );
            return;
        }
        let valid = match self.check_block(&block, p.proposer) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(
                    "{}: the proposal of validator {} for {}/{} is invalid ({why}); voting nil",
                    self.channel,
                    p.proposer,
                    p.height,
                    p.round
                );
                false
            }
        };
        if valid {
            self.prefetch(block.txs.iter());
        }
        self.accept_proposal(p, block, valid, true);
    }

    /// Hands a checked proposal to the core (and logs it when `live`).
    fn accept_proposal(&mut self, p: SignedProposal, block: Block, valid: bool, live: bool) {
        let id = block.header.hash().0;
        if live {
            if let Err(e) = self.wal.append(&WalEntry::Proposal(p.clone(), valid)) {
                self.wal_failed(e);
                return;
            }
        }
        let Some(hs) = self.h.as_mut() else { return };
        let prop = Proposal {
            height: p.height,
            round: p.round,
            block: id,
            valid_round: p.valid_round,
            proposer: p.proposer,
        };
        hs.proposals.entry(id).or_insert((p, block));
        let a = hs.core.on_proposal(prop, valid);
        self.apply(a, live);
    }

    /// Why a proposed block cannot be the next block (its transactions are judged at commit).
    fn check_block(&self, b: &Block, proposer_index: u32) -> Result<(), String> {
        let h = &b.header;
        let want_height = self.tip.height + 1;
        if h.channel != self.channel {
            return Err(format!("channel {:?}", h.channel));
        }
        if h.height != want_height {
            return Err(format!("height {} (expected {want_height})", h.height));
        }
        if h.prev_hash != self.tip.hash {
            return Err("it does not extend the committed tip".into());
        }
        if h.state_digest != self.tip.state_digest {
            return Err("its state digest differs from the committed state".into());
        }
        if self.validators.member(proposer_index) != Some(h.proposer) {
            return Err(format!(
                "the header names member {} as proposer",
                h.proposer
            ));
        }
        if h.time_ms < self.tip.time_ms {
            return Err("its time is before its parent's".into());
        }
        let now = (self.clock)();
        if h.time_ms > now + MAX_CLOCK_DRIFT_MS {
            return Err(format!(
                "its time is {} ms ahead of this node's clock",
                h.time_ms - now
            ));
        }
        if b.txs.len() > self.cutter.max_txs {
            return Err(format!(
                "{} transactions (limit {})",
                b.txs.len(),
                self.cutter.max_txs
            ));
        }
        if !b.cert.is_empty() || b.status.iter().any(|s| *s != TxStatus::Pending) {
            return Err("it carries a certificate or statuses".into());
        }
        Ok(())
    }

    fn on_vote(&mut self, peer: PeerId, sv: SignedVote) {
        let v = sv.vote;
        if self.h.as_ref().is_some_and(|h| {
            h.votes
                .get(&(v.round, v.kind, v.voter))
                .is_some_and(|vs| vs.iter().any(|x| x.vote == v))
        }) {
            return;
        }
        let Some(key) = self.validators.set.key(v.voter) else {
            tracing::warn!(
                "{}: rejected a vote from unknown validator {} (via {peer:?}; {} validators)",
                self.channel,
                v.voter,
                self.n()
            );
            return;
        };
        let ok = match self.vote_verdicts.get(&(v, sv.sig.to_bytes())) {
            Some(&ok) => ok,
            None => {
                let msg = bpu_consensus::bls::vote_message(
                    &self.channel,
                    v.height,
                    v.round,
                    v.kind,
                    v.block,
                );
                key.verify(&msg, &sv.sig)
            }
        };
        if !ok {
            tracing::warn!(
                "{}: rejected a forged {:?} for {}/{} claiming validator {} (via {peer:?})",
                self.channel,
                v.kind,
                v.height,
                v.round,
                v.voter
            );
            return;
        }
        if let Err(e) = self.wal.append(&WalEntry::Vote(sv)) {
            self.wal_failed(e);
            return;
        }
        self.accept_vote(sv, true);
    }

    fn accept_vote(&mut self, sv: SignedVote, live: bool) {
        let Some(hs) = self.h.as_mut() else { return };
        let v = sv.vote;
        let e = hs.votes.entry((v.round, v.kind, v.voter)).or_default();
        if e.iter().any(|x| x.vote == v) || e.len() >= 2 {
            return;
        }
        e.push(sv);
        let a = hs.core.on_vote(v);
        self.apply(a, live);
    }

    fn on_status(&mut self, peer: PeerId, height: u64, hash: [u8; 32], base: u64) {
        if height == self.tip.height && hash != self.tip.hash {
            tracing::error!(
                "{}: {peer:?} committed block {} at height {height}, this node {}: a fork (more than f validators are faulty)",
                self.channel,
                short(&hash),
                short(&self.tip.hash)
            );
        }
        self.sync.peers.insert(peer, (height, base.max(1)));
        self.request_sync();
    }

    /// Asks a peer that is ahead, and still holds the blocks after the tip, for them.
    fn request_sync(&mut self) {
        let from = self.next_height();
        let ahead = self
            .sync
            .peers
            .iter()
            .filter(|(_, &(h, _))| h >= from)
            .map(|(p, &(h, base))| (*p, h, base))
            .collect::<Vec<_>>();
        let best = ahead
            .iter()
            .filter(|(_, _, base)| *base <= from)
            .map(|&(p, h, _)| (p, h))
            .collect::<Vec<_>>();
        if best.is_empty() {
            let now = Instant::now();
            let lowest = ahead.iter().map(|a| a.2).min();
            if let Some(lowest) = lowest {
                if self
                    .sync
                    .pruned_warned
                    .is_none_or(|t| now >= t + PRUNED_WARN_EVERY)
                {
                    self.sync.pruned_warned = Some(now);
                    tracing::error!(
                        "{}: this node needs block {from}, but every peer ahead pruned it (the lowest block they hold is {lowest}): restart this node with fast sync on an empty data directory, or connect a peer that keeps the blocks",
                        self.channel
                    );
                }
            }
            return;
        }
        let now = Instant::now();
        // Peers just one block ahead while this node decides that very height: its own
        // decision is usually a moment away, so it asks only if that does not come soon.
        let deciding = self.h.as_ref().is_some_and(|h| h.height == from);
        if deciding && best.iter().all(|&(_, h)| h == from) {
            match self.sync.behind_since {
                Some((f, t)) if f == from => {
                    if now < t + SYNC_GRACE {
                        return;
                    }
                }
                _ => {
                    self.sync.behind_since = Some((from, now));
                    return;
                }
            }
        }
        if let Some((at, _, f)) = self.sync.asked {
            if f == from && now < at + SYNC_RETRY {
                return;
            }
        }
        // A different peer from the last one when retrying.
        let last = self.sync.asked.map(|a| a.1);
        let pick = best
            .iter()
            .find(|(p, _)| Some(*p) != last)
            .or(best.first())
            .copied();
        let Some((peer, h)) = pick else { return };
        let count = (h + 1 - from).min(SYNC_BATCH);
        let sent = self.net.send(
            &self.channel,
            peer,
            encode(&Message::GetBlocks { from, count }),
        );
        if sent {
            tracing::debug!(
                "{}: asking {peer:?} for blocks {from}..{}",
                self.channel,
                from + count
            );
            self.sync.asked = Some((now, peer, from));
        }
    }

    fn on_get_blocks(&mut self, peer: PeerId, from: u64, count: u64) {
        if from > 0 && from <= self.tip.height && from < (self.base)() {
            // Pruned (or never fetched): tell the asker what this node holds, so it moves on.
            tracing::debug!(
                "{}: {peer:?} asked for block {from}, which this node does not hold",
                self.channel
            );
            self.net.send(&self.channel, peer, encode(&self.status()));
            return;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for h in from..from.saturating_add(count.min(SYNC_BATCH)) {
            let Some(b) = (self.blocks)(h) else { break };
            bytes += b.len();
            out.push(b);
            if bytes >= SYNC_BYTES {
                break;
            }
        }
        if !out.is_empty() {
            self.net
                .send(&self.channel, peer, encode(&Message::Blocks(out)));
        }
    }

    async fn on_blocks(&mut self, peer: PeerId, blocks: Vec<Vec<u8>>) {
        for bytes in blocks {
            match Block::decode(&bytes) {
                Ok(b)
                    if b.header.height > self.tip.height && self.sync.ahead.len() < SYNC_AHEAD =>
                {
                    self.sync.ahead.entry(b.header.height).or_insert(b);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("{}: {peer:?} sent an undecodable block: {e}", self.channel)
                }
            }
        }
        self.sync.asked = None;
        self.apply_synced().await;
    }

    /// Commits the next synced block if its certificate holds.
    async fn apply_synced(&mut self) {
        if self.awaiting.is_some() {
            return;
        }
        let next = self.tip.height + 1;
        let Some(b) = self.sync.ahead.remove(&next) else {
            return;
        };
        let hash = b.header.hash().0;
        let why = if b.header.prev_hash != self.tip.hash {
            Some("it does not extend this node's tip".to_string())
        } else if b.header.state_digest != self.tip.state_digest {
            Some("its state digest differs from this node's state".to_string())
        } else {
            verify_commit(&self.channel, next, &hash, &b.cert, &self.validators.set)
                .err()
                .map(|e| e.to_string())
        };
        if let Some(why) = why {
            tracing::warn!(
                "{}: rejected synced block {next} ({}): {why}",
                self.channel,
                short(&hash)
            );
            return;
        }
        tracing::info!("{}: catching up: block {next} certified", self.channel);
        self.emit(b);
    }

    // -----------------------------------------------------------------------------------------
    // Timers and ticks.

    async fn on_wake(&mut self) {
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = self.timers.drain(..).partition(|t| t.0 <= now);
        self.timers = rest;
        for (_, h, r, s) in due {
            let Some(hs) = self.h.as_mut() else { return };
            if hs.height != h {
                continue;
            }
            if let Err(e) = self.wal.append(&WalEntry::Timeout(h, r, s)) {
                self.wal_failed(e);
                return;
            }
            let Some(hs) = self.h.as_mut() else { return };
            let a = hs.core.on_timeout(h, r, s);
            self.apply(a, true);
        }
    }

    fn on_tick(&mut self) {
        self.broadcast(&self.status());
        self.request_sync();
        // No progress for a while: send every message of this height again (a reconnected
        // or healed peer may have missed them).
        let Some(hs) = self.h.as_ref() else {
            self.quiet_ticks = 0;
            return;
        };
        let now = (hs.height, hs.core.round(), hs.core.step());
        if now != self.progress {
            self.progress = now;
            self.quiet_ticks = 0;
            return;
        }
        self.quiet_ticks += 1;
        if self.quiet_ticks % 2 != 0 {
            return;
        }
        let mut msgs: Vec<Message> = hs
            .proposals
            .values()
            .map(|(p, _)| Message::Proposal(p.clone()))
            .collect();
        msgs.extend(hs.votes.values().flatten().map(|v| Message::Vote(*v)));
        for m in msgs {
            self.broadcast(&m);
        }
    }

    /// Answers a fast-syncing peer with this node's newest (or the named) snapshot, read off
    /// the driver task.
    fn on_get_snapshot(&mut self, peer: PeerId, height: Option<u64>) {
        let Some(dir) = self.snapshots.clone() else {
            self.net
                .send(&self.channel, peer, encode(&Message::Snapshot(None)));
            return;
        };
        let channel = self.channel.clone();
        self.serve_blocking(peer, move || match dir.offer(height) {
            Ok(o) => Some(Message::Snapshot(o)),
            Err(e) => {
                tracing::warn!("{channel}: cannot offer a snapshot: {e}");
                Some(Message::Snapshot(None))
            }
        });
    }

    /// Sends a chunk of a snapshot, read off the driver task.
    fn on_get_chunk(&mut self, peer: PeerId, height: u64, offset: u64, len: u32) {
        let Some(dir) = self.snapshots.clone() else {
            return;
        };
        if len == 0 || len > CHUNK_BYTES {
            tracing::warn!(
                "{}: {peer:?} asked for a chunk of {len} bytes (limit {CHUNK_BYTES})",
                self.channel
            );
            return;
        }
        let channel = self.channel.clone();
        self.serve_blocking(peer, move || match dir.read_chunk(height, offset, len) {
            Ok(data) => Some(Message::Chunk {
                height,
                offset,
                data,
            }),
            Err(e) => {
                tracing::debug!("{channel}: not serving a chunk to {peer:?}: {e}");
                None
            }
        });
    }

    /// Answers `peer` with what `work` (file reads) returns, on the blocking pool, at most
    /// `SNAPSHOT_SERVERS` at a time (beyond that the request is dropped; the asker retries).
    fn serve_blocking<F>(&self, peer: PeerId, work: F)
    where
        F: FnOnce() -> Option<Message> + Send + 'static,
    {
        let Ok(permit) = self.serving.clone().try_acquire_owned() else {
            return;
        };
        let net = self.net.clone();
        let channel = self.channel.clone();
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(work).await {
                Ok(Some(m)) => {
                    net.send(&channel, peer, encode(&m));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("{channel}: snapshot serving task: {e}"),
            }
            drop(permit);
        });
    }

    // -----------------------------------------------------------------------------------------
    // Helpers.

    fn status(&self) -> Message {
        Message::Status {
            height: self.tip.height,
            hash: self.tip.hash,
            base: (self.base)(),
        }
    }

    fn broadcast(&self, m: &Message) {
        self.net.broadcast(&self.channel, encode(m));
    }

    fn flush_forward(&mut self) {
        while !self.forward.is_empty() {
            let n = self.forward.len().min(FORWARD_BATCH);
            let batch: Vec<Vec<u8>> = self.forward.drain(..n).collect();
            self.broadcast(&Message::Txs(batch));
        }
    }

    /// Keeps the network's admission list equal to the validators' node keys.
    fn refresh_admit(&self) {
        *self.admit.write() = validator_peers(&self.membership, &self.validators);
    }

    fn wal_failed(&mut self, e: std::io::Error) {
        // Signing without a durable log could equivocate after a crash: stop voting instead.
        tracing::error!(
            "{}: the consensus log {} failed ({e}); this validator stops voting until restarted",
            self.channel,
            self.wal_path.display()
        );
        self.h = None;
        self.timers.clear();
    }
}

/// A validator's membership index, node key and BLS key.
type ValidatorEntry<'a> = (u32, &'a [u8], Option<[u8; 48]>);

/// The validators' entries, which fix the validator set.
fn validator_keys(m: &Membership) -> Vec<ValidatorEntry<'_>> {
    m.with_role(crate::membership::Role::Validator)
        .into_iter()
        .filter_map(|i| {
            m.member(i)
                .map(|x| (i, x.key.as_slice(), x.bls.map(|b| b.key.to_bytes())))
        })
        .collect()
}

/// The node keys of the validators: whom the network admits on the channel.
pub fn validator_peers(membership: &Membership, validators: &Validators) -> HashSet<PeerId> {
    validators
        .members
        .iter()
        .filter_map(|&i| membership.member(i))
        .filter_map(|m| <[u8; 65]>::try_from(m.key.as_slice()).ok())
        .map(PeerId)
        .collect()
}

fn encode(m: &Message) -> Bytes {
    Bytes::from(postcard::to_allocvec(m).unwrap_or_default())
}

fn msg_height(m: &Message) -> Option<u64> {
    match m {
        Message::Proposal(p) => Some(p.height),
        Message::Vote(v) => Some(v.vote.height),
        _ => None,
    }
}

fn same_proposal(a: &SignedProposal, b: &SignedProposal) -> bool {
    (a.height, a.round, a.valid_round, a.proposer) == (b.height, b.round, b.valid_round, b.proposer)
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn short(h: &[u8; 32]) -> String {
    hex::encode(&h[..6])
}

fn opt_short(h: &Option<[u8; 32]>) -> String {
    h.as_ref().map_or("nil".into(), short)
}
