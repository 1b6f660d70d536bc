//! Membership and genesis: roles, lookups, strict genesis decoding and every rejection rule.

use bpu_consensus::bls::{BlsSecretKey, ProofOfPossession};
use bpu_ledger::format::{FormatError, VERSION};
use bpu_ledger::membership::{derive_bls, ChannelParams, Member, Org, ValidatorKey};
use bpu_ledger::system::{self, AddMemberArgs, SetRolesArgs};
use bpu_ledger::{Genesis, Membership, Role, Wire};
use p256::ecdsa::SigningKey;
use std::collections::BTreeMap;

fn key(seed: u8) -> Vec<u8> {
    let sk = SigningKey::from_slice(&[seed; 32]).expect("key");
    sk.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// A BLS key and its proof of possession, from a seed.
fn bls(seed: u8) -> ValidatorKey {
    ValidatorKey::of(&BlsSecretKey::from_ikm(&[seed; 32]).expect("bls key"))
}

fn member(org: u32, name: &str, roles: &[Role], seed: u8) -> Member {
    let roles = roles.iter().fold(0, |r, x| r | *x as u8);
    Member {
        org,
        name: name.into(),
        key: key(seed),
        roles,
        bls: (roles & Role::Validator as u8 != 0).then(|| bls(seed)),
    }
}

fn genesis() -> Genesis {
    let m = member;
    Genesis {
        version: VERSION,
        channel: "main".into(),
        created_ms: 1,
        membership: Membership {
            orgs: vec![
                Org {
                    name: "org1".into(),
                },
                Org {
                    name: "org2".into(),
                },
            ],
            members: vec![
                m(0, "admin", &[Role::Admin, Role::Writer, Role::Reader], 1),
                m(0, "node1", &[Role::Validator], 2),
                m(1, "alice", &[Role::Writer, Role::Reader], 3),
                m(1, "auditor", &[Role::Reader], 4),
            ],
        },
        params: ChannelParams::default(),
    }
}

#[test]
fn genesis_round_trips_and_answers_lookups() {
    let g = genesis();
    let enc = g.encode();
    assert_eq!(Genesis::decode(&enc), Ok(g.clone()));
    assert_eq!(Genesis::decode(&enc).expect("decodes").hash(), g.hash());
    let m = &g.membership;
    assert!(m.allows(0, Role::Admin) && !m.allows(2, Role::Admin));
    assert!(m.allows(2, Role::Writer) && !m.allows(3, Role::Writer));
    assert!(!m.allows(99, Role::Reader));
    assert_eq!(m.with_role(Role::Validator), vec![1]);
    let pk = m.member(2).expect("alice").public_key().expect("key");
    assert_eq!(pk.to_sec1().to_vec(), key(3));
    for r in Role::ALL {
        assert_eq!(Role::parse(r.name()), Some(r));
    }
    // Changing anything changes the hash.
    let mut other = g.clone();
    other.membership.members[2].roles |= Role::Admin as u8;
    assert_ne!(other.hash(), g.hash());
}

#[test]
fn bad_genesis_is_rejected_with_a_reason() {
    type Edit = Box<dyn Fn(&mut Genesis)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("version", Box::new(|g| g.version = 9)),
        ("channel", Box::new(|g| g.channel = "no spaces".into())),
        (
            "duplicate org",
            Box::new(|g| g.membership.orgs[1].name = "org1".into()),
        ),
        ("missing org", Box::new(|g| g.membership.members[0].org = 7)),
        (
            "short key",
            Box::new(|g| g.membership.members[0].key.truncate(33)),
        ),
        ("no roles", Box::new(|g| g.membership.members[0].roles = 0)),
        (
            "unknown role bit",
            Box::new(|g| g.membership.members[0].roles = 0x10),
        ),
        (
            "duplicate member",
            Box::new(|g| g.membership.members[3].name = "alice".into()),
        ),
        (
            "duplicate key",
            Box::new(|g| g.membership.members[3].key = g.membership.members[2].key.clone()),
        ),
        (
            "no validators",
            Box::new(|g| g.membership.members[1].roles = Role::Reader as u8),
        ),
        (
            "validator without a BLS key",
            Box::new(|g| g.membership.members[1].bls = None),
        ),
        (
            "duplicate BLS key",
            Box::new(|g| g.membership.members[3].bls = g.membership.members[1].bls),
        ),
        (
            "BLS proof of possession of another key",
            Box::new(|g| {
                if let Some(vk) = &mut g.membership.members[1].bls {
                    vk.pop = bls(99).pop;
                }
            }),
        ),
        (
            "too many endorsements",
            Box::new(|g| g.params.endorsements = 2),
        ),
        (
            "zero block size",
            Box::new(|g| g.params.block_max_bytes = 0),
        ),
    ];
    for (what, edit) in cases {
        let mut g = genesis();
        edit(&mut g);
        let r = Genesis::decode(&g.encode());
        assert!(r.is_err(), "{what}: accepted");
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!msg.is_empty(), "{what}");
    }
    let mut trailing = genesis().encode();
    trailing.push(1);
    assert_eq!(Genesis::decode(&trailing), Err(FormatError::NonCanonical));
}

