//! A network of BFT validators on loopback for the ledger's multi-node tests: keys, a genesis
//! with n validators, each node with its own data directory, network and client API; log
//! capture to check that refusals say why; chain comparison helpers.

use bpu_consensus::bls::ValidatorSet;
use bpu_consensus::core::Timeouts;
use bpu_consensus::light::verify_commit;
use bpu_ledger::bft::BftSetup;
use bpu_ledger::client::{Client, Signer};
use bpu_ledger::format::{Block, TxStatus, Wire, VERSION};
use bpu_ledger::membership::{
    derive_bls, ChannelParams, Genesis, Member, Membership, Org, Role, ValidatorKey,
};
use bpu_ledger::node::{Node, NodeConfig, NodeError};
use bpu_ledger::order::CutterConfig;
use bpu_ledger::p2p::{Admit, ChannelSpec, Inbound, NetConfig, Network, PeerId};
use bpu_ledger::snapshot::SyncOptions;
use bpu_ledger::system;
use bpu_runtime::{CryptoService, SigningKey};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const CHANNEL: &str = "bft";
/// Members before the validators: admin 0, alice 1.
pub const ADMIN: u32 = 0;

pub fn copy(k: &SigningKey) -> SigningKey {
    SigningKey::from_pem(k.to_pem().expect("pem").as_bytes()).expect("key")
}

/// Log lines of every node in this test binary, to check that rejections say why.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,bpu_ledger=info")
            .with_writer(move || Writer(b.clone()))
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        std::io::stderr().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn logged(what: &str) -> bool {
    let l = logs();
    let v = l.lock().expect("logs");
    String::from_utf8_lossy(&v).contains(what)
}

/// A channel of `n` validators and its clients.
pub struct Net {
    pub admin: SigningKey,
    pub alice: SigningKey,
    pub nodes: Vec<SigningKey>,
    pub addrs: Vec<String>,
    pub genesis: Genesis,
    pub dirs: Vec<tempfile::TempDir>,
}

/// A loopback address that is free now (see [`free_run`]).
pub fn free_addr() -> String {
    super::ports::free_run(1)
}

impl Net {
    pub fn new(n: usize) -> Net {
        let nodes = (0..n)
            .map(|_| SigningKey::generate().expect("keygen"))
            .collect();
        Net::with_nodes(CHANNEL, nodes)
    }

    /// A channel whose validators are these node keys (in this order).
    pub fn with_nodes(channel: &str, nodes: Vec<SigningKey>) -> Net {
        logs();
        let n = nodes.len();
        let k = || SigningKey::generate().expect("keygen");
        let admin = k();
        let alice = k();
        let member = |name: String, key: &SigningKey, roles: &[Role], validator: bool| Member {
            org: 0,
            name,
            key: key.public_key().to_sec1().to_vec(),
            roles: roles.iter().fold(0, |r, x| r | *x as u8),
            bls: validator.then(|| {
                let s = derive_bls(key);
                ValidatorKey {
                    key: s.public_key(),
                    pop: s.prove_possession(),
                }
            }),
        };
        use Role::*;
        let mut members = vec![
            member("admin".into(), &admin, &[Admin, Writer, Reader], false),
            member("alice".into(), &alice, &[Writer, Reader], false),
        ];
        for (i, key) in nodes.iter().enumerate() {
            members.push(member(format!("node{i}"), key, &[Validator, Reader], true));
        }
        let genesis = Genesis {
            version: VERSION,
            channel: channel.into(),
            created_ms: 1_700_000_000_000,
            membership: Membership {
                orgs: vec![Org { name: "org".into() }],
                members,
            },
            params: ChannelParams {
                block_max_txs: 500,
                block_timeout_ms: 100,
                ..ChannelParams::default()
            },
        };
        Net {
            admin,
            alice,
            addrs: (0..n).map(|_| free_addr()).collect(),
            dirs: (0..n)
                .map(|_| tempfile::tempdir().expect("tempdir"))
                .collect(),
            nodes,
            genesis,
        }
    }

