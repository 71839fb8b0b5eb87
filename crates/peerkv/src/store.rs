//! The records a peer holds: an in-memory index over an embedded ACID database (redb) that a
//! thread of its own writes.
//!
//! Reads never touch the disk: [`Store::get`] and [`Store::iter`] read the index of what is
//! committed. Writes are queued ([`Store::queue_records`], [`Store::queue_remove`],
//! [`Store::save_peers`]) as *jobs*, numbered in order: the writer thread ([`writer`]) takes
//! every job queued since its last commit and commits them in one transaction (one fsync per
//! batch), then reports the batch back ([`Store::committed`]); [`Store::apply`] then moves its
//! records into the index. Until then they wait in an overlay of pending writes: a second write
//! of a key merges against the newest pending one ([`Store::latest`]), and the limits count
//! them, but a Fetch does not see them. A batch that fails changes nothing in the index. The
//! event loop holds each answer until the batch with its writes is reported (`store::acks::Acks`), so a
//! replica acknowledges only what survives `kill -9`.
//!
//! Without a database (`--ephemeral`, tests) the same calls commit at once: the index changes
//! when the job is queued and the batch is reported on the next [`Store::try_committed`].
//! The database also keeps the peers last known and the listen addresses, to rejoin after a
//! restart (read once, when the store opens).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use libp2p::{Multiaddr, PeerId};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
};

use crate::core::replica::{Usage, Writers};
use crate::protocol::decode;
use crate::record::Record;

mod acks;
pub mod writer;

pub(crate) use acks::Acks;
use writer::Writer;
pub use writer::{Committer, Done, Job, Op, RedbCommitter, Seq};

/// Records by key, each CBOR-encoded.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Peers last known: peer id → CBOR list of multiaddr strings.
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
/// What this file is.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// The `format` entry in [`META`].
const FORMAT: &str = "peerkv-store/1";

/// Most jobs queued and not yet committed; more are refused (the writer is that far behind).
pub const MAX_QUEUED_JOBS: usize = 4096;

/// Most key and value bytes queued and not yet committed; more are refused.
pub const MAX_QUEUED_BYTES: usize = 256 << 20;

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// The key was new here.
    Inserted,
    /// The incoming record replaced an older one.
    Replaced,
    /// The held record is newer (or the same); nothing changed.
    Kept,
}

/// Why the store cannot open or write.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the database.
    #[error("in use by another process")]
    Locked,
    /// The file is not a peerkv store.
    #[error("not a peerkv store ({0})")]
    Foreign(String),
    /// The file is damaged or unreadable.
    #[error("cannot read the store: {0}")]
    Corrupt(String),
    /// A write failed (or could not be queued); nothing changed.
    #[error("storage error: {0}")]
    Write(String),
}

fn read_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A batch reported back and applied to the index: what the held answers need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The batch's first job.
    pub first: Seq,
    /// Its last job.
    pub last: Seq,
    /// `Err(reason)`: none of its jobs was committed.
    pub result: Result<(), String>,
    /// Records it wrote (zero when it failed).
    pub records: usize,
    /// The committed index's changes: `(key, version before, version after)` (`None`: not
    /// held), for what upkeep keeps per peer.
    pub changes: Vec<(String, Option<crate::clock::Hlc>, Option<crate::clock::Hlc>)>,
}

/// Where jobs go.
enum Backend {
    /// No database: a job is applied to the index when it is queued.
    Memory {
        /// Batches "committed" and not yet reported.
        done: VecDeque<Done>,
    },
    /// The writer thread.
    Thread(Writer),
}

impl Default for Backend {
    fn default() -> Self {
        Backend::Memory { done: VecDeque::new() }
    }
}

/// Records by key.
#[derive(Default)]
pub struct Store {
    /// One record per key: the greatest committed.
    records: BTreeMap<String, Record>,
    /// Sum of key and value bytes committed.
    bytes: usize,
    /// What each writer's records take (pending writes included), for the per-writer quotas.
    writers: Writers,
    /// Writes queued and not yet reported, the newest per key: (its job, the record, or `None`
    /// for a removal).
    pending: HashMap<String, (Seq, Option<Record>)>,
    /// Keys held once every pending write is committed (what the limits count).
    latest_count: usize,
    /// Key and value bytes held once every pending write is committed.
    latest_bytes: usize,
    /// Where jobs go.
    backend: Backend,
    /// Whether a database (or an injected committer) keeps the writes.
    persistent: bool,
    /// The last job's number.
    last_seq: Seq,
    /// Jobs queued and not yet reported.
    queued_jobs: usize,
    /// Key and value bytes queued and not yet reported.
    queued_bytes: usize,
    /// Batches committed, for `info`: with group commit, fewer than the records.
    commits: u64,
    /// Records committed.
    records_committed: u64,
    /// Batches that failed.
    failed_commits: u64,
    /// The peers saved, as read at open and written since.
    saved_peers: Vec<(PeerId, Vec<Multiaddr>)>,
    /// The listen addresses saved, as read at open and written since.
    saved_listen: Vec<Multiaddr>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("records", &self.records.len())
            .field("bytes", &self.bytes)
            .field("pending", &self.pending.len())
            .field("persistent", &self.persistent)
            .finish()
    }
}

