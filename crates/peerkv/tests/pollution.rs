//! Pollution (issue 13): one writer sends 10,000 valid records for keys of its choosing in four
//! StoreMany batches of 2,500, straight to one peer (`Node::send_request`, bypassing
//! placement). The peer takes a new key only when it is among the key's 2R nearest (the
//! guard), and at most `--max-records-per-writer` records of one writer. In-process on
//! 127.0.0.1, mDNS off; every wait has a deadline.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::{cluster, full_tables, shutdown, within};
use libp2p::identity::Keypair;
use peerkv::{Config, Hlc, Node, PeerId, Record, Request, Response};

const RECORDS: usize = 10_000;
const BATCH: usize = 2_500;

/// What a flood of `keys` from `writer` to `target` did: records stored, and the reasons of
/// those refused.
async fn flood(
    from: &Node,
    target: PeerId,
    writer: &Keypair,
    keys: &[String],
) -> (usize, Vec<String>) {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        as u64;
    let mut stored = 0;
    let mut reasons = Vec::new();
    let mut took = Vec::new();
    for batch in keys.chunks(BATCH) {
        let records = batch
            .iter()
            .map(|k| {
                Record::sign(writer, k.clone(), Some(b"spam".to_vec()), Hlc::new(ms, 0), None)
                    .unwrap()
            })
            .collect();
        let sent = std::time::Instant::now();
        let response =
            within("store many", from.send_request(target, Request::StoreMany { records })).await;
        took.push(sent.elapsed());
        match response.unwrap() {
            Response::StoredMany { stored: s, rejected } => {
                stored += s as usize;
                reasons.extend(rejected.into_iter().map(|(_, why)| why));
            }
            other => panic!("{other:?}"),
        }
    }
    // A figure for the note, never asserted.
    let (p50, p95) = common::percentiles(&mut took);
    println!("StoreMany batches of {BATCH}: answered in {p50:.1} ms median, {p95:.1} ms p95");
    (stored, reasons)
}

/// `target`'s place among `peers` for `key` (0 = nearest).
fn place(key: &str, target: PeerId, peers: &[PeerId]) -> usize {
    let ranked = peerkv::placement::rank(key, peers.iter().copied());
    ranked.iter().position(|p| *p == target).unwrap()
}

/// Eight peers, R = 2 (the guard takes a new key only among its 4 nearest); the target
/// (node 0) holds at most 1,000 records of one writer; the flooder is node 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_keys_are_refused_and_one_writer_holds_at_most_its_quota() {
    let flooder = Keypair::generate_ed25519();
    let nodes = cluster(8, |i| Config {
        replication: 2,
        max_records_per_writer: (i == 0).then_some(1_000),
        keypair: (i == 7).then(|| flooder.clone()),
        ..common::local()
    })
    .await;
    full_tables(&nodes).await;
    let peers: Vec<PeerId> = nodes.iter().map(Node::peer_id).collect();
    let target = peers[0];

    // Far keys: 4 or more places beyond the guard's 4 by the whole overlay (so a view of the
    // target's that missed a peer or two would still rank it out).
    let far: Vec<String> = (0..)
        .map(|i| format!("far/{i}"))
        .filter(|k| place(k, target, &peers) >= 6)
        .take(RECORDS)
        .collect();
    let (stored, reasons) = flood(&nodes[7], target, &flooder, &far).await;
    println!("{RECORDS} far keys: {stored} stored, {} refused", reasons.len());
    assert_eq!((stored, reasons.len()), (0, RECORDS));
    assert!(reasons.iter().all(|r| r.starts_with("not among the 4 nearest to key \"far/")));

    // Arbitrary keys: the near ones are taken, up to the quota.
    let any: Vec<String> = (0..RECORDS).map(|i| format!("any/{i}")).collect();
    let near = any.iter().filter(|k| place(k, target, &peers) < 4).count();
    let (stored, reasons) = flood(&nodes[7], target, &flooder, &any).await;
    let by_guard = reasons.iter().filter(|r| r.starts_with("not among")).count();
    // After the first reasons of a batch, reasons are cut short (replica::FULL_REASONS).
    let by_quota = reasons.iter().filter(|r| r.starts_with("writer quota")).count();
    println!(
        "{RECORDS} arbitrary keys ({near} with the target among their 4 nearest): {stored} stored, {by_guard} refused by the guard, {by_quota} by the quota"
    );
    assert_eq!(stored, 1_000, "{near} near keys, quota 1,000");
    assert_eq!(by_guard + by_quota, RECORDS - stored);
    assert!(by_guard > 0 && by_quota > 0);
    let info = within("info", nodes[0].info()).await.unwrap();
    assert_eq!(info.records, 1_000);

    // Honest writes on the flooded peer go on.
    let put = within("put", nodes[0].put("honest", b"ok".to_vec())).await.unwrap();
    assert!(put.acked >= put.needed, "{put:?}");
    let got = within("get", nodes[3].get("honest")).await.unwrap();
    assert_eq!(got.record.and_then(|r| r.value).as_deref(), Some(&b"ok"[..]));
    shutdown(&nodes).await;
}

/// Two peers: every key is near (the guard passes everything), so the quota alone bounds the
/// flood — by default a quarter of --max-records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_quota_is_a_quarter_of_the_store() {
    let flooder = Keypair::generate_ed25519();
    let nodes = cluster(2, |i| Config {
        max_records: 4_000,
        keypair: (i == 1).then(|| flooder.clone()),
        ..common::local()
    })
    .await;
    let target = nodes[0].peer_id();
    let keys: Vec<String> = (0..RECORDS).map(|i| format!("k/{i}")).collect();
    let (stored, reasons) = flood(&nodes[1], target, &flooder, &keys).await;
    println!("{RECORDS} keys to a 2-peer overlay: {stored} stored, {} refused", reasons.len());
    assert_eq!((stored, reasons.len()), (1_000, RECORDS - 1_000));
    let first = &reasons[0];
    assert!(
        first.starts_with("writer quota: 1000 records of this writer held (limit 1000, --max-records-per-writer); keys already held can still be updated"),
        "{first}"
    );
    // A key held is still updated (a delete, here), past the quota.
    let report = within("del", nodes[1].delete("k/0")).await.unwrap();
    assert!(report.stored_on.contains(&target), "{report:?}");
    shutdown(&nodes).await;
}
