//! bpu-bench: the benchmarks behind `bpu bench`, reported as JSON and markdown.
//!
//! Purpose: measure each engine on the device in device clock cycles (from the BPU's own
//! counters, so simulator speed does not matter), project operations per second at a stated
//! clock, and measure the CPU backend on this machine for comparison.
//!
//! Invariants: benchmarks check their results (a wrong digest is an error, not a number);
//! assumptions (clock, instance counts) are printed next to every projection.
//!
//! Start reading at [`hash::run`] (SHA-256), [`verify::run`] (ECDSA P-256), [`ledger::run`]
//! (the node end to end), [`consensus::run`] (BFT validators in one process) or
//! [`gateway::run`] (the REST API in front of them, against the same load sent straight to a
//! node); [`load`] is the transfer workload the last three share.

pub mod consensus;
pub mod gateway;
pub mod hash;
pub mod ledger;
pub mod load;
pub mod verify;
pub mod verify_device;

use serde::Serialize;

/// Assumptions behind projected rates.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Projection {
    /// Device clock in MHz (an assumption until a timing report says otherwise).
    pub clock_mhz: f64,
}

impl Default for Projection {
    fn default() -> Self {
        Projection { clock_mhz: 250.0 }
    }
}

/// `1.23 GB/s` or `456 MB/s`.
pub fn fmt_rate(gbytes_per_s: f64) -> String {
    if gbytes_per_s >= 1.0 {
        format!("{gbytes_per_s:.2} GB/s")
    } else {
        format!("{:.0} MB/s", gbytes_per_s * 1000.0)
    }
}
