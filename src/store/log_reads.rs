//! Reading a local Delta log's files in place, on the calling thread
//! (docs/architecture.md "Storage").
//!
//! object_store's `LocalFileSystem` hands every read to tokio's blocking
//! pool and waits for it. Opening a table makes some forty such reads (the
//! last checkpoint's pointer, the checkpoint's footer and columns, read
//! again for the protocol and for the file list, then each commit since),
//! and each costs two thread hand-offs that dwarf the read of a few
//! kilobytes from the page cache: ~2 ms of a 6 ms open. [`LocalLog`]
//! (super::local_log) answers reads of a `_delta_log` file of at most
//! [`IN_PLACE_LIMIT`] bytes here instead, with what `LocalFileSystem`
//! answers (the same [`ObjectMeta`], e-tag included); larger reads, and
//! every data file, still go through the pool. It assumes a local disk, as
//! `storage = "./path"` means: on a network mount that hangs, a worker
//! thread would wait where a pool thread waited before.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt as _;
use object_store::path::Path;
use object_store::{Error, GetOptions, GetResult, GetResultPayload, ObjectMeta, Result};

/// The largest read done in place: a checkpoint of a few thousand files
/// (~1 MiB) takes ~1 ms to read even from the page cache, long enough to
/// hold up other tasks of the worker thread.
pub const IN_PLACE_LIMIT: u64 = 1 << 20;

const STORE: &str = "LocalLog";

/// The file behind `location` when it is in a `_delta_log` folder and its
/// path is one the file system spells as object_store does.
fn log_file(location: &Path) -> Option<std::path::PathBuf> {
    let parts: Vec<_> = location.parts().collect();
    let in_log = parts.len() >= 2 && parts[parts.len() - 2].as_ref() == "_delta_log";
    let plain = parts
        .iter()
        .all(|p| super::local_log::is_plain_name(p.as_ref()));
    (in_log && plain).then(|| std::path::PathBuf::from(format!("/{location}")))
}

/// `get_opts` of `location` in place; `None` when it is not a log file or
/// the read is larger than [`IN_PLACE_LIMIT`] (the caller reads it the
/// usual way).
pub fn get(location: &Path, options: &GetOptions) -> Option<Result<GetResult>> {
    let path = log_file(location)?;
    read(location, &path, options).transpose()
}

/// [`get`] of the log file at `path`.
fn read(
    location: &Path,
    path: &std::path::Path,
    options: &GetOptions,
) -> Result<Option<GetResult>> {
    let (file, meta) = open(location, path)?;
    options.check_preconditions(&meta)?;
    let range = match &options.range {
        Some(range) => range.as_range(meta.size).map_err(generic)?,
        None => 0..meta.size,
    };
    if !options.head && range.end - range.start > IN_PLACE_LIMIT {
        return Ok(None);
    }
    let bytes = match options.head {
        true => Bytes::new(),
        false => read_at(location, &file, range.clone())?,
    };
    Ok(Some(GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
        meta,
        range,
        attributes: Default::default(),
    }))
}

/// `get_ranges` of `location` in place; `None` when it is not a log file or
/// the ranges add up to more than [`IN_PLACE_LIMIT`].
pub fn get_ranges(location: &Path, ranges: &[Range<u64>]) -> Option<Result<Vec<Bytes>>> {
    let file = log_file(location)?;
    let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
    if total > IN_PLACE_LIMIT {
        return None;
    }
    let read = || {
        let file = File::open(&file).map_err(|e| io_error(location, e))?;
        ranges
            .iter()
            .map(|range| read_at(location, &file, range.clone()))
            .collect()
    };
    Some(read())
}

fn open(location: &Path, path: &std::path::Path) -> Result<(File, ObjectMeta)> {
    let file = File::open(path).map_err(|e| io_error(location, e))?;
    let metadata = file.metadata().map_err(|e| io_error(location, e))?;
    if metadata.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "is a directory");
        return Err(io_error(location, source));
    }
    Ok((file, meta_of(location, &metadata)))
}

