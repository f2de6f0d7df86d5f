//! Opening the write-ahead log's directory: create and lock it, load the node
//! id and the segment counter, and turn every segment an earlier process left
//! into a sealed one (a torn tail cut, an empty segment removed).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::Path;

use super::error::{WalError, io_error};
use super::format::{
    COUNTER_FILE, LOCK_FILE, NODE_ID_FILE, TMP_EXTENSION, decode, segment_number, segment_path,
};
use super::segment::SealedFile;

/// The directory, ready for the writer.
pub(super) struct Opened {
    /// Held for as long as the log is open.
    pub(super) lock: File,
    pub(super) node_id: String,
    /// Every segment left by an earlier process, now sealed.
    pub(super) sealed: BTreeMap<u64, SealedFile>,
    /// Above every number ever used in this directory.
    pub(super) next_number: u64,
}

/// Creates (if missing), locks and recovers the directory.
pub(super) fn open_dir(dir: &Path) -> Result<Opened, WalError> {
    create_dir(dir)?;
    let lock = lock_dir(dir)?;
    let node_id = load_node_id(dir)?;
    let (sealed, next_number) = recover(dir)?;
    Ok(Opened {
        lock,
        node_id,
        sealed,
        next_number,
    })
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

/// Replaces `dir/name` atomically (temporary file, fsync, rename, fsync the directory).
fn replace_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), WalError> {
    let tmp = dir.join(format!("{name}.{TMP_EXTENSION}"));
    let mut file = File::create(&tmp).map_err(io_error("create", &tmp))?;
    file.write_all(contents).map_err(io_error("write", &tmp))?;
    file.sync_all().map_err(io_error("sync", &tmp))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io_error("rename into", &path))?;
    sync_dir(dir)
}

/// Reads a small text file; `None` if it does not exist.
fn read_text(path: &Path) -> Result<Option<String>, WalError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

fn read_counter(dir: &Path) -> Result<u64, WalError> {
    let path = dir.join(COUNTER_FILE);
    let Some(text) = read_text(&path)? else {
        return Ok(0);
    };
    text.parse().map_err(|e| WalError::Corrupt {
        path,
        reason: format!("not a segment number ({e})"),
    })
}

/// Persists `highest` as the highest segment number ever used; durable when
/// this returns, so a number is never handed out twice.
pub(super) fn write_counter(dir: &Path, highest: u64) -> Result<(), WalError> {
    replace_file(dir, COUNTER_FILE, format!("{highest}\n").as_bytes())
}

/// This directory's node id, created on first use.
fn load_node_id(dir: &Path) -> Result<String, WalError> {
    let path = dir.join(NODE_ID_FILE);
    match read_text(&path)? {
        Some(id) if !id.is_empty() => Ok(id),
        Some(_) => Err(WalError::Corrupt {
            path,
            reason: "empty node id".into(),
        }),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            replace_file(dir, NODE_ID_FILE, id.as_bytes())?;
            Ok(id)
        }
    }
}

/// Creates the directory (and makes its entry durable) if it is missing.
fn create_dir(dir: &Path) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Locks the directory for this process; the lock goes with the file.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(io_error("lock", &path)(e)),
    }
}

/// Segment numbers present in `dir`, ascending; removes leftover temporary files.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let path = entry.map_err(io_error("list", dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(number) = segment_number(name) {
            numbers.push(number);
        } else if path.extension().is_some_and(|e| e == TMP_EXTENSION) {
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Cuts a segment after its last whole record (a torn tail was never
/// acknowledged); returns the length kept.
fn trim_segment(path: &Path) -> Result<u64, WalError> {
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    let whole = decode(&bytes).1;
    if whole < bytes.len() {
        tracing::warn!(
            segment = %path.display(),
            kept = whole,
            cut = bytes.len() - whole,
            "cutting a torn write-ahead log tail"
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_error("open", path))?;
        file.set_len(whole as u64)
            .map_err(io_error("truncate", path))?;
        file.sync_all().map_err(io_error("sync", path))?;
    }
    Ok(whole as u64)
}

/// What an earlier process left, every segment sealed now, and the next
/// segment number.
fn recover(dir: &Path) -> Result<(BTreeMap<u64, SealedFile>, u64), WalError> {
    let numbers = list_segments(dir)?;
    let counter = read_counter(dir)?;
    let highest = numbers.last().copied().unwrap_or(0).max(counter);
    if highest > counter {
        // Before any empty segment is removed below, so its number stays used.
        write_counter(dir, highest)?;
    }
    let mut sealed = BTreeMap::new();
    for number in numbers {
        let path = segment_path(dir, number);
        match trim_segment(&path)? {
            0 => fs::remove_file(&path).map_err(io_error("remove", &path))?,
            bytes => {
                sealed.insert(number, SealedFile { path, bytes });
            }
        }
    }
    sync_dir(dir)?;
    Ok((sealed, highest + 1))
}
