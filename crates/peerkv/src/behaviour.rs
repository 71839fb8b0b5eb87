//! The swarm: one behaviour per protocol, composed, and the transport stack under them.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade::Version;
use libp2p::kad::store::MemoryStore;
use libp2p::pnet::PnetConfig;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, identify, identity::Keypair, kad, mdns, memory_connection_limits, noise,
    quic, request_response, tcp, yamux, PeerId, StreamProtocol, Swarm,
};

use crate::admission::ReadBudget;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::protocol::{KvCodec, KV_PROTOCOL};

/// Entries per Kademlia bucket: libp2p-kad's 20. libp2p-kad allocates every one of its 256
/// buckets at this size up front (~320 B an entry: 1.6 MiB a peer before any peer is known).
/// Buckets of 8 saved 0.7 MiB a peer at 300 peers in one process, but then a 10-host LAN's
/// routing table could not hold all 9 others whenever more than 8 fell in one bucket, and the
/// LAN test that waits for every host to route every other failed in 4 of 9 runs.
pub const KBUCKET_SIZE: std::num::NonZeroUsize = libp2p::kad::K_VALUE;
/// Longest wait for a new connection (TCP handshake, Noise, Yamux).
pub const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The share of an operation's deadline one Kademlia lookup, one new connection or one request
/// may use (60 %): a peer that stays silent fails while the operation still has time to ask
/// another one in its place.
pub fn peer_timeout(op_timeout: Duration) -> Duration {
    op_timeout.mul_f64(0.6)
}

/// Identify's protocol version string for peerkv peers.
pub const IDENTIFY_PROTOCOL: &str = "/peerkv/id/1.0.0";

pub use composed::{Behaviour, BehaviourEvent};

mod composed {
    // The derive also generates `BehaviourEvent`, whose variants cannot carry docs.
    #![allow(missing_docs)]
    use super::*;

    /// Every protocol a peerkv peer speaks.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Connection limits: total, per peer, being set up ([`crate::admission`]).
        pub limits: connection_limits::Behaviour,
        /// No new connections while the process uses more than its share of memory.
        pub memory: memory_connection_limits::Behaviour,
        /// Routing: the routing table, bootstrap and closest-peer lookups (its record store is unused).
        pub kad: kad::Behaviour<MemoryStore>,
        /// LAN discovery; `None` with `--no-mdns`.
        pub mdns: Toggle<mdns::tokio::Behaviour>,
        /// The value protocol: Store and Fetch between peers.
        pub kv: request_response::Behaviour<KvCodec>,
        /// Tells peers our listen addresses and protocols, and us theirs.
        pub identify: identify::Behaviour,
        /// Liveness: probes from the end that dialed ([`crate::alive`]).
        pub alive: crate::alive::Behaviour,
        /// Keeps the connections to the members nearest to us open (warm connections).
        pub warm: crate::warm::Behaviour,
    }
}

/// The transports: TCP (Noise, Yamux) and QUIC; with a pre-shared key (`--psk`) TCP alone,
/// each connection encrypted with the key (libp2p-pnet) before Noise. QUIC has its own
/// encryption (TLS 1.3 inside the QUIC handshake) with no place for a pre-shared key, so a
/// private swarm cannot use it: a QUIC listener would let in anyone who knows the protocol.
///
/// A peer with another key (or none) completes the pnet nonce exchange (it carries no proof
/// of the key), and then the two sides read each other's bytes as noise: the dial fails in the
/// protocol negotiation that follows (see [`PSK_MISMATCH_HINT`]).
///
/// With [`Config::link_delay`] (benchmarks and tests) every TCP socket is delayed under
/// everything else, the pre-shared key's encryption included ([`crate::link_delay`]).
fn transport(
    config: &Config,
    key: &Keypair,
) -> std::result::Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>>
{
    // With `link_delay` (benchmarks), every TCP socket is wrapped before anything runs over it;
    // QUIC is not delayed. Without it the wrapper passes every call straight through.
    let delay = config.link_delay.unwrap_or_default();
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .and_then(move |socket, endpoint| crate::link_delay::delayed(socket, &endpoint, delay));
    let noise = noise::Config::new(key)?;
    // As libp2p's SwarmBuilder::with_tcp does: lazy multistream-select (the proposal goes
    // out with the first message), Noise, Yamux.
    let upgrade = Version::V1Lazy;
    Ok(match config.psk {
        None => {
            let tcp = tcp
                .upgrade(upgrade)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
            let quic = quic::tokio::Transport::new(quic::Config::new(key))
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
            tcp.or_transport(quic).map(|either, _| either.into_inner()).boxed()
        }
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(upgrade)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    })
}

