//! The Tendermint state machine of one validator (docs/consensus.md): proposals, votes and
//! timeouts in, actions out. Pure and deterministic: no clock, network, signatures or randomness.
//!
//! The driver verifies signatures before it hands messages in, signs and broadcasts the votes the
//! core asks for, builds blocks for `Propose`, runs the timers and turns a `Decide` (with the
//! precommit voters) into a certified block. Messages from the next height are kept and replayed
//! when the core gets there; older heights are the catch-up protocol's job.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A block's identity (its header hash).
pub type BlockId = [u8; 32];

/// A round's steps, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    Propose,
    Prevote,
    Precommit,
}

pub use crate::bls::VoteKind;

/// A proposer's proposal (its block travels with it; validity is the driver's verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proposal {
    pub height: u64,
    pub round: u32,
    pub block: BlockId,
    /// The round in which the proposer saw 2f+1 prevotes for this block (a re-proposal).
    pub valid_round: Option<u32>,
    pub proposer: u32,
}

/// A validator's vote; `block: None` is a vote for nil.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote {
    pub height: u64,
    pub round: u32,
    pub kind: VoteKind,
    pub block: Option<BlockId>,
    pub voter: u32,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Broadcast a proposal for (height, round): a new block when `block` is `None`, else the
    /// given block again with `valid_round`. The driver also hands it back to this core.
    Propose {
        height: u64,
        round: u32,
        block: Option<BlockId>,
        valid_round: Option<u32>,
    },
    /// Sign and broadcast this vote (and hand it back to this core).
    Vote(Vote),
    /// Call [`Core::on_timeout`] with these arguments after `after_ms`.
    Timeout {
        height: u64,
        round: u32,
        step: Step,
        after_ms: u64,
    },
    /// `block` is decided at `height` in `round`; `precommits` are the voters whose precommits
    /// for it form the certificate. The core has moved to `height + 1`.
    Decide {
        height: u64,
        round: u32,
        block: BlockId,
        precommits: Vec<u32>,
    },
    /// A validator signed two different votes (or proposals) for one (height, round, kind).
    Equivocation { first: Vote, second: Vote },
}

/// Timeouts of round 0, in milliseconds; round r waits `base · 2^min(r, 6)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub propose_ms: u64,
    pub prevote_ms: u64,
    pub precommit_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            propose_ms: 1_000,
            prevote_ms: 500,
            precommit_ms: 500,
        }
    }
}

impl Timeouts {
    /// The wait of `step` in `round` (exponential back-off, capped at 64×).
    pub fn of(&self, step: Step, round: u32) -> u64 {
        let base = match step {
            Step::Propose => self.propose_ms,
            Step::Prevote => self.prevote_ms,
            Step::Precommit => self.precommit_ms,
        };
        base << round.min(6)
    }
}

/// Static parameters of one validator's core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Validators in the set.
    pub n: u32,
    /// This validator's index, `None` for an observer.
    pub me: Option<u32>,
    pub timeouts: Timeouts,
}

impl Config {
    /// Votes that make a quorum: ⌊2n/3⌋ + 1 (2f + 1 when n = 3f + 1).
    pub fn quorum(&self) -> usize {
        (2 * self.n as usize) / 3 + 1
    }

    /// Messages from distinct validators that prove an honest one is ahead (f + 1).
    pub fn skip(&self) -> usize {
        self.n as usize - self.quorum() + 1
    }
}

/// The proposer of (height, round): rotates with both.
pub fn proposer(n: u32, height: u64, round: u32) -> u32 {
    ((height + u64::from(round)) % u64::from(n.max(1))) as u32
}

/// The values each validator voted for, in one (round, kind).
type Ballots = HashMap<u32, Vec<Option<BlockId>>>;

/// Upon-rules that fire once per round (docs/consensus.md, rules 34, 36, 47).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Once {
    PrevoteTimeout,
    Polka,
    PrecommitTimeout,
}

/// One validator's consensus state for the current height.
#[derive(Debug, Clone)]
pub struct Core {
    cfg: Config,
    height: u64,
    round: u32,
    step: Step,
    locked: Option<(BlockId, u32)>,
    valid: Option<(BlockId, u32)>,
    /// The proposer's proposals per round, with the driver's validity verdict: the first, and a
    /// second if it equivocated (the quorum may have formed on either).
    proposals: BTreeMap<u32, Vec<(Proposal, bool)>>,
    /// The values each validator voted per (round, kind): one, or two when it equivocated (a
    /// signed vote counts for its value either way, as in the paper; more are dropped).
    votes: BTreeMap<(u32, VoteKind), Ballots>,
    /// Validators heard from per round (rule 55).
    senders: BTreeMap<u32, BTreeSet<u32>>,
    fired: BTreeSet<(u32, Once)>,
    /// Messages of the next height, replayed when it starts.
    next: Vec<Msg>,
}

