//! Create-only writes of small files on a local disk, made whole in one
//! metadata operation (delivery claims, thousands per batch in one
//! folder). The file is written unnamed (`O_TMPFILE`) and linked to its
//! name only if that name is free: a reader never sees it half written,
//! and of two creators one wins, as with object_store's local create. That
//! one stages a named file, hard-links it and unlinks the staging name:
//! three changes to the folder per object, which a batch of claims spends
//! most of its time contending on (the folder's lock, and ext4 checking
//! the inodes it just freed).
//!
//! Where unnamed files are not available (not Linux, a file system without
//! `O_TMPFILE`, no `/proc`), [`create_whole`] says so and the caller uses
//! object_store's create.

use std::path::Path;

/// What [`create_whole`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The file was created holding the bytes.
    Created,
    /// A file of that name exists; nothing was written.
    Exists,
    /// This way of creating is not available here, or failed before
    /// anything was named: create it another way (which reports errors).
    Unavailable,
}

/// Creates `path` holding `bytes` unless a file of that name exists,
/// creating its folder when missing.
#[cfg(target_os = "linux")]
pub fn create_whole(path: &Path, bytes: &[u8]) -> Created {
    use std::io::Write as _;
    let Some(folder) = path.parent() else {
        return Created::Unavailable;
    };
    let opened = match open_unnamed(folder) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(folder).and_then(|()| open_unnamed(folder))
        }
        opened => opened,
    };
    let Ok(mut file) = opened else {
        return Created::Unavailable;
    };
    if file.write_all(bytes).is_err() {
        return Created::Unavailable;
    }
    link_into_place(&file, path)
}

#[cfg(not(target_os = "linux"))]
pub fn create_whole(_path: &Path, _bytes: &[u8]) -> Created {
    Created::Unavailable
}

/// An unnamed file in `folder`, open for writing.
#[cfg(target_os = "linux")]
fn open_unnamed(folder: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o644)
        .open(folder)
}

/// Gives the unnamed `file` the name `path`, unless that name is taken.
#[cfg(target_os = "linux")]
fn link_into_place(file: &std::fs::File, path: &Path) -> Created {
    use std::ffi::CString;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::ffi::OsStrExt as _;
    let source = format!("/proc/self/fd/{}", file.as_raw_fd());
    let (Ok(source), Ok(target)) = (
        CString::new(source),
        CString::new(path.as_os_str().as_bytes()),
    ) else {
        return Created::Unavailable;
    };
    // SAFETY: both arguments are NUL-terminated strings that outlive the
    // call; linkat reads them and keeps no pointer.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    match linked {
        0 => Created::Created,
        _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::AlreadyExists => {
            Created::Exists
        }
        _ => Created::Unavailable,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_created_once_whole_and_its_folder_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims/deeper/a.1.0");
        assert_eq!(create_whole(&path, b"{\"first\":1}"), Created::Created);
        assert_eq!(create_whole(&path, b"second"), Created::Exists);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"first\":1}");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.1.0"], "nothing else left in the folder");
    }

    #[test]
    fn of_threads_creating_one_name_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race");
        let outcomes: Vec<Created> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let path = &path;
                    scope.spawn(move || create_whole(path, format!("{i}").as_bytes()))
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won = outcomes.iter().filter(|o| **o == Created::Created).count();
        assert_eq!(won, 1, "{outcomes:?}");
        assert!(outcomes.iter().all(|o| *o != Created::Unavailable));
    }
}
