//! The ledger commands of `bpu`: keys, genesis, running nodes (`up`, `node`), contracts,
//! transactions, blocks, membership and events.

use anyhow::{anyhow, bail, Context, Result};
use bpu_consensus::bls::{BlsPublicKey, ProofOfPossession};
use bpu_ledger::api::{status_text, Cursor, TxState};
use bpu_ledger::bft::BftSetup;
use bpu_ledger::client::{nonce, Client, Signer};
use bpu_ledger::format::{TxStatus, Wire};
use bpu_ledger::membership::{ChannelParams, Genesis, Member, Membership, Org, Role, ValidatorKey};
use bpu_ledger::node::{Node, NodeConfig};
use bpu_ledger::order::{now_ms, CutterConfig};
use bpu_ledger::p2p::{Admit, ChannelSpec, NetConfig, Network, PeerId};
use bpu_ledger::snapshot::{Checkpoint, SnapshotPolicy, SyncOptions};
use bpu_ledger::system;
use bpu_runtime::{CryptoService, PublicKey, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Lower-case hex of bytes (ids, keys and digests in output).
fn hex(b: &[u8]) -> String {
    ::hex::encode(b)
}

/// Default client/node address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7050";

/// How a client command reaches a node and signs.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// The node's client address.
    #[arg(long, default_value = DEFAULT_ADDR, env = "BPU_NODE")]
    pub node: String,
    /// The member's private key (PEM) that signs; `bpu up` writes `admin.pem`, `alice.pem`,
    /// `bob.pem` in its directory.
    #[arg(long, short = 'k', env = "BPU_KEY")]
    pub key: Option<PathBuf>,
    /// Crypto backend used on this side (checking proofs and block roots): `cpu`, `sim://…`,
    /// `vfio://…`.
    #[arg(long, short, default_value = "cpu")]
    pub device: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Key generation.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the PEM private key; its public identity (P-256 key, derived BLS key and
    /// proof of possession) goes to the same path with `.pub` appended.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Device that checks the new key (a test signature verified on it): `cpu`, `sim://…`,
    /// `vfio://…`.
    #[arg(long, short, default_value = "cpu")]
    pub device: String,
}

/// Genesis creation.
#[derive(clap::Args)]
pub struct GenesisArgs {
    /// Channel name (1..32 of [A-Za-z0-9_.-]).
    #[arg(long, default_value = "main")]
    pub channel: String,
    /// A member: `ORG/NAME:ROLE[,ROLE…]:KEYFILE` (roles admin, writer, reader, validator; the
    /// key file is a private PEM key, the `.pub` identity file `bpu keygen` writes next to it,
    /// or a bare P-256 public key, which cannot be a validator's: validators need the BLS key
    /// of the first two). Repeat for each member.
    #[arg(long = "member", short, required = true)]
    pub members: Vec<String>,
    /// Endorsements (from distinct validators) each transaction needs.
    #[arg(long, default_value_t = 1)]
    pub endorsements: u32,
    /// Block cutter: most transactions per block.
    #[arg(long, default_value_t = ChannelParams::default().block_max_txs)]
    pub block_max_txs: u32,
    /// Block cutter: most bytes per block.
    #[arg(long, default_value_t = ChannelParams::default().block_max_bytes)]
    pub block_max_bytes: u32,
    /// Block cutter: longest wait for a block to fill, milliseconds.
    #[arg(long, default_value_t = ChannelParams::default().block_timeout_ms)]
    pub block_timeout_ms: u32,
    /// Output file.
    #[arg(long, short, default_value = "genesis.bin")]
    pub out: PathBuf,
    /// Device used to hash the genesis (`cpu`, `sim://…`).
    #[arg(long, short, default_value = "cpu")]
    pub device: String,
}

/// A node's configuration file (TOML), for `bpu node --config`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Data directory (blocks and state); relative paths are relative to the config file.
    pub data_dir: PathBuf,
    /// Genesis file (`bpu genesis`).
    pub genesis: PathBuf,
    /// The node's private key (a validator of the genesis).
    pub key: PathBuf,
    /// Client address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Crypto backend: `cpu`, `sim://…`, `vfio://…`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Block cutter overrides (the genesis parameters otherwise).
    #[serde(default)]
    pub block_max_txs: Option<usize>,
    #[serde(default)]
    pub block_max_bytes: Option<usize>,
    #[serde(default)]
    pub block_timeout_ms: Option<u64>,
    /// The node-to-node network for BFT ordering with the channel's other validators; without
    /// it the node orders alone (solo).
    #[serde(default)]
    pub p2p: Option<P2pFile>,
    /// More channels served by this process over the same key and network, each with its own
    /// genesis, validator set, data directory and client address.
    #[serde(default)]
    pub channels: Vec<ChannelFile>,
    /// Write a state snapshot every this many blocks (served to fast-syncing peers).
    #[serde(default)]
    pub snapshot_every: Option<u64>,
    /// Complete snapshots kept (default 2).
    #[serde(default)]
    pub snapshot_keep: Option<usize>,
    /// Keep only the newest this many blocks (block 0 and the transaction index stay).
    #[serde(default)]
    pub keep_blocks: Option<u64>,
    /// On an empty data directory, start from a peer's certified state snapshot instead of
    /// replaying every block (needs `[p2p]`).
    #[serde(default)]
    pub fast_sync: bool,
    /// `HEIGHT:BLOCKHASH` of a block you trust, for fast sync once the validator set has
    /// changed since the genesis.
    #[serde(default)]
    pub checkpoint: Option<String>,
}

impl NodeFile {
    /// The snapshot, pruning and fast-sync options.
    fn sync_options(&self) -> Result<SyncOptions> {
        let checkpoint = match &self.checkpoint {
            None => None,
            Some(c) => {
                let bad = || anyhow!("checkpoint {c:?}: expected HEIGHT:BLOCKHASH (64 hex digits)");
                let (h, hash) = c.split_once(':').ok_or_else(bad)?;
                Some(Checkpoint {
                    height: h.parse().map_err(|_| bad())?,
                    hash: ::hex::decode(hash)
                        .ok()
                        .and_then(|v| v.try_into().ok())
                        .ok_or_else(bad)?,
                })
            }
        };
        Ok(SyncOptions {
            snapshots: self.snapshot_every.map(|every| SnapshotPolicy {
                every,
                keep: self.snapshot_keep.unwrap_or(2),
            }),
            keep_blocks: self.keep_blocks,
            fast_sync: self.fast_sync,
            checkpoint,
        })
    }
}

