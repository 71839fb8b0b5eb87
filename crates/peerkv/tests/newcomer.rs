//! Defects a new user hit (issue 10), each pinned by a test of the library: a port in use, a
//! bootstrap that must prove its address, quorums larger than the replicas there are, hints
//! that fit the configuration, a restart whose known peers are down. In-process, on 127.0.0.1,
//! mDNS off; every wait has a deadline and no test asserts a time.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{cluster, local, shutdown, wait_for, within, WAIT};
use peerkv::{Config, Error, Multiaddr, Node};

/// A loopback TCP port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

/// Defect 1: two peers could listen on one TCP port (SO_REUSEPORT), and dials to it then
/// reached either. A port in use is an error that names the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_refused_with_the_port_named() {
    let first = within("spawn", Node::spawn(local())).await.unwrap();
    let addr = within("listen", first.listen_addrs()).await.unwrap()[0].clone();
    let port = tcp_port(&addr).unwrap();
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let second = within("spawn", Node::spawn(Config { listen: vec![listen], ..local() })).await;
    match second {
        Err(e @ Error::Listen { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("port {port}")), "{text}");
            assert!(text.contains("in use"), "{text}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(node) => {
            node.shutdown().await.unwrap();
            panic!("a second peer listened on port {port}, which the first holds");
        }
    }
    shutdown(&[first]).await;
}

/// Defect 10: an error from listening carried no reason (`cannot listen on …: `).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_error_says_why() {
    // An address this host does not have.
    let listen: Multiaddr = "/ip4/192.0.2.1/tcp/0".parse().unwrap();
    let err = within("spawn", Node::spawn(Config { listen: vec![listen], ..local() }))
        .await
        .expect_err("192.0.2.1 is not an address of this host");
    let text = err.to_string();
    let reason = text.rsplit_once("192.0.2.1/tcp/0: ").map(|(_, r)| r.trim()).unwrap_or("");
    assert!(!reason.is_empty(), "no reason given: {text:?}");
}

/// Defect 5: `bootstrap` to a bogus address of a peer that is connected already answered ok
/// and put the bogus address into the routing table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_proves_the_address_not_the_peer() {
    let nodes = cluster(2, |_| local()).await;
    let a = nodes[0].peer_id();
    let bogus: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{a}", closed_port()).parse().unwrap();
    let result = within("bootstrap", nodes[1].bootstrap(bogus.clone())).await;
    assert!(matches!(result, Err(Error::Unreachable { .. })), "{result:?}");
    // Defect 10: the reason is said once (libp2p's text repeated it).
    let text = result.unwrap_err().to_string();
    assert_eq!(text.matches("onnection refused").count(), 1, "{text}");
    let port = tcp_port(&bogus).unwrap();
    let routes = nodes[1].routes().await.unwrap();
    for route in routes.iter().filter(|r| r.peer_id == a) {
        assert!(
            route.addrs.iter().all(|addr| tcp_port(addr) != Some(port)),
            "the unproven address entered the routing table: {route:?}"
        );
    }
    shutdown(&nodes).await;
}

/// Defect 4: `--write-quorum 5` with fewer than 5 replicas failed the put yet left the value
/// stored. W and Q are capped by the replicas there are, as R is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorums_above_the_replicas_there_are_are_capped() {
    let config =
        || Config { replication: 5, write_quorum: Some(5), read_quorum: Some(5), ..local() };
    let nodes = cluster(4, |_| config()).await;
    common::full_tables(&nodes).await;
    let put = within("put", nodes[1].put("capped", "value")).await.expect("put");
    assert_eq!((put.replicas, put.needed, put.acked), (4, 4, 4), "{put:?}");
    let got = within("get", nodes[2].get("capped")).await.expect("get");
    assert_eq!(got.value(), Some(&b"value"[..]));
    assert_eq!(got.needed, 4);
    shutdown(&nodes).await;
}

/// Defect 9: a lone peer's hint named mDNS under `--no-mdns` and did not name the REPL's
/// `bootstrap` command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_no_peers_hint_fits_the_configuration() {
    let alone = within("spawn", Node::spawn(local())).await.unwrap();
    let err = within("put", alone.put("k", "v")).await.expect_err("alone");
    let text = err.to_string();
    assert!(matches!(err, Error::NoPeers { .. }), "{text}");
    assert!(!text.contains("mDNS"), "mDNS is off: {text}");
    assert!(text.contains("bootstrap MULTIADDR"), "{text}");
    shutdown(&[alone]).await;

    // With a --bootstrap that failed, the hint says so instead of "start with --bootstrap".
    let dead: Multiaddr =
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", closed_port(), peerkv::PeerId::random())
            .parse()
            .unwrap();
    let lonely =
        within("spawn", Node::spawn(Config { bootstrap: vec![dead], ..local() })).await.unwrap();
    let text = within("put", lonely.put("k", "v")).await.expect_err("alone").to_string();
    assert!(!text.contains("start with --bootstrap"), "{text}");
    assert!(text.contains("did not answer"), "{text}");
    shutdown(&[lonely]).await;
}

