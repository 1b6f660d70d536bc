//! The block store: committed blocks by height and transaction locations by id, durable in redb.
//!
//! Blocks are appended in height order, one redb write transaction each, fsynced before
//! [`BlockStore::append`] returns; a stored block is never rewritten. Every block read back is
//! decoded strictly ([`Wire::decode`]), so a damaged file shows up as an error, never as a wrong
//! block.
//!
//! The store may start above height 0 (docs/ledger.md, "Block store base"): block 0 (the genesis
//! block) always stays, and blocks `1..base` are absent — pruned ([`BlockStore::prune_below`]) or
//! never fetched because the node started from a state snapshot ([`BlockStore::install_base`]).
//! The header of block `base − 1` is kept, so the chain still links. The transaction-id index is
//! never pruned: validation's replay check reads it.

use crate::format::{Block, BlockHeader, FormatError, Wire};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use sha2::{Digest as _, Sha256};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Transaction id → (height, index in block).
const TXS: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("txs");
/// `base` (u64 LE): the lowest height above 0 that may be held; `base_header`: the postcard
/// encoding of block `base − 1`'s header (present when base > 1).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_BASE: &str = "base";
const META_BASE_HEADER: &str = "base_header";

/// Blocks deleted per write transaction while pruning (bounds redb's dirty pages).
const PRUNE_BATCH: u64 = 256;

/// Magic of a transaction-index file (docs/ledger.md, "Transaction-index file").
const INDEX_MAGIC: &[u8; 8] = b"BPUTXIDX";
const INDEX_FORMAT: u32 = 1;
/// Header: magic, format, height, count.
const INDEX_HEADER: u64 = 8 + 4 + 8 + 8;
/// Record: id, height, index.
const INDEX_RECORD: u64 = 32 + 8 + 4;
/// Trailer: SHA-256 of everything before it.
const INDEX_TRAILER: u64 = 32;

/// One entry of the transaction-id index: id, height, index in block.
pub type IndexEntry = ([u8; 32], u64, u32);

