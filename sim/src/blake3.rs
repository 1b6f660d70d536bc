//! The standalone Verilator model of `rtl/crypto/blake3_hasher.sv`: BLAKE3 jobs in, output bytes and cycle counts out.
//!
//! [`Blake3Sim`] owns one model (built by `build.rs` as `Vblake3_hasher`, driven through
//! `csrc/blake3_shim.cpp`) and runs one job at a time on the calling thread: it offers the job
//! header, streams the input as 64-byte beats (a last partial beat is padded with junk, which
//! the hasher must ignore), takes the output blocks, and counts clock cycles. Every wait is
//! bounded by a cycle limit and ends in a typed [`Blake3SimError`], never a hang; after an error
//! the model is reset so the next job starts clean. Random gaps on the input and random
//! back-pressure on the output ([`Options`]) exercise the handshakes.
//!
//! Start reading at [`Blake3Sim::run_jobs`].

use std::ptr::NonNull;

#[repr(C)]
struct B3Sim {
    _private: [u8; 0],
}

extern "C" {
    fn b3_sim_new() -> *mut B3Sim;
    fn b3_sim_free(s: *mut B3Sim);
    fn b3_sim_reset(s: *mut B3Sim, cycles: u32);
    fn b3_sim_cycles(s: *const B3Sim) -> u64;
    fn b3_sim_set_header(
        s: *mut B3Sim,
        mode: u32,
        key: *const u8,
        flags: u32,
        ctx_len: u64,
        len: u64,
        out_blocks: u32,
    );
    fn b3_sim_set_beat(s: *mut B3Sim, data: *const u8);
    fn b3_sim_step(s: *mut B3Sim, drive: u32) -> u32;
    fn b3_sim_out(s: *const B3Sim, out: *mut u8);
}

// b3_sim_step's drive bits and result bits (csrc/blake3_shim.cpp).
const DRIVE_HDR_VALID: u32 = 1 << 0;
const DRIVE_MSG_VALID: u32 = 1 << 1;
const DRIVE_OUT_READY: u32 = 1 << 2;
const HDR_TAKEN: u32 = 1 << 0;
const MSG_TAKEN: u32 = 1 << 1;
const OUT_TAKEN: u32 = 1 << 2;
const OUT_LAST: u32 = 1 << 3;
const BUSY: u32 = 1 << 4;

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

/// The model's MAX_DEPTH parameter: chaining-value stack entries.
pub const MAX_DEPTH: u32 = parse_u32(env!("BPU_SIM_BLAKE3_MAX_DEPTH"));
/// Longest input (and derive-key context) the model takes, in bytes: 2^(MAX_DEPTH+10) - 1.
pub const MAX_INPUT_LEN: u64 = (1u64 << (MAX_DEPTH + 10)) - 1;
/// Most output blocks per job: 2^OB_W - 1.
pub const MAX_OUT_BLOCKS: u32 = (1u32 << parse_u32(env!("BPU_SIM_BLAKE3_OB_W"))) - 1;
/// Bytes per message beat and per output block.
pub const BLOCK_LEN: usize = 64;

/// BLAKE3 flag KEYED_HASH (for [`Mode::Raw`]).
pub const KEYED_HASH: u8 = 0x10;
/// BLAKE3 flag DERIVE_KEY_CONTEXT (for [`Mode::Raw`]).
pub const DERIVE_KEY_CONTEXT: u8 = 0x20;
/// BLAKE3 flag DERIVE_KEY_MATERIAL (for [`Mode::Raw`]).
pub const DERIVE_KEY_MATERIAL: u8 = 0x40;

/// BLAKE3's IV as key bytes: `Mode::Raw { key: &IV_BYTES, flags: 0 }` is the plain hash.
pub const IV_BYTES: [u8; 32] = {
    const IV: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (IV[i / 4] >> (8 * (i % 4))) as u8;
        i += 1;
    }
    out
};

