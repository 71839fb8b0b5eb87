//! Replica upkeep: hand-off and restoring R copies under churn, expiry and tombstone removal,
//! and the cost of a round in a stable overlay.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{cluster, full_tables, local, shutdown, wait_for, within, WAIT};
use futures::StreamExt;
use libp2p::identity::Keypair;
use peerkv::command::Stats;
use peerkv::placement;
use peerkv::{Config, Hlc, Node, Record, Request, Response};

/// The tests here start up to 20 peers each: one at a time, so they do not starve each other
/// of the machine's two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// With 10,000 records in a stable 10-peer overlay, where nothing is missing anywhere, an upkeep
/// round sends summaries only: one to each peer it shares a key with, no full digest, no record.
/// Prints the bytes of one idle round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_round_sends_digests_only() {
    let _serial = SERIAL.lock().await;
    const RECORDS: usize = 10_000;
    let nodes =
        cluster(10, |_| Config { upkeep_interval: Duration::from_secs(3600), ..local() }).await;
    full_tables(&nodes).await;
    let ids: Vec<_> = nodes.iter().map(Node::peer_id).collect();
    // Seed every record on exactly its R = 5 closest peers, in batches, straight over the wire.
    let writer = Keypair::generate_ed25519();
    let now = peerkv::clock::now_ms();
    let mut batches: BTreeMap<usize, Vec<Record>> = BTreeMap::new();
    // Who shares at least one key with whom: a round sends one summary to each such partner.
    // It is not always every other peer: when the ten ids split 5/5 on the first bit of their
    // Kademlia keys, every key's five closest are one half, and a peer's partners are the four
    // others of its half.
    let mut partners: BTreeMap<usize, std::collections::BTreeSet<usize>> = BTreeMap::new();
    for i in 0..RECORDS {
        let key = format!("seed-{i}");
        let record =
            Record::sign(&writer, key.clone(), Some(vec![b'x'; 32]), Hlc::new(now, 0), None)
                .unwrap();
        let replicas: Vec<usize> = placement::plan(&key, ids.iter().copied(), 5, None)
            .replicas
            .iter()
            .map(|peer| ids.iter().position(|p| p == peer).unwrap())
            .collect();
        for &index in &replicas {
            batches.entry(index).or_default().push(record.clone());
            partners.entry(index).or_default().extend(replicas.iter().filter(|&&o| o != index));
        }
    }
    for (index, records) in batches {
        let sender = if index == 0 { &nodes[1] } else { &nodes[0] };
        for chunk in records.chunks(500) {
            let answer = within(
                "seed",
                sender.send_request(ids[index], Request::StoreMany { records: chunk.to_vec() }),
            )
            .await
            .expect("seed");
            assert!(matches!(answer, Response::StoredMany { rejected, .. } if rejected.is_empty()));
        }
    }
    let held: usize = futures::future::join_all(nodes.iter().map(|n| n.stats()))
        .await
        .iter()
        .map(|s| s.as_ref().unwrap().records)
        .sum();
    assert_eq!(held, RECORDS * 5);

    let before = stats_of(&nodes).await;
    // Seeding 50,000 copies keeps a debug build busy for a while; a peer whose pings went
    // unanswered meanwhile may be out of a table for a moment. Every table whole first, then
    // one round on every peer: one summary to each partner.
    full_tables(&nodes).await;
    let expected: u64 = partners.values().map(|p| p.len() as u64).sum();
    let mut summaries = 0;
    let mut summary_bytes = 0;
    let mut views = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let info = within("info", node.info()).await.expect("info");
        let round = within("upkeep", node.upkeep()).await.expect("upkeep");
        let want = partners.get(&i).map_or(0, |p| p.len() as u64);
        views.push((i, info.routing_table, info.kv_peers, want, round.summaries));
        summaries += round.summaries;
        summary_bytes += round.digest_bytes;
    }
    assert!(
        views.iter().all(|&(_, _, _, want, sent)| want == sent) && summaries == expected,
        "one summary from every peer to each peer it shares a key with; (peer, table, value-protocol peers, partners, summaries): {views:?}"
    );
    // Wait until every message the rounds sent has been received: the summaries, and the
    // digests a mismatch would have drawn (counted from the senders' stats, so that a round a
    // routing table change started meanwhile is counted on both sides).
    let received = wait_for(WAIT, || async {
        let now = stats_of(&nodes).await;
        let d = delta(&before, &now);
        d.received >= d.summaries + d.digests
    })
    .await;
    assert!(
        received,
        "the summaries sent were not all received: {:?}",
        delta(&before, &stats_of(&nodes).await)
    );
    // A receiver counts a summary as it answers it; a sender sends digests only once that
    // answer (a mismatch) is back, so the senders' counters are not final yet. Each sender now
    // asks each partner two Fetches, one after the other: the answer to a request that took the
    // connection the summary took comes back behind the summary's answer, and libp2p spreads
    // requests to a peer over its connections in turn (a pair here seldom holds more than
    // two). Once all are back, every sender has handled the answers to its summaries.
    for (&i, others) in &partners {
        for &o in others {
            for _ in 0..2 {
                let fetch = Request::Fetch {
                    key: "after-the-summaries".into(),
                    near: 0,
                    version_only: false,
                };
                within("fetch", nodes[i].send_request(ids[o], fetch)).await.expect("fetch");
            }
        }
    }
    let d = delta(&before, &stats_of(&nodes).await);
    assert_eq!(d.digests, 0, "summaries matched everywhere, so no digest should follow: {d:?}");
    assert_eq!(d.pushed, 0, "a stable overlay pushed records in an upkeep round: {d:?}");
    assert_eq!(d.received, d.summaries, "every message received was a summary sent: {d:?}");
    println!(
        "idle upkeep round over {RECORDS} records on 10 peers (R = 5): {summaries} summaries, 0 digests, {summary_bytes} bytes in all ({:.2} bytes per record), 0 records sent",
        summary_bytes as f64 / RECORDS as f64
    );
    shutdown(&nodes).await;
}

