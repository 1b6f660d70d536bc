//! Membership and genesis: roles, lookups, strict genesis decoding and every rejection rule.

use bpu_ledger::format::{FormatError, VERSION};
use bpu_ledger::membership::{ChannelParams, Member, Org};
use bpu_ledger::{Genesis, Membership, Role, Wire};
use p256::ecdsa::SigningKey;

fn key(seed: u8) -> Vec<u8> {
    let sk = SigningKey::from_slice(&[seed; 32]).expect("key");
    sk.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

fn genesis() -> Genesis {
    let m = |org, name: &str, roles: &[Role], seed| Member {
        org,
        name: name.into(),
        key: key(seed),
        roles: roles.iter().fold(0, |r, x| r | *x as u8),
    };
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
