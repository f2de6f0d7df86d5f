//! Test only: an in-memory disk that knows what is durable and decides, with
//! a seeded PRNG, what a power cut keeps of what is not.
//!
//! The model: a file's bytes are durable once it is synced; a create, rename
//! or remove once its directory is synced. At a power cut each file keeps
//! its durable bytes plus a seeded prefix of the bytes appended since, with
//! some unsynced pages possibly lost out of order (after a truncation: the
//! old or the new version); the directory keeps its durable entries plus a
//! seeded prefix of the changes since (a journal commits in order). A failed
//! fsync may have written the bytes, left them dirty, or lost them for good
//! like Linux does: the pages are marked clean, so a later fsync succeeds
//! without writing them, and they come back as zeros.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::splitmix::SplitMix;

/// Writeback's unit; tiny, so that the test's tiny records straddle pages.
const PAGE: usize = 16;

/// Which names exist: directories, and files by inode number.
#[derive(Clone, Default)]
struct Tree {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, u64>,
}

/// A directory change not yet made durable by a directory sync.
enum Change {
    MakeDir(PathBuf),
    Link(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
}

/// One file's bytes.
#[derive(Default)]
pub(super) struct Inode {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What survives a power cut for sure.
    durable: Vec<u8>,
    /// Ranges a failed fsync marked clean: they never reach the disk.
    lost: Vec<Range<usize>>,
}

/// The disk: what is visible now and what is durable.
pub(super) struct Disk {
    live: Tree,
    durable: Tree,
    /// Directory changes since the last sync of their directory, in order.
    changes: Vec<Change>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
}

impl Change {
    /// The directory whose sync makes this change durable.
    fn dir(&self) -> &Path {
        let path = match self {
            Change::MakeDir(path) | Change::Link(path, _) | Change::Unlink(path) => path,
            Change::Rename(_, to) => to,
        };
        path.parent().unwrap_or(Path::new("/"))
    }

    fn apply(&self, tree: &mut Tree) {
        match self {
            Change::MakeDir(path) => {
                tree.dirs.insert(path.clone());
            }
            Change::Link(path, inode) => {
                tree.files.insert(path.clone(), *inode);
            }
            Change::Rename(from, to) => {
                if let Some(inode) = tree.files.remove(from) {
                    tree.files.insert(to.clone(), inode);
                }
            }
            Change::Unlink(path) => {
                tree.files.remove(path);
            }
        }
    }
}

impl Inode {
    /// What a read sees.
    pub(super) fn data(&self) -> &[u8] {
        &self.data
    }

    pub(super) fn append(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    pub(super) fn set_len(&mut self, len: usize) {
        self.data.resize(len, 0);
        for range in &mut self.lost {
            range.end = range.end.min(len);
        }
    }

    /// Empties the file (`O_TRUNC`); durable at the next sync.
    pub(super) fn truncate(&mut self) {
        self.data.clear();
        self.lost.clear();
    }

    /// The bytes as a writeback would put them on disk.
    fn on_disk(&self) -> Vec<u8> {
        let mut bytes = self.data.clone();
        for range in &self.lost {
            let end = range.end.min(bytes.len());
            bytes[range.start.min(end)..end].fill(0);
        }
        bytes
    }

    pub(super) fn sync(&mut self) {
        self.durable = self.on_disk();
    }

    /// What a failed fsync did: wrote the bytes anyway, left them dirty, or
    /// lost them.
    pub(super) fn fail_sync(&mut self, rng: &mut SplitMix) {
        match rng.below(3) {
            0 => self.sync(),
            1 => {}
            _ => {
                let from = self.durable.len().min(self.data.len());
                self.lost.push(from..self.data.len());
            }
        }
    }

    fn survive(&mut self, rng: &mut SplitMix) {
        let disk = self.on_disk();
        let synced = self.durable.len();
        let kept = if disk.len() > synced && disk.starts_with(&self.durable) {
            let extra = rng.below((disk.len() - synced) as u64 + 1) as usize;
            let mut kept = disk[..synced + extra].to_vec();
            if rng.one_in(2) {
                lose_pages(&mut kept, synced, rng);
            }
            kept
        } else if rng.one_in(2) {
            disk
        } else {
            self.durable.clone()
        };
        *self = Inode {
            data: kept.clone(),
            durable: kept,
            lost: Vec::new(),
        };
    }
}

/// Zeroes a seeded choice of the [`PAGE`]s from `from` on: writeback need
/// not go in order, so a later page may reach the disk and an earlier not.
fn lose_pages(bytes: &mut [u8], from: usize, rng: &mut SplitMix) {
    let mut at = from;
    while at < bytes.len() {
        let end = ((at / PAGE + 1) * PAGE).min(bytes.len());
        if rng.one_in(3) {
            bytes[at..end].fill(0);
        }
        at = end;
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl Disk {
    /// An empty disk holding only `/`.
    pub(super) fn new() -> Disk {
        let mut live = Tree::default();
        live.dirs.insert(PathBuf::from("/"));
        Disk {
            durable: live.clone(),
            live,
            changes: Vec::new(),
            inodes: BTreeMap::new(),
            next_inode: 0,
        }
    }

    fn change(&mut self, change: Change) {
        change.apply(&mut self.live);
        self.changes.push(change);
    }

    /// Creates `dir` and its missing parents; `false` if it existed.
    pub(super) fn make_dirs(&mut self, dir: &Path) -> bool {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|d| !self.live.dirs.contains(*d))
            .map(Path::to_path_buf)
            .collect();
        for made in missing.iter().rev() {
            self.change(Change::MakeDir(made.clone()));
        }
        !missing.is_empty()
    }

    /// The inode `path` names now.
    pub(super) fn file(&self, path: &Path) -> io::Result<u64> {
        self.live
            .files
            .get(path)
            .copied()
            .ok_or_else(|| not_found(path))
    }

    /// Creates an empty file at `path` (the name must be free).
    pub(super) fn create(&mut self, path: &Path) -> io::Result<u64> {
        if !path.parent().is_some_and(|p| self.live.dirs.contains(p)) {
            return Err(not_found(path));
        }
        self.next_inode += 1;
        let number = self.next_inode;
        self.inodes.insert(number, Inode::default());
        self.change(Change::Link(path.to_path_buf(), number));
        Ok(number)
    }

    pub(super) fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.file(from)?;
        self.change(Change::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    pub(super) fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.file(path)?;
        self.change(Change::Unlink(path.to_path_buf()));
        Ok(())
    }

    /// Names in `dir`, subdirectories included.
    pub(super) fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        if !self.live.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let paths = self.live.dirs.iter().chain(self.live.files.keys());
        let names = paths
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name().map(OsString::from));
        Ok(names.collect())
    }

