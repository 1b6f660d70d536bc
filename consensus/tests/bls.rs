// Tests of BLS12-381 keys, votes, aggregation and quorum certificates (consensus/src/bls.rs).

use std::sync::Arc;
use std::time::Instant;

use bpu_consensus::bls::{
    vote_message, Added, Aggregator, BlsError, BlsPublicKey, BlsSecretKey, BlsSignature, CertError,
    DecodeError, PointError, ProofOfPossession, QuorumCert, ValidatorSet, VoteError, VoteKind,
    MAX_CERT_LEN, POP_DST, SIG_DST,
};
use rand::{Rng, RngCore, SeedableRng};

const CH: &str = "iot-main";
const BLOCK: [u8; 32] = [0xab; 32];

fn secret(seed: u64, i: usize) -> BlsSecretKey {
    let mut ikm = [7u8; 32];
    ikm[..8].copy_from_slice(&seed.to_le_bytes());
    ikm[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    BlsSecretKey::from_ikm(&ikm).expect("32 bytes of ikm")
}

fn secrets(seed: u64, n: usize) -> Vec<BlsSecretKey> {
    (0..n).map(|i| secret(seed, i)).collect()
}

fn set_of(sks: &[BlsSecretKey]) -> Arc<ValidatorSet> {
    let v = sks
        .iter()
        .map(|sk| (sk.public_key(), sk.prove_possession()))
        .collect();
    Arc::new(ValidatorSet::new(v).expect("valid set"))
}

/// A certificate by the validators `who` through the Aggregator (at least a quorum).
fn cert_by(sks: &[BlsSecretKey], set: &Arc<ValidatorSet>, who: &[usize]) -> QuorumCert {
    let mut agg = Aggregator::new(set.clone(), CH, 9, 2, VoteKind::Precommit, Some(BLOCK));
    for &i in who {
        let sig = sks[i].sign(agg.message());
        assert!(matches!(agg.add(i as u32, &sig), Ok(Added::New { .. })));
    }
    agg.certificate().expect("a quorum")
}

/// A certificate by `who` built by hand (any number of signers, no quorum rule).
fn raw_cert(sks: &[BlsSecretKey], set: &ValidatorSet, who: &[usize]) -> QuorumCert {
    let msg = vote_message(CH, 9, 2, VoteKind::Precommit, Some(BLOCK));
    let sigs: Vec<BlsSignature> = who.iter().map(|&i| sks[i].sign(&msg)).collect();
    let mut signers = vec![0u8; set.bitmap_len()];
    for &i in who {
        signers[i / 8] |= 1 << (i % 8);
    }
    QuorumCert {
        set_id: set.id(),
        height: 9,
        round: 2,
        kind: VoteKind::Precommit,
        block: Some(BLOCK),
        signers,
        signature: BlsSignature::aggregate(&sigs).expect("at least one signer"),
    }
}

fn hex32(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

// --- Known answer ----------------------------------------------------------------------------

/// Ethereum consensus-specs BLS test vectors (`tests/formats/bls`, generated with py_ecc): the
/// beacon chain uses exactly this ciphersuite (min_pk, `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`).
/// Case `sign_case_c82df61aa3ee60fb`: privkey 0x263d…40e3, message 32 zero bytes; the public
/// key of that privkey is the first of the spec's SkToPk pairs.
#[test]
fn known_answer_ethereum_consensus_specs() {
    let sk = BlsSecretKey::from_bytes(&hex32(
        "263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3",
    ))
    .expect("valid scalar");
    let pk = sk.public_key();
    assert_eq!(
        hex::encode(pk.to_bytes()),
        "a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a"
    );
    let sig = sk.sign(&[0u8; 32]);
    let want = "b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6076334f91e2366c96e9ab279fb5158090352ea1c5b0c9274504f4f0e7053af24802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380b55285a55";
    assert_eq!(hex::encode(sig.to_bytes()), want);
    assert!(pk.verify(&[0u8; 32], &sig));
    assert!(!pk.verify(&[1u8; 32], &sig));
    assert_eq!(SIG_DST, b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_");
    assert_eq!(POP_DST, b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_");
}

// --- Keys, signatures, encodings ---------------------------------------------------------------

#[test]
fn key_and_signature_round_trips() {
    let sk = BlsSecretKey::generate();
    let sk2 = BlsSecretKey::from_bytes(&sk.to_bytes()).expect("round trip");
    assert_eq!(sk.public_key(), sk2.public_key());
    assert_ne!(sk.public_key(), BlsSecretKey::generate().public_key());
    assert_eq!(format!("{sk:?}"), "BlsSecretKey(..)");

    // Key generation from IKM is deterministic and needs 32 bytes.
    assert_eq!(secret(1, 2).to_bytes(), secret(1, 2).to_bytes());
    assert_ne!(secret(1, 2).to_bytes(), secret(1, 3).to_bytes());
    assert_eq!(
        BlsSecretKey::from_ikm(&[1u8; 31]).err(),
        Some(BlsError::ShortIkm(31))
    );
    assert_eq!(
        BlsSecretKey::from_bytes(&[0u8; 32]).err(),
        Some(BlsError::BadSecretKey)
    );
    assert_eq!(
        BlsSecretKey::from_bytes(&[0xffu8; 32]).err(),
        Some(BlsError::BadSecretKey)
    );
    assert_eq!(
        BlsSecretKey::from_bytes(&[1u8; 31]).err(),
        Some(BlsError::BadSecretKey)
    );

    let pk = sk.public_key();
    assert_eq!(BlsPublicKey::from_bytes(&pk.to_bytes()), Ok(pk));
    let sig = sk.sign(b"hello");
    assert_eq!(BlsSignature::from_bytes(&sig.to_bytes()), Ok(sig));
    let pop = sk.prove_possession();
    assert_eq!(ProofOfPossession::from_bytes(&pop.to_bytes()), Ok(pop));
    assert!(pk.verify_possession(&pop));

    // serde: fixed arrays in postcard (exactly the compressed bytes), hex in JSON.
    let pc = postcard::to_allocvec(&pk).expect("postcard");
    assert_eq!(pc, pk.to_bytes().to_vec());
    assert_eq!(
        postcard::from_bytes::<BlsPublicKey>(&pc).expect("decode"),
        pk
    );
    let pc = postcard::to_allocvec(&sig).expect("postcard");
    assert_eq!(pc.len(), 96);
    assert_eq!(
        postcard::from_bytes::<BlsSignature>(&pc).expect("decode"),
        sig
    );
    let js = serde_json::to_string(&pk).expect("json");
    assert_eq!(js, format!("\"{}\"", hex::encode(pk.to_bytes())));
    assert_eq!(
        serde_json::from_str::<BlsPublicKey>(&js).expect("decode"),
        pk
    );
    let js = serde_json::to_string(&pop).expect("json");
    assert_eq!(
        serde_json::from_str::<ProofOfPossession>(&js).expect("decode"),
        pop
    );
    // serde decoding validates the point too.
    let mut bad = pk.to_bytes();
    bad[47] ^= 1;
    let bad_js = format!("\"{}\"", hex::encode(bad));
    let r = serde_json::from_str::<BlsPublicKey>(&bad_js);
    assert!(r.is_err() || r.ok().map(|k| k.to_bytes()) == Some(bad));
    assert!(postcard::from_bytes::<BlsPublicKey>(&[0u8; 48]).is_err());
}

#[test]
fn invalid_points_rejected() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (mut not_on_curve, mut not_in_group) = (0, 0);
    for _ in 0..200 {
        let mut b = [0u8; 48];
        rng.fill_bytes(&mut b);
        b[0] = (b[0] & 0x1f) | 0x80; // compressed flag, not infinity; x < 2^381
        match BlsPublicKey::from_bytes(&b) {
            Err(BlsError::BadPublicKey(PointError::NotOnCurve)) => not_on_curve += 1,
            Err(BlsError::BadPublicKey(PointError::NotInGroup)) => not_in_group += 1,
            Err(BlsError::BadPublicKey(PointError::Encoding)) => {} // x ≥ p
            other => panic!("random bytes accepted as a key: {other:?}"),
        }
        let mut s = [0u8; 96];
        rng.fill_bytes(&mut s);
        s[0] = (s[0] & 0x1f) | 0x80;
        assert!(
            BlsSignature::from_bytes(&s).is_err(),
            "random bytes accepted as a signature"
        );
        // Raw random bytes (any flags) too.
        rng.fill_bytes(&mut b);
        rng.fill_bytes(&mut s);
        assert!(BlsPublicKey::from_bytes(&b).is_err());
        assert!(BlsSignature::from_bytes(&s).is_err());
    }
    assert!(
        not_on_curve > 0 && not_in_group > 0,
        "{not_on_curve} {not_in_group}"
    );

    // Infinity (compressed: 0xc0 then zeros).
    let mut inf = [0u8; 48];
    inf[0] = 0xc0;
    assert_eq!(
        BlsPublicKey::from_bytes(&inf),
        Err(BlsError::BadPublicKey(PointError::Infinity))
    );
    let mut inf = [0u8; 96];
    inf[0] = 0xc0;
    assert_eq!(
        BlsSignature::from_bytes(&inf),
        Err(BlsError::BadSignature(PointError::Infinity))
    );
    // All zeros: no compression flag.
    assert!(BlsPublicKey::from_bytes(&[0u8; 48]).is_err());
    // x = 2^381 − 1 ≥ p: not canonical.
    let mut big = [0xffu8; 48];
    big[0] = 0x9f;
    assert!(BlsPublicKey::from_bytes(&big).is_err());

    // Wrong lengths, and the uncompressed form of a valid key.
    let pk = secret(0, 0).public_key();
    let b = pk.to_bytes();
    assert!(BlsPublicKey::from_bytes(&b[..47]).is_err());
    assert!(BlsPublicKey::from_bytes(&[&b[..], &[0]].concat()).is_err());
    assert!(BlsPublicKey::from_bytes(&[0u8; 96]).is_err());
    let sig = secret(0, 0).sign(b"m").to_bytes();
    assert!(BlsSignature::from_bytes(&sig[..95]).is_err());
    assert!(BlsSignature::from_bytes(&[&sig[..], &sig[..]].concat()).is_err());
    assert!(BlsSignature::from_bytes(&b).is_err());
    // The sign bit flipped is the negated point: valid, but another key.
    let mut neg = b;
    neg[0] ^= 0x20;
    let negk = BlsPublicKey::from_bytes(&neg).expect("negation is a valid key");
    assert_ne!(negk, pk);
}

#[test]
fn vote_message_layout() {
    let m = vote_message(
        "ch",
        0x0102030405060708,
        0x0a0b0c0d,
        VoteKind::Prevote,
        None,
    );
    let mut want = b"bpu.consensus.vote.v1".to_vec();
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, b'c', b'h']);
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 1, 0]);
    assert_eq!(m, want);
    let m = vote_message("ch", 1, 1, VoteKind::Precommit, Some([9; 32]));
    assert_eq!(m.len(), 21 + 8 + 2 + 8 + 4 + 1 + 1 + 32);
    assert_eq!(m[43], 2);
    assert_eq!(m[44], 1);
    assert_eq!(&m[45..], &[9u8; 32]);
    // Distinct votes give distinct messages, including channel/height boundary shifts.
    let all = [
        vote_message("a", 1, 0, VoteKind::Prevote, None),
        vote_message("a\0", 1, 0, VoteKind::Prevote, None),
        vote_message("a", 2, 0, VoteKind::Prevote, None),
        vote_message("a", 1, 1, VoteKind::Prevote, None),
        vote_message("a", 1, 0, VoteKind::Precommit, None),
        vote_message("a", 1, 0, VoteKind::Prevote, Some([0; 32])),
        vote_message("b", 1, 0, VoteKind::Prevote, None),
    ];
    for i in 0..all.len() {
        for j in 0..i {
            assert_ne!(all[i], all[j], "{i} {j}");
        }
    }
}

