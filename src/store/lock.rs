//! The data directory's lock: one embedded store per directory at a time.
//!
//! Two servers on one data directory would each keep their own idea of the
//! newest `seq`, their own keydir and their own subscribers, and so answer
//! wrongly (issue 11, defect 7). Whoever opens the store (`serve`,
//! `migrate`) first takes an exclusive OS advisory lock (`flock` on Unix,
//! through [`std::fs::File::try_lock`]) on [`LOCK_FILE`] in the directory
//! and holds it for the store's life; the OS releases it when the process
//! exits, however it exits, so a crash never leaves a stale lock behind.
//!
//! The lock file also says who holds it (`pid N`), for the message the
//! next opener gets. Writing that note is best effort: on a full disk the
//! lock itself still works, and the server must still start (defect 2).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::StoreError;

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "logagg.lock";

/// Longest holder note read back from a lock file, in bytes.
const HOLDER_BYTES_MAX: u64 = 200;

/// An exclusive lock on a data directory, released when dropped (or when
/// the process exits).
#[derive(Debug)]
pub struct DataDirLock {
    /// Holding the open file holds the lock.
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist) without waiting, and
    /// notes this process as its holder.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds it;
    /// [`StoreError::Open`] when the lock file cannot be created or locked.
    pub fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(LOCK_FILE);
        let open_error = |source: std::io::Error| StoreError::Open {
            path: path.clone(),
            source: source.into(),
        };
        // Not truncated on open: until the lock is ours, the note is the
        // holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    holder: read_holder(&mut file),
                    lock: path,
                });
            }
            Err(TryLockError::Error(error)) => return Err(open_error(error)),
        }
        if let Err(error) = write_holder(&mut file) {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                lock = %path.display(),
                "could not note this process in the lock file (the lock holds all the same)"
            );
        }
        Ok(Self { _file: file })
    }
}

/// Replaces the lock file's note with this process's id.
fn write_holder(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "pid {}", std::process::id())
}

/// The holder's note, or a placeholder when it left none.
fn read_holder(file: &mut File) -> String {
    let mut note = String::new();
    let read = Read::by_ref(file)
        .take(HOLDER_BYTES_MAX)
        .read_to_string(&mut note);
    match read.map(|_| note.trim()) {
        Ok(note) if !note.is_empty() => note.to_owned(),
        _ => "its process id unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = DataDirLock::acquire(dir.path()).expect("the first lock");
        let refused = DataDirLock::acquire(dir.path()).expect_err("the directory is locked");
        let message = refused.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(
            message.contains(&dir.path().join(LOCK_FILE).display().to_string()),
            "{message}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again once dropped");
    }
}
