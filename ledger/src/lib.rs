//! bpu-ledger: the ledger node that the BPU feeds (Execute–Order–Validate).
//!
//! Purpose: transaction and block formats, membership, the endorse → order → validate → commit
//! pipeline, storage and the client API. The ledger reaches crypto, contracts and state only
//! through `bpu-runtime` services, so every backend (cpu, sim://, vfio://) runs the same node.
//!
//! Invariants:
//! - Every message on the wire or on disk decodes strictly ([`format::Wire::decode`]): size
//!   limits, field limits, known version, and exactly one encoding per value, so ids, hashes and
//!   signatures over encodings are unambiguous.
//! - A transaction's id is the SHA-256 of its encoded body; its signature does not change it.
//!
//! Start reading at [`format`] (the spec is `docs/formats.md`), then [`membership`].

pub mod format;
pub mod membership;

pub use format::{Block, BlockHeader, EndorsedTx, FormatError, Receipt, Transaction, TxBody, Wire};
pub use membership::{Genesis, Membership, Role};
