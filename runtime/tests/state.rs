//! Tests of the state service (`bpu_runtime::state`): reads and writes, height rules, the LtHash
//! digest, scans, concurrent readers, snapshots, and a kill -9 crash test against a model replay.

use bpu_runtime::state::{
    state_digest_of, LtHash, StateError, StateService, StateWrite, DB_FILE, MAX_KEY,
};
use bpu_runtime::StateVersion;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Model = BTreeMap<(String, Vec<u8>), (Vec<u8>, StateVersion)>;

fn ver(height: u64, index: u32) -> StateVersion {
    StateVersion { height, index }
}

fn put(contract: &str, key: &[u8], value: &[u8], version: StateVersion) -> StateWrite {
    StateWrite {
        contract: contract.to_string(),
        key: key.to_vec(),
        value: Some(value.to_vec()),
        version,
    }
}

fn del(contract: &str, key: &[u8], version: StateVersion) -> StateWrite {
    StateWrite {
        contract: contract.to_string(),
        key: key.to_vec(),
        value: None,
        version,
    }
}

/// Applies writes to the model the way the service is specified to: in order, last wins.
fn apply(model: &mut Model, writes: &[StateWrite]) {
    for w in writes {
        let k = (w.contract.clone(), w.key.clone());
        match &w.value {
            Some(v) => {
                model.insert(k, (v.clone(), w.version));
            }
            None => {
                model.remove(&k);
            }
        }
    }
}

fn model_digest(model: &Model) -> [u8; 32] {
    state_digest_of(model.iter().map(|((c, k), (v, ver))| (c, k, v, *ver)))
}

/// Everything in the service, read through `for_each`.
fn dump(svc: &StateService) -> Model {
    let mut m = Model::new();
    svc.for_each(|c, k, v, ver| {
        m.insert((c.to_string(), k.to_vec()), (v.to_vec(), ver));
    })
    .expect("for_each");
    m
}

fn open(dir: &Path) -> StateService {
    StateService::open(dir).expect("open state")
}

#[test]
fn service_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<StateService>();
}

#[test]
fn get_put_delete_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(dir.path());
    assert_eq!(svc.height(), None);
    assert_eq!(svc.get("bank", b"alice").expect("get"), None);
    assert_eq!(
        svc.digest(),
        state_digest_of(Vec::<(&str, &[u8], &[u8], _)>::new())
    );

    svc.commit(
        0,
        &[
            put("bank", b"alice", b"100", ver(0, 0)),
            put("bank", b"bob", b"50", ver(0, 1)),
            put("token", b"alice", b"7", ver(0, 2)),
            put("", b"", b"", ver(0, 3)),
        ],
    )
    .expect("commit 0");
    assert_eq!(svc.height(), Some(0));
    assert_eq!(
        svc.get("bank", b"alice").expect("get"),
        Some((b"100".to_vec(), ver(0, 0)))
    );
    assert_eq!(
        svc.get("token", b"alice").expect("get"),
        Some((b"7".to_vec(), ver(0, 2)))
    );
    // An empty contract, key and value is an entry, not an absence.
    assert_eq!(svc.get("", b"").expect("get"), Some((vec![], ver(0, 3))));
    assert_eq!(svc.get("bank", b"carol").expect("get"), None);
    assert_eq!(svc.get("nothere", b"alice").expect("get"), None);

    // Overwrite gets the new version; delete removes; deleting an absent key is a no-op.
    svc.commit(
        1,
        &[
            put("bank", b"alice", b"90", ver(1, 0)),
            del("bank", b"bob", ver(1, 1)),
            del("bank", b"nobody", ver(1, 2)),
        ],
    )
    .expect("commit 1");
    assert_eq!(
        svc.get("bank", b"alice").expect("get"),
        Some((b"90".to_vec(), ver(1, 0)))
    );
    assert_eq!(svc.get("bank", b"bob").expect("get"), None);
    assert_eq!(svc.get("bank", b"nobody").expect("get"), None);

    // Several writes to one key in one block: the last wins.
    svc.commit(
        2,
        &[
            put("bank", b"x", b"1", ver(2, 0)),
            put("bank", b"x", b"2", ver(2, 1)),
            del("bank", b"alice", ver(2, 2)),
            put("bank", b"alice", b"80", ver(2, 3)),
            put("bank", b"y", b"1", ver(2, 4)),
            del("bank", b"y", ver(2, 5)),
        ],
    )
    .expect("commit 2");
    assert_eq!(
        svc.get("bank", b"x").expect("get"),
        Some((b"2".to_vec(), ver(2, 1)))
    );
    assert_eq!(
        svc.get("bank", b"alice").expect("get"),
        Some((b"80".to_vec(), ver(2, 3)))
    );
    assert_eq!(svc.get("bank", b"y").expect("get"), None);

    let mut model = Model::new();
    model.insert(
        ("bank".into(), b"alice".to_vec()),
        (b"80".to_vec(), ver(2, 3)),
    );
    model.insert(("bank".into(), b"x".to_vec()), (b"2".to_vec(), ver(2, 1)));
    model.insert(
        ("token".into(), b"alice".to_vec()),
        (b"7".to_vec(), ver(0, 2)),
    );
    model.insert((String::new(), vec![]), (vec![], ver(0, 3)));
    assert_eq!(dump(&svc), model);
    assert_eq!(svc.digest(), model_digest(&model));
    assert_eq!(svc.verify().expect("verify"), svc.digest());

    // One service per database: a second open is refused while the first lives.
    let err = StateService::open(dir.path()).expect_err("second open");
    assert!(matches!(err, StateError::InUse { .. }), "{err:?}");

    // Everything survives a reopen.
    let digest = svc.digest();
    drop(svc);
    let svc = open(dir.path());
    assert_eq!(svc.height(), Some(2));
    assert_eq!(svc.digest(), digest);
    assert_eq!(dump(&svc), model);
}