/// The reason `validate` gives for a membership, or "" if it is valid.
fn reason(m: &Membership) -> String {
    m.validate(true)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn validators_need_unique_bls_keys_with_valid_proofs() {
    let g = genesis();
    assert_eq!(reason(&g.membership), "");
    // A validator without a BLS key: the message names it.
    let mut m = g.membership.clone();
    m.members[1].bls = None;
    let r = reason(&m);
    assert!(r.contains("node1") && r.contains("BLS"), "{r}");
    // A non-validator may hold a BLS key, but not one another member holds.
    let mut m = g.membership.clone();
    m.members[3].bls = Some(bls(4));
    assert_eq!(reason(&m), "");
    m.members[3].bls = m.members[1].bls;
    let r = reason(&m);
    assert!(
        r.contains("auditor") && r.contains("BLS key belongs"),
        "{r}"
    );
    // A proof of possession of another key does not verify.
    let mut m = g.membership.clone();
    let other = BlsSecretKey::from_ikm(&[7; 32]).expect("key");
    m.members[1].bls = Some(ValidatorKey {
        key: bls(2).key,
        pop: other.prove_possession(),
    });
    let r = reason(&m);
    assert!(
        r.contains("node1") && r.contains("proof of possession"),
        "{r}"
    );
    // Nor does a signature of the key under the vote domain instead of the PoP domain.
    let sk = BlsSecretKey::from_ikm(&[2; 32]).expect("key");
    m.members[1].bls = Some(ValidatorKey {
        key: sk.public_key(),
        pop: ProofOfPossession(sk.sign(&sk.public_key().to_bytes())),
    });
    assert!(reason(&m).contains("proof of possession"));
    // The genesis refuses each of these too (Genesis::decode validates).
    let mut bad = g.clone();
    bad.membership = m;
    assert!(Genesis::decode(&bad.encode()).is_err());
}

#[test]
fn a_bls_key_survives_the_encoding_and_a_bad_point_does_not_decode() {
    let g = genesis();
    let enc = g.encode();
    let back = Genesis::decode(&enc).expect("decodes");
    assert_eq!(back.membership.members[1].bls, Some(bls(2)));
    // Flip a bit inside the BLS public key's encoding: the point check refuses it.
    let pk = bls(2).key.to_bytes();
    let at = enc
        .windows(pk.len())
        .position(|w| w == pk)
        .expect("the key is in the encoding");
    let mut bad = enc.clone();
    bad[at + 20] ^= 1;
    assert!(Genesis::decode(&bad).is_err());
}

#[test]
fn validator_set_maps_validator_indexes_to_members() {
    let g = genesis();
    let mut m = g.membership.clone();
    // Members 0..=7: validators at 1, 3, 4 (revoked), 5 and 7.
    m.members = vec![
        member(0, "admin", &[Role::Admin], 1),
        member(0, "v1", &[Role::Validator], 2),
        member(0, "reader", &[Role::Reader], 3),
        member(0, "v3", &[Role::Validator, Role::Reader], 4),
        member(0, "v4", &[Role::Validator], 5),
        member(1, "v5", &[Role::Validator], 6),
        member(1, "writer", &[Role::Writer], 7),
        member(1, "v7", &[Role::Validator], 8),
    ];
    // Revoke v4 (roles 0): it keeps its index and its BLS key, but leaves the set.
    m.members[4].roles = 0;
    assert_eq!(reason(&m), "");
    let v = m.validator_set().expect("validator set");
    assert_eq!(v.members, vec![1, 3, 5, 7]);
    assert_eq!(v.set.len(), 4);
    for (i, &member) in v.members.iter().enumerate() {
        assert_eq!(v.index_of(member), Some(i as u32));
        assert_eq!(v.member(i as u32), Some(member));
        assert_eq!(
            v.set.key(i as u32),
            m.members[member as usize].bls.as_ref().map(|k| &k.key)
        );
    }
    for not in [0, 2, 4, 6, 8, 99] {
        assert_eq!(v.index_of(not), None, "member {not}");
    }
    assert_eq!(v.member(4), None);
    // Validator 2 is member 5 (after the revoked member 4).
    assert_eq!(v.member(2), Some(5));
    assert_eq!(v.index_of(5), Some(2));
    // The set changes with the membership: restoring v4 shifts v5 and v7.
    m.members[4].roles = Role::Validator as u8;
    let w = m.validator_set().expect("validator set");
    assert_eq!(w.members, vec![1, 3, 4, 5, 7]);
    assert_eq!(w.index_of(5), Some(3));
    assert_ne!(w.set.id(), v.set.id());
    // Without a key, or without validators, there is no set.
    m.members[4].bls = None;
    let e = m
        .validator_set()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("v4"), "{e}");
    for mem in &mut m.members {
        mem.roles &= !(Role::Validator as u8);
    }
    assert!(m.validator_set().is_err());
}

