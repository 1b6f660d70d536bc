//! Channel membership and genesis: organizations, members with P-256 keys and roles, validators'
//! BLS12-381 keys, channel parameters; the genesis message every node of a channel starts from
//! (spec: docs/formats.md).
//!
//! Invariants (checked by [`Membership::validate`]):
//! - Every member holding [`Role::Validator`] has a [`ValidatorKey`]; the validator set of a
//!   channel ([`Membership::validator_set`]) is read from the membership alone.
//! - BLS keys are unique across members and each comes with a proof of possession that verifies.

use crate::format::{limits, FormatError, Wire, VERSION};
use bpu_consensus::bls::{BlsPublicKey, BlsSecretKey, ProofOfPossession, ValidatorSet};
use bpu_runtime::{Digest, PublicKey, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// What a member may do, as bits of [`Member::roles`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Changes membership and deploys contracts (admin transactions).
    Admin = 1,
    /// Submits transactions that write state.
    Writer = 2,
    /// Queries state and reads blocks.
    Reader = 4,
    /// Endorses, orders and validates (a node).
    Validator = 8,
}

impl Role {
    /// Every role, in bit order.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Writer, Role::Reader, Role::Validator];

    /// The role's name in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Validator => "validator",
        }
    }

    /// A role by name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// Most organizations and members in one membership.
pub const MAX_ORGS: usize = 256;
pub const MAX_MEMBERS: usize = 1 << 16;
/// Most members holding the validator role (the consensus's limit on a validator set).
pub const MAX_VALIDATORS: usize = bpu_consensus::bls::MAX_VALIDATORS;

/// An organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub name: String,
}

/// A member: a person, device or node, identified on the wire by its index.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Index of its organization.
    pub org: u32,
    pub name: String,
    /// SEC1 uncompressed P-256 public key (65 bytes: 04 ‖ x ‖ y).
    pub key: Vec<u8>,
    /// Bits of [`Role`].
    pub roles: u8,
    /// The BLS key it votes with in consensus; required with [`Role::Validator`].
    pub bls: Option<ValidatorKey>,
}

/// A validator's BLS12-381 public key (48 bytes compressed G1) with its proof of possession
/// (96 bytes compressed G2). Both are point-checked when decoded; the proof is verified by
/// [`Membership::validate`] and by `_membership.add_member`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatorKey {
    pub key: BlsPublicKey,
    pub pop: ProofOfPossession,
}

impl ValidatorKey {
    /// The public key and proof of possession of a secret key.
    pub fn of(secret: &BlsSecretKey) -> ValidatorKey {
        ValidatorKey {
            key: secret.public_key(),
            pop: secret.prove_possession(),
        }
    }

    /// The public key and proof of possession of the BLS key derived from a node's P-256 key
    /// ([`derive_bls`]).
    pub fn derived(key: &SigningKey) -> ValidatorKey {
        ValidatorKey::of(&derive_bls(key))
    }

    /// Whether the proof of possession verifies for the key (one pairing check).
    pub fn verify(&self) -> bool {
        self.key.verify_possession(&self.pop)
    }
}

/// Domain separation prefix of [`derive_bls`].
pub const BLS_DERIVE_DOMAIN: &[u8] = b"bpu.bls.derive.v1";

/// The node's BLS secret key, derived from its P-256 signing key so a node keeps one key file:
/// `KeyGen(IKM)` of the IETF BLS draft (`BlsSecretKey::from_ikm`) with
/// IKM = SHA-256(`BLS_DERIVE_DOMAIN` ‖ the 32-byte big-endian P-256 private scalar).
///
/// The scalar, not the key file's bytes, is hashed: one key has several valid encodings (SEC1 or
/// PKCS#8, with or without its public key) and `SigningKey::to_pem` re-encodes the form it was
/// read from, so hashing the encoding would give one key different BLS keys.
///
/// # Panics
///
/// Only if the runtime's own encoding of a valid key cannot be encoded or parsed back, which
/// would be a bug in the runtime (an error is no use to a caller: there is no other way to derive).
pub fn derive_bls(key: &SigningKey) -> BlsSecretKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::elliptic_curve::zeroize::Zeroize;
    use p256::pkcs8::DecodePrivateKey;
    let mut pem = key
        .to_pem()
        .unwrap_or_else(|e| panic!("derive_bls: cannot encode the signing key: {e}"));
    let parsed = pem_der(pem.as_bytes()).and_then(|mut der| {
        let k = p256::SecretKey::from_sec1_der(&der)
            .or_else(|_| p256::SecretKey::from_pkcs8_der(&der))
            .ok();
        der.zeroize();
        k
    });
    pem.zeroize();
    let secret =
        parsed.unwrap_or_else(|| panic!("derive_bls: the runtime's key encoding does not parse"));
    // The parse must give the signing key itself.
    assert_eq!(
        secret.public_key().to_encoded_point(false).as_bytes(),
        key.public_key().to_sec1().as_slice(),
        "derive_bls: the parsed key is not the signing key"
    );
    let mut scalar = secret.to_bytes();
    let mut h = Sha256::new();
    h.update(BLS_DERIVE_DOMAIN);
    h.update(scalar);
    scalar.zeroize();
    let mut ikm: [u8; 32] = h.finalize().into();
    // 32 bytes of IKM are always enough for `from_ikm`.
    let bls = BlsSecretKey::from_ikm(&ikm).unwrap_or_else(|_| unreachable!("32 bytes of IKM"));
    ikm.zeroize();
    bls
}

