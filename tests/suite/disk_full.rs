//! A full disk: publishes that cannot be committed get 507 and store
//! nothing, everything acknowledged before stays stored exactly once, the
//! server stays healthy, and it accepts events again once there is room.
//!
//! Needs a small filesystem of its own: the test mounts a tmpfs, which takes
//! root (CI runs as root). Without it, the test says why and skips, unless
//! `LOGAGG_REQUIRE_ALL=1` (set by CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{ChildServer, padded_batch};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_507_and_loses_nothing_acknowledged() {
    let disk = match SmallDisk::mount("3m") {
        Ok(disk) => disk,
        Err(reason) => {
            crate::common::skip(
                "the full-disk test",
                &format!("cannot mount a small tmpfs ({reason}); this test needs root"),
            );
            return;
        }
    };
    let data_dir = disk.path().join("data");
    let server = ChildServer::start(&data_dir).await;

    // Publish 160 KiB batches until the disk refuses one.
    let mut acknowledged = 0;
    let mut refused = None;
    for round in 0..200 {
        let response = server.api.publish(&big_batch(round)).await;
        match response.status().as_u16() {
            200 => acknowledged += 20,
            status => {
                let body: Value = response.json().await.expect("problem body");
                refused = Some((round, status, body));
                break;
            }
        }
    }
    let (round, status, problem) = refused.expect("a 3 MiB disk fills up");
    assert!(acknowledged > 0, "some batches fit before the disk filled");
    eprintln!("disk refused batch {round} after {acknowledged} acknowledged events");
    assert_eq!(status, 507, "{problem}");
    assert_eq!(problem["type"], "urn:logagg:problem:disk-full");

    // Nothing of the refused request, everything acknowledged, counters agree.
    let stats = server.api.stats().await;
    assert_eq!(stats["unique_processed"], acknowledged, "{stats}");
    assert_eq!(stats["received"], acknowledged, "{stats}");
    let (status, _) = server.api.get(&format!("/events/disk/{round}-0")).await;
    assert_eq!(status, 404, "the refused batch left nothing behind");
    let (status, _) = server.api.get("/health").await;
    assert_eq!(status, 200, "a full disk does not take reads down");

    // Room again: the same request now commits.
    disk.grow("64m");
    let receipt = server.api.publish_ok(&big_batch(round)).await;
    assert_eq!(receipt["unique"], 20, "{receipt}");
    let stats = server.api.stats().await;
    assert_eq!(stats["unique_processed"], acknowledged + 20, "{stats}");
}
