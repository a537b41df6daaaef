//! Tendermint consensus for one (region, epoch): the decision rules only.
//!
//! An [`Instance`] knows nothing of bytes, signatures, storage or time. It is
//! fed proposals, votes, the validity of proposed values and expired timeouts,
//! and answers with [`Action`]s: propose, vote, schedule a timeout, decided.
//! The [`crate::Node`] around it signs, persists before sending, verifies and
//! keeps the clock. Values are named by their hash (the summary hash).
//!
//! The rules are those of "The latest gossip on BFT consensus" (Buchman, Kwon,
//! Milosevic, 2018), Algorithm 1, with the usual reading:
//! - a member counts only the first vote of each member per (round, step); a
//!   second, different one is equivocation evidence and is ignored;
//! - a value is decided on 2f+1 precommits for it in any round, even without
//!   having validated it: at least f+1 honest members did;
//! - f+1 messages of a higher round make a member skip to that round.
//!
//! Restart: [`Instance::restore`] replays the votes a member signed before a
//! crash (from durable storage), so it resumes in the round and step it had
//! reached, keeps the lock of its last precommit for a value, and never emits a
//! vote for a (round, step) it already voted in.

use std::collections::{BTreeMap, BTreeSet};

use meshd_protocol::Hash32;
use meshd_protocol::message::VoteStep;

/// Index of a member in its committee (members sorted by gateway id).
pub type Member = usize;

/// The timeouts of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeoutStep {
    /// Waiting for the round's proposal.
    Propose,
    /// Saw 2f+1 prevotes of any kind, waiting for a quorum on one.
    Prevote,
    /// Saw 2f+1 precommits of any kind, waiting for a quorum on one.
    Precommit,
}

/// Where a member stands in its current round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Waiting for a proposal.
    Propose,
    /// Prevoted, counting prevotes.
    Prevote,
    /// Precommitted, counting precommits.
    Precommit,
}

/// What the instance asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// This member proposes in `round`: the value `value` if it re-proposes a
    /// valid value (with its `valid_round`), else a fresh value it builds.
    Propose {
        /// The round.
        round: u32,
        /// Tendermint's valid round of a re-proposed value.
        valid_round: Option<u32>,
        /// The value to re-propose, or `None` to build one.
        value: Option<Hash32>,
    },
    /// Sign and send this vote (after persisting it).
    Vote {
        /// The round.
        round: u32,
        /// Prevote or precommit.
        step: VoteStep,
        /// The value, `None` for nil.
        value: Option<Hash32>,
    },
    /// Call [`Instance::on_timeout`] with these arguments after the step's timeout.
    Schedule {
        /// The round.
        round: u32,
        /// Which timeout.
        step: TimeoutStep,
    },
    /// The value is decided: 2f+1 precommits for it in `round`.
    Decided {
        /// The round of the deciding precommits.
        round: u32,
        /// The value.
        value: Hash32,
    },
}

/// Once-only rules of Algorithm 1, per round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Once {
    PrevoteTimeout,
    Polka,
    PrecommitTimeout,
}

/// The state of one consensus instance.
#[derive(Clone, Debug)]
pub struct Instance {
    size: usize,
    me: Option<Member>,
    /// Rotation offset of the proposer schedule (the epoch).
    offset: u64,
    started: bool,
    round: u32,
    step: Step,
    locked: Option<(u32, Hash32)>,
    valid: Option<(u32, Hash32)>,
    /// The first proposal of each round from its proposer: (value, valid round).
    proposals: BTreeMap<u32, (Hash32, Option<u32>)>,
    validity: BTreeMap<Hash32, bool>,
    votes: BTreeMap<(u32, VoteStep), BTreeMap<Member, Option<Hash32>>>,
    /// Members heard from per round (proposal or vote), for the round skip.
    heard: BTreeMap<u32, BTreeSet<Member>>,
    fired: BTreeSet<(u32, Once)>,
    /// Votes this member cast, per (round, step): never two different ones.
    cast: BTreeMap<(u32, VoteStep), Option<Hash32>>,
    decided: Option<(u32, Hash32)>,
    equivocations: u64,
}

