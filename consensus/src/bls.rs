//! BLS12-381 votes and quorum certificates (blst, min_pk, proof of possession); spec: `docs/consensus-certs.md`.
//!
//! Public keys are G1 points (48 bytes compressed), signatures G2 points (96 bytes compressed),
//! ciphersuite `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`. Every validator key is admitted
//! to a [`ValidatorSet`] only with a proof of possession, which is what makes it safe to add
//! public keys: all validators sign the same [`vote_message`] for the same vote, so a
//! [`QuorumCert`] is checked with G1 additions plus one pairing check, whatever the number of
//! signers.
//!
//! Invariants:
//! - A [`BlsPublicKey`] is always a valid G1 point of the prime-order subgroup, not infinity.
//! - A [`BlsSignature`] is always a valid G2 point of the prime-order subgroup, not infinity
//!   (checked on decode, so verification skips the group check).
//! - A [`ValidatorSet`] holds distinct keys whose proofs of possession verified.

use std::fmt;
use std::sync::Arc;

use blst::min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, SecretKey, Signature};
use blst::BLST_ERROR;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Domain separation tag of vote signatures (IETF BLS draft, proof-of-possession scheme).
pub const SIG_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Domain separation tag of proofs of possession (IETF BLS draft, `PopProve`).
pub const POP_DST: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Prefix of every vote message, so a vote signature means nothing in another context.
pub const VOTE_DOMAIN: &[u8] = b"bpu.consensus.vote.v1";
/// Prefix hashed into a validator set's identifier.
pub const SET_DOMAIN: &[u8] = b"bpu.consensus.validator-set.v1";
/// Domain of the message a proposer signs for its proposal.
pub const PROPOSAL_DOMAIN: &[u8] = b"bpu.consensus.proposal.v1";

/// Bytes of a secret key (big-endian scalar).
pub const SECRET_KEY_LEN: usize = 32;
/// Bytes of a compressed public key (G1).
pub const PUBLIC_KEY_LEN: usize = 48;
/// Bytes of a compressed signature (G2).
pub const SIGNATURE_LEN: usize = 96;
/// Most validators in one set (a certificate's bitmap is then at most 512 bytes).
pub const MAX_VALIDATORS: usize = 4096;
/// Version byte of the certificate encoding.
pub const CERT_VERSION: u8 = 1;
/// Largest encoded certificate (`QuorumCert::to_bytes`), far below the ledger's 64 KiB.
pub const MAX_CERT_LEN: usize =
    1 + 32 + 8 + 4 + 1 + 1 + 32 + 2 + MAX_VALIDATORS / 8 + SIGNATURE_LEN;

/// Why a point was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PointError {
    #[error("wrong length or not the compressed encoding")]
    Encoding,
    #[error("not on the curve")]
    NotOnCurve,
    #[error("not in the prime-order subgroup")]
    NotInGroup,
    #[error("the point at infinity")]
    Infinity,
}

impl From<BLST_ERROR> for PointError {
    fn from(e: BLST_ERROR) -> Self {
        match e {
            BLST_ERROR::BLST_POINT_NOT_ON_CURVE => PointError::NotOnCurve,
            BLST_ERROR::BLST_POINT_NOT_IN_GROUP => PointError::NotInGroup,
            BLST_ERROR::BLST_PK_IS_INFINITY => PointError::Infinity,
            _ => PointError::Encoding,
        }
    }
}

/// Errors of keys, signatures and validator sets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlsError {
    #[error("secret key bytes are not a scalar in 1..r")]
    BadSecretKey,
    #[error("key material must be at least 32 bytes, got {0}")]
    ShortIkm(usize),
    #[error("bad public key: {0}")]
    BadPublicKey(PointError),
    #[error("bad signature: {0}")]
    BadSignature(PointError),
    #[error("validator {0}: the proof of possession does not verify")]
    BadPop(usize),
    #[error("validator {index} repeats the key of validator {first}")]
    DuplicateKey { index: usize, first: usize },
    #[error("a validator set needs at least one validator")]
    EmptySet,
    #[error("{0} validators exceed the limit of {MAX_VALIDATORS}")]
    TooManyValidators(usize),
}

