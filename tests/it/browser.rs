//! The web page in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, started here as a child process, and the `fantoccini`
//! client) against a real `tripwire serve` on the example project with
//! imported events, completed runs and a dead webhook delivery. It logs in
//! (a wrong key first), sees the example triggers, previews one, runs its
//! tests and a diff, runs a query with Ctrl+Enter, redelivers the dead
//! delivery with its button, logs out, and saves a screenshot of each page
//! at desktop and phone sizes under `target/screenshots/`.
//!
//! Without `chromium` and `chromedriver` the test says how to install them
//! and passes, unless `CI` is set: then it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::keys::write;
use crate::project::{ADMIN, Project, SECRET};
use crate::receiver::Receiver;
use crate::server::{PATIENCE, Request, Server};
use crate::web::example_serving_project;

/// The install command the skip message and the CI failure name.
const INSTALL: &str = "apt-get install chromium chromium-driver";

/// The sizes every page is photographed at: a laptop and a phone.
const SIZES: [(&str, u32, u32); 2] = [("desktop", 1280, 900), ("phone", 390, 844)];

/// How many parts the sample is imported in, each followed by a run, so
/// the runs chart has several points.
const IMPORTS: usize = 3;

/// The clock the sample was recorded at (README).
const SAMPLE_NOW: &str = "2026-11-05T00:00:00Z";

/// `name` on `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// chromedriver and a Chromium (or Chrome) binary, if installed.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let driver = on_path("chromedriver")?;
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| on_path(name))?;
    Some((driver, browser))
}

/// A chromedriver child process (killed when dropped) and a headless
/// browser session on it, with the runtime the session lives on.
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
}

