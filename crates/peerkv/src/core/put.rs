//! A put (or delete) as a state machine: sign, search for the key's replicas, write to them,
//! count acknowledgements.
//!
//! 1. **Search.** The same walk as a get's ([`Search`]): this peer and the routing view's 2R
//!    nearest value-protocol peers are candidates; the R nearest are sent a `Fetch`, the nearer
//!    peers their answers name join in, failures drop out. A held version advances our clock.
//!    The search settles once no nearer candidate is left to ask and either all of the R
//!    nearest have answered or failed, or W of them answered ([`Search::settled`]).
//! 2. **Write.** If an answer held a version at or above ours (a writer whose clock runs
//!    ahead), the record is signed again past it, so a put never loses to a write it could
//!    see. The replicas are the R nearest of the write candidates ([`placement::plan`]); each
//!    gets a `Store`. W = [`placement::quorum`] of the replicas there can be among the
//!    candidates the search knew ([`Search::needed`]): a quorum larger than the peers there are
//!    is capped as R is, but a replica that failed still counts against it.
//! 3. **Count.** A `Stored` of one of the R nearest candidates known counts (a greater version
//!    in it means a newer write was already there: `superseded_by`); a failure or `Rejected`
//!    brings in a spare, which keeps R copies but does not count. W reached → the reply;
//!    the op lives on until every replica answered, still asking spares for failures, so the
//!    record reaches R peers when it can. W out of reach once all answers are in →
//!    `QuorumNotMet`; the deadline → `Timeout`.

use std::time::Duration;

use libp2p::PeerId;

use super::get::take_answer;
use super::search::Fetching;
use super::{observe, Action, Env, Input, Kind, Now, OpConfig, Outcome, Search, Tally, View};
use crate::clock::Hlc;
use crate::command::PutReport;
use crate::error::Error;
use crate::placement;
use crate::protocol::{Request, Response, MAX_NEAR, MAX_NEAR_ADDRS};
use crate::record::{check_key, Record};

/// Where a put stands.
#[derive(Debug)]
enum Phase {
    /// Finding the replicas.
    Searching(Box<Search>),
    /// Writing to them.
    Writing(Box<Tally>),
    /// Nothing more to do.
    Done,
}

/// One put or delete in flight.
#[derive(Debug)]
pub struct PutOp {
    /// The signed record being written.
    record: Record,
    phase: Phase,
    /// The greatest version a replica said it already held above ours: our write lost.
    superseded_by: Option<Hlc>,
    /// Whether the search saw a live value under the key.
    existed: bool,
    /// Whether the caller has its answer.
    replied: bool,
    /// The search's window and hops once it settled (measures for the simulator).
    window: Vec<PeerId>,
    hops: u8,
    started: Duration,
    deadline: Duration,
    config: OpConfig,
}

