//! Importing from `s3://` (docs/reference.md "Import"): a URL names one
//! object, a folder (the objects directly in it), or a glob (`*` and `?`,
//! within one path segment, as a shell would). Each object is downloaded to
//! a temporary file, one at a time, and imported as a local file is (gzip,
//! format detection by name, the content hash that makes re-imports
//! no-ops); the file is deleted when its import ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::ImportError;
use crate::store::objects;

/// Whether an import argument is an object store URL.
pub fn is_remote(argument: &Path) -> bool {
    argument.to_str().is_some_and(|a| a.starts_with("s3://"))
}

/// One object to import.
pub struct RemoteObject {
    /// `s3://bucket/key`, as reports name it.
    pub name: String,
    pub size: u64,
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
}

/// The objects an `s3://` argument names, sorted by key.
pub async fn expand(argument: &str) -> Result<Vec<RemoteObject>, ImportError> {
    let fail = |message: String| ImportError::Input {
        path: argument.to_string(),
        message,
    };
    let url = Url::parse(argument).map_err(|e| fail(format!("not a URL: {e}")))?;
    let (store, _) = objects::for_url(&url).map_err(&fail)?;
    let bucket = url.host_str().unwrap_or_default().to_string();
    let key = url.path().trim_start_matches('/');
    let named = |path: ObjectPath, size: u64| RemoteObject {
        name: format!("s3://{bucket}/{path}"),
        size,
        store: store.clone(),
        path,
    };
    let found: Vec<(ObjectPath, u64)> = match glob_start(key) {
        Some(start) => {
            let folder = &key[..key[..start].rfind('/').map_or(0, |i| i + 1)];
            let listed = list(&store, folder, true).await.map_err(&fail)?;
            listed
                .into_iter()
                .filter(|(path, _)| glob_matches(key, path.as_ref()) && !hidden(path))
                .collect()
        }
        None if key.is_empty() || key.ends_with('/') => {
            list(&store, key, false).await.map_err(&fail)?
        }
        None => match store.head(&ObjectPath::from(key)).await {
            Ok(meta) => vec![(meta.location, meta.size)],
            Err(object_store::Error::NotFound { .. }) => list(&store, &format!("{key}/"), false)
                .await
                .map_err(&fail)?,
            Err(e) => return Err(fail(e.to_string())),
        },
    };
    if found.is_empty() {
        return Err(fail("no such object, folder or matching object".into()));
    }
    let mut found: Vec<RemoteObject> = found.into_iter().map(|(p, s)| named(p, s)).collect();
    found.sort_by(|a, b| a.path.as_ref().cmp(b.path.as_ref()));
    Ok(found)
}

/// The objects under `folder` (a key prefix ending in `/`, or empty): all
/// of them, or only those directly in it; hidden names left out.
async fn list(
    store: &Arc<dyn ObjectStore>,
    folder: &str,
    deep: bool,
) -> Result<Vec<(ObjectPath, u64)>, String> {
    let prefix = ObjectPath::from(folder);
    let prefix = (!folder.is_empty()).then_some(&prefix);
    let mut found = Vec::new();
    if deep {
        let mut listing = store.list(prefix);
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| e.to_string())?;
            found.push((meta.location, meta.size));
        }
    } else {
        let listing = store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| e.to_string())?;
        found.extend(
            listing
                .objects
                .into_iter()
                .filter(|meta| !hidden(&meta.location))
                .map(|meta| (meta.location, meta.size)),
        );
    }
    Ok(found)
}

fn hidden(path: &ObjectPath) -> bool {
    path.filename().is_some_and(|name| name.starts_with('.'))
}

/// Where the first glob character of `key` is, if it has one.
fn glob_start(key: &str) -> Option<usize> {
    key.find(['*', '?'])
}

/// Whether `key` matches `pattern`: `*` is any run of characters and `?`
/// one character, neither crossing a `/`.
pub fn glob_matches(pattern: &str, key: &str) -> bool {
    let (pattern, key): (Vec<char>, Vec<char>) = (pattern.chars().collect(), key.chars().collect());
    // Positions to come back to after a `*`: (pattern after it, key position).
    let (mut p, mut k, mut star) = (0, 0, None::<(usize, usize)>);
    while k < key.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, k));
                p += 1;
            }
            Some('?') if key[k] != '/' => (p, k) = (p + 1, k + 1),
            Some(c) if *c == key[k] => (p, k) = (p + 1, k + 1),
            _ => match star {
                // Let the last `*` take one more character (never a `/`).
                Some((after, taken)) if key[taken] != '/' => {
                    star = Some((after, taken + 1));
                    (p, k) = (after, taken + 1);
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// A folder of downloaded objects, deleted with everything in it when dropped.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A new folder under the system's temporary folder.
    pub fn new() -> Result<Scratch, ImportError> {
        let dir = std::env::temp_dir().join(format!("tripwire-import-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| ImportError::Input {
            path: dir.display().to_string(),
            message: format!("cannot create a folder for downloads: {e}"),
        })?;
        Ok(Scratch { dir })
    }

    /// Downloads `object` into the folder under its own file name (its
    /// extension tells its format), streamed: memory stays bounded.
    pub async fn download(&self, object: &RemoteObject) -> Result<Downloaded, ImportError> {
        let fail = |message: String| ImportError::Input {
            path: object.name.clone(),
            message,
        };
        let name = object.path.filename().unwrap_or("object");
        let local = self.dir.join(name);
        let downloaded = Downloaded {
            path: local.clone(),
        };
        let mut file = tokio::fs::File::create(&local)
            .await
            .map_err(|e| fail(format!("cannot create {}: {e}", local.display())))?;
        let mut body = object
            .store
            .get(&object.path)
            .await
            .map_err(|e| fail(e.to_string()))?
            .into_stream();
        while let Some(bytes) = body.next().await {
            let bytes = bytes.map_err(|e| fail(e.to_string()))?;
            file.write_all(&bytes)
                .await
                .map_err(|e| fail(format!("cannot write {}: {e}", local.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| fail(format!("cannot write {}: {e}", local.display())))?;
        Ok(downloaded)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A downloaded object's local copy, deleted when dropped.
pub struct Downloaded {
    pub path: PathBuf,
}

impl Drop for Downloaded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_one_segment() {
        let cases = [
            ("in/*.ndjson.gz", "in/a.ndjson.gz", true),
            ("in/*.ndjson.gz", "in/sub/a.ndjson.gz", false),
            ("in/*.ndjson.gz", "in/a.ndjson", false),
            ("in/*/x.csv", "in/2024/x.csv", true),
            ("in/day-?.csv", "in/day-1.csv", true),
            ("in/day-?.csv", "in/day-10.csv", false),
            ("in/*", "in/", true),
            ("*a*b", "xaayb", true),
            ("*a*b", "xaayc", false),
            ("in/e*s", "in/events", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(glob_matches(pattern, key), expected, "{pattern} ~ {key}");
        }
        assert_eq!(glob_start("a/b*/c"), Some(3));
        assert_eq!(glob_start("a/b"), None);
    }

    #[test]
    fn only_s3_urls_are_remote() {
        assert!(is_remote(Path::new("s3://b/x.ndjson")));
        assert!(!is_remote(Path::new("./s3/x.ndjson")));
    }
}
