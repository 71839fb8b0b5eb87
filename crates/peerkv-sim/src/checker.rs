//! The history checker: every acknowledged write and every get's result is recorded with its
//! virtual times; at the end it counts what a user would call lost.
//!
//! - **Acknowledged writes lost**: a get that started after a put was acknowledged returned an
//!   older version of that key, or nothing (a later delete is a newer write, so returning its
//!   tombstone is fine).
//! - **Tombstones resurrected**: the same, where the acknowledged write was a delete and the
//!   get returned a value older than it.
//! - **Reads back in time**: a get returned an older version than a get of the same key that
//!   had ended before it started.
//!
//! Versions compare as replicas merge them: by HLC, then by the writer's key bytes.

use std::collections::BTreeMap;

use peerkv::{Hlc, Record};

/// A version as replicas order it.
pub type Version = (Hlc, Vec<u8>);

/// The version of a record.
pub fn version_of(record: &Record) -> Version {
    (record.version, record.writer.clone())
}

#[derive(Debug, Clone)]
struct Write {
    version: Version,
    tombstone: bool,
    acked_at: u64,
}

#[derive(Debug, Clone)]
struct Read {
    started: u64,
    ended: u64,
    got: Option<Version>,
}

/// Everything that was acknowledged and read.
#[derive(Debug, Default)]
pub struct History {
    writes: BTreeMap<String, Vec<Write>>,
    reads: BTreeMap<String, Vec<Read>>,
}

/// What the checker found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// Gets that missed an acknowledged put (returned older, or nothing).
    pub acked_lost: u64,
    /// Distinct acknowledged puts some get missed.
    pub acked_writes_missed: u64,
    /// Gets that returned a value a delete acknowledged before they started had removed.
    pub tombstones_resurrected: u64,
    /// Gets older than a get of the same key that ended before they started.
    pub reads_back_in_time: u64,
    /// Acknowledged writes checked.
    pub writes: u64,
    /// Successful gets checked.
    pub reads: u64,
}

impl History {
    /// A put or delete of `key` was acknowledged at `at` (µs of virtual time).
    pub fn acked(&mut self, key: &str, record: &Record, at: u64) {
        self.writes.entry(key.to_owned()).or_default().push(Write {
            version: version_of(record),
            tombstone: record.is_tombstone(),
            acked_at: at,
        });
    }

    /// A get of `key` that started at `started` returned `got` at `ended`.
    pub fn read(&mut self, key: &str, got: Option<&Record>, started: u64, ended: u64) {
        self.reads.entry(key.to_owned()).or_default().push(Read {
            started,
            ended,
            got: got.map(version_of),
        });
    }

    /// Keys with at least one acknowledged write.
    pub fn written_keys(&self) -> Vec<String> {
        self.writes.keys().cloned().collect()
    }

    /// Checks the whole history.
    pub fn check(&self) -> Verdict {
        let mut v = Verdict {
            writes: self.writes.values().map(|w| w.len() as u64).sum(),
            reads: self.reads.values().map(|r| r.len() as u64).sum(),
            ..Verdict::default()
        };
        let mut missed: std::collections::HashSet<(String, Version)> = Default::default();
        for (key, reads) in &self.reads {
            let writes = self.writes.get(key).map(Vec::as_slice).unwrap_or_default();
            for r in reads {
                // The newest write acknowledged before this get started.
                let latest = writes
                    .iter()
                    .filter(|w| w.acked_at < r.started)
                    .max_by(|a, b| a.version.cmp(&b.version));
                if let Some(w) = latest {
                    let older = match &r.got {
                        None => true,
                        Some(g) => *g < w.version,
                    };
                    if older && !(w.tombstone && r.got.is_none()) {
                        if std::env::var_os("PEERKV_SIM_VIOLATIONS").is_some() {
                            eprintln!(
                                "violation: {key}: read {}..{} µs got {:?}, acked {:?} (tombstone {}) at {} µs",
                                r.started, r.ended, r.got.as_ref().map(|g| g.0), w.version.0, w.tombstone, w.acked_at
                            );
                        }
                        if w.tombstone {
                            v.tombstones_resurrected += 1;
                        } else {
                            v.acked_lost += 1;
                            missed.insert((key.clone(), w.version.clone()));
                        }
                    }
                }
            }
            // Monotonic reads: sorted by end, a running maximum of what ended before.
            let mut by_end: Vec<&Read> = reads.iter().collect();
            by_end.sort_by_key(|r| r.ended);
            for r in reads {
                let before = by_end.partition_point(|o| o.ended < r.started);
                let seen = by_end[..before].iter().filter_map(|o| o.got.as_ref()).max();
                if let Some(seen) = seen {
                    if r.got.as_ref().map_or(true, |g| g < seen) {
                        v.reads_back_in_time += 1;
                    }
                }
            }
        }
        v.acked_writes_missed = missed.len() as u64;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn rec(ms: u64, value: Option<&str>) -> Record {
        let kp = Keypair::ed25519_from_bytes([7; 32]).unwrap();
        Record::sign(&kp, "k".into(), value.map(|v| v.as_bytes().to_vec()), Hlc::new(ms, 0), None)
            .unwrap()
    }

    #[test]
    fn the_checker_sees_each_kind_of_violation() {
        let (v1, v2, del) = (rec(10, Some("a")), rec(20, Some("b")), rec(30, None));
        let mut h = History::default();
        h.acked("k", &v1, 100);
        h.read("k", Some(&v1), 150, 160);
        assert_eq!(h.check().acked_lost, 0);
        h.acked("k", &v2, 200);
        h.read("k", Some(&v1), 250, 260); // older than the acknowledged v2: lost
        h.read("k", None, 270, 280); // nothing: lost, and back in time
        let v = h.check();
        assert_eq!((v.acked_lost, v.acked_writes_missed), (2, 1));
        assert_eq!(v.reads_back_in_time, 1, "nothing, after a read that returned v1");
        h.acked("k", &del, 300);
        h.read("k", Some(&v2), 350, 360); // the deleted value came back
        h.read("k", Some(&del), 370, 380);
        let v = h.check();
        assert_eq!(v.tombstones_resurrected, 1);
        // A get that started before an acknowledgement may return the older version.
        let mut h = History::default();
        h.acked("k", &v2, 500);
        h.read("k", Some(&v1), 400, 600);
        assert_eq!(h.check(), Verdict { writes: 1, reads: 1, ..Verdict::default() });
    }
}
