//! In-process clusters on 127.0.0.1 (mDNS off): what a user of the library relies on.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{cluster, full_tables, local, percentiles, shutdown, wait_for, within, WAIT};
use libp2p::identity::Keypair;
use peerkv::{Config, Error, Hlc, PeerId, Record, Request, Response};

/// A put on any node is read back from every other; overwrite and delete are seen everywhere.
/// Prints put and get latency (median, p95) over many operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_put_get_overwrite_delete() {
    let nodes = cluster(10, |_| local()).await;
    let mut put_times = Vec::new();
    let mut get_times = Vec::new();

    for round in 0..30 {
        let writer = &nodes[round % nodes.len()];
        let key = format!("key-{round}");
        let value = format!("value {round}");
        let put = within("put", writer.put(key.clone(), value.clone())).await.expect("put");
        assert!(put.acked >= put.needed && put.replicas == 5, "{put:?}");
        put_times.push(put.elapsed);
        for (i, reader) in nodes.iter().enumerate() {
            let got = within("get", reader.get(key.clone())).await.expect("get");
            assert_eq!(got.value(), Some(value.as_bytes()), "node {i} read {key}");
            get_times.push(got.elapsed);
        }
    }

    // Overwrite from another node: every node sees the new value.
    within("put", nodes[3].put("key-0", "second")).await.expect("overwrite");
    for reader in &nodes {
        let got = within("get", reader.get("key-0")).await.expect("get");
        assert_eq!(got.value(), Some(&b"second"[..]));
    }

    // Delete: every node reads "not found", with the tombstone's version.
    let del = within("del", nodes[7].delete("key-1")).await.expect("delete");
    for reader in &nodes {
        let got = within("get", reader.get("key-1")).await.expect("get");
        assert_eq!(got.value(), None);
        assert!(got.record.as_ref().is_some_and(Record::is_tombstone));
        assert_eq!(got.record.map(|r| r.version), Some(del.version));
    }
    // A key never written is not found either.
    let missing = within("get", nodes[2].get("never-written")).await.expect("get");
    assert!(missing.record.is_none());

    let (put_med, put_p95) = percentiles(&mut put_times);
    let (get_med, get_p95) = percentiles(&mut get_times);
    println!(
        "10-node cluster: put median {put_med:.2} ms p95 {put_p95:.2} ms ({} puts); get median {get_med:.2} ms p95 {get_p95:.2} ms ({} gets)",
        put_times.len(),
        get_times.len()
    );
    shutdown(&nodes).await;
}

