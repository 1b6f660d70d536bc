//! The state service: a channel's versioned key-value state, durable in redb, with an
//! order-independent incremental digest (LtHash16 over BLAKE3) and snapshots.
//!
//! Theory of operation, file formats and measured costs: `docs/state.md`.
//!
//! - One [`StateService`] per channel; it owns `<dir>/state.redb` ([`DB_FILE`]).
//! - [`StateService::commit`] applies one block's writes in one redb write transaction with
//!   immediate durability and two-phase commit: entries, the LtHash lattice and the height land
//!   together or not at all, so a crash can never leave them inconsistent.
//! - The digest depends only on the set of `(contract, key, value, version)` entries; a commit
//!   updates it in O(writes) (subtract the old entry's vector, add the new one).
//! - Reads ([`StateService::get`], [`StateService::scan`]) run on redb read transactions
//!   (MVCC snapshots): they never wait for a commit and always see whole blocks.
//! - Snapshots are a self-describing file (format in `docs/state.md`) checked on restore
//!   against a file checksum and the state digest recomputed from the entries.

use crate::StateVersion;
use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// The database file inside a channel's state directory.
pub const DB_FILE: &str = "state.redb";
/// A restore in progress builds this file and renames it to [`DB_FILE`] once verified.
const RESTORE_FILE: &str = "state.redb.restoring";

/// Longest contract name, in bytes.
pub const MAX_CONTRACT: usize = 255;
/// Longest key, in bytes (the wire format allows 256; this leaves room).
pub const MAX_KEY: usize = 4096;
/// Longest value, in bytes (the wire format allows 64 KiB; this leaves room).
pub const MAX_VALUE: usize = 16 << 20;

/// Lanes of the LtHash lattice (16-bit each: 2048 bytes).
pub const LANES: usize = 1024;
/// Bytes of the LtHash lattice.
pub const LATTICE_BYTES: usize = 2 * LANES;

/// Version of the database layout (`meta["format"]`).
const DB_FORMAT: u32 = 1;
/// Version of the snapshot file format.
pub const SNAPSHOT_FORMAT: u32 = 1;
/// Identifies the digest construction in snapshots: 1 = LtHash16, 1024 lanes, BLAKE3 XOF.
const DIGEST_ALGORITHM: u32 = 1;
const SNAPSHOT_MAGIC: &[u8; 8] = b"BPUSTATE";
const SNAPSHOT_END: &[u8; 8] = b"BPUSEND\0";
const SNAPSHOT_HEADER: usize = 8 + 4 + 4 + 8 + 8 + 32;

/// BLAKE3 key-derivation contexts: domain separation of entry vectors and the final digest.
const ENTRY_CONTEXT: &str = "bpu state LtHash16 entry v1";
const DIGEST_CONTEXT: &str = "bpu state LtHash16 digest v1";
const SNAPSHOT_CONTEXT: &str = "bpu state snapshot file v1";

/// Entries: key = `u32 BE len(contract) ‖ contract ‖ key`, value = `u64 BE height ‖ u32 BE
/// index ‖ value`.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Metadata: `format` (u32 LE), `height` (u64 LE; absent before the first commit),
/// `lattice` (2048 bytes, 1024 u16 LE lanes).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_FORMAT: &str = "format";
const META_HEIGHT: &str = "height";
const META_LATTICE: &str = "lattice";

/// Entries per write transaction while restoring a snapshot (bounds redb's dirty pages).
const RESTORE_BATCH: usize = 50_000;
/// Below this many distinct keys a commit hashes on the calling thread; above, on rayon.
const PARALLEL_WRITES: usize = 64;

/// One write of a block: `value: None` deletes the key (a no-op when it is absent).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StateWrite {
    pub contract: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// Stored with the value as given (normally the block height and transaction index).
    pub version: StateVersion,
}

/// One row of [`StateService::scan`]: `(key, value, version)`.
pub type ScanRow = (Vec<u8>, Vec<u8>, StateVersion);

/// An entry's value and version before a commit changes it (`None`: absent).
type Old = Option<(StateVersion, Vec<u8>)>;

/// What [`StateService::write_snapshot`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub height: u64,
    pub digest: [u8; 32],
    /// Entries (keys with a value) in the snapshot.
    pub entries: u64,
    /// Size of the snapshot file.
    pub bytes: u64,
}

