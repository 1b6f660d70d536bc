//! The KV engine's LtHash16 unit RTL alone (bpu_sim::lthash) against the CPU lattice `bpu_runtime::state::LtHash`.
//!
//! Run with `cargo test -p bpu-runtime --test lthash_rtl -- --nocapture` to see the cycle counts.

use bpu_runtime::state::{entry_encoding, LtHash, LATTICE_BYTES};
use bpu_runtime::StateVersion;
use bpu_sim::blake3::{Blake3Sim, Mode, DERIVE_KEY_CONTEXT, DERIVE_KEY_MATERIAL, IV_BYTES};
use bpu_sim::lthash::{Entry, Lattice, LtHashSim, LtHashSimError};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::Path;

const ENTRY_CONTEXT: &str = "bpu state LtHash16 entry v1";
const DIGEST_CONTEXT: &str = "bpu state LtHash16 digest v1";

/// One state entry.
#[derive(Clone, Debug)]
struct Ent {
    contract: String,
    key: Vec<u8>,
    value: Vec<u8>,
    version: StateVersion,
}

impl Ent {
    fn encoding(&self) -> Vec<u8> {
        entry_encoding(&self.contract, &self.key, &self.value, self.version)
    }
    fn insert(&self, l: &mut LtHash) {
        l.insert(&self.contract, &self.key, &self.value, self.version);
    }
    fn remove(&self, l: &mut LtHash) {
        l.remove(&self.contract, &self.key, &self.value, self.version);
    }
}

/// A random entry: mostly small; sometimes an empty value, a long key, or (when `big`) a value
/// of up to 70,000 bytes.
fn random_entry(rng: &mut StdRng, big: bool) -> Ent {
    let clen = rng.gen_range(1..=24);
    let contract: String = (0..clen)
        .map(|_| char::from(rng.gen_range(b'a'..=b'z')))
        .collect();
    let klen = match rng.gen_range(0..10) {
        0 => rng.gen_range(200..=4096),
        _ => rng.gen_range(0..=40),
    };
    let vlen = if big {
        rng.gen_range(60_000..=70_000)
    } else {
        match rng.gen_range(0..6) {
            0 => 0,
            1 => rng.gen_range(100..=1500),
            _ => rng.gen_range(1..=40),
        }
    };
    let mut key = vec![0u8; klen];
    rng.fill(&mut key[..]);
    let mut value = vec![0u8; vlen];
    rng.fill(&mut value[..]);
    Ent {
        contract,
        key,
        value,
        version: StateVersion {
            height: rng.gen(),
            index: rng.gen(),
        },
    }
}

fn check_equal(sim: &mut LtHashSim, lattice: Lattice, oracle: &LtHash, what: &str) {
    let bytes = sim.read(lattice).expect("read");
    assert!(
        bytes[..] == oracle.to_bytes()[..],
        "{what}: lattice differs from the CPU's"
    );
    assert_eq!(
        sim.digest(lattice).expect("digest"),
        oracle.digest(),
        "{what}: digest differs from the CPU's"
    );
}

/// The 32 key bytes of the `localparam logic [255:0] NAME = 256'h…;` in rtl/kv/lthash_unit.sv
/// (byte k in bits [8k+7:8k]).
fn rtl_key(name: &str) -> [u8; 32] {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rtl/kv/lthash_unit.sv");
    let src = std::fs::read_to_string(&path).expect("read rtl/kv/lthash_unit.sv");
    let at = src
        .find(&format!("localparam logic [255:0] {name} ="))
        .unwrap_or_else(|| panic!("{name} not in lthash_unit.sv"));
    let rest = &src[at..];
    let lit = rest
        .find("256'h")
        .map(|i| &rest[i + 5..])
        .expect("256'h literal");
    let hex: String = lit
        .chars()
        .take_while(|c| *c != ';')
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(hex.len(), 64, "{name}: 64 hex digits");
    let mut out = [0u8; 32];
    for (k, o) in out.iter_mut().enumerate() {
        // Byte k is bits [8k+7:8k]: the (31-k)-th byte pair of the MSB-first literal.
        let i = 2 * (31 - k);
        *o = u8::from_str_radix(&hex[i..i + 2], 16).expect("hex");
    }
    out
}

