//! `cargo bench --bench trigger`: how long one trigger run takes over a
//! window of new events, whether that stays flat as history grows, and
//! what a tick of many triggers costs against one, each next to DuckDB on
//! the same Parquet files in the same run.
//!
//! The events come from benches/wild_events.py, a generator written apart
//! from tripwire's own sample (nested properties, identify calls from
//! browsers and servers, anonymous visitors, out-of-order and late times),
//! one store per input shape (`collect`, `segment`, `name_payload`). Each
//! store (built once, cached under target/bench-data/trigger-*) holds the
//! history at one event every 4 s (1M events span 46 days, most of it
//! older than the 7-day identity TTL), imported with the release
//! `tripwire` binary in files of 1M events, a committed `tripwire run`
//! putting the trigger's cursor at its end (and a second one, two hours
//! on, settling the rows the first left waiting for an identity), then the
//! window (100k newer events). The trigger joins the window to `identities`:
//!
//! ```sql
//! SELECT n.client_id, i.email, json_get_float(n.properties, 'cart_value') AS cart_value
//! FROM new_events n JOIN identities i ON i.client_id = n.client_id
//! WHERE n.event_name = 'cart_abandoned'
//! ```
//!
//! Measured per shape and history size, with the clock an hour after the
//! window's end:
//! - `run`: the library's `run_trigger` as a preview (nothing committed):
//!   window, SQL, identity resolution; the median of several runs after
//!   one warm-up run (the identity index held between runs, as `serve`
//!   holds it).
//! - `warm`: the same run with the workspace's tables kept open between
//!   runs (`Store::keeping_tables_open`, as `serve` keeps them between
//!   ticks): each run reads only the commits since the last, as DuckDB's
//!   timing below excludes reading the Delta log.
//! - `sql`: the trigger's SQL alone over the view-based session, median.
//! - `process`: one `tripwire run --now …` process, committing to a
//!   copy (tables hard-linked) of the store.
//! - `duckdb`: benches/duckdb_trigger.py, the same SQL over the same Parquet
//!   files in DuckDB (skipped with a message when `import duckdb` fails).
//! - `run/duckdb`, `warm/duckdb`: the median over rounds of each round's
//!   time against a DuckDB run (the script kept running, `--paired`) timed
//!   right after it, so both sides of a ratio see the same moment of a
//!   machine whose speed drifts over minutes; `process/duckdb` divides by
//!   the `duckdb` median.
//!
//! The first shape is also measured at every history size (default 1M and
//! 10M: flatness; its ratio is also taken over rounds that run the smallest
//! and the largest history's store one after the other). Then a tick: `TRIPWIRE_BENCH_TICK_TRIGGERS` (200)
//! triggers over one 20k-event window of the first shape's 1M history, as
//! one `tripwire run` process, against the same process with one of them;
//! DuckDB runs the same queries in one connection. Then a store that has
//! lived: the first history again, its window arriving as
//! `TRIPWIRE_BENCH_AGED_COMMITS` (2,000) small commits made as `serve`'s
//! flusher makes them (each with the node's one `ingest:` txn), then maintained,
//! compared with the fresh store in rounds that run both too.
//!
//! Environment: `TRIPWIRE_BENCH_HISTORY` (comma-separated history sizes,
//! default `1000000,10000000`), `TRIPWIRE_BENCH_WINDOW` (default 100000),
//! `TRIPWIRE_BENCH_RUNS` (timed runs per figure, default 5),
//! `TRIPWIRE_BENCH_SHAPES` (default `collect,segment,name_payload`),
//! `TRIPWIRE_BENCH_TICK_TRIGGERS` (default 200; 0 skips the tick). Building
//! every store takes a few minutes once (generating 10M events in Python
//! most of it); afterwards the bench runs in a few minutes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use deltalake_core::DeltaTable;
use tripwire::Config;
use tripwire::identity::index::IndexCache;
use tripwire::run::{RunRequest, run_trigger};
use tripwire::session::{SessionSpec, workspace_session};
use tripwire::sql::plan_read_only;
use tripwire::store::ledger::cursor_app_id;
use tripwire::store::{Store, TableKind, table};
use tripwire::trigger::{TriggerFile, load_triggers};
use tripwire::window::{Window, new_events};

#[path = "support/store_copy.rs"]
mod store_copy;
use store_copy::copy_store;

const WORKSPACE: &str = "shop";
const TRIGGER: &str = "bench_identity";
const TRIGGER_SQL: &str = "\
-- description: cart_abandoned events of the window joined to identities (cargo bench --bench trigger).
-- workspace: shop
-- backfill: all
-- requires_identity: true
SELECT n.client_id, i.email, json_get_float(n.properties, 'cart_value') AS cart_value
FROM new_events n JOIN identities i ON i.client_id = n.client_id
WHERE n.event_name = 'cart_abandoned'
";
/// The trigger for the name/payload shape, whose events carry their own
/// email and whose senders send no identify (the generator's, like the
/// API's users): a left join, the contact from the row or from
/// `identities` (the join above returns no row there).
const TRIGGER_SQL_NAME_PAYLOAD: &str = "\
-- description: cart_abandoned events of the window with their contacts (cargo bench --bench trigger).
-- workspace: shop
-- backfill: all
-- requires_identity: true
SELECT n.client_id, coalesce(n.email, i.email) AS email, json_get_float(n.properties, 'cart_value') AS cart_value
FROM new_events n LEFT JOIN identities i ON i.client_id = n.client_id
WHERE n.event_name = 'cart_abandoned'
";

