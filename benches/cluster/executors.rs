//! The `executors` section of `cargo bench --bench cluster` (build with
//! `--features cluster`; without it the section says so and is skipped):
//! the trigger bench's query (benches/trigger.rs: the window's
//! `cart_abandoned` events joined to `identities`, with a JSON function) as
//! one committed `tripwire run` process through `[engine] ballista`, on a
//! scheduler with 1 and then 2 executors, each a `tripwire cluster` child
//! process on loopback; the in-process engine alongside, and the 1-vs-2
//! ratio (near 1 on a 2-core machine: the executors share its cores). The
//! store holds `TRIPWIRE_BENCH_HISTORY` (default 1M) events of
//! benches/wild_events.py's `collect` shape (the trigger bench's files,
//! shared under target/bench-data/), the trigger's cursor at their end,
//! then a `TRIPWIRE_BENCH_WINDOW` (default 100k) of new events; built once.
//! Each figure is the median of `TRIPWIRE_BENCH_RUNS` (default 5) runs
//! after a warm-up, each on a copy (tables hard-linked) of the store.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::DateTime;

use crate::store_copy::copy_store;

const WORKSPACE: &str = "shop";
const TRIGGER: &str = "bench_identity";
const TRIGGER_SQL: &str = "\
-- description: cart_abandoned events of the window joined to identities (cargo bench --bench cluster).
-- workspace: shop
-- backfill: all
-- requires_identity: true
SELECT n.client_id, i.email, json_get_float(n.properties, 'cart_value') AS cart_value
FROM new_events n JOIN identities i ON i.client_id = n.client_id
WHERE n.event_name = 'cart_abandoned'
";
/// The input shape of benches/wild_events.py the store is built from.
const SHAPE: &str = "collect";
/// Events per generated history file (the trigger bench's files).
const FILE_EVENTS: u64 = 1_000_000;
/// Milliseconds between consecutive events (as the trigger bench).
const STEP_MS: i64 = 4_000;
/// Where the history ends and the window begins: 2026-11-01T00:00:00Z.
const HISTORY_END_MS: i64 = 1_793_491_200_000;
/// The run's clock is this long after the window's nominal end.
const CLOCK_AFTER_WINDOW_MS: i64 = 3_600_000;
/// How long a cluster process may take to listen.
const PATIENCE: Duration = Duration::from_secs(120);
fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .with_context(|| format!("{name}: {text:?} is not a count")),
        Err(_) => Ok(default),
    }
}

/// The `executors` section.
pub fn executors() -> Result<()> {
    if !cfg!(feature = "cluster") {
        bail!("skipped: `tripwire cluster` needs the bench built with `--features cluster`");
    }
    let history = env_u64("TRIPWIRE_BENCH_HISTORY", 1_000_000)?;
    let window = env_u64("TRIPWIRE_BENCH_WINDOW", 100_000)?;
    let runs = env_u64("TRIPWIRE_BENCH_RUNS", 5)?.max(1) as usize;
    println!("{SHAPE}, history {history}, window {window}, {runs} runs");
    let store = cached_store(history, window)?;
    let local = timed_runs(&store, "", window, runs)?;
    println!("in-process: {local:.3}s");
    let mut figures = Vec::new();
    for executors in [1, 2] {
        let cluster = Cluster::start(executors)?;
        let seconds = timed_runs(&store, &cluster.engine(), window, runs)?;
        println!("{executors} executor(s): {seconds:.3}s");
        figures.push(seconds);
    }
    println!(
        "\nexecutors: in-process {local:.3}s, 1 executor {:.3}s, 2 executors {:.3}s; \
         1/2 executors ratio {:.2} (cores: {})",
        figures[0],
        figures[1],
        figures[0] / figures[1],
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    Ok(())
}

/// The median of `runs` committed `tripwire run` processes (after one
/// warm-up), each on a fresh copy (tables hard-linked) of `store`, with `engine`
/// config.
fn timed_runs(store: &Path, engine: &str, window: u64, runs: usize) -> Result<f64> {
    let now = DateTime::from_timestamp_millis(
        HISTORY_END_MS + window as i64 * STEP_MS + CLOCK_AFTER_WINDOW_MS,
    )
    .context("a valid clock")?
    .to_rfc3339();
    let mut times = Vec::new();
    for round in 0..=runs {
        let scratch = tempfile::tempdir_in(bench_data())?;
        let copy = scratch.path().join("store");
        copy_store(store, &copy)?;
        let project = project_with(&copy, engine)?;
        let started = Instant::now();
        let stdout = tripwire_cli(
            &project.path().join("tripwire.toml"),
            &["run", TRIGGER, "--now", &now],
        )?;
        let elapsed = started.elapsed();
        if !stdout.contains("committed run") {
            bail!("the run committed nothing:\n{stdout}");
        }
        if round > 0 {
            times.push(elapsed);
        }
    }
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64())
}