/// The `[p2p]` section of a node config.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct P2pFile {
    /// Address for the other validators' connections, e.g. `0.0.0.0:7150`.
    pub listen: String,
    /// The other validators' node-to-node addresses (this node's own is skipped).
    #[serde(default)]
    pub peers: Vec<String>,
    /// Consensus timeouts of round 0 (doubling each round), milliseconds; by default
    /// propose = block timeout + 1,000, prevote = precommit = 500.
    #[serde(default)]
    pub propose_timeout_ms: Option<u64>,
    #[serde(default)]
    pub prevote_timeout_ms: Option<u64>,
    #[serde(default)]
    pub precommit_timeout_ms: Option<u64>,
}

/// A `[[channels]]` entry: another channel of the same node.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    pub genesis: PathBuf,
    pub data_dir: PathBuf,
    /// Client address of this channel.
    pub listen: String,
}

fn default_listen() -> String {
    DEFAULT_ADDR.to_string()
}
fn default_device() -> String {
    "cpu".to_string()
}

/// `bpu up`.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Network directory: keys, genesis, node config and data. Created with a demo membership
    /// (admin, node0, alice, bob) when it has no genesis yet.
    #[arg(long, default_value = "bpu-net")]
    pub dir: PathBuf,
    /// Client address of node 0 (node i uses the port + i).
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub listen: String,
    /// Crypto backend of the node: `cpu`, `sim://…`, `vfio://…`.
    #[arg(long, short, default_value = "cpu")]
    pub device: String,
    /// Channel name for a new network.
    #[arg(long, default_value = "main")]
    pub channel: String,
    /// Block cutter timeout for a new network, milliseconds.
    #[arg(long, default_value_t = ChannelParams::default().block_timeout_ms)]
    pub block_timeout_ms: u32,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Progress lines as JSON.
    #[arg(long)]
    pub json: bool,
    /// Validator nodes of a new network: 1 runs one node in this process (solo ordering); more
    /// run one `bpu node` process each, ordering by BFT consensus on loopback.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Node-to-node address of node 0 for a new network (node i uses the port + i).
    #[arg(long, default_value = "127.0.0.1:7150")]
    pub p2p_listen: String,
    /// Only create the network directory (keys, genesis, `node<i>.toml` configs) and exit.
    #[arg(long)]
    pub prepare: bool,
    /// Do not start the gateway beside the nodes.
    #[arg(long)]
    pub no_gateway: bool,
    /// HTTP address of the gateway (REST API and dashboard).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub gateway_listen: String,
    /// The token contract the gateway deploys when the channel lacks it (`contracts/build.sh`
    /// builds it); without it, deploy `token` yourself before the gateway starts.
    #[arg(long, default_value = "contracts/build/token.elf")]
    pub token_elf: PathBuf,
}

