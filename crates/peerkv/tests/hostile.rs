//! Hostile peers against one peer of an honest overlay: bare libp2p swarms (several identities)
//! that open many value-protocol requests of 1 MiB and stop half-way, flood upkeep requests
//! (Summary, StoreMany), and flood Fetches. The attacked peer's honest puts and gets keep
//! succeeding, nothing honest changes, and its byte budget's counters never pass the budget.
//!
//! Figures (latencies under attack) are printed, never asserted: the machines are shared.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cluster, percentiles, shutdown, within, AbortOnDrop};
use futures::prelude::*;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, Codec, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol, Swarm};
use peerkv::protocol::{decode, encode, KV_PROTOCOL};
use peerkv::{Config, Hlc, Record, Request, Response};
use tokio::sync::mpsc;

/// The longest an attacker's task runs, whatever happens to the test.
const LIFETIME: Duration = Duration::from_secs(60);

/// What an attacker writes on one stream: the first `len` bytes of `bytes`, then (with
/// `stall`) nothing more, without closing the stream.
#[derive(Debug, Clone)]
struct Raw {
    bytes: Arc<Vec<u8>>,
    len: usize,
    stall: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Raw;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Raw>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("an attacker serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(8 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Raw) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req.bytes[..req.len]).await?;
        io.flush().await?;
        if req.stall {
            future::pending::<()>().await;
        }
        Ok(())
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

type Attacker = Swarm<request_response::Behaviour<RawCodec>>;

fn attacker() -> Attacker {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .expect("tcp")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(KV_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default()
                    .with_request_timeout(LIFETIME)
                    .with_max_concurrent_streams(1000),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(LIFETIME))
        .build()
}

/// What the attacked peer answered one attacker.
#[derive(Debug, Default)]
struct Outcome {
    /// Answers by kind: `Rejected` split by the start of its reason ("busy", "rate limit", …).
    answers: HashMap<String, usize>,
    /// Requests that got no answer (stream reset, dropped at the read deadline, connection
    /// closed).
    failed: usize,
}

fn kind_of(bytes: &[u8]) -> String {
    match decode::<Response>(bytes) {
        Ok(Response::Rejected { reason }) => {
            format!("rejected: {}", reason.split(':').next().unwrap_or_default())
        }
        Ok(Response::Stored { .. }) => "stored".into(),
        Ok(Response::StoredMany { .. }) => "stored many".into(),
        Ok(Response::Found { .. }) => "found".into(),
        Ok(Response::Mismatch { .. }) => "mismatch".into(),
        Ok(other) => format!("{other:?}").chars().take(20).collect(),
        Err(_) => "undecodable".into(),
    }
}

/// One attacker: connects to `victim`, sends every request of `requests` at once, and reports
/// the answers once all came or failed (or `LIFETIME` passed).
fn attack(victim: Multiaddr, requests: Vec<Raw>, done: mpsc::Sender<Outcome>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut swarm = attacker();
        let peer = victim
            .iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                _ => None,
            })
            .expect("the victim's address names it");
        swarm.dial(victim).expect("dial");
        let mut outcome = Outcome::default();
        let run = async {
            loop {
                if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                    break;
                }
            }
            let total = requests.len();
            for raw in requests {
                swarm.behaviour_mut().send_request(&peer, raw);
            }
            let mut ended = 0;
            while ended < total {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    }) => {
                        *outcome.answers.entry(kind_of(&response)).or_default() += 1;
                        ended += 1;
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                        outcome.failed += 1;
                        ended += 1;
                    }
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(LIFETIME, run).await;
        let _ = done.send(outcome).await;
    }))
}

fn raw(request: &Request) -> Raw {
    let bytes = encode(request).expect("encodes");
    Raw { len: bytes.len(), bytes: Arc::new(bytes), stall: false }
}

/// 1 MiB Stores that stop half-way: the attacked peer reads 512 KiB of each and waits.
fn half_sent_stores(n: usize) -> Vec<Raw> {
    let kp = Keypair::generate_ed25519();
    let record = Record::sign(&kp, "big".into(), Some(vec![7; 1 << 20]), Hlc::new(1, 0), None)
        .expect("signs");
    let whole = raw(&Request::Store { record });
    let half = Raw { len: whole.len / 2, stall: true, ..whole };
    vec![half; n]
}

fn summaries(n: usize) -> Vec<Raw> {
    let buckets = (0..256u16).map(|b| (b, 40, u64::from(b) * 7919)).collect();
    vec![raw(&Request::Summary { buckets }); n]
}

fn far_store_many(batches: usize, per_batch: usize) -> Vec<Raw> {
    let kp = Keypair::generate_ed25519();
    (0..batches)
        .map(|b| {
            let records = (0..per_batch)
                .map(|i| {
                    Record::sign(
                        &kp,
                        format!("far-{b}-{i}"),
                        Some(vec![1; 64]),
                        Hlc::new(peerkv::clock::now_ms(), 0),
                        None,
                    )
                    .expect("signs")
                })
                .collect();
            raw(&Request::StoreMany { records })
        })
        .collect()
}

fn fetches(n: usize) -> Vec<Raw> {
    vec![raw(&Request::Fetch { key: "anything".into(), near: 20 }); n]
}

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