/// The trigger measured over `shape`'s store.
fn trigger_sql_of(shape: &str) -> &'static str {
    match shape {
        "name_payload" => TRIGGER_SQL_NAME_PAYLOAD,
        _ => TRIGGER_SQL,
    }
}
/// Events per generated history file (and per import).
const FILE_EVENTS: u64 = 1_000_000;
/// Milliseconds between consecutive events, history and window alike.
const STEP_MS: i64 = 4_000;
/// Where the history ends and the window begins: 2026-11-01T00:00:00Z.
const HISTORY_END_MS: i64 = 1_793_491_200_000;
/// The run's clock is this long after the window's nominal end: the wild
/// events' times are jittered by up to ten minutes.
const CLOCK_AFTER_WINDOW_MS: i64 = 3_600_000;
/// Events in the window the tick's triggers share.
const TICK_WINDOW: u64 = 20_000;

/// What to measure, from the `TRIPWIRE_BENCH_*` variables.
struct Settings {
    histories: Vec<u64>,
    window: u64,
    runs: usize,
    /// Commits the aged store's window arrives in (0: no aged store).
    aged_commits: u64,
    shapes: Vec<String>,
    /// Triggers in the tick (0: no tick).
    tick_triggers: u64,
}

/// The store-health figures of one store.
struct Health {
    files: usize,
    /// Opening the events table (reading its log), median, seconds.
    log_load: f64,
}

/// The figures of one history size, in seconds.
struct Figures {
    shape: String,
    history: u64,
    run: f64,
    warm: f64,
    sql: f64,
    process: f64,
    duckdb: Option<f64>,
    /// Medians of each round's run / DuckDB's run timed right after it.
    paired: Option<Paired>,
}

/// Ratios to DuckDB over rounds that time both sides back to back.
#[derive(Debug, Clone, Copy)]
struct Paired {
    run: f64,
    warm: f64,
}

fn main() -> Result<()> {
    let settings = settings()?;
    std::fs::create_dir_all(bench_data())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut all = Vec::new();
    let mut first_shape_stores = Vec::new();
    for (i, shape) in settings.shapes.iter().enumerate() {
        // Every history size for the first shape; the first one for the others.
        let histories = match i {
            0 => &settings.histories[..],
            _ => &settings.histories[..1],
        };
        for &history in histories {
            let store = cached_store(shape, history, settings.window)?;
            let figures = measure(&runtime, &settings, shape, history, &store)?;
            all.push(figures);
            if i == 0 {
                first_shape_stores.push(store);
            }
        }
    }
    // The largest history against the smallest, in rounds that run both.
    let flatness = match &first_shape_stores[..] {
        [small, .., large] => Some(runtime.block_on(paired_cold_runs(
            &Project::new(small, &settings.shapes[0])?,
            &Project::new(large, &settings.shapes[0])?,
            now(settings.window),
            settings.runs,
        ))?),
        _ => None,
    };
    let tick = match settings.tick_triggers {
        0 => None,
        n => Some(compare_tick(&settings, n)?),
    };
    print_summary(&settings, &all, flatness);
    if let Some(tick) = tick {
        tick.print(settings.tick_triggers);
    }
    if let (Some(fresh), true) = (all.first(), settings.aged_commits > 0) {
        compare_aged(&runtime, &settings, fresh)?;
    }
    Ok(())
}

/// One process of all the tick's triggers against one of them, in seconds.
struct TickFigures {
    one: f64,
    all: f64,
    duckdb_one: Option<f64>,
    duckdb_all: Option<f64>,
}

impl TickFigures {
    fn print(&self, triggers: u64) {
        let duckdb = |d: Option<f64>| d.map_or("-".into(), |d| format!("{d:.3}s"));
        println!(
            "\ntick: {triggers} triggers vs 1 over one {TICK_WINDOW}-event window, one `tripwire run` process each (median)"
        );
        println!(
            "tripwire: 1 trigger {:.3}s, {triggers} triggers {:.3}s: {:.1}x (goal <= 10x)",
            self.one,
            self.all,
            self.all / self.one
        );
        println!(
            "duckdb:   1 query {}, {triggers} queries {}{}",
            duckdb(self.duckdb_one),
            duckdb(self.duckdb_all),
            match self.duckdb_all {
                Some(d) => format!("; tripwire/duckdb for the tick {:.2}", self.all / d),
                None => String::new(),
            }
        );
    }
}

/// Trigger `i` of the tick: an event name and a cart-value threshold;
/// every other one requires an identity, every fourth joins `identities`.
fn tick_trigger_sql(i: u64) -> String {
    const NAMES: [&str; 7] = [
        "product_viewed",
        "search",
        "cart_abandoned",
        "checkout_started",
        "order_completed",
        "deposit_started",
        "page_view",
    ];
    let name = NAMES[(i % 7) as usize];
    let threshold = i / 7 * 5;
    let requires = i.is_multiple_of(2);
    let value = "coalesce(json_get_float(n.properties, 'cart_value'), 0)";
    let (select, join) = match i % 4 {
        0 => (
            "n.client_id, i.email, n.event_id",
            "JOIN identities i ON i.client_id = n.client_id",
        ),
        _ => ("n.client_id, n.user_id, n.email, n.event_id", ""),
    };
    format!(
        "-- workspace: {WORKSPACE}\n-- requires_identity: {requires}\n\
         SELECT {select}, {value} AS v\nFROM new_events n {join}\n\
         WHERE n.event_name = '{name}' AND {value} >= {threshold}\n"
    )
}

