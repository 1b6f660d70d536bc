//! `bpu bench gateway` end to end on a small workload: four validators and the gateway in
//! process, accounts created and funded through the API, every transfer through the gateway
//! committed (and found valid on the ledger where the gateway said), the direct runs valid, and
//! the report has its figures.

#[path = "../../runtime/tests/common/contracts.rs"]
mod contracts;

use bpu_bench::gateway::{run, Options};

#[test]
fn gateway_and_direct_runs_commit_every_transfer_and_report_figures() {
    let progress = |s: &str| eprintln!("bench: {s}");
    let opts = Options {
        accounts: 128,
        seconds: 2.0,
        connections: 8,
        token_elf: contracts::path("token"),
        block_timeout_ms: 100,
        progress: &progress,
    };
    let r = run(&opts).expect("the benchmark runs");
    assert!(r.passed(), "{:?}", r.failures);
    for f in [&r.gateway_peak, &r.gateway_paced] {
        assert!(f.committed > 0, "{f:?}");
        assert_eq!(f.committed, f.requested, "{f:?}");
        assert_eq!((f.refused, f.rejected, f.unfinished), (0, 0, 0), "{f:?}");
        assert!(f.tps > 0.0 && f.blocks > 0, "{f:?}");
        assert!(f.preconfirm_ms_p99 >= f.preconfirm_ms_p50, "{f:?}");
        assert!(f.commit_ms_p50 >= f.preconfirm_ms_p50, "{f:?}");
    }
    assert!(r.gateway_paced.offered_tps.is_some());
    let c = &r.ledger_check;
    assert!(c.ok, "{c:?}");
    assert_eq!(
        c.valid_txs,
        r.gateway_peak.committed + r.gateway_paced.committed
    );
    for d in [&r.direct_peak, &r.direct_paced, &r.direct_same_rate] {
        let l = &d.load;
        assert_eq!(l.valid, l.submitted, "{l:?}");
        assert!(l.tps > 0.0, "{l:?}");
    }
    assert!(r.cost.throughput_ratio > 0.0);
    assert_eq!(r.goals.len(), 4);
    let md = r.markdown();
    assert!(md.contains("| gateway | peak |"), "{md}");
    assert!(md.contains("| direct | peak |"), "{md}");
}
