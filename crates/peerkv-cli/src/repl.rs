//! The REPL session: reads lines — with a line editor (history, completion) when stdin is a
//! terminal, plainly and without a prompt when it is a pipe —, parses each
//! ([`crate::parse::parse_line`]), runs it on a [`Node`] and prints one result per command
//! ([`crate::output::render`]), noting whether any failed.

use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use peerkv::Node;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::commands;
use crate::output::{render, Outcome, Printed};
use crate::parse::{parse_line, PutValue, ReplCommand};

/// Where `put KEY -` reads its value from.
enum Input<'r> {
    /// The rest of piped stdin.
    Piped(&'r mut (dyn AsyncRead + Unpin + Send)),
    /// A terminal: refused, `--file` is the way.
    Terminal,
}

/// One session of commands on a node.
pub struct Session<'a> {
    node: &'a Node,
    /// `--json`.
    json: bool,
    /// `--max-value-size`: files and stdin are read up to this many bytes, and no further.
    max_value_size: usize,
    /// Whether a command failed so far: the process then exits 1.
    pub failed: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a file for `put KEY --file PATH`, refusing one larger than `limit` before reading it.
async fn read_file(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let cannot = |e: io::Error| format!("cannot read {}: {e}", path.display());
    let file = tokio::fs::File::open(path).await.map_err(cannot)?;
    let size = file.metadata().await.map_err(cannot)?.len();
    if size > limit as u64 {
        return Err(format!(
            "value too large: {} is {size} bytes (limit {limit}, --max-value-size)",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    // A file that grows while it is read is cut at the limit plus one, then refused.
    file.take(limit as u64 + 1).read_to_end(&mut bytes).await.map_err(cannot)?;
    if bytes.len() > limit {
        return Err(format!(
            "value too large: {} grew past {limit} bytes while read (--max-value-size)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Reads the rest of stdin for `put KEY -`, up to `limit` bytes.
async fn read_rest(
    input: &mut (dyn AsyncRead + Unpin + Send),
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    input
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("reading the value from stdin: {e}"))?;
    if bytes.len() > limit {
        return Err(format!(
            "value too large: more than {limit} bytes on stdin (limit {limit}, --max-value-size)"
        ));
    }
    Ok(bytes)
}

/// The command name for an error on a line that did not parse: the command's own name when
/// the first word is one, else the word as typed.
fn op_of(line: &str) -> &str {
    let word = line.split_whitespace().next().unwrap_or("");
    commands::find(word).map_or(word, |s| s.name)
}

impl<'a> Session<'a> {
    /// A session on `node`, printing JSON or text.
    pub fn new(node: &'a Node, json: bool, max_value_size: usize) -> Self {
        Self { node, json, max_value_size, failed: false }
    }

    /// Prints the result of `op`, noting a failure.
    fn print(&mut self, op: &str, result: &Result<Outcome, String>) -> io::Result<()> {
        let printed: Printed = render(op, result, self.json, now_ms());
        self.failed |= printed.failed;
        printed.write()
    }

    /// Runs one command on the node.
    async fn execute(&self, command: ReplCommand, input: Input<'_>) -> Result<Outcome, String> {
        let node = self.node;
        let s = |e: peerkv::Error| e.to_string();
        match command {
            ReplCommand::Put { key, value, ttl } => {
                let bytes = match value {
                    PutValue::Text(text) => text.into_bytes(),
                    PutValue::File(path) => read_file(&path, self.max_value_size).await?,
                    PutValue::Stdin => match input {
                        Input::Piped(rest) => read_rest(rest, self.max_value_size).await?,
                        Input::Terminal => {
                            return Err(
                                "put KEY - reads the value from piped stdin; on a terminal \
                                        use put KEY --file PATH"
                                    .into(),
                            )
                        }
                    },
                };
                node.put_with_ttl(key, bytes, ttl).await.map(Outcome::Put).map_err(s)
            }
            ReplCommand::Get { raw: true, .. } if self.json => Err("get --raw writes the value's \
                bytes alone, which --json cannot carry: leave out --raw (JSON escapes bytes that \
                are not UTF-8 as \\xNN and sets \"binary\": true)"
                .into()),
            ReplCommand::Get { key, raw } => {
                let report = node.get(key).await.map_err(s)?;
                Ok(if raw { Outcome::GetRaw(report) } else { Outcome::Get(report) })
            }
            ReplCommand::Del { key } => node.delete(key).await.map(Outcome::Del).map_err(s),
            ReplCommand::Peers => node.peers().await.map(Outcome::Peers).map_err(s),
            ReplCommand::Routes => node.routes().await.map(Outcome::Routes).map_err(s),
            ReplCommand::Closest { key } => {
                node.closest(key).await.map(Outcome::Closest).map_err(s)
            }
            ReplCommand::Bootstrap { addr } => {
                node.bootstrap(addr).await.map(Outcome::Bootstrap).map_err(s)
            }
            ReplCommand::Dial { addr } => node.dial(addr).await.map(Outcome::Dial).map_err(s),
            ReplCommand::Info => node.info().await.map(Outcome::Info).map_err(s),
            ReplCommand::Keys => node.keys().await.map(Outcome::Keys).map_err(s),
            ReplCommand::Stats => node.stats().await.map(Outcome::Stats).map_err(s),
            ReplCommand::Help { topic } => Ok(Outcome::Help(topic)),
            ReplCommand::Quit => Ok(Outcome::Quit),
        }
    }

    /// Parses and runs one line and prints its result; returns whether the session ends
    /// (`quit`, or `put KEY -` took the rest of piped stdin).
    ///
    /// # Errors
    /// Only when the result cannot be written.
    async fn handle(&mut self, line: &str, input: Input<'_>) -> io::Result<bool> {
        let command = match parse_line(line) {
            Ok(None) => return Ok(false),
            Ok(Some(command)) => command,
            Err(e) => {
                self.print(op_of(line), &Err(e))?;
                return Ok(false);
            }
        };
        let op = command.op().name();
        let ends = match &command {
            ReplCommand::Quit => true,
            ReplCommand::Put { value: PutValue::Stdin, .. } => matches!(input, Input::Piped(_)),
            _ => false,
        };
        let result = self.execute(command, input).await;
        self.print(op, &result)?;
        Ok(ends)
    }

    /// Reads commands from stdin until `quit`, end of input, or a read error: a line editor on
    /// a terminal (`interactive`), plain lines from a pipe.
    ///
    /// # Errors
    /// When stdin cannot be read or stdout written.
    pub async fn run(&mut self, interactive: bool) -> io::Result<()> {
        if interactive {
            self.run_interactive().await
        } else {
            self.run_piped().await
        }
    }

    async fn run_piped(&mut self) -> io::Result<()> {
        let mut input = BufReader::new(tokio::io::stdin());
        let mut raw = Vec::new();
        for number in 1u64.. {
            raw.clear();
            if input.read_until(b'\n', &mut raw).await? == 0 {
                break;
            }
            let bytes = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            let line = match std::str::from_utf8(bytes) {
                Ok(line) => line,
                Err(e) => {
                    // Never run (and never store) something other than what was given.
                    let at = e.valid_up_to();
                    let op = op_of(std::str::from_utf8(&bytes[..at]).unwrap_or(""));
                    let error = format!(
                        "line {number} is not UTF-8 (byte 0x{:02x} at offset {at}); nothing was \
                         run: give bytes with put KEY --file PATH or put KEY -",
                        bytes.get(at).copied().unwrap_or(0)
                    );
                    self.print(op, &Err(error))?;
                    continue;
                }
            };
            if self.handle(line, Input::Piped(&mut input)).await? {
                break;
            }
        }
        Ok(())
    }

    /// Line editing on a terminal: rustyline runs on its own thread and hands over one line at
    /// a time, waiting for the result to be printed before it shows the next prompt. Ctrl-C
    /// drops the line being typed, or stops waiting for a command that runs; it never ends the
    /// session.
    async fn run_interactive(&mut self) -> io::Result<()> {
        // From here on SIGINT is ours: a Ctrl-C between two reads must not end the process.
        #[cfg(unix)]
        let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let (line_tx, mut line_rx) = mpsc::channel::<String>(1);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let prompt = format!("peerkv {}> ", peerkv::short_id(&self.node.peer_id()));
        let editor = std::thread::Builder::new()
            .name("peerkv-repl".into())
            .spawn(move || editor_loop(&prompt, &line_tx, &done_rx))?;
        while let Some(line) = line_rx.recv().await {
            let ended = tokio::select! {
                biased;
                _ = tokio::signal::ctrl_c() => None,
                ended = self.handle(&line, Input::Terminal) => Some(ended?),
            };
            match ended {
                Some(true) => break,
                Some(false) => {}
                None => {
                    self.failed = true;
                    eprintln!("interrupted: stopped waiting (a put or delete may still complete)");
                }
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
}

/// What the line editor does after one read.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Run the line.
    Run(String),
    /// Ctrl-C: drop the line and prompt again, as shells do.
    Prompt,
    /// Ctrl-D on an empty line: end the session.
    Stop,
    /// The terminal failed: say why and end the session.
    Fail(String),
}

/// The decision after one `readline`.
fn after_read(read: Result<String, rustyline::error::ReadlineError>) -> Next {
    use rustyline::error::ReadlineError;
    match read {
        Ok(line) => Next::Run(line),
        Err(ReadlineError::Interrupted) => Next::Prompt,
        Err(ReadlineError::Eof) => Next::Stop,
        Err(e) => Next::Fail(format!("error: reading the terminal: {e}")),
    }
}

fn editor_loop(prompt: &str, lines: &mpsc::Sender<String>, done: &std::sync::mpsc::Receiver<()>) {
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
        match after_read(editor.readline(prompt)) {
            Next::Run(line) => {
                if lines.blocking_send(line).is_err() || done.recv().is_err() {
                    return;
                }
            }
            Next::Prompt => {}
            Next::Stop => return,
            Next::Fail(message) => {
                eprintln!("{message}");
                return;
            }
        }
    }
}

/// Completes command names at the start of the line, and after `help`.
#[derive(rustyline::Helper, rustyline::Highlighter, rustyline::Hinter, rustyline::Validator)]
struct Helper;

/// Where a completion starts in `head` (the line up to the cursor) and the words for it.
fn complete(head: &str) -> (usize, Vec<String>) {
    let (start, word) = match head.split_once(char::is_whitespace) {
        None => (0, head),
        Some((first, rest)) if commands::find(first).is_some_and(|s| s.name == "help") => {
            let rest_start = head.len() - rest.len();
            let trimmed = rest.trim_start();
            if trimmed.contains(char::is_whitespace) {
                return (head.len(), Vec::new());
            }
            (rest_start + rest.len() - trimmed.len(), trimmed)
        }
        Some(_) => return (head.len(), Vec::new()),
    };
    (start, commands::completions(word).into_iter().map(|c| format!("{c} ")).collect())
}

impl rustyline::completion::Completer for Helper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(complete(line.get(..pos).unwrap_or(line)))
    }
}

#[cfg(test)]
mod tests {
    use rustyline::error::ReadlineError;

    use super::*;

    #[test]
    fn ctrl_c_clears_the_line_and_only_ctrl_d_ends() {
        assert_eq!(after_read(Ok("get k".into())), Next::Run("get k".into()));
        assert_eq!(after_read(Err(ReadlineError::Interrupted)), Next::Prompt);
        assert_eq!(after_read(Err(ReadlineError::Eof)), Next::Stop);
        let broken = ReadlineError::Io(io::Error::other("gone"));
        assert!(matches!(after_read(Err(broken)), Next::Fail(m) if m.contains("gone")));
    }

    #[test]
    fn completion_reads_the_table() {
        assert_eq!(complete("pe"), (0, vec!["peers ".to_owned()]));
        assert_eq!(complete("help cl"), (5, vec!["closest ".to_owned()]));
        assert_eq!(complete("put k"), (5, Vec::new()));
    }

    #[test]
    fn errors_name_the_command_typed() {
        assert_eq!(op_of("set"), "put");
        assert_eq!(op_of("frobnicate x"), "frobnicate");
        assert_eq!(op_of(""), "");
    }

    #[tokio::test]
    async fn files_and_stdin_are_read_up_to_the_limit() {
        let dir = std::env::temp_dir().join(format!("peerkv-repl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v");
        std::fs::write(&path, [0u8, 0xff, 1]).unwrap();
        assert_eq!(read_file(&path, 3).await.unwrap(), [0, 0xff, 1]);
        assert!(read_file(&path, 2).await.unwrap_err().contains("value too large"));
        assert!(read_file(&dir.join("nope"), 2).await.unwrap_err().contains("cannot read"));
        std::fs::remove_dir_all(&dir).unwrap();

        let mut input: &[u8] = b"abc";
        assert_eq!(read_rest(&mut input, 3).await.unwrap(), b"abc");
        let mut input: &[u8] = b"abcd";
        assert!(read_rest(&mut input, 3).await.unwrap_err().contains("more than 3 bytes"));
    }
}
