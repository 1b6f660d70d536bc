//! The ledger through the `bpu` binary: the token flow with the CLI only, and `kill -9` of a node
//! under sustained load followed by a restart that loses no committed block and whose state is
//! the replay of its chain.

use bpu_ledger::client::{Client, Signer};
use bpu_ledger::format::TxStatus;
use bpu_ledger::node::replay_digest;
use bpu_ledger::store::BlockStore;
use bpu_ledger::{api::TxState, Genesis, Wire};
use bpu_runtime::SigningKey;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{bpu, fails, run, stdout};

fn free_addr() -> String {
    common::free_run(1)
}

#[path = "../runtime/tests/common/contracts.rs"]
mod contracts;

/// An example contract's ELF (built once per test binary).
fn contract(name: &str) -> PathBuf {
    contracts::path(name)
}

struct Up {
    child: Child,
    addr: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bpu up` in `dir`, waiting until it answers.
fn up(dir: &Path, addr: &str) -> Up {
    let child = bpu()
        .args(["up", "--dir"])
        .arg(dir)
        .args([
            "--nodes",
            "1",
            "--listen",
            addr,
            "--block-timeout-ms",
            "100",
            "--no-gateway",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bpu up");
    let start = Instant::now();
    let rt = tokio::runtime::Runtime::new().expect("rt");
    while rt.block_on(Client::connect(addr)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "bpu up did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Up {
        child,
        addr: addr.to_string(),
    }
}

#[test]
fn token_flow_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let net = up(dir.path(), &addr);
    let d = dir.path().display().to_string();
    let key = |who: &str| format!("{d}/{who}.pem");
    let token = contract("token");
    let token = token.to_str().expect("utf8");
    let out = run(&[
        "contract",
        "deploy",
        "token",
        token,
        "--node",
        &net.addr,
        "-k",
        &key("admin"),
    ]);
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));
    run(&[
        "contract",
        "call",
        "token",
        "init",
        "--node",
        &addr,
        "-k",
        &key("admin"),
    ]);
    let id = |who: &str| format!("id:{}", key(who));
    run(&[
        "contract",
        "call",
        "token",
        "mint",
        "-a",
        &id("alice"),
        "-a",
        "u64:100",
        "--node",
        &addr,
        "-k",
        &key("admin"),
    ]);
    let out = run(&[
        "contract",
        "call",
        "token",
        "transfer",
        "-a",
        &id("bob"),
        "-a",
        "u64:30",
        "--node",
        &addr,
        "-k",
        &key("alice"),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "Valid");
    let tx_id = v["tx_id"].as_str().expect("id").to_string();
    // Overspending is refused with its reason, exit status 2.
    let o = bpu()
        .args([
            "contract",
            "call",
            "token",
            "transfer",
            "-a",
            &id("bob"),
            "-a",
            "u64:71",
        ])
        .args(["--node", &addr, "-k", &key("alice")])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("insufficient"),
        "{o:?}"
    );
    for (who, want) in [("alice", "70"), ("bob", "30")] {
        let o = run(&[
            "contract",
            "query",
            "token",
            "balance",
            "-a",
            &id(who),
            "--out",
            "u64",
            "--node",
            &addr,
            "-k",
            &key(who),
        ]);
        assert_eq!(stdout(&o), want, "{who}");
    }
    let o = run(&["tx", "status", &tx_id, "--proof", "--node", &addr, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["proof_verified"], true);
    assert_eq!(v["status"], "Valid");
    let h = v["height"].as_u64().expect("height");
    let o = run(&["block", "get", &h.to_string(), "--node", &addr, "--json"]);
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(b["tx_root_verified"], true);
    assert!(b["txs"]
        .as_array()
        .expect("txs")
        .iter()
        .any(|t| t["id"] == tx_id.as_str()));
    // Unknown transaction: exit status 1.
    let o = bpu()
        .args(["tx", "status", &"ab".repeat(32), "--node", &addr])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn kill_9_under_load_loses_no_committed_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let d = dir.path().display().to_string();
    let key = |who: &str| format!("{d}/{who}.pem");
    let mut net = up(dir.path(), &addr);
    let token = contract("token");
    run(&[
        "contract",
        "deploy",
        "token",
        token.to_str().expect("utf8"),
        "--node",
        &addr,
        "-k",
        &key("admin"),
    ]);
    run(&[
        "contract",
        "call",
        "token",
        "init",
        "--node",
        &addr,
        "-k",
        &key("admin"),
    ]);
    let genesis = Genesis::decode(&std::fs::read(dir.path().join("genesis.bin")).expect("genesis"))
        .expect("decode");
    let load_key =
        |who: &str| SigningKey::from_pem(&std::fs::read(key(who)).expect("key")).expect("pem");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");

    // Sustained load: mints from the admin (independent keys per nonce), recording receipts.
    let committed = rt.block_on(async {
        let mut c = Client::connect(&addr).await.expect("connect");
        let admin_key = load_key("admin");
        let member = c
            .member(&admin_key.public_key().to_sec1())
            .await
            .expect("m")
            .expect("admin");
        let signer = Signer {
            key: admin_key,
            channel: genesis.channel.clone(),
            member,
        };
        let alice = bpu_ledger::client::nonce().to_le_bytes(); // any 32-byte id works
        let mut to = [0u8; 32];
        to[..8].copy_from_slice(&alice);
        let mut ids = Vec::new();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(1500) {
            for _ in 0..50 {
                n += 1;
                let mut args = to.to_vec();
                args.extend(1u64.to_le_bytes());
                let tx = signer
                    .sign("token", None, "mint", args, 1_000 + n)
                    .expect("sign");
                ids.push(c.submit(&tx).await.expect("submit"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Receipts of what committed so far; the rest may or may not commit before the kill.
        let mut committed = Vec::new();
        for id in &ids {
            if let TxState::Committed(r) = c.status(id).await.expect("status") {
                committed.push(r);
            }
        }
        // Keep submitting while the node dies.
        let more: Vec<_> = (0..200)
            .map(|i| {
                let mut args = to.to_vec();
                args.extend(1u64.to_le_bytes());
                signer
                    .sign("token", None, "mint", args, 900_000 + i)
                    .expect("sign")
            })
            .collect();
        let addr2 = addr.clone();
        let bg = tokio::spawn(async move {
            let Ok(mut c) = Client::connect(&addr2).await else {
                return;
            };
            for tx in more {
                if c.submit(&tx).await.is_err() {
                    return;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        (committed, bg)
    });
    let (committed, bg) = committed;
    assert!(
        committed.len() > 50,
        "the load committed {} transactions",
        committed.len()
    );
    // SIGKILL: no chance to flush or close anything.
    net.child.kill().expect("kill -9");
    net.child.wait().expect("reap");
    rt.block_on(async {
        let _ = bg.await;
    });

    // Restart on the same directory: every receipt seen before the kill is still there, same
    // block, same index, same status.
    let net = up(dir.path(), &addr);
    rt.block_on(async {
        let mut c = Client::connect(&net.addr).await.expect("connect");
        for r in &committed {
            match c.status(&r.tx_id).await.expect("status") {
                TxState::Committed(again) => assert_eq!(&again, r),
                other => panic!("committed transaction lost after kill -9: {other:?}"),
            }
        }
        // Mints all write the supply, so those endorsed on the same state conflict: at least
        // one per block is valid.
        assert!(committed.iter().any(|r| r.status == TxStatus::Valid));
        // The chain links from block 0 to the tip.
        let info = c.info().await.expect("info");
        let mut prev = None;
        for h in 0..=info.height {
            let b = c.block(h).await.expect("block").expect("present");
            if let Some(p) = prev {
                assert_eq!(b.header.prev_hash, p, "link at {h}");
            }
            prev = Some(b.header.hash().0);
        }
    });
    drop(net);
    // The state equals the replay of all blocks from the genesis.
    let node_dir = dir.path().join("node0");
    let store = BlockStore::open(&node_dir.join("blocks.redb")).expect("blocks");
    let scratch = tempfile::tempdir().expect("tempdir");
    let replayed = replay_digest(&genesis, &store, &scratch.path().join("replay")).expect("replay");
    let state = bpu_runtime::state::StateService::open(&node_dir.join("state")).expect("state");
    assert_eq!(replayed, state.digest());
}

#[test]
fn keygen_genesis_and_node_from_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let p = |f: &str| d.join(f).display().to_string();
    for who in ["admin", "node0", "carol"] {
        let o = run(&["keygen", "-o", &p(&format!("{who}.pem"))]);
        let out = stdout(&o);
        assert!(out.contains("account id"), "{out}");
        // It prints the derived BLS key and proof of possession, and writes them with the
        // P-256 key to the public identity file next to the key.
        let id: toml::Table = toml::from_str(
            &std::fs::read_to_string(p(&format!("{who}.pem.pub"))).expect("identity file"),
        )
        .expect("toml");
        let field = |f: &str| id[f].as_str().expect("string").to_string();
        assert_eq!(
            (field("p256").len(), field("bls").len(), field("pop").len()),
            (130, 96, 192)
        );
        assert!(
            out.contains(&field("bls")) && out.contains(&field("pop")),
            "{out}"
        );
        let key = SigningKey::from_pem(&std::fs::read(p(&format!("{who}.pem"))).expect("key"))
            .expect("pem");
        let vk = bpu_ledger::ValidatorKey::derived(&key);
        assert_eq!(field("bls"), hex::encode(vk.key.to_bytes()));
        assert_eq!(field("pop"), hex::encode(vk.pop.to_bytes()));
        assert_eq!(field("p256"), hex::encode(key.public_key().to_sec1()));
    }
    // A bare P-256 public key (SEC1 bytes), e.g. from another tool.
    let carol_key = SigningKey::from_pem(&std::fs::read(p("carol.pem")).expect("key"))
        .expect("pem")
        .public_key()
        .to_sec1();
    std::fs::write(p("carol.sec1"), carol_key).expect("write");
    // keygen refuses to overwrite without --force.
    let o = bpu()
        .args(["keygen", "-o", &p("admin.pem")])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    // A genesis with a bad member spec is refused with the expected form.
    let o = bpu()
        .args(["genesis", "--member", "nonsense", "-o", &p("g.bin")])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ORG/NAME"));
    // A bare public key cannot be a validator's: the error points at the .pub file.
    fails(
        &[
            "genesis",
            "--member",
            &format!("acme/carol:validator:{}", p("carol.sec1")),
            "-o",
            &p("g.bin"),
        ],
        2,
        ".pub",
    );
    // A tampered identity file (the proof of possession of another key) is refused.
    let admin_id = std::fs::read_to_string(p("admin.pem.pub")).expect("read");
    let carol_id = std::fs::read_to_string(p("carol.pem.pub")).expect("read");
    let pop = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("pop"))
            .expect("pop line")
            .to_string()
    };
    std::fs::write(
        p("forged.pub"),
        admin_id.replace(&pop(&admin_id), &pop(&carol_id)),
    )
    .expect("write");
    fails(
        &[
            "genesis",
            "--member",
            &format!("acme/node9:validator:{}", p("forged.pub")),
            "-o",
            &p("g.bin"),
        ],
        2,
        "proof of possession",
    );
    // The genesis from public identity files only (no private key leaves its owner); a bare
    // public key is fine for a non-validator.
    run(&[
        "genesis",
        "--channel",
        "cfgnet",
        "--member",
        &format!("acme/admin:admin,writer,reader:{}", p("admin.pem.pub")),
        "--member",
        &format!("acme/node0:validator:{}", p("node0.pem.pub")),
        "--member",
        &format!("other/carol:reader:{}", p("carol.sec1")),
        "--block-timeout-ms",
        "50",
        "-o",
        &p("genesis.bin"),
    ]);
    let g =
        Genesis::decode(&std::fs::read(p("genesis.bin")).expect("read")).expect("valid genesis");
    assert_eq!(
        (
            g.channel.as_str(),
            g.membership.members.len(),
            g.params.block_timeout_ms
        ),
        ("cfgnet", 3, 50)
    );
    // The validator set is read from the membership: node0, with the key derived from its
    // private key file.
    let node0 = SigningKey::from_pem(&std::fs::read(p("node0.pem")).expect("key")).expect("pem");
    let vs = g.membership.validator_set().expect("validator set");
    assert_eq!(vs.members, vec![1]);
    assert_eq!(
        vs.set.keys(),
        &[bpu_ledger::ValidatorKey::derived(&node0).key]
    );
    assert_eq!(g.membership.members[2].bls, None);
    // The same genesis from the private keys has the same members.
    run(&[
        "genesis",
        "--channel",
        "cfgnet",
        "--member",
        &format!("acme/admin:admin,writer,reader:{}", p("admin.pem")),
        "--member",
        &format!("acme/node0:validator:{}", p("node0.pem")),
        "--member",
        &format!("other/carol:reader:{}", p("carol.sec1")),
        "-o",
        &p("genesis-private.bin"),
    ]);
    let g2 = Genesis::decode(&std::fs::read(p("genesis-private.bin")).expect("read"))
        .expect("valid genesis");
    assert_eq!(g2.membership, g.membership);
    let addr = free_addr();
    std::fs::write(
        p("node.toml"),
        format!("data_dir = \"data\"\ngenesis = \"genesis.bin\"\nkey = \"node0.pem\"\nlisten = \"{addr}\"\n"),
    )
    .expect("config");
    let child = bpu()
        .args(["node", "--config", &p("node.toml"), "--device", "cpu"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bpu node");
    let _guard = Up {
        child,
        addr: addr.clone(),
    };
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let start = Instant::now();
    let info = loop {
        if let Ok(mut c) = rt.block_on(Client::connect(&addr)) {
            break rt.block_on(c.info()).expect("info");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "bpu node did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(info.channel, "cfgnet");
    assert_eq!(info.genesis_hash, g.hash().0);
    assert_eq!(info.node, 1);
    // The admin can deploy on it.
    let token = contract("token");
    let o = run(&[
        "contract",
        "deploy",
        "token",
        token.to_str().expect("utf8"),
        "--node",
        &addr,
        "-k",
        &p("admin.pem"),
    ]);
    assert!(stdout(&o).contains("valid"));
    assert!(d.join("data/blocks.redb").exists());
    // Another organization's node joins as a validator from its identity file; a bare public
    // key cannot.
    run(&["keygen", "-o", &p("node1.pem")]);
    let o = run(&[
        "member",
        "add",
        &format!("other/node1:validator,reader:{}", p("node1.pem.pub")),
        "--node",
        &addr,
        "-k",
        &p("admin.pem"),
    ]);
    assert!(stdout(&o).contains("valid"), "{}", stdout(&o));
    let o = bpu()
        .args([
            "member",
            "add",
            &format!("other/node2:validator:{}", p("carol.sec1")),
            "--node",
            &addr,
            "-k",
            &p("admin.pem"),
        ])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(".pub"));
}