/// Added to a dial error in a private swarm when the connection failed where a different key
/// makes it fail (see the private `transport` function).
pub const PSK_MISMATCH_HINT: &str =
    "the handshake failed after the connection opened: the peer likely uses another --psk key, or none";

/// Builds the swarm for `config` with identity `keypair`: TCP (Noise, Yamux) and QUIC, or TCP
/// alone under a pre-shared key (the private `transport` function). The value protocol reads requests within
/// `budget` (the event loop reads its counters).
///
/// # Errors
/// [`Error::Swarm`] when a transport or mDNS cannot start, [`Error::Config`] for a bad
/// Kademlia protocol id.
pub fn build_swarm(
    config: &Config,
    keypair: Keypair,
    budget: ReadBudget,
) -> Result<Swarm<Behaviour>> {
    let admission = &config.admission;
    let kad_protocol = StreamProtocol::try_from_owned(config.kad_protocol.clone())
        .map_err(|e| Error::Config(format!("--kad-protocol {:?}: {e}", config.kad_protocol)))?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| transport(config, key))
        .map_err(|e| Error::Swarm(format!("transport: {e}")))?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(kad_protocol);
            // A lookup (`closest`, bootstrap; puts and gets run none) stops within the share of
            // the deadline a step may use:
            // on timeout it still yields the peers it reached.
            kad_config.set_query_timeout(peer_timeout(config.timeout));
            // Values travel over the value protocol; Kademlia's own record store must not fill
            // up with PUT_VALUE / ADD_PROVIDER from peers (with filtering, nothing is stored
            // unless we store it, and we never do).
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
            // Peers enter the routing table only through identify (the event loop's
            // `add_route`), never by Kademlia on its own: it would also insert peers that do not
            // serve our protocols, and on a full bucket whose oldest entry is merely idle it
            // dials that entry to test it — with short idle timeouts every new connection then
            // opens another one, without end (in a 100-peer overlay with a 10 s idle timeout,
            // ~150 dials/s and 3 MB/s of idle traffic).
            kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
            // No bootstrap every 5 minutes: the members exchange keeps the view of the overlay
            // (`core::members`), and a bootstrap is ~10 walks of ~20 dials each (at 1,000 peers
            // in one process, 3 bootstraps a second).
            kad_config.set_periodic_bootstrap_interval(None);
            kad_config.set_kbucket_size(KBUCKET_SIZE);
            let mut kad =
                kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let mdns = if config.mdns {
                let mdns_config = mdns::Config {
                    query_interval: config.mdns_query_interval,
                    ..mdns::Config::default()
                };
                Some(mdns::tokio::Behaviour::new(mdns_config, peer_id)?)
            } else {
                None
            };
            let kv = request_response::Behaviour::with_codec(
                KvCodec::new(config.max_value_size).with_admission(budget, admission.read_timeout),
                [(KV_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(peer_timeout(config.timeout))
                    .with_max_concurrent_streams(admission.max_streams),
            );
            let limits = connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(admission.max_connections))
                    .with_max_established_per_peer(Some(admission.max_connections_per_peer))
                    .with_max_pending_incoming(Some(admission.max_pending_connections))
                    .with_max_pending_outgoing(Some(admission.max_pending_connections)),
            );
            let memory = memory_connection_limits::Behaviour::with_max_percentage(
                f64::from(admission.max_memory_percent) / 100.0,
            );
            let identify = identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL.to_owned(),
                key.public(),
            ));
            Ok(Behaviour {
                limits,
                memory,
                kad,
                mdns: mdns.into(),
                kv,
                identify,
                alive: crate::alive::Behaviour::new(config.probe_interval),
                warm: crate::warm::Behaviour::new(peer_id),
            })
        })
        .map_err(|e| Error::Swarm(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(config.idle_connection_timeout)
                // A stream's protocol is proposed together with its first message instead of
                // waiting for the remote's confirmation: a request and its answer take one
                // round trip instead of two (libp2p's default, V1, waits). We always propose a
                // single protocol per stream, the case lazy negotiation is made for; a remote
                // that does not serve it refuses the stream, as before.
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .with_connection_timeout(peer_timeout(config.timeout).min(MAX_CONNECTION_TIMEOUT))
        .build();
    Ok(swarm)
}
