//! ECDSA P-256 engine through the whole driver path: verdicts against the `p256` crate on random
//! and corrupted signatures, edge cases that must be rejected, bad commands, DMA faults, stalls.

mod common;

use bpu_driver::regs::{EcdsaRecord, EngineType, Status};
use bpu_driver::{Command, Completion, Device, Result};
use common::sim;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Duration;

const P: [u8; 32] = hex32("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");
const N: [u8; 32] = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");

const fn nibble(c: u8) -> u8 {
    if c <= b'9' {
        c - b'0'
    } else {
        c - b'a' + 10
    }
}

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// The oracle: p256's verdict, with its own range and curve checks.
fn oracle(r: &EcdsaRecord) -> bool {
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&r.qx);
    sec1.extend_from_slice(&r.qy);
    let Ok(key) = VerifyingKey::from_sec1_bytes(&sec1) else {
        return false;
    };
    let Ok(sig) = Signature::from_scalars(r.r, r.s) else {
        return false;
    };
    key.verify_prehash(&r.digest, &sig).is_ok()
}

fn signed(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> EcdsaRecord {
    let sk = SigningKey::random(rng);
    let vk = VerifyingKey::from(&sk);
    let mut digest = [0u8; 32];
    rng.fill_bytes(&mut digest);
    let (sig, _) = sk.sign_prehash_recoverable(&digest).expect("sign");
    let enc = vk.to_encoded_point(false);
    EcdsaRecord {
        digest,
        r: sig.r().to_bytes().into(),
        s: sig.s().to_bytes().into(),
        qx: (*enc.x().expect("x")).into(),
        qy: (*enc.y().expect("y")).into(),
    }
}

/// One ECDSA_P256_VERIFY command; returns the completion and the verdict bitmap as bools.
fn verify(d: &Device, recs: &[EcdsaRecord]) -> Result<(Completion, Vec<bool>)> {
    let mut src = d.alloc(160 * recs.len().max(1))?;
    for (i, r) in recs.iter().enumerate() {
        src.write_obj(160 * i, r)?;
    }
    let src = Arc::new(src);
    let nbytes = recs.len().div_ceil(8).max(1);
    let mut dst = d.alloc(nbytes + 8)?;
    dst.write(0, &vec![0xa5; nbytes + 8])?;
    let dst = Arc::new(dst);
    let cmd = Command::EcdsaVerify {
        records: src.iova(),
        count: recs.len() as u32,
        bitmap: dst.iova(),
    };
    let c = d.execute(cmd.entry(), vec![src, dst.clone()])?;
    let mut bits = vec![0u8; nbytes + 8];
    dst.read(0, &mut bits)?;
    if c.status == Status::Success {
        // Exactly ceil(count/8) bytes written; the rest untouched.
        assert!(
            bits[nbytes..].iter().all(|&b| b == 0xa5),
            "wrote past the bitmap"
        );
        if recs.len() % 8 != 0 {
            assert_eq!(
                bits[nbytes - 1] >> (recs.len() % 8),
                0,
                "bits past count set"
            );
        }
    }
    let v = (0..recs.len())
        .map(|i| bits[i / 8] >> (i % 8) & 1 == 1)
        .collect();
    Ok((c, v))
}

fn check(d: &Device, recs: &[EcdsaRecord]) {
    let (c, got) = verify(d, recs).expect("verify command");
    assert_eq!(c.status, Status::Success);
    let want: Vec<bool> = recs.iter().map(oracle).collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g, w,
            "record {i}: device says {g}, p256 says {w}: {:02x?}",
            recs[i]
        );
    }
    assert_eq!(c.result as usize, want.iter().filter(|&&v| v).count());
}

#[test]
fn random_and_corrupted_signatures_match_p256() {
    let d = sim("");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut recs = Vec::new();
    for k in 0..37 {
        let mut r = signed(&mut rng);
        match k % 4 {
            0 => {}
            1 => r.digest[rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8),
            2 => r.s[rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8),
            _ => r.qy[rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8),
        }
        recs.push(r);
    }
    check(&d, &recs);
    // One record alone (latency path) and a batch that is not a multiple of 8.
    check(&d, &recs[..1]);
    check(&d, &recs[3..12]);
}

#[test]
fn malformed_inputs_are_invalid_not_errors() {
    let d = sim("");
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let good = signed(&mut rng);
    let mut recs = vec![good];
    let mut edit = |f: &dyn Fn(&mut EcdsaRecord)| {
        let mut r = good;
        f(&mut r);
        recs.push(r);
    };
    edit(&|r| r.r = [0; 32]);
    edit(&|r| r.s = [0; 32]);
    edit(&|r| r.r = N);
    edit(&|r| r.s = N);
    edit(&|r| r.r = [0xff; 32]);
    edit(&|r| r.qx = P);
    edit(&|r| r.qy = P);
    edit(&|r| {
        r.qx = [0; 32];
        r.qy = [0; 32];
    });
    edit(&|r| r.qx[31] ^= 1);
    edit(&|r| std::mem::swap(&mut r.r, &mut r.s));
    let want: Vec<bool> = recs.iter().map(oracle).collect();
    assert!(want[0] && want[1..].iter().all(|v| !v));
    check(&d, &recs);
    // The engine still works afterwards.
    check(&d, &[good]);
}

