//! The contract service's CPU backend: runs one contract call on the VM with the syscall host.
//!
//! Purpose: the ledger executes a transaction's contract call with [`ContractService::execute`]
//! on committed state (a [`StateReader`]) and gets back a [`CallOutcome`]: the response or the
//! revert reason, the gas used, the read set (key, version seen) and the write set and events.
//! The syscalls, their gas and the limits are specified in `docs/contract-abi.md`.
//!
//! Invariants:
//! - Deterministic: the same program, context and state give the same outcome and gas.
//! - No input panics: every trap, limit violation and storage error ends the call as a revert
//!   whose reason names it; a revert has no writes and no events.
//! - Reads see the call's own earlier writes (read-your-writes) and those reads are not in the
//!   read set; the read set holds the version seen at the first read of each key.
//!
//! Speed: [`ContractService::load`] decodes and lays out a program once (cached by the SHA-256
//! of its code); each call takes a machine from the program's pool and resets only the memory
//! pages the previous call wrote, so a call does not allocate or zero its memory.

use crate::vm::{self, reg, Flow, Host, Image, Machine, Trap};
use crate::StateVersion;
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Contract syscall numbers (`a7`); `write` (64) and `exit` (93) are [`vm::syscall`]'s.
pub mod syscall {
    /// `state_get(key, key_len, buf, cap)` → full value length, or `u32::MAX` when absent.
    pub const STATE_GET: u32 = 0x100;
    /// `state_set(key, key_len, value, value_len)` → 0.
    pub const STATE_SET: u32 = 0x101;
    /// `state_delete(key, key_len)` → 0.
    pub const STATE_DELETE: u32 = 0x102;
    /// `method(buf, cap)` → full method name length.
    pub const METHOD: u32 = 0x103;
    /// `calldata(buf, cap)` → full argument length.
    pub const CALLDATA: u32 = 0x104;
    /// `caller(out32)` → membership index; writes the 32-byte caller id.
    pub const CALLER: u32 = 0x105;
    /// `return(buf, len)`: ends the call with a response.
    pub const RETURN: u32 = 0x106;
    /// `revert(buf, len)`: ends the call with a reason.
    pub const REVERT: u32 = 0x107;
    /// `emit(name, name_len, data, data_len)` → 0.
    pub const EMIT: u32 = 0x108;
    /// `sha256(buf, len, out32)` → 0.
    pub const SHA256: u32 = 0x109;
    /// `block_info(out, cap)` → [`super::BLOCK_INFO_LEN`]; writes the block-info struct.
    pub const BLOCK_INFO: u32 = 0x10a;
}

/// Gas of each syscall, charged on top of the ECALL instruction's own
/// [`vm::gas::ECALL`], before any byte is copied.
pub mod gas {
    /// `state_get` base cost.
    pub const STATE_GET: u64 = 200;
    /// `state_set` base cost.
    pub const STATE_SET: u64 = 1000;
    /// `state_delete` base cost.
    pub const STATE_DELETE: u64 = 500;
    /// Per key byte of `state_get`, `state_set`, `state_delete`.
    pub const KEY_BYTE: u64 = 2;
    /// Per value byte copied out by `state_get`.
    pub const GET_BYTE: u64 = 1;
    /// Per value byte stored by `state_set`.
    pub const SET_BYTE: u64 = 8;
    /// `method`, `calldata`, `return`, `revert`, `block_info` base cost.
    pub const COPY: u64 = 20;
    /// Per byte copied by `method`, `calldata`, `return`, `revert`.
    pub const COPY_BYTE: u64 = 1;
    /// `caller` (hashes the caller's key once per call).
    pub const CALLER: u64 = 100;
    /// `emit` base cost.
    pub const EMIT: u64 = 300;
    /// Per event name or data byte.
    pub const EMIT_BYTE: u64 = 4;
    /// `sha256` base cost.
    pub const SHA256: u64 = 60;
    /// Per byte hashed.
    pub const SHA256_BYTE: u64 = 1;
}

/// Size of the struct `block_info` fills: height u64, time_ms u64, tx_id [32],
/// contract_version u32, caller_index u32 (little-endian).
pub const BLOCK_INFO_LEN: u32 = 56;

/// Reads committed state within the called contract's namespace (channel + contract name).
pub trait StateReader: Sync {
    /// The value and version of `key`, `None` when absent; `Err` = storage failure.
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, StateVersion)>, String>;
}

