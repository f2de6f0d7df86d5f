//! A store whose events log has lived, for the benches that compare a
//! store like that with a young one (docs/architecture.md "Commits").
//!
//! tripwire keeps a day of log (`delta.logRetentionDuration`): a store
//! that commits once a second holds 86,400 commit files in `_delta_log`,
//! the table checkpointed as maintenance leaves it. The store here is one
//! import of a seed file, then that many commits of commit info only (as
//! quiet flushes leave), then `tripwire optimize` for the checkpoint. It is
//! built once under target/bench-data (about a minute and a half for a day
//! of commits); copy it (`store_copy`) before writing to it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// `dir/tripwire.toml` (workspace `shop`, stored in `dir/store`) with the
/// events of `seed` imported, and `commits` more commits in the events
/// log; built once per seed file name and count.
pub fn lived_log_store(seed: &Path, commits: u64) -> PathBuf {
    let name = seed.file_stem().and_then(|s| s.to_str()).unwrap_or("seed");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(format!("lived-log-v3-{name}-{commits}"));
    if dir.join("ready").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the lived store's folder");
    let config = dir.join("tripwire.toml");
    std::fs::write(
        &config,
        "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\n",
    )
    .expect("config");
    run(tripwire(&config).arg("import").arg(seed));
    let started = Instant::now();
    add_quiet_commits(&dir.join("store/shop/events/_delta_log"), commits);
    run(tripwire(&config).arg("optimize"));
    if commits > 0 {
        println!(
            "lived log: {commits} commits written and checkpointed in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    std::fs::write(dir.join("ready"), "").expect("mark the store ready");
    dir
}

/// Writes `commits` commits of commit info only after the last in `log`.
fn add_quiet_commits(log: &Path, commits: u64) {
    let first = (0..)
        .find(|v| !log.join(format!("{v:020}.json")).exists())
        .expect("a free version");
    for version in first..first + commits {
        let info = format!(
            "{{\"commitInfo\":{{\"timestamp\":{},\"operation\":\"WRITE\",\"operationParameters\":{{\"mode\":\"Append\"}}}}}}\n",
            1_790_000_000_000 + version
        );
        std::fs::write(log.join(format!("{version:020}.json")), info).expect("a commit");
    }
}

fn tripwire(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tripwire"));
    command.arg("--config").arg(config);
    command
}

fn run(command: &mut Command) {
    let out = command.output().expect("run tripwire");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
