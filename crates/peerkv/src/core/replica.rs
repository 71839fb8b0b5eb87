//! The replica side: what a peer answers to a value-protocol request, and which records it
//! writes for it. The same [`serve`] answers remote peers and this peer's own operations.
//!
//! A record is taken only if it checks out (signature, ownership, size, expiry, clock skew) and
//! fits the store's limits (a new key needs room for one more record and its bytes; a key held
//! needs room for the difference; nothing held is ever dropped to make room). A record of a key
//! not held, sent by another peer, is taken only when this peer is among the key's nearest by
//! its own view ([`Guard`]): a peer cannot be filled with keys it has no reason to hold. The
//! merge keeps the greater by [`Record::precedence`]. The driver commits the writes before it sends the
//! response: a replica acknowledges only what is durable.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId};

use super::Now;
use crate::clock::Hlc;
use crate::protocol::{Request, Response};
use crate::record::Record;

/// What a replica holds, read-only: the store behind it is the driver's.
pub trait Holdings {
    /// The record held for `key`.
    fn get(&self, key: &str) -> Option<&Record>;
    /// Records held (tombstones included).
    fn count(&self) -> usize;
    /// Key and value bytes held ([`held_size`] summed).
    fn bytes(&self) -> usize;
    /// Calls `f` with every record held (upkeep's rounds and summaries).
    fn for_each(&self, f: &mut dyn FnMut(&Record));
    /// What the records of `writer` (its protobuf public key, [`Record::writer`]) take here:
    /// the per-writer quotas count against it. A store keeps it in a [`Writers`] tally.
    fn writer_usage(&self, writer: &[u8]) -> Usage;
}

/// Refusals of a StoreMany whose reason is given in full; the others get the reason's first
/// [`SHORT_REASON`] bytes. Each record of the request carries a signature (64 bytes) and a
/// writer key that its refusal does not, so with short reasons the answer is never larger than
/// the request, and it fits the codec's limit whatever the batch.
pub const FULL_REASONS: usize = 32;
/// See [`FULL_REASONS`].
pub const SHORT_REASON: usize = 40;

fn shorten(mut reason: String) -> String {
    if reason.len() > SHORT_REASON {
        let mut end = SHORT_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

/// The bytes a record takes against `--max-store-bytes`: its key and value.
pub fn held_size(record: &Record) -> usize {
    record.key.len() + record.value_len()
}

/// Records and bytes ([`held_size`]) held for one writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Records (tombstones included).
    pub records: usize,
    /// Key and value bytes.
    pub bytes: usize,
}

/// A tally of what each writer's records take in a store, kept up to date as records are
/// inserted, replaced and removed (a replaced record leaves its writer's tally and the new one
/// joins its own). One entry per writer that holds anything (~100 bytes each).
#[derive(Debug, Clone, Default)]
pub struct Writers(HashMap<Vec<u8>, Usage>);

impl Writers {
    /// `record` is held now.
    pub fn add(&mut self, record: &Record) {
        self.add_usage(&record.writer, held_size(record));
    }

    /// `record` is held no more (removed, or replaced by another).
    pub fn remove(&mut self, record: &Record) {
        self.remove_usage(&record.writer, held_size(record));
    }

    /// A record of `writer` taking `bytes` ([`held_size`]) is held now.
    pub fn add_usage(&mut self, writer: &[u8], bytes: usize) {
        let usage = self.0.entry(writer.to_vec()).or_default();
        usage.records += 1;
        usage.bytes += bytes;
    }

    /// A record of `writer` taking `bytes` is held no more.
    pub fn remove_usage(&mut self, writer: &[u8], bytes: usize) {
        if let Some(usage) = self.0.get_mut(writer) {
            usage.records = usage.records.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(bytes);
            if usage.records == 0 {
                self.0.remove(writer);
            }
        }
    }

    /// What `writer`'s records take.
    pub fn usage(&self, writer: &[u8]) -> Usage {
        self.0.get(writer).copied().unwrap_or_default()
    }
}

/// What a replica accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest value.
    pub max_value_size: usize,
    /// Most records held.
    pub max_records: usize,
    /// Most key and value bytes held.
    pub max_store_bytes: usize,
    /// Most records of one writer held, counted when another peer sends a new key of it.
    pub max_records_per_writer: usize,
    /// Most key and value bytes of one writer held, counted the same way.
    pub max_bytes_per_writer: usize,
    /// The pollution guard: how near to a new key this peer must be to take it from another
    /// peer. `None`: no guard (every valid record that fits is taken).
    pub guard: Option<Guard>,
}

