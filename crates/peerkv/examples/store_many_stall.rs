//! How long a StoreMany of many records delays honest requests on the peer that takes it.
//!
//! Three peers in this process on 127.0.0.1 (mDNS off): a target (with a data directory in a
//! temporary folder under `--durable`, else in memory), a sender and a prober. The prober asks
//! the target for one key (a raw Fetch, one at a time, back to back) and times each answer: first
//! alone (the baseline), then in each round while the sender's StoreMany of `--records` new
//! records is in flight. A round's delay is the slowest Fetch that overlapped the StoreMany less
//! the baseline median. Requests go to loopback only and every loop is bounded in count and time.
//!
//! ```text
//! cargo run --release -p peerkv --example store_many_stall -- [--durable] [--records 2500] [--rounds 5]
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use peerkv::{Config, Hlc, Node, Record, Request, Response};

/// Longest wait for anything.
const WAIT: Duration = Duration::from_secs(60);
/// Fetches in the baseline.
const BASELINE: usize = 500;
/// Most Fetches in one round.
const ROUND_MAX: usize = 100_000;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn fetch_ms(prober: &Node, target: libp2p::PeerId) -> f64 {
    let t = Instant::now();
    let answer = tokio::time::timeout(
        WAIT,
        prober.send_request(
            target,
            Request::Fetch { key: "probe".into(), near: 0, version_only: false },
        ),
    )
    .await
    .expect("a fetch within the limit")
    .expect("a fetch answered");
    assert!(matches!(answer, Response::Found { record: Some(_), .. }), "{answer:?}");
    t.elapsed().as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let durable = std::env::args().any(|a| a == "--durable");
    let records: usize = arg("--records").map_or(2500, |v| v.parse().expect("--records N"));
    let rounds: usize = arg("--rounds").map_or(5, |v| v.parse().expect("--rounds N"));
    let dir = tempfile::tempdir().expect("a temporary folder");
    let target = Node::spawn(Config {
        data_dir: durable.then(|| dir.path().join("target")),
        ..Config::local()
    })
    .await
    .expect("target");
    let addr = target.listen_addrs().await.expect("listen")[0].clone();
    let sender = Node::spawn(Config { bootstrap: vec![addr.clone()], ..Config::local() })
        .await
        .expect("sender");
    let prober =
        Node::spawn(Config { bootstrap: vec![addr], ..Config::local() }).await.expect("prober");
    let id = target.peer_id();
    let kp = Keypair::generate_ed25519();
    let probe = Record::sign(
        &kp,
        "probe".into(),
        Some(b"x".to_vec()),
        Hlc::new(peerkv::clock::now_ms(), 0),
        None,
    )
    .unwrap();
    let stored = sender.send_request(id, Request::Store { record: probe }).await.unwrap();
    assert!(matches!(stored, Response::Stored { .. }), "{stored:?}");

    let mut base = Vec::with_capacity(BASELINE);
    for _ in 0..BASELINE {
        base.push(fetch_ms(&prober, id).await);
    }
    base.sort_by(f64::total_cmp);
    let p50 = percentile(&base, 0.5);
    println!(
        "target {} — baseline fetch: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({BASELINE} fetches)",
        if durable { "with a data directory" } else { "in memory" },
        p50,
        percentile(&base, 0.99),
        percentile(&base, 1.0)
    );

    let mut delays = Vec::new();
    for round in 0..rounds {
        let batch: Vec<Record> = (0..records)
            .map(|i| {
                let version = Hlc::new(peerkv::clock::now_ms(), 0);
                let key = format!("r{round}-k{i:05}");
                Record::sign(&kp, key, Some(vec![7u8; 100]), version, None).unwrap()
            })
            .collect();
        // What the target's loop spends on the records' checks alone (signatures above all).
        let t = Instant::now();
        for r in &batch {
            r.check(peerkv::config::DEFAULT_MAX_VALUE_SIZE, peerkv::clock::now_ms()).unwrap();
        }
        let check_ms = t.elapsed().as_secs_f64() * 1e3;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, prober2) = (stop.clone(), prober.clone());
        // Fetches back to back, each with its start and end.
        let probes = tokio::spawn(async move {
            let origin = Instant::now();
            let mut samples = Vec::new();
            while !stop2.load(Ordering::Relaxed) && samples.len() < ROUND_MAX {
                let start = origin.elapsed().as_secs_f64() * 1e3;
                let ms = fetch_ms(&prober2, id).await;
                samples.push((start, start + ms, ms));
            }
            (origin, samples)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            WAIT,
            sender.send_request(id, Request::StoreMany { records: batch }),
        )
        .await
        .expect("the StoreMany answered within the limit")
        .expect("the StoreMany answered");
        let answered = Instant::now();
        match answer {
            Response::StoredMany { stored, rejected }
                if stored as usize == records && rejected.is_empty() => {}
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.store(true, Ordering::Relaxed);
        let (origin, samples) = probes.await.unwrap();
        let from = sent.duration_since(origin).as_secs_f64() * 1e3;
        let to = answered.duration_since(origin).as_secs_f64() * 1e3;
        let during: Vec<f64> = samples
            .iter()
            .filter(|(s, e, _)| *e >= from && *s <= to)
            .map(|(_, _, ms)| *ms)
            .collect();
        let worst = during.iter().copied().fold(0.0, f64::max);
        let delay = (worst - p50).max(0.0);
        delays.push(delay);
        println!(
            "round {round}: StoreMany of {records} answered in {:.1} ms (checking its records here: {check_ms:.1} ms); {} fetches overlapped it, slowest {:.3} ms: delay {:.3} ms",
            to - from,
            during.len(),
            worst,
            delay
        );
    }
    delays.sort_by(f64::total_cmp);
    let info = target.info().await.unwrap();
    println!(
        "delay over {rounds} rounds: median {:.3} ms, max {:.3} ms; target: {} records in {} store commits",
        percentile(&delays, 0.5),
        percentile(&delays, 1.0),
        info.records_committed,
        info.store_commits
    );
    for node in [&prober, &sender, &target] {
        let _ = tokio::time::timeout(WAIT, node.shutdown()).await;
    }
}
