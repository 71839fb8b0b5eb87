//! The driver of operations: starts the core's [`PutOp`] and [`GetOp`], feeds them what the
//! network and the deadline sweep say, and carries out the actions they return. It makes no
//! protocol decision of its own.
//!
//! A request an op sends to this peer is queued (`local_queue`) and served by
//! [`crate::core::replica::serve`] — the same code that serves remote peers — once the current
//! event has been handled ([`EventLoop::drain_local`]): an op is never re-entered from inside
//! its own `handle`.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore, KBucketDistance, KBucketKey};
use libp2p::request_response::OutboundRequestId;
use libp2p::{Multiaddr, PeerId};

use super::value::Waiter;
use super::{EventLoop, Outbound};
use crate::clock::{now_ms, Clock};
use crate::command::{GetReport, PutReport, Reply};
use crate::core::members::Members;
use crate::core::{Action, Env, GetOp, Input, Kind, Now, Outcome, PutOp, Rtts, View};
use crate::error::Error;
use crate::placement;
use crate::protocol::{Request, MAX_NEAR_ADDRS};

/// Identifies one operation across its requests.
pub(crate) type OpId = u64;

/// An operation in flight and whoever waits for it.
pub(crate) enum Running {
    Put { op: PutOp, reply: Option<Reply<PutReport>> },
    Get { op: GetOp, reply: Option<Reply<GetReport>> },
}

impl Running {
    fn deadline(&self) -> Duration {
        match self {
            Running::Put { op, .. } => op.deadline(),
            Running::Get { op, .. } => op.deadline(),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Running::Put { op, .. } => op.is_done(),
            Running::Get { op, .. } => op.is_done(),
        }
    }

    /// Answers the caller, if it still waits, with `err`.
    pub fn fail(self, err: Error) {
        match self {
            Running::Put { reply: Some(reply), .. } => {
                let _ = reply.send(Err(err));
            }
            Running::Get { reply: Some(reply), .. } => {
                let _ = reply.send(Err(err));
            }
            _ => {}
        }
    }
}

/// Runs `f` with an [`Env`] built from the loop's fields (borrowed one by one, so that an op
/// borrowed from `ops` can take it).
#[allow(clippy::too_many_arguments)]
fn with_env<R>(
    clock: &mut Clock,
    keypair: &Keypair,
    kv_support: &HashMap<PeerId, bool>,
    rtts: &mut Rtts,
    now: Now,
    local: PeerId,
    known: usize,
    f: impl FnOnce(&mut Env<'_>) -> R,
) -> R {
    let not_kv = |p: &PeerId| kv_support.get(p) == Some(&false);
    let mut env = Env { now, local, clock, keypair, known, not_kv: &not_kv, rtts };
    f(&mut env)
}

/// The value-protocol peers of a routing table nearest to `key`, nearest first (peers known not
/// to speak it are left out).
pub(super) fn nearest_kv_peers(
    kad: &mut kad::Behaviour<MemoryStore>,
    kv_support: &HashMap<PeerId, bool>,
    key: &str,
    n: usize,
) -> Vec<PeerId> {
    if n == 0 {
        return Vec::new();
    }
    let target = KBucketKey::new(key.as_bytes().to_vec());
    let mut ranked: Vec<(KBucketDistance, PeerId)> = Vec::with_capacity(64);
    for bucket in kad.kbuckets() {
        for entry in bucket.iter() {
            let peer = *entry.node.key.preimage();
            if kv_support.get(&peer) != Some(&false) {
                ranked.push((target.distance(entry.node.key), peer));
            }
        }
    }
    if ranked.len() > n {
        ranked.select_nth_unstable_by_key(n - 1, |a| a.0);
        ranked.truncate(n);
    }
    ranked.sort_unstable_by_key(|a| a.0);
    ranked.into_iter().map(|(_, p)| p).collect()
}

/// The `n` value-protocol peers nearest to `key` that this peer knows: the members table's and
/// the routing table's (a routed peer identify has not reached yet is not a member), nearest
/// first. With `vouched`, of the members only those someone vouched for
/// ([`Members::nearest_vouched`]: what the pollution guard ranks by).
pub(super) fn nearest_known_peers(
    members: &Members,
    kad: &mut kad::Behaviour<MemoryStore>,
    kv_support: &HashMap<PeerId, bool>,
    key: &str,
    n: usize,
    vouched: bool,
) -> Vec<PeerId> {
    let mut all = if vouched { members.nearest_vouched(key, n) } else { members.nearest(key, n) };
    for p in nearest_kv_peers(kad, kv_support, key, n) {
        if !all.contains(&p) {
            all.push(p);
        }
    }
    let mut ranked = placement::rank(key, all);
    ranked.truncate(n);
    ranked
}

/// [`nearest_known_peers`] with their addresses (the members table's, else the routing
/// table's): what a Fetch answer names. Only the peers named have their addresses copied (it
/// runs for every Fetch served).
pub(super) fn nearest_known(
    members: &Members,
    kad: &mut kad::Behaviour<MemoryStore>,
    kv_support: &HashMap<PeerId, bool>,
    key: &str,
    n: usize,
    vouched: bool,
) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let peers = nearest_known_peers(members, kad, kv_support, key, n, vouched);
    peers
        .into_iter()
        .map(|peer| {
            let known = members.addrs(&peer);
            let addrs = if known.is_empty() {
                kad.kbucket(peer)
                    .and_then(|bucket| {
                        bucket
                            .iter()
                            .find(|e| *e.node.key.preimage() == peer)
                            .map(|e| e.node.value.iter().take(MAX_NEAR_ADDRS).cloned().collect())
                    })
                    .unwrap_or_default()
            } else {
                known.to_vec()
            };
            (peer, addrs)
        })
        .collect()
}

