//! Merkle trees as in RFC 6962 (Certificate Transparency): the one definition both backends follow.
//!
//! Leaves are leaf hashes `SHA-256(0x00 || data)`; an inner node is `SHA-256(0x01 || left || right)`.
//! Built level by level, pairing neighbours and carrying an odd last node up unchanged, which
//! gives exactly RFC 6962's `MTH` (split at the largest power of two below n). The empty tree's
//! root is `SHA-256("")`.

use crate::crypto::Digest;
use sha2::{Digest as _, Sha256};

/// Prefix byte of a leaf hash.
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix byte of an inner node hash.
pub const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    Digest(h.finalize().into())
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Digest(h.finalize().into())
}

/// The next level up: pairs hashed, an odd last node carried.
pub fn next_level(level: &[Digest]) -> Vec<Digest> {
    let mut up: Vec<Digest> = level
        .chunks_exact(2)
        .map(|p| node_hash(&p[0], &p[1]))
        .collect();
    if level.len() % 2 == 1 {
        up.push(level[level.len() - 1]);
    }
    up
}

/// Root over leaf hashes, on the CPU.
pub fn root(leaves: &[Digest]) -> Digest {
    if leaves.is_empty() {
        return Digest(Sha256::digest([]).into());
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// Audit path for leaf `index`: the sibling hashes from the bottom up (RFC 6962 `PATH`).
pub fn proof(leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level = leaves.to_vec();
    let mut i = index;
    while level.len() > 1 {
        let sib = i ^ 1;
        if sib < level.len() {
            path.push(level[sib]);
        }
        level = next_level(&level);
        i /= 2;
    }
    Some(path)
}

/// Checks an audit path from [`proof`] against a root: what a light client does offline.
pub fn verify(leaf: &Digest, index: usize, size: usize, path: &[Digest], root: &Digest) -> bool {
    if index >= size {
        return false;
    }
    let (mut i, mut n, mut h) = (index, size, *leaf);
    let mut it = path.iter();
    while n > 1 {
        let sib = i ^ 1;
        if sib < n {
            let Some(s) = it.next() else { return false };
            h = if i % 2 == 0 {
                node_hash(&h, s)
            } else {
                node_hash(s, &h)
            };
        }
        i /= 2;
        n = n.div_ceil(2);
    }
    it.next().is_none() && h == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 section 2.1 `MTH`, written recursively as the RFC states it: an independent
    /// definition to check the level-by-level construction against.
    fn mth(leaves: &[Digest]) -> Digest {
        match leaves.len() {
            0 => Digest(Sha256::digest([]).into()),
            1 => leaves[0],
            n => {
                // k: the largest power of two smaller than n.
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn level_construction_equals_rfc6962_and_proofs_verify() {
        for n in 0..70usize {
            let leaves: Vec<Digest> = (0..n)
                .map(|i| leaf_hash(&(i as u32).to_le_bytes()))
                .collect();
            let r = root(&leaves);
            assert_eq!(r, mth(&leaves), "n = {n}");
            for i in 0..n {
                let p = proof(&leaves, i).expect("index in range");
                assert!(verify(&leaves[i], i, n, &p, &r), "proof n={n} i={i}");
                let wrong = leaf_hash(b"not a leaf");
                assert!(
                    !verify(&wrong, i, n, &p, &r),
                    "forged leaf accepted n={n} i={i}"
                );
            }
        }
    }

    #[test]
    fn known_answer_rfc6962_empty_and_single() {
        // RFC 6962 / CT test vectors: MTH of the empty tree and of the single empty leaf.
        assert_eq!(
            hex::encode(root(&[]).0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"").0),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
