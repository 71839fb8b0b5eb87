//! The REPL line parser of the `peerkv` binary on arbitrary text: it returns a command, nothing
//! (blank line or comment) or a message for the user, and never panics. What parses parses the
//! same way again, and a command's key is never empty.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkv_cli::parse::{parse_duration, parse_line, ReplCommand};

fuzz_target!(|data: &[u8]| {
    // rustyline hands the REPL valid UTF-8 only; lossy decoding keeps the rest of the input.
    let line = String::from_utf8_lossy(data);
    let parsed = parse_line(&line);
    assert_eq!(parsed, parse_line(&line), "parsing is not deterministic");
    match parsed {
        Ok(Some(
            ReplCommand::Put { key, .. }
            | ReplCommand::Get { key, .. }
            | ReplCommand::Del { key }
            | ReplCommand::Closest { key },
        )) => assert!(!key.is_empty(), "a command with an empty key"),
        Ok(_) => {}
        Err(message) => assert!(!message.is_empty(), "an error without words"),
    }
    let _ = parse_duration(line.trim());
});