/// The DER inside a PEM document (any label).
fn pem_der(pem: &[u8]) -> Option<Vec<u8>> {
    p256::pkcs8::der::pem::decode_vec(pem)
        .ok()
        .map(|(_, der)| der)
}

impl Member {
    pub fn has(&self, role: Role) -> bool {
        self.roles & role as u8 != 0
    }

    /// The member's public key for signature checks.
    pub fn public_key(&self) -> Result<PublicKey, FormatError> {
        PublicKey::from_sec1(&self.key)
            .map_err(|e| FormatError::Invalid(format!("member {}: {e}", self.name)))
    }
}

/// Organizations and members of a channel; indexes are positions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Membership {
    pub orgs: Vec<Org>,
    pub members: Vec<Member>,
}

impl Membership {
    /// The member with this index.
    pub fn member(&self, index: u32) -> Option<&Member> {
        self.members.get(index as usize)
    }

    /// Whether member `index` exists and has `role`.
    pub fn allows(&self, index: u32, role: Role) -> bool {
        self.member(index).is_some_and(|m| m.has(role))
    }

    /// Indexes of the members with `role`.
    pub fn with_role(&self, role: Role) -> Vec<u32> {
        (0..self.members.len() as u32)
            .filter(|&i| self.allows(i, role))
            .collect()
    }

    /// The validator set of the channel: the members holding [`Role::Validator`], in ascending
    /// membership index, with their BLS keys (each proof of possession is verified again).
    pub fn validator_set(&self) -> Result<Validators, FormatError> {
        let members = self.with_role(Role::Validator);
        let mut keys = Vec::with_capacity(members.len());
        for &i in &members {
            let m = &self.members[i as usize];
            let vk = m.bls.ok_or_else(|| {
                FormatError::Invalid(format!(
                    "member {} ({i}) is a validator without a BLS key",
                    m.name
                ))
            })?;
            keys.push((vk.key, vk.pop));
        }
        let name = |v: usize| {
            members
                .get(v)
                .and_then(|&i| self.member(i))
                .map_or_else(|| format!("#{v}"), |m| m.name.clone())
        };
        let set = ValidatorSet::new(keys).map_err(|e| {
            use bpu_consensus::bls::BlsError;
            FormatError::Invalid(match e {
                BlsError::BadPop(v) => format!(
                    "member {}: the proof of possession of its BLS key does not verify",
                    name(v)
                ),
                BlsError::DuplicateKey { index, first } => format!(
                    "member {}: its BLS key belongs to member {} already",
                    name(index),
                    name(first)
                ),
                BlsError::EmptySet => "no member holds the validator role".into(),
                other => format!("validator set: {other}"),
            })
        })?;
        Ok(Validators {
            members,
            set: Arc::new(set),
        })
    }