#[test]
fn context_key_constants_match_the_hasher() {
    let mut b3 = Blake3Sim::new().expect("blake3 model");
    for (name, ctx) in [
        ("ENTRY_CTX_KEY", ENTRY_CONTEXT),
        ("DIGEST_CTX_KEY", DIGEST_CONTEXT),
    ] {
        let key = rtl_key(name);
        // The context key as the hasher computes it: key = IV, DERIVE_KEY_CONTEXT.
        let hw = b3
            .hash(
                Mode::Raw {
                    key: &IV_BYTES,
                    flags: DERIVE_KEY_CONTEXT,
                },
                ctx.as_bytes(),
                1,
            )
            .expect("context key job");
        assert_eq!(
            &hw[..32],
            &key[..],
            "{name} is not the context key of {ctx:?}"
        );
        // And used as the unit uses it, it is the derive-key of the hasher's DERIVE mode and of
        // the crate.
        let material = b"some key material, longer than one block of sixty-four bytes ....";
        let raw = b3
            .hash(
                Mode::Raw {
                    key: &key,
                    flags: DERIVE_KEY_MATERIAL,
                },
                material,
                1,
            )
            .expect("raw job");
        let derive = b3
            .hash(Mode::DeriveKey(ctx.as_bytes()), material, 1)
            .expect("derive job");
        assert_eq!(
            raw[..32],
            derive[..32],
            "{name}: RAW with it differs from DERIVE"
        );
        assert_eq!(
            raw[..32],
            blake3::derive_key(ctx, material),
            "{name}: crate"
        );
    }
}

#[test]
fn random_histories_match_the_cpu() {
    let mut sim = LtHashSim::new().expect("model");
    let mut rng = StdRng::seed_from_u64(0x17_4a54);
    let mut oracle = LtHash::new();
    let mut present: Vec<Ent> = Vec::new();
    let mut bigs = 0;
    for step in 0..70 {
        let remove = !present.is_empty() && rng.gen_range(0..3) == 0;
        if remove {
            let e = present.swap_remove(rng.gen_range(0..present.len()));
            sim.sub(Lattice::Live, &e.encoding()).expect("sub");
            e.remove(&mut oracle);
        } else {
            let big = bigs < 3 && step % 20 == 7;
            bigs += usize::from(big);
            let e = random_entry(&mut rng, big);
            sim.add(Lattice::Live, &e.encoding()).expect("add");
            e.insert(&mut oracle);
            present.push(e);
        }
        check_equal(&mut sim, Lattice::Live, &oracle, &format!("step {step}"));
    }
    assert_eq!(bigs, 3);
    // Remove everything that is left, in a batch: back to the empty lattice.
    let encs: Vec<Vec<u8>> = present.iter().map(Ent::encoding).collect();
    let jobs: Vec<Entry<'_>> = encs
        .iter()
        .map(|e| Entry {
            sub: true,
            lattice: Lattice::Live,
            encoding: e,
        })
        .collect();
    sim.entries(&jobs).expect("batch of subs");
    for e in &present {
        e.remove(&mut oracle);
    }
    assert_eq!(oracle, LtHash::new());
    check_equal(&mut sim, Lattice::Live, &oracle, "all removed");
}

