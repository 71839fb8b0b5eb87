//! The value protocol inside the loop: requests from peers are answered by the core's
//! [`replica::serve`], and answers to our requests go back to whoever sent them — an operation
//! ([`EventLoop::feed`]), upkeep, or a raw request. No protocol decision is made here.
//!
//! A request that writes has its records queued to the store's writer thread as one job, and
//! its answer (the peer's `ResponseChannel`, or the op's `Input::Answer`) is held in `acks`
//! until the batch with that job is committed ([`EventLoop::on_committed`]); a batch that fails
//! turns every answer it holds into a refusal. So is an answer that rests on a write another
//! request queued (the same record again: "held" is only true once that one is committed).
//! A large StoreMany is checked (signatures) on tokio's blocking pool, not on the loop.

use libp2p::request_response::{
    self, Message, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::PeerId;

use super::ops::{nearest_known, OpId};
use super::{EventLoop, Outbound};
use crate::core::replica::{self, Holdings};
use crate::core::{observe, Input, Kind};
use crate::error::Error;
use crate::protocol::{Request, Response};
use crate::record::Record;
use crate::store::{Done, Latest, Store};

impl Holdings for Store {
    fn get(&self, key: &str) -> Option<&Record> {
        Store::get(self, key)
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn bytes(&self) -> usize {
        Store::bytes(self)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Record)) {
        self.iter().for_each(f);
    }

    fn writer_usage(&self, writer: &[u8]) -> replica::Usage {
        Store::writer_usage(self, writer)
    }
}

impl Holdings for Latest<'_> {
    fn get(&self, key: &str) -> Option<&Record> {
        Latest::get(self, key)
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn bytes(&self) -> usize {
        Latest::bytes(self)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Record)) {
        Latest::for_each(self, f);
    }

    fn writer_usage(&self, writer: &[u8]) -> replica::Usage {
        Latest::writer_usage(self, writer)
    }
}

/// Who waits for the answer to a request served here.
pub(super) enum Waiter {
    /// A remote peer, on this channel.
    Remote { peer: PeerId, channel: ResponseChannel<Response> },
    /// One of this peer's ops (its answer is fed back by `drain_local`).
    Local { op: OpId, kind: Kind },
    /// Nobody (a read repair of our own copy).
    Nobody,
}

/// An answer held until the writes it acknowledges are committed.
pub(super) struct Held {
    waiter: Waiter,
    response: Response,
    /// The keys whose writes it acknowledges (its own, and pending ones it rests on).
    keys: Vec<String>,
}

/// StoreMany requests of at least this many records are checked off the loop.
const OFF_LOOP_RECORDS: usize = 32;

/// Most StoreMany requests checked off the loop at once (each holds a blocking-pool thread);
/// more are checked on it.
pub(super) const MAX_CHECKING: usize = 4;

/// What a StoreMany checked off the loop merges against: the records held (pending writes
/// included) for its keys, and the store's counts, as they were when it arrived.
struct Snapshot {
    records: std::collections::HashMap<String, Record>,
    count: usize,
    bytes: usize,
    /// What each writer of the batch holds.
    writers: std::collections::HashMap<Vec<u8>, replica::Usage>,
    /// The peers this one knows (members and value-protocol routes), for the pollution guard's
    /// ranking of each key.
    known: Vec<PeerId>,
}

impl Holdings for Snapshot {
    fn get(&self, key: &str) -> Option<&Record> {
        self.records.get(key)
    }

