//! One server per data directory (issue 11, defect 7): a second `serve` or
//! a `migrate` on a directory a server has open refuses to start, naming
//! the lock and its holder, and the directory is free again once that
//! server stops.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::ChildServer;

/// Runs `logagg` with `args` on `data_dir` to its end, killing it if it is
/// still running after 30 s (a second server that did start).
fn run_to_exit(data_dir: &std::path::Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args(args)
        .env("LOGAGG_LISTEN", "127.0.0.1:0")
        .env("LOGAGG_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning logagg");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("waiting for logagg").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("logagg's output")
}

#[tokio::test]
async fn a_second_server_on_one_data_directory_refuses_to_start_until_the_first_stops() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = ChildServer::start(dir.path()).await;
    let pid = first.child.id();

    for args in [&["serve"][..], &["migrate"][..]] {
        let second = run_to_exit(dir.path(), args);
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert!(
            !second.status.success(),
            "{args:?} ran beside the server: {stderr}"
        );
        let lock = dir.path().join("logagg.lock");
        for expected in [
            "in use by another logagg".to_owned(),
            format!("pid {pid}"),
            lock.display().to_string(),
        ] {
            assert!(
                stderr.contains(&expected),
                "{args:?}: {expected:?} not in {stderr}"
            );
        }
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    first.api.publish_ok(&crate::common::event("a", "1")).await;

    let status = first.signal_and_wait("TERM").await;
    assert!(status.success(), "{status}");
    let next = ChildServer::start(dir.path()).await;
    assert_eq!(next.api.counters().await.unique_processed, 1);
}
