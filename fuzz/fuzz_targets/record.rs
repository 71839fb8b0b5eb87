//! Records as a replica receives them: decoded from arbitrary bytes, then every check the
//! replica runs before it stores one, and the merge rule between them.
//!
//! Input: 8 bytes of `now` (ms since the Unix epoch, little-endian; missing bytes are 0), then
//! either one CBOR record or a CBOR list of records (the seeds hold real signed ones, so
//! mutations reach the signature check and beyond). Nothing may panic, and the merge laws hold:
//! `precedence` is antisymmetric, `merge` commutative and idempotent, and of two records for one
//! key only identical ones tie.

#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;
use peerkv::protocol::decode;
use peerkv::record::{check_key, merge, MAX_KEY_LEN};
use peerkv::{PeerId, Record};

/// A writer that is not any record's (a fixed Ed25519 identity).
fn stranger() -> PeerId {
    let key = libp2p::identity::Keypair::ed25519_from_bytes([9u8; 32]).expect("32 bytes");
    key.public().to_peer_id()
}

fn inspect(record: &Record, now_ms: u64) {
    let _ = format!("{record:?}");
    let writer = record.writer_id();
    assert_eq!(writer.is_ok(), record.writer_key().is_ok());
    for max_value_size in [0, 16, 1 << 20] {
        let checked = record.check(max_value_size, now_ms);
        if checked.is_ok() {
            assert!(record.value_len() <= max_value_size);
            assert!(!record.key.is_empty() && record.key.len() <= MAX_KEY_LEN);
            assert!(!record.is_expired(now_ms));
            assert!(writer.is_ok());
        }
        let _ = checked.map_err(|e| e.to_string());
    }
    if let Ok(writer) = &writer {
        let _ = check_key(&record.key, writer).map_err(|e| e.to_string());
    }
    let _ = check_key(&record.key, &stranger()).map_err(|e| e.to_string());
}

fuzz_target!(|data: &[u8]| {
    let (now, rest) = data.split_at(data.len().min(8));
    let mut now_bytes = [0u8; 8];
    now_bytes[..now.len()].copy_from_slice(now);
    let now_ms = u64::from_le_bytes(now_bytes);

    let records: Vec<Record> = match decode::<Vec<Record>>(rest) {
        Ok(records) => records,
        Err(_) => match decode::<Record>(rest) {
            Ok(record) => vec![record],
            Err(_) => return,
        },
    };
    for record in &records {
        inspect(record, now_ms);
    }
    for a in records.iter().take(8) {
        for b in records.iter().take(8) {
            let ab = a.precedence(b);
            assert_eq!(ab, b.precedence(a).reverse(), "precedence is not antisymmetric");
            if ab == Ordering::Equal && a.key == b.key {
                assert_eq!(a, b, "two different records for one key tie");
            }
            let merged = merge(a.clone(), b.clone());
            assert_ne!(merged.precedence(a), Ordering::Less, "merge kept the lesser");
            assert_ne!(merged.precedence(b), Ordering::Less, "merge kept the lesser");
            let swapped = merge(b.clone(), a.clone());
            assert_eq!(merged.precedence(&swapped), Ordering::Equal, "merge is not commutative");
            if a.key == b.key {
                assert_eq!(merged, swapped, "merge is not commutative");
            }
            assert_eq!(merge(merged.clone(), merged.clone()), merged, "merge is not idempotent");
        }
    }
});
