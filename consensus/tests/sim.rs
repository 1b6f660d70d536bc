//! Deterministic simulation of the consensus core: a discrete-event network with delay, loss,
//! duplication and reordering, crashes and restarts, partitions, an equivocating proposer and a
//! double-voting validator. Every run checks safety (no two different blocks decided at one
//! height by honest validators) and liveness (after the faults stop, every honest validator
//! decides new heights). Runs are reproducible from their seed.

use bpu_consensus::core::{
    proposer, Action, BlockId, Config, Core, Proposal, Step, Timeouts, Vote, VoteKind,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

#[derive(Clone, Debug, PartialEq)]
enum Net {
    /// A proposal, with the prevotes that justify its valid round (its proof of lock).
    Proposal(Proposal, Vec<Vote>),
    Vote(Vote),
    /// A decided height for a lagging peer: the proposal and its precommits.
    Commit(Proposal, Vec<Vote>),
}

impl Net {
    fn height(&self) -> u64 {
        match self {
            Net::Proposal(p, _) | Net::Commit(p, _) => p.height,
            Net::Vote(v) => v.height,
        }
    }
}

#[derive(Clone, Debug)]
enum Ev {
    Deliver {
        from: u32,
        to: u32,
        msg: Net,
    },
    Timeout {
        node: u32,
        height: u64,
        round: u32,
        step: Step,
    },
    Restart {
        node: u32,
    },
    /// The gossip layer re-sends a node's messages of its current height (retransmission
    /// until delivery, which the protocol assumes between correct validators).
    Gossip {
        node: u32,
    },
}

/// Period of the gossip retransmission.
const GOSSIP_MS: u64 = 400;

/// How a faulty validator misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Byz {
    /// Proposes two blocks, to two halves of the network, and votes for both.
    Equivocate,
    /// Sends every vote together with a conflicting one to half of the peers.
    DoubleVote,
}

struct Node {
    core: Core,
    byz: Option<Byz>,
    /// Decided blocks by height, with what a lagging peer needs.
    decided: BTreeMap<u64, (Proposal, Vec<Vote>)>,
    /// Proposals seen at the current height (to build commits from).
    proposals: Vec<Proposal>,
    /// Precommits and prevotes seen at the current height.
    precommits: Vec<Vote>,
    prevotes: Vec<Vote>,
    /// Messages of its current height this node sent or received, relayed by gossip (the
    /// protocol's assumption: what one correct validator received, all eventually receive).
    sent: Vec<Net>,
}

struct Faults {
    /// Messages are lost with this probability before `gst`.
    loss: f64,
    dup: f64,
    max_delay: u64,
    /// After this time: no loss, delay ≤ `max_delay_after`, partitions healed, crashed nodes up.
    gst: u64,
    max_delay_after: u64,
    /// (node, from, to): down in this interval (restarts at `to`, or at `gst` if later).
    crashes: Vec<(u32, u64, u64)>,
    /// Two sides and the interval during which nothing crosses between them.
    partition: Option<(Vec<u32>, u64, u64)>,
    byz: Vec<(u32, Byz)>,
}

struct Sim {
    n: u32,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Ev>>,
    nodes: Vec<Node>,
    rng: StdRng,
    faults: Faults,
}

fn block_id(height: u64, round: u32, proposer: u32, variant: u8) -> BlockId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&height.to_le_bytes());
    b[8..12].copy_from_slice(&round.to_le_bytes());
    b[12..16].copy_from_slice(&proposer.to_le_bytes());
    b[16] = variant;
    b
}

