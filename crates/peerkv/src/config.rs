//! Configuration of one peer. Every field states its default; [`Config::validate`] checks that
//! they hold together before anything starts.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use libp2p::Multiaddr;

use crate::admission::Admission;
use crate::error::{Error, Result};
use crate::protocol::DEFAULT_KAD_PROTOCOL;

/// Default replication factor R.
pub const DEFAULT_REPLICATION: usize = 5;
/// Default largest value: 1 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1 << 20;
/// Largest `max_value_size` accepted: 64 MiB (a message is held whole in memory).
pub const MAX_MAX_VALUE_SIZE: usize = 64 << 20;
/// Default deadline of one operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle time after which a connection nobody uses is closed: long, so that a LAN-sized
/// overlay stays connected and pings notice a peer that is gone.
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Default of [`Config::warm_connections`].
pub const DEFAULT_WARM_CONNECTIONS: usize = crate::core::members::WARM_CAP;

/// Longest time to live a put may carry.
pub const MAX_TTL: Duration = Duration::from_secs(3650 * 86_400);

/// Default interval of replica upkeep rounds.
pub const DEFAULT_UPKEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Default lifetime of a tombstone.
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Default most records held.
pub const DEFAULT_MAX_RECORDS: usize = 1_000_000;
/// Default most bytes held: 1 GiB.
pub const DEFAULT_MAX_STORE_BYTES: usize = 1 << 30;

/// Largest replication factor: Kademlia's K, the most peers one answer names.
pub const MAX_REPLICATION: usize = 20;
/// Longest operation deadline accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest idle timeout or mDNS interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// Longest [`Config::link_delay`] accepted: 10 s each way.
pub const MAX_LINK_DELAY: Duration = Duration::from_secs(10);

/// Default interval of mDNS queries.
pub const DEFAULT_MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(20);