// --- Validator sets and proof of possession --------------------------------------------------

#[test]
fn quorum_sizes() {
    for (n, q, f) in [(1, 1, 0), (4, 3, 1), (7, 5, 2), (10, 7, 3), (100, 67, 33)] {
        let set = set_of(&secrets(1, n));
        assert_eq!((set.len(), set.quorum(), set.max_faulty()), (n, q, f));
        assert_eq!(set.bitmap_len(), n.div_ceil(8));
    }
    // The identifier depends on the keys and their order.
    let sks = secrets(1, 4);
    let a = set_of(&sks);
    let b = set_of(&[
        sks[1].clone(),
        sks[0].clone(),
        sks[2].clone(),
        sks[3].clone(),
    ]);
    assert_ne!(a.id(), b.id());
    assert_eq!(a.id(), set_of(&sks).id());
}

#[test]
fn set_rejects_bad_pops_and_duplicates() {
    let sks = secrets(2, 4);
    let mut v: Vec<_> = sks
        .iter()
        .map(|sk| (sk.public_key(), sk.prove_possession()))
        .collect();
    assert!(ValidatorSet::new(v.clone()).is_ok());

    // Another key's PoP.
    let mut w = v.clone();
    w[2].1 = sks[1].prove_possession();
    assert_eq!(ValidatorSet::new(w).err(), Some(BlsError::BadPop(2)));
    // A vote-DST signature of the key's bytes is not a PoP (domain separation).
    let mut w = v.clone();
    w[3].1 = ProofOfPossession(sks[3].sign(&sks[3].public_key().to_bytes()));
    assert_eq!(ValidatorSet::new(w).err(), Some(BlsError::BadPop(3)));
    // And a PoP is not a signature of the key bytes under the vote DST.
    let pk = sks[0].public_key();
    assert!(!pk.verify(&pk.to_bytes(), &sks[0].prove_possession().0));
    // Duplicate key, empty set.
    v.push(v[1]);
    assert_eq!(
        ValidatorSet::new(v).err(),
        Some(BlsError::DuplicateKey { index: 4, first: 1 })
    );
    assert_eq!(ValidatorSet::new(vec![]).err(), Some(BlsError::EmptySet));
}

