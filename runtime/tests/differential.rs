//! The BPU backend (simulated device) against the CPU backend: identical digests and roots for
//! the same inputs, under concurrency, and recovery after a device stall.

use bpu_runtime::{merkle, CryptoService, Digest};
use rand::{Rng, SeedableRng};

fn services() -> (CryptoService, CryptoService) {
    let bpu = CryptoService::open("sim://?timeout=20000").expect("simulated device");
    (CryptoService::cpu(), bpu)
}

fn random_msgs(seed: u64, n: usize, max: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..rng.gen_range(0..max)).map(|_| rng.gen()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_and_batches_are_identical() {
    let (cpu, bpu) = services();
    for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 70_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        assert_eq!(
            cpu.sha256(&data).await.expect("cpu"),
            bpu.sha256(&data).await.expect("bpu"),
            "len {len}"
        );
    }
    let msgs = random_msgs(1, 600, 2_000);
    assert_eq!(
        cpu.sha256_batch(&msgs).await.expect("cpu"),
        bpu.sha256_batch(&msgs).await.expect("bpu")
    );
    assert_eq!(
        cpu.leaf_hashes(&msgs).await.expect("cpu"),
        bpu.leaf_hashes(&msgs).await.expect("bpu")
    );
    let empty: Vec<Vec<u8>> = Vec::new();
    assert!(bpu.sha256_batch(&empty).await.expect("bpu").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merkle_roots_are_identical_and_match_the_definition() {
    let (cpu, bpu) = services();
    for n in (0..40).chain([127, 128, 129, 1000]) {
        let leaves: Vec<Digest> = (0..n as u32)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        let want = merkle::root(&leaves);
        assert_eq!(
            cpu.merkle_root(&leaves).await.expect("cpu"),
            want,
            "cpu n={n}"
        );
        assert_eq!(
            bpu.merkle_root(&leaves).await.expect("bpu"),
            want,
            "bpu n={n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_are_batched_and_each_gets_its_own_answer() {
    let (_, bpu) = services();
    let msgs = random_msgs(2, 400, 300);
    let mut tasks = Vec::new();
    for (i, m) in msgs.iter().cloned().enumerate() {
        let svc = bpu.clone();
        tasks.push(tokio::spawn(async move { (i, svc.sha256(&m).await) }));
    }
    for t in tasks {
        let (i, d) = t.await.expect("task");
        let cpu = CryptoService::cpu().sha256(&msgs[i]).await.expect("cpu");
        assert_eq!(d.expect("bpu"), cpu, "caller {i}");
    }
    let m = bpu.metrics();
    assert_eq!(m.requests, 400);
    assert!(m.batches < m.requests, "requests shared doorbells: {m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_device_errors_then_recovers() {
    let cpu = CryptoService::cpu();
    let bpu = CryptoService::open("sim://?timeout=300").expect("simulated device");
    let dev = bpu.device().expect("bpu backend").clone();
    dev.set_stall(bpu_driver::EngineType::Sha256, u32::MAX)
        .expect("stall");
    assert!(
        bpu.sha256(b"stuck").await.is_err(),
        "a stalled device gives an error, not a hang"
    );
    // The service resets the device after a timeout; the next call works.
    let mut ok = false;
    for _ in 0..20 {
        if let Ok(d) = bpu.sha256(b"after").await {
            assert_eq!(d, cpu.sha256(b"after").await.expect("cpu"));
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "service recovered after the reset");
}
