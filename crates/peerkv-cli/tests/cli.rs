//! The `peerkv` binary as a user drives it: three processes on 127.0.0.1 (`--no-mdns`), the
//! second and third bootstrapped from the first, commands through stdin, results on stdout, in
//! both output modes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::process::{Peer, LINE_WAIT};
use serde_json::Value;

/// Starts a peer on 127.0.0.1 with mDNS off and `extra` flags.
fn start(extra: &[&str]) -> Peer {
    let mut args: Vec<String> = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--ephemeral"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Peer::spawn(env!("CARGO_BIN_EXE_peerkv"), &args)
}

/// The human-mode banner: the peer id line, then the first `listening on` line.
async fn human_banner(peer: &mut Peer) -> (String, String) {
    let first = peer.line().await;
    let peer_id =
        first.strip_prefix("peer id: ").unwrap_or_else(|| panic!("banner: {first:?}")).to_owned();
    let line = peer.line().await;
    let addr =
        line.strip_prefix("listening on ").unwrap_or_else(|| panic!("banner: {line:?}")).to_owned();
    (peer_id, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_put_on_one_get_on_another() {
    // A: JSON mode. Its first line says who it is and where it listens.
    let mut a = start(&["--json"]);
    let started = a.json().await;
    assert_eq!(started["ok"], true);
    assert_eq!(started["event"], "started");
    let peer_a = started["peer_id"].as_str().expect("peer_id").to_owned();
    let addr_a = started["listen_addrs"][0].as_str().expect("listen addr").to_owned();
    assert!(
        addr_a.starts_with("/ip4/127.0.0.1/tcp/") && addr_a.ends_with(&format!("/p2p/{peer_a}")),
        "{addr_a}"
    );

    // B: JSON mode; C: human mode. Both bootstrap from A.
    let mut b = start(&["--json", "--bootstrap", &addr_a]);
    assert_eq!(b.json().await["event"], "started");
    let mut c = start(&["--bootstrap", &addr_a]);
    let (peer_c, addr_c) = human_banner(&mut c).await;
    assert!(addr_c.ends_with(&format!("/p2p/{peer_c}")), "{addr_c}");

    // put through B, get from C (human) and from A (JSON).
    let put = b.ask_json("put greeting hello, peer world").await;
    assert_eq!(put["ok"], true, "{put}");
    assert_eq!(put["op"], "put");
    assert!(put["acked"].as_u64().expect("acked") >= 2, "{put}");
    assert_eq!(put["replicas"], 3, "{put}");
    assert!(put["elapsed_ms"].as_f64().is_some(), "{put}");

    assert_eq!(c.ask("get greeting").await, "hello, peer world");
    let got = a.ask_json("get greeting").await;
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["value"], "hello, peer world");
    assert!(got["version"].is_string() && got["writer"].is_string(), "{got}");

    // put through C in human mode, read back in JSON from B; quoted values keep their spaces.
    let line = c.ask(r#"put "two words" "  padded  ""#).await;
    assert!(line.starts_with("ok: stored on ") && line.contains(" of 3 replicas in "), "{line}");
    assert_eq!(b.ask_json(r#"get "two words""#).await["value"], "  padded  ");

    // Delete, then every peer reads "not found".
    let del = a.ask_json("del greeting").await;
    assert_eq!(
        (del["ok"].clone(), del["op"].clone()),
        (Value::Bool(true), Value::from("del")),
        "{del}"
    );
    assert!(c.ask("get greeting").await.starts_with("not found: greeting"));
    let gone = b.ask_json("get greeting").await;
    assert_eq!(
        (gone["ok"].clone(), gone["found"].clone()),
        (Value::Bool(false), Value::Bool(false)),
        "{gone}"
    );

    // info and peers in JSON carry the fields scripts rely on.
    let info = b.ask_json("info").await;
    assert_eq!(info["ok"], true);
    assert!(info["peer_id"].is_string() && info["listen_addrs"].is_array(), "{info}");
    let peers = b.ask_json("peers").await;
    let list = peers["peers"].as_array().expect("peers list");
    assert!(
        list.iter().any(|p| p["peer_id"] == peer_a.as_str() && p["addrs"].is_array()),
        "{peers}"
    );
    assert!(list.iter().any(|p| p["peer_id"] == peer_c.as_str()), "{peers}");

    // Bad input: one JSON object with ok=false and an error, and the peer carries on.
    for bad in ["frobnicate", "put onlykey", "get", "bootstrap /ip4/127.0.0.1/tcp/1"] {
        let answer = a.ask_json(bad).await;
        assert_eq!(answer["ok"], false, "{bad}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {answer}");
    }
    assert!(c.ask("frobnicate").await.starts_with("error: unknown command"));
    let big = format!("put big {}", "x".repeat(1024 * 1024 + 1));
    let refused = a.ask_json(&big).await;
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("value too large")), "{refused}");

    // Every command in JSON mode is one object on one line.
    for cmd in ["routes", "closest greeting", "keys", "help"] {
        assert_eq!(a.ask_json(cmd).await["ok"], true, "{cmd}");
    }

    // quit, end of input, and SIGTERM all end the process cleanly.
    assert_eq!(a.ask_json("quit").await["ok"], true);
    a.exits_cleanly().await;
    b.close_stdin();
    b.exits_cleanly().await;
    let pid = c.child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(status.success());
    let status =
        tokio::time::timeout(LINE_WAIT, c.child.wait()).await.expect("exit in time").expect("wait");
    assert!(status.success(), "SIGTERM: exit status {status}");
}
