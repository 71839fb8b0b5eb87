//! Operations in flight (puts, gets) and the tally that decides when a quorum is met or can no
//! longer be. The tally is plain data: the event loop feeds it answers and acts on its verdict.

use std::collections::VecDeque;
use std::time::Instant;

use libp2p::PeerId;

use super::search::Search;
use crate::command::{GetReport, PutReport, Reply};
use crate::error::short_id;
use crate::placement::Plan;
use crate::record::Record;

/// Identifies one operation across its lookup and its requests.
pub(crate) type OpId = u64;

/// How many failure reasons an error message carries.
const MAX_REASONS: usize = 4;

/// Counting answers against a quorum, with spare candidates to ask in place of failures.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Replicas chosen (R, capped by the candidates there were).
    pub replicas: usize,
    /// Answers needed.
    pub needed: usize,
    /// Candidates not asked yet, nearest first.
    pub spares: VecDeque<PeerId>,
    /// Peers that answered well.
    pub ok: Vec<PeerId>,
    /// Why the others did not (first few).
    pub failures: Vec<String>,
    /// Requests sent and not yet answered.
    pub in_flight: usize,
}

impl Tally {
    pub fn new(plan: &Plan) -> Self {
        Self {
            replicas: plan.replicas.len(),
            needed: plan.needed,
            spares: plan.spares.iter().copied().collect(),
            ok: Vec::new(),
            failures: Vec::new(),
            in_flight: 0,
        }
    }

    /// Records a good answer from `peer`.
    pub fn succeed(&mut self, peer: PeerId) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.ok.push(peer);
    }

    /// Records a failure of `peer`; returns the spare to ask instead, if one is left and the
    /// quorum is still open (or always, with `refill`: a put keeps R copies).
    pub fn fail(
        &mut self,
        peer: PeerId,
        reason: impl std::fmt::Display,
        refill: bool,
    ) -> Option<PeerId> {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.failures.len() < MAX_REASONS {
            self.failures.push(format!("{}: {reason}", short_id(&peer)));
        }
        if self.met() && !refill {
            return None;
        }
        self.spares.pop_front()
    }

    /// Enough answers.
    pub fn met(&self) -> bool {
        self.ok.len() >= self.needed
    }

    /// Not enough answers can come any more.
    pub fn impossible(&self) -> bool {
        self.ok.len() + self.in_flight + self.spares.len() < self.needed
    }
}

/// A put (or delete) in flight.
pub(crate) struct PendingPut {
    /// The signed record being written.
    pub record: Record,
    /// The search for the key's replicas: `Some` until it settled on them.
    pub search: Option<Box<Search>>,
    /// `None` while the search runs.
    pub tally: Option<Tally>,
    /// The greatest version a replica said it already held above ours: our write lost.
    pub superseded_by: Option<crate::clock::Hlc>,
    /// Whether the search saw a live value under the key (a delete with `false` had nothing
    /// to delete).
    pub existed: bool,
    pub started: Instant,
    pub deadline: Instant,
    /// Taken when the put has answered; the op lives on until every replica answered, asking
    /// spares in place of failures so the record still reaches R peers.
    pub reply: Option<Reply<PutReport>>,
}

impl PendingPut {
    pub fn report(&self, tally: &Tally) -> PutReport {
        PutReport {
            key: self.record.key.clone(),
            version: self.record.version,
            acked: tally.ok.len(),
            replicas: tally.replicas,
            needed: tally.needed,
            stored_on: tally.ok.clone(),
            superseded_by: self.superseded_by,
            existed: self.existed,
            elapsed: self.started.elapsed(),
        }
    }
}

/// A get in flight.
pub(crate) struct PendingGet {
    pub key: String,
    /// Its candidates and what they answered.
    pub search: Search,
    pub started: Instant,
    pub deadline: Instant,
    /// Taken when the get has answered; the op lives on until every reply is in, for repair.
    pub reply: Option<Reply<GetReport>>,
}

impl PendingGet {
    pub fn report(&self) -> GetReport {
        GetReport {
            key: self.key.clone(),
            record: self.search.newest(),
            replies: self.search.answered().0,
            replicas: self.search.replicas(),
            needed: self.search.needed(),
            asked: self.search.asked(),
            hops: self.search.hops(),
            elapsed: self.started.elapsed(),
        }
    }
}

/// An operation in flight.
pub(crate) enum Op {
    Put(PendingPut),
    Get(PendingGet),
}

impl Op {
    pub fn deadline(&self) -> Instant {
        match self {
            Op::Put(p) => p.deadline,
            Op::Get(g) => g.deadline,
        }
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

    #[test]
    fn a_failure_is_replaced_by_a_spare_until_the_quorum_is_met() {
        let p = plan(3, 1, 2);
        let mut t = Tally::new(&p);
        t.in_flight = 3;
        assert_eq!(t.fail(p.replicas[0], "refused", false), Some(p.spares[0]));
        t.in_flight += 1;
        assert!(!t.met() && !t.impossible());
        t.succeed(p.replicas[1]);
        t.succeed(p.replicas[2]);
        assert!(t.met());
        assert_eq!(t.failures.len(), 1);
    }

    #[test]
    fn a_put_refills_after_its_quorum_but_a_get_does_not() {
        let p = plan(2, 2, 1);
        let mut t = Tally::new(&p);
        t.in_flight = 2;
        t.succeed(p.replicas[0]);
        assert!(t.met());
        assert_eq!(t.fail(p.replicas[1], "gone", false), None);
        t.in_flight += 1;
        assert_eq!(t.fail(p.replicas[1], "gone", true), Some(p.spares[0]));
    }

    #[test]
    fn impossible_when_too_few_can_still_answer() {
        let p = plan(3, 0, 3);
        let mut t = Tally::new(&p);
        t.in_flight = 3;
        t.succeed(p.replicas[0]);
        assert!(!t.impossible());
        assert_eq!(t.fail(p.replicas[1], "timeout", false), None);
        assert!(t.impossible());
    }
}
