//! Warm connections: a behaviour that keeps the connections to a chosen set of peers open
//! whatever the idle timeout says, so the requests of a get or put to them skip the TCP,
//! Noise and Yamux handshakes (at N = 100 in one process, the one-hop view's requests to
//! peers without a connection cost 2.5 times the packets of a get and tripled its latency).
//!
//! The event loop chooses the set (the members nearest to this peer, at most
//! [`WARM_CAP`](crate::core::members::WARM_CAP)) and dials the ones not connected; this
//! behaviour only tells each connection's handler whether to keep it alive. It opens no stream
//! and speaks no protocol.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
    NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Keeps connections to the chosen peers open.
#[derive(Debug, Default)]
pub struct Behaviour {
    keep: HashSet<PeerId>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    pending: VecDeque<ToSwarm<Infallible, bool>>,
}

impl Behaviour {
    /// The peers whose connections stay open from now on (the others fall back to the idle
    /// timeout).
    pub fn set(&mut self, keep: HashSet<PeerId>) {
        for (peer, conns) in &self.connections {
            let (before, after) = (self.keep.contains(peer), keep.contains(peer));
            if before != after {
                for c in conns {
                    self.pending.push_back(ToSwarm::NotifyHandler {
                        peer_id: *peer,
                        handler: NotifyHandler::One(*c),
                        event: after,
                    });
                }
            }
        }
        self.keep = keep;
    }

    /// Whether `peer` is kept.
    pub fn keeps(&self, peer: &PeerId) -> bool {
        self.keep.contains(peer)
    }

    fn handler(&mut self, peer: PeerId, id: ConnectionId) -> Handler {
        self.connections.entry(peer).or_default().push(id);
        Handler { keep: self.keep.contains(&peer) }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, id))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, id))
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(closed) = event {
            if let Some(conns) = self.connections.get_mut(&closed.peer_id) {
                conns.retain(|c| *c != closed.connection_id);
                if conns.is_empty() {
                    self.connections.remove(&closed.peer_id);
                }
            }
        }
    }
}

/// One connection's keep-alive flag.
#[derive(Debug)]
pub struct Handler {
    keep: bool,
}

impl libp2p::swarm::ConnectionHandler for Handler {
    type FromBehaviour = bool;
    type ToBehaviour = Infallible;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep
    }

    fn on_behaviour_event(&mut self, keep: bool) {
        self.keep = keep;
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol, ..
            }) => match protocol {},
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol, ..
            }) => match protocol {},
            _ => {}
        }
    }
}