/// The rogue-key attack: the attacker publishes pk_a = pk_evil − pk_honest. Then
/// pk_honest + pk_a = pk_evil, so the evil key alone makes an "aggregate" of {honest, attacker}
/// that FastAggregateVerify accepts. The attacker knows no secret key of pk_a, so cannot make
/// its proof of possession, and the set refuses it.
#[test]
fn rogue_key_attack_stopped_by_pop() {
    use blst::min_pk::AggregatePublicKey;
    let honest = secret(3, 0);
    let evil = secret(3, 1);
    let pk_h = honest.public_key();
    let pk_e = evil.public_key();
    let mut rogue = AggregatePublicKey::from_public_key(
        &blst::min_pk::PublicKey::from_bytes(&pk_e.to_bytes()).expect("key"),
    );
    rogue.sub_aggregate(&AggregatePublicKey::from_public_key(
        &blst::min_pk::PublicKey::from_bytes(&pk_h.to_bytes()).expect("key"),
    ));
    let pk_a = BlsPublicKey::from_bytes(&rogue.to_public_key().compress())
        .expect("the rogue key is a valid group element");

    // The attack works without PoP: evil's lone signature passes as honest + attacker.
    let msg = vote_message(CH, 1, 0, VoteKind::Precommit, Some(BLOCK));
    let forged = evil.sign(&msg);
    let raw = |k: &BlsPublicKey| blst::min_pk::PublicKey::from_bytes(&k.to_bytes()).expect("key");
    let sig = blst::min_pk::Signature::from_bytes(&forged.to_bytes()).expect("sig");
    let (rh, ra) = (raw(&pk_h), raw(&pk_a));
    assert_eq!(
        sig.fast_aggregate_verify(true, &msg, SIG_DST, &[&rh, &ra]),
        blst::BLST_ERROR::BLST_SUCCESS
    );

    // With PoP the set refuses the rogue key, whatever proof the attacker offers.
    for bad_pop in [
        evil.prove_possession(),
        honest.prove_possession(),
        ProofOfPossession(forged),
    ] {
        let v = vec![(pk_h, honest.prove_possession()), (pk_a, bad_pop)];
        assert_eq!(ValidatorSet::new(v).err(), Some(BlsError::BadPop(1)));
    }
}

