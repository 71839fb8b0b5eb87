//! Rendering results for people (results on stdout, a few aligned lines at most per command;
//! errors on stderr) or for programs (exactly one JSON object per command on stdout, `"ok"` and
//! `"op"` first, the rest from the reports' serde derives). Pure functions: the time is passed in.

use std::io::{self, Write};
use std::time::Duration;

use peerkv::command::{
    BootstrapReport, ClosestReport, GetReport, KeyEntry, NodeInfo, PeerSummary, PutReport,
    RouteEntry, Stats,
};
use peerkv::{Multiaddr, PeerId};
use serde::Serialize;

use crate::commands::{self, Op};

/// The successful result of one REPL command.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `put`.
    Put(PutReport),
    /// `del`.
    Del(PutReport),
    /// `get`.
    Get(GetReport),
    /// `get --raw`.
    GetRaw(GetReport),
    /// `peers`.
    Peers(Vec<PeerSummary>),
    /// `routes`.
    Routes(Vec<RouteEntry>),
    /// `closest`.
    Closest(ClosestReport),
    /// `bootstrap`.
    Bootstrap(BootstrapReport),
    /// `dial`.
    Dial(PeerId),
    /// `info`.
    Info(NodeInfo),
    /// `keys`.
    Keys(Vec<KeyEntry>),
    /// `stats`.
    Stats(Stats),
    /// `help`, `help COMMAND`.
    Help(Option<Op>),
    /// `quit`.
    Quit,
    /// The line printed once at start.
    Started {
        /// Local peer id.
        peer_id: PeerId,
        /// Dialable listen addresses.
        listen_addrs: Vec<Multiaddr>,
    },
}

/// Where a rendered result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    /// Lines for stdout; a newline follows.
    Out(String),
    /// Lines for stderr (errors in human mode); a newline follows.
    Err(String),
    /// Bytes for stdout as they are (`get --raw`).
    Raw(Vec<u8>),
}

/// What one command prints, and whether it failed (for the exit code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    /// The command failed: an error, or a get that found nothing.
    pub failed: bool,
    /// The output.
    pub text: Text,
}

impl Printed {
    /// Writes the output to stdout or stderr and flushes it.
    ///
    /// # Errors
    /// When the stream is closed (a reader of a pipe went away).
    pub fn write(&self) -> io::Result<()> {
        match &self.text {
            Text::Out(s) => {
                let mut out = io::stdout().lock();
                writeln!(out, "{s}")?;
                out.flush()
            }
            Text::Err(s) => writeln!(io::stderr().lock(), "{s}"),
            Text::Raw(bytes) => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
        }
    }
}

/// A value as text: itself when UTF-8, else escaped (`\xff`), and whether it was escaped.
pub fn display_value(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (bytes.escape_ascii().to_string(), true),
    }
}

