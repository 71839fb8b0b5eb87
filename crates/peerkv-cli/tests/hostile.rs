//! Figures of admission control, by hand (issue 13): one `peerkv` process with the default
//! limits is attacked by hostile in-process peers (tests/common/attacker.rs of the library)
//! while three honest peers replicate with it; its resident memory is sampled from `/proc` and
//! gets are timed through its own REPL (`elapsed_ms`).
//!
//! ```text
//! cargo test --release -p peerkv-cli --test hostile -- --ignored --nocapture
//! ```
//!
//! Nothing here asserts a time or a size: the figures are printed. It asserts behaviour only:
//! every honest get during each attack succeeds with the value written. `PEERKV_VICTIM_ARGS`
//! adds flags to the attacked peer's command line (say `--request-budget 33554432`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::attacker::{attack, far_store_many, fetches, half_sent_stores, summaries, Raw};
use common::process::Peer;
use common::{shutdown, wait_for, within};
use peerkv::{Config, Node};
use tokio::sync::mpsc;

/// Gets timed in each phase.
const GETS: usize = 40;

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `GETS` gets of the keys written, through the victim's REPL: their `elapsed_ms`, sorted.
async fn timed_gets(victim: &mut Peer, keys: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for i in 0..GETS {
        let key = format!("k{}", i % keys);
        let got = victim.ask_json(&format!("get {key}")).await;
        assert_eq!(got["value"], format!("v{}", i % keys), "{got}");
        times.push(got["elapsed_ms"].as_f64().expect("elapsed_ms"));
    }
    times.sort_by(f64::total_cmp);
    times
}

fn p50(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures by hand: cargo test --release -p peerkv-cli --test hostile -- --ignored --nocapture"]
async fn attack_figures() {
    let extra = std::env::var("PEERKV_VICTIM_ARGS").unwrap_or_default();
    let args: Vec<String> =
        ["--json", "--no-mdns", "--ephemeral", "--listen", "/ip4/127.0.0.1/tcp/0"]
            .iter()
            .map(|s| s.to_string())
            .chain(extra.split_whitespace().map(str::to_owned))
            .collect();
    println!("attacked peer: peerkv {}", args.join(" "));
    let mut victim = Peer::spawn(env!("CARGO_BIN_EXE_peerkv"), &args);
    let started = victim.json().await;
    let addr: peerkv::Multiaddr =
        started["listen_addrs"][0].as_str().expect("addr").parse().expect("multiaddr");
    let pid = victim.child.id().expect("pid");
    let mut honest = Vec::new();
    for _ in 0..3 {
        let config = Config { bootstrap: vec![addr.clone()], ..Config::local() };
        honest.push(within("spawn", Node::spawn(config)).await.expect("honest peer"));
    }
    let routed = wait_for(Duration::from_secs(30), || async {
        let mut ok = true;
        for node in &honest {
            ok &= node.info().await.is_ok_and(|i| i.routing_table >= 3);
        }
        ok
    })
    .await;
    assert!(routed, "the honest peers never saw each other");
    let keys = 20;
    for i in 0..keys {
        let put = victim.ask_json(&format!("put k{i} v{i}")).await;
        assert!(put["error"].is_null(), "{put}");
    }
    let idle = timed_gets(&mut victim, keys).await;
    println!("unloaded: get p50 {:.3} ms, RSS {:.1} MiB", p50(&idle), rss(pid) as f64 / 1048576.0);

    type Phase = (&'static str, Vec<Vec<Raw>>);
    let phases: Vec<Phase> = vec![
        ("half-sent 1 MiB requests, 1 identity x 100", vec![half_sent_stores(100)]),
        (
            "half-sent 1 MiB requests, 10 identities x 100",
            (0..10).map(|_| half_sent_stores(100)).collect(),
        ),
        ("summary flood, 3 identities x 300", (0..3).map(|_| summaries(300)).collect()),
        (
            "StoreMany of 2,500 far keys, 4 identities x 10",
            (0..4).map(|_| far_store_many(10, 250)).collect(),
        ),
        ("fetch flood, 3 identities x 2,000", (0..3).map(|_| fetches(2000)).collect()),
    ];
    println!("| attack | RSS growth, peak MiB | get p50 unloaded / under attack, ms | ratio | attackers' answers |");
    println!("|---|---|---|---|---|");
    for (name, identities) in phases {
        let before = rss(pid);
        let (tx, mut rx) = mpsc::channel(16);
        let attackers: Vec<_> =
            identities.into_iter().map(|reqs| attack(addr.clone(), reqs, tx.clone())).collect();
        drop(tx);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sampler = tokio::spawn(async move {
            let mut peak = 0;
            let end = Instant::now() + Duration::from_secs(120);
            while stop_rx.try_recv().is_err() && Instant::now() < end {
                peak = peak.max(rss(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let attacked = timed_gets(&mut victim, keys).await;
        let mut answers = std::collections::BTreeMap::<String, usize>::new();
        let mut failed = 0;
        while let Some(outcome) = within("attackers end", rx.recv()).await {
            for (k, n) in outcome.answers {
                *answers.entry(k).or_default() += n;
            }
            failed += outcome.failed;
        }
        drop(attackers);
        let _ = stop_tx.send(());
        let peak = sampler.await.expect("sampler");
        println!(
            "| {name} | {:.1} | {:.3} / {:.3} | {:.2}x | {answers:?}, {failed} unanswered |",
            peak.saturating_sub(before) as f64 / 1048576.0,
            p50(&idle),
            p50(&attacked),
            p50(&attacked) / p50(&idle),
        );
        // Let the stalled requests pass their read deadline before the next attack.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let stats = victim.ask_json("stats").await;
    println!("victim's admission counters: {}", stats["admission"]);
    shutdown(&honest).await;
}
