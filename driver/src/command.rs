//! Typed commands: what each opcode takes, turned into submission entries.

use crate::dma::Iova;
use crate::regs::{Flag, HashDescriptor, Opcode, SubmissionEntry};

/// A command for the device. Addresses are IOVAs of DMA buffers that the submitter keeps
/// alive until the command completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Completes at once; measures command overhead.
    Nop,
    /// SHA-256 of `len` bytes at `src` (optionally after one `prefix` byte); digest to `dst`.
    Sha256 {
        src: Iova,
        len: u32,
        dst: Iova,
        prefix: Option<u8>,
    },
    /// SHA-256 of each of `count` messages described by the [`HashDescriptor`] table at
    /// `table`; digest i to `dst + 32 i`.
    Sha256Batch {
        table: Iova,
        count: u32,
        dst: Iova,
        prefix: Option<u8>,
    },
    /// `dst + 32 i = SHA-256(0x01 || 64 bytes at src + 64 i)` for `i < pairs`.
    MerkleLevel { src: Iova, pairs: u32, dst: Iova },
    /// Verify `count` ECDSA P-256 signatures given as [`EcdsaRecord`](crate::regs::EcdsaRecord)s
    /// at `records`; bit `i % 8` of byte `i / 8` at `bitmap` tells whether record i is valid.
    /// The completion's result is the number of valid signatures.
    EcdsaVerify {
        records: Iova,
        count: u32,
        bitmap: Iova,
    },
}

fn prefix_fields(prefix: Option<u8>) -> (u8, u32) {
    match prefix {
        Some(b) => (Flag::Prefix as u8, u32::from(b)),
        None => (0, 0),
    }
}

impl Command {
    /// The submission entry for this command (`cid` is filled in by the queue).
    pub fn entry(&self) -> SubmissionEntry {
        let mut e = SubmissionEntry::default();
        match *self {
            Command::Nop => e.opcode = Opcode::Nop as u8,
            Command::Sha256 {
                src,
                len,
                dst,
                prefix,
            } => {
                e.opcode = Opcode::Sha256 as u8;
                (e.flags, e.arg0) = prefix_fields(prefix);
                e.src = src.0;
                e.len = len;
                e.dst = dst.0;
            }
            Command::Sha256Batch {
                table,
                count,
                dst,
                prefix,
            } => {
                e.opcode = Opcode::Sha256Batch as u8;
                (e.flags, e.arg0) = prefix_fields(prefix);
                e.src = table.0;
                e.count = count;
                e.dst = dst.0;
            }
            Command::MerkleLevel { src, pairs, dst } => {
                e.opcode = Opcode::MerkleLevel as u8;
                e.src = src.0;
                e.count = pairs;
                e.dst = dst.0;
            }
            Command::EcdsaVerify {
                records,
                count,
                bitmap,
            } => {
                e.opcode = Opcode::EcdsaP256Verify as u8;
                e.src = records.0;
                e.count = count;
                e.dst = bitmap.0;
            }
        }
        e
    }
}

/// A descriptor for one message of a SHA256_BATCH table.
pub fn hash_descriptor(addr: Iova, len: u32) -> HashDescriptor {
    HashDescriptor {
        addr: addr.0,
        len,
        rsvd: 0,
    }
}
