//! The contract VM: a deterministic, gas-metered RV32IM interpreter (`docs/contract-abi.md`).
//!
//! A [`Machine`] owns a flat little-endian memory, 32 registers and a gas meter. [`Machine::run`]
//! executes until the program exits through the [`Host`] or a [`Trap`] stops it; no input makes
//! it panic. Misaligned loads and stores are allowed; writes to read-only segments (code) trap.
//!
//! Speed: read-only segments are decoded once when the machine is built (they cannot change),
//! and stores mark 4 KiB pages dirty so that [`Machine::reset_to`] can bring a reused machine
//! back to its initial state by copying only the pages a run changed.

mod decode;
mod exec;
mod loader;

pub use decode::{decode, AluOp, BranchOp, Instr};
pub use exec::{alu, cost, gas};
pub use loader::{Image, LoadError, Segment};

use std::ops::Range;
use std::sync::Arc;

/// Why a run stopped without exiting normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Trap {
    #[error("out of gas")]
    OutOfGas,
    #[error("illegal instruction {word:#010x} at {pc:#x}")]
    IllegalInstruction { pc: u32, word: u32 },
    #[error("memory fault at {pc:#x}: {len} bytes at {addr:#x}")]
    MemoryFault { pc: u32, addr: u32, len: u32 },
    #[error("misaligned instruction fetch at {pc:#x}")]
    MisalignedFetch { pc: u32 },
    #[error("ebreak at {pc:#x}")]
    Ebreak { pc: u32 },
    #[error("unknown syscall {number} at {pc:#x}")]
    UnknownSyscall { pc: u32, number: u32 },
}

/// What the host tells the machine after a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Continue with the instruction after the ECALL.
    Continue,
    /// Stop the run with this exit code.
    Exit(u32),
}

/// The environment that serves ECALLs: `a7` is the syscall number, `a0..a5` the arguments,
/// `a0` the result (set by the host with [`Machine::set_reg`]).
pub trait Host {
    /// Serves one ECALL at `vm.pc()`; may charge gas with [`Machine::charge`].
    fn ecall(&mut self, vm: &mut Machine) -> Result<Flow, Trap>;
}

/// Register numbers of the ABI names the syscall convention uses.
pub mod reg {
    pub const SP: u8 = 2;
    pub const A0: u8 = 10;
    pub const A1: u8 = 11;
    pub const A2: u8 = 12;
    pub const A3: u8 = 13;
    pub const A4: u8 = 14;
    pub const A5: u8 = 15;
    pub const A7: u8 = 17;
}

/// Syscall numbers (Linux's, so that programs also run under `qemu-riscv32`).
pub mod syscall {
    /// `write(fd = a0, buf = a1, len = a2)`: returns `len` in `a0`.
    pub const WRITE: u32 = 64;
    /// `exit(code = a0)`: ends the run.
    pub const EXIT: u32 = 93;
}

/// Gas per byte passed to `write`.
pub const GAS_PER_WRITE_BYTE: u64 = 1;

/// A minimal host: `exit` and `write` (bytes for fds 1 and 2 collect in `output`).
#[derive(Debug, Default)]
pub struct BasicHost {
    /// Everything written to fd 1 or 2, in order.
    pub output: Vec<u8>,
}

impl Host for BasicHost {
    fn ecall(&mut self, vm: &mut Machine) -> Result<Flow, Trap> {
        match vm.reg(reg::A7) {
            syscall::EXIT => Ok(Flow::Exit(vm.reg(reg::A0))),
            syscall::WRITE => {
                let (fd, buf, len) = (vm.reg(reg::A0), vm.reg(reg::A1), vm.reg(reg::A2));
                vm.charge(u64::from(len) * GAS_PER_WRITE_BYTE)?;
                let bytes = vm.read_bytes(buf, len)?;
                if fd == 1 || fd == 2 {
                    self.output.extend_from_slice(bytes);
                }
                vm.set_reg(reg::A0, len);
                Ok(Flow::Continue)
            }
            number => Err(Trap::UnknownSyscall {
                pc: vm.pc(),
                number,
            }),
        }
    }
}

/// Machine parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Memory size in bytes; addresses `0..mem_size` exist, the stack starts at the top.
    pub mem_size: u32,
    /// Gas available to the run.
    pub gas_limit: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mem_size: 1 << 20,
            gas_limit: 10_000_000,
        }
    }
}

/// log2 of the page size used for dirty tracking.
const PAGE_SHIFT: u32 = 12;

/// The instructions of one read-only segment, decoded once (`None` = illegal word).
#[derive(Debug)]
struct Decoded {
    start: u32,
    /// Each word's instruction and gas cost.
    instrs: Vec<Option<(Instr, u64)>>,
}

