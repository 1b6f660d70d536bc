//! Channel membership and genesis: organizations, members with P-256 keys and roles, channel
//! parameters; the genesis message every node of a channel starts from (spec: docs/formats.md).

use crate::format::{limits, FormatError, Wire, VERSION};
use bpu_runtime::{Digest, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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

    /// Structure and limits; members without roles (revoked by an admin transaction) are allowed
    /// only when `allow_revoked` (never in a genesis).
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
        }
        Ok(())
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
