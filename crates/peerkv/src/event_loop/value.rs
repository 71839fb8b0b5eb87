//! The value protocol inside the loop: requests from peers are answered by the core's
//! [`replica::serve`] (its writes committed before the answer goes out), and answers to our
//! requests go back to whoever sent them — an operation ([`EventLoop::feed`]), upkeep, or a raw
//! request. No protocol decision is made here.

use libp2p::request_response::{
    self, Message, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::PeerId;

use super::ops::nearest_known;
use super::{EventLoop, Outbound};
use crate::core::replica::{self, Holdings};
use crate::core::{observe, Input};
use crate::error::Error;
use crate::protocol::{Request, Response};
use crate::record::Record;
use crate::store::Store;

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
            other => self.serve_request(other, true),
        };
        if let Response::Rejected { reason } = &response {
            tracing::info!(%peer, "rejected a request: {reason}");
        }
        if self.swarm.behaviour_mut().kv.send_response(channel, response).is_err() {
            tracing::debug!(%peer, "could not answer: the stream is gone");
        }
    }

    /// What this peer answers to `request`, from a remote peer or (`remote` false) from one of
    /// its own operations: [`replica::serve`], then its writes are committed (a write that
    /// fails turns the answer into a refusal: nothing is acknowledged that is not durable).
    pub(super) fn serve_request(&mut self, request: Request, remote: bool) -> Response {
        if matches!(request, Request::Digest { .. }) {
            self.stats.digests_received += 1;
        }
        let now = self.now();
        let kad = &mut self.swarm.behaviour_mut().kad;
        let (members, kv_support, suspects) = (&self.members, &self.kv_support, &self.suspects);
        let mut near = |key: &str, n: usize| replica::Near {
            peers: nearest_known(members, kad, kv_support, key, n),
            down: suspects.near(key, n),
        };
        let mut served = replica::serve(request, remote, &self.store, &mut near, self.limits, now);
        for record in std::mem::take(&mut served.writes) {
            let key = record.key.clone();
            let old = self.store.get(&key).map(|r| r.version);
            match self.store.put_merge(record) {
                Ok((merged, held)) => {
                    tracing::debug!(key = %held.key, version = %held.version, ?merged, "store");
                    let new = Some(held.version);
                    self.note_write(&key, old, new);
                }
                Err(e) => {
                    tracing::warn!("store write failed: {e}");
                    served.write_failed(&key, &e.to_string());
                }
            }
        }
        if let Some(version) = served.observed {
            observe(&mut self.clock, now, version);
        }
        served.response
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
        let Some(request) = self.request_again(*op, *kind) else { return false };
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
            Some(Outbound::Digest(_)) => tracing::debug!(%peer, "digest failed: {reason}"),
            Some(Outbound::Summary) => tracing::debug!(%peer, "summary failed: {reason}"),
            Some(Outbound::Exchange) => tracing::debug!(%peer, "members exchange failed: {reason}"),
            Some(Outbound::Op { op, kind }) => self.feed(op, Input::Failed { peer, kind, reason }),
        }
    }
}
