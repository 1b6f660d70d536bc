//! Snapshots, pruning and fast sync end to end: validators on loopback (helpers in
//! `common/net.rs`) take snapshots and prune; a validator started late on an empty directory
//! restores a snapshot and follows; forged anchors, truncated and corrupted chunk streams are
//! refused and retried; a changed validator set needs a trusted checkpoint; a pruned node
//! answers block requests without the pruned blocks and a late node catches up elsewhere.

mod common;

use bpu_consensus::bls::QuorumCert;
use bpu_consensus::core::VoteKind;
use bpu_consensus::light::verify_commit;
use bpu_ledger::bft::Message;
use bpu_ledger::client::Client;
use bpu_ledger::fastsync::FastSyncError;
use bpu_ledger::format::{Block, TxStatus, Wire};
use bpu_ledger::membership::{derive_bls, Role, ValidatorKey};
use bpu_ledger::node::NodeError;
use bpu_ledger::snapshot::{Checkpoint, SnapshotDir, SnapshotOffer, SnapshotPolicy, SyncOptions};
use bpu_ledger::system;
use bpu_runtime::SigningKey;
use common::net::{logged, same_chain_from, until_height, wait_all, Net, Running, ADMIN, CHANNEL};
use std::time::Duration;

/// Commits `n` blocks through `via`, one member addition each (names `user{first}`..).
async fn commit_blocks(net: &Net, via: &Running, first: u32, n: u32) {
    let mut c = Client::connect(&via.addr).await.expect("connect");
    for i in first..first + n {
        let ids = net.add_members(via, i, 1).await;
        wait_all(&mut c, &ids).await;
    }
}

fn tip(run: &[Running]) -> u64 {
    run.iter()
        .map(|r| r.node.tip().height)
        .max()
        .expect("nodes")
}

fn snapshots(every: u64, keep: usize) -> Option<SnapshotPolicy> {
    Some(SnapshotPolicy { every, keep })
}