/// The stats of every node, in order.
async fn stats_of(nodes: &[Node]) -> Vec<Stats> {
    futures::future::join_all(nodes.iter().map(|n| within("stats", n.stats())))
        .await
        .into_iter()
        .map(|s| s.expect("stats"))
        .collect()
}

/// What all nodes together sent and received between two snapshots of their stats.
#[derive(Debug, Default)]
struct Traffic {
    /// Summary messages sent.
    summaries: u64,
    /// Digest messages sent.
    digests: u64,
    /// Summary and digest messages received.
    received: u64,
    /// Records pushed to a replica that lacked them.
    pushed: u64,
}

fn delta(before: &[Stats], after: &[Stats]) -> Traffic {
    let mut t = Traffic::default();
    for (b, a) in before.iter().zip(after) {
        t.summaries += a.summaries_sent - b.summaries_sent;
        t.digests += a.digests_sent - b.digests_sent;
        t.received += a.digests_received - b.digests_received;
        t.pushed += a.records_pushed - b.records_pushed;
    }
    t
}

/// Expired records and old tombstones are removed everywhere; an expired value is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_and_old_tombstones_are_removed() {
    let _serial = SERIAL.lock().await;
    let nodes = cluster(4, |_| Config {
        upkeep_interval: Duration::from_millis(500),
        tombstone_ttl: Duration::from_secs(1),
        ..local()
    })
    .await;
    within("put", nodes[0].put_with_ttl("short-lived", "soon gone", Some(Duration::from_secs(5))))
        .await
        .expect("put");
    within("put", nodes[1].put("deleted", "x")).await.expect("put");
    within("del", nodes[2].delete("deleted")).await.expect("del");
    within("put", nodes[3].put("kept", "forever")).await.expect("put");
    let got = within("get", nodes[3].get("short-lived")).await.expect("get");
    assert_eq!(got.value(), Some(&b"soon gone"[..]));
    let gone = wait_for(WAIT, || async {
        let mut all_gone = true;
        for node in &nodes {
            let keys = node.keys().await.unwrap_or_default();
            if keys.iter().any(|k| k.key == "short-lived" || k.key == "deleted") {
                all_gone = false;
            }
        }
        all_gone
    })
    .await;
    assert!(gone, "expired records or old tombstones are still held somewhere");
    let got = within("get", nodes[1].get("short-lived")).await.expect("get");
    assert!(got.record.is_none(), "an expired record was served: {got:?}");
    let got = within("get", nodes[0].get("kept")).await.expect("get");
    assert_eq!(got.value(), Some(&b"forever"[..]));
    shutdown(&nodes).await;
}

