//! `bpu verify` against OpenSSL: keys and signatures made by the `openssl` tool, each verdict
//! checked against `openssl dgst -sha256 -verify`, and the exit statuses for errors.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Backends `bpu verify` is checked on.
const DEVICES: &[&str] = &["cpu", "sim://"];

fn bpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bpu"))
}

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (install the openssl command line tool)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for k in ["k1", "k2"] {
            let key = f.path(&format!("{k}.pem"));
            let public = f.path(&format!("{k}.pub.pem"));
            openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                s(&key),
            ]);
            openssl(&["ec", "-in", s(&key), "-pubout", "-out", s(&public)]);
        }
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).expect("write");
        p
    }

    /// Signs `file` with key `k` (DER signature, as `openssl dgst -sign` writes).
    fn sign(&self, k: &str, file: &Path) -> PathBuf {
        let sig = PathBuf::from(format!("{}.{k}.sig", file.display()));
        openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            s(&self.path(&format!("{k}.pem"))),
            "-out",
            s(&sig),
            s(file),
        ]);
        sig
    }
}

/// `openssl dgst -sha256 -verify`'s verdict (exit 0 / 1).
fn openssl_verdict(pubkey: &Path, sig: &Path, file: &Path) -> Option<bool> {
    let out = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            s(pubkey),
            "-signature",
            s(sig),
            s(file),
        ])
        .output()
        .expect("openssl runs");
    match out.status.code() {
        Some(0) => Some(true),
        Some(1) if String::from_utf8_lossy(&out.stdout).contains("Verification failure") => {
            Some(false)
        }
        _ => None,
    }
}

fn bpu_verify(device: &str, key: &Path, sig: &Path, file: &Path, extra: &[&str]) -> Output {
    bpu()
        .args([
            "verify",
            "--device",
            device,
            "--pubkey",
            s(key),
            "--signature",
            s(sig),
        ])
        .args(extra)
        .arg(file)
        .output()
        .expect("bpu runs")
}

/// `bpu verify`'s outcome, checked against its printed line.
fn verdict(out: &Output) -> Option<bool> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => {
            assert_eq!(stdout, "Verified OK\n");
            Some(true)
        }
        Some(1) => {
            assert_eq!(stdout, "Verification failure\n");
            Some(false)
        }
        _ => None,
    }
}