    /// Makes the creates, renames and removes in `dir` durable.
    pub(super) fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        if !self.live.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let (now, later): (Vec<Change>, _) = std::mem::take(&mut self.changes)
            .into_iter()
            .partition(|c| c.dir() == dir);
        for change in now {
            change.apply(&mut self.durable);
        }
        self.changes = later;
        Ok(())
    }

    /// A file's contents by inode number, for reading and writing.
    pub(super) fn inode(&mut self, number: u64) -> &mut Inode {
        // An inode goes at a cut, and handles from before a cut are dead.
        self.inodes
            .get_mut(&number)
            .expect("only a name or a live handle reaches an inode")
    }

    /// The power goes: keep what is durable and a seeded part of the rest.
    pub(super) fn cut(&mut self, rng: &mut SplitMix) {
        let kept = rng.below(self.changes.len() as u64 + 1) as usize;
        let mut tree = self.durable.clone();
        for change in self.changes.drain(..kept) {
            change.apply(&mut tree);
        }
        self.changes.clear();
        let dirs = tree.dirs.clone();
        tree.files
            .retain(|path, _| path.parent().is_some_and(|p| dirs.contains(p)));
        let named: BTreeSet<u64> = tree.files.values().copied().collect();
        self.inodes.retain(|number, _| named.contains(number));
        for inode in self.inodes.values_mut() {
            inode.survive(rng);
        }
        self.live = tree.clone();
        self.durable = tree;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `path` holds after a cut under each of 64 seeds.
    fn after_cuts(build: impl Fn(&mut Disk, &mut SplitMix)) -> BTreeSet<Option<Vec<u8>>> {
        (0..64)
            .map(|seed| {
                let (mut disk, mut rng) = (Disk::new(), SplitMix::new(seed));
                disk.make_dirs(Path::new("/d"));
                disk.sync_dir(Path::new("/")).unwrap();
                build(&mut disk, &mut rng);
                disk.cut(&mut rng);
                let file = disk.file(Path::new("/d/f")).ok();
                file.map(|inode| disk.inode(inode).data().to_vec())
            })
            .collect()
    }

    #[test]
    fn a_cut_keeps_bytes_after_their_sync_and_names_after_the_directory_sync() {
        let unsynced = after_cuts(|disk, _| {
            let file = disk.create(Path::new("/d/f")).unwrap();
            disk.inode(file).append(b"ab");
        });
        let allowed = [&b""[..], b"a", b"ab", b"\0", b"\0\0"].map(|b| Some(b.to_vec()));
        let allowed = BTreeSet::from_iter(allowed.into_iter().chain([None]));
        assert!(unsynced.is_subset(&allowed), "{unsynced:?}");
        assert!(unsynced.contains(&None), "the new name can go");
        assert!(
            unsynced.contains(&Some(Vec::new())),
            "unsynced bytes can go"
        );
        let synced = after_cuts(|disk, _| {
            let file = disk.create(Path::new("/d/f")).unwrap();
            disk.inode(file).append(b"ab");
            disk.inode(file).sync();
            disk.sync_dir(Path::new("/d")).unwrap();
            disk.remove(Path::new("/d/f")).unwrap();
        });
        let outcomes = BTreeSet::from([Some(b"ab".to_vec()), None]);
        assert_eq!(
            synced, outcomes,
            "whole, or removed if the removal survived"
        );
    }

    #[test]
    fn bytes_a_failed_fsync_lost_come_back_as_zeros() {
        let contents = after_cuts(|disk, rng| {
            let file = disk.create(Path::new("/d/f")).unwrap();
            disk.sync_dir(Path::new("/d")).unwrap();
            disk.inode(file).append(b"ab");
            disk.inode(file).fail_sync(rng);
            disk.inode(file).append(b"cd");
            disk.inode(file).sync();
        });
        let outcomes = [Some(b"abcd".to_vec()), Some(b"\0\0cd".to_vec())];
        assert_eq!(contents, BTreeSet::from(outcomes));
    }
}