/// Text safe to print on a terminal: control characters (escape sequences, newlines) written
/// out as `\u{1b}`, `\n`, … so a value someone else wrote cannot drive the user's terminal.
pub fn for_terminal(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `1 record`, `2 records`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How long until `expires_at` (ms since the epoch) from `now_ms`, to the second, in its two
/// largest units: `4m 59s`, `6days 23h`.
fn time_left(expires_at: u64, now_ms: u64) -> String {
    let left = Duration::from_secs(expires_at.saturating_sub(now_ms) / 1000);
    let text = humantime::format_duration(left).to_string();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// Renders the result of command `op` (its name, or the word typed when it is no command);
/// `now_ms` (ms since the epoch) is the time expiries are counted from.
pub fn render(op: &str, result: &Result<Outcome, String>, json: bool, now_ms: u64) -> Printed {
    if json {
        render_json(op, result)
    } else {
        render_human(result, now_ms)
    }
}

fn failure(text: String) -> Printed {
    Printed { failed: true, text: Text::Err(text) }
}

fn success(text: String) -> Printed {
    Printed { failed: false, text: Text::Out(text) }
}

/// `not found: KEY`, and the version that deleted it.
fn not_found(r: &GetReport) -> String {
    match &r.record {
        Some(tomb) => {
            format!("not found: {} (deleted at version {})", for_terminal(&r.key), tomb.version)
        }
        None => format!("not found: {}", for_terminal(&r.key)),
    }
}

fn render_human(result: &Result<Outcome, String>, now_ms: u64) -> Printed {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return failure(format!("error: {e}")),
    };
    let text = match outcome {
        Outcome::Put(r) => put_line("stored", r),
        Outcome::Del(r) if r.existed => put_line("deleted", r),
        Outcome::Del(r) => format!(
            "ok: nothing to delete: {} was not found (tombstone stored on {} of {} replicas in {:.1} ms)",
            for_terminal(&r.key),
            r.acked,
            r.replicas,
            ms(r.elapsed)
        ),
        Outcome::Get(r) => match (&r.record, r.value()) {
            (Some(record), Some(v)) => {
                let writer = record.writer_id().map_or_else(|_| "?".into(), |w| peerkv::short_id(&w));
                let expiry = record
                    .expires_at
                    .map_or(String::new(), |e| format!(", expires in {}", time_left(e, now_ms)));
                format!(
                    "{}\nversion {} by {writer}{expiry}; {} of {} replicas replied in {:.1} ms",
                    for_terminal(&display_value(v).0),
                    record.version,
                    r.replies,
                    r.replicas,
                    ms(r.elapsed)
                )
            }
            _ => return failure(not_found(r)),
        },
        Outcome::GetRaw(r) => match r.value() {
            Some(v) => return Printed { failed: false, text: Text::Raw(v.to_vec()) },
            None => return failure(not_found(r)),
        },
        Outcome::Peers(peers) if peers.is_empty() => "no peers yet".into(),
        Outcome::Peers(peers) => lines(peers.iter().map(|p| {
            let state = if p.connected { "connected" } else { "known" };
            let kv = if p.kv == Some(false) { " (routing only)" } else { "" };
            format!("{} {state}{kv} {}", p.peer_id, join(&p.addrs))
        })),
        Outcome::Routes(routes) if routes.is_empty() => "routing table empty".into(),
        Outcome::Routes(routes) => lines(
            routes
                .iter()
                .map(|r| format!("bucket {:3}  {}  {}", r.bucket, r.peer_id, join(&r.addrs))),
        ),
        Outcome::Closest(c) => {
            let peers = c.peers.iter().map(|p| {
                let d = p.distance_log2.map_or("-".into(), |d| d.to_string());
                let mut tags = Vec::new();
                if p.local {
                    tags.push("self");
                }
                if p.replica {
                    tags.push("replica");
                }
                format!("{}  distance 2^{d}  {}", p.peer_id, tags.join(",")).trim_end().to_owned()
            });
            let total = format!(
                "lookup: {} in {:.1} ms",
                count(c.peers.len() as u64, "peer", "peers"),
                ms(c.elapsed)
            );
            lines(peers.chain(std::iter::once(total)))
        }
        Outcome::Bootstrap(b) => format!(
            "ok: bootstrapped from {}; {} in the routing table",
            b.peer_id,
            count(b.routing_table as u64, "peer", "peers")
        ),
        Outcome::Dial(peer) => format!("ok: connected to {peer}"),
        Outcome::Info(i) => {
            let mut out = vec![format!("peer id: {}", i.peer_id)];
            out.extend(i.listen_addrs.iter().map(|a| format!("listening on {a}")));
            out.push(format!(
                "{} connected, {} in the routing table, {} speak the value protocol, {} in the one-hop view; {} ({}); replication {}",
                i.connected_peers,
                i.routing_table,
                i.kv_peers,
                i.members,
                count(i.records as u64, "record", "records"),
                count(i.bytes as u64, "byte", "bytes"),
                i.replication
            ));
            out.push(match &i.psk_fingerprint {
                Some(fp) => format!("private swarm (--psk, key fingerprint {fp}): TCP only"),
                None => "open swarm (no --psk)".to_owned(),
            });
            out.join("\n")
        }
        Outcome::Keys(keys) => keys_lines(keys, now_ms),
        Outcome::Stats(st) => stats_block(st),
        Outcome::Help(None) => commands::help_list(),
        Outcome::Help(Some(op)) => op.spec().long_help(),
        Outcome::Quit => "bye".into(),
        Outcome::Started { peer_id, listen_addrs } => {
            let mut out = vec![format!("peer id: {peer_id}")];
            out.extend(listen_addrs.iter().map(|a| format!("listening on {a}")));
            out.join("\n")
        }
    };
    success(text)
}

fn put_line(what: &str, r: &PutReport) -> String {
    let lost = r.superseded_by.map_or(String::new(), |v| {
        format!("; a newer write (version {v}) was already there and wins")
    });
    format!("ok: {what} on {} of {} replicas in {:.1} ms{lost}", r.acked, r.replicas, ms(r.elapsed))
}

fn lines(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join("\n")
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// `keys`: one line per record that has not expired at `now_ms`.
fn keys_lines(keys: &[KeyEntry], now_ms: u64) -> String {
    let live: Vec<String> = keys
        .iter()
        .filter(|k| !matches!(k.expires_at, Some(e) if e <= now_ms))
        .map(|k| {
            let state = if k.deleted {
                "deleted".to_owned()
            } else {
                count(k.size as u64, "byte", "bytes")
            };
            let role = if k.replica { "replica" } else { "extra copy" };
            let expiry = k
                .expires_at
                .map_or(String::new(), |e| format!("  expires in {}", time_left(e, now_ms)));
            format!("{}  version {}  {state}  {role}{expiry}", for_terminal(&k.key), k.version)
        })
        .collect();
    if live.is_empty() {
        "no records held here".into()
    } else {
        live.join("\n")
    }
}

/// `stats`: one aligned line per subject.
fn stats_block(st: &Stats) -> String {
    let upkeep = if st.upkeep_rounds == 0 {
        "no rounds yet".to_owned()
    } else {
        format!(
            "{}, the last took {:.1} ms",
            count(st.upkeep_rounds, "round", "rounds"),
            st.last_round_ms
        )
    };
    let rows = [
        (
            "held",
            format!(
                "{} ({}), {}",
                count(st.records as u64, "record", "records"),
                count(st.tombstones as u64, "tombstone", "tombstones"),
                count(st.bytes as u64, "byte", "bytes")
            ),
        ),
        ("upkeep", upkeep),
        (
            "sent",
            format!(
                "{} and {} ({}, {})",
                count(st.summaries_sent, "summary", "summaries"),
                count(st.digests_sent, "digest", "digests"),
                count(st.digest_entries_sent, "entry", "entries"),
                count(st.digest_bytes_sent, "byte", "bytes")
            ),
        ),
        ("received", count(st.digests_received, "summary or digest", "summaries and digests")),
        (
            "handed on",
            format!(
                "{} ({})",
                count(st.records_pushed, "record", "records"),
                count(st.push_bytes_sent, "byte", "bytes")
            ),
        ),
        (
            "removed",
            format!(
                "{} (expired, or tombstones past --tombstone-ttl)",
                count(st.records_removed, "record", "records")
            ),
        ),
        (
            "sent again",
            format!(
                "{} (their connection closed before the answer)",
                count(st.requests_resent, "request", "requests")
            ),
        ),
    ];
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    lines(rows.iter().map(|(label, value)| format!("{label:width$}  {value}")))
}

/// One JSON line: `ok` and `op`, then `body`'s fields.
#[derive(Serialize)]
struct Envelope<'a, B> {
    ok: bool,
    op: &'a str,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// A get's report, then what it found.
#[derive(Serialize)]
struct GetBody<'a> {
    #[serde(flatten)]
    report: &'a GetReport,
    found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    writer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'a> GetBody<'a> {
    fn new(r: &'a GetReport) -> Self {
        let mut body = GetBody {
            report: r,
            found: false,
            value: None,
            binary: None,
            deleted: None,
            version: None,
            writer: None,
            expires_at: None,
            error: None,
        };
        match (&r.record, r.value()) {
            (Some(record), Some(v)) => {
                let (text, escaped) = display_value(v);
                body.found = true;
                body.value = Some(text);
                body.binary = Some(escaped);
                body.version = Some(record.version.to_string());
                body.writer = Some(record.writer_id().map(|p| p.to_string()).unwrap_or_default());
                body.expires_at = record.expires_at;
            }
            (tomb, _) => {
                if let Some(t) = tomb {
                    body.deleted = Some(true);
                    body.version = Some(t.version.to_string());
                }
                body.error = Some(format!("not found: {}", r.key));
            }
        }
        body
    }
}

#[derive(Serialize)]
struct HelpTopic {
    command: &'static str,
    aliases: &'static [&'static str],
    usage: Vec<String>,
    summary: &'static str,
    help: &'static str,
}

#[derive(Serialize)]
struct StartedBody<'a> {
    event: &'static str,
    peer_id: &'a PeerId,
    listen_addrs: &'a [Multiaddr],
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct PeersBody<'a> {
    peers: &'a [PeerSummary],
}