/// The store as it will be once every pending write is committed: what a write merges against
/// and what the limits count. Fetches read the [`Store`] itself (committed only).
#[derive(Debug, Clone, Copy)]
pub struct Latest<'a>(&'a Store);

impl Latest<'_> {
    /// The newest record for `key`, pending or committed.
    pub fn get(&self, key: &str) -> Option<&Record> {
        self.0.latest(key)
    }

    /// Keys held once the pending writes are committed.
    pub fn len(&self) -> usize {
        self.0.latest_count
    }

    /// Whether nothing will be held.
    pub fn is_empty(&self) -> bool {
        self.0.latest_count == 0
    }

    /// Key and value bytes held once the pending writes are committed.
    pub fn bytes(&self) -> usize {
        let Latest(store) = self;
        store.latest_bytes
    }

    /// What the records of `writer` take once the pending writes are committed.
    pub fn writer_usage(&self, writer: &[u8]) -> Usage {
        self.0.writers.usage(writer)
    }

    /// Every record, pending ones in place of the committed ones they replace (unordered).
    pub fn for_each(&self, f: &mut dyn FnMut(&Record)) {
        for r in self.0.records.values().filter(|r| !self.0.pending.contains_key(&r.key)) {
            f(r);
        }
        for (_, r) in self.0.pending.values() {
            if let Some(r) = r {
                f(r);
            }
        }
    }
}

impl Store {
    /// An empty in-memory store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose writes `committer` commits, on a writer thread (tests inject
    /// committers that fail or wait).
    ///
    /// # Errors
    /// [`StoreError::Write`] when the thread cannot be started.
    pub fn with_committer(committer: Box<dyn Committer>) -> Result<Self, StoreError> {
        let writer = Writer::spawn(committer)
            .map_err(|e| StoreError::Write(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { backend: Backend::Thread(writer), persistent: true, ..Self::default() })
    }

    /// Opens (or creates) the database at `path`, loads every record, and starts the writer
    /// thread.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process has it open, [`StoreError::Foreign`] when
    /// it is some other redb file, [`StoreError::Corrupt`] when it cannot be read (also when
    /// redb panics on it, which some damaged files make it do). A store that cannot be read is
    /// never overwritten.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // redb asserts (panics) on some damaged files instead of returning an error: one shorter
        // than its header says, found by the `store_open` fuzz target (fuzz/). Such a file is
        // refused like any other that does not read; the panic's message is the reason.
        let (mut store, db) = std::panic::catch_unwind(|| Self::open_unguarded(path))
            .unwrap_or_else(|panic| {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the database library panicked".into());
                Err(StoreError::Corrupt(format!("damaged file: {reason}")))
            })?;
        let writer = Writer::spawn(Box::new(RedbCommitter::new(db)))
            .map_err(|e| StoreError::Write(format!("cannot start the writer thread: {e}")))?;
        store.backend = Backend::Thread(writer);
        store.persistent = true;
        Ok(store)
    }