/// A project folder whose config stores in `store`, with `triggers`.
fn project_with(store: &Path, triggers: &[(String, String)]) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir_in(bench_data())?;
    std::fs::write(
        dir.path().join("tripwire.toml"),
        format!(
            "storage = \"{}\"\n[[workspace]]\nid = \"{WORKSPACE}\"\n",
            store.display()
        ),
    )?;
    let folder = dir.path().join(tripwire::project::TRIGGER_DIR);
    std::fs::create_dir_all(&folder)?;
    for (name, sql) in triggers {
        std::fs::write(folder.join(format!("{name}.sql")), sql)?;
    }
    Ok(dir)
}

/// The tick's triggers, named `tick_000`…
fn tick_triggers(count: u64) -> Vec<(String, String)> {
    (0..count)
        .map(|i| (format!("tick_{i:03}"), tick_trigger_sql(i)))
        .collect()
}

/// The first shape's first history with every tick trigger's cursor at its
/// end, then a [`TICK_WINDOW`] of new events; built once and kept.
fn tick_store(shape: &str, history: u64, count: u64) -> Result<PathBuf> {
    let dir = bench_data().join(format!(
        "trigger-tick-v4-{shape}-{history}-{TICK_WINDOW}-{count}"
    ));
    let (ready, store) = (dir.join("READY"), dir.join("store"));
    if ready.exists() {
        return Ok(store);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    println!("building {} (once)…", dir.display());
    let project = project_with(&store, &tick_triggers(count))?;
    let config = project.path().join("tripwire.toml");
    for file in (0..history.div_ceil(FILE_EVENTS)).rev() {
        let events = FILE_EVENTS.min(history - file * FILE_EVENTS);
        let path = history_file(shape, file, events)?;
        tripwire_cli(&config, &["import", &path.display().to_string()])?;
    }
    let end = DateTime::from_timestamp_millis(HISTORY_END_MS).expect("a valid timestamp");
    // No backfill header: each trigger's first run starts at the watermark.
    tripwire_cli(&config, &["run", "--now", &end.to_rfc3339()])?;
    let window = window_file(shape, TICK_WINDOW)?;
    tripwire_cli(&config, &["import", &window.display().to_string()])?;
    std::fs::write(&ready, b"")?;
    Ok(store)
}

/// The median of `runs` processes of `tripwire run --now NOW` with
/// `triggers`, each on a fresh copy (tables hard-linked) of `store`.
fn tick_process(store: &Path, triggers: &[(String, String)], runs: usize) -> Result<f64> {
    let now = now(TICK_WINDOW).to_rfc3339();
    let mut times = Vec::new();
    for round in 0..=runs {
        let scratch = tempfile::tempdir_in(bench_data())?;
        let copy = scratch.path().join("store");
        copy_store(store, &copy)?;
        let project = project_with(&copy, triggers)?;
        let started = Instant::now();
        let stdout = tripwire_cli(
            &project.path().join("tripwire.toml"),
            &["run", "--now", &now],
        )?;
        let elapsed = started.elapsed();
        let committed = stdout.matches("committed run").count();
        if committed != triggers.len() {
            bail!(
                "{} of {} tick runs committed:\n{stdout}",
                committed,
                triggers.len()
            );
        }
        if round > 0 {
            times.push(elapsed);
        }
    }
    Ok(median(&mut times))
}

/// The tick against one trigger, and DuckDB on the same queries.
fn compare_tick(settings: &Settings, count: u64) -> Result<TickFigures> {
    let (shape, history) = (settings.shapes[0].as_str(), settings.histories[0]);
    println!("\n== tick: {count} triggers, {shape}, history {history}, window {TICK_WINDOW} ==");
    let store = tick_store(shape, history, count)?;
    let all = tick_triggers(count);
    let one = tick_process(&store, &all[..1], settings.runs)?;
    let every = tick_process(&store, &all, settings.runs)?;
    let sql_dir = project_with(&store, &all)?;
    let config = Config::load(Some(&sql_dir.path().join("tripwire.toml")))?;
    let tables = Store::new(config.storage.clone());
    let runtime = tokio::runtime::Runtime::new()?;
    let (events, ledger) = runtime.block_on(async {
        let events = tables.open(WORKSPACE, TableKind::Events).await?;
        let ledger = tables.open(WORKSPACE, TableKind::Ledger).await?;
        anyhow::Ok((events.context("no events")?, ledger.context("no ledger")?))
    })?;
    let cursor = runtime.block_on(table::app_progress(&ledger, &cursor_app_id("tick_000")))?;
    let current = CurrentWindow {
        window: Window {
            from: cursor.unwrap_or(-1),
            to: events.version().map_or(-1, |v| v as i64),
        },
        events,
    };
    let files: Vec<PathBuf> = all
        .iter()
        .map(|(name, _)| {
            sql_dir
                .path()
                .join(tripwire::project::TRIGGER_DIR)
                .join(format!("{name}.sql"))
        })
        .collect();
    let ttl = config.identity_ttl;
    let duckdb_one = duckdb_queries(&current, now(TICK_WINDOW), ttl, &files[..1], settings.runs)?;
    let duckdb_all = duckdb_queries(&current, now(TICK_WINDOW), ttl, &files, settings.runs)?;
    Ok(TickFigures {
        one,
        all: every,
        duckdb_one,
        duckdb_all,
    })
}

/// The aged, maintained store against the fresh one of the same history.
fn compare_aged(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    fresh: &Figures,
) -> Result<()> {
    let (shape, history) = (fresh.shape.as_str(), fresh.history);
    let fresh_store = cached_store(shape, history, settings.window)?;
    let aged_store = aged_store(
        runtime,
        shape,
        history,
        settings.window,
        settings.aged_commits,
    )?;
    println!(
        "
== aged: history {history}, window in {} commits, maintained ==",
        settings.aged_commits
    );
    let project = Project::new(&aged_store, shape)?;
    let LibraryRuns { run, .. } = runtime.block_on(library_runs(
        &project,
        now(settings.window),
        settings.runs,
        None,
    ))?;
    let fresh_project = Project::new(&fresh_store, shape)?;
    let paired = runtime.block_on(paired_cold_runs(
        &fresh_project,
        &project,
        now(settings.window),
        settings.runs,
    ))?;
    let fresh_health = runtime.block_on(health(&fresh_project, settings.runs))?;
    let aged_health = runtime.block_on(health(&project, settings.runs))?;
    println!(
        "
store that has lived ({} commits of ingest, then maintained) vs fresh:",
        settings.aged_commits
    );
    println!(
        "{:>8} {:>9} {:>12} {:>14}",
        "store", "run", "events files", "log load"
    );
    for (name, run, h) in [
        ("fresh", fresh.run, &fresh_health),
        ("aged", run, &aged_health),
    ] {
        println!(
            "{name:>8} {run:>8.3}s {:>12} {:>13.1}ms",
            h.files,
            h.log_load * 1e3
        );
    }
    println!(
        "aged/fresh run: {:.2} of the medians above; {paired:.2} over rounds that run both (goal ≤ 1.1)",
        run / fresh.run
    );
    Ok(())
}

/// File count and median log-load time of a store's events table.
async fn health(project: &Project, runs: usize) -> Result<Health> {
    let store = project.store();
    let mut times = Vec::new();
    let mut files = 0;
    for _ in 0..=runs {
        let started = Instant::now();
        let events = store
            .open(WORKSPACE, TableKind::Events)
            .await?
            .context("no events")?;
        times.push(started.elapsed());
        files = tripwire::store::files::live_files(&events)?.len();
    }
    times.remove(0);
    Ok(Health {
        files,
        log_load: median(&mut times),
    })
}

/// The store of `history` events whose window arrived in `commits` small
/// commits, then maintained; built once and kept.
fn aged_store(
    runtime: &tokio::runtime::Runtime,
    shape: &str,
    history: u64,
    window: u64,
    commits: u64,
) -> Result<PathBuf> {
    let dir = bench_data().join(format!(
        "trigger-aged-v11-{shape}-{history}-{window}-{commits}"
    ));
    let ready = dir.join("READY");
    let store = dir.join("store");
    if ready.exists() {
        return Ok(store);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    println!("building {} (once)…", dir.display());
    let project = Project::new(&store, shape)?;
    history_with_cursor(&project, shape, history)?;
    let pieces = split_lines(&window_file(shape, window)?, commits, &dir.join("pieces"))?;
    let started = Instant::now();
    runtime.block_on(async {
        let store = project.store();
        let mut events = store.open_or_create(WORKSPACE, TableKind::Events).await?;
        let mut seq = tripwire::store::seq::SeqClock::default();
        for (number, piece) in pieces.iter().enumerate() {
            let text = std::fs::read_to_string(piece)?;
            let mut flush = Flush {
                batches: vec![events_batch(&text, &mut seq)],
                number: number as i64,
            };
            tripwire::store::commit::commit(&mut events, &mut flush).await?;
        }
        anyhow::Ok(())
    })?;
    println!(
        "{commits} commits in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let before = runtime.block_on(health(&project, 1))?;
    let report = tripwire_cli(&project.config_path(), &["optimize"])?;
    println!(
        "before maintenance: {} events files; optimize: {}",
        before.files,
        report.trim()
    );
    std::fs::remove_dir_all(dir.join("pieces"))?;
    std::fs::write(&ready, b"")?;
    Ok(store)
}

/// One of `serve`'s flushes, as its flusher commits it (`ingest::flusher`):
/// the events appended with the node's `ingest:` txn at the flush's number,
/// so the log holds one application's txn however many flushes it takes
/// (2,000 imports would hold 2,000, for the log's 30 days of them).
struct Flush {
    batches: Vec<arrow::array::RecordBatch>,
    number: i64,
}

impl tripwire::store::commit::Writer for Flush {
    type Error = tripwire::store::StoreError;

    async fn plan(
        &mut self,
        _table: &DeltaTable,
    ) -> Result<tripwire::store::commit::Plan, Self::Error> {
        let append = tripwire::store::commit::Append::recorded(
            self.batches.clone(),
            "ingest:bench",
            self.number,
        );
        Ok(tripwire::store::commit::Plan::Append(append))
    }
}

/// The events of NDJSON `text` (lines that are not one left out), as a
/// flush writes them.
fn events_batch(text: &str, seq: &mut tripwire::store::seq::SeqClock) -> arrow::array::RecordBatch {
    let received_at = tripwire::event::now_micros();
    let mut builder = tripwire::event::batch::EventBatchBuilder::with_capacity(64);
    for (line, text) in text.lines().enumerate() {
        if let Ok(event) = tripwire::event::shapes::parse_event(text) {
            builder.append(&event, line as u64, received_at);
        }
    }
    let rows = builder.len();
    builder.finish(seq.reserve(rows))
}

/// `file`'s lines in `pieces` files of about equal size, under `into`.
fn split_lines(file: &Path, pieces: u64, into: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(into)?;
    let text = std::fs::read_to_string(file)?;
    let lines: Vec<&str> = text.lines().collect();
    let per = (lines.len() as u64).div_ceil(pieces.max(1)) as usize;
    lines
        .chunks(per.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let path = into.join(format!("piece-{i:05}.ndjson"));
            std::fs::write(&path, chunk.join("\n") + "\n")?;
            Ok(path)
        })
        .collect()
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
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let histories = std::env::var("TRIPWIRE_BENCH_HISTORY")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .map(|v| v.trim().parse::<u64>().context("TRIPWIRE_BENCH_HISTORY"))
        .collect::<Result<Vec<_>>>()?;
    Ok(Settings {
        histories,
        window: number("TRIPWIRE_BENCH_WINDOW", 100_000)?,
        runs: number("TRIPWIRE_BENCH_RUNS", 5)?.max(1) as usize,
        aged_commits: number("TRIPWIRE_BENCH_AGED_COMMITS", 2_000)?,
        shapes: list("TRIPWIRE_BENCH_SHAPES", "collect,segment,name_payload"),
        tick_triggers: number("TRIPWIRE_BENCH_TICK_TRIGGERS", 200)?,
    })
}

/// The run's clock: an hour after the window's nominal end.
fn now(window: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(
        HISTORY_END_MS + window as i64 * STEP_MS + CLOCK_AFTER_WINDOW_MS,
    )
    .expect("a valid timestamp")
}

fn bench_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data")
}

/// Runs every measurement over one cached store.
fn measure(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    shape: &str,
    history: u64,
    store: &Path,
) -> Result<Figures> {
    println!(
        "\n== {shape}: history {history} events, window {} ==",
        settings.window
    );
    let project = Project::new(store, shape)?;
    let now = now(settings.window);
    let current = runtime.block_on(current_window(&project.store()))?;
    let mut paired = PairedDuckDb::start(&project, &current, now)?;
    let LibraryRuns {
        run,
        warm,
        sql,
        paired: ratios,
    } = runtime.block_on(library_runs(&project, now, settings.runs, paired.as_mut()))?;
    drop(paired);
    let process = process_run(store, shape, now)?;
    let duckdb = duckdb_run(&project, &current, now, settings.runs)?;
    Ok(Figures {
        shape: shape.to_string(),
        history,
        run,
        warm,
        sql,
        process,
        duckdb,
        paired: ratios,
    })
}

/// A temporary project: a config whose storage is `store`, and the trigger file.
struct Project {
    dir: tempfile::TempDir,
    config: Config,
    trigger: TriggerFile,
}

impl Project {
    fn new(store: &Path, shape: &str) -> Result<Project> {
        let dir = tempfile::tempdir_in(bench_data())?;
        let config_path = dir.path().join("tripwire.toml");
        std::fs::write(
            &config_path,
            format!(
                "storage = \"{}\"\n[[workspace]]\nid = \"{WORKSPACE}\"\n",
                store.display()
            ),
        )?;
        let triggers = dir.path().join(tripwire::project::TRIGGER_DIR);
        std::fs::create_dir_all(&triggers)?;
        std::fs::write(
            triggers.join(format!("{TRIGGER}.sql")),
            trigger_sql_of(shape),
        )?;
        let config = Config::load(Some(&config_path))?;
        let (mut loaded, errors) = load_triggers(dir.path());
        if let Some(error) = errors.first() {
            bail!("{error}");
        }
        let trigger = loaded.pop().context("the trigger file did not load")?;
        Ok(Project {
            dir,
            config,
            trigger,
        })
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("tripwire.toml")
    }

    fn store(&self) -> Store {
        Store::new(self.config.storage.clone())
    }

    /// A preview run (nothing committed) of the trigger on `store`.
    fn preview<'a>(
        &'a self,
        store: &'a Store,
        now: DateTime<Utc>,
        identities: &'a IndexCache,
    ) -> RunRequest<'a> {
        RunRequest {
            store,
            workspace: WORKSPACE,
            trigger: &self.trigger,
            now,
            identity_ttl: self.config.identity_ttl,
            commit: false,
            whole_history: false,
            flows: &[],
            segments: &[],
            flow_errors: &[],
            max_failures: self.config.max_run_failures,
            identities,
        }
    }
}

