//! The `peerkv` binary as a user drives it: processes on 127.0.0.1 (`--no-mdns`), bootstrapped
//! from a first one, commands through stdin, results on stdout, errors on stderr, in both output
//! modes; exit codes; start-up failures; binary values; a headless peer.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::process::Stdio;

use common::process::{run_once, Finished, Peer};
use serde_json::Value;

const PEERKV: &str = env!("CARGO_BIN_EXE_peerkv");

/// The flags every test peer gets: 127.0.0.1, mDNS off, nothing on disk, and `extra`.
fn args(extra: &[&str]) -> Vec<String> {
    ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--ephemeral"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// Starts a peer on 127.0.0.1 with mDNS off and `extra` flags.
fn start(extra: &[&str]) -> Peer {
    Peer::spawn(PEERKV, &args(extra))
}

/// Runs a peer with `extra` flags and `input` on stdin, to its end.
async fn once(extra: &[&str], input: &[u8]) -> Finished {
    run_once(PEERKV, &args(extra), input).await
}

/// Starts a JSON-mode peer; returns it with its peer id and first listen address.
async fn start_json(extra: &[&str]) -> (Peer, String, String) {
    let mut flags = vec!["--json"];
    flags.extend_from_slice(extra);
    let mut peer = start(&flags);
    let started = peer.json().await;
    assert_eq!(started["event"], "started", "{started}");
    let id = started["peer_id"].as_str().expect("peer_id").to_owned();
    let addr = started["listen_addrs"][0].as_str().expect("listen addr").to_owned();
    (peer, id, addr)
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

/// What a human-mode run printed after its banner (`peer id: …`, `listening on …` lines).
fn after_banner(stdout: &[u8]) -> &[u8] {
    let mut rest = stdout;
    while rest.starts_with(b"peer id: ") || rest.starts_with(b"listening on ") {
        let end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
        rest = &rest[end..];
    }
    rest
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

    let got = c.ask_lines("get greeting", 2).await;
    assert_eq!(got[0], "hello, peer world");
    assert!(got[1].starts_with("version ") && got[1].contains(" replicas replied in "), "{got:?}");
    let got = a.ask_json("get greeting").await;
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["value"], "hello, peer world");
    assert!(got["version"].is_string() && got["writer"].is_string(), "{got}");

    // put through C in human mode, read back in JSON from B; quoted values keep their spaces.
    let line = c.ask(r#"put "two words" "  padded  ""#).await;
    assert!(line.starts_with("ok: stored on ") && line.contains(" of 3 replicas in "), "{line}");
    assert_eq!(b.ask_json(r#"get "two words""#).await["value"], "  padded  ");

    // Delete, then every peer reads "not found" (on stderr in human mode: a get that finds
    // nothing failed).
    let del = a.ask_json("del greeting").await;
    assert_eq!(
        (del["ok"].clone(), del["op"].clone()),
        (Value::Bool(true), Value::from("del")),
        "{del}"
    );
    assert!(c.ask_err("get greeting").await.starts_with("not found: greeting"));
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
    assert!(c.ask_err("frobnicate").await.starts_with("error: unknown command"));
    let big = format!("put big {}", "x".repeat(1024 * 1024 + 1));
    let refused = a.ask_json(&big).await;
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("value too large")), "{refused}");

    // Every command in JSON mode is one object on one line, `ok` and `op` first.
    for cmd in ["routes", "closest greeting", "keys", "stats", "info", "peers", "help", "help put"]
    {
        a.send(cmd).await;
        let line = a.line().await;
        assert!(line.starts_with(r#"{"ok":true,"op":""#), "{cmd}: {line}");
        let _: Value = serde_json::from_str(&line).expect("one JSON object");
    }

    // quit, end of input, and SIGTERM all end the process; each of the three had a command
    // that failed, so each exits 1.
    assert_eq!(a.ask_json("quit").await["ok"], true);
    assert_eq!(a.exit_code().await, 1);
    b.close_stdin();
    assert_eq!(b.exit_code().await, 1);
    c.terminate();
    assert_eq!(c.exit_code().await, 1, "SIGTERM after a failed command");
}

/// Errors go to stderr in human mode and stdout keeps the results; the exit code says whether
/// every command succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_on_stderr_and_the_exit_code_counts_them() {
    let run = once(&[], b"info\nfrobnicate\nhelp get\n").await;
    assert_eq!(run.code, Some(1), "a failed command: exit 1");
    let out = run.out();
    assert!(out.contains("peer id: ") && out.contains("get KEY [--raw]"), "{out}");
    assert!(!out.contains("error"), "errors stay off stdout: {out}");
    assert!(run.errors().starts_with("error: unknown command \"frobnicate\""), "{}", run.errors());

    let run = once(&[], b"info\nhelp\n").await;
    assert_eq!(run.code, Some(0), "every command ok: exit 0; stderr: {}", run.errors());
    assert_eq!(run.errors(), "");

    // A line that is not UTF-8 is refused, never stored as something else.
    let run = once(&["--json"], b"put k caf\xe9\n").await;
    assert_eq!(run.code, Some(1));
    let answer: Value = serde_json::from_str(run.out().lines().nth(1).expect("an answer")).unwrap();
    assert_eq!((answer["ok"].clone(), answer["op"].clone()), (Value::Bool(false), "put".into()));
    assert!(answer["error"].as_str().unwrap().contains("not UTF-8"), "{answer}");
}

/// A peer that cannot start exits 2; with --json it says why in exactly one JSON object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failures_exit_2() {
    // Our own validation sees negative numbers (clap used to refuse them as unknown flags).
    let run = once(&["--timeout", "-1"], b"").await;
    assert_eq!(run.code, Some(2));
    assert_eq!(run.out(), "");
    assert!(
        run.errors().contains("--timeout -1: must be a positive number of seconds"),
        "{}",
        run.errors()
    );
    let run = once(&["--json", "--timeout", "-1"], b"").await;
    assert_eq!(run.code, Some(2));
    let out = run.out();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(r#"{"ok":false,"op":"start","error":"#), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["error"].as_str().unwrap().contains("--timeout -1"), "{v}");

    // A key file that is not a swarm key: the file is named, nothing panics.
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("swarm.key");
    std::fs::write(&key, "/key/swarm/psk/1.0.0/\n/base16/\nnot hex\n").unwrap();
    let key = key.display().to_string();
    let run = once(&["--psk", &key], b"").await;
    assert_eq!(run.code, Some(2), "{}", run.errors());
    let says = format!("--psk {key}: the key must be 64 hex digits (32 bytes), found 7 characters");
    assert!(
        run.errors().starts_with("error: ") && run.errors().contains(&says),
        "{}",
        run.errors()
    );
    // `info` says whether the swarm is private.
    std::fs::write(&key, format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "ab".repeat(32)))
        .unwrap();
    let run = once(&["--psk", &key], b"info\n").await;
    assert_eq!(run.code, Some(0), "{}", run.errors());
    assert!(run.out().contains("private swarm (--psk, key fingerprint "), "{}", run.out());
    let run = once(&[], b"info\n").await;
    assert!(run.out().contains("open swarm (no --psk)"), "{}", run.out());

    // A port in use, and a data directory in use.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let mut first = Peer::spawn(
        PEERKV,
        &["--no-mdns", "--json", "--data-dir", &data_dir, "--listen", "/ip4/127.0.0.1/tcp/0"]
            .map(String::from),
    );
    let started = first.json().await;
    let addr = started["listen_addrs"][0].as_str().expect("listen addr").to_owned();
    let port = addr.split('/').nth(4).unwrap();
    let taken = format!("/ip4/127.0.0.1/tcp/{port}");
    let run = run_once(
        PEERKV,
        &["--no-mdns", "--ephemeral", "--json", "--listen", &taken].map(String::from),
        b"",
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.out());
    let v: Value = serde_json::from_str(run.out().trim_end()).expect("one JSON object");
    assert_eq!((v["ok"].clone(), v["op"].clone()), (Value::Bool(false), "start".into()), "{v}");
    let run = run_once(
        PEERKV,
        &["--no-mdns", "--data-dir", &data_dir, "--listen", "/ip4/127.0.0.1/tcp/0"]
            .map(String::from),
        b"",
    )
    .await;
    assert_eq!(run.code, Some(2));
    assert!(
        run.errors().starts_with("error: ") && run.errors().contains("in use"),
        "{}",
        run.errors()
    );
    first.close_stdin();
    first.exits_cleanly().await;
}

/// Values are stored byte for byte: flags inside quotes are part of the value, files and
/// stdin carry bytes that are not UTF-8, `get --raw` gives them back unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_keep_their_bytes() {
    let (mut a, _, addr_a) = start_json(&["--max-value-size", "64"]).await;
    let (mut b, _, _) = start_json(&["--bootstrap", &addr_a]).await;
    let mut c = start(&["--bootstrap", &addr_a]);
    human_banner(&mut c).await;

    // A piped line that is not UTF-8 is refused, never stored as something else.
    c.send_bytes(b"put latin caf\xe9\n").await;
    assert!(c.err_line().await.contains("is not UTF-8"));
    assert!(c.ask_err("get latin").await.starts_with("not found: latin"));

    // Only an unquoted --ttl at the end is a flag.
    assert_eq!(b.ask_json(r#"put quoted "v --ttl 5m""#).await["ok"], true);
    assert_eq!(a.ask_json("get quoted").await["value"], "v --ttl 5m");

    // --file: the file's bytes, whatever they are; get --raw: those bytes and nothing more.
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = vec![0, 0xff, b'\n', 0x80, b'"', b'\\', 0xfe, b'x', b'\r', b'\n', 7];
    let path = dir.path().join("blob");
    std::fs::write(&path, &bytes).unwrap();
    let put = b.ask_json(&format!("put blob --file {} --ttl 1h", path.display())).await;
    assert_eq!(put["ok"], true, "{put}");
    let got = a.ask_json("get blob").await;
    assert_eq!((got["ok"].clone(), got["binary"].clone()), (Value::Bool(true), Value::Bool(true)));
    c.send("get blob --raw").await;
    assert_eq!(c.raw(bytes.len()).await, bytes);
    let next = c.ask_lines("help quit", 4).await;
    assert_eq!(next[..2], ["quit", "  (also: exit)"], "no newline after the raw bytes");

    // --raw with --json is refused; a missing file and a file too large are clear errors.
    let refused = a.ask_json("get blob --raw").await;
    assert!(refused["error"].as_str().unwrap().contains("--raw"), "{refused}");
    let missing = b.ask_json(&format!("put k --file {}", dir.path().join("nope").display())).await;
    assert!(missing["error"].as_str().unwrap().contains("nope"), "{missing}");
    std::fs::write(&path, [b'x'; 65]).unwrap();
    let big = a.ask_json(&format!("put k --file {}", path.display())).await;
    assert!(big["error"].as_str().unwrap().contains("too large"), "{big}");

    // `put KEY -`: the rest of stdin is the value, and the session ends after it.
    let mut input = b"put piped -\n".to_vec();
    input.extend_from_slice(&bytes);
    let run = once(&["--bootstrap", &addr_a], &input).await;
    assert_eq!(run.code, Some(0), "{}", run.errors());
    assert!(after_banner(&run.stdout).starts_with(b"ok: stored on "), "{}", run.out());
    c.send("get piped --raw").await;
    assert_eq!(c.raw(bytes.len()).await, bytes);

    for peer in [&mut a, &mut b, &mut c] {
        peer.close_stdin();
    }
    assert_eq!(c.exit_code().await, 1, "c had failed commands");
    a.exit_code().await;
    b.exit_code().await;
}

/// `--headless` reads no stdin: with stdin at end of input it serves until SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_peer_serves_until_sigterm() {
    let mut a = Peer::spawn_with(PEERKV, &args(&["--json", "--headless"]), Stdio::null());
    let started = a.json().await;
    assert_eq!(started["event"], "started", "{started}");
    let addr = started["listen_addrs"][0].as_str().unwrap().to_owned();

    // Another peer joins through it and stores on it: a put needs the headless peer alive.
    let (mut b, _, _) = start_json(&["--bootstrap", &addr]).await;
    let put = b.ask_json("put through-headless yes").await;
    assert_eq!((put["ok"].clone(), put["acked"].clone()), (Value::Bool(true), 2.into()), "{put}");
    assert!(a.child.try_wait().unwrap().is_none(), "the headless peer still runs");
    assert_eq!(b.ask_json("get through-headless").await["value"], "yes");
    assert!(a.child.try_wait().unwrap().is_none(), "the headless peer still runs");

    a.terminate();
    assert_eq!(a.exit_code().await, 0, "SIGTERM: exit 0");
    b.close_stdin();
    b.exits_cleanly().await;
}

/// What a person reads: get's second line, closest's time, keys' expiry, stats' block, a delete
/// of nothing, and help for one command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_output_reads_well() {
    let (mut a, _, addr_a) = start_json(&[]).await;
    let mut c = start(&["--bootstrap", &addr_a]);
    human_banner(&mut c).await;

    let put = c.ask("put session open --ttl 5m").await;
    assert!(put.starts_with("ok: stored on 2 of 2 replicas in "), "{put}");
    let keys = c.ask("keys").await;
    assert!(
        keys.contains("expires in 4m 5") || keys.contains("expires in 5m"),
        "expiry from now: {keys}"
    );
    let del = c.ask("del nosuchkey").await;
    assert!(del.starts_with("ok: nothing to delete: nosuchkey was not found"), "{del}");

    let stats = c.ask_lines("stats", 7).await;
    let text = stats.join("\n");
    assert!(text.contains("2 records (1 tombstone)"), "{text}");
    assert!(stats.iter().all(|l| l.len() < 100), "{text}");

    let closest = c.ask_lines("closest session", 3).await;
    assert!(closest[2].ends_with(" ms"), "{closest:?}");

    let help = c.ask_lines("help put", 3).await;
    assert!(help.iter().any(|l| l.contains("--file PATH")), "{help:?}");

    // Logs on stderr carry no colour codes when stderr is not a terminal.
    let run = once(&["-v", "--bootstrap", &addr_a], b"info\n").await;
    assert!(!run.stderr.is_empty() && !run.stderr.contains(&0x1b), "{}", run.out());

    a.close_stdin();
    c.close_stdin();
    a.exit_code().await;
    assert_eq!(c.exit_code().await, 0);
}