/// An in-memory state (tests, tools).
impl StateReader for BTreeMap<Vec<u8>, (Vec<u8>, StateVersion)> {
    fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, StateVersion)>, String> {
        Ok(BTreeMap::get(self, key).cloned())
    }
}

/// Who calls what, in which block.
#[derive(Debug, Clone)]
pub struct CallContext<'a> {
    pub channel: &'a str,
    pub contract: &'a str,
    pub contract_version: u32,
    /// Membership index of the transaction's creator.
    pub caller_index: u32,
    /// Its 65-byte SEC1 public key.
    pub caller_key: &'a [u8],
    pub tx_id: [u8; 32],
    /// Height of the block being built (block info).
    pub height: u64,
    /// Block time in milliseconds since the Unix epoch (block info).
    pub time_ms: u64,
    pub method: &'a str,
    pub args: &'a [u8],
    pub gas_limit: u64,
}

/// What a call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// `Ok(response)` or `Err(revert reason)`.
    pub result: Result<Vec<u8>, String>,
    pub gas_used: u64,
    /// Sorted by key, one per key: the version seen at the first read of a key not yet
    /// written by this call (`None` = absent). Kept on revert.
    pub reads: Vec<(Vec<u8>, Option<StateVersion>)>,
    /// Sorted by key, the last write per key; `None` = delete. Empty on revert.
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// In emission order. Empty on revert.
    pub events: Vec<(String, Vec<u8>)>,
}

/// The caller id contracts see: SHA-256 of the caller's SEC1 public key.
pub fn caller_id(caller_key: &[u8]) -> [u8; 32] {
    Sha256::digest(caller_key).into()
}

/// Memory size and per-call limits (a call exceeding a limit reverts). The defaults are the
/// values `docs/contract-abi.md` specifies; every node of a channel must use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractConfig {
    /// VM memory in bytes (the stack starts at the top).
    pub mem_size: u32,
    pub max_key_len: u32,
    pub max_value_len: u32,
    pub max_response_len: u32,
    /// Longer revert reasons are truncated, not rejected.
    pub max_reason_len: u32,
    pub max_events: u32,
    pub max_event_name_len: u32,
    pub max_event_data_len: u32,
    /// Distinct keys read plus distinct keys written.
    pub max_state_entries: u32,
    /// Programs kept by [`ContractService::load`]'s cache.
    pub max_cached_programs: usize,
    /// Idle machines kept per program for reuse.
    pub max_pooled_machines: usize,
}

impl Default for ContractConfig {
    fn default() -> Self {
        ContractConfig {
            mem_size: 1 << 20,
            max_key_len: 256,
            max_value_len: 64 << 10,
            max_response_len: 64 << 10,
            max_reason_len: 64 << 10,
            max_events: 64,
            max_event_name_len: 64,
            max_event_data_len: 4 << 10,
            max_state_entries: 4096,
            max_cached_programs: 256,
            max_pooled_machines: 64,
        }
    }
}

/// A loaded, validated program: its initial machine and a pool of machines to reuse.
#[derive(Debug)]
pub struct Program {
    hash: [u8; 32],
    template: Machine,
    pool: Mutex<Vec<Machine>>,
    max_pooled: usize,
}

impl Program {
    /// Builds a program from an ELF32 RISC-V executable.
    pub fn new(code: &[u8], config: &ContractConfig) -> Result<Program, vm::LoadError> {
        let image = Image::elf(code)?;
        let template = Machine::new(
            vm::Config {
                mem_size: config.mem_size,
                gas_limit: 0,
            },
            &image,
        )?;
        Ok(Program {
            hash: Sha256::digest(code).into(),
            template,
            pool: Mutex::new(Vec::new()),
            max_pooled: config.max_pooled_machines,
        })
    }

    /// SHA-256 of the ELF file.
    pub fn code_hash(&self) -> [u8; 32] {
        self.hash
    }

    fn machine(&self, gas_limit: u64) -> Machine {
        let mut m = self
            .pool
            .lock()
            .pop()
            .unwrap_or_else(|| self.template.clone());
        m.reset_to(&self.template, gas_limit);
        m
    }

    fn give_back(&self, m: Machine) {
        let mut pool = self.pool.lock();
        if pool.len() < self.max_pooled {
            pool.push(m);
        }
    }
}

/// Counters of a [`ContractService`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContractMetrics {
    pub calls: u64,
    pub reverts: u64,
    pub gas: u64,
    /// RV32IM instructions executed.
    pub instructions: u64,
}