/// Medians of the library's trigger run (preview), seconds.
struct LibraryRuns {
    /// Opening every table afresh.
    run: f64,
    /// With the tables kept open between runs.
    warm: f64,
    /// The trigger's SQL alone.
    sql: f64,
    /// Against DuckDB timed after each round, when DuckDB runs here.
    paired: Option<Paired>,
}

/// Cold runs of two stores' trigger, one of each per round: the median of
/// each round's `b` time over its `a` time (after a first, uncounted
/// round). Every other round runs `b` first, so neither store always
/// follows the other.
async fn paired_cold_runs(
    a: &Project,
    b: &Project,
    now: DateTime<Utc>,
    runs: usize,
) -> Result<f64> {
    let (a_store, b_store) = (a.store(), b.store());
    let (a_index, b_index) = (IndexCache::new(), IndexCache::new());
    let a_request = a.preview(&a_store, now, &a_index);
    let b_request = b.preview(&b_store, now, &b_index);
    let mut ratios = Vec::new();
    let timed = |request| async move {
        let started = Instant::now();
        run_trigger(request).await.map(|_| started.elapsed())
    };
    for round in 0..=runs {
        let (a_time, b_time) = match round % 2 {
            0 => (timed(&a_request).await?, timed(&b_request).await?),
            _ => {
                let b_time = timed(&b_request).await?;
                (timed(&a_request).await?, b_time)
            }
        };
        if round > 0 {
            ratios.push(b_time.as_secs_f64() / a_time.as_secs_f64());
        }
    }
    Ok(median_of(&mut ratios))
}