/// The metadata `LocalFileSystem` reports (its e-tag: inode, modified
/// microseconds and size, in hex).
fn meta_of(location: &Path, metadata: &std::fs::Metadata) -> ObjectMeta {
    let modified = metadata.modified().unwrap_or(UNIX_EPOCH);
    let micros = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros();
    ObjectMeta {
        location: location.clone(),
        last_modified: modified.into(),
        size: metadata.len(),
        e_tag: Some(format!(
            "{:x}-{micros:x}-{:x}",
            metadata.ino(),
            metadata.len()
        )),
        version: None,
    }
}

fn read_at(location: &Path, file: &File, range: Range<u64>) -> Result<Bytes> {
    let length = usize::try_from(range.end.saturating_sub(range.start)).map_err(generic)?;
    let mut buffer = vec![0; length];
    file.read_exact_at(&mut buffer, range.start)
        .map_err(|e| io_error(location, e))?;
    Ok(buffer.into())
}

fn io_error(location: &Path, source: std::io::Error) -> Error {
    match source.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: location.to_string(),
            source: Box::new(source),
        },
        _ => Error::Generic {
            store: STORE,
            source: Box::new(source),
        },
    }
}

fn generic(source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Generic {
        store: STORE,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;
    use object_store::{GetRange, ObjectStore, ObjectStoreExt as _};

    fn log_with(name: &str, contents: &[u8]) -> (tempfile::TempDir, Path) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t").join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join(name), contents).unwrap();
        let location = Path::from_filesystem_path(log.join(name)).unwrap();
        (dir, location)
    }

    async fn answered(result: Result<GetResult>) -> (ObjectMeta, Range<u64>, Bytes) {
        let result = result.unwrap();
        let (meta, range) = (result.meta.clone(), result.range.clone());
        (meta, range, result.bytes().await.unwrap())
    }

    #[tokio::test]
    async fn reads_in_place_answer_what_the_local_file_system_answers() {
        let contents: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let (_dir, location) = log_with("00000000000000000007.json", &contents);
        assert!(log_file(&location).is_some(), "a log file");
        let plain = LocalFileSystem::new();
        for range in [
            None,
            Some(GetRange::Bounded(10..4000)),
            Some(GetRange::Offset(4990)),
            Some(GetRange::Suffix(8)),
        ] {
            let options = GetOptions {
                range: range.clone(),
                ..Default::default()
            };
            let ours = get(&location, &options).expect("small enough");
            let theirs = plain.get_opts(&location, options).await;
            assert_eq!(answered(ours).await, answered(theirs).await, "{range:?}");
        }
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        let ours = get(&location, &head).unwrap().unwrap().meta;
        assert_eq!(ours, plain.head(&location).await.unwrap());
        let ranges = [0..3, 100..4000, 4999..5000];
        assert_eq!(
            get_ranges(&location, &ranges).unwrap().unwrap(),
            plain.get_ranges(&location, &ranges).await.unwrap()
        );
    }

    #[tokio::test]
    async fn a_missing_log_file_is_not_found_and_large_reads_are_left_to_the_pool() {
        let (dir, _) = log_with("_last_checkpoint", b"{}");
        let log = Path::from_filesystem_path(dir.path().join("t/_delta_log")).unwrap();
        let gone = log.join("00000000000000000001.json");
        let error = get(&gone, &GetOptions::default()).unwrap().unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }), "{error}");
        let error = get_ranges(&gone, &[0..1, 2..3]).unwrap().unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }), "{error}");

        let big = vec![7u8; IN_PLACE_LIMIT as usize + 1];
        let (_dir, location) = log_with("00000000000000000010.checkpoint.parquet", &big);
        assert!(get(&location, &GetOptions::default()).is_none());
        assert!(get_ranges(&location, &[0..2, 2..IN_PLACE_LIMIT + 1]).is_none());
        let part = GetOptions {
            range: Some(GetRange::Bounded(0..100)),
            ..Default::default()
        };
        assert!(
            get(&location, &part).is_some(),
            "a small part of it is read in place"
        );
    }

    #[test]
    fn only_plain_log_files_are_read_in_place() {
        assert!(
            log_file(&Path::from(
                "s/shop/events/_delta_log/00000000000000000001.json"
            ))
            .is_some()
        );
        assert!(log_file(&Path::from("s/shop/events/part-0001.parquet")).is_none());
        assert!(log_file(&Path::from("s/shop/events/_delta_log")).is_none());
        assert!(log_file(&Path::from("s/my shop/events/_delta_log/_last_checkpoint")).is_none());
    }
}
