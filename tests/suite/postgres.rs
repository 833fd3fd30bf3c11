//! A real PostgreSQL server for the tests, started by them: `initdb` and
//! `pg_ctl` in a temporary directory, on a free loopback port, with fsync
//! on. As root (CI runs as root, and PostgreSQL refuses to), the cluster
//! belongs to the unprivileged `postgres` user (Debian's package creates
//! it), or `nobody`, and its commands run through `runuser`.
//!
//! [`Postgres::shared`] is one cluster for every test of this process, each
//! test taking a fresh database ([`Postgres::database`]); a test that stops
//! or restarts the server starts a cluster of its own
//! ([`Postgres::start`]). Each cluster is stopped and deleted when its
//! guard drops and, as a safety net, by a small watcher process once this
//! test process has exited, however it exits (the shared cluster's guard
//! is a static and never drops).
//!
//! The binaries are looked up in `LOGAGG_PG_BIN` (a directory; the CI setup
//! exports it), then on the `PATH`, then in `/usr/lib/postgresql/*/bin`.
//! Without them the tests skip, or fail under `LOGAGG_REQUIRE_ALL=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{closed_port, skip};

/// The superuser the clusters are created with (trust authentication on
/// loopback only).
const SUPERUSER: &str = "logagg";

/// A running PostgreSQL cluster; stopped and deleted on drop.
pub struct Postgres {
    bin: PathBuf,
    /// Holds `data/`, the socket and the server log.
    dir: tempfile::TempDir,
    /// The unprivileged user that owns the cluster, when running as root.
    owner: Option<String>,
    pub port: u16,
}

/// A fresh, empty database in a cluster.
pub struct Database {
    pub name: String,
    pub url: String,
}

impl Postgres {
    /// A cluster of this test's own, or `None` (after saying why) when
    /// PostgreSQL is not installed.
    pub fn start(test: &str) -> Option<Self> {
        match Self::try_start() {
            Ok(postgres) => Some(postgres),
            Err(reason) => {
                skip(test, &reason);
                None
            }
        }
    }

    /// The cluster every test of this process shares, started on first
    /// use; `None` (after saying why) when it cannot be.
    pub fn shared(test: &str) -> Option<&'static Self> {
        static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();
        match SHARED.get_or_init(Self::try_start) {
            Ok(postgres) => Some(postgres),
            Err(reason) => {
                skip(test, reason);
                None
            }
        }
    }

    fn try_start() -> Result<Self, String> {
        let bin = find_binaries()?;
        let owner = unprivileged_owner()?;
        let dir = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
        if let Some(owner) = &owner {
            run(Command::new("chown").arg(owner).arg(dir.path()))?;
        }
        let mut postgres = Self {
            bin,
            dir,
            owner,
            port: 0,
        };
        let data = postgres.data_dir();
        postgres.run_as_owner(postgres.command("initdb").arg("-D").arg(&data).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]))?;
        // A port that was free a moment ago may be taken by the time the
        // server binds it: try a few.
        let mut failures = Vec::new();
        for _ in 0..3 {
            postgres.port = closed_port();
            match postgres.pg_ctl("start") {
                Ok(()) => {
                    postgres.watch_this_process();
                    return Ok(postgres);
                }
                Err(error) => failures.push(error),
            }
        }
        Err(format!("PostgreSQL did not start: {}", failures.join("; ")))
    }

    /// A new database, empty, for one test (or one case of one).
    pub async fn database(&self) -> Database {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.execute("postgres", &format!("CREATE DATABASE {name}"))
            .await;
        Database {
            url: self.url(&name),
            name,
        }
    }

    /// The URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` (one or more statements) in database `name`.
    ///
    /// # Panics
    /// When the server cannot be reached or the SQL fails.
    pub async fn execute(&self, name: &str, sql: &str) {
        self.client(name)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// A connection to database `name`, its driver running on a task.
    pub async fn client(&self, name: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_postgres::connect(&self.url(name), tokio_postgres::NoTls),
        )
        .await
        .expect("connecting to the test PostgreSQL in time")
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e:?}"));
        tokio::spawn(connection);
        client
    }

    /// `pg_ctl restart -m immediate`: the server stops as if it crashed
    /// (no checkpoint, every client cut off) and recovers from its WAL on
    /// the way back up.
    pub fn restart_immediately(&self) {
        self.pg_ctl_with("restart", &["-m", "immediate"])
            .expect("pg_ctl restart -m immediate");
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are cut off).
    pub fn stop(&self) {
        self.pg_ctl_with("stop", &["-m", "fast"])
            .expect("pg_ctl stop");
    }

    /// Starts the server again after [`stop`](Self::stop), on its port.
    pub fn start_again(&self) {
        self.pg_ctl("start").expect("pg_ctl start");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        self.pg_ctl_with(action, &[])
    }

    fn pg_ctl_with(&self, action: &str, extra: &[&str]) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        self.run_as_owner(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "-o", &options])
                .args(extra)
                .arg(action),
        )
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match &self.owner {
            Some(owner) => {
                let mut command = Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn run_as_owner(&self, command: &mut Command) -> Result<(), String> {
        run(command.current_dir(self.dir.path()))
    }

    /// Starts a watcher that stops and deletes this cluster once this test
    /// process has exited.
    fn watch_this_process(&self) {
        let stop = format!(
            "{} {} -D {} stop -m immediate",
            self.owner
                .as_ref()
                .map_or(String::new(), |owner| format!("runuser -u {owner} --")),
            self.bin.join("pg_ctl").display(),
            self.data_dir().display(),
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.path().display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl_with("stop", &["-m", "immediate"]);
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_binaries() -> Result<PathBuf, String> {
    let has_binaries = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("LOGAGG_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_binaries(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "LOGAGG_PG_BIN={} holds no initdb, pg_ctl and postgres",
                dir.display()
            ))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    // The newest version first (names are major versions).
    debian.sort_by_key(|dir| {
        std::cmp::Reverse(
            dir.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok()),
        )
    });
    on_path
        .into_iter()
        .chain(debian)
        .find(|dir| has_binaries(dir))
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, pg_ctl) found in LOGAGG_PG_BIN, on the PATH or in /usr/lib/postgresql/*/bin; install PostgreSQL (Debian: apt-get install postgresql)".to_owned()
        })
}

/// As root, the user to own the cluster: `postgres`, else `nobody`.
fn unprivileged_owner() -> Result<Option<String>, String> {
    let uid = output(Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        return Ok(None);
    }
    ["postgres", "nobody"]
        .into_iter()
        .find(|user| output(Command::new("id").arg("-u").arg(user)).is_ok())
        .map(|user| Some(user.to_owned()))
        .ok_or_else(|| {
            "running as root, and neither a postgres nor a nobody user exists to own the cluster"
                .to_owned()
        })
}

fn run(command: &mut Command) -> Result<(), String> {
    output(command).map(drop)
}

fn output(command: &mut Command) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