/// Medians of the library's trigger run (preview), cold and warm, and of
/// the SQL alone.
async fn library_runs(
    project: &Project,
    now: DateTime<Utc>,
    runs: usize,
    mut duckdb: Option<&mut PairedDuckDb>,
) -> Result<LibraryRuns> {
    let store = project.store();
    let kept = project.store().keeping_tables_open();
    let identities = IndexCache::new();
    let request = project.preview(&store, now, &identities);
    let warm_request = RunRequest {
        store: &kept,
        ..request
    };
    let mut run_times = Vec::new();
    let mut warm_times = Vec::new();
    let mut sql_times = Vec::new();
    let (mut run_ratios, mut warm_ratios) = (Vec::new(), Vec::new());
    // The first round warms the page cache and is not counted.
    for round in 0..=runs {
        let started = Instant::now();
        let outcome = run_trigger(&request).await?;
        let run_time = started.elapsed();
        let started = Instant::now();
        let warm = run_trigger(&warm_request).await?;
        let warm_time = started.elapsed();
        assert_eq!(
            warm.matches.len(),
            outcome.matches.len(),
            "warm and cold runs agree"
        );
        let started = Instant::now();
        let rows = trigger_sql(project, now).await?;
        let sql_time = started.elapsed();
        let duckdb_time = match duckdb.as_deref_mut() {
            Some(duckdb) => Some(duckdb.time_one_run()?),
            None => None,
        };
        if round == 0 {
            let r = &outcome.run;
            println!(
                "window ({}, {}]: SQL returned {rows} rows; run: {} matched, {} resolved, {} dropped, {} matches",
                r.from_version,
                r.to_version,
                r.matched,
                r.resolved,
                r.dropped,
                outcome.matches.len()
            );
            continue;
        }
        run_times.push(run_time);
        warm_times.push(warm_time);
        sql_times.push(sql_time);
        if let Some(duckdb) = duckdb_time {
            run_ratios.push(run_time.as_secs_f64() / duckdb);
            warm_ratios.push(warm_time.as_secs_f64() / duckdb);
        }
    }
    let (run, warm, sql) = (
        median(&mut run_times),
        median(&mut warm_times),
        median(&mut sql_times),
    );
    println!(
        "tripwire run_trigger (preview): median {run:.3}s of {runs}, {warm:.3}s with the tables kept open; SQL alone: {sql:.3}s"
    );
    let paired = (!run_ratios.is_empty()).then(|| Paired {
        run: median_of(&mut run_ratios),
        warm: median_of(&mut warm_ratios),
    });
    if let Some(p) = paired {
        println!(
            "paired with DuckDB run after each round: median run/duckdb {:.2}, warm/duckdb {:.2}",
            p.run, p.warm
        );
    }
    Ok(LibraryRuns {
        run,
        warm,
        sql,
        paired,
    })
}

