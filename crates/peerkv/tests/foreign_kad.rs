//! A foreign Kademlia peer in a peerkv overlay: a bare libp2p swarm that serves our Kademlia
//! protocol id (`/peerkv/kad/1.0.0`) and identify, but not the value protocol
//! (`/peerkv/kv/1.0.0`).
//!
//! The requirement: such a peer may sit in the routing table and stays useful for routing, is
//! never chosen as a replica (identify tells which protocols it speaks), and never makes a put
//! fail.

// The shared helpers fail a test with `expect`/`panic!` outside `#[test]` functions, where
// clippy.toml's allow-*-in-tests does not reach.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cluster, local, shutdown, wait_for, within, AbortOnDrop, WAIT};
use futures::StreamExt;
use libp2p::kad::store::MemoryStore;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, kad, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use peerkv::{Config, Node};

/// Our Kademlia protocol id, spoken by the foreign peer too.
const KAD_PROTOCOL: &str = "/peerkv/kad/1.0.0";

/// The value protocol, which the foreign peer does not speak.
const KV_PROTOCOL: &str = "/peerkv/kv/1.0.0";

/// The longest the foreign peer's task runs, whatever happens to the test.
const FOREIGN_LIFETIME: Duration = Duration::from_secs(60);

/// Replication factor R of the cluster (peerkv's default).
const R: usize = 5;

/// Keys written.
const KEYS: usize = 20;

/// What another Kademlia implementation runs: Kademlia and identify, nothing of peerkv's own.
#[derive(NetworkBehaviour)]
struct Foreign {
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
}

/// What the foreign peer's task lets the test observe.
#[derive(Default)]
struct Observed {
    /// Kademlia `FIND_NODE` requests served: the peer is used for routing.
    find_node: AtomicUsize,
    /// Peers in its own routing table.
    routing_table: AtomicUsize,
}

fn foreign_swarm() -> Result<Swarm<Foreign>, Box<dyn std::error::Error>> {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
            let mut kad =
                kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
            // Without a confirmed external address Kademlia would stay a client and not
            // announce the protocol; the foreign peer is a server like any DHT node.
            kad.set_mode(Some(kad::Mode::Server));
            let identify = identify::Behaviour::new(identify::Config::new(
                "/other-kad/0.1.0".to_owned(),
                key.public(),
            ));
            Foreign { kad, identify }
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(FOREIGN_LIFETIME))
        .build();
    Ok(swarm)
}

/// Listens on 127.0.0.1 and returns the dialable address (`…/p2p/PEERID`).
async fn listen(swarm: &mut Swarm<Foreign>) -> Result<Multiaddr, Box<dyn std::error::Error>> {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            let peer = *swarm.local_peer_id();
            return address
                .with_p2p(peer)
                .map_err(|a| format!("{a} names another peer than {peer}").into());
        }
    }
}