    fn count(&self) -> usize {
        self.count
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn for_each(&self, f: &mut dyn FnMut(&Record)) {
        self.records.values().for_each(f);
    }

    fn writer_usage(&self, writer: &[u8]) -> replica::Usage {
        self.writers.get(writer).copied().unwrap_or_default()
    }
}

/// The keys a request writes.
fn written_keys(request: &Request) -> Vec<&str> {
    match request {
        Request::Store { record } => vec![record.key.as_str()],
        Request::StoreMany { records } => records.iter().map(|r| r.key.as_str()).collect(),
        _ => Vec::new(),
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
        let known = self.bootstrap_peers.contains(&peer) || self.is_routed(&peer);
        if let Err(reason) = self.gate.admit(&peer, &request, known) {
            tracing::debug!(%peer, "rate limited: {reason}");
            let _ =
                self.swarm.behaviour_mut().kv.send_response(channel, Response::Rejected { reason });
            return;
        }
        let response = match request {
            Request::Summary { buckets } => self.answer_summary(peer, buckets),
            Request::Members { max } => {
                self.share_offset = self.share_offset.wrapping_add(usize::from(max));
                self.members.answer(max, self.share_offset, self.now().mono)
            }
            other => return self.serve_request(other, Waiter::Remote { peer, channel }),
        };
        self.deliver(Waiter::Remote { peer, channel }, response);
    }

    /// Answers `request`, from a remote peer or from one of this peer's own operations:
    /// [`replica::serve`] decides (a write merges against the newest pending record, and the
    /// limits count pending writes; a Fetch or Digest reads what is committed), its writes are
    /// queued to the store as one job, and the answer goes to `waiter` once they are committed
    /// (at once when there is nothing to wait for). A write that cannot be queued turns the
    /// answer into a refusal: nothing is acknowledged that is not durable.
    pub(super) fn serve_request(&mut self, request: Request, waiter: Waiter) {
        if matches!(request, Request::Digest { .. }) {
            self.stats.digests_received += 1;
        }
        if let Request::StoreMany { records } = &request {
            if records.len() >= OFF_LOOP_RECORDS && self.checking.len() < MAX_CHECKING {
                return self.check_off_loop(request, waiter);
            }
        }
        let remote = matches!(waiter, Waiter::Remote { .. });
        let writes = matches!(request, Request::Store { .. } | Request::StoreMany { .. });
        // Keys of the request with a write still pending: the answer may rest on one.
        let pending: Vec<String> = written_keys(&request)
            .into_iter()
            .filter(|key| self.store.pending_seq(key).is_some())
            .map(str::to_owned)
            .collect();
        let now = self.now();
        let kad = &mut self.swarm.behaviour_mut().kad;
        let (members, kv_support, suspects) = (&self.members, &self.kv_support, &self.suspects);
        // A write's `near` is what the pollution guard ranks by: members only named in Fetch
        // answers do not count there (anyone can name anyone).
        let mut near = |key: &str, n: usize| replica::Near {
            peers: nearest_known(members, kad, kv_support, key, n, writes),
            down: suspects.near(key, n),
        };
        let served = if writes {
            let latest = self.store.latest_view();
            replica::serve(request, remote, &latest, &mut near, self.limits, now)
        } else {
            replica::serve(request, remote, &self.store, &mut near, self.limits, now)
        };
        self.commit_served(waiter, served, pending, now);
    }

    /// Checks a large StoreMany on tokio's blocking pool (the records' signatures: ~40 µs
    /// each, ~100 ms for 2,500, which on the loop would hold every other request up), against
    /// a copy of what is held for its keys and the store's counts as they are now. The result
    /// comes back to [`EventLoop::on_checked`].
    fn check_off_loop(&mut self, request: Request, waiter: Waiter) {
        let Request::StoreMany { records } = request else { return };
        let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        let latest = self.store.latest_view();
        let snapshot = Snapshot {
            records: keys
                .iter()
                .filter_map(|key| Some((key.clone(), latest.get(key)?.clone())))
                .collect(),
            count: latest.len(),
            bytes: latest.bytes(),
            writers: records
                .iter()
                .map(|r| (r.writer.clone(), latest.writer_usage(&r.writer)))
                .collect(),
            known: self.known_peers_for_guard(),
        };
        let (remote, limits, now) =
            (matches!(waiter, Waiter::Remote { .. }), self.limits, self.now());
        self.next_check += 1;
        let id = self.next_check;
        self.checking.insert(id, (waiter, keys, now));
        let done = self.checked_tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut snapshot = snapshot;
            // The pollution guard ranks this peer among the ones it knew when the batch came.
            let known = std::mem::take(&mut snapshot.known);
            let mut near = |key: &str, n: usize| replica::Near {
                peers: crate::placement::rank(key, known.iter().copied())
                    .into_iter()
                    .take(n)
                    .map(|p| (p, Vec::new()))
                    .collect(),
                down: Vec::new(),
            };
            let request = Request::StoreMany { records };
            let served = replica::serve(request, remote, &snapshot, &mut near, limits, now);
            let _ = done.blocking_send((id, served));
        });
    }

    /// A StoreMany checked off the loop: its writes merge against what is held now (a record
    /// that lost to a write queued meanwhile is dropped: the newer one is held), and are
    /// queued like any other.
    pub(super) fn on_checked(&mut self, id: u64, served: replica::Served) {
        let Some((waiter, keys, now)) = self.checking.remove(&id) else { return };
        self.commit_served(waiter, served, keys, now);
    }

    /// Queues the writes of `served` as one job and holds its answer until they are committed,
    /// and until every pending write of `keys` (the request's keys that may have one) that the
    /// answer rests on is committed too. A write that cannot be queued turns the answer into a
    /// refusal.
    fn commit_served(
        &mut self,
        waiter: Waiter,
        mut served: replica::Served,
        keys: Vec<String>,
        now: crate::core::Now,
    ) {
        if let Some(version) = served.observed {
            observe(&mut self.clock, now, version);
        }
        let records = std::mem::take(&mut served.writes);
        let mut written: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        let own = if records.is_empty() {
            None
        } else {
            match self.store.queue_records(records) {
                Ok(seq) => seq,
                Err(e) => {
                    tracing::warn!("store write failed: {e}");
                    for key in &written {
                        served.write_failed(key, &e.to_string());
                    }
                    return self.deliver(waiter, served.response);
                }
            }
        };
        // A key whose newest pending write is another job's: the answer ("held") rests on it.
        let mut dep = None;
        for key in keys {
            if let Some(seq) = self.store.pending_seq(&key).filter(|seq| Some(*seq) != own) {
                dep = dep.max(Some(seq));
                written.push(key);
            }
        }
        let held = Held { waiter, response: served.response, keys: written };
        if let Some(now) = self.acks.hold(own, dep, held) {
            self.deliver(now.waiter, now.response);
        }
        // An in-memory store has committed already: answer now.
        self.settle();
    }

    /// Hands an answer to whoever waits for it.
    fn deliver(&mut self, waiter: Waiter, response: Response) {
        match waiter {
            Waiter::Remote { peer, channel } => {
                if let Response::Rejected { reason } = &response {
                    tracing::info!(%peer, "rejected a request: {reason}");
                }
                if self.swarm.behaviour_mut().kv.send_response(channel, response).is_err() {
                    tracing::debug!(%peer, "could not answer: the stream is gone");
                }
            }
            Waiter::Local { op, kind } => self.local_answers.push_back((op, kind, response)),
            Waiter::Nobody => {}
        }
    }

    /// Takes every batch the store has reported already.
    pub(super) fn settle(&mut self) {
        while let Some(done) = self.store.try_committed() {
            self.on_committed(done);
        }
    }

    /// The peers the pollution guard ranks this one among off the loop: the members someone
    /// vouched for (not those only named in Fetch answers) and the routing table's peers not known to lack the value protocol (as `nearest_known` does).
    fn known_peers_for_guard(&mut self) -> Vec<PeerId> {
        let mut known = self.members.vouched();
        // A set to look up in: the members table can hold thousands, the routing table ~100.
        let members: std::collections::HashSet<PeerId> = known.iter().copied().collect();
        let kv_support = &self.kv_support;
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                if kv_support.get(&peer) != Some(&false) && !members.contains(&peer) {
                    known.push(peer);
                }
            }
        }
        known
    }

    /// A batch of the store's writes was committed (or failed): its records become visible,
    /// upkeep's sums follow them, and the answers that waited for it go out — refusals, if it
    /// failed.
    pub(super) fn on_committed(&mut self, done: Done) {
        let mut committed = self.store.apply(done);
        for (key, before, after) in std::mem::take(&mut committed.changes) {
            self.note_write(&key, before, after);
        }
        if let Err(reason) = &committed.result {
            tracing::warn!(
                first = committed.first,
                last = committed.last,
                "store commit failed: {reason}"
            );
        }
        for (held, result) in self.acks.release(&committed) {
            match result {
                Ok(()) => self.deliver(held.waiter, held.response),
                Err(reason) => self.refuse(held, &reason),
            }
        }
    }

    /// Answers a held request with the refusal of its writes (`Rejected`, or for a StoreMany
    /// each key among the rejected).
    pub(super) fn refuse(&mut self, held: Held, reason: &str) {
        let Held { waiter, response, keys } = held;
        let mut served = replica::Served { response, writes: Vec::new(), observed: None };
        for key in &keys {
            served.write_failed(key, reason);
        }
        self.deliver(waiter, served.response);
    }

    fn on_response(&mut self, id: OutboundRequestId, peer: PeerId, response: Response) {
        self.retried.remove(&id);
        let now = self.now().mono;
        self.members.heard(&peer, now);
        match self.requests.remove(&id) {
            None => tracing::debug!(%peer, "late answer dropped"),
            Some(Outbound::Raw(reply)) => {
                self.raw_in_flight = self.raw_in_flight.saturating_sub(1);
                let _ = reply.send(Ok(response));
            }
            Some(Outbound::Repair { key }) => {
                tracing::debug!(%peer, %key, ?response, "repair answered");
            }
            Some(Outbound::Handoff { sent }) => match response {
                Response::StoredMany { rejected, .. } if !rejected.is_empty() => {
                    tracing::debug!(%peer, refused = rejected.len(), "hand-off partly refused");
                    let versions: std::collections::HashMap<String, crate::Hlc> =
                        sent.into_iter().collect();
                    let refused = rejected
                        .into_iter()
                        .filter_map(|(key, _)| versions.get(&key).map(|v| (key, *v)))
                        .collect();
                    self.upkeep.refused(peer, refused, now);
                }
                other => tracing::debug!(%peer, ?other, "hand-off answered"),
            },
            Some(Outbound::Summary) => match response {
                Response::Mismatch { buckets } => self.on_mismatch(peer, &buckets),
                other => tracing::debug!(%peer, ?other, "unexpected answer to a summary"),
            },
            Some(Outbound::Digest(id)) => match response {
                Response::Missing { keys } => self.on_missing(peer, id, keys),
                other => tracing::debug!(%peer, ?other, "unexpected answer to a digest"),
            },
            Some(Outbound::Exchange) => match response {
                Response::Members { peers } => self.members.merge(peers, now),
                other => tracing::debug!(%peer, ?other, "unexpected answer to a members exchange"),
            },
            Some(Outbound::Op { op, kind }) => {
                self.feed(op, Input::Answer { peer, kind, response })
            }
        }
    }

    /// A request of a put or get lost its connection before the answer came: sends it again
    /// once (to a new connection, or another one open to the peer) instead of failing the peer.
    /// With idle timeouts a connection that carried nothing for a while closes, and a request
    /// sent just then meets the close (at N = 500, one get in 200 lost four of its five replicas
    /// at once this way: the connections one earlier get had opened closed together). Fetch and
    /// Store are idempotent. Returns whether it was sent again.
    fn resend(&mut self, id: OutboundRequestId, peer: PeerId) -> bool {
        let Some(Outbound::Op { op, kind }) = self.requests.get(&id) else { return false };
        let Some(request) = self.request_again(*op, *kind, &peer) else { return false };
        let Some(outbound) = self.requests.remove(&id) else { return false };
        tracing::debug!(%peer, "connection closed under a request: sending it again");
        let again = self.send_to(peer, request);
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
            Some(Outbound::Handoff { sent }) => {
                tracing::debug!(%peer, records = sent.len(), "hand-off failed: {reason}");
            }
            Some(Outbound::Digest(_)) => tracing::debug!(%peer, "digest failed: {reason}"),
            Some(Outbound::Summary) => tracing::debug!(%peer, "summary failed: {reason}"),
            Some(Outbound::Exchange) => tracing::debug!(%peer, "members exchange failed: {reason}"),
            Some(Outbound::Op { op, kind }) => self.feed(op, Input::Failed { peer, kind, reason }),
        }
    }
}
