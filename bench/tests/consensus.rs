//! `bpu bench consensus` end to end on a small workload: four validators in process commit every
//! transfer valid, every node holds the same certified chain, and the report has its figures.

#[path = "../../runtime/tests/common/contracts.rs"]
mod contracts;

use bpu_bench::consensus::{run, Options};

#[test]
fn four_validators_commit_every_transfer_and_report_figures() {
    let progress = |s: &str| eprintln!("bench: {s}");
    let opts = Options {
        quick: true,
        nodes: vec![4],
        accounts: 256,
        transfers: 600,
        token_elf: contracts::path("token"),
        block_timeout_ms: 100,
        connections: 4,
        target_tps: 2_000.0,
        extend: false,
        max_nodes: 4,
        progress: &progress,
    };
    let r = run(&opts).expect("the benchmark runs");
    assert_eq!(r.runs.len(), 1);
    let run = &r.runs[0];
    assert_eq!(run.validators, 4);
    for f in [&run.peak, &run.paced] {
        assert!(f.submitted > 0);
        assert_eq!(f.valid, f.submitted, "{f:?}");
        assert_eq!((f.invalid, f.rejected), (0, 0), "{f:?}");
        assert!(f.tps > 0.0 && f.latency_ms_p99 >= f.latency_ms_p50, "{f:?}");
    }
    assert!(run.peak_rounds.heights >= 1 && run.peak_rounds.rounds_per_height >= 1.0);
    let sizes: Vec<usize> = r.certificates.iter().map(|c| c.validators).collect();
    assert_eq!(sizes, [4, 100]);
    assert!(r.certificates.iter().all(|c| c.verify_us > 0.0));
    let md = r.markdown();
    assert!(md.contains("| 4 | peak |"), "{md}");
}
