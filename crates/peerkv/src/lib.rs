//! # peerkv — a peer-to-peer key-value store on libp2p
//!
//! Every process is an equal peer running one libp2p swarm: Kademlia for routing, mDNS for LAN
//! discovery, identify and ping, and peerkv's own request-response value protocol
//! (`/peerkv/kv/1.0.0`) that stores signed, versioned records on the R peers closest to a key.
//!
//! ```text
//! REPL / one-shot ─> Node (handle) ─mpsc─> EventLoop ─> Swarm (kad, mdns, kv, identify, ping)
//!                     oneshot replies        │
//!                                            └─> Store, Clock, placement (pure)
//! ```
//!
//! Layout:
//! - [`node`]: the cloneable [`Node`] handle, the library's public face.
//! - `event_loop`: owns the swarm and every piece of mutable state.
//! - [`behaviour`]: the composed `NetworkBehaviour` and the transport stack; [`link_delay`]: a
//!   delay on TCP links for benchmarks (a wide-area round trip on loopback).
//! - [`protocol`]: wire types and the codec of the value protocol.
//! - [`admission`]: the limits on what other peers may make this one hold and do.
//! - [`record`], [`clock`], [`placement`]: the pure core — signed records and their merge, the
//!   hybrid logical clock, replica choice and quorum arithmetic.
//! - [`store`], [`data_dir`]: the records a peer holds (an in-memory index; redb on a writer
//!   thread of its own that commits every write queued in one transaction; durable before
//!   acknowledged), its identity and the peers it knew.
//!
//! The faces for people and scripts (the `peerkv` binary: flags, REPL, rendering) live in the
//! `peerkv-cli` crate of the workspace; the benchmark in `peerkv-bench`.
//!
//! ```no_run
//! # async fn demo() -> peerkv::Result<()> {
//! let a = peerkv::Node::spawn(peerkv::Config::local()).await?;
//! let addr = a.listen_addrs().await?[0].clone();
//! let b = peerkv::Node::spawn(peerkv::Config { bootstrap: vec![addr], ..peerkv::Config::local() }).await?;
//! b.put("greeting", "hello").await?;
//! assert_eq!(a.get("greeting").await?.value(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

pub mod admission;
pub mod alive;
pub mod behaviour;
pub mod clock;
pub mod command;
pub mod config;
pub mod core;
pub mod data_dir;
pub mod error;
mod event_loop;
pub mod link_delay;
pub mod node;
pub mod placement;
pub mod protocol;
pub mod record;
pub mod store;
pub mod warm;

pub use clock::Hlc;
pub use command::{
    BootstrapReport, ClosestPeer, ClosestReport, GetReport, KeyEntry, NodeInfo, PeerSummary,
    PutReport, RouteEntry,
};
pub use config::Config;
pub use error::{short_id, Error, Result};
pub use libp2p::{Multiaddr, PeerId};
pub use node::Node;
pub use protocol::{Request, Response};
pub use record::Record;
