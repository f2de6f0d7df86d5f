//! Opening the write-ahead log's directory: create and lock it, load the node
//! id and the segment counter, and turn every segment an earlier process left
//! into a sealed one (a torn tail cut, an empty segment removed).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::error::{WalError, io_error};
use super::files::{Files, Lock, Open};
use super::format::{
    COUNTER_FILE, LOCK_FILE, NODE_ID_FILE, TMP_EXTENSION, decode, segment_number, segment_path,
};
use super::segment::SealedFile;

/// The directory, ready for the writer.
pub(super) struct Opened {
    /// Held for as long as the log is open.
    pub(super) lock: Lock,
    pub(super) node_id: String,
    /// Every segment left by an earlier process, now sealed.
    pub(super) sealed: BTreeMap<u64, SealedFile>,
    /// Above every number ever used in this directory.
    pub(super) next_number: u64,
}

/// Creates (if missing), locks and recovers the directory.
pub(super) fn open_dir(files: &dyn Files, dir: &Path) -> Result<Opened, WalError> {
    create_dir(files, dir)?;
    let lock = lock_dir(files, dir)?;
    let node_id = load_node_id(files, dir)?;
    let (sealed, next_number) = recover(files, dir)?;
    Ok(Opened {
        lock,
        node_id,
        sealed,
        next_number,
    })
}

pub(super) fn sync_dir(files: &dyn Files, dir: &Path) -> Result<(), WalError> {
    files.sync_dir(dir).map_err(io_error("sync directory", dir))
}

/// Replaces `dir/name` atomically (temporary file, fsync, rename, fsync the directory).
fn replace_file(
    files: &dyn Files,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<(), WalError> {
    let tmp = dir.join(format!("{name}.{TMP_EXTENSION}"));
    let mut file = files
        .open(&tmp, Open::Truncate)
        .map_err(io_error("create", &tmp))?;
    file.write_all(contents).map_err(io_error("write", &tmp))?;
    file.sync_all().map_err(io_error("sync", &tmp))?;
    let path = dir.join(name);
    files
        .rename(&tmp, &path)
        .map_err(io_error("rename into", &path))?;
    sync_dir(files, dir)
}

/// Reads a small text file; `None` if it does not exist.
fn read_text(files: &dyn Files, path: &Path) -> Result<Option<String>, WalError> {
    let text = files.read(path).and_then(|bytes| {
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    });
    match text {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

fn read_counter(files: &dyn Files, dir: &Path) -> Result<u64, WalError> {
    let path = dir.join(COUNTER_FILE);
    let Some(text) = read_text(files, &path)? else {
        return Ok(0);
    };
    text.parse().map_err(|e| WalError::Corrupt {
        path,
        reason: format!("not a segment number ({e})"),
    })
}

/// Persists `highest` as the highest segment number ever used; durable when
/// this returns, so a number is never handed out twice.
pub(super) fn write_counter(files: &dyn Files, dir: &Path, highest: u64) -> Result<(), WalError> {
    replace_file(files, dir, COUNTER_FILE, format!("{highest}\n").as_bytes())
}

/// This directory's node id, created on first use.
fn load_node_id(files: &dyn Files, dir: &Path) -> Result<String, WalError> {
    let path = dir.join(NODE_ID_FILE);
    match read_text(files, &path)? {
        Some(id) if !id.is_empty() => Ok(id),
        Some(_) => Err(WalError::Corrupt {
            path,
            reason: "empty node id".into(),
        }),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            replace_file(files, dir, NODE_ID_FILE, id.as_bytes())?;
            Ok(id)
        }
    }
}

/// Creates the directory (and makes its entry durable) if it is missing.
fn create_dir(files: &dyn Files, dir: &Path) -> Result<(), WalError> {
    let created = files
        .create_dir(dir)
        .map_err(io_error("create directory", dir))?;
    if !created {
        return Ok(());
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(files, parent),
        _ => sync_dir(files, Path::new(".")),
    }
}

/// Locks the directory for this process; the lock goes with the file.
fn lock_dir(files: &dyn Files, dir: &Path) -> Result<Lock, WalError> {
    let path = dir.join(LOCK_FILE);
    files
        .lock(&path)
        .map_err(io_error("lock", &path))?
        .ok_or_else(|| WalError::Locked(dir.to_path_buf()))
}

/// Segment numbers present in `dir`, ascending; removes leftover temporary files.
fn list_segments(files: &dyn Files, dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut numbers = Vec::new();
    for name in files.list(dir).map_err(io_error("list", dir))? {
        let path = dir.join(name);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(number) = segment_number(name) {
            numbers.push(number);
        } else if path.extension().is_some_and(|e| e == TMP_EXTENSION) {
            files.remove(&path).map_err(io_error("remove", &path))?;
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Cuts a segment after its last whole record (a torn tail was never
/// acknowledged); returns the length kept.
fn trim_segment(files: &dyn Files, path: &Path) -> Result<u64, WalError> {
    let bytes = files.read(path).map_err(io_error("read", path))?;
    let whole = decode(&bytes).1;
    if whole < bytes.len() {
        tracing::warn!(
            segment = %path.display(),
            kept = whole,
            cut = bytes.len() - whole,
            "cutting a torn write-ahead log tail"
        );
        let mut file = files
            .open(path, Open::Existing)
            .map_err(io_error("open", path))?;
        file.set_len(whole as u64)
            .map_err(io_error("truncate", path))?;
        file.sync_all().map_err(io_error("sync", path))?;
    }
    Ok(whole as u64)
}

/// What an earlier process left, every segment sealed now, and the next
/// segment number.
fn recover(files: &dyn Files, dir: &Path) -> Result<(BTreeMap<u64, SealedFile>, u64), WalError> {
    let numbers = list_segments(files, dir)?;
    let counter = read_counter(files, dir)?;
    let highest = numbers.last().copied().unwrap_or(0).max(counter);
    if highest > counter {
        // Before any empty segment is removed below, so its number stays used.
        write_counter(files, dir, highest)?;
    }
    let mut sealed = BTreeMap::new();
    for number in numbers {
        let path = segment_path(dir, number);
        match trim_segment(files, &path)? {
            0 => files.remove(&path).map_err(io_error("remove", &path))?,
            bytes => {
                sealed.insert(number, SealedFile { path, bytes });
            }
        }
    }
    sync_dir(files, dir)?;
    Ok((sealed, highest + 1))
}
