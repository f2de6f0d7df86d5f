//! `cargo bench --bench deliver`: what one delivery costs end to end, and
//! whether that stays flat as a run grows and as the store ages, next to
//! DuckDB writing the same lines in the same run.
//!
//! **File deliveries.** The events come from benches/wild_events.py (an
//! independent generator: nested properties, identify calls, anonymous
//! visitors, late events), one store per input shape (`collect`,
//! `segment`, `name_payload`) and size (events, default 40k and 160k),
//! imported with the release binary and cached under
//! target/bench-data/deliver-*. The trigger matches every event of its
//! window, once per event:
//!
//! ```sql
//! -- backfill: all
//! -- requires_identity: false
//! SELECT event_id, client_id, user_id, email, coalesce(event_name, type) AS name,
//!        json_get_float(properties, 'cart_value') AS cart_value
//! FROM new_events
//! ```
//!
//! and the flow `bench` writes one NDJSON line per match (`type = "file"`;
//! `max_deliveries_per_run` raised above the sizes). Timed: one `tripwire
//! run --now …` process, spawn to exit, in a copy of the store (`support/store_copy.rs`):
//! the trigger, contacts, planning, the ledger commit, then claiming,
//! writing and recording every delivery. `TRIPWIRE_BENCH_RUNS` runs
//! (default 3), the median printed: µs per delivery and deliveries/s, the
//! time split by the clocks the run records (spawn → `runs.started_at`:
//! start-up; → `runs.finished_at`: trigger and planning; → the first
//! `attempted_at`: the ledger commit and the worker's start; → the last
//! `attempted_at`: claiming, writing, recording; → exit), and the ratio of
//! the largest size's per-delivery time to the smallest's (goal: ≤ 1.3,
//! and ≥ 20k deliveries/s). Each run is checked: every delivery delivered,
//! one line each.
//!
//! **Aged** (first shape, largest size): the same window in a store whose
//! ledger already holds `TRIPWIRE_BENCH_AGED` (default 500k) delivered
//! deliveries from an earlier run (a history imported, run and delivered,
//! then the window imported; cached): its per-delivery time against the
//! fresh store's (goal: no growth).
//!
//! **DuckDB** (benches/duckdb_deliver.py, skipped when `import duckdb`
//! fails): the same window's rows from the same Parquet files, written as
//! the same NDJSON line fields with `COPY … TO`, in one process per run;
//! its median next to tripwire's, for every size and shape. DuckDB keeps
//! no ledger, attempts or claims: it is the floor for "the lines in a file".
//!
//! **Webhooks** (`TRIPWIRE_BENCH_WEBHOOKS`, default 20000; 0 skips): that
//! many webhooks planned through the library in a fresh store, delivered by
//! the library's `deliver_due` in this process to a loopback receiver
//! (axum, answers 200 at once) that counts requests and TCP connections:
//! deliveries/s and requests per connection (one pooled HTTP client per
//! process, kept alive across batches).
//!
//! Environment: `TRIPWIRE_BENCH_SHAPES` (default
//! `collect,segment,name_payload`), `TRIPWIRE_BENCH_SIZES` (default
//! `40000,160000`), `TRIPWIRE_BENCH_RUNS`, `TRIPWIRE_BENCH_AGED`,
//! `TRIPWIRE_BENCH_WEBHOOKS`, `TRIPWIRE_BENCH_WRAP` (a command the timed
//! `tripwire run` is started under, e.g. `perf record -g -o /tmp/d.perf
//! --`; the figures then include its overhead).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use axum::extract::State;
use axum::routing::post;
use axum::serve::ListenerExt as _;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tripwire::config::Config;
use tripwire::deliver::{DeliveryLimits, deliver_due};
use tripwire::store::commit::{Always, commit};
use tripwire::store::ledger::{DeliveryRecord, RunRecord, RunRows, run_batch};
use tripwire::store::{Store, TableKind};

#[path = "support/store_copy.rs"]
mod store_copy;
use store_copy::copy_store;

const CONFIG: &str =
    "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\nsigning_secret = \"whsec_bench\"\n";

const TRIGGER: &str = "\
-- description: every event of the window, one match each (cargo bench --bench deliver).
-- backfill: all
-- requires_identity: false
SELECT event_id, client_id, user_id, email, coalesce(event_name, type) AS name,
       json_get_float(properties, 'cart_value') AS cart_value
FROM new_events
";

