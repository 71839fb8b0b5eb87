//! Hostile peers against one peer of an honest overlay: bare libp2p swarms (several identities)
//! that open many value-protocol requests of 1 MiB and stop half-way, flood upkeep requests
//! (Summary, StoreMany), and flood Fetches. The attacked peer's honest puts and gets keep
//! succeeding, nothing honest changes, and its byte budget's counters never pass the budget.
//!
//! Figures (latencies under attack) are printed, never asserted: the machines are shared.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::attacker::{attack, far_store_many, fetches, half_sent_stores, summaries};
use common::{cluster, percentiles, shutdown, within};
use peerkv::Config;
use tokio::sync::mpsc;

/// Honest puts through the attacked peer and gets from it and another peer, `rounds` times;
/// every one must succeed with the value written. Returns the get latencies on the attacked
/// peer.
async fn honest_work(nodes: &[peerkv::Node], tag: &str, rounds: usize) -> Vec<Duration> {
    let mut gets = Vec::new();
    for i in 0..rounds {
        let key = format!("honest-{tag}-{i}");
        let value = format!("value {i}");
        within("honest put", nodes[0].put(key.clone(), value.clone()))
            .await
            .unwrap_or_else(|e| panic!("honest put {key} failed under attack: {e}"));
        let started = Instant::now();
        let got = within("honest get", nodes[0].get(key.clone()))
            .await
            .unwrap_or_else(|e| panic!("honest get {key} failed under attack: {e}"));
        gets.push(started.elapsed());
        assert_eq!(got.value(), Some(value.as_bytes()), "{key}");
        let got = within("honest get", nodes[1].get(key.clone())).await.expect("get elsewhere");
        assert_eq!(got.value(), Some(value.as_bytes()), "{key} read elsewhere");
    }
    gets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_do_not_stop_honest_work_or_pass_the_budget() {
    let nodes = cluster(4, |_| Config::local()).await;
    let victim = within("listen", nodes[0].listen_addrs()).await.expect("addrs")[0].clone();

    let (mut quiet, _) = (honest_work(&nodes, "quiet", 10).await, ());
    let (p50, _) = percentiles(&mut quiet);

    // Three identities, each with 100 half-sent requests of 1 MiB (64 streams a connection
    // get in); one flooding summaries, one far-key StoreMany batches, one Fetches.
    let (tx, mut rx) = mpsc::channel(8);
    let mut attackers = Vec::new();
    for _ in 0..3 {
        attackers.push(attack(victim.clone(), half_sent_stores(100), tx.clone()));
    }
    attackers.push(attack(victim.clone(), summaries(300), tx.clone()));
    attackers.push(attack(victim.clone(), far_store_many(40, 250), tx.clone()));
    attackers.push(attack(victim.clone(), fetches(3000), tx.clone()));
    drop(tx);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut attacked = honest_work(&nodes, "attacked", 20).await;
    let (p50_attacked, p95_attacked) = percentiles(&mut attacked);

    let mut outcomes = Vec::new();
    while let Some(outcome) = within("attackers end", rx.recv()).await {
        outcomes.push(outcome);
    }
    drop(attackers);
    let stats = within("stats", nodes[0].stats()).await.expect("stats");
    let a = stats.admission;
    println!("honest get on the attacked peer: p50 {p50:.2} ms unloaded, {p50_attacked:.2} ms (p95 {p95_attacked:.2}) under attack");
    println!("attackers saw: {outcomes:?}");
    println!("admission: {a:?}");

    // The budget engaged and never passed its limit.
    assert!(a.budget.refused > 0, "three attackers x 64 streams x 512 KiB must pass 64 MiB: {a:?}");
    assert!(a.budget.peak <= a.budget.limit, "{a:?}");
    // Upkeep floods from strangers were cut by the rate limits, with a reason.
    assert!(a.rate.strangers_limited > 0, "{a:?}");
    let said = |what: &str| outcomes.iter().any(|o| o.answers.keys().any(|k| k.contains(what)));
    assert!(said("rejected: busy"), "{outcomes:?}");
    assert!(said("rejected: rate limit"), "{outcomes:?}");

    // Nothing honest changed: every key written under attack reads back from every peer.
    for i in 0..20 {
        let key = format!("honest-attacked-{i}");
        for node in &nodes {
            let got = within("get", node.get(key.clone())).await.expect("get after the attack");
            assert_eq!(got.value(), Some(format!("value {i}").as_bytes()), "{key}");
        }
    }
    // What the stalled requests held is given back once their read deadline passed.
    let freed = common::wait_for(Duration::from_secs(10), || async {
        nodes[0].stats().await.is_ok_and(|s| s.admission.budget.held == 0)
    })
    .await;
    assert!(freed, "the budget was not given back");
    shutdown(&nodes).await;
}