/// Why a certificate does not certify its vote for a set.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    #[error("the certificate names another validator set")]
    WrongSet,
    #[error("signer bitmap has {got} bytes, the set needs {want}")]
    BadBitmap { got: usize, want: usize },
    #[error("signer {0} is not a validator of the set")]
    UnknownSigner(usize),
    #[error("{got} signers, a quorum needs {need}")]
    TooFewSigners { got: usize, need: usize },
    #[error("the aggregate signature does not verify")]
    BadSignature,
}

/// Why bytes are not a certificate encoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated")]
    Truncated,
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("{0} bytes exceed the limit of {MAX_CERT_LEN}")]
    TooLong(usize),
    #[error("unknown version {0}")]
    Version(u8),
    #[error("unknown vote kind {0}")]
    Kind(u8),
    #[error("block tag {0} is neither 0 (nil) nor 1")]
    BlockTag(u8),
    #[error("bitmap of {0} bytes is empty or exceeds {max}", max = MAX_VALIDATORS / 8)]
    BitmapLength(usize),
    #[error("bad signature: {0}")]
    Signature(PointError),
}

/// Why an individual vote was refused by an [`Aggregator`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VoteError {
    #[error("validator {0} is not in the set")]
    UnknownValidator(u32),
    #[error("validator {0}: the vote signature does not verify")]
    BadSignature(u32),
}

// ---------------------------------------------------------------------------------------------
// Fixed-size byte arrays in serde: a hex string for human-readable formats, a tuple of N bytes
// (N raw bytes in postcard) otherwise.

mod fixed {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer, const N: usize>(b: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(b))
        } else {
            let mut t = s.serialize_tuple(N)?;
            for x in b {
                t.serialize_element(x)?;
            }
            t.end()
        }
    }

    struct ArrayVisitor<const N: usize>;

    impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; N], E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let v = hex::decode(&s).map_err(D::Error::custom)?;
            v.as_slice()
                .try_into()
                .map_err(|_| D::Error::invalid_length(v.len(), &ArrayVisitor::<N>))
        } else {
            d.deserialize_tuple(N, ArrayVisitor::<N>)
        }
    }
}

macro_rules! serde_via_bytes {
    ($t:ty, $n:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                fixed::serialize::<S, $n>(&self.to_bytes(), s)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let b = fixed::deserialize::<D, $n>(d)?;
                <$t>::from_bytes(&b).map_err(serde::de::Error::custom)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures.

/// A validator's secret key. Not `Serialize` on purpose (use `to_bytes` where it must be
/// stored); its `Debug` hides the value; blst zeroes it on drop.
#[derive(Clone)]
pub struct BlsSecretKey(SecretKey);

impl BlsSecretKey {
    /// A fresh key from 32 bytes of OS randomness.
    pub fn generate() -> Self {
        let mut ikm = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut ikm);
        let key = Self::from_ikm(&ikm);
        ikm.fill(0);
        // 32 bytes of IKM is always enough, so `from_ikm` cannot fail here.
        key.unwrap_or_else(|_| unreachable!("32 bytes of IKM"))
    }

    /// The key derived from input key material (at least 32 bytes) by the draft's `KeyGen`.
    pub fn from_ikm(ikm: &[u8]) -> Result<Self, BlsError> {
        SecretKey::key_gen(ikm, &[])
            .map(Self)
            .map_err(|_| BlsError::ShortIkm(ikm.len()))
    }

    /// The 32-byte big-endian scalar.
    pub fn to_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        self.0.to_bytes()
    }

    /// A key from its 32-byte big-endian scalar (must be in 1..r).
    pub fn from_bytes(b: &[u8]) -> Result<Self, BlsError> {
        SecretKey::from_bytes(b)
            .map(Self)
            .map_err(|_| BlsError::BadSecretKey)
    }

    pub fn public_key(&self) -> BlsPublicKey {
        BlsPublicKey::from_point(self.0.sk_to_pk())
    }

    /// Sign `msg` under [`SIG_DST`].
    pub fn sign(&self, msg: &[u8]) -> BlsSignature {
        BlsSignature::from_point(self.0.sign(msg, SIG_DST, &[]))
    }

    /// Sign the vote message of these fields (see [`vote_message`]).
    pub fn sign_vote(
        &self,
        channel: &str,
        height: u64,
        round: u32,
        kind: VoteKind,
        block: Option<[u8; 32]>,
    ) -> BlsSignature {
        self.sign(&vote_message(channel, height, round, kind, block))
    }

    /// The proof of possession of this key: `PopProve` of the IETF draft.
    pub fn prove_possession(&self) -> ProofOfPossession {
        let pk = self.public_key();
        ProofOfPossession(BlsSignature::from_point(self.0.sign(
            &pk.bytes,
            POP_DST,
            &[],
        )))
    }
}

