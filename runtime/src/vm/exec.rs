//! RV32IM execution: ALU semantics, the gas table and the single-step function of [`Machine`].

use super::decode::{AluOp, BranchOp, Instr};
use super::{Flow, Host, Machine, Trap};

/// Gas charged per instruction class, before the instruction executes.
pub mod gas {
    /// LUI, AUIPC, ALU register/immediate ops (not M), FENCE, EBREAK.
    pub const BASE: u64 = 1;
    /// Branches, JAL, JALR.
    pub const JUMP: u64 = 2;
    /// Loads and stores of any width.
    pub const MEMORY: u64 = 3;
    /// MUL, MULH, MULHSU, MULHU.
    pub const MUL: u64 = 4;
    /// DIV, DIVU, REM, REMU.
    pub const DIV: u64 = 8;
    /// ECALL itself; the host charges each syscall's own cost on top.
    pub const ECALL: u64 = 10;
}

/// The gas cost of an instruction.
pub fn cost(i: &Instr) -> u64 {
    match i {
        Instr::Jal { .. } | Instr::Jalr { .. } | Instr::Branch { .. } => gas::JUMP,
        Instr::Load { .. } | Instr::Store { .. } => gas::MEMORY,
        Instr::Op { op, .. } => match op {
            AluOp::Mul | AluOp::Mulh | AluOp::Mulhsu | AluOp::Mulhu => gas::MUL,
            AluOp::Div | AluOp::Divu | AluOp::Rem | AluOp::Remu => gas::DIV,
            _ => gas::BASE,
        },
        Instr::Ecall => gas::ECALL,
        _ => gas::BASE,
    }
}

/// The result of an ALU operation per the RISC-V unprivileged spec (shift amounts use the low
/// five bits; division by zero and `i32::MIN / -1` give the spec's results, never a trap).
pub fn alu(op: AluOp, a: u32, b: u32) -> u32 {
    let (sa, sb) = (a as i32, b as i32);
    match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Sll => a << (b & 31),
        AluOp::Slt => (sa < sb) as u32,
        AluOp::Sltu => (a < b) as u32,
        AluOp::Xor => a ^ b,
        AluOp::Srl => a >> (b & 31),
        AluOp::Sra => (sa >> (b & 31)) as u32,
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Mul => a.wrapping_mul(b),
        AluOp::Mulh => ((i64::from(sa) * i64::from(sb)) >> 32) as u32,
        AluOp::Mulhsu => ((i64::from(sa) * i64::from(b)) >> 32) as u32,
        AluOp::Mulhu => ((u64::from(a) * u64::from(b)) >> 32) as u32,
        AluOp::Div => match sb {
            0 => u32::MAX,
            _ => sa.wrapping_div(sb) as u32,
        },
        AluOp::Divu => a.checked_div(b).unwrap_or(u32::MAX),
        AluOp::Rem => match sb {
            0 => a,
            _ => sa.wrapping_rem(sb) as u32,
        },
        AluOp::Remu => a.checked_rem(b).unwrap_or(a),
    }
}

fn taken(op: BranchOp, a: u32, b: u32) -> bool {
    match op {
        BranchOp::Eq => a == b,
        BranchOp::Ne => a != b,
        BranchOp::Lt => (a as i32) < (b as i32),
        BranchOp::Ge => (a as i32) >= (b as i32),
        BranchOp::Ltu => a < b,
        BranchOp::Geu => a >= b,
    }
}

impl Machine {
    /// Executes one already-charged instruction at `self.pc`.
    #[inline(always)]
    pub(super) fn execute(&mut self, i: Instr, host: &mut dyn Host) -> Result<Flow, Trap> {
        let pc = self.pc;
        let mut next = pc.wrapping_add(4);
        match i {
            Instr::Lui { rd, imm } => self.set_reg(rd, imm),
            Instr::Auipc { rd, imm } => self.set_reg(rd, pc.wrapping_add(imm)),
            Instr::Jal { rd, imm } => {
                self.set_reg(rd, next);
                next = pc.wrapping_add(imm as u32);
            }
            Instr::Jalr { rd, rs1, imm } => {
                let target = self.reg(rs1).wrapping_add(imm as u32) & !1;
                self.set_reg(rd, next);
                next = target;
            }
            Instr::Branch { op, rs1, rs2, imm } => {
                if taken(op, self.reg(rs1), self.reg(rs2)) {
                    next = pc.wrapping_add(imm as u32);
                }
            }
            Instr::Load {
                rd,
                rs1,
                imm,
                len,
                signed,
            } => {
                let addr = self.reg(rs1).wrapping_add(imm as u32);
                let v = self.load(addr, len)?;
                let v = match (len, signed) {
                    (1, true) => v as u8 as i8 as u32,
                    (2, true) => v as u16 as i16 as u32,
                    _ => v,
                };
                self.set_reg(rd, v);
            }
            Instr::Store { rs1, rs2, imm, len } => {
                let addr = self.reg(rs1).wrapping_add(imm as u32);
                self.store(addr, len, self.reg(rs2))?;
            }
            Instr::OpImm { op, rd, rs1, imm } => {
                self.set_reg(rd, alu(op, self.reg(rs1), imm as u32));
            }
            Instr::Op { op, rd, rs1, rs2 } => {
                self.set_reg(rd, alu(op, self.reg(rs1), self.reg(rs2)));
            }
            Instr::Fence => {}
            Instr::Ebreak => return Err(Trap::Ebreak { pc }),
            Instr::Ecall => {
                if let Flow::Exit(code) = host.ecall(self)? {
                    return Ok(Flow::Exit(code));
                }
            }
        }
        self.pc = next;
        Ok(Flow::Continue)
    }
}
