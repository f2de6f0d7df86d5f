//! The start-up probe (docs/architecture.md "Storage on S3"): Delta commits
//! and delivery claims are create-only writes (`If-None-Match: *` on S3), so
//! a server that ignores the condition would let two writers both "win" a
//! commit and one of them be lost. Every command that writes first creates
//! a probe object twice under the storage root; unless the second write is
//! refused as already existing, it refuses to start.

use object_store::{ObjectStoreExt as _, PutMode, PutOptions};

use super::{Store, StoreError};

/// The folder of probe objects under the root (workspace ids never start
/// with `_`, so no workspace folder clashes).
pub const PROBE_DIR: &str = "_probe";

/// What the second create-only write of one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Second {
    /// Refused as already existing: the storage honours the condition.
    Refused,
    /// Succeeded: the condition was ignored.
    Succeeded,
}

/// The verdict on a probe: `Ok` when the storage may be written.
pub fn verdict(second: Second) -> Result<(), String> {
    match second {
        Second::Refused => Ok(()),
        Second::Succeeded => Err(
            "the storage server ignores create-only writes (a second PUT with \
             `If-None-Match: *` of the same object succeeded), so concurrent Delta commits \
             and delivery claims could overwrite each other and be lost; tripwire will not \
             write to it. Use a server that honours conditional writes (AWS S3, MinIO, R2, …)"
                .into(),
        ),
    }
}

impl Store {
    /// Creates a probe object twice and deletes it: an error naming the
    /// storage root and the reason unless the second write was refused.
    pub async fn probe_conditional_writes(&self) -> Result<(), StoreError> {
        let name = format!("{PROBE_DIR}/{}.probe", uuid::Uuid::new_v4());
        let (objects, path) = self.state_location(&name)?;
        let fail = |message: String| StoreError::Root {
            root: self.root().to_string(),
            message,
        };
        let create = || {
            let options = PutOptions::from(PutMode::Create);
            objects.put_opts(&path, b"probe".to_vec().into(), options)
        };
        create()
            .await
            .map_err(|e| fail(format!("cannot write the probe object {path}: {e}")))?;
        let second = match create().await {
            Ok(_) => Second::Succeeded,
            Err(object_store::Error::AlreadyExists { .. }) => Second::Refused,
            Err(e) => {
                let _ = objects.delete(&path).await;
                return Err(fail(format!(
                    "a create-only write of the probe object {path} that exists failed with \
                     an error other than \"already exists\", so it cannot be told whether the \
                     server honours conditional writes: {e}"
                )));
            }
        };
        let deleted = objects.delete(&path).await;
        // A server that failed the probe is refused for that, whatever its delete did.
        verdict(second).map_err(fail)?;
        deleted.map_err(|e| fail(format!("cannot delete the probe object {path}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_second_write_passes() {
        assert!(verdict(Second::Refused).is_ok());
        let error = verdict(Second::Succeeded).unwrap_err();
        assert!(error.contains("ignores create-only writes"), "{error}");
    }

    #[tokio::test]
    async fn a_local_disk_passes_and_keeps_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(url::Url::from_directory_path(dir.path()).unwrap());
        store.probe_conditional_writes().await.unwrap();
        let left = std::fs::read_dir(dir.path().join(PROBE_DIR))
            .unwrap()
            .count();
        assert_eq!(left, 0);
    }
}
