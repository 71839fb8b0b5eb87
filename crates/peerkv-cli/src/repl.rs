//! The REPL: [`parse_line`] (pure) turns a line into a [`ReplCommand`]; [`run`] reads lines —
//! with a line editor (history, completion) when stdin is a terminal, plainly and without a
//! prompt when it is a pipe — executes each on a [`Node`] and prints one result per command.

use std::io::IsTerminal;
use std::time::Duration;

use peerkv::Multiaddr;
use peerkv::Node;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::output::{render, Outcome};

/// The commands, for `help` and completion.
pub const COMMANDS: &[&str] = &[
    "put",
    "get",
    "del",
    "peers",
    "routes",
    "closest",
    "bootstrap",
    "dial",
    "info",
    "keys",
    "stats",
    "help",
    "quit",
    "exit",
];

/// What `help` prints.
pub const HELP: &str = "\
put KEY VALUE [--ttl DURATION]
                     store VALUE (the rest of the line; quote it to keep spaces at the ends) under
                     KEY; with --ttl (30s, 10m, 2h, 7d) it expires everywhere after that long
get KEY              read KEY from its closest replicas
del KEY              delete KEY (stores a tombstone)
peers                peers known: connected or in the routing table
routes               the Kademlia routing table, by bucket
closest KEY          the peers closest to KEY, and which would hold it
bootstrap MULTIADDR  join the overlay through MULTIADDR/p2p/PEERID
dial MULTIADDR       connect to an address
info                 peer id, listen addresses, counts
keys                 records held on this peer (version, size, replica of record or extra copy)
stats                store counts and bytes, replica upkeep activity
help                 this text
quit | exit          stop this peer (so does end of input)
";

/// One parsed REPL line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplCommand {
    /// `put KEY VALUE`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// `--ttl DURATION` at the end of the line.
        ttl: Option<Duration>,
    },
    /// `get KEY`.
    Get {
        /// The key.
        key: String,
    },
    /// `del KEY`.
    Del {
        /// The key.
        key: String,
    },
    /// `peers`.
    Peers,
    /// `routes`.
    Routes,
    /// `closest KEY`.
    Closest {
        /// The key.
        key: String,
    },
    /// `bootstrap MULTIADDR`.
    Bootstrap {
        /// Where to join.
        addr: Multiaddr,
    },
    /// `dial MULTIADDR`.
    Dial {
        /// Where to connect.
        addr: Multiaddr,
    },
    /// `info`.
    Info,
    /// `keys`.
    Keys,
    /// `stats`.
    Stats,
    /// `help`.
    Help,
    /// `quit` or `exit`.
    Quit,
}

impl ReplCommand {
    /// The command's name, as the JSON `op` field shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Put { .. } => "put",
            Self::Get { .. } => "get",
            Self::Del { .. } => "del",
            Self::Peers => "peers",
            Self::Routes => "routes",
            Self::Closest { .. } => "closest",
            Self::Bootstrap { .. } => "bootstrap",
            Self::Dial { .. } => "dial",
            Self::Info => "info",
            Self::Keys => "keys",
            Self::Stats => "stats",
            Self::Help => "help",
            Self::Quit => "quit",
        }
    }
}

/// Splits off the first word: a bare word up to whitespace, or a quoted string (`"…"` or
/// `'…'`, with `\"`, `\\`, `\n`, `\t` escapes in double quotes). `Ok(None)` when nothing is left.
///
/// # Errors
/// An unterminated quote.
fn next_word(s: &str) -> Result<Option<(String, &str)>, String> {
    let s = s.trim_start();
    let mut chars = s.char_indices();
    let Some((_, first)) = chars.next() else {
        return Ok(None);
    };
    if first == '"' || first == '\'' {
        let mut out = String::new();
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                match c {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    '"' | '\\' => out.push(c),
                    other => {
                        // Not an escape we know: keep it as typed.
                        out.push('\\');
                        out.push(other);
                    }
                }
                escaped = false;
            } else if c == '\\' && first == '"' {
                escaped = true;
            } else if c == first {
                let rest = &s[i + c.len_utf8()..];
                if rest.starts_with(|r: char| !r.is_whitespace()) {
                    return Err(format!("put a space after the closing {first} quote"));
                }
                return Ok(Some((out, rest)));
            } else {
                out.push(c);
            }
        }
        return Err(format!("unterminated {first} quote"));
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Ok(Some((s[..end].to_owned(), &s[end..])))
}