#[derive(Serialize)]
struct RoutesBody<'a> {
    routes: &'a [RouteEntry],
}

#[derive(Serialize)]
struct KeysBody<'a> {
    keys: &'a [KeyEntry],
}

#[derive(Serialize)]
struct CommandsBody {
    commands: Vec<&'static str>,
}

#[derive(Serialize)]
struct Dialed<'a> {
    peer_id: &'a PeerId,
}

fn line<B: Serialize>(ok: bool, op: &str, body: B) -> Printed {
    let text = serde_json::to_string(&Envelope { ok, op, body }).unwrap_or_else(|e| {
        // Only a serializer bug gets here; still one object with ok=false.
        let error = format!("cannot write the answer as JSON: {e}");
        serde_json::json!({ "ok": false, "op": op, "error": error }).to_string()
    });
    Printed { failed: !ok, text: Text::Out(text) }
}

fn render_json(op: &str, result: &Result<Outcome, String>) -> Printed {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return line(false, op, ErrorBody { error: e }),
    };
    match outcome {
        Outcome::Put(r) | Outcome::Del(r) => line(true, op, r),
        Outcome::Get(r) | Outcome::GetRaw(r) => line(r.value().is_some(), op, GetBody::new(r)),
        Outcome::Peers(peers) => line(true, op, PeersBody { peers }),
        Outcome::Routes(routes) => line(true, op, RoutesBody { routes }),
        Outcome::Closest(c) => line(true, op, c),
        Outcome::Bootstrap(b) => line(true, op, b),
        Outcome::Dial(peer) => line(true, op, Dialed { peer_id: peer }),
        Outcome::Info(i) => line(true, op, i),
        Outcome::Keys(keys) => line(true, op, KeysBody { keys }),
        Outcome::Stats(st) => line(true, op, st),
        Outcome::Help(None) => {
            let commands = commands::COMMANDS.iter().map(|s| s.name).collect();
            line(true, op, CommandsBody { commands })
        }
        Outcome::Help(Some(topic)) => {
            let spec = topic.spec();
            let usage = spec.forms.iter().map(|f| format!("{} {f}", spec.name)).collect();
            let body = HelpTopic {
                command: spec.name,
                aliases: spec.aliases,
                usage,
                summary: spec.summary,
                help: spec.details,
            };
            line(true, op, body)
        }
        Outcome::Quit => line(true, op, Empty {}),
        Outcome::Started { peer_id, listen_addrs } => {
            line(true, op, StartedBody { event: "started", peer_id, listen_addrs })
        }
    }
}