/// Errors of the state service. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `commit` was given a block that does not follow the last committed one.
    #[error("{}", height_message(*.have, *.given))]
    Height { have: Option<u64>, given: u64 },
    #[error(
        "{what} is {len} bytes, the limit is {max}: the write is refused, nothing was changed"
    )]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("state database {path}: {source} (check the disk, free space and permissions; a damaged database can be rebuilt from a snapshot)")]
    Db {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state database {path} is already open (by another StateService or process): open each channel's state once and share it")]
    InUse { path: PathBuf },
    #[error("state database {path} is corrupt: {detail}; restore it from a snapshot")]
    Corrupt { path: PathBuf, detail: String },
    #[error("state database {path} has format {found}, this build reads format {DB_FORMAT}: use a matching bpu version")]
    UnsupportedFormat { path: PathBuf, found: u32 },
    #[error("no block committed yet: commit block 0 before writing a snapshot")]
    Empty,
    #[error("{path} already exists: restore a snapshot into a fresh directory (or remove the old state first)")]
    NotFresh { path: PathBuf },
    #[error("snapshot {path}: {detail}; it is not a readable bpu state snapshot (format {SNAPSHOT_FORMAT}): fetch it again")]
    SnapshotFormat { path: PathBuf, detail: String },
    #[error(
        "snapshot {path} ends early (at byte {offset}): the file is truncated, fetch it again"
    )]
    SnapshotTruncated { path: PathBuf, offset: u64 },
    #[error("snapshot {path}: the file checksum does not match its contents: the file is damaged, fetch it again")]
    SnapshotChecksum { path: PathBuf },
    #[error("snapshot {path} claims digest {claimed} but its entries hash to {computed}: the snapshot is inconsistent, do not use it")]
    SnapshotDigest {
        path: PathBuf,
        claimed: String,
        computed: String,
    },
    #[error("snapshot {path} holds height {height} digest {digest}, but height {expected_height} digest {expected_digest} was expected: get a snapshot of the agreed state")]
    SnapshotUnexpected {
        path: PathBuf,
        height: u64,
        digest: String,
        expected_height: u64,
        expected_digest: String,
    },
}

fn height_message(have: Option<u64>, given: u64) -> String {
    match have {
        None => format!("state is empty, block {given} given: commit block 0 first"),
        Some(h) if given <= h => {
            format!("state at height {h}, block {given} given: block {given} is already committed")
        }
        Some(h) => match h.checked_add(1) {
            Some(next) => format!("state at height {h}, block {given} given: commit {next} first"),
            None => format!("state at height {h}, the last possible height: no block can follow"),
        },
    }
}

fn hex32(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn db_err<E: Into<redb::Error>>(path: &Path) -> impl FnOnce(E) -> StateError + '_ {
    move |e| StateError::Db {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// LtHash16

/// The LtHash16 lattice of a multiset of entries: 1024 lanes of u16, each the sum mod 2^16 of
/// that lane over the entries' BLAKE3-XOF vectors. Adding and removing entries commute, so the
/// lattice (and [`LtHash::digest`]) depend only on the multiset, not on the order.
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(Box<[u16; LANES]>);

impl Default for LtHash {
    fn default() -> Self {
        LtHash(Box::new([0; LANES]))
    }
}

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", hex32(&self.digest()))
    }
}

impl LtHash {
    /// The lattice of the empty set.
    pub fn new() -> LtHash {
        LtHash::default()
    }

    /// Adds one entry.
    pub fn insert(&mut self, contract: &str, key: &[u8], value: &[u8], version: StateVersion) {
        let v = entry_vector(contract, key, value, version);
        self.add_bytes(&v, false);
    }

    /// Removes one entry (the inverse of [`LtHash::insert`]).
    pub fn remove(&mut self, contract: &str, key: &[u8], value: &[u8], version: StateVersion) {
        let v = entry_vector(contract, key, value, version);
        self.add_bytes(&v, true);
    }

    /// Lane-wise sum with another lattice.
    pub fn add(&mut self, other: &LtHash) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    fn add_bytes(&mut self, v: &[u8; LATTICE_BYTES], negate: bool) {
        for (a, c) in self.0.iter_mut().zip(v.chunks_exact(2)) {
            let x = u16::from_le_bytes([c[0], c[1]]);
            *a = if negate {
                a.wrapping_sub(x)
            } else {
                a.wrapping_add(x)
            };
        }
    }

    /// The lattice as 2048 bytes (lanes little-endian).
    pub fn to_bytes(&self) -> [u8; LATTICE_BYTES] {
        let mut out = [0u8; LATTICE_BYTES];
        for (o, a) in out.chunks_exact_mut(2).zip(self.0.iter()) {
            o.copy_from_slice(&a.to_le_bytes());
        }
        out
    }