/// Most rounds ahead of the current one whose messages are kept. A member
/// that is far behind catches up through the f+1 round skip; messages further
/// ahead are dropped so a Byzantine member cannot fill memory with rounds.
pub const MAX_ROUNDS_AHEAD: u32 = 16;

impl Instance {
    /// A new instance for a committee of `size` members, this member being
    /// `me` (`None` for an observer), with proposer rotation offset `offset`.
    pub fn new(size: usize, me: Option<Member>, offset: u64) -> Instance {
        Instance {
            size: size.max(1),
            me,
            offset,
            started: false,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            proposals: BTreeMap::new(),
            validity: BTreeMap::new(),
            votes: BTreeMap::new(),
            heard: BTreeMap::new(),
            fired: BTreeSet::new(),
            cast: BTreeMap::new(),
            decided: None,
            equivocations: 0,
        }
    }

    /// The largest number of faulty members tolerated: f = ⌊(n − 1) / 3⌋.
    pub fn faulty(&self) -> usize {
        (self.size - 1) / 3
    }

    /// Votes needed for a quorum: ⌊2n / 3⌋ + 1 (2f+1 when n = 3f+1).
    pub fn quorum(&self) -> usize {
        2 * self.size / 3 + 1
    }

    /// The proposer of `round`.
    pub fn proposer(&self, round: u32) -> Member {
        ((self.offset.wrapping_add(u64::from(round))) % self.size as u64) as Member
    }

    /// The current round.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// The current step.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The decision, once made.
    pub fn decided(&self) -> Option<(u32, Hash32)> {
        self.decided
    }

    /// Whether [`Instance::start`] was called.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Conflicting second votes seen from members.
    pub fn equivocations(&self) -> u64 {
        self.equivocations
    }

    /// The vote this member cast in (round, step), if any.
    pub fn cast(&self, round: u32, step: VoteStep) -> Option<Option<Hash32>> {
        self.cast.get(&(round, step)).copied()
    }

    /// Members whose vote for `value` in (round, step) was counted.
    pub fn voters(&self, round: u32, step: VoteStep, value: &Hash32) -> Vec<Member> {
        self.votes
            .get(&(round, step))
            .map(|m| m.iter().filter(|(_, v)| v.as_ref() == Some(value)).map(|(k, _)| *k).collect())
            .unwrap_or_default()
    }

    /// Replays a vote this member signed before a restart. Call before
    /// [`Instance::start`], once per stored vote.
    pub fn restore(&mut self, round: u32, step: VoteStep, value: Option<Hash32>) {
        self.cast.insert((round, step), value);
        if let Some(me) = self.me {
            self.votes.entry((round, step)).or_default().entry(me).or_insert(value);
            self.heard.entry(round).or_default().insert(me);
        }
        if step == VoteStep::Precommit
            && let Some(v) = value
            && self.locked.is_none_or(|(r, _)| r <= round)
        {
            self.locked = Some((round, v));
            self.valid = Some((round, v));
        }
    }

    /// Starts the instance at round 0, or at the round restored votes reached.
    pub fn start(&mut self, out: &mut Vec<Action>) {
        if self.started {
            return;
        }
        self.started = true;
        let resume = self.cast.keys().map(|(r, _)| *r).max();
        match resume {
            None => self.start_round(0, out),
            Some(r) => {
                self.round = r;
                let step = if self.cast.contains_key(&(r, VoteStep::Precommit)) {
                    Step::Precommit
                } else {
                    Step::Prevote
                };
                self.step = step;
                // Timeouts keep a resumed round moving even if nobody else votes.
                out.push(Action::Schedule {
                    round: r,
                    step: if step == Step::Precommit { TimeoutStep::Precommit } else { TimeoutStep::Prevote },
                });
            }
        }
        self.process(out);
    }

    fn start_round(&mut self, round: u32, out: &mut Vec<Action>) {
        self.round = round;
        self.step = Step::Propose;
        if self.me == Some(self.proposer(round)) && !self.cast.contains_key(&(round, VoteStep::Prevote)) {
            match self.valid {
                Some((vr, v)) => out.push(Action::Propose { round, valid_round: Some(vr), value: Some(v) }),
                None => out.push(Action::Propose { round, valid_round: None, value: None }),
            }
        }
        out.push(Action::Schedule { round, step: TimeoutStep::Propose });
    }