/// How one peer runs.
#[derive(Clone)]
pub struct Config {
    /// Addresses to listen on. Default: `/ip4/0.0.0.0/tcp/0` and `/ip4/0.0.0.0/udp/0/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through, each `…/p2p/PEERID`. Default: none.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN by mDNS. Default: on. Turn it off outside a network you own.
    pub mdns: bool,
    /// Kademlia protocol id. Default: `/peerkv/kad/1.0.0`.
    pub kad_protocol: String,
    /// Replication factor R: how many of the closest peers hold a key. Default: 5 (never more
    /// than the peers there are).
    pub replication: usize,
    /// Acknowledgements a put waits for (W). Default: `None`, a majority of the replicas chosen.
    pub write_quorum: Option<usize>,
    /// Replies a get waits for (Q). Default: `None`, a majority of the replicas chosen.
    pub read_quorum: Option<usize>,
    /// Largest value accepted, in bytes. Default: 1 MiB. The codec's limits follow from it.
    pub max_value_size: usize,
    /// Deadline of one operation: finding the replicas (the search's Fetch round trips) and
    /// their answers. Default: 10 s.
    pub timeout: Duration,
    /// How long an unused connection stays open. Default: 300 s.
    pub idle_connection_timeout: Duration,
    /// Connections kept open whatever the idle timeout, to the members nearest to this peer
    /// (warm connections: a get or put to them skips the handshakes). Default: 128. Many
    /// peers in one process share its open-files limit: lower it there.
    pub warm_connections: usize,
    /// Most records (keys, tombstones included) this peer holds; past it, new keys are refused
    /// and nothing held is dropped. Default: 1,000,000.
    pub max_records: usize,
    /// Most key and value bytes this peer holds. Default: 1 GiB.
    pub max_store_bytes: usize,
    /// Most records of one writer (a record's signing key) this peer holds: past it, new keys
    /// of that writer from other peers are refused (keys held are still updated). Default:
    /// `None`, a quarter of `max_records` ([`Config::records_per_writer`]).
    pub max_records_per_writer: Option<usize>,
    /// Most key and value bytes of one writer this peer holds, the same way. Default: `None`,
    /// a quarter of `max_store_bytes` ([`Config::bytes_per_writer`]).
    pub max_bytes_per_writer: Option<usize>,
    /// How often every record is re-offered to its current closest peers (digests first).
    /// Default: 60 s. A round also runs 2 s after the routing table changes.
    pub upkeep_interval: Duration,
    /// How long a tombstone (a delete) is kept before it is removed. Default: 24 h. A replica
    /// that was away longer than this could bring a deleted value back.
    pub tombstone_ttl: Duration,
    /// How often mDNS asks the LAN who is there. Default: 20 s (libp2p-mdns alone would wait
    /// 5 minutes after its first answer, and peers started together can miss each other).
    pub mdns_query_interval: Duration,
    /// The peer's identity. Default: `None`: the data directory's, or a new Ed25519 key.
    pub keypair: Option<Keypair>,
    /// Where the identity, the records and the peers last known are kept. Default: `None`,
    /// everything in memory (the binary defaults to the platform's data directory unless
    /// `--ephemeral`).
    pub data_dir: Option<std::path::PathBuf>,
    /// What other peers may make this one hold and do: connections, streams, bytes of requests
    /// being read, request rates ([`crate::admission`] has the defaults and flags).
    pub admission: Admission,
    /// How often the end that dialed a connection probes it ([`crate::alive`]). Default: 30 s.
    /// A host cut off is noticed within this plus 11 s by the ends that dialed it, and 1.5
    /// times this plus 5 s by the others.
    pub probe_interval: Duration,
    /// The key of a private swarm (`--psk FILE`, read with [`read_psk`]): every TCP connection
    /// is encrypted with it (libp2p-pnet) under Noise, and only peers with the same key can
    /// connect. QUIC cannot carry it, so with a key the peer speaks TCP only and
    /// [`Config::validate`] refuses QUIC listen and bootstrap addresses. Default: `None`, an
    /// open swarm.
    pub psk: Option<PreSharedKey>,
    /// A benchmark and test knob, not for deployments: every TCP connection delays each byte
    /// it reads by this much ([`crate::link_delay`]), and a dial waits twice this first (the
    /// TCP handshake), so peers on loopback see a wide-area round trip of twice this. Only TCP
    /// is delayed, not QUIC: give such peers TCP listen addresses only (as
    /// [`Config::local`] does). At most [`MAX_LINK_DELAY`]. Default: `None`, no delay.
    pub link_delay: Option<Duration>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("mdns", &self.mdns)
            .field("kad_protocol", &self.kad_protocol)
            .field("replication", &self.replication)
            .field("write_quorum", &self.write_quorum)
            .field("read_quorum", &self.read_quorum)
            .field("max_value_size", &self.max_value_size)
            .field("timeout", &self.timeout)
            .field("idle_connection_timeout", &self.idle_connection_timeout)
            .field("warm_connections", &self.warm_connections)
            .field("mdns_query_interval", &self.mdns_query_interval)
            .field("max_records", &self.max_records)
            .field("upkeep_interval", &self.upkeep_interval)
            .field("tombstone_ttl", &self.tombstone_ttl)
            .field("max_store_bytes", &self.max_store_bytes)
            .field("max_records_per_writer", &self.max_records_per_writer)
            .field("max_bytes_per_writer", &self.max_bytes_per_writer)
            .field("keypair", &self.keypair.as_ref().map(|k| k.public().to_peer_id()))
            .field("data_dir", &self.data_dir)
            .field("admission", &self.admission)
            .field("probe_interval", &self.probe_interval)
            // The key itself never reaches a log: its fingerprint tells keys apart.
            .field("psk", &self.psk.map(|k| k.fingerprint().to_string()))
            .field("link_delay", &self.link_delay)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            bootstrap: Vec::new(),
            mdns: true,
            kad_protocol: DEFAULT_KAD_PROTOCOL.to_owned(),
            replication: DEFAULT_REPLICATION,
            write_quorum: None,
            read_quorum: None,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            timeout: DEFAULT_TIMEOUT,
            idle_connection_timeout: DEFAULT_IDLE_CONNECTION_TIMEOUT,
            warm_connections: DEFAULT_WARM_CONNECTIONS,
            mdns_query_interval: DEFAULT_MDNS_QUERY_INTERVAL,
            max_records: DEFAULT_MAX_RECORDS,
            upkeep_interval: DEFAULT_UPKEEP_INTERVAL,
            tombstone_ttl: DEFAULT_TOMBSTONE_TTL,
            max_store_bytes: DEFAULT_MAX_STORE_BYTES,
            max_records_per_writer: None,
            max_bytes_per_writer: None,
            keypair: None,
            data_dir: None,
            admission: Admission::default(),
            probe_interval: crate::alive::DEFAULT_INTERVAL,
            psk: None,
            link_delay: None,
        }
    }
}