    pub fn set(&self) -> ValidatorSet {
        let v = self
            .genesis
            .membership
            .validator_set()
            .expect("validator set");
        (*v.set).clone()
    }

    pub fn peer(&self, i: usize) -> PeerId {
        PeerId(self.nodes[i].public_key().to_sec1())
    }

    /// Starts validator `i`: its network on its address, its node, its client API.
    pub async fn start(&self, i: usize) -> Running {
        self.start_with(i, SyncOptions::default())
            .await
            .expect("node starts")
    }

    /// [`Net::start`] with snapshot, pruning and fast-sync options.
    pub async fn start_with(&self, i: usize, sync: SyncOptions) -> Result<Running, NodeError> {
        self.start_at(i, self.dirs[i].path(), sync).await
    }

    /// Starts validator `i` on the data directory `dir`.
    pub async fn start_at(
        &self,
        i: usize,
        dir: &Path,
        sync: SyncOptions,
    ) -> Result<Running, NodeError> {
        let (node, net) = self.start_node_at(i, dir, sync).await?;
        let addr = bpu_ledger::server::spawn(node.clone(), "127.0.0.1:0")
            .await
            .expect("client API")
            .to_string();
        Ok(Running { node, net, addr })
    }

    /// Validator `i`'s network and node on its own directory, without a client API (so that
    /// halting and dropping them closes its files).
    pub async fn start_node(&self, i: usize) -> Result<(Node, Network), NodeError> {
        self.start_node_at(i, self.dirs[i].path(), SyncOptions::default())
            .await
    }

    async fn start_node_at(
        &self,
        i: usize,
        dir: &Path,
        sync: SyncOptions,
    ) -> Result<(Node, Network), NodeError> {
        let (net, inbound, admit) = self.network(i, None).await;
        let setup = bft_setup(&net, inbound, admit, sync);
        match Node::start_bft(self.config_at(i, dir), setup).await {
            Ok(node) => Ok((node, net)),
            Err(e) => {
                net.shutdown();
                Err(e)
            }
        }
    }

    pub fn channel(&self) -> &str {
        &self.genesis.channel
    }

    pub fn spec(&self) -> ChannelSpec {
        ChannelSpec::new(self.channel(), self.genesis.hash().0)
    }

    /// Validator `i`'s node settings on `dir`: a short block cutter.
    pub fn config_at(&self, i: usize, dir: &Path) -> NodeConfig {
        NodeConfig {
            data_dir: dir.to_path_buf(),
            genesis: self.genesis.clone(),
            key: copy(&self.nodes[i]),
            crypto: CryptoService::cpu(),
            cutter: Some(CutterConfig {
                max_txs: 500,
                max_bytes: 2 << 20,
                timeout: Duration::from_millis(100),
                queue: 100_000,
            }),
            clock: None,
        }
    }