impl Limits {
    /// The limits of `config`. The guard needs this peer's id: it is on when `config.keypair`
    /// is set (`Node::spawn` sets it before it starts the event loop), with
    /// [`guard_width`]`(config.replication)`.
    pub fn of(config: &crate::Config) -> Self {
        Self {
            max_value_size: config.max_value_size,
            max_records: config.max_records,
            max_store_bytes: config.max_store_bytes,
            max_records_per_writer: config.records_per_writer(),
            max_bytes_per_writer: config.bytes_per_writer(),
            guard: config.keypair.as_ref().map(|k| Guard {
                local: k.public().to_peer_id(),
                nearest: guard_width(config.replication),
            }),
        }
    }
}

/// The pollution guard: a record of a key this peer does not hold, sent by another peer, is
/// taken only when this peer is among the `nearest` peers to the key it knows (itself
/// included, by the XOR ranking of [`placement`](crate::placement)). Keys already held are
/// always merged (updates, tombstones), and this peer's own operations are never refused.
/// When this peer knows fewer than `nearest` others, every key passes: in an overlay that
/// small every peer is near every key.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// This peer.
    pub local: PeerId,
    /// How many of the nearest this peer must be among: [`guard_width`] of R.
    pub nearest: usize,
}

/// How near a replica must be to take a new key: the R + R nearest by its own view.
///
/// - R: the replicas a put writes and an upkeep round hands records to (the R nearest by the
///   sender's view).
/// - Another R for spares and views that differ. A put asks the next candidate in place of each
///   replica that fails, a get widens its reach to the 2R nearest before it says "not found"
///   and repairs the peers it reached, and the sender's view of the key's neighbourhood can
///   miss peers that this peer knows (a newcomer the members exchange has not brought to it
///   yet, a peer it has dropped as down). A Store from an honest sender is refused only when
///   this peer knows R or more peers nearer to the key than the farthest peer the sender
///   writes to, which takes a view far apart from the sender's (at R = 5, five of the ten
///   nearest missing from it).
///
/// The margin costs little: the guard narrows the keys a stranger can place here to 2R/N of the
/// key space (N peers), not to none — a writer that grinds keys finds one that lands near this
/// peer in about N/2R tries. What one writer can make a peer hold is bounded by the per-writer
/// quotas, not by the guard.
pub fn guard_width(replication: usize) -> usize {
    2 * replication.max(1)
}

/// `key` for a message: at most 64 characters (a key may be 1,024 bytes).
fn shown(key: &str) -> String {
    match key.char_indices().nth(64) {
        Some((at, _)) => format!("{:?}…", &key[..at]),
        None => format!("{key:?}"),
    }
}

/// Why `guard` refuses a new `key` from another peer, if it does: `near` lists the peers this
/// peer knows nearest to the key (itself not among them).
fn far_from(key: &str, guard: &Guard, near: NearFn<'_>) -> Result<(), String> {
    let known = near(key, guard.nearest).peers;
    let ranked = crate::placement::rank(
        key,
        known.iter().map(|(peer, _)| *peer).chain(std::iter::once(guard.local)),
    );
    let nearer = ranked.iter().position(|p| *p == guard.local).unwrap_or(ranked.len());
    if nearer < guard.nearest {
        return Ok(());
    }
    Err(format!(
        "not among the {} nearest to key {} ({nearer} peers known nearer): a replica takes a new key only among the key's 2R nearest",
        guard.nearest,
        shown(key),
    ))
}