// --- Certificates ------------------------------------------------------------------------------

fn check_set_size(n: usize) {
    let sks = secrets(n as u64, n);
    let set = set_of(&sks);
    let q = set.quorum();

    // Exactly a quorum, all, and a middle count (the add and subtract paths) verify.
    let quorum: Vec<usize> = (0..q).collect();
    let all: Vec<usize> = (0..n).collect();
    let odd: Vec<usize> = (1..n).rev().collect();
    for who in [&quorum, &all, &odd] {
        let c = cert_by(&sks, &set, who);
        assert_eq!(c.verify(CH, &set), Ok(()), "n={n} signers={}", who.len());
        let mut idx = who.to_vec();
        idx.sort_unstable();
        assert_eq!(c.signer_indexes(), idx);
        // Cross-check: each signer's own vote verifies, the aggregate is the sum of them, and
        // blst's FastAggregateVerify over the listed keys agrees.
        let msg = c.message(CH);
        let sigs: Vec<BlsSignature> = idx.iter().map(|&i| sks[i].sign(&msg)).collect();
        for (&i, s) in idx.iter().zip(&sigs) {
            assert!(set.keys()[i].verify(&msg, s));
        }
        assert_eq!(BlsSignature::aggregate(&sigs), Some(c.signature));
        let raws: Vec<blst::min_pk::PublicKey> = idx
            .iter()
            .map(|&i| blst::min_pk::PublicKey::from_bytes(&set.keys()[i].to_bytes()).expect("key"))
            .collect();
        let refs: Vec<&blst::min_pk::PublicKey> = raws.iter().collect();
        let s = blst::min_pk::Signature::from_bytes(&c.signature.to_bytes()).expect("sig");
        assert_eq!(
            s.fast_aggregate_verify(true, &msg, SIG_DST, &refs),
            blst::BLST_ERROR::BLST_SUCCESS
        );
    }

    // One signer fewer than a quorum.
    if q > 1 {
        let c = raw_cert(&sks, &set, &(0..q - 1).collect::<Vec<_>>());
        assert_eq!(
            c.verify(CH, &set),
            Err(CertError::TooFewSigners {
                got: q - 1,
                need: q
            })
        );
        let mut agg = Aggregator::new(set.clone(), CH, 9, 2, VoteKind::Precommit, Some(BLOCK));
        for (i, sk) in sks.iter().enumerate().take(q - 1) {
            let _ = agg.add(i as u32, &sk.sign(agg.message()));
        }
        assert!(!agg.has_quorum());
        assert_eq!(agg.certificate(), None);
    }

    let c = cert_by(&sks, &set, &quorum);
    // Another block, nil, height, round, kind, channel.
    let mut other = Vec::new();
    let mut x = c.clone();
    x.block = Some([0xac; 32]);
    other.push(x);
    let mut x = c.clone();
    x.block = None;
    other.push(x);
    let mut x = c.clone();
    x.height += 1;
    other.push(x);
    let mut x = c.clone();
    x.round += 1;
    other.push(x);
    let mut x = c.clone();
    x.kind = VoteKind::Prevote;
    other.push(x);
    for x in &other {
        assert_eq!(x.verify(CH, &set), Err(CertError::BadSignature));
    }
    assert_eq!(
        c.verify("other-channel", &set),
        Err(CertError::BadSignature)
    );

    // Adding a non-signer or removing a signer (when above quorum).
    if q < n {
        let mut x = c.clone();
        x.signers[q / 8] |= 1 << (q % 8);
        assert_eq!(x.verify(CH, &set), Err(CertError::BadSignature));
        let c_all = cert_by(&sks, &set, &all);
        let mut x = c_all.clone();
        x.signers[0] &= !1;
        assert_eq!(x.verify(CH, &set), Err(CertError::BadSignature));
        // Moving a signature: same count, different signer.
        let mut x = c.clone();
        x.signers[0] &= !1;
        x.signers[q / 8] |= 1 << (q % 8);
        assert_eq!(x.verify(CH, &set), Err(CertError::BadSignature));
    }
    // A signer index beyond n inside the last byte, a longer and a shorter bitmap.
    if n % 8 != 0 {
        let mut x = c.clone();
        let last = set.bitmap_len() - 1;
        x.signers[last] |= 0x80;
        assert_eq!(
            x.verify(CH, &set),
            Err(CertError::UnknownSigner(last * 8 + 7))
        );
    }
    let mut x = c.clone();
    x.signers.push(1);
    assert!(matches!(
        x.verify(CH, &set),
        Err(CertError::BadBitmap { .. })
    ));
    let mut x = c.clone();
    x.signers.pop();
    assert!(matches!(
        x.verify(CH, &set),
        Err(CertError::BadBitmap { .. })
    ));
    // Another set of the same size.
    let other_set = set_of(&secrets(1000 + n as u64, n));
    assert_eq!(c.verify(CH, &other_set), Err(CertError::WrongSet));
    let mut x = c.clone();
    x.set_id = other_set.id();
    assert_eq!(x.verify(CH, &other_set), Err(CertError::BadSignature));

    // Encoding round trip.
    let b = c.to_bytes();
    assert!(b.len() <= MAX_CERT_LEN);
    assert_eq!(
        b.len(),
        1 + 32 + 8 + 4 + 1 + 1 + 32 + 2 + n.div_ceil(8) + 96
    );
    let d = QuorumCert::from_bytes(&b).expect("decode");
    assert_eq!(d, c);
    assert_eq!(d.verify(CH, &set), Ok(()));
}

