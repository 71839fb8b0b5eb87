//! Records: a signed value (or tombstone) with a version, and the rule replicas merge by.
//!
//! Pure code: no I/O, no clock reads. The event loop calls [`Record::check`] on everything that
//! arrives from a peer before it touches the store, and [`merge`] decides which record a replica
//! keeps.

use std::cmp::Ordering;
use std::fmt;

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::clock::Hlc;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// How far ahead of the replica's wall clock a version may be (ms) before it is refused: a
/// writer with a clock far in the future could otherwise pin a key for ever.
pub const MAX_CLOCK_AHEAD_MS: u64 = 5 * 60 * 1000;

/// Domain separator of the signed bytes, so a record signature can never be replayed as
/// something else.
const SIGNING_DOMAIN: &str = "peerkv/record/v1";

/// One key's state as a replica holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key, UTF-8, 1 to [`MAX_KEY_LEN`] bytes. Keys under `@<peer-id>/` belong to that peer.
    pub key: String,
    /// The value, or `None` for a tombstone (the key was deleted at `version`).
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// When it was written (hybrid logical clock); replicas keep the greatest.
    pub version: Hlc,
    /// The writer's public key, protobuf-encoded (its peer id derives from it).
    #[serde(with = "serde_bytes")]
    pub writer: Vec<u8>,
    /// When the record stops being valid (ms since the Unix epoch), if ever.
    pub expires_at: Option<u64>,
    /// The writer's signature over every field above.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("key", &self.key)
            .field("value_len", &self.value.as_ref().map(Vec::len))
            .field("version", &self.version)
            .field("writer", &self.writer_id().ok())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a replica holds for a key without the value: enough to order it against other records
/// (the first two keys of [`Record::precedence`]) and to tell a deletion. A replica asked for
/// the version only answers with it ([`Response::Version`](crate::protocol::Response::Version));
/// it is not signed, so it only decides whether the whole record is worth fetching, and a record
/// fetched is checked as always.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The record's version.
    pub version: Hlc,
    /// The writer's public key, protobuf-encoded.
    #[serde(with = "serde_bytes")]
    pub writer: Vec<u8>,
    /// Whether the record is a tombstone.
    pub tombstone: bool,
}

impl Stamp {
    /// The order of [`Record::precedence`] on version and writer: `Equal` for the same write.
    pub fn precedence(&self, other: &Stamp) -> Ordering {
        self.version.cmp(&other.version).then_with(|| self.writer.cmp(&other.writer))
    }

    /// Whether the version is further ahead of `now_ms` than a replica accepts.
    pub fn from_the_future(&self, now_ms: u64) -> bool {
        self.version.ms.saturating_sub(now_ms) > MAX_CLOCK_AHEAD_MS
    }
}

/// Why a record was refused. Its `Display` is the reason sent back to the writer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The key is empty.
    #[error("empty key")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("key too long: {len} bytes (limit {MAX_KEY_LEN})")]
    KeyTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The value is larger than the replica accepts.
    #[error("value too large: {len} bytes (limit {limit})")]
    ValueTooLarge {
        /// Its length in bytes.
        len: usize,
        /// The replica's limit.
        limit: usize,
    },
    /// The writer field is not a public key.
    #[error("writer is not a valid public key")]
    BadWriter,
    /// The signature does not match the record and the writer.
    #[error("bad signature")]
    BadSignature,
    /// The key starts with `@` but names no peer.
    #[error("key {key:?} starts with @ but names no peer: @<peer-id>/NAME keys belong to that peer (this writer's begin with @{writer}/); drop the @ for a key anyone may write")]
    BadOwner {
        /// The key.
        key: String,
        /// Who tried to write it (peer id).
        writer: String,
    },
    /// The key belongs to another peer.
    #[error("key {key:?} belongs to {owner}; {writer} may not write it")]
    Forbidden {
        /// The key.
        key: String,
        /// The peer the key belongs to.
        owner: String,
        /// Who tried to write it (peer id).
        writer: String,
    },
    /// The record's expiry time has passed.
    #[error("expired at {expires_at} (ms since the Unix epoch)")]
    Expired {
        /// When it expired.
        expires_at: u64,
    },
    /// The version lies too far in the future.
    #[error("version {version} is {ahead_ms} ms ahead of this replica's clock (limit {MAX_CLOCK_AHEAD_MS} ms)")]
    FromTheFuture {
        /// The version.
        version: Hlc,
        /// How far ahead it is.
        ahead_ms: u64,
    },
}

