//! Fast sync: a node whose data directory holds only the genesis starts from a peer's state
//! snapshot instead of replaying every block (protocol and trust model: docs/consensus.md,
//! "Fast sync and pruning").
//!
//! Steps: ask every peer for its newest snapshot (or the one a trusted checkpoint names); check
//! each offer's anchor (block `s + 1`, whose header carries the state digest after `s`) against
//! the genesis validator set or the checkpoint; fetch the stream in chunks from peers with the
//! same offer (another peer on timeout or a bad chunk); restore the state with
//! `restore_snapshot_expecting(s, anchor.state_digest)`; check the restored membership's
//! validator set; start the block store at `s + 1` with the transaction index. The anchor is
//! then committed like any synced block, and the node follows by blocks and consensus.

use crate::bft::Message;
use crate::format::{Block, BlockHeader, Wire};
use crate::membership::Validators;
use crate::p2p::{Inbound, Network, PeerId};
use crate::snapshot::{Checkpoint, SnapshotOffer, CHUNK_BYTES};
use crate::store::{read_index, BlockStore, StoreError};
use bpu_consensus::bls::QuorumCert;
use bpu_consensus::light::{verify_commit, LightError};
use bpu_runtime::state::{StateError, StateService, DB_FILE};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long to wait for a usable offer before falling back to catch-up by blocks.
pub const OFFER_WAIT: Duration = Duration::from_secs(30);
/// How often to ask the peers again while waiting for offers.
const ASK_EVERY: Duration = Duration::from_secs(1);
/// After the first usable offer, how long to wait for better ones.
const OFFER_GRACE: Duration = Duration::from_millis(500);
/// A chunk not received this long after asking is asked for again, from another peer.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunk requests in flight.
const WINDOW: usize = 4;
/// Downloads (with verification) tried before giving up.
pub const MAX_ATTEMPTS: u32 = 4;
/// Sanity bound on an offered stream (1 TiB).
const MAX_STREAM: u64 = 1 << 40;
/// Smallest state snapshot (header 64 bytes, trailer 40) and index file (header 28, trailer 32).
const MIN_STATE: u64 = 104;
const MIN_INDEX: u64 = 60;

