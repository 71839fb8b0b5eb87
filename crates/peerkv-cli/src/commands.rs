//! The one table of REPL commands. The parser looks words up here, `help` and `help CMD` print
//! it, completion offers its names, and the renderer takes each result's `op` name from it.

/// Every REPL command, one variant each, in the order of [`COMMANDS`]; [`Op::spec`] is its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `put`.
    Put,
    /// `get`.
    Get,
    /// `del`.
    Del,
    /// `peers`.
    Peers,
    /// `routes`.
    Routes,
    /// `closest`.
    Closest,
    /// `bootstrap`.
    Bootstrap,
    /// `dial`.
    Dial,
    /// `info`.
    Info,
    /// `keys`.
    Keys,
    /// `stats`.
    Stats,
    /// `help`.
    Help,
    /// `quit`.
    Quit,
}

/// One row of the table.
#[derive(Debug)]
pub struct Spec {
    /// Which command.
    pub op: Op,
    /// Its name: what `help` lists and JSON's `"op"` says.
    pub name: &'static str,
    /// Other words for it.
    pub aliases: &'static [&'static str],
    /// Its argument forms, one synopsis each (empty: takes none; `""` inside: may have none).
    pub forms: &'static [&'static str],
    /// One line for `help`.
    pub summary: &'static str,
    /// What `help NAME` adds below the forms.
    pub details: &'static str,
}

// Row `i` is the command whose `Op` is `i`: checked when the crate compiles.
const _: () = {
    let mut i = 0;
    while i < COMMANDS.len() {
        assert!(COMMANDS[i].op as usize == i, "COMMANDS must follow the order of Op");
        i += 1;
    }
};

