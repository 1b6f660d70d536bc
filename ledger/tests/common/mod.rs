//! A one-node network for the ledger's tests: keys, genesis, a node on loopback, signers;
//! `net`: a network of BFT validators for the multi-node tests.
#![allow(dead_code)]

#[path = "../../../runtime/tests/common/contracts.rs"]
pub mod contracts;
pub mod net;
pub mod ports;

use bpu_ledger::client::{Client, Signer};
use bpu_ledger::membership::{ChannelParams, Genesis, Member, Membership, Org, Role, ValidatorKey};
use bpu_ledger::node::{Node, NodeConfig};
use bpu_ledger::order::CutterConfig;
use bpu_ledger::system;
use bpu_ledger::{format::VERSION, Receipt, Wire};
use bpu_runtime::{CryptoService, SigningKey};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::time::Duration;

pub const CHANNEL: &str = "test";

/// Keys of the test network's members, by membership index.
pub struct Keys {
    pub admin: SigningKey,
    pub node: SigningKey,
    pub alice: SigningKey,
    pub bob: SigningKey,
    /// Reader only.
    pub carol: SigningKey,
}

pub const ADMIN: u32 = 0;
pub const NODE: u32 = 1;
pub const ALICE: u32 = 2;
pub const BOB: u32 = 3;
pub const CAROL: u32 = 4;

impl Keys {
    pub fn new() -> Keys {
        let k = || SigningKey::generate().expect("keygen");
        Keys {
            admin: k(),
            node: k(),
            alice: k(),
            bob: k(),
            carol: k(),
        }
    }

    pub fn genesis(&self) -> Genesis {
        let m = |name: &str, key: &SigningKey, roles: &[Role]| Member {
            org: 0,
            name: name.into(),
            key: key.public_key().to_sec1().to_vec(),
            roles: roles.iter().fold(0, |r, x| r | *x as u8),
            // Validators vote with the BLS key derived from their node key.
            bls: roles
                .contains(&Role::Validator)
                .then(|| ValidatorKey::derived(key)),
        };
        use Role::*;
        Genesis {
            version: VERSION,
            channel: CHANNEL.into(),
            created_ms: 1_700_000_000_000,
            membership: Membership {
                orgs: vec![Org { name: "org".into() }],
                members: vec![
                    m("admin", &self.admin, &[Admin, Writer, Reader]),
                    m("node0", &self.node, &[Validator, Reader]),
                    m("alice", &self.alice, &[Writer, Reader]),
                    m("bob", &self.bob, &[Writer, Reader]),
                    m("carol", &self.carol, &[Reader]),
                ],
            },
            params: ChannelParams::default(),
        }
    }

    fn copy(k: &SigningKey) -> SigningKey {
        SigningKey::from_pem(k.to_pem().expect("pem").as_bytes()).expect("key")
    }

    pub fn signer(&self, member: u32) -> Signer {
        let key = match member {
            ADMIN => &self.admin,
            NODE => &self.node,
            ALICE => &self.alice,
            BOB => &self.bob,
            _ => &self.carol,
        };
        Signer {
            key: Keys::copy(key),
            channel: CHANNEL.into(),
            member,
        }
    }

    /// The 32-byte account id contracts see for a member's key.
    pub fn id(&self, member: u32) -> [u8; 32] {
        let s = self.signer(member);
        Sha256::digest(s.key.public_key().to_sec1()).into()
    }
}

/// A cutter that closes blocks after `timeout_ms` or `max_txs`.
pub fn cutter(max_txs: usize, timeout_ms: u64) -> CutterConfig {
    CutterConfig {
        max_txs,
        max_bytes: 2 << 20,
        timeout: Duration::from_millis(timeout_ms),
        queue: 100_000,
    }
}

/// Starts a node in `dir` and serves it on an ephemeral loopback port.
pub async fn start(dir: &Path, keys: &Keys, device: &str, cutter: CutterConfig) -> (Node, String) {
    start_with_clock(dir, keys, device, cutter, None).await
}

/// [`start`] with a given clock.
pub async fn start_with_clock(
    dir: &Path,
    keys: &Keys,
    device: &str,
    cutter: CutterConfig,
    clock: Option<bpu_ledger::order::Clock>,
) -> (Node, String) {
    let node = Node::start(NodeConfig {
        data_dir: dir.to_path_buf(),
        genesis: keys.genesis(),
        key: Keys::copy(&keys.node),
        crypto: CryptoService::open(device).expect("crypto service"),
        cutter: Some(cutter),
        clock,
    })
    .await
    .expect("node starts");
    let addr = bpu_ledger::server::spawn(node.clone(), "127.0.0.1:0")
        .await
        .expect("listen");
    (node, addr.to_string())
}

pub async fn client(addr: &str) -> Client {
    Client::connect(addr).await.expect("connect")
}

/// Submits and waits for the commit.
pub async fn call(
    c: &mut Client,
    s: &Signer,
    contract: &str,
    method: &str,
    args: Vec<u8>,
    nonce: u64,
) -> Receipt {
    let tx = s.sign(contract, None, method, args, nonce).expect("sign");
    let id = c.submit(&tx).await.expect("submit accepted");
    c.wait(&id, Duration::from_secs(30)).await.expect("commits")
}

/// Installs the token contract and initializes it (admin owns it).
pub async fn deploy_token(c: &mut Client, keys: &Keys) {
    let args = postcard::to_allocvec(&system::InstallArgs {
        name: "token".into(),
        code: contracts::elf("token"),
        activate: true,
    })
    .expect("encode");
    let r = call(
        c,
        &keys.signer(ADMIN),
        system::LIFECYCLE,
        "install",
        args,
        1,
    )
    .await;
    assert_eq!(r.status, bpu_ledger::format::TxStatus::Valid, "{r:?}");
    assert_eq!(r.response, 1u32.to_le_bytes());
    let r = call(c, &keys.signer(ADMIN), "token", "init", vec![], 2).await;
    assert_eq!(r.status, bpu_ledger::format::TxStatus::Valid, "{r:?}");
}

/// `to ‖ amount` arguments.
pub fn to_amount(to: &[u8; 32], amount: u64) -> Vec<u8> {
    let mut v = to.to_vec();
    v.extend(amount.to_le_bytes());
    v
}

/// The token balance of `who`, by a signed query.
pub async fn balance(c: &mut Client, keys: &Keys, who: u32) -> u64 {
    let tx = keys
        .signer(CAROL)
        .sign("token", None, "balance", keys.id(who).to_vec(), 0)
        .expect("sign");
    let r = c.query(&tx).await.expect("query");
    u64::from_le_bytes(r.as_slice().try_into().expect("u64 response"))
}

/// An encoded transaction's bytes, for tampering.
pub fn bytes(tx: &bpu_ledger::Transaction) -> Vec<u8> {
    tx.encode()
}
