//! The CPU backend's ECDSA P-256 verdicts against an independent signer and verifier (the
//! differential corpus), singly and in batches; signature and key encodings, and their errors.

mod common;

use bpu_runtime::ecdsa::{cpu_verify, ParseError, N, P};
use bpu_runtime::{CryptoService, PublicKey, Signature, VerifyRequest};
use common::{Kind, KINDS};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

const CORPUS: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_backend_matches_the_independent_verifier_on_the_corpus() {
    let cases = common::cases(CORPUS, 0x5eed);
    // The corpus must exercise every kind, and both verdicts.
    let mut by_kind: HashMap<Kind, (usize, usize)> = HashMap::new();
    for c in &cases {
        let e = by_kind.entry(c.kind).or_default();
        if c.expected {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let distinct: std::collections::HashSet<Kind> = KINDS.into_iter().collect();
    assert_eq!(by_kind.len(), distinct.len(), "kinds present: {by_kind:?}");
    for k in KINDS {
        let (t, f) = by_kind[&k];
        match k {
            Kind::Valid | Kind::HighS | Kind::DigestAboveN => assert_eq!(f, 0, "{k:?}"),
            // A flipped bit leaves a valid signature with negligible probability.
            _ => assert_eq!(t, 0, "{k:?}: {t} corrupted signatures still verify"),
        }
    }

    let reqs: Vec<VerifyRequest> = cases.iter().map(|c| c.req).collect();
    let want: Vec<bool> = cases.iter().map(|c| c.expected).collect();
    let report = |got: &[bool], how: &str| {
        let wrong: Vec<String> = cases
            .iter()
            .zip(got)
            .filter(|(c, g)| c.expected != **g)
            .map(|(c, g)| format!("{:?} expected {} got {g}: {:?}", c.kind, c.expected, c.req))
            .collect();
        assert!(
            wrong.is_empty(),
            "{how}: {} wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    };

    // The plain function.
    let got: Vec<bool> = reqs.iter().map(cpu_verify).collect();
    report(&got, "cpu_verify");

    for svc in [
        CryptoService::cpu(),
        CryptoService::cpu_with_threads(1).expect("pool"),
    ] {
        let mut got = Vec::new();
        for r in &reqs {
            got.push(svc.verify(r).await.expect("verify"));
        }
        report(&got, "verify");
        for size in [1usize, 7, 1000] {
            let mut got = Vec::new();
            for chunk in reqs.chunks(size) {
                let v = svc.verify_batch(chunk).await.expect("verify_batch");
                assert_eq!(v.len(), chunk.len());
                got.extend(v);
            }
            report(&got, &format!("verify_batch in batches of {size}"));
        }
        assert!(svc.verify_batch(&[]).await.expect("empty").is_empty());
        let m = svc.metrics();
        assert_eq!(m.signatures, 4 * CORPUS as u64);
        assert_eq!(m.messages, 0, "verification hashes no messages");
    }
    assert!(want.iter().filter(|&&v| v).count() > CORPUS / 5);
}

#[tokio::test]
async fn requests_from_keys_signatures_and_messages() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let sk = p256::ecdsa::SigningKey::random(&mut rng);
    let msg = b"transfer 10 to account 7";
    let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&sk, msg);
    let key = PublicKey::from_sec1(sk.verifying_key().to_encoded_point(true).as_bytes())
        .expect("compressed key");
    let sig = Signature::from_der(sig.to_der().as_bytes()).expect("DER");
    let svc = CryptoService::cpu();
    let req = VerifyRequest::for_message(&key, &sig, msg);
    assert_eq!(req, VerifyRequest::new(&key, &sig, common::sha256(msg)));
    assert!(svc.verify(&req).await.expect("verify"));
    let other = VerifyRequest::for_message(&key, &sig, b"transfer 11 to account 7");
    assert!(!svc.verify(&other).await.expect("verify"));
}

#[test]
fn signature_encodings_round_trip_and_match_p256() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut values: Vec<([u8; 32], [u8; 32])> = (0..500).map(|_| (rng.gen(), rng.gen())).collect();
    let mut small = [0u8; 32];
    small[31] = 1;
    let mut high = [0u8; 32];
    high[0] = 0x80;
    let mut short = [0u8; 32];
    short[20] = 0x7f;
    values.extend([
        ([0; 32], [0; 32]),
        (small, high),
        (high, short),
        ([0xff; 32], N),
        (P, small),
    ]);
    for (r, s) in values {
        let sig = Signature { r, s };
        assert_eq!(Signature::from_fixed(&sig.to_fixed()), Ok(sig));
        let der = sig.to_der();
        assert_eq!(Signature::from_der(&der), Ok(sig), "{}", hex::encode(&der));
        // Where p256 can hold the values (1 ≤ r, s < n), its DER must be byte-identical.
        if let Ok(theirs) = p256::ecdsa::Signature::from_scalars(r, s) {
            assert_eq!(der, theirs.to_der().as_bytes());
        }
    }
    // Known encodings: zero is `02 01 00`; a high bit gets a leading zero byte.
    let zero = Signature {
        r: [0; 32],
        s: small,
    };
    assert_eq!(
        zero.to_der(),
        [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]
    );
    let der = Signature { r: high, s: small }.to_der();
    assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
}

#[test]
fn malformed_signatures_are_typed_errors() {
    let good = Signature {
        r: [0x11; 32],
        s: [0x22; 32],
    }
    .to_der();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let der_errors: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("trailing byte", with(&|v| v.push(0))),
        ("truncated", with(&|v| v.truncate(v.len() - 1))),
        // BER: long-form length where the short form fits.
        ("long-form length", {
            let mut v = vec![0x30, 0x81, good[1]];
            v.extend_from_slice(&good[2..]);
            v
        }),
        // BER: indefinite length.
        ("indefinite length", {
            let mut v = vec![0x30, 0x80];
            v.extend_from_slice(&good[2..]);
            v.extend_from_slice(&[0, 0]);
            v
        }),
        ("negative r", with(&|v| v[4] = 0x91)),
        ("not a SEQUENCE", with(&|v| v[0] = 0x31)),
        ("r not an INTEGER", with(&|v| v[2] = 0x04)),
        // Non-minimal: a leading zero before a byte below 0x80.
        ("non-minimal r", {
            let mut body = vec![0x02, 0x21, 0x00];
            body.extend_from_slice(&[0x11; 32]);
            body.extend_from_slice(&good[36..]);
            let mut v = vec![0x30, body.len() as u8];
            v.extend(body);
            v
        }),
        ("one INTEGER", vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        (
            "three INTEGERs",
            vec![
                0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01,
            ],
        ),
    ];
    for (what, der) in der_errors {
        match Signature::from_der(&der) {
            Err(ParseError::SignatureDer(_)) => {}
            other => panic!("{what}: {other:?} for {}", hex::encode(&der)),
        }
    }
    // 33 significant bytes: well-formed DER, too wide for P-256.
    let mut body = vec![0x02, 0x21, 0x01];
    body.extend_from_slice(&[0x11; 32]);
    body.extend_from_slice(&good[36..]);
    let mut wide = vec![0x30, body.len() as u8];
    wide.extend(body);
    assert_eq!(
        Signature::from_der(&wide),
        Err(ParseError::SignatureInteger {
            which: "r",
            len: 33
        })
    );
    assert_eq!(
        Signature::from_fixed(&[0; 63]),
        Err(ParseError::SignatureLength(63))
    );
    let msg = ParseError::SignatureLength(63).to_string();
    assert!(msg.contains("expected 64 bytes"), "{msg}");
}

#[test]
fn public_key_encodings_agree() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..50 {
        let sk = p256::SecretKey::random(&mut rng);
        let pk = sk.public_key();
        let full = pk.to_encoded_point(false);
        let want = PublicKey {
            x: full.x().expect("x").as_slice().try_into().expect("32"),
            y: full.y().expect("y").as_slice().try_into().expect("32"),
        };
        let pem = pk.to_public_key_pem(LineEnding::LF).expect("pem");
        let der = pk.to_public_key_der().expect("der");
        let compressed = pk.to_encoded_point(true);
        assert_eq!(PublicKey::from_pem(pem.as_bytes()), Ok(want));
        assert_eq!(PublicKey::from_spki_der(der.as_bytes()), Ok(want));
        assert_eq!(PublicKey::from_sec1(full.as_bytes()), Ok(want));
        assert_eq!(PublicKey::from_sec1(compressed.as_bytes()), Ok(want));
        for bytes in [
            pem.as_bytes(),
            der.as_bytes(),
            full.as_bytes(),
            compressed.as_bytes(),
        ] {
            assert_eq!(PublicKey::parse(bytes), Ok(want));
        }
        assert_eq!(want.to_sec1().as_slice(), full.as_bytes());
    }
}

