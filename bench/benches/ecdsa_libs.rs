//! The measurement behind the choice of ECDSA library (docs/ecdsa-cpu.md): one P-256 signature
//! verified by `p256`, `ring` and `aws-lc-rs` on one thread, and the runtime's `cpu_verify`.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest as _, Sha256};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use ring::signature::KeyPair;
    let msg = [0x5au8; 100];
    let digest: [u8; 32] = Sha256::digest(msg).into();
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
    let kp = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key");
    let sec1 = kp.public_key().as_ref().to_vec();
    let sig = kp.sign(&rng, &msg).expect("sign").as_ref().to_vec();

    let mut g = c.benchmark_group("ecdsa_p256_verify_one");
    g.throughput(Throughput::Elements(1));

    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).expect("key");
    let s = p256::ecdsa::Signature::from_slice(&sig).expect("sig");
    g.bench_function("p256 verify_prehash", |b| {
        b.iter(|| assert!(vk.verify_prehash(black_box(&digest), &s).is_ok()))
    });

    let pk =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &sec1);
    g.bench_function("ring verify (message: hashes 100 B; no digest API)", |b| {
        b.iter(|| assert!(pk.verify(black_box(&msg), &sig).is_ok()))
    });

    let lc_digest =
        aws_lc_rs::digest::Digest::import_less_safe(&digest, &aws_lc_rs::digest::SHA256)
            .expect("digest");
    let lc_key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &sec1,
    );
    g.bench_function("aws-lc-rs verify_digest (key parsed per call)", |b| {
        b.iter(|| assert!(lc_key.verify_digest(black_box(&lc_digest), &sig).is_ok()))
    });
    let parsed = lc_key.parse().expect("key");
    g.bench_function("aws-lc-rs verify_digest_sig (key parsed once)", |b| {
        b.iter(|| {
            assert!(parsed
                .verify_digest_sig(black_box(&lc_digest), &sig)
                .is_ok())
        })
    });

    let key = bpu_runtime::PublicKey::from_sec1(&sec1).expect("key");
    let sig = bpu_runtime::Signature::from_fixed(&sig).expect("sig");
    let req = bpu_runtime::VerifyRequest::new(&key, &sig, digest);
    g.bench_function("bpu_runtime::cpu_verify", |b| {
        b.iter(|| assert!(bpu_runtime::cpu_verify(black_box(&req))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