#[test]
fn derive_bls_is_deterministic_per_key_and_differs_between_keys() {
    let a = bpu_runtime::SigningKey::generate().expect("key");
    let b = bpu_runtime::SigningKey::generate().expect("key");
    let pem = a.to_pem().expect("pem");
    // The PEM of a key is byte-identical across calls and after a round trip.
    assert_eq!(pem, a.to_pem().expect("pem"));
    let a2 = bpu_runtime::SigningKey::from_pem(pem.as_bytes()).expect("parse");
    assert_eq!(a2.to_pem().expect("pem"), pem);
    let ka = derive_bls(&a);
    assert_eq!(ka.to_bytes(), derive_bls(&a).to_bytes());
    assert_eq!(ka.to_bytes(), derive_bls(&a2).to_bytes());
    assert_ne!(ka.to_bytes(), derive_bls(&b).to_bytes());
    assert_ne!(ka.public_key(), derive_bls(&b).public_key());
    // Another encoding of the same key (SEC1 without the optional public key, which the runtime
    // re-encodes as read) derives the same BLS key: the derivation hashes the scalar.
    let (_, own) = p256::pkcs8::der::pem::decode_vec(pem.as_bytes()).expect("pem");
    let scalar = p256::SecretKey::from_sec1_der(&own)
        .or_else(|_| p256::pkcs8::DecodePrivateKey::from_pkcs8_der(&own))
        .expect("the runtime's encoding parses")
        .to_bytes();
    let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(&scalar);
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    let a3 = bpu_runtime::SigningKey::from_der(&der).expect("sec1 without public key");
    assert_eq!(a3.public_key(), a.public_key());
    assert_ne!(a3.to_pem().expect("pem"), pem, "the runtime keeps the form");
    assert_eq!(derive_bls(&a3).to_bytes(), ka.to_bytes());
    // The derived key proves possession.
    assert!(ValidatorKey::derived(&a).verify());
    assert_eq!(ValidatorKey::derived(&a).key, ka.public_key());
}

/// `_membership` state after the genesis, read by the system contract.
struct State(BTreeMap<Vec<u8>, Vec<u8>>);

impl State {
    fn new(g: &Genesis) -> State {
        State(
            system::genesis_writes(g)
                .into_iter()
                .map(|(_, k, v)| (k, v))
                .collect(),
        )
    }

    /// Runs `_membership.<method>` and applies its writes; the revert reason otherwise.
    fn call(&mut self, method: &str, args: &impl serde::Serialize) -> Result<u32, String> {
        let out = self.run(method, args)?;
        Ok(u32::from_le_bytes(
            out.response.as_slice().try_into().expect("u32"),
        ))
    }

    /// [`State::call`] of `add_members`: the indexes of the response (u32 LE each).
    fn add_members(&mut self, entries: &[AddMemberArgs]) -> Result<Vec<u32>, String> {
        let out = self.run("add_members", &entries)?;
        assert_eq!(out.response.len(), 4 * entries.len(), "one u32 per entry");
        Ok(out
            .response
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("u32")))
            .collect())
    }

    /// Runs `_membership.<method>` and applies its writes: what it did.
    fn run(
        &mut self,
        method: &str,
        args: &impl serde::Serialize,
    ) -> Result<system::SysOutcome, String> {
        let raw = postcard::to_allocvec(args).expect("encode");
        let get = |k: &[u8]| {
            Ok(self.0.get(k).map(|v| {
                (
                    v.clone(),
                    bpu_runtime::StateVersion {
                        height: 0,
                        index: 0,
                    },
                )
            }))
        };
        let out = system::membership(method, &raw, &get)?;
        for (k, v) in &out.writes {
            match v {
                Some(v) => self.0.insert(k.clone(), v.clone()),
                None => self.0.remove(k),
            };
        }
        Ok(out)
    }

    fn membership(&self) -> Membership {
        system::membership_from_state(
            self.0.get(system::ORGS_KEY).cloned(),
            self.0
                .range(system::MEMBER_PREFIX.to_vec()..)
                .take_while(|(k, _)| k.starts_with(system::MEMBER_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone())),
        )
        .expect("membership")
    }
}

