//! A get as a state machine: find the key's replicas and their answers in one walk
//! ([`Search`]), answer once Q of the R nearest replied, then repair the stale ones.
//!
//! The get answers when Q of the current R nearest have answered and one of them holds a record
//! (the newest of all answers wins), or when all R nearest have answered (then "not found"
//! needs Q answers too); Q = [`placement::quorum`](crate::placement::quorum) of the replicas
//! there can be. The op stays until every request is answered (or the deadline), then sends the
//! newest record to each of the R nearest that held nothing or an older one (read repair, fire
//! and forget).
//!
//! Hedged: of the R nearest the view knows, the Q fastest by the round-trip estimates are asked
//! first ([`Search::limit_to`]); when no answer settles the get within the learned p95
//! ([`Rtts::hedge_after`](super::Rtts::hedge_after)) one more is asked, and so on. A failure
//! brings in the next at once, peers that answers name are asked at once, and a "not found"
//! asks all of them. The rule does not change: Q answers of the R nearest.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;

use super::put::learn;
use super::search::Fetching;
use super::{
    observe, vet, Action, Env, Input, Kind, Now, OpConfig, Outcome, Search, Verdict, View,
};
use crate::command::GetReport;
use crate::error::Error;
use crate::protocol::{Request, Response};
use crate::record::{Stamp, MAX_KEY_LEN};

/// One get in flight.
#[derive(Debug)]
pub struct GetOp {
    key: String,
    search: Box<Search>,
    /// Whether the caller has its answer.
    replied: bool,
    /// Whether the op ended (answers all in, or the deadline) and repaired what it could.
    done: bool,
    /// When each request to a remote peer went out (for the round-trip estimates).
    sent: HashMap<PeerId, Duration>,
    /// The wake asked for, if any.
    wake: Option<Duration>,
    started: Duration,
    deadline: Duration,
    config: OpConfig,
}

impl GetOp {
    /// Starts a get of `key`. `view` is what the routing view knows of the key.
    ///
    /// # Errors
    /// A get refused before anything is sent: a bad key, or no peers at all.
    pub fn start(
        key: String,
        view: View,
        config: OpConfig,
        env: &mut Env<'_>,
    ) -> Result<(Self, Vec<Action>), Error> {
        if key.is_empty() {
            return Err(Error::BadKey(crate::record::RecordError::EmptyKey));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(Error::BadKey(crate::record::RecordError::KeyTooLong { len: key.len() }));
        }
        if env.known == 0 && !view.connected && view.nearest.is_empty() {
            return Err(Error::NoPeers {
                known: 0,
                mdns: config.mdns,
                bootstrap: config.bootstrap,
            });
        }
        let mut search =
            Search::new(&key, config.replication, config.read_quorum, config.search_budget);
        search.seed(env.local, view);
        search.allow_widening();
        search.limit_to(search.needed());
        search.fetch_versions(Fetching::AsNeeded);
        let mut op = GetOp {
            key,
            search: Box::new(search),
            replied: false,
            done: false,
            sent: HashMap::new(),
            wake: None,
            started: env.now.mono,
            deadline: env.now.mono + config.timeout,
            config,
        };
        let actions = op.step(env);
        Ok((op, actions))
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The Fetch this op sends remote `peer` (again, when its connection closed under it):
    /// for the whole record or its version only ([`Fetching::AsNeeded`]).
    pub fn fetch_request(&self, peer: &PeerId) -> Request {
        self.config.fetch(&self.key, self.search.version_only(peer))
    }

    /// When the op fails with `Timeout` if it has not answered.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Whether the op has nothing left to do (the driver drops it).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the caller has had its answer.
    pub fn replied(&self) -> bool {
        self.replied
    }

    /// The search, for inspection (tests, the simulator's measures).
    pub fn search(&self) -> &Search {
        &self.search
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, input: Input, env: &mut Env<'_>) -> Vec<Action> {
        if self.done {
            return Vec::new();
        }
        match input {
            Input::Deadline => {
                let mut actions = Vec::new();
                if !self.replied {
                    self.replied = true;
                    let (acked, _) = self.search.answered();
                    let err = Error::Timeout {
                        after: self.config.timeout,
                        acked,
                        needed: self.search.needed(),
                        failures: self.search.failures.clone(),
                    };
                    actions.push(Action::Reply(Outcome::Get(Err(err))));
                }
                actions.extend(self.finish());
                actions
            }
            Input::Wake => {
                self.wake = None;
                if self.replied || !self.search.hedge() {
                    return Vec::new();
                }
                self.step(env)
            }
            Input::Answer { peer, kind: Kind::Fetch, response } => {
                if !self.search.is_asked(&peer) {
                    return Vec::new(); // never asked, or answered already
                }
                if let Some(sent) = self.sent.remove(&peer) {
                    env.rtts.observe(peer, env.now.mono.saturating_sub(sent));
                }
                let mut actions = Vec::new();
                let max = self.config.max_value_size;
                take_answer(&mut self.search, &self.key, max, peer, response, env, &mut actions);
                actions.extend(self.step(env));
                actions
            }
            Input::Failed { peer, kind: Kind::Fetch, reason } => {
                self.search.fail(peer, reason);
                self.step(env)
            }
            // A get sends no Store it waits for.
            Input::Answer { kind: Kind::Store, .. } | Input::Failed { kind: Kind::Store, .. } => {
                Vec::new()
            }
        }
    }

    /// Asks what the search wants asked now (remote peers first, so this peer's answer cannot
    /// end the get before they are asked), then sees where it stands.
    fn step(&mut self, env: &Env<'_>) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.replied {
            let rtts = &*env.rtts;
            let local = env.local;
            let ask = self.search.next_to_ask_ranked(&|p| {
                if *p == local {
                    Some(Duration::ZERO)
                } else {
                    rtts.estimate(p)
                }
            });
            for peer in ask.iter().filter(|p| **p != env.local) {
                let request = self.fetch_request(peer);
                self.sent.insert(*peer, env.now.mono);
                actions.push(Action::Send { peer: *peer, kind: Kind::Fetch, request });
            }
            if ask.contains(&env.local) {
                let request = Request::Fetch {
                    key: self.key.clone(),
                    near: 0,
                    version_only: self.search.version_only(&env.local),
                };
                actions.push(Action::Send { peer: env.local, kind: Kind::Fetch, request });
            }
        }
        let verdict = self.search.verdict();
        if !self.replied && verdict == Verdict::Ready {
            self.replied = true;
            actions.push(Action::Reply(Outcome::Get(Ok(self.report(env.now)))));
        }
        if !self.replied && self.wake.is_none() && self.search.holding_back() {
            let at = env.now.mono + env.rtts.hedge_after();
            self.wake = Some(at);
            actions.push(Action::Wake { at });
        }
        let quiet = self.search.in_flight() == 0;
        if !self.replied && verdict == Verdict::Impossible && quiet {
            // Waited for the answers in flight so the error counts them.
            self.replied = true;
            let mut failures = self.search.failures.clone();
            if self.search.exhausted() {
                failures.push(format!(
                    "stopped after {} requests while answers still named nearer peers",
                    self.search.asked()
                ));
            }
            let err = Error::QuorumNotMet {
                op: "get",
                acked: self.search.answered().0,
                needed: self.search.needed(),
                replicas: self.search.replicas(),
                known: env.known,
                failures,
            };
            actions.push(Action::Reply(Outcome::Get(Err(err))));
        }
        if quiet && (self.replied || verdict != Verdict::Pending) {
            actions.extend(self.finish());
        }
        actions
    }

