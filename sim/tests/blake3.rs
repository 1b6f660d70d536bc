//! The BLAKE3 hasher RTL alone (bpu_sim::blake3) against the official test vectors and the `blake3` crate.
//!
//! Run with `cargo test -p bpu-sim --test blake3 --release -- --nocapture` to see the cycle counts.

use bpu_sim::blake3::{
    Blake3Sim, Blake3SimError, Job, Mode, Options, BLOCK_LEN, DERIVE_KEY_CONTEXT,
    DERIVE_KEY_MATERIAL, IV_BYTES, KEYED_HASH, MAX_INPUT_LEN,
};
use std::path::Path;

/// The context of the state digest's entry vectors (docs/state.md, "The digest: LtHash16").
const ENTRY_CONTEXT: &str = "bpu state LtHash16 entry v1";

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn blocks_for(bytes: usize) -> u32 {
    bytes.div_ceil(BLOCK_LEN).max(1) as u32
}

/// The crate's XOF output of `n` bytes for the same mode.
fn reference(mode: Mode<'_>, input: &[u8], n: usize) -> Vec<u8> {
    let mut h = match mode {
        Mode::Hash => blake3::Hasher::new(),
        Mode::Keyed(k) => blake3::Hasher::new_keyed(k),
        Mode::DeriveKey(ctx) => {
            let ctx = std::str::from_utf8(ctx).expect("test contexts are UTF-8");
            blake3::Hasher::new_derive_key(ctx)
        }
        Mode::Raw { .. } => panic!("no crate reference for raw mode; compare with DeriveKey"),
    };
    h.update(input);
    let mut out = vec![0u8; n];
    h.finalize_xof().fill(&mut out);
    out
}

/// Fails with the first differing byte instead of two long byte lists.
#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    match at {
        Some(i) => panic!(
            "{what}: first difference at byte {i} (block {}): got {:02x}, want {:02x} \
             ({} and {} bytes)",
            i / BLOCK_LEN,
            got[i],
            want[i],
            got.len(),
            want.len()
        ),
        None => panic!("{what}: {} bytes, want {}", got.len(), want.len()),
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn vectors() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/blake3/test_vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("test_vectors.json parses")
}

/// Every official case of one mode at its full extended length (131 bytes).
fn official(field: &str) {
    let v = vectors();
    let key: [u8; 32] = v["key"]
        .as_str()
        .expect("key")
        .as_bytes()
        .try_into()
        .expect("32-byte key");
    let context = v["context_string"].as_str().expect("context_string");
    let context_key = blake3::hazmat::hash_derive_key_context(context);
    let cases = v["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30, "expected the full vector set");
    let mut sim = Blake3Sim::new().expect("model");
    for case in cases {
        let len = case["input_len"].as_u64().expect("input_len") as usize;
        let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let expected = hex_decode(case[field].as_str().expect("expected output"));
        let blocks = blocks_for(expected.len());
        let modes: Vec<Mode<'_>> = match field {
            "hash" => vec![
                Mode::Hash,
                Mode::Raw {
                    key: &IV_BYTES,
                    flags: 0,
                },
            ],
            "keyed_hash" => vec![
                Mode::Keyed(&key),
                Mode::Raw {
                    key: &key,
                    flags: KEYED_HASH,
                },
            ],
            _ => vec![
                Mode::DeriveKey(context.as_bytes()),
                Mode::Raw {
                    key: &context_key,
                    flags: DERIVE_KEY_MATERIAL,
                },
            ],
        };
        for mode in modes {
            let out = sim
                .hash(mode, &input, blocks)
                .unwrap_or_else(|e| panic!("{field} len {len} {mode:?}: {e}"));
            assert_bytes(
                &out[..expected.len()],
                &expected,
                &format!("{field}, input_len {len}, {mode:?}"),
            );
        }
    }
}

#[test]
fn official_vectors_hash() {
    official("hash");
}

