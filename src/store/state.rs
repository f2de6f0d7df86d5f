//! Small state objects under the storage root (docs/architecture.md
//! "Storage"), JSON each: learned schemas, imported segment lists, the
//! record of finished imports. A write replaces the whole object.

use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Store, StoreError};

impl Store {
    /// The object store and path of `relative` (e.g. `shop/state/x.json`).
    pub fn state_location(
        &self,
        relative: &str,
    ) -> Result<(Box<dyn object_store::ObjectStore>, ObjectPath), StoreError> {
        let url = self
            .root()
            .join(relative)
            .map_err(|e| self.state_error(&e))?;
        object_store::parse_url(&url).map_err(|e| self.state_error(&e))
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