    fn in_window(&self, round: u32) -> bool {
        round <= self.round.saturating_add(MAX_ROUNDS_AHEAD)
    }

    /// A proposal from `from` for `round`. Ignored unless `from` is the
    /// round's proposer; only the first proposal of a round counts.
    pub fn on_proposal(
        &mut self,
        from: Member,
        round: u32,
        valid_round: Option<u32>,
        value: Hash32,
        out: &mut Vec<Action>,
    ) {
        if from >= self.size || from != self.proposer(round) || !self.in_window(round) {
            return;
        }
        if valid_round.is_some_and(|vr| vr >= round) {
            return;
        }
        match self.proposals.get(&round) {
            Some((v, _)) if *v != value => self.equivocations += 1,
            Some(_) => {}
            None => {
                self.proposals.insert(round, (value, valid_round));
            }
        }
        self.heard.entry(round).or_default().insert(from);
        self.process(out);
    }

    /// The driver's verdict on a proposed value: it holds and validated every
    /// listed report and recomputed the same summary (`true`), or not.
    pub fn set_validity(&mut self, value: Hash32, valid: bool, out: &mut Vec<Action>) {
        self.validity.insert(value, valid);
        self.process(out);
    }

    /// Whether the validity of `value` is known.
    pub fn validity(&self, value: &Hash32) -> Option<bool> {
        self.validity.get(value).copied()
    }

    /// A vote from member `from` (its signature already verified).
    pub fn on_vote(
        &mut self,
        from: Member,
        round: u32,
        step: VoteStep,
        value: Option<Hash32>,
        out: &mut Vec<Action>,
    ) {
        if from >= self.size || !self.in_window(round) {
            return;
        }
        let slot = self.votes.entry((round, step)).or_default();
        match slot.get(&from) {
            Some(v) if *v != value => {
                self.equivocations += 1;
                return;
            }
            Some(_) => return,
            None => {
                slot.insert(from, value);
            }
        }
        self.heard.entry(round).or_default().insert(from);
        self.process(out);
    }

    /// A timeout scheduled by [`Action::Schedule`] expired.
    pub fn on_timeout(&mut self, round: u32, step: TimeoutStep, out: &mut Vec<Action>) {
        if self.decided.is_some() || round != self.round {
            return;
        }
        match step {
            TimeoutStep::Propose if self.step == Step::Propose => {
                self.vote(VoteStep::Prevote, None, out);
                self.step = Step::Prevote;
            }
            TimeoutStep::Prevote if self.step == Step::Prevote => {
                self.vote(VoteStep::Precommit, None, out);
                self.step = Step::Precommit;
            }
            TimeoutStep::Precommit => self.start_round(round + 1, out),
            _ => {}
        }
        self.process(out);
    }

    fn vote(&mut self, step: VoteStep, value: Option<Hash32>, out: &mut Vec<Action>) {
        let round = self.round;
        if self.me.is_none() || self.cast.contains_key(&(round, step)) {
            return;
        }
        self.cast.insert((round, step), value);
        if let Some(me) = self.me {
            self.votes.entry((round, step)).or_default().entry(me).or_insert(value);
            self.heard.entry(round).or_default().insert(me);
        }
        out.push(Action::Vote { round, step, value });
    }

    fn count(&self, round: u32, step: VoteStep, value: Option<Hash32>) -> usize {
        self.votes.get(&(round, step)).map_or(0, |m| m.values().filter(|v| **v == value).count())
    }

    fn count_any(&self, round: u32, step: VoteStep) -> usize {
        self.votes.get(&(round, step)).map_or(0, BTreeMap::len)
    }

    fn fire(&mut self, round: u32, rule: Once) -> bool {
        self.fired.insert((round, rule))
    }

    /// Applies every rule whose condition holds until none does.
    fn process(&mut self, out: &mut Vec<Action>) {
        if !self.started {
            return;
        }
        loop {
            if self.decided.is_some() {
                return;
            }
            if !self.step_once(out) {
                return;
            }
        }
    }