/// A request answered: the response, and the records to write before it is sent.
#[derive(Debug, Clone)]
pub struct Served {
    /// What to answer.
    pub response: Response,
    /// Records that win over what is held (each replaces the record of its key), in order.
    pub writes: Vec<Record>,
    /// The greatest version accepted, for the clock.
    pub observed: Option<Hlc>,
}

impl Served {
    fn answer(response: Response) -> Self {
        Self { response, writes: Vec::new(), observed: None }
    }

    /// The write of `key` could not be committed: the response says so instead of
    /// acknowledging it (a replica never acknowledges what is not durable).
    pub fn write_failed(&mut self, key: &str, reason: &str) {
        let reason = format!("store write failed: {reason}");
        match &mut self.response {
            Response::StoredMany { stored, rejected } => {
                *stored = stored.saturating_sub(1);
                rejected.push((key.to_owned(), reason));
            }
            response => *response = Response::Rejected { reason },
        }
    }
}

/// What a Fetch answer says of a key's neighbourhood.
#[derive(Debug, Clone, Default)]
pub struct Near {
    /// The peers nearest to the key, with their addresses, nearest first.
    pub peers: Vec<(PeerId, Vec<Multiaddr>)>,
    /// Peers near the key believed down.
    pub down: Vec<PeerId>,
}

/// The neighbourhood of a key (at most `n` peers of each kind), from the routing view and the
/// suspects: lent by the driver.
pub type NearFn<'a> = &'a mut dyn FnMut(&str, usize) -> Near;

/// Answers `request` from `holdings`. `remote` is false when this peer asks itself (then a
/// Fetch names no peers). A `Summary` needs the upkeep's view of who should hold what, and a
/// `Members` exchange the members table ([`Members::answer`](super::members::Members::answer));
/// the driver answers them there, and here they are refused.
pub fn serve(
    request: Request,
    remote: bool,
    holdings: &dyn Holdings,
    near: NearFn<'_>,
    limits: Limits,
    now: Now,
) -> Served {
    match request {
        Request::Store { record } => {
            let mut plan = Plan::new(holdings, limits, remote);
            match plan.take(record, near, now) {
                Ok(version) => Served {
                    response: Response::Stored { version },
                    observed: plan.observed,
                    writes: plan.into_writes(),
                },
                Err(reason) => Served::answer(Response::Rejected { reason }),
            }
        }
        Request::StoreMany { records } => {
            let mut plan = Plan::new(holdings, limits, remote);
            let mut stored = 0;
            let mut rejected = Vec::new();
            for record in records {
                let key = record.key.clone();
                match plan.take(record, &mut *near, now) {
                    Ok(_) => stored += 1,
                    Err(reason) => {
                        let reason =
                            if rejected.len() < FULL_REASONS { reason } else { shorten(reason) };
                        rejected.push((key, reason));
                    }
                }
            }
            Served {
                response: Response::StoredMany { stored, rejected },
                observed: plan.observed,
                writes: plan.into_writes(),
            }
        }
        Request::Fetch { key, near: wanted, version_only } => {
            let near = if remote {
                near(&key, usize::from(wanted).min(crate::protocol::MAX_NEAR))
            } else {
                Near::default()
            };
            let record = holdings.get(&key).filter(|r| !r.is_expired(now.wall_ms));
            Served::answer(if version_only {
                Response::Version {
                    held: record.map(Record::stamp),
                    near: near.peers,
                    down: near.down,
                }
            } else {
                Response::Found { record: record.cloned(), near: near.peers, down: near.down }
            })
        }
        Request::Digest { entries } => {
            let keys = entries
                .into_iter()
                .filter(|(key, version)| match holdings.get(key) {
                    None => true,
                    Some(held) => held.version < *version || held.is_expired(now.wall_ms),
                })
                .map(|(key, _)| key)
                .collect();
            Served::answer(Response::Missing { keys })
        }
        Request::Summary { .. } => {
            Served::answer(Response::Rejected { reason: "a summary needs its sender".into() })
        }
        Request::Members { .. } => Served::answer(Response::Rejected {
            reason: "a members exchange is answered from the members table".into(),
        }),
        Request::Malformed { reason } | Request::Refused { reason } => {
            Served::answer(Response::Rejected { reason })
        }
    }
}