/// What a job hashes with: the header's mode, key and flags.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// `blake3::hash`.
    Hash,
    /// `blake3::keyed_hash` with this key.
    Keyed(&'a [u8; 32]),
    /// `blake3::Hasher::new_derive_key(context)`: the hasher hashes the context into the context
    /// key itself, in the same job (the context is streamed before the input).
    DeriveKey(&'a [u8]),
    /// Key words and base flags given directly (flag bits other than KEYED_HASH,
    /// DERIVE_KEY_CONTEXT and DERIVE_KEY_MATERIAL are ignored by the hardware); e.g. a
    /// precomputed context key with [`DERIVE_KEY_MATERIAL`].
    Raw { key: &'a [u8; 32], flags: u8 },
}

/// How to drive a job.
#[derive(Debug, Clone)]
pub struct Options {
    /// Give up after this many cycles (default: a bound from the job's size and the stall rates).
    pub max_cycles: Option<u64>,
    /// Per mille of cycles in which the output consumer is ready (1000 = always).
    pub out_ready_permille: u16,
    /// Per mille of cycles in which the next input beat is offered (1000 = always).
    pub msg_valid_permille: u16,
    /// Seed of the stall pattern.
    pub seed: u64,
    /// Byte that fills a last partial beat beyond the input (the hasher must ignore it).
    pub pad: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_cycles: None,
            out_ready_permille: 1000,
            msg_valid_permille: 1000,
            seed: 1,
            pad: 0xa5,
        }
    }
}

/// One job: a mode, the input and the number of 64-byte output blocks.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub mode: Mode<'a>,
    pub input: &'a [u8],
    pub out_blocks: u32,
}

/// A finished job.
#[derive(Debug, Clone)]
pub struct Run {
    /// `64 * out_blocks` bytes of output (the first 32 are the hash).
    pub output: Vec<u8>,
    /// Cycles from the cycle the job's header was first offered to the cycle its last output
    /// block was taken, both included (in a batch the header is offered as soon as the previous
    /// job's header was taken, so jobs overlap).
    pub cycles: u64,
}

/// Errors of a BLAKE3 job on the model.
#[derive(Debug, thiserror::Error)]
pub enum Blake3SimError {
    #[error("the model could not be created")]
    Create,
    #[error("{what} of {len} bytes is longer than the model's maximum of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: u64,
    },
    #[error("{0} output blocks: the model takes 1..={max}", max = MAX_OUT_BLOCKS)]
    OutBlocks(u32),
    #[error(
        "no progress within {limit} cycles waiting for the {stage} of job {job} \
         ({beats_in} of {beats} beats taken, {blocks_out} of {blocks} blocks out)"
    )]
    Timeout {
        limit: u64,
        stage: &'static str,
        job: usize,
        beats_in: usize,
        beats: usize,
        blocks_out: u32,
        blocks: u32,
    },
    #[error("the hasher broke the stream protocol: {0}")]
    Protocol(&'static str),
}

/// Cycles the model may stay busy after a job's last output block (the pipeline drains in 7).
const DRAIN_CYCLES: u64 = 32;

/// The standalone BLAKE3 hasher model. Not `Send`: it stays on the thread that made it.
pub struct Blake3Sim {
    raw: NonNull<B3Sim>,
    last_cycles: u64,
}

impl Blake3Sim {
    /// Creates a model and resets it.
    pub fn new() -> Result<Blake3Sim, Blake3SimError> {
        // SAFETY: b3_sim_new has no preconditions; it returns a new model or null.
        let raw = NonNull::new(unsafe { b3_sim_new() }).ok_or(Blake3SimError::Create)?;
        let mut sim = Blake3Sim {
            raw,
            last_cycles: 0,
        };
        sim.reset();
        Ok(sim)
    }

    /// Resets the hasher (4 cycles of rst_ni low), dropping any job in progress.
    pub fn reset(&mut self) {
        // SAFETY: `raw` is a live model owned by `self` (freed only in Drop).
        unsafe { b3_sim_reset(self.raw.as_ptr(), 4) }
    }

    /// Clock cycles simulated since the model was created (resets included).
    pub fn cycles(&self) -> u64 {
        // SAFETY: `raw` is a live model owned by `self`.
        unsafe { b3_sim_cycles(self.raw.as_ptr()) }
    }

    /// Cycles of the last successful job (see [`Run::cycles`]).
    pub fn last_cycles(&self) -> u64 {
        self.last_cycles
    }

    /// Hashes `input` in `mode` into `out_blocks` 64-byte blocks of output (BLAKE3's XOF
    /// output from byte 0), driving every stream at full rate.
    pub fn hash(
        &mut self,
        mode: Mode<'_>,
        input: &[u8],
        out_blocks: u32,
    ) -> Result<Vec<u8>, Blake3SimError> {
        self.run(mode, input, out_blocks, &Options::default())
            .map(|r| r.output)
    }

    /// Runs one job with the given stall pattern and cycle limit.
    pub fn run(
        &mut self,
        mode: Mode<'_>,
        input: &[u8],
        out_blocks: u32,
        opts: &Options,
    ) -> Result<Run, Blake3SimError> {
        let job = Job {
            mode,
            input,
            out_blocks,
        };
        let mut runs = self.run_jobs(&[job], opts)?;
        runs.pop()
            .ok_or(Blake3SimError::Protocol("no result for the job"))
    }

