//! The value protocol inside the loop: serving Store and Fetch, the search of a put or get for
//! its replicas (Fetch, following the nearer peers the answers name: no Kademlia lookup), the
//! replica round once it settled, counting answers, read repair.
//!
//! The local peer is asked like any other replica ([`EventLoop::ask`]): its answer comes from
//! [`EventLoop::answer`], the same code that serves remote peers, so the local store obeys the
//! same checks and limits.

use libp2p::kad::{KBucketDistance, KBucketKey};
use libp2p::request_response::{
    self, Message, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::{Multiaddr, PeerId};

use super::ops::{Op, OpId, PendingPut, Tally};
use super::search::{Search, Verdict};
use super::{EventLoop, Outbound};
use crate::clock::{now_ms, Hlc};
use crate::error::Error;
use crate::placement;
use crate::protocol::{Request, Response, MAX_NEAR, MAX_NEAR_ADDRS};
use crate::record::{Record, MAX_CLOCK_AHEAD_MS};

/// A fetched record for `key` as it may count: a valid record for that key, or nothing held;
/// anything else is the replier's failure, with the reason.
///
/// A record equal (signature included) to one another peer sent in the same search passed the
/// same check moments ago (`seen`): its signature is not verified again — replicas mostly send
/// the same record, and verifying is most of the CPU a get spends in our own code.
fn vet(
    key: &str,
    record: Option<Record>,
    max_value_size: usize,
    seen: impl Fn(&Record) -> bool,
) -> Result<Option<Record>, String> {
    match record {
        Some(r) if r.key != key => Err(format!("sent a record for another key ({:?})", r.key)),
        Some(r) if seen(&r) => Ok(Some(r)),
        Some(r) => match r.check(max_value_size, now_ms()) {
            Ok(()) => Ok(Some(r)),
            Err(e) => Err(format!("sent a bad record: {e}")),
        },
        None => Ok(None),
    }
}

impl EventLoop {
    pub(super) fn on_kv(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request { request, channel, .. } => self.serve(peer, request, channel),
                Message::Response { request_id, response } => {
                    self.on_response(request_id, peer, response)
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                // libp2p reports any failed stream negotiation as "unsupported", also one the
                // remote refused because it had too many streams open at once. What identify
                // said the peer serves wins: one such failure must not leave a value-protocol
                // peer out of placement and gets for as long as it stays in the table.
                if matches!(error, OutboundFailure::UnsupportedProtocols)
                    && self.kv_support.get(&peer) != Some(&true)
                {
                    self.kv_support.insert(peer, false);
                }
                let second_try = self.retried.remove(&request_id);
                if !second_try
                    && matches!(error, OutboundFailure::ConnectionClosed)
                    && self.resend(request_id, peer)
                {
                    return;
                }
                self.on_request_failed(request_id, peer, error.to_string());
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound value request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Answers one request from a peer. Nothing it sends can do more than earn a `Rejected`.
    fn serve(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        self.kv_support.insert(peer, true);
        let response = match request {
            Request::Summary { buckets } => self.answer_summary(peer, buckets),
            other => self.answer(other, true),
        };
        if let Response::Rejected { reason } = &response {
            tracing::info!(%peer, "rejected a request: {reason}");
        }
        if self.swarm.behaviour_mut().kv.send_response(channel, response).is_err() {
            tracing::debug!(%peer, "could not answer: the stream is gone");
        }
    }

    /// What this peer answers to a request, from a remote peer or (`remote` false) from itself.
    fn answer(&mut self, request: Request, remote: bool) -> Response {
        match request {
            Request::Store { record } => self.accept(record),
            Request::Fetch { key, near } => {
                let now = now_ms();
                let near = if remote {
                    self.nearest_known(&key, usize::from(near).min(MAX_NEAR))
                } else {
                    Vec::new()
                };
                Response::Found {
                    record: self.store.get(&key).filter(|r| !r.is_expired(now)).cloned(),
                    near,
                }
            }
            Request::Digest { entries } => self.answer_digest(entries),
            Request::Summary { .. } => {
                Response::Rejected { reason: "a summary needs its sender".into() }
            }
            Request::StoreMany { records } => self.answer_store_many(records),
            Request::Malformed { reason } => Response::Rejected { reason },
        }
    }

    /// Verifies and merges a record: signature, ownership, size, expiry, clock skew, and room
    /// in the store for a new key.
    pub(super) fn accept(&mut self, record: Record) -> Response {
        if let Err(e) = record.check(self.config.max_value_size, now_ms()) {
            return Response::Rejected { reason: e.to_string() };
        }
        if let Err(reason) =
            self.store.admits(&record, self.config.max_records, self.config.max_store_bytes)
        {
            return Response::Rejected { reason };
        }
        let version = record.version;
        match self.store.put_merge(record) {
            Ok((merged, held)) => {
                tracing::debug!(key = %held.key, version = %held.version, ?merged, "store");
                let held = held.version;
                self.observe(version);
                Response::Stored { version: held }
            }
            Err(e) => {
                tracing::warn!("store write failed: {e}");
                Response::Rejected { reason: e.to_string() }
            }
        }
    }

    /// Feeds a version seen from a peer to the clock, clamped to half the skew replicas accept,
    /// so a peer with a clock far ahead cannot push our writes past what others take.
    fn observe(&mut self, seen: Hlc) {
        self.clock.observe(seen.min(Hlc::new(now_ms().saturating_add(MAX_CLOCK_AHEAD_MS / 2), 0)));
    }

    /// The value-protocol peers of the routing table nearest to `key`, nearest first: where a
    /// get or a put's search starts.
    pub(super) fn nearest_peers(&mut self, key: &str, n: usize) -> Vec<PeerId> {
        if n == 0 {
            return Vec::new();
        }
        let target = KBucketKey::new(key.as_bytes().to_vec());
        let kv_support = &self.kv_support;
        let mut ranked: Vec<(KBucketDistance, PeerId)> = Vec::with_capacity(64);
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
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

    /// [`EventLoop::nearest_peers`] with their addresses: what a fetch answer names. Only the
    /// peers named have their addresses copied (it runs for every Fetch served).
    pub(super) fn nearest_known(&mut self, key: &str, n: usize) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let peers = self.nearest_peers(key, n);
        let kad = &mut self.swarm.behaviour_mut().kad;
        peers
            .into_iter()
            .map(|peer| {
                let addrs =
                    kad.kbucket(peer)
                        .and_then(|bucket| {
                            bucket.iter().find(|e| *e.node.key.preimage() == peer).map(|e| {
                                e.node.value.iter().take(MAX_NEAR_ADDRS).cloned().collect()
                            })
                        })
                        .unwrap_or_default();
                (peer, addrs)
            })
            .collect()
    }

    /// Asks `peer` on behalf of `op`: sends the request, or answers it at once from the local
    /// store when `peer` is this peer.
    fn ask(&mut self, op: OpId, peer: PeerId, request: Request) {
        match self.ops.get_mut(&op) {
            Some(Op::Put(p)) => match p.tally.as_mut() {
                Some(t) => t.in_flight += 1,
                None => return,
            },
            // A get's search counts its own requests.
            Some(Op::Get(_)) => {}
            None => return,
        }
        if peer == self.local_peer_id() {
            let response = self.answer(request, false);
            self.on_op_answer(op, peer, response);
        } else {
            let id = self.swarm.behaviour_mut().kv.send_request(&peer, request);
            self.requests.insert(id, Outbound::Op(op));
        }
    }

    /// Sends a put's Fetch requests to the candidates its search wants asked now (remote ones
    /// first), and once the search settled, writes to the replicas it found.
    pub(super) fn step_put(&mut self, op: OpId) {
        let local = self.local_peer_id();
        let (key, ask) = match self.ops.get_mut(&op) {
            Some(Op::Put(PendingPut { search: Some(search), record, .. })) => {
                (record.key.clone(), search.next_to_ask())
            }
            _ => return,
        };
        for peer in ask.iter().filter(|p| **p != local) {
            let request = self.fetch(key.clone());
            let id = self.swarm.behaviour_mut().kv.send_request(peer, request);
            self.requests.insert(id, Outbound::Probe(op));
        }
        if ask.contains(&local) {
            let response = self.answer(Request::Fetch { key, near: 0 }, false);
            return self.on_probe_answer(op, local, response);
        }
        let settled = match self.ops.get(&op) {
            Some(Op::Put(PendingPut { search: Some(search), .. })) => {
                search.settled(self.put_needed(search))
            }
            _ => false,
        };
        if settled {
            self.search_done(op);
        }
    }

    /// The Fetch a search sends a remote peer: what it holds of `key` and the R peers it knows
    /// nearest to it.
    fn fetch(&self, key: String) -> Request {
        Request::Fetch { key, near: u16::try_from(self.config.replication).unwrap_or(u16::MAX) }
    }

    /// Answers a put's search needs before it writes: [`placement::quorum`] of the replicas the
    /// search can settle on.
    fn put_needed(&self, search: &Search) -> usize {
        placement::quorum(self.config.write_quorum, search.replicas())
    }

    /// A put's Fetch answered: what the peer holds tells the newest version there; the peers it
    /// names join the search.
    fn on_probe_answer(&mut self, op: OpId, peer: PeerId, response: Response) {
        let max_value_size = self.config.max_value_size;
        let Some(Op::Put(PendingPut { search: Some(search), record: ours, .. })) =
            self.ops.get_mut(&op)
        else {
            return; // the search settled without it
        };
        let mut seen = None;
        let mut named = Vec::new();
        match response {
            Response::Found { record, near } => {
                match vet(&ours.key, record, max_value_size, |r| search.holds(r)) {
                    Ok(held) => {
                        seen = held.as_ref().map(|r| r.version);
                        search.answer(peer, held);
                        named = near;
                    }
                    Err(reason) => search.fail(peer, reason),
                }
            }
            Response::Rejected { reason } => search.fail(peer, format!("rejected: {reason}")),
            other => search.fail(peer, format!("unexpected answer {other:?}")),
        }
        if let Some(version) = seen {
            self.observe(version);
        }
        self.learn_near(op, peer, named);
        self.step_put(op);
    }

    /// A put's Fetch failed: the peer drops out of its search.
    fn on_probe_failed(&mut self, op: OpId, peer: PeerId, reason: String) {
        if let Some(Op::Put(PendingPut { search: Some(search), .. })) = self.ops.get_mut(&op) {
            tracing::debug!(op, %peer, "put: candidate failed: {reason}");
            search.fail(peer, reason);
            self.step_put(op);
        }
    }

    /// A put's search settled: the R nearest peers that answered or are still silent are the
    /// replicas, the others that answered are spares; ask the replicas to store (remote ones
    /// first, so a local answer cannot end the put before they are asked).
    fn search_done(&mut self, op: OpId) {
        let local = self.local_peer_id();
        let Some(Op::Put(put)) = self.ops.get_mut(&op) else { return };
        let Some(search) = put.search.take() else { return };
        // A replica already holds a version at or above ours (another writer's clock runs
        // ahead of ours): this put was issued after that write was there to see, so it must
        // not lose to it. The answers advanced our clock (`observe`, capped at half the skew
        // limit ahead); sign again past it.
        let newest = search.newest();
        put.existed = newest.as_ref().is_some_and(|r| !r.is_tombstone());
        if let Some(newest) = newest {
            if put.record.precedence(&newest) != std::cmp::Ordering::Greater {
                let version = self.clock.tick(now_ms());
                let old = &put.record;
                match Record::sign(
                    &self.keypair,
                    old.key.clone(),
                    old.value.clone(),
                    version,
                    old.expires_at,
                ) {
                    Ok(record) if record.precedence(&newest) == std::cmp::Ordering::Greater => {
                        tracing::debug!(op, key = %record.key, was = %old.version, now = %version, "put: signed again past a newer version held");
                        put.record = record;
                    }
                    // Still behind (the other clock is further ahead than we follow): the put
                    // goes out as it is and reports `superseded_by`.
                    Ok(_) => {}
                    Err(e) => tracing::warn!(op, "cannot sign again: {e}"),
                }
            }
        }
        let name = if put.record.is_tombstone() { "del" } else { "put" };
        let candidates = search.write_candidates();
        if !candidates.iter().any(|p| *p != local) {
            let known = self.routing_table_len();
            let err = if search.failures.is_empty() {
                self.no_peers_error(known)
            } else {
                Error::NoReplicas { op: name, known, failures: search.failures }
            };
            self.fail_op(op, err);
            return;
        }
        let plan = placement::plan(
            &put.record.key,
            candidates,
            self.config.replication,
            self.config.write_quorum,
        );
        put.tally = Some(Tally::new(&plan));
        let request = Request::Store { record: put.record.clone() };
        let local_is_replica = plan.replicas.contains(&local);
        tracing::debug!(op, asked = search.asked(), hops = search.hops(), "put: replicas found");
        for peer in plan.replicas.iter().filter(|p| **p != local) {
            self.ask(op, *peer, request.clone());
        }
        if local_is_replica {
            self.ask(op, local, request);
        }
        self.progress(op);
    }

    /// Sends a get's requests to the candidates its search wants asked now (remote ones first,
    /// so a local answer cannot end the get before they are asked), then sees where it stands.
    pub(super) fn step_get(&mut self, op: OpId) {
        let local = self.local_peer_id();
        let (key, ask) = match self.ops.get_mut(&op) {
            Some(Op::Get(get)) if get.reply.is_some() => {
                (get.key.clone(), get.search.next_to_ask())
            }
            _ => return self.progress(op),
        };
        for peer in ask.iter().filter(|p| **p != local) {
            let request = self.fetch(key.clone());
            self.ask(op, *peer, request);
        }
        if ask.contains(&local) {
            self.ask(op, local, Request::Fetch { key, near: 0 });
        }
        self.progress(op);
    }

    /// Adds the peers a fetch answer named to `op`'s search, and the addresses of the new ones
    /// to the swarm so they can be dialed.
    fn learn_near(&mut self, op: OpId, from: PeerId, near: Vec<(PeerId, Vec<Multiaddr>)>) {
        let local = self.local_peer_id();
        let search = match self.ops.get_mut(&op) {
            Some(Op::Get(get)) => &mut get.search,
            Some(Op::Put(PendingPut { search: Some(search), .. })) => &mut **search,
            _ => return,
        };
        let depth = search.depth(&from).saturating_add(1);
        let mut learnt = Vec::new();
        for (peer, addrs) in near.into_iter().take(MAX_NEAR) {
            if peer != local
                && self.kv_support.get(&peer) != Some(&false)
                && search.offer(peer, depth)
            {
                learnt.push((peer, addrs));
            }
        }
        for (peer, addrs) in learnt {
            for addr in addrs.into_iter().take(MAX_NEAR_ADDRS) {
                self.swarm.add_peer_address(peer, addr);
            }
        }
    }

    fn on_response(&mut self, id: OutboundRequestId, peer: PeerId, response: Response) {
        self.retried.remove(&id);
        match self.requests.remove(&id) {
            None => tracing::debug!(%peer, "late answer dropped"),
            Some(Outbound::Raw(reply)) => {
                self.raw_in_flight = self.raw_in_flight.saturating_sub(1);
                let _ = reply.send(Ok(response));
            }
            Some(Outbound::Repair { key }) => {
                tracing::debug!(%peer, %key, ?response, "repair answered");
            }
            Some(Outbound::Summary) => match response {
                Response::Mismatch { buckets } if !buckets.is_empty() => {
                    self.send_digests_for(peer, &buckets)
                }
                Response::Mismatch { .. } => {
                    self.upkeep_offers.remove(&peer);
                }
                other => tracing::debug!(%peer, ?other, "unexpected answer to a summary"),
            },
            Some(Outbound::Digest) => match response {
                Response::Missing { keys } if !keys.is_empty() => self.push_missing(peer, keys),
                Response::Missing { .. } => {}
                other => tracing::debug!(%peer, ?other, "unexpected answer to a digest"),
            },
            Some(Outbound::Op(op)) => self.on_op_answer(op, peer, response),
            Some(Outbound::Probe(op)) => self.on_probe_answer(op, peer, response),
        }
    }

    /// One replica's answer to a put or get: checked, then counted or treated as a failure.
    fn on_op_answer(&mut self, op: OpId, peer: PeerId, response: Response) {
        let max_value_size = self.config.max_value_size;
        let failure = match (self.ops.get_mut(&op), response) {
            (None, _) => return,
            (Some(Op::Put(put)), Response::Stored { version }) => {
                if version > put.record.version {
                    put.superseded_by = put.superseded_by.max(Some(version));
                }
                if let Some(t) = put.tally.as_mut() {
                    t.succeed(peer);
                }
                self.observe(version);
                None
            }
            (Some(Op::Get(get)), Response::Found { record, near }) => {
                match vet(&get.key, record, max_value_size, |r| get.search.holds(r)) {
                    Ok(held) => {
                        let seen = held.as_ref().map(|r| r.version);
                        get.search.answer(peer, held);
                        if let Some(version) = seen {
                            self.observe(version);
                        }
                        self.learn_near(op, peer, near);
                        return self.step_get(op);
                    }
                    Err(reason) => Some(reason),
                }
            }
            (_, Response::Rejected { reason }) => Some(format!("rejected: {reason}")),
            (_, other) => Some(format!("unexpected answer {other:?}")),
        };
        match failure {
            None => self.progress(op),
            Some(reason) => self.op_request_failed(op, peer, reason),
        }
    }

    /// A request of a put or get lost its connection before the answer came: sends it again
    /// once (to a new connection, or another one open to the peer) instead of failing the peer.
    /// With idle timeouts a connection that carried nothing for a while closes, and a request
    /// sent just then meets the close (at N = 500, one get in 200 lost four of its five replicas
    /// at once this way: the connections one earlier get had opened closed together). Fetch and
    /// Store are idempotent. Returns whether it was sent again.
    fn resend(&mut self, id: OutboundRequestId, peer: PeerId) -> bool {
        let (op, probe) = match self.requests.get(&id) {
            Some(Outbound::Probe(op)) => (*op, true),
            Some(Outbound::Op(op)) => (*op, false),
            _ => return false,
        };
        let request = match (self.ops.get(&op), probe) {
            (Some(Op::Put(PendingPut { search: Some(_), record, .. })), true) => {
                self.fetch(record.key.clone())
            }
            (Some(Op::Get(get)), false) => self.fetch(get.key.clone()),
            (Some(Op::Put(put)), false) => Request::Store { record: put.record.clone() },
            _ => return false,
        };
        let Some(outbound) = self.requests.remove(&id) else { return false };
        tracing::debug!(%peer, "connection closed under a request: sending it again");
        let again = self.swarm.behaviour_mut().kv.send_request(&peer, request);
        self.requests.insert(again, outbound);
        self.retried.insert(again);
        self.stats.requests_resent += 1;
        true
    }

    fn on_request_failed(&mut self, id: OutboundRequestId, peer: PeerId, reason: String) {
        match self.requests.remove(&id) {
            None => {}
            Some(Outbound::Raw(reply)) => {
                self.raw_in_flight = self.raw_in_flight.saturating_sub(1);
                let _ = reply.send(Err(Error::Request { peer, reason }));
            }
            Some(Outbound::Repair { key }) => {
                tracing::debug!(%peer, %key, "repair failed: {reason}");
            }
            Some(Outbound::Digest) => tracing::debug!(%peer, "digest failed: {reason}"),
            Some(Outbound::Summary) => tracing::debug!(%peer, "summary failed: {reason}"),
            Some(Outbound::Op(op)) => self.op_request_failed(op, peer, reason),
            Some(Outbound::Probe(op)) => self.on_probe_failed(op, peer, reason),
        }
    }

    /// A replica of `op` failed: ask a spare in its place (a put keeps filling up to R copies
    /// even after it answered; a get only while its quorum is open), then see where it stands.
    fn op_request_failed(&mut self, op: OpId, peer: PeerId, reason: String) {
        tracing::debug!(op, %peer, "replica failed: {reason}");
        let next = match self.ops.get_mut(&op) {
            Some(Op::Put(put)) => put
                .tally
                .as_mut()
                .and_then(|t| t.fail(peer, &reason, true))
                .map(|p| (p, Request::Store { record: put.record.clone() })),
            Some(Op::Get(get)) => {
                get.search.fail(peer, &reason);
                return self.step_get(op);
            }
            None => None,
        };
        if let Some((spare, request)) = next {
            self.ask(op, spare, request);
        }
        self.progress(op);
    }

    /// Answers or fails `op` when its tally allows; ends it when no answer is outstanding (a
    /// get then repairs stale replicas).
    pub(super) fn progress(&mut self, op: OpId) {
        let Some(entry) = self.ops.get_mut(&op) else { return };
        match entry {
            Op::Put(put) => {
                let Some(tally) = &put.tally else { return };
                let done = tally.in_flight == 0;
                if tally.met() {
                    if let Some(reply) = put.reply.take() {
                        let report = put.report(tally);
                        tracing::debug!(op, acked = report.acked, elapsed = ?report.elapsed, "put: quorum met");
                        let _ = reply.send(Ok(report));
                    }
                } else if put.reply.is_some() && tally.impossible() && done {
                    // Waited for the answers in flight so the error counts them.
                    let err = self.quorum_error(op);
                    self.fail_op(op, err);
                    return;
                }
                if done {
                    self.ops.remove(&op);
                }
            }
            Op::Get(get) => {
                let verdict = get.search.verdict();
                if get.reply.is_some() && verdict == Verdict::Ready {
                    let report = get.report();
                    tracing::debug!(op, replies = report.replies, asked = report.asked, elapsed = ?report.elapsed, "get: quorum met");
                    if let Some(reply) = get.reply.take() {
                        let _ = reply.send(Ok(report));
                    }
                }
                let done = get.search.in_flight() == 0;
                if get.reply.is_some() && verdict == Verdict::Impossible && done {
                    // Waited for the answers in flight so the error counts them.
                    let err = self.quorum_error(op);
                    if let Some(Op::Get(get)) = self.ops.get_mut(&op) {
                        if let Some(reply) = get.reply.take() {
                            let _ = reply.send(Err(err));
                        }
                    }
                }
                if done {
                    self.finish_get(op);
                }
            }
        }
    }

    fn quorum_error(&mut self, op: OpId) -> Error {
        let known = self.routing_table_len();
        let (name, tally) = match self.ops.get(&op) {
            Some(Op::Put(put)) => {
                (if put.record.is_tombstone() { "del" } else { "put" }, put.tally.as_ref())
            }
            Some(Op::Get(get)) => {
                let mut failures = get.search.failures.clone();
                if get.search.exhausted() {
                    failures.push(format!(
                        "stopped after {} requests while answers still named nearer peers",
                        get.search.asked()
                    ));
                }
                return Error::QuorumNotMet {
                    op: "get",
                    acked: get.search.answered().0,
                    needed: get.search.needed(),
                    replicas: get.search.replicas(),
                    known,
                    failures,
                };
            }
            None => ("op", None),
        };
        match tally {
            Some(t) => Error::QuorumNotMet {
                op: name,
                acked: t.ok.len(),
                needed: t.needed,
                replicas: t.replicas,
                known,
                failures: t.failures.clone(),
            },
            None => self.no_peers_error(known),
        }
    }

    /// Ends `op` with `err` for whoever still waits (a get that already answered just
    /// finishes and repairs).
    pub(super) fn fail_op(&mut self, op: OpId, err: Error) {
        match self.ops.remove(&op) {
            Some(Op::Put(put)) => {
                if let Some(reply) = put.reply {
                    let _ = reply.send(Err(err));
                }
            }
            Some(Op::Get(mut get)) => {
                if let Some(reply) = get.reply.take() {
                    let _ = reply.send(Err(err));
                }
                self.ops.insert(op, Op::Get(get));
                self.finish_get(op);
            }
            None => {}
        }
    }

    /// A get whose replies are all in (or whose time is up): send the newest record to every
    /// replier that lacked it.
    fn finish_get(&mut self, op: OpId) {
        let Some(Op::Get(get)) = self.ops.remove(&op) else { return };
        let Some(newest) = get.search.newest() else { return };
        let local = self.local_peer_id();
        for peer in get.search.stale(&newest) {
            tracing::debug!(key = %get.key, %peer, version = %newest.version, "read repair");
            if peer == local {
                let _ = self.accept(newest.clone());
            } else {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kv
                    .send_request(&peer, Request::Store { record: newest.clone() });
                self.requests.insert(id, Outbound::Repair { key: get.key.clone() });
            }
        }
    }

    /// An op passed its deadline.
    pub(super) fn expire_op(&mut self, op: OpId) {
        let (acked, needed, failures) = match self.ops.get(&op) {
            Some(Op::Put(put)) => match (&put.tally, &put.search) {
                (Some(t), _) => (t.ok.len(), t.needed, t.failures.clone()),
                (None, search) => {
                    let mut failures =
                        search.as_ref().map(|s| s.failures.clone()).unwrap_or_default();
                    failures.push("the search for the replicas did not finish".to_owned());
                    let needed = search.as_ref().map_or(1, |s| self.put_needed(s));
                    (0, needed, failures)
                }
            },
            Some(Op::Get(get)) => {
                (get.search.answered().0, get.search.needed(), get.search.failures.clone())
            }
            None => return,
        };
        let err = Error::Timeout { after: self.config.timeout, acked, needed, failures };
        self.fail_op(op, err);
    }
}
