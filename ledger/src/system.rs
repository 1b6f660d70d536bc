//! System contracts, built into every node: `_lifecycle` (versioned contract deployment) and
//! `_membership` (admin changes to organizations, members and roles). They run in the same
//! endorse → order → validate path as user contracts, with read/write sets in their own state
//! namespaces, so every node applies them identically (spec: docs/formats.md, "Channel state
//! written by the system contracts"; docs/ledger.md, "Deployment and membership").

use crate::format::{check_name, limits};
use crate::membership::{
    ChannelParams, Member, Membership, Org, Role, ValidatorKey, MAX_MEMBERS, MAX_ORGS,
    MAX_VALIDATORS,
};
use bpu_runtime::StateVersion;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Namespace and contract name of deployment.
pub const LIFECYCLE: &str = "_lifecycle";
/// Namespace and contract name of membership.
pub const MEMBERSHIP: &str = "_membership";
/// `_membership` key of the encoded [`ChannelParams`].
pub const PARAMS_KEY: &[u8] = b"params";

/// Whether `contract` names a system contract (admin role required).
pub fn is_system(contract: &str) -> bool {
    contract.starts_with('_')
}

/// A contract's deployment record (`_lifecycle`, key `meta/<name>`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContractMeta {
    /// Highest installed version (versions count from 1).
    pub latest: u32,
    /// The version calls without a pinned version run.
    pub active: u32,
}

/// Arguments of `_lifecycle.install`: a new version of `name`, active at once unless
/// `activate` is false.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InstallArgs {
    pub name: String,
    pub code: Vec<u8>,
    pub activate: bool,
}

/// Arguments of `_lifecycle.activate`: make `version` of `name` the active one (pin or roll back).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ActivateArgs {
    pub name: String,
    pub version: u32,
}

/// Arguments of `_membership.add_member` (the organization is created if new).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AddMemberArgs {
    pub org: String,
    pub name: String,
    /// SEC1 uncompressed P-256 key.
    pub key: Vec<u8>,
    pub roles: u8,
    /// BLS key and proof of possession; required with the validator role.
    pub bls: Option<ValidatorKey>,
}

/// Most members one `_membership.add_members` call adds (its argument is a
/// `Vec<AddMemberArgs>` of 1..=`MAX_ADD_MEMBERS` entries).
pub const MAX_ADD_MEMBERS: usize = 256;

/// Arguments of `_membership.set_roles` (roles 0 revokes the member; its index stays taken).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SetRolesArgs {
    pub member: u32,
    pub roles: u8,
}

/// `_lifecycle` key of a contract's record.
pub fn meta_key(name: &str) -> Vec<u8> {
    format!("meta/{name}").into_bytes()
}

/// `_lifecycle` key of a contract version's code.
pub fn code_key(name: &str, version: u32) -> Vec<u8> {
    format!("code/{name}/{version}").into_bytes()
}

/// Reads committed state of one namespace.
pub type Get<'a> = &'a dyn Fn(&[u8]) -> Result<Option<(Vec<u8>, StateVersion)>, String>;

/// What a system call did: like a contract call's outcome.
#[derive(Debug, Default)]
pub struct SysOutcome {
    pub reads: Vec<(Vec<u8>, Option<StateVersion>)>,
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub response: Vec<u8>,
}

/// Tracks reads and writes of one system call (read-your-writes, first read version).
struct Rw<'a> {
    get: Get<'a>,
    reads: BTreeMap<Vec<u8>, Option<StateVersion>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Rw<'_> {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        let v = (self.get)(key).map_err(|e| format!("storage: {e}"))?;
        self.reads
            .entry(key.to_vec())
            .or_insert(v.as_ref().map(|(_, ver)| *ver));
        Ok(v.map(|(b, _)| b))
    }

    fn write(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn finish(self, response: Vec<u8>) -> SysOutcome {
        SysOutcome {
            reads: self.reads.into_iter().collect(),
            writes: self.writes.into_iter().collect(),
            response,
        }
    }
}

fn args<T: serde::de::DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, String> {
    let v: T = postcard::from_bytes(bytes).map_err(|e| format!("malformed arguments: {e}"))?;
    if postcard::to_allocvec(&v).map_err(|e| e.to_string())? != bytes {
        return Err("malformed arguments: trailing bytes".into());
    }
    Ok(v)
}