/// Checks a key on its own: length, and for `@owner/…` keys that `writer` is the owner.
///
/// # Errors
/// [`RecordError::EmptyKey`], [`RecordError::KeyTooLong`] or [`RecordError::Forbidden`].
pub fn check_key(key: &str, writer: &PeerId) -> Result<(), RecordError> {
    if key.is_empty() {
        return Err(RecordError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(RecordError::KeyTooLong { len: key.len() });
    }
    if let Some(owner) = key_owner(key) {
        if owner.parse::<PeerId>().is_err() {
            return Err(RecordError::BadOwner { key: key.to_owned(), writer: writer.to_base58() });
        }
        if owner != writer.to_base58() {
            return Err(RecordError::Forbidden {
                key: key.to_owned(),
                owner: owner.to_owned(),
                writer: writer.to_base58(),
            });
        }
    }
    Ok(())
}

/// The owner named by a key of the form `@<peer-id>/…` (or `@<peer-id>`), if it has that form.
pub fn key_owner(key: &str) -> Option<&str> {
    let rest = key.strip_prefix('@')?;
    Some(rest.split('/').next().unwrap_or(rest))
}

impl Record {
    /// Builds and signs a record written by `keypair`.
    ///
    /// # Errors
    /// Fails only when the key type cannot sign (never for Ed25519).
    pub fn sign(
        keypair: &Keypair,
        key: String,
        value: Option<Vec<u8>>,
        version: Hlc,
        expires_at: Option<u64>,
    ) -> Result<Self, libp2p::identity::SigningError> {
        let mut record = Record {
            key,
            value,
            version,
            writer: keypair.public().encode_protobuf(),
            expires_at,
            signature: Vec::new(),
        };
        record.signature = keypair.sign(&record.signed_bytes())?;
        Ok(record)
    }

    /// The bytes the signature covers: every field but the signature, under a domain tag.
    fn signed_bytes(&self) -> Vec<u8> {
        let payload = (
            SIGNING_DOMAIN,
            &self.key,
            self.value.as_deref().map(serde_bytes::Bytes::new),
            self.version,
            serde_bytes::Bytes::new(&self.writer),
            self.expires_at,
        );
        // Encoding plain tuples of strings, bytes and integers into a Vec cannot fail.
        cbor4ii::serde::to_vec(Vec::new(), &payload).unwrap_or_default()
    }

    /// The writer's public key.
    ///
    /// # Errors
    /// [`RecordError::BadWriter`] when the field does not decode.
    pub fn writer_key(&self) -> Result<PublicKey, RecordError> {
        PublicKey::try_decode_protobuf(&self.writer).map_err(|_| RecordError::BadWriter)
    }

    /// The writer's peer id.
    ///
    /// # Errors
    /// [`RecordError::BadWriter`] when the field does not decode.
    pub fn writer_id(&self) -> Result<PeerId, RecordError> {
        self.writer_key().map(|k| k.to_peer_id())
    }

    /// Whether this is a tombstone (a delete).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether the record's expiry time has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|e| e <= now_ms)
    }

    /// Size of the value in bytes (0 for a tombstone).
    pub fn value_len(&self) -> usize {
        self.value.as_ref().map_or(0, Vec::len)
    }

    /// Everything a replica checks before it stores a record from a peer: key, size, signature,
    /// ownership, expiry, and that the version is not too far ahead of `now_ms`.
    ///
    /// # Errors
    /// The first [`RecordError`] found.
    pub fn check(&self, max_value_size: usize, now_ms: u64) -> Result<(), RecordError> {
        if self.value_len() > max_value_size {
            return Err(RecordError::ValueTooLarge {
                len: self.value_len(),
                limit: max_value_size,
            });
        }
        let public = self.writer_key()?;
        if !public.verify(&self.signed_bytes(), &self.signature) {
            return Err(RecordError::BadSignature);
        }
        check_key(&self.key, &public.to_peer_id())?;
        if let Some(expires_at) = self.expires_at.filter(|e| *e <= now_ms) {
            return Err(RecordError::Expired { expires_at });
        }
        let ahead_ms = self.version.ms.saturating_sub(now_ms);
        if ahead_ms > MAX_CLOCK_AHEAD_MS {
            return Err(RecordError::FromTheFuture { version: self.version, ahead_ms });
        }
        Ok(())
    }

    /// The record's [`Stamp`].
    pub fn stamp(&self) -> Stamp {
        Stamp { version: self.version, writer: self.writer.clone(), tombstone: self.is_tombstone() }
    }

    /// The total order replicas agree on: version first, then the writer's id, then (only for
    /// the impossible case of one writer signing two records with one version) the content.
    pub fn precedence(&self, other: &Record) -> Ordering {
        self.version
            .cmp(&other.version)
            .then_with(|| self.writer.cmp(&other.writer))
            .then_with(|| self.value.cmp(&other.value))
            .then_with(|| self.expires_at.cmp(&other.expires_at))
            .then_with(|| self.signature.cmp(&other.signature))
    }
}

