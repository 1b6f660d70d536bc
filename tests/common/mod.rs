//! Helpers of the tests that drive the `bpu` binary: run it, expect success or a given failure.
#![allow(dead_code)]

use std::process::{Command, Output};

/// The `bpu` binary of this build.
pub fn bpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bpu"))
}

/// Runs `bpu args` and asserts that it succeeded.
pub fn run(args: &[&str]) -> Output {
    let o = bpu().args(args).output().expect("run bpu");
    assert!(
        o.status.success(),
        "bpu {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Runs `bpu args` and asserts that it exited with `code` and said `why` on stderr.
pub fn fails(args: &[&str], code: i32, why: &str) {
    let o = bpu().args(args).output().expect("run bpu");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "bpu {args:?}: {err}");
    assert!(
        err.contains(why),
        "bpu {args:?}: expected {why:?} in: {err}"
    );
}

/// Standard output, trimmed.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[path = "../../ledger/tests/common/ports.rs"]
mod ports;
pub use ports::free_run;