/// An RV32IM hart with its memory and gas meter.
#[derive(Debug, Clone)]
pub struct Machine {
    regs: [u32; 32],
    pc: u32,
    mem: Vec<u8>,
    read_only: Vec<Range<u32>>,
    /// The smallest range covering every read-only segment (a fast test for stores).
    read_only_span: Range<u32>,
    /// Predecoded read-only segments; shared by clones (it also identifies the image).
    code: Arc<Vec<Decoded>>,
    /// One bit per page written since the machine was built or last reset.
    dirty: Vec<u64>,
    gas_limit: u64,
    gas_used: u64,
    /// Instructions charged (executed or trapping in execution) since built or reset.
    instret: u64,
}

impl Machine {
    /// A machine with `image` loaded, `pc` at its entry, `sp` at the top of memory (16-byte
    /// aligned) and every other register zero.
    pub fn new(config: Config, image: &Image) -> Result<Machine, LoadError> {
        let mut mem = vec![0u8; config.mem_size as usize];
        let mut read_only = Vec::new();
        for s in &image.segments {
            let end = s
                .addr
                .checked_add(s.mem_size)
                .filter(|&e| e <= config.mem_size && s.data.len() as u64 <= u64::from(s.mem_size))
                .ok_or(LoadError::OutOfMemory {
                    addr: s.addr,
                    len: s.mem_size,
                })?;
            let start = s.addr as usize;
            mem[start..start + s.data.len()].copy_from_slice(&s.data);
            if !s.writable {
                read_only.push(s.addr..end);
            }
        }
        let code = read_only
            .iter()
            .map(|r| {
                let start = r.start.next_multiple_of(4);
                let instrs = (start..r.end.saturating_sub(3))
                    .step_by(4)
                    .map(|a| {
                        let a = a as usize;
                        let word = u32::from_le_bytes([mem[a], mem[a + 1], mem[a + 2], mem[a + 3]]);
                        decode(word).map(|i| (i, cost(&i)))
                    })
                    .collect();
                Decoded { start, instrs }
            })
            .collect::<Vec<_>>();
        // The segment holding the entry point (the code) is searched first.
        let mut code = code;
        code.sort_by_key(|d| {
            !(image.entry >= d.start && ((image.entry - d.start) / 4) < d.instrs.len() as u32)
        });
        let read_only_span = read_only
            .iter()
            .fold(None, |acc: Option<Range<u32>>, r| {
                Some(match acc {
                    None => r.clone(),
                    Some(a) => a.start.min(r.start)..a.end.max(r.end),
                })
            })
            .unwrap_or(0..0);
        let pages = (config.mem_size as usize).div_ceil(1 << PAGE_SHIFT);
        let mut m = Machine {
            regs: [0; 32],
            pc: image.entry,
            mem,
            read_only,
            read_only_span,
            code: Arc::new(code),
            dirty: vec![0; pages.div_ceil(64)],
            gas_limit: config.gas_limit,
            gas_used: 0,
            instret: 0,
        };
        m.set_reg(reg::SP, config.mem_size & !15);
        Ok(m)
    }

    /// Runs until exit (`Ok(code)`) or a trap; [`Machine::gas_used`] tells the gas spent.
    #[inline(never)]
    pub fn run(&mut self, host: &mut dyn Host) -> Result<u32, Trap> {
        loop {
            if let Flow::Exit(code) = self.step(host)? {
                return Ok(code);
            }
        }
    }

    /// Fetches, decodes, charges and executes one instruction.
    #[inline]
    pub fn step(&mut self, host: &mut dyn Host) -> Result<Flow, Trap> {
        let pc = self.pc;
        if pc % 4 != 0 {
            return Err(Trap::MisalignedFetch { pc });
        }
        let (instr, cost) = self.fetch(pc)?;
        self.charge(cost)?;
        self.instret += 1;
        self.execute(instr, host)
    }

    /// The instruction at `pc` (4-aligned): from the predecoded read-only segments, else
    /// fetched and decoded from memory.
    #[inline]
    fn fetch(&self, pc: u32) -> Result<(Instr, u64), Trap> {
        for d in self.code.iter() {
            let i = (pc.wrapping_sub(d.start) / 4) as usize;
            if pc >= d.start {
                if let Some(Some(instr)) = d.instrs.get(i) {
                    return Ok(*instr);
                }
            }
        }
        let word = self.load(pc, 4)?;
        let instr = decode(word).ok_or(Trap::IllegalInstruction { pc, word })?;
        Ok((instr, cost(&instr)))
    }

    /// Brings this machine back to `template`'s state (registers, pc, memory) with a fresh gas
    /// meter of `gas_limit`. When this machine is a clone of `template` (or was reset to it)
    /// and `template` has not run since, only the pages written since are copied; otherwise
    /// the whole template is cloned.
    pub fn reset_to(&mut self, template: &Machine, gas_limit: u64) {
        if Arc::ptr_eq(&self.code, &template.code)
            && self.mem.len() == template.mem.len()
            && template.dirty.iter().all(|&w| w == 0)
        {
            let page = 1usize << PAGE_SHIFT;
            for (w, bits) in self.dirty.iter_mut().enumerate() {
                let mut b = std::mem::take(bits);
                while b != 0 {
                    let p = w * 64 + b.trailing_zeros() as usize;
                    b &= b - 1;
                    let start = p * page;
                    let end = (start + page).min(self.mem.len());
                    self.mem[start..end].copy_from_slice(&template.mem[start..end]);
                }
            }
        } else {
            *self = template.clone();
            self.dirty.fill(0);
        }
        self.regs = template.regs;
        self.pc = template.pc;
        self.gas_used = 0;
        self.instret = 0;
        self.gas_limit = gas_limit;
    }

