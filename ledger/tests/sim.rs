//! The node on the simulated BPU (`sim://`: signature checks, Merkle roots on the device) against
//! the node on the CPU backend: the same workload gives the same blocks (transactions, execution
//! results, validity flags, times, state digests) and the same final state.

mod common;

use bpu_ledger::format::{Block, TxStatus};
use bpu_ledger::{system, Transaction};
use common::*;
use std::sync::Arc;
use std::time::Duration;

/// Blocks of three transactions each, with the statuses they must get: conflicts inside a
/// block (same key read after an earlier valid write) are invalid, deterministically.
fn workload(keys: &Keys) -> Vec<(Vec<Transaction>, [TxStatus; 3])> {
    use TxStatus::{MvccConflict as M, Valid as V};
    let (admin, alice, bob) = (keys.signer(ADMIN), keys.signer(ALICE), keys.signer(BOB));
    let install = |name: &str, n| {
        let args = postcard::to_allocvec(&system::InstallArgs {
            name: name.into(),
            code: contracts::elf("token"),
            activate: true,
        })
        .expect("encode");
        admin
            .sign(system::LIFECYCLE, None, "install", args, n)
            .expect("sign")
    };
    let tx = |s: &bpu_ledger::client::Signer, c: &str, m: &str, args: Vec<u8>, n| {
        s.sign(c, None, m, args, n).expect("sign")
    };
    let dave = bpu_runtime::SigningKey::generate().expect("key");
    let add = postcard::to_allocvec(&system::AddMemberArgs {
        org: "org".into(),
        name: "dave".into(),
        key: dave.public_key().to_sec1().to_vec(),
        roles: bpu_ledger::Role::Writer as u8,
        bls: None,
    })
    .expect("encode");
    let to = |who, amount| to_amount(&keys.id(who), amount);
    vec![
        (
            vec![install("token", 1), install("token", 2), install("coin", 3)],
            [V, M, V],
        ),
        (
            vec![
                tx(&admin, "token", "init", vec![], 4),
                tx(&admin, "coin", "init", vec![], 5),
                tx(&alice, "coin", "init", vec![], 6),
            ],
            [V, V, M],
        ),
        (
            vec![
                tx(&admin, "token", "mint", to(ALICE, 100), 7),
                tx(&admin, "coin", "mint", to(BOB, 50), 8),
                tx(&admin, "token", "mint", to(BOB, 5), 9),
            ],
            [V, V, M],
        ),
        (
            vec![
                tx(&alice, "token", "transfer", to(BOB, 60), 10),
                tx(&alice, "token", "transfer", to(BOB, 60), 11),
                tx(&bob, "coin", "transfer", to(ALICE, 20), 12),
            ],
            [V, M, V],
        ),
        (
            vec![
                tx(&admin, system::MEMBERSHIP, "add_member", add, 13),
                tx(&bob, "token", "transfer", to(ALICE, 10), 14),
                tx(&alice, "token", "transfer", to(BOB, 40), 15),
            ],
            [V, V, M],
        ),
    ]
}

/// Runs the workload on a fresh node; returns its blocks and final digest.
fn run(
    device: &str,
    keys: &Keys,
    work: &[(Vec<Transaction>, [TxStatus; 3])],
) -> (Vec<Block>, [u8; 32], String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let clock: bpu_ledger::order::Clock = Arc::new(|| 1_800_000_000_000);
        let (node, addr) =
            start_with_clock(dir.path(), keys, device, cutter(3, 60_000), Some(clock)).await;
        let mut c = client(&addr).await;
        for (txs, want) in work {
            let mut ids = Vec::new();
            for t in txs {
                ids.push(c.submit(t).await.expect("accepted"));
            }
            let mut got = Vec::new();
            for id in &ids {
                got.push(
                    c.wait(id, Duration::from_secs(120))
                        .await
                        .expect("commits")
                        .status,
                );
            }
            assert_eq!(&got[..], &want[..], "on {device}");
        }
        let tip = node.tip().height;
        let mut blocks = Vec::new();
        for h in 1..=tip {
            blocks.push(c.block(h).await.expect("block").expect("present"));
        }
        (blocks, node.state().digest(), node.info().backend)
    })
}

#[test]
fn sim_node_makes_the_same_blocks_and_state_as_cpu_node() {
    let keys = Keys::new();
    let work = workload(&keys);
    let (cpu_blocks, cpu_digest, _) = run("cpu", &keys, &work);
    let (sim_blocks, sim_digest, backend) = run("sim://?ecdsa=2", &keys, &work);
    assert!(backend.starts_with("sim"), "{backend}");
    assert_eq!(cpu_blocks.len(), work.len());
    assert_eq!(sim_blocks.len(), cpu_blocks.len());
    for (a, b) in cpu_blocks.iter().zip(&sim_blocks) {
        let (ha, hb) = (&a.header, &b.header);
        assert_eq!(
            (
                ha.height,
                ha.state_digest,
                ha.time_ms,
                ha.proposer,
                &ha.channel
            ),
            (
                hb.height,
                hb.state_digest,
                hb.time_ms,
                hb.proposer,
                &hb.channel
            )
        );
        assert_eq!(a.status, b.status);
        assert_eq!(a.txs.len(), b.txs.len());
        for (x, y) in a.txs.iter().zip(&b.txs) {
            assert_eq!(x.tx, y.tx, "same transaction in the same place");
            assert_eq!(x.result, y.result, "same execution result");
            // Endorsement signatures use random nonces: same endorser, both valid (the
            // validators checked them), different bytes.
            let endorsers = |t: &bpu_ledger::EndorsedTx| {
                t.endorsements
                    .iter()
                    .map(|e| e.endorser)
                    .collect::<Vec<_>>()
            };
            assert_eq!(endorsers(x), endorsers(y));
        }
    }
    assert_eq!(cpu_digest, sim_digest);
}