impl fmt::Debug for BlsSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlsSecretKey(..)")
    }
}

/// A validator's public key: a G1 point of the subgroup, not infinity.
#[derive(Clone, Copy)]
pub struct BlsPublicKey {
    point: PublicKey,
    bytes: [u8; PUBLIC_KEY_LEN],
}

impl BlsPublicKey {
    fn from_point(point: PublicKey) -> Self {
        Self {
            point,
            bytes: point.compress(),
        }
    }

    /// The 48-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.bytes
    }

    /// Decode a compressed key and check it (`KeyValidate`): on the curve, in the subgroup,
    /// not infinity. Exactly 48 bytes; the uncompressed form is refused.
    pub fn from_bytes(b: &[u8]) -> Result<Self, BlsError> {
        let point = PublicKey::uncompress(b).map_err(|e| BlsError::BadPublicKey(e.into()))?;
        point
            .validate()
            .map_err(|e| BlsError::BadPublicKey(e.into()))?;
        let key = Self::from_point(point);
        // blst rejects non-canonical field elements; re-encoding guards the rest.
        if key.bytes[..] != *b {
            return Err(BlsError::BadPublicKey(PointError::Encoding));
        }
        Ok(key)
    }

    /// Whether `sig` is this key's signature of `msg` under [`SIG_DST`].
    pub fn verify(&self, msg: &[u8], sig: &BlsSignature) -> bool {
        sig.point
            .verify(false, msg, SIG_DST, &[], &self.point, false)
            == BLST_ERROR::BLST_SUCCESS
    }

    /// Whether `pop` proves possession of this key (`PopVerify`).
    pub fn verify_possession(&self, pop: &ProofOfPossession) -> bool {
        pop.0
            .point
            .verify(false, &self.bytes, POP_DST, &[], &self.point, false)
            == BLST_ERROR::BLST_SUCCESS
    }
}

impl PartialEq for BlsPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for BlsPublicKey {}
impl std::hash::Hash for BlsPublicKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.bytes.hash(h)
    }
}
impl fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsPublicKey({})", hex::encode(self.bytes))
    }
}
serde_via_bytes!(BlsPublicKey, PUBLIC_KEY_LEN);

/// A signature (individual or aggregate): a G2 point of the subgroup, not infinity.
#[derive(Clone, Copy)]
pub struct BlsSignature {
    point: Signature,
    bytes: [u8; SIGNATURE_LEN],
}

impl BlsSignature {
    fn from_point(point: Signature) -> Self {
        Self {
            point,
            bytes: point.compress(),
        }
    }

