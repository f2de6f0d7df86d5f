//! `cargo bench --bench import`: `tripwire import` of each event shape next
//! to DuckDB doing the same file's `read_json` → zstd Parquet, in the same
//! run, so the ratio holds on a loaded machine.
//!
//! The events come from an independent generator, benches/wild_events.py
//! (collect envelopes, Segment calls, name/payload events, each with nested
//! properties, identifies and anonymous visitors), one file per shape,
//! cached under target/bench-data. Each run imports the file into a fresh
//! store with the release binary and then runs benches/duckdb_import.py on
//! it; every line gives the wall time and the CPU seconds (user + system,
//! from the process's own `wait4` rusage) of both, tripwire's peak RSS,
//! and tripwire's time as a fraction of DuckDB's. A shape ends with the
//! medians of its runs, after one uncounted round that warms the page
//! cache. Nothing is asserted about speed.
//!
//! - `TRIPWIRE_BENCH_EVENTS` (default 1000000): events per file.
//! - `TRIPWIRE_BENCH_RUNS` (default 3): runs per shape.
//! - `TRIPWIRE_BENCH_SHAPES` (default `collect,segment,name_payload`; empty:
//!   none, only the lived log).
//! - `TRIPWIRE_BENCH_LIVED_COMMITS` (default 86400, a day of commits at one a
//!   second; 0 skips it): the size of the lived log below.
//!
//! Last, a commit on a store that has lived: `tripwire import` of 1,000
//! events into a store whose events log holds a day of commits (kept for
//! `delta.logRetentionDuration`, the table checkpointed as maintenance
//! leaves it), next to the same import into a young store of the same rows
//! (each into a copy of its store). Its cost must not grow with the log
//! (docs/architecture.md "Commits").
//!
//! DuckDB is skipped, with a note, when `python3 -c 'import duckdb'` fails.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "support/lived_log.rs"]
mod lived_log;
#[path = "support/store_copy.rs"]
mod store_copy;
#[path = "support/wild_file.rs"]
mod wild_file;
use lived_log::lived_log_store;
use store_copy::copy_store;
use wild_file::wild_events;

const SHAPES: &str = "collect,segment,name_payload";

fn main() {
    let events = env_number("TRIPWIRE_BENCH_EVENTS", 1_000_000);
    let runs = env_number("TRIPWIRE_BENCH_RUNS", 3).max(1);
    let shapes = std::env::var("TRIPWIRE_BENCH_SHAPES").unwrap_or_else(|_| SHAPES.into());
    let duckdb = duckdb_available();
    if !duckdb {
        println!("duckdb: `python3 -c 'import duckdb'` fails; tripwire alone");
    }
    for shape in shapes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let input = wild_events(shape, events);
        let mb = input.metadata().expect("the events file").len() as f64 / 1e6;
        println!("{shape}: {events} events, {mb:.1} MB ({})", input.display());
        // One uncounted round first: it reads the binaries and the file
        // into the page cache (a freshly built tripwire took half a second
        // longer on its first import than on the next).
        import(&input);
        if duckdb {
            duckdb_import(&input);
        }
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for run in 1..=runs {
            let tripwire = import(&input);
            let duck = duckdb.then(|| duckdb_import(&input));
            println!(
                "  run {run}: tripwire {} (peak RSS {} MB){}",
                tripwire.describe(),
                tripwire.max_rss_kb / 1024,
                ratio_text(&tripwire, duck.as_ref())
            );
            ours.push(tripwire);
            theirs.extend(duck);
        }
        let ours = Measured::median(&ours);
        let theirs = (!theirs.is_empty()).then(|| Measured::median(&theirs));
        println!(
            "{shape} median of {runs}: tripwire {} = {:.0} events/s{}",
            ours.describe(),
            events as f64 / ours.wall,
            ratio_text(&ours, theirs.as_ref())
        );
    }
    let lived_commits = env_number("TRIPWIRE_BENCH_LIVED_COMMITS", 86_400);
    if lived_commits > 0 {
        compare_lived_log(&wild_events("collect", events), lived_commits, runs);
    }
}

/// Events per import of the lived-log comparison.
const SMALL_IMPORT: usize = 1_000;

