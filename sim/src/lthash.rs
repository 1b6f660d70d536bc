//! The standalone Verilator model of `rtl/kv/lthash_unit.sv` (the KV engine's LtHash16 unit): entry adds and subtracts, clear, load, read, digest, compare, with cycle counts.
//!
//! [`LtHashSim`] owns one model (built by `build.rs` as `Vlthash_unit`, driven through
//! `csrc/lthash_shim.cpp`) and runs commands on the calling thread: it offers the commands,
//! streams their data beats (entry encodings, padded with junk in a last partial beat, which the
//! unit must ignore; LOAD's 32 beats), takes the response beats, and counts clock cycles until
//! the unit reports `idle_o` (every vector accumulated). Every wait is bounded by a cycle limit
//! and ends in a typed [`LtHashSimError`], never a hang; after an error the model is reset and
//! both lattices are cleared, so the next command starts clean. Optional random gaps on the data
//! stream and back-pressure on the response stream ([`LtHashSim::set_stalls`]) exercise the
//! handshakes.
//!
//! The caller builds each entry's encoding (see `docs/state.md`, "The digest: LtHash16"); the
//! unit hashes it. Start reading at [`LtHashSim::entries`].

use std::ptr::NonNull;

#[repr(C)]
struct LtSim {
    _private: [u8; 0],
}

extern "C" {
    fn lt_sim_new() -> *mut LtSim;
    fn lt_sim_free(s: *mut LtSim);
    fn lt_sim_reset(s: *mut LtSim, cycles: u32);
    fn lt_sim_cycles(s: *const LtSim) -> u64;
    fn lt_sim_set_cmd(s: *mut LtSim, op: u32, scratch: u32, len: u64);
    fn lt_sim_set_data(s: *mut LtSim, data: *const u8);
    fn lt_sim_step(s: *mut LtSim, drive: u32) -> u32;
    fn lt_sim_rsp(s: *const LtSim, out: *mut u8);
}

// lt_sim_step's drive bits and result bits (csrc/lthash_shim.cpp).
const DRIVE_CMD_VALID: u32 = 1 << 0;
const DRIVE_DATA_VALID: u32 = 1 << 1;
const DRIVE_RSP_READY: u32 = 1 << 2;
const CMD_TAKEN: u32 = 1 << 0;
const DATA_TAKEN: u32 = 1 << 1;
const RSP_TAKEN: u32 = 1 << 2;
const RSP_LAST: u32 = 1 << 3;
const IDLE: u32 = 1 << 4;

// Command opcodes (rtl/kv/lthash_unit.sv).
const OP_ADD: u32 = 0;
const OP_SUB: u32 = 1;
const OP_CLEAR: u32 = 2;
const OP_LOAD: u32 = 3;
const OP_READ: u32 = 4;
const OP_DIGEST: u32 = 5;
const OP_COMPARE: u32 = 6;

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

/// The model's MAX_DEPTH parameter (its hasher's chaining-value stack).
pub const MAX_DEPTH: u32 = parse_u32(env!("BPU_SIM_LTHASH_MAX_DEPTH"));
/// Longest entry encoding the model takes, in bytes: 2^(MAX_DEPTH+10) - 1.
pub const MAX_ENCODING_LEN: u64 = (1u64 << (MAX_DEPTH + 10)) - 1;
/// Bytes per data and response beat.
pub const BEAT: usize = 64;
/// Bytes of a lattice (1024 lanes of u16, little-endian).
pub const LATTICE_BYTES: usize = 2048;
/// Beats of a lattice.
const LATTICE_BEATS: usize = LATTICE_BYTES / BEAT;

/// Which of the unit's two lattices a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lattice {
    /// The live lattice (the state's digest).
    Live,
    /// The scratch lattice (a scrub's recomputation).
    Scratch,
}

impl Lattice {
    fn bit(self) -> u32 {
        match self {
            Lattice::Live => 0,
            Lattice::Scratch => 1,
        }
    }
}

/// One entry job: add or subtract the vector of an encoded entry.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Subtract (remove the entry) instead of add.
    pub sub: bool,
    /// The lattice to accumulate into.
    pub lattice: Lattice,
    /// The entry's encoding (`u64 LE len(contract) ‖ contract ‖ … ‖ value`).
    pub encoding: &'a [u8],
}

