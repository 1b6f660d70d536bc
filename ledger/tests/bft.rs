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
use bpu_ledger::p2p::PeerId;
use bpu_ledger::system;
use common::contracts;
use common::net::{logged, same_chain, until_height, wait_all, Net, Running, ADMIN, CHANNEL};
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
