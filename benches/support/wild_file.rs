//! The events of benches/wild_events.py (an independent generator: nested
//! properties, identify calls, anonymous visitors), one file per shape and
//! size, generated once and kept under target/bench-data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `events` events of `shape`. Written to a `.partial` file first and
/// renamed, so an interrupted run leaves no half file behind.
pub fn wild_events(shape: &str, events: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let path = dir.join(format!("wild-{shape}-{events}.ndjson"));
    if !path.exists() {
        let partial = path.with_extension("partial");
        let status = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wild_events.py"))
            .args(["--shape", shape, "--events", &events.to_string(), "--out"])
            .arg(&partial)
            .stdout(Stdio::null())
            .status()
            .expect("run benches/wild_events.py");
        assert!(status.success(), "wild_events.py --shape {shape} failed");
        std::fs::rename(&partial, &path).expect("rename the events file");
    }
    path
}
