//! Light verification for small clients: a block header and its certificate with only the
//! channel's validator set, and a transaction with its inclusion proof under such a header; no
//! node, no chain, one pairing check whatever the number of validators.

use crate::api::TxProof;
use crate::format::BlockHeader;
use bpu_consensus::bls::{QuorumCert, ValidatorSet};
pub use bpu_consensus::light::LightError;

/// Why a transaction proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightTxError {
    #[error("the block has no certificate (a solo-ordered channel): nothing proves it committed")]
    Uncertified,
    #[error(transparent)]
    Header(#[from] LightError),
    #[error("the transaction is not under the header's transaction root (bad inclusion proof)")]
    NotIncluded,
}

/// Checks that `header` was committed: `cert` is a quorum of `set`'s precommits for it.
pub fn verify_header(
    header: &BlockHeader,
    cert: &[u8],
    set: &ValidatorSet,
) -> Result<QuorumCert, LightTxError> {
    if cert.is_empty() {
        return Err(LightTxError::Uncertified);
    }
    Ok(bpu_consensus::light::verify_commit(
        &header.channel,
        header.height,
        &header.hash().0,
        cert,
        set,
    )?)
}

/// Checks a transaction proof end to end: the header is certified by `set`, and the
/// transaction (with its receipt's position) is included under the header's root.
pub fn verify_tx(proof: &TxProof, set: &ValidatorSet) -> Result<QuorumCert, LightTxError> {
    let qc = verify_header(&proof.header, &proof.cert, set)?;
    if !proof.verify() {
        return Err(LightTxError::NotIncluded);
    }
    Ok(qc)
}
