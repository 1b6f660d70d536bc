//! Light verification: a committed block header checked with only the channel's validator set
//! and the header's certificate (no node, no chain); with a transaction's inclusion proof under
//! the header's root, a small client checks a transaction.

use crate::bls::{CertError, DecodeError, QuorumCert, ValidatorSet, VoteKind};

/// Why a header's certificate does not prove it committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightError {
    #[error("the certificate does not decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("the certificate is for height {cert}, the header is at {header}")]
    Height { cert: u64, header: u64 },
    #[error("the certificate is not a precommit certificate")]
    NotPrecommit,
    #[error("the certificate is for another block")]
    OtherBlock,
    #[error("the certificate does not verify: {0}")]
    Cert(#[from] CertError),
}

/// Checks that the header with hash `header_hash` at `height` of `channel` was committed: its
/// certificate `cert` (bytes as stored in the block) is a quorum of `set`'s precommits for
/// exactly this header. Costs one pairing check whatever the set's size.
pub fn verify_commit(
    channel: &str,
    height: u64,
    header_hash: &[u8; 32],
    cert: &[u8],
    set: &ValidatorSet,
) -> Result<QuorumCert, LightError> {
    let qc = QuorumCert::from_bytes(cert)?;
    if qc.height != height {
        return Err(LightError::Height {
            cert: qc.height,
            header: height,
        });
    }
    if qc.kind != VoteKind::Precommit {
        return Err(LightError::NotPrecommit);
    }
    if qc.block != Some(*header_hash) {
        return Err(LightError::OtherBlock);
    }
    qc.verify(channel, set)?;
    Ok(qc)
}
