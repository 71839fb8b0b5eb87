//! What the [`Node`](crate::Node) handle asks of the event loop, and the typed reports it gets.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::clock::Hlc;
use crate::error::Result;
use crate::protocol::{Request, Response};
use crate::record::Record;

/// Reply channel of one command.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// One operation for the event loop, carrying its own reply channel.
pub(crate) enum Command {
    Put { key: String, value: Option<Vec<u8>>, ttl: Option<Duration>, reply: Reply<PutReport> },
    Get { key: String, reply: Reply<GetReport> },
    Peers { reply: Reply<Vec<PeerSummary>> },
    Routes { reply: Reply<Vec<RouteEntry>> },
    Closest { key: String, reply: Reply<ClosestReport> },
    Bootstrap { addr: Multiaddr, reply: Reply<BootstrapReport> },
    Dial { addr: Multiaddr, reply: Reply<PeerId> },
    Info { reply: Reply<NodeInfo> },
    Keys { reply: Reply<Vec<KeyEntry>> },
    Stats { reply: Reply<Stats> },
    Upkeep { reply: Reply<UpkeepReport> },
    Request { peer: PeerId, request: Request, reply: Reply<Response> },
    WaitListening { reply: Reply<Vec<Multiaddr>> },
    Shutdown { reply: Reply<()> },
}

/// How a put (or delete) went.
#[derive(Debug, Clone, Serialize)]
pub struct PutReport {
    /// The key.
    pub key: String,
    /// The version written.
    #[serde(serialize_with = "as_json::text")]
    pub version: Hlc,
    /// Replicas that acknowledged by the time the put returned.
    pub acked: usize,
    /// Replicas chosen.
    pub replicas: usize,
    /// Acknowledgements needed (W).
    pub needed: usize,
    /// The peers that acknowledged.
    pub stored_on: Vec<PeerId>,
    /// Set when a replica already held a newer version (a concurrent write won): the greatest
    /// such version.
    #[serde(serialize_with = "as_json::opt_text")]
    pub superseded_by: Option<Hlc>,
    /// Whether the replicas' answers showed a live value under the key before this write (for
    /// a delete, `false` means there was nothing to delete; the tombstone is stored anyway, so
    /// a copy that shows up later stays deleted).
    pub existed: bool,
    /// From the call to the W-th acknowledgement.
    #[serde(rename = "elapsed_ms", serialize_with = "as_json::millis")]
    pub elapsed: Duration,
}

/// How a get went.
#[derive(Debug, Clone, Serialize)]
pub struct GetReport {
    /// The key.
    pub key: String,
    /// The newest record the quorum held (a tombstone when the key was deleted), or `None`.
    #[serde(skip)]
    pub record: Option<Record>,
    /// Replicas that answered by the time the get returned.
    pub replies: usize,
    /// The nearest peers the get settled on (R, or fewer when fewer peers were reachable).
    pub replicas: usize,
    /// Answers needed (Q).
    pub needed: usize,
    /// Requests sent by the time the get returned: the replicas, and nearer peers learnt from
    /// their answers.
    pub asked: usize,
    /// Round trips on the longest path to an answer that counted: 1 when the local routing
    /// table held the replicas, one more per hand-on to nearer peers (0: answered locally).
    pub hops: u8,
    /// From the call to the Q-th answer.
    #[serde(rename = "elapsed_ms", serialize_with = "as_json::millis")]
    pub elapsed: Duration,
}

impl GetReport {
    /// The value, or `None` when the key is missing or deleted.
    pub fn value(&self) -> Option<&[u8]> {
        self.record.as_ref().and_then(|r| r.value.as_deref())
    }
}

/// A peer this node knows.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSummary {
    /// Its id.
    pub peer_id: PeerId,
    /// Addresses known for it.
    pub addrs: Vec<Multiaddr>,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Whether it is in the routing table.
    pub routable: bool,
    /// Whether it speaks the value protocol (`None` until identify or a request tells).
    pub kv: Option<bool>,
}

/// One routing table entry.
#[derive(Debug, Clone, Serialize)]
pub struct RouteEntry {
    /// Bucket index: log2 of the XOR distance to the local peer.
    pub bucket: u32,
    /// The peer.
    pub peer_id: PeerId,
    /// Its addresses.
    pub addrs: Vec<Multiaddr>,
}

/// The result of `closest KEY`.
#[derive(Debug, Clone, Serialize)]
pub struct ClosestReport {
    /// The key.
    pub key: String,
    /// Peers by distance to the key, nearest first, the local peer among them.
    pub peers: Vec<ClosestPeer>,
    /// How long the lookup took.
    #[serde(rename = "elapsed_ms", serialize_with = "as_json::millis")]
    pub elapsed: Duration,
}

/// One peer in a [`ClosestReport`].
#[derive(Debug, Clone, Serialize)]
pub struct ClosestPeer {
    /// The peer.
    pub peer_id: PeerId,
    /// log2 of its XOR distance to the key.
    pub distance_log2: Option<u32>,
    /// Whether it is the local peer.
    pub local: bool,
    /// Whether it would hold a replica (among the R nearest value-protocol peers).
    pub replica: bool,
}

