//! Group commit: a peer with a data directory commits the writes that queued while its last
//! commit ran in one transaction (one fsync), a StoreMany in exactly one, and answers each
//! write only once it is committed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::{local, wait_for, within, WAIT};
use futures::StreamExt;
use libp2p::identity::Keypair;
use peerkv::{Config, Hlc, Node, NodeInfo, Record, Request, Response};

/// A peer with a data directory in `dir`, and a peer in memory that knows it.
async fn durable_and_sender(dir: &std::path::Path) -> (Node, Node) {
    let durable = within("spawn", Node::spawn(Config { data_dir: Some(dir.into()), ..local() }))
        .await
        .expect("spawn the durable peer");
    let addr = within("listen", durable.listen_addrs()).await.expect("listen")[0].clone();
    let sender = within("spawn", Node::spawn(Config { bootstrap: vec![addr], ..local() }))
        .await
        .expect("spawn the sender");
    // Quiet first: the sender is in the table, and the listen addresses and the peers are
    // saved (a commit each), so what follows is the test's alone.
    let settled = wait_for(WAIT, || async {
        durable.info().await.is_ok_and(|i| {
            i.routing_table == 1 && i.store_commits >= 2 && i.store_writes_queued == 0
        })
    })
    .await;
    assert!(settled, "the durable peer never settled: {:?}", durable.info().await);
    (durable, sender)
}

fn record(kp: &Keypair, i: usize) -> Record {
    let version = Hlc::new(peerkv::clock::now_ms(), 0);
    Record::sign(kp, format!("key-{i:05}"), Some(format!("value {i}").into_bytes()), version, None)
        .expect("sign")
}

async fn info(node: &Node) -> NodeInfo {
    within("info", node.info()).await.expect("info")
}

/// 200 Stores, 50 in flight at a time, into one durable peer: every one acknowledged and readable,
/// in fewer commits than records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (durable, sender) = durable_and_sender(dir.path()).await;
    let before = info(&durable).await;
    let kp = Keypair::generate_ed25519();
    let target = durable.peer_id();
    // 50 in flight at a time (a connection takes at most 100 streams at once).
    let answers: Vec<_> = within(
        "stores",
        futures::stream::iter(
            (0..200)
                .map(|i| sender.send_request(target, Request::Store { record: record(&kp, i) })),
        )
        .buffer_unordered(50)
        .collect(),
    )
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        match answer.expect("answer") {
            Response::Stored { .. } => {}
            other => panic!("store {i}: {other:?}"),
        }
    }
    let after = info(&durable).await;
    let commits = after.store_commits - before.store_commits;
    let records = after.records_committed - before.records_committed;
    println!("200 concurrent stores: {records} records in {commits} commits");
    assert_eq!(records, 200);
    assert!(commits < records, "no group commit: {commits} commits for {records} records");
    assert_eq!(after.records, 200, "every acknowledged record is in the index");
    // Acknowledged means readable here.
    let found = within(
        "fetch",
        sender.send_request(
            target,
            Request::Fetch { key: "key-00199".into(), near: 0, version_only: false },
        ),
    )
    .await
    .expect("fetch");
    assert!(matches!(found, Response::Found { record: Some(_), .. }), "{found:?}");
    within("shutdown", sender.shutdown()).await.ok();
    within("shutdown", durable.shutdown()).await.ok();
}

