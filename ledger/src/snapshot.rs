//! Local state snapshots and block pruning: the options, the snapshot directory a node serves
//! fast sync from, and the background housekeeping run after commits (docs/ledger.md,
//! "Snapshots and pruning"; the protocol is in docs/consensus.md, "Fast sync and pruning").
//!
//! A snapshot at height `s` is three files in `<data_dir>/snapshots/`: `<s>.snap` (the state
//! after block `s`, `StateService::write_snapshot`), `<s>.txids` (the transaction-id index of
//! blocks `1..=s`, `BlockStore::write_index`) and `<s>.meta` (the header of block `s` and the
//! certified block `s + 1`, whose header carries the state digest after `s`). The `.meta` file is
//! written last, once block `s + 1` is committed: only snapshots with it are offered. Peers
//! fetch the byte stream `<s>.snap ‖ <s>.txids` in chunks.

use crate::store::{BlockStore, StoreError};
use bpu_runtime::state::{StateError, StateService};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Most bytes of snapshot in one chunk (one network frame).
pub const CHUNK_BYTES: u32 = 1 << 20;

/// When to write state snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// After committing a height that is a multiple of `every` (at least 1), snapshot the state.
    pub every: u64,
    /// How many complete snapshots to keep (at least 1); older ones are deleted.
    pub keep: usize,
}

/// A block the operator trusts (weak subjectivity: docs/consensus.md, "Fast sync and
/// pruning"): fast sync then takes the snapshot anchored at exactly this block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Height of the anchor block (the snapshot is of the state after `height − 1`).
    pub height: u64,
    /// Its block (header) hash.
    pub hash: [u8; 32],
}

/// Snapshot, pruning and fast-sync options of a node (all off by default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Write state snapshots in the background and serve them to fast-syncing peers.
    pub snapshots: Option<SnapshotPolicy>,
    /// Keep only the newest this many blocks' bodies (at least 1; block 0 always stays; the
    /// transaction-id index is kept whole). With snapshots on, blocks after the newest
    /// complete snapshot are never pruned, so peers can always fast sync from this node.
    pub keep_blocks: Option<u64>,
    /// When the data directory holds nothing but the genesis, start from a peer's snapshot
    /// instead of replaying every block (BFT nodes only).
    pub fast_sync: bool,
    /// The trusted anchor block for fast sync when the validator set has changed since the
    /// genesis.
    pub checkpoint: Option<Checkpoint>,
}

/// A snapshot offered to a fast-syncing peer (`bft::Message::Snapshot`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotOffer {
    /// The snapshot holds the state after this block.
    pub height: u64,
    /// Bytes of the state snapshot: stream offsets `0..state_bytes`.
    pub state_bytes: u64,
    /// Bytes of the transaction-id index: stream offsets `state_bytes..state_bytes +
    /// index_bytes`.
    pub index_bytes: u64,
    /// The header of block `height` (postcard), whose hash the anchor names as its parent.
    pub header: Vec<u8>,
    /// Block `height + 1` with its certificate (encoded); its header's state digest is the
    /// state digest after `height`.
    pub anchor: Vec<u8>,
}

/// The `.meta` file of a complete snapshot.
#[derive(Serialize, Deserialize)]
struct SnapshotMeta {
    height: u64,
    header: Vec<u8>,
    anchor: Vec<u8>,
}

/// Why a snapshot could not be written, read or served.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source} (check the disk, free space and permissions)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot metadata {path}: {detail}; delete the snapshot, the next one replaces it")]
    Meta { path: PathBuf, detail: String },
    #[error("no complete snapshot at height {0}")]
    Missing(u64),
    #[error("bytes {offset}..{offset}+{len} are outside snapshot {height} ({size} bytes) or cross its two parts; ask for ranges of the offer")]
    Range {
        height: u64,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error("block store: {0}")]
    Store(#[from] StoreError),
}