    /// [`Store::open`] without the guard against redb's panics, and without the thread.
    fn open_unguarded(path: &Path) -> Result<(Self, Database), StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            other => StoreError::Corrupt(other.to_string()),
        })?;
        let mut store = Store::default();
        {
            let tx = db.begin_write().map_err(read_err)?;
            {
                let mut meta = tx.open_table(META).map_err(read_err)?;
                let format = meta.get("format").map_err(read_err)?.map(|v| v.value().to_owned());
                match format.as_deref() {
                    Some(FORMAT) => {}
                    Some(other) => return Err(StoreError::Foreign(format!("format {other:?}"))),
                    None => {
                        // A new file: any table in it besides ours means someone else's data.
                        let tables: Vec<String> = tx
                            .list_tables()
                            .map_err(read_err)?
                            .map(|t| t.name().to_owned())
                            .filter(|n| n != "meta")
                            .collect();
                        if !tables.is_empty() {
                            return Err(StoreError::Foreign(format!("tables {tables:?}")));
                        }
                        meta.insert("format", FORMAT).map_err(read_err)?;
                    }
                }
                tx.open_table(RECORDS).map_err(read_err)?;
                tx.open_table(PEERS).map_err(read_err)?;
            }
            tx.commit().map_err(read_err)?;
        }
        {
            let tx = db.begin_read().map_err(read_err)?;
            let table = tx.open_table(RECORDS).map_err(read_err)?;
            for entry in table.iter().map_err(read_err)? {
                let (key, value) = entry.map_err(read_err)?;
                let record: Record = decode(value.value())
                    .map_err(|e| StoreError::Corrupt(format!("record {:?}: {e}", key.value())))?;
                store.bytes += size(&record);
                store.writers.add(&record);
                store.records.insert(record.key.clone(), record);
            }
            store.latest_bytes = store.bytes;
            store.latest_count = store.records.len();
            // The peers and addresses saved are read here, once, where a damaged page is
            // refused (and a panic of redb's caught) instead of crashing a running peer; an
            // entry that does not parse is skipped.
            let peers = tx.open_table(PEERS).map_err(read_err)?;
            for entry in peers.iter().map_err(read_err)? {
                let (peer, addrs) = entry.map_err(read_err)?;
                let parsed: Option<(PeerId, Vec<String>)> =
                    peer.value().parse().ok().zip(decode(addrs.value()).ok());
                if let Some((peer, addrs)) = parsed {
                    let addrs = addrs.iter().filter_map(|a| a.parse().ok()).collect();
                    store.saved_peers.push((peer, addrs));
                }
            }
            let meta = tx.open_table(META).map_err(read_err)?;
            for entry in meta.iter().map_err(read_err)? {
                let (name, value) = entry.map_err(read_err)?;
                if name.value() == "listen" {
                    store.saved_listen =
                        value.value().split_whitespace().filter_map(|a| a.parse().ok()).collect();
                }
            }
        }
        Ok((store, db))
    }

    /// Whether changes are written to disk.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether `record` fits, counting the writes still pending: a new key needs room for one
    /// more record and its bytes; a key already held needs room for the difference. Nothing
    /// held is ever dropped to make room.
    ///
    /// # Errors
    /// The reason, with the limit and its flag.
    pub fn admits(
        &self,
        record: &Record,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<(), String> {
        let held = self.latest(&record.key).map(size);
        if held.is_none() && self.latest_count >= max_records {
            return Err(format!(
                "store full: {} records held (limit {max_records}, --max-records); existing keys can still be updated",
                self.latest_count
            ));
        }
        let after = self.latest_bytes - held.unwrap_or(0) + size(record);
        if after > max_bytes && after > self.latest_bytes {
            return Err(format!(
                "store full: {after} bytes would be held (limit {max_bytes}, --max-store-bytes)"
            ));
        }
        Ok(())
    }

    /// The newest record for `key`: the pending write if there is one, else the committed.
    pub fn latest(&self, key: &str) -> Option<&Record> {
        match self.pending.get(key) {
            Some((_, pending)) => pending.as_ref(),
            None => self.records.get(key),
        }
    }

    /// The store with its pending writes: what writes merge against.
    pub fn latest_view(&self) -> Latest<'_> {
        Latest(self)
    }

    /// The job that holds the pending write of `key`, if one is pending.
    pub fn pending_seq(&self, key: &str) -> Option<Seq> {
        self.pending.get(key).map(|(seq, _)| *seq)
    }

    /// Queues `records` as one job (one transaction); each that does not win over
    /// [`Store::latest`] is dropped. Returns the job's number, or `None` when nothing was left
    /// to write. The records are visible to [`Store::get`] once the job's batch is applied.
    ///
    /// # Errors
    /// [`StoreError::Write`] when the queue is full or the writer is gone; nothing changed.
    pub fn queue_records(&mut self, records: Vec<Record>) -> Result<Option<Seq>, StoreError> {
        let mut ops: Vec<Op> = Vec::with_capacity(records.len());
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut bytes = 0;
        for record in records {
            let wins = match self.latest(&record.key) {
                None => true,
                Some(held) => record.precedence(held) == Ordering::Greater,
            };
            if !wins {
                continue;
            }
            // Two records of one key in one job: the greater is written, once.
            if let Some(&i) = at.get(&record.key) {
                if let Op::Put(earlier) = &mut ops[i] {
                    if record.precedence(earlier) == Ordering::Greater {
                        bytes = bytes + size(&record) - size(earlier);
                        *earlier = record;
                    }
                }
                continue;
            }
            bytes += size(&record);
            at.insert(record.key.clone(), ops.len());
            ops.push(Op::Put(record));
        }
        if ops.is_empty() {
            return Ok(None);
        }
        self.queue(ops, bytes).map(Some)
    }

    /// Queues the removal of `key` (expired records, old tombstones). Returns whether the key
    /// was held (pending writes counted).
    ///
    /// # Errors
    /// [`StoreError::Write`] when the queue is full or the writer is gone; nothing changed.
    pub fn queue_remove(&mut self, key: &str) -> Result<bool, StoreError> {
        if self.latest(key).is_none() {
            return Ok(false);
        }
        self.queue(vec![Op::Remove(key.to_owned())], 0)?;
        Ok(true)
    }

    /// Queues a job: into the overlay and to the writer (or, in memory, into the index).
    fn queue(&mut self, ops: Vec<Op>, bytes: usize) -> Result<Seq, StoreError> {
        if self.queued_jobs >= MAX_QUEUED_JOBS || self.queued_bytes + bytes > MAX_QUEUED_BYTES {
            return Err(StoreError::Write(format!(
                "the disk is behind: {} writes ({} bytes) wait to be committed — try again later",
                self.queued_jobs, self.queued_bytes
            )));
        }
        let seq = self.last_seq + 1;
        if let Backend::Thread(writer) = &self.backend {
            let job = Job { seq, ops };
            // The writer gets a copy; the overlay keeps the records for reads and merges.
            let overlay: Vec<(String, Option<Record>)> = job
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::Put(r) => Some((r.key.clone(), Some(r.clone()))),
                    Op::Remove(key) => Some((key.clone(), None)),
                    Op::Peers(_) | Op::Listen(_) => None,
                })
                .collect();
            if writer.send(job).is_err() {
                return Err(StoreError::Write("the store's writer thread stopped".into()));
            }
            for (key, record) in overlay {
                self.account(&key.clone(), |s| {
                    s.pending.insert(key, (seq, record));
                });
            }
            self.queued_jobs += 1;
            self.queued_bytes += bytes;
        } else {
            // In memory: committed at once, reported on the next `try_committed`.
            let mut records = 0;
            let mut changes = Vec::new();
            for op in ops {
                let (key, record) = match op {
                    Op::Put(record) => (record.key.clone(), Some(record)),
                    Op::Remove(key) => (key, None),
                    Op::Peers(_) | Op::Listen(_) => continue,
                };
                records += u64::from(record.is_some());
                let before = self.records.get(&key).map(|r| r.version);
                let after = record.as_ref().map(|r| r.version);
                if before != after {
                    changes.push((key.clone(), before, after));
                }
                self.account(&key.clone(), |s| match record {
                    Some(record) => {
                        s.records.insert(key, record);
                    }
                    None => {
                        s.records.remove(&key);
                    }
                });
            }
            self.records_committed += records;
            self.commits += 1;
            if let Backend::Memory { done } = &mut self.backend {
                let result = Ok(());
                done.push_back(Done { first: seq, last: seq, jobs: Vec::new(), result, changes });
            }
        }
        self.last_seq = seq;
        Ok(seq)
    }

    /// Runs `change` on key `key` and keeps the counts and byte sums right.
    fn account(&mut self, key: &str, change: impl FnOnce(&mut Self)) {
        let (latest, committed) = (self.latest(key).map(size), self.records.get(key).map(size));
        let writer = self.latest(key).map(|r| r.writer.clone());
        change(self);
        let (latest_now, committed_now) =
            (self.latest(key).map(size), self.records.get(key).map(size));
        if let (Some(writer), Some(bytes)) = (writer, latest) {
            self.writers.remove_usage(&writer, bytes);
        }
        if let Some(record) = self.latest(key) {
            let (writer, bytes) = (record.writer.clone(), size(record));
            self.writers.add_usage(&writer, bytes);
        }
        self.latest_bytes = self.latest_bytes + latest_now.unwrap_or(0) - latest.unwrap_or(0);
        self.latest_count =
            self.latest_count + usize::from(latest_now.is_some()) - usize::from(latest.is_some());
        self.bytes = self.bytes + committed_now.unwrap_or(0) - committed.unwrap_or(0);
    }

    /// The next batch the writer reports (never, for an in-memory store: its batches are
    /// reported by [`Store::try_committed`]). Cancel-safe: for the event loop's `select!`.
    pub async fn committed(&mut self) -> Done {
        if let Backend::Thread(writer) = &mut self.backend {
            if let Some(done) = writer.recv().await {
                return done;
            }
        }
        std::future::pending().await
    }

    /// A batch already reported, if any (an in-memory store's are reported here, at once).
    pub fn try_committed(&mut self) -> Option<Done> {
        match &mut self.backend {
            Backend::Memory { done } => done.pop_front(),
            Backend::Thread(writer) => writer.try_recv(),
        }
    }

    /// Queues nothing more and waits for the batches still to come: `None` once the writer
    /// committed everything queued and stopped. For shutdown.
    pub async fn close(&mut self) -> Option<Done> {
        match &mut self.backend {
            Backend::Memory { done } => done.pop_front(),
            Backend::Thread(writer) => {
                writer.close();
                writer.recv().await
            }
        }
    }

    /// Applies a reported batch: its records enter the index if it committed; its pending
    /// entries leave the overlay either way (unless a later job wrote the key again). Batches
    /// must be applied in the order they are reported.
    pub fn apply(&mut self, done: Done) -> Committed {
        let ok = done.result.is_ok();
        let mut records = 0;
        let mut changes = done.changes;
        for job in done.jobs {
            self.queued_jobs = self.queued_jobs.saturating_sub(1);
            for op in job.ops {
                let (key, record) = match op {
                    Op::Put(record) => {
                        self.queued_bytes = self.queued_bytes.saturating_sub(size(&record));
                        (record.key.clone(), Some(record))
                    }
                    Op::Remove(key) => (key, None),
                    Op::Peers(_) | Op::Listen(_) => continue,
                };
                records += usize::from(record.is_some());
                let seq = job.seq;
                let before = self.records.get(&key).map(|r| r.version);
                let after = if ok { record.as_ref().map(|r| r.version) } else { before };
                if before != after {
                    changes.push((key.clone(), before, after));
                }
                self.account(&key.clone(), |s| {
                    if ok {
                        match record {
                            Some(record) => {
                                s.records.insert(key.clone(), record);
                            }
                            None => {
                                s.records.remove(&key);
                            }
                        }
                    }
                    if s.pending.get(&key).is_some_and(|(at, _)| *at == seq) {
                        s.pending.remove(&key);
                    }
                });
            }
        }
        if ok {
            // An in-memory store counted its writes when they were queued.
            if matches!(self.backend, Backend::Thread(_)) {
                self.commits += 1;
                self.records_committed += records as u64;
            }
        } else {
            self.failed_commits += 1;
            records = 0;
        }
        Committed { first: done.first, last: done.last, result: done.result, records, changes }
    }

    /// Waits (blocking the thread) until job `seq` is reported, applying every batch on the
    /// way; for the synchronous methods.
    fn wait_for(&mut self, seq: Seq) -> Result<(), StoreError> {
        loop {
            let done = match &mut self.backend {
                Backend::Memory { done } => done.pop_front(),
                Backend::Thread(writer) => writer.recv_blocking(),
            };
            let Some(done) = done else {
                return Err(StoreError::Write("the store's writer thread stopped".into()));
            };
            let committed = self.apply(done);
            if committed.last >= seq {
                return committed.result.map_err(StoreError::Write);
            }
        }
    }

    /// Merges `record` into what is held for its key and waits (blocking the thread) until the
    /// change is committed. Returns what happened and the record held now. For tools and tests:
    /// the event loop queues ([`Store::queue_records`]) and never waits.
    ///
    /// # Errors
    /// [`StoreError::Write`] when the change cannot be committed; then nothing changed.
    pub fn put_merge(&mut self, record: Record) -> Result<(Merged, &Record), StoreError> {
        let outcome = match self.latest(&record.key) {
            None => Merged::Inserted,
            Some(held) if record.precedence(held) == Ordering::Greater => Merged::Replaced,
            Some(_) => Merged::Kept,
        };
        let key = record.key.clone();
        if let Some(seq) = self.queue_records(vec![record])? {
            self.wait_for(seq)?;
        }
        match self.latest(&key) {
            Some(held) => Ok((outcome, held)),
            None => Err(StoreError::Write("the record was removed meanwhile".into())),
        }
    }

    /// The record held (committed) for `key`.
    pub fn get(&self, key: &str) -> Option<&Record> {
        self.records.get(key)
    }

    /// All records committed, by key.
    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Number of keys held (committed; tombstones included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Key and value bytes held (committed).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the records of `writer` (a protobuf public key) take here, pending writes
    /// included (as the limits count them).
    pub fn writer_usage(&self, writer: &[u8]) -> Usage {
        self.writers.usage(writer)
    }

    /// Batches committed since the start (an in-memory store counts one per job).
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Records committed since the start.
    pub fn records_committed(&self) -> u64 {
        self.records_committed
    }

    /// Batches that failed since the start.
    pub fn failed_commits(&self) -> u64 {
        self.failed_commits
    }

    /// Jobs queued and not yet committed.
    pub fn queued(&self) -> usize {
        self.queued_jobs
    }

    /// Queues the list of peers last known, to replace the saved one.
    ///
    /// # Errors
    /// [`StoreError::Write`] when it cannot be queued.
    pub fn save_peers(&mut self, peers: &[(PeerId, Vec<Multiaddr>)]) -> Result<(), StoreError> {
        if !self.persistent {
            return Ok(());
        }
        self.queue(vec![Op::Peers(peers.to_vec())], 0)?;
        self.saved_peers = peers.to_vec();
        Ok(())
    }

    /// Queues the addresses this peer listened on, so a restart can take the same ports.
    ///
    /// # Errors
    /// [`StoreError::Write`] when it cannot be queued.
    pub fn save_listen_addrs(&mut self, addrs: &[Multiaddr]) -> Result<(), StoreError> {
        if !self.persistent {
            return Ok(());
        }
        self.queue(vec![Op::Listen(addrs.to_vec())], 0)?;
        self.saved_listen = addrs.to_vec();
        Ok(())
    }

    /// The addresses saved by [`Store::save_listen_addrs`] (in this run, or the last).
    pub fn load_listen_addrs(&self) -> Vec<Multiaddr> {
        self.saved_listen.clone()
    }

    /// The peers saved by [`Store::save_peers`] (in this run, or the last; entries that did
    /// not parse are skipped).
    pub fn load_peers(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.saved_peers.clone()
    }
}

