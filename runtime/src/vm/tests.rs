//! Unit tests of the VM: per-instruction-group semantics, traps, gas and the loaders.

use super::*;

// ---- a tiny encoder for the base formats ----

fn r(f7: u32, rs2: u8, rs1: u8, f3: u32, rd: u8, op: u32) -> u32 {
    f7 << 25 | u32::from(rs2) << 20 | u32::from(rs1) << 15 | f3 << 12 | u32::from(rd) << 7 | op
}
fn i(imm: i32, rs1: u8, f3: u32, rd: u8, op: u32) -> u32 {
    (imm as u32 & 0xfff) << 20 | u32::from(rs1) << 15 | f3 << 12 | u32::from(rd) << 7 | op
}
fn s(imm: i32, rs2: u8, rs1: u8, f3: u32) -> u32 {
    let imm = imm as u32;
    (imm >> 5 & 0x7f) << 25
        | u32::from(rs2) << 20
        | u32::from(rs1) << 15
        | f3 << 12
        | (imm & 0x1f) << 7
        | 0x23
}
fn b(imm: i32, rs2: u8, rs1: u8, f3: u32) -> u32 {
    let imm = imm as u32;
    (imm >> 12 & 1) << 31
        | (imm >> 5 & 0x3f) << 25
        | u32::from(rs2) << 20
        | u32::from(rs1) << 15
        | f3 << 12
        | (imm >> 1 & 0xf) << 8
        | (imm >> 11 & 1) << 7
        | 0x63
}
fn u(imm: u32, rd: u8, op: u32) -> u32 {
    imm & 0xffff_f000 | u32::from(rd) << 7 | op
}
fn j(imm: i32, rd: u8) -> u32 {
    let imm = imm as u32;
    (imm >> 20 & 1) << 31
        | (imm >> 1 & 0x3ff) << 21
        | (imm >> 11 & 1) << 20
        | (imm >> 12 & 0xff) << 12
        | u32::from(rd) << 7
        | 0x6f
}
fn addi(rd: u8, rs1: u8, imm: i32) -> u32 {
    i(imm, rs1, 0, rd, 0x13)
}
const ECALL: u32 = 0x73;
const EBREAK: u32 = 0x0010_0073;