impl Sim {
    fn new(n: u32, seed: u64, faults: Faults) -> Sim {
        let mut sim = Sim {
            n,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            nodes: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            faults,
        };
        let timeouts = Timeouts {
            propose_ms: 300,
            prevote_ms: 200,
            precommit_ms: 200,
        };
        let mut starts = Vec::new();
        for i in 0..n {
            let (core, out) = Core::new(
                Config {
                    n,
                    me: Some(i),
                    timeouts,
                },
                1,
            );
            let byz = sim
                .faults
                .byz
                .iter()
                .find(|(b, _)| *b == i)
                .map(|(_, k)| *k);
            sim.nodes.push(Node {
                core,
                byz,
                decided: BTreeMap::new(),
                proposals: Vec::new(),
                precommits: Vec::new(),
                prevotes: Vec::new(),
                sent: Vec::new(),
            });
            starts.push((i, out));
        }
        for (i, out) in starts {
            sim.act(i, out);
        }
        for node in 0..n {
            sim.schedule(GOSSIP_MS + u64::from(node), Ev::Gossip { node });
        }
        for (node, _, to) in sim.faults.crashes.clone() {
            let at = to.max(sim.faults.gst);
            sim.schedule(at, Ev::Restart { node });
        }
        sim
    }

    fn honest(&self, i: u32) -> bool {
        self.nodes[i as usize].byz.is_none()
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Some(ev));
        self.queue
            .push(Reverse((at, self.seq, self.events.len() - 1)));
    }

    fn down(&self, node: u32, t: u64) -> bool {
        self.faults
            .crashes
            .iter()
            .any(|&(n, from, to)| n == node && t >= from && t < to.max(self.faults.gst))
    }

    fn cut(&self, a: u32, b: u32, t: u64) -> bool {
        match &self.faults.partition {
            Some((side, from, to)) if t >= *from && t < *to && t < self.faults.gst => {
                side.contains(&a) != side.contains(&b)
            }
            _ => false,
        }
    }

    fn send(&mut self, from: u32, to: u32, msg: Net) {
        if from == to {
            self.schedule(self.now, Ev::Deliver { from, to, msg });
            return;
        }
        let before_gst = self.now < self.faults.gst;
        if before_gst && self.rng.gen_bool(self.faults.loss) {
            return;
        }
        let max = if before_gst {
            self.faults.max_delay
        } else {
            self.faults.max_delay_after
        };
        let copies = if before_gst && self.rng.gen_bool(self.faults.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.gen_range(1..=max.max(1));
            self.schedule(
                self.now + delay,
                Ev::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn broadcast(&mut self, from: u32, msg: Net) {
        for to in 0..self.n {
            self.send(from, to, msg.clone());
        }
    }

    /// Carries out a node's actions, as its driver would (with its misbehaviour, if any).
    fn act(&mut self, i: u32, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Propose {
                    height,
                    round,
                    block,
                    valid_round,
                } => {
                    let b = block.unwrap_or_else(|| block_id(height, round, i, 0));
                    let p = Proposal {
                        height,
                        round,
                        block: b,
                        valid_round,
                        proposer: i,
                    };
                    if self.nodes[i as usize].byz == Some(Byz::Equivocate) {
                        let other = Proposal {
                            block: block_id(height, round, i, 1),
                            ..p
                        };
                        for to in 0..self.n {
                            let m = if to < self.n / 2 { p } else { other };
                            self.send(i, to, Net::Proposal(m, Vec::new()));
                        }
                    } else {
                        let mut pol: Vec<Vote> = match valid_round {
                            Some(vr) => self.nodes[i as usize]
                                .prevotes
                                .iter()
                                .filter(|v| {
                                    v.height == height && v.round == vr && v.block == Some(b)
                                })
                                .copied()
                                .collect(),
                            None => Vec::new(),
                        };
                        pol.sort_by_key(|v| v.voter);
                        pol.dedup();
                        let m = Net::Proposal(p, pol);
                        self.nodes[i as usize].sent.push(m.clone());
                        self.broadcast(i, m);
                    }
                }
                Action::Vote(v) => match self.nodes[i as usize].byz {
                    Some(_) => {
                        // Vote one way to half the peers, another way to the rest.
                        let alt = Vote {
                            block: match v.block {
                                Some(_) => None,
                                None => Some(block_id(
                                    v.height,
                                    v.round,
                                    proposer(self.n, v.height, v.round),
                                    1,
                                )),
                            },
                            ..v
                        };
                        for to in 0..self.n {
                            let m = if to % 2 == 0 { v } else { alt };
                            self.send(i, to, Net::Vote(m));
                        }
                    }
                    None => {
                        self.nodes[i as usize].sent.push(Net::Vote(v));
                        self.broadcast(i, Net::Vote(v));
                    }
                },
                Action::Timeout {
                    height,
                    round,
                    step,
                    after_ms,
                } => {
                    self.schedule(
                        self.now + after_ms,
                        Ev::Timeout {
                            node: i,
                            height,
                            round,
                            step,
                        },
                    );
                }
                Action::Decide {
                    height,
                    round,
                    block,
                    precommits,
                } => {
                    let node = &mut self.nodes[i as usize];
                    let proposal = node
                        .proposals
                        .iter()
                        .find(|p| p.height == height && p.round == round && p.block == block)
                        .copied()
                        .expect("a decision has its proposal");
                    let mut votes: Vec<Vote> = node
                        .precommits
                        .iter()
                        .filter(|v| {
                            v.height == height
                                && v.round == round
                                && v.block == Some(block)
                                && precommits.contains(&v.voter)
                        })
                        .copied()
                        .collect();
                    votes.sort_by_key(|v| v.voter);
                    votes.dedup();
                    assert_eq!(votes.len(), precommits.len(), "certificate votes at hand");
                    node.decided.insert(height, (proposal, votes));
                    node.proposals.retain(|p| p.height > height);
                    node.precommits.retain(|v| v.height > height);
                    node.prevotes.retain(|v| v.height > height);
                    node.sent.clear();
                }
                Action::Equivocation { .. } => {}
            }
        }
    }

    fn deliver(&mut self, from: u32, to: u32, msg: Net) {
        let h = self.nodes[to as usize].core.height();
        if msg.height() < h {
            // The sender lags: give it the decided height it is at.
            if let Some((p, votes)) = self.nodes[to as usize].decided.get(&msg.height()).cloned() {
                if !matches!(msg, Net::Commit(..)) {
                    self.send(to, from, Net::Commit(p, votes));
                }
            }
            return;
        }
        let node = &mut self.nodes[to as usize];
        if node.byz.is_none()
            && msg.height() == h
            && !matches!(msg, Net::Commit(..))
            && !node.sent.contains(&msg)
        {
            node.sent.push(msg.clone());
        }
        let out = match msg {
            Net::Proposal(p, pol) => {
                let mut out = Vec::new();
                for v in pol {
                    node.prevotes.push(v);
                    out.extend(node.core.on_vote(v));
                }
                node.proposals.push(p);
                out.extend(node.core.on_proposal(p, true));
                out
            }
            Net::Vote(v) => {
                match v.kind {
                    VoteKind::Precommit => node.precommits.push(v),
                    VoteKind::Prevote => node.prevotes.push(v),
                }
                node.core.on_vote(v)
            }
            Net::Commit(p, votes) => {
                let mut out = Vec::new();
                if p.height == h {
                    node.proposals.push(p);
                    out.extend(node.core.on_proposal(p, true));
                    for v in votes {
                        if node.core.height() == h {
                            node.precommits.push(v);
                            out.extend(node.core.on_vote(v));
                        }
                    }
                }
                out
            }
        };
        self.act(to, out);
    }

    /// Runs until `until`; returns whether it stopped early because `done` held.
    fn run(&mut self, until: u64, done: impl Fn(&Sim) -> bool) -> bool {
        while let Some(&Reverse((t, _, idx))) = self.queue.peek() {
            if t > until {
                return false;
            }
            self.queue.pop();
            self.now = t;
            let Some(ev) = self.events[idx].take() else {
                continue;
            };
            match ev {
                Ev::Deliver { from, to, msg } => {
                    if self.down(to, t) || self.cut(from, to, t) {
                        continue;
                    }
                    self.deliver(from, to, msg);
                }
                Ev::Timeout {
                    node,
                    height,
                    round,
                    step,
                } => {
                    if self.down(node, t) {
                        continue;
                    }
                    let out = self.nodes[node as usize]
                        .core
                        .on_timeout(height, round, step);
                    self.act(node, out);
                }
                Ev::Gossip { node } => {
                    if !self.down(node, t) {
                        let again = self.nodes[node as usize].sent.clone();
                        for m in again {
                            self.broadcast(node, m);
                        }
                    }
                    self.schedule(t + GOSSIP_MS, Ev::Gossip { node });
                }
                Ev::Restart { node } => {
                    // The state survived (it is persisted); the timer of its current step
                    // restarts.
                    let c = &self.nodes[node as usize].core;
                    let (height, round, step) = (c.height(), c.round(), c.step());
                    let after = Timeouts::default().of(step, round).min(1_000);
                    self.schedule(
                        t + after,
                        Ev::Timeout {
                            node,
                            height,
                            round,
                            step,
                        },
                    );
                }
            }
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Safety: honest validators agree on every height any two of them decided.
    fn check_safety(&self, seed: u64) {
        let mut agreed: BTreeMap<u64, (BlockId, u32)> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.byz.is_some() {
                continue;
            }
            for (h, (p, votes)) in &node.decided {
                let quorum = (2 * self.n as usize) / 3 + 1;
                assert!(
                    votes.len() >= quorum,
                    "seed {seed}: node {i} decided {h} without a quorum"
                );
                match agreed.get(h) {
                    None => {
                        agreed.insert(*h, (p.block, i as u32));
                    }
                    Some((b, j)) => assert_eq!(
                        *b, p.block,
                        "seed {seed}: fork at height {h}: node {j} and node {i} decided different blocks"
                    ),
                }
            }
        }
    }

    fn min_honest_height(&self) -> u64 {
        (0..self.n)
            .filter(|&i| self.honest(i))
            .map(|i| self.nodes[i as usize].core.height())
            .min()
            .unwrap_or(0)
    }
}

/// Runs one seed: faults until GST, then checks that every honest node decides 3 more heights.
fn scenario(n: u32, seed: u64, make: impl Fn(&mut StdRng) -> Faults) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let faults = make(&mut rng);
    let gst = faults.gst;
    let mut sim = Sim::new(n, seed, faults);
    sim.run(gst, |_| false);
    sim.check_safety(seed);
    let target = (0..n)
        .filter(|&i| sim.honest(i))
        .map(|i| sim.nodes[i as usize].core.height())
        .max()
        .unwrap_or(1)
        + 3;
    let live = sim.run(gst + 600_000, |s| s.min_honest_height() >= target);
    sim.check_safety(seed);
    if !live {
        for (i, node) in sim.nodes.iter().enumerate() {
            eprintln!(
                "node {i}: byz {:?} height {} round {} step {:?} locked {:?} sent {} decided {:?}",
                node.byz,
                node.core.height(),
                node.core.round(),
                node.core.step(),
                node.core.locked().map(|(b, r)| (b[0], b[8], r)),
                node.sent.len(),
                node.decided.keys().collect::<Vec<_>>()
            );
        }
        eprintln!("now {} queue {}", sim.now, sim.queue.len());
    }
    assert!(
        live,
        "seed {seed}: after GST the honest nodes did not all reach height {target} (lowest {})",
        sim.min_honest_height()
    );
}