    /// One rule application; `true` when something changed.
    fn step_once(&mut self, out: &mut Vec<Action>) -> bool {
        let q = self.quorum();
        // Decide: 2f+1 precommits for a value in any round.
        let decision =
            self.votes.iter().filter(|((_, s), _)| *s == VoteStep::Precommit).find_map(|((r, _), m)| {
                let mut tally: BTreeMap<Hash32, usize> = BTreeMap::new();
                for v in m.values().flatten() {
                    *tally.entry(*v).or_default() += 1;
                }
                tally.into_iter().find(|(_, c)| *c >= q).map(|(v, _)| (*r, v))
            });
        if let Some((round, value)) = decision {
            self.decided = Some((round, value));
            out.push(Action::Decided { round, value });
            return true;
        }
        // Skip ahead on f+1 members heard in a higher round.
        let skip = self
            .heard
            .range(self.round + 1..)
            .find(|(_, members)| members.len() > self.faulty())
            .map(|(r, _)| *r);
        if let Some(r) = skip {
            self.start_round(r, out);
            return true;
        }
        let r = self.round;
        let proposal = self.proposals.get(&r).copied();
        // Prevote on the round's proposal.
        if self.step == Step::Propose
            && let Some((v, vr)) = proposal
            && let Some(valid) = self.validity.get(&v).copied()
        {
            match vr {
                None => {
                    let accept = valid && self.locked.is_none_or(|(_, lv)| lv == v);
                    self.vote(VoteStep::Prevote, accept.then_some(v), out);
                    self.step = Step::Prevote;
                    return true;
                }
                Some(vr) if self.count(vr, VoteStep::Prevote, Some(v)) >= q => {
                    let accept = valid && self.locked.is_none_or(|(lr, lv)| lr <= vr || lv == v);
                    self.vote(VoteStep::Prevote, accept.then_some(v), out);
                    self.step = Step::Prevote;
                    return true;
                }
                Some(_) => {}
            }
        }
        if self.step == Step::Prevote
            && self.count_any(r, VoteStep::Prevote) >= q
            && self.fire(r, Once::PrevoteTimeout)
        {
            out.push(Action::Schedule { round: r, step: TimeoutStep::Prevote });
            return true;
        }
        // A polka for the round's valid proposal: lock and precommit.
        if self.step != Step::Propose
            && let Some((v, _)) = proposal
            && self.validity.get(&v) == Some(&true)
            && self.count(r, VoteStep::Prevote, Some(v)) >= q
            && self.fire(r, Once::Polka)
        {
            if self.step == Step::Prevote {
                self.locked = Some((r, v));
                self.vote(VoteStep::Precommit, Some(v), out);
                self.step = Step::Precommit;
            }
            self.valid = Some((r, v));
            return true;
        }
        if self.step == Step::Prevote && self.count(r, VoteStep::Prevote, None) >= q {
            self.vote(VoteStep::Precommit, None, out);
            self.step = Step::Precommit;
            return true;
        }
        if self.count_any(r, VoteStep::Precommit) >= q && self.fire(r, Once::PrecommitTimeout) {
            out.push(Action::Schedule { round: r, step: TimeoutStep::Precommit });
            return true;
        }
        false
    }