fn add(name: &str, roles: u8, seed: u8, bls: Option<ValidatorKey>) -> AddMemberArgs {
    AddMemberArgs {
        org: "org2".into(),
        name: name.into(),
        key: key(seed),
        roles,
        bls,
    }
}

#[test]
fn membership_contract_requires_bls_keys_of_validators() {
    let g = genesis();
    let mut st = State::new(&g);
    let v = Role::Validator as u8;
    // A validator without a BLS key reverts, naming the member.
    let e = st.call("add_member", &add("node2", v, 10, None)).err();
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("node2") && e.contains("BLS")),
        "{e:?}"
    );
    // A proof of possession that does not verify reverts.
    let forged = ValidatorKey {
        key: bls(10).key,
        pop: bls(11).pop,
    };
    let e = st
        .call("add_member", &add("node2", v, 10, Some(forged)))
        .err();
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("proof of possession")),
        "{e:?}"
    );
    // The BLS key of a genesis validator is taken.
    let taken = g.membership.members[1].bls;
    let e = st.call("add_member", &add("node2", v, 10, taken)).err();
    assert!(
        e.as_deref().is_some_and(|e| e.contains("BLS key belongs")),
        "{e:?}"
    );
    // With its own key it is added, and the set grows.
    let index = st
        .call("add_member", &add("node2", v, 10, Some(bls(10))))
        .expect("added");
    assert_eq!(index, 4);
    // ... and its key is taken for the next member, even a non-validator.
    let e = st
        .call(
            "add_member",
            &add("reader", Role::Reader as u8, 12, Some(bls(10))),
        )
        .err();
    assert!(
        e.as_deref().is_some_and(|e| e.contains("BLS key belongs")),
        "{e:?}"
    );
    // A member without a BLS key cannot be made a validator.
    let plain = st
        .call("add_member", &add("writer", Role::Writer as u8, 13, None))
        .expect("added");
    let e = st
        .call(
            "set_roles",
            &SetRolesArgs {
                member: plain,
                roles: v | Role::Writer as u8,
            },
        )
        .err();
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("writer") && e.contains("BLS")),
        "{e:?}"
    );
    // The state's membership is valid, and its validators are members 1 and 4.
    let m = st.membership();
    m.validate(true).expect("valid membership");
    assert_eq!(m.validator_set().expect("set").members, vec![1, 4]);
    // Revoking and restoring a validator keeps its key.
    for roles in [0, v] {
        st.call("set_roles", &SetRolesArgs { member: 4, roles })
            .expect("set roles");
    }
    assert_eq!(st.membership().members[4].bls, Some(bls(10)));
}

