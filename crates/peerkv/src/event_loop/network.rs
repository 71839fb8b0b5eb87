//! Swarm events: Kademlia query results, identify, mDNS, connections and listeners.

use libp2p::kad::{self, QueryResult};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{identify, mdns, Multiaddr, PeerId};

use super::command::split_p2p;
use super::{DialPurpose, EventLoop, Lookup, IDENTIFY_WAIT, KEEP_CONNECTED_MIN_IDLE};
use crate::behaviour::BehaviourEvent;
use crate::command::{ClosestPeer, ClosestReport};
use crate::core::members::WARM_DIALS;
use crate::core::membership::{self, Loss};
use crate::error::Error;
use crate::placement;
use crate::protocol::{Request, KV_PROTOCOL};

impl EventLoop {
    pub(super) fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kv(event)) => self.on_kv(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(event)) => self.on_mdns(event),
            SwarmEvent::Behaviour(BehaviourEvent::Alive(event)) => self.on_alive(event),
            SwarmEvent::Behaviour(BehaviourEvent::Warm(never)) => match never {},
            SwarmEvent::NewListenAddr { listener_id, address } => {
                tracing::info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
                if self.listeners_waiting.remove(&listener_id) && self.listeners_waiting.is_empty()
                {
                    self.answer_listen_waiters();
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                tracing::warn!(?listener_id, ?reason, "listener closed");
                if self.listeners_waiting.remove(&listener_id) && self.listeners_waiting.is_empty()
                {
                    self.answer_listen_waiters();
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                tracing::warn!(?listener_id, "listener error: {error}");
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.connections_opened += 1;
                // It is up: no longer counted as down in quorums.
                self.suspects.heard(&peer_id);
                self.mdns_backoff.clear(&peer_id);
                if let Some(dial) = self.dials.remove(&connection_id) {
                    match dial.purpose {
                        DialPurpose::Dial(reply) => {
                            let _ = reply.send(Ok(peer_id));
                        }
                        DialPurpose::Bootstrap(peer, reply) => {
                            if peer == peer_id {
                                let (transport, _) = split_p2p(&dial.addr);
                                self.add_route(peer, transport);
                                self.run_bootstrap(peer, reply);
                            } else {
                                let _ = reply.send(Err(Error::Unreachable {
                                    addr: dial.addr,
                                    reason: format!("the peer there is {peer_id}, not {peer}"),
                                }));
                            }
                        }
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                tracing::debug!(?peer_id, "dial failed: {error}");
                if let Some(peer) = peer_id.filter(|p| self.mdns_peers.contains_key(p)) {
                    if handshake_failed(&dial_error_text(&error)) {
                        let now = self.now().mono;
                        self.mdns_backoff.failed(peer, now);
                    }
                }
                if matches!(error, DialError::Denied { .. }) {
                    self.stats.admission.connections_denied_out += 1;
                }
                if let (Some(peer), Some(loss)) = (peer_id, loss_of(&error)) {
                    if !self.swarm.is_connected(&peer) {
                        // Kademlia keeps a peer's last address even when it fails; a peer that
                        // cannot be reached leaves the table and the members (it comes back
                        // through mDNS, the rejoin timer, an exchange that heard from it later,
                        // or when it connects to us).
                        let routed = self.swarm.behaviour_mut().kad.remove_peer(&peer);
                        let member = self.members.contains(&peer);
                        if routed.is_some() || member {
                            let addrs = match routed {
                                Some(entry) => entry.node.value.into_vec(),
                                None => self.members.addrs(&peer).to_vec(),
                            };
                            self.lost(peer, loss, addrs);
                            tracing::info!(%peer, "unreachable: dropped from the routing table and the members");
                            self.upkeep_soon();
                        }
                    }
                }
                if let Some(dial) = self.dials.remove(&connection_id) {
                    let reason = psk_hint(dial_error_text(&error), self.config.psk.is_some());
                    let err = Error::Unreachable { addr: dial.addr, reason };
                    dial.purpose.fail(err);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection failed: {error}");
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.stats.admission.connections_denied_in += 1;
                }
            }
            _ => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        if let kad::Event::OutboundQueryProgressed { stats, .. } = &event {
            self.kad_requests += u64::from(stats.num_requests());
        }
        let kad::Event::OutboundQueryProgressed { id, result, step, .. } = event else {
            if let kad::Event::RoutingUpdated { peer, .. } = event {
                tracing::debug!(%peer, "routing table updated");
                self.peers_dirty = true;
                // A new peer may be closer to some keys than their replicas: hand them on.
                self.upkeep_soon();
            }
            return;
        };
        match result {
            QueryResult::GetClosestPeers(result) => {
                let peers: Vec<kad::PeerInfo> = match result {
                    Ok(ok) => ok.peers,
                    // A lookup that ran out of time still yields the peers it reached.
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                match self.lookups.remove(&id) {
                    Some(Lookup::Closest { key, started, reply, .. }) => {
                        let peers = peers.into_iter().map(|p| p.peer_id).collect();
                        let report = self.closest_report(key, peers, started);
                        let _ = reply.send(Ok(report));
                    }
                    Some(other) => {
                        self.lookups.insert(id, other);
                    }
                    None => {}
                }
            }
            QueryResult::Bootstrap(result) => {
                // A bootstrap's first step looks up our own id: after it the routing table holds
                // our neighbourhood, and the members exchange brings the rest of the overlay.
                // libp2p-kad would go on with one lookup per bucket farther out (and runs whole
                // bootstraps of its own, when the table is small and every 5 minutes): each a
                // walk that dials ~20 peers, ~10 per bootstrap, so every newcomer opened ~200
                // connections, and 300 peers in one process ran out of descriptors. Each later
                // step is stopped before it sends anything (`finish` before kad polls it).
                let kad = &mut self.swarm.behaviour_mut().kad;
                if !step.last {
                    if let Some(mut query) = kad.query_mut(&id) {
                        query.finish();
                    }
                } else if self.joins.remove(&id) {
                    // Every route that entered a table of fewer than 20 during the join armed
                    // kad's timer for a bootstrap of its own, another ~20 dials: starting one
                    // disarms it, and this one stops before its first request.
                    if let Ok(quiet) = kad.bootstrap() {
                        if let Some(mut query) = kad.query_mut(&quiet) {
                            query.finish();
                        }
                    }
                }
                if let Err(e) = &result {
                    tracing::debug!("bootstrap query: {e}");
                }
                if let Some(Lookup::Bootstrap { peer, reply, .. }) = self.lookups.remove(&id) {
                    self.joined(peer, reply);
                }
            }
            _ => {}
        }
    }

    fn closest_report(
        &mut self,
        key: String,
        peers: Vec<PeerId>,
        started: std::time::Instant,
    ) -> ClosestReport {
        let local = self.local_peer_id();
        let ranked = placement::rank(&key, peers.into_iter().chain(std::iter::once(local)));
        let mut replicas_left = self.config.replication;
        let peers = ranked
            .into_iter()
            .map(|p| {
                let replica = replicas_left > 0 && self.kv_support.get(&p) != Some(&false);
                if replica {
                    replicas_left -= 1;
                }
                ClosestPeer {
                    peer_id: p,
                    distance_log2: placement::distance_log2(&key, &p),
                    local: p == local,
                    replica,
                }
            })
            .collect();
        ClosestReport { key, peers, elapsed: started.elapsed() }
    }

    /// The lookup of our own id that a bootstrap through `peer` ran is over: answers once
    /// identify told whether the peer serves our Kademlia.
    fn joined(&mut self, peer: PeerId, reply: crate::command::Reply<crate::BootstrapReport>) {
        if self.peer_addrs.contains_key(&peer) || self.no_kad.contains(&peer) {
            self.finish_bootstrap(peer, reply);
        } else {
            let deadline = std::time::Instant::now() + IDENTIFY_WAIT;
            self.bootstraps_awaiting_identify.push((peer, deadline, reply));
        }
    }

    /// Answers a bootstrap from `peer` once its query ran: an error when identify showed the
    /// peer does not serve our Kademlia protocol.
    pub(super) fn finish_bootstrap(
        &mut self,
        peer: PeerId,
        reply: crate::command::Reply<crate::BootstrapReport>,
    ) {
        if self.no_kad.contains(&peer) {
            let _ = reply.send(Err(Error::Unreachable {
                addr: libp2p::Multiaddr::empty().with_p2p(peer).unwrap_or_else(|a| a),
                reason: format!(
                    "connected, but it does not serve Kademlia on {} — check --kad-protocol",
                    self.config.kad_protocol
                ),
            }));
            return;
        }
        let routing_table = self.routing_table_len();
        let _ = reply.send(Ok(crate::BootstrapReport { peer_id: peer, routing_table }));
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        let kv = info.protocols.contains(&KV_PROTOCOL);
        self.kv_support.insert(peer_id, kv);
        if info.protocols.contains(&crate::alive::PROTOCOL) {
            self.swarm.behaviour_mut().alive.expect_probes(peer_id);
        }
        if kv {
            let now = self.now().mono;
            self.members.seen(peer_id, &info.listen_addrs, now);
        } else {
            self.members.remove(&peer_id);
        }
        let speaks_kad = info.protocols.iter().any(|p| p.as_ref() == self.config.kad_protocol);
        if speaks_kad {
            self.no_kad.remove(&peer_id);
            for addr in &info.listen_addrs {
                self.add_route(peer_id, addr.clone());
            }
        } else {
            // mDNS, a bootstrap or a dial may have put it there: it cannot route for us.
            self.no_kad.insert(peer_id);
            if self.swarm.behaviour_mut().kad.remove_peer(&peer_id).is_some() {
                tracing::info!(peer = %peer_id, "does not serve {}: left out of the routing table", self.config.kad_protocol);
            }
        }
        self.peer_addrs.insert(peer_id, info.listen_addrs);
        let waiting = std::mem::take(&mut self.bootstraps_awaiting_identify);
        for (peer, deadline, reply) in waiting {
            if peer == peer_id {
                self.finish_bootstrap(peer, reply);
            } else {
                self.bootstraps_awaiting_identify.push((peer, deadline, reply));
            }
        }
    }

    /// Puts `peer` (or another address of it) into the routing table, unless its bucket is
    /// full of other peers: a full bucket keeps the peers it has (Kademlia prefers long-lived
    /// peers; a dead one is dropped when a ping or dial to it fails, which makes room). Asking
    /// Kademlia to insert it anyway would dial the bucket's oldest entry to test it.
    pub(super) fn add_route(&mut self, peer: PeerId, addr: Multiaddr) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let full = kad.kbucket(peer).is_some_and(|bucket| {
            bucket.num_entries() >= crate::behaviour::KBUCKET_SIZE.get()
                && !bucket.iter().any(|e| *e.node.key.preimage() == peer)
        });
        if full {
            tracing::trace!(%peer, "bucket full: not added to the routing table");
            return;
        }
        kad.add_address(&peer, addr);
        // A route that enters a table of fewer than 20 arms libp2p-kad's automatic bootstrap
        // (a whole walk, ~20 requests, 500 ms later; its setting is for its own tests only).
        // Starting a bootstrap resets that timer, and this one stops before its first request:
        // the members exchange brings the rest of the overlay. (Disarming once after the join
        // was not enough: identify adds routes after it, and a join of a 24-peer overlay
        // sometimes sent 44 requests instead of at most 24.)
        let small =
            kad.kbuckets().map(|b| b.num_entries()).sum::<usize>() < libp2p::kad::K_VALUE.get();
        if small {
            if let Ok(quiet) = kad.bootstrap() {
                if let Some(mut query) = kad.query_mut(&quiet) {
                    query.finish();
                }
            }
        }
    }

    /// A peer that stops answering pings is gone: close the connection and drop it from the
    /// routing table, so `peers` stops listing it and lookups stop waiting for it.
    fn on_alive(&mut self, event: crate::alive::Event) {
        match event.result {
            Ok(rtt) => {
                tracing::trace!(peer = %event.peer, ?rtt, "probe answered");
                self.stats.probes_answered += 1;
                self.rtts.seed(event.peer, rtt);
                let now = self.now().mono;
                self.members.heard(&event.peer, now);
            }
            Err(why) => {
                tracing::info!(peer = %event.peer, "connection dead ({why}): dropping the peer");
                self.swarm.close_connection(event.connection);
                let routed = self.swarm.behaviour_mut().kad.remove_peer(&event.peer);
                if routed.is_some() || self.members.contains(&event.peer) {
                    let addrs = routed.map(|e| e.node.value.into_vec()).unwrap_or_default();
                    self.lost(event.peer, Loss::Silent, addrs);
                }
                // Its keys are one replica short: restore R copies.
                self.upkeep_soon();
            }
        }
    }

    /// mDNS answers are dialed at once (identify then puts peers that serve our Kademlia into
    /// the routing table, and Kademlia bootstraps by itself while the table is small, which
    /// spreads the picture to peers mDNS missed) and kept in `mdns_peers`, which the rejoin
    /// timer redials when a peer fell out of the table. Other libp2p programs on the LAN answer
    /// mDNS too: they never enter the table.
    fn on_mdns(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(found) => {
                for (peer, addr) in found {
                    tracing::debug!(%peer, %addr, "mdns: discovered");
                    let addrs = self.mdns_peers.entry(peer).or_default();
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
                let found: Vec<(PeerId, Vec<libp2p::Multiaddr>)> = self
                    .mdns_peers
                    .iter()
                    .filter(|(p, _)| !self.swarm.is_connected(p))
                    .map(|(p, a)| (*p, a.clone()))
                    .collect();
                for (peer, addrs) in found {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
            mdns::Event::Expired(gone) => {
                for (peer, addr) in gone {
                    tracing::debug!(%peer, %addr, "mdns: expired");
                    if let Some(addrs) = self.mdns_peers.get_mut(&peer) {
                        addrs.retain(|a| a != &addr);
                        if addrs.is_empty() {
                            self.mdns_peers.remove(&peer);
                            self.mdns_backoff.clear(&peer);
                        }
                    }
                }
            }
        }
    }

    /// A members exchange: asks the member [`Members::partner`] names (drawn by the clock's
    /// nanoseconds, as good as random here) for up to [`Members::wanted`] of its members.
    ///
    /// [`Members::partner`]: crate::core::members::Members::partner
    /// [`Members::wanted`]: crate::core::members::Members::wanted
    pub(super) fn exchange_members(&mut self) {
        let draw = self.now().mono.subsec_nanos() as usize;
        let swarm = &self.swarm;
        let connected = |p: &PeerId| swarm.is_connected(p);
        let Some(peer) = self.members.partner(draw, &connected) else { return };
        let request = Request::Members { max: self.members.wanted() };
        let id = self.send_to(peer, request);
        self.requests.insert(id, super::Outbound::Exchange);
    }

    /// A rejoin round: forgets what it learnt of peers neither routed nor connected, saves the
    /// routing table's peers, and dials whom [`membership::rejoin`] names (an empty address
    /// list: the swarm takes the addresses from Kademlia).
    pub(super) fn rejoin(&mut self) {
        let routed: std::collections::HashSet<PeerId> = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
            .collect();
        // Forget what we learnt about peers that are neither routed nor connected.
        let swarm = &self.swarm;
        let keep = |p: &PeerId| routed.contains(p) || swarm.is_connected(p);
        self.kv_support.retain(|p, _| keep(p));
        self.peer_addrs.retain(|p, _| keep(p));
        self.no_kad.retain(|p| keep(p));
        if !routed.is_empty() {
            self.save_peers();
        }
        let now = self.now().mono;
        let swarm = &self.swarm;
        let connected = |p: &PeerId| swarm.is_connected(p);
        let known = membership::Known {
            local: *swarm.local_peer_id(),
            routed: &routed,
            connected: &connected,
            // A peer whose handshake failed (another key) waits out its pause.
            mdns: self
                .mdns_peers
                .iter()
                .filter(|(p, _)| self.mdns_backoff.allows(p, now))
                .map(|(p, a)| (*p, a.clone()))
                .collect(),
            bootstrap: self
                .config
                .bootstrap
                .iter()
                .filter_map(|addr| match super::command::split_p2p(addr) {
                    (transport, Some(peer)) => Some((peer, transport)),
                    _ => None,
                })
                .collect(),
            saved: &self.known_peers,
            keep_connected: self.config.idle_connection_timeout >= KEEP_CONNECTED_MIN_IDLE,
        };
        let mut dials = membership::rejoin(&mut self.suspects, known, now);
        // Warm connections: the members nearest to us stay connected whatever the idle
        // timeout; the ones not connected are dialed, a few a round.
        let warm = self.members.warm(self.config.warm_connections);
        let cold: Vec<membership::Redial> = warm
            .iter()
            .filter(|p| !self.swarm.is_connected(p) && !dials.iter().any(|d| d.peer == **p))
            .take(WARM_DIALS)
            .map(|p| membership::Redial { peer: *p, addrs: self.members.addrs(p).to_vec() })
            .collect();
        dials.extend(cold);
        self.swarm.behaviour_mut().warm.set(warm.into_iter().collect());
        for membership::Redial { peer, addrs } in dials {
            // Not into the routing table yet: identify puts it there once the dial succeeds,
            // so a peer that is still gone does not reappear in `peers`.
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if self.swarm.dial(opts).is_ok() {
                tracing::debug!(%peer, "rejoin: dialing");
            }
        }
    }
}

/// A dial error in words, once: libp2p's own text lists each address tried with its error and
/// that error's source again (`…: : Connection refused (os error 111): Connection refused (os
/// error 111)`); here each attempt is `address: reason` with every part said once.
pub(super) fn dial_error_text(error: &DialError) -> String {
    match error {
        DialError::Transport(attempts) if !attempts.is_empty() => attempts
            .iter()
            .map(|(addr, e)| format!("{addr}: {}", crate::error::chain(e)))
            .collect::<Vec<_>>()
            .join("; "),
        other => crate::error::chain(other),
    }
}

/// `reason` (a dial error's text) with a hint when the connection failed in a handshake, the
/// way it fails between peers with different pre-shared keys: libp2p-pnet's nonce exchange
/// carries no proof of the key, so neither side can tell a wrong key from other garbage. A
/// peer with a key sees its nonce exchange reset (`Handshake error`, libp2p-pnet) or the Noise
/// handshake that follows fail (`Handshake failed`, libp2p-core); a peer without one sees the
/// Noise handshake fail.
/// When the garbage a wrong key makes reads as a long frame, the handshake waits for bytes that
/// never come and the dial ends at the connection timeout instead (about one dial in three on
/// 127.0.0.1): in a private swarm a timeout gets a softer hint.
pub(super) fn psk_hint(reason: String, private: bool) -> String {
    if private && reason.contains("Timeout has been reached") {
        return format!("{reason} — the peer is silent or slow, or uses another --psk key (a handshake with another key can hang until the timeout)");
    }
    if !handshake_failed(&reason) {
        return reason;
    }
    if private {
        format!("{reason} — {}", crate::behaviour::PSK_MISMATCH_HINT)
    } else {
        format!("{reason} — the handshake failed after the connection opened: if the peer runs a private swarm, start this one with the same --psk key")
    }
}

/// Whether a dial error (in words) says the connection opened and its handshake failed: the
/// peer is up, and speaks another key, or another protocol.
pub(super) fn handshake_failed(reason: &str) -> bool {
    reason.contains("Handshake failed") || reason.contains("Handshake error")
}

/// What a failed dial says of the peer: it is gone (refused) or silent (no answer, or another
/// peer answered at its address), or nothing — no address known, a dial denied or aborted
/// here — which is our ignorance, not the peer's silence (a suspect counts as a failed replica
/// for ten minutes).
fn loss_of(error: &DialError) -> Option<Loss> {
    match error {
        DialError::Transport(_) if refused(error) => Some(Loss::Refused),
        DialError::Transport(_) | DialError::WrongPeerId { .. } => Some(Loss::Silent),
        _ => None,
    }
}

/// Whether a dial failed because the remote host refused the connection (an RST: the host is
/// up and nothing listens there), as opposed to no answer at all.
fn refused(error: &DialError) -> bool {
    let DialError::Transport(attempts) = error else { return false };
    // The structural walk finds the io::Error where the wrappers expose it; some of libp2p's
    // upgrade wrappers only show it in their text, so the text is read as well.
    !attempts.is_empty()
        && attempts
            .iter()
            .all(|(_, e)| is_refusal(e) || crate::error::chain(e).contains("onnection refused"))
}

/// Looks through an error and what it wraps for an `io::Error` of kind `ConnectionRefused`.
/// (The transport stack wraps errors in `io::Error`s whose `source()` skips the wrapped error
/// itself, so `get_ref` is followed too.)
fn is_refusal(err: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::ConnectionRefused {
            return true;
        }
        if let Some(inner) = io.get_ref() {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if is_refusal(inner) {
                return true;
            }
        }
    }
    err.source().is_some_and(is_refusal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::transport::TransportError;

    fn dial_error(kind: std::io::ErrorKind) -> DialError {
        let addr: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        DialError::Transport(vec![(addr, TransportError::Other(std::io::Error::from(kind)))])
    }

    #[test]
    fn a_dial_error_says_each_thing_once() {
        let wrapped =
            std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let addr: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let text =
            dial_error_text(&DialError::Transport(vec![(addr, TransportError::Other(wrapped))]));
        assert_eq!(text, "/ip4/127.0.0.1/tcp/1: connection refused");
    }

    #[test]
    fn a_dial_without_an_address_loses_nobody() {
        assert_eq!(loss_of(&DialError::NoAddresses), None);
        assert_eq!(loss_of(&DialError::Aborted), None);
        assert_eq!(
            loss_of(&dial_error(std::io::ErrorKind::ConnectionRefused)),
            Some(Loss::Refused)
        );
        assert_eq!(loss_of(&dial_error(std::io::ErrorKind::TimedOut)), Some(Loss::Silent));
    }

    #[test]
    fn only_a_refusal_says_the_process_is_gone() {
        assert!(refused(&dial_error(std::io::ErrorKind::ConnectionRefused)));
        assert!(!refused(&dial_error(std::io::ErrorKind::TimedOut)));
        assert!(!refused(&DialError::NoAddresses));
        // As the transport stack hands it over: wrapped in another io::Error.
        let wrapped =
            std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let addr: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        assert!(refused(&DialError::Transport(vec![(addr, TransportError::Other(wrapped))])));
    }
}