/// Two nodes write the same key at once. Each put is acknowledged by a write quorum (3) of
/// distinct peers among the key's five replicas (so the two quorums share a replica); the put
/// that loses by `(version, writer)` is the only one that can be told `superseded_by`, and then
/// with the winner's version; afterwards every replica holds the winner's record, and a get
/// returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_converge() {
    let nodes = cluster(10, |_| local()).await;
    // Both writers and node 0 (which names the replicas below) must agree on them.
    full_tables(&nodes).await;
    let ids: Vec<_> = nodes.iter().map(|n| n.peer_id()).collect();
    let mut loser_told = 0;
    for round in 0..5 {
        let key = format!("contested-{round}");
        let holders: BTreeSet<PeerId> = peerkv::placement::plan(&key, ids.iter().copied(), 5, None)
            .replicas
            .into_iter()
            .collect();
        let closest = within("closest", nodes[0].closest(key.clone())).await.expect("closest");
        let named: BTreeSet<PeerId> =
            closest.peers.iter().filter(|p| p.replica).map(|p| p.peer_id).collect();
        assert_eq!(named, holders, "node 0 names other replicas of {key} than placement");

        let (a, b) = within("puts", async {
            tokio::join!(
                nodes[1].put(key.clone(), "from one"),
                nodes[8].put(key.clone(), "from eight")
            )
        })
        .await;
        let (a, b) = (a.expect("put a"), b.expect("put b"));
        for (put, who) in [(&a, "node 1"), (&b, "node 8")] {
            assert_eq!(put.key, key, "{who}: {put:?}");
            assert_eq!((put.replicas, put.needed), (5, 3), "{who}: R = 5, W = majority: {put:?}");
            assert!(put.acked >= put.needed, "{who} answered before its quorum: {put:?}");
            let acked: BTreeSet<PeerId> = put.stored_on.iter().copied().collect();
            assert_eq!(acked.len(), put.acked, "{who}: one acknowledgement per peer: {put:?}");
            assert!(
                acked.is_subset(&holders),
                "{who} was acknowledged by a peer that is not a replica of {key}: {put:?}, replicas {holders:?}"
            );
        }
        let ((winner, winner_id, winner_value), loser) =
            if (a.version, ids[1]) > (b.version, ids[8]) {
                ((&a, ids[1], "from one"), &b)
            } else {
                ((&b, ids[8], "from eight"), &a)
            };
        // No replica can hold anything newer than the winner: it is never told it lost.
        assert_eq!(winner.superseded_by, None, "the winning put was told it lost: {winner:?}");
        // The loser is told only when one of its first W acknowledgements came from a replica
        // that had the winner already (timing decides), and never when both versions are equal
        // and the writer id decides (`superseded_by` compares versions; two clocks often tick
        // to the same ms here). When told, it is the winner's version.
        if let Some(newer) = loser.superseded_by {
            assert!(
                newer == winner.version && newer > loser.version,
                "the losing put was told {newer}, the winner wrote {}: {loser:?}",
                winner.version
            );
            loser_told += 1;
        }

        // Every replica ends with the winner's record.
        let want = Some((winner.version, Some(winner_id)));
        let converged = wait_for(WAIT, || async {
            let mut all = true;
            for node in nodes.iter().filter(|n| holders.contains(&n.peer_id())) {
                let keys = within("keys", node.keys()).await.unwrap_or_default();
                let held = keys.into_iter().find(|k| k.key == key).map(|k| (k.version, k.writer));
                all &= held == want;
            }
            all
        })
        .await;
        assert!(converged, "the replicas of {key} do not all hold the winner {want:?}");
        let got = within("get", nodes[5].get(key.clone())).await.expect("get");
        let record = got.record.as_ref().expect("a record");
        assert_eq!(
            (record.version, record.writer_id().ok(), got.value()),
            (winner.version, Some(winner_id), Some(winner_value.as_bytes())),
            "a get did not return the winner"
        );
    }
    println!(
        "concurrent writers: the losing put was told superseded_by in {loser_told} of 5 rounds"
    );
    shutdown(&nodes).await;
}

/// With fewer reachable peers than W, a put fails with the quorum error and its counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_peers_for_the_write_quorum() {
    let nodes =
        cluster(5, |_| Config { write_quorum: Some(5), read_quorum: Some(3), ..local() }).await;
    within("put", nodes[0].put("before", "all five up")).await.expect("put with five peers");
    within("shutdown", nodes[3].shutdown()).await.expect("stop");
    within("shutdown", nodes[4].shutdown()).await.expect("stop");
    let err = within("put", nodes[0].put("after", "two gone")).await.expect_err("must fail");
    match &err {
        Error::QuorumNotMet { acked, needed, replicas, .. } => {
            // The two stopped peers are still known (their entries leave the tables only when
            // a dial or two pings fail): they count against W — a replica that is down may
            // hold the newest write — so the window is five and the put fails.
            assert_eq!((*acked, *needed, *replicas), (3, 5, 5), "{err}");
        }
        other => panic!("expected a quorum error, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("quorum not met: 3 of 5 replicas acknowledged (needed 5)"), "{text}");
    assert!(text.contains("--write-quorum"), "{text}");
    // A read with Q = 3 still works with three peers up.
    let got = within("get", nodes[1].get("before")).await.expect("get");
    assert_eq!(got.value(), Some(&b"all five up"[..]));
    shutdown(&nodes[..3]).await;
}

/// A lone peer refuses to pretend: no peers yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_peer_says_no_peers_yet() {
    let node = within("spawn", peerkv::Node::spawn(local())).await.expect("spawn");
    let err = within("put", node.put("k", "v")).await.expect_err("alone");
    assert!(err.to_string().starts_with("no peers yet"), "{err}");
    let err = within("get", node.get("k")).await.expect_err("alone");
    assert!(matches!(err, Error::NoPeers { .. }), "{err}");
    assert!(node.keys().await.expect("keys").is_empty());
    node.shutdown().await.expect("shutdown");
}

