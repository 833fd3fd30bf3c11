//! A full disk: publishes that cannot be committed get 507 (with
//! `Retry-After`) and store nothing, everything acknowledged before stays
//! stored exactly once, the server keeps serving reads (and restarting),
//! says it is degraded, and accepts events again by itself once there is
//! room.
//!
//! Needs a small filesystem of its own: the test mounts a tmpfs, which takes
//! root (CI runs as root). Without it, the test says why and skips, unless
//! `LOGAGG_REQUIRE_ALL=1` (set by CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Api, ChildServer, padded_batch};
use serde_json::Value;

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mount_point = dir.path().join("disk");
        std::fs::create_dir(&mount_point).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount_point)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self {
            mount_point,
            _dir: dir,
        })
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.mount_point)
            .status()
            .expect("running mount");
        assert!(status.success(), "remounting the tmpfs larger");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

/// 20 events of 8 KiB: 160 KiB.
fn big_batch(round: usize) -> Value {
    padded_batch("disk", &round.to_string(), 20, 8 * 1024)
}

/// One small event.
fn small_event(round: usize) -> Value {
    crate::common::event("small", &round.to_string())
}

/// What publishing until the disk refused came to.
struct Refused {
    acknowledged: u64,
    round: usize,
    status: u16,
    retry_after: Option<String>,
    problem: Value,
}

/// Publishes `body(round)` for round 0, 1, ... until an answer is not 200.
async fn publish_until_refused(api: &Api, body: impl Fn(usize) -> Value) -> Refused {
    let mut acknowledged = 0;
    for round in 0..2_000 {
        let body = body(round);
        let response = api.publish(&body).await;
        match response.status().as_u16() {
            200 => acknowledged += body.as_array().map_or(1, Vec::len) as u64,
            status => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().expect("ASCII").to_owned());
                let problem = response.json().await.expect("problem body");
                return Refused {
                    acknowledged,
                    round,
                    status,
                    retry_after,
                    problem,
                };
            }
        }
    }
    panic!("the disk never filled up");
}

/// A refusal must be a 507 disk-full problem with `Retry-After`.
fn assert_disk_full(refused: &Refused) {
    assert_eq!(refused.status, 507, "{}", refused.problem);
    assert_eq!(refused.problem["type"], "urn:logagg:problem:disk-full");
    assert_eq!(refused.retry_after.as_deref(), Some("5"), "Retry-After");
}

fn mount_or_skip(size: &str) -> Option<SmallDisk> {
    match SmallDisk::mount(size) {
        Ok(disk) => Some(disk),
        Err(reason) => {
            crate::common::skip(
                "the full-disk test",
                &format!("cannot mount a small tmpfs ({reason}); this test needs root"),
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_507_and_loses_nothing_acknowledged() {
    let Some(disk) = mount_or_skip("3m") else {
        return;
    };
    let data_dir = disk.path().join("data");
    let server = ChildServer::start(&data_dir).await;

    // Publish 160 KiB batches until the disk refuses one.
    let refused = publish_until_refused(&server.api, big_batch).await;
    let (acknowledged, round) = (refused.acknowledged, refused.round);
    assert!(acknowledged > 0, "some batches fit before the disk filled");
    eprintln!("disk refused batch {round} after {acknowledged} acknowledged events");
    assert_disk_full(&refused);

    // Nothing of the refused request, everything acknowledged, counters agree.
    let stats = server.api.stats().await;
    assert_eq!(stats["unique_processed"], acknowledged, "{stats}");
    assert_eq!(stats["received"], acknowledged, "{stats}");
    assert_eq!(stats["disk_full"], true, "{stats}");
    let (status, _) = server.api.get(&format!("/events/disk/{round}-0")).await;
    assert_eq!(status, 404, "the refused batch left nothing behind");
    let (status, health) = server.api.get("/health").await;
    assert_eq!(status, 200, "a full disk does not take reads down");
    assert_eq!(health["status"], "degraded", "{health}");

    // Room again: the same request now commits, and the condition clears.
    disk.grow("64m");
    let receipt = server.api.publish_ok(&big_batch(round)).await;
    assert_eq!(receipt["unique"], 20, "{receipt}");
    let stats = server.api.stats().await;
    assert_eq!(stats["unique_processed"], acknowledged + 20, "{stats}");
    assert_eq!(stats["disk_full"], false, "{stats}");
}

/// Issue 11, defect 2: on a full disk, publish until 507, SIGKILL, restart
/// (it started), SIGTERM, start again: `error: opening the store ... disk
/// is full`, exit 1. Opening wrote to the store (a schema version frame
/// in the WAL) on every start, and each start used up a little of the room
/// the refused commit had left in the WAL, until none was left.
///
/// Here the disk is filled to the last frame (big batches, then single
/// events), and the server must start after every one of several SIGTERMs,
/// serve reads, refuse publishes with 507 + `Retry-After`, say so in
/// `/health` and `/stats`, and take events again by itself, without a
/// restart, once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarts_on_a_full_disk_serves_reads_and_resumes_writing_by_itself() {
    let Some(disk) = mount_or_skip("4m") else {
        return;
    };
    let data_dir = disk.path().join("data");
    let server = ChildServer::start(&data_dir).await;
    let big = publish_until_refused(&server.api, big_batch).await;
    assert_disk_full(&big);
    let small = publish_until_refused(&server.api, small_event).await;
    assert_disk_full(&small);
    let acknowledged = big.acknowledged + small.acknowledged;

    server.signal_and_wait("KILL").await;
    let mut server = ChildServer::start(&data_dir).await;
    for restart in 1..=5 {
        let status = server.signal_and_wait("TERM").await;
        assert!(status.success(), "SIGTERM on a full disk exits 0: {status}");
        // Panics, with the server's error above, when it does not start.
        server = ChildServer::start(&data_dir).await;

        let stats = server.api.stats().await;
        assert_eq!(
            stats["unique_processed"], acknowledged,
            "restart {restart}: {stats}"
        );
        let stored = server.api.all_events(Some("small")).await;
        assert_eq!(stored.len() as u64, small.acknowledged, "restart {restart}");
        let refused = publish_until_refused(&server.api, |_| big_batch(big.round)).await;
        assert_eq!(
            refused.round, 0,
            "restart {restart}: the disk is still full"
        );
        assert_disk_full(&refused);
        let (status, health) = server.api.get("/health").await;
        assert_eq!(status, 200, "restart {restart}: reads go on: {health}");
        assert_eq!(health["status"], "degraded", "restart {restart}: {health}");
        assert_eq!(health["disk_full"], true, "restart {restart}: {health}");
        assert_eq!(server.api.stats().await["disk_full"], true);
    }

    // Room again: the refused request commits without a restart.
    disk.grow("64m");
    let receipt = server.api.publish_ok(&big_batch(big.round)).await;
    assert_eq!(receipt["unique"], 20, "{receipt}");
    let (status, health) = server.api.get("/health").await;
    assert_eq!((status, health), (200, serde_json::json!({"status": "ok"})));
    let stats = server.api.stats().await;
    assert_eq!(stats["unique_processed"], acknowledged + 20, "{stats}");
    assert_eq!(stats["disk_full"], false, "{stats}");
    let status = server.signal_and_wait("TERM").await;
    assert!(status.success(), "{status}");
    let server = ChildServer::start(&data_dir).await;
    assert_eq!(
        server.api.stats().await["unique_processed"],
        acknowledged + 20
    );
}
