//! One handler per command from the [`Node`](crate::Node) handle.

use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

use super::{DialPurpose, EventLoop, Lookup, Outbound, PendingDial, MAX_PENDING_OPS};
use crate::clock::now_ms;
use crate::command::{BootstrapReport, Command, KeyEntry, NodeInfo, Reply, RouteEntry};
use crate::error::Error;

/// Splits `…/p2p/PEERID` into the transport address and the peer id.
pub(crate) fn split_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut transport = addr.clone();
    match transport.pop() {
        Some(Protocol::P2p(peer)) => (transport, Some(peer)),
        _ => (addr.clone(), None),
    }
}

impl EventLoop {
    pub(super) fn handle_command(&mut self, command: Command) {
        match command {
            Command::Put { key, value, ttl, reply } => self.start_put(key, value, ttl, reply),
            Command::Get { key, reply } => self.start_get(key, reply),
            Command::Peers { reply } => {
                let peers = self.peer_summaries();
                let _ = reply.send(Ok(peers));
            }
            Command::Routes { reply } => {
                let routes = self.routes();
                let _ = reply.send(Ok(routes));
            }
            Command::Closest { key, reply } => self.start_closest(key, reply),
            Command::Bootstrap { addr, reply } => self.start_bootstrap(addr, reply),
            Command::Dial { addr, reply } => self.start_dial(addr, reply),
            Command::Info { reply } => {
                let info = self.info();
                let _ = reply.send(Ok(info));
            }
            Command::Keys { reply } => {
                let now = now_ms();
                // An expired record is no longer served, so it is not listed either (upkeep
                // removes it).
                let keys = self
                    .store
                    .iter()
                    .filter(|r| !r.is_expired(now))
                    .map(|r| KeyEntry {
                        key: r.key.clone(),
                        version: r.version,
                        writer: r.writer_id().ok(),
                        size: r.value_len(),
                        deleted: r.is_tombstone(),
                        replica: self.is_replica_of(&r.key),
                        expires_at: r.expires_at,
                    })
                    .collect();
                let _ = reply.send(Ok(keys));
            }
            Command::Stats { reply } => {
                let mut stats = self.stats.clone();
                stats.records = self.store.len();
                stats.tombstones = self.store.iter().filter(|r| r.is_tombstone()).count();
                stats.bytes = self.store.bytes();
                stats.admission.budget = self.budget.counters();
                stats.admission.rate = self.gate.counters();
                stats.admission.rate_tracked_peers = self.gate.tracked();
                let _ = reply.send(Ok(stats));
            }
            Command::Upkeep { reply } => {
                let report = self.upkeep_round();
                let _ = reply.send(Ok(report));
            }
            Command::Request { peer, request, reply } => {
                if self.is_busy() {
                    let _ = reply.send(Err(Error::Busy(self.pending())));
                    return;
                }
                let id = self.swarm.behaviour_mut().kv.send_request(&peer, request);
                self.requests.insert(id, Outbound::Raw(reply));
                self.raw_in_flight += 1;
            }
            Command::WaitListening { reply } => {
                if self.listeners_waiting.is_empty() {
                    let _ = reply.send(Ok(self.dialable_listen_addrs()));
                } else {
                    self.listen_waiters.push(reply);
                }
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; kept total for the match.
                let _ = reply.send(Ok(()));
            }
        }
    }

    pub(super) fn is_busy(&self) -> bool {
        self.pending() >= MAX_PENDING_OPS
    }

    /// The error to answer with when no peer is known at all.
    fn no_peers(&mut self) -> Option<Error> {
        let known = self.routing_table_len();
        if known == 0 && self.swarm.connected_peers().next().is_none() {
            Some(self.no_peers_error(0))
        } else {
            None
        }
    }

    /// [`Error::NoPeers`] with the hints that fit this peer's configuration.
    pub(super) fn no_peers_error(&self, known: usize) -> Error {
        Error::NoPeers { known, mdns: self.config.mdns, bootstrap: self.config.bootstrap.len() }
    }

    fn start_closest(&mut self, key: String, reply: Reply<crate::ClosestReport>) {
        if self.is_busy() {
            let _ = reply.send(Err(Error::Busy(self.pending())));
            return;
        }
        if let Some(e) = self.no_peers() {
            let _ = reply.send(Err(e));
            return;
        }
        let query = self.swarm.behaviour_mut().kad.get_closest_peers(key.as_bytes().to_vec());
        let now = Instant::now();
        self.lookups.insert(
            query,
            Lookup::Closest { key, started: now, deadline: now + self.config.timeout, reply },
        );
    }