/// An oversized value is refused before anything is sent; a replica with a smaller limit
/// rejects what exceeds it, and nothing is stored there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_values_are_refused() {
    let nodes =
        cluster(3, |i| Config { max_value_size: if i == 2 { 1024 } else { 64 * 1024 }, ..local() })
            .await;
    let err =
        within("put", nodes[0].put("big", vec![b'x'; 64 * 1024 + 1])).await.expect_err("too big");
    assert!(matches!(err, Error::ValueTooLarge { size: 65537, limit: 65536 }), "{err}");
    assert!(err.to_string().contains("limit 65536"), "{err}");
    for node in &nodes {
        assert!(node.keys().await.expect("keys").is_empty(), "nothing may be stored");
    }
    // 2 KiB fits nodes 0 and 1 but not node 2: two acknowledge, node 2 says why it refused.
    let put = within("put", nodes[0].put("mid", vec![b'y'; 2048])).await.expect("put");
    assert_eq!((put.replicas, put.needed), (3, 2), "{put:?}");
    let acked: BTreeSet<PeerId> = put.stored_on.iter().copied().collect();
    assert_eq!(acked, BTreeSet::from([nodes[0].peer_id(), nodes[1].peer_id()]), "{put:?}");
    // The put answered at W = 2; it ends once node 2 has answered too. Only then does node 2's
    // store say whether it refused the record.
    let ended = wait_for(WAIT, || async {
        within("info", nodes[0].info()).await.is_ok_and(|i| i.pending_ops == 0)
    })
    .await;
    assert!(ended, "the put never heard from node 2");
    assert!(nodes[2].keys().await.expect("keys").is_empty());
    let raw = Record::sign(
        &Keypair::generate_ed25519(),
        "raw".into(),
        Some(vec![0; 2048]),
        Hlc::new(1, 0),
        None,
    )
    .expect("sign");
    let answer = within(
        "request",
        nodes[0].send_request(nodes[2].peer_id(), Request::Store { record: raw }),
    )
    .await
    .expect("answer");
    match answer {
        Response::Rejected { reason } => {
            assert!(reason.contains("value too large: 2048 bytes (limit 1024)"), "{reason}")
        }
        other => panic!("accepted an oversized record: {other:?}"),
    }
    shutdown(&nodes).await;
}

/// Records sent straight to a replica with a bad signature, a stolen owner key or a version far
/// in the future are rejected with a reason, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_records_are_rejected_and_change_nothing() {
    let nodes = cluster(3, |_| local()).await;
    let (sender, replica) = (&nodes[0], nodes[1].peer_id());
    // A genuine record first, so there is something to protect.
    let genuine = Record::sign(
        &Keypair::generate_ed25519(),
        "guarded".into(),
        Some(b"genuine".to_vec()),
        Hlc::new(peerkv::clock::now_ms(), 0),
        None,
    )
    .expect("sign");
    let stored =
        within("store", sender.send_request(replica, Request::Store { record: genuine.clone() }))
            .await
            .expect("store");
    assert!(matches!(stored, Response::Stored { .. }), "{stored:?}");

    let mallory = Keypair::generate_ed25519();
    let mut tampered = genuine.clone();
    tampered.value = Some(b"forged".to_vec());
    tampered.version = Hlc::new(genuine.version.ms + 1, 0);
    let mut stolen_writer =
        Record::sign(&mallory, "guarded".into(), Some(b"forged".to_vec()), tampered.version, None)
            .expect("sign");
    stolen_writer.writer = genuine.writer.clone();
    let owned_key = format!("@{}/profile", nodes[2].peer_id());
    let not_the_owner =
        Record::sign(&mallory, owned_key.clone(), Some(b"forged".to_vec()), Hlc::new(1, 0), None)
            .expect("sign");
    let future = Record::sign(
        &mallory,
        "guarded".into(),
        Some(b"forged".to_vec()),
        Hlc::new(u64::MAX / 2, 0),
        None,
    )
    .expect("sign");

    for (record, expect) in [
        (tampered, "bad signature"),
        (stolen_writer, "bad signature"),
        (not_the_owner, "belongs to"),
        (future, "ahead of this replica's clock"),
    ] {
        let answer = within("store", sender.send_request(replica, Request::Store { record }))
            .await
            .expect("answer");
        match answer {
            Response::Rejected { reason } => {
                assert!(reason.contains(expect), "{reason} lacks {expect:?}")
            }
            other => panic!("forged record accepted: {other:?}"),
        }
    }
    let held = within(
        "fetch",
        sender.send_request(
            replica,
            Request::Fetch { key: "guarded".into(), near: 0, version_only: false },
        ),
    )
    .await
    .expect("fetch");
    assert_eq!(held, Response::Found { record: Some(genuine), near: vec![], down: vec![] });
    let keys = nodes[1].keys().await.expect("keys");
    assert_eq!(keys.len(), 1, "{keys:?}");
    // And the local API refuses to write another peer's key before sending anything.
    let err = within("put", nodes[0].put(owned_key, "x")).await.expect_err("not ours");
    assert!(err.to_string().contains("belongs to"), "{err}");
    shutdown(&nodes).await;
}