const FLOW: &str = "trigger = \"bench_lines\"\nmax_deliveries_per_run = 10000000\n\n\
    [[branch]]\nactions = [\"line\"]\n\n\
    [actions.line]\ntype = \"file\"\npath = \"deliveries/bench.ndjson\"\n";

/// Where the generated history starts (2026-10-01), one event every 4 s.
const HISTORY_START_MS: i64 = 1_790_812_800_000;
const STEP_MS: i64 = 4_000;

/// What to measure, from the `TRIPWIRE_BENCH_*` variables.
struct Settings {
    shapes: Vec<String>,
    sizes: Vec<u64>,
    runs: usize,
    aged: u64,
    webhooks: u64,
    wrap: Option<String>,
}

fn settings() -> Result<Settings> {
    let number = |name: &str, default: u64| -> Result<u64> {
        match std::env::var(name) {
            Ok(v) => v.trim().parse().with_context(|| format!("{name}={v}")),
            Err(_) => Ok(default),
        }
    };
    let list = |name: &str, default: &str| -> Vec<String> {
        std::env::var(name)
            .unwrap_or_else(|_| default.to_string())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let sizes = list("TRIPWIRE_BENCH_SIZES", "40000,160000")
        .iter()
        .map(|s| {
            s.parse()
                .with_context(|| format!("TRIPWIRE_BENCH_SIZES: {s}"))
        })
        .collect::<Result<Vec<u64>>>()?;
    if sizes.is_empty() {
        bail!("TRIPWIRE_BENCH_SIZES is empty");
    }
    Ok(Settings {
        shapes: list("TRIPWIRE_BENCH_SHAPES", "collect,segment,name_payload"),
        sizes,
        runs: number("TRIPWIRE_BENCH_RUNS", 3)?.max(1) as usize,
        aged: number("TRIPWIRE_BENCH_AGED", 500_000)?,
        webhooks: number("TRIPWIRE_BENCH_WEBHOOKS", 20_000)?,
        wrap: std::env::var("TRIPWIRE_BENCH_WRAP").ok(),
    })
}

/// One size's figures (medians).
struct Figures {
    deliveries: u64,
    seconds: f64,
    duckdb: Option<f64>,
}

impl Figures {
    fn micros_per_delivery(&self) -> f64 {
        self.seconds * 1e6 / self.deliveries.max(1) as f64
    }
}

fn main() -> Result<()> {
    let settings = settings()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut summary = Vec::new();
    for (i, shape) in settings.shapes.iter().enumerate() {
        let mut figures = Vec::new();
        for &size in &settings.sizes {
            let store = fresh_store(shape, size)?;
            println!("\n== {shape}: {size} events, a fresh store ==");
            figures.push(measure(&settings, &store, size)?);
        }
        let (first, last) = (&figures[0], &figures[figures.len() - 1]);
        let ratio = last.micros_per_delivery() / first.micros_per_delivery();
        println!(
            "\n{shape}: per delivery {:.1} µs at {} vs {:.1} µs at {}: {ratio:.2}× (goal ≤ 1.3); \
             {:.0} deliveries/s at {} (goal ≥ 20000)",
            last.micros_per_delivery(),
            last.deliveries,
            first.micros_per_delivery(),
            first.deliveries,
            last.deliveries as f64 / last.seconds,
            last.deliveries,
        );
        let mut line = format!("{shape}: {ratio:.2}× per delivery");
        if i == 0 && settings.aged > 0 {
            let size = *settings.sizes.last().expect("a size");
            let store = aged_store(shape, settings.aged, size)?;
            println!(
                "\n== {shape}: {size} events after {} delivered deliveries (aged) ==",
                settings.aged
            );
            let aged = measure(&settings, &store, size)?;
            let growth = aged.micros_per_delivery() / last.micros_per_delivery();
            println!(
                "\n{shape} aged: per delivery {:.1} µs vs {:.1} µs fresh: {growth:.2}× (goal ≈ 1)",
                aged.micros_per_delivery(),
                last.micros_per_delivery()
            );
            line.push_str(&format!(", aged {growth:.2}×"));
        }
        for f in &figures {
            if let Some(duckdb) = f.duckdb {
                line.push_str(&format!(
                    ", {} deliveries: {:.2}× DuckDB",
                    f.deliveries,
                    f.seconds / duckdb
                ));
            }
        }
        summary.push(line);
    }
    if settings.webhooks > 0 {
        runtime.block_on(webhooks(settings.webhooks));
    }
    println!("\nsummary:");
    for line in summary {
        println!("  {line}");
    }
    Ok(())
}

fn bench_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data")
}