fn chaos(n: u32, byz: Vec<(u32, Byz)>) -> impl Fn(&mut StdRng) -> Faults {
    move |rng: &mut StdRng| {
        let crash_node = rng.gen_range(0..n);
        let from = rng.gen_range(0..5_000);
        let half: Vec<u32> = (0..n / 2).collect();
        let p_from = rng.gen_range(0..10_000);
        Faults {
            loss: rng.gen_range(0.0..0.3),
            dup: 0.1,
            max_delay: rng.gen_range(10..800),
            gst: 20_000,
            max_delay_after: 50,
            crashes: vec![(crash_node, from, from + rng.gen_range(1_000..15_000))],
            partition: Some((half, p_from, p_from + rng.gen_range(1_000..10_000))),
            byz: byz.clone(),
        }
    }
}

#[test]
fn four_validators_with_a_byzantine_one_stay_safe_and_live() {
    for seed in 0..24 {
        scenario(
            4,
            seed,
            chaos(
                4,
                vec![(
                    3,
                    if seed % 2 == 0 {
                        Byz::Equivocate
                    } else {
                        Byz::DoubleVote
                    },
                )],
            ),
        );
    }
}

#[test]
fn seven_validators_with_two_byzantine_ones_stay_safe_and_live() {
    for seed in 100..112 {
        scenario(
            7,
            seed,
            chaos(7, vec![(5, Byz::Equivocate), (6, Byz::DoubleVote)]),
        );
    }
}