#[test]
fn commit_height_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(dir.path());
    let empty = svc.digest();

    let err = svc
        .commit(1, &[put("c", b"k", b"v", ver(1, 0))])
        .expect_err("block 1 on an empty state");
    assert!(
        matches!(
            err,
            StateError::Height {
                have: None,
                given: 1
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("commit block 0 first"), "{err}");
    assert_eq!(svc.height(), None);
    assert_eq!(svc.digest(), empty);
    assert_eq!(svc.get("c", b"k").expect("get"), None);

    let d0 = svc
        .commit(0, &[put("c", b"k", b"v0", ver(0, 0))])
        .expect("commit 0");
    let d1 = svc
        .commit(1, &[put("c", b"k", b"v1", ver(1, 0))])
        .expect("commit 1");
    assert_ne!(d0, d1);

    for (given, text) in [
        (1, "block 1 is already committed"),
        (0, "block 0 is already committed"),
        (3, "state at height 1, block 3 given: commit 2 first"),
        (u64::MAX, "commit 2 first"),
    ] {
        let err = svc
            .commit(given, &[put("c", b"k", b"bad", ver(given, 0))])
            .expect_err("wrong height");
        assert!(
            matches!(err, StateError::Height { have: Some(1), given: g } if g == given),
            "{err:?}"
        );
        assert!(err.to_string().contains(text), "{err} lacks {text}");
        assert_eq!(svc.height(), Some(1));
        assert_eq!(svc.digest(), d1);
        assert_eq!(
            svc.get("c", b"k").expect("get"),
            Some((b"v1".to_vec(), ver(1, 0)))
        );
    }

    // An oversized write is refused before anything happens, height included.
    let err = svc
        .commit(
            2,
            &[
                put("c", b"k", b"fine", ver(2, 0)),
                put("c", &vec![0u8; MAX_KEY + 1], b"v", ver(2, 1)),
            ],
        )
        .expect_err("oversized key");
    assert!(
        matches!(err, StateError::TooLarge { what: "key", .. }),
        "{err:?}"
    );
    assert_eq!(svc.height(), Some(1));
    assert_eq!(svc.digest(), d1);
    assert_eq!(
        svc.get("c", b"k").expect("get"),
        Some((b"v1".to_vec(), ver(1, 0)))
    );

    // The durable state agrees with the cached one.
    drop(svc);
    let svc = open(dir.path());
    assert_eq!(svc.height(), Some(1));
    assert_eq!(svc.digest(), d1);
    // An empty block advances the height and keeps the digest.
    assert_eq!(svc.commit(2, &[]).expect("empty block"), d1);
    assert_eq!(svc.height(), Some(2));
}

#[test]
fn deletes_restore_the_previous_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(dir.path());
    let empty = svc.digest();
    let d0 = svc
        .commit(
            0,
            &[
                put("a", b"1", b"one", ver(0, 0)),
                put("a", b"2", b"two", ver(0, 1)),
            ],
        )
        .expect("commit");
    assert_ne!(d0, empty);
    let d1 = svc
        .commit(
            1,
            &[
                put("a", b"3", b"three", ver(1, 0)),
                put("b", b"1", b"x", ver(1, 1)),
            ],
        )
        .expect("commit");
    assert_ne!(d1, d0);
    let d2 = svc
        .commit(2, &[del("a", b"3", ver(2, 0)), del("b", b"1", ver(2, 1))])
        .expect("commit");
    assert_eq!(
        d2, d0,
        "deleting what block 1 added restores block 0's digest"
    );
    // Overwriting with a different value and then restoring the old entry (same version too).
    let d3 = svc
        .commit(3, &[put("a", b"1", b"changed", ver(3, 0))])
        .expect("commit");
    assert_ne!(d3, d0);
    let d4 = svc
        .commit(4, &[put("a", b"1", b"one", ver(0, 0))])
        .expect("commit");
    assert_eq!(d4, d0);
    let d5 = svc
        .commit(5, &[del("a", b"1", ver(5, 0)), del("a", b"2", ver(5, 1))])
        .expect("commit");
    assert_eq!(d5, empty, "deleting everything gives the empty digest");
    assert_eq!(svc.verify().expect("verify"), empty);
}

