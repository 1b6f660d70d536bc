//! Verilates rtl/bpu_top.sv, rtl/crypto/blake3_hasher.sv and rtl/kv/lthash_unit.sv and compiles the
//! models, the Verilator runtime and the C++ shims.
//!
//! Build parameters (environment): BPU_SIM_SHA (SHA-256 instances, default 4), BPU_SIM_ECDSA
//! (ECDSA P-256 instances, default 2), BPU_SIM_NQ (queue
//! pairs, default 4), BPU_SIM_DW (DMA width in bits, default 128). The Verilator runtime library
//! is compiled once per OUT_DIR and reused; the model is rebuilt when anything under rtl/ changes.
//! Flags follow shared/DESIGN.md section 4: `--no-timing -O3 --x-assign fast --x-initial fast`, C++ at
//! -O2 (-O3 measured no faster) plus `-fno-tree-pre` where the compiler has it, without debug info
//! even in dev builds, never `--threads` (2 cores).
//!
//! The second, standalone model is the BLAKE3 hasher alone (`Vblake3_hasher`, `csrc/blake3_shim.cpp`,
//! driven by `src/blake3.rs`), built with MAX_DEPTH = `BLAKE3_MAX_DEPTH` and sharing the runtime.
//! The third is the KV engine's LtHash16 unit alone (`Vlthash_unit`, `csrc/lthash_shim.cpp`,
//! driven by `src/lthash.rs`), built with MAX_DEPTH = `LTHASH_MAX_DEPTH`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// MAX_DEPTH of the standalone BLAKE3 hasher model: inputs up to 2^(16+10) - 1 bytes.
const BLAKE3_MAX_DEPTH: u32 = 16;
/// OB_W of that model: up to 2^16 - 1 output blocks per job.
const BLAKE3_OB_W: u32 = 16;
/// MAX_DEPTH of the standalone LtHash16 unit model (its default): encodings up to 2^25 - 1 bytes.
const LTHASH_MAX_DEPTH: u32 = 15;

