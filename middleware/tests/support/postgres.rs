//! A fresh PostgreSQL database per test on the server ci/services.sh starts (shared by the
//! gateway's in-process tests and the `bpu`-binary tests in tests/gateway.rs).

/// A new database on the `BPU_TEST_POSTGRES` server, as a URL; `None` (said on stderr) when
/// the variable is unset, a failure when `BPU_REQUIRE_POSTGRES` (set by ci/test.sh) is set.
pub fn fresh_database() -> Option<String> {
    let Ok(base) = std::env::var("BPU_TEST_POSTGRES") else {
        assert!(
            std::env::var("BPU_REQUIRE_POSTGRES").is_err(),
            "BPU_REQUIRE_POSTGRES is set but BPU_TEST_POSTGRES is not (ci/services.sh)"
        );
        eprintln!(
            "BPU_TEST_POSTGRES is unset: the PostgreSQL variant did not run (ci/test.sh sets it)"
        );
        return None;
    };
    let name = format!("gw_{}", hex::encode(rand::random::<[u8; 6]>()));
    let o = std::process::Command::new("psql")
        .arg(&base)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("run psql (postgresql-client)");
    assert!(
        o.status.success(),
        "creating database {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (prefix, _) = base.rsplit_once('/').expect("a database URL ends in /DB");
    Some(format!("{prefix}/{name}"))
}
