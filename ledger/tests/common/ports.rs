//! Loopback ports for tests that start listeners by address (shared by the ledger tests and
//! the `bpu`-binary tests).

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