#[cfg(test)]
mod tests {
    use peerkv::{Hlc, Record};
    use serde_json::{json, Value};

    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn put_report(existed: bool) -> PutReport {
        PutReport {
            key: "k".into(),
            version: Hlc::new(1, 2),
            acked: 2,
            replicas: 3,
            needed: 2,
            stored_on: vec![PeerId::random()],
            superseded_by: None,
            existed,
            elapsed: Duration::from_micros(4200),
        }
    }

    fn get_report(value: Option<&[u8]>, record: bool) -> GetReport {
        GetReport {
            key: "k".into(),
            record: record.then(|| Record {
                key: "k".into(),
                value: value.map(<[u8]>::to_vec),
                version: Hlc::new(7, 0),
                writer: Vec::new(),
                expires_at: Some(NOW + 299_500),
                signature: Vec::new(),
            }),
            replies: 2,
            replicas: 3,
            needed: 2,
            asked: 3,
            hops: 1,
            elapsed: Duration::from_micros(1400),
        }
    }

    fn out(p: Printed) -> String {
        assert!(!p.failed, "{p:?}");
        match p.text {
            Text::Out(s) => s,
            other => panic!("not stdout: {other:?}"),
        }
    }

    fn human(outcome: Outcome) -> Printed {
        render("x", &Ok(outcome), false, NOW)
    }

