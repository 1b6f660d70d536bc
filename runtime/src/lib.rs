//! bpu-runtime: engine services over interchangeable backends: software on the CPU, or a BPU.
//!
//! Purpose: the ledger and gateway call services (`crypto` today: SHA-256, Merkle roots, ECDSA
//! P-256 verification) without knowing where the work runs. `Backend::Cpu` computes in
//! software (rayon across cores where batches are large);
//! `Backend::Bpu` drives any device the driver opens (`sim://…`, `vfio://…`), gathering the
//! requests that arrive together into a few batch commands and one doorbell.
//!
//! Invariants:
//! - Both backends return identical results for identical inputs; differential tests hold them
//!   to it (`runtime/tests/`).
//! - Every call returns within the device timeout: a stuck device is reset and the affected
//!   calls get `Error::Device`, later calls work again.
//!
//! Start reading at [`crypto::CryptoService::open`]; the contract VM is [`vm::Machine`], the
//! contract service [`contract::ContractService`], the ledger's versioned key-value state
//! [`state::StateService`].

pub mod contract;
pub mod crypto;
pub mod ecdsa;
pub mod merkle;
pub mod state;
mod verify_bpu;
pub mod vm;

pub use contract::{
    CallContext, CallOutcome, ContractConfig, ContractMetrics, ContractService, Program,
    StateReader,
};
pub use crypto::{CryptoMetrics, CryptoService, Digest};
pub use ecdsa::{cpu_verify, ParseError, PublicKey, Signature, SigningKey, VerifyRequest};

/// The version of a state key: the block height and the transaction index within that block
/// of the write that produced its current value. Shared by the state and contract services and
/// by the ledger's read/write sets (MVCC compares these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StateVersion {
    pub height: u64,
    pub index: u32,
}

/// Errors of runtime services.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("device: {0}")]
    Device(#[from] bpu_driver::Error),
    #[error("input too large: {0}")]
    TooLarge(String),
    #[error("the service is shutting down")]
    Closed,
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Parse(#[from] ecdsa::ParseError),
}

/// Result with the runtime's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