impl PutOp {
    /// Starts a put of `value` (`None`: a delete) under `key`, with an optional time to live.
    /// `view` is what the routing view knows of the key.
    ///
    /// Returns the op and its first actions.
    ///
    /// # Errors
    /// A put refused before anything is sent: a bad key, a value too large, no peers at all,
    /// or a record that cannot be signed.
    pub fn start(
        key: String,
        value: Option<Vec<u8>>,
        ttl: Option<Duration>,
        view: View,
        config: OpConfig,
        env: &mut Env<'_>,
    ) -> Result<(Self, Vec<Action>), Error> {
        let now = env.now;
        check_key(&key, &env.local).map_err(Error::BadKey)?;
        let size = value.as_ref().map_or(0, Vec::len);
        if size > config.max_value_size {
            return Err(Error::ValueTooLarge { size, limit: config.max_value_size });
        }
        if env.known == 0 && !view.connected && view.nearest.is_empty() {
            return Err(Error::NoPeers {
                known: 0,
                mdns: config.mdns,
                bootstrap: config.bootstrap,
            });
        }
        let version = env.clock.tick(now.wall_ms);
        let expires_at = ttl
            .map(|t| now.wall_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)));
        let record = Record::sign(env.keypair, key.clone(), value, version, expires_at)
            .map_err(|e| Error::Signing(e.to_string()))?;
        let mut search =
            Search::new(&key, config.replication, config.write_quorum, config.search_budget);
        search.seed(env.local, view);
        search.fetch_versions(Fetching::Versions);
        let mut op = PutOp {
            record,
            phase: Phase::Searching(Box::new(search)),
            superseded_by: None,
            existed: false,
            replied: false,
            window: Vec::new(),
            hops: 0,
            started: now.mono,
            deadline: now.mono + config.timeout,
            config,
        };
        let actions = op.step(env);
        Ok((op, actions))
    }

    /// The Fetch this op's search sends a remote peer (again, when its connection closed
    /// under it): versions only, all a put needs of what is held.
    pub fn fetch_request(&self) -> Request {
        self.config.fetch(&self.record.key, true)
    }

    /// The record this put writes (signed again if the search saw a newer version).
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The R nearest candidates the search settled on (empty while it runs).
    pub fn window(&self) -> &[PeerId] {
        &self.window
    }

    /// Round trips on the search's longest path to an answer that counted.
    pub fn hops(&self) -> u8 {
        self.hops
    }

    /// When the op fails with `Timeout` if it has not answered.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Whether the op has nothing left to do (the driver drops it).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Whether the caller has had its answer.
    pub fn replied(&self) -> bool {
        self.replied
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, input: Input, env: &mut Env<'_>) -> Vec<Action> {
        match (&mut self.phase, input) {
            (Phase::Done, _) | (_, Input::Wake) => Vec::new(),
            (_, Input::Deadline) => self.expire(),
            (Phase::Searching(search), Input::Answer { peer, kind: Kind::Fetch, response }) => {
                if !search.is_asked(&peer) {
                    return Vec::new(); // never asked, or answered already
                }
                let mut actions = Vec::new();
                let (key, max) = (&self.record.key, self.config.max_value_size);
                take_answer(search, key, max, peer, response, env, &mut actions);
                actions.extend(self.step(env));
                actions
            }
            (Phase::Searching(search), Input::Failed { peer, kind: Kind::Fetch, reason }) => {
                search.fail(peer, reason);
                self.step(env)
            }
            (Phase::Writing(tally), Input::Answer { peer, kind: Kind::Store, response }) => {
                match response {
                    Response::Stored { version } => {
                        if tally.succeed(peer) {
                            if version > self.record.version {
                                self.superseded_by = self.superseded_by.max(Some(version));
                            }
                            observe(env.clock, env.now, version);
                        }
                        self.progress(env)
                    }
                    Response::Rejected { reason } => {
                        self.store_failed(peer, format!("rejected: {reason}"), env)
                    }
                    other => self.store_failed(peer, format!("unexpected answer {other:?}"), env),
                }
            }
            (Phase::Writing(_), Input::Failed { peer, kind: Kind::Store, reason }) => {
                self.store_failed(peer, reason, env)
            }
            // A search's answer after it settled, or anything of the wrong kind: not ours.
            _ => Vec::new(),
        }
    }

    /// Asks what the search wants asked now; writes once it settled.
    fn step(&mut self, env: &mut Env<'_>) -> Vec<Action> {
        let Phase::Searching(search) = &mut self.phase else { return Vec::new() };
        let mut actions: Vec<Action> = Vec::new();
        let ask = search.next_to_ask();
        // Remote peers first: the driver serves this peer's request after the others are out.
        for peer in ask.iter().filter(|p| **p != env.local) {
            let request = self.config.fetch(&self.record.key, true);
            actions.push(Action::Send { peer: *peer, kind: Kind::Fetch, request });
        }
        if ask.contains(&env.local) {
            let request =
                Request::Fetch { key: self.record.key.clone(), near: 0, version_only: true };
            actions.push(Action::Send { peer: env.local, kind: Kind::Fetch, request });
        }
        if search.settled(search.needed()) {
            actions.extend(self.write(env));
        }
        actions
    }

    /// The search settled: sign again past a newer version held, choose the replicas, ask them
    /// to store (remote ones first).
    fn write(&mut self, env: &mut Env<'_>) -> Vec<Action> {
        let Phase::Searching(search) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return Vec::new();
        };
        self.window = search.window_peers();
        self.hops = search.hops();
        let newest = search.newest_stamp();
        self.existed = newest.as_ref().is_some_and(|s| !s.tombstone);
        if let Some(newest) = newest {
            if self.record.stamp().precedence(&newest) != std::cmp::Ordering::Greater {
                // The answers advanced our clock (`observe`, capped at half the skew limit
                // ahead): a tick now is past the version held, unless it is further ahead
                // than we follow; then the put goes out as it is and reports `superseded_by`.
                let version = env.clock.tick(env.now.wall_ms);
                let old = &self.record;
                if let Ok(record) = Record::sign(
                    env.keypair,
                    old.key.clone(),
                    old.value.clone(),
                    version,
                    old.expires_at,
                ) {
                    if record.stamp().precedence(&newest) == std::cmp::Ordering::Greater {
                        self.record = record;
                    }
                }
            }
        }
        let name = self.name();
        let candidates = search.write_candidates();
        if !candidates.iter().any(|p| *p != env.local) {
            let err = if search.failures.is_empty() {
                Error::NoPeers {
                    known: env.known,
                    mdns: self.config.mdns,
                    bootstrap: self.config.bootstrap,
                }
            } else {
                Error::NoReplicas { op: name, known: env.known, failures: search.failures }
            };
            return self.finish(Err(err));
        }
        let mut plan = placement::plan(
            &self.record.key,
            candidates,
            self.config.replication,
            self.config.write_quorum,
        );
        // W is capped by the replicas there are among the candidates the search knew (failures
        // do not lower it: a replica that is down still counts against the quorum), and only
        // the acknowledgements of those R nearest count.
        plan.needed = search.needed();
        let counted = plan.replicas.iter().copied().filter(|p| search.in_window(p)).collect();
        let mut tally = Tally::new(&plan, counted, search.replicas());
        let mut actions = Vec::new();
        let local_is_replica = plan.replicas.contains(&env.local);
        for peer in plan.replicas.iter().filter(|p| **p != env.local) {
            if tally.ask(*peer) {
                actions.push(self.store(*peer));
            }
        }
        if local_is_replica && tally.ask(env.local) {
            actions.push(self.store(env.local));
        }
        self.phase = Phase::Writing(Box::new(tally));
        actions.extend(self.progress(env));
        actions
    }

    fn store(&self, peer: PeerId) -> Action {
        Action::Send {
            peer,
            kind: Kind::Store,
            request: Request::Store { record: self.record.clone() },
        }
    }

    /// A replica failed: ask a spare in its place (a put keeps filling up to R copies even
    /// after it answered), then see where it stands.
    fn store_failed(&mut self, peer: PeerId, reason: String, env: &mut Env<'_>) -> Vec<Action> {
        let Phase::Writing(tally) = &mut self.phase else { return Vec::new() };
        let mut actions = Vec::new();
        if let Some(spare) = tally.fail(peer, reason) {
            if tally.ask(spare) {
                actions.push(self.store(spare));
            }
        }
        actions.extend(self.progress(env));
        actions
    }

    /// Answers when the tally allows; ends the op when no answer is outstanding.
    fn progress(&mut self, env: &Env<'_>) -> Vec<Action> {
        let Phase::Writing(tally) = &self.phase else { return Vec::new() };
        let mut actions = Vec::new();
        let done = tally.in_flight() == 0;
        if tally.met() {
            if !self.replied {
                self.replied = true;
                let report = self.report(tally, env.now);
                actions.push(Action::Reply(Outcome::Put(Ok(report))));
            }
        } else if !self.replied && tally.impossible() && done {
            // Waited for the answers in flight so the error counts them.
            let err = Error::QuorumNotMet {
                op: self.name(),
                acked: tally.ok.len(),
                needed: tally.needed,
                replicas: tally.replicas,
                known: env.known,
                failures: tally.failures.clone(),
            };
            actions.extend(self.finish(Err(err)));
        }
        if done {
            self.phase = Phase::Done;
        }
        actions
    }

    /// The deadline passed: a put that has not answered fails with `Timeout`; the op ends.
    fn expire(&mut self) -> Vec<Action> {
        let (acked, needed, failures) = match &self.phase {
            Phase::Writing(t) => (t.ok.len(), t.needed, t.failures.clone()),
            Phase::Searching(search) => {
                let mut failures = search.failures.clone();
                failures.push("the search for the replicas did not finish".to_owned());
                (0, search.needed(), failures)
            }
            Phase::Done => return Vec::new(),
        };
        self.finish(Err(Error::Timeout { after: self.config.timeout, acked, needed, failures }))
    }

    /// Ends the op with `result` for the caller, if it still waits.
    fn finish(&mut self, result: crate::Result<PutReport>) -> Vec<Action> {
        self.phase = Phase::Done;
        if self.replied {
            return Vec::new();
        }
        self.replied = true;
        vec![Action::Reply(Outcome::Put(result))]
    }

    fn name(&self) -> &'static str {
        if self.record.is_tombstone() {
            "del"
        } else {
            "put"
        }
    }

    fn report(&self, tally: &Tally, now: Now) -> PutReport {
        PutReport {
            key: self.record.key.clone(),
            version: self.record.version,
            acked: tally.ok.len(),
            replicas: tally.replicas,
            needed: tally.needed,
            stored_on: tally.ok.clone(),
            superseded_by: self.superseded_by,
            existed: self.existed,
            elapsed: now.mono.saturating_sub(self.started),
        }
    }
}