    #[test]
    fn non_utf8_values_are_escaped_not_a_crash() {
        assert_eq!(display_value(b"plain"), ("plain".into(), false));
        assert_eq!(display_value(&[0x66, 0xff, 0x00]), ("f\\xff\\x00".into(), true));
    }

    #[test]
    fn control_characters_never_reach_the_terminal_raw() {
        assert_eq!(for_terminal("plain text"), "plain text");
        assert_eq!(for_terminal("a\u{1b}[31mred\nb"), "a\\u{1b}[31mred\\nb");
    }

    #[test]
    fn errors_go_to_stderr_or_one_json_object_with_ok_false() {
        let p = render("put", &Err("value too large".into()), true, NOW);
        assert!(p.failed);
        assert_eq!(
            p.text,
            Text::Out(r#"{"ok":false,"op":"put","error":"value too large"}"#.into())
        );
        let p = render("put", &Err("boom".into()), false, NOW);
        assert_eq!(p, Printed { failed: true, text: Text::Err("error: boom".into()) });
    }

    #[test]
    fn put_report_renders_both_ways() {
        let r = put_report(true);
        assert_eq!(out(human(Outcome::Put(r.clone()))), "ok: stored on 2 of 3 replicas in 4.2 ms");
        let line = out(render("put", &Ok(Outcome::Put(r.clone())), true, NOW));
        assert!(
            line.starts_with(r#"{"ok":true,"op":"put","key":"k","version":"1.2","acked":2,"#),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((v["replicas"].clone(), v["elapsed_ms"].clone()), (json!(3), json!(4.2)));
        assert_eq!((v["superseded_by"].clone(), v["existed"].clone()), (Value::Null, json!(true)));
        assert_eq!(v["stored_on"][0], json!(r.stored_on[0].to_string()));
    }

    #[test]
    fn a_delete_of_nothing_says_so() {
        assert_eq!(
            out(human(Outcome::Del(put_report(true)))),
            "ok: deleted on 2 of 3 replicas in 4.2 ms"
        );
        assert_eq!(
            out(human(Outcome::Del(put_report(false)))),
            "ok: nothing to delete: k was not found (tombstone stored on 2 of 3 replicas in 4.2 ms)"
        );
    }

    #[test]
    fn get_prints_the_value_then_how_it_was_read() {
        let text = out(human(Outcome::Get(get_report(Some(b"v\n1"), true))));
        assert_eq!(
            text,
            "v\\n1\nversion 7.0 by ?, expires in 4m 59s; 2 of 3 replicas replied in 1.4 ms"
        );
        let missing = human(Outcome::Get(get_report(None, false)));
        assert_eq!(missing, Printed { failed: true, text: Text::Err("not found: k".into()) });
        let deleted = human(Outcome::Get(get_report(None, true)));
        assert_eq!(deleted.text, Text::Err("not found: k (deleted at version 7.0)".into()));
    }

    #[test]
    fn get_raw_is_the_bytes_alone() {
        let bytes = [0u8, 0xff, b'\n'];
        let p = human(Outcome::GetRaw(get_report(Some(&bytes), true)));
        assert_eq!(p, Printed { failed: false, text: Text::Raw(bytes.to_vec()) });
        assert!(human(Outcome::GetRaw(get_report(None, false))).failed);
    }

    #[test]
    fn get_json_keeps_the_field_names_and_fails_when_nothing_is_found() {
        let line =
            out(render("get", &Ok(Outcome::Get(get_report(Some(b"\xff"), true))), true, NOW));
        assert!(line.starts_with(r#"{"ok":true,"op":"get","key":"k","replies":2,"#), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((v["value"].clone(), v["binary"].clone()), (json!("\\xff"), json!(true)));
        for field in ["replicas", "needed", "asked", "hops", "elapsed_ms", "version", "writer"] {
            assert!(!v[field].is_null(), "{field}: {line}");
        }
        assert!(v.get("record").is_none(), "{line}");
        let p = render("get", &Ok(Outcome::Get(get_report(None, true))), true, NOW);
        assert!(p.failed);
        let Text::Out(line) = p.text else { panic!("stdout") };
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["ok"].clone(), v["found"].clone(), v["deleted"].clone(), v["error"].clone()),
            (json!(false), json!(false), json!(true), json!("not found: k"))
        );
    }

    #[test]
    fn keys_show_time_left_and_skip_the_expired() {
        let entry = |key: &str, expires_at| KeyEntry {
            key: key.into(),
            version: Hlc::new(5, 1),
            writer: None,
            size: 1,
            deleted: false,
            replica: true,
            expires_at,
        };
        let keys = [entry("a", Some(NOW + 299_999)), entry("b", Some(NOW)), entry("c", None)];
        assert_eq!(
            out(human(Outcome::Keys(keys.to_vec()))),
            "a  version 5.1  1 byte  replica  expires in 4m 59s\nc  version 5.1  1 byte  replica"
        );
        assert_eq!(time_left(NOW + 7 * 86_400_000 - 1000, NOW), "6days 23h");
        let line = out(render("keys", &Ok(Outcome::Keys(keys[..1].to_vec())), true, NOW));
        assert!(line.contains(r#""version":"5.1""#), "{line}");
    }

    #[test]
    fn stats_are_an_aligned_block_with_plurals() {
        let st =
            Stats { records: 1, tombstones: 1, bytes: 2, upkeep_rounds: 3, ..Stats::default() };
        let text = out(human(Outcome::Stats(st)));
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], "held        1 record (1 tombstone), 2 bytes");
        assert_eq!(rows[1], "upkeep      3 rounds, the last took 0.0 ms");
        assert!(rows.len() == 7 && rows.iter().all(|r| r.len() < 80), "{text}");
        assert!(rows.iter().all(|r| r.as_bytes()[12] != b' '), "aligned:\n{text}");
    }

    #[test]
    fn closest_ends_with_its_time() {
        let c = ClosestReport {
            key: "k".into(),
            peers: vec![peerkv::command::ClosestPeer {
                peer_id: PeerId::random(),
                distance_log2: Some(250),
                local: true,
                replica: true,
            }],
            elapsed: Duration::from_micros(2100),
        };
        let text = out(human(Outcome::Closest(c)));
        assert!(text.ends_with("distance 2^250  self,replica\nlookup: 1 peer in 2.1 ms"), "{text}");
    }

    #[test]
    fn help_comes_from_the_table() {
        assert!(out(human(Outcome::Help(None))).contains("put KEY VALUE [--ttl D]"));
        assert!(out(human(Outcome::Help(Some(Op::Put)))).contains("put KEY --file PATH"));
        let line = out(render("help", &Ok(Outcome::Help(None)), true, NOW));
        assert!(line.starts_with(r#"{"ok":true,"op":"help","commands":["put","get","#), "{line}");
    }

    #[test]
    fn every_json_line_starts_with_ok_and_op() {
        let peer_id = PeerId::random();
        let started = Outcome::Started { peer_id, listen_addrs: Vec::new() };
        let line = out(render("start", &Ok(started), true, NOW));
        let head = format!(r#"{{"ok":true,"op":"start","event":"started","peer_id":"{peer_id}","#);
        assert!(line.starts_with(&head), "{line}");
        let line = out(render("stats", &Ok(Outcome::Stats(Stats::default())), true, NOW));
        assert!(line.starts_with(r#"{"ok":true,"op":"stats","records":0,"#), "{line}");
        let line = out(render("quit", &Ok(Outcome::Quit), true, NOW));
        assert_eq!(line, r#"{"ok":true,"op":"quit"}"#);
    }
}
