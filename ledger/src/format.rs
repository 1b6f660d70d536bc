//! Wire formats of the ledger: transactions, endorsements, blocks, receipts (spec: docs/formats.md).
//!
//! Every top-level message is a versioned postcard encoding. Decoding is strict: the input must
//! fit the message's size limit, decode completely, pass the field limits, and re-encode to the
//! very same bytes (one encoding per value: no trailing bytes, no overlong varints), so that
//! hashes and signatures over encodings are unambiguous.

use bpu_runtime::merkle;
use bpu_runtime::{Digest, Signature, VerifyRequest};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The format version this code writes and reads.
pub const VERSION: u8 = 1;

/// Limits (bytes unless noted). Decoders reject anything larger.
pub mod limits {
    /// A channel name.
    pub const CHANNEL: usize = 32;
    /// Contract, method and event names.
    pub const NAME: usize = 64;
    /// Call arguments and contract responses.
    pub const ARGS: usize = 64 << 10;
    /// A state key.
    pub const KEY: usize = 256;
    /// A state value.
    pub const VALUE: usize = 64 << 10;
    /// Reads plus writes in one read/write set (entries).
    pub const RWSET_ENTRIES: usize = 4096;
    /// Event payload.
    pub const EVENT_DATA: usize = 4 << 10;
    /// Events per transaction (entries).
    pub const EVENTS: usize = 64;
    /// Endorsements per transaction (entries).
    pub const ENDORSEMENTS: usize = 32;
    /// One encoded transaction.
    pub const TX: usize = 128 << 10;
    /// One encoded endorsed transaction (transaction, results, endorsements).
    pub const ENDORSED_TX: usize = 1 << 20;
    /// One encoded block.
    pub const BLOCK: usize = 16 << 20;
    /// Transactions per block (entries).
    pub const BLOCK_TXS: usize = 65_535;
    /// A quorum certificate (opaque here; the consensus defines it).
    pub const CERT: usize = 64 << 10;
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{what} is {len} bytes, the limit is {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("format version {0} is not supported (this node reads version {VERSION})")]
    Version(u8),
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("not the canonical encoding (trailing bytes or overlong integers)")]
    NonCanonical,
    #[error("{0}")]
    Invalid(String),
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), FormatError> {
    if len > max {
        Err(FormatError::TooLarge { what, len, max })
    } else {
        Ok(())
    }
}

pub(crate) fn check_name(what: &'static str, s: &str, max: usize) -> Result<(), FormatError> {
    check_len(what, s.len(), max)?;
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(FormatError::Invalid(format!(
            "{what} {s:?} must be 1..{max} characters of [A-Za-z0-9_.-]"
        )))
    }
}

/// A top-level message: size limit, field checks, strict decoding.
pub trait Wire: Serialize + DeserializeOwned + Sized {
    /// Name in errors.
    const WHAT: &'static str;
    /// Largest encoding accepted.
    const MAX_BYTES: usize;

    /// Field limits and version (called by `decode`, and by `encode` callers that want to be
    /// sure what they send will be accepted).
    fn validate(&self) -> Result<(), FormatError>;

    /// The encoding.
    fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Strict decoding: size, structure, limits, canonical form.
    fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        check_len(Self::WHAT, bytes.len(), Self::MAX_BYTES)?;
        let v: Self =
            postcard::from_bytes(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
        v.validate()?;
        if v.encode() != bytes {
            return Err(FormatError::NonCanonical);
        }
        Ok(v)
    }
}

fn check_version(v: u8) -> Result<(), FormatError> {
    if v == VERSION {
        Ok(())
    } else {
        Err(FormatError::Version(v))
    }
}

/// An ECDSA P-256 signature, r and s as 32-byte big-endian integers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sig {
    pub r: [u8; 32],
    pub s: [u8; 32],
}

impl From<Signature> for Sig {
    fn from(s: Signature) -> Sig {
        Sig { r: s.r, s: s.s }
    }
}

impl From<Sig> for Signature {
    fn from(s: Sig) -> Signature {
        Signature { r: s.r, s: s.s }
    }
}