    /// The 96-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.bytes
    }

    /// Decode a compressed signature and check it: on the curve, in the subgroup, not
    /// infinity. Exactly 96 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, BlsError> {
        let point = Signature::uncompress(b).map_err(|e| BlsError::BadSignature(e.into()))?;
        point
            .validate(true)
            .map_err(|e| BlsError::BadSignature(e.into()))?;
        let sig = Self::from_point(point);
        if sig.bytes[..] != *b {
            return Err(BlsError::BadSignature(PointError::Encoding));
        }
        Ok(sig)
    }

    /// The sum of signatures (G2 additions); `None` for an empty list. No signature is
    /// checked here: [`Aggregator`] checks each vote before it enters a sum.
    pub fn aggregate(sigs: &[BlsSignature]) -> Option<BlsSignature> {
        let (first, rest) = sigs.split_first()?;
        let mut sum = AggregateSignature::from_signature(&first.point);
        for s in rest {
            let _ = sum.add_signature(&s.point, false);
        }
        Some(BlsSignature::from_point(sum.to_signature()))
    }
}

impl PartialEq for BlsSignature {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for BlsSignature {}
impl fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsSignature({})", hex::encode(self.bytes))
    }
}
serde_via_bytes!(BlsSignature, SIGNATURE_LEN);

/// A proof of possession: the key's signature of its own compressed encoding under
/// [`POP_DST`]. Checked once, when a [`ValidatorSet`] is built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ProofOfPossession(pub BlsSignature);

impl ProofOfPossession {
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0.to_bytes()
    }
    pub fn from_bytes(b: &[u8]) -> Result<Self, BlsError> {
        BlsSignature::from_bytes(b).map(Self)
    }
}
serde_via_bytes!(ProofOfPossession, SIGNATURE_LEN);

// ---------------------------------------------------------------------------------------------
// Votes.

/// The two vote steps of a round (shared by the protocol core and the certificates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VoteKind {
    Prevote = 1,
    Precommit = 2,
}

impl VoteKind {
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(VoteKind::Prevote),
            2 => Some(VoteKind::Precommit),
            _ => None,
        }
    }
}

/// The bytes every validator signs for this vote (layout in `docs/consensus-certs.md`):
/// `VOTE_DOMAIN ‖ u64 BE channel length ‖ channel ‖ u64 BE height ‖ u32 BE round ‖ u8 kind ‖
/// u8 0 (nil) | u8 1 ‖ 32-byte block hash`.
pub fn vote_message(
    channel: &str,
    height: u64,
    round: u32,
    kind: VoteKind,
    block: Option<[u8; 32]>,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(VOTE_DOMAIN.len() + 8 + channel.len() + 8 + 4 + 2 + 32);
    m.extend_from_slice(VOTE_DOMAIN);
    m.extend_from_slice(&(channel.len() as u64).to_be_bytes());
    m.extend_from_slice(channel.as_bytes());
    m.extend_from_slice(&height.to_be_bytes());
    m.extend_from_slice(&round.to_be_bytes());
    m.push(kind.code());
    match block {
        None => m.push(0),
        Some(h) => {
            m.push(1);
            m.extend_from_slice(&h);
        }
    }
    m
}

/// The bytes a proposer signs for its proposal of `block` at (height, round):
/// `PROPOSAL_DOMAIN ‖ u64 BE channel length ‖ channel ‖ u64 BE height ‖ u32 BE round ‖
/// u8 0 | u8 1 ‖ u32 BE valid round ‖ 32-byte block hash`.
pub fn proposal_message(
    channel: &str,
    height: u64,
    round: u32,
    valid_round: Option<u32>,
    block: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(PROPOSAL_DOMAIN.len() + 8 + channel.len() + 8 + 4 + 5 + 32);
    m.extend_from_slice(PROPOSAL_DOMAIN);
    m.extend_from_slice(&(channel.len() as u64).to_be_bytes());
    m.extend_from_slice(channel.as_bytes());
    m.extend_from_slice(&height.to_be_bytes());
    m.extend_from_slice(&round.to_be_bytes());
    match valid_round {
        None => m.push(0),
        Some(r) => {
            m.push(1);
            m.extend_from_slice(&r.to_be_bytes());
        }
    }
    m.extend_from_slice(block);
    m
}

