//! Criterion benchmarks of the crypto service: CPU backend and the simulated BPU, same calls.
use bpu_runtime::CryptoService;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut services = vec![("cpu", CryptoService::cpu())];
    match CryptoService::open("sim://") {
        Ok(s) => services.push(("sim", s)),
        Err(e) => eprintln!("skipping sim:// ({e})"),
    }
    let mut g = c.benchmark_group("sha256_batch_100B_x256");
    let msgs: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 100]).collect();
    g.throughput(Throughput::Bytes(100 * 256));
    for (name, svc) in &services {
        g.bench_with_input(BenchmarkId::from_parameter(name), &msgs, |b, m| {
            b.iter(|| rt.block_on(svc.sha256_batch(m)).expect("hash"));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