/// A P-256 key for member `i` of a long list (seeds beyond a `u8`).
fn key_n(i: u32) -> Vec<u8> {
    let mut d = [7u8; 32];
    d[28..].copy_from_slice(&i.to_be_bytes());
    let sk = SigningKey::from_slice(&d).expect("key");
    sk.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

#[test]
fn add_members_adds_a_list_in_order_and_all_or_nothing() {
    let g = genesis();
    let mut st = State::new(&g);
    let (w, r, v) = (
        Role::Writer as u8,
        Role::Reader as u8,
        Role::Validator as u8,
    );
    // Three members: consecutive indexes after the genesis's four, in argument order; the
    // second creates an organization the third joins (entries see the earlier ones' writes).
    let list = vec![
        add("writer", w | r, 20, None),
        in_org("org3", "reader", r, 21),
        AddMemberArgs {
            bls: Some(bls(22)),
            ..in_org("org3", "node2", v, 22)
        },
    ];
    assert_eq!(st.add_members(&list), Ok(vec![4, 5, 6]));
    let m = st.membership();
    m.validate(true).expect("valid membership");
    assert_eq!(m.orgs.len(), 3);
    for (i, a) in list.iter().enumerate() {
        let got = &m.members[4 + i];
        assert_eq!(
            (
                &m.orgs[got.org as usize].name,
                &got.name,
                &got.key,
                got.roles,
                got.bls
            ),
            (&a.org, &a.name, &a.key, a.roles, a.bls),
        );
    }
    assert_eq!(m.validator_set().expect("set").members, vec![1, 6]);
    // Later single adds continue after them.
    assert_eq!(st.call("add_member", &add("next", r, 23, None)), Ok(7));

    // Each of these reverts whole: the state is exactly as before.
    let before = st.0.clone();
    let mut reverts = |list: Vec<AddMemberArgs>, says: &[&str]| {
        let e = st.add_members(&list).expect_err("reverts");
        for s in says {
            assert!(e.contains(s), "{e:?} should say {s:?}");
        }
        assert_eq!(st.0, before, "nothing is written by a reverted call");
    };
    reverts(Vec::new(), &["1..=256", "not 0"]);
    let over = (0..=system::MAX_ADD_MEMBERS as u32)
        .map(|i| AddMemberArgs {
            org: "org2".into(),
            name: format!("m{i}"),
            key: key_n(i),
            roles: r,
            bls: None,
        })
        .collect::<Vec<_>>();
    assert_eq!(over.len(), 257);
    reverts(over, &["1..=256", "not 257"]);
    // The same key twice in the list: the second entry is refused, and the first is not added.
    reverts(
        vec![add("a", r, 30, None), add("b", r, 30, None)],
        &["entry 1", "\"b\"", "key belongs"],
    );
    // The same (organization, name) twice, in an organization the list creates.
    reverts(
        vec![
            add("ok", r, 31, None),
            in_org("org4", "same", r, 32),
            in_org("org4", "same", r, 33),
        ],
        &["entry 2", "\"same\"", "already has a member same"],
    );
    // A validator without a BLS key, after good entries.
    reverts(
        vec![
            add("c", r, 34, None),
            add("d", w, 35, None),
            add("node3", v, 36, None),
        ],
        &["entry 2", "\"node3\"", "BLS key"],
    );
    // Two validators with one BLS key.
    reverts(
        vec![
            add("node3", v, 36, Some(bls(36))),
            add("node4", v, 37, Some(bls(36))),
        ],
        &["entry 1", "BLS key belongs"],
    );
    // A key already in the state, and a bad entry of any kind, name its position.
    reverts(
        vec![add("e", r, 37, None), add("f", r, 20, None)],
        &["entry 1", "key belongs"],
    );
    reverts(vec![add("", r, 38, None)], &["entry 0"]);
    // A method that does not exist lists the ones that do.
    let e = st.call("add_memberz", &()).expect_err("no such method");
    assert!(e.contains("add_member, add_members, set_roles"), "{e:?}");
}

/// [`add`] in organization `org` (new to the state, so the list creates it).
fn in_org(org: &str, name: &str, roles: u8, seed: u8) -> AddMemberArgs {
    AddMemberArgs {
        org: org.into(),
        ..add(name, roles, seed, None)
    }
}

#[test]
fn a_full_add_members_list_fits_the_transaction_limits() {
    use bpu_ledger::format::limits;
    let g = genesis();
    let mut st = State::new(&g);
    // 256 members with the longest names, in a new organization with the longest name.
    let org = "o".repeat(limits::NAME);
    let list: Vec<AddMemberArgs> = (0..system::MAX_ADD_MEMBERS as u32)
        .map(|i| AddMemberArgs {
            org: org.clone(),
            name: format!("{i:0>64}"),
            key: key_n(i),
            roles: Role::Writer as u8 | Role::Reader as u8,
            bls: None,
        })
        .collect();
    let raw = postcard::to_allocvec(&list).expect("encode");
    assert!(
        raw.len() <= limits::ARGS,
        "{} bytes of arguments",
        raw.len()
    );
    // With BLS keys (144 bytes more each), 256 entries fit while organization and member names
    // come to 41 bytes an entry (docs/formats.md), not 42.
    let size = |names: usize| {
        let with_bls: Vec<AddMemberArgs> = (0..system::MAX_ADD_MEMBERS)
            .map(|_| AddMemberArgs {
                org: "o".repeat(names / 2),
                name: "n".repeat(names - names / 2),
                key: key(1),
                roles: Role::Validator as u8,
                bls: Some(bls(1)),
            })
            .collect();
        postcard::to_allocvec(&with_bls).expect("encode").len()
    };
    assert!(size(41) <= limits::ARGS && size(42) > limits::ARGS);
    let out = st.run("add_members", &list).expect("added");
    assert!(
        out.reads.len() + out.writes.len() <= limits::RWSET_ENTRIES,
        "{} reads and {} writes",
        out.reads.len(),
        out.writes.len()
    );
    let want: Vec<u8> = (4..4 + 256u32).flat_map(u32::to_le_bytes).collect();
    assert_eq!(out.response, want);
    let m = st.membership();
    m.validate(true).expect("valid membership");
    assert_eq!(m.members.len(), 4 + 256);
}
