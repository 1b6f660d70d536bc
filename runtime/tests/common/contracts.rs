//! Built contracts for tests: runs `contracts/build.sh` once per test binary, returns ELF bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding the built ELF files (`<name>.elf`, `tests/<name>.elf`,
/// `tests/qemu/<name>.elf`); builds them on first use. Each test binary builds into its own
/// directory under cargo's target tmpdir, so concurrent test binaries do not race.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("contracts-{}", env!("CARGO_CRATE_NAME")));
        // The crate is the workspace root or one of its members.
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("contracts/build.sh"))
            .find(|p| p.exists())
            .expect("contracts/build.sh above the crate");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .status()
            .expect("run contracts/build.sh (needs bash, clang, lld: ci/setup.sh)");
        assert!(status.success(), "contracts/build.sh failed");
        out
    })
}

#[allow(dead_code)]
/// The path of the built program `name` (e.g. "token", "tests/probe", "tests/qemu/sha256").
pub fn path(name: &str) -> PathBuf {
    dir().join(format!("{name}.elf"))
}

/// The ELF bytes of the built program `name`.
#[allow(dead_code)]
pub fn elf(name: &str) -> Vec<u8> {
    let p = path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}
