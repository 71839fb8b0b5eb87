//! peerkv on a simulated LAN: every peer on a host of its own (a network namespace on one
//! bridge, made by scripts/lan.sh), the only place where mDNS runs. Needs root; without it these
//! tests say so and skip, except under CI (`CI=true`), where they fail.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::Peer;
use serde_json::Value;

/// The LAN tests share the machine's two cores: run them one at a time so their timings mean
/// something.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Longest wait for discovery, a notice or a heal.
const SETTLE: Duration = Duration::from_secs(60);

/// Longest wait, from the cut, for every other host to drop a host cut off: its liveness probes
/// (`peerkv::alive`, every 30 s) notice it within 41 s from the ends that dialed it and 50 s
/// from the others; the rest is margin for a loaded machine.
const CUT_NOTICE: Duration = Duration::from_secs(90);

fn script() -> String {
    format!("{}/../../scripts/lan.sh", env!("CARGO_MANIFEST_DIR"))
}

/// One run of test hosts; removed on drop (and by `clean-stale` after a crash).
struct Lan {
    run: String,
}

impl Lan {
    /// Makes `n` hosts, or `None` (after saying why) where namespaces cannot be made here.
    fn up(n: usize) -> Option<Lan> {
        let _ = Command::new(script()).arg("clean-stale").status();
        let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let out = Command::new(script())
            .args(["up", &run, &n.to_string()])
            .env("PKV_LAN_OWNER", std::process::id().to_string())
            .output()
            .expect("run scripts/lan.sh");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let _ = Command::new(script()).args(["down", &run]).status();
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "LAN TESTS CANNOT RUN: cannot make network namespaces: {why}"
            );
            eprintln!("\n*** SKIPPING LAN TEST: cannot make network namespaces here ({why}); run as root ***\n");
            return None;
        }
        Some(Lan { run })
    }

    fn addr(i: usize) -> String {
        format!("10.77.0.{i}")
    }

    /// Starts peerkv on host `i` in JSON mode, listening on the host's address; returns the
    /// peer, its id and its first listen address.
    async fn start(&self, i: usize, extra: &[&str]) -> (Peer, String, String) {
        let mut args: Vec<String> = vec![
            "exec".into(),
            self.run.clone(),
            i.to_string(),
            env!("CARGO_BIN_EXE_peerkv").into(),
            "--json".into(),
            "--ephemeral".into(),
            "--listen".into(),
            format!("/ip4/{}/tcp/0", Lan::addr(i)),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut peer = Peer::spawn(&script(), &args);
        let started = peer.json().await;
        assert_eq!(started["event"], "started", "{started}");
        let id = started["peer_id"].as_str().expect("peer_id").to_owned();
        let addr = started["listen_addrs"][0].as_str().expect("addr").to_owned();
        (peer, id, addr)
    }

    /// Starts a peer on each of hosts 1..=n; returns them and their ids.
    async fn start_all(&self, n: usize, extra: &[&str]) -> (Vec<Peer>, Vec<String>) {
        let mut peers = Vec::new();
        let mut ids = Vec::new();
        for i in 1..=n {
            let (peer, id, _) = self.start(i, extra).await;
            peers.push(peer);
            ids.push(id);
        }
        (peers, ids)
    }

    fn set_link(&self, i: usize, how: &str) {
        let status =
            Command::new(script()).args([how, &self.run, &i.to_string()]).status().expect("lan.sh");
        assert!(status.success(), "lan.sh {how} {i}");
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["down", &self.run]).status();
    }
}