/// Contract commands.
#[derive(clap::Subcommand)]
pub enum ContractCmd {
    /// Install a new version of a contract (an RV32IM ELF; `contracts/build.sh` builds the
    /// examples) and make it active unless `--no-activate`. Needs the admin role.
    Deploy {
        /// Contract name.
        name: String,
        /// The ELF file.
        elf: PathBuf,
        /// Install without making the new version active.
        #[arg(long)]
        no_activate: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make an installed version the active one (pin or roll back). Needs the admin role.
    Activate {
        name: String,
        version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Submit a transaction calling a contract method, and wait for it to commit.
    Call {
        #[command(flatten)]
        call: CallArgs,
        /// Return once submitted, without waiting for the commit.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a method read-only on current state (nothing is ordered). Needs the reader role.
    Query {
        #[command(flatten)]
        call: CallArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A method call.
#[derive(clap::Args, Clone)]
pub struct CallArgs {
    /// Contract name.
    pub contract: String,
    /// Method name.
    pub method: String,
    /// Arguments, concatenated in order: `u64:N`, `u32:N`, `u8:N` (little-endian), `hex:…`,
    /// `str:TEXT`, `id:KEYFILE` (the 32-byte account id, SHA-256 of the member's SEC1 key),
    /// `sha256:TEXT` (32-byte digest).
    #[arg(long = "arg", short = 'a')]
    pub args: Vec<String>,
    /// Run this installed version instead of the active one.
    #[arg(long)]
    pub version: Option<u32>,
    /// How to print the response: `hex`, `u64`, `u32`, `str`.
    #[arg(long, default_value = "hex")]
    pub out: String,
}

/// Transaction commands.
#[derive(clap::Subcommand)]
pub enum TxCmd {
    /// Where a transaction is: unknown, pending, or committed (valid or invalid with reason).
    /// With `--proof`, fetches and checks its Merkle inclusion proof.
    Status {
        /// Transaction id (hex).
        id: String,
        #[arg(long)]
        proof: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Block commands.
#[derive(clap::Subcommand)]
pub enum BlockCmd {
    /// Print a committed block (header, transactions and their statuses); the transaction root
    /// is recomputed on `--device`.
    Get {
        height: u64,
        /// Also write the encoded block (with its certificate) to this file, e.g. for
        /// `bpu verify-block --block FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Membership commands (admin transactions).
#[derive(clap::Subcommand)]
pub enum MemberCmd {
    /// Add a member: `ORG/NAME:ROLE[,ROLE…]:KEYFILE` (the key file as for `bpu genesis
    /// --member`: a validator needs its private key or its `.pub` identity file).
    Add {
        member: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a member's roles (`none` revokes it).
    Roles {
        index: u32,
        roles: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A member's public identity (TOML), written by `bpu keygen` next to the private key as
/// `<key>.pub`: what another organization needs to put the member in a genesis or add it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// Uncompressed SEC1 P-256 public key, hex (65 bytes).
    pub p256: String,
    /// BLS12-381 public key derived from the private key, compressed G1, hex (48 bytes).
    pub bls: String,
    /// Its proof of possession, compressed G2, hex (96 bytes).
    pub pop: String,
}

impl IdentityFile {
    fn new(k: &SigningKey) -> IdentityFile {
        let vk = ValidatorKey::derived(k);
        IdentityFile {
            p256: hex(&k.public_key().to_sec1()),
            bls: hex(&vk.key.to_bytes()),
            pop: hex(&vk.pop.to_bytes()),
        }
    }

    /// The keys it names; the BLS points are checked and the proof of possession verified.
    fn keys(&self) -> Result<(PublicKey, ValidatorKey)> {
        let bytes = |field: &str, v: &str| {
            ::hex::decode(v.trim()).with_context(|| format!("{field} is not hex"))
        };
        let p256 = PublicKey::from_sec1(&bytes("p256", &self.p256)?)
            .context("p256 is not an uncompressed SEC1 P-256 key")?;
        let vk = ValidatorKey {
            key: BlsPublicKey::from_bytes(&bytes("bls", &self.bls)?)
                .context("bls is not a 48-byte compressed BLS12-381 public key")?,
            pop: ProofOfPossession::from_bytes(&bytes("pop", &self.pop)?)
                .context("pop is not a 96-byte compressed BLS12-381 signature")?,
        };
        if !vk.verify() {
            bail!("the proof of possession does not verify for the BLS key");
        }
        Ok((p256, vk))
    }
}

/// Where `bpu keygen` writes the public identity of the key at `key`: `key` + `.pub`.
pub fn identity_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// `bpu keygen`.
pub fn keygen(a: &KeygenArgs) -> Result<ExitCode> {
    let id_path = identity_path(&a.out);
    for p in [&a.out, &id_path] {
        if p.exists() && !a.force {
            bail!("{} exists; pass --force to overwrite it", p.display());
        }
    }
    let k = SigningKey::generate()?;
    // A fresh key must sign and verify before it is written.
    let digest: [u8; 32] = Sha256::digest(b"bpu keygen self-check").into();
    let sig = k.sign_digest(&digest)?;
    let crypto = CryptoService::open(&a.device)?;
    let ok = crate::runtime()?.block_on(crypto.verify(&bpu_runtime::VerifyRequest::new(
        &k.public_key(),
        &sig,
        digest,
    )))?;
    if !ok {
        bail!(
            "the new key's test signature did not verify on {}",
            a.device
        );
    }
    write_key(&a.out, &k)?;
    let id = IdentityFile::new(&k);
    let text =
        format!(
        "# bpu public identity of {}: the member's P-256 key, and the BLS key it votes with as a\n\
         # validator (derived from the private key) with its proof of possession.\n{}",
        a.out.file_name().map_or(a.out.display(), |n| Path::new(n).display()),
        toml::to_string(&id)?
    );
    std::fs::write(&id_path, text).with_context(|| format!("writing {}", id_path.display()))?;
    let pk = k.public_key().to_sec1();
    println!("wrote {} and {}", a.out.display(), id_path.display());
    println!("public key (SEC1): {}", hex(&pk));
    println!("account id:        {}", hex(&account_id(&pk)));
    println!("BLS key (G1):      {}", id.bls);
    println!("BLS PoP (G2):      {}", id.pop);
    Ok(ExitCode::SUCCESS)
}

fn write_key(path: &Path, k: &SigningKey) -> Result<()> {
    let pem = k.to_pem()?;
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The 32-byte account id contracts see for a member: SHA-256 of its SEC1 key.
pub fn account_id(sec1: &[u8]) -> [u8; 32] {
    Sha256::digest(sec1).into()
}

fn read_private(path: &Path) -> Result<SigningKey> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SigningKey::from_pem(&b).with_context(|| format!("{}", path.display()))
}

/// A member's keys from a key file: a private PEM key (the BLS key is derived from it), a `.pub`
/// identity file (TOML, `bpu keygen`), or a bare P-256 public key (PEM, DER or SEC1; no BLS key).
fn read_identity(path: &Path) -> Result<(PublicKey, Option<ValidatorKey>)> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(k) = SigningKey::from_pem(&b) {
        return Ok((k.public_key(), Some(ValidatorKey::derived(&k))));
    }
    if let Ok(text) = std::str::from_utf8(&b) {
        // A TOML identity file names `p256`; anything else is tried as a public key.
        if let Ok(table) = text.parse::<toml::Table>() {
            if table.contains_key("p256") {
                let id: IdentityFile = toml::from_str(text)
                    .with_context(|| format!("{} is not an identity file", path.display()))?;
                let (pk, vk) = id.keys().with_context(|| format!("{}", path.display()))?;
                return Ok((pk, Some(vk)));
            }
        }
    }
    let pk = PublicKey::parse(&b).with_context(|| {
        format!(
            "{}: not a P-256 private key, .pub identity file or public key",
            path.display()
        )
    })?;
    Ok((pk, None))
}

/// A public key from any key file [`read_identity`] reads.
fn read_public(path: &Path) -> Result<PublicKey> {
    read_identity(path).map(|(pk, _)| pk)
}

/// A member's keys for `roles`: validators need a BLS key, so a bare public key will not do.
fn member_keys(path: &Path, roles: u8) -> Result<(PublicKey, Option<ValidatorKey>)> {
    let (pk, bls) = read_identity(path)?;
    if bls.is_none() && roles & Role::Validator as u8 != 0 {
        bail!(
            "{} is a bare P-256 public key, but a validator needs its BLS key too: pass the \
             key's .pub identity file (written by bpu keygen next to the private key) or the \
             private key",
            path.display()
        );
    }
    Ok((pk, bls))
}

fn parse_roles(s: &str) -> Result<u8> {
    if s == "none" {
        return Ok(0);
    }
    s.split(',').try_fold(0u8, |acc, r| {
        Role::parse(r.trim())
            .map(|r| acc | r as u8)
            .ok_or_else(|| anyhow!("unknown role {r:?} (admin, writer, reader, validator)"))
    })
}

/// `ORG/NAME:ROLES:KEYFILE`.
fn parse_member(s: &str) -> Result<(String, String, u8, PathBuf)> {
    let bad = || anyhow!("member {s:?}: expected ORG/NAME:ROLE[,ROLE…]:KEYFILE");
    let (who, rest) = s.split_once(':').ok_or_else(bad)?;
    let (roles, key) = rest.split_once(':').ok_or_else(bad)?;
    let (org, name) = who.split_once('/').ok_or_else(bad)?;
    Ok((
        org.to_string(),
        name.to_string(),
        parse_roles(roles)?,
        PathBuf::from(key),
    ))
}

/// Builds a genesis from member specs.
fn make_genesis(channel: &str, members: &[String], params: ChannelParams) -> Result<Genesis> {
    let mut m = Membership::default();
    for spec in members {
        let (org, name, roles, key) = parse_member(spec)?;
        let org_index = match m.orgs.iter().position(|o| o.name == org) {
            Some(i) => i,
            None => {
                m.orgs.push(Org { name: org });
                m.orgs.len() - 1
            }
        };
        let (pk, bls) = member_keys(&key, roles)?;
        m.members.push(Member {
            org: org_index as u32,
            name,
            key: pk.to_sec1().to_vec(),
            roles,
            bls,
        });
    }
    let g = Genesis {
        version: bpu_ledger::format::VERSION,
        channel: channel.to_string(),
        created_ms: now_ms(),
        membership: m,
        params,
    };
    g.validate().context("the genesis is not valid")?;
    Ok(g)
}

/// `bpu genesis`.
pub fn genesis(a: &GenesisArgs) -> Result<ExitCode> {
    let params = ChannelParams {
        block_max_txs: a.block_max_txs,
        block_max_bytes: a.block_max_bytes,
        block_timeout_ms: a.block_timeout_ms,
        endorsements: a.endorsements,
    };
    let g = make_genesis(&a.channel, &a.members, params)?;
    let bytes = g.encode();
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let rt = crate::runtime()?;
    let crypto = CryptoService::open(&a.device)?;
    let h = rt.block_on(crypto.sha256(&bytes))?;
    println!(
        "wrote {} ({} bytes): channel {}, {} members, hash {h}",
        a.out.display(),
        bytes.len(),
        g.channel,
        g.membership.members.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_genesis(path: &Path) -> Result<Genesis> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Genesis::decode(&b).with_context(|| format!("{} is not a valid genesis", path.display()))
}

/// Starts the channels of a node config (the first is the config's own `genesis`); returns
/// each channel's node and bound client address.
async fn start_node(cfg: &NodeFile, base: &Path) -> Result<Vec<(Node, std::net::SocketAddr)>> {
    let at = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut chans = vec![(
        read_genesis(&at(&cfg.genesis))?,
        at(&cfg.data_dir),
        cfg.listen.clone(),
    )];
    for c in &cfg.channels {
        chans.push((
            read_genesis(&at(&c.genesis))?,
            at(&c.data_dir),
            c.listen.clone(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (g, _, _) in &chans {
        if !names.insert(g.channel.clone()) {
            bail!("channel {} is configured twice", g.channel);
        }
    }
    if cfg.p2p.is_none() && chans.len() > 1 {
        bail!("several channels need the [p2p] section (they are ordered by BFT consensus)");
    }
    let key_path = at(&cfg.key);
    let sync = cfg.sync_options()?;
    let crypto = CryptoService::open(&cfg.device)
        .with_context(|| format!("opening device {}", cfg.device))?;
    // One network for every channel; each channel admits its genesis validators' node keys
    // from the start (the orderer keeps the list current as membership changes).
    let mut bft: Vec<Option<BftSetup>> = Vec::new();
    if let Some(p) = &cfg.p2p {
        let listen: std::net::SocketAddr = p.listen.parse().with_context(|| {
            format!(
                "[p2p] listen {:?}: expected IP:PORT, e.g. 0.0.0.0:7150",
                p.listen
            )
        })?;
        let mut specs = Vec::new();
        for (g, _, _) in &chans {
            let admit: Admit = Default::default();
            *admit.write() = g
                .membership
                .with_role(Role::Validator)
                .into_iter()
                .filter_map(|i| g.membership.member(i))
                .filter_map(|m| PeerId::from_sec1(&m.key))
                .collect();
            specs.push((ChannelSpec::new(g.channel.clone(), g.hash().0), admit));
        }
        let admits: Vec<Admit> = specs.iter().map(|(_, a)| a.clone()).collect();
        let (net, mut inbound) = Network::start(
            NetConfig {
                peers: p.peers.clone(),
                ..NetConfig::new(listen, read_private(&key_path)?)
            },
            specs,
        )
        .await
        .with_context(|| format!("starting the node network on {listen}"))?;
        for ((g, _, _), admit) in chans.iter().zip(admits) {
            let mut timeouts = None;
            if p.propose_timeout_ms.is_some()
                || p.prevote_timeout_ms.is_some()
                || p.precommit_timeout_ms.is_some()
            {
                let block_timeout = cfg
                    .block_timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(Duration::from_millis(u64::from(g.params.block_timeout_ms)));
                let d = bpu_ledger::bft::default_timeouts(block_timeout);
                timeouts = Some(bpu_consensus::core::Timeouts {
                    propose_ms: p.propose_timeout_ms.unwrap_or(d.propose_ms),
                    prevote_ms: p.prevote_timeout_ms.unwrap_or(d.prevote_ms),
                    precommit_ms: p.precommit_timeout_ms.unwrap_or(d.precommit_ms),
                });
            }
            bft.push(Some(BftSetup {
                net: net.clone(),
                inbound: inbound
                    .remove(&g.channel)
                    .ok_or_else(|| anyhow!("no network inbound for channel {}", g.channel))?,
                admit,
                timeouts,
                sync: sync.clone(),
            }));
        }
    } else {
        bft.push(None);
    }
    let mut out = Vec::new();
    for ((genesis, data_dir, listen), bft) in chans.into_iter().zip(bft) {
        let mut cutter = CutterConfig::from_params(&genesis.params);
        if let Some(v) = cfg.block_max_txs {
            cutter.max_txs = v;
        }
        if let Some(v) = cfg.block_max_bytes {
            cutter.max_bytes = v;
        }
        if let Some(v) = cfg.block_timeout_ms {
            cutter.timeout = Duration::from_millis(v);
        }
        let node_cfg = NodeConfig {
            data_dir,
            genesis,
            key: read_private(&key_path)?,
            crypto: crypto.clone(),
            cutter: Some(cutter),
            clock: None,
        };
        let node = match bft {
            None => Node::start_solo(node_cfg, sync.clone()).await?,
            Some(setup) => Node::start_bft(node_cfg, setup).await?,
        };
        let addr = bpu_ledger::server::spawn(node.clone(), &listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        out.push((node, addr));
    }
    Ok(out)
}

/// Prints each channel's height and throughput every second until Ctrl-C or `seconds`.
async fn report(nodes: &[Node], seconds: Option<u64>, json: bool) -> Result<()> {
    let start = Instant::now();
    let mut last: Vec<_> = nodes.iter().map(|n| n.metrics()).collect();
    let mut last_t = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => { eprintln!("stopping"); return Ok(()) }
        }
        let dt = last_t.elapsed().as_secs_f64();
        last_t = Instant::now();
        for (node, last) in nodes.iter().zip(last.iter_mut()) {
            let m = node.metrics();
            let tps = (m.committed_txs - last.committed_txs) as f64 / dt;
            let tip = node.tip();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "t_s": start.elapsed().as_secs_f64(),
                        "channel": node.channel(),
                        "height": m.height,
                        "block_hash": hex(&tip.hash),
                        "committed_txs": m.committed_txs,
                        "valid_txs": m.valid_txs,
                        "tps": tps,
                        "pending": m.pending,
                        "state_digest": hex(&tip.state_digest),
                    })
                );
            } else {
                let chan = if nodes.len() > 1 {
                    format!("{:<12} ", node.channel())
                } else {
                    String::new()
                };
                println!(
                    "{chan}height {:>6}  txs {:>9} ({} valid)  {:>8.0} tx/s  pending {:>6}  block {}",
                    m.height,
                    m.committed_txs,
                    m.valid_txs,
                    tps,
                    m.pending,
                    &hex(&tip.hash)[..16]
                );
            }
            *last = m;
        }
        if seconds.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
            return Ok(());
        }
    }
}

/// `bpu node --config FILE`.
/// Set by `bpu up` in its children's environment: they stop when `bpu up` is gone (even after
/// a `kill -9` of it, which runs no cleanup), instead of running on unsupervised.
pub const EXIT_WITH_PARENT: &str = "BPU_EXIT_WITH_PARENT";

/// When [`EXIT_WITH_PARENT`] is set, a thread that ends the process once its parent changes.
pub fn exit_with_parent() {
    if std::env::var_os(EXIT_WITH_PARENT).is_none() {
        return;
    }
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        if std::os::unix::process::parent_id() != parent {
            eprintln!("bpu: the supervising `bpu up` is gone; stopping");
            std::process::exit(0);
        }
    });
}

pub fn node(config: &Path, device: Option<String>, json: bool) -> Result<ExitCode> {
    exit_with_parent();
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut cfg: NodeFile = toml::from_str(&text)
        .with_context(|| format!("{} is not a node config", config.display()))?;
    if let Some(d) = device {
        cfg.device = d;
    }
    let base = config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let rt = crate::runtime()?;
    rt.block_on(async {
        let started = start_node(&cfg, &base).await?;
        for (node, addr) in &started {
            eprintln!(
                "node {} of channel {} listening on {addr}, at height {} ({}, {})",
                node.info().node,
                node.channel(),
                node.tip().height,
                node.info().backend,
                if cfg.p2p.is_some() {
                    "BFT ordering"
                } else {
                    "solo ordering"
                }
            );
        }
        let nodes: Vec<Node> = started.into_iter().map(|(n, _)| n).collect();
        report(&nodes, None, json).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The demo members of a new network besides its validators: (file, ORG/NAME:ROLES).
const DEMO_MEMBERS: [(&str, &str); 3] = [
    ("admin", "demo/admin:admin,writer,reader"),
    ("alice", "demo/alice:writer,reader"),
    ("bob", "demo/bob:writer,reader"),
];

/// The address `n` ports after `addr`.
fn port_plus(addr: &str, n: usize) -> Result<String> {
    let a: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?}: expected IP:PORT"))?;
    let port = usize::from(a.port()) + n;
    let port = u16::try_from(port).map_err(|_| anyhow!("{addr} + {n}: port out of range"))?;
    Ok(std::net::SocketAddr::new(a.ip(), port).to_string())
}

/// Creates a network directory: keys, genesis, one config per node.
fn create_network(a: &UpArgs) -> Result<()> {
    let dir = &a.dir;
    let mut specs = Vec::new();
    let key = |file: &str| -> Result<PathBuf> {
        let path = dir.join(format!("{file}.pem"));
        if !path.exists() {
            write_key(&path, &SigningKey::generate()?)?;
        }
        Ok(path)
    };
    for (file, spec) in DEMO_MEMBERS {
        specs.push(format!("{spec}:{}", key(file)?.display()));
    }
    for i in 0..a.nodes {
        let f = format!("node{i}");
        specs.push(format!("demo/{f}:validator,reader:{}", key(&f)?.display()));
    }
    let params = ChannelParams {
        block_timeout_ms: a.block_timeout_ms,
        ..ChannelParams::default()
    };
    let g = make_genesis(&a.channel, &specs, params)?;
    let p2p: Vec<String> = (0..a.nodes)
        .map(|i| port_plus(&a.p2p_listen, i))
        .collect::<Result<_>>()?;
    for i in 0..a.nodes {
        let cfg = NodeFile {
            data_dir: format!("node{i}").into(),
            genesis: "genesis.bin".into(),
            key: format!("node{i}.pem").into(),
            listen: port_plus(&a.listen, i)?,
            device: a.device.clone(),
            block_max_txs: None,
            block_max_bytes: None,
            block_timeout_ms: None,
            snapshot_every: None,
            snapshot_keep: None,
            keep_blocks: None,
            fast_sync: false,
            checkpoint: None,
            p2p: (a.nodes > 1).then(|| P2pFile {
                listen: p2p[i].clone(),
                peers: p2p.clone(),
                propose_timeout_ms: None,
                prevote_timeout_ms: None,
                precommit_timeout_ms: None,
            }),
            channels: Vec::new(),
        };
        std::fs::write(dir.join(format!("node{i}.toml")), toml::to_string(&cfg)?)?;
    }
    // Written last: its presence marks a complete directory.
    std::fs::write(dir.join("genesis.bin"), g.encode())?;
    eprintln!(
        "created network in {}: channel {}, members admin, alice, bob and {} validator node{}",
        dir.display(),
        a.channel,
        a.nodes,
        if a.nodes == 1 { "" } else { "s" }
    );
    Ok(())
}

/// `bpu up`: a local network in a directory, created on first use: one node in this process
/// (`--nodes 1`, solo ordering), or N node processes ordering by BFT consensus on loopback.
pub fn up(a: &UpArgs) -> Result<ExitCode> {
    let dir = &a.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if a.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if !dir.join("genesis.bin").exists() {
        create_network(a)?;
    }
    let g = read_genesis(&dir.join("genesis.bin"))?;
    let nodes = g.membership.with_role(Role::Validator).len();
    if nodes != a.nodes {
        eprintln!(
            "{} holds a network of {nodes} validator node(s) (not {}); starting those",
            dir.display(),
            a.nodes
        );
    }
    if a.prepare {
        println!("{}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let d = dir.display();
    let gw = (!a.no_gateway).then(|| a.gateway_listen.clone());
    let hint = |addr: &str| {
        match &gw {
        Some(g) => format!(
            "try:  curl -s -X POST http://{g}/api/v1/auth/login -H 'content-type: application/json' \\\n\
             \x20       -d '{{\"name\": \"admin\", \"password\": \"PASSWORD\"}}'   # PASSWORD: {d}/gateway-admin.password\n\
             \x20     then accounts, mint and transfers with the token: docs/gateway.md (nodes' client protocol: {addr})"
        ),
        None => format!(
            "try:  contracts/build.sh && bpu contract deploy token contracts/build/token.elf --node {addr} -k {d}/admin.pem\n\
             \x20     bpu contract call token init --node {addr} -k {d}/admin.pem\n\
             \x20     bpu contract call token mint -a id:{d}/alice.pem -a u64:100 --node {addr} -k {d}/admin.pem\n\
             \x20     bpu contract query token balance -a id:{d}/alice.pem --out u64 --node {addr} -k {d}/alice.pem"
        ),
    }
    };
    if nodes == 1 {
        let config = dir.join("node0.toml");
        let text = std::fs::read_to_string(&config)?;
        let mut cfg: NodeFile = toml::from_str(&text)?;
        cfg.listen = a.listen.clone();
        cfg.device = a.device.clone();
        let rt = crate::runtime()?;
        rt.block_on(async {
            let started = start_node(&cfg, dir).await?;
            let _gateway = Kill(start_gateway(a)?.into_iter().collect());
            let (node, addr) = started
                .first()
                .ok_or_else(|| anyhow!("no channel started"))?;
            eprintln!(
                "node0 of channel {} listening on {addr} at height {} on {}\n{}",
                node.channel(),
                node.tip().height,
                node.info().backend,
                hint(&addr.to_string())
            );
            report(std::slice::from_ref(node), a.seconds, a.json).await
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    supervise(a, nodes, &hint)
}

/// Starts `bpu gateway` beside the nodes (unless `--no-gateway`); on first use makes the
/// gateway user `admin` with a random password kept in `DIR/gateway-admin.password`.
fn start_gateway(a: &UpArgs) -> Result<Option<std::process::Child>> {
    if a.no_gateway {
        return Ok(None);
    }
    let dir = &a.dir;
    let exe = std::env::current_exe().context("finding the bpu executable")?;
    let pw = dir.join("gateway-admin.password");
    if !pw.exists() {
        let secret = ::hex::encode(rand::random::<[u8; 16]>());
        bpu_gateway::secrets::write_private(&pw, secret.as_bytes())
            .with_context(|| format!("writing {}", pw.display()))?;
        let o = std::process::Command::new(&exe)
            .args([
                "gateway",
                "user",
                "add",
                "admin",
                "--role",
                "admin",
                "--password-file",
            ])
            .arg(&pw)
            .arg("--net")
            .arg(dir)
            .output()
            .context("creating the gateway's admin user")?;
        if !o.status.success() {
            bail!(
                "creating the gateway's admin user: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    let log = std::fs::File::create(dir.join("gateway.log"))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["--log", "info", "gateway", "--net"])
        .arg(dir)
        .args(["--listen", &a.gateway_listen]);
    if a.token_elf.exists() {
        cmd.arg("--token-elf").arg(&a.token_elf);
    }
    let child = cmd
        .env(EXIT_WITH_PARENT, "1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the gateway")?;
    eprintln!(
        "gateway: dashboard http://{0}/ui/ and API http://{0}/api/v1 (user admin, password in {1}); log {2}",
        a.gateway_listen,
        pw.display(),
        dir.join("gateway.log").display()
    );
    Ok(Some(child))
}

/// Kills the processes when dropped.
struct Kill(Vec<std::process::Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `bpu node` for each node config of the directory, prints the heights every second,
/// and stops them all on Ctrl-C or after `--seconds`.
fn supervise(a: &UpArgs, nodes: usize, hint: &dyn Fn(&str) -> String) -> Result<ExitCode> {
    let dir = &a.dir;
    let exe = std::env::current_exe().context("finding the bpu executable")?;
    let mut addrs = Vec::new();
    let mut children = Vec::new();
    for i in 0..nodes {
        let config = dir.join(format!("node{i}.toml"));
        let cfg: NodeFile = toml::from_str(&std::fs::read_to_string(&config)?)
            .with_context(|| format!("{} is not a node config", config.display()))?;
        addrs.push(cfg.listen.clone());
        let log = std::fs::File::create(dir.join(format!("node{i}.log")))?;
        let child = std::process::Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(&config)
            .args(["--device", &a.device])
            .env(EXIT_WITH_PARENT, "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {i}"))?;
        children.push(child);
    }
    let mut children = Kill(children);
    let mut gateway = Kill(start_gateway(a)?.into_iter().collect());
    eprintln!(
        "{nodes} nodes (BFT ordering) on {} … ; logs in {}/node*.log\n{}",
        addrs.join(", "),
        dir.display(),
        hint(&addrs[0])
    );
    let rt = crate::runtime()?;
    rt.block_on(async {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => { eprintln!("stopping the nodes"); return Ok::<_, anyhow::Error>(()) }
            }
            for (i, c) in children.0.iter_mut().enumerate() {
                if let Ok(Some(st)) = c.try_wait() {
                    eprintln!("node {i} exited ({st}); see {}/node{i}.log", dir.display());
                }
            }
            if let Some(Ok(Some(st))) = gateway.0.first_mut().map(std::process::Child::try_wait) {
                eprintln!("the gateway exited ({st}); see {}/gateway.log", dir.display());
                gateway.0.clear();
            }
            let mut infos = Vec::new();
            for addr in &addrs {
                let info = tokio::time::timeout(Duration::from_millis(500), async {
                    Client::connect(addr).await?.info().await
                })
                .await;
                infos.push(match info {
                    Ok(Ok(i)) => Some(i),
                    _ => None,
                });
            }
            let committed = infos.iter().flatten().map(|i| i.committed_txs).max().unwrap_or(0);
            let tps = committed.saturating_sub(last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), committed);
            if a.json {
                let v: Vec<_> = infos
                    .iter()
                    .map(|i| {
                        i.as_ref().map(|i| {
                            serde_json::json!({
                                "height": i.height,
                                "block_hash": hex(&i.block_hash),
                                "committed_txs": i.committed_txs,
                                "pending": i.pending,
                            })
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"t_s": start.elapsed().as_secs_f64(), "tps": tps, "nodes": v})
                );
            } else {
                let hs: Vec<String> = infos
                    .iter()
                    .map(|i| i.as_ref().map_or("down".to_string(), |i| i.height.to_string()))
                    .collect();
                println!("heights [{}]  {tps:>8.0} tx/s", hs.join(" "));
            }
            if a.seconds.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
                return Ok(());
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Concatenates typed argument values.
pub fn encode_args(args: &[String]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for a in args {
        let (t, v) = a.split_once(':').ok_or_else(|| {
            anyhow!("argument {a:?}: expected TYPE:VALUE (u64, u32, u8, hex, str, id, sha256)")
        })?;
        match t {
            "u64" => out.extend(
                v.parse::<u64>()
                    .with_context(|| format!("{a:?}"))?
                    .to_le_bytes(),
            ),
            "u32" => out.extend(
                v.parse::<u32>()
                    .with_context(|| format!("{a:?}"))?
                    .to_le_bytes(),
            ),
            "u8" => out.push(v.parse::<u8>().with_context(|| format!("{a:?}"))?),
            "hex" => out.extend(::hex::decode(v).with_context(|| format!("{a:?}"))?),
            "str" => out.extend(v.as_bytes()),
            "id" => out.extend(account_id(&read_public(Path::new(v))?.to_sec1())),
            "sha256" => out.extend(Sha256::digest(v.as_bytes())),
            other => bail!("argument type {other:?}: use u64, u32, u8, hex, str, id or sha256"),
        }
    }
    Ok(out)
}

fn format_output(bytes: &[u8], how: &str) -> Result<String> {
    Ok(match how {
        "hex" => hex(bytes),
        "str" => String::from_utf8_lossy(bytes).into_owned(),
        "u64" => u64::from_le_bytes(
            bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| anyhow!("response of {} bytes is not a u64", bytes.len()))?,
        )
        .to_string(),
        "u32" => u32::from_le_bytes(
            bytes
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| anyhow!("response of {} bytes is not a u32", bytes.len()))?,
        )
        .to_string(),
        other => bail!("output format {other:?}: use hex, u64, u32 or str"),
    })
}

/// A connected client and a signer for the key in `c`.
async fn connect(c: &ClientArgs, need_key: bool) -> Result<(Client, Option<Signer>)> {
    let mut client = Client::connect(&c.node).await?;
    let signer = match &c.key {
        None if need_key => {
            bail!("this command signs: give the member's key with --key FILE (or BPU_KEY)")
        }
        None => None,
        Some(path) => {
            let key = read_private(path)?;
            let info = client.info().await?;
            let member = client
                .member(&key.public_key().to_sec1())
                .await?
                .ok_or_else(|| {
                    anyhow!(
                        "the key in {} is not a member of channel {}",
                        path.display(),
                        info.channel
                    )
                })?;
            Some(Signer {
                key,
                channel: info.channel,
                member,
            })
        }
    };
    Ok((client, signer))
}

/// Connects with `c`'s key (required) and signs one call of `contract.method(args)`.
async fn signed_call(
    c: &ClientArgs,
    contract: &str,
    version: Option<u32>,
    method: &str,
    args: Vec<u8>,
) -> Result<(Client, bpu_ledger::Transaction)> {
    let (client, signer) = connect(c, true).await?;
    let signer = signer.ok_or_else(|| anyhow!("no key"))?;
    let tx = signer.sign(contract, version, method, args, nonce())?;
    Ok((client, tx))
}

async fn submit_and_wait(
    client: &mut Client,
    tx: &bpu_ledger::Transaction,
    wait: bool,
    out: &str,
    json: bool,
) -> Result<ExitCode> {
    let id = client.submit(tx).await?;
    if !wait {
        if json {
            println!(
                "{}",
                serde_json::json!({ "tx_id": hex(&id), "state": "pending" })
            );
        } else {
            println!("submitted {}", hex(&id));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = client.wait(&id, Duration::from_secs(60)).await?;
    let valid = r.status == TxStatus::Valid;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "tx_id": hex(&id),
                "height": r.height,
                "index": r.index,
                "status": format!("{:?}", r.status),
                "response": hex(&r.response),
                "events": r.events.iter().map(|e| serde_json::json!({"name": e.name, "data": hex(&e.data)})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "tx {} committed in block {} #{}: {}",
            hex(&id),
            r.height,
            r.index,
            status_text(r.status)
        );
        if valid && !r.response.is_empty() {
            println!("response: {}", format_output(&r.response, out)?);
        }
        for e in &r.events {
            println!("event {}: {}", e.name, hex(&e.data));
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `bpu contract …`.
pub fn contract(cmd: &ContractCmd) -> Result<ExitCode> {
    let rt = crate::runtime()?;
    rt.block_on(async {
        match cmd {
            ContractCmd::Deploy {
                name,
                elf,
                no_activate,
                client,
            } => {
                let code =
                    std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
                let args = postcard::to_allocvec(&system::InstallArgs {
                    name: name.clone(),
                    code,
                    activate: !no_activate,
                })?;
                let (mut c, tx) =
                    signed_call(client, system::LIFECYCLE, None, "install", args).await?;
                submit_and_wait(&mut c, &tx, true, "u32", client.json).await
            }
            ContractCmd::Activate {
                name,
                version,
                client,
            } => {
                let args = postcard::to_allocvec(&system::ActivateArgs {
                    name: name.clone(),
                    version: *version,
                })?;
                let (mut c, tx) =
                    signed_call(client, system::LIFECYCLE, None, "activate", args).await?;
                submit_and_wait(&mut c, &tx, true, "u32", client.json).await
            }
            ContractCmd::Call {
                call,
                no_wait,
                client,
            } => {
                let (mut c, tx) = signed_call(
                    client,
                    &call.contract,
                    call.version,
                    &call.method,
                    encode_args(&call.args)?,
                )
                .await?;
                submit_and_wait(&mut c, &tx, !no_wait, &call.out, client.json).await
            }
            ContractCmd::Query { call, client } => {
                let (mut c, tx) = signed_call(
                    client,
                    &call.contract,
                    call.version,
                    &call.method,
                    encode_args(&call.args)?,
                )
                .await?;
                let r = c.query(&tx).await?;
                if client.json {
                    println!("{}", serde_json::json!({ "response": hex(&r) }));
                } else {
                    println!("{}", format_output(&r, &call.out)?);
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// `bpu member …`.
pub fn member(cmd: &MemberCmd) -> Result<ExitCode> {
    let rt = crate::runtime()?;
    rt.block_on(async {
        let (client, method, args) = match cmd {
            MemberCmd::Add { member, client } => {
                let (org, name, roles, key) = parse_member(member)?;
                let (pk, bls) = member_keys(&key, roles)?;
                let args = postcard::to_allocvec(&system::AddMemberArgs {
                    org,
                    name,
                    key: pk.to_sec1().to_vec(),
                    roles,
                    bls,
                })?;
                (client, "add_member", args)
            }
            MemberCmd::Roles {
                index,
                roles,
                client,
            } => {
                let args = postcard::to_allocvec(&system::SetRolesArgs {
                    member: *index,
                    roles: parse_roles(roles)?,
                })?;
                (client, "set_roles", args)
            }
        };
        let (mut c, tx) = signed_call(client, system::MEMBERSHIP, None, method, args).await?;
        submit_and_wait(&mut c, &tx, true, "u32", client.json).await
    })
}

fn parse_id(s: &str) -> Result<[u8; 32]> {
    let v = ::hex::decode(s).context("transaction ids are 64 hex digits")?;
    v.try_into()
        .map_err(|_| anyhow!("transaction ids are 64 hex digits"))
}

/// `bpu tx status`.
pub fn tx(cmd: &TxCmd) -> Result<ExitCode> {
    let TxCmd::Status { id, proof, client } = cmd;
    let id = parse_id(id)?;
    let rt = crate::runtime()?;
    rt.block_on(async {
        let (mut c, _) = connect(client, false).await?;
        let state = c.status(&id).await?;
        let (label, receipt) = match &state {
            TxState::Unknown => ("unknown".to_string(), None),
            TxState::Pending => ("pending".to_string(), None),
            TxState::Committed(r) => (format!("committed, {}", status_text(r.status)), Some(r)),
        };
        let mut proof_ok = None;
        if *proof && receipt.is_some() {
            let p = c
                .tx(&id)
                .await?
                .ok_or_else(|| anyhow!("the node has no proof for a committed transaction"))?;
            proof_ok = Some((p.verify(), p.path.len(), hex(&p.header.tx_root)));
        }
        if client.json {
            println!(
                "{}",
                serde_json::json!({
                    "tx_id": hex(&id),
                    "state": label,
                    "height": receipt.map(|r| r.height),
                    "index": receipt.map(|r| r.index),
                    "status": receipt.map(|r| format!("{:?}", r.status)),
                    "proof_verified": proof_ok.as_ref().map(|p| p.0),
                })
            );
        } else {
            println!("{}: {label}", hex(&id));
            if let Some(r) = receipt {
                println!("block {} index {}", r.height, r.index);
            }
            if let Some((ok, len, root)) = &proof_ok {
                println!(
                    "inclusion proof: {} ({len} hashes to root {root})",
                    if *ok { "verified" } else { "DOES NOT VERIFY" }
                );
            }
        }
        Ok(match (&state, proof_ok) {
            (_, Some((false, _, _))) => ExitCode::from(1),
            (TxState::Unknown, _) => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        })
    })
}

/// `bpu block get`.
pub fn block(cmd: &BlockCmd) -> Result<ExitCode> {
    let BlockCmd::Get {
        height,
        out,
        client,
    } = cmd;
    let rt = crate::runtime()?;
    rt.block_on(async {
        let (mut c, _) = connect(client, false).await?;
        let b = c
            .block(*height)
            .await?
            .ok_or_else(|| anyhow!("no block at height {height} yet"))?;
        if let Some(path) = out {
            std::fs::write(path, b.encode())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let crypto = CryptoService::open(&client.device)?;
        let encoded: Vec<Vec<u8>> = b.txs.iter().map(|t| t.encode()).collect();
        let leaves = crypto.leaf_hashes(&encoded).await?;
        let root = crypto.merkle_root(&leaves).await?;
        let root_ok = root.0 == b.header.tx_root;
        let h = &b.header;
        if client.json {
            let txs: Vec<_> = b
                .txs
                .iter()
                .zip(&b.status)
                .map(|(t, s)| {
                    serde_json::json!({
                        "id": hex(&t.tx.id().0),
                        "creator": t.tx.body.creator,
                        "contract": t.tx.body.contract,
                        "method": t.tx.body.method,
                        "status": format!("{s:?}"),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "height": h.height,
                    "hash": hex(&h.hash().0),
                    "prev_hash": hex(&h.prev_hash),
                    "tx_root": hex(&h.tx_root),
                    "tx_root_verified": root_ok,
                    "state_digest": hex(&h.state_digest),
                    "time_ms": h.time_ms,
                    "proposer": h.proposer,
                    "txs": txs,
                })
            );
        } else {
            println!("block {} {}", h.height, hex(&h.hash().0));
            println!("  previous     {}", hex(&h.prev_hash));
            println!(
                "  tx root      {} ({})",
                hex(&h.tx_root),
                if root_ok {
                    "verified"
                } else {
                    "DOES NOT MATCH"
                }
            );
            println!("  state before {}", hex(&h.state_digest));
            println!("  time         {} ms, proposer {}", h.time_ms, h.proposer);
            for (i, (t, s)) in b.txs.iter().zip(&b.status).enumerate() {
                println!(
                    "  #{i:<5} {} {}.{} by {}: {}",
                    &hex(&t.tx.id().0)[..16],
                    t.tx.body.contract,
                    t.tx.body.method,
                    t.tx.body.creator,
                    status_text(*s)
                );
            }
        }
        Ok(if root_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// `bpu events`: follow contract events from a cursor, printing each record once.
pub fn events(from: &str, count: Option<usize>, client: &ClientArgs) -> Result<ExitCode> {
    let (h, i) = from
        .split_once(':')
        .ok_or_else(|| anyhow!("--from HEIGHT:INDEX, e.g. 0:0"))?;
    let cursor = Cursor {
        height: h.parse().context("cursor height")?,
        index: i.parse().context("cursor index")?,
    };
    let rt = crate::runtime()?;
    rt.block_on(async {
        let (c, _) = connect(client, false).await?;
        let mut sub = c.subscribe(cursor).await?;
        let mut n = 0;
        while count.is_none_or(|c| n < c) {
            let r = sub.next().await?;
            for e in &r.events {
                if client.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "height": r.height, "index": r.index, "tx_id": hex(&r.tx_id),
                            "contract": r.contract, "name": e.name, "data": hex(&e.data),
                            "next": format!("{}:{}", r.next().height, r.next().index),
                        })
                    );
                } else {
                    println!(
                        "{}:{} {} {} {}",
                        r.height,
                        r.index,
                        r.contract,
                        e.name,
                        hex(&e.data)
                    );
                }
            }
            n += 1;
        }
        Ok(ExitCode::SUCCESS)
    })
}