/// The trigger's SQL over its window, the way a run plans it; returns the row count.
async fn trigger_sql(project: &Project, now: DateTime<Utc>) -> Result<usize> {
    let store = project.store();
    let CurrentWindow { events, window } = current_window(&store).await?;
    let spec = SessionSpec {
        store: &store,
        workspace: WORKSPACE,
        now,
        identity_ttl: project.config.identity_ttl,
        events: Some(&events),
    };
    let ctx = workspace_session(&spec).await?;
    ctx.register_table("new_events", new_events(Some(&events), window, None)?)?;
    let rows = plan_read_only(&ctx, &project.trigger.sql)
        .await?
        .collect()
        .await?;
    Ok(rows.iter().map(|b| b.num_rows()).sum())
}

/// The events table and the trigger's window over it.
struct CurrentWindow {
    events: DeltaTable,
    /// (the trigger's cursor, the events table's version].
    window: Window,
}

async fn current_window(store: &Store) -> Result<CurrentWindow> {
    let events = store
        .open(WORKSPACE, TableKind::Events)
        .await?
        .context("no events table")?;
    let ledger = store
        .open(WORKSPACE, TableKind::Ledger)
        .await?
        .context("no ledger: the cursor was never committed")?;
    let cursor = table::app_progress(&ledger, &cursor_app_id(TRIGGER)).await?;
    let window = Window {
        from: cursor.unwrap_or(-1),
        to: events.version().map_or(-1, |v| v as i64),
    };
    Ok(CurrentWindow { events, window })
}

