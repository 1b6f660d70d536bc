//! All 484 Wycheproof ECDSA P-256/SHA-256 tests through the crypto service: strict DER parsing,
//! key parsing (SPKI, PEM, SEC1) and verdicts. The check lives in `common` so that every backend
//! runs the same one.

mod common;

use bpu_runtime::CryptoService;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wycheproof_p256_sha256_on_the_cpu_backend() {
    let counts = common::check_wycheproof(&CryptoService::cpu()).await;
    println!(
        "Wycheproof ecdsa_secp256r1_sha256 on cpu: {} tests, {} valid, {} invalid ({} rejected by the DER parser), acceptable: {:?}",
        counts.tests, counts.valid, counts.invalid, counts.der_rejected, counts.acceptable
    );
    assert_eq!(
        counts.valid + counts.invalid + counts.acceptable.len(),
        counts.tests
    );
    assert!(counts.valid > 100 && counts.invalid > 100, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wycheproof_p256_sha256_on_the_simulated_bpu() {
    let svc = CryptoService::open("sim://?timeout=60000").expect("simulated BPU");
    let counts = common::check_wycheproof(&svc).await;
    assert_eq!(
        counts.valid + counts.invalid + counts.acceptable.len(),
        counts.tests
    );
    assert!(counts.valid > 100 && counts.invalid > 100, "{counts:?}");
    // Every signature the DER parser accepted went to the device.
    assert!(svc.metrics().signatures as usize >= counts.tests - counts.der_rejected);
}