/// A fetch answer names the peers the replier knows nearest to the key, with addresses: what
/// a get follows when its own routing table lacks the replicas. In a 10-peer overlay every
/// table is whole, so a non-replica names exactly the five replicas the put chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_answer_names_the_replicas() {
    let nodes = cluster(10, |_| local()).await;
    // The replier names the nearest peers of its own table: every table whole first.
    full_tables(&nodes).await;
    let put = within("put", nodes[0].put("hinted", "v")).await.expect("put");
    let replicas: std::collections::BTreeSet<_> =
        peerkv::placement::plan("hinted", nodes.iter().map(|n| n.peer_id()), 5, None)
            .replicas
            .into_iter()
            .collect();
    assert!(
        put.stored_on.len() >= put.needed && put.stored_on.iter().all(|p| replicas.contains(p)),
        "{put:?}"
    );
    let mut outside = nodes.iter().filter(|n| !replicas.contains(&n.peer_id()));
    let asker = outside.next().expect("a non-replica");
    let replier = outside.next().expect("another non-replica");
    let answer = within(
        "fetch",
        asker.send_request(
            replier.peer_id(),
            Request::Fetch { key: "hinted".into(), near: 5, version_only: false },
        ),
    )
    .await
    .expect("fetch");
    let Response::Found { record: None, near, .. } = answer else {
        panic!("a non-replica holds the record: {answer:?}")
    };
    let named: std::collections::BTreeSet<_> = near.iter().map(|(p, _)| *p).collect();
    assert_eq!(named, replicas, "the replier named other peers than the replicas");
    assert!(near.iter().all(|(_, addrs)| !addrs.is_empty()), "a peer without addresses");
    // Nearest first.
    let order: Vec<_> = near.iter().map(|(p, _)| *p).collect();
    assert_eq!(order, peerkv::placement::rank("hinted", order.clone()));
    // A get from a non-replica asks at least the replicas it settles on.
    let got = within("get", asker.get("hinted")).await.expect("get");
    assert_eq!(got.value(), Some(&b"v"[..]));
    assert!(got.asked >= got.needed && got.replicas == 5, "{got:?}");
    shutdown(&nodes).await;
}

/// A request for a peer that is gone fails with a clear error within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_addresses_fail_cleanly() {
    let node =
        within("spawn", peerkv::Node::spawn(Config { timeout: Duration::from_secs(3), ..local() }))
            .await
            .expect("spawn");
    // Nothing listens on port 1 of loopback.
    let addr: peerkv::Multiaddr =
        format!("/ip4/127.0.0.1/tcp/1/p2p/{}", peerkv::PeerId::random()).parse().expect("addr");
    let err = within("bootstrap", node.bootstrap(addr)).await.expect_err("nobody there");
    assert!(err.to_string().starts_with("cannot reach /ip4/127.0.0.1/tcp/1"), "{err}");
    let err = within("bootstrap", node.bootstrap("/ip4/127.0.0.1/tcp/1".parse().expect("addr")))
        .await
        .expect_err("no peer id");
    assert!(matches!(err, Error::NoPeerIdInAddr(_)), "{err}");
    assert!(node.peers().await.expect("peers").is_empty());
    node.shutdown().await.expect("shutdown");
    // A stopped node answers every call with the shutdown error, never a hang.
    assert!(matches!(node.info().await, Err(Error::Shutdown)));
}