/// Splits a trailing `--ttl DURATION` off a put's value.
fn split_ttl(value: &str) -> Result<(&str, Option<Duration>), String> {
    let Some((head, last)) = value.rsplit_once(char::is_whitespace) else {
        return Ok((value, None));
    };
    let Some(head) = head.trim_end().strip_suffix("--ttl") else {
        return Ok((value, None));
    };
    if !(head.is_empty() || head.ends_with(char::is_whitespace)) {
        return Ok((value, None));
    }
    Ok((head.trim_end(), Some(parse_duration(last)?)))
}

/// `30s`, `10m`, `2h`, `7d`, `500ms`, or plain seconds.
///
/// # Errors
/// A message with the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?}: use 30s, 10m, 2h, 7d or 500ms");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

fn one_arg(rest: &str, usage: &str) -> Result<String, String> {
    match next_word(rest)? {
        Some((word, tail)) if tail.trim().is_empty() && !word.is_empty() => Ok(word),
        _ => Err(format!("usage: {usage}")),
    }
}

fn addr_arg(rest: &str, usage: &str) -> Result<Multiaddr, String> {
    let word = one_arg(rest, usage)?;
    word.parse().map_err(|e| format!("bad multiaddr {word:?}: {e}"))
}

/// Parses one REPL line. `Ok(None)` for a blank line or a `#` comment.
///
/// # Errors
/// A message for the user: unknown command (with a pointer to `help`) or the usage of the
/// command whose arguments are wrong.
pub fn parse_line(line: &str) -> Result<Option<ReplCommand>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let no_args = |cmd: ReplCommand| {
        if rest.trim().is_empty() {
            Ok(Some(cmd))
        } else {
            Err(format!("usage: {word} (takes no arguments)"))
        }
    };
    match word.to_ascii_lowercase().as_str() {
        "put" | "set" => {
            let Some((key, value)) = next_word(rest)? else {
                return Err("usage: put KEY VALUE".into());
            };
            let (value, ttl) = split_ttl(value.trim())?;
            if key.is_empty() || value.is_empty() {
                return Err("usage: put KEY VALUE [--ttl DURATION]".into());
            }
            // A value that is one quoted string is unquoted; anything else is taken as typed.
            let value = if value.starts_with(['"', '\'']) {
                match next_word(value)? {
                    Some((inner, tail)) if tail.trim().is_empty() => inner,
                    _ => value.to_owned(),
                }
            } else {
                value.to_owned()
            };
            Ok(Some(ReplCommand::Put { key, value, ttl }))
        }
        "get" => Ok(Some(ReplCommand::Get { key: one_arg(rest, "get KEY")? })),
        "del" | "delete" | "rm" => Ok(Some(ReplCommand::Del { key: one_arg(rest, "del KEY")? })),
        "closest" => Ok(Some(ReplCommand::Closest { key: one_arg(rest, "closest KEY")? })),
        "bootstrap" => Ok(Some(ReplCommand::Bootstrap {
            addr: addr_arg(rest, "bootstrap MULTIADDR/p2p/PEERID")?,
        })),
        "dial" => Ok(Some(ReplCommand::Dial { addr: addr_arg(rest, "dial MULTIADDR")? })),
        "peers" => no_args(ReplCommand::Peers),
        "routes" => no_args(ReplCommand::Routes),
        "info" => no_args(ReplCommand::Info),
        "keys" => no_args(ReplCommand::Keys),
        "stats" => no_args(ReplCommand::Stats),
        "help" | "?" => Ok(Some(ReplCommand::Help)),
        "quit" | "exit" => no_args(ReplCommand::Quit),
        _ => Err(format!("unknown command {word:?}: type help for the list")),
    }
}

