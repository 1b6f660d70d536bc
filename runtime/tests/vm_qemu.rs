//! Differential test of the contract VM against `qemu-riscv32` on random RV32IM ALU programs.
//!
//! Each program sets x1..x31 to random values, runs random register/immediate/M-extension
//! instructions (destinations x1..x30), stores x0..x30 to memory, writes them to stdout (syscall
//! 64) and exits (93). The same ELF, built by clang and ld.lld, runs on qemu and on the VM; the
//! register dumps and exit codes must match. Needs clang, lld and qemu-user (`ci/setup.sh`).
//!
//! Compiled C programs (`contracts/tests/qemu/`: SHA-256, sorting, 64-bit and 256-bit
//! arithmetic, CRC, recursion, strings), built with the contract SDK by `contracts/build.sh`,
//! must also print the same bytes and exit with the same code on both.

mod common;

use bpu_runtime::vm::{BasicHost, Config, Image, Machine};
use common::contracts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const R_OPS: [&str; 18] = [
    "add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and", "mul", "mulh", "mulhsu",
    "mulhu", "div", "divu", "rem", "remu",
];
const I_OPS: [&str; 6] = ["addi", "slti", "sltiu", "xori", "ori", "andi"];
const SHIFT_OPS: [&str; 3] = ["slli", "srli", "srai"];
const EDGES: [u32; 8] = [
    0,
    1,
    31,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0xffff_fffe,
    32,
];

fn value(rng: &mut StdRng) -> u32 {
    if rng.gen_bool(0.3) {
        EDGES[rng.gen_range(0..EDGES.len())]
    } else {
        rng.gen()
    }
}

fn random_program(rng: &mut StdRng, len: usize) -> String {
    let mut s = String::from(".globl _start\n.text\n_start:\n");
    for r in 1..32 {
        let _ = writeln!(s, "  li x{r}, {}", value(rng) as i32);
    }
    for _ in 0..len {
        let rd = rng.gen_range(1..31);
        let (a, b) = (rng.gen_range(0..32), rng.gen_range(0..32));
        let _ = match rng.gen_range(0..10) {
            0..=5 => writeln!(
                s,
                "  {} x{rd}, x{a}, x{b}",
                R_OPS[rng.gen_range(0..R_OPS.len())]
            ),
            6 | 7 => {
                let op = I_OPS[rng.gen_range(0..I_OPS.len())];
                writeln!(s, "  {op} x{rd}, x{a}, {}", rng.gen_range(-2048..2048))
            }
            8 => {
                let op = SHIFT_OPS[rng.gen_range(0..SHIFT_OPS.len())];
                writeln!(s, "  {op} x{rd}, x{a}, {}", rng.gen_range(0..32))
            }
            _ => {
                let op = if rng.gen() { "lui" } else { "auipc" };
                writeln!(s, "  {op} x{rd}, {}", rng.gen_range(0..1 << 20))
            }
        };
    }
    s.push_str("  la x31, buf\n");
    for r in 0..31 {
        let _ = writeln!(s, "  sw x{r}, {}(x31)", 4 * r);
    }
    s.push_str("  li a0, 1\n  mv a1, x31\n  li a2, 124\n  li a7, 64\n  ecall\n");
    let _ = writeln!(
        s,
        "  li a0, {}\n  li a7, 93\n  ecall",
        rng.gen_range(0..128)
    );
    s.push_str(".data\nbuf: .space 128\n");
    s
}

fn build(dir: &Path, asm: &str) -> Vec<u8> {
    let (src, elf) = (dir.join("p.S"), dir.join("p.elf"));
    std::fs::write(&src, asm).expect("write the program");
    let status = Command::new("clang")
        .args([
            "--target=riscv32-unknown-elf",
            "-march=rv32im",
            "-nostdlib",
            "-static",
        ])
        .args(["-fuse-ld=lld", "-Wl,-Ttext=0x10000", "-o"])
        .arg(&elf)
        .arg(&src)
        .status()
        .expect("clang (install with ci/setup.sh)");
    assert!(status.success(), "clang failed on:\n{asm}");
    std::fs::read(&elf).expect("read the ELF")
}

#[test]
fn vm_matches_qemu_on_random_alu_programs() {
    let dir = std::env::temp_dir().join(format!("bpu-vm-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for seed in 0..24u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let asm = random_program(&mut rng, 200);
        let elf = build(&dir, &asm);

        let out = Command::new("qemu-riscv32")
            .arg(dir.join("p.elf"))
            .output()
            .expect("qemu-riscv32 (install with ci/setup.sh)");

        let image = Image::elf(&elf).expect("clang's ELF loads");
        let mut vm = Machine::new(Config::default(), &image).expect("image fits");
        let mut host = BasicHost::default();
        let code = vm.run(&mut host).expect("the VM exits");

        assert_eq!(out.stdout.len(), 124, "seed {seed}: qemu output");
        assert_eq!(
            host.output, out.stdout,
            "seed {seed}: register dumps differ\n{asm}"
        );
        assert_eq!(
            Some(code as i32),
            out.status.code(),
            "seed {seed}: exit code"
        );
    }
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

/// The pure C programs of `contracts/tests/qemu/`.
const C_PROGRAMS: [&str; 6] = ["sha256", "sort", "bignum", "crc32", "fib", "strings"];

#[test]
fn vm_matches_qemu_on_compiled_c_programs() {
    for name in C_PROGRAMS {
        let path = contracts::path(&format!("tests/qemu/{name}"));
        let out = Command::new("qemu-riscv32")
            .arg(&path)
            .output()
            .expect("qemu-riscv32 (install with ci/setup.sh)");
        let elf = std::fs::read(&path).expect("read the ELF");
        let image = Image::elf(&elf).expect("clang's ELF loads");
        let config = Config {
            gas_limit: 1 << 34,
            ..Config::default()
        };
        let mut vm = Machine::new(config, &image).expect("image fits");
        let mut host = BasicHost::default();
        let code = vm.run(&mut host).expect("the VM exits");
        assert!(
            out.stdout.len() > 20,
            "{name}: qemu printed too little: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            String::from_utf8_lossy(&host.output),
            String::from_utf8_lossy(&out.stdout),
            "{name}: output differs"
        );
        assert_eq!(Some(code as i32), out.status.code(), "{name}: exit code");
        if name == "sha256" {
            // Known answers, independently of both machines.
            use sha2::{Digest, Sha256};
            let text = String::from_utf8_lossy(&host.output).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], hex::encode(Sha256::digest(b"abc")));
            assert_eq!(lines[1], hex::encode(Sha256::digest(b"")));
            let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
            for (k, len) in (50..=1000).step_by(95).enumerate() {
                assert_eq!(lines[2 + k], hex::encode(Sha256::digest(&data[..len])));
            }
        }
    }
}
