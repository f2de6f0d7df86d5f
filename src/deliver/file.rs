//! File deliveries: append NDJSON lines, one write per line, and fsync each
//! file once per batch before its deliveries are recorded as delivered.
//! A crash between the write and the record writes the line again on the
//! next pass (at least once): each line carries its `delivery_id`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::webhook::Attempted;

/// Appends `lines` (path, line) in order; returns one outcome per line. A
/// file that cannot be written fails all of its lines (and is retried).
pub fn append_lines(lines: &[(PathBuf, String)]) -> Vec<Attempted> {
    let mut by_file: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for (path, line) in lines {
        by_file.entry(path).or_default().push(line);
    }
    let results: BTreeMap<&Path, Result<(), String>> = by_file
        .into_iter()
        .map(|(path, lines)| (path, append_to(path, &lines)))
        .collect();
    lines
        .iter()
        .map(|(path, _)| match &results[path.as_path()] {
            Ok(()) => Attempted::delivered(None),
            Err(e) => Attempted::transient(e.clone()),
        })
        .collect()
}

/// Appends every line to one file and fsyncs it.
fn append_to(path: &Path, lines: &[&str]) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail("cannot create the folder of", e))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| fail("cannot open", e))?;
    let mut buffer = Vec::new();
    for line in lines {
        buffer.clear();
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        // One write per line: an O_APPEND write lands whole, so lines of
        // concurrent writers never interleave.
        file.write_all(&buffer)
            .map_err(|e| fail("cannot write", e))?;
    }
    file.sync_all().map_err(|e| fail("cannot fsync", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_to_their_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("nested/a.ndjson");
        let b = dir.path().join("b.ndjson");
        std::fs::write(&b, "old\n").unwrap();
        let lines = vec![
            (a.clone(), "1".to_string()),
            (b.clone(), "2".to_string()),
            (a.clone(), "3".to_string()),
        ];
        let outcomes = append_lines(&lines);
        assert!(outcomes.iter().all(|o| o.error.is_none()));
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "1\n3\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old\n2\n");
    }

    #[test]
    fn an_unwritable_file_fails_its_lines_for_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "").unwrap();
        let lines = vec![(blocked.join("below"), "x".to_string())];
        let outcomes = append_lines(&lines);
        assert!(matches!(
            outcomes[0].action,
            super::super::retry::RetryAction::Retry { .. }
        ));
    }
}
