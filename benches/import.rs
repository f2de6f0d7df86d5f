//! `cargo bench --bench import`: generates 1M sample events (~300 MB of
//! NDJSON, cached under target/bench-data), imports them with the release
//! `tripwire` binary into a fresh store, and prints events/s, MB/s and the
//! import process's peak RSS. `TRIPWIRE_BENCH_EVENTS=N` changes the size.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tripwire::sample::{SampleSpec, write_ndjson};

fn main() {
    let events: u64 = std::env::var("TRIPWIRE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let input = sample_file(events);
    let bytes = input.metadata().expect("sample file").len();
    let project = tempfile::tempdir().expect("temp dir");
    let config = project.path().join("tripwire.toml");
    std::fs::write(
        &config,
        "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\n",
    )
    .expect("config");

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tripwire"))
        .arg("import")
        .arg(&input)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run tripwire import");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    println!(
        "import: {events} events, {:.1} MB in {seconds:.2}s = {:.0} events/s, {:.1} MB/s, peak RSS {} MB",
        bytes as f64 / 1e6,
        events as f64 / seconds,
        bytes as f64 / 1e6 / seconds,
        peak_child_rss_kb() / 1024
    );
}

/// The sample file for `events`, generated once and kept under target/.
fn sample_file(events: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let path = dir.join(format!("events-{events}.ndjson"));
    if !path.exists() {
        let partial = path.with_extension("partial");
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&partial).expect("create sample"));
        let spec = SampleSpec {
            events,
            seed: 42,
            ..SampleSpec::default()
        };
        write_ndjson(&spec, &mut out).expect("write sample");
        drop(out);
        std::fs::rename(&partial, &path).expect("rename sample");
    }
    path
}

/// Peak resident set of the largest finished child, in KiB.
fn peak_child_rss_kb() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss
}
