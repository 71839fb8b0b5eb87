//! Warm connections: a behaviour that keeps the connections to a chosen set of peers open
//! whatever the idle timeout says, so the requests of a get or put to them skip the TCP,
//! Noise and Yamux handshakes (at N = 100 in one process, the one-hop view's requests to
//! peers without a connection cost 2.5 times the packets of a get and tripled its latency).
//!
//! The event loop chooses the set (the members nearest to this peer, at most
//! [`WARM_CAP`](crate::core::members::WARM_CAP)) and dials the ones not connected; this
//! behaviour only tells each connection's handler whether to keep it alive. It opens no stream
//! and speaks no protocol.
//!
//! It also closes duplicates: two peers that dial each other at once (two Kademlia walks, two
//! rejoin rounds) each get their dial, and libp2p keeps both connections (19 % more connections
//! than peer pairs in a 40-peer overlay on 127.0.0.1), each probed and holding its buffers. When
//! a peer has connections dialed from both ends, both ends close the ones dialed by the greater
//! peer id, so they close the same ones, [`DUPLICATE_GRACE`] later: libp2p-kad does not fail a
//! query's request that was on a connection closed while another to the peer remains, so a
//! duplicate closed at once under a join's walk left that walk waiting for its request timeout
//! (100 peers started in 30 s instead of 4). A value-protocol request caught on a closed
//! connection is sent again on the one kept (`EventLoop::resend`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// How long a duplicate connection stays open before it is closed: long enough for the requests
/// a join or a lookup started on it to end.
pub const DUPLICATE_GRACE: Duration = Duration::from_secs(10);

