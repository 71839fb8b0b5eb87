//! A private swarm (`Config::psk`, `--psk`): insiders with the same key put and get; a peer
//! without the key, or with another one, cannot connect, and the dial error says why. In-process
//! on 127.0.0.1, mDNS off; every wait has a deadline.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::{cluster, local, shutdown, within};
use libp2p::pnet::PreSharedKey;
use peerkv::{Config, Error, Node};

fn key(byte: u8) -> PreSharedKey {
    PreSharedKey::new([byte; 32])
}

fn private(psk: PreSharedKey) -> Config {
    Config { psk: Some(psk), ..local() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insiders_put_and_get() {
    let nodes = cluster(4, |_| private(key(7))).await;
    let put = within("put", nodes[1].put("secret", b"inside".to_vec())).await.unwrap();
    assert!(put.acked >= put.needed, "{put:?}");
    let got = within("get", nodes[3].get("secret")).await.unwrap();
    assert_eq!(got.record.and_then(|r| r.value).as_deref(), Some(&b"inside"[..]));
    let info = within("info", nodes[0].info()).await.unwrap();
    assert_eq!(info.psk_fingerprint, Some(key(7).fingerprint().to_string()));
    assert!(info.listen_addrs.iter().all(|a| !peerkv::config::is_quic(a)));
    shutdown(&nodes).await;
}

/// Whether a dial error of a peer with a key says that the keys may differ: a wrong key makes
/// the handshake fail (most dials) or hang until the connection timeout.
fn mismatch(text: &str) -> bool {
    text.contains("likely uses another --psk key, or none")
        || text.contains("uses another --psk key (a handshake with another key can hang")
}

/// Dials `addr` from `outsider` and returns the error, which must come.
async fn dial_fails(outsider: &Node, addr: peerkv::Multiaddr) -> String {
    match within("dial", outsider.dial(addr)).await {
        Err(e @ Error::Unreachable { .. }) => e.to_string(),
        Err(other) => panic!("wrong error: {other}"),
        Ok(peer) => panic!("an outsider connected to {peer}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_cannot_connect() {
    let insider = within("spawn", Node::spawn(private(key(7)))).await.unwrap();
    let addr = within("listen", insider.listen_addrs()).await.unwrap()[0].clone();

    // No key at all.
    let open = within("spawn", Node::spawn(local())).await.unwrap();
    let text = dial_fails(&open, addr.clone()).await;
    println!("no key: {text}");
    // (Or the handshake hangs until the connection timeout, which an open peer cannot tell
    // from a silent one.)
    assert!(
        text.contains("if the peer runs a private swarm")
            || text.contains("Timeout has been reached"),
        "{text}"
    );
    // The other way round: the insider cannot reach the open peer either.
    let open_addr = within("listen", open.listen_addrs()).await.unwrap()[0].clone();
    let back = dial_fails(&insider, open_addr).await;
    println!("insider to an open peer: {back}");
    assert!(mismatch(&back), "{back}");

    // Another key: the dial fails, and the error says the keys likely differ.
    let wrong = within("spawn", Node::spawn(private(key(8)))).await.unwrap();
    let text = dial_fails(&wrong, addr.clone()).await;
    println!("wrong key: {text}");
    assert!(mismatch(&text), "{text}");

    // Neither outsider got in, and a put on the wrong-key peer reaches no one.
    let info = within("info", insider.info()).await.unwrap();
    assert_eq!(info.connected_peers, 0, "{info:?}");
    assert!(within("bootstrap", wrong.bootstrap(addr.clone())).await.is_err());
    let info = within("info", wrong.info()).await.unwrap();
    assert_eq!((info.connected_peers, info.routing_table), (0, 0), "{info:?}");

    // An insider with the same key gets in.
    let friend = within("spawn", Node::spawn(private(key(7)))).await.unwrap();
    assert_eq!(within("dial", friend.dial(addr)).await.unwrap(), insider.peer_id());
    shutdown(&[insider, open, wrong, friend]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_is_refused_in_a_private_swarm() {
    let insider = within("spawn", Node::spawn(private(key(7)))).await.unwrap();
    let quic: peerkv::Multiaddr =
        format!("/ip4/127.0.0.1/udp/9/quic-v1/p2p/{}", libp2p::PeerId::random()).parse().unwrap();
    let text = within("dial", insider.dial(quic.clone())).await.unwrap_err().to_string();
    assert!(text.contains("QUIC cannot carry a pre-shared key"), "{text}");
    let text = within("bootstrap", insider.bootstrap(quic.clone())).await.unwrap_err().to_string();
    assert!(text.contains("QUIC cannot carry a pre-shared key"), "{text}");
    let e = Node::spawn(Config { bootstrap: vec![quic], ..private(key(7)) }).await.unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    shutdown(&[insider]).await;
}