/// Drives the foreign peer like a typical Kademlia node: peers that identify as speaking our
/// Kademlia protocol have their listen addresses added to the routing table.
async fn run_foreign(mut swarm: Swarm<Foreign>, observed: Arc<Observed>) {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(ForeignEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) => {
                for addr in info.listen_addrs {
                    swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(ForeignEvent::Kad(kad::Event::InboundRequest {
                request: kad::InboundRequest::FindNode { .. },
            })) => {
                observed.find_node.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        let table = swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum();
        observed.routing_table.store(table, Ordering::SeqCst);
    }
}

/// Whether `node` has `peer` in its routing table, known (by identify) not to speak the value
/// protocol.
async fn routes_as_foreign(node: &Node, peer: PeerId) -> bool {
    node.peers().await.is_ok_and(|peers| {
        peers.iter().any(|p| p.peer_id == peer && p.routable && p.kv == Some(false))
    })
}

/// Whether `node` has every one of `peers` (other than itself) in its routing table.
async fn routes_to_all(node: &Node, peers: &[PeerId]) -> bool {
    node.routes().await.is_ok_and(|routes| {
        peers
            .iter()
            .filter(|p| **p != node.peer_id())
            .all(|p| routes.iter().any(|r| r.peer_id == *p))
    })
}

/// A foreign Kademlia peer routes for the cluster (a new peer joins through it alone), is
/// never a replica, and every put and get succeeds around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_kademlia_peer_routes_but_never_holds_values() {
    let mut nodes = cluster(4, |_| local()).await;

    // The foreign peer: listening on loopback, joined to node 0 by a Kademlia bootstrap.
    let mut swarm = foreign_swarm().expect("the foreign swarm");
    let foreign = *swarm.local_peer_id();
    let foreign_addr =
        within("foreign listen", listen(&mut swarm)).await.expect("the foreign peer listens");
    let node0 = within("listen", nodes[0].listen_addrs()).await.expect("addrs")[0].clone();
    let mut node0_transport = node0.clone();
    node0_transport.pop();
    swarm.behaviour_mut().kad.add_address(&nodes[0].peer_id(), node0_transport);
    swarm.behaviour_mut().kad.bootstrap().expect("node 0 is known");
    let observed = Arc::new(Observed::default());
    let _task = AbortOnDrop(tokio::spawn({
        let observed = observed.clone();
        async move {
            let _ = tokio::time::timeout(FOREIGN_LIFETIME, run_foreign(swarm, observed)).await;
        }
    }));

    // The other cluster nodes dial it.
    for node in &nodes[1..] {
        let peer =
            within("dial", node.dial(foreign_addr.clone())).await.expect("dial the foreign peer");
        assert_eq!(peer, foreign);
    }
    for (i, node) in nodes.iter().enumerate() {
        let ok = wait_for(WAIT, || routes_as_foreign(node, foreign)).await;
        assert!(ok, "node {i} never routed to the foreign peer as kv: Some(false)");
    }
    let ok =
        wait_for(WAIT, || async { observed.routing_table.load(Ordering::SeqCst) >= nodes.len() })
            .await;
    assert!(ok, "the foreign peer never learnt the cluster");

    // Useful for routing: a new peerkv peer that knows only the foreign peer finds the cluster
    // through it.
    let late =
        within("spawn", Node::spawn(Config { bootstrap: vec![foreign_addr.clone()], ..local() }))
            .await
            .expect("spawn the late peer");
    nodes.push(late);
    let mut everyone: Vec<PeerId> = nodes.iter().map(Node::peer_id).collect();
    everyone.push(foreign);
    for (i, node) in nodes.iter().enumerate() {
        let ok = wait_for(WAIT, || routes_to_all(node, &everyone)).await;
        assert!(ok, "node {i} never had every peer in its routing table");
        let ok = wait_for(WAIT, || routes_as_foreign(node, foreign)).await;
        assert!(ok, "node {i} never saw that the foreign peer lacks {KV_PROTOCOL}");
    }
    let kv_peers: Vec<PeerId> = nodes.iter().map(Node::peer_id).collect();
    assert_eq!(kv_peers.len(), R, "the test wants exactly R value peers");
    let find_node_before = observed.find_node.load(Ordering::SeqCst);

    // Puts from every peerkv node: all succeed, the foreign peer never holds a replica.
    let mut foreign_ranked_within_r = 0;
    for k in 0..KEYS {
        let writer = &nodes[k % nodes.len()];
        let key = format!("foreign-{k}");
        let value = format!("value {k}");
        let put = within("put", writer.put(key.clone(), value.clone()))
            .await
            .unwrap_or_else(|e| panic!("put {key} from node {}: {e}", k % nodes.len()));
        assert_eq!(put.replicas, R, "{put:?}");
        assert!(put.acked >= put.needed, "{put:?}");
        assert!(!put.stored_on.contains(&foreign), "the foreign peer acknowledged {key}: {put:?}");
        assert!(put.stored_on.iter().all(|p| kv_peers.contains(p)), "{put:?}");

        let asker = &nodes[(k + 1) % nodes.len()];
        let closest = within("closest", asker.closest(key.clone())).await.expect("closest");
        let position = closest.peers.iter().position(|p| p.peer_id == foreign);
        let position = position
            .unwrap_or_else(|| panic!("lookup of {key} missed the foreign peer: {closest:?}"));
        if position < R {
            foreign_ranked_within_r += 1;
        }
        assert!(
            !closest.peers[position].replica,
            "the foreign peer marked a replica of {key}: {closest:?}"
        );
        let mut replicas: Vec<PeerId> =
            closest.peers.iter().filter(|p| p.replica).map(|p| p.peer_id).collect();
        replicas.sort();
        let mut expected = kv_peers.clone();
        expected.sort();
        assert_eq!(replicas, expected, "replicas of {key}: {closest:?}");
    }
    // Ranked by distance alone, the foreign peer is among the R nearest for most keys: the
    // exclusion above was exercised, not vacuous.
    assert!(
        foreign_ranked_within_r > 0,
        "the foreign peer was never among the {R} nearest of any key"
    );

    // With R value peers, each is a replica of every key: had the foreign peer taken a replica
    // slot, one value peer would have been left out (a spare is asked only while the quorum is
    // still open). Checked before any get, whose read repair could fill the gap.
    for (i, node) in nodes.iter().enumerate() {
        let ok = wait_for(WAIT, || async {
            node.keys().await.is_ok_and(|keys| {
                (0..KEYS).all(|k| keys.iter().any(|e| e.key == format!("foreign-{k}")))
            })
        })
        .await;
        assert!(ok, "node {i} never held every key it is a replica of");
    }

    // Every node reads every key back.
    for k in 0..KEYS {
        let key = format!("foreign-{k}");
        let value = format!("value {k}");
        for (i, reader) in nodes.iter().enumerate() {
            let got = within("get", reader.get(key.clone()))
                .await
                .unwrap_or_else(|e| panic!("get {key} from node {i}: {e}"));
            assert_eq!(got.value(), Some(value.as_bytes()), "node {i} read {key}");
        }
    }

    // Every lookup above (puts, `closest`, gets: 7 × KEYS) asked the foreign peer too: with six
    // peers in all, it is among the K = 20 closest of every key. At least one per put is asked.
    let find_node_after = observed.find_node.load(Ordering::SeqCst);
    assert!(
        find_node_after - find_node_before >= KEYS,
        "the foreign peer served too few lookups ({find_node_before} FIND_NODE before, {find_node_after} after)"
    );
    println!(
        "foreign peer: {} FIND_NODE served during {KEYS} puts, {KEYS} lookups and {} gets; \
         among the {R} nearest of {foreign_ranked_within_r} of {KEYS} keys",
        find_node_after - find_node_before,
        KEYS * nodes.len()
    );
    shutdown(&nodes).await;
}
