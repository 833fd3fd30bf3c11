//! `logagg migrate`: converts a data directory written by an older build to
//! this build's store schema, with the server stopped. `serve` refuses an
//! older schema and names this command, rather than converting at start,
//! where a long copy would keep health checks failing.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::store::SqliteStore;

/// Settings of `logagg migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Directory holding the database (the server's --data-dir).
    #[arg(long, env = "LOGAGG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// # Errors
/// When the store cannot be converted; it is then left as it was.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = args.data_dir.clone();
    let migration = tokio::task::spawn_blocking(move || SqliteStore::migrate(&data_dir))
        .await
        .context("running the migration")?
        .with_context(|| format!("migrating the store in {}", args.data_dir.display()))?;
    match migration.old_copy {
        None => println!(
            "the store in {} is already at schema version {}; nothing to do",
            args.data_dir.display(),
            migration.to_version
        ),
        Some(old_copy) => println!(
            "converted {} events from schema version {} to {} in {:.1} s; the old database is kept as {} (delete it once the server runs)",
            migration.events,
            migration.from_version,
            migration.to_version,
            started.elapsed().as_secs_f64(),
            old_copy.display()
        ),
    }
    Ok(())
}
