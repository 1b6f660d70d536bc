//! BFT ordering end to end in one process: validators on loopback TCP, each a full node with its
//! own data directory (the network helpers are in `common/net.rs`); same chain everywhere,
//! certificates that verify, a 2|2 partition, a late node catching up, 7 validators with 2 and 3
//! down, and forged messages refused with reasons.

mod common;

use bpu_consensus::bls::BlsSecretKey;
use bpu_consensus::core::{Vote, VoteKind};
use bpu_ledger::bft::{Message, SignedProposal, SignedVote};
use bpu_ledger::client::Client;
use bpu_ledger::format::{Block, TxStatus, Wire};
use bpu_ledger::membership::derive_bls;
use bpu_ledger::node::Node;
use bpu_ledger::p2p::{Admit, NetConfig, Network, PeerId};
use bpu_ledger::snapshot::SyncOptions;
use bpu_ledger::system;
use bpu_runtime::SigningKey;
use common::contracts;
use common::net::{
    bft_setup, copy, free_addr, logged, same_chain, until_height, wait_all, Net, Running, ADMIN,
    CHANNEL,
};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_commit_one_certified_chain() {
    let net = Net::new(4);
    let mut run = Vec::new();
    for i in 0..4 {
        run.push(net.start(i).await);
    }
    let all: Vec<&Running> = run.iter().collect();
    // Transactions through two different nodes; every node commits them.
    let a = net.add_members(&run[0], 0, 20).await;
    let b = net.add_members(&run[3], 20, 20).await;
    let mut c = Client::connect(&run[1].addr).await.expect("connect");
    wait_all(&mut c, &[a, b].concat()).await;
    let h = run[0].node.tip().height;
    until_height(&all, h, Duration::from_secs(20)).await;
    let top = same_chain(&net, &all);
    assert!(top >= 1);
    // The contract flow works through consensus too.
    let mut c0 = Client::connect(&run[2].addr).await.expect("connect");
    let args = postcard::to_allocvec(&system::InstallArgs {
        name: "token".into(),
        code: contracts::elf("token"),
        activate: true,
    })
    .expect("encode");
    let tx = net
        .signer(ADMIN)
        .sign(system::LIFECYCLE, None, "install", args, 7)
        .expect("sign");
    let id = c0.submit(&tx).await.expect("accepted");
    let r = c0
        .wait(&id, Duration::from_secs(60))
        .await
        .expect("commits");
    assert_eq!(r.status, TxStatus::Valid);
    until_height(&all, r.height, Duration::from_secs(20)).await;
    same_chain(&net, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_two_partition_commits_nothing_and_resumes_when_healed() {
    let net = Net::new(4);
    let mut run = Vec::new();
    for i in 0..4 {
        run.push(net.start(i).await);
    }
    let all: Vec<&Running> = run.iter().collect();
    let ids = net.add_members(&run[0], 0, 5).await;
    let mut c = Client::connect(&run[0].addr).await.expect("connect");
    wait_all(&mut c, &ids).await;
    let before: Vec<u64> = run.iter().map(|r| r.node.tip().height).collect();
    let base = *before.iter().max().expect("max");
    until_height(&all, base, Duration::from_secs(20)).await;

    let left: HashSet<PeerId> = [net.peer(0), net.peer(1)].into();
    let right: HashSet<PeerId> = [net.peer(2), net.peer(3)].into();
    for (i, r) in run.iter().enumerate() {
        r.net
            .set_blocked(if i < 2 { right.clone() } else { left.clone() });
    }
    let pending_l = net.add_members(&run[0], 100, 5).await;
    let pending_r = net.add_members(&run[2], 200, 5).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (i, r) in run.iter().enumerate() {
        assert_eq!(
            r.node.tip().height,
            base,
            "node {i} committed during a 2|2 partition"
        );
    }
    for r in &run {
        r.net.set_blocked(HashSet::new());
    }
    wait_all(&mut c, &[pending_l, pending_r].concat()).await;
    let h = run.iter().map(|r| r.node.tip().height).max().expect("max");
    until_height(&all, h, Duration::from_secs(30)).await;
    assert!(same_chain(&net, &all) > base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_validator_catches_up_from_certified_blocks() {
    let net = Net::new(4);
    let mut run = Vec::new();
    for i in 0..3 {
        run.push(net.start(i).await);
    }
    let ids = net.add_members(&run[0], 0, 30).await;
    let mut c = Client::connect(&run[1].addr).await.expect("connect");
    wait_all(&mut c, &ids).await;
    let h = run.iter().map(|r| r.node.tip().height).max().expect("max");
    assert!(h >= 1);
    // Node 3 was down the whole time: it syncs every block and then takes part.
    run.push(net.start(3).await);
    let all: Vec<&Running> = run.iter().collect();
    until_height(&all, h, Duration::from_secs(30)).await;
    let more = net.add_members(&run[3], 100, 5).await;
    let mut c3 = Client::connect(&run[3].addr).await.expect("connect");
    wait_all(&mut c3, &more).await;
    let h = run.iter().map(|r| r.node.tip().height).max().expect("max");
    until_height(&all, h, Duration::from_secs(30)).await;
    same_chain(&net, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_validators_stall_with_three_down_and_live_with_two() {
    let net = Net::new(7);
    let mut run = Vec::new();
    for i in 0..4 {
        run.push(net.start(i).await);
    }
    // Four of seven (three down): quorum is five, nothing commits, nothing forks.
    let ids = net.add_members(&run[0], 0, 5).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (i, r) in run.iter().enumerate() {
        assert_eq!(
            r.node.tip().height,
            0,
            "node {i} committed with 3 of 7 down"
        );
    }
    // A fifth comes up (two down): the transactions commit.
    run.push(net.start(4).await);
    let mut c = Client::connect(&run[0].addr).await.expect("connect");
    wait_all(&mut c, &ids).await;
    let all: Vec<&Running> = run.iter().collect();
    let h = run.iter().map(|r| r.node.tip().height).max().expect("max");
    until_height(&all, h, Duration::from_secs(30)).await;
    same_chain(&net, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_votes_wrong_proposers_and_bad_certificates_are_refused_with_reasons() {
    let net = Net::new(4);
    let mut run = Vec::new();
    for i in 0..3 {
        run.push(net.start(i).await);
    }
    let ids = net.add_members(&run[0], 0, 3).await;
    let mut c = Client::connect(&run[0].addr).await.expect("connect");
    wait_all(&mut c, &ids).await;
    let tip = run[0].node.tip();

    // Validator 3's node key, with a BLS key that is not validator 3's: a Byzantine peer.
    let (evil, _rx, _) = net.network(3, Some(net.all_peers())).await;
    let t = tokio::time::Instant::now() + Duration::from_secs(10);
    while evil.peers(CHANNEL).len() < 3 {
        assert!(tokio::time::Instant::now() < t, "evil peer connects");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wrong = BlsSecretKey::generate();
    let send = |m: &Message| {
        evil.broadcast(CHANNEL, postcard::to_allocvec(m).expect("encode").into());
    };
    let h = tip.height + 1;
    // A forged vote: claims validator 0, signed by another key.
    let v = Vote {
        height: h,
        round: 0,
        kind: VoteKind::Prevote,
        block: None,
        voter: 0,
    };
    send(&Message::Vote(SignedVote {
        vote: v,
        sig: wrong.sign_vote(CHANNEL, h, 0, VoteKind::Prevote, None),
    }));
    // A proposal from a validator that does not lead (height h, round 5).
    let leader = bpu_consensus::core::proposer(4, h, 5);
    let block = run[0].node.block(tip.height).expect("read").expect("block");
    send(&Message::Proposal(SignedProposal {
        height: h,
        round: 5,
        valid_round: None,
        proposer: (leader + 1) % 4,
        block,
        sig: wrong.sign(b"x"),
    }));
    // A "committed" block whose certificate has too few signers, for a node that is behind:
    // status claims a higher tip so the nodes ask for it; answer with a bad certificate.
    let mut fake =
        Block::decode(&run[0].node.block(tip.height).expect("read").expect("b")).expect("decodes");
    fake.header.height = h;
    fake.header.prev_hash = tip.hash;
    fake.header.state_digest = tip.state_digest;
    let id = fake.header.hash().0;
    let set = net.set();
    let me3 = derive_bls(&net.nodes[3]);
    let qc = bpu_consensus::bls::QuorumCert {
        set_id: set.id(),
        height: h,
        round: 0,
        kind: VoteKind::Precommit,
        block: Some(id),
        signers: vec![0b1000],
        signature: me3.sign_vote(CHANNEL, h, 0, VoteKind::Precommit, Some(id)),
    };
    fake.cert = qc.to_bytes();
    send(&Message::Blocks(vec![fake.encode()]));
    // Signers unknown to the set (bit 5 of 4 validators), and a certificate of another set.
    let unknown = bpu_consensus::bls::QuorumCert {
        signers: vec![0b0010_0111],
        ..qc.clone()
    };
    fake.cert = unknown.to_bytes();
    send(&Message::Blocks(vec![fake.encode()]));
    let other = bpu_consensus::bls::QuorumCert {
        set_id: [7; 32],
        ..qc
    };
    fake.cert = other.to_bytes();
    send(&Message::Blocks(vec![fake.encode()]));

    let t = tokio::time::Instant::now() + Duration::from_secs(10);
    let reasons = [
        "rejected a forged Prevote",
        "rejected a proposal for",
        "signers, a quorum needs",
        "is not a validator of the set",
        "names another validator set",
    ];
    while !reasons.iter().all(|r| logged(r)) {
        assert!(
            tokio::time::Instant::now() < t,
            "missing log reasons: {:?}",
            reasons.iter().filter(|r| !logged(r)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing of it was committed; the honest nodes still agree and go on.
    let all: Vec<&Running> = run.iter().collect();
    same_chain(&net, &all);
    for r in &run {
        if let Some(b) = r.node.block(h).expect("read") {
            assert_ne!(Block::decode(&b).expect("b").header.hash().0, id);
        }
    }
    evil.shutdown();
    let more = net.add_members(&run[1], 50, 2).await;
    wait_all(&mut c, &more).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_validator_replays_its_log_and_never_equivocates() {
    let net = Net::new(4);
    let mut run = Vec::new();
    for i in 1..4 {
        run.push(net.start(i).await);
    }
    // Validator 0 runs without a client API, so halting it and dropping it closes its files.
    let (n0, net0) = net.start_node(0).await.expect("node 0");
    let ids = net.add_members(&run[0], 0, 3).await;
    let mut c = Client::connect(&run[1].addr).await.expect("connect");
    wait_all(&mut c, &ids).await;
    let top = run.iter().map(|r| r.node.tip().height).max().expect("max");
    let t = tokio::time::Instant::now() + Duration::from_secs(20);
    while n0.tip().height < top {
        assert!(tokio::time::Instant::now() < t, "node 0 keeps up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A 2|2 partition keeps every validator voting in rounds of one height.
    let left: HashSet<PeerId> = [net.peer(0), net.peer(1)].into();
    let right: HashSet<PeerId> = [net.peer(2), net.peer(3)].into();
    net0.set_blocked(right.clone());
    run[0].net.set_blocked(right);
    run[1].net.set_blocked(left.clone());
    run[2].net.set_blocked(left);
    let stuck = net.add_members(&run[0], 100, 3).await;
    let h = n0.tip().height;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Crash validator 0 in the middle of the height, and start it again from its directory.
    n0.halt();
    net0.shutdown();
    drop((n0, net0));
    let t = tokio::time::Instant::now() + Duration::from_secs(20);
    let (n0, net0) = loop {
        match net.start_node(0).await {
            Ok(x) => break x,
            Err(e) => {
                assert!(tokio::time::Instant::now() < t, "restart: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(n0.tip().height, h);
    let t = tokio::time::Instant::now() + Duration::from_secs(10);
    while !logged(&format!("logged consensus inputs of height {}", h + 1)) {
        assert!(
            tokio::time::Instant::now() < t,
            "node 0 did not replay its log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Healed: the height decides, with one chain and no double vote anywhere.
    for r in &run {
        r.net.set_blocked(HashSet::new());
    }
    wait_all(&mut c, &stuck).await;
    // Endorsed on a state that has the earlier additions (they all bump the member count).
    let h = run[1].node.tip().height;
    let live: Vec<&Running> = run.iter().collect();
    until_height(&live, h, Duration::from_secs(20)).await;
    let more = net.add_members(&run[2], 200, 3).await;
    wait_all(&mut c, &more).await;
    let top = run.iter().map(|r| r.node.tip().height).max().expect("max");
    let t = tokio::time::Instant::now() + Duration::from_secs(30);
    while n0.tip().height < top {
        assert!(tokio::time::Instant::now() < t, "node 0 catches up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r0 = Running {
        node: n0,
        net: net0,
        addr: String::new(),
    };
    let all: Vec<&Running> = std::iter::once(&r0).chain(run.iter()).collect();
    same_chain(&net, &all);
    assert!(!logged("equivocated"), "a validator signed two votes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_with_different_validator_sets_share_processes_not_chains() {
    // Five node processes: alpha is ordered by nodes 0..=3, beta by nodes 1..=4; nodes 1..=3
    // serve both channels over one network.
    let keys: Vec<SigningKey> = (0..5)
        .map(|_| SigningKey::generate().expect("keygen"))
        .collect();
    let alpha = Net::with_nodes("alpha", keys[0..4].iter().map(copy).collect());
    let beta = Net::with_nodes("beta", keys[1..5].iter().map(copy).collect());
    let addrs: Vec<String> = (0..5).map(|_| free_addr()).collect();
    let mut alpha_nodes = Vec::new();
    let mut beta_nodes = Vec::new();
    let mut nets = Vec::new();
    for (p, key) in keys.iter().enumerate() {
        let mut chans = Vec::new();
        if p < 4 {
            chans.push((&alpha, p, Admit::default()));
        }
        if p >= 1 {
            chans.push((&beta, p - 1, Admit::default()));
        }
        let specs = chans
            .iter()
            .map(|(n, _, a)| (n.spec(), a.clone()))
            .collect();
        let (net, mut rx) = Network::start(
            NetConfig {
                peers: addrs.clone(),
                ..NetConfig::new(addrs[p].parse().expect("addr"), copy(key))
            },
            specs,
        )
        .await
        .expect("network");
        for (n, i, admit) in chans {
            let inbound = rx.remove(n.channel()).expect("inbound");
            let dir = n.dirs[i].path();
            let setup = bft_setup(&net, inbound, admit, SyncOptions::default());
            let node = Node::start_bft(n.config_at(i, dir), setup)
                .await
                .expect("node");
            let addr = bpu_ledger::server::spawn(node.clone(), "127.0.0.1:0")
                .await
                .expect("client API")
                .to_string();
            let r = Running {
                node,
                net: net.clone(),
                addr,
            };
            if n.channel() == "alpha" {
                alpha_nodes.push(r);
            } else {
                beta_nodes.push(r);
            }
        }
        nets.push(net);
    }
    // Different traffic on each channel, through a node serving both.
    let a = alpha.add_members(&alpha_nodes[1], 0, 6).await;
    let b = beta.add_members(&beta_nodes[0], 0, 2).await;
    let mut ca = Client::connect(&alpha_nodes[1].addr)
        .await
        .expect("connect");
    let mut cb = Client::connect(&beta_nodes[0].addr).await.expect("connect");
    wait_all(&mut ca, &a).await;
    wait_all(&mut cb, &b).await;
    // A transaction of one channel is refused by the other's node.
    let tx = beta
        .signer(ADMIN)
        .sign(system::MEMBERSHIP, None, "add_member", vec![], 99)
        .expect("sign");
    assert!(
        ca.submit(&tx).await.is_err(),
        "alpha took a beta transaction"
    );
    let all_a: Vec<&Running> = alpha_nodes.iter().collect();
    let all_b: Vec<&Running> = beta_nodes.iter().collect();
    let ha = alpha_nodes
        .iter()
        .map(|r| r.node.tip().height)
        .max()
        .expect("h");
    let hb = beta_nodes
        .iter()
        .map(|r| r.node.tip().height)
        .max()
        .expect("h");
    until_height(&all_a, ha, Duration::from_secs(20)).await;
    until_height(&all_b, hb, Duration::from_secs(20)).await;
    // Each chain is certified by its own set, and the chains share no block.
    same_chain(&alpha, &all_a);
    same_chain(&beta, &all_b);
    let block = |r: &Running, h| {
        Block::decode(&r.node.block(h).expect("read").expect("block")).expect("decode")
    };
    assert_ne!(
        block(&alpha_nodes[1], 1).header.hash(),
        block(&beta_nodes[0], 1).header.hash()
    );
    assert_ne!(alpha.set().id(), beta.set().id());
    // Node 0 is not a beta validator: it was never given beta's frames, and node 4 no alpha's.
    assert!(nets[0].peers("beta").is_empty());
    assert!(nets[4].peers("alpha").is_empty());
}
