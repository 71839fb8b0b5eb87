//! A replica whose connection closes under a request: the request is sent again (once) on a new
//! connection instead of failing the replica.
//!
//! Connections that carried nothing for the idle timeout close, and a request sent just then
//! meets the close ("connection closed before a response was received"). The stand-in here is a
//! bare libp2p swarm that serves peerkv's Kademlia and value protocols and closes the connection
//! on every other Fetch or Store it receives from each peer, answering the ones in between.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{cluster, shutdown, wait_for, within, AbortOnDrop, WAIT};
use futures::StreamExt;
use libp2p::kad::store::MemoryStore;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, kad, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use peerkv::protocol::{KvCodec, KV_PROTOCOL};
use peerkv::{Config, Node, Record, Request, Response};

/// The longest the flaky peer's task runs, whatever happens to the test.
const LIFETIME: Duration = Duration::from_secs(90);

#[derive(NetworkBehaviour)]
struct Flaky {
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
    kv: request_response::Behaviour<KvCodec>,
}

fn flaky_swarm() -> Result<Swarm<Flaky>, Box<dyn std::error::Error>> {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let kad_config = kad::Config::new(StreamProtocol::new("/peerkv/kad/1.0.0"));
            let mut kad =
                kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let identify = identify::Behaviour::new(identify::Config::new(
                peerkv::behaviour::IDENTIFY_PROTOCOL.to_owned(),
                key.public(),
            ));
            let kv = request_response::Behaviour::with_codec(
                KvCodec::new(peerkv::config::DEFAULT_MAX_VALUE_SIZE),
                [(KV_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            );
            Flaky { kad, identify, kv }
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(LIFETIME))
        .build();
    Ok(swarm)
}

async fn listen(swarm: &mut Swarm<Flaky>) -> Result<Multiaddr, Box<dyn std::error::Error>> {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            let peer = *swarm.local_peer_id();
            return address.with_p2p(peer).map_err(|a| format!("{a} names another peer").into());
        }
    }
}

/// Serves Fetch and Store like a replica, except that each peer's 1st, 3rd, 5th… of them
/// closes the connection it came on, unanswered. Anything else is refused.
async fn run_flaky(mut swarm: Swarm<Flaky>) {
    let mut held: HashMap<String, Record> = HashMap::new();
    let mut seen: HashMap<PeerId, usize> = HashMap::new();
    loop {
        let SwarmEvent::Behaviour(FlakyEvent::Kv(request_response::Event::Message {
            peer,
            connection_id,
            message: request_response::Message::Request { request, channel, .. },
        })) = swarm.select_next_some().await
        else {
            continue;
        };
        let response = match request {
            Request::Fetch { .. } | Request::Store { .. } => {
                let count = seen.entry(peer).or_default();
                *count += 1;
                if *count % 2 == 1 {
                    swarm.close_connection(connection_id);
                    continue;
                }
                match request {
                    Request::Fetch { key, .. } => Response::Found {
                        record: held.get(&key).cloned(),
                        near: Vec::new(),
                        down: Vec::new(),
                    },
                    Request::Store { record } => {
                        let version = record.version;
                        held.insert(record.key.clone(), record);
                        Response::Stored { version }
                    }
                    _ => continue,
                }
            }
            _ => Response::Rejected { reason: "not served here".into() },
        };
        let _ = swarm.behaviour_mut().kv.send_response(channel, response);
    }
}

async fn knows_as_replica(node: &Node, peer: PeerId) -> bool {
    node.peers().await.is_ok_and(|peers| {
        peers.iter().any(|p| p.peer_id == peer && p.routable && p.kv == Some(true))
    })
}

/// Two peerkv peers and the flaky one; gets need all three answers (Q = 3). Without the second
/// try the flaky peer's first answer never comes and the get cannot reach its quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_connection_closed_is_sent_again() {
    let nodes = cluster(2, |_| Config { read_quorum: Some(3), ..Config::local() }).await;
    let mut swarm = flaky_swarm().expect("the flaky swarm");
    let flaky = *swarm.local_peer_id();
    let addr = within("listen", listen(&mut swarm)).await.expect("the flaky peer listens");
    let _task = AbortOnDrop(tokio::spawn(async move {
        let _ = tokio::time::timeout(LIFETIME, run_flaky(swarm)).await;
    }));
    for node in &nodes {
        let peer = within("dial", node.dial(addr.clone())).await.expect("dial the flaky peer");
        assert_eq!(peer, flaky);
    }
    for (i, node) in nodes.iter().enumerate() {
        let ok = wait_for(WAIT, || knows_as_replica(node, flaky)).await;
        assert!(ok, "node {i} never took the flaky peer for a value-protocol peer");
    }

    let put = within("put", nodes[0].put("flaky-key", "still there")).await.expect("put");
    assert!(put.acked >= 2, "{put:?}");
    let got = within("get", nodes[1].get("flaky-key")).await.expect("get with Q = 3");
    assert_eq!(got.value(), Some(&b"still there"[..]));
    assert_eq!(got.replies, 3, "{got:?}");
    let stats = within("stats", nodes[1].stats()).await.expect("stats");
    assert!(stats.requests_resent >= 1, "the getter never sent a request again: {stats:?}");
    let stats = within("stats", nodes[0].stats()).await.expect("stats");
    assert!(stats.requests_resent >= 1, "the putter never sent a request again: {stats:?}");
    shutdown(&nodes).await;
}
