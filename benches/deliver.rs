//! `cargo bench --bench deliver`: matches → flow → webhooks, end to end,
//! with the release `tripwire` binary and a loopback receiver in this
//! process (it answers 200 at once and counts requests per path).
//!
//! Setup, not timed: a temp project (`tripwire.toml` with storage and one
//! workspace `shop` with a `signing_secret`) gets 100k `cart` events, one
//! per contact (`{"name":"cart","payload":{"v":N},"email":"pN@x.com",…}`,
//! N = 0, 1, …), imported with `tripwire import`; the trigger
//! `queries/triggers/carts.sql` selects `email` and `v` from `new_events`;
//! the SQL segment `blocked` holds the carts with `v < 1000` (1% at the
//! default size); `flows/bench.toml` excludes `blocked`, holds out 10% and
//! splits the rest into variants `a`/`b`, and routes `v > 50000` to webhook
//! `big` (`/big`) and everything else to webhook `small` (`/small`).
//!
//! Timed: one `tripwire run --now 2026-11-02T01:00:00Z` process, from spawn
//! to exit: it runs the trigger, plans the flow (set-based), commits the run
//! and its planned deliveries with the cursor in one ledger commit, then
//! delivers everything due, recording every attempt in the `attempts`
//! table, and exits. Printed: matches, the `deliveries` view's counts per
//! status, the receiver's requests (which must equal `delivered`), and
//! deliveries/s = delivered ÷ the whole process's seconds. The process's
//! time is split with the clocks it records: spawn → `runs.started_at`
//! (start-up, loading flows), → `runs.finished_at` (trigger SQL,
//! resolution, segments, experiment, branches), → the first
//! `attempts.attempted_at` (the ledger commit; each attempt is stamped as
//! it begins), → exit (claiming, delivering and recording the attempts).
//!
//! Then, as a second line, the worker alone: the same number of webhook
//! deliveries planned directly through the library in a fresh store (ten
//! ledger commits), delivered by the library's `deliver_due` in this
//! process to the same receiver.
//!
//! The receiver shares the machine's cores with `tripwire run`; loopback
//! traffic is exactly one request per planned delivery (a delivery that
//! fails is retried by a later run, not by this one).
//!
//! Environment:
//! - `TRIPWIRE_BENCH_MATCHES` (default 100000): cart events, one contact
//!   each, so the trigger's matches.
//! - `TRIPWIRE_BENCH_WORKER=0` skips the worker-only line.
//! - `TRIPWIRE_BENCH_WRAP`: a command the timed `tripwire run` is started
//!   under, e.g. `perf record -F 999 -g -o /tmp/deliver.perf --` (then the
//!   figures include its overhead).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::Utc;
use serde_json::{Value, json};
use tripwire::config::Config;
use tripwire::deliver::{DeliveryLimits, SIGNATURE_HEADER, deliver_due};
use tripwire::session::{SessionSpec, workspace_session};
use tripwire::sql::run_read_only;
use tripwire::store::commit::{Always, commit};
use tripwire::store::ledger::{DeliveryRecord, RunRecord, RunRows, run_batch};
use tripwire::store::{Store, TableKind};

/// The project's configuration.
const CONFIG: &str =
    "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\nsigning_secret = \"whsec_bench\"\n";

/// The trigger: one match per contact, `v` in its data.
const TRIGGER: &str = "-- backfill: all\n-- requires_identity: true\n\
    SELECT email, json_get_float(properties, 'v') AS v FROM new_events WHERE event_name = 'cart'\n";

/// The excluded segment: carts below 1000 (1% of the default 100k).
const SEGMENT: &str = "SELECT email FROM events WHERE event_name = 'cart' AND json_get_float(properties, 'v') < 1000\n";

/// The run's clock: an hour after the carts.
const NOW: &str = "2026-11-02T01:00:00Z";

/// Worker-only: planned deliveries are committed in this many trigger runs.
const RUNS: usize = 10;