impl Browser {
    fn start(driver: &Path, browser: &Path) -> Browser {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let (mut child, url) = start_driver(&runtime, driver);
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--force-device-scale-factor=1", "--window-size=1280,900",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let client = runtime.block_on(async {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
        });
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                let _ = child.kill();
                panic!("no browser session from chromedriver at {url}: {e}");
            }
        };
        Browser {
            runtime,
            client: Some(client),
            driver: child,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element matching `css`, waited for (up to [`PATIENCE`]): a
    /// navigation can return before the new page is there (seen with
    /// Chromium 156.0.8078.114, which answered a `find` with the login page
    /// still loading).
    fn find(&self, css: &str) -> Element {
        let waiting = self.client().wait().at_most(PATIENCE);
        self.runtime
            .block_on(waiting.for_element(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("find {css}: {e}\n{}", self.source()))
    }

    fn find_all(&self, css: &str) -> Vec<Element> {
        self.runtime
            .block_on(self.client().find_all(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("find all {css}: {e}"))
    }

    fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.runtime
            .block_on(element.text())
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.runtime
            .block_on(async {
                element.clear().await?;
                element.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.runtime
            .block_on(element.click())
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Waits (up to [`PATIENCE`]) for an element matching `css` whose text
    /// passes `done`; returns that text.
    fn wait_for_text(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let texts: Vec<String> = self
                .find_all(css)
                .iter()
                .filter_map(|e| self.runtime.block_on(e.text()).ok())
                .collect();
            if let Some(text) = texts.iter().find(|t| done(t)) {
                return text.clone();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "waited for {css}; the page has {texts:?}\n{}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn source(&self) -> String {
        self.runtime
            .block_on(self.client().source())
            .unwrap_or_default()
    }

    fn path(&self) -> String {
        self.runtime
            .block_on(self.client().current_url())
            .map(|u| u.path().to_string())
            .unwrap_or_default()
    }

    /// Saves the page as `target/screenshots/{name}-{size}.png` at each of
    /// [`SIZES`] (scrolled to `focus`, if given), then returns to the
    /// desktop size.
    fn screenshots(&self, name: &str, focus: Option<&str>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        for (size, width, height) in SIZES {
            self.set_viewport(width, height);
            if let Some(css) = focus {
                let scroll = "document.querySelector(arguments[0]).scrollIntoView();";
                self.runtime
                    .block_on(self.client().execute(scroll, vec![json!(css)]))
                    .unwrap_or_else(|e| panic!("scroll to {css}: {e}"));
            }
            let png = self.runtime.block_on(self.client().screenshot());
            let png = png.unwrap_or_else(|e| panic!("screenshot {name} at {size}: {e}"));
            assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
            std::fs::write(dir.join(format!("{name}-{size}.png")), png).expect("write png");
        }
        let (_, width, height) = SIZES[0];
        self.set_viewport(width, height);
    }

    /// Sizes the window so the page itself (the viewport) is
    /// `width` x `height`, whatever the window's frame takes.
    fn set_viewport(&self, width: u32, height: u32) {
        let client = self.client();
        let sized = self.runtime.block_on(async {
            client.set_window_size(width, height).await?;
            let inner = client
                .execute(
                    "return [window.innerWidth, window.innerHeight];",
                    Vec::new(),
                )
                .await?;
            let side = |i: usize, want: u32| {
                let got = inner[i].as_u64().unwrap_or(u64::from(want)) as u32;
                (2 * want).saturating_sub(got)
            };
            client
                .set_window_size(side(0, width), side(1, height))
                .await
        });
        sized.unwrap_or_else(|e| panic!("size the window to {width}x{height}: {e}"));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Starts chromedriver on a free loopback port; the child and its URL
/// once it answers `/status` as ready. A port taken between choosing and
/// binding it is retried with another.
fn start_driver(runtime: &tokio::runtime::Runtime, driver: &Path) -> (Child, String) {
    let started = Instant::now();
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
        let url = format!("http://127.0.0.1:{port}");
        loop {
            if driver_ready(runtime, &url) {
                return (child, url);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver never answered at {url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(started.elapsed() < PATIENCE, "chromedriver keeps exiting");
        let _ = child.kill();
    }
}

/// Whether chromedriver at `url` says it is ready for a session.
fn driver_ready(runtime: &tokio::runtime::Runtime, url: &str) -> bool {
    runtime.block_on(async {
        let Ok(response) = reqwest::get(format!("{url}/status")).await else {
            return false;
        };
        let status: Value = response.json().await.unwrap_or(Value::Null);
        status["value"]["ready"] == true
    })
}

/// The example project, its sample imported in [`IMPORTS`] parts with a
/// run after each, plus a trigger whose webhook flow posts to `hook`.
fn project_with_runs(hook: &str) -> Project {
    let project = example_serving_project();
    // The example's `*/10 * * * *` would let `serve` add a run of its own
    // when the test spans a ten-minute mark; the page must show the runs
    // of the imports alone, so the copy runs on a day that is years away.
    let cart = project.path("queries/triggers/cart_abandoned.sql");
    let sql = std::fs::read_to_string(&cart).expect("the example trigger");
    assert!(sql.contains("-- schedule: */10 * * * *"), "{sql}");
    let sql = sql.replace("-- schedule: */10 * * * *", "-- schedule: 0 0 29 2 *");
    std::fs::write(&cart, sql).expect("rewrite the example trigger");
    write(
        &project,
        "queries/triggers/web_hook.sql",
        "-- description: Each `web_test` event calls the test receiver.\n\
         -- schedule: every 1s\n-- backfill: all\n-- requires_identity: false\n\
         SELECT event_id, client_id, json_get_str(properties, 'note') AS note\n\
         FROM new_events WHERE event_name = 'web_test'\n",
    );
    write(
        &project,
        "flows/hook.toml",
        &format!(
            "trigger = \"web_hook\"\n[[branch]]\nactions = [\"hook\"]\n\
             [actions.hook]\ntype = \"webhook\"\nurl = \"{hook}\"\n"
        ),
    );
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/events.ndjson");
    let lines: Vec<String> = std::fs::read_to_string(sample)
        .expect("the sample")
        .lines()
        .map(str::to_string)
        .collect();
    let part = lines.len().div_ceil(IMPORTS);
    for (i, chunk) in lines.chunks(part).enumerate() {
        let file = project.path(&format!("part-{i}.ndjson"));
        std::fs::write(&file, chunk.join("\n") + "\n").expect("write a part");
        project.import(&[&file]);
        project.ok(&["run", "--now", SAMPLE_NOW]);
    }
    project
}

/// Polls `GET /v1/deliveries?{query}` until a row comes back.
fn wait_for_delivery(server: &Server, query: &str) -> Value {
    let started = Instant::now();
    loop {
        let rows = server.get(&format!("/v1/deliveries?{query}"))["deliveries"].clone();
        if let Some(row) = rows.as_array().and_then(|r| r.first()) {
            return row.clone();
        }
        assert!(started.elapsed() < PATIENCE, "no delivery for {query}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_analyst_logs_in_previews_queries_and_redelivers_in_a_real_browser() {
    let Some((driver, chromium)) = browser_tools() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have a browser for the web page's tests: {INSTALL}"
        );
        eprintln!("skipped: {INSTALL}");
        return;
    };
    let receiver = Receiver::plain();
    receiver.fail_next(400, 1);
    let project = project_with_runs(&receiver.url("127.0.0.1"));
    let server = Server::start(&project);
    let event = json!({"event": "web_test", "anonymousId": "c-web",
                       "properties": {"note": "from the browser test"}});
    let (status, _) = server.send(Request::post("/v1/track", event.to_string()).bearer(SECRET));
    assert_eq!(status, 200);
    // A 400 is dead at once: the button brings it back.
    let dead = wait_for_delivery(&server, "status=dead&trigger=web_hook");
    let dead_id = dead["delivery_id"].as_str().expect("an id").to_string();

    let browser = Browser::start(&driver, &chromium);
    let base = &server.base;

    // Log in: a wrong key is refused, the admin key opens the triggers.
    browser.goto(&format!("{base}/"));
    browser.find("#key");
    browser.screenshots("login", None);
    browser.type_into("#key", "not-the-admin-key");
    browser.click("#login");
    let error = browser.wait_for_text("#error", |t| !t.is_empty());
    assert!(error.contains("key"), "{error}");
    assert!(!browser.source().contains("cart_abandoned"));
    browser.type_into("#key", ADMIN);
    browser.click("#login");
    browser.wait_for_text("h1", |t| t == "Triggers");
    assert_eq!(browser.text("#workspace"), "shop");
    let table = browser.text("#triggers");
    for trigger in [
        "cart_abandoned",
        "deposit_started",
        "sku_reorder",
        "vip_cart_abandoned",
        "web_hook",
    ] {
        assert!(table.contains(trigger), "{trigger} in {table}");
    }
    assert!(
        table.contains("up to date") || table.contains("version"),
        "{table}"
    );
    browser.screenshots("triggers", None);

    // One trigger: its runs and chart, then a preview with why / why-not.
    browser.click("a.trigger-link[href$='/cart_abandoned']");
    browser.wait_for_text("#trigger-name", |t| t == "cart_abandoned");
    assert_eq!(
        browser.find_all("svg.chart polyline").len(),
        2,
        "two series"
    );
    let runs = browser.find_all("#runs tbody tr");
    assert_eq!(runs.len(), IMPORTS, "a run per import");
    browser.screenshots("trigger", None);
    browser.screenshots("trigger-chart", Some("svg.chart"));
    browser.click("#preview-all");
    browser.type_into("#preview-now", SAMPLE_NOW);
    browser.click("#preview");
    let summary = browser.wait_for_text("#preview-summary", |t| t.contains("match"));
    assert!(summary.contains("nothing committed"), "{summary}");
    let why = browser.text("#why");
    // The runs sent already, so caps filter; the sample's unidentified
    // rows wait for their identity.
    for verdict in [
        "filtered in excluded segment \"already_bought\"",
        "filtered frequency cap",
        "waiting waits for an identity",
    ] {
        assert!(why.contains(verdict), "{verdict} in {why}");
    }
    assert!(why.contains("resolved to an email"), "{why}");
    browser.screenshots("trigger-preview", Some("#preview-result"));
    browser.click("#test");
    let tests = browser.wait_for_text("#test-result", |t| t.contains("passed"));
    assert!(tests.contains("ok") && !tests.contains("FAIL"), "{tests}");
    browser.screenshots("trigger-tests", Some("#test-result"));
    browser.type_into("#diff-since", "30d");
    browser.click("#diff");
    let diff = browser.wait_for_text("#diff-result", |t| t.contains("unchanged"));
    // The same counts as `tripwire diff` (a run serve adds meanwhile
    // reads only the web_test event, which changes none of them).
    let cli = project.ok(&["diff", "cart_abandoned", "--since", "30d"]);
    let counts = cli
        .lines()
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .expect("the counts line");
    for count in counts.split(", ") {
        assert!(diff.contains(count), "{count} (from {cli}) in {diff}");
    }
    browser.screenshots("trigger-diff", Some("#diff-result"));

    // Query: the learned fields beside the editor, Ctrl+Enter runs it.
    browser.click("nav a[href='/query']");
    browser.wait_for_text("h1", |t| t == "Query");
    let schema = browser.text("#schema");
    assert!(
        schema.contains("events") && schema.contains("deliveries"),
        "{schema}"
    );
    assert!(schema.contains("web_test"), "learned from serve: {schema}");
    browser.type_into(
        "#sql",
        "SELECT event_name, count(*) AS n FROM events WHERE event_name = 'cart_abandoned' GROUP BY event_name",
    );
    browser.find("#sql");
    let control_enter = "\u{E009}\u{E007}\u{E000}";
    let editor = browser.find("#sql");
    browser
        .runtime
        .block_on(editor.send_keys(control_enter))
        .expect("Ctrl+Enter");
    let result = browser.wait_for_text("#result", |t| t.contains("cart_abandoned"));
    let expected =
        project.number("SELECT count(*) FROM events WHERE event_name = 'cart_abandoned'");
    assert!(
        result.contains(&format!("{expected}")),
        "{expected} in {result}"
    );
    browser.screenshots("query", None);

    // Deliveries: the dead webhook, redelivered with its button.
    browser.click("nav a[href='/deliveries']");
    browser.wait_for_text("h1", |t| t == "Deliveries");
    browser.find("#filter-status");
    browser.goto(&format!("{base}/deliveries?status=dead&trigger=web_hook"));
    let row = browser.wait_for_text("#deliveries tbody tr", |t| t.contains(&dead_id));
    assert!(row.contains("dead") && row.contains("400"), "{row}");
    browser.screenshots("deliveries", None);
    browser.click("#deliveries button.redeliver");
    let notice = browser.wait_for_text("#notice", |t| t.contains("reset to pending"));
    assert!(notice.starts_with("1 "), "{notice}");
    let started = Instant::now();
    loop {
        browser.goto(&format!("{base}/deliveries?trigger=web_hook"));
        let status = browser.runtime.block_on(async {
            let row = browser.client().find(Locator::Css("tr.delivery")).await?;
            row.attr("data-status").await
        });
        if status.ok().flatten().as_deref() == Some("delivered") {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never delivered: {}",
            browser.source()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let requests = receiver.wait_for(2);
    assert_eq!(
        requests[1].header("idempotency-key"),
        Some(dead_id.as_str())
    );
    browser.screenshots("deliveries-redelivered", None);

    // Logout: back to the form, and the page is closed again.
    browser.click("#logout");
    browser.find("#key");
    assert_eq!(browser.path(), "/login");
    browser.goto(&format!("{base}/deliveries"));
    browser.find("#key");
    assert!(!browser.source().contains(&dead_id));
}