#[test]
fn order_independence_and_scrub_compare() {
    let mut sim = LtHashSim::new().expect("model");
    let mut rng = StdRng::seed_from_u64(0x5c_2b);
    let set: Vec<Ent> = (0..24).map(|_| random_entry(&mut rng, false)).collect();
    let encs: Vec<Vec<u8>> = set.iter().map(Ent::encoding).collect();
    let mut oracle = LtHash::new();
    set.iter().for_each(|e| e.insert(&mut oracle));

    // Live: the set in order, one at a time, with an overwrite on the way (add a stale entry,
    // then subtract it).
    let stale = random_entry(&mut rng, false);
    sim.add(Lattice::Live, &stale.encoding())
        .expect("add stale");
    for e in &encs {
        sim.add(Lattice::Live, e).expect("add");
    }
    sim.sub(Lattice::Live, &stale.encoding())
        .expect("sub stale");
    check_equal(&mut sim, Lattice::Live, &oracle, "in order");

    // Scratch: the same set shuffled, as one back-to-back batch.
    let mut order: Vec<usize> = (0..encs.len()).collect();
    order.shuffle(&mut rng);
    let jobs: Vec<Entry<'_>> = order
        .iter()
        .map(|&i| Entry {
            sub: false,
            lattice: Lattice::Scratch,
            encoding: &encs[i],
        })
        .collect();
    sim.entries(&jobs).expect("shuffled batch");
    check_equal(&mut sim, Lattice::Scratch, &oracle, "shuffled");
    assert!(
        sim.compare().expect("compare"),
        "recomputed from the same set"
    );

    // One byte of one entry's value flipped: the recomputation differs.
    sim.clear(Lattice::Scratch).expect("clear");
    assert!(!sim.compare().expect("compare"), "cleared scratch vs live");
    let flip = rng.gen_range(0..set.len());
    let mut bad = set.clone();
    if bad[flip].value.is_empty() {
        bad[flip].value.push(0);
    } else {
        let j = rng.gen_range(0..bad[flip].value.len());
        bad[flip].value[j] ^= 1 << rng.gen_range(0..8);
    }
    let bad_encs: Vec<Vec<u8>> = bad.iter().map(Ent::encoding).collect();
    let jobs: Vec<Entry<'_>> = bad_encs
        .iter()
        .map(|e| Entry {
            sub: false,
            lattice: Lattice::Scratch,
            encoding: e,
        })
        .collect();
    sim.entries(&jobs).expect("bad batch");
    assert!(!sim.compare().expect("compare"), "one entry differs");
    // Repairing that one entry makes them equal again; the live lattice was never touched.
    sim.sub(Lattice::Scratch, &bad_encs[flip]).expect("sub bad");
    sim.add(Lattice::Scratch, &encs[flip]).expect("add good");
    assert!(sim.compare().expect("compare"), "repaired");
    check_equal(&mut sim, Lattice::Live, &oracle, "live after the scrub");

    // Mixed adds and subtracts into both lattices in one batch land where they should.
    let extra: Vec<Ent> = (0..6).map(|_| random_entry(&mut rng, false)).collect();
    let extra_encs: Vec<Vec<u8>> = extra.iter().map(Ent::encoding).collect();
    let mut live = oracle.clone();
    let mut scratch = oracle.clone();
    let mut jobs = Vec::new();
    for (i, (e, enc)) in extra.iter().zip(&extra_encs).enumerate() {
        let sub = i % 3 == 2;
        let (lattice, l) = if i % 2 == 0 {
            (Lattice::Live, &mut live)
        } else {
            (Lattice::Scratch, &mut scratch)
        };
        if sub {
            e.remove(l);
        } else {
            e.insert(l);
        }
        jobs.push(Entry {
            sub,
            lattice,
            encoding: enc,
        });
    }
    sim.entries(&jobs).expect("mixed batch");
    check_equal(&mut sim, Lattice::Live, &live, "mixed batch, live");
    check_equal(&mut sim, Lattice::Scratch, &scratch, "mixed batch, scratch");
}

