//! The client API's messages: requests, responses, rejections, transaction states, proofs and
//! events, shared by the node's TCP server and the Rust client (spec: docs/formats.md, "Client
//! protocol").

use crate::format::{BlockHeader, EndorsedTx, Event, Receipt, TxStatus};
use serde::{Deserialize, Serialize};

/// Protocol version of the client API; sent in [`Request::Hello`].
pub const PROTOCOL: u32 = 1;

/// Largest request other than [`Request::SubmitBatch`]: one transaction plus framing.
pub const MAX_REQUEST: usize = crate::format::limits::TX + 4096;
/// Most transactions in one [`Request::SubmitBatch`]. Chosen so that the answer always fits a
/// response frame: 256 rejections with the longest reason (a 64 KiB revert reason) encode to
/// less than [`MAX_RESPONSE`].
pub const MAX_BATCH: usize = 256;
/// Largest request frame, which only a [`Request::SubmitBatch`] may use beyond [`MAX_REQUEST`]:
/// 8 MiB (a full batch of token transfers is about 26 KiB; batches of large transactions must
/// also be split by size).
pub const MAX_BATCH_REQUEST: usize = 8 << 20;
/// Largest response frame: one block plus framing.
pub const MAX_RESPONSE: usize = crate::format::limits::BLOCK + 4096;

/// Why a transaction or query was refused before ordering.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("the transaction is for channel {got:?}; this node serves {expected:?}")]
    WrongChannel { got: String, expected: String },
    #[error("member {0} does not exist in the channel's membership")]
    UnknownMember(u32),
    #[error("member {member} lacks the {role} role needed here")]
    WrongRole { member: u32, role: String },
    #[error("the signature does not verify with the creator's key")]
    BadSignature,
    #[error("transaction {0} was submitted before (replay); use a new nonce")]
    Replay(String),
    #[error("contract reverted: {0}")]
    Reverted(String),
    #[error("unknown contract: {0}")]
    UnknownContract(String),
    #[error("the node is busy ({0}); retry later")]
    Busy(String),
    #[error("node failure: {0}")]
    Internal(String),
}

/// Where a transaction is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TxState {
    /// Never seen (or seen and rejected at submission).
    Unknown,
    /// Accepted, waiting for ordering or validation.
    Pending,
    /// In a committed block; `receipt.status` says whether it is valid.
    Committed(Receipt),
}

/// What a node says about itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub protocol: u32,
    pub channel: String,
    pub genesis_hash: [u8; 32],
    /// Last committed height.
    pub height: u64,
    pub block_hash: [u8; 32],
    /// State digest after `height`.
    pub state_digest: [u8; 32],
    /// The node's membership index.
    pub node: u32,
    /// Crypto backend, e.g. `cpu (2 threads)` or `sim://`.
    pub backend: String,
    /// Transactions accepted and not committed yet.
    pub pending: u64,
    /// Transactions committed since start (valid and invalid).
    pub committed_txs: u64,
}

/// A committed transaction with what proves it: the block header, and the RFC 6962 audit path
/// of its encoding under the header's transaction root.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TxProof {
    pub header: BlockHeader,
    pub tx: EndorsedTx,
    pub receipt: Receipt,
    /// Number of transactions in the block.
    pub block_txs: u32,
    pub path: Vec<[u8; 32]>,
    /// The block's quorum certificate (empty under solo ordering): with the validator set it
    /// proves the header committed (`light::verify_tx`).
    pub cert: Vec<u8>,
}

impl TxProof {
    /// Whether the transaction is included under `header.tx_root` (pure hashing, no node
    /// needed). Binding the header to the chain is the job of its certificate (consensus).
    pub fn verify(&self) -> bool {
        use crate::format::Wire;
        use bpu_runtime::{merkle, Digest};
        let leaf = merkle::leaf_hash(&self.tx.encode());
        let path: Vec<Digest> = self.path.iter().map(|p| Digest(*p)).collect();
        self.receipt.tx_id == self.tx.tx.id().0
            && self.receipt.height == self.header.height
            && merkle::verify(
                &leaf,
                self.receipt.index as usize,
                self.block_txs as usize,
                &path,
                &Digest(self.header.tx_root),
            )
    }
}

/// A position in the event stream: the next transaction to look at.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub height: u64,
    pub index: u32,
}

/// The events of one valid committed transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub height: u64,
    pub index: u32,
    pub tx_id: [u8; 32],
    pub contract: String,
    pub events: Vec<Event>,
}

impl EventRecord {
    /// The cursor that resumes right after this record.
    pub fn next(&self) -> Cursor {
        Cursor {
            height: self.height,
            index: self.index + 1,
        }
    }
}

/// A client request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// First message on a connection.
    Hello {
        protocol: u32,
    },
    Info,
    /// The membership index of a public key (SEC1).
    Member {
        key: Vec<u8>,
    },
    /// An encoded, signed [`crate::Transaction`].
    Submit {
        tx: Vec<u8>,
    },
    Status {
        id: [u8; 32],
    },
    /// A signed transaction run read-only on current state (never ordered); needs the reader
    /// role.
    Query {
        tx: Vec<u8>,
    },
    Block {
        height: u64,
    },
    Tx {
        id: [u8; 32],
    },
    /// Streams [`Response::Event`] from `from` on, then live, until the client hangs up.
    Subscribe {
        from: Cursor,
    },
    /// Encoded, signed transactions, at most [`MAX_BATCH`], each submitted as a
    /// [`Request::Submit`] would be; answered by [`Response::SubmittedBatch`] (or, for more than
    /// [`MAX_BATCH`], by `Rejected(Malformed)` with none of them submitted).
    SubmitBatch {
        txs: Vec<Vec<u8>>,
    },
}

/// A node's answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Hello {
        protocol: u32,
    },
    Info(NodeInfo),
    Member(Option<u32>),
    Submitted {
        id: [u8; 32],
    },
    Rejected(Rejection),
    Status(TxState),
    Query(Vec<u8>),
    /// An encoded [`crate::Block`], or none at that height yet.
    Block(Option<Vec<u8>>),
    Tx(Option<Box<TxProof>>),
    Event(EventRecord),
    /// The request could not be served (bad frame, storage failure…).
    Error(String),
    /// One answer per transaction of a [`Request::SubmitBatch`], in the request's order: the id
    /// (as `Submitted`) or the rejection (as `Rejected`) a single `Submit` would get.
    SubmittedBatch(Vec<Result<[u8; 32], Rejection>>),
}

/// The status a transaction got, as the client sees it, with its reason text.
pub fn status_text(s: TxStatus) -> &'static str {
    match s {
        TxStatus::Pending => "pending",
        TxStatus::Valid => "valid",
        TxStatus::BadSignature => "invalid: bad signature",
        TxStatus::UnknownMember => "invalid: unknown member",
        TxStatus::WrongRole => "invalid: wrong role",
        TxStatus::WrongChannel => "invalid: wrong channel",
        TxStatus::Replay => "invalid: replayed transaction",
        TxStatus::EndorsementPolicy => "invalid: endorsement policy not met",
        TxStatus::MvccConflict => "invalid: read conflict (MVCC), state changed since endorsement",
        TxStatus::Reverted => "invalid: reverted",
        TxStatus::UnknownContract => "invalid: unknown contract",
    }
}
