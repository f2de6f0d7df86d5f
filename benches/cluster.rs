//! `cargo bench --bench cluster`: tripwire beyond one machine, in
//! independent sections (each a function of `main`, run in turn; one
//! failing prints why and the others still run).
//!
//! **`executors`** (benches/cluster/executors.rs; `--features cluster`): the
//! trigger bench's run on a Ballista cluster of 1 and of 2 executors, the
//! in-process engine alongside, and the 1-vs-2 ratio.
//!
//! **`s3_vs_local`**: the same steps on a local store and on an S3 store
//! served by moto's S3 server (`pip install 'moto[server]'`; the section is
//! skipped with a message without it), times side by side. The events come
//! from benches/wild_events.py (shape `TRIPWIRE_BENCH_SHAPE`, default
//! `segment`), `TRIPWIRE_BENCH_S3_EVENTS` (default 100k) in four NDJSON
//! files, generated once under target/bench-data. Timed, each as one
//! release `tripwire` process, spawn to exit:
//! - `import`: the four local files into the store;
//! - `import s3://`: the same files uploaded to the bucket, imported with
//!   an `s3://…/*.ndjson` glob into a second store (S3 only);
//! - `run`: one trigger run over every imported event (the window joined
//!   to `identities`, as benches/trigger.rs does), committing its matches.
//!
//! moto is a Python server in one process: its times are an upper bound on
//! the request overhead, not a forecast of AWS S3.
//!
//! Environment: `TRIPWIRE_BENCH_SECTIONS` (default `s3_vs_local,executors`),
//! `TRIPWIRE_BENCH_SHAPE`, `TRIPWIRE_BENCH_S3_EVENTS`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The bucket the S3 stores live in.
const BUCKET: &str = "tripwire-bench";
/// Files the events are split into.
const FILES: u64 = 4;
/// The wild events' clock: one event every 4 s from 2026-10-01.
const START_MS: i64 = 1_790_812_800_000;
const STEP_MS: i64 = 4_000;
/// How long moto may take to start.
const MOTO_START: Duration = Duration::from_secs(60);

const TRIGGER_SQL: &str = "\
-- description: the window joined to identities (cargo bench --bench cluster).
-- backfill: all
-- requires_identity: true
SELECT n.client_id, i.email, json_get_float(n.properties, 'cart_value') AS cart_value
FROM new_events n JOIN identities i ON i.client_id = n.client_id
WHERE n.event_name = 'cart_abandoned'
";

#[path = "cluster/executors.rs"]
mod executors;
#[path = "support/store_copy.rs"]
mod store_copy;

