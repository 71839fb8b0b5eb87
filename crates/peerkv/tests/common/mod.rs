//! Helpers for in-process clusters: nodes on 127.0.0.1 with mDNS off, waits on conditions with
//! deadlines, never on clocks.

#![allow(dead_code)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::future::Future;
use std::time::{Duration, Instant};

use peerkv::{Config, Node};

pub mod attacker;

/// Longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {WAIT:?}"),
    }
}

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub async fn wait_for<F, Fut>(deadline: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test configuration: TCP on 127.0.0.1, mDNS off.
pub fn local() -> Config {
    Config::local()
}

/// Starts `n` nodes, the first alone and the others bootstrapped from it, each built from
/// `config(i)`; returns once every node has at least `n / 2` peers in its routing table.
pub async fn cluster(n: usize, config: impl Fn(usize) -> Config) -> Vec<Node> {
    let first = within("spawn", Node::spawn(config(0))).await.expect("spawn node 0");
    let addr = within("listen", first.listen_addrs()).await.expect("listen addrs")[0].clone();
    let mut nodes = vec![first];
    for i in 1..n {
        let c = Config { bootstrap: vec![addr.clone()], ..config(i) };
        nodes.push(within("spawn", Node::spawn(c)).await.expect("spawn node"));
    }
    // A second round lets the early joiners learn of the late ones.
    for node in &nodes[1..] {
        let _ = within("bootstrap", node.bootstrap(addr.clone())).await;
    }
    let want = n / 2;
    for (i, node) in nodes.iter().enumerate() {
        let ok = wait_for(WAIT, || async {
            node.info().await.map(|i| i.routing_table >= want).unwrap_or(false)
        })
        .await;
        assert!(ok, "node {i} never had {want} peers in its routing table");
    }
    nodes
}

/// Waits until every node has every other node in its routing table.
pub async fn full_tables(nodes: &[Node]) {
    let want = nodes.len() - 1;
    for (i, node) in nodes.iter().enumerate() {
        let ok = wait_for(WAIT, || async {
            node.info().await.map(|i| i.routing_table >= want).unwrap_or(false)
        })
        .await;
        assert!(ok, "node {i} never saw all {want} others");
    }
}

/// Aborts a task a test spawned (a bare libp2p swarm standing in for another peer) when the
/// test ends, however it ends.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Shuts every node down.
pub async fn shutdown(nodes: &[Node]) {
    for node in nodes {
        let _ = within("shutdown", node.shutdown()).await;
    }
}

/// Median and 95th percentile of durations, in ms.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.95))
}