    /// The lattice from [`LtHash::to_bytes`]; `None` unless exactly 2048 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<LtHash> {
        if bytes.len() != LATTICE_BYTES {
            return None;
        }
        let mut l = LtHash::new();
        for (a, c) in l.0.iter_mut().zip(bytes.chunks_exact(2)) {
            *a = u16::from_le_bytes([c[0], c[1]]);
        }
        Some(l)
    }

    /// The 32-byte digest: BLAKE3 (derive-key mode, context `"bpu state LtHash16 digest v1"`)
    /// of the lattice bytes.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        h.update(&self.to_bytes());
        *h.finalize().as_bytes()
    }
}

/// The 2048-byte vector of one entry: BLAKE3 XOF (derive-key mode, context
/// `"bpu state LtHash16 entry v1"`) of `u64 LE len(contract) ‖ contract ‖ u64 LE len(key) ‖ key ‖
/// u64 LE height ‖ u32 LE index ‖ u64 LE len(value) ‖ value`.
fn entry_vector(
    contract: &str,
    key: &[u8],
    value: &[u8],
    version: StateVersion,
) -> [u8; LATTICE_BYTES] {
    let mut h = blake3::Hasher::new_derive_key(ENTRY_CONTEXT);
    write_entry_encoding(contract, key, value, version, |part| {
        h.update(part);
    });
    let mut out = [0u8; LATTICE_BYTES];
    h.finalize_xof().fill(&mut out);
    out
}

/// The encoding of one entry that its LtHash16 vector hashes: `u64 LE len(contract) ‖ contract ‖
/// u64 LE len(key) ‖ key ‖ u64 LE height ‖ u32 LE index ‖ u64 LE len(value) ‖ value` (for
/// hardware that hashes it, e.g. the KV engine's LtHash16 unit).
pub fn entry_encoding(contract: &str, key: &[u8], value: &[u8], version: StateVersion) -> Vec<u8> {
    let mut out = Vec::with_capacity(36 + contract.len() + key.len() + value.len());
    write_entry_encoding(contract, key, value, version, |part| {
        out.extend_from_slice(part)
    });
    out
}

/// Feeds the parts of [`entry_encoding`] to `sink` in order (the single source of the encoding).
fn write_entry_encoding(
    contract: &str,
    key: &[u8],
    value: &[u8],
    version: StateVersion,
    mut sink: impl FnMut(&[u8]),
) {
    sink(&(contract.len() as u64).to_le_bytes());
    sink(contract.as_bytes());
    sink(&(key.len() as u64).to_le_bytes());
    sink(key);
    sink(&version.height.to_le_bytes());
    sink(&version.index.to_le_bytes());
    sink(&(value.len() as u64).to_le_bytes());
    sink(value);
}

/// The digest of a state computed from scratch over all its entries (for tests and replay
/// checks). Equals [`StateService::digest`] of a service holding exactly these entries. It is a
/// multiset hash: pass each (contract, key) once, as the state holds it.
pub fn state_digest_of<C, K, V>(
    entries: impl IntoIterator<Item = (C, K, V, StateVersion)>,
) -> [u8; 32]
where
    C: AsRef<str>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut l = LtHash::new();
    for (c, k, v, ver) in entries {
        l.insert(c.as_ref(), k.as_ref(), v.as_ref(), ver);
    }
    l.digest()
}

// ---------------------------------------------------------------------------------------------
// Database encodings

fn check_sizes(contract: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
    let check = |what, len, max| {
        if len > max {
            Err(StateError::TooLarge { what, len, max })
        } else {
            Ok(())
        }
    };
    check("contract name", contract.len(), MAX_CONTRACT)?;
    check("key", key.len(), MAX_KEY)?;
    check("value", value.map_or(0, <[u8]>::len), MAX_VALUE)
}

/// `u32 BE len(contract) ‖ contract ‖ key`. Callers checked the contract length.
fn db_key(contract: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + contract.len() + key.len());
    k.extend_from_slice(&(contract.len() as u32).to_be_bytes());
    k.extend_from_slice(contract.as_bytes());
    k.extend_from_slice(key);
    k
}

fn split_db_key(k: &[u8]) -> Option<(&str, &[u8])> {
    let len = u32::from_be_bytes(k.get(..4)?.try_into().ok()?) as usize;
    let contract = std::str::from_utf8(k.get(4..4 + len)?).ok()?;
    Some((contract, &k[4 + len..]))
}