/// Errors of the LtHash16 unit model.
#[derive(Debug, thiserror::Error)]
pub enum LtHashSimError {
    #[error("the model could not be created")]
    Create,
    #[error("an entry encoding of {len} bytes is longer than the model's maximum of {max}")]
    TooLong { len: usize, max: u64 },
    #[error(
        "no completion within {limit} cycles for {what} ({cmds_in} of {cmds} commands, \
         {beats_in} of {beats} data beats taken, {rsp_out} of {rsp} response beats out)"
    )]
    Timeout {
        limit: u64,
        what: &'static str,
        cmds_in: usize,
        cmds: usize,
        beats_in: usize,
        beats: usize,
        rsp_out: usize,
        rsp: usize,
    },
    #[error("the unit broke the stream protocol: {0}")]
    Protocol(&'static str),
}

/// One command as offered on s_cmd.
#[derive(Clone, Copy)]
struct Cmd {
    op: u32,
    scratch: u32,
    len: u64,
}

/// The standalone LtHash16 unit model. Not `Send`: it stays on the thread that made it.
pub struct LtHashSim {
    raw: NonNull<LtSim>,
    last_cycles: u64,
    max_cycles: Option<u64>,
    data_permille: u16,
    rsp_permille: u16,
    rng: u64,
    pad: u8,
}

impl LtHashSim {
    /// Creates a model, resets it and clears both lattices.
    pub fn new() -> Result<LtHashSim, LtHashSimError> {
        // SAFETY: lt_sim_new has no preconditions; it returns a new model or null.
        let raw = NonNull::new(unsafe { lt_sim_new() }).ok_or(LtHashSimError::Create)?;
        let mut sim = LtHashSim {
            raw,
            last_cycles: 0,
            max_cycles: None,
            data_permille: 1000,
            rsp_permille: 1000,
            rng: 1,
            pad: 0xa5,
        };
        sim.reset()?;
        Ok(sim)
    }

    /// Resets the unit (4 cycles of rst_ni low), dropping anything in progress, and clears both
    /// lattices (their contents are undefined after a reset).
    pub fn reset(&mut self) -> Result<(), LtHashSimError> {
        // SAFETY: `raw` is a live model owned by `self` (freed only in Drop).
        unsafe { lt_sim_reset(self.raw.as_ptr(), 4) }
        self.clear(Lattice::Live)?;
        self.clear(Lattice::Scratch)?;
        Ok(())
    }

    /// Clock cycles simulated since the model was created (resets included).
    pub fn cycles(&self) -> u64 {
        // SAFETY: `raw` is a live model owned by `self`.
        unsafe { lt_sim_cycles(self.raw.as_ptr()) }
    }

    /// Cycles of the last successful operation: from the cycle its first command was offered to
    /// the cycle after which the unit was idle again with every response beat taken, both
    /// included.
    pub fn last_cycles(&self) -> u64 {
        self.last_cycles
    }

    /// Overrides the cycle limit of every following operation (`None`: a bound from its size).
    pub fn set_cycle_limit(&mut self, limit: Option<u64>) {
        self.max_cycles = limit;
    }

    /// Per mille of cycles in which the next data beat is offered and in which the response
    /// consumer is ready (1000 = always), the stall pattern's seed, and the byte that fills a
    /// last partial beat of an encoding.
    pub fn set_stalls(&mut self, data_permille: u16, rsp_permille: u16, seed: u64, pad: u8) {
        self.data_permille = data_permille.clamp(1, 1000);
        self.rsp_permille = rsp_permille.clamp(1, 1000);
        self.rng = seed | 1;
        self.pad = pad;
    }

    /// Adds the vector of one encoded entry to `lattice`.
    pub fn add(&mut self, lattice: Lattice, encoding: &[u8]) -> Result<(), LtHashSimError> {
        self.entries(&[Entry {
            sub: false,
            lattice,
            encoding,
        }])
    }

    /// Subtracts the vector of one encoded entry from `lattice`.
    pub fn sub(&mut self, lattice: Lattice, encoding: &[u8]) -> Result<(), LtHashSimError> {
        self.entries(&[Entry {
            sub: true,
            lattice,
            encoding,
        }])
    }

