//! The store's writer thread: it owns the database, takes every job queued since its last
//! commit, commits them all in one transaction (one fsync per batch: group commit), and reports
//! the batch back to the event loop. redb is synchronous; the loop never waits for it.

use std::sync::mpsc::{self as std_mpsc, SyncSender, TrySendError};
use std::thread::JoinHandle;

use libp2p::{Multiaddr, PeerId};
use redb::Database;
use tokio::sync::mpsc;

use super::{META, PEERS, RECORDS};
use crate::protocol::encode;
use crate::record::Record;

/// The number of a job: jobs are numbered in the order they are queued, and committed in that
/// order, so a batch is a contiguous range of numbers.
pub type Seq = u64;

/// Jobs queued and not yet reported back, at most; the store refuses more before this (see
/// `MAX_QUEUED_JOBS` in the store), so the channel never fills.
const JOB_CAP: usize = 8192;

/// Batches reported and not yet taken by the event loop; the writer waits when it is full.
const DONE_CAP: usize = 64;

/// One change to the database.
#[derive(Debug, Clone)]
pub enum Op {
    /// Write a record under its key (it won the merge against everything held or queued).
    Put(Record),
    /// Remove a key (expired records, old tombstones).
    Remove(String),
    /// Replace the saved list of peers last known.
    Peers(Vec<(PeerId, Vec<Multiaddr>)>),
    /// Replace the saved listen addresses.
    Listen(Vec<Multiaddr>),
}

/// The changes one request (or one upkeep removal, one save of the peers) makes: they are
/// committed together, never split over two transactions.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its number.
    pub seq: Seq,
    /// Its changes, in order.
    pub ops: Vec<Op>,
}

/// A batch of jobs committed, or not.
#[derive(Debug)]
pub struct Done {
    /// The first job's number.
    pub first: Seq,
    /// The last job's number.
    pub last: Seq,
    /// The jobs, handed back for the in-memory index (empty where the index already has them:
    /// an in-memory store applies its writes at once).
    pub jobs: Vec<Job>,
    /// `Err(reason)`: nothing of the batch was committed.
    pub result: Result<(), String>,
    /// An in-memory store's changes to its index, made when its jobs were queued: `(key,
    /// version before, version after)` (empty for the writer thread's batches, whose changes
    /// are made when they are applied).
    pub changes: Vec<(String, Option<crate::clock::Hlc>, Option<crate::clock::Hlc>)>,
}

/// What commits a batch of jobs in one transaction. The store's is [`RedbCommitter`]; tests
/// inject others (one that fails, one that waits for a signal).
pub trait Committer: Send {
    /// Commits every change of `jobs`, in order, atomically: all or none.
    ///
    /// # Errors
    /// Why the batch could not be committed; then none of it was.
    fn commit(&mut self, jobs: &[Job]) -> Result<(), String>;
}

/// Commits to a redb database: one write transaction, and its fsync, per batch.
pub struct RedbCommitter {
    /// The database; `None` once closed.
    db: Option<Database>,
}

impl RedbCommitter {
    /// Commits into `db`.
    pub fn new(db: Database) -> Self {
        Self { db: Some(db) }
    }
}

impl Committer for RedbCommitter {
    fn commit(&mut self, jobs: &[Job]) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let Some(db) = &self.db else { return Err("the database is closed".into()) };
        let tx = db.begin_write().map_err(|e| err(&e))?;
        {
            let mut records = tx.open_table(RECORDS).map_err(|e| err(&e))?;
            for op in jobs.iter().flat_map(|j| &j.ops) {
                match op {
                    Op::Put(record) => {
                        let bytes = encode(record).map_err(|e| err(&e))?;
                        records
                            .insert(record.key.as_str(), bytes.as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    Op::Remove(key) => {
                        records.remove(key.as_str()).map_err(|e| err(&e))?;
                    }
                    Op::Peers(peers) => {
                        let mut table = tx.open_table(PEERS).map_err(|e| err(&e))?;
                        table.retain(|_, _| false).map_err(|e| err(&e))?;
                        for (peer, addrs) in peers {
                            let addrs: Vec<String> =
                                addrs.iter().map(ToString::to_string).collect();
                            let bytes = encode(&addrs).map_err(|e| err(&e))?;
                            table
                                .insert(peer.to_base58().as_str(), bytes.as_slice())
                                .map_err(|e| err(&e))?;
                        }
                    }
                    Op::Listen(addrs) => {
                        let joined =
                            addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
                        tx.open_table(META)
                            .map_err(|e| err(&e))?
                            .insert("listen", joined.as_str())
                            .map_err(|e| err(&e))?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| err(&e))
    }
}

impl Drop for RedbCommitter {
    fn drop(&mut self) {
        // redb writes its allocator state when the database closes, and panics doing so on some
        // damaged files that opened (found by the `store_open` fuzz target): a peer that stops
        // must not crash for it. Every change was committed already; nothing is lost.
        if let Some(db) = self.db.take() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(db)));
        }
    }
}

/// The event loop's end of the writer thread.
pub(crate) struct Writer {
    /// Jobs to the thread; `None` once closed (the thread then commits what is left and ends).
    jobs: Option<SyncSender<Job>>,
    /// Batches back from the thread.
    done: Option<mpsc::Receiver<Done>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread with `committer`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub(crate) fn spawn(mut committer: Box<dyn Committer>) -> std::io::Result<Self> {
        let (jobs_tx, jobs_rx) = std_mpsc::sync_channel::<Job>(JOB_CAP);
        let (done_tx, done_rx) = mpsc::channel::<Done>(DONE_CAP);
        let thread = std::thread::Builder::new().name("peerkv-store".into()).spawn(move || {
            while let Ok(job) = jobs_rx.recv() {
                // Everything queued while the last batch committed goes into this one.
                let mut jobs = vec![job];
                while let Ok(more) = jobs_rx.try_recv() {
                    jobs.push(more);
                }
                let (first, last) = (jobs[0].seq, jobs[jobs.len() - 1].seq);
                // redb asserts on some damaged files: a panic fails the batch, not the peer.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    committer.commit(&jobs)
                }))
                .unwrap_or_else(|_| Err("the database library panicked".into()));
                // The loop gone (the store dropped): commit the rest all the same.
                let _ =
                    done_tx.blocking_send(Done { first, last, jobs, result, changes: Vec::new() });
            }
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(committer)));
        })?;
        Ok(Self { jobs: Some(jobs_tx), done: Some(done_rx), thread: Some(thread) })
    }

    /// Queues `job`; hands it back when the thread is gone or the queue is full.
    pub(crate) fn send(&self, job: Job) -> Result<(), Job> {
        let Some(jobs) = &self.jobs else { return Err(job) };
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }

    /// The next batch reported; `None` once the thread ended. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<Done> {
        match &mut self.done {
            Some(done) => done.recv().await,
            None => None,
        }
    }

    /// A batch already reported, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Done> {
        self.done.as_mut()?.try_recv().ok()
    }

    /// Waits, blocking the thread, for the next batch (for the store's synchronous methods).
    pub(crate) fn recv_blocking(&mut self) -> Option<Done> {
        let done = self.done.as_mut()?;
        futures::executor::block_on(done.recv())
    }

    /// Queues no more: the thread commits what is queued, reports it, and ends.
    pub(crate) fn close(&mut self) {
        self.jobs = None;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Close the queue and stop listening, then wait for the thread to commit what is left
        // and close the database (so its file lock is gone when this returns).
        self.jobs = None;
        self.done = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