/// A small import into a store whose log holds `commits` commits, against
/// the same import into a store of the same data without them.
fn compare_lived_log(events: &Path, commits: u64, runs: u64) {
    let seed = small_file(events, 0);
    let lived = lived_log_store(&seed, commits);
    let young = lived_log_store(&seed, 0);
    println!(
        "lived log: {commits} commits in the events table's log ({})",
        lived.display()
    );
    let (mut on_lived, mut on_young) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let file = small_file(events, run as usize);
        let lived_run = import_into_copy(&lived, &file);
        let young_run = import_into_copy(&young, &file);
        println!(
            "  run {run}: {SMALL_IMPORT} events, lived {}, young {}",
            lived_run.describe(),
            young_run.describe()
        );
        on_lived.push(lived_run);
        on_young.push(young_run);
    }
    let (lived_run, young_run) = (Measured::median(&on_lived), Measured::median(&on_young));
    println!(
        "lived log median of {runs}: {SMALL_IMPORT} events, lived {}, young {}; lived/young time {:.2} (goal: 1)",
        lived_run.describe(),
        young_run.describe(),
        lived_run.wall / young_run.wall
    );
}

/// `tripwire import FILE` into a copy of the store `template`
/// (`store_copy`: table files linked), so the template stays as built.
fn import_into_copy(template: &Path, input: &Path) -> Measured {
    let copy = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    copy_store(template, copy.path()).expect("copy the store");
    measured(import_command(input, &copy.path().join("tripwire.toml"))).0
}

/// `SMALL_IMPORT` lines of `events`, the `index`th such slice, as a file
/// of its own under target/tmp (each a new file to the store).
fn small_file(events: &Path, index: usize) -> PathBuf {
    let file = std::fs::File::open(events).expect("the events file");
    let lines: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(file))
        .skip(index * SMALL_IMPORT)
        .take(SMALL_IMPORT)
        .collect::<Result<_, _>>()
        .expect("read the events file");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("small-{index}.ndjson"));
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the small file");
    path
}

/// `dir/tripwire.toml`: one workspace, `shop`, stored in `dir/store`.
fn write_config(dir: &Path) -> PathBuf {
    let config = dir.join("tripwire.toml");
    std::fs::write(
        &config,
        "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\n",
    )
    .expect("config");
    config
}

fn import_command(input: &Path, config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tripwire"));
    command.arg("import").arg(input).arg("--config").arg(config);
    command
}

fn ratio_text(ours: &Measured, theirs: Option<&Measured>) -> String {
    match theirs {
        Some(duck) => format!(
            "; duckdb {}; tripwire/duckdb time {:.2}, CPU {:.2}",
            duck.describe(),
            ours.wall / duck.wall,
            ours.cpu / duck.cpu
        ),
        None => String::new(),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}: a number"))
    })
}

/// One process's cost.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Wall seconds.
    wall: f64,
    /// User + system CPU seconds of the process and its threads.
    cpu: f64,
    max_rss_kb: i64,
}

impl Measured {
    fn describe(&self) -> String {
        format!("{:.2} s, {:.2} CPU-s", self.wall, self.cpu)
    }

    /// The median of each figure on its own.
    fn median(all: &[Measured]) -> Measured {
        let median = |f: fn(&Measured) -> f64| {
            let mut values: Vec<f64> = all.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Measured {
            wall: median(|m| m.wall),
            cpu: median(|m| m.cpu),
            max_rss_kb: median(|m| m.max_rss_kb as f64) as i64,
        }
    }
}

/// Runs `command` to the end, its stdout captured; the child's own rusage.
// The child is reaped by wait4 (which std's `wait` cannot report).
#[allow(clippy::zombie_processes)]
fn measured(mut command: Command) -> (Measured, String) {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the process");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read its stdout");
    let mut status = 0;
    // SAFETY: wait4 on our own child, writing into structs we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed ({status}): {stdout}"
    );
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let figures = Measured {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss,
    };
    (figures, stdout)
}

/// `tripwire import FILE` into a fresh store under target/tmp.
fn import(input: &Path) -> Measured {
    let project = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let config = write_config(project.path());
    measured(import_command(input, &config)).0
}

/// benches/duckdb_import.py on the same file; its process's costs.
fn duckdb_import(input: &Path) -> Measured {
    let mut command = Command::new("python3");
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_import.py"))
        .arg(input);
    measured(command).0
}

fn duckdb_available() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