/// 20 peers, R = 5; writes go on while peers leave and new ones join, one at a time (each
/// departure once upkeep has restored a second copy of every key), until half of the original
/// peers are gone. Every acknowledged key is still readable, and every key is
/// again on its R closest live peers within a bounded time after the churn stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_loses_nothing_acknowledged() {
    let _serial = SERIAL.lock().await;
    let config = |_| Config {
        upkeep_interval: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..local()
    };
    let mut nodes = cluster(20, config).await;
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut failed_puts = 0;
    let mut n = 0;
    let write = |nodes: Vec<Node>, count: usize, start: usize| async move {
        let mut ok = Vec::new();
        let mut failed = 0;
        for i in 0..count {
            let key = format!("churn-{}", start + i);
            let value = format!("value-{}", start + i);
            let node = &nodes[(start + i) % nodes.len()];
            match tokio::time::timeout(WAIT, node.put(key.clone(), value.clone())).await {
                Ok(Ok(_)) => ok.push((key, value)),
                _ => failed += 1,
            }
        }
        (ok, failed)
    };
    let (ok, failed) = write(nodes.clone(), 40, n).await;
    n += 40;
    acked.extend(ok);
    failed_puts += failed;
    let churn_started = Instant::now();
    let original: Vec<_> = nodes.iter().map(Node::peer_id).collect();
    for step in 0..10 {
        // One original peer leaves…
        let leaving =
            nodes.iter().position(|nd| original.contains(&nd.peer_id())).expect("an original peer");
        let gone = nodes.remove(leaving);
        within("shutdown", gone.shutdown()).await.expect("shutdown");
        // Departures are paced by upkeep, as R copies are meant to be: before the next peer
        // leaves, every acknowledged key has at least two live holders again. (Without a pause,
        // all five holders of a key can leave within the 2 s upkeep needs to notice the first:
        // then no copy is left anywhere — a burst of departures beyond R − 1, not churn that
        // upkeep can follow.)
        for node in &nodes {
            let _ = within("upkeep", node.upkeep()).await;
        }
        let keys: Vec<String> = acked.keys().cloned().collect();
        let copied = wait_for(WAIT, || async {
            let mut count: BTreeMap<String, usize> = BTreeMap::new();
            for node in &nodes {
                for k in node.keys().await.unwrap_or_default() {
                    *count.entry(k.key).or_default() += 1;
                }
            }
            keys.iter().all(|k| count.get(k).copied().unwrap_or(0) >= 2)
        })
        .await;
        assert!(copied, "upkeep did not restore a second copy of every key after a peer left");
        let (ok, failed) = write(nodes.clone(), 10, n).await;
        n += 10;
        acked.extend(ok);
        failed_puts += failed;
        // …and a new one joins.
        let addr = within("addrs", nodes[step % nodes.len()].listen_addrs()).await.expect("addrs")
            [0]
        .clone();
        let joiner = within("spawn", Node::spawn(Config { bootstrap: vec![addr], ..config(0) }))
            .await
            .expect("join");
        nodes.push(joiner);
        let (ok, failed) = write(nodes.clone(), 10, n).await;
        n += 10;
        acked.extend(ok);
        failed_puts += failed;
    }
    let churn_took = churn_started.elapsed();
    assert_eq!(nodes.iter().filter(|nd| original.contains(&nd.peer_id())).count(), 10);

    // Every acknowledged key reads back.
    let mut lost = 0;
    let reads: Vec<_> = futures::stream::iter(acked.iter().enumerate())
        .map(|(i, (key, value))| {
            let node = nodes[i % nodes.len()].clone();
            async move {
                // A get that fails (timeout, quorum) under load is retried; a key is lost only
                // when a get succeeds without its value, or none ever succeeds.
                for _ in 0..5 {
                    match tokio::time::timeout(WAIT, node.get(key.clone())).await {
                        Ok(Ok(r)) => return r.value() == Some(value.as_bytes()),
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                false
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    lost += reads.iter().filter(|ok| !**ok).count();
    assert_eq!(lost, 0, "{lost} of {} acknowledged keys were lost", acked.len());

    // Every key again sits on its R = 5 closest live peers.
    let restore_started = Instant::now();
    let live: Vec<_> = nodes.iter().map(Node::peer_id).collect();
    let restored = wait_for(Duration::from_secs(60), || async {
        let mut held: BTreeMap<_, std::collections::HashSet<String>> = BTreeMap::new();
        for node in &nodes {
            let keys = node.keys().await.unwrap_or_default();
            held.insert(node.peer_id(), keys.into_iter().map(|k| k.key).collect());
        }
        acked.keys().all(|key| {
            placement::plan(key, live.iter().copied(), 5, None)
                .replicas
                .iter()
                .all(|p| held.get(p).is_some_and(|keys| keys.contains(key)))
        })
    })
    .await;
    let restore_took = restore_started.elapsed();
    assert!(restored, "some keys are not on their R closest live peers after 60 s");
    println!(
        "churn: 20 peers, R = 5, 10 left and 10 joined in {:.1} s; {} puts acknowledged, {failed_puts} failed (not acknowledged), 0 lost; every key back on its 5 closest live peers {:.1} s after the churn stopped",
        churn_took.as_secs_f64(),
        acked.len(),
        restore_took.as_secs_f64()
    );
    shutdown(&nodes).await;
}

/// Extra copies: three peers hold 30 keys (R = 3); seven more join, so most keys get nearer
/// peers. Upkeep hands each key on to its three nearest and then removes the copies it held
/// only because it was near before: in the end every key is on exactly its three nearest
/// peers, and reads back. (Before, a former replica kept its copy, and sent a digest of it every
/// round, for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_copies_are_handed_on_then_removed() {
    let _serial = SERIAL.lock().await;
    let config =
        |_| Config { replication: 3, upkeep_interval: Duration::from_secs(3600), ..local() };
    let mut nodes = cluster(3, config).await;
    let keys: Vec<String> = (0..30).map(|i| format!("extra-{i}")).collect();
    for key in &keys {
        within("put", nodes[0].put(key.clone(), "v")).await.expect("put");
    }
    let addr = within("addrs", nodes[0].listen_addrs()).await.expect("addrs")[0].clone();
    for _ in 0..7 {
        let joiner = Node::spawn(Config { bootstrap: vec![addr.clone()], ..config(0) });
        nodes.push(within("spawn", joiner).await.expect("join"));
    }
    let ids: Vec<_> = nodes.iter().map(Node::peer_id).collect();
    for node in &nodes {
        let all =
            wait_for(WAIT, || async { node.info().await.is_ok_and(|i| i.members >= 9) }).await;
        assert!(all, "a view never held the nine others");
    }
    let nearest = |key: &str| -> Vec<usize> {
        placement::plan(key, ids.iter().copied(), 3, None)
            .replicas
            .iter()
            .map(|peer| ids.iter().position(|p| p == peer).unwrap())
            .collect()
    };
    let holders = |nodes: Vec<Node>| async move {
        let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for entry in node.keys().await.unwrap_or_default() {
                by_key.entry(entry.key).or_default().push(i);
            }
        }
        by_key
    };
    let moved = keys.iter().filter(|k| nearest(k).iter().any(|&i| i >= 3)).count();
    assert!(moved > 0, "no key got a nearer peer: the test shows nothing");
    // Round one hands on (summary, digest, records); round two's summaries match and the extra
    // copies go. A third round changes nothing.
    let settled = wait_for(WAIT, || async {
        for node in &nodes {
            let _ = node.upkeep().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let held = holders(nodes.clone()).await;
        keys.iter().all(|k| {
            let mut want = nearest(k);
            want.sort_unstable();
            held.get(k) == Some(&want)
        })
    })
    .await;
    let held = holders(nodes.clone()).await;
    let wrong: Vec<_> = keys
        .iter()
        .filter_map(|k| {
            let mut want = nearest(k);
            want.sort_unstable();
            (held.get(k) != Some(&want)).then(|| (k, held.get(k).cloned(), want))
        })
        .collect();
    assert!(settled, "{moved} keys moved; not on exactly their 3 nearest: {wrong:?}");
    for (i, key) in keys.iter().enumerate() {
        let got = within("get", nodes[i % nodes.len()].get(key.clone())).await.expect("get");
        assert_eq!(got.value(), Some(&b"v"[..]), "{key}");
    }
    shutdown(&nodes).await;
}