/// The default listen addresses: TCP and QUIC on every interface, ports chosen by the system.
pub fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// [`default_listen`] without QUIC: a private swarm's (`--psk`) listen addresses.
pub fn default_listen_tcp() -> Vec<Multiaddr> {
    default_listen().into_iter().filter(|a| !is_quic(a)).collect()
}

/// Whether `addr` is a QUIC address (`/quic` or `/quic-v1`), which a private swarm cannot use.
pub fn is_quic(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.iter().any(|p| matches!(p, Protocol::Quic | Protocol::QuicV1))
}

/// Why a private swarm (`--psk`) cannot use `addr`, in words for the user.
pub const QUIC_UNDER_PSK: &str =
    "QUIC cannot carry a pre-shared key: with --psk peerkv speaks TCP only — give a /tcp address";

/// Reads a private swarm's key from the file at `path`, in the format of kubo's `swarm.key`:
///
/// ```text
/// /key/swarm/psk/1.0.0/
/// /base16/
/// <64 hex digits>
/// ```
///
/// # Errors
/// [`Error::Config`] naming `--psk` and the file: it does not read, or its text is not a key
/// ([`parse_psk`] says why).
pub fn read_psk(path: &std::path::Path) -> Result<PreSharedKey> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!("--psk {}: cannot read the key file: {e}", path.display()))
    })?;
    parse_psk(&text).map_err(|why| Error::Config(format!("--psk {}: {why}", path.display())))
}

/// Parses the text of a `swarm.key` file (see [`read_psk`]). Line ends may be `\n` or `\r\n`,
/// and lines after the key are ignored, as kubo does.
///
/// # Errors
/// What is wrong with the text, in words for the user.
pub fn parse_psk(text: &str) -> std::result::Result<PreSharedKey, String> {
    const FORMAT: &str = "a swarm key is three lines: /key/swarm/psk/1.0.0/, /base16/, then 64 hex digits (the format of kubo's swarm.key)";
    let lines: Vec<&str> = text.lines().map(str::trim).take(3).collect();
    let [kind, encoding, key] = lines.as_slice() else {
        return Err(format!("not a swarm key: {FORMAT}"));
    };
    if *kind != "/key/swarm/psk/1.0.0/" {
        return Err(format!(
            "not a swarm key: the first line is not /key/swarm/psk/1.0.0/; {FORMAT}"
        ));
    }
    if *encoding != "/base16/" {
        return Err(format!(
            "unsupported key encoding {encoding:?}: only /base16/ is supported; {FORMAT}"
        ));
    }
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the key must be 64 hex digits (32 bytes), found {} characters{}",
            key.chars().count(),
            if key.bytes().all(|b| b.is_ascii_hexdigit()) {
                ""
            } else {
                " that are not all hex digits"
            }
        ));
    }
    // libp2p's own parser (the same format) turns the checked text into the key.
    format!("{kind}\n{encoding}\n{key}\n")
        .parse::<PreSharedKey>()
        .map_err(|e| format!("not a swarm key: {e:?}"))
}

