//! The block store: committed blocks by height and transaction locations by id, durable in redb.
//!
//! Blocks are appended in height order, one redb write transaction each, fsynced before
//! [`BlockStore::append`] returns; nothing is ever rewritten. Every block read back is decoded
//! strictly ([`Wire::decode`]), so a damaged file shows up as an error, never as a wrong block.

use crate::format::{Block, FormatError, Wire};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Transaction id → (height, index in block).
const TXS: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("txs");

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
        // Make sure both tables exist, so readers never see "table does not exist".
        let w = s.db.begin_write().map_err(|e| s.err(e))?;
        w.open_table(BLOCKS).map_err(|e| s.err(e))?;
        w.open_table(TXS).map_err(|e| s.err(e))?;
        w.commit().map_err(|e| s.err(e))?;
        Ok(s)
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    /// Height of the last block, `None` when empty.
    pub fn height(&self) -> Result<Option<u64>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let last = t.last().map_err(|e| self.err(e))?;
        Ok(last.map(|(k, _)| k.value()))
    }

    /// Number of stored blocks.
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
    /// next height and indexes its transactions; durable when this returns.
    pub fn append(&self, h: u64, bytes: &[u8], ids: &[[u8; 32]]) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut blocks = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let tip = blocks
                .last()
                .map_err(|e| self.err(e))?
                .map(|(k, _)| k.value());
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

    /// The encoded block at `height`.
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
}

fn db_err(path: &str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_string(),
        source: Box::new(e.into()),
    }
}
