//! RV32IM instruction decoding: one 32-bit word into a typed [`Instr`], or `None` if illegal.

/// Register-register and register-immediate operations (M extension included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
}

/// Conditional branch comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchOp {
    Eq,
    Ne,
    Lt,
    Ge,
    Ltu,
    Geu,
}

/// A decoded instruction; register fields are 0..=31, immediates are sign-extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instr {
    Lui {
        rd: u8,
        imm: u32,
    },
    Auipc {
        rd: u8,
        imm: u32,
    },
    Jal {
        rd: u8,
        imm: i32,
    },
    Jalr {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Branch {
        op: BranchOp,
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    /// `len` is 1, 2 or 4 bytes; `signed` selects sign extension of narrower loads.
    Load {
        rd: u8,
        rs1: u8,
        imm: i32,
        len: u8,
        signed: bool,
    },
    Store {
        rs1: u8,
        rs2: u8,
        imm: i32,
        len: u8,
    },
    OpImm {
        op: AluOp,
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Op {
        op: AluOp,
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Fence,
    Ecall,
    Ebreak,
}

fn rd(w: u32) -> u8 {
    ((w >> 7) & 31) as u8
}
fn rs1(w: u32) -> u8 {
    ((w >> 15) & 31) as u8
}
fn rs2(w: u32) -> u8 {
    ((w >> 20) & 31) as u8
}
fn funct3(w: u32) -> u32 {
    (w >> 12) & 7
}
fn funct7(w: u32) -> u32 {
    w >> 25
}
fn imm_i(w: u32) -> i32 {
    (w as i32) >> 20
}
fn imm_s(w: u32) -> i32 {
    (((w & 0xfe00_0000) as i32) >> 20) | ((w >> 7) & 0x1f) as i32
}
fn imm_b(w: u32) -> i32 {
    (((w & 0x8000_0000) as i32) >> 19)
        | (((w >> 7) & 1) << 11) as i32
        | (((w >> 25) & 0x3f) << 5) as i32
        | (((w >> 8) & 0xf) << 1) as i32
}
fn imm_j(w: u32) -> i32 {
    (((w & 0x8000_0000) as i32) >> 11)
        | (w & 0x000f_f000) as i32
        | (((w >> 20) & 1) << 11) as i32
        | (((w >> 21) & 0x3ff) << 1) as i32
}

/// Decodes one instruction word; `None` for anything outside RV32IM (including CSR
/// instructions, FENCE.I and compressed encodings).
pub fn decode(w: u32) -> Option<Instr> {
    let i = match w & 0x7f {
        0x37 => Instr::Lui {
            rd: rd(w),
            imm: w & 0xffff_f000,
        },
        0x17 => Instr::Auipc {
            rd: rd(w),
            imm: w & 0xffff_f000,
        },
        0x6f => Instr::Jal {
            rd: rd(w),
            imm: imm_j(w),
        },
        0x67 if funct3(w) == 0 => Instr::Jalr {
            rd: rd(w),
            rs1: rs1(w),
            imm: imm_i(w),
        },
        0x63 => {
            let op = match funct3(w) {
                0 => BranchOp::Eq,
                1 => BranchOp::Ne,
                4 => BranchOp::Lt,
                5 => BranchOp::Ge,
                6 => BranchOp::Ltu,
                7 => BranchOp::Geu,
                _ => return None,
            };
            Instr::Branch {
                op,
                rs1: rs1(w),
                rs2: rs2(w),
                imm: imm_b(w),
            }
        }
        0x03 => {
            let (len, signed) = match funct3(w) {
                0 => (1, true),
                1 => (2, true),
                2 => (4, true),
                4 => (1, false),
                5 => (2, false),
                _ => return None,
            };
            Instr::Load {
                rd: rd(w),
                rs1: rs1(w),
                imm: imm_i(w),
                len,
                signed,
            }
        }
        0x23 => {
            let len = match funct3(w) {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => return None,
            };
            Instr::Store {
                rs1: rs1(w),
                rs2: rs2(w),
                imm: imm_s(w),
                len,
            }
        }
        0x13 => {
            let (op, imm) = match (funct3(w), funct7(w)) {
                (0, _) => (AluOp::Add, imm_i(w)),
                (2, _) => (AluOp::Slt, imm_i(w)),
                (3, _) => (AluOp::Sltu, imm_i(w)),
                (4, _) => (AluOp::Xor, imm_i(w)),
                (6, _) => (AluOp::Or, imm_i(w)),
                (7, _) => (AluOp::And, imm_i(w)),
                (1, 0) => (AluOp::Sll, rs2(w) as i32),
                (5, 0) => (AluOp::Srl, rs2(w) as i32),
                (5, 0x20) => (AluOp::Sra, rs2(w) as i32),
                _ => return None,
            };
            Instr::OpImm {
                op,
                rd: rd(w),
                rs1: rs1(w),
                imm,
            }
        }
        0x33 => {
            let op = match (funct7(w), funct3(w)) {
                (0, 0) => AluOp::Add,
                (0x20, 0) => AluOp::Sub,
                (0, 1) => AluOp::Sll,
                (0, 2) => AluOp::Slt,
                (0, 3) => AluOp::Sltu,
                (0, 4) => AluOp::Xor,
                (0, 5) => AluOp::Srl,
                (0x20, 5) => AluOp::Sra,
                (0, 6) => AluOp::Or,
                (0, 7) => AluOp::And,
                (1, 0) => AluOp::Mul,
                (1, 1) => AluOp::Mulh,
                (1, 2) => AluOp::Mulhsu,
                (1, 3) => AluOp::Mulhu,
                (1, 4) => AluOp::Div,
                (1, 5) => AluOp::Divu,
                (1, 6) => AluOp::Rem,
                (1, 7) => AluOp::Remu,
                _ => return None,
            };
            Instr::Op {
                op,
                rd: rd(w),
                rs1: rs1(w),
                rs2: rs2(w),
            }
        }
        // FENCE: the ordering fields are ignored (a single hart has nothing to order).
        0x0f if funct3(w) == 0 => Instr::Fence,
        0x73 => match w {
            0x0000_0073 => Instr::Ecall,
            0x0010_0073 => Instr::Ebreak,
            _ => return None,
        },
        _ => return None,
    };
    Some(i)
}
