//! SHA-256 on the simulated BPU through the whole driver path: NIST CAVP vectors, every short
//! length, random lengths and alignments against the `sha2` crate, prefixes, batches, Merkle levels.

mod common;

use bpu_driver::{Command, Status};
use common::*;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// (message, digest) pairs from a CAVP .rsp file.
fn cavp(text: &str) -> Vec<(Vec<u8>, [u8; 32])> {
    let mut out = Vec::new();
    let mut len_bits = None;
    let mut msg = None;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Len = ") {
            len_bits = Some(v.parse::<usize>().expect("Len"));
        } else if let Some(v) = line.strip_prefix("Msg = ") {
            let bytes = hex::decode(v).expect("Msg hex");
            msg = Some(bytes[..len_bits.expect("Len before Msg") / 8].to_vec());
        } else if let Some(v) = line.strip_prefix("MD = ") {
            let md: [u8; 32] = hex::decode(v)
                .expect("MD hex")
                .try_into()
                .expect("32-byte MD");
            out.push((msg.take().expect("Msg before MD"), md));
        }
    }
    out
}

#[test]
fn nist_cavp_short_and_long_messages() {
    let d = sim("");
    let short = cavp(include_str!("vectors/SHA256ShortMsg.rsp"));
    let long = cavp(include_str!("vectors/SHA256LongMsg.rsp"));
    assert_eq!(
        (short.len(), long.len()),
        (65, 64),
        "all 129 vectors parsed"
    );
    for (i, (msg, md)) in short.iter().chain(long.iter()).enumerate() {
        let (c, got) = sha(&d, msg, i % 16, None).expect("command runs");
        assert_eq!(c.status, Status::Success, "vector {i}");
        assert_eq!(got, *md, "vector {i}: {}-byte message", msg.len());
    }
    // The same vectors as one batch command.
    let msgs: Vec<Vec<u8>> = long.iter().map(|(m, _)| m.clone()).collect();
    let (c, digests) = sha_batch(&d, &msgs, None).expect("batch runs");
    assert_eq!((c.status, c.result), (Status::Success, 64));
    for (i, (got, (_, md))) in digests.iter().zip(&long).enumerate() {
        assert_eq!(got, md, "batched long vector {i}");
    }
}

#[test]
fn every_length_0_to_130_and_random_lengths_match_sha2() {
    let d = sim("");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut lens: Vec<usize> = (0..=130).collect();
    lens.extend((0..120).map(|_| rng.gen_range(0..10_000)));
    for (i, len) in lens.into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let offset = rng.gen_range(0..64);
        let prefix = if i % 3 == 0 { Some(rng.gen()) } else { None };
        let (c, got) = sha(&d, &data, offset, prefix).expect("command runs");
        assert_eq!(c.status, Status::Success);
        assert_eq!(
            got,
            cpu_sha(prefix, &data),
            "len {len} offset {offset} prefix {prefix:?}"
        );
    }
}

#[test]
fn batches_with_prefix_match_sha2() {
    let d = sim("");
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for count in [1usize, 2, 7, 33] {
        let msgs: Vec<Vec<u8>> = (0..count)
            .map(|_| (0..rng.gen_range(0..700)).map(|_| rng.gen()).collect())
            .collect();
        for prefix in [None, Some(0x00), Some(0xA7)] {
            let (c, got) = sha_batch(&d, &msgs, prefix).expect("batch runs");
            assert_eq!((c.status, c.result as usize), (Status::Success, count));
            for (m, g) in msgs.iter().zip(&got) {
                assert_eq!(*g, cpu_sha(prefix, m));
            }
        }
    }
}

#[test]
fn merkle_level_matches_rfc6962_node_hash() {
    let d = sim("");
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for pairs in [1usize, 2, 5, 64] {
        let nodes: Vec<u8> = (0..64 * pairs).map(|_| rng.gen()).collect();
        let src = dma_with(&d, &nodes, 0);
        let dst = Arc::new(d.alloc(32 * pairs).expect("alloc"));
        let cmd = Command::MerkleLevel {
            src: src.iova(),
            pairs: pairs as u32,
            dst: dst.iova(),
        };
        let c = d
            .execute(cmd.entry(), vec![src, dst.clone()])
            .expect("runs");
        assert_eq!((c.status, c.result as usize), (Status::Success, pairs));
        let out = dst.to_vec();
        for i in 0..pairs {
            let want = cpu_sha(Some(0x01), &nodes[64 * i..64 * i + 64]);
            assert_eq!(&out[32 * i..32 * i + 32], &want, "pair {i} of {pairs}");
        }
    }
}

#[test]
#[ignore = "long: every length 0..=10,000 (~52 M device cycles); run with --ignored"]
fn every_length_to_10000() {
    let d = sim("");
    let mut rng = rand::rngs::StdRng::seed_from_u64(10_000);
    let data: Vec<u8> = (0..10_000).map(|_| rng.gen()).collect();
    for len in 0..=10_000usize {
        let (c, got) = sha(&d, &data[..len], len % 61, None).expect("command runs");
        assert_eq!(c.status, Status::Success);
        assert_eq!(got, cpu_sha(None, &data[..len]), "len {len}");
    }
}