#[tokio::main]
async fn main() {
    let matches: usize = std::env::var("TRIPWIRE_BENCH_MATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let receiver = Receiver::start().await;
    end_to_end(&receiver, matches).await;
    if std::env::var("TRIPWIRE_BENCH_WORKER").as_deref() != Ok("0") {
        worker_only(&receiver, matches).await;
    }
}

/// Requests the receiver answered, per path, and how many were signed.
#[derive(Default)]
struct Counts {
    big: AtomicU64,
    small: AtomicU64,
    other: AtomicU64,
    signed: AtomicU64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.big.load(Ordering::Relaxed)
            + self.small.load(Ordering::Relaxed)
            + self.other.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        for c in [&self.big, &self.small, &self.other, &self.signed] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A loopback receiver that counts requests and answers 200 at once.
struct Receiver {
    base: String,
    counts: Arc<Counts>,
}

impl Receiver {
    async fn start() -> Receiver {
        async fn answer(
            State(counts): State<Arc<Counts>>,
            UrlPath(path): UrlPath<String>,
            headers: HeaderMap,
            _body: String,
        ) -> &'static str {
            let counter = match path.as_str() {
                "big" => &counts.big,
                "small" => &counts.small,
                _ => &counts.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if headers.contains_key(SIGNATURE_HEADER) {
                counts.signed.fetch_add(1, Ordering::Relaxed);
            }
            "ok"
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let counts = Arc::new(Counts::default());
        let app = axum::Router::new()
            .route("/{path}", post(answer))
            .with_state(counts.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            base: format!("http://{addr}"),
            counts,
        }
    }
}

/// The flow: segment filter, experiment, two branches to two webhooks.
fn flow(base: &str) -> String {
    format!(
        "trigger = \"carts\"\n\
         exclude_segments = [\"blocked\"]\n\
         \n\
         [experiment]\n\
         holdout = 10\n\
         variants = {{ a = 50, b = 50 }}\n\
         \n\
         [[branch]]\n\
         when = \"v > 50000\"\n\
         actions = [\"big\"]\n\
         \n\
         [[branch]]\n\
         actions = [\"small\"]\n\
         \n\
         [actions.big]\n\
         type = \"webhook\"\n\
         url = \"{base}/big\"\n\
         \n\
         [actions.small]\n\
         type = \"webhook\"\n\
         url = \"{base}/small\"\n"
    )
}

/// A temp project driven through the release binary.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(base: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let project = Project { dir };
        project.write("tripwire.toml", CONFIG);
        project.write("queries/triggers/carts.sql", TRIGGER);
        project.write("queries/segments/blocked.sql", SEGMENT);
        project.write("flows/bench.toml", &flow(base));
        project
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write a project file");
    }

    /// `tripwire ARGS --config …`, optionally under `wrap`.
    fn command(&self, args: &[&str], wrap: Option<&str>) -> Command {
        let binary = env!("CARGO_BIN_EXE_tripwire");
        let mut words = wrap.unwrap_or("").split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .args(args)
            .arg("--config")
            .arg(self.path("tripwire.toml"))
            .current_dir(self.dir.path());
        command
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(
            args,
            self.command(args, None).output().expect("run tripwire"),
        )
    }

    /// Runs SQL; the rows as JSON objects.
    fn query(&self, sql: &str) -> Vec<Value> {
        self.ok(&["query", sql, "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON row"))
            .collect()
    }

    fn number(&self, sql: &str) -> i64 {
        let rows = self.query(sql);
        let row = rows[0].as_object().expect("a row");
        row.values().next().and_then(Value::as_i64).unwrap_or(0)
    }
}

fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "tripwire {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn write_carts(path: &Path, matches: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create events"));
    for n in 0..matches {
        writeln!(
            out,
            "{{\"name\":\"cart\",\"payload\":{{\"v\":{n}}},\"email\":\"p{n}@x.com\",\
             \"timestamp\":\"2026-11-02T00:00:00Z\"}}"
        )
        .expect("write events");
    }
    out.flush().expect("flush events");
}

