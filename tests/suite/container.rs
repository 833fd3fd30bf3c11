//! Container tests: the image built from `Dockerfile` and the Compose demo
//! in `docker-compose.yml`, in real containers on the local Docker engine.
//!
//! One test runs the scenarios in order because they share one image, built
//! once and offline by `scripts/docker-build-local.sh` (the static binary
//! from this checkout plus the Dockerfile's final stage, verbatim). Every
//! name carries this process's id, and each container, volume, Compose
//! project and the image sit in a guard that removes them on drop, so a
//! failing test cleans up too. Without a Docker engine the test says why and
//! passes, unless `LOGAGG_REQUIRE_ALL=1` (set by CI) makes that a failure.
//!
//! Every docker command has a timeout, and so does every request (the
//! harness's `Api`), so a stuck container fails the test instead of hanging.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::common::{Api, event};
use serde_json::{Value, json};

/// Longest any docker command may take, except the image build.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// The build compiles the release binary when sources changed (minutes).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Longest wait for a container's health check to pass.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// What the issue asks of the final image.
const IMAGE_BYTES_MAX: u64 = 30 * 1000 * 1000;

#[test]
fn container_image_and_compose_demo_keep_the_delivery_guarantees() {
    if let Err(reason) = docker_engine_answers() {
        skip_or_fail(&format!(
            "no Docker engine answers (`docker info`: {reason})"
        ));
        return;
    }
    let started = Instant::now();
    let names = Names::for_this_run();
    let image = Image::build(&names.image);
    let runtime = tokio::runtime::Runtime::new().expect("starting a tokio runtime");
    runtime.block_on(async {
        image_is_small_runs_as_non_root_and_turns_healthy(&image, &names).await;
        restart_keeps_events_stats_and_dedup_on_the_volume(&image, &names).await;
        kill_during_publishing_loses_no_acknowledged_event(&image, &names).await;
        match Compose::detect() {
            Some(compose) => {
                compose_demo_stores_unique_events_across_runs(&compose, &image, &names).await
            }
            None => skip_or_fail("neither `docker compose` nor `docker-compose` works"),
        }
    });
    report(&format!("container tests took {:.0?}", started.elapsed()));
}

/// Build, inspect, run: the image is what the Dockerfile promises.
async fn image_is_small_runs_as_non_root_and_turns_healthy(image: &Image, names: &Names) {
    let inspect: Value = serde_json::from_str(&docker(&["image", "inspect", &image.tag]))
        .expect("docker image inspect prints JSON");
    let inspect = &inspect[0];
    let config = &inspect["Config"];
    let size = inspect["Size"].as_u64().expect("image size");
    report(&format!(
        "image {}: {:.1} MB, built in {:.0?}",
        image.tag,
        size as f64 / 1e6,
        image.build_time
    ));
    assert!(
        size < IMAGE_BYTES_MAX,
        "image is {size} bytes, over {IMAGE_BYTES_MAX}"
    );
    assert_eq!(
        config["User"], "10001:10001",
        "image runs as a non-root user"
    );
    assert_eq!(
        config["Healthcheck"]["Test"],
        json!(["CMD", "/logagg", "health"])
    );
    assert_eq!(config["Entrypoint"], json!(["/logagg"]));
    assert_eq!(config["Cmd"], json!(["serve"]));
    assert!(
        config["Volumes"].get("/data").is_some(),
        "VOLUME /data: {config}"
    );
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "EXPOSE 8080: {config}"
    );

    // An anonymous volume on /data: the server, as user 10001, can write it.
    let container = Container::run(&names.container("basic"), &[&image.tag]);
    let api = container.wait_healthy();
    let receipt = api.publish_ok(&event("basic.check", "1")).await;
    assert_eq!(receipt["unique"], 1, "{receipt}");
    // The UID as the host sees it: 10001, unless the engine remaps users.
    let top = docker(&["top", &container.name]);
    let uid = top
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().next());
    assert!(
        uid.is_some_and(|uid| uid != "0" && uid != "root"),
        "the server runs as root:\n{top}"
    );
    report(&format!(
        "basic: healthy, server process uid {}, wrote to /data",
        uid.unwrap_or("?")
    ));
}

