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

/// `n` consecutive loopback ports that are free now, handed out once per process and below the
/// kernel's ephemeral range (32768–60999 on Linux), so no outgoing connection of a parallel
/// test takes one before the node binds it.
pub fn free_run(n: u16) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        10_000 + u32::from(rand::random::<u16>() % 10_000),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let base = NEXT.fetch_add(u32::from(n), Ordering::SeqCst);
        assert!(base + u32::from(n) < 32_000, "out of test ports");
        let base = base as u16;
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return format!("127.0.0.1:{base}");
        }
    }
}