/// A message for the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    Proposal(Proposal, bool),
    Vote(Vote),
}

/// Most messages kept for the next height.
const NEXT_HEIGHT_BUFFER: usize = 4096;

impl Core {
    /// A core at `height`, round 0 started.
    pub fn new(cfg: Config, height: u64) -> (Core, Vec<Action>) {
        let mut c = Core {
            cfg,
            height,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            senders: BTreeMap::new(),
            fired: BTreeSet::new(),
            next: Vec::new(),
        };
        let mut out = Vec::new();
        c.start_round(0, &mut out);
        c.run(&mut out);
        (c, out)
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn round(&self) -> u32 {
        self.round
    }

    pub fn step(&self) -> Step {
        self.step
    }

    /// The block this validator is locked on, with the round.
    pub fn locked(&self) -> Option<(BlockId, u32)> {
        self.locked
    }

    /// A proposal (signature already checked by the driver); `valid` is the block's validity.
    pub fn on_proposal(&mut self, p: Proposal, valid: bool) -> Vec<Action> {
        let mut out = Vec::new();
        self.accept(Msg::Proposal(p, valid), &mut out);
        self.run(&mut out);
        out
    }

    /// A vote (signature already checked by the driver).
    pub fn on_vote(&mut self, v: Vote) -> Vec<Action> {
        let mut out = Vec::new();
        self.accept(Msg::Vote(v), &mut out);
        self.run(&mut out);
        out
    }

    /// A timer set by [`Action::Timeout`] went off.
    pub fn on_timeout(&mut self, height: u64, round: u32, step: Step) -> Vec<Action> {
        let mut out = Vec::new();
        if height == self.height && round == self.round {
            match step {
                Step::Propose if self.step == Step::Propose => {
                    self.vote(VoteKind::Prevote, None, &mut out);
                    self.step = Step::Prevote;
                }
                Step::Prevote if self.step == Step::Prevote => {
                    self.vote(VoteKind::Precommit, None, &mut out);
                    self.step = Step::Precommit;
                }
                Step::Precommit => self.start_round(round + 1, &mut out),
                _ => {}
            }
        }
        self.run(&mut out);
        out
    }

    fn accept(&mut self, m: Msg, out: &mut Vec<Action>) {
        let (height, round, sender) = match m {
            Msg::Proposal(p, _) => (p.height, p.round, p.proposer),
            Msg::Vote(v) => (v.height, v.round, v.voter),
        };
        if sender >= self.cfg.n || height < self.height {
            return;
        }
        if height > self.height {
            if height == self.height + 1 && self.next.len() < NEXT_HEIGHT_BUFFER {
                self.next.push(m);
            }
            return;
        }
        match m {
            Msg::Proposal(p, valid) => {
                if p.proposer != proposer(self.cfg.n, p.height, p.round) {
                    return;
                }
                let seen = self.proposals.entry(p.round).or_default();
                if !seen.iter().any(|(q, _)| *q == p) {
                    if let Some((first, _)) = seen.first() {
                        out.push(Action::Equivocation {
                            first: proposal_as_vote(first),
                            second: proposal_as_vote(&p),
                        });
                    }
                    if seen.len() < 2 {
                        seen.push((p, valid));
                    }
                }
            }
            Msg::Vote(v) => {
                let values = self
                    .votes
                    .entry((v.round, v.kind))
                    .or_default()
                    .entry(v.voter)
                    .or_default();
                if !values.contains(&v.block) {
                    if let Some(&b) = values.first() {
                        let first = Vote { block: b, ..v };
                        out.push(Action::Equivocation { first, second: v });
                    }
                    if values.len() < 2 {
                        values.push(v.block);
                    }
                }
            }
        }
        self.senders.entry(round).or_default().insert(sender);
    }

    fn count(&self, round: u32, kind: VoteKind, block: Option<Option<BlockId>>) -> usize {
        self.votes.get(&(round, kind)).map_or(0, |m| match block {
            None => m.len(),
            Some(b) => m.values().filter(|x| x.contains(&b)).count(),
        })
    }

    fn vote(&mut self, kind: VoteKind, block: Option<BlockId>, out: &mut Vec<Action>) {
        if let Some(me) = self.cfg.me {
            out.push(Action::Vote(Vote {
                height: self.height,
                round: self.round,
                kind,
                block,
                voter: me,
            }));
        }
    }

    fn start_round(&mut self, round: u32, out: &mut Vec<Action>) {
        self.round = round;
        self.step = Step::Propose;
        if self.cfg.me == Some(proposer(self.cfg.n, self.height, round)) {
            out.push(Action::Propose {
                height: self.height,
                round,
                block: self.valid.map(|(b, _)| b),
                valid_round: self.valid.map(|(_, r)| r),
            });
        }
        out.push(Action::Timeout {
            height: self.height,
            round,
            step: Step::Propose,
            after_ms: self.cfg.timeouts.of(Step::Propose, round),
        });
    }

    /// Applies the upon-rules until none fires.
    fn run(&mut self, out: &mut Vec<Action>) {
        loop {
            let before = out.len();
            let state = (self.height, self.round, self.step, self.fired.len());
            self.rules(out);
            if out.len() == before
                && state == (self.height, self.round, self.step, self.fired.len())
            {
                return;
            }
        }
    }

    fn rules(&mut self, out: &mut Vec<Action>) {
        let q = self.cfg.quorum();
        let r = self.round;
        let proposal = self.proposals.get(&r).and_then(|v| v.first()).copied();

        // Rule 49: a decision in any round, on any proposal of it.
        let decided = self.proposals.iter().find_map(|(&pr, props)| {
            props.iter().find_map(|(p, valid)| {
                (*valid && self.count(pr, VoteKind::Precommit, Some(Some(p.block))) >= q)
                    .then_some((pr, p.block))
            })
        });
        if let Some((round, block)) = decided {
            let precommits = self
                .votes
                .get(&(round, VoteKind::Precommit))
                .map(|m| {
                    let mut v: Vec<u32> = m
                        .iter()
                        .filter(|(_, b)| b.contains(&Some(block)))
                        .map(|(k, _)| *k)
                        .collect();
                    v.sort_unstable();
                    v
                })
                .unwrap_or_default();
            out.push(Action::Decide {
                height: self.height,
                round,
                block,
                precommits,
            });
            self.next_height(out);
            return;
        }

        if self.step == Step::Propose {
            if let Some((p, valid)) = proposal {
                match p.valid_round {
                    // Rule 22.
                    None => {
                        let ok = valid && self.locked.is_none_or(|(b, _)| b == p.block);
                        self.vote(VoteKind::Prevote, ok.then_some(p.block), out);
                        self.step = Step::Prevote;
                    }
                    // Rule 28.
                    Some(vr)
                        if vr < r
                            && self.count(vr, VoteKind::Prevote, Some(Some(p.block))) >= q =>
                    {
                        let ok =
                            valid && self.locked.is_none_or(|(b, lr)| lr <= vr || b == p.block);
                        self.vote(VoteKind::Prevote, ok.then_some(p.block), out);
                        self.step = Step::Prevote;
                    }
                    Some(_) => {}
                }
            }
        }

        // Rule 34.
        if self.step == Step::Prevote
            && self.count(r, VoteKind::Prevote, None) >= q
            && self.fired.insert((r, Once::PrevoteTimeout))
        {
            out.push(Action::Timeout {
                height: self.height,
                round: r,
                step: Step::Prevote,
                after_ms: self.cfg.timeouts.of(Step::Prevote, r),
            });
        }

        // Rule 36, on whichever proposal of this round has the prevote quorum.
        let polka = self.proposals.get(&r).and_then(|v| {
            v.iter()
                .find(|(p, valid)| {
                    *valid && self.count(r, VoteKind::Prevote, Some(Some(p.block))) >= q
                })
                .copied()
        });
        if let Some((p, true)) = polka {
            if self.step >= Step::Prevote
                && self.count(r, VoteKind::Prevote, Some(Some(p.block))) >= q
                && self.fired.insert((r, Once::Polka))
            {
                if self.step == Step::Prevote {
                    self.locked = Some((p.block, r));
                    self.vote(VoteKind::Precommit, Some(p.block), out);
                    self.step = Step::Precommit;
                }
                self.valid = Some((p.block, r));
            }
        }

        // Rule 44.
        if self.step == Step::Prevote && self.count(r, VoteKind::Prevote, Some(None)) >= q {
            self.vote(VoteKind::Precommit, None, out);
            self.step = Step::Precommit;
        }

        // Rule 47.
        if self.count(r, VoteKind::Precommit, None) >= q
            && self.fired.insert((r, Once::PrecommitTimeout))
        {
            out.push(Action::Timeout {
                height: self.height,
                round: r,
                step: Step::Precommit,
                after_ms: self.cfg.timeouts.of(Step::Precommit, r),
            });
        }

        // Rule 55: f + 1 validators are in a later round.
        let skip = self.cfg.skip();
        let ahead = self
            .senders
            .range(r + 1..)
            .filter(|(_, s)| s.len() >= skip)
            .map(|(&round, _)| round)
            .next_back();
        if let Some(round) = ahead {
            self.start_round(round, out);
        }
    }

    fn next_height(&mut self, out: &mut Vec<Action>) {
        self.height += 1;
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        self.votes.clear();
        self.senders.clear();
        self.fired.clear();
        self.start_round(0, out);
        for m in std::mem::take(&mut self.next) {
            self.accept(m, out);
        }
    }
}

/// A proposal in the shape of a vote, for equivocation reports.
fn proposal_as_vote(p: &Proposal) -> Vote {
    Vote {
        height: p.height,
        round: p.round,
        kind: VoteKind::Prevote,
        block: Some(p.block),
        voter: p.proposer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(me: u32) -> Config {
        Config {
            n: 4,
            me: Some(me),
            timeouts: Timeouts::default(),
        }
    }

    fn votes(out: &[Action]) -> Vec<Vote> {
        out.iter()
            .filter_map(|a| match a {
                Action::Vote(v) => Some(*v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn happy_path_decides_with_a_quorum_of_precommits() {
        // Height 1, round 0: proposer (1 + 0) mod 4 = 1.
        let (mut c, out) = Core::new(cfg(0), 1);
        assert!(!out.iter().any(|a| matches!(a, Action::Propose { .. })));
        let b = [7u8; 32];
        let p = Proposal {
            height: 1,
            round: 0,
            block: b,
            valid_round: None,
            proposer: 1,
        };
        let out = c.on_proposal(p, true);
        assert_eq!(votes(&out)[0].block, Some(b));
        assert_eq!(c.step(), Step::Prevote);
        let mut all = Vec::new();
        for voter in 0..3 {
            all.extend(c.on_vote(Vote {
                height: 1,
                round: 0,
                kind: VoteKind::Prevote,
                block: Some(b),
                voter,
            }));
        }
        assert_eq!(c.locked(), Some((b, 0)));
        assert!(votes(&all)
            .iter()
            .any(|v| v.kind == VoteKind::Precommit && v.block == Some(b)));
        let mut decided = None;
        for voter in [3, 1, 2] {
            for a in c.on_vote(Vote {
                height: 1,
                round: 0,
                kind: VoteKind::Precommit,
                block: Some(b),
                voter,
            }) {
                if let Action::Decide {
                    block, precommits, ..
                } = a
                {
                    decided = Some((block, precommits));
                }
            }
        }
        assert_eq!(decided, Some((b, vec![1, 2, 3])));
        assert_eq!((c.height(), c.round()), (2, 0));
    }

    #[test]
    fn a_proposal_from_the_wrong_proposer_is_ignored_and_a_locked_validator_keeps_its_lock() {
        let (mut c, _) = Core::new(cfg(0), 1);
        let out = c.on_proposal(
            Proposal {
                height: 1,
                round: 0,
                block: [1; 32],
                valid_round: None,
                proposer: 2,
            },
            true,
        );
        assert!(votes(&out).is_empty(), "not the proposer of (1, 0)");
        // An invalid block gets a nil prevote.
        let out = c.on_proposal(
            Proposal {
                height: 1,
                round: 0,
                block: [2; 32],
                valid_round: None,
                proposer: 1,
            },
            false,
        );
        assert_eq!(votes(&out)[0].block, None);
    }

    #[test]
    fn timeouts_back_off_and_move_rounds() {
        let (mut c, out) = Core::new(cfg(0), 1);
        assert!(out.contains(&Action::Timeout {
            height: 1,
            round: 0,
            step: Step::Propose,
            after_ms: 1_000
        }));
        let out = c.on_timeout(1, 0, Step::Propose);
        assert_eq!(votes(&out)[0].block, None);
        c.on_timeout(1, 0, Step::Precommit);
        assert_eq!(c.round(), 1);
        assert_eq!(Timeouts::default().of(Step::Propose, 3), 8_000);
        assert_eq!(Timeouts::default().of(Step::Propose, 40), 64_000);
    }

    #[test]
    fn double_votes_are_reported() {
        let (mut c, _) = Core::new(cfg(0), 1);
        let v = Vote {
            height: 1,
            round: 0,
            kind: VoteKind::Prevote,
            block: Some([1; 32]),
            voter: 3,
        };
        let equivocation =
            |out: &[Action]| out.iter().any(|a| matches!(a, Action::Equivocation { .. }));
        assert!(!equivocation(&c.on_vote(v)));
        assert!(
            !equivocation(&c.on_vote(v)),
            "the same vote twice is no offence"
        );
        let out = c.on_vote(Vote {
            block: Some([2; 32]),
            ..v
        });
        assert!(equivocation(&out));
    }
}