/// A StoreMany of 2,500 records is one transaction, and survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_many_is_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (durable, sender) = durable_and_sender(dir.path()).await;
    let before = info(&durable).await;
    let kp = Keypair::generate_ed25519();
    let records: Vec<Record> = (0..2500).map(|i| record(&kp, i)).collect();
    let answer = within(
        "store many",
        sender.send_request(durable.peer_id(), Request::StoreMany { records }),
    )
    .await
    .expect("answer");
    match answer {
        Response::StoredMany { stored: 2500, rejected } if rejected.is_empty() => {}
        other => panic!("{other:?}"),
    }
    let after = info(&durable).await;
    assert_eq!(after.records_committed - before.records_committed, 2500);
    assert_eq!(after.store_commits - before.store_commits, 1, "one transaction");
    assert_eq!(after.records, 2500);
    within("shutdown", sender.shutdown()).await.ok();
    within("shutdown", durable.shutdown()).await.ok();
    let again =
        within("spawn", Node::spawn(Config { data_dir: Some(dir.path().into()), ..local() }))
            .await
            .expect("restart");
    assert_eq!(info(&again).await.records, 2500);
    within("shutdown", again.shutdown()).await.ok();
}

/// A committer that fails every batch, as a full or broken disk does.
struct Broken;

impl peerkv::store::Committer for Broken {
    fn commit(&mut self, _: &[peerkv::store::Job]) -> Result<(), String> {
        Err("disk full (test)".into())
    }
}

/// A peer whose commits fail acknowledges nothing and holds nothing: a Store is refused and a
/// StoreMany rejects every record, each with the storage error; a put that needs it fails with
/// that reason; and it keeps serving (fetches, its own gets) all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_commits_fail_acknowledges_nothing() {
    let store = peerkv::store::Store::with_committer(Box::new(Broken)).expect("store");
    let broken =
        within("spawn", Node::spawn_with_store(local(), store)).await.expect("spawn the peer");
    let addr = within("listen", broken.listen_addrs()).await.expect("listen")[0].clone();
    let sender = within("spawn", Node::spawn(Config { bootstrap: vec![addr], ..local() }))
        .await
        .expect("spawn the sender");
    let met = wait_for(WAIT, || async {
        sender.info().await.is_ok_and(|i| i.routing_table == 1)
            && broken.info().await.is_ok_and(|i| i.routing_table == 1)
    })
    .await;
    assert!(met, "the two peers never met");
    let kp = Keypair::generate_ed25519();
    let target = broken.peer_id();

    let answer =
        within("store", sender.send_request(target, Request::Store { record: record(&kp, 1) }))
            .await
            .expect("an answer");
    match answer {
        Response::Rejected { reason } => assert!(reason.contains("disk full (test)"), "{reason}"),
        other => panic!("a write that was not committed was answered {other:?}"),
    }
    let records: Vec<Record> = (2..5).map(|i| record(&kp, i)).collect();
    let answer = within("store many", sender.send_request(target, Request::StoreMany { records }))
        .await
        .expect("an answer");
    match answer {
        Response::StoredMany { stored, rejected } => {
            assert_eq!(stored, 0, "{rejected:?}");
            assert_eq!(rejected.len(), 3, "{rejected:?}");
            assert!(rejected.iter().all(|(_, r)| r.contains("disk full (test)")), "{rejected:?}");
        }
        other => panic!("a batch that was not committed was answered {other:?}"),
    }
    let fetch = Request::Fetch { key: "key-00001".into(), near: 0, version_only: false };
    let found = within("fetch", sender.send_request(target, fetch)).await.expect("fetch");
    assert!(matches!(found, Response::Found { record: None, .. }), "{found:?}");
    let held = info(&broken).await;
    assert_eq!(held.records, 0);
    assert_eq!(held.store_commits, 0);
    assert!(held.store_commits_failed >= 2, "{held:?}");

    // Two peers, so R = 2 and W = 2: a put needs the broken peer, and says why it failed.
    let err = within("put", sender.put("through-a-broken-disk", b"v".to_vec()))
        .await
        .expect_err("a put the broken peer cannot store");
    let text = err.to_string();
    assert!(text.contains("disk full (test)"), "{text}");
    // The broken peer still reads what the other holds.
    let got = within("get", broken.get("through-a-broken-disk")).await;
    assert!(got.is_ok(), "{got:?}");
    within("shutdown", sender.shutdown()).await.ok();
    within("shutdown", broken.shutdown()).await.ok();
}