/// Runs contract calls; caches loaded programs by code hash.
#[derive(Debug, Default)]
pub struct ContractService {
    config: ContractConfig,
    programs: Mutex<HashMap<[u8; 32], Arc<Program>>>,
    calls: AtomicU64,
    reverts: AtomicU64,
    gas: AtomicU64,
    instructions: AtomicU64,
}

impl ContractService {
    pub fn new(config: ContractConfig) -> Self {
        ContractService {
            config,
            ..Default::default()
        }
    }

    /// Calls, reverts, gas and instructions so far.
    pub fn metrics(&self) -> ContractMetrics {
        ContractMetrics {
            calls: self.calls.load(Ordering::Relaxed),
            reverts: self.reverts.load(Ordering::Relaxed),
            gas: self.gas.load(Ordering::Relaxed),
            instructions: self.instructions.load(Ordering::Relaxed),
        }
    }

    /// The service's configuration.
    pub fn config(&self) -> &ContractConfig {
        &self.config
    }

    /// The program for `code` (an ELF32 RISC-V executable), loaded once per code hash.
    pub fn load(&self, code: &[u8]) -> Result<Arc<Program>, vm::LoadError> {
        let hash: [u8; 32] = Sha256::digest(code).into();
        if let Some(p) = self.programs.lock().get(&hash) {
            return Ok(p.clone());
        }
        let program = Arc::new(Program::new(code, &self.config)?);
        let mut programs = self.programs.lock();
        if programs.len() >= self.config.max_cached_programs {
            if let Some(k) = programs.keys().next().copied() {
                programs.remove(&k);
            }
        }
        Ok(programs.entry(hash).or_insert(program).clone())
    }

    /// Runs `ctx.method` of `program` against `state`.
    pub fn execute(
        &self,
        program: &Program,
        ctx: &CallContext,
        state: &dyn StateReader,
    ) -> CallOutcome {
        let mut vm = program.machine(ctx.gas_limit);
        let mut host = CallHost {
            ctx,
            state,
            cfg: &self.config,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
            events: Vec::new(),
            end: None,
        };
        let run = vm.run(&mut host);
        let gas_used = vm.gas_used();
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.gas.fetch_add(gas_used, Ordering::Relaxed);
        self.instructions
            .fetch_add(vm.instructions(), Ordering::Relaxed);
        program.give_back(vm);
        let result = match (host.end.take(), run) {
            (Some(end), _) => end,
            (None, Ok(0)) => Ok(Vec::new()),
            (None, Ok(code)) => Err(format!("exit code {code}")),
            (None, Err(trap)) => Err(format!("trap: {trap}")),
        };
        if result.is_err() {
            self.reverts.fetch_add(1, Ordering::Relaxed);
        }
        let reads = host
            .reads
            .into_iter()
            .map(|(k, r)| (k, r.version))
            .collect();
        let (writes, events) = match result {
            Ok(_) => (host.writes.into_iter().collect(), host.events),
            Err(_) => (Vec::new(), Vec::new()),
        };
        CallOutcome {
            result,
            gas_used,
            reads,
            writes,
            events,
        }
    }
}

/// A key read from storage: the version seen and the value (for later reads of the key).
struct Read {
    version: Option<StateVersion>,
    value: Option<Vec<u8>>,
}

/// The syscall host of one call.
struct CallHost<'a, 'c> {
    ctx: &'a CallContext<'c>,
    state: &'a dyn StateReader,
    cfg: &'a ContractConfig,
    reads: BTreeMap<Vec<u8>, Read>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    events: Vec<(String, Vec<u8>)>,
    /// Set when the call ended through the host (return, revert, a limit, storage failure).
    end: Option<Result<Vec<u8>, String>>,
}

/// A length as the u32 syscalls return (values beyond u32 cannot occur under the limits).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX - 1)
}