#[test]
fn a_two_two_partition_stops_commits_without_a_fork_and_heals() {
    for seed in 200..208 {
        let mut sim = Sim::new(
            4,
            seed,
            Faults {
                loss: 0.0,
                dup: 0.0,
                max_delay: 50,
                gst: 30_000,
                max_delay_after: 50,
                crashes: vec![],
                partition: Some((vec![0, 1], 0, 30_000)),
                byz: vec![],
            },
        );
        sim.run(29_999, |_| false);
        sim.check_safety(seed);
        assert!(
            sim.nodes.iter().all(|n| n.decided.is_empty()),
            "seed {seed}: a 2|2 split committed"
        );
        assert!(
            sim.run(30_000 + 600_000, |s| s.min_honest_height() >= 4),
            "seed {seed}: no progress after healing"
        );
        sim.check_safety(seed);
    }
}

#[test]
fn seven_validators_live_with_two_crashed_and_stalled_with_three() {
    for seed in 300..306 {
        let crashed = |k: u32| (0..k).map(|i| (i, 0, u64::MAX)).collect::<Vec<_>>();
        // Two of seven down for good: the other five still decide.
        let mut sim = Sim::new(
            7,
            seed,
            Faults {
                loss: 0.0,
                dup: 0.0,
                max_delay: 50,
                gst: u64::MAX,
                max_delay_after: 50,
                crashes: crashed(2),
                partition: None,
                byz: vec![],
            },
        );
        assert!(
            sim.run(300_000, |s| (2..7).all(|i| s.nodes[i].core.height() >= 4)),
            "seed {seed}: f = 2 crashed, no progress"
        );
        sim.check_safety(seed);
        // Three down: no quorum, nothing decided, no fork.
        let mut sim = Sim::new(
            7,
            seed,
            Faults {
                loss: 0.0,
                dup: 0.0,
                max_delay: 50,
                gst: u64::MAX,
                max_delay_after: 50,
                crashes: crashed(3),
                partition: None,
                byz: vec![],
            },
        );
        sim.run(120_000, |_| false);
        assert!(
            sim.nodes.iter().all(|n| n.decided.is_empty()),
            "seed {seed}: decided without a quorum"
        );
    }
}

/// Many more seeds: `cargo test -p bpu-consensus --release --test sim -- --ignored`.
#[test]
#[ignore]
fn many_seeds() {
    for seed in 1_000..3_000 {
        scenario(
            4,
            seed,
            chaos(
                4,
                vec![(
                    3,
                    if seed % 2 == 0 {
                        Byz::Equivocate
                    } else {
                        Byz::DoubleVote
                    },
                )],
            ),
        );
        scenario(
            7,
            seed,
            chaos(7, vec![(5, Byz::Equivocate), (6, Byz::DoubleVote)]),
        );
    }
}