/// The record a replica keeps of two: the greater by [`Record::precedence`]. Deterministic,
/// commutative, associative and idempotent, so replicas that saw the same writes in any order
/// hold the same record.
pub fn merge(a: Record, b: Record) -> Record {
    if b.precedence(&a) == Ordering::Greater {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keypair(seed: u8) -> Keypair {
        let mut bytes = [0u8; 32];
        bytes[0] = seed;
        Keypair::ed25519_from_bytes(bytes).unwrap()
    }

    fn record(kp: &Keypair, key: &str, value: &str, ms: u64) -> Record {
        Record::sign(kp, key.into(), Some(value.as_bytes().to_vec()), Hlc::new(ms, 0), None)
            .unwrap()
    }

    #[test]
    fn a_signed_record_checks_out() {
        let kp = keypair(1);
        let r = record(&kp, "k", "v", 1000);
        assert_eq!(r.check(1024, 1000), Ok(()));
        assert_eq!(r.writer_id().unwrap(), kp.public().to_peer_id());
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let kp = keypair(1);
        let mut r = record(&kp, "k", "v", 1000);
        r.value = Some(b"w".to_vec());
        assert_eq!(r.check(1024, 1000), Err(RecordError::BadSignature));

        let mut r = record(&kp, "k", "v", 1000);
        r.version = Hlc::new(2000, 0);
        assert_eq!(r.check(1024, 2000), Err(RecordError::BadSignature));

        // Claiming another writer: the signature was made by key 1, the writer field says key 2.
        let mut r = record(&kp, "k", "v", 1000);
        r.writer = keypair(2).public().encode_protobuf();
        assert_eq!(r.check(1024, 1000), Err(RecordError::BadSignature));

        let mut r = record(&kp, "k", "v", 1000);
        r.writer = vec![1, 2, 3];
        assert_eq!(r.check(1024, 1000), Err(RecordError::BadWriter));
    }

    #[test]
    fn owned_keys_take_only_their_owner() {
        let owner = keypair(1);
        let other = keypair(2);
        let key = format!("@{}/profile", owner.public().to_peer_id());
        assert_eq!(record(&owner, &key, "v", 1).check(1024, 1), Ok(()));
        assert!(matches!(
            record(&other, &key, "v", 1).check(1024, 1),
            Err(RecordError::Forbidden { .. })
        ));
        // A key that starts with @ but names no peer says so (it said "belongs to ;").
        for key in ["@nobody/x", "@", "@/x"] {
            let err = record(&other, key, "v", 1).check(1024, 1).unwrap_err();
            assert!(matches!(err, RecordError::BadOwner { .. }), "{key}: {err}");
            assert!(err.to_string().contains("names no peer"), "{err}");
        }
    }

    #[test]
    fn size_and_future_limits() {
        let kp = keypair(1);
        assert_eq!(
            record(&kp, "k", "12345", 1).check(4, 1),
            Err(RecordError::ValueTooLarge { len: 5, limit: 4 })
        );
        assert!(matches!(
            record(&kp, "k", "v", 10 * MAX_CLOCK_AHEAD_MS).check(1024, 0),
            Err(RecordError::FromTheFuture { .. })
        ));
        assert_eq!(check_key("", &kp.public().to_peer_id()), Err(RecordError::EmptyKey));
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(matches!(
            check_key(&long, &kp.public().to_peer_id()),
            Err(RecordError::KeyTooLong { .. })
        ));
    }

    #[test]
    fn merge_keeps_the_newer_version_and_breaks_ties_on_the_writer() {
        let a = record(&keypair(1), "k", "a", 10);
        let b = record(&keypair(2), "k", "b", 20);
        assert_eq!(merge(a.clone(), b.clone()), b);
        assert_eq!(merge(b.clone(), a.clone()), b);
        let c = record(&keypair(2), "k", "c", 10);
        let winner = if c.writer > a.writer { c.clone() } else { a.clone() };
        assert_eq!(merge(a.clone(), c.clone()), winner);
        assert_eq!(merge(c, a), winner);
    }

    #[test]
    fn an_expired_record_is_refused() {
        let kp = keypair(1);
        let r =
            Record::sign(&kp, "k".into(), Some(b"v".to_vec()), Hlc::new(1, 0), Some(50)).unwrap();
        assert_eq!(r.check(1024, 49), Ok(()));
        assert_eq!(r.check(1024, 50), Err(RecordError::Expired { expires_at: 50 }));
        assert!(r.is_expired(60) && !r.is_expired(10));
    }

    #[test]
    fn a_tombstone_with_a_newer_version_wins() {
        let kp = keypair(1);
        let live = record(&kp, "k", "v", 10);
        let dead = Record::sign(&kp, "k".into(), None, Hlc::new(11, 0), None).unwrap();
        assert!(merge(live, dead.clone()).is_tombstone());
        assert_eq!(dead.check(0, 11), Ok(()));
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (0u8..3, 0u64..4, 0u32..3, proptest::option::of(0u8..3)).prop_map(|(w, ms, c, v)| {
            let kp = keypair(w);
            Record::sign(&kp, "k".into(), v.map(|v| vec![v]), Hlc::new(ms, c), None).unwrap()
        })
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_record(), b in arb_record()) {
            prop_assert_eq!(merge(a.clone(), b.clone()), merge(b, a));
        }

        #[test]
        fn merge_is_associative(a in arb_record(), b in arb_record(), c in arb_record()) {
            prop_assert_eq!(
                merge(merge(a.clone(), b.clone()), c.clone()),
                merge(a, merge(b, c))
            );
        }

        #[test]
        fn merge_is_idempotent(a in arb_record(), b in arb_record()) {
            prop_assert_eq!(merge(a.clone(), a.clone()), a.clone());
            let ab = merge(a.clone(), b);
            prop_assert_eq!(merge(ab.clone(), a), ab);
        }
    }
}
