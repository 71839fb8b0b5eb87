//! Parsing one REPL line into a [`ReplCommand`]: pure, driven by the command table
//! ([`crate::commands`]). Words are bare (up to whitespace) or quoted (`"…"` with `\"`, `\\`,
//! `\n`, `\t` escapes, or `'…'` taken as typed); a flag is a bare word, so a quoted `"--ttl"`
//! is text.

use std::path::PathBuf;
use std::time::Duration;

use peerkv::Multiaddr;

use crate::commands::{self, Op, Spec};

/// Where a put's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutValue {
    /// Typed on the line.
    Text(String),
    /// `--file PATH`: the file's bytes.
    File(PathBuf),
    /// `-`: the rest of stdin.
    Stdin,
}

/// One parsed REPL line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplCommand {
    /// `put KEY VALUE | KEY --file PATH | KEY -`, each with `[--ttl D]`.
    Put {
        /// The key.
        key: String,
        /// The value, or where to read it.
        value: PutValue,
        /// `--ttl D` at the end of the line.
        ttl: Option<Duration>,
    },
    /// `get KEY [--raw]`.
    Get {
        /// The key.
        key: String,
        /// `--raw`: the value's bytes alone.
        raw: bool,
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
    /// `help [COMMAND]`.
    Help {
        /// The command to explain; `None` lists them all.
        topic: Option<Op>,
    },
    /// `quit` or `exit`.
    Quit,
}

impl ReplCommand {
    /// Which command this is.
    pub fn op(&self) -> Op {
        match self {
            Self::Put { .. } => Op::Put,
            Self::Get { .. } => Op::Get,
            Self::Del { .. } => Op::Del,
            Self::Peers => Op::Peers,
            Self::Routes => Op::Routes,
            Self::Closest { .. } => Op::Closest,
            Self::Bootstrap { .. } => Op::Bootstrap,
            Self::Dial { .. } => Op::Dial,
            Self::Info => Op::Info,
            Self::Keys => Op::Keys,
            Self::Stats => Op::Stats,
            Self::Help { .. } => Op::Help,
            Self::Quit => Op::Quit,
        }
    }
}

/// One word of a line.
#[derive(Debug)]
struct Word {
    /// The word, without its quotes and with escapes applied.
    text: String,
    /// Whether it was quoted (then it is never a flag).
    quoted: bool,
    /// Its byte range in the line, quotes included.
    start: usize,
    end: usize,
}

impl Word {
    fn is_flag(&self, flag: &str) -> bool {
        !self.quoted && self.text == flag
    }
}

/// Splits `s` into words.
///
/// # Errors
/// An unterminated quote, or a closing quote followed by more than whitespace.
fn words(s: &str) -> Result<Vec<Word>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(skip) = s[at..].find(|c: char| !c.is_whitespace()) {
        let start = at + skip;
        let (text, end) = word_at(s, start)?;
        let quoted = s[start..].starts_with(['"', '\'']);
        out.push(Word { text, quoted, start, end });
        at = end;
    }
    Ok(out)
}

/// The word starting at byte `start` of `s`, and the byte after it.
fn word_at(s: &str, start: usize) -> Result<(String, usize), String> {
    let rest = &s[start..];
    let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        return Ok((rest[..len].to_owned(), start + len));
    };
    let mut text = String::new();
    let mut escaped = false;
    for (i, c) in rest.char_indices().skip(1) {
        if escaped {
            match c {
                'n' => text.push('\n'),
                't' => text.push('\t'),
                '"' | '\\' => text.push(c),
                other => {
                    // Not an escape we know: keep it as typed.
                    text.push('\\');
                    text.push(other);
                }
            }
            escaped = false;
        } else if c == '\\' && quote == '"' {
            escaped = true;
        } else if c == quote {
            let end = start + i + c.len_utf8();
            if s[end..].starts_with(|r: char| !r.is_whitespace()) {
                return Err(format!("put a space after the closing {quote} quote"));
            }
            return Ok((text, end));
        } else {
            text.push(c);
        }
    }
    Err(format!("unterminated {quote} quote"))
}