    /// Runs entry jobs back to back (each command offered as soon as the previous one was
    /// taken, the encodings' beats one stream); [`LtHashSim::last_cycles`] is the batch's total.
    pub fn entries(&mut self, entries: &[Entry<'_>]) -> Result<(), LtHashSimError> {
        let mut cmds = Vec::with_capacity(entries.len());
        let mut data = Vec::new();
        for e in entries {
            if e.encoding.len() as u64 > MAX_ENCODING_LEN {
                return Err(LtHashSimError::TooLong {
                    len: e.encoding.len(),
                    max: MAX_ENCODING_LEN,
                });
            }
            cmds.push(Cmd {
                op: if e.sub { OP_SUB } else { OP_ADD },
                scratch: e.lattice.bit(),
                len: e.encoding.len() as u64,
            });
            for chunk in e.encoding.chunks(BEAT) {
                let mut beat = [self.pad; BEAT];
                beat[..chunk.len()].copy_from_slice(chunk);
                data.push(beat);
            }
        }
        self.exec(&cmds, &data, &[], "entry jobs").map(|_| ())
    }

    /// Sets `lattice` to zero.
    pub fn clear(&mut self, lattice: Lattice) -> Result<(), LtHashSimError> {
        let cmd = Cmd {
            op: OP_CLEAR,
            scratch: lattice.bit(),
            len: 0,
        };
        self.exec(&[cmd], &[], &[], "clear").map(|_| ())
    }

    /// Sets `lattice` to the 2048 given bytes (lanes little-endian).
    pub fn load(
        &mut self,
        lattice: Lattice,
        bytes: &[u8; LATTICE_BYTES],
    ) -> Result<(), LtHashSimError> {
        let cmd = Cmd {
            op: OP_LOAD,
            scratch: lattice.bit(),
            len: 0,
        };
        let data: Vec<[u8; BEAT]> = bytes
            .chunks_exact(BEAT)
            .map(|c| {
                let mut b = [0u8; BEAT];
                b.copy_from_slice(c);
                b
            })
            .collect();
        self.exec(&[cmd], &data, &[], "load").map(|_| ())
    }

    /// The 2048 bytes of `lattice` (lanes little-endian).
    pub fn read(&mut self, lattice: Lattice) -> Result<[u8; LATTICE_BYTES], LtHashSimError> {
        let cmd = Cmd {
            op: OP_READ,
            scratch: lattice.bit(),
            len: 0,
        };
        let mut last = [false; LATTICE_BEATS];
        last[LATTICE_BEATS - 1] = true;
        let beats = self.exec(&[cmd], &[], &last, "read")?;
        let mut out = [0u8; LATTICE_BYTES];
        for (o, b) in out.chunks_exact_mut(BEAT).zip(beats.iter()) {
            o.copy_from_slice(b);
        }
        Ok(out)
    }

    /// The 32-byte digest of `lattice`: BLAKE3 derive-key ("bpu state LtHash16 digest v1") of
    /// its 2048 bytes.
    pub fn digest(&mut self, lattice: Lattice) -> Result<[u8; 32], LtHashSimError> {
        let cmd = Cmd {
            op: OP_DIGEST,
            scratch: lattice.bit(),
            len: 0,
        };
        let beats = self.exec(&[cmd], &[], &[true], "digest")?;
        let beat = beats
            .first()
            .ok_or(LtHashSimError::Protocol("no digest beat"))?;
        if beat[32..].iter().any(|&b| b != 0) {
            return Err(LtHashSimError::Protocol(
                "digest beat bytes 32..63 not zero",
            ));
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(&beat[..32]);
        Ok(d)
    }

    /// Whether the live and scratch lattices are equal.
    pub fn compare(&mut self) -> Result<bool, LtHashSimError> {
        let cmd = Cmd {
            op: OP_COMPARE,
            scratch: 0,
            len: 0,
        };
        let beats = self.exec(&[cmd], &[], &[true], "compare")?;
        let beat = beats
            .first()
            .ok_or(LtHashSimError::Protocol("no compare beat"))?;
        if beat[0] > 1 || beat[1..].iter().any(|&b| b != 0) {
            return Err(LtHashSimError::Protocol("compare beat is not 0 or 1"));
        }
        Ok(beat[0] == 1)
    }

    fn step(&mut self, drive: u32) -> u32 {
        // SAFETY: `raw` is a live model owned by `self`.
        unsafe { lt_sim_step(self.raw.as_ptr(), drive) }
    }

    fn set_cmd(&mut self, c: Cmd) {
        // SAFETY: `raw` is a live model owned by `self`.
        unsafe { lt_sim_set_cmd(self.raw.as_ptr(), c.op, c.scratch, c.len) }
    }

    fn set_data(&mut self, beat: &[u8; BEAT]) {
        // SAFETY: `raw` is a live model owned by `self`; `beat` is 64 readable bytes.
        unsafe { lt_sim_set_data(self.raw.as_ptr(), beat.as_ptr()) }
    }

    fn rsp(&self) -> [u8; BEAT] {
        let mut out = [0u8; BEAT];
        // SAFETY: `raw` is a live model owned by `self`; `out` is 64 writable bytes.
        unsafe { lt_sim_rsp(self.raw.as_ptr(), out.as_mut_ptr()) }
        out
    }

    fn chance(&mut self, permille: u16) -> bool {
        if permille >= 1000 {
            return true;
        }
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 1000) < u64::from(permille)
    }

    /// Offers `cmds` in order, streams `data`, takes one response beat per entry of `last` (its
    /// expected `m_rsp_last_o`), until the unit is idle. On error: reset and clear.
    fn exec(
        &mut self,
        cmds: &[Cmd],
        data: &[[u8; BEAT]],
        last: &[bool],
        what: &'static str,
    ) -> Result<Vec<[u8; BEAT]>, LtHashSimError> {
        let result = self.exec_inner(cmds, data, last, what);
        match &result {
            Ok((_, n)) => self.last_cycles = *n,
            Err(_) => {
                // The unit may be anywhere in a command: start the next one from reset. A
                // failure of the clean-up itself is dropped; the original error is the news.
                // SAFETY: `raw` is a live model owned by `self`.
                unsafe { lt_sim_reset(self.raw.as_ptr(), 4) }
                for l in [Lattice::Live, Lattice::Scratch] {
                    let c = Cmd {
                        op: OP_CLEAR,
                        scratch: l.bit(),
                        len: 0,
                    };
                    let _ = self.exec_inner(&[c], &[], &[], "clear after an error");
                }
            }
        }
        result.map(|(beats, _)| beats)
    }

    fn exec_inner(
        &mut self,
        cmds: &[Cmd],
        data: &[[u8; BEAT]],
        last: &[bool],
        what: &'static str,
    ) -> Result<(Vec<[u8; BEAT]>, u64), LtHashSimError> {
        let stall = |permille: u16| 1000 / u64::from(permille.max(1));
        let limit = self.max_cycles.unwrap_or_else(|| {
            256 + 64 * cmds.len() as u64 * stall(self.rsp_permille)
                + 12 * data.len() as u64 * stall(self.data_permille)
                + 4 * last.len() as u64 * stall(self.rsp_permille)
        });
        let (mut ci, mut di) = (0usize, 0usize);
        let mut beats = Vec::with_capacity(last.len());
        let mut n = 0u64;
        loop {
            if n >= limit {
                return Err(LtHashSimError::Timeout {
                    limit,
                    what,
                    cmds_in: ci,
                    cmds: cmds.len(),
                    beats_in: di,
                    beats: data.len(),
                    rsp_out: beats.len(),
                    rsp: last.len(),
                });
            }
            let mut drive = 0;
            if let Some(&c) = cmds.get(ci) {
                self.set_cmd(c);
                drive |= DRIVE_CMD_VALID;
            }
            if let Some(b) = data.get(di) {
                if self.chance(self.data_permille) {
                    self.set_data(b);
                    drive |= DRIVE_DATA_VALID;
                }
            }
            if self.chance(self.rsp_permille) {
                drive |= DRIVE_RSP_READY;
            }
            let r = self.step(drive);
            n += 1;
            if r & CMD_TAKEN != 0 {
                ci += 1;
            }
            if r & DATA_TAKEN != 0 {
                di += 1;
            }
            if r & RSP_TAKEN != 0 {
                let Some(&want_last) = last.get(beats.len()) else {
                    return Err(LtHashSimError::Protocol(
                        "more response beats than expected",
                    ));
                };
                if (r & RSP_LAST != 0) != want_last {
                    return Err(LtHashSimError::Protocol("m_rsp_last_o on the wrong beat"));
                }
                beats.push(self.rsp());
            }
            if ci == cmds.len() && di == data.len() && beats.len() == last.len() && r & IDLE != 0 {
                return Ok((beats, n));
            }
        }
    }
}

impl Drop for LtHashSim {
    fn drop(&mut self) {
        // SAFETY: `raw` came from lt_sim_new and is freed exactly once, here.
        unsafe { lt_sim_free(self.raw.as_ptr()) }
    }
}
