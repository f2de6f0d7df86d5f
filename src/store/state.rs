//! Small state objects under the storage root (docs/architecture.md
//! "Storage"), JSON each: learned schemas, imported segment lists, the
//! record of finished imports, delivery claims and replica heartbeats. A
//! write replaces the whole object, except a create-only one
//! ([`StateDir::create`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Store, StoreError};

impl Store {
    /// The object store and path of `relative` (e.g. `shop/state/x.json`).
    pub fn state_location(
        &self,
        relative: &str,
    ) -> Result<(Arc<dyn ObjectStore>, ObjectPath), StoreError> {
        let url = self
            .root()
            .join(relative)
            .map_err(|e| self.state_error(&e))?;
        super::objects::for_url(&url).map_err(|e| self.state_error(&e))
    }

    fn state_error(&self, e: &dyn std::fmt::Display) -> StoreError {
        StoreError::Root {
            root: self.root().to_string(),
            message: e.to_string(),
        }
    }

    /// The JSON object at `relative`, if there is one.
    pub async fn read_state<T: DeserializeOwned>(
        &self,
        relative: &str,
    ) -> Result<Option<T>, StoreError> {
        let (objects, path) = self.state_location(relative)?;
        let bytes = match objects.get(&path).await {
            Ok(found) => found.bytes().await.map_err(|e| self.state_error(&e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.state_error(&e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.state_error(&format!("{relative}: {e}")))
    }

    /// Writes `value` as the JSON object at `relative`, replacing it.
    pub async fn write_state<T: Serialize>(
        &self,
        relative: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let (objects, path) = self.state_location(relative)?;
        let bytes = serde_json::to_vec(value).map_err(|e| self.state_error(&e))?;
        objects
            .put(&path, bytes.into())
            .await
            .map_err(|e| self.state_error(&e))?;
        Ok(())
    }
}

/// The folder, under a workspace, of the open-deliveries index's snapshots
/// (`deliver::snapshot`); named here so `tripwire erase` can delete them.
pub const OPEN_DELIVERIES: &str = "state/deliveries";

/// A folder of small state objects (`shop/state/claims`), opened once for
/// many objects: create-only writes (a claim), listing, deletion.
pub struct StateDir {
    objects: Arc<dyn ObjectStore>,
    path: ObjectPath,
    root: String,
    /// On a local disk: where its objects are files.
    local: Option<LocalFileSystem>,
}

/// Create-only writes in flight at once where each is a request.
const CREATE_CONCURRENCY: usize = 32;

impl Store {
    /// The state folder at `relative` (e.g. `shop/state/claims`).
    pub fn state_dir(&self, relative: &str) -> Result<StateDir, StoreError> {
        let (objects, path) = self.state_location(relative.trim_end_matches('/'))?;
        let local = (self.root().scheme() == "file").then(LocalFileSystem::new);
        Ok(StateDir {
            objects,
            path,
            root: self.root().to_string(),
            local,
        })
    }
}

impl StateDir {
    fn error(&self, e: &dyn std::fmt::Display) -> StoreError {
        StoreError::Root {
            root: self.root.clone(),
            message: e.to_string(),
        }
    }

    fn object(&self, name: &str) -> ObjectPath {
        self.path.clone().join(name)
    }

    /// Writes `value` as the JSON object `name` only if there is none:
    /// `false` when one exists (another writer created it first). Local
    /// disks and S3 both make this atomic (`PutMode::Create`).
    pub async fn create<T: Serialize>(&self, name: &str, value: &T) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.error(&e))?;
        self.create_bytes(name, bytes).await
    }

    /// Creates each of `names` holding `bytes`, as [`StateDir::create`] does
    /// one object, a few requests at a time: for each, in order, whether
    /// it was created here.
    pub async fn create_all(
        &self,
        names: &[String],
        bytes: &[u8],
    ) -> Vec<Result<bool, StoreError>> {
        let creates: Vec<_> = names
            .iter()
            .map(|name| self.create_bytes(name, bytes.to_vec()))
            .collect();
        futures::stream::iter(creates)
            .buffered(CREATE_CONCURRENCY)
            .collect()
            .await
    }

    /// On a local disk, the folder's path.
    pub fn local_folder(&self) -> Option<std::path::PathBuf> {
        let local = self.local.as_ref()?;
        local.path_to_filesystem(&self.path).ok()
    }

    async fn create_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let options = PutOptions::from(PutMode::Create);
        match self
            .objects
            .put_opts(&self.object(name), bytes.into(), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// Writes `value` as the JSON object `name`, replacing it.
    pub async fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.error(&e))?;
        self.objects
            .put(&self.object(name), bytes.into())
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// Writes `bytes` as the object `name`, replacing it.
    pub async fn write_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.objects
            .put(&self.object(name), bytes.into())
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// The JSON object `name`, if there is one.
    pub async fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.read_bytes(name).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.error(&format!("{}: {e}", self.object(name))))
    }

    /// The bytes of the object `name`, if there is one.
    pub async fn read_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.objects.get(&self.object(name)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(|e| self.error(&e))?;
                Ok(Some(bytes.to_vec()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// The newest object whose name `key` reads and `usable` accepts (the
    /// greatest key), with its name; `None` when there is none or it vanished.
    pub async fn newest<K: Ord>(
        &self,
        key: impl Fn(&str) -> Option<K>,
        usable: impl Fn(&K) -> bool,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let newest = self
            .list()
            .await?
            .into_iter()
            .filter_map(|(name, _)| key(&name).map(|k| (k, name)))
            .filter(|(k, _)| usable(k))
            .max();
        let Some((_, name)) = newest else {
            return Ok(None);
        };
        Ok(self.read_bytes(&name).await?.map(|bytes| (name, bytes)))
    }

    /// The objects directly in the folder: name and when it was last written.
    pub async fn list(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.list_first(usize::MAX, |name, written| {
            Some((name.to_string(), written))
        })
        .await
    }

    /// What `pick` makes of the objects directly in the folder (name, when
    /// last written), skipping those it returns `None` for, up to `limit`
    /// in listing order; the listing stops there (a sweep of a folder of
    /// millions of claims reads what it deletes, not the whole folder).
    pub async fn list_first<T>(
        &self,
        limit: usize,
        pick: impl Fn(&str, DateTime<Utc>) -> Option<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut listing = self.objects.list(Some(&self.path));
        let mut found = Vec::new();
        while found.len() < limit
            && let Some(meta) = listing.next().await
        {
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(self.error(&e)),
            };
            let Some(name) = meta
                .location
                .prefix_match(&self.path)
                .and_then(|mut parts| {
                    let name = parts.next()?;
                    parts.next().is_none().then(|| name.as_ref().to_string())
                })
            else {
                continue;
            };
            if let Some(picked) = pick(&name, meta.last_modified) {
                found.push(picked);
            }
        }
        Ok(found)
    }

    /// Deletes every object directly in the folder.
    pub async fn clear(&self) -> Result<(), StoreError> {
        for (name, _) in self.list().await? {
            self.delete(&name).await?;
        }
        Ok(())
    }

    /// Deletes the object `name`; one that is already gone is fine.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        match self.objects.delete(&self.object(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Store {
        Store::new(url::Url::from_directory_path(dir).unwrap())
    }

    #[tokio::test]
    async fn a_create_only_write_succeeds_once() {
        let dir = tempfile::tempdir().unwrap();
        let claims = store(dir.path()).state_dir("shop/state/claims").unwrap();
        assert!(claims.create("a.1.0", &"first").await.unwrap());
        assert!(!claims.create("a.1.0", &"second").await.unwrap());
        assert_eq!(
            claims.read::<String>("a.1.0").await.unwrap().as_deref(),
            Some("first")
        );
        assert_eq!(claims.read::<String>("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_folder_lists_its_own_objects_and_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let claims = store.state_dir("shop/state/claims").unwrap();
        assert!(claims.list().await.unwrap().is_empty(), "no folder yet");
        claims.create("x.1.0", &1).await.unwrap();
        claims.write("y.2.0", &2).await.unwrap();
        store
            .state_dir("shop/state/claims/deeper")
            .unwrap()
            .write("z", &3)
            .await
            .unwrap();
        let mut names: Vec<String> = claims
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        assert_eq!(names, ["x.1.0", "y.2.0"]);
        claims.delete("x.1.0").await.unwrap();
        claims.delete("x.1.0").await.unwrap();
        assert_eq!(claims.list().await.unwrap().len(), 1);
    }
}
