//! `logagg backup` (issue 13): a copy taken while a server ingests holds
//! every event acknowledged before it began, passes SQLite's integrity
//! check, and `serve --data-dir DEST` starts from it with its dedup intact;
//! a non-empty destination is refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::common::{ChildServer, key, padded_batch};

async fn backup(data_dir: &std::path::Path, dest: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .arg("backup")
        .arg(dest)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("running logagg backup")
}

#[tokio::test]
async fn a_backup_under_load_holds_everything_acknowledged_before_it_and_restores() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let dest = dir.path().join("backup");
    let server = ChildServer::start(&data_dir).await;

    // A publisher that keeps going during the backup, recording each
    // acknowledged batch.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (api, acked, stop) = (server.api.clone(), Arc::clone(&acked), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch = padded_batch("load", &format!("r{round}"), 50, 200);
                api.publish_ok(&batch).await;
                let keys = batch.as_array().expect("a batch").iter().map(key);
                acked.lock().await.extend(keys);
                round += 1;
            }
            round
        })
    };
    while acked.lock().await.len() < 2_000 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before: BTreeSet<(String, String)> = acked.lock().await.iter().cloned().collect();
    let output = backup(&data_dir, &dest).await;
    stop.store(true, Ordering::Relaxed);
    let rounds = load.await.expect("the publisher");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("integrity check ok"), "{stdout}");
    assert!(
        rounds > 40,
        "the load went on during the backup ({rounds} rounds)"
    );
    drop(server);

    let restored = ChildServer::start(&dest).await;
    let stored: BTreeSet<(String, String)> = restored
        .api
        .all_events(None)
        .await
        .iter()
        .map(key)
        .collect();
    let missing: Vec<_> = before.difference(&stored).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged before the backup are missing, e.g. {missing:?}",
        before.difference(&stored).count()
    );
    let stats: Value = restored.api.stats().await;
    assert_eq!(
        stats["stored"].as_u64(),
        Some(stored.len() as u64),
        "{stats}"
    );
    // Its dedup index was rebuilt from the copy: a retry is a duplicate.
    let receipt = restored
        .api
        .publish_ok(&padded_batch("load", "r0", 50, 200))
        .await;
    assert_eq!(receipt["duplicates"], 50, "{receipt}");

    // A second backup into the same, now non-empty, directory.
    let output = backup(&data_dir, &dest).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