/// Why fast sync could not start the node.
#[derive(Debug, thiserror::Error)]
pub enum FastSyncError {
    #[error("fast sync: {peers} peers offer snapshots certified by validator set {set}, not the genesis set: the membership has changed, and a set that has since left could sign a false history (long-range attack). Give a trusted checkpoint (the height and hash of a recent block, from an operator you trust), or start without fast sync to verify every block from the genesis")]
    NeedsCheckpoint { set: String, peers: usize },
    #[error("fast sync: the restored state at height {height} has validator set {found}, but its anchor was trusted through set {trusted}; the snapshot is inconsistent with the chain: give a trusted checkpoint or start without fast sync")]
    SetMismatch {
        height: u64,
        found: String,
        trusted: String,
    },
    #[error("fast sync: the trusted checkpoint names height {0}; it must name a block above 1 (the anchor of a snapshot)")]
    BadCheckpoint(u64),
    #[error("fast sync failed {attempts} times (last: {last}); check the peers, or start without fast sync to catch up by blocks")]
    Failed { attempts: u32, last: String },
    #[error("fast sync: the network stopped")]
    NetworkClosed,
    #[error("fast sync: {path}: {source} (check the disk, free space and permissions)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fast sync: {0}")]
    State(#[from] StateError),
    #[error("fast sync: {0}")]
    Store(#[from] StoreError),
    #[error("fast sync: {0}")]
    Internal(String),
}

/// Why an offer was refused (logged; the node asks elsewhere).
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("it is malformed: {0}")]
    Malformed(String),
    #[error("its anchor certificate names validator set {0}, not the genesis set (the membership changed: a trusted checkpoint is needed)")]
    OtherSet(String),
    #[error("its anchor certificate does not verify against the genesis validator set: {0}")]
    Cert(#[from] LightError),
    #[error("its anchor is block {height} {hash}, not the trusted checkpoint")]
    NotCheckpoint { height: u64, hash: String },
}

/// An offer that passed [`check_offer`].
#[derive(Clone, Debug)]
pub struct CheckedOffer {
    pub offer: SnapshotOffer,
    pub header: BlockHeader,
    pub anchor: Block,
}

/// What a node trusts an anchor with.
pub enum Trust<'a> {
    /// A quorum of the genesis validator set must certify the anchor.
    Genesis(&'a Validators),
    /// The anchor must be exactly this block.
    Checkpoint(Checkpoint),
}

/// Checks an offer before anything is fetched: the anchor decodes strictly and is block
/// `height + 1` of `channel`; the header is block `height` and the anchor's parent; sizes are
/// plausible; the anchor is the checkpoint, or its certificate verifies against the genesis set.
pub fn check_offer(
    channel: &str,
    offer: &SnapshotOffer,
    trust: &Trust,
) -> Result<CheckedOffer, OfferError> {
    let bad = |s: String| OfferError::Malformed(s);
    let anchor = Block::decode(&offer.anchor).map_err(|e| bad(format!("the anchor block: {e}")))?;
    let header: BlockHeader =
        postcard::from_bytes(&offer.header).map_err(|e| bad(format!("the header: {e}")))?;
    let s = offer.height;
    if s == 0 {
        return Err(bad("a snapshot of height 0 (the genesis)".into()));
    }
    if anchor.header.height != s + 1 || header.height != s {
        return Err(bad(format!(
            "heights {} and {} for a snapshot at {s}",
            header.height, anchor.header.height
        )));
    }
    if anchor.header.channel != channel || header.channel != channel {
        return Err(bad("another channel".into()));
    }
    if header.hash().0 != anchor.header.prev_hash {
        return Err(bad("the header is not the anchor's parent".into()));
    }
    if offer.state_bytes < MIN_STATE
        || offer.index_bytes < MIN_INDEX
        || offer.state_bytes.saturating_add(offer.index_bytes) > MAX_STREAM
    {
        return Err(bad(format!(
            "sizes {} + {} bytes",
            offer.state_bytes, offer.index_bytes
        )));
    }
    let hash = anchor.header.hash().0;
    match trust {
        Trust::Checkpoint(cp) => {
            if cp.height != s + 1 || cp.hash != hash {
                return Err(OfferError::NotCheckpoint {
                    height: s + 1,
                    hash: hex::encode(hash),
                });
            }
        }
        Trust::Genesis(v) => {
            let qc = QuorumCert::from_bytes(&anchor.cert).map_err(LightError::from)?;
            if qc.set_id != v.set.id() {
                return Err(OfferError::OtherSet(hex::encode(&qc.set_id[..8])));
            }
            verify_commit(channel, s + 1, &hash, &anchor.cert, &v.set)?;
        }
    }
    Ok(CheckedOffer {
        offer: offer.clone(),
        header,
        anchor,
    })
}

/// What fast sync needs from the starting node.
pub(crate) struct FastSync<'a> {
    pub channel: &'a str,
    /// The validator set of the genesis membership.
    pub genesis: &'a Validators,
    pub checkpoint: Option<Checkpoint>,
    pub data_dir: &'a Path,
    pub store: Arc<BlockStore>,
    pub net: &'a Network,
}

/// The outcome: the state is restored, the block store starts after it, and `anchor` is the
/// next block to commit.
pub(crate) struct Restored {
    pub anchor: Block,
}

/// An attempt's failure: the peers' fault (try again elsewhere) or this node's (stop).
enum AttemptError {
    Peers(String),
    Fatal(FastSyncError),
}