/// Runs one command on `node`.
pub async fn execute(node: &Node, command: ReplCommand) -> Result<Outcome, String> {
    let s = |e: peerkv::Error| e.to_string();
    match command {
        ReplCommand::Put { key, value, ttl } => {
            node.put_with_ttl(key, value, ttl).await.map(Outcome::Put).map_err(s)
        }
        ReplCommand::Get { key } => node.get(key).await.map(Outcome::Get).map_err(s),
        ReplCommand::Del { key } => node.delete(key).await.map(Outcome::Del).map_err(s),
        ReplCommand::Peers => node.peers().await.map(Outcome::Peers).map_err(s),
        ReplCommand::Routes => node.routes().await.map(Outcome::Routes).map_err(s),
        ReplCommand::Closest { key } => node.closest(key).await.map(Outcome::Closest).map_err(s),
        ReplCommand::Bootstrap { addr } => {
            node.bootstrap(addr).await.map(Outcome::Bootstrap).map_err(s)
        }
        ReplCommand::Dial { addr } => node.dial(addr).await.map(Outcome::Dial).map_err(s),
        ReplCommand::Info => node.info().await.map(Outcome::Info).map_err(s),
        ReplCommand::Keys => node.keys().await.map(Outcome::Keys).map_err(s),
        ReplCommand::Stats => node.stats().await.map(Outcome::Stats).map_err(s),
        ReplCommand::Help => Ok(Outcome::Help),
        ReplCommand::Quit => Ok(Outcome::Quit),
    }
}

/// Parses and runs one line; returns the text to print (if any) and whether to stop.
pub async fn handle_line(node: &Node, line: &str, json: bool) -> (Option<String>, bool) {
    match parse_line(line) {
        Ok(None) => (None, false),
        Ok(Some(command)) => {
            let name = command.name();
            let quit = command == ReplCommand::Quit;
            let result = execute(node, command).await;
            (Some(render(name, &result, json)), quit)
        }
        Err(e) => {
            let name = line.split_whitespace().next().unwrap_or("");
            (Some(render(name, &Err(e), json)), false)
        }
    }
}

/// Reads commands from stdin until `quit`, end of input, or a read error.
///
/// # Errors
/// Only when stdin cannot be read at all.
pub async fn run(node: &Node, json: bool) -> std::io::Result<()> {
    if std::io::stdin().is_terminal() {
        run_interactive(node, json).await
    } else {
        let mut input = tokio::io::BufReader::new(tokio::io::stdin());
        let mut raw = Vec::new();
        loop {
            raw.clear();
            if input.read_until(b'\n', &mut raw).await? == 0 {
                break;
            }
            // A line that is not UTF-8 is read with replacement characters, not a crash.
            let line = String::from_utf8_lossy(&raw);
            let (text, quit) = handle_line(node, line.trim_end_matches(['\n', '\r']), json).await;
            if let Some(text) = text {
                println!("{text}");
            }
            if quit {
                break;
            }
        }
        Ok(())
    }
}

/// Line editing on a terminal: rustyline runs on its own thread and hands over one line at a
/// time, waiting for the result to be printed before it shows the next prompt.
async fn run_interactive(node: &Node, json: bool) -> std::io::Result<()> {
    let (line_tx, mut line_rx) = mpsc::channel::<String>(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let prompt = format!("peerkv {}> ", peerkv::short_id(&node.peer_id()));
    let editor = std::thread::Builder::new()
        .name("peerkv-repl".into())
        .spawn(move || editor_loop(&prompt, &line_tx, &done_rx))?;
    while let Some(line) = line_rx.recv().await {
        let (text, quit) = handle_line(node, &line, json).await;
        if let Some(text) = text {
            println!("{text}");
        }
        if quit {
            break;
        }
        if done_tx.send(()).is_err() {
            break;
        }
    }
    drop(done_tx);
    // The editor thread ends at its next read or when the process exits.
    drop(editor);
    Ok(())
}

fn editor_loop(prompt: &str, lines: &mpsc::Sender<String>, done: &std::sync::mpsc::Receiver<()>) {
    use rustyline::error::ReadlineError;
    let config = rustyline::Config::builder()
        .auto_add_history(true)
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut editor =
        match rustyline::Editor::<Helper, rustyline::history::DefaultHistory>::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot start the line editor: {e}");
                return;
            }
        };
    editor.set_helper(Some(Helper));
    loop {
        match editor.readline(prompt) {
            Ok(line) => {
                if lines.blocking_send(line).is_err() || done.recv().is_err() {
                    return;
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                let _ = lines.blocking_send("quit".into());
                return;
            }
            Err(e) => {
                eprintln!("error: reading the terminal: {e}");
                let _ = lines.blocking_send("quit".into());
                return;
            }
        }
    }
}

/// Completes command names at the start of the line.
#[derive(rustyline::Helper, rustyline::Highlighter, rustyline::Hinter, rustyline::Validator)]
struct Helper;