/// The writes one request makes, with the store's counts as they will be after them.
struct Plan<'a> {
    holdings: &'a dyn Holdings,
    limits: Limits,
    /// Whether another peer sent the request (the guard applies).
    remote: bool,
    /// Records that win, by key (a later one of the same key replaces an earlier).
    planned: HashMap<String, Record>,
    order: Vec<String>,
    count: usize,
    bytes: usize,
    /// What the writers met so far take after the planned writes.
    writers: HashMap<Vec<u8>, Usage>,
    observed: Option<Hlc>,
}

impl<'a> Plan<'a> {
    fn new(holdings: &'a dyn Holdings, limits: Limits, remote: bool) -> Self {
        Self {
            holdings,
            limits,
            remote,
            planned: HashMap::new(),
            order: Vec::new(),
            count: holdings.count(),
            bytes: holdings.bytes(),
            writers: HashMap::new(),
            observed: None,
        }
    }

    /// Checks and merges one record; returns the version held for its key afterwards.
    fn take(&mut self, record: Record, near: NearFn<'_>, now: Now) -> Result<Hlc, String> {
        let limits = self.limits;
        record.check(limits.max_value_size, now.wall_ms).map_err(|e| e.to_string())?;
        self.observed = self.observed.max(Some(record.version));
        let held = self.planned.get(&record.key).or_else(|| self.holdings.get(&record.key));
        if let Some(held) = held {
            if record.precedence(held) != std::cmp::Ordering::Greater {
                return Ok(held.version);
            }
        }
        // The record it replaces: its writer and size.
        let replaced = held.map(|h| (h.writer.clone(), held_size(h)));
        let before = replaced.as_ref().map(|(_, size)| *size);
        if before.is_none() && self.remote {
            if let Some(guard) = &limits.guard {
                far_from(&record.key, guard, near)?;
            }
            self.within_quota(&record)?;
        }
        if before.is_none() && self.count >= limits.max_records {
            return Err(format!(
                "store full: {} records held (limit {}, --max-records); existing keys can still be updated",
                self.count, limits.max_records
            ));
        }
        let after = self.bytes - before.unwrap_or(0) + held_size(&record);
        if after > limits.max_store_bytes && after > self.bytes {
            return Err(format!(
                "store full: {after} bytes would be held (limit {}, --max-store-bytes)",
                limits.max_store_bytes
            ));
        }
        if let Some((writer, size)) = replaced {
            let usage = self.usage(&writer);
            usage.records = usage.records.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(size);
        }
        let usage = self.usage(&record.writer);
        usage.records += 1;
        usage.bytes += held_size(&record);
        if before.is_none() {
            self.count += 1;
        }
        self.bytes = after;
        let version = record.version;
        if !self.planned.contains_key(&record.key) {
            self.order.push(record.key.clone());
        }
        self.planned.insert(record.key.clone(), record);
        Ok(version)
    }

    /// What `writer`'s records take after the planned writes.
    fn usage(&mut self, writer: &[u8]) -> &mut Usage {
        let holdings = self.holdings;
        self.writers.entry(writer.to_vec()).or_insert_with(|| holdings.writer_usage(writer))
    }

    /// Why a new key of `record`'s writer does not fit the per-writer quotas, if it does not.
    fn within_quota(&mut self, record: &Record) -> Result<(), String> {
        let limits = self.limits;
        let usage = *self.usage(&record.writer);
        if usage.records >= limits.max_records_per_writer {
            return Err(format!(
                "writer quota: {} records of this writer held (limit {}, --max-records-per-writer); keys already held can still be updated",
                usage.records, limits.max_records_per_writer
            ));
        }
        let after = usage.bytes + held_size(record);
        if after > limits.max_bytes_per_writer {
            return Err(format!(
                "writer quota: {after} bytes of this writer would be held (limit {}, --max-bytes-per-writer); keys already held can still be updated",
                limits.max_bytes_per_writer
            ));
        }
        Ok(())
    }