    /// Sets the gas limit (the gas already used is kept).
    pub fn set_gas_limit(&mut self, gas_limit: u64) {
        self.gas_limit = gas_limit;
    }

    /// Memory size in bytes.
    pub fn mem_size(&self) -> u32 {
        self.mem.len() as u32
    }

    /// Deducts `amount` gas, or fails with [`Trap::OutOfGas`] leaving the meter unchanged.
    #[inline]
    pub fn charge(&mut self, amount: u64) -> Result<(), Trap> {
        match self.gas_used.checked_add(amount) {
            Some(used) if used <= self.gas_limit => {
                self.gas_used = used;
                Ok(())
            }
            _ => Err(Trap::OutOfGas),
        }
    }

    /// Gas charged so far (the instruction that ran out is not included).
    pub fn gas_used(&self) -> u64 {
        self.gas_used
    }

    /// Instructions charged so far (a measure of work, not part of the ABI).
    pub fn instructions(&self) -> u64 {
        self.instret
    }

    /// The program counter.
    pub fn pc(&self) -> u32 {
        self.pc
    }

    /// Register `r` (0..=31; `x0` is always zero).
    pub fn reg(&self, r: u8) -> u32 {
        self.regs[usize::from(r & 31)]
    }

    /// Sets register `r`; writes to `x0` are ignored.
    pub fn set_reg(&mut self, r: u8, value: u32) {
        if r & 31 != 0 {
            self.regs[usize::from(r & 31)] = value;
        }
    }

    /// `len` bytes of memory at `addr`, or a memory fault at the current pc.
    #[inline]
    pub fn read_bytes(&self, addr: u32, len: u32) -> Result<&[u8], Trap> {
        self.range(addr, len).map(|r| &self.mem[r])
    }

    /// Writes `bytes` at `addr`, or a memory fault (out of range or read-only).
    #[inline]
    pub fn write_bytes(&mut self, addr: u32, bytes: &[u8]) -> Result<(), Trap> {
        let len = u32::try_from(bytes.len()).map_err(|_| self.fault(addr, u32::MAX))?;
        let r = self.writable(addr, len)?;
        if len > 0 {
            let (first, last) = (addr >> PAGE_SHIFT, (addr + len - 1) >> PAGE_SHIFT);
            self.dirty[(first / 64) as usize] |= 1 << (first % 64);
            for p in first + 1..=last {
                self.dirty[(p / 64) as usize] |= 1 << (p % 64);
            }
        }
        self.mem[r].copy_from_slice(bytes);
        Ok(())
    }

    /// Whether `len` bytes at `addr` may be written: the index range, or a memory fault (out of
    /// range or touching a read-only segment). Syscalls check whole output buffers with it.
    #[inline]
    pub fn writable(&self, addr: u32, len: u32) -> Result<Range<usize>, Trap> {
        let r = self.range(addr, len)?;
        let span = &self.read_only_span;
        if len > 0
            && addr < span.end
            && span.start < addr + len
            && self
                .read_only
                .iter()
                .any(|ro| addr < ro.end && ro.start < addr + len)
        {
            return Err(self.fault(addr, len));
        }
        Ok(r)
    }

    #[inline]
    fn range(&self, addr: u32, len: u32) -> Result<Range<usize>, Trap> {
        match addr.checked_add(len) {
            Some(end) if end as usize <= self.mem.len() => Ok(addr as usize..end as usize),
            _ => Err(self.fault(addr, len)),
        }
    }

    #[cold]
    fn fault(&self, addr: u32, len: u32) -> Trap {
        Trap::MemoryFault {
            pc: self.pc,
            addr,
            len,
        }
    }

    /// Little-endian load of 1, 2 or 4 bytes, zero-extended.
    #[inline]
    fn load(&self, addr: u32, len: u8) -> Result<u32, Trap> {
        let b = self.read_bytes(addr, u32::from(len))?;
        Ok(match *b {
            [x] => u32::from(x),
            [x, y] => u32::from(u16::from_le_bytes([x, y])),
            [x, y, z, w] => u32::from_le_bytes([x, y, z, w]),
            _ => b.iter().rev().fold(0, |v, &x| (v << 8) | u32::from(x)),
        })
    }

    /// Little-endian store of the low 1, 2 or 4 bytes of `value`.
    #[inline]
    fn store(&mut self, addr: u32, len: u8, value: u32) -> Result<(), Trap> {
        self.write_bytes(addr, &value.to_le_bytes()[..usize::from(len)])
    }
}

#[cfg(test)]
mod tests;
