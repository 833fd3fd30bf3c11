//! `logagg backup DEST`: a consistent copy of the embedded store while the
//! server keeps running, into a new directory that `logagg serve
//! --data-dir DEST` starts from.
//!
//! It reads the data directory itself (SQLite's `VACUUM INTO` in one read
//! transaction, on a read-only connection), so it runs on the machine or
//! volume that holds the data directory, takes none of the server's locks
//! and never holds up its writes (WAL: readers do not block the writer).
//! A PostgreSQL store is backed up with PostgreSQL's own tools (`pg_dump`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::store::SqliteStore;

/// Settings of `logagg backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Directory to write the copy into: created if missing, and it must be
    /// empty.
    pub dest: PathBuf,

    /// Directory holding the database (the server's --data-dir).
    #[arg(long, env = "LOGAGG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// # Errors
/// When there is no store, DEST is not empty, or the copy fails (nothing
/// is then left under DEST's final name).
pub async fn run(args: BackupArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (data_dir, dest) = (args.data_dir.clone(), args.dest.clone());
    let backup = tokio::task::spawn_blocking(move || SqliteStore::backup(&data_dir, &dest))
        .await
        .context("running the backup")?
        .with_context(|| {
            format!(
                "backing up {} into {} (check --data-dir and DEST)",
                args.data_dir.display(),
                args.dest.display()
            )
        })?;
    println!(
        "backed up {} stored events (through seq {}) to {} ({:.1} MiB) in {:.1} s; integrity check ok; start from it with `logagg serve --data-dir {}`",
        backup.stored,
        backup.last_seq,
        backup.path.display(),
        backup.bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64(),
        args.dest.display()
    );
    Ok(())
}