/// Why peerkv cannot use `addr`, if it cannot: addresses that name a host (`/dns`, `/dns4`,
/// `/dns6`, `/dnsaddr`) are not supported, because peerkv resolves no names (it has no DNS
/// transport: a name would need a resolver that sends queries off the machine).
///
/// # Errors
/// The reason, in words for the user.
pub fn check_multiaddr(addr: &Multiaddr) -> std::result::Result<(), String> {
    use libp2p::multiaddr::Protocol;
    let named = addr.iter().find_map(|p| match p {
        Protocol::Dns(_) => Some("/dns"),
        Protocol::Dns4(_) => Some("/dns4"),
        Protocol::Dns6(_) => Some("/dns6"),
        Protocol::Dnsaddr(_) => Some("/dnsaddr"),
        _ => None,
    });
    match named {
        Some(kind) => Err(format!(
            "{kind} addresses are not supported (peerkv resolves no host names): give the peer's /ip4 or /ip6 address, as it prints them at start"
        )),
        None => Ok(()),
    }
}

impl Config {
    /// A configuration for tests and local clusters: TCP on 127.0.0.1 only, mDNS off.
    pub fn local() -> Self {
        Self {
            listen: "/ip4/127.0.0.1/tcp/0".parse().into_iter().collect(),
            mdns: false,
            ..Self::default()
        }
    }

    /// The most records of one writer held: `max_records_per_writer`, else a quarter of
    /// `max_records` (at least 1): a share no single writer of a normal overlay reaches, which
    /// still keeps one writer from taking the whole store.
    pub fn records_per_writer(&self) -> usize {
        self.max_records_per_writer.unwrap_or((self.max_records / 4).max(1))
    }

    /// The most key and value bytes of one writer held: `max_bytes_per_writer`, else a quarter
    /// of `max_store_bytes` (at least 1).
    pub fn bytes_per_writer(&self) -> usize {
        self.max_bytes_per_writer.unwrap_or((self.max_store_bytes / 4).max(1))
    }

