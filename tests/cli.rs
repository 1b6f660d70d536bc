//! The `bpu` binary: `bpu hash` prints exactly what `sha256sum` prints, on both backends.

use std::process::Command;

fn bpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bpu"))
}

#[test]
fn hash_output_is_byte_identical_to_sha256sum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (name, data) in [
        ("empty", Vec::new()),
        ("abc.txt", b"abc".to_vec()),
        (
            "with space.bin",
            (0..=255u8).cycle().take(100_003).collect(),
        ),
        ("block", vec![0x61; 64]),
        ("back\\slash", b"escaped name".to_vec()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, data).expect("write");
        files.push(p.to_string_lossy().into_owned());
    }
    let want = Command::new("sha256sum")
        .args(&files)
        .output()
        .expect("sha256sum runs");
    assert!(want.status.success());
    for device in ["cpu", "sim://"] {
        let got = bpu()
            .arg("hash")
            .args(&files)
            .args(["--device", device])
            .output()
            .expect("bpu runs");
        assert!(
            got.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&want.stdout),
            "bpu hash --device {device}"
        );
    }
}

#[test]
fn missing_files_are_reported_and_the_rest_still_hashed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good");
    std::fs::write(&good, b"x").expect("write");
    let missing = dir.path().join("missing");
    let out = bpu()
        .arg("hash")
        .arg(&good)
        .arg(&missing)
        .args(["--device", "cpu"])
        .output()
        .expect("bpu runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file or directory"));
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881  "));
}

#[test]
fn selftest_passes_on_the_simulator_and_reports_json() {
    let out = bpu()
        .args(["selftest", "--json"])
        .output()
        .expect("bpu runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let checks = v["checks"].as_array().expect("checks");
    assert!(checks.len() >= 8);
    assert!(checks.iter().all(|c| c["ok"] == true));
}

#[test]
fn bad_device_uri_is_a_clear_error() {
    let out = bpu()
        .args(["hash", "--device", "tcp://x"])
        .output()
        .expect("bpu runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid device URI"));
}
