//! The ledger node end to end over its TCP API: token flow, double spend, rejections, versioned
//! deployment, membership changes, events resumed from a cursor, restart recovery and replay.

mod common;

use bpu_ledger::api::{Cursor, TxState};
use bpu_ledger::client::ClientError;
use bpu_ledger::format::{TxStatus, Wire};
use bpu_ledger::node::replay_digest;
use bpu_ledger::store::BlockStore;
use bpu_ledger::{api::Rejection, system, Transaction};
use common::*;
use std::time::Duration;

fn rejected(r: Result<[u8; 32], ClientError>) -> Rejection {
    match r {
        Err(ClientError::Rejected(x)) => x,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_double_spend_and_rejections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let (node, addr) = start(dir.path(), &keys, "cpu", cutter(1000, 200)).await;
    let mut c = client(&addr).await;
    deploy_token(&mut c, &keys).await;

    // Mint 100 to alice; a non-owner cannot mint (reverts at endorsement).
    let r = call(
        &mut c,
        &keys.signer(ADMIN),
        "token",
        "mint",
        to_amount(&keys.id(ALICE), 100),
        3,
    )
    .await;
    assert_eq!(r.status, TxStatus::Valid);
    let bad_mint = keys
        .signer(ALICE)
        .sign("token", None, "mint", to_amount(&keys.id(ALICE), 5), 4)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&bad_mint).await),
        Rejection::Reverted(_)
    ));
    assert_eq!(balance(&mut c, &keys, ALICE).await, 100);

    // Two transfers spending the same 100, endorsed on the same state, in one block.
    let alice = keys.signer(ALICE);
    let t1 = alice
        .sign("token", None, "transfer", to_amount(&keys.id(BOB), 100), 10)
        .expect("sign");
    let t2 = alice
        .sign("token", None, "transfer", to_amount(&keys.id(BOB), 100), 11)
        .expect("sign");
    let id1 = c.submit(&t1).await.expect("t1 accepted");
    let id2 = c.submit(&t2).await.expect("t2 accepted");
    let r1 = c
        .wait(&id1, Duration::from_secs(10))
        .await
        .expect("t1 commits");
    let r2 = c
        .wait(&id2, Duration::from_secs(10))
        .await
        .expect("t2 commits");
    assert_eq!(r1.height, r2.height, "both in one block");
    let statuses = [r1.status, r2.status];
    assert_eq!(
        statuses.iter().filter(|s| **s == TxStatus::Valid).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.contains(&TxStatus::MvccConflict), "{statuses:?}");
    assert_eq!(balance(&mut c, &keys, ALICE).await, 0);
    assert_eq!(balance(&mut c, &keys, BOB).await, 100);

    // Replay of a committed transaction, and of one still pending.
    assert!(matches!(
        rejected(c.submit(&t1).await),
        Rejection::Replay(_)
    ));
    let bob = keys.signer(BOB);
    let t3 = bob
        .sign("token", None, "transfer", to_amount(&keys.id(ALICE), 1), 12)
        .expect("sign");
    let id3 = c.submit(&t3).await.expect("t3");
    assert!(matches!(
        rejected(c.submit(&t3).await),
        Rejection::Replay(_)
    ));
    c.wait(&id3, Duration::from_secs(10))
        .await
        .expect("t3 commits");

    // Bad signature, unknown member, wrong role, wrong channel, malformed bytes.
    let mut forged = bob
        .sign("token", None, "transfer", to_amount(&keys.id(BOB), 1), 13)
        .expect("sign");
    forged.sig.s[31] ^= 1;
    assert_eq!(rejected(c.submit(&forged).await), Rejection::BadSignature);
    let mut stranger = keys.signer(BOB);
    stranger.member = 77;
    let tx = stranger
        .sign("token", None, "balance", vec![], 14)
        .expect("sign");
    assert_eq!(rejected(c.submit(&tx).await), Rejection::UnknownMember(77));
    let tx = keys
        .signer(CAROL)
        .sign("token", None, "transfer", to_amount(&keys.id(BOB), 1), 15)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&tx).await),
        Rejection::WrongRole { member: CAROL, .. }
    ));
    let tx = alice
        .sign(system::LIFECYCLE, None, "activate", vec![], 16)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&tx).await),
        Rejection::WrongRole { member: ALICE, .. }
    ));
    let mut other = keys.signer(ALICE);
    other.channel = "other".into();
    let tx = other
        .sign("token", None, "balance", vec![], 17)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&tx).await),
        Rejection::WrongChannel { .. }
    ));
    let good = alice
        .sign("token", None, "balance", vec![], 18)
        .expect("sign");
    let mut junk = good.encode();
    junk.truncate(junk.len() - 3);
    assert!(matches!(
        rejected(c.submit_bytes(&junk).await),
        Rejection::Malformed(_)
    ));
    let mut trailing = good.encode();
    trailing.push(0);
    assert!(matches!(
        rejected(c.submit_bytes(&trailing).await),
        Rejection::Malformed(_)
    ));
    assert!(matches!(
        rejected(c.submit_bytes(&[0xff; 40]).await),
        Rejection::Malformed(_)
    ));

    // The node keeps serving, and its state is exactly the replay of its blocks.
    let r = call(
        &mut c,
        &alice,
        "token",
        "transfer",
        to_amount(&keys.id(BOB), 1),
        19,
    )
    .await;
    assert_eq!(r.status, TxStatus::Valid);
    let info = c.info().await.expect("info");
    assert_eq!(info.height, node.tip().height);
    assert_eq!(info.state_digest, node.state().digest());
    // The chain links up to the node's tip.
    let mut last = None;
    for h in 0..=info.height {
        let b = c.block(h).await.expect("block").expect("exists");
        if let Some(prev) = last {
            assert_eq!(b.header.prev_hash, prev, "chain link at {h}");
        }
        last = Some(b.header.hash().0);
    }
    assert_eq!(last, Some(info.block_hash));

    // A committed transaction comes with a Merkle proof that checks.
    let p = c.tx(&id3).await.expect("tx").expect("found");
    assert!(p.verify());
    let mut bad = p.clone();
    bad.receipt.index ^= 1;
    assert!(!bad.verify());
    match c.status(&id1).await.expect("status") {
        TxState::Committed(r) => assert_eq!(r.tx_id, id1),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.status(&[9; 32]).await.expect("status"), TxState::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_deployment_and_membership_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let (_node, addr) = start(dir.path(), &keys, "cpu", cutter(1000, 50)).await;
    let mut c = client(&addr).await;
    deploy_token(&mut c, &keys).await;
    let admin = keys.signer(ADMIN);
    let mint = |n| to_amount(&keys.id(ALICE), n);
    call(&mut c, &admin, "token", "mint", mint(7), 3).await;

    // v2 installed without activation: calls still run v1, a pinned call runs v2; both see
    // the same state (no migration).
    let install = |activate| {
        postcard::to_allocvec(&system::InstallArgs {
            name: "token".into(),
            code: contracts::elf("token"),
            activate,
        })
        .expect("encode")
    };
    let r = call(
        &mut c,
        &admin,
        system::LIFECYCLE,
        "install",
        install(false),
        4,
    )
    .await;
    assert_eq!(
        (r.status, r.response.as_slice()),
        (TxStatus::Valid, &2u32.to_le_bytes()[..])
    );
    let q = |v: Option<u32>, n| {
        keys.signer(CAROL)
            .sign("token", v, "balance", keys.id(ALICE).to_vec(), n)
            .expect("sign")
    };
    assert_eq!(c.query(&q(None, 1)).await.expect("v1"), 7u64.to_le_bytes());
    assert_eq!(
        c.query(&q(Some(2), 2)).await.expect("v2"),
        7u64.to_le_bytes()
    );
    assert!(matches!(
        c.query(&q(Some(3), 3)).await,
        Err(ClientError::Rejected(Rejection::UnknownContract(_)))
    ));
    let act = postcard::to_allocvec(&system::ActivateArgs {
        name: "token".into(),
        version: 2,
    })
    .expect("enc");
    let r = call(&mut c, &admin, system::LIFECYCLE, "activate", act, 5).await;
    assert_eq!(r.status, TxStatus::Valid);
    let bad = postcard::to_allocvec(&system::ActivateArgs {
        name: "token".into(),
        version: 9,
    })
    .expect("enc");
    let tx = admin
        .sign(system::LIFECYCLE, None, "activate", bad, 6)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&tx).await),
        Rejection::Reverted(_)
    ));

    // Membership: a new writer can transact once added; revoked, it is refused.
    let dave = bpu_runtime::SigningKey::generate().expect("key");
    let add = postcard::to_allocvec(&system::AddMemberArgs {
        org: "org2".into(),
        name: "dave".into(),
        key: dave.public_key().to_sec1().to_vec(),
        roles: bpu_ledger::Role::Writer as u8,
        bls: None,
    })
    .expect("enc");
    let r = call(&mut c, &admin, system::MEMBERSHIP, "add_member", add, 7).await;
    assert_eq!(r.status, TxStatus::Valid);
    let index = u32::from_le_bytes(r.response.as_slice().try_into().expect("u32"));
    assert_eq!(index, 5, "appended after the five genesis members");
    // The same key, or the same name in the organization, cannot be added twice.
    let again = |name: &str, key: Vec<u8>| {
        postcard::to_allocvec(&system::AddMemberArgs {
            org: "org2".into(),
            name: name.into(),
            key,
            roles: bpu_ledger::Role::Reader as u8,
            bls: None,
        })
        .expect("enc")
    };
    let tx = admin
        .sign(
            system::MEMBERSHIP,
            None,
            "add_member",
            again("erin", dave.public_key().to_sec1().to_vec()),
            70,
        )
        .expect("sign");
    assert!(matches!(rejected(c.submit(&tx).await), Rejection::Reverted(m) if m.contains("key")));
    let other_key = bpu_runtime::SigningKey::generate()
        .expect("key")
        .public_key()
        .to_sec1()
        .to_vec();
    let tx = admin
        .sign(
            system::MEMBERSHIP,
            None,
            "add_member",
            again("dave", other_key),
            71,
        )
        .expect("sign");
    assert!(matches!(rejected(c.submit(&tx).await), Rejection::Reverted(m) if m.contains("dave")));
    // A validator needs a BLS key: added without one, or promoted without one, it reverts.
    let erin = bpu_runtime::SigningKey::generate().expect("key");
    let mut as_validator = system::AddMemberArgs {
        org: "org2".into(),
        name: "erin".into(),
        key: erin.public_key().to_sec1().to_vec(),
        roles: bpu_ledger::Role::Validator as u8,
        bls: None,
    };
    let tx = admin
        .sign(
            system::MEMBERSHIP,
            None,
            "add_member",
            postcard::to_allocvec(&as_validator).expect("enc"),
            72,
        )
        .expect("sign");
    assert!(
        matches!(rejected(c.submit(&tx).await), Rejection::Reverted(m) if m.contains("erin") && m.contains("BLS"))
    );
    // Nor may it reuse the node's BLS key.
    as_validator.bls = Some(bpu_ledger::ValidatorKey::derived(&keys.node));
    let tx = admin
        .sign(
            system::MEMBERSHIP,
            None,
            "add_member",
            postcard::to_allocvec(&as_validator).expect("enc"),
            73,
        )
        .expect("sign");
    assert!(
        matches!(rejected(c.submit(&tx).await), Rejection::Reverted(m) if m.contains("BLS key belongs"))
    );
    let promote = postcard::to_allocvec(&system::SetRolesArgs {
        member: index,
        roles: bpu_ledger::Role::Validator as u8,
    })
    .expect("enc");
    let tx = admin
        .sign(system::MEMBERSHIP, None, "set_roles", promote, 74)
        .expect("sign");
    assert!(
        matches!(rejected(c.submit(&tx).await), Rejection::Reverted(m) if m.contains("dave") && m.contains("BLS"))
    );
    assert_eq!(
        c.member(&dave.public_key().to_sec1())
            .await
            .expect("member"),
        Some(index)
    );
    let dave_s = bpu_ledger::client::Signer {
        key: dave,
        channel: CHANNEL.into(),
        member: index,
    };
    let r = call(
        &mut c,
        &dave_s,
        "token",
        "transfer",
        to_amount(&keys.id(BOB), 0),
        8,
    )
    .await;
    assert_ne!(r.status, TxStatus::Pending);
    let revoke = postcard::to_allocvec(&system::SetRolesArgs {
        member: index,
        roles: 0,
    })
    .expect("enc");
    let r = call(&mut c, &admin, system::MEMBERSHIP, "set_roles", revoke, 9).await;
    assert_eq!(r.status, TxStatus::Valid);
    let tx = dave_s
        .sign("token", None, "transfer", to_amount(&keys.id(BOB), 0), 10)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&tx).await),
        Rejection::WrongRole { .. }
    ));
    // The last admin cannot be removed.
    let r = postcard::to_allocvec(&system::SetRolesArgs {
        member: ADMIN,
        roles: bpu_ledger::Role::Reader as u8,
    })
    .expect("enc");
    let tx = admin
        .sign(system::MEMBERSHIP, None, "set_roles", r, 11)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&tx).await),
        Rejection::Reverted(_)
    ));
}

