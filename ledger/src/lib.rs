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
//! - A block is durable in the block store before its writes reach the state service; on start
//!   the node replays stored blocks the state lacks, so state is always a replay of the chain
//!   (from the genesis, or from a snapshot whose digest a certified block pins: [`fastsync`]).
//! - Ordering is behind [`order::Ordering`]: the solo orderer now, BFT consensus later; every
//!   emitted block extends the committed tip and carries its state digest.
//!
//! Start reading at [`format`] (the spec is `docs/formats.md`), then [`membership`], then
//! [`node::Node`] (the pipeline; theory of operation in `docs/ledger.md`), [`server`] and
//! [`client`]. [`p2p`] is the node-to-node transport for consensus (`docs/network.md`);
//! [`snapshot`] and [`fastsync`] let a node prune old blocks and a new node start from a
//! peer's state snapshot (`docs/consensus.md`, "Fast sync and pruning").

pub mod api;
pub mod bft;
pub mod client;
pub mod fastsync;
pub mod format;
pub mod light;
pub mod membership;
pub mod node;
pub mod order;
pub mod p2p;
pub mod server;
pub mod sigcache;
pub mod snapshot;
pub mod store;
pub mod system;
pub mod wal;

pub use format::{Block, BlockHeader, EndorsedTx, FormatError, Receipt, Transaction, TxBody, Wire};
pub use membership::{derive_bls, Genesis, Membership, Role, ValidatorKey, Validators};
