//! The contract service on the example and test contracts in `contracts/`, built by clang.
//!
//! A tiny in-memory chain (a BTreeMap state, writes applied after each successful call with
//! version (height, index)) runs token, IoT anchoring, certificate registry and voting flows
//! with their error cases, and a probe contract checks every syscall, limit and trap: exact
//! read/write sets, events, revert semantics and deterministic gas.

mod common;

use bpu_runtime::contract::{caller_id, CallContext, CallOutcome, ContractService, Program};
use bpu_runtime::StateVersion;
use common::contracts::elf;
use std::collections::BTreeMap;
use std::sync::Arc;

type State = BTreeMap<Vec<u8>, (Vec<u8>, StateVersion)>;

const GAS: u64 = 2_000_000;

/// A member: membership index and a 65-byte SEC1-shaped key (the service only hashes it).
#[derive(Clone)]
struct Member {
    index: u32,
    key: Vec<u8>,
}

impl Member {
    fn new(index: u32) -> Member {
        let mut key = vec![4u8];
        key.extend((0..64).map(|i| (i as u8).wrapping_mul(7).wrapping_add(index as u8)));
        Member { index, key }
    }
    fn id(&self) -> [u8; 32] {
        caller_id(&self.key)
    }
}

struct Chain {
    svc: ContractService,
    state: State,
    height: u64,
    index: u32,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            svc: ContractService::new(Default::default()),
            state: State::new(),
            height: 1,
            index: 0,
        }
    }

    fn load(&self, name: &str) -> Arc<Program> {
        self.svc.load(&elf(name)).expect("the contract loads")
    }

    /// Runs a call without applying it.
    fn dry(&self, p: &Program, who: &Member, method: &str, args: &[u8]) -> CallOutcome {
        let ctx = CallContext {
            channel: "ch",
            contract: "c",
            contract_version: 3,
            caller_index: who.index,
            caller_key: &who.key,
            tx_id: [0x5a; 32],
            height: self.height,
            time_ms: 1_700_000_000_123,
            method,
            args,
            gas_limit: GAS,
        };
        self.svc.execute(p, &ctx, &self.state)
    }

    /// Runs a call and, if it succeeded, applies its writes at version (height, index).
    fn call(&mut self, p: &Program, who: &Member, method: &str, args: &[u8]) -> CallOutcome {
        let out = self.dry(p, who, method, args);
        if out.result.is_ok() {
            let v = StateVersion {
                height: self.height,
                index: self.index,
            };
            for (k, w) in &out.writes {
                match w {
                    Some(val) => self.state.insert(k.clone(), (val.clone(), v)),
                    None => self.state.remove(k),
                };
            }
        } else {
            assert!(out.writes.is_empty() && out.events.is_empty(), "{out:?}");
        }
        self.index += 1;
        out
    }

    fn ok(&mut self, p: &Program, who: &Member, method: &str, args: &[u8]) -> Vec<u8> {
        let out = self.call(p, who, method, args);
        out.result
            .unwrap_or_else(|e| panic!("{method} reverted: {e}"))
    }

    /// Calls, expects a revert with `reason` and checks the state did not change.
    fn fails(&mut self, p: &Program, who: &Member, method: &str, args: &[u8], reason: &str) {
        let before = self.state.clone();
        let out = self.call(p, who, method, args);
        assert_eq!(out.result, Err(reason.to_string()), "{method}");
        assert_eq!(self.state, before, "{method}: state changed on revert");
    }

    fn next_block(&mut self) {
        self.height += 1;
        self.index = 0;
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn u64le(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

fn u32le(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn key(tag: u8, id: &[u8]) -> Vec<u8> {
    cat(&[&[tag], id])
}

// ---------------------------------------------------------------- token

#[test]
fn token_mint_transfer_balance() {
    let mut c = Chain::new();
    let t = c.load("token");
    let (alice, bob, carol) = (Member::new(0), Member::new(1), Member::new(2));
    let balance = |c: &Chain, m: &Member| -> u64 {
        let r = c
            .dry(&t, &carol, "balance", &m.id())
            .result
            .expect("balance");
        u64::from_le_bytes(r.try_into().expect("8 bytes"))
    };

    c.fails(
        &t,
        &alice,
        "mint",
        &cat(&[&bob.id(), &u64le(5)]),
        "not initialized",
    );
    let out = c.call(&t, &alice, "init", &[]);
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(out.reads, vec![(b"owner".to_vec(), None)]);
    assert_eq!(
        out.writes,
        vec![(b"owner".to_vec(), Some(alice.id().to_vec()))]
    );
    c.fails(&t, &bob, "init", &[], "already initialized");
    assert_eq!(c.ok(&t, &bob, "owner", &[]), alice.id());

    // Only the owner mints; a failed mint leaves the state untouched.
    c.fails(&t, &bob, "mint", &cat(&[&bob.id(), &u64le(5)]), "not owner");
    c.next_block();
    let out = c.call(&t, &alice, "mint", &cat(&[&alice.id(), &u64le(1000)]));
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(
        out.events,
        vec![("Mint".to_string(), cat(&[&alice.id(), &u64le(1000)]))]
    );
    assert_eq!(balance(&c, &alice), 1000);
    assert_eq!(
        c.ok(&t, &bob, "supply", &[]),
        u64le(1000),
        "supply after mint"
    );

    // Transfer: exact read and write sets.
    c.next_block();
    let out = c.call(&t, &alice, "transfer", &cat(&[&bob.id(), &u64le(300)]));
    assert_eq!(out.result, Ok(vec![]));
    let (ka, kb) = (key(b'b', &alice.id()), key(b'b', &bob.id()));
    let mut reads = vec![
        (
            ka.clone(),
            Some(StateVersion {
                height: 2,
                index: 0,
            }),
        ),
        (kb.clone(), None),
    ];
    reads.sort();
    assert_eq!(out.reads, reads);
    let mut writes = vec![
        (ka.clone(), Some(u64le(700).to_vec())),
        (kb.clone(), Some(u64le(300).to_vec())),
    ];
    writes.sort();
    assert_eq!(out.writes, writes);
    assert_eq!(
        out.events,
        vec![(
            "Transfer".to_string(),
            cat(&[&alice.id(), &bob.id(), &u64le(300)])
        )]
    );
    assert_eq!((balance(&c, &alice), balance(&c, &bob)), (700, 300));

    c.fails(
        &t,
        &bob,
        "transfer",
        &cat(&[&carol.id(), &u64le(301)]),
        "insufficient balance",
    );
    c.fails(
        &t,
        &carol,
        "transfer",
        &cat(&[&bob.id(), &u64le(1)]),
        "insufficient balance",
    );
    c.fails(&t, &bob, "transfer", &bob.id(), "bad arguments");
    c.fails(
        &t,
        &bob,
        "transfer",
        &cat(&[&carol.id(), &u64le(1), &[0]]),
        "bad arguments",
    );
    c.fails(&t, &bob, "burn", &[], "unknown method");

    // Sending everything deletes the sender's balance key.
    let out = c.call(&t, &bob, "transfer", &cat(&[&carol.id(), &u64le(300)]));
    assert_eq!(out.result, Ok(vec![]));
    assert!(out.writes.contains(&(kb.clone(), None)), "{:?}", out.writes);
    assert!(!c.state.contains_key(&kb));
    assert_eq!(
        (balance(&c, &alice), balance(&c, &bob), balance(&c, &carol)),
        (700, 0, 300)
    );
    // Self-transfer keeps the balance.
    c.ok(&t, &carol, "transfer", &cat(&[&carol.id(), &u64le(100)]));
    assert_eq!(balance(&c, &carol), 300);
    // Overflow of the supply is refused.
    c.fails(
        &t,
        &alice,
        "mint",
        &cat(&[&bob.id(), &u64le(u64::MAX - 999)]),
        "overflow",
    );
}

#[test]
fn calls_are_deterministic() {
    let mut c = Chain::new();
    let t = c.load("token");
    let (alice, bob) = (Member::new(0), Member::new(1));
    c.ok(&t, &alice, "init", &[]);
    c.ok(&t, &alice, "mint", &cat(&[&alice.id(), &u64le(50)]));
    let args = cat(&[&bob.id(), &u64le(20)]);
    let first = c.dry(&t, &alice, "transfer", &args);
    // Interleave other calls on the same (pooled) machines, then repeat.
    c.dry(&t, &bob, "transfer", &args);
    c.dry(&t, &alice, "balance", &alice.id());
    let second = c.dry(&t, &alice, "transfer", &args);
    assert_eq!(first, second);
    assert!(first.gas_used > 0);
    // A second service loading the same code gives the same outcome.
    let svc2 = ContractService::new(Default::default());
    let t2 = svc2.load(&elf("token")).expect("loads");
    assert_eq!(t2.code_hash(), t.code_hash());
    let ctx = CallContext {
        channel: "ch",
        contract: "c",
        contract_version: 3,
        caller_index: alice.index,
        caller_key: &alice.key,
        tx_id: [0x5a; 32],
        height: c.height,
        time_ms: 1_700_000_000_123,
        method: "transfer",
        args: &args,
        gas_limit: GAS,
    };
    assert_eq!(svc2.execute(&t2, &ctx, &c.state), first);
    // Loading is cached by code hash.
    assert!(Arc::ptr_eq(&c.load("token"), &t));
}

// ---------------------------------------------------------------- iot anchoring

#[test]
fn iot_anchor_flow() {
    let mut c = Chain::new();
    let p = c.load("iot_anchor");
    let (gw, other) = (Member::new(0), Member::new(1));
    let dev = [0xd1u8; 32];
    let root = [0xabu8; 32];

    let out = c.call(&p, &gw, "register_device", &dev);
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(
        out.events,
        vec![("DeviceRegistered".into(), cat(&[&dev, &gw.id()]))]
    );
    c.fails(&p, &other, "register_device", &dev, "device exists");
    assert_eq!(c.ok(&p, &other, "device_owner", &dev), gw.id());

    let anchor = cat(&[&dev, &u64le(7), &root, &u32le(100)]);
    c.fails(&p, &other, "anchor", &anchor, "not device owner");
    c.fails(
        &p,
        &gw,
        "anchor",
        &cat(&[&[0xeeu8; 32], &u64le(7), &root, &u32le(100)]),
        "unknown device",
    );
    c.fails(
        &p,
        &gw,
        "anchor",
        &cat(&[&dev, &u64le(7), &root, &u32le(0)]),
        "empty batch",
    );
    c.next_block();
    let out = c.call(&p, &gw, "anchor", &anchor);
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(
        out.events,
        vec![(
            "Anchored".into(),
            cat(&[&dev, &u64le(7), &root, &u32le(100)])
        )]
    );
    let akey = cat(&[b"a", &dev, &u64le(7)]);
    assert_eq!(
        out.writes,
        vec![(akey, Some(cat(&[&root, &u32le(100), &u64le(2)])))]
    );
    c.next_block();
    c.fails(&p, &gw, "anchor", &anchor, "already anchored");
    assert_eq!(
        c.ok(&p, &other, "lookup", &cat(&[&dev, &u64le(7)])),
        cat(&[&root, &u32le(100), &u64le(2)])
    );
    c.fails(
        &p,
        &other,
        "lookup",
        &cat(&[&dev, &u64le(8)]),
        "no such anchor",
    );
    c.ok(
        &p,
        &gw,
        "anchor",
        &cat(&[&dev, &u64le(8), &[1u8; 32], &u32le(1)]),
    );
    assert_eq!(
        c.ok(&p, &other, "lookup", &cat(&[&dev, &u64le(8)])),
        cat(&[&[1u8; 32], &u32le(1), &u64le(3)])
    );
}

// ---------------------------------------------------------------- certificates

#[test]
fn cert_registry_flow() {
    let mut c = Chain::new();
    let p = c.load("cert_registry");
    let (issuer, other) = (Member::new(0), Member::new(1));
    let cert = [0xc3u8; 32];

    let status = |c: &Chain, cert: &[u8]| c.dry(&p, &other, "status", cert).result;
    assert_eq!(status(&c, &cert), Ok(vec![0; 49]), "unknown");

    let out = c.call(&p, &issuer, "issue", &cat(&[&cert, b"diploma 2024"]));
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(
        out.events,
        vec![("Issued".into(), cat(&[&cert, &issuer.id()]))]
    );
    let issued = cat(&[&[1], &issuer.id(), &u64le(1), &u64le(0), b"diploma 2024"]);
    assert_eq!(status(&c, &cert), Ok(issued));
    c.fails(&p, &other, "issue", &cert, "already issued");
    c.fails(
        &p,
        &other,
        "issue",
        &cat(&[&[9u8; 32], &vec![0u8; 4097]]),
        "metadata too long",
    );
    c.fails(&p, &other, "revoke", &cert, "not issuer");
    c.fails(&p, &issuer, "revoke", &[7u8; 32], "unknown certificate");

    c.next_block();
    c.next_block();
    let out = c.call(&p, &issuer, "revoke", &cert);
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(out.events, vec![("Revoked".into(), cert.to_vec())]);
    let revoked = cat(&[&[2], &issuer.id(), &u64le(1), &u64le(3), b"diploma 2024"]);
    assert_eq!(status(&c, &cert), Ok(revoked));
    c.fails(&p, &issuer, "revoke", &cert, "already revoked");
    // Empty metadata is fine.
    c.ok(&p, &other, "issue", &[5u8; 32]);
    assert_eq!(
        status(&c, &[5u8; 32]),
        Ok(cat(&[&[1], &other.id(), &u64le(3), &u64le(0)]))
    );
}

// ---------------------------------------------------------------- voting

#[test]
fn voting_flow() {
    let mut c = Chain::new();
    let p = c.load("voting");
    let members: Vec<Member> = (0..5).map(Member::new).collect();
    let prop = [0x70u8; 32];
    let create = cat(&[&prop, &u32le(3), &u64le(3)]);

    c.fails(
        &p,
        &members[0],
        "create",
        &cat(&[&prop, &u32le(0), &u64le(3)]),
        "bad option count",
    );
    c.fails(
        &p,
        &members[0],
        "create",
        &cat(&[&prop, &u32le(33), &u64le(3)]),
        "bad option count",
    );
    c.fails(
        &p,
        &members[0],
        "create",
        &cat(&[&prop, &u32le(2), &u64le(0)]),
        "deadline passed",
    );
    let out = c.call(&p, &members[0], "create", &create);
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(
        out.events,
        vec![("Created".into(), cat(&[&prop, &u32le(3), &u64le(3)]))]
    );
    c.fails(&p, &members[1], "create", &create, "proposal exists");
    c.fails(
        &p,
        &members[1],
        "vote",
        &cat(&[&[1u8; 32], &u32le(0)]),
        "unknown proposal",
    );

    let vote = |o: u32| cat(&[&prop, &u32le(o)]);
    c.fails(&p, &members[1], "vote", &vote(3), "no such option");
    let out = c.call(&p, &members[1], "vote", &vote(2));
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(
        out.events,
        vec![("Voted".into(), cat(&[&prop, &members[1].id(), &u32le(2)]))]
    );
    c.fails(&p, &members[1], "vote", &vote(0), "already voted");
    c.next_block();
    c.ok(&p, &members[2], "vote", &vote(2));
    c.ok(&p, &members[3], "vote", &vote(0));
    c.next_block(); // height 3 = deadline: still open
    c.ok(&p, &members[0], "vote", &vote(2));
    c.next_block();
    c.fails(&p, &members[4], "vote", &vote(1), "voting closed");

    let tally = c.ok(&p, &members[4], "tally", &prop);
    assert_eq!(
        tally,
        cat(&[&u32le(3), &u64le(3), &u64le(1), &u64le(0), &u64le(3)])
    );
}

// ---------------------------------------------------------------- syscalls, limits, traps

#[test]
fn read_your_writes_and_exact_sets() {
    let mut c = Chain::new();
    let v = StateVersion {
        height: 9,
        index: 4,
    };
    c.state.insert(b"a".to_vec(), (b"AAAA".to_vec(), v));
    let p = c.load("tests/probe");
    let out = c.dry(&p, &Member::new(0), "rw", &[]);
    let words: Vec<u32> = out
        .result
        .as_ref()
        .expect("rw succeeds")
        .chunks(4)
        .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(words, vec![4, 2, 4, u32::MAX, u32::MAX, 3]);
    assert_eq!(
        out.reads,
        vec![(b"a".to_vec(), Some(v)), (b"c".to_vec(), None)]
    );
    assert_eq!(
        out.writes,
        vec![
            (b"a".to_vec(), None),
            (b"b".to_vec(), Some(b"B22".to_vec()))
        ]
    );
}

#[test]
fn block_info_caller_method_calldata_sha256() {
    let c = Chain::new();
    let p = c.load("tests/probe");
    let who = Member::new(17);
    let args = b"some call data".to_vec();
    let out = c.dry(&p, &who, "info", &args).result.expect("info");
    let mut want = Vec::new();
    want.extend(u64le(1)); // height
    want.extend(u64le(1_700_000_000_123)); // time_ms
    want.extend([0x5a; 32]); // tx_id
    want.extend(u32le(3)); // contract_version
    want.extend(u32le(17)); // caller_index
    want.extend(who.id());
    want.extend(u32le(17));
    want.extend(u32le(4));
    want.extend(b"info");
    want.extend(u32le(args.len() as u32));
    want.extend(&args);
    want.extend(caller_id(&args)); // SHA-256, as caller_id is
    assert_eq!(out, want);
    // echo: calldata round trip.
    assert_eq!(c.dry(&p, &who, "echo", &args).result, Ok(args));
}

#[test]
fn exit_codes_and_reverts() {
    let c = Chain::new();
    let p = c.load("tests/probe");
    let m = Member::new(0);
    let out = c.dry(&p, &m, "exit0", &[]);
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(out.writes, vec![(b"x".to_vec(), Some(b"y".to_vec()))]);
    assert_eq!(out.events, vec![("Done".to_string(), vec![])]);

    let out = c.dry(&p, &m, "exit3", &[]);
    assert_eq!(out.result, Err("exit code 3".into()));
    assert!(out.writes.is_empty());

    let out = c.dry(&p, &m, "revert_after_write", &[]);
    assert_eq!(out.result, Err("nope".into()));
    assert!(out.writes.is_empty() && out.events.is_empty());

    let out = c.dry(&p, &m, "long_reason", &[]);
    assert_eq!(out.result, Err("r".repeat(65536)), "reason truncated");
}

fn reason(c: &Chain, p: &Program, method: &str) -> String {
    let out = c.dry(p, &Member::new(0), method, &[]);
    assert!(out.writes.is_empty() && out.events.is_empty());
    match out.result {
        Err(r) => r,
        Ok(r) => panic!("{method} succeeded: {r:?}"),
    }
}

#[test]
fn limits_revert() {
    let c = Chain::new();
    let p = c.load("tests/probe");
    let m = Member::new(0);
    // At the limit: fine.
    let out = c.dry(&p, &m, "max_value", &[]);
    assert_eq!(out.result, Ok(vec![]));
    assert_eq!(out.writes[0].1.as_ref().map(Vec::len), Some(65536));
    assert_eq!(c.dry(&p, &m, "max_key", &[]).result, Ok(vec![]));
    let out = c.dry(&p, &m, "max_events", &[]);
    assert_eq!(out.events.len(), 64);
    assert_eq!(out.events[63], ("Tick".to_string(), u32le(63).to_vec()));
    // Beyond: revert, named.
    assert_eq!(
        reason(&c, &p, "big_value"),
        "limit: value of 65537 bytes (max 65536)"
    );
    assert_eq!(
        reason(&c, &p, "long_key"),
        "limit: key of 257 bytes (max 256)"
    );
    assert_eq!(reason(&c, &p, "many_events"), "limit: more than 64 events");
    assert_eq!(
        reason(&c, &p, "big_event"),
        "limit: event data of 4097 bytes (max 4096)"
    );
    assert_eq!(
        reason(&c, &p, "empty_event_name"),
        "limit: event name of 0 bytes (1..=64)"
    );
    assert!(reason(&c, &p, "bad_event_name").starts_with("bad event name"));
    assert_eq!(
        reason(&c, &p, "big_response"),
        "limit: response of 65537 bytes (max 65536)"
    );
    let out = c.dry(&p, &m, "many_keys", &[]);
    assert_eq!(
        out.result,
        Err("limit: more than 4096 state entries".into())
    );
    assert_eq!(out.reads.len(), 4096);
}

#[test]
fn traps_revert_with_their_reason() {
    let c = Chain::new();
    let p = c.load("tests/probe");
    for (method, prefix) in [
        ("fault", "trap: memory fault at 0x"),
        ("write_code", "trap: memory fault at 0x"),
        ("bad_buffer", "trap: memory fault at 0x"),
        ("illegal", "trap: illegal instruction 0xffffffff at 0x"),
        ("ebreak", "trap: ebreak at 0x"),
        ("unknown_syscall", "trap: unknown syscall 511 at 0x"),
    ] {
        let r = reason(&c, &p, method);
        assert!(r.starts_with(prefix), "{method}: {r}");
    }
    assert!(reason(&c, &p, "fault").contains("4 bytes at 0xfffffff0"));
}

#[test]
fn endless_loop_stops_at_the_gas_limit() {
    let c = Chain::new();
    let p = c.load("tests/probe");
    let a = c.dry(&p, &Member::new(0), "loop", &[]);
    let b = c.dry(&p, &Member::new(0), "loop", &[]);
    assert_eq!(a.result, Err("trap: out of gas".into()));
    assert_eq!(a, b);
    assert!(a.gas_used <= GAS && a.gas_used > GAS - 20, "{}", a.gas_used);
}

#[test]
fn storage_errors_revert() {
    struct Broken;
    impl bpu_runtime::StateReader for Broken {
        fn get(&self, _: &[u8]) -> Result<Option<(Vec<u8>, StateVersion)>, String> {
            Err("disk on fire".into())
        }
    }
    let c = Chain::new();
    let t = c.load("token");
    let m = Member::new(0);
    let ctx = CallContext {
        channel: "ch",
        contract: "c",
        contract_version: 1,
        caller_index: 0,
        caller_key: &m.key,
        tx_id: [0; 32],
        height: 1,
        time_ms: 0,
        method: "init",
        args: &[],
        gas_limit: GAS,
    };
    let out = c.svc.execute(&t, &ctx, &Broken);
    assert_eq!(out.result, Err("storage: disk on fire".into()));
    assert!(out.writes.is_empty());
}

#[test]
fn bad_code_does_not_load() {
    let svc = ContractService::new(Default::default());
    assert!(svc.load(b"not an elf").is_err());
    let mut e = elf("token");
    e[18] = 0x3e; // e_machine = x86-64
    assert!(svc.load(&e).is_err());
}

// ---------------------------------------------------------------- measurement

/// Calls per second of token transfers (and a few other calls) on 1 and 2 threads. Prints,
/// asserts nothing about speed. Run:
/// `cargo test -p bpu-runtime --release --test contracts -- --ignored --nocapture`
#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn measure_call_rate() {
    use std::time::Instant;
    let mut c = Chain::new();
    let t = c.load("token");
    let members: Vec<Member> = (0..256).map(Member::new).collect();
    c.ok(&t, &members[0], "init", &[]);
    for m in &members {
        c.ok(&t, &members[0], "mint", &cat(&[&m.id(), &u64le(1_000_000)]));
    }
    let args: Vec<Vec<u8>> = (0..members.len())
        .map(|i| cat(&[&members[(i + 1) % members.len()].id(), &u64le(1)]))
        .collect();
    let run = |c: &Chain, n: usize, offset: usize| -> u64 {
        let mut gas = 0;
        for i in 0..n {
            let j = (i + offset) % members.len();
            let out = c.dry(&t, &members[j], "transfer", &args[j]);
            assert!(out.result.is_ok());
            gas += out.gas_used;
        }
        gas
    };
    run(&c, 2000, 0); // warm up the machine pool
    let n = 100_000;
    let before = c.svc.metrics();
    let start = Instant::now();
    let gas = run(&c, n, 0);
    let secs = start.elapsed().as_secs_f64();
    let instructions = c.svc.metrics().instructions - before.instructions;
    println!(
        "token transfer, 1 thread: {:.0} calls/s ({:.2} µs/call, {} gas/call, {} instructions/call, {:.0} M instructions/s)",
        n as f64 / secs,
        secs * 1e6 / n as f64,
        gas / n as u64,
        instructions / n as u64,
        instructions as f64 / secs / 1e6
    );
    let start = Instant::now();
    std::thread::scope(|s| {
        for k in 0..2 {
            let c = &c;
            s.spawn(move || run(c, n, k * 7));
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "token transfer, 2 threads: {:.0} calls/s",
        2.0 * n as f64 / secs
    );
    let start = Instant::now();
    for i in 0..n {
        let m = &members[i % members.len()];
        let out = c.dry(&t, m, "balance", &m.id());
        assert!(out.result.is_ok());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "token balance, 1 thread: {:.0} calls/s ({:.2} µs/call)",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
    // Raw interpreter speed: the probe's endless loop to a 50M gas limit.
    let p = c.load("tests/probe");
    let ctx = CallContext {
        channel: "ch",
        contract: "c",
        contract_version: 1,
        caller_index: 0,
        caller_key: &members[0].key,
        tx_id: [0; 32],
        height: 1,
        time_ms: 0,
        method: "loop",
        args: &[],
        gas_limit: 50_000_000,
    };
    let start = Instant::now();
    let out = c.svc.execute(&p, &ctx, &c.state);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "interpreter: {:.0} Mgas/s on a load/add/store/jump loop",
        out.gas_used as f64 / secs / 1e6
    );
}
