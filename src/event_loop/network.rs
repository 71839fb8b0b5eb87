//! Swarm events: Kademlia query results, identify, mDNS, connections and listeners.

use libp2p::kad::{self, QueryResult};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, mdns, PeerId};

use super::{DialPurpose, EventLoop, Lookup};
use crate::behaviour::BehaviourEvent;
use crate::command::{ClosestPeer, ClosestReport};
use crate::error::Error;
use crate::placement;
use crate::protocol::KV_PROTOCOL;

impl EventLoop {
    pub(super) fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kv(event)) => self.on_kv(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(event)) => self.on_mdns(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
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
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                tracing::warn!(?listener_id, ?reason, "listener closed");
                if self.listeners_waiting.remove(&listener_id) && self.listeners_waiting.is_empty()
                {
                    self.answer_listen_waiters();
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                tracing::warn!(?listener_id, "listener error: {error}");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                if let Some(dial) = self.dials.remove(&connection_id) {
                    match dial.purpose {
                        DialPurpose::Dial(reply) => {
                            let _ = reply.send(Ok(peer_id));
                        }
                        DialPurpose::Bootstrap(peer, reply) => {
                            if peer == peer_id {
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
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(?peer_id, "dial failed: {error}");
                if let Some(dial) = self.dials.remove(&connection_id) {
                    if let DialPurpose::Bootstrap(peer, _) = &dial.purpose {
                        // Do not keep an address that never answered in the routing table.
                        let (transport, _) = super::command::split_p2p(&dial.addr);
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .remove_address(peer, &transport);
                    }
                    let err = Error::Unreachable {
                        addr: dial.addr,
                        reason: error.to_string(),
                    };
                    match dial.purpose {
                        DialPurpose::Dial(reply) => {
                            let _ = reply.send(Err(err));
                        }
                        DialPurpose::Bootstrap(_, reply) => {
                            let _ = reply.send(Err(err));
                        }
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection failed: {error}");
            }
            _ => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            if let kad::Event::RoutingUpdated { peer, .. } = event {
                tracing::debug!(%peer, "routing table updated");
            }
            return;
        };
        match result {
            QueryResult::GetClosestPeers(result) => {
                let peers: Vec<PeerId> = match result {
                    Ok(ok) => ok.peers.into_iter().map(|p| p.peer_id).collect(),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => {
                        peers.into_iter().map(|p| p.peer_id).collect()
                    }
                };
                match self.lookups.remove(&id) {
                    Some(Lookup::Op(op)) => self.lookup_done(op, peers),
                    Some(Lookup::Closest {
                        key,
                        started,
                        reply,
                        ..
                    }) => {
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
                if !step.last {
                    return;
                }
                if let Err(e) = &result {
                    tracing::debug!("bootstrap query: {e}");
                }
                if let Some(Lookup::Bootstrap { peer, reply, .. }) = self.lookups.remove(&id) {
                    let routing_table = self.routing_table_len();
                    let _ = reply.send(Ok(crate::BootstrapReport {
                        peer_id: peer,
                        routing_table,
                    }));
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
        ClosestReport {
            key,
            peers,
            elapsed: started.elapsed(),
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        let kv = info.protocols.contains(&KV_PROTOCOL);
        self.kv_support.insert(peer_id, kv);
        let speaks_kad = info
            .protocols
            .iter()
            .any(|p| p.as_ref() == self.config.kad_protocol);
        if speaks_kad {
            for addr in &info.listen_addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, addr.clone());
            }
        }
        self.peer_addrs.insert(peer_id, info.listen_addrs);
    }

    fn on_mdns(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(found) => {
                let was_empty = self.routing_table_len() == 0;
                for (peer, addr) in found {
                    tracing::debug!(%peer, %addr, "mdns: discovered");
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
                if was_empty {
                    // Learn the rest of the overlay from the first neighbours found.
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            mdns::Event::Expired(gone) => {
                for (peer, addr) in gone {
                    tracing::debug!(%peer, %addr, "mdns: expired");
                }
            }
        }
    }
}
