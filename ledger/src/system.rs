//! System contracts, built into every node: `_lifecycle` (versioned contract deployment) and
//! `_membership` (admin changes to organizations, members and roles). They run in the same
//! endorse → order → validate path as user contracts, with read/write sets in their own state
//! namespaces, so every node applies them identically (spec: docs/contract-abi.md, "Deployment").

use crate::format::{check_name, limits, FormatError};
use crate::membership::{ChannelParams, Member, Membership, Org, Role};
use bpu_runtime::StateVersion;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Namespace and contract name of deployment.
pub const LIFECYCLE: &str = "_lifecycle";
/// Namespace and contract name of membership.
pub const MEMBERSHIP: &str = "_membership";
/// `_membership` key of the encoded [`Membership`].
pub const MEMBERS_KEY: &[u8] = b"members";
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
}

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

/// Runs `_membership.<method>`.
pub fn membership(method: &str, raw: &[u8], get: Get<'_>) -> Result<SysOutcome, String> {
    let mut rw = Rw {
        get,
        reads: BTreeMap::new(),
        writes: BTreeMap::new(),
    };
    let mut m: Membership = match rw.read(MEMBERS_KEY)? {
        Some(b) => postcard::from_bytes(&b).map_err(|e| format!("corrupt membership: {e}"))?,
        None => return Err("the channel has no membership record".into()),
    };
    let params: ChannelParams = match rw.read(PARAMS_KEY)? {
        Some(b) => postcard::from_bytes(&b).map_err(|e| format!("corrupt parameters: {e}"))?,
        None => return Err("the channel has no parameter record".into()),
    };
    let index = match method {
        "add_member" => {
            let a: AddMemberArgs = args(raw)?;
            let org = match m.orgs.iter().position(|o| o.name == a.org) {
                Some(i) => i,
                None => {
                    m.orgs.push(Org { name: a.org });
                    m.orgs.len() - 1
                }
            };
            m.members.push(Member {
                org: org as u32,
                name: a.name,
                key: a.key,
                roles: a.roles,
            });
            m.members.len() - 1
        }
        "set_roles" => {
            let a: SetRolesArgs = args(raw)?;
            let mem = m
                .members
                .get_mut(a.member as usize)
                .ok_or_else(|| format!("no member {}", a.member))?;
            mem.roles = a.roles;
            a.member as usize
        }
        other => {
            return Err(format!(
                "_membership has no method {other:?} (add_member, set_roles)"
            ))
        }
    };
    m.validate(true).map_err(|e: FormatError| e.to_string())?;
    if m.with_role(Role::Admin).is_empty() {
        return Err("the change would leave the channel without an admin".into());
    }
    let validators = m.with_role(Role::Validator).len();
    if validators < params.endorsements as usize {
        return Err(format!(
            "the change would leave {validators} validators, the endorsement policy needs {}",
            params.endorsements
        ));
    }
    rw.write(MEMBERS_KEY.to_vec(), encode(&m));
    Ok(rw.finish((index as u32).to_le_bytes().to_vec()))
}

/// The state a channel starts with: its membership and parameters (committed at height 0).
pub fn genesis_writes(g: &crate::Genesis) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    vec![
        (
            MEMBERSHIP.to_string(),
            MEMBERS_KEY.to_vec(),
            encode(&g.membership),
        ),
        (
            MEMBERSHIP.to_string(),
            PARAMS_KEY.to_vec(),
            encode(&g.params),
        ),
    ]
}
