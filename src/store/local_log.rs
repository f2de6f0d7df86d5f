//! The local file system as Delta tables see it, with an offset listing
//! that reads only the names it returns (docs/architecture.md "Storage").
//!
//! Opening a table lists its `_delta_log` from the last checkpoint on.
//! object_store's `LocalFileSystem` answers that by walking the whole
//! folder, stat-ing every entry and turning each path into a URL before
//! comparing it with the offset: on a store that has lived (thousands of
//! commit and checkpoint files kept for the log's retention) that cost
//! ~6 µs per file on every open, most of a cold run's table open.
//!
//! [`LocalLog::list_with_offset`] asks the file system only about the
//! names after the offset, with the same [`ObjectMeta`] as
//! `LocalFileSystem` (from its `head`), sorted by location:
//! - An offset that is a log version (`{version:020}`: a reader listing
//!   from its checkpoint, or from the version after its own) is answered
//!   by name, without reading the folder: each version's checkpoint and
//!   commit from it on, until a commit is missing (`log_files_from` says
//!   when that cannot tell, and which names it leaves out). Reading the
//!   folder cost ~0.4 µs a name on every open and refresh, and a day of
//!   commits every second is 86k names.
//! - Any other offset: the folder's names after it.
//! - A folder it cannot answer for cheaply (a sub-folder, a symbolic link,
//!   a name that object_store would encode or skip, the offset outside the
//!   folder) is listed by `LocalFileSystem` itself.
//!
//! Everything else passes straight through, and the log's small files are
//! read in place (`log_reads`).

use std::ops::Range;
use std::sync::Arc;

use super::log_reads;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt as _};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// A local file system rooted at `/` (as `file://` URLs address it).
#[derive(Debug)]
pub struct LocalLog {
    inner: Arc<dyn ObjectStore>,
}

impl LocalLog {
    /// Wraps `inner`, a `LocalFileSystem` rooted at `/` (a location is the
    /// file system path without its leading `/`, which `log_reads` relies on).
    pub fn new(inner: Arc<dyn ObjectStore>) -> LocalLog {
        LocalLog { inner }
    }
}

impl std::fmt::Display for LocalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalLog({})", self.inner)
    }
}

/// A name object_store keeps as it is, in a path and on the disk.
pub(super) fn is_plain_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A folder path made only of plain names.
fn is_plain_path(path: &Path) -> bool {
    path.parts().all(|part| is_plain_name(part.as_ref()))
}

/// The locations in `folder` after `offset`, sorted: asked for by name when
/// the offset is a log version ([`log_files_from`]), else read from the
/// folder's names; `None` when only `LocalFileSystem` can tell.
fn names_after(folder: &Path, offset: &Path) -> Option<Vec<Path>> {
    if !is_plain_path(folder) || offset.prefix_match(folder)?.count() != 1 {
        return None;
    }
    let offset_name = offset.filename()?;
    let dir = std::path::PathBuf::from(format!("/{folder}"));
    let mut names = match log_version(offset_name).and_then(|v| log_files_from(&dir, v)) {
        Some(names) => names,
        None => folder_names_after(&dir, offset_name)?,
    };
    names.sort();
    Some(
        names
            .into_iter()
            .map(|name| folder.clone().join(name))
            .collect(),
    )
}

/// The version an offset names when it is one, as Delta readers list a
/// log: `{version:020}`, from a checkpoint or from the version after theirs.
fn log_version(offset_name: &str) -> Option<u64> {
    let digits = offset_name.len() == 20 && offset_name.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| offset_name.parse().ok()).flatten()
}