// ---------------------------------------------------------------------------------------------
// Validator sets.

/// The validators of a channel, in membership order: index i votes with `keys()[i]`.
#[derive(Clone, Debug)]
pub struct ValidatorSet {
    keys: Vec<BlsPublicKey>,
    id: [u8; 32],
    /// Sum of all keys, so a certificate signed by most validators subtracts the few absent.
    total: AggregatePublicKey,
}

impl ValidatorSet {
    /// Build a set from keys with their proofs of possession; every proof is verified (one
    /// pairing check each), keys must be distinct, 1..=MAX_VALIDATORS of them.
    pub fn new(keys_with_pops: Vec<(BlsPublicKey, ProofOfPossession)>) -> Result<Self, BlsError> {
        let n = keys_with_pops.len();
        if n == 0 {
            return Err(BlsError::EmptySet);
        }
        if n > MAX_VALIDATORS {
            return Err(BlsError::TooManyValidators(n));
        }
        let mut seen = std::collections::HashMap::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        for (i, (pk, pop)) in keys_with_pops.into_iter().enumerate() {
            if let Some(&first) = seen.get(&pk.bytes) {
                return Err(BlsError::DuplicateKey { index: i, first });
            }
            if !pk.verify_possession(&pop) {
                return Err(BlsError::BadPop(i));
            }
            seen.insert(pk.bytes, i);
            keys.push(pk);
        }
        let mut h = Sha256::new();
        h.update(SET_DOMAIN);
        h.update((n as u32).to_be_bytes());
        for k in &keys {
            h.update(k.bytes);
        }
        let id: [u8; 32] = h.finalize().into();
        let mut total = AggregatePublicKey::from_public_key(&keys[0].point);
        for k in &keys[1..] {
            // Keys were validated on decode.
            let _ = total.add_public_key(&k.point, false);
        }
        Ok(Self { keys, id, total })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[BlsPublicKey] {
        &self.keys
    }

    pub fn key(&self, index: u32) -> Option<&BlsPublicKey> {
        self.keys.get(index as usize)
    }

    /// Votes needed for a certificate: ⌊2n/3⌋ + 1 (n = 3f+1 gives 2f+1).
    pub fn quorum(&self) -> usize {
        2 * self.keys.len() / 3 + 1
    }

    /// Most faulty validators tolerated: ⌊(n−1)/3⌋.
    pub fn max_faulty(&self) -> usize {
        (self.keys.len() - 1) / 3
    }

    /// SHA-256(SET_DOMAIN ‖ u32 BE n ‖ key₀ ‖ … ‖ keyₙ₋₁), named by certificates.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// Bytes of a signer bitmap for this set: ⌈n/8⌉.
    pub fn bitmap_len(&self) -> usize {
        self.keys.len().div_ceil(8)
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates.

fn bit(bitmap: &[u8], i: usize) -> bool {
    (bitmap[i / 8] >> (i % 8)) & 1 == 1
}

/// A quorum certificate: an aggregate of the signatures of a quorum of one set's validators on
/// one vote message. `signers` is a bitmap, bit i (LSB-first within byte i/8) = validator i.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCert {
    pub set_id: [u8; 32],
    pub height: u64,
    pub round: u32,
    pub kind: VoteKind,
    pub block: Option<[u8; 32]>,
    pub signers: Vec<u8>,
    pub signature: BlsSignature,
}

impl QuorumCert {
    /// Indexes of the signers, ascending (bits beyond the bitmap's length are not there).
    pub fn signer_indexes(&self) -> Vec<usize> {
        (0..self.signers.len() * 8)
            .filter(|&i| bit(&self.signers, i))
            .collect()
    }

    /// The vote message this certificate signs for `channel`.
    pub fn message(&self, channel: &str) -> Vec<u8> {
        vote_message(channel, self.height, self.round, self.kind, self.block)
    }

    /// Check that a quorum of `set` signed this vote in `channel`: set identifier, bitmap
    /// length, no signer beyond n, at least a quorum of signers, then the aggregate public key
    /// of the signers (G1 additions) and one pairing check (`FastAggregateVerify`).
    pub fn verify(&self, channel: &str, set: &ValidatorSet) -> Result<(), CertError> {
        if self.set_id != set.id {
            return Err(CertError::WrongSet);
        }
        let n = set.len();
        let want = set.bitmap_len();
        if self.signers.len() != want {
            return Err(CertError::BadBitmap {
                got: self.signers.len(),
                want,
            });
        }
        if let Some(i) = (n..want * 8).find(|&i| bit(&self.signers, i)) {
            return Err(CertError::UnknownSigner(i));
        }
        let got: usize = self.signers.iter().map(|b| b.count_ones() as usize).sum();
        let need = set.quorum();
        if got < need {
            return Err(CertError::TooFewSigners { got, need });
        }
        let agg = aggregate_keys(set, &self.signers);
        let msg = self.message(channel);
        // The signature was group-checked when decoded; keys were checked with their PoP.
        let r = self.signature.point.fast_aggregate_verify_pre_aggregated(
            false,
            &msg,
            SIG_DST,
            &agg.to_public_key(),
        );
        if r == BLST_ERROR::BLST_SUCCESS {
            Ok(())
        } else {
            Err(CertError::BadSignature)
        }
    }

    /// The canonical encoding (layout in `docs/consensus-certs.md`):
    /// `u8 version=1 ‖ set_id[32] ‖ u64 BE height ‖ u32 BE round ‖ u8 kind ‖ u8 0 | u8 1 ‖
    /// hash[32] ‖ u16 BE bitmap length ‖ bitmap ‖ signature[96]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b =
            Vec::with_capacity(1 + 32 + 8 + 4 + 2 + 32 + 2 + self.signers.len() + SIGNATURE_LEN);
        b.push(CERT_VERSION);
        b.extend_from_slice(&self.set_id);
        b.extend_from_slice(&self.height.to_be_bytes());
        b.extend_from_slice(&self.round.to_be_bytes());
        b.push(self.kind.code());
        match self.block {
            None => b.push(0),
            Some(h) => {
                b.push(1);
                b.extend_from_slice(&h);
            }
        }
        // A bitmap over 65,535 bytes fits no set (≤ 512 bytes) and is never built here; it is
        // written with length 0 and no bitmap, which `from_bytes` refuses, rather than a
        // truncated length that would decode as another value.
        let len = u16::try_from(self.signers.len()).unwrap_or(0);
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&self.signers[..len as usize]);
        b.extend_from_slice(&self.signature.bytes);
        b
    }