    /// Checks that the fields hold together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field and what it must be.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.listen.is_empty() {
            return bad("no listen address: give at least one --listen".into());
        }
        for addr in self.listen.iter().chain(&self.bootstrap) {
            if let Err(why) = check_multiaddr(addr) {
                return bad(format!("{addr}: {why}"));
            }
            if self.psk.is_some() && is_quic(addr) {
                return bad(format!("{addr}: {QUIC_UNDER_PSK}"));
            }
        }
        if self.replication == 0 || self.replication > MAX_REPLICATION {
            return bad(format!(
                "--replication {} must be between 1 and {MAX_REPLICATION} (an answer names at most {MAX_REPLICATION} peers)",
                self.replication
            ));
        }
        for (name, q) in
            [("--write-quorum", self.write_quorum), ("--read-quorum", self.read_quorum)]
        {
            if let Some(q) = q {
                if q == 0 || q > self.replication {
                    return bad(format!(
                        "{name} {q} must be between 1 and --replication ({})",
                        self.replication
                    ));
                }
            }
        }
        if self.max_value_size == 0 || self.max_value_size > MAX_MAX_VALUE_SIZE {
            return bad(format!(
                "--max-value-size {} must be between 1 and {MAX_MAX_VALUE_SIZE}",
                self.max_value_size
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return bad(format!(
                "--timeout must be above 0 and at most {} s",
                MAX_TIMEOUT.as_secs()
            ));
        }
        if self.upkeep_interval < Duration::from_millis(100) || self.upkeep_interval > MAX_INTERVAL
        {
            return bad(format!(
                "--upkeep-interval must be between 0.1 and {} s",
                MAX_INTERVAL.as_secs()
            ));
        }
        if self.tombstone_ttl > Duration::from_secs(3650 * 86_400) {
            return bad("--tombstone-ttl must be at most ten years".into());
        }
        if self.idle_connection_timeout > MAX_INTERVAL {
            return bad(format!("--idle-timeout must be at most {} s", MAX_INTERVAL.as_secs()));
        }
        if self.mdns_query_interval < Duration::from_secs(1)
            || self.mdns_query_interval > MAX_INTERVAL
        {
            return bad(format!(
                "--mdns-interval must be between 1 and {} s",
                MAX_INTERVAL.as_secs()
            ));
        }
        if self.probe_interval < Duration::from_secs(1) || self.probe_interval > MAX_INTERVAL {
            return bad(format!(
                "--probe-interval must be between 1 and {} s",
                MAX_INTERVAL.as_secs()
            ));
        }
        if self.max_records_per_writer == Some(0) {
            return bad("--max-records-per-writer must be at least 1".into());
        }
        if self.max_bytes_per_writer == Some(0) {
            return bad("--max-bytes-per-writer must be at least 1".into());
        }
        if self.link_delay.is_some_and(|d| d > MAX_LINK_DELAY) {
            return bad(format!("link_delay must be at most {} s", MAX_LINK_DELAY.as_secs()));
        }
        if !self.kad_protocol.starts_with('/') {
            return bad(format!("--kad-protocol {:?} must start with '/'", self.kad_protocol));
        }
        self.admission
            .validate(crate::protocol::message_limit(self.max_value_size))
            .map_err(Error::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
        Config::local().validate().unwrap();
        assert_eq!(Config::default().listen.len(), 2);
    }

    #[test]
    fn nonsense_is_refused_with_the_flag_named() {
        let c = Config { write_quorum: Some(6), ..Config::local() };
        assert!(c.validate().unwrap_err().to_string().contains("--write-quorum"));
        let c = Config { replication: 0, ..Config::local() };
        assert!(c.validate().is_err());
        let c = Config { max_value_size: 0, ..Config::local() };
        assert!(c.validate().unwrap_err().to_string().contains("--max-value-size"));
        let c = Config { kad_protocol: "kad".into(), ..Config::local() };
        assert!(c.validate().is_err());
        let c = Config { timeout: Duration::from_secs(u64::MAX / 4), ..Config::local() };
        assert!(c.validate().unwrap_err().to_string().contains("--timeout"));
        let c = Config { replication: 21, ..Config::local() };
        assert!(c.validate().is_err());
    }

    const KEY: &str = "/key/swarm/psk/1.0.0/\n/base16/\n0123456789abcdef0123456789abcdef0123456789ABCDEF0123456789abcdef\n";

    #[test]
    fn a_kubo_swarm_key_parses() {
        let key = parse_psk(KEY).unwrap();
        // The same key written back by libp2p (lower-case hex) parses to the same key.
        assert_eq!(parse_psk(&key.to_key_file()).unwrap(), key);
        // Windows line ends, and no newline at the end, are fine too.
        assert_eq!(parse_psk(&KEY.replace('\n', "\r\n")).unwrap(), key);
        assert_eq!(parse_psk(KEY.trim_end()).unwrap(), key);
    }

    #[test]
    fn a_malformed_swarm_key_is_refused_in_words() {
        for (text, says) in [
            ("", "three lines"),
            ("/key/swarm/psk/1.0.0/\n/base16/\n", "three lines"),
            ("hello\n/base16/\n00\n", "first line"),
            ("/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n", "only /base16/"),
            ("/key/swarm/psk/1.0.0/\n/base16/\n0123\n", "64 hex digits (32 bytes), found 4"),
            (&KEY.replace("0123", "01zz"), "not all hex digits"),
            (&KEY.replace("0123", "01é3"), "not all hex digits"),
        ] {
            let e = parse_psk(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.key");
        std::fs::write(&path, "garbage").unwrap();
        let e = read_psk(&path).unwrap_err().to_string();
        assert!(e.contains("--psk") && e.contains("swarm.key") && e.contains("three lines"), "{e}");
        let e = read_psk(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("--psk") && e.contains("missing") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn a_private_swarm_refuses_quic_addresses() {
        let psk = Some(parse_psk(KEY).unwrap());
        let quic: Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap();
        let c = Config { listen: vec![quic.clone()], psk, ..Config::local() };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("QUIC cannot carry a pre-shared key"));
        let c = Config { bootstrap: vec![quic.clone()], psk, ..Config::local() };
        assert!(c.validate().is_err());
        // Not without a key; and the default listen addresses are QUIC-free under a key.
        Config { listen: vec![quic], ..Config::local() }.validate().unwrap();
        assert!(Config::default().validate().is_ok());
        let c = Config { psk, ..Config::default() };
        assert!(c.validate().is_err(), "the default listen addresses include QUIC");
        Config { psk, listen: default_listen_tcp(), ..Config::default() }.validate().unwrap();
    }
}