#[test]
fn official_vectors_keyed_hash() {
    official("keyed_hash");
}

#[test]
fn official_vectors_derive_key() {
    official("derive_key");
}

/// The context key computed by the hasher itself in raw mode (IV, DERIVE_KEY_CONTEXT) equals the
/// crate's, and feeds a raw DERIVE_KEY_MATERIAL job.
#[test]
fn raw_mode_context_key_two_jobs() {
    let mut sim = Blake3Sim::new().expect("model");
    let long = "a context string longer than one block, so that hashing it takes more than one \
                compression of its chunk";
    for ctx in [ENTRY_CONTEXT, "", long] {
        let ck = sim
            .hash(
                Mode::Raw {
                    key: &IV_BYTES,
                    flags: DERIVE_KEY_CONTEXT,
                },
                ctx.as_bytes(),
                1,
            )
            .expect("context key job");
        let want = blake3::hazmat::hash_derive_key_context(ctx);
        assert_bytes(&ck[..32], &want, &format!("context key of {ctx:?}"));
        let key: [u8; 32] = ck[..32].try_into().expect("32 bytes");
        let x = random_bytes(1500, 7);
        let out = sim
            .hash(
                Mode::Raw {
                    key: &key,
                    flags: DERIVE_KEY_MATERIAL,
                },
                &x,
                5,
            )
            .expect("material job");
        let want = reference(Mode::DeriveKey(ctx.as_bytes()), &x, 5 * BLOCK_LEN);
        assert_bytes(
            &out,
            &want,
            &format!("material with the context key of {ctx:?}"),
        );
    }
}

/// Derive-key jobs whose context itself spans several chunks (the context's own tree).
#[test]
fn derive_key_long_contexts() {
    let mut sim = Blake3Sim::new().expect("model");
    for (i, clen) in [1usize, 63, 64, 65, 1023, 1024, 1025, 2048, 3073, 5000]
        .into_iter()
        .enumerate()
    {
        let ctx: String = random_bytes(clen, clen as u64)
            .iter()
            .map(|b| char::from(b'a' + b % 26))
            .collect();
        let x = random_bytes([0usize, 40, 1024, 2049][i % 4], i as u64);
        let blocks = [1u32, 32, 3][i % 3];
        let mode = Mode::DeriveKey(ctx.as_bytes());
        let out = sim
            .hash(mode, &x, blocks)
            .unwrap_or_else(|e| panic!("context of {clen} bytes: {e}"));
        let want = reference(mode, &x, blocks as usize * BLOCK_LEN);
        assert_bytes(
            &out,
            &want,
            &format!("context of {clen} bytes, input {}", x.len()),
        );
    }
}

/// Every length 0..=3000 against the crate: each in hash mode and in one of the other modes in
/// rotation, the XOF length 1..=33 blocks, one model for all jobs.
#[test]
fn every_length_to_3000() {
    let mut sim = Blake3Sim::new().expect("model");
    let key: [u8; 32] = random_bytes(32, 99).try_into().expect("32 bytes");
    let ctx_key = blake3::hazmat::hash_derive_key_context(ENTRY_CONTEXT);
    let mut cycles = 0u64;
    for len in 0..=3000usize {
        let input = random_bytes(len, len as u64);
        let blocks = 1 + (len * 7 % 33) as u32;
        let ctx_owned = format!("ctx {len} {}", "x".repeat(len % 80));
        let other = match len % 3 {
            0 => (Mode::Keyed(&key), Mode::Keyed(&key)),
            1 => (
                Mode::DeriveKey(ctx_owned.as_bytes()),
                Mode::DeriveKey(ctx_owned.as_bytes()),
            ),
            _ => (
                Mode::Raw {
                    key: &ctx_key,
                    flags: DERIVE_KEY_MATERIAL,
                },
                Mode::DeriveKey(ENTRY_CONTEXT.as_bytes()),
            ),
        };
        for (mode, refmode) in [(Mode::Hash, Mode::Hash), other] {
            let out = sim
                .hash(mode, &input, blocks)
                .unwrap_or_else(|e| panic!("len {len} {mode:?}: {e}"));
            cycles += sim.last_cycles();
            let want = reference(refmode, &input, blocks as usize * BLOCK_LEN);
            assert_bytes(
                &out,
                &want,
                &format!("len {len}, {mode:?}, {blocks} blocks"),
            );
        }
    }
    println!("every_length_to_3000: {cycles} cycles in all");
}