    /// Decode the encoding of [`QuorumCert::to_bytes`], strictly: known version and kind, block
    /// tag 0 or 1, bitmap of 1..=MAX_VALIDATORS/8 bytes, a valid signature point, no trailing
    /// bytes. Whether the bitmap fits a set is `verify`'s job.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() > MAX_CERT_LEN {
            return Err(DecodeError::TooLong(b.len()));
        }
        let mut r = Reader(b);
        let version = r.u8()?;
        if version != CERT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let set_id = r.array::<32>()?;
        let height = u64::from_be_bytes(r.array()?);
        let round = u32::from_be_bytes(r.array()?);
        let k = r.u8()?;
        let kind = VoteKind::from_code(k).ok_or(DecodeError::Kind(k))?;
        let block = match r.u8()? {
            0 => None,
            1 => Some(r.array::<32>()?),
            t => return Err(DecodeError::BlockTag(t)),
        };
        let len = u16::from_be_bytes(r.array()?) as usize;
        if len == 0 || len > MAX_VALIDATORS / 8 {
            return Err(DecodeError::BitmapLength(len));
        }
        let signers = r.take(len)?.to_vec();
        let sig = r.array::<SIGNATURE_LEN>()?;
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing(r.0.len()));
        }
        let signature = BlsSignature::from_bytes(&sig).map_err(|e| match e {
            BlsError::BadSignature(p) => DecodeError::Signature(p),
            _ => DecodeError::Signature(PointError::Encoding),
        })?;
        Ok(Self {
            set_id,
            height,
            round,
            kind,
            block,
            signers,
            signature,
        })
    }
}

