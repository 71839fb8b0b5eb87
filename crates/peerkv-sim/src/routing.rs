//! The routing model: Kademlia's k-buckets as the real node keeps them, and an index of every
//! peer for the truth the measures compare against.
//!
//! A node's table holds at most [`BUCKET`] peers per bucket (bucket `i`: peers whose XOR distance
//! to the node has its highest bit at `i`). Like the real node, it fills only from contact —
//! a peer is inserted when a message from it arrives or it answers one, never into a full
//! bucket (the real node adds routes on identify, and never evicts: a full bucket keeps the
//! peers it has) — and a peer leaves when a request to it fails.

use libp2p::kad::KBucketKey;
use libp2p::PeerId;

/// Peers a lookup collects (libp2p-kad's replication factor, 20).
pub const K: usize = 20;
/// Peers per bucket: the node's (`peerkv::behaviour::KBUCKET_SIZE`).
pub const BUCKET: usize = peerkv::behaviour::KBUCKET_SIZE.get();

/// A 256-bit Kademlia key: the SHA-256 of a peer id or of a record key.
pub type Key = [u8; 32];

/// The Kademlia key of a peer.
pub fn peer_key(peer: &PeerId) -> Key {
    to_key(KBucketKey::from(*peer).hashed_bytes())
}

/// The Kademlia key of a record key.
pub fn record_key(key: &str) -> Key {
    to_key(KBucketKey::new(key.as_bytes().to_vec()).hashed_bytes())
}

fn to_key(bytes: &[u8]) -> Key {
    let mut k = [0u8; 32];
    k.copy_from_slice(&bytes[..32]);
    k
}

/// XOR distance, big-endian: compares as Kademlia's U256 distance does.
pub fn distance(a: &Key, b: &Key) -> Key {
    let mut d = [0u8; 32];
    for i in 0..32 {
        d[i] = a[i] ^ b[i];
    }
    d
}

/// The bucket of `peer` in the table of `own`: the index of the highest bit of their distance
/// (`None` for the node itself).
fn bucket(own: &Key, peer: &Key) -> Option<usize> {
    let d = distance(own, peer);
    let zeros = d.iter().position(|b| *b != 0)?;
    let bit = 7 - d[zeros].leading_zeros() as usize;
    Some((31 - zeros) * 8 + bit)
}

/// One node's routing table.
#[derive(Debug, Clone)]
pub struct Table {
    own: Key,
    buckets: Vec<Vec<(PeerId, Key)>>,
    len: usize,
}

impl Table {
    /// An empty table of the node whose key is `own`.
    pub fn new(own: Key) -> Self {
        Self { own, buckets: vec![Vec::new(); 256], len: 0 }
    }

    /// Peers held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nobody.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts `peer` unless its bucket is full; `true` when it is held afterwards.
    pub fn insert(&mut self, peer: PeerId, key: Key) -> bool {
        let Some(b) = bucket(&self.own, &key) else { return false };
        let slot = &mut self.buckets[b];
        if slot.iter().any(|(p, _)| *p == peer) {
            return true;
        }
        if slot.len() >= BUCKET {
            return false;
        }
        slot.push((peer, key));
        self.len += 1;
        true
    }