/// `AddMemberArgs` in organization `org2` for a new key.
fn new_member(name: &str, roles: u8) -> (bpu_runtime::SigningKey, system::AddMemberArgs) {
    let key = bpu_runtime::SigningKey::generate().expect("key");
    let a = system::AddMemberArgs {
        org: "org2".into(),
        name: name.into(),
        key: key.public_key().to_sec1().to_vec(),
        roles,
        bls: None,
    };
    (key, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_members_adds_a_list_in_one_admin_transaction() {
    use bpu_ledger::Role;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let (node, addr) = start(dir.path(), &keys, "cpu", cutter(1000, 50)).await;
    let mut c = client(&addr).await;
    deploy_token(&mut c, &keys).await;
    let admin = keys.signer(ADMIN);
    let (w, r) = (Role::Writer as u8, Role::Reader as u8);

    // Three members in one transaction: consecutive indexes after the five genesis members.
    let list = [
        new_member("dave", w | r),
        new_member("erin", r),
        new_member("frank", w),
    ];
    let args: Vec<system::AddMemberArgs> = list.iter().map(|(_, a)| a.clone()).collect();
    let enc = |l: &[system::AddMemberArgs]| postcard::to_allocvec(l).expect("enc");
    let rc = call(
        &mut c,
        &admin,
        system::MEMBERSHIP,
        "add_members",
        enc(&args),
        3,
    )
    .await;
    assert_eq!(rc.status, TxStatus::Valid, "{rc:?}");
    let want: Vec<u8> = [5u32, 6, 7].iter().flat_map(|i| i.to_le_bytes()).collect();
    assert_eq!(rc.response, want);
    // After the commit each is a member with its roles, and can act by them.
    let m = node.membership();
    for (i, (_, a)) in list.iter().enumerate() {
        let index = 5 + i as u32;
        assert_eq!(c.member(&a.key).await.expect("member"), Some(index));
        let got = m.member(index).expect("a member");
        assert_eq!((&got.name, &got.key, got.roles), (&a.name, &a.key, a.roles));
    }
    let signer = |i: usize| bpu_ledger::client::Signer {
        key: bpu_runtime::SigningKey::from_pem(list[i].0.to_pem().expect("pem").as_bytes())
            .expect("key"),
        channel: CHANNEL.into(),
        member: 5 + i as u32,
    };
    let pay = to_amount(&keys.id(BOB), 0);
    let rc = call(&mut c, &signer(0), "token", "transfer", pay.clone(), 1).await;
    assert_eq!(rc.status, TxStatus::Valid, "{rc:?}");
    let tx = signer(1)
        .sign("token", None, "transfer", pay.clone(), 1)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&tx).await),
        Rejection::WrongRole { member: 6, .. }
    ));
    let q = signer(1)
        .sign("token", None, "balance", keys.id(BOB).to_vec(), 2)
        .expect("sign");
    assert_eq!(c.query(&q).await.expect("reader"), 0u64.to_le_bytes());

    // A member who is not an admin is refused before anything runs.
    let more = vec![new_member("gina", r).1];
    let tx = keys
        .signer(ALICE)
        .sign(system::MEMBERSHIP, None, "add_members", enc(&more), 4)
        .expect("sign");
    assert!(matches!(
        rejected(c.submit(&tx).await),
        Rejection::WrongRole { member: ALICE, role } if role == "admin"
    ));

    // Lists that revert whole, each naming what is wrong; none of their members is added.
    let mut nonce = 10;
    let mut reverts = async |l: Vec<system::AddMemberArgs>, says: &[&str]| {
        nonce += 1;
        let tx = admin
            .sign(system::MEMBERSHIP, None, "add_members", enc(&l), nonce)
            .expect("sign");
        match rejected(c.submit(&tx).await) {
            Rejection::Reverted(m) => {
                for s in says {
                    assert!(m.contains(s), "{m:?} should say {s:?}")
                }
            }
            other => panic!("expected a revert, got {other:?}"),
        }
        for a in &l {
            assert_eq!(c.member(&a.key).await.expect("member"), None);
        }
    };
    reverts(Vec::new(), &["1..=256", "not 0"]).await;
    let over: Vec<_> = (0..=system::MAX_ADD_MEMBERS)
        .map(|i| new_member(&format!("m{i}"), r).1)
        .collect();
    reverts(over, &["not 257"]).await;
    let (_, a) = new_member("hal", r);
    let b = system::AddMemberArgs {
        name: "ivan".into(),
        ..a.clone()
    };
    reverts(vec![a, b], &["entry 1", "\"ivan\"", "key belongs"]).await;
    let no_bls = new_member("node9", Role::Validator as u8).1;
    reverts(
        vec![new_member("jo", r).1, no_bls],
        &["entry 1", "\"node9\"", "BLS key"],
    )
    .await;
    assert_eq!(node.membership().members.len(), 8);

    // A full list with the longest names fits a transaction and commits.
    let full: Vec<_> = (0..system::MAX_ADD_MEMBERS)
        .map(|i| system::AddMemberArgs {
            org: "o".repeat(64),
            ..new_member(&format!("{i:0>64}"), w | r).1
        })
        .collect();
    let rc = call(
        &mut c,
        &admin,
        system::MEMBERSHIP,
        "add_members",
        enc(&full),
        20,
    )
    .await;
    assert_eq!(rc.status, TxStatus::Valid, "{rc:?}");
    let want: Vec<u8> = (8..8 + 256u32).flat_map(u32::to_le_bytes).collect();
    assert_eq!(rc.response, want);
    assert_eq!(node.membership().members.len(), 8 + 256);
    assert_eq!(
        c.member(&full[255].key).await.expect("member"),
        Some(8 + 255)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_from_cursor_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let (_node, addr) = start(dir.path(), &keys, "cpu", cutter(7, 5)).await;
    let mut c = client(&addr).await;
    deploy_token(&mut c, &keys).await;
    let admin = keys.signer(ADMIN);
    // 40 mints, each emitting one event. Every mint writes the total supply, so mints endorsed
    // on the same state conflict (MVCC): each waits for the previous one's commit.
    for n in 0..40u64 {
        let r = call(
            &mut c,
            &admin,
            "token",
            "mint",
            to_amount(&keys.id(BOB), n + 1),
            100 + n,
        )
        .await;
        assert_eq!(r.status, TxStatus::Valid);
    }
    // Read 13 records, drop the subscription, resume from its cursor, read the rest.
    let mut seen = Vec::new();
    let mut sub = client(&addr)
        .await
        .subscribe(Cursor::default())
        .await
        .expect("subscribe");
    for _ in 0..13 {
        seen.push(sub.next().await.expect("event"));
    }
    let cursor = sub.cursor();
    drop(sub);
    // More commits while unsubscribed.
    for n in 40..45u64 {
        let r = call(
            &mut c,
            &admin,
            "token",
            "mint",
            to_amount(&keys.id(BOB), n + 1),
            100 + n,
        )
        .await;
        assert_eq!(r.status, TxStatus::Valid);
    }
    let mut sub = client(&addr)
        .await
        .subscribe(cursor)
        .await
        .expect("resubscribe");
    while seen.len() < 45 {
        let r = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("no gap: every record arrives")
            .expect("event");
        seen.push(r);
    }
    // Exactly once, in commit order: strictly increasing (height, index), one per mint (+init).
    for w in seen.windows(2) {
        assert!(
            (w[0].height, w[0].index) < (w[1].height, w[1].index),
            "order or duplicate"
        );
    }
    let mint_events = seen
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| e.name == "Mint")
        .count();
    assert_eq!(mint_events, 45, "{seen:?}");
    // Nothing more is pending.
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next())
        .await
        .is_err());
}