fn size(r: &Record) -> usize {
    r.key.len() + r.value_len()
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;
    use crate::clock::Hlc;

    fn rec(kp: &Keypair, k: &str, v: &str, ms: u64) -> Record {
        Record::sign(kp, k.into(), Some(v.into()), Hlc::new(ms, 0), None).unwrap()
    }

    #[test]
    fn put_merge_keeps_the_newest() {
        let kp = Keypair::generate_ed25519();
        let mut s = Store::new();
        assert_eq!(s.put_merge(rec(&kp, "k", "a", 2)).unwrap().0, Merged::Inserted);
        assert_eq!(s.put_merge(rec(&kp, "k", "old", 1)).unwrap().0, Merged::Kept);
        assert_eq!(s.get("k").unwrap().value.as_deref(), Some(&b"a"[..]));
        assert_eq!(s.put_merge(rec(&kp, "k", "bb", 3)).unwrap().0, Merged::Replaced);
        assert_eq!(s.bytes(), 3);
        assert_eq!(s.put_merge(rec(&kp, "k", "bb", 3)).unwrap().0, Merged::Kept);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn limits_refuse_new_keys_but_never_drop_what_is_held() {
        let kp = Keypair::generate_ed25519();
        let mut s = Store::new();
        s.put_merge(rec(&kp, "a", "1234", 1)).unwrap();
        assert!(s.admits(&rec(&kp, "b", "1", 1), 1, 1000).unwrap_err().contains("--max-records"));
        assert_eq!(s.admits(&rec(&kp, "a", "99", 1), 1, 1000), Ok(()));
        assert!(s
            .admits(&rec(&kp, "a", "123456789", 1), 10, 6)
            .unwrap_err()
            .contains("--max-store-bytes"));
        assert_eq!(s.admits(&rec(&kp, "a", "12", 1), 10, 2), Ok(()), "shrinking is always allowed");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn records_and_peers_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerkv.redb");
        let kp = Keypair::generate_ed25519();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        {
            let mut s = Store::open(&path).unwrap();
            assert!(s.is_persistent());
            s.put_merge(rec(&kp, "a", "1", 1)).unwrap();
            s.put_merge(rec(&kp, "a", "2", 2)).unwrap();
            s.put_merge(Record::sign(&kp, "b".into(), None, Hlc::new(3, 0), None).unwrap())
                .unwrap();
            s.save_peers(&[(peer, vec![addr.clone()])]).unwrap();
            // A second open while the first is alive is refused.
            assert!(matches!(Store::open(&path), Err(StoreError::Locked)));
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("a").unwrap().value.as_deref(), Some(&b"2"[..]));
        assert!(s.get("b").unwrap().is_tombstone());
        assert_eq!(s.bytes(), 3);
        assert_eq!(s.load_peers(), vec![(peer, vec![addr.clone()])]);
        s.save_listen_addrs(std::slice::from_ref(&addr)).unwrap();
        assert_eq!(s.load_listen_addrs(), vec![addr]);
    }

    #[test]
    fn garbage_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerkv.redb");
        std::fs::write(&path, b"this is not a database, it is a shopping list").unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::Corrupt(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"this is not a database, it is a shopping list");
    }

    /// Found by the `store_open` fuzz target: redb asserts (panics) on a file shorter than its
    /// header says, as a copy cut short or a full disk leaves it.
    #[test]
    fn a_truncated_store_is_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerkv.redb");
        {
            let mut s = Store::open(&path).unwrap();
            let kp = Keypair::generate_ed25519();
            s.put_merge(rec(&kp, "a", "1", 1)).unwrap();
        }
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), &whole[..whole.len() / 2]);
    }

    /// Found by the `store_open` fuzz target: a damaged page of the saved peers made redb panic
    /// only later, when the running peer read or rewrote them.
    #[test]
    fn a_damaged_peers_table_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerkv.redb");
        let peer = PeerId::random();
        {
            let mut s = Store::open(&path).unwrap();
            let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
            s.save_peers(&[(peer, vec![addr])]).unwrap();
        }
        // A leaf page starts: type, reserved, entry count (u16), then each key's and each
        // value's end offset (u32). Point the value's end far past the page, in every copy.
        let mut bytes = std::fs::read(&path).unwrap();
        let id = peer.to_base58().into_bytes();
        let pages: Vec<usize> = bytes
            .windows(id.len())
            .enumerate()
            .filter(|(_, w)| *w == &id[..])
            .map(|(at, _)| at - at % 4096)
            .collect();
        assert!(!pages.is_empty());
        for page in pages {
            bytes[page + 8..page + 12].copy_from_slice(&0x8500_0000u32.to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    /// Found by the `store_open` fuzz target (its input is kept in the seed corpus): a damaged
    /// file that opens and reads, on which redb panicked when the store was closed.
    #[test]
    fn closing_a_damaged_store_does_not_panic() {
        let input = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/store_open/regression-panic-on-close");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerkv.redb");
        std::fs::write(&path, std::fs::read(input).unwrap()).unwrap();
        let store = Store::open(&path).unwrap();
        drop(store);
    }

    /// A committer that reports each batch's size and commits only when the test says so
    /// (each `()` sent lets one batch through), or fails every batch.
    struct Gate {
        open: std::sync::mpsc::Receiver<()>,
        sizes: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
        fail: bool,
    }

    impl Committer for Gate {
        fn commit(&mut self, jobs: &[Job]) -> Result<(), String> {
            self.open.recv().map_err(|e| e.to_string())?;
            self.sizes.lock().unwrap().push(jobs.iter().map(|j| j.ops.len()).sum());
            if self.fail {
                Err("disk full".into())
            } else {
                Ok(())
            }
        }
    }

    type Sizes = std::sync::Arc<std::sync::Mutex<Vec<usize>>>;

    fn gated(fail: bool) -> (Store, std::sync::mpsc::Sender<()>, Sizes) {
        let (tx, rx) = std::sync::mpsc::channel();
        let sizes = Sizes::default();
        let gate = Gate { open: rx, sizes: sizes.clone(), fail };
        (Store::with_committer(Box::new(gate)).unwrap(), tx, sizes)
    }

    /// Takes reported batches until job `seq` is in one.
    fn until(
        s: &mut Store,
        acks: &mut Acks<&'static str>,
        seq: Seq,
    ) -> Vec<(&'static str, Result<(), String>)> {
        let mut out = Vec::new();
        loop {
            let done = futures::executor::block_on(s.committed());
            let c = s.apply(done);
            let last = c.last;
            out.extend(acks.release(&c));
            if last >= seq {
                return out;
            }
        }
    }

    #[test]
    fn writes_queued_during_a_commit_share_the_next_one() {
        let kp = Keypair::generate_ed25519();
        let (mut s, gate, sizes) = gated(false);
        let mut acks = Acks::default();
        let mut last = 0;
        for i in 0..100 {
            let seq = s.queue_records(vec![rec(&kp, &format!("k{i}"), "v", 1)]).unwrap().unwrap();
            assert!(acks.hold(Some(seq), None, "stored").is_none());
            last = seq;
        }
        // Nothing is visible, nothing acknowledged, before a commit; the limits count it all.
        assert_eq!((s.len(), s.latest_view().len(), s.latest_view().bytes()), (0, 100, 390));
        assert!(s.try_committed().is_none());
        assert_eq!(acks.len(), 100);
        let one_more = rec(&kp, "k100", "v", 1);
        assert!(s.admits(&one_more, 100, usize::MAX).unwrap_err().contains("--max-records"));
        assert_eq!(s.admits(&rec(&kp, "k1", "w", 2), 100, usize::MAX), Ok(()), "held: updatable");
        for _ in 0..100 {
            let _ = gate.send(());
        }
        let released = until(&mut s, &mut acks, last);
        assert_eq!(released.len(), 100);
        assert!(released.iter().all(|(_, r)| r.is_ok()));
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.len() < 100, "group commit: {sizes:?}");
        assert_eq!(s.commits(), sizes.len() as u64);
        assert_eq!((s.len(), s.bytes(), s.records_committed()), (100, 390, 100));
    }

    #[test]
    fn a_second_write_merges_against_the_pending_one() {
        let kp = Keypair::generate_ed25519();
        let (mut s, gate, _) = gated(false);
        let first = s.queue_records(vec![rec(&kp, "k", "new", 5)]).unwrap().unwrap();
        assert_eq!(s.queue_records(vec![rec(&kp, "k", "old", 4)]).unwrap(), None, "older: kept");
        assert_eq!(s.pending_seq("k"), Some(first));
        assert_eq!(s.latest("k").unwrap().value.as_deref(), Some(&b"new"[..]));
        assert!(s.get("k").is_none(), "a fetch sees only what is committed");
        let second = s.queue_records(vec![rec(&kp, "k", "newest", 6)]).unwrap().unwrap();
        let _ = gate.send(());
        let _ = gate.send(());
        until(&mut s, &mut Acks::default(), second);
        assert_eq!(s.get("k").unwrap().value.as_deref(), Some(&b"newest"[..]));
        assert_eq!((s.len(), s.bytes(), s.pending_seq("k")), (1, 7, None));
    }

    #[test]
    fn a_failed_commit_refuses_its_waiters_and_leaves_the_index_unchanged() {
        let kp = Keypair::generate_ed25519();
        let (mut s, gate, _) = gated(true);
        let mut acks = Acks::default();
        let a = s.queue_records(vec![rec(&kp, "a", "1", 1), rec(&kp, "b", "2", 1)]).unwrap();
        acks.hold(a, None, "store many");
        let b = s.queue_remove("a").unwrap();
        assert!(b);
        assert_eq!(s.latest_view().len(), 1);
        let _ = gate.send(());
        let _ = gate.send(());
        let last = s.last_seq;
        let released = until(&mut s, &mut acks, last);
        assert_eq!(released, vec![("store many", Err("disk full".into()))]);
        assert_eq!(
            (s.len(), s.bytes(), s.latest_view().len(), s.latest_view().bytes()),
            (0, 0, 0, 0)
        );
        assert!(s.latest("a").is_none() && s.pending.is_empty());
        assert_eq!((s.commits(), s.records_committed()), (0, 0));
        assert!(s.failed_commits() >= 1);
    }

    #[test]
    fn a_batch_of_2500_records_is_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerkv.redb");
        let kp = Keypair::generate_ed25519();
        let records: Vec<Record> =
            (0..2500).map(|i| rec(&kp, &format!("k{i:04}"), "v", 1)).collect();
        {
            let mut s = Store::open(&path).unwrap();
            let seq = s.queue_records(records).unwrap().unwrap();
            until(&mut s, &mut Acks::default(), seq);
            assert_eq!((s.commits(), s.records_committed(), s.len()), (1, 2500, 2500));
        }
        assert_eq!(Store::open(&path).unwrap().len(), 2500);
    }

    #[test]
    fn in_memory_writes_commit_at_once() {
        let kp = Keypair::generate_ed25519();
        let mut s = Store::new();
        let seq = s.queue_records(vec![rec(&kp, "k", "v", 1)]).unwrap().unwrap();
        assert_eq!(s.get("k").unwrap().value.as_deref(), Some(&b"v"[..]));
        let done = s.try_committed().unwrap();
        let c = s.apply(done);
        assert_eq!((c.first, c.last, c.result), (seq, seq, Ok(())));
        assert!(s.queue_remove("k").unwrap());
        assert!(s.get("k").is_none() && s.is_empty());
    }

    #[test]
    fn another_programs_redb_file_is_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerkv.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let table: TableDefinition<&str, u64> = TableDefinition::new("accounts");
                tx.open_table(table).unwrap().insert("alice", 10).unwrap();
            }
            tx.commit().unwrap();
        }
        assert!(matches!(Store::open(&path), Err(StoreError::Foreign(_))));
    }
}