/// Adds the peers a Fetch answer named to `search` (one round trip deeper than `from`), and
/// asks the driver to learn the addresses of the new ones; peers it says are down and that
/// the search did not know join as failed ([`Search::suspect`]).
pub(super) fn learn(
    search: &mut Search,
    from: PeerId,
    near: Vec<(PeerId, Vec<libp2p::Multiaddr>)>,
    down: Vec<PeerId>,
    env: &Env<'_>,
    actions: &mut Vec<Action>,
) {
    for peer in down.into_iter().take(MAX_NEAR) {
        if peer != env.local && !(env.not_kv)(&peer) {
            search.suspect(peer);
        }
    }
    let depth = search.depth(&from).saturating_add(1);
    for (peer, addrs) in near.into_iter().take(MAX_NEAR) {
        if peer != env.local && !(env.not_kv)(&peer) && search.offer(peer, depth) {
            let addrs: Vec<_> = addrs.into_iter().take(MAX_NEAR_ADDRS).collect();
            if !addrs.is_empty() {
                actions.push(Action::Learn { peer, addrs });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::core::get::check_version;
    use crate::record::Stamp;
    use libp2p::identity::Keypair;

    /// What a put's tests lend it: an identity, a clock and round-trip estimates.
    struct Fixture {
        keypair: Keypair,
        clock: Clock,
        rtts: crate::core::Rtts,
    }

    fn nobody_lacks_kv(_: &PeerId) -> bool {
        false
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                keypair: Keypair::generate_ed25519(),
                clock: Clock::new(),
                rtts: crate::core::Rtts::default(),
            }
        }

        fn local(&self) -> PeerId {
            self.keypair.public().to_peer_id()
        }

        fn env(&mut self, wall_ms: u64) -> Env<'_> {
            Env {
                now: Now { mono: Duration::ZERO, wall_ms },
                local: self.keypair.public().to_peer_id(),
                clock: &mut self.clock,
                keypair: &self.keypair,
                known: 1,
                not_kv: &nobody_lacks_kv,
                rtts: &mut self.rtts,
            }
        }
    }

    fn op_config(replication: usize, write_quorum: Option<usize>) -> OpConfig {
        OpConfig {
            replication,
            write_quorum,
            read_quorum: None,
            max_value_size: 1024,
            timeout: Duration::from_secs(10),
            search_budget: 40,
            mdns: false,
            bootstrap: 0,
        }
    }

    /// Defect 9 of issue 10: when every peer tried failed, the put said `0 of 0 replicas
    /// acknowledged (needed 1)`; it now says none could be reached, with why.
    #[test]
    fn a_put_that_reaches_nobody_says_so() {
        let mut fixture = Fixture::new();
        let local = fixture.local();
        let other = PeerId::random();
        let mut env = fixture.env(1_800_000_000_000);
        let config = op_config(5, None);
        let view = View { nearest: vec![other], suspects: Vec::new(), connected: true };
        let (mut op, actions) =
            PutOp::start("k".into(), Some(b"v".to_vec()), None, view, config, &mut env)
                .expect("starts");
        assert_eq!(actions.len(), 2, "a Fetch to the other peer and one to this peer");
        let local_answer = Response::Found { record: None, near: Vec::new(), down: Vec::new() };
        let input = Input::Answer { peer: local, kind: Kind::Fetch, response: local_answer };
        assert!(op.handle(input, &mut env).is_empty());
        let input = Input::Failed { peer: other, kind: Kind::Fetch, reason: "refused".into() };
        let actions = op.handle(input, &mut env);
        let [Action::Reply(Outcome::Put(Err(err)))] = actions.as_slice() else {
            panic!("expected one failed reply, got {actions:?}")
        };
        let text = err.to_string();
        assert!(matches!(err, Error::NoReplicas { .. }), "{text}");
        assert!(text.contains("none of the 1 peer known could be reached"), "{text}");
        assert!(text.contains("refused") && !text.contains("0 of 0"), "{text}");
        assert!(op.is_done());
    }

    /// A put asks versions only, and a version answered above its own (a writer whose clock
    /// runs ahead) has it signed again past that version before it is stored.
    #[test]
    fn a_put_asks_versions_and_writes_past_a_newer_one() {
        let mut fixture = Fixture::new();
        let local = fixture.local();
        let other = PeerId::random();
        let wall_ms = 1_800_000_000_000;
        let mut env = fixture.env(wall_ms);
        let config = op_config(2, Some(2));
        let view = View { nearest: vec![other], suspects: Vec::new(), connected: true };
        let (mut op, actions) =
            PutOp::start("k".into(), Some(b"v".to_vec()), None, view, config, &mut env)
                .expect("starts");
        for a in &actions {
            let Action::Send { request: Request::Fetch { version_only, .. }, .. } = a else {
                panic!("expected fetches, got {a:?}")
            };
            assert!(version_only, "{a:?}");
        }
        let ahead = Hlc::new(wall_ms + 60_000, 3);
        let theirs = Record::sign(
            &Keypair::generate_ed25519(),
            "k".into(),
            Some(b"w".to_vec()),
            ahead,
            None,
        )
        .expect("signs");
        let answer = Response::Version { held: None, near: Vec::new(), down: Vec::new() };
        let input = Input::Answer { peer: local, kind: Kind::Fetch, response: answer };
        assert!(op.handle(input, &mut env).is_empty());
        let answer =
            Response::Version { held: Some(theirs.stamp()), near: Vec::new(), down: Vec::new() };
        let input = Input::Answer { peer: other, kind: Kind::Fetch, response: answer };
        let actions = op.handle(input, &mut env);
        let stores: Vec<&Record> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { request: Request::Store { record }, .. } => Some(record),
                _ => None,
            })
            .collect();
        assert!(!stores.is_empty(), "{actions:?}");
        for r in stores {
            assert!(r.version > ahead, "stored {} at or below {ahead}", r.version);
        }
        assert!(op.existed, "a live value was under the key");
        // A version too far ahead to be believed fails its peer instead.
        let far = Stamp {
            version: Hlc::new(wall_ms + 2 * crate::record::MAX_CLOCK_AHEAD_MS, 0),
            writer: Vec::new(),
            tombstone: false,
        };
        let mut search = Search::new("k", 1, None, 4);
        search.offer(other, 1);
        search.fetch_versions(Fetching::Versions);
        search.next_to_ask();
        let now = Now { mono: Duration::ZERO, wall_ms };
        let err = check_version(&search, &other, Some(far), now).expect_err("refused");
        assert!(err.contains("ahead"), "{err}");
    }
}
