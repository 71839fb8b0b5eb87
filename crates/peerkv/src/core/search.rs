//! The search of a put or get: finding a key's replicas and their answers in one iterative
//! walk, without a Kademlia lookup first.
//!
//! A get asks at once the R peers nearest to the key that the local routing table (and the
//! local peer) knows. Every remote answer carries, besides the record, the peers the replier
//! knows nearest to the key; they join the candidates, and whenever the R nearest candidates
//! change the newcomers are asked too.
//!
//! Quorums are strict: only answers of the R nearest candidates known — the *window*, failed
//! peers included — count. A peer that fails keeps its place in the window (it still counts
//! against the quorum: it may hold the newest write), and the next candidate is asked as well
//! (the *reach*: the R nearest that have not failed), so a put finds spares to keep R copies
//! and a repair has somewhere to go, but its answer does not count. A put acknowledged by W of
//! the window and a get answered by Q of it share a peer whenever W + Q > R: the get sees the
//! put or a newer write. The get is answered once Q of the window have answered and one of
//! them holds a record, or, when none does, once every peer of the window and of the reach has
//! answered or failed (then "not found" needs Q answers of the window too, and a record the
//! reach holds — a newcomer displaced its holders before upkeep handed it over — is found).
//! Before a get concludes "not found", its reach doubles to the 2R nearest live candidates (as
//! soon as its first answers say "nothing held", with the rest of the R nearest):
//! after a burst of churn, holders can sit beyond the first R.
//!
//! Peers near a key know their neighbourhood in full (their nearest buckets are never full), so
//! the replicas' hints name the true replica set: when the local table already holds the nearest
//! peers the get ends after one round trip, otherwise after one or two more. The search is
//! plain data: the event loop sends what [`Search::next_to_ask`] returns and feeds the answers back.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use libp2p::kad::{KBucketDistance, KBucketKey};
use libp2p::PeerId;

use crate::placement;
use crate::record::{Record, Stamp};

/// How many failure reasons an error message carries.
const MAX_REASONS: usize = 4;

/// Where one candidate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Known, not asked.
    Waiting,
    /// Asked, no answer yet.
    Asked,
    /// Answered with what it holds.
    Answered(Option<Record>),
    /// Answered with the stamp of what it holds (asked for the version only).
    Stamped(Option<Stamp>),
    /// Could not be asked or sent a bad answer.
    Failed,
}

/// What a search asks for besides the peers near the key ([`Search::fetch_versions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetching {
    /// Every peer sends its whole record.
    Records,
    /// Whole records only where a quorum needs them (a get): until a record is in hand, at most
    /// Q - 1 peers are asked for versions only, so any Q answers hold a record (Q asked: the
    /// fastest sends its record; all R asked: R - Q + 1 do); once one is in hand, versions
    /// only. A version newer than every record in hand has its peer asked for the record.
    AsNeeded,
    /// Versions only (a put: it needs the newest version and whether it is a deletion).
    Versions,
}

impl Reach {
    /// Whether the peer answered (with a record, a stamp or nothing held).
    pub fn answered(&self) -> bool {
        matches!(self, Reach::Answered(_) | Reach::Stamped(_))
    }
}

/// What the search says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answers are still to come.
    Pending,
    /// Enough answers: the newest record (or its absence) can be returned.
    Ready,
    /// Too few of the nearest peers can answer.
    Impossible,
}

/// The candidates of one get and what each answered.
#[derive(Debug)]
pub struct Search {
    target: KBucketKey<Vec<u8>>,
    replication: usize,
    quorum: Option<usize>,
    /// Every candidate, nearest first (distances of distinct peers never tie).
    ranked: BTreeMap<KBucketDistance, PeerId>,
    state: HashMap<PeerId, Reach>,
    /// Round trips from the start to each candidate's answer: 1 for peers the local table
    /// knew, d + 1 for peers an answer of depth d named, 0 for the local peer.
    depth: HashMap<PeerId, u8>,
    /// Requests sent so far, and the most this search may send.
    asked: usize,
    budget: usize,
    /// Set once the window's answers say "not found": the reach doubles (2R) before a get
    /// concludes it, so holders a burst of newcomers displaced are still asked.
    widened: bool,
    /// Whether it may widen (a get's search; a put's would only send more requests).
    may_widen: bool,
    /// A get's limit on the peers it first asked from the routing view (`None`: ask the
    /// whole reach at once, as a put does): Q at the start, one more per hedge. Peers learnt
    /// from answers, failures' successors and a "not found" that needs everyone are not held
    /// back by it.
    limit: Option<usize>,
    /// Whole records or versions ([`Search::fetch_versions`]).
    fetching: Fetching,
    /// The peers asked for a whole record whose answers are still to come.
    whole: HashSet<PeerId>,
    /// The peer asked for its whole record because its version was newer than every record in
    /// hand, while that request is out.
    refetching: Option<PeerId>,
    /// Why some peers failed (first few).
    pub failures: Vec<String>,
}

impl Search {
    /// A search for `key` that asks the `replication` nearest peers, needs `quorum` answers
    /// (a majority of the replicas when `None`; W for a put's search, Q for a get's) and sends
    /// at most `budget` requests.
    pub fn new(key: &str, replication: usize, quorum: Option<usize>, budget: usize) -> Self {
        Self {
            target: KBucketKey::new(key.as_bytes().to_vec()),
            replication: replication.max(1),
            quorum,
            ranked: BTreeMap::new(),
            state: HashMap::new(),
            depth: HashMap::new(),
            asked: 0,
            budget,
            widened: false,
            may_widen: false,
            limit: None,
            fetching: Fetching::Records,
            whole: HashSet::new(),
            refetching: None,
            failures: Vec::new(),
        }
    }