impl FastSync<'_> {
    fn send(&self, peer: PeerId, m: &Message) -> bool {
        self.net.send(self.channel, peer, encode(m))
    }

    /// Runs fast sync. `Ok(None)`: no peer offered a usable snapshot in time; the node catches
    /// up by blocks instead.
    pub(crate) async fn run(
        &self,
        inbound: &mut mpsc::Receiver<Inbound>,
    ) -> Result<Option<Restored>, FastSyncError> {
        if let Some(cp) = self.checkpoint {
            if cp.height < 2 {
                return Err(FastSyncError::BadCheckpoint(cp.height));
            }
        }
        let mut failed: HashMap<PeerId, u32> = HashMap::new();
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let Some((best, sources)) = self.discover(inbound, &failed).await? else {
                tracing::warn!(
                    "{}: fast sync: no peer offered a usable snapshot within {:?}; catching up by blocks",
                    self.channel,
                    OFFER_WAIT
                );
                return Ok(None);
            };
            let s = best.offer.height;
            tracing::info!(
                "{}: fast sync: fetching the snapshot after block {s} ({} + {} bytes) from {} peers (attempt {attempt})",
                self.channel,
                best.offer.state_bytes,
                best.offer.index_bytes,
                sources.len()
            );
            let (e, contributors) = match self.download(inbound, &best, sources).await {
                Ok(contributors) => match self.install(&best).await {
                    Ok(r) => return Ok(Some(r)),
                    Err(e) => (e, contributors),
                },
                Err(x) => x,
            };
            match e {
                AttemptError::Fatal(e) => return Err(e),
                AttemptError::Peers(why) => {
                    tracing::warn!(
                        "{}: fast sync: refused the snapshot after block {s} from {}: {why}; trying again",
                        self.channel,
                        contributors
                            .iter()
                            .map(|p| p.short())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    for p in contributors {
                        *failed.entry(p).or_default() += 1;
                    }
                    last = why;
                }
            }
        }
        Err(FastSyncError::Failed {
            attempts: MAX_ATTEMPTS,
            last,
        })
    }

    /// Asks every peer for a snapshot until a usable offer arrives (then a short grace for
    /// better ones); returns the best offer and the peers that made it, fewest failures first.
    async fn discover(
        &self,
        inbound: &mut mpsc::Receiver<Inbound>,
        failed: &HashMap<PeerId, u32>,
    ) -> Result<Option<(CheckedOffer, Vec<PeerId>)>, FastSyncError> {
        let trust = match self.checkpoint {
            Some(cp) => Trust::Checkpoint(cp),
            None => Trust::Genesis(self.genesis),
        };
        let want = self.checkpoint.map(|cp| cp.height - 1);
        let f = self.genesis.set.max_faulty();
        let deadline = Instant::now() + OFFER_WAIT;
        let mut offers: HashMap<PeerId, CheckedOffer> = HashMap::new();
        let mut answered: HashSet<PeerId> = HashSet::new();
        let mut other_set: HashMap<PeerId, String> = HashMap::new();
        let mut first_ok: Option<Instant> = None;
        let mut next_ask = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_ask {
                self.net
                    .broadcast(self.channel, encode(&Message::GetSnapshot { height: want }));
                next_ask = now + ASK_EVERY;
            }
            if other_set.len() > f {
                let set = other_set.values().next().cloned().unwrap_or_default();
                return Err(FastSyncError::NeedsCheckpoint {
                    set,
                    peers: other_set.len(),
                });
            }
            if let Some(t) = first_ok {
                let peers = self.net.peers(self.channel);
                let all = !peers.is_empty() && peers.iter().all(|p| answered.contains(p));
                if now >= t + OFFER_GRACE || all {
                    break;
                }
            }
            if now >= deadline {
                return Ok(None);
            }
            let wake = first_ok
                .map_or(deadline, |t| t + OFFER_GRACE)
                .min(next_ask)
                .min(deadline);
            let m = tokio::select! {
                m = inbound.recv() => m.ok_or(FastSyncError::NetworkClosed)?,
                _ = tokio::time::sleep_until(wake) => continue,
            };
            let Ok(msg) = postcard::from_bytes::<Message>(&m.bytes) else {
                continue;
            };
            let Message::Snapshot(offer) = msg else {
                continue;
            };
            answered.insert(m.peer);
            let Some(offer) = offer else {
                offers.remove(&m.peer);
                continue;
            };
            match check_offer(self.channel, &offer, &trust) {
                Ok(c) => {
                    other_set.remove(&m.peer);
                    offers.insert(m.peer, c);
                    first_ok.get_or_insert(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(
                        "{}: fast sync: refused the snapshot offer of {} at height {}: {e}",
                        self.channel,
                        m.peer.short(),
                        offer.height
                    );
                    offers.remove(&m.peer);
                    if let OfferError::OtherSet(set) = e {
                        other_set.insert(m.peer, set);
                    }
                }
            }
        }
        // Among the offers of the peers with the fewest failed downloads: the highest snapshot,
        // the offer most peers make at that height. Its sources: every peer making it, fewest
        // failures first.
        let fails = |p: &PeerId| failed.get(p).copied().unwrap_or(0);
        let Some(least) = offers.keys().map(fails).min() else {
            return Ok(None);
        };
        let candidates: Vec<&CheckedOffer> = offers
            .iter()
            .filter(|(p, _)| fails(p) == least)
            .map(|(_, c)| c)
            .collect();
        let Some(top) = candidates.iter().map(|c| c.offer.height).max() else {
            return Ok(None);
        };
        let Some(best) = candidates
            .iter()
            .filter(|c| c.offer.height == top)
            .max_by_key(|c| offers.values().filter(|d| d.offer == c.offer).count())
            .map(|c| (*c).clone())
        else {
            return Ok(None);
        };
        let mut sources: Vec<PeerId> = offers
            .iter()
            .filter(|(_, c)| c.offer == best.offer)
            .map(|(p, _)| *p)
            .collect();
        sources.sort_by_key(|p| (fails(p), *p));
        Ok(Some((best, sources)))
    }

    fn work_dir(&self) -> PathBuf {
        self.data_dir.join("fastsync")
    }

    /// Fetches the stream into `fastsync/<s>.snap` and `fastsync/<s>.txids`; returns the peers
    /// that sent chunks.
    async fn download(
        &self,
        inbound: &mut mpsc::Receiver<Inbound>,
        best: &CheckedOffer,
        mut sources: Vec<PeerId>,
    ) -> Result<HashSet<PeerId>, (AttemptError, HashSet<PeerId>)> {
        let o = &best.offer;
        let s = o.height;
        let total = o.state_bytes + o.index_bytes;
        let work = self.work_dir();
        let fatal = |path: &Path, source| {
            (
                AttemptError::Fatal(FastSyncError::Io {
                    path: path.to_path_buf(),
                    source,
                }),
                HashSet::new(),
            )
        };
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| fatal(&work, e))?;
        }
        std::fs::create_dir_all(&work).map_err(|e| fatal(&work, e))?;
        let state_path = work.join(format!("{s}.snap"));
        let index_path = work.join(format!("{s}.txids"));
        let state_file = std::fs::File::create(&state_path).map_err(|e| fatal(&state_path, e))?;
        let index_file = std::fs::File::create(&index_path).map_err(|e| fatal(&index_path, e))?;

        // Chunks never cross the boundary of the two parts.
        let len_at = |off: u64| -> u32 {
            let end = if off < o.state_bytes {
                o.state_bytes
            } else {
                total
            };
            (end - off).min(u64::from(CHUNK_BYTES)) as u32
        };
        let mut contributors: HashSet<PeerId> = HashSet::new();
        let mut next = 0u64;
        let mut done = 0u64;
        let mut cur = 0usize;
        let mut failures = 0u32;
        let max_failures = 8 + 4 * sources.len() as u32;
        // Requests in flight: offset → (length, deadline).
        let mut flight: BTreeMap<u64, (u32, Instant)> = BTreeMap::new();
        while done < total {
            while flight.len() < WINDOW && next < total {
                let len = len_at(next);
                self.send(
                    sources[cur],
                    &Message::GetChunk {
                        height: s,
                        offset: next,
                        len,
                    },
                );
                flight.insert(next, (len, Instant::now() + CHUNK_TIMEOUT));
                next += u64::from(len);
            }
            let wake = flight
                .values()
                .map(|v| v.1)
                .min()
                .unwrap_or_else(|| Instant::now() + CHUNK_TIMEOUT);
            let mut retry: Vec<u64> = Vec::new();
            tokio::select! {
                m = inbound.recv() => {
                    let Some(m) = m else {
                        return Err((AttemptError::Fatal(FastSyncError::NetworkClosed), contributors));
                    };
                    match postcard::from_bytes::<Message>(&m.bytes) {
                        Ok(Message::Chunk { height, offset, data }) if height == s => {
                            let Some(&(len, _)) = flight.get(&offset) else { continue };
                            if data.len() != len as usize {
                                tracing::warn!(
                                    "{}: fast sync: refused a chunk of snapshot {s} from {}: {} bytes at offset {offset}, {len} expected (truncated or padded)",
                                    self.channel,
                                    m.peer.short(),
                                    data.len()
                                );
                                failures += 1;
                                retry.push(offset);
                            } else {
                                if offset == 0 {
                                    // The snapshot's header names its height and digest: a
                                    // stream of another state is refused before the rest.
                                    let digest = best.anchor.header.state_digest;
                                    if let Err(why) = check_head(&data, s, &digest) {
                                        contributors.insert(m.peer);
                                        return Err((AttemptError::Peers(why), contributors));
                                    }
                                }
                                let (file, at, path) = if offset < o.state_bytes {
                                    (&state_file, offset, &state_path)
                                } else {
                                    (&index_file, offset - o.state_bytes, &index_path)
                                };
                                file.write_all_at(&data, at).map_err(|e| {
                                    let (a, _) = fatal(path, e);
                                    (a, contributors.clone())
                                })?;
                                flight.remove(&offset);
                                done += u64::from(len);
                                contributors.insert(m.peer);
                            }
                        }
                        // Another peer with the same snapshot: one more source.
                        Ok(Message::Snapshot(Some(offer)))
                            if offer == *o && !sources.contains(&m.peer) =>
                        {
                            sources.push(m.peer);
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    for (&off, &(_, d)) in &flight {
                        if d <= now {
                            tracing::info!(
                                "{}: fast sync: no answer for bytes {off}.. of snapshot {s} from {} within {CHUNK_TIMEOUT:?}; asking another peer",
                                self.channel,
                                sources[cur].short()
                            );
                            failures += 1;
                            retry.push(off);
                        }
                    }
                }
            }
            if retry.is_empty() {
                continue;
            }
            if failures > max_failures {
                contributors.insert(sources[cur]);
                return Err((
                    AttemptError::Peers(format!("{failures} chunks timed out or were malformed")),
                    contributors,
                ));
            }
            cur = (cur + 1) % sources.len();
            for off in retry {
                let len = len_at(off);
                self.send(
                    sources[cur],
                    &Message::GetChunk {
                        height: s,
                        offset: off,
                        len,
                    },
                );
                flight.insert(off, (len, Instant::now() + CHUNK_TIMEOUT));
            }
        }
        for (f, p) in [(&state_file, &state_path), (&index_file, &index_path)] {
            f.sync_all().map_err(|e| {
                let (a, _) = fatal(p, e);
                (a, contributors.clone())
            })?;
        }
        Ok(contributors)
    }

    /// Restores the fetched snapshot, checks it and starts the block store at `s + 1`.
    async fn install(&self, best: &CheckedOffer) -> Result<Restored, AttemptError> {
        let s = best.offer.height;
        let work = self.work_dir();
        let snap = work.join(format!("{s}.snap"));
        let idx = work.join(format!("{s}.txids"));
        let state_dir = self.data_dir.join("state");
        let digest = best.anchor.header.state_digest;
        let store = self.store.clone();
        let header = best.header.clone();
        let anchor = best.anchor.clone();
        let channel = self.channel.to_string();
        let checkpoint = self.checkpoint;
        let genesis_set = self.genesis.set.id();
        let restored = tokio::task::spawn_blocking(move || -> Result<(), AttemptError> {
            let state = StateService::restore_snapshot_expecting(&state_dir, &snap, s, digest)
                .map_err(state_error)?;
            let undo = |e: AttemptError| {
                let _ = std::fs::remove_file(state_dir.join(DB_FILE));
                e
            };
            let checked = (|| {
                let membership = crate::node::load_membership(&state).map_err(|e| {
                    AttemptError::Peers(format!("the restored membership: {e}"))
                })?;
                let v = membership.validator_set().map_err(|e| {
                    AttemptError::Peers(format!("the restored validator set: {e}"))
                })?;
                match checkpoint {
                    None if v.set.id() != genesis_set => {
                        Err(AttemptError::Fatal(FastSyncError::SetMismatch {
                            height: s,
                            found: hex::encode(&v.set.id()[..8]),
                            trusted: hex::encode(&genesis_set[..8]),
                        }))
                    }
                    None => Ok(()),
                    Some(_) => verify_commit(
                        &channel,
                        s + 1,
                        &anchor.header.hash().0,
                        &anchor.cert,
                        &v.set,
                    )
                    .map(|_| ())
                    .map_err(|e| {
                        AttemptError::Peers(format!(
                            "the anchor's certificate does not verify against the restored validator set: {e}"
                        ))
                    }),
                }
            })();
            checked.map_err(undo)?;
            drop(state);
            let index = read_index(&idx, s).map_err(|e| undo(store_error(e)))?;
            store
                .install_base(&header, &index)
                .map_err(|e| undo(store_error(e)))?;
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        })
        .await
        .map_err(|e| AttemptError::Fatal(FastSyncError::Internal(format!("restore task: {e}"))))?;
        restored?;
        tracing::info!(
            "{}: fast sync: restored the state after block {s} (digest {}); block {} is next",
            self.channel,
            hex::encode(&best.anchor.header.state_digest[..8]),
            s + 1
        );
        Ok(Restored {
            anchor: best.anchor.clone(),
        })
    }
}