    /// Structure and limits; members without roles (revoked by an admin transaction) are allowed
    /// only when `allow_revoked` (never in a genesis). Validators must have BLS keys; BLS keys are
    /// unique and their proofs of possession verify (one pairing check per key).
    pub fn validate(&self, allow_revoked: bool) -> Result<(), FormatError> {
        if self.orgs.len() > MAX_ORGS || self.members.len() > MAX_MEMBERS {
            return Err(FormatError::Invalid(format!(
                "{} organizations and {} members (limits {MAX_ORGS} and {MAX_MEMBERS})",
                self.orgs.len(),
                self.members.len()
            )));
        }
        let mut names = std::collections::HashSet::new();
        for o in &self.orgs {
            crate::format::check_name("organization", &o.name, limits::NAME)?;
            if !names.insert(o.name.as_str()) {
                return Err(FormatError::Invalid(format!(
                    "organization {} twice",
                    o.name
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        let mut bls_keys = std::collections::HashSet::new();
        for m in &self.members {
            crate::format::check_name("member", &m.name, limits::NAME)?;
            if m.org as usize >= self.orgs.len() {
                return Err(FormatError::Invalid(format!(
                    "member {} belongs to organization {}, which does not exist",
                    m.name, m.org
                )));
            }
            if m.key.len() != 65 || m.key[0] != 4 {
                return Err(FormatError::Invalid(format!(
                    "member {}: keys are 65-byte uncompressed SEC1 points",
                    m.name
                )));
            }
            if !keys.insert(m.key.as_slice()) {
                return Err(FormatError::Invalid(format!(
                    "member {}: its key belongs to another member already",
                    m.name
                )));
            }
            if !seen.insert((m.org, m.name.as_str())) {
                return Err(FormatError::Invalid(format!(
                    "member {} twice in its organization",
                    m.name
                )));
            }
            if (m.roles == 0 && !allow_revoked) || m.roles & !0x0f != 0 {
                return Err(FormatError::Invalid(format!(
                    "member {}: bad roles",
                    m.name
                )));
            }
            match &m.bls {
                None if m.has(Role::Validator) => {
                    return Err(FormatError::Invalid(format!(
                        "member {}: a validator needs a BLS key and proof of possession",
                        m.name
                    )))
                }
                None => {}
                Some(vk) => {
                    if !bls_keys.insert(vk.key.to_bytes()) {
                        return Err(FormatError::Invalid(format!(
                            "member {}: its BLS key belongs to another member already",
                            m.name
                        )));
                    }
                    if !vk.verify() {
                        return Err(FormatError::Invalid(format!(
                            "member {}: the proof of possession of its BLS key does not verify",
                            m.name
                        )));
                    }
                }
            }
        }
        let validators = self.with_role(Role::Validator).len();
        if validators > MAX_VALIDATORS {
            return Err(FormatError::Invalid(format!(
                "{validators} validators (limit {MAX_VALIDATORS})"
            )));
        }
        Ok(())
    }
}

/// A channel's validator set read from its membership ([`Membership::validator_set`]):
/// validator index `i` of `set` (vote signers, certificate bitmaps) is membership index
/// `members[i]`.
#[derive(Clone, Debug)]
pub struct Validators {
    /// Membership indexes of the validators, ascending.
    pub members: Vec<u32>,
    pub set: Arc<ValidatorSet>,
}

impl Validators {
    /// The validator index of membership index `member`, if it is a validator.
    pub fn index_of(&self, member: u32) -> Option<u32> {
        self.members.binary_search(&member).ok().map(|i| i as u32)
    }

    /// The membership index of validator `index`.
    pub fn member(&self, index: u32) -> Option<u32> {
        self.members.get(index as usize).copied()
    }
}

/// Channel parameters fixed at genesis (admin transactions may change them later).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChannelParams {
    /// Block cutter: most transactions per block.
    pub block_max_txs: u32,
    /// Block cutter: most bytes per block.
    pub block_max_bytes: u32,
    /// Block cutter: longest wait for a block to fill, milliseconds.
    pub block_timeout_ms: u32,
    /// Endorsements from distinct validators each transaction needs.
    pub endorsements: u32,
}

impl Default for ChannelParams {
    fn default() -> Self {
        ChannelParams {
            block_max_txs: 10_000,
            block_max_bytes: 2 << 20,
            block_timeout_ms: 2_000,
            endorsements: 1,
        }
    }
}

/// The first message of a channel: everything a node needs to start it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Genesis {
    pub version: u8,
    pub channel: String,
    pub created_ms: u64,
    pub membership: Membership,
    pub params: ChannelParams,
}

impl Genesis {
    /// SHA-256 of the encoding: nodes of one channel must agree on it.
    pub fn hash(&self) -> Digest {
        Digest(Sha256::digest(self.encode()).into())
    }
}

impl Wire for Genesis {
    const WHAT: &'static str = "genesis";
    const MAX_BYTES: usize = 8 << 20;
    fn validate(&self) -> Result<(), FormatError> {
        if self.version != VERSION {
            return Err(FormatError::Version(self.version));
        }
        crate::format::check_name("channel", &self.channel, limits::CHANNEL)?;
        self.membership.validate(false)?;
        let p = &self.params;
        if p.block_max_txs == 0
            || p.block_max_txs as usize > limits::BLOCK_TXS
            || p.block_max_bytes == 0
            || p.block_max_bytes as usize > limits::BLOCK
            || p.block_timeout_ms == 0
        {
            return Err(FormatError::Invalid(format!(
                "block cutter limits out of range: {p:?}"
            )));
        }
        let validators = self.membership.with_role(Role::Validator).len();
        if validators == 0 || p.endorsements as usize > validators || p.endorsements == 0 {
            return Err(FormatError::Invalid(format!(
                "{} endorsements required, {validators} validators in the membership",
                p.endorsements
            )));
        }
        Ok(())
    }
}