/// A time to live: `30s`, `10m`, `2h`, `7d`, `500ms`, combinations such as `1h30m` (humantime),
/// or a plain number of seconds.
///
/// # Errors
/// A message with the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("bad duration {text:?} ({e}): use 30s, 10m, 2h, 7d, 500ms or 1h30m"))
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
    let spec = commands::find(word)
        .ok_or_else(|| format!("unknown command {word:?}: type help for the list"))?;
    let args = words(rest)?;
    let command = match spec.op {
        Op::Put => return put(spec, rest, &args).map(Some),
        Op::Get => {
            let raw = args.iter().any(|w| w.is_flag("--raw"));
            let key = one(spec, args.into_iter().filter(|w| !w.is_flag("--raw")).collect())?;
            ReplCommand::Get { key, raw }
        }
        Op::Del => ReplCommand::Del { key: one(spec, args)? },
        Op::Closest => ReplCommand::Closest { key: one(spec, args)? },
        Op::Bootstrap => ReplCommand::Bootstrap { addr: addr(spec, args)? },
        Op::Dial => ReplCommand::Dial { addr: addr(spec, args)? },
        Op::Help => match &args[..] {
            [] => ReplCommand::Help { topic: None },
            [topic] => ReplCommand::Help {
                topic: Some(commands::find(&topic.text).map(|s| s.op).ok_or_else(|| {
                    format!("no command {:?}: type help for the list", topic.text)
                })?),
            },
            _ => return Err(spec.usage()),
        },
        Op::Peers => none(spec, &args, ReplCommand::Peers)?,
        Op::Routes => none(spec, &args, ReplCommand::Routes)?,
        Op::Info => none(spec, &args, ReplCommand::Info)?,
        Op::Keys => none(spec, &args, ReplCommand::Keys)?,
        Op::Stats => none(spec, &args, ReplCommand::Stats)?,
        Op::Quit => none(spec, &args, ReplCommand::Quit)?,
    };
    Ok(Some(command))
}

/// `command`, when the line had no arguments.
fn none(spec: &Spec, args: &[Word], command: ReplCommand) -> Result<ReplCommand, String> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(spec.usage())
    }
}

/// The one non-empty argument of `spec`.
fn one(spec: &Spec, args: Vec<Word>) -> Result<String, String> {
    match <[Word; 1]>::try_from(args) {
        Ok([word]) if !word.text.is_empty() => Ok(word.text),
        _ => Err(spec.usage()),
    }
}

fn addr(spec: &Spec, args: Vec<Word>) -> Result<Multiaddr, String> {
    let word = one(spec, args)?;
    word.parse().map_err(|e| format!("bad multiaddr {word:?}: {e}"))
}