/// `target/bench-data/<name>.ndjson`, generated by benches/wild_events.py once.
fn wild_file(name: &str, shape: &str, events: u64, seed: u64, start_ms: i64) -> Result<PathBuf> {
    let path = bench_data().join(format!("{name}.ndjson"));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(bench_data())?;
    let partial = path.with_extension("partial");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wild_events.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--shape", shape])
        .args(["--events", &events.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--start-ms", &start_ms.to_string()])
        .args(["--step-ms", &STEP_MS.to_string()])
        .arg("--out")
        .arg(&partial)
        .output()
        .context("run python3 benches/wild_events.py")?;
    if !out.status.success() {
        bail!(
            "wild_events.py: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// A project folder: the config, the trigger and the flow, around `store`.
struct Project {
    dir: PathBuf,
}

impl Project {
    fn at(dir: &Path) -> Result<Project> {
        let write = |name: &str, text: &str| -> Result<()> {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("a parent"))?;
            std::fs::write(path, text)?;
            Ok(())
        };
        write("tripwire.toml", CONFIG)?;
        write("queries/triggers/bench_lines.sql", TRIGGER)?;
        write("flows/bench.toml", FLOW)?;
        Ok(Project {
            dir: dir.to_path_buf(),
        })
    }

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
            .arg(self.dir.join("tripwire.toml"))
            .current_dir(&self.dir);
        command
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.command(args, None).output().context("run tripwire")?;
        if !out.status.success() {
            bail!(
                "tripwire {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    fn query(&self, sql: &str) -> Result<Vec<Value>> {
        self.ok(&["query", sql, "--format", "json"])?
            .lines()
            .map(|l| serde_json::from_str(l).context("a JSON row"))
            .collect()
    }

    fn number(&self, sql: &str) -> Result<i64> {
        let rows = self.query(sql)?;
        Ok(rows
            .first()
            .and_then(Value::as_object)
            .and_then(|r| r.values().next())
            .and_then(Value::as_i64)
            .unwrap_or(0))
    }

    fn lines(&self) -> usize {
        std::fs::read_to_string(self.dir.join("deliveries/bench.ndjson"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

/// The run's clock: a day after the last event (times are jittered).
fn now_after(events: u64) -> String {
    let ms = HISTORY_START_MS + events as i64 * STEP_MS + 86_400_000;
    DateTime::<Utc>::from_timestamp_millis(ms)
        .expect("a valid time")
        .to_rfc3339()
}

/// A cached store holding `size` events of `shape`, none run yet.
fn fresh_store(shape: &str, size: u64) -> Result<PathBuf> {
    let dir = bench_data().join(format!("deliver-{shape}-{size}"));
    if dir.join("done").exists() {
        return Ok(dir.join("store"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let events = wild_file(
        &format!("deliver-{shape}-{size}-w"),
        shape,
        size,
        2,
        HISTORY_START_MS,
    )?;
    let project = Project::at(&dir)?;
    let started = Instant::now();
    let imported = project.ok(&["import", &events.display().to_string()])?;
    println!(
        "setup {shape} {size}: {} ({:.1}s, not timed)",
        imported.trim(),
        started.elapsed().as_secs_f64()
    );
    std::fs::write(dir.join("done"), "")?;
    Ok(dir.join("store"))
}

/// A cached store whose ledger holds `history` delivered deliveries (its
/// events imported, run and delivered), then `size` newer events.
fn aged_store(shape: &str, history: u64, size: u64) -> Result<PathBuf> {
    let dir = bench_data().join(format!("deliver-aged-v2-{shape}-{history}-{size}"));
    if dir.join("done").exists() {
        return Ok(dir.join("store"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let old = wild_file(
        &format!("deliver-{shape}-{history}-h"),
        shape,
        history,
        1,
        HISTORY_START_MS,
    )?;
    let window_start = HISTORY_START_MS + history as i64 * STEP_MS;
    let new = wild_file(
        &format!("deliver-{shape}-{size}-after-{history}"),
        shape,
        size,
        2,
        window_start,
    )?;
    let project = Project::at(&dir)?;
    let started = Instant::now();
    project.ok(&["import", &old.display().to_string()])?;
    let ran = project.ok(&["run", "--now", &now_after(history)])?;
    for line in ran.lines() {
        println!("  history run: {line}");
    }
    let delivered = project.number("SELECT count(*) FROM deliveries WHERE status = 'delivered'")?;
    if delivered as u64 != history {
        bail!("the history run delivered {delivered} of {history}");
    }
    std::fs::remove_file(dir.join("deliveries/bench.ndjson"))?;
    project.ok(&["import", &new.display().to_string()])?;
    println!(
        "setup aged {shape}: {history} delivered, then {size} events ({:.1}s, not timed)",
        started.elapsed().as_secs_f64()
    );
    std::fs::write(dir.join("done"), "")?;
    Ok(dir.join("store"))
}

fn epoch_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One timed run: seconds, and how the process's time split.
struct Timed {
    seconds: f64,
    split: [f64; 5],
}

/// `settings.runs` timed runs over copies of `store`, then DuckDB.
fn measure(settings: &Settings, store: &Path, size: u64) -> Result<Figures> {
    let mut timed = Vec::new();
    let mut window = (-1, -1);
    let mut deliveries = 0;
    let now = now_after(size + settings.aged);
    // Each run's copy is kept until all runs are done: deleting one run's
    // 160k claim files right before the next run makes ext4 check every
    // recently freed inode the next run's creates come across (twice the
    // time), which says more about the bench than about a store.
    let mut copies = Vec::new();
    for run in 0..settings.runs {
        let scratch = tempfile::tempdir_in(bench_data())?;
        copy_store(store, &scratch.path().join("store"))?;
        let project = Project::at(scratch.path())?;
        let before = project.number("SELECT count(*) FROM attempts").unwrap_or(0);
        let one = timed_run(&project, &now, settings.wrap.as_deref())?;
        let matched = project.number(
            "SELECT matched FROM runs WHERE to_version = (SELECT max(to_version) FROM runs)",
        )?;
        let delivered = project.number(
            "SELECT count(*) FROM deliveries d JOIN runs r ON d.run_id = r.run_id \
             WHERE d.status = 'delivered' AND r.to_version = (SELECT max(to_version) FROM runs)",
        )?;
        let lines = project.lines() as i64;
        let attempts = project.number("SELECT count(*) FROM attempts")? - before;
        if delivered != matched || lines != matched || attempts != matched {
            bail!(
                "run {run}: {matched} matches, {delivered} delivered, {lines} lines, \
                 {attempts} attempts recorded ({size} events)"
            );
        }
        deliveries = delivered as u64;
        println!(
            "  run {run}: {delivered} delivered in {:.2}s = {:.1} µs each, {:.0}/s; split: start-up {:.2}s, \
             trigger + plan {:.2}s, commit {:.2}s, deliver {:.2}s, exit {:.2}s",
            one.seconds,
            one.seconds * 1e6 / delivered as f64,
            delivered as f64 / one.seconds,
            one.split[0],
            one.split[1],
            one.split[2],
            one.split[3],
            one.split[4]
        );
        if run == 0 {
            window = window_of(&project)?;
        }
        timed.push(one);
        copies.push(scratch);
    }
    drop(copies);
    let mut seconds: Vec<f64> = timed.iter().map(|t| t.seconds).collect();
    let median_seconds = median(&mut seconds);
    let split: Vec<f64> = (0..5)
        .map(|i| median(&mut timed.iter().map(|t| t.split[i]).collect::<Vec<_>>()))
        .collect();
    println!(
        "tripwire: {deliveries} deliveries ({size} events), median {median_seconds:.2}s = {:.1} µs \
         per delivery, {:.0} deliveries/s (split medians: start-up {:.2}s, trigger + plan {:.2}s, \
         commit {:.2}s, deliver {:.2}s, exit {:.2}s){}",
        median_seconds * 1e6 / deliveries.max(1) as f64,
        deliveries as f64 / median_seconds,
        split[0],
        split[1],
        split[2],
        split[3],
        split[4],
        if settings.wrap.is_some() {
            ", wrapped"
        } else {
            ""
        }
    );
    let duckdb = duckdb(store, window, settings.runs)?;
    if let Some(d) = duckdb {
        println!(
            "duckdb: the same lines, median {d:.2}s; tripwire / duckdb = {:.2}×",
            median_seconds / d
        );
    }
    Ok(Figures {
        deliveries,
        seconds: median_seconds,
        duckdb,
    })
}

/// One `tripwire run` process, spawn to exit, and its time split.
fn timed_run(project: &Project, now: &str, wrap: Option<&str>) -> Result<Timed> {
    let mut command = project.command(&["run", "--now", now], wrap);
    let spawned = epoch_micros();
    let started = Instant::now();
    let out = command.output().context("run tripwire run")?;
    let seconds = started.elapsed().as_secs_f64();
    let exited = epoch_micros();
    if !out.status.success() {
        bail!(
            "tripwire run: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let clocks = project.query(&format!(
        "SELECT CAST(min(r.started_at) AS BIGINT) AS started, CAST(max(r.finished_at) AS BIGINT) AS finished, \
                (SELECT CAST(min(attempted_at) AS BIGINT) FROM attempts WHERE CAST(attempted_at AS BIGINT) >= {spawned}) AS first, \
                (SELECT CAST(max(attempted_at) AS BIGINT) FROM attempts WHERE CAST(attempted_at AS BIGINT) >= {spawned}) AS last \
         FROM runs r WHERE CAST(r.started_at AS BIGINT) >= {spawned}"
    ))?;
    let at = |name: &str| clocks[0][name].as_i64().unwrap_or(exited);
    let span = |from: i64, to: i64| (to - from) as f64 / 1e6;
    let (started_at, finished, first, last) =
        (at("started"), at("finished"), at("first"), at("last"));
    Ok(Timed {
        seconds,
        split: [
            span(spawned, started_at),
            span(started_at, finished),
            span(finished, first),
            span(first, last),
            span(last, exited),
        ],
    })
}

/// The events versions the run read: (cursor before, watermark).
fn window_of(project: &Project) -> Result<(i64, i64)> {
    let rows = project
        .query("SELECT from_version, to_version FROM runs ORDER BY to_version DESC LIMIT 1")?;
    let row = rows.first().context("a run")?;
    Ok((
        row["from_version"].as_i64().unwrap_or(-1),
        row["to_version"].as_i64().unwrap_or(-1),
    ))
}

/// DuckDB's median for the same lines, or `None` when it is missing.
fn duckdb(store: &Path, (from, to): (i64, i64), runs: usize) -> Result<Option<f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_deliver.py");
    let scratch = tempfile::tempdir_in(bench_data())?;
    let out = Command::new("python3")
        .arg(script)
        .arg("--table")
        .arg(store.join("shop/events"))
        .args(["--from", &from.to_string()])
        .args(["--to", &to.to_string()])
        .arg("--out")
        .arg(scratch.path().join("lines.ndjson"))
        .args(["--runs", &runs.to_string()])
        .output()
        .context("run python3 benches/duckdb_deliver.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        println!(
            "DuckDB skipped: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Ok(None);
    }
    let median = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("median_seconds="))
        .and_then(|s| s.parse().ok());
    let rows = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rows="))
        .unwrap_or("?");
    println!("duckdb_deliver.py: {} ({rows} lines)", stdout.trim());
    Ok(median)
}

/// Requests and TCP connections a loopback receiver got.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    connections: AtomicU64,
}

/// Plans `n` webhooks through the library and times `deliver_due`.
async fn webhooks(n: u64) {
    let counts = Arc::new(Counts::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    let accepted = counts.clone();
    let listener = listener.tap_io(move |_| {
        accepted.connections.fetch_add(1, Ordering::Relaxed);
    });
    let app = axum::Router::new()
        .route(
            "/hook",
            post(|State(c): State<Arc<Counts>>, _body: String| async move {
                c.requests.fetch_add(1, Ordering::Relaxed);
                "ok"
            }),
        )
        .with_state(counts.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(CONFIG, "bench", dir.path()).expect("config");
    let store = Store::new(config.storage.clone());
    plan(&store, &format!("http://{addr}/hook"), n as usize).await;
    let limits = DeliveryLimits::default();
    let started = Instant::now();
    let summary = deliver_due(&store, &config, "shop", Utc::now(), &limits)
        .await
        .expect("deliver");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.delivered, n, "{summary}");
    let requests = counts.requests.load(Ordering::Relaxed);
    let connections = counts.connections.load(Ordering::Relaxed);
    assert_eq!(requests, n, "one request per delivery");
    println!(
        "\nwebhooks: {n} in {seconds:.2}s = {:.0} deliveries/s (deliver_due in this process; batch {}, \
         {} in flight) over {connections} connections = {:.0} requests per connection",
        n as f64 / seconds,
        limits.batch,
        limits.concurrency,
        requests as f64 / connections.max(1) as f64
    );
}

/// Commits `deliveries` planned webhooks in ten ledger commits.
async fn plan(store: &Store, url: &str, deliveries: usize) {
    const RUNS: usize = 10;
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
        commit(&mut ledger, &mut Always(run_batch(&record, &rows)))
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