/// The result of a bootstrap.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapReport {
    /// The peer bootstrapped from.
    pub peer_id: PeerId,
    /// Peers in the routing table afterwards.
    pub routing_table: usize,
}

/// What `info` shows.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// The local peer id.
    pub peer_id: PeerId,
    /// Dialable listen addresses, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Open connections' peers.
    pub connected_peers: usize,
    /// Open connections (more than `connected_peers` when two peers dialed each other at once).
    pub connections: usize,
    /// Peers in the routing table.
    pub routing_table: usize,
    /// Peers known to speak the value protocol.
    pub kv_peers: usize,
    /// Members of the one-hop view (every value-protocol peer heard of, up to 2,048).
    pub members: usize,
    /// Records held locally (tombstones included).
    pub records: usize,
    /// Key and value bytes held.
    pub bytes: usize,
    /// Replication factor R.
    pub replication: usize,
    /// Operations in flight.
    pub pending_ops: usize,
    /// Connections opened since the start, both ways (a figure that keeps growing on an idle
    /// overlay means lookups or redials are still running).
    pub connections_opened: u64,
    /// Kademlia lookups running, the bootstrap's bucket refreshes included (a bootstrap runs one
    /// lookup per bucket, one after another: on a busy machine they go on for a while).
    pub lookups_running: usize,
    /// Kademlia requests this peer's lookups sent since the start (a join is one lookup of our
    /// own id: at most one request per peer of the overlay).
    pub kad_requests: u64,
    /// In a private swarm (`--psk`), the key's fingerprint (libp2p-pnet's, the same as
    /// go-libp2p's: peers whose fingerprints differ cannot connect); `None` in an open swarm.
    pub psk_fingerprint: Option<String>,
    /// Store transactions committed since the start: with a data directory each is one fsync
    /// and holds every write queued while the one before committed (group commit), so under
    /// concurrent writes it grows slower than `records_committed`. In memory, one per write.
    pub store_commits: u64,
    /// Records committed to the store since the start.
    pub records_committed: u64,
    /// Store commits that failed (their writes were refused, nothing of them is held).
    pub store_commits_failed: u64,
    /// Store writes queued and not yet committed.
    pub store_writes_queued: usize,
}

/// A record held locally, as `keys` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEntry {
    /// The key.
    pub key: String,
    /// Its version.
    #[serde(serialize_with = "as_json::text")]
    pub version: Hlc,
    /// Who wrote it.
    pub writer: Option<PeerId>,
    /// Value size in bytes.
    pub size: usize,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// Whether this peer is among the key's R closest (by its routing table): a replica of
    /// record, not just a holder of a copy.
    pub replica: bool,
    /// When it expires (ms since the Unix epoch), if ever.
    pub expires_at: Option<u64>,
}

/// Counters of this peer's store and upkeep, for `stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Records held (tombstones included).
    pub records: usize,
    /// Tombstones among them.
    pub tombstones: usize,
    /// Key and value bytes held.
    pub bytes: usize,
    /// Upkeep rounds run.
    pub upkeep_rounds: u64,
    /// Summary messages sent.
    pub summaries_sent: u64,
    /// Digest messages sent.
    pub digests_sent: u64,
    /// `(key, version)` entries in them.
    pub digest_entries_sent: u64,
    /// Encoded bytes of the summaries and digests sent.
    pub digest_bytes_sent: u64,
    /// Summary and digest messages received.
    pub digests_received: u64,
    /// Records sent because a replica lacked them (hand-off, restoring R copies).
    pub records_pushed: u64,
    /// Encoded bytes of those records.
    pub push_bytes_sent: u64,
    /// Records removed because they expired or were old tombstones.
    pub records_removed: u64,
    /// How long the last round took to plan and send, in ms.
    pub last_round_ms: f64,
    /// Requests of puts and gets sent a second time because their connection closed before
    /// the answer came.
    pub requests_resent: u64,
    /// Liveness probes this peer sent that were answered ([`crate::alive`]).
    pub probes_answered: u64,
    /// What admission control held and refused ([`crate::admission`]).
    pub admission: crate::admission::AdmissionStats,
}

/// What one upkeep round sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpkeepReport {
    /// Summary messages sent (one per peer that should hold some of our keys).
    pub summaries: u64,
    /// Digest messages sent.
    pub digests: u64,
    /// Entries in them.
    pub entries: u64,
    /// Encoded bytes of the summaries and digests.
    pub digest_bytes: u64,
    /// Records removed (expired, old tombstones).
    pub removed: u64,
}

/// How the reports read in JSON (the binary's `--json`): versions as the `ms.counter` text they
/// display as, durations as milliseconds (`elapsed_ms`, to the microsecond).
mod as_json {
    use std::fmt::Display;
    use std::time::Duration;

    use serde::Serializer;

    pub(super) fn text<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(super) fn opt_text<T: Display, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
    }
}
