//! Test only: [`Files`] on an in-memory [`Disk`] that cuts the power at a
//! planned operation and fails operations at a seeded rate: a failed write
//! is torn (a prefix reaches the file), a failed fsync may or may not have
//! written anything.

use std::any::Any;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::disk::Disk;
use super::files::{Files, Lock, Open, WalFile};
use super::splitmix::SplitMix;

/// The faulty file system; clones share one disk.
#[derive(Clone)]
pub(super) struct FaultyFiles {
    state: Arc<Mutex<State>>,
}

struct State {
    disk: Disk,
    rng: SplitMix,
    powered: bool,
    /// Bumped at each restart: handles from before a cut stay dead.
    boot: u64,
    /// Operations since the plan was made.
    ops: u64,
    cut_at: Option<u64>,
    /// Each operation fails with odds 1 in this; 0 for never.
    fault_odds: u64,
    /// Lock files held; a cut frees them with the process.
    locks: BTreeSet<PathBuf>,
    /// Every path ever created with [`Open::CreateNew`], across cuts.
    created_new: BTreeSet<PathBuf>,
    reused: Vec<PathBuf>,
    failed_syncs: u64,
    /// File fsyncs still to fail on purpose, whatever the odds.
    syncs_to_fail: u64,
}

fn power_off() -> io::Error {
    io::Error::other("the power is off")
}

fn injected() -> io::Error {
    io::Error::other("injected I/O error")
}

impl State {
    fn cut(&mut self) {
        self.disk.cut(&mut self.rng);
        self.powered = false;
        self.locks.clear();
    }
}

impl FaultyFiles {
    /// An empty disk holding only `/`, powered, with no faults planned.
    pub(super) fn new(seed: u64) -> FaultyFiles {
        let state = State {
            disk: Disk::new(),
            rng: SplitMix::new(seed),
            powered: true,
            boot: 0,
            ops: 0,
            cut_at: None,
            fault_odds: 0,
            locks: BTreeSet::new(),
            created_new: BTreeSet::new(),
            reused: Vec::new(),
            failed_syncs: 0,
            syncs_to_fail: 0,
        };
        FaultyFiles {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on: cut the power at operation `cut_at` (counting from 1),
    /// and fail each operation with odds 1 in `fault_odds` (0: never).
    pub(super) fn plan(&self, cut_at: Option<u64>, fault_odds: u64) {
        let mut state = self.state();
        state.ops = 0;
        state.cut_at = cut_at;
        state.fault_odds = fault_odds;
    }

    pub(super) fn is_powered(&self) -> bool {
        self.state().powered
    }

    /// Cuts the power now, unless it is off already.
    pub(super) fn cut_power(&self) {
        let mut state = self.state();
        if state.powered {
            state.cut();
        }
    }

    /// Power back on, with no faults planned. Drop every `Wal` on this disk
    /// first: operations by path do not know which boot they belong to.
    pub(super) fn restart(&self) {
        let mut state = self.state();
        state.powered = true;
        state.boot += 1;
        state.cut_at = None;
        state.fault_odds = 0;
    }

    /// Fails the next `count` file fsyncs (losing their unsynced pages like
    /// Linux may), whatever the planned odds.
    pub(super) fn fail_next_syncs(&self, count: u64) {
        self.state().syncs_to_fail = count;
    }

    /// Fsyncs (of files or directories) failed on purpose so far.
    pub(super) fn failed_syncs(&self) -> u64 {
        self.state().failed_syncs
    }

    /// Paths created with [`Open::CreateNew`] a second time, ever.
    pub(super) fn reused_names(&self) -> Vec<PathBuf> {
        self.state().reused.clone()
    }

    /// Starts one operation by a handle from `boot` (by path: now): counts
    /// it, cuts the power if it is the planned one, and says whether it is
    /// to fail.
    fn begin(&self, boot: Option<u64>) -> io::Result<(MutexGuard<'_, State>, bool)> {
        let mut state = self.state();
        if !state.powered || boot.is_some_and(|b| b != state.boot) {
            return Err(power_off());
        }
        state.ops += 1;
        if state.cut_at == Some(state.ops) {
            state.cut();
            return Err(power_off());
        }
        let odds = state.fault_odds;
        let fault = odds > 0 && state.rng.one_in(odds);
        Ok((state, fault))
    }

    /// [`FaultyFiles::begin`] for an operation that fails without effect.
    fn plain(&self) -> io::Result<MutexGuard<'_, State>> {
        match self.begin(None)? {
            (_, true) => Err(injected()),
            (state, false) => Ok(state),
        }
    }
}

/// A handle on one file, dead after the power is cut.
struct FaultyFile {
    files: FaultyFiles,
    boot: u64,
    inode: u64,
}

impl WalFile for FaultyFile {
    /// A fault tears the write: only a prefix reaches the file.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (mut state, fault) = self.files.begin(Some(self.boot))?;
        let torn = fault.then(|| state.rng.below(bytes.len() as u64 + 1) as usize);
        let written = &bytes[..torn.unwrap_or(bytes.len())];
        state.disk.inode(self.inode).append(written);
        torn.map_or(Ok(()), |_| Err(injected()))
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let (mut state, fault) = self.files.begin(Some(self.boot))?;
        if fault {
            return Err(injected());
        }
        state.disk.inode(self.inode).set_len(len as usize);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let (mut guard, fault) = self.files.begin(Some(self.boot))?;
        let state = &mut *guard;
        let forced = state.syncs_to_fail > 0;
        state.syncs_to_fail = state.syncs_to_fail.saturating_sub(1);
        if fault || forced {
            state.disk.inode(self.inode).fail_sync(&mut state.rng);
            state.failed_syncs += 1;
            return Err(injected());
        }
        state.disk.inode(self.inode).sync();
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// Frees its lock file when dropped, unless the power was cut meanwhile.
struct FaultyLock {
    files: FaultyFiles,
    boot: u64,
    path: PathBuf,
}

impl Drop for FaultyLock {
    fn drop(&mut self) {
        let mut state = self.files.state();
        if state.boot == self.boot {
            state.locks.remove(&self.path);
        }
    }
}

impl Files for FaultyFiles {
    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        Ok(self.plain()?.disk.make_dirs(dir))
    }