    /// Removes `peer`; `true` when it was held.
    pub fn remove(&mut self, peer: &PeerId, key: &Key) -> bool {
        let Some(b) = bucket(&self.own, key) else { return false };
        let slot = &mut self.buckets[b];
        let before = slot.len();
        slot.retain(|(p, _)| p != peer);
        let removed = slot.len() < before;
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Whether `peer` is held.
    pub fn contains(&self, peer: &PeerId, key: &Key) -> bool {
        bucket(&self.own, key).is_some_and(|b| self.buckets[b].iter().any(|(p, _)| p == peer))
    }

    /// The `n` peers held nearest to `target`, nearest first.
    pub fn nearest(&self, target: &Key, n: usize) -> Vec<PeerId> {
        if n == 0 {
            return Vec::new();
        }
        let mut all: Vec<(Key, PeerId)> =
            self.buckets.iter().flatten().map(|(p, k)| (distance(target, k), *p)).collect();
        if all.len() > n {
            all.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
            all.truncate(n);
        }
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().map(|(_, p)| p).collect()
    }

    /// Every peer held.
    pub fn peers(&self) -> Vec<PeerId> {
        self.buckets.iter().flatten().map(|(p, _)| *p).collect()
    }
}

/// Every node's key, sorted, to find the true R nearest live nodes of a key quickly: the k
/// nearest by XOR lie in the smallest aligned subtree (a run of the sorted keys sharing a
/// prefix with the target) that holds at least k of them.
#[derive(Debug, Clone)]
pub struct Index {
    sorted: Vec<(Key, usize)>,
}

impl Index {
    /// The index of `keys` (node `i` has `keys[i]`).
    pub fn new(keys: &[Key]) -> Self {
        let mut sorted: Vec<(Key, usize)> = keys.iter().copied().zip(0..).collect();
        sorted.sort_unstable();
        Self { sorted }
    }

    /// The `n` live nodes nearest to `target`, nearest first.
    pub fn nearest(&self, target: &Key, n: usize, alive: &dyn Fn(usize) -> bool) -> Vec<usize> {
        // Widen the shared prefix until the run holds n live nodes (or everyone).
        for prefix in (0..=256usize).rev() {
            let (lo, hi) = self.run(target, prefix);
            let live = self.sorted[lo..hi].iter().filter(|(_, i)| alive(*i)).count();
            if live >= n || prefix == 0 {
                let mut found: Vec<(Key, usize)> = self.sorted[lo..hi]
                    .iter()
                    .filter(|(_, i)| alive(*i))
                    .map(|(k, i)| (distance(target, k), *i))
                    .collect();
                found.sort_unstable();
                return found.into_iter().take(n).map(|(_, i)| i).collect();
            }
        }
        Vec::new()
    }

    /// The run of sorted keys that share the first `prefix` bits with `target`.
    fn run(&self, target: &Key, prefix: usize) -> (usize, usize) {
        let mut low = *target;
        let mut high = *target;
        for bit in prefix..256 {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            low[byte] &= !mask;
            high[byte] |= mask;
        }
        let lo = self.sorted.partition_point(|(k, _)| *k < low);
        let hi = self.sorted.partition_point(|(k, _)| *k <= high);
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_finds_what_a_full_scan_finds() {
        let peers: Vec<PeerId> = (0..500).map(|_| PeerId::random()).collect();
        let keys: Vec<Key> = peers.iter().map(peer_key).collect();
        let index = Index::new(&keys);
        for probe in 0..50 {
            let target = record_key(&format!("key-{probe}"));
            let alive = |i: usize| i % 7 != 0;
            let got = index.nearest(&target, 5, &alive);
            let mut all: Vec<(Key, usize)> = (0..keys.len())
                .filter(|i| alive(*i))
                .map(|i| (distance(&target, &keys[i]), i))
                .collect();
            all.sort_unstable();
            let want: Vec<usize> = all.into_iter().take(5).map(|(_, i)| i).collect();
            assert_eq!(got, want);
            // And the same order as the library's own ranking.
            let ranked = peerkv::placement::rank(
                &format!("key-{probe}"),
                (0..keys.len()).filter(|i| alive(*i)).map(|i| peers[i]),
            );
            let want_peers: Vec<PeerId> = want.iter().map(|i| peers[*i]).collect();
            assert_eq!(ranked[..5].to_vec(), want_peers);
        }
    }

    #[test]
    fn a_full_bucket_keeps_its_peers() {
        let own = peer_key(&PeerId::random());
        let mut table = Table::new(own);
        let mut inserted = 0;
        for _ in 0..2000 {
            let p = PeerId::random();
            if table.insert(p, peer_key(&p)) {
                inserted += 1;
            }
        }
        assert_eq!(table.len(), inserted);
        assert!(table.buckets.iter().all(|b| b.len() <= BUCKET));
        // Bucket 255 (half of all peers) is full: 20, not ~1000.
        assert_eq!(table.buckets[255].len(), BUCKET);
    }
}
