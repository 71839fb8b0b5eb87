//! The value protocol inside the loop: serving Store and Fetch, starting the replica round of a
//! put or get once its lookup is done, counting answers, read repair.

use libp2p::request_response::{
    self, Message, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::PeerId;

use super::ops::{Op, OpId, Tally};
use super::{EventLoop, Outbound};
use crate::clock::now_ms;
use crate::error::Error;
use crate::placement;
use crate::protocol::{Request, Response};
use crate::record::Record;

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
                if matches!(error, OutboundFailure::UnsupportedProtocols) {
                    self.kv_support.insert(peer, false);
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
            Request::Store { record } => self.accept(record),
            Request::Fetch { key } => Response::Found { record: self.store.get(&key).cloned() },
            Request::Malformed { reason } => {
                tracing::debug!(%peer, "malformed request: {reason}");
                Response::Rejected { reason }
            }
        };
        if let Response::Rejected { reason } = &response {
            tracing::info!(%peer, "rejected a request: {reason}");
        }
        if self.swarm.behaviour_mut().kv.send_response(channel, response).is_err() {
            tracing::debug!(%peer, "could not answer: the stream is gone");
        }
    }

    /// Verifies and merges a record a peer asks us to hold.
    fn accept(&mut self, record: Record) -> Response {
        if let Err(e) = record.check(self.config.max_value_size, now_ms()) {
            return Response::Rejected { reason: e.to_string() };
        }
        self.clock.observe(record.version);
        let (merged, held) = self.store.put_merge(record);
        tracing::debug!(key = %held.key, version = %held.version, ?merged, "store");
        Response::Stored { version: held.version }
    }

    /// Sends `request` to `peer` on behalf of operation `op`.
    fn send_for(&mut self, op: OpId, peer: PeerId, request: Request) -> OutboundRequestId {
        let id = self.swarm.behaviour_mut().kv.send_request(&peer, request);
        self.requests.insert(id, Outbound::Op(op));
        id
    }

    /// The lookup of a put or get finished with these peers: choose the replicas and ask them.
    pub(super) fn lookup_done(&mut self, op: OpId, peers: Vec<PeerId>) {
        let local = self.local_peer_id();
        let remote: Vec<PeerId> = peers
            .into_iter()
            .filter(|p| *p != local && self.kv_support.get(p) != Some(&false))
            .collect();
        if remote.is_empty() {
            let known = self.routing_table_len();
            self.fail_op(op, Error::NoPeers { known });
            return;
        }
        let candidates = remote.into_iter().chain(std::iter::once(local));
        match self.ops.get(&op) {
            Some(Op::Put(put)) => {
                let plan = placement::plan(
                    &put.record.key,
                    candidates,
                    self.config.replication,
                    self.config.write_quorum,
                );
                let record = put.record.clone();
                let mut tally = Tally::new(&plan);
                let mut local_ack = false;
                for peer in &plan.replicas {
                    if *peer == local {
                        local_ack = true;
                    } else {
                        tally.in_flight += 1;
                        self.send_for(op, *peer, Request::Store { record: record.clone() });
                    }
                }
                if local_ack {
                    self.store.put_merge(record);
                    tally.in_flight += 1;
                    tally.succeed(local);
                }
                if let Some(Op::Put(put)) = self.ops.get_mut(&op) {
                    put.tally = Some(tally);
                }
            }
            Some(Op::Get(get)) => {
                let key = get.key.clone();
                let plan = placement::plan(
                    &key,
                    candidates,
                    self.config.replication,
                    self.config.read_quorum,
                );
                let mut tally = Tally::new(&plan);
                let mut local_reply = None;
                for peer in &plan.replicas {
                    if *peer == local {
                        local_reply = Some(self.store.get(&key).cloned());
                    } else {
                        tally.in_flight += 1;
                        self.send_for(op, *peer, Request::Fetch { key: key.clone() });
                    }
                }
                if let Some(Op::Get(get)) = self.ops.get_mut(&op) {
                    if let Some(held) = local_reply {
                        tally.in_flight += 1;
                        tally.succeed(local);
                        get.replies.push((local, held));
                    }
                    get.tally = Some(tally);
                }
            }
            None => return,
        }
        self.progress(op);
    }

    fn on_response(&mut self, id: OutboundRequestId, peer: PeerId, response: Response) {
        match self.requests.remove(&id) {
            None => tracing::debug!(%peer, "late answer dropped"),
            Some(Outbound::Raw(reply)) => {
                let _ = reply.send(Ok(response));
            }
            Some(Outbound::Repair { key }) => {
                tracing::debug!(%peer, %key, ?response, "repair answered");
            }
            Some(Outbound::Op(op)) => {
                let max_value_size = self.config.max_value_size;
                let verdict: Result<Option<Option<Record>>, String> =
                    match (&self.ops.get(&op), response) {
                        (None, _) => return,
                        (Some(Op::Put(_)), Response::Stored { version }) => {
                            self.clock.observe(version.min(self.clock_bound()));
                            Ok(None)
                        }
                        (Some(Op::Get(get)), Response::Found { record }) => match record {
                            None => Ok(Some(None)),
                            Some(r) if r.key != get.key => {
                                Err(format!("sent a record for another key ({:?})", r.key))
                            }
                            Some(r) => match r.check(max_value_size, now_ms()) {
                                Ok(()) => {
                                    self.clock.observe(r.version);
                                    Ok(Some(Some(r)))
                                }
                                Err(e) => Err(format!("sent a bad record: {e}")),
                            },
                        },
                        (_, Response::Rejected { reason }) => Err(format!("rejected: {reason}")),
                        (_, other) => Err(format!("unexpected answer {other:?}")),
                    };
                match verdict {
                    Ok(held) => {
                        match self.ops.get_mut(&op) {
                            Some(Op::Put(put)) => {
                                if let Some(t) = put.tally.as_mut() {
                                    t.succeed(peer);
                                }
                            }
                            Some(Op::Get(get)) => {
                                if let Some(t) = get.tally.as_mut() {
                                    t.succeed(peer);
                                }
                                get.replies.push((peer, held.unwrap_or(None)));
                            }
                            None => {}
                        }
                        self.progress(op);
                    }
                    Err(reason) => self.op_request_failed(op, peer, reason),
                }
            }
        }
    }

    /// The greatest version we accept as a clock hint from an acknowledgement.
    fn clock_bound(&self) -> crate::clock::Hlc {
        crate::clock::Hlc::new(now_ms() + crate::record::MAX_CLOCK_AHEAD_MS, 0)
    }

    fn on_request_failed(&mut self, id: OutboundRequestId, peer: PeerId, reason: String) {
        match self.requests.remove(&id) {
            None => {}
            Some(Outbound::Raw(reply)) => {
                let _ = reply.send(Err(Error::Request { peer, reason }));
            }
            Some(Outbound::Repair { key }) => {
                tracing::debug!(%peer, %key, "repair failed: {reason}");
            }
            Some(Outbound::Op(op)) => self.op_request_failed(op, peer, reason),
        }
    }

    /// A replica of `op` failed: ask a spare in its place, then see where the op stands.
    fn op_request_failed(&mut self, op: OpId, peer: PeerId, reason: String) {
        tracing::debug!(op, %peer, "replica failed: {reason}");
        let next = match self.ops.get_mut(&op) {
            Some(Op::Put(put)) => put
                .tally
                .as_mut()
                .and_then(|t| t.fail(peer, &reason))
                .map(|p| (p, Request::Store { record: put.record.clone() })),
            Some(Op::Get(get)) => get
                .tally
                .as_mut()
                .and_then(|t| t.fail(peer, &reason))
                .map(|p| (p, Request::Fetch { key: get.key.clone() })),
            None => None,
        };
        if let Some((spare, request)) = next {
            self.ask_spare(op, spare, request);
        }
        self.progress(op);
    }

    fn ask_spare(&mut self, op: OpId, spare: PeerId, request: Request) {
        let local = self.local_peer_id();
        if spare == local {
            // Only reachable when the local peer ranked below R; answer from the store.
            let held = match &request {
                Request::Store { record } => {
                    let (merged, _) = self.store.put_merge(record.clone());
                    tracing::debug!(?merged, "spare: stored locally");
                    None
                }
                Request::Fetch { key } => Some(self.store.get(key).cloned()),
                Request::Malformed { .. } => return,
            };
            match self.ops.get_mut(&op) {
                Some(Op::Put(put)) => {
                    if let Some(t) = put.tally.as_mut() {
                        t.in_flight += 1;
                        t.succeed(local);
                    }
                }
                Some(Op::Get(get)) => {
                    if let Some(t) = get.tally.as_mut() {
                        t.in_flight += 1;
                        t.succeed(local);
                    }
                    get.replies.push((local, held.unwrap_or(None)));
                }
                None => {}
            }
            return;
        }
        let in_flight = match self.ops.get_mut(&op) {
            Some(Op::Put(put)) => put.tally.as_mut().map(|t| &mut t.in_flight),
            Some(Op::Get(get)) => get.tally.as_mut().map(|t| &mut t.in_flight),
            None => None,
        };
        if let Some(n) = in_flight {
            *n += 1;
            self.send_for(op, spare, request);
        }
    }

    /// Answers or fails `op` when its tally allows; finishes a get (repairs) when all are in.
    pub(super) fn progress(&mut self, op: OpId) {
        let Some(entry) = self.ops.get_mut(&op) else {
            return;
        };
        match entry {
            Op::Put(put) => {
                let Some(tally) = &put.tally else { return };
                if tally.met() {
                    let report = put.report(tally);
                    tracing::debug!(op, acked = report.acked, elapsed = ?report.elapsed, "put: quorum met");
                    if let Some(Op::Put(put)) = self.ops.remove(&op) {
                        let _ = put.reply.send(Ok(report));
                    }
                } else if tally.impossible() && tally.in_flight == 0 {
                    // Wait for the answers in flight so the error counts them.
                    let err = self.quorum_error(op);
                    self.fail_op(op, err);
                }
            }
            Op::Get(get) => {
                let Some(tally) = &get.tally else { return };
                if get.reply.is_some() && tally.met() {
                    let report = get.report(tally);
                    tracing::debug!(op, replies = report.replies, elapsed = ?report.elapsed, "get: quorum met");
                    if let Some(reply) = get.reply.take() {
                        let _ = reply.send(Ok(report));
                    }
                }
                let done = tally.in_flight == 0;
                if get.reply.is_some() && tally.impossible() && done {
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
            Some(Op::Get(get)) => ("get", get.tally.as_ref()),
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
            None => Error::NoPeers { known },
        }
    }

    /// Ends `op` with `err` (a get that already answered just finishes).
    pub(super) fn fail_op(&mut self, op: OpId, err: Error) {
        match self.ops.remove(&op) {
            Some(Op::Put(put)) => {
                let _ = put.reply.send(Err(err));
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
        let Some(Op::Get(get)) = self.ops.remove(&op) else {
            return;
        };
        let Some(newest) = get.newest() else { return };
        let local = self.local_peer_id();
        for peer in placement::stale(&newest, &get.replies) {
            tracing::debug!(key = %get.key, %peer, version = %newest.version, "read repair");
            if peer == local {
                self.store.put_merge(newest.clone());
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
            Some(Op::Put(put)) => put
                .tally
                .as_ref()
                .map_or((0, 1, vec!["the Kademlia lookup did not finish".to_owned()]), |t| {
                    (t.ok.len(), t.needed, t.failures.clone())
                }),
            Some(Op::Get(get)) => get
                .tally
                .as_ref()
                .map_or((0, 1, vec!["the Kademlia lookup did not finish".to_owned()]), |t| {
                    (t.ok.len(), t.needed, t.failures.clone())
                }),
            None => return,
        };
        let err = Error::Timeout { after: self.config.timeout, acked, needed, failures };
        self.fail_op(op, err);
    }
}
