//! The pure parts of the `peerkv` binary, as a library so the fuzz targets (`fuzz/`) and tests
//! can reach them: [`commands`] (the one table of REPL commands) and [`parse`] (a REPL line →
//! [`parse::ReplCommand`]). The binary (`src/main.rs`) uses them from here; everything else of
//! it (flags, the session, rendering) stays in the binary.

pub mod commands;
pub mod parse;