    /// Runs jobs back to back: each header is offered as soon as the previous one was taken, the
    /// input beats of all jobs form one stream, the output blocks are split by `m_out_last_o`.
    /// [`Blake3Sim::last_cycles`] is then the batch's total, from the first header offered to the
    /// last output block taken.
    pub fn run_jobs(
        &mut self,
        jobs: &[Job<'_>],
        opts: &Options,
    ) -> Result<Vec<Run>, Blake3SimError> {
        let result = self.run_inner(jobs, opts);
        match &result {
            Ok((_, total)) => self.last_cycles = *total,
            // The model may be anywhere in a job: start the next one from reset.
            Err(_) => self.reset(),
        }
        result.map(|(runs, _)| runs)
    }

    fn step(&mut self, drive: u32) -> u32 {
        // SAFETY: `raw` is a live model owned by `self`.
        unsafe { b3_sim_step(self.raw.as_ptr(), drive) }
    }

    fn set_header(&mut self, h: &Header<'_>) {
        // SAFETY: `raw` is a live model owned by `self`; `h.key` is 32 readable bytes.
        unsafe {
            b3_sim_set_header(
                self.raw.as_ptr(),
                h.code,
                h.key.as_ptr(),
                u32::from(h.flags),
                h.context.len() as u64,
                h.input.len() as u64,
                h.out_blocks,
            )
        }
    }

    fn set_beat(&mut self, beat: &[u8; BLOCK_LEN]) {
        // SAFETY: `raw` is a live model owned by `self`; `beat` is 64 readable bytes.
        unsafe { b3_sim_set_beat(self.raw.as_ptr(), beat.as_ptr()) }
    }

    fn run_inner(
        &mut self,
        jobs: &[Job<'_>],
        opts: &Options,
    ) -> Result<(Vec<Run>, u64), Blake3SimError> {
        let headers = jobs
            .iter()
            .map(Header::new)
            .collect::<Result<Vec<_>, _>>()?;
        // The beat stream: (job, part, beat index); per job, the context's beats, then the
        // input's, each part starting on a new beat.
        let mut beats: Vec<(usize, usize, usize)> = Vec::new();
        let mut beats_end = Vec::with_capacity(jobs.len()); // one past each job's last beat
        for (j, h) in headers.iter().enumerate() {
            for (p, part) in [h.context, h.input].iter().enumerate() {
                beats.extend((0..part.len().div_ceil(BLOCK_LEN)).map(|b| (j, p, b)));
            }
            beats_end.push(beats.len());
        }
        let beat_bytes = |(j, p, b): (usize, usize, usize)| {
            let mut beat = [opts.pad; BLOCK_LEN];
            let part = if p == 0 {
                headers[j].context
            } else {
                headers[j].input
            };
            let lo = b * BLOCK_LEN;
            let hi = part.len().min(lo + BLOCK_LEN);
            beat[..hi - lo].copy_from_slice(&part[lo..hi]);
            beat
        };
        let total_blocks: u64 = jobs.iter().map(|j| u64::from(j.out_blocks)).sum();
        let min_rate = u64::from(opts.out_ready_permille.min(opts.msg_valid_permille)).max(1);
        let limit = opts.max_cycles.unwrap_or_else(|| {
            let base = 1_000 + 24 * (beats.len() as u64 + 2 * total_blocks + 2 * jobs.len() as u64);
            if min_rate >= 1000 {
                base
            } else {
                base * 2_000 / min_rate
            }
        });

        let mut rng = opts.seed | 1;
        let mut chance = move |permille: u16| {
            if permille >= 1000 {
                return true;
            }
            // xorshift64*
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % 1000 < u64::from(permille)
        };

        let mut next_hdr = 0usize; // next header to offer
        let mut next_beat = 0usize; // next beat to offer
        let mut out_job = 0usize; // job whose output blocks are arriving
        let mut offered_at = vec![0u64; jobs.len()];
        let mut runs: Vec<Run> = Vec::with_capacity(jobs.len());
        let mut output = Vec::new();
        if let Some(h) = headers.first() {
            self.set_header(h);
        }
        if let Some(&b) = beats.first() {
            self.set_beat(&beat_bytes(b));
        }
        let mut cycles = 0u64;
        while out_job < jobs.len() {
            if cycles >= limit {
                let stage = if next_hdr <= out_job {
                    "header to be taken"
                } else if next_beat < beats_end[out_job] {
                    "input beats to be taken"
                } else {
                    "output blocks"
                };
                return Err(Blake3SimError::Timeout {
                    limit,
                    stage,
                    job: out_job,
                    beats_in: next_beat,
                    beats: beats.len(),
                    blocks_out: (output.len() / BLOCK_LEN) as u32,
                    blocks: jobs[out_job].out_blocks,
                });
            }
            let mut drive = 0;
            if next_hdr < jobs.len() {
                drive |= DRIVE_HDR_VALID;
            }
            if next_beat < beats.len() && chance(opts.msg_valid_permille) {
                drive |= DRIVE_MSG_VALID;
            }
            if chance(opts.out_ready_permille) {
                drive |= DRIVE_OUT_READY;
            }
            let r = self.step(drive);
            cycles += 1;
            if r & HDR_TAKEN != 0 {
                next_hdr += 1;
                if let Some(h) = headers.get(next_hdr) {
                    self.set_header(h);
                    offered_at[next_hdr] = cycles;
                }
            }
            if r & MSG_TAKEN != 0 {
                // The beat belongs to a job whose header was taken (this cycle at the latest).
                if beats[next_beat].0 >= next_hdr {
                    return Err(Blake3SimError::Protocol(
                        "a beat was taken before its header",
                    ));
                }
                next_beat += 1;
                if let Some(&b) = beats.get(next_beat) {
                    self.set_beat(&beat_bytes(b));
                }
            }
            if r & OUT_TAKEN != 0 {
                if out_job >= next_hdr {
                    return Err(Blake3SimError::Protocol(
                        "an output block came before its job's header",
                    ));
                }
                let mut block = [0u8; BLOCK_LEN];
                // SAFETY: `raw` is live; `block` is 64 writable bytes for the call.
                unsafe { b3_sim_out(self.raw.as_ptr(), block.as_mut_ptr()) };
                output.extend_from_slice(&block);
                let want = jobs[out_job].out_blocks as usize * BLOCK_LEN;
                let last = r & OUT_LAST != 0;
                if last != (output.len() == want) {
                    return Err(Blake3SimError::Protocol(
                        "m_out_last_o is not on exactly the job's last block",
                    ));
                }
                if last {
                    if next_beat < beats_end[out_job] {
                        return Err(Blake3SimError::Protocol(
                            "a job finished before taking all of its input beats",
                        ));
                    }
                    runs.push(Run {
                        output: std::mem::take(&mut output),
                        cycles: cycles - offered_at[out_job],
                    });
                    out_job += 1;
                }
            }
        }
        // The hasher must go idle with nothing more to say.
        for _ in 0..DRAIN_CYCLES {
            let r = self.step(DRIVE_OUT_READY);
            if r & OUT_TAKEN != 0 {
                return Err(Blake3SimError::Protocol(
                    "the hasher offered more after the last job's last block",
                ));
            }
            if r & BUSY == 0 {
                return Ok((runs, cycles));
            }
        }
        Err(Blake3SimError::Protocol(
            "the hasher stayed busy after the last job's last block",
        ))
    }
}

/// A job's header fields, checked against the model's limits.
struct Header<'a> {
    code: u32,
    key: [u8; 32],
    flags: u8,
    context: &'a [u8],
    input: &'a [u8],
    out_blocks: u32,
}

impl<'a> Header<'a> {
    fn new(job: &Job<'a>) -> Result<Header<'a>, Blake3SimError> {
        let too_long = |what, len: usize| Blake3SimError::TooLong {
            what,
            len,
            max: MAX_INPUT_LEN,
        };
        if job.input.len() as u64 > MAX_INPUT_LEN {
            return Err(too_long("input", job.input.len()));
        }
        if job.out_blocks == 0 || job.out_blocks > MAX_OUT_BLOCKS {
            return Err(Blake3SimError::OutBlocks(job.out_blocks));
        }
        let (code, key, flags, context): (u32, [u8; 32], u8, &[u8]) = match job.mode {
            Mode::Hash => (0, [0; 32], 0, &[]),
            Mode::Keyed(k) => (1, *k, 0, &[]),
            Mode::DeriveKey(c) => {
                if c.len() as u64 > MAX_INPUT_LEN {
                    return Err(too_long("derive-key context", c.len()));
                }
                (2, [0; 32], 0, c)
            }
            Mode::Raw { key, flags } => (3, *key, flags, &[]),
        };
        Ok(Header {
            code,
            key,
            flags,
            context,
            input: job.input,
            out_blocks: job.out_blocks,
        })
    }
}

impl Drop for Blake3Sim {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `b3_sim_new` and is freed exactly once, here.
        unsafe { b3_sim_free(self.raw.as_ptr()) }
    }
}