/// `docker restart`, then a new container on the same volume: the events,
/// the counters and the dedup set all live on the volume.
async fn restart_keeps_events_stats_and_dedup_on_the_volume(image: &Image, names: &Names) {
    let volume = Volume::create(&names.volume("restart"));
    let volume_arg = format!("{}:/data", volume.name);
    let container = Container::run(
        &names.container("restart"),
        &["-v", &volume_arg, &image.tag],
    );
    let api = container.wait_healthy();

    let batches: Vec<Value> = (0..10).map(|batch| restart_batch(batch, 100)).collect();
    for batch in &batches {
        let receipt = api.publish_ok(batch).await;
        assert_eq!(receipt["unique"], 100, "{receipt}");
    }
    let stored = api.all_events(None).await;
    assert_eq!(stored.len(), 1000);

    docker(&["restart", "--time", "30", &container.name]);
    let api = container.wait_healthy();
    assert_eq!(
        api.all_events(None).await,
        stored,
        "events survive docker restart"
    );
    assert_counters(&api.stats().await, 1000, 1000, 0);
    for batch in &batches {
        let receipt = api.publish_ok(batch).await;
        assert_eq!(
            (&receipt["unique"], &receipt["duplicates"]),
            (&json!(0), &json!(100)),
            "{receipt}"
        );
    }
    assert_counters(&api.stats().await, 2000, 1000, 1000);

    // SIGTERM reaches the server as PID 1 (no init in the image) and it
    // shuts down cleanly; then a container that never saw the events, on
    // the same volume.
    docker(&["stop", "--time", "30", &container.name]);
    let exit_code = docker(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &container.name,
    ]);
    assert_eq!(exit_code, "0", "docker stop: graceful shutdown, exit 0");
    drop(container);
    let container = Container::run(
        &names.container("restart-new"),
        &["-v", &volume_arg, &image.tag],
    );
    let api = container.wait_healthy();
    assert_eq!(
        api.all_events(None).await,
        stored,
        "events live on the volume"
    );
    assert_counters(&api.stats().await, 2000, 1000, 1000);
    report(
        "restart: 1000 events and counters kept across docker restart and in a new container \
         on the volume; resent: 1000 duplicates",
    );
}

fn restart_batch(batch: usize, size: usize) -> Value {
    let topic = if batch.is_multiple_of(2) {
        "orders.created"
    } else {
        "auth.login"
    };
    Value::Array(
        (0..size)
            .map(|i| event(topic, &format!("r-{batch}-{i}")))
            .collect(),
    )
}