/// Defect 7: a restart whose known peers are all down blocked start-up until each dial to
/// them had failed before it showed a prompt. Start-up now returns at once and the rejoin goes
/// on in the background. The known peer's port is taken by a listener that accepts and never
/// answers, so a dial there fails only at the connection timeout (5 s): when `spawn` returns,
/// that dial must still be open (a start-up that waited for it finds it closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_whose_peers_are_down_starts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let persistent = || Config { data_dir: Some(dir.path().to_path_buf()), ..local() };
    // A first run that knew a peer which then went away…
    let other = within("spawn", Node::spawn(local())).await.unwrap();
    let addr = within("listen", other.listen_addrs()).await.unwrap()[0].clone();
    let port = tcp_port(&addr).unwrap();
    let node = within("spawn", Node::spawn(Config { bootstrap: vec![addr], ..persistent() }))
        .await
        .unwrap();
    let routed =
        wait_for(WAIT, || async { node.info().await.is_ok_and(|i| i.routing_table == 1) }).await;
    assert!(routed, "the first run never routed to the other peer");
    // A shutdown saves the routing table's peers.
    node.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
    // …and a silent process took its port.
    let silent = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    silent.set_nonblocking(true).unwrap();
    // The restart.
    let restarted = within("spawn", Node::spawn(persistent())).await.unwrap();
    let mut accepted = Vec::new();
    while let Ok((stream, _)) = silent.accept() {
        accepted.push(stream);
    }
    for stream in &mut accepted {
        use std::io::Read;
        stream.set_nonblocking(true).unwrap();
        // Whatever the dialer sent, then either "no more yet" (open) or end of stream (closed).
        let mut buf = [0u8; 4096];
        let closed = loop {
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        assert!(!closed, "start-up waited until its dial to the silent peer timed out");
    }
    // The rejoin did try the silent peer, in the background.
    let tried =
        accepted.len() + usize::from(wait_for(WAIT, || async { silent.accept().is_ok() }).await);
    assert!(tried > 0, "the restarted peer never dialed the peer it knew");
    shutdown(&[restarted]).await;
}

/// Defect 12: `/dns4` addresses failed without saying they are not supported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_addresses_are_refused_in_words() {
    let node = within("spawn", Node::spawn(local())).await.unwrap();
    let addr: Multiaddr =
        format!("/dns4/localhost/tcp/{}/p2p/{}", closed_port(), peerkv::PeerId::random())
            .parse()
            .unwrap();
    let text = within("bootstrap", node.bootstrap(addr)).await.expect_err("dns").to_string();
    assert!(text.contains("not supported") && text.contains("/ip4"), "{text}");
    shutdown(&[node]).await;
}

/// Defect 11: `del nosuchkey` said `deleted`; the report now says whether there was a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_says_whether_there_was_anything_to_delete() {
    let nodes = cluster(3, |_| local()).await;
    let missing = within("del", nodes[0].delete("never-written")).await.expect("del");
    assert!(!missing.existed, "{missing:?}");
    within("put", nodes[1].put("written", "v")).await.expect("put");
    let present = within("del", nodes[2].delete("written")).await.expect("del");
    assert!(present.existed, "{present:?}");
    let again = within("del", nodes[0].delete("written")).await.expect("del");
    assert!(!again.existed, "a tombstone is not a value: {again:?}");
    shutdown(&nodes).await;
}

/// Defect 11: `keys` listed records whose time to live had passed (they are never served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_leaves_out_expired_records() {
    let config = || Config { upkeep_interval: Duration::from_secs(3600), ..local() };
    let nodes = cluster(3, |_| config()).await;
    within("put", nodes[0].put_with_ttl("brief", "v", Some(Duration::from_secs(1))))
        .await
        .expect("put");
    let listed = |n: &Node| {
        let n = n.clone();
        async move { n.keys().await.unwrap().into_iter().find(|k| k.key == "brief") }
    };
    let mut expires_at = None;
    for node in &nodes {
        if let Some(entry) = listed(node).await {
            expires_at = entry.expires_at;
        }
    }
    let expires_at = expires_at.expect("no peer lists the key it just stored");
    // Until its expiry has passed on this machine's clock (a condition, not a measured time).
    let passed = wait_for(WAIT, || async { peerkv::clock::now_ms() > expires_at }).await;
    assert!(passed);
    for node in &nodes {
        assert!(listed(node).await.is_none(), "an expired record is still listed");
    }
    shutdown(&nodes).await;
}

/// Issue 12: a join is one walk to our own neighbourhood. libp2p-kad's bootstrap went on with a
/// walk per bucket farther out and then ran a whole bootstrap of its own (its routing table had
/// been under 20 peers): ~200 dials per newcomer at 300 peers, and 300 peers in one process ran
/// out of descriptors. One walk asks each peer at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_one_walk() {
    let nodes = cluster(24, |_| local()).await;
    let addr = within("listen", nodes[5].listen_addrs()).await.unwrap()[0].clone();
    let newcomer = within("spawn", Node::spawn(local())).await.unwrap();
    within("bootstrap", newcomer.bootstrap(addr)).await.expect("bootstrap");
    // Whatever else a bootstrap would run, runs now; wait until no lookup is left.
    let idle = wait_for(WAIT, || async {
        newcomer.info().await.map(|i| i.lookups_running == 0).unwrap_or(false)
    })
    .await;
    assert!(idle, "lookups still running");
    // kad's automatic bootstrap waits 500 ms after the last route that entered a small table.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let info = newcomer.info().await.unwrap();
    assert_eq!(info.lookups_running, 0, "a lookup started after the join");
    assert!(
        info.kad_requests <= nodes.len() as u64,
        "a join of a {}-peer overlay sent {} Kademlia requests",
        nodes.len(),
        info.kad_requests
    );
    shutdown(&nodes).await;
    let _ = newcomer.shutdown().await;
}