#[test]
fn bad_public_keys_are_typed_errors() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let pk = p256::SecretKey::random(&mut rng).public_key();
    let full = pk.to_encoded_point(false);

    // Uncompressed points are taken raw, even off the curve; the verdict rejects them.
    let mut off = full.as_bytes().to_vec();
    off[64] ^= 1;
    let raw = PublicKey::from_sec1(&off).expect("raw point");
    let sig = Signature {
        r: [1; 32],
        s: [1; 32],
    };
    assert!(!cpu_verify(&VerifyRequest::new(&raw, &sig, [0; 32])));

    let sec1_err = |b: &[u8]| match PublicKey::from_sec1(b) {
        Err(ParseError::Sec1 { .. }) => {}
        other => panic!("{}: {other:?}", hex::encode(b)),
    };
    sec1_err(&full.as_bytes()[..64]);
    sec1_err(&[0x00]);
    sec1_err(&[]);
    let mut hybrid = full.as_bytes().to_vec();
    hybrid[0] = 0x06;
    sec1_err(&hybrid);

    let mut comp = vec![0x02];
    comp.extend_from_slice(&P);
    assert_eq!(
        PublicKey::from_sec1(&comp),
        Err(ParseError::Decompress("x ≥ p"))
    );
    // An x with no y: about half of all x; find one by trying x = 1, 2, ….
    let no_root = (1u8..=255)
        .map(|i| {
            let mut c = vec![0x03];
            c.extend_from_slice(&[0; 31]);
            c.push(i);
            c
        })
        .find(|c| {
            bool::from(
                p256::AffinePoint::from_encoded_point(
                    &p256::EncodedPoint::from_bytes(c).expect("encoding"),
                )
                .is_none(),
            )
        })
        .expect("some small x is not on the curve");
    assert!(matches!(
        PublicKey::from_sec1(&no_root),
        Err(ParseError::Decompress(_))
    ));

    // SubjectPublicKeyInfo with another algorithm or curve.
    let mut k1 = hex::decode("3056301006072a8648ce3d020106052b8104000a034200").expect("hex");
    k1.extend_from_slice(full.as_bytes());
    assert_eq!(
        PublicKey::from_spki_der(&k1),
        Err(ParseError::WrongCurve("1.3.132.0.10".into()))
    );
    let mut ed = hex::decode("302a300506032b6570032100").expect("hex");
    ed.extend_from_slice(&[7; 32]);
    assert_eq!(
        PublicKey::parse(&ed),
        Err(ParseError::WrongAlgorithm("1.3.101.112".into()))
    );
    let der = pk.to_public_key_der().expect("der");
    assert!(matches!(
        PublicKey::from_spki_der(&der.as_bytes()[..40]),
        Err(ParseError::Spki(_))
    ));

    // PEM: a private key, and garbage.
    let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert_eq!(
        PublicKey::parse(private.as_bytes()),
        Err(ParseError::PemLabel("PRIVATE KEY".into()))
    );
    let broken = "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n";
    assert!(matches!(
        PublicKey::parse(broken.as_bytes()),
        Err(ParseError::Pem(_))
    ));
    let msg = PublicKey::parse(private.as_bytes())
        .expect_err("private key")
        .to_string();
    assert!(msg.contains("-pubout"), "{msg}");
}
