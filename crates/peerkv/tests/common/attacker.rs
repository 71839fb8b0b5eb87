//! Hostile peers: bare libp2p swarms that speak the value protocol's wire format with any
//! bytes, any number of streams at once, and may stop sending half-way. Shared by the library's
//! hostile test and the binary's attack figures (`crates/peerkv-cli/tests/hostile.rs`).

#![allow(dead_code)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::prelude::*;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, Codec, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol, Swarm};
use peerkv::protocol::{decode, encode, KV_PROTOCOL};
use peerkv::{Hlc, Record, Request, Response};
use tokio::sync::mpsc;

use super::AbortOnDrop;

/// The longest an attacker's task runs, whatever happens to the test.
pub const LIFETIME: Duration = Duration::from_secs(60);

/// How long an attacker waits for one answer: a stalled request ends (as failed) after it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What an attacker writes on one stream: the first `len` bytes of `bytes`, then (with
/// `stall`) nothing more, without closing the stream.
#[derive(Debug, Clone)]
pub struct Raw {
    bytes: Arc<Vec<u8>>,
    len: usize,
    stall: bool,
}

impl Raw {
    /// `bytes`, all of them, then the stream's end.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Raw { len: bytes.len(), bytes: Arc::new(bytes), stall: false }
    }
}

/// Writes [`Raw`] requests, reads whole answers; an inbound request is counted in `inbound`
/// and refused (the stream is dropped unanswered).
#[derive(Debug, Clone, Default)]
pub struct RawCodec {
    pub inbound: Arc<std::sync::atomic::AtomicUsize>,
}

impl Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Raw;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Raw>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.inbound.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

pub type Attacker = Swarm<request_response::Behaviour<RawCodec>>;

fn attacker() -> Attacker {
    raw_swarm(KV_PROTOCOL, ProtocolSupport::Outbound, RawCodec::default())
}

/// A bare swarm that speaks `protocol` (as `support` says) with `codec`.
pub fn raw_swarm(protocol: StreamProtocol, support: ProtocolSupport, codec: RawCodec) -> Attacker {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .expect("tcp")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                codec,
                [(protocol, support)],
                request_response::Config::default()
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(1000),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(LIFETIME))
        .build()
}

/// What the attacked peer answered one attacker.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Answers by kind: `Rejected` split by the start of its reason ("busy", "rate limit", …).
    pub answers: HashMap<String, usize>,
    /// Requests that got no answer (stream reset, dropped at the read deadline, connection
    /// closed).
    pub failed: usize,
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
pub fn attack(victim: Multiaddr, requests: Vec<Raw>, done: mpsc::Sender<Outcome>) -> AbortOnDrop {
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

pub fn raw(request: &Request) -> Raw {
    let bytes = encode(request).expect("encodes");
    Raw { len: bytes.len(), bytes: Arc::new(bytes), stall: false }
}

/// 1 MiB Stores that stop half-way: the attacked peer reads 512 KiB of each and waits.
pub fn half_sent_stores(n: usize) -> Vec<Raw> {
    let kp = Keypair::generate_ed25519();
    let record = Record::sign(&kp, "big".into(), Some(vec![7; 1 << 20]), Hlc::new(1, 0), None)
        .expect("signs");
    let whole = raw(&Request::Store { record });
    let half = Raw { len: whole.len / 2, stall: true, ..whole };
    vec![half; n]
}

pub fn summaries(n: usize) -> Vec<Raw> {
    let buckets = (0..256u16).map(|b| (b, 40, u64::from(b) * 7919)).collect();
    vec![raw(&Request::Summary { buckets }); n]
}

pub fn far_store_many(batches: usize, per_batch: usize) -> Vec<Raw> {
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

pub fn fetches(n: usize) -> Vec<Raw> {
    vec![raw(&Request::Fetch { key: "anything".into(), near: 20, version_only: false }); n]
}