    fn start_bootstrap(&mut self, addr: Multiaddr, reply: Reply<BootstrapReport>) {
        if self.is_busy() {
            let _ = reply.send(Err(Error::Busy(self.pending())));
            return;
        }
        if let Err(reason) = self.check_dial_addr(&addr) {
            let _ = reply.send(Err(Error::Unreachable { addr, reason }));
            return;
        }
        let (transport, peer) = split_p2p(&addr);
        let Some(peer) = peer else {
            let _ = reply.send(Err(Error::NoPeerIdInAddr(addr)));
            return;
        };
        if peer == self.local_peer_id() {
            let _ = reply.send(Err(Error::Unreachable {
                addr,
                reason: "that is this peer's own address".into(),
            }));
            return;
        }
        // The address is dialed even when the peer is connected already (through another
        // address): a bootstrap proves the address it was given, and only an address that
        // answered as that peer enters the routing table (on `ConnectionEstablished`).
        let opts = DialOpts::peer_id(peer)
            .addresses(vec![transport])
            .condition(PeerCondition::Always)
            .build();
        self.dial_for(opts, addr, DialPurpose::Bootstrap(peer, reply));
    }

    fn start_dial(&mut self, addr: Multiaddr, reply: Reply<PeerId>) {
        if self.is_busy() {
            let _ = reply.send(Err(Error::Busy(self.pending())));
            return;
        }
        if let Err(reason) = self.check_dial_addr(&addr) {
            let _ = reply.send(Err(Error::Unreachable { addr, reason }));
            return;
        }
        let (transport, peer) = split_p2p(&addr);
        let opts = match peer {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![transport])
                .condition(PeerCondition::Always)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        self.dial_for(opts, addr, DialPurpose::Dial(reply));
    }

    /// Why this peer cannot dial `addr`: a host name, or QUIC in a private swarm.
    fn check_dial_addr(&self, addr: &Multiaddr) -> std::result::Result<(), String> {
        crate::config::check_multiaddr(addr)?;
        if self.config.psk.is_some() && crate::config::is_quic(addr) {
            return Err(crate::config::QUIC_UNDER_PSK.into());
        }
        Ok(())
    }

    fn dial_for(&mut self, opts: DialOpts, addr: Multiaddr, purpose: DialPurpose) {
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(
                    connection,
                    PendingDial { addr, deadline: Instant::now() + self.config.timeout, purpose },
                );
            }
            Err(e) => {
                let err = Error::Unreachable { addr, reason: super::network::dial_error_text(&e) };
                purpose.fail(err);
            }
        }
    }

    /// Runs a Kademlia bootstrap once connected to `peer`.
    pub(super) fn run_bootstrap(&mut self, peer: PeerId, reply: Reply<BootstrapReport>) {
        match self.swarm.behaviour_mut().kad.bootstrap() {
            Ok(query) => {
                self.joins.insert(query);
                self.lookups.insert(
                    query,
                    Lookup::Bootstrap {
                        peer,
                        deadline: Instant::now() + self.config.timeout,
                        reply,
                    },
                );
            }
            Err(_) => {
                // Connected, but the peer is not in the routing table (it does not speak our
                // Kademlia protocol id in server mode).
                let _ = reply.send(Err(Error::Unreachable {
                    addr: Multiaddr::empty().with_p2p(peer).unwrap_or_else(|a| a),
                    reason: format!(
                        "connected, but it does not serve Kademlia on {} — check --kad-protocol",
                        self.config.kad_protocol
                    ),
                }));
            }
        }
    }

    fn routes(&mut self) -> Vec<RouteEntry> {
        let local = self.local_key;
        let mut routes = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                routes.push(RouteEntry {
                    bucket: local.distance(entry.node.key).ilog2().unwrap_or(0),
                    peer_id: *entry.node.key.preimage(),
                    addrs: entry.node.value.iter().cloned().collect(),
                });
            }
        }
        routes.sort_by_key(|r| (r.bucket, r.peer_id.to_base58()));
        routes
    }

    fn info(&mut self) -> NodeInfo {
        NodeInfo {
            peer_id: self.local_peer_id(),
            listen_addrs: self.dialable_listen_addrs(),
            connected_peers: self.swarm.connected_peers().count(),
            connections: self.swarm.network_info().connection_counters().num_established() as usize,
            connections_opened: self.connections_opened,
            lookups_running: self.swarm.behaviour().kad.iter_queries().count(),
            kad_requests: self.kad_requests,
            routing_table: self.routing_table_len(),
            kv_peers: self.kv_support.values().filter(|v| **v).count(),
            members: self.members.len(),
            records: self.store.len(),
            bytes: self.store.bytes(),
            replication: self.config.replication,
            pending_ops: self.ops.len(),
            psk_fingerprint: self.config.psk.map(|k| k.fingerprint().to_string()),
            store_commits: self.store.commits(),
            records_committed: self.store.records_committed(),
            store_commits_failed: self.store.failed_commits(),
            store_writes_queued: self.store.queued(),
        }
    }
}