/// The log files a Delta reader listing from `version` uses, asked for by
/// name without reading the folder (whose commits and checkpoints of the
/// log's retention, a day of them, are thousands of names): from
/// `version` on, each version's checkpoint and commit, until a commit is
/// missing (commits are numbered without gaps). `None` when asking by
/// name cannot tell:
/// - `_last_checkpoint` names a checkpoint at `version` that is not one
///   file (another writer's multi-part or v2 checkpoint);
/// - a version has a checkpoint but no commit (cleaned up under it);
/// - nothing is at `version` and the commit before it is not there either
///   (cleaned up: the reader wants whatever is earliest);
/// - `_last_checkpoint` names a version past the last commit found (a
///   cleanup deleting old commits in no order left a gap);
/// - more than [`MAX_PROBED_VERSIONS`] versions.
///
/// Other names after the offset are left out: checksums, compacted
/// commits and later checkpoints of other forms, which readers do without
/// (they replay the commits instead).
fn log_files_from(dir: &std::path::Path, version: u64) -> Option<Vec<String>> {
    let is_file = |name: &str| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file());
    let hint = hinted_checkpoint(dir);
    let mut names = Vec::new();
    let mut next = version;
    loop {
        let checkpoint = format!("{next:020}.checkpoint.parquet");
        let commit = format!("{next:020}.json");
        let (has_checkpoint, has_commit) = (is_file(&checkpoint), is_file(&commit));
        if next == version && !has_checkpoint && hint == Some(version) {
            return None;
        }
        match (has_checkpoint, has_commit) {
            (true, false) => return None,
            (false, false) => break,
            (true, true) => names.extend([checkpoint, commit]),
            (false, true) => names.push(commit),
        }
        next += 1;
        if next - version > MAX_PROBED_VERSIONS {
            return None;
        }
    }
    // A checkpoint past the last commit found: commits are being cleaned
    // up under it (in no order), and the gap is not the log's end.
    if hint.is_some_and(|hinted| hinted >= next) {
        return None;
    }
    let before_is_there = || {
        version
            .checked_sub(1)
            .is_some_and(|v| is_file(&format!("{v:020}.json")))
    };
    match names.is_empty() && !before_is_there() {
        true => None,
        false => Some(names),
    }
}

/// Versions asked for by name at most: past them the folder's names cost
/// less (two questions a version against ~0.4 µs a name).
const MAX_PROBED_VERSIONS: u64 = 1_000;

/// The version of the checkpoint `_last_checkpoint` names, if it reads.
fn hinted_checkpoint(dir: &std::path::Path) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Hint {
        version: u64,
    }
    let bytes = std::fs::read(dir.join("_last_checkpoint")).ok()?;
    serde_json::from_slice::<Hint>(&bytes)
        .ok()
        .map(|h| h.version)
}

/// The names in `dir` after `offset_name`, read from the folder; `None`
/// when one is not a plain file name.
fn folder_names_after(dir: &std::path::Path, offset_name: &str) -> Option<Vec<String>> {
    // Plain names in one folder sort as their locations do: only the
    // names after the offset's become locations.
    let entries = std::fs::read_dir(dir).ok()?;
    let mut after = Vec::new();
    for entry in entries {
        let entry = entry.ok()?;
        if !entry.file_type().ok()?.is_file() {
            return None;
        }
        let name = entry.file_name().into_string().ok()?;
        if !is_plain_name(&name) {
            return None;
        }
        if name.as_str() > offset_name {
            after.push(name);
        }
    }
    Some(after)
}