fn db_value(version: StateVersion, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + value.len());
    v.extend_from_slice(&version.height.to_be_bytes());
    v.extend_from_slice(&version.index.to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn split_db_value(v: &[u8]) -> Option<(StateVersion, &[u8])> {
    let height = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let index = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
    Some((StateVersion { height, index }, &v[12..]))
}

/// Height and lattice as stored in `meta`, read inside one transaction.
struct Head {
    height: Option<u64>,
    lattice: LtHash,
}

fn read_head<T: ReadableTable<&'static str, &'static [u8]>>(
    meta: &T,
    path: &Path,
) -> Result<Head, StateError> {
    let corrupt = |detail: &str| StateError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let format = meta
        .get(META_FORMAT)
        .map_err(db_err(path))?
        .ok_or_else(|| corrupt("no format record"))?;
    let format: [u8; 4] = format
        .value()
        .try_into()
        .map_err(|_| corrupt("format record is not 4 bytes"))?;
    let format = u32::from_le_bytes(format);
    if format != DB_FORMAT {
        return Err(StateError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: format,
        });
    }
    let height = match meta.get(META_HEIGHT).map_err(db_err(path))? {
        None => None,
        Some(h) => Some(u64::from_le_bytes(
            h.value()
                .try_into()
                .map_err(|_| corrupt("height record is not 8 bytes"))?,
        )),
    };
    let lattice = meta
        .get(META_LATTICE)
        .map_err(db_err(path))?
        .ok_or_else(|| corrupt("no lattice record"))?;
    let lattice =
        LtHash::from_bytes(lattice.value()).ok_or_else(|| corrupt("lattice is not 2048 bytes"))?;
    Ok(Head { height, lattice })
}

fn begin_write(db: &Database, path: &Path) -> Result<WriteTransaction, StateError> {
    let mut txn = db.begin_write().map_err(db_err(path))?;
    // Immediate durability is redb's default; quick repair saves the allocator state with each
    // commit (instant recovery after a crash) and implies two-phase commit, which keeps a
    // crash from ever selecting a half-written commit slot, whatever the data written.
    txn.set_durability(redb::Durability::Immediate);
    txn.set_two_phase_commit(true);
    txn.set_quick_repair(true);
    Ok(txn)
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

// ---------------------------------------------------------------------------------------------
// The service

/// Height and digest after the last commit, for the non-failing accessors.
#[derive(Clone, Copy)]
struct Cached {
    height: Option<u64>,
    digest: [u8; 32],
}

/// A channel's state. `Send + Sync`: share it in an `Arc`; reads run concurrently with a commit.
pub struct StateService {
    db: Database,
    path: PathBuf,
    /// Serializes commits (redb does too; this keeps the cached head in step).
    commit_lock: Mutex<()>,
    cached: RwLock<Cached>,
}

impl std::fmt::Debug for StateService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = *self.cached.read();
        f.debug_struct("StateService")
            .field("path", &self.path)
            .field("height", &c.height)
            .field("digest", &hex32(&c.digest))
            .finish()
    }
}