impl EventLoop {
    /// The time as the core sees it.
    pub(super) fn now(&self) -> Now {
        Now { mono: self.started.elapsed(), wall_ms: now_ms() }
    }

    fn new_op_id(&mut self) -> OpId {
        self.next_op += 1;
        self.next_op
    }

    /// The value-protocol peers this peer knows nearest to `key`: where a search starts.
    pub(super) fn nearest_peers(&mut self, key: &str, n: usize) -> Vec<PeerId> {
        let kad = &mut self.swarm.behaviour_mut().kad;
        nearest_known_peers(&self.members, kad, &self.kv_support, key, n, false)
    }

    /// What the routing view knows of `key`: where an op's search starts.
    fn view_of(&mut self, key: &str) -> View {
        View {
            nearest: self.nearest_peers(key, 2 * self.config.replication),
            suspects: self.suspects.near(key, self.config.replication),
            connected: self.swarm.connected_peers().next().is_some(),
        }
    }

    pub(super) fn start_put(
        &mut self,
        key: String,
        value: Option<Vec<u8>>,
        ttl: Option<Duration>,
        reply: Reply<PutReport>,
    ) {
        if self.is_busy() {
            let _ = reply.send(Err(Error::Busy(self.pending())));
            return;
        }
        let view = self.view_of(&key);
        let known = self.routing_table_len();
        let (now, local, config) = (self.now(), self.local_peer_id(), self.op_config.clone());
        let started = with_env(
            &mut self.clock,
            &self.keypair,
            &self.kv_support,
            &mut self.rtts,
            now,
            local,
            known,
            |env| PutOp::start(key, value, ttl, view, config, env),
        );
        match started {
            Ok((op, actions)) => {
                let id = self.new_op_id();
                tracing::debug!(op = id, key = %op.record().key, version = %op.record().version, "put: search");
                self.ops.insert(id, Running::Put { op, reply: Some(reply) });
                self.apply(id, actions);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    pub(super) fn start_get(&mut self, key: String, reply: Reply<GetReport>) {
        if self.is_busy() {
            let _ = reply.send(Err(Error::Busy(self.pending())));
            return;
        }
        let view = self.view_of(&key);
        let known = self.routing_table_len();
        let (now, local, config) = (self.now(), self.local_peer_id(), self.op_config.clone());
        let started = with_env(
            &mut self.clock,
            &self.keypair,
            &self.kv_support,
            &mut self.rtts,
            now,
            local,
            known,
            |env| GetOp::start(key, view, config, env),
        );
        match started {
            Ok((op, actions)) => {
                let id = self.new_op_id();
                tracing::debug!(op = id, "get: search");
                self.ops.insert(id, Running::Get { op, reply: Some(reply) });
                self.apply(id, actions);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Feeds `input` to op `id` (nothing when it ended) and carries out what it returns.
    pub(super) fn feed(&mut self, id: OpId, input: Input) {
        // For error messages only ("N peers known"): the members table's size is a length
        // read, where counting the routing table walks its 256 buckets on every answer
        // (~1.5 µs each: the one cost a profile found the IO-less core added per answer).
        let known = self.members.len();
        let (now, local) = (self.now(), self.local_peer_id());
        let Some(running) = self.ops.get_mut(&id) else { return };
        let actions = with_env(
            &mut self.clock,
            &self.keypair,
            &self.kv_support,
            &mut self.rtts,
            now,
            local,
            known,
            |env| match running {
                Running::Put { op, .. } => op.handle(input, env),
                Running::Get { op, .. } => op.handle(input, env),
            },
        );
        self.apply(id, actions);
    }

    /// Sends a value-protocol request, with the addresses the members table knows for a peer
    /// that is not connected.
    pub(super) fn send_to(&mut self, peer: PeerId, request: Request) -> OutboundRequestId {
        let addrs = self.members.addrs(&peer).to_vec();
        self.swarm.behaviour_mut().kv.send_request_with_addresses(&peer, request, addrs)
    }

    /// Carries out `actions` of op `id`, then drops the op if it is done.
    fn apply(&mut self, id: OpId, actions: Vec<Action>) {
        let local = self.local_peer_id();
        for action in actions {
            match action {
                Action::Send { peer, kind, request } if peer == local => {
                    self.local_queue.push_back((id, kind, request));
                }
                Action::Send { peer, kind, request } => {
                    let rid = self.send_to(peer, request);
                    self.requests.insert(rid, Outbound::Op { op: id, kind });
                }
                Action::Repair { peer, record } => {
                    tracing::debug!(key = %record.key, %peer, version = %record.version, "read repair");
                    let key = record.key.clone();
                    let request = Request::Store { record };
                    if peer == local {
                        self.serve_request(request, Waiter::Nobody);
                    } else {
                        let rid = self.send_to(peer, request);
                        self.requests.insert(rid, Outbound::Repair { key });
                    }
                }
                Action::Learn { peer, addrs } => {
                    // Kept where the requests that follow find them (libp2p's own address
                    // book, `add_peer_address`, is not read back by any of our behaviours).
                    let now = self.now().mono;
                    self.members.named(peer, &addrs, now);
                }
                Action::Wake { at } => {
                    self.wakes.insert((at, id));
                }
                Action::Reply(outcome) => self.reply(id, outcome),
            }
        }
        if self.ops.get(&id).is_some_and(Running::is_done) {
            self.ops.remove(&id);
        }
    }

    /// Hands an op's result to its caller.
    fn reply(&mut self, id: OpId, outcome: Outcome) {
        match (self.ops.get_mut(&id), outcome) {
            (Some(Running::Put { reply, .. }), Outcome::Put(result)) => {
                if let Ok(r) = &result {
                    tracing::debug!(op = id, acked = r.acked, elapsed = ?r.elapsed, "put: quorum met");
                }
                if let Some(reply) = reply.take() {
                    let _ = reply.send(result);
                }
            }
            (Some(Running::Get { reply, .. }), Outcome::Get(result)) => {
                if let Ok(r) = &result {
                    tracing::debug!(op = id, replies = r.replies, asked = r.asked, elapsed = ?r.elapsed, "get: quorum met");
                }
                if let Some(reply) = reply.take() {
                    let _ = reply.send(result);
                }
            }
            _ => {}
        }
    }

    /// Serves the requests ops sent to this peer, in order, and feeds the answers back as they
    /// come (an answer that acknowledges a write comes once the write is committed: at once in
    /// memory, later from the store's writer); an answer may queue more (a put's search that
    /// settles asks this peer to store).
    pub(super) fn drain_local(&mut self) {
        let local = self.local_peer_id();
        loop {
            if let Some((op, kind, response)) = self.local_answers.pop_front() {
                self.feed(op, Input::Answer { peer: local, kind, response });
            } else if let Some((op, kind, request)) = self.local_queue.pop_front() {
                self.serve_request(request, Waiter::Local { op, kind });
            } else {
                break;
            }
        }
    }

    /// Feeds `Deadline` to every op whose deadline passed.
    /// Feeds the wakes that are due.
    pub(super) fn wake_ops(&mut self) {
        let now = self.now().mono;
        while let Some(&(at, id)) = self.wakes.first() {
            if at > now {
                break;
            }
            self.wakes.pop_first();
            self.feed(id, Input::Wake);
        }
    }

    /// When the next wake is due, as an instant.
    pub(super) fn next_wake(&self) -> Option<std::time::Instant> {
        self.wakes.first().map(|(at, _)| self.started + *at)
    }

    pub(super) fn sweep_ops(&mut self) {
        let now = self.now().mono;
        let expired: Vec<OpId> =
            self.ops.iter().filter(|(_, op)| op.deadline() <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.feed(id, Input::Deadline);
            // Every op ends on its deadline; one that did not would be a bug: drop it.
            if let Some(op) = self.ops.remove(&id) {
                tracing::warn!(op = id, "an operation outlived its deadline: dropped");
                op.fail(Error::Timeout {
                    after: self.config.timeout,
                    acked: 0,
                    needed: 1,
                    failures: Vec::new(),
                });
            }
        }
    }

    /// The request op `id` sent as `kind`, built again for a resend (Fetch and Store are
    /// idempotent): `None` when the op no longer waits for it, or when a new request could
    /// not time out before the op's deadline. A connection closed under a request (a
    /// duplicate closed, a peer dropped by the liveness probes) must not restart the clock
    /// on a peer that is gone: the op would then end at its deadline instead of counting
    /// that peer as failed (a get of a missing key with one replica cut off timed out so).
    pub(super) fn request_again(&self, id: OpId, kind: Kind, peer: &PeerId) -> Option<Request> {
        let running = self.ops.get(&id)?;
        let retry_ends = self.now().mono + crate::behaviour::peer_timeout(self.config.timeout);
        if retry_ends > running.deadline() {
            return None;
        }
        match (running, kind) {
            (Running::Put { op, .. }, Kind::Fetch) => Some(op.fetch_request()),
            (Running::Put { op, .. }, Kind::Store) => {
                Some(Request::Store { record: op.record().clone() })
            }
            (Running::Get { op, .. }, Kind::Fetch) => Some(op.fetch_request(peer)),
            (Running::Get { .. }, Kind::Store) => None,
        }
    }
}