/// Chunk and tree boundaries up to 70,000 bytes, all modes, XOF lengths 1..=40 blocks.
#[test]
fn long_inputs_and_tree_boundaries() {
    let mut sim = Blake3Sim::new().expect("model");
    let key: [u8; 32] = random_bytes(32, 5).try_into().expect("32 bytes");
    let ctx = "long inputs";
    let mut lens = vec![
        5000, 8191, 8192, 8193, 16385, 31744, 33792, 50000, 69999, 70000,
    ];
    for b in [1024usize, 2048, 3072, 4096, 65536] {
        lens.extend([b - 1, b, b + 1]);
    }
    for (i, &len) in lens.iter().enumerate() {
        let input = random_bytes(len, 1000 + len as u64);
        let blocks = [1u32, 2, 17, 32, 33, 40][i % 6];
        for mode in [
            Mode::Hash,
            Mode::Keyed(&key),
            Mode::DeriveKey(ctx.as_bytes()),
        ] {
            let out = sim
                .hash(mode, &input, blocks)
                .unwrap_or_else(|e| panic!("len {len} {mode:?}: {e}"));
            let want = reference(mode, &input, blocks as usize * BLOCK_LEN);
            assert_bytes(
                &out,
                &want,
                &format!("len {len}, {mode:?}, {blocks} blocks"),
            );
        }
    }
    // Throughput of a long input: cycles per 64-byte block (one output block).
    for len in [65536usize, 70000] {
        let input = random_bytes(len, 3);
        let out = sim.hash(Mode::Hash, &input, 1).expect("long hash");
        assert_bytes(
            &out,
            &reference(Mode::Hash, &input, BLOCK_LEN),
            &format!("len {len}"),
        );
        let c = sim.last_cycles();
        println!(
            "hash of {len} bytes: {c} cycles, {:.2} cycles per 64-byte block",
            c as f64 / len.div_ceil(BLOCK_LEN) as f64
        );
    }
}

/// The longest input the model takes (2^(MAX_DEPTH+10) - 1 bytes: 2^MAX_DEPTH chunks, the last
/// one short) fills the whole chaining-value stack; 1 MiB and one byte more on the way.
#[test]
fn maximum_length_fills_the_stack() {
    let mut sim = Blake3Sim::new().expect("model");
    for len in [1usize << 20, (1 << 20) + 1, MAX_INPUT_LEN as usize] {
        let input = random_bytes(len, len as u64);
        let out = sim
            .hash(Mode::Hash, &input, 2)
            .unwrap_or_else(|e| panic!("len {len}: {e}"));
        assert_bytes(
            &out,
            &reference(Mode::Hash, &input, 128),
            &format!("len {len}"),
        );
        println!("hash of {len} bytes: {} cycles", sim.last_cycles());
    }
}

