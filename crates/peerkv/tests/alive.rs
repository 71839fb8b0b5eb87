//! Liveness probes (`peerkv::alive`): only the end that dialed a connection probes it, and
//! either end drops a connection whose other end went silent without closing it (a host cut off
//! the LAN). The silent peer here is a bare libp2p swarm: it speaks the probe protocol's wire
//! format with raw bytes, then stops.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::attacker::{raw_swarm, Attacker, Raw, RawCodec};
use common::within;
use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::Multiaddr;
use peerkv::{Config, Node};

/// Probes every second: a silent end is judged within 2 s + the 5 s timeout (listener) or two
/// probes of 5 s each (dialer).
const PROBE: Duration = Duration::from_secs(1);

/// Drives `swarm` until its connection closes or `limit` passes; whether it closed. Sends
/// `probes` (one every `PROBE`) first, when given.
async fn until_closed(
    swarm: &mut Attacker,
    peer: libp2p::PeerId,
    mut probes: Vec<Raw>,
    limit: Duration,
) -> bool {
    let end = Instant::now() + limit;
    let mut next = Instant::now();
    loop {
        if Instant::now() >= end {
            return false;
        }
        if !probes.is_empty() && Instant::now() >= next {
            let probe = probes.remove(0);
            swarm.behaviour_mut().send_request(&peer, probe);
            next = Instant::now() + PROBE;
        }
        match tokio::time::timeout(Duration::from_millis(100), swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionClosed { .. }) => return true,
            Ok(SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) => assert_eq!(response, vec![1u8], "the probe was echoed"),
            _ => {}
        }
    }
}

async fn listening(swarm: &mut Attacker) -> Multiaddr {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address.with_p2p(*swarm.local_peer_id()).unwrap();
        }
    }
}

/// The bare peer dials and probes three times (each echoed), then goes silent with the
/// connection open: the peerkv peer, which never probes a connection it did not dial, closes
/// it once the probes stopped for two intervals and a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_that_was_dialed_drops_a_peer_whose_probes_stopped() {
    let node = Node::spawn(Config { probe_interval: PROBE, ..Config::local() }).await.unwrap();
    let addr = within("addrs", node.listen_addrs()).await.unwrap()[0].clone();
    let codec = RawCodec::default();
    let probed = codec.inbound.clone();
    let mut swarm = raw_swarm(peerkv::alive::PROTOCOL, ProtocolSupport::Full, codec);
    let peer = node.peer_id();
    swarm.dial(addr).unwrap();
    let probe = raw_probe();
    let started = Instant::now();
    let closed = until_closed(
        &mut swarm,
        peer,
        vec![probe.clone(), probe.clone(), probe],
        Duration::from_secs(30),
    )
    .await;
    assert!(closed, "the silent peer was never dropped");
    let took = started.elapsed();
    println!("dropped {:.1} s after the first of three probes", took.as_secs_f64());
    assert!(took >= PROBE * 2, "dropped while it still probed: {took:?}");
    assert_eq!(probed.load(Ordering::Relaxed), 0, "the end that was dialed probed");
    node.shutdown().await.unwrap();
}

/// The peerkv peer dials a bare peer that takes probe streams and never echoes: two probes
/// fail, and it closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_that_dialed_drops_a_peer_that_does_not_echo() {
    let node = Node::spawn(Config { probe_interval: PROBE, ..Config::local() }).await.unwrap();
    let codec = RawCodec::default();
    let probed = codec.inbound.clone();
    let mut swarm = raw_swarm(peerkv::alive::PROTOCOL, ProtocolSupport::Full, codec);
    let addr = listening(&mut swarm).await;
    let dialing = node.clone();
    let dial = tokio::spawn(async move { dialing.dial(addr).await });
    let closed =
        until_closed(&mut swarm, node.peer_id(), Vec::new(), Duration::from_secs(30)).await;
    assert!(dial.await.unwrap().is_ok(), "the dial failed");
    assert!(closed, "a peer that never echoed was never dropped");
    assert!(probed.load(Ordering::Relaxed) >= 2, "dropped after fewer than two probes");
    node.shutdown().await.unwrap();
}

fn raw_probe() -> Raw {
    Raw::from_bytes(vec![1u8])
}
