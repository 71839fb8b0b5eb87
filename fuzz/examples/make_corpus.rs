//! Writes the seed corpus (`fuzz/corpus/<target>/`): a few small valid inputs per fuzz target,
//! from real values — encoded requests and responses, signed records, REPL lines, a store file.
//! Run from `fuzz/`: `cargo run --example make_corpus` (stable is enough). Seeds are named by
//! what they hold, so a rerun rewrites the same files.

use std::path::Path;

use libp2p::identity::Keypair;
use peerkv::protocol::{encode, Request, Response};
use peerkv::store::Store;
use peerkv::{Hlc, Multiaddr, PeerId, Record};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A fixed identity, so seeds are the same on every run.
fn keypair(seed: u8) -> Result<Keypair> {
    Ok(Keypair::ed25519_from_bytes([seed; 32])?)
}

/// Versions around 2026-01-01; the record seeds pass `NOW_MS` as the replica's clock.
const NOW_MS: u64 = 1_767_225_600_000;

fn records() -> Result<Vec<Record>> {
    let a = keypair(1)?;
    let b = keypair(2)?;
    let owned = format!("@{}/profile", a.public().to_peer_id());
    Ok(vec![
        Record::sign(&a, "greeting".into(), Some(b"hello".to_vec()), Hlc::new(NOW_MS, 0), None)?,
        Record::sign(&b, "greeting".into(), Some(b"hi".to_vec()), Hlc::new(NOW_MS, 1), None)?,
        Record::sign(&a, "greeting".into(), None, Hlc::new(NOW_MS + 5, 0), None)?,
        Record::sign(&a, owned, Some(vec![0, 1, 2, 255]), Hlc::new(NOW_MS, 0), None)?,
        Record::sign(
            &b,
            "session".into(),
            Some(b"token".to_vec()),
            Hlc::new(NOW_MS - 10, 3),
            Some(NOW_MS + 60_000),
        )?,
    ])
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

/// `protocol`: one byte for the codec's `max_value_size` / 64, then the message.
fn protocol(dir: &Path) -> Result<()> {
    let records = records()?;
    let addr: Multiaddr = "/ip4/192.168.1.7/tcp/4001".parse()?;
    let peer = keypair(3)?.public().to_peer_id();
    let requests = [
        ("store", Request::Store { record: records[0].clone() }),
        ("store-tombstone", Request::Store { record: records[2].clone() }),
        ("fetch", Request::Fetch { key: "greeting".into(), near: 5, version_only: false }),
        ("fetch-version", Request::Fetch { key: "greeting".into(), near: 5, version_only: true }),
        ("digest", Request::Digest { entries: vec![("greeting".into(), Hlc::new(NOW_MS, 0))] }),
        ("summary", Request::Summary { buckets: vec![(7, 2, 0xdead_beef), (300, 1, 5)] }),
        ("store-many", Request::StoreMany { records: records[3..].to_vec() }),
        ("members", Request::Members { max: 16 }),
    ];
    for (name, request) in requests {
        write(dir, &format!("request-{name}"), &[&[16u8][..], &encode(&request)?].concat())?;
    }
    let responses = [
        ("stored", Response::Stored { version: Hlc::new(NOW_MS, 2) }),
        (
            "found",
            Response::Found {
                record: Some(records[1].clone()),
                near: vec![(peer, vec![addr.clone()])],
                down: vec![PeerId::from(keypair(4)?.public())],
            },
        ),
        ("found-nothing", Response::Found { record: None, near: vec![], down: vec![] }),
        (
            "version",
            Response::Version {
                held: Some(records[1].stamp()),
                near: vec![(peer, vec![addr.clone()])],
                down: vec![],
            },
        ),
        ("missing", Response::Missing { keys: vec!["a".into(), "b".into()] }),
        ("mismatch", Response::Mismatch { buckets: vec![1, 200] }),
        (
            "stored-many",
            Response::StoredMany {
                stored: 2,
                rejected: vec![("k".into(), "bad signature".into())],
            },
        ),
        ("members", Response::Members { peers: vec![(peer, vec![addr], 12)] }),
        ("rejected", Response::Rejected { reason: "value too large".into() }),
    ];
    for (name, response) in responses {
        write(dir, &format!("response-{name}"), &[&[16u8][..], &encode(&response)?].concat())?;
    }
    // Past the size limit of `max_value_size` 0 (5,120 bytes with the envelope).
    let big =
        Record::sign(&keypair(1)?, "big".into(), Some(vec![7; 6000]), Hlc::new(NOW_MS, 0), None)?;
    write(
        dir,
        "request-too-large",
        &[&[0u8][..], &encode(&Request::Store { record: big })?].concat(),
    )
}

/// `record`: `NOW_MS` as 8 bytes, then one record or a list.
fn record(dir: &Path) -> Result<()> {
    let now = NOW_MS.to_le_bytes();
    for (i, r) in records()?.iter().enumerate() {
        write(dir, &format!("record-{i}"), &[&now[..], &encode(r)?].concat())?;
    }
    write(dir, "records", &[&now[..], &encode(&records()?)?].concat())
}

/// `repl_line`: lines as people type them.
fn repl_line(dir: &Path) -> Result<()> {
    let lines = [
        "put greeting hello there  world ",
        "put k 'v --ttl 5m'",
        "put k some value --ttl 1h30m",
        "put \"a key\" \"a \\\"quoted\\\" value\\n\"",
        "put k --file /tmp/a.bin --ttl 10m",
        "put k -",
        "get k --raw",
        "GET k",
        "rm k",
        "closest k",
        "bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        "dial /ip4/127.0.0.1/udp/4001/quic-v1",
        "help put",
        "peers",
        "# a comment",
        "exit",
    ];
    for (i, line) in lines.iter().enumerate() {
        write(dir, &format!("line-{i:02}"), line.as_bytes())?;
    }
    Ok(())
}

/// `store_open`: a store file holding records, peers and listen addresses.
fn store_open(dir: &Path) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("peerkv-make-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let path = scratch.join("peerkv.redb");
    let result = (|| -> Result<Vec<u8>> {
        {
            let mut store = Store::open(&path)?;
            for r in records()? {
                store.put_merge(r)?;
            }
            let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse()?;
            store.save_peers(&[(keypair(3)?.public().to_peer_id(), vec![addr.clone()])])?;
            store.save_listen_addrs(&[addr])?;
        }
        Ok(std::fs::read(&path)?)
    })();
    std::fs::remove_dir_all(&scratch)?;
    let bytes = result?;
    write(dir, "store", &bytes)?;
    write(dir, "empty", b"")
}

fn main() -> Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    protocol(&corpus.join("protocol"))?;
    record(&corpus.join("record"))?;
    repl_line(&corpus.join("repl_line"))?;
    store_open(&corpus.join("store_open"))?;
    println!("seeds written under {}", corpus.display());
    Ok(())
}