    /// Asks for versions instead of whole records where `fetching` says so (before the first
    /// [`Search::next_to_ask`]).
    pub fn fetch_versions(&mut self, fetching: Fetching) {
        self.fetching = fetching;
    }

    /// Whether the request to `peer` asks for the version only ([`Fetching`]): what the op
    /// sends it, also when it sends the request again.
    pub fn version_only(&self, peer: &PeerId) -> bool {
        match self.fetching {
            Fetching::Records => false,
            Fetching::Versions => true,
            Fetching::AsNeeded => !self.whole.contains(peer),
        }
    }

    /// Adds a candidate `depth` round trips away (see [`Search::hops`]); `false` when it was
    /// known already.
    pub fn offer(&mut self, peer: PeerId, depth: u8) -> bool {
        if self.state.contains_key(&peer) {
            return false;
        }
        self.ranked.insert(self.target.distance(&KBucketKey::from(peer)), peer);
        self.state.insert(peer, Reach::Waiting);
        self.depth.insert(peer, depth);
        true
    }

    /// The first candidates: `local` (answering at no distance), the view's nearest peers and,
    /// as failed, its suspects.
    pub fn seed(&mut self, local: PeerId, view: super::View) {
        self.offer(local, 0);
        for peer in view.nearest.into_iter().filter(|p| *p != local) {
            self.offer(peer, 1);
        }
        for peer in view.suspects.into_iter().filter(|p| *p != local) {
            self.suspect(peer);
        }
    }

    /// Lets the search widen its reach to 2R before it concludes "not found" (a get's).
    pub fn allow_widening(&mut self) {
        self.may_widen = true;
    }

    /// Asks only `n` of the reach at first (a get: Q), the fastest first ([`Search::hedge`]
    /// adds one).
    pub fn limit_to(&mut self, n: usize) {
        self.limit = Some(n.max(1));
    }

    /// One more of the reach may be asked (an answer is late). Returns whether anyone is left
    /// to ask.
    pub fn hedge(&mut self) -> bool {
        if let Some(l) = &mut self.limit {
            *l += 1;
        }
        self.reach().any(|(_, s)| *s == Reach::Waiting)
    }

    /// Whether some of the reach are held back by the limit (a hedge would ask one).
    pub fn holding_back(&self) -> bool {
        self.limit.is_some()
            && self.asked < self.budget
            && self.reach().any(|(_, s)| *s == Reach::Waiting)
    }

    /// Adds a candidate that is believed down (a request to it failed recently): it takes its
    /// place in the window as failed and is never asked, so a quorum still counts it — a
    /// replica cut off by a partition may hold the newest write, and forgetting it would let
    /// each side of the cut read and write alone. `false` when it was known already.
    pub fn suspect(&mut self, peer: PeerId) -> bool {
        if self.state.contains_key(&peer) {
            return false;
        }
        self.ranked.insert(self.target.distance(&KBucketKey::from(peer)), peer);
        self.state.insert(peer, Reach::Failed);
        self.depth.insert(peer, 1);
        true
    }

    /// How far from the start `peer`'s answer is: the depth to give the peers it names, less one.
    pub fn depth(&self, peer: &PeerId) -> u8 {
        self.depth.get(peer).copied().unwrap_or(1)
    }

    /// Round trips on the longest path to an answer that counts: 1 when the local table held
    /// the replicas, 2 when one of them was learnt from a first answer, and so on (the
    /// Kademlia "hops" of the get).
    pub fn hops(&self) -> u8 {
        self.window()
            .filter(|(_, s)| matches!(s, Reach::Answered(_) | Reach::Stamped(_)))
            .map(|(p, _)| self.depth(p))
            .max()
            .unwrap_or(0)
    }

    /// The window: the R nearest candidates known, failed ones included, nearest first. Only
    /// their answers count towards a quorum.
    fn window(&self) -> impl Iterator<Item = (&PeerId, &Reach)> {
        self.ranked
            .values()
            .filter_map(|p| self.state.get(p).map(|s| (p, s)))
            .take(self.replication)
    }

    /// The reach: the R nearest candidates that have not failed, nearest first — who is asked,
    /// written to and repaired.
    fn reach(&self) -> impl Iterator<Item = (&PeerId, &Reach)> {
        let width = if self.widened { 2 * self.replication } else { self.replication };
        self.ranked
            .values()
            .filter_map(|p| self.state.get(p).map(|s| (p, s)))
            .filter(|(_, s)| **s != Reach::Failed)
            .take(width)
    }

    /// The window's peers and where each stands, nearest first (for traces).
    pub fn window_states(&self) -> Vec<(PeerId, Reach)> {
        self.window().map(|(p, s)| (*p, s.clone())).collect()
    }

    /// The window's peers, nearest first (for measures: how well a search found the replicas).
    pub fn window_peers(&self) -> Vec<PeerId> {
        self.window().map(|(p, _)| *p).collect()
    }

    /// Whether `peer` is among the R nearest candidates known (its answer counts).
    pub fn in_window(&self, peer: &PeerId) -> bool {
        self.window().any(|(p, _)| p == peer)
    }

    /// The peers to ask now (the nearest not asked yet, within the budget), marked as asked.
    pub fn next_to_ask(&mut self) -> Vec<PeerId> {
        self.next_to_ask_ranked(&|_| Some(std::time::Duration::ZERO))
    }

