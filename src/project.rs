//! An analyst's project folder (docs/reference.md "Project"): where trigger,
//! segment and flow files live, how they are found, and how a problem in one
//! is reported (`file:line: reason`).

use std::path::{Component, Path, PathBuf};

/// Folder of trigger files inside a project.
pub const TRIGGER_DIR: &str = "queries/triggers";
/// Folder of SQL segment files inside a project.
pub const SEGMENT_DIR: &str = "queries/segments";
/// Folder of flow files inside a project.
pub const FLOW_DIR: &str = "flows";

/// A problem in a project file, reported as `file:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct FileError {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

impl FileError {
    /// A problem with the file as a whole (it cannot be read, say).
    pub fn whole_file(path: &Path, reason: impl Into<String>) -> FileError {
        FileError {
            path: path.display().to_string(),
            line: 1,
            reason: reason.into(),
        }
    }
}

/// The files in `dir` ending in `.{extension}`, sorted by name (none when
/// the folder does not exist).
pub fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
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

/// One problem is a list of one.
impl From<FileError> for Vec<FileError> {
    fn from(error: FileError) -> Vec<FileError> {
        vec![error]
    }
}

/// Reads and parses every `*.{extension}` file of `dir`, sorted by name.
/// Files that cannot be read or parsed come back as errors (every problem
/// `parse` found in them); the others still load.
pub fn load_files<T, E: Into<Vec<FileError>>>(
    dir: &Path,
    extension: &str,
    parse: impl Fn(&Path, &str) -> Result<T, E>,
) -> (Vec<T>, Vec<FileError>) {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for path in files_with_extension(dir, extension) {
        let parsed = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&path, &text).map_err(Into::into),
            Err(e) => Err(vec![FileError::whole_file(&path, e.to_string())]),
        };
        match parsed {
            Ok(item) => loaded.push(item),
            Err(problems) => errors.extend(problems),
        }
    }
    (loaded, errors)
}

/// A file's stem as its name (triggers, segments and flows are named so).
pub fn file_name(path: &Path) -> Result<String, FileError> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| FileError::whole_file(path, "the file name is not UTF-8"))
}

/// A path a flow may write to, as written in the flow file: relative to
/// the project folder, and never leaving it (no root, no `..`).
pub fn confined_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if text.trim().is_empty() {
        return Err("the path is empty".into());
    }
    if path.has_root() || path.is_absolute() {
        return Err(format!(
            "{text:?} is absolute: give a path relative to the project folder"
        ));
    }
    if !path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{text:?} leaves the project folder (\"..\" is not allowed)"
        ));
    }
    Ok(path.to_path_buf())
}

/// Where a file delivery writes: `path` inside `project_dir`, checked again
/// at write time (the ledger may hold payloads planned by an older build).
/// An absolute path is accepted only when it already lies inside the
/// project folder, as older builds stored it.
pub fn resolve_confined(project_dir: &Path, path: &str) -> Result<PathBuf, String> {
    let refuse = |why: String| format!("file path refused: {why}");
    if !Path::new(path).is_absolute() {
        return Ok(project_dir.join(confined_path(path).map_err(refuse)?));
    }
    let project =
        std::path::absolute(project_dir).map_err(|e| refuse(format!("the project folder: {e}")))?;
    let inside = Path::new(path)
        .strip_prefix(&project)
        .ok()
        .and_then(|rest| rest.to_str())
        .ok_or_else(|| refuse(format!("{path:?} is outside the project folder")))?;
    Ok(project.join(confined_path(inside).map_err(refuse)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_paths_stay_inside_the_project() {
        assert_eq!(
            confined_path("deliveries/a.ndjson"),
            Ok(PathBuf::from("deliveries/a.ndjson"))
        );
        assert!(confined_path("./out/a").is_ok());
        for bad in ["/etc/passwd", "../x", "out/../../x", "", "  "] {
            assert!(confined_path(bad).is_err(), "{bad:?}");
        }
        let project = Path::new("/proj");
        assert_eq!(
            resolve_confined(project, "out/a"),
            Ok(PathBuf::from("/proj/out/a"))
        );
        assert_eq!(
            resolve_confined(project, "/proj/out/a"),
            Ok(PathBuf::from("/proj/out/a")),
            "older ledgers hold absolute paths inside the project"
        );
        for bad in ["/etc/passwd", "/proj/../etc/passwd", "/project2/a", "../a"] {
            let refused = resolve_confined(project, bad).unwrap_err();
            assert!(refused.starts_with("file path refused"), "{bad}: {refused}");
        }
    }

    #[test]
    fn files_load_in_name_order_and_bad_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.sql"), "two").unwrap();
        std::fs::write(dir.path().join("a.sql"), "one").unwrap();
        std::fs::write(dir.path().join("c.sql"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "skipped").unwrap();
        let (loaded, errors) = load_files(dir.path(), "sql", |path, text| match text.is_empty() {
            true => Err(FileError::whole_file(path, "empty")),
            false => Ok(text.to_string()),
        });
        let (_, every) = load_files(dir.path(), "sql", |path, _| {
            Err::<(), _>(vec![
                FileError::whole_file(path, "one"),
                FileError::whole_file(path, "two"),
            ])
        });
        assert_eq!(every.len(), 6, "every problem of every file");
        assert_eq!(loaded, ["one", "two"]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().ends_with("c.sql:1: empty"),
            "{}",
            errors[0]
        );
        assert!(
            load_files(&dir.path().join("none"), "sql", |_, t| Ok::<_, FileError>(
                t.len()
            ))
            .0
            .is_empty()
        );
    }
}