fn epoch_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// Import (untimed), then one timed `tripwire run`, then its counts.
async fn end_to_end(receiver: &Receiver, matches: usize) {
    let project = Project::new(&receiver.base);
    let events = project.path("carts.ndjson");
    write_carts(&events, matches);
    let started = Instant::now();
    let imported = project.ok(&["import", &events.display().to_string()]);
    println!(
        "setup: {} ({:.1}s, not timed)",
        imported.trim(),
        started.elapsed().as_secs_f64()
    );
    project.ok(&["check"]);

    receiver.counts.reset();
    let wrap = std::env::var("TRIPWIRE_BENCH_WRAP").ok();
    let args = ["run", "--now", NOW];
    let mut command = project.command(&args, wrap.as_deref());
    let spawned_at = epoch_micros();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run tripwire run");
    let seconds = started.elapsed().as_secs_f64();
    let exited_at = epoch_micros();
    let stdout = succeeded(&args, out);
    for line in stdout.lines() {
        println!("  tripwire run: {line}");
    }

    let statuses: Vec<(String, i64)> = project
        .query("SELECT status, count(*) AS n FROM deliveries GROUP BY 1 ORDER BY 1")
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap_or("").to_string(),
                r["n"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let count = |status: &str| {
        statuses
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n)
    };
    let matched = project.number("SELECT count(*) FROM matches");
    let pending_planned = project
        .number("SELECT count(*) FROM deliveries WHERE status NOT IN ('held_out', 'filtered')");
    let delivered = count("delivered");
    let counts = &receiver.counts;
    let received = counts.total() as i64;
    assert_eq!(received, delivered, "one request per delivered delivery");
    assert_eq!(
        counts.signed.load(Ordering::Relaxed) as i64,
        received,
        "every request signed"
    );
    let per_action = project.query(
        "SELECT action, count(*) AS n FROM deliveries WHERE status = 'delivered' GROUP BY 1",
    );
    let recorded = |action: &str| {
        per_action
            .iter()
            .find(|r| r["action"] == action)
            .and_then(|r| r["n"].as_i64())
            .unwrap_or(0)
    };
    assert_eq!(recorded("big"), counts.big.load(Ordering::Relaxed) as i64);
    assert_eq!(
        recorded("small"),
        counts.small.load(Ordering::Relaxed) as i64
    );

    let clocks = project.query(
        "SELECT CAST(min(started_at) AS BIGINT) AS started, \
                CAST(max(finished_at) AS BIGINT) AS finished FROM runs",
    );
    let run_started = clocks[0]["started"].as_i64().expect("runs.started_at");
    let run_finished = clocks[0]["finished"].as_i64().expect("runs.finished_at");
    let deliver_started = project.number("SELECT CAST(min(attempted_at) AS BIGINT) FROM attempts");
    let span = |from: i64, to: i64| (to - from) as f64 / 1e6;

    println!(
        "end to end: {matched} matches → {pending_planned} pending planned, {} held_out, \
         {} filtered (segment); receiver got {received} requests ({} /big, {} /small), \
         deliveries: {}",
        count("held_out"),
        count("filtered"),
        counts.big.load(Ordering::Relaxed),
        counts.small.load(Ordering::Relaxed),
        statuses
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "end to end: delivered {delivered} in {seconds:.2}s = {:.0} deliveries/s \
         (tripwire run, spawn to exit{})",
        delivered as f64 / seconds,
        if wrap.is_some() { ", wrapped" } else { "" }
    );
    println!(
        "  split: start-up {:.2}s, run + plan {:.2}s, commit {:.2}s, deliver {:.2}s \
         (= {:.0} deliveries/s for the worker in that process)",
        span(spawned_at, run_started),
        span(run_started, run_finished),
        span(run_finished, deliver_started),
        span(deliver_started, exited_at),
        delivered as f64 / span(deliver_started, exited_at)
    );
}