#[test]
fn different_states_have_different_digests() {
    let one = |c: &str, k: &[u8], v: &[u8], version| state_digest_of([(c, k, v, version)]);
    let base = one("bank", b"alice", b"100", ver(3, 1));
    let variants = [
        one("bank", b"alice", b"100", ver(3, 2)),
        one("bank", b"alice", b"100", ver(4, 1)),
        one("bank", b"alice", b"101", ver(3, 1)),
        one("bank", b"alicf", b"100", ver(3, 1)),
        one("banl", b"alice", b"100", ver(3, 1)),
        // The same bytes split differently between contract, key and value.
        one("ban", b"kalice", b"100", ver(3, 1)),
        one("banka", b"lice", b"100", ver(3, 1)),
        one("bank", b"alice1", b"00", ver(3, 1)),
        one("bank", b"alic", b"e100", ver(3, 1)),
        // An empty value is not an absence.
        one("bank", b"alice", b"", ver(3, 1)),
        state_digest_of(Vec::<(&str, &[u8], &[u8], StateVersion)>::new()),
        // Two entries are not one.
        state_digest_of([
            ("bank", &b"alice"[..], &b"100"[..], ver(3, 1)),
            ("bank", &b"bob"[..], &b"100"[..], ver(3, 1)),
        ]),
    ];
    let mut all = vec![base];
    all.extend(variants);
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            assert_ne!(all[i], all[j], "digests {i} and {j} collide");
        }
    }

    // The service agrees: same key and value, different version → different digest.
    let d1 = tempfile::tempdir().expect("tempdir");
    let d2 = tempfile::tempdir().expect("tempdir");
    let a = open(d1.path());
    let b = open(d2.path());
    let da = a
        .commit(0, &[put("bank", b"alice", b"100", ver(0, 0))])
        .expect("commit");
    let db = b
        .commit(0, &[put("bank", b"alice", b"100", ver(0, 1))])
        .expect("commit");
    assert_ne!(da, db);
    assert_eq!(da, one("bank", b"alice", b"100", ver(0, 0)));
    // Split between contract and key differently.
    let a2 = a
        .commit(1, &[put("ab", b"c", b"v", ver(1, 0))])
        .expect("commit");
    let b2 = b
        .commit(
            1,
            &[
                put("bank", b"alice", b"100", ver(0, 0)),
                put("a", b"bc", b"v", ver(1, 0)),
            ],
        )
        .expect("commit");
    assert_ne!(a2, b2);
    assert_eq!(a.get("a", b"bc").expect("get"), None);
    assert_eq!(b.get("ab", b"c").expect("get"), None);
}

#[test]
fn lthash_insert_remove_commute() {
    let mut a = LtHash::new();
    let mut b = LtHash::new();
    a.insert("c", b"1", b"x", ver(1, 0));
    a.insert("c", b"2", b"y", ver(1, 1));
    a.remove("c", b"1", b"x", ver(1, 0));
    b.insert("c", b"2", b"y", ver(1, 1));
    assert_eq!(a, b);
    assert_eq!(LtHash::from_bytes(&a.to_bytes()), Some(a.clone()));
    assert_eq!(LtHash::from_bytes(&[0u8; 7]), None);
    // A lattice is a multiset hash: adding an entry twice is not adding it once.
    let mut twice = b.clone();
    twice.insert("c", b"2", b"y", ver(1, 1));
    assert_ne!(twice, b);
}