/// Waits for `cond`, polling; fails with `what` after `within`.
async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let t = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(tokio::time::Instant::now() < t, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The newest complete snapshot in validator `i`'s data directory.
fn newest_offer(net: &Net, i: usize) -> Option<SnapshotOffer> {
    SnapshotDir::open(net.dirs[i].path())
        .offer(None)
        .expect("snapshot dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_validator_fast_syncs_from_a_snapshot_and_follows() {
    let net = Net::new(4);
    let opts = SyncOptions {
        snapshots: snapshots(5, 2),
        keep_blocks: Some(5),
        ..SyncOptions::default()
    };
    let mut run = Vec::new();
    for i in 0..3 {
        run.push(net.start_with(i, opts.clone()).await.expect("starts"));
    }
    commit_blocks(&net, &run[0], 0, 22).await;
    let h = tip(&run);
    assert!(h >= 20, "only {h} blocks");
    until_height(&run.iter().collect::<Vec<_>>(), h, Duration::from_secs(30)).await;
    // The running validators pruned (block 0 stays) and keep at most two snapshots.
    for (i, r) in run.iter().enumerate() {
        eventually(&format!("node {i} prunes"), Duration::from_secs(20), || {
            r.node.base().expect("base") > 1
        })
        .await;
        assert!(r.node.block(1).expect("read").is_none(), "node {i} block 1");
        assert!(r.node.block(0).expect("read").is_some(), "node {i} block 0");
        let kept = SnapshotDir::open(net.dirs[i].path())
            .heights()
            .expect("heights");
        assert!(
            !kept.is_empty() && kept.len() <= 2,
            "node {i} snapshots {kept:?}"
        );
    }

    // Validator 3 starts late on an empty directory with fast sync (and without pruning, so a
    // block it had fetched would still be there).
    let late = net
        .start_with(
            3,
            SyncOptions {
                fast_sync: true,
                snapshots: snapshots(5, 2),
                ..SyncOptions::default()
            },
        )
        .await
        .expect("fast sync");
    let base = late.node.base().expect("base");
    assert!(base > 10, "started at block {base}");
    assert!(logged("fast sync: restored the state after block"));
    for hh in [1, base - 1] {
        assert!(
            late.node.block(hh).expect("read").is_none(),
            "block {hh} was never fetched"
        );
    }
    run.push(late);
    let all: Vec<&Running> = run.iter().collect();
    until_height(&all, h, Duration::from_secs(30)).await;
    // It takes part: transactions through it commit, and every node has the same new blocks.
    commit_blocks(&net, &run[3], 100, 3).await;
    let h2 = tip(&run);
    until_height(&all, h2, Duration::from_secs(30)).await;
    let from = run
        .iter()
        .map(|r| r.node.base().expect("base"))
        .max()
        .expect("max");
    assert!(same_chain_from(&net, &all, from, true) >= h + 3);
    assert!(
        run[3].node.block(base).expect("read").is_some(),
        "the anchor is committed"
    );
    let t0 = run[0].node.tip();
    let t3 = run[3].node.tip();
    assert_eq!((t0.height, t0.state_digest), (t3.height, t3.state_digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_anchors_and_damaged_chunks_are_refused_then_the_snapshot_restores() {
    let net = Net::new(4);
    // Only validator 2 takes snapshots; once it leaves, a Byzantine peer with its key is the
    // only source of a snapshot.
    let mut run = vec![net.start(0).await, net.start(1).await];
    run.push(
        net.start_with(
            2,
            SyncOptions {
                snapshots: snapshots(3, 1),
                ..SyncOptions::default()
            },
        )
        .await
        .expect("starts"),
    );
    commit_blocks(&net, &run[0], 0, 8).await;
    eventually("a snapshot", Duration::from_secs(20), || {
        newest_offer(&net, 2).is_some()
    })
    .await;
    let gone = run.pop().expect("node 2");
    gone.net.shutdown();
    drop(gone);
    // Nothing commits any more (2 of 4): the snapshot stays the newest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let real = newest_offer(&net, 2).expect("offer");
    let dir2 = SnapshotDir::open(net.dirs[2].path());

    // A forged offer: the anchor certified by validator 2 alone.
    let mut anchor = Block::decode(&real.anchor).expect("anchor");
    let id = anchor.header.hash().0;
    let me2 = derive_bls(&net.nodes[2]);
    let qc = QuorumCert {
        set_id: net.set().id(),
        height: anchor.header.height,
        round: 0,
        kind: VoteKind::Precommit,
        block: Some(id),
        signers: vec![0b0100],
        signature: me2.sign_vote(
            CHANNEL,
            anchor.header.height,
            0,
            VoteKind::Precommit,
            Some(id),
        ),
    };
    anchor.cert = qc.to_bytes();
    let forged = SnapshotOffer {
        anchor: anchor.encode(),
        ..real.clone()
    };

    let (evil, mut rx, _) = net.network(2, Some(net.all_peers())).await;
    let server = evil.clone();
    let offered = real.clone();
    let served = tokio::spawn(async move {
        let real = offered;
        // Counted only when sent: a reply before this peer's own link is up is lost.
        let mut offers = 0;
        let mut firsts = 0;
        while let Some(m) = rx.recv().await {
            let (reply, first) = match postcard::from_bytes::<Message>(&m.bytes) {
                Ok(Message::GetSnapshot { .. }) => {
                    let o = if offers == 0 { &forged } else { &real };
                    (Message::Snapshot(Some(o.clone())), false)
                }
                Ok(Message::GetChunk {
                    height,
                    offset,
                    len,
                }) => {
                    let mut data = dir2.read_chunk(height, offset, len).expect("chunk");
                    if offset == 0 {
                        match firsts {
                            // First a truncated chunk, then one with its last byte (the
                            // snapshot's checksum) flipped; then the real one.
                            0 => {
                                data.pop();
                            }
                            1 => {
                                if let Some(b) = data.last_mut() {
                                    *b ^= 1;
                                }
                            }
                            _ => {}
                        }
                    }
                    let first = offset == 0;
                    (
                        Message::Chunk {
                            height,
                            offset,
                            data,
                        },
                        first,
                    )
                }
                _ => continue,
            };
            let is_offer = matches!(reply, Message::Snapshot(_));
            let sent = server.send(
                CHANNEL,
                m.peer,
                postcard::to_allocvec(&reply).expect("encode").into(),
            );
            if sent && is_offer {
                offers += 1;
            }
            if sent && first {
                firsts += 1;
            }
        }
        firsts
    });

    let late = net
        .start_with(
            3,
            SyncOptions {
                fast_sync: true,
                ..SyncOptions::default()
            },
        )
        .await
        .expect("fast sync");
    for reason in [
        "refused the snapshot offer",
        "signers, a quorum needs",
        "refused a chunk of snapshot",
        "the file checksum does not match its contents",
        "fast sync: restored the state after block",
    ] {
        assert!(logged(reason), "no log line with {reason:?}");
    }
    let base = late.node.base().expect("base");
    assert_eq!(base, real.height + 1);
    assert!(late.node.block(1).expect("read").is_none());
    evil.shutdown();
    let firsts = served.await.expect("server");
    assert!(firsts >= 3, "the first chunk was asked for {firsts} times");

    // Validators 0, 1 and 3 are a quorum: the late node catches up by blocks and commits.
    run.push(late);
    let all: Vec<&Running> = run.iter().collect();
    let h = tip(&run);
    until_height(&all, h, Duration::from_secs(30)).await;
    commit_blocks(&net, &run[2], 100, 2).await;
    let h2 = tip(&run);
    until_height(&all, h2, Duration::from_secs(30)).await;
    assert!(same_chain_from(&net, &all, base, true) >= h + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_validator_set_needs_a_trusted_checkpoint() {
    let net = Net::new(4);
    let opts = SyncOptions {
        snapshots: snapshots(3, 2),
        ..SyncOptions::default()
    };
    let mut run = Vec::new();
    for i in 0..4 {
        run.push(net.start_with(i, opts.clone()).await.expect("starts"));
    }
    // A fifth validator joins (it never runs: 4 of 5 is still a quorum).
    let key = SigningKey::generate().expect("keygen");
    let bls = derive_bls(&key);
    let args = postcard::to_allocvec(&system::AddMemberArgs {
        org: "org".into(),
        name: "node4".into(),
        key: key.public_key().to_sec1().to_vec(),
        roles: Role::Validator as u8 | Role::Reader as u8,
        bls: Some(ValidatorKey {
            key: bls.public_key(),
            pop: bls.prove_possession(),
        }),
    })
    .expect("encode");
    let tx = net
        .signer(ADMIN)
        .sign(system::MEMBERSHIP, None, "add_member", args, 1)
        .expect("sign");
    let mut c = Client::connect(&run[0].addr).await.expect("connect");
    let id = c.submit(&tx).await.expect("accepted");
    let r = c.wait(&id, Duration::from_secs(60)).await.expect("commits");
    assert_eq!(r.status, TxStatus::Valid, "{r:?}");
    let changed = r.height;
    commit_blocks(&net, &run[0], 0, 5).await;
    until_height(
        &run.iter().collect::<Vec<_>>(),
        tip(&run),
        Duration::from_secs(30),
    )
    .await;
    // Every running validator's newest snapshot is of a state after the change.
    eventually(
        "snapshots after the change",
        Duration::from_secs(20),
        || (0..4).all(|i| newest_offer(&net, i).is_some_and(|o| o.height >= changed)),
    )
    .await;

    // Validator 3 leaves and comes back on an empty directory: the snapshots are certified by
    // a set it cannot trust from the genesis alone.
    let gone = run.pop().expect("node 3");
    gone.net.shutdown();
    drop(gone);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = tempfile::tempdir().expect("tempdir");
    let fast = SyncOptions {
        fast_sync: true,
        ..SyncOptions::default()
    };
    let err = net
        .start_at(3, fresh.path(), fast.clone())
        .await
        .err()
        .expect("fast sync refused without a checkpoint");
    assert!(
        matches!(
            err,
            NodeError::FastSync(FastSyncError::NeedsCheckpoint { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("trusted checkpoint"), "{err}");
    assert!(logged("not the genesis set"));

    // With the operator's checkpoint (the anchor of validator 0's newest snapshot) it restores.
    let offer = newest_offer(&net, 0).expect("offer");
    let anchor = Block::decode(&offer.anchor).expect("anchor");
    let cp = Checkpoint {
        height: anchor.header.height,
        hash: anchor.header.hash().0,
    };
    let back = net
        .start_at(
            3,
            fresh.path(),
            SyncOptions {
                checkpoint: Some(cp),
                ..fast
            },
        )
        .await
        .expect("fast sync with a checkpoint");
    assert_eq!(back.node.base().expect("base"), cp.height);
    run.push(back);
    let all: Vec<&Running> = run.iter().collect();
    until_height(&all, tip(&run), Duration::from_secs(30)).await;
    commit_blocks(&net, &run[3], 100, 2).await;
    let h = tip(&run);
    until_height(&all, h, Duration::from_secs(60)).await;
    let top = same_chain_from(&net, &all, cp.height, false);
    // Certified by the new set of five.
    let set = run[0].node.membership().validator_set().expect("set").set;
    assert_eq!(set.len(), 5);
    for hh in cp.height..=top {
        let b = Block::decode(&run[3].node.block(hh).expect("read").expect("held")).expect("b");
        verify_commit(CHANNEL, hh, &b.header.hash().0, &b.cert, &set)
            .unwrap_or_else(|e| panic!("certificate at {hh}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_node_serves_only_what_it_keeps_and_a_late_node_catches_up_elsewhere() {
    let net = Net::new(4);
    let mut run = vec![net
        .start_with(
            0,
            SyncOptions {
                keep_blocks: Some(4),
                ..SyncOptions::default()
            },
        )
        .await
        .expect("starts")];
    run.push(net.start(1).await);
    run.push(net.start(2).await);
    commit_blocks(&net, &run[0], 0, 10).await;
    let h = tip(&run);
    until_height(&run.iter().collect::<Vec<_>>(), h, Duration::from_secs(30)).await;
    eventually("node 0 prunes", Duration::from_secs(20), || {
        run[0].node.base().expect("base") + 3 >= h
    })
    .await;
    let base = run[0].node.base().expect("base");
    assert!(base > 1);
    assert!(run[0].node.block(base - 1).expect("read").is_none());
    assert!(run[0].node.block(base).expect("read").is_some());

    // A raw peer (validator 3's key) asks node 0 for pruned blocks, then for kept ones.
    let (raw, mut rx, _) = net.network(3, Some(net.all_peers())).await;
    let p0 = net.peer(0);
    eventually("the raw peer connects", Duration::from_secs(10), || {
        raw.peers(CHANNEL).contains(&p0)
    })
    .await;
    let ask = |from: u64| {
        let m = Message::GetBlocks { from, count: 16 };
        assert!(raw.send(
            CHANNEL,
            p0,
            postcard::to_allocvec(&m).expect("encode").into()
        ));
    };
    // Blocks from node 0 within `within`, and the base its status reports.
    async fn answers(
        rx: &mut tokio::sync::mpsc::Receiver<bpu_ledger::p2p::Inbound>,
        from: bpu_ledger::p2p::PeerId,
        within: Duration,
    ) -> (Vec<u64>, Option<u64>) {
        let t = tokio::time::Instant::now() + within;
        let mut heights = Vec::new();
        let mut base = None;
        while let Ok(Some(m)) = tokio::time::timeout_at(t, rx.recv()).await {
            if m.peer != from {
                continue;
            }
            match postcard::from_bytes::<Message>(&m.bytes) {
                Ok(Message::Blocks(bs)) => heights.extend(
                    bs.iter()
                        .map(|b| Block::decode(b).expect("block").header.height),
                ),
                Ok(Message::Status { base: b, .. }) => base = Some(b),
                _ => {}
            }
        }
        (heights, base)
    }
    // Node 0 reaches the raw peer once its own dialer connects (it backs off while the address
    // was down): its periodic status shows that.
    let t = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, b) = answers(&mut rx, p0, Duration::from_millis(600)).await;
        if b.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < t, "no status from node 0");
    }
    ask(1);
    let (heights, status_base) = answers(&mut rx, p0, Duration::from_secs(2)).await;
    assert!(heights.is_empty(), "pruned blocks served: {heights:?}");
    assert!(status_base.is_some_and(|b| b >= base), "{status_base:?}");
    ask(base);
    let (heights, _) = answers(&mut rx, p0, Duration::from_secs(2)).await;
    assert_eq!(heights.first(), Some(&base), "{heights:?}");
    assert!(heights.iter().all(|&x| x >= base));
    raw.shutdown();

    // Validator 3 starts late without fast sync: it catches up from validators 1 and 2, which
    // keep every block, and then takes part.
    run.push(net.start(3).await);
    let all: Vec<&Running> = run.iter().collect();
    until_height(&all, h, Duration::from_secs(30)).await;
    commit_blocks(&net, &run[3], 100, 2).await;
    let h2 = tip(&run);
    until_height(&all, h2, Duration::from_secs(30)).await;
    let full: Vec<&Running> = run[1..].iter().collect();
    same_chain_from(&net, &full, 1, true);
    let base = run[0].node.base().expect("base");
    assert!(same_chain_from(&net, &all, base, true) >= h + 2);
}
