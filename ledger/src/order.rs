//! Ordering: the interface between endorsement and validation, and the solo orderer with its
//! block cutter (count, bytes, time). The BFT consensus implements the same [`Ordering`] trait.
//!
//! Contract of an orderer: it takes endorsed transactions ([`Ordering::submit`]), and emits
//! blocks on the channel given at start, in height order, each extending the tip the committer
//! last reported ([`Ordering::committed`]) and carrying the state digest after that tip. A block
//! is emitted only after the previous one is committed, so every header certifies the state of
//! its parent; meanwhile new transactions keep queueing and the next block takes them all.

use crate::format::{Block, BlockHeader, EndorsedTx, TxStatus, VERSION};
use crate::membership::ChannelParams;
use bpu_runtime::{CryptoService, Digest};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// The last committed block, as the committer reports it to the orderer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    pub height: u64,
    pub hash: [u8; 32],
    /// State digest after `height`.
    pub state_digest: [u8; 32],
    pub time_ms: u64,
}

/// An endorsed transaction on its way to ordering, with its encoding (the block's bytes and
/// Merkle leaf) computed once at submission.
#[derive(Clone, Debug)]
pub struct Ordered {
    pub tx: EndorsedTx,
    pub bytes: Vec<u8>,
    /// RFC 6962 leaf hash of `bytes`.
    pub leaf: Digest,
}

/// Why the orderer did not take a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the ordering queue is full ({0} transactions); retry later")]
    Busy(usize),
    #[error("the orderer has stopped")]
    Stopped,
}

/// An ordering service (solo now, BFT later).
pub trait Ordering: Send + Sync {
    /// Queues a transaction for the next blocks.
    fn submit(&self, tx: Ordered) -> Result<(), OrderError>;
    /// Tells the orderer that the block at `tip.height` is committed.
    fn committed(&self, tip: Tip);
    /// Transactions queued and not yet in an emitted block.
    fn queued(&self) -> usize;
    /// Stops the orderer's tasks at once, as a crash would (used by [`crate::node::Node::halt`]).
    fn halt(&self) {}
}

/// Block cutter settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutterConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Most transactions waiting for ordering; more are refused with [`OrderError::Busy`].
    pub queue: usize,
}

impl CutterConfig {
    /// The channel's cutter limits, with a queue of a few blocks.
    pub fn from_params(p: &ChannelParams) -> CutterConfig {
        CutterConfig {
            max_txs: p.block_max_txs as usize,
            max_bytes: p.block_max_bytes as usize,
            timeout: Duration::from_millis(u64::from(p.block_timeout_ms)),
            queue: (p.block_max_txs as usize).saturating_mul(4).max(1024),
        }
    }
}

/// Where block times come from: milliseconds since the Unix epoch ([`now_ms`] normally; tests
/// inject a fixed clock to make blocks reproducible).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

/// The single orderer: one node cuts blocks from its queue.
pub struct SoloOrderer {
    tx: mpsc::Sender<Ordered>,
    tip: watch::Sender<Tip>,
    capacity: usize,
}

impl SoloOrderer {
    /// Starts the cutter task on the current tokio runtime. Blocks go to `out`; `proposer` is
    /// this node's membership index; `crypto` computes the transaction roots.
    pub fn start(
        channel: String,
        proposer: u32,
        cfg: CutterConfig,
        tip: Tip,
        crypto: CryptoService,
        clock: Clock,
        out: mpsc::Sender<Block>,
    ) -> Arc<SoloOrderer> {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (tip_tx, tip_rx) = watch::channel(tip);
        tokio::spawn(cutter(
            channel, proposer, cfg, rx, tip_rx, crypto, clock, out,
        ));
        Arc::new(SoloOrderer {
            tx,
            tip: tip_tx,
            capacity: cfg.queue.max(1),
        })
    }
}

impl Ordering for SoloOrderer {
    fn submit(&self, tx: Ordered) -> Result<(), OrderError> {
        self.tx.try_send(tx).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OrderError::Busy(self.capacity),
            mpsc::error::TrySendError::Closed(_) => OrderError::Stopped,
        })
    }

    fn committed(&self, tip: Tip) {
        self.tip.send_replace(tip);
    }

    fn queued(&self) -> usize {
        self.capacity - self.tx.capacity()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[allow(clippy::too_many_arguments)]
async fn cutter(
    channel: String,
    proposer: u32,
    cfg: CutterConfig,
    mut rx: mpsc::Receiver<Ordered>,
    mut tip_rx: watch::Receiver<Tip>,
    crypto: CryptoService,
    clock: Clock,
    out: mpsc::Sender<Block>,
) {
    let mut carry: Option<Ordered> = None;
    // Height of the last block sent out; the next is cut once the tip reaches it.
    let mut last_emitted: Option<u64> = None;
    loop {
        // The first transaction of the next block starts its clock.
        let first = match carry.take() {
            Some(t) => t,
            None => match rx.recv().await {
                Some(t) => t,
                None => return,
            },
        };
        let deadline = tokio::time::Instant::now() + cfg.timeout;
        let mut bytes = first.bytes.len();
        let mut batch = vec![first];
        // Fill until a limit or the deadline.
        while batch.len() < cfg.max_txs && bytes < cfg.max_bytes {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(t)) => {
                    if bytes + t.bytes.len() > cfg.max_bytes {
                        carry = Some(t);
                        break;
                    }
                    bytes += t.bytes.len();
                    batch.push(t);
                }
                Ok(None) | Err(_) => break,
            }
        }
        // Wait until the block before is committed: the header carries its state digest.
        let tip = loop {
            let t = *tip_rx.borrow_and_update();
            if last_emitted.is_none_or(|e| t.height >= e) {
                break t;
            }
            if tip_rx.changed().await.is_err() {
                return;
            }
        };
        let leaves: Vec<Digest> = batch.iter().map(|o| o.leaf).collect();
        let root = match crypto.merkle_root(&leaves).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("orderer: computing the transaction root failed: {e}");
                return;
            }
        };
        let n = batch.len();
        let header = BlockHeader {
            version: VERSION,
            channel: channel.clone(),
            height: tip.height + 1,
            prev_hash: tip.hash,
            tx_root: root.0,
            state_digest: tip.state_digest,
            time_ms: clock().max(tip.time_ms),
            proposer,
        };
        let block = Block {
            header,
            txs: batch.into_iter().map(|o| o.tx).collect(),
            status: vec![TxStatus::Pending; n],
            cert: Vec::new(),
        };
        last_emitted = Some(tip.height + 1);
        if out.send(block).await.is_err() {
            return;
        }
    }
}