/// The snapshots of one node: `<data_dir>/snapshots/`.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// The snapshot directory of the node whose data directory is `data_dir` (created when the
    /// first snapshot is written).
    pub fn open(data_dir: &Path) -> SnapshotDir {
        SnapshotDir {
            dir: data_dir.join("snapshots"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The state snapshot file of height `h`.
    pub fn state_file(&self, h: u64) -> PathBuf {
        self.dir.join(format!("{h}.snap"))
    }

    /// The transaction-index file of height `h`.
    pub fn index_file(&self, h: u64) -> PathBuf {
        self.dir.join(format!("{h}.txids"))
    }

    fn meta_file(&self, h: u64) -> PathBuf {
        self.dir.join(format!("{h}.meta"))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
        move |source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Heights of the files present, by suffix.
    fn files(&self) -> Result<Vec<(u64, String)>, SnapshotError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(Self::io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((h, ext)) = name.split_once('.') {
                if let Ok(h) = h.parse::<u64>() {
                    out.push((h, ext.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Heights of the complete snapshots (all three files), ascending.
    pub fn heights(&self) -> Result<Vec<u64>, SnapshotError> {
        let files = self.files()?;
        let has = |h: u64, ext: &str| files.iter().any(|(x, e)| *x == h && e == ext);
        let mut v: Vec<u64> = files
            .iter()
            .filter(|(h, e)| e == "meta" && has(*h, "snap") && has(*h, "txids"))
            .map(|(h, _)| *h)
            .collect();
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }

    /// The offer of the newest complete snapshot, or of the one at exactly `height`; `None`
    /// when there is none.
    pub fn offer(&self, height: Option<u64>) -> Result<Option<SnapshotOffer>, SnapshotError> {
        let heights = self.heights()?;
        let h = match height {
            None => heights.last().copied(),
            Some(h) => heights.contains(&h).then_some(h),
        };
        let Some(h) = h else { return Ok(None) };
        let path = self.meta_file(h);
        let bytes = std::fs::read(&path).map_err(Self::io(&path))?;
        let meta: SnapshotMeta = postcard::from_bytes(&bytes).map_err(|e| SnapshotError::Meta {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if meta.height != h {
            return Err(SnapshotError::Meta {
                path,
                detail: format!("it names height {}", meta.height),
            });
        }
        let size = |p: PathBuf| {
            std::fs::metadata(&p)
                .map(|m| m.len())
                .map_err(|e| Self::io(&p)(e))
        };
        Ok(Some(SnapshotOffer {
            height: h,
            state_bytes: size(self.state_file(h))?,
            index_bytes: size(self.index_file(h))?,
            header: meta.header,
            anchor: meta.anchor,
        }))
    }

    /// Bytes `offset..offset + len` of snapshot `height`'s stream (`.snap ‖ .txids`); the range
    /// must lie inside one of the two parts and `len` must be at most [`CHUNK_BYTES`].
    pub fn read_chunk(&self, height: u64, offset: u64, len: u32) -> Result<Vec<u8>, SnapshotError> {
        if !self.meta_file(height).exists() {
            return Err(SnapshotError::Missing(height));
        }
        let state = self.state_file(height);
        let index = self.index_file(height);
        let len_of = |p: &Path| std::fs::metadata(p).map(|m| m.len()).map_err(Self::io(p));
        let s = len_of(&state)?;
        let i = len_of(&index)?;
        let l = u64::from(len);
        let range = || SnapshotError::Range {
            height,
            offset,
            len: l,
            size: s + i,
        };
        if len > CHUNK_BYTES || len == 0 {
            return Err(range());
        }
        let (path, at) = if offset < s {
            if offset + l > s {
                return Err(range());
            }
            (state, offset)
        } else {
            let at = offset - s;
            if at.checked_add(l).is_none_or(|end| end > i) {
                return Err(range());
            }
            (index, at)
        };
        let f = std::fs::File::open(&path).map_err(Self::io(&path))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, at).map_err(Self::io(&path))?;
        Ok(buf)
    }

    /// Writes the state snapshot and the transaction index at the state's current height;
    /// returns that height and the header of its block (postcard). Not offered until
    /// [`SnapshotDir::seal`].
    fn take(
        &self,
        state: &StateService,
        store: &BlockStore,
    ) -> Result<(u64, Vec<u8>), SnapshotError> {
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let taking = self.dir.join("taking.snap");
        let info = state.write_snapshot(&taking)?;
        let h = info.height;
        let path = self.state_file(h);
        std::fs::rename(&taking, &path).map_err(Self::io(&path))?;
        store.write_index(&self.index_file(h), h)?;
        let header = store.header(h)?.ok_or_else(|| SnapshotError::Meta {
            path: self.meta_file(h),
            detail: format!("block {h} is not in the block store"),
        })?;
        let header = postcard::to_allocvec(&header).map_err(|e| SnapshotError::Meta {
            path: self.meta_file(h),
            detail: e.to_string(),
        })?;
        Ok((h, header))
    }

    /// Completes snapshot `h` with its anchor (block `h + 1`, encoded with its certificate).
    fn seal(&self, h: u64, header: Vec<u8>, anchor: Vec<u8>) -> Result<(), SnapshotError> {
        let path = self.meta_file(h);
        let bytes = postcard::to_allocvec(&SnapshotMeta {
            height: h,
            header,
            anchor,
        })
        .map_err(|e| SnapshotError::Meta {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let partial = self.dir.join(format!("{h}.meta.partial"));
        let write = || -> std::io::Result<()> {
            let f = std::fs::File::create(&partial)?;
            f.write_all_at(&bytes, 0)?;
            f.sync_all()?;
            std::fs::rename(&partial, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(Self::io(&path))
    }

    /// Keeps the newest `keep` complete snapshots and those in `pending`; deletes the rest,
    /// including files of incomplete snapshots and partial files.
    fn retain(&self, keep: usize, pending: &[u64]) -> Result<(), SnapshotError> {
        let complete = self.heights()?;
        let kept: Vec<u64> = complete
            .iter()
            .rev()
            .take(keep.max(1))
            .copied()
            .chain(pending.iter().copied())
            .collect();
        for (h, ext) in self.files()? {
            if !kept.contains(&h) || ext.ends_with("partial") {
                let p = self.dir.join(format!("{h}.{ext}"));
                std::fs::remove_file(&p).map_err(Self::io(&p))?;
            }
        }
        // Left by a snapshot write that stopped midway (retain runs between writes).
        for name in ["taking.snap", "taking.snap.partial"] {
            let p = self.dir.join(name);
            if p.exists() {
                std::fs::remove_file(&p).map_err(Self::io(&p))?;
            }
        }
        Ok(())
    }
}

/// The background work after commits: snapshots and pruning. Runs on one blocking thread at a
/// time, so a snapshot is sealed before pruning could remove its anchor.
pub(crate) struct Housekeeping {
    opts: SyncOptions,
    dir: SnapshotDir,
    /// Snapshots written but not sealed: (height, header of that block).
    pending: Vec<(u64, Vec<u8>)>,
    /// Height of the newest snapshot written.
    last: Option<u64>,
}

impl Housekeeping {
    /// Picks up the snapshots already in `data_dir` and drops incomplete ones.
    pub(crate) fn new(opts: SyncOptions, data_dir: &Path) -> Result<Housekeeping, SnapshotError> {
        let dir = SnapshotDir::open(data_dir);
        let mut hk = Housekeeping {
            opts,
            dir,
            pending: Vec::new(),
            last: None,
        };
        if let Some(p) = hk.opts.snapshots {
            hk.dir.retain(p.keep, &[])?;
            hk.last = hk.dir.heights()?.last().copied();
        }
        Ok(hk)
    }

    /// Whether there is anything to do after commits.
    pub(crate) fn active(&self) -> bool {
        self.opts.snapshots.is_some() || self.opts.keep_blocks.is_some()
    }

    /// The work after committing height `h` (or later: heights may be skipped); errors are
    /// logged, never fatal to the node.
    pub(crate) fn after_commit(
        &mut self,
        channel: &str,
        h: u64,
        state: &StateService,
        store: &BlockStore,
    ) {
        if let Some(p) = self.opts.snapshots {
            if let Err(e) = self.snapshots(p, h, state, store) {
                tracing::warn!("{channel}: snapshot after block {h} failed: {e}");
            }
        }
        if let Some(k) = self.opts.keep_blocks {
            if let Err(e) = self.prune(k, h, store) {
                tracing::warn!("{channel}: pruning after block {h} failed: {e}");
            }
        }
    }

    fn snapshots(
        &mut self,
        p: SnapshotPolicy,
        h: u64,
        state: &StateService,
        store: &BlockStore,
    ) -> Result<(), SnapshotError> {
        let every = p.every.max(1);
        let due = h / every * every;
        if due > 0 && self.last.is_none_or(|l| l < due) {
            let (s, header) = self.dir.take(state, store)?;
            tracing::info!("snapshot of the state after block {s} written");
            self.last = Some(s);
            self.pending.retain(|(x, _)| *x != s);
            self.pending.push((s, header));
        }
        let mut still = Vec::new();
        for (s, header) in std::mem::take(&mut self.pending) {
            match store.get_bytes(s + 1)? {
                Some(anchor) => self.dir.seal(s, header, anchor)?,
                None => still.push((s, header)),
            }
        }
        self.pending = still;
        let pending: Vec<u64> = self.pending.iter().map(|(s, _)| *s).collect();
        self.dir.retain(p.keep, &pending)
    }

    fn prune(&mut self, keep: u64, h: u64, store: &BlockStore) -> Result<(), SnapshotError> {
        let mut cut = (h + 1).saturating_sub(keep.max(1));
        if self.opts.snapshots.is_some() {
            // Never prune what the newest snapshot cannot replace: a fast-syncing peer needs
            // the blocks after its anchor.
            let newest = self.dir.heights()?.last().copied();
            cut = cut.min(newest.map_or(1, |s| s + 1));
            if let Some(s) = self.pending.iter().map(|(s, _)| *s).min() {
                cut = cut.min(s + 1);
            }
        }
        if cut > store.base()? {
            let n = store.prune_below(cut)?;
            tracing::debug!("pruned {n} blocks; blocks from {cut} are kept");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_from_one_part_and_bad_ranges_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = SnapshotDir::open(dir.path());
        std::fs::create_dir_all(d.path()).expect("mkdir");
        std::fs::write(d.state_file(7), [1u8; 10]).expect("w");
        std::fs::write(d.index_file(7), [2u8; 5]).expect("w");
        assert!(matches!(
            d.read_chunk(7, 0, 4),
            Err(SnapshotError::Missing(7))
        ));
        assert_eq!(d.offer(None).expect("offer"), None);
        d.seal(7, vec![9], vec![8]).expect("seal");
        assert_eq!(d.heights().expect("heights"), vec![7]);
        let o = d.offer(None).expect("offer").expect("some");
        assert_eq!((o.height, o.state_bytes, o.index_bytes), (7, 10, 5));
        assert_eq!((o.header, o.anchor), (vec![9], vec![8]));
        assert_eq!(d.offer(Some(6)).expect("offer"), None);
        assert_eq!(d.read_chunk(7, 0, 10).expect("chunk"), vec![1u8; 10]);
        assert_eq!(d.read_chunk(7, 10, 5).expect("chunk"), vec![2u8; 5]);
        assert_eq!(d.read_chunk(7, 12, 3).expect("chunk"), vec![2u8; 3]);
        for (o, l) in [(8, 4), (10, 6), (15, 1), (0, 0), (u64::MAX, 2)] {
            assert!(
                matches!(d.read_chunk(7, o, l), Err(SnapshotError::Range { .. })),
                "{o}+{l}"
            );
        }
        // Retention keeps the newest and the pending ones.
        for h in [3u64, 5] {
            std::fs::write(d.state_file(h), [0u8]).expect("w");
            std::fs::write(d.index_file(h), [0u8]).expect("w");
            d.seal(h, vec![], vec![]).expect("seal");
        }
        std::fs::write(d.state_file(9), [0u8]).expect("w");
        std::fs::write(d.state_file(1), [0u8]).expect("w");
        std::fs::write(d.path().join("7.meta.partial"), [0u8]).expect("w");
        std::fs::write(d.path().join("taking.snap.partial"), [0u8]).expect("w");
        d.retain(2, &[9]).expect("retain");
        assert!(!d.path().join("7.meta.partial").exists());
        assert!(!d.path().join("taking.snap.partial").exists());
        assert_eq!(d.heights().expect("heights"), vec![5, 7]);
        assert!(d.state_file(9).exists());
        assert!(!d.state_file(1).exists());
        assert!(!d.state_file(3).exists());
    }
}