#[test]
fn certificates_4_validators() {
    check_set_size(4);
}

#[test]
fn certificates_7_validators() {
    check_set_size(7);
}

#[test]
fn certificates_10_validators() {
    check_set_size(10);
}

#[test]
fn certificates_100_validators() {
    check_set_size(100);
}

#[test]
fn aggregator_refuses_forged_votes() {
    let n = 7;
    let sks = secrets(11, n);
    let set = set_of(&sks);
    let mut agg = Aggregator::new(set.clone(), CH, 9, 2, VoteKind::Precommit, Some(BLOCK));
    let msg = agg.message().to_vec();
    let outsider = secret(99, 0);

    // Forgeries: another validator's key, an outsider, another message, the PoP.
    assert_eq!(
        agg.add(0, &sks[1].sign(&msg)),
        Err(VoteError::BadSignature(0))
    );
    assert_eq!(
        agg.add(1, &outsider.sign(&msg)),
        Err(VoteError::BadSignature(1))
    );
    let wrong = vote_message(CH, 9, 2, VoteKind::Prevote, Some(BLOCK));
    assert_eq!(
        agg.add(2, &sks[2].sign(&wrong)),
        Err(VoteError::BadSignature(2))
    );
    assert_eq!(
        agg.add(3, &sks[3].prove_possession().0),
        Err(VoteError::BadSignature(3))
    );
    assert_eq!(
        agg.add(n as u32, &sks[0].sign(&msg)),
        Err(VoteError::UnknownValidator(n as u32))
    );
    assert_eq!(agg.count(), 0);
    assert!(!agg.has(0));

    // Honest votes (including from the indexes whose forgeries were refused) form a cert.
    for (i, sk) in sks.iter().enumerate().take(set.quorum()) {
        assert_eq!(
            agg.add(i as u32, &sk.sign(&msg)),
            Ok(Added::New { count: i + 1 })
        );
    }
    // Duplicates are ignored, even with a different (bad) signature.
    assert_eq!(agg.add(0, &sks[0].sign(&msg)), Ok(Added::Duplicate));
    assert_eq!(agg.add(1, &outsider.sign(&msg)), Ok(Added::Duplicate));
    assert_eq!(agg.count(), set.quorum());
    let c = agg.certificate().expect("quorum");
    assert_eq!(c.verify(CH, &set), Ok(()));
    assert_eq!(c.signer_indexes(), (0..set.quorum()).collect::<Vec<_>>());
    // A forged vote after the quorum still does not enter the next certificate.
    let q = set.quorum() as u32;
    assert_eq!(
        agg.add(q, &outsider.sign(&msg)),
        Err(VoteError::BadSignature(q))
    );
    assert_eq!(agg.certificate(), Some(c));
    // Votes decoded from bytes work the same.
    let s = BlsSignature::from_bytes(&sks[q as usize].sign(&msg).to_bytes()).expect("sig");
    assert!(matches!(agg.add(q, &s), Ok(Added::New { .. })));
    assert_eq!(agg.certificate().map(|c| c.verify(CH, &set)), Some(Ok(())));
}