/// The KV engine's case: an entry's 2048-byte LtHash16 vector (derive-key XOF), alone and as a
/// back-to-back batch of entries.
#[test]
fn lthash_entry_vector() {
    let mut sim = Blake3Sim::new().expect("model");
    let ctx_key = blake3::hazmat::hash_derive_key_context(ENTRY_CONTEXT);
    let raw = Mode::Raw {
        key: &ctx_key,
        flags: DERIVE_KEY_MATERIAL,
    };
    let entry_vector = |entry: &[u8]| {
        let mut v = vec![0u8; 2048];
        blake3::Hasher::new_derive_key(ENTRY_CONTEXT)
            .update(entry)
            .finalize_xof()
            .fill(&mut v);
        v
    };
    for len in [0usize, 1, 40, 63, 64, 65, 100, 200, 1024, 1025, 3000] {
        let entry = random_bytes(len, 40 + len as u64);
        let expected = entry_vector(&entry);
        let by_context = sim
            .hash(Mode::DeriveKey(ENTRY_CONTEXT.as_bytes()), &entry, 32)
            .expect("derive-key job");
        let ctx_cycles = sim.last_cycles();
        assert_bytes(
            &by_context,
            &expected,
            &format!("DeriveKey, entry of {len} bytes"),
        );
        let by_key = sim.hash(raw, &entry, 32).expect("raw job");
        let key_cycles = sim.last_cycles();
        assert_bytes(&by_key, &expected, &format!("Raw, entry of {len} bytes"));
        println!(
            "entry of {len} bytes -> 2048 bytes: {key_cycles} cycles with the context key, \
             {ctx_cycles} with the context hashed in the job"
        );
        if len <= 64 {
            // 32 root compressions issued one per cycle, plus the pipeline's 7 cycles.
            assert!(
                key_cycles <= 40,
                "{key_cycles} cycles for a {len}-byte entry"
            );
        }
    }
    // A batch of 40-byte entries back to back: the next header is taken while the previous
    // entry's last output blocks are still in the pipeline.
    let entries: Vec<Vec<u8>> = (0..16).map(|i| random_bytes(40, 500 + i)).collect();
    let jobs: Vec<Job<'_>> = entries
        .iter()
        .map(|e| Job {
            mode: raw,
            input: e,
            out_blocks: 32,
        })
        .collect();
    let runs = sim.run_jobs(&jobs, &Options::default()).expect("batch");
    assert_eq!(runs.len(), entries.len());
    for (i, (run, e)) in runs.iter().zip(&entries).enumerate() {
        assert_bytes(&run.output, &entry_vector(e), &format!("batch entry {i}"));
    }
    let total = sim.last_cycles();
    println!(
        "16 entries of 40 bytes -> 2048 bytes each, back to back: {total} cycles, {:.1} per entry",
        total as f64 / 16.0
    );
}

/// Mixed jobs back to back (every mode, empty inputs, several chunks), with and without stalls.
#[test]
fn back_to_back_jobs() {
    let mut sim = Blake3Sim::new().expect("model");
    let key: [u8; 32] = random_bytes(32, 21).try_into().expect("32 bytes");
    let ctx_key = blake3::hazmat::hash_derive_key_context("b2b");
    let inputs: Vec<Vec<u8>> = [0usize, 1, 64, 65, 1024, 1025, 3000, 0, 40, 2049, 128, 7]
        .iter()
        .enumerate()
        .map(|(i, &n)| random_bytes(n, 900 + i as u64))
        .collect();
    let modes = [
        Mode::Hash,
        Mode::Keyed(&key),
        Mode::DeriveKey(b"b2b"),
        Mode::Raw {
            key: &ctx_key,
            flags: DERIVE_KEY_MATERIAL,
        },
    ];
    let jobs: Vec<Job<'_>> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| Job {
            mode: modes[i % 4],
            input: x,
            out_blocks: [1u32, 32, 2, 33, 5][i % 5],
        })
        .collect();
    let stalls = [
        Options::default(),
        Options {
            out_ready_permille: 400,
            msg_valid_permille: 600,
            seed: 9,
            ..Options::default()
        },
    ];
    for opts in &stalls {
        let runs = sim.run_jobs(&jobs, opts).expect("batch");
        assert_eq!(runs.len(), jobs.len());
        for (i, (run, job)) in runs.iter().zip(&jobs).enumerate() {
            let refmode = match job.mode {
                Mode::Raw { .. } => Mode::DeriveKey(b"b2b"),
                m => m,
            };
            let want = reference(refmode, job.input, job.out_blocks as usize * BLOCK_LEN);
            assert_bytes(
                &run.output,
                &want,
                &format!(
                    "job {i} ({:?}, {} bytes), stalls {}",
                    job.mode,
                    job.input.len(),
                    opts.out_ready_permille
                ),
            );
        }
    }
}