    /// [`Search::next_to_ask`], and under a limit the fastest by `rtt` first (ties: nearest).
    /// The first requests are held to the limit only when at least as many peers as it lets
    /// through have an estimate (liveness probes give one for most connected peers): the
    /// fastest measured are asked, and the never measured wait with the rest for a hedge or a
    /// failure. With fewer measured, everyone is asked at once.
    pub fn next_to_ask_ranked(
        &mut self,
        rtt: &dyn Fn(&PeerId) -> Option<std::time::Duration>,
    ) -> Vec<PeerId> {
        if self.may_widen && !self.widened && self.nothing_yet() {
            self.widened = true;
        }
        let mut waiting: Vec<PeerId> =
            self.reach().filter(|(_, s)| **s == Reach::Waiting).map(|(p, _)| *p).collect();
        if let Some(limit) = self.limit {
            // "Not found" needs every one of the nearest: nothing is held back then.
            let everyone = self.nothing_yet();
            let busy = self.reach().filter(|(_, s)| **s == Reach::Asked).count()
                + self.window().filter(|(_, s)| s.answered()).count();
            let mut free = limit.saturating_sub(busy);
            let measured = waiting.iter().filter(|p| self.depth(p) < 2 && rtt(p).is_some()).count();
            // Once the first requests are out, the limit holds (a hedge or a failure brings in
            // one more, the never measured last).
            if !everyone && (measured >= free || busy > 0) {
                // Peers learnt from answers (depth 2 and more) displace the ones the view
                // knew: they are asked at once. The view's own are asked fastest first.
                let (learnt, known): (Vec<PeerId>, Vec<PeerId>) =
                    waiting.into_iter().partition(|p| self.depth(p) >= 2);
                // The never measured go last.
                let mut known: Vec<(std::time::Duration, usize, PeerId)> = known
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| (rtt(&p).unwrap_or(std::time::Duration::MAX), i, p))
                    .collect();
                known.sort_unstable();
                waiting = learnt;
                for (_, _, p) in known {
                    if free == 0 {
                        break;
                    }
                    free -= 1;
                    waiting.push(p);
                }
            }
        }
        let room = self.budget.saturating_sub(self.asked);
        let mut ask: Vec<PeerId> = waiting.into_iter().take(room).collect();
        for p in &ask {
            self.state.insert(*p, Reach::Asked);
        }
        self.asked += ask.len();
        if self.fetching == Fetching::AsNeeded {
            // With no record in hand, at most Q - 1 peers are asked for versions only: any Q
            // answers then hold a whole record, so the get waits for no one more than with
            // whole records everywhere. The slowest by the estimates answer with versions.
            // With a record in hand, versions are all the get needs.
            if self.newest_held().is_none() {
                let before = self.versions_asked().saturating_sub(ask.len());
                let room = self.needed().saturating_sub(1).saturating_sub(before);
                let mut by_speed: Vec<(std::time::Duration, usize, PeerId)> = ask
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (rtt(p).unwrap_or(std::time::Duration::MAX), i, *p))
                    .collect();
                by_speed.sort_unstable();
                let whole = by_speed.len().saturating_sub(room);
                self.whole.extend(by_speed.into_iter().take(whole).map(|(_, _, p)| p));
            }
            if let Some(p) = self.to_fetch_whole() {
                self.state.insert(p, Reach::Asked);
                self.whole.insert(p);
                self.refetching = Some(p);
                self.asked += 1;
                ask.push(p);
            }
        }
        ask
    }

    /// Peers asked for versions only that have not failed (asked or answered).
    fn versions_asked(&self) -> usize {
        self.state
            .iter()
            .filter(|(p, s)| match s {
                Reach::Asked => !self.whole.contains(p),
                Reach::Stamped(_) => true,
                _ => false,
            })
            .count()
    }

    /// A peer whose version is newer than every record in hand, to ask for its whole record
    /// now: when no whole record is on its way, or when the quorum is already counted (the
    /// record is all the get waits for). One such request at a time.
    fn to_fetch_whole(&self) -> Option<PeerId> {
        if self.refetching.is_some() {
            return None;
        }
        let peer = self.behind()?;
        let now = self.whole.is_empty() || self.answered().0 >= self.needed();
        now.then_some(peer)
    }

    /// The peer that answered the newest version, when it is newer than every record in hand.
    fn behind(&self) -> Option<PeerId> {
        let best = self.newest_held().map(Record::stamp);
        self.state
            .iter()
            .filter_map(|(p, s)| match s {
                Reach::Stamped(Some(stamp)) => Some((p, stamp)),
                _ => None,
            })
            .filter(|(_, stamp)| {
                best.as_ref().map_or(true, |b| stamp.precedence(b) == Ordering::Greater)
            })
            .max_by(|a, b| a.1.precedence(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(p, _)| *p)
    }

    /// Whether the window's first answers all say "nothing held" (and none holds a record):
    /// "not found" is then likely, and it needs every one of the R nearest and then of the 2R
    /// ([`Search::allow_widening`]), so they are all asked at once — a "not found" takes one
    /// round trip after the first answer, not two or three. A key that exists rarely meets a
    /// replica without it, and only then are the extra requests sent.
    fn nothing_yet(&self) -> bool {
        let (answered, found) = self.answered();
        answered > 0 && found == 0
    }

    /// Whether `peer` was asked and has not answered or failed yet: only such a peer's answer
    /// counts.
    pub fn is_asked(&self, peer: &PeerId) -> bool {
        self.state.get(peer) == Some(&Reach::Asked)
    }

    /// Records `peer`'s answer (ignored unless it was asked and has not answered).
    pub fn answer(&mut self, peer: PeerId, record: Option<Record>) {
        self.settle(peer, Reach::Answered(record));
    }

    /// Records `peer`'s answer to a version-only request: the stamp of what it holds (ignored
    /// unless it was asked and has not answered).
    pub fn answer_version(&mut self, peer: PeerId, held: Option<Stamp>) {
        self.settle(peer, Reach::Stamped(held));
    }

    fn settle(&mut self, peer: PeerId, answer: Reach) {
        if let Some(s) = self.state.get_mut(&peer) {
            if *s == Reach::Asked {
                *s = answer;
                self.whole.remove(&peer);
                if self.refetching == Some(peer) {
                    self.refetching = None;
                }
            }
        }
    }

    /// Records that `peer` could not answer (ignored unless it was asked and has not answered).
    pub fn fail(&mut self, peer: PeerId, reason: impl std::fmt::Display) {
        if let Some(s) = self.state.get_mut(&peer) {
            if *s != Reach::Asked {
                return;
            }
            *s = Reach::Failed;
            self.whole.remove(&peer);
            if self.refetching == Some(peer) {
                self.refetching = None;
            }
            if self.failures.len() < MAX_REASONS {
                self.failures.push(format!("{}: {reason}", crate::error::short_id(&peer)));
            }
        }
    }

    /// Answers needed: [`placement::quorum`] of the replicas there can be among the candidates
    /// known (failures do not lower it).
    pub fn needed(&self) -> usize {
        placement::quorum(self.quorum, self.replication.min(self.state.len()))
    }

    /// Requests sent and not answered (also of peers no longer among the nearest).
    pub fn in_flight(&self) -> usize {
        self.state.values().filter(|s| **s == Reach::Asked).count()
    }

    /// Requests sent in all.
    pub fn asked(&self) -> usize {
        self.asked
    }

    /// Whether the search stopped at its request limit with nearer peers still unasked.
    pub fn exhausted(&self) -> bool {
        self.asked >= self.budget && self.window().any(|(_, s)| *s == Reach::Waiting)
    }

    /// How many of the window have answered, and how many of them hold a record.
    pub fn answered(&self) -> (usize, usize) {
        self.window().fold((0, 0), |(n, found), (_, s)| match s {
            Reach::Answered(r) => (n + 1, found + usize::from(r.is_some())),
            Reach::Stamped(v) => (n + 1, found + usize::from(v.is_some())),
            _ => (n, found),
        })
    }

    /// How many replicas the search settles on: the window's size (R, or fewer when fewer
    /// peers are known).
    pub fn replicas(&self) -> usize {
        self.window().count()
    }

    /// Whether a put's search has settled on its replicas: no nearer candidate is left to ask
    /// (or the request limit leaves the rest unasked), and either every one of the R nearest
    /// has answered or failed, or `needed` of them answered. In the second case the nearest
    /// still silent are written to as well ([`Search::write_candidates`]): one silent peer (a
    /// host cut off and not noticed yet) must not hold a put until the deadline, and `needed`
    /// answers of the R nearest meet every acknowledged write's quorum, so the newest version
    /// held is among them.
    pub fn settled(&self, needed: usize) -> bool {
        let room = self.asked < self.budget;
        if self.window().any(|(_, s)| *s == Reach::Waiting && room) {
            return false;
        }
        let silent = self.window().any(|(_, s)| *s == Reach::Asked);
        !silent || self.answered().0 >= needed
    }

    /// The peers a settled put writes to, nearest first: the R nearest that have not failed
    /// (answered, still asked, or never asked because the request limit stopped the search: a
    /// Store needs no Fetch first), then the others that answered (spares, asked when a replica
    /// fails).
    pub fn write_candidates(&self) -> Vec<PeerId> {
        let nearest: Vec<PeerId> = self.reach().map(|(p, _)| *p).collect();
        let spares = self
            .ranked
            .values()
            .filter(|p| !nearest.contains(p) && self.state.get(*p).is_some_and(Reach::answered));
        let mut all = nearest.clone();
        all.extend(spares);
        all
    }

    /// Whether a peer already answered with exactly `record` (signature included).
    pub fn holds(&self, record: &Record) -> bool {
        self.state.values().any(|s| matches!(s, Reach::Answered(Some(r)) if r == record))
    }

    /// Whether the get can be answered now, must wait, or cannot be answered.
    pub fn verdict(&self) -> Verdict {
        let (answered, found) = self.answered();
        let needed = self.needed();
        let room = self.asked < self.budget;
        let open = |s: &Reach| *s == Reach::Asked || (*s == Reach::Waiting && room);
        let window_open = self.window().any(|(_, s)| open(s));
        // "Not found" waits for the reach too: when peers of the window failed, the next ones
        // may hold what a closer newcomer has not been handed yet (after churn).
        let reach_open = self.reach().any(|(_, s)| open(s));
        if answered >= needed && (found > 0 || !(window_open || reach_open)) {
            if self.fetching == Fetching::AsNeeded && self.behind().is_some() {
                // A version newer than every record in hand: its record is being fetched
                // (`next_to_ask` asks for it).
                Verdict::Pending
            } else {
                Verdict::Ready
            }
        } else if window_open || (answered >= needed && reach_open) {
            Verdict::Pending
        } else {
            Verdict::Impossible
        }
    }

    /// The newest record any asked peer answered with.
    pub fn newest(&self) -> Option<Record> {
        self.newest_held().cloned()
    }

    /// [`Search::newest`] without the copy (the search's own checks run on every answer).
    fn newest_held(&self) -> Option<&Record> {
        placement::newest(self.state.values().filter_map(|s| match s {
            Reach::Answered(r) => Some(r),
            _ => None,
        }))
    }

    /// The newest version any asked peer answered with, in a record or a stamp (what a put
    /// must write past).
    pub fn newest_stamp(&self) -> Option<Stamp> {
        let records = self.newest_held().map(Record::stamp);
        let stamps = self.state.values().filter_map(|s| match s {
            Reach::Stamped(Some(stamp)) => Some(stamp.clone()),
            _ => None,
        });
        records.into_iter().chain(stamps).max_by(|a, b| a.precedence(b))
    }

    /// The nearest candidates that answered with nothing or with a version older than
    /// `newest`: where read repair sends it. Only the R nearest that have not failed, also when
    /// the reach was widened: the peers past them are no replicas.
    pub fn stale(&self, newest: &Record) -> Vec<PeerId> {
        let replies: Vec<(PeerId, Option<Record>)> = self
            .reach()
            .take(self.replication)
            .filter_map(|(p, s)| match s {
                Reach::Answered(r) => Some((*p, r.clone())),
                _ => None,
            })
            .collect();
        let mut stale = placement::stale(newest, &replies);
        let stamp = newest.stamp();
        stale.extend(self.reach().take(self.replication).filter_map(|(p, s)| match s {
            Reach::Stamped(None) => Some(*p),
            Reach::Stamped(Some(held)) if held.precedence(&stamp) == Ordering::Less => Some(*p),
            _ => None,
        }));
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use libp2p::identity::Keypair;

    fn record(key: &str, version: u64) -> Record {
        let kp = Keypair::generate_ed25519();
        Record::sign(&kp, key.into(), Some(b"v".to_vec()), Hlc::new(version, 0), None)
            .expect("sign")
    }

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn asks_the_nearest_r_and_answers_at_q_with_a_record() {
        let mut s = Search::new("k", 3, None, 10);
        let all = peers(6);
        for p in &all {
            s.offer(*p, 1);
        }
        let nearest = placement::rank("k", all.clone());
        let ask = s.next_to_ask();
        assert_eq!(ask, nearest[..3].to_vec());
        assert!(s.next_to_ask().is_empty(), "nobody is asked twice");
        s.answer(ask[0], Some(record("k", 1)));
        assert_eq!(s.verdict(), Verdict::Pending);
        s.answer(ask[1], None);
        assert_eq!(s.verdict(), Verdict::Ready);
        assert_eq!(s.needed(), 2);
        assert_eq!(s.in_flight(), 1);
    }

    #[test]
    fn a_limited_search_asks_the_fastest_then_hedges_and_replaces_failures() {
        let all = placement::rank("k", peers(5));
        let mut s = Search::new("k", 5, None, 32);
        for p in &all {
            s.offer(*p, 1);
        }
        s.limit_to(3);
        // The two nearest are the slowest: the three fastest go first.
        let slow = |p: &PeerId| {
            let ms = if *p == all[0] || *p == all[1] { 50 } else { 1 };
            Some(std::time::Duration::from_millis(ms))
        };
        let first = s.next_to_ask_ranked(&slow);
        assert_eq!(first, vec![all[2], all[3], all[4]]);
        assert!(s.next_to_ask_ranked(&slow).is_empty(), "held back by the limit");
        assert!(s.holding_back());
        // A failure brings in the next at once.
        s.fail(all[2], "gone");
        assert_eq!(s.next_to_ask_ranked(&slow), vec![all[0]]);
        // A hedge asks one more.
        assert!(s.hedge());
        assert_eq!(s.next_to_ask_ranked(&slow), vec![all[1]]);
        assert!(!s.holding_back());
        // The rule stands: Q = 3 answers of the window.
        s.answer(all[3], Some(record("k", 1)));
        s.answer(all[4], None);
        assert_eq!(s.verdict(), Verdict::Pending);
        s.answer(all[0], None);
        assert_eq!(s.verdict(), Verdict::Ready);
    }

    #[test]
    fn a_limited_search_asks_the_measured_first_and_everyone_when_too_few_are() {
        let all = placement::rank("k", peers(5));
        let fresh = || {
            let mut s = Search::new("k", 5, None, 32);
            for p in &all {
                s.offer(*p, 1);
            }
            s.limit_to(3);
            s
        };
        // Three measured: those are asked, the two never measured wait for a hedge.
        let rtt = |p: &PeerId| {
            (*p != all[0] && *p != all[1]).then_some(std::time::Duration::from_millis(1))
        };
        let mut s = fresh();
        assert_eq!(s.next_to_ask_ranked(&rtt), vec![all[2], all[3], all[4]]);
        assert!(s.hedge());
        assert_eq!(s.next_to_ask_ranked(&rtt).len(), 1);
        // Two measured of a limit of three: everyone is asked.
        let rtt = |p: &PeerId| (*p == all[3] || *p == all[4]).then_some(std::time::Duration::ZERO);
        assert_eq!(fresh().next_to_ask_ranked(&rtt).len(), 5);
    }

    #[test]
    fn a_limited_search_asks_everyone_before_not_found_and_learnt_peers_at_once() {
        let all = placement::rank("k", peers(6));
        let mut s = Search::new("k", 5, None, 32);
        for p in &all[1..] {
            s.offer(*p, 1);
        }
        s.limit_to(3);
        let first = s.next_to_ask();
        assert_eq!(first.len(), 3);
        // An answer names a nearer peer (asked at once, whatever the limit) and holds nothing:
        // "not found" needs every one of the nearest, so the rest are asked at once too.
        s.answer(first[0], None);
        s.offer(all[0], 2);
        let rest = s.next_to_ask();
        assert_eq!(rest.len(), 2);
        assert!(rest.contains(&all[0]));
        for p in first.iter().skip(1).chain(&rest[..1]) {
            s.answer(*p, None);
        }
        assert_eq!(s.verdict(), Verdict::Pending, "one of the nearest has not answered");
        s.answer(rest[1], None);
        assert_eq!(s.verdict(), Verdict::Ready);
        assert_eq!(s.next_to_ask().len(), 0);
    }

    /// A get's first "nothing held" asks the rest of the R nearest and the next R at once (the
    /// widened reach "not found" needs), not in rounds; a record found there is repaired to
    /// the R nearest only.
    #[test]
    fn a_first_nothing_held_asks_the_whole_widened_reach_at_once() {
        let all = placement::rank("k", peers(8));
        let mut s = Search::new("k", 3, Some(2), 32);
        for p in &all {
            s.offer(*p, 1);
        }
        s.allow_widening();
        s.limit_to(2);
        let zero = |_: &PeerId| Some(std::time::Duration::ZERO);
        let first = s.next_to_ask_ranked(&zero);
        assert_eq!(first, all[..2].to_vec());
        s.answer(all[0], None);
        let rest = s.next_to_ask_ranked(&zero);
        assert_eq!(rest, all[2..6].to_vec(), "the third nearest and the next three");
        s.answer(all[1], None);
        s.answer(all[2], None);
        assert_eq!(s.verdict(), Verdict::Pending, "the widened reach is still out");
        // A displaced holder beyond the first R has it.
        let r = record("k", 4);
        s.answer(all[4], Some(r.clone()));
        s.answer(all[3], None);
        s.answer(all[5], None);
        assert_eq!(s.verdict(), Verdict::Ready);
        assert_eq!(s.newest(), Some(r.clone()));
        let mut stale = s.stale(&r);
        stale.sort();
        let mut want = all[..3].to_vec();
        want.sort();
        assert_eq!(stale, want, "repair goes to the R nearest, not to the widened reach");
    }

    /// A get asks the fastest peer for its whole record and the others for their versions; a
    /// version newer than the record in hand has its peer asked for its record before the get
    /// answers, and repair goes to the peers whose versions are older.
    #[test]
    fn a_get_fetches_one_whole_record_and_the_versions_of_the_rest() {
        let all = placement::rank("k", peers(5));
        let mut s = Search::new("k", 5, Some(3), 32);
        for p in &all {
            s.offer(*p, 1);
        }
        s.limit_to(3);
        s.fetch_versions(Fetching::AsNeeded);
        let ms = |p: &PeerId| all.iter().position(|q| q == p).map(|i| 10 - i as u64);
        let rtt = |p: &PeerId| ms(p).map(std::time::Duration::from_millis);
        let first = s.next_to_ask_ranked(&rtt);
        assert_eq!(first, vec![all[4], all[3], all[2]], "the three fastest");
        let whole: Vec<bool> = first.iter().map(|p| !s.version_only(p)).collect();
        assert_eq!(whole, vec![true, false, false], "only the fastest sends its record");
        let (old, new) = (record("k", 1), record("k", 2));
        s.answer(all[4], Some(old.clone()));
        s.answer_version(all[3], Some(new.stamp()));
        s.answer_version(all[2], Some(old.stamp()));
        assert_eq!(s.answered(), (3, 3));
        assert_eq!(s.verdict(), Verdict::Pending, "a newer version than the record in hand");
        let again = s.next_to_ask_ranked(&rtt);
        assert_eq!(again, vec![all[3]], "the peer with the newer version is asked for it");
        assert!(!s.version_only(&all[3]));
        assert_eq!(s.verdict(), Verdict::Pending);
        s.answer(all[3], Some(new.clone()));
        assert_eq!(s.verdict(), Verdict::Ready);
        assert_eq!(s.newest(), Some(new.clone()));
        let mut stale = s.stale(&new);
        stale.sort();
        let mut want = vec![all[4], all[2]];
        want.sort();
        assert_eq!(stale, want, "the older record and the older version");
        // The same version from another peer is as good as the record.
        let mut t = Search::new("k", 3, Some(2), 32);
        for p in &all[..3] {
            t.offer(*p, 1);
        }
        t.fetch_versions(Fetching::AsNeeded);
        // No estimates: all three are asked, and Q - 1 = 1 of them for its version only, so
        // any two answers hold a record.
        let asked = t.next_to_ask();
        assert_eq!(asked.len(), 3);
        let (whole, brief): (Vec<PeerId>, Vec<PeerId>) =
            asked.iter().partition(|p| !t.version_only(p));
        assert_eq!((whole.len(), brief.len()), (2, 1));
        t.answer_version(brief[0], Some(new.stamp()));
        t.answer(whole[0], Some(new.clone()));
        assert_eq!(t.verdict(), Verdict::Ready);
        assert!(t.next_to_ask().is_empty());
        assert!(t.stale(&new).is_empty(), "the same version is not stale");
    }

    /// With no record in hand, a failure of the peer asked for it or a hedge brings in a
    /// whole-record request; "not found" from every version needs no record at all.
    #[test]
    fn a_get_asks_another_for_the_record_when_its_peer_fails_or_is_late() {
        let all = placement::rank("k", peers(5));
        let mut s = Search::new("k", 5, Some(3), 32);
        for p in &all {
            s.offer(*p, 1);
        }
        s.limit_to(3);
        s.fetch_versions(Fetching::AsNeeded);
        let zero = |_: &PeerId| Some(std::time::Duration::ZERO);
        let first = s.next_to_ask_ranked(&zero);
        let whole = *first.iter().find(|p| !s.version_only(p)).expect("one whole");
        s.fail(whole, "gone");
        let next = s.next_to_ask_ranked(&zero);
        assert_eq!(next.len(), 1);
        assert!(!s.version_only(&next[0]), "the replacement sends its record");
        // That one is late: a hedge asks one more for the record.
        assert!(s.hedge());
        let hedge = s.next_to_ask_ranked(&zero);
        assert_eq!(hedge.len(), 1);
        assert!(!s.version_only(&hedge[0]));
        // Every version says nothing is held: "not found", no record needed.
        for p in first.iter().filter(|p| **p != whole) {
            s.answer_version(*p, None);
        }
        s.answer(next[0], None);
        s.answer(hedge[0], None);
        assert_eq!(s.verdict(), Verdict::Ready);
        assert_eq!(s.newest(), None);
    }

    /// A put's search asks for versions only, and writes past the newest one answered.
    #[test]
    fn a_put_search_asks_versions_only() {
        let all = placement::rank("k", peers(3));
        let mut s = Search::new("k", 3, None, 32);
        for p in &all {
            s.offer(*p, 1);
        }
        s.fetch_versions(Fetching::Versions);
        let asked = s.next_to_ask();
        assert!(asked.iter().all(|p| s.version_only(p)));
        s.answer_version(all[0], Some(record("k", 7).stamp()));
        s.answer_version(all[1], None);
        s.answer(all[2], Some(record("k", 3)));
        assert!(s.settled(2));
        assert_eq!(s.newest_stamp().map(|st| st.version), Some(Hlc::new(7, 0)));
        assert!(s.next_to_ask().is_empty(), "a put never asks for a record");
    }

    #[test]
    fn not_found_waits_for_every_nearest_peer() {
        let mut s = Search::new("k", 3, None, 10);
        for p in peers(3) {
            s.offer(p, 1);
        }
        let ask = s.next_to_ask();
        s.answer(ask[0], None);
        s.answer(ask[1], None);
        assert_eq!(s.verdict(), Verdict::Pending, "the third may hold it");
        s.answer(ask[2], Some(record("k", 1)));
        assert_eq!(s.verdict(), Verdict::Ready);
        assert!(s.newest().is_some());
    }

    #[test]
    fn a_nearer_peer_learnt_from_an_answer_is_asked_and_counts() {
        let all = placement::rank("k", peers(5));
        let mut s = Search::new("k", 2, None, 10);
        s.offer(all[3], 1);
        s.offer(all[4], 1);
        let first = s.next_to_ask();
        assert_eq!(first, vec![all[3], all[4]]);
        s.answer(all[3], None);
        // The answer names two nearer peers: they displace the first ones.
        s.offer(all[0], 1);
        s.offer(all[1], 1);
        assert_eq!(s.verdict(), Verdict::Pending);
        assert_eq!(s.next_to_ask(), vec![all[0], all[1]]);
        let r = record("k", 2);
        s.answer(all[0], Some(r.clone()));
        s.answer(all[1], Some(r));
        assert_eq!(s.verdict(), Verdict::Ready);
        assert_eq!(s.answered(), (2, 2));
        assert_eq!(s.hops(), 1, "every peer was offered at depth 1 here");
        assert_eq!(s.in_flight(), 1, "the displaced peer's request is still out");
        // Repair goes to the nearest only, never to the displaced peer that held nothing.
        let newest = s.newest().expect("found");
        assert!(s.stale(&newest).is_empty());
    }

    #[test]
    fn a_put_settles_once_the_nearest_answered_and_a_nearer_peer_displaces_a_farther_one() {
        let all = placement::rank("k", peers(6));
        let mut s = Search::new("k", 3, None, 10);
        for p in &all[1..] {
            s.offer(*p, 1);
        }
        assert_eq!(s.next_to_ask(), all[1..4].to_vec());
        assert!(!s.settled(3));
        s.answer(all[1], None);
        s.answer(all[2], None);
        assert!(!s.settled(3), "one of the three nearest has not answered");
        // An answer names the nearest peer of all: it is asked, and the search waits for it.
        assert!(s.offer(all[0], 2));
        assert_eq!(s.next_to_ask(), vec![all[0]]);
        assert!(!s.settled(3));
        s.answer(all[0], None);
        assert!(s.settled(3), "the three nearest answered; all[3] is no longer among them");
        s.answer(all[3], None);
        // Every peer that answered is a candidate for the write, nearest first.
        assert_eq!(s.write_candidates(), all[..4].to_vec());
        // A failure among the nearest: it keeps its place in the window (the search settles
        // on what the window says), and the next peer is asked as well, to be written to.
        let mut f = Search::new("k", 2, None, 10);
        for p in &all {
            f.offer(*p, 1);
        }
        f.next_to_ask();
        f.answer(all[0], None);
        f.fail(all[1], "gone");
        assert_eq!(f.next_to_ask(), vec![all[2]]);
        assert!(f.settled(1));
        assert_eq!(f.write_candidates(), vec![all[0], all[2]]);
        assert!(f.in_window(&all[1]) && !f.in_window(&all[2]));
        // At the request limit with nearer peers unasked, it settles on what it has.
        let mut b = Search::new("k", 3, None, 2);
        for p in &all {
            b.offer(*p, 1);
        }
        assert_eq!(b.next_to_ask().len(), 2);
        b.answer(all[0], None);
        b.answer(all[1], None);
        assert!(b.settled(3));
    }

    #[test]
    fn a_put_does_not_wait_for_a_silent_replica_once_enough_answered() {
        let all = placement::rank("k", peers(6));
        let mut s = Search::new("k", 5, None, 10);
        for p in &all {
            s.offer(*p, 1);
        }
        assert_eq!(s.next_to_ask(), all[..5].to_vec());
        s.answer(all[0], None);
        s.answer(all[2], None);
        assert!(!s.settled(3), "two of five answered, three needed");
        s.answer(all[4], Some(record("k", 1)));
        assert!(s.settled(3), "three answered; the two silent ones do not hold the put");
        // The silent nearest are written to as well; all[5] was never asked.
        assert_eq!(s.write_candidates(), all[..5].to_vec());
        assert!(s.newest().is_some());
        // A nearer peer still to ask keeps it open, however many answered.
        let mut w = Search::new("k", 2, None, 10);
        w.offer(all[1], 1);
        w.offer(all[2], 1);
        w.next_to_ask();
        w.answer(all[1], None);
        w.answer(all[2], None);
        assert!(w.settled(2));
        w.offer(all[0], 2);
        assert!(!w.settled(2), "all[0] is nearer and not asked yet");
        assert_eq!(w.next_to_ask(), vec![all[0]]);
        assert!(w.settled(1), "all[1] answered and all[0] is asked: one is enough here");
        assert!(!w.settled(2));
        // A spare that answered follows the nearest in the write candidates.
        assert_eq!(w.write_candidates(), vec![all[0], all[1], all[2]]);
    }

    #[test]
    fn holds_only_the_very_record_an_answer_carried() {
        let all = peers(2);
        let mut s = Search::new("k", 2, None, 10);
        for p in &all {
            s.offer(*p, 1);
        }
        s.next_to_ask();
        let r = record("k", 3);
        assert!(!s.holds(&r));
        s.answer(all[0], Some(r.clone()));
        assert!(s.holds(&r));
        // Same key and version from another writer, or the same record altered: not held.
        assert!(!s.holds(&record("k", 3)));
        let mut altered = r.clone();
        altered.value = Some(b"other".to_vec());
        assert!(!s.holds(&altered));
    }

    #[test]
    fn a_failed_peer_is_replaced_by_the_next_candidate() {
        let all = placement::rank("k", peers(4));
        let mut s = Search::new("k", 3, None, 10);
        for p in &all {
            s.offer(*p, 1);
        }
        assert_eq!(s.next_to_ask(), all[..3].to_vec());
        s.fail(all[0], "unreachable");
        // The next candidate is asked (a repair or a spare copy may go there) …
        assert_eq!(s.next_to_ask(), vec![all[3]]);
        assert_eq!(s.failures.len(), 1);
        s.answer(all[1], None);
        s.answer(all[3], Some(record("k", 1)));
        // … but only the window's answers count: all[0] may hold the newest write, and the
        // quorum must overlap every write's, so all[2] is waited for.
        assert_eq!(s.verdict(), Verdict::Pending);
        assert_eq!(s.answered(), (1, 0));
        s.answer(all[2], Some(record("k", 2)));
        assert_eq!(s.verdict(), Verdict::Ready);
        assert_eq!(s.answered(), (2, 1));
        assert_eq!(s.newest().map(|r| r.version), Some(Hlc::new(2, 0)));
        // Failures do not lower the quorum.
        assert_eq!(s.needed(), 2);
        let mut lone = Search::new("k", 3, None, 10);
        for p in &all {
            lone.offer(*p, 1);
        }
        lone.next_to_ask();
        for p in &all[..3] {
            lone.fail(*p, "gone");
        }
        assert_eq!(lone.next_to_ask(), vec![all[3]]);
        lone.answer(all[3], None);
        assert_eq!(lone.verdict(), Verdict::Impossible);
    }

    #[test]
    fn impossible_when_too_few_can_answer_and_the_budget_bounds_requests() {
        let all = placement::rank("k", peers(5));
        let mut s = Search::new("k", 3, Some(3), 4);
        for p in &all {
            s.offer(*p, 1);
        }
        assert_eq!(s.next_to_ask().len(), 3);
        s.fail(all[0], "gone");
        s.fail(all[1], "gone");
        assert_eq!(s.next_to_ask(), vec![all[3]], "one request left in the budget");
        s.answer(all[2], None);
        s.answer(all[3], None);
        assert_eq!(s.verdict(), Verdict::Impossible, "two of the window failed, three needed");
        assert_eq!(s.asked(), 4);
        assert!(!s.exhausted(), "the budget kept no peer of the window unasked");
        let mut b = Search::new("k", 3, None, 2);
        for p in &all {
            b.offer(*p, 1);
        }
        assert_eq!(b.next_to_ask().len(), 2);
        b.answer(all[0], None);
        b.answer(all[1], None);
        assert!(b.exhausted(), "all[2] is in the window and the budget is spent");
    }

    #[test]
    fn the_newest_answer_wins_and_older_nearest_peers_are_repaired() {
        let all = placement::rank("k", peers(3));
        let mut s = Search::new("k", 3, None, 10);
        for p in &all {
            s.offer(*p, 1);
        }
        s.next_to_ask();
        s.answer(all[0], Some(record("k", 1)));
        s.answer(all[1], Some(record("k", 5)));
        s.answer(all[2], None);
        let newest = s.newest().expect("found");
        assert_eq!(newest.version, Hlc::new(5, 0));
        let mut stale = s.stale(&newest);
        stale.sort();
        let mut want = vec![all[0], all[2]];
        want.sort();
        assert_eq!(stale, want);
    }
}