    /// The network of validator `i` on its address (retrying the bind for a while: the
    /// previous holder of the port may still be closing), its channel's frames and admission.
    /// `admit` fixes the admitted peers; `None` leaves them to the node.
    pub async fn network(
        &self,
        i: usize,
        admit: Option<HashSet<PeerId>>,
    ) -> (Network, tokio::sync::mpsc::Receiver<Inbound>, Admit) {
        let a: Admit = Default::default();
        if let Some(set) = admit {
            *a.write() = set;
        }
        let t = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Network::start(
                NetConfig {
                    peers: self.addrs.clone(),
                    ..NetConfig::new(self.addrs[i].parse().expect("addr"), copy(&self.nodes[i]))
                },
                vec![(self.spec(), a.clone())],
            )
            .await
            {
                Ok((net, mut rx)) => {
                    let inbound = rx.remove(self.channel()).expect("channel inbound");
                    return (net, inbound, a);
                }
                Err(e) => {
                    assert!(tokio::time::Instant::now() < t, "network of node {i}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Every validator's node key.
    pub fn all_peers(&self) -> HashSet<PeerId> {
        (0..self.nodes.len()).map(|i| self.peer(i)).collect()
    }

    pub fn signer(&self, member: u32) -> Signer {
        Signer {
            key: copy(if member == ADMIN {
                &self.admin
            } else {
                &self.alice
            }),
            channel: self.channel().into(),
            member,
        }
    }

    /// Admin transactions that need no contract: adding members (each one a valid write).
    pub async fn add_members(&self, via: &Running, first: u32, count: u32) -> Vec<[u8; 32]> {
        let mut c = Client::connect(&via.addr).await.expect("connect");
        let mut ids = Vec::new();
        for i in first..first + count {
            let key = SigningKey::generate().expect("keygen");
            let args = postcard::to_allocvec(&system::AddMemberArgs {
                org: "org".into(),
                name: format!("user{i}"),
                key: key.public_key().to_sec1().to_vec(),
                roles: Role::Reader as u8,
                bls: None,
            })
            .expect("encode");
            let tx = self
                .signer(ADMIN)
                .sign(
                    system::MEMBERSHIP,
                    None,
                    "add_member",
                    args,
                    1_000 + u64::from(i),
                )
                .expect("sign");
            ids.push(c.submit(&tx).await.expect("accepted"));
        }
        ids
    }
}

/// Consensus over `net` with short test timeouts.
pub fn bft_setup(
    net: &Network,
    inbound: tokio::sync::mpsc::Receiver<Inbound>,
    admit: Admit,
    sync: SyncOptions,
) -> BftSetup {
    BftSetup {
        net: net.clone(),
        inbound,
        admit,
        timeouts: Some(Timeouts {
            propose_ms: 800,
            prevote_ms: 300,
            precommit_ms: 300,
        }),
        sync,
    }
}

pub struct Running {
    pub node: Node,
    pub net: Network,
    pub addr: String,
}

/// Waits until every node's tip is at least `height`.
pub async fn until_height(nodes: &[&Running], height: u64, within: Duration) {
    let t = tokio::time::Instant::now() + within;
    loop {
        let hs: Vec<u64> = nodes.iter().map(|r| r.node.tip().height).collect();
        if hs.iter().all(|&h| h >= height) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < t,
            "heights {hs:?} did not reach {height} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every node holds the same block at every height up to the lowest tip, each certified by a
/// quorum of the genesis validator set; returns that height.
pub fn same_chain(net: &Net, nodes: &[&Running]) -> u64 {
    same_chain_from(net, nodes, 1, true)
}

/// [`same_chain`] from height `from` (below it blocks may be pruned); `certified`: also check
/// each certificate against the genesis validator set.
pub fn same_chain_from(net: &Net, nodes: &[&Running], from: u64, certified: bool) -> u64 {
    let set = net.set();
    let top = nodes
        .iter()
        .map(|r| r.node.tip().height)
        .min()
        .expect("nodes");
    for h in from..=top {
        let blocks: Vec<Block> = nodes
            .iter()
            .map(|r| {
                let b = r.node.block(h).expect("read").expect("block held");
                Block::decode(&b).expect("decodes")
            })
            .collect();
        let hash = blocks[0].header.hash().0;
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(b.header.hash().0, hash, "node {i} differs at height {h}");
            assert_eq!(b.status, blocks[0].status, "node {i} statuses at {h}");
            if certified {
                verify_commit(net.channel(), h, &hash, &b.cert, &set)
                    .unwrap_or_else(|e| panic!("node {i} certificate at {h}: {e}"));
            }
        }
    }
    top
}

/// Waits until every transaction committed. Member additions endorsed on the same state
/// conflict (each bumps the member count), so only some are valid; at least one must be.
pub async fn wait_all(c: &mut Client, ids: &[[u8; 32]]) {
    let mut valid = 0;
    for id in ids {
        let r = c.wait(id, Duration::from_secs(60)).await.expect("commits");
        assert!(
            matches!(r.status, TxStatus::Valid | TxStatus::MvccConflict),
            "{r:?}"
        );
        valid += usize::from(r.status == TxStatus::Valid);
    }
    assert!(valid >= 1, "none of {} transactions valid", ids.len());
}