/// Plans `deliveries` webhooks through the library and times `deliver_due`.
async fn worker_only(receiver: &Receiver, deliveries: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(CONFIG, "bench", dir.path()).expect("config");
    let store = Store::new(config.storage.clone());
    let url = format!("{}/small", receiver.base);
    plan(&store, &url, deliveries).await;
    receiver.counts.reset();

    let limits = DeliveryLimits::default();
    let started = Instant::now();
    let summary = deliver_due(&store, &config, "shop", Utc::now(), &limits)
        .await
        .expect("deliver");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.delivered as usize, deliveries, "{summary}");
    assert_eq!(receiver.counts.total() as usize, deliveries);
    let recorded = count_delivered(&store, &config).await;
    assert_eq!(recorded, deliveries, "one delivered attempt per delivery");
    println!(
        "worker only: {deliveries} webhooks in {seconds:.2}s = {:.0} deliveries/s \
         (planned through the library, deliver_due in this process; batch {}, {} in flight)",
        deliveries as f64 / seconds,
        limits.batch,
        limits.concurrency
    );
}

/// Commits `deliveries` planned webhooks in [`RUNS`] ledger commits.
async fn plan(store: &Store, url: &str, deliveries: usize) {
    let mut ledger = store
        .open_or_create("shop", TableKind::Ledger)
        .await
        .expect("ledger");
    let per_run = deliveries.div_ceil(RUNS);
    for run in 0..RUNS {
        let ids = (run * per_run)..((run + 1) * per_run).min(deliveries);
        let planned: Vec<DeliveryRecord> = ids.map(|i| webhook(run, i, url)).collect();
        let at = Utc::now().timestamp_micros();
        let record = RunRecord {
            run_id: format!("run-{run}"),
            trigger: "cart_abandoned".into(),
            from_version: run as i64 - 1,
            to_version: run as i64,
            started_at: at,
            finished_at: at,
            clock: at,
            matched: planned.len() as i64,
            resolved: planned.len() as i64,
            unresolved: 0,
            dropped: 0,
            pending: 0,
            expired: 0,
            held: 0,
            error: None,
        };
        let rows = RunRows {
            deliveries: &planned,
            ..RunRows::default()
        };
        let batches = run_batch(&record, &rows);
        commit(&mut ledger, &mut Always(batches))
            .await
            .expect("commit a run");
    }
}

fn webhook(run: usize, i: usize, url: &str) -> DeliveryRecord {
    let id = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()));
    let email = format!("user{i}@example.com");
    let body = json!({
        "delivery_id": id, "workspace": "shop", "flow": "reengage",
        "trigger": "cart_abandoned", "run_id": format!("run-{run}"), "variant": "a", "branch": 0,
        "contact": {"email": email, "user_id": null, "client_id": null},
        "data": {"cart_value": 120.5},
    });
    DeliveryRecord {
        delivery_id: id,
        flow: "reengage".into(),
        action: "hook".into(),
        ordinal: i as i64,
        contact: format!("email:{email}"),
        variant: Some("a".into()),
        branch: Some(0),
        status: "pending".into(),
        reason: None,
        payload: Some(
            json!({"kind": "webhook", "url": url, "body": body.to_string(), "timeout_ms": 10_000})
                .to_string(),
        ),
    }
}

/// Deliveries the `deliveries` view shows as delivered.
async fn count_delivered(store: &Store, config: &Config) -> usize {
    let spec = SessionSpec {
        store,
        workspace: "shop",
        now: Utc::now(),
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec).await.expect("session");
    let batches = run_read_only(
        &ctx,
        "SELECT count(*) AS n FROM deliveries WHERE status = 'delivered' AND attempts = 1",
    )
    .await
    .expect("count");
    let column = batches[0].column(0);
    let counts = column
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("a count");
    counts.value(0) as usize
}