/// What a client asks for, before its signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TxBody {
    pub version: u8,
    pub channel: String,
    /// Chosen by the client; makes otherwise identical calls distinct transactions.
    pub nonce: u64,
    /// The signer, by its index in the channel's membership.
    pub creator: u32,
    pub contract: String,
    /// A pinned contract version; `None` calls the active one.
    pub contract_version: Option<u32>,
    pub method: String,
    pub args: Vec<u8>,
}

/// A signed transaction. Its id is SHA-256 of the encoded body, so the id does not depend on
/// the signature's encoding (no malleability through s ↔ n − s).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub body: TxBody,
    /// Over SHA-256 of the encoded body.
    pub sig: Sig,
}

impl TxBody {
    fn validate(&self) -> Result<(), FormatError> {
        check_version(self.version)?;
        check_name("channel", &self.channel, limits::CHANNEL)?;
        check_name("contract", &self.contract, limits::NAME)?;
        check_name("method", &self.method, limits::NAME)?;
        check_len("args", self.args.len(), limits::ARGS)
    }

    /// SHA-256 of the encoded body: the transaction id and the digest its creator signs.
    pub fn digest(&self) -> Digest {
        Digest(Sha256::digest(postcard::to_allocvec(self).unwrap_or_default()).into())
    }
}

impl Transaction {
    /// The transaction id.
    pub fn id(&self) -> Digest {
        self.body.digest()
    }

    /// The signature check for the crypto service, given the creator's public key.
    pub fn verify_request(&self, key: &bpu_runtime::PublicKey) -> VerifyRequest {
        VerifyRequest::new(key, &self.sig.into(), self.id().0)
    }
}

impl Wire for Transaction {
    const WHAT: &'static str = "transaction";
    const MAX_BYTES: usize = limits::TX;
    fn validate(&self) -> Result<(), FormatError> {
        self.body.validate()
    }
}

/// The state version of a key: the block height and transaction index that last wrote it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyVersion {
    pub height: u64,
    pub index: u32,
}

/// A key the execution read, with the version it saw (`None`: the key did not exist).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub key: Vec<u8>,
    pub version: Option<KeyVersion>,
}

/// A key the execution wrote (`None`: deleted).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// An event a contract emitted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: Vec<u8>,
}

/// What executing a transaction produced on an endorser: the read/write set (keys within the
/// transaction's contract and channel), the contract's response and events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExecResult {
    pub version: u8,
    /// The transaction this result is for.
    pub tx_id: [u8; 32],
    /// The contract version that ran.
    pub contract_version: u32,
    pub reads: Vec<Read>,
    pub writes: Vec<Write>,
    pub response: Vec<u8>,
    pub events: Vec<Event>,
}

impl ExecResult {
    fn validate(&self) -> Result<(), FormatError> {
        check_version(self.version)?;
        check_len(
            "read/write set entries",
            self.reads.len() + self.writes.len(),
            limits::RWSET_ENTRIES,
        )?;
        for r in &self.reads {
            check_len("key", r.key.len(), limits::KEY)?;
        }
        for w in &self.writes {
            check_len("key", w.key.len(), limits::KEY)?;
            if let Some(v) = &w.value {
                check_len("value", v.len(), limits::VALUE)?;
            }
        }
        check_len("response", self.response.len(), limits::ARGS)?;
        check_len("events", self.events.len(), limits::EVENTS)?;
        for e in &self.events {
            check_name("event name", &e.name, limits::NAME)?;
            check_len("event data", e.data.len(), limits::EVENT_DATA)?;
        }
        Ok(())
    }

    /// SHA-256 of the encoded result: what endorsers sign.
    pub fn digest(&self) -> Digest {
        Digest(Sha256::digest(postcard::to_allocvec(self).unwrap_or_default()).into())
    }
}

/// An endorser's signature over an [`ExecResult`] digest.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endorsement {
    /// Membership index of the endorsing node.
    pub endorser: u32,
    pub sig: Sig,
}

/// A transaction as the orderer receives it: the signed transaction, one execution result and
/// the endorsements over that result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EndorsedTx {
    pub tx: Transaction,
    pub result: ExecResult,
    pub endorsements: Vec<Endorsement>,
}

impl Wire for EndorsedTx {
    const WHAT: &'static str = "endorsed transaction";
    const MAX_BYTES: usize = limits::ENDORSED_TX;
    fn validate(&self) -> Result<(), FormatError> {
        self.tx.validate()?;
        self.result.validate()?;
        if self.result.tx_id != self.tx.id().0 {
            return Err(FormatError::Invalid(
                "the execution result is for another transaction".into(),
            ));
        }
        check_len(
            "endorsements",
            self.endorsements.len(),
            limits::ENDORSEMENTS,
        )
    }
}