/// `put KEY VALUE [--ttl D]`, `put KEY --file PATH [--ttl D]`, `put KEY - [--ttl D]`. The
/// value is the rest of `rest` as typed, unquoted when it is one quoted word; `--ttl D` is a
/// flag only at the end and outside quotes.
fn put(spec: &Spec, rest: &str, args: &[Word]) -> Result<ReplCommand, String> {
    let Some((key, mut value)) = args.split_first() else {
        return Err(spec.usage());
    };
    if key.text.is_empty() {
        return Err(spec.usage());
    }
    let mut ttl = None;
    if let [head @ .., flag, d] = value {
        if flag.is_flag("--ttl") {
            ttl = Some(parse_duration(&d.text)?);
            value = head;
        }
    }
    if value.last().is_some_and(|w| w.is_flag("--ttl")) {
        return Err("--ttl needs a duration: put KEY VALUE --ttl 10m".into());
    }
    let value = match value {
        [] => return Err(spec.usage()),
        [first, ..] if first.is_flag("--ttl") => {
            return Err("--ttl D goes at the end of the line: put KEY VALUE --ttl 10m".into())
        }
        [flag, path] if flag.is_flag("--file") => PutValue::File(PathBuf::from(&path.text)),
        [flag, ..] if flag.is_flag("--file") => {
            return Err("usage: put KEY --file PATH [--ttl D] (quote a path that has spaces)".into())
        }
        [dash] if dash.is_flag("-") => PutValue::Stdin,
        [one] if one.quoted => PutValue::Text(one.text.clone()),
        [first, .., last] => PutValue::Text(rest[first.start..last.end].to_owned()),
        [one] => PutValue::Text(one.text.clone()),
    };
    Ok(ReplCommand::Put { key: key.text.clone(), value, ttl })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> ReplCommand {
        parse_line(line).unwrap().unwrap()
    }

    fn put(key: &str, value: &str, ttl: Option<Duration>) -> ReplCommand {
        ReplCommand::Put { key: key.into(), value: PutValue::Text(value.into()), ttl }
    }

    #[test]
    fn put_takes_the_rest_of_the_line() {
        assert_eq!(
            parse("put greeting hello there  world "),
            put("greeting", "hello there  world", None)
        );
        assert_eq!(parse("set k v"), put("k", "v", None));
    }

    #[test]
    fn quotes_keep_spaces_and_escapes() {
        assert_eq!(
            parse(r#"put "my key" "  padded \"x\"\n""#),
            put("my key", "  padded \"x\"\n", None)
        );
        assert_eq!(parse("put k 'a b'"), put("k", "a b", None));
        assert_eq!(parse(r#"put k "c:\x""#), put("k", r"c:\x", None));
        // Quotes inside a longer value are kept as typed.
        assert_eq!(parse(r#"put k say "hi" now"#), put("k", r#"say "hi" now"#, None));
        assert_eq!(parse("put k don't"), put("k", "don't", None));
        assert_eq!(parse(r#"get "a b""#), ReplCommand::Get { key: "a b".into(), raw: false });
    }

    #[test]
    fn flags_inside_quotes_are_part_of_the_value() {
        assert_eq!(parse(r#"put k "v --ttl 5m""#), put("k", "v --ttl 5m", None));
        assert_eq!(parse("put k 'v --ttl 5m'"), put("k", "v --ttl 5m", None));
        assert_eq!(parse(r#"put k say "x --ttl 5m""#), put("k", r#"say "x --ttl 5m""#, None));
        assert_eq!(parse(r#"put k "--file" x"#), put("k", r#""--file" x"#, None));
        assert_eq!(parse(r#"put k "-""#), put("k", "-", None));
        assert_eq!(
            parse(r#"put k "v --ttl 5m" --ttl 5m"#),
            put("k", "v --ttl 5m", Some(Duration::from_secs(300)))
        );
        assert_eq!(parse(r#"get "--raw""#), ReplCommand::Get { key: "--raw".into(), raw: false });
    }

    #[test]
    fn put_takes_a_trailing_ttl() {
        assert_eq!(
            parse("put k some value --ttl 10m"),
            put("k", "some value", Some(Duration::from_secs(600)))
        );
        assert_eq!(
            parse(r#"put k "a b" --ttl 30s"#),
            put("k", "a b", Some(Duration::from_secs(30)))
        );
        assert_eq!(parse("put k a--ttl 5"), put("k", "a--ttl 5", None));
        assert_eq!(parse("put k v --ttl 1h30m"), put("k", "v", Some(Duration::from_secs(5400))));
        assert!(parse_line("put k v --ttl soon").unwrap_err().contains("bad duration"));
        assert!(parse_line("put k v --ttl").unwrap_err().contains("needs a duration"));
        assert!(parse_line("put k --ttl 5m v").unwrap_err().contains("at the end"));
        assert!(parse_line("put k --ttl 5m").unwrap_err().contains("usage"));
    }

    #[test]
    fn durations_go_through_humantime() {
        for (text, want) in [
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("2h", Duration::from_secs(7200)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("500ms", Duration::from_millis(500)),
            ("90", Duration::from_secs(90)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        assert!(parse_duration("5m\"").is_err());
        assert!(parse_duration("-5m").is_err());
    }

    #[test]
    fn put_reads_a_file_or_stdin() {
        assert_eq!(
            parse("put k --file /tmp/a.bin"),
            ReplCommand::Put {
                key: "k".into(),
                value: PutValue::File("/tmp/a.bin".into()),
                ttl: None
            }
        );
        assert_eq!(
            parse(r#"put k --file "/tmp/my file" --ttl 2h"#),
            ReplCommand::Put {
                key: "k".into(),
                value: PutValue::File("/tmp/my file".into()),
                ttl: Some(Duration::from_secs(7200))
            }
        );
        assert_eq!(
            parse("put k -"),
            ReplCommand::Put { key: "k".into(), value: PutValue::Stdin, ttl: None }
        );
        assert!(parse_line("put k --file").unwrap_err().contains("usage"));
        assert!(parse_line("put k --file a b").unwrap_err().contains("usage: put KEY --file PATH"));
    }

    #[test]
    fn get_takes_raw() {
        assert_eq!(parse("get k --raw"), ReplCommand::Get { key: "k".into(), raw: true });
        assert_eq!(parse("get --raw k"), ReplCommand::Get { key: "k".into(), raw: true });
        assert!(parse_line("get --raw").unwrap_err().contains("usage: get KEY [--raw]"));
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
        assert!(parse_line("help frobnicate").unwrap_err().contains("no command"));
    }

    #[test]
    fn blanks_and_comments_are_nothing() {
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("# note"), Ok(None));
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(parse("GET k"), ReplCommand::Get { key: "k".into(), raw: false });
        assert_eq!(parse("del k"), ReplCommand::Del { key: "k".into() });
        assert_eq!(parse("rm k"), ReplCommand::Del { key: "k".into() });
        assert_eq!(parse("closest k"), ReplCommand::Closest { key: "k".into() });
        assert!(matches!(parse("bootstrap /ip4/127.0.0.1/tcp/1"), ReplCommand::Bootstrap { .. }));
        assert!(matches!(parse("dial /ip4/127.0.0.1/tcp/1"), ReplCommand::Dial { .. }));
        assert_eq!(parse("help put"), ReplCommand::Help { topic: Some(Op::Put) });
        assert_eq!(parse("help exit"), ReplCommand::Help { topic: Some(Op::Quit) });
        for (line, cmd) in [
            ("peers", ReplCommand::Peers),
            ("routes", ReplCommand::Routes),
            ("info", ReplCommand::Info),
            ("keys", ReplCommand::Keys),
            ("stats", ReplCommand::Stats),
            ("help", ReplCommand::Help { topic: None }),
            ("?", ReplCommand::Help { topic: None }),
            ("quit", ReplCommand::Quit),
            ("exit", ReplCommand::Quit),
        ] {
            assert_eq!(parse(line), cmd);
            assert_eq!(cmd.op().spec().op, cmd.op());
        }
    }
}
