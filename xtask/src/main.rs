//! Project tasks: regenerate the hardware/software contract, lint and synthesize the RTL.
//!
//! `cargo xtask regen [--check]` renders `hw/bpu.toml` into `rtl/generated/bpu_defs.svh`,
//! `driver/src/regs.rs` and `docs/regs.md`; with `--check` it writes nothing and fails when any
//! of them differs from what it would write. `cargo xtask lint` runs Verilator's lint over the
//! RTL, once with `bpu_top` as the top and once per module not yet under it (`EXTRA_LINT_TOPS`);
//! `cargo xtask synth` runs Yosys (`hw/synth/`) and prints the area report.

mod gen;
mod spec;
mod ucode;
mod ucode_emu;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Parser)]
#[command(about = "bpu project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Regenerate files derived from hw/bpu.toml.
    Regen {
        /// Write nothing; fail if any generated file is stale.
        #[arg(long)]
        check: bool,
    },
    /// Lint all RTL with `verilator --lint-only -Wall` (top bpu_top, then each extra top).
    Lint,
    /// Synthesize RTL with Yosys and print LUT/FF/DSP/BRAM counts.
    Synth {
        /// Top module to synthesize (bpu_top, or an engine such as sha256_engine).
        #[arg(long, default_value = "bpu_top")]
        top: String,
        /// Modules to keep as black boxes (synthesized and reported on their own), e.g.
        /// `--blackbox ecdsa_engine` for the top level around the engines.
        #[arg(long)]
        blackbox: Vec<String>,
    },
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = root();
    match cli.cmd {
        Cmd::Regen { check } => regen(&root, check),
        Cmd::Lint => lint(&root),
        Cmd::Synth { top, blackbox } => synth(&root, &top, &blackbox),
    }
}

fn rustfmt(src: &str) -> Result<String> {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running rustfmt (install it with `rustup component add rustfmt`)")?;
    child
        .stdin
        .take()
        .context("rustfmt stdin")?
        .write_all(src.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("rustfmt rejected the generated Rust");
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn regen(root: &Path, check: bool) -> Result<()> {
    let spec = spec::Spec::load(&root.join("hw/bpu.toml"))?;
    let outputs = [
        ("rtl/generated/bpu_defs.svh", gen::verilog(&spec)),
        ("driver/src/regs.rs", rustfmt(&gen::rust(&spec))?),
        ("docs/regs.md", gen::markdown(&spec)),
        ("rtl/generated/ecdsa_ucode.svh", ecdsa_rom(root)?),
    ];
    let mut stale = Vec::new();
    for (rel, text) in &outputs {
        let path = root.join(rel);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == *text {
            continue;
        }
        if check {
            stale.push(*rel);
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {rel}"))?;
            println!("wrote {rel}");
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated files are stale: {}\nrun `cargo xtask regen` and commit the result",
            stale.join(", ")
        );
    }
    if check {
        println!("generated files are up to date");
    }
    Ok(())
}

/// The ECDSA engine's microcode ROM, assembled from `hw/ecdsa_p256.uasm`.
fn ecdsa_rom(root: &Path) -> Result<String> {
    let src = std::fs::read_to_string(root.join("hw/ecdsa_p256.uasm"))
        .context("reading hw/ecdsa_p256.uasm")?;
    let prog = ucode::assemble(&src).context("assembling hw/ecdsa_p256.uasm")?;
    Ok(ucode::verilog(&prog, &ucode_emu::Consts::p256()))
}

/// Every RTL source, in a stable order (generated headers are included, not listed).
pub fn rtl_sources(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in ["rtl/common", "rtl/host", "rtl/crypto", "rtl/kv", "rtl"] {
        let mut here: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .with_context(|| format!("reading {dir}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sv"))
            .collect();
        here.sort();
        files.extend(here);
    }
    Ok(files)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

/// Modules linted as tops of their own besides `bpu_top`: blocks not (yet) instantiated under it,
/// which a lint of `bpu_top` alone would skip.
const EXTRA_LINT_TOPS: &[&str] = &["blake3_hasher", "lthash_unit"];

fn lint(root: &Path) -> Result<()> {
    let files = rtl_sources(root)?;
    for top in std::iter::once("bpu_top").chain(EXTRA_LINT_TOPS.iter().copied()) {
        let mut cmd = Command::new("verilator");
        cmd.current_dir(root)
            .args([
                "--lint-only",
                "-Wall",
                "-Irtl/generated",
                "--top-module",
                top,
            ])
            .arg("rtl/lint/waivers.vlt")
            .args(&files);
        run(&mut cmd).with_context(|| format!("lint with top module {top}"))?;
    }
    println!(
        "verilator lint: clean ({} files; tops bpu_top, {})",
        files.len(),
        EXTRA_LINT_TOPS.join(", ")
    );
    Ok(())
}

fn synth(root: &Path, top: &str, blackbox: &[String]) -> Result<()> {
    let files = rtl_sources(root)?;
    let out = root.join("target/synth");
    std::fs::create_dir_all(&out)?;
    let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let script = format!(
        "read_verilog -sv -I{inc} {files}\n\
         {boxes}\
         hierarchy -check -top {top}\n\
         synth_xilinx -family xcup -top {top} -flatten -noiopad\n\
         tee -o {stat} stat\n",
        inc = root.join("rtl/generated").display(),
        files = list.join(" "),
        boxes = blackbox
            .iter()
            .map(|m| format!("blackbox {m}\n"))
            .collect::<String>(),
        stat = out.join(format!("{top}.stat")).display(),
    );
    let ys = out.join(format!("{top}.ys"));
    std::fs::write(&ys, script)?;
    let log = out.join(format!("{top}.log"));
    let mut cmd = Command::new("yosys");
    cmd.arg("-q").arg("-l").arg(&log).arg("-s").arg(&ys);
    run(&mut cmd).with_context(|| format!("see {}", log.display()))?;
    let stat = std::fs::read_to_string(out.join(format!("{top}.stat")))?;
    let area = Area::from_stat(&stat);
    println!("{top}: {area}");
    std::fs::write(out.join(format!("{top}.json")), area.json())?;
    Ok(())
}

/// Resource counts from a `synth_xilinx` cell report.
#[derive(Default, Debug)]
struct Area {
    luts: u64,
    ffs: u64,
    dsps: u64,
    bram: u64,
    carry: u64,
}

impl Area {
    fn from_stat(stat: &str) -> Area {
        let mut a = Area::default();
        for line in stat.lines() {
            let mut it = line.split_whitespace();
            let (Some(cell), Some(n)) = (it.next(), it.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match cell {
                c if c.starts_with("LUT") => a.luts += n,
                c if c.starts_with("FD") => a.ffs += n,
                c if c.starts_with("DSP48") => a.dsps += n,
                c if c.starts_with("RAMB") => a.bram += n,
                c if c.starts_with("RAM") => a.luts += n, // LUTRAM primitives
                c if c.starts_with("CARRY") => a.carry += n,
                c if c.starts_with("SRL") => a.luts += n,
                c if c.starts_with("MUXF") => {}
                _ => {}
            }
        }
        a
    }

    fn json(&self) -> String {
        format!(
            "{{\"luts\":{},\"ffs\":{},\"dsps\":{},\"bram\":{},\"carry\":{}}}\n",
            self.luts, self.ffs, self.dsps, self.bram, self.carry
        )
    }
}

impl std::fmt::Display for Area {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LUT {} FF {} DSP {} BRAM {} CARRY {}",
            self.luts, self.ffs, self.dsps, self.bram, self.carry
        )
    }
}