fn param(name: &str, default: u32) -> u32 {
    println!("cargo:rerun-if-env-changed={name}");
    match env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

fn rtl_sources(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["rtl/common", "rtl/host", "rtl/crypto", "rtl/kv", "rtl"] {
        let Ok(rd) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut here: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sv"))
            .collect();
        here.sort();
        files.extend(here);
    }
    files
}

/// FNV-1a over the RTL sources and parameters: the BUILD_ID register value.
fn build_id(files: &[PathBuf], params: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    for f in files {
        eat(&fs::read(f).unwrap_or_default());
    }
    eat(params.as_bytes());
    h
}

/// The model's C++ files, as Verilator lists them in V<top>_classes.mk (classes and support).
fn model_sources(obj: &Path, prefix: &str) -> Vec<PathBuf> {
    let mk = fs::read_to_string(obj.join(format!("{prefix}_classes.mk")))
        .expect("Verilator did not write its _classes.mk");
    let mut out = Vec::new();
    let mut in_list = false;
    for line in mk.lines() {
        let t = line.trim();
        if [
            "VM_CLASSES_FAST",
            "VM_CLASSES_SLOW",
            "VM_SUPPORT_FAST",
            "VM_SUPPORT_SLOW",
        ]
        .iter()
        .any(|k| t.starts_with(k))
        {
            in_list = true;
            continue;
        }
        if in_list {
            if t.is_empty() || !t.ends_with('\\') && t.contains('=') {
                in_list = false;
                continue;
            }
            let name = t.trim_end_matches('\\').trim();
            if !name.is_empty() {
                out.push(obj.join(format!("{name}.cpp")));
            }
            if !t.ends_with('\\') {
                in_list = false;
            }
        }
    }
    out
}

fn verilator_root() -> PathBuf {
    if let Ok(r) = env::var("VERILATOR_ROOT") {
        return PathBuf::from(r);
    }
    let out = Command::new("verilator")
        .arg("--getenv")
        .arg("VERILATOR_ROOT")
        .output()
        .expect("verilator not found: run `ci/setup.sh` (or apt-get install verilator)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("sim/ has a parent").to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let sha = param("BPU_SIM_SHA", 4);
    let ecdsa = param("BPU_SIM_ECDSA", 2);
    let nq = param("BPU_SIM_NQ", 4);
    let dw = param("BPU_SIM_DW", 128);
    println!("cargo:rerun-if-changed=../rtl");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=build.rs");

    let files = rtl_sources(&root);
    let params = format!("SHA_N={sha} ECDSA_N={ecdsa} NQ={nq} DW={dw}");
    let id = build_id(&files, &params);
    let obj = out.join("vobj");
    let _ = fs::remove_dir_all(&obj);
    fs::create_dir_all(&obj).expect("create vobj");
    let prefix = "Vbpu_top";
    let status = Command::new("verilator")
        .args([
            "--cc",
            "--no-timing",
            "-O3",
            "--x-assign",
            "fast",
            "--x-initial",
            "fast",
        ])
        .args(["-Wno-fatal", "-Wno-lint", "-Wno-style"])
        .args(["--top-module", "bpu_top", "--prefix", prefix])
        .arg(format!("-GSHA_N={sha}"))
        .arg(format!("-GECDSA_N={ecdsa}"))
        .arg(format!("-GNQ={nq}"))
        .arg(format!("-GDW={dw}"))
        .arg(format!("-GBUILD_ID=32'h{id:08x}"))
        .arg(format!("-I{}", root.join("rtl/generated").display()))
        .arg("--Mdir")
        .arg(&obj)
        .args(&files)
        .status()
        .expect("verilator not found: run `ci/setup.sh` (or apt-get install verilator)");
    assert!(
        status.success(),
        "verilator failed on rtl/ (run `cargo xtask lint` for details)"
    );

    let vroot = verilator_root();
    let inc = vroot.join("include");

    // The Verilator runtime does not depend on the design: build it once per OUT_DIR.
    let rt_lib = out.join("libverilated_rt.a");
    if !rt_lib.exists() {
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .opt_level(2)
            .debug(false)
            .warnings(false)
            .include(&inc)
            .include(inc.join("vltstd"))
            .file(inc.join("verilated.cpp"))
            .file(inc.join("verilated_threads.cpp"))
            .cargo_metadata(false)
            .compile("verilated_rt");
    }

    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .debug(false)
        .warnings(false)
        .include(&inc)
        .include(inc.join("vltstd"))
        .include(&obj)
        // The model's evaluation is one very large function; GCC's partial redundancy elimination
        // lengthens live ranges across it and costs more than it saves (~9% faster without it).
        .flag_if_supported("-fno-tree-pre")
        .define("BPU_SIM_DW", Some(dw.to_string().as_str()))
        .define("BPU_SIM_NQ", Some(nq.to_string().as_str()))
        .define("VM_TRACE", Some("0"))
        .files(model_sources(&obj, prefix))
        .file(manifest.join("csrc/shim.cpp"))
        .compile("bpu_model");

    // The BLAKE3 hasher on its own, for its tests and benches (src/blake3.rs).
    let b3_params = [
        format!("-GMAX_DEPTH={BLAKE3_MAX_DEPTH}"),
        format!("-GOB_W={BLAKE3_OB_W}"),
    ];
    let unit = Unit {
        root: &root,
        out: &out,
        inc: &inc,
        manifest: &manifest,
        files: &files,
    };
    unit.build(
        "blake3_hasher",
        "Vblake3_hasher",
        &b3_params,
        "blake3_shim.cpp",
        "blake3_model",
    );
    // The LtHash16 unit of the KV engine on its own (src/lthash.rs), with its own hasher.
    let lt_params = [format!("-GMAX_DEPTH={LTHASH_MAX_DEPTH}")];
    unit.build(
        "lthash_unit",
        "Vlthash_unit",
        &lt_params,
        "lthash_shim.cpp",
        "lthash_model",
    );
    // After the model, so the linker resolves the model's references into the runtime.
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=verilated_rt");
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rustc-link-lib=pthread");
    println!("cargo:rustc-env=BPU_SIM_BUILD_ID={id:08x}");
    println!("cargo:rustc-env=BPU_SIM_PARAMS={params}");
    println!("cargo:rustc-env=BPU_SIM_BLAKE3_MAX_DEPTH={BLAKE3_MAX_DEPTH}");
    println!("cargo:rustc-env=BPU_SIM_BLAKE3_OB_W={BLAKE3_OB_W}");
    println!("cargo:rustc-env=BPU_SIM_LTHASH_MAX_DEPTH={LTHASH_MAX_DEPTH}");
}

/// Where a standalone unit model is built from.
struct Unit<'a> {
    root: &'a Path,
    out: &'a Path,
    inc: &'a Path,
    manifest: &'a Path,
    files: &'a [PathBuf],
}

impl Unit<'_> {
    /// Verilates module `top` alone (with `-G` parameters) as `prefix` and compiles it with its
    /// shim `csrc/<shim>` into the static library `lib`.
    fn build(&self, top: &str, prefix: &str, params: &[String], shim: &str, lib: &str) {
        let obj = self.out.join(format!("vobj_{top}"));
        let _ = fs::remove_dir_all(&obj);
        fs::create_dir_all(&obj).expect("create the unit's object directory");
        let status = Command::new("verilator")
            .args([
                "--cc",
                "--no-timing",
                "-O3",
                "--x-assign",
                "fast",
                "--x-initial",
                "fast",
            ])
            .args(["-Wno-fatal", "-Wno-lint", "-Wno-style"])
            .args(["--top-module", top, "--prefix", prefix])
            .args(params)
            .arg(format!("-I{}", self.root.join("rtl/generated").display()))
            .arg("--Mdir")
            .arg(&obj)
            .args(self.files)
            .status()
            .expect("verilator not found: run `ci/setup.sh` (or apt-get install verilator)");
        assert!(
            status.success(),
            "verilator failed on {top} (run `cargo xtask lint` for details)"
        );
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .opt_level(2)
            .debug(false)
            .warnings(false)
            .include(self.inc)
            .include(self.inc.join("vltstd"))
            .include(&obj)
            .flag_if_supported("-fno-tree-pre")
            .define("VM_TRACE", Some("0"))
            .files(model_sources(&obj, prefix))
            .file(self.manifest.join("csrc").join(shim))
            .compile(lib);
    }
}