/// A replica past its record limit refuses new keys with the reason, keeps what it held, and
/// still takes updates of keys it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replica_refuses_new_keys_and_keeps_the_old() {
    let nodes =
        cluster(3, |i| Config { max_records: if i == 1 { 1 } else { 1000 }, ..local() }).await;
    within("put", nodes[0].put("one", "1")).await.expect("put");
    let holds = |key: &'static str, size: usize| {
        let node = nodes[1].clone();
        move || {
            let node = node.clone();
            async move {
                node.keys().await.unwrap_or_default().iter().any(|k| k.key == key && k.size == size)
            }
        }
    };
    assert!(wait_for(WAIT, holds("one", 1)).await, "node 1 never stored the first key");
    within("put", nodes[0].put("two", "2")).await.expect("put still meets W = 2");
    let raw = Record::sign(
        &Keypair::generate_ed25519(),
        "three".into(),
        Some(b"3".to_vec()),
        Hlc::new(peerkv::clock::now_ms(), 0),
        None,
    )
    .expect("sign");
    let answer = within(
        "request",
        nodes[0].send_request(nodes[1].peer_id(), Request::Store { record: raw }),
    )
    .await
    .expect("answer");
    match answer {
        Response::Rejected { reason } => assert!(reason.contains("store full"), "{reason}"),
        other => panic!("a full store accepted a new key: {other:?}"),
    }
    within("put", nodes[2].put("one", "updated")).await.expect("update");
    assert!(wait_for(WAIT, holds("one", 7)).await, "node 1 never took the update");
    let keys = nodes[1].keys().await.expect("keys");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].key, "one");
    assert_eq!(keys[0].size, "updated".len());
    shutdown(&nodes).await;
}

/// Bootstrapping from a peer that serves another Kademlia protocol id fails with a message that
/// names the flag, and leaves the routing table empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_from_a_peer_on_another_kad_protocol_fails() {
    let other = within(
        "spawn",
        peerkv::Node::spawn(Config { kad_protocol: "/other/kad/1.0.0".into(), ..local() }),
    )
    .await
    .expect("spawn");
    let addr = within("listen", other.listen_addrs()).await.expect("addrs")[0].clone();
    let node = within("spawn", peerkv::Node::spawn(local())).await.expect("spawn");
    let err = within("bootstrap", node.bootstrap(addr)).await.expect_err("wrong protocol");
    assert!(err.to_string().contains("--kad-protocol"), "{err}");
    assert_eq!(node.info().await.expect("info").routing_table, 0);
    shutdown(&[node, other]).await;
}

/// A put issued after a newer version is in place wins over it, even when that version came from
/// a writer whose clock runs a minute ahead: the put's search sees the version held, and the put
/// is signed again past it instead of being stored as an older write that loses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_after_a_write_from_a_fast_clock_wins() {
    let nodes = cluster(6, |_| local()).await;
    let ids: Vec<_> = nodes.iter().map(|n| n.peer_id()).collect();
    let fast = Keypair::generate_ed25519();
    let ahead = Hlc::new(peerkv::clock::now_ms() + 60_000, 0);
    let record =
        Record::sign(&fast, "skewed".into(), Some(b"from a fast clock".to_vec()), ahead, None)
            .unwrap();
    let replicas = peerkv::placement::plan("skewed", ids.iter().copied(), 5, None).replicas;
    // The writer must not be a replica: storing the record would have advanced its clock.
    let writer = nodes.iter().find(|n| !replicas.contains(&n.peer_id())).expect("a non-replica");
    for peer in replicas.iter().copied() {
        let sender = if peer == ids[0] { &nodes[1] } else { &nodes[0] };
        let answer =
            within("store", sender.send_request(peer, Request::Store { record: record.clone() }))
                .await
                .expect("store");
        assert!(matches!(answer, Response::Stored { .. }), "{answer:?}");
    }
    let put = within("put", writer.put("skewed", "mine")).await.expect("put");
    assert!(put.version > ahead, "{put:?}");
    assert_eq!(put.superseded_by, None, "{put:?}");
    for (i, node) in nodes.iter().enumerate() {
        let got = within("get", node.get("skewed")).await.expect("get");
        assert_eq!(got.value(), Some(&b"mine"[..]), "node {i}");
    }
    shutdown(&nodes).await;
}
