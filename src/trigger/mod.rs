//! Triggers (SPEC §6): an analyst's SQL over a workspace's new events, run on
//! a schedule.
//!
//! - `file`: trigger files and their header.
//! - `window`: the new events of a run, by table version.
//! - `resolve`: identity resolution and collapsing rows to matches.
//! - `run`: one run, committed atomically with its cursor.
//! - `status`: what each trigger is doing, and its run history.

pub mod file;
pub mod resolve;
pub mod run;
pub mod status;
pub mod window;

use std::path::Path;

pub use file::{FileError, TriggerFile};

/// Folder of trigger files inside a project.
pub const TRIGGER_DIR: &str = "queries/triggers";

/// The files in `dir` ending in `.{extension}`, sorted by name (none when
/// the folder does not exist). Triggers, flows and segments are read this way.
pub fn files_with_extension(dir: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == extension))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
}

/// Reads every `*.sql` file in the project's trigger folder, sorted by name.
/// Files that do not parse are returned as errors; the others still load.
pub fn load_triggers(project_dir: &Path) -> (Vec<TriggerFile>, Vec<FileError>) {
    let dir = project_dir.join(TRIGGER_DIR);
    let paths = files_with_extension(&dir, "sql");
    let mut triggers = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| FileError {
                path: path.display().to_string(),
                line: 1,
                reason: e.to_string(),
            })
            .and_then(|text| TriggerFile::parse(&path, &text));
        match parsed {
            Ok(trigger) => triggers.push(trigger),
            Err(e) => errors.push(e),
        }
    }
    (triggers, errors)
}