    /// Every reply is in (or the time is up): send the newest record to every one of the
    /// nearest that lacked it.
    fn finish(&mut self) -> Vec<Action> {
        self.done = true;
        let Some(newest) = self.search.newest() else { return Vec::new() };
        self.search
            .stale(&newest)
            .into_iter()
            .map(|peer| Action::Repair { peer, record: newest.clone() })
            .collect()
    }

    fn report(&self, now: Now) -> GetReport {
        GetReport {
            key: self.key.clone(),
            record: self.search.newest(),
            replies: self.search.answered().0,
            replicas: self.search.replicas(),
            needed: self.search.needed(),
            asked: self.search.asked(),
            hops: self.search.hops(),
            elapsed: now.mono.saturating_sub(self.started),
        }
    }
}

/// Takes `peer`'s answer to a search's Fetch of `key`: a record (checked by [`vet`]) or a
/// version (by [`check_version`]) counts, with the peers it names; anything else fails the
/// peer. Gets and puts answer alike.
pub(super) fn take_answer(
    search: &mut Search,
    key: &str,
    max_value_size: usize,
    peer: PeerId,
    response: Response,
    env: &mut Env<'_>,
    actions: &mut Vec<Action>,
) {
    let (near, down) = match response {
        Response::Found { record, near, down } => {
            match vet(key, record, max_value_size, env.now, |r| search.holds(r)) {
                Ok(held) => {
                    if let Some(r) = &held {
                        observe(env.clock, env.now, r.version);
                    }
                    search.answer(peer, held);
                }
                Err(reason) => return search.fail(peer, reason),
            }
            (near, down)
        }
        Response::Version { held, near, down } => {
            match check_version(search, &peer, held, env.now) {
                Ok(held) => {
                    if let Some(stamp) = &held {
                        observe(env.clock, env.now, stamp.version);
                    }
                    search.answer_version(peer, held);
                }
                Err(reason) => return search.fail(peer, reason),
            }
            (near, down)
        }
        Response::Rejected { reason } => return search.fail(peer, format!("rejected: {reason}")),
        other => return search.fail(peer, format!("unexpected answer {other:?}")),
    };
    learn(search, peer, near, down, env, actions);
}

/// A version answer as it may count: asked for (a peer asked for its whole record must send
/// it), and not from further in the future than replicas accept.
pub(super) fn check_version(
    search: &Search,
    peer: &PeerId,
    held: Option<Stamp>,
    now: Now,
) -> Result<Option<Stamp>, String> {
    if !search.version_only(peer) {
        return Err("answered with a version where its record was asked for".into());
    }
    match held {
        Some(stamp) if stamp.from_the_future(now.wall_ms) => Err(format!(
            "version {} is more than {} ms ahead of this peer's clock",
            stamp.version,
            crate::record::MAX_CLOCK_AHEAD_MS
        )),
        held => Ok(held),
    }
}