/// `location`'s metadata: in place for a log file, else from `inner`.
async fn head(inner: &dyn ObjectStore, location: &Path) -> Result<ObjectMeta> {
    let options = GetOptions {
        head: true,
        ..Default::default()
    };
    match log_reads::get(location, &options) {
        Some(answer) => answer.map(|found| found.meta),
        None => inner.head(location).await,
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalLog {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match log_reads::get(location, &options) {
            Some(answer) => answer,
            None => self.inner.get_opts(location, options).await,
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match log_reads::get_ranges(location, ranges) {
            Some(answer) => answer,
            None => self.inner.get_ranges(location, ranges).await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some(folder) = prefix.cloned() else {
            return self.inner.list_with_offset(None, offset);
        };
        let inner = self.inner.clone();
        let offset = offset.clone();
        let listed = async move {
            // On the blocking pool: a lived log folder holds a day of
            // commits, thousands of names, too many to read on a worker.
            let (folder_, offset_) = (folder.clone(), offset.clone());
            let names = tokio::task::spawn_blocking(move || names_after(&folder_, &offset_))
                .await
                .ok()
                .flatten();
            match names {
                None => inner.list_with_offset(Some(&folder), &offset),
                Some(names) => stream::iter(names)
                    .then(move |location| {
                        let inner = inner.clone();
                        async move { head(inner.as_ref(), &location).await }
                    })
                    // Deleted between reading the names and asking: gone,
                    // as a walk a moment later would have found it.
                    .filter(|meta| {
                        let gone = matches!(meta, Err(object_store::Error::NotFound { .. }));
                        async move { !gone }
                    })
                    .boxed(),
            }
        };
        stream::once(listed).flatten().boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt as _;
    use object_store::local::LocalFileSystem;

    fn stores() -> (LocalLog, Arc<dyn ObjectStore>) {
        let plain: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        (LocalLog::new(plain.clone()), plain)
    }

    async fn listed(store: &dyn ObjectStore, folder: &Path, offset: &Path) -> Vec<ObjectMeta> {
        let mut found: Vec<ObjectMeta> = store
            .list_with_offset(Some(folder), offset)
            .try_collect()
            .await
            .unwrap();
        found.sort_by(|a, b| a.location.cmp(&b.location));
        found
    }

    fn folder_of(dir: &std::path::Path) -> Path {
        Path::from_filesystem_path(dir).unwrap()
    }

    /// A log folder of commits 0 to 24, checkpoints at 10 and 20, a
    /// checksum and `_last_checkpoint` naming version 20.
    fn lived_log(dir: &std::path::Path) -> std::path::PathBuf {
        let log = dir.join("_delta_log");
        std::fs::create_dir(&log).unwrap();
        for version in 0..25 {
            std::fs::write(log.join(format!("{version:020}.json")), "{}").unwrap();
        }
        for version in [10, 20] {
            std::fs::write(log.join(format!("{version:020}.checkpoint.parquet")), "pq").unwrap();
        }
        std::fs::write(log.join(format!("{:020}.crc", 22)), "{}").unwrap();
        std::fs::write(log.join("_last_checkpoint"), r#"{"version":20,"size":3}"#).unwrap();
        log
    }

    fn names_of(listed: &[ObjectMeta]) -> Vec<&str> {
        listed
            .iter()
            .map(|m| m.location.filename().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn an_offset_that_is_no_version_is_answered_as_the_local_file_system_answers() {
        let dir = tempfile::tempdir().unwrap();
        let log = lived_log(dir.path());
        let (fast, plain) = stores();
        let folder = folder_of(&log);
        for offset in [
            format!("{:020}.json", 24),
            format!("{:019}", 20),
            "_last_checkpoint".to_string(),
            "zzz".to_string(),
        ] {
            let offset = folder.clone().join(offset);
            assert!(names_after(&folder, &offset).is_some(), "read by name");
            let ours = listed(&fast, &folder, &offset).await;
            assert_eq!(ours, listed(plain.as_ref(), &folder, &offset).await);
            let sorted = ours.windows(2).all(|w| w[0].location < w[1].location);
            assert!(sorted && ours.iter().all(|m| m.location > offset));
        }
    }

    #[tokio::test]
    async fn a_version_offset_is_answered_with_its_checkpoint_and_the_commits_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = lived_log(dir.path());
        let (fast, plain) = stores();
        let folder = folder_of(&log);
        let from = |version: u64| folder.clone().join(format!("{version:020}"));

        let ours = listed(&fast, &folder, &from(20)).await;
        let theirs = listed(plain.as_ref(), &folder, &from(20)).await;
        let used: Vec<ObjectMeta> = theirs
            .into_iter()
            .filter(|m| {
                let name = m.location.filename().unwrap();
                name.ends_with(".json") || name.ends_with(".checkpoint.parquet")
            })
            .collect();
        assert_eq!(ours, used, "the same metadata, in order");
        assert_eq!(ours.len(), 6, "{:?}", names_of(&ours));
        assert_eq!(
            ours[0].location.filename(),
            Some(&*format!("{:020}.checkpoint.parquet", 20))
        );

        let from_0 = listed(&fast, &folder, &from(0)).await;
        assert_eq!(
            from_0.len(),
            27,
            "commits and checkpoints: {:?}",
            names_of(&from_0)
        );
        assert!(
            listed(&fast, &folder, &from(25)).await.is_empty(),
            "nothing after 24"
        );

        // Cleaned up to version 10: from 0 (or any version gone) the reader
        // wants what is earliest, which only the folder tells.
        for version in 0..10 {
            std::fs::remove_file(log.join(format!("{version:020}.json"))).unwrap();
        }
        for offset in [from(0), from(5)] {
            assert_eq!(
                listed(&fast, &folder, &offset).await,
                listed(plain.as_ref(), &folder, &offset).await
            );
        }
        // A cleanup deleting in no order: a gap below the hinted checkpoint
        // (20) is no end of the log.
        std::fs::remove_file(log.join(format!("{:020}.json", 12))).unwrap();
        for offset in [from(11), from(12)] {
            assert_eq!(
                listed(&fast, &folder, &offset).await,
                listed(plain.as_ref(), &folder, &offset).await
            );
        }
        std::fs::write(log.join(format!("{:020}.json", 12)), "{}").unwrap();
        let from_10 = listed(&fast, &folder, &from(10)).await;
        assert_eq!(from_10.len(), 17, "{:?}", names_of(&from_10));
        std::fs::remove_file(log.join(format!("{:020}.json", 10))).unwrap();
        assert_eq!(
            listed(&fast, &folder, &from(10)).await,
            listed(plain.as_ref(), &folder, &from(10)).await,
            "a checkpoint without its commit: the folder tells"
        );
    }

    #[tokio::test]
    async fn a_hinted_checkpoint_of_several_files_is_found_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let log = lived_log(dir.path());
        std::fs::remove_file(log.join(format!("{:020}.checkpoint.parquet", 20))).unwrap();
        for part in 1..=2 {
            let name = format!("{:020}.checkpoint.{part:010}.{:010}.parquet", 20, 2);
            std::fs::write(log.join(name), "pq").unwrap();
        }
        std::fs::write(log.join("_last_checkpoint"), r#"{"version":20,"parts":2}"#).unwrap();
        let (fast, plain) = stores();
        let folder = folder_of(&log);
        let offset = folder.clone().join(format!("{:020}", 20));
        let ours = listed(&fast, &folder, &offset).await;
        assert_eq!(ours, listed(plain.as_ref(), &folder, &offset).await);
        let parts = names_of(&ours)
            .iter()
            .filter(|n| n.contains(".checkpoint."))
            .count();
        assert_eq!(parts, 2);
    }

    #[tokio::test]
    async fn folders_it_cannot_read_by_name_are_listed_by_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("b.json"), "1").unwrap();
        std::fs::write(root.join("sub/c.json"), "2").unwrap();
        std::fs::write(root.join("a b.json"), "3").unwrap();
        std::fs::write(root.join("d.json#1"), "partial upload").unwrap();
        let (fast, plain) = stores();
        let folder = folder_of(&root);
        let offset = folder.clone().join("a");
        assert!(names_after(&folder, &offset).is_none());
        let ours = listed(&fast, &folder, &offset).await;
        assert_eq!(ours, listed(plain.as_ref(), &folder, &offset).await);
        let names: Vec<String> = ours.iter().map(|m| m.location.to_string()).collect();
        assert!(names.iter().any(|n| n.ends_with("sub/c.json")), "{names:?}");
        assert!(!names.iter().any(|n| n.contains('#')), "{names:?}");
    }

    #[tokio::test]
    async fn log_files_are_read_in_place_and_data_files_by_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("_delta_log");
        std::fs::create_dir(&log).unwrap();
        std::fs::write(log.join(format!("{:020}.json", 3)), "{\"commitInfo\":{}}").unwrap();
        std::fs::write(dir.path().join("part-0.parquet"), "data").unwrap();
        let (fast, plain) = stores();
        let commit = folder_of(&log).join(format!("{:020}.json", 3));
        let data = folder_of(dir.path()).join("part-0.parquet");
        for (location, in_place) in [(&commit, true), (&data, false)] {
            let ours = fast.get(location).await.unwrap();
            let read_here = matches!(ours.payload, object_store::GetResultPayload::Stream(_));
            assert_eq!(read_here, in_place, "{location}");
            assert_eq!(ours.meta, plain.head(location).await.unwrap());
            let bytes = ours.bytes().await.unwrap();
            assert_eq!(
                bytes,
                plain.get(location).await.unwrap().bytes().await.unwrap()
            );
            assert_eq!(
                fast.head(location).await.unwrap(),
                plain.head(location).await.unwrap()
            );
            let ranges = fast.get_ranges(location, &[0..2, 1..3]).await.unwrap();
            assert_eq!(
                ranges,
                plain.get_ranges(location, &[0..2, 1..3]).await.unwrap()
            );
        }
    }
}
