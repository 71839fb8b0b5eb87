//! Counting a put's acknowledgements against its quorum, with spare candidates to ask in place
//! of replicas that fail. Plain data: the put feeds it answers and acts on its verdict.
//!
//! Only acknowledgements of the *counted* peers — the R nearest candidates the search knew
//! (its window) — count towards W; a spare written in place of a replica that failed keeps the
//! record at R copies but does not make the write visible to a quorum read.

use std::collections::{HashSet, VecDeque};

use libp2p::PeerId;

use crate::error::short_id;
use crate::placement::Plan;

/// How many failure reasons an error message carries.
pub const MAX_REASONS: usize = 4;

/// The acknowledgements of one write.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Replicas chosen (R, capped by the candidates there were).
    pub replicas: usize,
    /// Acknowledgements needed (W).
    pub needed: usize,
    /// Candidates not asked yet, nearest first.
    pub spares: VecDeque<PeerId>,
    /// Peers that acknowledged, in the order they did.
    pub ok: Vec<PeerId>,
    /// Why others did not (first few).
    pub failures: Vec<String>,
    /// Peers asked that have not answered: only their answers are taken, each once.
    pending: HashSet<PeerId>,
    /// The peers whose acknowledgements count towards W.
    counted: HashSet<PeerId>,
    /// Acknowledgements of peers that do not count (spares).
    pub extra: Vec<PeerId>,
}

impl Tally {
    /// The tally of a write to `plan`'s replicas (none asked yet), where only `counted` peers'
    /// acknowledgements count and `replicas` is the size of the window they come from.
    pub fn new(plan: &Plan, counted: HashSet<PeerId>, replicas: usize) -> Self {
        Self {
            replicas,
            needed: plan.needed,
            spares: plan.spares.iter().copied().collect(),
            ok: Vec::new(),
            failures: Vec::new(),
            pending: HashSet::new(),
            counted,
            extra: Vec::new(),
        }
    }

    /// `peer` was asked; `false` when it already was (it is not asked twice).
    pub fn ask(&mut self, peer: PeerId) -> bool {
        !self.ok.contains(&peer) && !self.extra.contains(&peer) && self.pending.insert(peer)
    }

    /// Records an acknowledgement; `false` (and nothing counted) when `peer` was not waited for.
    pub fn succeed(&mut self, peer: PeerId) -> bool {
        if !self.pending.remove(&peer) {
            return false;
        }
        if self.counted.contains(&peer) {
            self.ok.push(peer);
        } else {
            self.extra.push(peer);
        }
        true
    }

    /// Records a failure of `peer`; returns the spare to ask instead, if one is left (a put
    /// keeps filling up to R copies after its quorum is met). `None` as well when `peer` was
    /// not waited for.
    pub fn fail(&mut self, peer: PeerId, reason: impl std::fmt::Display) -> Option<PeerId> {
        if !self.pending.remove(&peer) {
            return None;
        }
        if self.failures.len() < MAX_REASONS {
            self.failures.push(format!("{}: {reason}", short_id(&peer)));
        }
        self.spares.pop_front()
    }

    /// Requests sent and not answered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Enough acknowledgements.
    pub fn met(&self) -> bool {
        self.ok.len() >= self.needed
    }

    /// Not enough acknowledgements can come any more (spares do not count).
    pub fn impossible(&self) -> bool {
        let counted_pending = self.pending.iter().filter(|p| self.counted.contains(p)).count();
        self.ok.len() + counted_pending < self.needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(replicas: usize, spares: usize, needed: usize) -> Plan {
        Plan {
            replicas: (0..replicas).map(|_| PeerId::random()).collect(),
            spares: (0..spares).map(|_| PeerId::random()).collect(),
            needed,
        }
    }

    fn counting(p: &Plan) -> Tally {
        Tally::new(p, p.replicas.iter().copied().collect(), p.replicas.len())
    }

    #[test]
    fn a_failure_brings_in_a_spare_whose_acknowledgement_does_not_count() {
        let p = plan(3, 1, 2);
        let mut t = counting(&p);
        for r in &p.replicas {
            assert!(t.ask(*r));
        }
        assert!(t.succeed(p.replicas[0]));
        assert_eq!(t.fail(p.replicas[1], "gone"), Some(p.spares[0]));
        assert!(t.ask(p.spares[0]));
        assert!(!t.met() && !t.impossible(), "replicas[2] may still acknowledge");
        assert!(t.succeed(p.spares[0]));
        assert_eq!(t.extra, vec![p.spares[0]]);
        assert!(!t.met(), "a spare keeps a copy but is not one of the replicas that count");
        assert_eq!(t.fail(p.replicas[2], "gone"), None);
        assert!(t.impossible());
        assert_eq!(t.failures.len(), 2);
    }

    #[test]
    fn only_answers_of_peers_asked_count_and_each_once() {
        let p = plan(3, 0, 2);
        let mut t = counting(&p);
        assert!(t.ask(p.replicas[0]));
        assert!(!t.ask(p.replicas[0]), "asked twice");
        assert!(!t.succeed(p.replicas[1]), "never asked");
        assert!(t.succeed(p.replicas[0]));
        assert!(!t.succeed(p.replicas[0]), "a duplicate");
        assert_eq!(t.ok.len(), 1);
        assert_eq!(t.fail(PeerId::random(), "stranger"), None);
        assert!(t.failures.is_empty());
    }
}