    fn into_writes(mut self) -> Vec<Record> {
        self.order.iter().filter_map(|k| self.planned.remove(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use libp2p::identity::Keypair;

    use super::*;
    use crate::placement::rank;

    const MS: u64 = 1_700_000_000_000;

    #[derive(Default)]
    struct Mem(HashMap<String, Record>);

    impl Holdings for Mem {
        fn get(&self, key: &str) -> Option<&Record> {
            self.0.get(key)
        }
        fn count(&self) -> usize {
            self.0.len()
        }
        fn bytes(&self) -> usize {
            self.0.values().map(held_size).sum()
        }
        fn for_each(&self, f: &mut dyn FnMut(&Record)) {
            self.0.values().for_each(f);
        }
        fn writer_usage(&self, writer: &[u8]) -> Usage {
            let mine = self.0.values().filter(|r| r.writer == writer);
            mine.fold(Usage::default(), |u, r| Usage {
                records: u.records + 1,
                bytes: u.bytes + held_size(r),
            })
        }
    }

    fn now() -> Now {
        Now { mono: Duration::ZERO, wall_ms: MS }
    }

    fn record(writer: &Keypair, key: &str, ms: u64) -> Record {
        Record::sign(writer, key.into(), Some(b"v".to_vec()), Hlc::new(ms, 0), None).unwrap()
    }

    /// This peer, the others it knows, and its limits with the guard of R = 2 (width 4).
    struct Replica {
        local: PeerId,
        others: Vec<PeerId>,
        limits: Limits,
        store: Mem,
    }

    impl Replica {
        fn new(others: usize) -> Self {
            let local = PeerId::random();
            let guard = Some(Guard { local, nearest: guard_width(2) });
            let limits = Limits {
                max_value_size: 1024,
                max_records: 100_000,
                max_store_bytes: 1 << 30,
                max_records_per_writer: usize::MAX,
                max_bytes_per_writer: usize::MAX,
                guard,
            };
            Self {
                local,
                others: (0..others).map(|_| PeerId::random()).collect(),
                limits,
                store: Mem::default(),
            }
        }

        /// This peer's place among all it knows for `key` (0 = nearest).
        fn place(&self, key: &str) -> usize {
            let all = rank(key, self.others.iter().copied().chain([self.local]));
            all.iter().position(|p| *p == self.local).unwrap()
        }

        /// A key for which this peer's place satisfies `want`.
        fn key(&self, want: impl Fn(usize) -> bool) -> String {
            (0..10_000).map(|i| format!("key-{i}")).find(|k| want(self.place(k))).unwrap()
        }

        fn serve(&mut self, request: Request, remote: bool) -> Response {
            let others = self.others.clone();
            let mut near = |key: &str, n: usize| Near {
                peers: rank(key, others.iter().copied())
                    .into_iter()
                    .take(n)
                    .map(|p| (p, Vec::new()))
                    .collect(),
                down: Vec::new(),
            };
            let served = serve(request, remote, &self.store, &mut near, self.limits, now());
            for w in served.writes {
                self.store.0.insert(w.key.clone(), w);
            }
            served.response
        }
    }

    #[test]
    fn a_new_key_is_taken_only_near_it() {
        let writer = Keypair::generate_ed25519();
        let mut replica = Replica::new(30);
        let near = replica.key(|at| at < 4);
        let far = replica.key(|at| at >= 4);
        let response = replica.serve(Request::Store { record: record(&writer, &near, MS) }, true);
        assert!(matches!(response, Response::Stored { .. }), "{response:?}");
        let response = replica.serve(Request::Store { record: record(&writer, &far, MS) }, true);
        let Response::Rejected { reason } = response else { panic!("{response:?}") };
        assert!(reason.starts_with(&format!("not among the 4 nearest to key {far:?}")), "{reason}");
        assert!(replica.store.get(&far).is_none());

        // This peer's own operations are never refused, and a key held is always merged.
        let response = replica.serve(Request::Store { record: record(&writer, &far, MS) }, false);
        assert!(matches!(response, Response::Stored { .. }), "{response:?}");
        let tombstone =
            Record::sign(&writer, far.clone(), None, Hlc::new(MS + 1, 0), None).unwrap();
        let response = replica.serve(Request::Store { record: tombstone }, true);
        assert!(matches!(response, Response::Stored { .. }), "{response:?}");
        assert!(replica.store.get(&far).unwrap().value.is_none());
    }

    #[test]
    fn a_batch_keeps_the_near_and_names_the_far() {
        let writer = Keypair::generate_ed25519();
        let mut replica = Replica::new(30);
        let keys: Vec<String> = (0..200).map(|i| format!("batch-{i}")).collect();
        let near = keys.iter().filter(|k| replica.place(k) < 4).count();
        let records = keys.iter().map(|k| record(&writer, k, MS)).collect();
        let response = replica.serve(Request::StoreMany { records }, true);
        let Response::StoredMany { stored, rejected } = response else { panic!("{response:?}") };
        assert_eq!((stored as usize, rejected.len()), (near, 200 - near));
        assert!(near > 0 && near < 100, "{near} of 200 near with 4 of 31 peers");
        assert!(rejected.iter().all(|(k, why)| replica.place(k) >= 4 && why.contains("not among")));
        assert_eq!(replica.store.count(), near);
    }

    /// A batch of tiny records that are all refused gets an answer no larger than the batch
    /// (it must fit the codec's limit, which the batch met): after the first reasons, each
    /// refusal's reason is cut short.
    #[test]
    fn a_refused_batch_is_answered_in_fewer_bytes_than_it_took() {
        let writer = Keypair::generate_ed25519();
        let mut replica = Replica::new(30);
        let keys: Vec<String> = (0..5_000)
            .map(|i| format!("k{i}"))
            .filter(|k| replica.place(k) >= 4)
            .take(3_000)
            .collect();
        let records = keys.iter().map(|k| record(&writer, k, MS)).collect();
        let request = Request::StoreMany { records };
        let sent = crate::protocol::encode(&request).unwrap().len();
        let response = replica.serve(request, true);
        let answer = crate::protocol::encode(&response).unwrap().len();
        let Response::StoredMany { stored: 0, rejected } = response else { panic!("{response:?}") };
        assert_eq!(rejected.len(), 3_000);
        assert!(rejected[..FULL_REASONS].iter().all(|(_, why)| why.len() > SHORT_REASON));
        assert!(answer < sent, "answer {answer} bytes for a batch of {sent}");
    }

    /// The figure, through the core: one writer sends 10,000 valid records in four
    /// StoreMany batches of 2,500.
    fn flood(replica: &mut Replica, writer: &Keypair, keys: &[String]) -> (usize, Vec<String>) {
        let mut stored = 0;
        let mut reasons = Vec::new();
        for batch in keys.chunks(2_500) {
            let records = batch.iter().map(|k| record(writer, k, MS)).collect();
            match replica.serve(Request::StoreMany { records }, true) {
                Response::StoredMany { stored: s, rejected } => {
                    stored += s as usize;
                    reasons.extend(rejected.into_iter().map(|(_, why)| why));
                }
                other => panic!("{other:?}"),
            }
        }
        (stored, reasons)
    }

    #[test]
    fn one_writer_holds_at_most_its_quota() {
        let (writer, honest) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        // Three others: every key is near (the guard lets everything through).
        let mut replica = Replica::new(3);
        replica.limits.max_records_per_writer = 1_000;
        let keys: Vec<String> = (0..10_000).map(|i| format!("flood-{i}")).collect();
        let (stored, reasons) = flood(&mut replica, &writer, &keys);
        assert_eq!((stored, reasons.len()), (1_000, 9_000));
        // The first reasons in full, the rest cut short (see FULL_REASONS).
        assert!(reasons.iter().take(FULL_REASONS).all(|r| r.starts_with(
            "writer quota: 1000 records of this writer held (limit 1000, --max-records-per-writer)"
        )));
        assert!(reasons.iter().all(|r| r.starts_with("writer quota: 1000 records")));
        assert_eq!(replica.store.writer_usage(&writer.public().encode_protobuf()).records, 1_000);

        // Keys held are still updated past the quota; another writer is not affected.
        let held = replica.store.0.keys().next().unwrap().clone();
        let update = record(&writer, &held, MS + 1);
        let response = replica.serve(Request::Store { record: update }, true);
        assert!(matches!(response, Response::Stored { .. }), "{response:?}");
        let response = replica.serve(Request::Store { record: record(&honest, "other", MS) }, true);
        assert!(matches!(response, Response::Stored { .. }), "{response:?}");
        // This peer's own operations are not counted against a quota.
        let own = record(&writer, "own", MS);
        assert!(matches!(
            replica.serve(Request::Store { record: own }, false),
            Response::Stored { .. }
        ));

        // The byte quota: 1,000 bytes hold 90 records of 11 bytes (a 10-byte key, 1-byte value).
        let mut replica = Replica::new(3);
        replica.limits.max_bytes_per_writer = 1_000;
        let keys: Vec<String> = (0..200).map(|i| format!("bytes-{i:04}")).collect();
        let (stored, reasons) = flood(&mut replica, &writer, &keys);
        assert_eq!(stored, 90);
        assert!(reasons[0].contains("(limit 1000, --max-bytes-per-writer)"), "{}", reasons[0]);
    }

    #[test]
    fn with_the_guard_no_far_key_is_taken() {
        let writer = Keypair::generate_ed25519();
        let mut replica = Replica::new(30);
        replica.limits.max_records_per_writer = 1_000;
        let far: Vec<String> = (0..100_000)
            .map(|i| format!("far-{i}"))
            .filter(|k| replica.place(k) >= 4)
            .take(10_000)
            .collect();
        let (stored, reasons) = flood(&mut replica, &writer, &far);
        assert_eq!((stored, reasons.len()), (0, 10_000));
        assert!(reasons.iter().all(|r| r.starts_with("not among the 4 nearest")));
        // Arbitrary keys: the near ones are taken up to the quota.
        let any: Vec<String> = (0..10_000).map(|i| format!("any-{i}")).collect();
        let near = any.iter().filter(|k| replica.place(k) < 4).count();
        let (stored, _) = flood(&mut replica, &writer, &any);
        assert_eq!(stored, near.min(1_000), "{near} of 10,000 near");
    }

    #[test]
    fn the_store_tallies_each_writer() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (ka, kb) = (a.public().encode_protobuf(), b.public().encode_protobuf());
        let mut store = crate::store::Store::new();
        store.put_merge(record(&a, "k1", MS)).unwrap();
        store.put_merge(record(&a, "k2", MS)).unwrap();
        assert_eq!(store.writer_usage(&ka), Usage { records: 2, bytes: 6 });
        // b's newer record of k1 moves it from a's tally to b's; an older one changes nothing.
        store.put_merge(record(&b, "k1", MS + 1)).unwrap();
        store.put_merge(record(&a, "k1", MS)).unwrap();
        assert_eq!(store.writer_usage(&ka), Usage { records: 1, bytes: 3 });
        assert_eq!(store.writer_usage(&kb), Usage { records: 1, bytes: 3 });
        store.queue_remove("k2").unwrap();
        assert_eq!(store.writer_usage(&ka), Usage::default());
        // Reopened from disk, the tally is rebuilt.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let mut store = crate::store::Store::open(&path).unwrap();
        store.put_merge(record(&a, "k1", MS)).unwrap();
        drop(store);
        let store = crate::store::Store::open(&path).unwrap();
        assert_eq!(store.writer_usage(&ka), Usage { records: 1, bytes: 3 });
    }

    #[test]
    fn in_a_small_overlay_every_peer_is_near() {
        let writer = Keypair::generate_ed25519();
        // 3 others + this peer = 4 = the guard's width: every key passes.
        let mut replica = Replica::new(3);
        let records = (0..50).map(|i| record(&writer, &format!("small-{i}"), MS)).collect();
        let response = replica.serve(Request::StoreMany { records }, true);
        assert!(matches!(response, Response::StoredMany { stored: 50, .. }), "{response:?}");
    }
}