#[test]
fn restart_recovers_and_state_equals_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let (tip1, digest1) = rt().block_on(async {
        let (node, addr) = start(dir.path(), &keys, "cpu", cutter(5, 20)).await;
        let mut c = client(&addr).await;
        deploy_token(&mut c, &keys).await;
        let admin = keys.signer(ADMIN);
        for n in 0..12u64 {
            call(
                &mut c,
                &admin,
                "token",
                "mint",
                to_amount(&keys.id(ALICE), 1),
                50 + n,
            )
            .await;
        }
        (node.tip(), node.state().digest())
    });
    // The runtime is gone (the node with it); reopen the same directory.
    rt().block_on(async {
        let (node, addr) = start(dir.path(), &keys, "cpu", cutter(5, 20)).await;
        assert_eq!(node.tip(), tip1);
        assert_eq!(node.state().digest(), digest1);
        let mut c = client(&addr).await;
        assert_eq!(balance(&mut c, &keys, ALICE).await, 12);
        let r = call(
            &mut c,
            &keys.signer(ALICE),
            "token",
            "transfer",
            to_amount(&keys.id(BOB), 2),
            99,
        )
        .await;
        assert_eq!(r.status, TxStatus::Valid);
        assert_eq!(r.height, tip1.height + 1);
    });
    // Replaying every block from the genesis gives the node's digest.
    let store = BlockStore::open(&dir.path().join("blocks.redb")).expect("store");
    let scratch = tempfile::tempdir().expect("tempdir");
    let tip = store.height().expect("h").expect("blocks");
    let last = store.get(tip).expect("get").expect("block");
    let replayed =
        replay_digest(&keys.genesis(), &store, &scratch.path().join("replay")).expect("replay");
    let state = bpu_runtime::state::StateService::open(&dir.path().join("state")).expect("state");
    assert_eq!(replayed, state.digest());
    assert_eq!(state.height(), Some(last.header.height));
    // Another genesis cannot open this directory.
    let other = Keys::new();
    let err = rt().block_on(async {
        drop(store);
        drop(state);
        bpu_ledger::node::Node::start(bpu_ledger::node::NodeConfig {
            data_dir: dir.path().to_path_buf(),
            genesis: other.genesis(),
            key: bpu_runtime::SigningKey::from_pem(other.node.to_pem().expect("pem").as_bytes())
                .expect("key"),
            crypto: bpu_runtime::CryptoService::cpu(),
            cutter: None,
            clock: None,
        })
        .await
        .err()
    });
    assert!(
        matches!(err, Some(bpu_ledger::node::NodeError::OtherGenesis { .. })),
        "{err:?}"
    );
}

