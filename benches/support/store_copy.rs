//! A cheap, independent copy of a cached bench store for one timed run.
//!
//! Parquet files and Delta log entries are never changed in place (written
//! once, or `_last_checkpoint` replaced by a rename), so they are
//! hard-linked (a 10M-event store copies in milliseconds). Every
//! other file is copied: some are changed in place, like the claim journal
//! (`store::journal`), which appends to its `log`. Linking those would let
//! one run's appends reach the cached store and every later copy (a second
//! run then found the first run's claims held and delivered nothing).

use std::path::Path;

use anyhow::{Context, Result};

/// Copies the folder `from` to `to`: immutable table files linked, the
/// rest copied.
pub fn copy_store(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_store(&source, &target)?;
        } else if is_immutable(&source) {
            std::fs::hard_link(&source, &target)
                .with_context(|| format!("link {}", source.display()))?;
        } else {
            std::fs::copy(&source, &target)
                .with_context(|| format!("copy {}", source.display()))?;
        }
    }
    Ok(())
}

/// A Parquet file, or a file in a Delta log: never changed in place.
fn is_immutable(path: &Path) -> bool {
    let in_delta_log = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|folder| folder == "_delta_log");
    in_delta_log || path.extension().is_some_and(|ext| ext == "parquet")
}