#[test]
fn certificate_encoding_is_strict() {
    let sks = secrets(21, 10);
    let set = set_of(&sks);
    let c = cert_by(&sks, &set, &[0, 2, 3, 5, 6, 7, 9]);
    let b = c.to_bytes();
    assert_eq!(b[0], 1);
    assert_eq!(&b[1..33], &set.id());
    assert_eq!(&b[33..41], &9u64.to_be_bytes());
    assert_eq!(&b[41..45], &2u32.to_be_bytes());
    assert_eq!(b[45], 2);
    assert_eq!(b[46], 1);
    assert_eq!(&b[47..79], &BLOCK);
    assert_eq!(&b[79..81], &[0, 2]);
    assert_eq!(&b[81..83], &[0b1110_1101, 0b0000_0010]);
    assert_eq!(&b[83..], &c.signature.to_bytes());

    // Nil block: 32 bytes shorter.
    let mut nil = c.clone();
    nil.block = None;
    assert_eq!(nil.to_bytes().len(), b.len() - 32);
    assert_eq!(QuorumCert::from_bytes(&nil.to_bytes()), Ok(nil));

    for len in 0..b.len() {
        assert_eq!(
            QuorumCert::from_bytes(&b[..len]),
            Err(DecodeError::Truncated),
            "{len}"
        );
    }
    assert_eq!(
        QuorumCert::from_bytes(&[&b[..], &[0]].concat()),
        Err(DecodeError::Trailing(1))
    );
    let mut x = b.clone();
    x[0] = 2;
    assert_eq!(QuorumCert::from_bytes(&x), Err(DecodeError::Version(2)));
    for k in [0u8, 3, 255] {
        let mut x = b.clone();
        x[45] = k;
        assert_eq!(QuorumCert::from_bytes(&x), Err(DecodeError::Kind(k)));
    }
    let mut x = b.clone();
    x[46] = 2;
    assert_eq!(QuorumCert::from_bytes(&x), Err(DecodeError::BlockTag(2)));
    let mut x = b.clone();
    x[79..81].copy_from_slice(&[0, 0]);
    assert_eq!(
        QuorumCert::from_bytes(&x),
        Err(DecodeError::BitmapLength(0))
    );
    assert!(QuorumCert::from_bytes(&vec![1u8; MAX_CERT_LEN + 1]).is_err());

    // Every single-bit flip: refused on decode, or a canonical different value that fails
    // verification.
    for i in 0..b.len() * 8 {
        let mut x = b.clone();
        x[i / 8] ^= 1 << (i % 8);
        match QuorumCert::from_bytes(&x) {
            Err(_) => {}
            Ok(d) => {
                assert_eq!(d.to_bytes(), x, "bit {i}: not canonical");
                assert!(
                    d.verify(CH, &set).is_err(),
                    "bit {i}: flipped cert verifies"
                );
            }
        }
    }

    // Random bytes never panic and are refused.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for _ in 0..2000 {
        let len = rng.gen_range(0..300);
        let mut x = vec![0u8; len];
        rng.fill_bytes(&mut x);
        if rng.gen_bool(0.5) && len > 0 {
            x[0] = 1;
        }
        assert!(QuorumCert::from_bytes(&x).is_err());
    }

    // serde forms.
    let pc = postcard::to_allocvec(&c).expect("postcard");
    assert_eq!(postcard::from_bytes::<QuorumCert>(&pc).expect("decode"), c);
    let js = serde_json::to_string(&c).expect("json");
    assert_eq!(serde_json::from_str::<QuorumCert>(&js).expect("decode"), c);
}