/// `code` followed by `exit(a0)`, loaded at 0 with 64 KiB of memory.
fn program(code: &[u32]) -> Vec<u8> {
    let mut words = code.to_vec();
    words.extend([addi(reg::A7, 0, 93), ECALL]);
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn machine(code: &[u32], gas_limit: u64) -> Machine {
    let image = Image::flat(&program(code), 0).expect("vm test setup");
    Machine::new(
        Config {
            mem_size: 1 << 16,
            gas_limit,
        },
        &image,
    )
    .expect("vm test setup")
}

/// Runs `code` with registers preset by `regs`, expecting a normal exit.
fn exec(regs: &[(u8, u32)], code: &[u32]) -> Machine {
    let mut m = machine(code, 1_000_000);
    for &(r, v) in regs {
        m.set_reg(r, v);
    }
    m.run(&mut BasicHost::default()).expect("vm test setup");
    m
}

/// Runs `code`, expecting a trap.
fn trap(code: &[u32]) -> Trap {
    machine(code, 1_000_000)
        .run(&mut BasicHost::default())
        .expect_err("a trap")
}

const EDGES: [u32; 12] = [
    0,
    1,
    2,
    31,
    32,
    0x80,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0xffff_fffe,
    0x1234_5678,
    0xdead_beef,
];

// ---- ALU ----

#[test]
fn register_ops_match_rust() {
    type Ref = fn(u32, u32) -> u32;
    let cases: [(u32, u32, Ref); 18] = [
        (0, 0, |a, b| a.wrapping_add(b)),
        (0x20, 0, |a, b| a.wrapping_sub(b)),
        (0, 1, |a, b| a.wrapping_shl(b)),
        (0, 2, |a, b| u32::from((a as i32) < (b as i32))),
        (0, 3, |a, b| u32::from(a < b)),
        (0, 4, |a, b| a ^ b),
        (0, 5, |a, b| a.wrapping_shr(b)),
        (0x20, 5, |a, b| (a as i32).wrapping_shr(b) as u32),
        (0, 6, |a, b| a | b),
        (0, 7, |a, b| a & b),
        (1, 0, |a, b| (i128::from(a) * i128::from(b)) as u32),
        (1, 1, |a, b| {
            ((i128::from(a as i32) * i128::from(b as i32)) >> 32) as u32
        }),
        (1, 2, |a, b| {
            ((i128::from(a as i32) * i128::from(b)) >> 32) as u32
        }),
        (1, 3, |a, b| ((i128::from(a) * i128::from(b)) >> 32) as u32),
        (1, 4, |a, b| match (a as i32, b as i32) {
            (_, 0) => u32::MAX,
            (i32::MIN, -1) => a,
            (x, y) => (x / y) as u32,
        }),
        (1, 5, |a, b| match b {
            0 => u32::MAX,
            _ => a / b,
        }),
        (1, 6, |a, b| match (a as i32, b as i32) {
            (_, 0) => a,
            (i32::MIN, -1) => 0,
            (x, y) => (x % y) as u32,
        }),
        (1, 7, |a, b| if b == 0 { a } else { a % b }),
    ];
    for (f7, f3, reference) in cases {
        for a in EDGES {
            for bv in EDGES {
                let m = exec(&[(5, a), (6, bv)], &[r(f7, 6, 5, f3, 7, 0x33)]);
                assert_eq!(
                    m.reg(7),
                    reference(a, bv),
                    "f7={f7} f3={f3} a={a:#x} b={bv:#x}"
                );
            }
        }
    }
}

#[test]
fn immediate_ops_sign_extend() {
    let v = 0x8000_0001u32;
    let m = exec(
        &[(5, v)],
        &[
            addi(6, 5, -1),
            i(-1, 5, 2, 7, 0x13),          // slti x7, x5, -1: MIN+1 < -1
            i(-1, 5, 3, 8, 0x13),          // sltiu x8, x5, -1: compares with 0xffffffff
            i(-1, 5, 4, 9, 0x13),          // xori -1 = not
            i(31, 5, 1, 10, 0x13),         // slli 31
            i(31, 5, 5, 11, 0x13),         // srli 31
            i(31 | 0x400, 5, 5, 12, 0x13), // srai 31
            i(0x7ff, 0, 6, 13, 0x13),      // ori x13, x0, 2047
            i(-2048, 5, 7, 14, 0x13),      // andi with 0xfffff800
        ],
    );
    assert_eq!(m.reg(6), v.wrapping_sub(1));
    assert_eq!(m.reg(7), 1);
    assert_eq!(m.reg(8), 1);
    assert_eq!(m.reg(9), !v);
    assert_eq!(m.reg(10), v << 31);
    assert_eq!(m.reg(11), 1);
    assert_eq!(m.reg(12), u32::MAX);
    assert_eq!(m.reg(13), 2047);
    assert_eq!(m.reg(14), v & 0xffff_f800);
}

#[test]
fn x0_stays_zero() {
    let m = exec(&[], &[addi(0, 0, 5), u(0x1000, 0, 0x37), addi(5, 0, 0)]);
    assert_eq!(m.reg(0), 0);
    assert_eq!(m.reg(5), 0);
}

#[test]
fn lui_and_auipc() {
    let m = exec(
        &[],
        &[
            u(0xfedc_b000, 5, 0x37),
            addi(0, 0, 0),
            u(0x0000_3000, 6, 0x17),
        ],
    );
    assert_eq!(m.reg(5), 0xfedc_b000);
    assert_eq!(m.reg(6), 8 + 0x3000);
}

// ---- control flow ----

#[test]
fn jal_and_jalr_link_and_clear_bit_zero() {
    // 0: jal x1, +8; 4: addi x5, x0, 1 (skipped); 8: addi x6, x0, 25 (target 25 -> 24);
    // 12: jalr x7, 0(x6); 16..20 skipped; 24: continue to exit.
    let m = exec(
        &[],
        &[
            j(8, 1),
            addi(5, 0, 1),
            addi(6, 0, 25),
            i(0, 6, 0, 7, 0x67),
            addi(5, 0, 2),
            addi(5, 0, 3),
        ],
    );
    assert_eq!(m.reg(1), 4);
    assert_eq!(m.reg(5), 0);
    assert_eq!(m.reg(7), 16);
    assert_eq!(m.pc(), 28, "stopped at the exit ecall");
}

#[test]
fn branches_signed_and_unsigned() {
    type Taken = fn(u32, u32) -> bool;
    let cases: [(u32, Taken); 6] = [
        (0, |a, b| a == b),
        (1, |a, b| a != b),
        (4, |a, b| (a as i32) < (b as i32)),
        (5, |a, b| (a as i32) >= (b as i32)),
        (6, |a, b| a < b),
        (7, |a, b| a >= b),
    ];
    for (f3, taken) in cases {
        for a in EDGES {
            for bv in [0, 1, 0x8000_0000, 0xffff_ffff] {
                // branch +8 over `addi x7, x0, 1`
                let m = exec(&[(5, a), (6, bv)], &[b(8, 6, 5, f3), addi(7, 0, 1)]);
                assert_eq!(m.reg(7) == 0, taken(a, bv), "f3={f3} a={a:#x} b={bv:#x}");
            }
        }
    }
    // a backward branch: count down from 3
    let m = exec(&[(5, 3)], &[addi(6, 6, 1), addi(5, 5, -1), b(-8, 0, 5, 1)]);
    assert_eq!(m.reg(6), 3);
}

// ---- memory ----

#[test]
fn loads_and_stores_little_endian_with_sign_extension() {
    let base = 0x8000;
    let m = exec(
        &[(5, base), (6, 0x8081_f2f3)],
        &[
            s(0, 6, 5, 2),         // sw
            i(0, 5, 0, 7, 0x03),   // lb  0xf3
            i(0, 5, 4, 8, 0x03),   // lbu
            i(0, 5, 1, 9, 0x03),   // lh  0xf2f3
            i(0, 5, 5, 10, 0x03),  // lhu
            i(2, 5, 1, 11, 0x03),  // lh  0x8081
            i(1, 5, 2, 12, 0x03),  // lw misaligned: bytes f2 81 80 00
            s(4, 6, 5, 0),         // sb at +4
            s(6, 6, 5, 1),         // sh at +6
            i(4, 5, 2, 13, 0x03),  // lw +4
            i(-4, 5, 2, 14, 0x03), // lw -4 (zero)
        ],
    );
    assert_eq!(m.reg(7), 0xffff_fff3);
    assert_eq!(m.reg(8), 0xf3);
    assert_eq!(m.reg(9), 0xffff_f2f3);
    assert_eq!(m.reg(10), 0xf2f3);
    assert_eq!(m.reg(11), 0xffff_8081);
    assert_eq!(m.reg(12), 0x0080_81f2);
    assert_eq!(m.reg(13), 0xf2f3_00f3);
    assert_eq!(m.reg(14), 0);
    assert_eq!(
        m.read_bytes(base, 4).expect("vm test setup"),
        &[0xf3, 0xf2, 0x81, 0x80]
    );
}

#[test]
fn stack_pointer_starts_at_top() {
    let m = machine(&[], 10);
    assert_eq!(m.reg(reg::SP), 1 << 16);
}

// ---- traps ----

#[test]
fn out_of_range_accesses_fault() {
    let top = 1u32 << 16;
    let mut m = machine(&[i(0, 5, 2, 6, 0x03)], 100);
    m.set_reg(5, top - 3);
    assert_eq!(
        m.run(&mut BasicHost::default()),
        Err(Trap::MemoryFault {
            pc: 0,
            addr: top - 3,
            len: 4
        })
    );

    let mut m = machine(&[addi(0, 0, 0), s(0, 6, 5, 1)], 100);
    m.set_reg(5, u32::MAX);
    assert_eq!(
        m.run(&mut BasicHost::default()),
        Err(Trap::MemoryFault {
            pc: 4,
            addr: u32::MAX,
            len: 2
        })
    );

    // a byte load at the very last address works
    let m = exec(&[(5, top - 1)], &[i(0, 5, 0, 6, 0x03)]);
    assert_eq!(m.reg(6), 0);

    // fetch past the end of memory
    let mut m = machine(&[i(0, 5, 0, 0, 0x67)], 100);
    m.set_reg(5, top);
    assert_eq!(
        m.run(&mut BasicHost::default()),
        Err(Trap::MemoryFault {
            pc: top,
            addr: top,
            len: 4
        })
    );
}

#[test]
fn misaligned_fetch_traps() {
    assert_eq!(
        trap(&[addi(5, 0, 6), i(0, 5, 0, 0, 0x67)]),
        Trap::MisalignedFetch { pc: 6 }
    );
    assert_eq!(trap(&[j(2, 0)]), Trap::MisalignedFetch { pc: 2 });
}

#[test]
fn illegal_encodings_trap() {
    for word in [
        0x0000_0000,
        0xffff_ffff,
        r(0x20, 1, 1, 1, 1, 0x33), // no SUB-like variant of SLL
        r(2, 1, 1, 0, 1, 0x33),    // unknown funct7
        i(32, 1, 1, 1, 0x13),      // slli with shamt[5] set (RV64 only)
        i(0, 1, 3, 1, 0x03),       // ld (RV64)
        s(0, 1, 1, 3),             // sd (RV64)
        b(8, 1, 1, 2),             // no branch funct3 2
        i(0, 1, 1, 1, 0x67),       // jalr with funct3 1
        0x0000_100f,               // fence.i (Zifencei)
        0x3000_2073,               // csrr mstatus
        0x1050_0073,               // wfi
    ] {
        assert_eq!(
            trap(&[addi(0, 0, 0), word]),
            Trap::IllegalInstruction { pc: 4, word },
            "{word:#x}"
        );
    }
}

#[test]
fn ebreak_and_unknown_syscall_trap() {
    assert_eq!(trap(&[addi(0, 0, 0), EBREAK]), Trap::Ebreak { pc: 4 });
    assert_eq!(
        trap(&[addi(17, 0, 1000), ECALL]),
        Trap::UnknownSyscall {
            pc: 4,
            number: 1000
        }
    );
}

#[test]
fn fence_is_a_no_op() {
    let m = exec(&[(5, 9)], &[0x0ff0_000f, addi(6, 5, 1)]);
    assert_eq!(m.reg(6), 10);
}

#[test]
fn store_to_read_only_segment_faults() {
    let code = program(&[s(0, 5, 0, 2)]);
    let len = code.len() as u32;
    let image = Image {
        entry: 0,
        segments: vec![Segment {
            addr: 0,
            data: code,
            mem_size: len,
            writable: false,
        }],
    };
    let mut m = Machine::new(
        Config {
            mem_size: 4096,
            gas_limit: 100,
        },
        &image,
    )
    .expect("vm test setup");
    assert_eq!(
        m.run(&mut BasicHost::default()),
        Err(Trap::MemoryFault {
            pc: 0,
            addr: 0,
            len: 4
        })
    );
}

// ---- gas ----

#[test]
fn endless_loop_runs_out_of_gas_identically() {
    let run = || {
        let mut m = machine(&[addi(5, 5, 1), j(-4, 0)], 1001);
        let t = m.run(&mut BasicHost::default());
        (t, m.gas_used(), m.reg(5))
    };
    let first = run();
    // each iteration costs BASE + JUMP; the remainder cannot pay for the next instruction
    let per = gas::BASE + gas::JUMP;
    let iterations = 1001 / per;
    let mut expect_gas = iterations * per;
    if 1001 - expect_gas >= gas::BASE {
        expect_gas += gas::BASE;
    }
    assert_eq!(first.0, Err(Trap::OutOfGas));
    assert_eq!(first.1, expect_gas);
    assert!(first.1 <= 1001);
    assert_eq!(first, run());
}

#[test]
fn gas_is_the_sum_of_the_table() {
    let code = [
        addi(5, 0, 7),
        r(1, 5, 5, 0, 6, 0x33), // mul
        r(1, 5, 6, 4, 7, 0x33), // div
        s(0x100, 6, 0, 2),      // sw
        b(4, 0, 0, 0),          // beq (taken, to next)
    ];
    let m = exec(&[], &code);
    let exit = gas::BASE + gas::ECALL;
    assert_eq!(
        m.gas_used(),
        gas::BASE + gas::MUL + gas::DIV + gas::MEMORY + gas::JUMP + exit
    );
    // with one unit less the exit ecall cannot be paid
    let mut m = machine(&code, m.gas_used() - 1);
    assert_eq!(m.run(&mut BasicHost::default()), Err(Trap::OutOfGas));
    assert_eq!(
        m.gas_used(),
        gas::BASE * 2 + gas::MUL + gas::DIV + gas::MEMORY + gas::JUMP
    );
}

// ---- syscalls ----

#[test]
fn exit_code_and_write_syscall() {
    let msg = b"hi!\n";
    let mut code = vec![u(0x1000, 11, 0x37)];
    for (k, &c) in msg.iter().enumerate() {
        code.extend([addi(5, 0, i32::from(c)), s(k as i32, 5, 11, 0)]);
    }
    code.extend([
        addi(10, 0, 1),
        addi(12, 0, 4),
        addi(17, 0, 64),
        ECALL,
        addi(10, 10, 38),
    ]);
    let mut m = machine(&code, 10_000);
    let mut host = BasicHost::default();
    assert_eq!(m.run(&mut host), Ok(42));
    assert_eq!(host.output, msg);
}

// ---- loaders ----

#[test]
fn images_that_do_not_fit_are_rejected() {
    let image = Image::flat(&[0; 16], 4090).expect("vm test setup");
    assert_eq!(
        Machine::new(
            Config {
                mem_size: 4096,
                gas_limit: 1
            },
            &image
        )
        .expect_err("a trap"),
        LoadError::OutOfMemory {
            addr: 4090,
            len: 16
        }
    );
    let image = Image::flat(&[0; 16], u32::MAX - 4).expect("vm test setup");
    assert!(Machine::new(Config::default(), &image).is_err());
}

#[test]
fn malformed_elf_is_an_error_not_a_panic() {
    assert!(Image::elf(&[]).is_err());
    assert!(Image::elf(b"\x7fELF").is_err());
    assert!(Image::elf(&program(&[addi(5, 0, 1)])).is_err());
    let mut header = vec![0u8; 52];
    header[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    header[16] = 2; // ET_EXEC
    header[18] = 0xf3; // EM_RISCV
    header[20] = 1; // version
    assert_eq!(Image::elf(&header).map(|i| i.segments.len()), Ok(0));
    header[18] = 0x3e; // x86-64
    assert_eq!(Image::elf(&header), Err(LoadError::WrongKind));
    header[18] = 0xf3;
    header[28] = 52; // e_phoff
    header[42] = 32; // e_phentsize
    header[44] = 1; // e_phnum, but no program header follows
    assert!(matches!(Image::elf(&header), Err(LoadError::Elf(_))));
}

#[test]
fn random_words_and_mutated_elves_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let words: Vec<u32> = (0..64).map(|_| rng.gen()).collect();
        let mut m = machine(&words, 10_000);
        for k in [5u8, 6, 7] {
            m.set_reg(k, rng.gen());
        }
        let gas_limit = 10_000;
        if m.run(&mut BasicHost::default()).is_ok() {
            assert!(m.gas_used() <= gas_limit);
        }
    }
    let mut header = vec![0u8; 52 + 32];
    header[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    header[16] = 2;
    header[18] = 0xf3;
    header[20] = 1;
    header[28] = 52;
    header[42] = 32;
    header[44] = 1;
    header[52] = 1; // PT_LOAD
    for _ in 0..2000 {
        let mut elf = header.clone();
        for _ in 0..rng.gen_range(1..6) {
            let at = rng.gen_range(24..elf.len());
            elf[at] = rng.gen();
        }
        if let Ok(image) = Image::elf(&elf) {
            let _ = Machine::new(
                Config {
                    mem_size: 1 << 16,
                    gas_limit: 100,
                },
                &image,
            )
            .map(|mut m| m.run(&mut BasicHost::default()));
        }
    }
}

// ---- reuse ----

#[test]
fn reset_to_restores_every_written_page_and_runs_identically() {
    // Read-only code (the predecoded path) storing across pages, one store straddling two.
    let words = [
        u(0x1234_5000, 5, 0x37),
        u(0x1000, 6, 0x37),
        s(0, 5, 6, 2),
        u(0x6000, 6, 0x37),
        s(-2, 5, 6, 2),
        i(-2, 6, 2, reg::A0, 0x03), // a0 = lw 0x5ffe
        u(0x10000, 6, 0x37),
        s(-16, 5, 6, 2),
    ];
    let code = program(&words);
    let len = code.len() as u32;
    let image = Image {
        entry: 0,
        segments: vec![Segment {
            addr: 0,
            data: code,
            mem_size: len,
            writable: false,
        }],
    };
    let template = Machine::new(
        Config {
            mem_size: 1 << 16,
            gas_limit: 0,
        },
        &image,
    )
    .expect("vm test setup");
    let pristine = template
        .read_bytes(0, 1 << 16)
        .expect("vm test setup")
        .to_vec();
    let mut m = template.clone();
    m.reset_to(&template, 1000);
    let first = m.run(&mut BasicHost::default());
    assert_eq!(first, Ok(0x1234_5000));
    let (gas, instrs) = (m.gas_used(), m.instructions());
    assert_eq!(instrs, words.len() as u64 + 2);
    assert_ne!(m.read_bytes(0, 1 << 16).expect("in range"), &pristine[..]);
    m.reset_to(&template, 1000);
    assert_eq!(m.read_bytes(0, 1 << 16).expect("in range"), &pristine[..]);
    assert_eq!((m.gas_used(), m.instructions(), m.pc()), (0, 0, 0));
    assert_eq!(m.reg(reg::SP), 1 << 16);
    assert_eq!(m.run(&mut BasicHost::default()), first);
    assert_eq!(m.gas_used(), gas);
    // A machine of another image is replaced by a full copy.
    let mut other = machine(&[addi(reg::A0, 0, 5)], 100);
    other.run(&mut BasicHost::default()).expect("vm test setup");
    other.reset_to(&template, 1000);
    assert_eq!(
        other.read_bytes(0, 1 << 16).expect("in range"),
        &pristine[..]
    );
    assert_eq!(other.run(&mut BasicHost::default()), first);
}