/// Keeps connections to the chosen peers open, and one connection per peer.
#[derive(Debug)]
pub struct Behaviour {
    /// This peer's id (which end's dials a duplicate keeps).
    local: PeerId,
    keep: HashSet<PeerId>,
    connections: HashMap<PeerId, Vec<Conn>>,
    pending: VecDeque<ToSwarm<Infallible, bool>>,
    /// How long a duplicate stays open ([`DUPLICATE_GRACE`]).
    grace: Duration,
    /// Wakes the behaviour when the next duplicate is due to close.
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` is set for a duplicate.
    armed: bool,
}

/// One established connection.
#[derive(Debug, Clone, Copy)]
struct Conn {
    id: ConnectionId,
    /// Whether this peer dialed it.
    ours: bool,
    /// When it is to be closed, as a duplicate.
    close_at: Option<Instant>,
    /// Whether it was asked to close.
    closing: bool,
}

impl Behaviour {
    /// The behaviour of the peer `local`.
    pub fn new(local: PeerId) -> Self {
        Self::with_grace(local, DUPLICATE_GRACE)
    }

    /// With duplicates closed `grace` after they appear (tests use a short one).
    pub(crate) fn with_grace(local: PeerId, grace: Duration) -> Self {
        Self {
            local,
            keep: HashSet::new(),
            connections: HashMap::new(),
            pending: VecDeque::new(),
            grace,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    /// The peers whose connections stay open from now on (the others fall back to the idle
    /// timeout).
    pub fn set(&mut self, keep: HashSet<PeerId>) {
        for (peer, conns) in &self.connections {
            let (before, after) = (self.keep.contains(peer), keep.contains(peer));
            if before != after {
                for c in conns {
                    self.pending.push_back(ToSwarm::NotifyHandler {
                        peer_id: *peer,
                        handler: NotifyHandler::One(c.id),
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

    fn handler(&mut self, peer: PeerId, id: ConnectionId, ours: bool) -> Handler {
        let conns = self.connections.entry(peer).or_default();
        conns.push(Conn { id, ours, close_at: None, closing: false });
        // Dialed from both ends: the greater id's dials go, at both ends alike.
        if conns.iter().any(|c| c.ours) && conns.iter().any(|c| !c.ours) {
            let close_ours = self.local > peer;
            let at = Instant::now() + self.grace;
            for c in conns.iter_mut().filter(|c| c.ours == close_ours && c.close_at.is_none()) {
                c.close_at = Some(at);
            }
            if !self.armed {
                self.timer.as_mut().reset(at);
                self.armed = true;
            }
        }
        Handler { keep: self.keep.contains(&peer) }
    }

    /// Asks the swarm to close the duplicates whose grace ended; sets the timer for the next.
    fn close_due(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        for (peer, conns) in &mut self.connections {
            // The one kept may have gone meanwhile: then the duplicate is all there is.
            if !conns.iter().any(|c| c.close_at.is_none()) {
                conns.iter_mut().for_each(|c| c.close_at = None);
                continue;
            }
            for c in conns.iter_mut().filter(|c| !c.closing) {
                match c.close_at {
                    Some(at) if at <= now => {
                        c.closing = true;
                        tracing::debug!(%peer, connection = ?c.id, "closing a duplicate connection");
                        self.pending.push_back(ToSwarm::CloseConnection {
                            peer_id: *peer,
                            connection: CloseConnection::One(c.id),
                        });
                    }
                    Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                    None => {}
                }
            }
        }
        self.armed = next.is_some();
        if let Some(at) = next {
            self.timer.as_mut().reset(at);
        }
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
        Ok(self.handler(peer, id, false))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, id, true))
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if self.armed && self.timer.as_mut().poll(cx).is_ready() {
            self.close_due(Instant::now());
            if self.armed {
                // Registers the waker for the next one.
                let _ = self.timer.as_mut().poll(cx);
            }
        }
        match self.pending.pop_front() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(closed) = event {
            if let Some(conns) = self.connections.get_mut(&closed.peer_id) {
                conns.retain(|c| c.id != closed.connection_id);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;
    use std::time::Duration;

    use futures::StreamExt;
    use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
    use libp2p::swarm::{ConnectionId, SwarmEvent};
    use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};

    use super::Behaviour;

    fn swarm() -> Swarm<Behaviour> {
        libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|key| {
                Behaviour::with_grace(key.public().to_peer_id(), Duration::from_millis(300))
            })
            .unwrap()
            // Connections are closed only as duplicates within the test.
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    }

    async fn listening(swarm: &mut Swarm<Behaviour>) -> Multiaddr {
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    }

    /// Per end: every connection established (with whether this end dialed it), those of them
    /// closed, and whether this end's own dial has come to an end (connected or failed).
    #[derive(Default)]
    struct Seen {
        established: HashMap<ConnectionId, bool>,
        closed: Vec<ConnectionId>,
        dial_done: bool,
    }

    impl Seen {
        fn open(&self) -> Vec<(ConnectionId, bool)> {
            let open = self.established.iter().filter(|(c, _)| !self.closed.contains(c));
            open.map(|(c, ours)| (*c, *ours)).collect()
        }
    }

    fn note(seen: &mut Seen, event: SwarmEvent<std::convert::Infallible>) {
        match event {
            SwarmEvent::ConnectionEstablished { connection_id, endpoint, .. } => {
                seen.dial_done |= endpoint.is_dialer();
                seen.established.insert(connection_id, endpoint.is_dialer());
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => seen.closed.push(connection_id),
            SwarmEvent::OutgoingConnectionError { .. } => seen.dial_done = true,
            _ => {}
        }
    }

    /// Both ends dial at once. Each end may see both connections up and close the one dialed
    /// by the greater id, or see that one fail during its set-up because the other end closed
    /// it first: either way one connection is left, the one the smaller id dialed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_peers_that_dial_each_other_at_once_keep_one_connection() {
        let (mut a, mut b) = (swarm(), swarm());
        let (addr_a, addr_b) = (listening(&mut a).await, listening(&mut b).await);
        let (id_a, id_b) = (*a.local_peer_id(), *b.local_peer_id());
        // Each end dials whatever the other does, from a port of its own: from the listening
        // port (libp2p's default when it listens) the two SYNs can meet as one TCP simultaneous
        // open, which both ends take for their dial and whose handshake then fails.
        let dial = |peer: PeerId, addr: Multiaddr| {
            DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::Always)
                .allocate_new_port()
                .build()
        };
        a.dial(dial(id_b, addr_b)).unwrap();
        b.dial(dial(id_a, addr_a)).unwrap();
        let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Both dials over and one connection open at each end, then a while longer: nothing
        // else may close.
        let mut settled_at = None;
        while tokio::time::Instant::now() < deadline {
            let done = seen_a.dial_done
                && seen_b.dial_done
                && seen_a.open().len() == 1
                && seen_b.open().len() == 1;
            settled_at = match (done, settled_at) {
                (false, _) => None,
                (true, None) => Some(tokio::time::Instant::now()),
                (true, Some(t)) if t.elapsed() > Duration::from_millis(500) => break,
                (true, t) => t,
            };
            tokio::select! {
                e = a.select_next_some() => note(&mut seen_a, e),
                e = b.select_next_some() => note(&mut seen_b, e),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        assert!(seen_a.dial_done && seen_b.dial_done, "both dials came to an end");
        assert_eq!(a.network_info().connection_counters().num_established(), 1);
        assert_eq!(b.network_info().connection_counters().num_established(), 1);
        let smaller = id_a.min(id_b);
        // The connection left at each end is the one the smaller id dialed.
        for (seen, me, other) in [(&seen_a, id_a, id_b), (&seen_b, id_b, id_a)] {
            let open = seen.open();
            assert_eq!(open.len(), 1, "one connection open at {me}");
            let dialer = if open[0].1 { me } else { other };
            assert_eq!(dialer, smaller, "the connection kept was dialed by the greater id");
        }
    }
}