#[test]
fn load_read_clear_and_stalls() {
    let mut sim = LtHashSim::new().expect("model");
    let mut rng = StdRng::seed_from_u64(0x10ad);
    let mut bytes = [0u8; LATTICE_BYTES];
    rng.fill(&mut bytes[..]);
    let loaded = LtHash::from_bytes(&bytes).expect("2048 bytes");
    sim.load(Lattice::Live, &bytes).expect("load");
    check_equal(&mut sim, Lattice::Live, &loaded, "loaded");
    assert_eq!(
        sim.read(Lattice::Scratch).expect("read"),
        [0u8; LATTICE_BYTES],
        "scratch untouched by a live load"
    );

    // Entries on top of a loaded lattice (a restored state).
    let mut oracle = loaded.clone();
    for _ in 0..5 {
        let e = random_entry(&mut rng, false);
        sim.add(Lattice::Live, &e.encoding()).expect("add");
        e.insert(&mut oracle);
    }
    check_equal(&mut sim, Lattice::Live, &oracle, "after adds");

    // Under back-pressure and data gaps, the same results.
    for (seed, data, rsp) in [(3u64, 300u16, 1000u16), (5, 1000, 250), (7, 150, 150)] {
        sim.set_stalls(data, rsp, seed, seed as u8);
        rng.fill(&mut bytes[..]);
        sim.load(Lattice::Scratch, &bytes).expect("load with gaps");
        let l = LtHash::from_bytes(&bytes).expect("2048 bytes");
        check_equal(&mut sim, Lattice::Scratch, &l, "stalled");
        let e = random_entry(&mut rng, false);
        sim.add(Lattice::Live, &e.encoding())
            .expect("add with gaps");
        e.insert(&mut oracle);
        check_equal(&mut sim, Lattice::Live, &oracle, "stalled add");
    }
    sim.set_stalls(1000, 1000, 1, 0xa5);

    sim.clear(Lattice::Live).expect("clear");
    check_equal(&mut sim, Lattice::Live, &LtHash::new(), "cleared");
    assert!(!sim.compare().expect("compare"), "zero vs random scratch");
    sim.clear(Lattice::Scratch).expect("clear");
    assert!(sim.compare().expect("compare"), "both zero");
}

#[test]
fn cycle_limit_is_a_typed_error_and_the_model_recovers() {
    let mut sim = LtHashSim::new().expect("model");
    let mut rng = StdRng::seed_from_u64(0x71);
    let e = random_entry(&mut rng, false);
    sim.set_cycle_limit(Some(10));
    match sim.add(Lattice::Live, &e.encoding()) {
        Err(LtHashSimError::Timeout { limit: 10, .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    sim.set_cycle_limit(None);
    let mut oracle = LtHash::new();
    sim.add(Lattice::Live, &e.encoding())
        .expect("add after the error");
    e.insert(&mut oracle);
    check_equal(&mut sim, Lattice::Live, &oracle, "after a timeout");
}

#[test]
fn cycles() {
    let mut sim = LtHashSim::new().expect("model");
    let mut rng = StdRng::seed_from_u64(0xc7c);
    let small = |rng: &mut StdRng| {
        let mut e = random_entry(rng, false);
        e.key.truncate(8);
        e.value.truncate(8);
        e.contract.truncate(8);
        e.encoding()
    };
    let one = small(&mut rng);
    assert!(one.len() <= 64);
    sim.add(Lattice::Live, &one).expect("add");
    let alone = sim.last_cycles();
    let encs: Vec<Vec<u8>> = (0..16).map(|_| small(&mut rng)).collect();
    let jobs: Vec<Entry<'_>> = encs
        .iter()
        .map(|e| Entry {
            sub: false,
            lattice: Lattice::Live,
            encoding: e,
        })
        .collect();
    sim.entries(&jobs).expect("batch");
    let batch = sim.last_cycles();
    sim.digest(Lattice::Live).expect("digest");
    let digest = sim.last_cycles();
    let bytes = sim.read(Lattice::Live).expect("read");
    let read = sim.last_cycles();
    sim.load(Lattice::Scratch, &bytes).expect("load");
    let load = sim.last_cycles();
    sim.clear(Lattice::Scratch).expect("clear");
    let clear = sim.last_cycles();
    sim.compare().expect("compare");
    let compare = sim.last_cycles();
    println!(
        "lthash_unit cycles: small entry add alone {alone}; 16 back to back {batch} ({:.1} per \
         entry); digest {digest}; read {read}; load {load}; clear {clear}; compare {compare}",
        batch as f64 / 16.0
    );
    assert!(alone <= 42, "a small entry alone took {alone} cycles");
    assert!(
        batch <= 16 * 34 + 10,
        "16 small entries took {batch} cycles"
    );
    assert!(read <= 36 && load <= 34 && clear <= 34 && compare <= 37);
}
