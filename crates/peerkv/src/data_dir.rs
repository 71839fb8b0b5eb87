//! The data directory: the identity key, the records and the peers last known, so a restart
//! (even after `kill -9`) keeps the peer id and everything acknowledged.
//!
//! Layout: `identity.key` (the Ed25519 keypair, protobuf-encoded, mode 0600) and `peerkv.redb`
//! (records, peers, format marker). The database's lock keeps a second process out; a
//! directory that holds anything else, or files that do not read, is refused and left alone.

use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

use crate::error::{Error, Result};
use crate::store::{Store, StoreError};

/// File name of the identity key.
pub const IDENTITY_FILE: &str = "identity.key";
/// File name of the database.
pub const STORE_FILE: &str = "peerkv.redb";

/// The platform's data directory for peerkv: `$XDG_DATA_HOME/peerkv`, else
/// `$HOME/.local/share/peerkv`; `None` when neither variable is set.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("peerkv"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".local/share/peerkv"))
}

fn refuse(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::DataDir { dir: dir.to_path_buf(), reason: what.to_string() }
}

/// Opens `dir` (creating it if needed): locks and loads the store, then loads the identity or
/// creates it (from `wanted` when given, else a new key).
///
/// # Errors
/// [`Error::DataDirLocked`] when another peer runs on it; [`Error::DataDir`] when it holds
/// other files, cannot be read, or holds another identity than `wanted`.
pub fn open(dir: &Path, wanted: Option<&Keypair>) -> Result<(Keypair, Store)> {
    if dir.exists() && !dir.is_dir() {
        return Err(refuse(dir, "it is a file, not a directory"));
    }
    std::fs::create_dir_all(dir).map_err(|e| refuse(dir, format!("cannot create it: {e}")))?;
    let entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| refuse(dir, format!("cannot read it: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let ours = |name: &str| {
        name == IDENTITY_FILE || name == STORE_FILE || name.starts_with(".identity.key.")
    };
    if !entries.iter().any(|n| n == IDENTITY_FILE || n == STORE_FILE) && !entries.is_empty() {
        return Err(refuse(
            dir,
            format!(
                "it is not empty and holds no peerkv data ({}); choose an empty or new directory",
                entries.iter().filter(|n| !ours(n)).take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let store = Store::open(&dir.join(STORE_FILE)).map_err(|e| match e {
        StoreError::Locked => Error::DataDirLocked(dir.to_path_buf()),
        other => refuse(dir, other),
    })?;
    // The store's lock is held from here on: no other process races us for the identity.
    let path = dir.join(IDENTITY_FILE);
    let keypair = match std::fs::read(&path) {
        Ok(bytes) => {
            let held = Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| refuse(dir, format!("{IDENTITY_FILE} does not read: {e}")))?;
            if let Some(w) = wanted {
                if w.public() != held.public() {
                    return Err(refuse(
                        dir,
                        format!(
                            "it holds the identity {}, not {}",
                            held.public().to_peer_id(),
                            w.public().to_peer_id()
                        ),
                    ));
                }
            }
            held
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !store.is_empty() {
                return Err(refuse(dir, format!("it holds records but no {IDENTITY_FILE}")));
            }
            let keypair = wanted.cloned().unwrap_or_else(Keypair::generate_ed25519);
            write_identity(dir, &keypair)?;
            keypair
        }
        Err(e) => return Err(refuse(dir, format!("cannot read {IDENTITY_FILE}: {e}"))),
    };
    Ok((keypair, store))
}

/// Writes the identity atomically (temporary file, fsync, rename) with mode 0600.
fn write_identity(dir: &Path, keypair: &Keypair) -> Result<()> {
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| refuse(dir, format!("cannot encode the identity: {e}")))?;
    let tmp = dir.join(format!(".{IDENTITY_FILE}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(IDENTITY_FILE))?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| refuse(dir, format!("cannot write {IDENTITY_FILE}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = open(dir.path(), None).unwrap();
        let (second, _) = open(dir.path(), None).unwrap();
        assert_eq!(first.public(), second.public());
        let other = Keypair::generate_ed25519();
        let err = open(dir.path(), Some(&other)).unwrap_err().to_string();
        assert!(err.contains("holds the identity"), "{err}");
    }

    #[test]
    fn a_locked_directory_names_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let _held = open(dir.path(), None).unwrap();
        let err = open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("--data-dir") && err.contains("--ephemeral"), "{err}");
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, b"mine").unwrap();
        let err = open(&file, None).unwrap_err().to_string();
        assert!(err.contains("is a file, not a directory"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    }

    #[test]
    fn a_foreign_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("thesis.tex"), b"chapter 1").unwrap();
        let err = open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        assert!(!dir.path().join(STORE_FILE).exists());
        assert!(!dir.path().join(IDENTITY_FILE).exists());
    }

    #[test]
    fn a_broken_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), None).unwrap());
        std::fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        let err = open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("does not read"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(IDENTITY_FILE)).unwrap(), b"garbage");
    }
}