/// One section of the bench: its name and what it runs.
type Section = (&'static str, fn() -> Result<()>);

fn main() {
    let sections: [Section; 2] = [
        ("s3_vs_local", s3_vs_local),
        ("executors", executors::executors),
    ];
    let chosen =
        std::env::var("TRIPWIRE_BENCH_SECTIONS").unwrap_or_else(|_| "s3_vs_local,executors".into());
    for (name, section) in sections {
        if !chosen.split(',').any(|c| c.trim() == name) {
            continue;
        }
        println!("== {name}");
        if let Err(e) = section() {
            println!("{name} failed: {e:#}");
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data")
}

/// `FILES` NDJSON files of `events` wild events in all, generated once.
fn wild_files(shape: &str, events: u64) -> Result<Vec<PathBuf>> {
    let dir = bench_data().join(format!("cluster-{shape}-{events}"));
    std::fs::create_dir_all(&dir)?;
    let per_file = events / FILES;
    (0..FILES)
        .map(|i| {
            let path = dir.join(format!("part-{i}.ndjson"));
            if path.exists() {
                return Ok(path);
            }
            let partial = path.with_extension("partial");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wild_events.py");
            let start = START_MS + (i * per_file) as i64 * STEP_MS;
            let out = Command::new("python3")
                .arg(script)
                .args(["--shape", shape, "--events", &per_file.to_string()])
                .args(["--seed", &(40 + i).to_string()])
                .args(["--start-ms", &start.to_string()])
                .args(["--step-ms", &STEP_MS.to_string()])
                .arg("--out")
                .arg(&partial)
                .output()
                .context("run python3 benches/wild_events.py")?;
            if !out.status.success() {
                bail!("wild_events.py: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::fs::rename(&partial, &path)?;
            Ok(path)
        })
        .collect()
}

/// A moto S3 server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts moto with an empty bucket; `None` when moto is not installed.
    fn start() -> Result<Option<Moto>> {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server, flask"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            return Ok(None);
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start moto")?;
        let moto = Moto { child, port };
        let started = Instant::now();
        while moto.put(&format!("/{BUCKET}"), b"").is_err() {
            if started.elapsed() > MOTO_START {
                bail!("moto did not start within {MOTO_START:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Some(moto))
    }

    /// A plain HTTP PUT (moto takes unsigned requests); fails unless 200.
    fn put(&self, path: &str, body: &[u8]) -> Result<()> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        match answer.split_whitespace().nth(1) {
            Some("200") => Ok(()),
            other => bail!("PUT {path}: {other:?}"),
        }
    }

    fn storage(&self, prefix: &str) -> String {
        format!(
            "[storage]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"http://127.0.0.1:{}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"bench\"\nsecret_access_key = \"bench\"\n\
             allow_http = true\n",
            self.port
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project folder with the bench trigger, stored as `storage` says.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(storage: &str) -> Result<Project> {
        let dir = tempfile::tempdir()?;
        let config = format!("{storage}\n[[workspace]]\nid = \"shop\"\n");
        std::fs::write(dir.path().join("tripwire.toml"), config)?;
        let triggers = dir.path().join("queries/triggers");
        std::fs::create_dir_all(&triggers)?;
        std::fs::write(triggers.join("bench_identity.sql"), TRIGGER_SQL)?;
        Ok(Project { dir })
    }

    /// Runs `tripwire ARGS`; the seconds it took and its stdout.
    fn timed(&self, args: &[&str]) -> Result<(f64, String)> {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_tripwire"))
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("tripwire.toml"))
            .current_dir(self.dir.path())
            .output()
            .context("run tripwire")?;
        let seconds = started.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "tripwire {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((seconds, String::from_utf8(out.stdout)?))
    }

    /// `SELECT count(*) …` as a number.
    fn count(&self, sql: &str) -> Result<u64> {
        let (_, out) = self.timed(&["query", sql, "--format", "csv"])?;
        out.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .context("a count")
    }
}

/// The times of one store's steps.
struct Times {
    import: f64,
    import_s3: Option<f64>,
    run: f64,
    matches: u64,
}

fn s3_vs_local() -> Result<()> {
    let shape = std::env::var("TRIPWIRE_BENCH_SHAPE").unwrap_or_else(|_| "segment".into());
    let events = env_number("TRIPWIRE_BENCH_S3_EVENTS", 100_000);
    let Some(moto) = Moto::start()? else {
        println!("skipped: `pip install 'moto[server]'` to compare with an S3 store");
        return Ok(());
    };
    let files = wild_files(&shape, events)?;
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .context("a name")?;
        moto.put(&format!("/{BUCKET}/in/{name}"), &std::fs::read(file)?)?;
    }
    let local = steps(&Project::new("storage = \"./store\"")?, &files, None)?;
    let glob = format!("s3://{BUCKET}/in/*.ndjson");
    let s3 = steps(
        &Project::new(&moto.storage("local-files"))?,
        &files,
        Some((&Project::new(&moto.storage("s3-files"))?, &glob)),
    )?;
    if s3.matches != local.matches {
        bail!(
            "the S3 store matched {} rows, the local store {}",
            s3.matches,
            local.matches
        );
    }
    println!(
        "{events} events of shape {shape} in {FILES} files; one trigger run over all of them \
         ({} matches)",
        local.matches
    );
    println!(
        "{:<28} {:>10} {:>10} {:>8}",
        "step", "local s", "moto s", "ratio"
    );
    let row = |name: &str, local: f64, s3: f64| {
        println!("{name:<28} {local:>10.2} {s3:>10.2} {:>8.2}", s3 / local);
    };
    row("import (local files)", local.import, s3.import);
    if let Some(from_s3) = s3.import_s3 {
        row("import s3://…/*.ndjson", local.import, from_s3);
    }
    row("run (commit included)", local.run, s3.run);
    Ok(())
}

/// Imports `files` into `project`, runs the trigger once; with `from_s3`,
/// also imports the glob into that second project.
fn steps(project: &Project, files: &[PathBuf], from_s3: Option<(&Project, &str)>) -> Result<Times> {
    let mut args = vec!["import".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (import, _) = project.timed(&args)?;
    let import_s3 = match from_s3 {
        Some((other, glob)) => Some(other.timed(&["import", glob])?.0),
        None => None,
    };
    let now = START_MS + (env_number("TRIPWIRE_BENCH_S3_EVENTS", 100_000) as i64 + 900) * STEP_MS;
    let now = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now)
        .context("a time")?
        .to_rfc3339();
    let (run, _) = project.timed(&["run", "--now", &now])?;
    let matches = project.count("SELECT count(*) FROM matches")?;
    Ok(Times {
        import,
        import_s3,
        run,
        matches,
    })
}