type Entries = BTreeMap<(u8, Vec<u8>), (Vec<u8>, u64, u32)>;

fn entries_strategy() -> impl Strategy<Value = Entries> {
    prop::collection::btree_map(
        (0u8..3, prop::collection::vec(any::<u8>(), 0..4)),
        (
            prop::collection::vec(any::<u8>(), 0..8),
            any::<u64>(),
            any::<u32>(),
        ),
        0..40,
    )
}

fn contract_name(c: u8) -> String {
    ["bank", "iot", ""][c as usize % 3].to_string()
}

type EntryRef<'a> = (&'a (u8, Vec<u8>), &'a (Vec<u8>, u64, u32));

fn writes_of(entries: &[EntryRef<'_>]) -> Vec<StateWrite> {
    entries
        .iter()
        .map(|((c, k), (v, h, i))| put(&contract_name(*c), k, v, ver(*h, *i)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// The same final entry set reached through different orders, batchings, overwrites and
    /// deletes has the same digest, equal to `state_digest_of`.
    #[test]
    fn digest_is_order_independent(
        entries in entries_strategy(),
        seed in any::<u64>(),
        batch_a in 1usize..16,
        batch_b in 1usize..16,
    ) {
        let list: Vec<_> = entries.iter().collect();
        let expected = state_digest_of(
            entries.iter().map(|((c, k), (v, h, i))| (contract_name(*c), k, v, ver(*h, *i))),
        );

        let da = tempfile::tempdir().expect("tempdir");
        let a = open(da.path());
        for (height, chunk) in (0u64..).zip(list.chunks(batch_a)) {
            a.commit(height, &writes_of(chunk)).expect("commit");
        }

        // B: junk first (values later overwritten, keys later deleted), then the entries
        // shuffled, in other batches, some repeated inside a batch behind a junk write.
        let mut rng = StdRng::seed_from_u64(seed);
        let db = tempfile::tempdir().expect("tempdir");
        let b = open(db.path());
        let mut junk = Vec::new();
        for ((c, k), _) in &list {
            if rng.gen_bool(0.5) {
                junk.push(put(&contract_name(*c), k, b"junk", ver(rng.gen(), rng.gen())));
            }
        }
        let extra: Vec<StateWrite> = (0..rng.gen_range(0..5u8))
            .map(|n| put("extra", &[n], b"gone soon", ver(0, n.into())))
            .collect();
        junk.extend(extra.iter().cloned());
        b.commit(0, &junk).expect("junk commit");
        let mut shuffled = list.clone();
        shuffled.shuffle(&mut rng);
        let mut height = 1;
        for chunk in shuffled.chunks(batch_b) {
            let mut writes = Vec::new();
            for w in writes_of(chunk) {
                if rng.gen_bool(0.2) {
                    writes.push(StateWrite { value: Some(b"overwritten".to_vec()), ..w.clone() });
                }
                writes.push(w);
            }
            b.commit(height, &writes).expect("commit");
            height += 1;
        }
        let deletes: Vec<StateWrite> = extra
            .iter()
            .map(|w| StateWrite { value: None, ..w.clone() })
            .collect();
        b.commit(height, &deletes).expect("delete commit");

        prop_assert_eq!(a.digest(), expected);
        prop_assert_eq!(b.digest(), expected);
        prop_assert_eq!(b.verify().expect("verify"), expected);
        prop_assert_eq!(dump(&a), dump(&b));
    }
}

#[test]
fn scan_prefix_limit_and_paging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(dir.path());
    let mut writes = Vec::new();
    for i in 0..30u32 {
        writes.push(put(
            "acc",
            format!("user/{i:02}").as_bytes(),
            &i.to_le_bytes(),
            ver(0, i),
        ));
    }
    writes.push(put("acc", b"usea", b"x", ver(0, 100)));
    writes.push(put("acc", b"uses", b"y", ver(0, 101)));
    writes.push(put("acc", b"admin", b"z", ver(0, 102)));
    // Contract "ac" with key "cuser/…" and contract "accu" must not leak into "acc".
    writes.push(put("ac", b"cuser/00", b"other", ver(0, 103)));
    writes.push(put("accu", b"ser/00", b"other", ver(0, 104)));
    svc.commit(0, &writes).expect("commit");

    let all = svc.scan("acc", b"user/", 100).expect("scan");
    assert_eq!(all.len(), 30);
    for (i, (k, v, version)) in all.iter().enumerate() {
        assert_eq!(k, format!("user/{i:02}").as_bytes());
        assert_eq!(v, &(i as u32).to_le_bytes());
        assert_eq!(*version, ver(0, i as u32));
    }
    let first = svc.scan("acc", b"user/", 7).expect("scan");
    assert_eq!(first[..], all[..7]);
    assert_eq!(svc.scan("acc", b"user/", 0).expect("scan"), vec![]);
    assert_eq!(
        svc.scan("acc", b"user/1", 100).expect("scan")[..],
        all[10..20]
    );
    assert_eq!(svc.scan("acc", b"nope", 100).expect("scan"), vec![]);
    assert_eq!(svc.scan("zzz", b"", 100).expect("scan"), vec![]);
    let everything = svc.scan("acc", b"", 1000).expect("scan");
    assert_eq!(everything.len(), 33);
    assert_eq!(everything[0].0, b"admin");
    assert_eq!(svc.scan("ac", b"", 10).expect("scan").len(), 1);

    // Paging with scan_after covers the range exactly once.
    let mut paged = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = svc
            .scan_after("acc", b"user/", after.as_deref(), 4)
            .expect("scan_after");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(k, _, _)| k.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // Deleted keys disappear from scans.
    svc.commit(1, &[del("acc", b"user/03", ver(1, 0))])
        .expect("commit");
    let after_delete = svc.scan("acc", b"user/0", 100).expect("scan");
    assert_eq!(after_delete.len(), 9);
    assert!(after_delete.iter().all(|(k, _, _)| k != b"user/03"));
}

/// Readers run while blocks commit; each block rewrites every key with its height, so a reader
/// must always see all keys with one value (whole blocks), and never go back in height.
#[test]
fn concurrent_readers_see_whole_blocks() {
    const KEYS: usize = 40;
    const BLOCKS: u64 = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Arc::new(open(dir.path()));
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let svc = Arc::clone(&svc);
            let done = Arc::clone(&done);
            let reads = Arc::clone(&reads);
            std::thread::spawn(move || {
                let mut last_seen = 0u64;
                while !done.load(Ordering::Acquire) {
                    let rows = svc.scan("c", b"", 1000).expect("scan");
                    if rows.is_empty() {
                        continue;
                    }
                    assert_eq!(rows.len(), KEYS, "a reader saw part of a block");
                    let h = u64::from_le_bytes(rows[0].1[..].try_into().expect("8 bytes"));
                    for (_, v, version) in &rows {
                        assert_eq!(v[..], h.to_le_bytes(), "a reader saw two blocks mixed");
                        assert_eq!(version.height, h);
                    }
                    assert!(h >= last_seen, "a reader went back from {last_seen} to {h}");
                    last_seen = h;
                    // get agrees with a height at least as new.
                    let (v, _) = svc.get("c", b"k00").expect("get").expect("present");
                    assert!(u64::from_le_bytes(v[..].try_into().expect("8 bytes")) >= h);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in 0..BLOCKS {
        let writes: Vec<StateWrite> = (0..KEYS)
            .map(|k| {
                put(
                    "c",
                    format!("k{k:02}").as_bytes(),
                    &h.to_le_bytes(),
                    ver(h, k as u32),
                )
            })
            .collect();
        svc.commit(h, &writes).expect("commit");
    }
    // Let the readers see the final block at least once more.
    let before = reads.load(Ordering::Relaxed);
    while reads.load(Ordering::Relaxed) < before + 2 && readers.iter().all(|r| !r.is_finished()) {
        std::thread::yield_now();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().expect("reader panicked");
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(svc.height(), Some(BLOCKS - 1));
}

/// A state with overwrites and deletes across several blocks.
fn build_state(svc: &StateService, blocks: u64, seed: u64) -> Model {
    let mut model = Model::new();
    let mut rng = StdRng::seed_from_u64(seed);
    for h in 0..blocks {
        let writes: Vec<StateWrite> = (0..50u32)
            .map(|i| {
                let key = format!("k{}", rng.gen_range(0..120)).into_bytes();
                let contract = ["bank", "iot", "token"][rng.gen_range(0..3)];
                if rng.gen_bool(0.2) {
                    del(contract, &key, ver(h, i))
                } else {
                    let len = rng.gen_range(0..300);
                    let value: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    put(contract, &key, &value, ver(h, i))
                }
            })
            .collect();
        svc.commit(h, &writes).expect("commit");
        apply(&mut model, &writes);
    }
    model
}

#[test]
fn snapshot_round_trip_and_continue() {
    let base = tempfile::tempdir().expect("tempdir");
    let svc = open(&base.path().join("a"));
    assert!(matches!(
        svc.write_snapshot(&base.path().join("empty.snap")),
        Err(StateError::Empty)
    ));
    let model = build_state(&svc, 6, 1);
    let snap = base.path().join("state.snap");
    let info = svc.write_snapshot(&snap).expect("snapshot");
    assert_eq!(info.height, 5);
    assert_eq!(info.digest, svc.digest());
    assert_eq!(info.entries, model.len() as u64);
    assert_eq!(
        info.bytes,
        std::fs::metadata(&snap).expect("metadata").len()
    );
    assert!(!base.path().join("state.snap.partial").exists());

    let restored = StateService::restore_snapshot(&base.path().join("b"), &snap).expect("restore");
    assert_eq!(restored.height(), Some(5));
    assert_eq!(restored.digest(), svc.digest());
    assert_eq!(dump(&restored), model);
    assert_eq!(restored.verify().expect("verify"), svc.digest());

    // A restore into a directory that already holds a state is refused.
    let err = StateService::restore_snapshot(&base.path().join("a"), &snap).expect_err("not fresh");
    assert!(matches!(err, StateError::NotFresh { .. }), "{err:?}");
    // Expecting the agreed height and digest: right passes, wrong is refused.
    let err = StateService::restore_snapshot_expecting(&base.path().join("c"), &snap, 5, [0u8; 32])
        .expect_err("wrong digest expected");
    assert!(
        matches!(err, StateError::SnapshotUnexpected { .. }),
        "{err:?}"
    );
    assert!(!base.path().join("c").join(DB_FILE).exists());
    StateService::restore_snapshot_expecting(&base.path().join("c"), &snap, 5, svc.digest())
        .expect("restore expecting");

    // Both continue identically; the restored one survives a reopen.
    let more = vec![
        put("bank", b"new", b"value", ver(6, 0)),
        del("bank", b"k1", ver(6, 1)),
    ];
    let d_orig = svc.commit(6, &more).expect("commit");
    let d_rest = restored.commit(6, &more).expect("commit");
    assert_eq!(d_orig, d_rest);
    let err = restored.commit(8, &more).expect_err("gap");
    assert!(matches!(err, StateError::Height { .. }));
    drop(restored);
    let reopened = open(&base.path().join("b"));
    assert_eq!(reopened.height(), Some(6));
    assert_eq!(reopened.digest(), d_orig);
    assert_eq!(dump(&reopened), dump(&svc));
}

/// Rewrites the trailing checksum so the file is intact but its contents are altered.
fn reseal(bytes: &mut [u8]) {
    let n = bytes.len();
    let mut h = blake3::Hasher::new_derive_key("bpu state snapshot file v1");
    h.update(&bytes[..n - 40]);
    bytes[n - 32..].copy_from_slice(h.finalize().as_bytes());
}

#[test]
fn corrupted_snapshots_are_rejected() {
    let base = tempfile::tempdir().expect("tempdir");
    let svc = open(&base.path().join("src"));
    build_state(&svc, 3, 2);
    // The database orders contracts by name length first: this entry's value ends the file.
    svc.commit(3, &[put("zzzzzz", b"last", b"value at the end", ver(3, 0))])
        .expect("commit");
    let snap = base.path().join("good.snap");
    svc.write_snapshot(&snap).expect("snapshot");
    let good = std::fs::read(&snap).expect("read");
    let n = good.len();
    let bad = base.path().join("bad.snap");
    let target = base.path().join("dst");

    let try_restore = |bytes: &[u8]| -> StateError {
        std::fs::write(&bad, bytes).expect("write");
        let err = StateService::restore_snapshot(&target, &bad).expect_err("must be rejected");
        // Nothing is left behind: the directory is still fresh.
        assert!(!target.join(DB_FILE).exists(), "{err}");
        assert!(!target.join("state.redb.restoring").exists(), "{err}");
        err
    };

    // Truncations anywhere: header, inside records, before the trailer, inside it.
    for cut in [0, 5, 40, 63, 64, 70, n / 2, n - 41, n - 40, n - 30, n - 1] {
        let err = try_restore(&good[..cut]);
        assert!(
            matches!(err, StateError::SnapshotTruncated { .. }),
            "cut at {cut}: {err:?}"
        );
    }
    // A flipped byte in the entries or header: the checksum (or a format check) catches it.
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..20 {
        let mut bytes = good.clone();
        let at = rng.gen_range(0..n - 40);
        bytes[at] ^= 1 << rng.gen_range(0..8);
        let err = try_restore(&bytes);
        assert!(
            matches!(
                err,
                StateError::SnapshotChecksum { .. }
                    | StateError::SnapshotFormat { .. }
                    | StateError::SnapshotTruncated { .. }
            ),
            "flip at {at}: {err:?}"
        );
    }
    // A flipped byte in the checksum itself.
    let mut bytes = good.clone();
    bytes[n - 1] ^= 0x80;
    assert!(matches!(
        try_restore(&bytes),
        StateError::SnapshotChecksum { .. }
    ));
    // Altered contents with a valid checksum: the digest check catches it (the byte before
    // the trailer is the last byte of the last value).
    let mut bytes = good.clone();
    assert_eq!(&bytes[n - 56..n - 40], b"value at the end");
    bytes[n - 41] ^= 1;
    reseal(&mut bytes);
    let err = try_restore(&bytes);
    assert!(matches!(err, StateError::SnapshotDigest { .. }), "{err:?}");
    // The claimed digest altered (header bytes 32..64), resealed.
    let mut bytes = good.clone();
    bytes[40] ^= 1;
    reseal(&mut bytes);
    let err = try_restore(&bytes);
    assert!(matches!(err, StateError::SnapshotDigest { .. }), "{err:?}");
    assert!(err.to_string().contains("do not use it"), "{err}");
    // Format errors: magic, version, absurd length, trailing bytes.
    let mut bytes = good.clone();
    bytes[0] = b'X';
    assert!(matches!(
        try_restore(&bytes),
        StateError::SnapshotFormat { .. }
    ));
    let mut bytes = good.clone();
    bytes[8] = 9;
    let err = try_restore(&bytes);
    assert!(
        err.to_string().contains("format 9 is not supported"),
        "{err}"
    );
    let mut bytes = good.clone();
    bytes[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = try_restore(&bytes);
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    let mut bytes = good.clone();
    bytes.push(0);
    let err = try_restore(&bytes);
    assert!(matches!(err, StateError::SnapshotFormat { .. }), "{err:?}");
    // A missing file is an I/O error naming it.
    let err = StateService::restore_snapshot(&target, &base.path().join("absent.snap"))
        .expect_err("absent");
    assert!(matches!(err, StateError::Io { .. }), "{err:?}");

    // After all that, the good snapshot restores into the same directory.
    let restored = StateService::restore_snapshot(&target, &snap).expect("restore");
    assert_eq!(restored.digest(), svc.digest());
}

// ---------------------------------------------------------------------------------------------
// Crash test: a child process (this test binary, re-run with CRASH_ENV set) commits blocks as
// fast as it can; the parent kills it with SIGKILL after a random delay and checks the reopened
// state against a model replay.

const CRASH_ENV: &str = "BPU_STATE_CRASH_DIR";
const CRASH_SEED: u64 = 0x5eed_b10c;

/// The writes of block `h` in the crash test (deterministic in `h`).
fn crash_block(h: u64) -> Vec<StateWrite> {
    let mut rng = StdRng::seed_from_u64(CRASH_SEED ^ h.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let n = rng.gen_range(1..=120u32);
    (0..n)
        .map(|i| {
            let contract = ["bank", "iot", "token"][rng.gen_range(0..3)];
            let key = format!("key{}", rng.gen_range(0..500)).into_bytes();
            if rng.gen_bool(0.2) {
                del(contract, &key, ver(h, i))
            } else {
                let len = rng.gen_range(0..400);
                let value: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                put(contract, &key, &value, ver(h, i))
            }
        })
        .collect()
}

/// The child's role; a no-op in a normal test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let svc = open(Path::new(&dir));
    let mut h = svc.height().map_or(0, |h| h + 1);
    loop {
        svc.commit(h, &crash_block(h)).expect("child commit");
        h += 1;
    }
}

fn crash_rounds(rounds: usize, max_delay_ms: u64, seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last: Option<u64> = None;
    for round in 0..rounds {
        let mut child = std::process::Command::new(&exe)
            .args(["crash_child", "--exact", "--test-threads=1", "--nocapture"])
            .env(CRASH_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the writer");
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..max_delay_ms)));
        child.kill().expect("kill -9");
        child.wait().expect("wait");

        let t = Instant::now();
        let svc = open(dir.path());
        let height = svc.height();
        eprintln!(
            "round {round}: reopened at height {height:?} in {:?}",
            t.elapsed()
        );
        assert!(
            height >= last,
            "round {round}: height went back from {last:?} to {height:?}"
        );
        last = height;
        let mut model = Model::new();
        if let Some(h) = height {
            for b in 0..=h {
                apply(&mut model, &crash_block(b));
            }
        }
        let content = dump(&svc);
        assert_eq!(
            content.len(),
            model.len(),
            "round {round}: entry count at {height:?}"
        );
        assert!(
            content == model,
            "round {round}: content differs from the replay of 0..={height:?}"
        );
        assert_eq!(svc.digest(), model_digest(&model), "round {round}");
        assert_eq!(svc.verify().expect("verify"), svc.digest(), "round {round}");
    }
    assert!(last.is_some(), "the writer never committed a block");
}

#[test]
fn crash_recovery_kill_9() {
    if std::env::var_os(CRASH_ENV).is_some() {
        return;
    }
    crash_rounds(6, 250, 11);
}

/// Longer soak: `cargo test -p bpu-runtime --release --test state -- --ignored crash_soak`.
#[test]
#[ignore]
fn crash_soak() {
    if std::env::var_os(CRASH_ENV).is_some() {
        return;
    }
    crash_rounds(60, 1500, 12);
}

/// Throughput and digest cost (figures only, nothing asserted about speed):
/// `cargo test -p bpu-runtime --release --test state -- --ignored throughput --nocapture`.
#[test]
#[ignore]
fn throughput() {
    const WRITES: usize = 2000;
    const COMMITS: u64 = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(dir.path());
    let mut rng = StdRng::seed_from_u64(7);
    let value = vec![0xabu8; 100];

    // Per-write digest cost: one entry vector (32-byte key, 100-byte value) added to a lattice.
    let mut l = LtHash::new();
    let n = 200_000u32;
    let t = Instant::now();
    for i in 0..n {
        l.insert("token", &[i.to_le_bytes(); 8].concat(), &value, ver(1, i));
    }
    let per_entry = t.elapsed() / n;
    println!("digest: {per_entry:?} per entry vector (one thread); an overwrite costs two");
    // For comparison: the same 2048 bytes from SHA-256 in counter mode (64 compressions).
    let t = Instant::now();
    let mut acc = 0u8;
    for i in 0..n / 10 {
        use sha2::Digest as _;
        let seed = sha2::Sha256::digest([&i.to_le_bytes()[..], &value].concat());
        for ctr in 0u32..64 {
            let block = sha2::Sha256::digest([&seed[..], &ctr.to_le_bytes()].concat());
            acc ^= block[0];
        }
    }
    println!(
        "SHA-256 counter-mode expansion to 2048 bytes: {:?} per entry ({acc})",
        t.elapsed() / (n / 10)
    );

    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut run = |label: &str, fresh: bool, keys: &mut Vec<Vec<u8>>, h0: u64| {
        let t = Instant::now();
        for h in h0..h0 + COMMITS {
            let writes: Vec<StateWrite> = (0..WRITES)
                .map(|i| {
                    let key = if fresh {
                        let k: Vec<u8> = (0..32).map(|_| rng.gen()).collect();
                        keys.push(k.clone());
                        k
                    } else {
                        keys[rng.gen_range(0..keys.len())].clone()
                    };
                    put("token", &key, &value, ver(h, i as u32))
                })
                .collect();
            svc.commit(h, &writes).expect("commit");
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "{label}: {COMMITS} commits of {WRITES} writes in {s:.2} s: {:.1} commits/s, {:.0} writes/s",
            COMMITS as f64 / s,
            (COMMITS as usize * WRITES) as f64 / s
        );
    };
    run("inserts", true, &mut keys, 0);
    run("overwrites", false, &mut keys, COMMITS);
    let t = Instant::now();
    for h in 2 * COMMITS..3 * COMMITS {
        svc.commit(h, &[]).expect("empty commit");
    }
    println!(
        "empty blocks: {:?} per commit (transaction and fsync overhead)",
        t.elapsed() / COMMITS as u32
    );

    let snap = dir.path().join("s.snap");
    let t = Instant::now();
    let info = svc.write_snapshot(&snap).expect("snapshot");
    let w = t.elapsed();
    let t = Instant::now();
    let restored = StateService::restore_snapshot(&dir.path().join("r"), &snap).expect("restore");
    let r = t.elapsed();
    assert_eq!(restored.digest(), svc.digest());
    println!(
        "snapshot: {} entries, {} bytes: written in {w:?}, restored and verified in {r:?}",
        info.entries, info.bytes
    );
}
