//! The dashboard at `/`, in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`), against an
//! in-process server. Skips without them, unless `LOGAGG_REQUIRE_ALL=1`.
//!
//! Set `LOGAGG_SCREENSHOT_DIR` to keep the screenshots taken at desktop and
//! phone width (that is how `docs/dashboard-*.png` are made).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::{REQUEST_TIMEOUT, TestApp, closed_port, event, padded_batch, skip};

/// How long the page may take to show what a test waits for: a few of its
/// 2 s polls.
const SETTLE: Duration = Duration::from_secs(20);

/// A `chromedriver` child process, killed with the browsers it started on
/// drop (they share its process group).
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(chromedriver: &Path) -> Self {
        let port = closed_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawning chromedriver");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until the driver answers `/status` as ready.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            let status = http
                .get(format!("{}/status", self.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(response) = status
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return;
            }
            if let Some(exit) = self.child.try_wait().expect("polling chromedriver") {
                panic!("chromedriver exited before it was ready: {exit}");
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it ran.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// One headless Chromium session.
struct Browser {
    client: Client,
    // Dropped after the client: the session ends before its driver dies.
    _driver: Driver,
}

impl Browser {
    /// A browser, or `None` (after [`skip`]) when Chromium or its driver is
    /// not installed.
    async fn start(test: &str) -> Option<Self> {
        let (Some(chromium), Some(chromedriver)) = (on_path("chromium"), on_path("chromedriver"))
        else {
            skip(
                test,
                "chromium and chromedriver are not installed (.ci/setup/40-chromium.sh installs them)",
            );
            return None;
        };
        let mut driver = Driver::start(&chromedriver);
        driver.wait_ready().await;
        let mut args = vec![
            "--headless=new",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--force-device-scale-factor=1",
            "--window-size=1280,1000",
            // Every host name but the server's fails to resolve, so a
            // request elsewhere could not succeed even if the page's
            // policy allowed it; the request log below shows none is tried.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ];
        // Chromium refuses to start its sandbox as root (CI runs as root),
        // and the sandbox needs user namespaces a container may not have.
        if std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == 0) {
            args.push("--no-sandbox");
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": { "performance": "ALL", "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = within(
            "starting a browser session",
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&driver.url),
        )
        .await
        .expect("a WebDriver session");
        Some(Self {
            client,
            _driver: driver,
        })
    }

    async fn goto(&self, url: &str) {
        within("loading the page", self.client.goto(url))
            .await
            .expect("page loads");
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        within("running a script", self.client.execute(script, args))
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script` until it returns something truthy, and returns that.
    ///
    /// # Panics
    /// After [`SETTLE`], naming `what` and the last value.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + SETTLE;
        loop {
            let value = self.js(script, vec![]).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "waited {SETTLE:?} for {what}; last saw {value}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        within(css, self.client.find(Locator::Css(css)))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Types `text` into the input `css`, replacing what it held, as a
    /// person would (select all, delete, type), so the page sees `input`
    /// events.
    async fn fill(&self, css: &str, text: &str) {
        use fantoccini::key::Key;
        let input = self.find(css).await;
        let keys = format!("{}a{}{}{text}", Key::Control, Key::Null, Key::Backspace);
        within("typing", input.send_keys(&keys))
            .await
            .expect("type");
    }

    async fn press_enter_in(&self, css: &str) {
        let element = self.find(css).await;
        within(
            "pressing Enter",
            element.send_keys(&fantoccini::key::Key::Enter.to_string()),
        )
        .await
        .expect("Enter");
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        within("clicking", element.click()).await.expect("click");
    }

    /// Looks `event_id` up in `topic` with the page's form (submitted with
    /// Enter) and returns what it says once its outcome is `outcome`.
    async fn lookup(&self, topic: &str, event_id: &str, outcome: &str) -> String {
        self.fill("#lookup-topic", topic).await;
        self.fill("#lookup-id", event_id).await;
        self.press_enter_in("#lookup-id").await;
        let script = format!(
            "const result = document.getElementById('lookup-result');
             return result.dataset.outcome === '{outcome}' && result.textContent"
        );
        let what = format!("the lookup of {event_id} to say {outcome}");
        let said = self.wait_for(&what, &script).await;
        said.as_str().expect("text").to_owned()
    }

    /// Resizes the window so the page's viewport is `width` x `height`.
    async fn viewport(&self, width: u32, height: u32) {
        within("resizing", self.client.set_window_size(width, height))
            .await
            .expect("resize");
        let inner = self.js("return [innerWidth, innerHeight]", vec![]).await;
        let (w, h) = (inner[0].as_u64().expect("w"), inner[1].as_u64().expect("h"));
        // Headless windows have no frame, but allow for one.
        let outer_w = width + (width - w as u32);
        let outer_h = height + (height - h as u32);
        within("resizing", self.client.set_window_size(outer_w, outer_h))
            .await
            .expect("resize");
    }

    /// A PNG of the viewport, kept in `LOGAGG_SCREENSHOT_DIR` when set.
    async fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = within("a screenshot", self.client.screenshot())
            .await
            .expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        if let Some(dir) = std::env::var_os("LOGAGG_SCREENSHOT_DIR") {
            let path = Path::new(&dir).join(format!("{name}.png"));
            std::fs::write(&path, &png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        png
    }

    /// The entries of one of Chromium's logs (`performance`, `browser`)
    /// since the last call.
    async fn log(&self, kind: &'static str) -> Vec<Value> {
        let command = SessionPost {
            path: "se/log",
            body: json!({ "type": kind }),
        };
        let entries = within("reading a log", self.client.issue_cmd(command))
            .await
            .expect("the log");
        entries.as_array().cloned().unwrap_or_default()
    }

    /// Chromium emulating `prefers-color-scheme: <scheme>`, through the
    /// DevTools protocol (chromedriver's `goog/cdp/execute`).
    async fn emulate_color_scheme(&self, scheme: &str) {
        let command = SessionPost {
            path: "goog/cdp/execute",
            body: json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] },
            }),
        };
        within("emulating a color scheme", self.client.issue_cmd(command))
            .await
            .expect("Emulation.setEmulatedMedia");
    }

    async fn close(self) {
        within("closing the browser", self.client.close())
            .await
            .expect("the session closes");
    }
}

/// A chromedriver command outside the WebDriver standard:
/// `POST /session/{id}/<path>` with a JSON body.
#[derive(Debug)]
struct SessionPost {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for SessionPost {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, url_parse::ParseError> {
        let session = session_id.unwrap_or("");
        base_url.join(&format!("session/{session}/{}", self.path))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (Method, Option<String>) {
        (Method::POST, Some(self.body.to_string()))
    }
}

/// The `url` crate's parse error, as reqwest re-exports its `Url`.
mod url_parse {
    pub type ParseError = <reqwest::Url as std::str::FromStr>::Err;
}

/// `future`, or a panic naming `what` after [`REQUEST_TIMEOUT`].
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(REQUEST_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in {REQUEST_TIMEOUT:?}"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The digits of a DOM text ("1,234" is 1234 in any locale).
fn digits(text: &Value) -> u64 {
    let digits: String = text
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn the_dashboard_shows_what_was_published_live_and_asks_nothing_of_other_hosts() {
    let Some(browser) = Browser::start("the dashboard test").await else {
        return;
    };
    let app = TestApp::spawn().await;
    let base = app.api.base.clone();

    browser.goto(&format!("{base}/")).await;
    browser
        .wait_for(
            "the page to go live and follow every topic",
            "return document.getElementById('status').dataset.state === 'live'
                 && document.getElementById('tail-status').textContent === 'Following >'",
        )
        .await;

    // Two rounds a few polls apart, so the chart has rates to draw; each
    // with duplicates, the second with a conflict.
    let mut expected = logagg::api::Receipt::default();
    let first: Vec<Value> = (0..12)
        .map(|i| event("orders.created", &format!("o{i}")))
        .chain((0..5).map(|i| event("auth.login", &format!("a{i}"))))
        .chain((0..4).map(|i| event("orders.created", &format!("o{i}"))))
        .collect();
    let receipt = app.api.publish_ok(&Value::Array(first)).await;
    expected.add(&serde_json::from_value(receipt).expect("receipt"));
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let mut conflicting = event("auth.login", "a0");
    conflicting["payload"] = json!({"other": "content"});
    let second: Vec<Value> = (5..9)
        .map(|i| event("auth.login", &format!("a{i}")))
        .chain((0..3).map(|i| event("auth.login", &format!("a{i}"))))
        .chain([conflicting, event("billing.paid", "b0")])
        .collect();
    let receipt = app.api.publish_ok(&Value::Array(second)).await;
    expected.add(&serde_json::from_value(receipt).expect("receipt"));
    assert_eq!(
        (
            expected.received,
            expected.unique,
            expected.duplicates,
            expected.conflicts
        ),
        (30, 22, 8, 1),
        "the published mix"
    );

    // The totals.
    let totals = browser
        .wait_for(
            "the totals to count every event",
            &format!(
                "const text = (id) => document.getElementById(id).textContent;
                 return text('received').replace(/\\D/g, '') === '{}'
                     && ['received', 'unique', 'duplicates', 'conflicts', 'health', 'queue']
                            .map(text)",
                expected.received
            ),
        )
        .await;
    let shown: Vec<u64> = (0..4).map(|i| digits(&totals[i])).collect();
    assert_eq!(
        shown,
        [
            expected.received,
            expected.unique,
            expected.duplicates,
            expected.conflicts
        ],
        "received, unique, duplicates, conflicts as shown: {totals}"
    );
    assert_eq!(totals[4], "ok", "health");
    assert_eq!(digits(&totals[5]), 0, "queue depth");

    // The topic table: every topic, its count and newest seq, as /topics says.
    let (_, topics) = app.api.get("/topics").await;
    let want: Vec<Value> = topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| {
            json!([
                t["topic"],
                t["events"].to_string(),
                t["last_seq"].to_string()
            ])
        })
        .collect();
    let table = "return [...document.querySelectorAll('#topic-table tbody tr')]
                     .map((row) => [...row.cells].map((cell) => cell.textContent.replace(/,/g, '')))";
    let rows = browser
        .wait_for(
            "the topic table to list every topic",
            &format!("const rows = (() => {{ {table} }})(); return rows.length === 3 && rows"),
        )
        .await;
    assert_eq!(rows, Value::Array(want), "topic rows, sorted by name");

    // Sorted by events (most first) with a button, then filtered.
    browser.click("#topic-table th:nth-child(2) button").await;
    let by_events = browser.js(table, vec![]).await;
    let names: Vec<&str> = by_events
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row[0].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["orders.created", "auth.login", "billing.paid"]);
    let sorted = browser
        .js(
            "return document.querySelector('#topic-table th:nth-child(2)').getAttribute('aria-sort')",
            vec![],
        )
        .await;
    assert_eq!(sorted, "descending");
    browser.fill("#topic-filter", "auth").await;
    let filtered = browser.js(table, vec![]).await;
    assert_eq!(filtered.as_array().map(Vec::len), Some(1), "{filtered}");
    assert_eq!(filtered[0][0], "auth.login");

    // The chart: rates from successive polls, the first round among them.
    let chart = browser
        .wait_for(
            "the chart to draw the ingest rate",
            "const points = document.getElementById('ingest-line').getAttribute('points')
                 .trim().split(' ').filter(Boolean).map((p) => p.split(',').map(Number));
             return points.length >= 3 && points.some(([, y]) => y < 159) && points",
        )
        .await;
    let points = chart.as_array().expect("points");
    assert!(
        points
            .iter()
            .all(|p| p[0].as_f64().is_some_and(|x| (0.0..=600.0).contains(&x))),
        "points inside the chart: {chart}"
    );

    // The tail: each stored event once, newest first, none of the duplicates.
    let tail = browser
        .wait_for(
            "the tail to show every stored event",
            &format!(
                "const rows = [...document.querySelectorAll('#tail-list summary')].map((s) =>
                     [s.querySelector('.seq').textContent, s.querySelector('.topic').textContent,
                      s.querySelector('.id').textContent]);
                 return rows.length === {} && rows",
                expected.unique
            ),
        )
        .await;
    let stored = app.api.all_events(None).await;
    let want: Vec<Value> = stored
        .iter()
        .rev()
        .map(|e| json!([format!("#{}", e["seq"]), e["topic"], e["event_id"]]))
        .collect();
    assert_eq!(tail, Value::Array(want), "the tail, newest first");

    // An event opens to its full JSON, from the keyboard.
    browser
        .press_enter_in("#tail-list li:last-child summary")
        .await;
    let shown = browser
        .wait_for(
            "the oldest event to open",
            "const pre = document.querySelector('#tail-list li:last-child details[open] pre');
             return pre && pre.textContent",
        )
        .await;
    let shown: Value = serde_json::from_str(shown.as_str().expect("text")).expect("JSON");
    assert_eq!(shown, stored[0], "the full stored event");

    // Paused, the tail holds still and counts what arrives; resumed, it
    // shows it.
    browser.click("#tail-pause").await;
    app.api.publish_ok(&event("billing.paid", "b1")).await;
    let label = browser
        .wait_for(
            "the paused tail to count a new event",
            "const label = document.getElementById('tail-pause').textContent;
             return label.includes('1 new') && label",
        )
        .await;
    assert_eq!(label, "Resume (1 new)");
    let rows = browser
        .js(
            "return document.querySelectorAll('#tail-list li').length",
            vec![],
        )
        .await;
    assert_eq!(rows, expected.unique, "nothing drawn while paused");
    browser.click("#tail-pause").await;
    browser
        .wait_for(
            "the resumed tail to show the new event",
            "return document.querySelector('#tail-list li:first-child .id').textContent === 'b1'",
        )
        .await;

    // The tail keeps a fixed window: the newest 200 events.
    app.api
        .publish_ok(&padded_batch("bulk", "k", 250, 16))
        .await;
    let window = browser
        .wait_for(
            "the tail to show the newest bulk event",
            "const rows = document.querySelectorAll('#tail-list li');
             return rows[0].querySelector('.id').textContent === 'k-249' && rows.length",
        )
        .await;
    assert_eq!(window, 200, "rows kept in the tail");

    // The lookup finds a stored event and says plainly when one is not.
    let found = browser.lookup("auth.login", "a3", "found").await;
    let a3 = stored
        .iter()
        .find(|e| e["event_id"] == "a3")
        .expect("a3 stored");
    assert!(found.contains(&format!("seq {}", a3["seq"])), "{found}");
    let missing = browser.lookup("auth.login", "never-sent", "missing").await;
    assert!(
        missing.starts_with("Not found: no event \"never-sent\" in topic \"auth.login\""),
        "{missing}"
    );

    // Desktop and phone widths: nothing overflows sideways.
    browser.fill("#topic-filter", "").await;
    let all = browser
        .wait_for(
            "the table to list the bulk topic too",
            &format!("const rows = (() => {{ {table} }})(); return rows.length === 4 && rows"),
        )
        .await;
    assert_eq!(all.as_array().map(Vec::len), Some(4), "{all}");
    browser.emulate_color_scheme("light").await;
    for (name, width, height) in [
        ("dashboard-desktop", 1280, 900),
        ("dashboard-phone", 390, 844),
    ] {
        browser.viewport(width, height).await;
        browser.js("window.scrollTo(0, 0)", vec![]).await;
        let overflow = browser
            .js(
                "return document.documentElement.scrollWidth - innerWidth",
                vec![],
            )
            .await;
        assert!(
            overflow.as_i64() <= Some(0),
            "{name}: {overflow} px too wide"
        );
        browser.screenshot(name).await;
    }

    // The dark scheme is honoured.
    let background = "return getComputedStyle(document.body).backgroundColor";
    let light = browser.js(background, vec![]).await;
    browser.emulate_color_scheme("dark").await;
    let dark = browser.js(background, vec![]).await;
    assert_ne!(light, dark, "the background follows prefers-color-scheme");
    browser.viewport(1280, 900).await;
    browser.screenshot("dashboard-desktop-dark").await;

    // Another pattern starts a fresh tail that shows only its topics.
    browser.fill("#tail-pattern", "billing.*").await;
    browser.press_enter_in("#tail-pattern").await;
    browser
        .wait_for(
            "the tail to follow billing.*",
            "return document.getElementById('tail-status').textContent === 'Following billing.*'
                 && document.querySelectorAll('#tail-list li').length === 0",
        )
        .await;
    app.api
        .publish_ok(&json!([
            event("auth.login", "a9"),
            event("billing.paid", "b2")
        ]))
        .await;
    let followed = browser
        .wait_for(
            "the billing event in the tail",
            "const rows = [...document.querySelectorAll('#tail-list .id')].map((id) => id.textContent);
             return rows.length > 0 && rows",
        )
        .await;
    assert_eq!(followed, json!(["b2"]), "only the pattern's events");

    // Every request the page made went to the server; no script error.
    let requests: Vec<String> = browser
        .log("performance")
        .await
        .iter()
        .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
        .filter(|message| message["message"]["method"] == "Network.requestWillBeSent")
        .filter_map(|message| {
            Some(
                message["message"]["params"]["request"]["url"]
                    .as_str()?
                    .to_owned(),
            )
        })
        .collect();
    assert!(
        requests
            .iter()
            .any(|url| url.starts_with(&format!("{base}/stats"))),
        "the request log works: {requests:?}"
    );
    let elsewhere: Vec<&String> = requests
        .iter()
        .filter(|url| !url.starts_with(&format!("{base}/")) && !url.starts_with("data:"))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests outside the server: {elsewhere:?}"
    );
    let errors: Vec<Value> = browser
        .log("browser")
        .await
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        // The lookup of a missing event is a 404, which Chromium reports.
        .filter(|entry| {
            !entry["message"]
                .as_str()
                .is_some_and(|m| m.contains("/events/auth.login/never-sent") && m.contains("404"))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "errors in the browser console: {errors:?}"
    );

    browser.close().await;
}

#[tokio::test]
async fn the_page_is_small_self_contained_and_cached() {
    let app = TestApp::spawn().await;
    let response = app.api.get_raw("/").await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let policy = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "connect-src 'self'",
        "script-src 'sha256-",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    let etag = header("etag");
    let page = response.text().await.expect("the page");
    assert!(page.len() < 64 * 1024, "the page is {} bytes", page.len());
    // No absolute URL the browser would fetch: the only one names the SVG
    // namespace inside the data-URL favicon.
    for (at, _) in page.match_indices("://") {
        let before = &page[at.saturating_sub(20)..at];
        assert!(
            before.ends_with("xmlns='http"),
            "an absolute URL near {before:?}"
        );
    }
    let get_with = |name: &'static str, value: String| {
        app.api
            .http
            .get(app.api.url("/"))
            .header(name, value)
            .send()
    };
    let again = get_with("if-none-match", etag).await.expect("GET /");
    assert_eq!(again.status(), 304, "the same page is not sent twice");

    let gzipped = get_with("accept-encoding", "gzip".to_owned())
        .await
        .expect("GET /");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let body = gzipped.bytes().await.expect("the gzipped page");
    assert!(body.len() < page.len() / 2, "gzip: {} bytes", body.len());
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut unzipped)
        .expect("valid gzip");
    assert_eq!(unzipped, page);
}

#[tokio::test]
async fn the_dashboard_asks_for_a_token_and_shows_the_data_once_it_has_one() {
    const PUBLISHER: &str = "publisher-5c0e2b7a9d1f3846";
    const READER: &str = "reader-8a4f6c2e0b9d1735";
    let Some(browser) = Browser::start("the dashboard test with authentication").await else {
        return;
    };
    let app = TestApp::spawn_with(|config| {
        let path = config.data_dir.join("tokens");
        std::fs::write(&path, format!("{PUBLISHER} publish\n{READER} read\n"))
            .expect("writing the tokens file");
        config.auth_tokens = Some(path);
    })
    .await;
    let publish = |id: &'static str| {
        app.api
            .http
            .post(app.api.url("/publish"))
            .bearer_auth(PUBLISHER)
            .json(&event("secure.audit", id))
            .send()
    };
    assert_eq!(publish("s0").await.expect("publish").status(), 200);
    let dialog = |says: &str| {
        format!(
            "const dialog = document.getElementById('token-dialog');
             return dialog.open
                 && document.getElementById('status').dataset.state === 'token'
                 && document.getElementById('token-reason').textContent.includes('{says}')"
        )
    };

    browser.goto(&format!("{}/", app.api.base)).await;
    browser
        .wait_for("the page to ask for a token", &dialog("read scope"))
        .await;
    // A token that may only publish is refused for what it lacks.
    browser.fill("#token-input", PUBLISHER).await;
    browser.press_enter_in("#token-input").await;
    browser
        .wait_for(
            "the page to say the token cannot read",
            &dialog("That token cannot read: the bearer token lacks the read scope"),
        )
        .await;
    browser.fill("#token-input", READER).await;
    browser.press_enter_in("#token-input").await;
    browser
        .wait_for(
            "the page to go live with the token and count the event",
            "return document.getElementById('status').dataset.state === 'live'
                 && !document.getElementById('token-dialog').open
                 && document.getElementById('received').textContent === '1'
                 && document.getElementById('tail-status').textContent === 'Following >'",
        )
        .await;
    // The live tail (fetch() with the header) follows new events too.
    assert_eq!(publish("s1").await.expect("publish").status(), 200);
    browser
        .wait_for(
            "the tail to show the new event",
            "return [...document.querySelectorAll('#tail-list .id')]
                 .some((id) => id.textContent === 's1')",
        )
        .await;
    let kept = browser
        .js("return sessionStorage.getItem('logagg.token')", vec![])
        .await;
    assert_eq!(kept, READER, "the token is kept for this tab");
    assert_eq!(
        browser
            .find("#token-button")
            .await
            .text()
            .await
            .expect("text"),
        "Forget token"
    );
    browser.close().await;
}
