//! The records a peer holds: an in-memory index over an embedded ACID database (redb).
//!
//! With a database, every change is committed (fsync'd) before [`Store::put_merge`] returns,
//! so a replica acknowledges only what survives `kill -9`. Without one (`--ephemeral`, tests)
//! the store lives in memory. The database also keeps the peers last known, to rejoin after a
//! restart. The whole index is held in memory: reads never touch the disk.

use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::Path;

use libp2p::{Multiaddr, PeerId};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
};

use crate::core::replica::{Usage, Writers};
use crate::protocol::{decode, encode};
use crate::record::Record;

/// Records by key, each CBOR-encoded.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Peers last known: peer id → CBOR list of multiaddr strings.
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
/// What this file is.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// The `format` entry in [`META`].
const FORMAT: &str = "peerkv-store/1";

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
    /// A write failed; nothing changed.
    #[error("storage error: {0}")]
    Write(String),
}

fn write_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Write(e.to_string())
}

fn read_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Records by key.
#[derive(Default)]
pub struct Store {
    /// One record per key: the greatest seen.
    records: BTreeMap<String, Record>,
    /// Sum of key and value bytes held, for limits and `info`.
    bytes: usize,
    /// What each writer's records take, for the per-writer quotas.
    writers: Writers,
    /// Where changes are made durable; `None` for an in-memory store.
    db: Option<Database>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("records", &self.records.len())
            .field("bytes", &self.bytes)
            .field("persistent", &self.db.is_some())
            .finish()
    }
}