// --- Benchmark figure ----------------------------------------------------------------------------

/// Prints certificate verification time (mean) for 4 and 100 validators and the time to
/// aggregate 100 votes. Asserts nothing about speed.
/// `cargo test -p bpu-consensus --release --test bls -- --ignored --nocapture bench_certificates`
#[test]
#[ignore]
fn bench_certificates() {
    for n in [4usize, 10, 100] {
        let sks = secrets(77, n);
        let set = set_of(&sks);
        let q = set.quorum();
        for who in [(0..q).collect::<Vec<_>>(), (0..n).collect()] {
            let c = cert_by(&sks, &set, &who);
            let iters = 300;
            let t = Instant::now();
            for _ in 0..iters {
                assert_eq!(c.verify(CH, &set), Ok(()));
            }
            let per = t.elapsed() / iters;
            println!(
                "verify cert n={n:3} signers={:3}: {:>8.1} µs",
                who.len(),
                per.as_secs_f64() * 1e6
            );
        }
    }
    let n = 100;
    let sks = secrets(78, n);
    let set = set_of(&sks);
    let msg = vote_message(CH, 9, 2, VoteKind::Precommit, Some(BLOCK));
    let sigs: Vec<BlsSignature> = sks.iter().map(|sk| sk.sign(&msg)).collect();
    let iters = 5;
    let t = Instant::now();
    for _ in 0..iters {
        let mut agg = Aggregator::new(set.clone(), CH, 9, 2, VoteKind::Precommit, Some(BLOCK));
        for (i, s) in sigs.iter().enumerate() {
            let _ = agg.add(i as u32, s);
        }
        assert!(agg.certificate().is_some());
    }
    let per = t.elapsed() / iters;
    println!(
        "Aggregator: 100 votes, each verified, + certificate: {:>8.1} ms",
        per.as_secs_f64() * 1e3
    );
    let iters = 1000;
    let t = Instant::now();
    for _ in 0..iters {
        assert!(BlsSignature::aggregate(&sigs).is_some());
    }
    let per = t.elapsed() / iters;
    println!(
        "sum of 100 signatures alone (G2 additions): {:>8.1} µs",
        per.as_secs_f64() * 1e6
    );
    let iters = 200;
    let t = Instant::now();
    for i in 0..iters {
        assert!(set.keys()[i % n].verify(&msg, &sigs[i % n]));
    }
    let per = t.elapsed() / iters as u32;
    println!(
        "one individual vote verification: {:>8.1} µs",
        per.as_secs_f64() * 1e6
    );
}
