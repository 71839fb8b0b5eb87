//! The protocol core: the decisions that make peerkv correct, as state machines with no IO.
//!
//! Each operation ([`PutOp`], [`GetOp`]) takes inputs — an answer, a failure, its deadline —
//! together with an [`Env`] (the time, passed in; the clock and key that sign; what the routing
//! view knows) and returns [`Action`]s: send this request to that peer, repair that replica,
//! learn these addresses, reply to the user. The replica side is [`replica::serve`]: a request
//! and what the store holds in, a response and the records to write out. Quorum arithmetic is
//! [`placement::quorum`](crate::placement::quorum) and nowhere else.
//!
//! The node's event loop is one driver of this core (swarm events in, swarm calls and store
//! writes out); the simulator (`peerkv-sim`) is another, running thousands of peers in virtual
//! time. Neither makes a protocol decision of its own.
//!
//! ```text
//!   driver ──Input──> PutOp / GetOp ──Action──> driver ──Request──> peer (or this peer:
//!     ^                                                                replica::serve)
//!     └──────────────── Answer / Failed / Deadline ─────────────────────┘
//! ```
//!
//! Nothing here panics on what a peer sends: answers for requests an op never made, duplicate
//! answers, answers after it ended and malformed records are ignored or counted as that
//! peer's failure.

pub mod get;
pub mod members;
pub mod membership;
pub mod put;
pub mod replica;
pub mod rtt;
pub mod search;
pub mod tally;
pub mod upkeep;

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};

pub use get::GetOp;
pub use put::PutOp;
pub use rtt::Rtts;
pub use search::{Search, Verdict};
pub use tally::Tally;
pub use upkeep::{Upkeep, UpkeepAction, UpkeepConfig};

use crate::clock::{Clock, Hlc};
use crate::command::{GetReport, PutReport};
use crate::error::Result;
use crate::protocol::{Request, Response};
use crate::record::{Record, MAX_CLOCK_AHEAD_MS};

/// Requests one operation's search may send, per replica wanted (at 10,000 simulated peers, 8
/// per replica stopped about one search in 4,000 while answers still named nearer peers).
pub const SEARCH_BUDGET_PER_REPLICA: usize = 16;
/// ... and at least this many.
pub const SEARCH_BUDGET_MIN: usize = 32;

/// A moment as the core sees it. Both parts are passed in by the driver, never read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Now {
    /// Monotonic time since the driver started: deadlines and elapsed times.
    pub mono: Duration,
    /// Wall-clock milliseconds since the Unix epoch: record versions (HLC) and expiry.
    pub wall_ms: u64,
}

/// Which request of an operation an answer or a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A search's `Fetch`: what the peer holds and the peers it knows nearer.
    Fetch,
    /// A put's `Store`.
    Store,
}

/// What happens to an operation.
#[derive(Debug, Clone)]
pub enum Input {
    /// `peer` answered the `kind` request the operation sent it.
    Answer {
        /// Who answered.
        peer: PeerId,
        /// Which request it answered.
        kind: Kind,
        /// What it said.
        response: Response,
    },
    /// The `kind` request to `peer` failed (no connection, timed out, closed).
    Failed {
        /// Who failed.
        peer: PeerId,
        /// Which request failed.
        kind: Kind,
        /// Why, for the error a user may read.
        reason: String,
    },
    /// The time an [`Action::Wake`] asked for came.
    Wake,
    /// The operation's deadline passed.
    Deadline,
}

/// What an operation asks its driver to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send `request` to `peer` (this peer included: the driver serves it with
    /// [`replica::serve`] and feeds the answer back, never by re-entering the op) and feed
    /// back its answer or failure as [`Input::Answer`] / [`Input::Failed`] with this `kind`.
    Send {
        /// To whom.
        peer: PeerId,
        /// Which request it is, for the answer.
        kind: Kind,
        /// The request.
        request: Request,
    },
    /// Send `record` to `peer` as a `Store` and forget it (read repair): nobody waits.
    Repair {
        /// The stale replica.
        peer: PeerId,
        /// The newest record.
        record: Record,
    },
    /// Addresses of a peer an answer named, so that it can be dialed.
    Learn {
        /// The peer.
        peer: PeerId,
        /// Its addresses (at most [`MAX_NEAR_ADDRS`](crate::protocol::MAX_NEAR_ADDRS)).
        addrs: Vec<Multiaddr>,
    },
    /// Feed [`Input::Wake`] at `at` (the monotonic time of [`Now`]); an op asks for one wake
    /// at a time, and a wake it no longer needs is ignored.
    Wake {
        /// When.
        at: Duration,
    },
    /// The operation's result for whoever started it (sent once; the op may live on).
    Reply(Outcome),
}