impl Store {
    /// An empty in-memory store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens (or creates) the database at `path` and loads every record.
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
        std::panic::catch_unwind(|| Self::open_unguarded(path)).unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the database library panicked".into());
            Err(StoreError::Corrupt(format!("damaged file: {reason}")))
        })
    }

    /// [`Store::open`] without the guard against redb's panics.
    fn open_unguarded(path: &Path) -> Result<Self, StoreError> {
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
            // The peers and addresses saved are read later, and rewritten, from the event loop:
            // read them through once here too, where a damaged page is refused (and a panic of
            // redb's caught) instead of crashing a running peer.
            let peers = tx.open_table(PEERS).map_err(read_err)?;
            for entry in peers.iter().map_err(read_err)? {
                let (peer, addrs) = entry.map_err(read_err)?;
                let _ = (peer.value(), addrs.value());
            }
            let meta = tx.open_table(META).map_err(read_err)?;
            for entry in meta.iter().map_err(read_err)? {
                let (name, value) = entry.map_err(read_err)?;
                let _ = (name.value(), value.value());
            }
        }
        store.db = Some(db);
        Ok(store)
    }

    /// Whether changes are written to disk.
    pub fn is_persistent(&self) -> bool {
        self.db.is_some()
    }

    /// Whether `record` fits: a new key needs room for one more record and its bytes; a key
    /// already held needs room for the difference. Nothing held is ever dropped to make room.
    ///
    /// # Errors
    /// The reason, with the limit and its flag.
    pub fn admits(
        &self,
        record: &Record,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<(), String> {
        let held = self.records.get(&record.key).map(size);
        if held.is_none() && self.records.len() >= max_records {
            return Err(format!(
                "store full: {} records held (limit {max_records}, --max-records); existing keys can still be updated",
                self.records.len()
            ));
        }
        let after = self.bytes - held.unwrap_or(0) + size(record);
        if after > max_bytes && after > self.bytes {
            return Err(format!(
                "store full: {after} bytes would be held (limit {max_bytes}, --max-store-bytes)"
            ));
        }
        Ok(())
    }

    /// Merges `record` into what is held for its key; a change is durable before this returns.
    /// Returns what happened and the record held now.
    ///
    /// # Errors
    /// [`StoreError::Write`] when the change cannot be committed; then nothing changed.
    pub fn put_merge(&mut self, record: Record) -> Result<(Merged, &Record), StoreError> {
        let outcome = match self.records.get(&record.key) {
            None => Merged::Inserted,
            Some(held) if record.precedence(held) == Ordering::Greater => Merged::Replaced,
            Some(_) => Merged::Kept,
        };
        if outcome != Merged::Kept {
            self.persist(&record)?;
        }
        let new_size = size(&record);
        match self.records.entry(record.key.clone()) {
            Entry::Vacant(slot) => {
                self.bytes += new_size;
                self.writers.add(&record);
                Ok((outcome, slot.insert(record)))
            }
            Entry::Occupied(mut slot) => {
                if outcome == Merged::Replaced {
                    self.bytes = self.bytes - size(slot.get()) + new_size;
                    self.writers.remove(slot.get());
                    self.writers.add(&record);
                    slot.insert(record);
                }
                Ok((outcome, slot.into_mut()))
            }
        }
    }

    fn persist(&self, record: &Record) -> Result<(), StoreError> {
        let Some(db) = &self.db else { return Ok(()) };
        let bytes = encode(record).map_err(write_err)?;
        let tx = db.begin_write().map_err(write_err)?;
        {
            let mut table = tx.open_table(RECORDS).map_err(write_err)?;
            table.insert(record.key.as_str(), bytes.as_slice()).map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }

    /// Removes `key` (expired records, old tombstones); durable before it returns.
    ///
    /// # Errors
    /// [`StoreError::Write`] when it cannot be committed; then nothing changed.
    pub fn remove(&mut self, key: &str) -> Result<Option<Record>, StoreError> {
        if !self.records.contains_key(key) {
            return Ok(None);
        }
        if let Some(db) = &self.db {
            let tx = db.begin_write().map_err(write_err)?;
            tx.open_table(RECORDS).map_err(write_err)?.remove(key).map_err(write_err)?;
            tx.commit().map_err(write_err)?;
        }
        let removed = self.records.remove(key);
        if let Some(r) = &removed {
            self.bytes -= size(r);
            self.writers.remove(r);
        }
        Ok(removed)
    }

    /// The record held for `key`.
    pub fn get(&self, key: &str) -> Option<&Record> {
        self.records.get(key)
    }

    /// All records, by key.
    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Number of keys held (tombstones included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Key and value bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the records of `writer` (a protobuf public key) take here.
    pub fn writer_usage(&self, writer: &[u8]) -> Usage {
        self.writers.usage(writer)
    }

    /// Replaces the saved list of peers last known.
    ///
    /// # Errors
    /// [`StoreError::Write`] when it cannot be committed.
    pub fn save_peers(&self, peers: &[(PeerId, Vec<Multiaddr>)]) -> Result<(), StoreError> {
        let Some(db) = &self.db else { return Ok(()) };
        let tx = db.begin_write().map_err(write_err)?;
        {
            let mut table = tx.open_table(PEERS).map_err(write_err)?;
            table.retain(|_, _| false).map_err(write_err)?;
            for (peer, addrs) in peers {
                let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                let bytes = encode(&addrs).map_err(write_err)?;
                table.insert(peer.to_base58().as_str(), bytes.as_slice()).map_err(write_err)?;
            }
        }
        tx.commit().map_err(write_err)
    }

    /// Remembers the addresses this peer listened on, so a restart can take the same ports.
    ///
    /// # Errors
    /// [`StoreError::Write`] when it cannot be committed.
    pub fn save_listen_addrs(&self, addrs: &[Multiaddr]) -> Result<(), StoreError> {
        let Some(db) = &self.db else { return Ok(()) };
        let joined = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
        let tx = db.begin_write().map_err(write_err)?;
        tx.open_table(META)
            .map_err(write_err)?
            .insert("listen", joined.as_str())
            .map_err(write_err)?;
        tx.commit().map_err(write_err)
    }

    /// The addresses saved by [`Store::save_listen_addrs`].
    pub fn load_listen_addrs(&self) -> Vec<Multiaddr> {
        let Some(db) = &self.db else { return Vec::new() };
        let Ok(tx) = db.begin_read() else { return Vec::new() };
        let Ok(table) = tx.open_table(META) else { return Vec::new() };
        let Ok(Some(value)) = table.get("listen") else { return Vec::new() };
        value.value().split_whitespace().filter_map(|a| a.parse().ok()).collect()
    }

    /// The peers saved by [`Store::save_peers`] (entries that do not parse are skipped).
    pub fn load_peers(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let Some(db) = &self.db else { return Vec::new() };
        let Ok(tx) = db.begin_read() else { return Vec::new() };
        let Ok(table) = tx.open_table(PEERS) else { return Vec::new() };
        let Ok(iter) = table.iter() else { return Vec::new() };
        iter.flatten()
            .filter_map(|(k, v)| {
                let peer: PeerId = k.value().parse().ok()?;
                let addrs: Vec<String> = decode(v.value()).ok()?;
                Some((peer, addrs.iter().filter_map(|a| a.parse().ok()).collect()))
            })
            .collect()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // redb writes its allocator state when the database closes, and panics doing so on some
        // damaged files that opened (found by the `store_open` fuzz target): a peer that stops
        // must not crash for it. Every change was committed already; nothing is lost.
        if let Some(db) = self.db.take() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(db)));
        }
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
        let s = Store::open(&path).unwrap();
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
            let s = Store::open(&path).unwrap();
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
