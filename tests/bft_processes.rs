//! Four `bpu node` processes ordering by BFT consensus on loopback, made by `bpu up --prepare`:
//! `kill -9` of the leader under load, a new leader commits in the next round, the old leader
//! restarts and catches up, every node holds the same certified block at every height, and
//! `bpu verify-block` checks a header and a transaction as a light client.

use bpu_ledger::client::{Client, Signer};
use bpu_ledger::format::{Block, Wire};
use bpu_ledger::{system, Genesis, Role};
use bpu_runtime::SigningKey;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 4;

mod common;
use common::{bpu, free_run, run};

fn port_plus(addr: &str, i: usize) -> String {
    let a: std::net::SocketAddr = addr.parse().expect("addr");
    format!("127.0.0.1:{}", a.port() as usize + i)
}

/// A node process, killed (SIGKILL) when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn start(dir: &Path, i: usize) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("node{i}.log")))
            .expect("log");
        let child = bpu()
            .args(["node", "--config"])
            .arg(dir.join(format!("node{i}.toml")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bpu node");
        Proc(Some(child))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (height, block hash) of a node, if it answers.
async fn tip(addr: &str) -> Option<(u64, [u8; 32])> {
    let f = async {
        let mut c = Client::connect(addr).await.ok()?;
        c.info().await.ok().map(|i| (i.height, i.block_hash))
    };
    tokio::time::timeout(Duration::from_secs(2), f)
        .await
        .ok()
        .flatten()
}

async fn until<F: Fn(&[Option<(u64, [u8; 32])>]) -> bool>(
    addrs: &[String],
    within: Duration,
    what: &str,
    f: F,
) -> Vec<Option<(u64, [u8; 32])>> {
    let t = Instant::now();
    loop {
        let mut tips = Vec::new();
        for a in addrs {
            tips.push(tip(a).await);
        }
        if f(&tips) {
            return tips;
        }
        assert!(
            t.elapsed() < within,
            "{what}: tips {tips:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits member additions to the live nodes until stopped (each one a new key and name).
fn load(
    addrs: Vec<String>,
    admin: SigningKey,
    channel: String,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("rt");
        rt.block_on(async {
            let signer = Signer {
                key: admin,
                channel,
                member: 0,
            };
            let mut sent = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let node = (i as usize) % addrs.len();
                if down.load(Ordering::Relaxed) == node as u64 {
                    continue;
                }
                let key = SigningKey::generate().expect("keygen");
                let args = postcard::to_allocvec(&system::AddMemberArgs {
                    org: "load".into(),
                    name: format!("u{i}"),
                    key: key.public_key().to_sec1().to_vec(),
                    roles: Role::Reader as u8,
                    bls: None,
                })
                .expect("encode");
                let tx = signer
                    .sign(system::MEMBERSHIP, None, "add_member", args, 10_000 + i)
                    .expect("sign");
                let r = tokio::time::timeout(Duration::from_secs(2), async {
                    Client::connect(&addrs[node]).await?.submit(&tx).await
                })
                .await;
                if matches!(r, Ok(Ok(_))) {
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    })
}

/// Every node holds the same block at every height up to `top`; returns each height's
/// certificate round (read from node 0's blocks).
async fn same_blocks(addrs: &[String], top: u64) -> Vec<u32> {
    let mut clients = Vec::new();
    for a in addrs {
        clients.push(Client::connect(a).await.expect("connect"));
    }
    let mut rounds = Vec::new();
    for h in 1..=top {
        let mut hashes = Vec::new();
        for c in clients.iter_mut() {
            let b: Block = c.block(h).await.expect("block").expect("held");
            hashes.push(b.header.hash().0);
            if hashes.len() == 1 {
                let qc = bpu_consensus::bls::QuorumCert::from_bytes(&b.cert).expect("certificate");
                rounds.push(qc.round);
            }
        }
        assert!(
            hashes.iter().all(|x| *x == hashes[0]),
            "nodes differ at height {h}"
        );
    }
    rounds
}

fn run_ok(args: &[&str]) -> String {
    String::from_utf8_lossy(&run(args).stdout).to_string()
}

#[test]
fn kill_9_of_the_leader_then_restart_keeps_one_certified_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (client, p2p) = (free_run(NODES as u16), free_run(NODES as u16));
    run_ok(&[
        "up",
        "--prepare",
        "--dir",
        d.to_str().expect("utf8"),
        "--nodes",
        "4",
        "--listen",
        &client,
        "--p2p-listen",
        &p2p,
        "--block-timeout-ms",
        "100",
    ]);
    // Generous round timeouts: the test checks rounds, not speed (a loaded CI machine must not
    // turn a healthy round into a timed-out one).
    for i in 0..NODES {
        let path = d.join(format!("node{i}.toml"));
        let mut t: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).expect("cfg")).expect("toml");
        let p = t
            .get_mut("p2p")
            .and_then(|v| v.as_table_mut())
            .expect("[p2p]");
        p.insert("propose_timeout_ms".into(), toml::Value::Integer(3_000));
        p.insert("prevote_timeout_ms".into(), toml::Value::Integer(1_000));
        p.insert("precommit_timeout_ms".into(), toml::Value::Integer(1_000));
        std::fs::write(&path, toml::to_string(&t).expect("toml")).expect("write");
    }
    let genesis_path: PathBuf = d.join("genesis.bin");
    let genesis = Genesis::decode(&std::fs::read(&genesis_path).expect("g")).expect("genesis");
    let validators = genesis.membership.with_role(Role::Validator);
    assert_eq!(validators.len(), NODES);
    let addrs: Vec<String> = (0..NODES).map(|i| port_plus(&client, i)).collect();
    let mut procs: Vec<Proc> = (0..NODES).map(|i| Proc::start(d, i)).collect();

    let rt = tokio::runtime::Runtime::new().expect("rt");
    let admin =
        SigningKey::from_pem(&std::fs::read(d.join("admin.pem")).expect("key")).expect("pem");
    let stop = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicU64::new(u64::MAX));
    let loader = load(
        addrs.clone(),
        admin,
        genesis.channel.clone(),
        stop.clone(),
        down.clone(),
    );

    // Under load, the chain grows on every node.
    let tips = rt.block_on(until(
        &addrs,
        Duration::from_secs(60),
        "first blocks",
        |t| t.iter().all(|x| x.is_some_and(|(h, _)| h >= 3)),
    ));
    // The leader of the next height (round 0): validator (h + 1) mod n is node (h + 1) mod n.
    let h = tips.iter().flatten().map(|t| t.0).max().expect("tips");
    let leader = ((h + 1) % NODES as u64) as usize;
    down.store(leader as u64, Ordering::Relaxed);
    procs[leader].kill();
    let killed_at = Instant::now();
    let live: Vec<String> = (0..NODES)
        .filter(|&i| i != leader)
        .map(|i| addrs[i].clone())
        .collect();
    // A new leader commits: the others go past the height the dead one led, and past its
    // next turn (n heights later).
    rt.block_on(until(
        &live,
        Duration::from_secs(120),
        "commits without the leader",
        |t| t.iter().all(|x| x.is_some_and(|(hh, _)| hh > h + 1)),
    ));
    eprintln!(
        "first heights after killing leader node {leader} at height {h}: {:.1} s",
        killed_at.elapsed().as_secs_f64()
    );
    let tips = rt.block_on(until(
        &live,
        Duration::from_secs(120),
        "a full rotation",
        |t| {
            t.iter()
                .all(|x| x.is_some_and(|(hh, _)| hh > h + NODES as u64))
        },
    ));
    let top_live = tips.iter().flatten().map(|t| t.0).min().expect("tips");

    // The old leader restarts and catches up.
    procs[leader] = Proc::start(d, leader);
    down.store(u64::MAX, Ordering::Relaxed);
    rt.block_on(until(
        &addrs,
        Duration::from_secs(120),
        "the restarted node catches up",
        |t| {
            t.iter()
                .all(|x| x.is_some_and(|(hh, _)| hh >= top_live + 2))
        },
    ));
    stop.store(true, Ordering::Relaxed);
    let sent = loader.join().expect("load thread");
    assert!(sent > 0);
    // Quiet: every node reaches the same tip.
    let tips = rt.block_on(until(&addrs, Duration::from_secs(60), "one tip", |t| {
        t.iter().all(|x| x.is_some() && *x == t[0])
    }));
    let top = tips[0].expect("tip").0;
    let rounds = rt.block_on(same_blocks(&addrs, top));
    // Heights with a dead round-0 leader were decided in round 1 (within two view timeouts);
    // none needed more.
    let late: Vec<(u64, u32)> = rounds
        .iter()
        .enumerate()
        .filter(|(_, &r)| r > 1)
        .map(|(i, &r)| (i as u64 + 1, r))
        .collect();
    assert!(late.is_empty(), "heights decided after round 1: {late:?}");
    assert!(
        rounds.iter().skip(h as usize).any(|&r| r == 1),
        "some height after the kill needed a new leader (round 1): {rounds:?}"
    );

    // The restarted validator replayed its write-ahead log: nobody saw it sign two votes.
    for i in 0..NODES {
        let log = std::fs::read_to_string(d.join(format!("node{i}.log"))).unwrap_or_default();
        assert!(!log.contains("equivocated"), "node {i} log:\n{log}");
        assert!(!log.contains("a fork"), "node {i} log:\n{log}");
    }

    // A light client checks a header and a transaction with only the genesis.
    let g = genesis_path.to_str().expect("utf8");
    let out = run_ok(&[
        "verify-block",
        "--genesis",
        g,
        "--node",
        &addrs[leader],
        "--height",
        &top.to_string(),
    ]);
    assert!(out.contains("certified by"), "{out}");
    let block_file = d.join("b.bin");
    run_ok(&[
        "block",
        "get",
        "2",
        "--node",
        &addrs[0],
        "--out",
        block_file.to_str().expect("utf8"),
    ]);
    let b = Block::decode(&std::fs::read(&block_file).expect("block")).expect("decode");
    let tx = b.txs.first().expect("a transaction in block 2").tx.id().0;
    let out = run_ok(&[
        "verify-block",
        "--genesis",
        g,
        "--block",
        block_file.to_str().expect("utf8"),
        "--node",
        &addrs[1],
        "--tx",
        &hex::encode(tx),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let checks = v["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 2);
    assert!(checks.iter().all(|c| c["verified"] == true), "{out}");
    // A tampered block file does not verify (exit 1, with the reason).
    let mut bad = b.clone();
    bad.header.time_ms += 1;
    std::fs::write(&block_file, bad.encode()).expect("write");
    let o = bpu()
        .args(["verify-block", "--genesis", g, "--block"])
        .arg(&block_file)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("another block"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn one_node_process_serves_two_channels_with_their_own_chains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let p = |f: &str| d.join(f).display().to_string();
    run(&["keygen", "-o", &p("node.pem")]);
    run(&["keygen", "-o", &p("admin.pem")]);
    run(&["keygen", "-o", &p("other.pem")]);
    for (chan, admin) in [("alpha", "admin.pem"), ("beta", "other.pem")] {
        run(&[
            "genesis",
            "--channel",
            chan,
            "--member",
            &format!("org/admin:admin,writer,reader:{}", p(admin)),
            "--member",
            &format!("org/node:validator,reader:{}", p("node.pem")),
            "--block-timeout-ms",
            "100",
            "-o",
            &p(&format!("{chan}.bin")),
        ]);
    }
    let (client, p2p) = (free_run(2), free_run(1));
    let (a_addr, b_addr) = (port_plus(&client, 0), port_plus(&client, 1));
    std::fs::write(
        d.join("node.toml"),
        format!(
            "data_dir = \"alpha\"\ngenesis = \"alpha.bin\"\nkey = \"node.pem\"\nlisten = \"{a_addr}\"\n\
             \n[p2p]\nlisten = \"{p2p}\"\n\n[[channels]]\ngenesis = \"beta.bin\"\ndata_dir = \"beta\"\nlisten = \"{b_addr}\"\n"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(d.join("node.log")).expect("log");
    let _node = Proc(Some(
        bpu()
            .args(["node", "--config"])
            .arg(d.join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn"),
    ));
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let addrs = vec![a_addr.clone(), b_addr.clone()];
    rt.block_on(until(
        &addrs,
        Duration::from_secs(60),
        "both channels up",
        |t| t.iter().all(|x| x.is_some()),
    ));
    // One admission on each channel, signed by that channel's admin; each commits on its own
    // chain (one validator: a quorum of one).
    for (addr, admin) in [(&a_addr, "admin.pem"), (&b_addr, "other.pem")] {
        let key = SigningKey::from_pem(&std::fs::read(p(admin)).expect("key")).expect("pem");
        rt.block_on(async {
            let mut c = Client::connect(addr).await.expect("connect");
            let info = c.info().await.expect("info");
            let signer = Signer {
                key,
                channel: info.channel.clone(),
                member: 0,
            };
            let args = postcard::to_allocvec(&system::AddMemberArgs {
                org: "org".into(),
                name: "reader".into(),
                key: SigningKey::generate()
                    .expect("keygen")
                    .public_key()
                    .to_sec1()
                    .to_vec(),
                roles: Role::Reader as u8,
                bls: None,
            })
            .expect("encode");
            let tx = signer
                .sign(system::MEMBERSHIP, None, "add_member", args, 1)
                .expect("sign");
            let id = c.submit(&tx).await.expect("accepted");
            let r = c.wait(&id, Duration::from_secs(30)).await.expect("commits");
            assert_eq!(r.status, bpu_ledger::format::TxStatus::Valid, "{r:?}");
        });
    }
    let infos: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for a in &addrs {
            v.push(
                Client::connect(a)
                    .await
                    .expect("c")
                    .info()
                    .await
                    .expect("info"),
            );
        }
        v
    });
    assert_eq!(infos[0].channel, "alpha");
    assert_eq!(infos[1].channel, "beta");
    assert!(infos.iter().all(|i| i.height >= 1));
    assert_ne!(infos[0].genesis_hash, infos[1].genesis_hash);
    assert_ne!(infos[0].state_digest, infos[1].state_digest);
    assert!(d.join("alpha/blocks.redb").exists() && d.join("beta/blocks.redb").exists());
}