    fn lock(&self, path: &Path) -> io::Result<Option<Lock>> {
        let mut state = self.plain()?;
        if state.disk.file(path).is_err() {
            state.disk.create(path)?;
        }
        if !state.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        let lock = FaultyLock {
            files: self.clone(),
            boot: state.boot,
            path: path.to_path_buf(),
        };
        Ok(Some(Box::new(lock) as Box<dyn Any + Send>))
    }

    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn WalFile>> {
        let mut state = self.plain()?;
        let inode = match (how, state.disk.file(path)) {
            (Open::CreateNew, Ok(_)) => return Err(io::ErrorKind::AlreadyExists.into()),
            (Open::Existing, found) => found?,
            (Open::Truncate, Ok(inode)) => {
                state.disk.inode(inode).truncate();
                inode
            }
            (Open::CreateNew | Open::Truncate, Err(_)) => {
                if how == Open::CreateNew && !state.created_new.insert(path.to_path_buf()) {
                    state.reused.push(path.to_path_buf());
                }
                state.disk.create(path)?
            }
        };
        let file = FaultyFile {
            files: self.clone(),
            boot: state.boot,
            inode,
        };
        Ok(Box::new(file))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.plain()?;
        let inode = state.disk.file(path)?;
        Ok(state.disk.inode(inode).data().to_vec())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.plain()?.disk.list(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plain()?.disk.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.plain()?.disk.remove(path)
    }

    /// A fault may or may not have made the changes durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let (mut state, fault) = self.begin(None)?;
        if !fault {
            return state.disk.sync_dir(dir);
        }
        state.failed_syncs += 1;
        if state.rng.one_in(2) {
            state.disk.sync_dir(dir)?;
        }
        Err(injected())
    }
}