#[test]
fn bad_commands_complete_with_their_status() {
    let d = sim("");
    let buf = Arc::new(d.alloc(4096).expect("alloc"));
    let run = |count: u32, flags: u8| {
        let mut e = Command::EcdsaVerify {
            records: buf.iova(),
            count,
            bitmap: buf.iova(),
        }
        .entry();
        e.flags = flags;
        d.execute(e, vec![buf.clone()]).expect("completes").status
    };
    assert_eq!(run(0, 0), Status::BadLength);
    assert_eq!(run(1025, 0), Status::BadLength);
    assert_eq!(run(1, 1), Status::BadField);
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    check(&d, &[signed(&mut rng)]);
}

#[test]
fn dma_read_error_reports_the_failing_record() {
    let d = sim("");
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let recs: Vec<EcdsaRecord> = (0..3).map(|_| signed(&mut rng)).collect();
    // Records in unmapped memory: the first read fails.
    let dst = Arc::new(d.alloc(64).expect("alloc"));
    let cmd = Command::EcdsaVerify {
        records: bpu_driver::Iova(0x40),
        count: 3,
        bitmap: dst.iova(),
    };
    let c = d.execute(cmd.entry(), vec![dst]).expect("completes");
    assert_eq!(c.status, Status::DmaRead);
    assert_eq!(c.result, 0);
    check(&d, &recs);
}

#[test]
fn stalled_engine_times_out_and_reset_recovers() {
    let d = sim("timeout=300");
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let rec = signed(&mut rng);
    d.set_stall(EngineType::EcdsaP256, u32::MAX).expect("stall");
    let src = Arc::new({
        let mut b = d.alloc(160).expect("alloc");
        b.write_obj(0, &rec).expect("write");
        b
    });
    let dst = Arc::new(d.alloc(8).expect("alloc"));
    let cmd = Command::EcdsaVerify {
        records: src.iova(),
        count: 1,
        bitmap: dst.iova(),
    };
    let r = d.execute_within(
        None,
        cmd.entry(),
        vec![src, dst],
        Duration::from_millis(300),
    );
    assert!(r.is_err(), "a stalled engine must time out, got {r:?}");
    d.reset().expect("reset");
    check(&d, &[rec]);
}

#[test]
fn back_to_back_commands_each_get_their_own_bitmap() {
    use bpu_driver::Submission;
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let mut recs: Vec<EcdsaRecord> = (0..48).map(|_| signed(&mut rng)).collect();
    // Every third record invalid, so each bitmap has a pattern of its own.
    for r in recs.iter_mut().step_by(3) {
        r.digest[0] ^= 1;
    }
    for opts in ["ecdsa=1", ""] {
        let d = sim(opts);
        let (tx, rx) = std::sync::mpsc::channel();
        let chunks = [&recs[..8], &recs[8..24], &recs[24..48]];
        let mut subs = Vec::new();
        let mut outs = Vec::new();
        for (k, chunk) in chunks.iter().enumerate() {
            let mut src = d.alloc(160 * chunk.len()).expect("alloc");
            for (i, r) in chunk.iter().enumerate() {
                src.write_obj(160 * i, r).expect("write");
            }
            let dst = Arc::new(d.alloc(4).expect("alloc"));
            outs.push(dst.clone());
            let entry = Command::EcdsaVerify {
                records: src.iova(),
                count: chunk.len() as u32,
                bitmap: dst.iova(),
            }
            .entry();
            let tx = tx.clone();
            subs.push(Submission {
                entry,
                buffers: vec![Arc::new(src), dst],
                done: Box::new(move |r| {
                    let _ = tx.send((k, r));
                }),
            });
        }
        d.submit(subs, Duration::from_secs(30)).expect("submit");
        for _ in 0..chunks.len() {
            let (k, r) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("completion");
            let c = r.expect("completes");
            assert_eq!(c.status, Status::Success);
            let want: Vec<bool> = chunks[k].iter().map(oracle).collect();
            assert_eq!(c.result as usize, want.iter().filter(|&&v| v).count());
            let mut bits = [0u8; 4];
            outs[k].read(0, &mut bits).expect("read");
            let got: Vec<bool> = (0..want.len())
                .map(|i| bits[i / 8] >> (i % 8) & 1 == 1)
                .collect();
            assert_eq!(got, want, "{opts}: command {k}'s bitmap");
        }
    }
}