#[test]
fn verdicts_agree_with_openssl() {
    let f = Fixture::new();
    let pub1 = f.path("k1.pub.pem");
    let pub2 = f.path("k2.pub.pem");
    let files = [
        f.write("empty", b""),
        f.write("text", b"transfer 10 coins from alice to bob\n"),
        f.write(
            "binary",
            &(0..=255u8).cycle().take(100_003).collect::<Vec<u8>>(),
        ),
    ];
    for device in DEVICES {
        for file in &files {
            let sig = f.sign("k1", file);
            let data = std::fs::read(file).expect("read");
            let mut tampered = data.clone();
            if tampered.is_empty() {
                tampered.push(0);
            } else {
                tampered[data.len() / 2] ^= 0x01;
            }
            let tampered = f.write("tampered", &tampered);
            // The last byte of the DER belongs to s: changing it keeps the encoding valid.
            let mut bad_sig = std::fs::read(&sig).expect("read");
            let last = bad_sig.len() - 1;
            bad_sig[last] ^= 0x01;
            let bad_sig = f.write("bad.sig", &bad_sig);
            for (what, key, sig, file, want) in [
                ("signed file", &pub1, &sig, file, true),
                ("tampered file", &pub1, &sig, &tampered, false),
                ("tampered signature", &pub1, &bad_sig, file, false),
                ("another key", &pub2, &sig, file, false),
            ] {
                let ctx = format!("{what}, {} on {device}", file.display());
                assert_eq!(
                    openssl_verdict(key, sig, file),
                    Some(want),
                    "openssl: {ctx}"
                );
                let out = bpu_verify(device, key, sig, file, &[]);
                assert_eq!(
                    verdict(&out),
                    Some(want),
                    "bpu: {ctx}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// INTEGER values of a DER signature, via `openssl asn1parse` (independent of bpu's parser).
fn asn1_integers(sig: &Path) -> Vec<Vec<u8>> {
    let out = openssl(&["asn1parse", "-inform", "DER", "-in", s(sig)]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("INTEGER").nth(1))
        .map(|v| {
            let h = v.trim().trim_start_matches(':');
            let h = if h.len() % 2 == 1 {
                format!("0{h}")
            } else {
                h.to_string()
            };
            hex::decode(h).expect("hex integer")
        })
        .collect()
}

#[test]
fn key_and_signature_encodings_and_stdin() {
    let f = Fixture::new();
    let pub_pem = f.path("k1.pub.pem");
    let file = f.write("msg", b"block 42 header");
    let sig = f.sign("k1", &file);

    // The same key as DER SPKI, raw uncompressed SEC1 and raw compressed SEC1.
    let spki = |name: &str, form: &str| -> (PathBuf, Vec<u8>) {
        let out = f.path(name);
        openssl(&[
            "ec",
            "-pubin",
            "-in",
            s(&pub_pem),
            "-conv_form",
            form,
            "-outform",
            "DER",
            "-out",
            s(&out),
        ]);
        let bytes = std::fs::read(&out).expect("read");
        (out, bytes)
    };
    let (der, der_bytes) = spki("pub.der", "uncompressed");
    let raw = f.write("pub.raw", &der_bytes[der_bytes.len() - 65..]);
    let (_, cder_bytes) = spki("pub.c.der", "compressed");
    let craw = f.write("pub.craw", &cder_bytes[cder_bytes.len() - 33..]);
    assert!(matches!(cder_bytes[cder_bytes.len() - 33], 2 | 3));

    // The signature as 64 bytes r‖s, converted by openssl asn1parse.
    let ints = asn1_integers(&sig);
    assert_eq!(ints.len(), 2);
    let mut fixed = Vec::new();
    for v in &ints {
        let v: Vec<u8> = v.iter().copied().skip_while(|&b| b == 0).collect();
        fixed.extend(std::iter::repeat_n(0, 32 - v.len()));
        fixed.extend(v);
    }
    let fixed = f.write("sig.fixed", &fixed);

    for device in DEVICES {
        for key in [&pub_pem, &der, &raw, &craw] {
            let out = bpu_verify(device, key, &sig, &file, &[]);
            assert_eq!(verdict(&out), Some(true), "{}: {:?}", key.display(), out);
        }
        let out = bpu_verify(device, &pub_pem, &fixed, &file, &["--sig-format", "fixed"]);
        assert_eq!(verdict(&out), Some(true), "fixed signature: {out:?}");
        // A fixed signature read as DER is malformed, not merely invalid.
        let out = bpu_verify(device, &pub_pem, &fixed, &file, &[]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");

        // stdin, and JSON.
        let mut child = bpu()
            .args([
                "verify",
                "--json",
                "--device",
                device,
                "-k",
                s(&pub_pem),
                "-s",
                s(&sig),
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bpu runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"block 42 header").expect("write stdin");
        }
        let out = child.wait_with_output().expect("bpu finishes");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["valid"], true);
        assert_eq!(v["digest"], hex::encode(Sha256::digest(b"block 42 header")));
        assert!(v["device"].is_string());
        let other = f.write("other", b"block 43 header");
        let out = bpu_verify(device, &pub_pem, &sig, &other, &["--json"]);
        assert_eq!(out.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["valid"], false);
    }
}

#[test]
fn malformed_inputs_exit_2_with_a_reason() {
    let f = Fixture::new();
    let pub_pem = f.path("k1.pub.pem");
    let file = f.write("msg", b"data");
    let sig = f.sign("k1", &file);
    let garbage = f.write("garbage", b"this is not a key or a signature\n");
    let missing = f.path("missing");
    let private = f.path("k1.pem");
    for device in DEVICES {
        for (what, key, sig, file, says) in [
            ("garbage key", &garbage, &sig, &file, "public key"),
            ("private key", &private, &sig, &file, "-pubout"),
            ("garbage signature", &pub_pem, &garbage, &file, "signature"),
            ("missing file", &pub_pem, &sig, &missing, "No such file"),
            ("missing key", &missing, &sig, &file, "No such file"),
            (
                "missing signature",
                &pub_pem,
                &missing,
                &file,
                "No such file",
            ),
        ] {
            let out = bpu_verify(device, key, sig, file, &[]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
            assert!(stderr.contains(says), "{what}: {stderr}");
            assert!(out.stdout.is_empty(), "{what}: printed a verdict");
            // OpenSSL refuses these too (its status is 1 for all failures).
            let o = Command::new("openssl")
                .args([
                    "dgst",
                    "-sha256",
                    "-verify",
                    s(key),
                    "-signature",
                    s(sig),
                    s(file),
                ])
                .output()
                .expect("openssl runs");
            assert!(!o.status.success(), "openssl accepted: {what}");
        }
    }
}

#[test]
fn bench_verify_reports_openssl_the_cpu_backend_and_the_device() {
    let out = bpu()
        .args(["bench", "verify", "--quick", "--json", "--device", "sim://"])
        .output()
        .expect("bpu runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let openssl = &v["openssl"];
    assert!(
        openssl["verify_per_s_1core"]
            .as_f64()
            .expect("openssl figure")
            > 100.0,
        "{v}"
    );
    let rows = v["cpu_rows"].as_array().expect("cpu rows");
    assert_eq!(rows[0]["threads"], 1);
    for r in rows {
        assert!(r["verify_per_s"].as_f64().expect("rate") > 100.0, "{r}");
        assert!(r["ratio_to_openssl"].as_f64().is_some(), "{r}");
    }
    // The simulated engine: a verification takes cycles, and a full engine overlaps several.
    let d = &v["device"];
    let latency = d["cycles_latency_one"].as_u64().expect("latency");
    let one = d["cycles_amortized_one_engine"]
        .as_f64()
        .expect("amortized");
    let all = d["cycles_amortized_all_engines"]
        .as_f64()
        .expect("amortized, all");
    assert!(latency > 1000, "{d}");
    assert!(one > 0.0 && one < latency as f64, "{d}");
    assert!(all > 0.0 && all <= one, "{d}");
    assert!(d["engines"].as_u64().expect("engines") >= 1, "{d}");
}