/// What every node certifies about a block. The state digest is the one after the previous
/// block (so the proposer knows it), which certifies each state one block later.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub version: u8,
    pub channel: String,
    pub height: u64,
    /// Hash of the previous block's header (zero for the genesis block).
    pub prev_hash: [u8; 32],
    /// RFC 6962 Merkle root over the encoded endorsed transactions.
    pub tx_root: [u8; 32],
    /// Digest of all channel state after block `height − 1`.
    pub state_digest: [u8; 32],
    /// Proposer's clock, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Membership index of the proposer.
    pub proposer: u32,
}

impl BlockHeader {
    fn validate(&self) -> Result<(), FormatError> {
        check_version(self.version)?;
        check_name("channel", &self.channel, limits::CHANNEL)
    }

    /// The block hash: SHA-256 of the encoded header.
    pub fn hash(&self) -> Digest {
        Digest(Sha256::digest(postcard::to_allocvec(self).unwrap_or_default()).into())
    }
}

/// Outcome of validating one transaction of a block.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// Not validated yet (a block fresh from ordering).
    Pending,
    Valid,
    BadSignature,
    UnknownMember,
    WrongRole,
    WrongChannel,
    /// The transaction id was committed before.
    Replay,
    /// Not enough valid endorsements for the contract's policy.
    EndorsementPolicy,
    /// A key read has changed since the endorsement (MVCC).
    MvccConflict,
    /// The contract reverted (its reason is in the receipt).
    Reverted,
    /// The contract or version does not exist, or is not callable.
    UnknownContract,
}

/// A block: header, ordered transactions, and what validation decided (outside the header hash).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<EndorsedTx>,
    /// One status per transaction, `Pending` until validated.
    pub status: Vec<TxStatus>,
    /// The quorum certificate over the header hash (format of the consensus; empty for solo).
    pub cert: Vec<u8>,
}

impl Block {
    /// RFC 6962 Merkle root over the encoded transactions.
    pub fn tx_root(txs: &[EndorsedTx]) -> Digest {
        let leaves: Vec<Digest> = txs.iter().map(|t| merkle::leaf_hash(&t.encode())).collect();
        merkle::root(&leaves)
    }
}

impl Wire for Block {
    const WHAT: &'static str = "block";
    const MAX_BYTES: usize = limits::BLOCK;
    fn validate(&self) -> Result<(), FormatError> {
        self.header.validate()?;
        check_len("block transactions", self.txs.len(), limits::BLOCK_TXS)?;
        for t in &self.txs {
            t.validate()?;
            if t.tx.body.channel != self.header.channel {
                return Err(FormatError::Invalid(
                    "a transaction of another channel".into(),
                ));
            }
        }
        if self.status.len() != self.txs.len() {
            return Err(FormatError::Invalid(format!(
                "{} statuses for {} transactions",
                self.status.len(),
                self.txs.len()
            )));
        }
        check_len("certificate", self.cert.len(), limits::CERT)?;
        if Block::tx_root(&self.txs).0 != self.header.tx_root {
            return Err(FormatError::Invalid(
                "the transaction root does not match the transactions".into(),
            ));
        }
        Ok(())
    }
}

/// What a client learns about a committed transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub version: u8,
    pub tx_id: [u8; 32],
    pub height: u64,
    pub index: u32,
    pub status: TxStatus,
    /// The response, or the revert reason.
    pub response: Vec<u8>,
    pub events: Vec<Event>,
}

impl Wire for Receipt {
    const WHAT: &'static str = "receipt";
    const MAX_BYTES: usize = limits::ENDORSED_TX;
    fn validate(&self) -> Result<(), FormatError> {
        check_version(self.version)?;
        check_len("response", self.response.len(), limits::ARGS)?;
        check_len("events", self.events.len(), limits::EVENTS)?;
        for e in &self.events {
            check_name("event name", &e.name, limits::NAME)?;
            check_len("event data", e.data.len(), limits::EVENT_DATA)?;
        }
        Ok(())
    }
}