/// A scheduler and executors (`tripwire cluster …` children), killed when dropped.
struct Cluster {
    scheduler: SocketAddr,
    children: Vec<Child>,
    _work: tempfile::TempDir,
}

impl Cluster {
    fn start(executors: usize) -> Result<Cluster> {
        let work = tempfile::tempdir_in(bench_data())?;
        let scheduler = loopback(free_port()?);
        let mut cluster = Cluster {
            scheduler,
            children: Vec::new(),
            _work: work,
        };
        cluster.spawn(&["cluster", "scheduler", "--bind", &scheduler.to_string()])?;
        cluster.wait_listening(scheduler)?;
        for n in 0..executors {
            let (flight, grpc) = (loopback(free_port()?), loopback(free_port()?));
            let dir = cluster._work.path().join(format!("executor{n}"));
            std::fs::create_dir_all(&dir)?;
            cluster.spawn(&[
                "cluster",
                "executor",
                "--scheduler",
                &format!("df://{scheduler}"),
                "--bind",
                &flight.to_string(),
                "--grpc-port",
                &grpc.port().to_string(),
                "--work-dir",
                &dir.display().to_string(),
            ])?;
            cluster.wait_listening(flight)?;
            cluster.wait_listening(grpc)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, args: &[&str]) -> Result<()> {
        let child = Command::new(env!("CARGO_BIN_EXE_tripwire"))
            .args(args)
            .current_dir(self._work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start tripwire cluster")?;
        self.children.push(child);
        Ok(())
    }

    /// Polls until `addr` accepts connections; fails after [`PATIENCE`] or
    /// when the last child exits.
    fn wait_listening(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if let Some(status) = self.children.last_mut().and_then(|c| c.try_wait().ok()?) {
                bail!("a cluster process exited before listening on {addr}: {status}");
            }
            if Instant::now() > deadline {
                bail!("nothing listens on {addr} after {PATIENCE:?}");
            }
            std::thread::yield_now();
        }
        Ok(())
    }

    fn engine(&self) -> String {
        format!("[engine]\nballista = \"df://{}\"\n", self.scheduler)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The history with the trigger's cursor at its end, then the window; built once.
fn cached_store(history: u64, window: u64) -> Result<PathBuf> {
    let dir = bench_data().join(format!("cluster-v1-{SHAPE}-{history}-{window}"));
    let (ready, store) = (dir.join("READY"), dir.join("store"));
    if ready.exists() {
        return Ok(store);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    println!("building {} (once)…", dir.display());
    let project = project_with(&store, "")?;
    let config = project.path().join("tripwire.toml");
    for file in (0..history.div_ceil(FILE_EVENTS)).rev() {
        let events = FILE_EVENTS.min(history - file * FILE_EVENTS);
        let end = HISTORY_END_MS - (file * FILE_EVENTS) as i64 * STEP_MS;
        let name = format!("wild-{SHAPE}-history-{file}-{events}");
        let path = wild_file(&name, events, 1_000 + file, end - events as i64 * STEP_MS)?;
        tripwire_cli(&config, &["import", &path.display().to_string()])?;
    }
    let end = DateTime::from_timestamp_millis(HISTORY_END_MS).context("a valid clock")?;
    tripwire_cli(&config, &["run", TRIGGER, "--now", &end.to_rfc3339()])?;
    let name = format!("wild-{SHAPE}-window-{window}");
    let path = wild_file(&name, window, 2_000, HISTORY_END_MS)?;
    tripwire_cli(&config, &["import", &path.display().to_string()])?;
    std::fs::write(&ready, b"")?;
    Ok(store)
}

/// A project folder storing in `store`, with the bench trigger and `extra` config.
fn project_with(store: &Path, extra: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir_in(bench_data())?;
    std::fs::write(
        dir.path().join("tripwire.toml"),
        format!(
            "storage = \"{}\"\n[[workspace]]\nid = \"{WORKSPACE}\"\n{extra}",
            store.display()
        ),
    )?;
    let folder = dir.path().join("queries/triggers");
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join(format!("{TRIGGER}.sql")), TRIGGER_SQL)?;
    Ok(dir)
}

/// `target/bench-data/<name>.ndjson`, generated by benches/wild_events.py once.
fn wild_file(name: &str, events: u64, seed: u64, start_ms: i64) -> Result<PathBuf> {
    let path = bench_data().join(format!("{name}.ndjson"));
    if path.exists() {
        return Ok(path);
    }
    let partial = path.with_extension("partial");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wild_events.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--shape", SHAPE])
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

fn bench_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data")
}

/// Runs the bench build's `tripwire` binary with `--config`; returns its stdout.
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