/// The commands, in the order `help` lists them (the order of [`Op`]).
pub const COMMANDS: &[Spec] = &[
    Spec {
        op: Op::Put,
        name: "put",
        aliases: &["set"],
        forms: &["KEY VALUE [--ttl D]", "KEY --file PATH [--ttl D]", "KEY - [--ttl D]"],
        summary: "store a value under KEY (help put: quoting, --ttl, --file, -)",
        details: "\
Stores the value on the R peers closest to KEY and returns once W of them acknowledged.

VALUE is the rest of the line as typed. A value that is one quoted string, \"…\" or '…', is
taken without its quotes: quote it to keep spaces at its ends or to store text that ends in
--ttl. Inside double quotes \\\" \\\\ \\n and \\t stand for \" \\ newline and tab.
  put greeting hello, world         stores: hello, world
  put k \"  padded  \"                stores:   padded  (spaces kept)
  put k \"v --ttl 5m\"                stores: v --ttl 5m (no expiry)

--ttl D, last on the line and outside quotes, makes the value expire everywhere after D:
30s, 10m, 2h, 7d, 500ms, or combined: 1h30m (at most 10 years).

--file PATH stores the file's bytes as they are (any bytes, up to --max-value-size).

- stores the rest of stdin, to its end, as the value; the session ends after it. Scripts use
it for values that are not text: (echo 'put k -'; cat photo.jpg) | peerkv --bootstrap …
On a terminal use --file.

A REPL line must be UTF-8: bytes that are not go through --file or -.",
    },
    Spec {
        op: Op::Get,
        name: "get",
        aliases: &[],
        forms: &["KEY [--raw]"],
        summary: "read KEY from its closest replicas",
        details: "\
Asks the R peers closest to KEY and answers once Q replied, with the newest version. Prints
the value (control characters and bytes that are not UTF-8 escaped: \\n, \\xff), then a line
with its version, writer, how many replicas replied and the time taken.
A key never written or deleted prints `not found: KEY` on stderr, and counts as a failed
command for the exit code.

--raw writes the value's bytes to stdout as they are, with no newline after them and no
second line: get k --raw > file. Not with --json (JSON escapes bytes that are not UTF-8 as
\\xNN and sets \"binary\": true).",
    },
    Spec {
        op: Op::Del,
        name: "del",
        aliases: &["delete", "rm"],
        forms: &["KEY"],
        summary: "delete KEY (stores a tombstone)",
        details: "\
A put of a tombstone, acknowledged like a put: copies that show up later stay deleted. When
the replicas held no value the tombstone is stored anyway and the answer says so.",
    },
    Spec {
        op: Op::Peers,
        name: "peers",
        aliases: &[],
        forms: &[],
        summary: "peers known: connected or in the routing table",
        details: "`(routing only)` marks peers that do not speak the value protocol.",
    },
    Spec {
        op: Op::Routes,
        name: "routes",
        aliases: &[],
        forms: &[],
        summary: "the Kademlia routing table, by bucket",
        details: "The bucket is log2 of the XOR distance between the peer and this one.",
    },
    Spec {
        op: Op::Closest,
        name: "closest",
        aliases: &[],
        forms: &["KEY"],
        summary: "the peers closest to KEY, and which would hold it",
        details: "\
Runs a Kademlia lookup and lists the peers nearest to KEY, nearest first, with their
distance; `replica` marks the R that hold the key, `self` this peer.",
    },
    Spec {
        op: Op::Bootstrap,
        name: "bootstrap",
        aliases: &[],
        forms: &["MULTIADDR/p2p/PEERID"],
        summary: "join the overlay through that peer",
        details: "\
Copy a `listening on` address from the other peer's start: it ends in /p2p/ and its id.",
    },
    Spec {
        op: Op::Dial,
        name: "dial",
        aliases: &[],
        forms: &["MULTIADDR"],
        summary: "connect to an address",
        details: "Opens a connection; the peer joins the routing table once identify ran.",
    },
    Spec {
        op: Op::Info,
        name: "info",
        aliases: &[],
        forms: &[],
        summary: "peer id, listen addresses, counts",
        details: "",
    },
    Spec {
        op: Op::Keys,
        name: "keys",
        aliases: &[],
        forms: &[],
        summary: "records held on this peer",
        details: "\
Each with its version, size, whether this peer is a replica of record or holds an extra
copy, and when it expires.",
    },
    Spec {
        op: Op::Stats,
        name: "stats",
        aliases: &[],
        forms: &[],
        summary: "records and bytes held, replica upkeep activity",
        details: "\
Records and tombstones held; upkeep rounds and what they sent (summaries, digests, records
handed on to peers that lacked them) and removed; requests sent again because their
connection closed before the answer.",
    },
    Spec {
        op: Op::Help,
        name: "help",
        aliases: &["?"],
        forms: &["[COMMAND]"],
        summary: "this list, or all about one command",
        details: "",
    },
    Spec {
        op: Op::Quit,
        name: "quit",
        aliases: &["exit"],
        forms: &[],
        summary: "stop this peer (so do end of input, Ctrl-D and SIGTERM)",
        details: "Ctrl-C clears the line being typed; it does not stop the peer.",
    },
];

impl Op {
    /// This command's row.
    pub fn spec(self) -> &'static Spec {
        &COMMANDS[self as usize]
    }

    /// The command's name, as JSON's `"op"` shows it.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

impl Spec {
    /// Whether `word` names this command (any case).
    fn is_called(&self, word: &str) -> bool {
        self.name.eq_ignore_ascii_case(word)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(word))
    }

    /// `usage: put KEY VALUE [--ttl D] | put KEY --file PATH [--ttl D] | …`.
    pub fn usage(&self) -> String {
        if self.forms.is_empty() {
            return format!("usage: {} (takes no arguments)", self.name);
        }
        let forms: Vec<String> = self.forms.iter().map(|f| format!("{} {f}", self.name)).collect();
        format!("usage: {}", forms.join(" | "))
    }

    /// `help NAME`: every form, the aliases, the summary and the details.
    pub fn long_help(&self) -> String {
        let mut lines: Vec<String> = if self.forms.is_empty() {
            vec![self.name.to_owned()]
        } else {
            self.forms.iter().map(|f| format!("{} {f}", self.name)).collect()
        };
        if !self.aliases.is_empty() {
            lines.push(format!("  (also: {})", self.aliases.join(", ")));
        }
        lines.push(String::new());
        lines.push(if self.details.is_empty() { self.summary } else { self.details }.to_owned());
        lines.join("\n")
    }
}