/// Why the block store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("block store {path}: {source}")]
    Db {
        path: String,
        source: Box<redb::Error>,
    },
    #[error("block {got} appended after height {tip:?}: blocks go in height order")]
    OutOfOrder { got: u64, tip: Option<u64> },
    #[error("stored block {height} is damaged ({source}); restore the data directory from a peer or a backup")]
    Corrupt { height: u64, source: FormatError },
    #[error("block store {path}: {detail}; the data directory is damaged, restore it from a peer or a backup")]
    Meta { path: String, detail: String },
    #[error("cannot prune below height {base}: the store holds blocks up to {last} and keeps at least the newest one")]
    PruneTooFar { base: u64, last: u64 },
    #[error("cannot start the block store at height {height}: it already holds blocks above the genesis (up to {last}) or a base ({base}); fast sync needs an empty data directory")]
    NotFresh { height: u64, last: u64, base: u64 },
    #[error("transaction index file {path}: {detail}; it is damaged or truncated, fetch it again")]
    IndexFile { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Committed blocks of one channel.
pub struct BlockStore {
    db: Database,
    path: String,
}

impl BlockStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<BlockStore, StoreError> {
        let p = path.display().to_string();
        let db = Database::create(path).map_err(|e| db_err(&p, e))?;
        let s = BlockStore { db, path: p };
        // Make sure every table exists, so readers never see "table does not exist".
        let w = s.db.begin_write().map_err(|e| s.err(e))?;
        w.open_table(BLOCKS).map_err(|e| s.err(e))?;
        w.open_table(TXS).map_err(|e| s.err(e))?;
        w.open_table(META).map_err(|e| s.err(e))?;
        w.commit().map_err(|e| s.err(e))?;
        Ok(s)
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    fn meta_err(&self, detail: impl Into<String>) -> StoreError {
        StoreError::Meta {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    /// The lowest height above 0 whose block may be held: 1 unless blocks were pruned or the
    /// store was started from a snapshot. Blocks `1..base` are absent.
    pub fn base(&self) -> Result<u64, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let m = r.open_table(META).map_err(|e| self.err(e))?;
        self.read_base(&m)
    }

    fn read_base(
        &self,
        m: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<u64, StoreError> {
        match m.get(META_BASE).map_err(|e| self.err(e))? {
            None => Ok(1),
            Some(v) => {
                let b: [u8; 8] = v
                    .value()
                    .try_into()
                    .map_err(|_| self.meta_err("the base record is not 8 bytes"))?;
                Ok(u64::from_le_bytes(b).max(1))
            }
        }
    }

    /// The store's tip: the last stored block, or `base − 1` when no block above the genesis
    /// block is stored yet (a store started from a snapshot); `None` when empty.
    pub fn height(&self) -> Result<Option<u64>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let m = r.open_table(META).map_err(|e| self.err(e))?;
        let last = t.last().map_err(|e| self.err(e))?.map(|(k, _)| k.value());
        let base = self.read_base(&m)?;
        Ok(last.map(|l| l.max(base - 1)))
    }

    /// Whether the store holds nothing but (at most) the genesis block and starts at 1: what
    /// fast sync needs.
    pub fn is_fresh(&self) -> Result<bool, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let m = r.open_table(META).map_err(|e| self.err(e))?;
        let last = t.last().map_err(|e| self.err(e))?.map(|(k, _)| k.value());
        Ok(last.unwrap_or(0) == 0 && self.read_base(&m)? == 1)
    }

    /// Number of stored blocks (the genesis block included, pruned ones not).
    pub fn len(&self) -> Result<u64, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }

    /// Whether the store holds no block.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Appends the block at `h` (encoded as `bytes`, with transaction ids `ids` in order) at the
    /// next height (the tip + 1, see [`BlockStore::height`]) and indexes its transactions;
    /// durable when this returns.
    pub fn append(&self, h: u64, bytes: &[u8], ids: &[[u8; 32]]) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut blocks = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let meta = w.open_table(META).map_err(|e| self.err(e))?;
            let base = self.read_base(&meta)?;
            let tip = blocks
                .last()
                .map_err(|e| self.err(e))?
                .map(|(k, _)| k.value().max(base - 1));
            let expected = tip.map_or(0, |t| t + 1);
            if h != expected {
                return Err(StoreError::OutOfOrder { got: h, tip });
            }
            blocks.insert(h, bytes).map_err(|e| self.err(e))?;
            let mut txs = w.open_table(TXS).map_err(|e| self.err(e))?;
            for (i, id) in ids.iter().enumerate() {
                // The first occurrence wins: a replayed copy is flagged, not indexed.
                if txs.get(id.as_slice()).map_err(|e| self.err(e))?.is_none() {
                    txs.insert(id.as_slice(), (h, i as u32))
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        w.commit().map_err(|e| self.err(e))
    }

    /// The encoded block at `height`; `None` when it is beyond the tip or below the base.
    pub fn get_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let v = t.get(height).map_err(|e| self.err(e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    /// The block at `height`, strictly decoded.
    pub fn get(&self, height: u64) -> Result<Option<Block>, StoreError> {
        match self.get_bytes(height)? {
            None => Ok(None),
            Some(b) => Block::decode(&b)
                .map(Some)
                .map_err(|source| StoreError::Corrupt { height, source }),
        }
    }

    /// The header of block `height`: from the stored block, or the kept header of block
    /// `base − 1` when that block itself is absent.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, StoreError> {
        if let Some(b) = self.get(height)? {
            return Ok(Some(b.header));
        }
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let m = r.open_table(META).map_err(|e| self.err(e))?;
        let base = self.read_base(&m)?;
        if base == 1 || height != base - 1 {
            return Ok(None);
        }
        let v = m
            .get(META_BASE_HEADER)
            .map_err(|e| self.err(e))?
            .ok_or_else(|| {
                self.meta_err(format!("base {base} without the header of block {height}"))
            })?;
        let h: BlockHeader = postcard::from_bytes(v.value())
            .map_err(|e| self.meta_err(format!("the kept header of block {height}: {e}")))?;
        if h.height != height {
            return Err(self.meta_err(format!(
                "the kept header is of block {}, block {height} expected",
                h.height
            )));
        }
        Ok(Some(h))
    }

    /// Deletes blocks `base..new_base` (block 0 stays) and moves the base to `new_base`, keeping
    /// the header of block `new_base − 1`; the transaction index is kept. Works in transactions
    /// of 256 blocks, each durable, so a crash leaves a consistent, partly pruned store. Returns
    /// how many blocks were deleted; a `new_base` at or below the base deletes nothing.
    pub fn prune_below(&self, new_base: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let w = self.db.begin_write().map_err(|e| self.err(e))?;
            let done;
            {
                let mut blocks = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
                let mut meta = w.open_table(META).map_err(|e| self.err(e))?;
                let base = self.read_base(&meta)?;
                let last = blocks
                    .last()
                    .map_err(|e| self.err(e))?
                    .map_or(0, |(k, _)| k.value());
                if new_base <= base {
                    return Ok(removed);
                }
                if new_base > last {
                    return Err(StoreError::PruneTooFar {
                        base: new_base,
                        last,
                    });
                }
                let end = new_base.min(base.saturating_add(PRUNE_BATCH));
                let top = blocks
                    .get(end - 1)
                    .map_err(|e| self.err(e))?
                    .map(|g| g.value().to_vec())
                    .ok_or_else(|| {
                        self.meta_err(format!(
                            "block {} is missing above the base {base}",
                            end - 1
                        ))
                    })?;
                let top = Block::decode(&top).map_err(|source| StoreError::Corrupt {
                    height: end - 1,
                    source,
                })?;
                let header = postcard::to_allocvec(&top.header)
                    .map_err(|e| self.meta_err(format!("encoding a header: {e}")))?;
                for h in base..end {
                    blocks.remove(h).map_err(|e| self.err(e))?;
                }
                meta.insert(META_BASE, &end.to_le_bytes()[..])
                    .map_err(|e| self.err(e))?;
                meta.insert(META_BASE_HEADER, &header[..])
                    .map_err(|e| self.err(e))?;
                removed += end - base;
                done = end == new_base;
            }
            w.commit().map_err(|e| self.err(e))?;
            if done {
                return Ok(removed);
            }
        }
    }

    /// Starts a fresh store (holding at most the genesis block) at `header.height + 1`: the node
    /// restored the state after block `header.height` from a snapshot. Records the base, the
    /// header of block `base − 1` and the transaction-id index of blocks up to it, in one durable
    /// transaction.
    pub fn install_base(
        &self,
        header: &BlockHeader,
        index: &[IndexEntry],
    ) -> Result<(), StoreError> {
        let height = header.height;
        let encoded = postcard::to_allocvec(header)
            .map_err(|e| self.meta_err(format!("encoding a header: {e}")))?;
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let blocks = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let mut meta = w.open_table(META).map_err(|e| self.err(e))?;
            let base = self.read_base(&meta)?;
            let last = blocks
                .last()
                .map_err(|e| self.err(e))?
                .map_or(0, |(k, _)| k.value());
            if last > 0 || base > 1 || height == 0 {
                return Err(StoreError::NotFresh { height, last, base });
            }
            let mut txs = w.open_table(TXS).map_err(|e| self.err(e))?;
            // A store with no block above the genesis has no transactions to index.
            txs.retain(|_, _| false).map_err(|e| self.err(e))?;
            for (id, h, i) in index {
                txs.insert(id.as_slice(), (*h, *i))
                    .map_err(|e| self.err(e))?;
            }
            meta.insert(META_BASE, &(height + 1).to_le_bytes()[..])
                .map_err(|e| self.err(e))?;
            meta.insert(META_BASE_HEADER, &encoded[..])
                .map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }

    /// Where each of `ids` was committed, from one read transaction.
    pub fn locate_many(&self, ids: &[[u8; 32]]) -> Result<Vec<Option<(u64, u32)>>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(TXS).map_err(|e| self.err(e))?;
        ids.iter()
            .map(|id| {
                t.get(id.as_slice())
                    .map(|v| v.map(|g| g.value()))
                    .map_err(|e| self.err(e))
            })
            .collect()
    }

    /// Where transaction `id` was committed: (height, index).
    pub fn locate(&self, id: &[u8; 32]) -> Result<Option<(u64, u32)>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(TXS).map_err(|e| self.err(e))?;
        let v = t.get(id.as_slice()).map_err(|e| self.err(e))?;
        Ok(v.map(|g| g.value()))
    }

    /// Writes the transaction-id index of blocks `1..=upto` to `path` (via `path.partial`,
    /// fsynced and renamed; format in docs/ledger.md). Returns the number of entries.
    pub fn write_index(&self, path: &Path, upto: u64) -> Result<u64, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(TXS).map_err(|e| self.err(e))?;
        // Count first: the header carries it (the index is append-only, so one read
        // transaction sees the same rows twice).
        let mut count = 0u64;
        for row in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            if v.value().0 <= upto {
                count += 1;
            }
        }
        let partial = partial_path(path);
        let io = |source| StoreError::Io {
            path: partial.clone(),
            source,
        };
        let result = (|| {
            let file = std::fs::File::create(&partial).map_err(io)?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let mut sha = Sha256::new();
            let mut put = |w: &mut BufWriter<std::fs::File>, b: &[u8]| {
                sha.update(b);
                w.write_all(b)
            };
            put(&mut w, INDEX_MAGIC).map_err(io)?;
            put(&mut w, &INDEX_FORMAT.to_le_bytes()).map_err(io)?;
            put(&mut w, &upto.to_le_bytes()).map_err(io)?;
            put(&mut w, &count.to_le_bytes()).map_err(io)?;
            for row in t.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let (h, i) = v.value();
                if h > upto {
                    continue;
                }
                let id: [u8; 32] = k
                    .value()
                    .try_into()
                    .map_err(|_| self.meta_err("a transaction id is not 32 bytes"))?;
                put(&mut w, &id).map_err(io)?;
                put(&mut w, &h.to_le_bytes()).map_err(io)?;
                put(&mut w, &i.to_le_bytes()).map_err(io)?;
            }
            let sum: [u8; 32] = sha.finalize().into();
            w.write_all(&sum).map_err(io)?;
            let file = w.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(count)
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// Reads and checks a transaction-index file written by [`BlockStore::write_index`] for blocks
/// up to `upto`: format, entry count against the file size, ids strictly ascending, every
/// height in `1..=upto`, and the checksum.
pub fn read_index(path: &Path, upto: u64) -> Result<Vec<IndexEntry>, StoreError> {
    let bad = |detail: String| StoreError::IndexFile {
        path: path.to_path_buf(),
        detail,
    };
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < INDEX_HEADER + INDEX_TRAILER {
        return Err(bad(format!("{len} bytes, shorter than a header")));
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut sha = Sha256::new();
    let mut take = |r: &mut BufReader<std::fs::File>, buf: &mut [u8]| -> Result<(), StoreError> {
        r.read_exact(buf).map_err(io)?;
        sha.update(&*buf);
        Ok(())
    };
    let mut head = [0u8; INDEX_HEADER as usize];
    take(&mut r, &mut head)?;
    let u64_at = |b: &[u8], at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    if &head[..8] != INDEX_MAGIC {
        return Err(bad("no BPUTXIDX magic".into()));
    }
    let format = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if format != INDEX_FORMAT {
        return Err(bad(format!("format {format} is not supported")));
    }
    let height = u64_at(&head, 12);
    if height != upto {
        return Err(bad(format!(
            "it is the index up to block {height}, {upto} expected"
        )));
    }
    let count = u64_at(&head, 20);
    let body = len - INDEX_HEADER - INDEX_TRAILER;
    if count.checked_mul(INDEX_RECORD) != Some(body) {
        return Err(bad(format!("{count} entries do not fill {body} bytes")));
    }
    let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
    let mut prev: Option<[u8; 32]> = None;
    let mut rec = [0u8; INDEX_RECORD as usize];
    for n in 0..count {
        take(&mut r, &mut rec)?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&rec[..32]);
        let h = u64_at(&rec, 32);
        let i = u32::from_le_bytes([rec[40], rec[41], rec[42], rec[43]]);
        if prev.is_some_and(|p| p >= id) {
            return Err(bad(format!("entry {n} is out of order or repeated")));
        }
        if h == 0 || h > upto {
            return Err(bad(format!(
                "entry {n} names block {h}, outside 1..={upto}"
            )));
        }
        prev = Some(id);
        out.push((id, h, i));
    }
    let mut sum = [0u8; 32];
    r.read_exact(&mut sum).map_err(io)?;
    let want: [u8; 32] = sha.finalize().into();
    if sum != want {
        return Err(bad("the checksum does not match the contents".into()));
    }
    Ok(out)
}

fn db_err(path: &str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_string(),
        source: Box::new(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::VERSION;

    fn block(h: u64, prev: [u8; 32]) -> Block {
        Block {
            header: BlockHeader {
                version: VERSION,
                channel: "c".into(),
                height: h,
                prev_hash: prev,
                tx_root: Block::tx_root(&[]).0,
                state_digest: [h as u8; 32],
                time_ms: 1_000 + h,
                proposer: 0,
            },
            txs: Vec::new(),
            status: Vec::new(),
            cert: Vec::new(),
        }
    }

    /// A store with blocks 0..=n, each "holding" transaction id [h; 32].
    fn chain(dir: &Path, n: u64) -> (BlockStore, Vec<Block>) {
        let s = BlockStore::open(&dir.join("blocks.redb")).expect("open");
        let mut prev = [0u8; 32];
        let mut out = Vec::new();
        for h in 0..=n {
            let b = block(h, prev);
            prev = b.header.hash().0;
            let ids: Vec<[u8; 32]> = if h == 0 { vec![] } else { vec![[h as u8; 32]] };
            s.append(h, &b.encode(), &ids).expect("append");
            out.push(b);
        }
        (s, out)
    }

    #[test]
    fn pruning_keeps_block_zero_the_base_header_and_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, blocks) = chain(dir.path(), 20);
        assert_eq!(s.base().expect("base"), 1);
        assert_eq!(s.prune_below(1).expect("no-op"), 0);
        assert_eq!(s.prune_below(11).expect("prune"), 10);
        assert_eq!(s.base().expect("base"), 11);
        assert_eq!(s.height().expect("h"), Some(20));
        assert!(s.get(0).expect("read").is_some(), "block 0 stays");
        for h in 1..11 {
            assert!(s.get_bytes(h).expect("read").is_none(), "block {h} pruned");
        }
        for h in 11..=20 {
            assert_eq!(s.get(h).expect("read").as_ref(), Some(&blocks[h as usize]));
        }
        // The header below the base is kept; older ones are not.
        assert_eq!(s.header(10).expect("h"), Some(blocks[10].header.clone()));
        assert_eq!(s.header(9).expect("h"), None);
        assert_eq!(s.header(12).expect("h"), Some(blocks[12].header.clone()));
        // The index still finds pruned transactions.
        assert_eq!(s.locate(&[3; 32]).expect("locate"), Some((3, 0)));
        // Lowering the base is a no-op; pruning the newest block is refused.
        assert_eq!(s.prune_below(5).expect("no-op"), 0);
        assert!(matches!(
            s.prune_below(21),
            Err(StoreError::PruneTooFar { base: 21, last: 20 })
        ));
        // Appending continues at the tip; reopening keeps the base.
        let b = block(21, blocks[20].header.hash().0);
        assert!(matches!(
            s.append(5, &b.encode(), &[]),
            Err(StoreError::OutOfOrder { got: 5, .. })
        ));
        s.append(21, &b.encode(), &[]).expect("append");
        drop(s);
        let s = BlockStore::open(&dir.path().join("blocks.redb")).expect("reopen");
        assert_eq!(s.base().expect("base"), 11);
        assert_eq!(s.height().expect("h"), Some(21));
        assert!(!s.is_fresh().expect("fresh"));
    }

    #[test]
    fn pruning_many_blocks_works_in_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, blocks) = chain(dir.path(), 600);
        assert_eq!(s.prune_below(590).expect("prune"), 589);
        assert_eq!(s.base().expect("base"), 590);
        assert_eq!(s.len().expect("len"), 1 + 11);
        assert_eq!(s.header(589).expect("h"), Some(blocks[589].header.clone()));
    }

    #[test]
    fn a_store_installed_at_a_base_starts_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, blocks) = chain(dir.path(), 12);
        let idx = dir.path().join("9.txids");
        assert_eq!(src.write_index(&idx, 9).expect("write"), 9);
        let entries = read_index(&idx, 9).expect("read");
        assert_eq!(entries.len(), 9);
        assert!(entries
            .iter()
            .all(|(id, h, i)| id[0] as u64 == *h && *i == 0));

        let other = tempfile::tempdir().expect("tempdir");
        let s = BlockStore::open(&other.path().join("blocks.redb")).expect("open");
        assert!(s.is_fresh().expect("fresh"));
        s.append(0, &blocks[0].encode(), &[]).expect("genesis");
        assert!(s.is_fresh().expect("fresh"));
        s.install_base(&blocks[9].header, &entries)
            .expect("install");
        assert_eq!(s.base().expect("base"), 10);
        assert_eq!(s.height().expect("h"), Some(9));
        assert_eq!(s.header(9).expect("h"), Some(blocks[9].header.clone()));
        assert!(s.get_bytes(1).expect("read").is_none());
        assert_eq!(s.locate(&[4; 32]).expect("locate"), Some((4, 0)));
        assert!(matches!(
            s.install_base(&blocks[9].header, &entries),
            Err(StoreError::NotFresh { .. })
        ));
        assert!(matches!(
            s.append(11, &blocks[11].encode(), &[]),
            Err(StoreError::OutOfOrder {
                got: 11,
                tip: Some(9)
            })
        ));
        s.append(10, &blocks[10].encode(), &[])
            .expect("append after the base");
        assert_eq!(s.height().expect("h"), Some(10));
        // A store with blocks refuses a base.
        assert!(matches!(
            src.install_base(&blocks[9].header, &entries),
            Err(StoreError::NotFresh { .. })
        ));
    }

    #[test]
    fn damaged_index_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, _) = chain(dir.path(), 5);
        let idx = dir.path().join("5.txids");
        s.write_index(&idx, 5).expect("write");
        let good = std::fs::read(&idx).expect("read");
        assert!(matches!(
            read_index(&idx, 4),
            Err(StoreError::IndexFile { .. })
        ));
        let check = |bytes: &[u8]| {
            std::fs::write(&idx, bytes).expect("write");
            read_index(&idx, 5)
        };
        for cut in [0, 10, good.len() - 1] {
            assert!(check(&good[..cut]).is_err(), "truncated at {cut}");
        }
        for at in [0, 30, 40, good.len() / 2, good.len() - 1] {
            let mut b = good.clone();
            b[at] ^= 1;
            assert!(check(&b).is_err(), "bit flip at {at}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(check(&longer).is_err());
        assert_eq!(check(&good).expect("good").len(), 5);
    }
}