fn median(times: &mut [Duration]) -> f64 {
    median_of(&mut times.iter().map(Duration::as_secs_f64).collect::<Vec<_>>())
}

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One `tripwire run` process, committing to a copy (tables hard-linked) of `store`
/// (Delta never rewrites a file, so the cached store stays as it was).
fn process_run(store: &Path, shape: &str, now: DateTime<Utc>) -> Result<f64> {
    let scratch = tempfile::tempdir_in(bench_data())?;
    let copy = scratch.path().join("store");
    copy_store(store, &copy)?;
    let project = Project::new(&copy, shape)?;
    let started = Instant::now();
    let stdout = tripwire_cli(
        &project.config_path(),
        &["run", TRIGGER, "--now", &now.to_rfc3339()],
    )?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", stdout.trim());
    println!("tripwire run process: {seconds:.3}s");
    Ok(seconds)
}

/// Runs the release `tripwire` binary with `--config`; returns its stdout.
fn tripwire_cli(config: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tripwire"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .context("run the tripwire binary")?;
    if !out.status.success() {
        bail!(
            "tripwire {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// benches/duckdb_trigger.py `--paired`, kept running: DuckDB timed on
/// the same trigger right after each round of tripwire's runs.
struct PairedDuckDb {
    child: std::process::Child,
    /// Closed on drop, which ends the script.
    ask: Option<std::process::ChildStdin>,
    answers: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl PairedDuckDb {
    /// The script started and past its setup; `None` (with why) when
    /// DuckDB or python `deltalake` is missing.
    fn start(
        project: &Project,
        current: &CurrentWindow,
        now: DateTime<Utc>,
    ) -> Result<Option<PairedDuckDb>> {
        use std::io::BufRead as _;
        let files = [project.trigger.path.clone()];
        let mut command = duckdb_command(current, now, project.config.identity_ttl, &files)?;
        let mut child = command
            .arg("--paired")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("run python3 benches/duckdb_trigger.py --paired")?;
        let ask = child.stdin.take().context("the script's stdin")?;
        let stdout = child.stdout.take().context("the script's stdout")?;
        let mut answers = std::io::BufReader::new(stdout).lines();
        match answers.next().transpose()? {
            Some(ready) => println!("{ready} (paired)"),
            None => {
                let status = child.wait()?;
                println!("DuckDB skipped for the paired runs: the script ended ({status})");
                return Ok(None);
            }
        }
        Ok(Some(PairedDuckDb {
            child,
            ask: Some(ask),
            answers,
        }))
    }

    /// Seconds of one DuckDB run, timed now.
    fn time_one_run(&mut self) -> Result<f64> {
        use std::io::Write as _;
        let ask = self.ask.as_mut().context("the script's stdin")?;
        writeln!(ask, "run")?;
        ask.flush()?;
        let line = self
            .answers
            .next()
            .context("duckdb_trigger.py --paired ended")??;
        line.strip_prefix("seconds=")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("duckdb_trigger.py --paired printed {line:?}"))
    }
}

impl Drop for PairedDuckDb {
    fn drop(&mut self) {
        drop(self.ask.take());
        let _ = self.child.wait();
    }
}

/// DuckDB's median over the same files, or `None` when DuckDB is missing.
fn duckdb_run(
    project: &Project,
    current: &CurrentWindow,
    now: DateTime<Utc>,
    runs: usize,
) -> Result<Option<f64>> {
    let files = [project.trigger.path.clone()];
    duckdb_queries(current, now, project.config.identity_ttl, &files, runs)
}

/// DuckDB's median for running every query in `sql_files` over the window
/// in one connection, or `None` when DuckDB is missing.
fn duckdb_queries(
    current: &CurrentWindow,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
    sql_files: &[PathBuf],
    runs: usize,
) -> Result<Option<f64>> {
    let mut command = duckdb_command(current, now, ttl, sql_files)?;
    let out = command
        .args(["--runs", &runs.to_string()])
        .output()
        .context("run python3 benches/duckdb_trigger.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    if !out.status.success() {
        println!(
            "DuckDB skipped: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Ok(None);
    }
    let seconds = stdout
        .lines()
        .find_map(|l| l.strip_prefix("median_seconds="))
        .and_then(|v| v.trim().parse().ok())
        .context("duckdb_trigger.py printed no median_seconds=")?;
    Ok(Some(seconds))
}

/// benches/duckdb_trigger.py over the window, every query in `sql_files`.
fn duckdb_command(
    current: &CurrentWindow,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
    sql_files: &[PathBuf],
) -> Result<Command> {
    let (events_url, window) = (current.events.table_url(), current.window);
    let events_path = events_url
        .to_file_path()
        .map_err(|_| anyhow::anyhow!("{events_url} is not a local path"))?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_trigger.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg("--table")
        .arg(events_path)
        .args(["--from", &window.from.to_string()])
        .args(["--to", &window.to.to_string()])
        .args(["--now", &now.to_rfc3339()])
        .args(["--ttl-seconds", &ttl.as_secs().to_string()]);
    for file in sql_files {
        command.arg("--sql").arg(file);
    }
    Ok(command)
}

/// The store of `shape` for `history` events plus a `window`, built once
/// and kept.
fn cached_store(shape: &str, history: u64, window: u64) -> Result<PathBuf> {
    let dir = bench_data().join(format!("trigger-store-v9-{shape}-{history}-{window}"));
    let ready = dir.join("READY");
    let store = dir.join("store");
    if ready.exists() {
        return Ok(store);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    println!("building {} (once)…", dir.display());
    let project = Project::new(&store, shape)?;
    history_with_cursor(&project, shape, history)?;
    import(&project, &window_file(shape, window)?)?;
    std::fs::write(&ready, b"")?;
    Ok(store)
}

/// Imports `history` events of `shape` and commits the trigger's cursor at
/// their end. That run defers the rows it cannot resolve (the
/// name/payload shape's anonymous ones: 84k of them); one event and a run
/// past their wait then settle them, as `serve`'s next tick would, so the
/// window's run meets the rows a run in a steady state leaves waiting, not
/// those of 46 days read in one run (a preview never settles them).
fn history_with_cursor(project: &Project, shape: &str, history: u64) -> Result<()> {
    let started = Instant::now();
    for file in (0..history.div_ceil(FILE_EVENTS)).rev() {
        let events = FILE_EVENTS.min(history - file * FILE_EVENTS);
        import(project, &history_file(shape, file, events)?)?;
    }
    let imported = started.elapsed().as_secs_f64();
    println!(
        "imported {history} events of history in {imported:.1}s ({:.0} events/s)",
        history as f64 / imported
    );
    let end = DateTime::from_timestamp_millis(HISTORY_END_MS).expect("a valid timestamp");
    let run_at = |at: DateTime<Utc>| {
        tripwire_cli(
            &project.config_path(),
            &["run", TRIGGER, "--now", &at.to_rfc3339()],
        )
    };
    println!("cursor committed: {}", run_at(end)?.trim());
    let settle = wild_file(
        &format!("wild-{shape}-settle-1"),
        shape,
        1,
        3_000,
        HISTORY_END_MS,
    )?;
    import(project, &settle)?;
    let past_the_wait = end + chrono::Duration::hours(2);
    println!("waiting rows settled: {}", run_at(past_the_wait)?.trim());
    Ok(())
}

fn import(project: &Project, file: &Path) -> Result<()> {
    let stdout = tripwire_cli(
        &project.config_path(),
        &["import", &file.display().to_string()],
    )?;
    println!("{}: {}", file.display(), stdout.trim());
    Ok(())
}

/// History file `index` of `shape` counts back from the end of the
/// history: file 0 holds the newest `events`, ending at [`HISTORY_END_MS`].
fn history_file(shape: &str, index: u64, events: u64) -> Result<PathBuf> {
    let end = HISTORY_END_MS - (index * FILE_EVENTS) as i64 * STEP_MS;
    let start = end - events as i64 * STEP_MS;
    let name = format!("wild-{shape}-history-{index}-{events}");
    wild_file(&name, shape, events, 1_000 + index, start)
}

/// The window's events of `shape`, right after the history.
fn window_file(shape: &str, events: u64) -> Result<PathBuf> {
    wild_file(
        &format!("wild-{shape}-window-{events}"),
        shape,
        events,
        2_000,
        HISTORY_END_MS,
    )
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

fn print_summary(settings: &Settings, all: &[Figures], flatness: Option<f64>) {
    println!(
        "\ntrigger: identity join over a window of {} events, median of {} runs",
        settings.window, settings.runs
    );
    println!(
        "{:>13} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>12} {:>15}",
        "shape",
        "history",
        "run",
        "warm",
        "sql",
        "process",
        "duckdb",
        "run/duckdb",
        "warm/duckdb",
        "process/duckdb"
    );
    for f in all {
        let duckdb = f.duckdb.map_or("-".into(), |d| format!("{d:.3}s"));
        let ratio = |x: f64| f.duckdb.map_or("-".into(), |d| format!("{:.2}", x / d));
        // Paired rounds, when DuckDB ran beside them, rather than two medians
        // taken minutes apart.
        let (run_ratio, warm_ratio) = match f.paired {
            Some(p) => (format!("{:.2}", p.run), format!("{:.2}", p.warm)),
            None => (ratio(f.run), ratio(f.warm)),
        };
        println!(
            "{:>13} {:>10} {:>8.3}s {:>8.3}s {:>8.3}s {:>8.3}s {:>9} {:>11} {:>12} {:>15}",
            f.shape,
            f.history,
            f.run,
            f.warm,
            f.sql,
            f.process,
            duckdb,
            run_ratio,
            warm_ratio,
            ratio(f.process)
        );
    }
    let first_shape: Vec<&Figures> = all.iter().filter(|f| f.shape == all[0].shape).collect();
    if let (Some(small), Some(large)) = (first_shape.first(), first_shape.last())
        && first_shape.len() > 1
    {
        let duckdb = match (small.duckdb, large.duckdb) {
            (Some(s), Some(l)) => format!("{:.2}", l / s),
            _ => "-".into(),
        };
        let paired = flatness.map_or(String::new(), |f| {
            format!(" ({f:.2} over rounds that run both)")
        });
        println!(
            "history {}/{}: run {:.2}{paired}, warm {:.2}, sql {:.2}, process {:.2}, duckdb {duckdb}",
            large.history,
            small.history,
            large.run / small.run,
            large.warm / small.warm,
            large.sql / small.sql,
            large.process / small.process
        );
    }
}