/// Random back-pressure on the output and gaps on the input give the same bytes.
#[test]
fn stalled_streams_same_output() {
    let mut sim = Blake3Sim::new().expect("model");
    let key: [u8; 32] = random_bytes(32, 11).try_into().expect("32 bytes");
    let ctx = "stalls";
    let lens = [0usize, 1, 64, 65, 500, 1024, 1025, 2048, 2049, 5000, 9000];
    for (i, &len) in lens.iter().enumerate() {
        let input = random_bytes(len, 77 + len as u64);
        let blocks = [1u32, 3, 32, 33][i % 4];
        let mode = match i % 3 {
            0 => Mode::Hash,
            1 => Mode::Keyed(&key),
            _ => Mode::DeriveKey(ctx.as_bytes()),
        };
        let expected = reference(mode, &input, blocks as usize * BLOCK_LEN);
        let plain = sim
            .run(mode, &input, blocks, &Options::default())
            .expect("plain");
        assert_bytes(&plain.output, &expected, &format!("len {len}, no stalls"));
        for (seed, out_p, msg_p) in [(1u64, 300u16, 1000u16), (2, 50, 500), (3, 900, 100)] {
            let opts = Options {
                out_ready_permille: out_p,
                msg_valid_permille: msg_p,
                seed,
                pad: seed as u8,
                ..Options::default()
            };
            let run = sim.run(mode, &input, blocks, &opts).expect("stalled run");
            assert_bytes(
                &run.output,
                &expected,
                &format!("len {len}, stalls {out_p}/{msg_p}"),
            );
            assert!(
                run.cycles >= plain.cycles,
                "a stalled run cannot be faster ({} < {})",
                run.cycles,
                plain.cycles
            );
        }
    }
}

/// Bad jobs and stuck streams end in typed errors, and the model works afterwards.
#[test]
fn errors_are_typed_and_recoverable() {
    let mut sim = Blake3Sim::new().expect("model");
    assert!(matches!(
        sim.hash(Mode::Hash, b"abc", 0),
        Err(Blake3SimError::OutBlocks(0))
    ));
    let huge = vec![0u8; MAX_INPUT_LEN as usize + 1];
    assert!(matches!(
        sim.hash(Mode::Hash, &huge, 1),
        Err(Blake3SimError::TooLong { .. })
    ));
    // Nobody takes the output: the wait is bounded.
    let stuck = Options {
        out_ready_permille: 0,
        max_cycles: Some(500),
        ..Options::default()
    };
    match sim.run(Mode::Hash, b"abc", 4, &stuck) {
        Err(Blake3SimError::Timeout {
            stage, blocks_out, ..
        }) => {
            assert_eq!(stage, "output blocks");
            assert_eq!(blocks_out, 0);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Nobody sends the input.
    let starved = Options {
        msg_valid_permille: 0,
        max_cycles: Some(500),
        ..Options::default()
    };
    match sim.run(Mode::Hash, &[1u8; 200], 1, &starved) {
        Err(Blake3SimError::Timeout {
            stage, beats_in, ..
        }) => {
            assert_eq!(stage, "input beats to be taken");
            assert_eq!(beats_in, 0);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // A limit too short for the job.
    let short = Options {
        max_cycles: Some(20),
        ..Options::default()
    };
    assert!(matches!(
        sim.run(Mode::Hash, &[2u8; 3000], 1, &short),
        Err(Blake3SimError::Timeout { .. })
    ));
    // After each error the model was reset: a normal job is right.
    let out = sim.hash(Mode::Hash, b"abc", 2).expect("after errors");
    assert_bytes(&out, &reference(Mode::Hash, b"abc", 128), "after errors");
}