/// SIGKILL in the middle of a publishing run, then start again: every
/// acknowledged event is stored exactly once, every request is all or
/// nothing, and resending everything (as a retrying publisher would) adds
/// exactly what was missing.
async fn kill_during_publishing_loses_no_acknowledged_event(image: &Image, names: &Names) {
    const PUBLISHERS: usize = 4;
    const BATCH_EVENTS: usize = 50;
    const ACKED_BATCHES_BEFORE_KILL: usize = 40;

    let volume = Volume::create(&names.volume("kill"));
    let volume_arg = format!("{}:/data", volume.name);
    let container = Container::run(&names.container("kill"), &["-v", &volume_arg, &image.tag]);
    let api = container.wait_healthy();

    let acked = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            tokio::spawn(publish_until_failure(
                api.clone(),
                publisher,
                BATCH_EVENTS,
                acked.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < ACKED_BATCHES_BEFORE_KILL {
        assert!(Instant::now() < deadline, "publishers made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    docker(&["kill", "--signal", "KILL", &container.name]);
    let mut runs = Vec::new();
    for publisher in publishers {
        runs.push(publisher.await.expect("publisher task panicked"));
    }
    let exit_code = docker(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &container.name,
    ]);
    assert_eq!(exit_code, "137", "the server died of SIGKILL");

    docker(&["start", &container.name]);
    let api = container.wait_healthy();
    let stored = stored_keys_once(&api).await;
    let acked: Vec<&Vec<Value>> = runs.iter().flat_map(|run| &run.acked).collect();
    for event in acked.iter().copied().flatten() {
        assert!(
            stored.contains(&key(event)),
            "acknowledged event lost: {event}"
        );
    }
    let mut unacked_stored = 0;
    for batch in runs.iter().filter_map(|run| run.unacked.as_ref()) {
        let present = batch
            .iter()
            .filter(|event| stored.contains(&key(event)))
            .count();
        assert!(
            present == 0 || present == batch.len(),
            "a request was split: {present} of {} stored",
            batch.len()
        );
        if present == batch.len() {
            unacked_stored += 1;
        }
    }
    let stats = api.stats().await;
    assert_eq!(stats["unique_processed"], stored.len(), "{stats}");
    assert_eq!(
        stored.len(),
        (acked.len() + unacked_stored) * BATCH_EVENTS,
        "nothing but the acknowledged and the committed in-flight requests"
    );

    // The publishers retry everything they sent: only the missing is new.
    let attempted: Vec<&Vec<Value>> = runs
        .iter()
        .flat_map(|run| run.acked.iter().chain(run.unacked.as_ref()))
        .collect();
    let mut new_on_retry = 0;
    for batch in &attempted {
        let receipt = api.publish_ok(&Value::Array(batch.to_vec())).await;
        new_on_retry += receipt["unique"].as_u64().expect("unique count") as usize;
    }
    let stored_after = stored_keys_once(&api).await;
    assert_eq!(stored_after.len(), attempted.len() * BATCH_EVENTS);
    assert_eq!(new_on_retry, stored_after.len() - stored.len());
    report(&format!(
        "kill: SIGKILL after {} acknowledged requests ({} in flight, {unacked_stored} of them committed); \
         all {} acknowledged events stored once; the retry added the {new_on_retry} missing",
        acked.len(),
        runs.iter().filter(|run| run.unacked.is_some()).count(),
        acked.len() * BATCH_EVENTS,
    ));
}

/// What one publisher sent before the server died.
struct PublishRun {
    acked: Vec<Vec<Value>>,
    /// The request that failed, whose fate the publisher does not know.
    unacked: Option<Vec<Value>>,
}

/// Sends batches one after another until a request fails (the server died).
async fn publish_until_failure(
    api: Api,
    publisher: usize,
    size: usize,
    acked_total: Arc<AtomicUsize>,
) -> PublishRun {
    let mut run = PublishRun {
        acked: Vec::new(),
        unacked: None,
    };
    for batch in 0.. {
        let events: Vec<Value> = (0..size)
            .map(|i| {
                event(
                    &format!("kill.p{publisher}"),
                    &format!("k-{publisher}-{batch}-{i}"),
                )
            })
            .collect();
        let answer = api
            .http
            .post(api.url("/publish"))
            .json(&events)
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == 200 => {
                run.acked.push(events);
                acked_total.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                run.unacked = Some(events);
                return run;
            }
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Every stored `(topic, event_id)`, asserting none is stored twice.
async fn stored_keys_once(api: &Api) -> HashSet<(String, String)> {
    let mut keys = HashSet::new();
    for event in api.all_events(None).await {
        assert!(keys.insert(key(&event)), "stored twice: {event}");
    }
    keys
}

fn key(event: &Value) -> (String, String) {
    let field = |name: &str| event[name].as_str().expect("string field").to_owned();
    (field("topic"), field("event_id"))
}

/// `docker compose up` twice on one volume: the first run stores the 4000
/// unique events of 5000, the second finds all 5000 duplicates.
async fn compose_demo_stores_unique_events_across_runs(
    compose: &Compose,
    image: &Image,
    names: &Names,
) {
    let project = ComposeProject::new(compose, &names.compose_project, &image.tag);

    project.up_and_wait_for_publisher();
    let api = project.aggregator_api();
    assert_counters(&api.stats().await, 5000, 4000, 1000);
    report(&format!(
        "compose: first up: {}",
        project.publisher_verify_line()
    ));

    project.run(&["down", "--timeout", "30"]);
    assert!(
        !project.volumes().is_empty(),
        "`down` without -v keeps the data volume"
    );
    project.up_and_wait_for_publisher();
    let api = project.aggregator_api();
    assert_counters(&api.stats().await, 10000, 4000, 6000);
    report(&format!(
        "compose: second up: {}",
        project.publisher_verify_line()
    ));

    project.run(&["down", "--volumes", "--timeout", "30"]);
    assert_eq!(
        project.volumes(),
        Vec::<String>::new(),
        "`down -v` removes the volume"
    );
}

fn assert_counters(stats: &Value, received: u64, unique: u64, duplicates: u64) {
    let counters = (
        &stats["received"],
        &stats["unique_processed"],
        &stats["duplicate_dropped"],
    );
    assert_eq!(
        counters,
        (&json!(received), &json!(unique), &json!(duplicates)),
        "{stats}"
    );
}

// ---- Docker plumbing ------------------------------------------------------

/// Names of everything this run creates, unique per process.
struct Names {
    suffix: String,
    image: String,
    compose_project: String,
}

impl Names {
    fn for_this_run() -> Self {
        let suffix = format!("logagg-test-{}", std::process::id());
        Self {
            image: format!("{suffix}:latest"),
            compose_project: suffix.clone(),
            suffix,
        }
    }

    fn container(&self, role: &str) -> String {
        format!("{}-{role}", self.suffix)
    }

    fn volume(&self, role: &str) -> String {
        format!("{}-{role}", self.suffix)
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker_engine_answers() -> Result<(), String> {
    let output = try_output(
        Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
        Duration::from_secs(30),
    )?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Skips (returns after saying why) unless CI requires Docker.
fn skip_or_fail(reason: &str) {
    crate::common::skip("the container tests", reason);
}

/// Prints a line even when the test harness captures output: writes to
/// stderr directly bypass the capture, which only covers the print macros.
/// Image size, timings and skips are worth seeing in every `cargo test`.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "container: {line}");
}

/// Runs `command` to completion, killing it after `timeout`: it runs in a
/// process group of its own, so that a script's children (cargo, docker
/// build) die with it.
fn try_output(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let description = format!("{command:?}");
    let child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("spawning {description}: {error}"))?;
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match finished.recv_timeout(timeout) {
        Ok(output) => output.map_err(|error| format!("waiting for {description}: {error}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            Err(format!("{description} took longer than {timeout:?}"))
        }
    }
}

/// Runs `command`, panics with its output unless it succeeds, returns its
/// trimmed stdout.
fn check(command: &mut Command, timeout: Duration) -> String {
    let description = format!("{command:?}");
    let output = try_output(command, timeout).unwrap_or_else(|error| panic!("{error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success(),
        "{description} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn docker(args: &[&str]) -> String {
    check(Command::new("docker").args(args), COMMAND_TIMEOUT)
}

/// Cleanup for guards: report, never panic (we may be unwinding already).
fn remove(args: &[&str]) {
    match try_output(Command::new("docker").args(args), COMMAND_TIMEOUT) {
        Ok(output) if output.status.success() => {}
        Ok(output) => eprintln!(
            "cleanup `docker {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => eprintln!("cleanup: {error}"),
    }
}

/// The image, built offline from this checkout; removed on drop.
struct Image {
    tag: String,
    build_time: Duration,
}

impl Image {
    /// Builds with scripts/docker-build-local.sh.
    fn build(tag: &str) -> Self {
        // The guard exists first: the script may fail after tagging.
        let mut image = Self {
            tag: tag.to_owned(),
            build_time: Duration::ZERO,
        };
        let started = Instant::now();
        check(
            Command::new(repo_root().join("scripts/docker-build-local.sh")).arg(tag),
            BUILD_TIMEOUT,
        );
        image.build_time = started.elapsed();
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        remove(&["image", "rm", "--force", &self.tag]);
    }
}

/// A named volume; removed on drop.
struct Volume {
    name: String,
}

impl Volume {
    fn create(name: &str) -> Self {
        let volume = Self {
            name: name.to_owned(),
        };
        docker(&["volume", "create", name]);
        volume
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        remove(&["volume", "rm", "--force", &self.name]);
    }
}

/// A detached container publishing port 8080 on a free loopback port;
/// removed on drop with its anonymous volumes.
struct Container {
    name: String,
}

impl Container {
    /// `docker run -d` with `args` (options, then the image and command).
    fn run(name: &str, args: &[&str]) -> Self {
        // The guard exists before the container does, so a failed start is
        // cleaned up too.
        let container = Self {
            name: name.to_owned(),
        };
        let mut run = vec![
            "run",
            "--detach",
            "--name",
            name,
            "--publish",
            "127.0.0.1::8080",
        ];
        run.extend(args);
        docker(&run);
        container
    }

    /// Waits for the image's health check to pass; the published port may
    /// change on each start, so this returns a client for the current one.
    fn wait_healthy(&self) -> Api {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let state = docker(&[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.Health.Status}}",
                &self.name,
            ]);
            match state.as_str() {
                "running healthy" => return Api::new(published_addr(&self.name)),
                "running starting" | "created starting" | "running unhealthy"
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                _ => panic!(
                    "container {} is not healthy ({state}); its logs:\n{}",
                    self.name,
                    logs(&self.name)
                ),
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove(&["rm", "--force", "--volumes", &self.name]);
    }
}

/// The loopback address a container's port 8080 is published on.
fn published_addr(container: &str) -> SocketAddr {
    let ports = docker(&["port", container, "8080/tcp"]);
    ports
        .lines()
        .find_map(|line| line.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address published for {container}: {ports}"))
}

fn logs(container: &str) -> String {
    match try_output(
        Command::new("docker").args(["logs", container]),
        COMMAND_TIMEOUT,
    ) {
        Ok(output) => format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => error,
    }
}

/// How to run Compose here: the `docker compose` plugin or `docker-compose`.
struct Compose {
    program: &'static str,
    prefix: &'static [&'static str],
}

impl Compose {
    fn detect() -> Option<Self> {
        let candidates = [
            Self {
                program: "docker",
                prefix: &["compose"],
            },
            Self {
                program: "docker-compose",
                prefix: &[],
            },
        ];
        candidates.into_iter().find(|compose| {
            try_output(compose.command().arg("version"), Duration::from_secs(30))
                .is_ok_and(|output| output.status.success())
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(self.program);
        command.args(self.prefix);
        command
    }
}

/// A Compose project on `docker-compose.yml` using the test image and any
/// free host port; `down -v` on drop.
struct ComposeProject<'a> {
    compose: &'a Compose,
    name: String,
    image: String,
}

impl<'a> ComposeProject<'a> {
    fn new(compose: &'a Compose, name: &str, image: &str) -> Self {
        Self {
            compose,
            name: name.to_owned(),
            image: image.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let file: PathBuf = repo_root().join("docker-compose.yml");
        let mut command = self.compose.command();
        command
            .current_dir(repo_root())
            .env("LOGAGG_IMAGE", &self.image)
            .env("LOGAGG_PORT", "")
            .arg("--project-name")
            .arg(&self.name)
            .arg("--file")
            .arg(file)
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> String {
        check(&mut self.command(args), COMMAND_TIMEOUT)
    }

    /// `up` (the aggregator, then once it is healthy the publisher), then
    /// waits for the publisher to exit and asserts it exited 0.
    fn up_and_wait_for_publisher(&self) {
        self.run(&["up", "--detach", "--no-build"]);
        let publisher = self.container_id("publisher");
        let exit_code = docker(&["wait", &publisher]);
        assert_eq!(
            exit_code,
            "0",
            "the publisher failed; its logs:\n{}\naggregator logs:\n{}",
            logs(&publisher),
            logs(&self.container_id("aggregator"))
        );
    }

    /// The container of `service` (running or not), found by Compose's labels,
    /// which both Compose versions set (their container names differ).
    fn container_id(&self, service: &str) -> String {
        let ids = docker(&[
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        let mut ids = ids.lines();
        let id = ids
            .next()
            .unwrap_or_else(|| panic!("no container for {service}"))
            .to_owned();
        assert!(
            ids.next().is_none(),
            "more than one container for {service}"
        );
        id
    }

    fn aggregator_api(&self) -> Api {
        Api::new(published_addr(&self.container_id("aggregator")))
    }

    fn publisher_verify_line(&self) -> String {
        let logs = logs(&self.container_id("publisher"));
        logs.lines()
            .find(|line| line.starts_with("verify"))
            .unwrap_or("(no verify line)")
            .to_owned()
    }

    fn volumes(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        docker(&["volume", "ls", "--quiet", "--filter", &label])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for ComposeProject<'_> {
    fn drop(&mut self) {
        let down = &["down", "--volumes", "--remove-orphans", "--timeout", "10"];
        match try_output(&mut self.command(down), COMMAND_TIMEOUT) {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "cleanup compose down: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => eprintln!("cleanup: {error}"),
        }
    }
}