#[test]
fn transaction_bytes_round_trip() {
    let keys = Keys::new();
    let tx = keys
        .signer(ALICE)
        .sign("token", Some(3), "balance", vec![1, 2], 5)
        .expect("sign");
    assert_eq!(Transaction::decode(&bytes(&tx)).expect("decode"), tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_an_error_and_the_node_keeps_serving() {
    use bpu_ledger::api::{Response, MAX_BATCH, MAX_BATCH_REQUEST, MAX_REQUEST};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let (_node, addr) = start(dir.path(), &keys, "cpu", cutter(10, 20)).await;
    // Reads one length-prefixed response frame, or None when the node closed the connection.
    async fn answer(s: &mut tokio::net::TcpStream) -> Option<Response> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.ok()?;
        postcard::from_bytes(&buf).ok()
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "oversized length prefix",
            ((MAX_BATCH_REQUEST + 1) as u32).to_be_bytes().to_vec(),
        ),
        ("a request other than a batch over MAX_REQUEST", {
            let req = postcard::to_allocvec(&bpu_ledger::api::Request::Submit {
                tx: vec![0; MAX_REQUEST],
            })
            .expect("encode");
            [(req.len() as u32).to_be_bytes().to_vec(), req].concat()
        }),
        (
            "garbage request",
            [vec![0, 0, 0, 5], vec![0xff; 5]].concat(),
        ),
        ("empty request", vec![0, 0, 0, 0]),
    ];
    for (what, bytes) in cases {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.write_all(&bytes).await.expect("write");
        match answer(&mut s).await {
            Some(Response::Error(msg)) => assert!(!msg.is_empty(), "{what}"),
            other => panic!("{what}: expected an error response, got {other:?}"),
        }
        // The node closed this connection.
        assert!(
            answer(&mut s).await.is_none(),
            "{what}: connection still open"
        );
    }
    // A batch frame announcing more than MAX_BATCH transactions is refused before its elements
    // are decoded, and the connection keeps serving.
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut req = postcard::to_allocvec(&bpu_ledger::api::Request::SubmitBatch {
        txs: vec![Vec::new(); MAX_BATCH + 1],
    })
    .expect("encode");
    req.truncate(4); // tag, count, nothing of the elements
    let hello =
        postcard::to_allocvec(&bpu_ledger::api::Request::Hello { protocol: 1 }).expect("encode");
    for frame in [req, hello] {
        s.write_all(&[(frame.len() as u32).to_be_bytes().to_vec(), frame].concat())
            .await
            .expect("write");
    }
    match answer(&mut s).await {
        Some(Response::Rejected(Rejection::Malformed(m))) => {
            assert!(m.contains(&MAX_BATCH.to_string()), "{m}")
        }
        other => panic!("oversized batch: {other:?}"),
    }
    assert!(matches!(
        answer(&mut s).await,
        Some(Response::Hello { protocol: 1 })
    ));
    drop(s);
    // A truncated frame, then a hang-up: nothing breaks.
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(&[0, 0, 1, 0, 1, 2]).await.expect("write");
    drop(s);
    // The node still serves.
    let mut c = client(&addr).await;
    assert_eq!(c.info().await.expect("info").channel, CHANNEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gets_one_answer_per_transaction_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let (_node, addr) = start(dir.path(), &keys, "cpu", cutter(1000, 50)).await;
    let mut c = client(&addr).await;
    deploy_token(&mut c, &keys).await;
    let admin = keys.signer(ADMIN);
    for (who, nonce) in [(ALICE, 3), (BOB, 4)] {
        let r = call(
            &mut c,
            &admin,
            "token",
            "mint",
            to_amount(&keys.id(who), 100),
            nonce,
        )
        .await;
        assert_eq!(r.status, TxStatus::Valid, "{r:?}");
    }

    // Valid transactions on disjoint keys (so all three are valid in one block), a copy of the
    // first, malformed bytes and a bad signature.
    let (alice, bob) = (keys.signer(ALICE), keys.signer(BOB));
    let v1 = alice
        .sign("token", None, "transfer", to_amount(&keys.id(CAROL), 5), 10)
        .expect("sign");
    let v2 = bob
        .sign("token", None, "transfer", to_amount(&keys.id(ADMIN), 7), 11)
        .expect("sign");
    let v3 = admin
        .sign("token", None, "mint", to_amount(&keys.id(NODE), 3), 12)
        .expect("sign");
    let mut junk = v1.encode();
    junk.truncate(junk.len() - 3);
    let mut forged = alice
        .sign("token", None, "transfer", to_amount(&keys.id(NODE), 1), 13)
        .expect("sign");
    forged.sig.s[31] ^= 1;
    let batch = vec![
        v1.encode(),
        junk,
        v2.encode(),
        v1.encode(),
        forged.encode(),
        v3.encode(),
    ];
    let answers = c.submit_batch(&batch).await.expect("batch answered");
    assert_eq!(answers.len(), batch.len());
    let ids = [v1.id().0, v2.id().0, v3.id().0];
    assert_eq!(answers[0], Ok(ids[0]), "{answers:?}");
    assert!(
        matches!(&answers[1], Err(Rejection::Malformed(_))),
        "{answers:?}"
    );
    assert_eq!(answers[2], Ok(ids[1]), "{answers:?}");
    assert_eq!(
        answers[3],
        Err(Rejection::Replay(hex::encode(ids[0]))),
        "the copy is a replay"
    );
    assert_eq!(answers[4], Err(Rejection::BadSignature), "{answers:?}");
    assert_eq!(answers[5], Ok(ids[2]), "{answers:?}");

    // The accepted ones commit as valid; the rejected ones are unknown; a single Submit of an
    // accepted one is a replay.
    for id in &ids {
        let r = c.wait(id, Duration::from_secs(10)).await.expect("commits");
        assert_eq!(r.status, TxStatus::Valid, "{r:?}");
    }
    assert_eq!(
        c.status(&forged.id().0).await.expect("status"),
        TxState::Unknown
    );
    assert!(matches!(
        rejected(c.submit(&v1).await),
        Rejection::Replay(_)
    ));
    assert_eq!(balance(&mut c, &keys, ALICE).await, 95);
    assert_eq!(balance(&mut c, &keys, CAROL).await, 5);
    assert_eq!(balance(&mut c, &keys, BOB).await, 93);
    assert_eq!(balance(&mut c, &keys, ADMIN).await, 7);
    assert_eq!(balance(&mut c, &keys, NODE).await, 3);

    // An empty batch has an empty answer.
    assert_eq!(c.submit_batch(&[]).await.expect("empty batch"), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_accepted_and_an_oversized_one_refused_whole() {
    use bpu_ledger::api::MAX_BATCH;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let (node, addr) = start(dir.path(), &keys, "cpu", cutter(1000, 50)).await;
    let mut c = client(&addr).await;
    deploy_token(&mut c, &keys).await;
    let r = call(
        &mut c,
        &keys.signer(ADMIN),
        "token",
        "mint",
        to_amount(&keys.id(ALICE), 1000),
        3,
    )
    .await;
    assert_eq!(r.status, TxStatus::Valid, "{r:?}");
    let alice = keys.signer(ALICE);

    // MAX_BATCH reads of a key nobody writes: all accepted, all valid.
    let full: Vec<Transaction> = (0..MAX_BATCH as u64)
        .map(|n| {
            alice
                .sign("token", None, "balance", keys.id(NODE).to_vec(), 100 + n)
                .expect("sign")
        })
        .collect();
    let answers = c
        .submit_batch(&full.iter().map(Transaction::encode).collect::<Vec<_>>())
        .await
        .expect("full batch answered");
    let expected: Vec<Result<[u8; 32], Rejection>> = full.iter().map(|t| Ok(t.id().0)).collect();
    assert_eq!(answers, expected);
    for t in &full {
        let r = c
            .wait(&t.id().0, Duration::from_secs(30))
            .await
            .expect("commits");
        assert_eq!(r.status, TxStatus::Valid, "{r:?}");
    }

    // MAX_BATCH + 1 transfers: refused as a whole, none submitted.
    let over: Vec<Transaction> = (0..=MAX_BATCH as u64)
        .map(|n| {
            alice
                .sign(
                    "token",
                    None,
                    "transfer",
                    to_amount(&keys.id(BOB), 1),
                    1000 + n,
                )
                .expect("sign")
        })
        .collect();
    match c
        .submit_batch(&over.iter().map(Transaction::encode).collect::<Vec<_>>())
        .await
    {
        Err(ClientError::Rejected(Rejection::Malformed(m))) => {
            assert!(m.contains(&MAX_BATCH.to_string()), "{m}")
        }
        other => panic!("expected the batch refused, got {other:?}"),
    }
    // The connection still serves; a later transaction commits, and nothing of the refused
    // batch is pending or committed.
    let r = call(
        &mut c,
        &alice,
        "token",
        "transfer",
        to_amount(&keys.id(CAROL), 1),
        5,
    )
    .await;
    assert_eq!(r.status, TxStatus::Valid, "{r:?}");
    for t in &over {
        assert_eq!(c.status(&t.id().0).await.expect("status"), TxState::Unknown);
    }
    assert_eq!(node.info().pending, 0);
    assert_eq!(balance(&mut c, &keys, ALICE).await, 999);
    assert_eq!(balance(&mut c, &keys, BOB).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_anchor_cert_registry_and_voting_through_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let (_node, addr) = start(dir.path(), &keys, "cpu", cutter(100, 20)).await;
    let mut c = client(&addr).await;
    let admin = keys.signer(ADMIN);
    for (n, name) in ["iot_anchor", "cert_registry", "voting"]
        .into_iter()
        .enumerate()
    {
        let args = postcard::to_allocvec(&system::InstallArgs {
            name: name.into(),
            code: contracts::elf(name),
            activate: true,
        })
        .expect("enc");
        let r = call(
            &mut c,
            &admin,
            system::LIFECYCLE,
            "install",
            args,
            500 + n as u64,
        )
        .await;
        assert_eq!(r.status, TxStatus::Valid, "{name}");
    }
    let (alice, bob) = (keys.signer(ALICE), keys.signer(BOB));
    let query = |contract: &str, method: &str, args: Vec<u8>, n| {
        keys.signer(CAROL)
            .sign(contract, None, method, args, n)
            .expect("sign")
    };

    // IoT: alice registers a device and anchors a batch root; bob may not anchor for it.
    let device = [7u8; 32];
    let root = [9u8; 32];
    let r = call(
        &mut c,
        &alice,
        "iot_anchor",
        "register_device",
        device.to_vec(),
        1,
    )
    .await;
    assert_eq!(r.status, TxStatus::Valid);
    let anchor = [
        &device[..],
        &5u64.to_le_bytes(),
        &root,
        &100u32.to_le_bytes(),
    ]
    .concat();
    let tx = bob
        .sign("iot_anchor", None, "anchor", anchor.clone(), 2)
        .expect("sign");
    assert!(
        matches!(rejected(c.submit(&tx).await), Rejection::Reverted(m) if m.contains("not device owner"))
    );
    let r = call(&mut c, &alice, "iot_anchor", "anchor", anchor, 3).await;
    assert_eq!(r.status, TxStatus::Valid);
    let found = c
        .query(&query(
            "iot_anchor",
            "lookup",
            [&device[..], &5u64.to_le_bytes()].concat(),
            4,
        ))
        .await
        .expect("lookup");
    assert_eq!(&found[..32], &root);
    assert_eq!(&found[32..36], &100u32.to_le_bytes());
    assert_eq!(
        &found[36..44],
        &r.height.to_le_bytes(),
        "anchored at its block's height"
    );

    // Certificates: alice issues, bob cannot revoke, alice revokes.
    let cert = [3u8; 32];
    let r = call(
        &mut c,
        &alice,
        "cert_registry",
        "issue",
        [&cert[..], b"diploma"].concat(),
        5,
    )
    .await;
    assert_eq!(r.status, TxStatus::Valid);
    let tx = bob
        .sign("cert_registry", None, "revoke", cert.to_vec(), 6)
        .expect("sign");
    assert!(
        matches!(rejected(c.submit(&tx).await), Rejection::Reverted(m) if m.contains("not issuer"))
    );
    let st = c
        .query(&query("cert_registry", "status", cert.to_vec(), 7))
        .await
        .expect("status");
    assert_eq!((st[0], &st[1..33]), (1, &keys.id(ALICE)[..]));
    let r = call(&mut c, &alice, "cert_registry", "revoke", cert.to_vec(), 8).await;
    assert_eq!(r.status, TxStatus::Valid);
    let st = c
        .query(&query("cert_registry", "status", cert.to_vec(), 9))
        .await
        .expect("status");
    assert_eq!(st[0], 2, "revoked");
    assert_eq!(&st[49..], b"diploma");

    // Voting: a two-option poll; each member votes once.
    let poll = [1u8; 32];
    let create = [&poll[..], &2u32.to_le_bytes(), &1_000u64.to_le_bytes()].concat();
    let r = call(&mut c, &admin, "voting", "create", create, 10).await;
    assert_eq!(r.status, TxStatus::Valid);
    for (s, option, n) in [(&alice, 1u32, 11), (&bob, 1, 12), (&admin, 0, 13)] {
        let r = call(
            &mut c,
            s,
            "voting",
            "vote",
            [&poll[..], &option.to_le_bytes()].concat(),
            n,
        )
        .await;
        assert_eq!(r.status, TxStatus::Valid);
    }
    let tx = alice
        .sign(
            "voting",
            None,
            "vote",
            [&poll[..], &0u32.to_le_bytes()].concat(),
            14,
        )
        .expect("sign");
    assert!(
        matches!(rejected(c.submit(&tx).await), Rejection::Reverted(m) if m.contains("already voted"))
    );
    let t = c
        .query(&query("voting", "tally", poll.to_vec(), 15))
        .await
        .expect("tally");
    assert_eq!(&t[12..20], &1u64.to_le_bytes(), "option 0");
    assert_eq!(&t[20..28], &2u64.to_le_bytes(), "option 1");
}