impl StateService {
    /// Opens the state in directory `path` (its file is `path/state.redb`), creating both if
    /// absent. After a crash redb recovers the last completed commit.
    pub fn open(path: &Path) -> Result<StateService, StateError> {
        fs::create_dir_all(path).map_err(io_err(path))?;
        let file = path.join(DB_FILE);
        let db = Database::create(&file).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StateError::InUse { path: file.clone() },
            e => db_err(&file)(e),
        })?;
        let txn = begin_write(&db, &file)?;
        let head = {
            let mut meta = txn.open_table(META).map_err(db_err(&file))?;
            txn.open_table(ENTRIES).map_err(db_err(&file))?;
            if meta.get(META_FORMAT).map_err(db_err(&file))?.is_none() {
                meta.insert(META_FORMAT, &DB_FORMAT.to_le_bytes()[..])
                    .map_err(db_err(&file))?;
                meta.insert(META_LATTICE, &LtHash::new().to_bytes()[..])
                    .map_err(db_err(&file))?;
            }
            read_head(&meta, &file)?
        };
        txn.commit().map_err(db_err(&file))?;
        Ok(StateService {
            db,
            cached: RwLock::new(Cached {
                height: head.height,
                digest: head.lattice.digest(),
            }),
            path: file,
            commit_lock: Mutex::new(()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value and version of `key` in `contract`, `None` when absent.
    pub fn get(
        &self,
        contract: &str,
        key: &[u8],
    ) -> Result<Option<(Vec<u8>, StateVersion)>, StateError> {
        if contract.len() > MAX_CONTRACT || key.len() > MAX_KEY {
            return Ok(None);
        }
        let p = &self.path;
        let txn = self.db.begin_read().map_err(db_err(p))?;
        let table = txn.open_table(ENTRIES).map_err(db_err(p))?;
        let Some(v) = table.get(&db_key(contract, key)[..]).map_err(db_err(p))? else {
            return Ok(None);
        };
        let (version, value) =
            split_db_value(v.value()).ok_or_else(|| self.corrupt("short value"))?;
        Ok(Some((value.to_vec(), version)))
    }

    /// The last committed block height, `None` before the first commit.
    pub fn height(&self) -> Option<u64> {
        self.cached.read().height
    }

    /// The digest of all state after the last commit (of the empty state before the first).
    pub fn digest(&self) -> [u8; 32] {
        self.cached.read().digest
    }

    /// Applies one block's writes atomically and durably (fsync before returning), records
    /// `height` and returns the new digest.
    ///
    /// `height` must be exactly last + 1 (0 for an empty state), else [`StateError::Height`] and
    /// nothing changes. Several writes to one key: the last in `writes` wins. Deleting an absent
    /// key is a no-op. On any error nothing changes, except that after a [`StateError::Db`]
    /// from the final redb commit (an I/O failure while syncing) redb refuses further writes:
    /// drop the service and reopen it, which reports the height that is really on disk.
    pub fn commit(&self, height: u64, writes: &[StateWrite]) -> Result<[u8; 32], StateError> {
        for w in writes {
            check_sizes(&w.contract, &w.key, w.value.as_deref())?;
        }
        // Last write per key wins; then work in database-key order (B-tree locality).
        let mut last: HashMap<Vec<u8>, usize> = HashMap::with_capacity(writes.len());
        for (i, w) in writes.iter().enumerate() {
            last.insert(db_key(&w.contract, &w.key), i);
        }
        let mut ops: Vec<(Vec<u8>, usize)> = last.into_iter().collect();
        ops.sort_unstable();

        let p = &self.path;
        let _serial = self.commit_lock.lock();
        let txn = begin_write(&self.db, p)?;
        let lattice = {
            let mut meta = txn.open_table(META).map_err(db_err(p))?;
            let head = read_head(&meta, p)?;
            let expected = match head.height {
                None => Some(0),
                Some(h) => h.checked_add(1),
            };
            if expected != Some(height) {
                return Err(StateError::Height {
                    have: head.height,
                    given: height,
                });
            }
            let mut entries = txn.open_table(ENTRIES).map_err(db_err(p))?;
            // Old entries, copied out so the hashing can run in parallel.
            let mut olds: Vec<Old> = Vec::with_capacity(ops.len());
            for (k, _) in &ops {
                let old = match entries.get(&k[..]).map_err(db_err(p))? {
                    None => None,
                    Some(v) => {
                        let (ver, val) =
                            split_db_value(v.value()).ok_or_else(|| self.corrupt("short value"))?;
                        Some((ver, val.to_vec()))
                    }
                };
                olds.push(old);
            }
            let delta = |acc: &mut LtHash, (&(_, i), old): (&(Vec<u8>, usize), &Old)| {
                let w = &writes[i];
                if let Some((ver, val)) = old {
                    acc.remove(&w.contract, &w.key, val, *ver);
                }
                if let Some(val) = &w.value {
                    acc.insert(&w.contract, &w.key, val, w.version);
                }
            };
            let mut lattice = head.lattice;
            if ops.len() < PARALLEL_WRITES {
                for item in ops.iter().zip(olds.iter()) {
                    delta(&mut lattice, item);
                }
            } else {
                let sum = ops
                    .par_iter()
                    .zip(olds.par_iter())
                    .with_min_len(16)
                    .fold(LtHash::new, |mut acc, item| {
                        delta(&mut acc, item);
                        acc
                    })
                    .reduce(LtHash::new, |mut a, b| {
                        a.add(&b);
                        a
                    });
                lattice.add(&sum);
            }
            for ((k, i), old) in ops.iter().zip(olds.iter()) {
                let w = &writes[*i];
                match &w.value {
                    Some(val) => {
                        entries
                            .insert(&k[..], &db_value(w.version, val)[..])
                            .map_err(db_err(p))?;
                    }
                    None if old.is_some() => {
                        entries.remove(&k[..]).map_err(db_err(p))?;
                    }
                    None => {}
                }
            }
            meta.insert(META_HEIGHT, &height.to_le_bytes()[..])
                .map_err(db_err(p))?;
            meta.insert(META_LATTICE, &lattice.to_bytes()[..])
                .map_err(db_err(p))?;
            lattice
        };
        txn.commit().map_err(db_err(p))?;
        let digest = lattice.digest();
        *self.cached.write() = Cached {
            height: Some(height),
            digest,
        };
        Ok(digest)
    }

    /// Up to `limit` entries of `contract` whose key starts with `prefix`, in key order, as
    /// `(key, value, version)`.
    pub fn scan(
        &self,
        contract: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<ScanRow>, StateError> {
        self.scan_after(contract, prefix, None, limit)
    }

    /// Like [`StateService::scan`], starting after key `after` (for paging: pass the last key
    /// of the previous page).
    pub fn scan_after(
        &self,
        contract: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ScanRow>, StateError> {
        let mut out = Vec::new();
        if limit == 0 || contract.len() > MAX_CONTRACT {
            return Ok(out);
        }
        let p = &self.path;
        let start = db_key(contract, prefix);
        let from = match after {
            Some(a) if a >= prefix => Bound::Excluded(db_key(contract, a)),
            _ => Bound::Included(start.clone()),
        };
        let txn = self.db.begin_read().map_err(db_err(p))?;
        let table = txn.open_table(ENTRIES).map_err(db_err(p))?;
        let range = table
            .range::<&[u8]>((from.as_ref().map(|k| &k[..]), Bound::Unbounded))
            .map_err(db_err(p))?;
        for item in range {
            let (k, v) = item.map_err(db_err(p))?;
            let k = k.value();
            if !k.starts_with(&start) {
                break;
            }
            let (version, value) =
                split_db_value(v.value()).ok_or_else(|| self.corrupt("short value"))?;
            out.push((
                k[start.len() - prefix.len()..].to_vec(),
                value.to_vec(),
                version,
            ));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Calls `f(contract, key, value, version)` for every entry of one consistent read
    /// snapshot, in database order, and returns that snapshot's height.
    pub fn for_each(
        &self,
        mut f: impl FnMut(&str, &[u8], &[u8], StateVersion),
    ) -> Result<Option<u64>, StateError> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(db_err(p))?;
        let meta = txn.open_table(META).map_err(db_err(p))?;
        let head = read_head(&meta, p)?;
        let table = txn.open_table(ENTRIES).map_err(db_err(p))?;
        for item in table.iter().map_err(db_err(p))? {
            let (k, v) = item.map_err(db_err(p))?;
            let (contract, key) =
                split_db_key(k.value()).ok_or_else(|| self.corrupt("malformed key"))?;
            let (version, value) =
                split_db_value(v.value()).ok_or_else(|| self.corrupt("short value"))?;
            f(contract, key, value, version);
        }
        Ok(head.height)
    }

    /// Recomputes the digest from all entries and compares it with the stored lattice
    /// (O(state)); [`StateError::Corrupt`] when they differ.
    pub fn verify(&self) -> Result<[u8; 32], StateError> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(db_err(p))?;
        let meta = txn.open_table(META).map_err(db_err(p))?;
        let head = read_head(&meta, p)?;
        let table = txn.open_table(ENTRIES).map_err(db_err(p))?;
        let mut l = LtHash::new();
        for item in table.iter().map_err(db_err(p))? {
            let (k, v) = item.map_err(db_err(p))?;
            let (contract, key) =
                split_db_key(k.value()).ok_or_else(|| self.corrupt("malformed key"))?;
            let (version, value) =
                split_db_value(v.value()).ok_or_else(|| self.corrupt("short value"))?;
            l.insert(contract, key, value, version);
        }
        if l != head.lattice {
            return Err(self.corrupt("the stored lattice does not match the entries"));
        }
        Ok(l.digest())
    }

    fn corrupt(&self, detail: &str) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    /// Writes all state at the current height to `path` (via `path.partial`, fsynced and
    /// renamed, so `path` is either absent or complete). Runs on one read snapshot: commits may
    /// continue meanwhile. The entries are rehashed on the way and checked against the stored
    /// lattice, so a snapshot never carries a digest its entries do not have.
    pub fn write_snapshot(&self, path: &Path) -> Result<SnapshotInfo, StateError> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(db_err(p))?;
        let meta = txn.open_table(META).map_err(db_err(p))?;
        let head = read_head(&meta, p)?;
        let height = head.height.ok_or(StateError::Empty)?;
        let digest = head.lattice.digest();
        let table = txn.open_table(ENTRIES).map_err(db_err(p))?;
        let count = table.len().map_err(db_err(p))?;

        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial).map_err(io_err(&partial))?;
        let mut w = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hash: blake3::Hasher::new_derive_key(SNAPSHOT_CONTEXT),
            bytes: 0,
        };
        let result = (|| {
            let ioe = io_err(&partial);
            let mut header = Vec::with_capacity(SNAPSHOT_HEADER);
            header.extend_from_slice(SNAPSHOT_MAGIC);
            header.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
            header.extend_from_slice(&DIGEST_ALGORITHM.to_le_bytes());
            header.extend_from_slice(&height.to_le_bytes());
            header.extend_from_slice(&count.to_le_bytes());
            header.extend_from_slice(&digest);
            w.write_all(&header).map_err(ioe)?;
            let mut l = LtHash::new();
            let mut n = 0u64;
            for item in table.iter().map_err(db_err(p))? {
                let (k, v) = item.map_err(db_err(p))?;
                let (contract, key) =
                    split_db_key(k.value()).ok_or_else(|| self.corrupt("malformed key"))?;
                let (version, value) =
                    split_db_value(v.value()).ok_or_else(|| self.corrupt("short value"))?;
                l.insert(contract, key, value, version);
                write_record(&mut w, contract, key, value, version).map_err(io_err(&partial))?;
                n += 1;
            }
            if n != count {
                return Err(self.corrupt("the entry count does not match the table length"));
            }
            if l != head.lattice {
                return Err(self.corrupt("the stored lattice does not match the entries"));
            }
            let sum = *w.hash.finalize().as_bytes();
            w.write_all(SNAPSHOT_END).map_err(io_err(&partial))?;
            w.write_all(&sum).map_err(io_err(&partial))?;
            let bytes = w.bytes;
            let file = w.inner.into_inner().map_err(|e| StateError::Io {
                path: partial.clone(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(io_err(&partial))?;
            Ok(bytes)
        })();
        let bytes = match result {
            Ok(b) => b,
            Err(e) => {
                let _ = fs::remove_file(&partial);
                return Err(e);
            }
        };
        fs::rename(&partial, path).map_err(io_err(path))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(dir)?;
        }
        Ok(SnapshotInfo {
            height,
            digest,
            entries: count,
            bytes,
        })
    }

    /// Restores `snapshot` into the fresh state directory `db_path` (it must not hold a
    /// [`DB_FILE`] yet) and opens it. Checks the format, the file checksum and that the entries
    /// hash to the digest the snapshot claims; on any failure nothing is left behind. To trust
    /// a snapshot from a peer, compare its height and digest with agreed ones, e.g. with
    /// [`StateService::restore_snapshot_expecting`].
    pub fn restore_snapshot(db_path: &Path, snapshot: &Path) -> Result<StateService, StateError> {
        Self::restore(db_path, snapshot, None)
    }

    /// [`StateService::restore_snapshot`], also requiring the snapshot to hold `height` with
    /// `digest` (checked before any work).
    pub fn restore_snapshot_expecting(
        db_path: &Path,
        snapshot: &Path,
        height: u64,
        digest: [u8; 32],
    ) -> Result<StateService, StateError> {
        Self::restore(db_path, snapshot, Some((height, digest)))
    }

    fn restore(
        dir: &Path,
        snapshot: &Path,
        expect: Option<(u64, [u8; 32])>,
    ) -> Result<StateService, StateError> {
        let target = dir.join(DB_FILE);
        if target.exists() {
            return Err(StateError::NotFresh { path: target });
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let temp = dir.join(RESTORE_FILE);
        if temp.exists() {
            // Left by a restore that crashed; never renamed, so never a live state.
            fs::remove_file(&temp).map_err(io_err(&temp))?;
        }
        let result = restore_into(&temp, snapshot, expect);
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        fs::rename(&temp, &target).map_err(io_err(&target))?;
        sync_dir(dir)?;
        StateService::open(dir)
    }
}

/// Writes one snapshot record: `u32 len(contract) ‖ contract ‖ u32 len(key) ‖ key ‖ u64 height ‖
/// u32 index ‖ u32 len(value) ‖ value`, all little-endian.
fn write_record(
    w: &mut impl Write,
    contract: &str,
    key: &[u8],
    value: &[u8],
    version: StateVersion,
) -> io::Result<()> {
    w.write_all(&(contract.len() as u32).to_le_bytes())?;
    w.write_all(contract.as_bytes())?;
    w.write_all(&(key.len() as u32).to_le_bytes())?;
    w.write_all(key)?;
    w.write_all(&version.height.to_le_bytes())?;
    w.write_all(&version.index.to_le_bytes())?;
    w.write_all(&(value.len() as u32).to_le_bytes())?;
    w.write_all(value)
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a snapshot, hashing every byte, with typed errors for truncation.
struct SnapshotReader<'a> {
    inner: BufReader<File>,
    hash: blake3::Hasher,
    offset: u64,
    path: &'a Path,
}

impl SnapshotReader<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StateError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.hash.update(buf);
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(StateError::SnapshotTruncated {
                    path: self.path.to_path_buf(),
                    offset: self.offset,
                })
            }
            Err(e) => Err(io_err(self.path)(e)),
        }
    }
    fn u32(&mut self) -> Result<u32, StateError> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, StateError> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// A length field followed by that many bytes, refusing lengths above `max` before
    /// allocating.
    fn bytes(&mut self, what: &str, max: usize) -> Result<Vec<u8>, StateError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(self.format(format!(
                "{what} of {len} bytes at byte {} exceeds the limit {max}",
                self.offset - 4
            )));
        }
        let mut v = vec![0u8; len];
        self.read_exact(&mut v)?;
        Ok(v)
    }
    fn format(&self, detail: String) -> StateError {
        StateError::SnapshotFormat {
            path: self.path.to_path_buf(),
            detail,
        }
    }
}