impl rustyline::completion::Completer for Helper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let head = &line[..pos];
        if head.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let found =
            COMMANDS.iter().filter(|c| c.starts_with(head)).map(|c| format!("{c} ")).collect();
        Ok((0, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> ReplCommand {
        parse_line(line).unwrap().unwrap()
    }

    #[test]
    fn put_takes_the_rest_of_the_line() {
        assert_eq!(
            parse("put greeting hello there  world "),
            ReplCommand::Put {
                key: "greeting".into(),
                value: "hello there  world".into(),
                ttl: None
            }
        );
    }

    #[test]
    fn quotes_keep_spaces_and_escapes() {
        assert_eq!(
            parse(r#"put "my key" "  padded \"x\"\n""#),
            ReplCommand::Put { key: "my key".into(), value: "  padded \"x\"\n".into(), ttl: None }
        );
        assert_eq!(
            parse("put k 'a b'"),
            ReplCommand::Put { key: "k".into(), value: "a b".into(), ttl: None }
        );
        assert_eq!(
            parse(r#"put k "c:\x""#),
            ReplCommand::Put { key: "k".into(), value: r"c:\x".into(), ttl: None }
        );
        // Quotes inside a longer value are kept as typed.
        assert_eq!(
            parse(r#"put k say "hi" now"#),
            ReplCommand::Put { key: "k".into(), value: r#"say "hi" now"#.into(), ttl: None }
        );
        assert_eq!(parse(r#"get "a b""#), ReplCommand::Get { key: "a b".into() });
    }

    #[test]
    fn bad_lines_get_a_usage_or_unknown_message() {
        assert!(parse_line("put").unwrap_err().contains("usage: put KEY VALUE"));
        assert!(parse_line("put k").unwrap_err().contains("usage"));
        assert!(parse_line("get").unwrap_err().contains("usage: get KEY"));
        assert!(parse_line("get a b").unwrap_err().contains("usage"));
        assert!(parse_line("frobnicate x").unwrap_err().contains("unknown command"));
        assert!(parse_line("put \"k v").unwrap_err().contains("unterminated"));
        assert!(parse_line("put k \"hello").unwrap_err().contains("unterminated"));
        assert!(parse_line("put \"a\"b c").unwrap_err().contains("space after"));
        assert!(parse_line("dial not-an-addr").unwrap_err().contains("bad multiaddr"));
        assert!(parse_line("peers now").unwrap_err().contains("no arguments"));
    }

    #[test]
    fn put_takes_a_trailing_ttl() {
        assert_eq!(
            parse("put k some value --ttl 10m"),
            ReplCommand::Put {
                key: "k".into(),
                value: "some value".into(),
                ttl: Some(Duration::from_secs(600))
            }
        );
        assert_eq!(
            parse(r#"put k "a b" --ttl 30s"#),
            ReplCommand::Put {
                key: "k".into(),
                value: "a b".into(),
                ttl: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            parse("put k a--ttl 5"),
            ReplCommand::Put { key: "k".into(), value: "a--ttl 5".into(), ttl: None }
        );
        assert!(parse_line("put k v --ttl soon").unwrap_err().contains("bad duration"));
        assert!(parse_line("put k --ttl 5m").unwrap_err().contains("usage"));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn blanks_and_comments_are_nothing() {
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("# note"), Ok(None));
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(parse("GET k"), ReplCommand::Get { key: "k".into() });
        assert_eq!(parse("del k"), ReplCommand::Del { key: "k".into() });
        assert_eq!(parse("closest k"), ReplCommand::Closest { key: "k".into() });
        assert!(matches!(parse("bootstrap /ip4/127.0.0.1/tcp/1"), ReplCommand::Bootstrap { .. }));
        assert!(matches!(parse("dial /ip4/127.0.0.1/tcp/1"), ReplCommand::Dial { .. }));
        for (line, cmd) in [
            ("peers", ReplCommand::Peers),
            ("routes", ReplCommand::Routes),
            ("info", ReplCommand::Info),
            ("keys", ReplCommand::Keys),
            ("stats", ReplCommand::Stats),
            ("help", ReplCommand::Help),
            ("quit", ReplCommand::Quit),
            ("exit", ReplCommand::Quit),
        ] {
            assert_eq!(parse(line), cmd);
        }
    }
}