/// The row for `word`, a name or an alias in any case.
pub fn find(word: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.is_called(word))
}

/// `help`: one line per command, its first form and its summary, aligned.
pub fn help_list() -> String {
    let heads: Vec<String> = COMMANDS
        .iter()
        .map(|s| match s.forms.first() {
            Some(form) => format!("{} {form}", s.name),
            None => s.name.to_owned(),
        })
        .collect();
    let width = heads.iter().map(String::len).max().unwrap_or(0);
    let mut lines: Vec<String> = COMMANDS
        .iter()
        .zip(&heads)
        .map(|(s, head)| format!("{head:width$}  {}", s.summary))
        .collect();
    lines.push("help COMMAND says more: help put".into());
    lines.join("\n")
}

/// Words that complete `prefix` at the start of a line: names and aliases (not `?`).
pub fn completions(prefix: &str) -> Vec<&'static str> {
    COMMANDS
        .iter()
        .flat_map(|s| std::iter::once(&s.name).chain(s.aliases))
        .copied()
        .filter(|w| w.starts_with(char::is_alphabetic) && w.starts_with(prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Op; 13] = [
        Op::Put,
        Op::Get,
        Op::Del,
        Op::Peers,
        Op::Routes,
        Op::Closest,
        Op::Bootstrap,
        Op::Dial,
        Op::Info,
        Op::Keys,
        Op::Stats,
        Op::Help,
        Op::Quit,
    ];

    #[test]
    fn every_op_has_its_row_and_words_are_unique() {
        for op in ALL {
            assert_eq!(op.spec().op, op);
        }
        assert_eq!(COMMANDS.len(), ALL.len());
        let mut words: Vec<&str> = COMMANDS
            .iter()
            .flat_map(|s| std::iter::once(&s.name).chain(s.aliases))
            .copied()
            .collect();
        let n = words.len();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), n, "a word names two commands");
    }

    #[test]
    fn names_and_aliases_find_their_row() {
        assert_eq!(find("put").map(|s| s.op), Some(Op::Put));
        assert_eq!(find("SET").map(|s| s.op), Some(Op::Put));
        assert_eq!(find("rm").map(|s| s.op), Some(Op::Del));
        assert_eq!(find("exit").map(|s| s.op), Some(Op::Quit));
        assert_eq!(find("?").map(|s| s.op), Some(Op::Help));
        assert!(find("frobnicate").is_none());
    }

    #[test]
    fn help_lists_every_command_and_explains_put_fully() {
        let list = help_list();
        for s in COMMANDS {
            assert!(list.lines().any(|l| l.starts_with(s.name)), "{} missing:\n{list}", s.name);
        }
        let put = Op::Put.spec().long_help();
        for needle in ["put KEY --file PATH", "put KEY -", "--ttl", "quoted", "also: set", "UTF-8"]
        {
            assert!(put.contains(needle), "{needle:?} missing:\n{put}");
        }
        assert_eq!(Op::Peers.spec().usage(), "usage: peers (takes no arguments)");
        assert_eq!(Op::Get.spec().usage(), "usage: get KEY [--raw]");
    }

    #[test]
    fn completion_offers_names_and_aliases() {
        assert_eq!(completions("pe"), ["peers"]);
        assert_eq!(completions("e"), ["exit"]);
        assert!(completions("").len() > ALL.len());
        assert!(!completions("").contains(&"?"));
    }
}