/// The result of an operation.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A put's or delete's.
    Put(Result<PutReport>),
    /// A get's.
    Get(Result<GetReport>),
}

/// The settings operations read.
#[derive(Debug, Clone)]
pub struct OpConfig {
    /// R.
    pub replication: usize,
    /// W asked for (`None`: a majority).
    pub write_quorum: Option<usize>,
    /// Q asked for (`None`: a majority).
    pub read_quorum: Option<usize>,
    /// Largest value accepted.
    pub max_value_size: usize,
    /// Deadline of one operation.
    pub timeout: Duration,
    /// Requests one search may send.
    pub search_budget: usize,
    /// Whether mDNS runs (for the hint of a "no peers" error).
    pub mdns: bool,
    /// `--bootstrap` addresses given (for the same hint).
    pub bootstrap: usize,
}

impl OpConfig {
    /// The settings of `config`.
    pub fn of(config: &crate::Config) -> Self {
        Self {
            replication: config.replication,
            write_quorum: config.write_quorum,
            read_quorum: config.read_quorum,
            max_value_size: config.max_value_size,
            timeout: config.timeout,
            search_budget: (SEARCH_BUDGET_PER_REPLICA * config.replication).max(SEARCH_BUDGET_MIN),
            mdns: config.mdns,
            bootstrap: config.bootstrap.len(),
        }
    }

    /// The Fetch a search sends a remote peer: what it holds of `key` (its whole record, or
    /// with `version_only` the record's stamp) and the R peers it knows nearest to it.
    pub fn fetch(&self, key: &str, version_only: bool) -> Request {
        Request::Fetch {
            key: key.to_owned(),
            near: u16::try_from(self.replication).unwrap_or(u16::MAX),
            version_only,
        }
    }
}

/// What the routing view knows of a key when an operation starts.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The value-protocol peers nearest to the key (2R of them is plenty).
    pub nearest: Vec<PeerId>,
    /// Peers believed down (requests to them failed recently): they still count against the
    /// quorum, as failed ([`Search::suspect`]).
    pub suspects: Vec<PeerId>,
    /// Whether any connection is open (a peer with neither table entries nor connections is
    /// alone).
    pub connected: bool,
}

/// What an operation may use besides its own state, lent by the driver for one call.
pub struct Env<'a> {
    /// The time.
    pub now: Now,
    /// This peer.
    pub local: PeerId,
    /// The clock that versions our writes; answers advance it ([`observe`]).
    pub clock: &'a mut Clock,
    /// Signs our records.
    pub keypair: &'a Keypair,
    /// Peers in the routing table (for error messages).
    pub known: usize,
    /// Whether a peer is known not to speak the value protocol (it is never a candidate).
    pub not_kv: &'a dyn Fn(&PeerId) -> bool,
    /// Round-trip estimates: ops order and time their requests by them, and add what they
    /// measure.
    pub rtts: &'a mut Rtts,
}

/// Feeds a version seen from a peer to the clock, clamped to half the skew replicas accept, so
/// a peer with a clock far ahead cannot push our writes past what others take.
pub fn observe(clock: &mut Clock, now: Now, seen: Hlc) {
    clock.observe(seen.min(Hlc::new(now.wall_ms.saturating_add(MAX_CLOCK_AHEAD_MS / 2), 0)));
}

/// A fetched record for `key` as it may count: a valid record for that key, or nothing held;
/// anything else is the replier's failure, with the reason.
///
/// A record equal (signature included) to one another peer sent in the same search passed the
/// same check moments ago (`seen`): its signature is not verified again — replicas mostly send
/// the same record, and verifying is most of the CPU a get spends in our own code.
pub fn vet(
    key: &str,
    record: Option<Record>,
    max_value_size: usize,
    now: Now,
    seen: impl Fn(&Record) -> bool,
) -> std::result::Result<Option<Record>, String> {
    match record {
        Some(r) if r.key != key => Err(format!("sent a record for another key ({:?})", r.key)),
        Some(r) if seen(&r) => Ok(Some(r)),
        Some(r) => match r.check(max_value_size, now.wall_ms) {
            Ok(()) => Ok(Some(r)),
            Err(e) => Err(format!("sent a bad record: {e}")),
        },
        None => Ok(None),
    }
}