/// Polls until every peer's routing table holds every other peer; returns the time taken from
/// `since`, or `None` past [`SETTLE`].
async fn all_know_all(peers: &mut [Peer], ids: &[String], since: Instant) -> Option<Duration> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut complete = true;
        for (i, peer) in peers.iter_mut().enumerate() {
            let routes: HashSet<String> = peer.routes().await.into_iter().collect();
            if ids.iter().enumerate().any(|(j, id)| j != i && !routes.contains(id)) {
                complete = false;
                break;
            }
        }
        if complete {
            return Some(since.elapsed());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts on `writer` until it succeeds, then gets on `reader` until the value is there; the time
/// from `since` to the first successful get, or `None` past [`SETTLE`].
async fn first_cross_host_get(
    writer: &mut Peer,
    reader: &mut Peer,
    since: Instant,
) -> Option<Duration> {
    let deadline = Instant::now() + SETTLE;
    let mut stored = false;
    while Instant::now() < deadline {
        if !stored {
            stored = writer.ask_json("put first-key first-value").await["ok"] == true;
        }
        if stored && reader.ask_json("get first-key").await["value"] == "first-value" {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn check_ok(answer: &Value, what: &str) {
    assert_eq!(answer["ok"], true, "{what}: {answer}");
}

/// Five peers, one per host, mDNS on and no bootstrap address: each ends with the other four in
/// its routing table and reads what host 1 wrote; a sixth peer started later finds them by mDNS
/// alone and reads the earlier keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdns_alone_builds_the_overlay_and_a_late_peer_joins() {
    let _serial = SERIAL.lock().await;
    let Some(lan) = Lan::up(6) else { return };
    let since = Instant::now();
    let (mut peers, mut ids) = lan.start_all(5, &[]).await;
    let took = all_know_all(&mut peers, &ids, since).await;
    let took = took.unwrap_or_else(|| panic!("5 hosts: discovery incomplete after {SETTLE:?}"));
    println!(
        "5 hosts: every peer knows every other {:.0} ms after start",
        took.as_secs_f64() * 1e3
    );

    for k in 0..10 {
        check_ok(&peers[0].ask_json(&format!("put lan-{k} value-{k}")).await, "put on host 1");
    }
    for (i, peer) in peers.iter_mut().enumerate().skip(1) {
        for k in 0..10 {
            let got = peer.ask_json(&format!("get lan-{k}")).await;
            assert_eq!(got["value"], format!("value-{k}"), "host {}: {got}", i + 1);
        }
    }

    // The latecomer.
    let joined = Instant::now();
    let (mut late, late_id, _) = lan.start(6, &[]).await;
    ids.push(late_id);
    peers.push(late);
    let took = all_know_all(&mut peers, &ids, joined).await;
    let took = took.unwrap_or_else(|| panic!("late peer: discovery incomplete after {SETTLE:?}"));
    println!(
        "6th host joined late: known both ways {:.0} ms after its start",
        took.as_secs_f64() * 1e3
    );
    late = peers.pop().expect("late peer");
    for k in 0..10 {
        let got = late.ask_json(&format!("get lan-{k}")).await;
        assert_eq!(got["value"], format!("value-{k}"), "late host: {got}");
    }
}

/// A host cut off the LAN: the others notice it is gone, puts still reach their write quorum,
/// and after the heal it is back in their routing tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_host_is_noticed_and_comes_back_after_the_heal() {
    let _serial = SERIAL.lock().await;
    let Some(lan) = Lan::up(5) else { return };
    let since = Instant::now();
    // A request to the cut host fails after 60 % of --timeout (12 s): the get of a missing key
    // below waits for that, with 8 s to spare before its own deadline.
    let (mut peers, ids) = lan.start_all(5, &["--timeout", "20"]).await;
    assert!(all_know_all(&mut peers, &ids, since).await.is_some(), "discovery incomplete");
    for k in 0..5 {
        check_ok(&peers[0].ask_json(&format!("put before-{k} v{k}")).await, "put before the cut");
    }

    // Cut host 3 (index 2). R = 5 and W = 3: one missing replica is within R - W.
    lan.set_link(3, "cut");
    let cut_at = Instant::now();
    let put = peers[0].ask_json("put during-cut still-works").await;
    check_ok(&put, "put right after the cut");
    // A key nobody wrote: "not found" waits for the silent replica's request to fail, then
    // answers — not a timeout.
    let missing = peers[1].ask_json("get never-written").await;
    assert_eq!(missing["found"], false, "get of a missing key right after the cut: {missing}");
    println!(
        "right after the cut: put {} ms ({} acked), get of a missing key {} ms",
        put["elapsed_ms"], put["acked"], missing["elapsed_ms"]
    );
    let cut_id = ids[2].clone();
    let deadline = cut_at + CUT_NOTICE;
    let mut noticed = false;
    while Instant::now() < deadline {
        let mut all = true;
        for (i, peer) in peers.iter_mut().enumerate() {
            if i != 2 && peer.peers().await.contains(&cut_id) {
                all = false;
            }
        }
        if all {
            noticed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !noticed {
        for (i, peer) in peers.iter_mut().enumerate() {
            if i != 2 {
                eprintln!("host {}: {}", i + 1, peer.ask_json("peers").await);
            }
        }
    }
    assert!(noticed, "the cut host is still listed by some peer {CUT_NOTICE:?} after the cut");
    println!(
        "cut host dropped from every peers list {:.1} s after the cut",
        cut_at.elapsed().as_secs_f64()
    );
    for (k, writer) in [0usize, 1, 3, 4].into_iter().enumerate() {
        let put = peers[writer].ask_json(&format!("put cut-{k} v{k}")).await;
        check_ok(&put, "put while a host is cut off");
        assert!(put["acked"].as_u64().unwrap_or(0) >= 3, "{put}");
    }
    let got = peers[4].ask_json("get during-cut").await;
    assert_eq!(got["value"], "still-works", "{got}");

    lan.set_link(3, "heal");
    let healed_at = Instant::now();
    let took = all_know_all(&mut peers, &ids, healed_at).await;
    let took =
        took.unwrap_or_else(|| panic!("after the heal the host is not back within {SETTLE:?}"));
    println!("after the heal every routing table is whole again in {:.1} s", took.as_secs_f64());
}

/// mDNS off on every host, peers bootstrapped from host 1's address: the same put and get work
/// over bootstrap alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_alone_works_without_mdns() {
    let _serial = SERIAL.lock().await;
    let Some(lan) = Lan::up(4) else { return };
    let (first, first_id, first_addr) = lan.start(1, &["--no-mdns"]).await;
    let mut peers = vec![first];
    let mut ids = vec![first_id];
    for i in 2..=4 {
        let (peer, id, _) = lan.start(i, &["--no-mdns", "--bootstrap", &first_addr]).await;
        peers.push(peer);
        ids.push(id);
    }
    check_ok(&peers[1].ask_json("put over-bootstrap works").await, "put on host 2");
    for (i, peer) in peers.iter_mut().enumerate() {
        let got = peer.ask_json("get over-bootstrap").await;
        assert_eq!(got["value"], "works", "host {}: {got}", i + 1);
    }
}

/// Ten cold starts of ten hosts in a row: discovery completes every time; prints how long it
/// took until every peer knew every other and until the first cross-host get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_cold_starts_of_ten_hosts() {
    let _serial = SERIAL.lock().await;
    let runs: usize =
        std::env::var("PEERKV_LAN_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let hosts: usize =
        std::env::var("PEERKV_LAN_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let mut discovery = Vec::new();
    let mut first_get = Vec::new();
    for run in 0..runs {
        let Some(lan) = Lan::up(hosts) else { return };
        let since = Instant::now();
        let (mut peers, ids) = lan.start_all(hosts, &[]).await;
        let (head, tail) = peers.split_at_mut(1);
        let got = first_cross_host_get(&mut head[0], &mut tail[hosts - 2], since).await;
        let got =
            got.unwrap_or_else(|| panic!("cold start {run}: no cross-host get within {SETTLE:?}"));
        let took = all_know_all(&mut peers, &ids, since).await;
        let took = took
            .unwrap_or_else(|| panic!("cold start {run}: discovery incomplete after {SETTLE:?}"));
        discovery.push(took);
        first_get.push(got);
        drop(peers);
        drop(lan);
    }
    let mut d = discovery.clone();
    let mut g = first_get.clone();
    let (d_med, _) = common::percentiles(&mut d);
    let (g_med, _) = common::percentiles(&mut g);
    println!(
        "{runs} cold starts of {hosts} hosts: all know all median {d_med:.0} ms, worst {:.0} ms; first cross-host get median {g_med:.0} ms, worst {:.0} ms",
        d.last().map_or(0.0, |x| x.as_secs_f64() * 1e3),
        g.last().map_or(0.0, |x| x.as_secs_f64() * 1e3),
    );
}

/// A partition: the hosts split in two groups and both sides try to write the same keys. Quorums
/// are strict (a peer cut off still counts, as failed), so for each key only the side that holds
/// a majority of its five replicas can write it: never both. The partition heals; within a
/// bounded time every replica of a key holds the same record, and a get from any host returns
/// the write that was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_converges_on_the_greater_version() {
    let _serial = SERIAL.lock().await;
    let Some(lan) = Lan::up(6) else { return };
    let since = Instant::now();
    let (mut peers, ids) = lan.start_all(6, &["--upkeep-interval", "2", "--timeout", "5"]).await;
    assert!(all_know_all(&mut peers, &ids, since).await.is_some(), "discovery incomplete");

    let status =
        Command::new(script()).args(["split", &lan.run, "4", "5", "6"]).status().expect("lan.sh");
    assert!(status.success());
    let split_at = Instant::now();
    // Each side notices the other is gone (ping), then writes the same keys: side B later, so
    // its versions are the greater ones.
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut separated = true;
        for (i, peer) in peers.iter_mut().enumerate() {
            let listed: HashSet<String> = peer.peers().await.into_iter().collect();
            let other_side = if i < 3 { &ids[3..] } else { &ids[..3] };
            if other_side.iter().any(|id| listed.contains(id)) {
                separated = false;
            }
        }
        if separated {
            break;
        }
        assert!(Instant::now() < deadline, "the sides never noticed the partition");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "partition noticed on both sides {:.1} s after the split",
        split_at.elapsed().as_secs_f64()
    );
    const KEYS: usize = 8;
    let mut acked: Vec<Option<&str>> = vec![None; KEYS];
    for k in 0..KEYS {
        let a = peers[k % 3].ask_json(&format!("put split-{k} from-side-a")).await;
        let b = peers[3 + k % 3].ask_json(&format!("put split-{k} from-side-b")).await;
        for (answer, side) in [(&a, "from-side-a"), (&b, "from-side-b")] {
            if answer["ok"] == true {
                assert!(acked[k].is_none(), "split-{k}: both sides of the partition wrote it");
                acked[k] = Some(side);
            } else {
                let error = answer["error"].as_str().unwrap_or("");
                assert!(error.contains("quorum not met"), "split-{k}: {answer}");
            }
        }
        assert!(acked[k].is_some(), "split-{k}: neither side could write it: {a} {b}");
    }

    let status = Command::new(script()).args(["join", &lan.run]).status().expect("lan.sh");
    assert!(status.success());
    let healed_at = Instant::now();
    let all: Vec<peerkv::PeerId> = ids.iter().map(|id| id.parse().expect("peer id")).collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut held: Vec<std::collections::HashMap<String, String>> = Vec::new();
        for peer in peers.iter_mut() {
            let keys = peer.ask_json("keys").await;
            held.push(
                keys["keys"]
                    .as_array()
                    .map(|ks| {
                        ks.iter()
                            .map(|k| {
                                (
                                    k["key"].as_str().unwrap_or("").to_owned(),
                                    k["version"].as_str().unwrap_or("").to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
        let converged = (0..KEYS).all(|k| {
            let key = format!("split-{k}");
            let replicas = peerkv::placement::plan(&key, all.iter().copied(), 5, None).replicas;
            let versions: Vec<Option<&String>> = replicas
                .iter()
                .map(|p| all.iter().position(|a| a == p).and_then(|i| held[i].get(&key)))
                .collect();
            versions.iter().all(|v| v.is_some() && *v == versions[0])
        });
        if converged {
            break;
        }
        assert!(Instant::now() < deadline, "replicas still disagree {SETTLE:?} after the heal");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("after the heal every replica agrees in {:.1} s", healed_at.elapsed().as_secs_f64());
    // Reads count the peers a host still suspects as failed replicas until it has talked with
    // them again (a get right after the heal can fail its quorum by design): read once every
    // host is back in touch with every other.
    let took = all_know_all(&mut peers, &ids, healed_at).await;
    let took =
        took.unwrap_or_else(|| panic!("after the heal a host is not back within {SETTLE:?}"));
    println!("after the heal every routing table is whole again in {:.1} s", took.as_secs_f64());
    // Every host reads the same value: the acknowledged write, or side B's when side B wrote
    // later and failed on side A's behalf only partly (a failed put is not undone: the replicas
    // that took it keep it, and its version is the greater one).
    for (k, acked) in acked.iter().enumerate() {
        let mut seen = HashSet::new();
        for (i, peer) in peers.iter_mut().enumerate() {
            let got = peer.ask_json(&format!("get split-{k}")).await;
            let value = got["value"].as_str().unwrap_or("").to_owned();
            assert!(
                Some(value.as_str()) == *acked || value == "from-side-b",
                "host {}, split-{k}: acknowledged {acked:?}, read {got}",
                i + 1
            );
            seen.insert(value);
        }
        assert_eq!(seen.len(), 1, "split-{k}: hosts read different values: {seen:?}");
    }
}