fn valid_event_name(name: &[u8]) -> bool {
    name.iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl CallHost<'_, '_> {
    /// Ends the call with `result`.
    fn stop(&mut self, result: Result<Vec<u8>, String>) -> Result<Flow, Trap> {
        self.end = Some(result);
        Ok(Flow::Exit(0))
    }

    /// Ends the call as a revert for a limit violation.
    fn limit(&mut self, what: String) -> Result<Flow, Trap> {
        self.stop(Err(format!("limit: {what}")))
    }

    fn entries_full(&self) -> bool {
        self.reads.len() + self.writes.len() >= self.cfg.max_state_entries as usize
    }

    /// Copies `data[..min(len, cap)]` to `buf` after charging `base` + per byte; `a0` = full
    /// length.
    fn copy_out(vm: &mut Machine, data: &[u8], base: u64, per_byte: u64) -> Result<(), Trap> {
        let (buf, cap) = (vm.reg(reg::A0), vm.reg(reg::A1));
        let n = data.len().min(cap as usize);
        vm.charge(base + n as u64 * per_byte)?;
        vm.writable(buf, cap)?;
        vm.write_bytes(buf, &data[..n])?;
        vm.set_reg(reg::A0, len32(data.len()));
        Ok(())
    }

    fn state_get(&mut self, vm: &mut Machine) -> Result<Flow, Trap> {
        let (kp, kl) = (vm.reg(reg::A0), vm.reg(reg::A1));
        let (buf, cap) = (vm.reg(reg::A2), vm.reg(reg::A3));
        if kl > self.cfg.max_key_len {
            return self.limit(format!("key of {kl} bytes (max {})", self.cfg.max_key_len));
        }
        vm.charge(gas::STATE_GET + u64::from(kl) * gas::KEY_BYTE)?;
        vm.writable(buf, cap)?;
        let key = vm.read_bytes(kp, kl)?;
        if !self.writes.contains_key(key) && !self.reads.contains_key(key) {
            if self.entries_full() {
                return self.limit(format!(
                    "more than {} state entries",
                    self.cfg.max_state_entries
                ));
            }
            let key = key.to_vec();
            let read = match self.state.get(&key) {
                Ok(Some((value, version))) => Read {
                    version: Some(version),
                    value: Some(value),
                },
                Ok(None) => Read {
                    version: None,
                    value: None,
                },
                Err(e) => return self.stop(Err(format!("storage: {e}"))),
            };
            self.reads.insert(key, read);
        }
        let key = vm.read_bytes(kp, kl)?;
        let value = match self.writes.get(key) {
            Some(w) => w.as_deref(),
            None => self.reads.get(key).and_then(|r| r.value.as_deref()),
        };
        match value {
            None => vm.set_reg(reg::A0, u32::MAX),
            Some(v) => {
                let n = v.len().min(cap as usize);
                vm.charge(n as u64 * gas::GET_BYTE)?;
                vm.write_bytes(buf, &v[..n])?;
                vm.set_reg(reg::A0, len32(v.len()));
            }
        }
        Ok(Flow::Continue)
    }

    fn state_put(&mut self, vm: &mut Machine, delete: bool) -> Result<Flow, Trap> {
        let (kp, kl) = (vm.reg(reg::A0), vm.reg(reg::A1));
        let (vp, vl) = (vm.reg(reg::A2), vm.reg(reg::A3));
        if kl > self.cfg.max_key_len {
            return self.limit(format!("key of {kl} bytes (max {})", self.cfg.max_key_len));
        }
        if !delete && vl > self.cfg.max_value_len {
            return self.limit(format!(
                "value of {vl} bytes (max {})",
                self.cfg.max_value_len
            ));
        }
        let cost = if delete {
            gas::STATE_DELETE + u64::from(kl) * gas::KEY_BYTE
        } else {
            gas::STATE_SET + u64::from(kl) * gas::KEY_BYTE + u64::from(vl) * gas::SET_BYTE
        };
        vm.charge(cost)?;
        let key = vm.read_bytes(kp, kl)?;
        let value = match delete {
            true => None,
            false => Some(vm.read_bytes(vp, vl)?.to_vec()),
        };
        if let Some(slot) = self.writes.get_mut(key) {
            *slot = value;
        } else {
            if self.entries_full() {
                return self.limit(format!(
                    "more than {} state entries",
                    self.cfg.max_state_entries
                ));
            }
            self.writes.insert(key.to_vec(), value);
        }
        vm.set_reg(reg::A0, 0);
        Ok(Flow::Continue)
    }

    fn emit(&mut self, vm: &mut Machine) -> Result<Flow, Trap> {
        let (np, nl) = (vm.reg(reg::A0), vm.reg(reg::A1));
        let (dp, dl) = (vm.reg(reg::A2), vm.reg(reg::A3));
        if self.events.len() >= self.cfg.max_events as usize {
            return self.limit(format!("more than {} events", self.cfg.max_events));
        }
        if nl == 0 || nl > self.cfg.max_event_name_len {
            return self.limit(format!(
                "event name of {nl} bytes (1..={})",
                self.cfg.max_event_name_len
            ));
        }
        if dl > self.cfg.max_event_data_len {
            return self.limit(format!(
                "event data of {dl} bytes (max {})",
                self.cfg.max_event_data_len
            ));
        }
        vm.charge(gas::EMIT + (u64::from(nl) + u64::from(dl)) * gas::EMIT_BYTE)?;
        let name = vm.read_bytes(np, nl)?;
        if !valid_event_name(name) {
            return self.stop(Err(
                "bad event name: characters must be A-Z a-z 0-9 _ . -".into()
            ));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let data = vm.read_bytes(dp, dl)?.to_vec();
        self.events.push((name, data));
        vm.set_reg(reg::A0, 0);
        Ok(Flow::Continue)
    }

    fn block_info(&self, vm: &mut Machine) -> Result<Flow, Trap> {
        let c = self.ctx;
        let mut info = [0u8; BLOCK_INFO_LEN as usize];
        info[0..8].copy_from_slice(&c.height.to_le_bytes());
        info[8..16].copy_from_slice(&c.time_ms.to_le_bytes());
        info[16..48].copy_from_slice(&c.tx_id);
        info[48..52].copy_from_slice(&c.contract_version.to_le_bytes());
        info[52..56].copy_from_slice(&c.caller_index.to_le_bytes());
        Self::copy_out(vm, &info, gas::COPY, 0)?;
        Ok(Flow::Continue)
    }
}

impl Host for CallHost<'_, '_> {
    fn ecall(&mut self, vm: &mut Machine) -> Result<Flow, Trap> {
        let (a0, a1, a2) = (vm.reg(reg::A0), vm.reg(reg::A1), vm.reg(reg::A2));
        match vm.reg(reg::A7) {
            vm::syscall::EXIT => Ok(Flow::Exit(a0)),
            vm::syscall::WRITE => {
                // Debug output: checked and charged, then discarded.
                vm.charge(u64::from(a2) * vm::GAS_PER_WRITE_BYTE)?;
                vm.read_bytes(a1, a2)?;
                vm.set_reg(reg::A0, a2);
                Ok(Flow::Continue)
            }
            syscall::STATE_GET => self.state_get(vm),
            syscall::STATE_SET => self.state_put(vm, false),
            syscall::STATE_DELETE => self.state_put(vm, true),
            syscall::METHOD => {
                Self::copy_out(vm, self.ctx.method.as_bytes(), gas::COPY, gas::COPY_BYTE)?;
                Ok(Flow::Continue)
            }
            syscall::CALLDATA => {
                Self::copy_out(vm, self.ctx.args, gas::COPY, gas::COPY_BYTE)?;
                Ok(Flow::Continue)
            }
            syscall::CALLER => {
                vm.charge(gas::CALLER)?;
                vm.write_bytes(a0, &caller_id(self.ctx.caller_key))?;
                vm.set_reg(reg::A0, self.ctx.caller_index);
                Ok(Flow::Continue)
            }
            syscall::RETURN => {
                if a1 > self.cfg.max_response_len {
                    return self.limit(format!(
                        "response of {a1} bytes (max {})",
                        self.cfg.max_response_len
                    ));
                }
                vm.charge(gas::COPY + u64::from(a1) * gas::COPY_BYTE)?;
                let response = vm.read_bytes(a0, a1)?.to_vec();
                self.stop(Ok(response))
            }
            syscall::REVERT => {
                let n = a1.min(self.cfg.max_reason_len);
                vm.charge(gas::COPY + u64::from(n) * gas::COPY_BYTE)?;
                let mut reason = String::from_utf8_lossy(vm.read_bytes(a0, n)?).into_owned();
                let mut end = reason.len().min(self.cfg.max_reason_len as usize);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                reason.truncate(end);
                self.stop(Err(reason))
            }
            syscall::EMIT => self.emit(vm),
            syscall::SHA256 => {
                vm.charge(gas::SHA256 + u64::from(a1) * gas::SHA256_BYTE)?;
                let digest: [u8; 32] = Sha256::digest(vm.read_bytes(a0, a1)?).into();
                vm.write_bytes(a2, &digest)?;
                vm.set_reg(reg::A0, 0);
                Ok(Flow::Continue)
            }
            syscall::BLOCK_INFO => self.block_info(vm),
            number => Err(Trap::UnknownSyscall {
                pc: vm.pc(),
                number,
            }),
        }
    }
}