/// Sum of the public keys of the `count` signers marked in a bitmap already checked against
/// `set`. A certificate has more than n/2 signers (quorum > 2n/3), so the cheaper way is the
/// set's precomputed total minus the absent validators' keys: at most ⌈n/3⌉ G1 operations.
fn aggregate_keys(set: &ValidatorSet, signers: &[u8]) -> AggregatePublicKey {
    let mut agg = set.total;
    for i in (0..set.len()).filter(|&i| !bit(signers, i)) {
        agg.sub_aggregate(&AggregatePublicKey::from_public_key(&set.keys[i].point));
    }
    agg
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
}

// ---------------------------------------------------------------------------------------------
// Aggregation.

/// What [`Aggregator::add`] did with a vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// A new valid vote; `count` votes are now held.
    New { count: usize },
    /// This validator's vote was already held; nothing changed (not re-verified).
    Duplicate,
}

/// Collects the votes of one set for one vote message and forms a [`QuorumCert`]. Each vote is
/// verified on arrival, so a forged one is refused with its sender and never enters the
/// aggregate.
#[derive(Clone, Debug)]
pub struct Aggregator {
    set: Arc<ValidatorSet>,
    height: u64,
    round: u32,
    kind: VoteKind,
    block: Option<[u8; 32]>,
    message: Vec<u8>,
    signers: Vec<u8>,
    count: usize,
    sum: Option<AggregateSignature>,
}

impl Aggregator {
    pub fn new(
        set: Arc<ValidatorSet>,
        channel: &str,
        height: u64,
        round: u32,
        kind: VoteKind,
        block: Option<[u8; 32]>,
    ) -> Self {
        let signers = vec![0u8; set.bitmap_len()];
        Self {
            message: vote_message(channel, height, round, kind, block),
            set,
            height,
            round,
            kind,
            block,
            signers,
            count: 0,
            sum: None,
        }
    }

    /// The message every vote here must sign.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Add validator `index`'s vote: unknown index or a signature that does not verify
    /// (one pairing check) is an error naming the sender; a second vote from one index is
    /// ignored.
    pub fn add(&mut self, index: u32, sig: &BlsSignature) -> Result<Added, VoteError> {
        let i = index as usize;
        let key = self
            .set
            .key(index)
            .ok_or(VoteError::UnknownValidator(index))?;
        if bit(&self.signers, i) {
            return Ok(Added::Duplicate);
        }
        if !key.verify(&self.message, sig) {
            return Err(VoteError::BadSignature(index));
        }
        self.signers[i / 8] |= 1 << (i % 8);
        self.count += 1;
        match &mut self.sum {
            None => self.sum = Some(AggregateSignature::from_signature(&sig.point)),
            // Group-checked on decode (or made by `sign`).
            Some(s) => {
                let _ = s.add_signature(&sig.point, false);
            }
        }
        Ok(Added::New { count: self.count })
    }

    /// Whether validator `index`'s vote is held.
    pub fn has(&self, index: u32) -> bool {
        (index as usize) < self.set.len() && bit(&self.signers, index as usize)
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn has_quorum(&self) -> bool {
        self.count >= self.set.quorum()
    }

    /// The certificate of all votes held, once they are a quorum.
    pub fn certificate(&self) -> Option<QuorumCert> {
        if !self.has_quorum() {
            return None;
        }
        let sum = self.sum.as_ref()?;
        Some(QuorumCert {
            set_id: self.set.id,
            height: self.height,
            round: self.round,
            kind: self.kind,
            block: self.block,
            signers: self.signers.clone(),
            signature: BlsSignature::from_point(sum.to_signature()),
        })
    }
}