/// Checks the first bytes of a state snapshot (format in docs/state.md, "Snapshots"): magic,
/// height and digest.
fn check_head(data: &[u8], height: u64, digest: &[u8; 32]) -> Result<(), String> {
    if data.len() < 64 || &data[..8] != b"BPUSTATE" {
        return Err("the stream does not start with a state snapshot header".into());
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&data[16..24]);
    let h = u64::from_le_bytes(h);
    if h != height || data[32..64] != digest[..] {
        return Err(format!(
            "the stream holds the state after block {h} with digest {}, not the anchored one",
            hex::encode(&data[32..40])
        ));
    }
    Ok(())
}

/// A restore error: the snapshot's fault (refuse it) or this node's (stop).
fn state_error(e: StateError) -> AttemptError {
    match e {
        StateError::SnapshotFormat { .. }
        | StateError::SnapshotTruncated { .. }
        | StateError::SnapshotChecksum { .. }
        | StateError::SnapshotDigest { .. }
        | StateError::SnapshotUnexpected { .. }
        | StateError::TooLarge { .. } => AttemptError::Peers(e.to_string()),
        e => AttemptError::Fatal(FastSyncError::State(e)),
    }
}

fn store_error(e: StoreError) -> AttemptError {
    match e {
        StoreError::IndexFile { .. } => AttemptError::Peers(e.to_string()),
        e => AttemptError::Fatal(FastSyncError::Store(e)),
    }
}

fn encode(m: &Message) -> Bytes {
    Bytes::from(postcard::to_allocvec(m).unwrap_or_default())
}
