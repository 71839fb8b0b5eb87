//! Nothing acknowledged is lost: peers with data directories killed with SIGKILL and restarted
//! without bootstrap flags keep their ids and every acknowledged write.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::Peer;
use serde_json::Value;

/// Longest wait for the restarted peers to find each other again.
const REJOIN: Duration = Duration::from_secs(60);

/// Starts a JSON-mode peer on 127.0.0.1 with `dir` as its data directory; returns it with its
/// peer id and first listen address.
async fn start(dir: &Path, extra: &[&str]) -> (Peer, String, String) {
    let mut args: Vec<String> = vec![
        "--json".into(),
        "--no-mdns".into(),
        "--listen".into(),
        "/ip4/127.0.0.1/tcp/0".into(),
        "--data-dir".into(),
        dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut peer = Peer::spawn(env!("CARGO_BIN_EXE_peerkv"), &args);
    let started = peer.json().await;
    assert_eq!(started["event"], "started", "{started}");
    let id = started["peer_id"].as_str().expect("peer_id").to_owned();
    let addr = started["listen_addrs"][0].as_str().expect("addr").to_owned();
    (peer, id, addr)
}

async fn kill9(peer: &mut Peer) {
    peer.child.start_kill().expect("SIGKILL");
    let _ = tokio::time::timeout(Duration::from_secs(10), peer.child.wait()).await;
}

/// Asks `get key` until it returns `want`, up to [`REJOIN`].
async fn eventually_reads(peer: &mut Peer, key: &str, want: &str) -> Value {
    let deadline = Instant::now() + REJOIN;
    loop {
        let got = peer.ask_json(&format!("get {key}")).await;
        if got["value"] == want || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Three peers, 200 acknowledged puts, every process killed with SIGKILL, restarted without
/// bootstrap flags: every key reads back with its latest value and the peer ids are unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_and_restart_without_bootstrap() {
    let dirs: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let (a, id_a, addr_a) = start(dirs[0].path(), &[]).await;
    let (b, id_b, _) = start(dirs[1].path(), &["--bootstrap", &addr_a]).await;
    let (c, id_c, _) = start(dirs[2].path(), &["--bootstrap", &addr_a]).await;
    let mut peers = vec![a, b, c];

    // 200 puts over 120 keys: 80 keys are written twice, so "latest" means something.
    let mut latest = BTreeMap::new();
    for i in 0..200 {
        let key = format!("k{}", i % 120);
        let value = format!("v{i}");
        let put = peers[i % 3].ask_json(&format!("put {key} {value}")).await;
        assert_eq!(put["ok"], true, "put {i}: {put}");
        latest.insert(key, value);
    }
    for peer in &mut peers {
        kill9(peer).await;
    }
    drop(peers);

    // Restart with no --bootstrap: the known peers and the ports of the last run are in the
    // data directories.
    let mut restarted = Vec::new();
    for (dir, id) in dirs.iter().zip([&id_a, &id_b, &id_c]) {
        let (peer, new_id, _) = start(dir.path(), &[]).await;
        assert_eq!(&new_id, id, "the peer id changed across the restart");
        restarted.push(peer);
    }
    // Every peer finds the other two again (a port another process took meanwhile means a
    // new address, found by the rejoin timer) before the reads count.
    let ids = [id_a, id_b, id_c];
    let deadline = Instant::now() + REJOIN;
    for (i, peer) in restarted.iter_mut().enumerate() {
        loop {
            let routes = peer.routes().await;
            let others = ids.iter().enumerate().filter(|(j, _)| *j != i);
            if others.clone().all(|(_, id)| routes.contains(id)) {
                break;
            }
            assert!(Instant::now() < deadline, "peer {i} did not rejoin: routes {routes:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let first = latest.iter().next().map(|(k, v)| (k.clone(), v.clone())).expect("keys");
    let got = eventually_reads(&mut restarted[2], &first.0, &first.1).await;
    assert_eq!(got["value"], first.1.as_str(), "the restarted peers did not rejoin: {got}");
    for (i, (key, value)) in latest.iter().enumerate() {
        let got = restarted[i % 3].ask_json(&format!("get {key}")).await;
        assert_eq!(got["value"], value.as_str(), "{key} after the restart: {got}");
    }
}

/// A replica killed with SIGKILL while puts run: after a restart its store opens cleanly and
/// holds every put it had acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_write_keeps_what_it_acknowledged() {
    let dirs: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let (mut a, _, addr_a) = start(dirs[0].path(), &[]).await;
    let (_b, _, _) = start(dirs[1].path(), &["--bootstrap", &addr_a]).await;
    let (mut c, id_c, _) = start(dirs[2].path(), &["--bootstrap", &addr_a]).await;

    // Queue all the puts at once so that some are in flight when the replica dies.
    const PUTS: usize = 150;
    for i in 0..PUTS {
        a.send(&format!("put w{i} value-{i}")).await;
    }
    let mut acked_by_c = Vec::new();
    for i in 0..PUTS {
        let put = a.json().await;
        if i == 40 {
            kill9(&mut c).await;
        }
        assert_eq!(put["ok"], true, "put {i}: {put}");
        let stored_on: Vec<&str> = put["stored_on"]
            .as_array()
            .expect("stored_on")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if stored_on.contains(&id_c.as_str()) {
            acked_by_c
                .push((format!("w{i}"), put["version"].as_str().expect("version").to_owned()));
        }
    }
    assert!(!acked_by_c.is_empty(), "the replica acknowledged nothing before it died");

    let (mut c, new_id, _) = start(dirs[2].path(), &[]).await;
    assert_eq!(new_id, id_c);
    let keys = c.ask_json("keys").await;
    assert_eq!(keys["ok"], true, "{keys}");
    let held: BTreeMap<String, String> = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap_or("").to_owned(),
                k["version"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for (key, version) in &acked_by_c {
        let have = held
            .get(key)
            .unwrap_or_else(|| panic!("{key} was acknowledged by the replica and is gone"));
        let ord = |v: &str| {
            let (ms, c) = v.split_once('.').unwrap_or((v, "0"));
            (ms.parse::<u64>().unwrap_or(0), c.parse::<u32>().unwrap_or(0))
        };
        assert!(ord(have) >= ord(version), "{key}: held {have}, acknowledged {version}");
    }
    println!(
        "replica killed after 40 of {PUTS} puts: {} acknowledged by it, all {} present after the restart ({} keys held)",
        acked_by_c.len(),
        acked_by_c.len(),
        held.len()
    );
}

/// Starts peerkv on `dir`, which must refuse to start; returns what it said on stderr.
async fn refused(dir: &Path) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_peerkv"))
        .args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run");
    assert!(!out.status.success(), "peerkv started on {}", dir.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A data directory in use by a running peer is refused with the way out; a directory that
/// holds something else is refused and left untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_and_foreign_directories_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_a, _, _) = start(dir.path(), &[]).await;
    let err = refused(dir.path()).await;
    assert!(err.contains("in use by another peerkv") && err.contains("--ephemeral"), "{err}");

    let foreign = tempfile::tempdir().expect("tempdir");
    std::fs::write(foreign.path().join("notes.txt"), b"mine").expect("write");
    let err = refused(foreign.path()).await;
    assert!(err.contains("not empty") && err.contains("left untouched"), "{err}");
    let names: Vec<_> =
        std::fs::read_dir(foreign.path()).expect("read").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 1, "the foreign directory was changed: {names:?}");
}
