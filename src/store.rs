//! The records a peer holds. In memory for now; the merge rule decides what is kept.

use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use crate::record::Record;

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

/// Records by key.
#[derive(Debug, Default)]
pub struct Store {
    /// One record per key: the greatest seen.
    records: BTreeMap<String, Record>,
    /// Sum of key and value bytes held, for `info`.
    bytes: usize,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges `record` into what is held for its key and returns what happened and the record
    /// held now.
    pub fn put_merge(&mut self, record: Record) -> (Merged, &Record) {
        match self.records.entry(record.key.clone()) {
            Entry::Vacant(slot) => {
                self.bytes += size(&record);
                (Merged::Inserted, slot.insert(record))
            }
            Entry::Occupied(mut slot) => {
                if record.precedence(slot.get()) == Ordering::Greater {
                    self.bytes = self.bytes - size(slot.get()) + size(&record);
                    slot.insert(record);
                    (Merged::Replaced, slot.into_mut())
                } else {
                    (Merged::Kept, slot.into_mut())
                }
            }
        }
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
}

fn size(r: &Record) -> usize {
    r.key.len() + r.value_len()
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;
    use crate::clock::Hlc;

    #[test]
    fn put_merge_keeps_the_newest() {
        let kp = Keypair::generate_ed25519();
        let r = |v: &str, ms| {
            Record::sign(&kp, "k".into(), Some(v.into()), Hlc::new(ms, 0), None).unwrap()
        };
        let mut s = Store::new();
        assert_eq!(s.put_merge(r("a", 2)).0, Merged::Inserted);
        assert_eq!(s.put_merge(r("old", 1)).0, Merged::Kept);
        assert_eq!(s.get("k").unwrap().value.as_deref(), Some(&b"a"[..]));
        assert_eq!(s.put_merge(r("bb", 3)).0, Merged::Replaced);
        assert_eq!(s.bytes(), 3);
        assert_eq!(s.put_merge(r("bb", 3)).0, Merged::Kept);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn limits_refuse_new_keys_but_never_drop_what_is_held() {
        let kp = Keypair::generate_ed25519();
        let r = |k: &str, v: &str| {
            Record::sign(&kp, k.into(), Some(v.into()), Hlc::new(1, 0), None).unwrap()
        };
        let mut s = Store::new();
        s.put_merge(r("a", "1234"));
        assert!(s.admits(&r("b", "1"), 1, 1000).unwrap_err().contains("--max-records"));
        assert_eq!(s.admits(&r("a", "99"), 1, 1000), Ok(()));
        assert!(s.admits(&r("a", "123456789"), 10, 6).unwrap_err().contains("--max-store-bytes"));
        assert_eq!(s.admits(&r("a", "12"), 10, 2), Ok(()), "shrinking is always allowed");
        assert_eq!(s.len(), 1);
    }
}