fn decode_meta(b: &[u8]) -> Result<ContractMeta, String> {
    postcard::from_bytes(b).map_err(|e| format!("corrupt deployment record: {e}"))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

/// Checks code before it is installed (the caller loads it into the contract service).
pub type CheckCode<'a> = &'a dyn Fn(&[u8]) -> Result<(), String>;

/// Runs `_lifecycle.<method>`.
pub fn lifecycle(
    method: &str,
    raw: &[u8],
    get: Get<'_>,
    check_code: CheckCode<'_>,
) -> Result<SysOutcome, String> {
    let mut rw = Rw {
        get,
        reads: BTreeMap::new(),
        writes: BTreeMap::new(),
    };
    match method {
        "install" => {
            let a: InstallArgs = args(raw)?;
            user_name(&a.name)?;
            if a.code.len() > limits::VALUE {
                return Err(format!(
                    "code is {} bytes, the limit is {}",
                    a.code.len(),
                    limits::VALUE
                ));
            }
            check_code(&a.code)?;
            let meta = match rw.read(&meta_key(&a.name))? {
                Some(b) => decode_meta(&b)?,
                None => ContractMeta {
                    latest: 0,
                    active: 0,
                },
            };
            let v = meta.latest + 1;
            let new = ContractMeta {
                latest: v,
                active: if a.activate || meta.active == 0 {
                    v
                } else {
                    meta.active
                },
            };
            rw.write(code_key(&a.name, v), a.code);
            rw.write(meta_key(&a.name), encode(&new));
            Ok(rw.finish(v.to_le_bytes().to_vec()))
        }
        "activate" => {
            let a: ActivateArgs = args(raw)?;
            user_name(&a.name)?;
            let mut meta = match rw.read(&meta_key(&a.name))? {
                Some(b) => decode_meta(&b)?,
                None => return Err(format!("contract {} is not installed", a.name)),
            };
            if a.version == 0 || a.version > meta.latest {
                return Err(format!(
                    "contract {} has versions 1..={}, not {}",
                    a.name, meta.latest, a.version
                ));
            }
            meta.active = a.version;
            rw.write(meta_key(&a.name), encode(&meta));
            Ok(rw.finish(a.version.to_le_bytes().to_vec()))
        }
        other => Err(format!(
            "_lifecycle has no method {other:?} (install, activate)"
        )),
    }
}

fn user_name(name: &str) -> Result<(), String> {
    check_name("contract", name, limits::NAME).map_err(|e| e.to_string())?;
    if is_system(name) {
        return Err(format!("{name}: names starting with '_' are reserved"));
    }
    Ok(())
}

/// `_membership` key of member `index` (its [`Member`] record).
pub fn member_key(index: u32) -> Vec<u8> {
    let mut k = b"m/".to_vec();
    k.extend(index.to_be_bytes());
    k
}

/// `_membership` key prefix of member records.
pub const MEMBER_PREFIX: &[u8] = b"m/";
/// `_membership` key of the organizations (a `Vec<Org>`).
pub const ORGS_KEY: &[u8] = b"orgs";
/// `_membership` key of the member count (u32 LE).
pub const COUNT_KEY: &[u8] = b"count";

/// `_membership` key of the number of members holding `role` (u32 LE).
fn role_count_key(role: Role) -> Vec<u8> {
    format!("roles/{}", role.name()).into_bytes()
}

/// `_membership` key of the index holding a public key (uniqueness).
fn key_index_key(key: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut k = b"key/".to_vec();
    k.extend(sha2::Sha256::digest(key));
    k
}

/// `_membership` key of the index holding a BLS public key (uniqueness): `bls/` ‖ its 48-byte
/// compressed encoding.
fn bls_index_key(vk: &ValidatorKey) -> Vec<u8> {
    let mut k = b"bls/".to_vec();
    k.extend(vk.key.to_bytes());
    k
}

/// `_membership` key of the index holding (organization, name) (uniqueness).
fn name_key(org: u32, name: &str) -> Vec<u8> {
    let mut k = b"name/".to_vec();
    k.extend(org.to_be_bytes());
    k.extend(name.as_bytes());
    k
}

fn read_u32(rw: &mut Rw<'_>, key: &[u8]) -> Result<u32, String> {
    match rw.read(key)? {
        None => Ok(0),
        Some(b) => b
            .as_slice()
            .try_into()
            .map(u32::from_le_bytes)
            .map_err(|_| format!("corrupt counter {}", String::from_utf8_lossy(key))),
    }
}

/// Adds `delta` to the count of members with each role in `roles`.
fn count_roles(rw: &mut Rw<'_>, roles: u8, delta: i64) -> Result<(), String> {
    for role in Role::ALL {
        if roles & role as u8 != 0 {
            let k = role_count_key(role);
            let n = i64::from(read_u32(rw, &k)?) + delta;
            let n = u32::try_from(n).map_err(|_| "role count out of range".to_string())?;
            rw.write(k, n.to_le_bytes().to_vec());
        }
    }
    Ok(())
}

/// `_membership.add_member` of one member, checked against the state `rw` sees (so
/// `add_members` entries see the earlier entries' writes): its index.
fn add_one(rw: &mut Rw<'_>, a: AddMemberArgs) -> Result<u32, String> {
    check_name("member", &a.name, limits::NAME).map_err(|e| e.to_string())?;
    if a.key.len() != 65 || a.key[0] != 4 {
        return Err("keys are 65-byte uncompressed SEC1 points".into());
    }
    if a.roles & !0x0f != 0 {
        return Err(format!("bad roles {:#x}", a.roles));
    }
    let mut orgs: Vec<Org> = match rw.read(ORGS_KEY)? {
        Some(b) => postcard::from_bytes(&b).map_err(|e| format!("corrupt orgs: {e}"))?,
        None => Vec::new(),
    };
    let org = match orgs.iter().position(|o| o.name == a.org) {
        Some(i) => i as u32,
        None => {
            check_name("organization", &a.org, limits::NAME).map_err(|e| e.to_string())?;
            if orgs.len() >= MAX_ORGS {
                return Err(format!("already {MAX_ORGS} organizations"));
            }
            orgs.push(Org { name: a.org });
            rw.write(ORGS_KEY.to_vec(), encode(&orgs));
            (orgs.len() - 1) as u32
        }
    };
    let index = read_u32(rw, COUNT_KEY)?;
    if index as usize >= MAX_MEMBERS {
        return Err(format!("already {MAX_MEMBERS} members"));
    }
    if rw.read(&key_index_key(&a.key))?.is_some() {
        return Err("this key belongs to a member already".into());
    }
    if rw.read(&name_key(org, &a.name))?.is_some() {
        return Err(format!("organization already has a member {}", a.name));
    }
    match &a.bls {
        None if a.roles & Role::Validator as u8 != 0 => {
            return Err(format!(
                "member {}: the validator role needs a BLS key and proof of possession",
                a.name
            ))
        }
        None => {}
        Some(vk) => {
            if rw.read(&bls_index_key(vk))?.is_some() {
                return Err(format!(
                    "member {}: its BLS key belongs to a member already",
                    a.name
                ));
            }
            if !vk.verify() {
                return Err(format!(
                    "member {}: the proof of possession of its BLS key does not verify",
                    a.name
                ));
            }
            rw.write(bls_index_key(vk), index.to_le_bytes().to_vec());
        }
    }
    let m = Member {
        org,
        name: a.name,
        key: a.key,
        roles: a.roles,
        bls: a.bls,
    };
    rw.write(key_index_key(&m.key), index.to_le_bytes().to_vec());
    rw.write(name_key(org, &m.name), index.to_le_bytes().to_vec());
    rw.write(member_key(index), encode(&m));
    rw.write(COUNT_KEY.to_vec(), (index + 1).to_le_bytes().to_vec());
    count_roles(rw, m.roles, 1)?;
    Ok(index)
}

/// A member name as a revert reason shows it: quoted, cut to the name limit.
fn shown_name(name: &str) -> String {
    if name.chars().count() > limits::NAME {
        let cut: String = name.chars().take(limits::NAME).collect();
        format!("{cut:?}…")
    } else {
        format!("{name:?}")
    }
}

/// Runs `_membership.<method>`. Each member is its own state entry, so a change writes a few
/// small keys whatever the membership's size.
pub fn membership(method: &str, raw: &[u8], get: Get<'_>) -> Result<SysOutcome, String> {
    let mut rw = Rw {
        get,
        reads: BTreeMap::new(),
        writes: BTreeMap::new(),
    };
    let response = match method {
        "add_member" => {
            let a: AddMemberArgs = args(raw)?;
            add_one(&mut rw, a)?.to_le_bytes().to_vec()
        }
        "add_members" => {
            let all: Vec<AddMemberArgs> = args(raw)?;
            if all.is_empty() || all.len() > MAX_ADD_MEMBERS {
                return Err(format!(
                    "add_members takes 1..={MAX_ADD_MEMBERS} members, not {}",
                    all.len()
                ));
            }
            let mut out = Vec::with_capacity(4 * all.len());
            for (i, a) in all.into_iter().enumerate() {
                let shown = shown_name(&a.name);
                let index = add_one(&mut rw, a).map_err(|e| format!("entry {i} ({shown}): {e}"))?;
                out.extend(index.to_le_bytes());
            }
            out
        }
        "set_roles" => {
            let a: SetRolesArgs = args(raw)?;
            if a.roles & !0x0f != 0 {
                return Err(format!("bad roles {:#x}", a.roles));
            }
            let mut m: Member = match rw.read(&member_key(a.member))? {
                Some(b) => postcard::from_bytes(&b).map_err(|e| format!("corrupt member: {e}"))?,
                None => return Err(format!("no member {}", a.member)),
            };
            if a.roles & Role::Validator as u8 != 0 && m.bls.is_none() {
                return Err(format!(
                    "member {} ({}) has no BLS key, so it cannot be a validator",
                    m.name, a.member
                ));
            }
            count_roles(&mut rw, m.roles & !a.roles, -1)?;
            count_roles(&mut rw, a.roles & !m.roles, 1)?;
            m.roles = a.roles;
            rw.write(member_key(a.member), encode(&m));
            a.member.to_le_bytes().to_vec()
        }
        other => {
            return Err(format!(
                "_membership has no method {other:?} (add_member, add_members, set_roles)"
            ))
        }
    };
    let params: ChannelParams = match rw.read(PARAMS_KEY)? {
        Some(b) => postcard::from_bytes(&b).map_err(|e| format!("corrupt parameters: {e}"))?,
        None => return Err("the channel has no parameter record".into()),
    };
    if read_u32(&mut rw, &role_count_key(Role::Admin))? == 0 {
        return Err("the change would leave the channel without an admin".into());
    }
    let validators = read_u32(&mut rw, &role_count_key(Role::Validator))?;
    if validators as usize > MAX_VALIDATORS {
        return Err(format!(
            "the change would make {validators} validators, the limit is {MAX_VALIDATORS}"
        ));
    }
    if validators < params.endorsements {
        return Err(format!(
            "the change would leave {validators} validators, the endorsement policy needs {}",
            params.endorsements
        ));
    }
    Ok(rw.finish(response))
}

/// The state a channel starts with (committed at height 0): its parameters, organizations,
/// one record per member, and the counters and uniqueness indexes `_membership` maintains.
pub fn genesis_writes(g: &crate::Genesis) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let m = &g.membership;
    let mut w: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (PARAMS_KEY.to_vec(), encode(&g.params)),
        (ORGS_KEY.to_vec(), encode(&m.orgs)),
        (
            COUNT_KEY.to_vec(),
            (m.members.len() as u32).to_le_bytes().to_vec(),
        ),
    ];
    for role in Role::ALL {
        let n = m.with_role(role).len() as u32;
        w.push((role_count_key(role), n.to_le_bytes().to_vec()));
    }
    for (i, mem) in m.members.iter().enumerate() {
        let i = i as u32;
        w.push((member_key(i), encode(mem)));
        w.push((key_index_key(&mem.key), i.to_le_bytes().to_vec()));
        w.push((name_key(mem.org, &mem.name), i.to_le_bytes().to_vec()));
        if let Some(vk) = &mem.bls {
            w.push((bls_index_key(vk), i.to_le_bytes().to_vec()));
        }
    }
    w.into_iter()
        .map(|(k, v)| (MEMBERSHIP.to_string(), k, v))
        .collect()
}

/// Rebuilds the membership from `_membership` state: `orgs` and every `m/<index>` record,
/// given by `scan` in key order.
pub fn membership_from_state(
    orgs: Option<Vec<u8>>,
    members: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<Membership, String> {
    let orgs: Vec<Org> = match orgs {
        Some(b) => postcard::from_bytes(&b).map_err(|e| format!("corrupt orgs: {e}"))?,
        None => return Err("no organizations in state".into()),
    };
    let mut out = Membership {
        orgs,
        members: Vec::new(),
    };
    for (k, v) in members {
        if k != member_key(out.members.len() as u32) {
            return Err(format!(
                "member records out of sequence at {}",
                out.members.len()
            ));
        }
        out.members
            .push(postcard::from_bytes(&v).map_err(|e| format!("corrupt member: {e}"))?);
    }
    Ok(out)
}
