//! Rendering results for people (one short line, or a few for lists) or for programs (exactly
//! one JSON object per command, on one line, with `"ok": true|false`). Pure functions.

use peerkv::{Multiaddr, PeerId};
use serde_json::{json, Map, Value};

use peerkv::command::{
    BootstrapReport, ClosestReport, GetReport, KeyEntry, NodeInfo, PeerSummary, PutReport,
    RouteEntry,
};

use crate::repl::HELP;

/// The successful result of one REPL command.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `put`.
    Put(PutReport),
    /// `del`.
    Del(PutReport),
    /// `get`.
    Get(GetReport),
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
    Stats(peerkv::command::Stats),
    /// `help`.
    Help,
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

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Renders the result of command `op`.
pub fn render(op: &str, result: &Result<Outcome, String>, json: bool) -> String {
    if json {
        render_json(op, result).to_string()
    } else {
        render_human(result)
    }
}

fn render_human(result: &Result<Outcome, String>) -> String {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return format!("error: {e}"),
    };
    match outcome {
        Outcome::Put(r) | Outcome::Del(r) => {
            let what = if matches!(outcome, Outcome::Del(_)) { "deleted" } else { "stored" };
            let lost = r.superseded_by.map_or(String::new(), |v| {
                format!("; a newer write (version {v}) was already there and wins")
            });
            format!(
                "ok: {what} on {} of {} replicas in {:.1} ms{lost}",
                r.acked,
                r.replicas,
                ms(r.elapsed)
            )
        }
        Outcome::Get(r) => match (&r.record, r.value()) {
            (_, Some(v)) => for_terminal(&display_value(v).0),
            (Some(tomb), None) => {
                format!("not found: {} (deleted at version {})", for_terminal(&r.key), tomb.version)
            }
            (None, None) => format!("not found: {}", for_terminal(&r.key)),
        },
        Outcome::Peers(peers) if peers.is_empty() => "no peers yet".into(),
        Outcome::Peers(peers) => peers
            .iter()
            .map(|p| {
                let state = if p.connected { "connected" } else { "known" };
                let kv = match p.kv {
                    Some(true) => "",
                    Some(false) => " (routing only)",
                    None => "",
                };
                let addrs: Vec<String> = p.addrs.iter().map(ToString::to_string).collect();
                format!("{} {state}{kv} {}", p.peer_id, addrs.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Outcome::Routes(routes) if routes.is_empty() => "routing table empty".into(),
        Outcome::Routes(routes) => routes
            .iter()
            .map(|r| {
                let addrs: Vec<String> = r.addrs.iter().map(ToString::to_string).collect();
                format!("bucket {:3}  {}  {}", r.bucket, r.peer_id, addrs.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Outcome::Closest(c) => c
            .peers
            .iter()
            .map(|p| {
                let d = p.distance_log2.map_or("-".into(), |d| d.to_string());
                let mut tags = Vec::new();
                if p.local {
                    tags.push("self");
                }
                if p.replica {
                    tags.push("replica");
                }
                format!("{}  distance 2^{d}  {}", p.peer_id, tags.join(",")).trim_end().to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Outcome::Bootstrap(b) => format!(
            "ok: bootstrapped from {}; {} peers in the routing table",
            b.peer_id, b.routing_table
        ),
        Outcome::Dial(peer) => format!("ok: connected to {peer}"),
        Outcome::Info(i) => {
            let mut lines = vec![format!("peer id: {}", i.peer_id)];
            lines.extend(i.listen_addrs.iter().map(|a| format!("listening on {a}")));
            lines.push(format!(
                "{} connected, {} in the routing table, {} speak the value protocol; {} records ({} bytes); replication {}",
                i.connected_peers, i.routing_table, i.kv_peers, i.records, i.bytes, i.replication
            ));
            lines.join("\n")
        }
        Outcome::Keys(keys) if keys.is_empty() => "no records held here".into(),
        Outcome::Keys(keys) => keys
            .iter()
            .map(|k| {
                let state =
                    if k.deleted { "deleted".to_owned() } else { format!("{} bytes", k.size) };
                let role = if k.replica { "replica" } else { "extra copy" };
                let expiry = k.expires_at.map_or(String::new(), |e| format!("  expires at {e} ms"));
                format!("{}  version {}  {state}  {role}{expiry}", for_terminal(&k.key), k.version)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Outcome::Stats(st) => format!(
            "{} records ({} tombstones, {} bytes); upkeep: {} rounds, {} summaries and {} digests sent ({} entries, {} bytes), {} received; {} records handed on ({} bytes); {} removed (expired or old tombstones); last round {:.1} ms; {} requests sent again after their connection closed",
            st.records,
            st.tombstones,
            st.bytes,
            st.upkeep_rounds,
            st.summaries_sent,
            st.digests_sent,
            st.digest_entries_sent,
            st.digest_bytes_sent,
            st.digests_received,
            st.records_pushed,
            st.push_bytes_sent,
            st.records_removed,
            st.last_round_ms,
            st.requests_resent
        ),
        Outcome::Help => HELP.trim_end().to_owned(),
        Outcome::Quit => "bye".into(),
        Outcome::Started { peer_id, listen_addrs } => {
            let mut lines = vec![format!("peer id: {peer_id}")];
            lines.extend(listen_addrs.iter().map(|a| format!("listening on {a}")));
            lines.join("\n")
        }
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn render_json(op: &str, result: &Result<Outcome, String>) -> Value {
    let mut obj = Map::new();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            obj.insert("ok".into(), json!(false));
            obj.insert("op".into(), json!(op));
            obj.insert("error".into(), json!(e));
            return Value::Object(obj);
        }
    };
    obj.insert("ok".into(), json!(true));
    obj.insert("op".into(), json!(op));
    let fields = match outcome {
        Outcome::Put(r) | Outcome::Del(r) => json!({
            "key": r.key,
            "acked": r.acked,
            "replicas": r.replicas,
            "needed": r.needed,
            "version": r.version.to_string(),
            "stored_on": strings(&r.stored_on),
            "superseded_by": r.superseded_by.map(|v| v.to_string()),
            "elapsed_ms": ms(r.elapsed),
        }),
        Outcome::Get(r) => {
            let mut f = json!({
                "key": r.key,
                "replies": r.replies,
                "replicas": r.replicas,
                "asked": r.asked,
                "hops": r.hops,
                "needed": r.needed,
                "elapsed_ms": ms(r.elapsed),
            });
            match (&r.record, r.value()) {
                (Some(rec), Some(v)) => {
                    let (text, escaped) = display_value(v);
                    f["value"] = json!(text);
                    f["binary"] = json!(escaped);
                    f["version"] = json!(rec.version.to_string());
                    f["writer"] = json!(rec.writer_id().map(|p| p.to_string()).unwrap_or_default());
                }
                (tomb, _) => {
                    obj.insert("ok".into(), json!(false));
                    f["found"] = json!(false);
                    f["error"] = json!(format!("not found: {}", r.key));
                    if let Some(t) = tomb {
                        f["deleted"] = json!(true);
                        f["version"] = json!(t.version.to_string());
                    }
                }
            }
            f
        }
        Outcome::Peers(peers) => json!({
            "peers": peers.iter().map(|p| json!({
                "peer_id": p.peer_id.to_string(),
                "addrs": strings(&p.addrs),
                "connected": p.connected,
                "routable": p.routable,
                "kv": p.kv,
            })).collect::<Vec<_>>(),
        }),
        Outcome::Routes(routes) => json!({
            "routes": routes.iter().map(|r| json!({
                "bucket": r.bucket,
                "peer_id": r.peer_id.to_string(),
                "addrs": strings(&r.addrs),
            })).collect::<Vec<_>>(),
        }),
        Outcome::Closest(c) => json!({
            "key": c.key,
            "elapsed_ms": ms(c.elapsed),
            "peers": c.peers.iter().map(|p| json!({
                "peer_id": p.peer_id.to_string(),
                "distance_log2": p.distance_log2,
                "local": p.local,
                "replica": p.replica,
            })).collect::<Vec<_>>(),
        }),
        Outcome::Bootstrap(b) => {
            json!({"peer_id": b.peer_id.to_string(), "routing_table": b.routing_table})
        }
        Outcome::Dial(peer) => json!({"peer_id": peer.to_string()}),
        Outcome::Info(i) => json!({
            "peer_id": i.peer_id.to_string(),
            "listen_addrs": strings(&i.listen_addrs),
            "connected_peers": i.connected_peers,
            "routing_table": i.routing_table,
            "kv_peers": i.kv_peers,
            "records": i.records,
            "bytes": i.bytes,
            "replication": i.replication,
            "pending_ops": i.pending_ops,
        }),
        Outcome::Keys(keys) => json!({
            "keys": keys.iter().map(|k| json!({
                "key": k.key,
                "version": k.version.to_string(),
                "writer": k.writer.map(|w| w.to_string()),
                "size": k.size,
                "deleted": k.deleted,
                "replica": k.replica,
                "expires_at": k.expires_at,
            })).collect::<Vec<_>>(),
        }),
        Outcome::Stats(st) => serde_json::to_value(st).unwrap_or_default(),
        Outcome::Help => json!({"commands": crate::repl::COMMANDS}),
        Outcome::Quit => json!({}),
        Outcome::Started { peer_id, listen_addrs } => json!({
            "event": "started",
            "peer_id": peer_id.to_string(),
            "listen_addrs": strings(listen_addrs),
        }),
    };
    if let Value::Object(f) = fields {
        obj.extend(f);
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn errors_are_one_json_object_with_ok_false() {
        let line = render("put", &Err("value too large".into()), true);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], json!(false));
        assert_eq!(v["error"], json!("value too large"));
        assert!(!line.contains('\n'));
        assert_eq!(render("put", &Err("boom".into()), false), "error: boom");
    }

    #[test]
    fn put_report_renders_both_ways() {
        let r = PutReport {
            key: "k".into(),
            version: peerkv::Hlc::new(1, 2),
            acked: 2,
            replicas: 3,
            needed: 2,
            stored_on: vec![PeerId::random()],
            superseded_by: None,
            elapsed: std::time::Duration::from_micros(4200),
        };
        assert_eq!(
            render("put", &Ok(Outcome::Put(r.clone())), false),
            "ok: stored on 2 of 3 replicas in 4.2 ms"
        );
        let v: Value = serde_json::from_str(&render("put", &Ok(Outcome::Put(r)), true)).unwrap();
        assert_eq!(
            (v["ok"].clone(), v["acked"].clone(), v["replicas"].clone()),
            (json!(true), json!(2), json!(3))
        );
        assert_eq!(v["elapsed_ms"], json!(4.2));
    }
}