fn restore_into(
    temp: &Path,
    snapshot: &Path,
    expect: Option<(u64, [u8; 32])>,
) -> Result<(), StateError> {
    let file = File::open(snapshot).map_err(io_err(snapshot))?;
    let mut r = SnapshotReader {
        inner: BufReader::with_capacity(1 << 20, file),
        hash: blake3::Hasher::new_derive_key(SNAPSHOT_CONTEXT),
        offset: 0,
        path: snapshot,
    };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(r.format("no BPUSTATE magic at the start".into()));
    }
    let format = r.u32()?;
    if format != SNAPSHOT_FORMAT {
        return Err(r.format(format!("snapshot format {format} is not supported")));
    }
    let algorithm = r.u32()?;
    if algorithm != DIGEST_ALGORITHM {
        return Err(r.format(format!("digest algorithm {algorithm} is not supported")));
    }
    let height = r.u64()?;
    let count = r.u64()?;
    let mut claimed = [0u8; 32];
    r.read_exact(&mut claimed)?;
    if let Some((h, d)) = expect {
        if (h, d) != (height, claimed) {
            return Err(StateError::SnapshotUnexpected {
                path: snapshot.to_path_buf(),
                height,
                digest: hex32(&claimed),
                expected_height: h,
                expected_digest: hex32(&d),
            });
        }
    }

    let db = Database::create(temp).map_err(db_err(temp))?;
    let mut lattice = LtHash::new();
    let mut previous: Option<Vec<u8>> = None;
    let mut done = 0u64;
    while done < count {
        let txn = begin_write(&db, temp)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(db_err(temp))?;
            let end = count.min(done + RESTORE_BATCH as u64);
            while done < end {
                let contract = r.bytes("contract name", MAX_CONTRACT)?;
                let contract = String::from_utf8(contract)
                    .map_err(|_| r.format(format!("entry {done}: contract name is not UTF-8")))?;
                let key = r.bytes("key", MAX_KEY)?;
                let version = StateVersion {
                    height: r.u64()?,
                    index: r.u32()?,
                };
                let value = r.bytes("value", MAX_VALUE)?;
                let k = db_key(&contract, &key);
                if previous.as_ref().is_some_and(|prev| *prev >= k) {
                    return Err(r.format(format!(
                        "entry {done} is out of order or repeated (entries must be sorted)"
                    )));
                }
                lattice.insert(&contract, &key, &value, version);
                entries
                    .insert(&k[..], &db_value(version, &value)[..])
                    .map_err(db_err(temp))?;
                previous = Some(k);
                done += 1;
            }
        }
        txn.commit().map_err(db_err(temp))?;
    }
    let sum = *r.hash.finalize().as_bytes();
    let mut trailer = [0u8; 40];
    r.read_exact(&mut trailer)?;
    if &trailer[..8] != SNAPSHOT_END {
        return Err(r.format(format!("no end marker after {count} entries")));
    }
    if trailer[8..] != sum {
        return Err(StateError::SnapshotChecksum {
            path: snapshot.to_path_buf(),
        });
    }
    let mut extra = [0u8; 1];
    if r.inner.read(&mut extra).map_err(io_err(snapshot))? != 0 {
        return Err(r.format("bytes after the end of the snapshot".into()));
    }
    let computed = lattice.digest();
    if computed != claimed {
        return Err(StateError::SnapshotDigest {
            path: snapshot.to_path_buf(),
            claimed: hex32(&claimed),
            computed: hex32(&computed),
        });
    }
    let txn = begin_write(&db, temp)?;
    {
        txn.open_table(ENTRIES).map_err(db_err(temp))?;
        let mut meta = txn.open_table(META).map_err(db_err(temp))?;
        meta.insert(META_FORMAT, &DB_FORMAT.to_le_bytes()[..])
            .map_err(db_err(temp))?;
        meta.insert(META_HEIGHT, &height.to_le_bytes()[..])
            .map_err(db_err(temp))?;
        meta.insert(META_LATTICE, &lattice.to_bytes()[..])
            .map_err(db_err(temp))?;
    }
    txn.commit().map_err(db_err(temp))?;
    drop(db);
    Ok(())
}