    /// Drops the messages of rounds before `round` − 1 that can no longer
    /// matter, bounding memory. Kept: precommits (a decision) and the
    /// prevotes of rounds with a polka (a re-proposal's valid round needs them).
    pub fn prune(&mut self) {
        let keep = self.round.saturating_sub(1);
        let q = self.quorum();
        let polka = |m: &BTreeMap<Member, Option<Hash32>>| {
            let mut tally: BTreeMap<Hash32, usize> = BTreeMap::new();
            for v in m.values().flatten() {
                *tally.entry(*v).or_default() += 1;
            }
            tally.values().any(|c| *c >= q)
        };
        self.votes.retain(|(r, s), m| *r >= keep || *s == VoteStep::Precommit || polka(m));
        self.heard.retain(|r, _| *r >= keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Hash32 {
        Hash32([b; 32])
    }

    #[test]
    fn quorum_is_two_f_plus_one_for_three_f_plus_one_members() {
        for (n, f, q) in [(4, 1, 3), (7, 2, 5), (31, 10, 21), (1, 0, 1), (5, 1, 4)] {
            let i = Instance::new(n, None, 0);
            assert_eq!((i.faulty(), i.quorum()), (f, q), "n = {n}");
        }
    }

    #[test]
    fn a_member_prevotes_a_valid_proposal_and_decides_on_a_quorum_of_precommits() {
        let mut i = Instance::new(4, Some(1), 0);
        let mut out = Vec::new();
        i.start(&mut out);
        i.on_proposal(0, 0, None, h(1), &mut out);
        assert!(!out.iter().any(|a| matches!(a, Action::Vote { .. })), "no prevote before validity is known");
        i.set_validity(h(1), true, &mut out);
        assert!(out.contains(&Action::Vote { round: 0, step: VoteStep::Prevote, value: Some(h(1)) }));
        i.on_vote(0, 0, VoteStep::Prevote, Some(h(1)), &mut out);
        i.on_vote(2, 0, VoteStep::Prevote, Some(h(1)), &mut out);
        assert!(out.contains(&Action::Vote { round: 0, step: VoteStep::Precommit, value: Some(h(1)) }));
        i.on_vote(0, 0, VoteStep::Precommit, Some(h(1)), &mut out);
        i.on_vote(2, 0, VoteStep::Precommit, Some(h(1)), &mut out);
        assert_eq!(i.decided(), Some((0, h(1))));
    }

    #[test]
    fn an_invalid_proposal_gets_a_nil_prevote() {
        let mut i = Instance::new(4, Some(1), 0);
        let mut out = Vec::new();
        i.start(&mut out);
        i.on_proposal(0, 0, None, h(1), &mut out);
        i.set_validity(h(1), false, &mut out);
        assert!(out.contains(&Action::Vote { round: 0, step: VoteStep::Prevote, value: None }));
    }

    #[test]
    fn a_restored_member_never_votes_again_in_a_round_it_voted_in() {
        let mut i = Instance::new(4, Some(1), 0);
        i.restore(0, VoteStep::Prevote, Some(h(1)));
        i.restore(0, VoteStep::Precommit, Some(h(1)));
        let mut out = Vec::new();
        i.start(&mut out);
        i.on_timeout(0, TimeoutStep::Propose, &mut out);
        i.on_timeout(0, TimeoutStep::Prevote, &mut out);
        assert!(!out.iter().any(|a| matches!(a, Action::Vote { round: 0, .. })));
        // Next round: locked on h(1), a new proposal of h(2) gets nil.
        i.on_timeout(0, TimeoutStep::Precommit, &mut out);
        i.on_proposal(1, 1, None, h(2), &mut out);
        i.set_validity(h(2), true, &mut out);
        assert!(out.contains(&Action::Vote { round: 1, step: VoteStep::Prevote, value: None }));
    }

    #[test]
    fn f_plus_one_members_in_a_higher_round_make_a_member_skip_to_it() {
        let mut i = Instance::new(4, Some(1), 0);
        let mut out = Vec::new();
        i.start(&mut out);
        i.on_vote(2, 5, VoteStep::Prevote, None, &mut out);
        assert_eq!(i.round(), 0);
        i.on_vote(3, 5, VoteStep::Prevote, None, &mut out);
        assert_eq!(i.round(), 5);
    }

    #[test]
    fn a_second_different_vote_of_a_member_is_counted_as_equivocation_and_ignored() {
        let mut i = Instance::new(4, Some(1), 0);
        let mut out = Vec::new();
        i.start(&mut out);
        i.on_vote(2, 0, VoteStep::Precommit, Some(h(1)), &mut out);
        i.on_vote(2, 0, VoteStep::Precommit, Some(h(2)), &mut out);
        assert_eq!(i.equivocations(), 1);
        assert_eq!(i.voters(0, VoteStep::Precommit, &h(1)), vec![2]);
    }
}
