//! Triggers (docs/reference.md "Triggers"): an analyst's SQL over a
//! workspace's new events, run on a schedule. A whole run (window, flows,
//! one commit) is composed above this, in `run`.
//!
//! - `file`: trigger files and their header.
//! - `evaluate`: the query over a run's session, resolved to matches.
//! - `cursor`: where a trigger's next window starts, and an operator's move of it.
//! - `health`: failures in a row, and whether a trigger is paused; `resume`
//!   runs a paused one again.
//! - `status`: what each trigger is doing, and its run history.

pub mod cursor;
pub mod evaluate;
pub mod file;
pub mod health;
pub mod resume;
pub mod status;

use std::path::Path;

pub use file::TriggerFile;

use crate::project::{FileError, TRIGGER_DIR, load_files};

/// Reads every `*.sql` file in the project's trigger folder, sorted by name.
/// Files that do not parse are returned as errors; the others still load.
pub fn load_triggers(project_dir: &Path) -> (Vec<TriggerFile>, Vec<FileError>) {
    load_files(
        &project_dir.join(TRIGGER_DIR),
        "sql",
        TriggerFile::parse_all,
    )
}
